//! On every built-in trace, the printed settings meet `p99_wait<=2m` at no more replica-seconds than the default
//! config, checked by simulating the config the diff describes.

use super::*;
use crate::sim::run::default_config;

fn simulate(target: &TargetConfig, jobs: &[Job]) -> PolicyReport {
    let settings = WorldSettings { initial_replicas: target.min_replicas, ..WorldSettings::default() };
    run_agent(jobs.to_vec(), target, Duration::from_secs(5), settings, &mut |_| {}).expect("runs").report
}

/// The default target with the diff's `+` lines applied, as a user would edit the file.
fn apply_diff(target: &TargetConfig, diff: &str) -> TargetConfig {
    let mut tuned = target.clone();
    for line in diff.lines().filter_map(|l| l.strip_prefix("+   ")) {
        let (key, value) = line.split_once(": ").expect("key: value");
        let seconds = || {
            humantime::parse_duration(value)
                .map(|d| d.as_secs_f64())
                .unwrap_or_else(|_| value.parse().expect("a number"))
        };
        match key {
            k if k.ends_with("backlogPerWorker") => {
                let index: usize = k["sources[".len()..k.find(']').expect("index")].parse().expect("index");
                tuned.sources[index].backlog_per_worker = value.parse().expect("a number");
            }
            "latencyTarget" => {
                assert_eq!(value, "null", "latency mode is only ever switched off");
                tuned.latency_target = None;
            }
            "behavior.scaleDown.stabilizationWindowSeconds" => {
                let rules = tuned.behavior.scale_down.get_or_insert_with(Default::default);
                rules.stabilization_window_seconds = Some(value.parse().expect("seconds"));
            }
            "scaleDown.idleFirst" => tuned.scale_down.idle_first = value.parse().expect("a boolean"),
            "latencyTarget.maxWait" => {
                tuned.latency_target.as_mut().expect("latency mode").max_wait = Duration::from_secs_f64(seconds())
            }
            "scaleDownPolicy.delay" => {
                let policy = tuned.effective_scale_down_policy().expect("a policy");
                tuned.scale_down_policy = Some(ScaleDownPolicy { delay: Duration::from_secs_f64(seconds()), ..policy });
            }
            other => panic!("unexpected key {other}"),
        }
    }
    tuned
}

fn tunes(trace: &str) {
    let config = default_config();
    let target = &config.targets[0];
    let jobs = crate::sim::builtin(trace).expect("a built-in trace");
    let simulation =
        Simulation { target, jobs: &jobs, poll_interval: Duration::from_secs(5), settings: WorldSettings::default() };
    let slo: Slo = "p99_wait<=2m".parse().expect("an objective");
    let tuning = tune(&simulation, slo, &mut |_| {}).expect("tunes");
    let best = tuning.best.unwrap_or_else(|| panic!("{trace}: nothing met the objective: {:?}", tuning.trials));
    let diff = best.settings.diff(&tuning.configured.settings, target);
    let report = simulate(&apply_diff(target, &diff), &jobs);
    let default = simulate(target, &jobs);
    assert!(report.p99_wait_s <= 120.0 && report.unfinished == 0, "{trace}: p99 {} with\n{diff}", report.p99_wait_s);
    assert!(
        report.replica_seconds <= default.replica_seconds,
        "{trace}: {} replica-seconds, default {}\n{diff}",
        report.replica_seconds,
        default.replica_seconds
    );
    eprintln!(
        "{trace}: {:?} p99 {:.1}s {:.0} replica-seconds (default p99 {:.1}s {:.0})",
        best.settings, report.p99_wait_s, report.replica_seconds, default.p99_wait_s, default.replica_seconds
    );
}

#[test]
fn tunes_transcoding() {
    tunes("transcoding");
}

#[test]
fn tunes_steady() {
    tunes("steady");
}

#[test]
fn tunes_diurnal() {
    tunes("diurnal");
}

/// 1,000 jobs within 30 s against the default maxReplicas 60: no setting searched moves the p99 below 2 min (the
/// cap binds), and tune says so rather than pretend.
#[test]
fn on_the_spike_nothing_searched_beats_max_replicas() {
    let config = default_config();
    let jobs = crate::sim::builtin("spike").expect("a built-in trace");
    let simulation = Simulation {
        target: &config.targets[0],
        jobs: &jobs,
        poll_interval: Duration::from_secs(5),
        settings: WorldSettings::default(),
    };
    let tuning = tune(&simulation, "p99_wait<=2m".parse().expect("an objective"), &mut |_| {}).expect("tunes");
    assert_eq!(tuning.best, None);
    assert!(tuning.trials.iter().all(|t| t.wait_s > 120.0 && !t.meets), "{:?}", tuning.trials);
}

#[test]
fn tunes_black_friday() {
    tunes("black-friday");
}

#[test]
fn tunes_on_off() {
    tunes("on-off");
}

#[test]
fn tunes_heavy_tail() {
    tunes("heavy-tail");
}

/// Jobs of 5–40 minutes: no wait target or window keeps the p99 under 2 minutes while busy workers are removed and
/// their jobs start over; with idle-first removal some do.
#[test]
fn tunes_long_jobs() {
    tunes("long-jobs");
}

#[test]
fn objectives_parse_and_refuse_nonsense() {
    let slo: Slo = "p95_wait <= 90s".parse().expect("valid");
    assert_eq!((slo.statistic, slo.limit_s), (WaitStatistic::P95, 90.0));
    assert!("p50_wait<=1m".parse::<Slo>().unwrap_err().contains("write e.g. p99_wait<=2m"));
    assert!("max_wait<=0s".parse::<Slo>().is_err());
}
