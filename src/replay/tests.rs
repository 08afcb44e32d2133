//! A recorded burst replayed tick by tick, the file format's errors, and replay's determinism.

use proptest::prelude::*;

use super::*;
use crate::config::Config;

/// Latency mode with a configured 10 s job duration and a 60 s maximum wait; default burst (30 s hold),
/// scale-down policy (30 s delay, busy replicas kept) and HPA scale-up rates (4 pods or 100 % per 15 s).
const CONFIG: &str = "\
targets:
  - deployment: worker
    minReplicas: 0
    maxReplicas: 20
    latencyTarget: { maxWait: 60s, jobDuration: 10s }
    sources:
      - { name: jobs, type: rabbitmq, url: 'amqp://h', queue: jobs, backlogPerWorker: 5 }
      - { name: other, type: rabbitmq, url: 'amqp://h', queue: other, backlogPerWorker: 5 }
";

/// A recording of a burst on `jobs` (sources named by name or index, `other` idle and once unreadable).
const RECORDING: &str = "\
# time_s,source,backlog,in_flight,arrival_rate
time_s,source,backlog,in_flight,arrival_rate
0,jobs,0,0,
0,other,0,,
5,jobs,3,0,0.6
5,1,0,,
10,0,2,2,0.6
10,other,0,,
15,jobs,4,4,0.6
15,other,0,,
20,jobs,5,4,0.6
20,other,0,,
25,jobs,120,7,24
25,other,0,,
30,jobs,150,20,8
30,other,0,,
35,jobs,140,20,0
35,other,0,,
65,jobs,60,20,0
65,other,0,,
100,jobs,8,8,0
100,other,0,,
130,jobs,0,0,0

160,jobs,0,0,0
160,other,0,,
";

fn target() -> TargetConfig {
    Config::parse("replay.yaml", CONFIG, |_| None).unwrap_or_else(|e| panic!("{e}")).targets.remove(0)
}

fn decisions() -> Vec<ReplayDecision> {
    let target = target();
    let ticks = read_observations(RECORDING, &target).unwrap_or_else(|e| panic!("{e}"));
    replay(&target, &ticks, 0, crate::sim::run::start_of_simulated_time())
}

#[test]
fn replays_a_recorded_burst_decision_by_decision() {
    let got: Vec<(f64, u32, &str)> = decisions().iter().map(|d| (d.time_s, d.desired, d.reason)).collect();
    let expected = [
        // Nothing waiting, nothing arriving: scale to zero.
        (0.0, 0, "Idle"),
        // 0.6/s × 10 s + 3 waiting × 10 / 60 = 6.5 → 7, but from 0 the scale-up policy allows 4 pods.
        (5.0, 4, "ScaleUpLimit"),
        // 6 replicas wanted; the 15 s period that began at t = 5 has used its 4 pods.
        (10.0, 4, "ScaleUpLimit"),
        (15.0, 4, "ScaleUpLimit"),
        // A new period: 6 + 1 waiting × 10 / 60 = 6.17 → 7.
        (20.0, 7, "LatencyTarget"),
        // 120 arrivals in 5 s (where 3 were expected: the rate jumps to 24/s), the backlog grew by 115, far more
        // than 7 replicas drain (3.5) or noise explains: a burst, straight to maxReplicas past the rate limit of 8.
        (25.0, 20, "Burst"),
        // Still 102 wanted, capped.
        (30.0, 20, "MaxReplicas"),
        // Arrivals stopped (no arrival where 40 were expected): 120 waiting × 10 / 60 = 20 is the current count.
        (35.0, 20, "WithinTolerance"),
        // The burst is over and 40 waiting need only 7, but all 20 replicas are busy: none goes.
        (65.0, 20, "BusyReplicas"),
        // Nothing waiting wants 0 (1 by activation), but 8 jobs are in flight.
        (100.0, 8, "BusyReplicas"),
        // `other` has no row: a failed read holds the count.
        (130.0, 8, "SourceFailing"),
        // Everything idle and the 30 s window clear of higher recommendations.
        (160.0, 0, "Idle"),
    ];
    assert_eq!(got, expected);
}

#[test]
fn each_decision_explains_itself() {
    let decisions = decisions();
    let message =
        |time_s: f64| decisions.iter().find(|d| d.time_s == time_s).map(|d| d.message.clone()).unwrap_or_default();
    assert_eq!(message(20.0), "jobs: (0.60/s × 10.0s + 1 waiting × 10.0s / 60s) = 6.17 replicas → 7");
    assert!(message(25.0).ends_with("burst: the backlog grows faster than 7 replicas drain it; scaling to 20 at once"));
    assert!(message(65.0).ends_with("kept at 20: 20 jobs are in flight"), "{}", message(65.0));
    assert_eq!(message(130.0), "other failed 1 time(s) in a row; holding, never scaling down on an error");
    assert_eq!(decisions.iter().map(|d| d.current).collect::<Vec<_>>(), [0, 0, 4, 4, 4, 7, 20, 20, 20, 20, 8, 8]);
}

#[test]
fn json_has_the_contract_keys() {
    let decision = &decisions()[5];
    let json = serde_json::to_value(decision).expect("serializable");
    assert_eq!(json["time_s"], 25.0);
    assert_eq!(json["desired"], 20);
    assert_eq!(json["reason"], "Burst");
    assert_eq!(json["current"], 7);
}

#[test]
fn the_replay_starts_from_the_initial_replicas() {
    let target = target();
    let ticks = read_observations("time_s,source,backlog\n0,jobs,0\n0,other,0\n", &target).expect("valid");
    // From 3 replicas with nothing to do: the 30 s scale-down window starts with the current count.
    let from_three = replay(&target, &ticks, 3, crate::sim::run::start_of_simulated_time());
    assert_eq!((from_three[0].current, from_three[0].desired, from_three[0].reason), (3, 3, "ScaleDownStabilized"));
}

#[test]
fn columns_may_come_in_any_order_and_optional_ones_may_be_missing() {
    let target = target();
    let ticks = read_observations("backlog,time_s,source\n7,5,other\n\n# note\n2,5,jobs\n", &target).expect("valid");
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0].time_s, 5.0);
    let backlogs: Vec<Option<f64>> = ticks[0].readings.iter().map(|r| r.as_ref().map(|r| r.backlog)).collect();
    assert_eq!(backlogs, [Some(2.0), Some(7.0)]);
    assert_eq!(ticks[0].readings[0].as_ref().and_then(|r| r.in_flight), None);
}

#[test]
fn rows_are_grouped_by_time_in_order() {
    let target = target();
    let ticks = read_observations("time_s,source,backlog\n10,jobs,1\n-0,jobs,2\n0,other,3\n", &target).expect("valid");
    assert_eq!(ticks.iter().map(|t| t.time_s).collect::<Vec<_>>(), [0.0, 10.0]);
    assert!(ticks[0].readings.iter().all(Option::is_some));
    assert!(ticks[1].readings[1].is_none(), "no row for `other` at 10: a failed read");
}

#[test]
fn every_error_names_its_line() {
    let target = target();
    let error = |text: &str| read_observations(text, &target).unwrap_err().to_string();
    assert_eq!(error("\n# nothing\n"), "the file is empty: expected the header `time_s,source,backlog`");
    assert_eq!(
        error("time_s,backlog\n"),
        "line 1: no `source` column; the header is `time_s,source,backlog` plus optionally `in_flight,arrival_rate` \
         (and `target,live_replicas` in a shadow recording)"
    );
    assert!(error("time_s,source,backlog,lag\n").starts_with("line 1: unknown column `lag`"));
    assert_eq!(error("time_s,source,backlog\n"), "the file has a header but no observations");
    assert_eq!(error("time_s,source,backlog\n1,jobs\n"), "line 2: expected 3 comma-separated fields, found 2");
    assert_eq!(error("time_s,source,backlog\n1,jobs,-4\n"), "line 2: backlog \"-4\" must be a number ≥ 0");
    assert_eq!(error("time_s,source,backlog\nsoon,jobs,4\n"), "line 2: time_s \"soon\" must be a number ≥ 0");
    assert_eq!(
        error("time_s,source,backlog\n1,2,4\n"),
        "line 2: source \"2\" is neither an index below 2 nor a source name (`jobs`, `other`)"
    );
    assert_eq!(
        error("time_s,source,backlog\n1,jobs,4\n1,0,5\n"),
        "line 3: source `jobs` already has a row at time_s 1"
    );
    assert!(error("time_s,source,backlog\n1,jobs,1e13\n").starts_with("line 2: backlog \"1e13\" rejected reading"));
    assert_eq!(
        error("time_s,source,backlog\n1e300,jobs,4\n"),
        "line 2: time_s \"1e300\" is more than 1e9 seconds after the start; use seconds from the first row"
    );
}

#[test]
fn renders_one_line_per_decision() {
    let lines = render_lines(&decisions());
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 12);
    assert!(lines[5].starts_with("     25.0s     7 → 20    Burst: "), "{}", lines[5]);
    assert!(lines[6].starts_with("     30.0s    20         MaxReplicas: "), "{}", lines[6]);
    // The reasons line up whether the count changed or not.
    assert_eq!(lines[5].chars().position(|c| c == 'B'), lines[6].chars().position(|c| c == 'M'));
}

fn observations() -> impl Strategy<Value = String> {
    let row = (0u32..40, 0usize..2, 0u32..500, prop::option::of(0u32..50), prop::option::of(0u32..40));
    prop::collection::vec(row, 1..60).prop_map(|rows| {
        let mut text = String::from("time_s,source,backlog,in_flight,arrival_rate\n");
        let mut seen = std::collections::HashSet::new();
        for (tick, source, backlog, in_flight, rate) in rows {
            if seen.insert((tick, source)) {
                let field = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
                text.push_str(&format!("{},{source},{backlog},{},{}\n", tick * 5, field(in_flight), field(rate)));
            }
        }
        text
    })
}

proptest! {
    #[test]
    fn replay_is_deterministic_and_stays_within_the_bounds(text in observations(), initial in 0u32..25) {
        let target = target();
        let ticks = read_observations(&text, &target).expect("generated observations are valid");
        let start = crate::sim::run::start_of_simulated_time();
        let first = replay(&target, &ticks, initial, start);
        prop_assert_eq!(&first, &replay(&target, &ticks, initial, start));
        prop_assert_eq!(first.len(), ticks.len());
        for decision in &first {
            prop_assert!(decision.desired <= target.max_replicas);
        }
        // Each decision starts from the one before: applied at once.
        for pair in first.windows(2) {
            prop_assert_eq!(pair[1].current, pair[0].desired);
        }
    }
}

/// A shadow recording of two workloads; `worker`'s source name holds a comma, so the recorder quoted it.
const SHADOW: &str = "\
time_s,source,backlog,in_flight,arrival_rate,target,live_replicas
0.000,\"jobs\",40,0,,worker,4
0.000,jobs,9,,,mailer,1
10.000,jobs,40,0,,worker,4
20.000,jobs,0,0,,worker,2
";

#[test]
fn a_shadow_recording_is_read_one_target_at_a_time() {
    let target = target();
    let error = read_recording(SHADOW, &target, None).unwrap_err().to_string();
    assert_eq!(error, "the recording holds several targets (mailer, worker); choose one with --target NAME");
    let error = read_recording(SHADOW, &target, Some("billing")).unwrap_err().to_string();
    assert_eq!(error, "the recording has no rows for target `billing`; it holds: mailer, worker");
    let ticks = read_recording(SHADOW, &target, Some("worker")).expect("valid");
    let seen: Vec<(f64, Option<f64>, Option<u32>)> =
        ticks.iter().map(|t| (t.time_s, t.readings[0].as_ref().map(|r| r.backlog), t.live_replicas)).collect();
    assert_eq!(seen, [(0.0, Some(40.0), Some(4)), (10.0, Some(40.0), Some(4)), (20.0, Some(0.0), Some(2))]);
    let plain = "time_s,source,backlog\n0,jobs,1\n";
    assert_eq!(
        read_recording(plain, &target, Some("worker")).unwrap_err().to_string(),
        "--target worker names a recorded target, but the observations have no `target` column"
    );
}

#[test]
fn quoted_fields_may_hold_commas_and_quotes() {
    assert_eq!(csv_fields(r#"1,"sum(x{a=""b"",c=""d""})", 7 ,"#), ["1", r#"sum(x{a="b",c="d"})"#, "7", ""]);
}

#[test]
fn the_report_sets_replica_seconds_and_estimated_waits_beside_the_live_ones() {
    // 10 s jobs: 40 waiting at 4 live replicas (0.4 jobs/s) is a 100 s wait; then the queue empties.
    let config = Config::parse(
        "r.yaml",
        "targets:\n  - deployment: worker\n    maxReplicas: 20\n    latencyTarget: { maxWait: 60s, jobDuration: 10s }\n    \
         sources: [{ name: jobs, type: rabbitmq, url: 'amqp://h', queue: jobs, backlogPerWorker: 5 }]\n",
        |_| None,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .targets
    .remove(0);
    let ticks = read_recording(SHADOW, &config, Some("worker")).expect("valid");
    let decisions = replay(&config, &ticks, 4, crate::sim::run::start_of_simulated_time());
    let report = super::report::compare("worker", &config, &ticks, &decisions).expect("a shadow recording");
    assert_eq!(report.live.replica_seconds, 4.0 * 10.0 + 4.0 * 10.0);
    let ours: f64 = decisions.windows(2).map(|w| f64::from(w[0].desired) * (w[1].time_s - w[0].time_s)).sum();
    assert_eq!(report.queue_scaler.replica_seconds, ours);
    assert_eq!(report.live.estimated_max_wait_s, Some(100.0));
    assert_eq!(report.job_duration_from, "latencyTarget.jobDuration");
    // At the first tick both sides see the same 40 jobs; queue-scaler's count there sets its wait.
    let first = decisions[0].desired;
    assert!(first > 4, "40 waiting with a 60 s maxWait wants more than 4: {first}");
    assert_eq!(report.timeline[0].queue_scaler_wait_s, Some(40.0 * 10.0 / f64::from(first)));
    let markdown = report.markdown("worker.svg");
    assert!(markdown.contains("| replica-seconds | "), "{markdown}");
    assert!(markdown.contains("estimates, not measurements"), "{markdown}");
    assert!(report.svg().contains("live: p99 wait"), "the plot has both sides");
    let json = serde_json::to_value(&report).expect("serializable");
    assert_eq!(json["live"]["replica_seconds"], 80.0);
    assert!(json["queue_scaler"]["estimated_p99_wait_s"].is_number());
}

#[test]
fn observations_without_live_replicas_make_no_report() {
    let target = target();
    let ticks = read_observations("time_s,source,backlog\n0,jobs,1\n", &target).expect("valid");
    let decisions = replay(&target, &ticks, 0, crate::sim::run::start_of_simulated_time());
    let error = super::report::compare("worker", &target, &ticks, &decisions).unwrap_err();
    assert!(error.to_string().contains("needs a shadow recording"), "{error}");
}
