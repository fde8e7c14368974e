//! PATCH bodies other than server-side apply: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902), and strategic merge patch for built-in kinds.
//!
//! Strategic merge patch is served as a JSON merge patch with its `$patch`, `$retainKeys`,
//! `$setElementOrder` and `$deleteFromPrimitiveList` directives dropped: lists are replaced,
//! not merged by key. That is exact for NetworkPolicy and Namespace (whose lists have no patch
//! strategy) and approximate for pod containers. Custom resources refuse it with 415, as the
//! real server does.

use json_patch::PatchOperation;
use serde_json::Value;

use super::limits::{
    MAX_DEPTH, MAX_JSON_PATCH_COPY_BYTES, MAX_JSON_PATCH_OPERATIONS, depth, json_size,
};

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

/// Why a JSON patch was not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonPatchError {
    /// The body is not a list of operations.
    Decode(String),
    /// More operations than [`MAX_JSON_PATCH_OPERATIONS`] (upstream answers 413).
    TooManyOperations(usize),
    /// An operation failed, or would have nested the object deeper than [`MAX_DEPTH`], or
    /// copied more than [`MAX_JSON_PATCH_COPY_BYTES`]: which one, and why.
    Failed(String),
}

impl std::fmt::Display for JsonPatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonPatchError::Decode(message) | JsonPatchError::Failed(message) => {
                write!(f, "{message}")
            }
            JsonPatchError::TooManyOperations(count) => write!(
                f,
                "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {count}"
            ),
        }
    }
}

/// Apply an RFC 6902 JSON patch, one operation at a time. Before each one runs, what it would
/// build is measured: an operation that would nest the object deeper than [`MAX_DEPTH`] (a
/// `copy` or `move` into a deep path doubles the nesting), or `copy` operations that add more
/// than [`MAX_JSON_PATCH_COPY_BYTES`] in all, fail the patch with the operation's index, as
/// upstream's limits do; so no patch builds a value the sandbox cannot walk or drop.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, JsonPatchError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|error| JsonPatchError::Decode(error.to_string()))?;
    if operations.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(JsonPatchError::TooManyOperations(operations.len()));
    }
    let mut document = target.clone();
    let mut copied = 0;
    for (index, operation) in operations.iter().enumerate() {
        if let Err(problem) = check_growth(&document, operation, &mut copied) {
            return Err(JsonPatchError::Failed(format!(
                "operation '/{index}' failed at path '{}': {problem}",
                operation.path()
            )));
        }
        // One operation at a time on a copy of the target: a failure drops the copy, so no
        // undo is needed.
        json_patch::patch_unsafe(&mut document, std::slice::from_ref(operation)).map_err(
            |mut error| {
                error.operation = index;
                JsonPatchError::Failed(error.to_string())
            },
        )?;
    }
    Ok(document)
}

/// Refuse an operation that would nest `document` deeper than [`MAX_DEPTH`] or take the bytes
/// copied so far over [`MAX_JSON_PATCH_COPY_BYTES`]. A value put at a path of `n` tokens sits
/// inside `n` containers, so the branch it ends is `n` plus its own depth.
fn check_growth(
    document: &Value,
    operation: &PatchOperation,
    copied: &mut usize,
) -> Result<(), String> {
    let levels = operation.path().count();
    let inserted = match operation {
        PatchOperation::Add(add) => depth(&add.value),
        PatchOperation::Replace(replace) => depth(&replace.value),
        PatchOperation::Copy(copy) => {
            // A missing source is the operation's own error, reported when it runs.
            let Some(source) = document.pointer(copy.from.as_str()) else {
                return Ok(());
            };
            let inserted = depth(source);
            check_depth(levels + inserted)?;
            // Measured only once the depth is known to be within bounds: writing recurses.
            *copied = copied.saturating_add(json_size(source));
            if *copied > MAX_JSON_PATCH_COPY_BYTES {
                return Err(format!(
                    "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
                ));
            }
            return Ok(());
        }
        // Moving a value up or sideways cannot make the object deeper than it was.
        PatchOperation::Move(moved) if levels > moved.from.count() => {
            document.pointer(moved.from.as_str()).map_or(0, depth)
        }
        PatchOperation::Move(_) | PatchOperation::Remove(_) | PatchOperation::Test(_) => {
            return Ok(());
        }
    };
    check_depth(levels + inserted)
}

fn check_depth(levels: usize) -> Result<(), String> {
    if levels > MAX_DEPTH {
        return Err(format!(
            "the result would nest {levels} levels deep: exceeded max depth of {MAX_DEPTH}"
        ));
    }
    Ok(())
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
        assert_eq!(
            json_patch(
                &target,
                &json!([{"op": "add", "path": "/b", "value": 1}, {"op": "remove", "path": "/c"}])
            ),
            Err(JsonPatchError::Failed(
                "operation '/1' failed at path '/c': path is invalid".to_owned()
            ))
        );
    }

    /// The `copy` operations of the 17 KB patch, each doubling the nesting of the
    /// object: refused at the operation that would pass [`MAX_DEPTH`], before it runs. If this
    /// fails, one PATCH overflows the stack and aborts the sandbox and the operator with it.
    #[test]
    fn copies_that_double_the_nesting_stop_at_the_depth_limit() {
        let mut operations = vec![json!({"op": "add", "path": "/spec/x", "value": {}})];
        let mut chain = 1;
        for _ in 0..13 {
            operations.push(json!({"op": "copy", "from": "/spec/x", "path": format!("/spec/x{}", "/a".repeat(chain))}));
            chain *= 2;
        }
        let target = json!({"metadata": {"name": "n"}, "spec": {}});
        let Err(JsonPatchError::Failed(message)) = json_patch(&target, &json!(operations)) else {
            panic!("a patch nesting 8,192 levels is refused");
        };
        // {} at /spec/x is 3 levels; the copies make 4, 6, 10, ..., 66, then 130.
        assert!(
            message.starts_with("operation '/7' failed at path '/spec/x/a/a"),
            "{message}"
        );
        assert!(
            message.ends_with("the result would nest 130 levels deep: exceeded max depth of 100"),
            "{message}"
        );
        let allowed = json_patch(&target, &json!(operations[..7])).expect("64 levels are fine");
        assert_eq!(depth(&allowed), 66);
    }

    /// Moving a deep branch under another deep one is measured too; moving it up is free.
    #[test]
    fn moves_deeper_are_measured() {
        let mut chain = json!(1);
        for _ in 0..60 {
            chain = json!({"a": chain});
        }
        let target = json!({"x": chain.clone(), "y": chain});
        let deeper = format!("/y{}", "/a".repeat(59));
        let Err(JsonPatchError::Failed(message)) = json_patch(
            &target,
            &json!([{"op": "move", "from": "/x", "path": format!("{deeper}/b")}]),
        ) else {
            panic!("moving 60 levels under 60 more is refused");
        };
        assert!(message.ends_with("exceeded max depth of 100"), "{message}");
        let up = json_patch(
            &target,
            &json!([{"op": "move", "from": "/x/a", "path": "/z"}]),
        )
        .expect("moving up is fine");
        assert_eq!(depth(&up), 61);
    }

    /// Copies add at most 3 MiB, and a patch holds at most 10,000 operations, as upstream.
    #[test]
    fn copies_and_operations_are_bounded() {
        let target = json!({"x": "y".repeat(1024 * 1024)});
        let copies: Vec<Value> = (0..4)
            .map(|index| json!({"op": "copy", "from": "/x", "path": format!("/c{index}")}))
            .collect();
        let Err(JsonPatchError::Failed(message)) = json_patch(&target, &json!(copies)) else {
            panic!("3 MiB and a bit of copies are refused");
        };
        assert_eq!(
            message,
            "operation '/2' failed at path '/c2': Unable to complete the copy, the accumulated size increase of copy is 3145734, exceeding the limit 3145728"
        );
        let tests = vec![json!({"op": "test", "path": "/x", "value": 1}); 10_001];
        assert_eq!(
            json_patch(&target, &json!(tests)),
            Err(JsonPatchError::TooManyOperations(10_001))
        );
    }
}
