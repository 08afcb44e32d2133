//! The checks a real API server makes on a write before it touches storage: a decodable object in
//! the URL's namespace and name, a matching resourceVersion when one is given, a status only the
//! controller sets, and the few validation rules code under test can trip.

use serde_json::{Value, json};

use super::deployments;
use super::resources::{Endpoint, Kind};
use super::status::ApiError;
use super::store::ObjectKey;

/// A request body that must be a JSON object; `metadata` is made an object if absent.
pub(super) fn object_body(body: &[u8]) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the body of the request could not be decoded: {error}")))?;
    let Value::Object(fields) = &mut object else {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    };
    let metadata = fields.entry("metadata").or_insert_with(|| json!({}));
    if !metadata.is_object() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(object)
}

/// A non-empty string field.
pub(super) fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str).filter(|text| !text.is_empty())
}

pub(super) fn check_namespace(sent: &Value, namespace: &str) -> Result<(), ApiError> {
    match text(sent, "/metadata/namespace") {
        Some(other) if other != namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(()),
    }
}

pub(super) fn check_name(sent: &Value, name: &str) -> Result<(), ApiError> {
    match text(sent, "/metadata/name") {
        Some(other) if other != name => Err(ApiError::bad_request(format!(
            "the name of the object ({other}) does not match the name on the URL ({name})"
        ))),
        _ => Ok(()),
    }
}

/// Optimistic concurrency: a write naming a resourceVersion succeeds only against that version.
pub(super) fn check_resource_version(
    endpoint: &Endpoint,
    key: &ObjectKey,
    sent: &Value,
    current: &Value,
) -> Result<(), ApiError> {
    match text(sent, "/metadata/resourceVersion") {
        Some(wanted) if Some(wanted) != text(current, "/metadata/resourceVersion") => {
            Err(ApiError::stale(endpoint, &key.name))
        }
        _ => Ok(()),
    }
}

/// Writes to a Deployment itself do not set its status, which belongs to the controller: a new one
/// starts with none, an updated one keeps the current one (`current` is `None` for a create).
pub(super) fn keep_status(key: &ObjectKey, current: Option<&Value>, written: &mut Value) {
    if key.kind.has_scale() {
        written["status"] = current.and_then(|c| c.get("status")).cloned().unwrap_or_else(|| json!({}));
    }
}

/// The validation rules of the kinds served that code under test could break.
pub(super) fn validate(key: &ObjectKey, stored: &Value) -> Result<(), ApiError> {
    match key.kind {
        Kind::Deployment | Kind::StatefulSet | Kind::WorkerPool => deployments::validate(key.kind, stored),
        Kind::Pod | Kind::Event | Kind::Lease | Kind::Plain(_) => Ok(()),
    }
}
