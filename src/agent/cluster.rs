//! `queue-scaler run`: the agent wired to a real cluster.
//!
//! Builds the Kubernetes client (in-cluster, else `KUBECONFIG`/`~/.kube/config`), starts one watch per kind the
//! targets name (Deployments, StatefulSets, ...) in the namespace, the leader election and the config reload, serves `/metrics`, `/healthz` and `/readyz`, and runs
//! one [`TargetLoop`] task per target until shutdown is signalled. A reloaded config keeps what the loops learned
//! ([`reload::carry_over`]). Nothing here decides anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::sync::watch;

use super::leader::{ElectionSettings, Elector, Leadership};
use super::shadow::Recorder;
use super::status::StatusBoard;
use super::{Clock, LoopSettings, TargetLoop, reload};
use crate::config::{Config, TargetConfig};
use crate::http::{self, Response};
use crate::source::{Clients, Source};
use crate::target::other_controllers::OtherControllers;
use crate::target::workload::WorkloadTarget;
use crate::target::workloads::Workloads;

/// Flags of `queue-scaler run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Decide and log, never write.
    pub dry_run: bool,
    /// One poll per target, then exit.
    pub once: bool,
    /// The config file, watched for changes (none: no reload).
    pub config_path: Option<PathBuf>,
    /// Shadow mode (`--shadow`): decide beside the current autoscaler, write nothing, and record to this file if
    /// one is given, capped at the size.
    pub shadow: Option<Option<(PathBuf, u64)>>,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No usable Kubernetes credentials.
    #[error(
        "cannot find Kubernetes credentials ({0}); in a pod, mount a ServiceAccount token; elsewhere set KUBECONFIG"
    )]
    Credentials(String),
    /// No namespace in the config, `POD_NAMESPACE` or the kubeconfig.
    #[error("no namespace: set `namespace:` in the config or POD_NAMESPACE")]
    Namespace,
    /// The metrics address is taken or not allowed.
    #[error("cannot listen on {addr} for metrics: {source}")]
    Listen {
        /// The address from `metrics.listen`.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A recorder was already installed.
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    /// The config would make the agent scale away the Deployment it runs in.
    #[error("{0}")]
    ScalesItself(String),
    /// The shadow recording cannot be opened.
    #[error("{0}")]
    Record(#[from] super::shadow::RecordError),
}

/// Runs the agent until `shutdown` turns true (or after one poll with `--once`).
pub async fn run(config: Config, options: RunOptions, shutdown: watch::Receiver<bool>) -> Result<(), StartError> {
    let client = kube::Client::try_default().await.map_err(|e| StartError::Credentials(e.to_string()))?;
    let namespace = config
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|ns| !ns.is_empty()))
        .unwrap_or_else(|| client.default_namespace().to_owned());
    if namespace.is_empty() {
        return Err(StartError::Namespace);
    }
    let identity = identity();
    let workloads = Workloads::new(client.clone(), &namespace);
    let (others, drive_others) = OtherControllers::start(client.clone(), &namespace);
    let others_task = tokio::spawn(drive_others);

    let board = StatusBoard::default();
    let metrics_server =
        if options.once { None } else { Some(serve_metrics(&config, workloads.clone(), board.clone()).await?) };
    tracing::info!(
        %namespace, %identity, targets = config.targets.len(), poll_interval = ?config.poll_interval,
        dry_run = options.dry_run, "starting"
    );
    workloads.prepare(config.targets.iter().map(TargetConfig::workload)).await;
    let own_labels = own_pod_labels(&client, &namespace).await;
    let check_self = |config: &Config| refuse_scaling_itself(config, &workloads, own_labels.as_ref());
    check_self(&config).map_err(StartError::ScalesItself)?;

    let recorder = match &options.shadow {
        Some(Some((path, max_bytes))) => Some(Recorder::open(path, *max_bytes, config.poll_interval)?),
        _ => None,
    };
    if options.shadow.is_some() {
        tracing::info!(
            record = ?options.shadow.clone().flatten().map(|(path, _)| path),
            "shadow mode: reading and deciding beside whatever scales the Deployments now (another autoscaler, a \
             human), writing nothing"
        );
    }
    let leadership = elect(&config, &client, &namespace, &identity, options.once, &shutdown);
    board.follow(&leadership);
    // One client per broker for every target and every reload: a reload that keeps a broker keeps its connection.
    let clients = Clients::new();
    let dry_run = options.dry_run || options.shadow.is_some();
    let settings_of = |config: &Config| LoopSettings { read_timeout: config.read_timeout, dry_run };
    let builder = |config: &Config| {
        let (workloads, identity, leadership, others, clients) =
            (workloads.clone(), identity.clone(), leadership.clone(), others.clone(), clients.clone());
        let (settings, secrets, read_timeout) = (settings_of(config), config.secrets.clone(), config.read_timeout);
        let (shadow, recorder) = (options.shadow.is_some(), recorder.clone());
        move |target: &crate::config::TargetConfig| {
            let sources = target.sources.iter().map(|s| Source::from_kind(&s.kind, read_timeout, &clients)).collect();
            let workload = WorkloadTarget::new(
                workloads.clone(),
                target.workload(),
                &identity,
                target.scale_down.clone(),
                leadership.clone(),
                others.clone(),
            );
            let mut target_loop =
                TargetLoop::new(target, sources, workload, settings, secrets.clone(), leadership.clone());
            if shadow {
                target_loop.shadow(recorder.clone());
            }
            target_loop
        }
    };
    let clock = Clock::starting_at(chrono::Utc::now());

    if options.once {
        for mut target_loop in config.targets.iter().map(builder(&config)) {
            target_loop.tick(&clock).await;
        }
    } else {
        let (updates, mut configs) = watch::channel(Arc::new(config));
        if let Some(path) = options.config_path.clone() {
            let workloads = workloads.clone();
            let own_labels = own_labels.clone();
            tokio::spawn(reload::watch_file(
                path,
                updates,
                move |config| refuse_scaling_itself(config, &workloads, own_labels.as_ref()),
                reload::CHECK_EVERY,
            ));
        }
        let mut shutdown = shutdown;
        let mut running = Vec::new();
        let mut first = true;
        loop {
            let config = configs.borrow_and_update().clone();
            workloads.prepare(config.targets.iter().map(TargetConfig::workload)).await;
            let (mut loops, carried) =
                reload::carry_over(running, &config.targets, settings_of(&config), builder(&config));
            let names: Vec<String> = config.targets.iter().map(|t| t.name().to_owned()).collect();
            for target_loop in &mut loops {
                target_loop.report_to(board.clone(), &names);
            }
            if !std::mem::take(&mut first) {
                tracing::info!(
                    kept = carried.kept,
                    changed = carried.changed,
                    added = carried.added,
                    removed = carried.removed,
                    "reloaded: unchanged targets keep everything they learned, changed ones keep their windows"
                );
            }
            let (stop_loops, loops_stop) = watch::channel(false);
            let tasks: Vec<_> = loops
                .into_iter()
                .map(|target_loop| tokio::spawn(target_loop.run(config.poll_interval, clock, loops_stop.clone())))
                .collect();
            let reloaded = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => false,
                changed = configs.changed() => changed.is_ok(),
            };
            let _ = stop_loops.send(true);
            running = Vec::with_capacity(tasks.len());
            for task in tasks {
                // A loop task only ends when told to; a panic in one is a bug worth surfacing in the log.
                match task.await {
                    Ok(target_loop) => running.push(target_loop),
                    Err(e) => tracing::error!(error = %e, "a target loop ended abnormally"),
                }
            }
            if !reloaded {
                break;
            }
        }
        tracing::info!("stopped");
    }
    workloads.stop();
    others_task.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    Ok(())
}

/// Who this agent is in the Lease and in Events: the pod name, else the host name and process id.
fn identity() -> String {
    std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        format!("{}-{}", if host.is_empty() { "queue-scaler" } else { &host }, std::process::id())
    })
}

/// Starts the election if it is enabled (default: inside a cluster) and returns the leadership loops obey.
fn elect(
    config: &Config,
    client: &kube::Client,
    namespace: &str,
    identity: &str,
    once: bool,
    shutdown: &watch::Receiver<bool>,
) -> Leadership {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let election = &config.leader_election;
    if once || !election.enabled.unwrap_or(in_cluster) {
        crate::metrics::set_leader(true);
        return Leadership::always();
    }
    let settings = ElectionSettings::for_duration(&election.lease_name, identity, election.lease_duration);
    let (elector, leadership) = Elector::new(Api::<Lease>::namespaced(client.clone(), namespace), settings);
    tokio::spawn(elector.run(shutdown.clone()));
    leadership
}

/// The labels of the pod this agent runs in (from `POD_NAME`), if it runs in one that it can see.
async fn own_pod_labels(client: &kube::Client, namespace: &str) -> Option<BTreeMap<String, String>> {
    let name = std::env::var("POD_NAME").ok().filter(|n| !n.is_empty())?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match pods.list(&ListParams::default().fields(&format!("metadata.name={name}"))).await {
        Ok(list) => list.items.into_iter().next().map(|pod| pod.metadata.labels.unwrap_or_default()),
        Err(error) => {
            tracing::warn!(pod = %name, %error, "cannot read this agent's own pod; the sidecar check is skipped");
            None
        }
    }
}

/// As a sidecar, the agent must not be able to scale its own workload to zero: it would remove itself and never
/// come back to scale up.
fn refuse_scaling_itself(
    config: &Config,
    workloads: &Workloads,
    own_labels: Option<&BTreeMap<String, String>>,
) -> Result<(), String> {
    let Some(labels) = own_labels else {
        return Ok(());
    };
    for (i, target) in config.targets.iter().enumerate() {
        let workload = target.workload();
        if target.min_replicas == 0 && workloads.selects(&workload, labels) {
            return Err(format!(
                "targets[{i}].minReplicas: 0 would scale away {} `{}`, which this agent runs inside as a sidecar; \
                 set minReplicas to at least 1, or run the agent as its own Deployment",
                workload.kind.to_lowercase(),
                workload.name
            ));
        }
    }
    Ok(())
}

async fn serve_metrics(
    config: &Config,
    workloads: Workloads,
    board: StatusBoard,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let addr = config.metrics.listen.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Listen { addr: addr.clone(), source })?;
    let handle = crate::metrics::install().map_err(|e| StartError::Metrics(e.to_string()))?;
    tracing::info!(%addr, "serving /metrics, /status, /healthz and /readyz");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let route = move |path: &str| match path {
        "/metrics" => Some(Response::metrics(handle.render())),
        "/status" => Some(Response::json(serde_json::to_string(&board.snapshot()).unwrap_or_default())),
        "/healthz" => Some(Response::text("ok\n")),
        "/readyz" if workloads.is_ready() => Some(Response::text("ready\n")),
        "/readyz" => Some(Response::unavailable("waiting for the first list of the workloads to scale\n")),
        _ => None,
    };
    Ok(tokio::spawn(http::serve(listener, Arc::new(route))))
}
