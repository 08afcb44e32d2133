//! Kafka: the backlog is a consumer group's lag — per partition, log-end offset minus the group's committed
//! offset, clamped at 0, summed over the topic's partitions.
//!
//! **One client per cluster, one batch per poll.** Every group read on one cluster with the same settings (brokers,
//! TLS, SASL, `properties`) shares one librdkafka client, and the reads of all of them that fall in the same moment
//! (see [`super::shared`]) go out as one batch, each part in as few round trips as the protocol allows: the topics'
//! partitions (one Metadata request), each group's committed offsets for its partitions (one OffsetFetch per group
//! to its coordinator, all in flight at once), and the log-end offsets of every partition of every group (one
//! ListOffsets per partition leader, through `offsets_for_times` with `Offset::End`). Asking per partition
//! (`fetch_watermarks`) costs a round trip each: seconds for a thousand partitions at a couple of milliseconds of
//! latency, where the batch costs a few. A failure of the cluster fails the reads of all its groups; a missing
//! topic, a refused group or a partition without a leader fails only the reads that measure it.
//!
//! **Committed offsets without a client per group.** A consumer's `committed_offsets` asks for its own `group.id`,
//! fixed when the client is made, and every librdkafka client costs a thread per broker: a client per group would be
//! a thousand clients for a thousand targets. The shared client has no `group.id`; it asks for each group through
//! librdkafka's ListConsumerGroupOffsets admin call (FindCoordinator, then the same OffsetFetch), always naming the
//! partitions (see `groups.rs`, which calls librdkafka directly since the rdkafka crate does not wrap that call).
//!
//! **The agent never joins a group.** It never subscribes, polls for messages or commits, so measuring the lag can
//! never trigger a rebalance of the workers or move their offsets. Auto-commit is forced off whatever `properties`
//! say.
//!
//! **Partitions the group never committed** follow `offsetResetPolicy`, which should match the workers'
//! `auto.offset.reset`. Under the default, `latest`, what was there when the agent first saw such a partition is no
//! lag: a consumer starting at the end will skip it, so scaling a new group on an old topic to the maximum for that
//! history would be waste. What is produced there *after* the agent first looked counts, and sets
//! [`Reading::wakes`](super::Reading::wakes): a group with no committed offsets (a new one, or one whose offsets expired while it sat at
//! zero) has no member to commit, so without it the messages would pile up unseen and the Deployment would never
//! wake. That count stays until the group commits there; workers joining under `latest` skip those messages, which
//! is why `check` warns about `latest` and `earliest` is the usual choice for a work queue. `earliest` counts from the
//! low watermark, because such workers will read all of it; the low watermarks cost one more ListOffsets round,
//! asked only for the uncommitted partitions and only under this policy. Every reading reports how many partitions
//! have no committed offset (`queue_scaler_kafka_uncommitted_partitions`), and a group with none at all is logged
//! once.
//!
//! **The arrival rate** is the log-end offsets' growth between two reads of the same partitions, which latency mode
//! uses as the source's own rate; the committed offsets' growth is then what the workers completed, so the job
//! duration is learned without configuring it.
//!
//! **The oldest message's age** is how long ago the next record the group will read on a lagging partition was
//! produced (its timestamp), the oldest over those partitions; 0 with no lag anywhere. Reading a record costs a
//! fetch, which would slow every read, so the records are read in the background, at most one round per cluster at
//! a time, and each batch uses what has been read so far (`heads.rs`): the age lags the offsets by a poll, and is
//! unknown until every lagging partition's record has been read once.
//!
//! **Without `topic`**, every topic the group has committed offsets for is measured. Kafka's own answer to "which
//! topics" is OffsetFetch without a partition list ("all"); it is not used because brokers before 0.10.2 and
//! librdkafka's mock cluster that the tests run on answer it with nothing. Instead the batch fetches metadata for
//! all topics, asks the group's OffsetFetch for all their partitions, and keeps the topics where the group has any
//! committed offset. On clusters with very many topics that OffsetFetch is large: name the topic when you can.
//!
//! **Replicas** are capped at the number of partitions measured, since a group gives each partition to one
//! consumer; see [`lag::Lag::replica_cap`] for `allowIdleConsumers` and `limitToPartitionsWithLag`.
//!
//! librdkafka's calls block, so a batch runs on tokio's blocking pool — one thread per cluster at a time, however
//! many groups — on the cluster's client, created at the first read and kept (it reconnects by itself; after an
//! outage it is replaced if three reads in a row get no group's committed offsets in time while the cluster answers
//! otherwise, which librdkafka was seen to do for over 45 s). Its calls
//! get a budget just under the agent's `readTimeout`, so that they end — and report why — before the agent gives up
//! on the read, and no blocking thread of a read outlives a poll (a background round of record reads lasts at most
//! 2 s, on a second client).

#[cfg(feature = "kafka")]
mod groups;
#[cfg(feature = "kafka")]
mod heads;
pub mod lag;
#[cfg(feature = "kafka")]
mod reader;

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_norway::Value;

use crate::redact::Secrets;
use crate::validation::Problem;
pub use lag::OffsetResetPolicy;
#[cfg(feature = "kafka")]
pub(crate) use reader::ClusterClient;
#[cfg(feature = "kafka")]
pub use reader::Kafka;

/// `type: kafka` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Bootstrap brokers, comma-separated: `kafka-0.kafka:9092,kafka-1.kafka:9092`.
    pub brokers: String,
    /// The topic the workers consume; default: every topic the group has committed offsets for.
    #[serde(default)]
    pub topic: Option<String>,
    /// The workers' consumer group (their `group.id`).
    pub group: String,
    /// What partitions the group never committed count as: `latest` (no lag, the default) or `earliest`.
    #[serde(default)]
    pub offset_reset_policy: OffsetResetPolicy,
    /// Let replicas exceed the partition count (KEDA's setting of the same name).
    #[serde(default)]
    pub allow_idle_consumers: bool,
    /// Cap replicas at the partitions that have lag instead of all partitions (KEDA's setting of the same name).
    #[serde(default)]
    pub limit_to_partitions_with_lag: bool,
    /// TLS to the brokers.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// SASL authentication with a username and password.
    #[serde(default)]
    pub sasl: Option<Sasl>,
    /// Any other librdkafka setting, passed through as is (e.g. `socket.keepalive.enable: true`).
    #[serde(default, deserialize_with = "librdkafka_values")]
    pub properties: BTreeMap<String, String>,
}

/// `tls:` settings; each file maps to the librdkafka setting named beside it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    /// Default true: writing a `tls:` block is asking for TLS.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// CA bundle to verify the brokers with (`ssl.ca.location`); default: the system's.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client certificate for mutual TLS (`ssl.certificate.location`).
    #[serde(default)]
    pub cert_file: Option<String>,
    /// The client certificate's private key (`ssl.key.location`).
    #[serde(default)]
    pub key_file: Option<String>,
    /// The private key's passphrase (`ssl.key.password`).
    #[serde(default)]
    pub key_password: Option<String>,
}

fn enabled() -> bool {
    true
}

/// `sasl:` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; other mechanisms go in `properties`.
    pub mechanism: SaslMechanism,
    /// The SASL user.
    pub username: String,
    /// The SASL password, from the environment: `password: ${KAFKA_PASSWORD}`.
    pub password: String,
}

/// The username-and-password SASL mechanisms, spelt as Kafka spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// `PLAIN`: the password itself goes over the wire, so use it with TLS.
    #[serde(rename = "PLAIN")]
    Plain,
    /// `SCRAM-SHA-256`
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// `SCRAM-SHA-512`
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// librdkafka's complaint about one of its settings. Only librdkafka knows them, so a build without it has none and
/// checks the rest of the source.
fn librdkafka_refuses(key: &str, value: &str) -> Option<String> {
    #[cfg(feature = "kafka")]
    return match rdkafka::ClientConfig::new().set(key, value).create_native_config() {
        Err(rdkafka::error::KafkaError::ClientConfig(_, why, ..)) => Some(why),
        _ => None,
    };
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (key, value);
        None
    }
}

/// librdkafka takes every setting as a string; YAML users write `true` and `6000` unquoted.
fn librdkafka_values<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    BTreeMap::<String, Value>::deserialize(deserializer)?
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key, text)),
            Value::Number(number) => Ok((key, number.to_string())),
            Value::Bool(flag) => Ok((key, flag.to_string())),
            _ => Err(D::Error::custom(format!(
                "`{key}` must be a string, number or boolean, as librdkafka settings are"
            ))),
        })
        .collect()
}

/// Words in a librdkafka setting's name that mark its value as a credential.
const SECRET_WORDS: &[&str] = &["password", "secret", "key"];

impl Config {
    /// `group`'s lag on `brokers` over every topic it committed to, with every other setting at its default.
    pub fn new(brokers: &str, group: &str) -> Config {
        Config {
            brokers: brokers.to_owned(),
            topic: None,
            group: group.to_owned(),
            offset_reset_policy: OffsetResetPolicy::Latest,
            allow_idle_consumers: false,
            limit_to_partitions_with_lag: false,
            tls: None,
            sasl: None,
            properties: Default::default(),
        }
    }

    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let brokers: Vec<&str> = self.brokers.split(',').map(str::trim).collect();
        if brokers.iter().all(|b| b.is_empty()) {
            problems.push(Problem::new(
                "brokers",
                "is empty; list the bootstrap brokers, e.g. `kafka-0.kafka:9092,kafka-1.kafka:9092`",
            ));
        } else if brokers.iter().any(|b| b.is_empty()) {
            problems.push(Problem::new(
                "brokers",
                format!("`{}` has an empty entry; separate brokers with single commas", self.brokers),
            ));
        }
        if self.group.trim().is_empty() {
            problems.push(Problem::new("group", "is empty; name the workers' consumer group (their `group.id`)"));
        }
        if self.topic.as_deref().is_some_and(|t| t.trim().is_empty()) {
            problems.push(Problem::new(
                "topic",
                "is empty; name the topic, or drop `topic` to measure every topic the group has committed to",
            ));
        }
        if self.allow_idle_consumers && self.limit_to_partitions_with_lag {
            problems.push(Problem::new(
                "limitToPartitionsWithLag",
                "contradicts `allowIdleConsumers: true`, which lifts the partition cap this tightens; keep one",
            ));
        }
        problems.extend(self.tls.iter().flat_map(Tls::problems));
        problems.extend(self.sasl.iter().flat_map(Sasl::problems));
        problems.extend(self.property_problems());
        problems
    }

    fn property_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (key, value) in &self.properties {
            let path = format!("properties.{key}");
            if let Some(owner) = self.owner_of(key) {
                problems.push(Problem::new(path, owner));
            } else if let Some(why) = librdkafka_refuses(key, value) {
                // librdkafka's message quotes the value, which may be a credential.
                problems.push(Problem::new(path, format!("librdkafka rejects it: {}", self.secrets().scrub(&why))));
            }
        }
        problems
    }

    /// Why `key` may not be in `properties`, when a typed field sets it or the agent depends on its value.
    fn owner_of(&self, key: &str) -> Option<&'static str> {
        match key {
            "bootstrap.servers" | "metadata.broker.list" => Some("set by `brokers`; remove it from properties"),
            "group.id" => Some("set by `group`; remove it from properties"),
            "enable.auto.commit" => {
                Some("the agent never commits the group's offsets, so this stays false; remove it from properties")
            }
            "security.protocol" if self.tls.is_some() || self.sasl.is_some() => {
                Some("set by `tls` and `sasl`; remove it from properties, or drop those and set everything here")
            }
            "sasl.mechanism" | "sasl.mechanisms" | "sasl.username" | "sasl.password" if self.sasl.is_some() => {
                Some("set by `sasl`; remove it from properties, or drop `sasl` and set everything here")
            }
            "ssl.ca.location" | "ssl.certificate.location" | "ssl.key.location" | "ssl.key.password"
                if self.tls.is_some() =>
            {
                Some("set by `tls`; remove it from properties, or drop `tls` and set everything here")
            }
            _ => None,
        }
    }

    pub(super) fn warnings(&self) -> Vec<Problem> {
        if self.offset_reset_policy == OffsetResetPolicy::Earliest {
            return Vec::new();
        }
        vec![Problem::new(
            "offsetResetPolicy",
            "is `latest` (the default): workers with auto.offset.reset=latest that join a group without committed \
             offsets (a new group, or one whose offsets expired while it sat at zero) skip every message produced \
             before they joined; `earliest` is the usual choice for a work queue, here and in the workers",
        )]
    }

    pub(super) fn secrets(&self) -> Secrets {
        let mut secrets = Secrets::default();
        if let Some(sasl) = &self.sasl {
            secrets.add(sasl.password.as_str());
        }
        if let Some(password) = self.tls.as_ref().and_then(|tls| tls.key_password.as_deref()) {
            secrets.add(password);
        }
        for (key, value) in &self.properties {
            let key = key.to_ascii_lowercase();
            if SECRET_WORDS.iter().any(|word| key.contains(word)) {
                secrets.add(value.as_str());
            }
        }
        secrets
    }

    /// What a default source name shows: `GROUP/TOPIC`, with `*` for every committed topic.
    pub fn measured(&self) -> String {
        format!("{}/{}", self.group, self.topic.as_deref().unwrap_or("*"))
    }
}

impl Tls {
    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let files = [&self.ca_file, &self.cert_file, &self.key_file, &self.key_password];
        if !self.enabled && files.iter().any(|f| f.is_some()) {
            problems.push(Problem::new(
                "tls.enabled",
                "is false, but files are set for TLS; set `enabled: true` or drop the `tls` block",
            ));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => problems.push(Problem::new(
                "tls.keyFile",
                "missing; `certFile` needs the private key that goes with it, set both or neither",
            )),
            (None, Some(_)) => problems.push(Problem::new(
                "tls.certFile",
                "missing; `keyFile` needs the certificate that goes with it, set both or neither",
            )),
            _ => {}
        }
        if self.key_password.is_some() && self.key_file.is_none() {
            problems.push(Problem::new("tls.keyPassword", "only applies with `keyFile`; set it or drop this"));
        }
        problems
    }
}

impl Sasl {
    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.username.is_empty() {
            problems.push(Problem::new("sasl.username", "is empty; set the SASL user"));
        }
        if self.password.is_empty() {
            problems.push(Problem::new(
                "sasl.password",
                "is empty; set it from the environment, e.g. `password: ${KAFKA_PASSWORD}`",
            ));
        }
        problems
    }
}
