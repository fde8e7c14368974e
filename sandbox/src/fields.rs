//! Managed fields: which manager owns which field, in the `fieldsV1` format of
//! `metadata.managedFields`.
//!
//! ```text
//! object + schema --field_set--> { f:spec { f:mode, f:tiers { k:{"name":"web"} { ., f:name, f:podSelector } } } }
//! ```
//!
//! Path elements are the upstream ones: `f:<field>` for a field, `k:{"name":"x"}` for an item of
//! a list keyed by its map keys (`x-kubernetes-list-type: map`), `v:<json>` for an item of a
//! set, and a whole atomic list or atomic struct is one leaf. A node that is itself owned and
//! also has owned children carries `.`. Fields the server sets (`metadata.uid`,
//! `resourceVersion`, `generation`, timestamps, `managedFields`) and `apiVersion`/`kind` are
//! never tracked; `status` is tracked only by writes to the `/status` subresource of resources
//! that have one.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::{Map, Value, json};

use super::{
    resources::{ResourceInfo, metadata_schema},
    structure::{ListType, child_schema, is_atomic_object, is_map, items_schema, list_type},
};

/// A set of field paths, as a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

/// A path of elements: `["f:spec", "f:tiers", "k:{\"name\":\"web\"}"]`.
pub type FieldPath = Vec<String>;

impl FieldSet {
    /// Parse `fieldsV1`.
    #[must_use]
    pub fn from_fields_v1(value: &Value) -> Self {
        let mut set = FieldSet::default();
        if let Some(map) = value.as_object() {
            for (key, child) in map {
                if key == "." {
                    set.member = true;
                } else {
                    let mut parsed = FieldSet::from_fields_v1(child);
                    if parsed.children.is_empty() {
                        parsed.member = true;
                    }
                    set.children.insert(key.clone(), parsed);
                }
            }
        }
        set
    }

    /// Render as `fieldsV1`.
    #[must_use]
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".to_owned(), json!({}));
        }
        for (key, child) in &self.children {
            map.insert(key.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    /// No member at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Every member path.
    #[must_use]
    pub fn members(&self) -> Vec<FieldPath> {
        let mut paths = Vec::new();
        self.collect(&mut Vec::new(), &mut paths);
        paths
    }

    fn collect(&self, prefix: &mut FieldPath, paths: &mut Vec<FieldPath>) {
        if self.member && !prefix.is_empty() {
            paths.push(prefix.clone());
        }
        for (key, child) in &self.children {
            prefix.push(key.clone());
            child.collect(prefix, paths);
            prefix.pop();
        }
    }

    fn node(&self, path: &[String]) -> Option<&FieldSet> {
        let mut node = self;
        for element in path {
            node = node.children.get(element)?;
        }
        Some(node)
    }

    /// Whether `path` is a member.
    #[must_use]
    pub fn contains(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|node| node.member)
    }

    /// Whether `path` is a member with members below it (a keyed item, a map): such members
    /// name an identity, never a value, so they never conflict.
    #[must_use]
    pub fn is_leaf(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|node| node.children.is_empty())
    }

    /// Whether `path` or anything below it is a member.
    #[must_use]
    pub fn owns_at_or_below(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|node| !node.is_empty())
    }

    /// Add a member.
    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for element in path {
            node = node.children.entry(element.clone()).or_default();
        }
        node.member = true;
    }

    /// Remove a member (not what is below it), pruning emptied branches.
    pub fn remove(&mut self, path: &[String]) {
        fn go(node: &mut FieldSet, path: &[String]) {
            match path.split_first() {
                None => node.member = false,
                Some((first, rest)) => {
                    if let Some(child) = node.children.get_mut(first) {
                        go(child, rest);
                        if child.is_empty() {
                            node.children.remove(first);
                        }
                    }
                }
            }
        }
        go(self, path);
    }

    /// Add every member of `other`.
    pub fn union(&mut self, other: &FieldSet) {
        for path in other.members() {
            self.insert(&path);
        }
    }

    /// The members of `self` that are not members of `other`.
    #[must_use]
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut result = FieldSet::default();
        for path in self.members() {
            if !other.contains(&path) {
                result.insert(&path);
            }
        }
        result
    }

    /// A path in the `.spec.mode` notation of conflict messages.
    #[must_use]
    pub fn display(path: &[String]) -> String {
        let mut text = String::new();
        for element in path {
            if let Some(field) = element.strip_prefix("f:") {
                text.push('.');
                text.push_str(field);
            } else if let Some(key) = element.strip_prefix("k:") {
                let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(field, value)| format!("{field}={value}"))
                    .collect();
                text.push('[');
                text.push_str(&parts.join(","));
                text.push(']');
            } else if let Some(value) = element.strip_prefix("v:") {
                let _ = write!(text, "[={value}]");
            } else if let Some(index) = element.strip_prefix("i:") {
                let _ = write!(text, "[{index}]");
            }
        }
        text
    }
}

/// The `k:` element of a keyed list item.
#[must_use]
pub fn key_element(item: &Value, keys: &[String]) -> String {
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    let parts: Vec<String> = sorted
        .iter()
        .filter_map(|key| {
            item.get(key.as_str())
                .map(|value| format!("{}:{value}", Value::String((*key).clone())))
        })
        .collect();
    format!("k:{{{}}}", parts.join(","))
}

/// Which part of an object a write may touch and its managers track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The object itself: everything but status when the resource has a status subresource.
    Main {
        /// Whether status is excluded (the resource has a status subresource).
        without_status: bool,
    },
    /// The `/status` subresource: status only.
    Status,
}

impl Scope {
    /// The scope of a write to `subresource` of `info`.
    #[must_use]
    pub fn of(info: &ResourceInfo, subresource: Option<&str>) -> Self {
        match subresource {
            Some(_) => Scope::Status,
            None => Scope::Main {
                without_status: info.status_subresource,
            },
        }
    }

    /// The `subresource` of managedFields entries of this scope.
    #[must_use]
    pub fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Main { .. } => None,
            Scope::Status => Some("status"),
        }
    }
}

const TRACKED_METADATA: [&str; 5] = [
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "generateName",
];

/// The part of an object whose fields are tracked in a scope.
#[must_use]
pub fn tracked(object: &Value, scope: Scope) -> Value {
    let mut view = Map::new();
    let Some(map) = object.as_object() else {
        return Value::Object(view);
    };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                if let (Scope::Main { .. }, Some(metadata)) = (scope, value.as_object()) {
                    let kept: Map<String, Value> = metadata
                        .iter()
                        .filter(|(field, _)| TRACKED_METADATA.contains(&field.as_str()))
                        .map(|(field, value)| (field.clone(), value.clone()))
                        .collect();
                    if !kept.is_empty() {
                        view.insert(key.clone(), Value::Object(kept));
                    }
                }
            }
            "status" => {
                if scope
                    != (Scope::Main {
                        without_status: true,
                    })
                {
                    view.insert(key.clone(), value.clone());
                }
            }
            _ => {
                if scope != Scope::Status {
                    view.insert(key.clone(), value.clone());
                }
            }
        }
    }
    Value::Object(view)
}

/// The schema of a root field, with the standard metadata schema in place of the resource's.
#[must_use]
pub fn root_child_schema<'a>(
    schema: &'a Value,
    metadata: &'a Value,
    key: &str,
) -> Option<&'a Value> {
    if key == "metadata" {
        Some(metadata)
    } else {
        child_schema(Some(schema), key)
    }
}

/// The field set of an object in a scope.
#[must_use]
pub fn field_set(object: &Value, schema: &Value, scope: Scope) -> FieldSet {
    let metadata = metadata_schema();
    let mut set = FieldSet::default();
    if let Value::Object(map) = tracked(object, scope) {
        let mut path = Vec::new();
        for (key, value) in &map {
            path.push(format!("f:{key}"));
            collect(
                value,
                root_child_schema(schema, &metadata, key),
                &mut path,
                &mut set,
            );
            path.pop();
        }
    }
    set
}

fn collect(value: &Value, schema: Option<&Value>, path: &mut FieldPath, set: &mut FieldSet) {
    match value {
        Value::Object(map) => {
            if is_atomic_object(schema) || map.is_empty() {
                set.insert(path);
                return;
            }
            if is_map(schema) {
                set.insert(path);
            }
            for (key, child) in map {
                path.push(format!("f:{key}"));
                collect(child, child_schema(schema, key), path, set);
                path.pop();
            }
        }
        Value::Array(items) => match list_type(schema) {
            ListType::Atomic => set.insert(path),
            ListType::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    set.insert(path);
                    path.pop();
                }
            }
            ListType::Map(keys) => {
                let item_schema = items_schema(schema);
                for item in items {
                    path.push(key_element(item, &keys));
                    set.insert(path);
                    if let Some(fields) = item.as_object() {
                        for (key, child) in fields {
                            path.push(format!("f:{key}"));
                            collect(child, child_schema(item_schema, key), path, set);
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
        },
        _ => set.insert(path),
    }
}

/// The value at a field path, if the object has it.
#[must_use]
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut current = object;
    for element in path {
        current = step(current, element)?;
    }
    Some(current)
}

/// Whether two values are the same value as the real server compares them: numbers by what
/// they are worth (`65535` and `65535.0` are one number: Go writes a float64 without its `.0`,
/// so kubectl sends `65535` for what the sandbox may hold as `65535.0`), the rest as JSON.
#[must_use]
pub fn same_value(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => {
            left == right || ((left.is_f64() || right.is_f64()) && left.as_f64() == right.as_f64())
        }
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .zip(right)
                    .all(|(left, right)| same_value(left, right))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left.iter().all(|(key, value)| {
                    right.get(key).is_some_and(|other| same_value(value, other))
                })
        }
        _ => left == right,
    }
}

fn step<'a>(current: &'a Value, element: &str) -> Option<&'a Value> {
    if let Some(field) = element.strip_prefix("f:") {
        return current.get(field);
    }
    if let Some(key) = element.strip_prefix("k:") {
        let wanted: Map<String, Value> = serde_json::from_str(key).ok()?;
        return current.as_array()?.iter().find(|item| {
            wanted
                .iter()
                .all(|(field, value)| item.get(field.as_str()) == Some(value))
        });
    }
    if let Some(value) = element.strip_prefix("v:") {
        let wanted: Value = serde_json::from_str(value).ok()?;
        return current.as_array()?.iter().find(|item| **item == wanted);
    }
    if let Some(index) = element.strip_prefix("i:") {
        return current.get(index.parse::<usize>().ok()?);
    }
    None
}

/// Remove the value at a field path. Returns whether something was removed.
pub fn remove_at(object: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut current = object;
    for element in parents {
        let next = step_mut(current, element);
        match next {
            Some(next) => current = next,
            None => return false,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        return current
            .as_object_mut()
            .is_some_and(|map| map.remove(field).is_some());
    }
    let Some(items) = current.as_array_mut() else {
        return false;
    };
    let position = items
        .iter()
        .position(|item| step(&Value::Array(vec![item.clone()]), last).is_some());
    match position {
        Some(position) => {
            items.remove(position);
            true
        }
        None => false,
    }
}

fn step_mut<'a>(current: &'a mut Value, element: &str) -> Option<&'a mut Value> {
    if let Some(field) = element.strip_prefix("f:") {
        return current.get_mut(field);
    }
    let position = {
        let items = current.as_array()?;
        items
            .iter()
            .position(|item| step(&Value::Array(vec![item.clone()]), element).is_some())?
    };
    current.get_mut(position)
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedEntry {
    /// The field manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The API version of the request that wrote it.
    pub api_version: String,
    /// When the manager last changed its fields.
    pub time: String,
    /// `status` for writes to the status subresource.
    pub subresource: Option<String>,
    /// The fields it owns.
    pub fields: FieldSet,
}

impl ManagedEntry {
    /// Whether this entry is the one of `manager`'s `operation` in `scope`.
    #[must_use]
    pub fn is(&self, manager: &str, operation: &str, scope: Scope) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == scope.subresource()
    }

    /// Whether this entry tracks fields of `scope`.
    #[must_use]
    pub fn in_scope(&self, scope: Scope) -> bool {
        self.subresource.as_deref() == scope.subresource()
    }
}

/// The entries of an object's `metadata.managedFields`.
#[must_use]
pub fn read_managed(object: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|entry| {
            let text = |key: &str| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            ManagedEntry {
                manager: text("manager"),
                operation: text("operation"),
                api_version: text("apiVersion"),
                time: text("time"),
                subresource: entry
                    .get("subresource")
                    .and_then(Value::as_str)
                    .filter(|subresource| !subresource.is_empty())
                    .map(str::to_owned),
                fields: entry
                    .get("fieldsV1")
                    .map(FieldSet::from_fields_v1)
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// Write `metadata.managedFields`, leaving out entries that own nothing.
pub fn write_managed(object: &mut Value, entries: &[ManagedEntry]) {
    let rendered: Vec<Value> = entries
        .iter()
        .filter(|entry| !entry.fields.is_empty())
        .map(|entry| {
            // Upstream's `manager` is `omitempty` (though every write names one: `unknown`
            // when neither `fieldManager` nor a user agent gives a name).
            let mut value = json!({
                "operation": entry.operation,
                "apiVersion": entry.api_version,
                "time": entry.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": entry.fields.to_fields_v1(),
            });
            if !entry.manager.is_empty() {
                value["manager"] = json!(entry.manager);
            }
            if let Some(subresource) = &entry.subresource {
                value["subresource"] = json!(subresource);
            }
            value
        })
        .collect();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if rendered.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".to_owned(), Value::Array(rendered));
        }
    }
}

/// What a write by `manager` (create, update, patch: operation `Update`) does to the managed
/// fields: it takes the fields whose values it changed away from the others, and fields that
/// no longer exist leave every set.
#[allow(clippy::too_many_arguments)] // each argument is one fact of the write
pub fn track_update(
    entries: &mut Vec<ManagedEntry>,
    old: Option<&Value>,
    new: &Value,
    schema: &Value,
    scope: Scope,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    let new_set = field_set(new, schema, scope);
    let old_set = old
        .map(|old| field_set(old, schema, scope))
        .unwrap_or_default();
    let mut changed = FieldSet::default();
    for path in new_set.members() {
        let differs = if new_set.is_leaf(&path) {
            old.and_then(|old| value_at(old, &path)) != value_at(new, &path)
        } else {
            !old_set.contains(&path)
        };
        if differs {
            changed.insert(&path);
        }
    }
    let removed = old_set.difference(&new_set);
    for entry in entries.iter_mut().filter(|entry| entry.in_scope(scope)) {
        let own = entry.is(manager, "Update", scope);
        for path in removed.members() {
            entry.fields.remove(&path);
        }
        if !own {
            for path in changed.members() {
                entry.fields.remove(&path);
            }
        }
    }
    if changed.is_empty() {
        entries.retain(|entry| !entry.fields.is_empty());
        return;
    }
    match entries
        .iter_mut()
        .find(|entry| entry.is(manager, "Update", scope))
    {
        Some(entry) => {
            entry.fields.union(&changed);
            api_version.clone_into(&mut entry.api_version);
            now.clone_into(&mut entry.time);
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_owned(),
            operation: "Update".to_owned(),
            api_version: api_version.to_owned(),
            time: now.to_owned(),
            subresource: scope.subresource().map(str::to_owned),
            fields: changed,
        }),
    }
    entries.retain(|entry| !entry.fields.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed_schema() -> Value {
        json!({"properties": {"spec": {"properties": {
            "tiers": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"properties": {"podSelector": {"type": "object"}}}},
            "isolate": {"type": "array", "x-kubernetes-list-type": "set"},
            "flows": {"type": "array"}
        }}}})
    }

    #[test]
    fn field_sets_use_upstream_path_elements() {
        let object = json!({
            "apiVersion": "x/v1", "kind": "K",
            "metadata": {"name": "a", "uid": "u", "labels": {"app": "x"}},
            "spec": {"tiers": [{"name": "web", "podSelector": {}}], "isolate": ["Ingress"], "flows": [{"from": "a"}]}
        });
        let set = field_set(
            &object,
            &keyed_schema(),
            Scope::Main {
                without_status: true,
            },
        );
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:flows": {},
                    "f:isolate": {"v:\"Ingress\"": {}},
                    "f:tiers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:podSelector": {}}}
                }
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()), set);
    }

    #[test]
    fn values_are_found_and_removed_by_path() {
        let mut object = json!({"spec": {"tiers": [{"name": "web", "x": 1}, {"name": "api"}]}});
        let path: FieldPath = vec![
            "f:spec".into(),
            "f:tiers".into(),
            "k:{\"name\":\"web\"}".into(),
            "f:x".into(),
        ];
        assert_eq!(value_at(&object, &path), Some(&json!(1)));
        assert!(remove_at(&mut object, &path));
        assert!(remove_at(&mut object, &path[..3]));
        assert_eq!(object, json!({"spec": {"tiers": [{"name": "api"}]}}));
    }

    #[test]
    fn an_update_takes_the_fields_it_changes_from_other_managers() {
        let schema = keyed_schema();
        let scope = Scope::Main {
            without_status: true,
        };
        let old = json!({"metadata": {}, "spec": {"a": 1, "b": 1}});
        let mut entries = Vec::new();
        track_update(
            &mut entries,
            None,
            &old,
            &schema,
            scope,
            "first",
            "v1",
            "t0",
        );
        let new = json!({"metadata": {}, "spec": {"a": 2, "b": 1}});
        track_update(
            &mut entries,
            Some(&old),
            &new,
            &schema,
            scope,
            "second",
            "v1",
            "t1",
        );
        let owners: Vec<(String, Value)> = entries
            .iter()
            .map(|entry| (entry.manager.clone(), entry.fields.to_fields_v1()))
            .collect();
        assert_eq!(
            owners,
            [
                ("first".to_owned(), json!({"f:spec": {"f:b": {}}})),
                ("second".to_owned(), json!({"f:spec": {"f:a": {}}})),
            ]
        );
    }
}
