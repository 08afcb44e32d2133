//! The simulated Deployment's pods: their phases, the jobs each runs, and which pods a scale-down removes first.
//!
//! Which pod goes on scale-down decides whether work is lost, so the order is modelled on Kubernetes' ReplicaSet
//! controller rather than picked for convenience.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Pods are numbered in creation order, so a larger id is a newer pod.
pub(super) type PodId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Created, not yet consuming (scheduling, image pull, start-up, readiness).
    Starting,
    /// Consuming: takes a waiting job whenever one of its slots is free.
    Ready,
    /// Told to go quiet before a scale-down (`scaleDown.quiet`): still a replica, takes nothing new, finishes what
    /// it has and stays until the count is lowered, or takes jobs again when resumed.
    Quiet,
    /// Removed by a scale-down: takes nothing new, finishes or hands back what it has, then is gone.
    Draining,
}

/// One attempt at a job on one pod; a handed-back job gets a new run, with a new id, when it is retried.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    pub(super) id: u64,
    /// Index of the job in the world's arrival-sorted jobs.
    pub(super) job: usize,
    pub(super) started_s: f64,
    pub(super) ends_s: f64,
}

#[derive(Debug)]
pub(super) struct Pod {
    pub(super) phase: Phase,
    pub(super) runs: Vec<Run>,
}

impl Pod {
    pub(super) fn new(phase: Phase) -> Pod {
        Pod { phase, runs: Vec::new() }
    }

    fn remaining_work_s(&self, now_s: f64) -> f64 {
        self.runs.iter().map(|run| run.ends_s - now_s).sum()
    }
}

/// The pods a scale-down may remove (every pod not already draining), the first to go first.
///
/// Default, the ReplicaSet controller's order when no pod-deletion-cost is set: pods not yet ready first, then
/// ready pods, newest first within each group, whether busy or not. With `idle_first`, what queue-scaler's
/// idle-first scale-down achieves through pod-deletion-cost: pods not yet ready, then idle ready pods, then busy
/// pods with the least remaining work first (summed over their slots); newest first among equals. Either way quiet
/// pods come right after the pods not yet ready: the agent gave them the lowest deletion cost.
pub(super) fn removal_order(pods: &BTreeMap<PodId, Pod>, now_s: f64, idle_first: bool) -> Vec<PodId> {
    let mut candidates: Vec<(PodId, &Pod)> =
        pods.iter().filter(|(_, pod)| pod.phase != Phase::Draining).map(|(&id, pod)| (id, pod)).collect();
    candidates.sort_by(|(a_id, a), (b_id, b)| {
        let by_group = if idle_first {
            idle_first_group(a)
                .cmp(&idle_first_group(b))
                .then(a.remaining_work_s(now_s).total_cmp(&b.remaining_work_s(now_s)))
        } else {
            readiness_group(a).cmp(&readiness_group(b))
        };
        by_group.then(newest_first(*a_id, *b_id))
    });
    candidates.into_iter().map(|(id, _)| id).collect()
}

fn readiness_group(pod: &Pod) -> u8 {
    match pod.phase {
        Phase::Starting => 0,
        Phase::Quiet => 1,
        Phase::Ready | Phase::Draining => 2,
    }
}

fn idle_first_group(pod: &Pod) -> u8 {
    match (pod.phase, pod.runs.is_empty()) {
        (Phase::Starting, _) => 0,
        (Phase::Quiet, _) => 1,
        (_, true) => 2,
        (_, false) => 3,
    }
}

/// The ready pods to quiet for a scale-down, the first to quiet first: as the agent picks them, idle first, then
/// fewest jobs in flight, then youngest.
pub(super) fn quiet_order(pods: &BTreeMap<PodId, Pod>) -> Vec<PodId> {
    let mut ready: Vec<(PodId, usize)> =
        pods.iter().filter(|(_, pod)| pod.phase == Phase::Ready).map(|(&id, pod)| (id, pod.runs.len())).collect();
    ready.sort_by(|(a_id, a_jobs), (b_id, b_jobs)| a_jobs.cmp(b_jobs).then(newest_first(*a_id, *b_id)));
    ready.into_iter().map(|(id, _)| id).collect()
}

fn newest_first(a: PodId, b: PodId) -> Ordering {
    b.cmp(&a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy_until(ends_s: &[f64]) -> Pod {
        let runs = ends_s
            .iter()
            .enumerate()
            .map(|(i, &ends_s)| Run { id: i as u64, job: i, started_s: 0.0, ends_s })
            .collect();
        Pod { phase: Phase::Ready, runs }
    }

    /// Pods 0, 1 and 3 busy (until t = 60, t = 15, and t = 20 in two slots), 2 idle, 4 draining, 5 and 6 starting.
    fn mixed_pods() -> BTreeMap<PodId, Pod> {
        let mut draining = busy_until(&[30.0]);
        draining.phase = Phase::Draining;
        BTreeMap::from([
            (0, busy_until(&[60.0])),
            (1, busy_until(&[15.0])),
            (2, Pod::new(Phase::Ready)),
            (3, busy_until(&[20.0, 20.0])),
            (4, draining),
            (5, Pod::new(Phase::Starting)),
            (6, Pod::new(Phase::Starting)),
        ])
    }

    #[test]
    fn the_default_order_removes_starting_pods_then_the_newest_ready_pods_busy_or_not() {
        assert_eq!(removal_order(&mixed_pods(), 10.0, false), vec![6, 5, 3, 2, 1, 0]);
    }

    #[test]
    fn idle_first_removes_starting_then_idle_then_the_least_remaining_work() {
        // At t = 10: pod 1 has 5 s left, pod 3 has 10 + 10 s, pod 0 has 50 s.
        assert_eq!(removal_order(&mixed_pods(), 10.0, true), vec![6, 5, 2, 1, 3, 0]);
    }

    #[test]
    fn quiet_pods_go_right_after_starting_ones_in_either_order() {
        let mut pods = mixed_pods();
        pods.get_mut(&0).expect("pod 0").phase = Phase::Quiet;
        assert_eq!(removal_order(&pods, 10.0, false), vec![6, 5, 0, 3, 2, 1]);
        assert_eq!(removal_order(&pods, 10.0, true), vec![6, 5, 0, 2, 1, 3]);
    }

    #[test]
    fn quiet_picks_ready_pods_idle_first_then_fewest_jobs_then_youngest() {
        // Pod 3 holds two jobs, pods 0 and 1 one each; starting and draining pods are never picked.
        assert_eq!(quiet_order(&mixed_pods()), vec![2, 1, 0, 3]);
    }
}
