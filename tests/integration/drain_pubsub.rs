//! The Pub/Sub worker example under SIGTERM against the emulator: nothing lost, idle and busy exits timed.
//!
//! Workers reach the emulator through [`Proxy`], which gives the emulator the end-of-stream redelivery real
//! Pub/Sub makes and the emulator lacks (see `support/pubsub_proxy.rs`); what the workers send and receive passes
//! through untouched. Subscriptions use the shortest ack deadline (10 s), so a message whose lease a worker had
//! extended comes back soon after that worker is gone.

use std::time::{Duration, Instant};

use crate::support::eventually;
use crate::support::pubsub::{PROJECT, TestSubscription, emulator_host};
use crate::support::pubsub_proxy::Proxy;
use crate::support::tcp_proxy::TcpProxy;
use crate::support::workers::{self, DoneLog, KillTest, Worker};

const EXAMPLE: &str = "worker_pubsub";

const ACK_DEADLINE_SECONDS: i32 = 10;

fn broker(subscription: &TestSubscription, proxy: &Proxy) -> Vec<(String, String)> {
    [
        ("PUBSUB_PROJECT", PROJECT.to_owned()),
        ("SUBSCRIPTION", subscription.id.clone()),
        ("PUBSUB_EMULATOR_HOST", proxy.addr.to_string()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

fn env(subscription: &TestSubscription, proxy: &Proxy, job_ms: u64, grace_ms: u64) -> Vec<(String, String)> {
    workers::timed(&broker(subscription, proxy), job_ms, grace_ms)
}

/// `env` with `extra` settings.
fn env_with(
    subscription: &TestSubscription,
    proxy: &Proxy,
    (job_ms, grace_ms): (u64, u64),
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = env(subscription, proxy, job_ms, grace_ms);
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_jobs_survive_random_sigterms() {
    let subscription = TestSubscription::with_ack_deadline("drain-kill", ACK_DEADLINE_SECONDS).await;
    let proxy = Proxy::start(emulator_host(), subscription.name()).await;
    subscription.publish(500).await;
    let lost = workers::kill_test(KillTest::five_hundred_jobs(EXAMPLE, broker(&subscription, &proxy))).await;
    assert!(lost.is_empty(), "lost {lost:?}");
}

#[tokio::test]
async fn idle_worker_exits_at_once() {
    let subscription = TestSubscription::with_ack_deadline("drain-idle", ACK_DEADLINE_SECONDS).await;
    let proxy = Proxy::start(emulator_host(), subscription.name()).await;
    subscription.publish(1).await;
    let log = DoneLog::default();
    workers::idle_exit(Worker::start(EXAMPLE, 1, &env(&subscription, &proxy, 10, 25_000), &log), &log).await;
}

#[tokio::test]
async fn long_job_finishes_then_the_worker_exits() {
    let subscription = TestSubscription::with_ack_deadline("drain-long", ACK_DEADLINE_SECONDS).await;
    let proxy = Proxy::start(emulator_host(), subscription.name()).await;
    subscription.publish(1).await;
    let log = DoneLog::default();
    workers::long_job_exit(Worker::start(EXAMPLE, 1, &env(&subscription, &proxy, 2_000, 25_000), &log), &log).await;
}

#[tokio::test]
async fn job_past_the_grace_is_handed_back_and_done_elsewhere() {
    let subscription = TestSubscription::with_ack_deadline("drain-grace", ACK_DEADLINE_SECONDS).await;
    let proxy = Proxy::start(emulator_host(), subscription.name()).await;
    subscription.publish(1).await;
    let log = DoneLog::default();
    let first = Worker::start(EXAMPLE, 1, &env(&subscription, &proxy, 60_000, 500), &log);
    workers::over_grace_hand_back(first, &log, || {
        Worker::start(EXAMPLE, 2, &env(&subscription, &proxy, 10, 25_000), &log)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streaming_pull_ends_at_sigterm_while_the_job_still_runs() {
    let subscription = TestSubscription::with_ack_deadline("drain-pull", ACK_DEADLINE_SECONDS).await;
    let proxy = Proxy::start(emulator_host(), subscription.name()).await;
    subscription.publish(3).await;
    let log = DoneLog::default();
    let one_at_a_time = env_with(&subscription, &proxy, (3_000, 25_000), &[("CONCURRENCY", "1")]);
    let worker = Worker::start(EXAMPLE, 1, &one_at_a_time, &log);
    worker.holding(1, Duration::from_secs(30)).await;
    let sent = Instant::now();
    let exit = worker.terminate();
    let ended = eventually(Duration::from_secs(10), "the streaming pull to end", || async {
        proxy.pulls().iter().filter_map(|(_, closed)| *closed).filter(|closed| *closed >= sent).min()
    })
    .await;
    let exit = exit.await.expect("task");
    let done_at = log.lock().expect("log").first().map(|(_, _, at)| *at).expect("the job held was done");
    println!(
        "pubsub: SIGTERM to the streaming pull's end {:?}, to the job's ack {:?}, to exit {:?}",
        ended - sent,
        done_at - sent,
        exit.after_sigterm
    );
    assert!(ended < done_at, "the pull ended only after the job was done");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(exit.summary.as_deref().is_some_and(|s| s.starts_with("drain: 1 finished, 0 handed back")), "{exit:?}");
    // The job held keeps its lease to the end: the two messages leased but never started come back, and each job
    // is done once (nacking every lease when the pull ends would have the held job done a second time elsewhere).
    let second = Worker::start(EXAMPLE, 2, &env(&subscription, &proxy, 10, 25_000), &log);
    for i in 0..3 {
        workers::done_by(&log, &format!("job-{i}"), Duration::from_secs(30)).await;
    }
    let _ = second.terminate().await;
    assert_eq!(log.lock().expect("log").len(), 3, "every job done once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_stops_answering_cannot_keep_the_worker_past_grace_and_budget() {
    let subscription = TestSubscription::with_ack_deadline("drain-hung", ACK_DEADLINE_SECONDS).await;
    let proxy = Proxy::start(emulator_host(), subscription.name()).await;
    subscription.publish(1).await;
    // Between the worker and the emulator's proxy, a link the test can stall.
    let link = TcpProxy::start(proxy.addr).await;
    let mut stalled = env_with(&subscription, &proxy, (60_000, 1_000), &[("DRAIN_FLUSH_MS", "1000")]);
    stalled.retain(|(k, _)| k != "PUBSUB_EMULATOR_HOST");
    stalled.push(("PUBSUB_EMULATOR_HOST".to_owned(), format!("127.0.0.1:{}", link.port)));
    let log = DoneLog::default();
    let (grace, budget) = (Duration::from_millis(1_000), Duration::from_millis(1_000));
    let worker = Worker::start(EXAMPLE, 1, &stalled, &log);
    worker.holding(1, Duration::from_secs(30)).await;
    link.stall();
    let exit = tokio::time::timeout(Duration::from_secs(30), worker.terminate()).await.expect("exits").expect("task");
    println!(
        "pubsub, service stalled: exit {:?} after SIGTERM, code {:?} ({:?})",
        exit.after_sigterm,
        exit.code(),
        exit.summary
    );
    assert_eq!(exit.code(), Some(queue_scaler::drain::EXIT_FLUSH_TIMEOUT), "{exit:?}");
    assert!(exit.after_sigterm < grace + budget + Duration::from_secs(3), "{exit:?}");
    // The nack went nowhere: the message comes back once its stream is gone, and the next worker does it.
    link.down();
    let second = Worker::start(EXAMPLE, 2, &env(&subscription, &proxy, 10, 25_000), &log);
    let (by, _) = workers::done_by(&log, "job-0", Duration::from_secs(30)).await;
    assert_eq!(by, 2, "job-0 was done by the next worker");
    let _ = second.terminate().await;
}
