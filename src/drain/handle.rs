//! A job's shared state and the handle that watches it from anywhere: async tasks, blocking threads, a child
//! process's supervisor, a Kafka rebalance callback.
//!
//! A transcoding worker runs ffmpeg in `spawn_blocking` or as a child process. When its job is handed back (the
//! grace ran out), that work must stop, or two pods run the same job. So the state is mirrored in atomics that any
//! thread can read without a lock, a `Notify` wakes async waiters and a `Condvar` wakes blocking ones, like tokio-util's
//! `CancellationToken` but readable from sync code.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::job::{HandBack, Return, Ticket};
use super::state::{Shared, lock};

pub(super) enum State {
    Running { hand_back: HandBack, ticket: Ticket },
    Acking,
    Finished,
    HandedBack,
}

pub(super) struct JobCell {
    id: u64,
    state: Mutex<State>,
    /// Mirrors of `state` for lock-free reads.
    handed_back: AtomicBool,
    settled: AtomicBool,
    /// Wakes async waiters on every change of `state`.
    changed: Notify,
    /// Wakes blocking waiters on every change of `state`.
    changed_sync: Condvar,
}

impl JobCell {
    pub fn new(id: u64, state: State) -> JobCell {
        JobCell {
            id,
            state: Mutex::new(state),
            handed_back: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            changed: Notify::new(),
            changed_sync: Condvar::new(),
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(*lock(&self.state), State::Running { .. })
    }

    /// Replaces the state and wakes every waiter.
    pub fn set(&self, next: State) {
        let mut state = lock(&self.state);
        *state = next;
        self.mirror(&state);
        drop(state);
        self.wake();
    }

    fn mirror(&self, state: &State) {
        self.handed_back.store(matches!(state, State::HandedBack), Ordering::SeqCst);
        self.settled.store(matches!(state, State::HandedBack | State::Finished), Ordering::SeqCst);
    }

    fn wake(&self) {
        self.changed.notify_waiters();
        self.changed_sync.notify_all();
    }

    /// Claims a running job for its ack: its ticket, or `None` if it was already handed back.
    pub fn claim_for_ack(&self) -> Option<Ticket> {
        let mut state = lock(&self.state);
        match std::mem::replace(&mut *state, State::Acking) {
            State::Running { ticket, .. } => Some(ticket),
            other => {
                *state = other;
                None
            }
        }
    }

    /// Claims a running job for hand-back: its callback and ticket, or `None` if someone else already acted.
    pub fn claim_for_hand_back(&self) -> Option<(HandBack, Ticket)> {
        let mut state = lock(&self.state);
        if !matches!(*state, State::Running { .. }) {
            return None;
        }
        let before = std::mem::replace(&mut *state, State::HandedBack);
        self.mirror(&state);
        drop(state);
        self.wake();
        match before {
            State::Running { hand_back, ticket } => Some((hand_back, ticket)),
            _ => unreachable!("checked under the same lock"),
        }
    }

    /// Hands the job back in a task of its own: the drain's sweep, `Drop` and a rebalance callback cannot wait for
    /// the broker. On a runtime that is shutting down the task never runs, and the hand-back counts as failed.
    pub fn hand_back_by_drain(&self, shared: &Arc<Shared>) {
        if let Some(claimed) = self.claim_for_hand_back() {
            // Built here, outside the task: if the task never runs, dropping it still counts the failure.
            let sent = Return::new(shared.clone(), claimed).send();
            shared.runtime.spawn(sent);
        }
    }

    /// Resolves once `done(self)` holds.
    async fn until(&self, done: impl Fn(&JobCell) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change between the two is not missed.
            changed.as_mut().enable();
            if done(self) {
                return;
            }
            changed.await;
        }
    }
}

/// A cloneable handle on one job: whether it was handed back (cheap, from any thread), waiting for that from async
/// or blocking code, and handing it back from code that cannot await (a rebalance callback).
#[derive(Clone)]
pub struct JobHandle {
    pub(super) cell: Arc<JobCell>,
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("id", &self.cell.id)
            .field("handed_back", &self.is_handed_back())
            .field("settled", &self.cell.settled.load(Ordering::SeqCst))
            .finish()
    }
}

impl JobHandle {
    pub(super) fn new(cell: Arc<JobCell>, shared: Arc<Shared>) -> JobHandle {
        JobHandle { cell, shared }
    }

    /// Whether the job has been handed back: one atomic load.
    pub fn is_handed_back(&self) -> bool {
        self.cell.handed_back.load(Ordering::SeqCst)
    }

    /// Resolves when the job has been handed back.
    pub async fn handed_back(&self) {
        self.cell.until(|cell| cell.handed_back.load(Ordering::SeqCst)).await;
    }

    /// Blocks the calling thread until the job has been handed back (`true`) or `timeout` has passed (`false`): for
    /// blocking code that polls its own work between waits. Never call it on an async task's thread.
    pub fn wait_handed_back(&self, timeout: Duration) -> bool {
        let state = lock(&self.cell.state);
        let (_state, waited) = self
            .cell
            .changed_sync
            .wait_timeout_while(state, timeout, |s| !matches!(s, State::HandedBack))
            .unwrap_or_else(|e| e.into_inner());
        !waited.timed_out()
    }

    /// Hands the job back now without waiting: its callback runs in a task of its own. For code that cannot await,
    /// such as a Kafka rebalance callback handing back the jobs of revoked partitions. Does nothing if the job was
    /// already completed or handed back.
    pub fn hand_back(&self) {
        if self.cell.is_running() {
            self.forget();
            self.cell.hand_back_by_drain(&self.shared);
        }
    }

    /// Calls `extend` every `every` until the job is completed or handed back.
    pub(super) fn keep_alive<F, Fut>(&self, every: Duration, mut extend: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let cell = self.cell.clone();
        self.shared.runtime.spawn(async move {
            let settled = cell.until(|cell| cell.settled.load(Ordering::SeqCst));
            tokio::pin!(settled);
            loop {
                tokio::select! {
                    biased;
                    () = &mut settled => return,
                    () = tokio::time::sleep(every) => extend().await,
                }
            }
        });
    }

    /// Takes the job out of the drain's sweep: its fate is sealed.
    pub(super) fn forget(&self) {
        lock(&self.shared.registry).jobs.remove(&self.cell.id);
    }
}
