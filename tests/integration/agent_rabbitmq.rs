//! The agent binary end to end: the real RabbitMQ in, the fake API's Deployment out.

use std::time::{Duration, Instant};

use crate::support::agent::Agent;
use crate::support::eventually;
use crate::support::kube_api::FakeKube;
use crate::support::rabbitmq::{TestQueue, TestVhost, amqp_url, management_url};

const NS: &str = "video";

fn config(queue: &str, behavior: &str) -> String {
    format!(
        "pollInterval: 1s\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 10\n{behavior}    sources:\n      - type: rabbitmq\n        url: {}\n        queue: {queue}\n        backlogPerWorker: 10\n",
        amqp_url()
    )
}

async fn fake_with_worker(replicas: u32) -> FakeKube {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", replicas, &[("app", "worker")]);
    kube
}

#[tokio::test]
async fn seventy_messages_bring_one_replica_to_seven_then_back_to_min_after_the_window() {
    let queue = TestQueue::new("e2e-up-down").await;
    queue.publish(0, 70).await;
    let kube = fake_with_worker(1).await;
    let behavior = "    behavior:\n      scaleUp:\n        policies: [{type: Pods, value: 10, periodSeconds: 15}]\n      scaleDown:\n        stabilizationWindowSeconds: 3\n";
    let agent = Agent::start(&kube, NS, &config(&queue.name, behavior), &[]).await;
    agent.ready(Duration::from_secs(20)).await;
    let ready_at = Instant::now();

    kube.wait_until_replicas(NS, "worker", 7, Duration::from_secs(3)).await.expect("1 → 7 within three polls");
    assert_eq!(kube.scale_writes(NS, "worker").iter().map(|(_, n)| *n).collect::<Vec<_>>(), [7], "one write");
    assert!(ready_at.elapsed() <= Duration::from_secs(3));

    queue.purge().await;
    let purged_at = Instant::now();
    kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(8)).await.expect("back to minReplicas");
    let (down_at, _) = *kube.scale_writes(NS, "worker").last().expect("a scale-down write");
    // The 3 s window must have passed since the last poll that still saw 70 messages (at most one poll before the
    // purge).
    assert!(down_at.duration_since(purged_at) >= Duration::from_secs(2), "scaled down before the window");
    let logs = agent.logs();
    assert!(logs.contains("scaled") && logs.contains("from=1 to=7"), "{logs}");
    assert!(agent.stop().await.success(), "clean exit on SIGTERM");
}

#[tokio::test]
async fn default_behavior_goes_one_to_five_then_seven_a_period_later() {
    let queue = TestQueue::new("e2e-default").await;
    queue.publish(0, 70).await;
    let kube = fake_with_worker(1).await;
    let agent = Agent::start(&kube, NS, &config(&queue.name, ""), &[]).await;
    kube.wait_until_replicas(NS, "worker", 7, Duration::from_secs(40)).await.expect("reaches 7");
    let writes = kube.scale_writes(NS, "worker");
    assert_eq!(writes.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [5, 7], "4 pods or 100 % per 15 s, then the rest");
    let gap = writes[1].0.duration_since(writes[0].0);
    assert!(gap >= Duration::from_secs(14) && gap <= Duration::from_secs(18), "one 15 s period apart, was {gap:?}");
    let reason = agent.metric("queue_scaler_decision{deployment=\"worker\",rule=\"SourceRecommendation\"}").await;
    assert_eq!(reason, Some(1.0));
    agent.stop().await;
}

#[tokio::test]
async fn an_unreachable_broker_holds_the_count_and_counts_errors() {
    let kube = fake_with_worker(3).await;
    let body = "pollInterval: 1s\nreadTimeout: 1s\ntargets:\n  - deployment: worker\n    minReplicas: 0\n    maxReplicas: 10\n    behavior: {scaleDown: {stabilizationWindowSeconds: 0}}\n    sources:\n      - type: rabbitmq\n        url: amqp://guest:guest@127.0.0.1:1/%2f\n        queue: nowhere\n        backlogPerWorker: 10\n";
    let agent = Agent::start(&kube, NS, body, &[]).await;
    let series =
        "queue_scaler_source_errors_total{deployment=\"worker\",source=\"rabbitmq/nowhere\",kind=\"unreachable\"}";
    let first = eventually(Duration::from_secs(20), "a source error is counted", || agent.metric(series)).await;
    let later = eventually(Duration::from_secs(5), "the counter rises", || async {
        agent.metric(series).await.filter(|n| *n >= first + 2.0)
    })
    .await;
    assert!(later >= first + 2.0);
    assert_eq!(kube.replicas(NS, "worker"), Some(3), "held");
    assert!(kube.scale_writes(NS, "worker").is_empty(), "no write at all while the source fails");
    assert_eq!(agent.metric("queue_scaler_decision{deployment=\"worker\",rule=\"SourceFailing\"}").await, Some(1.0));
    assert!(agent.logs().contains("source read failed; holding the replica count"), "{}", agent.logs());
    agent.stop().await;
}

#[tokio::test]
async fn a_hold_annotation_keeps_the_agent_off_until_released() {
    let queue = TestQueue::new("e2e-hold").await;
    queue.publish(0, 50).await;
    let kube = fake_with_worker(2).await;
    kube.set_annotation(NS, "worker", "queue-scaler.io/hold-until", "2999-01-01T00:00:00Z");
    let agent = Agent::start(&kube, NS, &config(&queue.name, ""), &[]).await;
    eventually(Duration::from_secs(20), "the hold is reported", || async {
        agent.metric("queue_scaler_hold_active{deployment=\"worker\"}").await.filter(|v| *v == 1.0)
    })
    .await;
    assert!(kube.scale_writes(NS, "worker").is_empty(), "nothing written while held");

    let released = tokio::process::Command::new(crate::support::agent::BINARY)
        .args(["scale", "worker", "--release", "--namespace", NS])
        .env("KUBECONFIG", kube.kubeconfig_path())
        .output()
        .await
        .expect("queue-scaler scale");
    assert!(released.status.success(), "{}", String::from_utf8_lossy(&released.stderr));
    kube.wait_until_replicas(NS, "worker", 5, Duration::from_secs(5)).await.expect("scales once released");
    agent.stop().await;
}

#[tokio::test]
async fn dry_run_decides_and_logs_but_writes_nothing() {
    let queue = TestQueue::new("e2e-dry").await;
    queue.publish(0, 40).await;
    let kube = fake_with_worker(1).await;
    let agent = Agent::start(&kube, NS, &config(&queue.name, ""), &["--dry-run"]).await;
    eventually(Duration::from_secs(20), "a dry-run decision is logged", || async {
        agent.logs().contains("would scale (dry run)").then_some(())
    })
    .await;
    assert!(agent.logs().contains("from=1 to=4"), "{}", agent.logs());
    assert!(kube.scale_writes(NS, "worker").is_empty());
    assert!(kube.requests().iter().all(|r| r.method == "GET"), "only reads in a dry run");
    agent.stop().await;
}

#[tokio::test]
async fn the_metrics_exposition_passes_promtool() {
    let queue = TestQueue::new("e2e-promtool").await;
    queue.publish(0, 15).await;
    let kube = fake_with_worker(1).await;
    let agent = Agent::start(&kube, NS, &config(&queue.name, ""), &[]).await;
    kube.wait_until_replicas(NS, "worker", 2, Duration::from_secs(20)).await.expect("a decision was made");
    // The agent counts the write once the API has answered it: wait for the count, not just the write.
    let scaled = "queue_scaler_scale_events_total{deployment=\"worker\",direction=\"up\"}";
    eventually(Duration::from_secs(5), "the write is counted", || async {
        agent.metric(scaled).await.filter(|n| *n == 1.0)
    })
    .await;
    let (_, exposition) = agent.get("/metrics").await.expect("metrics");
    for name in [
        "queue_scaler_backlog{",
        "queue_scaler_queue_backlog{",
        "queue_scaler_backlog_per_worker{",
        "queue_scaler_recommended_replicas{",
        "queue_scaler_desired_replicas{",
        "queue_scaler_current_replicas{",
        "queue_scaler_source_read_duration_seconds_bucket{",
        "queue_scaler_scale_events_total{deployment=\"worker\",direction=\"up\"} 1",
        "queue_scaler_decision{",
        "queue_scaler_build_info{",
    ] {
        assert!(exposition.contains(name), "{name} missing from\n{exposition}");
    }
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/test.sh");
    use tokio::io::AsyncWriteExt;
    let mut stdin = promtool.stdin.take().expect("stdin");
    stdin.write_all(exposition.as_bytes()).await.expect("pipe");
    drop(stdin);
    let out = promtool.wait_with_output().await.expect("promtool ran");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool: {report}\n{exposition}");
    agent.stop().await;
}

#[tokio::test]
async fn queues_matching_a_regex_scale_on_their_sum_and_each_has_its_series() {
    let vhost = TestVhost::new("e2e-regex").await;
    vhost.queue("jobs-a", 20).await;
    vhost.queue("jobs-b", 30).await;
    vhost.queue("other", 500).await;
    let kube = fake_with_worker(1).await;
    let body = format!(
        "pollInterval: 1s\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 10\n    sources:\n      \
         - type: rabbitmq\n        name: jobs\n        url: {}\n        vhost: {}\n        queueRegex: 'jobs-.*'\n        \
         managementUrl: {}\n        backlogPerWorker: 10\n",
        vhost.url(),
        vhost.name,
        management_url()
    );
    let agent = Agent::start(&kube, NS, &body, &[]).await;
    kube.wait_until_replicas(NS, "worker", 5, Duration::from_secs(30)).await.expect("(20 + 30) / 10 → 5, not 55");
    let series =
        |queue: &str| format!("queue_scaler_queue_backlog{{deployment=\"worker\",source=\"jobs\",queue=\"{queue}\"}}");
    for (queue, backlog) in [("jobs-a", 20.0), ("jobs-b", 30.0)] {
        assert_eq!(agent.metric(&series(queue)).await, Some(backlog), "{queue}");
    }
    assert_eq!(agent.metric(&series("other")).await, None, "a queue that does not match has no series");
    agent.stop().await;
}
