//! The agent's live state, as `kubectl get hpa` gives it for the HPA: per target the current and desired count, the
//! rule and reason of the last decision, each source's last reading or error and its age, hold, fallback and
//! leadership.
//!
//! The loops write into a shared [`StatusBoard`] at every tick; the metrics listener serves it as JSON on `/status`,
//! and `queue-scaler status` prints it as a table. Everything on the board has been scrubbed of credentials already
//! (reasons and source errors are, before they are logged), so the endpoint is as safe to expose as `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::leader::Leadership;

/// What `/status` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Whether this agent leads (and so acts); a standby's targets say `standby`.
    pub leader: bool,
    /// Every target, by Deployment name.
    pub targets: Vec<TargetStatus>,
}

/// One target's state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TargetStatus {
    /// The Deployment.
    pub deployment: String,
    /// What the last tick did: `decided`, `held`, `standby` or `unavailable` (the target could not be read), or
    /// `starting` before the first tick.
    pub state: String,
    /// The replica count the target had at the last tick that read it.
    pub current: Option<u32>,
    /// The count the last decision asked for.
    pub desired: Option<u32>,
    /// The rule that had the last word in the last decision (e.g. `ScaleUpLimit`).
    pub rule: Option<String>,
    /// The last decision's reason, or why the last tick decided nothing.
    pub reason: Option<String>,
    /// The manual hold in force, if any.
    pub hold: Option<String>,
    /// Whether a failing source's fallback count is in force.
    pub fallback: bool,
    /// Seconds since the last tick ended.
    pub age_seconds: Option<f64>,
    /// Each source, in config order.
    pub sources: Vec<SourceStatus>,
}

/// One source's last read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SourceStatus {
    /// The source's name.
    pub name: String,
    /// The backlog of the last successful read, if the last read succeeded.
    pub backlog: Option<f64>,
    /// The kind of the last read's error (`unreachable`, `empty`, ...), if it failed.
    pub error_kind: Option<String>,
    /// The last read's error, if it failed.
    pub error: Option<String>,
    /// Seconds since that read.
    pub age_seconds: Option<f64>,
}

/// What the loops write and the listener reads; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    /// Set once the election has started (the listener serves before that).
    leadership: Arc<OnceLock<Leadership>>,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    status: TargetStatus,
    ticked_at: Option<SystemTime>,
    read_at: Vec<Option<SystemTime>>,
}

impl StatusBoard {
    /// Says whose leadership the board reports from now on (the first call wins).
    pub fn follow(&self, leadership: &Leadership) {
        let _ = self.leadership.set(leadership.clone());
    }

    /// Puts a target on the board before its first tick, and drops targets no longer in `keep`.
    pub fn register(&self, deployment: &str, sources: &[String], keep: &[String]) {
        let mut entries = self.lock();
        entries.retain(|name, _| keep.contains(name));
        entries.entry(deployment.to_owned()).or_insert_with(|| Entry {
            status: TargetStatus {
                deployment: deployment.to_owned(),
                state: "starting".to_owned(),
                sources: sources
                    .iter()
                    .map(|name| SourceStatus { name: name.clone(), ..SourceStatus::default() })
                    .collect(),
                ..TargetStatus::default()
            },
            ticked_at: None,
            read_at: vec![None; sources.len()],
        });
    }

    /// Records source `index`'s read: its backlog, or its error's kind and scrubbed text.
    pub fn read(&self, deployment: &str, index: usize, outcome: Result<f64, (&'static str, String)>) {
        self.update(deployment, |entry| {
            let Some(source) = entry.status.sources.get_mut(index) else {
                return;
            };
            (source.backlog, source.error_kind, source.error) = match outcome {
                Ok(backlog) => (Some(backlog), None, None),
                Err((kind, error)) => (None, Some(kind.to_owned()), Some(error)),
            };
            if let Some(at) = entry.read_at.get_mut(index) {
                *at = Some(SystemTime::now());
            }
        });
    }

    /// Records the end of a tick: `change` sets what it found.
    pub fn ticked(&self, deployment: &str, change: impl FnOnce(&mut TargetStatus)) {
        self.update(deployment, |entry| {
            change(&mut entry.status);
            entry.ticked_at = Some(SystemTime::now());
        });
    }

    /// The board now, with ages.
    pub fn snapshot(&self) -> AgentStatus {
        let now = SystemTime::now();
        let age = |at: Option<SystemTime>| at.and_then(|at| now.duration_since(at).ok()).map(|d| d.as_secs_f64());
        let targets = self
            .lock()
            .values()
            .map(|entry| {
                let mut status = entry.status.clone();
                status.age_seconds = age(entry.ticked_at);
                for (source, at) in status.sources.iter_mut().zip(&entry.read_at) {
                    source.age_seconds = age(*at);
                }
                status
            })
            .collect();
        AgentStatus { leader: self.leadership.get().is_some_and(Leadership::is_leading), targets }
    }

    fn update(&self, deployment: &str, change: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.lock().get_mut(deployment) {
            change(entry);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AgentStatus {
    /// The table `queue-scaler status` prints: one line per target, then its sources indented below it.
    pub fn table(&self) -> String {
        let mut out = format!("leader: {}\n", if self.leader { "yes" } else { "no (standing by)" });
        let header = ["DEPLOYMENT", "STATE", "CURRENT", "DESIRED", "RULE", "HOLD", "FALLBACK", "AGE"];
        let rows: Vec<[String; 8]> = self
            .targets
            .iter()
            .map(|t| {
                [
                    t.deployment.clone(),
                    t.state.clone(),
                    shown(t.current),
                    shown(t.desired),
                    t.rule.clone().unwrap_or_else(|| "-".to_owned()),
                    t.hold.clone().unwrap_or_else(|| "-".to_owned()),
                    if t.fallback { "yes" } else { "no" }.to_owned(),
                    seconds(t.age_seconds),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("{}\n", padded.join("  ").trim_end())
        };
        out.push_str(&line(&header.map(str::to_owned)));
        for (row, target) in rows.iter().zip(&self.targets) {
            out.push_str(&line(row));
            if let Some(reason) = &target.reason {
                out.push_str(&format!("    reason: {reason}\n"));
            }
            for source in &target.sources {
                let read = match (&source.backlog, &source.error_kind, &source.error) {
                    (Some(backlog), _, _) => format!("backlog {backlog}"),
                    (None, Some(kind), Some(error)) => format!("failing ({kind}): {error}"),
                    _ => "not read yet".to_owned(),
                };
                out.push_str(&format!("    {}: {read} ({} ago)\n", source.name, seconds(source.age_seconds)));
            }
        }
        out
    }
}

fn shown(count: Option<u32>) -> String {
    count.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn seconds(age: Option<f64>) -> String {
    age.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_keeps_the_last_tick_and_read_and_prints_them() {
        let board = StatusBoard::default();
        assert!(!board.snapshot().leader, "no election yet");
        board.follow(&Leadership::always());
        let names = ["worker".to_owned()];
        board.register("worker", &["rabbitmq/videos".to_owned(), "sqs/videos".to_owned()], &names);
        assert_eq!(board.snapshot().targets[0].state, "starting");
        board.read("worker", 0, Ok(40.0));
        board.read("worker", 1, Err(("unreachable", "cannot reach sqs".to_owned())));
        board.ticked("worker", |t| {
            t.state = "decided".into();
            (t.current, t.desired) = (Some(2), Some(4));
            t.rule = Some("SourceRecommendation".into());
            t.reason = Some("SourceRecommendation: rabbitmq/videos: backlog 40 over 10 per worker → 4".into());
        });
        let status = board.snapshot();
        assert!(status.leader);
        let target = &status.targets[0];
        assert_eq!((target.current, target.desired), (Some(2), Some(4)));
        assert_eq!(target.sources[0].backlog, Some(40.0));
        assert_eq!(target.sources[1].error_kind.as_deref(), Some("unreachable"));
        assert!(target.sources.iter().all(|s| s.age_seconds.is_some_and(|a| a < 5.0)));
        let table = status.table();
        assert!(table.contains("DEPLOYMENT  STATE    CURRENT  DESIRED  RULE"), "{table}");
        assert!(table.contains("worker      decided  2        4        SourceRecommendation"), "{table}");
        assert!(table.contains("    sqs/videos: failing (unreachable): cannot reach sqs ("), "{table}");
        let json = serde_json::to_string(&status).expect("JSON");
        assert_eq!(serde_json::from_str::<AgentStatus>(&json).expect("round trip"), status);
        // A reload that drops the target drops it from the board.
        board.register("other", &[], &["other".to_owned()]);
        assert_eq!(board.snapshot().targets.iter().map(|t| t.deployment.as_str()).collect::<Vec<_>>(), ["other"]);
    }
}
