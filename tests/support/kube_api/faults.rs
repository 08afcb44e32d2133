//! Faults a test injects into the fake: an error Status, a late answer, an answer held back until
//! the test lets it through, or a connection dropped without an answer, each for the next `times`
//! requests that match. They let tests show how the code under test behaves when the API server
//! misbehaves, which a healthy fake never would.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Method;
use tokio::sync::watch;

/// What goes wrong, for which requests, how many times.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only requests with this method; `None` for any.
    pub method: Option<Method>,
    /// Only requests whose path and query (`/apis/apps/v1/...?watch=true`) contain this text.
    pub path_contains: String,
    pub kind: FaultKind,
    /// How many matching requests it hits before normal service resumes.
    pub times: usize,
}

/// How a faulted request is answered.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer with this HTTP code and a `Status` body with the matching reason; the request has no
    /// effect.
    Status(u16),
    /// Wait this long, then serve the request normally (its effect happens when it is answered).
    Stall(Duration),
    /// Wait until the test opens the gate, then serve the request normally. Unlike a stall, what
    /// the test does before opening it is sure to come first, however slowly the test runs.
    Hold(Gate),
    /// Close the connection without answering; the request has no effect.
    Reset,
}

/// Where held requests wait; clones share one gate, so the test keeps one to open it. It counts the requests
/// waiting at it, and the most that ever waited at once, so a test can see how many a client sends in parallel.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    open: Arc<watch::Sender<bool>>,
    waiting: Arc<AtomicUsize>,
    most_waiting: Arc<AtomicUsize>,
}

impl Gate {
    /// Lets every request held at this gate through, and any that reach it later.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// How many requests wait at the gate now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The most requests that ever waited at the gate at once.
    pub fn most_waiting(&self) -> usize {
        self.most_waiting.load(Ordering::SeqCst)
    }

    /// Returns once the gate is open.
    pub(super) async fn passed(&self) {
        let now = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_waiting.fetch_max(now, Ordering::SeqCst);
        // The gate holds its own sender, so the wait cannot fail for want of one.
        let _ = self.open.subscribe().wait_for(|open| *open).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The faults still to hit, in the order they were injected.
#[derive(Debug, Default)]
pub(super) struct Faults(Vec<Fault>);

impl Faults {
    pub fn inject(&mut self, fault: Fault) {
        self.0.push(fault);
    }

    /// Uses up one hit of the first fault matching the request, if any.
    pub fn take(&mut self, method: &Method, target: &str) -> Option<FaultKind> {
        let fault = self.0.iter_mut().find(|fault| {
            fault.times > 0
                && fault.method.as_ref().is_none_or(|m| m == method)
                && target.contains(&fault.path_contains)
        })?;
        fault.times -= 1;
        Some(fault.kind.clone())
    }
}
