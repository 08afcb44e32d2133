//! The scheduled events of the simulation and the order in which they happen.
//!
//! Everything that happens at a known future time — a run ending, a grace period running out, a pod becoming
//! ready — is one event in a heap; arrivals come straight from the sorted trace. A total order on events makes
//! every run reproducible.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::pods::PodId;

#[derive(Debug, Clone, Copy)]
pub(super) enum EventKind {
    RunEnds { pod: PodId, run: u64 },
    GraceEnds { pod: PodId },
    PodReady { pod: PodId },
}

impl EventKind {
    /// Order among events at the same instant: a run that ends exactly at its pod's grace deadline has finished.
    fn rank(self) -> u8 {
        match self {
            EventKind::RunEnds { .. } => 0,
            EventKind::GraceEnds { .. } => 1,
            EventKind::PodReady { .. } => 2,
        }
    }
}

/// The events still to come, earliest first.
#[derive(Debug, Default)]
pub(super) struct Agenda {
    heap: BinaryHeap<Event>,
    next_seq: u64,
}

impl Agenda {
    pub(super) fn schedule(&mut self, at_s: f64, kind: EventKind) {
        self.heap.push(Event { at_s, seq: self.next_seq, kind });
        self.next_seq += 1;
    }

    /// When the earliest event happens.
    pub(super) fn next_at_s(&self) -> Option<f64> {
        self.heap.peek().map(|event| event.at_s)
    }

    pub(super) fn pop(&mut self) -> Option<EventKind> {
        self.heap.pop().map(|event| event.kind)
    }
}

/// A scheduled event; `seq` breaks the remaining ties in scheduling order so that runs are reproducible.
#[derive(Debug, Clone, Copy)]
struct Event {
    at_s: f64,
    seq: u64,
    kind: EventKind,
}

impl Ord for Event {
    /// Reversed, so that the max-heap `BinaryHeap` pops the earliest event first.
    fn cmp(&self, other: &Event) -> Ordering {
        other.at_s.total_cmp(&self.at_s).then(other.kind.rank().cmp(&self.kind.rank())).then(other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Event) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Event {}
