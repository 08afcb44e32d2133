//! The SQS source against moto's server: the three counts, a missing queue, an unreachable endpoint, the read
//! latency, and the agent scaling a Deployment on the fake API from a queue's backlog.

use std::time::{Duration, Instant};

use queue_scaler::source::sqs::{Config, Sqs};
use queue_scaler::source::{ReadBacklog, SourceError};

use crate::support::agent::Agent;
use crate::support::kube_api::FakeKube;
use crate::support::moto::{self, CREDENTIALS, REGION, TestQueue};

fn config(queue_url: &str) -> Config {
    Config {
        queue_url: queue_url.to_owned(),
        region: Some(REGION.to_owned()),
        endpoint_url: Some(moto::endpoint()),
        include_in_flight: true,
        include_delayed: false,
    }
}

#[tokio::test]
async fn counts_waiting_in_flight_and_delayed_messages_as_configured() {
    let queue = TestQueue::new("counts").await;
    let reader = Sqs::new(config(&queue.url));
    let empty = reader.read().await.expect("read an empty queue");
    assert_eq!((empty.backlog, empty.in_flight), (0.0, Some(0.0)));

    queue.send(12, 0).await;
    queue.receive(5).await;
    queue.send(3, 600).await;

    let reading = reader.read().await.expect("read");
    assert_eq!(reading.backlog, 12.0, "7 waiting + 5 in flight; delayed ones not counted by default");
    assert_eq!(reading.in_flight, Some(5.0));
    // SQS publishes ApproximateAgeOfOldestMessage only to CloudWatch, not as a queue attribute: no age is claimed.
    assert_eq!(reading.oldest_message_age, None);
    let waiting_only = Sqs::new(Config { include_in_flight: false, ..config(&queue.url) });
    assert_eq!(waiting_only.read().await.expect("read").backlog, 7.0);
    let with_delayed = Sqs::new(Config { include_delayed: true, ..config(&queue.url) });
    assert_eq!(with_delayed.read().await.expect("read").backlog, 15.0);
}

#[tokio::test]
async fn a_missing_queue_is_not_found_by_its_url_and_leaks_no_credential() {
    let queue = TestQueue::new("vanishing").await;
    let reader = Sqs::new(config(&queue.url));
    queue.send(2, 0).await;
    assert_eq!(reader.read().await.expect("read").backlog, 2.0);
    queue.delete().await;
    let error = reader.read().await.expect_err("the queue is gone");
    match &error {
        SourceError::NotFound { what, .. } => assert!(what.contains(&queue.url), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let text = format!("{error} {error:?}");
    for (_, value) in CREDENTIALS {
        assert!(!text.contains(value), "{text}");
    }

    let never = format!("{}/123456789012/qs-test-never-created", moto::endpoint());
    let error = Sqs::new(config(&never)).read().await.expect_err("never created");
    assert_eq!(error.kind(), "not_found", "{error}");
    assert!(error.to_string().contains("qs-test-never-created"), "{error}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_reported_as_such() {
    moto::use_dummy_credentials();
    let reader = Sqs::new(Config {
        endpoint_url: Some("http://127.0.0.1:1".into()),
        ..config("http://127.0.0.1:1/123456789012/q")
    });
    // Within an agent's read timeout: the SDK's own retries, spaced by its backoff, would outlast it.
    let read = tokio::time::timeout(Duration::from_secs(1), reader.read()).await;
    let error = read.expect("an answer at once, not after retries").expect_err("port 1 is closed");
    assert_eq!(error.kind(), "unreachable", "{error}");
    assert!(error.to_string().contains("http://127.0.0.1:1"), "{error}");
}

#[tokio::test]
async fn read_latency_median_of_fifty_reads() {
    let queue = TestQueue::new("latency").await;
    queue.send(4, 0).await;
    let reader = Sqs::new(config(&queue.url));
    reader.read().await.expect("first read builds the client");
    let mut took = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        assert_eq!(reader.read().await.expect("read").backlog, 4.0);
        took.push(started.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    println!("sqs read latency against moto: median {median:?}, max {:?}", took[took.len() - 1]);
    assert!(median < Duration::from_millis(250), "a read reuses its client: median {median:?}");
}

#[tokio::test]
async fn the_agent_scales_a_deployment_from_a_queue_backlog() {
    let queue = TestQueue::new("e2e").await;
    queue.send(30, 0).await;
    queue.receive(4).await;
    let kube = FakeKube::start().await;
    kube.create_deployment("video", "worker", 1, &[("app", "worker")]);
    let body = format!(
        "pollInterval: 1s\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 10\n    sources:\n      - type: sqs\n        queueUrl: {}\n        region: {REGION}\n        endpointUrl: {}\n        backlogPerWorker: 10\n",
        queue.url,
        moto::endpoint()
    );
    let agent = Agent::start_with_env(&kube, "video", &body, &[], &CREDENTIALS).await;
    kube.wait_until_replicas("video", "worker", 3, Duration::from_secs(20))
        .await
        .expect("30 messages, 4 of them in flight, at 10 per worker: 3 replicas");
    assert_eq!(kube.scale_writes("video", "worker").iter().map(|(_, n)| *n).collect::<Vec<_>>(), [3]);
    let name = queue.url.rsplit('/').next().expect("a queue name");
    let backlog = format!("queue_scaler_backlog{{deployment=\"worker\",source=\"sqs/{name}\"}}");
    assert_eq!(agent.metric(&backlog).await, Some(30.0), "named after the queue, in-flight messages counted");
    agent.stop().await;
}
