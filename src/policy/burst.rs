//! Burst handling, after Knative's panic mode: when the backlog grows faster than the running replicas can drain
//! it, scale to the recommendation at once and never down until the burst is over.
//!
//! The HPA's rate policies (by default at most 4 pods or 100 % per 15 s) exist to damp noise, but a real burst
//! pays for each step in waiting jobs: going from 1 to 160 replicas takes eight steps, two minutes. A burst is
//! recognised by two tests on the last interval between polls: the backlog grew by more than the current replicas
//! complete in that time (the arrivals are at least twice the capacity, Knative's panic threshold), and by more than
//! Poisson noise in the arrivals can explain. During a burst and for `holdFor` after the last interval that met
//! both, the recommendation bypasses the default scale-up stabilization window and rate policies, and scale-down is
//! off: a queue that just overflowed is the worst moment to remove a warm replica. A `behavior.scaleUp` the user
//! wrote is never bypassed: `selectPolicy: Disabled` or two pods a minute are promises to something downstream.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::validation::{Problem, duration};

/// `burst:` of a target.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BurstConfig {
    /// Whether bursts bypass `behavior.scaleUp` and stop scale-down.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// How long a burst lasts after the backlog last outgrew the replicas.
    #[serde(default = "hold_for", with = "duration")]
    pub hold_for: Duration,
}

fn enabled() -> bool {
    true
}

/// Picked from the scorecard: 30 s and 60 s score alike, and 30 s — a pod's start — is the cheaper.
fn hold_for() -> Duration {
    Duration::from_secs(30)
}

impl Default for BurstConfig {
    fn default() -> BurstConfig {
        BurstConfig { enabled: enabled(), hold_for: hold_for() }
    }
}

impl BurstConfig {
    /// Problems with this block, relative to it.
    pub fn problems(&self) -> Vec<Problem> {
        if self.hold_for > Duration::from_secs(3600) {
            vec![Problem::new(
                "holdFor",
                "is longer than an hour; a burst that long is the normal load, so use at most `1h`",
            )]
        } else {
            Vec::new()
        }
    }
}

/// A burst stands out from noise by this many standard deviations of the arrivals.
const NOISE_SIGMAS: f64 = 4.0;

/// One interval between polls, as the burst test sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// How much the backlog grew (negative when it shrank).
    pub growth: f64,
    /// What the current replicas complete in the interval when all are busy: replicas × concurrency × interval /
    /// job duration.
    pub drain_capacity: f64,
    /// The arrivals the smoothed rate expects in the interval.
    pub expected_arrivals: f64,
}

impl Interval {
    /// The backlog outgrew what the replicas can drain, by more than noise.
    pub fn is_burst(&self) -> bool {
        let noise = self.expected_arrivals.max(1.0).sqrt();
        self.growth > self.drain_capacity && self.growth > NOISE_SIGMAS * noise
    }
}

/// When the last burst interval was seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct BurstState {
    last_seen: Option<Instant>,
}

impl BurstState {
    /// Records an interval ending at `now`; returns whether a burst is on (this interval, or one within `hold_for`).
    pub fn observe(&mut self, now: Instant, interval: Option<Interval>, hold_for: Duration) -> bool {
        if interval.is_some_and(|i| i.is_burst()) {
            self.last_seen = Some(now);
        }
        self.is_on(now, hold_for)
    }

    /// Whether a burst interval was seen within `hold_for` of `now` (inclusive, so a zero hold still covers the
    /// interval that triggered it).
    pub fn is_on(&self, now: Instant, hold_for: Duration) -> bool {
        self.last_seen.is_some_and(|seen| now.saturating_duration_since(seen) <= hold_for)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_outgrows_the_replicas_and_the_noise() {
        // 4 replicas of 10 s jobs complete 2 jobs in 5 s; the expected 5 arrivals have a noise of √5 ≈ 2.2.
        let interval = |growth| Interval { growth, drain_capacity: 2.0, expected_arrivals: 5.0 }.is_burst();
        assert!(!interval(2.0), "no faster than the drain");
        assert!(!interval(8.0), "within 4 × 2.2 of noise");
        assert!(interval(9.0));
        // From zero replicas any growth beyond the noise is a burst.
        assert!(Interval { growth: 5.0, drain_capacity: 0.0, expected_arrivals: 0.0 }.is_burst());
        assert!(!Interval { growth: 4.0, drain_capacity: 0.0, expected_arrivals: 0.0 }.is_burst());
    }

    #[test]
    fn a_burst_lasts_for_the_hold_after_its_last_interval() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let hold = Duration::from_secs(60);
        let burst = Some(Interval { growth: 100.0, drain_capacity: 1.0, expected_arrivals: 1.0 });
        let calm = Some(Interval { growth: -5.0, drain_capacity: 1.0, expected_arrivals: 1.0 });
        let mut state = BurstState::default();
        assert!(!state.observe(at(0), calm, hold));
        assert!(state.observe(at(5), burst, hold));
        assert!(state.observe(at(10), burst, hold));
        assert!(state.observe(at(70), calm, hold), "60 s after the last burst interval");
        assert!(!state.observe(at(71), calm, hold));
        assert!(!state.observe(at(80), None, hold));
    }

    #[test]
    fn defaults_and_validation() {
        assert_eq!(BurstConfig::default(), BurstConfig { enabled: true, hold_for: Duration::from_secs(30) });
        let long = BurstConfig { hold_for: Duration::from_secs(7200), ..BurstConfig::default() };
        assert_eq!(long.problems()[0].path, "holdFor");
    }
}
