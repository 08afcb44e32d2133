//! The agent's own footprint: resident memory and CPU with 1, 10 and 1,000 targets at a 1 s poll interval.
//!
//! `cargo bench --bench footprint [-- 1 10 1000] [--seconds 30]`. For each target count, the release binary runs
//! against the project's fake Kubernetes API with one Deployment per target and a `fixed` source (no broker, so
//! the numbers are the agent's alone). Once every Deployment has been scaled, the steady state is measured from
//! `/proc`: CPU as (utime + stime) over the window, RSS as VmRSS at its end and VmHWM (peak), and of the RSS the
//! agent's own memory (RssAnon); the rest is clean, shared pages of the binary's code, which the kernel maps in
//! 64 KB fault-around chunks and may drop under pressure.

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/kube_api/mod.rs"]
mod kube_api;

use std::process::Stdio;
use std::time::{Duration, Instant};

use kube_api::FakeKube;

const NS: &str = "bench";

fn config(targets: usize, metrics_port: u16) -> String {
    let mut text =
        format!("namespace: {NS}\npollInterval: 1s\nmetrics: {{listen: '127.0.0.1:{metrics_port}'}}\ntargets:\n");
    for i in 0..targets {
        text.push_str(&format!(
            "  - deployment: worker-{i}\n    maxReplicas: 10\n    sources: [{{type: fixed, backlog: 20, backlogPerWorker: 10}}]\n"
        ));
    }
    text
}

/// How much of a process's memory the kernel counts, in kB.
struct Memory {
    rss: u64,
    peak: u64,
    anonymous: u64,
}

/// (utime + stime in clock ticks, memory) of `pid`.
fn sample(pid: u32) -> (u64, Memory) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("stat format").1.split(' ').collect();
    let ticks = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb = |key: &str| {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    (ticks, Memory { rss: kb("VmRSS:"), peak: kb("VmHWM:"), anonymous: kb("RssAnon:") })
}

fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().expect("getconf");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}

async fn measure(targets: usize, window: Duration) -> (f64, Memory, Duration) {
    let kube = FakeKube::start().await;
    for i in 0..targets {
        kube.create_deployment(NS, &format!("worker-{i}"), 1, &[("app", &format!("worker-{i}"))]);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.yaml");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    std::fs::write(&file, config(targets, port)).expect("config");
    let started = Instant::now();
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
    let pid = agent.id().expect("pid");
    kube.wait_until("every Deployment scaled", Duration::from_secs(120), |kube| {
        (0..targets).all(|i| kube.replicas(NS, &format!("worker-{i}")) == Some(2))
    })
    .await
    .expect("all scaled");
    let settled = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (before, _) = sample(pid);
    let begun = Instant::now();
    tokio::time::sleep(window).await;
    let (after, memory) = sample(pid);
    let cpu = (after - before) as f64 / clock_ticks_per_second() / begun.elapsed().as_secs_f64() * 100.0;
    agent.kill().await.expect("stop the agent");
    (cpu, memory, settled)
}

#[tokio::main]
async fn main() {
    let (mut seconds, mut counts) = (30, Vec::new());
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).expect("--seconds N"),
            count => counts.push(count.parse::<usize>().expect("a target count")),
        }
    }
    if counts.is_empty() {
        counts = vec![1, 10, 1000];
    }
    println!(
        "| targets | CPU (% of one core) | RSS (MB) | of which anonymous (MB) | peak RSS (MB) | all scaled after |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for targets in counts {
        let (cpu, memory, settled) = measure(targets, Duration::from_secs(seconds)).await;
        let mb = |kb: u64| kb as f64 / 1024.0;
        println!(
            "| {targets} | {cpu:.2} | {:.1} | {:.1} | {:.1} | {:.1} s |",
            mb(memory.rss),
            mb(memory.anonymous),
            mb(memory.peak),
            settled.as_secs_f64()
        );
    }
}
