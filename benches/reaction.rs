//! Reaction time end to end: from a burst published to the real RabbitMQ to the scale write arriving at the API.
//!
//! `cargo bench --bench reaction [-- --bursts 20]`. The release agent runs with `pollInterval: 1s` against the
//! project's fake Kubernetes API; each round publishes 50 messages to an empty queue at a random point of the poll
//! cycle and times the first scale write the fake API receives, then purges the queue and waits for the scale-down
//! (window 0) before the next burst. Needs RabbitMQ on 127.0.0.1:5672 (`scripts/test.sh` starts it).

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/kube_api/mod.rs"]
mod kube_api;

use std::process::Stdio;
use std::time::{Duration, Instant};

use kube_api::FakeKube;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

const NS: &str = "bench";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bursts: usize =
        args.iter().position(|a| a == "--bursts").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(20);
    let queue = format!("qs-bench-reaction-{}", std::process::id());
    let connection =
        Connection::connect(AMQP, ConnectionProperties::default()).await.expect("RabbitMQ on 127.0.0.1:5672");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");

    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 1, &[("app", "worker")]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.yaml");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    std::fs::write(
        &file,
        format!(
            "namespace: {NS}\npollInterval: 1s\nmetrics: {{listen: '127.0.0.1:{port}'}}\ntargets:\n  - deployment: worker\n    maxReplicas: 10\n    behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n    sources: [{{type: rabbitmq, url: '{AMQP}', queue: {queue}, backlogPerWorker: 10}}]\n"
        ),
    )
    .expect("config");
    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_queue-scaler"))
        .arg("run")
        .arg("-c")
        .arg(&file)
        .env("KUBECONFIG", kube.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the agent");
    kube.wait_until("the agent to read the queue", Duration::from_secs(30), |kube| {
        kube.requests().iter().any(|r| r.query.contains("watch"))
    })
    .await
    .expect("agent up");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut latencies = Vec::new();
    for round in 0..bursts {
        // Land the burst at a different point of the poll cycle each round.
        tokio::time::sleep(Duration::from_millis(137 * (round as u64 % 7))).await;
        let writes_before = kube.scale_writes(NS, "worker").len();
        let sent = Instant::now();
        for i in 0..50 {
            channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    format!("job-{i}").as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .expect("publish");
        }
        kube.wait_until("the scale-up write", Duration::from_secs(10), |kube| {
            kube.scale_writes(NS, "worker").len() > writes_before
        })
        .await
        .expect("scaled up");
        let (at, replicas) = kube.scale_writes(NS, "worker")[writes_before];
        assert_eq!(replicas, 5, "50 messages at 10 per worker");
        latencies.push(at.duration_since(sent));
        channel.queue_purge(queue.as_str().into(), QueuePurgeOptions::default()).await.expect("purge");
        kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(10)).await.expect("scaled back down");
    }
    agent.kill().await.expect("stop");
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = latencies[latencies.len() / 2];
    println!("| bursts | min | median | p90 | max |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
        latencies.len(),
        ms(latencies[0]),
        ms(median),
        ms(latencies[latencies.len() * 9 / 10]),
        ms(latencies[latencies.len() - 1])
    );
}
