//! Config reload: a changed config file takes effect without a restart; a broken one changes nothing; and what the
//! running loops learned survives.
//!
//! In a pod the file is a ConfigMap volume, which Kubernetes updates by swapping a symlink. Watching the file by
//! content (reading it every couple of seconds and comparing) catches that swap, an in-place edit and a replaced
//! file alike, with no inotify subtleties — and a config file is small.
//!
//! A reload is usually about one target, so it must not cost the others their memory: [`carry_over`] keeps the
//! running loop of every target whose config did not change (its windows, rate history, learned job durations,
//! burst state, failure streaks and open connections), and a target whose config changed gets a new loop that keeps
//! its windows and rate history, so a reload never restarts a scale-down window or lifts a rate limit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{LoopSettings, TargetLoop};
use crate::config::{Config, TargetConfig};
use crate::target::ScaleTarget;

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
                crate::metrics::config_reloaded("applied");
                tracing::info!(%file, targets = config.targets.len(), "config changed; applying it");
                updates.send_replace(Arc::new(config));
            }
            Err(problems) => {
                crate::metrics::config_reloaded("rejected");
                tracing::error!(%file, %problems, "the changed config is invalid; keeping the running one");
            }
        }
    }
}

/// What a reload did with the running loops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarriedOver {
    /// Targets whose config did not change: their loops run on as they were.
    pub kept: usize,
    /// Targets whose config changed: new loops with the old windows.
    pub changed: usize,
    /// New targets.
    pub added: usize,
    /// Targets no longer in the config: their loops end.
    pub removed: usize,
}

/// The loops for `targets`, carrying over what `running` learned (see the module documentation); `build` makes a
/// fresh loop for a target.
pub fn carry_over<T: ScaleTarget>(
    running: Vec<TargetLoop<T>>,
    targets: &[TargetConfig],
    settings: LoopSettings,
    mut build: impl FnMut(&TargetConfig) -> TargetLoop<T>,
) -> (Vec<TargetLoop<T>>, CarriedOver) {
    let mut by_deployment: HashMap<String, TargetLoop<T>> =
        running.into_iter().map(|l| (l.spec().name().to_owned(), l)).collect();
    let mut carried = CarriedOver::default();
    let loops = targets
        .iter()
        .map(|target| match by_deployment.remove(target.name()) {
            Some(running) if running.is_built_from(target, settings) => {
                carried.kept += 1;
                running
            }
            Some(running) => {
                carried.changed += 1;
                let mut fresh = build(target);
                fresh.keep_windows_of(running);
                fresh
            }
            None => {
                carried.added += 1;
                build(target)
            }
        })
        .collect();
    carried.removed = by_deployment.len();
    (loops, carried)
}
