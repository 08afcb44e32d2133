//! The drain's state machine: running → draining (grace) → handing back → done, and the counters behind it.
//!
//! One supervisor task owns the transitions that take time (the grace, the hand-back sweep), so the deadline holds
//! even while the worker's own code is stuck in a job; everything else only flips the phase and wakes it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

use super::job::JobCell;

/// What began the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A signal, by name (`SIGTERM`, `SIGINT`).
    Signal(&'static str),
    /// [`Drain::stop`](super::Drain::stop), [`Drain::stop_now`](super::Drain::stop_now) or
    /// [`Drain::wait`](super::Drain::wait).
    Requested,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Signal(name) => f.write_str(name),
            Cause::Requested => f.write_str("requested"),
        }
    }
}

/// How a drain went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// What began it.
    pub cause: Cause,
    /// Jobs completed after it began.
    pub finished: u64,
    /// Jobs handed back (at the deadline, on a second signal, or by the worker).
    pub handed_back: u64,
    /// From its beginning until the last job was completed or handed back.
    pub duration: Duration,
    /// Whether a second signal (or [`Drain::stop_now`](super::Drain::stop_now)) cut the grace short.
    pub forced: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drain: {} finished, {} handed back in {} ms ({}{})",
            self.finished,
            self.handed_back,
            self.duration.as_millis(),
            self.cause,
            if self.forced { ", cut short" } else { "" }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    Draining { since: Instant, cause: Cause, now: bool },
    Done(Summary),
}

/// Plain atomics: `/metrics` reads them without a lock, and nothing needs them consistent with each other.
#[derive(Default)]
pub(super) struct Counters {
    in_flight: AtomicU64,
    finished: AtomicU64,
    finished_draining: AtomicU64,
    handed_back: AtomicU64,
}

impl Counters {
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Relaxed)
    }
    pub fn finished_draining(&self) -> u64 {
        self.finished_draining.load(Ordering::Relaxed)
    }
    pub fn handed_back(&self) -> u64 {
        self.handed_back.load(Ordering::Relaxed)
    }
}

/// Jobs that may still be handed back by the drain, and whether the sweep has already run.
#[derive(Default)]
pub(super) struct Registry {
    pub jobs: HashMap<u64, Arc<JobCell>>,
    pub next_id: u64,
    pub swept: bool,
}

pub(super) struct Shared {
    pub grace: Duration,
    pub slots: Arc<Semaphore>,
    pub phase: watch::Sender<Phase>,
    pub counters: Counters,
    pub registry: Mutex<Registry>,
    /// Woken whenever a job leaves the in-flight count.
    pub released: Notify,
    /// Hand-backs from `Drop` are spawned here: a job may be dropped outside any runtime context.
    pub runtime: Handle,
}

impl Shared {
    pub fn new(grace: Duration, max_in_flight: usize) -> Shared {
        Shared {
            grace,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            phase: watch::Sender::new(Phase::Running),
            counters: Counters::default(),
            registry: Mutex::new(Registry::default()),
            released: Notify::new(),
            runtime: Handle::current(),
        }
    }

    pub fn stop(&self, cause: Cause) {
        self.phase.send_if_modified(|phase| match phase {
            Phase::Running => {
                *phase = Phase::Draining { since: Instant::now(), cause, now: false };
                true
            }
            _ => false,
        });
    }

    pub fn stop_now(&self, cause: Cause) {
        self.phase.send_if_modified(|phase| match phase {
            Phase::Running => {
                *phase = Phase::Draining { since: Instant::now(), cause, now: true };
                true
            }
            Phase::Draining { now, .. } if !*now => {
                *now = true;
                true
            }
            _ => false,
        });
    }

    pub fn is_draining(&self) -> bool {
        !matches!(*self.phase.borrow(), Phase::Running)
    }

    /// Seconds the drain has taken so far (0 before it begins); frozen once it is done.
    pub fn drain_seconds(&self) -> f64 {
        match *self.phase.borrow() {
            Phase::Running => 0.0,
            Phase::Draining { since, .. } => since.elapsed().as_secs_f64(),
            Phase::Done(summary) => summary.duration.as_secs_f64(),
        }
    }

    pub fn acquired(&self) {
        self.counters.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    pub fn released(&self) {
        self.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    pub fn count_finished(&self) {
        self.counters.finished.fetch_add(1, Ordering::Relaxed);
        if self.is_draining() {
            self.counters.finished_draining.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_handed_back(&self) {
        self.counters.handed_back.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits until nothing is in flight, or `until` (if any) is reached, or the grace is cut short; true when
    /// nothing is in flight.
    async fn settle(&self, until: Option<Instant>, phase: &mut watch::Receiver<Phase>) -> bool {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the two is not missed.
            released.as_mut().enable();
            if self.counters.in_flight() == 0 {
                return true;
            }
            let cut_short = until.is_some() && matches!(*phase.borrow_and_update(), Phase::Draining { now: true, .. });
            if cut_short {
                return false;
            }
            tokio::select! {
                () = released => {}
                () = async { tokio::time::sleep_until(until.expect("checked by the guard")).await }, if until.is_some() => {
                    return false
                }
                _ = phase.changed() => {}
            }
        }
    }
}

/// Runs the drain once it begins: grace, sweep, wait for the hand-backs, publish the summary.
pub(super) async fn supervise(shared: Arc<Shared>) {
    let mut phase = shared.phase.subscribe();
    let (since, cause) = {
        let begun = phase.wait_for(|p| !matches!(p, Phase::Running)).await.expect("the sender lives in shared");
        match *begun {
            Phase::Draining { since, cause, .. } => (since, cause),
            _ => unreachable!("only the supervisor ends a drain"),
        }
    };
    shared.settle(Some(since + shared.grace), &mut phase).await;
    let cells: Vec<Arc<JobCell>> = {
        let mut registry = shared.registry.lock().expect("registry lock");
        registry.swept = true;
        registry.jobs.drain().map(|(_, cell)| cell).collect()
    };
    for cell in cells {
        cell.hand_back_by_drain(&shared);
    }
    // Acks already under way and the hand-backs just spawned: short, and the broker must hear about every one.
    shared.settle(None, &mut phase).await;
    let forced = matches!(*shared.phase.borrow(), Phase::Draining { now: true, .. });
    let summary = Summary {
        cause,
        finished: shared.counters.finished_draining(),
        handed_back: shared.counters.handed_back(),
        duration: since.elapsed(),
        forced,
    };
    shared.phase.send_replace(Phase::Done(summary));
}
