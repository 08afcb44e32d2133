//! The oracle: a replica schedule planned with the whole trace in hand, to start every job within `maxWait` for as
//! few replica-seconds as a simple clairvoyant planner can.
//!
//! It shows how close to the ideal a reactive policy gets. The plan is then run through the same simulated world as
//! every other policy, so its numbers pay the same pod start delay and drains. How it is planned:
//!
//! 1. **Deadlines.** Each job should start by `arrival + maxWait`. When `maxReplicas` makes that impossible, its
//!    deadline is instead its earliest start with every allowed replica running from the first moment.
//! 2. **Capacity, segment by segment.** Time is cut into segments of equal length. For each segment, in order, the
//!    planner picks the fewest worker slots that, kept constant, let the world's FIFO dispatch start every job
//!    waiting or arriving in the segment by its deadline — knowing every arrival and duration, and starting from
//!    where the previous segment left the queue and the slots. That uses the wait allowed to flatten bursts: a
//!    constant count with a queue is far cheaper than following every Poisson fluctuation. A segment never drops a
//!    slot whose job would outlast the termination grace period, so no planned scale-down loses work.
//! 3. **Replicas.** At second `t` the plan runs the most replicas any second in `[t, t + pod start delay]` needs:
//!    a replica needed within one start delay is kept (cheaper than starting it again, the ski-rental
//!    break-even), and one needed later is started exactly one start delay ahead. It may go to zero between
//!    bursts: the oracle is not bound by `minReplicas`.
//! 4. The planner tries segments of 30 s, 1, 2, 5 and 10 minutes and keeps the cheapest plan.
//!
//! Knowing its jobs, the oracle also knows which replicas are idle: its world removes idle replicas first (as
//! pod-deletion-cost lets a policy ask for).
//!
//! The plan is greedy, not a proven optimum: it is a reference point. The proven lower bound on any policy's
//! replica-seconds is the work itself, `Σ duration / concurrency`, which the scorecard reports next to it.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use super::super::trace::Job;
use super::super::world::{PolicyOutcome, World, WorldSettings};

/// The segment lengths the planner tries, in seconds.
const SEGMENTS_S: [f64; 5] = [30.0, 60.0, 120.0, 300.0, 600.0];

/// Seconds as a totally ordered heap key.
#[derive(Debug, Clone, Copy, PartialEq)]
struct At(f64);

impl Eq for At {}

impl PartialOrd for At {
    fn partial_cmp(&self, other: &At) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for At {
    fn cmp(&self, other: &At) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The oracle's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Planned start of each job, in arrival order.
    pub starts: Vec<f64>,
    /// (time, replicas) whenever the planned count changes, from t = 0.
    pub changes: Vec<(f64, u32)>,
    /// The segment length the plan was made with.
    pub segment_s: f64,
}

impl Plan {
    /// The plan's replica-seconds, as planned (the world adds drains).
    pub fn replica_seconds(&self, end_s: f64) -> f64 {
        let mut total = 0.0;
        for (i, &(t, replicas)) in self.changes.iter().enumerate() {
            let until = self.changes.get(i + 1).map_or(end_s, |&(next, _)| next);
            total += f64::from(replicas) * (until - t).max(0.0);
        }
        total
    }
}

/// Plans the replicas for `jobs` so that each starts within `max_wait_s` of its arrival, with the world's pod start
/// delay, concurrency, grace period and initial replicas, never above `max_replicas`.
pub fn plan(jobs: &[Job], max_wait_s: f64, settings: &WorldSettings, max_replicas: u32) -> Plan {
    let mut jobs = jobs.to_vec();
    jobs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    let max_replicas = max_replicas.max(settings.initial_replicas).max(1);
    let deadlines: Vec<f64> = earliest_starts(&jobs, settings, max_replicas)
        .into_iter()
        .zip(&jobs)
        .map(|(earliest, job)| (job.arrival_s + max_wait_s).max(earliest))
        .collect();
    let end_s = jobs.iter().map(|j| j.arrival_s + max_wait_s + j.duration_s).fold(0.0, f64::max);
    SEGMENTS_S
        .iter()
        .map(|&segment_s| plan_in_segments(&jobs, &deadlines, segment_s, settings, max_replicas))
        .min_by(|a, b| a.replica_seconds(end_s).total_cmp(&b.replica_seconds(end_s)))
        .unwrap_or(Plan { starts: Vec::new(), changes: vec![(0.0, 0)], segment_s: 0.0 })
}

/// The queue and the worker slots at one moment of planning.
#[derive(Debug, Clone)]
struct Slots {
    /// When each slot is (or was) free, earliest first.
    free_at: BinaryHeap<Reverse<At>>,
    /// The first job not started yet; jobs start in arrival order.
    next_job: usize,
}

impl Slots {
    /// Brings the pool to `count` slots at `now`: new ones are free once a pod can be ready; surplus ones go idle
    /// first, then those closest to finishing (their job completes, the slot does not come back).
    fn resize(&mut self, count: usize, now: f64, ready_from: f64) {
        while self.free_at.len() > count {
            self.free_at.pop();
        }
        while self.free_at.len() < count {
            self.free_at.push(Reverse(At(now.max(ready_from))));
        }
    }

    /// Checks that every job before `last_job` starts by its deadline with the slots as they are.
    fn meets_deadlines(mut self, jobs: &[Job], last_job: usize, deadlines: &[f64]) -> bool {
        while self.next_job < last_job {
            let Some(Reverse(At(free))) = self.free_at.pop() else {
                return false;
            };
            let job = &jobs[self.next_job];
            let start = free.max(job.arrival_s);
            if start > deadlines[self.next_job] + 1e-9 {
                return false;
            }
            self.free_at.push(Reverse(At(start + job.duration_s)));
            self.next_job += 1;
        }
        true
    }

    /// Starts jobs in order while they can start before `until`, recording their starts.
    fn run_until(&mut self, jobs: &[Job], until: f64, starts: &mut Vec<f64>) {
        while let Some(job) = jobs.get(self.next_job) {
            let Some(&Reverse(At(free))) = self.free_at.peek() else {
                return;
            };
            let start = free.max(job.arrival_s);
            if start >= until {
                return;
            }
            self.free_at.pop();
            self.free_at.push(Reverse(At(start + job.duration_s)));
            starts.push(start);
            self.next_job += 1;
        }
    }
}

/// Step 2 with one segment length, then step 3.
fn plan_in_segments(
    jobs: &[Job],
    deadlines: &[f64],
    segment_s: f64,
    settings: &WorldSettings,
    max_replicas: u32,
) -> Plan {
    let concurrency = settings.concurrency.max(1) as usize;
    let most_slots = max_replicas as usize * concurrency;
    let mut slots = Slots { free_at: BinaryHeap::new(), next_job: 0 };
    let mut starts = Vec::with_capacity(jobs.len());
    slots.resize(settings.initial_replicas as usize * concurrency, 0.0, 0.0);
    // Slots needed per second, as segments are planned.
    let mut needed: Vec<u32> = Vec::new();
    let mut t0 = 0.0;
    while slots.next_job < jobs.len() {
        let t1 = t0 + segment_s;
        let last_job = jobs.partition_point(|j| j.arrival_s < t1);
        // Slots whose job would outlast the grace period if removed now stay.
        let keep = slots.free_at.iter().filter(|Reverse(At(free))| *free > t0 + settings.termination_grace_s).count();
        let feasible = |count: usize| {
            let mut trial = slots.clone();
            trial.resize(count, t0, settings.pod_start_delay_s);
            trial.meets_deadlines(jobs, last_job, deadlines)
        };
        // The fewest slots that meet every deadline (or all of them, when even that cannot).
        let (mut low, mut high) = (keep, most_slots.max(keep));
        while low < high {
            let middle = (low + high) / 2;
            if feasible(middle) { high = middle } else { low = middle + 1 }
        }
        slots.resize(low, t0, settings.pod_start_delay_s);
        slots.run_until(jobs, t1, &mut starts);
        let replicas = u32::try_from(low.div_ceil(concurrency)).unwrap_or(u32::MAX);
        let (first, past) = (t0 as usize, t1 as usize);
        needed.resize(past.max(needed.len()), 0);
        needed[first..past].fill(replicas);
        t0 = t1;
    }
    // Past the last segment, the slots still finishing their jobs.
    let last_end = slots.free_at.iter().map(|Reverse(At(free))| *free).fold(t0, f64::max);
    let busy_after = slots.free_at.iter().filter(|Reverse(At(free))| *free > t0).count();
    if busy_after > 0 {
        needed.resize(last_end.ceil() as usize, 0);
        let replicas = u32::try_from(busy_after.div_ceil(concurrency)).unwrap_or(u32::MAX);
        needed[t0 as usize..].fill(replicas);
    }
    needed.push(0);
    let lookahead = settings.pod_start_delay_s.ceil().max(0.0) as usize;
    let mut changes: Vec<(f64, u32)> = Vec::new();
    for (second, &count) in window_max(&needed, lookahead).iter().enumerate() {
        if changes.last().is_none_or(|&(_, last)| last != count) {
            changes.push((second as f64, count));
        }
    }
    Plan { starts, changes, segment_s }
}

/// The earliest each job can start under FIFO with `max_replicas` running: the initial replicas from t = 0, the
/// rest from one pod start delay on.
fn earliest_starts(jobs: &[Job], settings: &WorldSettings, max_replicas: u32) -> Vec<f64> {
    let concurrency = settings.concurrency.max(1);
    let initial = settings.initial_replicas.min(max_replicas);
    let mut free_slots: BinaryHeap<Reverse<At>> = BinaryHeap::new();
    for replica in 0..max_replicas {
        let ready = if replica < initial { 0.0 } else { settings.pod_start_delay_s };
        for _ in 0..concurrency {
            free_slots.push(Reverse(At(ready)));
        }
    }
    jobs.iter()
        .map(|job| {
            let free = free_slots.pop().map_or(job.arrival_s, |Reverse(At(free))| free);
            let start = free.max(job.arrival_s);
            free_slots.push(Reverse(At(start + job.duration_s)));
            start
        })
        .collect()
}

/// Step 3's look-ahead: for each second `t`, the largest value over `[t, t + lookahead]`.
fn window_max(values: &[u32], lookahead: usize) -> Vec<u32> {
    let mut out = vec![0; values.len()];
    // Indices of candidates for the maximum, values decreasing from front to back.
    let mut candidates: VecDeque<usize> = VecDeque::new();
    for t in (0..values.len()).rev() {
        while candidates.back().is_some_and(|&i| values[i] <= values[t]) {
            candidates.pop_back();
        }
        candidates.push_back(t);
        while candidates.front().is_some_and(|&i| i > t + lookahead) {
            candidates.pop_front();
        }
        out[t] = candidates.front().map_or(0, |&i| values[i]);
    }
    out
}

/// Plans the replicas for `jobs` and runs the plan through the world.
pub fn run(
    jobs: Vec<Job>,
    max_wait_s: f64,
    settings: WorldSettings,
    max_replicas: u32,
    progress: &mut dyn FnMut(f64),
) -> PolicyOutcome {
    let plan = plan(&jobs, max_wait_s, &settings, max_replicas);
    let mut world = World::new(jobs, WorldSettings { idle_first: true, ..settings });
    let last_change_s = plan.changes.last().map_or(0.0, |&(t, _)| t).max(1.0);
    for &(t, replicas) in &plan.changes {
        world.set_replicas(t, replicas);
        progress((t / last_change_s).min(1.0));
    }
    // A world with work left but no replica (only if the plan was capped) would never finish: keep one.
    if !world.is_done() && world.replicas() == 0 {
        world.set_replicas(last_change_s, 1);
    }
    world.advance_to(f64::INFINITY);
    world.finish(super::Baseline::Oracle.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(list: &[(f64, f64)]) -> Vec<Job> {
        list.iter().map(|&(arrival_s, duration_s)| Job { arrival_s, duration_s }).collect()
    }

    fn settings(initial_replicas: u32, pod_start_delay_s: f64) -> WorldSettings {
        WorldSettings { initial_replicas, pod_start_delay_s, ..WorldSettings::default() }
    }

    #[test]
    fn picks_the_fewest_slots_per_segment_and_starts_replicas_one_start_delay_ahead() {
        // Three 10 s jobs at t = 100 with maxWait 15. One slot would start the third at 120, too late; two start
        // them at 100, 100 and 110. With 30 s segments: no slot needed before [90, 120), two in it, none after;
        // the replicas start 30 s ahead, at 60, and the initial one goes at once: 2 × 60 = 120 replica-seconds,
        // where 60 s segments ([60, 120) with two, started at 30) would take 180.
        let plan = plan(&jobs(&[(100.0, 10.0), (100.0, 10.0), (100.0, 10.0)]), 15.0, &settings(1, 30.0), 10);
        assert_eq!(plan.starts, vec![100.0, 100.0, 110.0]);
        assert_eq!(plan.changes, vec![(0.0, 0), (60.0, 2), (120.0, 0)]);
        assert_eq!(plan.segment_s, 30.0);
        assert_eq!(plan.replica_seconds(200.0), 120.0);
    }

    #[test]
    fn keeps_a_replica_through_a_short_gap_and_drops_it_through_a_long_one() {
        // No initial replica, maxWait 0: one replica is needed in [30, 90) for the jobs at 50 and 80, and in
        // [180, 210) for the job at 190. The 60 s gap from 90 is longer than the 30 s start delay.
        let plan = plan(&jobs(&[(50.0, 10.0), (80.0, 10.0), (190.0, 10.0)]), 0.0, &settings(0, 30.0), 10);
        assert_eq!(plan.starts, vec![50.0, 80.0, 190.0]);
        assert_eq!(plan.changes, vec![(0.0, 1), (90.0, 0), (150.0, 1), (210.0, 0)]);
    }

    #[test]
    fn a_capped_plan_meets_the_best_start_times_the_cap_allows() {
        let burst: Vec<(f64, f64)> = (0..50).map(|_| (100.0, 20.0)).collect();
        let plan = plan(&jobs(&burst), 5.0, &settings(1, 30.0), 4);
        assert!(plan.changes.iter().all(|&(_, replicas)| replicas <= 4), "{:?}", plan.changes);
        // Four replicas for 50 jobs of 20 s: rounds of four from 100, the last job (the second of the thirteenth
        // round) at 100 + 12 × 20.
        assert_eq!(plan.starts.last(), Some(&340.0));
    }

    #[test]
    fn the_world_running_the_plan_meets_max_wait() {
        for (name, max_wait) in [("spike", 60.0), ("steady", 30.0), ("heavy-tail", 45.0)] {
            let trace = crate::sim::trace::builtin(name).expect("built-in trace");
            let outcome = run(trace, max_wait, WorldSettings::default(), 1_000, &mut |_| {});
            assert_eq!(outcome.report.unfinished, 0, "{name}");
            assert!(outcome.report.max_wait_s <= max_wait + 1e-6, "{name}: max wait {}", outcome.report.max_wait_s);
        }
    }

    #[test]
    fn window_max_looks_ahead_inclusively() {
        assert_eq!(window_max(&[1, 0, 0, 3, 0, 0, 0], 2), vec![1, 3, 3, 3, 0, 0, 0]);
        assert_eq!(window_max(&[2, 1], 0), vec![2, 1]);
    }
}
