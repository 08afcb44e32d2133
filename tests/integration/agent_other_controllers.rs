//! Other controllers in the namespace, driven with real `kubectl` against the fake API: an HPA or a KEDA
//! ScaledObject that scales the Deployment keeps the agent off it (and says so), and `kubectl scale` changing the
//! count behind the agent's back is named from `managedFields` — three times in ten minutes and the agent backs off.

use std::time::Duration;

use crate::support::agent::Agent;
use crate::support::eventually;
use crate::support::kube_api::FakeKube;

const NS: &str = "video";

fn body(backlog: u32) -> String {
    format!(
        "pollInterval: 200ms\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 20\n    behavior: {{scaleUp: {{policies: [{{type: Pods, value: 20, periodSeconds: 15}}]}}, scaleDown: {{stabilizationWindowSeconds: 0}}}}\n    sources: [{{type: fixed, backlog: {backlog}, backlogPerWorker: 10}}]\n"
    )
}

/// Applies `manifest` with real kubectl.
async fn apply(kube: &FakeKube, manifest: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, manifest).expect("write manifest");
    let out = kube.kubectl(&["apply", "--validate=false", "-n", NS, "-f", &file.display().to_string()]).await;
    let out = out.expect("kubectl apply");
    assert!(out.success, "kubectl apply: {}", out.stderr);
}

/// The notes of the Warning Events with `reason` on the Deployment.
fn warnings(kube: &FakeKube, reason: &str) -> Vec<String> {
    kube.events(NS)
        .iter()
        .filter(|e| e["reason"] == reason && e["type"] == "Warning")
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

const HPA: &str = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: worker-hpa\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}\n  minReplicas: 1\n  maxReplicas: 10\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}\n";

#[tokio::test]
async fn an_hpa_on_the_deployment_keeps_the_agent_off_until_it_is_deleted() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    apply(&kube, HPA).await;
    let listed = kube.kubectl(&["get", "hpa", "-n", NS]).await.expect("kubectl get hpa");
    assert!(listed.success && listed.stdout.contains("worker-hpa"), "{} {}", listed.stdout, listed.stderr);
    let agent = Agent::start(&kube, NS, &body(50), &[]).await;
    let owner = "queue_scaler_other_controller{deployment=\"worker\",owner=\"HorizontalPodAutoscaler/worker-hpa\"}";
    eventually(Duration::from_secs(20), "the other autoscaler exported", || async {
        agent.metric(owner).await.filter(|v| *v == 1.0)
    })
    .await;
    agent.logged("another autoscaler scales this workload; not managing it", Duration::from_secs(5)).await;
    kube.wait_until("the Warning Event", Duration::from_secs(5), |kube| !warnings(kube, "OtherAutoscaler").is_empty())
        .await
        .expect("an OtherAutoscaler event");
    assert!(warnings(&kube, "OtherAutoscaler")[0].starts_with("HorizontalPodAutoscaler/worker-hpa already scales"));
    let events = kube.kubectl(&["get", "events", "-n", NS]).await.expect("kubectl get events");
    assert!(events.stdout.contains("OtherAutoscaler"), "{}", events.stdout);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(kube.scale_writes(NS, "worker").is_empty(), "written beside an HPA: {}", agent.logs());
    assert_eq!(warnings(&kube, "OtherAutoscaler").len(), 1, "told once");

    let deleted = kube.kubectl(&["delete", "hpa", "worker-hpa", "-n", NS]).await.expect("kubectl delete");
    assert!(deleted.success, "{}", deleted.stderr);
    kube.wait_until_replicas(NS, "worker", 5, Duration::from_secs(10)).await.expect("managed once the HPA is gone");
    assert_eq!(agent.metric(owner).await, Some(0.0));
    agent.stop().await;
}

#[tokio::test]
async fn a_keda_scaled_object_on_the_deployment_keeps_the_agent_off() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    apply(
        &kube,
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: worker-so\nspec:\n  scaleTargetRef: {name: worker}\n  triggers:\n  - type: rabbitmq\n    metadata: {queueName: videos, value: '20'}\n",
    )
    .await;
    let agent = Agent::start(&kube, NS, &body(50), &[]).await;
    agent.logged("another autoscaler scales this workload; not managing it", Duration::from_secs(20)).await;
    assert!(agent.logs().contains("owner=ScaledObject/worker-so"), "{}", agent.logs());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(kube.scale_writes(NS, "worker").is_empty(), "written beside KEDA: {}", agent.logs());
    agent.stop().await;
}

#[tokio::test]
async fn kubectl_scale_behind_the_agents_back_is_named_and_the_third_time_the_agent_backs_off() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let agent = Agent::start(&kube, NS, &body(40), &[]).await;
    kube.wait_until_replicas(NS, "worker", 4, Duration::from_secs(20)).await.expect("the agent scales to 4");
    for round in 1..=3 {
        let scaled = kube.kubectl(&["scale", "deployment", "worker", "--replicas=9", "-n", NS]).await.expect("kubectl");
        assert!(scaled.success, "{}", scaled.stderr);
        // Who wrote it, as the API server recorded it.
        let manager = kube.deployment(NS, "worker").expect("deployment")["metadata"]["managedFields"]
            .as_array()
            .and_then(|m| {
                m.iter().find(|e| e["fieldsV1"]["f:spec"]["f:replicas"].is_object() && e["manager"] != "queue-scaler")
            })
            .and_then(|e| e["manager"].as_str().map(str::to_owned))
            .expect("kubectl's entry in managedFields");
        assert!(manager.starts_with("kubectl"), "{manager}");
        kube.wait_until("the change named", Duration::from_secs(10), |kube| {
            warnings(kube, "ReplicasChangedByOther").len() >= round
        })
        .await
        .expect("a ReplicasChangedByOther event");
        let note = warnings(&kube, "ReplicasChangedByOther").last().cloned().unwrap_or_default();
        assert!(note.contains(&format!("changed from 4 to 9 by {manager}")), "{note}");
        if round < 3 {
            kube.wait_until_replicas(NS, "worker", 4, Duration::from_secs(10)).await.expect("back to 4");
        }
    }
    kube.wait_until("the back-off told", Duration::from_secs(10), |kube| !warnings(kube, "BackingOff").is_empty())
        .await
        .expect("a BackingOff event");
    let writes = kube.scale_writes(NS, "worker").len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(kube.scale_writes(NS, "worker").len(), writes, "no write while backing off");
    assert_eq!(kube.replicas(NS, "worker"), Some(9));
    assert_eq!(agent.metric("queue_scaler_backing_off{deployment=\"worker\"}").await, Some(1.0));
    agent.stop().await;
}
