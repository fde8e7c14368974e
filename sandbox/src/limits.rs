//! Bounds on what one request can make the sandbox parse or build, so that no body, patch or
//! patch result exhausts the stack or the memory of the process (API server and, under
//! `netfence sandbox`, the operator beside it).
//!
//! ```text
//! JSON body  --json_too_deep (a byte scan, no recursion)--> deeper than MAX_DEPTH? 400, never parsed
//! YAML body  --serde-saphyr's budget (max_depth)-----------> deeper than MAX_YAML_DEPTH? 400
//! JSON patch --before each operation: how many, how deep the result, how many bytes copied
//!                                                       --> 413 (operations) | 422 (depth, copies)
//! ```
//!
//! Every walk over an object (pruning, defaults, schema and CEL checks, managed fields, the
//! final drop of the value) recurses once per level of nesting, on a tokio worker's 2 MiB
//! stack. A JSON patch of `copy` operations doubles the nesting with each one: thirteen take a
//! small object to 8,192 levels, which overflowed that stack and aborted the process. Upstream
//! limits nesting too (10,000 levels: `sigs.k8s.io/json`'s scanner, `yaml: exceeded max depth`),
//! and bounds JSON patches (`k8s.io/apiserver`: 10,000 operations, 3 MiB copied by `copy`).

use std::io::Write;

use serde_json::Value;

/// The deepest nesting of objects and arrays the sandbox accepts in a body or builds by a
/// patch (the outermost object is level 1).
///
/// Upstream accepts 10,000 levels; the sandbox walks objects recursively and serves them to
/// clients that parse with `serde_json`, whose default limit is 128 levels for the whole
/// response. 100 leaves room for what the server wraps around an object (a list's `items`, a
/// watch event, a Table row, `managedFields` mirroring the object's shape), and is far beyond
/// any Kubernetes object netfence or kubectl writes (a NetworkPolicy nests 8 levels).
pub const MAX_DEPTH: usize = 100;

/// The deepest nesting the sandbox accepts in a YAML body: serde-saphyr's default budget. Its
/// deserializer takes about 22 KiB of stack per level in a debug build, so YAML stops well
/// before [`MAX_DEPTH`]. Clients send JSON (kubectl and kube convert YAML before sending, apply
/// configurations included), which [`MAX_DEPTH`] bounds.
pub const MAX_YAML_DEPTH: usize = 64;

/// The most operations one JSON patch may hold (upstream's `maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most bytes the `copy` operations of one JSON patch may add, as JSON (upstream's
/// `JSONPatchMaxCopyBytes`, the accumulated copy size limit of `json-patch`).
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// The first `{` or `[` of a JSON text that opens a container deeper than `limit`, if any.
/// Strings are skipped; malformed text is left to the parser. Scans bytes, never recurses, so a
/// body of any depth is measured before it is parsed.
#[must_use]
pub fn json_too_deep(bytes: &[u8], limit: usize) -> Option<char> {
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Some(char::from(byte));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// How deeply `value` nests objects and arrays: 0 for a scalar, 1 for `{}` or `[1, 2]`.
/// Walks with an explicit stack, never recursion, so any value can be measured.
#[must_use]
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 1_usize)];
    while let Some((value, level)) = pending.pop() {
        match value {
            Value::Object(map) => {
                deepest = deepest.max(level);
                pending.extend(map.values().map(|child| (child, level + 1)));
            }
            Value::Array(items) => {
                deepest = deepest.max(level);
                pending.extend(items.iter().map(|child| (child, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// The length of `value` written as compact JSON (what upstream counts as the bytes a `copy`
/// adds). Only for values of at most [`MAX_DEPTH`] levels: writing recurses.
#[must_use]
pub fn json_size(value: &Value) -> usize {
    struct Counter(usize);
    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a Value to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_scan_finds_the_first_container_past_the_limit_outside_strings() {
        assert_eq!(json_too_deep(b"{\"a\":[1]}", 2), None);
        assert_eq!(json_too_deep(b"{\"a\":[{}]}", 2), Some('{'));
        assert_eq!(json_too_deep(b"[[[", 2), Some('['));
        assert_eq!(json_too_deep(br#"{"a":"[[[[\"[["}"#, 1), None);
        let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        assert_eq!(json_too_deep(deep.as_bytes(), MAX_DEPTH), Some('['));
    }

    #[test]
    fn depth_counts_containers_without_recursion() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": []}], "c": 2})), 4);
        let mut deep = json!(1);
        for _ in 0..10_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(depth(&deep), 10_000);
        // Take the value apart level by level: dropping it whole would recurse 10,000 deep.
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn json_size_is_the_compact_length() {
        assert_eq!(json_size(&json!({"a": [1, "x"]})), r#"{"a":[1,"x"]}"#.len());
    }
}
