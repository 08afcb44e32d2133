//! queue-scaler: keep queue workers on Kubernetes at the right size, and let them leave without losing a job.
//!
//! The crate has two audiences.
//!
//! * **Platform teams** run the agent (`queue-scaler run`): it reads backlog from queues, decides a replica count
//!   for each Deployment with the same arithmetic as the HPA (plus scale to zero, schedules and fallbacks), and
//!   writes the Deployment's `scale` subresource. It needs only namespace-scoped RBAC.
//! * **Worker authors** use [`drain`] (with `default-features = false, features = ["drain"]`): on SIGTERM a worker
//!   stops taking jobs, finishes or hands back what it holds, and exits, so scale-down loses nothing.
//!
//! Modules, from the inside out:
//!
//! * [`policy`] — the decision, pure: observations and a clock in, a replica count and its reason out.
//! * [`source`] — one file per queue, each behind the same small trait.
//! * [`target`] — what gets scaled: a Deployment through the Kubernetes API.
//! * [`agent`] — the loop that polls sources, asks the policy and writes the target.
//! * [`sim`] — a simulated queue and Deployment that the same agent loop drives under a virtual clock, the
//!   baselines it is compared with, and the scorecard.
//! * [`replay`] — recorded observations through the same decision code, one decision and reason per tick; with a
//!   shadow recording, a report against what the live autoscaler did.
//! * [`import`] — KEDA ScaledObjects and HPAs in, an equivalent config out.
//! * [`tune`] — the cheapest settings that meet a wait objective, searched in the simulator.
//! * [`config`] — the YAML contract, typed and validated with messages that name file, line and field.
//! * [`validation`] — the leaf the config, the policy and the sources share to say what is wrong: a problem at a
//!   path, durations as written.
//! * [`metrics`] — every metric name in one place.
//!
//! Cargo features choose what is built: `sim` is the decision, the simulator, `replay`, `tune`, `import` and
//! `check` with no client library at all; `kube` adds the cluster client (`run`, `scale`, `status`); `kafka`,
//! `rabbitmq`, `sqs`, `pubsub` and `prometheus` add one source each with its client; `agent`, the default, is all
//! of them. `drain` alone is the worker-side library.

// The crate documentation links the agent's modules, which a drain-only build does not have.
#![cfg_attr(not(feature = "sim"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "sim")]
pub mod agent;
#[cfg(feature = "sim")]
pub mod config;
#[cfg(feature = "drain")]
pub mod drain;
#[cfg(feature = "drain")]
mod http;
#[cfg(feature = "sim")]
pub mod import;
#[cfg(feature = "sim")]
pub mod metrics;
#[cfg(any(feature = "kube", feature = "rabbitmq", feature = "prometheus"))]
mod outbound;
#[cfg(feature = "sim")]
pub mod policy;
#[cfg(feature = "sim")]
pub mod redact;
#[cfg(feature = "sim")]
pub mod replay;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub mod source;
#[cfg(feature = "sim")]
pub mod target;
#[cfg(feature = "sim")]
pub mod tune;
#[cfg(feature = "sim")]
pub mod validation;
