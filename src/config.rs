//! The YAML contract: typed with serde, expanded from the environment, validated with messages a human can act on.
//!
//! A wrong config must be caught before the agent touches a cluster, and the message must say where and what to do:
//! `queue-scaler.yaml:7: targets[0].minReplicas: minReplicas (5) is above maxReplicas (3); lower minReplicas or raise
//! maxReplicas`. Loading therefore runs in stages, each of which reports every problem it finds with a path:
//!
//! 1. parse the YAML into a tree (syntax errors carry serde_norway's line),
//! 2. expand `${NAME}` references from the environment (so secrets never sit in the file),
//! 3. deserialize into the typed [`Config`] (unknown fields are errors, with a "did you mean"),
//! 4. validate the rules types cannot express ([`Config::problems`]),
//!
//! and finally every path is turned into a line number by walking the YAML's events ([`LineIndex`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use crate::policy::behavior::Behavior;
use crate::policy::burst::BurstConfig;
use crate::policy::latency::LatencyTarget;
use crate::policy::not_draining::NotDrainingConfig;
use crate::policy::scale_down_policy::ScaleDownPolicy;
use crate::policy::schedule::Schedule;
use crate::redact::Secrets;
use crate::source::SourceSpec;
pub use crate::validation::Problem;
use crate::validation::{duration, split_nested};

mod workload;
pub use workload::ScaleTargetRef;

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where the Deployments live. Default: `POD_NAMESPACE`, else the kubeconfig context's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// How often every target's sources are read and a decision is made.
    #[serde(default = "defaults::poll_interval", with = "duration")]
    pub poll_interval: Duration,
    /// The longest one source read may take before it counts as failed.
    #[serde(default = "defaults::read_timeout", with = "duration")]
    pub read_timeout: Duration,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Several agents (sidecars, or replicas for availability) elect one leader through a Lease.
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
    /// The Deployments to scale, each with its sources and rules.
    pub targets: Vec<TargetConfig>,
    /// Every value that came from the environment or a URL password: scrubbed from anything shown.
    #[serde(skip)]
    pub secrets: Secrets,
    /// Settings that are valid but break a promise in some situations, located in the file: `check` prints them,
    /// `check --strict` refuses them and `run` logs them at start.
    #[serde(skip)]
    pub warnings: Vec<LocatedProblem>,
    /// Sources whose reader this build lacks (built without their Cargo feature), located in the file: `check` and
    /// `run` refuse them; `simulate`, `replay` and `tune`, which stand in for every queue, accept them.
    #[serde(skip)]
    pub not_built_in: Vec<LocatedProblem>,
}

/// `metrics:` — where `/metrics`, `/healthz` and `/readyz` are served.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port`, e.g. `0.0.0.0:9095`.
    #[serde(default = "defaults::metrics_listen")]
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: defaults::metrics_listen() }
    }
}

impl MetricsConfig {
    /// The listen address; [`Config::problems`] has already checked it parses.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

/// `leaderElection:` — one acting agent among several.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// On or off; default: on when running inside a cluster (`KUBERNETES_SERVICE_HOST` is set).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The Lease's name, in the agent's namespace.
    #[serde(default = "defaults::lease_name")]
    pub lease_name: String,
    /// How long a silent leader keeps the Lease; a standby takes over after that.
    #[serde(default = "defaults::lease_duration", with = "duration")]
    pub lease_duration: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: None,
            lease_name: defaults::lease_name(),
            lease_duration: defaults::lease_duration(),
        }
    }
}

/// One workload and how to scale it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetConfig {
    /// The Deployment's name, in the agent's namespace: short for a `scaleTargetRef` to an `apps/v1` Deployment.
    #[serde(default)]
    pub deployment: Option<String>,
    /// Any workload with a `scale` subresource (a StatefulSet, an Argo Rollout, a custom resource), as an HPA names
    /// it; a target has this or `deployment`, not both.
    #[serde(default)]
    pub scale_target_ref: Option<ScaleTargetRef>,
    /// Never fewer replicas than this; 0 allows scale to zero.
    #[serde(default = "defaults::min_replicas")]
    pub min_replicas: u32,
    /// Never more replicas than this.
    pub max_replicas: u32,
    /// With `minReplicas: 0`: the target wakes from zero when a source's backlog is above this, and goes back to zero
    /// when every source is at or below it (KEDA's `activationThreshold`).
    #[serde(default)]
    pub activation: f64,
    /// With `minReplicas: 0`: the last replica goes only this long after a source was last above `activation`
    /// (KEDA's `cooldownPeriod`), and then at once; the steps down to one follow `behavior`. Unset: the step to zero
    /// follows `behavior` like any other.
    #[serde(default, deserialize_with = "optional_duration")]
    pub cooldown_period: Option<Duration>,
    /// Where the backlog comes from; the target follows the source that asks for the most replicas.
    pub sources: Vec<SourceSpec>,
    /// HPA v2 `behavior`: stabilization windows and rate policies, with Kubernetes' defaults.
    #[serde(default)]
    pub behavior: Behavior,
    /// Raised floors at known times.
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// What to do when sources keep failing. Without it the count is held.
    #[serde(default)]
    pub fallback: Option<Fallback>,
    /// Latency-target mode: replicas by Little's law so that jobs wait at most `maxWait`, instead of by
    /// `backlogPerWorker`.
    #[serde(default)]
    pub latency_target: Option<LatencyTarget>,
    /// Bursts: scale up at once and never down while the backlog outgrows the replicas.
    #[serde(default)]
    pub burst: BurstConfig,
    /// How scale-down goes: how long surplus replicas are kept, and that busy ones stay; on by default with
    /// `latencyTarget`.
    #[serde(default)]
    pub scale_down_policy: Option<ScaleDownPolicy>,
    /// Which pods a scale-down removes.
    #[serde(default)]
    pub scale_down: ScaleDownConfig,
    /// A backlog that more replicas do not drain stops the scale-up (on by default).
    #[serde(default)]
    pub not_draining: NotDrainingConfig,
}

/// `scaleDown:` — choosing which pods go, and how.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleDownConfig {
    /// Before lowering replicas, ask each worker pod how many jobs it holds (the drain library's `/status`) and
    /// set `controller.kubernetes.io/pod-deletion-cost` so idle pods go first.
    #[serde(default)]
    pub idle_first: bool,
    /// Quiet, then remove: before lowering replicas, tell the workers to go (`POST /quiet`: they stop taking jobs
    /// and finish theirs), and lower `replicas` only once they hold none, so no job is interrupted.
    #[serde(default)]
    pub quiet: bool,
    /// How long quiet workers may take to finish their jobs before the scale-down goes ahead with idle-first
    /// deletion costs instead.
    #[serde(default = "defaults::quiet_timeout", with = "duration")]
    pub quiet_timeout: Duration,
    /// A file holding the bearer token the workers' `/quiet` and `/resume` want (their `DRAIN_TOKEN`).
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    /// While a worker holds jobs, mark its pod so that node consolidation (Karpenter, the cluster autoscaler)
    /// does not evict it.
    #[serde(default)]
    pub protect_busy: bool,
    /// The port of the workers' drain endpoint.
    #[serde(default = "defaults::worker_metrics_port")]
    pub worker_metrics_port: u16,
}

impl Default for ScaleDownConfig {
    fn default() -> Self {
        ScaleDownConfig {
            idle_first: false,
            quiet: false,
            quiet_timeout: defaults::quiet_timeout(),
            token_file: None,
            protect_busy: false,
            worker_metrics_port: defaults::worker_metrics_port(),
        }
    }
}

/// `fallback:` — replicas to run when sources keep failing.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fallback {
    /// Consecutive failed reads of a source before the fallback applies.
    #[serde(default = "defaults::failure_threshold")]
    pub failure_threshold: u32,
    /// The replica count a failing source asks for. It raises the count; an error never lowers it.
    pub replicas: u32,
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    crate::validation::duration::deserialize(d).map(Some)
}

mod defaults {
    use std::time::Duration;

    pub fn poll_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn read_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn lease_name() -> String {
        "queue-scaler".to_owned()
    }
    pub fn lease_duration() -> Duration {
        Duration::from_secs(15)
    }
    pub fn metrics_listen() -> String {
        "0.0.0.0:9095".to_owned()
    }
    pub fn min_replicas() -> u32 {
        1
    }
    pub fn worker_metrics_port() -> u16 {
        9091
    }
    pub fn quiet_timeout() -> Duration {
        Duration::from_secs(30 * 60)
    }
    pub fn failure_threshold() -> u32 {
        3
    }
}

/// A problem with its file and line: what `check` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedProblem {
    /// The config file as the user named it.
    pub file: String,
    /// 1-based line, when the path could be found in the file.
    pub line: Option<usize>,
    /// The problem.
    pub problem: Problem,
}

impl LocatedProblem {
    /// The line `check` prints for a warning: `FILE:LINE: warning: field: message`.
    pub fn as_warning(&self) -> String {
        let shown = self.to_string();
        let location = match self.line {
            Some(line) => format!("{}:{line}: ", self.file),
            None => format!("{}: ", self.file),
        };
        match shown.strip_prefix(&location) {
            Some(rest) => format!("{location}warning: {rest}"),
            None => format!("warning: {shown}"),
        }
    }
}

impl fmt::Display for LocatedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: ", self.file, line)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if self.problem.path.is_empty() || self.problem.path == "." {
            write!(f, "{}", self.problem.message)
        } else {
            write!(f, "{}: {}", self.problem.path, self.problem.message)
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the config file: {source}")]
    Read {
        /// The file as the user named it.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is wrong; every problem found is listed.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<LocatedProblem>),
}

fn render_problems(problems: &[LocatedProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl Config {
    /// Reads, expands, parses and validates the file at `path`, with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Config::parse(&file, &text, |name| std::env::var(name).ok())
    }

    /// Parses and validates `text`; `file` names it in messages and `env` resolves `${NAME}` references.
    pub fn parse(file: &str, text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let locate = |problems: Vec<Problem>| -> Vec<LocatedProblem> {
            let index = LineIndex::build(text);
            problems
                .into_iter()
                .map(|problem| LocatedProblem { file: file.to_owned(), line: index.line_of(&problem.path), problem })
                .collect()
        };
        let invalid = |problems| ConfigError::Invalid(locate(problems));
        let mut tree: Value = serde_norway::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            let message = format!("not valid YAML: {}", strip_location(&e.to_string()));
            ConfigError::Invalid(vec![LocatedProblem {
                file: file.to_owned(),
                line,
                problem: Problem::new("", message),
            }])
        })?;
        if tree.is_null() {
            return Err(invalid(vec![Problem::new("", "the file is empty; a config needs at least `targets:`")]));
        }
        let mut secrets = Secrets::default();
        let missing = expand_env(&mut tree, "", &env, &mut secrets);
        if !missing.is_empty() {
            return Err(invalid(missing));
        }
        let mut config: Config = serde_path_to_error::deserialize(tree)
            .map_err(|e| invalid(vec![problem_from_serde(&e.path().to_string(), &e.inner().to_string(), &secrets)]))?;
        for target in &config.targets {
            for source in &target.sources {
                secrets.extend(&source.kind.secrets());
            }
        }
        config.secrets = secrets;
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        config.warnings = locate(config.warning_problems());
        config.not_built_in = locate(config.not_built_in_problems());
        Ok(config)
    }

    /// Every source whose reader this build lacks, at its `type:`.
    pub fn not_built_in_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, target) in self.targets.iter().enumerate() {
            for (j, source) in target.sources.iter().enumerate() {
                if let Some(feature) = source.kind.missing_feature() {
                    problems.push(Problem::new(
                        format!("targets[{i}].sources[{j}].type"),
                        crate::source::not_built_in(feature),
                    ));
                }
            }
        }
        problems
    }

    /// Valid settings that break a promise in some situations, with a path and what to do.
    pub fn warning_problems(&self) -> Vec<Problem> {
        self.targets
            .iter()
            .enumerate()
            .flat_map(|(i, target)| target.warnings().into_iter().map(move |p| p.under(&format!("targets[{i}]"))))
            .collect()
    }

    /// Every rule the types cannot express, with a path and a fix.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(ns) = &self.namespace
            && let Some(why) = dns_label_problem(ns)
        {
            problems.push(Problem::new("namespace", format!("`{ns}` is not a namespace name: {why}")));
        }
        if self.poll_interval < Duration::from_millis(100) {
            problems.push(Problem::new(
                "pollInterval",
                format!("{:?} is too short to be kind to the brokers; use at least `100ms`", self.poll_interval),
            ));
        }
        if self.read_timeout.is_zero() {
            problems.push(Problem::new("readTimeout", "must be longer than zero, e.g. `10s`"));
        }
        if self.metrics.listen_addr().is_none() {
            problems.push(Problem::new(
                "metrics.listen",
                format!(
                    "`{}` is not an address to listen on; write `host:port`, e.g. `0.0.0.0:9095`",
                    self.metrics.listen
                ),
            ));
        }
        if let Some(why) = dns_subdomain_problem(&self.leader_election.lease_name) {
            problems.push(Problem::new(
                "leaderElection.leaseName",
                format!("`{}` is not a Lease name: {why}", self.leader_election.lease_name),
            ));
        }
        if self.leader_election.lease_duration < Duration::from_secs(2) {
            problems.push(Problem::new(
                "leaderElection.leaseDuration",
                "must be at least `2s` (renewals happen every 2/15 of it; 15s is a good default)",
            ));
        }
        if self.targets.is_empty() {
            problems.push(Problem::new("targets", "no targets; add at least one Deployment to scale"));
        }
        // Metrics, logs and `/status` name a target by its workload's name, so names are unique across kinds too.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, target) in self.targets.iter().enumerate() {
            let path = format!("targets[{i}]");
            let workload = target.workload();
            if let Some(first) = seen.insert(target.name(), i) {
                let message = if self.targets[first].workload() == workload {
                    format!(
                        "`{}` is already scaled by targets[{first}]; two targets would fight over one {}, so merge \
                         their sources into one target",
                        workload.name, workload.kind
                    )
                } else {
                    format!(
                        "`{}` is already the name of targets[{first}]'s {}; metrics and status name targets by name, \
                         so scale workloads with different names",
                        workload.name,
                        self.targets[first].workload().kind
                    )
                };
                problems.push(Problem::new(format!("{path}.{}", target.name_field()), message));
            }
            problems.extend(target.problems().into_iter().map(|p| p.under(&path)));
        }
        problems
    }
}

impl TargetConfig {
    /// The `scaleDownPolicy` in force: the configured one, else the default one in latency mode, else none (the
    /// HPA's `behavior.scaleDown` alone).
    pub fn effective_scale_down_policy(&self) -> Option<ScaleDownPolicy> {
        self.scale_down_policy.or_else(|| self.latency_target.map(|_| ScaleDownPolicy::default()))
    }

    /// Valid settings of this target that break a promise in some situations, relative to it.
    pub fn warnings(&self) -> Vec<Problem> {
        self.sources
            .iter()
            .enumerate()
            .flat_map(|(i, source)| source.kind.warnings().into_iter().map(move |p| p.under(&format!("sources[{i}]"))))
            .collect()
    }

    /// What this target scales: its `scaleTargetRef`, or the Deployment `deployment` names.
    pub fn workload(&self) -> ScaleTargetRef {
        match (&self.scale_target_ref, &self.deployment) {
            (Some(reference), _) => reference.clone(),
            (None, name) => ScaleTargetRef::deployment(name.as_deref().unwrap_or_default()),
        }
    }

    /// The name of the workload this target scales, which metrics, logs and `/status` call it by.
    pub fn name(&self) -> &str {
        match (&self.scale_target_ref, &self.deployment) {
            (Some(reference), _) => &reference.name,
            (None, name) => name.as_deref().unwrap_or_default(),
        }
    }

    /// Where the name is written in the file, relative to the target.
    fn name_field(&self) -> &'static str {
        if self.scale_target_ref.is_some() { "scaleTargetRef.name" } else { "deployment" }
    }

    /// Problems with this target, relative to it.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        match (&self.deployment, &self.scale_target_ref) {
            (Some(deployment), None) => {
                if let Some(why) = dns_subdomain_problem(deployment) {
                    problems
                        .push(Problem::new("deployment", format!("`{deployment}` is not a Deployment name: {why}")));
                }
            }
            (None, Some(reference)) => {
                problems.extend(reference.problems().into_iter().map(|p| p.under("scaleTargetRef")));
            }
            (Some(_), Some(_)) => problems.push(Problem::new(
                "scaleTargetRef",
                "a target scales one workload: keep `deployment: NAME` or `scaleTargetRef`, not both",
            )),
            (None, None) => problems.push(Problem::new(
                "deployment",
                "missing; say what to scale: `deployment: NAME`, or `scaleTargetRef: {apiVersion, kind, name}` for a \
                 StatefulSet, an Argo Rollout or any resource with a scale subresource",
            )),
        }
        if self.max_replicas == 0 {
            problems.push(Problem::new(
                "maxReplicas",
                "must be at least 1; to stop a Deployment, use `queue-scaler scale --replicas 0 --hold`",
            ));
        }
        if self.min_replicas > self.max_replicas {
            problems.push(Problem::new(
                "minReplicas",
                format!(
                    "minReplicas ({}) is above maxReplicas ({}); lower minReplicas or raise maxReplicas",
                    self.min_replicas, self.max_replicas
                ),
            ));
        }
        if !(self.activation.is_finite() && self.activation >= 0.0) {
            problems.push(Problem::new(
                "activation",
                format!("{} is not a backlog; use 0 or a positive number of messages", self.activation),
            ));
        }
        if self.sources.is_empty() {
            problems.push(Problem::new("sources", "no sources; add at least one queue to read the backlog from"));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, source) in self.sources.iter().enumerate() {
            let path = format!("sources[{i}]");
            if let Some(first) = names.insert(source.name.as_str(), i) {
                problems.push(Problem::new(
                    format!("{path}.name"),
                    format!(
                        "`{}` is also the name of sources[{first}]; give one of them a distinct `name:`",
                        source.name
                    ),
                ));
            }
            if !(source.backlog_per_worker.is_finite() && source.backlog_per_worker > 0.0) {
                problems.push(Problem::new(
                    format!("{path}.backlogPerWorker"),
                    format!(
                        "{} cannot divide a backlog; use a positive number of messages per worker",
                        source.backlog_per_worker
                    ),
                ));
            }
            problems.extend(source.kind.problems().into_iter().map(|p| p.under(&path)));
        }
        problems.extend(self.behavior.problems().into_iter().map(|p| p.under("behavior")));
        for (i, schedule) in self.schedules.iter().enumerate() {
            let path = format!("schedules[{i}]");
            problems.extend(schedule.problems().into_iter().map(|p| p.under(&path)));
            if schedule.min_replicas > self.max_replicas {
                problems.push(Problem::new(
                    format!("{path}.minReplicas"),
                    format!(
                        "the schedule's minReplicas ({}) is above maxReplicas ({}); lower it or raise maxReplicas",
                        schedule.min_replicas, self.max_replicas
                    ),
                ));
            }
        }
        if self.scale_down.worker_metrics_port == 0 {
            problems.push(Problem::new(
                "scaleDown.workerMetricsPort",
                "must be the port the workers serve the drain endpoint on (WORKER_METRICS_ADDR), e.g. 9091",
            ));
        }
        if self.scale_down.quiet && self.scale_down.quiet_timeout.is_zero() {
            problems.push(Problem::new(
                "scaleDown.quietTimeout",
                "must be longer than zero: how long quiet workers may take to finish their jobs, e.g. `30m`",
            ));
        }
        if self.scale_down.token_file.is_some() && !self.scale_down.quiet {
            problems.push(Problem::new(
                "scaleDown.tokenFile",
                "only applies with `quiet: true` (it authenticates /quiet and /resume); set quiet or remove it",
            ));
        }
        if let Some(latency) = &self.latency_target {
            problems.extend(latency.problems().into_iter().map(|p| p.under("latencyTarget")));
            for (i, source) in self.sources.iter().enumerate() {
                if let Some(field) = source.kind.leaves_out_in_flight() {
                    problems.push(Problem::new(
                        format!("sources[{i}].{field}"),
                        format!(
                            "latencyTarget needs in-flight messages counted in the backlog to tell them from waiting \
                             ones; remove {field}"
                        ),
                    ));
                }
            }
            if latency.job_duration.is_none()
                && let Some((i, source, why)) = self
                    .sources
                    .iter()
                    .enumerate()
                    .find_map(|(i, s)| s.kind.cannot_learn_job_duration().map(|why| (i, s, why)))
            {
                problems.push(Problem::new(
                    "latencyTarget.jobDuration",
                    format!(
                        "missing, and sources[{i}] (`{}`) cannot learn how long a job takes ({why}); set it, e.g. \
                         `jobDuration: 30s`",
                        source.name
                    ),
                ));
            }
        }
        problems.extend(self.burst.problems().into_iter().map(|p| p.under("burst")));
        problems.extend(self.not_draining.problems().into_iter().map(|p| p.under("notDraining")));
        if let Some(policy) = &self.scale_down_policy {
            problems.extend(policy.problems().into_iter().map(|p| p.under("scaleDownPolicy")));
            if self.behavior.scale_down.as_ref().is_some_and(|r| r.stabilization_window_seconds.is_some()) {
                problems.push(Problem::new(
                    "scaleDownPolicy.delay",
                    "is the scale-down stabilization window; remove it or \
                     behavior.scaleDown.stabilizationWindowSeconds",
                ));
            }
        }
        if let Some(fallback) = &self.fallback {
            if fallback.failure_threshold == 0 {
                problems.push(Problem::new(
                    "fallback.failureThreshold",
                    "must be at least 1 (the number of failed reads in a row before the fallback applies)",
                ));
            }
            if fallback.replicas == 0 || fallback.replicas > self.max_replicas {
                problems.push(Problem::new(
                    "fallback.replicas",
                    format!(
                        "{} is outside 1..={} (maxReplicas); an outage must never scale to zero",
                        fallback.replicas, self.max_replicas
                    ),
                ));
            }
        }
        problems
    }
}

/// Why `name` is not a valid Kubernetes object name (RFC 1123 label), if it is not.
pub(crate) fn dns_label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        Some("use only lowercase letters, digits and '-'")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it must start and end with a letter or digit")
    } else {
        None
    }
}

/// Why `name` is not a valid name for most Kubernetes objects, Deployments and Leases among them (an RFC 1123
/// subdomain: labels joined by dots, 253 characters at most), if it is not.
pub(crate) fn dns_subdomain_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 253 {
        Some("it is longer than 253 characters")
    } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') {
        Some("use only lowercase letters, digits, '-' and '.'")
    } else if name.split('.').any(|label| label.is_empty()) {
        Some("dots must separate non-empty parts (no leading, trailing or double dots)")
    } else if name.split('.').any(|label| label.starts_with('-') || label.ends_with('-')) {
        Some("each part between dots must start and end with a letter or digit")
    } else {
        None
    }
}

/// Turns a serde error at `path` into a [`Problem`] with a suggestion, scrubbing any expanded secret from it.
fn problem_from_serde(path: &str, message: &str, secrets: &Secrets) -> Problem {
    let (path, message) = match split_nested(message) {
        // A nested deserializer's own root is `.`; it is the path serde_path_to_error stopped at.
        Some((".", inner)) => (path.to_owned(), inner.to_owned()),
        Some((sub, inner)) => (Problem::new(sub, "").under(path).path, inner.to_owned()),
        None => (path.to_owned(), message.to_owned()),
    };
    let path = if path == "." { String::new() } else { path };
    let message = strip_location(&message);
    if let Some(field) = between(&message, "unknown field `", "`") {
        let expected = message.split_once("expected").map(|(_, list)| backticked(list)).unwrap_or_default();
        let hint = match closest(field, &expected) {
            Some(best) => format!("did you mean `{best}`?"),
            None if expected.is_empty() => "remove it".to_owned(),
            None => {
                format!("expected one of {}", expected.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", "))
            }
        };
        // serde_path_to_error already ends the path with the unknown field.
        return Problem::new(path, format!("unknown field; {hint}"));
    }
    if let Some(field) = between(&message, "missing field `", "`") {
        return Problem::new(Problem::new(field, "").under(&path).path, "missing; this field is required");
    }
    Problem::new(path, secrets.scrub(&plain_types(&message)))
}

/// serde names the Rust type it expected (`u32`, `struct MetricsConfig`); the user needs what to write instead.
fn plain_types(message: &str) -> String {
    let Some((head, expected)) = message.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let plain = match expected {
        "u32" | "u64" => "a whole number (0 or more)",
        "u16" => "a port number (1 to 65535)",
        "f64" => "a number",
        "a boolean" => "`true` or `false`",
        "a sequence" => "a list, e.g. `[a, b]`",
        _ if expected.starts_with("struct ") => "a mapping of `field: value` settings",
        _ => expected,
    };
    format!("{head}, expected {plain}")
}

fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The expected name closest to `field` by edit distance, if it is close enough to be a typo.
fn closest<'a>(field: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (edit_distance(&field.to_lowercase(), &e.to_lowercase()), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4) || field.starts_with(*e) || e.starts_with(field))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Replaces `${NAME}` in every string value (never in keys) and returns the references that could not be resolved.
/// `$${` writes a literal `${`. Resolved values are remembered as secrets.
fn expand_env(
    value: &mut Value,
    path: &str,
    env: &impl Fn(&str) -> Option<String>,
    secrets: &mut Secrets,
) -> Vec<Problem> {
    match value {
        Value::String(text) if text.contains("${") => match expand_str(text, env, secrets) {
            Ok(expanded) => {
                *text = expanded;
                Vec::new()
            }
            Err(name) => vec![Problem::new(
                path,
                format!(
                    "environment variable `{name}` is not set; set it (e.g. from a Secret) or remove `${{{name}}}`"
                ),
            )],
        },
        Value::Sequence(items) => items
            .iter_mut()
            .enumerate()
            .flat_map(|(i, item)| expand_env(item, &format!("{path}[{i}]"), env, secrets))
            .collect(),
        Value::Mapping(map) => map
            .iter_mut()
            .flat_map(|(key, item)| {
                let key = key.as_str().unwrap_or("?");
                let child = if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
                expand_env(item, &child, env, secrets)
            })
            .collect(),
        Value::Tagged(tagged) => expand_env(&mut tagged.value, path, env, secrets),
        _ => Vec::new(),
    }
}

fn expand_str(text: &str, env: &impl Fn(&str) -> Option<String>, secrets: &mut Secrets) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix('{') {
            let Some(end) = reference.find('}') else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let name = &reference[..end];
            let value = env(name).ok_or_else(|| name.to_owned())?;
            secrets.add(value.clone());
            out.push_str(&value);
            rest = &reference[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Where each path (`targets[0].sources[1].queue`) starts in the YAML text.
pub struct LineIndex {
    lines: BTreeMap<String, usize>,
}

impl LineIndex {
    /// Walks the YAML's events once; a file that does not parse gives an empty index.
    pub fn build(text: &str) -> LineIndex {
        let mut walker = PathWalker::default();
        let mut parser = yaml_rust2::parser::Parser::new_from_str(text);
        // Best effort: on a syntax error the lines seen so far are kept, which is all a message needs.
        let _ = parser.load(&mut walker, false);
        LineIndex { lines: walker.lines }
    }

    /// The line of `path`, or of its nearest ancestor that is in the file.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path.to_owned();
        loop {
            if let Some(line) = self.lines.get(&path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path.truncate(cut);
        }
    }
}

#[derive(Default)]
struct PathWalker {
    stack: Vec<Frame>,
    lines: BTreeMap<String, usize>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl PathWalker {
    /// The path of the value that starts now, advancing the parent's key/index bookkeeping. `None` for a map key.
    fn value_path(&mut self, scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(if path.is_empty() { k } else { format!("{path}.{k}") }),
                None => {
                    *key = Some(scalar.unwrap_or("?").to_owned());
                    None
                }
            },
        }
    }

    fn key_path(&self) -> Option<String> {
        match self.stack.last() {
            Some(Frame::Map { path, key: Some(k) }) => {
                Some(if path.is_empty() { k.clone() } else { format!("{path}.{k}") })
            }
            _ => None,
        }
    }
}

impl yaml_rust2::parser::MarkedEventReceiver for PathWalker {
    fn on_event(&mut self, event: yaml_rust2::parser::Event, mark: yaml_rust2::scanner::Marker) {
        use yaml_rust2::parser::Event;
        match event {
            Event::Scalar(text, ..) => {
                if let Some(path) = self.value_path(Some(&text)).or_else(|| self.key_path()) {
                    self.lines.entry(path).or_insert(mark.line());
                }
            }
            Event::Alias(_) => {
                self.value_path(None);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.value_path(None).unwrap_or_default();
                self.lines.entry(path.clone()).or_insert(mark.line());
                self.stack.push(match event {
                    Event::MappingStart(..) => Frame::Map { path, key: None },
                    _ => Frame::Seq { path, next: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
