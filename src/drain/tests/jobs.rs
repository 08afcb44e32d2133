//! Jobs at their edges: acks that start work when created, failed hand-backs, a panicking job, a runtime that ends
//! under a live job, handles watched from blocking threads, leases kept alive, poisoned locks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;

#[tokio::test(start_paused = true)]
async fn an_ack_that_starts_work_when_created_never_runs_after_a_hand_back() {
    let drain = drain(1);
    let (job, _) = one_job(&drain).await;
    drain.stop();
    job.handed_back().await;
    let acked = Arc::new(AtomicBool::new(false));
    let flag = acked.clone();
    // A spawned task starts when created: as a plain future it would have acked before `complete` could refuse.
    let ack = move || tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    assert!(job.complete(ack).await.is_none());
    tokio::task::yield_now().await;
    assert!(!acked.load(Ordering::SeqCst), "a handed-back job was acked");
}

#[tokio::test(start_paused = true)]
async fn a_failed_hand_back_is_counted_and_makes_the_exit_non_zero() {
    let drain = drain(1);
    let permit = drain.next_job(async { 7 }).await.expect("a permit");
    let (_job, _) = permit.start(|| async { Err::<(), _>("the broker refused the nack") });
    drain.stop();
    let summary = drain.wait().await;
    assert_eq!((summary.handed_back, summary.failed), (0, 1));
    assert_eq!(summary.exit_code(), EXIT_HAND_BACK_FAILED);
    assert!(summary.to_string().starts_with("drain: 0 finished, 0 handed back, 1 failed in 1000 ms"), "{summary}");
    let text = exposition::metrics(&drain.shared);
    assert!(text.contains("\nqueue_scaler_drain_hand_backs_failed_total 1\n"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn the_summary_counts_only_what_ended_after_the_drain_began() {
    let drain = drain(25);
    let (early, _) = one_job(&drain).await;
    early.hand_back().await;
    let (done_early, _) = one_job(&drain).await;
    assert!(done_early.complete(|| async {}).await.is_some());
    let (late, _) = one_job(&drain).await;
    drain.stop();
    late.hand_back().await;
    let summary = drain.wait().await;
    assert_eq!((summary.finished, summary.handed_back, summary.failed), (0, 1, 0));
    assert_eq!(summary.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stream_the_broker_ended_is_its_own_cause_and_exits_non_zero() {
    let drain = drain(25);
    drain.stream_ended();
    let summary = drain.wait().await;
    assert_eq!(summary.cause, Cause::StreamEnded);
    assert_eq!(summary.exit_code(), EXIT_STREAM_ENDED);
    assert!(summary.to_string().ends_with("(stream ended)"), "{summary}");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_job_is_handed_back_once() {
    let drain = drain(25);
    let (job, calls) = one_job(&drain).await;
    let crashed = tokio::spawn(async move {
        let _job = job;
        panic!("the transcoder crashed");
    })
    .await;
    assert!(crashed.expect_err("the task panicked").is_panic());
    let summary = drain.wait().await;
    assert_eq!((calls.load(Ordering::SeqCst), drain.in_flight()), (1, 0));
    // Handed back before the drain began: in the totals, not in the drain's window.
    assert_eq!((summary.handed_back, summary.failed), (0, 0));
    assert!(exposition::metrics(&drain.shared).contains("\nqueue_scaler_drain_jobs_handed_back_total 1\n"));
}

#[test]
fn a_job_alive_when_the_runtime_ends_counts_as_a_failed_hand_back() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (drain, calls) = runtime.block_on(async {
        let drain = drain(25);
        let (job, calls) = one_job(&drain).await;
        // The job lives in a task that never ends: the runtime drops it while shutting down.
        tokio::spawn(async move {
            let _job = job;
            std::future::pending::<()>().await;
        });
        (drain, calls)
    });
    drop(runtime);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no runtime was left to run the hand-back");
    let text = exposition::metrics(&drain.shared);
    assert!(text.contains("\nqueue_scaler_drain_hand_backs_failed_total 1\n"), "{text}");
    assert!(text.contains("\nqueue_scaler_drain_jobs_handed_back_total 0\n"), "{text}");
    assert!(text.contains("\nqueue_scaler_drain_jobs_finished_total 0\n"), "{text}");
}

#[tokio::test]
async fn a_blocking_thread_sees_its_job_handed_back() {
    let drain = Drain::builder().grace(Duration::from_millis(100)).signals(false).install().expect("install");
    let (job, _) = one_job(&drain).await;
    let handle = job.handle();
    assert!(!job.is_handed_back());
    // ffmpeg's stand-in: work in slices, look between them.
    let worker = tokio::task::spawn_blocking(move || {
        let mut slices = 0;
        while !handle.wait_handed_back(Duration::from_millis(20)) {
            slices += 1;
            assert!(slices < 500, "never saw the hand-back");
        }
        handle.is_handed_back()
    });
    drain.stop();
    let summary = drain.wait().await;
    assert!(worker.await.expect("thread"));
    assert!(job.is_handed_back());
    assert_eq!(summary.handed_back, 1);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_extends_the_lease_until_the_job_ends() {
    let drain = drain(25);
    let (job, _) = one_job(&drain).await;
    let extended = Arc::new(AtomicU32::new(0));
    let count = extended.clone();
    job.keep_alive(Duration::from_secs(10), move || {
        count.fetch_add(1, Ordering::SeqCst);
        std::future::ready(())
    });
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(extended.load(Ordering::SeqCst), 3);
    assert!(job.complete(|| async {}).await.is_some());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(extended.load(Ordering::SeqCst), 3, "extended after the job ended");
}

#[tokio::test(start_paused = true)]
async fn a_rebalance_callback_hands_back_through_the_handle() {
    let drain = drain(25);
    let (job, calls) = one_job(&drain).await;
    let handle = job.handle();
    // As from librdkafka's thread: no await, no runtime context needed.
    std::thread::spawn(move || handle.hand_back()).join().expect("thread");
    job.handed_back().await;
    assert!(job.complete(|| async {}).await.is_none());
    let summary = drain.wait().await;
    assert_eq!((calls.load(Ordering::SeqCst), drain.in_flight(), summary.finished), (1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_lock_poisoned_by_a_panic_does_not_take_the_drain_down() {
    let drain = drain(25);
    let shared = drain.shared.clone();
    let _ = std::thread::spawn(move || {
        let _held = shared.registry.lock();
        panic!("poison the registry");
    })
    .join();
    assert!(drain.shared.registry.is_poisoned());
    let (job, _) = one_job(&drain).await;
    assert!(job.complete(|| async {}).await.is_some());
    drain.stop();
    assert_eq!(drain.wait().await.exit_code(), 0);
}
