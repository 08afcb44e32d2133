//! The Kafka worker example under SIGTERM against librdkafka's mock cluster (real TCP, in this process): nothing
//! lost through rebalances, idle and busy exits timed.
//!
//! Every worker that joins or leaves costs the group a rebalance (about 3 s on the mock cluster, nobody consumes
//! meanwhile), so this test kills less often than the others.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::workers::{self, DoneLog, KillTest, Worker};

const EXAMPLE: &str = "worker_kafka";
const PARTITIONS: i32 = 6;

/// A mock cluster with one topic holding `jobs` messages `job-0` … spread over the partitions.
async fn cluster(topic: &str, jobs: usize) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic(topic, PARTITIONS, 1).expect("create topic");
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().expect("producer");
    for i in 0..jobs {
        let body = format!("job-{i}");
        let partition = i32::try_from(i).expect("small") % PARTITIONS;
        producer
            .send(FutureRecord::<(), _>::to(topic).payload(&body).partition(partition), Duration::from_secs(5))
            .await
            .expect("produced");
    }
    cluster
}

fn broker(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    topic: &str,
) -> Vec<(String, String)> {
    [("KAFKA_BROKERS", cluster.bootstrap_servers()), ("TOPIC", topic.to_owned()), ("GROUP", format!("{topic}-group"))]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
}

fn env(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    job_ms: u64,
    grace_ms: u64,
) -> Vec<(String, String)> {
    workers::timed(&broker(cluster, topic), job_ms, grace_ms)
}

fn topic(prefix: &str) -> String {
    format!("qs-test-{prefix}-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_jobs_survive_random_sigterms() {
    let topic = topic("drain-kill");
    let cluster = cluster(&topic, 500).await;
    let lost = workers::kill_test(KillTest {
        kills: 4,
        pause_ms: (1_500, 3_000),
        job_ms: 50,
        deadline: Duration::from_secs(50),
        ..KillTest::five_hundred_jobs(EXAMPLE, broker(&cluster, &topic))
    })
    .await;
    assert!(lost.is_empty(), "lost {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_exits_at_once() {
    let topic = topic("drain-idle");
    let cluster = cluster(&topic, 1).await;
    let log = DoneLog::default();
    workers::idle_exit(Worker::start(EXAMPLE, 1, &env(&cluster, &topic, 10, 25_000), &log), &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_job_finishes_then_the_worker_exits() {
    let topic = topic("drain-long");
    let cluster = cluster(&topic, 1).await;
    let log = DoneLog::default();
    workers::long_job_exit(Worker::start(EXAMPLE, 1, &env(&cluster, &topic, 2_000, 25_000), &log), &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_past_the_grace_is_handed_back_and_done_elsewhere() {
    let topic = topic("drain-grace");
    let cluster = cluster(&topic, 1).await;
    let log = DoneLog::default();
    let first = Worker::start(EXAMPLE, 1, &env(&cluster, &topic, 60_000, 500), &log);
    workers::over_grace_hand_back(first, &log, || Worker::start(EXAMPLE, 2, &env(&cluster, &topic, 10, 25_000), &log))
        .await;
}
