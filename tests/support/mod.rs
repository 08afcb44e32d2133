//! Shared test support: the fake Kubernetes API and helpers to start real peers.

pub mod agent;
pub mod kafka;
pub mod kube_api;
pub mod monitoring;
pub mod moto;
pub mod prometheus;
pub mod pubsub;
pub mod pubsub_proxy;
pub mod rabbitmq;
pub mod tcp_proxy;
pub mod workers;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or fails the test with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
