//! The Kafka source against librdkafka's mock cluster (the real protocol over TCP): exact lag and caps from a known
//! committed state, the reset policies, topic-less groups, a thousand partitions, the typed errors, credentials kept
//! out of them, and the agent scaling a Deployment on the fake API from a group's lag.

use std::time::{Duration, Instant};

use queue_scaler::source::kafka::{Config, Kafka, OffsetResetPolicy, Sasl, SaslMechanism, Tls};
use queue_scaler::source::{Clients, ReadBacklog, Reading, SourceError};

use crate::support::agent::Agent;
use crate::support::kafka::TestCluster;
use crate::support::kube_api::FakeKube;

const GROUP: &str = "transcoders";
const TIMEOUT: Duration = Duration::from_secs(5);

fn config(brokers: &str, topic: Option<&str>) -> Config {
    Config { topic: topic.map(str::to_owned), ..Config::new(brokers, GROUP) }
}

async fn read(config: Config) -> Result<Reading, SourceError> {
    Kafka::new(config, TIMEOUT).read().await
}

/// Sixteen partitions: partition p holds 10 + p messages; the group committed p for p < 12 (partition 0 past the
/// end, as after a topic was recreated), and never committed 12..15.
fn sixteen_partitions(cluster: &TestCluster) {
    cluster.topic("videos", 16);
    cluster.produce("videos", 16, |p| 10 + p as usize);
    cluster.commit(GROUP, "videos", (0..12).map(|p| (p, if p == 0 { 1_000 } else { i64::from(p) })));
}

/// Lag of the committed partitions: (10 + p) - p = 10 each for p in 1..12; partition 0 clamps to 0.
const COMMITTED_LAG: f64 = 110.0;
/// Messages in the uncommitted partitions 12..15, all of them under `earliest`.
const UNCOMMITTED_MESSAGES: f64 = (22 + 23 + 24 + 25) as f64;

#[tokio::test]
async fn sixteen_partitions_give_the_exact_lag_and_a_cap_at_the_partition_count() {
    let cluster = TestCluster::new();
    sixteen_partitions(&cluster);
    let reading = read(config(&cluster.brokers(), Some("videos"))).await.expect("read");
    assert_eq!(reading.backlog, COMMITTED_LAG, "end minus committed, clamped, summed; uncommitted count 0");
    assert_eq!(reading.replica_cap, Some(16));
    assert_eq!((reading.in_flight, reading.arrival_rate), (None, None));
}

#[tokio::test]
async fn uncommitted_partitions_follow_the_offset_reset_policy() {
    let cluster = TestCluster::new();
    sixteen_partitions(&cluster);
    let latest = read(config(&cluster.brokers(), Some("videos"))).await.expect("read");
    assert_eq!(latest.backlog, COMMITTED_LAG);
    let earliest =
        Config { offset_reset_policy: OffsetResetPolicy::Earliest, ..config(&cluster.brokers(), Some("videos")) };
    let earliest = read(earliest).await.expect("read");
    assert_eq!(earliest.backlog, COMMITTED_LAG + UNCOMMITTED_MESSAGES, "from the low watermark, 0 here");

    cluster.topic("fresh", 4);
    cluster.produce("fresh", 4, |_| 5);
    let new_group = |policy| Config { offset_reset_policy: policy, ..config(&cluster.brokers(), Some("fresh")) };
    assert_eq!(
        read(new_group(OffsetResetPolicy::Latest)).await.expect("read").backlog,
        0.0,
        "a group that never committed"
    );
    assert_eq!(read(new_group(OffsetResetPolicy::Earliest)).await.expect("read").backlog, 20.0);
}

#[tokio::test]
async fn idle_consumers_and_partitions_with_lag_move_the_cap() {
    let cluster = TestCluster::new();
    sixteen_partitions(&cluster);
    let base = || config(&cluster.brokers(), Some("videos"));
    let idle = read(Config { allow_idle_consumers: true, ..base() }).await.expect("read");
    assert_eq!((idle.backlog, idle.replica_cap), (COMMITTED_LAG, None));
    let with_lag = read(Config { limit_to_partitions_with_lag: true, ..base() }).await.expect("read");
    assert_eq!((with_lag.backlog, with_lag.replica_cap), (COMMITTED_LAG, Some(11)), "partitions 1..=11 have lag");
    let earliest =
        Config { limit_to_partitions_with_lag: true, offset_reset_policy: OffsetResetPolicy::Earliest, ..base() };
    assert_eq!(read(earliest).await.expect("read").replica_cap, Some(15), "uncommitted ones count under earliest");

    cluster.commit(GROUP, "videos", (0..16).map(|p| (p, 10 + i64::from(p))));
    let caught_up = read(Config { limit_to_partitions_with_lag: true, ..base() }).await.expect("read");
    assert_eq!((caught_up.backlog, caught_up.replica_cap), (0.0, Some(0)));
}

#[tokio::test]
async fn without_a_topic_every_topic_the_group_committed_to_is_measured() {
    let cluster = TestCluster::new();
    for (topic, partitions) in [("uploads", 4), ("thumbnails", 2), ("someone-elses", 3)] {
        cluster.topic(topic, partitions);
        cluster.produce(topic, partitions, |_| 8);
    }
    cluster.commit(GROUP, "uploads", [(0, 3), (1, 8)]);
    cluster.commit(GROUP, "thumbnails", [(1, 6)]);
    cluster.commit("another-group", "someone-elses", [(0, 0)]);
    let reading = read(config(&cluster.brokers(), None)).await.expect("read");
    assert_eq!(reading.backlog, 7.0, "uploads: 5 + 0, thumbnails: 2; uncommitted partitions count 0");
    assert_eq!(reading.replica_cap, Some(6), "the partitions of uploads and thumbnails, not of someone-elses");

    let earliest = Config { offset_reset_policy: OffsetResetPolicy::Earliest, ..config(&cluster.brokers(), None) };
    assert_eq!(read(earliest).await.expect("read").backlog, 7.0 + 2.0 * 8.0 + 8.0, "uncommitted ones of those topics");

    let stranger = Config { group: "never-committed".into(), ..config(&cluster.brokers(), None) };
    let nothing = read(stranger).await.expect("read");
    assert_eq!((nothing.backlog, nothing.replica_cap), (0.0, Some(0)));
}

#[tokio::test]
async fn a_thousand_partitions_read_in_one_batch_within_the_goal() {
    let cluster = TestCluster::new();
    cluster.topic("wide", 1_000);
    cluster.produce("wide", 1_000, |p| 1 + (p % 3) as usize);
    cluster.commit(GROUP, "wide", (0..1_000).map(|p| (p, 1)));
    let reader = Kafka::new(config(&cluster.brokers(), Some("wide")), TIMEOUT);
    let expected: f64 = (0..1_000).map(|p| (p % 3) as f64).sum();
    let first = reader.read().await.expect("first read creates the client");
    assert_eq!((first.backlog, first.replica_cap), (expected, Some(1_000)));
    let mut took = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(reader.read().await.expect("read").backlog, expected);
        took.push(started.elapsed());
    }
    let median = median_of(took);
    println!("kafka lag read, 1,000 partitions on the mock cluster: median {median:?}");
    assert!(median < Duration::from_millis(250), "one batch, one reused client: median {median:?}");

    // Per partition, 2 ms per round trip would cost 2 s; the batch pays a handful of round trips.
    cluster.set_round_trip(Duration::from_millis(2));
    let mut took = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(reader.read().await.expect("read").backlog, expected);
        took.push(started.elapsed());
    }
    let median = median_of(took);
    println!("kafka lag read, 1,000 partitions at 2 ms round trip: median {median:?}");
    assert!(median < Duration::from_millis(250), "no round trip per partition: median {median:?}");
}

fn median_of(mut took: Vec<Duration>) -> Duration {
    took.sort();
    took[took.len() / 2]
}

#[tokio::test]
async fn read_latency_median_of_fifty_reads_of_sixteen_partitions() {
    let cluster = TestCluster::new();
    sixteen_partitions(&cluster);
    let reader = Kafka::new(config(&cluster.brokers(), Some("videos")), TIMEOUT);
    reader.read().await.expect("first read creates the client");
    let mut took = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        assert_eq!(reader.read().await.expect("read").backlog, COMMITTED_LAG);
        took.push(started.elapsed());
    }
    let median = median_of(took);
    println!("kafka lag read, 16 partitions on the mock cluster: median {median:?}");
    assert!(median < Duration::from_millis(100), "a read reuses its client: median {median:?}");
}

#[tokio::test]
async fn an_unknown_topic_is_not_found_by_name() {
    let cluster = TestCluster::new();
    cluster.topic("videos", 2);
    let error = read(config(&cluster.brokers(), Some("no-such-topic"))).await.expect_err("no such topic");
    match &error {
        SourceError::NotFound { what, .. } => assert!(what.contains("no-such-topic"), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_brokers_give_a_typed_error_within_the_timeout() {
    let timeout = Duration::from_secs(2);
    let reader = Kafka::new(config("127.0.0.1:1", Some("videos")), timeout);
    for attempt in 0..2 {
        let started = Instant::now();
        let error = reader.read().await.expect_err("port 1 is closed");
        let took = started.elapsed();
        println!("attempt {attempt} failed after {took:?}: {error}");
        assert_eq!(error.kind(), "unreachable", "attempt {attempt}: {error}");
        assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
        assert!(took <= timeout, "attempt {attempt} took {took:?}, more than the read timeout");
    }
    let started = Instant::now();
    drop(reader);
    assert!(started.elapsed() < Duration::from_secs(2), "closing the client does not hang: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_planted_sasl_password_never_appears_in_errors() {
    const PLANTED: &str = "pl4nted-Pa55word";
    let with_secrets = |brokers: &str| Config {
        sasl: Some(Sasl { mechanism: SaslMechanism::ScramSha512, username: "app".into(), password: PLANTED.into() }),
        properties: [("ssl.key.password".to_owned(), PLANTED.to_owned())].into(),
        ..config(brokers, Some("videos"))
    };
    let unreachable = Kafka::new(with_secrets("127.0.0.1:1"), Duration::from_secs(1)).read().await;
    let cluster = TestCluster::new();
    let against_mock = Kafka::new(with_secrets(&cluster.brokers()), Duration::from_secs(2)).read().await;
    // librdkafka names the file it cannot load when the client is created.
    let bad_file = Config {
        tls: Some(Tls {
            enabled: true,
            ca_file: None,
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some(format!("/nonexistent/{PLANTED}.pem")),
            key_password: None,
        }),
        ..with_secrets(&cluster.brokers())
    };
    let bad_file = Kafka::new(bad_file, Duration::from_secs(1)).read().await;
    assert!(matches!(&bad_file, Err(SourceError::Unreachable { detail, .. }) if detail.contains("cannot create")));
    for result in [unreachable, against_mock, bad_file] {
        let error = result.expect_err("SCRAM against a plaintext mock, a closed port or a missing file fails");
        let text = format!("{error} {error:?}");
        assert!(!text.contains(PLANTED), "{text}");
    }
}

#[tokio::test]
async fn the_agent_scales_a_deployment_from_the_group_lag_capped_at_the_partitions() {
    let cluster = TestCluster::new();
    cluster.topic("videos", 4);
    cluster.produce("videos", 4, |_| 300);
    cluster.commit(GROUP, "videos", (0..4).map(|p| (p, 50)));
    let kube = FakeKube::start().await;
    kube.create_deployment("video", "worker", 1, &[("app", "worker")]);
    let body = format!(
        "pollInterval: 1s\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 10\n    sources:\n      - type: kafka\n        brokers: {}\n        topic: videos\n        group: {GROUP}\n        backlogPerWorker: 50\n",
        cluster.brokers()
    );
    let agent = Agent::start(&kube, "video", &body, &[]).await;
    kube.wait_until_replicas("video", "worker", 4, Duration::from_secs(20))
        .await
        .expect("a lag of 1,000 at 50 per worker wants 20, capped at the 4 partitions");
    assert_eq!(kube.scale_writes("video", "worker").iter().map(|(_, n)| *n).collect::<Vec<_>>(), [4]);
    let backlog = format!("queue_scaler_backlog{{deployment=\"worker\",source=\"kafka/{GROUP}/videos\"}}");
    assert_eq!(agent.metric(&backlog).await, Some(1_000.0));
    agent.stop().await;
}

#[tokio::test]
async fn under_latest_messages_produced_where_the_group_never_committed_count_from_the_first_look() {
    let cluster = TestCluster::new();
    cluster.topic("fresh", 4);
    cluster.produce("fresh", 4, |_| 5);
    let reader = Kafka::new(config(&cluster.brokers(), Some("fresh")), TIMEOUT);
    let first = reader.read().await.expect("read");
    assert_eq!((first.backlog, first.wakes, first.uncommitted_partitions), (0.0, false, Some(4)), "history skipped");
    cluster.produce("fresh", 2, |_| 3);
    let second = reader.read().await.expect("read");
    assert_eq!((second.backlog, second.wakes), (6.0, true), "3 new on each of partitions 0 and 1");
    // Once the workers commit a partition, its lag is end minus committed again, and it no longer wakes anything.
    cluster.commit(GROUP, "fresh", [(0, 8), (1, 8)]);
    let third = reader.read().await.expect("read");
    assert_eq!((third.backlog, third.wakes, third.uncommitted_partitions), (0.0, false, Some(2)));
}

#[tokio::test]
async fn the_arrival_rate_is_the_log_ends_growth_between_reads() {
    let cluster = TestCluster::new();
    cluster.topic("videos", 4);
    cluster.commit(GROUP, "videos", (0..4).map(|p| (p, 0)));
    let reader = Kafka::new(config(&cluster.brokers(), Some("videos")), TIMEOUT);
    let before = Instant::now();
    assert_eq!(reader.read().await.expect("read").arrival_rate, None, "one read has no interval");
    cluster.produce("videos", 4, |_| 50);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reading = reader.read().await.expect("read");
    let elapsed = before.elapsed().as_secs_f64();
    let rate = reading.arrival_rate.expect("a rate from the second read on");
    // 200 messages over the time between the two reads, which is at most `elapsed`.
    assert!(rate >= 200.0 / elapsed, "{rate}/s for 200 messages in at most {elapsed:.2} s");
    assert!(rate <= 200.0 / 0.5, "{rate}/s for 200 messages in at least 0.5 s");
    assert_eq!(reading.backlog, 200.0);
}

#[tokio::test]
async fn a_group_at_zero_with_no_commits_wakes_on_new_messages() {
    let cluster = TestCluster::new();
    cluster.topic("uploads", 3);
    cluster.produce("uploads", 3, |_| 40);
    let kube = FakeKube::start().await;
    kube.create_deployment("video", "worker", 0, &[("app", "worker")]);
    let body = format!(
        "pollInterval: 1s\ntargets:\n  - deployment: worker\n    minReplicas: 0\n    maxReplicas: 10\n    activation: 5\n    sources:\n      - type: kafka\n        brokers: {}\n        topic: uploads\n        group: {GROUP}\n        backlogPerWorker: 50\n",
        cluster.brokers()
    );
    let agent = Agent::start(&kube, "video", &body, &[]).await;
    let uncommitted =
        format!("queue_scaler_kafka_uncommitted_partitions{{deployment=\"worker\",source=\"kafka/{GROUP}/uploads\"}}");
    crate::support::eventually(Duration::from_secs(15), "the uncommitted partitions exported", || async {
        agent.metric(&uncommitted).await.filter(|n| *n == 3.0)
    })
    .await;
    agent.logged("the consumer group has no committed offset on the topic", Duration::from_secs(5)).await;
    // 120 old messages are history the workers would skip; the Deployment stays at zero.
    assert!(kube.scale_writes("video", "worker").is_empty(), "{}", agent.logs());
    // Two new messages, fewer than `activation`: nobody will ever count them unless a worker runs.
    cluster.produce("uploads", 1, |_| 2);
    let produced = Instant::now();
    kube.wait_until_replicas("video", "worker", 1, Duration::from_secs(10)).await.expect("woken by new messages");
    println!("woken {:?} after the first new message (poll 1 s)", produced.elapsed());
    assert_eq!(agent.logs().matches("the consumer group has no committed offset").count(), 1, "logged once");
    agent.stop().await;
}

/// Threads of this process (nextest runs each test in a process of its own).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

#[tokio::test]
async fn groups_on_one_cluster_share_one_client_and_a_missing_topic_fails_alone() {
    let cluster = TestCluster::new();
    cluster.topic("videos", 4);
    cluster.produce("videos", 4, |_| 20);
    // Group g committed offset g on every partition: its lag is 4 × (20 − g).
    for g in 0..8 {
        cluster.commit(&format!("workers-{g}"), "videos", (0..4).map(|p| (p, g)));
    }
    let clients = Clients::new();
    let on = |group: &str, topic: Option<&str>, policy| {
        let config = Config {
            topic: topic.map(str::to_owned),
            offset_reset_policy: policy,
            ..Config::new(&cluster.brokers(), group)
        };
        Kafka::shared(config, TIMEOUT, &clients)
    };
    let first = on("workers-0", Some("videos"), OffsetResetPolicy::Latest);
    assert_eq!(first.read().await.expect("the first read creates the client").backlog, 80.0);
    // The cluster's second client, which reads the next records' timestamps, is in place once an age is known.
    crate::support::eventually(Duration::from_secs(20), "the oldest message's age", || async {
        first.read().await.expect("read").oldest_message_age
    })
    .await;
    let with_one_client = threads();

    let groups: Vec<Kafka> =
        (0..8).map(|g| on(&format!("workers-{g}"), Some("videos"), OffsetResetPolicy::Latest)).collect();
    let every_topic = on("workers-3", None, OffsetResetPolicy::Latest);
    let never_committed = on("workers-new", Some("videos"), OffsetResetPolicy::Earliest);
    let missing = on("workers-1", Some("qs-no-such-topic"), OffsetResetPolicy::Latest);
    for _ in 0..3 {
        let readings = futures::future::join_all(groups.iter().map(|reader| reader.read())).await;
        for (g, reading) in readings.into_iter().enumerate() {
            assert_eq!(reading.expect("read").backlog, 4.0 * (20.0 - g as f64), "workers-{g}");
        }
        let (every_topic, never_committed, missing) =
            tokio::join!(every_topic.read(), never_committed.read(), missing.read());
        assert_eq!(every_topic.expect("every committed topic").backlog, 4.0 * 17.0);
        assert_eq!(never_committed.expect("from the low watermark").backlog, 80.0);
        match missing {
            Err(SourceError::NotFound { what, .. }) => assert!(what.contains("qs-no-such-topic"), "{what}"),
            other => panic!("expected NotFound for the missing topic alone, got {other:?}"),
        }
    }
    assert_eq!(clients.open(), 1, "one client for the cluster");
    let now = threads();
    assert!(
        now <= with_one_client + 2,
        "twelve groups cost the threads of the cluster's clients: {with_one_client} → {now}"
    );
}

/// Now on the wall clock, in Unix milliseconds, as Kafka's timestamps count.
fn now_millis() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    i64::try_from(since_epoch.as_millis()).expect("fits")
}

#[tokio::test]
async fn the_oldest_message_age_is_the_timestamp_of_the_next_record_a_group_reads() {
    let cluster = TestCluster::new();
    cluster.topic("aged", 3);
    let now = now_millis();
    let seconds_ago = |s: i64| now - s * 1_000;
    // Partition 0: two old records already read, the next one 10 s old. Partition 1: the next one 90 s old.
    // Partition 2: an old record already read, nothing waiting.
    cluster.produce_at("aged", 0, &[seconds_ago(300), seconds_ago(300), seconds_ago(10)]);
    cluster.produce_at("aged", 1, &[seconds_ago(90), seconds_ago(1)]);
    cluster.produce_at("aged", 2, &[seconds_ago(1_000)]);
    cluster.commit(GROUP, "aged", [(0, 2), (1, 0), (2, 1)]);
    // Another group on the same topic, further along partition 1, read in the same batches on the same client.
    cluster.commit("further-along", "aged", [(0, 3), (1, 1), (2, 1)]);
    cluster.commit("idle", "aged", [(0, 3), (1, 2), (2, 1)]);

    let clients = Clients::new();
    let on = |group: &str| Kafka::shared(Config::new(&cluster.brokers(), group), TIMEOUT, &clients);
    let (behind, further, idle) = (on(GROUP), on("further-along"), on("idle"));
    let age = |reading: Result<Reading, SourceError>| reading.expect("read").oldest_message_age;
    // The records are read in the background: the first reads do not wait for them, and know no age yet.
    let started = Instant::now();
    let (first_behind, first_idle) = tokio::join!(behind.read(), idle.read());
    let first_read = started.elapsed();
    assert_eq!(age(first_idle), Some(Duration::ZERO), "nothing waits: no record needed");
    let first_behind = age(first_behind);
    // A partition whose own next record is not read yet borrows an earlier record's time there (too old, never too
    // young) until it is; within a few reads every group has its own.
    let within = |age: Duration, from: u64, to: u64| age >= Duration::from_secs(from) && age < Duration::from_secs(to);
    let (behind_age, further_age) = crate::support::eventually(Duration::from_secs(20), "the ages read", || async {
        let (a, b) = tokio::join!(behind.read(), further.read());
        // The clock moves on between producing and reading: at least the age each was produced with, within a margin.
        age(a).zip(age(b)).filter(|(a, b)| within(*a, 90, 120) && within(*b, 1, 30))
    })
    .await;
    println!("first read {first_read:?} (age {first_behind:?}); then {behind_age:?} and {further_age:?}");
    assert!(first_behind.is_none_or(|first| first >= behind_age), "an age read early is never too young");
}
