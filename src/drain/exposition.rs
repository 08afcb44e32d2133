//! What the worker tells the outside: Prometheus text on `/metrics`, `{"in_flight", "draining"}` on `/status`.
//!
//! Written by hand from the drain's atomics: the `metrics` crate and its exporter belong to the agent, and a worker
//! that only drains should not carry them. `/status` is the contract the agent's idle-first scale-down reads.

use std::fmt::Write;
use std::sync::Arc;

use super::state::Shared;
use crate::http::{Response, Route};

/// The routes [`Drain::serve`](super::Drain::serve) answers.
pub(super) fn route(shared: Arc<Shared>) -> Route {
    Arc::new(move |path: &str| match path {
        "/metrics" => Some(Response::metrics(metrics(&shared))),
        "/status" => Some(Response::json(status(&shared))),
        "/healthz" => Some(Response::text("ok\n")),
        _ => None,
    })
}

/// `{"in_flight": N, "draining": bool}`.
pub(super) fn status(shared: &Shared) -> String {
    format!(r#"{{"in_flight":{},"draining":{}}}"#, shared.counters.in_flight(), shared.is_draining())
}

/// The Prometheus text exposition (format 0.0.4).
pub(super) fn metrics(shared: &Shared) -> String {
    let c = &shared.counters;
    let families: [(&str, &str, &str, String); 6] = [
        ("jobs_in_flight", "gauge", "Jobs this worker holds now.", c.in_flight().to_string()),
        ("jobs_finished_total", "counter", "Jobs completed since the worker started.", c.finished().to_string()),
        (
            "jobs_finished_while_draining_total",
            "counter",
            "Jobs completed after the drain began.",
            c.finished_draining().to_string(),
        ),
        (
            "jobs_handed_back_total",
            "counter",
            "Jobs handed back to the broker unfinished.",
            c.handed_back().to_string(),
        ),
        ("draining", "gauge", "1 once the drain has begun.", u8::from(shared.is_draining()).to_string()),
        (
            "duration_seconds",
            "gauge",
            "How long the drain has taken so far, or took; 0 before it begins.",
            shared.drain_seconds().to_string(),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in families {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "# HELP queue_scaler_drain_{name} {help}\n# TYPE queue_scaler_drain_{name} {kind}\nqueue_scaler_drain_{name} {value}\n"
        );
    }
    out
}
