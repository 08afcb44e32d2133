//! Permits and job guards: a received message must end as exactly one of "completed" or "handed back".
//!
//! The broker must never hear both an ack and a nack for one message, and must hear one of them soon. So a job's
//! state is claimed under a lock by whoever acts first — the worker completing it, the worker or a drop handing it
//! back, or the drain's deadline sweep — and the loser does nothing. A [`Ticket`] is the job's place in the
//! in-flight count and its concurrency slot; it is released when the job's fate is sealed, whichever way.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use super::handle::{JobCell, JobHandle, State};
use super::state::{Shared, lock};

pub(super) type HandBack = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send>;

/// What a hand-back callback returns: whether the broker took the job back. `()` always succeeds; a `Result`
/// succeeds when it is `Ok`. A failed hand-back counts in [`Summary::failed`](super::Summary::failed) and makes the
/// exit code non-zero.
pub trait HandBackOutcome {
    /// Whether the broker has the job back.
    fn succeeded(&self) -> bool;
}

impl HandBackOutcome for () {
    fn succeeded(&self) -> bool {
        true
    }
}

impl HandBackOutcome for bool {
    fn succeeded(&self) -> bool {
        *self
    }
}

impl<T, E> HandBackOutcome for Result<T, E> {
    fn succeeded(&self) -> bool {
        self.is_ok()
    }
}

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

impl<T: fmt::Debug> fmt::Debug for Permit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("message", &self.message).finish_non_exhaustive()
    }
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
    /// [`Job`] is dropped unfinished. It returns `()`, or a `Result` whose `Err` counts the hand-back as failed
    /// ([`HandBackOutcome`]). Returns the guard and the message.
    pub fn start<F, Fut>(self, hand_back: F) -> (Job, T)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandBackOutcome,
    {
        let shared = self.ticket.shared.clone();
        let hand_back: HandBack = Box::new(move || Box::pin(async move { hand_back().await.succeeded() }));
        let mut registry = lock(&shared.registry);
        let id = registry.next_id;
        registry.next_id += 1;
        let cell = Arc::new(JobCell::new(id, State::Running { hand_back, ticket: self.ticket }));
        if registry.swept {
            // The deadline has passed: nothing started now may run; it goes straight back.
            drop(registry);
            cell.hand_back_by_drain(&shared);
        } else {
            registry.jobs.insert(id, cell.clone());
            drop(registry);
        }
        (Job { handle: JobHandle::new(cell, shared) }, self.message)
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

/// A claimed hand-back on its way to the broker. The job leaves the in-flight count only once the broker has been
/// told, so the drain waits for it. Dropped before it could tell (a task that a runtime shutting down never ran),
/// it counts as failed: the broker never heard of the job.
pub(super) struct Return {
    shared: Arc<Shared>,
    hand_back: Option<HandBack>,
    ticket: Option<Ticket>,
}

impl Return {
    pub fn new(shared: Arc<Shared>, (hand_back, ticket): (HandBack, Ticket)) -> Return {
        Return { shared, hand_back: Some(hand_back), ticket: Some(ticket) }
    }

    /// Runs the callback and counts how it went.
    pub async fn send(mut self) {
        if let Some(hand_back) = self.hand_back.take() {
            let succeeded = hand_back().await;
            self.report(succeeded);
        }
    }

    fn report(&mut self, succeeded: bool) {
        if let Some(ticket) = self.ticket.take() {
            self.shared.count_hand_back(succeeded);
            drop(ticket);
        }
    }
}

impl Drop for Return {
    fn drop(&mut self) {
        self.report(false);
    }
}

/// A job in progress. Complete it with [`Job::complete`] or give it back with [`Job::hand_back`]; dropping it hands
/// it back.
#[must_use = "complete the job or hand it back; dropping it hands it back"]
#[derive(Debug)]
pub struct Job {
    handle: JobHandle,
}

impl Job {
    /// Runs `ack` (the broker's acknowledgement, offset commit, delete) unless the job was already handed back,
    /// and counts the job finished. `None` means it was handed back: `ack` was not called.
    ///
    /// `ack` is a closure so that nothing of the ack exists before the claim: a future that starts its work when
    /// created (a spawned task, a producer send) would otherwise ack a job the drain already handed back.
    pub async fn complete<F, Fut>(self, ack: F) -> Option<Fut::Output>
    where
        F: FnOnce() -> Fut,
        Fut: Future,
    {
        let ticket = self.handle.cell.claim_for_ack()?;
        self.handle.forget();
        let out = ack().await;
        self.handle.cell.set(State::Finished);
        self.handle.shared.count_finished();
        // The in-flight count drops only now, so the drain waits for acks under way.
        drop(ticket);
        Some(out)
    }

    /// Hands the job back now (say, it failed and should be retried elsewhere) and waits for the callback. Does
    /// nothing if the drain already handed it back.
    pub async fn hand_back(self) {
        if let Some(claimed) = self.handle.cell.claim_for_hand_back() {
            self.handle.forget();
            Return::new(self.handle.shared.clone(), claimed).send().await;
        }
    }

    /// Resolves when the job has been handed back (the grace ran out, its Kafka partition was revoked): stop
    /// working on it, do not ack.
    pub async fn handed_back(&self) {
        self.handle.handed_back().await;
    }

    /// Whether the job has been handed back: one atomic load, cheap enough for a hot loop.
    pub fn is_handed_back(&self) -> bool {
        self.handle.is_handed_back()
    }

    /// A cloneable handle on this job for other threads and tasks: blocking code (`spawn_blocking`, a child
    /// process's supervisor) watches it to stop work that was handed back.
    pub fn handle(&self) -> JobHandle {
        self.handle.clone()
    }

    /// Keeps the job's lease with the broker while it runs: calls `extend` every `every` until the job is completed
    /// or handed back. For SQS, `ChangeMessageVisibility` to a little more than `every`; Pub/Sub's client already
    /// extends its leases itself, and RabbitMQ has no per-delivery lease (see the module documentation).
    pub fn keep_alive<F, Fut>(&self, every: Duration, extend: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handle.keep_alive(every, extend);
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.handle.cell.is_running() {
            self.handle.forget();
            self.handle.cell.hand_back_by_drain(&self.handle.shared);
        }
    }
}
