//! Shadow mode beside an HPA: the agent reads the real RabbitMQ, decides, writes nothing, and records what the
//! source saw and the live replica count — which follows a Deployment changed by hand — in a CSV that continues
//! across a restart; `replay --report` turns that recording into a report of both sides.

use std::time::Duration;

use queue_scaler::agent::shadow::HEADER;

use crate::support::agent::{Agent, BINARY};
use crate::support::eventually;
use crate::support::kube_api::{FakeKube, Kind};
use crate::support::rabbitmq::{TestQueue, amqp_url};

const NS: &str = "video";

/// The recording's rows as (time_s, source, backlog, target, live_replicas).
fn rows(path: &std::path::Path) -> Vec<(f64, String, f64, String, u32)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            Some((
                cells[0].parse().ok()?,
                cells[1].to_owned(),
                cells[2].parse().ok()?,
                cells[5].to_owned(),
                cells[6].parse().ok()?,
            ))
        })
        .collect()
}

#[tokio::test]
async fn shadow_mode_beside_an_hpa_records_what_the_live_autoscaler_did_and_writes_nothing() {
    let queue = TestQueue::new("shadow").await;
    queue.publish(0, 30).await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 2, &[("app", "worker")]);
    let dir = tempfile::tempdir().expect("temp dir");
    let hpa = dir.path().join("hpa.yaml");
    std::fs::write(&hpa, "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: worker}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}\n  minReplicas: 1\n  maxReplicas: 10\n").expect("write");
    let applied = kube.kubectl(&["apply", "--validate=false", "-n", NS, "-f", &hpa.display().to_string()]).await;
    assert!(applied.expect("kubectl").success);
    let record = dir.path().join("shadow.csv");
    let record_arg = record.display().to_string();
    let body = format!(
        "pollInterval: 250ms\ntargets:\n  - deployment: worker\n    maxReplicas: 10\n    sources:\n      - {{type: rabbitmq, url: '{}', queue: {}, backlogPerWorker: 5}}\n",
        amqp_url(),
        queue.name
    );
    let agent = Agent::start(&kube, NS, &body, &["--shadow", "--record", &record_arg]).await;
    agent.logged("shadow mode: reading and deciding beside", Duration::from_secs(20)).await;
    eventually(Duration::from_secs(20), "rows at 2 live replicas", || async {
        (rows(&record).iter().filter(|r| r.4 == 2).count() >= 4).then_some(())
    })
    .await;
    // The HPA (or a human) moves the Deployment: the recording follows.
    kube.modify(Kind::Deployment, NS, "worker", |d| d["spec"]["replicas"] = serde_json::json!(5));
    eventually(Duration::from_secs(10), "rows at 5 live replicas", || async {
        (rows(&record).iter().filter(|r| r.4 == 5).count() >= 4).then_some(())
    })
    .await;
    assert!(agent.logs().contains("would scale (dry run)"), "it decides: {}", agent.logs());
    agent.stop().await;
    assert!(kube.scale_writes(NS, "worker").is_empty(), "shadow mode wrote to the cluster");

    let text = std::fs::read_to_string(&record).expect("recording");
    assert!(text.starts_with(&format!("{HEADER}\n")), "{text}");
    let recorded = rows(&record);
    assert!(recorded.iter().all(|r| r.1 == format!("rabbitmq/{}", queue.name) && r.2 == 30.0 && r.3 == "worker"));
    assert!(recorded.windows(2).all(|w| w[1].0 >= w[0].0), "times only grow");
    let last = recorded.last().expect("rows").0;

    // A restart appends, its times continuing after the last row.
    let again = Agent::start(&kube, NS, &body, &["--shadow", "--record", &record_arg]).await;
    eventually(Duration::from_secs(20), "new rows after the restart", || async {
        (rows(&record).len() > recorded.len()).then_some(())
    })
    .await;
    again.stop().await;
    let after = rows(&record);
    assert!(
        after[recorded.len()..].iter().all(|r| r.0 > last),
        "continued after {last}: {:?}",
        &after[recorded.len()..]
    );
    assert_eq!(std::fs::read_to_string(&record).expect("recording").matches(HEADER).count(), 1);

    // The recording, as it is, goes through `replay --report`: both sides' replicas, cost and estimated waits.
    let replay_config = dir.path().join("replay.yaml");
    std::fs::write(
        &replay_config,
        body.replace("    sources:", "    latencyTarget: { maxWait: 1m, jobDuration: 10s }\n    sources:"),
    )
    .expect("write");
    let report_dir = dir.path().join("report");
    let json = std::process::Command::new(BINARY)
        .args(["replay", "-c", &replay_config.display().to_string(), "--observations", &record_arg, "--json"])
        .arg("--report")
        .arg(&report_dir)
        .output()
        .expect("run replay");
    assert!(json.status.success(), "replay --report failed: {}", String::from_utf8_lossy(&json.stderr));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON report");
    assert_eq!(report["target"], "worker");
    assert_eq!(report["ticks"].as_u64(), Some(after.len() as u64), "one tick per recorded row (one source)");
    // 30 waiting at 10 s a job: 2 live replicas (and 5 later) against the config's own count.
    let live = &report["live"];
    assert!(live["replica_seconds"].as_f64().is_some_and(|s| s > 0.0), "{report}");
    assert_eq!(live["max_replicas"], 5);
    assert!(live["estimated_max_wait_s"].as_f64().is_some_and(|w| (w - 150.0).abs() < 1e-6), "{report}");
    let ours = &report["queue_scaler"];
    assert!(ours["replica_seconds"].as_f64().is_some_and(|s| s > 0.0), "{report}");
    assert!(ours["estimated_p99_wait_s"].is_number(), "{report}");
    let markdown = std::fs::read_to_string(report_dir.join("worker.md")).expect("the Markdown report");
    assert!(markdown.contains("| replica-seconds |") && markdown.contains("estimates, not measurements"), "{markdown}");
    let svg = std::fs::read_to_string(report_dir.join("worker.svg")).expect("the plot");
    assert!(svg.contains("queue-scaler: p99 wait") && svg.contains("live: p99 wait"), "both sides are drawn");

    // And `tune` on the same recording: a trace fitted to it (no arrival rate recorded, so the backlog's growth
    // plus what the live replicas worked off, at the configured job duration), then the search and its plot.
    let plot = dir.path().join("tune.svg");
    let tuned = std::process::Command::new(BINARY)
        .args(["tune", "-c", &replay_config.display().to_string(), "--observations", &record_arg])
        .args(["--slo", "p99_wait<=2m", "--plot"])
        .arg(&plot)
        .output()
        .expect("run tune");
    let out = String::from_utf8_lossy(&tuned.stdout);
    assert!(tuned.status.success(), "tune failed: {}{out}", String::from_utf8_lossy(&tuned.stderr));
    assert!(out.contains(&format!("{record_arg}: fitted ")), "it says how it fitted the trace: {out}");
    assert!(out.contains("the backlog's growth plus what the live replicas worked off"), "{out}");
    assert!(out.contains("(latencyTarget.jobDuration)") && out.contains(&format!("recording {record_arg}, objective")));
    let svg = std::fs::read_to_string(&plot).expect("the frontier plot");
    assert!(svg.matches("<circle").count() >= 5 && svg.contains(">objective</text>"), "{svg}");
}
