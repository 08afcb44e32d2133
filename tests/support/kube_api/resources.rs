//! The resource types the fake serves and where each lives in the API.
//!
//! One table drives routing, discovery and kubectl tables, so what discovery advertises is exactly
//! what is served: kubectl fails a whole command when a group it was told about answers 404.

use serde_json::Value;

use super::events;
use super::plain::{self, PlainKind};

/// A kind of object the fake stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `apps/v1` Deployment, with its `scale` subresource.
    Deployment,
    /// `apps/v1` StatefulSet, with its `scale` subresource.
    StatefulSet,
    /// `workers.example.com/v1` WorkerPool: a custom resource (as if its CRD were installed) with a
    /// `scale` subresource whose selector is its `status.selector`, as a CRD's `labelSelectorPath`
    /// usually points.
    WorkerPool,
    /// Core `v1` Pod.
    Pod,
    /// An Event, stored once in core `v1` form and also served through `events.k8s.io/v1`.
    Event,
    /// `coordination.k8s.io/v1` Lease.
    Lease,
    /// A kind stored as sent, with no behaviour of its own.
    Plain(PlainKind),
}

/// How an endpoint shows a stored object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// The object as stored.
    AsStored,
    /// A core `v1` Event converted to `events.k8s.io/v1`, as a real API server converts between the
    /// two.
    EventsV1,
}

/// One resource as the API exposes it: `/api(s)/GROUP/VERSION/namespaces/NS/PLURAL`.
#[derive(Debug)]
pub(super) struct Endpoint {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind_name: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub kind: Kind,
    pub shape: Shape,
}

impl Endpoint {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The name errors use, such as `deployments.apps`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }
}

/// Every verb the fake implements on every resource it serves.
pub(super) const VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];

/// Core v1 pods.
static PODS: Endpoint = Endpoint {
    group: "",
    version: "v1",
    plural: "pods",
    singular: "pod",
    kind_name: "Pod",
    short_names: &["po"],
    categories: &["all"],
    kind: Kind::Pod,
    shape: Shape::AsStored,
};

/// Core v1 events.
static CORE_EVENTS: Endpoint = Endpoint {
    group: "",
    version: "v1",
    plural: "events",
    singular: "event",
    kind_name: "Event",
    short_names: &["ev"],
    categories: &[],
    kind: Kind::Event,
    shape: Shape::AsStored,
};

/// apps/v1 deployments.
static DEPLOYMENTS: Endpoint = Endpoint {
    group: "apps",
    version: "v1",
    plural: "deployments",
    singular: "deployment",
    kind_name: "Deployment",
    short_names: &["deploy"],
    categories: &["all"],
    kind: Kind::Deployment,
    shape: Shape::AsStored,
};

/// apps/v1 statefulsets.
static STATEFUL_SETS: Endpoint = Endpoint {
    group: "apps",
    version: "v1",
    plural: "statefulsets",
    singular: "statefulset",
    kind_name: "StatefulSet",
    short_names: &["sts"],
    categories: &["all"],
    kind: Kind::StatefulSet,
    shape: Shape::AsStored,
};

/// workers.example.com/v1 workerpools: a custom resource.
static WORKER_POOLS: Endpoint = Endpoint {
    group: "workers.example.com",
    version: "v1",
    plural: "workerpools",
    singular: "workerpool",
    kind_name: "WorkerPool",
    short_names: &["wp"],
    categories: &[],
    kind: Kind::WorkerPool,
    shape: Shape::AsStored,
};

/// coordination.k8s.io/v1 leases.
static LEASES: Endpoint = Endpoint {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    singular: "lease",
    kind_name: "Lease",
    short_names: &[],
    categories: &[],
    kind: Kind::Lease,
    shape: Shape::AsStored,
};

/// events.k8s.io/v1 events: the core events, converted.
static EVENTS_V1: Endpoint = Endpoint {
    group: "events.k8s.io",
    version: "v1",
    plural: "events",
    singular: "event",
    kind_name: "Event",
    short_names: &["ev"],
    categories: &[],
    kind: Kind::Event,
    shape: Shape::EventsV1,
};

/// Everything the fake serves.
pub(super) static ENDPOINTS: [&Endpoint; 7] =
    [&PODS, &CORE_EVENTS, &DEPLOYMENTS, &STATEFUL_SETS, &LEASES, &EVENTS_V1, &WORKER_POOLS];

/// The named groups (all but core), in the order discovery lists them.
const GROUPS: &[&str] = &["apps", "coordination.k8s.io", "events.k8s.io", "workers.example.com"];

/// Every endpoint served: the fake's own and those of the plain kinds.
fn served() -> impl Iterator<Item = &'static Endpoint> {
    ENDPOINTS.into_iter().chain(plain::ENDPOINTS)
}

/// Every named group served, in the order discovery lists them.
pub(super) fn groups() -> impl Iterator<Item = &'static str> {
    GROUPS.iter().chain(plain::GROUPS).copied()
}

/// The one version the fake serves of a named `group`.
pub(super) fn version_of(group: &str) -> &'static str {
    served().find(|e| e.group == group).map_or("v1", |e| e.version)
}

/// The endpoint serving `plural` in `group/version`, if the fake serves it.
pub(super) fn endpoint(group: &str, version: &str, plural: &str) -> Option<&'static Endpoint> {
    served().find(|e| e.group == group && e.version == version && e.plural == plural)
}

/// The endpoint whose shape is how `kind` is stored.
pub(super) fn stored_endpoint(kind: Kind) -> &'static Endpoint {
    match kind {
        Kind::Deployment => &DEPLOYMENTS,
        Kind::StatefulSet => &STATEFUL_SETS,
        Kind::WorkerPool => &WORKER_POOLS,
        Kind::Pod => &PODS,
        Kind::Event => &CORE_EVENTS,
        Kind::Lease => &LEASES,
        Kind::Plain(kind) => kind.endpoint(),
    }
}

impl Kind {
    /// Whether the kind has a `scale` subresource.
    pub fn has_scale(self) -> bool {
        matches!(self, Kind::Deployment | Kind::StatefulSet | Kind::WorkerPool)
    }
}

/// The endpoints of one group version; empty when the fake does not serve it.
pub(super) fn group_version(group: &str, version: &str) -> Vec<&'static Endpoint> {
    served().filter(|e| e.group == group && e.version == version).collect()
}

impl Endpoint {
    /// A stored object as this endpoint shows it, `kind` and `apiVersion` included.
    pub fn show(&self, stored: &Value) -> Value {
        let mut shown = match self.shape {
            Shape::AsStored => stored.clone(),
            Shape::EventsV1 => events::core_to_v1(stored),
        };
        if let Value::Object(fields) = &mut shown {
            fields.insert("apiVersion".into(), Value::String(self.api_version()));
            fields.insert("kind".into(), Value::String(self.kind_name.into()));
        }
        shown
    }

    /// An object, or the partial object of a patch, sent to this endpoint, in the form it is
    /// stored.
    pub fn to_stored(&self, sent: &Value) -> Value {
        match self.shape {
            Shape::AsStored => sent.clone(),
            Shape::EventsV1 => events::v1_to_core(sent),
        }
    }
}
