//! KEDA's `rabbitmq` trigger as a `rabbitmq` source: the queue length per replica, with the management API when
//! KEDA read it over HTTP.

use super::document::number;
use super::scaled_object::{Trigger, activation, flag, number_or};

/// KEDA's `value` default for `QueueLength`.
const QUEUE_LENGTH: f64 = 20.0;

pub(super) fn map(t: &mut Trigger) -> bool {
    let Some(host) = t.required("host") else { return false };
    let queue = match t.required("queueName") {
        Some(queue) => queue,
        None => return false,
    };
    if let Some(mode) = t.meta.text("mode").filter(|m| m != "QueueLength") {
        t.comments.push(format!(
            "# not imported: mode `{mode}`: queue-scaler scales on the queue length (latencyTarget uses the publish \
             rate by Little's law instead)"
        ));
        t.notes.warnings.push(t.doc.warning(&t.meta.path_of("mode"), &format!("not imported: mode `{mode}`")));
        return false;
    }
    let protocol = t.meta.text("protocol").unwrap_or_else(|| "auto".to_owned());
    let http = protocol == "http" || (protocol == "auto" && host.starts_with("http"));
    if http {
        // KEDA read the management API; queue-scaler reads it too, and also needs an AMQP URL.
        t.comments.push(
            "# KEDA read the management API: managementUrl is its host; check url, the AMQP address of the same broker"
                .to_owned(),
        );
        let amqp =
            host.replacen("https://", "amqps://", 1).replacen("http://", "amqp://", 1).replacen(":15672", ":5672", 1);
        t.set_text("url", &amqp);
        t.set_text("managementUrl", &host);
    } else {
        t.set_text("url", &host);
    }
    if let Some(vhost) = t.meta.text("vhostName") {
        t.set_text("vhost", &vhost);
    }
    match flag(t, "useRegex") {
        // KEDA matches the pattern against the vhost's queues through the management API, as queueRegex does.
        Some(true) => {
            t.set_text("queueRegex", &queue);
            match t.meta.text("operation").as_deref() {
                None | Some("sum") => {}
                Some(other) => {
                    t.comments.push(format!(
                        "# not imported: operation `{other}`: queue-scaler sums the matching queues' backlogs"
                    ));
                    let path = t.meta.path_of("operation");
                    t.notes.warnings.push(t.doc.warning(&path, &format!("not imported: operation `{other}`")));
                }
            }
            if !http {
                t.comments.push(
                    "# queueRegex lists the vhost's queues through the management API: add managementUrl".to_owned(),
                );
            }
        }
        _ => t.set_text("queue", &queue),
    }
    if let Some(exclude) = flag(t, "excludeUnacknowledged") {
        t.set("excludeUnacknowledged", exclude.to_string());
    }
    let value = number_or(t, "value", QUEUE_LENGTH);
    t.set("backlogPerWorker", number(value));
    activation(t, "activationValue");
    t.skip("pageSize", "queue-scaler reads all of a vhost's queues in one request");
    t.skip("unsafeSsl", "no equivalent in queue-scaler");
    t.skip("timeout", "the agent's read timeout is its pollInterval");
    true
}
