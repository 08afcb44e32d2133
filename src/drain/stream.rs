//! `drain.jobs(stream)`: the receive loop for consumers that are a `Stream` (lapin, Google's Pub/Sub, rdkafka's
//! `StreamConsumer::stream`), with the end of the stream reported as the broker's doing.
//!
//! Behind the `stream` feature (futures-core): the plain `drain` feature stays tokio and signal-hook only.

use std::fmt;
use std::pin::Pin;

use futures_core::Stream;

use super::{Drain, Permit};

/// Jobs from a stream; [`Drain::jobs`] makes one.
pub struct Jobs<S> {
    drain: Drain,
    stream: S,
}

impl<S> fmt::Debug for Jobs<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jobs").field("drain", &self.drain).finish_non_exhaustive()
    }
}

impl<S: Stream + Unpin> Jobs<S> {
    /// The next item with its slot, as [`Drain::next_job`]; `None` once intake stops or the stream ends, and an
    /// ended stream begins the drain with [`Cause::StreamEnded`](super::Cause::StreamEnded).
    pub async fn next(&mut self) -> Option<Permit<S::Item>> {
        let stream = &mut self.stream;
        let next = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx));
        let permit = self.drain.next_job(next).await?.transpose();
        if permit.is_none() {
            self.drain.stream_ended();
        }
        permit
    }

    /// The stream back, say to hand back what it still buffers once intake has stopped.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl Drain {
    /// Wraps a consumer `stream`: `while let Some(permit) = jobs.next().await { … }`.
    pub fn jobs<S: Stream + Unpin>(&self, stream: S) -> Jobs<S> {
        Jobs { drain: self.clone(), stream }
    }
}
