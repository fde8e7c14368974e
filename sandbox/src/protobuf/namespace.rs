//! A core v1 Namespace in protobuf (the `raw` of the envelope) to its JSON object.
//!
//! ```text
//! Namespace  { 1 metadata: ObjectMeta, 2 spec: NamespaceSpec { 1 repeated finalizers }, 3 status }
//! ObjectMeta { 1 name, 2 generateName, 3 namespace, 5 uid, 6 resourceVersion,
//!              11 labels, 12 annotations (map entries { 1 key, 2 value }),
//!              13 ownerReferences, 14 finalizers, ... }
//! ```
//!
//! Like Go's JSON encoding of the decoded object, empty strings, maps and lists are left out.
//! Fields the API server sets itself on create (`selfLink`, `generation`, the timestamps,
//! `deletionGracePeriodSeconds`, the Namespace's `status`) are skipped: a create ignores them.
//! A field the sandbox does not decode and cannot skip (`managedFields`) is refused, never
//! silently dropped; unknown field numbers are skipped, as upstream's generated decoders do.

use serde_json::{Map, Value, json};

use super::{DecodeError, bytes_of, flag_of, message_fields, text_of};

const NAMESPACE: &str = "v1.Namespace";
const OBJECT_META: &str = "v1.ObjectMeta";
const NAMESPACE_SPEC: &str = "v1.NamespaceSpec";
const OWNER_REFERENCE: &str = "v1.OwnerReference";
const MAP_ENTRY: &str = "map<string, string> entry";

/// The JSON object of a v1 Namespace's protobuf bytes.
pub fn to_json(raw: &[u8]) -> Result<Value, DecodeError> {
    let mut object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {}});
    for field in message_fields(raw, NAMESPACE) {
        let field = field?;
        match field.number {
            1 => {
                let metadata = bytes_of(&field, NAMESPACE, "metadata", "message")?;
                object["metadata"] = object_meta(metadata)?;
            }
            2 => {
                let spec = namespace_spec(bytes_of(&field, NAMESPACE, "spec", "message")?)?;
                if !spec.is_empty() {
                    object["spec"] = Value::Object(spec);
                }
            }
            // 3 status: the server sets the phase of a new Namespace itself.
            _ => {}
        }
    }
    Ok(object)
}

fn namespace_spec(bytes: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    let mut finalizers = Vec::new();
    for field in message_fields(bytes, NAMESPACE_SPEC) {
        let field = field?;
        if field.number == 1 {
            finalizers.push(Value::String(text_of(
                &field,
                NAMESPACE_SPEC,
                "finalizers",
            )?));
        }
    }
    let mut spec = Map::new();
    if !finalizers.is_empty() {
        spec.insert("finalizers".to_owned(), Value::Array(finalizers));
    }
    Ok(spec)
}

fn object_meta(bytes: &[u8]) -> Result<Value, DecodeError> {
    const STRINGS: [(u32, &str); 5] = [
        (1, "name"),
        (2, "generateName"),
        (3, "namespace"),
        (5, "uid"),
        (6, "resourceVersion"),
    ];
    let mut metadata = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut owners = Vec::new();
    let mut finalizers = Vec::new();
    for field in message_fields(bytes, OBJECT_META) {
        let field = field?;
        match field.number {
            number @ (1 | 2 | 3 | 5 | 6) => {
                let name = STRINGS
                    .iter()
                    .find(|(known, _)| *known == number)
                    .map_or("name", |(_, name)| name);
                let value = text_of(&field, OBJECT_META, name)?;
                if !value.is_empty() {
                    metadata.insert(name.to_owned(), Value::String(value));
                }
            }
            11 => {
                let (key, value) =
                    map_entry(bytes_of(&field, OBJECT_META, "labels", "map entry")?)?;
                labels.insert(key, Value::String(value));
            }
            12 => {
                let entry = bytes_of(&field, OBJECT_META, "annotations", "map entry")?;
                let (key, value) = map_entry(entry)?;
                annotations.insert(key, Value::String(value));
            }
            13 => owners.push(owner_reference(bytes_of(
                &field,
                OBJECT_META,
                "ownerReferences",
                "message",
            )?)?),
            14 => finalizers.push(Value::String(text_of(&field, OBJECT_META, "finalizers")?)),
            17 => {
                return Err(DecodeError::Unsupported {
                    what: "metadata.managedFields".to_owned(),
                });
            }
            // 4 selfLink, 7 generation, 8 creationTimestamp, 9 deletionTimestamp,
            // 10 deletionGracePeriodSeconds: set by the server on create. Unknown numbers are
            // skipped, as upstream's decoders do.
            _ => {}
        }
    }
    for (key, values) in [("labels", labels), ("annotations", annotations)] {
        if !values.is_empty() {
            metadata.insert(key.to_owned(), Value::Object(values));
        }
    }
    for (key, values) in [("ownerReferences", owners), ("finalizers", finalizers)] {
        if !values.is_empty() {
            metadata.insert(key.to_owned(), Value::Array(values));
        }
    }
    Ok(Value::Object(metadata))
}

/// One entry of a `map<string, string>`: `{ 1 key, 2 value }`, either of which may be absent
/// (empty).
fn map_entry(bytes: &[u8]) -> Result<(String, String), DecodeError> {
    let (mut key, mut value) = (String::new(), String::new());
    for field in message_fields(bytes, MAP_ENTRY) {
        let field = field?;
        match field.number {
            1 => key = text_of(&field, MAP_ENTRY, "key")?,
            2 => value = text_of(&field, MAP_ENTRY, "value")?,
            _ => {}
        }
    }
    Ok((key, value))
}

fn owner_reference(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut owner = Map::new();
    for field in message_fields(bytes, OWNER_REFERENCE) {
        let field = field?;
        let (name, value) = match field.number {
            1 => (
                "kind",
                Value::String(text_of(&field, OWNER_REFERENCE, "kind")?),
            ),
            3 => (
                "name",
                Value::String(text_of(&field, OWNER_REFERENCE, "name")?),
            ),
            4 => (
                "uid",
                Value::String(text_of(&field, OWNER_REFERENCE, "uid")?),
            ),
            5 => (
                "apiVersion",
                Value::String(text_of(&field, OWNER_REFERENCE, "apiVersion")?),
            ),
            6 => (
                "controller",
                Value::Bool(flag_of(&field, OWNER_REFERENCE, "controller")?),
            ),
            7 => (
                "blockOwnerDeletion",
                Value::Bool(flag_of(&field, OWNER_REFERENCE, "blockOwnerDeletion")?),
            ),
            _ => continue,
        };
        owner.insert(name.to_owned(), value);
    }
    Ok(Value::Object(owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// If this fails, an owner reference or metadata finalizer sent in protobuf is lost, and
    /// garbage collection or deletion of the Namespace behaves differently than with JSON.
    #[test]
    fn owner_references_and_finalizers_decode() {
        let mut owner = vec![0x0a, 0x09];
        owner.extend(b"ConfigMap");
        owner.extend([0x1a, 0x03]);
        owner.extend(b"cfg");
        owner.extend([0x22, 0x01, b'u', 0x2a, 0x02, b'v', b'1', 0x30, 0x01]);
        let mut meta = vec![0x0a, 0x02, b'n', b's', 0x6a, owner.len() as u8];
        meta.extend(&owner);
        meta.extend([0x72, 0x04]);
        meta.extend(b"hold");
        let mut namespace = vec![0x0a, meta.len() as u8];
        namespace.extend(&meta);
        assert_eq!(
            to_json(&namespace).expect("decodes"),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": "ns",
                    "ownerReferences": [
                        {"kind": "ConfigMap", "name": "cfg", "uid": "u", "apiVersion": "v1", "controller": true}
                    ],
                    "finalizers": ["hold"],
                },
            })
        );
    }

    /// If this fails, a name sent with the wrong wire type, or not as UTF-8, is accepted as
    /// something else instead of refused.
    #[test]
    fn wrong_types_are_refused_with_the_field() {
        let error = to_json(&[0x0a, 0x02, 0x08, 0x01]).expect_err("name as a varint");
        assert_eq!(
            error.to_string(),
            "failed to decode the protobuf v1.ObjectMeta: field name is not a valid string"
        );
        let error = to_json(&[0x0a, 0x03, 0x0a, 0x01, 0xff]).expect_err("not UTF-8");
        assert!(error.to_string().contains("UTF-8"), "{error}");
        let error = to_json(&[0x0a, 0x03, 0x8a, 0x01, 0x00]).expect_err("managedFields");
        assert!(error.is_unsupported(), "{error}");
    }
}
