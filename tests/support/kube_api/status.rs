//! Failures as the API server reports them: a typed error every handler returns, rendered as a
//! `Status` object whose `reason` and `code` real clients branch on (kube-rs's `Error::Api`,
//! kubectl's "Error from server (..)").

use serde_json::{Value, json};

use super::resources::Endpoint;

/// A failed API call: the HTTP code, the machine-readable reason and the message a person reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub(super) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into() }
    }

    /// A failure with the reason a real API server pairs with `code`, for injected faults.
    pub fn for_code(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Self::new(code, reason, message)
    }

    pub fn not_found(endpoint: &Endpoint, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", endpoint.qualified_plural()))
    }

    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn already_exists(endpoint: &Endpoint, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", endpoint.qualified_plural()))
    }

    /// The optimistic-concurrency failure of a write that carried a stale `resourceVersion`.
    pub fn stale(endpoint: &Endpoint, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                endpoint.qualified_plural()
            ),
        )
    }

    /// A server-side apply that would take fields another field manager owns.
    pub fn apply_conflict(conflicts: &[(String, String)]) -> Self {
        let fields: Vec<String> =
            conflicts.iter().map(|(manager, field)| format!("conflict with \"{manager}\": {field}")).collect();
        Self::new(409, "Conflict", format!("Apply failed with {} conflict(s): {}", conflicts.len(), fields.join(", ")))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(endpoint: &Endpoint, name: &str, detail: impl std::fmt::Display) -> Self {
        let kind = if endpoint.group.is_empty() {
            endpoint.kind_name.to_string()
        } else {
            format!("{}.{}", endpoint.kind_name, endpoint.group)
        };
        Self::new(422, "Invalid", format!("{kind} \"{name}\" is invalid: {detail}"))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    /// A watch asked to resume from a resourceVersion older than the history kept.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(410, "Expired", format!("too old resource version: {requested} ({oldest})"))
    }

    /// The `Status` object clients parse.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}
