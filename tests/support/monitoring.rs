//! A fake of the one Cloud Monitoring endpoint the Pub/Sub source calls, `GET /v3/projects/{project}/timeSeries`,
//! because no emulator serves Monitoring.
//!
//! It answers as the documented REST API does: the filter must name one `metric.type`, `resource.type` and
//! `resource.labels.subscription_id`, and may name `resource.labels.project_id`, each compared with `=` to a string
//! or to `one_of("a", "b", …)` and joined by `AND`, as the filter syntax writes them (anything else is a 400, so a
//! client that asks differently fails loudly); only points whose end time lies inside
//! `interval.startTime`..`interval.endTime` come back, newest first, as JSON with int64 values written as strings;
//! an empty answer is `{}`. Errors come in Google's `{"error": {...}}` shape. The project in the path is a metrics
//! scope, as in the real API: it answers for the subscriptions of every project it covers (here: every project
//! recorded) unless the filter names `resource.labels.project_id`.
//!
//! The points are what the test records. [`FakeMonitoring::sample`] records the real emulator's backlog for a
//! subscription (see `support::pubsub`), the way Pub/Sub samples its own metrics once a minute; `end` lets a test
//! date that sample in the past to make it stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use google_cloud_wkt::Timestamp;
use queue_scaler::source::pubsub::{BACKLOG_METRIC, OLDEST_AGE_METRIC};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::pubsub::{Backlog, PROJECT, TestSubscription};

/// Which series a point belongs to: project, subscription id, metric type.
type SeriesKey = (String, String, String);

#[derive(Default)]
struct Recorded {
    series: HashMap<SeriesKey, Vec<(SystemTime, i64)>>,
    failure: Option<StatusCode>,
    requests: Vec<HashMap<String, String>>,
}

/// A running fake Monitoring API on 127.0.0.1. Dropping it stops the server.
pub struct FakeMonitoring {
    endpoint: String,
    recorded: Arc<Mutex<Recorded>>,
    server: JoinHandle<()>,
}

impl FakeMonitoring {
    /// Starts the fake on a free port.
    pub async fn start() -> FakeMonitoring {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let app = Router::new()
            .route("/v3/projects/{project}/timeSeries", get(list_time_series))
            .with_state(recorded.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Monitoring API to 127.0.0.1");
        let endpoint = format!("http://{}", listener.local_addr().expect("an address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the fake Monitoring API serves");
        });
        FakeMonitoring { endpoint, recorded, server }
    }

    /// `http://127.0.0.1:PORT`, for the source's `endpoint`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Records one point of `metric` for `subscription` (an id in [`PROJECT`]).
    pub fn record(&self, subscription: &str, metric: &str, end: SystemTime, value: i64) {
        self.record_in(PROJECT, subscription, metric, end, value);
    }

    /// Records one point of `metric` for `subscription` of `project`.
    pub fn record_in(&self, project: &str, subscription: &str, metric: &str, end: SystemTime, value: i64) {
        let key = (project.to_owned(), subscription.to_owned(), metric.to_owned());
        self.lock().series.entry(key).or_default().push((end, value));
    }

    /// Asks the emulator what `subscription` still holds and records it as the sample taken at `end`: the backlog,
    /// and the age of the oldest message at that moment in whole seconds, as Pub/Sub reports both.
    pub async fn sample(&self, subscription: &TestSubscription, end: SystemTime) -> Backlog {
        let backlog = subscription.backlog().await;
        let oldest_age =
            backlog.oldest_publish_time.map_or(Duration::ZERO, |t| end.duration_since(t).unwrap_or_default());
        self.record(&subscription.id, BACKLOG_METRIC, end, i64::try_from(backlog.undelivered).expect("a count"));
        self.record(&subscription.id, OLDEST_AGE_METRIC, end, i64::try_from(oldest_age.as_secs()).expect("an age"));
        backlog
    }

    /// Answers every request with `status` until [`FakeMonitoring::recover`].
    pub fn fail_with(&self, status: u16) {
        self.lock().failure = Some(StatusCode::from_u16(status).expect("an HTTP status"));
    }

    /// Answers normally again.
    pub fn recover(&self) {
        self.lock().failure = None;
    }

    /// The query parameters of every request so far.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().expect("the fake's state")
    }
}

impl Drop for FakeMonitoring {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn list_time_series(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path(_scoping_project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut recorded = recorded.lock().expect("the fake's state");
    recorded.requests.push(query.clone());
    if let Some(status) = recorded.failure {
        return google_error(status, "injected by the test");
    }
    let Some(filter) = query.get("filter").map(|f| parse_filter(f)) else {
        return google_error(StatusCode::BAD_REQUEST, "filter is required");
    };
    let filter = match filter {
        Ok(filter) => filter,
        Err(why) => return google_error(StatusCode::BAD_REQUEST, &format!("the filter does not parse: {why}")),
    };
    const UNDERSTOOD: [&str; 4] =
        ["metric.type", "resource.type", "resource.labels.project_id", "resource.labels.subscription_id"];
    if !filter.keys().all(|key| UNDERSTOOD.contains(&key.as_str())) {
        return google_error(
            StatusCode::BAD_REQUEST,
            "the fake understands only metric, resource type, project id and subscription id",
        );
    }
    let (Some(start), Some(end)) =
        (time_parameter(&query, "interval.startTime"), time_parameter(&query, "interval.endTime"))
    else {
        return google_error(StatusCode::BAD_REQUEST, "interval.startTime and interval.endTime are required");
    };
    if filter.get("resource.type").map(Vec::as_slice) != Some(&["pubsub_subscription".to_owned()][..]) {
        return google_error(StatusCode::BAD_REQUEST, "resource.type must be pubsub_subscription");
    }
    // The real API lists one metric type per request.
    let (Some([metric]), Some(subscriptions)) =
        (filter.get("metric.type").map(Vec::as_slice), filter.get("resource.labels.subscription_id"))
    else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "one metric.type and resource.labels.subscription_id are required",
        );
    };
    let wanted_projects = filter.get("resource.labels.project_id");
    let series: Vec<Value> = recorded
        .series
        .iter()
        .filter(|((project, id, kind), _)| {
            subscriptions.contains(id) && kind == metric && wanted_projects.is_none_or(|wanted| wanted.contains(project))
        })
        .filter_map(|((project, subscription, _), points)| {
            let mut points: Vec<_> = points.iter().filter(|(t, _)| *t > start && *t <= end).copied().collect();
            if points.is_empty() {
                return None;
            }
            points.sort_by_key(|(end, _)| std::cmp::Reverse(*end));
            let points: Vec<Value> = points
                .into_iter()
                .map(|(t, v)| json!({"interval": {"startTime": rfc3339(t), "endTime": rfc3339(t)}, "value": {"int64Value": v.to_string()}}))
                .collect();
            Some(json!({
                "metric": {"type": metric},
                "resource": {"type": "pubsub_subscription", "labels": {"project_id": project, "subscription_id": subscription}},
                "metricKind": "GAUGE",
                "valueType": "INT64",
                "points": points,
            }))
        })
        .collect();
    if series.is_empty() {
        return axum::Json(json!({})).into_response();
    }
    axum::Json(json!({"timeSeries": series, "unit": ""})).into_response()
}

/// A filter in the documented syntax, as far as this fake goes: comparisons joined by `AND`, each `KEY = "value"` or
/// `KEY = one_of("a", "b", …)`, strings in double quotes with `\"` and `\\` escapes → {KEY: [values]}. Anything
/// else, or a key named twice, is an error.
fn parse_filter(filter: &str) -> Result<HashMap<String, Vec<String>>, String> {
    let mut parser = FilterParser { rest: filter.trim() };
    let mut comparisons = HashMap::new();
    loop {
        let key = parser.key()?;
        parser.expect("=")?;
        let values = if parser.eat("one_of") {
            parser.expect("(")?;
            let mut values = vec![parser.string()?];
            while parser.eat(",") {
                values.push(parser.string()?);
            }
            parser.expect(")")?;
            values
        } else {
            vec![parser.string()?]
        };
        if comparisons.insert(key.clone(), values).is_some() {
            return Err(format!("`{key}` is named twice"));
        }
        if parser.rest.trim().is_empty() {
            return Ok(comparisons);
        }
        if !parser.rest.starts_with(' ') {
            return Err(format!("expected ` AND ` at `{}`", parser.rest));
        }
        parser.expect("AND")?;
        if !parser.rest.starts_with(' ') {
            return Err("`AND` must be followed by a space".into());
        }
    }
}

struct FilterParser<'a> {
    rest: &'a str,
}

impl FilterParser<'_> {
    fn eat(&mut self, token: &str) -> bool {
        let trimmed = self.rest.trim_start();
        match trimmed.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) { Ok(()) } else { Err(format!("expected `{token}` at `{}`", self.rest.trim_start())) }
    }

    fn key(&mut self) -> Result<String, String> {
        let trimmed = self.rest.trim_start();
        let end = trimmed.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_')).unwrap_or(trimmed.len());
        if end == 0 {
            return Err(format!("expected a key at `{trimmed}`"));
        }
        self.rest = &trimmed[end..];
        Ok(trimmed[..end].to_owned())
    }

    fn string(&mut self) -> Result<String, String> {
        let trimmed = self.rest.trim_start();
        let mut chars = trimmed.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("expected a string at `{trimmed}`"));
        }
        let mut value = String::new();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &trimmed[at + 1..];
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                    _ => return Err("only `\\\"` and `\\\\` are escapes".into()),
                },
                c => value.push(c),
            }
        }
        Err(format!("an unterminated string at `{trimmed}`"))
    }
}

fn time_parameter(query: &HashMap<String, String>, name: &str) -> Option<SystemTime> {
    let text = query.get(name)?;
    SystemTime::try_from(Timestamp::try_from(text.as_str()).ok()?).ok()
}

fn rfc3339(time: SystemTime) -> String {
    String::from(Timestamp::try_from(time).expect("a time after 1970"))
}

/// An error in the shape Google APIs use.
fn google_error(status: StatusCode, message: &str) -> Response {
    let code = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": code}});
    (status, axum::Json(body)).into_response()
}
