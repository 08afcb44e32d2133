//! The Pub/Sub source against the fake Cloud Monitoring API, whose numbers come from the real Pub/Sub emulator, and
//! the agent binary scaling a Deployment on the fake Kubernetes API from it.

use std::time::{Duration, Instant, SystemTime};

use queue_scaler::source::pubsub::{BACKLOG_METRIC, Config, OLDEST_AGE_METRIC, PubSub};
use queue_scaler::source::{Clients, ReadBacklog, SourceError};

use crate::support::agent::Agent;
use crate::support::eventually;
use crate::support::kube_api::FakeKube;
use crate::support::monitoring::FakeMonitoring;
use crate::support::pubsub::{PROJECT, TestSubscription, emulator_url};

const FIVE_MINUTES: Duration = Duration::from_secs(300);

fn source(monitoring: &FakeMonitoring, subscription: &str, max_staleness: Duration) -> PubSub {
    PubSub::new(Config {
        project: Some(PROJECT.to_owned()),
        subscription: subscription.to_owned(),
        max_staleness,
        endpoint: Some(monitoring.endpoint()),
        pubsub_endpoint: Some(emulator_url()),
    })
}

#[tokio::test]
async fn the_backlog_is_what_the_emulator_still_holds() {
    let subscription = TestSubscription::new("remains").await;
    let monitoring = FakeMonitoring::start().await;
    subscription.publish(25).await;
    subscription.ack(10).await;
    let sampled = monitoring.sample(&subscription, SystemTime::now()).await;
    assert_eq!(sampled.undelivered, 15, "the emulator holds what was published and not acked");

    // The full name works as well as the id.
    let reader = source(&monitoring, &subscription.name(), FIVE_MINUTES);
    let reading = reader.read().await.expect("read");
    assert_eq!(reading.backlog, 15.0);
    assert!(reading.data_age.is_some_and(|age| age < Duration::from_secs(5)), "{reading:?}");

    let asked: Vec<_> = monitoring.requests().iter().filter_map(|q| q.get("filter").cloned()).collect();
    for metric in [BACKLOG_METRIC, OLDEST_AGE_METRIC] {
        assert!(asked.iter().any(|f| f.contains(metric) && f.contains(&subscription.id)), "{asked:?}");
    }

    subscription.publish(5).await;
    assert_eq!(monitoring.sample(&subscription, SystemTime::now()).await.undelivered, 20);
    assert_eq!(reader.read().await.expect("read").backlog, 20.0, "the newest point wins");
    subscription.ack(20).await;
    assert_eq!(monitoring.sample(&subscription, SystemTime::now()).await.undelivered, 0);
    assert_eq!(reader.read().await.expect("read").backlog, 0.0);
}

#[tokio::test]
async fn the_oldest_unacked_message_age_is_read() {
    let subscription = TestSubscription::new("oldest").await;
    let monitoring = FakeMonitoring::start().await;
    subscription.publish(5).await;
    let published = subscription.backlog().await.oldest_publish_time.expect("messages wait");
    // Metric ages are whole seconds: let the oldest message wait two of them so the value cannot be zero by luck.
    eventually(Duration::from_secs(10), "the oldest message is two seconds old", || async {
        SystemTime::now().duration_since(published).ok().filter(|age| *age >= Duration::from_secs(2))
    })
    .await;
    let sampled_at = SystemTime::now();
    monitoring.sample(&subscription, sampled_at).await;
    let expected = Duration::from_secs(sampled_at.duration_since(published).expect("after publishing").as_secs());

    let reading = source(&monitoring, &subscription.id, FIVE_MINUTES).read().await.expect("read");
    assert_eq!(reading.oldest_message_age, Some(expected));
    assert!(expected >= Duration::from_secs(2));
    assert_eq!(reading.backlog, 5.0);
}

#[tokio::test]
async fn a_stale_point_fails_the_read_until_a_fresh_one_arrives() {
    let subscription = TestSubscription::new("stale").await;
    let monitoring = FakeMonitoring::start().await;
    subscription.publish(3).await;
    let seven_minutes_ago = SystemTime::now() - Duration::from_secs(7 * 60);
    monitoring.sample(&subscription, seven_minutes_ago).await;

    let reader = source(&monitoring, &subscription.id, FIVE_MINUTES);
    match reader.read().await {
        Err(SourceError::Stale { age, max }) => {
            assert!(age >= Duration::from_secs(7 * 60) && age < Duration::from_secs(8 * 60), "{age:?}");
            assert_eq!(max, FIVE_MINUTES);
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    let patient = source(&monitoring, &subscription.id, Duration::from_secs(10 * 60)).read().await.expect("read");
    assert_eq!(patient.backlog, 3.0);
    assert!(patient.data_age.is_some_and(|age| age >= Duration::from_secs(7 * 60)), "{patient:?}");

    monitoring.sample(&subscription, SystemTime::now()).await;
    let fresh = reader.read().await.expect("a fresh point");
    assert!(fresh.data_age.is_some_and(|age| age < Duration::from_secs(5)), "{fresh:?}");
}

#[tokio::test]
async fn an_age_only_stale_point_is_left_out() {
    let monitoring = FakeMonitoring::start().await;
    let now = SystemTime::now();
    monitoring.record("qs-ages-apart", BACKLOG_METRIC, now, 4);
    monitoring.record("qs-ages-apart", OLDEST_AGE_METRIC, now - Duration::from_secs(6 * 60), 90);
    let reading = source(&monitoring, "qs-ages-apart", FIVE_MINUTES).read().await.expect("read");
    assert_eq!(reading.backlog, 4.0);
    assert_eq!(reading.oldest_message_age, None);
}

#[tokio::test]
async fn an_idle_subscription_without_points_reads_zero_and_a_deleted_one_fails() {
    // Cloud Monitoring writes no points for a subscription with nothing to report.
    let subscription = TestSubscription::new("idle").await;
    let monitoring = FakeMonitoring::start().await;
    let reader = source(&monitoring, &subscription.id, FIVE_MINUTES);
    assert_eq!(reader.read().await.expect("an idle subscription").backlog, 0.0);
    // Emptied and quiet: the newest point says 0 and is older than maxStaleness.
    monitoring.sample(&subscription, SystemTime::now() - Duration::from_secs(7 * 60)).await;
    assert_eq!(reader.read().await.expect("quiet since its last point, which said 0").backlog, 0.0);

    let missing = source(&monitoring, "qs-never-created", FIVE_MINUTES);
    match missing.read().await {
        Err(SourceError::NotFound { what, detail }) => {
            assert!(what.contains("qs-never-created") && what.contains(PROJECT), "{what}");
            assert!(detail.contains("does not know it"), "{detail}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn a_same_named_subscription_in_another_project_of_the_metrics_scope_is_never_read() {
    let subscription = TestSubscription::new("scoped").await;
    let monitoring = FakeMonitoring::start().await;
    subscription.publish(4).await;
    monitoring.sample(&subscription, SystemTime::now() - Duration::from_secs(20)).await;
    // The scoping project also monitors a project with a subscription of the same id, and a newer, bigger point.
    monitoring.record_in("qs-elsewhere", &subscription.id, BACKLOG_METRIC, SystemTime::now(), 9_000);
    let reading = source(&monitoring, &subscription.id, FIVE_MINUTES).read().await.expect("read");
    assert_eq!(reading.backlog, 4.0, "only {PROJECT}'s subscription counts");
    let asked: Vec<_> = monitoring.requests().iter().filter_map(|q| q.get("filter").cloned()).collect();
    assert!(asked.iter().all(|f| f.contains(&format!("resource.labels.project_id = \"{PROJECT}\""))), "{asked:?}");
}

#[tokio::test]
async fn refusals_and_failures_are_typed_and_the_reader_recovers() {
    let monitoring = FakeMonitoring::start().await;
    monitoring.record("qs-faults", BACKLOG_METRIC, SystemTime::now(), 8);
    let reader = source(&monitoring, "qs-faults", FIVE_MINUTES);
    for (status, kind) in
        [(403, "denied"), (401, "denied"), (404, "not_found"), (500, "protocol"), (503, "unreachable")]
    {
        monitoring.fail_with(status);
        let before = monitoring.requests().len();
        let error = reader.read().await.expect_err("the fake fails");
        assert_eq!(error.kind(), kind, "HTTP {status}: {error}");
        let sent = monitoring.requests().len() - before;
        assert!((1..=2).contains(&sent), "no retries inside a read (one request per metric), sent {sent}");
    }
    monitoring.recover();
    assert_eq!(reader.read().await.expect("recovered").backlog, 8.0);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_reported_without_its_password() {
    let password = "not-a-real-password-5678";
    let reader = PubSub::new(Config {
        project: Some(PROJECT.to_owned()),
        subscription: "qs-nowhere".to_owned(),
        max_staleness: FIVE_MINUTES,
        endpoint: Some(format!("http://user:{password}@127.0.0.1:1")),
        pubsub_endpoint: None,
    });
    let error = reader.read().await.expect_err("port 1 is closed");
    assert_eq!(error.kind(), "unreachable", "{error}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains(password), "{text}");
}

#[tokio::test]
async fn read_latency_against_the_fake() {
    let monitoring = FakeMonitoring::start().await;
    monitoring.record("qs-latency", BACKLOG_METRIC, SystemTime::now(), 42);
    monitoring.record("qs-latency", OLDEST_AGE_METRIC, SystemTime::now(), 7);
    let reader = source(&monitoring, "qs-latency", FIVE_MINUTES);
    reader.read().await.expect("the first read builds the client");
    let mut took = Vec::with_capacity(50);
    for _ in 0..50 {
        let started = Instant::now();
        let reading = reader.read().await.expect("read");
        took.push(started.elapsed());
        assert_eq!((reading.backlog, reading.oldest_message_age), (42.0, Some(Duration::from_secs(7))));
    }
    took.sort();
    let median = took[took.len() / 2];
    eprintln!("pubsub read latency against the fake Monitoring API: median {median:?} of 50, max {:?}", took[49]);
    assert!(median < Duration::from_secs(1), "median {median:?}");
}

#[tokio::test]
async fn the_agent_scales_a_deployment_from_the_pubsub_backlog() {
    let subscription = TestSubscription::new("agent").await;
    let monitoring = FakeMonitoring::start().await;
    subscription.publish(70).await;
    subscription.ack(20).await;
    assert_eq!(monitoring.sample(&subscription, SystemTime::now()).await.undelivered, 50);

    let kube = FakeKube::start().await;
    kube.create_deployment("video", "worker", 1, &[("app", "worker")]);
    let body = format!(
        "pollInterval: 1s\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 10\n    sources:\n      - type: pubsub\n        project: {PROJECT}\n        subscription: {}\n        endpoint: {}\n        backlogPerWorker: 10\n",
        subscription.id,
        monitoring.endpoint()
    );
    let agent = Agent::start(&kube, "video", &body, &[]).await;
    kube.wait_until_replicas("video", "worker", 5, Duration::from_secs(20)).await.expect("50 messages / 10 → 5");

    let series = |name: &str| format!("{name}{{deployment=\"worker\",source=\"pubsub/{}\"}}", subscription.id);
    let age = agent.metric(&series("queue_scaler_source_data_age_seconds")).await;
    assert!(age.is_some_and(|a| (0.0..60.0).contains(&a)), "data age exported: {age:?}");
    let oldest = agent.metric(&series("queue_scaler_oldest_message_age_seconds")).await;
    assert!(oldest.is_some_and(|a| a >= 0.0), "oldest message age exported: {oldest:?}");
    assert!(agent.stop().await.success(), "clean exit on SIGTERM");
}

#[tokio::test]
async fn the_subscriptions_of_a_project_are_read_together_and_fail_alone() {
    let monitoring = FakeMonitoring::start().await;
    let now = SystemTime::now();
    let ids: Vec<String> = (0..30).map(|i| format!("qs-together-{}-{i}", std::process::id())).collect();
    for (i, id) in ids.iter().enumerate() {
        monitoring.record(id, BACKLOG_METRIC, now, i as i64);
        monitoring.record(id, OLDEST_AGE_METRIC, now, 3);
    }
    let clients = Clients::new();
    let reader = |id: &str| {
        let config = Config {
            project: Some(PROJECT.to_owned()),
            subscription: id.to_owned(),
            max_staleness: FIVE_MINUTES,
            endpoint: Some(monitoring.endpoint()),
            pubsub_endpoint: Some(emulator_url()),
        };
        PubSub::shared(config, Duration::from_secs(5), &clients)
    };
    let readers: Vec<PubSub> = ids.iter().map(|id| reader(id)).collect();
    // No points, and the emulator does not know it.
    let missing = reader(&format!("qs-never-created-{}", std::process::id()));
    let before = monitoring.requests().len();
    let (readings, missing) = tokio::join!(futures::future::join_all(readers.iter().map(|r| r.read())), missing.read());
    for (i, reading) in readings.into_iter().enumerate() {
        let reading = reading.expect("read");
        assert_eq!((reading.backlog, reading.oldest_message_age), (i as f64, Some(Duration::from_secs(3))));
    }
    match missing {
        Err(SourceError::NotFound { detail, .. }) => assert!(detail.contains("does not know it"), "{detail}"),
        other => panic!("expected NotFound for the missing subscription alone, got {other:?}"),
    }
    let asked: Vec<String> = monitoring.requests()[before..].iter().filter_map(|q| q.get("filter").cloned()).collect();
    assert_eq!(asked.len(), 2, "one request per metric for 31 subscriptions: {asked:?}");
    for filter in &asked {
        assert!(filter.contains("resource.labels.subscription_id = one_of(\""), "{filter}");
        assert!(ids.iter().all(|id| filter.contains(id.as_str())), "{filter}");
    }
    assert_eq!(clients.open(), 2, "one Monitoring client and one Pub/Sub client");
}
