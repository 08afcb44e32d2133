//! A KEDA `ScaledObject` as a target: bounds, polling, cooldown, behavior, fallback and one source per trigger.

use std::collections::BTreeMap;

use super::document::{Doc, Map, Notes, Object, number, quote};
use super::{Auths, KEDA_POLLING_INTERVAL_S, Secret, Target};
use crate::policy::behavior::Behavior;

/// KEDA's defaults for a ScaledObject that leaves them out.
const KEDA_MIN_REPLICAS: u32 = 0;
const KEDA_MAX_REPLICAS: u32 = 100;
const KEDA_COOLDOWN_S: u64 = 300;

/// One trigger being read.
pub(super) struct Trigger<'a> {
    pub(super) doc: &'a Doc,
    pub(super) meta: Map<'a>,
    auth: BTreeMap<String, Secret>,
    pub(super) notes: Notes,
    /// The source's fields, in order, as YAML.
    pub(super) fields: Vec<(String, String)>,
    /// Comments above the source (secrets' origins, checks to make).
    pub(super) comments: Vec<String>,
    /// The trigger's activation threshold.
    pub(super) activation: Option<f64>,
    /// A schedule instead of a source (cron).
    pub(super) schedule: Option<String>,
}

impl Trigger<'_> {
    /// A parameter from the metadata, else from `<key>FromEnv`, else from the TriggerAuthentication; secrets and
    /// environment variables become `${ENV}` placeholders with a comment saying where they come from.
    pub(super) fn param(&mut self, key: &str) -> Option<String> {
        if let Some(value) = self.meta.text(key) {
            return Some(value);
        }
        if let Some(variable) = self.meta.text(&format!("{key}FromEnv")) {
            let env = super::env_name(&variable);
            self.comments.push(format!("# ${{{env}}}: the workload's environment variable {variable} ({key}FromEnv)"));
            return Some(format!("${{{env}}}"));
        }
        let secret = self.auth.remove(key)?;
        self.comments.push(format!("# {}", secret.origin));
        Some(format!("${{{}}}", secret.env))
    }

    /// Sets a source field to a YAML value.
    pub(super) fn set(&mut self, key: &str, yaml: String) {
        self.fields.push((key.to_owned(), yaml));
    }

    /// Sets a source field to a string.
    pub(super) fn set_text(&mut self, key: &str, value: &str) {
        self.set(key, quote(value));
    }

    /// Reports a metadata field as not imported.
    pub(super) fn skip(&mut self, key: &str, why: &str) {
        let path = self.meta.path_of(key);
        if self.meta.take(key).is_some() {
            self.notes.skip(self.doc, &path, why);
        }
    }

    /// A required parameter; its absence is reported.
    pub(super) fn required(&mut self, key: &str) -> Option<String> {
        let value = self.param(key);
        if value.is_none() {
            let path = self.meta.path_of(key);
            self.notes.skip(self.doc, &path, "missing, and the trigger cannot be imported without it");
        }
        value
    }

    /// Parameters of the TriggerAuthentication no trigger field used.
    fn unused_auth(&mut self) {
        for (parameter, secret) in std::mem::take(&mut self.auth) {
            self.comments.push(format!("# not imported: authentication parameter {parameter} ({})", secret.origin));
            self.notes.warnings.push(self.doc.warning(
                self.meta.path_of("").trim_end_matches('.'),
                &format!("not imported: authentication parameter {parameter}: no equivalent in queue-scaler"),
            ));
        }
    }
}

pub(super) fn import(doc: &Doc, auths: &Auths, warnings: &mut Vec<String>) -> Target {
    let mut notes = Notes::default();
    let Object { name, namespace, mut spec, workload } = Object::of(doc, &mut notes);
    let polling = spec.number("pollingInterval", &mut notes);
    let poll_s = polling.map_or(KEDA_POLLING_INTERVAL_S, |n| n.max(1.0) as u64);
    let min = spec.number("minReplicaCount", &mut notes).map_or(KEDA_MIN_REPLICAS, |n| n as u32);
    let max = spec.number("maxReplicaCount", &mut notes).map_or(KEDA_MAX_REPLICAS, |n| n as u32);
    let cooldown = spec.number("cooldownPeriod", &mut notes).map_or(KEDA_COOLDOWN_S, |n| n as u64);

    let mut yaml = format!("  # ScaledObject {name} ({}:{})\n", doc.file, doc.line(""));
    yaml.push_str(&workload);
    yaml.push_str(&format!("    minReplicas: {min}\n    maxReplicas: {max}\n"));
    match polling {
        None => yaml.push_str(&format!("    # pollingInterval: KEDA's default {KEDA_POLLING_INTERVAL_S}s\n")),
        Some(_) => yaml.push_str(&format!("    # pollingInterval: {poll_s}s\n")),
    }
    if min == 0 {
        yaml.push_str(&format!(
            "    # KEDA's cooldownPeriod: how long after the last active read the last replica goes\n    \
             cooldownPeriod: {cooldown}s\n"
        ));
    }

    let mut fallback = spec.map("fallback");
    if let (Some(threshold), Some(replicas)) =
        (fallback.number("failureThreshold", &mut notes), fallback.number("replicas", &mut notes))
    {
        yaml.push_str(&format!("    fallback: {{ failureThreshold: {threshold}, replicas: {replicas} }}\n"));
    }
    if let Some(behavior) = fallback.text("behavior").filter(|b| b != "static") {
        notes.skip(doc, "spec.fallback.behavior", &format!("`{behavior}`: queue-scaler's fallback is static"));
    }
    fallback.rest(&mut notes);

    let mut advanced = spec.map("advanced");
    let mut hpa = advanced.map("horizontalPodAutoscalerConfig");
    if let Some(behavior) = hpa.take("behavior") {
        match serde_norway::from_value::<Behavior>(behavior.clone()) {
            Ok(_) => {
                yaml.push_str(&format!("    behavior: {}\n", serde_json::to_string(&behavior).unwrap_or_default()))
            }
            Err(e) => notes.skip(doc, "spec.advanced.horizontalPodAutoscalerConfig.behavior", &e.to_string()),
        }
    }
    hpa.rest(&mut notes);
    advanced.rest(&mut notes);

    let mut sources = Vec::new();
    let mut schedules = Vec::new();
    let mut activations = Vec::new();
    for (index, trigger) in spec.list("triggers").into_iter().enumerate() {
        let path = format!("spec.triggers[{index}]");
        let mut entry = Map::of(doc, &path, Some(&trigger));
        let kind = entry.text("type").unwrap_or_default();
        let mut auth_ref = entry.map("authenticationRef");
        let auth = auth_ref.text("name").and_then(|n| auths.get(&n).cloned()).unwrap_or_default();
        auth_ref.take("kind");
        auth_ref.rest(&mut notes);
        let source_name = entry.text("name");
        if let Some(metric_type) = entry.text("metricType").filter(|t| t != "AverageValue") {
            notes.skip(
                doc,
                &format!("{path}.metricType"),
                &format!("`{metric_type}`: sources divide by backlogPerWorker (AverageValue)"),
            );
        }
        entry.take("useCachedMetrics");
        let meta = entry.map("metadata");
        entry.rest(&mut notes);
        let mut t = Trigger {
            doc,
            meta,
            auth,
            notes: Notes::default(),
            fields: Vec::new(),
            comments: Vec::new(),
            activation: None,
            schedule: None,
        };
        let mapped = match kind.as_str() {
            "kafka" => super::kafka::map(&mut t),
            "rabbitmq" => super::rabbitmq::map(&mut t),
            "aws-sqs-queue" => super::sqs::map(&mut t),
            "gcp-pubsub" => super::pubsub::map(&mut t),
            "prometheus" => super::prometheus::map(&mut t),
            "cron" => super::cron::map(&mut t),
            other => {
                t.notes.skip(
                    doc,
                    &format!("{path}.type"),
                    &format!("trigger type `{other}` has no queue-scaler source"),
                );
                false
            }
        };
        if mapped {
            t.unused_auth();
        }
        let Trigger { meta, mut notes, fields, comments, activation, schedule, .. } = t;
        meta.rest(&mut notes);
        let mut comments = comments;
        comments.extend(notes.comments);
        warnings.extend(notes.warnings);
        if let Some(schedule) = schedule {
            schedules.push((schedule, comments));
        } else if mapped {
            if let Some(a) = activation {
                activations.push((a, kind.clone()));
            }
            sources.push((kind, source_name, fields, comments));
        } else {
            yaml_comments(&mut yaml, &comments, "    ");
        }
    }
    spec.rest(&mut notes);

    if let Some((smallest, _)) = activations.iter().min_by(|a, b| a.0.total_cmp(&b.0)) {
        if activations.iter().any(|(a, _)| a != smallest) {
            let all: Vec<String> = activations.iter().map(|(a, k)| format!("{} ({k})", number(*a))).collect();
            yaml.push_str(&format!("    # the smallest of the triggers' activations: {}\n", all.join(", ")));
        }
        yaml.push_str(&format!("    activation: {}\n", number(*smallest)));
    }
    if !schedules.is_empty() {
        yaml.push_str("    schedules:\n");
        for (schedule, comments) in &schedules {
            yaml_comments(&mut yaml, comments, "      ");
            yaml.push_str(&format!("      - {schedule}\n"));
        }
    }
    yaml.push_str("    sources:\n");
    if sources.is_empty() {
        yaml.push_str(
            "      # No trigger maps to a source: this one asks for nothing, so minReplicas and schedules decide.\n      \
             - { type: fixed, backlog: 0, backlogPerWorker: 1 }\n",
        );
    }
    for (kind, source_name, fields, comments) in &sources {
        yaml_comments(&mut yaml, comments, "      ");
        let our_type = match kind.as_str() {
            "aws-sqs-queue" => "sqs",
            "gcp-pubsub" => "pubsub",
            other => other,
        };
        yaml.push_str(&format!("      - type: {our_type}\n"));
        if let Some(source_name) = source_name {
            yaml.push_str(&format!("        name: {}\n", quote(source_name)));
        }
        for (key, value) in fields {
            yaml.push_str(&format!("        {key}: {value}\n"));
        }
    }
    yaml_comments(&mut yaml, &notes.comments, "    ");
    warnings.extend(notes.warnings);
    Target { yaml, poll_s, namespace }
}

fn yaml_comments(yaml: &mut String, comments: &[String], indent: &str) {
    for comment in comments {
        yaml.push_str(&format!("{indent}{comment}\n"));
    }
}

/// A trigger's number, or its KEDA default.
pub(super) fn number_or(t: &mut Trigger, key: &str, default: f64) -> f64 {
    let mut notes = std::mem::take(&mut t.notes);
    let value = match t.param(key) {
        Some(raw) => match raw.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => n,
            _ => {
                notes.skip(t.doc, &t.meta.path_of(key), &format!("`{raw}` is not a number; KEDA's default used"));
                default
            }
        },
        None => default,
    };
    t.notes = notes;
    value
}

/// A trigger's optional boolean.
pub(super) fn flag(t: &mut Trigger, key: &str) -> Option<bool> {
    let mut notes = std::mem::take(&mut t.notes);
    let value = t.meta.flag(key, &mut notes);
    t.notes = notes;
    value
}

/// An optional activation threshold.
pub(super) fn activation(t: &mut Trigger, key: &str) {
    let mut notes = std::mem::take(&mut t.notes);
    t.activation = t.meta.number(key, &mut notes);
    t.notes = notes;
}
