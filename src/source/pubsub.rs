//! Google Pub/Sub: a subscription's backlog as Cloud Monitoring reports it.
//!
//! Pub/Sub itself has no call that says how many messages wait in a subscription; Cloud Monitoring does, with
//! `pubsub.googleapis.com/subscription/num_undelivered_messages`, the metric the Kubernetes HPA and KEDA scale on.
//! A read asks `MetricService::list_time_series` (REST: `GET /v3/projects/P/timeSeries`) for that metric and for
//! `oldest_unacked_message_age`, filtered by `resource.labels.project_id` and `resource.labels.subscription_id`,
//! over a window of twice `maxStaleness`, and keeps the newest point of each. The project is in the filter as well
//! as in the path because a project whose metrics scope covers other projects answers for all of them: without it, a
//! same-named subscription elsewhere could be read.
//!
//! **One request per project and metric for all subscriptions.** Every subscription read through one Monitoring
//! endpoint shares its client, and the reads that fall in the same moment (see [`super::shared`]) are asked
//! together: per project, one `list_time_series` per metric whose filter names them all
//! (`resource.labels.subscription_id = one_of("a", "b", …)`), over the longest window any of them asks; each reader
//! then keeps the points of its own subscription within its own window. A filter travels in the URL, so past
//! `MAX_FILTER` characters of ids the subscriptions are split over several requests.
//!
//! **Idle subscriptions have no points.** Cloud Monitoring writes none for a subscription that has nothing to
//! report, so "no point" means either an idle subscription (backlog 0) or a deleted or misspelt one. The reader asks
//! the Pub/Sub API (at `pubsubEndpoint`) which, through the list of the project's subscriptions
//! (`SubscriptionAdmin::list_subscriptions`, one listing per project per poll for every quiet subscription, where a
//! `get_subscription` each would soon meet the API's quota on administrative calls): an existing subscription reads
//! 0, a missing one fails the read. The same goes for a newest point that is stale and says 0 — the
//! subscription emptied and went quiet; a stale point with messages in it stays a failed read.
//!
//! Pub/Sub samples these metrics every 60 s and they reach Monitoring minutes late, so every reading carries its
//! `data_age` (now − the newest point's end time), and a newest point older than `maxStaleness` fails the read as
//! [`SourceError::Stale`](super::SourceError::Stale) instead of steering replicas on old news. The window reaches past `maxStaleness` so that a
//! series that stopped shows up as stale, with its age, rather than as missing.
//!
//! Credentials are Application Default Credentials (workload identity on GKE, `GOOGLE_APPLICATION_CREDENTIALS`
//! elsewhere). An `endpoint` written as plain `http://` gets anonymous credentials instead: a bearer token must never
//! travel in clear text, and that is also how tests reach a local fake of the API without Google credentials.
//!
//! The clients are built on the first read and kept. They never retry on their own: the agent polls again soon, and
//! a retry loop inside one read would only turn a clear error into a timeout.

#[cfg(feature = "pubsub")]
mod reader;

use std::time::Duration;

use serde::Deserialize;

use crate::redact::{self, Secrets};
use crate::validation::Problem;

#[cfg(feature = "pubsub")]
pub use reader::PubSub;
#[cfg(feature = "pubsub")]
pub(crate) use reader::{AdminClient, MonitoringClient};

/// Messages not yet acknowledged: the backlog.
pub const BACKLOG_METRIC: &str = "pubsub.googleapis.com/subscription/num_undelivered_messages";
/// Seconds the oldest unacknowledged message has waited.
pub const OLDEST_AGE_METRIC: &str = "pubsub.googleapis.com/subscription/oldest_unacked_message_age";
/// Where Cloud Monitoring answers when no `endpoint` is configured.
pub const DEFAULT_ENDPOINT: &str = "https://monitoring.googleapis.com";
/// Where the Pub/Sub API answers when no `pubsubEndpoint` is configured.
pub const DEFAULT_PUBSUB_ENDPOINT: &str = "https://pubsub.googleapis.com";
/// How often Pub/Sub samples its metrics; a shorter `maxStaleness` would fail nearly every read.
const SAMPLE_PERIOD: Duration = Duration::from_secs(60);

/// `type: pubsub` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The Google Cloud project that owns the subscription; may be left out when `subscription` is a full name.
    #[serde(default)]
    pub project: Option<String>,
    /// The subscription id (`transcoder_subscription`) or its full name (`projects/P/subscriptions/S`).
    pub subscription: String,
    /// The oldest a newest data point may be and still be acted on (default `5m`).
    #[serde(default = "default_max_staleness", with = "crate::validation::duration")]
    pub max_staleness: Duration,
    /// The Cloud Monitoring API to ask instead of Google's; an `http://` URL is sent no credentials.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The Pub/Sub API asked whether a subscription without Monitoring points exists, instead of Google's (e.g. the
    /// emulator's `http://127.0.0.1:8085`); an `http://` URL is sent no credentials.
    #[serde(default)]
    pub pubsub_endpoint: Option<String>,
}

fn default_max_staleness() -> Duration {
    Duration::from_secs(5 * 60)
}

/// The subscription a config names, split into what the Monitoring API asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// The project whose metrics hold it.
    pub project: String,
    /// Its id, the value of the `subscription_id` resource label.
    pub id: String,
}

impl Config {
    /// The project and subscription id, whichever way the config wrote them.
    pub fn subscription(&self) -> Result<Subscription, Problem> {
        let (named_project, id) = match self.subscription.strip_prefix("projects/") {
            None => (None, self.subscription.as_str()),
            Some(rest) => match rest.split_once("/subscriptions/") {
                Some((project, id)) if !project.contains('/') => (Some(project), id),
                _ => {
                    return Err(Problem::new(
                        "subscription",
                        format!(
                            "`{}` is not a full subscription name; write `projects/PROJECT/subscriptions/ID` or the id \
                             alone",
                            self.subscription
                        ),
                    ));
                }
            },
        };
        if let Some(why) = subscription_id_problem(id) {
            return Err(Problem::new("subscription", format!("`{id}` is not a Pub/Sub subscription id: {why}")));
        }
        let project = match (self.project.as_deref(), named_project) {
            (Some(given), Some(named)) if given != named => {
                return Err(Problem::new(
                    "project",
                    format!("`{given}` differs from the project in `subscription` (`{named}`); keep only one of them"),
                ));
            }
            (Some(project), _) | (None, Some(project)) => project,
            (None, None) => {
                return Err(Problem::new(
                    "project",
                    "missing; name the Google Cloud project that owns the subscription, or write `subscription` as \
                     `projects/PROJECT/subscriptions/ID`",
                ));
            }
        };
        if let Some(why) = project_id_problem(project) {
            return Err(Problem::new("project", format!("`{project}` is not a Google Cloud project id: {why}")));
        }
        Ok(Subscription { project: project.to_owned(), id: id.to_owned() })
    }

    /// How far back each read looks: past `maxStaleness`, so a stopped series reads as stale rather than absent.
    pub fn window(&self) -> Duration {
        self.max_staleness * 2
    }

    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Err(problem) = self.subscription() {
            problems.push(problem);
        }
        if self.max_staleness < SAMPLE_PERIOD {
            problems.push(Problem::new(
                "maxStaleness",
                format!(
                    "`{}` is shorter than the 60 s period at which Pub/Sub samples its metrics, so nearly every read \
                     would be stale; use at least `2m` (default `5m`)",
                    humantime::format_duration(self.max_staleness)
                ),
            ));
        }
        for (field, endpoint, default) in [
            ("endpoint", &self.endpoint, DEFAULT_ENDPOINT),
            ("pubsubEndpoint", &self.pubsub_endpoint, DEFAULT_PUBSUB_ENDPOINT),
        ] {
            if let Some(endpoint) = endpoint
                && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            {
                problems.push(Problem::new(
                    field,
                    format!(
                        "`{}` is not an http(s) URL; leave it out to use Google's API, or write e.g. `{default}`",
                        redact::url(endpoint)
                    ),
                ));
            }
        }
        problems
    }

    pub(super) fn secrets(&self) -> Secrets {
        let mut secrets = Secrets::default();
        for endpoint in self.endpoint.iter().chain(&self.pubsub_endpoint) {
            secrets.add_url_password(endpoint);
        }
        secrets
    }
}

/// Pub/Sub's own rule for ids; it also keeps quotes and backslashes out of the Monitoring filter.
fn subscription_id_problem(id: &str) -> Option<&'static str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+%".contains(c);
    if !(3..=255).contains(&id.len()) {
        Some("ids are 3 to 255 characters long")
    } else if !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("ids start with a letter")
    } else if !id.chars().all(allowed) {
        Some("ids use only letters, digits and `-._~+%`")
    } else {
        None
    }
}

fn project_id_problem(project: &str) -> Option<&'static str> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c);
    if project.is_empty() {
        Some("it is empty")
    } else if !project.chars().all(allowed) {
        Some("project ids use only lowercase letters, digits and `-` (`.` and `:` in domain-scoped ones)")
    } else {
        None
    }
}
