//! Kinds the fake keeps as they are sent, with no behaviour of their own: what `helm install` of the
//! project's chart creates around the agent (ServiceAccount, ConfigMap, Service, Role, RoleBinding,
//! PodDisruptionBudget, NetworkPolicy, and the Prometheus Operator's ServiceMonitor, PodMonitor and
//! PrometheusRule, as if its CRDs were installed),
//! and the other autoscalers the agent must not fight: `autoscaling/v2` HorizontalPodAutoscalers and
//! KEDA's `keda.sh/v1alpha1` ScaledObjects (as if KEDA's CRDs were installed). Nothing here acts on
//! them; the agent only reads which Deployment each one targets.
//!
//! Helm maps each manifest to a resource through discovery, reads each object (a 404 means it may
//! create it without adopting someone else's), then creates it. A real server does nothing more for
//! these kinds that Helm or the chart's checks observe, so the fake stamps identity and
//! resourceVersion as it does for every kind, and leaves out a real server's defaulting (a Service
//! gets no clusterIP) and RBAC's escalation check (the fake has no users). Their kubectl tables have
//! the Name and Age columns a kind without printer columns gets.

use super::resources::{Endpoint, Kind, Shape};

/// A kind stored as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlainKind {
    /// Core `v1` ServiceAccount.
    ServiceAccount,
    /// Core `v1` ConfigMap.
    ConfigMap,
    /// Core `v1` Service.
    Service,
    /// `rbac.authorization.k8s.io/v1` Role.
    Role,
    /// `rbac.authorization.k8s.io/v1` RoleBinding.
    RoleBinding,
    /// `policy/v1` PodDisruptionBudget.
    PodDisruptionBudget,
    /// `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy,
    /// `monitoring.coreos.com/v1` ServiceMonitor.
    ServiceMonitor,
    /// `monitoring.coreos.com/v1` PodMonitor.
    PodMonitor,
    /// `monitoring.coreos.com/v1` PrometheusRule.
    PrometheusRule,
    /// `autoscaling/v2` HorizontalPodAutoscaler.
    HorizontalPodAutoscaler,
    /// `keda.sh/v1alpha1` ScaledObject.
    ScaledObject,
}

/// The named groups these kinds add to discovery.
pub(super) const GROUPS: &[&str] =
    &["rbac.authorization.k8s.io", "policy", "networking.k8s.io", "monitoring.coreos.com", "autoscaling", "keda.sh"];

/// A namespaced `v1` resource stored as sent.
const fn plain(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind_name: &'static str,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    kind: PlainKind,
) -> Endpoint {
    at_version(group, "v1", plural, singular, kind_name, short_names, categories, kind)
}

/// A namespaced resource of `group/version` stored as sent.
#[allow(clippy::too_many_arguments)]
const fn at_version(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind_name: &'static str,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    kind: PlainKind,
) -> Endpoint {
    Endpoint {
        group,
        version,
        plural,
        singular,
        kind_name,
        short_names,
        categories,
        kind: Kind::Plain(kind),
        shape: Shape::AsStored,
    }
}

static SERVICE_ACCOUNTS: Endpoint =
    plain("", "serviceaccounts", "serviceaccount", "ServiceAccount", &["sa"], &[], PlainKind::ServiceAccount);
static CONFIG_MAPS: Endpoint = plain("", "configmaps", "configmap", "ConfigMap", &["cm"], &[], PlainKind::ConfigMap);
static SERVICES: Endpoint = plain("", "services", "service", "Service", &["svc"], &["all"], PlainKind::Service);
static ROLES: Endpoint = plain("rbac.authorization.k8s.io", "roles", "role", "Role", &[], &[], PlainKind::Role);
static ROLE_BINDINGS: Endpoint =
    plain("rbac.authorization.k8s.io", "rolebindings", "rolebinding", "RoleBinding", &[], &[], PlainKind::RoleBinding);
static POD_DISRUPTION_BUDGETS: Endpoint = plain(
    "policy",
    "poddisruptionbudgets",
    "poddisruptionbudget",
    "PodDisruptionBudget",
    &["pdb"],
    &[],
    PlainKind::PodDisruptionBudget,
);
static NETWORK_POLICIES: Endpoint = plain(
    "networking.k8s.io",
    "networkpolicies",
    "networkpolicy",
    "NetworkPolicy",
    &["netpol"],
    &[],
    PlainKind::NetworkPolicy,
);
static SERVICE_MONITORS: Endpoint = plain(
    "monitoring.coreos.com",
    "servicemonitors",
    "servicemonitor",
    "ServiceMonitor",
    &["smon"],
    &["prometheus-operator"],
    PlainKind::ServiceMonitor,
);
static POD_MONITORS: Endpoint = plain(
    "monitoring.coreos.com",
    "podmonitors",
    "podmonitor",
    "PodMonitor",
    &["pmon"],
    &["prometheus-operator"],
    PlainKind::PodMonitor,
);
static PROMETHEUS_RULES: Endpoint = plain(
    "monitoring.coreos.com",
    "prometheusrules",
    "prometheusrule",
    "PrometheusRule",
    &["promrule"],
    &["prometheus-operator"],
    PlainKind::PrometheusRule,
);

static HORIZONTAL_POD_AUTOSCALERS: Endpoint = at_version(
    "autoscaling",
    "v2",
    "horizontalpodautoscalers",
    "horizontalpodautoscaler",
    "HorizontalPodAutoscaler",
    &["hpa"],
    &["all"],
    PlainKind::HorizontalPodAutoscaler,
);
static SCALED_OBJECTS: Endpoint = at_version(
    "keda.sh",
    "v1alpha1",
    "scaledobjects",
    "scaledobject",
    "ScaledObject",
    &["so"],
    &["keda", "scaledobject"],
    PlainKind::ScaledObject,
);

/// Every endpoint of a plain kind.
pub(super) static ENDPOINTS: [&Endpoint; 12] = [
    &SERVICE_ACCOUNTS,
    &CONFIG_MAPS,
    &SERVICES,
    &ROLES,
    &ROLE_BINDINGS,
    &POD_DISRUPTION_BUDGETS,
    &NETWORK_POLICIES,
    &SERVICE_MONITORS,
    &POD_MONITORS,
    &PROMETHEUS_RULES,
    &HORIZONTAL_POD_AUTOSCALERS,
    &SCALED_OBJECTS,
];

impl PlainKind {
    /// Where this kind is served.
    pub(super) fn endpoint(self) -> &'static Endpoint {
        match self {
            PlainKind::ServiceAccount => &SERVICE_ACCOUNTS,
            PlainKind::ConfigMap => &CONFIG_MAPS,
            PlainKind::Service => &SERVICES,
            PlainKind::Role => &ROLES,
            PlainKind::RoleBinding => &ROLE_BINDINGS,
            PlainKind::PodDisruptionBudget => &POD_DISRUPTION_BUDGETS,
            PlainKind::NetworkPolicy => &NETWORK_POLICIES,
            PlainKind::ServiceMonitor => &SERVICE_MONITORS,
            PlainKind::PodMonitor => &POD_MONITORS,
            PlainKind::PrometheusRule => &PROMETHEUS_RULES,
            PlainKind::HorizontalPodAutoscaler => &HORIZONTAL_POD_AUTOSCALERS,
            PlainKind::ScaledObject => &SCALED_OBJECTS,
        }
    }
}
