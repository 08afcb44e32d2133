//! The drain library's endpoint through promtool, and the drain-only build's dependency tree.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use queue_scaler::drain::Drain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: w\r\n\r\n").as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").expect("a head").1
}

#[tokio::test]
async fn metrics_pass_promtool_and_status_speaks_the_agents_contract() {
    let drain = Drain::builder().grace(Duration::from_secs(1)).signals(false).install().expect("install");
    let addr = drain.serve("127.0.0.1:0").await.expect("serve");
    let permit = drain.next_job(async { "job" }).await.expect("a permit");
    let (job, _) = permit.start(|| async {});
    let status = get(addr, "/status").await;
    assert!(status.contains("Content-Type: application/json"), "{status}");
    assert_eq!(body(&status), r#"{"in_flight":1,"draining":false,"quiet":false}"#);
    assert_eq!(body(&get(addr, "/healthz").await), "ok\n");
    drain.stop();
    assert_eq!(job.complete(|| async {}).await, Some(()));
    drain.wait().await;
    let metrics = get(addr, "/metrics").await;
    let exposition = body(&metrics);
    assert!(exposition.contains("\nqueue_scaler_drain_jobs_finished_while_draining_total 1\n"), "{exposition}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs it)");
    promtool.stdin.take().expect("stdin").write_all(exposition.as_bytes()).expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_drain_only_build_pulls_no_broker_or_cloud_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["tree", "--no-default-features", "--features", "drain", "-e", "normal", "--prefix", "none", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree");
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8(out.stdout).expect("utf-8");
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    let forbidden: Vec<&&str> = crates
        .iter()
        .filter(|name| {
            ["kube", "k8s-openapi", "rdkafka", "lapin", "aws-", "google-", "metrics"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .collect();
    assert!(forbidden.is_empty(), "the drain-only build pulls {forbidden:?}:\n{tree}");
    assert!(crates.contains(&"tokio") && crates.contains(&"signal-hook"), "{tree}");
}
