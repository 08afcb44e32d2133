//! How a PATCH body changes an object. JSON merge patch (RFC 7386) is what kube-rs and kubectl send
//! for the writes queue-scaler makes; a strategic merge patch is read as a merge patch, which is
//! the same for every field without a merge key (none of the fields clients patch here has one);
//! server-side apply merges its configuration and checks field ownership.

use serde_json::Value;

use super::status::ApiError;

/// The patch formats the fake understands, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PatchType {
    /// `application/merge-patch+json` or `application/strategic-merge-patch+json`.
    Merge,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: Option<&str>) -> Result<Self, ApiError> {
        let media_type = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
        match media_type {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => Ok(Self::Merge),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Reads a patch body: JSON, or for apply also YAML (JSON is YAML, and kube-rs sends JSON).
pub(super) fn parse_body(patch_type: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    let unreadable = |error: String| ApiError::bad_request(format!("error decoding patch: {error}"));
    match patch_type {
        PatchType::Merge => serde_json::from_slice(body).map_err(|e| unreadable(e.to_string())),
        PatchType::Apply => serde_json::from_slice(body)
            .or_else(|_| serde_norway::from_slice(body))
            .map_err(|e| unreadable(e.to_string())),
    }
}

/// Applies a JSON merge patch to `target` in place: objects merge key by key, `null` removes,
/// anything else replaces.
pub(super) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(fields) = target else {
        return;
    };
    for (key, change) in changes {
        if change.is_null() {
            fields.remove(key);
        } else {
            merge(fields.entry(key.clone()).or_insert(Value::Null), change);
        }
    }
}
