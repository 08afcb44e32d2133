//! What the API server and the controllers do to a scalable object (a Deployment, a StatefulSet, a
//! WorkerPool) beyond storing it: its `scale` subresource and a status that follows `spec.replicas`
//! at once, so the code under test sees its writes take effect without a controller behind the
//! fake.

use serde_json::{Map, Value, json};

use super::resources::{Endpoint, Kind, stored_endpoint};
use super::status::ApiError;

/// `spec.replicas`, defaulting to 1 as the API server does.
pub(super) fn desired_replicas(deployment: &Value) -> u64 {
    deployment.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1)
}

/// Rejects a negative or non-integer `spec.replicas`, as validation does.
pub(super) fn validate(kind: Kind, deployment: &Value) -> Result<(), ApiError> {
    match deployment.pointer("/spec/replicas") {
        None => Ok(()),
        Some(replicas) if replicas.as_u64().is_some_and(|n| n <= i32::MAX as u64) => Ok(()),
        Some(replicas) => Err(ApiError::invalid(
            stored_endpoint(kind),
            deployment.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default(),
            format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
        )),
    }
}

/// Sets the status a settled rollout reports: every desired replica updated, ready and available.
/// Zero counts are left out, as the API server omits them. A WorkerPool's controller keeps the rest
/// of its status (its `selector`) and only counts; a StatefulSet's has no conditions.
pub(super) fn settle_status(kind: Kind, deployment: &mut Value) {
    let replicas = desired_replicas(deployment);
    if kind == Kind::WorkerPool {
        deployment["status"]["replicas"] = json!(replicas);
        return;
    }
    let generation = deployment.pointer("/metadata/generation").cloned().unwrap_or(json!(1));
    let mut status = Map::new();
    status.insert("observedGeneration".into(), generation);
    if replicas > 0 {
        for field in ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"] {
            status.insert(field.into(), json!(replicas));
        }
    }
    if kind == Kind::StatefulSet {
        status.insert("currentReplicas".into(), json!(replicas));
        if let Value::Object(fields) = deployment {
            fields.insert("status".into(), Value::Object(status));
        }
        return;
    }
    status.insert(
        "conditions".into(),
        json!([
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": "ReplicaSet has successfully progressed.",
            },
        ]),
    );
    if let Value::Object(fields) = deployment {
        fields.insert("status".into(), Value::Object(status));
    }
}

/// The `autoscaling/v1` Scale an object shows through its `scale` subresource.
pub(super) fn scale_of(kind: Kind, deployment: &Value) -> Value {
    let metadata = |field: &str| deployment.pointer(&format!("/metadata/{field}")).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata("name"),
            "namespace": metadata("namespace"),
            "uid": metadata("uid"),
            "resourceVersion": metadata("resourceVersion"),
            "creationTimestamp": metadata("creationTimestamp"),
        },
        "spec": { "replicas": desired_replicas(deployment) },
        "status": {
            "replicas": deployment.pointer("/status/replicas").and_then(Value::as_u64).unwrap_or(0),
            "selector": selector_text(kind, deployment),
        },
    })
}

/// The replica count a Scale asks for, validated as the API server validates it.
pub(super) fn requested_replicas(endpoint: &Endpoint, scale: &Value, name: &str) -> Result<u64, ApiError> {
    let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    replicas.as_u64().filter(|n| *n <= i32::MAX as u64).ok_or_else(|| {
        ApiError::invalid(
            endpoint,
            name,
            format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
        )
    })
}

/// `spec.selector.matchLabels` written as a label selector, as `Scale.status.selector` carries it;
/// a WorkerPool's own `status.selector`, as its CRD's `labelSelectorPath` would point.
fn selector_text(kind: Kind, deployment: &Value) -> String {
    if kind == Kind::WorkerPool {
        return deployment.pointer("/status/selector").and_then(Value::as_str).unwrap_or_default().to_owned();
    }
    let Some(Value::Object(labels)) = deployment.pointer("/spec/selector/matchLabels") else {
        return String::new();
    };
    labels
        .iter()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}
