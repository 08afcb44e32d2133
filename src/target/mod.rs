//! What gets scaled: a replica count that can be read and written.
//!
//! The agent loop is generic over [`ScaleTarget`], so the same loop drives any workload with a `scale` subresource
//! through the Kubernetes API ([`workload`]: a Deployment, a StatefulSet, a custom resource) and the simulator's
//! Deployment. A target also reports a manual hold (`queue-scaler scale
//! --hold`), which the loop honours before asking the policy anything.

#[cfg(feature = "kube")]
pub mod by_hand;
#[cfg(feature = "kube")]
pub mod deletion_cost;
#[cfg(feature = "kube")]
pub mod kinds;
#[cfg(feature = "kube")]
pub mod other_controllers;
#[cfg(feature = "kube")]
pub mod quiet;
#[cfg(feature = "kube")]
pub mod worker_pods;
#[cfg(feature = "kube")]
pub mod workload;
#[cfg(feature = "kube")]
pub mod workloads;

use std::future::Future;

use chrono::{DateTime, Utc};

/// The annotation that tells the agent to leave a workload alone until an RFC 3339 time.
pub const HOLD_ANNOTATION: &str = "queue-scaler.io/hold-until";

/// What the loop needs to know about a target before deciding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScaleState {
    /// The replica count the target runs now (its scale subresource's `spec.replicas`).
    pub replicas: u32,
    /// A manual hold: the agent must not write before this time.
    pub hold: Option<Hold>,
    /// Another autoscaler that scales this target (`HorizontalPodAutoscaler/NAME`, `ScaledObject/NAME`): the agent
    /// leaves it alone.
    pub other_controller: Option<String>,
    /// Who last set the replica count, as the API's `managedFields` name it (`kubectl`, `argocd-controller`, ...).
    pub replicas_set_by: Option<String>,
}

/// A manual hold on a target.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// Held until this time.
    Until(DateTime<Utc>),
    /// The annotation could not be read; a human meant to hold, so the agent holds and says how to fix it.
    Unreadable(String),
}

impl Hold {
    /// Reads the annotation's value.
    pub fn parse(value: &str) -> Hold {
        match DateTime::parse_from_rfc3339(value.trim()) {
            Ok(until) => Hold::Until(until.with_timezone(&Utc)),
            Err(_) => Hold::Unreadable(format!(
                "annotation {HOLD_ANNOTATION}=`{value}` is not an RFC 3339 time; fix it (e.g. 2026-11-23T18:00:00Z) \
                 or remove it"
            )),
        }
    }

    /// Whether the hold is in force at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        match self {
            Hold::Until(until) => *until > now,
            Hold::Unreadable(_) => true,
        }
    }
}

/// Why a target could not be read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// The workload does not exist (yet).
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// Its kind (`Deployment`, `StatefulSet`).
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Someone else changed the target since it was read (its count, or anything else that made the API answer 409
    /// Conflict); the next poll decides again from the new state.
    #[error("the target changed{} since its count was read as {expected}; deciding again next poll", found.map(|n| format!(" (its count is now {n})")).unwrap_or_default())]
    Changed {
        /// What the decision assumed.
        expected: u32,
        /// The count the target has now, when known.
        found: Option<u32>,
    },
    /// A manual hold was set after the tick read the target: the write is dropped.
    #[error("a hold was set since the target was read: {0}")]
    Held(String),
    /// This agent's leadership lapsed, or has too little time left, to send the write.
    #[error("this agent no longer leads with time to spare; the write is left to the new leader")]
    NotLeading,
    /// The API serves no such kind: a typo in `scaleTargetRef`, or the custom resource's CRD is not installed.
    #[error("the API serves no {kind} in {api_version}; check scaleTargetRef, or install the kind's CRD")]
    UnknownKind {
        /// The `scaleTargetRef.apiVersion`.
        api_version: String,
        /// The `scaleTargetRef.kind`.
        kind: String,
    },
    /// The API refused or failed the request.
    #[error("the Kubernetes API answered {code}: {message}")]
    Api {
        /// HTTP status.
        code: u16,
        /// The API's message.
        message: String,
    },
    /// The API could not be reached, or did not answer in time.
    #[error("the Kubernetes API is unreachable: {0}")]
    Unreachable(String),
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The count is now the one asked for.
    Done,
    /// A scale-down is under way but the count is unchanged: workers were told to go quiet and still hold jobs
    /// (the sentence says so). The next tick asks again; the count drops once they are idle.
    Pending(String),
}

/// Something with a replica count.
pub trait ScaleTarget: Send + Sync {
    /// The current count and any manual hold.
    fn read(&self) -> impl Future<Output = Result<ScaleState, TargetError>> + Send;
    /// Sets the count from `from` to `to`, or, for a scale-down that quiets workers first, starts or continues that
    /// ([`Written::Pending`]); `reason` is the decision's reason, already scrubbed of secrets, for humans (e.g. a
    /// Kubernetes Event). Fails with [`TargetError::Changed`] if the count is no longer `from`, so a decision is
    /// never applied to a state it was not made for.
    fn write(&self, from: u32, to: u32, reason: &str) -> impl Future<Output = Result<Written, TargetError>> + Send;

    /// The decision keeps the count at `count`: a scale-down under way is called off (quiet workers resume).
    fn keep(&self, _count: u32) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The current count and hold read from the source of truth rather than a cache, for when a cached read is in
    /// doubt; targets without a cache read as [`ScaleTarget::read`] does.
    fn read_fresh(&self) -> impl Future<Output = Result<ScaleState, TargetError>> + Send {
        self.read()
    }

    /// Tells the humans watching the target about a problem with it (a Kubernetes Warning Event); `reason` is a
    /// CamelCase code, `note` a scrubbed sentence. Targets nobody watches that way ignore it.
    fn warn(&self, _reason: &str, _note: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_until_the_time_and_holds_on_garbage() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").expect("time").with_timezone(&Utc);
        assert!(Hold::parse("2026-11-23T13:00:00Z").is_active(now));
        assert!(!Hold::parse("2026-11-23T11:00:00+00:00").is_active(now));
        let garbage = Hold::parse("tomorrow");
        assert!(garbage.is_active(now));
        assert!(matches!(garbage, Hold::Unreadable(m) if m.contains("not an RFC 3339 time")));
    }
}
