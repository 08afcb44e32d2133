//! The Lease protocol itself, on the cluster client: campaign, renew, stand by, release.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Leadership;

/// Timings of the election, client-go's defaults scaled to the lease duration.
#[derive(Debug, Clone)]
pub struct ElectionSettings {
    /// The Lease's name.
    pub lease_name: String,
    /// Who this agent is in the Lease's `holderIdentity` (the pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal; a standby takes over after that.
    pub lease_duration: Duration,
    /// How long a leader keeps acting after its last successful renewal began; shorter than `lease_duration`.
    pub renew_deadline: Duration,
    /// How often the Lease is renewed or checked.
    pub retry_period: Duration,
}

impl ElectionSettings {
    /// client-go's proportions (15 s / 10 s / 2 s) for a given lease duration.
    pub fn for_duration(lease_name: &str, identity: &str, lease_duration: Duration) -> ElectionSettings {
        ElectionSettings {
            lease_name: lease_name.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
            renew_deadline: lease_duration.mul_f64(2.0 / 3.0),
            retry_period: lease_duration.mul_f64(2.0 / 15.0).max(Duration::from_millis(100)),
        }
    }
}

/// The election loop for one agent.
pub struct Elector {
    api: Api<Lease>,
    settings: ElectionSettings,
    leadership: Leadership,
    /// The last Lease record seen, and when (monotonic) it was first seen.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
}

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    Leading,
    Standby { holder: String },
    Failed(String),
}

impl Elector {
    /// An elector for the Lease in `api`'s namespace, and the leadership it maintains.
    pub fn new(api: Api<Lease>, settings: ElectionSettings) -> (Elector, Leadership) {
        let leadership = Leadership::elected(settings.lease_duration.saturating_sub(settings.renew_deadline));
        (Elector { api, settings, leadership: leadership.clone(), observed: None }, leadership)
    }

    /// Campaigns and renews until `shutdown`, then steps down and releases the Lease if it holds it, so a standby
    /// takes over at once instead of after a full lease duration.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut leading = false;
        loop {
            let started = Instant::now();
            let attempt = self.attempt().await;
            match &attempt {
                Attempt::Leading => self.leadership.set(Some(started + self.settings.renew_deadline)),
                Attempt::Standby { .. } => self.leadership.set(None),
                // A failed renewal leaves the deadline as it was: leadership lapses on its own if failures persist.
                Attempt::Failed(_) => {}
            }
            let now_leading = self.leadership.is_leading();
            if now_leading != leading {
                leading = now_leading;
                crate::metrics::set_leader(leading);
                match &attempt {
                    _ if leading => {
                        tracing::info!(lease = %self.settings.lease_name, identity = %self.settings.identity, "became the leader")
                    }
                    Attempt::Standby { holder } => {
                        tracing::warn!(lease = %self.settings.lease_name, %holder, "lost leadership; standing by")
                    }
                    _ => {
                        tracing::warn!(lease = %self.settings.lease_name, "lost leadership: the lease could not be renewed in time")
                    }
                }
            }
            if let Attempt::Failed(error) = &attempt {
                tracing::warn!(lease = %self.settings.lease_name, %error, "lease renewal failed");
            }
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                _ = tokio::time::sleep(self.settings.retry_period) => {}
            }
        }
        if leading {
            self.release().await;
        }
    }

    async fn attempt(&mut self) -> Attempt {
        let lease = match self.api.get_opt(&self.settings.lease_name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return self.create().await,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        let now = Instant::now();
        match &self.observed {
            Some((holder, renewed, _)) if (holder, renewed) == (&record.0, &record.1) => {}
            _ => self.observed = Some((record.0.clone(), record.1.clone(), now)),
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.settings.identity;
        let observed_at = self.observed.as_ref().map_or(now, |(_, _, at)| *at);
        let duration = spec
            .lease_duration_seconds
            .map_or(self.settings.lease_duration, |s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
        if !ours && !holder.is_empty() && now < observed_at + duration {
            return Attempt::Standby { holder };
        }
        let now_wall = MicroTime(Timestamp::now());
        let mut renewed = lease;
        let spec = renewed.spec.get_or_insert_with(LeaseSpec::default);
        if !ours {
            spec.acquire_time = Some(now_wall.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.settings.identity.clone());
        spec.lease_duration_seconds = Some(self.lease_seconds());
        spec.renew_time = Some(now_wall);
        match self.api.replace(&self.settings.lease_name, &PostParams::default(), &renewed).await {
            Ok(_) => Attempt::Leading,
            Err(kube::Error::Api(status)) if status.is_conflict() => {
                Attempt::Standby { holder: "another agent (lost the race)".to_owned() }
            }
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }

    async fn create(&mut self) -> Attempt {
        let now = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta { name: Some(self.settings.lease_name.clone()), ..ObjectMeta::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                lease_duration_seconds: Some(self.lease_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Attempt::Leading,
            Err(kube::Error::Api(status)) if status.is_already_exists() || status.is_conflict() => {
                Attempt::Standby { holder: "another agent (lost the race)".to_owned() }
            }
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }

    /// Gives the Lease up: stop acting first, then clear the holder so a standby need not wait for expiry.
    async fn release(&mut self) {
        self.leadership.set(None);
        crate::metrics::set_leader(false);
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.lease_name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.settings.lease_name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.settings.lease_name, "released the lease"),
            Err(e) => tracing::warn!(lease = %self.settings.lease_name, error = %e, "could not release the lease"),
        }
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}
