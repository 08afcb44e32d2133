//! The `queue-scaler` command line: parses arguments, sets up logging and signals, and calls into the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
#[cfg(feature = "kube")]
use queue_scaler::agent::cluster::{self, RunOptions, StartError};
#[cfg(feature = "kube")]
use queue_scaler::config::ScaleTargetRef;
use queue_scaler::config::{Config, ConfigError, TargetConfig};
use queue_scaler::redact;
use queue_scaler::replay;
use queue_scaler::sim::baseline::Baseline;
use queue_scaler::sim::compare::{Setup, compare};
use queue_scaler::sim::progress::ProgressBar;
use queue_scaler::sim::{self, run::SimulationError};
#[cfg(feature = "kube")]
use queue_scaler::target::by_hand;
#[cfg(feature = "kube")]
use tokio::sync::watch;

/// Scale queue workers on Kubernetes by their backlog.
///
/// One small agent per namespace reads backlog from RabbitMQ, Kafka, SQS, Pub/Sub or Prometheus, decides a
/// replica count per Deployment with HPA-compatible rules (plus scale to zero, schedules and fallbacks) and writes
/// the Deployment's scale subresource. Start with `queue-scaler simulate` to see it work without a cluster.
#[derive(Parser)]
#[command(version, propagate_version = true, max_term_width = 110)]
struct Cli {
    /// Log format: `text` for people, `json` for log collectors in a cluster.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: poll the sources and keep every target Deployment at the right size.
    ///
    /// Uses the in-cluster ServiceAccount, else KUBECONFIG or ~/.kube/config. Logs go to stderr (RUST_LOG sets the
    /// level, default info). SIGTERM or SIGINT stops it after the current poll; a second signal stops it at once.
    #[cfg(feature = "kube")]
    Run {
        /// The config file (YAML).
        #[arg(short, long, value_name = "FILE", env = "QUEUE_SCALER_CONFIG")]
        config: PathBuf,
        /// Decide and log every decision, but write nothing to the cluster.
        #[arg(long)]
        dry_run: bool,
        /// Poll each target once, then exit.
        #[arg(long)]
        once: bool,
        /// Shadow mode: read and decide beside whatever scales the Deployments now (an HPA, KEDA, a human), write
        /// nothing, and log every decision; allowed on Deployments another autoscaler manages, which is its point.
        #[arg(long)]
        shadow: bool,
        /// With --shadow: append one row per source and poll to this CSV (what the sources saw and the live replica
        /// count), which `replay --observations` reads; it continues after a restart.
        #[arg(long, value_name = "FILE.csv", requires = "shadow")]
        record: Option<PathBuf>,
        /// With --record: rotate the recording to FILE.csv.1 past this size (e.g. 100MB, 2GB, 500KB).
        #[arg(long, value_name = "SIZE", default_value = "100MB", value_parser = parse_size, requires = "record")]
        record_max: u64,
    },
    /// Validate a config file without contacting anything.
    ///
    /// Exits 0 when the config is valid, 2 with one line per problem (FILE:LINE: field: what is wrong, what to do).
    /// Settings that are valid but break a promise in some situations (busy workers that look idle, a Kafka reset
    /// policy that skips messages) print a `FILE:LINE: warning: field: ...` line each, on stderr; they fail the
    /// check only with --strict.
    Check {
        /// The config file (YAML).
        #[arg(short, long, value_name = "FILE", env = "QUEUE_SCALER_CONFIG")]
        config: PathBuf,
        /// Exit 2 on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Set a workload's replica count by hand, optionally holding the agent off it for a while.
    ///
    /// With --hold the workload gets the annotation queue-scaler.io/hold-until; the agent leaves it alone until
    /// then. --release removes the hold. A Deployment by default; --kind and --api-version name any other workload
    /// with a scale subresource, as a target's scaleTargetRef does.
    #[cfg(feature = "kube")]
    Scale {
        /// The workload's name.
        deployment: String,
        /// The workload's kind (e.g. StatefulSet, Rollout).
        #[arg(long, default_value = "Deployment")]
        kind: String,
        /// The kind's GROUP/VERSION (e.g. argoproj.io/v1alpha1).
        #[arg(long, default_value = "apps/v1")]
        api_version: String,
        /// The replica count to set.
        #[arg(long, required_unless_present = "release")]
        replicas: Option<u32>,
        /// Keep the agent off this Deployment for this long (e.g. 30m, 2h; at most 365d).
        #[arg(long, value_parser = parse_hold, conflicts_with = "release")]
        hold: Option<Duration>,
        /// Remove a hold set earlier, handing the Deployment back to the agent.
        #[arg(long)]
        release: bool,
        /// The namespace (default: the kubeconfig context's).
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Run the agent against a simulated queue and Deployment, and report waits and cost.
    ///
    /// Without arguments it runs the built-in `transcoding` trace (a burst on top of a steady load) with the
    /// built-in policy. Time is simulated: hours of traffic take about a second. Every source of the simulated
    /// target reads the simulated queue (waiting plus in-flight jobs) with its own backlogPerWorker. --compare
    /// runs baseline policies on the same jobs: hpa, keda, threshold and oracle (a clairvoyant plan).
    Simulate(SimulateArgs),
    /// Replay recorded observations through a config's decisions: one decision and its reason per tick.
    ///
    /// The observations are a CSV file with the header `time_s,source,backlog` and optionally `in_flight` and
    /// `arrival_rate` columns; `source` is the source's index in the target's `sources` list or its name. Rows
    /// with the same time are one tick; a source without a row in a tick counts as a failed read. Each decision
    /// is assumed applied at once.
    Replay(ReplayArgs),
    /// Search the simulator for the cheapest settings that meet a wait objective, and print them as a config diff.
    ///
    /// Tries backlogPerWorker, latencyTarget.maxWait (in latency mode, and backlog mode instead), the scale-down
    /// window and idle-first removal on a coarse grid, then around the cheapest setting that met the objective; the
    /// configured settings are always tried, so the answer never costs more replica-seconds than they do when they
    /// meet it.
    Tune(TuneArgs),
    /// Turn KEDA ScaledObjects (with their TriggerAuthentications) and autoscaling/v2 HPAs into a config.
    ///
    /// Reads Kubernetes YAML (several documents per file) and prints one target per ScaledObject or HPA on stdout.
    /// Secrets become ${ENV} placeholders with a comment naming the Secret and key; every field without an
    /// equivalent is a `# not imported:` comment and a `FILE:LINE: warning:` line on stderr.
    Import {
        /// The YAML files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Show what a running agent is doing: per target the current and desired count, the rule and reason of the
    /// last decision, each source's last reading or error and its age, holds, fallbacks and leadership.
    ///
    /// Asks the agent's `/status` on its metrics listener, as `kubectl get hpa` does for the HPA: --agent URL, else
    /// `metrics.listen` of -c FILE (an address of all interfaces is asked on 127.0.0.1), else
    /// http://127.0.0.1:9095. In a cluster, `kubectl port-forward` to the agent's pod first.
    #[cfg(feature = "kube")]
    Status {
        /// The agent's metrics address, e.g. http://127.0.0.1:9095.
        #[arg(long, value_name = "URL")]
        agent: Option<String>,
        /// The agent's config file, for its `metrics.listen`.
        #[arg(short, long, value_name = "FILE", env = "QUEUE_SCALER_CONFIG")]
        config: Option<PathBuf>,
        /// Print the JSON the agent serves instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct SimulateArgs {
    /// A config file; its first target (or --deployment) is simulated. Default: a built-in transcoding worker.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Which target of the config to simulate.
    #[arg(long, requires = "config")]
    deployment: Option<String>,
    /// A built-in trace (see --list-traces) or a CSV file with the header `arrival_s,duration_s`.
    #[arg(long, value_name = "NAME|FILE", default_value = "transcoding")]
    trace: String,
    /// How long a new pod takes before it consumes.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pod_start_delay: Duration,
    /// Jobs one pod works on at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// How long a removed pod may finish its jobs before handing them back.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    termination_grace: Duration,
    /// Poll interval; default: the config's pollInterval.
    #[arg(long, value_parser = parse_duration)]
    poll_interval: Option<Duration>,
    /// A stuck consumer: from START for LENGTH (e.g. `15m+10m`) no job makes progress, however many pods run, as
    /// when a downstream service is down. Repeatable.
    #[arg(long, value_name = "START+LENGTH", value_parser = parse_stall)]
    stall: Vec<sim::Stall>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also run these baselines on the same jobs: hpa, keda, threshold, oracle (comma-separated).
    #[arg(long, value_name = "POLICIES", value_delimiter = ',')]
    compare: Vec<Baseline>,
    /// Draw backlog, replicas and wait over time for every policy into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// List the built-in traces and exit.
    #[arg(long)]
    list_traces: bool,
}

#[derive(Args)]
struct ReplayArgs {
    /// The config file (YAML); its first target (or --deployment) decides.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Which target of the config to replay.
    #[arg(long)]
    deployment: Option<String>,
    /// The recorded observations (CSV: time_s,source,backlog[,in_flight][,arrival_rate]).
    #[arg(long, value_name = "FILE.csv")]
    observations: PathBuf,
    /// The replica count before the first tick; default: the target's minReplicas.
    #[arg(long, value_name = "N")]
    initial_replicas: Option<u32>,
    /// The wall time of time_s = 0, for schedules (RFC 3339); default: a Monday, 00:00 UTC.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    start: Option<chrono::DateTime<chrono::Utc>>,
    /// In a shadow recording of several targets, the one to replay (its `target` column).
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// With a shadow recording: write DIR/NAME.md and DIR/NAME.svg per recorded target, the config's replicas
    /// beside the live ones, replica-seconds and estimated waits of both.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Print one JSON object per tick (with --report: per target) instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TuneArgs {
    /// The config file (YAML); its first target (or --deployment) is tuned.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Which target of the config to tune.
    #[arg(long)]
    deployment: Option<String>,
    /// A built-in trace (see `simulate --list-traces`) or a CSV file with the header `arrival_s,duration_s`.
    #[arg(long, value_name = "NAME|FILE", default_value = "transcoding")]
    trace: String,
    /// Tune on your own traffic instead of a trace: a shadow recording (`run --shadow --record`) or replay
    /// observations. A trace is fitted to it first (arrivals from the recorded rates, every job lasting the job
    /// duration learned from it) and the output says how.
    #[arg(long, value_name = "FILE.csv", conflicts_with = "trace")]
    observations: Option<PathBuf>,
    /// In a recording of several targets, the one to tune on (its `target` column).
    #[arg(long, value_name = "NAME", requires = "observations")]
    target: Option<String>,
    /// The objective: p99_wait, p95_wait or max_wait, `<=`, a duration (e.g. `p99_wait<=2m`).
    #[arg(long, value_name = "OBJECTIVE")]
    slo: queue_scaler::tune::Slo,
    /// Draw every setting tried, cost against wait, with the objective and the frontier, into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|_| format!("`{text}` is not a duration; write e.g. 30m or 2h"))
}

/// `START+LENGTH`, both durations since the start of the trace.
fn parse_stall(text: &str) -> Result<sim::Stall, String> {
    let Some((start, length)) = text.split_once('+') else {
        return Err(format!("`{text}` is not START+LENGTH; write e.g. 15m+10m"));
    };
    let (start, length) = (parse_duration(start.trim())?, parse_duration(length.trim())?);
    if length.is_zero() {
        return Err(format!("`{text}` lasts no time; give the stall a length, e.g. 15m+10m"));
    }
    let from_s = start.as_secs_f64();
    Ok(sim::Stall { from_s, until_s: from_s + length.as_secs_f64() })
}

#[cfg(feature = "kube")]
/// A size such as `100MB`, `2GB`, `500KB` or a number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let (number, unit) = match upper.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => upper.split_at(at),
        None => (upper.as_str(), ""),
    };
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KB" | "K" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        _ => return Err(format!("`{text}` is not a size; write e.g. 100MB, 2GB or 500KB")),
    };
    let bytes = number.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)).filter(|n| *n >= 4096);
    bytes.ok_or_else(|| format!("`{text}` is not a size of at least 4KB; write e.g. 100MB"))
}

#[cfg(feature = "kube")]
/// The longest `--hold`: a hold is for a while; a Deployment to leave alone for good belongs out of the config.
const LONGEST_HOLD: Duration = Duration::from_secs(365 * 24 * 3600);

#[cfg(feature = "kube")]
fn parse_hold(text: &str) -> Result<Duration, String> {
    let hold = parse_duration(text)?;
    if hold > LONGEST_HOLD {
        return Err(format!(
            "`{text}` is longer than a year; hold for at most 365d, or remove the target from the config to leave \
             the Deployment alone for good"
        ));
    }
    Ok(hold)
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("`{text}` is not an RFC 3339 time; write e.g. 2026-11-23T08:00:00Z"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The simulator runs the agent's loop thousands of times; its per-decision logs would drown the report.
    let quiet = match cli.command {
        Command::Simulate(_) | Command::Replay(_) | Command::Tune(_) | Command::Import { .. } => true,
        #[cfg(feature = "kube")]
        Command::Status { .. } => true,
        _ => false,
    };
    let default_level = if quiet { "warn" } else { "info" };
    init_logging(cli.log_format, default_level);
    // Several client libraries link rustls; name the one crypto provider so none has to guess.
    #[cfg(any(feature = "kube", feature = "rabbitmq", feature = "sqs", feature = "pubsub", feature = "prometheus"))]
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::Check { config, strict } => match Config::load(&config) {
            Ok(config) if !config.not_built_in.is_empty() => not_built_in(&config),
            Ok(config) => {
                for warning in &config.warnings {
                    eprintln!("{}", warning.as_warning());
                }
                if strict && !config.warnings.is_empty() {
                    eprintln!("{}: {} warning(s), refused by --strict", config_label(&config), config.warnings.len());
                    return ExitCode::from(2);
                }
                println!("{}: ok ({} target(s))", config_label(&config), config.targets.len());
                ExitCode::SUCCESS
            }
            Err(error) => config_failure(&error),
        },
        #[cfg(feature = "kube")]
        Command::Run { config: path, dry_run, once, shadow, record, record_max } => {
            let config = match Config::load(&path) {
                Ok(config) if !config.not_built_in.is_empty() => return not_built_in(&config),
                Ok(config) => config,
                Err(error) => return config_failure(&error),
            };
            for warning in &config.warnings {
                tracing::warn!("{}", warning.as_warning());
            }
            redact::remember(&config.secrets);
            let shadow = shadow.then(|| record.map(|file| (file, record_max)));
            let options = RunOptions { dry_run, once, config_path: Some(path), shadow };
            match runtime().block_on(run(config, options)) {
                // A config that would scale the agent's own Deployment away is a config error, found in the cluster.
                Err(error) if matches!(error.downcast_ref(), Some(StartError::ScalesItself(_))) => {
                    eprintln!("queue-scaler: {error:#}");
                    ExitCode::from(2)
                }
                result => outcome(result),
            }
        }
        Command::Simulate(args) => print_or_fail(simulate(&args)),
        Command::Replay(args) => print_or_fail(replay(&args)),
        Command::Import { files } => print_or_fail(import(&files)),
        Command::Tune(args) => print_or_fail(tune(&args)),
        #[cfg(feature = "kube")]
        Command::Status { agent, config, json } => match status_url(agent, config.as_deref()) {
            // An agent that does not answer is not bad input: exit 1, as a failed `run` does.
            Ok(url) => match runtime().block_on(status(&url, json)) {
                Ok(table) => print_or_fail(Ok(table)),
                Err(error) => {
                    eprintln!("queue-scaler: {}", describe(&error));
                    ExitCode::FAILURE
                }
            },
            Err(error) => config_failure(&error),
        },
        #[cfg(feature = "kube")]
        Command::Scale { deployment, kind, api_version, replicas, hold, release, namespace } => {
            let workload = ScaleTargetRef { api_version, kind, name: deployment };
            outcome(runtime().block_on(async {
                let client = kube::Client::try_default().await.context("cannot find Kubernetes credentials")?;
                let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
                // `parse_hold` keeps it within a year, so neither the conversion nor the sum can overflow.
                let hold_until = hold.and_then(|h| chrono::Duration::from_std(h).ok()).map(|h| chrono::Utc::now() + h);
                let change = by_hand::ManualChange { replicas, hold_until, release };
                by_hand::change_by_hand(client, &namespace, &workload, &change)
                    .await
                    .with_context(|| format!("cannot scale {} {namespace}/{}", workload.kind, workload.name))?;
                println!("{}", change.describe(&namespace, &workload));
                Ok(())
            }))
        }
    }
}

#[cfg(feature = "kube")]
/// Where `queue-scaler status` asks: `--agent`, else the config's metrics listener, else the default one.
fn status_url(agent: Option<String>, config: Option<&std::path::Path>) -> Result<String, ConfigError> {
    if let Some(agent) = agent {
        let agent = if agent.contains("://") { agent } else { format!("http://{agent}") };
        return Ok(format!("{}/status", agent.trim_end_matches('/')));
    }
    let listen = match config {
        Some(path) => Config::load(path)?.metrics.listen_addr(),
        None => None,
    };
    let mut addr = listen.unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 9095)));
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!("http://{addr}/status"))
}

#[cfg(feature = "kube")]
async fn status(url: &str, json: bool) -> anyhow::Result<String> {
    let unreachable =
        || format!("cannot ask the agent at {url}; is it running there? Name its metrics address with --agent");
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(unreachable)?
        .error_for_status()
        .with_context(unreachable)?;
    let text = response.text().await.with_context(unreachable)?;
    let status: queue_scaler::agent::status::AgentStatus =
        serde_json::from_str(&text).with_context(|| format!("{url} answered, but not with an agent's status"))?;
    Ok(if json { format!("{}\n", serde_json::to_string_pretty(&status)?) } else { status.table() })
}

fn simulate(args: &SimulateArgs) -> anyhow::Result<String> {
    if args.list_traces {
        return Ok(sim::BUILTIN.iter().map(|(name, about)| format!("{name:<14} {about}\n")).collect());
    }
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => sim::run::default_config(),
    };
    let target = pick_target(&config, args.deployment.as_deref())?;
    let setup = Setup {
        trace: args.trace.clone(),
        jobs: sim::run::load_trace(&args.trace)?,
        target,
        poll_interval: args.poll_interval.unwrap_or(config.poll_interval),
        settings: sim::WorldSettings {
            pod_start_delay_s: args.pod_start_delay.as_secs_f64(),
            concurrency: args.concurrency,
            termination_grace_s: args.termination_grace.as_secs_f64(),
            initial_replicas: target.min_replicas,
            stalls: args.stall.clone(),
            ..sim::WorldSettings::default()
        },
        baselines: args.compare.clone(),
    };
    let mut bar = ProgressBar::on_stderr(format!("simulating {}", args.trace));
    let comparison = compare(setup, &mut |fraction| bar.update(fraction))?;
    bar.finish();
    if let Some(path) = &args.plot {
        std::fs::write(path, sim::plot::render(&args.trace, &comparison.outcomes))
            .with_context(|| format!("cannot write the plot to {}", path.display()))?;
    }
    let report = comparison.report();
    Ok(if args.json {
        serde_json::to_string_pretty(&report).expect("a report serializes") + "\n"
    } else {
        sim::render_table(&report)
    })
}

fn replay(args: &ReplayArgs) -> anyhow::Result<String> {
    let config = Config::load(&args.config)?;
    let file = args.observations.display().to_string();
    let text = std::fs::read_to_string(&args.observations).with_context(|| format!("cannot read {file}"))?;
    let start = args.start.unwrap_or_else(sim::run::start_of_simulated_time);
    // With --report and no --target, every recorded target is reported; otherwise one is replayed.
    let recorded = match (&args.report, &args.target) {
        (Some(_), None) => replay::recorded_targets(&text).with_context(|| file.clone())?,
        _ => {
            replay::recorded_target(&text, args.target.as_deref()).with_context(|| file.clone())?.into_iter().collect()
        }
    };
    let mut output = String::new();
    for name in recorded.iter().map(|n| Some(n.as_str())).chain(recorded.is_empty().then_some(None)) {
        // The config's target for a recorded workload is the one of that name, else --deployment or the first.
        let by_name = name.and_then(|n| config.targets.iter().find(|t| t.name() == n && args.deployment.is_none()));
        let target = match by_name {
            Some(target) => target,
            None => pick_target(&config, args.deployment.as_deref())?,
        };
        let ticks = replay::read_recording(&text, target, name).with_context(|| file.clone())?;
        let decisions = replay::replay(target, &ticks, args.initial_replicas.unwrap_or(target.min_replicas), start);
        let Some(dir) = &args.report else {
            output = if args.json {
                decisions.iter().map(|d| serde_json::to_string(d).expect("a decision serializes") + "\n").collect()
            } else {
                replay::render_lines(&decisions)
            };
            continue;
        };
        let name = name.unwrap_or(target.name());
        let report = replay::report::compare(name, target, &ticks, &decisions).with_context(|| file.clone())?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (md, svg) = (dir.join(format!("{name}.md")), dir.join(format!("{name}.svg")));
        std::fs::write(&md, report.markdown(&format!("{name}.svg")))
            .and_then(|()| std::fs::write(&svg, report.svg()))
            .with_context(|| format!("cannot write the report into {}", dir.display()))?;
        output.push_str(&if args.json {
            serde_json::to_string(&report).expect("a report serializes") + "\n"
        } else {
            format!(
                "{name}: {} and {}; queue-scaler {:.0} replica-seconds, live {:.0} (waits in the report are \
                 estimates)\n",
                md.display(),
                svg.display(),
                report.queue_scaler.replica_seconds,
                report.live.replica_seconds
            )
        });
    }
    Ok(output)
}

fn tune(args: &TuneArgs) -> anyhow::Result<String> {
    use queue_scaler::tune::{Settings, Simulation};
    let config = Config::load(&args.config)?;
    let target = pick_target(&config, args.deployment.as_deref())?;
    let mut out = String::new();
    let (trace, jobs) = match &args.observations {
        None => (format!("trace {}", args.trace), sim::run::load_trace(&args.trace)?),
        Some(path) => {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {file}"))?;
            let recorded = replay::recorded_target(&text, args.target.as_deref()).with_context(|| file.clone())?;
            let ticks = replay::read_recording(&text, target, recorded.as_deref()).with_context(|| file.clone())?;
            let fitted = queue_scaler::tune::fit::fit(target, &ticks).with_context(|| file.clone())?;
            out.push_str(&format!("{file}: {}\n", fitted.how));
            (format!("recording {file}"), fitted.jobs)
        }
    };
    let settings = sim::WorldSettings::default();
    let simulation = Simulation { target, jobs: &jobs, poll_interval: config.poll_interval, settings };
    let mut bar = ProgressBar::on_stderr(format!("tuning on {trace}"));
    let tuning = queue_scaler::tune::tune(&simulation, args.slo, &mut |fraction| bar.update(fraction))?;
    bar.finish();
    if let Some(path) = &args.plot {
        std::fs::write(path, queue_scaler::tune::plot::render(&trace, &tuning))
            .with_context(|| format!("cannot write the plot to {}", path.display()))?;
    }
    let (slo, configured) = (&tuning.slo, &tuning.configured);
    out.push_str(&format!(
        "{trace}, objective {:?} wait <= {}s: {} settings simulated\nconfigured: {:.1}s, {:.0} replica-seconds{}\n",
        slo.statistic,
        slo.limit_s,
        tuning.trials.len(),
        configured.wait_s,
        configured.replica_seconds,
        if configured.meets { "" } else { " (misses the objective)" }
    ));
    let best = tuning.best.context("no setting tried met the objective; try a looser one or a higher maxReplicas")?;
    out.push_str(&format!("tuned:      {:.1}s, {:.0} replica-seconds\n", best.wait_s, best.replica_seconds));
    if best.settings == Settings::of(target) {
        out.push_str("the configured settings are the cheapest found that meet it; nothing to change\n");
    } else {
        let file = args.config.display();
        out.push_str(&format!("--- {file}\n+++ {file} (tuned)\n{}", best.settings.diff(&configured.settings, target)));
        if best.settings.idle_first && !configured.settings.idle_first {
            out.push_str(
                "note: scaleDown.idleFirst asks each worker's /status (the drain library's endpoint, on \
                 scaleDown.workerMetricsPort) before a scale-down; without it the ReplicaSet removes busy workers and \
                 their jobs start over, and this result does not hold\n",
            );
        }
        if best.settings.max_wait_s.is_none() && configured.settings.max_wait_s.is_some() {
            out.push_str(
                "note: without latencyTarget the target is in backlog mode: backlogPerWorker alone sets the count\n",
            );
        }
    }
    Ok(out)
}

fn import(files: &[PathBuf]) -> anyhow::Result<String> {
    let texts = files
        .iter()
        .map(|f| {
            Ok((
                f.display().to_string(),
                std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let imported = queue_scaler::import::import(&texts)?;
    for warning in &imported.warnings {
        eprintln!("{warning}");
    }
    Ok(imported.config)
}

/// The target named by `--deployment`, else the config's first.
fn pick_target<'a>(config: &'a Config, deployment: Option<&str>) -> Result<&'a TargetConfig, SimulationError> {
    match deployment {
        Some(name) => config.targets.iter().find(|t| t.name() == name),
        None => config.targets.first(),
    }
    .ok_or_else(|| SimulationError::NoSuchTarget(deployment.unwrap_or_default().to_owned()))
}

/// Prints a command's output, or its error with exit code 2 (bad input: config, trace, observations).
fn print_or_fail(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(output) => {
            match std::io::stdout().lock().write_all(output.as_bytes()) {
                // `simulate --json | head` closes the pipe early: the reader has what it wanted.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("queue-scaler: cannot write the output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(error) => {
            eprintln!("{}", describe(&error));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, each cause shown once (a wrapped config error repeats its message).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

fn config_label(config: &Config) -> String {
    match &config.namespace {
        Some(ns) => format!("namespace {ns}"),
        None => "config".to_owned(),
    }
}

/// A valid config with sources this build cannot read: as bad input as a wrong field, for `check` and `run`.
fn not_built_in(config: &Config) -> ExitCode {
    for problem in &config.not_built_in {
        eprintln!("{problem}");
    }
    ExitCode::from(2)
}

fn config_failure(error: &ConfigError) -> ExitCode {
    eprintln!("{error}");
    ExitCode::from(2)
}

#[cfg(feature = "kube")]
fn outcome(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("queue-scaler: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "kube")]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

#[cfg(feature = "kube")]
async fn run(config: Config, options: RunOptions) -> anyhow::Result<()> {
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        stop_on_signals(stop).await;
    });
    cluster::run(config, options, shutdown).await?;
    Ok(())
}

#[cfg(feature = "kube")]
/// The first SIGTERM/SIGINT asks the loops to stop after their current poll; a second one exits at once.
async fn stop_on_signals(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop the agent with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received; stopping after the current poll");
    let _ = stop.send(true);
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal; exiting now");
    std::process::exit(130);
}

/// Client libraries that log a broker's outage themselves, lapin two or three ERROR lines per failed reconnect: the
/// agent reports a failing source once per interval, with the target and the source named, so theirs are off
/// unless `RUST_LOG` names them (`RUST_LOG=info,lapin=debug`).
const QUIET_LIBRARIES: &[&str] =
    &["lapin", "amq_protocol", "librdkafka", "rdkafka", "aws_smithy_runtime", "aws_config", "hyper_util"];

/// The log filter: `default_level`, the client libraries off, then `RUST_LOG`, whose directives win (a later
/// directive for the same target replaces an earlier one; invalid ones are skipped).
fn log_filter(default_level: &str, rust_log: Option<&str>) -> String {
    let quiet = QUIET_LIBRARIES.iter().map(|library| format!("{library}=off"));
    std::iter::once(default_level.to_owned())
        .chain(quiet)
        .chain(rust_log.map(str::to_owned))
        .collect::<Vec<_>>()
        .join(",")
}

fn init_logging(format: LogFormat, default_level: &str) {
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let filter = tracing_subscriber::EnvFilter::new(log_filter(default_level, rust_log.as_deref()));
    // Colours only for a person at a terminal; log collectors and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| redact::ScrubbingWriter::new(std::io::stderr()))
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
