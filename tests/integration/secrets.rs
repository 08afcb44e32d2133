//! A planted password must not appear anywhere a human or a scraper can read: logs at every level, error
//! messages, metric labels, `check` output, Kubernetes Events.

use std::time::Duration;

use crate::support::agent::{Agent, BINARY};
use crate::support::eventually;
use crate::support::kube_api::FakeKube;
use crate::support::rabbitmq::{TestQueue, amqp_url, management_url};

const NS: &str = "video";
const PLANTED: &str = "PLANTED-pw-7f3e9a1c";

/// Three sources: one with the planted password in the URL of a broker that is not there, one with it as a wrong
/// password for the management API — both fail at every poll, and their errors name their endpoints — and one
/// that works, so that the agent still scales and writes Events.
fn body(bad_queue: &str, good_queue: &str) -> String {
    format!(
        "pollInterval: 300ms\ntargets:\n  - deployment: worker\n    maxReplicas: 10\n    sources:\n      - type: rabbitmq\n        url: amqp://guest:${{QS_PLANTED}}@127.0.0.1:1/%2f\n        queue: {bad_queue}\n        backlogPerWorker: 10\n      - type: rabbitmq\n        url: amqp://guest:${{QS_PLANTED}}@127.0.0.1:5672/%2f\n        queue: {bad_queue}-mgmt\n        name: management\n        managementUrl: http://guest:${{QS_PLANTED}}@127.0.0.1:15672\n        backlogPerWorker: 10\n      - type: rabbitmq\n        url: {}\n        queue: {good_queue}\n        managementUrl: {}\n        backlogPerWorker: 10\n",
        amqp_url(),
        management_url()
    )
}

#[tokio::test]
async fn a_planted_password_appears_in_no_log_error_metric_or_event() {
    let good = TestQueue::new("secrets-good").await;
    good.publish(0, 30).await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let config = body("secrets-bad", &good.name);
    let agent = Agent::start_with_env(&kube, NS, &config, &[], &[("QS_PLANTED", PLANTED), ("RUST_LOG", "trace")]).await;
    kube.wait_until_replicas(NS, "worker", 3, Duration::from_secs(30)).await.expect("scales on the good source");
    let denied = "queue_scaler_source_errors_total{deployment=\"worker\",source=\"management\",kind=\"denied\"}";
    eventually(Duration::from_secs(10), "failed reads are counted", || agent.metric(denied)).await;
    kube.wait_until("an Event", Duration::from_secs(5), |kube| !kube.events(NS).is_empty()).await.expect("event");

    let (_, metrics) = agent.get("/metrics").await.expect("metrics");
    let logs = agent.logs();
    assert!(logs.contains("source read failed"), "the failure is logged (with its cause)");
    assert!(logs.lines().count() > 50, "trace logging is on: {} lines", logs.lines().count());
    let events = serde_json::to_string(&kube.events(NS)).expect("events");
    let requests = format!("{:?}", kube.requests());
    for (what, text) in [("logs", &logs), ("metrics", &metrics), ("events", &events), ("API requests", &requests)] {
        assert!(!text.contains(PLANTED), "the password leaked into the {what}");
    }
    agent.stop().await;

    // `check` on the same config with a mistake elsewhere, and on a config where the secret lands in a wrong field.
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in [
        ("mistake", config.replace("maxReplicas: 10", "maxReplicas: 0")),
        ("misplaced", config.replace("maxReplicas: 10", "maxReplicas: ${QS_PLANTED}")),
    ] {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, format!("namespace: {NS}\n{text}")).expect("write");
        let out = tokio::process::Command::new(BINARY)
            .arg("check")
            .arg("-c")
            .arg(&file)
            .env("QS_PLANTED", PLANTED)
            .output()
            .await
            .expect("check");
        let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{shown}");
        assert!(!shown.contains(PLANTED), "the password leaked into `check` output: {shown}");
    }
}
