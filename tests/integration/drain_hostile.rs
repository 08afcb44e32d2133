//! The RabbitMQ worker examples on a bad day, as real processes against the real broker: a broker that stops
//! answering mid-drain, impatient signals, a job that panics, a job run as a child process, intake stopped at the
//! broker, quiet/resume through the endpoint with its token, and an endpoint out of file descriptors. Times are
//! measured and printed, and bounded only generously.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::eventually;
use crate::support::rabbitmq::{TestQueue, amqp_url, management_url};
use crate::support::tcp_proxy::TcpProxy;
use crate::support::workers::{self, DoneLog, Worker};

const EXAMPLE: &str = "worker_rabbitmq";

fn env(url: String, queue: &TestQueue, job_ms: u64, grace_ms: u64, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let broker = [("AMQP_URL".to_owned(), url), ("QUEUE".to_owned(), queue.name.clone())];
    let mut env = workers::timed(&broker, job_ms, grace_ms);
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// A proxy to the local broker, and the AMQP URL through it.
async fn proxied() -> (TcpProxy, String) {
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().expect("address")).await;
    let url = amqp_url().replace("127.0.0.1:5672", &format!("127.0.0.1:{}", proxy.port));
    (proxy, url)
}

/// The queue's consumer count, by passive declare: exact and immediate, where the management API's count follows
/// its statistics interval (5 s by default).
async fn consumers(queue: &TestQueue) -> Option<u64> {
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let declared = queue.channel().queue_declare(queue.name.as_str().into(), passive, FieldTable::default()).await;
    declared.ok().map(|q| u64::from(q.consumer_count()))
}

/// The queue's consumer count from the management API, for comparison.
async fn managed_consumers(queue: &TestQueue) -> Option<u64> {
    let url = format!("{}/api/queues/%2F/{}", management_url(), queue.name);
    let body: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
    body["consumers"].as_u64()
}

/// One request to the worker's endpoint: (status code, body).
async fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: worker\r\n{auth}Content-Length: 0\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let code = response.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    (code, response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_answering_mid_drain_cannot_keep_the_worker_past_grace_and_budget() {
    let queue = TestQueue::new("drain-hung").await;
    queue.publish(0, 1).await;
    let (proxy, url) = proxied().await;
    let log = DoneLog::default();
    let (grace, budget) = (Duration::from_millis(1_000), Duration::from_millis(1_000));
    let extra = [("DRAIN_FLUSH_MS", "1000")];
    let worker = Worker::start(EXAMPLE, 1, &env(url, &queue, 60_000, 1_000, &extra), &log);
    worker.holding(1, Duration::from_secs(30)).await;
    proxy.stall();
    let exit = tokio::time::timeout(Duration::from_secs(30), worker.terminate()).await.expect("exits").expect("task");
    eprintln!("rabbitmq, broker stalled: exit {:?} after SIGTERM ({:?})", exit.after_sigterm, exit.summary);
    assert_eq!(exit.code(), Some(queue_scaler::drain::EXIT_FLUSH_TIMEOUT), "{exit:?}");
    assert!(exit.after_sigterm < grace + budget + Duration::from_secs(3), "{exit:?}");
    let summary = exit.summary.expect("the watchdog printed the summary");
    assert!(summary.contains("flush budget of 1000 ms ran out"), "{summary}");
    proxy.down();
    // Handed back into a socket that went nowhere: the broker requeues it when the connection closes.
    eventually(Duration::from_secs(30), "job-0 back in the queue", || async {
        (queue.ready().await == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_the_flush_exits_at_once() {
    let queue = TestQueue::new("drain-cold").await;
    queue.publish(0, 1).await;
    let (proxy, url) = proxied().await;
    let log = DoneLog::default();
    let worker = Worker::start(EXAMPLE, 1, &env(url, &queue, 60_000, 60_000, &[("DRAIN_FLUSH_MS", "60000")]), &log);
    worker.holding(1, Duration::from_secs(30)).await;
    proxy.stall();
    worker.signal("TERM");
    // The second signal cuts the grace short: the hand-back goes into the stalled socket, the close hangs.
    worker.signal("INT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = Instant::now();
    worker.signal("TERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), worker.exit(third)).await.expect("exits").expect("task");
    eprintln!("third signal during the flush: exit {:?} later ({:?})", exit.after_sigterm, exit.summary);
    assert_eq!(exit.code(), Some(queue_scaler::drain::EXIT_COLD), "{exit:?}");
    assert!(exit.after_sigterm < Duration::from_secs(5), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_stops_at_the_broker_while_the_job_still_runs() {
    let queue = TestQueue::new("drain-cancel").await;
    queue.publish(0, 3).await;
    let log = DoneLog::default();
    let worker = Worker::start(EXAMPLE, 1, &env(amqp_url(), &queue, 3_000, 25_000, &[("CONCURRENCY", "1")]), &log);
    worker.holding(1, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(10), "the management API to count the consumer", || async {
        (consumers(&queue).await == Some(1)).then_some(())
    })
    .await;
    let sent = Instant::now();
    let exit = worker.terminate();
    let gone = eventually(Duration::from_secs(10), "no consumer on the queue", || async {
        (consumers(&queue).await == Some(0)).then(|| sent.elapsed())
    })
    .await;
    let managed = eventually(Duration::from_secs(15), "no consumer in the management API", || async {
        (managed_consumers(&queue).await == Some(0)).then(|| sent.elapsed())
    })
    .await;
    eprintln!("rabbitmq: SIGTERM to 0 consumers on the queue in {gone:?} (management API: {managed:?})");
    let exit = exit.await.expect("task");
    let (_, done_at) = workers::done_by(&log, "job-0", Duration::ZERO).await;
    assert!(sent + gone < done_at, "the consumer was cancelled only after the job ended");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(exit.summary.as_deref().is_some_and(|s| s.starts_with("drain: 1 finished, 0 handed back")), "{exit:?}");
    assert_eq!(queue.ready().await, 2, "the two jobs never started are back in the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_is_handed_back_and_done_by_the_same_worker() {
    let queue = TestQueue::new("drain-panic").await;
    queue.publish(0, 5).await;
    let log = DoneLog::default();
    let worker = Worker::start(EXAMPLE, 1, &env(amqp_url(), &queue, 10, 25_000, &[("PANIC_ONCE_ON", "job-2")]), &log);
    for i in 0..5 {
        workers::done_by(&log, &format!("job-{i}"), Duration::from_secs(30)).await;
    }
    let exit = worker.terminate().await.expect("task");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert_eq!(log.lock().expect("log").len(), 5, "every job done once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_as_a_child_process_is_killed_when_handed_back() {
    let queue = TestQueue::new("drain-process").await;
    queue.publish(0, 1).await;
    let log = DoneLog::default();
    let first = Worker::start("worker_process", 1, &env(amqp_url(), &queue, 60_000, 500, &[]), &log);
    let lines = first.lines();
    let pid = eventually(Duration::from_secs(30), "the job's child process", || async {
        lines.lock().expect("lines").iter().find_map(|(_, l)| l.strip_prefix("child job-0 ")?.parse::<u32>().ok())
    })
    .await;
    let second_env = env(amqp_url(), &queue, 10, 25_000, &[]);
    workers::over_grace_hand_back(first, &log, || Worker::start("worker_process", 2, &second_env, &log)).await;
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    // Gone, or at most a zombie waiting for init to reap it.
    let running =
        state.as_deref().and_then(|s| s.rsplit(')').next()).is_some_and(|rest| !rest.trim_start().starts_with('Z'));
    assert!(!running, "the child {pid} outlived its job: {state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_needs_the_token_stops_intake_and_resume_takes_jobs_again() {
    let queue = TestQueue::new("drain-quiet").await;
    queue.publish(0, 1).await;
    let log = DoneLog::default();
    let extra = [("DRAIN_TOKEN", "s3cret"), ("CONCURRENCY", "1")];
    let worker = Worker::start(EXAMPLE, 1, &env(amqp_url(), &queue, 1_500, 25_000, &extra), &log);
    worker.holding(1, Duration::from_secs(30)).await;
    let addr = worker.endpoint();
    assert_eq!(request(addr, "POST", "/quiet", None).await.0, 401);
    assert_eq!(request(addr, "POST", "/quiet", Some("wrong")).await.0, 401);
    assert_eq!(worker.status().await.map(|(n, _)| n), Some(1), "status stays open and nothing changed");
    let quieted = Instant::now();
    let (code, body) = request(addr, "POST", "/quiet", Some("s3cret")).await;
    assert_eq!((code, body.as_str()), (200, r#"{"in_flight":1,"draining":false,"quiet":true}"#));
    let cancelled = eventually(Duration::from_secs(10), "no consumer while quiet", || async {
        (consumers(&queue).await == Some(0)).then(|| quieted.elapsed())
    })
    .await;
    eprintln!("rabbitmq: POST /quiet to 0 consumers in {cancelled:?}");
    // The job held is finished while quiet; a new one is not taken.
    workers::done_by(&log, "job-0", Duration::from_secs(10)).await;
    queue.publish(1, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((queue.ready().await, worker.status().await.map(|(n, _)| n)), (1, Some(0)), "took a job while quiet");
    assert_eq!(request(addr, "POST", "/resume", Some("s3cret")).await.0, 200);
    workers::done_by(&log, "job-1", Duration::from_secs(10)).await;
    // Quiet again, then SIGTERM with nothing in flight: out at once.
    assert_eq!(request(addr, "POST", "/quiet", Some("s3cret")).await.0, 200);
    eventually(Duration::from_secs(10), "idle", || async { worker.status().await.filter(|(n, _)| *n == 0) }).await;
    let exit = worker.terminate().await.expect("task");
    eprintln!("quiet worker, nothing in flight: exit {:?} after SIGTERM", exit.after_sigterm);
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(exit.after_sigterm < Duration::from_secs(2), "{exit:?}");
}

/// CPU time the process `pid` has used so far (user + system), from `/proc`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the worker's /proc stat");
    // After the command name in parentheses: state is field 3, utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf reads a constant of the system.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).expect("clock ticks per second");
    Duration::from_millis(ticks * 1_000 / per_second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_out_of_file_descriptors_waits_between_accepts_instead_of_spinning() {
    let queue = TestQueue::new("drain-fds").await;
    let log = DoneLog::default();
    let worker = Worker::start(EXAMPLE, 1, &env(amqp_url(), &queue, 10, 25_000, &[]), &log);
    eventually(Duration::from_secs(30), "the endpoint to answer", || worker.status()).await;
    let pid = worker.pid();
    // Two descriptors to spare: the first connections below take them, and every accept after that fails.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the worker's descriptors").count();
    let limit = |new: Option<libc::rlimit>| {
        let pid = libc::pid_t::try_from(pid).expect("a pid");
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        let new = new.as_ref().map_or(std::ptr::null(), |new| new as *const libc::rlimit);
        // SAFETY: prlimit reads `new` unless it is null, and writes the limits in force before into `old`.
        let set = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, new, &mut old) };
        assert_eq!(set, 0, "the worker's descriptor limit: {}", std::io::Error::last_os_error());
        old
    };
    let before_limit = limit(None);
    limit(Some(libc::rlimit { rlim_cur: (open + 2) as libc::rlim_t, ..before_limit }));
    let mut held = Vec::new();
    for _ in 0..8 {
        // Connections that send nothing: the worker holds each until its 5 s client deadline.
        held.push(TcpStream::connect(worker.endpoint()).await.expect("connect"));
    }
    let (before, from) = (cpu_time(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_time(pid) - before;
    println!("endpoint out of descriptors: {used:?} of CPU in {:?}", from.elapsed());
    // The worker's own teardown (closing the broker connection) needs descriptors too.
    limit(Some(before_limit));
    drop(held);
    eventually(Duration::from_secs(10), "the endpoint to answer again", || worker.status()).await;
    let exit = worker.terminate().await.expect("task");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(used < Duration::from_millis(300), "the accept loop spun: {used:?} of CPU in 1 s");
}

/// Set in the environment of a copy of this test binary that plays a worker whose `main` never reaches `wait()`.
const NEVER_WAITS: &str = "QS_TEST_WORKER_NEVER_WAITS";
const CHILD_TEST: &str = "drain_hostile::a_worker_whose_main_never_reaches_wait_still_exits";

/// The worker: installs the drain (grace 500 ms, flush budget 500 ms), takes one job whose hand-back never ends, says
/// so, and blocks its thread for good — as a `main` stuck in a blocking call would. On the test's current-thread
/// runtime that also stops every task: only the drain's own threads are left to end the process.
async fn worker_that_never_waits() -> ! {
    let drain = queue_scaler::drain::Drain::builder()
        .grace(Duration::from_millis(500))
        .flush_budget(Duration::from_millis(500))
        .install()
        .expect("install the drain");
    let permit = drain.next_job(async { 1 }).await.expect("a permit");
    let _held = permit.start(std::future::pending::<Result<(), &'static str>>);
    println!("holding a job");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Starts the worker above, waits until it holds its job, sends `signals` 100 ms apart, and returns its exit code
/// and how long after the first signal it exited.
async fn run_worker_that_never_waits(signals: &[&str]) -> (Option<i32>, Duration, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads", "1"])
        .env(NEVER_WAITS, "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut output = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            output.push_str(&line);
            output.push('\n');
            if line.ends_with("holding a job") {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the worker never took its job: {output}"));
    let pid = child.id().expect("running").to_string();
    let first = Instant::now();
    for signal in signals {
        let sent = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(sent.success(), "SIG{signal} delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap_or_else(|_| panic!("the worker never exited after {signals:?}: {output}"))
        .expect("exit status");
    let took = first.elapsed();
    while let Ok(Some(line)) = lines.next_line().await {
        output.push_str(&line);
        output.push('\n');
    }
    (status.code(), took, output)
}

#[tokio::test]
async fn a_worker_whose_main_never_reaches_wait_still_exits() {
    if std::env::var_os(NEVER_WAITS).is_some() {
        worker_that_never_waits().await;
    }
    // One SIGTERM: the watchdog ends it when grace and budget are spent, with the summary line.
    let (code, took, output) = run_worker_that_never_waits(&["TERM"]).await;
    println!("never waits, one SIGTERM: exit {code:?} after {took:?}");
    assert_eq!(code, Some(queue_scaler::drain::EXIT_FLUSH_TIMEOUT), "{output}");
    assert!(took >= Duration::from_secs(1), "exited {took:?} after SIGTERM, before grace + budget");
    assert!(output.contains("drain: 0 finished, 0 handed back, 0 failed, 1 unresolved"), "{output}");
    // Three signals: the second cuts the grace, the third (during the flush) ends it at once.
    let (code, took, output) = run_worker_that_never_waits(&["TERM", "TERM", "INT"]).await;
    println!("never waits, three signals: exit {code:?} after {took:?}");
    assert_eq!(code, Some(queue_scaler::drain::EXIT_COLD), "{output}");
}
