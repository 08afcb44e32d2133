//! The SQS reader: one client per region and endpoint, one `GetQueueAttributes` per queue and poll.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::types::QueueAttributeName;
use tokio::sync::{OnceCell, Semaphore};

use super::super::shared::{self, Clients, Shared};
use super::super::{ReadBacklog, Reading, SourceError, error_chain};
use super::{Config, region_in_url};
use crate::redact::{self, Secrets};

/// Error codes AWS uses when the credentials or their permissions are refused.
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "ExpiredToken",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "MissingAuthenticationToken",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
];

/// The error code of a missing queue in SQS's older query protocol, which servers still send as a hint.
const NON_EXISTENT_QUEUE: &str = "AWS.SimpleQueueService.NonExistentQueue";

/// Environment variables whose values are credentials, scrubbed from errors however an SDK message might echo them.
const CREDENTIAL_VARIABLES: &[&str] = &["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];

impl Config {
    /// The region requests are signed for, when the settings say it.
    fn region(&self) -> Option<String> {
        self.region.clone().or_else(|| region_in_url(&self.queue_url))
    }
}

/// The three approximate counts one `GetQueueAttributes` returns.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counts {
    visible: f64,
    not_visible: f64,
    delayed: f64,
}

/// An SQS queue's backlog reader: a handle onto the SQS client of its region and endpoint, shared with every other
/// queue read there.
pub struct Sqs {
    config: Config,
    secrets: Secrets,
    client: Shared<SqsClient>,
}

/// One region and endpoint's SQS client, built on the first read and kept, and the bound on its reads in flight:
/// SQS has no call that counts several queues, so each queue costs a request, at most
/// [`CONCURRENT_READS`](shared::CONCURRENT_READS) at once.
pub(crate) struct SqsClient {
    region: Option<String>,
    endpoint_url: Option<String>,
    client: OnceCell<Client>,
    reads: Semaphore,
}

impl Sqs {
    /// A reader for `config` with a client of its own, built on the first read.
    pub fn new(config: Config) -> Sqs {
        Sqs::shared(config, &Clients::new())
    }

    /// A reader for `config` on the client `clients` holds for its region and endpoint, or a new one.
    pub fn shared(config: Config, clients: &Clients) -> Sqs {
        let mut secrets = config.secrets();
        secrets.extend(&credential_secrets(|name| std::env::var(name).ok()));
        let (region, endpoint_url) = (config.region(), config.endpoint_url.clone());
        let key = format!("{region:?}\n{endpoint_url:?}");
        let client = clients.sqs(key, || SqsClient {
            region,
            endpoint_url,
            client: OnceCell::new(),
            reads: Semaphore::new(shared::CONCURRENT_READS),
        });
        Sqs { config, secrets, client }
    }

    fn queue(&self) -> String {
        format!("queue {}", redact::url(&self.config.queue_url))
    }

    async fn client(&self) -> Result<&Client, SourceError> {
        let shared = &*self.client;
        shared
            .client
            .get_or_try_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled());
                if let Some(region) = &shared.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(endpoint) = &shared.endpoint_url {
                    loader = loader.endpoint_url(endpoint);
                }
                let loaded = loader.load().await;
                if loaded.region().is_none() {
                    return Err(SourceError::Unreachable {
                        endpoint: self.queue(),
                        detail: "no AWS region: set `region`, or AWS_REGION in the agent's environment".into(),
                    });
                }
                Ok(Client::new(&loaded))
            })
            .await
    }

    async fn counts(&self) -> Result<Counts, SourceError> {
        let client = self.client().await?;
        let _permit = self.client.reads.acquire().await.map_err(|e| SourceError::Protocol {
            endpoint: self.queue(),
            detail: format!("the read bound is closed: {e}"),
        })?;
        let answer = client
            .get_queue_attributes()
            .queue_url(&self.config.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let count = |name: QueueAttributeName| -> Result<f64, SourceError> {
            let text = answer.attributes().and_then(|all| all.get(&name));
            text.and_then(|t| t.parse::<u64>().ok()).map(|n| n as f64).ok_or_else(|| SourceError::Protocol {
                endpoint: self.queue(),
                detail: format!("attribute {name} is {text:?}, not a count"),
            })
        };
        Ok(Counts {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages)?,
            not_visible: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
        })
    }

    fn reading(&self, counts: Counts) -> Reading {
        let in_flight = if self.config.include_in_flight { counts.not_visible } else { 0.0 };
        let delayed = if self.config.include_delayed { counts.delayed } else { 0.0 };
        Reading {
            backlog: counts.visible + in_flight + delayed,
            in_flight: Some(counts.not_visible),
            ..Reading::default()
        }
    }

    fn classify(&self, error: SdkError<GetQueueAttributesError>) -> SourceError {
        let detail = self.secrets.scrub(&error_chain(&error));
        let endpoint = self.config.endpoint_url.as_deref().map_or_else(|| self.queue(), redact::url);
        let SdkError::ServiceError(service) = &error else {
            // The SDK's credential errors are not exported as a type; every one of them says "credential(s)".
            if detail.contains("credential") {
                return SourceError::Denied { what: format!("AWS credentials for {}", self.queue()), detail };
            }
            return SourceError::Unreachable { endpoint, detail };
        };
        let answer = service.err();
        let code = answer.code().unwrap_or_default();
        if answer.is_queue_does_not_exist() || code == NON_EXISTENT_QUEUE {
            SourceError::NotFound { what: self.queue(), detail }
        } else if answer.is_invalid_security() || DENIED_CODES.contains(&code) {
            SourceError::Denied { what: self.queue(), detail }
        } else if answer.is_request_throttled() {
            SourceError::Unreachable { endpoint, detail }
        } else {
            SourceError::Protocol { endpoint, detail }
        }
    }
}

impl ReadBacklog for Sqs {
    async fn read(&self) -> Result<Reading, SourceError> {
        self.counts().await.map(|counts| self.reading(counts))
    }
}

/// The credential values among the variables the SDK reads, through `env` (the process environment in use).
fn credential_secrets(env: impl Fn(&str) -> Option<String>) -> Secrets {
    let mut secrets = Secrets::default();
    for value in CREDENTIAL_VARIABLES.iter().filter_map(|name| env(name)) {
        secrets.add(value);
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::sqs::queue_name;

    const URL: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/videos";

    fn config(queue_url: &str) -> Config {
        Config {
            queue_url: queue_url.to_owned(),
            region: None,
            endpoint_url: None,
            include_in_flight: true,
            include_delayed: false,
        }
    }

    fn messages(config: &Config) -> Vec<String> {
        config.problems().into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect()
    }

    #[test]
    fn the_region_comes_from_the_queue_url_host() {
        assert_eq!(region_in_url(URL).as_deref(), Some("eu-west-1"));
        assert_eq!(region_in_url("https://sqs.cn-north-1.amazonaws.com.cn/1/q").as_deref(), Some("cn-north-1"));
        assert_eq!(region_in_url("https://us-west-2.queue.amazonaws.com/1/q").as_deref(), Some("us-west-2"));
        assert_eq!(region_in_url("http://127.0.0.1:4566/000000000000/q"), None);
        assert_eq!(config(URL).region().as_deref(), Some("eu-west-1"));
        let explicit = Config { region: Some("us-east-2".into()), ..config("http://localstack:4566/1/q") };
        assert_eq!(explicit.region().as_deref(), Some("us-east-2"));
    }

    #[test]
    fn the_queue_name_is_the_last_segment() {
        assert_eq!(config(URL).queue_name(), "videos");
        assert_eq!(queue_name("http://127.0.0.1:4566/000000000000/jobs/").as_deref(), Some("jobs"));
        assert_eq!(queue_name("videos"), None);
        assert_eq!(queue_name("https://sqs.us-east-1.amazonaws.com/videos"), None);
    }

    #[test]
    fn a_good_config_has_no_problems() {
        assert!(messages(&config(URL)).is_empty());
        let local = Config {
            region: Some("us-east-1".into()),
            endpoint_url: Some("http://127.0.0.1:4566".into()),
            ..config("http://127.0.0.1:4566/000000000000/q")
        };
        assert!(messages(&local).is_empty(), "{:?}", messages(&local));
    }

    #[test]
    fn problems_name_the_field_and_the_fix() {
        let problems = messages(&Config {
            region: Some("Frankfurt".into()),
            endpoint_url: Some("localstack:4566".into()),
            ..config("videos")
        });
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("queueUrl: `videos` is not an SQS queue URL; write it as `https://"));
        assert!(problems[1].starts_with("region: `Frankfurt` is not an AWS region; write one such as `us-east-1`"));
        assert!(problems[2].starts_with("endpointUrl: `localstack:4566` is not an http(s) URL"));

        let mismatch = messages(&Config { region: Some("us-east-1".into()), ..config(URL) });
        assert_eq!(
            mismatch,
            ["region: `us-east-1` differs from the queue URL's region `eu-west-1`; drop `region` or fix the URL"]
        );
    }

    #[test]
    fn passwords_in_urls_are_secrets() {
        let with_password = Config {
            endpoint_url: Some("http://user:hunter2@proxy:4566".into()),
            ..config("http://user:s3cret@proxy:4566/1/q")
        };
        assert_eq!(with_password.secrets().scrub("hunter2 s3cret"), "*** ***");
        let problems = messages(&Config { endpoint_url: Some("ftp://u:hunter2@x".into()), ..with_password });
        assert!(problems.iter().all(|p| !p.contains("hunter2")), "{problems:?}");
    }

    #[test]
    fn credentials_from_the_environment_are_scrubbed() {
        let secrets = credential_secrets(|name| match name {
            "AWS_SECRET_ACCESS_KEY" => Some("wJalrXUtnFEMI".to_owned()),
            "AWS_SESSION_TOKEN" => Some("FwoGZXIvYXdz".to_owned()),
            _ => None,
        });
        assert_eq!(secrets.scrub("key wJalrXUtnFEMI token FwoGZXIvYXdz"), "key *** token ***");
    }

    #[test]
    fn the_backlog_adds_what_the_settings_include() {
        let counts = Counts { visible: 10.0, not_visible: 4.0, delayed: 3.0 };
        let read = |include_in_flight, include_delayed| {
            Sqs::new(Config { include_in_flight, include_delayed, ..config(URL) }).reading(counts)
        };
        assert_eq!(read(true, false).backlog, 14.0);
        assert_eq!(read(false, false).backlog, 10.0);
        assert_eq!(read(true, true).backlog, 17.0);
        assert_eq!(read(false, true).backlog, 13.0);
        assert_eq!(read(false, false).in_flight, Some(4.0), "in flight is reported even when not counted");
    }

    #[test]
    fn settings_default_to_counting_in_flight_but_not_delayed() {
        let parsed: Config = serde_norway::from_str(&format!("queueUrl: {URL}")).expect("parses");
        assert_eq!(parsed, config(URL));
        let unknown = serde_norway::from_str::<Config>(&format!("queueUrl: {URL}\nscaleOnInFlight: true"));
        assert!(unknown.is_err(), "unknown fields are refused");
    }
}
