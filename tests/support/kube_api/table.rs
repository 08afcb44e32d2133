//! Server-side printing: the `meta.k8s.io/v1` Tables that `kubectl get` asks for, with the columns
//! a real API server gives each kind, so kubectl's default output reads as it does against a
//! cluster.

use serde_json::{Value, json};

use super::resources::{Endpoint, Kind};
use super::time;

/// Whether an `Accept` header asks for a Table, as kubectl's does for `get` without `-o`.
pub(super) fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| accept.contains("as=Table"))
}

/// A Table of `objects` (in stored form) at resourceVersion `revision`.
pub(super) fn render(endpoint: &Endpoint, objects: &[&Value], revision: u64) -> Value {
    let columns: Vec<Value> = columns(endpoint.kind)
        .iter()
        .map(|(name, kind, priority)| {
            json!({
                "name": name,
                "type": kind,
                "format": if *name == "Name" { "name" } else { "" },
                "description": "",
                "priority": priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            json!({
                "cells": cells(endpoint.kind, object),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": object.get("metadata").cloned().unwrap_or_default(),
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": revision.to_string() },
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// `(name, type, priority)`: priority 0 columns show by default, 1 with `-o wide`.
fn columns(kind: Kind) -> &'static [(&'static str, &'static str, u8)] {
    match kind {
        Kind::Deployment => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        Kind::Pod => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        Kind::StatefulSet => &[("Name", "string", 0), ("Ready", "string", 0), ("Age", "string", 0)],
        Kind::Lease => &[("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
        Kind::WorkerPool | Kind::Plain(_) => &[("Name", "string", 0), ("Age", "string", 0)],
        Kind::Event => &[
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
            ("Source", "string", 1),
            ("First Seen", "string", 1),
            ("Count", "integer", 1),
            ("Name", "string", 1),
        ],
    }
}

fn cells(kind: Kind, object: &Value) -> Vec<Value> {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string();
    let count = |pointer: &str| object.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let or_none = |value: String| {
        if value.is_empty() { "<none>".to_string() } else { value }
    };
    let name = text("/metadata/name");
    let age = time::age(object.pointer("/metadata/creationTimestamp").and_then(Value::as_str));
    match kind {
        Kind::Deployment => {
            let containers = object.pointer("/spec/template/spec/containers").and_then(Value::as_array);
            let joined = |field: &str| {
                containers
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get(field).and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let selector = object
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",");
            let desired = object.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1);
            vec![
                json!(name),
                json!(format!("{}/{desired}", count("/status/readyReplicas"))),
                json!(count("/status/updatedReplicas").to_string()),
                json!(count("/status/availableReplicas").to_string()),
                json!(age),
                json!(joined("name")),
                json!(joined("image")),
                json!(selector),
            ]
        }
        Kind::Pod => {
            let statuses = object.pointer("/status/containerStatuses").and_then(Value::as_array);
            let statuses = statuses.into_iter().flatten();
            let total = object.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
            let ready = statuses.clone().filter(|s| s.get("ready") == Some(&json!(true))).count();
            let restarts: u64 = statuses.filter_map(|s| s.get("restartCount").and_then(Value::as_u64)).sum();
            vec![
                json!(name),
                json!(format!("{ready}/{total}")),
                json!(or_none(text("/status/phase"))),
                json!(restarts.to_string()),
                json!(age),
                json!(or_none(text("/status/podIP"))),
                json!(or_none(text("/spec/nodeName"))),
            ]
        }
        Kind::StatefulSet => {
            let desired = object.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1);
            vec![json!(name), json!(format!("{}/{desired}", count("/status/readyReplicas"))), json!(age)]
        }
        Kind::Lease => vec![json!(name), json!(text("/spec/holderIdentity")), json!(age)],
        Kind::WorkerPool | Kind::Plain(_) => vec![json!(name), json!(age)],
        Kind::Event => {
            let first_seen = [text("/firstTimestamp"), text("/eventTime")].into_iter().find(|t| !t.is_empty());
            let last_seen = [text("/series/lastObservedTime"), text("/lastTimestamp"), text("/eventTime")]
                .into_iter()
                .find(|t| !t.is_empty());
            let seen_count = [count("/series/count"), count("/count"), 1].into_iter().find(|n| *n > 0);
            let source = [text("/source/component"), text("/reportingComponent")].into_iter().find(|s| !s.is_empty());
            vec![
                json!(time::age(last_seen.as_deref())),
                json!(text("/type")),
                json!(text("/reason")),
                json!(format!("{}/{}", text("/involvedObject/kind").to_lowercase(), text("/involvedObject/name"))),
                json!(text("/message")),
                json!(or_none(source.unwrap_or_default())),
                json!(time::age(first_seen.as_deref())),
                json!(seen_count),
                json!(name),
            ]
        }
    }
}
