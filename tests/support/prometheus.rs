//! A real Prometheus per test, scraping a tiny exporter the test serves and sets.
//!
//! Each test picks its exporter's port, so each gets its own server and config (no shared state between tests);
//! the server is killed when the test drops it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use super::agent::free_port;

/// An exposition served on `/metrics`, whose text the test changes at will.
pub struct Exporter {
    pub address: SocketAddr,
    text: Arc<Mutex<String>>,
    server: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Serves `text` on a free port.
    pub async fn start(text: &str) -> Exporter {
        let shared = Arc::new(Mutex::new(text.to_owned()));
        let served = shared.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let text = served.lock().expect("exposition").clone();
                async move { text }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("exporter serves");
        });
        Exporter { address, text: shared, server }
    }

    /// What the next scrape sees.
    pub fn set(&self, text: &str) {
        *self.text.lock().expect("exposition") = text.to_owned();
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A `prometheus` process on a free port with its own storage, scraping one target every second.
pub struct Prometheus {
    pub url: String,
    child: Child,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` and waits until it is ready.
    pub async fn start(target: SocketAddr) -> Prometheus {
        Prometheus::start_with_rules(target, &[], None).await
    }

    /// Starts Prometheus scraping `target` every second with `labels` on its series, evaluating the rule file
    /// `rules` (if any) every second, and waits until it is ready.
    pub async fn start_with_rules(target: SocketAddr, labels: &[(&str, &str)], rules: Option<&str>) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        let labels: String = labels.iter().map(|(name, value)| format!("          {name}: {value:?}\n")).collect();
        let labels = if labels.is_empty() { String::new() } else { format!("        labels:\n{labels}") };
        let mut text = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['{target}']\n{labels}"
        );
        if let Some(rules) = rules {
            let file = dir.path().join("rules.yml");
            std::fs::write(&file, rules).expect("write rules");
            text.push_str(&format!("rule_files: [{:?}]\n", file.display().to_string()));
        }
        std::fs::write(&config, text).expect("write config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is installed (scripts/test.sh)");
        let server = Prometheus { url: format!("http://127.0.0.1:{port}"), child, _dir: dir };
        let ready = format!("{}/-/ready", server.url);
        super::eventually(Duration::from_secs(20), "Prometheus to be ready", || async {
            reqwest::get(&ready).await.ok().filter(|r| r.status().is_success())
        })
        .await;
        server
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Best effort: the process may already be gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
