//! When more replicas do not help: a backlog that does not shrink although replicas were added and the jobs done per
//! second did not rise.
//!
//! A downstream limit (a database at its connection cap, a rate-limited API), a poison message that every worker
//! chokes on, a Kafka partition whose consumer is stuck: in each, the backlog stays or grows however many replicas
//! run, and an autoscaler that reads only the backlog adds replicas up to `maxReplicas`, costing money and, against a
//! downstream limit, making things worse. KEDA's `excludePersistentLag` handles one case (a Kafka partition whose
//! offset does not move); this handles them all from what every source that reports its arrival rate also gives:
//! completions (arrivals minus the backlog's growth).
//!
//! Over `notDraining.window` (default 5 minutes): if the backlog has not shrunk, held more jobs than replicas
//! throughout (so every replica had work), replicas were added at least half a window and two job durations ago
//! (so they had time to start and to finish jobs; with jobs longer than a quarter of the window, or of a duration
//! not known yet, nothing is judged),
//! and completions did not rise by a tenth, the target stops scaling up
//! beyond its current count (rule `NotDraining`, a Warning Event, `queue_scaler_not_draining`), and decides
//! normally again as soon as the backlog moves or completions rise.
//! Scale-down is untouched, and sources that cannot tell completions (no arrival rate) are never judged.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::validation::{Problem, duration};

/// `notDraining:` of a target.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotDrainingConfig {
    /// Whether a backlog that more replicas do not drain stops the scale-up.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// How long the backlog must not have shrunk, with replicas added and completions flat.
    #[serde(default = "window", with = "duration")]
    pub window: Duration,
}

fn enabled() -> bool {
    true
}

fn window() -> Duration {
    Duration::from_secs(5 * 60)
}

impl Default for NotDrainingConfig {
    fn default() -> NotDrainingConfig {
        NotDrainingConfig { enabled: enabled(), window: window() }
    }
}

impl NotDrainingConfig {
    /// Problems with this block, relative to it.
    pub fn problems(&self) -> Vec<Problem> {
        if self.window < Duration::from_secs(30) {
            vec![Problem::new(
                "window",
                "is shorter than 30s: new replicas need time to start before their completions show; use e.g. `5m`",
            )]
        } else {
            Vec::new()
        }
    }
}

/// Completions must rise by more than this share to count as risen.
const RISE: f64 = 0.1;

/// One tick's totals over the sources that report completions.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: Instant,
    backlog: f64,
    /// Jobs completed per second, smoothed over a quarter of the window.
    completions: f64,
    replicas: u32,
}

/// What one tick tells about draining, summed over the sources that report completions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draining {
    /// The total backlog.
    pub backlog: f64,
    /// Jobs completed per second.
    pub completions: f64,
    /// The longest job duration known among those sources (configured or learned).
    pub job_duration_s: Option<f64>,
}

/// The memory the judgement needs.
#[derive(Debug, Clone, Default)]
pub struct DrainWatch {
    samples: VecDeque<Sample>,
    smoothed: Option<(Instant, f64)>,
    /// Once judged stuck: held until the backlog moves or completions rise, since holding the count keeps replicas
    /// from being added and the window alone would forget the verdict.
    stuck: Option<Stuck>,
}

/// A verdict in force.
#[derive(Debug, Clone)]
struct Stuck {
    /// The backlog when judged: below it, the queue is being drained.
    backlog: f64,
    /// The lowest completion rate since: a rise above it (a recovered consumer) ends the verdict.
    completions: f64,
    why: String,
}

impl DrainWatch {
    /// Takes this tick (`None` when no source reports completions) and the current count. Returns why more
    /// replicas do not help, when they do not.
    pub fn observe(
        &mut self,
        now: Instant,
        observed: Option<Draining>,
        replicas: u32,
        config: &NotDrainingConfig,
    ) -> Option<String> {
        let Some(Draining { backlog, completions, job_duration_s }) = observed.filter(|_| config.enabled) else {
            *self = DrainWatch::default();
            return None;
        };
        let completions = self.smooth(now, completions, config.window / 4);
        self.samples.push_back(Sample { at: now, backlog, completions, replicas });
        // Keep the newest sample that is a whole window old as the baseline, and everything after it.
        while self.samples.get(1).is_some_and(|next| now.saturating_duration_since(next.at) >= config.window) {
            self.samples.pop_front();
        }
        if let Some(stuck) = &mut self.stuck {
            // A rise of a tenth, and of at least one job per window: a stopped consumer's smoothed rate only decays.
            let rose = completions > stuck.completions * (1.0 + RISE) + 1.0 / config.window.as_secs_f64();
            if backlog >= stuck.backlog && !rose {
                stuck.completions = stuck.completions.min(completions);
                return Some(stuck.why.clone());
            }
            self.stuck = None;
            return None;
        }
        let baseline = self.samples.front().filter(|s| now.saturating_duration_since(s.at) >= config.window)?;
        // Replicas added in the last half window may still be starting, and a replica completes nothing before its
        // first job ends: only those that have run for half a window and two job durations can prove that more
        // replicas do not help. With jobs longer than a quarter of the window, nothing can be judged in it.
        // Without a job duration, no completion yet is not told from completions that stopped.
        let job_duration_s = job_duration_s?.clamp(0.0, 1e9);
        let settle = (config.window / 2).max(Duration::from_secs_f64(2.0 * job_duration_s));
        let settled = self.samples.iter().rev().find(|s| now.saturating_duration_since(s.at) >= settle)?;
        // Not shrunk at any moment of the window, not only between its ends: a backlog that ebbs and flows is
        // being drained, however it ends up.
        let never_shrank = self.samples.iter().all(|s| s.backlog >= baseline.backlog);
        // A window that began with nothing to drain, or nobody draining it (a wake from zero), proves nothing; nor
        // does one with fewer jobs than replicas (steady traffic kept up with: workers idle, completions flat because
        // arrivals are, and a replica added on a fluctuation has nothing to do).
        // And grown by more than a job per replica: a queue that keeps up holds about its jobs in flight, which
        // wander by a few as jobs come and go, and the completions of a queue that keeps up cannot rise above its
        // arrivals however many replicas join.
        let grew = backlog - baseline.backlog > f64::from(replicas);
        let stuck = never_shrank
            && grew
            && baseline.replicas > 0
            && baseline.backlog > f64::from(baseline.replicas)
            && settled.replicas > baseline.replicas
            && completions <= baseline.completions * (1.0 + RISE) + 1e-9;
        if !stuck {
            return None;
        }
        let why = format!(
            "the backlog has not shrunk in {} ({:.0} → {backlog:.0}) though replicas went from {} to {} at least \
                 {} ago and completions stayed at {completions:.2}/s: more replicas do not help (a downstream \
                 limit, a poison message, a stuck partition); no scale-up until it moves",
            humantime::format_duration(config.window),
            baseline.backlog,
            baseline.replicas,
            settled.replicas,
            humantime::format_duration(Duration::from_secs(settle.as_secs())),
        );
        self.stuck = Some(Stuck { backlog, completions, why: why.clone() });
        Some(why)
    }

    /// An exponential average of the completion rate over about `constant`.
    fn smooth(&mut self, now: Instant, rate: f64, constant: Duration) -> f64 {
        let next = match self.smoothed {
            None => rate,
            Some((at, average)) => {
                let dt = now.saturating_duration_since(at).as_secs_f64();
                let weight = 1.0 - (-dt / constant.as_secs_f64().max(1.0)).exp();
                average + weight * (rate - average)
            }
        };
        self.smoothed = Some((now, next));
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(backlog: f64, completions: f64) -> Option<Draining> {
        Some(Draining { backlog, completions, job_duration_s: Some(10.0) })
    }

    #[test]
    fn a_backlog_more_replicas_do_not_drain_is_told_and_one_that_moves_is_not() {
        let config = NotDrainingConfig::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut watch = DrainWatch::default();
        // A downstream limit: 2 jobs/s whatever the count; the backlog grows while replicas go from 4 to 12.
        let mut said = None;
        for tick in 0..=60 {
            let replicas = 4 + (tick / 8).min(8) as u32;
            said = watch.observe(at(tick * 5), d(1000.0 + tick as f64 * 10.0, 2.0), replicas, &config);
            if tick * 5 < 300 {
                assert_eq!(said, None, "not before a whole window: tick {tick}");
            }
        }
        let said = said.expect("stuck");
        assert!(said.contains("though replicas went from") && said.contains("completions stayed at 2.00/s"), "{said}");
        // The backlog moves: decided normally again at once.
        assert_eq!(watch.observe(at(305), d(500.0, 2.0), 12, &config), None);
    }

    #[test]
    fn replicas_added_too_recently_to_have_started_prove_nothing() {
        let config = NotDrainingConfig::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut watch = DrainWatch::default();
        // Steady traffic just above what 9 replicas do: the backlog creeps up, and 4 replicas are added a minute
        // before the window ends, too late to have started and to show in the completions.
        for tick in 0..=60 {
            let replicas = if tick >= 48 { 13 } else { 9 };
            let said = watch.observe(at(tick * 5), d(15.0 + tick as f64 * 0.75, 1.0), replicas, &config);
            assert_eq!(said, None, "tick {tick}");
        }
        // Still flat two and a half minutes after they were added: now they have had the time, and did not help.
        let mut said = None;
        for tick in 61..=90 {
            said = watch.observe(at(tick * 5), d(15.0 + tick as f64 * 0.75, 1.0), 13, &config);
        }
        let said = said.expect("stuck once the added replicas had time");
        assert!(said.contains("replicas went from 9 to 13 at least 2m 30s ago"), "{said}");
    }

    #[test]
    fn a_queue_that_keeps_up_is_not_judged_however_many_replicas_join() {
        let config = NotDrainingConfig::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut watch = DrainWatch::default();
        // 0.5 jobs/s of 10 s jobs from one replica up to six: the backlog is the 5 jobs in flight and a few more as
        // they come and go, and the completions are the arrivals, flat whatever the count.
        for tick in 0..=120 {
            let backlog = 5.0 + (tick % 5) as f64;
            let replicas = (1 + tick as u32 / 4).min(6);
            assert_eq!(watch.observe(at(tick * 5), d(backlog, 0.5), replicas, &config), None, "tick {tick}");
        }
    }

    #[test]
    fn jobs_longer_than_a_quarter_of_the_window_cannot_be_judged_in_it() {
        let config = NotDrainingConfig::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut watch = DrainWatch::default();
        // 20-minute jobs: a replica added completes nothing for 20 minutes, so a flat backlog over 5 proves nothing.
        for tick in 0..=240 {
            let replicas = 4 + (tick / 8).min(8) as u32;
            let long = Some(Draining { backlog: 1000.0 + tick as f64, completions: 0.2, job_duration_s: Some(1200.0) });
            assert_eq!(watch.observe(at(tick * 5), long, replicas, &config), None, "tick {tick}");
        }
        // Nor before any job finished: no duration is known, and no completion yet is not completions that stopped.
        let mut first = DrainWatch::default();
        for tick in 0..=120 {
            let unknown = Some(Draining { backlog: 10.0 + tick as f64, completions: 0.0, job_duration_s: None });
            assert_eq!(first.observe(at(tick * 5), unknown, 1 + tick as u32 / 10, &config), None, "tick {tick}");
        }
    }

    #[test]
    fn replicas_that_raise_completions_are_helping_and_no_completions_means_no_judgement() {
        let config = NotDrainingConfig::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut watch = DrainWatch::default();
        // Traffic rises: the backlog grows, but each replica added completes more.
        for tick in 0..=80 {
            let replicas = 4 + tick as u32 / 8;
            let said =
                watch.observe(at(tick * 5), d(1000.0 + tick as f64 * 5.0, f64::from(replicas)), replicas, &config);
            assert_eq!(said, None, "tick {tick}");
        }
        // Steady traffic kept up with: the backlog is the jobs in flight and a few waiting, fewer than the replicas,
        // so workers sit idle. A replica added on a fluctuation changes nothing, and that proves nothing.
        let mut steady = DrainWatch::default();
        for tick in 0..=80 {
            let backlog = if tick % 7 == 0 { 4.0 } else { 5.0 + (tick % 3) as f64 };
            let replicas = if tick < 30 { 10 } else { 11 };
            assert_eq!(steady.observe(at(tick * 5), d(backlog, 1.0), replicas, &config), None, "tick {tick}");
        }
        let mut blind = DrainWatch::default();
        for tick in 0..=80 {
            assert_eq!(blind.observe(at(tick * 5), None, 4 + tick as u32, &config), None);
        }
        let off = NotDrainingConfig { enabled: false, ..config };
        let mut disabled = DrainWatch::default();
        for tick in 0..=80 {
            assert_eq!(disabled.observe(at(tick * 5), d(1000.0, 1.0), 4 + tick as u32, &off), None);
        }
    }
}
