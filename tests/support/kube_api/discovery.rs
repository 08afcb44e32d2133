//! Discovery documents, generated from the resource table. kubectl resolves `deployment/worker` and
//! the Scale kind behind `kubectl scale` through these, and kube-rs's `Discovery` reads the same
//! documents.

use std::net::SocketAddr;

use serde_json::{Value, json};

use super::resources::{self, Endpoint, VERBS};

/// The discovery documents served.
#[derive(Debug)]
pub(super) enum Document {
    /// `/version`
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/api/v1` or `/apis/GROUP/VERSION`
    Resources { group: &'static str, version: &'static str },
}

/// The body of a discovery document; `address` is where clients reach the fake.
pub(super) fn document(document: &Document, address: SocketAddr) -> Value {
    match document {
        Document::Version => version(),
        Document::CoreVersions => core_versions(address),
        Document::Groups => groups(),
        Document::Resources { group, version } => resources(group, version),
    }
}

/// `/version`: the Kubernetes release the fake stands in for, the one the project's kubectl speaks.
fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.3",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`: the core group's versions.
fn core_versions(address: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{
            "clientCIDR": "0.0.0.0/0",
            "serverAddress": address.to_string(),
        }],
    })
}

/// `/apis`: the named groups, one version each.
fn groups() -> Value {
    let groups: Vec<Value> = resources::groups()
        .map(|group| {
            let served = resources::version_of(group);
            let version = json!({ "groupVersion": format!("{group}/{served}"), "version": served });
            json!({ "name": group, "versions": [version], "preferredVersion": version })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/api/v1` or `/apis/GROUP/VERSION`: the resources of one group version, with the verbs served.
fn resources(group: &str, version: &str) -> Value {
    let mut listed: Vec<Value> = Vec::new();
    for endpoint in resources::group_version(group, version) {
        listed.push(resource(endpoint));
        if endpoint.kind.has_scale() {
            listed.push(json!({
                "name": format!("{}/scale", endpoint.plural),
                "singularName": "",
                "namespaced": true,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": listed,
    })
}

fn resource(endpoint: &Endpoint) -> Value {
    let mut entry = json!({
        "name": endpoint.plural,
        "singularName": endpoint.singular,
        "namespaced": true,
        "kind": endpoint.kind_name,
        "verbs": VERBS,
    });
    if !endpoint.short_names.is_empty() {
        entry["shortNames"] = json!(endpoint.short_names);
    }
    if !endpoint.categories.is_empty() {
        entry["categories"] = json!(endpoint.categories);
    }
    entry
}
