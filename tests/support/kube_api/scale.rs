//! A Deployment's `scale` subresource, the one way queue-scaler changes replicas: an
//! `autoscaling/v1` Scale read from and written to the Deployment, guarded by its resourceVersion
//! like any other write.

use serde_json::{Value, json};

use super::api::{Call, Reply};
use super::deployments;
use super::patch::{self, PatchType};
use super::resources::{Kind, stored_endpoint};
use super::shared::Shared;
use super::status::ApiError;
use super::store::ObjectKey;
use super::validation::{check_name, check_resource_version, object_body};

/// Answers GET, PUT and PATCH on `.../deployments/NAME/scale`.
pub(super) fn handle(shared: &Shared, key: &ObjectKey, call: &Call<'_>) -> Result<Reply, ApiError> {
    let scale = match call.method {
        "GET" => get(shared, key),
        "PUT" => replace(shared, key, call),
        "PATCH" => patch(shared, key, call),
        _ => return Err(ApiError::method_not_allowed()),
    }?;
    Ok(Reply::Json { code: 200, body: scale })
}

fn get(shared: &Shared, key: &ObjectKey) -> Result<Value, ApiError> {
    let deployment = shared.read(|store| store.get(key).cloned());
    let deployment = deployment.ok_or_else(|| ApiError::not_found(stored_endpoint(Kind::Deployment), &key.name))?;
    Ok(deployments::scale_of(&deployment))
}

fn replace(shared: &Shared, key: &ObjectKey, call: &Call<'_>) -> Result<Value, ApiError> {
    let sent = object_body(call.body)?;
    check_name(&sent, &key.name)?;
    write(shared, key, &call.manager(), |current| {
        check_resource_version(stored_endpoint(Kind::Deployment), key, &sent, current)?;
        deployments::requested_replicas(&sent, &key.name)
    })
}

fn patch(shared: &Shared, key: &ObjectKey, call: &Call<'_>) -> Result<Value, ApiError> {
    // Apply and merge come to the same thing on a Scale: its one writable field is spec.replicas.
    let patch_type = PatchType::from_content_type(call.content_type)?;
    let sent = patch::parse_body(patch_type, call.body)?;
    write(shared, key, &call.manager(), |current| {
        check_resource_version(stored_endpoint(Kind::Deployment), key, &sent, current)?;
        let mut scale = deployments::scale_of(current);
        patch::merge(&mut scale, &sent);
        deployments::requested_replicas(&scale, &key.name)
    })
}

/// Sets a Deployment's `spec.replicas` to what `replicas_for` makes of its current state, answering
/// with the Scale.
fn write(
    shared: &Shared,
    key: &ObjectKey,
    manager: &str,
    replicas_for: impl FnOnce(&Value) -> Result<u64, ApiError>,
) -> Result<Value, ApiError> {
    let endpoint = stored_endpoint(Kind::Deployment);
    let updated = shared.write(|store| {
        let current = store.get(key).ok_or_else(|| ApiError::not_found(endpoint, &key.name))?;
        let replicas = replicas_for(current)?;
        let mut updated = current.clone();
        updated["spec"]["replicas"] = json!(replicas);
        let mut owners = store.owners(key).cloned().unwrap_or_default();
        owners.record_update(manager, current, &updated);
        Ok(store.update(key.clone(), updated, owners))
    })?;
    Ok(deployments::scale_of(&updated))
}
