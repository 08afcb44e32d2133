//! KEDA 2.x with a ScaledObject at its defaults: the operator's own 0 ↔ 1 step, and the HPA it creates for 1 ↔ N.
//!
//! As `kedacore/keda` `pkg/scaling/executor/scale_scaledobjects.go` (`RequestScale`) does it, every
//! `pollingInterval` (30 s) the operator reads the scaler; the target is *active* when a metric is above its
//! `activationThreshold`. Active at 0 replicas: `scaleFromZeroOrIdle` sets `max(minReplicaCount, 1)`. Active
//! otherwise: `lastActiveTime` is refreshed. Inactive above 0 with `minReplicaCount: 0`: once `lastActiveTime +
//! cooldownPeriod` (300 s) has passed, the target goes to 0.
//!
//! Between 1 and N the HPA KEDA creates decides ([`super::hpa`], `minReplicas = max(minReplicaCount, 1)`), every
//! 15 s, reading the metric through KEDA's metrics server. Here that value is the one from the last 30 s poll, as
//! with the ScaledObject's `useCachedMetrics: true`; without it the metrics server asks the scaler on each HPA
//! request and the 1 ↔ N part behaves as the `hpa` baseline does. With 0 replicas the HPA is idle
//! ("ScalingDisabled").

use super::hpa::{Hpa, SYNC_PERIOD_S};

/// The ScaledObject's `pollingInterval` default.
pub const POLLING_INTERVAL_S: f64 = 30.0;
/// The ScaledObject's `cooldownPeriod` default.
pub const COOLDOWN_PERIOD_S: f64 = 300.0;

/// How often the simulation steps: the HPA's sync period; the operator polls on every other step.
pub const STEP_S: f64 = SYNC_PERIOD_S;

/// A ScaledObject: the operator's state and its HPA.
#[derive(Debug, Clone)]
pub struct Keda {
    hpa: Hpa,
    min_replica_count: u32,
    activation: f64,
    cached_usage: f64,
    last_active_s: f64,
    next_poll_s: f64,
}

impl Keda {
    /// A ScaledObject with one trigger per `per_replica` target, `minReplicaCount`/`maxReplicaCount` and the
    /// triggers' `activationThreshold`.
    pub fn new(per_replica: Vec<f64>, min_replica_count: u32, max_replica_count: u32, activation: f64) -> Keda {
        Keda {
            hpa: Hpa::new(per_replica, min_replica_count.max(1), max_replica_count),
            min_replica_count,
            activation,
            cached_usage: 0.0,
            last_active_s: 0.0,
            next_poll_s: 0.0,
        }
    }

    /// One step at `t_s`: the operator's poll when it is due (it comes first at the same instant), then the HPA's
    /// sync. Returns the count to set.
    pub fn step(&mut self, t_s: f64, usage: f64, current: u32) -> u32 {
        let mut replicas = current;
        if t_s >= self.next_poll_s {
            self.next_poll_s += POLLING_INTERVAL_S;
            self.cached_usage = usage;
            replicas = self.request_scale(t_s, usage, current);
        }
        self.hpa.sync(t_s, self.cached_usage, replicas)
    }

    /// The operator's `RequestScale` for one poll.
    fn request_scale(&mut self, t_s: f64, usage: f64, current: u32) -> u32 {
        let active = usage > self.activation;
        if active {
            self.last_active_s = t_s;
            if current == 0 {
                return self.min_replica_count.max(1);
            }
        } else if current > 0 && self.min_replica_count == 0 && self.last_active_s + COOLDOWN_PERIOD_S < t_s {
            return 0;
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hpa_sees_the_value_of_the_last_poll() {
        let mut keda = Keda::new(vec![10.0], 0, 100, 0.0);
        // Polled at t = 0: 20 messages, 2 pods.
        assert_eq!(keda.step(0.0, 20.0, 1), 2);
        // At t = 15 the queue holds 200, but the HPA still reads the 20 polled at t = 0.
        assert_eq!(keda.step(15.0, 200.0, 2), 2);
        // Polled again at t = 30: 200 wants 20; +4 pods or +100 % per 15 s from 2 allows 6.
        assert_eq!(keda.step(30.0, 200.0, 2), 6);
    }

    #[test]
    fn wakes_from_zero_at_the_next_poll_and_sleeps_after_the_cooldown() {
        let mut keda = Keda::new(vec![10.0], 0, 100, 0.0);
        assert_eq!(keda.step(0.0, 0.0, 0), 0, "inactive at zero stays at zero");
        // The queue fills at t = 15; the operator only sees it at the poll at t = 30, sets 1, and the HPA then
        // asks ceil(50 / 10) = 5, which +4 pods per 15 s from 1 allows.
        assert_eq!(keda.step(15.0, 50.0, 0), 0);
        assert_eq!(keda.step(30.0, 50.0, 0), 5);
        // Empty from t = 45; last active at the poll at t = 30. At t = 45 the HPA still reads the 50 polled at 30
        // and recommends 5 again; the poll at 60 brings 0.
        let mut replicas = 5;
        let mut t = 45.0;
        while t <= 330.0 {
            replicas = keda.step(t, 0.0, replicas);
            t += STEP_S;
        }
        // The HPA's 300 s window keeps that last 5 (t = 45) until t = 345, when it allows its minimum, 1.
        assert_eq!(replicas, 5);
        assert_eq!(keda.step(345.0, 0.0, replicas), 1);
        // The operator goes to 0 at the first poll after t = 30 + 300: the poll at t = 360.
        assert_eq!(keda.step(360.0, 0.0, 1), 0);
    }

    #[test]
    fn activation_is_strictly_above_the_threshold() {
        let mut keda = Keda::new(vec![10.0], 0, 100, 5.0);
        assert_eq!(keda.step(0.0, 5.0, 0), 0);
        assert_eq!(keda.step(30.0, 6.0, 0), 1);
    }

    #[test]
    fn a_minimum_above_zero_never_sleeps() {
        let mut keda = Keda::new(vec![10.0], 2, 100, 0.0);
        let mut replicas = 2;
        for step in 0..100 {
            replicas = keda.step(f64::from(step) * STEP_S, 0.0, replicas);
        }
        assert_eq!(replicas, 2);
    }
}
