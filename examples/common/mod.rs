//! What every example worker shares: settings from the environment, the drain, "pretend to transcode", output.
//!
//! The workers differ only in how they talk to their broker; keeping the rest here keeps each example about that.
//! Output is the contract the kill tests read: `done <body>` on stdout for every job acknowledged (printed only
//! after the broker took the ack or commit) and one drain summary line on exit.

use std::error::Error;
use std::io::Write;
use std::time::Duration;

use queue_scaler::drain::{Drain, Job, Summary};

/// A boxed error: examples report and exit, they do not match on error kinds.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// Settings every worker reads.
pub struct Settings {
    /// `JOB_MS`: how long one job takes (default 100 ms).
    pub job_time: Duration,
    /// `DRAIN_GRACE_MS`: the drain's grace (default 25 s, under the pod's default 30 s).
    pub grace: Duration,
    /// `WORKER_METRICS_ADDR`: where to serve `/metrics`, `/status` and `/healthz` (default: not served).
    pub metrics_addr: Option<String>,
    /// `CONCURRENCY`: jobs at once (default 4).
    pub concurrency: usize,
}

impl Settings {
    pub fn from_env() -> Result<Settings, BoxError> {
        Ok(Settings {
            job_time: Duration::from_millis(number("JOB_MS", 100)?),
            grace: Duration::from_millis(number("DRAIN_GRACE_MS", 25_000)?),
            metrics_addr: std::env::var("WORKER_METRICS_ADDR").ok().filter(|a| !a.is_empty()),
            concurrency: usize::try_from(number("CONCURRENCY", 4)?)?.max(1),
        })
    }
}

/// A required environment variable.
pub fn var(name: &str) -> Result<String, BoxError> {
    std::env::var(name).map_err(|_| format!("set {name}").into())
}

fn number(name: &str, default: u64) -> Result<u64, BoxError> {
    match std::env::var(name) {
        Ok(text) => text.parse().map_err(|e| format!("{name}={text}: {e}").into()),
        Err(_) => Ok(default),
    }
}

/// Installs the drain (SIGTERM/SIGINT) and serves its endpoint if asked.
pub async fn drain(settings: &Settings) -> Result<Drain, BoxError> {
    let drain = Drain::builder().grace(settings.grace).max_in_flight(settings.concurrency).install()?;
    if let Some(addr) = &settings.metrics_addr {
        let bound = drain.serve(addr.as_str()).await?;
        eprintln!("worker metrics on http://{bound}/metrics");
    }
    Ok(drain)
}

/// "Transcodes" for `time` unless the drain hands the job back first; true when the work is finished.
pub async fn work(job: &Job, time: Duration) -> bool {
    tokio::select! {
        () = job.handed_back() => false,
        () = tokio::time::sleep(time) => true,
    }
}

/// `done <body>`, flushed: a test may read it while the worker is still running.
pub fn done(body: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not take the worker down mid-drain; the ack already happened.
    let _ = writeln!(out, "done {body}").and_then(|()| out.flush());
}

/// The drain summary, one line on stdout.
pub fn summary(summary: &Summary) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{summary}").and_then(|()| out.flush());
}
