//! The structure a schema node declares, as server-side apply, managed fields and CEL read it:
//! how a list merges (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`), whether an
//! object is atomic or a map, the schema of a child or of list items, and which list items are
//! the same by their keys.
//!
//! ```text
//! schema node --list_type--> Atomic | Set | Map(keys)      child_schema / items_schema --> schema node
//! ```
//!
//! Pure functions over `serde_json` values: used by `fields`, `apply` and `cel`, using nothing.

use serde_json::Value;

/// How a list merges, from `x-kubernetes-list-type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Owned and replaced whole (the default).
    Atomic,
    /// Items are scalars, each owned on its own.
    Set,
    /// Items are objects identified by these keys, each owned on its own.
    Map(Vec<String>),
}

/// The list type a schema node declares.
#[must_use]
pub fn list_type(schema: Option<&Value>) -> ListType {
    let schema = schema.unwrap_or(&Value::Null);
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(
            schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => ListType::Atomic,
    }
}

/// Whether an object node is owned whole (`x-kubernetes-map-type: atomic`).
#[must_use]
pub fn is_atomic_object(schema: Option<&Value>) -> bool {
    schema
        .and_then(|schema| schema.get("x-kubernetes-map-type"))
        .and_then(Value::as_str)
        == Some("atomic")
}

/// Whether an object node is a map (keys are data) rather than a struct.
#[must_use]
pub fn is_map(schema: Option<&Value>) -> bool {
    schema.is_some_and(|schema| {
        schema.get("properties").is_none()
            && schema
                .get("additionalProperties")
                .is_some_and(Value::is_object)
    })
}

/// The schema of a field of an object node.
#[must_use]
pub fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let schema = schema?;
    schema
        .get("properties")
        .and_then(|properties| properties.get(key))
        .or_else(|| {
            schema
                .get("additionalProperties")
                .filter(|additional| additional.is_object())
        })
}

/// The schema of the items of a list node.
#[must_use]
pub fn items_schema(schema: Option<&Value>) -> Option<&Value> {
    schema.and_then(|schema| schema.get("items"))
}

/// Whether two list items have the same keys.
#[must_use]
pub fn same_keys(left: &Value, right: &Value, keys: &[String]) -> bool {
    keys.iter()
        .all(|key| left.get(key.as_str()) == right.get(key.as_str()))
}
