//! A stateful fake of the few Kubernetes API endpoints queue-scaler uses, for integration tests.
//!
//! No kube-apiserver can run here, yet the agent (through kube-rs) and real `kubectl` must both be
//! tested against one. The fake serves discovery, Deployments, StatefulSets and a custom resource
//! (WorkerPool) with their `scale` subresources, Pods,
//! Events (core and `events.k8s.io`, one store) and Leases over plain HTTP on 127.0.0.1, with
//! resourceVersions, optimistic concurrency, watches and kubectl's Tables, as a real API server
//! does. Tests seed it, inspect what clients wrote, and inject faults through [`FakeKube`].

mod api;
mod deployments;
mod discovery;
mod events;
mod faults;
mod kubectl;
mod objects;
mod owners;
mod patch;
mod plain;
mod resources;
mod routes;
mod scale;
mod selectors;
mod server;
mod shared;
mod status;
mod store;
mod table;
mod time;
mod validation;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use faults::{Fault, FaultKind, Gate};
pub use plain::PlainKind;
pub use resources::Kind;
pub use shared::RecordedRequest;

use shared::Shared;
use store::ObjectKey;

/// How often [`FakeKube::wait_until`] re-checks a condition that depends on something other than
/// the fake, such as a client's cache; changes in the fake itself wake it at once.
const RECHECK_EVERY: Duration = Duration::from_millis(20);

/// A running fake API server. Dropping it stops the server and removes its kubeconfig.
#[derive(Debug)]
pub struct FakeKube {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    /// Holds the kubeconfig and kubectl's home and cache.
    home: TempDir,
    kubeconfig: PathBuf,
}

impl FakeKube {
    /// Starts a fake on 127.0.0.1 and a free port, with a kubeconfig pointing at it.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Kubernetes API to 127.0.0.1");
        let address = listener.local_addr().expect("the fake's listener has an address");
        let shared = Arc::new(Shared::new(address));
        let server = tokio::spawn(server::serve(listener, shared.clone()));
        let home = tempfile::tempdir().expect("create a temporary home for the fake's kubeconfig");
        let kubeconfig = home.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&format!("http://{address}")))
            .expect("write the fake's kubeconfig");
        Self { shared, server, home, kubeconfig }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.address)
    }

    /// A kubeconfig whose current context points at the fake, in namespace `default`, without
    /// credentials.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kube-rs client for the fake whose default namespace is `namespace`.
    pub fn client(&self, namespace: &str) -> kube::Client {
        // kube's HTTPS stack wants a process-wide rustls provider even for plain HTTP; another test
        // may have set it.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let url = self.url().parse().expect("the fake's URL is a valid URI");
        let mut config = kube::Config::new(url);
        config.default_namespace = namespace.to_string();
        kube::Client::try_from(config).expect("build a kube client for the fake")
    }

    /// Stores a realistic `apps/v1` Deployment selecting pods by `labels`, and returns it as
    /// stored.
    pub fn create_deployment(&self, namespace: &str, name: &str, replicas: u32, labels: &[(&str, &str)]) -> Value {
        self.put(Kind::Deployment, objects::deployment(namespace, name, replicas, labels))
    }

    /// Stores a realistic `apps/v1` StatefulSet selecting pods by `labels`, and returns it as
    /// stored.
    pub fn create_stateful_set(&self, namespace: &str, name: &str, replicas: u32, labels: &[(&str, &str)]) -> Value {
        self.put(Kind::StatefulSet, objects::stateful_set(namespace, name, replicas, labels))
    }

    /// Stores a WorkerPool (a custom resource with a scale subresource) whose pods are those of the
    /// label selector `selector`, and returns it as stored.
    pub fn create_worker_pool(&self, namespace: &str, name: &str, replicas: u32, selector: &str) -> Value {
        self.put(Kind::WorkerPool, objects::worker_pool(namespace, name, replicas, selector))
    }

    /// Stores a running, ready Pod with `labels` and `status.podIP`, and returns it as stored.
    pub fn create_pod(&self, namespace: &str, name: &str, labels: &[(&str, &str)], pod_ip: &str) -> Value {
        self.put(Kind::Pod, objects::pod(namespace, name, labels, pod_ip))
    }

    /// Sets an annotation on a Deployment, as another client would; `false` if there is no such
    /// Deployment.
    pub fn set_annotation(&self, namespace: &str, deployment: &str, key: &str, value: &str) -> bool {
        self.modify(Kind::Deployment, namespace, deployment, |object| {
            object["metadata"]["annotations"][key] = json!(value);
        })
        .is_some()
    }

    /// Changes a stored object in place as one write (new resourceVersion, watchers see MODIFIED),
    /// and returns it; `None` if there is no such object. Unlike an API write, this may set a
    /// Deployment's status, which sticks while the built-in controller is off.
    pub fn modify(&self, kind: Kind, namespace: &str, name: &str, change: impl FnOnce(&mut Value)) -> Option<Value> {
        let key = key(kind, namespace, name);
        self.shared.write(|store| {
            let mut object = store.get(&key)?.clone();
            change(&mut object);
            let owners = store.owners(&key).cloned().unwrap_or_default();
            Some(store.update(key, object, owners))
        })
    }

    /// Turns the built-in Deployment controller on (the default) or off. When on, every write to a
    /// Deployment sets its status to match `spec.replicas` at once; when off, status stays as it
    /// is.
    pub fn set_deployment_controller(&self, enabled: bool) {
        self.shared.write(|store| store.set_deployment_controller(enabled));
    }

    /// A stored object, as `kubectl get -o json` would show it (events in core `v1` form).
    pub fn object(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        self.shared.read(|store| store.get(&key(kind, namespace, name)).cloned())
    }

    /// A stored Deployment.
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Value> {
        self.object(Kind::Deployment, namespace, name)
    }

    /// A stored Pod.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.object(Kind::Pod, namespace, name)
    }

    /// A stored Lease.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.object(Kind::Lease, namespace, name)
    }

    /// A Deployment's `spec.replicas`.
    pub fn replicas(&self, namespace: &str, name: &str) -> Option<u32> {
        self.deployment(namespace, name)
            .map(|deployment| deployments::desired_replicas(&deployment))
            .and_then(|replicas| u32::try_from(replicas).ok())
    }

    /// The `spec.replicas` of any kind with a scale subresource.
    pub fn replicas_of(&self, kind: Kind, namespace: &str, name: &str) -> Option<u32> {
        self.object(kind, namespace, name)
            .map(|object| deployments::desired_replicas(&object))
            .and_then(|replicas| u32::try_from(replicas).ok())
    }

    /// Waits until the `spec.replicas` of an object of any kind with a scale subresource is `replicas`.
    pub async fn wait_until_replicas_of(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        replicas: u32,
        timeout: Duration,
    ) -> Result<(), String> {
        let what = format!("{kind:?} {namespace}/{name} to have {replicas} replicas");
        self.wait_until(&what, timeout, |kube| kube.replicas_of(kind, namespace, name) == Some(replicas)).await
    }

    /// The events of a namespace in core `v1` form, however they were written.
    pub fn events(&self, namespace: &str) -> Vec<Value> {
        self.shared.read(|store| store.list(Kind::Event, Some(namespace)).into_iter().cloned().collect())
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// The successful writes to a Deployment's `scale` subresource: when each arrived and the
    /// replicas it left.
    pub fn scale_writes(&self, namespace: &str, name: &str) -> Vec<(Instant, u32)> {
        let path = format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale");
        self.requests()
            .into_iter()
            .filter(|r| r.path == path && (r.method == "PATCH" || r.method == "PUT"))
            .filter(|r| r.status.is_some_and(|code| (200..300).contains(&code)))
            .filter_map(|r| {
                let replicas = r.response?.pointer("/spec/replicas")?.as_u64()?;
                Some((r.at, u32::try_from(replicas).ok()?))
            })
            .collect()
    }

    /// Makes the next matching requests fail, stall or lose their connection.
    pub fn inject(&self, fault: Fault) {
        self.shared.inject(fault);
    }

    /// Ends every open watch stream, as an API server restart or a load balancer would: no change
    /// made after this call reaches a stream that was open before it.
    pub fn close_watches(&self) {
        self.shared.close_watches();
    }

    /// Forgets the change history, so a watch resuming from an earlier resourceVersion gets 410
    /// Gone and must re-list, as after an etcd compaction.
    pub fn compact_history(&self) {
        self.shared.write(store::Store::compact);
    }

    /// Waits until `condition` holds, or fails with a message naming `what` after `timeout`. The
    /// condition is checked after every request and change, and every few milliseconds for
    /// conditions outside the fake.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Self) -> bool,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut activity = self.shared.activity();
        loop {
            activity.borrow_and_update();
            if condition(self) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            let next_check = deadline.min(tokio::time::Instant::now() + RECHECK_EVERY);
            // Either a change or the recheck interval ends the wait; both lead to checking again.
            let _ = tokio::time::timeout_at(next_check, activity.changed()).await;
        }
    }

    /// Waits until a Deployment's `spec.replicas` is `replicas`.
    pub async fn wait_until_replicas(
        &self,
        namespace: &str,
        name: &str,
        replicas: u32,
        timeout: Duration,
    ) -> Result<(), String> {
        let what = format!("deployment {namespace}/{name} to have {replicas} replicas");
        self.wait_until(&what, timeout, |kube| kube.replicas(namespace, name) == Some(replicas)).await
    }

    /// Creates or replaces an object in its namespace.
    fn put(&self, kind: Kind, object: Value) -> Value {
        let text = |field: &str| object["metadata"][field].as_str().unwrap_or_default().to_string();
        let key = key(kind, &text("namespace"), &text("name"));
        self.shared.write(|store| {
            let owners = store.owners(&key).cloned().unwrap_or_default();
            if store.get(&key).is_some() {
                store.update(key, object, owners)
            } else {
                store.create(key, object, owners)
            }
        })
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.shared.close_watches();
        self.server.abort();
    }
}

fn key(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey { kind, namespace: namespace.to_string(), name: name.to_string() }
}

fn kubeconfig_text(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
contexts:
- name: fake
  context:
    cluster: fake
    namespace: default
    user: fake
current-context: fake
users:
- name: fake
  user: {{}}
"
    )
}
