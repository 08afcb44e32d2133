//! `queue-scaler tune`: the cheapest settings that meet a wait objective, found in the simulator.
//!
//! Every autoscaler leaves its users guessing `backlogPerWorker`, the wait to aim for and how long to keep surplus
//! replicas. The simulator already says what any setting costs and how long jobs wait on a trace, so `tune` asks it:
//! a coarse grid over `backlogPerWorker`, `latencyTarget.maxWait` (in latency mode) and the scale-down window, then
//! the neighbours of the cheapest setting that met the objective, halving the steps. The answer is the setting with
//! the fewest replica-seconds that meets the objective — never one costlier than the config as it is, which is
//! always tried first.

pub mod fit;
pub mod plot;

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::config::TargetConfig;
use crate::policy::behavior::ScalingRules;
use crate::policy::scale_down_policy::ScaleDownPolicy;
use crate::sim::run::{SimulationError, run_agent};
use crate::sim::{Job, PolicyReport, WorldSettings};

/// Which wait statistic an objective bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WaitStatistic {
    /// `p95_wait`
    P95,
    /// `p99_wait`
    P99,
    /// `max_wait`
    Max,
}

/// An objective such as `p99_wait<=2m`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slo {
    /// The statistic bounded.
    pub statistic: WaitStatistic,
    /// Its bound, in seconds.
    pub limit_s: f64,
}

impl FromStr for Slo {
    type Err = String;

    fn from_str(text: &str) -> Result<Slo, String> {
        let wrong = || format!("`{text}` is not an objective; write e.g. p99_wait<=2m (or p95_wait, max_wait)");
        let (name, limit) = text.split_once("<=").ok_or_else(wrong)?;
        let statistic = match name.trim() {
            "p95_wait" => WaitStatistic::P95,
            "p99_wait" => WaitStatistic::P99,
            "max_wait" => WaitStatistic::Max,
            _ => return Err(wrong()),
        };
        let limit = humantime::parse_duration(limit.trim()).map_err(|_| wrong())?;
        if limit.is_zero() {
            return Err(wrong());
        }
        Ok(Slo { statistic, limit_s: limit.as_secs_f64() })
    }
}

impl Slo {
    /// The bounded statistic of a run.
    pub fn wait_of(&self, report: &PolicyReport) -> f64 {
        match self.statistic {
            WaitStatistic::P95 => report.p95_wait_s,
            WaitStatistic::P99 => report.p99_wait_s,
            WaitStatistic::Max => report.max_wait_s,
        }
    }

    /// Whether a run meets the objective (and left no job unfinished).
    pub fn met_by(&self, report: &PolicyReport) -> bool {
        report.unfinished == 0 && self.wait_of(report) <= self.limit_s
    }
}

/// The settings `tune` searches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Settings {
    /// Every source's `backlogPerWorker`.
    pub backlog_per_worker: f64,
    /// `latencyTarget.maxWait`, in latency mode; `None` is backlog mode (a latency-mode config may be tuned into it).
    pub max_wait_s: Option<f64>,
    /// `scaleDownPolicy.delay` (latency mode) or `behavior.scaleDown.stabilizationWindowSeconds`.
    pub scale_down_window_s: u32,
    /// Whether scale-down removes idle workers first (`scaleDown.idleFirst`, or `quiet`, which orders pods the same
    /// way). Long jobs make this the setting that matters most: removing a busy worker hands its job back to start
    /// over.
    pub idle_first: bool,
}

impl Settings {
    /// The settings of `target` as configured.
    pub fn of(target: &TargetConfig) -> Settings {
        let window = match target.effective_scale_down_policy() {
            Some(policy) => policy.delay.as_secs() as u32,
            None => target.behavior.scale_down.as_ref().and_then(|r| r.stabilization_window_seconds).unwrap_or(300),
        };
        Settings {
            backlog_per_worker: target.sources.first().map_or(1.0, |s| s.backlog_per_worker),
            max_wait_s: target.latency_target.map(|l| l.max_wait.as_secs_f64()),
            scale_down_window_s: window,
            idle_first: target.scale_down.idle_first || target.scale_down.quiet,
        }
    }

    /// `target` with these settings.
    pub fn applied_to(&self, target: &TargetConfig) -> TargetConfig {
        let mut tuned = target.clone();
        for source in &mut tuned.sources {
            source.backlog_per_worker = self.backlog_per_worker;
        }
        match (&mut tuned.latency_target, self.max_wait_s) {
            (Some(latency), Some(max_wait_s)) => latency.max_wait = Duration::from_secs_f64(max_wait_s),
            (latency, None) => *latency = None,
            (None, Some(_)) => {}
        }
        if self.idle_first && !tuned.scale_down.quiet {
            tuned.scale_down.idle_first = true;
        }
        let window = Duration::from_secs(u64::from(self.scale_down_window_s));
        match tuned.effective_scale_down_policy() {
            Some(policy) => tuned.scale_down_policy = Some(ScaleDownPolicy { delay: window, ..policy }),
            None => {
                let rules = tuned.behavior.scale_down.get_or_insert_with(ScalingRules::default);
                rules.stabilization_window_seconds = Some(self.scale_down_window_s);
            }
        }
        tuned
    }

    /// The lines of a config diff from `from` to these settings, for target `deployment`.
    pub fn diff(&self, from: &Settings, target: &TargetConfig) -> String {
        let mut diff = format!("  target {}:\n", target.name());
        if self.backlog_per_worker != from.backlog_per_worker {
            for (index, _) in target.sources.iter().enumerate() {
                diff.push_str(&format!(
                    "-   sources[{index}].backlogPerWorker: {}\n+   sources[{index}].backlogPerWorker: {}\n",
                    from.backlog_per_worker, self.backlog_per_worker
                ));
            }
        }
        match (from.max_wait_s, self.max_wait_s) {
            (Some(before), Some(after)) if before != after => {
                diff.push_str(&format!("-   latencyTarget.maxWait: {before}s\n+   latencyTarget.maxWait: {after}s\n"));
            }
            (Some(before), None) => {
                diff.push_str(&format!("-   latencyTarget.maxWait: {before}s\n+   latencyTarget: null\n"));
            }
            _ => {}
        }
        let (from_key, key) = (window_key(&from.applied_to(target)), window_key(&self.applied_to(target)));
        if self.scale_down_window_s != from.scale_down_window_s || from_key != key {
            let unit = |key: &str| if key.ends_with("delay") { "s" } else { "" };
            diff.push_str(&format!(
                "-   {from_key}: {}{}\n+   {key}: {}{}\n",
                from.scale_down_window_s,
                unit(from_key),
                self.scale_down_window_s,
                unit(key)
            ));
        }
        if self.idle_first && !from.idle_first {
            diff.push_str("-   scaleDown.idleFirst: false\n+   scaleDown.idleFirst: true\n");
        }
        diff
    }
}

/// Where `target`'s scale-down window is set.
fn window_key(target: &TargetConfig) -> &'static str {
    if target.effective_scale_down_policy().is_some() {
        "scaleDownPolicy.delay"
    } else {
        "behavior.scaleDown.stabilizationWindowSeconds"
    }
}

/// One setting tried.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trial {
    pub settings: Settings,
    /// The objective's statistic, in seconds.
    pub wait_s: f64,
    pub replica_seconds: f64,
    pub meets: bool,
}

/// What the search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tuning {
    pub slo: Slo,
    /// The config as it is.
    pub configured: Trial,
    /// The cheapest trial that met the objective, if any did.
    pub best: Option<Trial>,
    /// Every trial, in the order tried: the frontier's raw material.
    pub trials: Vec<Trial>,
}

/// The simulation every trial runs.
pub struct Simulation<'a> {
    pub target: &'a TargetConfig,
    pub jobs: &'a [Job],
    pub poll_interval: Duration,
    pub settings: WorldSettings,
}

impl Simulation<'_> {
    fn run(&self, settings: Settings, slo: &Slo) -> Result<Trial, SimulationError> {
        let target = settings.applied_to(self.target);
        let world = WorldSettings { initial_replicas: target.min_replicas, ..self.settings.clone() };
        let outcome = run_agent(self.jobs.to_vec(), &target, self.poll_interval, world, &mut |_| {})?;
        let report = outcome.report;
        Ok(Trial {
            settings,
            wait_s: slo.wait_of(&report),
            replica_seconds: report.replica_seconds,
            meets: slo.met_by(&report),
        })
    }
}

/// Searches for the cheapest settings meeting `slo`; `progress` gets the fraction of trials done.
pub fn tune(simulation: &Simulation, slo: Slo, progress: &mut dyn FnMut(f64)) -> Result<Tuning, SimulationError> {
    let configured_settings = Settings::of(simulation.target);
    let configured = simulation.run(configured_settings, &slo)?;
    let mut trials = vec![configured];
    let grid = coarse_grid(&configured_settings, &slo);
    let total = (1 + grid.len() + REFINEMENTS * 6) as f64;
    for settings in grid {
        trials.push(simulation.run(settings, &slo)?);
        progress(trials.len() as f64 / total);
    }
    // Refine around the cheapest trial that met the objective, halving the steps each round.
    let mut step = 0.5;
    for _ in 0..REFINEMENTS {
        let Some(best) = cheapest(&trials) else { break };
        for settings in neighbours(&best.settings, step) {
            if !trials.iter().any(|t| t.settings == settings) {
                trials.push(simulation.run(settings, &slo)?);
                progress(trials.len() as f64 / total);
            }
        }
        step /= 2.0;
    }
    progress(1.0);
    // The configured settings are a trial: when they meet the objective, the answer is never costlier.
    let best = cheapest(&trials);
    Ok(Tuning { slo, configured, best, trials })
}

/// Rounds of refinement after the grid.
const REFINEMENTS: usize = 3;

fn cheapest(trials: &[Trial]) -> Option<Trial> {
    trials.iter().filter(|t| t.meets).min_by(|a, b| a.replica_seconds.total_cmp(&b.replica_seconds)).copied()
}

/// A few values of each setting around the objective's scale: a wait target below the bound (and backlog mode, for
/// a latency-mode config), backlogs per worker from tight to loose, windows from short to the HPA's 300 s, and
/// idle-first removal on as well as as configured.
fn coarse_grid(configured: &Settings, slo: &Slo) -> Vec<Settings> {
    let max_waits: Vec<Option<f64>> = match configured.max_wait_s {
        Some(_) => [0.25, 0.5, 0.9].iter().map(|f| Some((slo.limit_s * f).round().max(1.0))).chain([None]).collect(),
        None => vec![None],
    };
    let configured_per_worker = configured.backlog_per_worker;
    let per_worker = [
        configured_per_worker / 4.0,
        configured_per_worker / 2.0,
        configured_per_worker,
        (configured_per_worker * 4.0).ceil(),
    ];
    let removals = if configured.idle_first { vec![true] } else { vec![false, true] };
    let mut grid = Vec::new();
    for backlog_per_worker in per_worker.map(rounded_per_worker) {
        for max_wait_s in &max_waits {
            for scale_down_window_s in [15, 60] {
                for &idle_first in &removals {
                    let settings =
                        Settings { backlog_per_worker, max_wait_s: *max_wait_s, scale_down_window_s, idle_first };
                    if settings != *configured && !grid.contains(&settings) {
                        grid.push(settings);
                    }
                }
            }
        }
    }
    grid
}

/// A `backlogPerWorker` worth writing in a config: two decimals, at least 0.1.
fn rounded_per_worker(value: f64) -> f64 {
    ((value * 100.0).round() / 100.0).max(0.1)
}

/// Settings one step away in each direction on each axis.
fn neighbours(settings: &Settings, step: f64) -> Vec<Settings> {
    let scale = |v: f64, up: bool| if up { v * (1.0 + step) } else { v / (1.0 + step) };
    let mut around = Vec::new();
    for up in [false, true] {
        around.push(Settings {
            backlog_per_worker: rounded_per_worker(scale(settings.backlog_per_worker, up)),
            ..*settings
        });
        if let Some(max_wait_s) = settings.max_wait_s {
            around.push(Settings { max_wait_s: Some(scale(max_wait_s, up).round().max(1.0)), ..*settings });
        }
        let window = scale(f64::from(settings.scale_down_window_s), up).round().max(0.0) as u32;
        around.push(Settings { scale_down_window_s: window, ..*settings });
    }
    around
}

#[cfg(test)]
mod tests;
