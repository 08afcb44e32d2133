//! The RabbitMQ reader: one AMQP connection per broker, user and vhost with a few channels for passive declares, and
//! one management API request per vhost and poll for every queue read there.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use regex::Regex;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::super::shared::{self, Batched, Batcher, Clients, Shared};
use super::super::{ReadBacklog, Reading, SourceError, error_chain};
use super::{Config, whole_name};
use crate::redact::{self, Secrets};

/// A RabbitMQ source's backlog reader: a handle onto the client of its broker, shared with every other queue read
/// there.
pub struct RabbitMq {
    config: Config,
    secrets: Secrets,
    vhost: String,
    access: Access,
}

/// How a reader reaches its queues.
enum Access {
    /// Passive declares on the broker's shared AMQP connection.
    Amqp(Shared<AmqpClient>),
    /// The management API's list of the vhost's queues, one request per poll for all of them.
    Management(Shared<ManagementClient>, Selection),
    /// The settings cannot be read from (`url` does not parse, `queueRegex` is not a pattern); every read says why.
    Broken(SourceError),
}

/// Which queues of the management API's list a reader adds up.
enum Selection {
    /// These, each of which must be there.
    Named(Vec<String>),
    /// Every queue whose whole name matches, however many there are at that poll (none is a failed read).
    Matching(Regex),
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
        let vhost = config.effective_vhost();
        let access = match (&config.management_url, AMQPUri::from_str(&config.url)) {
            (None, _) => {
                let key = format!("{}\n{vhost}\n{read_timeout:?}", amqp_key(&config.url));
                let client = AmqpClient::new(config.url.clone(), vhost.clone(), secrets.clone(), read_timeout);
                Access::Amqp(clients.amqp(key, || client))
            }
            (Some(_), Err(e)) => {
                Access::Broken(SourceError::Protocol { endpoint: redact::url(&config.url), detail: secrets.scrub(&e) })
            }
            (Some(base), Ok(amqp)) => match selection(&config) {
                Err(detail) => Access::Broken(SourceError::Protocol { endpoint: redact::url(base), detail }),
                Ok(selection) => {
                    let (base_url, credentials) = split_userinfo(base);
                    let (user, password) =
                        credentials.unwrap_or((amqp.authority.userinfo.username, amqp.authority.userinfo.password));
                    let url = format!(
                        "{}/api/queues/{}?columns={COLUMNS}&msg_rates_age=60&msg_rates_incr=5",
                        base_url.trim_end_matches('/'),
                        encode_segment(&vhost)
                    );
                    let key = format!("{url}\n{user}\n{password}\n{read_timeout:?}");
                    let management = ManagementClient {
                        url,
                        user,
                        password,
                        shown: redact::url(base),
                        secrets: secrets.clone(),
                        read_timeout,
                        http: crate::outbound::client(),
                        batcher: Batcher::default(),
                    };
                    Access::Management(clients.management(key, || management), selection)
                }
            },
        };
        RabbitMq { config, secrets, vhost, access }
    }

    fn endpoint(&self) -> String {
        redact::url(&self.config.url)
    }

    /// The queues named by `queue` or `queues` (over AMQP, where `check` refuses `queueRegex`).
    fn named(&self) -> Vec<String> {
        self.config.queue.iter().chain(self.config.queues.iter().flatten()).cloned().collect()
    }

    /// Every named queue declared at once, each on a channel of its own; one failure fails the read.
    async fn read_amqp(&self, client: &AmqpClient) -> Result<Reading, SourceError> {
        let asked = Instant::now();
        let names = self.named();
        let declares = names.iter().map(|queue| self.ready_over_amqp(client, queue, asked));
        let counts = futures::future::try_join_all(declares).await?;
        let queues: Vec<(String, f64)> = names.into_iter().zip(counts).collect();
        Ok(Reading { backlog: queues.iter().map(|(_, ready)| ready).sum(), queues, ..Reading::default() })
    }

    /// Ready messages in `queue`, by a passive declare.
    async fn ready_over_amqp(&self, client: &AmqpClient, queue: &str, asked: Instant) -> Result<f64, SourceError> {
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
                queue.into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(declared) => {
                client.give_back(channel);
                Ok(f64::from(declared.message_count()))
            }
            // A failed passive declare closes the channel (dropped here); the next read takes or opens another.
            Err(e) => Err(self.classify(queue, &e)),
        }
    }

    fn classify(&self, queue: &str, error: &lapin::Error) -> SourceError {
        let detail = self.secrets.scrub(&error_chain(error));
        let queue = || format!("queue `{queue}` on {}", self.endpoint());
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

    async fn read_management(
        &self,
        client: &Arc<ManagementClient>,
        selection: &Selection,
    ) -> Result<Reading, SourceError> {
        let management = client.shown.clone();
        let what = || format!("{} in vhost `{}` at {management}", self.described(selection), self.vhost);
        let answer = shared::read(client, ()).await.ok_or_else(|| SourceError::Protocol {
            endpoint: management.clone(),
            detail: "the read stopped with the agent".into(),
        })?;
        let listed = match answer.as_ref() {
            Ok(listed) => listed,
            Err(ListFailure::Unreachable(detail)) => {
                return Err(SourceError::Unreachable { endpoint: management.clone(), detail: detail.clone() });
            }
            Err(ListFailure::Status(404)) => {
                return Err(SourceError::NotFound { what: what(), detail: "HTTP 404".into() });
            }
            Err(ListFailure::Status(status @ (401 | 403))) => {
                return Err(SourceError::Denied { what: what(), detail: format!("HTTP {}", http_status(*status)) });
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
        let chosen: Vec<(&String, &QueueStats)> = match selection {
            Selection::Named(names) => names
                .iter()
                .map(|name| {
                    listed.get_key_value(name).ok_or_else(|| SourceError::NotFound {
                        what: format!("queue `{name}` in vhost `{}` at {management}", self.vhost),
                        detail: "the management API lists no queue of that name in the vhost".into(),
                    })
                })
                .collect::<Result<_, _>>()?,
            Selection::Matching(pattern) => {
                let mut matching: Vec<_> = listed.iter().filter(|(name, _)| pattern.is_match(name)).collect();
                matching.sort_by_key(|(name, _)| *name);
                // A queue created since the last statistics emission has no counts for a few seconds; it is left
                // out until it has them, rather than failing the read of every queue that matches with it.
                if matching.iter().any(|(_, stats)| stats.counted()) {
                    matching.retain(|(_, stats)| stats.counted());
                }
                matching
            }
        };
        if chosen.is_empty() {
            return Err(SourceError::NotFound {
                what: what(),
                detail: "the management API lists no queue whose whole name matches".into(),
            });
        }
        self.reading(&chosen, SystemTime::now())
            .map_err(|detail| SourceError::Protocol { endpoint: management, detail })
    }

    /// How errors name the queues a selection measures.
    fn described(&self, selection: &Selection) -> String {
        match selection {
            Selection::Named(names) if names.len() == 1 => format!("queue `{}`", names[0]),
            Selection::Named(names) => format!("queues `{}`", names.join("`, `")),
            Selection::Matching(_) => format!("queues matching `{}`", self.config.measured()),
        }
    }

    /// The reading the management API's answers for `queues` give, at `now`. An answer without the message counts
    /// (a queue whose statistics are not collected yet, or are disabled) says nothing about the queue: a failed read,
    /// never an empty queue.
    fn reading(&self, queues: &[(&String, &QueueStats)], now: SystemTime) -> Result<Reading, String> {
        let mut reading =
            Reading { in_flight: Some(0.0), oldest_message_age: Some(Duration::ZERO), ..Reading::default() };
        let mut unknown_age = false;
        for (name, stats) in queues {
            let (Some(ready), Some(unacknowledged)) = (stats.messages_ready, stats.messages_unacknowledged) else {
                return Err(format!(
                    "the answer for queue `{name}` has no messages_ready/messages_unacknowledged (statistics not \
                     collected yet, or disabled)"
                ));
            };
            let counted = ready + if self.config.exclude_unacknowledged { 0.0 } else { unacknowledged };
            reading.backlog += counted;
            reading.in_flight = reading.in_flight.map(|n| n + unacknowledged);
            if let Some(rate) = stats.message_stats.as_ref().and_then(|m| m.publish_details.as_ref()) {
                reading.arrival_rate = Some(reading.arrival_rate.unwrap_or(0.0) + rate.rate);
            }
            // An empty queue's oldest message is no wait at all; a message without a timestamp hides its age.
            match (ready > 0.0, stats.head_message_timestamp) {
                (false, _) => {}
                (true, Some(sent)) => {
                    let sent = UNIX_EPOCH + Duration::from_secs(sent);
                    let age = now.duration_since(sent).unwrap_or_default();
                    reading.oldest_message_age = reading.oldest_message_age.max(Some(age));
                }
                (true, None) => unknown_age = true,
            }
            reading.queues.push(((*name).clone(), counted));
        }
        if unknown_age && reading.oldest_message_age == Some(Duration::ZERO) {
            reading.oldest_message_age = None;
        }
        Ok(reading)
    }
}

/// The queues of the management API's list that `config` measures; `Err` when `queueRegex` is not a pattern.
fn selection(config: &Config) -> Result<Selection, String> {
    match &config.queue_regex {
        Some(pattern) => whole_name(pattern).map(Selection::Matching),
        None => Ok(Selection::Named(config.queue.iter().chain(config.queues.iter().flatten()).cloned().collect())),
    }
}

impl ReadBacklog for RabbitMq {
    async fn read(&self) -> Result<Reading, SourceError> {
        match &self.access {
            Access::Amqp(client) => self.read_amqp(client).await,
            Access::Management(client, selection) => self.read_management(client.client(), selection).await,
            Access::Broken(error) => Err(error.clone()),
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
    /// The vhost connected to: `vhost` from the settings, else the URL's.
    vhost: String,
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
    fn new(url: String, vhost: String, secrets: Secrets, read_timeout: Duration) -> AmqpClient {
        AmqpClient {
            endpoint: redact::url(&url),
            url,
            vhost,
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
                uri.vhost.clone_from(&self.vhost);
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
const COLUMNS: &str =
    "name,messages_ready,messages_unacknowledged,message_stats.publish_details.rate,head_message_timestamp";

/// One management API, user and vhost: every queue of the vhost in one request per poll.
pub(crate) struct ManagementClient {
    /// `{base}/api/queues/{vhost}?columns=…`
    url: String,
    user: String,
    password: String,
    /// The base URL as logs may show it.
    shown: String,
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
    /// The AMQP `timestamp` property of the queue's first message (Unix seconds), when its publisher set one.
    #[serde(default)]
    head_message_timestamp: Option<u64>,
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

impl QueueStats {
    /// Whether the answer has the message counts (statistics collected at least once).
    fn counted(&self) -> bool {
        self.messages_ready.is_some() && self.messages_unacknowledged.is_some()
    }
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

    fn config(queues: &str) -> Config {
        let yaml = format!("url: amqp://rabbitmq\nmanagementUrl: http://rabbitmq:15672\n{queues}");
        serde_norway::from_str(&yaml).expect("parses")
    }

    fn messages(config: &Config) -> Vec<String> {
        config.problems().into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect()
    }

    fn stats(json: &str) -> QueueStats {
        serde_json::from_str(json).expect("an answer")
    }

    #[test]
    fn a_management_answer_without_the_counts_is_a_failed_read() {
        let reader = RabbitMq::new(config("queue: videos"));
        let name = "videos".to_owned();
        let fresh_queue = stats(r#"{"name":"videos","vhost":"/","durable":true}"#);
        let error = reader.reading(&[(&name, &fresh_queue)], SystemTime::now()).expect_err("no counts, no reading");
        assert!(error.contains("no messages_ready/messages_unacknowledged"), "{error}");
        let counted = stats(
            r#"{"messages_ready":7,"messages_unacknowledged":3,"message_stats":{"publish_details":{"rate":1.5}}}"#,
        );
        let reading = reader.reading(&[(&name, &counted)], SystemTime::now()).expect("counts");
        assert_eq!((reading.backlog, reading.in_flight, reading.arrival_rate), (10.0, Some(3.0), Some(1.5)));
        assert_eq!(reading.queues, [("videos".to_owned(), 10.0)]);
    }

    #[test]
    fn several_queues_add_up_and_the_oldest_head_message_is_the_age() {
        let reader = RabbitMq::new(config("queues: [a, b, c]"));
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let (a, b, c) = ("a".to_owned(), "b".to_owned(), "c".to_owned());
        let a_stats = stats(r#"{"messages_ready":4,"messages_unacknowledged":1,"head_message_timestamp":910}"#);
        let b_stats = stats(
            r#"{"messages_ready":2,"messages_unacknowledged":0,"head_message_timestamp":970,
            "message_stats":{"publish_details":{"rate":2.0}}}"#,
        );
        // Empty: its last message's timestamp is history, not a wait.
        let c_stats = stats(r#"{"messages_ready":0,"messages_unacknowledged":3,"head_message_timestamp":100}"#);
        let reading = reader.reading(&[(&a, &a_stats), (&b, &b_stats), (&c, &c_stats)], now).expect("counts");
        assert_eq!((reading.backlog, reading.in_flight, reading.arrival_rate), (10.0, Some(4.0), Some(2.0)));
        assert_eq!(reading.oldest_message_age, Some(Duration::from_secs(90)));
        assert_eq!(reading.queues, [("a".to_owned(), 5.0), ("b".to_owned(), 2.0), ("c".to_owned(), 3.0)]);
    }

    #[test]
    fn a_waiting_message_without_a_timestamp_leaves_the_age_unknown_not_zero() {
        let reader = RabbitMq::new(config("queue: a"));
        let a = "a".to_owned();
        let now = SystemTime::now();
        let untimed = stats(r#"{"messages_ready":4,"messages_unacknowledged":0}"#);
        assert_eq!(reader.reading(&[(&a, &untimed)], now).expect("counts").oldest_message_age, None);
        let empty = stats(r#"{"messages_ready":0,"messages_unacknowledged":0}"#);
        assert_eq!(reader.reading(&[(&a, &empty)], now).expect("counts").oldest_message_age, Some(Duration::ZERO));
    }

    #[test]
    fn exactly_one_of_queue_queues_and_queue_regex() {
        assert!(messages(&config("queue: a")).is_empty());
        assert!(messages(&config("queues: [a, b]")).is_empty());
        assert!(messages(&config("queueRegex: 'jobs-.*'")).is_empty());
        assert_eq!(
            messages(&config("")),
            ["queue: missing; name the queue the workers consume with `queue`, `queues` or `queueRegex`"]
        );
        assert_eq!(
            messages(&config("queue: a\nqueueRegex: b")),
            ["queueRegex: is set along with `queue`; use exactly one of `queue`, `queues` or `queueRegex`"]
        );
        assert_eq!(
            messages(&config("queues: [a, '', a]")),
            [
                "queues[1]: is empty; name a queue",
                "queues[2]: `a` is listed twice; its backlog would count twice, remove one"
            ]
        );
        assert_eq!(
            messages(&config("queues: []")),
            ["queues: is empty; list the queues the workers consume, e.g. `[a, b]`"]
        );
        assert_eq!(
            messages(&config("queueRegex: 'jobs-('")),
            ["queueRegex: `jobs-(` is not a regular expression (unclosed group); write e.g. `jobs-.*`"]
        );
        let over_amqp = Config { management_url: None, ..config("queueRegex: 'jobs-.*'") };
        assert_eq!(messages(&over_amqp).len(), 1);
        assert!(messages(&over_amqp)[0].starts_with("queueRegex: needs `managementUrl`"), "{:?}", messages(&over_amqp));
    }

    #[test]
    fn a_regex_matches_whole_names() {
        let pattern = whole_name("jobs-.*").expect("a pattern");
        assert!(pattern.is_match("jobs-1"));
        assert!(!pattern.is_match("old-jobs-1"));
        assert!(whole_name("a|b").expect("a pattern").is_match("b"));
        assert!(!whole_name("a|b").expect("a pattern").is_match("ab"));
    }

    #[test]
    fn the_vhost_comes_from_the_setting_or_the_url_and_they_must_agree() {
        let with = |url: &str, vhost: Option<&str>| Config {
            url: url.into(),
            vhost: vhost.map(str::to_owned),
            ..config("queue: a")
        };
        assert_eq!(with("amqp://h", None).effective_vhost(), "/");
        assert_eq!(with("amqp://h:5672/jobs", None).effective_vhost(), "jobs");
        assert_eq!(with("amqp://h", Some("jobs")).effective_vhost(), "jobs");
        assert!(messages(&with("amqp://h?heartbeat=10", Some("jobs"))).is_empty());
        assert!(messages(&with("amqp://h/jobs", Some("jobs"))).is_empty());
        assert_eq!(
            messages(&with("amqp://h/%2f", Some("jobs"))),
            [
                "vhost: `jobs` differs from the vhost `/` that `url` names; drop the vhost from one of them or make them \
              agree"
            ]
        );
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
