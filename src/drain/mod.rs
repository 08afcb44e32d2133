//! Worker-side graceful shutdown: on SIGTERM stop taking jobs, finish or hand back what is held, and exit within a
//! bound, saying how it went.
//!
//! Scale-down is only free if a worker can leave without losing or stalling work. Kubernetes gives a pod a fixed
//! budget to leave in, and this module spends it the way Sidekiq spends its TERM timeout and tokio-util's
//! `CancellationToken`/`TaskTracker` pair suggests: one signal stops intake (in the loop and, through the worker's
//! [`Drain::on_drain`] hook, at the broker), the jobs already taken get the grace period to finish, whatever is
//! still running then goes back to the broker through a callback the worker gave when it started the job, and a
//! watchdog thread makes sure the process is gone before the kubelet's SIGKILL.
//!
//! # Timeline against the pod lifecycle
//!
//! ```text
//! t = 0         pod marked Terminating (scale-down, rollout, eviction)
//!               preStop hook runs, if any              ┐ terminationGracePeriodSeconds (default 30 s) counts
//! t = p         kubelet sends SIGTERM                  │ from here, preStop included
//!               intake stops: next_job() returns None, the on_drain hooks run (RabbitMQ basic.cancel, Kafka
//!               pause, Pub/Sub stream shut down); /status says "draining": true
//!               jobs in flight keep running; each completes (ack/commit) or ...
//! t = p+25s     ... the grace (default 25 s) runs out: every job still running is handed back through its callback
//!               (RabbitMQ nack+requeue, SQS ChangeMessageVisibility 0, Kafka: no commit, Pub/Sub nack)
//!               wait() returns a Summary; the worker closes its connections; Drain::exit prints the summary, exits
//! t = p+25+3s   the flush budget (default 3 s) runs out: if the process is still there (an ack or a nack to a
//!               broker that stopped answering, a teardown that hangs), the watchdog prints the summary and exits 5
//! t = 30s       SIGKILL, if the process is still there                 ┘
//! ```
//!
//! The defaults (25 s grace + 3 s budget) leave 2 s of the default 30 for the process to go. With a preStop hook
//! or another `terminationGracePeriodSeconds`, set grace + budget to that period minus the hook's time minus a
//! margin. A second SIGTERM or SIGINT during the grace (an impatient operator, `docker stop` twice) cuts it short:
//! hand back now, then the flush budget. A signal during the flush — a third one, or a second after the grace —
//! ends the process at once. All of this runs on threads of its own, so it holds even when jobs block the runtime
//! or `main` never reaches [`Drain::wait`].
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | drained: every job finished or was handed back |
//! | 1 | the worker's own error (`main` returned `Err`: bad settings, no broker at start) |
//! | [`EXIT_STREAM_ENDED`] (3) | the broker ended the stream ([`Cause::StreamEnded`]); nobody asked the worker to stop |
//! | [`EXIT_HAND_BACK_FAILED`] (4) | a hand-back failed or never ran: the broker redelivers that job after its own timeout |
//! | [`EXIT_FLUSH_TIMEOUT`] (5) | the flush budget ran out; the watchdog ended the process |
//! | [`EXIT_COLD`] (6) | a signal during the flush ended the process at once |
//!
//! [`Summary::exit_code`] gives 0, 3 or 4; [`Drain::exit`] prints the summary and exits with it.
//!
//! # Quiet
//!
//! `POST /quiet` on [`Drain::serve`]'s endpoint stops intake exactly as a drain does (the `on_drain` hooks too), but
//! the process stays up and finishes its jobs; `POST /resume` opens intake again (the [`Drain::on_resume`] hooks).
//! [`Drain::next_job`] returns `None` in both cases, so the receive loop runs inside an outer loop that asks
//! [`Drain::resumed`] whether to subscribe again. A quiet worker that gets SIGTERM with nothing in flight exits at
//! once. With a token ([`Builder::token`], `DRAIN_TOKEN` / `DRAIN_TOKEN_FILE` through [`Builder::token_from_env`])
//! the two POSTs need `Authorization: Bearer <token>` (else 401); the GETs stay open.
//!
//! # Long jobs and blocking work
//!
//! [`Job::keep_alive`] extends a job's lease while it runs (SQS `ChangeMessageVisibility`). Google's Pub/Sub client
//! extends its leases by itself. RabbitMQ has no per-delivery lease: its `consumer_timeout` (30 min by default)
//! closes the channel when a delivery stays unacked longer, so set it above the longest job (the queue argument
//! `x-consumer-timeout` or a policy); if it fires, the stream ends and the worker exits with
//! [`EXIT_STREAM_ENDED`]. Blocking code watches a [`JobHandle`] ([`Job::handle`]): `is_handed_back()` is one atomic
//! load, `wait_handed_back(timeout)` blocks a thread, so ffmpeg in `spawn_blocking` or a child process is stopped
//! when its job goes back (`examples/worker_process.rs` kills the child's process group).
//!
//! # Use
//!
//! ```no_run
//! # async fn transcode(_: &[u8]) {}
//! # async fn worker(mut queue: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Result<(), Box<dyn std::error::Error>> {
//! use queue_scaler::drain::Drain;
//! use std::time::Duration;
//!
//! let drain = Drain::builder().grace(Duration::from_secs(25)).max_in_flight(4).token_from_env()?.install()?;
//! drain.serve("0.0.0.0:9091").await?;
//! drain.on_drain(|| async { /* stop the broker pushing: basic.cancel, pause partitions */ });
//! loop {
//!     drain.ready(); // subscribed: /readyz answers 200
//!     while let Some(permit) = drain.next_job(queue.recv()).await {
//!         let Some(body) = permit.message().clone() else {
//!             drain.stream_ended();
//!             break;
//!         };
//!         // What "give it back" means for this broker: a nack, a visibility reset, not committing.
//!         let (job, _) = permit.start(move || async move { eprintln!("handed back {} bytes", body.len()) });
//!         tokio::spawn(async move {
//!             tokio::select! {
//!                 _ = job.handed_back() => {}
//!                 _ = transcode(b"...") => {
//!                     if job.complete(|| async { /* ack */ }).await.is_some() {
//!                         println!("done");
//!                     }
//!                 }
//!             }
//!         });
//!     }
//!     if !drain.resumed().await {
//!         break; // the drain began; otherwise the worker was quiet and is resumed: subscribe again
//!     }
//! }
//! let summary = drain.wait().await;
//! // ... close the broker connection: the watchdog bounds this too ...
//! drain.exit(&summary); // "drain: 3 finished, 1 handed back, 0 failed in 25000 ms (SIGTERM)", exit 0
//! # }
//! ```
//!
//! A [`Permit`] is a received message and a slot; [`Permit::start`] turns it into a [`Job`], which must be
//! completed ([`Job::complete`] runs the ack only if the job has not been handed back) or handed back
//! ([`Job::hand_back`], or dropping it). The broker never sees an ack and a nack for the same message. A job
//! dropped while the runtime shuts down cannot send its nack: it counts as failed, never as done.
//! `docs/drain.md` has the broker-by-broker details: dead-letter budgets, preStop hooks, measured exit times.

mod error;
mod exit;
mod exposition;
mod handle;
mod intake;
mod job;
mod signals;
mod state;
#[cfg(feature = "stream")]
mod stream;
mod summary;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

pub use error::Error;
pub use exit::{EXIT_COLD, EXIT_FLUSH_TIMEOUT, EXIT_HAND_BACK_FAILED, EXIT_STREAM_ENDED};
pub use handle::JobHandle;
pub use job::{HandBackOutcome, Job, Permit};
#[cfg(feature = "stream")]
pub use stream::Jobs;
pub use summary::{Cause, Summary};

use state::{Phase, Shared};

/// The default grace: with [`DEFAULT_FLUSH_BUDGET`], a little under the pod's default
/// `terminationGracePeriodSeconds` of 30 s.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(25);

/// The default flush budget after the grace, for acks under way, hand-backs and the worker's teardown.
pub const DEFAULT_FLUSH_BUDGET: Duration = Duration::from_secs(3);

/// Settings for a [`Drain`]; [`Builder::install`] makes one.
#[derive(Clone)]
pub struct Builder {
    grace: Duration,
    flush_budget: Duration,
    max_in_flight: usize,
    signals: bool,
    token: Option<String>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("grace", &self.grace)
            .field("flush_budget", &self.flush_budget)
            .field("max_in_flight", &self.max_in_flight)
            .field("signals", &self.signals)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Builder {
    /// How long jobs in flight may run on after the drain begins before they are handed back ([`DEFAULT_GRACE`]).
    pub fn grace(mut self, grace: Duration) -> Builder {
        self.grace = grace;
        self
    }

    /// How long acks under way, hand-backs and the worker's own teardown may take after the grace (or after a
    /// second signal) before the watchdog ends the process with [`EXIT_FLUSH_TIMEOUT`] ([`DEFAULT_FLUSH_BUDGET`]).
    pub fn flush_budget(mut self, budget: Duration) -> Builder {
        self.flush_budget = budget;
        self
    }

    /// At most this many jobs at once: [`Drain::next_job`] waits for a free slot before it receives (default: no
    /// limit beyond what the broker's prefetch gives).
    pub fn max_in_flight(mut self, jobs: usize) -> Builder {
        self.max_in_flight = jobs.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Whether the drain owns the process (default: yes): SIGTERM and SIGINT begin it, and the watchdog ends the
    /// process when the flush budget runs out. Without, only [`Drain::stop`] begins it and nothing ends the process
    /// but [`Drain::exit`]: for tests, and for a drain embedded in a larger program.
    pub fn signals(mut self, on: bool) -> Builder {
        self.signals = on;
        self
    }

    /// The bearer token `POST /quiet` and `POST /resume` require (default: none, anyone on the network may).
    pub fn token(mut self, token: impl Into<String>) -> Builder {
        self.token = Some(token.into());
        self
    }

    /// The token from `DRAIN_TOKEN`, else from the file `DRAIN_TOKEN_FILE` names (a mounted Secret); neither set
    /// leaves the POSTs open. An empty or unreadable setting is an error, never an open endpoint.
    pub fn token_from_env(mut self) -> Result<Builder, Error> {
        let token = std::env::var("DRAIN_TOKEN").ok();
        let file = std::env::var_os("DRAIN_TOKEN_FILE").map(PathBuf::from);
        if let Some(token) = error::token_from(token, file)? {
            self.token = Some(token);
        }
        Ok(self)
    }

    /// Installs the signal handlers and the watchdog, and starts the tasks that run the drain. Call it inside a
    /// tokio runtime ([`Error::NoRuntime`] otherwise).
    ///
    /// Once installed, SIGTERM and SIGINT no longer kill the process: the drain decides when it is over.
    pub fn install(self) -> Result<Drain, Error> {
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let shared =
            Arc::new(Shared::new(self.grace, self.flush_budget, self.max_in_flight, self.token, runtime.clone()));
        if self.signals {
            exit::watch(shared.clone()).map_err(Error::Setup)?;
            signals::install(shared.clone()).map_err(Error::Setup)?;
        }
        runtime.spawn(state::supervise(shared.clone()));
        runtime.spawn(intake::follow(shared.clone()));
        Ok(Drain { shared })
    }
}

/// The worker's handle on its own shutdown; cheap to clone.
#[derive(Clone)]
pub struct Drain {
    shared: Arc<Shared>,
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain").field("state", &self.shared).finish()
    }
}

impl Drain {
    /// Settings with their defaults.
    pub fn builder() -> Builder {
        Builder {
            grace: DEFAULT_GRACE,
            flush_budget: DEFAULT_FLUSH_BUDGET,
            max_in_flight: Semaphore::MAX_PERMITS,
            signals: true,
            token: None,
        }
    }

    /// Waits for a free slot, then for `recv`; `None` once intake stops — the drain began, or the worker was
    /// quieted ([`Drain::resumed`] tells which) — at once, even mid-receive.
    ///
    /// `recv` is dropped unfinished when intake stops, so it must be cancel-safe: lapin's `Consumer::next`,
    /// rdkafka's `StreamConsumer::recv` and a channel's `recv` are. A receive that is not (an SQS `ReceiveMessage`
    /// that may already have taken messages) can be spawned, and whatever it returns handed back.
    pub async fn next_job<F: Future>(&self, recv: F) -> Option<Permit<F::Output>> {
        let slots = self.shared.slots.clone();
        let slot = tokio::select! {
            biased;
            () = self.intake_stopped() => return None,
            slot = slots.acquire_owned() => slot.expect("the slots are never closed"),
        };
        tokio::select! {
            biased;
            () = self.intake_stopped() => None,
            message = recv => Some(Permit::new(message, job::Ticket::new(self.shared.clone(), slot))),
        }
    }

    /// Resolves once intake is stopped (a drain or quiet).
    async fn intake_stopped(&self) {
        let mut phase = self.shared.phase.subscribe();
        // The sender lives in `shared`, which `self` holds: the channel cannot close while this waits.
        let _ = phase.wait_for(|p| !intake::open(p)).await;
    }

    /// After [`Drain::next_job`] returned `None`: waits while the worker is quiet; `true` once it is resumed
    /// (subscribe again and go on), `false` once the drain has begun (finish up).
    pub async fn resumed(&self) -> bool {
        let mut phase = self.shared.phase.subscribe();
        let _ = phase.wait_for(|p| !matches!(p, Phase::Running { quiet: true })).await;
        !self.is_stopping()
    }

    /// Resolves once the drain has begun: for a `select!` in code that waits on something else than
    /// [`Drain::next_job`].
    pub async fn stopping(&self) {
        let mut phase = self.shared.phase.subscribe();
        let _ = phase.wait_for(|p| !matches!(p, Phase::Running { .. })).await;
    }

    /// Whether the drain has begun.
    pub fn is_stopping(&self) -> bool {
        self.shared.is_draining()
    }

    /// Whether the worker is quiet: intake stopped by `POST /quiet` (or [`Drain::quiet`]), not draining.
    pub fn is_quiet(&self) -> bool {
        self.shared.is_quiet()
    }

    /// Stops intake, as `POST /quiet` does; false once the drain has begun.
    pub fn quiet(&self) -> bool {
        self.shared.set_quiet(true).is_ok()
    }

    /// Opens intake again, as `POST /resume` does; false once the drain has begun.
    pub fn resume(&self) -> bool {
        self.shared.set_quiet(false).is_ok()
    }

    /// Registers what stopping intake means at the broker (RabbitMQ `basic.cancel`, Kafka `pause`, Pub/Sub
    /// stream shutdown, SQS: hand back the receive under way). It runs in a task of the drain's each time intake
    /// stops — when the drain begins, and on `POST /quiet` — but not again on a drain that follows a quiet.
    pub fn on_drain<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.shared.hooks.on_stop(hook);
    }

    /// Registers what `POST /resume` means at the broker (Kafka `resume`); runs after the stop hooks it follows.
    pub fn on_resume<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.shared.hooks.on_resume(hook);
    }

    /// Says the consumer is subscribed: `/readyz` answers 200 from now on, so a rollout waits for it.
    pub fn ready(&self) {
        self.shared.ready.store(true, Ordering::SeqCst);
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

    /// Begins the drain because the broker ended the stream (a closed connection, RabbitMQ's
    /// `consumer_timeout`): the summary says so and the exit code is [`EXIT_STREAM_ENDED`].
    pub fn stream_ended(&self) {
        self.shared.stop(Cause::StreamEnded);
    }

    /// Waits for the drain to end and says how it went. Call it when the intake loop is over; it begins the drain
    /// if nothing else has (with [`Cause::Requested`]: call [`Drain::stream_ended`] first if that is why).
    pub async fn wait(&self) -> Summary {
        self.shared.stop(Cause::Requested);
        let mut phase = self.shared.phase.subscribe();
        let done = phase.wait_for(|p| matches!(p, Phase::Done(_))).await.expect("the sender lives in shared");
        match *done {
            Phase::Done(summary) => summary,
            _ => unreachable!("waited for Done"),
        }
    }

    /// Prints `summary` as one line on stdout and ends the process with [`Summary::exit_code`]. Call it last,
    /// after closing the broker connections; if the watchdog already printed its line, this prints nothing.
    pub fn exit(&self, summary: &Summary) -> ! {
        if self.shared.alarm.claim_report() {
            exit::print_line(summary.to_string());
        }
        std::process::exit(summary.exit_code())
    }

    /// Serves, on `addr`, until the runtime ends: `/metrics` (Prometheus text), `/status`
    /// (`{"in_flight": N, "draining": bool, "quiet": bool}`, which the agent's scale-down reads), `/healthz`,
    /// `/readyz` (200 after [`Drain::ready`]), `POST /quiet` and `POST /resume`. Returns the bound address.
    pub async fn serve(&self, addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(crate::http::serve_requests(listener, exposition::handler(self.shared.clone())));
        Ok(bound)
    }
}
