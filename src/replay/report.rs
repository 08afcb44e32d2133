//! `replay --report DIR`: on a shadow recording, the config's decisions set beside what the live autoscaler did.
//!
//! A team deciding whether to switch wants two numbers per side — what the capacity cost and how long jobs waited —
//! on its own traffic. The cost is exact arithmetic on the recording: replica-seconds of `live_replicas` and of
//! the replayed decisions. The waits cannot be measured for a side that never ran, so both sides' are **estimated**
//! alike, by Little's law on a fluid queue: the recorded arrivals (`arrival_rate`, else the backlog's growth plus
//! what the live replicas worked off) feed each side's queue, each side's replicas work it off at
//! `replicas · concurrency / jobDuration` jobs per second, and a job arriving at a tick waits `waiting / that rate`.
//! The live side's queue is the recorded one (minus in-flight jobs where recorded). Pods are assumed to start at
//! once; the job duration is `latencyTarget.jobDuration`, else learned from the recording as the agent learns it,
//! and without either no wait is estimated.

use serde::Serialize;

use super::{ReplayDecision, Tick};
use crate::config::TargetConfig;
use crate::policy::latency::{SourceLearning, waiting};
use crate::sim::report::PolicyReport;
use crate::sim::world::{PolicyOutcome, Sample};

/// The name of the live side in reports and plots.
pub const LIVE: &str = "live";

/// What the report says about its wait estimates, in the Markdown and the JSON.
pub const ESTIMATE_NOTE: &str = "waits are estimates, not measurements: Little's law on a fluid queue fed by the \
    recorded arrivals and worked off by each side's replicas at replicas × concurrency / job duration; pods are \
    assumed to start at once";

/// One side's numbers over the recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// `queue-scaler` or `live`.
    pub name: String,
    /// ∑ replicas × time to the next tick.
    pub replica_seconds: f64,
    /// The replica-seconds over the recording's span.
    pub mean_replicas: f64,
    /// The most replicas at any tick.
    pub max_replicas: u32,
    /// Estimated wait of a job arriving at a tick, over the ticks with replicas; `None` without a job duration.
    pub estimated_p50_wait_s: Option<f64>,
    pub estimated_p95_wait_s: Option<f64>,
    pub estimated_p99_wait_s: Option<f64>,
    pub estimated_max_wait_s: Option<f64>,
    /// Seconds with jobs waiting and no replica at all (waits there have no finite estimate).
    pub stalled_s: f64,
}

/// The comparison for one target. The JSON keys are a user contract: more may be added, none renamed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowReport {
    /// The recorded workload.
    pub target: String,
    /// Ticks replayed.
    pub ticks: usize,
    /// Seconds from the first tick to the last.
    pub span_s: f64,
    /// The job duration the wait estimates use, if known.
    pub job_duration_s: Option<f64>,
    /// Where it comes from: `latencyTarget.jobDuration`, `learned from the recording`, or why it is unknown.
    pub job_duration_from: String,
    /// How the waits are estimated.
    pub estimate: &'static str,
    pub queue_scaler: Side,
    pub live: Side,
    /// Both sides over time, for the plot.
    #[serde(skip)]
    pub timeline: Vec<Row>,
}

/// Both sides at one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub time_s: f64,
    /// Jobs waiting: recorded (live) and estimated (queue-scaler).
    pub live_waiting: f64,
    pub queue_scaler_waiting: f64,
    pub live_replicas: u32,
    pub queue_scaler_replicas: u32,
    pub live_wait_s: Option<f64>,
    pub queue_scaler_wait_s: Option<f64>,
}

/// Why a report cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    /// Observations without `live_replicas`: not a shadow recording.
    #[error(
        "the observations have no `live_replicas` column: --report compares with the live autoscaler, so it needs \
         a shadow recording (`queue-scaler run --shadow --record FILE.csv`)"
    )]
    NoLiveReplicas,
}

/// Compares `decisions` (replayed over `ticks`) with the live replicas recorded in `ticks`.
pub fn compare(
    target_name: &str,
    config: &TargetConfig,
    ticks: &[Tick],
    decisions: &[ReplayDecision],
) -> Result<ShadowReport, ReportError> {
    let first_live = ticks.iter().find_map(|t| t.live_replicas).ok_or(ReportError::NoLiveReplicas)?;
    let concurrency = f64::from(config.latency_target.map_or(1, |l| l.concurrency.max(1)));
    let (job_duration_s, job_duration_from) = job_duration(config, ticks);

    let mut live_replicas = first_live;
    let mut waiting_by_source = vec![0.0; config.sources.len()];
    let mut timeline = Vec::with_capacity(ticks.len());
    let mut queue_scaler_waiting: Option<f64> = None;
    for (index, (tick, decision)) in ticks.iter().zip(decisions).enumerate() {
        live_replicas = tick.live_replicas.unwrap_or(live_replicas);
        waiting_by_source = waiting_in(tick, &waiting_by_source);
        let live_waiting: f64 = waiting_by_source.iter().sum();
        let qs_waiting = match (queue_scaler_waiting, index.checked_sub(1).map(|i| &timeline[i])) {
            (Some(before), Some(previous)) => {
                let previous: &Row = previous;
                let dt = tick.time_s - previous.time_s;
                let arrivals = arrivals(previous, &ticks[index - 1], live_waiting, dt, job_duration_s, concurrency);
                let served = rate(previous.queue_scaler_replicas, job_duration_s, concurrency) * dt;
                (before + arrivals - served).max(0.0)
            }
            _ => live_waiting,
        };
        queue_scaler_waiting = Some(qs_waiting);
        timeline.push(Row {
            time_s: tick.time_s,
            live_waiting,
            queue_scaler_waiting: qs_waiting,
            live_replicas,
            queue_scaler_replicas: decision.desired,
            live_wait_s: wait(live_waiting, live_replicas, job_duration_s, concurrency),
            queue_scaler_wait_s: wait(qs_waiting, decision.desired, job_duration_s, concurrency),
        });
    }
    let span_s = timeline.last().map_or(0.0, |r| r.time_s) - timeline.first().map_or(0.0, |r| r.time_s);
    let known = job_duration_s.is_some();
    Ok(ShadowReport {
        target: target_name.to_owned(),
        ticks: timeline.len(),
        span_s,
        job_duration_s,
        job_duration_from,
        estimate: ESTIMATE_NOTE,
        queue_scaler: side(crate::sim::run::POLICY_NAME, &timeline, span_s, known, |r| {
            (r.queue_scaler_replicas, r.queue_scaler_waiting, r.queue_scaler_wait_s)
        }),
        live: side(LIVE, &timeline, span_s, known, |r| (r.live_replicas, r.live_waiting, r.live_wait_s)),
        timeline,
    })
}

/// The configured job duration, else the one the agent would learn from this recording.
pub(crate) fn job_duration(config: &TargetConfig, ticks: &[Tick]) -> (Option<f64>, String) {
    if let Some(configured) = config.latency_target.and_then(|l| l.job_duration) {
        return (Some(configured.as_secs_f64()), "latencyTarget.jobDuration".to_owned());
    }
    let epoch = std::time::Instant::now();
    let mut learning = vec![SourceLearning::default(); config.sources.len()];
    let mut learned = None;
    for tick in ticks {
        let now = epoch + std::time::Duration::from_secs_f64(tick.time_s);
        let busy = f64::from(tick.live_replicas.unwrap_or(0));
        for (source, reading) in learning.iter_mut().zip(&tick.readings) {
            if let Some(reading) = reading {
                learned = source.observe(now, reading, None, busy).job_duration_s.or(learned);
            }
        }
    }
    match learned {
        Some(d) => (Some(d), "learned from the recording (busy slot-seconds over jobs completed)".to_owned()),
        None => (
            None,
            "unknown: set latencyTarget.jobDuration, or record a source that reports its arrival rate and in-flight \
             count"
                .to_owned(),
        ),
    }
}

/// Jobs per second `replicas` work off.
fn rate(replicas: u32, job_duration_s: Option<f64>, concurrency: f64) -> f64 {
    job_duration_s.map_or(0.0, |d| f64::from(replicas) * concurrency / d)
}

/// Jobs that arrived between `previous` and now: the recorded rate, else what the live queue grew by plus what the
/// live replicas worked off.
fn arrivals(previous: &Row, tick: &Tick, live_waiting: f64, dt: f64, d: Option<f64>, concurrency: f64) -> f64 {
    match recorded_rate(tick) {
        Some(rate) => rate * dt,
        None => grown_and_served(previous.live_waiting, live_waiting, previous.live_replicas, d, concurrency, dt),
    }
}

/// Jobs waiting per source at `tick`; a source without a reading (a failed read) keeps its `previous` count.
pub(crate) fn waiting_in(tick: &Tick, previous: &[f64]) -> Vec<f64> {
    tick.readings.iter().zip(previous).map(|(reading, before)| reading.as_ref().map_or(*before, waiting)).collect()
}

/// The arrival rate `tick` recorded, summed over its sources, when any source recorded one.
pub(crate) fn recorded_rate(tick: &Tick) -> Option<f64> {
    let rates: Vec<f64> = tick.readings.iter().flatten().filter_map(|r| r.arrival_rate).collect();
    (!rates.is_empty()).then(|| rates.iter().sum())
}

/// The arrivals a queue without a recorded rate tells between two ticks, `dt` apart: what its waiting jobs grew by,
/// from `before` to `now`, plus what `replicas` worked off meanwhile (no more than there was to work on).
pub(crate) fn grown_and_served(
    before: f64,
    now: f64,
    replicas: u32,
    job_duration_s: Option<f64>,
    concurrency: f64,
    dt: f64,
) -> f64 {
    let growth = now - before;
    let served = (rate(replicas, job_duration_s, concurrency) * dt).min(before + growth.max(0.0));
    (growth + served).max(0.0)
}

/// Little's law for the queue in front of a job arriving now: `waiting / throughput`.
fn wait(waiting: f64, replicas: u32, job_duration_s: Option<f64>, concurrency: f64) -> Option<f64> {
    let throughput = rate(replicas, job_duration_s, concurrency);
    match job_duration_s {
        Some(_) if waiting <= 0.0 => Some(0.0),
        Some(_) if throughput > 0.0 => Some(waiting / throughput),
        _ => None,
    }
}

fn side(name: &str, timeline: &[Row], span_s: f64, known: bool, of: impl Fn(&Row) -> (u32, f64, Option<f64>)) -> Side {
    let mut replica_seconds = 0.0;
    let mut stalled_s = 0.0;
    let mut waits = Vec::new();
    for (index, row) in timeline.iter().enumerate() {
        let (replicas, waiting, wait_s) = of(row);
        let dt = timeline.get(index + 1).map_or(0.0, |next| next.time_s - row.time_s);
        replica_seconds += f64::from(replicas) * dt;
        if replicas == 0 && waiting > 0.0 {
            stalled_s += dt;
        }
        waits.extend(wait_s);
    }
    waits.sort_by(f64::total_cmp);
    let percentile = |p: usize| {
        let rank = (p * waits.len()).div_ceil(100).max(1);
        waits.get(rank - 1).copied().filter(|_| known)
    };
    Side {
        name: name.to_owned(),
        replica_seconds,
        mean_replicas: if span_s > 0.0 { replica_seconds / span_s } else { 0.0 },
        max_replicas: timeline.iter().map(|r| of(r).0).max().unwrap_or(0),
        estimated_p50_wait_s: percentile(50),
        estimated_p95_wait_s: percentile(95),
        estimated_p99_wait_s: percentile(99),
        estimated_max_wait_s: waits.last().copied().filter(|_| known),
        stalled_s,
    }
}

impl ShadowReport {
    /// The Markdown report; `svg` is the plot's file name, beside it.
    pub fn markdown(&self, svg: &str) -> String {
        let rows: [TableRow; 8] = [
            ("replica-seconds", |s| format!("{:.0}", s.replica_seconds)),
            ("mean replicas", |s| format!("{:.2}", s.mean_replicas)),
            ("max replicas", |s| s.max_replicas.to_string()),
            ("estimated p50 wait (s)", |s| opt(s.estimated_p50_wait_s)),
            ("estimated p95 wait (s)", |s| opt(s.estimated_p95_wait_s)),
            ("estimated p99 wait (s)", |s| opt(s.estimated_p99_wait_s)),
            ("estimated max wait (s)", |s| opt(s.estimated_max_wait_s)),
            ("seconds with jobs waiting and no replica", |s| format!("{:.0}", s.stalled_s)),
        ];
        let mut text = format!(
            "# Shadow report: {}\n\n{} ticks over {:.0} s of recorded traffic, replayed through the config's \
             decisions (each assumed applied at once) and set beside `live_replicas`, what the live autoscaler \
             did.\n\n| | queue-scaler | live |\n|---|---:|---:|\n",
            self.target, self.ticks, self.span_s
        );
        for (label, value) in rows {
            text.push_str(&format!("| {label} | {} | {} |\n", value(&self.queue_scaler), value(&self.live)));
        }
        let saved = self.live.replica_seconds - self.queue_scaler.replica_seconds;
        if self.live.replica_seconds > 0.0 {
            text.push_str(&format!(
                "\nqueue-scaler would have used {:.0} replica-seconds {} ({:+.1} %).\n",
                saved.abs(),
                if saved >= 0.0 { "fewer" } else { "more" },
                -saved / self.live.replica_seconds * 100.0
            ));
        }
        text.push_str(&format!(
            "\n**Estimated waits.** The {ESTIMATE_NOTE}. Job duration: {} s ({}).\n\n![replicas and estimated \
             waits over time]({svg})\n",
            opt(self.job_duration_s),
            self.job_duration_from
        ));
        text
    }

    /// The SVG: backlog, replicas and estimated wait of both sides over time.
    pub fn svg(&self) -> String {
        let outcome = |side: &Side, of: fn(&Row) -> (f64, u32, Option<f64>)| PolicyOutcome {
            report: PolicyReport {
                name: side.name.clone(),
                jobs: 0,
                p50_wait_s: side.estimated_p50_wait_s.unwrap_or(0.0),
                p95_wait_s: side.estimated_p95_wait_s.unwrap_or(0.0),
                p99_wait_s: side.estimated_p99_wait_s.unwrap_or(0.0),
                replica_seconds: side.replica_seconds,
                utilization: 0.0,
                scale_events: 0,
                mean_wait_s: 0.0,
                max_wait_s: side.estimated_max_wait_s.unwrap_or(0.0),
                handed_back: 0,
                max_replicas: side.max_replicas,
                busy_worker_seconds: 0.0,
                wasted_work_s: 0.0,
                unfinished: 0,
                ..PolicyReport::default()
            },
            timeline: self
                .timeline
                .iter()
                .map(|row| {
                    let (waiting, replicas, wait_s) = of(row);
                    Sample {
                        t_s: row.time_s,
                        waiting: waiting.round() as u64,
                        in_flight: 0,
                        replicas,
                        ready: replicas,
                        busy: 0,
                        wait_s: wait_s.unwrap_or(0.0),
                    }
                })
                .collect(),
        };
        let outcomes = [
            outcome(&self.queue_scaler, |r| (r.queue_scaler_waiting, r.queue_scaler_replicas, r.queue_scaler_wait_s)),
            outcome(&self.live, |r| (r.live_waiting, r.live_replicas, r.live_wait_s)),
        ];
        let title = format!("{}: queue-scaler beside the live autoscaler (waits estimated)", self.target);
        crate::sim::plot::render(&title, &outcomes)
    }
}

/// A row of the report's table: its label and how to read it from a side.
type TableRow = (&'static str, fn(&Side) -> String);

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"))
}
