//! The seed's threshold loop: every 10 s, one replica more when the backlog per replica is above the target, one
//! fewer when it is below the target minus 20 %, within `minReplicas`/`maxReplicas`.
//!
//! It is the autoscaler most teams write first, and the one queue-scaler replaces. With several sources it adds a
//! replica when any source is over its target and removes one only when every source is under its lower band.

/// How often the loop runs.
pub const PERIOD_S: f64 = 10.0;
/// The lower band: remove a replica below this fraction of the target.
pub const LOWER_BAND: f64 = 0.8;

/// The loop's settings; it keeps no other state.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    per_replica: Vec<f64>,
    min_replicas: u32,
    max_replicas: u32,
}

impl Threshold {
    /// A loop over one target per source, within the bounds.
    pub fn new(per_replica: Vec<f64>, min_replicas: u32, max_replicas: u32) -> Threshold {
        Threshold { per_replica, min_replicas, max_replicas }
    }

    /// One run of the loop with `usage` waiting per source and `current` replicas.
    pub fn step(&self, usage: f64, current: u32) -> u32 {
        // With no replica any backlog is infinitely many per replica; an empty queue is none.
        let per_replica =
            if current == 0 { if usage > 0.0 { f64::INFINITY } else { 0.0 } } else { usage / f64::from(current) };
        let next = if self.per_replica.iter().any(|target| per_replica > *target) {
            current.saturating_add(1)
        } else if self.per_replica.iter().all(|target| per_replica < target * LOWER_BAND) {
            current.saturating_sub(1)
        } else {
            current
        };
        next.clamp(self.min_replicas, self.max_replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_step_up_above_the_target_and_down_below_the_band() {
        let loop_ = Threshold::new(vec![10.0], 1, 5);
        assert_eq!(loop_.step(41.0, 4), 5, "10.25 per replica");
        assert_eq!(loop_.step(40.0, 4), 4, "exactly the target");
        assert_eq!(loop_.step(32.0, 4), 4, "exactly the lower band");
        assert_eq!(loop_.step(31.0, 4), 3, "7.75 per replica");
        assert_eq!(loop_.step(900.0, 5), 5, "maxReplicas");
        assert_eq!(loop_.step(0.0, 1), 1, "minReplicas");
    }

    #[test]
    fn from_zero_any_backlog_adds_one() {
        let loop_ = Threshold::new(vec![10.0], 0, 5);
        assert_eq!(loop_.step(1.0, 0), 1);
        assert_eq!(loop_.step(0.0, 0), 0);
        assert_eq!(loop_.step(0.0, 1), 0);
    }

    #[test]
    fn several_sources_up_on_any_down_on_all() {
        let loop_ = Threshold::new(vec![10.0, 4.0], 1, 20);
        // 5 per replica: over 4, so up.
        assert_eq!(loop_.step(20.0, 4), 5);
        // 3.5 per replica: under 8 but not under 3.2, so stay.
        assert_eq!(loop_.step(14.0, 4), 4);
        assert_eq!(loop_.step(12.0, 4), 3);
    }
}
