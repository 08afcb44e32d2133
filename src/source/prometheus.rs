//! Prometheus: any PromQL query as the backlog, for signals that are not a queue.
//!
//! Open connections per frontend, requests in progress, a queue that only a metric describes: the query's value
//! plays the backlog and `backlogPerWorker` is the target per replica (KEDA's prometheus `threshold`), so
//! `recommendation = ceil(value / backlogPerWorker)`.
//!
//! The query runs as an instant query, `GET {url}/api/v1/query?query=…`, and must come back as one number:
//!
//! * a **scalar**, or a **vector with one sample** — the value;
//! * an **empty vector** — a failed read of its own kind (`empty`), which holds the count like any failure:
//!   `sum()` over series that went stale because the exporter crashed is empty, not 0, and reading it as 0 would
//!   scale a Deployment to zero in the middle of an outage. `ignoreNullValues: true` reads it as 0 instead — KEDA's
//!   default, right when series are absent because nothing happened yet, and a risk whenever they are absent
//!   because the exporter is down or a metric name is misspelt;
//! * anything else — several series, a range vector, a string, NaN, an infinity or a negative number — is an
//!   error that names the query (for several series, how many, and to aggregate them with `sum()`).
//!
//! [`Reading::data_age`](super::Reading::data_age) says how old the value may be. Prometheus stamps instant-query samples with the evaluation
//! time, not the scrape's, so between scrapes it answers the same value with a fresh timestamp: a value that did
//! not change since an earlier read is taken to be that earlier scrape, and its age counts from when it was first
//! read (for at most [`SAME_VALUE_AT_MOST`], beyond which an unchanged value is a fresh reading of an unchanged
//! queue). That keeps latency mode's rate estimates from seeing no growth for several polls and then a scrape's
//! worth at once, which looks like a burst. A series whose target stopped reporting drops out of the result
//! (staleness markers, or the 5-minute lookback), which is the empty result above.
//!
//! Credentials: basic auth from the URL's userinfo, or a bearer token from `bearerTokenFile`, read again at every
//! poll because projected service-account tokens rotate.

#[cfg(feature = "prometheus")]
mod reader;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::redact::{self, Secrets};
use crate::validation::Problem;

#[cfg(feature = "prometheus")]
pub use reader::Prometheus;
#[cfg(feature = "prometheus")]
pub(crate) use reader::ServerClient;

/// `type: prometheus` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The server's base URL, e.g. `http://prometheus:9090` (with a path prefix if it has one); basic-auth
    /// credentials may ride in its userinfo.
    pub url: String,
    /// The PromQL query; it must return one number.
    pub query: String,
    /// A file holding a bearer token, sent as `Authorization: Bearer …` (read at every poll).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Read an empty result as 0 rather than as a failed read (the default, which holds the count).
    #[serde(default)]
    pub ignore_null_values: bool,
}

/// The longest an unchanged value is taken for the same scrape: longer than the common scrape intervals (15 s to
/// 1 min) with room for a missed scrape.
pub const SAME_VALUE_AT_MOST: Duration = Duration::from_secs(120);

impl Config {
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        match Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                if url.query().is_some() || url.path().contains("/api/v1") {
                    problems.push(Problem::new(
                        "url",
                        format!(
                            "`{}` should be the server's base URL; drop the API path and query, e.g. `http://prometheus:9090`",
                            redact::url(&self.url)
                        ),
                    ));
                }
                if !url.username().is_empty() && self.bearer_token_file.is_some() {
                    problems.push(Problem::new(
                        "bearerTokenFile",
                        "is set along with credentials in `url`; use one way to authenticate",
                    ));
                }
            }
            _ => problems.push(Problem::new(
                "url",
                format!("`{}` is not an http(s) URL; write e.g. `http://prometheus:9090`", redact::url(&self.url)),
            )),
        }
        if self.query.trim().is_empty() {
            problems.push(Problem::new(
                "query",
                "is empty; write a PromQL query that returns one number, e.g. `sum(open_connections)`",
            ));
        }
        problems
    }

    pub(super) fn secrets(&self) -> Secrets {
        let mut secrets = Secrets::default();
        secrets.add_url_password(&self.url);
        secrets
    }
}
