//! Scale-down that does not waste: remove a replica as soon as it is surely not needed, but not so fast that the
//! next wave pays a pod start delay for it.
//!
//! The HPA keeps the highest recommendation of the last five minutes. That protects against flapping, but after a
//! burst it pays for five minutes of idle replicas, every time. The other extreme, removing a replica the moment
//! the recommendation dips, pays a pod start delay whenever the dip was noise. The break-even between the two is
//! the ski-rental rule: keeping an idle replica for as long as it takes to start a new one costs at most twice
//! what hindsight would have paid. So `scaleDownPolicy.delay` — how long a lower recommendation must hold before
//! replicas go — defaults to 30 s, the pod start delay of a typical worker (and the simulator's default), and the
//! scorecard confirms it (`docs/scorecard/`). Set it near your pods' start-up time.
//!
//! `delay` is the scale-down stabilization window: with `scaleDownPolicy:` (or `latencyTarget:`, whose
//! recommendation already smooths the arrival rate) it replaces the HPA's 300 s default for
//! `behavior.scaleDown.stabilizationWindowSeconds`; setting both is an error. The rate policies of
//! `behavior.scaleDown` still apply, and a burst still blocks scale-down ([`super::burst`]).

use std::time::Duration;

use serde::Deserialize;

use crate::validation::{Problem, duration};

/// `scaleDownPolicy:` of a target.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleDownPolicy {
    /// How long a lower recommendation must hold before replicas are removed.
    #[serde(default = "delay", with = "duration")]
    pub delay: Duration,
    /// Never remove more replicas than are idle, by the in-flight count the sources report.
    #[serde(default = "keep_busy")]
    pub keep_busy: bool,
}

fn delay() -> Duration {
    Duration::from_secs(30)
}

fn keep_busy() -> bool {
    true
}

impl Default for ScaleDownPolicy {
    fn default() -> ScaleDownPolicy {
        ScaleDownPolicy { delay: delay(), keep_busy: keep_busy() }
    }
}

/// The HPA's upper bound on a stabilization window, which `delay` shares.
const MAX_DELAY: Duration = Duration::from_secs(3600);

impl ScaleDownPolicy {
    /// Problems with this block, relative to it.
    pub fn problems(&self) -> Vec<Problem> {
        if self.delay > MAX_DELAY {
            vec![Problem::new(
                "delay",
                "is longer than an hour, the HPA's limit for a stabilization window; use at most `1h`",
            )]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_a_typical_pod_start_and_refuses_more_than_an_hour() {
        assert_eq!(ScaleDownPolicy::default().delay, Duration::from_secs(30));
        assert!(ScaleDownPolicy::default().problems().is_empty());
        let long = ScaleDownPolicy { delay: Duration::from_secs(3601), ..ScaleDownPolicy::default() };
        assert_eq!(long.problems()[0].path, "delay");
    }
}
