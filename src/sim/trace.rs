//! Job traces: the traffic a simulation replays, built in or read from CSV.
//!
//! A comparison between autoscalers is only as good as the traffic it runs on, so the built-in traces cover the
//! shapes queue workers actually see — steady load, a day's swing, sudden spikes, bursts separated by silence, and
//! jobs whose durations have a heavy tail. Each is generated from a fixed seed, so every run, every policy and every
//! version of queue-scaler sees exactly the same jobs, and each stays under ~20k jobs and 4 h so that a simulation
//! of the agent at a 5 s poll takes about a second.

mod csv;
mod rng;

pub(crate) use csv::content_lines;
pub use csv::{TraceError, read_csv, write_csv};

use rng::Rng;

/// One job: when it lands in the queue and how long one worker slot takes to process it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Job {
    /// Seconds since the start of the simulation.
    pub arrival_s: f64,
    /// Seconds of work, measured from the moment a worker slot takes the job.
    pub duration_s: f64,
}

/// The built-in traces: name and a one-line description. `transcoding` is the default.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "transcoding",
        "90 min of video transcoding: ~0.4 jobs/s of ~20 s jobs, plus 400 uploads within 60 s at minute 30",
    ),
    ("steady", "60 min of constant load: ~1 job/s of ~10 s jobs"),
    ("diurnal", "a day compressed into 4 h: the rate swings from 0.1 to 1.5 jobs/s and back; ~15 s jobs"),
    ("spike", "60 min: a trickle of 0.05 jobs/s, then 1,000 jobs within 30 s at minute 20, then the trickle again"),
    ("black-friday", "3 h: 0.2 jobs/s ramping up to a 1 h plateau at 2 jobs/s and back down; ~8 s jobs"),
    ("on-off", "3 h: six 2-minute bursts of ~200 jobs, each followed by 28 min of silence (room to scale to zero)"),
    ("heavy-tail", "2 h of ~0.5 jobs/s with Pareto durations (mean 12 s, shape 1.5): a few jobs run for many minutes"),
    (
        "long-jobs",
        "3 h of jobs lasting 5 to 40 min: a trickle of one every ~2 min, plus five bursts of 40 uploads within 2 min, \
         35 min apart (where scale-down interrupts jobs unless it is quiet)",
    ),
];

/// The built-in trace with this name (see [`BUILTIN`]), or `None` when there is no such trace.
pub fn builtin(name: &str) -> Option<Vec<Job>> {
    let jobs = match name {
        "transcoding" => transcoding(),
        "steady" => steady(),
        "diurnal" => diurnal(),
        "spike" => spike(),
        "black-friday" => black_friday(),
        "on-off" => on_off(),
        "heavy-tail" => heavy_tail(),
        "long-jobs" => long_jobs(),
        _ => return None,
    };
    Some(jobs)
}

/// Poisson arrivals at 0.4 jobs/s for 5,400 s (~2,160 jobs), plus 400 jobs uniform within [1,800 s, 1,860 s);
/// durations lognormal with mean 20 s and sigma 0.6 (median ~16.7 s). Average load: 8 busy workers; the burst
/// brings 8,000 worker-seconds at once.
fn transcoding() -> Vec<Job> {
    let mut rng = Rng::seeded(0x7C0D_1A60);
    let mut arrivals = poisson_arrivals(&mut rng, 0.0, 5_400.0, 0.4, |_| 0.4);
    arrivals.extend((0..400).map(|_| rng.between(1_800.0, 1_860.0)));
    jobs_with_durations(&mut rng, arrivals, |rng| rng.lognormal_with_mean(20.0, 0.6))
}

/// Poisson arrivals at 1 job/s for 3,600 s (~3,600 jobs); durations lognormal with mean 10 s and sigma 0.3.
/// Average load: 10 busy workers.
fn steady() -> Vec<Job> {
    let mut rng = Rng::seeded(0x0057_EAD1);
    let arrivals = poisson_arrivals(&mut rng, 0.0, 3_600.0, 1.0, |_| 1.0);
    jobs_with_durations(&mut rng, arrivals, |rng| rng.lognormal_with_mean(10.0, 0.3))
}

/// Poisson arrivals for 14,400 s whose rate follows one period of a raised cosine,
/// `0.1 + 1.4 · (1 − cos(2π t / 14,400)) / 2` jobs/s: 0.1 at "midnight" (start and end), 1.5 at "noon" (2 h);
/// ~11,500 jobs. Durations lognormal with mean 15 s and sigma 0.5; the peak load is ~22 busy workers.
fn diurnal() -> Vec<Job> {
    const DAY_S: f64 = 14_400.0;
    let mut rng = Rng::seeded(0xD1_0A2A);
    let rate_at = |t: f64| 0.1 + 1.4 * (1.0 - (std::f64::consts::TAU * t / DAY_S).cos()) / 2.0;
    let arrivals = poisson_arrivals(&mut rng, 0.0, DAY_S, 1.5, rate_at);
    jobs_with_durations(&mut rng, arrivals, |rng| rng.lognormal_with_mean(15.0, 0.5))
}

/// Poisson arrivals at 0.05 jobs/s for 3,600 s (~180 jobs), plus 1,000 jobs uniform within [1,200 s, 1,230 s);
/// durations lognormal with mean 10 s and sigma 0.4. The spike is 10,000 worker-seconds landing in 30 s.
fn spike() -> Vec<Job> {
    let mut rng = Rng::seeded(0x5_9143);
    let mut arrivals = poisson_arrivals(&mut rng, 0.0, 3_600.0, 0.05, |_| 0.05);
    arrivals.extend((0..1_000).map(|_| rng.between(1_200.0, 1_230.0)));
    jobs_with_durations(&mut rng, arrivals, |rng| rng.lognormal_with_mean(10.0, 0.4))
}

/// Poisson arrivals for 10,800 s at a piecewise-linear rate: 0.2 jobs/s for 30 min, a linear ramp to 2 jobs/s over
/// 30 min, a 60 min plateau at 2 jobs/s, a linear ramp back down over 30 min, and 30 min at 0.2 jobs/s
/// (~11,900 jobs). Durations lognormal with mean 8 s and sigma 0.5; the plateau is 16 busy workers.
fn black_friday() -> Vec<Job> {
    const LOW: f64 = 0.2;
    const HIGH: f64 = 2.0;
    let mut rng = Rng::seeded(0xB1AC_F71D);
    let rate_at = |t: f64| match t {
        t if t < 1_800.0 => LOW,
        t if t < 3_600.0 => LOW + (HIGH - LOW) * (t - 1_800.0) / 1_800.0,
        t if t < 7_200.0 => HIGH,
        t if t < 9_000.0 => HIGH - (HIGH - LOW) * (t - 7_200.0) / 1_800.0,
        _ => LOW,
    };
    let arrivals = poisson_arrivals(&mut rng, 0.0, 10_800.0, HIGH, rate_at);
    jobs_with_durations(&mut rng, arrivals, |rng| rng.lognormal_with_mean(8.0, 0.5))
}

/// Six 30-minute cycles (10,800 s): in the first 120 s of each, Poisson arrivals at 200/120 jobs/s (~200 jobs);
/// then 28 min of silence — longer than KEDA's 300 s cooldown after the HPA's 300 s scale-down window, so every
/// policy has the chance to reach zero. Durations lognormal with mean 15 s and sigma 0.5; ~1,200 jobs in all.
fn on_off() -> Vec<Job> {
    const CYCLE_S: f64 = 1_800.0;
    const BURST_S: f64 = 120.0;
    const BURST_RATE: f64 = 200.0 / BURST_S;
    let mut rng = Rng::seeded(0x0F_F0FF);
    let rate_at = |t: f64| {
        if t % CYCLE_S < BURST_S { BURST_RATE } else { 0.0 }
    };
    let arrivals = poisson_arrivals(&mut rng, 0.0, 6.0 * CYCLE_S, BURST_RATE, rate_at);
    jobs_with_durations(&mut rng, arrivals, |rng| rng.lognormal_with_mean(15.0, 0.5))
}

/// Poisson arrivals at 0.5 jobs/s for 7,200 s (~3,600 jobs); durations Pareto with minimum 4 s and shape 1.5
/// (mean 12 s, infinite variance, median ~6.3 s): most jobs are short, a few take many minutes, which is where
/// killing busy pods on scale-down costs the most.
fn heavy_tail() -> Vec<Job> {
    let mut rng = Rng::seeded(0x4EA7_7A11);
    let arrivals = poisson_arrivals(&mut rng, 0.0, 7_200.0, 0.5, |_| 0.5);
    jobs_with_durations(&mut rng, arrivals, |rng| rng.pareto(4.0, 1.5))
}

/// Poisson arrivals at 1/120 jobs/s for 10,800 s (~90 jobs), plus five bursts of 40 jobs uniform within
/// [900 s + k · 2,100 s, + 120 s) for k = 0..5 (uploads at minutes 15, 50, 85, 120 and 155); durations uniform in
/// [300 s, 2,400 s] (mean 22.5 min). A burst is 54,000 worker-seconds; by the time its last jobs end, the backlog
/// has long fallen, so an autoscaler scales down while most pods are still busy: the case quiet scale-down exists
/// for.
fn long_jobs() -> Vec<Job> {
    const BURSTS: u32 = 5;
    const BURST_JOBS: u32 = 40;
    let mut rng = Rng::seeded(0x106E_70B5);
    let mut arrivals = poisson_arrivals(&mut rng, 0.0, 10_800.0, 1.0 / 120.0, |_| 1.0 / 120.0);
    for burst in 0..BURSTS {
        let start_s = 900.0 + f64::from(burst) * 2_100.0;
        arrivals.extend((0..BURST_JOBS).map(|_| rng.between(start_s, start_s + 120.0)));
    }
    jobs_with_durations(&mut rng, arrivals, |rng| rng.between(300.0, 2_400.0))
}

/// Arrival times in [start_s, end_s) of a Poisson process whose rate at time t is `rate_at(t)` ≤ `peak_rate`,
/// by thinning: candidates come at the peak rate and each is kept with probability `rate_at(t) / peak_rate`.
fn poisson_arrivals(rng: &mut Rng, start_s: f64, end_s: f64, peak_rate: f64, rate_at: impl Fn(f64) -> f64) -> Vec<f64> {
    let mut arrivals = Vec::new();
    let mut t = start_s + rng.exponential(peak_rate);
    while t < end_s {
        if rng.uniform() * peak_rate < rate_at(t) {
            arrivals.push(t);
        }
        t += rng.exponential(peak_rate);
    }
    arrivals
}

/// Sorts the arrivals and gives each job, in arrival order, a duration drawn from `duration`.
fn jobs_with_durations(rng: &mut Rng, mut arrivals: Vec<f64>, mut duration: impl FnMut(&mut Rng) -> f64) -> Vec<Job> {
    arrivals.sort_by(f64::total_cmp);
    arrivals.into_iter().map(|arrival_s| Job { arrival_s, duration_s: duration(rng) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_JOBS: usize = 20_000;
    const MAX_SPAN_S: f64 = 4.0 * 3_600.0;

    fn trace(name: &str) -> Vec<Job> {
        builtin(name).unwrap_or_else(|| panic!("built-in trace {name} is missing"))
    }

    fn arrivals_within(jobs: &[Job], from_s: f64, to_s: f64) -> usize {
        jobs.iter().filter(|job| (from_s..to_s).contains(&job.arrival_s)).count()
    }

    fn mean_duration(jobs: &[Job]) -> f64 {
        jobs.iter().map(|job| job.duration_s).sum::<f64>() / jobs.len() as f64
    }

    #[test]
    fn every_builtin_trace_is_deterministic_sorted_valid_and_within_budget() {
        for (name, description) in BUILTIN {
            assert!(!description.is_empty(), "{name} has no description");
            let jobs = trace(name);
            assert_eq!(jobs, trace(name), "{name} changed between two builds");
            assert!(!jobs.is_empty(), "{name} is empty");
            assert!(jobs.len() <= MAX_JOBS, "{name} has {} jobs", jobs.len());
            assert!(jobs.windows(2).all(|pair| pair[0].arrival_s <= pair[1].arrival_s), "{name} is not sorted");
            assert!(
                jobs.iter().all(|job| job.arrival_s >= 0.0 && job.arrival_s <= MAX_SPAN_S),
                "{name} has an arrival outside [0, 4 h]"
            );
            assert!(
                jobs.iter().all(|job| job.duration_s.is_finite() && job.duration_s > 0.0),
                "{name} has a duration that is not a positive number"
            );
        }
    }

    #[test]
    fn builtin_names_are_unique_and_unknown_names_give_none() {
        let mut names: Vec<&str> = BUILTIN.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BUILTIN.len());
        assert_eq!(builtin("no-such-trace"), None);
    }

    #[test]
    fn builtin_traces_differ_from_one_another() {
        let first_jobs: Vec<Job> = BUILTIN.iter().map(|(name, _)| trace(name)[0]).collect();
        for (i, a) in first_jobs.iter().enumerate() {
            for b in &first_jobs[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn transcoding_has_steady_load_of_twenty_second_jobs_and_a_burst_at_minute_thirty() {
        let jobs = trace("transcoding");
        // 0.4 jobs/s over 5,400 s is 2,160 expected arrivals, plus the 400 of the burst.
        assert!((2_400..2_720).contains(&jobs.len()), "{} jobs", jobs.len());
        // 60 s of steady load adds ~24 to the 400 burst jobs.
        let in_burst = arrivals_within(&jobs, 1_800.0, 1_860.0);
        assert!((400..460).contains(&in_burst), "{in_burst} jobs in the burst");
        let mean = mean_duration(&jobs);
        assert!((18.0..22.0).contains(&mean), "mean duration {mean}");
        let last = jobs.last().map_or(0.0, |job| job.arrival_s);
        assert!((5_300.0..5_400.0).contains(&last), "last arrival {last}");
    }

    #[test]
    fn diurnal_is_busiest_at_noon_and_quietest_at_midnight() {
        let jobs = trace("diurnal");
        let midnight = arrivals_within(&jobs, 0.0, 1_800.0);
        let noon = arrivals_within(&jobs, 6_300.0, 8_100.0);
        assert!(noon > 5 * midnight, "noon {noon}, midnight {midnight}");
    }

    #[test]
    fn spike_concentrates_a_thousand_jobs_in_thirty_seconds() {
        let jobs = trace("spike");
        let in_spike = arrivals_within(&jobs, 1_200.0, 1_230.0);
        assert!((1_000..1_010).contains(&in_spike), "{in_spike} jobs in the spike");
        assert!(jobs.len() - in_spike < 300, "{} quiet jobs", jobs.len() - in_spike);
    }

    #[test]
    fn black_friday_plateau_is_ten_times_the_quiet_rate() {
        let jobs = trace("black-friday");
        let quiet = arrivals_within(&jobs, 0.0, 1_800.0);
        let plateau = arrivals_within(&jobs, 3_600.0, 5_400.0);
        assert!(plateau > 8 * quiet, "plateau {plateau}, quiet {quiet}");
    }

    #[test]
    fn on_off_is_silent_between_bursts() {
        let jobs = trace("on-off");
        assert!(jobs.iter().all(|job| job.arrival_s % 1_800.0 < 120.0));
        for cycle in 0..6 {
            let start = f64::from(cycle) * 1_800.0;
            let burst = arrivals_within(&jobs, start, start + 120.0);
            assert!((140..260).contains(&burst), "cycle {cycle}: {burst} jobs");
        }
    }

    #[test]
    fn long_jobs_last_five_to_forty_minutes_and_come_in_five_bursts_of_uploads() {
        let jobs = trace("long-jobs");
        assert!(jobs.iter().all(|job| (300.0..=2_400.0).contains(&job.duration_s)));
        let mean = mean_duration(&jobs);
        assert!((1_200.0..1_500.0).contains(&mean), "mean duration {mean}");
        for burst in 0..5 {
            let start_s = 900.0 + f64::from(burst) * 2_100.0;
            let in_burst = arrivals_within(&jobs, start_s, start_s + 120.0);
            // 40 uploads plus the trickle's one or two.
            assert!((40..45).contains(&in_burst), "burst {burst}: {in_burst} jobs");
        }
        let trickle = jobs.len() - 200;
        assert!((60..120).contains(&trickle), "{trickle} jobs outside the bursts");
    }

    #[test]
    fn heavy_tail_durations_are_at_least_four_seconds_and_some_are_long() {
        let jobs = trace("heavy-tail");
        assert!(jobs.iter().all(|job| job.duration_s >= 4.0));
        let long = jobs.iter().filter(|job| job.duration_s > 300.0).count();
        // P(duration > 300 s) = (4 / 300)^1.5 ≈ 0.0015: about 5 of ~3,600 jobs.
        assert!((1..20).contains(&long), "{long} jobs over 5 min");
    }
}
