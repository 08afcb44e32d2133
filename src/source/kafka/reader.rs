//! The Kafka reader: one librdkafka client per cluster and settings, end offsets in one ListOffsets per leader and
//! committed offsets in one OffsetFetch per group, for every group and topic read there.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::MetadataTopic;
use rdkafka::{Offset, TopicPartitionList};

use super::super::shared::{self, Batched, Batcher, Clients, Shared};
use super::super::{ReadBacklog, Reading, SourceError};
use super::groups;
use super::heads::Heads;
use super::lag::{Lag, PartitionOffsets};
use super::{Config, OffsetResetPolicy, SaslMechanism};
use crate::redact::Secrets;

impl SaslMechanism {
    fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl Config {
    /// The librdkafka settings of the agent's client: `properties` first, then everything the typed fields and the
    /// agent own, so that no property can make the agent commit offsets or measure another group.
    pub fn client_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("client.id", "queue-scaler");
        // librdkafka backs off reconnects up to 10 s by default, so a cluster back from an outage would go unseen for
        // several polls; a 1 s ceiling lets the first poll after the recovery read it. `properties` may change it.
        client.set("reconnect.backoff.ms", "100").set("reconnect.backoff.max.ms", "1000");
        for (key, value) in &self.properties {
            client.set(key, value);
        }
        let brokers: Vec<&str> = self.brokers.split(',').map(str::trim).collect();
        client
            .set("bootstrap.servers", brokers.join(","))
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false");
        let tls = self.tls.as_ref().filter(|tls| tls.enabled);
        let protocol = match (tls.is_some(), self.sasl.is_some()) {
            (true, true) => Some("SASL_SSL"),
            (true, false) => Some("SSL"),
            (false, true) => Some("SASL_PLAINTEXT"),
            (false, false) => None,
        };
        if let Some(protocol) = protocol {
            client.set("security.protocol", protocol);
        }
        if let Some(tls) = tls {
            for (key, value) in [
                ("ssl.ca.location", &tls.ca_file),
                ("ssl.certificate.location", &tls.cert_file),
                ("ssl.key.location", &tls.key_file),
                ("ssl.key.password", &tls.key_password),
            ] {
                if let Some(value) = value {
                    client.set(key, value);
                }
            }
        }
        if let Some(sasl) = &self.sasl {
            client
                .set("sasl.mechanism", sasl.mechanism.name())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        client
    }
}

/// A Kafka consumer group's lag reader: the group's own memory (partitions first seen uncommitted, the previous log
/// ends) on the cluster's shared client.
pub struct Kafka {
    config: Config,
    secrets: Secrets,
    cluster: Shared<ClusterClient>,
    /// Locked only between a batch's answer and the reading; a read never holds it across an await.
    state: Mutex<State>,
}

/// A partition, as (topic, partition).
pub(super) type PartitionKey = (String, i32);

/// One measured partition and its offsets.
type Measured = (PartitionKey, PartitionOffsets);

/// The log ends of one read: when, of which partitions, and their sum.
struct Ends {
    at: Instant,
    partitions: Vec<PartitionKey>,
    sum: i64,
}

/// What a read keeps for the next one.
#[derive(Default)]
struct State {
    /// Under `latest`, the log end of each uncommitted partition when the agent first saw it.
    first_seen_end: HashMap<PartitionKey, i64>,
    /// The previous read's log ends, for the arrival rate.
    previous_ends: Option<Ends>,
    /// Whether the group having no committed offset at all was already logged (until it commits again).
    told_no_commits: bool,
}

impl Kafka {
    /// A reader for `config` whose reads end within `read_timeout`, with a client of its own, created on the first
    /// read.
    pub fn new(config: Config, read_timeout: Duration) -> Kafka {
        Kafka::shared(config, read_timeout, &Clients::new())
    }

    /// A reader for `config` on the client `clients` holds for its cluster and settings (all but the group), or a
    /// new one; the client is created on the first read.
    pub fn shared(config: Config, read_timeout: Duration, clients: &Clients) -> Kafka {
        let secrets = config.secrets();
        let mut settings = config.client_config();
        // The client reads every group's offsets through the admin API; none is its own.
        settings.remove("group.id");
        let mut key: String = settings.config_map().iter().map(|(name, value)| format!("{name}={value}\n")).collect();
        key.push_str(&format!("{read_timeout:?}"));
        let endpoint = format!("Kafka brokers {}", secrets.scrub(&config.brokers));
        let cluster = clients.kafka(key, || ClusterClient {
            heads: Heads::new(&settings),
            settings,
            endpoint,
            secrets: secrets.clone(),
            read_timeout,
            client: Mutex::new(None),
            batcher: Batcher::default(),
        });
        Kafka { config, secrets, cluster, state: Mutex::new(State::default()) }
    }

    fn endpoint(&self) -> String {
        self.cluster.endpoint.clone()
    }

    /// What this reader asks the cluster's batch.
    fn request(&self) -> Request {
        Request {
            group: self.config.group.clone(),
            topic: self.config.topic.clone(),
            earliest: self.config.offset_reset_policy == OffsetResetPolicy::Earliest,
        }
    }

    /// Under `latest`, gives each uncommitted partition the log end the agent first saw it at (now, for one seen
    /// for the first time), and forgets partitions that got a commit.
    fn remember_first_seen(
        &self,
        first_seen: &mut HashMap<PartitionKey, i64>,
        mut partitions: Vec<Measured>,
    ) -> Vec<Measured> {
        if self.config.offset_reset_policy != OffsetResetPolicy::Latest {
            return partitions;
        }
        first_seen.retain(|key, _| partitions.iter().any(|(k, offsets)| k == key && offsets.committed.is_none()));
        for (key, offsets) in &mut partitions {
            if offsets.committed.is_none() {
                offsets.first_seen_end = Some(*first_seen.entry(key.clone()).or_insert(offsets.end));
            }
        }
        partitions
    }

    /// Logs once, until it commits again, that the group has no committed offset on what is measured.
    fn tell_when_nothing_is_committed(&self, told: &mut bool, partitions: &[Measured]) {
        let nothing_committed = partitions.iter().all(|(_, offsets)| offsets.committed.is_none());
        if !nothing_committed {
            *told = false;
            return;
        }
        if std::mem::replace(told, true) {
            return;
        }
        let group = self.secrets.scrub(&self.config.group);
        match &self.config.topic {
            Some(topic) => tracing::warn!(
                %group, %topic, policy = ?self.config.offset_reset_policy,
                "the consumer group has no committed offset on the topic (a new group, or its offsets expired); \
                 under `latest` only messages produced from now on count, and workers that join skip earlier ones"
            ),
            None => tracing::warn!(
                %group,
                "the consumer group has committed no offset on any topic, so there is nothing to measure and new \
                 messages cannot wake it; name the `topic`"
            ),
        }
    }
}

impl ReadBacklog for Kafka {
    async fn read(&self) -> Result<Reading, SourceError> {
        let request = self.request();
        let answer = shared::read(self.cluster.client(), request.clone()).await.ok_or_else(|| {
            SourceError::Protocol { endpoint: self.endpoint(), detail: "the read stopped with the agent".into() }
        })?;
        let measured = match answer.get(&request) {
            Some(result) => result.clone()?,
            None => {
                return Err(SourceError::Protocol {
                    endpoint: self.endpoint(),
                    detail: "the batch had no answer for this group".into(),
                });
            }
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        let now = Instant::now();
        let arrival_rate = arrival_rate(&mut state.previous_ends, now, &measured);
        let partitions = self.remember_first_seen(&mut state.first_seen_end, measured);
        self.tell_when_nothing_is_committed(&mut state.told_no_commits, &partitions);
        let lag = Lag::of(partitions.into_iter().map(|(_, offsets)| offsets), self.config.offset_reset_policy);
        let config = &self.config;
        Ok(Reading {
            backlog: lag.total as f64,
            replica_cap: lag.replica_cap(config.allow_idle_consumers, config.limit_to_partitions_with_lag),
            arrival_rate,
            wakes: lag.new_on_uncommitted,
            uncommitted_partitions: Some(lag.uncommitted),
            oldest_message_age: lag.oldest_unread_age(unix_millis()),
            ..Reading::default()
        })
    }
}

/// What one reader asks of its cluster: a group's offsets on a topic (or on every topic it committed to), with the
/// low watermarks of its uncommitted partitions under `earliest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Request {
    group: String,
    topic: Option<String>,
    earliest: bool,
}

/// One batch's answer: every request's measured partitions, or why not.
type Answers = HashMap<Request, Result<Vec<Measured>, SourceError>>;

/// One Kafka cluster and its settings (everything but the group), shared by every group read there: one librdkafka
/// client, created on the first read and kept (it reconnects by itself), and one batch of reads at a time.
pub(crate) struct ClusterClient {
    settings: ClientConfig,
    endpoint: String,
    secrets: Secrets,
    read_timeout: Duration,
    client: Mutex<Option<Client>>,
    batcher: Batcher<ClusterClient>,
    /// The next records' timestamps, for the oldest message's age.
    heads: Arc<Heads>,
}

struct Client {
    consumer: BaseConsumer,
    /// The newest client-level error librdkafka reported (broker down, authentication failed), cleared by a good
    /// read. A request that times out says only that; this says why.
    last_event: Cell<Option<RDKafkaErrorCode>>,
    /// Batches in a row in which every group's committed offsets timed out.
    silent_offset_fetches: Cell<u32>,
}

impl Client {
    /// Takes the error events librdkafka queued: nothing else polls this client, so without this they would pile up
    /// while a broker is down.
    fn take_events(&self) {
        while let Some(event) = self.consumer.poll(Duration::ZERO) {
            if let Some(code) = event.err().and_then(|e| e.rdkafka_error_code()) {
                self.last_event.set(Some(code));
            }
        }
    }
}

impl Batched for ClusterClient {
    type Key = Request;
    type Answer = Arc<Answers>;

    fn batcher(&self) -> &Batcher<Self> {
        &self.batcher
    }

    async fn fetch(self: Arc<Self>, requests: Vec<Request>) -> Arc<Answers> {
        let cluster = self.clone();
        let asked = requests.clone();
        // librdkafka's calls block: the batch runs on tokio's blocking pool, one thread per cluster at a time.
        match tokio::task::spawn_blocking(move || cluster.measure_all(asked)).await {
            Ok(mut answers) => {
                self.give_next_timestamps(&mut answers);
                Arc::new(answers)
            }
            Err(e) => {
                let error =
                    SourceError::Protocol { endpoint: self.endpoint.clone(), detail: format!("the read stopped: {e}") };
                Arc::new(requests.into_iter().map(|request| (request, Err(error.clone()))).collect())
            }
        }
    }
}

/// How a librdkafka error code reads as a [`SourceError`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Unreachable,
    NotFound,
    Denied,
    TimedOut,
    Other,
}

fn class_of(code: RDKafkaErrorCode) -> Class {
    use RDKafkaErrorCode as E;
    match code {
        E::BrokerTransportFailure
        | E::AllBrokersDown
        | E::Resolve
        | E::SSL
        | E::BrokerNotAvailable
        | E::LeaderNotAvailable
        | E::NotLeaderForPartition
        | E::CoordinatorNotAvailable
        | E::NotCoordinator
        | E::CoordinatorLoadInProgress
        | E::NetworkException => Class::Unreachable,
        E::UnknownTopicOrPartition | E::UnknownTopic | E::UnknownPartition => Class::NotFound,
        E::Authentication
        | E::SaslAuthenticationFailed
        | E::IllegalSASLState
        | E::UnsupportedSASLMechanism
        | E::TopicAuthorizationFailed
        | E::GroupAuthorizationFailed
        | E::ClusterAuthorizationFailed => Class::Denied,
        E::OperationTimedOut | E::RequestTimedOut | E::MessageTimedOut => Class::TimedOut,
        _ => Class::Other,
    }
}

/// Partitions as (topic, partition), with each one's position in that list.
struct Partitions {
    keys: Vec<PartitionKey>,
}

impl Partitions {
    fn list(&self, which: impl Fn(usize) -> bool, offset: Offset) -> Result<TopicPartitionList, KafkaError> {
        let mut list = TopicPartitionList::with_capacity(self.keys.len());
        for (i, (topic, partition)) in self.keys.iter().enumerate() {
            // Not `add_partition_offset`: it finds the element it just added by a linear search, which makes
            // building a list of 10,000 partitions cost more than the round trips it is for.
            if which(i) {
                list.add_partition(topic, *partition).set_offset(offset)?;
            }
        }
        Ok(list)
    }
}

/// One request on its way through a batch.
struct Plan {
    request: Request,
    /// Its partitions, then (in the same order) their committed offsets.
    partitions: Partitions,
    committed: Vec<Option<i64>>,
    /// Why it failed, once it did.
    failed: Option<SourceError>,
}

/// A partition's answer to a ListOffsets round: its offset, or the error librdkafka gave for it.
type Offsets = HashMap<PartitionKey, Result<Option<i64>, KafkaError>>;

impl ClusterClient {
    /// Gives each lagging partition the timestamp of the next record its group will read, as far as [`Heads`] has
    /// read it, and has the missing ones read in the background for the next batch.
    fn give_next_timestamps(&self, answers: &mut Answers) {
        let wanted: Vec<(PartitionKey, i64)> = answers
            .values()
            .filter_map(|answer| answer.as_ref().ok())
            .flatten()
            .filter_map(|(key, offsets)| Some((key.clone(), offsets.next_unread()?)))
            .collect();
        let found = self.heads.lookup_and_refresh(&wanted);
        for (key, offsets) in answers.values_mut().filter_map(|answer| answer.as_mut().ok()).flatten() {
            if let Some(next) = offsets.next_unread() {
                offsets.next_timestamp_ms = found.get(&(key.clone(), next)).copied();
            }
        }
    }

    /// Every request's partitions and offsets, in one Metadata request, one OffsetFetch per group and one ListOffsets
    /// per leader for all of them (two under `earliest`). A failure of the cluster fails every request; a failure of
    /// one group, topic or partition fails only the requests that measure it.
    fn measure_all(&self, requests: Vec<Request>) -> Answers {
        let deadline = Instant::now() + budget(self.read_timeout);
        let mut held = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        let client = match &mut *held {
            Some(client) => client,
            empty => match self.connect() {
                Ok(client) => empty.insert(client),
                Err(error) => return requests.into_iter().map(|request| (request, Err(error.clone()))).collect(),
            },
        };
        client.take_events();
        let answers = match self.measure(client, deadline, &requests) {
            Ok(answers) => {
                client.last_event.set(None);
                answers
            }
            Err(error) => requests.into_iter().map(|request| (request, Err(error.clone()))).collect(),
        };
        if client.silent_offset_fetches.get() >= REBUILD_AFTER_SILENT_BATCHES {
            tracing::warn!(
                endpoint = %self.endpoint, batches = REBUILD_AFTER_SILENT_BATCHES,
                "no consumer group's committed offsets came back in several reads while the cluster answered \
                 otherwise; replacing the Kafka client"
            );
            *held = None;
        }
        answers
    }

    fn connect(&self) -> Result<Client, SourceError> {
        let consumer = self.settings.create().map_err(|e| SourceError::Unreachable {
            endpoint: self.endpoint.clone(),
            detail: self.secrets.scrub(&format!("cannot create the Kafka client: {e}")),
        })?;
        Ok(Client { consumer, last_event: Cell::new(None), silent_offset_fetches: Cell::new(0) })
    }

    /// The time left before `deadline`, or why there is none.
    fn left(&self, client: &Client, deadline: Instant) -> Result<Duration, SourceError> {
        match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(self.timed_out(client, "the read's time ran out")),
        }
    }

    fn measure(&self, client: &Client, deadline: Instant, requests: &[Request]) -> Result<Answers, SourceError> {
        let consumer = &client.consumer;
        let named: BTreeSet<&str> = requests.iter().filter_map(|r| r.topic.as_deref()).collect();
        // One topic's metadata when one is asked for, as a single reader does; else every topic's, in one request.
        let one = match named.iter().next() {
            Some(topic) if named.len() == 1 && requests.iter().all(|r| r.topic.is_some()) => Some(*topic),
            _ => None,
        };
        let metadata = consumer
            .fetch_metadata(one, self.left(client, deadline)?)
            .map_err(|e| self.failed(client, "topic metadata", &e))?;
        let topics: BTreeMap<&str, &MetadataTopic> = metadata.topics().iter().map(|t| (t.name(), t)).collect();
        let mut plans: Vec<Plan> = requests
            .iter()
            .map(|request| {
                let (partitions, failed) = match self.partitions(request, &topics) {
                    Ok(partitions) => (partitions, None),
                    Err(error) => (Partitions { keys: Vec::new() }, Some(error)),
                };
                Plan { request: request.clone(), committed: vec![None; partitions.keys.len()], partitions, failed }
            })
            .collect();

        self.committed(client, deadline, &mut plans)?;
        for plan in plans.iter_mut().filter(|p| p.failed.is_none() && p.request.topic.is_none()) {
            let kept = committed_topics(&plan.partitions, &plan.committed);
            let (keys, offsets): (Vec<_>, Vec<_>) = std::mem::take(&mut plan.partitions.keys)
                .into_iter()
                .zip(std::mem::take(&mut plan.committed))
                .filter(|((topic, _), _)| kept.contains(topic.as_str()))
                .unzip();
            (plan.partitions, plan.committed) = (Partitions { keys }, offsets);
        }

        let live = |plan: &&Plan| plan.failed.is_none();
        let mut wanted: BTreeSet<&PartitionKey> = plans.iter().filter(live).flat_map(|p| &p.partitions.keys).collect();
        let end = self.offsets(client, deadline, &wanted, (Offset::End, "log-end offsets"))?;
        wanted = plans
            .iter()
            .filter(live)
            .filter(|p| p.request.earliest)
            .flat_map(|p| p.partitions.keys.iter().zip(&p.committed).filter(|(_, c)| c.is_none()).map(|(k, _)| k))
            .collect();
        let low = self.offsets(client, deadline, &wanted, (Offset::Beginning, "low watermarks"))?;

        Ok(plans.into_iter().map(|plan| (plan.request.clone(), self.assemble(client, plan, &end, &low))).collect())
    }

    /// Every partition `request` measures: its topic's, or every topic's when it names none. `topics` is the
    /// metadata's, by name.
    fn partitions(
        &self,
        request: &Request,
        topics: &BTreeMap<&str, &MetadataTopic>,
    ) -> Result<Partitions, SourceError> {
        let measured: Vec<&MetadataTopic> = match &request.topic {
            Some(name) => topics.get(name.as_str()).copied().into_iter().collect(),
            None => topics.values().copied().collect(),
        };
        let mut keys = Vec::new();
        for topic in measured {
            if let Some(error) = topic.error() {
                match &request.topic {
                    Some(_) => {
                        let code = RDKafkaErrorCode::from(error);
                        let what = format!("topic `{}` on {}", topic.name(), self.endpoint);
                        return Err(self.classified(code, what, code.to_string(), None));
                    }
                    // One topic being created or deleted as we look must not fail every read.
                    None => continue,
                }
            }
            keys.extend(topic.partitions().iter().map(|p| (topic.name().to_owned(), p.id())));
        }
        match &request.topic {
            Some(name) if keys.is_empty() => Err(SourceError::NotFound {
                what: format!("topic `{name}` on {}", self.endpoint),
                detail: "the cluster lists no partitions for it".into(),
            }),
            _ => Ok(Partitions { keys }),
        }
    }

    /// The committed offsets of every plan's group on its partitions: one OffsetFetch per group to its coordinator,
    /// all in flight at once on this one client (librdkafka's ListConsumerGroupOffsets admin call).
    fn committed(&self, client: &Client, deadline: Instant, plans: &mut [Plan]) -> Result<(), SourceError> {
        let mut asks = Vec::new();
        for (i, plan) in plans.iter_mut().enumerate() {
            // librdkafka refuses an empty partition list: a cluster with no topics has no lag.
            if plan.failed.is_some() || plan.partitions.keys.is_empty() {
                continue;
            }
            match plan.partitions.list(|_| true, Offset::Invalid) {
                Ok(list) => asks.push((i, list)),
                Err(error) => plan.failed = Some(self.failed(client, &group_of(&plan.request), &error)),
            }
        }
        if asks.is_empty() {
            return Ok(());
        }
        let asked: Vec<(&str, &TopicPartitionList)> =
            asks.iter().map(|(i, list)| (plans[*i].request.group.as_str(), list)).collect();
        let answers = groups::committed_offsets(&client.consumer, &asked, self.left(client, deadline)?);
        // No answer at all, or librdkafka's own request timeout: the coordinator did not answer.
        let silent = answers.iter().all(|answer| match answer {
            None => true,
            Some(Err(error)) => error.rdkafka_error_code().map(class_of) == Some(Class::TimedOut),
            Some(Ok(_)) => false,
        });
        client.silent_offset_fetches.set(if silent { client.silent_offset_fetches.get() + 1 } else { 0 });
        for ((i, _), answer) in asks.iter().zip(answers) {
            let plan = &mut plans[*i];
            let group = group_of(&plan.request);
            let offsets = match answer {
                None => {
                    plan.failed = Some(self.timed_out(client, &format!("{group}: no answer in time")));
                    continue;
                }
                Some(Err(error)) => {
                    plan.failed = Some(self.failed(client, &group, &error));
                    continue;
                }
                Some(Ok(offsets)) => offsets,
            };
            let index: HashMap<(&str, i32), usize> =
                plan.partitions.keys.iter().enumerate().map(|(i, (t, p))| ((t.as_str(), *p), i)).collect();
            for offset in offsets {
                if let Some(code) = offset.error {
                    let what = format!("partition {}/{}", offset.topic, offset.partition);
                    plan.failed = Some(self.failed(client, &what, &KafkaError::OffsetFetch(code)));
                    break;
                }
                if let Some(&at) = index.get(&(offset.topic.as_str(), offset.partition)) {
                    plan.committed[at] = (offset.offset >= 0).then_some(offset.offset);
                }
            }
        }
        Ok(())
    }

    /// One ListOffsets round per leader for `partitions` at `at` (`End` or `Beginning`, with what that reads, for
    /// errors). A round that fails as a whole fails the batch; a partition's own error stays with that partition.
    fn offsets(
        &self,
        client: &Client,
        deadline: Instant,
        partitions: &BTreeSet<&PartitionKey>,
        (at, what): (Offset, &str),
    ) -> Result<Offsets, SourceError> {
        if partitions.is_empty() {
            return Ok(Offsets::new());
        }
        let mut asked = TopicPartitionList::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            asked.add_partition(topic, *partition).set_offset(at).map_err(|e| self.failed(client, what, &e))?;
        }
        let answer = client
            .consumer
            .offsets_for_times(asked, self.left(client, deadline)?)
            .map_err(|e| self.failed(client, what, &e))?;
        Ok(answer
            .elements()
            .iter()
            .map(|element| {
                let offset = element.error().map(|()| match element.offset() {
                    Offset::Offset(n) => Some(n),
                    _ => None,
                });
                ((element.topic().to_owned(), element.partition()), offset)
            })
            .collect())
    }

    /// A plan's measured partitions, or the first thing that failed it.
    fn assemble(
        &self,
        client: &Client,
        plan: Plan,
        end: &Offsets,
        low: &Offsets,
    ) -> Result<Vec<Measured>, SourceError> {
        if let Some(error) = plan.failed {
            return Err(error);
        }
        let offset = |offsets: &Offsets, key: &PartitionKey| -> Result<Option<i64>, SourceError> {
            match offsets.get(key) {
                Some(Ok(offset)) => Ok(*offset),
                Some(Err(error)) => Err(self.failed(client, &format!("partition {}/{}", key.0, key.1), error)),
                None => Ok(None),
            }
        };
        let mut measured = Vec::with_capacity(plan.partitions.keys.len());
        for (key, committed) in plan.partitions.keys.into_iter().zip(plan.committed) {
            let end = offset(end, &key)?.ok_or_else(|| SourceError::Protocol {
                endpoint: self.endpoint.clone(),
                detail: format!("no log-end offset for {}/{}", key.0, key.1),
            })?;
            let low = if plan.request.earliest && committed.is_none() { offset(low, &key)? } else { None };
            measured
                .push((key, PartitionOffsets { committed, end, low, first_seen_end: None, next_timestamp_ms: None }));
        }
        Ok(measured)
    }

    /// A failed call to librdkafka as a [`SourceError`]; `what` names the thing asked about.
    fn failed(&self, client: &Client, what: &str, error: &KafkaError) -> SourceError {
        let Some(code) = error.rdkafka_error_code() else {
            return SourceError::Protocol {
                endpoint: self.endpoint.clone(),
                detail: self.secrets.scrub(&error.to_string()),
            };
        };
        if class_of(code) == Class::TimedOut {
            return self.timed_out(client, &format!("{what}: {error}"));
        }
        self.classified(code, format!("{what} on {}", self.endpoint), error.to_string(), None)
    }

    /// A call that ran out of time: unreachable or denied when librdkafka said so meanwhile, else a timeout.
    fn timed_out(&self, client: &Client, detail: &str) -> SourceError {
        client.take_events();
        match client.last_event.get() {
            Some(code) if matches!(class_of(code), Class::Unreachable | Class::Denied) => {
                self.classified(code, self.endpoint.clone(), detail.to_owned(), Some(code))
            }
            _ => SourceError::Timeout(self.read_timeout),
        }
    }

    fn classified(
        &self,
        code: RDKafkaErrorCode,
        what: String,
        detail: String,
        cause: Option<RDKafkaErrorCode>,
    ) -> SourceError {
        let detail = match cause {
            Some(cause) => format!("{detail}; the client reports {cause:?}: {cause}"),
            None => detail,
        };
        let (what, detail) = (self.secrets.scrub(&what), self.secrets.scrub(&detail));
        match class_of(code) {
            Class::Unreachable | Class::TimedOut => {
                SourceError::Unreachable { endpoint: self.endpoint.clone(), detail }
            }
            Class::NotFound => SourceError::NotFound { what, detail },
            Class::Denied => SourceError::Denied { what, detail },
            Class::Other => {
                SourceError::Protocol { endpoint: self.endpoint.clone(), detail: format!("{what}: {detail}") }
            }
        }
    }
}

fn group_of(request: &Request) -> String {
    format!("consumer group `{}`", request.group)
}

/// Messages produced per second since the previous read, when it measured the same partitions; remembers this read
/// for the next. A partition set that changed (a topic joined the measured ones, partitions were added) or an end
/// that went back (a topic recreated) gives no rate, rather than a wrong one.
fn arrival_rate(previous: &mut Option<Ends>, now: Instant, measured: &[Measured]) -> Option<f64> {
    let partitions: Vec<PartitionKey> = measured.iter().map(|(key, _)| key.clone()).collect();
    let sum = measured.iter().fold(0i64, |sum, (_, offsets)| sum.saturating_add(offsets.end));
    let then = previous.replace(Ends { at: now, partitions, sum })?;
    let seconds = now.saturating_duration_since(then.at).as_secs_f64();
    let same = previous.as_ref().is_some_and(|ends| ends.partitions == then.partitions);
    (same && seconds > 0.0 && sum >= then.sum).then(|| (sum - then.sum) as f64 / seconds)
}

/// The topics where the group has committed at least one partition.
fn committed_topics(partitions: &Partitions, committed: &[Option<i64>]) -> HashSet<String> {
    partitions.keys.iter().zip(committed).filter(|(_, c)| c.is_some()).map(|((topic, _), _)| topic.clone()).collect()
}

/// After this many batches in a row in which every group's committed offsets timed out, the client is replaced. After an
/// outage librdkafka can keep a client whose metadata requests succeed while its OffsetFetch requests (sent to the
/// groups' coordinator) never come back — seen for over 45 s on the mock cluster — and a fresh client looks the
/// coordinator up again.
const REBUILD_AFTER_SILENT_BATCHES: u32 = 3;

/// The wall clock in Unix milliseconds, as Kafka's record timestamps count.
fn unix_millis() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// The share of the agent's read timeout librdkafka's calls get: a tenth is left so that a read that runs out of time
/// reports why (a broker down, say) before the agent abandons it as a bare timeout.
fn budget(read_timeout: Duration) -> Duration {
    read_timeout.saturating_sub(read_timeout / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "brokers: kafka:9092\ngroup: transcoders";

    fn parse(yaml: &str) -> Config {
        serde_norway::from_str(yaml).expect("parses")
    }

    fn messages(config: &Config) -> Vec<String> {
        config.problems().into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect()
    }

    fn setting(config: &Config, key: &str) -> Option<String> {
        config.client_config().get(key).map(str::to_owned)
    }

    #[test]
    fn defaults_measure_every_committed_topic_with_latest_and_a_cap() {
        let config = parse(MINIMAL);
        assert_eq!(config.topic, None);
        assert_eq!(config.offset_reset_policy, OffsetResetPolicy::Latest);
        assert!(!config.allow_idle_consumers && !config.limit_to_partitions_with_lag);
        assert_eq!(config.measured(), "transcoders/*");
        assert!(messages(&config).is_empty(), "{:?}", messages(&config));
        assert!(serde_norway::from_str::<Config>("brokers: k:9092\ngroup: g\nconsumerGroup: g").is_err());
    }

    #[test]
    fn the_client_never_commits_and_measures_only_the_configured_group() {
        let config = parse(&format!(
            "{MINIMAL}\ntopic: videos\nproperties:\n  group.id: other\n  enable.auto.commit: true\n  socket.keepalive.enable: true\n  fetch.wait.max.ms: 100"
        ));
        assert_eq!(setting(&config, "group.id").as_deref(), Some("transcoders"));
        assert_eq!(setting(&config, "enable.auto.commit").as_deref(), Some("false"));
        assert_eq!(setting(&config, "bootstrap.servers").as_deref(), Some("kafka:9092"));
        assert_eq!(setting(&config, "socket.keepalive.enable").as_deref(), Some("true"));
        assert_eq!(setting(&config, "fetch.wait.max.ms").as_deref(), Some("100"), "numbers pass as strings");
        assert_eq!(
            messages(&config),
            [
                "properties.enable.auto.commit: the agent never commits the group's offsets, so this stays false; remove it from properties",
                "properties.group.id: set by `group`; remove it from properties",
            ]
        );
    }

    #[test]
    fn tls_and_sasl_become_librdkafka_settings() {
        let config = parse(&format!(
            "{MINIMAL}\nsasl: {{mechanism: SCRAM-SHA-512, username: app, password: hunter2}}\ntls: {{caFile: /ca.pem, certFile: /c.pem, keyFile: /k.pem}}"
        ));
        assert!(messages(&config).is_empty(), "{:?}", messages(&config));
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "app"),
            ("sasl.password", "hunter2"),
            ("ssl.ca.location", "/ca.pem"),
            ("ssl.certificate.location", "/c.pem"),
            ("ssl.key.location", "/k.pem"),
        ] {
            assert_eq!(setting(&config, key).as_deref(), Some(value), "{key}");
        }
        let sasl_only = parse(&format!("{MINIMAL}\nsasl: {{mechanism: PLAIN, username: app, password: pw}}"));
        assert_eq!(setting(&sasl_only, "security.protocol").as_deref(), Some("SASL_PLAINTEXT"));
        let tls_only = parse(&format!("{MINIMAL}\ntls: {{}}"));
        assert_eq!(setting(&tls_only, "security.protocol").as_deref(), Some("SSL"));
        assert_eq!(setting(&parse(MINIMAL), "security.protocol"), None, "librdkafka's default, plaintext");
        assert!(
            serde_norway::from_str::<Config>(&format!(
                "{MINIMAL}\nsasl: {{mechanism: GSSAPI, username: a, password: b}}"
            ))
            .is_err()
        );
    }

    #[test]
    fn problems_name_the_field_and_the_fix() {
        let config = parse(
            "brokers: ' , '\ngroup: ''\ntopic: ''\nallowIdleConsumers: true\nlimitToPartitionsWithLag: true\n\
             sasl: {mechanism: PLAIN, username: '', password: ''}\ntls: {enabled: false, certFile: /c.pem}\n\
             properties: {sasl.username: x, bootstrap.servers: k:9092, session.timeout.ms: soon, no.such.setting: 1}",
        );
        assert_eq!(
            messages(&config),
            [
                "brokers: is empty; list the bootstrap brokers, e.g. `kafka-0.kafka:9092,kafka-1.kafka:9092`",
                "group: is empty; name the workers' consumer group (their `group.id`)",
                "topic: is empty; name the topic, or drop `topic` to measure every topic the group has committed to",
                "limitToPartitionsWithLag: contradicts `allowIdleConsumers: true`, which lifts the partition cap this tightens; keep one",
                "tls.enabled: is false, but files are set for TLS; set `enabled: true` or drop the `tls` block",
                "tls.keyFile: missing; `certFile` needs the private key that goes with it, set both or neither",
                "sasl.username: is empty; set the SASL user",
                "sasl.password: is empty; set it from the environment, e.g. `password: ${KAFKA_PASSWORD}`",
                "properties.bootstrap.servers: set by `brokers`; remove it from properties",
                "properties.no.such.setting: librdkafka rejects it: No such configuration property: \"no.such.setting\"",
                "properties.sasl.username: set by `sasl`; remove it from properties, or drop `sasl` and set everything here",
                "properties.session.timeout.ms: librdkafka rejects it: Invalid value for configuration property \"session.timeout.ms\"",
            ]
        );
        let gap = parse("brokers: a:9092,,b:9092\ngroup: g");
        assert_eq!(
            messages(&gap),
            ["brokers: `a:9092,,b:9092` has an empty entry; separate brokers with single commas"]
        );
    }

    #[test]
    fn passwords_and_secret_properties_are_secrets() {
        let config = parse(&format!(
            "{MINIMAL}\nsasl: {{mechanism: PLAIN, username: app, password: hunter2}}\ntls: {{keyFile: /k, certFile: /c, keyPassword: pem-pass}}\nproperties:\n  sasl.oauthbearer.client.secret: s3cret\n  ssl.keystore.password: store-pass\n  ssl_engine_id: dynamic"
        ));
        assert_eq!(config.secrets().scrub("hunter2 pem-pass s3cret store-pass dynamic"), "*** *** *** *** dynamic");
    }

    #[test]
    fn the_budget_leaves_the_agent_a_tenth_of_its_timeout() {
        assert_eq!(budget(Duration::from_secs(10)), Duration::from_secs(9));
        assert_eq!(budget(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn error_codes_map_to_source_error_kinds() {
        assert_eq!(class_of(RDKafkaErrorCode::AllBrokersDown), Class::Unreachable);
        assert_eq!(class_of(RDKafkaErrorCode::UnknownTopicOrPartition), Class::NotFound);
        assert_eq!(class_of(RDKafkaErrorCode::SaslAuthenticationFailed), Class::Denied);
        assert_eq!(class_of(RDKafkaErrorCode::GroupAuthorizationFailed), Class::Denied);
        assert_eq!(class_of(RDKafkaErrorCode::OperationTimedOut), Class::TimedOut);
        assert_eq!(class_of(RDKafkaErrorCode::InvalidMessage), Class::Other);
    }
}
