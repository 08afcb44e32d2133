//! `simulate --plot FILE.svg`: every policy's backlog, replicas and wait over time, one panel each, on a shared
//! time axis.
//!
//! Written by hand as plain SVG — a few hundred lines of text that any browser or README renders — rather than
//! through a plotting crate. Each policy keeps its colour in all three panels; queue-scaler is drawn last and
//! thickest so it stays visible, the oracle dashed because it is a plan, not a policy. Samples are reduced to one
//! point per pixel column by their maximum, so a one-sample spike is never lost and a four-hour trace stays small.

use std::fmt::Write;

use super::world::{PolicyOutcome, Sample};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 58.0;
const LEGEND_ROW: f64 = 18.0;
const PANEL: f64 = 170.0;
const GAP: f64 = 34.0;
const BOTTOM: f64 = 40.0;

/// One panel: what it shows and how to read it from a sample.
struct Panel {
    title: &'static str,
    value: fn(&Sample) -> f64,
}

const PANELS: [Panel; 3] = [
    Panel { title: "backlog: jobs waiting", value: |s| s.waiting as f64 },
    Panel { title: "replicas", value: |s| f64::from(s.replicas) },
    Panel { title: "wait (s): longest wait of the jobs started in each sample", value: |s| s.wait_s },
];

/// The colour and stroke of a policy's lines.
fn style(name: &str, index: usize) -> (&'static str, f64, &'static str) {
    match name {
        "queue-scaler" => ("#1f77b4", 2.2, ""),
        "hpa" => ("#d62728", 1.3, ""),
        "keda" => ("#ff7f0e", 1.3, ""),
        "threshold" => ("#7f7f7f", 1.3, ""),
        "oracle" => ("#2ca02c", 1.3, " stroke-dasharray=\"5 3\""),
        _ => (["#9467bd", "#8c564b", "#e377c2", "#17becf"][index % 4], 1.3, ""),
    }
}

/// The SVG document for `outcomes` (queue-scaler first, as [`super::compare::compare`] returns them).
pub fn render(title: &str, outcomes: &[PolicyOutcome]) -> String {
    let legend_rows = outcomes.len().div_ceil(2).max(1) as f64;
    let first_panel = TOP + legend_rows * LEGEND_ROW + 12.0;
    let height = first_panel + PANELS.len() as f64 * (PANEL + GAP) + BOTTOM - GAP;
    let end_s = outcomes.iter().filter_map(|o| o.timeline.last()).map(|s| s.t_s).fold(0.0, f64::max).max(1.0);
    let plot_width = WIDTH - LEFT - RIGHT;

    let mut svg = svg_start(WIDTH, height);
    let _ = writeln!(svg, "<text x=\"{LEFT}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>", escape(title));
    legend(&mut svg, outcomes);

    for (row, panel) in PANELS.iter().enumerate() {
        let top = first_panel + row as f64 * (PANEL + GAP);
        let peak = outcomes.iter().flat_map(|o| o.timeline.iter().map(panel.value)).fold(0.0, f64::max);
        let (y_max, y_step) = nice_axis(peak);
        let _ = writeln!(svg, "<text x=\"{LEFT}\" y=\"{}\" font-weight=\"bold\">{}</text>", top - 8.0, panel.title);
        axes(&mut svg, top, y_max, y_step, end_s, row == PANELS.len() - 1);
        let x = |t: f64| LEFT + t / end_s * plot_width;
        let y = |v: f64| top + PANEL - v / y_max * PANEL;
        // queue-scaler last, on top.
        for (index, outcome) in outcomes.iter().enumerate().rev() {
            let (colour, width, dash) = style(&outcome.report.name, index);
            let mut points = String::new();
            for (t, v) in per_pixel_max(&outcome.timeline, panel.value, end_s, plot_width) {
                let _ = write!(points, "{:.0},{:.1} ", x(t), y(v));
            }
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash} \
                 stroke-linejoin=\"round\" points=\"{}\"/>",
                points.trim_end()
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Two columns of legend entries: colour, name, p99 wait and replica-hours.
fn legend(svg: &mut String, outcomes: &[PolicyOutcome]) {
    for (index, outcome) in outcomes.iter().enumerate() {
        let (colour, width, dash) = style(&outcome.report.name, index);
        let x = LEFT + (index % 2) as f64 * 430.0;
        let y = TOP - 18.0 + (index / 2) as f64 * LEGEND_ROW;
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"{}\"{dash}/>",
            x + 22.0,
            width + 1.0
        );
        let report = &outcome.report;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\">{}: p99 wait {:.1} s, {:.1} replica-hours</text>",
            x + 28.0,
            y + 4.0,
            escape(&report.name),
            report.p99_wait_s,
            report.replica_seconds / 3600.0
        );
    }
}

/// A panel's frame, horizontal grid lines with their values, and the time axis (labelled on the last panel).
fn axes(svg: &mut String, top: f64, y_max: f64, y_step: f64, end_s: f64, time_labels: bool) {
    let right = WIDTH - RIGHT;
    let bottom = top + PANEL;
    let mut value = 0.0;
    while value <= y_max + y_step / 2.0 {
        let y = bottom - value / y_max * PANEL;
        let _ = writeln!(svg, "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{right}\" y2=\"{y:.1}\" stroke=\"#e6e6e6\"/>");
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            LEFT - 6.0,
            y + 4.0,
            short_number(value)
        );
        value += y_step;
    }
    let (_, minutes_step) = nice_axis(end_s / 60.0);
    let mut minute = 0.0;
    while minute * 60.0 <= end_s + 1e-9 {
        let x = LEFT + minute * 60.0 / end_s * (WIDTH - LEFT - RIGHT);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{bottom}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#999\"/>",
            bottom + 4.0
        );
        if time_labels {
            let _ = writeln!(
                svg,
                "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                bottom + 18.0,
                short_number(minute)
            );
        }
        minute += minutes_step;
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{}\" height=\"{PANEL}\" fill=\"none\" stroke=\"#999\"/>",
        right - LEFT
    );
    if time_labels {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">time (minutes)</text>",
            (LEFT + right) / 2.0,
            bottom + 34.0
        );
    }
}

/// The samples reduced to at most one point per pixel column, each the maximum of its column, at the column's
/// first sample time.
fn per_pixel_max(samples: &[Sample], value: fn(&Sample) -> f64, end_s: f64, columns: f64) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    let mut column_of_last = None;
    for sample in samples {
        let column = (sample.t_s / end_s * columns).floor() as i64;
        let v = value(sample);
        match points.last_mut() {
            Some(last) if column_of_last == Some(column) => last.1 = last.1.max(v),
            _ => {
                points.push((sample.t_s, v));
                column_of_last = Some(column);
            }
        }
    }
    points
}

/// The opening of an SVG document of this size, on white, in the font every plot here uses.
pub(crate) fn svg_start(width: f64, height: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} \
         {height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    )
}

/// An axis maximum at or above `peak` and a step that divides it into at most five round intervals.
pub(crate) fn nice_axis(peak: f64) -> (f64, f64) {
    let peak = if peak.is_finite() && peak > 0.0 { peak } else { 1.0 };
    let rough = peak / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= rough).unwrap_or(10.0 * magnitude);
    let step = if peak >= 1.0 { step.max(1.0) } else { step };
    ((peak / step).ceil() * step, step)
}

/// `1200` as `1200`, `2.5` as `2.5`, `0.30000000000000004` as `0.3`.
pub(crate) fn short_number(value: f64) -> String {
    let rounded = (value * 1000.0).round() / 1000.0;
    if rounded.fract() == 0.0 { format!("{}", rounded as i64) } else { format!("{rounded}") }
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::report::PolicyReport;

    fn sample(t_s: f64, waiting: u64, replicas: u32, wait_s: f64) -> Sample {
        Sample { t_s, waiting, in_flight: 0, replicas, ready: replicas, busy: 0, wait_s }
    }

    fn outcome(name: &str, timeline: Vec<Sample>) -> PolicyOutcome {
        let report = PolicyReport {
            name: name.to_owned(),
            jobs: 10,
            p50_wait_s: 1.0,
            p95_wait_s: 2.0,
            p99_wait_s: 3.25,
            replica_seconds: 7_200.0,
            utilization: 0.5,
            scale_events: 2,
            mean_wait_s: 1.0,
            max_wait_s: 4.0,
            handed_back: 0,
            max_replicas: 3,
            busy_worker_seconds: 3_600.0,
            wasted_work_s: 0.0,
            unfinished: 0,
            interrupted_jobs: 0,
            scale_down: "newest-first".to_owned(),
            quieted_pods: 0,
            resumed_pods: 0,
            quiet_timeouts: 0,
        };
        PolicyOutcome { report, timeline }
    }

    #[test]
    fn nice_axes_are_round_and_cover_the_peak() {
        assert_eq!(nice_axis(0.0), (1.0, 1.0));
        assert_eq!(nice_axis(3.0), (3.0, 1.0));
        assert_eq!(nice_axis(7.0), (8.0, 2.0));
        assert_eq!(nice_axis(1_000.0), (1_000.0, 200.0));
        // 1,200 in steps of 200 would be six intervals.
        assert_eq!(nice_axis(1_001.0), (1_500.0, 500.0));
        let (top, step) = nice_axis(0.3);
        assert!((top - 0.3).abs() < 1e-12 && (step - 0.1).abs() < 1e-12, "{top} {step}");
    }

    #[test]
    fn keeps_the_maximum_of_each_pixel_column() {
        let samples: Vec<Sample> =
            [(0.0, 1), (1.0, 9), (2.0, 2), (10.0, 4)].iter().map(|&(t, w)| sample(t, w, 1, 0.0)).collect();
        // Ten seconds over two columns: 0, 1 and 2 share the first column, 10 starts the third.
        let points = per_pixel_max(&samples, |s| s.waiting as f64, 10.0, 2.0);
        assert_eq!(points, vec![(0.0, 9.0), (10.0, 4.0)]);
    }

    #[test]
    fn draws_three_panels_with_one_line_per_policy_and_a_legend() {
        let timeline = vec![sample(0.0, 0, 1, 0.0), sample(5.0, 30, 4, 12.0), sample(10.0, 0, 2, 0.0)];
        let svg = render("spike & co", &[outcome("queue-scaler", timeline.clone()), outcome("hpa", timeline)]);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert!(svg.contains("spike &amp; co"));
        assert!(svg.contains("queue-scaler: p99 wait 3.2 s, 2.0 replica-hours"));
        assert!(svg.contains("stroke=\"#d62728\""), "hpa has its colour");
        for title in ["backlog: jobs waiting", "replicas", "wait (s)", "time (minutes)"] {
            assert!(svg.contains(title), "{title}");
        }
        // The replicas panel's axis goes to 4 in steps of 1.
        assert!(svg.contains(">4</text>"));
    }
}
