//! KEDA's `aws-sqs-queue` trigger as an `sqs` source: visible (and by default in-flight) messages per replica.

use super::document::number;
use super::scaled_object::{Trigger, activation, flag, number_or};

/// KEDA's `queueLength` default.
const QUEUE_LENGTH: f64 = 5.0;

pub(super) fn map(t: &mut Trigger) -> bool {
    let Some(url) = t.required("queueURL") else { return false };
    t.set_text("queueUrl", &url);
    if let Some(region) = t.param("awsRegion") {
        t.set_text("region", &region);
    }
    if let Some(endpoint) = t.param("awsEndpoint").filter(|e| !e.is_empty()) {
        t.set_text("endpointUrl", &endpoint);
    }
    if let Some(on) = flag(t, "scaleOnInFlight") {
        t.set("includeInFlight", on.to_string());
    }
    if let Some(on) = flag(t, "scaleOnDelayed") {
        t.set("includeDelayed", on.to_string());
    }
    let length = number_or(t, "queueLength", QUEUE_LENGTH);
    t.set("backlogPerWorker", number(length));
    activation(t, "activationQueueLength");
    for key in ["awsAccessKeyID", "awsSecretAccessKey", "awsSessionToken", "awsRoleArn"] {
        if let Some(placeholder) = t.param(key) {
            t.comments.push(format!(
                "# {key} = {placeholder}: the agent uses the AWS SDK's chain; give its pod these credentials \
                 (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or an IAM role"
            ));
        }
    }
    t.skip("identityOwner", "the agent reads SQS with its own identity (IRSA or the SDK's chain)");
    true
}
