//! What every example worker shares: settings from the environment, the drain, "pretend to transcode", output.
//!
//! The workers differ only in how they talk to their broker; keeping the rest here keeps each example about that.
//! Output is the contract the kill tests read: `done <body>` on stdout for every job acknowledged (printed only
//! after the broker took the ack or commit) and one drain summary line on exit (see `Drain::exit`).

#![allow(dead_code)] // Each example uses its own part of this module.

use std::collections::HashSet;
use std::error::Error;
use std::io::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use queue_scaler::drain::{Drain, JobHandle};

/// A boxed error: examples report and exit, they do not match on error kinds.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// Settings every worker reads.
pub struct Settings {
    /// `JOB_MS`: how long one job takes (default 100 ms).
    pub job_time: Duration,
    /// `DRAIN_GRACE_MS`: the drain's grace (default 25 s).
    pub grace: Duration,
    /// `DRAIN_FLUSH_MS`: the flush budget after the grace (default 3 s; with the grace, under the pod's 30 s).
    pub flush_budget: Duration,
    /// `WORKER_METRICS_ADDR`: where to serve `/metrics`, `/status`, `/healthz`, `/readyz`, `/quiet`, `/resume`
    /// (default: not served). `DRAIN_TOKEN` or `DRAIN_TOKEN_FILE` protect the two POSTs.
    pub metrics_addr: Option<String>,
    /// `CONCURRENCY`: jobs at once (default 4).
    pub concurrency: usize,
    /// `PANIC_ONCE_ON`: the body of a job whose first run panics, to show a crashed job is handed back and redone.
    pub panic_once_on: Option<String>,
}

impl Settings {
    pub fn from_env() -> Result<Settings, BoxError> {
        let concurrency = number("CONCURRENCY", 4)?;
        if concurrency == 0 {
            return Err("CONCURRENCY=0: at least one job at a time".into());
        }
        Ok(Settings {
            job_time: Duration::from_millis(number("JOB_MS", 100)?),
            grace: Duration::from_millis(number("DRAIN_GRACE_MS", 25_000)?),
            flush_budget: Duration::from_millis(number("DRAIN_FLUSH_MS", 3_000)?),
            metrics_addr: optional("WORKER_METRICS_ADDR"),
            concurrency: usize::try_from(concurrency)?,
            panic_once_on: optional("PANIC_ONCE_ON"),
        })
    }
}

/// A required environment variable.
pub fn var(name: &str) -> Result<String, BoxError> {
    optional(name).ok_or_else(|| format!("set {name}").into())
}

/// An optional environment variable; empty counts as unset.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A whole number from the environment, or `default` when unset.
pub fn number(name: &str, default: u64) -> Result<u64, BoxError> {
    match optional(name) {
        Some(text) => text.parse().map_err(|e| format!("{name}={text}: {e} (a whole number, like {default})").into()),
        None => Ok(default),
    }
}

/// Installs the drain (SIGTERM/SIGINT, watchdog, token) with at most `max_in_flight` jobs at once (usually
/// `CONCURRENCY`), and serves its endpoint if asked.
pub async fn drain(settings: &Settings, max_in_flight: usize) -> Result<Drain, BoxError> {
    let drain = Drain::builder()
        .grace(settings.grace)
        .flush_budget(settings.flush_budget)
        .max_in_flight(max_in_flight)
        .token_from_env()?
        .install()?;
    if let Some(addr) = &settings.metrics_addr {
        let bound = drain.serve(addr.as_str()).await?;
        eprintln!("worker metrics on http://{bound}/metrics");
    }
    Ok(drain)
}

/// "Transcodes" for `JOB_MS` unless the job is handed back first; true when the work is finished. Panics instead on
/// the first run of the job `PANIC_ONCE_ON` names.
pub async fn work(job: &JobHandle, settings: &Settings, body: &str) -> bool {
    static CRASHED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if settings.panic_once_on.as_deref() == Some(body) {
        let first = CRASHED.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_default().insert(body.into());
        if first {
            panic!("job {body} crashed (PANIC_ONCE_ON)");
        }
    }
    tokio::select! {
        () = job.handed_back() => false,
        () = tokio::time::sleep(settings.job_time) => true,
    }
}

/// `done <body>`, flushed: a test may read it while the worker is still running.
pub fn done(body: &str) {
    line(&format!("done {body}"));
}

/// One line on stdout, flushed at once.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not take the worker down mid-drain; the ack already happened.
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}
