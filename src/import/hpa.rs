//! An autoscaling/v2 `HorizontalPodAutoscaler` as a target: bounds, behavior, and each External or Object metric
//! as a `prometheus` source whose query names the metric (to check: an adapter served it to the HPA).

use super::document::{Doc, Map, Notes, Object, number, quote};
use super::{HPA_SYNC_PERIOD_S, Target};
use crate::policy::behavior::Behavior;

/// The HPA's `minReplicas` default.
const HPA_MIN_REPLICAS: f64 = 1.0;

pub(super) fn import(doc: &Doc, warnings: &mut Vec<String>) -> Target {
    let mut notes = Notes::default();
    let Object { name, namespace, mut spec, workload } = Object::of(doc, &mut notes);
    let min = spec.number("minReplicas", &mut notes).unwrap_or(HPA_MIN_REPLICAS);
    let max = spec.number("maxReplicas", &mut notes).unwrap_or(HPA_MIN_REPLICAS);

    let mut yaml = format!("  # HorizontalPodAutoscaler {name} ({}:{})\n", doc.file, doc.line(""));
    yaml.push_str(&workload);
    yaml.push_str(&format!("    minReplicas: {}\n    maxReplicas: {}\n", number(min), number(max)));
    if let Some(behavior) = spec.take("behavior") {
        match serde_norway::from_value::<Behavior>(behavior.clone()) {
            Ok(_) => {
                yaml.push_str(&format!("    behavior: {}\n", serde_json::to_string(&behavior).unwrap_or_default()))
            }
            Err(e) => notes.skip(doc, "spec.behavior", &e.to_string()),
        }
    }
    let mut sources = String::new();
    for (index, metric) in spec.list("metrics").into_iter().enumerate() {
        let path = format!("spec.metrics[{index}]");
        let mut entry = Map::of(doc, &path, Some(&metric));
        let kind = entry.text("type").unwrap_or_default();
        let key = match kind.as_str() {
            "External" => "external",
            "Object" => "object",
            other => {
                entry.rest(&mut Notes::default());
                notes.skip(
                    doc,
                    &path,
                    &format!("a {other} metric is not a queue; only External and Object metrics are imported"),
                );
                continue;
            }
        };
        let mut body = entry.map(key);
        entry.rest(&mut notes);
        let mut metric = body.map("metric");
        let metric_name = metric.text("name").unwrap_or_default();
        let labels = selector(&mut metric, &mut notes);
        metric.rest(&mut notes);
        if let Some(mut described) = (key == "object").then(|| body.map("describedObject")) {
            let kind = described.text("kind").unwrap_or_default();
            let object = described.text("name").unwrap_or_default();
            described.take("apiVersion");
            described.rest(&mut notes);
            sources.push_str(&format!("      # the Object metric described {kind} {object}\n"));
        }
        let mut target = body.map("target");
        let target_type = target.text("type").unwrap_or_default();
        let per_replica = match target_type.as_str() {
            "AverageValue" => target.text("averageValue").and_then(|q| quantity(&q)),
            "Value" => {
                sources.push_str(
                    "      # the HPA's target was a Value (usage / target × ready pods); backlogPerWorker divides the \
                     whole value: check it\n",
                );
                target.text("value").and_then(|q| quantity(&q))
            }
            other => {
                notes.skip(doc, &format!("{path}.{key}.target.type"), &format!("`{other}` has no equivalent"));
                None
            }
        };
        target.rest(&mut notes);
        body.rest(&mut notes);
        let Some(per_replica) = per_replica.filter(|v| *v > 0.0) else {
            notes.skip(doc, &format!("{path}.{key}.target"), "no usable target value");
            continue;
        };
        let query =
            if labels.is_empty() { format!("sum({metric_name})") } else { format!("sum({metric_name}{{{labels}}})") };
        sources.push_str(&format!(
            "      # check this query: it names the {kind} metric {metric_name} that a metrics adapter served to the HPA\n      \
             # ${{PROMETHEUS_URL}}: the Prometheus that adapter reads\n      - type: prometheus\n        url: \
             '${{PROMETHEUS_URL}}'\n        query: {}\n        backlogPerWorker: {}\n",
            quote(&query),
            number(per_replica)
        ));
    }
    spec.rest(&mut notes);
    yaml.push_str("    sources:\n");
    if sources.is_empty() {
        sources.push_str(
            "      # No External or Object metric to import: this source asks for nothing, so minReplicas decides.\n      \
             - { type: fixed, backlog: 0, backlogPerWorker: 1 }\n",
        );
    }
    yaml.push_str(&sources);
    for comment in &notes.comments {
        yaml.push_str(&format!("    {comment}\n"));
    }
    warnings.extend(notes.warnings);
    Target { yaml, poll_s: HPA_SYNC_PERIOD_S, namespace }
}

/// `selector.matchLabels` as PromQL label matchers; `matchExpressions` are reported.
fn selector(metric: &mut Map, notes: &mut Notes) -> String {
    let mut selector = metric.map("selector");
    let mut labels = selector.map("matchLabels");
    let mut matchers = Vec::new();
    let keys = labels.keys();
    for key in keys {
        if let Some(value) = labels.text(&key) {
            matchers.push(format!("{key}=\"{}\"", value.replace('"', "\\\"")));
        }
    }
    labels.rest(notes);
    selector.rest(notes);
    matchers.join(",")
}

/// A Kubernetes quantity such as `30`, `500m` or `2k` as a number.
fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let (digits, scale) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((at, _)) => {
            let scale = match &text[at..] {
                "m" => 1e-3,
                "k" => 1e3,
                "M" => 1e6,
                "G" => 1e9,
                "Ki" => 1024.0,
                "Mi" => 1024.0 * 1024.0,
                _ => return None,
            };
            (&text[..at], scale)
        }
        None => (text, 1.0),
    };
    digits.parse::<f64>().ok().map(|n| n * scale)
}
