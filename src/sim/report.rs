//! The scorecard of a simulation: for each policy, how long jobs waited and what the capacity cost.
//!
//! The JSON keys `policies`, `name`, `jobs`, `p50_wait_s`, `p95_wait_s`, `p99_wait_s`, `replica_seconds`,
//! `utilization`, `scale_events` and `interrupted_jobs` are a user contract (scripts read `simulate --json`); further fields may be
//! added, none renamed. Percentiles use the nearest-rank method: the p-th percentile of n sorted waits is the
//! ⌈p·n/100⌉-th smallest, so it is always a wait some job actually had.

use serde::Serialize;

/// One policy's run over a trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PolicyReport {
    /// The policy: `queue-scaler`, `hpa`, `keda`, `threshold`…
    pub name: String,
    /// Jobs completed; every wait statistic is over these.
    pub jobs: u64,
    pub p50_wait_s: f64,
    pub p95_wait_s: f64,
    pub p99_wait_s: f64,
    /// ∫ pods that exist (starting, ready or draining) dt: what the capacity costs.
    pub replica_seconds: f64,
    /// Busy worker slots over paid-for slots: `busy_worker_seconds / (replica_seconds · concurrency)`, in [0, 1].
    pub utilization: f64,
    /// Scale requests that changed the replica count.
    pub scale_events: u64,
    pub mean_wait_s: f64,
    pub max_wait_s: f64,
    /// Jobs a draining pod could not finish within its grace period and gave back to the queue.
    pub handed_back: u64,
    /// The highest replica count requested.
    pub max_replicas: u32,
    /// ∫ busy worker slots dt, the work thrown away by hand-backs included.
    pub busy_worker_seconds: f64,
    /// Seconds of work thrown away when jobs were handed back and later redone from the start.
    pub wasted_work_s: f64,
    /// Jobs of the trace that had not completed when the run ended: a policy that strands work must not look fast.
    pub unfinished: u64,
    /// Jobs whose run was cut short because their pod was removed (handed back, or lost with the pod); a job cut
    /// short twice counts once. What quiet scale-down brings to 0.
    pub interrupted_jobs: u64,
    /// Which pods a scale-down removes: `newest-first` (the ReplicaSet's order), `idle-first` or `quiet`.
    pub scale_down: String,
    /// Pods told to go quiet before a scale-down (`scaleDown.quiet`).
    pub quieted_pods: u64,
    /// Quiet pods told to take jobs again because the decision rose.
    pub resumed_pods: u64,
    /// Quiet pods still holding jobs when `quietTimeout` ran out, removed anyway.
    pub quiet_timeouts: u64,
}

/// Every policy's run over one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The trace's built-in name or file path.
    pub trace: String,
    pub policies: Vec<PolicyReport>,
}

/// The wait statistics of a report row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct WaitSummary {
    pub(super) p50_s: f64,
    pub(super) p95_s: f64,
    pub(super) p99_s: f64,
    pub(super) mean_s: f64,
    pub(super) max_s: f64,
}

impl WaitSummary {
    /// Summarizes waits in any order; with no waits at all every statistic is 0.
    pub(super) fn of(mut waits: Vec<f64>) -> WaitSummary {
        waits.sort_by(f64::total_cmp);
        let mean_s = if waits.is_empty() { 0.0 } else { waits.iter().sum::<f64>() / waits.len() as f64 };
        WaitSummary {
            p50_s: nearest_rank(&waits, 50),
            p95_s: nearest_rank(&waits, 95),
            p99_s: nearest_rank(&waits, 99),
            mean_s,
            max_s: waits.last().copied().unwrap_or(0.0),
        }
    }
}

/// The nearest-rank percentile of sorted values, computed in integers so that p95 of 20 values is exactly the 19th.
fn nearest_rank(sorted: &[f64], percent: usize) -> f64 {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

/// An aligned plain-text table, one row per policy, units in the headers; a note follows for unfinished jobs.
pub fn render_table(report: &SimReport) -> String {
    let headers = [
        "policy",
        "jobs",
        "p50 wait (s)",
        "p95 wait (s)",
        "p99 wait (s)",
        "max wait (s)",
        "replica-seconds",
        "utilization (%)",
        "scale events",
        "handed back",
        "interrupted",
    ];
    let rows: Vec<[String; 11]> = report.policies.iter().map(table_row).collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([headers[column].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();

    let mut table = format!("trace: {}\n", report.trace);
    table.push_str(&aligned_line(&headers, &widths));
    for row in &rows {
        table.push_str(&aligned_line(row, &widths));
    }
    for policy in report.policies.iter().filter(|policy| policy.unfinished > 0) {
        table.push_str(&format!(
            "note: {} left {} jobs unfinished; its waits cover completed jobs only\n",
            policy.name, policy.unfinished
        ));
    }
    for policy in report.policies.iter().filter(|policy| policy.scale_down == "quiet") {
        table.push_str(&format!(
            "note: {} scales down quietly (scaleDown.quiet): {} pods quieted, {} resumed, {} still busy at \
             quietTimeout\n",
            policy.name, policy.quieted_pods, policy.resumed_pods, policy.quiet_timeouts
        ));
    }
    table
}

fn table_row(policy: &PolicyReport) -> [String; 11] {
    [
        policy.name.clone(),
        policy.jobs.to_string(),
        format!("{:.1}", policy.p50_wait_s),
        format!("{:.1}", policy.p95_wait_s),
        format!("{:.1}", policy.p99_wait_s),
        format!("{:.1}", policy.max_wait_s),
        format!("{:.0}", policy.replica_seconds),
        format!("{:.1}", policy.utilization * 100.0),
        policy.scale_events.to_string(),
        policy.handed_back.to_string(),
        policy.interrupted_jobs.to_string(),
    ]
}

/// The policy name is left-aligned, numbers right-aligned so their digits line up.
fn aligned_line<S: AsRef<str>>(cells: &[S], widths: &[usize]) -> String {
    let mut line = String::new();
    for (column, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if column == 0 {
            line.push_str(&format!("{:<width$}", cell.as_ref()));
        } else {
            line.push_str(&format!("  {:>width$}", cell.as_ref()));
        }
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, p50_wait_s: f64, replica_seconds: f64, unfinished: u64) -> PolicyReport {
        PolicyReport {
            name: name.to_owned(),
            jobs: 1_234,
            p50_wait_s,
            p95_wait_s: 42.3,
            p99_wait_s: 120.0,
            replica_seconds,
            utilization: 0.875,
            scale_events: 17,
            mean_wait_s: 3.0,
            max_wait_s: 301.5,
            handed_back: 2,
            max_replicas: 12,
            busy_worker_seconds: 1_000.0,
            wasted_work_s: 40.0,
            unfinished,
            interrupted_jobs: 1,
            scale_down: "idle-first".to_owned(),
            quieted_pods: 0,
            resumed_pods: 0,
            quiet_timeouts: 0,
        }
    }

    #[test]
    fn nearest_rank_picks_the_ceiling_rank_of_sorted_values() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&hundred, 50), 50.0);
        assert_eq!(nearest_rank(&hundred, 95), 95.0);
        assert_eq!(nearest_rank(&hundred, 99), 99.0);
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        // ⌈0.95 · 20⌉ = 19 exactly: no floating-point drift to the 20th.
        assert_eq!(nearest_rank(&twenty, 95), 19.0);
        // ⌈0.5 · 3⌉ = 2, ⌈0.99 · 3⌉ = 3.
        assert_eq!(nearest_rank(&[0.0, 10.0, 20.0], 50), 10.0);
        assert_eq!(nearest_rank(&[0.0, 10.0, 20.0], 99), 20.0);
        assert_eq!(nearest_rank(&[7.0], 50), 7.0);
        assert_eq!(nearest_rank(&[], 50), 0.0);
    }

    #[test]
    fn wait_summary_sorts_its_input_and_averages() {
        let summary = WaitSummary::of(vec![20.0, 0.0, 10.0, 30.0]);
        // Four waits: p50 is the 2nd smallest, p95 and p99 the 4th.
        assert_eq!(summary, WaitSummary { p50_s: 10.0, p95_s: 30.0, p99_s: 30.0, mean_s: 15.0, max_s: 30.0 });
        assert_eq!(
            WaitSummary::of(Vec::new()),
            WaitSummary { p50_s: 0.0, p95_s: 0.0, p99_s: 0.0, mean_s: 0.0, max_s: 0.0 }
        );
    }

    #[test]
    fn json_keeps_the_contract_keys() {
        let report =
            SimReport { trace: "transcoding".to_owned(), policies: vec![row("queue-scaler", 1.5, 3_600.0, 0)] };
        let json = serde_json::to_value(&report).expect("serializable");
        assert_eq!(json["trace"], "transcoding");
        let policy = &json["policies"][0];
        for key in [
            "name",
            "jobs",
            "p50_wait_s",
            "p95_wait_s",
            "p99_wait_s",
            "replica_seconds",
            "utilization",
            "scale_events",
            "interrupted_jobs",
        ] {
            assert!(policy.get(key).is_some(), "missing key {key}");
        }
        assert_eq!(policy["name"], "queue-scaler");
        assert_eq!(policy["jobs"], 1_234);
        assert_eq!(policy["p50_wait_s"], 1.5);
        assert_eq!(policy["replica_seconds"], 3_600.0);
        assert_eq!(policy["scale_events"], 17);
        assert_eq!(policy["interrupted_jobs"], 1);
    }

    #[test]
    fn the_table_aligns_every_line_and_shows_units_and_values() {
        let report = SimReport {
            trace: "spike".to_owned(),
            policies: vec![row("queue-scaler", 1.3, 3_600.4, 0), row("hpa", 123.0, 98_765.0, 0)],
        };
        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "trace: spike");
        assert_eq!(lines.len(), 4, "{table}");
        let width = lines[1].chars().count();
        assert!(lines[2..].iter().all(|line| line.chars().count() == width), "{table}");
        assert!(lines[1].starts_with("policy") && lines[1].contains("p95 wait (s)"));
        assert!(lines[1].contains("utilization (%)") && lines[1].contains("replica-seconds"));
        assert!(lines[2].starts_with("queue-scaler  "));
        assert!(lines[3].starts_with("hpa           "));
        for value in ["1234", "1.3", "42.3", "120.0", "301.5", "3600", "87.5", "17"] {
            assert!(lines[2].contains(value), "{value} missing from {:?}", lines[2]);
        }
        assert!(lines[3].contains("123.0") && lines[3].contains("98765"));
        // Right alignment: every numeric column ends where its header ends.
        let header_end = lines[1].find("(s)").map(|at| at + 3);
        let value_end = lines[2].find("1.3").map(|at| at + 3);
        assert_eq!(header_end, value_end);
    }

    #[test]
    fn the_table_notes_policies_that_left_jobs_unfinished() {
        let report = SimReport {
            trace: "on-off".to_owned(),
            policies: vec![row("threshold", 0.0, 10.0, 0), row("keda", 0.0, 10.0, 7)],
        };
        let table = render_table(&report);
        assert!(table.ends_with("note: keda left 7 jobs unfinished; its waits cover completed jobs only\n"));
        assert!(!table.contains("note: threshold"));
    }

    #[test]
    fn the_table_shows_interrupted_jobs_and_says_when_a_policy_scales_down_quietly() {
        let quiet = PolicyReport {
            scale_down: "quiet".to_owned(),
            quieted_pods: 9,
            resumed_pods: 2,
            quiet_timeouts: 1,
            interrupted_jobs: 0,
            ..row("queue-scaler", 1.0, 10.0, 0)
        };
        let report = SimReport { trace: "long-jobs".to_owned(), policies: vec![quiet, row("hpa", 1.0, 10.0, 0)] };
        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].ends_with("handed back  interrupted"), "{table}");
        assert!(lines[2].ends_with("  0") && lines[3].ends_with("  1"), "{table}");
        assert!(table.ends_with(
            "note: queue-scaler scales down quietly (scaleDown.quiet): 9 pods quieted, 2 resumed, 1 still busy at \
             quietTimeout\n"
        ));
    }
}
