//! The Prometheus reader: one instant query per source and poll, a bound on queries in flight per server.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::sync::Semaphore;

use super::super::shared::{self, Clients, Shared};
use super::super::{ReadBacklog, Reading, SourceError, error_chain};
use super::{Config, SAME_VALUE_AT_MOST};
use crate::redact::{self, Secrets};

/// How many series an error about several series lists before it says "…".
const SERIES_SHOWN: usize = 3;

/// A Prometheus query's value as a backlog.
pub struct Prometheus {
    config: Config,
    secrets: Secrets,
    http: reqwest::Client,
    bound: Shared<ServerClient>,
    /// The last value read and when it was first read.
    last: Mutex<Option<(f64, Instant)>>,
}

/// One Prometheus server, as every query sent there shares it: the agent's one HTTP client, and a bound on the
/// queries in flight. Prometheus answers one query per request, so each source costs a request, at most
/// [`CONCURRENT_READS`](shared::CONCURRENT_READS) at once.
pub(crate) struct ServerClient {
    reads: Semaphore,
}

impl ServerClient {
    pub(crate) fn new() -> ServerClient {
        ServerClient { reads: Semaphore::new(shared::CONCURRENT_READS) }
    }
}

impl Prometheus {
    /// A reader for `config`; nothing is contacted until the first read.
    pub fn new(config: Config) -> Prometheus {
        Prometheus::shared(config, &Clients::new())
    }

    /// A reader for `config` whose queries share the bound `clients` holds for its server.
    pub fn shared(config: Config, clients: &Clients) -> Prometheus {
        let bound = clients.prometheus(config.url.clone(), ServerClient::new);
        Prometheus { secrets: config.secrets(), config, http: crate::outbound::client(), bound, last: Mutex::new(None) }
    }

    /// How long `value` has been the answer, if it was the answer before (up to [`SAME_VALUE_AT_MOST`]).
    fn unchanged_for(&self, value: f64, now: Instant) -> Duration {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some((previous, since)) if previous == value && now.duration_since(since) < SAME_VALUE_AT_MOST => {
                now.duration_since(since)
            }
            _ => {
                *last = Some((value, now));
                Duration::ZERO
            }
        }
    }

    fn server(&self) -> String {
        redact::url(&self.config.url)
    }

    fn query(&self) -> String {
        format!("query `{}`", self.config.query)
    }

    /// `{url}/api/v1/query?query=…` without userinfo, and the basic-auth credentials the userinfo held.
    fn request_url(&self) -> Result<(Url, Option<(String, String)>), SourceError> {
        let mut url = Url::parse(&self.config.url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
            .ok_or_else(|| SourceError::Protocol {
                endpoint: self.server(),
                detail: "`url` is not an http(s) URL".into(),
            })?;
        let credentials = (!url.username().is_empty()).then(|| {
            let password = url.password().map(redact::percent_decode).unwrap_or_default();
            (redact::percent_decode(url.username()), password)
        });
        // Neither call can fail on an http(s) URL with a host, which is the only kind that reaches a server.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let path = format!("{}/api/v1/query", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.query_pairs_mut().append_pair("query", &self.config.query);
        Ok((url, credentials))
    }

    async fn bearer_token(&self) -> Result<Option<String>, SourceError> {
        let Some(path) = self.config.bearer_token_file.clone() else {
            return Ok(None);
        };
        let shown = path.display().to_string();
        let denied = |detail: String| SourceError::Denied { what: format!("bearer token file {shown}"), detail };
        let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
            .await
            .map_err(|e| denied(e.to_string()))?
            .map_err(|e| denied(e.to_string()))?;
        Ok(Some(read.trim().to_owned()))
    }

    async fn answer(&self) -> Result<Envelope, SourceError> {
        let (url, credentials) = self.request_url()?;
        let mut secrets = self.secrets.clone();
        let mut request = self.http.get(url);
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(token) = self.bearer_token().await? {
            secrets.add(token.as_str());
            request = request.bearer_auth(token);
        }
        let _permit = self.bound.reads.acquire().await.map_err(|e| SourceError::Protocol {
            endpoint: self.server(),
            detail: format!("the read bound is closed: {e}"),
        })?;
        let response = request.send().await.map_err(|e| SourceError::Unreachable {
            endpoint: self.server(),
            detail: secrets.scrub(&error_chain(&e)),
        })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| SourceError::Unreachable {
            endpoint: self.server(),
            detail: secrets.scrub(&error_chain(&e)),
        })?;
        let parsed = serde_json::from_str::<Envelope>(&body);
        let said = parsed.as_ref().ok().and_then(Envelope::error_text);
        let detail = secrets.scrub(&said.unwrap_or_else(|| format!("HTTP {status}")));
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(SourceError::Denied { what: self.server(), detail });
            }
            StatusCode::NOT_FOUND => {
                return Err(SourceError::NotFound {
                    what: format!("the query API at {}/api/v1/query", self.server().trim_end_matches('/')),
                    detail: format!("{detail}; `url` must be the server's base URL"),
                });
            }
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                return Err(SourceError::Protocol {
                    endpoint: self.server(),
                    detail: format!("{} failed: {detail}", self.query()),
                });
            }
            _ => return Err(SourceError::Unreachable { endpoint: self.server(), detail }),
        }
        parsed.map_err(|e| SourceError::Protocol {
            endpoint: self.server(),
            detail: format!("{}: the answer is not a query result: {e}", self.query()),
        })
    }

    /// The one number an answer must hold, and when Prometheus stamped it.
    fn value(&self, answer: Envelope) -> Result<Option<(f64, f64)>, SourceError> {
        let rejected = |why: String| SourceError::Rejected(self.secrets.scrub(&format!("{} {why}", self.query())));
        let Some(result) = answer.data else {
            return Err(rejected(format!("failed: {}", answer.error_text().unwrap_or_else(|| "no data".into()))));
        };
        let (timestamp, text) = match result {
            QueryResult::Scalar(sample) => sample,
            QueryResult::Vector(series) => match <[Series; 1]>::try_from(series) {
                Ok([one]) => one.value,
                Err(series) if series.is_empty() => return self.empty(),
                Err(series) => return Err(rejected(several_series(&series))),
            },
            QueryResult::Matrix(_) => {
                return Err(rejected(
                    "returned a range vector; drop the `[range]` or wrap it, e.g. in `sum(rate(…))`".into(),
                ));
            }
            QueryResult::String(_) => return Err(rejected("returned a string, not a number".into())),
        };
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() && value >= 0.0 => Ok(Some((value, timestamp))),
            _ => Err(rejected(format!("returned {text}, which is not a count (finite and not negative)"))),
        }
    }

    fn empty(&self) -> Result<Option<(f64, f64)>, SourceError> {
        if self.config.ignore_null_values {
            return Ok(None);
        }
        Err(SourceError::Empty {
            what: format!("the result of {}", self.query()),
            detail: "no series (an exporter that is down, a misspelt metric, or nothing reported yet); holding the \
                     count. Set `ignoreNullValues: true` if an empty result means 0 for this query"
                .into(),
        })
    }
}

impl ReadBacklog for Prometheus {
    async fn read(&self) -> Result<Reading, SourceError> {
        let answer = self.answer().await?;
        Ok(match self.value(answer)? {
            Some((backlog, stamped)) => {
                let age = age_of(stamped).max(self.unchanged_for(backlog, Instant::now()));
                Reading { backlog, data_age: Some(age), ..Reading::default() }
            }
            None => Reading::default(),
        })
    }
}

/// How long ago a Unix timestamp in seconds was; zero if it lies ahead (clock skew).
fn age_of(timestamp: f64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    Duration::try_from_secs_f64(now - timestamp).unwrap_or_default()
}

fn several_series(series: &[Series]) -> String {
    let mut shown: Vec<String> = series.iter().take(SERIES_SHOWN).map(Series::labels).collect();
    if series.len() > SERIES_SHOWN {
        shown.push("…".into());
    }
    format!(
        "returned {} series ({}); it must return one number: aggregate them, e.g. `sum(…)`",
        series.len(),
        shown.join(", ")
    )
}

/// The envelope of every `/api/v1` answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    data: Option<QueryResult>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl Envelope {
    fn error_text(&self) -> Option<String> {
        let error = self.error.as_deref()?;
        Some(match &self.error_type {
            Some(kind) => format!("{kind}: {error}"),
            None => error.to_owned(),
        })
    }
}

/// `data` of an instant query: `{"resultType": "vector", "result": […]}`.
#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryResult {
    Scalar((f64, String)),
    Vector(Vec<Series>),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

/// One sample of a vector: its labels and `[timestamp, "value"]`.
#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl Series {
    /// `name{label="value",…}`, as Prometheus prints a series.
    fn labels(&self) -> String {
        let name = self.metric.get("__name__").map_or("", String::as_str);
        let labels: Vec<String> =
            self.metric.iter().filter(|(k, _)| *k != "__name__").map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{name}{{{}}}", labels.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, query: &str) -> Config {
        Config { url: url.to_owned(), query: query.to_owned(), bearer_token_file: None, ignore_null_values: false }
    }

    fn reader(query: &str) -> Prometheus {
        Prometheus::new(config("http://prometheus:9090", query))
    }

    fn value_of(reader: &Prometheus, json: &str) -> Result<Option<(f64, f64)>, SourceError> {
        reader.value(serde_json::from_str(json).expect("an API answer"))
    }

    fn vector(samples: &[(&str, &str)]) -> String {
        let series: Vec<String> = samples
            .iter()
            .map(|(pod, value)| {
                format!(r#"{{"metric":{{"__name__":"jobs","pod":"{pod}"}},"value":[1700000000.5,"{value}"]}}"#)
            })
            .collect();
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, series.join(","))
    }

    #[test]
    fn one_sample_or_a_scalar_is_the_value() {
        let r = reader("sum(jobs)");
        assert_eq!(value_of(&r, &vector(&[("a", "42")])).expect("one sample"), Some((42.0, 1_700_000_000.5)));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000001,"7.5"]}}"#;
        assert_eq!(value_of(&r, scalar).expect("a scalar"), Some((7.5, 1_700_000_001.0)));
    }

    #[test]
    fn several_series_say_how_many_and_to_aggregate() {
        let r = reader("jobs");
        let error = value_of(&r, &vector(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")])).expect_err("4 series");
        let text = error.to_string();
        assert_eq!(error.kind(), "rejected");
        assert!(text.contains("query `jobs` returned 4 series"), "{text}");
        assert!(text.contains(r#"jobs{pod="a"}, jobs{pod="b"}, jobs{pod="c"}, …"#), "{text}");
        assert!(text.contains("sum("), "{text}");
    }

    #[test]
    fn an_empty_result_is_a_failed_read_unless_null_values_are_ignored() {
        let empty = vector(&[]);
        let error = value_of(&reader("sum(jobs)"), &empty).expect_err("empty is refused by default");
        assert_eq!(error.kind(), "empty");
        assert!(error.to_string().contains("query `sum(jobs)`"), "{error}");
        assert!(error.to_string().contains("ignoreNullValues: true"), "{error}");
        let lenient = Prometheus::new(Config { ignore_null_values: true, ..config("http://p:9090", "sum(jobs)") });
        assert_eq!(value_of(&lenient, &empty).expect("empty is 0 when asked"), None);
        let parsed: Config = serde_norway::from_str("url: http://p:9090\nquery: sum(jobs)").expect("parses");
        assert!(!parsed.ignore_null_values, "the default holds the count");
    }

    #[test]
    fn an_unchanged_value_ages_from_its_first_read_for_at_most_two_minutes() {
        let r = reader("sum(jobs)");
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(r.unchanged_for(5.0, at(0)), Duration::ZERO);
        assert_eq!(r.unchanged_for(5.0, at(10)), Duration::from_secs(10), "the same scrape, read again");
        assert_eq!(r.unchanged_for(6.0, at(15)), Duration::ZERO, "a new value is a new scrape");
        assert_eq!(r.unchanged_for(6.0, at(134)), Duration::from_secs(119));
        assert_eq!(r.unchanged_for(6.0, at(135)), Duration::ZERO, "after two minutes: a fresh reading");
    }

    #[test]
    fn values_that_are_not_counts_are_refused_naming_the_query() {
        for bad in ["NaN", "+Inf", "-Inf", "-3"] {
            let error = value_of(&reader("q"), &vector(&[("a", bad)])).expect_err(bad);
            assert!(error.to_string().contains(&format!("query `q` returned {bad}")), "{error}");
        }
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(value_of(&reader("q[1m]"), matrix).expect_err("matrix").to_string().contains("range vector"));
        let string = r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#;
        assert!(value_of(&reader("\"x\""), string).expect_err("string").to_string().contains("a string"));
    }

    #[test]
    fn the_request_goes_to_the_query_api_without_userinfo() {
        let r = Prometheus::new(config("https://scaler:p%40ss@mon.example/prom/", "sum(rate(x[1m])) > 0"));
        let (url, credentials) = r.request_url().expect("a URL");
        assert_eq!(url.as_str(), "https://mon.example/prom/api/v1/query?query=sum%28rate%28x%5B1m%5D%29%29+%3E+0");
        assert_eq!(credentials, Some(("scaler".to_owned(), "p@ss".to_owned())));
        assert_eq!(r.secrets.scrub("p%40ss and p@ss"), "*** and ***");
        let (plain, none) = reader("up").request_url().expect("a URL");
        assert_eq!((plain.as_str(), none), ("http://prometheus:9090/api/v1/query?query=up", None));
    }

    #[test]
    fn problems_name_the_field_and_the_fix() {
        assert!(config("http://prometheus:9090", "sum(x)").problems().is_empty());
        let messages =
            |c: Config| c.problems().into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>();
        assert_eq!(
            messages(config("prometheus:9090", " ")),
            [
                "url: `prometheus:9090` is not an http(s) URL; write e.g. `http://prometheus:9090`",
                "query: is empty; write a PromQL query that returns one number, e.g. `sum(open_connections)`",
            ]
        );
        let api_path = messages(config("http://u:hunter2@p:9090/api/v1/query", "x"));
        assert_eq!(api_path.len(), 1, "{api_path:?}");
        assert!(api_path[0].starts_with("url: `http://u:***@p:9090/api/v1/query` should be the server's base URL"));
        let both = Config { bearer_token_file: Some("/var/run/token".into()), ..config("http://u:pw@p:9090", "x") };
        assert_eq!(
            messages(both),
            ["bearerTokenFile: is set along with credentials in `url`; use one way to authenticate"]
        );
    }

    #[test]
    fn ages_count_back_from_now_and_never_go_negative() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64();
        let age = age_of(now - 30.0);
        assert!(age >= Duration::from_secs(30) && age < Duration::from_secs(31), "{age:?}");
        assert_eq!(age_of(now + 60.0), Duration::ZERO);
    }
}
