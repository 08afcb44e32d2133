//! Quiet and resume, the hooks that stop intake at the broker, and the endpoint that takes them: token, status,
//! readiness.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::http::Request;

/// Counts the stop and resume hooks' calls.
fn hooks(drain: &Drain) -> (Arc<AtomicU32>, Arc<AtomicU32>) {
    let (stops, resumes) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (s, r) = (stops.clone(), resumes.clone());
    drain.on_drain(move || {
        s.fetch_add(1, Ordering::SeqCst);
        std::future::ready(())
    });
    drain.on_resume(move || {
        r.fetch_add(1, Ordering::SeqCst);
        std::future::ready(())
    });
    (stops, resumes)
}

/// Lets the drain's tasks run what is ready (the paused clock advances only when every task waits).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn quiet_stops_intake_and_resume_opens_it_with_the_hooks_in_order() {
    let drain = drain(25);
    let (stops, resumes) = hooks(&drain);
    let (job, _) = one_job(&drain).await;
    assert!(drain.quiet());
    assert!(drain.next_job(async { 8 }).await.is_none(), "intake stopped by quiet");
    settle().await;
    assert_eq!((stops.load(Ordering::SeqCst), resumes.load(Ordering::SeqCst)), (1, 0));
    assert!(drain.is_quiet() && !drain.is_stopping());
    // The job held keeps running and is acked while quiet.
    assert!(job.complete(|| async {}).await.is_some());
    let waiting = drain.clone();
    let resumed = tokio::spawn(async move { waiting.resumed().await });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!resumed.is_finished(), "resumed while still quiet");
    assert!(drain.resume());
    assert!(resumed.await.expect("task"), "resumed, not draining");
    settle().await;
    assert_eq!((stops.load(Ordering::SeqCst), resumes.load(Ordering::SeqCst)), (1, 1));
    assert!(drain.next_job(async { 9 }).await.is_some(), "intake open again");
}

#[tokio::test(start_paused = true)]
async fn a_drain_after_quiet_does_not_stop_intake_twice_and_ends_at_once_when_idle() {
    let drain = drain(25);
    let (stops, _) = hooks(&drain);
    assert!(drain.quiet());
    settle().await;
    let start = Instant::now();
    drain.stop();
    assert!(!drain.resumed().await, "a drain is not a resume");
    let summary = drain.wait().await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(stops.load(Ordering::SeqCst), 1);
    assert!(!drain.quiet() && !drain.resume(), "no quiet or resume once draining");
    assert_eq!(summary.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_drain_runs_the_stop_hooks_at_once() {
    let drain = drain(25);
    let (stops, _) = hooks(&drain);
    let (_job, _) = one_job(&drain).await;
    drain.stop();
    settle().await;
    assert_eq!(stops.load(Ordering::SeqCst), 1, "intake stopped at the broker while the job still runs");
}

fn ask(drain: &Drain, method: &str, path: &str, bearer: Option<&str>) -> (u16, String) {
    let response = exposition::handler(drain.shared.clone())(&Request { method, path, bearer }).expect("a route");
    (response.status, response.body)
}

#[tokio::test(start_paused = true)]
async fn quiet_and_resume_need_the_token_when_there_is_one() {
    let drain = Drain::builder().token("s3cret").signals(false).install().expect("install");
    assert_eq!(ask(&drain, "POST", "/quiet", None).0, 401);
    assert_eq!(ask(&drain, "POST", "/quiet", Some("s3crex")).0, 401);
    assert_eq!(ask(&drain, "POST", "/quiet", Some("s3cret!")).0, 401);
    assert!(!drain.is_quiet(), "a refused quiet changed nothing");
    assert_eq!(ask(&drain, "GET", "/status", None).0, 200, "status stays open");
    let quiet = ask(&drain, "POST", "/quiet", Some("s3cret"));
    assert_eq!(quiet, (200, r#"{"in_flight":0,"draining":false,"quiet":true}"#.to_owned()));
    assert_eq!(ask(&drain, "POST", "/resume", None).0, 401);
    assert!(drain.is_quiet());
    assert_eq!(ask(&drain, "POST", "/resume", Some("s3cret")).1, r#"{"in_flight":0,"draining":false,"quiet":false}"#);
    assert_eq!(ask(&drain, "GET", "/quiet", Some("s3cret")).0, 405);
    drain.stop();
    assert_eq!(ask(&drain, "POST", "/quiet", Some("s3cret")).0, 409);
}

#[tokio::test(start_paused = true)]
async fn without_a_token_quiet_is_open() {
    let drain = drain(25);
    assert_eq!(ask(&drain, "POST", "/quiet", None).0, 200);
    assert!(drain.is_quiet());
    assert!(exposition::metrics(&drain.shared).contains("\nqueue_scaler_drain_quiet 1\n"));
}

#[tokio::test(start_paused = true)]
async fn readyz_waits_for_the_subscription() {
    let drain = drain(25);
    assert_eq!(ask(&drain, "GET", "/readyz", None).0, 503);
    drain.ready();
    assert_eq!(ask(&drain, "GET", "/readyz", None), (200, "ready\n".to_owned()));
}
