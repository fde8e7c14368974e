//! Admission of custom resources: the CRD's structural OpenAPI schema and its CEL rules,
//! applied in the real server's order.
//!
//! ```text
//! object --prune unknown fields and nulls--> --apply defaults--> --OpenAPI checks--> --CEL rules--> stored object
//!                                                                      \-- any error: 422 with every field path
//! ```
//!
//! The OpenAPI checks (types, `nullable`, `enum`, `required`, lengths, item counts, bounds,
//! `pattern`, `x-kubernetes-int-or-string`, set and map list uniqueness) are done here: CEL
//! evaluators (kube's `cel` feature, and [`super::cel`]) evaluate only `x-kubernetes-validations`
//! and assume the object already fits the schema, so CEL rules run only on objects that pass.
//! Defaults are applied with kube-cel's `apply_defaults`.
//! Not checked: `format` (other than as a CEL hint), `maxProperties`, `oneOf`/`anyOf`/`allOf`/`not`.

use std::collections::BTreeSet;

use kube::core::cel::cel::Context;
use serde_json::{Map, Value};

use super::{cause::FieldCause, resources::ResourceInfo};

/// An object after admission: pruned and defaulted, the unknown fields that were dropped
/// (for `fieldValidation=Strict|Warn`), and every invalid field.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// The object to store, when `causes` is empty.
    pub object: Value,
    /// The paths of dropped unknown fields, `.spec.foo`.
    pub unknown_fields: Vec<String>,
    /// The invalid fields (the answer is then 422).
    pub causes: Vec<FieldCause>,
}

/// Prune, default and validate a custom resource against its schema and CEL rules. Built-in
/// kinds get what [`super::builtin`] reproduces of upstream (NetworkPolicy defaults, Event
/// validation) and otherwise pass through unchanged. As upstream, CEL rules run only when
/// neither the metadata checks (`metadata_causes`, reported by the caller) nor the OpenAPI
/// checks found a blocking error (a wrong type, a required field, an enum, a length).
#[must_use]
pub fn admit(
    info: &ResourceInfo,
    object: Value,
    old: Option<&Value>,
    context: &Context<'_>,
    metadata_causes: &[FieldCause],
) -> Admitted {
    if !info.custom {
        let mut object = object;
        let unknown_fields = super::builtin::prune_unknown_fields(info, &mut object);
        super::builtin::default(info, &mut object);
        let causes = super::builtin::validate(info, &object, old);
        return Admitted {
            object,
            unknown_fields,
            causes,
        };
    }
    let schema = info.schema.as_ref();
    let mut unknown_fields = Vec::new();
    let mut object = object;
    if let Some(map) = object.as_object_mut() {
        for (key, value) in map.iter_mut() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(child) = property(schema, key) {
                prune(child, value, &format!(".{key}"), &mut unknown_fields);
            }
        }
        let keep: Vec<String> = map
            .iter()
            .filter(|(key, value)| {
                let known = matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
                    || property(schema, key).is_some()
                    || preserves_unknown(schema);
                let null_dropped = value.is_null()
                    && !property(schema, key)
                        .is_some_and(|child| child.get("nullable") == Some(&Value::Bool(true)));
                if !known {
                    unknown_fields.push(format!(".{key}"));
                }
                known && !null_dropped
            })
            .map(|(key, _)| key.clone())
            .collect();
        map.retain(|key, _| keep.contains(key));
    }
    let object = kube::core::cel::apply_defaults(schema, &object);
    let mut causes = Vec::new();
    if let Some(map) = object.as_object() {
        for (key, value) in map {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(child) = property(schema, key) {
                check(child, value, key, &mut causes);
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for field in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(field) {
                    causes.push(required_cause(field));
                }
            }
        }
    }
    // As upstream's hasBlockingErr: a wrong type, a missing required field, an unsupported
    // enum value, too long a string or too many items, and no CEL rule runs; one cause says so.
    let blocking = metadata_causes.iter().chain(&causes).any(|cause| {
        matches!(
            cause.reason,
            "FieldValueTypeInvalid"
                | "FieldValueRequired"
                | "FieldValueNotSupported"
                | "FieldValueTooLong"
                | "FieldValueTooMany"
        )
    });
    if let Some(rules) = &info.rules {
        if blocking {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                field: "<nil>".to_owned(),
                message: "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".to_owned(),
            });
        } else {
            causes.extend(rules.evaluate(context, schema, &object, old));
        }
    }
    Admitted {
        object,
        unknown_fields,
        causes,
    }
}

fn property<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|properties| properties.get(key))
}

fn preserves_unknown(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

fn is_embedded(schema: &Value) -> bool {
    schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true))
}

/// Drop fields the schema does not declare, and nulls of fields that are not nullable.
fn prune(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let additional = schema.get("additionalProperties");
            let has_properties = schema.get("properties").is_some();
            let mut drop = Vec::new();
            for (key, child) in map.iter_mut() {
                if is_embedded(schema) && matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
                {
                    continue;
                }
                let child_schema = property(schema, key)
                    .or_else(|| additional.filter(|additional| additional.is_object()));
                if let Some(child_schema) = child_schema {
                    let nullable = child_schema.get("nullable") == Some(&Value::Bool(true));
                    if child.is_null() && !nullable {
                        drop.push(key.clone());
                    } else {
                        prune(child_schema, child, &format!("{path}.{key}"), unknown);
                    }
                } else {
                    let kept = preserves_unknown(schema)
                        || additional == Some(&Value::Bool(true))
                        || (!has_properties
                            && additional.is_none()
                            && schema.get("type").is_none());
                    if !kept {
                        unknown.push(format!("{path}.{key}"));
                        drop.push(key.clone());
                    }
                }
            }
            map.retain(|key, _| !drop.contains(key));
        }
        Value::Array(items) => {
            if let Some(items_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    prune(items_schema, item, &format!("{path}[{index}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

fn required_cause(field: &str) -> FieldCause {
    FieldCause {
        reason: "FieldValueRequired",
        field: field.to_owned(),
        message: "Required value".to_owned(),
    }
}

fn invalid(field: &str, value: &Value, detail: &str) -> FieldCause {
    FieldCause {
        reason: "FieldValueInvalid",
        field: field.to_owned(),
        message: format!("Invalid value: {}: {detail}", go_value(value)),
    }
}

/// A value as the Go server prints it in an `Invalid value:` message.
fn go_value(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "null".to_owned(),
        Value::Array(_) => "\"array\"".to_owned(),
        Value::Object(_) => "\"object\"".to_owned(),
    }
}

/// The OpenAPI type name of a value.
fn type_name(value: Option<&Value>) -> &'static str {
    match value {
        Some(Value::String(_)) => "string",
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => "integer",
        Some(Value::Number(_)) => "number",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) | None => "object",
        Some(Value::Null) => "null",
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    }
}

fn number(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn count(schema: &Value, key: &str) -> Option<usize> {
    schema
        .get(key)
        .and_then(Value::as_u64)
        .map(|limit| usize::try_from(limit).unwrap_or(usize::MAX))
}

/// Every OpenAPI check of one value against its schema, recursively.
#[allow(clippy::too_many_lines)] // one check per schema keyword reads best as one list
fn check(schema: &Value, value: &Value, path: &str, causes: &mut Vec<FieldCause>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            causes.push(invalid(
                path,
                value,
                &format!(
                    "{path} in body must be of type {}: \"null\"",
                    schema
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("object")
                ),
            ));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            causes.push(FieldCause {
                reason: "FieldValueTypeInvalid",
                field: path.to_owned(),
                message: format!(
                    "Invalid value: \"{}\": {path} in body must be of type integer,string: \"{}\"",
                    type_name(Some(value)),
                    type_name(Some(value))
                ),
            });
            return;
        }
    } else if let Some(expected) = schema.get("type").and_then(Value::as_str)
        && !type_matches(expected, value)
    {
        let actual = type_name(Some(value));
        causes.push(FieldCause {
            reason: "FieldValueTypeInvalid",
            field: path.to_owned(),
            message: format!(
                "Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
            ),
        });
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let listed: Vec<String> = allowed.iter().map(go_value).collect();
        causes.push(FieldCause {
            reason: "FieldValueNotSupported",
            field: path.to_owned(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                go_value(value),
                listed.join(", ")
            ),
        });
    }
    match value {
        Value::String(text) => {
            let length = text.chars().count();
            if let Some(max) = count(schema, "maxLength")
                && length > max
            {
                causes.push(FieldCause {
                    reason: "FieldValueTooLong",
                    field: path.to_owned(),
                    message: format!("Too long: may not be more than {max} bytes"),
                });
            }
            if let Some(min) = count(schema, "minLength")
                && length < min
            {
                causes.push(invalid(
                    path,
                    value,
                    &format!("{path} in body should be at least {min} chars long"),
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(expression) if !expression.is_match(text) => causes.push(invalid(
                        path,
                        value,
                        &format!("{path} in body should match '{pattern}'"),
                    )),
                    _ => {}
                }
            }
        }
        Value::Number(_) => {
            let actual = value.as_f64().unwrap_or_default();
            if let Some(min) = number(schema, "minimum")
                && actual < min
            {
                causes.push(invalid(
                    path,
                    value,
                    &format!("{path} in body should be greater than or equal to {min}"),
                ));
            }
            if let Some(max) = number(schema, "maximum")
                && actual > max
            {
                causes.push(invalid(
                    path,
                    value,
                    &format!("{path} in body should be less than or equal to {max}"),
                ));
            }
        }
        Value::Array(items) => {
            if let Some(max) = count(schema, "maxItems")
                && items.len() > max
            {
                causes.push(FieldCause {
                    reason: "FieldValueTooMany",
                    field: path.to_owned(),
                    message: format!("Too many: {}: must have at most {max} items", items.len()),
                });
            }
            if let Some(min) = count(schema, "minItems")
                && items.len() < min
            {
                causes.push(FieldCause {
                    reason: "FieldValueInvalid",
                    field: path.to_owned(),
                    message: format!(
                        "Invalid value: {}: {path} in body should have at least {min} items",
                        items.len()
                    ),
                });
            }
            check_list_uniqueness(schema, items, path, causes);
            if let Some(items_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check(items_schema, item, &format!("{path}[{index}]"), causes);
                }
            }
        }
        Value::Object(map) => {
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for field in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(field) {
                        causes.push(required_cause(&format!("{path}.{field}")));
                    }
                }
            }
            let additional = schema
                .get("additionalProperties")
                .filter(|additional| additional.is_object());
            for (key, child) in map {
                if let Some(child_schema) = property(schema, key) {
                    check(child_schema, child, &format!("{path}.{key}"), causes);
                } else if let Some(additional) = additional {
                    check(additional, child, &format!("{path}[{key}]"), causes);
                }
            }
        }
        _ => {}
    }
}

fn check_list_uniqueness(
    schema: &Value,
    items: &[Value],
    path: &str,
    causes: &mut Vec<FieldCause>,
) {
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            let mut seen = BTreeSet::new();
            for (index, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    causes.push(FieldCause {
                        reason: "FieldValueDuplicate",
                        field: format!("{path}[{index}]"),
                        message: format!("Duplicate value: {}", go_value(item)),
                    });
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut seen = BTreeSet::new();
            for (index, item) in items.iter().enumerate() {
                let identity: Map<String, Value> = keys
                    .iter()
                    .filter_map(|key| {
                        item.get(*key)
                            .map(|value| ((*key).to_owned(), value.clone()))
                    })
                    .collect();
                let text = Value::Object(identity.clone()).to_string();
                if !seen.insert(text) {
                    let shown: Vec<String> = identity
                        .iter()
                        .map(|(key, value)| format!("{key:?}:{}", go_value(value)))
                        .collect();
                    causes.push(FieldCause {
                        reason: "FieldValueDuplicate",
                        field: format!("{path}[{index}]"),
                        message: format!(
                            "Duplicate value: map[string]interface {{}}{{{}}}",
                            shown.join(", ")
                        ),
                    });
                }
            }
        }
        _ => {}
    }
}
