//! The generic object store: every object of every resource, one monotonic `resourceVersion`
//! counter, and the history of changes that watches resume from.
//!
//! ```text
//! write --> revision += 1 --> objects[resource][namespace/name] = object
//!                         \-> history (bounded) --> broadcast to open watches
//! ```
//!
//! The history keeps every change after `compacted`: a watch or an exact list from a
//! `resourceVersion` older than that answers 410 Gone, as the real server does once etcd has
//! compacted. Lists at an older revision are rebuilt by undoing the newer changes, so
//! paginated lists are consistent snapshots, like etcd's.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    sync::Arc,
};

use serde_json::Value;
use tokio::sync::broadcast;

use super::resources::StoreKey;

/// Where one object lives inside its resource: namespace (empty when cluster-scoped) and name.
/// Ordered as etcd orders keys, so lists come out by namespace, then name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `namespace/name`.
    #[must_use]
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        ObjectKey {
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name.to_owned(),
        }
    }
}

/// What a change did, as a watch event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Removed from the store.
    Deleted,
}

impl ChangeType {
    /// The watch event `type`.
    #[must_use]
    pub fn event_type(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Clone, Debug)]
pub struct Change {
    /// The revision the change was committed at (its object's `resourceVersion`).
    pub revision: u64,
    /// Added, modified or deleted.
    pub change: ChangeType,
    /// The resource.
    pub resource: StoreKey,
    /// The object's key.
    pub key: ObjectKey,
    /// The object after the change (for a delete: its last state, at the delete's revision).
    pub object: Value,
    /// The object before the change, to rebuild older revisions.
    pub previous: Option<Value>,
}

/// A `resourceVersion` older than the retained history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too old resource version: {requested} ({oldest})")]
pub struct Expired {
    /// The revision asked for.
    pub requested: u64,
    /// The oldest revision the history can serve.
    pub oldest: u64,
}

/// The objects, the revision counter and the history.
#[derive(Debug)]
pub struct Store {
    revision: u64,
    objects: HashMap<StoreKey, BTreeMap<ObjectKey, Value>>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    compacted: u64,
    events: broadcast::Sender<Arc<Change>>,
    /// The uid of every stored object (the garbage collector asks whether an owner exists).
    uids: HashSet<String>,
    /// The objects that name each uid as an owner, kept with every change, so that the garbage
    /// collector finds dependents without scanning the store (as upstream's keeps a graph).
    dependents: HashMap<String, BTreeSet<(StoreKey, ObjectKey)>>,
    /// The namespaces being deleted (the garbage collector finishes them once empty).
    terminating: BTreeSet<ObjectKey>,
}

impl Store {
    /// An empty store keeping at most `history_limit` changes.
    #[must_use]
    pub fn new(history_limit: usize, events: broadcast::Sender<Arc<Change>>) -> Self {
        Store {
            revision: 1,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 1,
            events,
            uids: HashSet::new(),
            dependents: HashMap::new(),
            terminating: BTreeSet::new(),
        }
    }

    /// The latest committed revision.
    #[must_use]
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The oldest revision a watch can resume from.
    #[must_use]
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// One object.
    #[must_use]
    pub fn get(&self, resource: &StoreKey, key: &ObjectKey) -> Option<&Value> {
        self.objects
            .get(resource)
            .and_then(|objects| objects.get(key))
    }

    /// Every object of a resource, in key order.
    pub fn iter(&self, resource: &StoreKey) -> impl Iterator<Item = (&ObjectKey, &Value)> {
        self.objects
            .get(resource)
            .into_iter()
            .flat_map(BTreeMap::iter)
    }

    /// Whether a resource holds an object in `namespace` (a range lookup, not a scan).
    #[must_use]
    pub fn holds_namespace(&self, resource: &StoreKey, namespace: &str) -> bool {
        let start = ObjectKey {
            namespace: namespace.to_owned(),
            name: String::new(),
        };
        self.objects.get(resource).is_some_and(|objects| {
            objects
                .range(start..)
                .next()
                .is_some_and(|(key, _)| key.namespace == namespace)
        })
    }

    /// Whether an object with this uid is stored.
    #[must_use]
    pub fn holds_uid(&self, uid: &str) -> bool {
        self.uids.contains(uid)
    }

    /// Every stored object that names `uid` in its owner references, by resource then key.
    #[must_use]
    pub fn dependents_of(&self, uid: &str) -> Vec<(StoreKey, ObjectKey)> {
        self.dependents
            .get(uid)
            .map(|found| found.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The namespaces that carry a `deletionTimestamp`.
    #[must_use]
    pub fn terminating_namespaces(&self) -> Vec<ObjectKey> {
        self.terminating.iter().cloned().collect()
    }

    /// Add (`present`) or remove an object from the uid, owner and terminating indexes.
    fn index(&mut self, resource: &StoreKey, key: &ObjectKey, object: &Value, present: bool) {
        if resource.group.is_empty() && resource.plural == "namespaces" {
            let deleting = object.pointer("/metadata/deletionTimestamp").is_some();
            if present && deleting {
                self.terminating.insert(key.clone());
            } else {
                self.terminating.remove(key);
            }
        }
        if let Some(uid) = object.pointer("/metadata/uid").and_then(Value::as_str) {
            if present {
                self.uids.insert(uid.to_owned());
            } else {
                self.uids.remove(uid);
            }
        }
        let owners = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|owner| owner.get("uid").and_then(Value::as_str));
        for owner in owners {
            if present {
                self.dependents
                    .entry(owner.to_owned())
                    .or_default()
                    .insert((resource.clone(), key.clone()));
            } else if let Some(found) = self.dependents.get_mut(owner) {
                found.remove(&(resource.clone(), key.clone()));
                if found.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
    }

    /// The resources that hold at least one object.
    #[must_use]
    pub fn resources(&self) -> Vec<StoreKey> {
        let mut keys: Vec<StoreKey> = self
            .objects
            .iter()
            .filter(|(_, objects)| !objects.is_empty())
            .map(|(key, _)| key.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Store an object (create or replace) at a new revision, which becomes its
    /// `resourceVersion`. Returns the stored object.
    pub fn put(&mut self, resource: &StoreKey, key: ObjectKey, mut object: Value) -> Value {
        self.revision += 1;
        set_resource_version(&mut object, self.revision);
        let previous = self
            .objects
            .entry(resource.clone())
            .or_default()
            .insert(key.clone(), object.clone());
        if let Some(previous) = &previous {
            self.index(resource, &key, previous, false);
        }
        self.index(resource, &key, &object, true);
        let change = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.record(Change {
            revision: self.revision,
            change,
            resource: resource.clone(),
            key,
            object: object.clone(),
            previous,
        });
        object
    }

    /// Remove an object at a new revision. Returns its last state, carrying the delete's
    /// revision as `resourceVersion` (as the DELETED watch event does).
    pub fn remove(&mut self, resource: &StoreKey, key: &ObjectKey) -> Option<Value> {
        let previous = self.objects.get_mut(resource)?.remove(key)?;
        self.index(resource, key, &previous, false);
        self.revision += 1;
        let mut object = previous.clone();
        set_resource_version(&mut object, self.revision);
        self.record(Change {
            revision: self.revision,
            change: ChangeType::Deleted,
            resource: resource.clone(),
            key: key.clone(),
            object: object.clone(),
            previous: Some(previous),
        });
        Some(object)
    }

    /// Remove every object of a resource (its CRD is gone), each as a delete.
    pub fn remove_all(&mut self, resource: &StoreKey) -> Vec<Value> {
        let keys: Vec<ObjectKey> = self.iter(resource).map(|(key, _)| key.clone()).collect();
        keys.iter()
            .filter_map(|key| self.remove(resource, key))
            .collect()
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(Arc::clone(&change));
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.revision;
            }
        }
        // No receiver is not an error: nobody watches.
        let _ = self.events.send(change);
    }

    /// Forget the history: every `resourceVersion` issued so far becomes too old, so the next
    /// watch or exact list from one of them answers 410 Gone. The counter moves on by one, as
    /// it would when another client writes.
    pub fn compact(&mut self) {
        self.revision += 1;
        self.history.clear();
        self.compacted = self.revision;
    }

    /// Every change after `revision`, oldest first.
    pub fn changes_since(&self, revision: u64) -> Result<Vec<Arc<Change>>, Expired> {
        if revision < self.compacted {
            return Err(Expired {
                requested: revision,
                oldest: self.compacted,
            });
        }
        Ok(self
            .history
            .iter()
            .filter(|change| change.revision > revision)
            .cloned()
            .collect())
    }

    /// The objects of a resource as they were at `revision`: the live map when nothing changed
    /// since, else a copy with the newer changes undone.
    pub fn view_at(
        &self,
        resource: &StoreKey,
        revision: u64,
    ) -> Result<Cow<'_, BTreeMap<ObjectKey, Value>>, Expired> {
        static EMPTY: BTreeMap<ObjectKey, Value> = BTreeMap::new();
        let live = self.objects.get(resource).unwrap_or(&EMPTY);
        if revision >= self.revision {
            return Ok(Cow::Borrowed(live));
        }
        let newer = self.changes_since(revision)?;
        let newer: Vec<&Arc<Change>> = newer
            .iter()
            .filter(|change| &change.resource == resource)
            .collect();
        if newer.is_empty() {
            return Ok(Cow::Borrowed(live));
        }
        let mut view = live.clone();
        for change in newer.iter().rev() {
            match &change.previous {
                Some(previous) => {
                    view.insert(change.key.clone(), previous.clone());
                }
                None => {
                    view.remove(&change.key);
                }
            }
        }
        Ok(Cow::Owned(view))
    }

    /// A receiver of every future change.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.events.subscribe()
    }
}

fn set_resource_version(object: &mut Value, revision: u64) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert(
            "resourceVersion".to_owned(),
            Value::String(revision.to_string()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(limit: usize) -> Store {
        Store::new(limit, broadcast::channel(16).0)
    }

    fn pods() -> StoreKey {
        StoreKey {
            group: String::new(),
            plural: "pods".to_owned(),
        }
    }

    #[test]
    fn older_revisions_are_rebuilt_from_history() {
        let mut store = store(100);
        let key = ObjectKey::new(Some("n"), "a");
        store.put(
            &pods(),
            key.clone(),
            json!({"metadata": {"name": "a"}, "v": 1}),
        );
        let first = store.revision();
        store.put(
            &pods(),
            key.clone(),
            json!({"metadata": {"name": "a"}, "v": 2}),
        );
        store.put(
            &pods(),
            ObjectKey::new(Some("n"), "b"),
            json!({"metadata": {"name": "b"}}),
        );
        let view = store.view_at(&pods(), first).expect("retained");
        assert_eq!(view.len(), 1);
        assert_eq!(
            view.get(&key).and_then(|object| object.get("v")),
            Some(&json!(1))
        );
    }

    #[test]
    fn history_beyond_the_limit_is_expired() {
        let mut store = store(2);
        let start = store.revision();
        for name in ["a", "b", "c"] {
            store.put(
                &pods(),
                ObjectKey::new(Some("n"), name),
                json!({"metadata": {}}),
            );
        }
        assert!(store.changes_since(start).is_err());
        assert_eq!(
            store.changes_since(store.revision() - 2).map(|c| c.len()),
            Ok(2)
        );
        store.compact();
        assert!(store.changes_since(store.revision() - 1).is_err());
        assert_eq!(
            store.changes_since(store.revision()).map(|c| c.len()),
            Ok(0)
        );
    }
}
