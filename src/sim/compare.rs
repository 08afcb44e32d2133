//! Several policies over one trace: queue-scaler's agent first, then each baseline, in the same world.
//!
//! This is what `simulate --compare` and the scorecard bench run. Every policy gets a fresh world with the same
//! jobs and settings; the reactive baselines take the queue-scaler target's per-replica targets and bounds
//! ([`Targets`]), and the oracle plans for the target's `latencyTarget.maxWait` — or, for a target in backlog
//! mode, for the p99 wait queue-scaler achieved, so that it prices the same waits with foresight.

use std::time::Duration;

use super::baseline::hpa::{self, Hpa};
use super::baseline::keda::{self, Keda};
use super::baseline::threshold::{self, Threshold};
use super::baseline::{Baseline, Targets, drive, oracle, queue_length};
use super::report::SimReport;
use super::run::{SimulationError, run_agent};
use super::trace::Job;
use super::world::{PolicyOutcome, World, WorldSettings};
use crate::config::TargetConfig;

/// What to compare, and on what.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    /// The trace's name for reports.
    pub trace: String,
    /// The jobs.
    pub jobs: Vec<Job>,
    /// queue-scaler's target.
    pub target: &'a TargetConfig,
    /// The agent's poll interval.
    pub poll_interval: Duration,
    /// The simulated Deployment.
    pub settings: WorldSettings,
    /// The baselines to run after queue-scaler, in order; repeats are run once.
    pub baselines: Vec<Baseline>,
}

/// Every policy's outcome, queue-scaler first.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The trace's name.
    pub trace: String,
    /// One outcome per policy, in the order run.
    pub outcomes: Vec<PolicyOutcome>,
    /// The wait the oracle planned for, when it ran.
    pub oracle_max_wait_s: Option<f64>,
}

impl Comparison {
    /// The report rows, one per policy.
    pub fn report(&self) -> SimReport {
        SimReport { trace: self.trace.clone(), policies: self.outcomes.iter().map(|o| o.report.clone()).collect() }
    }
}

/// Runs queue-scaler and the baselines of `setup`; `progress` gets the fraction of the whole comparison done.
pub fn compare(setup: Setup<'_>, progress: &mut dyn FnMut(f64)) -> Result<Comparison, SimulationError> {
    setup.settings.validate()?;
    let mut baselines: Vec<Baseline> = Vec::new();
    for baseline in setup.baselines {
        if !baselines.contains(&baseline) {
            baselines.push(baseline);
        }
    }
    let runs = (baselines.len() + 1) as f64;
    let mut done = 0.0;
    let mut step = |fraction: f64, done: f64| progress((done + fraction) / runs);

    let agent = run_agent(setup.jobs.clone(), setup.target, setup.poll_interval, setup.settings.clone(), &mut |f| {
        step(f, done)
    })?;
    let agent_p99 = agent.report.p99_wait_s;
    let mut outcomes = vec![agent];
    let mut oracle_max_wait_s = None;
    let targets = Targets::of(setup.target);
    for baseline in baselines {
        done += 1.0;
        let mut report = |f: f64| step(f, done);
        let outcome = match baseline {
            Baseline::Hpa | Baseline::Keda | Baseline::Threshold => {
                run_feedback(baseline, setup.jobs.clone(), &targets, &setup.settings, &mut report)
                    .expect("hpa, keda and threshold follow the backlog")
            }
            Baseline::Oracle => {
                let max_wait_s =
                    setup.target.latency_target.map_or(agent_p99, |latency| latency.max_wait.as_secs_f64());
                oracle_max_wait_s = Some(max_wait_s);
                oracle::run(setup.jobs.clone(), max_wait_s, setup.settings.clone(), targets.max_replicas, &mut report)
            }
        };
        outcomes.push(outcome);
    }
    progress(1.0);
    Ok(Comparison { trace: setup.trace, outcomes, oracle_max_wait_s })
}

/// A baseline that follows the backlog (hpa, keda or threshold; the oracle plans instead) on `jobs`, with
/// `target`'s per-replica target and bounds: what the frontier runs at many settings.
pub fn run_baseline(
    baseline: Baseline,
    jobs: Vec<Job>,
    target: &TargetConfig,
    settings: &WorldSettings,
) -> Option<PolicyOutcome> {
    run_feedback(baseline, jobs, &Targets::of(target), settings, &mut |_| {})
}

fn run_feedback(
    baseline: Baseline,
    jobs: Vec<Job>,
    targets: &Targets,
    settings: &WorldSettings,
    progress: &mut dyn FnMut(f64),
) -> Option<PolicyOutcome> {
    Some(match baseline {
        // The HPA leaves a Deployment at 0 replicas alone, so it is given its minimum of 1 to start with.
        Baseline::Hpa => {
            let settings = WorldSettings { initial_replicas: settings.initial_replicas.max(1), ..settings.clone() };
            run_hpa(World::new(jobs, settings), targets, progress)
        }
        Baseline::Keda => run_keda(World::new(jobs, settings.clone()), targets, progress),
        Baseline::Threshold => run_threshold(World::new(jobs, settings.clone()), targets, progress),
        Baseline::Oracle => return None,
    })
}

/// The HPA cannot go below one replica.
fn run_hpa(world: World, targets: &Targets, progress: &mut dyn FnMut(f64)) -> PolicyOutcome {
    let mut hpa = Hpa::new(targets.per_replica.clone(), 1, targets.max_replicas);
    drive(world, Baseline::Hpa.name(), hpa::SYNC_PERIOD_S, progress, |t, snapshot, current| {
        hpa.sync(t, queue_length(snapshot), current)
    })
}

fn run_keda(world: World, targets: &Targets, progress: &mut dyn FnMut(f64)) -> PolicyOutcome {
    let mut keda =
        Keda::new(targets.per_replica.clone(), targets.min_replicas, targets.max_replicas, targets.activation);
    drive(world, Baseline::Keda.name(), keda::STEP_S, progress, |t, snapshot, current| {
        keda.step(t, queue_length(snapshot), current)
    })
}

fn run_threshold(world: World, targets: &Targets, progress: &mut dyn FnMut(f64)) -> PolicyOutcome {
    let loop_ = Threshold::new(targets.per_replica.clone(), targets.min_replicas, targets.max_replicas);
    drive(world, Baseline::Threshold.name(), threshold::PERIOD_S, progress, |_, snapshot, current| {
        loop_.step(queue_length(snapshot), current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::run::default_config;
    use crate::sim::trace::builtin;

    #[test]
    fn runs_each_policy_once_in_order_on_the_same_jobs() {
        let config = default_config();
        let jobs = builtin("spike").expect("built-in trace");
        let setup = Setup {
            trace: "spike".to_owned(),
            jobs: jobs.clone(),
            target: &config.targets[0],
            poll_interval: config.poll_interval,
            settings: WorldSettings::default(),
            baselines: vec![Baseline::Threshold, Baseline::Hpa, Baseline::Threshold, Baseline::Oracle],
        };
        let mut seen = Vec::new();
        let comparison = compare(setup, &mut |f| seen.push(f)).expect("valid setup");
        let names: Vec<&str> = comparison.outcomes.iter().map(|o| o.report.name.as_str()).collect();
        assert_eq!(names, ["queue-scaler", "threshold", "hpa", "oracle"]);
        for outcome in &comparison.outcomes {
            assert_eq!(outcome.report.jobs as usize, jobs.len(), "{}", outcome.report.name);
            assert_eq!(outcome.report.unfinished, 0, "{}", outcome.report.name);
        }
        assert!(seen.windows(2).all(|pair| pair[0] <= pair[1]), "progress went back");
        assert_eq!(seen.last(), Some(&1.0));
        assert_eq!(comparison.report().policies.len(), 4);
    }

    #[test]
    fn a_target_with_idle_first_hands_back_fewer_jobs_on_scale_down() {
        let handed_back = |idle_first: bool| {
            let mut config = default_config();
            config.targets[0].scale_down.idle_first = idle_first;
            let jobs = builtin("on-off").expect("built-in trace");
            let outcome =
                run_agent(jobs, &config.targets[0], config.poll_interval, WorldSettings::default(), &mut |_| {})
                    .expect("valid setup");
            outcome.report.handed_back
        };
        let (newest_first, idle_first) = (handed_back(false), handed_back(true));
        assert!(idle_first < newest_first, "idle-first handed back {idle_first}, newest-first {newest_first}");
    }

    #[test]
    fn invalid_settings_are_refused_before_running() {
        let config = default_config();
        let setup = Setup {
            trace: "steady".to_owned(),
            jobs: Vec::new(),
            target: &config.targets[0],
            poll_interval: config.poll_interval,
            settings: WorldSettings { concurrency: 0, ..WorldSettings::default() },
            baselines: Vec::new(),
        };
        assert!(matches!(compare(setup, &mut |_| {}), Err(SimulationError::Settings(_))));
    }
}
