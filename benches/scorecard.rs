//! The scorecard: every built-in trace with queue-scaler's default policy and every baseline, written to
//! `docs/scorecard/` as a markdown table (`README.md`) and one plot per trace; then quiet scale-down next to
//! idle-first on every trace (`quiet.md`).
//!
//! It is a bench rather than a test because it is a measurement, not a pass/fail check: the goals it reports are
//! what queue-scaler's defaults are tuned against, and a missed goal is shown with its numbers. Run it with
//! `cargo bench --bench scorecard`, or without the release build with `cargo test --bench scorecard -- --bench`
//! (the simulation is deterministic, so both write the same numbers; `-- --out DIR` writes elsewhere). Under a
//! plain `cargo test` or `cargo nextest` it lists no tests and does nothing.

use std::path::PathBuf;
use std::time::Instant;

use queue_scaler::sim::baseline::Baseline;
use queue_scaler::sim::compare::{Setup, compare};
use queue_scaler::sim::frontier::{self, TraceFrontier};
use queue_scaler::sim::quiet_score::{self, QuietRow};
use queue_scaler::sim::run::{DEFAULT_CONFIG, default_config};
use queue_scaler::sim::scorecard::{TraceScore, markdown};
use queue_scaler::sim::{BUILTIN, WorldSettings, builtin, plot};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test`/`nextest` run bench targets without `--bench` (nextest first with `--list`): nothing to do.
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        return Ok(());
    }
    let out = match args.iter().position(|a| a == "--out") {
        Some(i) => PathBuf::from(args.get(i + 1).ok_or("--out needs a directory")?),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/scorecard"),
    };
    std::fs::create_dir_all(&out)?;

    let config = default_config();
    let target = &config.targets[0];
    let settings = WorldSettings { initial_replicas: target.min_replicas, ..WorldSettings::default() };
    let mut scores = Vec::new();
    let mut frontiers = Vec::new();
    for (name, _) in BUILTIN {
        let started = Instant::now();
        let jobs = builtin(name).ok_or("a built-in trace is missing")?;
        let setup = Setup {
            trace: (*name).to_owned(),
            jobs: jobs.clone(),
            target,
            poll_interval: config.poll_interval,
            settings: settings.clone(),
            baselines: Baseline::ALL.to_vec(),
        };
        let comparison = compare(setup, &mut |_| {})?;
        std::fs::write(out.join(format!("{name}.svg")), plot::render(name, &comparison.outcomes))?;
        let report = |policy: &str| comparison.outcomes.iter().map(|o| &o.report).find(|r| r.name == policy);
        let ours = comparison.outcomes.first().map(|o| &o.report).ok_or("queue-scaler did not run")?;
        let frontier = TraceFrontier::measure(name, &jobs, target, &settings, ours, report(Baseline::Oracle.name()));
        std::fs::write(out.join(format!("frontier-{name}.svg")), frontier::svg(&frontier))?;
        frontiers.push(frontier);
        eprintln!("{name}: {} jobs, {:.1} s", jobs.len(), started.elapsed().as_secs_f64());
        scores.push(TraceScore::measure(comparison, &jobs, &settings, target.max_replicas));
    }
    let text = markdown(&scores, &preamble(&settings));
    std::fs::write(out.join("README.md"), &text)?;
    println!("{text}");
    let text = frontier::markdown(&frontiers, &frontier_preamble());
    std::fs::write(out.join("frontier.md"), &text)?;
    println!("{text}");

    let mut rows = Vec::new();
    for (name, _) in BUILTIN {
        let jobs = builtin(name).ok_or("a built-in trace is missing")?;
        for &mode in quiet_score::MODES {
            rows.push(QuietRow::measure(name, mode, &jobs)?);
        }
    }
    let text = quiet_score::markdown(&rows, &quiet_preamble());
    std::fs::write(out.join("quiet.md"), &text)?;
    println!("{text}");
    Ok(())
}

fn frontier_preamble() -> String {
    format!(
        "Generated with the scorecard (`cargo test --bench scorecard -- --bench`), in the same world as \
         [README.md](README.md). One HPA setting is not a fair opponent, since a user would tune it: here `hpa` and \
         `keda` run at every `backlogPerWorker` of {:?} (everything else as in the scorecard), and each traces a \
         frontier of p99 wait against replica-seconds. queue-scaler's default (one config, the same on every trace) \
         is judged by what each frontier costs at queue-scaler's own p99 wait, interpolated between the two settings \
         on either side of it. Below 1 queue-scaler is cheaper than any setting of that baseline at equal p99; above \
         1 some setting of that baseline, chosen for this trace in hindsight, would have been cheaper. Scale events \
         are every change of the replica count.",
        frontier::SETTINGS
    )
}

fn quiet_preamble() -> String {
    format!(
        "Generated with the scorecard (`cargo test --bench scorecard -- --bench`). Each built-in trace runs twice per \
         mode through the same simulated queue and Deployment: once with `scaleDown: {{ idleFirst: true }}`, once \
         with `scaleDown: {{ quiet: true, quietTimeout: {} }}`. The quietTimeout is longer than the longest job of \
         any trace (`long-jobs` runs up to 40 minutes): at the 30m default, quiet would time out on those jobs and \
         cut them. Goals (issue 14): 0 interrupted jobs with quiet, at ≤ {}× idle-first's replica-seconds. \
         `interrupted` counts jobs whose run was cut short because their pod was removed. The configs (latency \
         mode adds `latencyTarget: {{ maxWait: 90s }}`):\n\n```yaml\n{}```",
        quiet_score::QUIET_TIMEOUT,
        quiet_score::QUIET_COST_MULTIPLE,
        quiet_score::config_text("", "{ quiet: true, quietTimeout: 45m }")
    )
}

fn preamble(settings: &WorldSettings) -> String {
    format!(
        "Generated by `cargo bench --bench scorecard` (or `cargo test --bench scorecard -- --bench`): every built-in trace (`queue-scaler simulate --list-traces`) \
         run through the same simulated queue and Deployment by queue-scaler's default policy and by each baseline \
         (`queue-scaler simulate --trace NAME --compare hpa,keda,threshold,oracle` shows one of them). Pods take \
         {:.0} s to start, work on {} job(s) at a time and have {:.0} s to finish their jobs when removed; the \
         Deployment starts at {} replica(s).\n\nqueue-scaler's default policy (the config `simulate` uses without \
         `-c`):\n\n```yaml\n{}```\n\nThe baselines use the same `backlogPerWorker` as their per-replica target and \
         the same `maxReplicas`: `hpa` is the Kubernetes HPA with an External AverageValue metric and its defaults \
         (15 s sync, 10 % tolerance, default `behavior`, at least 1 replica, so its Deployment starts at 1); `keda` is that HPA reading KEDA's \
         value polled every 30 s, plus KEDA's 0 ↔ 1 activation and 300 s cooldown (with queue-scaler's \
         `minReplicas`); `threshold` is the seed's loop (every 10 s, one replica up above the target, one down \
         below 80 % of it); `oracle` knows every job in advance and plans replicas to start each one within the \
         target's `maxWait` (see `src/sim/baseline/oracle.rs`): it is a greedy clairvoyant plan, not a proven \
         optimum. The proven floor is the work itself, shown under each table. Quiet scale-down next to idle-first: \
         [quiet.md](quiet.md). The HPA and KEDA at every backlogPerWorker, as frontiers: [frontier.md](frontier.md).",
        settings.pod_start_delay_s,
        settings.concurrency,
        settings.termination_grace_s,
        settings.initial_replicas,
        DEFAULT_CONFIG
    )
}
