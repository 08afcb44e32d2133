//! The RabbitMQ source against the real broker: counts over AMQP and the management API, vhosts, several queues and
//! patterns, the oldest message's age, and typed failures.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeleteOptions};
use queue_scaler::source::rabbitmq::{Config, RabbitMq};
use queue_scaler::source::{Clients, ReadBacklog, Reading, SourceError};

use crate::support::eventually;
use crate::support::rabbitmq::{
    TestQueue, TestUser, TestVhost, amqp_url, amqp_url_as, management_url, management_url_as,
};

/// Settings for one queue at `url`, over AMQP.
fn one_queue(url: String, queue: &str) -> Config {
    Config {
        url,
        vhost: None,
        queue: Some(queue.to_owned()),
        queues: None,
        queue_regex: None,
        management_url: None,
        exclude_unacknowledged: false,
    }
}

fn source(queue: &str, management: bool) -> RabbitMq {
    RabbitMq::new(Config { management_url: management.then(management_url), ..one_queue(amqp_url(), queue) })
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
    Config { management_url: Some(management_url()), ..one_queue(amqp_url(), queue) }
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
    let reader = RabbitMq::new(one_queue("amqp://guest:guest@127.0.0.1:1/%2f".into(), "q"));
    let error = reader.read().await.expect_err("port 1 is closed");
    assert_eq!(error.kind(), "unreachable", "{error}");
}

#[tokio::test]
async fn a_wrong_password_is_denied_and_never_shown() {
    let password = "not-the-guest-password-1234";
    let reader = RabbitMq::new(one_queue(format!("amqp://guest:{password}@127.0.0.1:5672/%2f"), "q"));
    let error = reader.read().await.expect_err("wrong password");
    let text = format!("{error} {error:?}");
    assert!(!text.contains(password), "{text}");
    assert!(matches!(error, SourceError::Denied { .. } | SourceError::Unreachable { .. }), "{error:?}");

    let management = RabbitMq::new(Config {
        management_url: Some(format!("http://guest:{password}@127.0.0.1:15672")),
        ..one_queue(amqp_url(), "q")
    });
    let error = management.read().await.expect_err("wrong password");
    assert_eq!(error.kind(), "denied", "{error}");
    assert!(!format!("{error} {error:?}").contains(password));
}

const TIMEOUT: Duration = Duration::from_secs(5);

fn shared(clients: &Clients, url: String, queue: &str, management_url: Option<String>) -> RabbitMq {
    RabbitMq::shared(Config { management_url, ..one_queue(url, queue) }, TIMEOUT, clients)
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

/// The broker's AMQP URL naming no vhost, so that `vhost` says which.
fn url_without_vhost() -> String {
    let mut url = reqwest::Url::parse(&amqp_url()).expect("an AMQP URL");
    url.set_path("");
    url.to_string()
}

/// Waits for the management API's statistics to show `backlog`, and returns that reading.
async fn management_shows(reader: &RabbitMq, backlog: f64) -> Reading {
    eventually(Duration::from_secs(20), "management statistics catch up", || async {
        reader.read().await.ok().filter(|r| r.backlog == backlog)
    })
    .await
}

#[tokio::test]
async fn a_vhost_other_than_the_default_is_read_over_amqp_and_the_management_api() {
    let vhost = TestVhost::new("vhost").await;
    vhost.queue("jobs", 6).await;
    let in_vhost = Config { vhost: Some(vhost.name.clone()), ..one_queue(url_without_vhost(), "jobs") };
    assert_eq!(RabbitMq::new(in_vhost.clone()).read().await.expect("read over AMQP").backlog, 6.0);
    let management = RabbitMq::new(Config { management_url: Some(management_url()), ..in_vhost });
    management_shows(&management, 6.0).await;
    // The vhost the URL names still works without `vhost`.
    assert_eq!(RabbitMq::new(one_queue(vhost.url(), "jobs")).read().await.expect("read").backlog, 6.0);
    // The default vhost has no such queue: the setting is what was read.
    let in_default = one_queue(url_without_vhost(), "jobs");
    assert_eq!(RabbitMq::new(in_default).read().await.expect_err("not in /").kind(), "not_found");
}

#[tokio::test]
async fn several_queues_are_summed_and_each_is_reported() {
    let (a, b) = (TestQueue::new("sum-a").await, TestQueue::new("sum-b").await);
    a.publish(0, 3).await;
    b.publish(0, 4).await;
    let both = Config { queue: None, queues: Some(vec![a.name.clone(), b.name.clone()]), ..one_queue(amqp_url(), "") };
    let reading = RabbitMq::new(both.clone()).read().await.expect("read over AMQP");
    assert_eq!(reading.backlog, 7.0);
    assert_eq!(reading.queues, [(a.name.clone(), 3.0), (b.name.clone(), 4.0)]);

    let management = RabbitMq::new(Config { management_url: Some(management_url()), ..both.clone() });
    let reading = management_shows(&management, 7.0).await;
    assert_eq!(reading.queues, [(a.name.clone(), 3.0), (b.name.clone(), 4.0)]);

    // One queue of the list missing fails the read, naming that queue, both ways.
    let with_missing = Config { queues: Some(vec![a.name.clone(), "qs-test-no-such-queue".into()]), ..both };
    for reader in [
        RabbitMq::new(with_missing.clone()),
        RabbitMq::new(Config { management_url: Some(management_url()), ..with_missing }),
    ] {
        match reader.read().await {
            Err(SourceError::NotFound { what, .. }) => assert!(what.contains("qs-test-no-such-queue"), "{what}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_regex_takes_the_matching_queues_and_one_created_later_on_the_next_poll() {
    let vhost = TestVhost::new("regex").await;
    vhost.queue("jobs-a", 2).await;
    vhost.queue("jobs-b", 3).await;
    vhost.queue("old-jobs-c", 100).await;
    vhost.queue("jobsx", 50).await;
    let reader = RabbitMq::new(Config {
        vhost: Some(vhost.name.clone()),
        queue: None,
        queue_regex: Some("jobs-.*".into()),
        management_url: Some(management_url()),
        ..one_queue(url_without_vhost(), "")
    });
    let reading = management_shows(&reader, 5.0).await;
    assert_eq!(reading.queues, [("jobs-a".to_owned(), 2.0), ("jobs-b".to_owned(), 3.0)]);

    vhost.queue("jobs-d", 4).await;
    let reading = management_shows(&reader, 9.0).await;
    assert_eq!(reading.queues.iter().map(|(q, _)| q.as_str()).collect::<Vec<_>>(), ["jobs-a", "jobs-b", "jobs-d"]);

    let none = RabbitMq::new(Config {
        vhost: Some(vhost.name.clone()),
        queue: None,
        queue_regex: Some("nothing-.*".into()),
        management_url: Some(management_url()),
        ..one_queue(url_without_vhost(), "")
    });
    match none.read().await {
        Err(SourceError::NotFound { what, detail }) => {
            assert!(what.contains("queues matching `nothing-.*`"), "{what}");
            assert!(detail.contains("no queue whose whole name matches"), "{detail}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn the_oldest_message_age_comes_from_the_head_message_timestamp() {
    let queue = TestQueue::new("age").await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    for sent in [now - 90, now] {
        let properties = BasicProperties::default().with_timestamp(sent);
        queue
            .channel()
            .basic_publish("".into(), queue.name.as_str().into(), BasicPublishOptions::default(), b"job", properties)
            .await
            .expect("publish");
    }
    eventually(Duration::from_secs(5), "both messages are in the queue", || async {
        (queue.ready().await == 2).then_some(())
    })
    .await;
    let reader = RabbitMq::new(config_of(&queue.name));
    management_shows(&reader, 2.0).await;
    // The head message's timestamp comes with the queue's statistics, which may show the counts an emission earlier.
    let age =
        eventually(Duration::from_secs(20), "the management API to show the head message's timestamp", || async {
            reader.read().await.ok().and_then(|r| r.oldest_message_age)
        })
        .await;
    // Whole seconds both ways: the age is at least the 90 s it was published in the past, and the statistics lag
    // the queue by seconds, not minutes.
    assert!(age >= Duration::from_secs(90) && age < Duration::from_secs(150), "{age:?}");
    assert_eq!(source(&queue.name, false).read().await.expect("read over AMQP").oldest_message_age, None);

    let untimed = TestQueue::new("age-untimed").await;
    untimed.publish(0, 3).await;
    let reading = management_shows(&RabbitMq::new(config_of(&untimed.name)), 3.0).await;
    assert_eq!(reading.oldest_message_age, None, "no timestamp: unknown, not 0");
}
