//! The write path in a shared cluster: a hold set while a tick is under way, a Deployment changed by someone else
//! between the read and the write, a leader deposed in the middle of an idle-first scale-down, and idle-first on a
//! Deployment of 200 pods whose workers answer slowly.

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::json;

use crate::support::agent::{Agent, free_port};
use crate::support::eventually;
use crate::support::kube_api::{FakeKube, Fault, FaultKind, Gate, Kind};
use crate::support::workers::serve_status;

const NS: &str = "video";
const COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// One target on a fixed backlog with fast rate policies, `extra` indented into the target.
fn body(backlog: u32, extra: &str) -> String {
    format!(
        "pollInterval: 200ms\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 300\n    behavior: {{scaleUp: {{policies: [{{type: Pods, value: 100, periodSeconds: 15}}]}}, scaleDown: {{stabilizationWindowSeconds: 0}}}}\n{extra}    sources: [{{type: fixed, backlog: {backlog}, backlogPerWorker: 10}}]\n"
    )
}

/// Holds the next `times` fresh reads of the Deployment that a write begins with.
fn hold_the_writes_read(kube: &FakeKube, times: usize) -> Gate {
    let gate = Gate::default();
    kube.inject(Fault {
        method: Some(Method::GET),
        path_contains: "/deployments/worker".into(),
        kind: FaultKind::Hold(gate.clone()),
        times,
    });
    gate
}

async fn held(gate: &Gate) {
    eventually(Duration::from_secs(20), "a write to reach the API", || async {
        Some(()).filter(|_| gate.waiting() > 0)
    })
    .await;
}

#[tokio::test]
async fn a_hold_set_while_a_tick_is_under_way_stops_that_ticks_write() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let gate = hold_the_writes_read(&kube, 1);
    let agent = Agent::start(&kube, NS, &body(50, ""), &[]).await;
    held(&gate).await;
    // `queue-scaler scale worker --replicas 1 --hold 1h` lands after the tick read the target and decided on 5.
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert!(kube.set_annotation(NS, "worker", "queue-scaler.io/hold-until", &until));
    gate.open();
    agent.logged("a hold was set since the target was read", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(kube.scale_writes(NS, "worker").is_empty(), "written despite the hold: {}", agent.logs());
    agent.stop().await;
}

#[tokio::test]
async fn a_deployment_changed_between_the_read_and_the_write_is_decided_again_not_counted_as_a_failure() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let gate = Gate::default();
    kube.inject(Fault {
        method: Some(Method::PATCH),
        path_contains: "/deployments/worker/scale".into(),
        kind: FaultKind::Hold(gate.clone()),
        times: 1,
    });
    let agent = Agent::start(&kube, NS, &body(50, ""), &[]).await;
    held(&gate).await;
    // A GitOps tool touches the Deployment while the patch is on its way: its resourceVersion moves on.
    kube.modify(Kind::Deployment, NS, "worker", |d| d["metadata"]["labels"]["synced"] = json!("yes"));
    gate.open();
    agent.logged("not scaled", Duration::from_secs(10)).await;
    kube.wait_until_replicas(NS, "worker", 5, Duration::from_secs(10)).await.expect("decided again and written");
    let errors = agent.metric("queue_scaler_scale_write_errors_total{deployment=\"worker\"}").await;
    assert_eq!(errors, Some(0.0), "a 409 is a changed target, not a failed write: {}", agent.logs());
    agent.stop().await;
}

/// When the Lease was created or renewed, successfully, with `agent-old` as its holder.
fn old_leader_writes(kube: &FakeKube) -> Vec<Instant> {
    kube.requests()
        .iter()
        .filter(|r| (r.method == Method::PUT || r.method == Method::POST) && r.path.contains("/leases"))
        .filter(|r| matches!(r.status, Some(200 | 201)))
        .filter(|r| r.body.as_ref().is_some_and(|b| b["spec"]["holderIdentity"] == "agent-old"))
        .map(|r| r.at)
        .collect()
}

fn pod_patches(kube: &FakeKube) -> Vec<Instant> {
    kube.requests().iter().filter(|r| r.method == Method::PATCH && r.path.contains("/pods/")).map(|r| r.at).collect()
}

#[tokio::test]
async fn a_leader_deposed_in_the_middle_of_an_idle_first_scale_down_writes_nothing_more() {
    // The shortest lease the config allows: the tightest margins.
    const LEASE: &str = "leaderElection: {enabled: true, leaseName: qs-writes, leaseDuration: 2s}\n";
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 3, &[("app", "worker")]);
    let port = free_port();
    let mut workers = Vec::new();
    for (i, in_flight) in [0, 2, 1].into_iter().enumerate() {
        let ip = format!("127.0.3.{}", i + 1);
        kube.create_pod(NS, &format!("worker-{i}"), &[("app", "worker")], &ip);
        workers.push(serve_status(&ip, port, in_flight, Duration::ZERO).await);
    }
    // The old leader's scale-down stops at its list of pods; it is frozen there (a GC pause, a stalled node).
    let gate = Gate::default();
    kube.inject(Fault {
        method: Some(Method::GET),
        path_contains: "labelSelector=".into(),
        kind: FaultKind::Hold(gate.clone()),
        times: 1,
    });
    let idle_first = format!("    scaleDown: {{idleFirst: true, workerMetricsPort: {port}}}\n");
    let config = format!("{LEASE}{}", body(0, &idle_first));
    let old = Agent::start_with_env(&kube, NS, &config, &[], &[("POD_NAME", "agent-old")]).await;
    held(&gate).await;
    let new = Agent::start_with_env(&kube, NS, &config, &[], &[("POD_NAME", "agent-new")]).await;
    old.signal("STOP");
    let paused = Instant::now();
    // The standby takes over and scales down, marking the pods itself.
    kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(15)).await.expect("the new leader scales down");
    let (new_first_write, _) = kube.scale_writes(NS, "worker")[0];
    let old_last_write = old_leader_writes(&kube).into_iter().filter(|at| *at < new_first_write).max();
    println!(
        "new leader's first write {:?} after the old one froze, {:?} after the old leader's last write (lease 2 s)",
        new_first_write - paused,
        old_last_write.map(|at| new_first_write - at)
    );
    // What the new leader marked is put aside, so anything the old one writes from now on shows.
    for i in 0..3 {
        kube.modify(Kind::Pod, NS, &format!("worker-{i}"), |p| p["metadata"]["annotations"][COST] = json!("999"));
    }
    let settled = Instant::now();
    gate.open();
    old.signal("CONT");
    old.logged("lost leadership", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late: Vec<_> = pod_patches(&kube).into_iter().filter(|at| *at > settled).collect();
    assert!(
        late.is_empty(),
        "the deposed leader patched {} pods after the new leader wrote: {}",
        late.len(),
        old.logs()
    );
    assert_eq!(kube.scale_writes(NS, "worker").len(), 1, "only the new leader's scale write");
    let late_renewals: Vec<_> = old_leader_writes(&kube).into_iter().filter(|at| *at > new_first_write).collect();
    assert!(
        late_renewals.is_empty(),
        "the deposed leader renewed the Lease after the new leader wrote: {}",
        old.logs()
    );
    for i in 0..3 {
        let cost = kube.pod(NS, &format!("worker-{i}")).expect("pod")["metadata"]["annotations"][COST].clone();
        assert_eq!(cost, json!("999"), "worker-{i}");
    }
    old.signal("KILL");
    new.stop().await;
    workers.iter().for_each(|w| w.abort());
}

#[tokio::test]
async fn idle_first_scales_down_two_hundred_slow_pods_within_its_budget() {
    const PODS: usize = 200;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", PODS as u32, &[("app", "worker")]);
    let port = free_port();
    let mut workers = Vec::new();
    for i in 0..PODS {
        let ip = format!("127.0.4.{}", i + 1);
        // Every tenth pod is busy; answers take 0–2 s, so those over the 1 s limit count as unknown.
        let in_flight = u64::from(i % 10 == 0);
        let delay = Duration::from_millis((i as u64 * 2000) / PODS as u64);
        kube.create_pod(NS, &format!("worker-{i:03}"), &[("app", "worker")], &ip);
        workers.push(serve_status(&ip, port, in_flight, delay).await);
    }
    let idle_first = format!("    scaleDown: {{idleFirst: true, workerMetricsPort: {port}}}\n");
    let agent = Agent::start(&kube, NS, &body(0, &idle_first), &[]).await;
    let mut took = Vec::new();
    let mut asked = Instant::now();
    for round in 0..10 {
        kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}: {}", agent.logs()));
        let (written, _) = *kube.scale_writes(NS, "worker").last().expect("a write");
        took.push(written.saturating_duration_since(asked));
        if round == 0 {
            let cost = |i: usize| {
                kube.pod(NS, &format!("worker-{i:03}")).expect("pod")["metadata"]["annotations"][COST].clone()
            };
            assert_eq!(cost(1), json!("0"), "an idle pod that answered in time goes first");
            assert_eq!(cost(10), json!("100"), "a busy pod that answered in time goes last");
            assert_eq!(cost(199), json!("1"), "a pod that answered too late sits between");
        }
        // Back to 200 under a short hold, as a human would: not someone fighting the agent.
        let hold = Duration::from_millis(600);
        let until = (chrono::Utc::now() + chrono::Duration::from_std(hold).expect("a hold")).to_rfc3339();
        kube.set_annotation(NS, "worker", "queue-scaler.io/hold-until", &until);
        kube.modify(Kind::Deployment, NS, "worker", |d| d["spec"]["replicas"] = json!(PODS));
        asked = Instant::now() + hold;
    }
    took.sort();
    println!("idle-first scale-down of {PODS} pods: median {:?}, max {:?} (10 rounds)", took[5], took[9]);
    assert!(agent.logs().contains("set pod-deletion-cost: idle pods go first"), "{}", agent.logs());
    agent.stop().await;
    workers.iter().for_each(|w| w.abort());
}

async fn status_command(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(crate::support::agent::BINARY)
        .arg("status")
        .args(args)
        .env_remove("QUEUE_SCALER_CONFIG")
        .output()
        .await
        .expect("run queue-scaler status");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn status_shows_each_targets_counts_decision_and_sources_as_a_table_and_as_json() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    kube.create_deployment(NS, "held", 3, &[("app", "held")]);
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    kube.set_annotation(NS, "held", "queue-scaler.io/hold-until", &until);
    let body = "pollInterval: 200ms\ntargets:\n  - deployment: worker\n    maxReplicas: 10\n    sources: [{type: fixed, backlog: 40, backlogPerWorker: 10}, {type: prometheus, url: 'http://127.0.0.1:1', query: 'sum(x)', backlogPerWorker: 5}]\n  - deployment: held\n    maxReplicas: 10\n    sources: [{type: fixed, backlog: 0, backlogPerWorker: 10}]\n";
    let agent = Agent::start(&kube, NS, body, &[]).await;
    kube.wait_until_replicas(NS, "worker", 4, Duration::from_secs(20)).await.expect("scaled");
    let address = agent.metrics_address().to_string();
    let row = |table: &str, deployment: &str| -> Vec<String> {
        let line = table.lines().find(|l| l.starts_with(&format!("{deployment} "))).unwrap_or_default();
        line.split_whitespace().map(str::to_owned).collect()
    };
    let (code, table, stderr) = eventually(Duration::from_secs(10), "a status showing the decision", || async {
        let shown = status_command(&["--agent", &address]).await;
        (row(&shown.1, "worker")[..3] == ["worker", "decided", "4"]).then_some(shown)
    })
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(table.starts_with("leader: yes\nDEPLOYMENT  STATE    CURRENT  DESIRED  RULE"), "{table}");
    // A failing source holds the count: the rule that had the last word says so.
    assert_eq!(row(&table, "worker")[..5], ["worker", "decided", "4", "4", "SourceFailing"], "{table}");
    assert_eq!(row(&table, "held")[..4], ["held", "held", "3", "-"], "{table}");
    assert!(row(&table, "held")[5].starts_with("until"), "{table}");
    assert!(table.contains("    fixed/40: backlog 40 ("), "{table}");
    assert!(table.contains("    prometheus/sum(x): failing (unreachable): cannot reach http://127.0.0.1:1"), "{table}");

    // The JSON, also found through the agent's config file.
    let config = agent.config_path().display().to_string();
    let (code, json, stderr) = status_command(&["-c", &config, "--json"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let worker = status["targets"].as_array().expect("targets").iter().find(|t| t["deployment"] == "worker").cloned();
    let worker = worker.expect("the worker target");
    assert_eq!((worker["current"].clone(), worker["desired"].clone()), (json!(4), json!(4)));
    assert_eq!(worker["sources"][1]["error_kind"], "unreachable");
    assert!(worker["sources"][0]["age_seconds"].as_f64().is_some_and(|age| age < 5.0), "{worker}");

    // The metrics users alert on.
    let series = |name: &str| format!("{name}{{deployment=\"worker\"}}");
    assert_eq!(agent.metric(&series("queue_scaler_min_replicas")).await, Some(1.0));
    assert_eq!(agent.metric(&series("queue_scaler_max_replicas")).await, Some(10.0));
    assert_eq!(agent.metric(&series("queue_scaler_fallback_active")).await, Some(0.0));
    let scaled_at = agent.metric(&series("queue_scaler_last_scale_timestamp_seconds")).await.unwrap_or(0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs_f64();
    assert!((now - 60.0..=now).contains(&scaled_at), "{scaled_at}");
    let rule = "queue_scaler_decision{deployment=\"worker\",rule=\"SourceFailing\"}";
    assert_eq!(agent.metric(rule).await, Some(1.0));
    let active = "queue_scaler_source_active{deployment=\"worker\",source=\"fixed/40\"}";
    assert_eq!(agent.metric(active).await, Some(1.0));
    let (_, exposition) = agent.get("/metrics").await.expect("metrics");
    let build = exposition.lines().find(|l| l.starts_with("queue_scaler_build_info{")).expect("build info");
    assert!(build.contains("revision=\"") && !build.contains("revision=\"unknown\""), "{build}");
    agent.stop().await;

    let (code, _, stderr) = status_command(&["--agent", "127.0.0.1:1"]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot ask the agent at http://127.0.0.1:1/status"), "{stderr}");
}

#[tokio::test]
async fn a_hold_that_ends_while_the_queue_reads_zero_waits_a_full_window_before_scaling_down() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let window = "    behavior: {scaleDown: {stabilizationWindowSeconds: 6}}\n";
    let body = format!(
        "pollInterval: 200ms\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 30\n{window}    sources: [{{type: fixed, backlog: 0, backlogPerWorker: 10}}]\n"
    );
    let agent = Agent::start(&kube, NS, &body, &[]).await;
    agent.ready(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    // A human takes over for two seconds with the CLI: 20 replicas while the queue reads 0.
    let scaled = tokio::process::Command::new(crate::support::agent::BINARY)
        .args(["scale", "worker", "--replicas", "20", "--hold", "2s", "--namespace", NS])
        .env("KUBECONFIG", kube.kubeconfig_path())
        .output()
        .await
        .expect("queue-scaler scale");
    assert!(scaled.status.success(), "{}", String::from_utf8_lossy(&scaled.stderr));
    let hold_ends = Instant::now() + Duration::from_secs(2);
    kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(20)).await.expect("down after a window");
    let (down_at, _) = *kube.scale_writes(NS, "worker").last().expect("the agent's scale-down");
    let after_hold = down_at.saturating_duration_since(hold_ends);
    println!("scaled down {after_hold:?} after the hold ended (window 6 s)");
    assert!(after_hold >= Duration::from_secs(5), "dropped {after_hold:?} after the hold, before a 6 s window");
    agent.stop().await;
}
