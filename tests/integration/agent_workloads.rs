//! Any workload with a `scale` subresource, named by `scaleTargetRef`: a StatefulSet (a known kind) and a custom
//! resource found through discovery (`workers.example.com/v1` WorkerPool, whose pods are those of its scale
//! subresource's `status.selector`) scale up and down through `…/scale`, idle-first picks the pods the selector
//! names, a hold is honoured, and Events name the right kind. Real `kubectl` reads and scales both on the fake.

use std::time::Duration;

use hyper::Method;

use crate::support::agent::{Agent, free_port};
use crate::support::kube_api::{FakeKube, Kind};
use crate::support::workers::serve_status;

const NS: &str = "video";
const COST: &str = "controller.kubernetes.io/pod-deletion-cost";
const DEADLINE: Duration = Duration::from_secs(20);

/// One target on `reference` (a YAML flow mapping) with a fixed backlog of `backlog` at 10 per worker; scale-downs
/// at once.
fn body(reference: &str, backlog: u32, extra: &str) -> String {
    format!(
        "pollInterval: 200ms\ntargets:\n  - scaleTargetRef: {reference}\n    minReplicas: 1\n    maxReplicas: 10\n    behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n{extra}    sources:\n      - type: fixed\n        backlog: {backlog}\n        backlogPerWorker: 10\n"
    )
}

const STATEFUL_SET: &str = "{apiVersion: apps/v1, kind: StatefulSet, name: db}";
const WORKER_POOL: &str = "{apiVersion: workers.example.com/v1, kind: WorkerPool, name: pool}";

/// The kinds the agent's Events are about (core form: `involvedObject.kind`).
fn event_kinds(kube: &FakeKube) -> Vec<String> {
    kube.events(NS).iter().filter_map(|e| e["involvedObject"]["kind"].as_str().map(str::to_owned)).collect()
}

fn scale_patches(kube: &FakeKube, path: &str) -> usize {
    kube.requests().iter().filter(|r| r.method == Method::PATCH && r.path == path).count()
}

#[tokio::test]
async fn a_stateful_set_scales_up_and_down_through_its_scale_subresource() {
    let kube = FakeKube::start().await;
    kube.create_stateful_set(NS, "db", 1, &[("app", "db")]);
    let agent = Agent::start(&kube, NS, &body(STATEFUL_SET, 40, ""), &[]).await;
    kube.wait_until_replicas_of(Kind::StatefulSet, NS, "db", 4, DEADLINE).await.expect("scaled up to 40 / 10");
    assert!(scale_patches(&kube, "/apis/apps/v1/namespaces/video/statefulsets/db/scale") >= 1);
    agent.rewrite_config(NS, &body(STATEFUL_SET, 0, ""));
    kube.wait_until_replicas_of(Kind::StatefulSet, NS, "db", 1, DEADLINE).await.expect("scaled down to min");
    kube.wait_until("a SuccessfulRescale Event on the StatefulSet", DEADLINE, |kube| {
        event_kinds(kube).iter().any(|k| k == "StatefulSet")
    })
    .await
    .expect("Events name the StatefulSet");
    assert!(event_kinds(&kube).iter().all(|k| k == "StatefulSet"), "{:?}", event_kinds(&kube));
    agent.stop().await;
}

#[tokio::test]
async fn a_custom_resource_scales_and_idle_first_marks_the_pods_of_its_status_selector() {
    let kube = FakeKube::start().await;
    kube.create_worker_pool(NS, "pool", 3, "pool=pool,role=worker");
    let port = free_port();
    let mut servers = Vec::new();
    for (pod, ip, in_flight) in
        [("pool-busy", "127.0.0.2", 2), ("pool-idle", "127.0.0.3", 0), ("pool-one", "127.0.0.4", 1)]
    {
        kube.create_pod(NS, pod, &[("pool", "pool"), ("role", "worker")], ip);
        servers.push(serve_status(ip, port, in_flight, Duration::ZERO).await);
    }
    // Same pool label, not a worker: the selector has two terms and this pod matches only one.
    kube.create_pod(NS, "pool-metrics", &[("pool", "pool"), ("role", "metrics")], "127.0.0.5");
    let idle_first = format!("    scaleDown: {{idleFirst: true, workerMetricsPort: {port}}}\n");
    let agent = Agent::start(&kube, NS, &body(WORKER_POOL, 10, &idle_first), &[]).await;
    kube.wait_until_replicas_of(Kind::WorkerPool, NS, "pool", 1, DEADLINE).await.expect("scaled down to 10 / 10");
    let cost =
        |pod: &str| kube.pod(NS, pod).and_then(|p| p["metadata"]["annotations"][COST].as_str().map(str::to_owned));
    assert_eq!(cost("pool-idle").as_deref(), Some("0"));
    assert_eq!(cost("pool-one").as_deref(), Some("100"));
    assert_eq!(cost("pool-busy").as_deref(), Some("200"));
    assert_eq!(cost("pool-metrics"), None, "a pod outside status.selector is left alone");
    let scale = "/apis/workers.example.com/v1/namespaces/video/workerpools/pool/scale";
    assert_eq!(scale_patches(&kube, scale), 1, "one write, through the custom resource's scale subresource");

    agent.rewrite_config(NS, &body(WORKER_POOL, 50, &idle_first));
    kube.wait_until_replicas_of(Kind::WorkerPool, NS, "pool", 5, DEADLINE).await.expect("scaled up to 50 / 10");
    assert!(event_kinds(&kube).iter().any(|k| k == "WorkerPool"), "{:?}", event_kinds(&kube));
    agent.stop().await;
    servers.iter().for_each(|s| s.abort());
}

#[tokio::test]
async fn a_held_stateful_set_is_left_alone() {
    let kube = FakeKube::start().await;
    kube.create_stateful_set(NS, "db", 1, &[("app", "db")]);
    kube.modify(Kind::StatefulSet, NS, "db", |object| {
        object["metadata"]["annotations"] = serde_json::json!({ "queue-scaler.io/hold-until": "2099-01-01T00:00:00Z" });
    })
    .expect("the StatefulSet exists");
    let agent = Agent::start(&kube, NS, &body(STATEFUL_SET, 40, ""), &[]).await;
    agent.logged("held by annotation; not scaling", DEADLINE).await;
    assert_eq!(kube.replicas_of(Kind::StatefulSet, NS, "db"), Some(1));
    assert_eq!(scale_patches(&kube, "/apis/apps/v1/namespaces/video/statefulsets/db/scale"), 0);
    agent.stop().await;
}

#[tokio::test]
async fn a_kind_the_api_does_not_serve_is_a_target_error_not_a_crash() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let missing = "{apiVersion: nope.example.com/v1, kind: Missing, name: m}";
    let two = format!(
        "{}  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 10\n    sources:\n      - type: fixed\n        backlog: 30\n        backlogPerWorker: 10\n",
        body(missing, 40, "")
    );
    let agent = Agent::start(&kube, NS, &two, &[]).await;
    kube.wait_until_replicas(NS, "worker", 3, DEADLINE).await.expect("the other target still scales");
    agent.logged("the API serves no Missing in nope.example.com/v1", DEADLINE).await;
    agent.stop().await;
}

async fn kubectl_ok(kube: &FakeKube, args: &[&str]) -> String {
    let output = kube.kubectl(args).await.expect("run kubectl");
    assert!(output.success, "kubectl {args:?} failed: {}", output.stderr);
    assert_eq!(output.stderr, "", "kubectl {args:?} complained");
    output.stdout
}

#[tokio::test]
async fn kubectl_reads_and_scales_stateful_sets_and_the_custom_resource() {
    let kube = FakeKube::start().await;
    kube.create_stateful_set(NS, "db", 2, &[("app", "db")]);
    kube.create_worker_pool(NS, "pool", 1, "pool=pool");
    let listed = kubectl_ok(&kube, &["get", "statefulset", "-n", NS]).await;
    assert!(listed.lines().nth(1).is_some_and(|row| row.starts_with("db") && row.contains("2/2")), "{listed}");
    let scaled = kubectl_ok(&kube, &["scale", "statefulset/db", "--replicas=5", "-n", NS]).await;
    assert_eq!(scaled.trim(), "statefulset.apps/db scaled");
    assert_eq!(kube.replicas_of(Kind::StatefulSet, NS, "db"), Some(5));
    let scaled = kubectl_ok(&kube, &["scale", "workerpool/pool", "--replicas=3", "-n", NS]).await;
    assert_eq!(scaled.trim(), "workerpool.workers.example.com/pool scaled");
    assert_eq!(kube.replicas_of(Kind::WorkerPool, NS, "pool"), Some(3));
    let scale =
        kubectl_ok(&kube, &["get", "--raw", "/apis/workers.example.com/v1/namespaces/video/workerpools/pool/scale"])
            .await;
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("a Scale");
    assert_eq!(scale["status"]["selector"], "pool=pool", "the selector comes from the pool's status");
    let pools = kubectl_ok(&kube, &["get", "wp", "-n", NS, "-o", "name"]).await;
    assert_eq!(pools.trim(), "workerpool.workers.example.com/pool");
}

#[tokio::test]
async fn queue_scaler_scale_holds_and_scales_a_stateful_set() {
    let kube = FakeKube::start().await;
    kube.create_stateful_set(NS, "db", 1, &[("app", "db")]);
    let output = tokio::process::Command::new(crate::support::agent::BINARY)
        .args(["scale", "db", "--kind", "StatefulSet", "--api-version", "apps/v1", "--replicas", "4", "--hold", "1h"])
        .args(["-n", NS])
        .env("KUBECONFIG", kube.kubeconfig_path())
        .output()
        .await
        .expect("run queue-scaler scale");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.starts_with("statefulset video/db: scaled to 4, held until "), "{said}");
    assert_eq!(kube.replicas_of(Kind::StatefulSet, NS, "db"), Some(4));
    let db = kube.object(Kind::StatefulSet, NS, "db").expect("the StatefulSet");
    assert!(db["metadata"]["annotations"]["queue-scaler.io/hold-until"].is_string());
}
