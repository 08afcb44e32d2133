//! The agent loop: poll the sources, ask the policy, write the target — once per `pollInterval`, per target.
//!
//! Everything with side effects lives here, at the edge; the decision itself is [`crate::policy`]. The loop is
//! generic over the target and takes its time from tokio's clock, so the simulator runs exactly this code against a
//! simulated Deployment under a paused runtime, where an hour passes in milliseconds.
//!
//! A tick, in order: stand by unless this agent is the leader, read the target (a manual hold ends the tick), read
//! every source concurrently under `readTimeout` (a timeout or an implausible value is a failed read), decide,
//! record metrics, and write the new count if it changed (or only log it with `--dry-run`) — asking once more
//! whether this agent still leads, because leadership can lapse while the sources are read.
//!
//! A tick that ends early (held, standing by, target unreadable) leaves a gap in the decisions: the next decision
//! restarts the stabilization windows from the count it finds, as a new agent does, so a hold that ends while the
//! queue happens to read 0 does not drop 20 replicas at once. A write that was sent but not confirmed (no answer in
//! time) is checked against the count the next tick reads, so the rate policies count it if it landed.

#[cfg(feature = "kube")]
pub mod cluster;
pub mod leader;
pub mod other_writers;
#[cfg(feature = "kube")]
pub mod reload;
pub mod shadow;
pub mod status;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use tokio::sync::watch;

use crate::config::TargetConfig;
use crate::metrics::TargetMetrics;
use crate::policy::{Autoscaler, Decision};
use crate::redact::Secrets;
use crate::source::{ReadBacklog, Reading, Source, SourceError};
use crate::target::{Hold, ScaleTarget, TargetError, Written};
use leader::Leadership;
use other_writers::{OtherWriters, Verdict};
use shadow::Recorder;
use status::StatusBoard;

/// Monotonic time for the windows and wall time for the schedules, both from tokio's clock, so that a paused
/// runtime moves them together.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: tokio::time::Instant,
    wall_at_start: DateTime<Utc>,
}

impl Clock {
    /// A clock whose wall time is `wall` now.
    pub fn starting_at(wall: DateTime<Utc>) -> Clock {
        Clock { started: tokio::time::Instant::now(), wall_at_start: wall }
    }

    /// (monotonic, wall) now.
    pub fn now(&self) -> (std::time::Instant, DateTime<Utc>) {
        let now = tokio::time::Instant::now();
        let elapsed = chrono::Duration::from_std(now - self.started).unwrap_or(chrono::Duration::MAX);
        (now.into_std(), self.wall_at_start + elapsed)
    }

    /// Time since the clock started.
    pub fn elapsed(&self) -> Duration {
        tokio::time::Instant::now() - self.started
    }
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// A decision was made (and written, unless it kept the count or this is a dry run).
    Decided(Decision),
    /// A manual hold is in force on a target at this count; nothing was read or written.
    Held(Hold, u32),
    /// Another agent leads; nothing was read or written.
    Standby,
    /// The target could not be read; nothing was decided.
    TargetUnavailable(TargetError),
    /// Another autoscaler (`Kind/name`) scales the target; it is left alone.
    OtherController(String),
    /// Others kept changing the target's count; it is left alone until then.
    BackingOff(tokio::time::Instant),
}

/// How a loop behaves, beyond the target's own config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopSettings {
    /// The longest a source read may take.
    pub read_timeout: Duration,
    /// Decide and log, but never write.
    pub dry_run: bool,
}

/// One target's loop: its sources, its decision state, its target and its metrics.
pub struct TargetLoop<T> {
    /// The target's config, so a reload can tell whether it changed.
    spec: TargetConfig,
    deployment: String,
    autoscaler: Autoscaler,
    sources: Vec<Source>,
    source_names: Vec<String>,
    failure_streaks: Vec<u32>,
    target: T,
    metrics: TargetMetrics,
    settings: LoopSettings,
    secrets: Secrets,
    leadership: Leadership,
    backoff: WriteBackoff,
    /// Whether the last tick ended without a decision: the next one restarts the windows.
    interrupted: bool,
    /// A write sent without an answer in time, as (when, from, to): it may have landed.
    unconfirmed: Option<(std::time::Instant, u32, u32)>,
    /// Where `queue-scaler status` reads this loop's state, when something serves it.
    board: Option<StatusBoard>,
    /// Other autoscalers and writers of the count.
    others: OtherWriters,
    /// Whether the backlog not draining was told.
    not_draining_told: bool,
    /// Shadow mode: decide beside whatever scales the target now, never write, and record (when recording).
    shadow: Option<Option<Recorder>>,
}

/// The longest a write to the target may take, all API calls included.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Spacing of writes after the target failed one: from one second, doubling up to a minute, each delay jittered
/// between half and one and a half times, so that agents facing one recovering API server do not retry in step.
#[derive(Debug, Default)]
struct WriteBackoff {
    failures: u32,
    not_before: Option<tokio::time::Instant>,
}

impl WriteBackoff {
    const FIRST: Duration = Duration::from_secs(1);
    const LONGEST: Duration = Duration::from_secs(60);

    fn allows_a_write(&self) -> bool {
        self.not_before.is_none_or(|t| tokio::time::Instant::now() >= t)
    }

    fn failed(&mut self) -> Duration {
        use std::hash::BuildHasher;
        self.failures = self.failures.saturating_add(1);
        let doubled = Self::FIRST.saturating_mul(1 << self.failures.saturating_sub(1).min(16)).min(Self::LONGEST);
        let unit = std::hash::RandomState::new().hash_one(self.failures) as f64 / u64::MAX as f64;
        let delay = doubled.mul_f64(0.5 + unit);
        self.not_before = Some(tokio::time::Instant::now() + delay);
        delay
    }

    fn succeeded(&mut self) {
        *self = WriteBackoff::default();
    }
}

impl<T: ScaleTarget> TargetLoop<T> {
    /// A loop for `config`, reading `sources` (in config order) and writing `target` while `leadership` holds.
    pub fn new(
        config: &TargetConfig,
        sources: Vec<Source>,
        target: T,
        settings: LoopSettings,
        secrets: Secrets,
        leadership: Leadership,
    ) -> Self {
        let source_names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
        TargetLoop {
            spec: config.clone(),
            deployment: config.name().to_owned(),
            autoscaler: Autoscaler::new(config),
            metrics: TargetMetrics::new(config.name(), (config.min_replicas, config.max_replicas), &source_names),
            failure_streaks: vec![0; sources.len()],
            sources,
            source_names,
            target,
            settings,
            secrets,
            leadership,
            backoff: WriteBackoff::default(),
            interrupted: false,
            unconfirmed: None,
            board: None,
            others: OtherWriters::default(),
            not_draining_told: false,
            shadow: None,
        }
    }

    /// Shadow mode: decides beside whatever scales the target now (another autoscaler and holds included), writes
    /// nothing whatever the settings say, and appends every tick's readings and live count to `recorder`.
    pub fn shadow(&mut self, recorder: Option<Recorder>) {
        self.settings.dry_run = true;
        self.shadow = Some(recorder);
    }

    /// Reports every tick and read to `board`, which also lists `all` the targets of the config.
    pub fn report_to(&mut self, board: StatusBoard, all: &[String]) {
        board.register(&self.deployment, &self.source_names, all);
        self.board = Some(board);
    }

    /// The target this loop writes.
    pub fn target(&self) -> &T {
        &self.target
    }

    /// The target's config.
    pub fn spec(&self) -> &TargetConfig {
        &self.spec
    }

    /// Whether a loop built from `spec` with `settings` would be this one.
    pub fn is_built_from(&self, spec: &TargetConfig, settings: LoopSettings) -> bool {
        self.spec == *spec && self.settings == settings
    }

    /// Takes over `previous`'s stabilization windows and rate history: a target whose config changed keeps what it
    /// remembers of recent counts, so a reload never restarts its scale-down window or lifts its rate limits.
    pub fn keep_windows_of(&mut self, previous: TargetLoop<T>) {
        self.autoscaler.take_windows(previous.autoscaler);
    }

    /// Runs ticks every `poll` until `shutdown` turns true; a tick in progress finishes first. Returns the loop, so a
    /// reload can keep what it learned.
    pub async fn run(mut self, poll: Duration, clock: Clock, mut shutdown: watch::Receiver<bool>) -> Self {
        let mut interval = tokio::time::interval(poll);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return self,
                _ = interval.tick() => {}
            }
            self.tick(&clock).await;
        }
    }

    /// One poll: read, decide, write.
    pub async fn tick(&mut self, clock: &Clock) -> Tick {
        let tick = self.poll(clock).await;
        self.interrupted = !matches!(tick, Tick::Decided(_));
        if self.interrupted {
            // Whatever happened to the count meanwhile (another leader's writes, a hold) is nobody's fight.
            self.others.expect(None);
        }
        if let Some(board) = &self.board {
            let secrets = &self.secrets;
            board.ticked(&self.deployment, |status| match &tick {
                Tick::Decided(decision) => {
                    status.state = "decided".into();
                    (status.current, status.desired) = (Some(decision.current), Some(decision.desired));
                    status.rule = Some(decision.reason.rule.code().to_owned());
                    status.reason = Some(secrets.scrub(&decision.reason.to_string()));
                    status.hold = None;
                    status.fallback = decision.sources.iter().any(|s| s.fallback);
                }
                Tick::Held(hold, replicas) => {
                    status.state = "held".into();
                    status.current = Some(*replicas);
                    status.hold = Some(match hold {
                        Hold::Until(until) => format!("until {}", until.to_rfc3339()),
                        Hold::Unreadable(why) => why.clone(),
                    });
                }
                Tick::Standby => status.state = "standby".into(),
                Tick::TargetUnavailable(error) => {
                    status.state = "unavailable".into();
                    status.reason = Some(error.to_string());
                }
                Tick::OtherController(owner) => {
                    status.state = "other-controller".into();
                    status.reason = Some(format!("{owner} scales it; not managed"));
                }
                Tick::BackingOff(until) => {
                    status.state = "backing-off".into();
                    let left = until.saturating_duration_since(tokio::time::Instant::now()).as_secs();
                    status.reason = Some(format!("others kept changing its count; backing off for {left} s more"));
                }
            });
        }
        tick
    }

    async fn poll(&mut self, clock: &Clock) -> Tick {
        if !self.leadership.is_leading() {
            return Tick::Standby;
        }
        let mut state = match self.target.read().await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(deployment = %self.deployment, %error, "cannot read the target; skipping this poll");
                return Tick::TargetUnavailable(error);
            }
        };
        if let Some((at, from, to)) = self.unconfirmed.take()
            && state.replicas == to
        {
            tracing::info!(deployment = %self.deployment, from, to, "a write that went unanswered had landed");
            self.autoscaler.record_scale(at, from, to);
            self.metrics.scaled(from, to);
        }
        let (_, wall) = clock.now();
        let managing = self.shadow.is_none();
        if managing {
            match self.others.judge(&mut state, wall, &self.target, &self.metrics, &self.deployment).await {
                Verdict::Manage => {}
                Verdict::OtherController(owner) => return Tick::OtherController(owner),
                Verdict::BackingOff(until) => return Tick::BackingOff(until),
            }
        }
        if let Some(hold) = state.hold.as_ref().filter(|h| managing && h.is_active(wall)) {
            match hold {
                Hold::Until(until) => {
                    tracing::debug!(deployment = %self.deployment, %until, "held by annotation; not scaling");
                }
                Hold::Unreadable(why) => {
                    tracing::warn!(deployment = %self.deployment, "{why}; not scaling")
                }
            }
            self.metrics.held(state.replicas);
            return Tick::Held(hold.clone(), state.replicas);
        }

        let readings = self.read_sources().await;
        let (now, wall) = clock.now();
        if self.interrupted {
            self.autoscaler.restart_windows(now, state.replicas);
        }
        let decision = self.autoscaler.decide(now, wall, state.replicas, &readings);
        self.metrics.decision(&decision, &readings);
        self.tell_not_draining(decision.not_draining.as_deref());
        if let Some(Some(recorder)) = &self.shadow {
            recorder.record(clock.elapsed(), &self.deployment, &self.source_names, &readings, state.replicas);
        }
        let found_next = self.apply(&decision, now).await;
        self.others.expect(found_next);
        Tick::Decided(decision)
    }

    async fn read_sources(&mut self) -> Vec<Option<Reading>> {
        let timeout = self.settings.read_timeout;
        let results = join_all(self.sources.iter().map(|source| async move {
            let started = tokio::time::Instant::now();
            let result = match tokio::time::timeout(timeout, source.read()).await {
                Ok(result) => result.and_then(Reading::checked),
                Err(_) => Err(SourceError::Timeout(timeout)),
            };
            (started.elapsed(), result)
        }))
        .await;
        results
            .into_iter()
            .enumerate()
            .map(|(i, (took, result))| {
                self.metrics.read(i, took, &result);
                self.note_source_health(i, &result);
                if let Some(board) = &self.board {
                    let outcome = match &result {
                        Ok(reading) => Ok(reading.backlog),
                        Err(error) => Err((error.kind(), self.secrets.scrub(&error.to_string()))),
                    };
                    board.read(&self.deployment, i, outcome);
                }
                result.ok()
            })
            .collect()
    }

    /// Says once, when it starts, that the backlog does not drain however many replicas run, and once when it ends.
    fn tell_not_draining(&mut self, why: Option<&str>) {
        if self.not_draining_told == why.is_some() {
            return;
        }
        self.not_draining_told = why.is_some();
        self.metrics.not_draining(why.is_some());
        match why {
            Some(why) => {
                tracing::warn!(deployment = %self.deployment, "{why}");
                self.target.warn("NotDraining", why);
            }
            None => tracing::info!(deployment = %self.deployment, "the backlog moves again; scaling up as needed"),
        }
    }

    /// Logs a failing source on its first failure and every tenth after, and its recovery, to keep logs readable.
    fn note_source_health(&mut self, index: usize, result: &Result<Reading, SourceError>) {
        let source = &self.source_names[index];
        let streak = &mut self.failure_streaks[index];
        match result {
            Ok(_) if *streak > 0 => {
                tracing::info!(deployment = %self.deployment, %source, failed_reads = *streak, "source recovered");
                *streak = 0;
            }
            Ok(_) => {}
            Err(error) => {
                *streak += 1;
                if *streak == 1 || streak.is_multiple_of(10) {
                    let error = self.secrets.scrub(&error.to_string());
                    tracing::warn!(
                        deployment = %self.deployment, %source, kind = error_kind(result), failed_reads = *streak,
                        %error, "source read failed; holding the replica count"
                    );
                }
            }
        }
    }

    /// Writes the decision if it changes the count; returns the count the next tick should find if nobody else
    /// writes, when that is known.
    async fn apply(&mut self, decision: &Decision, now: std::time::Instant) -> Option<u32> {
        let (from, to) = (decision.current, decision.desired);
        let reason = self.secrets.scrub(&decision.reason.to_string());
        if from == to {
            tracing::debug!(deployment = %self.deployment, replicas = to, %reason, "no change");
            if !self.settings.dry_run && self.leadership.is_leading() {
                self.target.keep(from).await;
            }
            return Some(from);
        }
        if self.settings.dry_run {
            tracing::info!(deployment = %self.deployment, from, to, %reason, "would scale (dry run)");
            return Some(from);
        }
        if !self.leadership.is_leading() {
            tracing::info!(deployment = %self.deployment, from, to, "leadership lapsed before the write; not scaling");
            return None;
        }
        if !self.backoff.allows_a_write() {
            tracing::debug!(deployment = %self.deployment, from, to, "backing off after a failed write");
            return Some(from);
        }
        let written = match tokio::time::timeout(WRITE_TIMEOUT, self.target.write(from, to, &reason)).await {
            Ok(result) => result,
            Err(_) => {
                self.unconfirmed = Some((now, from, to));
                Err(TargetError::Unreachable(format!("no answer within {}s", WRITE_TIMEOUT.as_secs())))
            }
        };
        match written {
            Ok(Written::Pending(what)) => {
                tracing::info!(deployment = %self.deployment, from, to, %reason, %what, "scale-down under way");
                Some(from)
            }
            Ok(Written::Done) => {
                self.backoff.succeeded();
                self.autoscaler.record_scale(now, from, to);
                self.metrics.scaled(from, to);
                tracing::info!(deployment = %self.deployment, from, to, %reason, "scaled");
                Some(to)
            }
            // Not a fault: someone else moved the count, a hold came, or leadership lapsed during the write; the next
            // poll decides again from what it finds (someone else's count was already found changed).
            Err(error @ (TargetError::Changed { .. } | TargetError::Held(_) | TargetError::NotLeading)) => {
                tracing::info!(deployment = %self.deployment, from, to, %error, "not scaled");
                None
            }
            Err(error) => {
                self.metrics.write_failed();
                let retry_in = self.backoff.failed();
                tracing::warn!(
                    deployment = %self.deployment, from, to, %error, retry_in = ?retry_in,
                    "could not write the replica count"
                );
                // A write that went unanswered may have landed; one that failed outright did not.
                self.unconfirmed.is_none().then_some(from)
            }
        }
    }
}

fn error_kind(result: &Result<Reading, SourceError>) -> &'static str {
    result.as_ref().err().map_or("", SourceError::kind)
}

#[cfg(test)]
mod tests;
