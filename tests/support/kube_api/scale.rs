//! The `scale` subresource of a Deployment, a StatefulSet or a WorkerPool, the one way
//! queue-scaler changes replicas: an `autoscaling/v1` Scale read from and written to the object,
//! guarded by its resourceVersion like any other write.

use serde_json::{Value, json};

use super::api::{Call, Reply};
use super::deployments;
use super::patch::{self, PatchType};
use super::resources::Endpoint;
use super::shared::Shared;
use super::status::ApiError;
use super::store::ObjectKey;
use super::validation::{check_name, check_resource_version, object_body};

/// Answers GET, PUT and PATCH on `.../PLURAL/NAME/scale`.
pub(super) fn handle(
    shared: &Shared,
    endpoint: &'static Endpoint,
    key: &ObjectKey,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
    let scale = match call.method {
        "GET" => get(shared, endpoint, key),
        "PUT" => replace(shared, endpoint, key, call),
        "PATCH" => patch(shared, endpoint, key, call),
        _ => return Err(ApiError::method_not_allowed()),
    }?;
    Ok(Reply::Json { code: 200, body: scale })
}

fn get(shared: &Shared, endpoint: &'static Endpoint, key: &ObjectKey) -> Result<Value, ApiError> {
    let object = shared.read(|store| store.get(key).cloned());
    let object = object.ok_or_else(|| ApiError::not_found(endpoint, &key.name))?;
    Ok(deployments::scale_of(key.kind, &object))
}

fn replace(shared: &Shared, endpoint: &'static Endpoint, key: &ObjectKey, call: &Call<'_>) -> Result<Value, ApiError> {
    let sent = object_body(call.body)?;
    check_name(&sent, &key.name)?;
    write(shared, endpoint, key, &call.manager(), |current| {
        check_resource_version(endpoint, key, &sent, current)?;
        deployments::requested_replicas(endpoint, &sent, &key.name)
    })
}

fn patch(shared: &Shared, endpoint: &'static Endpoint, key: &ObjectKey, call: &Call<'_>) -> Result<Value, ApiError> {
    // Apply and merge come to the same thing on a Scale: its one writable field is spec.replicas.
    let patch_type = PatchType::from_content_type(call.content_type)?;
    let sent = patch::parse_body(patch_type, call.body)?;
    write(shared, endpoint, key, &call.manager(), |current| {
        check_resource_version(endpoint, key, &sent, current)?;
        let mut scale = deployments::scale_of(key.kind, current);
        patch::merge(&mut scale, &sent);
        deployments::requested_replicas(endpoint, &scale, &key.name)
    })
}

/// Sets an object's `spec.replicas` to what `replicas_for` makes of its current state, answering
/// with the Scale.
fn write(
    shared: &Shared,
    endpoint: &'static Endpoint,
    key: &ObjectKey,
    manager: &str,
    replicas_for: impl FnOnce(&Value) -> Result<u64, ApiError>,
) -> Result<Value, ApiError> {
    let updated = shared.write(|store| {
        let current = store.get(key).ok_or_else(|| ApiError::not_found(endpoint, &key.name))?;
        let replicas = replicas_for(current)?;
        let mut updated = current.clone();
        updated["spec"]["replicas"] = json!(replicas);
        let mut owners = store.owners(key).cloned().unwrap_or_default();
        owners.record_update(manager, current, &updated);
        Ok(store.update(key.clone(), updated, owners))
    })?;
    Ok(deployments::scale_of(key.kind, &updated))
}
