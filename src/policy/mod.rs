//! The decision, pure: what the sources saw and the time in, a replica count and its reason out.
//!
//! No I/O happens here, and time is an argument, so the agent, the simulator and `replay` all call the same code
//! and tests can walk through hours of decisions in microseconds. One [`Autoscaler`] holds the memory a target needs
//! (recent recommendations, recent scale changes, failure streaks); [`Autoscaler::decide`] runs the stages in the
//! order of DESIGN.md:
//!
//! 1. per source, `ceil(backlog / backlogPerWorker)` — or, with `latencyTarget`, Little's law (see [`latency`]) —
//!    kept at the current count within the HPA's 10 % tolerance, capped by what the source can use (partitions);
//!    a failing source asks to hold, or for the fallback;
//! 2. the maximum over sources (as the HPA does with several metrics);
//! 3. `maxReplicas`;
//! 4. floors: `minReplicas` and active schedules; with `minReplicas: 0`, zero when every backlog is at or below
//!    `activation` (in latency mode, also no arrivals within the scale-down window), woken by a backlog above it or
//!    a source's [`Reading::wakes`]; at zero a failing source holds the count rather than let a backlog below
//!    `activation` wake it;
//! 5. HPA `behavior`: stabilization windows, then rate policies — except during a burst (see [`burst`]), when the
//!    recommendation applies at once (past the default scale-up rules only) and nothing is removed. With a
//!    [`scale_down_policy`] (the default in latency mode) the scale-down window is its `delay`, and no replica that
//!    has a job in flight is removed;
//! 6. the floors and `maxReplicas` again, which bypass `behavior` as `minReplicas`/`maxReplicas` do in the HPA.
//!
//! A Deployment at 0 replicas whose `minReplicas` is above 0 was stopped by hand: as the HPA does, it is left alone
//! ([`Rule::ScalingDisabled`]) until someone scales it up.
//!
//! Every stage that changes the number says so in the decision's [`Reason`]; the rule with the last word is its code.

pub mod behavior;
pub mod burst;
pub mod latency;
pub mod not_draining;
pub mod observation;
pub mod scale_down_policy;
pub mod schedule;

use std::fmt;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::config::TargetConfig;
use behavior::{BehaviorBound, BehaviorState, Rules};
use burst::{BurstConfig, BurstState, Interval};
use latency::{Estimates, LatencyTarget, SourceLearning};
use not_draining::{DrainWatch, Draining, NotDrainingConfig};
pub use observation::Reading;
use scale_down_policy::{ScaleDownPolicy, SmallSteps};
use schedule::CompiledSchedule;

/// The HPA's default tolerance: no change while usage is within 10 % of the target.
pub const TOLERANCE: f64 = 0.1;

/// Arrivals that keep less than this share of one worker busy (arrival rate × job duration) are no reason to keep a
/// worker from zero: one 20 s job every 400 s. It also lets a smoothed rate that decays towards zero reach "idle".
const NEGLIGIBLE_LOAD: f64 = 0.05;

/// The rule that had the last word on a decision; its code is the `reason` label and JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The count one source's backlog asks for.
    SourceRecommendation,
    /// Usage is within the tolerance of the target: no change.
    WithinTolerance,
    /// A source is failing: hold the count, never scale down on an error.
    SourceFailing,
    /// A source kept failing: its fallback replica count applies.
    Fallback,
    /// The source cannot use more replicas (e.g. Kafka partitions).
    ReplicaCap,
    /// `maxReplicas`.
    MaxReplicas,
    /// `minReplicas`.
    MinReplicas,
    /// An active schedule's floor.
    ScheduleFloor,
    /// `minReplicas: 0` and every backlog at or below `activation`: scale to zero.
    Idle,
    /// Woken from zero because a backlog is above `activation`.
    Activation,
    /// Held below the recommendation by the scale-up stabilization window.
    ScaleUpStabilized,
    /// Held above the recommendation by the scale-down stabilization window.
    ScaleDownStabilized,
    /// Limited by the scale-up rate policies.
    ScaleUpLimit,
    /// Limited by the scale-down rate policies.
    ScaleDownLimit,
    /// `scaleUp.selectPolicy: Disabled`.
    ScaleUpDisabled,
    /// `scaleDown.selectPolicy: Disabled`.
    ScaleDownDisabled,
    /// The count latency mode asks for: Little's law on one source's arrivals and waiting backlog.
    LatencyTarget,
    /// A burst: the recommendation applies at once, past the scale-up window and rate policies.
    Burst,
    /// A burst is on: no scale-down until it is over.
    BurstHold,
    /// No scale-down below the replicas working on in-flight jobs.
    BusyReplicas,
    /// `replicas: 0` with `minReplicas` above 0: someone stopped the workers by hand; as with the HPA, the count is
    /// left alone until it is raised again.
    ScalingDisabled,
    /// The backlog does not shrink though replicas were added and completions did not rise: no scale-up.
    NotDraining,
    /// Latency mode with the capacity for waiting jobs raised because the oldest message waited past `maxWait`.
    MeasuredWait,
    /// A small scale-down (under `scaleDownPolicy.smallStepPercent` of the count) waits `smallStepDelay`.
    ScaleDownDeferred,
}

impl Rule {
    /// Every rule, for metrics that must reset the others.
    pub const ALL: [Rule; 24] = [
        Rule::SourceRecommendation,
        Rule::WithinTolerance,
        Rule::SourceFailing,
        Rule::Fallback,
        Rule::ReplicaCap,
        Rule::MaxReplicas,
        Rule::MinReplicas,
        Rule::ScheduleFloor,
        Rule::Idle,
        Rule::Activation,
        Rule::ScaleUpStabilized,
        Rule::ScaleDownStabilized,
        Rule::ScaleUpLimit,
        Rule::ScaleDownLimit,
        Rule::ScaleUpDisabled,
        Rule::ScaleDownDisabled,
        Rule::LatencyTarget,
        Rule::Burst,
        Rule::BurstHold,
        Rule::BusyReplicas,
        Rule::ScalingDisabled,
        Rule::NotDraining,
        Rule::MeasuredWait,
        Rule::ScaleDownDeferred,
    ];

    /// A stable CamelCase code, in the style of the HPA's condition reasons.
    pub fn code(self) -> &'static str {
        match self {
            Rule::SourceRecommendation => "SourceRecommendation",
            Rule::WithinTolerance => "WithinTolerance",
            Rule::SourceFailing => "SourceFailing",
            Rule::Fallback => "Fallback",
            Rule::ReplicaCap => "ReplicaCap",
            Rule::MaxReplicas => "MaxReplicas",
            Rule::MinReplicas => "MinReplicas",
            Rule::ScheduleFloor => "ScheduleFloor",
            Rule::Idle => "Idle",
            Rule::Activation => "Activation",
            Rule::ScaleUpStabilized => "ScaleUpStabilized",
            Rule::ScaleDownStabilized => "ScaleDownStabilized",
            Rule::ScaleUpLimit => "ScaleUpLimit",
            Rule::ScaleDownLimit => "ScaleDownLimit",
            Rule::ScaleUpDisabled => "ScaleUpDisabled",
            Rule::ScaleDownDisabled => "ScaleDownDisabled",
            Rule::LatencyTarget => "LatencyTarget",
            Rule::Burst => "Burst",
            Rule::BurstHold => "BurstHold",
            Rule::BusyReplicas => "BusyReplicas",
            Rule::ScalingDisabled => "ScalingDisabled",
            Rule::NotDraining => "NotDraining",
            Rule::MeasuredWait => "MeasuredWait",
            Rule::ScaleDownDeferred => "ScaleDownDeferred",
        }
    }
}

/// Why a decision came out as it did: the rule that had the last word and a sentence for humans.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// The binding rule.
    pub rule: Rule,
    /// Which source drove the decision, what it saw, and each rule that changed the number.
    pub message: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule.code(), self.message)
    }
}

/// What one source contributed to a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceVerdict {
    /// The replica count this source asks for (for a failing source: hold or fallback).
    pub recommendation: u32,
    /// Whether the read failed this tick.
    pub failing: bool,
    /// Failed reads in a row.
    pub failure_streak: u32,
    /// Whether its recommendation is the fallback count (it kept failing).
    pub fallback: bool,
    /// What was learned from its reading this tick (nothing when the read failed).
    pub learned: Learned,
}

/// What one source's reading says beyond its count, for metrics and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Learned {
    /// Its backlog is above `activation` (or it saw work only a running worker can count): a reason to run.
    pub active: bool,
    /// The job duration latency mode uses, configured or learned, in seconds.
    pub job_duration_s: Option<f64>,
    /// The smoothed arrival rate, jobs per second.
    pub arrival_rate: Option<f64>,
    /// How long a job arriving now would wait at the current count, by Little's law: the waiting jobs' work over
    /// the current slots. `None` without a job duration, or at zero replicas.
    pub predicted_wait_s: Option<f64>,
}

/// One decision for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count the decision started from.
    pub current: u32,
    /// The replica count to run.
    pub desired: u32,
    /// Why.
    pub reason: Reason,
    /// Per source, in config order.
    pub sources: Vec<SourceVerdict>,
    /// Why more replicas do not help, when the backlog does not drain (see [`not_draining`]).
    pub not_draining: Option<String>,
}

/// The decision state of one target.
pub struct Autoscaler {
    sources: Vec<SourceRule>,
    min_replicas: u32,
    max_replicas: u32,
    activation: f64,
    fallback: Option<crate::config::Fallback>,
    schedules: Vec<CompiledSchedule>,
    up: Rules,
    down: Rules,
    behavior: Option<BehaviorState>,
    failure_streaks: Vec<u32>,
    latency: Option<LatencyTarget>,
    burst: BurstConfig,
    burst_state: BurstState,
    /// In latency mode, when a source last saw jobs arrive faster than `activation` per job duration.
    arrivals_seen: Option<Instant>,
    not_draining: NotDrainingConfig,
    drain_watch: DrainWatch,
    /// Whether a burst may jump past `behavior.scaleUp`: only when the user left it at its defaults.
    burst_bypasses_scale_up: bool,
    /// `cooldownPeriod`: how long after the last active read the last replica goes.
    cooldown: Option<std::time::Duration>,
    /// When a source was last above `activation`, for `cooldownPeriod`.
    last_active: Option<Instant>,
    /// `scaleDownPolicy` in force (latency mode's default, or as written): busy replicas kept, and small steps' wait.
    scale_down_policy: Option<ScaleDownPolicy>,
    small_steps: SmallSteps,
}

struct SourceRule {
    name: String,
    backlog_per_worker: f64,
    learning: SourceLearning,
    /// What this tick's reading taught, for the story and the burst test.
    estimates: Estimates,
}

/// One source's count, as (capped, uncapped, within tolerance), and the arithmetic behind it.
struct Count {
    capped: u32,
    uncapped: u32,
    within: bool,
    rule: Rule,
    seen: String,
}

/// A count and the story of how it was reached, built up stage by stage.
struct Draft {
    replicas: u32,
    rule: Rule,
    story: Vec<String>,
}

impl Draft {
    fn bind(&mut self, replicas: u32, rule: Rule, why: String) {
        self.replicas = replicas;
        self.rule = rule;
        self.story.push(why);
    }
}

impl Autoscaler {
    /// A fresh decision state for `target` (validated config).
    pub fn new(target: &TargetConfig) -> Autoscaler {
        Autoscaler {
            sources: target
                .sources
                .iter()
                .map(|s| SourceRule {
                    name: s.name.clone(),
                    backlog_per_worker: s.backlog_per_worker,
                    learning: SourceLearning::default(),
                    estimates: Estimates::default(),
                })
                .collect(),
            min_replicas: target.min_replicas,
            max_replicas: target.max_replicas,
            activation: target.activation,
            fallback: target.fallback,
            schedules: target.schedules.iter().filter_map(|s| s.compile()).collect(),
            up: target.behavior.up(),
            down: scale_down_rules(target),
            behavior: None,
            failure_streaks: vec![0; target.sources.len()],
            latency: target.latency_target,
            burst: target.burst,
            burst_state: BurstState::default(),
            arrivals_seen: None,
            not_draining: target.not_draining,
            drain_watch: DrainWatch::default(),
            burst_bypasses_scale_up: !target.behavior.names_scale_up(),
            cooldown: target.cooldown_period,
            last_active: None,
            scale_down_policy: target.effective_scale_down_policy(),
            small_steps: SmallSteps::default(),
        }
    }

    /// Decides the replica count. `readings[i]` is source `i`'s reading, `None` if the read failed this tick;
    /// `now` drives the windows and `wall` the schedules.
    pub fn decide(
        &mut self,
        now: Instant,
        wall: DateTime<Utc>,
        current: u32,
        readings: &[Option<Reading>],
    ) -> Decision {
        self.learn(now, current, readings);
        let bursting =
            self.burst.enabled && self.burst_state.observe(now, self.burst_interval(current), self.burst.hold_for);
        let mut verdicts = self.judge_sources(current, readings);
        self.tell_what_was_learned(current, readings, &mut verdicts);
        if current == 0 && self.min_replicas > 0 {
            // When it is raised again, the windows start afresh from that count, as after a restart.
            self.behavior = None;
            let message = format!(
                "replicas is 0 while minReplicas is {}: stopped by hand, so left alone until it is scaled up again \
                 (as the HPA does)",
                self.min_replicas
            );
            return Decision {
                current,
                desired: 0,
                reason: Reason { rule: Rule::ScalingDisabled, message },
                sources: verdicts,
                not_draining: None,
            };
        }
        let mut draft = self.strongest_source(current, readings, &verdicts);
        let not_draining = self.drain_watch.observe(now, self.completions(readings), current, &self.not_draining);
        if let Some(why) = not_draining.as_ref().filter(|_| draft.replicas > current) {
            draft.bind(current, Rule::NotDraining, why.clone());
        }

        if draft.replicas > self.max_replicas {
            draft.bind(self.max_replicas, Rule::MaxReplicas, format!("capped at maxReplicas {}", self.max_replicas));
        }
        let floor = self.apply_floors(now, wall, current, readings, &verdicts, &mut draft);
        let cooled_to_zero = floor.replicas == 0 && draft.replicas == 0 && self.cooldown.is_some();
        let wanted = draft.replicas;

        let behavior = self.behavior.get_or_insert_with(|| BehaviorState::seeded(now, current));
        let (stabilized, bound) = behavior.stabilize(now, current, draft.replicas, &self.up, &self.down);
        if let Some(bound) = bound {
            let window = match bound {
                BehaviorBound::UpStabilized => self.up.window,
                _ => self.down.window,
            };
            draft.bind(
                stabilized,
                rule_for(bound),
                format!("stabilized at {stabilized} by the {}s window", window.as_secs()),
            );
        }
        let (limited, bound) = behavior.limit_rate(now, current, draft.replicas, &self.up, &self.down);
        if let Some(bound) = bound {
            let rules = match bound {
                BehaviorBound::UpLimited | BehaviorBound::UpDisabled | BehaviorBound::UpStabilized => &self.up,
                BehaviorBound::DownLimited | BehaviorBound::DownDisabled | BehaviorBound::DownStabilized => &self.down,
            };
            draft.bind(limited, rule_for(bound), format!("limited to {limited} ({})", rules.describe()));
        }
        if bursting {
            self.hold_through_burst(current, wanted, &mut draft);
        }
        if self.scale_down_policy.is_some_and(|policy| policy.keep_busy) {
            keep_busy_replicas(current, readings, self.concurrency(), &mut draft);
        }
        if let Some(policy) = &self.scale_down_policy
            && let Some(why) = self.small_steps.defer(policy, now, current, draft.replicas)
        {
            draft.bind(current, Rule::ScaleDownDeferred, why);
        }

        // Floors and maxReplicas bypass behavior, as minReplicas and maxReplicas do in the HPA.
        if draft.replicas < floor.replicas {
            draft.bind(floor.replicas, floor.rule, floor.why);
        }
        if draft.replicas > self.max_replicas {
            draft.bind(self.max_replicas, Rule::MaxReplicas, format!("capped at maxReplicas {}", self.max_replicas));
        }
        // As KEDA does, the step to zero after cooldownPeriod is taken at once, past behavior's windows.
        if cooled_to_zero && draft.replicas > 0 {
            draft.bind(0, Rule::Idle, "cooldownPeriod has passed since a source was last active: to zero".to_owned());
        }
        Decision {
            current,
            desired: draft.replicas,
            reason: Reason { rule: draft.rule, message: draft.story.join("; ") },
            sources: verdicts,
            not_draining,
        }
    }

    /// Starts the stabilization windows afresh from `current`, as at start: after a gap in the decisions, so that one
    /// reading taken after a manual hold ends can never drop the count faster than `behavior` allows over a full
    /// window.
    pub fn restart_windows(&mut self, now: Instant, current: u32) {
        self.small_steps = SmallSteps::default();
        match &mut self.behavior {
            Some(behavior) => behavior.reseed(now, current),
            None => self.behavior = Some(BehaviorState::seeded(now, current)),
        }
    }

    /// Takes `previous`'s windows and rate history (a reload that changed the target's config).
    pub fn take_windows(&mut self, previous: Autoscaler) {
        self.behavior = previous.behavior;
    }

    /// Remembers that the count was changed from `from` to `to` at `now`, for the rate policies.
    pub fn record_scale(&mut self, now: Instant, from: u32, to: u32) {
        self.behavior
            .get_or_insert_with(|| BehaviorState::seeded(now, from))
            .record_scale(now, from, to, &self.up, &self.down);
    }

    /// Feeds every reading to its source's estimators; a failed read teaches nothing.
    fn learn(&mut self, now: Instant, current: u32, readings: &[Option<Reading>]) {
        let configured = self.latency.and_then(|l| l.job_duration).map(|d| d.as_secs_f64());
        let busy = f64::from(current) * f64::from(self.concurrency());
        for (source, reading) in self.sources.iter_mut().zip(readings) {
            source.estimates = match reading {
                Some(reading) => source.learning.observe(now, reading, configured, busy),
                None => Estimates::default(),
            };
            let e = &source.estimates;
            let load = e.arrival_rate.zip(e.job_duration_s).map(|(rate, d)| rate * d);
            let arriving = load.is_some_and(|busy| busy > self.activation.max(NEGLIGIBLE_LOAD));
            if self.latency.is_some() && arriving {
                self.arrivals_seen = Some(now);
            }
        }
    }

    /// Fills each passing verdict's [`Learned`].
    fn tell_what_was_learned(&self, current: u32, readings: &[Option<Reading>], verdicts: &mut [SourceVerdict]) {
        let slots = f64::from(current) * f64::from(self.concurrency());
        for ((verdict, source), reading) in verdicts.iter_mut().zip(&self.sources).zip(readings) {
            let Some(reading) = reading else { continue };
            let e = &source.estimates;
            verdict.learned = Learned {
                active: reading.backlog > self.activation || reading.wakes,
                job_duration_s: e.job_duration_s,
                arrival_rate: e.arrival_rate,
                predicted_wait_s: e
                    .job_duration_s
                    .filter(|_| slots > 0.0)
                    .map(|d| latency::waiting(reading) * d / slots),
            };
        }
    }

    /// The total backlog, completions per second and longest job duration over the sources that tell their
    /// completions this tick, if any.
    fn completions(&self, readings: &[Option<Reading>]) -> Option<Draining> {
        self.sources
            .iter()
            .zip(readings)
            .filter_map(|(source, reading)| {
                Some(Draining {
                    backlog: reading.as_ref()?.backlog,
                    completions: source.estimates.completion_rate?,
                    job_duration_s: source.estimates.job_duration_s,
                })
            })
            .reduce(|sum, more| Draining {
                backlog: sum.backlog + more.backlog,
                completions: sum.completions + more.completions,
                job_duration_s: [sum.job_duration_s, more.job_duration_s].into_iter().flatten().reduce(f64::max),
            })
    }

    fn concurrency(&self) -> u32 {
        self.latency.map_or(1, |l| l.concurrency)
    }

    /// The interval that looks most like a burst, over the sources whose job duration is known.
    fn burst_interval(&self, current: u32) -> Option<Interval> {
        let slots = f64::from(current) * f64::from(self.concurrency());
        self.sources
            .iter()
            .filter_map(|source| {
                let e = &source.estimates;
                let (dt, growth, duration) = (e.interval_s?, e.backlog_growth?, e.job_duration_s?);
                Some(Interval {
                    growth,
                    drain_capacity: slots * dt / duration,
                    expected_arrivals: e.arrival_rate.unwrap_or(0.0) * dt,
                })
            })
            .find(Interval::is_burst)
    }

    /// During a burst the recommendation (after caps and floors) applies at once — unless the user wrote their own
    /// `behavior.scaleUp`, which is obeyed — and nothing is removed.
    fn hold_through_burst(&self, current: u32, wanted: u32, draft: &mut Draft) {
        if draft.replicas < wanted && self.burst_bypasses_scale_up {
            draft.bind(
                wanted,
                Rule::Burst,
                format!(
                    "burst: the backlog grows faster than {current} replicas drain it; scaling to {wanted} at once"
                ),
            );
        }
        if draft.replicas < current {
            draft.bind(current, Rule::BurstHold, "burst: no scale-down until it is over".to_owned());
        }
    }

    fn judge_sources(&mut self, current: u32, readings: &[Option<Reading>]) -> Vec<SourceVerdict> {
        let counts: Vec<Option<Count>> = self
            .sources
            .iter()
            .zip(readings.iter().chain(std::iter::repeat(&None)))
            .map(|(source, reading)| reading.as_ref().map(|r| self.count(source, r, current)))
            .collect();
        self.failure_streaks
            .iter_mut()
            .zip(counts)
            .map(|(streak, count)| match count {
                Some(count) => {
                    *streak = 0;
                    SourceVerdict {
                        recommendation: count.capped,
                        failing: false,
                        failure_streak: 0,
                        fallback: false,
                        learned: Learned::default(),
                    }
                }
                None => {
                    *streak = streak.saturating_add(1);
                    let fallback = self.fallback.filter(|f| *streak >= f.failure_threshold);
                    SourceVerdict {
                        recommendation: fallback.map_or(current, |f| f.replicas.max(current)),
                        failing: true,
                        failure_streak: *streak,
                        fallback: fallback.is_some(),
                        learned: Learned::default(),
                    }
                }
            })
            .collect()
    }

    /// One source's count: by Little's law in latency mode once the job duration is known, else by
    /// `backlogPerWorker`.
    fn count(&self, source: &SourceRule, reading: &Reading, current: u32) -> Count {
        let by_backlog = || {
            let (capped, uncapped, within) = recommend(reading, source.backlog_per_worker, current);
            let seen = format!(
                "{}: backlog {} over {} per worker",
                source.name,
                trim(reading.backlog),
                trim(source.backlog_per_worker)
            );
            Count { capped, uncapped, within, rule: Rule::SourceRecommendation, seen }
        };
        let Some(target) = self.latency else {
            return by_backlog();
        };
        let Some(slots) = latency::wanted_slots(&target, reading, &source.estimates) else {
            let mut count = by_backlog();
            count.seen.push_str(" (latencyTarget: job duration not learned yet)");
            return count;
        };
        let (capped, uncapped, within) = round_within_tolerance(slots, 1.0, reading.replica_cap, current);
        let e = &source.estimates;
        let duration = e.job_duration_s.unwrap_or(0.0);
        let per_replica = if target.concurrency > 1 { format!(") / {}", target.concurrency) } else { ")".to_owned() };
        let correction = latency::correction(&target, reading);
        let (rule, corrected) = if correction > 1.0 {
            let age = reading.oldest_message_age.map_or(0, |a| a.as_secs());
            (Rule::MeasuredWait, format!(" × {correction:.2} (the oldest message waited {age}s, over maxWait)"))
        } else {
            (Rule::LatencyTarget, String::new())
        };
        let seen = format!(
            "{}: ({:.2}/s × {duration:.1}s + {} waiting × {duration:.1}s / {}s{corrected}{per_replica} = {slots:.2} replicas",
            source.name,
            e.arrival_rate.unwrap_or(0.0),
            trim(latency::waiting(reading)),
            trim(target.max_wait.as_secs_f64()),
        );
        Count { capped, uncapped, within, rule, seen }
    }

    fn strongest_source(&self, current: u32, readings: &[Option<Reading>], verdicts: &[SourceVerdict]) -> Draft {
        let Some((index, verdict)) = verdicts.iter().enumerate().rev().max_by_key(|(_, v)| v.recommendation) else {
            return Draft { replicas: current, rule: Rule::WithinTolerance, story: vec!["no sources".to_owned()] };
        };
        let source = &self.sources[index];
        let mut draft = if verdict.failing {
            let (rule, what) = match self.fallback {
                Some(f) if verdict.failure_streak >= f.failure_threshold => {
                    (Rule::Fallback, format!("fallback to {} replicas", f.replicas))
                }
                _ => (Rule::SourceFailing, "holding, never scaling down on an error".to_owned()),
            };
            let failed = format!("{} failed {} time(s) in a row; {what}", source.name, verdict.failure_streak);
            Draft { replicas: verdict.recommendation, rule, story: vec![failed] }
        } else {
            let reading = readings[index].as_ref().expect("a passing verdict has a reading");
            let Count { capped, uncapped, within, rule, seen } = self.count(source, reading, current);
            if within {
                Draft {
                    replicas: current,
                    rule: Rule::WithinTolerance,
                    story: vec![format!("{seen} is within 10% of {current} replicas")],
                }
            } else {
                let mut draft = Draft { replicas: uncapped, rule, story: vec![format!("{seen} → {uncapped}")] };
                if capped < uncapped {
                    draft.bind(
                        capped,
                        Rule::ReplicaCap,
                        format!("capped at {capped}, the most replicas the source can use"),
                    );
                }
                draft
            }
        };
        if verdicts.iter().any(|v| v.failing) && !verdict.failing && draft.replicas <= current {
            let failing: Vec<&str> =
                verdicts.iter().zip(&self.sources).filter(|(v, _)| v.failing).map(|(_, s)| s.name.as_str()).collect();
            draft.bind(
                current.max(draft.replicas),
                Rule::SourceFailing,
                format!("{} failing: no scale-down on an error", failing.join(", ")),
            );
        }
        draft
    }

    /// Applies the floor to the draft and returns it, so it can be enforced again after `behavior`.
    fn apply_floors(
        &mut self,
        now: Instant,
        wall: DateTime<Utc>,
        current: u32,
        readings: &[Option<Reading>],
        verdicts: &[SourceVerdict],
        draft: &mut Draft,
    ) -> Floor {
        let scheduled = self
            .schedules
            .iter()
            .filter_map(|s| s.floor_at(wall).map(|floor| (floor, s)))
            .max_by_key(|(floor, _)| *floor);
        let mut floor = Floor {
            replicas: self.min_replicas,
            rule: Rule::MinReplicas,
            why: format!("raised to minReplicas {}", self.min_replicas),
        };
        if let Some((replicas, schedule)) = scheduled.filter(|(r, _)| *r > self.min_replicas) {
            floor = Floor {
                replicas,
                rule: Rule::ScheduleFloor,
                why: format!("raised to {replicas} by schedule `{}`", schedule.cron()),
            };
        }
        if floor.replicas == 0 {
            let activation = trim(self.activation);
            let cooling = self.cooldown.zip(self.last_active).map(|(c, at)| (c, now.saturating_duration_since(at)));
            if let Some(why) = self.active_source(readings) {
                self.last_active = Some(now);
                floor = Floor { replicas: 1, rule: Rule::Activation, why };
            } else if let Some((cooldown, since)) = cooling.filter(|(c, since)| since < c && current > 0) {
                floor = Floor {
                    replicas: 1,
                    rule: Rule::Activation,
                    why: format!(
                        "a source was last active {}s ago, within cooldownPeriod {}s: keeping one replica",
                        since.as_secs(),
                        cooldown.as_secs()
                    ),
                };
            } else if verdicts.iter().any(|v| v.failing) {
                // What the healthy sources see is at or below activation, so they give no reason to run; a failing
                // one cannot say. Hold (or take the fallback), whatever the sub-activation backlog would count.
                let held = verdicts.iter().filter(|v| v.failing).map(|v| v.recommendation).max().unwrap_or(current);
                if draft.replicas > held {
                    let rule = if held > current { Rule::Fallback } else { Rule::SourceFailing };
                    draft.bind(
                        held,
                        rule,
                        format!("every healthy backlog is at or below activation {activation} and a source is failing: holding at {held}"),
                    );
                }
            } else if let Some(since) = self.recent_arrivals(now) {
                floor = Floor {
                    replicas: 1,
                    rule: Rule::Activation,
                    why: format!(
                        "jobs arrived {}s ago, within the {}s scale-down window: not idle yet",
                        since.as_secs(),
                        self.down.window.as_secs()
                    ),
                };
            } else {
                draft.bind(
                    0,
                    Rule::Idle,
                    format!("every backlog is at or below activation {activation}: scale to zero"),
                );
            }
        }
        if draft.replicas < floor.replicas {
            draft.bind(floor.replicas, floor.rule, floor.why.clone());
        }
        floor
    }

    /// Why the target must run, when a source's backlog is above `activation` or a source saw work only a running
    /// worker can make countable.
    fn active_source(&self, readings: &[Option<Reading>]) -> Option<String> {
        let activation = trim(self.activation);
        readings.iter().flatten().find_map(|r| {
            if r.backlog > self.activation {
                Some(format!("backlog {} is above activation {activation}", trim(r.backlog)))
            } else {
                r.wakes.then(|| "new messages wait where the workers never committed: waking them".to_owned())
            }
        })
    }

    /// In latency mode, how long ago jobs last arrived faster than `activation` per job duration, if that was within
    /// the scale-down window: a stream of short jobs leaves the backlog at 0 at most polls, but it is not idle.
    fn recent_arrivals(&self, now: Instant) -> Option<std::time::Duration> {
        let since = now.saturating_duration_since(self.arrivals_seen?);
        (since <= self.down.window).then_some(since)
    }
}

struct Floor {
    replicas: u32,
    rule: Rule,
    why: String,
}

/// Scale-down removes at most the idle replicas: never below the replicas the in-flight jobs keep busy (the most
/// any source reports), because a working replica is needed until its job ends.
fn keep_busy_replicas(current: u32, readings: &[Option<Reading>], concurrency: u32, draft: &mut Draft) {
    let in_flight = readings.iter().flatten().filter_map(|r| r.in_flight).fold(0.0, f64::max);
    let busy = (in_flight / f64::from(concurrency.max(1))).ceil().min(f64::from(current)) as u32;
    if draft.replicas < current && draft.replicas < busy {
        draft.bind(busy, Rule::BusyReplicas, format!("kept at {busy}: {} jobs are in flight", trim(in_flight)));
    }
}

/// `behavior.scaleDown` with its window taken from `scaleDownPolicy.delay` when that is in force and the window is
/// not set explicitly (validation refuses both).
fn scale_down_rules(target: &TargetConfig) -> Rules {
    let mut rules = target.behavior.down();
    let explicit = target.behavior.scale_down.as_ref().is_some_and(|r| r.stabilization_window_seconds.is_some());
    if let Some(policy) = target.effective_scale_down_policy().filter(|_| !explicit) {
        rules.window = policy.delay;
    }
    rules
}

fn rule_for(bound: BehaviorBound) -> Rule {
    match bound {
        BehaviorBound::UpStabilized => Rule::ScaleUpStabilized,
        BehaviorBound::DownStabilized => Rule::ScaleDownStabilized,
        BehaviorBound::UpLimited => Rule::ScaleUpLimit,
        BehaviorBound::DownLimited => Rule::ScaleDownLimit,
        BehaviorBound::UpDisabled => Rule::ScaleUpDisabled,
        BehaviorBound::DownDisabled => Rule::ScaleDownDisabled,
    }
}

/// One source's recommendation, as (capped, uncapped, within tolerance): `ceil(backlog / perWorker)`, or the
/// current count when usage is within the tolerance (the HPA's external AverageValue rule); the capped value also
/// respects the most replicas the source can use.
pub fn recommend(reading: &Reading, per_worker: f64, current: u32) -> (u32, u32, bool) {
    round_within_tolerance(reading.backlog, per_worker, reading.replica_cap, current)
}

/// `ceil(usage / per_replica)`, or the current count when usage is within the tolerance of `current ×
/// per_replica`; as (capped by `cap`, uncapped, within tolerance).
fn round_within_tolerance(usage: f64, per_replica: f64, cap: Option<u32>, current: u32) -> (u32, u32, bool) {
    let within = current > 0 && {
        let usage_ratio = usage / (per_replica * f64::from(current));
        (usage_ratio - 1.0).abs() <= TOLERANCE
    };
    if within {
        return (current, current, true);
    }
    let wanted = (usage / per_replica).ceil();
    let uncapped = if wanted >= f64::from(u32::MAX) { u32::MAX } else { wanted as u32 };
    (cap.map_or(uncapped, |cap| uncapped.min(cap)), uncapped, false)
}

/// A number without a useless `.0`.
fn trim(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { format!("{value:.2}") }
}

#[cfg(test)]
mod tests;
