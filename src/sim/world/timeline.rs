//! The timeline of a simulated run, sampled at a fixed interval for plots.
//!
//! Samples are taken as the model advances rather than by replaying it afterwards, so a run costs one pass. The
//! sample at boundary `t_s` shows the state after everything that happened at `t_s` itself; it is recorded once
//! the model moves past `t_s` (or when the run finishes), because a scale request at exactly `t_s` may still come.

use serde::Serialize;

/// The world at one sample boundary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// A multiple of the sample interval.
    pub t_s: f64,
    /// Jobs in the queue, not yet started (or handed back and not yet restarted).
    pub waiting: u64,
    /// Jobs being worked on, on ready and draining pods.
    pub in_flight: u64,
    /// The Deployment's spec.replicas.
    pub replicas: u32,
    /// Pods that are ready and not draining.
    pub ready: u32,
    /// Pods working on at least one job, draining ones included.
    pub busy: u32,
    /// The longest wait (start − arrival) of the runs that started in (previous boundary, `t_s`]; 0 when none did.
    /// A run that is later handed back still counts at its start.
    pub wait_s: f64,
}

#[derive(Debug)]
pub(super) struct Timeline {
    every_s: f64,
    next_index: u64,
    longest_wait_since_last_s: f64,
    samples: Vec<Sample>,
}

impl Timeline {
    pub(super) fn new(every_s: f64) -> Timeline {
        Timeline { every_s, next_index: 0, longest_wait_since_last_s: 0.0, samples: Vec::new() }
    }

    /// Computed from the index rather than accumulated, so that boundaries do not drift over a long run.
    pub(super) fn next_boundary_s(&self) -> f64 {
        self.next_index as f64 * self.every_s
    }

    pub(super) fn note_start(&mut self, wait_s: f64) {
        self.longest_wait_since_last_s = self.longest_wait_since_last_s.max(wait_s);
    }

    /// The longest wait since the last sample, for the sample about to be recorded.
    pub(super) fn longest_wait_s(&self) -> f64 {
        self.longest_wait_since_last_s
    }

    pub(super) fn record(&mut self, sample: Sample) {
        self.samples.push(sample);
        self.next_index += 1;
        self.longest_wait_since_last_s = 0.0;
    }

    pub(super) fn into_samples(self) -> Vec<Sample> {
        self.samples
    }
}
