//! The RabbitMQ source against the real broker: counts over AMQP and the management API, and typed failures.

use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use queue_scaler::source::rabbitmq::{Config, RabbitMq};
use queue_scaler::source::{ReadBacklog, SourceError};

use crate::support::eventually;
use crate::support::rabbitmq::{TestQueue, amqp_url, management_url};

fn source(queue: &str, management: bool) -> RabbitMq {
    RabbitMq::new(Config {
        url: amqp_url(),
        queue: queue.to_owned(),
        management_url: management.then(management_url),
        exclude_unacknowledged: false,
    })
}

/// Takes `n` messages without acknowledging them: they become unacknowledged while the channel lives.
async fn hold_unacked(queue: &TestQueue, n: usize) {
    for _ in 0..n {
        let got = queue.channel().basic_get(queue.name.as_str().into(), BasicGetOptions { no_ack: false }).await;
        assert!(got.expect("basic.get").is_some(), "a message to take");
    }
}

#[tokio::test]
async fn amqp_counts_ready_messages_only() {
    let queue = TestQueue::new("amqp-ready").await;
    let reader = source(&queue.name, false);
    assert_eq!(reader.read().await.expect("read").backlog, 0.0);
    queue.publish(0, 25).await;
    hold_unacked(&queue, 5).await;
    let reading = reader.read().await.expect("read");
    assert_eq!(reading.backlog, 20.0);
    assert_eq!(reading.in_flight, None);
}

#[tokio::test]
async fn management_counts_ready_plus_unacknowledged_and_the_publish_rate() {
    let queue = TestQueue::new("mgmt").await;
    queue.publish(0, 30).await;
    hold_unacked(&queue, 4).await;
    let reader = source(&queue.name, true);
    // The management plugin refreshes queue statistics every few seconds.
    let reading = eventually(Duration::from_secs(20), "management statistics catch up", || async {
        reader.read().await.ok().filter(|r| r.backlog == 30.0 && r.in_flight == Some(4.0))
    })
    .await;
    assert!(reading.arrival_rate.is_some_and(|rate| rate >= 0.0), "{reading:?}");

    let ready_only = RabbitMq::new(Config { exclude_unacknowledged: true, ..config_of(&queue.name) });
    assert_eq!(ready_only.read().await.expect("read").backlog, 26.0);
}

#[tokio::test]
async fn a_queue_without_statistics_yet_is_a_failed_read_not_an_empty_queue() {
    // The management API lists a new queue at once but adds its message counts only at the next statistics
    // emission (every 5 s by default): until then the answer says nothing about the queue.
    let queue = TestQueue::new("mgmt-fresh").await;
    queue.publish(0, 5).await;
    match source(&queue.name, true).read().await {
        Err(SourceError::Protocol { detail, .. }) => {
            assert!(detail.contains("no messages_ready/messages_unacknowledged"), "{detail}");
        }
        // The emission can land between the declare and the read; then the counts must be the real ones.
        Ok(reading) => assert_eq!(reading.backlog, 5.0, "a reading with counts is the real one: {reading:?}"),
        Err(other) => panic!("expected a failed read for missing counts, got {other:?}"),
    }
}

fn config_of(queue: &str) -> Config {
    Config {
        url: amqp_url(),
        queue: queue.to_owned(),
        management_url: Some(management_url()),
        exclude_unacknowledged: false,
    }
}

#[tokio::test]
async fn a_missing_queue_is_not_found_by_name_and_the_reader_recovers() {
    let queue = TestQueue::new("vanishing").await;
    let reader = source(&queue.name, false);
    queue.publish(0, 3).await;
    assert_eq!(reader.read().await.expect("read").backlog, 3.0);
    queue.channel().queue_delete(queue.name.as_str().into(), QueueDeleteOptions::default()).await.expect("delete");
    match reader.read().await {
        Err(SourceError::NotFound { what, .. }) => assert!(what.contains(&queue.name), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let again = TestQueue::new("vanishing").await;
    let reader = source(&again.name, false);
    again.publish(0, 2).await;
    assert_eq!(reader.read().await.expect("read after a failure").backlog, 2.0);

    match source("qs-test-no-such-queue", true).read().await {
        Err(SourceError::NotFound { what, .. }) => assert!(what.contains("qs-test-no-such-queue"), "{what}"),
        other => panic!("expected NotFound from the management API, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_broker_is_reported_as_such() {
    let reader = RabbitMq::new(Config {
        url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        queue: "q".into(),
        management_url: None,
        exclude_unacknowledged: false,
    });
    let error = reader.read().await.expect_err("port 1 is closed");
    assert_eq!(error.kind(), "unreachable", "{error}");
}

#[tokio::test]
async fn a_wrong_password_is_denied_and_never_shown() {
    let password = "not-the-guest-password-1234";
    let reader = RabbitMq::new(Config {
        url: format!("amqp://guest:{password}@127.0.0.1:5672/%2f"),
        queue: "q".into(),
        management_url: None,
        exclude_unacknowledged: false,
    });
    let error = reader.read().await.expect_err("wrong password");
    let text = format!("{error} {error:?}");
    assert!(!text.contains(password), "{text}");
    assert!(matches!(error, SourceError::Denied { .. } | SourceError::Unreachable { .. }), "{error:?}");

    let management = RabbitMq::new(Config {
        url: amqp_url(),
        queue: "q".into(),
        management_url: Some(format!("http://guest:{password}@127.0.0.1:15672")),
        exclude_unacknowledged: false,
    });
    let error = management.read().await.expect_err("wrong password");
    assert_eq!(error.kind(), "denied", "{error}");
    assert!(!format!("{error} {error:?}").contains(password));
}
