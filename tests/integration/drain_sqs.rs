//! The SQS worker example under SIGTERM against moto: nothing lost, idle and busy exits timed, a long job's lease
//! kept from a second worker, `/status` against the queue's own in-flight count, receives seen at a tap, and a
//! queue that stops answering.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::eventually;
use crate::support::moto::{self, TestQueue};
use crate::support::tcp_proxy::TcpProxy;
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

/// Broker settings with `extra` on top, the worker's timing included.
fn env_with(queue: &TestQueue, (job_ms, grace_ms): (u64, u64), extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = env(queue, job_ms, grace_ms);
    env.retain(|(k, _)| !extra.iter().any(|(name, _)| name == k));
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// The queue's (visible, in flight) message counts, as `GetQueueAttributes` gives them.
async fn counts(queue: &TestQueue) -> (u64, u64) {
    moto::use_dummy_credentials();
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(moto::REGION))
        .endpoint_url(moto::endpoint())
        .load()
        .await;
    let attributes = Client::new(&shared)
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    let count =
        |name| attributes.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse().ok()).expect("a count");
    (
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Every `ReceiveMessage` call seen: when its request went out, and when its answer came back.
type Receives = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

/// A TCP proxy to moto that notes every `ReceiveMessage` call passing through: when its request went out and when
/// its answer came back.
struct ReceiveTap {
    port: u16,
    receives: Receives,
    task: JoinHandle<()>,
}

impl ReceiveTap {
    async fn start() -> ReceiveTap {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let upstream = moto::endpoint().trim_start_matches("http://").to_owned();
        let receives = Receives::default();
        let seen = receives.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, seen) = (upstream.clone(), seen.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        tap(client, server, seen).await;
                    }
                });
            }
        });
        ReceiveTap { port, receives, task }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn receives(&self) -> Vec<(Instant, Option<Instant>)> {
        self.receives.lock().expect("receives").clone()
    }
}

impl Drop for ReceiveTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one HTTP/1.1 connection both ways; a request naming `AmazonSQS.ReceiveMessage` is noted when it passes,
/// and answered when the next bytes come back (requests on one connection are answered in order).
async fn tap(client: TcpStream, server: TcpStream, seen: Receives) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // The receive on this connection waiting for its answer: its index in `seen`.
    let waiting: Arc<Mutex<Option<usize>>> = Arc::default();
    let (answered, noted) = (waiting.clone(), seen.clone());
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
            if let Some(index) = answered.lock().expect("waiting").take() {
                noted.lock().expect("receives")[index].1 = Some(Instant::now());
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = client_read.read(&mut buf).await {
        if buf[..n].windows(24).any(|w| w == b"AmazonSQS.ReceiveMessage") {
            let mut seen = seen.lock().expect("receives");
            *waiting.lock().expect("waiting") = Some(seen.len());
            seen.push((Instant::now(), None));
        }
        if server_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    down.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_keeps_its_message_invisible_and_nobody_else_gets_it() {
    let queue = TestQueue::new("drain-lease").await;
    queue.send(1, 0).await;
    let log = DoneLog::default();
    // Invisible for 2 s at a time, renewed every third of that while the 6 s job runs.
    let lease = [("SQS_VISIBILITY_SECONDS", "2"), ("CONCURRENCY", "1")];
    let first = Worker::start(EXAMPLE, 1, &env_with(&queue, (6_000, 25_000), &lease), &log);
    first.holding(1, Duration::from_secs(30)).await;
    // A second worker long-polls the same queue throughout: a lapsed lease would hand it job-0 within a poll.
    let second = Worker::start(EXAMPLE, 2, &env_with(&queue, (10, 25_000), &lease), &log);
    let (by, _) = workers::done_by(&log, "job-0", Duration::from_secs(30)).await;
    assert_eq!(by, 1, "the worker holding the job finished it");
    for worker in [first, second] {
        let exit = worker.terminate().await.expect("task");
        assert_eq!(exit.code(), Some(0), "{exit:?}");
    }
    assert_eq!(log.lock().expect("log").len(), 1, "job-0 done once: {:?}", log.lock().expect("log"));
    assert_eq!(counts(&queue).await, (0, 0), "nothing left on the queue");
    queue.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_messages_in_flight_on_the_queue_are_the_jobs_status_counts() {
    let queue = TestQueue::new("drain-inflight").await;
    queue.send(5, 0).await;
    let log = DoneLog::default();
    let worker = Worker::start(EXAMPLE, 1, &env_with(&queue, (3_000, 25_000), &[("CONCURRENCY", "3")]), &log);
    let (held, on_queue) =
        eventually(Duration::from_secs(30), "three jobs held and three messages in flight", || async {
            let held = worker.status().await.map(|(in_flight, _)| in_flight);
            let on_queue = counts(&queue).await;
            (held == Some(3) && on_queue == (2, 3)).then_some((held, on_queue))
        })
        .await;
    println!("sqs: /status in_flight {held:?}; the queue: {} visible, {} in flight", on_queue.0, on_queue.1);
    let exit = worker.terminate().await.expect("task");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(exit.summary.as_deref().is_some_and(|s| s.starts_with("drain: 3 finished, 0 handed back")), "{exit:?}");
    assert_eq!(counts(&queue).await, (2, 0), "the two never received are still there, nothing in flight");
    queue.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_receive_starts_after_sigterm_and_the_one_under_way_ends_within_its_long_poll() {
    let queue = TestQueue::new("drain-receive").await;
    queue.send(1, 0).await;
    let tap = ReceiveTap::start().await;
    let log = DoneLog::default();
    let mut settings = env(&queue, 10, 25_000);
    settings.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    settings.push(("AWS_ENDPOINT_URL".to_owned(), tap.endpoint()));
    let worker = Worker::start(EXAMPLE, 1, &settings, &log);
    workers::done_by(&log, "job-0", Duration::from_secs(30)).await;
    // Idle on an empty queue: a 1 s long poll is under way nearly all the time.
    eventually(Duration::from_secs(10), "a receive under way", || async {
        tap.receives().last().filter(|(_, answered)| answered.is_none()).map(|_| ())
    })
    .await;
    let sent = Instant::now();
    let exit = worker.terminate().await.expect("task");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    let receives = tap.receives();
    let started_after: Vec<_> = receives.iter().filter(|(started, _)| *started > sent).collect();
    let last_answer = receives.iter().filter_map(|(_, answered)| *answered).max().expect("answered receives");
    println!(
        "sqs, idle worker: SIGTERM to the last ReceiveMessage answered {:?} (long poll 1 s), to exit {:?}; {} receives, none started after SIGTERM",
        last_answer.saturating_duration_since(sent),
        exit.after_sigterm,
        receives.len()
    );
    assert!(started_after.is_empty(), "receives started after SIGTERM: {started_after:?}");
    assert!(last_answer < sent + Duration::from_millis(1_500), "the receive under way outlived its long poll");
    queue.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_stops_answering_cannot_keep_the_worker_past_grace_and_budget() {
    // The job outlives the grace: its visibility reset (the hand-back) is what hangs.
    queue_stalls_mid_drain("drain-hung", 60_000, 1_000).await;
}

#[tokio::test]
async fn an_ack_that_hangs_past_the_grace_exits_non_zero_within_grace_and_budget() {
    // The job ends inside the grace: its delete (the ack) is what hangs, and it is still hanging when the grace ends.
    queue_stalls_mid_drain("drain-hung-ack", 1_000, 2_000).await;
}

/// A worker holding one job (of `job_ms`, under a grace of `grace_ms`) is SIGTERMed while the queue stops
/// answering: it exits 5 within grace + a 1 s budget (+3 s of slack for a loaded machine), and the job, never
/// deleted, is done by the next worker.
async fn queue_stalls_mid_drain(name: &str, job_ms: u64, grace_ms: u64) {
    let queue = TestQueue::new(name).await;
    queue.send(1, 0).await;
    let link = TcpProxy::start(moto::endpoint().trim_start_matches("http://").parse().expect("moto's address")).await;
    let mut stalled =
        env_with(&queue, (job_ms, grace_ms), &[("DRAIN_FLUSH_MS", "1000"), ("SQS_VISIBILITY_SECONDS", "3")]);
    stalled.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    stalled.push(("AWS_ENDPOINT_URL".to_owned(), format!("http://127.0.0.1:{}", link.port)));
    let log = DoneLog::default();
    let (grace, budget) = (Duration::from_millis(grace_ms), Duration::from_millis(1_000));
    let worker = Worker::start(EXAMPLE, 1, &stalled, &log);
    worker.holding(1, Duration::from_secs(30)).await;
    link.stall();
    let exit = tokio::time::timeout(Duration::from_secs(30), worker.terminate()).await.expect("exits").expect("task");
    println!(
        "sqs, queue stalled ({job_ms} ms job, {grace_ms} ms grace): exit {:?} after SIGTERM, code {:?} ({:?})",
        exit.after_sigterm,
        exit.code(),
        exit.summary
    );
    assert_eq!(exit.code(), Some(queue_scaler::drain::EXIT_FLUSH_TIMEOUT), "{exit:?}");
    assert!(exit.after_sigterm < grace + budget + Duration::from_secs(3), "{exit:?}");
    // Neither the delete nor the visibility reset got through: the message comes back when its last renewal runs out.
    link.down();
    let second = Worker::start(EXAMPLE, 2, &env(&queue, 10, 25_000), &log);
    let (by, _) = workers::done_by(&log, "job-0", Duration::from_secs(30)).await;
    assert_eq!(by, 2, "job-0 was done by the next worker");
    let _ = second.terminate().await;
    queue.delete().await;
}
