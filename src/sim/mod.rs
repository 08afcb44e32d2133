//! The simulator behind `queue-scaler simulate`: a simulated queue and Deployment, the traffic that drives them,
//! and the scorecard that compares autoscaling policies.
//!
//! The agent runs its real decision loop against this model under a paused tokio clock, so anyone can watch the
//! autoscaler work without a cluster and compare it with the HPA, KEDA or a threshold loop on the same traffic.
//! The model itself is pure and deterministic: no I/O, no clock, no randomness beyond the seeded traces.
//!
//! - [`world`]: the discrete-event model of the queue, the pods and their scale-up and scale-down.
//! - [`trace`]: built-in traces and CSV traces.
//! - [`cluster`]: the simulated source and Deployment the agent's loop reads and writes.
//! - [`run`]: one run of the agent's loop over a trace, under a paused clock.
//! - [`baseline`]: the HPA, KEDA, the seed's threshold loop and a clairvoyant oracle, in the same world.
//! - [`compare`]: queue-scaler and the baselines over one trace.
//! - [`report`]: per-policy wait percentiles, cost and utilization, as JSON or a plain-text table.
//! - [`plot`]: backlog, replicas and wait of every policy over time, as an SVG.
//! - [`progress`]: a progress bar on a terminal for runs that take a while.
//! - [`scorecard`]: every built-in trace with every policy, checked against the goals, as markdown.
//! - [`quiet_score`]: quiet scale-down next to idle-first on every built-in trace, checked against its goals.

pub mod baseline;
pub mod cluster;
pub mod compare;
pub mod frontier;
pub mod plot;
pub mod progress;
pub mod quiet_score;
pub mod report;
pub mod run;
#[cfg(test)]
mod scenarios;
pub mod scorecard;
pub mod trace;
pub mod world;

pub use report::{PolicyReport, SimReport, render_table};
pub use trace::{BUILTIN, Job, TraceError, builtin, read_csv, write_csv};
pub use world::{PolicyOutcome, Sample, SettingsError, Snapshot, Stall, World, WorldSettings};
