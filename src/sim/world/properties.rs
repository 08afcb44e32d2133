//! Properties of the world model that must hold for any trace, settings and scale schedule: every job completes
//! exactly once when pods remain, the accounts balance, the timeline is regular, and runs are reproducible.

use proptest::prelude::*;

use super::*;

/// A random small world, a scale schedule, and a final scale that is never zero, so every job can complete.
#[derive(Debug, Clone)]
struct Scenario {
    jobs: Vec<Job>,
    settings: WorldSettings,
    schedule: Vec<(f64, u32)>,
    final_replicas: u32,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let job = (0.0..200.0f64, 0.0..50.0f64).prop_map(|(arrival_s, duration_s)| Job { arrival_s, duration_s });
    let settings = (0.0..40.0f64, 1u32..4, 0.0..40.0f64, any::<bool>(), 0u32..4, 1.0..20.0f64).prop_map(
        |(pod_start_delay_s, concurrency, termination_grace_s, idle_first, initial_replicas, sample_every_s)| {
            WorldSettings {
                pod_start_delay_s,
                concurrency,
                termination_grace_s,
                idle_first,
                initial_replicas,
                sample_every_s,
                ..WorldSettings::default()
            }
        },
    );
    let schedule = prop::collection::vec((0.0..30.0f64, 0u32..6), 0..20);
    (prop::collection::vec(job, 1..60), settings, schedule, 1u32..4)
        .prop_map(|(jobs, settings, schedule, final_replicas)| Scenario { jobs, settings, schedule, final_replicas })
}

/// Runs the scenario to completion, checking the snapshot's conservation laws after every step.
fn run(scenario: &Scenario) -> PolicyOutcome {
    let mut world = World::new(scenario.jobs.clone(), scenario.settings.clone());
    let mut t = 0.0;
    for &(gap_s, replicas) in &scenario.schedule {
        t += gap_s;
        world.set_replicas(t, replicas);
        let s = world.snapshot();
        assert_eq!(s.arrived, s.waiting + s.in_flight + s.completed);
        assert_eq!(s.ready_pods + s.starting_pods, world.replicas());
    }
    world.set_replicas(t, scenario.final_replicas);
    let deadline_s = run_end_s(scenario);
    world.advance_to(deadline_s);
    assert!(world.is_done());
    let s = world.snapshot();
    assert_eq!((s.waiting, s.in_flight, s.completed), (0, 0, scenario.jobs.len() as u64));
    world.finish("property")
}

proptest! {
    #[test]
    fn every_job_completes_once_and_the_accounts_balance(scenario in scenario()) {
        let outcome = run(&scenario);
        let report = &outcome.report;
        let concurrency = f64::from(scenario.settings.concurrency);
        prop_assert_eq!((report.jobs, report.unfinished), (scenario.jobs.len() as u64, 0));
        prop_assert!(report.replica_seconds * concurrency >= report.busy_worker_seconds - 1e-9);
        prop_assert!((0.0..=1.0 + 1e-12).contains(&report.utilization));
        let total_work_s: f64 = scenario.jobs.iter().map(|job| job.duration_s).sum();
        let redone = total_work_s + report.wasted_work_s;
        prop_assert!((report.busy_worker_seconds - redone).abs() <= 1e-9 * redone.max(1.0));
        prop_assert!(0.0 <= report.p50_wait_s);
        prop_assert!(report.p50_wait_s <= report.p95_wait_s);
        prop_assert!(report.p95_wait_s <= report.p99_wait_s);
        prop_assert!(report.p99_wait_s <= report.max_wait_s);
        prop_assert!(report.scale_events <= scenario.schedule.len() as u64 + 1);
    }

    #[test]
    fn the_timeline_has_one_sample_per_interval_up_to_the_end(scenario in scenario()) {
        let outcome = run(&scenario);
        let every = scenario.settings.sample_every_s;
        for (index, sample) in outcome.timeline.iter().enumerate() {
            prop_assert_eq!(sample.t_s, index as f64 * every);
        }
        let last = outcome.timeline.last().map_or(-1.0, |sample| sample.t_s);
        let end_s = run_end_s(&scenario);
        prop_assert!(last <= end_s && end_s < last + every);
    }

    #[test]
    fn the_same_inputs_give_the_same_outcome(scenario in scenario()) {
        prop_assert_eq!(run(&scenario), run(&scenario));
    }
}

/// When a run ends: even one pod doing every job in turn is done by then. A pod removed by the step before the last
/// may still hand its job back at the end of its grace, and the pod the last step adds takes it after that.
fn run_end_s(scenario: &Scenario) -> f64 {
    let t: f64 = scenario.schedule.iter().map(|(gap_s, _)| gap_s).sum();
    let total_work_s: f64 = scenario.jobs.iter().map(|job| job.duration_s).sum();
    let last_arrival_s = scenario.jobs.iter().map(|job| job.arrival_s).fold(0.0, f64::max);
    let settings = &scenario.settings;
    t.max(last_arrival_s) + settings.pod_start_delay_s + settings.termination_grace_s + total_work_s + 1.0
}
