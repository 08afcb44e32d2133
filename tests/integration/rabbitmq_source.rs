//! The RabbitMQ source against the real broker: counts over AMQP and the management API, and typed failures.

use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use queue_scaler::source::rabbitmq::{Config, RabbitMq};
use queue_scaler::source::{Clients, ReadBacklog, SourceError};

use crate::support::eventually;
use crate::support::rabbitmq::{
    TestQueue, TestUser, TestVhost, amqp_url, amqp_url_as, management_url, management_url_as,
};

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

const TIMEOUT: Duration = Duration::from_secs(5);

fn shared(clients: &Clients, url: String, queue: &str, management_url: Option<String>) -> RabbitMq {
    let config = Config { url, queue: queue.to_owned(), management_url, exclude_unacknowledged: false };
    RabbitMq::shared(config, TIMEOUT, clients)
}

#[tokio::test]
async fn targets_on_one_url_share_one_connection_and_another_url_gets_its_own() {
    let (one, other) = (TestVhost::new("shared").await, TestVhost::new("apart").await);
    for vhost in [&one, &other] {
        for queue in ["videos", "thumbnails", "audio"] {
            vhost.queue(queue, 3).await;
        }
    }
    let clients = Clients::new();
    let on_one: Vec<RabbitMq> =
        ["videos", "thumbnails", "audio"].iter().map(|q| shared(&clients, one.url(), q, None)).collect();
    let on_other = shared(&clients, other.url(), "videos", None);
    for _ in 0..5 {
        let readings = futures::future::join_all(on_one.iter().chain([&on_other]).map(|s| s.read())).await;
        for reading in readings {
            assert_eq!(reading.expect("read").backlog, 3.0);
        }
    }
    assert_eq!(clients.open(), 2, "one client per URL");
    let counted = eventually(Duration::from_secs(15), "the connections listed", || async {
        let counts = (one.connections().await, other.connections().await);
        (counts.0 > 0 && counts.1 > 0).then_some(counts)
    })
    .await;
    assert_eq!(counted, (1, 1), "three targets on one URL share one connection; the other URL has its own");
}

#[tokio::test]
async fn a_queue_the_broker_refuses_fails_only_its_own_read() {
    let vhost = TestVhost::new("refusals").await;
    vhost.queue("videos", 7).await;
    let user = TestUser::new("refused").await;
    let clients = Clients::new();

    // Over AMQP: one connection; the missing queue's failed declare closes its own channel, not its neighbour's.
    let good = shared(&clients, vhost.url(), "videos", None);
    let missing = shared(&clients, vhost.url(), "qs-no-such-queue", None);
    // A user the broker refuses, on the same broker: a connection of its own, and a failure of its own.
    let refused = shared(&clients, amqp_url_as(&user.name, &user.password, &vhost.name), "videos", None);
    for _ in 0..10 {
        let (good, missing, refused) = tokio::join!(good.read(), missing.read(), refused.read());
        assert_eq!(good.expect("the neighbour of a missing queue reads").backlog, 7.0);
        match missing {
            Err(SourceError::NotFound { what, .. }) => assert!(what.contains("qs-no-such-queue"), "{what}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        let refused = refused.expect_err("no permission on the vhost");
        assert_eq!(refused.kind(), "denied", "{refused}");
        assert!(!format!("{refused:?}").contains(&user.password), "{refused:?}");
    }
    let connections = eventually(Duration::from_secs(15), "the connection listed", || async {
        Some(vhost.connections().await).filter(|n| *n > 0)
    })
    .await;
    assert_eq!(connections, 1, "the refused user never got in; the others share one connection");

    // Through the management API: one list of the vhost per poll; a queue it does not hold fails alone, and a user
    // the API refuses fails on its own client.
    let good = shared(&clients, vhost.url(), "videos", Some(management_url()));
    let missing = shared(&clients, vhost.url(), "qs-no-such-queue", Some(management_url()));
    let refused = shared(&clients, vhost.url(), "videos", Some(management_url_as(&user.name, &user.password)));
    eventually(Duration::from_secs(20), "management statistics of the queue", || async {
        good.read().await.ok().filter(|r| r.backlog == 7.0)
    })
    .await;
    for _ in 0..5 {
        let (good, missing, refused) = tokio::join!(good.read(), missing.read(), refused.read());
        assert_eq!(good.expect("the neighbour of a missing queue reads").backlog, 7.0);
        assert_eq!(missing.expect_err("not in the list").kind(), "not_found");
        assert_eq!(refused.expect_err("not a management user").kind(), "denied");
    }
}
