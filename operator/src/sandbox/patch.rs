//! PATCH bodies other than server-side apply: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902), and strategic merge patch for built-in kinds.
//!
//! Strategic merge patch is served as a JSON merge patch with its `$patch`, `$retainKeys`,
//! `$setElementOrder` and `$deleteFromPrimitiveList` directives dropped: lists are replaced,
//! not merged by key. That is exact for NetworkPolicy and Namespace (whose lists have no patch
//! strategy) and approximate for pod containers. Custom resources refuse it with 415, as the
//! real server does.

use serde_json::Value;

/// The patch formats, by `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value.
    #[must_use]
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Apply an RFC 7386 JSON merge patch.
#[must_use]
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(patch_map) => {
            let mut result = match target {
                Value::Object(map) => map.clone(),
                _ => serde_json::Map::new(),
            };
            for (key, value) in patch_map {
                if value.is_null() {
                    result.remove(key);
                } else {
                    let current = result.get(key).cloned().unwrap_or(Value::Null);
                    result.insert(key.clone(), merge_patch(&current, value));
                }
            }
            Value::Object(result)
        }
        other => other.clone(),
    }
}

/// Drop the strategic-merge-patch directives, leaving a JSON merge patch.
#[must_use]
pub fn strip_strategic_directives(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !key.starts_with('$'))
                .map(|(key, value)| (key.clone(), strip_strategic_directives(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|item| {
                    item.as_object()
                        .is_none_or(|map| !map.keys().any(|key| key == "$patch"))
                })
                .map(strip_strategic_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Apply an RFC 6902 JSON patch. The error says which operation failed.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, String> {
    let operations: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|error| error.to_string())?;
    let mut document = target.clone();
    json_patch::patch(&mut document, &operations).map_err(|error| error.to_string())?;
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        let patch = json!({"a": "z", "c": {"f": null}});
        assert_eq!(
            merge_patch(&target, &patch),
            json!({"a": "z", "c": {"d": "e"}})
        );
    }

    #[test]
    fn strategic_directives_are_dropped() {
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["a"], "labels": {"x": "y"}}, "spec": {"$retainKeys": ["a"]}});
        assert_eq!(
            strip_strategic_directives(&patch),
            json!({"metadata": {"labels": {"x": "y"}}, "spec": {}})
        );
    }

    #[test]
    fn json_patch_reports_failed_operations() {
        let target = json!({"a": 1});
        assert_eq!(
            json_patch(
                &target,
                &json!([{"op": "replace", "path": "/a", "value": 2}])
            ),
            Ok(json!({"a": 2}))
        );
        assert!(json_patch(&target, &json!([{"op": "remove", "path": "/b"}])).is_err());
        assert!(json_patch(&target, &json!({"op": "nonsense"})).is_err());
    }
}
