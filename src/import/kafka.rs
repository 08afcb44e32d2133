//! KEDA's `kafka` trigger as a `kafka` source: lag per replica, activation, reset policy and the partition caps.

use super::document::{number, quote};
use super::scaled_object::{Trigger, activation, flag, number_or};

/// KEDA's `lagThreshold` default.
const LAG_THRESHOLD: f64 = 10.0;

pub(super) fn map(t: &mut Trigger) -> bool {
    let (Some(brokers), Some(group)) = (t.required("bootstrapServers"), t.required("consumerGroup")) else {
        return false;
    };
    t.set_text("brokers", &brokers);
    t.set_text("group", &group);
    if let Some(topic) = t.param("topic") {
        t.set_text("topic", &topic);
    }
    if let Some(policy) = t.param("offsetResetPolicy") {
        t.set("offsetResetPolicy", quote(&policy));
    }
    for key in ["allowIdleConsumers", "limitToPartitionsWithLag"] {
        if let Some(on) = flag(t, key) {
            t.set(key, on.to_string());
        }
    }
    let lag = number_or(t, "lagThreshold", LAG_THRESHOLD);
    t.set("backlogPerWorker", number(lag));
    activation(t, "activationLagThreshold");
    sasl(t);
    for key in ["tls", "ca", "cert", "key", "keyPassword", "unsafeSsl"] {
        if t.param(key).is_some() {
            t.comments.push(format!(
                "# not imported: {key}: TLS settings are files in queue-scaler (tls.caFile, certFile, keyFile): mount \
                 the Secret and name the files"
            ));
        }
    }
    t.skip("scaleToZeroOnInvalidOffset", "queue-scaler wakes a group at zero on uncommitted partitions itself");
    t.skip("excludePersistentLag", "no equivalent in queue-scaler");
    t.skip("version", "the Kafka protocol version is negotiated");
    true
}

/// `sasl`, `username` and `password` (usually from a TriggerAuthentication) as a `sasl:` block.
fn sasl(t: &mut Trigger) {
    let Some(mode) = t.param("sasl") else { return };
    if mode.starts_with("${") {
        // The mechanism is in a Secret, and queue-scaler needs it in the config.
        t.comments.push(format!(
            "# check sasl.mechanism: KEDA read it from {mode}; write its value here (PLAIN, SCRAM-SHA-256 or \
             SCRAM-SHA-512)"
        ));
        let path = t.meta.path_of("sasl");
        t.notes.warnings.push(t.doc.warning(&path, "the SASL mechanism comes from a Secret: check sasl.mechanism"));
    }
    let mechanism = match mode.to_ascii_lowercase().as_str() {
        _ if mode.starts_with("${") => "SCRAM-SHA-512",
        "plaintext" => "PLAIN",
        "scram_sha256" => "SCRAM-SHA-256",
        "scram_sha512" => "SCRAM-SHA-512",
        "none" => return,
        other => {
            t.comments.push(format!("# not imported: sasl `{other}`: only plaintext and SCRAM map to queue-scaler"));
            return;
        }
    };
    let username = t.param("username").unwrap_or_default();
    let password = t.param("password").unwrap_or_default();
    t.set(
        "sasl",
        format!("{{ mechanism: {mechanism}, username: {}, password: {} }}", quote(&username), quote(&password)),
    );
}
