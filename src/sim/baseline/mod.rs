//! The policies queue-scaler is measured against, run in the same simulated world as the agent.
//!
//! A comparison is only worth something if the other side is played well, so each baseline follows the system it
//! stands for as closely as the model allows, with that system's defaults and the same per-replica target
//! (`backlogPerWorker`) and replica bounds as the queue-scaler target it is compared with:
//!
//! - [`hpa`]: the Kubernetes HPA v2 with an External `AverageValue` metric;
//! - [`keda`]: that HPA fed by KEDA's 30 s polling, plus KEDA's own 0 ↔ 1 activation and cooldown;
//! - [`threshold`]: the seed's simple loop, one replica up or down every 10 s;
//! - [`oracle`]: a clairvoyant plan that knows every job in advance and meets `maxWait` as cheaply as it can.
//!
//! Every baseline reads what the simulated queue source reads: the waiting plus the in-flight jobs.

pub mod hpa;
pub mod keda;
pub mod oracle;
pub mod threshold;

use std::fmt;
use std::str::FromStr;

use super::run::give_up_at;
use super::world::{PolicyOutcome, Snapshot, World};
use crate::config::TargetConfig;

/// A baseline policy, by its `--compare` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Baseline {
    /// The Kubernetes HPA.
    Hpa,
    /// KEDA with its HPA.
    Keda,
    /// The seed's threshold loop.
    Threshold,
    /// The clairvoyant plan.
    Oracle,
}

impl Baseline {
    /// Every baseline, in report order.
    pub const ALL: [Baseline; 4] = [Baseline::Hpa, Baseline::Keda, Baseline::Threshold, Baseline::Oracle];

    /// The name in `--compare` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Hpa => "hpa",
            Baseline::Keda => "keda",
            Baseline::Threshold => "threshold",
            Baseline::Oracle => "oracle",
        }
    }
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--compare` name that is no baseline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy `{0}`; compare with any of hpa, keda, threshold, oracle")]
pub struct UnknownBaseline(pub String);

impl FromStr for Baseline {
    type Err = UnknownBaseline;

    fn from_str(text: &str) -> Result<Baseline, UnknownBaseline> {
        Baseline::ALL.into_iter().find(|b| b.name() == text.trim()).ok_or_else(|| UnknownBaseline(text.to_owned()))
    }
}

/// What the reactive baselines take from the queue-scaler target: the same targets and bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// The per-replica target of each source (`backlogPerWorker`), one metric each.
    pub per_replica: Vec<f64>,
    /// `minReplicas` of the target.
    pub min_replicas: u32,
    /// `maxReplicas` of the target.
    pub max_replicas: u32,
    /// `activation` of the target: KEDA's `activationThreshold`.
    pub activation: f64,
}

impl Targets {
    /// The targets and bounds of `target`.
    pub fn of(target: &TargetConfig) -> Targets {
        Targets {
            per_replica: target.sources.iter().map(|s| s.backlog_per_worker).collect(),
            min_replicas: target.min_replicas,
            max_replicas: target.max_replicas,
            activation: target.activation,
        }
    }
}

/// The metric every baseline reads: waiting plus in-flight jobs, as the simulated source reports the backlog.
pub fn queue_length(snapshot: &Snapshot) -> f64 {
    (snapshot.waiting + snapshot.in_flight) as f64
}

/// Runs a controller that acts every `step_s` seconds of simulated time, from t = 0, until every job is done (or
/// the same deadline as the agent's run). `act` gets the time, what the world shows and the current replica
/// count, and returns the count to set; `progress` gets the fraction of the trace simulated so far.
pub fn drive(
    mut world: World,
    name: &str,
    step_s: f64,
    progress: &mut dyn FnMut(f64),
    mut act: impl FnMut(f64, &Snapshot, u32) -> u32,
) -> PolicyOutcome {
    let end_s = give_up_at(&world).as_secs_f64();
    let last_arrival_s = world.last_arrival_s().max(step_s);
    let mut tick: u64 = 0;
    loop {
        let t = tick as f64 * step_s;
        world.advance_to(t);
        let current = world.replicas();
        let desired = act(t, &world.snapshot(), current);
        if desired != current {
            world.set_replicas(t, desired);
        }
        progress((t / last_arrival_s).min(1.0));
        if world.is_done() || t >= end_s {
            break;
        }
        tick += 1;
    }
    world.finish(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for baseline in Baseline::ALL {
            assert_eq!(baseline.name().parse::<Baseline>(), Ok(baseline));
        }
        assert_eq!(" keda".parse::<Baseline>(), Ok(Baseline::Keda));
        let err = "knative".parse::<Baseline>().unwrap_err();
        assert_eq!(err.to_string(), "unknown policy `knative`; compare with any of hpa, keda, threshold, oracle");
    }
}
