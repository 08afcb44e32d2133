//! Quiet, then remove: a scale-down that never interrupts a job.
//!
//! Idle-first deletion costs help only when idle pods exist, and the drain grace caps a job at the pod's
//! `terminationGracePeriodSeconds`; a twenty-minute transcode is still handed back and redone. Sidekiq's manual
//! "quiet" shows the way out: tell a worker to stop taking jobs, let it finish what it holds, and remove it only then.
//! With `scaleDown.quiet`, a decision to go from N to M replicas becomes three steps over as many ticks as it takes:
//!
//! 1. pick N − M pods — idle first, then fewest jobs in flight, then youngest; pods whose drain endpoint does not
//!    answer are never picked — tell each `POST /quiet` (with the workers' bearer token) and give them the lowest
//!    deletion cost, so the ReplicaSet removes exactly them;
//! 2. at every tick, ask them (`GET /status`) until each holds no job; the count is unchanged meanwhile
//!    ([`super::Written::Pending`]);
//! 3. lower `replicas` — or, after `quietTimeout`, do so anyway with the quiet pods still first in line, and say so.
//!
//! If the decision rises again while pods are quiet, they are resumed (`POST /resume`) before any pod is added. Every
//! step is an Event and a log line, and `queue_scaler_quiet_pods_total{step}` counts the pods.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::time::Instant;

use super::deletion_cost::PODS_AT_ONCE;
use super::worker_pods::{Load, Tell, WorkerPod, load, running_pods, set_deletion_cost, tell};

/// The deletion cost of a quiet pod: below any idle-first cost (which starts at 0), so it goes first.
pub const QUIET_COST: i32 = -1000;

/// A quiet scale-down under way.
#[derive(Debug, Clone)]
pub struct UnderWay {
    /// The quiet pods.
    pub pods: Vec<WorkerPod>,
    /// When they were told.
    pub since: Instant,
}

/// How to reach the workers.
pub struct Workers<'a> {
    pub pods: &'a Api<Pod>,
    pub http: &'a reqwest::Client,
    pub port: u16,
    /// The workers' bearer token, if they want one.
    pub token: Option<String>,
}

/// What the quiet pods are doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Every quiet pod is idle (or gone): the count may drop by this many.
    Done(u32),
    /// Some still work: (pods still busy, jobs they hold).
    Busy(usize, u64),
}

impl Workers<'_> {
    /// Asks every running pod how busy it is.
    pub async fn loads(&self, selector: &str) -> Result<Vec<(WorkerPod, Load)>, String> {
        let running = running_pods(self.pods, selector).await?;
        let asked = futures::stream::iter(running)
            .map(|pod| async move {
                let load = load(self.http, pod.ip.as_deref(), self.port).await;
                (pod, load)
            })
            .buffer_unordered(PODS_AT_ONCE);
        Ok(asked.collect().await)
    }

    /// Picks `count` pods to quiet, tells them, and gives them the lowest deletion cost; returns those that took it.
    pub async fn quiet(&self, selector: &str, count: usize) -> Result<Vec<WorkerPod>, String> {
        let chosen = choose(self.loads(selector).await?, count);
        let mut quiet = Vec::with_capacity(chosen.len());
        for pod in chosen {
            match tell(self.http, pod.ip.as_deref(), self.port, Tell::Quiet, self.token.as_deref()).await {
                Ok(()) => {
                    set_deletion_cost(self.pods, &pod, QUIET_COST).await?;
                    quiet.push(pod);
                }
                Err(error) => tracing::warn!(pod = %pod.name, %error, "cannot quiet this worker; leaving it"),
            }
        }
        Ok(quiet)
    }

    /// Whether the quiet pods are done; pods no longer running count as done.
    pub async fn progress(&self, selector: &str, quiet: &[WorkerPod]) -> Result<Progress, String> {
        let running = running_pods(self.pods, selector).await?;
        let still: Vec<&WorkerPod> = quiet.iter().filter(|q| running.iter().any(|r| r.name == q.name)).collect();
        let loads = futures::future::join_all(still.iter().map(|pod| load(self.http, pod.ip.as_deref(), self.port)));
        let busy: Vec<u64> = loads
            .await
            .into_iter()
            .filter_map(|load| match load {
                Load::InFlight(0) => None,
                Load::InFlight(jobs) => Some(jobs),
                // A quiet worker that stopped answering may be finishing: wait for it, up to the timeout.
                Load::Unknown => Some(0),
            })
            .collect();
        if busy.is_empty() {
            Ok(Progress::Done(u32::try_from(quiet.len()).unwrap_or(u32::MAX)))
        } else {
            Ok(Progress::Busy(busy.len(), busy.iter().sum()))
        }
    }

    /// Tells the quiet pods to take jobs again and gives them back a neutral deletion cost.
    pub async fn resume(&self, quiet: &[WorkerPod]) {
        for pod in quiet {
            if let Err(error) = tell(self.http, pod.ip.as_deref(), self.port, Tell::Resume, self.token.as_deref()).await
            {
                tracing::warn!(pod = %pod.name, %error, "cannot resume this quiet worker");
            }
            let quieted = WorkerPod { deletion_cost: Some(QUIET_COST.to_string()), ..pod.clone() };
            if let Err(error) = set_deletion_cost(self.pods, &quieted, 0).await {
                tracing::warn!(pod = %pod.name, %error, "cannot reset this worker's deletion cost");
            }
        }
    }
}

/// The `count` pods to quiet: only pods that answered, idle first, then fewest jobs in flight, then youngest.
pub fn choose(loads: Vec<(WorkerPod, Load)>, count: usize) -> Vec<WorkerPod> {
    let mut answered: Vec<(WorkerPod, u64)> = loads
        .into_iter()
        .filter_map(|(pod, load)| match load {
            Load::InFlight(jobs) => Some((pod, jobs)),
            Load::Unknown => None,
        })
        .collect();
    answered.sort_by(|(a, a_jobs), (b, b_jobs)| a_jobs.cmp(b_jobs).then(b.created.cmp(&a.created)));
    answered.into_iter().take(count).map(|(pod, _)| pod).collect()
}

/// Whether quiet pods have had `timeout` to finish since `since`.
pub fn timed_out(since: Instant, timeout: Duration) -> bool {
    since.elapsed() >= timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: i64) -> WorkerPod {
        WorkerPod { name: name.into(), ip: Some("10.0.0.1".into()), created, deletion_cost: None, protected: false }
    }

    #[test]
    fn idle_first_then_fewest_jobs_then_youngest_and_never_one_that_did_not_answer() {
        let loads = vec![
            (pod("busy-2", 100), Load::InFlight(2)),
            (pod("idle-old", 100), Load::InFlight(0)),
            (pod("silent", 500), Load::Unknown),
            (pod("busy-1-old", 100), Load::InFlight(1)),
            (pod("idle-young", 300), Load::InFlight(0)),
            (pod("busy-1-young", 400), Load::InFlight(1)),
        ];
        let names = |count| choose(loads.clone(), count).into_iter().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(names(2), ["idle-young", "idle-old"]);
        assert_eq!(names(3), ["idle-young", "idle-old", "busy-1-young"]);
        assert_eq!(names(9), ["idle-young", "idle-old", "busy-1-young", "busy-1-old", "busy-2"], "never `silent`");
    }
}
