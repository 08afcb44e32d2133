//! The state the HTTP side and the test's handle share: the store, the request log, the pending
//! faults, and two signals — one ticking on every request or change, so waits wake without polling
//! on a timer, and one that tells open watch streams to end.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hyper::Method;
use serde_json::Value;
use tokio::sync::watch;

use super::faults::{Fault, FaultKind, Faults};
use super::store::Store;

/// One request as the fake received and answered it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// When it arrived.
    pub at: Instant,
    pub method: Method,
    pub path: String,
    /// The raw query string, empty when there was none.
    pub query: String,
    pub content_type: Option<String>,
    /// The body, read as JSON (or YAML, for apply patches); `None` when empty or unreadable.
    pub body: Option<Value>,
    /// The HTTP status answered; `None` when an injected fault closed the connection instead.
    pub status: Option<u16>,
    /// The JSON answered; `None` for watch streams and dropped connections.
    pub response: Option<Value>,
}

/// Everything behind the fake, shared by connections and the test.
#[derive(Debug)]
pub(super) struct Shared {
    pub address: SocketAddr,
    store: Mutex<Store>,
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<Faults>,
    activity: watch::Sender<u64>,
    watch_closing: watch::Sender<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the state from the assertions that follow.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            store: Mutex::new(Store::new()),
            requests: Mutex::default(),
            faults: Mutex::default(),
            activity: watch::Sender::new(0),
            watch_closing: watch::Sender::new(0),
        }
    }

    /// Reads the store.
    pub fn read<T>(&self, read: impl FnOnce(&Store) -> T) -> T {
        read(&lock(&self.store))
    }

    /// Changes the store, then wakes whoever waits for a change.
    pub fn write<T>(&self, write: impl FnOnce(&mut Store) -> T) -> T {
        let result = write(&mut lock(&self.store));
        self.activity.send_modify(|tick| *tick += 1);
        result
    }

    pub fn record(&self, request: RecordedRequest) {
        lock(&self.requests).push(request);
        self.activity.send_modify(|tick| *tick += 1);
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let mut requests = lock(&self.requests).clone();
        requests.sort_by_key(|request| request.at);
        requests
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.faults).inject(fault);
    }

    pub fn take_fault(&self, method: &Method, target: &str) -> Option<FaultKind> {
        lock(&self.faults).take(method, target)
    }

    /// Ticks on every request recorded and every change to the store.
    pub fn activity(&self) -> watch::Receiver<u64> {
        self.activity.subscribe()
    }

    /// Ends every open watch stream.
    pub fn close_watches(&self) {
        self.watch_closing.send_modify(|generation| *generation += 1);
    }

    /// Changes when watch streams are told to end.
    pub fn watch_closing(&self) -> watch::Receiver<u64> {
        self.watch_closing.subscribe()
    }
}
