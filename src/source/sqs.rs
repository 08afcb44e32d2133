//! Amazon SQS: the backlog of one queue, from `GetQueueAttributes`.
//!
//! SQS keeps three approximate counts per queue, and the backlog adds them as KEDA's SQS scaler does:
//!
//! * **visible** (`ApproximateNumberOfMessages`): waiting for a worker; always counted.
//! * **not visible** (`…NotVisible`): received by a worker and not yet deleted, i.e. in flight. Counted unless
//!   `includeInFlight: false`, because the workers holding them are busy: leaving them out would scale a busy fleet
//!   down under its own feet. Always reported as [`Reading::in_flight`](super::Reading::in_flight).
//! * **delayed** (`…Delayed`): sent with a delay and not deliverable yet; counted only with `includeDelayed: true`,
//!   since no worker can take them before the delay ends.
//!
//! AWS says the counts settle within about a minute; that is good enough to size a fleet.
//!
//! Credentials come from the AWS SDK's default chain (IRSA or EKS pod identity in a cluster, environment variables
//! elsewhere); the region from `region`, else the queue URL's host, else that same chain. Loading the chain is
//! async, so the client is built on the first read and kept; a build that fails (no region) is retried next poll.
//! Every queue of one region and endpoint is read through one client (one connection pool, one credentials chain),
//! at most [`CONCURRENT_READS`](super::shared::CONCURRENT_READS) requests at once.
//! The client never retries on its own, as the Pub/Sub source's does not: the agent polls again soon, and the SDK's
//! backoff inside one read would turn an endpoint that refuses connections into a `timeout` instead of
//! `unreachable`.

#[cfg(feature = "sqs")]
mod reader;

use serde::Deserialize;
use url::Url;

use crate::redact::{self, Secrets};
use crate::validation::Problem;

#[cfg(feature = "sqs")]
pub use reader::Sqs;
#[cfg(feature = "sqs")]
pub(crate) use reader::SqsClient;

/// `type: sqs` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The queue's URL, as `aws sqs get-queue-url` prints it: `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`.
    pub queue_url: String,
    /// The AWS region; default: the one in the queue URL's host, else the SDK's chain (`AWS_REGION`, profile, IMDS).
    #[serde(default)]
    pub region: Option<String>,
    /// Another SQS endpoint, such as LocalStack or moto (`http://127.0.0.1:4566`).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Count messages that workers have received but not deleted (KEDA's `scaleOnInFlight`).
    #[serde(default = "counted")]
    pub include_in_flight: bool,
    /// Count messages whose delivery delay has not ended yet (KEDA's `scaleOnDelayed`).
    #[serde(default)]
    pub include_delayed: bool,
}

fn counted() -> bool {
    true
}

impl Config {
    pub(super) fn warnings(&self) -> Vec<Problem> {
        if self.include_in_flight {
            return Vec::new();
        }
        vec![Problem::new(
            "includeInFlight",
            "is false, so messages workers hold do not count: workers busy with a job look idle, and a scale-down (to \
             zero with minReplicas: 0) removes them mid-job; remove it to count in-flight messages",
        )]
    }

    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if queue_name(&self.queue_url).is_none() {
            problems.push(Problem::new(
                "queueUrl",
                format!(
                    "`{}` is not an SQS queue URL; write it as `https://sqs.REGION.amazonaws.com/ACCOUNT_ID/QUEUE_NAME` \
                     (what `aws sqs get-queue-url` prints)",
                    redact::url(&self.queue_url)
                ),
            ));
        }
        match (&self.region, region_in_url(&self.queue_url)) {
            (Some(region), _) if !looks_like_a_region(region) => problems.push(Problem::new(
                "region",
                format!(
                    "`{region}` is not an AWS region; write one such as `us-east-1`, or drop it to use the queue URL's"
                ),
            )),
            (Some(region), Some(in_url)) if *region != in_url => problems.push(Problem::new(
                "region",
                format!("`{region}` differs from the queue URL's region `{in_url}`; drop `region` or fix the URL"),
            )),
            _ => {}
        }
        if let Some(endpoint) = &self.endpoint_url
            && !Url::parse(endpoint).is_ok_and(|url| matches!(url.scheme(), "http" | "https"))
        {
            problems.push(Problem::new(
                "endpointUrl",
                format!("`{}` is not an http(s) URL; write e.g. `http://localstack:4566`", redact::url(endpoint)),
            ));
        }
        problems
    }

    pub(super) fn secrets(&self) -> Secrets {
        let mut secrets = Secrets::default();
        secrets.add_url_password(&self.queue_url);
        if let Some(endpoint) = &self.endpoint_url {
            secrets.add_url_password(endpoint);
        }
        secrets
    }

    /// The queue's name, the last segment of its URL (what a default source name shows).
    pub fn queue_name(&self) -> String {
        queue_name(&self.queue_url).unwrap_or_else(|| redact::url(&self.queue_url))
    }
}

/// The last path segment of a queue URL with a host and an `/ACCOUNT/NAME` path.
fn queue_name(queue_url: &str) -> Option<String> {
    let url = Url::parse(queue_url).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    match segments[..] {
        [_account, name] => Some(name.to_owned()),
        _ => None,
    }
}

/// `sqs.REGION.amazonaws.com[.cn]` or the legacy `REGION.queue.amazonaws.com` → `REGION`.
fn region_in_url(queue_url: &str) -> Option<String> {
    let url = Url::parse(queue_url).ok()?;
    let host = url.host_str()?;
    let region = host
        .strip_prefix("sqs.")
        .and_then(|rest| rest.strip_suffix(".amazonaws.com").or_else(|| rest.strip_suffix(".amazonaws.com.cn")))
        .or_else(|| host.strip_suffix(".queue.amazonaws.com"))?;
    looks_like_a_region(region).then(|| region.to_owned())
}

/// `us-east-1`, `us-gov-west-1`, `cn-north-1`: lowercase words joined by dashes, ending in a number.
fn looks_like_a_region(region: &str) -> bool {
    region.contains('-')
        && region.ends_with(|c: char| c.is_ascii_digit())
        && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
