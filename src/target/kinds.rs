//! Where a kind lives in the API: the resource (plural) behind a `scaleTargetRef`'s `apiVersion` and `kind`.
//!
//! The kinds people scale most are in a small table ([`KNOWN`]), so a target of those costs no request and works
//! even where discovery is locked down; any other kind (a custom resource with a `scale` subresource) is looked up
//! once through API discovery (`/apis/GROUP/VERSION`), which every authenticated client may read.

use kube::api::{ApiResource, GroupVersionKind};

use super::TargetError;
use crate::config::ScaleTargetRef;

/// `(apiVersion, kind, plural)` of the workloads with a `scale` subresource that need no discovery.
pub const KNOWN: &[(&str, &str, &str)] = &[
    ("apps/v1", "Deployment", "deployments"),
    ("apps/v1", "StatefulSet", "statefulsets"),
    ("apps/v1", "ReplicaSet", "replicasets"),
    ("v1", "ReplicationController", "replicationcontrollers"),
    ("argoproj.io/v1alpha1", "Rollout", "rollouts"),
];

/// The resource of a known kind, without asking the API.
pub fn known(workload: &ScaleTargetRef) -> Option<ApiResource> {
    KNOWN
        .iter()
        .find(|(api_version, kind, _)| *api_version == workload.api_version && *kind == workload.kind)
        .map(|(_, _, plural)| ApiResource::from_gvk_with_plural(&gvk(workload), plural))
}

/// The resource of `workload`'s kind: from [`KNOWN`], else from API discovery.
pub async fn resolve(client: &kube::Client, workload: &ScaleTargetRef) -> Result<ApiResource, TargetError> {
    if let Some(resource) = known(workload) {
        return Ok(resource);
    }
    match kube::discovery::pinned_kind(client, &gvk(workload)).await {
        Ok((resource, _)) => Ok(resource),
        Err(kube::Error::Api(status)) if status.is_not_found() => Err(unserved(workload)),
        Err(kube::Error::Discovery(_)) => Err(unserved(workload)),
        Err(kube::Error::Api(status)) => Err(TargetError::Api { code: status.code, message: status.message }),
        Err(other) => Err(TargetError::Unreachable(other.to_string())),
    }
}

fn gvk(workload: &ScaleTargetRef) -> GroupVersionKind {
    GroupVersionKind::gvk(workload.group(), workload.version(), &workload.kind)
}

fn unserved(workload: &ScaleTargetRef) -> TargetError {
    TargetError::UnknownKind { api_version: workload.api_version.clone(), kind: workload.kind.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_kinds_need_no_discovery() {
        let stateful = ScaleTargetRef { api_version: "apps/v1".into(), kind: "StatefulSet".into(), name: "db".into() };
        let resource = known(&stateful).expect("a known kind");
        assert_eq!((resource.group.as_str(), resource.version.as_str()), ("apps", "v1"));
        assert_eq!((resource.kind.as_str(), resource.plural.as_str()), ("StatefulSet", "statefulsets"));
        let rollout =
            ScaleTargetRef { api_version: "argoproj.io/v1alpha1".into(), kind: "Rollout".into(), name: "w".into() };
        assert_eq!(known(&rollout).map(|r| r.api_version), Some("argoproj.io/v1alpha1".to_owned()));
        let custom =
            ScaleTargetRef { api_version: "example.io/v1".into(), kind: "WorkerPool".into(), name: "w".into() };
        assert_eq!(known(&custom), None);
    }
}
