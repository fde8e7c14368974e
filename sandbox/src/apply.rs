//! Server-side apply: merge a manager's configuration into the live object, remove what the
//! manager owned and no longer sends, and settle ownership, with conflicts.
//!
//! ```text
//! live + config --merge (by schema list types)--> --remove fields the manager dropped--> merged
//! merged --admission--> new --ownership: conflicts with other managers? --> 409 | new managedFields
//! ```
//!
//! Lists merge the way their schema says: `x-kubernetes-list-type: map` items by their keys,
//! `set` items by value, and every other list (the default, and NetworkPolicy's `ingress`,
//! `egress`, `policyTypes`) is atomic: replaced and owned whole. A field another manager owns
//! conflicts only when the applied value differs from the live one; equal values are shared
//! (numbers by their worth: `65535` is `65535.0`).
//! `force` takes the conflicting fields over. A field the manager applied before and no longer
//! sends is removed, unless another manager also owns it.

use std::fmt::Write as _;

use serde_json::Value;

use super::fields::{
    FieldPath, FieldSet, ManagedEntry, Scope, field_set, remove_at, root_child_schema, same_value,
    tracked, value_at,
};
use super::resources::metadata_schema;
use super::structure::{
    ListType, child_schema, is_atomic_object, items_schema, list_type, same_keys,
};

/// Merge `config` into `live`, as server-side apply does, by the schema's list types.
#[must_use]
pub fn merge(live: &Value, config: &Value, schema: Option<&Value>) -> Value {
    match (live, config) {
        (Value::Object(live_map), Value::Object(config_map)) if !is_atomic_object(schema) => {
            let mut result = live_map.clone();
            for (key, value) in config_map {
                if value.is_null() {
                    result.remove(key);
                    continue;
                }
                let merged = match live_map.get(key) {
                    Some(existing) => merge(existing, value, child_schema(schema, key)),
                    None => value.clone(),
                };
                result.insert(key.clone(), merged);
            }
            Value::Object(result)
        }
        (Value::Array(live_items), Value::Array(config_items)) => match list_type(schema) {
            ListType::Atomic => config.clone(),
            ListType::Set => {
                let mut result = live_items.clone();
                for item in config_items {
                    if !result.contains(item) {
                        result.push(item.clone());
                    }
                }
                Value::Array(result)
            }
            ListType::Map(keys) => {
                let item_schema = items_schema(schema);
                let mut result = live_items.clone();
                for item in config_items {
                    match result
                        .iter()
                        .position(|existing| same_keys(existing, item, &keys))
                    {
                        Some(position) => {
                            result[position] = merge(&result[position], item, item_schema);
                        }
                        None => result.push(item.clone()),
                    }
                }
                Value::Array(result)
            }
        },
        _ => config.clone(),
    }
}

/// The result of merging one apply request, before admission.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// The live object with the configuration merged in and dropped fields removed.
    pub object: Value,
    /// The fields the configuration sets: what the manager owns afterwards.
    pub config_set: FieldSet,
}

/// Merge an apply configuration into the live object (an empty object on create) and remove
/// the fields `manager` applied before, no longer sends, and nobody else owns.
#[must_use]
pub fn merge_apply(
    live: &Value,
    config: &Value,
    entries: &[ManagedEntry],
    schema: &Value,
    scope: Scope,
    manager: &str,
) -> Merged {
    let metadata = metadata_schema();
    let view = tracked(config, scope);
    let mut object = live.clone();
    if let (Some(target), Some(source)) = (object.as_object_mut(), view.as_object()) {
        for (key, value) in source {
            let child = root_child_schema(schema, &metadata, key);
            let merged = match target.get(key) {
                Some(existing) => merge(existing, value, child),
                None => value.clone(),
            };
            target.insert(key.clone(), merged);
        }
    }
    let config_set = field_set(config, schema, scope);
    let previous = entries
        .iter()
        .find(|entry| entry.is(manager, "Apply", scope))
        .map(|entry| entry.fields.clone())
        .unwrap_or_default();
    let others: Vec<&ManagedEntry> = entries
        .iter()
        .filter(|entry| entry.in_scope(scope) && !entry.is(manager, "Apply", scope))
        .collect();
    let owned_elsewhere = |path: &[String]| {
        config_set.owns_at_or_below(path)
            || others
                .iter()
                .any(|entry| entry.fields.owns_at_or_below(path))
    };
    for path in previous.difference(&config_set).members() {
        if owned_elsewhere(&path) {
            continue;
        }
        if remove_at(&mut object, &path) {
            remove_emptied_parents(&mut object, &path, &owned_elsewhere);
        }
    }
    Merged { object, config_set }
}

/// After a removal, remove the objects that it left empty and that nobody owns.
fn remove_emptied_parents(object: &mut Value, path: &[String], owned: &dyn Fn(&[String]) -> bool) {
    for end in (1..path.len()).rev() {
        let parent = &path[..end];
        if !parent
            .last()
            .is_some_and(|element| element.starts_with("f:"))
        {
            return;
        }
        let emptied = value_at(object, parent)
            .is_some_and(|value| value.as_object().is_some_and(serde_json::Map::is_empty));
        if !emptied || owned(parent) || end == 1 {
            return;
        }
        remove_at(object, parent);
    }
}

/// A field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// Its operation (`Apply` or `Update`).
    pub operation: String,
    /// The API version it wrote with.
    pub api_version: String,
    /// The field.
    pub path: FieldPath,
}

impl Conflict {
    /// How the real server names the other manager in the message.
    #[must_use]
    pub fn owner(&self) -> String {
        if self.operation == "Apply" {
            format!("\"{}\"", self.manager)
        } else {
            format!("\"{}\" using {}", self.manager, self.api_version)
        }
    }
}

/// The conflict message: `Apply failed with 1 conflict: conflict with "other" using v1: .spec.mode`.
#[must_use]
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [conflict] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflict.owner(),
            FieldSet::display(&conflict.path)
        );
    }
    let mut message = format!("Apply failed with {} conflicts:", conflicts.len());
    let mut owners: Vec<String> = conflicts.iter().map(Conflict::owner).collect();
    owners.dedup();
    for owner in owners {
        let _ = write!(message, " conflicts with {owner}:");
        for conflict in conflicts
            .iter()
            .filter(|conflict| conflict.owner() == owner)
        {
            let _ = write!(message, "\n- {}", FieldSet::display(&conflict.path));
        }
    }
    message
}

/// Whether a field holds the same value before and after (both absent counts as the same).
fn same_at(before: Option<&Value>, after: Option<&Value>) -> bool {
    match (before, after) {
        (Some(before), Some(after)) => same_value(before, after),
        (None, None) => true,
        _ => false,
    }
}

/// Settle ownership after an apply: the conflicts, or the new managedFields entries.
#[allow(clippy::too_many_arguments)] // each argument is one fact of the apply
pub fn settle_ownership(
    live: Option<&Value>,
    new: &Value,
    config_set: &FieldSet,
    entries: &[ManagedEntry],
    scope: Scope,
    manager: &str,
    force: bool,
    api_version: &str,
    now: &str,
) -> Result<Vec<ManagedEntry>, Vec<Conflict>> {
    let mut entries = entries.to_vec();
    let mut conflicts = Vec::new();
    for entry in entries
        .iter()
        .filter(|entry| entry.in_scope(scope) && !entry.is(manager, "Apply", scope))
    {
        for path in config_set.members() {
            if !config_set.is_leaf(&path) || !entry.fields.contains(&path) {
                continue;
            }
            let before = live.and_then(|live| value_at(live, &path));
            if !same_at(before, value_at(new, &path)) {
                conflicts.push(Conflict {
                    manager: entry.manager.clone(),
                    operation: entry.operation.clone(),
                    api_version: entry.api_version.clone(),
                    path,
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for conflict in &conflicts {
        for entry in entries
            .iter_mut()
            .filter(|entry| entry.in_scope(scope) && !entry.is(manager, "Apply", scope))
        {
            entry.fields.remove(&conflict.path);
        }
    }
    let values_changed = config_set.members().iter().any(|path| {
        !same_at(
            live.and_then(|live| value_at(live, path)),
            value_at(new, path),
        )
    });
    match entries
        .iter_mut()
        .find(|entry| entry.is(manager, "Apply", scope))
    {
        Some(entry) => {
            if entry.fields != *config_set || values_changed || entry.api_version != api_version {
                now.clone_into(&mut entry.time);
            }
            entry.fields = config_set.clone();
            api_version.clone_into(&mut entry.api_version);
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_owned(),
            operation: "Apply".to_owned(),
            api_version: api_version.to_owned(),
            time: now.to_owned(),
            subresource: scope.subresource().map(str::to_owned),
            fields: config_set.clone(),
        }),
    }
    entries.retain(|entry| !entry.fields.is_empty());
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"properties": {"spec": {"properties": {
            "tiers": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            "isolate": {"type": "array", "x-kubernetes-list-type": "set"}
        }}}})
    }

    const SCOPE: Scope = Scope::Main {
        without_status: true,
    };

    #[test]
    fn keyed_lists_merge_by_key_and_atomic_lists_are_replaced() {
        let live = json!({"spec": {"tiers": [{"name": "a", "x": 1}], "isolate": ["Ingress"], "flows": [1, 2]}});
        let config = json!({"spec": {"tiers": [{"name": "a", "y": 2}, {"name": "b"}], "isolate": ["Egress"], "flows": [3]}});
        let merged = merge(&live, &config, Some(&schema()));
        assert_eq!(
            merged,
            json!({"spec": {"tiers": [{"name": "a", "x": 1, "y": 2}, {"name": "b"}], "isolate": ["Ingress", "Egress"], "flows": [3]}})
        );
    }

    #[test]
    fn fields_a_manager_stops_sending_are_removed_unless_shared() {
        let schema = schema();
        let first = json!({"metadata": {}, "spec": {"a": 1, "b": 2, "tiers": [{"name": "x"}, {"name": "y"}]}});
        let merged = merge_apply(&json!({"metadata": {}}), &first, &[], &schema, SCOPE, "m");
        let entries = settle_ownership(
            None,
            &merged.object,
            &merged.config_set,
            &[],
            SCOPE,
            "m",
            false,
            "v1",
            "t",
        )
        .expect("no conflict");
        let second = json!({"metadata": {}, "spec": {"a": 1, "tiers": [{"name": "x"}]}});
        let merged = merge_apply(&merged.object, &second, &entries, &schema, SCOPE, "m");
        assert_eq!(
            merged.object,
            json!({"metadata": {}, "spec": {"a": 1, "tiers": [{"name": "x"}]}})
        );
    }

    #[test]
    fn another_managers_field_with_a_different_value_conflicts() {
        let schema = schema();
        let live = json!({"metadata": {}, "spec": {"a": 1}});
        let mut entries = Vec::new();
        super::super::fields::track_update(
            &mut entries,
            None,
            &live,
            &schema,
            SCOPE,
            "editor",
            "v1",
            "t",
        );
        let config = json!({"metadata": {}, "spec": {"a": 2}});
        let merged = merge_apply(&live, &config, &entries, &schema, SCOPE, "m");
        let conflicts = settle_ownership(
            Some(&live),
            &merged.object,
            &merged.config_set,
            &entries,
            SCOPE,
            "m",
            false,
            "v1",
            "t",
        )
        .expect_err("conflict");
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 1 conflict: conflict with \"editor\" using v1: .spec.a"
        );
        let forced = settle_ownership(
            Some(&live),
            &merged.object,
            &merged.config_set,
            &entries,
            SCOPE,
            "m",
            true,
            "v1",
            "t",
        )
        .expect("forced");
        assert_eq!(forced.len(), 1);
        assert_eq!(forced[0].manager, "m");
    }
}
