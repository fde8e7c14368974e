//! The checks every write runs on the object it is given, before admission: the kind and
//! version in the body, whether it decodes into its kind's type, a changed uid, and upstream's
//! metadata validation (name, label keys and values, owner references).
//!
//! ```text
//! body --check_type, check_decodes--> 400      object --changed_uid, validate_metadata--> [ FieldCause ] (422)
//! ```

use serde_json::{Value, json};

use super::super::{
    builtin,
    cause::FieldCause,
    names::{
        LABEL_VALUE_RULE, check_path_segment, label_value_problems, name_causes,
        qualified_name_problems,
    },
    resources::ResourceInfo,
    status::ApiError,
};
use super::{name_of, uid_of};

/// `metadata` checks every kind gets: the name, label keys and values.
pub(super) fn validate_metadata(info: &ResourceInfo, object: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let name = name_of(object);
    let segment_problem = check_path_segment(name).err();
    if let Some(problem) = segment_problem {
        causes.push(FieldCause {
            reason: "FieldValueInvalid",
            field: "metadata.name".to_owned(),
            message: format!(
                "Invalid value: \"{name}\": {}",
                problem.message.rsplit(": ").next().unwrap_or_default()
            ),
        });
    } else {
        causes.extend(name_causes(info, name));
    }
    if let Some(labels) = object.pointer("/metadata/labels") {
        causes.extend(label_causes(labels));
    }
    causes.extend(owner_reference_causes(object));
    causes
}

/// Upstream's `ValidateLabels`: each key a qualified name, each value a label value, every
/// fault its own cause. Which keys and values are valid is the core's rule.
fn label_causes(labels: &Value) -> Vec<FieldCause> {
    let Some(labels) = labels.as_object() else {
        return vec![FieldCause {
            reason: "FieldValueTypeInvalid",
            field: "metadata.labels".to_owned(),
            message: "Invalid value: \"labels\": must be a map of strings".to_owned(),
        }];
    };
    let invalid = |shown: String, problem: String| FieldCause {
        reason: "FieldValueInvalid",
        field: "metadata.labels".to_owned(),
        message: format!("Invalid value: {shown}: {problem}"),
    };
    let mut causes = Vec::new();
    for (key, value) in labels {
        for problem in qualified_name_problems(key) {
            causes.push(invalid(format!("\"{key}\""), problem));
        }
        // A value that is not a string is refused when the object is decoded; here it is
        // worded as a value of the wrong shape.
        let problems = value
            .as_str()
            .map_or_else(|| vec![LABEL_VALUE_RULE.to_owned()], label_value_problems);
        for problem in problems {
            causes.push(invalid(value.to_string(), problem));
        }
    }
    causes
}

/// An owner reference as upstream prints it in a message: Go's JSON of `metav1.OwnerReference`,
/// its fields in declaration order, the strings always, the flags when set.
fn owner_reference_json(reference: &Value) -> String {
    let mut fields: Vec<String> = ["apiVersion", "kind", "name", "uid"]
        .iter()
        .map(|field| {
            let text = reference
                .get(*field)
                .and_then(Value::as_str)
                .unwrap_or_default();
            format!("{}:{}", json!(field), json!(text))
        })
        .collect();
    for flag in ["controller", "blockOwnerDeletion"] {
        if let Some(value) = reference.get(flag).and_then(Value::as_bool) {
            fields.push(format!("{}:{value}", json!(flag)));
        }
    }
    format!("{{{}}}", fields.join(","))
}

/// Upstream's `ValidateOwnerReferences`: each reference names its owner whole (apiVersion,
/// kind, name, uid), no Event owns anything, and at most one reference is the controller.
fn owner_reference_causes(object: &Value) -> Vec<FieldCause> {
    let Some(references) = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let mut causes = Vec::new();
    let mut first_controller: Option<String> = None;
    for (index, reference) in references.iter().enumerate() {
        let path = format!("metadata.ownerReferences[{index}]");
        let text = |field: &str| {
            reference
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let required = |field: &str| FieldCause {
            reason: "FieldValueRequired",
            field: format!("{path}.{field}"),
            message: "Required value: must not be empty".to_owned(),
        };
        let api_version = text("apiVersion");
        // schema.ParseGroupVersion: `version` or `group/version`, the version not empty.
        let version = match api_version.split_once('/') {
            Some((_, version)) if version.contains('/') => "",
            Some((_, version)) => version,
            None => api_version,
        };
        if api_version.is_empty() {
            causes.push(required("apiVersion"));
        } else if version.is_empty() {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                field: format!("{path}.apiVersion"),
                message: format!(
                    "Invalid value: {}: must be <group>/<version> or <version>",
                    json!(api_version)
                ),
            });
        }
        for field in ["kind", "name", "uid"] {
            if text(field).is_empty() {
                causes.push(required(field));
            }
        }
        if api_version == "v1" && text("kind") == "Event" {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                field: path.clone(),
                message: format!(
                    "Invalid value: {}: /v1, Kind=Event is disallowed from being an owner",
                    owner_reference_json(reference)
                ),
            });
        }
        if reference.get("controller") == Some(&Value::Bool(true)) {
            let current = format!("{}/{}", text("kind"), text("name"));
            match &first_controller {
                Some(first) => {
                    let listed: Vec<String> = references.iter().map(owner_reference_json).collect();
                    causes.push(FieldCause {
                        reason: "FieldValueInvalid",
                        field: "metadata.ownerReferences".to_owned(),
                        message: format!(
                            "Invalid value: [{}]: Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}",
                            listed.join(",")
                        ),
                    });
                }
                None => first_controller = Some(current),
            }
        }
    }
    causes
}

/// 400 when the body names another kind or version than the URL.
pub(super) fn check_type(info: &ResourceInfo, object: &Value) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the object provided is unrecognized (must be of type object)",
        ));
    }
    if let Some(kind) = object.get("kind")
        && kind.as_str() != Some(info.kind.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the body ({}) does not match the kind of the resource ({})",
            kind.as_str().unwrap_or("?"),
            info.kind
        )));
    }
    if let Some(api_version) = object.get("apiVersion")
        && api_version.as_str() != Some(info.api_version().as_str())
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            api_version.as_str().unwrap_or("?"),
            info.api_version()
        )));
    }
    Ok(())
}

/// `metadata.uid: field is immutable` when `new` names another uid than `old` (none keeps it).
pub(super) fn changed_uid(old: &Value, new: &Value) -> Option<FieldCause> {
    let uid = uid_of(new);
    (!uid.is_empty() && uid != uid_of(old)).then(|| FieldCause {
        reason: "FieldValueInvalid",
        field: "metadata.uid".to_owned(),
        message: format!("Invalid value: {}: field is immutable", json!(uid)),
    })
}

/// 400 when a create's or update's body does not decode into the type of its kind, in
/// upstream's words for a body it cannot decode.
pub(super) fn check_decodes(info: &ResourceInfo, object: &Value) -> Result<(), ApiError> {
    match builtin::decode_problem(info, object) {
        Some(problem) => Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {problem}",
            kind = info.kind,
            version = info.version
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(references: &Value) -> Vec<String> {
        owner_reference_causes(&json!({"metadata": {"ownerReferences": references}}))
            .iter()
            .map(FieldCause::text)
            .collect()
    }

    /// Owner references as upstream's `ValidateOwnerReferences` checks them. If this fails, the
    /// sandbox stores references a real server refuses (or refuses good ones).
    #[test]
    fn owner_references_are_checked_as_upstream() {
        let good = json!({"apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation", "name": "shop", "uid": "u", "controller": true});
        assert!(messages(&json!([good])).is_empty());
        assert_eq!(
            messages(
                &json!([{"apiVersion": "a/b/c", "kind": "K", "name": "n", "uid": "u"}, {"apiVersion": "a/", "kind": "K", "name": "n", "uid": "u"}])
            ),
            [
                "metadata.ownerReferences[0].apiVersion: Invalid value: \"a/b/c\": must be <group>/<version> or <version>",
                "metadata.ownerReferences[1].apiVersion: Invalid value: \"a/\": must be <group>/<version> or <version>",
            ]
        );
        assert_eq!(
            messages(&json!([{"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"}])),
            [
                "metadata.ownerReferences[0]: Invalid value: {\"apiVersion\":\"v1\",\"kind\":\"Event\",\"name\":\"e\",\"uid\":\"u\"}: /v1, Kind=Event is disallowed from being an owner"
            ]
        );
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": "v", "controller": true});
        let third = json!({"apiVersion": "v1", "kind": "Secret", "name": "c", "uid": "w", "controller": true});
        let found = messages(&json!([good, second, third]));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].ends_with(
                "Found \"true\" in references for NamespaceIsolation/shop and ConfigMap/b"
            ),
            "{found:?}"
        );
        assert!(
            found[1]
                .ends_with("Found \"true\" in references for NamespaceIsolation/shop and Secret/c"),
            "{found:?}"
        );
    }

    /// Label keys and values as upstream's `ValidateLabels` checks them. If this fails, the
    /// sandbox stores labels a real server refuses (`a/b/c` was once taken), and a selector that
    /// works in the sandbox fails on a cluster.
    #[test]
    fn labels_are_checked_as_upstream() {
        let texts = |labels: Value| -> Vec<String> {
            label_causes(&labels).iter().map(FieldCause::text).collect()
        };
        assert!(
            texts(json!({"app": "web", "example.com/team": "", "a.b/c_d": "X.y-z"})).is_empty()
        );
        let slashes = texts(json!({"a/b/c": "v"}));
        assert_eq!(slashes.len(), 1, "{slashes:?}");
        assert!(
            slashes[0].starts_with(
                "metadata.labels: Invalid value: \"a/b/c\": a valid label key must consist of"
            ),
            "{slashes:?}"
        );
        assert_eq!(texts(json!({"Bad.IO/x": "v"})).len(), 1);
        assert_eq!(
            texts(json!({"x/": "v"})).len(),
            2,
            "empty name part, and not its shape"
        );
        let value = texts(json!({"app": "-web"}));
        assert_eq!(value.len(), 1, "{value:?}");
        assert!(
            value[0].starts_with(
                "metadata.labels: Invalid value: \"-web\": a valid label must be an empty string"
            ),
            "{value:?}"
        );
        assert_eq!(texts(json!({"app": "a".repeat(64)})).len(), 1);
    }
}
