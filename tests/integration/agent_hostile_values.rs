//! Values no queue can have, from a real Prometheus, never become a scale: the agent rejects each with a reason it
//! logs, counts it as `kind="rejected"`, and holds the count — even at `minReplicas: 0`, where treating a bad value
//! as "no backlog" would scale to zero. A sane query next to them proves the agent and Prometheus work meanwhile.

use std::time::Duration;

use crate::support::agent::{Agent, free_port};
use crate::support::eventually;
use crate::support::kube_api::FakeKube;
use crate::support::prometheus::Prometheus;

const NS: &str = "video";

/// (deployment and source name, query, what the log must say about it). The queries are constant, so Prometheus
/// answers them without scraping anything.
const HOSTILE: [(&str, &str, &str); 6] = [
    ("negative", "vector(-5)", "returned -5, which is not a count"),
    ("nan", "vector(NaN)", "returned NaN, which is not a count"),
    ("zero-by-zero", "0/0", "returned NaN, which is not a count"),
    ("infinite", "vector(+Inf)", "returned +Inf, which is not a count"),
    ("huge", "vector(1e300)", "backlog 1e300 is not a count of messages"),
    (
        "many-series",
        r#"label_replace(vector(1), "s", "a", "", "") or label_replace(vector(2), "s", "b", "", "") or label_replace(vector(3), "s", "c", "", "") or label_replace(vector(4), "s", "d", "", "")"#,
        "returned 4 series",
    ),
];

fn target(deployment: &str, url: &str, query: &str) -> String {
    format!(
        "  - deployment: {deployment}\n    minReplicas: 0\n    maxReplicas: 20\n    behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n    sources:\n      - type: prometheus\n        name: {deployment}\n        url: {url}\n        query: '{query}'\n        backlogPerWorker: 10\n"
    )
}

#[tokio::test]
async fn hostile_query_results_are_rejected_with_a_reason_and_never_scale() {
    // Nothing needs scraping: the target is a closed port.
    let prometheus = Prometheus::start(format!("127.0.0.1:{}", free_port()).parse().expect("address")).await;
    let kube = FakeKube::start().await;
    let mut targets = vec![target("sane", &prometheus.url, "vector(25)")];
    kube.create_deployment(NS, "sane", 1, &[("app", "sane")]);
    for (name, query, _) in HOSTILE {
        kube.create_deployment(NS, name, 3, &[("app", name)]);
        targets.push(target(name, &prometheus.url, query));
    }
    let body = format!("pollInterval: 500ms\nreadTimeout: 2s\ntargets:\n{}", targets.concat());
    let agent = Agent::start(&kube, NS, &body, &[]).await;
    kube.wait_until_replicas(NS, "sane", 3, Duration::from_secs(20)).await.expect("25 at 10 per replica: 3");

    for (name, _, says) in HOSTILE {
        let rejected =
            format!("queue_scaler_source_errors_total{{deployment=\"{name}\",source=\"{name}\",kind=\"rejected\"}}");
        eventually(Duration::from_secs(10), &format!("{name}: three rejected reads"), || async {
            agent.metric(&rejected).await.filter(|n| *n >= 3.0)
        })
        .await;
        let held = format!("queue_scaler_decision{{deployment=\"{name}\",rule=\"SourceFailing\"}}");
        assert_eq!(agent.metric(&held).await, Some(1.0), "{name}: the decision holds");
        let backlog = format!("queue_scaler_backlog{{deployment=\"{name}\",source=\"{name}\"}}");
        assert!(agent.metric(&backlog).await.is_none_or(|v| v == 0.0), "{name}: a rejected value is not exported");
        let logged = agent.logs().lines().any(|l| l.contains(&format!("deployment={name} ")) && l.contains(says));
        assert!(logged, "{name}: the log says {says:?}:\n{}", agent.logs());
    }
    for (name, _, _) in HOSTILE {
        assert!(kube.scale_writes(NS, name).is_empty(), "{name}: never written");
        assert_eq!(kube.replicas(NS, name), Some(3), "{name}: held");
    }
    agent.stop().await;
}
