//! What reading a consumer group's lag costs, and why the Kafka source batches: 1,000 and 10,000 partitions on
//! librdkafka's mock cluster, at 0 and 2 ms of simulated round-trip time, read two ways.
//!
//! * **batched** — the source itself: one OffsetFetch for the committed offsets and one ListOffsets per leader
//!   (`offsets_for_times` with `Offset::End`), plus the topic's metadata.
//! * **per partition** — the same committed offsets, then `fetch_watermarks` for each partition, one round trip
//!   each: what a lag reader written the obvious way does.
//!
//! `cargo bench --bench kafka_lag`. Prints one row per case: the median and the fastest of several reads on a
//! client that is already connected (as the agent's is after its first poll). The goal is 1,000 partitions under
//! 50 ms at 2 ms of round-trip time. Per partition at 10,000 × 2 ms takes tens of seconds a read and is skipped,
//! with its expected cost printed instead.

// The bench uses the cluster set-up only; the tests use the rest.
#[allow(dead_code)]
#[path = "../tests/support/kafka.rs"]
mod kafka;

use std::time::{Duration, Instant};

use kafka::TestCluster;
use queue_scaler::source::ReadBacklog;
use queue_scaler::source::kafka::{Config, Kafka};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const GROUP: &str = "bench";
const TOPIC: &str = "wide";
/// Generous: a slow case must finish, not fail.
const TIMEOUT: Duration = Duration::from_secs(120);

fn config(brokers: &str) -> Config {
    Config { topic: Some(TOPIC.to_owned()), ..Config::new(brokers, GROUP) }
}

/// The lag, reading each partition's end offset with its own request.
fn per_partition(consumer: &BaseConsumer, partitions: i32) -> i64 {
    let mut asked = TopicPartitionList::with_capacity(partitions as usize);
    asked.add_partition_range(TOPIC, 0, partitions - 1);
    let committed = consumer.committed_offsets(asked, TIMEOUT).expect("committed offsets");
    let mut lag = 0;
    for element in committed.elements() {
        let (_, end) = consumer.fetch_watermarks(TOPIC, element.partition(), TIMEOUT).expect("watermarks");
        if let Offset::Offset(at) = element.offset() {
            lag += (end - at).max(0);
        }
    }
    lag
}

/// (median, fastest) of `runs` timed calls of `read`, after one untimed call that connects.
async fn time<F: Future<Output = f64>>(
    runs: usize,
    expected: f64,
    mut read: impl FnMut() -> F,
) -> (Duration, Duration) {
    assert_eq!(read().await, expected, "the warm-up read");
    let mut took = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        assert_eq!(read().await, expected);
        took.push(started.elapsed());
    }
    took.sort();
    (took[runs / 2], took[0])
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    println!("{:>10}  {:>6}  {:<13}  {:>11}  {:>11}  reads", "partitions", "rtt", "method", "median", "fastest");
    let mut goal = None;
    for partitions in [1_000, 10_000] {
        let cluster = TestCluster::new();
        cluster.topic(TOPIC, partitions);
        cluster.produce(TOPIC, partitions, |_| 2);
        cluster.commit(GROUP, TOPIC, (0..partitions).map(|p| (p, 1)));
        let expected = f64::from(partitions);
        let batched = Kafka::new(config(&cluster.brokers()), TIMEOUT);
        let consumer: BaseConsumer = config(&cluster.brokers()).client_config().create().expect("a consumer");
        for rtt in [Duration::ZERO, Duration::from_millis(2)] {
            cluster.set_round_trip(rtt);
            let row = |method: &str, (median, fastest): (Duration, Duration), runs: usize| {
                println!(
                    "{partitions:>10}  {:>6}  {method:<13}  {:>11}  {:>11}  {runs}",
                    format!("{} ms", rtt.as_millis()),
                    ms(median),
                    ms(fastest)
                );
            };
            let runs = 15;
            let timed = time(runs, expected, || async { batched.read().await.expect("read").backlog }).await;
            row("batched", timed, runs);
            if partitions == 1_000 && !rtt.is_zero() {
                goal = Some(timed.0);
            }
            if partitions >= 10_000 && !rtt.is_zero() {
                let estimate = rtt * u32::try_from(partitions).expect("a count");
                println!(
                    "{partitions:>10}  {:>6}  {:<13}  skipped: at least {} a read (one round trip per partition)",
                    format!("{} ms", rtt.as_millis()),
                    "per partition",
                    humantime::format_duration(estimate)
                );
                continue;
            }
            let runs = if partitions >= 10_000 || !rtt.is_zero() { 3 } else { 7 };
            let timed = time(runs, expected, || async {
                tokio::task::block_in_place(|| per_partition(&consumer, partitions)) as f64
            })
            .await;
            row("per partition", timed, runs);
        }
    }
    if let Some(median) = goal {
        let verdict = if median < Duration::from_millis(50) { "met" } else { "MISSED" };
        println!("goal: 1,000 partitions under 50 ms at 2 ms round trip, batched median {}: {verdict}", ms(median));
    }
}
