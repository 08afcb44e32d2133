//! Running in a cluster: leader election over a Lease, Events on each write, config reload, and the sidecar's
//! refusal to scale its own Deployment to zero — the agent binary against the fake API and the real RabbitMQ.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::agent::Agent;
use crate::support::kube_api::FakeKube;
use crate::support::rabbitmq::{TestQueue, amqp_url};

const NS: &str = "video";
const LEASE_SECONDS: u64 = 3;

fn body(queue: &str, per_worker: u32, min: u32, extra: &str) -> String {
    format!(
        "pollInterval: 500ms\n{extra}targets:\n  - deployment: worker\n    minReplicas: {min}\n    maxReplicas: 20\n    behavior: {{scaleUp: {{policies: [{{type: Pods, value: 20, periodSeconds: 15}}]}}}}\n    sources:\n      - type: rabbitmq\n        url: {}\n        queue: {queue}\n        backlogPerWorker: {per_worker}\n",
        amqp_url()
    )
}

fn elected(queue: &str) -> String {
    body(
        queue,
        10,
        1,
        &format!("leaderElection: {{enabled: true, leaseName: qs-test, leaseDuration: {LEASE_SECONDS}s}}\n"),
    )
}

/// Waits until `n` scale writes have been told as Events (each Event follows its write), and returns who wrote.
async fn writers_after(kube: &FakeKube, n: usize) -> Vec<String> {
    kube.wait_until("the writes' Events", Duration::from_secs(5), |kube| writers(kube).len() >= n)
        .await
        .expect("events");
    writers(kube)
}

/// Who reported each scale write, from the Events the writes produced, in order.
fn writers(kube: &FakeKube) -> Vec<String> {
    let mut events: Vec<Value> = kube.events(NS);
    events.sort_by_key(|e| e["metadata"]["resourceVersion"].as_str().and_then(|rv| rv.parse::<u64>().ok()));
    events.iter().filter_map(|e| e["reportingInstance"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn one_leader_writes_and_a_standby_takes_over_within_the_lease_duration() {
    let queue = TestQueue::new("leader").await;
    queue.publish(0, 30).await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let first = Agent::start_with_env(&kube, NS, &elected(&queue.name), &[], &[("POD_NAME", "agent-a")]).await;
    kube.wait_until_replicas(NS, "worker", 3, Duration::from_secs(20)).await.expect("the leader scales");
    let second = Agent::start_with_env(&kube, NS, &elected(&queue.name), &[], &[("POD_NAME", "agent-b")]).await;
    second.ready(Duration::from_secs(20)).await;
    assert_eq!(second.metric("queue_scaler_leader ").await, Some(0.0), "the second agent stands by");
    assert_eq!(first.metric("queue_scaler_leader ").await, Some(1.0));

    queue.publish(30, 20).await;
    kube.wait_until_replicas(NS, "worker", 5, Duration::from_secs(10)).await.expect("the leader follows the backlog");
    assert_eq!(writers_after(&kube, 2).await, ["agent-a", "agent-a"], "only the leader writes");

    // The leader dies without releasing the Lease; the standby must wait out the lease, then act.
    first.signal("KILL");
    let killed_at = Instant::now();
    queue.publish(50, 30).await;
    kube.wait_until_replicas(NS, "worker", 8, Duration::from_secs(LEASE_SECONDS + 5)).await.expect("failover");
    let failover = killed_at.elapsed();
    assert!(failover <= Duration::from_secs(LEASE_SECONDS) + Duration::from_secs(2), "failover took {failover:?}");
    assert_eq!(writers_after(&kube, 3).await, ["agent-a", "agent-a", "agent-b"]);
    assert_eq!(kube.lease(NS, "qs-test").expect("lease")["spec"]["holderIdentity"], "agent-b");
    println!("failover after SIGKILL of the leader: {failover:?} (lease {LEASE_SECONDS}s)");
    second.stop().await;
}

#[tokio::test]
async fn a_paused_leader_that_lost_the_lease_never_writes_again() {
    let queue = TestQueue::new("paused").await;
    queue.publish(0, 20).await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let first = Agent::start_with_env(&kube, NS, &elected(&queue.name), &[], &[("POD_NAME", "agent-a")]).await;
    kube.wait_until_replicas(NS, "worker", 2, Duration::from_secs(20)).await.expect("the leader scales");
    let second = Agent::start_with_env(&kube, NS, &elected(&queue.name), &[], &[("POD_NAME", "agent-b")]).await;
    second.ready(Duration::from_secs(20)).await;

    // A stalled leader (a long GC pause, a frozen node): the standby takes over while it is frozen.
    first.signal("STOP");
    queue.publish(20, 40).await;
    kube.wait_until_replicas(NS, "worker", 6, Duration::from_secs(LEASE_SECONDS + 5)).await.expect("takeover");
    first.signal("CONT");
    first.logged("lost leadership", Duration::from_secs(10)).await;
    queue.publish(60, 20).await;
    kube.wait_until_replicas(NS, "worker", 8, Duration::from_secs(10)).await.expect("the new leader scales");
    let writers = writers_after(&kube, 3).await;
    let took_over = writers.iter().position(|w| w == "agent-b").expect("agent-b wrote");
    assert!(writers[took_over..].iter().all(|w| w == "agent-b"), "the old leader wrote after losing: {writers:?}");
    assert_eq!(first.metric("queue_scaler_leader ").await, Some(0.0));
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn each_write_is_an_event_that_kubectl_shows() {
    let queue = TestQueue::new("events").await;
    queue.publish(0, 40).await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let agent = Agent::start_with_env(&kube, NS, &body(&queue.name, 10, 1, ""), &[], &[("POD_NAME", "agent-a")]).await;
    kube.wait_until_replicas(NS, "worker", 4, Duration::from_secs(20)).await.expect("scaled");
    writers_after(&kube, 1).await;
    let events = kube.events(NS);
    let event = events.iter().find(|e| e["reason"] == "SuccessfulRescale").expect("a SuccessfulRescale event");
    assert_eq!(event["involvedObject"]["kind"], "Deployment");
    assert_eq!(event["involvedObject"]["name"], "worker");
    let message = event["message"].as_str().expect("message");
    assert!(message.starts_with("New size: 4; reason: SourceRecommendation: rabbitmq/"), "{message}");
    assert!(message.contains("backlog 40 over 10 per worker → 4"), "{message}");

    let out = kube.kubectl(&["get", "events", "-n", NS]).await.expect("kubectl");
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("SuccessfulRescale") && out.stdout.contains("deployment/worker"), "{}", out.stdout);
    assert!(out.stdout.contains("New size: 4"), "{}", out.stdout);
    agent.stop().await;
}

#[tokio::test]
async fn a_good_config_change_applies_within_a_poll_and_a_bad_one_changes_nothing() {
    let queue = TestQueue::new("reload").await;
    queue.publish(0, 40).await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let agent = Agent::start(&kube, NS, &body(&queue.name, 10, 1, ""), &[]).await;
    kube.wait_until_replicas(NS, "worker", 4, Duration::from_secs(20)).await.expect("scaled on the first config");

    let changed_at = Instant::now();
    agent.rewrite_config(NS, &body(&queue.name, 5, 1, ""));
    kube.wait_until_replicas(NS, "worker", 8, Duration::from_secs(5)).await.expect("the new backlogPerWorker applies");
    // The file is checked every 2 s; then one 500 ms poll.
    assert!(changed_at.elapsed() <= Duration::from_millis(3500), "took {:?}", changed_at.elapsed());

    agent.rewrite_config(NS, &body(&queue.name, 1, 30, ""));
    agent.logged("the changed config is invalid; keeping the running one", Duration::from_secs(5)).await;
    assert_eq!(agent.metric("queue_scaler_config_reloads_total{result=\"applied\"}").await, Some(1.0));
    assert_eq!(agent.metric("queue_scaler_config_reloads_total{result=\"rejected\"}").await, Some(1.0));
    assert!(agent.logs().contains("minReplicas (30) is above maxReplicas (20)"), "{}", agent.logs());
    queue.publish(40, 8).await;
    kube.wait_until_replicas(NS, "worker", 10, Duration::from_secs(5)).await.expect("still on backlogPerWorker 5");
    agent.stop().await;
}

#[tokio::test]
async fn a_sidecar_refuses_to_scale_its_own_deployment_to_zero() {
    let queue = TestQueue::new("sidecar").await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 2, &[("app", "worker")]);
    kube.create_pod(NS, "worker-7d9f-abcde", &[("app", "worker"), ("pod-template-hash", "7d9f")], "10.0.0.7");
    let sidecar = [("POD_NAME", "worker-7d9f-abcde")];
    let mut agent = Agent::start_with_env(&kube, NS, &body(&queue.name, 10, 0, ""), &[], &sidecar).await;
    assert_eq!(agent.exit_code(Duration::from_secs(20)).await, Some(2));
    agent.logged("targets[0].minReplicas: 0 would scale away deployment `worker`", Duration::from_secs(2)).await;

    let allowed = Agent::start_with_env(&kube, NS, &body(&queue.name, 10, 1, ""), &[], &sidecar).await;
    allowed.ready(Duration::from_secs(20)).await;
    assert!(allowed.stop().await.success());
}
