//! Every workload the targets name, read from one watch per kind and namespace.
//!
//! Reads are free: one list-and-watch per kind ([`WorkloadWatch`]) keeps every object's annotations, `spec` (but
//! its pod template) and the `managedFields` of its replica count in memory, so a thousand targets polled every
//! second cost the API server nothing. A kind's watch starts the first time a target names it ([`Workloads`]), so a
//! reloaded config may name a kind the agent started without; a kind the API does not serve yet (its CRD comes
//! later) is asked again on the next poll.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ManagedFieldsEntry};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{TargetError, kinds};
use crate::config::ScaleTargetRef;

/// The most scale writes (with their Events) one agent has in flight at once: when a thousand targets scale in the
/// same second, each concurrent request would otherwise hold a connection of its own to the API server.
pub const CONCURRENT_WRITES: usize = 8;

/// How long a read waits for a kind's discovery or first list before it reports the API unreachable.
const FIRST_LIST: Duration = Duration::from_secs(10);

/// The watches of one namespace, one per kind, started on demand; cheap to clone.
#[derive(Clone)]
pub struct Workloads {
    client: kube::Client,
    namespace: String,
    watches: Arc<tokio::sync::Mutex<HashMap<(String, String), WorkloadWatch>>>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    /// Shared by every target of the namespace: see [`CONCURRENT_WRITES`].
    pub(super) writes: Arc<Semaphore>,
}

/// Every object of one kind in one namespace, kept current by a watch.
#[derive(Clone)]
pub struct WorkloadWatch {
    store: Store<DynamicObject>,
    /// The kind's place in the API.
    pub resource: ApiResource,
    /// The namespace watched.
    pub namespace: String,
}

impl Workloads {
    /// Watches nothing yet: each kind's watch starts when a target first asks for it.
    pub fn new(client: kube::Client, namespace: &str) -> Workloads {
        Workloads {
            client,
            namespace: namespace.to_owned(),
            watches: Arc::default(),
            tasks: Arc::default(),
            writes: Arc::new(Semaphore::new(CONCURRENT_WRITES)),
        }
    }

    /// The namespace watched.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The client the watches use.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The watch of `workload`'s kind, started (and its first list awaited) if this is the first time it is asked.
    pub async fn watch_for(&self, workload: &ScaleTargetRef) -> Result<WorkloadWatch, TargetError> {
        let key = (workload.api_version.clone(), workload.kind.clone());
        let watch = {
            let mut watches = self.watches.lock().await;
            match watches.get(&key) {
                Some(watch) => watch.clone(),
                None => {
                    // Bounded: other targets' reads wait on this lock while a kind is looked up.
                    let resource =
                        tokio::time::timeout(FIRST_LIST, kinds::resolve(&self.client, workload)).await.map_err(
                            |_| TargetError::Unreachable(format!("no discovery answer within {FIRST_LIST:?}")),
                        )??;
                    let watch = self.start(resource);
                    watches.insert(key, watch.clone());
                    watch
                }
            }
        };
        match tokio::time::timeout(FIRST_LIST, watch.store.wait_until_ready()).await {
            Ok(_) => Ok(watch),
            Err(_) => {
                Err(TargetError::Unreachable(format!("no list of {} within {FIRST_LIST:?}", watch.resource.plural)))
            }
        }
    }

    /// Starts the watch of every kind `workloads` name and waits for their first lists; a kind that cannot be
    /// watched yet is logged and left to the targets' polls.
    pub async fn prepare(&self, workloads: impl IntoIterator<Item = ScaleTargetRef>) {
        for workload in workloads {
            if let Err(error) = self.watch_for(&workload).await {
                tracing::warn!(kind = %workload.kind, api_version = %workload.api_version, %error, "cannot watch");
            }
        }
    }

    /// Whether a watch has started and every started watch has its first list.
    pub fn is_ready(&self) -> bool {
        use futures::FutureExt;
        self.watches.try_lock().is_ok_and(|watches| {
            !watches.is_empty() && watches.values().all(|watch| watch.store.wait_until_ready().now_or_never().is_some())
        })
    }

    /// Whether `workload` selects pods with these labels (its pods carry them), as far as its watch knows.
    pub fn selects(&self, workload: &ScaleTargetRef, labels: &BTreeMap<String, String>) -> bool {
        let key = (workload.api_version.clone(), workload.kind.clone());
        let Ok(watches) = self.watches.try_lock() else {
            return false;
        };
        watches.get(&key).and_then(|watch| watch.get(&workload.name)).is_some_and(|object| {
            let selector = object.data.pointer("/spec/selector").cloned().unwrap_or_default();
            serde_json::from_value::<LabelSelector>(selector).is_ok_and(|s| selector_matches(&s, labels))
        })
    }

    /// Stops every watch.
    pub fn stop(&self) {
        for task in self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }

    fn start(&self, resource: ApiResource) -> WorkloadWatch {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        let writer = Writer::new(resource.clone());
        let store = writer.as_reader();
        let plural = resource.plural.clone();
        let driver = async move {
            use futures::StreamExt;
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(forget_what_scaling_does_not_need)
                .reflect(writer)
                .applied_objects();
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, resource = %plural, "watch interrupted; retrying with backoff");
                }
            }
        };
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(tokio::spawn(driver));
        WorkloadWatch { store, resource, namespace: self.namespace.clone() }
    }
}

impl WorkloadWatch {
    /// The object `name`, as last seen.
    pub fn get(&self, name: &str) -> Option<Arc<DynamicObject>> {
        self.store.get(&ObjectRef::new_with(name, self.resource.clone()).within(&self.namespace))
    }
}

/// A label selector's verdict on a set of labels (`matchLabels` and `matchExpressions`, as the API defines them).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector.match_labels.iter().flatten().all(|(key, value)| labels.get(key) == Some(value));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let listed = || value.is_some_and(|v| e.values.iter().flatten().any(|allowed| allowed == v));
        match e.operator.as_str() {
            "In" => listed(),
            "NotIn" => !listed(),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// The pod template is most of a workload's size and none of the autoscaler's business, nor are the field
/// managers other than those of `spec.replicas`.
fn forget_what_scaling_does_not_need(object: &mut DynamicObject) {
    if let Some(managed) = object.metadata.managed_fields.as_mut() {
        managed.retain(sets_replicas);
    }
    if let Some(spec) = object.data.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.remove("template");
    }
}

/// Whether a `managedFields` entry owns `spec.replicas`.
fn sets_replicas(entry: &ManagedFieldsEntry) -> bool {
    entry.fields_v1.as_ref().and_then(|f| f.0.get("f:spec")).and_then(|spec| spec.get("f:replicas")).is_some()
}

/// The manager that last set `spec.replicas`, by the entries' times.
pub fn replicas_set_by(object: &DynamicObject) -> Option<String> {
    let managed = object.metadata.managed_fields.as_ref()?;
    managed
        .iter()
        .filter(|e| sets_replicas(e))
        .max_by_key(|e| e.time.as_ref().map(|t| t.0))
        .and_then(|e| e.manager.clone())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "worker")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["batch".into(), "gpu".into()]),
            }]),
        };
        assert!(selector_matches(&selector, &labels(&[("app", "worker"), ("tier", "gpu"), ("x", "y")])));
        assert!(!selector_matches(&selector, &labels(&[("app", "worker"), ("tier", "web")])));
        assert!(!selector_matches(&selector, &labels(&[("tier", "gpu")])));
        let absent = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "canary".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
            ..LabelSelector::default()
        };
        assert!(selector_matches(&absent, &labels(&[("app", "worker")])));
        assert!(!selector_matches(&absent, &labels(&[("canary", "1")])));
    }

    #[test]
    fn the_pod_template_and_other_field_managers_are_forgotten() {
        let mut object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "managedFields": [
                {"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}, "time": "2026-01-01T00:00:00Z"},
                {"manager": "helm", "operation": "Update", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:template": {}}}, "time": "2026-01-02T00:00:00Z"}
            ]},
            "spec": {"replicas": 3, "template": {"spec": {"containers": []}}}
        }))
        .expect("an object");
        forget_what_scaling_does_not_need(&mut object);
        assert_eq!(object.data["spec"], serde_json::json!({"replicas": 3}));
        assert_eq!(object.metadata.managed_fields.as_ref().map(Vec::len), Some(1));
        assert_eq!(replicas_set_by(&object).as_deref(), Some("kubectl"));
    }
}
