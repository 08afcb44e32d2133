//! The API server misbehaving — 500s, 409s, stalls, dropped connections — and an agent restart: bounded waits,
//! spaced retries, no crash, and the next write is the right one.

use std::time::{Duration, Instant};

use hyper::Method;

use queue_scaler::target::workloads::CONCURRENT_WRITES;

use crate::support::agent::Agent;
use crate::support::eventually;
use crate::support::kube_api::{FakeKube, Fault, FaultKind, Gate};
use crate::support::rabbitmq::{TestQueue, amqp_url};

const NS: &str = "video";

fn body(queue: &str, down_window: u32) -> String {
    format!(
        "pollInterval: 200ms\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 20\n    behavior: {{scaleUp: {{policies: [{{type: Pods, value: 20, periodSeconds: 15}}]}}, scaleDown: {{stabilizationWindowSeconds: {down_window}}}}}\n    sources:\n      - type: rabbitmq\n        url: {}\n        queue: {queue}\n        backlogPerWorker: 10\n",
        amqp_url()
    )
}

fn scale_attempts(kube: &FakeKube) -> Vec<Instant> {
    kube.requests()
        .iter()
        .filter(|r| r.method == Method::PATCH && r.path.ends_with("/deployments/worker/scale"))
        .map(|r| r.at)
        .collect()
}

async fn scenario(fault: FaultKind, times: usize, method: Method) -> (FakeKube, Agent, TestQueue) {
    let queue = TestQueue::new("api-faults").await;
    queue.publish(0, 60).await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    // A write reads the Deployment fresh (GET …/deployments/worker), then patches its scale subresource.
    let path = if method == Method::GET { "/deployments/worker" } else { "/deployments/worker/scale" };
    kube.inject(Fault { method: Some(method), path_contains: path.into(), kind: fault, times });
    let agent = Agent::start(&kube, NS, &body(&queue.name, 0), &[]).await;
    (kube, agent, queue)
}

#[tokio::test]
async fn server_errors_are_retried_with_growing_spacing_and_the_next_write_is_right() {
    let (kube, agent, _queue) = scenario(FaultKind::Status(500), 4, Method::PATCH).await;
    kube.wait_until_replicas(NS, "worker", 6, Duration::from_secs(30)).await.expect("written once the API recovers");
    let attempts = scale_attempts(&kube);
    assert_eq!(attempts.len(), 5, "four failures, then the write: {attempts:?}");
    // Backoff from 1 s doubling, each jittered to 0.5–1.5 times: the gaps grow, at a 200 ms poll interval.
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, (gap, base)) in gaps.iter().zip([1.0, 2.0, 4.0, 8.0]).enumerate() {
        let (low, high) = (Duration::from_secs_f64(base * 0.5), Duration::from_secs_f64(base * 1.5 + 0.5));
        assert!(*gap >= low && *gap <= high, "gap {i} was {gap:?}, expected {low:?}..{high:?}");
    }
    assert_eq!(agent.metric("queue_scaler_scale_write_errors_total{deployment=\"worker\"}").await, Some(4.0));
    agent.stop().await;
}

#[tokio::test]
async fn conflicts_and_dropped_connections_end_in_the_right_count() {
    for fault in [FaultKind::Status(409), FaultKind::Reset] {
        let (kube, agent, _queue) = scenario(fault.clone(), 2, Method::PATCH).await;
        kube.wait_until_replicas(NS, "worker", 6, Duration::from_secs(20)).await.expect("written after the faults");
        assert_eq!(scale_attempts(&kube).len(), 3, "{fault:?}: two failed attempts, then the write");
        assert!(agent.get("/healthz").await.is_some_and(|(status, _)| status == 200), "alive after {fault:?}");
        agent.stop().await;
    }
}

#[tokio::test]
async fn a_stalled_api_times_out_and_the_agent_stays_responsive() {
    let (kube, agent, queue) = scenario(FaultKind::Stall(Duration::from_secs(12)), 1, Method::GET).await;
    // The first write's read of the Deployment stalls past the 10 s write timeout.
    agent.logged("no answer within 10s", Duration::from_secs(15)).await;
    assert!(agent.get("/metrics").await.is_some_and(|(status, _)| status == 200), "metrics served during the stall");
    queue.publish(60, 20).await;
    kube.wait_until_replicas(NS, "worker", 8, Duration::from_secs(10)).await.expect("the next write has the new count");
    agent.stop().await;
}

#[tokio::test]
async fn a_restarted_agent_waits_a_full_window_before_scaling_down() {
    let queue = TestQueue::new("restart").await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 8, &[("app", "worker")]);
    // An agent that had scaled to 8 restarts with the queue now empty and a 4 s scale-down window.
    let agent = Agent::start(&kube, NS, &body(&queue.name, 4), &[]).await;
    agent.ready(Duration::from_secs(20)).await;
    let started = Instant::now();
    kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(20)).await.expect("scales down after the window");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(3500), "scaled down {waited:?} after the restart, before the window");
    agent.stop().await;
}

#[tokio::test]
async fn however_many_targets_scale_at_once_only_a_few_writes_are_in_flight() {
    const TARGETS: usize = 12;
    let kube = FakeKube::start().await;
    let mut config = String::from("pollInterval: 200ms\ntargets:\n");
    for i in 0..TARGETS {
        kube.create_deployment(NS, &format!("worker-{i}"), 1, &[("app", &format!("worker-{i}"))]);
        config.push_str(&format!(
            "  - deployment: worker-{i}\n    maxReplicas: 10\n    sources: [{{type: fixed, backlog: 20, backlogPerWorker: 10}}]\n"
        ));
    }
    // Every write starts by reading its Deployment fresh: hold those reads, and count how many arrive together.
    let gate = Gate::default();
    kube.inject(Fault {
        method: Some(Method::GET),
        path_contains: "/deployments/worker-".into(),
        kind: FaultKind::Hold(gate.clone()),
        times: TARGETS,
    });
    let agent = Agent::start(&kube, NS, &config, &[]).await;
    // Each target has decided on 2 replicas, and so has begun its write, before its decision is seen here.
    for i in 0..TARGETS {
        let series = format!("queue_scaler_desired_replicas{{deployment=\"worker-{i}\"}}");
        eventually(Duration::from_secs(20), &format!("worker-{i} decides"), || async {
            agent.metric(&series).await.filter(|v| *v == 2.0)
        })
        .await;
    }
    eventually(Duration::from_secs(5), "the first writes reach the API", || async {
        Some(()).filter(|_| gate.waiting() >= CONCURRENT_WRITES)
    })
    .await;
    gate.open();
    for i in 0..TARGETS {
        kube.wait_until_replicas(NS, &format!("worker-{i}"), 2, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(gate.most_waiting(), CONCURRENT_WRITES, "{TARGETS} targets wrote {CONCURRENT_WRITES} at a time");
    agent.stop().await;
}
