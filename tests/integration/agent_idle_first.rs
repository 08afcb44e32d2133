//! Idle-first scale-down: before lowering replicas the agent asks each worker pod how busy it is and sets
//! `pod-deletion-cost` so the idle ones go first — best effort, never blocking the scale-down.

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use crate::support::agent::Agent;
use crate::support::kube_api::{FakeKube, Fault, FaultKind, Gate, Kind};
use crate::support::rabbitmq::{TestQueue, amqp_url};
use crate::support::workers::serve_status;

const NS: &str = "video";
const COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn body(queue: &str, port: u16) -> String {
    format!(
        "pollInterval: 500ms\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 10\n    behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n    scaleDown: {{idleFirst: true, workerMetricsPort: {port}}}\n    sources:\n      - type: rabbitmq\n        url: {}\n        queue: {queue}\n        backlogPerWorker: 10\n",
        amqp_url()
    )
}

fn cost_of(kube: &FakeKube, pod: &str) -> Option<String> {
    kube.pod(NS, pod).and_then(|p| p["metadata"]["annotations"][COST].as_str().map(str::to_owned))
}

#[tokio::test]
async fn idle_pods_carry_the_lowest_deletion_cost_when_the_scale_down_is_written() {
    let queue = TestQueue::new("idle-first").await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 3, &[("app", "worker")]);
    let port = crate::support::agent::free_port();
    let mut servers = Vec::new();
    for (pod, ip, in_flight) in
        [("worker-busy", "127.0.0.2", 2), ("worker-idle", "127.0.0.3", 0), ("worker-one", "127.0.0.4", 1)]
    {
        kube.create_pod(NS, pod, &[("app", "worker")], ip);
        servers.push(serve_status(ip, port, in_flight, Duration::ZERO).await);
    }
    kube.create_pod(NS, "other-app", &[("app", "other")], "127.0.0.5");

    let agent = Agent::start(&kube, NS, &body(&queue.name, port), &[]).await;
    kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(20)).await.expect("scaled down to minReplicas");

    assert_eq!(cost_of(&kube, "worker-idle").as_deref(), Some("0"));
    assert_eq!(cost_of(&kube, "worker-one").as_deref(), Some("100"));
    assert_eq!(cost_of(&kube, "worker-busy").as_deref(), Some("200"));
    assert_eq!(cost_of(&kube, "other-app"), None, "pods of other Deployments are left alone");

    // Every annotation was in place before the scale write reached the API.
    let requests = kube.requests();
    let scale_write =
        requests.iter().position(|r| r.method == "PATCH" && r.path.ends_with("/deployments/worker/scale"));
    let annotations: Vec<usize> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.method == "PATCH" && r.path.contains("/pods/"))
        .map(|(i, _)| i)
        .collect();
    let scale_write = scale_write.expect("a scale write");
    assert_eq!(annotations.len(), 3, "set once per pod");
    assert!(
        annotations.iter().all(|i| *i < scale_write),
        "annotations {annotations:?} after the scale write {scale_write}"
    );
    let body: &Value = requests[annotations[0]].body.as_ref().expect("a patch body");
    assert!(body["metadata"]["annotations"][COST].is_string());
    agent.stop().await;
    servers.iter().for_each(|s| s.abort());
}

#[tokio::test]
async fn unreachable_workers_do_not_stop_the_scale_down() {
    let queue = TestQueue::new("idle-first-blind").await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 2, &[("app", "worker")]);
    kube.create_pod(NS, "worker-a", &[("app", "worker")], "127.0.0.6");
    kube.create_pod(NS, "worker-b", &[("app", "worker")], "127.0.0.7");
    let port = crate::support::agent::free_port();
    let agent = Agent::start(&kube, NS, &body(&queue.name, port), &[]).await;
    kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(20)).await.expect("scaled down anyway");
    assert_eq!(cost_of(&kube, "worker-a").as_deref(), Some("1"), "unknown load sits between idle and busy");

    kube.inject(Fault { method: None, path_contains: "/pods".into(), kind: FaultKind::Status(500), times: 100 });
    kube.modify(Kind::Deployment, NS, "worker", |d| d["spec"]["replicas"] = json!(3));
    kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(20)).await.expect("scaled down without pods");
    agent.logged("scaling down without idle-first", Duration::from_secs(5)).await;
    agent.stop().await;
}

#[tokio::test]
async fn idle_first_that_runs_out_of_its_budget_scales_down_anyway_and_says_so() {
    let queue = TestQueue::new("idle-first-budget").await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 3, &[("app", "worker")]);
    let port = crate::support::agent::free_port();
    let mut servers = Vec::new();
    for (pod, ip) in [("worker-a", "127.0.0.8"), ("worker-b", "127.0.0.9"), ("worker-c", "127.0.0.10")] {
        kube.create_pod(NS, pod, &[("app", "worker")], ip);
        servers.push(serve_status(ip, port, 0, Duration::ZERO).await);
    }
    // An API server that never answers the pods' deletion-cost patches: marking can never finish.
    let gate = Gate::default();
    kube.inject(Fault {
        method: Some(Method::PATCH),
        path_contains: "/pods/".into(),
        kind: FaultKind::Hold(gate.clone()),
        times: 100,
    });
    let agent = Agent::start(&kube, NS, &body(&queue.name, port), &[]).await;
    kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}: the scale-down waited for idle-first: {}", agent.logs()));
    assert!(gate.waiting() > 0, "the pod patches were still unanswered when the scale-down was written");
    agent
        .logged(
            "idle-first ran out of its time budget; scaling down with the pods marked so far",
            Duration::from_secs(5),
        )
        .await;
    gate.open();
    agent.stop().await;
    servers.iter().for_each(|s| s.abort());
}
