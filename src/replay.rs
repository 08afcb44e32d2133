//! `queue-scaler replay`: recorded observations in, the decision and its reason for every tick out.
//!
//! Tuning a config on production traffic should not need production: record what the sources read (from the
//! agent's metrics, a broker's history or a spreadsheet), then replay it through the same decision code the agent
//! runs and read, tick by tick, what the config would have done and why.
//!
//! The observations are a CSV file with the header `time_s,source,backlog` and, optionally, `in_flight` and
//! `arrival_rate` columns, in any order. `source` is the index of the source in the target's `sources` list or its
//! name (`name:`, by default e.g. `rabbitmq/videos`). Rows with the same `time_s` are one tick; a source without a
//! row in a tick counts as a failed read, as when a broker does not answer. Blank lines and `#` comments are
//! allowed. Each decision is assumed applied at once, and the replay starts at a given replica count
//! (`--initial-replicas`, default `minReplicas`). Schedules are evaluated at `start + time_s`.
//!
//! A shadow recording (`run --shadow --record`) is read as it is: it adds the columns `target` (the workload) and
//! `live_replicas` (what the live autoscaler gave it). One target is replayed at a time, the only one recorded or the
//! one `--target` names; [`report`] then sets the config's decisions beside the live ones. Fields may be quoted
//! (`"…"`, a quote doubled inside), as the recorder quotes source names that hold commas.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::TargetConfig;
use crate::policy::Autoscaler;
use crate::source::Reading;

const REQUIRED: [&str; 3] = ["time_s", "source", "backlog"];
const OPTIONAL: [&str; 4] = ["in_flight", "arrival_rate", "target", "live_replicas"];

pub mod report;

/// One decision tick: its time and every source's reading (`None`: no row, a failed read).
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Seconds since the start of the recording.
    pub time_s: f64,
    /// One entry per source of the target, in config order.
    pub readings: Vec<Option<Reading>>,
    /// What the live autoscaler had given the workload, in a shadow recording.
    pub live_replicas: Option<u32>,
}

/// What is wrong with an observations file; lines count from 1, comments and blank lines included.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// Nothing but blank or comment lines.
    #[error("the file is empty: expected the header `time_s,source,backlog`")]
    Empty,
    /// The header lacks a required column or has an unknown one.
    #[error(
        "line {line}: {problem}; the header is `time_s,source,backlog` plus optionally `in_flight,arrival_rate` \
         (and `target,live_replicas` in a shadow recording)"
    )]
    Header {
        /// The header's line.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A row with the wrong number of fields.
    #[error("line {line}: expected {expected} comma-separated fields, found {found}")]
    FieldCount {
        /// The row's line.
        line: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// A field that cannot be read.
    #[error("line {line}: {column} {value:?} {problem}")]
    Value {
        /// The row's line.
        line: usize,
        /// The column.
        column: &'static str,
        /// The field as written.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The same source twice at the same time.
    #[error("line {line}: source `{source_name}` already has a row at time_s {time_s}")]
    Duplicate {
        /// The second row's line.
        line: usize,
        /// The source.
        source_name: String,
        /// The time.
        time_s: f64,
    },
    /// A header and no rows.
    #[error("the file has a header but no observations")]
    NoRows,
    /// A shadow recording of several targets, and none chosen.
    #[error("the recording holds several targets ({}); choose one with --target NAME", .0.join(", "))]
    SeveralTargets(Vec<String>),
    /// `--target` names a target the recording does not hold.
    #[error("the recording has no rows for target `{name}`; it holds: {}", .recorded.join(", "))]
    NoSuchTarget {
        /// The name asked for.
        name: String,
        /// The targets recorded.
        recorded: Vec<String>,
    },
    /// `--target` given for observations without a `target` column.
    #[error("--target {0} names a recorded target, but the observations have no `target` column")]
    NoTargetColumn(String),
}

/// Reads observations for `target`, grouped into ticks in time order.
pub fn read_observations(text: &str, target: &TargetConfig) -> Result<Vec<Tick>, ReplayError> {
    read_recording(text, target, None)
}

/// The target of a shadow recording that a replay reads: `only` if given (and recorded), else the only one recorded.
/// `None` for observations without a `target` column.
pub fn recorded_target(text: &str, only: Option<&str>) -> Result<Option<String>, ReplayError> {
    let mut recorded = recorded_targets(text)?;
    match only {
        Some(name) if recorded.is_empty() => Err(ReplayError::NoTargetColumn(name.to_owned())),
        Some(name) if recorded.iter().any(|r| r == name) => Ok(Some(name.to_owned())),
        Some(name) => Err(ReplayError::NoSuchTarget { name: name.to_owned(), recorded }),
        None if recorded.len() > 1 => Err(ReplayError::SeveralTargets(recorded)),
        None => Ok(recorded.pop()),
    }
}

/// Every target of a shadow recording, sorted; none for observations without a `target` column.
pub fn recorded_targets(text: &str) -> Result<Vec<String>, ReplayError> {
    let (columns, rows) = split_rows(text)?;
    let mut recorded: Vec<String> = match columns.target {
        Some(column) => rows.into_iter().map(|(_, mut fields)| fields.swap_remove(column)).collect(),
        None => Vec::new(),
    };
    recorded.sort();
    recorded.dedup();
    Ok(recorded)
}

/// Reads the observations of `target`, grouped into ticks in time order; in a shadow recording, only the rows of
/// the recorded target `only` (or of the only one recorded).
pub fn read_recording(text: &str, target: &TargetConfig, only: Option<&str>) -> Result<Vec<Tick>, ReplayError> {
    let recorded = recorded_target(text, only)?;
    let (columns, rows) = split_rows(text)?;
    // Keyed by the time's bits: times are non-negative, so their bit patterns sort as the numbers do.
    let mut ticks: BTreeMap<u64, Tick> = BTreeMap::new();
    for (line, fields) in rows {
        if let (Some(column), Some(name)) = (columns.target, &recorded)
            && &fields[column] != name
        {
            continue;
        }
        let time_s = time(line, &fields[columns.time_s])?;
        let source = source_index(line, &fields[columns.source], target)?;
        let optional = |column: Option<usize>, name: &'static str| -> Result<Option<f64>, ReplayError> {
            match column.map(|i| fields[i].as_str()).filter(|f| !f.is_empty()) {
                Some(field) => number(line, name, field).map(Some),
                None => Ok(None),
            }
        };
        let reading = Reading {
            backlog: number(line, "backlog", &fields[columns.backlog])?,
            in_flight: optional(columns.in_flight, "in_flight")?,
            arrival_rate: optional(columns.arrival_rate, "arrival_rate")?,
            ..Reading::default()
        }
        .checked()
        .map_err(|e| ReplayError::Value {
            line,
            column: "backlog",
            value: fields[columns.backlog].clone(),
            problem: e.to_string(),
        })?;
        let live_replicas =
            optional(columns.live_replicas, "live_replicas")?.map(|n| n.min(f64::from(u32::MAX)) as u32);
        let tick = ticks.entry(time_s.to_bits()).or_insert_with(|| Tick {
            time_s,
            readings: vec![None; target.sources.len()],
            live_replicas: None,
        });
        tick.live_replicas = live_replicas.or(tick.live_replicas);
        if tick.readings[source].replace(reading).is_some() {
            return Err(ReplayError::Duplicate { line, source_name: target.sources[source].name.clone(), time_s });
        }
    }
    if ticks.is_empty() {
        return Err(ReplayError::NoRows);
    }
    Ok(ticks.into_values().collect())
}

/// The header's columns and every row's fields with its line, each row checked to have as many fields as the header.
fn split_rows(text: &str) -> Result<(Columns, Vec<Row>), ReplayError> {
    let mut rows = crate::sim::trace::content_lines(text);
    let (header_line, header) = rows.next().ok_or(ReplayError::Empty)?;
    let columns = Columns::parse(header_line, header)?;
    let rows = rows
        .map(|(line, row)| {
            let fields = csv_fields(row);
            if fields.len() == columns.count {
                Ok((line, fields))
            } else {
                Err(ReplayError::FieldCount { line, expected: columns.count, found: fields.len() })
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Err(ReplayError::NoRows);
    }
    Ok((columns, rows))
}

/// A row's line and its fields.
type Row = (usize, Vec<String>);

/// A row's fields, trimmed; a field in quotes may hold commas, and a doubled quote inside stands for one.
fn csv_fields(row: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            ',' if !quoted => fields.push(std::mem::take(&mut field).trim().to_owned()),
            c => field.push(c),
        }
    }
    fields.push(field.trim().to_owned());
    fields
}

/// Where each column is.
struct Columns {
    count: usize,
    time_s: usize,
    source: usize,
    backlog: usize,
    in_flight: Option<usize>,
    arrival_rate: Option<usize>,
    target: Option<usize>,
    live_replicas: Option<usize>,
}

impl Columns {
    fn parse(line: usize, header: &str) -> Result<Columns, ReplayError> {
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        if let Some(unknown) = names.iter().find(|n| !REQUIRED.contains(n) && !OPTIONAL.contains(n)) {
            return Err(ReplayError::Header { line, problem: format!("unknown column `{unknown}`") });
        }
        let position = |name: &str| names.iter().position(|n| *n == name);
        let required = |name: &str| {
            position(name).ok_or_else(|| ReplayError::Header { line, problem: format!("no `{name}` column") })
        };
        Ok(Columns {
            count: names.len(),
            time_s: required("time_s")?,
            source: required("source")?,
            backlog: required("backlog")?,
            in_flight: position("in_flight"),
            arrival_rate: position("arrival_rate"),
            target: position("target"),
            live_replicas: position("live_replicas"),
        })
    }
}

fn number(line: usize, column: &'static str, field: &str) -> Result<f64, ReplayError> {
    match field.parse::<f64>() {
        // `abs` reads `-0` as 0, so that equal times group into one tick.
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value.abs()),
        _ => Err(ReplayError::Value {
            line,
            column,
            value: field.to_owned(),
            problem: "must be a number ≥ 0".to_owned(),
        }),
    }
}

/// The latest `time_s` a replay accepts: decades, far beyond any recording, and far below where adding it to a clock
/// would overflow.
const MAX_TIME_S: f64 = 1e9;

fn time(line: usize, field: &str) -> Result<f64, ReplayError> {
    let time_s = number(line, "time_s", field)?;
    if time_s > MAX_TIME_S {
        return Err(ReplayError::Value {
            line,
            column: "time_s",
            value: field.to_owned(),
            problem: format!("is more than {MAX_TIME_S:e} seconds after the start; use seconds from the first row"),
        });
    }
    Ok(time_s)
}

fn source_index(line: usize, field: &str, target: &TargetConfig) -> Result<usize, ReplayError> {
    if let Some(index) = field.parse::<usize>().ok().filter(|i| *i < target.sources.len()) {
        return Ok(index);
    }
    target.sources.iter().position(|s| s.name == field).ok_or_else(|| {
        let names: Vec<String> = target.sources.iter().map(|s| format!("`{}`", s.name)).collect();
        ReplayError::Value {
            line,
            column: "source",
            value: field.to_owned(),
            problem: format!(
                "is neither an index below {} nor a source name ({})",
                target.sources.len(),
                names.join(", ")
            ),
        }
    })
}

/// One tick's decision. The keys `time_s`, `desired` and `reason` are a user contract; more may be added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayDecision {
    /// The tick's time.
    pub time_s: f64,
    /// The replica count decided.
    pub desired: u32,
    /// The code of the rule that had the last word (as in the agent's metrics and events).
    pub reason: &'static str,
    /// The replica count the decision started from.
    pub current: u32,
    /// The reason in words: which source, what it saw, which rules changed the number.
    pub message: String,
}

/// Replays `ticks` through `target`'s decision code from `initial` replicas; `start` is the wall time of
/// `time_s = 0`, for schedules.
pub fn replay(target: &TargetConfig, ticks: &[Tick], initial: u32, start: DateTime<Utc>) -> Vec<ReplayDecision> {
    let mut autoscaler = Autoscaler::new(target);
    let epoch = Instant::now();
    let mut current = initial;
    ticks
        .iter()
        .map(|tick| {
            let offset = Duration::from_secs_f64(tick.time_s);
            let now = epoch + offset;
            let wall = start + chrono::Duration::from_std(offset).unwrap_or(chrono::Duration::MAX);
            let decision = autoscaler.decide(now, wall, current, &tick.readings);
            let from = current;
            if decision.desired != current {
                autoscaler.record_scale(now, current, decision.desired);
                current = decision.desired;
            }
            ReplayDecision {
                time_s: tick.time_s,
                desired: decision.desired,
                reason: decision.reason.rule.code(),
                current: from,
                message: decision.reason.message,
            }
        })
        .collect()
}

/// One line per decision for people: time, change, reason.
pub fn render_lines(decisions: &[ReplayDecision]) -> String {
    decisions
        .iter()
        .map(|d| {
            let change = if d.desired == d.current {
                format!("{:>4}       ", d.desired)
            } else {
                format!("{:>4} → {:<4}", d.current, d.desired)
            };
            format!("{:>9.1}s  {change}  {}: {}\n", d.time_s, d.reason, d.message)
        })
        .collect()
}

#[cfg(test)]
mod tests;
