//! RabbitMQ: the backlog of one queue, over AMQP or through the management API.
//!
//! Two ways to read it, as KEDA offers:
//!
//! * **AMQP** (default): a passive `queue.declare` returns the number of *ready* messages. Cheap and needs only the
//!   AMQP port, but messages that workers hold unacknowledged are invisible, so a busy fleet looks idle.
//! * **Management API** (`managementUrl` set): `GET /api/queues/VHOST` gives ready *and* unacknowledged messages
//!   (the backlog counts both unless `excludeUnacknowledged`) plus the publish rate, which the latency mode uses as
//!   the arrival rate. RabbitMQ refreshes these numbers every few seconds (`collect_statistics_interval`).
//!
//! **One client per broker.** Every queue read over AMQP on the same URL (host, port, user, password, vhost and
//! options) shares one connection, opened on the first read, with `CHANNELS` channels; a declare has a channel to
//! itself, because a failed passive declare (a missing queue, access refused) closes its channel — only that read
//! fails, never its neighbours'. A connection that breaks is opened again by the first read after the break, once
//! for all its queues. Every queue read through the same management API, user and vhost is answered by one
//! `GET /api/queues/VHOST?columns=…` per poll for the whole vhost (see [`super::shared`]): a queue the list does not
//! hold is not found, a refusal is every such queue's.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::shared::{self, Batched, Batcher, Clients, Shared};
use super::{ReadBacklog, Reading, SourceError, error_chain};
use crate::redact::{self, Secrets};
use crate::validation::Problem;

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

/// A RabbitMQ queue's backlog reader: a handle onto the client of its broker, shared with every other queue read
/// there.
pub struct RabbitMq {
    config: Config,
    secrets: Secrets,
    access: Access,
}

/// How a reader reaches its queue.
enum Access {
    /// Passive declares on the broker's shared AMQP connection.
    Amqp(Shared<AmqpClient>),
    /// The management API's list of the vhost's queues, one request per poll for all of them.
    Management(Shared<ManagementClient>),
    /// `url` does not parse, so the management API's vhost is unknown; every read says why.
    Unparsable(SourceError),
}

/// The read timeout of a reader made without the agent's: the agent's default `readTimeout`.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl RabbitMq {
    /// A reader for `config` with a client of its own; connects on the first read.
    pub fn new(config: Config) -> RabbitMq {
        RabbitMq::shared(config, DEFAULT_READ_TIMEOUT, &Clients::new())
    }

    /// A reader for `config` on the broker client `clients` holds for its URL (or a new one); nothing is contacted
    /// until the first read. `read_timeout` bounds a connect and a management API request.
    pub fn shared(config: Config, read_timeout: Duration, clients: &Clients) -> RabbitMq {
        let secrets = config.secrets();
        let access = match &config.management_url {
            None => {
                let key = format!("{}\n{read_timeout:?}", amqp_key(&config.url));
                let url = config.url.clone();
                Access::Amqp(clients.amqp(key, || AmqpClient::new(url, secrets.clone(), read_timeout)))
            }
            Some(base) => match AMQPUri::from_str(&config.url) {
                Err(e) => Access::Unparsable(SourceError::Protocol {
                    endpoint: redact::url(&config.url),
                    detail: secrets.scrub(&e),
                }),
                Ok(amqp) => {
                    let (base_url, credentials) = split_userinfo(base);
                    let (user, password) =
                        credentials.unwrap_or((amqp.authority.userinfo.username, amqp.authority.userinfo.password));
                    let url = format!(
                        "{}/api/queues/{}?columns={COLUMNS}&msg_rates_age=60&msg_rates_incr=5",
                        base_url.trim_end_matches('/'),
                        encode_segment(&amqp.vhost)
                    );
                    let key = format!("{url}\n{user}\n{password}\n{read_timeout:?}");
                    let management = ManagementClient {
                        url,
                        user,
                        password,
                        shown: redact::url(base),
                        vhost: amqp.vhost,
                        secrets: secrets.clone(),
                        read_timeout,
                        http: crate::outbound::client(),
                        batcher: Batcher::default(),
                    };
                    Access::Management(clients.management(key, || management))
                }
            },
        };
        RabbitMq { config, secrets, access }
    }

    fn endpoint(&self) -> String {
        redact::url(&self.config.url)
    }

    async fn read_amqp(&self, client: &AmqpClient) -> Result<Reading, SourceError> {
        let asked = Instant::now();
        // One declare per channel at a time: a failed passive declare closes its channel, and with it anything else
        // waiting on that channel, so a missing queue must never share one with its neighbours' reads.
        let _permit = client.channels.acquire().await.map_err(|e| SourceError::Protocol {
            endpoint: self.endpoint(),
            detail: format!("the channel pool is closed: {e}"),
        })?;
        let channel = match client.idle_channel() {
            Some(channel) => channel,
            None => client.open_channel(asked).await?,
        };
        let declared = channel
            .queue_declare(
                self.config.queue.as_str().into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(queue) => {
                client.give_back(channel);
                Ok(Reading { backlog: f64::from(queue.message_count()), ..Reading::default() })
            }
            // A failed passive declare closes the channel (dropped here); the next read takes or opens another.
            Err(e) => Err(self.classify(&e)),
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

    async fn read_management(&self, client: &Arc<ManagementClient>) -> Result<Reading, SourceError> {
        let management = client.shown.clone();
        let queue = || format!("queue `{}` in vhost `{}` at {management}", self.config.queue, client.vhost);
        let answer = shared::read(client, ()).await.ok_or_else(|| SourceError::Protocol {
            endpoint: management.clone(),
            detail: "the read stopped with the agent".into(),
        })?;
        let queues = match answer.as_ref() {
            Ok(queues) => queues,
            Err(ListFailure::Unreachable(detail)) => {
                return Err(SourceError::Unreachable { endpoint: management.clone(), detail: detail.clone() });
            }
            Err(ListFailure::Status(404)) => {
                return Err(SourceError::NotFound { what: queue(), detail: "HTTP 404".into() });
            }
            Err(ListFailure::Status(status @ (401 | 403))) => {
                return Err(SourceError::Denied { what: queue(), detail: format!("HTTP {}", http_status(*status)) });
            }
            Err(ListFailure::Status(status)) => {
                return Err(SourceError::Protocol {
                    endpoint: management.clone(),
                    detail: format!("HTTP {}", http_status(*status)),
                });
            }
            Err(ListFailure::Unreadable(detail)) => {
                return Err(SourceError::Protocol { endpoint: management.clone(), detail: detail.clone() });
            }
        };
        let Some(stats) = queues.get(&self.config.queue) else {
            return Err(SourceError::NotFound {
                what: queue(),
                detail: "the management API lists no queue of that name in the vhost".into(),
            });
        };
        self.reading(stats.clone()).map_err(|detail| SourceError::Protocol { endpoint: management, detail })
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
        match &self.access {
            Access::Amqp(client) => self.read_amqp(client).await,
            Access::Management(client) => self.read_management(client.client()).await,
            Access::Unparsable(error) => Err(error.clone()),
        }
    }
}

/// `200 OK` for 200: a status as reqwest shows it, for the messages the reader gave before it was batched.
fn http_status(status: u16) -> String {
    reqwest::StatusCode::from_u16(status).map_or_else(|_| status.to_string(), |s| s.to_string())
}

/// What makes two AMQP URLs one connection: the parsed URL in full (scheme, host, port, credentials, vhost and
/// options), or the text itself when it does not parse (its reads fail, each on its own).
fn amqp_key(url: &str) -> String {
    match AMQPUri::from_str(url) {
        Ok(uri) => format!("{uri:?}"),
        Err(_) => url.to_owned(),
    }
}

/// One broker's AMQP connection, user and vhost, shared by every queue read there over AMQP, with a small fixed
/// pool of channels. A connection that breaks is opened again once, by the first read after the break, for all.
pub(crate) struct AmqpClient {
    url: String,
    endpoint: String,
    secrets: Secrets,
    read_timeout: Duration,
    link: tokio::sync::Mutex<Link>,
    /// Open channels no read is using.
    idle: std::sync::Mutex<Vec<Channel>>,
    /// One permit per channel: how many declares run at once.
    channels: Semaphore,
}

/// The connection, and the last attempt to open it that failed.
#[derive(Default)]
struct Link {
    connection: Option<Connection>,
    failed: Option<(Instant, SourceError)>,
}

/// Channels per AMQP connection: declares are quick, and each channel carries one at a time.
const CHANNELS: usize = 4;

/// The frame size the agent proposes (AMQP's minimum is 4 KB): a passive declare and its answer take a few hundred
/// bytes, and lapin's buffers are 32 frames each way.
const FRAME_MAX: u32 = 8 * 1024;

impl AmqpClient {
    fn new(url: String, secrets: Secrets, read_timeout: Duration) -> AmqpClient {
        AmqpClient {
            endpoint: redact::url(&url),
            url,
            secrets,
            read_timeout,
            link: tokio::sync::Mutex::new(Link::default()),
            idle: std::sync::Mutex::new(Vec::new()),
            channels: Semaphore::new(CHANNELS),
        }
    }

    fn idle_channel(&self) -> Option<Channel> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(channel) = idle.pop() {
            if channel.status().connected() {
                return Some(channel);
            }
        }
        None
    }

    fn give_back(&self, channel: Channel) {
        if channel.status().connected() {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(channel);
        }
    }

    /// A new channel on the connection, which is opened first if it is not open. When an attempt to open it failed
    /// after this read was asked for, that failure is this read's too: a broker that is down costs one connection
    /// attempt per poll, not one per queue.
    async fn open_channel(&self, asked: Instant) -> Result<Channel, SourceError> {
        let mut link = self.link.lock().await;
        if !link.connection.as_ref().is_some_and(|c| c.status().connected()) {
            link.connection = None;
            if let Some((at, error)) = &link.failed
                && *at >= asked
            {
                return Err(error.clone());
            }
            let connected = tokio::time::timeout(self.read_timeout, self.connect()).await;
            let failure = match connected {
                Ok(Ok(connection)) => {
                    link.connection = Some(connection);
                    link.failed = None;
                    None
                }
                Ok(Err(error)) => Some(self.connection_error(&error)),
                Err(_) => Some(SourceError::Timeout(self.read_timeout)),
            };
            if let Some(error) = failure {
                link.failed = Some((Instant::now(), error.clone()));
                return Err(error);
            }
        }
        let Some(connection) = link.connection.as_ref() else {
            unreachable!("the connection was just checked or opened");
        };
        connection.create_channel().await.map_err(|error| {
            link.connection = None;
            self.connection_error(&error)
        })
    }

    /// Opens the connection, named `queue-scaler` for the broker's connection list. Unless the URL says otherwise it
    /// proposes a small frame size ([`FRAME_MAX`]): lapin keeps 32 frames' worth of buffer each way per connection,
    /// 8 MB at RabbitMQ's default of 128 KB, for declares whose frames take a few hundred bytes.
    async fn connect(&self) -> lapin::Result<Connection> {
        let properties = ConnectionProperties::default().with_connection_name("queue-scaler".into());
        match AMQPUri::from_str(&self.url) {
            Ok(mut uri) => {
                uri.query.frame_max.get_or_insert(FRAME_MAX);
                Connection::connect_uri(uri, properties).await
            }
            // Connecting reports what is wrong with it.
            Err(_) => Connection::connect(&self.url, properties).await,
        }
    }

    /// A failure of the connection itself, which every queue read on it shares.
    fn connection_error(&self, error: &lapin::Error) -> SourceError {
        let detail = self.secrets.scrub(&error_chain(error));
        let code = match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
            _ => None,
        };
        // NOT_ALLOWED (530) is how the broker refuses a vhost: "access to vhost 'v' refused for user 'u'", or
        // "vhost v not found".
        let not_allowed = code == Some(530) || detail.contains("NOT_ALLOWED");
        if code == Some(403) || detail.contains("ACCESS_REFUSED") || mentions_code(&detail, "403") {
            return SourceError::Denied { what: self.endpoint.clone(), detail };
        }
        if not_allowed && detail.contains("refused") {
            return SourceError::Denied { what: self.endpoint.clone(), detail };
        }
        if not_allowed && detail.contains("not found") {
            return SourceError::NotFound { what: self.endpoint.clone(), detail };
        }
        SourceError::Unreachable { endpoint: self.endpoint.clone(), detail }
    }
}

/// The columns of the management API's queue list a reading needs.
const COLUMNS: &str = "name,messages_ready,messages_unacknowledged,message_stats.publish_details.rate";

/// One management API, user and vhost: every queue of the vhost in one request per poll.
pub(crate) struct ManagementClient {
    /// `{base}/api/queues/{vhost}?columns=…`
    url: String,
    user: String,
    password: String,
    /// The base URL as logs may show it.
    shown: String,
    vhost: String,
    secrets: Secrets,
    read_timeout: Duration,
    http: reqwest::Client,
    batcher: Batcher<ManagementClient>,
}

/// Why the queue list could not be had.
#[derive(Debug, Clone)]
pub(crate) enum ListFailure {
    Unreachable(String),
    Status(u16),
    Unreadable(String),
}

impl Batched for ManagementClient {
    type Key = ();
    type Answer = Arc<Result<HashMap<String, QueueStats>, ListFailure>>;

    fn batcher(&self) -> &Batcher<Self> {
        &self.batcher
    }

    async fn fetch(self: Arc<Self>, _: Vec<()>) -> Self::Answer {
        Arc::new(self.list().await)
    }
}

impl ManagementClient {
    async fn list(&self) -> Result<HashMap<String, QueueStats>, ListFailure> {
        let scrubbed = |e: reqwest::Error| self.secrets.scrub(&error_chain(&e));
        let response = self
            .http
            .get(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .timeout(self.read_timeout)
            .send()
            .await
            .map_err(|e| ListFailure::Unreachable(scrubbed(e)))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(ListFailure::Status(status.as_u16()));
        }
        let queues: Vec<QueueStats> = response.json().await.map_err(|e| ListFailure::Unreadable(scrubbed(e)))?;
        Ok(queues.into_iter().filter_map(|q| Some((q.name.clone()?, q))).collect())
    }
}

/// The part of each queue in `GET /api/queues/VHOST` we use.
#[derive(Clone, Deserialize)]
pub(crate) struct QueueStats {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    messages_ready: Option<f64>,
    #[serde(default)]
    messages_unacknowledged: Option<f64>,
    #[serde(default)]
    message_stats: Option<MessageStats>,
}

#[derive(Clone, Deserialize)]
pub(crate) struct MessageStats {
    #[serde(default)]
    publish_details: Option<Rate>,
}

#[derive(Clone, Deserialize)]
pub(crate) struct Rate {
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
