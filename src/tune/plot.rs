//! `tune --plot FILE.svg`: every setting `tune` tried, as cost against wait, with the objective and the frontier.
//!
//! One point per trial: replica-seconds across, the objective's wait statistic up. Trials that meet the objective
//! are filled, the others hollow; the frontier joins the trials no other trial beats on both axes, so the plot shows
//! what each second of wait costs on this trace, and where the configured and the chosen settings sit on it.

use std::fmt::Write;

use super::{Trial, Tuning, WaitStatistic};
use crate::sim::frontier::{CostWaitFrame, pareto};
use crate::sim::plot::{escape, short_number, svg_start};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 52.0;

/// The trials no other trial beats on both cost and wait, cheapest first.
pub fn frontier(trials: &[Trial]) -> Vec<Trial> {
    pareto(trials, |t| t.replica_seconds, |t| t.wait_s)
}

/// The SVG document for a tuning on `trace`.
pub fn render(trace: &str, tuning: &Tuning) -> String {
    let statistic = match tuning.slo.statistic {
        WaitStatistic::P95 => "p95 wait (s)",
        WaitStatistic::P99 => "p99 wait (s)",
        WaitStatistic::Max => "max wait (s)",
    };
    let cost_peak = tuning.trials.iter().map(|t| t.replica_seconds).fold(0.0, f64::max);
    let wait_peak = tuning.trials.iter().map(|t| t.wait_s).fold(tuning.slo.limit_s, f64::max);
    let frame = CostWaitFrame::new(LEFT, TOP, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM, cost_peak, wait_peak);
    let (x, y) = (|v: f64| frame.x(v), |v: f64| frame.y(v));

    let mut svg = svg_start(WIDTH, HEIGHT);
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">tune on {}: {} settings tried</text>",
        escape(trace),
        tuning.trials.len()
    );
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"40\" fill=\"#555\">filled: meets {} &lt;= {}s · hollow: misses · line: the frontier · \
         square: configured · ring: chosen</text>",
        statistic.trim_end_matches(" (s)"),
        short_number(tuning.slo.limit_s)
    );
    frame.axes(&mut svg, statistic);
    let limit = y(tuning.slo.limit_s);
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{limit:.1}\" x2=\"{:.1}\" y2=\"{limit:.1}\" stroke=\"#d62728\" \
         stroke-dasharray=\"6 4\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d62728\" text-anchor=\"end\">objective</text>",
        frame.right(),
        frame.right() - 4.0,
        limit - 5.0
    );
    let line: Vec<String> =
        frontier(&tuning.trials).iter().map(|t| format!("{:.1},{:.1}", x(t.replica_seconds), y(t.wait_s))).collect();
    let _ = writeln!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>",
        line.join(" ")
    );
    for trial in &tuning.trials {
        let fill = if trial.meets { "#1f77b4" } else { "white" };
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{fill}\" stroke=\"#1f77b4\"><title>{}</title></circle>",
            x(trial.replica_seconds),
            y(trial.wait_s),
            escape(&describe(trial))
        );
    }
    let (cx, cy) = (x(tuning.configured.replica_seconds), y(tuning.configured.wait_s));
    let _ = writeln!(
        svg,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"11\" height=\"11\" fill=\"none\" stroke=\"#333\" stroke-width=\"1.5\"/>",
        cx - 5.5,
        cy - 5.5
    );
    if let Some(best) = &tuning.best {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"8\" fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"2\"/>",
            x(best.replica_seconds),
            y(best.wait_s)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A trial's settings and result, as its tooltip.
fn describe(trial: &Trial) -> String {
    let s = &trial.settings;
    let max_wait = s.max_wait_s.map_or(String::new(), |m| format!(", maxWait {m}s"));
    let idle_first = if s.idle_first { ", idle first" } else { "" };
    format!(
        "backlogPerWorker {}{max_wait}, scale-down window {}s{idle_first}: {:.1}s, {:.0} replica-seconds",
        s.backlog_per_worker, s.scale_down_window_s, trial.wait_s, trial.replica_seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::{Settings, Slo};

    fn trial(replica_seconds: f64, wait_s: f64, meets: bool) -> Trial {
        let settings = Settings {
            backlog_per_worker: replica_seconds,
            max_wait_s: None,
            scale_down_window_s: 60,
            idle_first: false,
        };
        Trial { settings, wait_s, replica_seconds, meets }
    }

    #[test]
    fn the_frontier_keeps_only_trials_nothing_beats_on_both_axes() {
        let trials =
            [trial(100.0, 50.0, false), trial(200.0, 20.0, true), trial(150.0, 60.0, false), trial(300.0, 20.0, true)];
        let frontier: Vec<(f64, f64)> = frontier(&trials).iter().map(|t| (t.replica_seconds, t.wait_s)).collect();
        assert_eq!(frontier, [(100.0, 50.0), (200.0, 20.0)]);
    }

    #[test]
    fn draws_every_trial_the_objective_and_the_chosen_one() {
        let trials = vec![trial(100.0, 50.0, false), trial(200.0, 20.0, true), trial(300.0, 10.0, true)];
        let slo: Slo = "p99_wait<=30s".parse().expect("valid");
        let tuning = Tuning { slo, configured: trials[2], best: Some(trials[1]), trials };
        let svg = render("steady", &tuning);
        assert_eq!(svg.matches("<circle").count(), 3 + 1, "one per trial and the ring of the chosen one");
        assert_eq!(svg.matches("fill=\"white\" stroke=\"#1f77b4\"").count(), 1, "one hollow: the trial that misses");
        assert!(svg.contains(">objective</text>") && svg.contains("p99 wait (s)"));
        assert!(svg.contains("backlogPerWorker 200, scale-down window 60s: 20.0s, 200 replica-seconds"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }
}
