//! `scaleTargetRef:` — the workload a target scales, in the HorizontalPodAutoscaler's own shape, so that anything
//! with a `scale` subresource (a StatefulSet, an Argo Rollout, a custom resource) can be a target, and
//! `deployment: NAME` is the common case written short.
//!
//! Only the shape is checked here; whether the cluster serves that kind is learned when the agent starts (the
//! target module's kind table, else API discovery).

use serde::Deserialize;

use super::{Problem, dns_label_problem, dns_subdomain_problem};

/// What a target scales: `apiVersion`, `kind` and `name`, as an HPA's `scaleTargetRef` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleTargetRef {
    /// `GROUP/VERSION` (`apps/v1`, `argoproj.io/v1alpha1`), or `v1` for the core group.
    pub api_version: String,
    /// The kind, as the API spells it (`StatefulSet`).
    pub kind: String,
    /// The object's name, in the agent's namespace.
    pub name: String,
}

impl ScaleTargetRef {
    /// The `apps/v1` Deployment `name`: what `deployment: NAME` means.
    pub fn deployment(name: &str) -> ScaleTargetRef {
        ScaleTargetRef { api_version: "apps/v1".to_owned(), kind: "Deployment".to_owned(), name: name.to_owned() }
    }

    /// The API group; empty for the core group.
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(group, _)| group)
    }

    /// The API version within the group.
    pub fn version(&self) -> &str {
        self.api_version.rsplit_once('/').map_or(self.api_version.as_str(), |(_, version)| version)
    }

    /// Whether this is an `apps/v1` Deployment.
    pub fn is_deployment(&self) -> bool {
        *self == ScaleTargetRef::deployment(&self.name)
    }

    /// `Kind/name`, as `kubectl` names an object.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// Problems with this reference, relative to it.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(why) = api_version_problem(&self.api_version) {
            problems.push(Problem::new(
                "apiVersion",
                format!("`{}` is not an apiVersion: {why}; write GROUP/VERSION, e.g. `apps/v1`", self.api_version),
            ));
        }
        let kind_is_camel_case = self.kind.starts_with(|c: char| c.is_ascii_uppercase())
            && self.kind.chars().all(|c| c.is_ascii_alphanumeric());
        if !kind_is_camel_case {
            problems.push(Problem::new(
                "kind",
                format!("`{}` is not a kind: write it as the API does, e.g. `StatefulSet`", self.kind),
            ));
        }
        if let Some(why) = dns_subdomain_problem(&self.name) {
            problems.push(Problem::new("name", format!("`{}` is not an object name: {why}", self.name)));
        }
        problems
    }
}

/// Why `text` is not an apiVersion, if it is not.
fn api_version_problem(text: &str) -> Option<String> {
    match text.split('/').collect::<Vec<_>>().as_slice() {
        ["v1"] => None,
        [_] => Some("only the core group's `v1` has no group".to_owned()),
        [group, version] => dns_subdomain_problem(group)
            .map(|why| format!("the group `{group}`: {why}"))
            .or_else(|| dns_label_problem(version).map(|why| format!("the version `{version}`: {why}"))),
        _ => Some("it has more than one '/'".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(api_version: &str, kind: &str, name: &str) -> ScaleTargetRef {
        ScaleTargetRef { api_version: api_version.into(), kind: kind.into(), name: name.into() }
    }

    #[test]
    fn group_and_version_come_from_the_api_version() {
        let rollout = reference("argoproj.io/v1alpha1", "Rollout", "worker");
        assert_eq!((rollout.group(), rollout.version()), ("argoproj.io", "v1alpha1"));
        let core = reference("v1", "ReplicationController", "old");
        assert_eq!((core.group(), core.version()), ("", "v1"));
        assert!(ScaleTargetRef::deployment("worker").is_deployment());
        assert!(!reference("apps/v1", "StatefulSet", "worker").is_deployment());
    }

    #[test]
    fn bad_references_are_named_field_by_field() {
        assert!(reference("apps/v1", "StatefulSet", "db").problems().is_empty());
        assert!(reference("v1", "ReplicationController", "db").problems().is_empty());
        for (api_version, why) in [
            ("apps", "only the core group's `v1` has no group"),
            ("apps/v1/x", "more than one '/'"),
            ("Apps/v1", "the group `Apps`"),
            ("apps/", "the version ``: it is empty"),
        ] {
            let problems = reference(api_version, "StatefulSet", "db").problems();
            assert_eq!(problems.len(), 1, "{api_version}: {problems:?}");
            assert_eq!(problems[0].path, "apiVersion");
            assert!(problems[0].message.contains(why), "{api_version}: {}", problems[0].message);
        }
        let problems = reference("apps/v1", "statefulset", "DB").problems();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["kind", "name"]);
    }
}
