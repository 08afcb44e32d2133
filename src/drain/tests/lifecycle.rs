//! The state machine: grace, deadline sweep, second signal, drop, slots, exposition.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;

#[tokio::test(start_paused = true)]
async fn idle_drain_ends_at_once() {
    let drain = drain(25);
    let start = Instant::now();
    drain.stop();
    let summary = drain.wait().await;
    assert_eq!((summary.finished, summary.handed_back, summary.forced), (0, 0, false));
    assert_eq!(summary.cause, Cause::Requested);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn intake_stops_at_once_and_the_receive_is_dropped() {
    let drain = drain(25);
    let (_tx, mut rx) = mpsc::channel::<u32>(1);
    let stopper = drain.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stopper.stop();
    });
    assert!(drain.next_job(rx.recv()).await.is_none());
    assert!(drain.is_stopping());
    assert!(drain.next_job(async { 1 }).await.is_none(), "no job after the drain began");
}

#[tokio::test(start_paused = true)]
async fn a_job_inside_the_grace_finishes_and_is_acked() {
    let drain = drain(25);
    let (job, calls) = one_job(&drain).await;
    let start = Instant::now();
    drain.stop();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(job.complete(|| async { "acked" }).await, Some("acked"));
    });
    let summary = drain.wait().await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!((summary.finished, summary.handed_back), (1, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(drain.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_job_past_the_grace_is_handed_back_and_cannot_be_acked() {
    let drain = drain(25);
    let (job, calls) = one_job(&drain).await;
    let start = Instant::now();
    drain.stop();
    let worker = tokio::spawn(async move {
        job.handed_back().await;
        let at = Instant::now();
        // Acking now would race the nack: complete must refuse.
        (at, job.complete(|| async { unreachable!("acked a handed-back job") }).await)
    });
    let summary = drain.wait().await;
    assert_eq!(start.elapsed(), Duration::from_secs(25));
    assert_eq!((summary.finished, summary.handed_back), (0, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let (at, acked) = worker.await.expect("worker");
    assert_eq!((at - start, acked), (Duration::from_secs(25), None::<()>));
}

#[tokio::test(start_paused = true)]
async fn a_second_stop_hands_back_now() {
    let drain = drain(25);
    let (_job, calls) = one_job(&drain).await;
    let start = Instant::now();
    drain.stop();
    let impatient = drain.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        impatient.stop_now();
    });
    let summary = drain.wait().await;
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert!(summary.forced);
    assert_eq!((summary.handed_back, calls.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_job_hands_it_back_once() {
    let drain = drain(25);
    let (job, calls) = one_job(&drain).await;
    drop(job);
    let summary = drain.wait().await;
    assert_eq!((summary.handed_back, calls.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_job_started_after_the_deadline_goes_straight_back() {
    let drain = drain(1);
    let permit = drain.next_job(async { 7 }).await.expect("a permit");
    drain.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (calls, hand_back) = counter();
    let (job, _) = permit.start(hand_back);
    job.handed_back().await;
    assert_eq!(job.complete(|| async {}).await, None);
    let summary = drain.wait().await;
    assert_eq!((summary.handed_back, calls.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn hand_back_then_drop_calls_the_callback_once() {
    let drain = drain(25);
    let (job, calls) = one_job(&drain).await;
    job.hand_back().await;
    assert_eq!((calls.load(Ordering::SeqCst), drain.in_flight()), (1, 0));
    let summary = drain.wait().await;
    // Before the drain: in the total, not in the drain's window.
    assert_eq!((summary.handed_back, drain.shared.counters.handed_back()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn the_drain_waits_for_an_ack_under_way() {
    let drain = drain(1);
    let (job, calls) = one_job(&drain).await;
    let start = Instant::now();
    drain.stop();
    tokio::spawn(job.complete(|| tokio::time::sleep(Duration::from_secs(3))));
    let summary = drain.wait().await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!((summary.finished, summary.handed_back, calls.load(Ordering::SeqCst)), (1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn slots_bound_the_jobs_in_flight() {
    let drain = Drain::builder().max_in_flight(1).signals(false).install().expect("install");
    let (first, _) = one_job(&drain).await;
    let waiting = drain.clone();
    let second = tokio::spawn(async move { waiting.next_job(async { 8 }).await.map(|p| p.start(|| async {}).1) });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!second.is_finished(), "a second job while the only slot is taken");
    assert_eq!(first.complete(|| async {}).await, Some(()));
    assert_eq!(second.await.expect("task"), Some(8));
}

#[tokio::test(start_paused = true)]
async fn status_and_metrics_follow_the_counters() {
    let drain = drain(25);
    let (job, _) = one_job(&drain).await;
    assert_eq!(exposition::status(&drain.shared), r#"{"in_flight":1,"draining":false,"quiet":false}"#);
    drain.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = exposition::metrics(&drain.shared);
    assert!(text.contains("\nqueue_scaler_drain_jobs_in_flight 1\n"), "{text}");
    assert!(text.contains("\nqueue_scaler_drain_draining 1\n"), "{text}");
    assert!(text.contains("\nqueue_scaler_drain_duration_seconds 1.5\n"), "{text}");
    assert_eq!(job.complete(|| async {}).await, Some(()));
    let summary = drain.wait().await;
    assert_eq!(summary.to_string(), "drain: 1 finished, 0 handed back, 0 failed in 1500 ms (requested)");
    let text = exposition::metrics(&drain.shared);
    assert!(text.contains("\nqueue_scaler_drain_jobs_finished_while_draining_total 1\n"), "{text}");
    assert_eq!(exposition::status(&drain.shared), r#"{"in_flight":0,"draining":true,"quiet":false}"#);
}

// Real signals: nextest runs each test in a process of its own, and the handler is installed before the raise. The
// long flush budget keeps the watchdog from ending a test process that runs other tests after this one.
#[tokio::test]
async fn sigterm_begins_the_drain_and_a_second_signal_forces_it() {
    let drain = Drain::builder()
        .grace(Duration::from_secs(60))
        .flush_budget(Duration::from_secs(3600))
        .install()
        .expect("install");
    let (_job, calls) = one_job(&drain).await;
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).expect("raise");
    tokio::time::timeout(Duration::from_secs(5), drain.stopping()).await.expect("the drain began");
    signal_hook::low_level::raise(signal_hook::consts::SIGINT).expect("raise");
    let summary = tokio::time::timeout(Duration::from_secs(5), drain.wait()).await.expect("cut short");
    assert_eq!((summary.cause, summary.forced, calls.load(Ordering::SeqCst)), (Cause::Signal("SIGTERM"), true, 1));
}
