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

#[cfg(any(feature = "kafka", feature = "rabbitmq", feature = "pubsub"))]
mod batch;

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

#[cfg(feature = "kafka")]
use super::kafka;
#[cfg(feature = "prometheus")]
use super::prometheus;
#[cfg(feature = "pubsub")]
use super::pubsub;
#[cfg(feature = "rabbitmq")]
use super::rabbitmq;
#[cfg(feature = "sqs")]
use super::sqs;
#[cfg(any(feature = "kafka", feature = "rabbitmq", feature = "pubsub"))]
pub(crate) use batch::{Batched, Batcher, read};

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
    #[cfg(feature = "rabbitmq")]
    amqp: Pool<rabbitmq::AmqpClient>,
    #[cfg(feature = "rabbitmq")]
    management: Pool<rabbitmq::ManagementClient>,
    #[cfg(feature = "kafka")]
    kafka: Pool<kafka::ClusterClient>,
    #[cfg(feature = "sqs")]
    sqs: Pool<sqs::SqsClient>,
    #[cfg(feature = "pubsub")]
    monitoring: Pool<pubsub::MonitoringClient>,
    #[cfg(feature = "pubsub")]
    pubsub_admin: Pool<pubsub::AdminClient>,
    #[cfg(feature = "prometheus")]
    prometheus: Pool<prometheus::ServerClient>,
    sweeping: std::sync::OnceLock<()>,
}

impl Registry {
    fn sweep(&self) {
        #[cfg(feature = "rabbitmq")]
        self.amqp.sweep();
        #[cfg(feature = "rabbitmq")]
        self.management.sweep();
        #[cfg(feature = "kafka")]
        self.kafka.sweep();
        #[cfg(feature = "sqs")]
        self.sqs.sweep();
        #[cfg(feature = "pubsub")]
        self.monitoring.sweep();
        #[cfg(feature = "pubsub")]
        self.pubsub_admin.sweep();
        #[cfg(feature = "prometheus")]
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
        let pools = [
            #[cfg(feature = "rabbitmq")]
            r.amqp.len(),
            #[cfg(feature = "rabbitmq")]
            r.management.len(),
            #[cfg(feature = "kafka")]
            r.kafka.len(),
            #[cfg(feature = "sqs")]
            r.sqs.len(),
            #[cfg(feature = "pubsub")]
            r.monitoring.len(),
            #[cfg(feature = "pubsub")]
            r.pubsub_admin.len(),
            #[cfg(feature = "prometheus")]
            r.prometheus.len(),
        ];
        pools.iter().sum()
    }

    #[cfg(feature = "rabbitmq")]
    pool_getter!(
        /// The AMQP connection for `key` (the parsed URL).
        amqp, amqp, rabbitmq::AmqpClient
    );
    #[cfg(feature = "rabbitmq")]
    pool_getter!(
        /// The management API batch reader for `key` (base URL, credentials, vhost).
        management, management, rabbitmq::ManagementClient
    );
    #[cfg(feature = "kafka")]
    pool_getter!(
        /// The librdkafka client for `key` (every setting but the group, and the read timeout).
        kafka, kafka, kafka::ClusterClient
    );
    #[cfg(feature = "sqs")]
    pool_getter!(
        /// The SQS client for `key` (region and endpoint).
        sqs, sqs, sqs::SqsClient
    );
    #[cfg(feature = "pubsub")]
    pool_getter!(
        /// The Cloud Monitoring client for `key` (endpoint and read timeout).
        monitoring, monitoring, pubsub::MonitoringClient
    );
    #[cfg(feature = "pubsub")]
    pool_getter!(
        /// The Pub/Sub admin client for `key` (endpoint and read timeout).
        pubsub_admin, pubsub_admin, pubsub::AdminClient
    );
    #[cfg(feature = "prometheus")]
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
    #[cfg(any(feature = "kafka", feature = "rabbitmq", feature = "pubsub"))]
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

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
