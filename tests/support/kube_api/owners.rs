//! Server-side apply's field ownership, reduced to what clients here rely on: each field remembers the
//! manager that last set it, and an apply that would change a field another manager owns fails with
//! 409 unless forced (kube-lease-manager takes an orphaned lease with such an apply, so without this
//! two candidates could both believe they won); and every object shows its `metadata.managedFields`
//! as a real server does, one entry per manager with the fields it owns (`fieldsV1`), its operation
//! and when it last wrote — which is how the agent names who changed `spec.replicas`. Fields an
//! apply stops mentioning are not removed (real apply would), which no client here depends on.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// A field's path from the object root, such as `["spec", "holderIdentity"]`.
type FieldPath = Vec<String>;

/// Which manager last set each leaf field of one object, and each manager's last write.
#[derive(Debug, Default, Clone)]
pub(super) struct FieldOwners {
    fields: BTreeMap<FieldPath, String>,
    /// Per manager: the operation (`Update` or `Apply`) and the time of its last write.
    writes: BTreeMap<String, (&'static str, String)>,
}

impl FieldOwners {
    /// `metadata.managedFields` for these owners: one entry per manager that owns a field, oldest
    /// write first; `None` when nobody owns anything (objects the test seeded).
    pub fn managed_fields(&self, api_version: &str) -> Option<Value> {
        let mut by_manager: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        fn insert(node: &mut Map<String, Value>, path: &[String]) {
            if let Some((first, rest)) = path.split_first()
                && let Value::Object(child) = node.entry(format!("f:{first}")).or_insert_with(|| json!({}))
            {
                insert(child, rest);
            }
        }
        for (path, manager) in &self.fields {
            insert(by_manager.entry(manager).or_default(), path);
        }
        let mut entries: Vec<(String, Value)> = by_manager
            .into_iter()
            .map(|(manager, fields)| {
                let (operation, time) = self.writes.get(manager).cloned().unwrap_or(("Update", String::new()));
                let entry = json!({
                    "manager": manager,
                    "operation": operation,
                    "apiVersion": api_version,
                    "time": time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields,
                });
                (time, entry)
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        (!entries.is_empty()).then(|| Value::Array(entries.into_iter().map(|(_, e)| e).collect()))
    }

    fn wrote(&mut self, manager: &str, operation: &'static str) {
        self.writes.insert(manager.to_string(), (operation, super::time::now()));
    }
    /// The fields an apply of `config` by `manager` would take from other managers by changing
    /// their value in `live`, as `(owner, .dotted.path)` pairs.
    pub fn conflicts(&self, manager: &str, config: &Value, live: &Value) -> Vec<(String, String)> {
        leaves(config)
            .into_iter()
            .filter_map(|(path, wanted)| {
                let owner = self.fields.get(&path).filter(|owner| *owner != manager)?;
                let current = path.iter().try_fold(live, |value, key| value.get(key));
                (current != Some(wanted) && !(wanted.is_null() && current.is_none()))
                    .then(|| (owner.clone(), format!(".{}", path.join("."))))
            })
            .collect()
    }

    /// Gives `manager` every field `config` sets; fields it sets to null no longer have an owner.
    pub fn claim(&mut self, manager: &str, config: &Value) {
        for (path, value) in leaves(config) {
            if value.is_null() {
                self.fields.remove(&path);
            } else {
                self.fields.insert(path, manager.to_string());
            }
        }
        self.wrote(manager, "Apply");
    }

    /// Gives `manager` every field an update changed, and forgets fields it removed.
    pub fn record_update(&mut self, manager: &str, before: &Value, after: &Value) {
        let old = leaves(before);
        let new = leaves(after);
        let still_there = |path: &FieldPath| new.iter().any(|(p, _)| p == path);
        for (path, _) in &old {
            if !still_there(path) {
                self.fields.remove(path);
            }
        }
        let mut changed = false;
        for (path, value) in new {
            if !old.iter().any(|(p, v)| *p == path && *v == value) {
                self.fields.insert(path, manager.to_string());
                changed = true;
            }
        }
        if changed {
            self.wrote(manager, "Update");
        }
    }
}

/// Metadata the server keeps, which no manager owns.
const BOOKKEEPING_METADATA: &[&str] =
    &["name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"];

/// Identity and bookkeeping fields nobody owns.
fn is_bookkeeping(path: &[String]) -> bool {
    match path {
        [only] => only == "apiVersion" || only == "kind",
        [metadata, field] => metadata == "metadata" && BOOKKEEPING_METADATA.contains(&field.as_str()),
        _ => false,
    }
}

/// Every non-object value in `value` with its path; lists count as one value, as with atomic lists.
fn leaves(value: &Value) -> Vec<(FieldPath, &Value)> {
    fn walk<'a>(value: &'a Value, path: &mut FieldPath, found: &mut Vec<(FieldPath, &'a Value)>) {
        match value {
            Value::Object(fields) => {
                for (key, child) in fields {
                    path.push(key.clone());
                    walk(child, path, found);
                    path.pop();
                }
            }
            leaf => {
                if !is_bookkeeping(path) {
                    found.push((path.clone(), leaf));
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(value, &mut Vec::new(), &mut found);
    found
}
