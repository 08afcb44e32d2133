//! One event store behind two APIs. A real API server keeps core `v1` Events and converts them to
//! and from `events.k8s.io/v1`, so what kube-rs's `Recorder` writes through the new API is what
//! `kubectl get events` lists through the old one. The conversion is a renaming of the fields the
//! two versions call differently.

use serde_json::{Map, Value};

/// `(core v1 field, events.k8s.io/v1 field)`; every other field is spelled the same in both.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// A core `v1` Event (whole or partial, as in a patch) as `events.k8s.io/v1` shows it.
pub(super) fn core_to_v1(event: &Value) -> Value {
    let v1_name = |field: &str| RENAMED.iter().find(|(core, _)| *core == field).map(|(_, v1)| *v1);
    rename(event, v1_name, "events.k8s.io/v1")
}

/// An `events.k8s.io/v1` Event (whole or partial) as the core `v1` Event it is stored as.
pub(super) fn v1_to_core(event: &Value) -> Value {
    let core_name = |field: &str| RENAMED.iter().find(|(_, v1)| *v1 == field).map(|(core, _)| *core);
    rename(event, core_name, "v1")
}

/// Renames the fields `new_name` knows, keeps the rest, and labels the result with `api_version` if
/// it was labelled.
fn rename(event: &Value, new_name: impl Fn(&str) -> Option<&'static str>, api_version: &str) -> Value {
    let Value::Object(fields) = event else {
        return event.clone();
    };
    let mut renamed: Map<String, Value> =
        fields.iter().map(|(field, value)| (new_name(field).unwrap_or(field).to_string(), value.clone())).collect();
    if renamed.contains_key("apiVersion") {
        renamed.insert("apiVersion".into(), Value::String(api_version.into()));
    }
    Value::Object(renamed)
}
