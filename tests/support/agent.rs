//! The agent binary as a user runs it: a config file, a kubeconfig that points at the fake API, logs captured.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::kube_api::FakeKube;

/// The `queue-scaler` binary cargo built for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_queue-scaler");

/// A running `queue-scaler run`. Dropping it kills the process.
pub struct Agent {
    child: Child,
    logs: Arc<Mutex<String>>,
    metrics: SocketAddr,
    config: std::path::PathBuf,
    _dir: TempDir,
}

/// A free port on 127.0.0.1 (free when asked; the agent binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Agent {
    /// Starts `queue-scaler run` with `args` on a config made of `body` (the YAML from `pollInterval`/`targets`
    /// on), in `namespace` of the fake API, with metrics on a free port.
    pub async fn start(kube: &FakeKube, namespace: &str, body: &str, args: &[&str]) -> Agent {
        Agent::start_with_env(kube, namespace, body, args, &[]).await
    }

    /// As [`Agent::start`], with extra environment variables (e.g. `POD_NAME`).
    pub async fn start_with_env(
        kube: &FakeKube,
        namespace: &str,
        body: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("queue-scaler.yaml");
        std::fs::write(&config, Agent::config_text(namespace, metrics, body)).expect("write config");
        let mut child = Command::new(BINARY)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("KUBECONFIG", kube.kubeconfig_path())
            .env("RUST_LOG", "info,queue_scaler=debug")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start queue-scaler");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut logs = sink.lock().expect("logs");
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        Agent { child, logs, metrics, config, _dir: dir }
    }

    fn config_text(namespace: &str, metrics: SocketAddr, body: &str) -> String {
        format!("namespace: {namespace}\nmetrics:\n  listen: {metrics}\n{body}")
    }

    /// Where it serves `/metrics` and `/status`.
    pub fn metrics_address(&self) -> SocketAddr {
        self.metrics
    }

    /// The config file it runs with.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// Replaces the config file as a ConfigMap update does: a new file swapped in under the same name.
    pub fn rewrite_config(&self, namespace: &str, body: &str) {
        let next = self.config.with_extension("next");
        std::fs::write(&next, Agent::config_text(namespace, self.metrics, body)).expect("write config");
        std::fs::rename(&next, &self.config).expect("swap config");
    }

    /// Waits until the logs contain `needle`.
    pub async fn logged(&self, needle: &str, deadline: Duration) {
        super::eventually(deadline, &format!("the agent to log {needle:?}"), || async {
            self.logs().contains(needle).then_some(())
        })
        .await;
    }

    /// Sends `signal` (e.g. `KILL`, `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(sent.success(), "SIG{signal} delivered");
    }

    /// Waits for the process to exit on its own and returns its exit code.
    pub async fn exit_code(&mut self, deadline: Duration) -> Option<i32> {
        tokio::time::timeout(deadline, self.child.wait()).await.expect("the agent exits").expect("exit status").code()
    }

    /// Everything the agent logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").clone()
    }

    /// GETs `path` from the agent's metrics listener: (status code, body), or `None` if it does not answer yet.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(self.metrics).await.ok()?;
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n").as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self, deadline: Duration) {
        super::eventually(deadline, "the agent to be ready", || async {
            self.get("/readyz").await.filter(|(status, _)| *status == 200)
        })
        .await;
    }

    /// The value of one exposition line that starts with `series` (name and labels), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// The sum of every exposition line that starts with `prefix`, e.g. one counter over all its `kind`s: 0 when
    /// none does yet, `None` if the agent does not answer.
    pub async fn metric_total(&self, prefix: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        Some(
            body.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the agent exits within 10 s of SIGTERM")
            .expect("exit status")
    }
}
