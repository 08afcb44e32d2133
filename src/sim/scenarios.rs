//! The agent's own loop in the simulator, on scenarios built to break a promise: quiet scale-down interrupts no
//! job (and falls back, saying so, at `quietTimeout`); measured wait adds capacity when jobs wait longer than
//! `maxWait`; `notDraining` stops a scale-up that cannot help, and only that one.

use super::run::run_agent;
use super::{Job, PolicyOutcome, Stall, WorldSettings, builtin};
use crate::config::Config;

/// `simulate -c` with this config's first target over `jobs`, the Deployment starting at `minReplicas`.
fn simulate(config: &str, jobs: Vec<Job>, settings: WorldSettings) -> PolicyOutcome {
    let config = Config::parse("scenario.yaml", config, |_| None).expect("a valid config");
    let target = &config.targets[0];
    let settings = WorldSettings { initial_replicas: target.min_replicas, ..settings };
    run_agent(jobs, target, config.poll_interval, settings, &mut |_| {}).expect("a valid simulation")
}

/// A worker config: `mode` is a `latencyTarget` line or nothing, `extra` more lines of the target.
fn config(max_replicas: u32, backlog_per_worker: u32, mode: &str, extra: &str) -> String {
    format!(
        "pollInterval: 5s\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: {max_replicas}\n\
         {mode}{extra}    sources:\n      - type: rabbitmq\n        url: amqp://simulated\n        queue: jobs\n        \
         managementUrl: http://simulated:15672\n        backlogPerWorker: {backlog_per_worker}\n"
    )
}

fn steady(rate: f64, duration_s: f64, until_s: f64) -> Vec<Job> {
    let count = (until_s * rate) as u32;
    (0..count).map(|i| Job { arrival_s: f64::from(i) / rate, duration_s }).collect()
}

#[test]
fn quiet_scale_down_interrupts_no_long_job_where_idle_first_interrupts_many() {
    let long_jobs = || builtin("long-jobs").expect("the long-jobs trace");
    let scale_down = |how: &str| format!("    scaleDown: {{ {how} }}\n");
    let idle_first = simulate(&config(60, 2, "", &scale_down("idleFirst: true")), long_jobs(), Default::default());
    let quiet =
        simulate(&config(60, 2, "", &scale_down("quiet: true, quietTimeout: 45m")), long_jobs(), Default::default());
    let (idle_first, quiet) = (idle_first.report, quiet.report);
    assert!(idle_first.interrupted_jobs > 10, "idle-first interrupted {}", idle_first.interrupted_jobs);
    assert_eq!((quiet.interrupted_jobs, quiet.handed_back, quiet.unfinished), (0, 0, 0), "{quiet:?}");
    assert!(quiet.quieted_pods > 0 && quiet.quiet_timeouts == 0, "{quiet:?}");
    assert_eq!((idle_first.scale_down.as_str(), quiet.scale_down.as_str()), ("idle-first", "quiet"));
}

#[test]
fn quiet_falls_back_to_cutting_jobs_when_quiet_timeout_is_shorter_than_the_jobs_and_says_so() {
    let scale_down = "    scaleDown: { quiet: true, quietTimeout: 2m }\n";
    let quiet = simulate(&config(60, 2, "", scale_down), builtin("long-jobs").expect("trace"), Default::default());
    let report = quiet.report;
    assert!(report.quiet_timeouts > 0 && report.interrupted_jobs > 0, "{report:?}");
    assert_eq!(report.unfinished, 0);
}

#[test]
fn measured_wait_raises_capacity_when_jobs_wait_longer_than_max_wait() {
    // The config believes jobs take 10 s; they take 60 s. Little's law alone then runs about a sixth of the 15 busy
    // workers 0.25 jobs/s need, and the queue grows until its own term catches up: jobs wait minutes. The measured
    // age of the oldest job tells the policy its estimate is short.
    let latency = "    latencyTarget: { maxWait: 60s, jobDuration: 10s }\n";
    let run = |reports_oldest_age: bool| {
        let settings = WorldSettings { reports_oldest_age, ..WorldSettings::default() };
        simulate(&config(50, 5, latency, ""), steady(0.25, 60.0, 3_600.0), settings)
    };
    let (blind, measured) = (run(false), run(true));
    // Capacity while the queue builds: the replica-samples of the first 20 minutes.
    let early = |outcome: &PolicyOutcome| -> u32 {
        outcome.timeline.iter().filter(|s| s.t_s < 1_200.0).map(|s| s.replicas).sum()
    };
    assert!(early(&measured) > early(&blind), "{} with the age vs {} without", early(&measured), early(&blind));
    let (blind, measured) = (blind.report, measured.report);
    assert!(blind.p99_wait_s > 120.0, "without the age jobs wait {} s at p99", blind.p99_wait_s);
    assert!(
        measured.p99_wait_s < 0.6 * blind.p99_wait_s,
        "p99 wait {} s with the age vs {} s without",
        measured.p99_wait_s,
        blind.p99_wait_s
    );
}

#[test]
fn not_draining_stops_the_scale_up_against_a_stuck_consumer_and_resumes_when_it_recovers() {
    // 0.5 jobs/s of 10 s jobs keep 5 workers busy. From minute 20, for 15 minutes, no job progresses however many pods
    // run (a downstream outage): the backlog grows by 30 a minute, and a policy that reads only the backlog runs up
    // to maxReplicas, pods that cannot help.
    let stalls = vec![Stall { from_s: 1_200.0, until_s: 2_100.0 }];
    let run = |extra: &str| {
        let settings = WorldSettings { stalls: stalls.clone(), ..WorldSettings::default() };
        simulate(&config(60, 5, "", extra), steady(0.5, 10.0, 3_600.0), settings)
    };
    let judged = run("");
    let blind = run("    notDraining: { enabled: false }\n");
    let peak = |outcome: &PolicyOutcome, from_s: f64, until_s: f64| {
        outcome.timeline.iter().filter(|s| (from_s..until_s).contains(&s.t_s)).map(|s| s.replicas).max().unwrap_or(0)
    };
    let (stalled, after) = ((1_200.0, 2_100.0), (2_100.0, 2_700.0));
    assert_eq!(peak(&blind, stalled.0, stalled.1), 60, "without the rule the stall takes it to maxReplicas");
    let plateau = peak(&judged, stalled.0, stalled.1);
    assert!(plateau < 45, "the rule stops the scale-up during the stall: peak {plateau}");
    // Once the consumers recover the backlog moves, and the target scales up to drain it.
    assert!(peak(&judged, after.0, after.1) > plateau, "{} after vs {plateau} during", peak(&judged, after.0, after.1));
    assert_eq!(judged.report.unfinished, 0);
    assert!(judged.report.replica_seconds < blind.report.replica_seconds);
}
