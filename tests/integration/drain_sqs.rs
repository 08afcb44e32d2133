//! The SQS worker example under SIGTERM against moto: nothing lost, idle and busy exits timed.

use crate::support::moto::{self, TestQueue};
use crate::support::workers::{self, DoneLog, KillTest, Worker};

const EXAMPLE: &str = "worker_sqs";

/// Broker settings as a pod would get them: the queue URL and the SDK's own variables.
fn broker(queue: &TestQueue) -> Vec<(String, String)> {
    let mut env = vec![
        ("SQS_QUEUE_URL".to_owned(), queue.url.clone()),
        ("AWS_ENDPOINT_URL".to_owned(), moto::endpoint()),
        ("AWS_REGION".to_owned(), moto::REGION.to_owned()),
        // A short long poll: an idle worker waits for the receive under way before it exits.
        ("SQS_WAIT_SECONDS".to_owned(), "1".to_owned()),
    ];
    env.extend(moto::CREDENTIALS.map(|(k, v)| (k.to_owned(), v.to_owned())));
    env
}

fn env(queue: &TestQueue, job_ms: u64, grace_ms: u64) -> Vec<(String, String)> {
    workers::timed(&broker(queue), job_ms, grace_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_jobs_survive_random_sigterms() {
    let queue = TestQueue::new("drain-kill").await;
    queue.send(500, 0).await;
    let lost = workers::kill_test(KillTest::five_hundred_jobs(EXAMPLE, broker(&queue))).await;
    queue.delete().await;
    assert!(lost.is_empty(), "lost {lost:?}");
}

#[tokio::test]
async fn idle_worker_exits_at_once() {
    let queue = TestQueue::new("drain-idle").await;
    queue.send(1, 0).await;
    let log = DoneLog::default();
    workers::idle_exit(Worker::start(EXAMPLE, 1, &env(&queue, 10, 25_000), &log), &log).await;
    queue.delete().await;
}

#[tokio::test]
async fn long_job_finishes_then_the_worker_exits() {
    let queue = TestQueue::new("drain-long").await;
    queue.send(1, 0).await;
    let log = DoneLog::default();
    workers::long_job_exit(Worker::start(EXAMPLE, 1, &env(&queue, 2_000, 25_000), &log), &log).await;
    queue.delete().await;
}

#[tokio::test]
async fn job_past_the_grace_is_handed_back_and_done_elsewhere() {
    let queue = TestQueue::new("drain-grace").await;
    queue.send(1, 0).await;
    let log = DoneLog::default();
    let first = Worker::start(EXAMPLE, 1, &env(&queue, 60_000, 500), &log);
    workers::over_grace_hand_back(first, &log, || Worker::start(EXAMPLE, 2, &env(&queue, 10, 25_000), &log)).await;
    queue.delete().await;
}
