//! Config reload: a changed config file takes effect without a restart; a broken one changes nothing.
//!
//! In a pod the file is a ConfigMap volume, which Kubernetes updates by swapping a symlink. Watching the file by
//! content (reading it every couple of seconds and comparing) catches that swap, an in-place edit and a replaced
//! file alike, with no inotify subtleties — and a config file is small.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;

/// How often the file is read.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Watches `path` and publishes every valid new version on `updates`; `accept` adds checks that need the cluster
/// (e.g. that a sidecar does not scale its own Deployment to zero). Runs until `updates` has no receivers.
pub async fn watch_file(
    path: PathBuf,
    updates: watch::Sender<Arc<Config>>,
    accept: impl Fn(&Config) -> Result<(), String>,
    every: Duration,
) {
    let mut last_seen = std::fs::read(&path).ok();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !updates.is_closed() {
        ticks.tick().await;
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        if last_seen.as_ref() == Some(&text) {
            continue;
        }
        last_seen = Some(text);
        let file = path.display();
        match Config::load(&path).map_err(|e| e.to_string()).and_then(|c| accept(&c).map(|()| c)) {
            Ok(config) => {
                let current = updates.borrow().clone();
                if config.namespace != current.namespace
                    || config.metrics != current.metrics
                    || config.leader_election != current.leader_election
                {
                    tracing::warn!(%file, "namespace, metrics and leaderElection changes take effect on restart");
                }
                crate::redact::remember(&config.secrets);
                tracing::info!(%file, targets = config.targets.len(), "config changed; applying it");
                updates.send_replace(Arc::new(config));
            }
            Err(problems) => {
                tracing::error!(%file, %problems, "the changed config is invalid; keeping the running one");
            }
        }
    }
}
