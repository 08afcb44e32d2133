//! What a drain says when it ends: what began it, what became of the jobs, and the exit code that tells the truth
//! about it.

use std::fmt;
use std::time::Duration;

use super::exit::{EXIT_HAND_BACK_FAILED, EXIT_STREAM_ENDED};

/// What began the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A signal, by name (`SIGTERM`, `SIGINT`).
    Signal(&'static str),
    /// [`Drain::stop`](super::Drain::stop), [`Drain::stop_now`](super::Drain::stop_now) or
    /// [`Drain::wait`](super::Drain::wait).
    Requested,
    /// The broker ended the stream ([`Drain::stream_ended`](super::Drain::stream_ended)): RabbitMQ's
    /// `consumer_timeout`, a closed connection. Nobody asked the worker to stop, so it exits non-zero.
    StreamEnded,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Signal(name) => f.write_str(name),
            Cause::Requested => f.write_str("requested"),
            Cause::StreamEnded => f.write_str("stream ended"),
        }
    }
}

/// How a drain went. Every count covers the same window: from the drain's beginning to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// What began it.
    pub cause: Cause,
    /// Jobs completed.
    pub finished: u64,
    /// Jobs handed back to the broker (at the deadline, on a second signal, or by the worker).
    pub handed_back: u64,
    /// Hand-backs that failed (the callback returned an error) or never ran (the runtime was shutting down): the
    /// broker gives those jobs out again only after its own timeout.
    pub failed: u64,
    /// Jobs still held: 0 once the drain is done; more only in the line the watchdog prints when the flush budget
    /// runs out.
    pub unresolved: u64,
    /// From its beginning until the last job was completed or handed back.
    pub duration: Duration,
    /// Whether a second signal (or [`Drain::stop_now`](super::Drain::stop_now)) cut the grace short.
    pub forced: bool,
}

impl Summary {
    /// The process's exit code for this drain: 0 when everything was finished or handed back on request,
    /// [`EXIT_HAND_BACK_FAILED`] when a hand-back failed, [`EXIT_STREAM_ENDED`] when the broker ended the stream.
    pub fn exit_code(&self) -> i32 {
        if self.failed > 0 || self.unresolved > 0 {
            EXIT_HAND_BACK_FAILED
        } else if self.cause == Cause::StreamEnded {
            EXIT_STREAM_ENDED
        } else {
            0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drain: {} finished, {} handed back, {} failed", self.finished, self.handed_back, self.failed)?;
        if self.unresolved > 0 {
            write!(f, ", {} unresolved", self.unresolved)?;
        }
        write!(
            f,
            " in {} ms ({}{})",
            self.duration.as_millis(),
            self.cause,
            if self.forced { ", cut short" } else { "" }
        )
    }
}
