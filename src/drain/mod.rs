//! Worker-side graceful shutdown: on SIGTERM stop taking jobs, finish or hand back what is held, exit 0.
//!
//! Scale-down is only free if a worker can leave without losing or stalling work. Kubernetes gives a pod a fixed
//! budget to leave in, and this module spends it the way Sidekiq spends its TERM timeout and tokio-util's
//! `CancellationToken`/`TaskTracker` pair suggests: one signal stops intake, the jobs already taken get the grace
//! period to finish, and whatever is still running then goes back to the broker through a callback the worker gave
//! when it started the job.
//!
//! # Timeline against the pod lifecycle
//!
//! ```text
//! t = 0      pod marked Terminating (scale-down, rollout, eviction)
//!            preStop hook runs, if any            ┐ terminationGracePeriodSeconds (default 30 s) counts
//! t = p      kubelet sends SIGTERM                │ from here, preStop included
//!            Drain: next_job() returns None, intake stops at once; /status says "draining": true
//!            jobs in flight keep running, each either completes (ack/commit) or ...
//! t = p+25s  ... the grace (default 25 s) runs out: every job still running is handed back through its callback
//!            (RabbitMQ nack+requeue, SQS ChangeMessageVisibility 0, Kafka: no commit, Pub/Sub nack)
//!            wait() returns a Summary, main returns, the process exits 0
//! t = 30s    SIGKILL, if the process is still there                 ┘
//! ```
//!
//! The default grace leaves 5 s of the default 30 for hand-back calls and process exit; with a preStop hook or a
//! different `terminationGracePeriodSeconds`, set the grace to that period minus the hook's time minus a margin. A
//! second SIGTERM or SIGINT (an impatient operator, `docker stop` twice) skips the rest of the grace: hand back
//! now and exit. The worker never reports itself not-ready while busy: the agent's idle-first scale-down reads
//! `GET /status` (see [`Drain::serve`]) to remove idle pods first instead.
//!
//! # Use
//!
//! ```no_run
//! # async fn transcode(_: &[u8]) {}
//! # async fn worker(mut queue: tokio::sync::mpsc::Receiver<Vec<u8>>) -> std::io::Result<()> {
//! use queue_scaler::drain::Drain;
//! use std::time::Duration;
//!
//! let drain = Drain::builder().grace(Duration::from_secs(25)).max_in_flight(4).install()?;
//! drain.serve("0.0.0.0:9091").await?;
//! while let Some(permit) = drain.next_job(queue.recv()).await {
//!     let Some(body) = permit.message().clone() else { break };
//!     // What "give it back" means for this broker: a nack, a visibility reset, not committing.
//!     let (job, _) = permit.start(move || async move { eprintln!("handed back {} bytes", body.len()) });
//!     tokio::spawn(async move {
//!         tokio::select! {
//!             _ = job.handed_back() => {}
//!             _ = transcode(b"...") => {
//!                 if job.complete(async { /* ack */ }).await.is_some() {
//!                     println!("done");
//!                 }
//!             }
//!         }
//!     });
//! }
//! println!("{}", drain.wait().await);
//! # Ok(()) }
//! ```
//!
//! A [`Permit`] is a received message and a slot; [`Permit::start`] turns it into a [`Job`], which must be
//! completed ([`Job::complete`] runs the ack only if the drain has not handed the job back) or handed back
//! ([`Job::hand_back`], or dropping it). The broker never sees an ack and a nack for the same message.

mod exposition;
mod job;
mod signals;
mod state;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Semaphore;

pub use job::{Job, Permit};
pub use state::{Cause, Summary};

use state::{Phase, Shared};

/// The default grace: a little under the pod's default `terminationGracePeriodSeconds` of 30 s.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(25);

/// Settings for a [`Drain`]; [`Builder::install`] makes one.
#[derive(Debug, Clone)]
pub struct Builder {
    grace: Duration,
    max_in_flight: usize,
    signals: bool,
}

impl Builder {
    /// How long jobs in flight may run on after the drain begins before they are handed back ([`DEFAULT_GRACE`]).
    pub fn grace(mut self, grace: Duration) -> Builder {
        self.grace = grace;
        self
    }

    /// At most this many jobs at once: [`Drain::next_job`] waits for a free slot before it receives (default: no
    /// limit beyond what the broker's prefetch gives).
    pub fn max_in_flight(mut self, jobs: usize) -> Builder {
        self.max_in_flight = jobs.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Whether SIGTERM and SIGINT begin the drain (default: yes). Without, only [`Drain::stop`] does.
    pub fn signals(mut self, on: bool) -> Builder {
        self.signals = on;
        self
    }

    /// Installs the signal handlers and starts the task that runs the drain. Call it inside a tokio runtime.
    ///
    /// Once installed, SIGTERM and SIGINT no longer kill the process: the drain decides when it is over.
    pub fn install(self) -> io::Result<Drain> {
        let shared = Arc::new(Shared::new(self.grace, self.max_in_flight));
        if self.signals {
            signals::install(shared.clone())?;
        }
        tokio::spawn(state::supervise(shared.clone()));
        Ok(Drain { shared })
    }
}

/// The worker's handle on its own shutdown; cheap to clone.
#[derive(Clone)]
pub struct Drain {
    shared: Arc<Shared>,
}

impl Drain {
    /// Settings with their defaults.
    pub fn builder() -> Builder {
        Builder { grace: DEFAULT_GRACE, max_in_flight: Semaphore::MAX_PERMITS, signals: true }
    }

    /// Waits for a free slot, then for `recv`; `None` once the drain has begun (at once, even mid-receive).
    ///
    /// `recv` is dropped unfinished when the drain begins, so it must be cancel-safe: lapin's `Consumer::next`,
    /// rdkafka's `StreamConsumer::recv` and a channel's `recv` are. A receive that is not (an SQS `ReceiveMessage`
    /// that may already have taken messages) can be spawned and passed as `&mut handle`, and whatever it returns
    /// after the loop handed back.
    pub async fn next_job<F: Future>(&self, recv: F) -> Option<Permit<F::Output>> {
        let slots = self.shared.slots.clone();
        let slot = tokio::select! {
            biased;
            () = self.stopping() => return None,
            slot = slots.acquire_owned() => slot.expect("the slots are never closed"),
        };
        tokio::select! {
            biased;
            () = self.stopping() => None,
            message = recv => Some(Permit::new(message, job::Ticket::new(self.shared.clone(), slot))),
        }
    }

    /// Resolves once the drain has begun: for a `select!` in code that waits on something else than
    /// [`Drain::next_job`].
    pub async fn stopping(&self) {
        let mut phase = self.shared.phase.subscribe();
        // The sender lives in `shared`, which `self` holds: the channel cannot close while this waits.
        let _ = phase.wait_for(|p| !matches!(p, Phase::Running)).await;
    }

    /// Whether the drain has begun.
    pub fn is_stopping(&self) -> bool {
        self.shared.is_draining()
    }

    /// Jobs held now (received and not yet completed or handed back).
    pub fn in_flight(&self) -> u64 {
        self.shared.counters.in_flight()
    }

    /// Begins the drain, as SIGTERM does: for tests, and for workers told to stop some other way.
    pub fn stop(&self) {
        self.shared.stop(Cause::Requested);
    }

    /// Hands back everything still running now and ends the drain, as a second signal does.
    pub fn stop_now(&self) {
        self.shared.stop_now(Cause::Requested);
    }

    /// Waits for the drain to end and says how it went. Call it when the intake loop is over; it begins the drain
    /// if nothing else has (the loop may have ended because the broker closed the stream).
    pub async fn wait(&self) -> Summary {
        self.shared.stop(Cause::Requested);
        let mut phase = self.shared.phase.subscribe();
        let done = phase.wait_for(|p| matches!(p, Phase::Done(_))).await.expect("the sender lives in shared");
        match *done {
            Phase::Done(summary) => summary,
            _ => unreachable!("waited for Done"),
        }
    }

    /// Serves `/metrics` (Prometheus text), `/status` (`{"in_flight": N, "draining": bool}`, which the agent's
    /// idle-first scale-down reads) and `/healthz` on `addr`, until the runtime ends. Returns the bound address.
    pub async fn serve(&self, addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(crate::http::serve(listener, exposition::route(self.shared.clone())));
        Ok(bound)
    }
}
