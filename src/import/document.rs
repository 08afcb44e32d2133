//! The YAML side of an import: documents with their lines, mappings whose unread fields are reported, and notes.
//!
//! Every field an importer reads is taken out of its mapping; whatever is left at the end was not understood, and
//! is reported with its file and line rather than dropped.

use serde_norway::Value;

use super::ImportError;
use crate::config::LineIndex;

/// One YAML document of a file.
pub(super) struct Doc {
    pub(super) file: String,
    pub(super) value: Value,
    lines: LineIndex,
    /// Lines of the file before this document.
    offset: usize,
}

impl Doc {
    /// The file's line of `path` (`spec.triggers[0].metadata.topic`), or of its nearest ancestor.
    pub(super) fn line(&self, path: &str) -> usize {
        self.lines.line_of(path).unwrap_or(1) + self.offset
    }

    /// A `FILE:LINE: warning: PATH: WHAT` line.
    pub(super) fn warning(&self, path: &str, what: &str) -> String {
        format!("{}:{}: warning: {path}: {what}", self.file, self.line(path))
    }
}

/// The documents of `text`, separated by `---` lines; empty ones skipped.
pub(super) fn split(file: &str, text: &str) -> Result<Vec<Doc>, ImportError> {
    let mut docs = Vec::new();
    let mut start = 0;
    let lines: Vec<&str> = text.lines().collect();
    for end in (0..=lines.len()).filter(|&i| i == lines.len() || lines[i].trim_end() == "---") {
        let chunk = lines[start..end].join("\n");
        let offset = start;
        start = end + 1;
        if chunk.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            continue;
        }
        let value: Value = serde_norway::from_str(&chunk).map_err(|e| ImportError::Yaml {
            file: file.to_owned(),
            line: offset + 1,
            message: e.to_string(),
        })?;
        docs.push(Doc { file: file.to_owned(), value, lines: LineIndex::build(&chunk), offset });
    }
    Ok(docs)
}

/// What was not imported: comments for the output, warnings for stderr.
#[derive(Default)]
pub(super) struct Notes {
    pub(super) comments: Vec<String>,
    pub(super) warnings: Vec<String>,
}

impl Notes {
    /// Reports `path` as not imported, and why.
    pub(super) fn skip(&mut self, doc: &Doc, path: &str, why: &str) {
        self.comments.push(format!("# not imported: {path}: {why}"));
        self.warnings.push(doc.warning(path, &format!("not imported: {why}")));
    }
}

/// A mapping being read: each field read is taken out, the rest reported.
pub(super) struct Map<'a> {
    doc: &'a Doc,
    path: String,
    entries: Vec<(String, Value)>,
}

impl<'a> Map<'a> {
    /// The mapping at `path` (empty when absent or not a mapping).
    pub(super) fn of(doc: &'a Doc, path: &str, value: Option<&Value>) -> Map<'a> {
        let entries = match value {
            Some(Value::Mapping(m)) => m.iter().filter_map(|(k, v)| Some((text(k)?, v.clone()))).collect(),
            _ => Vec::new(),
        };
        Map { doc, path: path.to_owned(), entries }
    }

    /// The path of `key` in this mapping.
    pub(super) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    /// Takes `key`'s value.
    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// Takes `key` as text (numbers and booleans written as YAML writes them).
    pub(super) fn text(&mut self, key: &str) -> Option<String> {
        self.take(key).as_ref().and_then(text)
    }

    /// Takes `key` as a number; one that is not is reported.
    pub(super) fn number(&mut self, key: &str, notes: &mut Notes) -> Option<f64> {
        let raw = self.text(key)?;
        match raw.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => {
                notes.skip(self.doc, &self.path_of(key), &format!("`{raw}` is not a number"));
                None
            }
        }
    }

    /// Takes `key` as a boolean (`"true"` counts); anything else is reported.
    pub(super) fn flag(&mut self, key: &str, notes: &mut Notes) -> Option<bool> {
        let raw = self.text(key)?;
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                notes.skip(self.doc, &self.path_of(key), &format!("`{raw}` is not true or false"));
                None
            }
        }
    }

    /// Takes `key` as a list (empty when absent).
    pub(super) fn list(&mut self, key: &str) -> Vec<Value> {
        match self.take(key) {
            Some(Value::Sequence(items)) => items,
            _ => Vec::new(),
        }
    }

    /// Takes `key` as a mapping.
    pub(super) fn map(&mut self, key: &str) -> Map<'a> {
        let value = self.take(key);
        Map::of(self.doc, &self.path_of(key), value.as_ref())
    }

    /// Reports every field not taken.
    pub(super) fn rest(self, notes: &mut Notes) {
        for (key, _) in &self.entries {
            notes.skip(self.doc, &self.path_of(key), "no equivalent in queue-scaler");
        }
    }
}

/// A scalar as text.
/// What a ScaledObject and an HPA share: their name and namespace, their `spec` (for the caller to read on), and
/// the workload their `scaleTargetRef` names.
pub(super) struct Object<'a> {
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    pub(super) spec: Map<'a>,
    /// The target's first line, naming its workload: `  - deployment: NAME`, or the whole `scaleTargetRef` for any
    /// other kind.
    pub(super) workload: String,
}

impl<'a> Object<'a> {
    /// Reads the object's head; anything unread outside `spec` becomes a note.
    pub(super) fn of(doc: &'a Doc, notes: &mut Notes) -> Object<'a> {
        let mut root = Map::of(doc, "", Some(&doc.value));
        root.take("apiVersion");
        root.take("kind");
        root.take("status");
        let mut metadata = root.map("metadata");
        let name = metadata.text("name").unwrap_or_default();
        let namespace = metadata.text("namespace");
        let mut spec = root.map("spec");
        root.rest(notes);
        let mut target_ref = spec.map("scaleTargetRef");
        let workload_name = target_ref.text("name").unwrap_or_default();
        // KEDA's defaults; an HPA always names both.
        let api_version = target_ref.text("apiVersion").unwrap_or_else(|| "apps/v1".to_owned());
        let kind = target_ref.text("kind").unwrap_or_else(|| "Deployment".to_owned());
        target_ref.rest(notes);
        let workload = if kind == "Deployment" && api_version == "apps/v1" {
            format!("  - deployment: {}\n", quote(&workload_name))
        } else {
            format!(
                "  - scaleTargetRef: {{apiVersion: {}, kind: {}, name: {}}}\n",
                quote(&api_version),
                quote(&kind),
                quote(&workload_name)
            )
        };
        Object { name, namespace, spec, workload }
    }
}

pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A YAML string in single quotes, safe whatever it holds.
pub(super) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A number as YAML writes it: `5`, not `5.0`.
pub(super) fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { n.to_string() }
}

impl Map<'_> {
    /// The keys not taken yet.
    pub(super) fn keys(&self) -> Vec<String> {
        self.entries.iter().map(|(k, _)| k.clone()).collect()
    }
}
