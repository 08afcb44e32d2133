//! The drain under tokio's paused clock (and, where a thread or a runtime's end is the point, under real time):
//! the state machine, jobs and their handles, quiet and the endpoint, setup.

mod jobs;
mod lifecycle;
mod quiet;
mod setup;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;

fn drain(grace_secs: u64) -> Drain {
    Drain::builder().grace(Duration::from_secs(grace_secs)).signals(false).install().expect("install")
}

/// A hand-back that counts its calls.
fn counter() -> (Arc<AtomicU32>, impl FnOnce() -> std::future::Ready<()> + Send + 'static) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    (calls, move || {
        c.fetch_add(1, Ordering::SeqCst);
        std::future::ready(())
    })
}

async fn one_job(drain: &Drain) -> (Job, Arc<AtomicU32>) {
    let permit = drain.next_job(async { 7 }).await.expect("a permit");
    let (calls, hand_back) = counter();
    let (job, message) = permit.start(hand_back);
    assert_eq!(message, 7);
    (job, calls)
}
