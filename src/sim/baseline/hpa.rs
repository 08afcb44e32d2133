//! The Kubernetes HPA (`autoscaling/v2`) scaling on an External metric with an `AverageValue` target, as the
//! controller in `kubernetes/kubernetes` `pkg/controller/podautoscaler` does it, every 15 s.
//!
//! One sync follows `HorizontalController.reconcileAutoscaler` (`horizontal.go`):
//!
//! 1. `recordInitialRecommendation`: on first sight the current count counts as a recommendation, so nothing is
//!    removed before a full scale-down window has passed;
//! 2. a target at 0 replicas with `minReplicas` above 0 is left alone ("ScalingDisabled"); a count above
//!    `maxReplicas` or below `minReplicas` is brought within them without looking at metrics;
//! 3. otherwise `computeReplicasForMetrics` asks each metric for a count and takes the largest. For an External
//!    `AverageValue` metric that is `ReplicaCalculator.GetExternalPerPodMetricReplicas` (`replica_calculator.go`):
//!    `usageRatio = usage / (target × status.replicas)`; inside the tolerance (|1 − ratio| ≤ 0.1) the count stays,
//!    outside it becomes `ceil(usage / target)`. Ready pods play no part;
//! 4. `normalizeDesiredReplicasWithBehaviors`: `stabilizeRecommendationWithBehaviors` records the raw count and
//!    clamps the current count between the smallest recommendation of the scale-up window and the largest of the
//!    scale-down window; `convertDesiredReplicasWithBehaviorRate` limits the change by the rate policies
//!    (`calculateScaleUpLimitWithScalingRules`, `calculateScaleDownLimitWithBehaviors`, the period's start being the
//!    current count minus the pods added plus the pods removed within it) and by `minReplicas`/`maxReplicas`;
//! 5. a change is written and remembered for the rate policies (`storeScaleEvent`).
//!
//! Steps 4 and 5 are exactly what queue-scaler's own `behavior` stage implements, after the same functions, so the
//! baseline reuses [`crate::policy::behavior`] with the HPA's defaults (scale-up: no window, 4 pods or 100 % per
//! 15 s, the larger; scale-down: 300 s window, 100 % per 15 s); the unit tests below pin the numbers.
//!
//! In the simulator `status.replicas` (pods not terminating) equals `spec.replicas`: the Deployment creates and
//! deletes pods at once, and draining pods are terminating.

use std::time::{Duration, Instant};

use crate::policy::TOLERANCE;
use crate::policy::behavior::{Behavior, BehaviorState, Rules};

/// The controller's `--horizontal-pod-autoscaler-sync-period` default.
pub const SYNC_PERIOD_S: f64 = 15.0;

/// One HPA object and the controller's memory of it.
#[derive(Debug, Clone)]
pub struct Hpa {
    per_replica: Vec<f64>,
    min_replicas: u32,
    max_replicas: u32,
    up: Rules,
    down: Rules,
    memory: Option<BehaviorState>,
    epoch: Instant,
}

impl Hpa {
    /// An HPA with one External metric per `per_replica` target, within `[min_replicas, max_replicas]`, with the
    /// default `behavior`.
    pub fn new(per_replica: Vec<f64>, min_replicas: u32, max_replicas: u32) -> Hpa {
        let behavior = Behavior::default();
        Hpa {
            per_replica,
            min_replicas,
            max_replicas,
            up: behavior.up(),
            down: behavior.down(),
            memory: None,
            epoch: Instant::now(),
        }
    }

    /// One sync at `t_s` seconds: every metric reads `usage`; returns the count to set (`current` for no change).
    pub fn sync(&mut self, t_s: f64, usage: f64, current: u32) -> u32 {
        let now = self.epoch + Duration::from_secs_f64(t_s.max(0.0));
        let memory = self.memory.get_or_insert_with(|| BehaviorState::seeded(now, current));
        let desired = if current == 0 && self.min_replicas != 0 {
            return 0;
        } else if current > self.max_replicas {
            self.max_replicas
        } else if current < self.min_replicas {
            self.min_replicas
        } else {
            let from_metrics = self
                .per_replica
                .iter()
                .map(|target| per_pod_replicas(usage, *target, current))
                .max()
                .unwrap_or(current);
            let (stabilized, _) = memory.stabilize(now, current, from_metrics, &self.up, &self.down);
            let (limited, _) = memory.limit_rate(now, current, stabilized, &self.up, &self.down);
            limited.clamp(self.min_replicas, self.max_replicas)
        };
        if desired != current {
            memory.record_scale(now, current, desired, &self.up, &self.down);
        }
        desired
    }
}

/// `GetExternalPerPodMetricReplicas`: the count for `usage` at `target` per pod, given `status_replicas` pods.
pub fn per_pod_replicas(usage: f64, target: f64, status_replicas: u32) -> u32 {
    let usage_ratio = usage / (target * f64::from(status_replicas));
    // Written as the controller writes it: a NaN ratio (0 / 0) is not outside the tolerance.
    if (1.0 - usage_ratio).abs() > TOLERANCE {
        let wanted = (usage / target).ceil();
        if wanted >= f64::from(u32::MAX) { u32::MAX } else { wanted as u32 }
    } else {
        status_replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_pod_replicas_keeps_the_count_inside_the_tolerance() {
        // 4 pods at 10 each is 40: 36..=44 is within 10 %.
        assert_eq!(per_pod_replicas(43.0, 10.0, 4), 4);
        assert_eq!(per_pod_replicas(36.0, 10.0, 4), 4);
        assert_eq!(per_pod_replicas(45.0, 10.0, 4), 5);
        assert_eq!(per_pod_replicas(35.0, 10.0, 4), 4, "ceil(3.5) is 4 anyway");
        assert_eq!(per_pod_replicas(30.0, 10.0, 4), 3);
        assert_eq!(per_pod_replicas(0.0, 2.0, 3), 0);
        assert_eq!(per_pod_replicas(0.0, 2.0, 0), 0);
        assert_eq!(per_pod_replicas(7.0, 2.0, 0), 4);
    }

    #[test]
    fn scales_up_by_four_pods_or_double_per_fifteen_seconds() {
        let mut hpa = Hpa::new(vec![10.0], 1, 100);
        // 300 messages want 30 pods; from 1, the larger of +4 and +100 % is 5.
        assert_eq!(hpa.sync(0.0, 300.0, 1), 5);
        // Next period from 5: +4 is 9, +100 % is 10.
        assert_eq!(hpa.sync(15.0, 300.0, 5), 10);
        assert_eq!(hpa.sync(30.0, 300.0, 10), 20);
        assert_eq!(hpa.sync(45.0, 300.0, 20), 30);
        assert_eq!(hpa.sync(60.0, 300.0, 30), 30, "within the tolerance");
    }

    #[test]
    fn scales_down_only_when_the_whole_five_minute_window_agrees() {
        let mut hpa = Hpa::new(vec![10.0], 1, 100);
        assert_eq!(hpa.sync(0.0, 70.0, 7), 7);
        // Empty queue: the 7 recommended at t = 0 holds the count for 300 s.
        for t in [15.0, 150.0, 285.0] {
            assert_eq!(hpa.sync(t, 0.0, 7), 7, "t = {t}");
        }
        // At t = 300 the t = 0 recommendation has left the window; every later one said 0, and 100 % per 15 s
        // allows it, but minReplicas is 1.
        assert_eq!(hpa.sync(300.0, 0.0, 7), 1);
    }

    #[test]
    fn bounds_come_first_and_zero_replicas_disable_scaling() {
        let mut hpa = Hpa::new(vec![10.0], 2, 6);
        assert_eq!(hpa.sync(0.0, 0.0, 9), 6, "above maxReplicas");
        assert_eq!(hpa.sync(15.0, 999.0, 1), 2, "below minReplicas, whatever the metric");
        assert_eq!(hpa.sync(30.0, 999.0, 0), 0, "spec.replicas 0 with minReplicas 2");
        assert_eq!(hpa.sync(45.0, 999.0, 2), 6, "capped at maxReplicas within the rate");
    }

    #[test]
    fn several_metrics_take_the_largest_count() {
        let mut hpa = Hpa::new(vec![10.0, 4.0], 1, 100);
        // 20 messages: 2 pods at 10 each, 5 at 4 each; from 4 pods.
        assert_eq!(hpa.sync(0.0, 20.0, 4), 5);
    }
}
