//! `queue-scaler scale`: a human sets a workload's count, or holds the agent off it, through the same API the agent
//! writes with, named `queue-scaler-cli` in `managedFields` so the agent can tell who scaled last.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use super::workload::{CLI_FIELD_MANAGER, api_error};
use super::{HOLD_ANNOTATION, TargetError, kinds};
use crate::config::ScaleTargetRef;

/// A change made by a human with `queue-scaler scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualChange {
    /// The replica count to set.
    pub replicas: Option<u32>,
    /// Keep the agent off the workload until then.
    pub hold_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Remove an earlier hold.
    pub release: bool,
}

impl ManualChange {
    /// One line saying what was done.
    pub fn describe(&self, namespace: &str, workload: &ScaleTargetRef) -> String {
        let mut parts = Vec::new();
        if let Some(replicas) = self.replicas {
            parts.push(format!("scaled to {replicas}"));
        }
        if let Some(until) = self.hold_until {
            parts.push(format!("held until {}", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        }
        if self.release {
            parts.push("hold released".to_owned());
        }
        format!("{} {namespace}/{}: {}", workload.kind.to_lowercase(), workload.name, parts.join(", "))
    }
}

/// Applies a manual change: the hold first, so the agent does not undo the new count in between.
pub async fn change_by_hand(
    client: kube::Client,
    namespace: &str,
    workload: &ScaleTargetRef,
    change: &ManualChange,
) -> Result<(), TargetError> {
    let resource = kinds::resolve(&client, workload).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &resource);
    let name = workload.name.as_str();
    let to_error = |e| api_error(e, workload, namespace);
    let params = PatchParams { field_manager: Some(CLI_FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    let annotation = match (change.hold_until, change.release) {
        (Some(until), _) => Some(json!(until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))),
        (None, true) => Some(serde_json::Value::Null),
        (None, false) => None,
    };
    if let Some(value) = annotation {
        let patch = json!({ "metadata": { "annotations": { HOLD_ANNOTATION: value } } });
        api.patch(name, &params, &Patch::Merge(&patch)).await.map_err(to_error)?;
    }
    if let Some(replicas) = change.replicas {
        let patch = json!({ "spec": { "replicas": replicas } });
        api.patch_scale(name, &params, &Patch::Merge(&patch)).await.map_err(to_error)?;
    }
    Ok(())
}
