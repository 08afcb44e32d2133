//! The Kafka worker example under SIGTERM against librdkafka's mock cluster (real TCP, in this process): nothing
//! lost through rebalances, a group that keeps rebalancing while several workers drain, a job that panics, a
//! broker that stops answering, and what the broker sees of a draining worker.
//!
//! The mock cluster holds every rebalance round until `session.timeout.ms − 1 s` have passed (a real broker ends a
//! round once every member has rejoined), so the tests that time rebalances give the workers a 2 s session
//! timeout. The first join of an empty group waits 1 s, as `group.initial.rebalance.delay.ms` does on a broker.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::bindings::{
    rd_kafka_handle_mock_cluster, rd_kafka_mock_cluster_t, rd_kafka_mock_get_requests,
    rd_kafka_mock_group_initial_rebalance_delay_ms, rd_kafka_mock_request_api_key, rd_kafka_mock_request_destroy_array,
    rd_kafka_mock_request_timestamp, rd_kafka_mock_start_request_tracking,
};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::types::RDKafkaApiKey;

use crate::support::eventually;
use crate::support::workers::{self, DoneLog, Exit, KillTest, Lines, Worker};

const EXAMPLE: &str = "worker_kafka";
const PARTITIONS: i32 = 6;

/// A one-broker mock cluster with one topic holding `job-0` … spread over the partitions (`job-i` on partition
/// `i % PARTITIONS`), and the broker's record of the requests it received.
///
/// The cluster belongs to a producer (`test.mock.num.brokers`) rather than to `MockCluster::new`, so the test
/// reaches it through the C API for what the Rust wrapper lacks: the request record.
struct Cluster {
    producer: BaseProducer,
    mock: *mut rd_kafka_mock_cluster_t,
    topic: String,
}

impl Cluster {
    fn new(prefix: &str, jobs: usize) -> Cluster {
        let producer: BaseProducer =
            ClientConfig::new().set("test.mock.num.brokers", "1").create().expect("a producer with a mock cluster");
        // SAFETY: the producer's handle is valid while `producer` lives, and so is the mock cluster it owns, which
        // `Cluster` keeps no longer than the producer.
        let mock = unsafe { rd_kafka_handle_mock_cluster(producer.client().native_ptr()) };
        assert!(!mock.is_null(), "the producer owns a mock cluster");
        // SAFETY: `mock` is the live cluster just checked.
        unsafe {
            rd_kafka_mock_start_request_tracking(mock);
            // The mock drops a member whose session times out while the group's first round holds its JoinGroup
            // (3 s by default), and the tests that time rebalances use 2 s sessions.
            rd_kafka_mock_group_initial_rebalance_delay_ms(mock, 1_000);
        }
        let topic = format!("qs-test-{prefix}-{}", std::process::id());
        let cluster = Cluster { producer, mock, topic };
        cluster.admin(|mock| mock.create_topic(&cluster.topic, PARTITIONS, 1).expect("create the topic"));
        cluster.produce(jobs);
        cluster
    }

    /// Produces `job-0` … `job-{jobs - 1}` and waits until the cluster has them all.
    fn produce(&self, jobs: usize) {
        for i in 0..jobs {
            let body = format!("job-{i}");
            let partition = i32::try_from(i).expect("small") % PARTITIONS;
            let record = BaseRecord::<(), _>::to(&self.topic).payload(&body).partition(partition);
            self.producer.send(record).map_err(|(e, _)| e).expect("queued");
        }
        self.producer.flush(Duration::from_secs(30)).expect("every job produced");
    }

    /// Runs `f` on the Rust wrapper of the cluster.
    fn admin<T>(&self, f: impl FnOnce(&MockCluster<'_, DefaultProducerContext>) -> T) -> T {
        f(&self.producer.client().mock_cluster().expect("the producer's mock cluster"))
    }

    /// The broker settings of the example worker.
    fn broker(&self) -> Vec<(String, String)> {
        let brokers = self.admin(|mock| mock.bootstrap_servers());
        [("KAFKA_BROKERS", brokers), ("TOPIC", self.topic.clone()), ("GROUP", format!("{}-group", self.topic))]
            .map(|(k, v)| (k.to_owned(), v))
            .to_vec()
    }

    /// The worker's settings with its timing and `extra`.
    fn env(&self, job_ms: u64, grace_ms: u64, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = workers::timed(&self.broker(), job_ms, grace_ms);
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    }

    /// When the broker received each request of kind `api`, on the monotonic clock in microseconds
    /// ([`monotonic_us`]).
    fn received(&self, api: RDKafkaApiKey) -> Vec<i64> {
        let mut count = 0;
        // SAFETY: the cluster is live; the array and its requests are ours until destroyed below, and are read
        // only before that.
        unsafe {
            let requests = rd_kafka_mock_get_requests(self.mock, &mut count);
            if requests.is_null() {
                return Vec::new();
            }
            let times = (0..count)
                .map(|i| *requests.add(i))
                .filter(|&request| rd_kafka_mock_request_api_key(request) == api as i16)
                .map(|request| rd_kafka_mock_request_timestamp(request))
                .collect();
            rd_kafka_mock_request_destroy_array(requests, count);
            times
        }
    }
}

/// The monotonic clock in microseconds, the one librdkafka stamps the mock's requests with.
fn monotonic_us() -> i64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) }, 0, "the monotonic clock");
    now.tv_sec * 1_000_000 + now.tv_nsec / 1_000
}

/// [`monotonic_us`] at `instant` (`Instant` reads the same clock, but hides its value).
fn monotonic_at(instant: Instant) -> i64 {
    monotonic_us() - i64::try_from(instant.elapsed().as_micros()).expect("recent")
}

fn ms(us: i64) -> String {
    format!("{:.0} ms", us as f64 / 1_000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_jobs_survive_random_sigterms() {
    let cluster = Cluster::new("drain-kill", 500);
    let lost = workers::kill_test(KillTest {
        kills: 4,
        pause_ms: (1_500, 3_000),
        job_ms: 50,
        deadline: Duration::from_secs(50),
        ..KillTest::five_hundred_jobs(EXAMPLE, cluster.broker())
    })
    .await;
    assert!(lost.is_empty(), "lost {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_exits_at_once_and_leaves_the_group() {
    let cluster = Cluster::new("drain-idle", 1);
    let log = DoneLog::default();
    let exit = workers::idle_exit(Worker::start(EXAMPLE, 1, &cluster.env(10, 25_000, &[]), &log), &log).await;
    let sent = monotonic_at(exit.at - exit.after_sigterm);
    let leaves = cluster.received(RDKafkaApiKey::LeaveGroup);
    let left = leaves.iter().copied().find(|&at| at >= sent).unwrap_or_else(|| {
        panic!("no LeaveGroup at or after the SIGTERM (at {sent} µs); the broker logged LeaveGroups at {leaves:?}")
    });
    println!("kafka, idle worker: SIGTERM to LeaveGroup {}", ms(left - sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_job_finishes_then_the_worker_exits() {
    let cluster = Cluster::new("drain-long", 1);
    let log = DoneLog::default();
    workers::long_job_exit(Worker::start(EXAMPLE, 1, &cluster.env(2_000, 25_000, &[]), &log), &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_stops_at_sigterm_and_the_worker_leaves_the_group_once_its_job_is_done() {
    let cluster = Cluster::new("drain-fetch", 12);
    let log = DoneLog::default();
    let worker = Worker::start(EXAMPLE, 1, &cluster.env(3_000, 25_000, &[("CONCURRENCY", "1")]), &log);
    worker.holding(1, Duration::from_secs(30)).await;
    let sent = monotonic_us();
    let exit = worker.terminate().await.expect("task");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    let exited = monotonic_at(exit.at);
    let fetches = cluster.received(RDKafkaApiKey::Fetch);
    let last_fetch = fetches.iter().max().copied().expect("the worker fetched");
    let leaves = cluster.received(RDKafkaApiKey::LeaveGroup);
    let left = leaves.iter().copied().find(|&at| at >= sent).unwrap_or_else(|| {
        panic!("no LeaveGroup at or after the SIGTERM (at {sent} µs); the broker logged LeaveGroups at {leaves:?}")
    });
    println!(
        "kafka, worker holding a 3 s job: SIGTERM to its last Fetch request {} (none after), to LeaveGroup {}, to exit {}",
        ms(last_fetch - sent),
        ms(left - sent),
        ms(exited - sent)
    );
    // A fetch in flight at SIGTERM is a long poll of at most fetch.wait.max.ms (500 ms): none starts later.
    assert!(last_fetch < sent + 1_000_000, "fetching went on {} after SIGTERM", ms(last_fetch - sent));
    assert!(
        left > sent + 1_500_000,
        "left the group {} after SIGTERM, with about 3 s of its job to go",
        ms(left - sent)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_past_the_grace_is_handed_back_and_done_elsewhere() {
    let cluster = Cluster::new("drain-grace", 1);
    let log = DoneLog::default();
    let first = Worker::start(EXAMPLE, 1, &cluster.env(60_000, 500, &[]), &log);
    workers::over_grace_hand_back(first, &log, || Worker::start(EXAMPLE, 2, &cluster.env(10, 25_000, &[]), &log)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_is_fetched_again_and_its_partition_keeps_committing() {
    let jobs = 30;
    let cluster = Cluster::new("drain-panic", jobs);
    let log = DoneLog::default();
    let worker = Worker::start(EXAMPLE, 1, &cluster.env(10, 25_000, &[("PANIC_ONCE_ON", "job-2")]), &log);
    // job-2's partition holds job-8, job-14, …: each is done only once a commit past job-2 succeeded.
    for i in 0..jobs {
        workers::done_by(&log, &format!("job-{i}"), Duration::from_secs(30)).await;
    }
    let exit = worker.terminate().await.expect("task");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert_eq!(log.lock().expect("log").len(), jobs, "every job done once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_answering_cannot_keep_the_worker_past_grace_and_budget() {
    let cluster = Cluster::new("drain-hung", 1);
    let log = DoneLog::default();
    let (grace, budget) = (Duration::from_millis(1_000), Duration::from_millis(1_000));
    let worker = Worker::start(EXAMPLE, 1, &cluster.env(60_000, 1_000, &[("DRAIN_FLUSH_MS", "1000")]), &log);
    worker.holding(1, Duration::from_secs(30)).await;
    // Every answer now takes a minute: the leave at exit, any commit, the next heartbeat.
    cluster.admin(|mock| mock.broker_round_trip_time(1, Duration::from_secs(60)).expect("stall the broker"));
    let exit = tokio::time::timeout(Duration::from_secs(30), worker.terminate()).await.expect("exits").expect("task");
    println!(
        "kafka, broker stalled: exit {:?} after SIGTERM, code {:?} ({:?})",
        exit.after_sigterm,
        exit.code(),
        exit.summary
    );
    assert!(exit.after_sigterm < grace + budget + Duration::from_secs(3), "{exit:?}");
    assert!(matches!(exit.code(), Some(0 | queue_scaler::drain::EXIT_FLUSH_TIMEOUT)), "{exit:?}");
    cluster.admin(|mock| mock.broker_round_trip_time(1, Duration::ZERO).expect("the broker answers again"));
    // Never committed: the group's next worker does it, once the first one's session has timed out.
    let second = Worker::start(EXAMPLE, 2, &cluster.env(10, 25_000, &[]), &log);
    let (by, _) = workers::done_by(&log, "job-0", Duration::from_secs(30)).await;
    assert_eq!(by, 2, "job-0 was done by the next worker");
    let _ = second.terminate().await;
}

/// Each worker's partitions at `at`, from its `assigned` and `revoked` lines so far.
fn owned(lines: &Lines, at: Instant) -> BTreeSet<i32> {
    let mut owned = BTreeSet::new();
    for (_, line) in lines.lock().expect("lines").iter().filter(|(seen, _)| *seen <= at) {
        let (assigned, partitions) = match line.split_once(' ') {
            Some(("assigned", partitions)) => (true, partitions),
            Some(("revoked", partitions)) => (false, partitions),
            _ => continue,
        };
        for partition in partitions.split(',').filter_map(|p| p.parse().ok()) {
            if assigned {
                owned.insert(partition);
            } else {
                owned.remove(&partition);
            }
        }
    }
    owned
}

/// How long after `left` (a worker's exit) every partition belonged to a worker still running again: the group's
/// rebalance completed. `None` if it never did by the last line read.
fn rebalanced_after(left: Instant, live: &[(&Lines, Option<Instant>)]) -> Option<Duration> {
    let mut moments: Vec<Instant> = live
        .iter()
        .flat_map(|(lines, _)| lines.lock().expect("lines").iter().map(|(at, _)| *at).collect::<Vec<_>>())
        .collect();
    moments.push(left);
    moments.sort();
    moments.into_iter().filter(|at| *at >= left).find_map(|at| {
        let union: BTreeSet<i32> = live
            .iter()
            .filter(|(_, gone)| gone.is_none_or(|gone| gone > at))
            .flat_map(|(lines, _)| owned(lines, at))
            .collect();
        (union.len() == usize::try_from(PARTITIONS).expect("small")).then(|| at - left)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_sigtermed_at_once_with_long_jobs_never_hold_up_the_group() {
    let jobs = 60;
    let cluster = Cluster::new("drain-three", 0);
    let log = DoneLog::default();
    let session = ("KAFKA_SESSION_TIMEOUT_MS", "2000");
    // One worker stays; three hold long jobs when SIGTERM reaches them together, and leave one after the other as
    // those jobs end: each leave is a rebalance the ones still draining must answer.
    let plan = [(1, 100, "2"), (2, 1_500, "1"), (3, 4_000, "1"), (4, 7_000, "1")];
    let mut workers = Vec::new();
    // One at a time, while there is nothing to do: the mock cluster loses a member that joins an empty group
    // together with three others (its SyncGroup is refused), where a broker would take all four.
    for (number, job_ms, concurrency) in plan {
        let extra = [session, ("CONCURRENCY", concurrency)];
        let worker = Worker::start(EXAMPLE, number, &cluster.env(job_ms, 25_000, &extra), &log);
        let lines = worker.lines();
        eventually(Duration::from_secs(30), "the worker to be assigned a partition", || async {
            (!owned(&lines, Instant::now()).is_empty()).then_some(())
        })
        .await;
        workers.push(worker);
    }
    let lines: Vec<Lines> = workers.iter().map(Worker::lines).collect();
    cluster.produce(jobs);
    eventually(Duration::from_secs(30), "the three to hold a job each", || async {
        let mut holding = true;
        for worker in &workers[1..] {
            holding &= worker.status().await.is_some_and(|(in_flight, _)| in_flight == 1);
        }
        holding.then_some(())
    })
    .await;
    let mut workers = workers.into_iter();
    let stay = workers.next().expect("four workers");
    let sent = Instant::now();
    let exits: Vec<_> = workers.map(Worker::terminate).collect();
    let mut gone: Vec<Exit> = Vec::new();
    for exit in exits {
        gone.push(tokio::time::timeout(Duration::from_secs(30), exit).await.expect("exits").expect("task"));
    }
    for exit in &gone {
        println!(
            "worker {} exit {:?} after SIGTERM: {}",
            exit.number,
            exit.after_sigterm,
            exit.summary.as_deref().unwrap_or("-")
        );
        assert_eq!(exit.code(), Some(0), "{exit:?}");
    }
    // Let the last rebalance finish (or not) before reading the lines.
    let last = gone.iter().map(|e| e.at).max().expect("three exits");
    let live: Vec<(&Lines, Option<Instant>)> =
        std::iter::once((&lines[0], None)).chain(gone.iter().map(|e| (&lines[e.number - 1], Some(e.at)))).collect();
    eventually(Duration::from_secs(30), "the last rebalance to complete", || async {
        rebalanced_after(last, &live).map(|_| ())
    })
    .await;
    let mut rebalances = Vec::new();
    for exit in &gone {
        let took = rebalanced_after(exit.at, &live).expect("completed");
        println!("worker {} left {:?} after SIGTERM; the group rebalanced {took:?} later", exit.number, exit.at - sent);
        rebalances.push(took);
    }
    println!("kafka, three workers drained at once: rebalances after each leave {}", workers::spread(&rebalances));
    for i in 0..jobs {
        workers::done_by(&log, &format!("job-{i}"), Duration::from_secs(60)).await;
    }
    let duplicates = log.lock().expect("log").len() - jobs;
    println!("kafka, three workers drained at once: {jobs} jobs, none lost, {duplicates} done twice");
    let exit = stay.terminate().await.expect("task");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(
        rebalances.iter().all(|took| *took < Duration::from_secs(2)),
        "a rebalance took 2 s or more: {rebalances:?}"
    );
}
