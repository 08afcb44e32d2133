//! Realistic objects for tests to seed the fake with, shaped like what `kubectl get -o json` shows
//! from a cluster, so code under test meets the fields it will meet in production rather than a
//! minimal stub.

use serde_json::{Map, Value, json};

fn label_map(labels: &[(&str, &str)]) -> Map<String, Value> {
    labels.iter().map(|(key, value)| (key.to_string(), Value::String(value.to_string()))).collect()
}

/// An `apps/v1` Deployment selecting its pods by `labels`, with one container and the defaults the
/// API server fills in.
pub(super) fn deployment(namespace: &str, name: &str, replicas: u32, labels: &[(&str, &str)]) -> Value {
    let labels = label_map(labels);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": { "deployment.kubernetes.io/revision": "1" },
        },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "containers": [{
                        "name": name,
                        "image": format!("registry.example/{name}:1.0"),
                        "imagePullPolicy": "IfNotPresent",
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                    }],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30,
                },
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "25%" },
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {},
    })
}

/// A running, ready core `v1` Pod with `labels` and `status.podIP`.
pub(super) fn pod(namespace: &str, name: &str, labels: &[(&str, &str)], pod_ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace, "labels": label_map(labels) },
        "spec": {
            "containers": [{ "name": "worker", "image": "registry.example/worker:1.0" }],
            "nodeName": "node-1",
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
        "status": {
            "phase": "Running",
            "podIP": pod_ip,
            "podIPs": [{ "ip": pod_ip }],
            "conditions": [{ "type": "Ready", "status": "True" }],
            "containerStatuses": [{
                "name": "worker",
                "ready": true,
                "restartCount": 0,
                "started": true,
                "image": "registry.example/worker:1.0",
                "imageID": "",
                "state": { "running": {} },
            }],
        },
    })
}

/// An `apps/v1` StatefulSet selecting its pods by `labels`, with the defaults the API server fills
/// in.
pub(super) fn stateful_set(namespace: &str, name: &str, replicas: u32, labels: &[(&str, &str)]) -> Value {
    let labels = label_map(labels);
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "containers": [{ "name": name, "image": format!("registry.example/{name}:1.0") }],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                },
            },
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } },
            "revisionHistoryLimit": 10,
            "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Retain", "whenScaled": "Retain" },
        },
    })
}

/// A `workers.example.com/v1` WorkerPool, a custom resource whose controller reports the pods it runs
/// as the label selector `status.selector` (what its scale subresource shows), and keeps its pod
/// labels out of `spec`.
pub(super) fn worker_pool(namespace: &str, name: &str, replicas: u32, selector: &str) -> Value {
    json!({
        "apiVersion": "workers.example.com/v1",
        "kind": "WorkerPool",
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "replicas": replicas, "image": format!("registry.example/{name}:1.0") },
        "status": { "replicas": replicas, "selector": selector },
    })
}
