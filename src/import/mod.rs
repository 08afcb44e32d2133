//! `queue-scaler import`: KEDA ScaledObjects and autoscaling/v2 HPAs in, an equivalent queue-scaler config out.
//!
//! Teams switch from what they run, not from a blank page. `import` reads Kubernetes YAML (several documents per
//! file), finds every `ScaledObject` (with the `TriggerAuthentication`s its triggers name) and every
//! `HorizontalPodAutoscaler` of `autoscaling/v2` with External or Object metrics, and writes one target per object:
//! replica bounds, polling, `cooldownPeriod`, `behavior`, `fallback`, and one source per trigger (one file per
//! trigger kind below). Secrets become `${ENV}` placeholders with a comment naming the Secret and key they come
//! from. Nothing is dropped silently: every field it cannot map becomes a `# not imported:` comment in the output
//! and a `FILE:LINE: warning:` line on stderr. The output is meant to pass `queue-scaler check` once the
//! placeholders' variables are set.

mod cron;
mod document;
mod hpa;
mod kafka;
mod prometheus;
mod pubsub;
mod rabbitmq;
mod scaled_object;
mod sqs;

use std::collections::BTreeMap;

use document::{Doc, Map, Notes, text};

/// KEDA's `pollingInterval` when a ScaledObject leaves it out, in seconds.
const KEDA_POLLING_INTERVAL_S: u64 = 30;
/// The HPA controller's sync period, in seconds: how often an HPA decides.
const HPA_SYNC_PERIOD_S: u64 = 15;

/// Why nothing could be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A document that is not YAML.
    #[error("{file}:{line}: not YAML: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// The document's first line.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// No object to import in any file.
    #[error("no KEDA ScaledObject and no autoscaling/v2 HorizontalPodAutoscaler in {0}")]
    NothingToImport(String),
}

/// The config and the warnings about what it leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The config, as YAML with comments.
    pub config: String,
    /// `FILE:LINE: warning: …` lines, one per field not imported.
    pub warnings: Vec<String>,
}

/// One imported target, rendered, and its polling interval.
struct Target {
    yaml: String,
    poll_s: u64,
    namespace: Option<String>,
}

/// A secret a trigger parameter comes from: the placeholder written and the comment naming its origin.
#[derive(Debug, Clone)]
struct Secret {
    env: String,
    origin: String,
}

/// The parameters of every `TriggerAuthentication`, by its name.
type Auths = BTreeMap<String, BTreeMap<String, Secret>>;

/// Imports `files` (name and text each).
pub fn import(files: &[(String, String)]) -> Result<Imported, ImportError> {
    let mut docs = Vec::new();
    for (file, text) in files {
        docs.extend(document::split(file, text)?);
    }
    let mut warnings = Vec::new();
    let auths = trigger_authentications(&docs, &mut warnings);
    let mut targets = Vec::new();
    for doc in &docs {
        let kind = doc.value.get("kind").and_then(text).unwrap_or_default();
        let api = doc.value.get("apiVersion").and_then(text).unwrap_or_default();
        match (kind.as_str(), api.as_str()) {
            ("ScaledObject", _) => targets.push(scaled_object::import(doc, &auths, &mut warnings)),
            ("HorizontalPodAutoscaler", "autoscaling/v2") => targets.push(hpa::import(doc, &mut warnings)),
            ("HorizontalPodAutoscaler", other) => warnings.push(doc.warning(
                "apiVersion",
                &format!("{other} HPAs are not imported; only autoscaling/v2 (External and Object metrics)"),
            )),
            ("TriggerAuthentication" | "ClusterTriggerAuthentication", _) => {}
            (other, _) => warnings.push(doc.warning("kind", &format!("`{other}` is not an autoscaler; skipped"))),
        }
    }
    if targets.is_empty() {
        let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
        return Err(ImportError::NothingToImport(names.join(", ")));
    }
    Ok(Imported { config: render(files, &targets), warnings })
}

fn render(files: &[(String, String)], targets: &[Target]) -> String {
    let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    let mut out = format!(
        "# Imported by `queue-scaler import` from {}.\n# Read every comment: placeholders (${{…}}) need their \
         environment variables, and `# not imported:` lines are settings with no equivalent.\n",
        names.join(", ")
    );
    let mut namespaces: Vec<&str> = targets.iter().filter_map(|t| t.namespace.as_deref()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    match namespaces.as_slice() {
        [one] => out.push_str(&format!("namespace: {}\n", document::quote(one))),
        [] => {}
        several => out.push_str(&format!(
            "# not imported: the objects are in several namespaces ({}); one agent serves one namespace: split \
             this config per namespace\n",
            several.join(", ")
        )),
    }
    let poll_s = targets.iter().map(|t| t.poll_s).min().unwrap_or(KEDA_POLLING_INTERVAL_S);
    if targets.len() > 1 {
        let all: Vec<String> = targets.iter().map(|t| format!("{}s", t.poll_s)).collect();
        out.push_str(&format!(
            "# One poll interval serves every target: the smallest of the imported objects' ({}).\n",
            all.join(", ")
        ));
    }
    out.push_str(&format!("pollInterval: {poll_s}s\ntargets:\n"));
    for target in targets {
        out.push_str(&target.yaml);
    }
    out
}

/// Every `TriggerAuthentication`'s parameters as placeholders: `secretTargetRef` entries become
/// `${SECRET_KEY}`, `env` entries the variable they name.
fn trigger_authentications(docs: &[Doc], warnings: &mut Vec<String>) -> Auths {
    let mut auths = Auths::new();
    for doc in docs {
        let kind = doc.value.get("kind").and_then(text).unwrap_or_default();
        if kind != "TriggerAuthentication" && kind != "ClusterTriggerAuthentication" {
            continue;
        }
        let name = doc.value.get("metadata").and_then(|m| m.get("name")).and_then(text).unwrap_or_default();
        let mut params = BTreeMap::new();
        let mut notes = Notes::default();
        let mut spec = Map::of(doc, "spec", doc.value.get("spec"));
        for (index, entry) in spec.list("secretTargetRef").into_iter().enumerate() {
            let path = format!("spec.secretTargetRef[{index}]");
            let mut entry = Map::of(doc, &path, Some(&entry));
            let (Some(parameter), Some(secret), Some(key)) =
                (entry.text("parameter"), entry.text("name"), entry.text("key"))
            else {
                notes.skip(doc, &path, "needs parameter, name and key");
                continue;
            };
            entry.rest(&mut notes);
            let env = env_name(&format!("{secret}_{key}"));
            let origin = format!("${{{env}}}: Secret {secret}, key {key} (TriggerAuthentication {name})");
            params.insert(parameter, Secret { env, origin });
        }
        for (index, entry) in spec.list("env").into_iter().enumerate() {
            let path = format!("spec.env[{index}]");
            let mut entry = Map::of(doc, &path, Some(&entry));
            let (Some(parameter), Some(variable)) = (entry.text("parameter"), entry.text("name")) else {
                notes.skip(doc, &path, "needs parameter and name");
                continue;
            };
            entry.text("containerName");
            entry.rest(&mut notes);
            let env = env_name(&variable);
            let origin =
                format!("${{{env}}}: the workload's environment variable {variable} (TriggerAuthentication {name})");
            params.insert(parameter, Secret { env, origin });
        }
        spec.rest(&mut notes);
        warnings.extend(notes.warnings);
        auths.insert(name, params);
    }
    auths
}

/// An environment variable name: upper case, anything but letters and digits as `_`.
fn env_name(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

#[cfg(test)]
mod tests;
