//! The Pub/Sub reader: subscriptions' backlog and oldest age from Cloud Monitoring, one `list_time_series` per
//! project and poll for all of them, and the Pub/Sub admin API to tell an idle subscription from a deleted one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use google_cloud_auth::credentials::anonymous;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::paginator::Paginator as _;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_monitoring_v3::client::MetricService;
use google_cloud_monitoring_v3::model::{TimeInterval, TimeSeries};
use google_cloud_pubsub::client::SubscriptionAdmin;
use google_cloud_wkt::Timestamp;
use tokio::sync::OnceCell;

use super::super::shared::{self, Batched, Batcher, Clients, Shared};
use super::super::{ReadBacklog, Reading, SourceError, error_chain};
use super::{BACKLOG_METRIC, Config, DEFAULT_ENDPOINT, DEFAULT_PUBSUB_ENDPOINT, OLDEST_AGE_METRIC, Subscription};
use crate::redact::{self, Secrets};

/// The Monitoring filter that selects one metric of the subscriptions `ids` of one project: `= "id"` for one,
/// `= one_of("a", "b")` for several (the filter syntax's `one_of`). Ids hold no quotes or backslashes
/// ([`subscription_id_problem`]), so they need no escaping.
fn filter(metric: &str, project: &str, ids: &[&str]) -> String {
    let subscriptions = match ids {
        [id] => format!("\"{id}\""),
        ids => format!("one_of({})", ids.iter().map(|id| format!("\"{id}\"")).collect::<Vec<_>>().join(", ")),
    };
    format!(
        "metric.type = \"{metric}\" AND resource.type = \"pubsub_subscription\" AND resource.labels.project_id = \
         \"{project}\" AND resource.labels.subscription_id = {subscriptions}"
    )
}

/// One data point: when its interval ended and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    end: SystemTime,
    value: f64,
}

/// The newest point over every series, or why a point could not be understood.
fn newest_sample(series: &[TimeSeries]) -> Result<Option<Sample>, String> {
    let mut newest: Option<Sample> = None;
    for point in series.iter().flat_map(|s| &s.points) {
        let end = point.interval.as_ref().and_then(|i| i.end_time).ok_or("a point without an interval end time")?;
        let end = SystemTime::try_from(end).map_err(|e| format!("a point's end time is out of range: {e}"))?;
        let typed = point.value.as_ref().ok_or("a point without a value")?;
        let value = match (typed.int64_value(), typed.double_value()) {
            // Counts stay far below 2^53, where f64 is exact.
            (Some(count), _) => *count as f64,
            (None, Some(value)) => *value,
            (None, None) => return Err(format!("a point whose value is neither int64 nor double: {typed:?}")),
        };
        if newest.is_none_or(|n| end > n.end) {
            newest = Some(Sample { end, value });
        }
    }
    Ok(newest)
}

fn timestamp(time: SystemTime) -> Timestamp {
    let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let seconds = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    Timestamp::clamp(seconds, i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0))
}

/// The two Google APIs a read may call.
#[derive(Clone, Copy)]
enum Api {
    Monitoring,
    PubSub,
}

/// A call to a Google API that failed, as much of it as a reading's error needs (a batch's error is every reader's).
#[derive(Debug, Clone)]
pub(crate) struct CallFailure {
    code: Option<Code>,
    http: Option<u16>,
    authentication: bool,
    transport: bool,
    detail: String,
}

impl CallFailure {
    fn of(error: &google_cloud_gax::error::Error, secrets: &Secrets) -> CallFailure {
        CallFailure {
            code: error.status().map(|s| s.code),
            http: error.http_status_code(),
            authentication: error.is_authentication(),
            transport: error.is_connect() || error.is_io() || error.is_timeout(),
            detail: secrets.scrub(&error_chain(error)),
        }
    }
}

/// Why a batch has no answer for a project.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The client could not be built; the same error for every subscription.
    Client(SourceError),
    /// A call failed.
    Call(CallFailure),
}

/// The Monitoring series of one subscription, per metric.
#[derive(Debug, Clone, Default)]
pub(crate) struct SubscriptionSeries {
    backlog: Vec<TimeSeries>,
    oldest: Vec<TimeSeries>,
}

/// What one reader asks the Monitoring batch: a subscription, over its window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SeriesKey {
    project: String,
    id: String,
    window: Duration,
}

/// One Monitoring batch: when it asked, and per project the series of every subscription asked, or why not.
pub(crate) struct SeriesAnswer {
    now: SystemTime,
    projects: HashMap<String, Result<HashMap<String, SubscriptionSeries>, Failure>>,
}

/// The longest filter one `list_time_series` carries: the filter travels in the URL of a GET, which front ends cap
/// at a few kilobytes once percent-encoded. Subscriptions beyond it go into further requests.
const MAX_FILTER: usize = 6_000;

/// One Cloud Monitoring endpoint, shared by every subscription read through it: one client, built on the first
/// read, and one batch per poll — per project, one `list_time_series` per metric for all its subscriptions (more
/// only when their ids exceed [`MAX_FILTER`]).
pub(crate) struct MonitoringClient {
    endpoint: Option<String>,
    shown: String,
    secrets: Secrets,
    read_timeout: Duration,
    client: OnceCell<MetricService>,
    batcher: Batcher<MonitoringClient>,
}

impl MonitoringClient {
    async fn client(&self) -> Result<&MetricService, SourceError> {
        self.client
            .get_or_try_init(|| async {
                let mut builder = MetricService::builder().with_retry_policy(NeverRetry);
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
                    if endpoint.starts_with("http://") {
                        builder = builder.with_credentials(anonymous::Builder::new().build());
                    }
                }
                builder.build().await.map_err(|e| client_build_error(&e, &self.secrets, self.shown.clone()))
            })
            .await
    }

    /// The series of `metric` for the subscriptions `ids` of `project`, from `start` to `now`, by subscription id.
    async fn series(
        &self,
        client: &MetricService,
        project: &str,
        metric: &'static str,
        ids: &[&str],
        (start, now): (SystemTime, SystemTime),
    ) -> Result<Vec<(&'static str, TimeSeries)>, CallFailure> {
        let mut pages = client
            .list_time_series()
            .set_name(format!("projects/{project}"))
            .set_filter(filter(metric, project, ids))
            .set_interval(TimeInterval::new().set_start_time(timestamp(start)).set_end_time(timestamp(now)))
            .by_page();
        let mut series = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| CallFailure::of(&e, &self.secrets))?;
            series.extend(page.time_series.into_iter().map(|s| (metric, s)));
        }
        Ok(series)
    }

    async fn project(
        &self,
        client: &MetricService,
        project: &str,
        asked: &BTreeMap<&str, Duration>,
        now: SystemTime,
    ) -> Result<HashMap<String, SubscriptionSeries>, Failure> {
        let window = asked.values().copied().max().unwrap_or_default();
        let start = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        let ids: Vec<&str> = asked.keys().copied().collect();
        let calls: Vec<_> = [BACKLOG_METRIC, OLDEST_AGE_METRIC]
            .into_iter()
            .flat_map(|metric| chunks(metric, project, &ids).into_iter().map(move |ids| (metric, ids)))
            .map(|(metric, ids)| async move { self.series(client, project, metric, &ids, (start, now)).await })
            .collect();
        let mut by_id: HashMap<String, SubscriptionSeries> = HashMap::new();
        for answer in futures::future::join_all(calls).await {
            for (metric, series) in answer.map_err(Failure::Call)? {
                let labels = series.resource.as_ref().map(|r| &r.labels);
                let label = |name: &str| labels.and_then(|l| l.get(name)).cloned().unwrap_or_default();
                if label("project_id") != project {
                    continue;
                }
                let of = by_id.entry(label("subscription_id")).or_default();
                match metric {
                    BACKLOG_METRIC => of.backlog.push(series),
                    _ => of.oldest.push(series),
                }
            }
        }
        Ok(by_id)
    }
}

impl Batched for MonitoringClient {
    type Key = SeriesKey;
    type Answer = Arc<SeriesAnswer>;

    fn batcher(&self) -> &Batcher<Self> {
        &self.batcher
    }

    async fn fetch(self: Arc<Self>, keys: Vec<SeriesKey>) -> Arc<SeriesAnswer> {
        let this = &*self;
        let now = SystemTime::now();
        let mut projects: BTreeMap<&str, BTreeMap<&str, Duration>> = BTreeMap::new();
        for key in &keys {
            let window = projects.entry(&key.project).or_default().entry(&key.id).or_default();
            *window = (*window).max(key.window);
        }
        let answers = match this.client().await {
            Err(error) => projects.keys().map(|p| (p.to_string(), Err(Failure::Client(error.clone())))).collect(),
            Ok(client) => {
                let asked = projects.iter().map(|(project, ids)| async move {
                    let answer = tokio::time::timeout(this.read_timeout, this.project(client, project, ids, now)).await;
                    let answer = answer.unwrap_or(Err(Failure::Client(SourceError::Timeout(this.read_timeout))));
                    (project.to_string(), answer)
                });
                futures::future::join_all(asked).await.into_iter().collect()
            }
        };
        Arc::new(SeriesAnswer { now, projects: answers })
    }
}

/// The ids of `ids` that fit one filter each, in as few filters as [`MAX_FILTER`] allows.
fn chunks<'a>(metric: &str, project: &str, ids: &[&'a str]) -> Vec<Vec<&'a str>> {
    let fixed = filter(metric, project, &[]).len();
    let mut chunks: Vec<Vec<&str>> = Vec::new();
    let mut length = fixed;
    for id in ids {
        let cost = id.len() + 4;
        match chunks.last_mut() {
            Some(chunk) if length + cost <= MAX_FILTER => chunk.push(id),
            _ => {
                chunks.push(vec![id]);
                length = fixed;
            }
        }
        length += cost;
    }
    chunks
}

/// One Pub/Sub API endpoint, shared by every subscription read through it: asked which subscriptions exist when
/// Monitoring has nothing recent to say about some, with one listing per project per poll for all of them.
pub(crate) struct AdminClient {
    endpoint: Option<String>,
    shown: String,
    secrets: Secrets,
    read_timeout: Duration,
    admin: OnceCell<SubscriptionAdmin>,
    batcher: Batcher<AdminClient>,
}

impl AdminClient {
    async fn admin(&self) -> Result<&SubscriptionAdmin, SourceError> {
        self.admin
            .get_or_try_init(|| async {
                let mut builder = SubscriptionAdmin::builder().with_retry_policy(NeverRetry);
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
                    if endpoint.starts_with("http://") {
                        builder = builder.with_credentials(anonymous::Builder::new().build());
                    }
                }
                builder.build().await.map_err(|e| client_build_error(&e, &self.secrets, self.shown.clone()))
            })
            .await
    }

    /// The full names of every subscription of `project`.
    async fn subscriptions(&self, admin: &SubscriptionAdmin, project: &str) -> Result<HashSet<String>, Failure> {
        let mut pages =
            admin.list_subscriptions().set_project(format!("projects/{project}")).set_page_size(1000).by_page();
        let mut names = HashSet::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Failure::Call(CallFailure::of(&e, &self.secrets)))?;
            names.extend(page.subscriptions.into_iter().map(|s| s.name));
        }
        Ok(names)
    }
}

impl Batched for AdminClient {
    type Key = String;
    type Answer = Arc<HashMap<String, Result<HashSet<String>, Failure>>>;

    fn batcher(&self) -> &Batcher<Self> {
        &self.batcher
    }

    async fn fetch(self: Arc<Self>, projects: Vec<String>) -> Self::Answer {
        let this = &*self;
        let answers = match this.admin().await {
            Err(error) => projects.into_iter().map(|p| (p, Err(Failure::Client(error.clone())))).collect(),
            Ok(admin) => {
                let asked = projects.into_iter().map(|project| async move {
                    let listed = tokio::time::timeout(this.read_timeout, this.subscriptions(admin, &project)).await;
                    let listed = listed.unwrap_or(Err(Failure::Client(SourceError::Timeout(this.read_timeout))));
                    (project, listed)
                });
                futures::future::join_all(asked).await.into_iter().collect()
            }
        };
        Arc::new(answers)
    }
}

fn client_build_error(
    error: &google_cloud_gax::client_builder::Error,
    secrets: &Secrets,
    endpoint: String,
) -> SourceError {
    let detail = secrets.scrub(&error_chain(error));
    if error.is_default_credentials() {
        SourceError::Denied { what: "Application Default Credentials".into(), detail }
    } else {
        SourceError::Unreachable { endpoint, detail }
    }
}

/// A Pub/Sub subscription's backlog reader: handles onto the Monitoring and Pub/Sub clients of its endpoints, shared
/// with every other subscription read through them.
pub struct PubSub {
    config: Config,
    monitoring: Shared<MonitoringClient>,
    admin: Shared<AdminClient>,
}

/// The read timeout of a reader made without the agent's: the agent's default `readTimeout`.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl PubSub {
    /// A reader for `config` with clients of its own, built on first use.
    pub fn new(config: Config) -> PubSub {
        PubSub::shared(config, DEFAULT_READ_TIMEOUT, &Clients::new())
    }

    /// A reader for `config` on the clients `clients` holds for its endpoints, or new ones; they are built on first
    /// use. `read_timeout` bounds one batch.
    pub fn shared(config: Config, read_timeout: Duration, clients: &Clients) -> PubSub {
        let secrets = config.secrets();
        let endpoint = config.endpoint.clone();
        let monitoring = clients.monitoring(format!("{endpoint:?}\n{read_timeout:?}"), || MonitoringClient {
            shown: redact::url(endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT)),
            endpoint,
            secrets: secrets.clone(),
            read_timeout,
            client: OnceCell::new(),
            batcher: Batcher::default(),
        });
        let endpoint = config.pubsub_endpoint.clone();
        let admin = clients.pubsub_admin(format!("{endpoint:?}\n{read_timeout:?}"), || AdminClient {
            shown: redact::url(endpoint.as_deref().unwrap_or(DEFAULT_PUBSUB_ENDPOINT)),
            endpoint,
            secrets,
            read_timeout,
            admin: OnceCell::new(),
            batcher: Batcher::default(),
        });
        PubSub { config, monitoring, admin }
    }

    fn endpoint(&self) -> String {
        self.monitoring.shown.clone()
    }

    fn pubsub_endpoint(&self) -> String {
        self.admin.shown.clone()
    }

    /// Whether the subscription exists, from the Pub/Sub API's list of the project's subscriptions.
    async fn exists(&self, subscription: &Subscription) -> Result<bool, SourceError> {
        let answer = shared::read(self.admin.client(), subscription.project.clone()).await.ok_or_else(|| {
            SourceError::Protocol { endpoint: self.pubsub_endpoint(), detail: "the read stopped".into() }
        })?;
        match answer.get(&subscription.project) {
            Some(Ok(names)) => {
                Ok(names.contains(&format!("projects/{}/subscriptions/{}", subscription.project, subscription.id)))
            }
            Some(Err(failure)) => Err(self.failed(failure, subscription, Api::PubSub)),
            None => Err(SourceError::Protocol {
                endpoint: self.pubsub_endpoint(),
                detail: "the batch had no answer for this project".into(),
            }),
        }
    }

    fn failed(&self, failure: &Failure, subscription: &Subscription, api: Api) -> SourceError {
        match failure {
            Failure::Client(error) => error.clone(),
            Failure::Call(call) => self.classify(call, subscription, api),
        }
    }

    /// A failed call to `api` (Cloud Monitoring or the Pub/Sub API, at `endpoint`) as a [`SourceError`].
    fn classify(&self, failure: &CallFailure, subscription: &Subscription, api: Api) -> SourceError {
        let detail = failure.detail.clone();
        let (name, endpoint) = match api {
            Api::Monitoring => ("Cloud Monitoring", self.endpoint()),
            Api::PubSub => ("the Pub/Sub API", self.pubsub_endpoint()),
        };
        match (failure.code, failure.http) {
            (Some(Code::PermissionDenied | Code::Unauthenticated), _) | (_, Some(401 | 403)) => {
                SourceError::Denied { what: format!("project `{}` in {name}", subscription.project), detail }
            }
            (Some(Code::NotFound), _) | (_, Some(404)) => {
                SourceError::NotFound { what: format!("project `{}` in {name}", subscription.project), detail }
            }
            _ if failure.authentication => SourceError::Denied { what: format!("credentials for {name}"), detail },
            (Some(Code::Unavailable), _) | (_, Some(503)) => SourceError::Unreachable { endpoint, detail },
            _ if failure.transport => SourceError::Unreachable { endpoint, detail },
            _ => SourceError::Protocol { endpoint, detail },
        }
    }
}

impl ReadBacklog for PubSub {
    async fn read(&self) -> Result<Reading, SourceError> {
        let subscription = self.config.subscription().map_err(|problem| SourceError::NotFound {
            what: format!("subscription `{}`", self.config.subscription),
            detail: problem.message,
        })?;
        let key = SeriesKey {
            project: subscription.project.clone(),
            id: subscription.id.clone(),
            window: self.config.window(),
        };
        let answer = shared::read(self.monitoring.client(), key)
            .await
            .ok_or_else(|| SourceError::Protocol { endpoint: self.endpoint(), detail: "the read stopped".into() })?;
        let now = answer.now;
        let series = match answer.projects.get(&subscription.project) {
            Some(Ok(by_id)) => by_id.get(&subscription.id).cloned().unwrap_or_default(),
            Some(Err(failure)) => return Err(self.failed(failure, &subscription, Api::Monitoring)),
            None => {
                return Err(SourceError::Protocol {
                    endpoint: self.endpoint(),
                    detail: "the batch had no answer for this project".into(),
                });
            }
        };
        // The batch looks as far back as the longest window asked; this subscription's own window ends the series.
        let start = now.checked_sub(self.config.window()).unwrap_or(SystemTime::UNIX_EPOCH);
        let newest = |series: &[TimeSeries]| -> Result<Option<Sample>, SourceError> {
            let newest =
                newest_sample(series).map_err(|detail| SourceError::Protocol { endpoint: self.endpoint(), detail })?;
            Ok(newest.filter(|sample| sample.end > start))
        };
        let (backlog, oldest) = (newest(&series.backlog)?, newest(&series.oldest)?);
        let max = self.config.max_staleness;
        let age_at = |sample: &Sample| now.duration_since(sample.end).unwrap_or_default();
        let quiet = match backlog {
            None => true,
            Some(point) => age_at(&point) > max && point.value == 0.0,
        };
        if quiet {
            return self.idle_or_missing(&subscription).await;
        }
        let Some(backlog) = backlog else {
            unreachable!("no point at all is quiet");
        };
        let data_age = age_at(&backlog);
        if data_age > max {
            return Err(SourceError::Stale { age: data_age, max });
        }
        // A stale age would describe a queue that may no longer exist; leave it out rather than export it.
        let oldest_message_age = oldest
            .filter(|sample| age_at(sample) <= max)
            .and_then(|sample| Duration::try_from_secs_f64(sample.value).ok());
        Ok(Reading { backlog: backlog.value, data_age: Some(data_age), oldest_message_age, ..Reading::default() })
    }
}

impl PubSub {
    /// The reading when Monitoring has nothing recent to say: an existing subscription is idle (0), a missing one
    /// is a failed read.
    async fn idle_or_missing(&self, subscription: &Subscription) -> Result<Reading, SourceError> {
        if self.exists(subscription).await? {
            return Ok(Reading::default());
        }
        Err(SourceError::NotFound {
            what: format!("subscription `{}` in project `{}`", subscription.id, subscription.project),
            detail: format!(
                "the Pub/Sub API at {} does not know it, and Cloud Monitoring has no recent point for it; check both \
                 names",
                self.pubsub_endpoint()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use google_cloud_monitoring_v3::model::{Point, TypedValue};

    use super::*;
    use crate::source::{SourceKind, SourceSpec};

    fn spec(yaml: &str) -> SourceSpec {
        serde_norway::from_str(&format!("type: pubsub\nbacklogPerWorker: 10\n{yaml}")).expect("a valid source")
    }

    fn config(yaml: &str) -> Config {
        match spec(yaml).kind {
            SourceKind::PubSub(config) => config,
            other => panic!("not a pubsub source: {other:?}"),
        }
    }

    #[test]
    fn accepts_an_id_with_a_project_or_a_full_name() {
        let by_id = config("project: my-proj\nsubscription: transcoder_subscription");
        let full = config("subscription: projects/my-proj/subscriptions/transcoder_subscription");
        let expected = Subscription { project: "my-proj".into(), id: "transcoder_subscription".into() };
        assert_eq!(by_id.subscription(), Ok(expected.clone()));
        assert_eq!(full.subscription(), Ok(expected));
        assert_eq!(by_id.max_staleness, Duration::from_secs(300), "default maxStaleness");
        assert_eq!(by_id.window(), Duration::from_secs(600));
        assert!(by_id.problems().is_empty() && full.problems().is_empty());
        assert_eq!(spec("subscription: projects/p-1/subscriptions/jobs").name, "pubsub/jobs");
    }

    #[test]
    fn names_the_field_and_the_fix_for_each_mistake() {
        let cases = [
            ("subscription: jobs", "project", "missing; name the Google Cloud project"),
            ("project: a-proj\nsubscription: projects/b-proj/subscriptions/jobs", "project", "differs from"),
            ("subscription: projects/p/topics/jobs", "subscription", "write `projects/PROJECT/subscriptions/ID`"),
            ("project: p\nsubscription: 9lives", "subscription", "ids start with a letter"),
            ("project: p\nsubscription: \"jo\\\"bs\"", "subscription", "ids use only letters"),
            ("project: My_Proj\nsubscription: jobs", "project", "lowercase letters"),
            ("project: p\nsubscription: jobs\nmaxStaleness: 30s", "maxStaleness", "use at least `2m`"),
            ("project: p\nsubscription: jobs\nendpoint: monitoring:443", "endpoint", "not an http(s) URL"),
        ];
        for (yaml, field, words) in cases {
            let problems = config(yaml).problems();
            assert!(
                problems.iter().any(|p| p.path == field && p.message.contains(words)),
                "{yaml}: expected `{field}: …{words}…`, got {problems:?}"
            );
        }
    }

    #[test]
    fn rejects_unknown_fields_and_bad_durations() {
        let unknown =
            serde_norway::from_str::<SourceSpec>("type: pubsub\nbacklogPerWorker: 1\nsubscription: s\ntopic: t");
        assert!(unknown.expect_err("unknown field").to_string().contains("topic"));
        let duration =
            serde_norway::from_str::<SourceSpec>("type: pubsub\nbacklogPerWorker: 1\nsubscription: s\nmaxStaleness: 5");
        assert!(duration.expect_err("no unit").to_string().contains("duration"));
    }

    #[test]
    fn keeps_the_endpoint_password_secret() {
        let config = config("project: p\nsubscription: jobs\nendpoint: https://proxy:hunter22@gw.example/");
        assert_eq!(config.secrets().scrub("refused hunter22"), "refused ***");
    }

    #[test]
    fn the_filter_selects_one_metric_of_one_subscription_of_one_project() {
        let jobs = Subscription { project: "video-prod".into(), id: "jobs".into() };
        assert_eq!(
            filter(BACKLOG_METRIC, &jobs.project, &[&jobs.id]),
            "metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type = \
             \"pubsub_subscription\" AND resource.labels.project_id = \"video-prod\" AND \
             resource.labels.subscription_id = \"jobs\""
        );
    }

    #[test]
    fn many_subscriptions_split_over_filters_no_longer_than_the_limit() {
        let names: Vec<String> = (0..1_000).map(|i| format!("transcoder-subscription-{i:04}")).collect();
        let ids: Vec<&str> = names.iter().map(String::as_str).collect();
        let split = chunks(BACKLOG_METRIC, "video-prod", &ids);
        assert!(split.len() > 1 && split.len() < 10, "{} filters", split.len());
        for chunk in &split {
            let filter = filter(BACKLOG_METRIC, "video-prod", chunk);
            assert!(filter.len() <= MAX_FILTER, "{} characters", filter.len());
            assert!(filter.contains(&format!("subscription_id = one_of(\"{}\", ", chunk[0])), "{filter}");
        }
        assert_eq!(split.concat(), ids, "every id once, in order");
        assert_eq!(chunks(BACKLOG_METRIC, "p", &["jobs"]), [vec!["jobs"]]);
    }

    fn point(seconds: i64, value: TypedValue) -> Point {
        Point::new().set_interval(TimeInterval::new().set_end_time(Timestamp::clamp(seconds, 0))).set_value(value)
    }

    #[test]
    fn the_newest_point_wins_across_series_whatever_their_order() {
        let older = TimeSeries::new().set_points([
            point(1_000, TypedValue::new().set_int64_value(7)),
            point(1_120, TypedValue::new().set_int64_value(9)),
        ]);
        let newer = TimeSeries::new().set_points([point(1_180, TypedValue::new().set_double_value(4.5))]);
        let newest = newest_sample(&[older, newer]).expect("valid").expect("a point");
        assert_eq!(newest.value, 4.5);
        assert_eq!(newest.end, SystemTime::UNIX_EPOCH + Duration::from_secs(1_180));
        assert_eq!(newest_sample(&[]), Ok(None));
        assert_eq!(newest_sample(&[TimeSeries::new()]), Ok(None));
    }

    #[test]
    fn a_point_without_a_value_or_time_is_an_error() {
        let no_value = TimeSeries::new().set_points([point(1, TypedValue::new())]);
        assert!(newest_sample(&[no_value]).expect_err("no value").contains("neither int64 nor double"));
        let no_time = TimeSeries::new().set_points([Point::new().set_value(TypedValue::new().set_int64_value(1))]);
        assert!(newest_sample(&[no_time]).expect_err("no time").contains("end time"));
    }
}
