//! A RabbitMQ worker that runs each job as a child process, as a transcoder runs ffmpeg, and kills it when the job
//! is handed back, so two pods never run the same job.
//!
//! Settings as `worker_rabbitmq` (`rabbitmq/mod.rs`). Each job runs `sleep` for `JOB_MS` (standing in for ffmpeg)
//! in a process group of its own: a signal meant for the worker (Ctrl-C in a terminal) does not reach it, and on
//! hand-back the whole group is killed, whatever the command started. Prints `child <body> <pid>` when a child
//! starts, for the tests.

mod common;
#[path = "rabbitmq/mod.rs"]
mod rabbitmq;

use std::process::Stdio;
use std::sync::Arc;

use queue_scaler::drain::JobHandle;
use tokio::process::Command;

use common::{BoxError, Settings};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    rabbitmq::run(|job, settings, body| Box::pin(run_child(job, settings, body))).await
}

/// Runs the job's child process to its end (true when it succeeded), or kills its process group when the job is
/// handed back (false).
async fn run_child(job: JobHandle, settings: Arc<Settings>, body: String) -> bool {
    let seconds = format!("{:.3}", settings.job_time.as_secs_f64());
    let spawned = Command::new("sleep").arg(&seconds).stdin(Stdio::null()).process_group(0).kill_on_drop(true).spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            eprintln!("start the job {body}: {e}");
            return false;
        }
    };
    let Some(pid) = child.id() else { return false };
    common::line(&format!("child {body} {pid}"));
    tokio::select! {
        status = child.wait() => status.is_ok_and(|s| s.success()),
        () = job.handed_back() => {
            let group = libc::pid_t::try_from(pid).map(|pid| -pid);
            // SAFETY: kill(2) with a negative pid signals the process group the child leads; no memory is touched.
            if group.is_err() || unsafe { libc::kill(group.unwrap_or_default(), libc::SIGKILL) } != 0 {
                eprintln!("kill the job {body}'s process group {pid}: {}", std::io::Error::last_os_error());
            }
            // Reaped, so no zombie outlives the job.
            let _ = child.wait().await;
            false
        }
    }
}
