//! The Prometheus source against a real Prometheus scraping an exporter the test serves: one value, several
//! series, an empty result, the shapes that are not a number, failures, the read latency, and the agent scaling a
//! Deployment on the fake API from a query.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use queue_scaler::source::prometheus::{Config, Prometheus};
use queue_scaler::source::{ReadBacklog, Reading, SourceError};

use crate::support::agent::Agent;
use crate::support::eventually;
use crate::support::kube_api::FakeKube;
use crate::support::prometheus::{self as server, Exporter};

const JOBS: &str = "qs_jobs_waiting{queue=\"video\"} 42\nqs_jobs_waiting{queue=\"audio\"} 8\n";

/// The first scrape lands a few seconds after Prometheus starts.
const FIRST_SCRAPE: Duration = Duration::from_secs(30);

fn reader(url: &str, query: &str) -> Prometheus {
    Prometheus::new(Config {
        url: url.to_owned(),
        query: query.to_owned(),
        bearer_token_file: None,
        ignore_null_values: true,
    })
}

/// Reads until the reading has `backlog`, which the scrapes will eventually show.
async fn backlog_becomes(reader: &Prometheus, backlog: f64) -> Reading {
    eventually(FIRST_SCRAPE, &format!("the query to read {backlog}"), || async {
        reader.read().await.ok().filter(|r| r.backlog == backlog)
    })
    .await
}

#[tokio::test]
async fn reads_one_value_from_a_sum_a_single_series_or_a_scalar_and_follows_changes() {
    let exporter = Exporter::start(JOBS).await;
    let prometheus = server::Prometheus::start(exporter.address).await;
    let sum = reader(&prometheus.url, "sum(qs_jobs_waiting)");
    let reading = backlog_becomes(&sum, 50.0).await;
    let age = reading.data_age.expect("a sample has a timestamp");
    assert!(age < Duration::from_secs(5), "the answer is fresh: {age:?}");
    assert_eq!((reading.in_flight, reading.replica_cap), (None, None));

    let one_series = reader(&prometheus.url, "qs_jobs_waiting{queue=\"video\"}");
    assert_eq!(one_series.read().await.expect("read").backlog, 42.0);
    let scalar = reader(&prometheus.url, "scalar(sum(qs_jobs_waiting))");
    assert_eq!(scalar.read().await.expect("read").backlog, 50.0);

    exporter.set("qs_jobs_waiting{queue=\"video\"} 70\nqs_jobs_waiting{queue=\"audio\"} 8\n");
    backlog_becomes(&sum, 78.0).await;
}

#[tokio::test]
async fn several_series_are_an_error_that_counts_them_and_suggests_sum() {
    let exporter = Exporter::start(JOBS).await;
    let prometheus = server::Prometheus::start(exporter.address).await;
    let by_queue = reader(&prometheus.url, "qs_jobs_waiting");
    let error = eventually(FIRST_SCRAPE, "both series to be scraped", || async {
        by_queue.read().await.err().filter(|e| e.kind() == "rejected")
    })
    .await;
    let text = error.to_string();
    assert!(text.contains("query `qs_jobs_waiting` returned 2 series"), "{text}");
    assert!(text.contains("queue=\"audio\"") && text.contains("queue=\"video\""), "{text}");
    assert!(text.contains("`sum(…)`"), "{text}");
}

#[tokio::test]
async fn an_empty_result_is_a_failed_read_unless_null_values_are_ignored() {
    let exporter = Exporter::start(JOBS).await;
    let prometheus = server::Prometheus::start(exporter.address).await;
    // Wait for a scrape, so the result is empty because of the query and not because nothing was scraped yet.
    backlog_becomes(&reader(&prometheus.url, "sum(qs_jobs_waiting)"), 50.0).await;

    let lenient = reader(&prometheus.url, "sum(qs_jobs_never_exported)");
    assert_eq!(lenient.read().await.expect("ignoreNullValues: an empty result is 0"), Reading::default());
    let by_default: Config =
        serde_norway::from_str(&format!("url: {}\nquery: sum(qs_jobs_never_exported)", prometheus.url))
            .expect("config");
    let error = Prometheus::new(by_default).read().await.expect_err("empty is a failed read by default");
    assert_eq!(error.kind(), "empty", "{error}");
    assert!(error.to_string().contains("query `sum(qs_jobs_never_exported)`"), "{error}");
}

#[tokio::test]
async fn answers_that_are_not_one_number_and_bad_queries_name_the_query() {
    let exporter = Exporter::start(JOBS).await;
    let prometheus = server::Prometheus::start(exporter.address).await;
    for (query, kind, says) in [
        ("qs_jobs_waiting[1m]", "rejected", "returned a range vector"),
        ("\"text\"", "rejected", "returned a string"),
        ("0/0", "rejected", "returned NaN"),
        ("-1", "rejected", "returned -1"),
        ("sum(", "protocol", "bad_data"),
    ] {
        let error = reader(&prometheus.url, query).read().await.expect_err(query);
        let text = error.to_string();
        assert_eq!(error.kind(), kind, "{query}: {text}");
        assert!(text.contains(&format!("query `{query}`")) && text.contains(says), "{query}: {text}");
    }
}

#[tokio::test]
async fn a_wrong_base_url_or_a_closed_port_are_typed_failures() {
    let exporter = Exporter::start(JOBS).await;
    let prometheus = server::Prometheus::start(exporter.address).await;
    let wrong_path = reader(&format!("{}/not-prometheus", prometheus.url), "up").read().await;
    match wrong_path {
        Err(SourceError::NotFound { what, detail }) => {
            assert!(what.contains("/not-prometheus/api/v1/query"), "{what}");
            assert!(detail.contains("base URL"), "{detail}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let closed = reader("http://127.0.0.1:1", "up").read().await.expect_err("port 1 is closed");
    assert_eq!(closed.kind(), "unreachable", "{closed}");
}

/// Answers the query API with 7 when the request carries `expected` as its `Authorization`, else 401.
async fn guarded_api(expected: &'static str) -> String {
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(move |headers: HeaderMap| async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected) {
                (StatusCode::OK, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#)
            } else {
                (StatusCode::UNAUTHORIZED, "Unauthorized")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    url
}

#[tokio::test]
async fn credentials_reach_the_server_and_never_an_error() {
    let basic = guarded_api("Basic c2NhbGVyOnBAc3M=").await.replace("http://", "http://scaler:p%40ss@");
    assert_eq!(reader(&basic, "q").read().await.expect("basic auth from the URL").backlog, 7.0);
    let wrong = basic.replace("p%40ss", "not-the-password");
    let error = reader(&wrong, "q").read().await.expect_err("wrong password");
    assert_eq!(error.kind(), "denied", "{error}");
    assert!(!format!("{error} {error:?}").contains("not-the-password"), "{error:?}");

    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first-token\n").expect("write token");
    let bearer = Prometheus::new(Config {
        url: guarded_api("Bearer second-token").await,
        query: "q".into(),
        bearer_token_file: Some(token_file.clone()),
        ignore_null_values: true,
    });
    let error = bearer.read().await.expect_err("not the token the server wants");
    assert_eq!(error.kind(), "denied", "{error}");
    assert!(!format!("{error} {error:?}").contains("first-token"), "{error:?}");
    std::fs::write(&token_file, "second-token\n").expect("rotate token");
    assert_eq!(bearer.read().await.expect("the rotated token is read again").backlog, 7.0);

    std::fs::remove_file(&token_file).expect("remove token");
    let error = bearer.read().await.expect_err("no token file");
    assert_eq!(error.kind(), "denied", "{error}");
    assert!(error.to_string().contains(&token_file.display().to_string()), "{error}");
}

#[tokio::test]
async fn read_latency_median_of_fifty_reads() {
    let exporter = Exporter::start(JOBS).await;
    let prometheus = server::Prometheus::start(exporter.address).await;
    let sum = reader(&prometheus.url, "sum(qs_jobs_waiting)");
    backlog_becomes(&sum, 50.0).await;
    let mut took = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        assert_eq!(sum.read().await.expect("read").backlog, 50.0);
        took.push(started.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    println!("prometheus read latency against a local server: median {median:?}, max {:?}", took[took.len() - 1]);
    assert!(median < Duration::from_millis(250), "a read reuses its connection: median {median:?}");
}

#[tokio::test]
async fn the_agent_scales_a_deployment_from_a_query() {
    let exporter = Exporter::start("qs_open_connections{pod=\"a\"} 150\nqs_open_connections{pod=\"b\"} 100\n").await;
    let prometheus = server::Prometheus::start(exporter.address).await;
    let kube = FakeKube::start().await;
    kube.create_deployment("video", "frontend", 1, &[("app", "frontend")]);
    let body = format!(
        "pollInterval: 1s\ntargets:\n  - deployment: frontend\n    minReplicas: 1\n    maxReplicas: 10\n    sources:\n      - type: prometheus\n        url: {}\n        query: sum(qs_open_connections)\n        backlogPerWorker: 100\n",
        prometheus.url
    );
    let agent = Agent::start(&kube, "video", &body, &[]).await;
    kube.wait_until_replicas("video", "frontend", 3, Duration::from_secs(40))
        .await
        .expect("250 connections at 100 per replica: 3 replicas");
    assert_eq!(kube.scale_writes("video", "frontend").iter().map(|(_, n)| *n).collect::<Vec<_>>(), [3]);
    let age =
        "queue_scaler_source_data_age_seconds{deployment=\"frontend\",source=\"prometheus/sum(qs_open_connections)\"}";
    let age = agent.metric(age).await.expect("the data age is exported");
    assert!((0.0..5.0).contains(&age), "{age}");
    agent.stop().await;
}

#[tokio::test]
async fn an_exporter_that_goes_away_holds_the_count_instead_of_scaling_to_zero() {
    let exporter = Exporter::start("qs_jobs_waiting{queue=\"video\"} 400\n").await;
    let prometheus = server::Prometheus::start(exporter.address).await;
    let kube = FakeKube::start().await;
    kube.create_deployment("video", "worker", 1, &[("app", "worker")]);
    let body = format!(
        "pollInterval: 1s\ntargets:\n  - deployment: worker\n    minReplicas: 0\n    maxReplicas: 10\n    behavior: {{scaleUp: {{policies: [{{type: Pods, value: 10, periodSeconds: 15}}]}}, scaleDown: {{stabilizationWindowSeconds: 0}}}}\n    sources:\n      - type: prometheus\n        url: {}\n        query: sum(qs_jobs_waiting)\n        backlogPerWorker: 100\n",
        prometheus.url
    );
    let agent = Agent::start(&kube, "video", &body, &[]).await;
    kube.wait_until_replicas("video", "worker", 4, Duration::from_secs(40)).await.expect("400 at 100 per replica");

    // The exporter crashes: Prometheus marks its series stale and `sum()` comes back empty.
    drop(exporter);
    let empty = "queue_scaler_source_errors_total{deployment=\"worker\",source=\"prometheus/sum(qs_jobs_waiting)\",kind=\"empty\"}";
    eventually(Duration::from_secs(30), "empty results counted as failed reads", || async {
        agent.metric(empty).await.filter(|n| *n >= 3.0)
    })
    .await;
    assert_eq!(
        kube.scale_writes("video", "worker").iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [4],
        "held at 4 through the outage: {}",
        agent.logs()
    );
    assert!(agent.logs().contains("holding the replica count"), "{}", agent.logs());
    agent.stop().await;
}
