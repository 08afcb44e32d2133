//! The running accounts of a simulated run — capacity paid for, work done and thrown away, scale changes — and the
//! report row they add up to.
//!
//! Costs are integrated over time as the model advances, so they are exact for any pattern of pods and jobs rather
//! than estimated from the sampled timeline.

use crate::sim::report::{PolicyReport, WaitSummary};

#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// ∫ pods that exist (starting, ready, draining) dt.
    replica_seconds: f64,
    /// ∫ busy worker slots dt, wasted work included.
    busy_worker_seconds: f64,
    scale_events: u64,
    handed_back: u64,
    wasted_work_s: f64,
    max_replicas: u32,
    /// Jobs with at least one run cut short; a job handed back twice counts once here, twice in `handed_back`.
    interrupted_jobs: u64,
    /// Which pods a scale-down removes first, for the report.
    scale_down: &'static str,
    quieted_pods: u64,
    resumed_pods: u64,
    quiet_timeouts: u64,
}

impl Ledger {
    pub(super) fn starting_with(replicas: u32, idle_first: bool) -> Ledger {
        let scale_down = if idle_first { "idle-first" } else { "newest-first" };
        Ledger { max_replicas: replicas, scale_down, ..Ledger::default() }
    }

    /// `pods` pods existed and `busy_slots` slots worked for `elapsed_s` seconds.
    pub(super) fn accrue(&mut self, pods: usize, busy_slots: u64, elapsed_s: f64) {
        self.replica_seconds += pods as f64 * elapsed_s;
        self.busy_worker_seconds += busy_slots as f64 * elapsed_s;
    }

    /// spec.replicas was set from `from` to `to`; only a change is a scale event.
    pub(super) fn scaled(&mut self, from: u32, to: u32) {
        if from != to {
            self.scale_events += 1;
        }
        self.max_replicas = self.max_replicas.max(to);
    }

    /// A job was handed back after `worked_s` seconds of work that will be redone.
    pub(super) fn handed_back(&mut self, worked_s: f64) {
        self.handed_back += 1;
        self.wasted_work_s += worked_s;
    }

    /// A job's run was cut short for the first time.
    pub(super) fn interrupted_job(&mut self) {
        self.interrupted_jobs += 1;
    }

    /// `pods` pods were told to go quiet.
    pub(super) fn quieted(&mut self, pods: u32) {
        self.quieted_pods += u64::from(pods);
    }

    /// `pods` quiet pods were told to take jobs again.
    pub(super) fn resumed(&mut self, pods: u32) {
        self.resumed_pods += u64::from(pods);
    }

    /// `pods` quiet pods ran out of time with jobs in hand.
    pub(super) fn quiet_timed_out(&mut self, pods: u32) {
        self.quiet_timeouts += u64::from(pods);
    }

    /// The report row: `waits` are the final waits of the completed jobs, out of `total_jobs` in the trace.
    pub(super) fn report(&self, name: &str, waits: Vec<f64>, total_jobs: usize, concurrency: u32) -> PolicyReport {
        let jobs = waits.len();
        let waits = WaitSummary::of(waits);
        let paid_slot_seconds = self.replica_seconds * f64::from(concurrency);
        let utilization = if paid_slot_seconds > 0.0 { self.busy_worker_seconds / paid_slot_seconds } else { 0.0 };
        PolicyReport {
            name: name.to_owned(),
            jobs: jobs as u64,
            p50_wait_s: waits.p50_s,
            p95_wait_s: waits.p95_s,
            p99_wait_s: waits.p99_s,
            replica_seconds: self.replica_seconds,
            utilization,
            scale_events: self.scale_events,
            mean_wait_s: waits.mean_s,
            max_wait_s: waits.max_s,
            handed_back: self.handed_back,
            max_replicas: self.max_replicas,
            busy_worker_seconds: self.busy_worker_seconds,
            wasted_work_s: self.wasted_work_s,
            unfinished: total_jobs.saturating_sub(jobs) as u64,
            interrupted_jobs: self.interrupted_jobs,
            scale_down: self.scale_down.to_owned(),
            quieted_pods: self.quieted_pods,
            resumed_pods: self.resumed_pods,
            quiet_timeouts: self.quiet_timeouts,
        }
    }
}
