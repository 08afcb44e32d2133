//! The simulated queue and Deployment: a pure, deterministic discrete-event model of pods consuming a FIFO queue.
//!
//! `queue-scaler simulate` drives this model with the real agent loop, and comparisons with the HPA, KEDA or a
//! threshold loop run on it too, so it must be faithful where autoscalers differ: new pods consume only after a
//! start delay; a scale-down removes pods in the ReplicaSet controller's order (or idle-first, as pod-deletion-cost
//! achieves); a removed pod drains as the drain library does, finishing what fits in the grace period and handing
//! the rest back to the front of the queue, its partial work wasted. Free slots take jobs in the order they became
//! free, as a broker round-robins over waiting consumers, so no pod is favoured. With `scaleDown.quiet` the agent
//! first quiets the pods it means to remove ([`World::quiet`]): they stay replicas, take no new job, and are removed
//! first once the count is lowered — or take jobs again when resumed ([`World::resume_quiet`]).
//!
//! Time is `f64` seconds since the start and moves only through [`World::advance_to`] and [`World::set_replicas`].
//! Events at the same instant are handled in a fixed order — job completions, then grace deadlines (a job that ends
//! exactly at its deadline made it), then pods becoming ready, then arrivals — so every run is reproducible.

mod events;
mod ledger;
mod pods;
#[cfg(test)]
mod properties;
mod queue;
#[cfg(test)]
mod quiet_tests;
mod settings;
#[cfg(test)]
mod tests;
mod timeline;

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::report::PolicyReport;
use super::trace::Job;
use events::{Agenda, EventKind};
use ledger::Ledger;
use pods::{Phase, Pod, PodId, Run, quiet_order, removal_order};
use queue::Queue;
pub use settings::{SettingsError, Stall, WorldSettings};
pub use timeline::Sample;
use timeline::Timeline;

/// What a queue and a Deployment would report at one instant: what a simulated source and target read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub now_s: f64,
    /// Jobs in the queue, not being worked on.
    pub waiting: u64,
    /// Jobs being worked on (unacknowledged), on ready and draining pods.
    pub in_flight: u64,
    /// Pods ready and not draining.
    pub ready_pods: u32,
    /// Pods created and not yet ready.
    pub starting_pods: u32,
    /// Pods removed by a scale-down that are still finishing their jobs.
    pub draining_pods: u32,
    /// Pods told to go quiet: still replicas, finishing their jobs, taking no new one.
    pub quiet_pods: u32,
    /// How long the oldest waiting job has waited; `None` when none waits or the queue does not tell
    /// ([`WorldSettings::reports_oldest_age`]).
    pub oldest_wait_s: Option<f64>,
    /// Jobs that have arrived so far.
    pub arrived: u64,
    /// Jobs completed so far.
    pub completed: u64,
}

/// One policy's finished run: the report row and the timeline for plots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyOutcome {
    pub report: PolicyReport,
    pub timeline: Vec<Sample>,
}

/// The simulated queue and Deployment; see the module documentation for the semantics.
#[derive(Debug)]
pub struct World {
    /// Sorted by arrival; the queue, runs and events refer to jobs by index.
    jobs: Vec<Job>,
    settings: WorldSettings,
    now_s: f64,
    spec_replicas: u32,
    /// Pods that exist; a pod that is gone is removed, which makes its pending events stale.
    pods: BTreeMap<PodId, Pod>,
    next_pod_id: PodId,
    next_run_id: u64,
    agenda: Agenda,
    /// One entry per free slot of a ready pod, oldest first. Entries of pods that stopped being ready are stale and
    /// skipped: a pod never becomes ready again.
    free_slots: VecDeque<PodId>,
    queue: Queue,
    in_flight: u64,
    /// The final wait of each completed job.
    waits: Vec<f64>,
    /// Per job: whether a run of it was ever cut short by its pod's removal.
    interrupted: Vec<bool>,
    ledger: Ledger,
    timeline: Timeline,
}

impl World {
    /// A world at t = 0 with `initial_replicas` ready pods and the jobs arriving at t = 0 already queued.
    ///
    /// Jobs may come in any order; they should have finite arrivals ≥ 0 and finite durations ≥ 0, as every trace
    /// from [`super::trace`] has. Settings [`WorldSettings::validate`] would reject are replaced by their defaults.
    pub fn new(mut jobs: Vec<Job>, settings: WorldSettings) -> World {
        jobs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
        let settings = settings.into_range();
        let job_count = jobs.len();
        let mut world = World {
            jobs,
            now_s: 0.0,
            spec_replicas: settings.initial_replicas,
            pods: BTreeMap::new(),
            next_pod_id: 0,
            next_run_id: 0,
            agenda: Agenda::default(),
            free_slots: VecDeque::new(),
            queue: Queue::default(),
            in_flight: 0,
            waits: Vec::new(),
            interrupted: vec![false; job_count],
            ledger: Ledger::starting_with(settings.initial_replicas, settings.idle_first),
            timeline: Timeline::new(settings.sample_every_s),
            settings,
        };
        for _ in 0..world.settings.initial_replicas {
            let id = world.add_pod(Phase::Ready);
            world.open_slots(id);
        }
        world.advance_to(0.0);
        world
    }

    /// Processes every event up to and including `t`, in time order, recording every sample boundary passed.
    ///
    /// Time never goes back: a `t` before the current time, or NaN, changes nothing.
    /// `f64::INFINITY` processes every pending event and leaves the clock at the last one.
    pub fn advance_to(&mut self, t: f64) {
        while let Some(at_s) = self.next_event_at().filter(|&at_s| at_s <= t) {
            self.move_clock(at_s);
            self.handle_next_event();
            self.dispatch();
        }
        self.move_clock(t);
    }

    /// Advances to `t`, then sets spec.replicas: new pods start now and are ready after the start delay; surplus
    /// pods are removed in scale-down order (see [`WorldSettings::idle_first`]) and drain.
    pub fn set_replicas(&mut self, t: f64, replicas: u32) {
        self.advance_to(t);
        self.ledger.scaled(self.spec_replicas, replicas);
        self.spec_replicas = replicas;

        let active: Vec<PodId> = removal_order(&self.pods, self.now_s, self.settings.idle_first);
        let active_count = u32::try_from(active.len()).unwrap_or(u32::MAX);
        for _ in active_count..replicas {
            let id = self.add_pod(Phase::Starting);
            self.agenda.schedule(self.now_s + self.settings.pod_start_delay_s, EventKind::PodReady { pod: id });
        }
        let surplus = active_count.saturating_sub(replicas) as usize;
        for id in active.into_iter().take(surplus) {
            self.remove_pod(id);
        }
        // A zero start delay or grace period takes effect at this very instant.
        self.advance_to(self.now_s);
    }

    /// The Deployment's spec.replicas as last set.
    pub fn replicas(&self) -> u32 {
        self.spec_replicas
    }

    /// Advances to `t`, then tells up to `count` ready pods to go quiet, chosen as the agent chooses them (idle first,
    /// then fewest jobs, then youngest): they keep their jobs and take no new one. Returns how many went quiet.
    pub fn quiet(&mut self, t: f64, count: u32) -> u32 {
        self.advance_to(t);
        let chosen: Vec<PodId> = quiet_order(&self.pods).into_iter().take(count as usize).collect();
        for id in &chosen {
            if let Some(pod) = self.pods.get_mut(id) {
                pod.phase = Phase::Quiet;
            }
        }
        // Their free slots must not outlive them: a resumed pod opens its slots afresh.
        self.free_slots.retain(|id| !chosen.contains(id));
        let quieted = u32::try_from(chosen.len()).unwrap_or(u32::MAX);
        self.ledger.quieted(quieted);
        quieted
    }

    /// The quiet pods that still hold jobs, and how many jobs they hold.
    pub fn quiet_load(&self) -> (u32, u64) {
        let busy = self.pods.values().filter(|pod| pod.phase == Phase::Quiet && !pod.runs.is_empty());
        busy.fold((0, 0), |(pods, jobs), pod| (pods + 1, jobs + pod.runs.len() as u64))
    }

    /// Advances to `t`, then every quiet pod takes jobs again. Returns how many were resumed.
    pub fn resume_quiet(&mut self, t: f64) -> u32 {
        self.advance_to(t);
        let quiet: Vec<PodId> =
            self.pods.iter().filter(|(_, pod)| pod.phase == Phase::Quiet).map(|(&id, _)| id).collect();
        for &id in &quiet {
            let Some(pod) = self.pods.get_mut(&id) else {
                continue;
            };
            pod.phase = Phase::Ready;
            let free = (self.settings.concurrency as usize).saturating_sub(pod.runs.len());
            self.free_slots.extend(std::iter::repeat_n(id, free));
        }
        let resumed = u32::try_from(quiet.len()).unwrap_or(u32::MAX);
        self.ledger.resumed(resumed);
        self.dispatch();
        resumed
    }

    /// `pods` quiet pods still held jobs when the agent's `quietTimeout` ran out; they are removed anyway.
    pub fn note_quiet_timeout(&mut self, pods: u32) {
        self.ledger.quiet_timed_out(pods);
    }

    /// The state at the current time.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            now_s: self.now_s,
            waiting: self.queue.len() as u64,
            in_flight: self.in_flight,
            ready_pods: 0,
            starting_pods: 0,
            draining_pods: 0,
            arrived: self.queue.arrived() as u64,
            completed: self.waits.len() as u64,
            quiet_pods: 0,
            oldest_wait_s: None,
        };
        if self.settings.reports_oldest_age {
            snapshot.oldest_wait_s = self.queue.oldest(|job| self.jobs[job].arrival_s).map(|at_s| self.now_s - at_s);
        }
        for pod in self.pods.values() {
            match pod.phase {
                Phase::Starting => snapshot.starting_pods += 1,
                Phase::Ready => snapshot.ready_pods += 1,
                Phase::Quiet => snapshot.quiet_pods += 1,
                Phase::Draining => snapshot.draining_pods += 1,
            }
        }
        snapshot
    }

    /// Every job has arrived and completed.
    pub fn is_done(&self) -> bool {
        self.waits.len() == self.jobs.len()
    }

    /// When the last job arrives; 0 for an empty trace.
    pub fn last_arrival_s(&self) -> f64 {
        self.jobs.last().map_or(0.0, |job| job.arrival_s)
    }

    /// Ends the run at the current time: the report row (named `policy_name`) and the timeline, including the
    /// sample at the current time when it falls on a boundary. Jobs not completed by now count as unfinished.
    pub fn finish(mut self, policy_name: &str) -> PolicyOutcome {
        while self.timeline.next_boundary_s() <= self.now_s {
            self.record_sample();
        }
        let waits = std::mem::take(&mut self.waits);
        let report = self.ledger.report(policy_name, waits, self.jobs.len(), self.settings.concurrency);
        PolicyOutcome { report, timeline: self.timeline.into_samples() }
    }

    fn next_event_at(&self) -> Option<f64> {
        let scheduled = self.agenda.next_at_s();
        let arrival = self.next_arrival_s();
        match (scheduled, arrival) {
            (Some(scheduled), Some(arrival)) => Some(scheduled.min(arrival)),
            (scheduled, arrival) => scheduled.or(arrival),
        }
    }

    fn next_arrival_s(&self) -> Option<f64> {
        self.jobs.get(self.queue.arrived()).map(|job| job.arrival_s)
    }

    /// Handles the earliest event; a scheduled event goes before an arrival at the same instant.
    fn handle_next_event(&mut self) {
        let arrival = self.next_arrival_s();
        let scheduled_first = self.agenda.next_at_s().is_some_and(|at_s| arrival.is_none_or(|arrival| at_s <= arrival));
        if !scheduled_first {
            self.queue.arrive();
            return;
        }
        let Some(event) = self.agenda.pop() else {
            return;
        };
        match event {
            EventKind::RunEnds { pod, run } => self.end_run(pod, run),
            EventKind::GraceEnds { pod } => self.end_grace(pod),
            EventKind::PodReady { pod } => self.make_ready(pod),
        }
    }

    /// Moves the clock forward to `to`, accruing pod and busy-slot time and recording the samples passed.
    fn move_clock(&mut self, to: f64) {
        if !(to > self.now_s && to.is_finite()) {
            return;
        }
        while self.timeline.next_boundary_s() < to {
            self.accrue_until(self.timeline.next_boundary_s());
            self.record_sample();
        }
        self.accrue_until(to);
    }

    fn accrue_until(&mut self, t: f64) {
        self.ledger.accrue(self.pods.len(), self.in_flight, t - self.now_s);
        self.now_s = t;
    }

    fn record_sample(&mut self) {
        let snapshot = self.snapshot();
        let busy = self.pods.values().filter(|pod| !pod.runs.is_empty()).count();
        self.timeline.record(Sample {
            t_s: self.timeline.next_boundary_s(),
            waiting: snapshot.waiting,
            in_flight: snapshot.in_flight,
            replicas: self.spec_replicas,
            ready: snapshot.ready_pods,
            busy: u32::try_from(busy).unwrap_or(u32::MAX),
            wait_s: self.timeline.longest_wait_s(),
        });
    }

    /// Gives waiting jobs to free slots, longest-free slot first.
    fn dispatch(&mut self) {
        while !self.queue.is_empty()
            && let Some(pod) = self.take_free_slot()
            && let Some(job) = self.queue.pop()
        {
            self.start_run(pod, job);
        }
    }

    fn take_free_slot(&mut self) -> Option<PodId> {
        while let Some(id) = self.free_slots.pop_front() {
            if self.pods.get(&id).is_some_and(|pod| pod.phase == Phase::Ready) {
                return Some(id);
            }
        }
        None
    }

    fn start_run(&mut self, pod_id: PodId, job: usize) {
        let Some(pod) = self.pods.get_mut(&pod_id) else {
            return;
        };
        let ends_s = Stall::work_ends_at(self.now_s, self.jobs[job].duration_s, &self.settings.stalls);
        let run = Run { id: self.next_run_id, job, started_s: self.now_s, ends_s };
        self.next_run_id += 1;
        pod.runs.push(run);
        self.in_flight += 1;
        self.timeline.note_start(run.started_s - self.jobs[job].arrival_s);
        self.agenda.schedule(run.ends_s, EventKind::RunEnds { pod: pod_id, run: run.id });
    }

    fn end_run(&mut self, pod_id: PodId, run_id: u64) {
        let Some(pod) = self.pods.get_mut(&pod_id) else {
            return;
        };
        let Some(index) = pod.runs.iter().position(|run| run.id == run_id) else {
            return;
        };
        let run = pod.runs.swap_remove(index);
        self.in_flight -= 1;
        self.waits.push(run.started_s - self.jobs[run.job].arrival_s);
        match pod.phase {
            Phase::Ready => self.free_slots.push_back(pod_id),
            Phase::Draining if pod.runs.is_empty() => {
                self.pods.remove(&pod_id);
            }
            Phase::Draining | Phase::Starting | Phase::Quiet => {}
        }
    }

    /// The grace period of a draining pod is over: its unfinished jobs go back to the front of the queue, oldest
    /// arrival first, their partial work wasted, and the pod is gone.
    fn end_grace(&mut self, pod_id: PodId) {
        if !self.pods.get(&pod_id).is_some_and(|pod| pod.phase == Phase::Draining) {
            return;
        }
        let Some(pod) = self.pods.remove(&pod_id) else {
            return;
        };
        let mut jobs: Vec<usize> = Vec::with_capacity(pod.runs.len());
        for run in &pod.runs {
            self.ledger.handed_back(self.now_s - run.started_s);
            self.in_flight -= 1;
            if !std::mem::replace(&mut self.interrupted[run.job], true) {
                self.ledger.interrupted_job();
            }
            jobs.push(run.job);
        }
        jobs.sort_unstable();
        self.queue.hand_back(&jobs);
    }

    fn make_ready(&mut self, pod_id: PodId) {
        if let Some(pod) = self.pods.get_mut(&pod_id)
            && pod.phase == Phase::Starting
        {
            pod.phase = Phase::Ready;
            self.open_slots(pod_id);
        }
    }

    fn add_pod(&mut self, phase: Phase) -> PodId {
        let id = self.next_pod_id;
        self.next_pod_id += 1;
        self.pods.insert(id, Pod::new(phase));
        id
    }

    fn open_slots(&mut self, pod_id: PodId) {
        for _ in 0..self.settings.concurrency {
            self.free_slots.push_back(pod_id);
        }
    }

    /// A pod with nothing in flight is gone at once; a busy one drains until its jobs end or its grace runs out.
    fn remove_pod(&mut self, pod_id: PodId) {
        let Some(pod) = self.pods.get_mut(&pod_id) else {
            return;
        };
        if pod.runs.is_empty() {
            self.pods.remove(&pod_id);
        } else {
            pod.phase = Phase::Draining;
            let deadline_s = self.now_s + self.settings.termination_grace_s;
            self.agenda.schedule(deadline_s, EventKind::GraceEnds { pod: pod_id });
        }
    }
}
