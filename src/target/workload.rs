//! One workload with a `scale` subresource (a Deployment, a StatefulSet, an Argo Rollout, any custom resource that
//! has one), read from its kind's watch ([`super::workloads`]) and written through `…/NAME/scale`.
//!
//! Writes are rare and careful: the object is read fresh, the write is dropped if a manual hold appeared or the
//! count (read from the scale subresource, which knows where the kind keeps it) is no longer the one the decision
//! was made from, leadership is asked again right before each call that changes something, and the scale patch
//! carries the object's `resourceVersion`, so any concurrent change (a human with `kubectl scale` or `queue-scaler
//! scale --hold`, another agent) makes the API answer 409 — a changed target, decided again next poll — instead of
//! being overwritten. Every write is told as a Kubernetes Event on the object (`SuccessfulRescale`, as the HPA says),
//! with the decision's reason, so `kubectl describe` tells the story. The pods that idle-first and quiet scale-down
//! work on are those of the scale subresource's `status.selector`, as the HPA finds them.
//!
//! Idle-first scale-down ([`deletion_cost`]) has a budget of its own, [`IDLE_FIRST_BUDGET`], inside the write's:
//! when it runs out, the scale-down goes ahead with the pods marked so far, and says so.

use futures::FutureExt;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

use super::other_controllers::OtherControllers;
use super::quiet::{Progress, UnderWay, Workers, timed_out};
use super::workloads::{Workloads, replicas_set_by};
use super::{HOLD_ANNOTATION, Hold, ScaleState, ScaleTarget, TargetError, Written, deletion_cost};
use crate::agent::leader::Leadership;
use crate::config::{ScaleDownConfig, ScaleTargetRef};

/// How the agent's writes are named in `managedFields`, so that it can tell its own writes from others'.
pub const FIELD_MANAGER: &str = "queue-scaler";

/// How `queue-scaler scale` (a human) is named in `managedFields`.
pub const CLI_FIELD_MANAGER: &str = "queue-scaler-cli";

/// The longest idle-first scale-down may take before the scale-down goes ahead without it: half the write's time.
pub const IDLE_FIRST_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// One workload to scale.
pub struct WorkloadTarget {
    workloads: Workloads,
    workload: ScaleTargetRef,
    events: Api<Event>,
    pods: Api<Pod>,
    http: reqwest::Client,
    name: String,
    reporter: String,
    scale_down: ScaleDownConfig,
    leadership: Leadership,
    others: OtherControllers,
    /// A quiet scale-down under way (`scaleDown.quiet`).
    under_way: tokio::sync::Mutex<Option<UnderWay>>,
    /// When busy pods were last marked against node consolidation (`scaleDown.protectBusy`).
    protected_at: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// How often busy pods are marked against node consolidation, at most: asking every worker every poll is too much.
pub const PROTECT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// What a quiet scale-down does at this write.
enum QuietStep {
    /// The quiet workers still hold jobs: the count stays.
    Wait(String),
    /// Lower the count to this: the quiet workers are done (or out of time).
    Lower(u32),
    /// No worker could be quieted: scale down the idle-first way.
    Plain,
}

/// The longest Event note the API accepts.
const MAX_NOTE_BYTES: usize = 1024;

impl WorkloadTarget {
    /// The `workload` in the watched namespace; scale writes are told as Events from `reporter` (this agent's
    /// identity) and sent only while `leadership` allows.
    pub fn new(
        workloads: Workloads,
        workload: ScaleTargetRef,
        reporter: &str,
        scale_down: ScaleDownConfig,
        leadership: Leadership,
        others: OtherControllers,
    ) -> WorkloadTarget {
        let client = workloads.client().clone();
        WorkloadTarget {
            events: Api::namespaced(client.clone(), workloads.namespace()),
            pods: Api::namespaced(client, workloads.namespace()),
            http: crate::outbound::client(),
            name: workload.name.clone(),
            workloads,
            workload,
            reporter: reporter.to_owned(),
            scale_down,
            leadership,
            others,
            under_way: tokio::sync::Mutex::new(None),
            protected_at: std::sync::Mutex::new(None),
        }
    }

    /// With `protectBusy`, at most every [`PROTECT_EVERY`]: marks the pods that hold jobs against node consolidation
    /// (Karpenter's `do-not-disrupt`, the cluster autoscaler's `safe-to-evict: "false"`) and lifts the mark from
    /// idle ones, so consolidation moves idle workers and never interrupts a job.
    async fn protect_busy_pods(&self) {
        if !self.scale_down.protect_busy || !self.leadership.may_write() {
            return;
        }
        {
            let mut last = self.protected_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < PROTECT_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let selector = match self.scale().await {
            Ok(scale) => pods_of(&scale),
            Err(error) => return tracing::warn!(deployment = %self.name, %error, "cannot protect busy pods"),
        };
        let Some(selector) = selector else {
            return;
        };
        let loads = match self.workers().loads(&selector).await {
            Ok(loads) => loads,
            Err(error) => return tracing::warn!(deployment = %self.name, %error, "cannot protect busy pods"),
        };
        for (pod, load) in loads {
            let busy = match load {
                super::worker_pods::Load::InFlight(jobs) => jobs > 0,
                // Unknown: leave the mark as it is.
                super::worker_pods::Load::Unknown => continue,
            };
            if let Err(error) = super::worker_pods::protect(&self.pods, &pod, busy).await {
                tracing::warn!(deployment = %self.name, %error, "cannot protect a busy pod");
            }
        }
    }

    /// The workers' drain endpoints, with the token read afresh (a mounted Secret rotates).
    fn workers(&self) -> Workers<'_> {
        let token = self.scale_down.token_file.as_ref().and_then(|path| match std::fs::read_to_string(path) {
            Ok(token) => Some(token.trim().to_owned()),
            Err(error) => {
                tracing::warn!(deployment = %self.name, file = %path.display(), %error, "cannot read the workers' token");
                None
            }
        });
        Workers { pods: &self.pods, http: &self.http, port: self.scale_down.worker_metrics_port, token }
    }

    /// Calls off a quiet scale-down under way: its workers take jobs again.
    async fn call_off_quiet(&self, under_way: &mut Option<UnderWay>) {
        let Some(called_off) = under_way.take() else {
            return;
        };
        self.workers().resume(&called_off.pods).await;
        let names: Vec<&str> = called_off.pods.iter().map(|p| p.name.as_str()).collect();
        let note = format!("the decision rose again: resumed {} quiet worker(s): {}", names.len(), names.join(", "));
        tracing::info!(deployment = %self.name, "{note}");
        crate::metrics::quiet_pods(&self.name, "resumed", names.len());
        self.event(self.uid(), ("Normal", "QuietResumed", "Scale"), note);
    }

    /// Starts or continues a quiet scale-down from `from` towards `to`.
    async fn quiet_step(
        &self,
        under_way: &mut Option<UnderWay>,
        selector: &str,
        from: u32,
        to: u32,
    ) -> Result<QuietStep, TargetError> {
        let workers = self.workers();
        let unlisted = |error: String| TargetError::Unreachable(format!("cannot quiet workers: {error}"));
        if under_way.is_none() {
            if !self.leadership.may_write() {
                return Err(TargetError::NotLeading);
            }
            let quiet = workers.quiet(selector, (from - to) as usize).await.map_err(unlisted)?;
            if quiet.is_empty() {
                return Ok(QuietStep::Plain);
            }
            let names: Vec<&str> = quiet.iter().map(|p| p.name.as_str()).collect();
            let note = format!(
                "told {} worker(s) to go quiet before scaling from {from}: {}; replicas drop once they hold no job",
                names.len(),
                names.join(", ")
            );
            tracing::info!(deployment = %self.name, "{note}");
            crate::metrics::quiet_pods(&self.name, "quieted", names.len());
            self.event(self.uid(), ("Normal", "Quieting", "Scale"), note);
            *under_way = Some(UnderWay { pods: quiet, since: tokio::time::Instant::now() });
        }
        let Some(quieting) = under_way.as_ref() else {
            unreachable!("a quiet scale-down was just started");
        };
        let quiet = u32::try_from(quieting.pods.len()).unwrap_or(u32::MAX);
        match workers.progress(selector, &quieting.pods).await.map_err(unlisted)? {
            Progress::Done(_) => Ok(QuietStep::Lower(from.saturating_sub(quiet).max(to))),
            Progress::Busy(busy, jobs) if !timed_out(quieting.since, self.scale_down.quiet_timeout) => {
                Ok(QuietStep::Wait(format!("waiting for {busy} of {quiet} quiet worker(s) to finish {jobs} job(s)")))
            }
            Progress::Busy(busy, jobs) => {
                let note = format!(
                    "quietTimeout ({}) ran out with {busy} quiet worker(s) still holding {jobs} job(s); scaling down \
                     anyway, the quiet pods first",
                    humantime::format_duration(self.scale_down.quiet_timeout)
                );
                tracing::warn!(deployment = %self.name, "{note}");
                crate::metrics::quiet_pods(&self.name, "timed_out", busy);
                self.event(self.uid(), ("Warning", "QuietTimeout", "Scale"), note);
                Ok(QuietStep::Lower(from.saturating_sub(quiet).max(to)))
            }
        }
    }

    /// The object's uid, as its watch last saw it (Events name it).
    fn uid(&self) -> Option<String> {
        let watches = self.workloads.watch_for(&self.workload).now_or_never()?.ok()?;
        watches.get(&self.name).and_then(|object| object.metadata.uid.clone())
    }

    /// The API of the object's kind in its namespace.
    async fn api(&self) -> Result<Api<DynamicObject>, TargetError> {
        let watch = self.workloads.watch_for(&self.workload).await?;
        Ok(Api::namespaced_with(self.workloads.client().clone(), &watch.namespace, &watch.resource))
    }

    /// The object's scale subresource, read now.
    async fn scale(&self) -> Result<Scale, TargetError> {
        self.api().await?.get_scale(&self.name).await.map_err(|e| self.api_error(e))
    }

    /// Best effort, within [`IDLE_FIRST_BUDGET`]: sets the pods' deletion cost so idle workers go first; never stops
    /// the scale-down.
    async fn prefer_idle_pods(&self, selector: &str) {
        let port = self.scale_down.worker_metrics_port;
        let may_write = || self.leadership.may_write();
        let marking = deletion_cost::mark_idle_pods_first(&self.pods, &self.http, selector, port, &may_write);
        match tokio::time::timeout(IDLE_FIRST_BUDGET, marking).await {
            Ok(Ok(marked)) => tracing::info!(
                deployment = %self.name, idle = marked.idle, busy = marked.busy, unknown = marked.unknown,
                "set pod-deletion-cost: idle pods go first"
            ),
            Ok(Err(error)) => tracing::warn!(deployment = %self.name, %error, "scaling down without idle-first"),
            Err(_) => tracing::warn!(
                deployment = %self.name, budget = ?IDLE_FIRST_BUDGET,
                "idle-first ran out of its time budget; scaling down with the pods marked so far"
            ),
        }
    }

    /// Creates one `events.k8s.io/v1` Event per write. kube-rs's `Recorder` folds repeats into a series that keeps
    /// the first note, which would show every later write with the first write's reason; each decision has its
    /// own, so each gets its own Event, named as client-go names them (`<object>.<unix nanos in hex>`).
    fn tell(&self, uid: Option<String>, to: u32, reason: &str) {
        self.event(uid, ("Normal", "SuccessfulRescale", "Scale"), format!("New size: {to}; reason: {reason}"));
    }

    /// Creates one Event on the workload, of `(type, reason, action)`, on its own task: telling must never hold up
    /// or fail what it tells.
    fn event(&self, uid: Option<String>, (type_, reason, action): (&str, &str, &str), mut note: String) {
        if note.len() > MAX_NOTE_BYTES {
            let mut cut = MAX_NOTE_BYTES - 3;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", self.name, now.as_nanosecond())),
                namespace: Some(self.workloads.namespace().to_owned()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_.to_owned()),
            reason: Some(reason.to_owned()),
            action: Some(action.to_owned()),
            note: Some(note),
            regarding: Some(ObjectReference {
                api_version: Some(self.workload.api_version.clone()),
                kind: Some(self.workload.kind.clone()),
                name: Some(self.name.clone()),
                namespace: Some(self.workloads.namespace().to_owned()),
                uid,
                ..ObjectReference::default()
            }),
            reporting_controller: Some("queue-scaler".to_owned()),
            reporting_instance: Some(self.reporter.clone()),
            ..Event::default()
        };
        let (events, deployment, writes) = (self.events.clone(), self.name.clone(), self.workloads.writes.clone());
        tokio::spawn(async move {
            let _slot = writes.acquire_owned().await;
            if let Err(error) = events.create(&PostParams::default(), &event).await {
                tracing::warn!(%deployment, %error, "could not record the Event");
            }
        });
    }

    fn not_found(&self) -> TargetError {
        TargetError::NotFound {
            kind: self.workload.kind.clone(),
            namespace: self.workloads.namespace().to_owned(),
            name: self.name.clone(),
        }
    }
}

impl ScaleTarget for WorkloadTarget {
    async fn read(&self) -> Result<ScaleState, TargetError> {
        let watch = self.workloads.watch_for(&self.workload).await?;
        let object = watch.get(&self.name).ok_or_else(|| self.not_found())?;
        self.state_of(&object).await
    }

    async fn read_fresh(&self) -> Result<ScaleState, TargetError> {
        let object = self.api().await?.get(&self.name).await.map_err(|e| self.api_error(e))?;
        self.state_of(&object).await
    }

    fn warn(&self, reason: &str, note: &str) {
        self.event(self.uid(), ("Warning", reason, "Scale"), note.to_owned());
    }

    async fn write(&self, from: u32, to: u32, reason: &str) -> Result<Written, TargetError> {
        // The semaphore is never closed, so the only error is impossible; a slot is held until the write is done.
        let _slot = self.workloads.writes.acquire().await;
        // The whole object, not only its scale: the hold annotation is re-checked at write time, and the scale
        // subresource shares the object's resourceVersion, which fences everything that happens from here on.
        let api = self.api().await?;
        let fresh = api.get(&self.name).await.map_err(|e| self.api_error(e))?;
        let hold = fresh.metadata.annotations.as_ref().and_then(|a| a.get(HOLD_ANNOTATION)).map(|v| Hold::parse(v));
        if let Some(hold) = hold.filter(|h| h.is_active(chrono::Utc::now())) {
            return Err(TargetError::Held(match hold {
                Hold::Until(until) => format!("held until {until}"),
                Hold::Unreadable(why) => why,
            }));
        }
        let scale = api.get_scale(&self.name).await.map_err(|e| self.api_error(e))?;
        let found = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        if found != i32::try_from(from).unwrap_or(i32::MAX) {
            return Err(TargetError::Changed { expected: from, found: Some(u32::try_from(found).unwrap_or(0)) });
        }
        let selector = pods_of(&scale);
        let mut under_way = self.under_way.lock().await;
        let mut to = to;
        let mut idle_first = to < from && self.scale_down.idle_first;
        if let Some(selector) = selector.as_deref().filter(|_| to < from && self.scale_down.quiet) {
            match self.quiet_step(&mut under_way, selector, from, to).await? {
                QuietStep::Wait(why) => return Ok(Written::Pending(why)),
                QuietStep::Lower(count) => to = count,
                QuietStep::Plain => {
                    tracing::warn!(
                        deployment = %self.name,
                        "no worker answers on its drain endpoint; scaling down without quiet, idle pods first"
                    );
                    idle_first = true;
                }
            }
        } else {
            // A scale-up, or no quiet: quiet workers take jobs again before any pod is added.
            self.call_off_quiet(&mut under_way).await;
        }
        if let Some(selector) = selector.as_deref().filter(|_| idle_first) {
            if !self.leadership.may_write() {
                return Err(TargetError::NotLeading);
            }
            self.prefer_idle_pods(selector).await;
        }
        if !self.leadership.may_write() {
            return Err(TargetError::NotLeading);
        }
        let patch = json!({
            "metadata": { "resourceVersion": fresh.metadata.resource_version },
            "spec": { "replicas": to },
        });
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
        match api.patch_scale(&self.name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {}
            // The object changed since it was read (a human, a hold, another writer): not a failure of the API.
            Err(kube::Error::Api(status)) if status.is_conflict() => {
                return Err(TargetError::Changed { expected: from, found: None });
            }
            Err(e) => return Err(self.api_error(e)),
        }
        if let Some(removed) = under_way.take() {
            let names: Vec<&str> = removed.pods.iter().map(|p| p.name.as_str()).collect();
            tracing::info!(deployment = %self.name, pods = ?names, "the quiet workers are idle: removing them");
            crate::metrics::quiet_pods(&self.name, "removed", names.len());
        }
        self.tell(fresh.metadata.uid, to, reason);
        Ok(Written::Done)
    }

    async fn keep(&self, _count: u32) {
        {
            let mut under_way = self.under_way.lock().await;
            if under_way.is_some() && self.leadership.may_write() {
                self.call_off_quiet(&mut under_way).await;
            }
        }
        self.protect_busy_pods().await;
    }
}

impl WorkloadTarget {
    /// The state an object shows: its count from `spec.replicas`, where every built-in kind, Argo Rollouts and most
    /// custom resources keep it (so reads stay free), else from its scale subresource.
    async fn state_of(&self, object: &DynamicObject) -> Result<ScaleState, TargetError> {
        let replicas = match object.data.pointer("/spec/replicas").and_then(serde_json::Value::as_u64) {
            Some(replicas) => replicas,
            None => {
                let scale = self.scale().await?;
                scale.spec.and_then(|s| s.replicas).map_or(0, |n| u64::try_from(n).unwrap_or(0))
            }
        };
        let hold = object.metadata.annotations.as_ref().and_then(|a| a.get(HOLD_ANNOTATION)).map(|v| Hold::parse(v));
        Ok(ScaleState {
            replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
            hold,
            other_controller: self.others.owner_of(&self.workload),
            replicas_set_by: replicas_set_by(object),
        })
    }

    fn api_error(&self, error: kube::Error) -> TargetError {
        api_error(error, &self.workload, self.workloads.namespace())
    }
}

/// The label selector of a scale subresource's pods (`status.selector`), unless it has none: an empty selector
/// would pick every pod of the namespace.
fn pods_of(scale: &Scale) -> Option<String> {
    scale.status.as_ref().and_then(|s| s.selector.clone()).filter(|s| !s.trim().is_empty())
}

/// A failed API call as a [`TargetError`] about `workload`.
pub(super) fn api_error(error: kube::Error, workload: &ScaleTargetRef, namespace: &str) -> TargetError {
    match error {
        kube::Error::Api(status) if status.is_not_found() => TargetError::NotFound {
            kind: workload.kind.clone(),
            namespace: namespace.to_owned(),
            name: workload.name.clone(),
        },
        kube::Error::Api(status) => TargetError::Api { code: status.code, message: status.message },
        other => TargetError::Unreachable(other.to_string()),
    }
}
