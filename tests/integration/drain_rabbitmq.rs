//! The RabbitMQ worker example under SIGTERM against the real broker: nothing lost, idle and busy exits timed.

use crate::support::rabbitmq::{TestQueue, amqp_url};
use crate::support::workers::{self, DoneLog, KillTest, Worker};

const EXAMPLE: &str = "worker_rabbitmq";

fn broker(queue: &TestQueue) -> Vec<(String, String)> {
    [("AMQP_URL", amqp_url()), ("QUEUE", queue.name.clone())].map(|(k, v)| (k.to_owned(), v)).to_vec()
}

fn env(queue: &TestQueue, job_ms: u64, grace_ms: u64) -> Vec<(String, String)> {
    workers::timed(&broker(queue), job_ms, grace_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_jobs_survive_random_sigterms() {
    let queue = TestQueue::new("drain-kill").await;
    queue.publish(0, 500).await;
    let lost = workers::kill_test(KillTest::five_hundred_jobs(EXAMPLE, broker(&queue))).await;
    assert!(lost.is_empty(), "lost {lost:?}");
}

#[tokio::test]
async fn idle_worker_exits_at_once() {
    let queue = TestQueue::new("drain-idle").await;
    queue.publish(0, 1).await;
    let log = DoneLog::default();
    workers::idle_exit(Worker::start(EXAMPLE, 1, &env(&queue, 10, 25_000), &log), &log).await;
}

#[tokio::test]
async fn long_job_finishes_then_the_worker_exits() {
    let queue = TestQueue::new("drain-long").await;
    queue.publish(0, 1).await;
    let log = DoneLog::default();
    workers::long_job_exit(Worker::start(EXAMPLE, 1, &env(&queue, 2_000, 25_000), &log), &log).await;
}

#[tokio::test]
async fn job_past_the_grace_is_handed_back_and_done_elsewhere() {
    let queue = TestQueue::new("drain-grace").await;
    queue.publish(0, 1).await;
    let log = DoneLog::default();
    let first = Worker::start(EXAMPLE, 1, &env(&queue, 60_000, 500), &log);
    workers::over_grace_hand_back(first, &log, || Worker::start(EXAMPLE, 2, &env(&queue, 10, 25_000), &log)).await;
}
