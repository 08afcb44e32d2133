//! The settings of the simulated Deployment: how fast pods start, how much work each takes, how they are removed.
//!
//! They mirror the Deployment and worker settings that change how an autoscaler performs, so a simulation can be
//! set up like the cluster it stands for, plus what the broker can tell and the troubles a real consumer meets.

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
    /// The queue reports how long its oldest waiting job has waited, as RabbitMQ's `head_message_timestamp` or
    /// Pub/Sub's `oldest_unacked_message_age` do; off for a broker that cannot. Default true.
    pub reports_oldest_age: bool,
    /// Times when the consumers are stuck (a downstream service is down, a poison message): every job in flight
    /// makes no progress, however many pods run. Default none.
    pub stalls: Vec<Stall>,
}

/// A stretch of time, `[from_s, until_s)`, in which no job makes progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    pub from_s: f64,
    pub until_s: f64,
}

impl Stall {
    /// When work of `work_s` seconds started at `start_s` is done, given that it makes no progress during `stalls`
    /// (sorted by start; they may overlap).
    pub(super) fn work_ends_at(start_s: f64, work_s: f64, stalls: &[Stall]) -> f64 {
        let (mut t, mut left_s) = (start_s, work_s);
        for stall in stalls.iter().filter(|stall| stall.until_s > start_s) {
            if stall.from_s > t {
                if left_s <= stall.from_s - t {
                    return t + left_s;
                }
                left_s -= stall.from_s - t;
            }
            t = t.max(stall.until_s);
        }
        t + left_s
    }
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
            reports_oldest_age: true,
            stalls: Vec::new(),
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
    #[error("a consumer stall must run from a finite time ≥ 0 to a later finite time, got {0} to {1}")]
    Stall(f64, f64),
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
        if let Some(stall) = self.stalls.iter().find(|stall| !stall.is_valid()) {
            return Err(SettingsError::Stall(stall.from_s, stall.until_s));
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
            stalls: {
                let mut stalls: Vec<Stall> = self.stalls.iter().copied().filter(Stall::is_valid).collect();
                stalls.sort_by(|a, b| a.from_s.total_cmp(&b.from_s));
                stalls
            },
            ..self
        }
    }
}

impl Stall {
    fn is_valid(&self) -> bool {
        self.from_s.is_finite() && self.until_s.is_finite() && self.from_s >= 0.0 && self.until_s > self.from_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_pauses_during_stalls_and_resumes_after_them() {
        let stalls = [Stall { from_s: 10.0, until_s: 20.0 }, Stall { from_s: 15.0, until_s: 30.0 }];
        // Done before the first stall.
        assert_eq!(Stall::work_ends_at(0.0, 10.0, &stalls), 10.0);
        // 10 s before the stalls, 5 s after the overlapping pair ends at 30.
        assert_eq!(Stall::work_ends_at(0.0, 15.0, &stalls), 35.0);
        // Started inside a stall: nothing happens until 30.
        assert_eq!(Stall::work_ends_at(12.0, 4.0, &stalls), 34.0);
        // Started after every stall.
        assert_eq!(Stall::work_ends_at(40.0, 4.0, &stalls), 44.0);
        assert_eq!(Stall::work_ends_at(0.0, 4.0, &[]), 4.0);
    }
}
