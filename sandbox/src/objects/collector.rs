//! The garbage collector: owner references followed to a fixed point after every write, as
//! kube-controller-manager's collector and namespace controller would. Dependents of removed
//! owners are deleted (or lose the reference when another owner remains), objects written with
//! owners that do not exist are collected, `Orphan` strips references, `Foreground` deletes
//! dependents first, empty terminating namespaces go.
//!
//! ```text
//! removed uids, dangling owners --collect_garbage--> delete dependents | drop references --> finish_deletions
//! ```

use serde_json::{Value, json};

use super::super::{resources::StoreKey, store::ObjectKey};
use super::{DeleteOptions, State, finalizers_of, metadata_mut, uid_of};

impl State {
    /// Every stored object that names `uid` as an owner (from the store's owner index).
    fn dependents(&self, uid: &str) -> Vec<(StoreKey, ObjectKey)> {
        self.store.dependents_of(uid)
    }

    pub(super) fn has_dependents(&self, uid: &str) -> bool {
        !self.dependents(uid).is_empty()
    }

    /// Strip the owner reference to `uid` from its dependents (`propagationPolicy: Orphan`).
    pub(super) fn orphan_dependents(&mut self, uid: &str) {
        for (resource, key) in self.dependents(uid) {
            self.drop_owner_reference(&resource, key, uid);
        }
    }

    fn drop_owner_reference(&mut self, resource: &StoreKey, key: ObjectKey, uid: &str) {
        let Some(mut object) = self.store.get(resource, &key).cloned() else {
            return;
        };
        let remaining: Vec<Value> = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|owners| {
                owners
                    .iter()
                    .filter(|owner| owner.get("uid").and_then(Value::as_str) != Some(uid))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let metadata = metadata_mut(&mut object);
        if remaining.is_empty() {
            metadata.remove("ownerReferences");
        } else {
            metadata.insert("ownerReferences".to_owned(), Value::Array(remaining));
        }
        self.store.put(resource, key, object);
    }

    /// Delete the dependents of `uid` now (`propagationPolicy: Foreground`).
    pub(super) fn delete_dependents(&mut self, uid: &str) {
        for (resource, key) in self.dependents(uid) {
            let Some(info) = self.catalog.any_version(&resource).cloned() else {
                continue;
            };
            let namespace = (!key.namespace.is_empty()).then_some(key.namespace.clone());
            let _ = self.delete(
                &info,
                namespace.as_deref(),
                &key.name,
                &DeleteOptions::default(),
            );
        }
    }

    /// The uids an object names as owners that no stored object has.
    pub(super) fn dangling_owners(&self, object: &Value) -> Vec<String> {
        object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|owner| owner.get("uid").and_then(Value::as_str))
            .filter(|uid| !self.store.holds_uid(uid))
            .map(str::to_owned)
            .collect()
    }

    /// An object written with owners that do not exist, as upstream's garbage collector treats
    /// it: deleted when no owner exists, else only the dangling references are removed.
    fn collect_dangling(&mut self, resource: &StoreKey, key: &ObjectKey) {
        let Some(object) = self.store.get(resource, key) else {
            return;
        };
        let dangling = self.dangling_owners(object);
        if dangling.is_empty() {
            return;
        }
        let owners = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if dangling.len() < owners {
            for uid in &dangling {
                self.drop_owner_reference(resource, key.clone(), uid);
            }
        } else if let Some(info) = self.catalog.any_version(resource).cloned() {
            let namespace = (!key.namespace.is_empty()).then_some(key.namespace.clone());
            let _ = self.delete(
                &info,
                namespace.as_deref(),
                &key.name,
                &DeleteOptions::default(),
            );
        }
    }

    /// The garbage collector, run to a fixed point after every write: dependents of removed
    /// owners are deleted (or lose the reference when another owner remains), so are objects
    /// written with owners that do not exist (kube-controller-manager's collector looks such an
    /// owner up, finds none, and does the same), terminating namespaces that are empty go, and
    /// foreground deletions whose dependents are gone finish.
    pub(super) fn collect_garbage(&mut self) {
        for _round in 0..10_000 {
            if let Some((resource, key)) = self.dangling.pop() {
                self.collect_dangling(&resource, &key);
                continue;
            }
            if let Some(uid) = self.pending_uids.pop() {
                let dependents = self.dependents(&uid);
                if dependents.is_empty() {
                    continue;
                }
                for (resource, key) in dependents {
                    let Some(object) = self.store.get(&resource, &key) else {
                        continue;
                    };
                    let other_owner = object
                        .pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|owners| {
                            owners.iter().any(|owner| {
                                owner
                                    .get("uid")
                                    .and_then(Value::as_str)
                                    .is_some_and(|other| {
                                        other != uid && self.store.holds_uid(other)
                                    })
                            })
                        });
                    if other_owner {
                        self.drop_owner_reference(&resource, key, &uid);
                    } else if let Some(info) = self.catalog.any_version(&resource).cloned() {
                        let namespace =
                            (!key.namespace.is_empty()).then_some(key.namespace.clone());
                        let _ = self.delete(
                            &info,
                            namespace.as_deref(),
                            &key.name,
                            &DeleteOptions::default(),
                        );
                    }
                }
                continue;
            }
            if !self.finish_deletions() {
                return;
            }
        }
    }

    /// Finish one pending deletion that nothing holds any more. Returns whether it did.
    fn finish_deletions(&mut self) -> bool {
        let namespaces = StoreKey {
            group: String::new(),
            plural: "namespaces".to_owned(),
        };
        let terminating: Vec<ObjectKey> = self
            .store
            .terminating_namespaces()
            .into_iter()
            .filter(|key| {
                self.store
                    .get(&namespaces, key)
                    .is_some_and(|object| finalizers_of(object).is_empty())
            })
            .collect();
        for key in terminating {
            let occupied = self.store.resources().iter().any(|resource| {
                self.catalog
                    .any_version(resource)
                    .is_some_and(|info| info.namespaced)
                    && self.store.holds_namespace(resource, &key.name)
            });
            if !occupied {
                self.remove(&namespaces, &key);
                return true;
            }
        }
        let waiting = std::mem::take(&mut self.foreground);
        let mut finished = false;
        for (resource, key) in waiting {
            let Some(mut object) = self.store.get(&resource, &key).cloned() else {
                continue;
            };
            if finished || self.has_dependents(uid_of(&object)) {
                self.foreground.push((resource, key));
                continue;
            }
            let remaining: Vec<String> = finalizers_of(&object)
                .into_iter()
                .filter(|finalizer| finalizer != "foregroundDeletion")
                .collect();
            if remaining.is_empty() {
                self.remove(&resource, &key);
            } else {
                object["metadata"]["finalizers"] = json!(remaining);
                self.store.put(&resource, key, object);
            }
            finished = true;
        }
        finished
    }
}
