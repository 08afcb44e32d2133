//! Other autoscalers in the namespace: a workload that an HPA or a KEDA ScaledObject already scales is not managed.
//!
//! Two controllers writing one `spec.replicas` fight: each undoes the other every few seconds, the pods churn and
//! neither's promises hold. The agent cannot tell which one the user meant, so it leaves the workload to the one
//! that was there and says so (a Warning Event, an error log and `queue_scaler_other_controller`). It watches
//! `autoscaling/v2` HorizontalPodAutoscalers (list and watch, one stream per namespace) and lists KEDA's
//! `keda.sh/v1alpha1` ScaledObjects every [`SCALED_OBJECTS_EVERY`]; a cluster without KEDA answers that list with
//! 404, which means there are none, not an error. KEDA also creates an HPA for each ScaledObject; the ScaledObject is
//! named first, as it is what the user wrote.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::config::ScaleTargetRef;

/// How often ScaledObjects are listed (they cannot be watched without the CRD's list-watch permission).
pub const SCALED_OBJECTS_EVERY: Duration = Duration::from_secs(30);

/// A workload's other autoscaler, as `Kind/name`.
pub type Owner = String;

/// What the agent knows of the namespace's other autoscalers; cheap to clone.
#[derive(Clone)]
pub struct OtherControllers {
    hpas: Option<Store<HorizontalPodAutoscaler>>,
    scaled_objects: Arc<Mutex<Vec<ScaledObjectTarget>>>,
}

/// A ScaledObject and the kind and name of what it scales.
#[derive(Debug, Clone, PartialEq)]
struct ScaledObjectTarget {
    scaled_object: String,
    kind: String,
    name: String,
}

impl OtherControllers {
    /// Knows of none: for targets outside a cluster (the simulator) and tests.
    pub fn none() -> OtherControllers {
        OtherControllers { hpas: None, scaled_objects: Arc::default() }
    }

    /// Starts watching `namespace`; the returned future drives the watch and the lists and must be spawned.
    pub fn start(
        client: kube::Client,
        namespace: &str,
    ) -> (OtherControllers, impl Future<Output = ()> + Send + 'static) {
        let hpa_api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
        let (store, writer) = reflector::store();
        let gvk = GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject");
        let scaled_api: Api<DynamicObject> =
            Api::namespaced_with(client, namespace, &ApiResource::from_gvk_with_plural(&gvk, "scaledobjects"));
        let known = OtherControllers { hpas: Some(store), scaled_objects: Arc::default() };
        let scaled_objects = known.scaled_objects.clone();
        let driver = async move {
            use futures::StreamExt;
            let hpas = async {
                let stream =
                    watcher(hpa_api, watcher::Config::default()).default_backoff().reflect(writer).applied_objects();
                futures::pin_mut!(stream);
                while let Some(event) = stream.next().await {
                    if let Err(e) = event {
                        tracing::warn!(error = %e, "HorizontalPodAutoscaler watch interrupted; retrying with backoff");
                    }
                }
            };
            let scaled = async {
                let mut every = tokio::time::interval(SCALED_OBJECTS_EVERY);
                loop {
                    every.tick().await;
                    match scaled_api.list(&ListParams::default()).await {
                        Ok(list) => {
                            *lock(&scaled_objects) = list.items.iter().filter_map(target_of_scaled_object).collect()
                        }
                        Err(error) if is_absent(&error) => lock(&scaled_objects).clear(),
                        Err(error) => tracing::warn!(%error, "cannot list KEDA ScaledObjects; keeping the last list"),
                    }
                }
            };
            tokio::join!(hpas, scaled);
        };
        (known, driver)
    }

    /// The other autoscaler that scales `workload`, if any (matched by kind and name, as both autoscalers name it).
    pub fn owner_of(&self, workload: &ScaleTargetRef) -> Option<Owner> {
        let scaled = lock(&self.scaled_objects)
            .iter()
            .find(|t| t.kind == workload.kind && t.name == workload.name)
            .map(|t| t.scaled_object.clone());
        scaled.map(|so| format!("ScaledObject/{so}")).or_else(|| {
            self.hpas.as_ref()?.state().iter().find_map(|hpa| {
                let target = &hpa.spec.as_ref()?.scale_target_ref;
                (target.kind == workload.kind && target.name == workload.name)
                    .then(|| format!("HorizontalPodAutoscaler/{}", hpa.metadata.name.clone().unwrap_or_default()))
            })
        })
    }
}

fn lock(list: &Mutex<Vec<ScaledObjectTarget>>) -> std::sync::MutexGuard<'_, Vec<ScaledObjectTarget>> {
    list.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a ScaledObject scales (its `scaleTargetRef.kind` defaults to Deployment).
fn target_of_scaled_object(object: &DynamicObject) -> Option<ScaledObjectTarget> {
    let target = object.data.get("spec")?.get("scaleTargetRef")?;
    let kind = target.get("kind").and_then(|k| k.as_str()).unwrap_or("Deployment");
    let name = target.get("name")?.as_str()?;
    Some(ScaledObjectTarget {
        scaled_object: object.metadata.name.clone().unwrap_or_default(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    })
}

/// Whether a list failed because the API does not exist (KEDA not installed).
fn is_absent(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaled_object(name: &str, target: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name},
            "spec": {"scaleTargetRef": target}
        }))
        .expect("a ScaledObject")
    }

    #[test]
    fn a_scaled_object_targets_a_deployment_by_default_and_any_kind_it_names() {
        let default_kind = scaled_object("so", serde_json::json!({"name": "worker"}));
        let stateful = scaled_object("so-db", serde_json::json!({"name": "db", "kind": "StatefulSet"}));
        let known = OtherControllers::none();
        *lock(&known.scaled_objects) =
            [default_kind, stateful].iter().filter_map(target_of_scaled_object).collect::<Vec<_>>();
        assert_eq!(known.owner_of(&ScaleTargetRef::deployment("worker")).as_deref(), Some("ScaledObject/so"));
        assert_eq!(known.owner_of(&ScaleTargetRef::deployment("other")), None);
        let db = |kind: &str| ScaleTargetRef { api_version: "apps/v1".into(), kind: kind.into(), name: "db".into() };
        assert_eq!(known.owner_of(&db("StatefulSet")).as_deref(), Some("ScaledObject/so-db"));
        assert_eq!(known.owner_of(&db("Deployment")), None, "same name, other kind");
    }

    #[test]
    fn a_missing_keda_api_is_no_scaled_object_and_other_errors_are_errors() {
        let status = |code: u16| {
            kube::Error::Api(
                kube::core::Status::failure("x", if code == 404 { "NotFound" } else { "Forbidden" })
                    .with_code(code)
                    .boxed(),
            )
        };
        assert!(is_absent(&status(404)));
        assert!(!is_absent(&status(403)));
    }
}
