//! Server-side apply's field ownership, reduced to what lease-based leader election relies on: each
//! field remembers the manager that last set it, and an apply that would change a field another
//! manager owns fails with 409 unless forced. kube-lease-manager takes an orphaned lease with such
//! an apply, so without this two candidates could both believe they won. Fields an apply stops
//! mentioning are not removed (real apply would), which no client here depends on.

use std::collections::BTreeMap;

use serde_json::Value;

/// A field's path from the object root, such as `["spec", "holderIdentity"]`.
type FieldPath = Vec<String>;

/// Which manager last set each leaf field of one object.
#[derive(Debug, Default, Clone)]
pub(super) struct FieldOwners(BTreeMap<FieldPath, String>);

impl FieldOwners {
    /// The fields an apply of `config` by `manager` would take from other managers by changing
    /// their value in `live`, as `(owner, .dotted.path)` pairs.
    pub fn conflicts(&self, manager: &str, config: &Value, live: &Value) -> Vec<(String, String)> {
        leaves(config)
            .into_iter()
            .filter_map(|(path, wanted)| {
                let owner = self.0.get(&path).filter(|owner| *owner != manager)?;
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
                self.0.remove(&path);
            } else {
                self.0.insert(path, manager.to_string());
            }
        }
    }

    /// Gives `manager` every field an update changed, and forgets fields it removed.
    pub fn record_update(&mut self, manager: &str, before: &Value, after: &Value) {
        let old = leaves(before);
        let new = leaves(after);
        let still_there = |path: &FieldPath| new.iter().any(|(p, _)| p == path);
        for (path, _) in &old {
            if !still_there(path) {
                self.0.remove(path);
            }
        }
        for (path, value) in new {
            if !old.iter().any(|(p, v)| *p == path && *v == value) {
                self.0.insert(path, manager.to_string());
            }
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
