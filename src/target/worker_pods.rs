//! A workload's worker pods and the drain library's endpoint on each: how busy a worker is (`GET /status`), and
//! telling it to go quiet or to resume (`POST /quiet`, `POST /resume`, with the workers' bearer token).
//!
//! Idle-first and quiet scale-down both need this; it is kept apart from them so that each reads as what it does
//! with a pod, not how a pod is reached.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::Deserialize;
use serde_json::json;

/// The annotation the ReplicaSet controller ranks pods by on scale-down.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Karpenter leaves a pod with this annotation at `"true"` alone when it consolidates nodes.
pub const KARPENTER_DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
/// The cluster autoscaler does not evict a pod with this annotation at `"false"` to remove its node.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";

/// How long one worker may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// A running pod of the workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerPod {
    /// Its name.
    pub name: String,
    /// Its IP, once it has one.
    pub ip: Option<String>,
    /// When it was created (seconds since 1970), for "youngest first".
    pub created: i64,
    /// Its `pod-deletion-cost` annotation.
    pub deletion_cost: Option<String>,
    /// Whether it is marked against node consolidation.
    pub protected: bool,
}

/// What a worker said about its load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// It holds this many jobs.
    InFlight(u64),
    /// It did not answer.
    Unknown,
}

/// `POST /quiet` or `POST /resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tell {
    /// Stop taking jobs, finish the ones held, stay up.
    Quiet,
    /// Take jobs again.
    Resume,
}

/// The running (not terminating) pods a label selector (`app=worker,tier in (a,b)`, as a scale subresource's
/// `status.selector` gives it) picks.
pub async fn running_pods(pods: &Api<Pod>, selector: &str) -> Result<Vec<WorkerPod>, String> {
    let listed =
        pods.list(&ListParams::default().labels(selector)).await.map_err(|e| format!("cannot list the pods: {e}"))?;
    Ok(listed
        .items
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let name = pod.metadata.name?;
            let ip = pod.status.and_then(|s| s.pod_ip);
            let created = pod.metadata.creation_timestamp.map_or(0, |t| t.0.as_second());
            let mut annotations = pod.metadata.annotations.unwrap_or_default();
            let protected = annotations.get(KARPENTER_DO_NOT_DISRUPT).is_some_and(|v| v == "true");
            let deletion_cost = annotations.remove(DELETION_COST);
            Some(WorkerPod { name, ip, created, deletion_cost, protected })
        })
        .collect())
}

/// Sets one pod's deletion cost, unless it already has it.
pub async fn set_deletion_cost(pods: &Api<Pod>, pod: &WorkerPod, cost: i32) -> Result<(), String> {
    if pod.deletion_cost.as_deref() == Some(cost.to_string().as_str()) {
        return Ok(());
    }
    let patch = json!({ "metadata": { "annotations": { DELETION_COST: cost.to_string() } } });
    pods.patch(&pod.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot annotate pod {}: {e}", pod.name))
}

/// Marks a busy pod against node consolidation, or lifts the mark from an idle one, unless it already is so.
pub async fn protect(pods: &Api<Pod>, pod: &WorkerPod, busy: bool) -> Result<(), String> {
    if pod.protected == busy {
        return Ok(());
    }
    let (karpenter, autoscaler) = if busy { (json!("true"), json!("false")) } else { (json!(null), json!(null)) };
    let patch =
        json!({ "metadata": { "annotations": { KARPENTER_DO_NOT_DISRUPT: karpenter, SAFE_TO_EVICT: autoscaler } } });
    pods.patch(&pod.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot mark pod {}: {e}", pod.name))
}

#[derive(Deserialize)]
struct Status {
    in_flight: u64,
}

fn url(ip: &str, port: u16, path: &str) -> String {
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_owned() };
    format!("http://{host}:{port}{path}")
}

/// How many jobs the worker at `ip` holds.
pub async fn load(http: &reqwest::Client, ip: Option<&str>, port: u16) -> Load {
    let Some(ip) = ip else {
        return Load::Unknown;
    };
    match http.get(url(ip, port, "/status")).timeout(ASK_TIMEOUT).send().await {
        Ok(response) if response.status().is_success() => {
            response.json::<Status>().await.map_or(Load::Unknown, |s| Load::InFlight(s.in_flight))
        }
        _ => Load::Unknown,
    }
}

/// Tells the worker at `ip` to go quiet or resume, with the workers' bearer token if they want one.
pub async fn tell(
    http: &reqwest::Client,
    ip: Option<&str>,
    port: u16,
    what: Tell,
    token: Option<&str>,
) -> Result<(), String> {
    let ip = ip.ok_or("the pod has no IP yet")?;
    let path = match what {
        Tell::Quiet => "/quiet",
        Tell::Resume => "/resume",
    };
    let mut request = http.post(url(ip, port, path)).timeout(ASK_TIMEOUT);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        401 => Err(format!("{path}: refused (401); give scaleDown.tokenFile the workers' DRAIN_TOKEN")),
        code => Err(format!("{path}: HTTP {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(url("fd00::7", 9091, "/quiet"), "http://[fd00::7]:9091/quiet");
        assert_eq!(url("10.0.0.7", 9091, "/status"), "http://10.0.0.7:9091/status");
    }
}
