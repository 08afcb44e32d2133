//! The frontier scorecard: the HPA and KEDA at every sensible `backlogPerWorker`, against queue-scaler's default.
//!
//! One HPA setting is not a fair opponent: a user would tune it. Run at many targets, each baseline traces a
//! frontier of p99 wait against replica-seconds — the best it can do at each wait. queue-scaler's default is then
//! judged by what the baseline's frontier costs at queue-scaler's own p99 wait: interpolated between the two
//! settings on either side of it, "unreachable" when no setting waits that little, and the cheapest setting's cost
//! when even that one waits no longer (the frontier is then at most that). Scale events go in every table, since a
//! cheaper setting that flaps is no bargain.

use std::fmt::Write;

use serde::Serialize;

use super::baseline::Baseline;
use super::compare::run_baseline;
use super::plot::{escape, nice_axis, short_number, svg_start};
use super::report::PolicyReport;
use super::trace::Job;
use super::world::WorldSettings;
use crate::config::TargetConfig;

/// The `backlogPerWorker` settings each baseline runs at.
pub const SETTINGS: [f64; 11] = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0];

/// The baselines a frontier is drawn for.
pub const BASELINES: [Baseline; 2] = [Baseline::Hpa, Baseline::Keda];

/// One run: its setting (when it is one of a baseline's) and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub backlog_per_worker: Option<f64>,
    pub p99_wait_s: f64,
    pub replica_seconds: f64,
    pub scale_events: u64,
}

impl Point {
    /// The numbers of a run.
    pub fn of(report: &PolicyReport, backlog_per_worker: Option<f64>) -> Point {
        Point {
            backlog_per_worker,
            p99_wait_s: report.p99_wait_s,
            replica_seconds: report.replica_seconds,
            scale_events: report.scale_events,
        }
    }
}

/// A baseline at every setting of [`SETTINGS`].
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub baseline: Baseline,
    pub points: Vec<Point>,
}

/// What a frontier costs at a given p99 wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AtWait {
    /// Interpolated between the frontier's settings on either side.
    Cost(f64),
    /// Even the frontier's cheapest setting waits no longer: the frontier costs at most this there.
    AtMost(f64),
    /// No setting waits that little; the one that waits least, if any ran.
    Unreachable(Option<Point>),
}

impl Curve {
    /// The settings no other setting beats on both wait and cost, cheapest first (waits falling).
    pub fn frontier(&self) -> Vec<Point> {
        pareto(&self.points, |p| p.replica_seconds, |p| p.p99_wait_s)
    }

    /// The frontier's replica-seconds at p99 wait `wait_s`.
    pub fn cost_at(&self, wait_s: f64) -> AtWait {
        let frontier = self.frontier();
        let Some(cheapest) = frontier.first() else { return AtWait::Unreachable(None) };
        if wait_s >= cheapest.p99_wait_s {
            return AtWait::AtMost(cheapest.replica_seconds);
        }
        for pair in frontier.windows(2) {
            let (looser, tighter) = (pair[0], pair[1]);
            if (tighter.p99_wait_s..=looser.p99_wait_s).contains(&wait_s) {
                let share = (looser.p99_wait_s - wait_s) / (looser.p99_wait_s - tighter.p99_wait_s);
                return AtWait::Cost(
                    looser.replica_seconds + share * (tighter.replica_seconds - looser.replica_seconds),
                );
            }
        }
        AtWait::Unreachable(frontier.last().copied())
    }
}

/// The items no other item beats on both `cost` and `wait`, cheapest first (waits falling).
pub fn pareto<T: Clone>(items: &[T], cost: impl Fn(&T) -> f64, wait: impl Fn(&T) -> f64) -> Vec<T> {
    let mut sorted = items.to_vec();
    sorted.sort_by(|a, b| cost(a).total_cmp(&cost(b)).then(wait(a).total_cmp(&wait(b))));
    let mut best = f64::INFINITY;
    sorted.retain(|item| {
        let better = wait(item) < best;
        best = best.min(wait(item));
        better
    });
    sorted
}

/// One trace: queue-scaler's default, the oracle, and each baseline's curve.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFrontier {
    pub trace: String,
    pub ours: Point,
    pub oracle: Option<Point>,
    pub curves: Vec<Curve>,
}

impl TraceFrontier {
    /// Runs every baseline of [`BASELINES`] at every setting of [`SETTINGS`] on `jobs`, with `target`'s other
    /// settings; `ours` and `oracle` are the runs the scorecard already made.
    pub fn measure(
        trace: &str,
        jobs: &[Job],
        target: &TargetConfig,
        settings: &WorldSettings,
        ours: &PolicyReport,
        oracle: Option<&PolicyReport>,
    ) -> TraceFrontier {
        let configured = target.sources.first().map(|s| s.backlog_per_worker);
        let curves = BASELINES
            .iter()
            .map(|&baseline| Curve {
                baseline,
                points: SETTINGS
                    .iter()
                    .filter_map(|&backlog_per_worker| {
                        let mut at = target.clone();
                        for source in &mut at.sources {
                            source.backlog_per_worker = backlog_per_worker;
                        }
                        let outcome = run_baseline(baseline, jobs.to_vec(), &at, settings)?;
                        Some(Point::of(&outcome.report, Some(backlog_per_worker)))
                    })
                    .collect(),
            })
            .collect();
        TraceFrontier {
            trace: trace.to_owned(),
            ours: Point::of(ours, configured),
            oracle: oracle.map(|o| Point::of(o, None)),
            curves,
        }
    }
}

/// The frontier scorecard as Markdown: a summary over traces, then every run of every trace.
pub fn markdown(traces: &[TraceFrontier], preamble: &str) -> String {
    let mut md = format!("# Frontier scorecard\n\n{preamble}\n\n");
    md.push_str(
        "| trace | queue-scaler p99 wait (s) | replica-seconds | scale events | hpa frontier at that wait | \
         queue-scaler ÷ it | keda frontier at that wait | queue-scaler ÷ it | oracle replica-seconds |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for t in traces {
        let _ = write!(
            md,
            "| {} | {:.1} | {:.0} | {} |",
            t.trace, t.ours.p99_wait_s, t.ours.replica_seconds, t.ours.scale_events
        );
        for baseline in BASELINES {
            let at = t.curves.iter().find(|c| c.baseline == baseline).map(|c| c.cost_at(t.ours.p99_wait_s));
            let _ = write!(md, " {} | {} |", cost_text(at), ratio_text(t.ours.replica_seconds, at));
        }
        let _ = writeln!(md, " {} |", t.oracle.map_or("—".to_owned(), |o| format!("{:.0}", o.replica_seconds)));
    }
    md.push_str(
        "\n\"≤ N\": even the baseline's cheapest setting waits no longer than queue-scaler, so its frontier costs at \
         most N there and the ratio is a lower bound; \"unreachable\": no setting tried waits that little (the one that \
         waits least is shown), so queue-scaler's point lies below the whole frontier.\n",
    );
    for t in traces {
        let _ = writeln!(md, "\n## {}\n\n![{0}](frontier-{0}.svg)\n", t.trace);
        md.push_str(
            "| policy | backlogPerWorker | p99 wait (s) | replica-seconds | scale events | on the frontier |\n",
        );
        md.push_str("|---|---:|---:|---:|---:|---|\n");
        row(&mut md, "queue-scaler (default)", &t.ours, "");
        if let Some(oracle) = &t.oracle {
            row(&mut md, "oracle", oracle, "");
        }
        for curve in &t.curves {
            let frontier = curve.frontier();
            for point in &curve.points {
                row(&mut md, curve.baseline.name(), point, if frontier.contains(point) { "yes" } else { "" });
            }
        }
    }
    md
}

fn row(md: &mut String, name: &str, p: &Point, on_frontier: &str) {
    let setting = p.backlog_per_worker.map_or("—".to_owned(), short_number);
    let _ = writeln!(
        md,
        "| {name} | {setting} | {:.1} | {:.0} | {} | {on_frontier} |",
        p.p99_wait_s, p.replica_seconds, p.scale_events
    );
}

fn cost_text(at: Option<AtWait>) -> String {
    match at {
        Some(AtWait::Cost(cost)) => format!("{cost:.0}"),
        Some(AtWait::AtMost(cost)) => format!("≤ {cost:.0}"),
        Some(AtWait::Unreachable(Some(tightest))) => {
            format!("unreachable (its least: {:.1} s at {:.0})", tightest.p99_wait_s, tightest.replica_seconds)
        }
        Some(AtWait::Unreachable(None)) => "unreachable".to_owned(),
        None => "—".to_owned(),
    }
}

fn ratio_text(ours: f64, at: Option<AtWait>) -> String {
    match at {
        Some(AtWait::Cost(cost)) => format!("{:.2}", ours / cost),
        Some(AtWait::AtMost(cost)) => format!("≥ {:.2}", ours / cost),
        Some(AtWait::Unreachable(_)) => "below it".to_owned(),
        None => "—".to_owned(),
    }
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// A chart of cost (replica-seconds, across) against a wait (up): a plot area and round axes that cover both
/// peaks, for the frontier plots and `tune --plot`.
pub(crate) struct CostWaitFrame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    /// The cost axis's maximum and step.
    x_axis: (f64, f64),
    /// The wait axis's maximum and step.
    y_axis: (f64, f64),
}

impl CostWaitFrame {
    /// The frame of the plot area `width` by `height` whose top left corner is (`left`, `top`), with axes up to
    /// at least `cost_peak` and `wait_peak`.
    pub(crate) fn new(left: f64, top: f64, width: f64, height: f64, cost_peak: f64, wait_peak: f64) -> CostWaitFrame {
        CostWaitFrame { left, top, width, height, x_axis: nice_axis(cost_peak), y_axis: nice_axis(wait_peak) }
    }

    /// Where a cost is drawn across.
    pub(crate) fn x(&self, cost: f64) -> f64 {
        self.left + cost / self.x_axis.0 * self.width
    }

    /// Where a wait is drawn up.
    pub(crate) fn y(&self, wait: f64) -> f64 {
        self.top + self.height - wait / self.y_axis.0 * self.height
    }

    /// The plot area's right edge.
    pub(crate) fn right(&self) -> f64 {
        self.left + self.width
    }

    /// The axes, with round ticks and grid lines, and their labels.
    pub(crate) fn axes(&self, svg: &mut String, wait_label: &str) {
        let ((x_max, x_step), (y_max, y_step)) = (self.x_axis, self.y_axis);
        let (x, y) = (|v: f64| self.x(v), |v: f64| self.y(v));
        let (left, top, bottom) = (x(0.0), y(y_max), y(0.0));
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\" stroke=\"#333\"/><line x1=\"{left}\" \
             y1=\"{top}\" x2=\"{left}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>",
            x(x_max)
        );
        let mut tick = 0.0;
        while tick <= x_max + x_step / 2.0 {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                x(tick),
                bottom + 16.0,
                short_number(tick)
            );
            tick += x_step;
        }
        let mut tick = 0.0;
        while tick <= y_max + y_step / 2.0 {
            let _ = writeln!(
                svg,
                "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text x=\"{2:.1}\" \
                 y=\"{3:.1}\" text-anchor=\"end\" fill=\"#555\">{4}</text>",
                y(tick),
                x(x_max),
                left - 6.0,
                y(tick) + 4.0,
                short_number(tick)
            );
            tick += y_step;
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">replica-seconds</text>",
            x(x_max / 2.0),
            bottom + 38.0
        );
        let _ = writeln!(
            svg,
            "<text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\">{wait_label}</text>",
            top + (bottom - top) / 2.0
        );
    }
}

/// One trace's frontiers as SVG: p99 wait against replica-seconds, each baseline's settings joined in order of
/// `backlogPerWorker`, queue-scaler's default and the oracle as single marks.
pub fn svg(t: &TraceFrontier) -> String {
    let all: Vec<&Point> = t.curves.iter().flat_map(|c| &c.points).chain([&t.ours]).chain(&t.oracle).collect();
    let cost_peak = all.iter().map(|p| p.replica_seconds).fold(0.0, f64::max);
    let wait_peak = all.iter().map(|p| p.p99_wait_s).fold(0.0, f64::max);
    let frame = CostWaitFrame::new(LEFT, TOP, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM, cost_peak, wait_peak);
    let (x, y) = (|v: f64| frame.x(v), |v: f64| frame.y(v));
    let mut svg = svg_start(WIDTH, HEIGHT);
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}: p99 wait against replica-seconds</text>",
        escape(&t.trace)
    );
    frame.axes(&mut svg, "p99 wait (s)");
    for (i, curve) in t.curves.iter().enumerate() {
        let colour = if curve.baseline == Baseline::Hpa { "#d62728" } else { "#ff7f0e" };
        let line: Vec<String> =
            curve.points.iter().map(|p| format!("{:.1},{:.1}", x(p.replica_seconds), y(p.p99_wait_s))).collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.3\"/>",
            line.join(" ")
        );
        for p in &curve.points {
            let setting = p.backlog_per_worker.map_or(String::new(), short_number);
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{} backlogPerWorker {setting}: {:.1}s, {:.0} replica-seconds, {} scale events</title></circle>",
                x(p.replica_seconds),
                y(p.p99_wait_s),
                curve.baseline.name(),
                p.p99_wait_s,
                p.replica_seconds,
                p.scale_events
            );
        }
        legend(
            &mut svg,
            i,
            colour,
            &format!(
                "{} at backlogPerWorker {}–{}",
                curve.baseline.name(),
                short_number(SETTINGS[0]),
                short_number(SETTINGS[SETTINGS.len() - 1])
            ),
        );
    }
    let mut mark = |i: usize, p: &Point, colour: &str, name: &str| {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"6\" fill=\"{colour}\" stroke=\"black\"><title>{name}: {:.1}s, {:.0} replica-seconds, {} scale events</title></circle>",
            x(p.replica_seconds),
            y(p.p99_wait_s),
            p.p99_wait_s,
            p.replica_seconds,
            p.scale_events
        );
        legend(&mut svg, i, colour, name);
    };
    mark(t.curves.len(), &t.ours, "#1f77b4", "queue-scaler (default)");
    if let Some(oracle) = &t.oracle {
        mark(t.curves.len() + 1, oracle, "#2ca02c", "oracle");
    }
    svg.push_str("</svg>\n");
    svg
}

fn legend(svg: &mut String, index: usize, colour: &str, name: &str) {
    let (lx, ly) = (WIDTH - RIGHT + 10.0, TOP + 10.0 + index as f64 * 34.0);
    let _ = writeln!(
        svg,
        "<circle cx=\"{lx:.1}\" cy=\"{ly:.1}\" r=\"5\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
        lx + 9.0,
        ly + 4.0,
        escape(name)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::builtin;
    use crate::sim::run::{default_config, run_agent};

    fn point(replica_seconds: f64, p99_wait_s: f64) -> Point {
        Point { backlog_per_worker: Some(replica_seconds / 100.0), p99_wait_s, replica_seconds, scale_events: 1 }
    }

    fn curve(points: Vec<Point>) -> Curve {
        Curve { baseline: Baseline::Hpa, points }
    }

    #[test]
    fn the_frontier_drops_settings_another_beats_on_both_axes() {
        let c = curve(vec![point(100.0, 90.0), point(200.0, 40.0), point(250.0, 60.0), point(400.0, 10.0)]);
        let kept: Vec<f64> = c.frontier().iter().map(|p| p.replica_seconds).collect();
        assert_eq!(kept, [100.0, 200.0, 400.0]);
    }

    #[test]
    fn cost_at_a_wait_interpolates_and_says_when_it_is_out_of_range() {
        let c = curve(vec![point(100.0, 90.0), point(200.0, 40.0), point(400.0, 10.0)]);
        assert_eq!(c.cost_at(25.0), AtWait::Cost(300.0));
        assert_eq!(c.cost_at(40.0), AtWait::Cost(200.0));
        assert_eq!(c.cost_at(120.0), AtWait::AtMost(100.0));
        assert_eq!(c.cost_at(5.0), AtWait::Unreachable(Some(point(400.0, 10.0))));
        assert_eq!(curve(Vec::new()).cost_at(5.0), AtWait::Unreachable(None));
    }

    #[test]
    fn each_baseline_runs_at_every_setting_and_a_tighter_target_waits_less() {
        let config = default_config();
        let target = &config.targets[0];
        let jobs = builtin("steady").expect("a trace");
        let settings = WorldSettings { initial_replicas: target.min_replicas, ..WorldSettings::default() };
        let ours = run_agent(jobs.clone(), target, config.poll_interval, settings.clone(), &mut |_| {}).expect("runs");
        let t = TraceFrontier::measure("steady", &jobs, target, &settings, &ours.report, None);
        assert_eq!(t.curves.len(), BASELINES.len());
        for c in &t.curves {
            assert_eq!(c.points.len(), SETTINGS.len());
            let (tight, loose) = (c.points[0], c.points[SETTINGS.len() - 1]);
            assert!(tight.p99_wait_s < loose.p99_wait_s, "{:?}: {tight:?} vs {loose:?}", c.baseline);
            assert!(tight.replica_seconds > loose.replica_seconds, "{:?}", c.baseline);
        }
        let md = markdown(std::slice::from_ref(&t), "");
        assert!(md.contains("| steady |") && md.contains("![steady](frontier-steady.svg)"), "{md}");
        assert_eq!(md.matches("| hpa | ").count(), SETTINGS.len());
        let svg = svg(&t);
        assert_eq!(svg.matches("<circle").count(), 2 * SETTINGS.len() + 2 + 2, "every run, ours, and a legend each");
    }
}
