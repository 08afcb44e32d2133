//! Permits and job guards: a received message must end as exactly one of "completed" or "handed back".
//!
//! The broker must never hear both an ack and a nack for one message, and must hear one of them soon. So a job's
//! state is claimed under a lock by whoever acts first — the worker completing it, the worker or a drop handing it
//! back, or the drain's deadline sweep — and the loser does nothing. A [`Ticket`] is the job's place in the
//! in-flight count and its concurrency slot; it is released when the job's fate is sealed, whichever way.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::state::Shared;

type HandBack = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A job's place in the in-flight count and its concurrency slot, released on drop.
pub(super) struct Ticket {
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
}

impl Ticket {
    pub fn new(shared: Arc<Shared>, slot: OwnedSemaphorePermit) -> Ticket {
        shared.acquired();
        Ticket { shared, _slot: slot }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.released();
    }
}

/// A received message and a slot to work on it in; [`Permit::start`] it with a way to hand it back.
///
/// Dropped unstarted, the message is left to the broker's own redelivery (connection close, visibility timeout,
/// uncommitted offset), which may be slow: start it.
#[must_use = "start the job with a way to hand it back; dropped, the message waits for the broker's own redelivery"]
pub struct Permit<T> {
    message: T,
    ticket: Ticket,
}

impl<T> Permit<T> {
    pub(super) fn new(message: T, ticket: Ticket) -> Permit<T> {
        Permit { message, ticket }
    }

    /// What was received, to build the hand-back from (a delivery tag, a receipt handle).
    pub fn message(&self) -> &T {
        &self.message
    }

    /// The same slot for a message converted (say, a borrowed Kafka message detached).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Permit<U> {
        Permit { message: f(self.message), ticket: self.ticket }
    }

    /// Starts the job: `hand_back` gives the message back to the broker (nack and requeue, visibility 0, leave the
    /// offset uncommitted) if the job is handed back — at the drain's deadline, by [`Job::hand_back`], or when the
    /// [`Job`] is dropped unfinished. Returns the guard and the message.
    pub fn start<F, Fut>(self, hand_back: F) -> (Job, T)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shared = self.ticket.shared.clone();
        let hand_back: HandBack = Box::new(move || Box::pin(hand_back()));
        let mut registry = shared.registry.lock().expect("registry lock");
        let id = registry.next_id;
        registry.next_id += 1;
        let cell = Arc::new(JobCell {
            id,
            state: Mutex::new(State::Running { hand_back, ticket: self.ticket }),
            revoked: Notify::new(),
        });
        if registry.swept {
            // The deadline has passed: nothing started now may run; it goes straight back.
            drop(registry);
            cell.hand_back_by_drain(&shared);
        } else {
            registry.jobs.insert(id, cell.clone());
            drop(registry);
        }
        (Job { cell, shared }, self.message)
    }
}

impl<T> Permit<Option<T>> {
    /// `None` when the receive found the stream ended (the slot is released).
    pub fn transpose(self) -> Option<Permit<T>> {
        let ticket = self.ticket;
        self.message.map(|message| Permit { message, ticket })
    }
}

impl<T, E> Permit<Result<T, E>> {
    /// The receive's error, with the slot released.
    pub fn transpose(self) -> Result<Permit<T>, E> {
        let ticket = self.ticket;
        self.message.map(|message| Permit { message, ticket })
    }
}

enum State {
    Running { hand_back: HandBack, ticket: Ticket },
    Acking,
    Finished,
    HandedBack,
}

pub(super) struct JobCell {
    id: u64,
    state: Mutex<State>,
    /// Woken when the job is handed back, for [`Job::handed_back`].
    revoked: Notify,
}

impl JobCell {
    /// Claims a running job for hand-back: its callback and ticket, or `None` if someone else already acted.
    fn claim_for_hand_back(&self) -> Option<(HandBack, Ticket)> {
        let mut state = self.state.lock().expect("job lock");
        if !matches!(*state, State::Running { .. }) {
            return None;
        }
        match std::mem::replace(&mut *state, State::HandedBack) {
            State::Running { hand_back, ticket } => {
                drop(state);
                self.revoked.notify_waiters();
                Some((hand_back, ticket))
            }
            _ => unreachable!("checked above"),
        }
    }

    /// Hands the job back in a task of its own: the drain's sweep and `Drop` cannot wait for the broker.
    pub(super) fn hand_back_by_drain(&self, shared: &Arc<Shared>) {
        if let Some((hand_back, ticket)) = self.claim_for_hand_back() {
            let shared = shared.clone();
            shared.runtime.clone().spawn(async move { give_back(&shared, hand_back, ticket).await });
        }
    }

    fn is_handed_back(&self) -> bool {
        matches!(*self.state.lock().expect("job lock"), State::HandedBack)
    }
}

/// Runs a claimed job's hand-back callback and counts it; the job leaves the in-flight count only once the broker
/// has been told, so the drain waits for it.
async fn give_back(shared: &Shared, hand_back: HandBack, ticket: Ticket) {
    hand_back().await;
    shared.count_handed_back();
    drop(ticket);
}

/// A job in progress. Complete it with [`Job::complete`] or give it back with [`Job::hand_back`]; dropping it hands
/// it back.
#[must_use = "complete the job or hand it back; dropping it hands it back"]
pub struct Job {
    cell: Arc<JobCell>,
    shared: Arc<Shared>,
}

impl Job {
    /// Runs `ack` (the broker's acknowledgement, offset commit, delete) unless the drain has already handed the job
    /// back, and counts the job finished. `None` means it was handed back: `ack` did not run and must not.
    pub async fn complete<F: Future>(self, ack: F) -> Option<F::Output> {
        let ticket = {
            let mut state = self.cell.state.lock().expect("job lock");
            match std::mem::replace(&mut *state, State::Acking) {
                State::Running { ticket, .. } => ticket,
                other => {
                    *state = other;
                    return None;
                }
            }
        };
        self.forget();
        let out = ack.await;
        *self.cell.state.lock().expect("job lock") = State::Finished;
        self.shared.count_finished();
        // The in-flight count drops only now, so the drain waits for acks under way.
        drop(ticket);
        Some(out)
    }

    /// Hands the job back now (say, it failed and should be retried elsewhere) and waits for the callback. Does
    /// nothing if the drain already handed it back.
    pub async fn hand_back(self) {
        if let Some((hand_back, ticket)) = self.cell.claim_for_hand_back() {
            self.forget();
            give_back(&self.shared, hand_back, ticket).await;
        }
    }

    /// Resolves when the drain has handed this job back (its grace ran out): stop working on it, do not ack.
    pub async fn handed_back(&self) {
        loop {
            let revoked = self.cell.revoked.notified();
            tokio::pin!(revoked);
            revoked.as_mut().enable();
            if self.cell.is_handed_back() {
                return;
            }
            revoked.await;
        }
    }

    /// Takes the job out of the drain's sweep: its fate is sealed.
    fn forget(&self) {
        self.shared.registry.lock().expect("registry lock").jobs.remove(&self.cell.id);
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if matches!(*self.cell.state.lock().expect("job lock"), State::Running { .. }) {
            self.forget();
            self.cell.hand_back_by_drain(&self.shared);
        }
    }
}
