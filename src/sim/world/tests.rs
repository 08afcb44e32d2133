//! Hand-checked scenarios for the world model: every expected number is derived in a comment.

use super::*;

fn jobs(list: &[(f64, f64)]) -> Vec<Job> {
    list.iter().map(|&(arrival_s, duration_s)| Job { arrival_s, duration_s }).collect()
}

fn with_replicas(initial_replicas: u32) -> WorldSettings {
    WorldSettings { initial_replicas, ..WorldSettings::default() }
}

#[test]
fn one_pod_works_three_ten_second_jobs_one_after_another() {
    let mut world = World::new(jobs(&[(0.0, 10.0), (0.0, 10.0), (0.0, 10.0)]), with_replicas(1));
    world.advance_to(40.0);
    assert!(world.is_done());
    let report = world.finish("one-pod").report;
    // The jobs start at 0, 10 and 20: waits 0, 10, 20. Nearest rank: p50 is the 2nd of 3, p95 and p99 the 3rd.
    assert_eq!(report.jobs, 3);
    assert_eq!((report.p50_wait_s, report.p95_wait_s, report.p99_wait_s), (10.0, 20.0, 20.0));
    assert_eq!((report.mean_wait_s, report.max_wait_s), (10.0, 20.0));
    // One pod for 40 s; busy for 30 s of them.
    assert_eq!(report.replica_seconds, 40.0);
    assert_eq!(report.busy_worker_seconds, 30.0);
    assert_eq!(report.utilization, 0.75);
    assert_eq!((report.scale_events, report.max_replicas), (0, 1));
    assert_eq!((report.handed_back, report.wasted_work_s, report.unfinished), (0, 0.0, 0));
}

#[test]
fn the_timeline_samples_every_boundary_with_the_state_after_that_instant() {
    let mut world = World::new(jobs(&[(0.0, 10.0), (0.0, 10.0), (0.0, 10.0)]), with_replicas(1));
    world.advance_to(40.0);
    let timeline = world.finish("one-pod").timeline;
    let times: Vec<f64> = timeline.iter().map(|sample| sample.t_s).collect();
    assert_eq!(times, vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]);
    let sample = |t_s: f64| timeline.iter().find(|s| s.t_s == t_s).copied();
    // At 0 the first job has started (wait 0) and two wait.
    let at_0 = Sample { t_s: 0.0, waiting: 2, in_flight: 1, replicas: 1, ready: 1, busy: 1, wait_s: 0.0 };
    assert_eq!(sample(0.0), Some(at_0));
    // At 10 the first job ended and the second started after waiting 10 s.
    assert_eq!(sample(10.0), Some(Sample { t_s: 10.0, waiting: 1, wait_s: 10.0, ..at_0 }));
    // Nothing started in (20, 25].
    assert_eq!(sample(25.0), Some(Sample { t_s: 25.0, waiting: 0, wait_s: 0.0, ..at_0 }));
    // From 30 the pod is idle.
    let idle = Sample { t_s: 30.0, waiting: 0, in_flight: 0, busy: 0, wait_s: 0.0, ..at_0 };
    assert_eq!(sample(30.0), Some(idle));
}

#[test]
fn advance_to_records_the_boundaries_it_passes_and_a_scale_at_a_boundary_shows_in_its_sample() {
    let mut world = World::new(Vec::new(), with_replicas(1));
    world.advance_to(10.0);
    world.set_replicas(10.0, 3);
    world.advance_to(12.0);
    let timeline = world.finish("scale-at-boundary").timeline;
    let replicas: Vec<(f64, u32)> = timeline.iter().map(|s| (s.t_s, s.replicas)).collect();
    assert_eq!(replicas, vec![(0.0, 1), (5.0, 1), (10.0, 3)]);
}

#[test]
fn a_new_pod_consumes_only_after_the_start_delay() {
    let mut world = World::new(jobs(&[(0.0, 10.0)]), with_replicas(0));
    world.set_replicas(0.0, 1);
    let at_start = world.snapshot();
    assert_eq!((at_start.starting_pods, at_start.ready_pods, at_start.waiting), (1, 0, 1));
    world.advance_to(29.5);
    assert_eq!((world.snapshot().ready_pods, world.snapshot().waiting), (0, 1));
    world.advance_to(30.0);
    let ready = world.snapshot();
    assert_eq!((ready.ready_pods, ready.in_flight, ready.waiting), (1, 1, 0));
    world.advance_to(40.0);
    let report = world.finish("delayed").report;
    // The job starts at 30 (wait 30) and ends at 40; the pod exists for 40 s and works 10.
    assert_eq!((report.jobs, report.max_wait_s), (1, 30.0));
    assert_eq!(report.replica_seconds, 40.0);
    assert_eq!(report.utilization, 0.25);
    assert_eq!((report.scale_events, report.max_replicas), (1, 1));
}

#[test]
fn a_busy_pod_removed_hands_its_job_back_after_the_grace_period_and_the_job_is_redone() {
    let mut world = World::new(jobs(&[(0.0, 100.0)]), with_replicas(1));
    world.set_replicas(10.0, 0);
    let draining = world.snapshot();
    assert_eq!((draining.draining_pods, draining.in_flight, draining.waiting), (1, 1, 0));
    world.advance_to(39.9);
    assert_eq!(world.snapshot().draining_pods, 1);
    // The grace period ends at 10 + 30 = 40: the job goes back to the queue and the pod is gone.
    world.advance_to(40.0);
    let handed_back = world.snapshot();
    assert_eq!((handed_back.draining_pods, handed_back.in_flight, handed_back.waiting), (0, 0, 1));
    // A new pod created at 50 is ready at 80 and redoes the job from 80 to 180.
    world.set_replicas(50.0, 1);
    world.advance_to(180.0);
    assert!(world.is_done());
    let report = world.finish("default").report;
    assert_eq!(report.max_wait_s, 80.0);
    assert_eq!((report.handed_back, report.wasted_work_s), (1, 40.0));
    // Pods exist over [0, 40] and [50, 180]: 40 + 130; busy 40 (wasted) + 100.
    assert_eq!(report.replica_seconds, 170.0);
    assert_eq!(report.busy_worker_seconds, 140.0);
    assert_eq!(report.utilization, 140.0 / 170.0);
    assert_eq!(report.scale_events, 2);
}

#[test]
fn a_removed_pod_finishes_jobs_that_end_within_the_grace_period_and_is_gone_then() {
    // The first job ends at 20, the second exactly at the deadline 10 + 30 = 40: both finish.
    for duration_s in [20.0, 40.0] {
        let mut world = World::new(jobs(&[(0.0, duration_s)]), with_replicas(1));
        world.set_replicas(10.0, 0);
        world.advance_to(duration_s);
        let after = world.snapshot();
        assert_eq!((after.completed, after.draining_pods, after.waiting), (1, 0, 0));
        world.advance_to(60.0);
        let report = world.finish("graceful").report;
        assert_eq!((report.handed_back, report.wasted_work_s), (0, 0.0));
        assert_eq!(report.replica_seconds, duration_s);
    }
}

#[test]
fn handed_back_jobs_go_to_the_front_of_the_queue() {
    // A runs on the only pod; B arrives at 1 and waits. The pod is removed at 5 and hands A back at 35, ahead of B.
    let mut world = World::new(jobs(&[(0.0, 100.0), (1.0, 10.0)]), with_replicas(1));
    world.set_replicas(5.0, 0);
    world.set_replicas(40.0, 1);
    world.advance_to(200.0);
    assert!(world.is_done());
    let report = world.finish("front").report;
    // The new pod is ready at 70: A runs 70–170 (wait 70), then B 170–180 (wait 169).
    assert_eq!((report.max_wait_s, report.mean_wait_s), (169.0, (70.0 + 169.0) / 2.0));
}

/// Two pods; A (5 s) goes to pod 0 and B (100 s) to pod 1, the newer. At 10 one pod must go.
fn scale_down_with_one_idle_and_one_busy_pod(idle_first: bool) -> PolicyReport {
    let settings = WorldSettings { idle_first, ..with_replicas(2) };
    let mut world = World::new(jobs(&[(0.0, 5.0), (0.0, 100.0)]), settings);
    world.set_replicas(10.0, 1);
    world.advance_to(1_000.0);
    assert!(world.is_done());
    world.finish(if idle_first { "idle-first" } else { "default" }).report
}

#[test]
fn the_default_order_removes_the_newest_pod_even_busy_while_idle_first_removes_the_idle_one() {
    let default = scale_down_with_one_idle_and_one_busy_pod(false);
    // Pod 1 (newest, busy) drains and hands B back at 40; idle pod 0 redoes B over 40–140.
    assert_eq!((default.handed_back, default.wasted_work_s, default.max_wait_s), (1, 40.0, 40.0));
    // Pod 0 exists 0–140, pod 1 0–40; the clock stopped at 1,000, so pod 0 keeps accruing until then.
    assert_eq!(default.replica_seconds, 1_000.0 + 40.0);

    let idle_first = scale_down_with_one_idle_and_one_busy_pod(true);
    // Idle pod 0 goes at 10; B finishes on pod 1 at 100; nothing is handed back.
    assert_eq!((idle_first.handed_back, idle_first.wasted_work_s, idle_first.max_wait_s), (0, 0.0, 0.0));
    assert_eq!(idle_first.replica_seconds, 10.0 + 1_000.0);
    assert_eq!(idle_first.busy_worker_seconds, 105.0);
}

#[test]
fn scale_down_removes_starting_pods_first_and_they_go_at_once() {
    let mut world = World::new(Vec::new(), with_replicas(1));
    world.set_replicas(0.0, 3);
    world.set_replicas(5.0, 2);
    let snapshot = world.snapshot();
    assert_eq!((snapshot.ready_pods, snapshot.starting_pods, snapshot.draining_pods), (1, 1, 0));
    world.advance_to(10.0);
    // Pod 0 and pod 1 exist 0–10, pod 2 (the newest, removed) 0–5.
    assert_eq!(world.finish("starting").report.replica_seconds, 25.0);
}

#[test]
fn scale_events_count_only_changes_and_max_replicas_the_highest_request() {
    let mut world = World::new(Vec::new(), with_replicas(1));
    world.set_replicas(0.0, 1);
    world.set_replicas(1.0, 2);
    world.set_replicas(2.0, 2);
    world.set_replicas(3.0, 1);
    assert_eq!(world.replicas(), 1);
    let report = world.finish("events").report;
    assert_eq!((report.scale_events, report.max_replicas), (2, 2));
}

#[test]
fn a_pod_with_several_slots_runs_that_many_jobs_at_once() {
    let settings = WorldSettings { concurrency: 2, ..with_replicas(1) };
    let mut world = World::new(jobs(&[(0.0, 10.0); 4]), settings);
    world.advance_to(20.0);
    let report = world.finish("two-slots").report;
    // Two jobs at 0 (wait 0), two at 10 (wait 10); one pod for 20 s, both slots always busy.
    assert_eq!((report.jobs, report.p50_wait_s, report.max_wait_s), (4, 0.0, 10.0));
    assert_eq!((report.replica_seconds, report.busy_worker_seconds), (20.0, 40.0));
    assert_eq!(report.utilization, 1.0);
}

#[test]
fn a_zero_start_delay_and_a_zero_grace_period_act_at_once() {
    let settings = WorldSettings { pod_start_delay_s: 0.0, termination_grace_s: 0.0, ..with_replicas(0) };
    let mut world = World::new(jobs(&[(0.0, 10.0)]), settings);
    world.set_replicas(0.0, 1);
    assert_eq!((world.snapshot().ready_pods, world.snapshot().in_flight), (1, 1));
    world.set_replicas(5.0, 0);
    let snapshot = world.snapshot();
    assert_eq!((snapshot.waiting, snapshot.in_flight, snapshot.draining_pods), (1, 0, 0));
    assert_eq!(world.finish("instant").report.wasted_work_s, 5.0);
}

#[test]
fn time_never_goes_back_and_jobs_arrive_on_time() {
    let mut world = World::new(jobs(&[(30.0, 1.0), (10.0, 1.0)]), with_replicas(0));
    assert_eq!(world.last_arrival_s(), 30.0);
    world.advance_to(20.0);
    world.advance_to(5.0);
    world.advance_to(f64::NAN);
    let snapshot = world.snapshot();
    assert_eq!((snapshot.now_s, snapshot.arrived, snapshot.waiting), (20.0, 1, 1));
    assert!(!world.is_done());
    let report = world.finish("stranded").report;
    assert_eq!((report.jobs, report.unfinished), (0, 2));
}

#[test]
fn advancing_to_infinity_runs_every_pending_event_and_stops_at_the_last() {
    let mut world = World::new(jobs(&[(3.0, 4.0)]), with_replicas(1));
    world.advance_to(f64::INFINITY);
    assert!(world.is_done());
    assert_eq!(world.snapshot().now_s, 7.0);
}

#[test]
fn settings_out_of_range_are_named_by_validate_and_replaced_by_defaults_in_the_model() {
    let valid = WorldSettings::default();
    assert_eq!(valid.validate(), Ok(()));
    let invalid = [
        (WorldSettings { pod_start_delay_s: -1.0, ..valid.clone() }, SettingsError::PodStartDelay(-1.0)),
        (WorldSettings { concurrency: 0, ..valid.clone() }, SettingsError::Concurrency),
        (
            WorldSettings { termination_grace_s: f64::INFINITY, ..valid.clone() },
            SettingsError::TerminationGrace(f64::INFINITY),
        ),
        (WorldSettings { sample_every_s: 0.0, ..valid.clone() }, SettingsError::SampleEvery(0.0)),
    ];
    for (settings, error) in invalid {
        assert_eq!(settings.validate(), Err(error));
    }
    let broken = WorldSettings { concurrency: 0, sample_every_s: 0.0, ..with_replicas(1) };
    let mut world = World::new(jobs(&[(0.0, 10.0)]), broken);
    world.advance_to(10.0);
    assert!(world.is_done());
    assert_eq!(world.finish("defaults").timeline.len(), 3);
}

#[test]
fn a_hundred_thousand_jobs_and_ten_thousand_scale_calls_complete() {
    // 10 jobs/s of 1–7 s (mean 4 s): ~40 busy workers. The scale changes almost every second, by one pod around a
    // level that drops from ~59 to ~43 every other minute, which removes ready pods, some of them busy.
    let trace: Vec<Job> =
        (0..100_000).map(|i| Job { arrival_s: f64::from(i) * 0.1, duration_s: 1.0 + f64::from(i % 7) }).collect();
    let total_work_s: f64 = trace.iter().map(|job| job.duration_s).sum();
    // A 3 s grace period is shorter than most jobs, so removing busy pods hands work back.
    let settings = WorldSettings { termination_grace_s: 3.0, ..with_replicas(40) };
    let mut world = World::new(trace, settings);
    for second in 0..10_000 {
        let level = if (second / 60) % 2 == 0 { 42 } else { 58 };
        world.set_replicas(f64::from(second), level + second % 3);
    }
    world.advance_to(f64::INFINITY);
    assert!(world.is_done());
    let report = world.finish("load").report;
    assert_eq!((report.jobs, report.unfinished), (100_000, 0));
    assert!(report.scale_events > 6_000, "{} scale events", report.scale_events);
    assert!(report.handed_back > 0, "the default order removes busy pods");
    let redone = total_work_s + report.wasted_work_s;
    assert!((report.busy_worker_seconds - redone).abs() < 1e-6 * redone);
}
