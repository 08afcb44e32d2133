//! Idle-first scale-down: tell the ReplicaSet controller which pods to remove, so busy workers are not killed
//! mid-job.
//!
//! Neither the HPA nor KEDA can choose which pod goes on scale-down. Kubernetes does honour the
//! `controller.kubernetes.io/pod-deletion-cost` annotation (beta, on by default since 1.22): among ready pods, lower
//! cost goes first. So just before lowering the replica count, the agent lists the workload's pods, asks each
//! worker how many jobs it holds (the drain library's `GET /status` on `workerMetricsPort`), and sets the cost once:
//! idle pods lowest, pods it could not ask next, busy pods by the work they hold. It is best effort by design: if
//! pods cannot be listed or read, the scale-down happens anyway and the log says so.
//!
//! A workload may have hundreds of pods and some answer slowly, so each pod is asked and, if its cost changes,
//! patched as soon as it answers, [`PODS_AT_ONCE`] at a time: 200 pods whose answers take up to the one-second
//! limit cost a few seconds, not 200. The caller bounds the whole with a time budget of its own.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

pub use super::worker_pods::{DELETION_COST, Load};
use super::worker_pods::{load, running_pods, set_deletion_cost};

/// Pods asked (and patched) at once.
pub const PODS_AT_ONCE: usize = 64;

/// How many pods were marked, by what they said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marked {
    /// Pods with no job in flight (cost 0).
    pub idle: usize,
    /// Pods holding jobs.
    pub busy: usize,
    /// Pods that could not be asked (cost 1).
    pub unknown: usize,
}

/// The deletion cost for a pod with `load`: idle 0, unknown 1, busy 100 per job held (capped to the annotation's
/// int32 range).
pub fn cost(load: Load) -> i32 {
    match load {
        Load::InFlight(0) => 0,
        Load::Unknown => 1,
        Load::InFlight(jobs) => i32::try_from(jobs.saturating_mul(100)).unwrap_or(i32::MAX),
    }
}

/// Sets the deletion cost of every running pod the selector picks, while `may_write` allows (this agent leads);
/// returns how many pods of each kind were marked.
pub async fn mark_idle_pods_first(
    pods: &Api<Pod>,
    http: &reqwest::Client,
    selector: &str,
    port: u16,
    may_write: &(impl Fn() -> bool + Sync),
) -> Result<Marked, String> {
    let running = running_pods(pods, selector).await?;
    let mut marking = futures::stream::iter(running)
        .map(|pod| async move {
            let load = load(http, pod.ip.as_deref(), port).await;
            if pod.deletion_cost.as_deref() != Some(cost(load).to_string().as_str()) && !may_write() {
                return Err("this agent no longer leads".to_owned());
            }
            set_deletion_cost(pods, &pod, cost(load)).await?;
            Ok(load)
        })
        .buffer_unordered(PODS_AT_ONCE);
    let mut marked = Marked::default();
    while let Some(load) = marking.next().await {
        match load? {
            Load::InFlight(0) => marked.idle += 1,
            Load::InFlight(_) => marked.busy += 1,
            Load::Unknown => marked.unknown += 1,
        }
    }
    Ok(marked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_pods_cost_least_and_busy_ones_by_their_work() {
        assert_eq!(cost(Load::InFlight(0)), 0);
        assert_eq!(cost(Load::Unknown), 1);
        assert_eq!(cost(Load::InFlight(3)), 300);
        assert_eq!(cost(Load::InFlight(u64::MAX)), i32::MAX);
    }
}
