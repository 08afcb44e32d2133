//! RabbitMQ: the backlog of one queue, over AMQP or through the management API.
//!
//! Two ways to read it, as KEDA offers:
//!
//! * **AMQP** (default): a passive `queue.declare` returns the number of *ready* messages. Cheap and needs only the
//!   AMQP port, but messages that workers hold unacknowledged are invisible, so a busy fleet looks idle.
//! * **Management API** (`managementUrl` set): `GET /api/queues/VHOST/QUEUE` gives ready *and* unacknowledged
//!   messages (the backlog counts both unless `excludeUnacknowledged`) plus the publish rate, which the latency mode
//!   uses as the arrival rate. RabbitMQ refreshes these numbers every few seconds (`collect_statistics_interval`).
//!
//! The AMQP connection is opened on the first read and kept; any error drops it so the next poll reconnects.

use std::str::FromStr;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{ReadBacklog, Reading, SourceError, error_chain};
use crate::config::Problem;
use crate::redact::{self, Secrets};

/// `type: rabbitmq` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// `amqp://user:password@host:5672/vhost` (`%2f` is the default vhost `/`); `amqps://` for TLS.
    pub url: String,
    /// The queue to measure.
    pub queue: String,
    /// `http(s)://host:15672` of the management plugin; credentials from its userinfo, else from `url`.
    #[serde(default)]
    pub management_url: Option<String>,
    /// With the management API, count only ready messages (KEDA's `excludeUnacknowledged`).
    #[serde(default)]
    pub exclude_unacknowledged: bool,
}

impl Config {
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Err(why) = AMQPUri::from_str(&self.url) {
            problems.push(Problem::new(
                "url",
                format!(
                    "`{}` is not an AMQP URL ({}); write `amqp://user:${{PASSWORD}}@host:5672/%2f`",
                    redact::url(&self.url),
                    self.secrets().scrub(&why)
                ),
            ));
        }
        if self.queue.is_empty() {
            problems.push(Problem::new("queue", "is empty; name the queue the workers consume"));
        }
        match &self.management_url {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                problems.push(Problem::new(
                    "managementUrl",
                    format!("`{}` is not an http(s) URL; write e.g. `http://rabbitmq:15672`", redact::url(url)),
                ));
            }
            None if self.exclude_unacknowledged => problems.push(Problem::new(
                "excludeUnacknowledged",
                "only applies with `managementUrl` (over AMQP only ready messages are counted anyway); add \
                 `managementUrl` or remove it",
            )),
            _ => {}
        }
        problems
    }

    pub(super) fn warnings(&self) -> Vec<Problem> {
        let hidden = if self.management_url.is_none() {
            Some(("managementUrl", "is not set, so only ready messages count (AMQP cannot see the others)"))
        } else if self.exclude_unacknowledged {
            Some(("excludeUnacknowledged", "is true, so only ready messages count"))
        } else {
            None
        };
        hidden
            .map(|(field, why)| {
                Problem::new(
                    field,
                    format!(
                        "{why}: workers busy with a job look idle, and a scale-down (to zero with minReplicas: 0) \
                         removes them mid-job; set `managementUrl` to count unacknowledged messages too"
                    ),
                )
            })
            .into_iter()
            .collect()
    }

    pub(super) fn secrets(&self) -> Secrets {
        let mut secrets = Secrets::default();
        secrets.add_url_password(&self.url);
        if let Some(url) = &self.management_url {
            secrets.add_url_password(url);
        }
        secrets
    }
}

/// A RabbitMQ queue's backlog reader.
pub struct RabbitMq {
    config: Config,
    secrets: Secrets,
    channel: Mutex<Option<(Connection, Channel)>>,
    http: reqwest::Client,
}

impl RabbitMq {
    /// A reader for `config`; connects on the first read.
    pub fn new(config: Config) -> RabbitMq {
        RabbitMq { secrets: config.secrets(), config, channel: Mutex::new(None), http: crate::outbound::client() }
    }

    fn endpoint(&self) -> String {
        redact::url(&self.config.url)
    }

    async fn read_amqp(&self) -> Result<Reading, SourceError> {
        let mut held = self.channel.lock().await;
        if !held.as_ref().is_some_and(|(_, channel)| channel.status().connected()) {
            *held = None;
            let connection = Connection::connect(&self.config.url, ConnectionProperties::default())
                .await
                .map_err(|e| self.classify(&e))?;
            let channel = connection.create_channel().await.map_err(|e| self.classify(&e))?;
            *held = Some((connection, channel));
        }
        let Some((_, channel)) = held.as_ref() else {
            unreachable!("a channel was just opened");
        };
        let declared = channel
            .queue_declare(
                self.config.queue.as_str().into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(queue) => Ok(Reading { backlog: f64::from(queue.message_count()), ..Reading::default() }),
            Err(e) => {
                // A failed passive declare closes the channel; start clean next time.
                *held = None;
                Err(self.classify(&e))
            }
        }
    }

    fn classify(&self, error: &lapin::Error) -> SourceError {
        let detail = self.secrets.scrub(&error_chain(error));
        let queue = || format!("queue `{}` on {}", self.config.queue, self.endpoint());
        if let lapin::ErrorKind::ProtocolError(amqp) = error.kind() {
            match amqp.get_id() {
                404 => {
                    return SourceError::NotFound { what: queue(), detail };
                }
                403 => {
                    return SourceError::Denied { what: queue(), detail };
                }
                _ => {}
            }
        }
        if detail.contains("ACCESS_REFUSED") || mentions_code(&detail, "403") {
            return SourceError::Denied { what: self.endpoint(), detail };
        }
        SourceError::Unreachable { endpoint: self.endpoint(), detail }
    }

    async fn read_management(&self, base: &str) -> Result<Reading, SourceError> {
        let amqp = AMQPUri::from_str(&self.config.url)
            .map_err(|e| SourceError::Protocol { endpoint: self.endpoint(), detail: self.secrets.scrub(&e) })?;
        let management = redact::url(base);
        let (base_url, credentials) = split_userinfo(base);
        let (user, password) =
            credentials.unwrap_or((amqp.authority.userinfo.username, amqp.authority.userinfo.password));
        let url = format!(
            "{}/api/queues/{}/{}?msg_rates_age=60&msg_rates_incr=5",
            base_url.trim_end_matches('/'),
            encode_segment(&amqp.vhost),
            encode_segment(&self.config.queue)
        );
        let unreachable = |e: reqwest::Error| SourceError::Unreachable {
            endpoint: management.clone(),
            detail: self.secrets.scrub(&error_chain(&e)),
        };
        let response = self.http.get(&url).basic_auth(user, Some(password)).send().await.map_err(unreachable)?;
        let status = response.status();
        let queue = || format!("queue `{}` in vhost `{}` at {management}", self.config.queue, amqp.vhost);
        match status.as_u16() {
            200 => {}
            404 => {
                return Err(SourceError::NotFound { what: queue(), detail: "HTTP 404".into() });
            }
            401 | 403 => {
                return Err(SourceError::Denied { what: queue(), detail: format!("HTTP {status}") });
            }
            _ => {
                return Err(SourceError::Protocol { endpoint: management.clone(), detail: format!("HTTP {status}") });
            }
        }
        let stats: QueueStats = response.json().await.map_err(|e| SourceError::Protocol {
            endpoint: management.clone(),
            detail: self.secrets.scrub(&error_chain(&e)),
        })?;
        self.reading(stats).map_err(|detail| SourceError::Protocol { endpoint: management, detail })
    }

    /// The reading a management API answer gives. An answer without the message counts (a queue whose statistics
    /// are not collected yet, or are disabled) says nothing about the queue: a failed read, never an empty queue.
    fn reading(&self, stats: QueueStats) -> Result<Reading, String> {
        let (Some(ready), Some(unacknowledged)) = (stats.messages_ready, stats.messages_unacknowledged) else {
            return Err(format!(
                "the answer for queue `{}` has no messages_ready/messages_unacknowledged (statistics not collected \
                 yet, or disabled)",
                self.config.queue
            ));
        };
        let counted = if self.config.exclude_unacknowledged { 0.0 } else { unacknowledged };
        Ok(Reading {
            backlog: ready + counted,
            in_flight: Some(unacknowledged),
            arrival_rate: stats.message_stats.and_then(|m| m.publish_details).map(|d| d.rate),
            ..Reading::default()
        })
    }
}

impl ReadBacklog for RabbitMq {
    async fn read(&self) -> Result<Reading, SourceError> {
        match &self.config.management_url {
            Some(base) => self.read_management(base).await,
            None => self.read_amqp().await,
        }
    }
}

/// The part of `GET /api/queues/VHOST/NAME` we use.
#[derive(Deserialize)]
struct QueueStats {
    #[serde(default)]
    messages_ready: Option<f64>,
    #[serde(default)]
    messages_unacknowledged: Option<f64>,
    #[serde(default)]
    message_stats: Option<MessageStats>,
}

#[derive(Deserialize)]
struct MessageStats {
    #[serde(default)]
    publish_details: Option<Rate>,
}

#[derive(Deserialize)]
struct Rate {
    rate: f64,
}

/// `http://user:pass@host:15672/` → (`http://host:15672/`, Some((user, pass))) with the userinfo percent-decoded.
fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_owned(), None);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_owned(), None);
    };
    let (user, password) = rest[..at].split_once(':').unwrap_or((&rest[..at], ""));
    let credentials = (redact::percent_decode(user), redact::percent_decode(password));
    (format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]), Some(credentials))
}

/// Percent-encodes one URL path segment (the management API wants the vhost `/` as `%2F`).
fn encode_segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether `text` holds the reply code `code` as a number of its own, not inside a longer one such as a port.
fn mentions_code(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_management_answer_without_the_counts_is_a_failed_read() {
        let reader = RabbitMq::new(Config {
            url: "amqp://rabbitmq".into(),
            queue: "videos".into(),
            management_url: Some("http://rabbitmq:15672".into()),
            exclude_unacknowledged: false,
        });
        let stats = |json: &str| serde_json::from_str::<QueueStats>(json).expect("an answer");
        let fresh_queue = stats(r#"{"name":"videos","vhost":"/","durable":true}"#);
        let error = reader.reading(fresh_queue).expect_err("no counts, no reading");
        assert!(error.contains("no messages_ready/messages_unacknowledged"), "{error}");
        let counted = stats(
            r#"{"messages_ready":7,"messages_unacknowledged":3,"message_stats":{"publish_details":{"rate":1.5}}}"#,
        );
        let reading = reader.reading(counted).expect("counts");
        assert_eq!((reading.backlog, reading.in_flight, reading.arrival_rate), (10.0, Some(3.0), Some(1.5)));
    }

    #[test]
    fn a_reply_code_is_not_found_inside_a_port() {
        assert!(mentions_code("reply 403 (ACCESS_REFUSED)", "403"));
        assert!(!mentions_code("connection to 127.0.0.1:40312 refused", "403"));
        assert!(!mentions_code("error 1403", "403"));
    }

    #[test]
    fn management_paths_encode_the_vhost_and_queue() {
        assert_eq!(encode_segment("/"), "%2F");
        assert_eq!(encode_segment("video jobs"), "video%20jobs");
    }

    #[test]
    fn splits_credentials_out_of_the_management_url() {
        let (base, creds) = split_userinfo("http://admin:p%40ss@rabbit:15672/");
        assert_eq!(base, "http://rabbit:15672/");
        assert_eq!(creds, Some(("admin".to_owned(), "p@ss".to_owned())));
        assert_eq!(split_userinfo("http://rabbit:15672").1, None);
    }
}
