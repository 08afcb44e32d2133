//! A Kafka cluster for one test: librdkafka's in-process mock cluster, which speaks the real protocol over TCP,
//! with a known state set up the way workers would leave it — messages produced, offsets committed by the group.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// How long setting up a cluster's state may take before the test fails.
const SETUP: Duration = Duration::from_secs(30);

/// A mock cluster of three brokers, so partitions have different leaders as in a real one.
pub struct TestCluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl TestCluster {
    /// A cluster with no topics.
    pub fn new() -> TestCluster {
        TestCluster { cluster: MockCluster::new(3).expect("a mock cluster") }
    }

    /// The `brokers:` value for it.
    pub fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Delays every broker's answers by `rtt`, as a network between the agent and the cluster would.
    pub fn set_round_trip(&self, rtt: Duration) {
        self.cluster.broker_round_trip_time(-1, rtt).expect("set the round-trip time");
    }

    /// Takes all three brokers down (connections closed, new ones refused) or brings them back: an outage.
    pub fn set_brokers_up(&self, up: bool) {
        for broker in 1..=3 {
            let result = if up { self.cluster.broker_up(broker) } else { self.cluster.broker_down(broker) };
            result.expect("switch a mock broker");
        }
    }

    /// Creates `topic` with `partitions` partitions (the mock has no CreateTopics API).
    pub fn topic(&self, topic: &str, partitions: i32) {
        self.cluster.create_topic(topic, partitions, 1).expect("create the topic");
    }

    /// Produces `count(partition)` messages to each of the topic's first `partitions` partitions, and waits until the
    /// cluster has them all.
    pub fn produce(&self, topic: &str, partitions: i32, count: impl Fn(i32) -> usize) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("linger.ms", "5")
            .create()
            .expect("a producer");
        for partition in 0..partitions {
            for _ in 0..count(partition) {
                let mut record = BaseRecord::<(), str>::to(topic).partition(partition).payload("job");
                while let Err((error, back)) = producer.send(record) {
                    assert!(
                        error.rdkafka_error_code() == Some(rdkafka::error::RDKafkaErrorCode::QueueFull),
                        "produce: {error}"
                    );
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
        producer.flush(SETUP).expect("every message delivered");
    }

    /// Produces one message to `partition` of `topic` for each timestamp (Unix milliseconds) in `produced_at`, in
    /// order, as a producer that sets the record's CreateTime would, and waits until the cluster has them.
    pub fn produce_at(&self, topic: &str, partition: i32, produced_at: &[i64]) {
        let producer: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", self.brokers()).create().expect("a producer");
        for millis in produced_at {
            let record = BaseRecord::<(), str>::to(topic).partition(partition).payload("job").timestamp(*millis);
            producer.send(record).map_err(|(error, _)| error).expect("produce");
        }
        producer.flush(SETUP).expect("every message delivered");
    }

    /// Commits `offsets` (partition, offset) of `topic` for `group`, as the group's workers would, with a consumer
    /// that has only `group.id` set: a commit needs no membership, and joining would cost seconds per test.
    pub fn commit(&self, group: &str, topic: &str, offsets: impl IntoIterator<Item = (i32, i64)>) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        let mut list = TopicPartitionList::new();
        for (partition, offset) in offsets {
            list.add_partition(topic, partition).set_offset(Offset::Offset(offset)).expect("an offset");
        }
        consumer.commit(&list, CommitMode::Sync).expect("commit");
    }
}
