//! Deletion: delete and deletecollection with preconditions and propagation policies,
//! finalizers holding an object with `deletionTimestamp` set, namespace deletion and the
//! asynchronous namespace controller, and deleting a CRD's objects with it.
//!
//! ```text
//! delete --preconditions--> Orphan | Foreground | Background --finalizers?--> deletionTimestamp | removed --> collector
//! namespace delete --> Terminating --run_namespace_controller (after a delay)--> contents deleted --> namespace removed
//! ```

use serde_json::{Value, json};

use super::super::{
    resources::{ResourceInfo, StoreKey},
    status::{ApiError, deleted},
    store::ObjectKey,
};
use super::{
    Answer, DeleteOptions, ListOptions, State, finalizers_of, is_deleting, metadata_mut, name_of,
    now, present, uid_of,
};

impl State {
    /// Delete an object: at once, or held by finalizers with `deletionTimestamp` set.
    pub fn delete(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Answer, ApiError> {
        let key = ObjectKey::new(namespace, name);
        let resource = info.store_key();
        let object = self
            .store
            .get(&resource, &key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        if let Some(uid) = &options.uid
            && uid != uid_of(&object)
        {
            return Err(ApiError::precondition_failed(
                info,
                name,
                &format!(
                    "UID in precondition: {uid}, UID in object meta: {}",
                    uid_of(&object)
                ),
            ));
        }
        if let Some(version) = &options.resource_version
            && Some(version.as_str())
                != object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::precondition_failed(
                info,
                name,
                &format!(
                    "ResourceVersion in precondition: {version}, ResourceVersion in object meta: {}",
                    object
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                ),
            ));
        }
        let policy = options
            .propagation_policy
            .as_deref()
            .unwrap_or("Background");
        if !matches!(policy, "Background" | "Foreground" | "Orphan") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{policy}\": supported values: \"Background\", \"Foreground\", \"Orphan\""
            )));
        }
        if options.dry_run {
            return Ok(Answer::ok(present(info, &object)));
        }
        if info.group.is_empty() && info.plural == "namespaces" {
            return Ok(self.delete_namespace(info, &key, object));
        }
        if info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions" {
            self.delete_crd_instances(&object);
        }
        let uid = uid_of(&object).to_owned();
        match policy {
            "Orphan" => self.orphan_dependents(&uid),
            "Foreground" => self.delete_dependents(&uid),
            _ => {}
        }
        let Some(mut object) = self.store.get(&resource, &key).cloned() else {
            return Ok(Answer::ok(deleted(info, name, &uid)));
        };
        let waits_for_dependents = policy == "Foreground" && self.has_dependents(&uid);
        let mut changed = false;
        if waits_for_dependents
            && !finalizers_of(&object)
                .iter()
                .any(|f| f == "foregroundDeletion")
        {
            let mut finalizers = finalizers_of(&object);
            finalizers.push("foregroundDeletion".to_owned());
            object["metadata"]["finalizers"] = json!(finalizers);
            self.foreground.push((resource.clone(), key.clone()));
            changed = true;
        }
        if finalizers_of(&object).is_empty() {
            self.remove(&resource, &key);
            self.collect_garbage();
            return Ok(Answer::ok(deleted(info, name, &uid)));
        }
        if !is_deleting(&object) {
            let metadata = metadata_mut(&mut object);
            metadata.insert("deletionTimestamp".to_owned(), json!(now()));
            metadata.insert("deletionGracePeriodSeconds".to_owned(), json!(0));
            // As upstream's BeforeDelete: only an object that keeps a generation gets one more.
            if let Some(generation) = metadata.get("generation").and_then(Value::as_i64) {
                metadata.insert("generation".to_owned(), json!(generation + 1));
            }
            changed = true;
        }
        if changed {
            object = self.store.put(&resource, key, object);
        }
        Ok(Answer::ok(present(info, &object)))
    }

    /// Delete every object of a collection that matches the selectors.
    pub fn delete_collection(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        list: &ListOptions,
        options: &DeleteOptions,
    ) -> Result<Answer, ApiError> {
        let names: Vec<ObjectKey> = self
            .store
            .iter(&info.store_key())
            .filter(|(key, _)| namespace.is_none_or(|namespace| key.namespace == namespace))
            .filter(|(_, object)| list.labels.matches(object) && list.fields.matches(object))
            .map(|(key, _)| key.clone())
            .collect();
        let mut items = Vec::new();
        for key in names {
            let namespace = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
            if let Ok(answer) = self.delete(info, namespace, &key.name, options) {
                items.push(answer.body);
            }
        }
        Ok(Answer::ok(json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version(),
            "metadata": {"resourceVersion": self.store.revision().to_string()},
            "items": items,
        })))
    }

    fn delete_namespace(
        &mut self,
        info: &ResourceInfo,
        key: &ObjectKey,
        mut namespace: Value,
    ) -> Answer {
        let resource = info.store_key();
        if !is_deleting(&namespace) {
            let metadata = metadata_mut(&mut namespace);
            metadata.insert("deletionTimestamp".to_owned(), json!(now()));
            metadata.insert("deletionGracePeriodSeconds".to_owned(), json!(0));
            namespace["status"] = json!({"phase": "Terminating"});
            namespace = self.store.put(&resource, key.clone(), namespace);
            self.terminating
                .push((key.name.clone(), std::time::Instant::now()));
            self.collect_garbage();
        }
        match self.store.get(&resource, key) {
            Some(current) => Answer::ok(present(info, current)),
            None => Answer::ok(present(info, &namespace)),
        }
    }

    /// The namespace controller, run periodically: once a namespace has been terminating for
    /// `delay`, delete what it holds (the namespace goes when that is gone). Asynchronous like
    /// upstream's, so `kubectl delete -f` of a namespace and the objects in it succeeds.
    pub fn run_namespace_controller(&mut self, delay: std::time::Duration) {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.terminating)
            .into_iter()
            .partition(|(_, since)| since.elapsed() >= delay);
        self.terminating = waiting;
        if due.is_empty() {
            return;
        }
        for (namespace, _) in due {
            self.empty_namespace(&namespace);
        }
        self.collect_garbage();
    }

    /// Delete what a terminating namespace holds (finalizers hold objects back).
    fn empty_namespace(&mut self, namespace: &str) {
        let mut targets = Vec::new();
        for resource in self.store.resources() {
            let Some(info) = self.catalog.any_version(&resource).cloned() else {
                continue;
            };
            if !info.namespaced {
                continue;
            }
            for (key, object) in self.store.iter(&resource) {
                if key.namespace == namespace && !is_deleting(object) {
                    targets.push((info.clone(), key.clone()));
                }
            }
        }
        for (info, key) in targets {
            let _ = self.delete(
                &info,
                Some(&key.namespace),
                &key.name,
                &DeleteOptions::default(),
            );
        }
    }

    /// Deleting a CRD deletes every object of its resources.
    fn delete_crd_instances(&mut self, crd: &Value) {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let resource = StoreKey {
            group: group.to_owned(),
            plural: plural.to_owned(),
        };
        let removed = self.store.remove_all(&resource);
        self.catalog.unregister_crd(name_of(crd));
        self.pending_uids
            .extend(removed.iter().map(|object| uid_of(object).to_owned()));
    }

    pub(super) fn remove(&mut self, resource: &StoreKey, key: &ObjectKey) -> Option<Value> {
        let removed = self.store.remove(resource, key)?;
        self.pending_uids.push(uid_of(&removed).to_owned());
        self.mirror_event(resource, key, None);
        Some(removed)
    }
}
