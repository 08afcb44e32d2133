//! One simulation run: a trace and a target's config in, the agent's loop driven under a paused clock, a report out.
//!
//! The trace is replayed into a [`World`]; every source of the target reads the simulated queue (each keeps its own
//! `backlogPerWorker`), and the target is the simulated Deployment. The loop is the agent's [`TargetLoop`], ticking
//! every `pollInterval` of virtual time until every job is done (or a generous deadline after the last arrival, so
//! a policy that strands work cannot hang the run; stranded jobs show as `unfinished`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::cluster::{SimulatedDeployment, SimulatedQueue};
use super::{Job, PolicyOutcome, SettingsError, TraceError, World, WorldSettings, builtin, read_csv};
use crate::agent::leader::Leadership;
use crate::agent::{Clock, LoopSettings, TargetLoop};
use crate::config::{Config, ConfigError, TargetConfig};
use crate::redact::Secrets;
use crate::source::Source;

/// The policy `simulate` runs without `-c`: the transcoding workers of the README, on their queue's backlog.
pub const DEFAULT_CONFIG: &str = "\
# queue-scaler's defaults for a transcoding-style worker: one job at a time, ~20 s each.
pollInterval: 5s
targets:
  - deployment: transcoding-worker
    minReplicas: 0
    maxReplicas: 60
    # Replicas by Little's law so that jobs wait at most 90 s; the job duration is learned from the queue.
    latencyTarget: { maxWait: 90s }
    sources:
      # In the simulator every source reads the simulated queue. backlogPerWorker counts until the job duration
      # is learned, and is the per-replica target of the baselines simulate compares with.
      - type: rabbitmq
        url: amqp://simulated
        queue: transcoding
        managementUrl: http://simulated:15672
        backlogPerWorker: 2
";

/// The name `simulate` gives the agent's policy in reports.
pub const POLICY_NAME: &str = "queue-scaler";

/// How long after the last arrival a run may go on draining the queue.
const DRAIN_ALLOWANCE: Duration = Duration::from_secs(6 * 3600);

/// Why a simulation could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    /// Neither a built-in trace name nor a readable file.
    #[error("cannot read trace `{name}`: {source}; built-in traces: {}", super::BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    TraceFile {
        /// What the user gave.
        name: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The trace file is not a valid trace.
    #[error("{file}:{source}")]
    Trace {
        /// The file.
        file: String,
        /// What is wrong, with the line.
        source: TraceError,
    },
    /// The config is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// `--deployment` names no target of the config.
    #[error("the config has no target for deployment `{0}`")]
    NoSuchTarget(String),
    /// The world's settings are invalid.
    #[error("{0}")]
    Settings(#[from] SettingsError),
}

/// A trace by built-in name, or read from a CSV file (`arrival_s,duration_s`).
pub fn load_trace(name_or_file: &str) -> Result<Vec<Job>, SimulationError> {
    if let Some(jobs) = builtin(name_or_file) {
        return Ok(jobs);
    }
    let text = std::fs::read_to_string(Path::new(name_or_file))
        .map_err(|source| SimulationError::TraceFile { name: name_or_file.to_owned(), source })?;
    read_csv(&text).map_err(|source| SimulationError::Trace { file: name_or_file.to_owned(), source })
}

/// The default config, parsed.
pub fn default_config() -> Config {
    Config::parse("(built-in default)", DEFAULT_CONFIG, |_| None).expect("the built-in config is valid")
}

/// The wall time a simulation starts at, for schedules: a Monday, 00:00 UTC.
pub fn start_of_simulated_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z").expect("a valid timestamp").with_timezone(&Utc)
}

/// When a run stops even with jobs left: a generous allowance after the last arrival.
pub fn give_up_at(world: &World) -> Duration {
    Duration::from_secs_f64(world.last_arrival_s()) + DRAIN_ALLOWANCE
}

/// Runs the agent's loop for `target` over `jobs`; `progress` gets the fraction of the trace simulated so far. The
/// target's `scaleDown.idleFirst` turns on idle-first removal in the simulated Deployment, and `scaleDown.quiet`
/// quiet scale-down (whose fallbacks remove idle pods first, as the agent's do).
pub fn run_agent(
    jobs: Vec<Job>,
    target: &TargetConfig,
    poll_interval: Duration,
    settings: WorldSettings,
    progress: &mut dyn FnMut(f64),
) -> Result<PolicyOutcome, SimulationError> {
    settings.validate()?;
    // The agent with `scaleDown.idleFirst` or `quiet` marks idle pods for removal; the simulated Deployment honours
    // that.
    let scale_down = &target.scale_down;
    let settings =
        WorldSettings { idle_first: settings.idle_first || scale_down.idle_first || scale_down.quiet, ..settings };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let mut outcome = runtime.block_on(drive(jobs, target, poll_interval, settings, progress));
    if scale_down.quiet {
        outcome.report.scale_down = "quiet".to_owned();
    }
    Ok(outcome)
}

async fn drive(
    jobs: Vec<Job>,
    target: &TargetConfig,
    poll_interval: Duration,
    settings: WorldSettings,
    progress: &mut dyn FnMut(f64),
) -> PolicyOutcome {
    let world = World::new(jobs, settings);
    let give_up_at = give_up_at(&world);
    let last_arrival_s = world.last_arrival_s().max(poll_interval.as_secs_f64());
    let world = Arc::new(Mutex::new(world));
    let clock = Clock::starting_at(start_of_simulated_time());
    let sources = target.sources.iter().map(|_| Source::Simulated(SimulatedQueue::new(world.clone(), clock))).collect();
    let quiet_timeout = target.scale_down.quiet.then_some(target.scale_down.quiet_timeout);
    let deployment = SimulatedDeployment::new(world.clone(), clock, quiet_timeout);
    let settings = LoopSettings { read_timeout: poll_interval, dry_run: false };
    let mut agent = TargetLoop::new(target, sources, deployment, settings, Secrets::default(), Leadership::always());
    let mut ticks = tokio::time::interval(poll_interval);
    loop {
        ticks.tick().await;
        agent.tick(&clock).await;
        progress((clock.elapsed().as_secs_f64() / last_arrival_s).min(1.0));
        let done = world.lock().map(|w| w.is_done()).unwrap_or(true);
        if done || clock.elapsed() >= give_up_at {
            break;
        }
    }
    drop(agent);
    let mut world = Arc::try_unwrap(world)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .expect("the loop that shared the world has ended");
    world.advance_to(clock.elapsed().as_secs_f64());
    world.finish(POLICY_NAME)
}
