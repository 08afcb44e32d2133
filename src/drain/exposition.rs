//! What the worker tells the outside and the two things it takes from it: Prometheus text on `/metrics`,
//! `{"in_flight", "draining", "quiet"}` on `/status`, `/healthz`, `/readyz`, and `POST /quiet` / `POST /resume`.
//!
//! Written by hand from the drain's atomics: the `metrics` crate and its exporter belong to the agent, and a worker
//! that only drains should not carry them. `/status` is the contract the agent's idle-first and quiet scale-down
//! read; the two POSTs are how the agent quiets a worker before removing it, so when the worker has a token they
//! require it (`Authorization: Bearer …`), while the GETs stay open to probes and scrapers.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::state::Shared;
use crate::http::{Handler, Request, Response};

/// The requests [`Drain::serve`](super::Drain::serve) answers.
pub(super) fn handler(shared: Arc<Shared>) -> Handler {
    Arc::new(move |request: &Request<'_>| {
        let response = match (request.method, request.path) {
            ("GET" | "HEAD", "/metrics") => Response::metrics(metrics(&shared)),
            ("GET" | "HEAD", "/status") => Response::json(status(&shared)),
            ("GET" | "HEAD", "/healthz") => Response::text("ok\n"),
            ("GET" | "HEAD", "/readyz") if shared.ready.load(Ordering::SeqCst) => Response::text("ready\n"),
            ("GET" | "HEAD", "/readyz") => Response::unavailable("not subscribed yet\n"),
            ("POST", "/quiet") => set_quiet(&shared, request, true),
            ("POST", "/resume") => set_quiet(&shared, request, false),
            (_, "/metrics" | "/status" | "/healthz" | "/readyz") => Response::plain(405, "only GET\n"),
            (_, "/quiet" | "/resume") => Response::plain(405, "only POST\n"),
            _ => return None,
        };
        Some(response)
    })
}

/// `POST /quiet` and `POST /resume`: the token first, then the change; answers with the new `/status`.
fn set_quiet(shared: &Shared, request: &Request<'_>, quiet: bool) -> Response {
    if let Some(token) = &shared.token
        && !request.bearer.is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
    {
        return Response::plain(401, "a bearer token is required\n");
    }
    match shared.set_quiet(quiet) {
        Ok(()) => Response::json(status(shared)),
        Err(_) => Response::plain(409, "draining: intake is stopped for good\n"),
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// `{"in_flight": N, "draining": bool, "quiet": bool}`.
pub(super) fn status(shared: &Shared) -> String {
    format!(
        r#"{{"in_flight":{},"draining":{},"quiet":{}}}"#,
        shared.counters.in_flight(),
        shared.is_draining(),
        shared.is_quiet()
    )
}

/// The Prometheus text exposition (format 0.0.4).
pub(super) fn metrics(shared: &Shared) -> String {
    let c = &shared.counters;
    let families: [(&str, &str, &str, String); 8] = [
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
        (
            "hand_backs_failed_total",
            "counter",
            "Hand-backs that failed or never ran; the broker redelivers those jobs only after its own timeout.",
            c.failed().to_string(),
        ),
        ("quiet", "gauge", "1 while intake is stopped by POST /quiet.", u8::from(shared.is_quiet()).to_string()),
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
