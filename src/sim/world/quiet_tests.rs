//! Hand-checked scenarios for what the model added for quiet scale-down and measured wait: quiet pods, interrupted
//! jobs, the age of the oldest waiting job, and consumer stalls. Every expected number is derived in a comment.

use super::*;

fn jobs(list: &[(f64, f64)]) -> Vec<Job> {
    list.iter().map(|&(arrival_s, duration_s)| Job { arrival_s, duration_s }).collect()
}

fn with_replicas(initial_replicas: u32) -> WorldSettings {
    WorldSettings { initial_replicas, ..WorldSettings::default() }
}

#[test]
fn a_quiet_pod_stays_a_replica_finishes_its_job_takes_no_new_one_and_works_again_when_resumed() {
    // Two pods; A (100 s) goes to pod 0, B (10 s) to pod 1. C arrives at 20, after B is done.
    let mut world = World::new(jobs(&[(0.0, 100.0), (0.0, 10.0), (20.0, 10.0)]), with_replicas(2));
    // Quieting one pod at 5 picks the one with fewer jobs and, among equals, the youngest: pod 1.
    assert_eq!(world.quiet(5.0, 1), 1);
    assert_eq!(world.quiet_load(), (1, 1));
    let quiet = world.snapshot();
    assert_eq!((quiet.quiet_pods, quiet.ready_pods, world.replicas()), (1, 1, 2));
    // B ends at 10 on the quiet pod; C arrives at 20 and waits: pod 0 is busy, pod 1 quiet.
    world.advance_to(20.0);
    assert_eq!(world.quiet_load(), (0, 0));
    assert_eq!((world.snapshot().waiting, world.snapshot().completed), (1, 1));
    // Resumed at 30, pod 1 takes C at once (wait 10) and ends it at 40.
    assert_eq!(world.resume_quiet(30.0), 1);
    assert_eq!((world.snapshot().waiting, world.snapshot().quiet_pods), (0, 0));
    world.advance_to(100.0);
    assert!(world.is_done());
    let report = world.finish("quiet").report;
    assert_eq!((report.max_wait_s, report.interrupted_jobs, report.handed_back), (10.0, 0, 0));
    assert_eq!((report.quieted_pods, report.resumed_pods, report.quiet_timeouts), (1, 1, 0));
}

#[test]
fn lowering_the_count_removes_quiet_pods_first_even_before_idle_ones() {
    // Three pods; A (50 s) on pod 0, B (50 s) on pod 1, pod 2 idle. Quiet picks the idle pod 2 and then pod 1.
    let mut world = World::new(jobs(&[(0.0, 50.0), (0.0, 50.0)]), with_replicas(3));
    assert_eq!(world.quiet(1.0, 2), 2);
    assert_eq!(world.quiet_load(), (1, 1));
    // Lowered at 50, when B is done: the two quiet pods go, busy pod 0 stays and nothing is cut.
    world.set_replicas(50.0, 1);
    let after = world.snapshot();
    assert_eq!((after.quiet_pods, after.ready_pods, after.draining_pods, after.in_flight), (0, 1, 0, 0));
    world.advance_to(60.0);
    let report = world.finish("quiet-first").report;
    assert_eq!((report.interrupted_jobs, report.handed_back), (0, 0));
    // Pods 0 and 1 exist 0–60 and 0–50, pod 2 0–50.
    assert_eq!(report.replica_seconds, 60.0 + 50.0 + 50.0);
}

#[test]
fn a_resumed_pod_never_takes_more_jobs_than_it_has_slots() {
    // One pod with two slots; quiet and resumed at once twice, its stale free slots must not double up.
    let settings = WorldSettings { concurrency: 2, ..with_replicas(1) };
    let mut world = World::new(jobs(&[(10.0, 100.0); 5]), settings);
    for _ in 0..2 {
        world.quiet(0.0, 1);
        world.resume_quiet(0.0);
    }
    world.advance_to(10.0);
    assert_eq!((world.snapshot().in_flight, world.snapshot().waiting), (2, 3));
}

#[test]
fn a_job_cut_short_twice_is_one_interrupted_job_and_two_hand_backs() {
    // A 100 s job on the only pod; the pod is removed at 0 and at 70 and hands the job back each time.
    let settings = WorldSettings { pod_start_delay_s: 0.0, ..with_replicas(1) };
    let mut world = World::new(jobs(&[(0.0, 100.0)]), settings);
    world.set_replicas(0.0, 0);
    world.set_replicas(40.0, 1);
    world.set_replicas(70.0, 0);
    world.set_replicas(100.0, 1);
    world.advance_to(f64::INFINITY);
    let report = world.finish("cut-twice").report;
    assert_eq!((report.handed_back, report.interrupted_jobs), (2, 1));
}

#[test]
fn the_queue_tells_the_age_of_its_oldest_waiting_job_unless_it_cannot() {
    let trace = jobs(&[(0.0, 100.0), (10.0, 5.0), (20.0, 5.0)]);
    let mut world = World::new(trace.clone(), with_replicas(1));
    assert_eq!(world.snapshot().oldest_wait_s, None);
    // At 30 the pod still works on the first job; the job of 10 has waited 20 s.
    world.advance_to(30.0);
    assert_eq!(world.snapshot().oldest_wait_s, Some(20.0));
    // Removed at 30, the pod hands the first job back at 60: now it is the oldest waiting, 60 s after its arrival.
    world.set_replicas(30.0, 0);
    world.advance_to(60.0);
    assert_eq!(world.snapshot().oldest_wait_s, Some(60.0));

    let blind = WorldSettings { reports_oldest_age: false, ..with_replicas(1) };
    let mut world = World::new(trace, blind);
    world.advance_to(30.0);
    assert_eq!((world.snapshot().oldest_wait_s, world.snapshot().waiting), (None, 2));
}

#[test]
fn during_a_stall_no_job_progresses_and_afterwards_work_goes_on() {
    // A 20 s job starts at 0; the consumer is stuck over [10, 110): the job ends at 120. The second job waits.
    let stalls = vec![Stall { from_s: 10.0, until_s: 110.0 }];
    let mut world = World::new(jobs(&[(0.0, 20.0), (50.0, 5.0)]), WorldSettings { stalls, ..with_replicas(1) });
    world.advance_to(119.0);
    assert_eq!((world.snapshot().completed, world.snapshot().waiting), (0, 1));
    world.advance_to(125.0);
    assert_eq!(world.snapshot().completed, 2);
    let report = world.finish("stalled").report;
    // The second job starts at 120 after waiting 70 s.
    assert_eq!(report.max_wait_s, 70.0);
}

#[test]
fn a_stall_that_cannot_happen_is_named_by_validate() {
    let backwards = WorldSettings { stalls: vec![Stall { from_s: 10.0, until_s: 5.0 }], ..WorldSettings::default() };
    assert_eq!(backwards.validate(), Err(SettingsError::Stall(10.0, 5.0)));
}
