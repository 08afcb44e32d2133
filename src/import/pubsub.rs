//! KEDA's `gcp-pubsub` trigger as a `pubsub` source: undelivered messages per replica, from Cloud Monitoring.

use super::document::number;
use super::scaled_object::{Trigger, activation, number_or};

/// KEDA's `value` default for `SubscriptionSize`.
const SUBSCRIPTION_SIZE: f64 = 10.0;

pub(super) fn map(t: &mut Trigger) -> bool {
    let Some(subscription) = t.required("subscriptionName") else { return false };
    if let Some(mode) = t.meta.text("mode").filter(|m| m != "SubscriptionSize") {
        t.comments.push(format!("# not imported: mode `{mode}`: queue-scaler scales on undelivered messages"));
        t.notes.warnings.push(t.doc.warning(&t.meta.path_of("mode"), &format!("not imported: mode `{mode}`")));
        return false;
    }
    if !subscription.starts_with("projects/") {
        t.comments.push("# subscription: add `project:`, or write it as projects/P/subscriptions/S".to_owned());
    }
    t.set_text("subscription", &subscription);
    // `subscriptionSize` is the deprecated spelling of `value`.
    let size = match t.meta.text("subscriptionSize") {
        Some(old) => old.parse().unwrap_or(SUBSCRIPTION_SIZE),
        None => number_or(t, "value", SUBSCRIPTION_SIZE),
    };
    t.set("backlogPerWorker", number(size));
    activation(t, "activationValue");
    if let Some(credentials) = t.meta.text("credentialsFromEnv") {
        t.comments.push(format!(
            "# credentialsFromEnv {credentials}: the agent uses Workload Identity or GOOGLE_APPLICATION_CREDENTIALS"
        ));
    }
    if let Some(placeholder) = t.param("GoogleApplicationCredentials") {
        t.comments.push(format!(
            "# GoogleApplicationCredentials = {placeholder}: mount it as a file and point \
             GOOGLE_APPLICATION_CREDENTIALS at it"
        ));
    }
    t.skip("valueIfNull", "queue-scaler reads a subscription without points as idle when it exists");
    t.skip("aggregation", "queue-scaler reads num_undelivered_messages as is");
    t.skip("timeHorizon", "queue-scaler reads the newest point");
    true
}
