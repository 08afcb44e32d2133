//! The example workers as processes: start them against a broker, read their `done` lines, SIGTERM them at random
//! moments, and account for every job.
//!
//! The binaries are the built examples (`cargo build --examples`, which `scripts/test.sh` runs before the tests):
//! the kill tests are about real processes receiving real signals, so they run exactly what a user would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::agent::free_port;
use super::eventually;

/// The built example `name`; fails the test with what to do if it is missing.
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let mut candidates = vec![target.join("debug/examples").join(name)];
    // Without a separate build directory, examples sit next to the test binary's `deps/`.
    if let Some(profile) = std::env::current_exe().ok().and_then(|exe| exe.parent()?.parent().map(PathBuf::from)) {
        candidates.push(profile.join("examples").join(name));
    }
    candidates.iter().find(|path| path.is_file()).cloned().unwrap_or_else(|| {
        panic!("example {name} is not built (looked at {candidates:?}): run `cargo build --examples` (scripts/test.sh does)")
    })
}

/// Every `done` line of every worker of a test, in arrival order: (worker number, body, when).
pub type DoneLog = Arc<Mutex<Vec<(usize, String, Instant)>>>;

/// One worker process.
pub struct Worker {
    pub number: usize,
    child: Child,
    status_addr: SocketAddr,
    lines: Lines,
    reader: JoinHandle<()>,
}

/// A worker's stdout lines other than `done` ones (its `child …` or `assigned …` lines, its summary), each with
/// when it was read.
pub type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// How a worker ended after SIGTERM.
#[derive(Debug)]
pub struct Exit {
    pub number: usize,
    pub status: ExitStatus,
    /// From SIGTERM to process exit.
    pub after_sigterm: Duration,
    /// When the process was seen gone.
    pub at: Instant,
    /// Its drain summary line.
    pub summary: Option<String>,
}

impl Exit {
    /// The exit code (`None` if a signal ended it).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl Worker {
    /// Starts example `name` with `env`; `done` lines go to `log`. Its endpoint is `WORKER_METRICS_ADDR` from `env`
    /// (a pod's IP and port, say), else a free port on 127.0.0.1.
    pub fn start(name: &str, number: usize, env: &[(String, String)], log: &DoneLog) -> Worker {
        let status_addr: SocketAddr = env
            .iter()
            .find(|(k, _)| k == "WORKER_METRICS_ADDR")
            .map_or_else(|| format!("127.0.0.1:{}", free_port()), |(_, v)| v.clone())
            .parse()
            .expect("address");
        let mut child = Command::new(binary(name))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("WORKER_METRICS_ADDR", status_addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the worker");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Lines::default();
        let (log, other) = (log.clone(), lines.clone());
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match line.strip_prefix("done ") {
                    Some(body) => log.lock().expect("log").push((number, body.to_owned(), Instant::now())),
                    None => other.lock().expect("lines").push((Instant::now(), line)),
                }
            }
        });
        Worker { number, child, status_addr, lines, reader }
    }

    /// Its stdout lines other than `done` ones, so far.
    pub fn lines(&self) -> Lines {
        self.lines.clone()
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// The worker's endpoint, for requests of a test's own.
    pub fn endpoint(&self) -> SocketAddr {
        self.status_addr
    }

    /// Sends `signal` (`TERM`, `INT`) without waiting for anything.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let kill = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(kill.success(), "SIG{signal} delivered");
    }

    /// `/status` as (in_flight, draining), or `None` while it does not answer.
    pub async fn status(&self) -> Option<(u64, bool)> {
        let mut stream = TcpStream::connect(self.status_addr).await.ok()?;
        stream.write_all(b"GET /status HTTP/1.1\r\nHost: worker\r\n\r\n").await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let body: serde_json::Value = serde_json::from_str(response.split_once("\r\n\r\n")?.1).ok()?;
        Some((body["in_flight"].as_u64()?, body["draining"].as_bool()?))
    }

    /// Waits until the worker holds at least `jobs` jobs.
    pub async fn holding(&self, jobs: u64, deadline: Duration) {
        eventually(deadline, "the worker to hold a job", || async {
            self.status().await.filter(|(in_flight, _)| *in_flight >= jobs)
        })
        .await;
    }

    /// Sends SIGTERM now and returns a task that resolves when the process has exited.
    pub fn terminate(self) -> JoinHandle<Exit> {
        let sent = Instant::now();
        self.signal("TERM");
        self.exit(sent)
    }

    /// A task that resolves when the process has exited; `sent` is when it was told to stop.
    pub fn exit(mut self, sent: Instant) -> JoinHandle<Exit> {
        tokio::spawn(async move {
            let status = self.child.wait().await.expect("exit status");
            let at = Instant::now();
            // The last lines are read before the summary is looked at.
            let _ = (&mut self.reader).await;
            let lines = self.lines.lock().expect("lines");
            let summary = lines.iter().rev().map(|(_, l)| l).find(|l| l.starts_with("drain:")).cloned();
            drop(lines);
            Exit { number: self.number, status, after_sigterm: at - sent, at, summary }
        })
    }
}

/// Min, median and max, for the report.
pub fn spread(times: &[Duration]) -> String {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.as_slice() {
        [] => "none".to_owned(),
        s => format!("min {:?} / median {:?} / max {:?} over {}", s[0], s[s.len() / 2], s[s.len() - 1], s.len()),
    }
}

/// `broker`'s settings plus the two every example worker reads for its timing: `JOB_MS` and `DRAIN_GRACE_MS`.
pub fn timed(broker: &[(String, String)], job_ms: u64, grace_ms: u64) -> Vec<(String, String)> {
    let mut env = broker.to_vec();
    env.extend([("JOB_MS".to_owned(), job_ms.to_string()), ("DRAIN_GRACE_MS".to_owned(), grace_ms.to_string())]);
    env
}

/// Settings of a kill test.
pub struct KillTest<'a> {
    pub example: &'a str,
    /// The broker's settings (`JOB_MS`, `DRAIN_GRACE_MS` and `CONCURRENCY` are set by [`kill_test`]).
    pub env: Vec<(String, String)>,
    pub jobs: usize,
    pub workers: usize,
    pub kills: usize,
    /// Pause between kills, drawn uniformly from this range (ms).
    pub pause_ms: (u64, u64),
    pub job_ms: u64,
    pub deadline: Duration,
}

impl<'a> KillTest<'a> {
    /// The case: 500 jobs of 40 ms through three workers, ten SIGTERMs 200–500 ms apart, 45 s at most.
    pub fn five_hundred_jobs(example: &'a str, env: Vec<(String, String)>) -> KillTest<'a> {
        KillTest {
            example,
            env,
            jobs: 500,
            workers: 3,
            kills: 10,
            pause_ms: (200, 500),
            job_ms: 40,
            deadline: Duration::from_secs(45),
        }
    }
}

/// A tiny xorshift: the kill moments need to vary between runs, not to be good random numbers.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Runs `workers` workers on `jobs` published jobs (`job-0` … ), SIGTERMs one holding jobs at random moments
/// `kills` times, starting a replacement each time, until every job is done; then stops the rest. Prints
/// duplicates and drain times; returns the jobs never done.
pub async fn kill_test(test: KillTest<'_>) -> Vec<String> {
    let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_nanos() as u64 | 1;
    println!("{}: seed {seed}", test.example);
    let mut rng = Rng(seed);
    let mut env = timed(&test.env, test.job_ms, 5_000);
    env.push(("CONCURRENCY".to_owned(), "2".to_owned()));
    let log = DoneLog::default();
    let mut next = 0;
    let mut live: Vec<Worker> = (0..test.workers)
        .map(|_| {
            next += 1;
            Worker::start(test.example, next, &env, &log)
        })
        .collect();
    let done_count = |log: &DoneLog| {
        let log = log.lock().expect("log");
        log.iter().map(|(_, body, _)| body.as_str()).collect::<std::collections::BTreeSet<_>>().len()
    };
    let start = Instant::now();
    let mut exits = Vec::new();
    for _ in 0..test.kills {
        let (low, high) = test.pause_ms;
        tokio::time::sleep(Duration::from_millis(low + rng.below(high - low))).await;
        if done_count(&log) >= test.jobs {
            break;
        }
        let victim = live.swap_remove(usize::try_from(rng.below(live.len() as u64)).expect("small"));
        // Killing a worker that holds nothing proves little: wait (briefly) until it holds a job.
        let held = tokio::time::timeout(Duration::from_secs(5), async {
            while !matches!(victim.status().await, Some((1.., _))) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .is_ok();
        if !held {
            println!("worker {} held nothing for 5 s; SIGTERM anyway", victim.number);
        }
        exits.push(victim.terminate());
        next += 1;
        live.push(Worker::start(test.example, next, &env, &log));
    }
    let remaining = test.deadline.saturating_sub(start.elapsed());
    let all_done = tokio::time::timeout(remaining, async {
        while done_count(&log) < test.jobs {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let mut drains = Vec::new();
    let mut handed_back = 0;
    for exit in exits {
        let exit =
            tokio::time::timeout(Duration::from_secs(15), exit).await.expect("a killed worker exits").expect("task");
        assert!(exit.status.success(), "worker {} exited with {} after SIGTERM", exit.number, exit.status);
        println!(
            "worker {} drained in {:?}: {}",
            exit.number,
            exit.after_sigterm,
            exit.summary.as_deref().unwrap_or("-")
        );
        handed_back += exit.summary.as_deref().and_then(handed_back_count).unwrap_or(0);
        drains.push(exit.after_sigterm);
    }
    for worker in live {
        let exit =
            tokio::time::timeout(Duration::from_secs(15), worker.terminate()).await.expect("exits").expect("task");
        assert!(exit.status.success(), "worker {} exited with {}", exit.number, exit.status);
    }
    let log = log.lock().expect("log");
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, body, _) in log.iter() {
        *seen.entry(body.as_str()).or_default() += 1;
    }
    let lost: Vec<String> =
        (0..test.jobs).map(|i| format!("job-{i}")).filter(|b| !seen.contains_key(b.as_str())).collect();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!(
        "{}: {} jobs, {} lost, {duplicates} duplicates, {handed_back} handed back, drains {}, all done in {:?}{}",
        test.example,
        test.jobs,
        lost.len(),
        spread(&drains),
        start.elapsed(),
        if all_done.is_err() { " (deadline passed)" } else { "" }
    );
    lost
}

/// The `N handed back` of a summary line.
fn handed_back_count(summary: &str) -> Option<u64> {
    summary.split(", ").nth(1)?.split(' ').next()?.parse().ok()
}

/// Waits for `body` to be done by anyone; returns (worker number, when).
pub async fn done_by(log: &DoneLog, body: &str, deadline: Duration) -> (usize, Instant) {
    eventually(deadline, &format!("{body} to be done"), || async {
        log.lock().expect("log").iter().find(|(_, b, _)| b == body).map(|(n, _, at)| (*n, *at))
    })
    .await
}

/// SIGTERM to a worker that has done `job-0` and holds nothing: how it exited (asserted within 2 s: an SQS worker
/// first waits for its long poll under way, 1 s in the tests).
pub async fn idle_exit(worker: Worker, log: &DoneLog) -> Exit {
    done_by(log, "job-0", Duration::from_secs(30)).await;
    eventually(Duration::from_secs(10), "the worker to be idle", || async {
        worker.status().await.filter(|(in_flight, _)| *in_flight == 0)
    })
    .await;
    let exit = worker.terminate().await.expect("task");
    assert!(exit.status.success(), "exit {}", exit.status);
    println!("idle exit after SIGTERM: {:?} ({})", exit.after_sigterm, exit.summary.as_deref().unwrap_or("-"));
    assert!(exit.after_sigterm < Duration::from_secs(2), "idle exit took {:?}", exit.after_sigterm);
    exit
}

/// SIGTERM to a worker holding one long job: it finishes and acks the job, then exits; returns the time from the
/// `done` line to the exit (asserted under 1 s).
pub async fn long_job_exit(worker: Worker, log: &DoneLog) -> Duration {
    worker.holding(1, Duration::from_secs(30)).await;
    let exit = worker.terminate().await.expect("task");
    assert!(exit.status.success(), "exit {}", exit.status);
    let (by, done_at) = done_by(log, "job-0", Duration::ZERO).await;
    assert_eq!(by, exit.number, "the draining worker finished its own job");
    let delay = exit.at.saturating_duration_since(done_at);
    println!(
        "long job: exit {:?} after SIGTERM, {delay:?} after its done line ({})",
        exit.after_sigterm,
        exit.summary.as_deref().unwrap_or("-")
    );
    assert!(exit.summary.as_deref().is_some_and(|s| s.starts_with("drain: 1 finished, 0 handed back")), "{exit:?}");
    assert!(delay < Duration::from_secs(1), "exit {delay:?} after the job was done");
    delay
}

/// SIGTERM to `first`, holding `job-0` longer than its grace: it hands the job back and exits, then `second`
/// (started by the caller once `first` is gone) does it. Returns the time from SIGTERM to the `done` line.
pub async fn over_grace_hand_back(first: Worker, log: &DoneLog, second: impl FnOnce() -> Worker) -> Duration {
    first.holding(1, Duration::from_secs(30)).await;
    let sent = Instant::now();
    let exit = first.terminate().await.expect("task");
    assert!(exit.status.success(), "exit {}", exit.status);
    assert!(exit.summary.as_deref().is_some_and(|s| s.starts_with("drain: 0 finished, 1 handed back")), "{exit:?}");
    let second = second();
    let (by, done_at) = done_by(log, "job-0", Duration::from_secs(30)).await;
    assert_eq!(by, second.number, "the job was done by the next worker");
    let took = done_at - sent;
    println!(
        "over-grace job: first exit {:?} after SIGTERM, done elsewhere {took:?} after SIGTERM",
        exit.after_sigterm
    );
    let _ = second.terminate().await;
    took
}

/// Serves the drain library's `GET /status` for one stand-in worker pod at `ip:port`, holding `in_flight` jobs and
/// answering after `delay`: for agent tests about many pods, where real worker processes would only cost time.
pub async fn serve_status(ip: &str, port: u16, in_flight: u64, delay: Duration) -> JoinHandle<()> {
    use axum::{Json, Router, routing::get};
    let addr: SocketAddr = format!("{ip}:{port}").parse().expect("address");
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind a loopback address");
    let app = Router::new().route(
        "/status",
        get(move || async move {
            tokio::time::sleep(delay).await;
            Json(serde_json::json!({"in_flight": in_flight, "draining": false, "quiet": false}))
        }),
    );
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    })
}
