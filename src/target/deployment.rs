//! A Deployment, read from a watch and written through its `scale` subresource.
//!
//! Reads are free: one list-and-watch per namespace ([`DeploymentWatch`]) keeps every Deployment's replica count and
//! annotations in memory, so a thousand targets polled every second cost the API server nothing. Writes are rare and
//! careful: the Deployment is read fresh, the write is dropped if a manual hold appeared or the count is no longer
//! the one the decision was made from, leadership is asked again right before each call that changes something,
//! and the scale patch carries the `resourceVersion` it read, so any concurrent change (a human with `kubectl
//! scale` or `queue-scaler scale --hold`, another agent) makes the API answer 409 — a changed target, decided again
//! next poll — instead of being overwritten. Every write is told as a Kubernetes Event on the Deployment
//! (`SuccessfulRescale`, as the HPA says), with the decision's reason, so `kubectl describe deployment` tells the
//! story.
//!
//! Idle-first scale-down ([`deletion_cost`]) has a budget of its own, [`IDLE_FIRST_BUDGET`], inside the write's:
//! when it runs out, the scale-down goes ahead with the pods marked so far, and says so.
//!
//! At most [`CONCURRENT_WRITES`] writes are in flight per agent: when a thousand targets scale in the same second,
//! each concurrent request would otherwise hold a connection of its own to the API server, and the agent a
//! thousand connections' buffers.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::Semaphore;

use super::other_controllers::OtherControllers;
use super::quiet::{Progress, UnderWay, Workers, timed_out};
use super::{HOLD_ANNOTATION, Hold, ScaleState, ScaleTarget, TargetError, Written, deletion_cost};
use crate::agent::leader::Leadership;
use crate::config::ScaleDownConfig;

/// How the agent's writes are named in `managedFields`, so that it can tell its own writes from others'.
pub const FIELD_MANAGER: &str = "queue-scaler";

/// How `queue-scaler scale` (a human) is named in `managedFields`.
pub const CLI_FIELD_MANAGER: &str = "queue-scaler-cli";

/// The most scale writes (with their Events) one agent has in flight at once.
pub const CONCURRENT_WRITES: usize = 8;

/// The longest idle-first scale-down may take before the scale-down goes ahead without it: half the write's time.
pub const IDLE_FIRST_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Every Deployment of one namespace, kept current by a watch.
#[derive(Clone)]
pub struct DeploymentWatch {
    store: Store<Deployment>,
    namespace: String,
    /// Shared by every target of the namespace: see [`CONCURRENT_WRITES`].
    writes: Arc<Semaphore>,
}

impl DeploymentWatch {
    /// Starts watching `namespace`; the returned future drives the watch and must be spawned.
    pub fn start(
        client: kube::Client,
        namespace: &str,
    ) -> (DeploymentWatch, impl Future<Output = ()> + Send + 'static) {
        let api: Api<Deployment> = Api::namespaced(client, namespace);
        let (store, writer) = reflector::store();
        let driver = async move {
            use futures::StreamExt;
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(forget_what_scaling_does_not_need)
                .reflect(writer)
                .applied_objects();
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "deployment watch interrupted; retrying with backoff");
                }
            }
        };
        let writes = Arc::new(Semaphore::new(CONCURRENT_WRITES));
        (DeploymentWatch { store, namespace: namespace.to_owned(), writes }, driver)
    }

    /// Waits until the first list has arrived.
    pub async fn ready(&self) {
        // The writer lives as long as the driver; if it is gone, reads report NotFound, which is the truth.
        let _ = self.store.wait_until_ready().await;
    }

    /// Whether the first list has arrived.
    pub fn is_ready(&self) -> bool {
        use futures::FutureExt;
        self.store.wait_until_ready().now_or_never().is_some()
    }

    /// Whether the Deployment `name` selects pods with these labels (its pods carry them).
    pub fn selects(&self, name: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.get(name).and_then(|d| d.spec.as_ref().map(|s| selector_matches(&s.selector, labels))).unwrap_or(false)
    }

    fn get(&self, name: &str) -> Option<Arc<Deployment>> {
        self.store.get(&ObjectRef::new(name).within(&self.namespace))
    }
}

/// A label selector's verdict on a set of labels (`matchLabels` and `matchExpressions`, as the API defines them).
pub fn selector_matches(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let labels_match = selector.match_labels.iter().flatten().all(|(key, value)| labels.get(key) == Some(value));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let listed = || value.is_some_and(|v| e.values.iter().flatten().any(|allowed| allowed == v));
        match e.operator.as_str() {
            "In" => listed(),
            "NotIn" => !listed(),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// The pod template is most of a Deployment's size and none of the autoscaler's business, nor are the field
/// managers other than those of `spec.replicas`.
fn forget_what_scaling_does_not_need(deployment: &mut Deployment) {
    if let Some(managed) = deployment.metadata.managed_fields.as_mut() {
        managed.retain(sets_replicas);
    }
    if let Some(spec) = deployment.spec.as_mut() {
        spec.template = Default::default();
    }
}

/// Whether a `managedFields` entry owns `spec.replicas`.
fn sets_replicas(entry: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry) -> bool {
    entry.fields_v1.as_ref().and_then(|f| f.0.get("f:spec")).and_then(|spec| spec.get("f:replicas")).is_some()
}

/// The manager that last set `spec.replicas`, by the entries' times.
fn replicas_set_by(deployment: &Deployment) -> Option<String> {
    let managed = deployment.metadata.managed_fields.as_ref()?;
    managed
        .iter()
        .filter(|e| sets_replicas(e))
        .max_by_key(|e| e.time.as_ref().map(|t| t.0))
        .and_then(|e| e.manager.clone())
}

/// One Deployment to scale.
pub struct DeploymentTarget {
    api: Api<Deployment>,
    events: Api<Event>,
    pods: Api<Pod>,
    http: reqwest::Client,
    watch: DeploymentWatch,
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

impl DeploymentTarget {
    /// The Deployment `name` in the watched namespace; scale writes are told as Events from `reporter` (this
    /// agent's identity) and sent only while `leadership` allows.
    pub fn new(
        client: kube::Client,
        watch: DeploymentWatch,
        name: &str,
        reporter: &str,
        scale_down: ScaleDownConfig,
        leadership: Leadership,
        others: OtherControllers,
    ) -> DeploymentTarget {
        DeploymentTarget {
            api: Api::namespaced(client.clone(), &watch.namespace),
            events: Api::namespaced(client.clone(), &watch.namespace),
            pods: Api::namespaced(client, &watch.namespace),
            http: crate::outbound::client(),
            watch,
            name: name.to_owned(),
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
        let Some(selector) = self.watch.get(&self.name).and_then(|d| d.spec.as_ref().map(|s| s.selector.clone()))
        else {
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
        selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
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

    fn uid(&self) -> Option<String> {
        self.watch.get(&self.name).and_then(|d| d.metadata.uid.clone())
    }

    /// Best effort, within [`IDLE_FIRST_BUDGET`]: sets the pods' deletion cost so idle workers go first; never stops
    /// the scale-down.
    async fn prefer_idle_pods(&self, selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) {
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

    /// Creates one Event on the Deployment, of `(type, reason, action)`, on its own task: telling must never hold up
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
                namespace: Some(self.watch.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_.to_owned()),
            reason: Some(reason.to_owned()),
            action: Some(action.to_owned()),
            note: Some(note),
            regarding: Some(ObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: Some("Deployment".to_owned()),
                name: Some(self.name.clone()),
                namespace: Some(self.watch.namespace.clone()),
                uid,
                ..ObjectReference::default()
            }),
            reporting_controller: Some("queue-scaler".to_owned()),
            reporting_instance: Some(self.reporter.clone()),
            ..Event::default()
        };
        let (events, deployment, writes) = (self.events.clone(), self.name.clone(), self.watch.writes.clone());
        tokio::spawn(async move {
            let _slot = writes.acquire_owned().await;
            if let Err(error) = events.create(&PostParams::default(), &event).await {
                tracing::warn!(%deployment, %error, "could not record the Event");
            }
        });
    }

    fn not_found(&self) -> TargetError {
        TargetError::NotFound { namespace: self.watch.namespace.clone(), name: self.name.clone() }
    }
}

impl ScaleTarget for DeploymentTarget {
    async fn read(&self) -> Result<ScaleState, TargetError> {
        let deployment = self.watch.get(&self.name).ok_or_else(|| self.not_found())?;
        Ok(self.state_of(&deployment))
    }

    async fn read_fresh(&self) -> Result<ScaleState, TargetError> {
        let deployment = self.api.get(&self.name).await.map_err(|e| self.api_error(e))?;
        Ok(self.state_of(&deployment))
    }

    fn warn(&self, reason: &str, note: &str) {
        let uid = self.watch.get(&self.name).and_then(|d| d.metadata.uid.clone());
        self.event(uid, ("Warning", reason, "Scale"), note.to_owned());
    }

    async fn write(&self, from: u32, to: u32, reason: &str) -> Result<Written, TargetError> {
        // The semaphore is never closed, so the only error is impossible; a slot is held until the write is done.
        let _slot = self.watch.writes.acquire().await;
        // The whole object, not only its scale: the hold annotation is re-checked at write time, and the scale
        // subresource shares the Deployment's resourceVersion, which fences everything that happens from here on.
        let fresh = self.api.get(&self.name).await.map_err(|e| self.api_error(e))?;
        let hold = fresh.metadata.annotations.as_ref().and_then(|a| a.get(HOLD_ANNOTATION)).map(|v| Hold::parse(v));
        if let Some(hold) = hold.filter(|h| h.is_active(chrono::Utc::now())) {
            return Err(TargetError::Held(match hold {
                Hold::Until(until) => format!("held until {until}"),
                Hold::Unreadable(why) => why,
            }));
        }
        let found = fresh.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if found != i32::try_from(from).unwrap_or(i32::MAX) {
            return Err(TargetError::Changed { expected: from, found: Some(u32::try_from(found).unwrap_or(0)) });
        }
        // An empty selector would pick every pod of the namespace; a Deployment always has one.
        let selector = fresh.spec.as_ref().map(|s| s.selector.clone()).filter(|s| *s != Default::default());
        let mut under_way = self.under_way.lock().await;
        let mut to = to;
        let mut idle_first = to < from && self.scale_down.idle_first;
        if let Some(selector) = selector.as_ref().filter(|_| to < from && self.scale_down.quiet) {
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
        if let Some(selector) = selector.as_ref().filter(|_| idle_first) {
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
        match self.api.patch_scale(&self.name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {}
            // The Deployment changed since it was read (a human, a hold, another writer): not a failure of the API.
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

impl DeploymentTarget {
    fn state_of(&self, deployment: &Deployment) -> ScaleState {
        let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let hold =
            deployment.metadata.annotations.as_ref().and_then(|a| a.get(HOLD_ANNOTATION)).map(|v| Hold::parse(v));
        ScaleState {
            replicas: u32::try_from(replicas).unwrap_or(0),
            hold,
            other_controller: self.others.owner_of(&self.name),
            replicas_set_by: replicas_set_by(deployment),
        }
    }

    fn api_error(&self, error: kube::Error) -> TargetError {
        api_error(error, &self.watch.namespace, &self.name)
    }
}

fn api_error(error: kube::Error, namespace: &str, name: &str) -> TargetError {
    match error {
        kube::Error::Api(status) if status.is_not_found() => {
            TargetError::NotFound { namespace: namespace.to_owned(), name: name.to_owned() }
        }
        kube::Error::Api(status) => TargetError::Api { code: status.code, message: status.message },
        other => TargetError::Unreachable(other.to_string()),
    }
}

/// A change made by a human with `queue-scaler scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualChange {
    /// The replica count to set.
    pub replicas: Option<u32>,
    /// Keep the agent off the Deployment until then.
    pub hold_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Remove an earlier hold.
    pub release: bool,
}

impl ManualChange {
    /// One line saying what was done.
    pub fn describe(&self, namespace: &str, name: &str) -> String {
        let mut parts = Vec::new();
        if let Some(replicas) = self.replicas {
            parts.push(format!("scaled to {replicas}"));
        }
        if let Some(until) = self.hold_until {
            parts.push(format!("held until {}", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        }
        if self.release {
            parts.push("hold released".to_owned());
        }
        format!("deployment {namespace}/{name}: {}", parts.join(", "))
    }
}

/// Applies a manual change: the hold first, so the agent does not undo the new count in between.
pub async fn change_by_hand(
    client: kube::Client,
    namespace: &str,
    name: &str,
    change: &ManualChange,
) -> Result<(), TargetError> {
    let api: Api<Deployment> = Api::namespaced(client, namespace);
    let to_error = |e| api_error(e, namespace, name);
    let params = PatchParams { field_manager: Some(CLI_FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    let annotation = match (change.hold_until, change.release) {
        (Some(until), _) => Some(json!(until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))),
        (None, true) => Some(serde_json::Value::Null),
        (None, false) => None,
    };
    if let Some(value) = annotation {
        let patch = json!({ "metadata": { "annotations": { HOLD_ANNOTATION: value } } });
        api.patch(name, &params, &Patch::Merge(&patch)).await.map_err(to_error)?;
    }
    if let Some(replicas) = change.replicas {
        let patch = json!({ "spec": { "replicas": replicas } });
        api.patch_scale(name, &params, &Patch::Merge(&patch)).await.map_err(to_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "worker")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["batch".into(), "gpu".into()]),
            }]),
        };
        assert!(selector_matches(&selector, &labels(&[("app", "worker"), ("tier", "gpu"), ("x", "y")])));
        assert!(!selector_matches(&selector, &labels(&[("app", "worker"), ("tier", "web")])));
        assert!(!selector_matches(&selector, &labels(&[("tier", "gpu")])));
        let absent = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "canary".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
            ..LabelSelector::default()
        };
        assert!(selector_matches(&absent, &labels(&[("app", "worker")])));
        assert!(!selector_matches(&absent, &labels(&[("canary", "1")])));
    }
}
