//! Watch streams: a chunked answer of newline-delimited `{"type":..,"object":..}` events. A watch
//! from resourceVersion 0 (or none) starts with the current objects as ADDED; one from a later
//! resourceVersion replays the history after it, or gets a single ERROR event with a 410 Status
//! when that history is gone, which makes kube-rs's watcher re-list. Streams end at
//! `timeoutSeconds`, when the client hangs up, or when a test closes them.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::resources::Endpoint;
use super::routes::Query;
use super::selectors::Selection;
use super::shared::Shared;
use super::status::ApiError;
use super::store::{Change, ChangeType, LiveChanges, Store};

/// How long a watch without `timeoutSeconds` stays open; real servers pick 30 to 60 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// What a watch request asked for.
#[derive(Debug)]
pub(super) struct WatchRequest {
    endpoint: &'static Endpoint,
    namespace: Option<String>,
    selection: Selection,
    /// `None` to start from the current state.
    since: Option<u64>,
    timeout: Duration,
    bookmarks: bool,
    /// `sendInitialEvents`: the current state first, then a bookmark marking its end.
    initial_events: bool,
}

impl WatchRequest {
    pub fn new(endpoint: &'static Endpoint, namespace: Option<String>, query: &Query) -> Result<Self, ApiError> {
        let since = match query.get("resourceVersion").unwrap_or("") {
            "" | "0" => None,
            text => {
                Some(text.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion: {text:?}")))?)
            }
        };
        let initial_events = query.flag("sendInitialEvents");
        Ok(Self {
            endpoint,
            namespace,
            selection: Selection::parse(query.get("labelSelector"), query.get("fieldSelector"))?,
            since: since.filter(|_| !initial_events),
            timeout: query
                .get("timeoutSeconds")
                .and_then(|seconds| seconds.parse().ok())
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            bookmarks: query.flag("allowWatchBookmarks"),
            initial_events,
        })
    }

    /// The watch event `change` makes for this watch, if any; an object moving into or out of the
    /// selection is ADDED or DELETED, as on a real server.
    fn event_for(&self, change: &Change) -> Option<Bytes> {
        let in_scope = change.key.kind == self.endpoint.kind
            && self.namespace.as_ref().is_none_or(|ns| *ns == change.key.namespace);
        if !in_scope {
            return None;
        }
        let object = self.endpoint.show(&change.object);
        let selected_now = self.selection.matches(&object);
        let selected_before =
            change.previous.as_ref().is_some_and(|previous| self.selection.matches(&self.endpoint.show(previous)));
        let event_type = match (change.change_type, selected_before, selected_now) {
            (ChangeType::Added, _, true) | (ChangeType::Modified, false, true) => "ADDED",
            (ChangeType::Modified, true, true) => "MODIFIED",
            (ChangeType::Deleted, _, true) | (ChangeType::Modified, true, false) => "DELETED",
            _ => return None,
        };
        Some(line(event_type, &object))
    }

    fn bookmark(&self, revision: u64, annotations: Value) -> Bytes {
        let object = json!({
            "kind": self.endpoint.kind_name,
            "apiVersion": self.endpoint.api_version(),
            "metadata": { "resourceVersion": revision.to_string(), "annotations": annotations },
        });
        line("BOOKMARK", &object)
    }

    /// What the stream starts with and where the rest comes from; taken under the store's lock so
    /// no change falls between the two.
    fn start(&self, store: &Store) -> Start {
        let Some(since) = self.since else {
            let current = store
                .list(self.endpoint.kind, self.namespace.as_deref())
                .into_iter()
                .map(|object| self.endpoint.show(object))
                .filter(|object| self.selection.matches(object))
                .map(|object| line("ADDED", &object));
            let mut opening: Vec<Bytes> = current.collect();
            if self.initial_events {
                opening.push(self.bookmark(store.revision(), json!({ "k8s.io/initial-events-end": "true" })));
            }
            return Start::Stream { opening, revision: store.revision(), live: store.subscribe() };
        };
        match store.changes_since(since) {
            Ok((backlog, live)) => Start::Stream {
                opening: backlog.iter().filter_map(|change| self.event_for(change)).collect(),
                revision: store.revision(),
                live,
            },
            Err(oldest) => Start::Expired(line("ERROR", &ApiError::expired(since, oldest).to_status())),
        }
    }
}

enum Start {
    /// Events up to `revision`, then the changes after it.
    Stream {
        opening: Vec<Bytes>,
        revision: u64,
        live: LiveChanges,
    },
    Expired(Bytes),
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut encoded = json!({ "type": event_type, "object": object }).to_string().into_bytes();
    encoded.push(b'\n');
    Bytes::from(encoded)
}

/// Starts streaming `request`; the stream's lines arrive on the returned receiver, which ends with
/// the watch.
pub(super) fn open(shared: Arc<Shared>, request: WatchRequest) -> mpsc::Receiver<Bytes> {
    let (lines, receiver) = mpsc::channel(64);
    // Listening for a close before taking the starting point means a close that comes while the
    // watch opens still ends it.
    let mut closing = shared.watch_closing();
    let start = shared.read(|store| request.start(store));
    tokio::spawn(async move {
        let (opening, mut revision, mut live) = match start {
            Start::Expired(error) => {
                // The client may already be gone; there is nothing left to tell it then.
                let _ = lines.send(error).await;
                return;
            }
            Start::Stream { opening, revision, live } => (opening, revision, live),
        };
        for event in opening {
            if lines.send(event).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(request.timeout);
        tokio::pin!(deadline);
        loop {
            let event = tokio::select! {
                () = &mut deadline => {
                    // Only what this stream has passed on may be bookmarked: a change still queued
                    // would be skipped by a client resuming from a later revision.
                    if request.bookmarks {
                        let _ = lines.send(request.bookmark(revision, json!({}))).await;
                    }
                    return;
                }
                _ = closing.changed() => return,
                () = lines.closed() => return,
                received = live.recv() => match received {
                    // A cut stream carries nothing written after the cut. A close and a later write
                    // can both be pending here, and `select!` may pick either first; the write
                    // happened after the close, so the close is visible by the time it arrives.
                    Ok(_) if closing.has_changed().unwrap_or(true) => return,
                    Ok(change) => {
                        revision = change.revision;
                        request.event_for(&change)
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let status = ApiError::expired(revision, shared.read(Store::revision)).to_status();
                        let _ = lines.send(line("ERROR", &status)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if let Some(event) = event
                && lines.send(event).await.is_err()
            {
                return;
            }
        }
    });
    receiver
}
