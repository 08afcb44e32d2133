//! KEDA's `prometheus` trigger as a `prometheus` source: the query's value per replica.

use super::document::number;
use super::scaled_object::{Trigger, activation, flag};

pub(super) fn map(t: &mut Trigger) -> bool {
    let (Some(url), Some(query)) = (t.required("serverAddress"), t.required("query")) else {
        return false;
    };
    let Some(threshold) = t.required("threshold") else { return false };
    let url = match (t.param("username"), t.param("password")) {
        (Some(user), Some(password)) => url.replacen("://", &format!("://{user}:{password}@"), 1),
        _ => url,
    };
    t.set_text("url", &url);
    t.set_text("query", &query);
    t.set("backlogPerWorker", number(threshold.trim().parse().unwrap_or(1.0)));
    activation(t, "activationThreshold");
    // KEDA reads an empty result as 0 unless told not to; queue-scaler's default is to hold, so say it.
    let ignore = flag(t, "ignoreNullValues").unwrap_or(true);
    t.set("ignoreNullValues", ignore.to_string());
    if let Some(token) = t.param("bearerToken") {
        t.comments.push(format!(
            "# bearerToken = {token}: mount it as a file and set bearerTokenFile (queue-scaler reads tokens from files)"
        ));
    }
    t.meta.text("authModes");
    t.skip("namespace", "no equivalent in queue-scaler; put the tenant in the URL or query");
    t.skip("customHeaders", "no equivalent in queue-scaler");
    t.skip("queryParameters", "no equivalent in queue-scaler");
    t.skip("unsafeSsl", "no equivalent in queue-scaler");
    t.skip("cortexOrgID", "no equivalent in queue-scaler");
    t.skip("timeout", "the agent's read timeout is its pollInterval");
    true
}
