//! One client per broker, shared by every source that reads it, and the batching of their reads.
//!
//! **[`Clients`]** is the agent's registry of broker clients: one AMQP connection per RabbitMQ URL (endpoint,
//! credentials, vhost and options), one batch reader per RabbitMQ management API, credentials and vhost, one
//! librdkafka client per Kafka cluster and settings, one SQS client per region and endpoint, one Monitoring client
//! per endpoint and one Pub/Sub admin client per endpoint, and a read bound per Prometheus server (all of them over
//! the process's one HTTP client). A source is a handle onto its client; an extra target on a broker the agent
//! already reads costs that handle, not a connection and its threads. The agent creates one registry and builds
//! every source through it, so a config reload that keeps a broker keeps its client and its connection. A client
//! nobody holds any more is closed [`KEEP`] after its last source went away.
//!
//! **`Batcher`** coalesces the reads of many sources into one request to the broker, where the broker can answer
//! for many queues at once. Targets tick at slightly different moments: a batch leaves once reads stop arriving for
//! [`GATHER`] (at most [`GATHER_AT_MOST`] after the first), a read of something the batch in flight asks joins it if
//! it left at most [`JOIN_LATE`] before, and any other read waits for the next batch, which leaves as soon as the
//! one in flight is answered. Either way a read is answered with data the broker gave after (or
//! within [`JOIN_LATE`] of) the moment it was asked: every target still decides within one poll of its data
//! changing. Each client runs its batches on a task of its own, one at a time, so a slow or broken broker holds up
//! only its own sources.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{kafka, prometheus, pubsub, rabbitmq, sqs};

/// How long a client that no source holds any more stays open: long enough for a config reload, which drops the old
/// sources just before it builds the new ones, to find and keep it.
pub const KEEP: Duration = Duration::from_secs(60);

/// How long a batch waits for more reads after the last one arrived: targets that tick at nearly the same moment
/// join it, and a lone read waits this long.
pub const GATHER: Duration = Duration::from_millis(5);

/// The longest a batch waits for reads to stop arriving before it leaves anyway.
pub const GATHER_AT_MOST: Duration = Duration::from_millis(100);

/// How long after a batch was sent a read may still take its answer instead of waiting for the next batch.
pub const JOIN_LATE: Duration = Duration::from_millis(40);

/// The most reads one client sends at once where the broker has no batch call (SQS, Prometheus, AMQP channels).
pub const CONCURRENT_READS: usize = 16;

/// The agent's broker clients. Cloning it gives another handle to the same registry.
#[derive(Clone, Default)]
pub struct Clients {
    registry: Arc<Registry>,
}

#[derive(Default)]
struct Registry {
    amqp: Pool<rabbitmq::AmqpClient>,
    management: Pool<rabbitmq::ManagementClient>,
    kafka: Pool<kafka::ClusterClient>,
    sqs: Pool<sqs::SqsClient>,
    monitoring: Pool<pubsub::MonitoringClient>,
    pubsub_admin: Pool<pubsub::AdminClient>,
    prometheus: Pool<prometheus::ServerClient>,
    sweeping: std::sync::OnceLock<()>,
}

impl Registry {
    fn sweep(&self) {
        self.amqp.sweep();
        self.management.sweep();
        self.kafka.sweep();
        self.sqs.sweep();
        self.monitoring.sweep();
        self.pubsub_admin.sweep();
        self.prometheus.sweep();
    }

    /// Clients whose sources are gone are closed by the next lookup after [`KEEP`], or by a task that sweeps every
    /// [`KEEP`] when there is a runtime to run it (there is in the agent), so that a broker a reload removed is not
    /// kept connected until the reload after.
    fn sweep_in_the_background(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.sweeping.get_or_init(|| {
            runtime.spawn(sweep_every(Arc::downgrade(self)));
        });
    }
}

async fn sweep_every(registry: Weak<Registry>) {
    loop {
        tokio::time::sleep(KEEP).await;
        match registry.upgrade() {
            Some(registry) => registry.sweep(),
            None => return,
        }
    }
}

macro_rules! pool_getter {
    ($(#[$doc:meta])* $name:ident, $field:ident, $client:ty) => {
        $(#[$doc])*
        pub(crate) fn $name(&self, key: String, make: impl FnOnce() -> $client) -> Shared<$client> {
            self.registry.sweep_in_the_background();
            self.registry.$field.get(key, make)
        }
    };
}

impl Clients {
    /// An empty registry. The agent makes one; a source built with [`Source::from_kind`](super::Source::from_kind)
    /// and a registry of its own shares nothing.
    pub fn new() -> Clients {
        Clients::default()
    }

    /// How many broker clients are open (held by a source, or within [`KEEP`] of the last one going away).
    pub fn open(&self) -> usize {
        let r = &self.registry;
        r.amqp.len()
            + r.management.len()
            + r.kafka.len()
            + r.sqs.len()
            + r.monitoring.len()
            + r.pubsub_admin.len()
            + r.prometheus.len()
    }

    pool_getter!(
        /// The AMQP connection for `key` (the parsed URL).
        amqp, amqp, rabbitmq::AmqpClient
    );
    pool_getter!(
        /// The management API batch reader for `key` (base URL, credentials, vhost).
        management, management, rabbitmq::ManagementClient
    );
    pool_getter!(
        /// The librdkafka client for `key` (every setting but the group, and the read timeout).
        kafka, kafka, kafka::ClusterClient
    );
    pool_getter!(
        /// The SQS client for `key` (region and endpoint).
        sqs, sqs, sqs::SqsClient
    );
    pool_getter!(
        /// The Cloud Monitoring client for `key` (endpoint and read timeout).
        monitoring, monitoring, pubsub::MonitoringClient
    );
    pool_getter!(
        /// The Pub/Sub admin client for `key` (endpoint and read timeout).
        pubsub_admin, pubsub_admin, pubsub::AdminClient
    );
    pool_getter!(
        /// The read bound for `key` (a Prometheus server).
        prometheus, prometheus, prometheus::ServerClient
    );
}

/// The clients of one kind, by key.
struct Pool<T> {
    entries: Mutex<HashMap<String, Arc<Entry<T>>>>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool { entries: Mutex::new(HashMap::new()) }
    }
}

struct Entry<T> {
    client: Arc<T>,
    /// Sources holding the client.
    users: AtomicUsize,
    /// When the last source let go of it.
    released: Mutex<Instant>,
}

impl<T> Pool<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry<T>>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: String, make: impl FnOnce() -> T) -> Shared<T> {
        let mut entries = self.lock();
        retain_used(&mut entries);
        let entry = entries
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Entry {
                    client: Arc::new(make()),
                    users: AtomicUsize::new(0),
                    released: Mutex::new(Instant::now()),
                })
            })
            .clone();
        entry.users.fetch_add(1, Ordering::SeqCst);
        Shared { entry }
    }

    fn sweep(&self) {
        retain_used(&mut self.lock());
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn retain_used<T>(entries: &mut HashMap<String, Arc<Entry<T>>>) {
    entries.retain(|_, entry| {
        entry.users.load(Ordering::SeqCst) > 0
            || entry.released.lock().unwrap_or_else(PoisonError::into_inner).elapsed() < KEEP
    });
}

/// A source's handle onto a shared client.
pub(crate) struct Shared<T> {
    entry: Arc<Entry<T>>,
}

impl<T> Shared<T> {
    /// The client itself, for a task that must own it (a batch).
    pub(crate) fn client(&self) -> &Arc<T> {
        &self.entry.client
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.entry.client
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        *self.entry.released.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.entry.users.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A client whose broker answers for many sources in one request.
pub(crate) trait Batched: Send + Sync + Sized + 'static {
    /// What one source asks for.
    type Key: Clone + Eq + Hash + Send + 'static;
    /// The answer to one batch, which every source in it gets (each takes its own part).
    type Answer: Clone + Send + 'static;

    /// The client's batcher.
    fn batcher(&self) -> &Batcher<Self>;

    /// Asks the broker about every key at once.
    fn fetch(self: Arc<Self>, keys: Vec<Self::Key>) -> impl Future<Output = Self::Answer> + Send;
}

/// Reads waiting for a batch, and the batch in flight.
pub(crate) struct Batcher<C: Batched> {
    state: Mutex<BatchState<C>>,
}

/// Reads, each with what it asks and where its answer goes.
type Waiting<C> = Vec<(<C as Batched>::Key, oneshot::Sender<<C as Batched>::Answer>)>;

struct BatchState<C: Batched> {
    /// Reads for the next batch.
    waiting: Waiting<C>,
    /// The batch in flight: when it was sent, what it asks, and the reads that joined it late.
    in_flight: Option<InFlight<C>>,
    /// Whether a task is running batches.
    running: bool,
}

struct InFlight<C: Batched> {
    sent: tokio::time::Instant,
    keys: HashSet<C::Key>,
    late: Vec<oneshot::Sender<C::Answer>>,
}

impl<C: Batched> Default for Batcher<C> {
    fn default() -> Self {
        Batcher { state: Mutex::new(BatchState { waiting: Vec::new(), in_flight: None, running: false }) }
    }
}

impl<C: Batched> Batcher<C> {
    fn lock(&self) -> MutexGuard<'_, BatchState<C>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `key`'s batch answer from `client`: from the batch in flight if it left at most [`JOIN_LATE`] ago and asks for
/// `key`, else from the next one. `None` if the task running the batches went away (its runtime stopped).
pub(crate) async fn read<C: Batched>(client: &Arc<C>, key: C::Key) -> Option<C::Answer> {
    let (answer, answered) = oneshot::channel();
    let start_a_task = {
        let mut state = client.batcher().lock();
        match &mut state.in_flight {
            Some(batch) if batch.sent.elapsed() <= JOIN_LATE && batch.keys.contains(&key) => {
                batch.late.push(answer);
                false
            }
            _ => {
                state.waiting.push((key, answer));
                !std::mem::replace(&mut state.running, true)
            }
        }
    };
    if start_a_task {
        tokio::spawn(run_batches(client.clone()));
    }
    answered.await.ok()
}

/// Waits while reads keep arriving ([`GATHER`] apart at most), for at most [`GATHER_AT_MOST`]: a thousand targets
/// that tick in the same moment take a few milliseconds of CPU to get there, and should make one batch, not two.
async fn gather<C: Batched>(client: &Arc<C>) {
    let started = tokio::time::Instant::now();
    let mut waiting = 0;
    loop {
        tokio::time::sleep(GATHER).await;
        let now = client.batcher().lock().waiting.len();
        if now == waiting || started.elapsed() >= GATHER_AT_MOST {
            return;
        }
        waiting = now;
    }
}

/// Marks a client's batches as running while it lives. Dropped before [`Running::finish`] — the task was dropped, as
/// when its runtime shuts down — it fails the reads that were waiting (by dropping their senders) and lets the next
/// read start a task again.
struct Running<C: Batched> {
    client: Arc<C>,
    finished: bool,
}

impl<C: Batched> Running<C> {
    /// Ends the batches if no read waits; otherwise takes the waiting reads as the next batch.
    fn next_batch(&mut self) -> Option<Waiting<C>> {
        let mut state = self.client.batcher().lock();
        if state.waiting.is_empty() {
            state.running = false;
            self.finished = true;
            return None;
        }
        let batch = std::mem::take(&mut state.waiting);
        let keys = batch.iter().map(|(key, _)| key.clone()).collect();
        state.in_flight = Some(InFlight { sent: tokio::time::Instant::now(), keys, late: Vec::new() });
        Some(batch)
    }
}

impl<C: Batched> Drop for Running<C> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut state = self.client.batcher().lock();
        state.running = false;
        state.in_flight = None;
        state.waiting.clear();
    }
}

async fn run_batches<C: Batched>(client: Arc<C>) {
    let mut running = Running { client: client.clone(), finished: false };
    gather(&client).await;
    while let Some(batch) = running.next_batch() {
        let mut asked = HashSet::with_capacity(batch.len());
        let keys: Vec<C::Key> =
            batch.iter().filter(|(key, _)| asked.insert(key.clone())).map(|(k, _)| k.clone()).collect();
        let answer = client.clone().fetch(keys).await;
        let late = client.batcher().lock().in_flight.take().map(|batch| batch.late).unwrap_or_default();
        for sender in batch.into_iter().map(|(_, sender)| sender).chain(late) {
            let _ = sender.send(answer.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// A broker that answers a batch with the keys it was asked and its batch number, after `delay`.
    #[derive(Default)]
    struct Counting {
        batches: AtomicU32,
        delay: Duration,
        batcher: Batcher<Counting>,
    }

    impl Batched for Counting {
        type Key = u32;
        type Answer = (u32, Arc<Vec<u32>>);

        fn batcher(&self) -> &Batcher<Self> {
            &self.batcher
        }

        async fn fetch(self: Arc<Self>, keys: Vec<u32>) -> (u32, Arc<Vec<u32>>) {
            let number = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            (number, Arc::new(keys))
        }
    }

    // The batcher keeps time with tokio's clock, so these run on a paused one: the order of reads and batches is the
    // test's, not the machine load's.
    #[tokio::test(start_paused = true)]
    async fn reads_at_the_same_moment_share_one_batch_that_asks_each_key_once() {
        let broker = Arc::new(Counting::default());
        let reads = (0..100).map(|i| read(&broker, i % 10));
        let answers = futures::future::join_all(reads).await;
        assert_eq!(broker.batches.load(Ordering::SeqCst), 1);
        for answer in answers {
            let (batch, keys) = answer.expect("an answer");
            assert_eq!((batch, keys.len()), (1, 10), "each key asked once");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_after_a_batch_left_is_answered_by_a_fresh_one() {
        let broker = Arc::new(Counting { delay: Duration::from_millis(200), ..Counting::default() });
        let first = tokio::spawn({
            let broker = broker.clone();
            async move { read(&broker, 1).await }
        });
        // Joins the batch in flight: it left less than JOIN_LATE ago and asks the same key.
        tokio::time::sleep(GATHER + JOIN_LATE / 4).await;
        let joined = read(&broker, 1);
        // Asks after the batch left longer ago, or for a key it does not ask: the next batch, sent after this read.
        let late = async {
            tokio::time::sleep(JOIN_LATE * 2).await;
            read(&broker, 1).await
        };
        let other = read(&broker, 2);
        let (joined, late, other) = tokio::join!(joined, late, other);
        assert_eq!(first.await.expect("the first read").expect("an answer").0, 1);
        assert_eq!(joined.expect("an answer").0, 1, "joined the batch in flight");
        assert_eq!(late.expect("an answer").0, 2, "waited for a batch sent after it asked");
        assert_eq!(other.expect("an answer"), (2, Arc::new(vec![2, 1])), "its key was not in the batch in flight");
        assert_eq!(broker.batches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_batches_end_when_nobody_waits_and_start_again_on_the_next_read() {
        let broker = Arc::new(Counting::default());
        assert_eq!(read(&broker, 7).await.expect("an answer").0, 1);
        tokio::time::sleep(GATHER * 3).await;
        assert!(!broker.batcher.lock().running, "no task runs without reads");
        assert_eq!(read(&broker, 7).await.expect("an answer").0, 2);
    }

    #[tokio::test]
    async fn one_client_per_key_kept_for_a_while_after_its_last_source() {
        let clients = Clients::new();
        let made = AtomicU32::new(0);
        let make = || {
            made.fetch_add(1, Ordering::SeqCst);
            prometheus::ServerClient::new()
        };
        let (a, b) =
            (clients.prometheus("http://p:9090".into(), make), clients.prometheus("http://p:9090".into(), make));
        let c = clients.prometheus("http://other:9090".into(), make);
        assert!(Arc::ptr_eq(a.client(), b.client()));
        assert!(!Arc::ptr_eq(a.client(), c.client()));
        assert_eq!((made.load(Ordering::SeqCst), clients.open()), (2, 2));
        drop((a, b, c));
        // A reload drops the old sources just before it builds the new ones: the client is still there to reuse.
        let again = clients.prometheus("http://p:9090".into(), make);
        assert_eq!((made.load(Ordering::SeqCst), clients.open()), (2, 2));
        drop(again);
    }
}
