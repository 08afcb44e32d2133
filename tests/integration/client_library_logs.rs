//! One broker outage, one warning per interval: the client libraries' own logs (lapin logs two or three ERROR lines
//! per failed reconnect) stay out of the agent's log unless `RUST_LOG` names them.

use std::time::Duration;

use crate::support::agent::{Agent, free_port};
use crate::support::kube_api::FakeKube;

const NS: &str = "video";

/// A RabbitMQ source on a port nothing listens on: every read fails with a refused connection.
fn refused_broker_body() -> String {
    format!(
        "pollInterval: 100ms\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 5\n    sources:\n      - type: rabbitmq\n        url: amqp://guest:guest@127.0.0.1:{}/%2f\n        queue: jobs\n        backlogPerWorker: 10\n",
        free_port()
    )
}

/// The WARN and ERROR lines of a text log, but the config's own warnings, printed once at start (`check`'s).
fn loud_lines(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| !l.contains(": warning: "))
        .collect()
}

#[tokio::test]
async fn a_refusing_broker_gives_the_agents_warning_once_per_interval_and_nothing_from_lapin() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let agent = Agent::start(&kube, NS, &refused_broker_body(), &[]).await;
    // The agent warns on the first failed read and on every tenth: wait for the twentieth's warning.
    agent.logged("failed_reads=20", Duration::from_secs(60)).await;
    let logs = agent.logs();
    agent.stop().await;
    let loud = loud_lines(&logs);
    let noise: Vec<&&str> =
        loud.iter().filter(|l| !l.contains("source read failed; holding the replica count")).collect();
    assert!(noise.is_empty(), "WARN/ERROR lines besides the agent's own warning: {noise:#?}");
    let warned_at: Vec<&str> =
        loud.iter().filter_map(|l| l.split("failed_reads=").nth(1)?.split_whitespace().next()).collect();
    assert_eq!(warned_at[..3], ["1", "10", "20"], "one warning per interval: {loud:#?}");
}

#[tokio::test]
async fn rust_log_can_still_ask_for_a_client_librarys_logs() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let env = [("RUST_LOG", "info,lapin=trace,amq_protocol=trace")];
    let agent = Agent::start_with_env(&kube, NS, &refused_broker_body(), &[], &env).await;
    agent.logged("failed_reads=1 ", Duration::from_secs(30)).await;
    crate::support::eventually(Duration::from_secs(30), "lapin's own log lines", || async {
        agent.logs().lines().any(|l| l.contains(" lapin") || l.contains(" amq_protocol")).then_some(())
    })
    .await;
    agent.stop().await;
}
