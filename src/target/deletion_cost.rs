//! Idle-first scale-down: tell the ReplicaSet controller which pods to remove, so busy workers are not killed
//! mid-job.
//!
//! Neither the HPA nor KEDA can choose which pod goes on scale-down. Kubernetes does honour the
//! `controller.kubernetes.io/pod-deletion-cost` annotation (beta, on by default since 1.22): among ready pods, lower
//! cost goes first. So just before lowering the replica count, the agent lists the Deployment's pods, asks each
//! worker how many jobs it holds (the drain library's `GET /status` on `workerMetricsPort`), and sets the cost once:
//! idle pods lowest, pods it could not ask next, busy pods by the work they hold. It is best effort by design: if
//! pods cannot be listed or read, the scale-down happens anyway and the log says so.
//!
//! A Deployment may have hundreds of pods and some answer slowly, so each pod is asked and, if its cost changes,
//! patched as soon as it answers, [`PODS_AT_ONCE`] at a time: 200 pods whose answers take up to the one-second
//! limit cost a few seconds, not 200. The caller bounds the whole with a time budget of its own.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::Deserialize;
use serde_json::json;

/// The annotation the ReplicaSet controller ranks pods by on scale-down.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// How long one worker may take to say how busy it is.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

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

/// What a worker said about its load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// It holds this many jobs.
    InFlight(u64),
    /// It did not answer.
    Unknown,
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

/// The label selector as the API's `labelSelector` query parameter.
pub fn selector_query(selector: &LabelSelector) -> String {
    let mut terms: Vec<String> =
        selector.match_labels.iter().flatten().map(|(key, value)| format!("{key}={value}")).collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        terms.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    terms.join(",")
}

#[derive(Deserialize)]
struct Status {
    in_flight: u64,
}

/// Sets the deletion cost of every running pod the selector picks, while `may_write` allows (this agent leads);
/// returns how many pods of each kind were marked.
pub async fn mark_idle_pods_first(
    pods: &Api<Pod>,
    http: &reqwest::Client,
    selector: &LabelSelector,
    port: u16,
    may_write: &(impl Fn() -> bool + Sync),
) -> Result<Marked, String> {
    let listed = pods
        .list(&ListParams::default().labels(&selector_query(selector)))
        .await
        .map_err(|e| format!("cannot list the pods: {e}"))?;
    let running = listed.items.into_iter().filter(|pod| pod.metadata.deletion_timestamp.is_none()).filter_map(|pod| {
        let name = pod.metadata.name?;
        let ip = pod.status.and_then(|s| s.pod_ip);
        let current = pod.metadata.annotations.and_then(|mut a| a.remove(DELETION_COST));
        Some((name, ip, current))
    });
    let mut marking = futures::stream::iter(running)
        .map(|(name, ip, current)| async move {
            let load = ask(http, ip.as_deref(), port).await;
            let cost = cost(load);
            // Set once: an unchanged value is not written again.
            if current.as_deref() != Some(cost.to_string().as_str()) {
                if !may_write() {
                    return Err("this agent no longer leads".to_owned());
                }
                let patch = json!({ "metadata": { "annotations": { DELETION_COST: cost.to_string() } } });
                pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| format!("cannot annotate pod {name}: {e}"))?;
            }
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

async fn ask(http: &reqwest::Client, ip: Option<&str>, port: u16) -> Load {
    let Some(ip) = ip else {
        return Load::Unknown;
    };
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_owned() };
    let answer = http.get(format!("http://{host}:{port}/status")).timeout(ASK_TIMEOUT).send().await;
    match answer {
        Ok(response) if response.status().is_success() => {
            response.json::<Status>().await.map_or(Load::Unknown, |s| Load::InFlight(s.in_flight))
        }
        _ => Load::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn idle_pods_cost_least_and_busy_ones_by_their_work() {
        assert_eq!(cost(Load::InFlight(0)), 0);
        assert_eq!(cost(Load::Unknown), 1);
        assert_eq!(cost(Load::InFlight(3)), 300);
        assert_eq!(cost(Load::InFlight(u64::MAX)), i32::MAX);
    }

    #[test]
    fn selectors_become_query_parameters() {
        let selector = LabelSelector {
            match_labels: Some([("app".to_owned(), "worker".to_owned())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement { key: "canary".into(), operator: "DoesNotExist".into(), values: None },
            ]),
        };
        assert_eq!(selector_query(&selector), "app=worker,tier in (a,b),!canary");
    }
}
