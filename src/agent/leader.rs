//! Leader election over a `coordination.k8s.io/v1` Lease, so that several agents (a sidecar in every worker pod,
//! or two replicas for availability) act as one.
//!
//! The protocol is client-go's: the leader renews the Lease's `renewTime` every retry period; a standby takes the
//! Lease over once it has seen no renewal for a whole `leaseDuration`, timing that by its own monotonic clock from
//! the moment it *observed* the last change, so clock skew between nodes does not matter. Writes use the Lease's
//! `resourceVersion`, so two standbys racing for an expired Lease cannot both win.
//!
//! Safety comes from [`Leadership`]: an agent counts as leader only until `renewDeadline` after its last successful
//! renewal began. That deadline is shorter than the lease duration, so a leader that is partitioned or stalled
//! stops acting before any standby may take over — there is no moment with two writers. A write takes time (and
//! idle-first scale-down several calls), so the write path asks [`Leadership::may_write`] again immediately before
//! each call that changes something: it requires a margin of validity left (a third of the lease duration, the
//! same as between the renew deadline and the lease's expiry), so a call sent then reaches the API server before
//! any standby can take over. What a pause between that check and the call could still deliver late is fenced by
//! the `resourceVersion` the scale write carries: the new leader's first write changes it, so the old one's fails.

#[cfg(feature = "kube")]
mod lease;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

#[cfg(feature = "kube")]
pub use lease::{ElectionSettings, Elector};

/// Whether this agent may act now. Cheap to clone and to ask.
#[derive(Debug, Clone)]
pub struct Leadership {
    valid_until: Arc<Mutex<Option<Instant>>>,
    always: bool,
    /// How much validity a write needs left when it is sent.
    write_margin: Duration,
}

impl Leadership {
    /// Leadership that never lapses: for a single agent with election turned off.
    pub fn always() -> Leadership {
        Leadership { valid_until: Arc::new(Mutex::new(None)), always: true, write_margin: Duration::ZERO }
    }

    #[cfg(any(feature = "kube", test))]
    fn elected(write_margin: Duration) -> Leadership {
        Leadership { valid_until: Arc::new(Mutex::new(None)), always: false, write_margin }
    }

    /// True while the last successful renewal is recent enough.
    pub fn is_leading(&self) -> bool {
        self.always || self.until().is_some_and(|until| Instant::now() < until)
    }

    /// True while this agent leads with enough time left to send a write that lands before any standby may take
    /// over: asked immediately before each call that changes something.
    pub fn may_write(&self) -> bool {
        self.always || self.until().is_some_and(|until| Instant::now() + self.write_margin < until)
    }

    fn until(&self) -> Option<Instant> {
        *self.valid_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(any(feature = "kube", test))]
    fn set(&self, until: Option<Instant>) {
        *self.valid_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = until;
    }
}

#[cfg(test)]
impl Leadership {
    /// Leadership a test turns on and off by hand.
    pub(crate) fn switchable() -> Leadership {
        Leadership::elected(Duration::ZERO)
    }

    /// Leads (for a day) or stands by, from now.
    pub(crate) fn switch(&self, leading: bool) {
        self.set(leading.then(|| Instant::now() + Duration::from_secs(24 * 3600)));
    }
}
