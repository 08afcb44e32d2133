//! A tiny seeded pseudo-random generator (SplitMix64) and the few distributions the built-in traces draw from.
//!
//! The built-in traces must come out the same on every run so that two policies, two versions or two people see the
//! same traffic; a generator of our own, seeded by a constant, keeps that promise without tying the traces to the
//! output stability of a random-number crate. SplitMix64 is small, fast and passes the statistical tests that
//! matter for workload generation.

use std::f64::consts::TAU;

/// A SplitMix64 generator: a 64-bit counter stepped by the golden-ratio increment, then mixed.
pub(super) struct Rng {
    state: u64,
}

impl Rng {
    pub(super) fn seeded(seed: u64) -> Rng {
        Rng { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on [0, 1), with the full 53 bits of an `f64` mantissa.
    pub(super) fn uniform(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }

    /// Uniform on (0, 1]: safe to take the logarithm of, or to raise to a negative power.
    fn uniform_above_zero(&mut self) -> f64 {
        1.0 - self.uniform()
    }

    /// Uniform on [low, high).
    pub(super) fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    /// Exponential with the given rate (mean `1 / rate`): the gap between two Poisson arrivals.
    pub(super) fn exponential(&mut self, rate: f64) -> f64 {
        -self.uniform_above_zero().ln() / rate
    }

    /// Standard normal by Box–Muller; the second variate of the pair is dropped to keep the state a single counter.
    fn standard_normal(&mut self) -> f64 {
        let radius = (-2.0 * self.uniform_above_zero().ln()).sqrt();
        radius * (TAU * self.uniform()).cos()
    }

    /// Lognormal with the given mean and log-space standard deviation `sigma`: job durations that are mostly close
    /// to typical with a long right tail, as transcoding or report jobs are.
    pub(super) fn lognormal_with_mean(&mut self, mean: f64, sigma: f64) -> f64 {
        let mu = mean.ln() - sigma * sigma / 2.0;
        (mu + sigma * self.standard_normal()).exp()
    }

    /// Pareto with minimum `scale` and tail index `shape`; its mean is `shape · scale / (shape − 1)` when shape > 1.
    pub(super) fn pareto(&mut self, scale: f64, shape: f64) -> f64 {
        scale / self.uniform_above_zero().powf(1.0 / shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAWS: usize = 200_000;

    fn mean_of(draws: impl Iterator<Item = f64>) -> f64 {
        let values: Vec<f64> = draws.collect();
        values.iter().sum::<f64>() / values.len() as f64
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_another_seed_does_not() {
        let first: Vec<u64> = {
            let mut rng = Rng::seeded(7);
            (0..16).map(|_| rng.next_u64()).collect()
        };
        let again: Vec<u64> = {
            let mut rng = Rng::seeded(7);
            (0..16).map(|_| rng.next_u64()).collect()
        };
        let other: Vec<u64> = {
            let mut rng = Rng::seeded(8);
            (0..16).map(|_| rng.next_u64()).collect()
        };
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn uniform_stays_in_the_unit_interval_with_mean_one_half() {
        let mut rng = Rng::seeded(1);
        let values: Vec<f64> = (0..DRAWS).map(|_| rng.uniform()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = values.iter().sum::<f64>() / DRAWS as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    }

    #[test]
    fn exponential_has_mean_one_over_rate() {
        let mut rng = Rng::seeded(2);
        let mean = mean_of((0..DRAWS).map(|_| rng.exponential(0.25)));
        assert!((mean - 4.0).abs() < 0.05, "mean {mean}");
    }

    #[test]
    fn lognormal_has_the_requested_mean_and_a_lower_median() {
        let mut rng = Rng::seeded(3);
        let mut values: Vec<f64> = (0..DRAWS).map(|_| rng.lognormal_with_mean(20.0, 0.6)).collect();
        let mean = values.iter().sum::<f64>() / DRAWS as f64;
        assert!((mean - 20.0).abs() < 0.2, "mean {mean}");
        values.sort_by(f64::total_cmp);
        let median = values[DRAWS / 2];
        // The median of a lognormal is exp(mu) = mean · exp(−sigma²/2) = 20 · exp(−0.18) ≈ 16.71.
        assert!((median - 16.71).abs() < 0.2, "median {median}");
    }

    #[test]
    fn pareto_never_goes_below_its_scale_and_has_the_expected_median() {
        let mut rng = Rng::seeded(4);
        let mut values: Vec<f64> = (0..DRAWS).map(|_| rng.pareto(4.0, 1.5)).collect();
        assert!(values.iter().all(|&v| v >= 4.0));
        values.sort_by(f64::total_cmp);
        let median = values[DRAWS / 2];
        // The median of a Pareto is scale · 2^(1/shape) = 4 · 2^(2/3) ≈ 6.35.
        assert!((median - 6.35).abs() < 0.05, "median {median}");
    }
}
