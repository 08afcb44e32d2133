//! A transcoding-style Kafka worker that drains on SIGTERM without stalling its group.
//!
//! `KAFKA_BROKERS`, `TOPIC`, `GROUP`, `KAFKA_SESSION_TIMEOUT_MS` (default 6000, the lowest most brokers allow:
//! how soon the group notices a worker that died), plus the common `JOB_MS`, `DRAIN_GRACE_MS`, `DRAIN_FLUSH_MS`,
//! `WORKER_METRICS_ADDR`, `CONCURRENCY`, `DRAIN_TOKEN` / `DRAIN_TOKEN_FILE`, `PANIC_ONCE_ON`.
//!
//! A Kafka consumer answers its group's rebalances only from inside `poll`. A draining worker that stops polling
//! holds up the whole group's rebalance (for an eager group, nobody consumes meanwhile) until it exits or is
//! thrown out, and several workers removed at once take turns at that. So this worker keeps polling until it
//! exits, and stops its intake by pausing its partitions instead: on a drain or `POST /quiet` every assigned
//! partition is paused (fetching stops at the broker), and partitions assigned meanwhile are paused as they arrive.
//!
//! * It uses the cooperative-sticky assignor: a rebalance moves only the partitions that must move, so workers that
//!   stay keep their partitions and the jobs running on them, and a worker that only gains partitions rejoins
//!   without waiting for its application.
//! * A worker whose every slot is busy polls again when a slot frees (`next_job` waits for a slot before it
//!   receives). A rebalance that needs its answer meanwhile (it must give partitions up) waits that long, and a
//!   job longer than `max.poll.interval.ms` (5 min) gets the worker thrown out of the group: set it above the
//!   longest job. (Pausing at capacity instead, to poll on, costs a pause and a resume per job, and librdkafka
//!   drops and fetches again what it had prefetched at each: one worker with 2 slots stalled on 500 jobs.)
//! * Commits follow an offset ledger (`kafka/ledger.rs`): only the end of each partition's finished prefix is
//!   stored (`store_offsets`), and librdkafka's auto-commit sends it once a second. No synchronous commit on the
//!   job path: a commit waits for a rebalance under way, and that rebalance may be waiting for this consumer's
//!   poll.
//! * When partitions are revoked (a rebalance, or the consumer closing at exit), their finished prefix is committed
//!   synchronously inside the rebalance callback, before the next owner starts, and their running jobs are handed
//!   back: the next owner resumes from the committed offset.
//! * A job handed back outside a drain (it panicked) rewinds its partition: the consumer seeks back to it, so it is
//!   fetched again, instead of freezing its partition's commits until the next rebalance while lag grows.
//!
//! Output for the tests: `done <body>` once a commit covering the job succeeded, and `assigned P,…` / `revoked
//! P,…` at each rebalance (possibly empty: the rebalance completed without a change here).

mod common;
#[path = "kafka/ledger.rs"]
mod ledger;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use queue_scaler::drain::Drain;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

use common::{BoxError, Settings};
use ledger::Ledger;

type KafkaConsumer = StreamConsumer<Context>;

/// What the consumer's callbacks, the loop and the jobs share.
struct Shared {
    topic: String,
    drain: Drain,
    ledger: Mutex<Ledger>,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `partitions` of the topic as a list, with `offset` for each if given.
    fn list(&self, partitions: impl IntoIterator<Item = (i32, Option<i64>)>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (partition, offset) in partitions {
            let mut element = list.add_partition(&self.topic, partition);
            if let Some(offset) = offset {
                // Only fails for offsets librdkafka has no representation for; these come from messages.
                let _ = element.set_offset(Offset::Offset(offset));
            }
        }
        list
    }

    /// Pauses the assigned partitions while intake is stopped (a drain, `POST /quiet`), resumes them once it is
    /// open again. Cheap when nothing changes; librdkafka's pause waits only for its own threads.
    fn follow_intake(&self, consumer: &impl Consumer<Context>) {
        let mut ledger = self.ledger();
        let pause = self.drain.is_stopping() || self.drain.is_quiet();
        if pause == ledger.paused {
            return;
        }
        let list = self.list(ledger.assigned().map(|p| (p, None)));
        let switched = if pause { consumer.pause(&list) } else { consumer.resume(&list) };
        match switched {
            Ok(()) => ledger.paused = pause,
            Err(e) => eprintln!("{} partitions: {e}", if pause { "pause" } else { "resume" }),
        }
    }

    /// A job finished: stores the end of its partition's finished prefix for the next auto-commit.
    fn finish(&self, consumer: &impl Consumer<Context>, partition: i32, offset: i64, body: String) {
        let mut ledger = self.ledger();
        if let Some(next) = ledger.finish(partition, offset, body)
            && let Err(e) = consumer.store_offsets(&self.list([(partition, Some(next))]))
        {
            eprintln!("store {partition}@{next}: {e}");
        }
    }

    /// A job handed back. In a drain or a rebalance: nothing, the offset stays uncommitted and the partition's
    /// owner resumes from it. Otherwise (the job panicked): seek back to it, handing back the partition's later
    /// jobs, so it is fetched again now.
    fn rewind(&self, consumer: &impl Consumer<Context>, partition: i32, offset: i64) {
        if self.drain.is_stopping() {
            return;
        }
        let Some(later) = self.ledger().rewind(partition, offset) else { return };
        later.iter().for_each(|job| job.hand_back());
        // Without waiting: the seek's barrier drops whatever was fetched past the offset.
        if let Err(e) = consumer.seek(&self.topic, partition, Offset::Offset(offset), Duration::ZERO) {
            eprintln!("seek back to {partition}@{offset}: {e}");
        }
        eprintln!("rewound {partition} to {offset}");
    }
}

struct Context {
    shared: Arc<Shared>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else { return };
        let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
        common::line(&format!("revoked {}", joined(&partitions)));
        let (mut prefixes, mut running) = (Vec::new(), Vec::new());
        {
            let mut ledger = self.shared.ledger();
            for &partition in &partitions {
                let (prefix, jobs) = ledger.revoke(partition);
                prefixes.extend(prefix.map(|prefix| (partition, prefix)));
                running.extend(jobs);
            }
        }
        // After the revoke above, a job finishing on these partitions stores nothing: what is committed here is
        // all that will be. A lost assignment (the group threw this worker out) can commit nothing.
        if !prefixes.is_empty() && !consumer.assignment_lost() {
            let commit = self.shared.list(prefixes.iter().map(|(partition, prefix)| (*partition, Some(prefix.next))));
            // Synchronous, inside the callback: librdkafka waits for it before giving the partitions up.
            match consumer.commit(&commit, CommitMode::Sync) {
                Ok(()) => prefixes.iter().flat_map(|(_, prefix)| &prefix.bodies).for_each(|body| common::done(body)),
                Err(e) => eprintln!("commit on revoke: {e}"),
            }
        }
        running.iter().for_each(|job| job.hand_back());
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(list) = rebalance else { return };
        let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
        {
            let mut ledger = self.shared.ledger();
            partitions.iter().for_each(|&p| ledger.assign(p));
            // New partitions start fetching at once: paused here, before this poll returns a message of theirs. A
            // partition assigned again keeps librdkafka's pause from before it was revoked: resumed here if need be.
            let switched = if ledger.paused { consumer.pause(list) } else { consumer.resume(list) };
            if let Err(e) = switched {
                eprintln!("pause or resume the new partitions: {e}");
            }
        }
        common::line(&format!("assigned {}", joined(&partitions)));
        self.shared.drain.ready();
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            eprintln!("auto-commit: {e}");
        }
        let mut done = Vec::new();
        {
            let mut ledger = self.shared.ledger();
            for element in offsets.elements_for_topic(&self.shared.topic) {
                if let (Ok(()), Offset::Offset(next)) = (element.error(), element.offset()) {
                    done.extend(ledger.committed(element.partition(), next));
                }
            }
        }
        done.iter().for_each(|body| common::done(body));
    }
}

fn joined(partitions: &[i32]) -> String {
    partitions.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let settings = Arc::new(Settings::from_env()?);
    let (brokers, topic, group) = (common::var("KAFKA_BROKERS")?, common::var("TOPIC")?, common::var("GROUP")?);
    let session_timeout = common::number("KAFKA_SESSION_TIMEOUT_MS", 6_000)?;
    let drain = common::drain(&settings, settings.concurrency).await?;
    let shared = Arc::new(Shared { topic: topic.clone(), drain: drain.clone(), ledger: Mutex::default() });
    let consumer: Arc<KafkaConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session_timeout.to_string())
            .set("heartbeat.interval.ms", (session_timeout / 4).clamp(100, 3_000).to_string())
            .create_with_context(Context { shared: shared.clone() })?,
    );
    consumer.subscribe(&[&topic])?;
    pause_with_intake(&drain, &consumer, &shared);
    loop {
        take_jobs(&drain, &consumer, &shared, &settings).await;
        // The receive under way when intake stopped may have run before the hook paused: pause before polling on.
        shared.follow_intake(consumer.as_ref());
        let resumed = tokio::select! {
            resumed = drain.resumed() => resumed,
            never = keep_polling(&consumer, &shared) => match never {},
        };
        if !resumed {
            break;
        }
        shared.follow_intake(consumer.as_ref());
    }
    let summary = tokio::select! {
        summary = drain.wait() => summary,
        never = keep_polling(&consumer, &shared) => match never {},
    };
    // The jobs and hooks hold the consumer weakly: this is the last handle, and dropping it closes the consumer.
    // Closing revokes every partition (their finished prefix is committed in the callback) and leaves the group,
    // so its rebalance starts now. A broker that stopped answering holds this up: the drain's watchdog bounds it.
    drop(consumer);
    drain.exit(&summary)
}

/// On a drain or `POST /quiet`, pause the assigned partitions; on `POST /resume`, resume them.
fn pause_with_intake(drain: &Drain, consumer: &Arc<KafkaConsumer>, shared: &Arc<Shared>) {
    let hook = {
        let (consumer, shared) = (Arc::downgrade(consumer), shared.clone());
        move || {
            let (consumer, shared) = (consumer.clone(), shared.clone());
            // librdkafka's pause waits for its fetcher threads: off the runtime's threads.
            async move {
                let _ = tokio::task::spawn_blocking(move || with(&consumer, |c| shared.follow_intake(c))).await;
            }
        }
    };
    drain.on_drain(hook.clone());
    drain.on_resume(hook);
}

/// Runs `f` on the consumer unless it is closed already.
fn with(consumer: &Weak<KafkaConsumer>, f: impl FnOnce(&KafkaConsumer)) {
    if let Some(consumer) = consumer.upgrade() {
        f(&consumer);
    }
}

/// Takes jobs until intake stops.
async fn take_jobs(drain: &Drain, consumer: &Arc<KafkaConsumer>, shared: &Arc<Shared>, settings: &Arc<Settings>) {
    while let Some(permit) = drain.next_job(consumer.recv()).await {
        let permit = match permit.map(|received| received.map(|m| m.detach())).transpose() {
            Ok(permit) => permit,
            Err(e) => {
                eprintln!("receive: {e}");
                continue;
            }
        };
        let (partition, offset) = (permit.message().partition(), permit.message().offset());
        let back = (Arc::downgrade(consumer), shared.clone());
        let (job, message) =
            permit.start(move || async move { with(&back.0, |c| back.1.rewind(c, partition, offset)) });
        if !shared.ledger().track(partition, offset, job.handle()) {
            // Revoked between the fetch and now: the next owner has it.
            job.hand_back().await;
            continue;
        }
        let body = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        let (consumer, shared, settings) = (Arc::downgrade(consumer), shared.clone(), settings.clone());
        tokio::spawn(async move {
            if common::work(&job.handle(), &settings, &body).await {
                let finish = || async { with(&consumer, |c| shared.finish(c, partition, offset, body)) };
                let _ = job.complete(finish).await;
            }
        });
    }
}

/// Polls while intake is stopped, so rebalances are answered and commits reported. The partitions are paused;
/// should a message come through anyway, the consumer seeks back to it, so a resumed worker skips nothing.
async fn keep_polling(consumer: &KafkaConsumer, shared: &Shared) -> std::convert::Infallible {
    loop {
        match consumer.recv().await {
            Ok(message) => {
                let (partition, offset) = (message.partition(), message.offset());
                drop(message);
                if let Err(e) = consumer.seek(&shared.topic, partition, Offset::Offset(offset), Duration::ZERO) {
                    eprintln!("seek back to {partition}@{offset}: {e}");
                }
            }
            Err(e) => eprintln!("poll: {e}"),
        }
    }
}
