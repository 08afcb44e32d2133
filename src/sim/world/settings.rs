//! The settings of the simulated Deployment: how fast pods start, how much work each takes, how they are removed.
//!
//! They mirror the Deployment and worker settings that change how an autoscaler performs, so a simulation can be
//! set up like the cluster it stands for.

use thiserror::Error;

/// How the simulated Deployment's pods behave.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldSettings {
    /// Seconds from a pod's creation until it consumes: scheduling, image pull, start-up, readiness. Default 30.
    pub pod_start_delay_s: f64,
    /// Jobs one pod works on at once. Default 1.
    pub concurrency: u32,
    /// Seconds a removed pod has to finish its jobs before the rest are handed back
    /// (terminationGracePeriodSeconds). Default 30.
    pub termination_grace_s: f64,
    /// Scale-down removes idle pods before busy ones, as queue-scaler's idle-first scale-down achieves with
    /// pod-deletion-cost; otherwise the newest ready pods go, busy or not. Default false.
    pub idle_first: bool,
    /// Pods that exist and are ready at t = 0. Default 1, a Deployment's own default.
    pub initial_replicas: u32,
    /// Seconds between timeline samples. Default 5.
    pub sample_every_s: f64,
}

impl Default for WorldSettings {
    fn default() -> WorldSettings {
        WorldSettings {
            pod_start_delay_s: 30.0,
            concurrency: 1,
            termination_grace_s: 30.0,
            idle_first: false,
            initial_replicas: 1,
            sample_every_s: 5.0,
        }
    }
}

/// A setting the model cannot run with.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SettingsError {
    #[error("pod start delay must be a finite number of seconds ≥ 0, got {0}")]
    PodStartDelay(f64),
    #[error("concurrency must be at least 1 job per pod")]
    Concurrency,
    #[error("termination grace period must be a finite number of seconds ≥ 0, got {0}")]
    TerminationGrace(f64),
    #[error("sample interval must be a finite number of seconds > 0, got {0}")]
    SampleEvery(f64),
}

impl WorldSettings {
    /// Checks every setting, so that a command line can reject bad input with a message.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let seconds_at_least_zero = |s: f64| s.is_finite() && s >= 0.0;
        if !seconds_at_least_zero(self.pod_start_delay_s) {
            return Err(SettingsError::PodStartDelay(self.pod_start_delay_s));
        }
        if self.concurrency == 0 {
            return Err(SettingsError::Concurrency);
        }
        if !seconds_at_least_zero(self.termination_grace_s) {
            return Err(SettingsError::TerminationGrace(self.termination_grace_s));
        }
        if !(self.sample_every_s.is_finite() && self.sample_every_s > 0.0) {
            return Err(SettingsError::SampleEvery(self.sample_every_s));
        }
        Ok(())
    }

    /// Replaces each setting [`WorldSettings::validate`] would reject with its default, so the model never divides
    /// by zero or loops forever on a zero sample interval.
    pub(super) fn into_range(self) -> WorldSettings {
        let defaults = WorldSettings::default();
        let seconds_or = |s: f64, default: f64| {
            if s.is_finite() && s >= 0.0 { s } else { default }
        };
        WorldSettings {
            pod_start_delay_s: seconds_or(self.pod_start_delay_s, defaults.pod_start_delay_s),
            concurrency: self.concurrency.max(1),
            termination_grace_s: seconds_or(self.termination_grace_s, defaults.termination_grace_s),
            sample_every_s: if self.sample_every_s.is_finite() && self.sample_every_s > 0.0 {
                self.sample_every_s
            } else {
                defaults.sample_every_s
            },
            ..self
        }
    }
}
