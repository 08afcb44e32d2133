//! The chart's PrometheusRule and Grafana dashboard: every alert and every panel query goes through real
//! `promtool check rules`; every metric they read is one a running agent (or a worker's drain endpoint) actually
//! exports, so a renamed metric breaks a test rather than a user's alerting; and a real Prometheus scraping a real
//! agent fires the alerts it should, and only those.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tool::{self, Rendered};
use crate::support::agent::Agent;
use crate::support::eventually;
use crate::support::kube_api::FakeKube;
use crate::support::prometheus::Prometheus;

/// The chart's alerts, by name.
const ALERTS: [&str; 7] = [
    "QueueScalerAtMaxReplicasBacklogGrowing",
    "QueueScalerSourceFailing",
    "QueueScalerSourceErrors",
    "QueueScalerScaleWritesFailing",
    "QueueScalerNoLeader",
    "QueueScalerNotDraining",
    "QueueScalerAgentDown",
];

/// Prometheus's own series for every target it scrapes: the only metric the chart reads that no agent exports.
const PROMETHEUS_OWN: &str = "up";

async fn render_with(overrides: Value) -> Rendered {
    let kube = FakeKube::start().await;
    tool::render(&kube, "video", "queue-scaler", &["transcoding-worker.yaml"], Some(overrides))
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

fn monitoring_on() -> Value {
    json!({"prometheusRule": {"enabled": true}, "dashboard": {"enabled": true}})
}

/// The rules of the rendered PrometheusRule.
fn alert_rules(rendered: &Rendered) -> Vec<Value> {
    let groups = rendered.one("PrometheusRule")["spec"]["groups"].as_array().expect("groups").clone();
    groups.iter().flat_map(|group| group["rules"].as_array().expect("rules").clone()).collect()
}

/// The dashboard's JSON, from its ConfigMap.
fn dashboard(rendered: &Rendered) -> Value {
    let map = rendered.objects.iter().find(|o| o["kind"] == "ConfigMap" && o["data"]["queue-scaler.json"].is_string());
    let text = map.expect("the dashboard ConfigMap")["data"]["queue-scaler.json"].as_str().expect("JSON").to_owned();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel query of the dashboard (rows included), with its panel's title.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("a PromQL target").to_owned();
                out.push((panel["title"].as_str().unwrap_or("?").to_owned(), expr));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The queries of the dashboard's query variables (`label_values(...)`, Grafana's, not PromQL).
fn variable_queries(dashboard: &Value) -> Vec<String> {
    let variables = dashboard["templating"]["list"].as_array().expect("variables");
    variables
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| v["query"]["query"].as_str().expect("a query").to_owned())
        .collect()
}

/// A Grafana query as Prometheus would receive it: `$__rate_interval` and friends become a duration, every other
/// variable (used inside a regex matcher) a match-anything regex.
fn as_sent(query: &str) -> String {
    let mut out = String::new();
    let mut rest = query;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let braced = tail.starts_with('{');
        let name_start = usize::from(braced);
        let name_len = tail[name_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len() - name_start);
        let name = &tail[name_start..name_start + name_len];
        out.push_str(if name.starts_with("__") { "5m" } else { ".*" });
        rest = &tail[name_start + name_len + usize::from(braced)..];
    }
    out.push_str(rest);
    out
}

/// The metric names a PromQL expression selects: identifiers followed by a `{…}` matcher, and any `queue_scaler_`
/// name wherever it stands. String literals are skipped, so label values never count.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if next == Some(&'{') || word.starts_with("queue_scaler_") {
                names.insert(word);
            }
        } else if c.is_ascii_digit() {
            // A number or a duration such as 15m: its letters are not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Runs `promtool check rules` on `groups` and returns how many rules it found; fails the test if it refuses.
async fn promtool_check_rules(groups: &Value) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rules.yaml");
    // JSON is YAML: the rule file exactly as rendered, no reformatting on the way.
    std::fs::write(&file, serde_json::to_string_pretty(groups).expect("JSON")).expect("write rules");
    let out = tokio::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .await
        .expect("promtool is installed (scripts/test.sh installs it)");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check rules refused:\n{report}\n{groups:#}");
    let found = report.split("SUCCESS: ").nth(1).and_then(|s| s.split_whitespace().next()?.parse().ok());
    found.unwrap_or_else(|| panic!("promtool said no rule count: {report}"))
}

#[tokio::test]
async fn the_prometheus_rule_carries_every_alert_and_each_passes_promtool() {
    let overrides = json!({"prometheusRule": {"enabled": true, "labels": {"release": "prometheus"},
        "alertLabels": {"team": "video"}}});
    let rendered = render_with(overrides).await;
    let rule = rendered.one("PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus", "found by the Prometheus's ruleSelector");
    let rules = alert_rules(&rendered);
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().expect("an alert")).collect();
    assert_eq!(names, ALERTS);
    for rule in &rules {
        let name = &rule["alert"];
        assert_eq!(rule["labels"]["team"], "video", "{name}: alertLabels reach every alert");
        assert!(["warning", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap_or("")), "{name}");
        assert!(rule["annotations"]["summary"].is_string() && rule["annotations"]["description"].is_string());
        assert!(rule["for"].is_string(), "{name}: a moment's blip never pages");
        let expr = rule["expr"].as_str().expect("expr");
        // Only this release's agents: the default selector, the operator's labels for the agent container.
        assert!(expr.contains(r#"{namespace="video", container="queue-scaler"}"#), "{name}: {expr}");
    }
    let no_leader = rules.iter().find(|r| r["alert"] == "QueueScalerNoLeader").expect("NoLeader");
    assert_eq!(no_leader["for"], "1m", "no leader for a minute");
    let found = promtool_check_rules(&rule["spec"]).await;
    assert_eq!(found, ALERTS.len(), "promtool read every alert");

    // Alerts can be left out by name, and a misspelt name is refused rather than ignored.
    let rendered = render_with(json!({"prometheusRule": {"enabled": true, "disabled": ["QueueScalerSourceErrors"],
        "selector": "job=\"queue-scaler\""}}))
    .await;
    let rules = alert_rules(&rendered);
    assert_eq!(rules.len(), ALERTS.len() - 1);
    assert!(rules.iter().all(|r| r["alert"] != "QueueScalerSourceErrors"));
    assert!(rules.iter().all(|r| r["expr"].as_str().unwrap_or("").contains(r#"{job="queue-scaler"}"#)));
    promtool_check_rules(&rendered.one("PrometheusRule")["spec"]).await;
    let kube = FakeKube::start().await;
    let typo = json!({"prometheusRule": {"enabled": true, "disabled": ["QueueScalerDown"]}});
    let error = tool::render(&kube, "video", "queue-scaler", &[], Some(typo)).await.expect_err("a typo is refused");
    assert!(error.contains("prometheusRule.disabled: QueueScalerDown is not one of the chart's alerts"), "{error}");
}

#[tokio::test]
async fn every_dashboard_query_parses_with_promtool_and_it_carries_the_sidecar_label() {
    let rendered = render_with(monitoring_on()).await;
    let map = rendered.objects.iter().find(|o| o["metadata"]["name"] == "queue-scaler-dashboard").expect("ConfigMap");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1", "Grafana's sidecar finds it by this label");
    let dashboard = dashboard(&rendered);
    assert_eq!(dashboard["uid"], "queue-scaler");
    let queries = panel_queries(&dashboard);
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(index, (_, expr))| json!({"record": format!("dashboard:query_{index}"), "expr": as_sent(expr)}))
        .collect();
    let found = promtool_check_rules(&json!({"groups": [{"name": "dashboard", "rules": rules}]})).await;
    assert_eq!(found, queries.len(), "promtool read every panel query");

    // What the dashboard must show (issue 17): backlog, desired and current replicas, decision rules, source
    // errors, read latency, and the workers' drain metrics.
    let all: BTreeSet<String> = queries.iter().flat_map(|(_, expr)| metric_names(expr)).collect();
    for needed in [
        "queue_scaler_backlog",
        "queue_scaler_desired_replicas",
        "queue_scaler_current_replicas",
        "queue_scaler_decision",
        "queue_scaler_source_errors_total",
        "queue_scaler_source_read_duration_seconds_bucket",
        "queue_scaler_drain_jobs_in_flight",
        "queue_scaler_drain_jobs_handed_back_total",
        "queue_scaler_drain_duration_seconds",
    ] {
        assert!(all.contains(needed), "no panel reads {needed}: {all:?}");
    }

    // Another label for a differently configured sidecar: Helm merges maps, so the default goes by setting it null.
    let labels = json!({"grafana_dashboard": null, "dashboards": "queue"});
    let rendered = render_with(
        json!({"dashboard": {"enabled": true, "labels": labels, "annotations": {"grafana_folder": "Autoscaling"}}}),
    )
    .await;
    let map = rendered.objects.iter().find(|o| o["metadata"]["name"] == "queue-scaler-dashboard").expect("ConfigMap");
    assert_eq!(map["metadata"]["labels"]["dashboards"], "queue");
    assert!(map["metadata"]["labels"].get("grafana_dashboard").is_none(), "the default label is gone");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "Autoscaling");
}

/// The names in a Prometheus text exposition's samples.
fn exported(exposition: &str) -> BTreeSet<String> {
    let samples = exposition.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty());
    samples.map(|line| line.split(['{', ' ']).next().unwrap_or_default().to_owned()).collect()
}

/// An agent whose only source fails (nothing listens on port 1), with a fallback after one failure: it reads,
/// fails, falls back, decides and writes 1 → 2 replicas, so every series it has is out.
async fn agent_falling_back(kube: &FakeKube) -> Agent {
    kube.create_deployment("video", "worker", 1, &[("app", "worker")]);
    let config = "pollInterval: 1s\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 4\n    fallback: {failureThreshold: 1, replicas: 2}\n    sources:\n      - {type: rabbitmq, url: 'amqp://127.0.0.1:1/%2f', queue: nowhere, backlogPerWorker: 10}\n";
    let agent = Agent::start(kube, "video", config, &[]).await;
    kube.wait_until_replicas("video", "worker", 2, Duration::from_secs(20)).await.expect("the fallback was written");
    let scaled = "queue_scaler_scale_events_total{deployment=\"worker\",direction=\"up\"}";
    eventually(Duration::from_secs(5), "the write is counted", || async {
        agent.metric(scaled).await.filter(|n| *n == 1.0)
    })
    .await;
    agent
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: worker\r\n\r\n").await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response.split_once("\r\n\r\n").expect("a head").1.to_owned()
}

#[tokio::test]
async fn alerts_and_dashboard_read_only_metrics_the_agent_and_the_workers_export() {
    let rendered = render_with(monitoring_on()).await;
    let dashboard = dashboard(&rendered);
    let mut used: Vec<(String, String)> = Vec::new();
    for rule in alert_rules(&rendered) {
        let expr = rule["expr"].as_str().expect("expr");
        used.extend(metric_names(expr).into_iter().map(|name| (format!("alert {}", rule["alert"]), name)));
    }
    for (title, expr) in panel_queries(&dashboard) {
        used.extend(metric_names(&expr).into_iter().map(|name| (format!("panel {title:?}"), name)));
    }
    for query in variable_queries(&dashboard) {
        used.extend(metric_names(&query).into_iter().map(|name| ("a dashboard variable".to_owned(), name)));
    }
    assert!(used.len() > 20, "names found: {used:?}");

    let kube = FakeKube::start().await;
    let agent = agent_falling_back(&kube).await;
    let (_, agent_exposition) = agent.get("/metrics").await.expect("the agent's metrics");
    agent.stop().await;

    // A worker with the drain library, as the agent's idle-first and quiet scale-down talk to it.
    let drain = queue_scaler::drain::Drain::builder().signals(false).install().expect("install the drain");
    let worker = drain.serve("127.0.0.1:0").await.expect("serve");
    let worker_exposition = scrape(worker).await;

    let mut available = exported(&agent_exposition);
    available.extend(exported(&worker_exposition));
    available.insert(PROMETHEUS_OWN.to_owned());
    let missing: Vec<_> = used.iter().filter(|(_, name)| !available.contains(name)).collect();
    assert!(
        missing.is_empty(),
        "read by the chart but exported by neither the agent nor a worker: {missing:?}\nagent:\n{agent_exposition}\nworker:\n{worker_exposition}"
    );
}

/// The alerts firing in `prometheus`, with their `deployment` label (empty when they have none).
async fn firing(prometheus: &Prometheus) -> Option<BTreeSet<(String, String)>> {
    let body: Value = reqwest::get(format!("{}/api/v1/alerts", prometheus.url)).await.ok()?.json().await.ok()?;
    let alerts = body["data"]["alerts"].as_array()?;
    let firing = alerts.iter().filter(|alert| alert["state"] == "firing");
    let label = |alert: &Value, name: &str| alert["labels"][name].as_str().unwrap_or_default().to_owned();
    Some(firing.map(|alert| (label(alert, "alertname"), label(alert, "deployment"))).collect())
}

#[tokio::test]
async fn the_alerts_fire_in_a_real_prometheus_scraping_a_real_agent() {
    let rendered = render_with(json!({"prometheusRule": {"enabled": true}})).await;
    // The expressions exactly as rendered; only `for` goes to 0 s, so the test need not wait out 1 to 15 minutes.
    let mut rules = rendered.one("PrometheusRule")["spec"].clone();
    for group in rules["groups"].as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            rule["for"] = json!("0s");
        }
    }
    let kube = FakeKube::start().await;
    let agent = agent_falling_back(&kube).await;
    // The labels the Prometheus Operator gives a target found through the chart's ServiceMonitor.
    let labels = [("namespace", "video"), ("container", "queue-scaler")];
    let rules = serde_json::to_string(&rules).expect("JSON");
    let prometheus = Prometheus::start_with_rules(agent.metrics_address(), &labels, Some(&rules)).await;

    // The source fails and the fallback is in force: exactly the two source alerts fire, for that Deployment.
    let expected: BTreeSet<(String, String)> =
        [("QueueScalerSourceErrors", "worker"), ("QueueScalerSourceFailing", "worker")]
            .into_iter()
            .map(|(alert, deployment)| (alert.to_owned(), deployment.to_owned()))
            .collect();
    eventually(Duration::from_secs(60), "the source alerts to fire, and only them", || async {
        firing(&prometheus).await.filter(|alerts| *alerts == expected)
    })
    .await;

    // The agent goes away: the agent-down alert fires.
    agent.stop().await;
    eventually(Duration::from_secs(60), "QueueScalerAgentDown to fire", || async {
        let alerts = firing(&prometheus).await?;
        alerts.contains(&("QueueScalerAgentDown".to_owned(), String::new())).then_some(())
    })
    .await;
}
