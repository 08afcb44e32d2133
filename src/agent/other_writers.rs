//! Manners in a shared cluster: never fight another controller over `spec.replicas`.
//!
//! Two kinds of other writers meet a target. Another autoscaler (an HPA, a KEDA ScaledObject) owns the Deployment
//! for good: the agent does not manage it while one targets it, and says so once, as a Warning Event, an error log
//! and `queue_scaler_other_controller`. Anyone else who changes the count between two ticks — a human with
//! `kubectl scale`, a GitOps tool syncing a manifest that still has `replicas:` — is named from the Deployment's
//! `managedFields` in a Warning Event (`ReplicasChangedByOther`). A count that differs from the one the agent left is
//! read once more from the API before anyone is blamed: a watch may not have caught up with the agent's own write. One such change is a human's business; the third
//! within [`CHANGES_WINDOW`] is a fight, so the agent backs off the target for [`BACK_OFF`] and says so. A manual hold
//! (`queue-scaler scale --hold`) is how a human asks for the target, so changes under a hold are not counted.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::TargetMetrics;
use crate::target::{ScaleState, ScaleTarget};

/// Changes by others within this long…
pub const CHANGES_WINDOW: Duration = Duration::from_secs(10 * 60);
/// …this many times make a fight.
pub const CHANGES_BEFORE_BACKING_OFF: usize = 3;
/// How long the agent then leaves the target alone.
pub const BACK_OFF: Duration = Duration::from_secs(10 * 60);

/// What the loop may do with the target this tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Manage it.
    Manage,
    /// Another autoscaler scales it (`Kind/name`): leave it alone.
    OtherController(String),
    /// Others kept changing its count: leave it alone until then.
    BackingOff(Instant),
}

/// One target's memory of other writers.
#[derive(Debug, Default)]
pub struct OtherWriters {
    /// The other autoscaler last told about.
    told_owner: Option<String>,
    /// The count the next tick should find if nobody else writes; `None` when unknown.
    expected: Option<u32>,
    /// When others changed the count, within the window.
    changes: VecDeque<Instant>,
    backing_off_until: Option<Instant>,
}

impl OtherWriters {
    /// Judges the target as this tick read it at `wall`; a count that differs from the one expected is read again
    /// from the target, and `state` then holds that fresh read.
    pub async fn judge(
        &mut self,
        state: &mut ScaleState,
        wall: chrono::DateTime<chrono::Utc>,
        target: &impl ScaleTarget,
        metrics: &TargetMetrics,
        deployment: &str,
    ) -> Verdict {
        let now = Instant::now();
        if self.told_owner != state.other_controller {
            self.tell_owner(state.other_controller.as_deref(), target, metrics, deployment);
        }
        // A human holds the target: their changes are theirs to make.
        let held = |state: &ScaleState| state.hold.as_ref().is_some_and(|h| h.is_active(wall));
        let expected = self.expected.take().filter(|_| !held(state));
        if let Some(owner) = &state.other_controller {
            return Verdict::OtherController(owner.clone());
        }
        if let Some(expected) = expected.filter(|n| *n != state.replicas) {
            if let Ok(fresh) = target.read_fresh().await {
                *state = fresh;
            }
            if state.replicas != expected && !held(state) {
                self.changed_by_other(now, expected, state, target, metrics, deployment);
            }
        }
        match self.backing_off_until {
            Some(until) if now < until => return Verdict::BackingOff(until),
            Some(_) => {
                self.backing_off_until = None;
                metrics.backing_off(false);
                tracing::info!(%deployment, "backed off long enough; managing the replica count again");
            }
            None => {}
        }
        Verdict::Manage
    }

    /// The count the next tick should find, if this agent knows it: after a decision, the count it wrote or kept.
    pub fn expect(&mut self, count: Option<u32>) {
        self.expected = count;
    }

    fn tell_owner(
        &mut self,
        owner: Option<&str>,
        target: &impl ScaleTarget,
        metrics: &TargetMetrics,
        deployment: &str,
    ) {
        if let Some(previous) = &self.told_owner {
            metrics.other_controller(previous, false);
        }
        match owner {
            Some(owner) => {
                let note = format!(
                    "{owner} already scales this workload, so queue-scaler leaves it alone: two autoscalers would \
                     undo each other; remove one of them from this workload"
                );
                tracing::error!(%deployment, %owner, "another autoscaler scales this workload; not managing it");
                target.warn("OtherAutoscaler", &note);
                metrics.other_controller(owner, true);
            }
            None => tracing::info!(%deployment, "no other autoscaler scales this workload any more; managing it"),
        }
        self.told_owner = owner.map(str::to_owned);
    }

    fn changed_by_other(
        &mut self,
        now: Instant,
        expected: u32,
        state: &ScaleState,
        target: &impl ScaleTarget,
        metrics: &TargetMetrics,
        deployment: &str,
    ) {
        let writer = state.replicas_set_by.as_deref().unwrap_or("another writer");
        let found = state.replicas;
        let note = format!(
            "spec.replicas was changed from {expected} to {found} by {writer}, while queue-scaler manages it; a \
             GitOps tool must leave `replicas` out of the manifest or ignore it (Argo CD: ignoreDifferences on \
             /spec/replicas; Flux: drop it from the manifest), and a human can use `queue-scaler scale --hold`"
        );
        tracing::warn!(%deployment, %writer, from = expected, to = found, "the replica count was changed by another writer");
        target.warn("ReplicasChangedByOther", &note);
        metrics.changed_by_other(writer);
        while self.changes.front().is_some_and(|at| now.duration_since(*at) >= CHANGES_WINDOW) {
            self.changes.pop_front();
        }
        self.changes.push_back(now);
        if self.changes.len() >= CHANGES_BEFORE_BACKING_OFF {
            self.changes.clear();
            self.backing_off_until = Some(now + BACK_OFF);
            let note = format!(
                "the replica count was changed by others {CHANGES_BEFORE_BACKING_OFF} times within {} minutes (last \
                 by {writer}); queue-scaler backs off this workload for {} minutes instead of fighting",
                CHANGES_WINDOW.as_secs() / 60,
                BACK_OFF.as_secs() / 60
            );
            tracing::error!(%deployment, %writer, "{note}");
            target.warn("BackingOff", &note);
            metrics.backing_off(true);
        }
    }
}
