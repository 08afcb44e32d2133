//! The drain's state machine: running (open or quiet) → draining (grace) → handing back → done, and the counters
//! behind it.
//!
//! One supervisor task owns the transitions that take time (the grace, the hand-back sweep), so the deadline holds
//! even while the worker's own code is stuck in a job; everything else only flips the phase and wakes it. What must
//! hold even when no task runs at all (the flush budget, a signal during the flush) is the watchdog's, in
//! [`super::exit`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

use super::exit::Alarm;
use super::handle::JobCell;
use super::intake::Hooks;
use super::summary::{Cause, Summary};

/// Locks `mutex` even if a thread panicked while holding it: every value behind the drain's locks stays valid
/// between statements (a map, a job's state), so a panicking job must not take the whole drain down with it.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Taking jobs, unless `quiet` (`POST /quiet`): then intake is stopped but the process stays up.
    Running {
        quiet: bool,
    },
    /// The drain has begun; `now` once the grace was cut short.
    Draining {
        since: Instant,
        cause: Cause,
        now: bool,
    },
    Done(Summary),
}

/// Why quiet or resume was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AlreadyDraining;

/// Plain atomics: `/metrics` reads them without a lock. The `*_draining` ones count only what ended after the drain
/// began, so the summary's counts all cover the same window.
#[derive(Debug, Default)]
pub(super) struct Counters {
    in_flight: AtomicU64,
    finished: AtomicU64,
    finished_draining: AtomicU64,
    handed_back: AtomicU64,
    handed_back_draining: AtomicU64,
    failed: AtomicU64,
    failed_draining: AtomicU64,
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
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Counts one event in its total and, once the drain has begun, in the drain's window too.
fn count(total: &AtomicU64, draining: &AtomicU64, in_window: bool) {
    total.fetch_add(1, Ordering::Relaxed);
    if in_window {
        draining.fetch_add(1, Ordering::Relaxed);
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
    /// The flush deadline, in real time, for the watchdog thread.
    pub alarm: Alarm,
    /// What the worker does at the broker when intake stops or resumes.
    pub hooks: Hooks,
    /// Set by [`Drain::ready`](super::Drain::ready) once the consumer is subscribed: `/readyz`.
    pub ready: AtomicBool,
    /// The bearer token `POST /quiet` and `POST /resume` require, if any.
    pub token: Option<String>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("grace", &self.grace)
            .field("phase", &*self.phase.borrow())
            .field("counters", &self.counters)
            .field("ready", &self.ready)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(
        grace: Duration,
        flush_budget: Duration,
        max_in_flight: usize,
        token: Option<String>,
        runtime: Handle,
    ) -> Shared {
        Shared {
            grace,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            phase: watch::Sender::new(Phase::Running { quiet: false }),
            counters: Counters::default(),
            registry: Mutex::new(Registry::default()),
            released: Notify::new(),
            runtime,
            alarm: Alarm::new(flush_budget),
            hooks: Hooks::default(),
            ready: AtomicBool::new(false),
            token,
        }
    }

    /// Begins the drain (once; later calls change nothing).
    pub fn stop(&self, cause: Cause) {
        let begun = self.phase.send_if_modified(|phase| match phase {
            Phase::Running { .. } => {
                *phase = Phase::Draining { since: Instant::now(), cause, now: false };
                true
            }
            _ => false,
        });
        if begun {
            self.alarm.began(self.grace);
        }
    }

    /// Begins the drain if needed and cuts its grace short: the flush starts now.
    pub fn stop_now(&self, cause: Cause) {
        self.phase.send_if_modified(|phase| match phase {
            Phase::Running { .. } => {
                *phase = Phase::Draining { since: Instant::now(), cause, now: true };
                true
            }
            Phase::Draining { now, .. } if !*now => {
                *now = true;
                true
            }
            _ => false,
        });
        self.alarm.cut();
    }

    /// Stops (`true`) or resumes (`false`) intake while the process stays up; refused once the drain has begun.
    pub fn set_quiet(&self, quiet: bool) -> Result<(), AlreadyDraining> {
        let mut refused = false;
        self.phase.send_if_modified(|phase| match phase {
            Phase::Running { quiet: was } if *was != quiet => {
                *was = quiet;
                true
            }
            Phase::Running { .. } => false,
            _ => {
                refused = true;
                false
            }
        });
        if refused { Err(AlreadyDraining) } else { Ok(()) }
    }

    pub fn is_draining(&self) -> bool {
        !matches!(*self.phase.borrow(), Phase::Running { .. })
    }

    pub fn is_quiet(&self) -> bool {
        matches!(*self.phase.borrow(), Phase::Running { quiet: true })
    }

    /// Seconds the drain has taken so far (0 before it begins); frozen once it is done.
    pub fn drain_seconds(&self) -> f64 {
        match *self.phase.borrow() {
            Phase::Running { .. } => 0.0,
            Phase::Draining { since, .. } => since.elapsed().as_secs_f64(),
            Phase::Done(summary) => summary.duration.as_secs_f64(),
        }
    }

    /// The drain's account so far: the final one once it is done, else what the counters say now (jobs still held
    /// are `unresolved`).
    pub fn summary_now(&self) -> Summary {
        match *self.phase.borrow() {
            Phase::Done(summary) => summary,
            Phase::Draining { since, cause, now } => self.summary(since, cause, now),
            Phase::Running { .. } => self.summary(Instant::now(), Cause::Requested, false),
        }
    }

    fn summary(&self, since: Instant, cause: Cause, forced: bool) -> Summary {
        let c = &self.counters;
        Summary {
            cause,
            finished: c.finished_draining.load(Ordering::Relaxed),
            handed_back: c.handed_back_draining.load(Ordering::Relaxed),
            failed: c.failed_draining.load(Ordering::Relaxed),
            unresolved: c.in_flight(),
            duration: since.elapsed(),
            forced,
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
        let c = &self.counters;
        count(&c.finished, &c.finished_draining, self.is_draining());
    }

    /// A hand-back the broker took (`succeeded`), or one that failed or never ran: the broker redelivers that job
    /// only through its own timeout.
    pub fn count_hand_back(&self, succeeded: bool) {
        let c = &self.counters;
        if succeeded {
            count(&c.handed_back, &c.handed_back_draining, self.is_draining());
        } else {
            count(&c.failed, &c.failed_draining, self.is_draining());
        }
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
    let since = {
        let begun = phase.wait_for(|p| !matches!(p, Phase::Running { .. })).await.expect("the sender lives in shared");
        match *begun {
            Phase::Draining { since, .. } => since,
            _ => unreachable!("only the supervisor ends a drain"),
        }
    };
    shared.settle(Some(since + shared.grace), &mut phase).await;
    let cells: Vec<Arc<JobCell>> = {
        let mut registry = lock(&shared.registry);
        registry.swept = true;
        registry.jobs.drain().map(|(_, cell)| cell).collect()
    };
    for cell in cells {
        cell.hand_back_by_drain(&shared);
    }
    // Acks already under way and the hand-backs just spawned: short, and the broker must hear about every one. If
    // the broker stopped answering, the watchdog ends the process at the end of the flush budget.
    shared.settle(None, &mut phase).await;
    let summary = shared.summary_now();
    shared.phase.send_replace(Phase::Done(summary));
}
