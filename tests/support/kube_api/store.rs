//! The fake's state: objects by kind, namespace and name; the global resourceVersion counter every
//! write bumps; and the recent history of changes that watches replay when they resume from a
//! resourceVersion.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::deployments;
use super::owners::FieldOwners;
use super::resources::{Kind, stored_endpoint};
use super::time;

/// How many changes the store remembers for resuming watches; older resourceVersions get 410 Gone.
const HISTORY_LIMIT: usize = 1000;

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

/// The type of a watch event, as it is spelled on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One write, as watches see it.
#[derive(Debug)]
pub(super) struct Change {
    pub revision: u64,
    pub key: ObjectKey,
    pub change_type: ChangeType,
    /// The object after the write; for a deletion, its last state.
    pub object: Value,
    /// The object before a modification, so a watch with a selector can tell an object leaving its
    /// selection.
    pub previous: Option<Value>,
}

/// The changes still to come, as a watch receives them.
pub(super) type LiveChanges = broadcast::Receiver<Arc<Change>>;

/// A stored object and who owns its fields.
#[derive(Debug)]
struct Entry {
    object: Value,
    owners: FieldOwners,
}

/// All objects, the resourceVersion counter and the change history.
#[derive(Debug)]
pub(super) struct Store {
    entries: BTreeMap<ObjectKey, Entry>,
    revision: u64,
    history: VecDeque<Arc<Change>>,
    /// The oldest resourceVersion a watch can resume from: every change after it is still in
    /// `history`.
    history_floor: u64,
    created: u64,
    deployment_controller: bool,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Store {
    pub fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
            revision: 1,
            history: VecDeque::new(),
            history_floor: 1,
            created: 0,
            deployment_controller: true,
            changes: broadcast::channel(HISTORY_LIMIT).0,
        }
    }

    /// The current resourceVersion: that of the latest write.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.entries.get(key).map(|entry| &entry.object)
    }

    pub fn owners(&self, key: &ObjectKey) -> Option<&FieldOwners> {
        self.entries.get(key).map(|entry| &entry.owners)
    }

    /// The objects of `kind`, in one namespace or all, ordered by namespace then name.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<&Value> {
        self.entries
            .iter()
            .filter(|(key, _)| key.kind == kind && namespace.is_none_or(|ns| key.namespace == ns))
            .map(|(_, entry)| &entry.object)
            .collect()
    }

    /// Turns the built-in Deployment controller on or off: when on, a Deployment's status follows
    /// its spec at once.
    pub fn set_deployment_controller(&mut self, enabled: bool) {
        self.deployment_controller = enabled;
    }

    /// Stores a new object under `key`, which must be free, stamping uid, creationTimestamp,
    /// generation and resourceVersion; a `metadata.generateName` without a name gets a generated
    /// name.
    pub fn create(&mut self, key: ObjectKey, mut object: Value, owners: FieldOwners) -> Value {
        self.created += 1;
        let uid = format!("6a7e0c52-0000-4000-8000-{:012x}", self.created);
        let metadata = &mut object["metadata"];
        metadata["name"] = json!(key.name);
        metadata["namespace"] = json!(key.namespace);
        metadata["uid"] = json!(uid);
        metadata["creationTimestamp"] = json!(time::now());
        if key.kind.has_scale() {
            metadata["generation"] = json!(1);
        }
        self.commit(key, ChangeType::Added, object, owners, None)
    }

    /// Replaces the object under `key`, which must exist, keeping its identity and bumping
    /// `generation` when the spec changed.
    pub fn update(&mut self, key: ObjectKey, mut object: Value, owners: FieldOwners) -> Value {
        let previous = self.entries.get(&key).map(|entry| entry.object.clone()).unwrap_or(Value::Null);
        let kept = previous.get("metadata").cloned().unwrap_or_default();
        if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
            for field in ["uid", "creationTimestamp", "generation", "name", "namespace"] {
                match kept.get(field) {
                    Some(value) => metadata.insert(field.into(), value.clone()),
                    None => metadata.remove(field),
                };
            }
        }
        if key.kind.has_scale() && object.get("spec") != previous.get("spec") {
            let generation = previous.pointer("/metadata/generation").and_then(Value::as_u64).unwrap_or(0);
            object["metadata"]["generation"] = json!(generation + 1);
        }
        self.commit(key, ChangeType::Modified, object, owners, Some(previous))
    }

    /// Removes the object under `key`, returning its last state.
    pub fn delete(&mut self, key: &ObjectKey) -> Option<Value> {
        let entry = self.entries.remove(key)?;
        self.revision += 1;
        let mut object = entry.object;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.record(key.clone(), ChangeType::Deleted, object.clone(), None);
        Some(object)
    }

    /// The changes after `since` and a receiver for those still to come, or `Err(oldest)` when the
    /// history no longer reaches back to `since`. Taken under the store's lock, so nothing falls
    /// between the two.
    pub fn changes_since(&self, since: u64) -> Result<(Vec<Arc<Change>>, LiveChanges), u64> {
        if since < self.history_floor {
            return Err(self.history_floor);
        }
        let backlog = self.history.iter().filter(|c| c.revision > since).cloned().collect();
        Ok((backlog, self.subscribe()))
    }

    /// A receiver for the changes after the current resourceVersion.
    pub fn subscribe(&self) -> LiveChanges {
        self.changes.subscribe()
    }

    /// Forgets the change history, so a watch resuming from any earlier resourceVersion gets 410
    /// Gone, as after an etcd compaction.
    pub fn compact(&mut self) {
        self.history.clear();
        self.history_floor = self.revision;
    }

    fn commit(
        &mut self,
        key: ObjectKey,
        change_type: ChangeType,
        mut object: Value,
        owners: FieldOwners,
        previous: Option<Value>,
    ) -> Value {
        let endpoint = stored_endpoint(key.kind);
        object["apiVersion"] = json!(endpoint.api_version());
        object["kind"] = json!(endpoint.kind_name);
        if key.kind.has_scale() && self.deployment_controller {
            deployments::settle_status(key.kind, &mut object);
        }
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        if let Value::Object(metadata) = &mut object["metadata"] {
            match owners.managed_fields(&endpoint.api_version()) {
                Some(managed) => metadata.insert("managedFields".into(), managed),
                None => metadata.remove("managedFields"),
            };
        }
        self.entries.insert(key.clone(), Entry { object: object.clone(), owners });
        self.record(key, change_type, object.clone(), previous);
        object
    }

    fn record(&mut self, key: ObjectKey, change_type: ChangeType, object: Value, previous: Option<Value>) {
        let change = Arc::new(Change { revision: self.revision, key, change_type, object, previous });
        if self.history.len() == HISTORY_LIMIT
            && let Some(dropped) = self.history.pop_front()
        {
            self.history_floor = dropped.revision;
        }
        self.history.push_back(change.clone());
        // Nobody watching is not an error.
        let _ = self.changes.send(change);
    }
}
