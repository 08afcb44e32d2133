//! Backlog sources: one file per queue, each behind the same small trait.
//!
//! A source answers one question per poll — how much work is waiting — as a [`Reading`]. It knows nothing about
//! replicas or policies; that keeps every queue type to its own files and makes a new one cheap: write `QUEUE.rs`
//! with its `Config` (built in every build, so `check`, `simulate` and `replay` know every queue's settings) and
//! `QUEUE/reader.rs` with its reader and client (built with the queue's Cargo feature), then add one arm to
//! [`SourceKind`] and one to [`Source`].
//!
//! Failures are typed ([`SourceError`]) so the agent can count them by kind and apply the fallback rule, and their
//! text is scrubbed of credentials before anyone sees it.

pub mod fixed;
pub mod kafka;
pub mod prometheus;
pub mod pubsub;
pub mod rabbitmq;
#[cfg(clients)]
pub mod shared;
pub mod sqs;

#[cfg(clients)]
pub use shared::Clients;

/// With no broker client built in (a build whose only source is `fixed`), sources have nothing to share.
#[cfg(not(clients))]
#[derive(Clone, Default)]
pub struct Clients;

#[cfg(not(clients))]
impl Clients {
    /// An empty registry.
    pub fn new() -> Clients {
        Clients
    }
}

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_norway::{Mapping, Value};

use crate::validation::{Problem, nested_error};

pub use crate::policy::Reading;

/// The largest backlog believed: anything above is a broken exporter, not a queue.
pub const MAX_BELIEVABLE_BACKLOG: f64 = 1e12;

impl Reading {
    /// Rejects values no queue can have (negative, NaN, infinite, absurdly large), so a broken source can never
    /// turn into a scale decision.
    pub fn checked(self) -> Result<Reading, SourceError> {
        let plausible = |v: f64| v.is_finite() && (0.0..=MAX_BELIEVABLE_BACKLOG).contains(&v);
        if !plausible(self.backlog) {
            return Err(SourceError::Rejected(format!("backlog {} is not a count of messages", shown(self.backlog))));
        }
        for (what, value) in [("in-flight count", self.in_flight), ("arrival rate", self.arrival_rate)] {
            if let Some(v) = value.filter(|v| !plausible(*v)) {
                return Err(SourceError::Rejected(format!("{what} {} is not plausible", shown(v))));
            }
        }
        Ok(self)
    }
}

/// A rejected value as a log line can show it: `{}` writes every digit of an f64, so 1e300 would be 301 of them.
fn shown(value: f64) -> String {
    if value.abs() > MAX_BELIEVABLE_BACKLOG { format!("{value:e}") } else { value.to_string() }
}

/// Why a source could not be read. Every string in here has been scrubbed of credentials.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The broker or API could not be reached or refused the connection.
    #[error("cannot reach {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    /// The queue, topic, subscription or group does not exist.
    #[error("{what} does not exist: {detail}")]
    NotFound { what: String, detail: String },
    /// The credentials were refused.
    #[error("access to {what} was denied: {detail}")]
    Denied { what: String, detail: String },
    /// The peer answered, but not with something we understand.
    #[error("unexpected answer from {endpoint}: {detail}")]
    Protocol { endpoint: String, detail: String },
    /// The read took longer than the configured timeout.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The answer held no value at all (an empty Prometheus result: the series are gone or were never there).
    #[error("{what} is empty: {detail}")]
    Empty { what: String, detail: String },
    /// The newest data point is too old to act on.
    #[error("newest data point is {}s old, more than maxStaleness {}s", .age.as_secs(), .max.as_secs())]
    Stale { age: Duration, max: Duration },
    /// The source answered with a value that cannot be a backlog.
    #[error("rejected reading: {0}")]
    Rejected(String),
}

impl SourceError {
    /// A short, stable label for the source-error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Unreachable { .. } => "unreachable",
            SourceError::NotFound { .. } => "not_found",
            SourceError::Denied { .. } => "denied",
            SourceError::Protocol { .. } => "protocol",
            SourceError::Timeout(_) => "timeout",
            SourceError::Empty { .. } => "empty",
            SourceError::Stale { .. } => "stale",
            SourceError::Rejected(_) => "rejected",
        }
    }
}

/// An error and every cause under it, on one line: client libraries often put the useful part in a source.
#[cfg(any(feature = "rabbitmq", feature = "sqs", feature = "pubsub", feature = "prometheus"))]
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = inner.source();
    }
    text
}

/// The one thing every source does.
pub trait ReadBacklog: Send + Sync {
    /// One reading. The agent calls it once per poll, never concurrently for the same source, under a timeout.
    fn read(&self) -> impl Future<Output = Result<Reading, SourceError>> + Send;
}

/// One source as configured: the settings every source has, plus its own.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// How logs, metrics and replay files refer to it; defaults to [`SourceKind::default_name`].
    pub name: String,
    /// The backlog one worker should carry: recommendation = ceil(backlog / backlogPerWorker).
    pub backlog_per_worker: f64,
    /// The queue type and its settings.
    pub kind: SourceKind,
}

/// Every queue type, by its `type:` name in the config.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// `type: kafka`
    Kafka(kafka::Config),
    /// `type: rabbitmq`
    RabbitMq(rabbitmq::Config),
    /// `type: sqs`
    Sqs(sqs::Config),
    /// `type: prometheus`
    Prometheus(prometheus::Config),
    /// `type: pubsub`
    PubSub(pubsub::Config),
    /// `type: fixed`
    Fixed(fixed::Config),
}

impl SourceKind {
    /// Every supported `type:` value.
    pub const TYPES: &'static [&'static str] = &["kafka", "rabbitmq", "sqs", "prometheus", "pubsub", "fixed"];

    fn parse(type_name: &str, rest: Value) -> Result<SourceKind, String> {
        match type_name {
            "kafka" => parse_settings(rest).map(SourceKind::Kafka),
            "rabbitmq" => parse_settings(rest).map(SourceKind::RabbitMq),
            "sqs" => parse_settings(rest).map(SourceKind::Sqs),
            "prometheus" => parse_settings(rest).map(SourceKind::Prometheus),
            "pubsub" => parse_settings(rest).map(SourceKind::PubSub),
            "fixed" => parse_settings(rest).map(SourceKind::Fixed),
            other => Err(nested_error(
                "type",
                &format!("unknown source type `{other}`; use one of {}", Self::TYPES.join(", ")),
            )),
        }
    }

    /// The name a source gets when the config gives none, e.g. `rabbitmq/videos` or `kafka/transcoders/videos`.
    pub fn default_name(&self) -> String {
        match self {
            SourceKind::Kafka(c) => format!("kafka/{}", c.measured()),
            SourceKind::RabbitMq(c) => format!("rabbitmq/{}", c.measured()),
            SourceKind::Sqs(c) => format!("sqs/{}", c.queue_name()),
            SourceKind::Prometheus(c) => format!("prometheus/{}", c.query),
            SourceKind::PubSub(c) => format!("pubsub/{}", c.subscription().map_or(c.subscription.clone(), |s| s.id)),
            SourceKind::Fixed(c) => format!("fixed/{}", c.backlog),
        }
    }

    /// Problems with the type-specific settings, as (field, message) relative to the source.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            SourceKind::Kafka(c) => c.problems(),
            SourceKind::RabbitMq(c) => c.problems(),
            SourceKind::Sqs(c) => c.problems(),
            SourceKind::Prometheus(c) => c.problems(),
            SourceKind::PubSub(c) => c.problems(),
            SourceKind::Fixed(c) => c.problems(),
        }
    }

    /// Settings that `check` accepts but that break a promise in some situations, as (field, what to know and do)
    /// relative to the source: `check` prints them as warnings, `check --strict` refuses them, `run` logs them.
    pub fn warnings(&self) -> Vec<Problem> {
        match self {
            SourceKind::Kafka(c) => c.warnings(),
            SourceKind::RabbitMq(c) => c.warnings(),
            SourceKind::Sqs(c) => c.warnings(),
            _ => Vec::new(),
        }
    }

    /// Why latency mode cannot learn a job duration from this source, if it cannot: it needs the source's arrival
    /// rate (see [`crate::policy::latency`]). `None` when it can.
    pub fn cannot_learn_job_duration(&self) -> Option<&'static str> {
        match self {
            SourceKind::Kafka(_) => None,
            SourceKind::RabbitMq(c) if c.management_url.is_some() => None,
            SourceKind::RabbitMq(_) => Some("over AMQP RabbitMQ reports no publish rate: add `managementUrl`"),
            SourceKind::Sqs(_) => Some("SQS reports no arrival rate"),
            SourceKind::Prometheus(_) => Some("a query reports no arrival rate"),
            SourceKind::PubSub(_) => Some("Cloud Monitoring's backlog metric reports no arrival rate"),
            SourceKind::Fixed(_) => Some("a fixed backlog has no arrivals"),
        }
    }

    /// The setting that leaves in-flight messages out of this source's backlog, if one does: latency mode must
    /// tell them from waiting ones.
    pub fn leaves_out_in_flight(&self) -> Option<&'static str> {
        match self {
            SourceKind::RabbitMq(c) if c.exclude_unacknowledged => Some("excludeUnacknowledged"),
            SourceKind::Sqs(c) if !c.include_in_flight => Some("includeInFlight"),
            _ => None,
        }
    }

    /// The Cargo feature that builds this source's reader, when this binary was built without it: the settings
    /// are still checked, and `simulate`, `replay` and `tune` stand in for the queue, but `run` cannot read it.
    pub fn missing_feature(&self) -> Option<&'static str> {
        let (feature, built) = match self {
            SourceKind::Kafka(_) => ("kafka", cfg!(feature = "kafka")),
            SourceKind::RabbitMq(_) => ("rabbitmq", cfg!(feature = "rabbitmq")),
            SourceKind::Sqs(_) => ("sqs", cfg!(feature = "sqs")),
            SourceKind::Prometheus(_) => ("prometheus", cfg!(feature = "prometheus")),
            SourceKind::PubSub(_) => ("pubsub", cfg!(feature = "pubsub")),
            SourceKind::Fixed(_) => return None,
        };
        (!built).then_some(feature)
    }

    /// Credentials this source's settings carry, to scrub from anything shown.
    pub fn secrets(&self) -> crate::redact::Secrets {
        match self {
            SourceKind::Kafka(c) => c.secrets(),
            SourceKind::RabbitMq(c) => c.secrets(),
            SourceKind::Sqs(c) => c.secrets(),
            SourceKind::Prometheus(c) => c.secrets(),
            SourceKind::PubSub(c) => c.secrets(),
            SourceKind::Fixed(c) => c.secrets(),
        }
    }
}

/// What `check` and `run` say about a source whose reader was not built in.
pub fn not_built_in(feature: &str) -> String {
    format!(
        "this queue-scaler was built without `{feature}` sources; build it with `--features {feature}` (the default \
         build has every source), or use an image built that way"
    )
}

fn parse_settings<T: serde::de::DeserializeOwned>(rest: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(rest).map_err(|e| nested_error(&e.path().to_string(), &e.inner().to_string()))
}

impl<'de> Deserialize<'de> for SourceSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Mapping::deserialize(deserializer)?;
        let mut take = |key: &str| map.remove(key);
        let type_name = match take("type") {
            Some(Value::String(t)) => t,
            Some(_) => {
                return Err(D::Error::custom(nested_error("type", "must be a string such as `rabbitmq`")));
            }
            None => {
                return Err(D::Error::custom(nested_error(
                    "type",
                    &format!("missing; say which queue this is: one of {}", SourceKind::TYPES.join(", ")),
                )));
            }
        };
        let name = match take("name") {
            None => None,
            Some(Value::String(n)) => Some(n),
            Some(_) => return Err(D::Error::custom(nested_error("name", "must be a string"))),
        };
        let backlog_per_worker = match take("backlogPerWorker") {
            Some(v) => v.as_f64().ok_or_else(|| {
                D::Error::custom(nested_error("backlogPerWorker", "must be a number, e.g. `backlogPerWorker: 10`"))
            })?,
            None => {
                return Err(D::Error::custom(nested_error(
                    "backlogPerWorker",
                    "missing; set how many waiting messages one worker should carry, e.g. `backlogPerWorker: 10`",
                )));
            }
        };
        let kind = SourceKind::parse(&type_name, Value::Mapping(map)).map_err(D::Error::custom)?;
        Ok(SourceSpec { name: name.unwrap_or_else(|| kind.default_name()), backlog_per_worker, kind })
    }
}

/// A live source, built from its spec; connections open lazily on the first read. A source is a handle onto its
/// broker's client in [`Clients`], shared with every other source on that broker. Readers are boxed, so the enum
/// stays small whichever queue it is.
pub enum Source {
    #[cfg(feature = "kafka")]
    /// A Kafka consumer group's lag.
    Kafka(Box<kafka::Kafka>),
    #[cfg(feature = "rabbitmq")]
    /// A RabbitMQ queue.
    RabbitMq(Box<rabbitmq::RabbitMq>),
    #[cfg(feature = "sqs")]
    /// An SQS queue.
    Sqs(Box<sqs::Sqs>),
    #[cfg(feature = "prometheus")]
    /// A Prometheus query.
    Prometheus(Box<prometheus::Prometheus>),
    #[cfg(feature = "pubsub")]
    /// A Pub/Sub subscription, through Cloud Monitoring.
    PubSub(Box<pubsub::PubSub>),
    /// A fixed backlog.
    Fixed(fixed::Fixed),
    /// The simulator's queue.
    Simulated(crate::sim::cluster::SimulatedQueue),
    /// A source whose reader this build lacks (the Cargo feature it names): every read fails. `check` and `run`
    /// refuse such configs before any source is built, so only a caller that skipped them meets it.
    #[cfg(not(every_source))]
    NotBuiltIn(&'static str),
}

impl Source {
    /// The reader for a configured source, on the client `clients` holds for its broker (a new one if it holds
    /// none yet). Opens nothing yet, so it cannot fail on the network. `read_timeout` is the agent's limit on one
    /// read, for readers whose blocking calls and batches must end by themselves.
    #[cfg_attr(not(clients), allow(unused_variables, reason = "only the broker clients use them"))]
    #[cfg_attr(
        not(any(feature = "kafka", feature = "rabbitmq", feature = "pubsub")),
        allow(unused_variables, reason = "only readers that batch or block bound themselves by the read timeout")
    )]
    pub fn from_kind(kind: &SourceKind, read_timeout: Duration, clients: &Clients) -> Source {
        match kind {
            #[cfg(feature = "kafka")]
            SourceKind::Kafka(c) => Source::Kafka(Box::new(kafka::Kafka::shared(c.clone(), read_timeout, clients))),
            #[cfg(feature = "rabbitmq")]
            SourceKind::RabbitMq(c) => {
                Source::RabbitMq(Box::new(rabbitmq::RabbitMq::shared(c.clone(), read_timeout, clients)))
            }
            #[cfg(feature = "sqs")]
            SourceKind::Sqs(c) => Source::Sqs(Box::new(sqs::Sqs::shared(c.clone(), clients))),
            #[cfg(feature = "prometheus")]
            SourceKind::Prometheus(c) => {
                Source::Prometheus(Box::new(prometheus::Prometheus::shared(c.clone(), clients)))
            }
            #[cfg(feature = "pubsub")]
            SourceKind::PubSub(c) => Source::PubSub(Box::new(pubsub::PubSub::shared(c.clone(), read_timeout, clients))),
            SourceKind::Fixed(c) => Source::Fixed(fixed::Fixed::new(c)),
            #[cfg(not(every_source))]
            other => Source::NotBuiltIn(other.missing_feature().unwrap_or("unknown")),
        }
    }
}

impl ReadBacklog for Source {
    async fn read(&self) -> Result<Reading, SourceError> {
        match self {
            #[cfg(feature = "kafka")]
            Source::Kafka(s) => s.read().await,
            #[cfg(feature = "rabbitmq")]
            Source::RabbitMq(s) => s.read().await,
            #[cfg(feature = "sqs")]
            Source::Sqs(s) => s.read().await,
            #[cfg(feature = "prometheus")]
            Source::Prometheus(s) => s.read().await,
            #[cfg(feature = "pubsub")]
            Source::PubSub(s) => s.read().await,
            Source::Fixed(s) => s.read().await,
            Source::Simulated(s) => s.read().await,
            #[cfg(not(every_source))]
            Source::NotBuiltIn(feature) => Err(SourceError::Rejected(not_built_in(feature))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_values_no_queue_can_have() {
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e13] {
            let err = Reading { backlog: bad, ..Reading::default() }.checked().unwrap_err();
            assert_eq!(err.kind(), "rejected", "{bad}");
        }
        let err = Reading { backlog: 1.0, arrival_rate: Some(f64::NAN), ..Reading::default() }.checked();
        assert!(err.is_err());
        assert!(Reading { backlog: 0.0, in_flight: Some(3.0), ..Reading::default() }.checked().is_ok());
    }

    #[test]
    fn a_rejection_shows_huge_values_in_exponent_form() {
        let text = |reading: Reading| reading.checked().unwrap_err().to_string();
        assert_eq!(
            text(Reading { backlog: 1e300, ..Reading::default() }),
            "rejected reading: backlog 1e300 is not a count of messages"
        );
        assert_eq!(
            text(Reading { backlog: -5.0, ..Reading::default() }),
            "rejected reading: backlog -5 is not a count of messages"
        );
        assert_eq!(
            text(Reading { backlog: f64::NEG_INFINITY, ..Reading::default() }),
            "rejected reading: backlog -inf is not a count of messages"
        );
        let rate = Reading { backlog: 1.0, arrival_rate: Some(2.5e13), ..Reading::default() };
        assert_eq!(text(rate), "rejected reading: arrival rate 2.5e13 is not plausible");
    }
}
