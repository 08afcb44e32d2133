//! The Pub/Sub worker example under SIGTERM against the emulator: nothing lost, idle and busy exits timed.
//!
//! Workers reach the emulator through [`Proxy`], which gives the emulator the end-of-stream redelivery real
//! Pub/Sub makes and the emulator lacks (see `support/pubsub_proxy.rs`); what the workers send and receive passes
//! through untouched. Subscriptions use the shortest ack deadline (10 s), so a message whose lease a worker had
//! extended comes back soon after that worker is gone.

use crate::support::pubsub::{PROJECT, TestSubscription, emulator_host};
use crate::support::pubsub_proxy::Proxy;
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
