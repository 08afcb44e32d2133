//! A transcoding-style Kafka worker that drains on SIGTERM: a job handed back is simply never committed, so the
//! partition's next owner resumes from it.
//!
//! `KAFKA_BROKERS`, `TOPIC`, `GROUP`, plus the common `JOB_MS`, `DRAIN_GRACE_MS`, `DRAIN_FLUSH_MS`,
//! `WORKER_METRICS_ADDR`, `CONCURRENCY`, `DRAIN_TOKEN` / `DRAIN_TOKEN_FILE`, `PANIC_ONCE_ON`.
//!
//! Jobs run concurrently and finish out of order, but a Kafka commit says "everything before this offset is done".
//! So an offset ledger per partition keeps the offsets in progress and commits only the end of the finished prefix;
//! `done` lines are printed when that commit succeeds. On a rebalance the revoked partitions' ledgers are dropped:
//! their unfinished and uncommitted work belongs to the next owner, who resumes from the committed offset.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

use common::{BoxError, Settings};

/// Per partition: offsets received and not yet committed; `Some(body)` once finished.
#[derive(Default)]
struct Ledger {
    partitions: HashMap<i32, BTreeMap<i64, Option<String>>>,
}

impl Ledger {
    fn track(&mut self, partition: i32, offset: i64) {
        self.partitions.entry(partition).or_default().insert(offset, None);
    }

    /// Marks `offset` finished; returns the offset to commit and the jobs it covers, if the finished prefix grew.
    fn finish(&mut self, partition: i32, offset: i64, body: String) -> Option<(i64, Vec<(i64, String)>)> {
        // A partition revoked since: its next owner redoes the job, nothing to commit here.
        let pending = self.partitions.get_mut(&partition)?;
        *pending.get_mut(&offset)? = Some(body);
        let mut covered = Vec::new();
        while let Some(entry) = pending.first_entry() {
            if entry.get().is_none() {
                break;
            }
            let offset = *entry.key();
            covered.extend(entry.remove().map(|body| (offset, body)));
        }
        Some((covered.last()?.0 + 1, covered))
    }

    /// Puts back jobs whose commit failed, so the next commit on the partition covers them (and prints them).
    fn restore(&mut self, partition: i32, covered: Vec<(i64, String)>) {
        if let Some(pending) = self.partitions.get_mut(&partition) {
            pending.extend(covered.into_iter().map(|(offset, body)| (offset, Some(body))));
        }
    }
}

struct Context {
    ledger: Arc<Mutex<Ledger>>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut ledger = self.ledger.lock().expect("ledger lock");
            for element in list.elements() {
                ledger.partitions.remove(&element.partition());
            }
        }
    }
}

type KafkaConsumer = StreamConsumer<Context>;

/// Finishes `offset` in the ledger and commits the finished prefix; prints `done` for what the commit covers.
async fn commit(
    consumer: Arc<KafkaConsumer>,
    ledger: Arc<Mutex<Ledger>>,
    commits: Arc<tokio::sync::Mutex<()>>,
    (topic, partition, offset): (String, i32, i64),
    body: String,
) {
    // One commit at a time, so a partition's committed offset never moves backwards.
    let _turn = commits.lock().await;
    let Some((next, covered)) = ledger.lock().expect("ledger lock").finish(partition, offset, body) else {
        return;
    };
    let mut list = TopicPartitionList::new();
    if let Err(e) = list.add_partition_offset(&topic, partition, Offset::Offset(next)) {
        eprintln!("commit {partition}@{next}: {e}");
        return;
    }
    // librdkafka's commit blocks.
    let committed = tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await;
    match committed {
        Ok(Ok(())) => covered.iter().for_each(|(_, body)| common::done(body)),
        failed => {
            // Typically a rebalance in progress: if the partition stays here, a later commit takes these along;
            // if it moves, its next owner redoes them from the committed offset.
            eprintln!("commit {partition}@{next}: {failed:?}");
            ledger.lock().expect("ledger lock").restore(partition, covered);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let settings = Arc::new(Settings::from_env()?);
    let (brokers, topic, group) = (common::var("KAFKA_BROKERS")?, common::var("TOPIC")?, common::var("GROUP")?);
    let drain = common::drain(&settings).await?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let consumer: Arc<KafkaConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // Short, so the group notices a worker that is gone and rebalances quickly.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .create_with_context(Context { ledger: ledger.clone() })?,
    );
    consumer.subscribe(&[&topic])?;
    drain.ready();
    let commits = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        while let Some(permit) = drain.next_job(consumer.recv()).await {
            let permit = match permit.map(|received| received.map(|m| m.detach())).transpose() {
                Ok(permit) => permit,
                Err(e) => {
                    eprintln!("receive: {e}");
                    continue;
                }
            };
            let (partition, offset) = (permit.message().partition(), permit.message().offset());
            ledger.lock().expect("ledger lock").track(partition, offset);
            // Handing back is leaving the offset uncommitted: it stays in the ledger and blocks every commit past it.
            let (job, message) = permit.start(move || async move { eprintln!("handed back {partition}@{offset}") });
            let body = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            let (consumer, ledger, commits, topic) = (consumer.clone(), ledger.clone(), commits.clone(), topic.clone());
            let settings = settings.clone();
            tokio::spawn(async move {
                if common::work(&job.handle(), &settings, &body).await {
                    let _ = job.complete(|| commit(consumer, ledger, commits, (topic, partition, offset), body)).await;
                }
            });
        }
        if !drain.resumed().await {
            break;
        }
    }
    let summary = drain.wait().await;
    // Dropping the last handle closes the consumer: it leaves the group, so the rebalance starts now.
    drop(consumer);
    drain.exit(&summary)
}
