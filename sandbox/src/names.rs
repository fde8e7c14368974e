//! The API server's name and label rules, in its words. Which names and keys are valid is
//! decided once, in `netfence_core::names`; this module only words each refusal as upstream does.
//!
//! ```text
//! object names, URL segments --> check_path_segment, name_causes
//! metadata.labels            --> qualified_name_problems, label_value_problems
//! Event reportingController  --> qualified_name_problems
//! labelSelector              --> the core's label_key_problem, label_value_problem (selector.rs)
//! ```
//!
//! Uses `cause`, `status` (the 400 and 422 they answer) and `resources` (which kind a name is for).

use netfence_core::names::{
    DNS_LABEL_MAX, DNS_SUBDOMAIN_MAX, LABEL_NAME_MAX, LabelKeyFault, is_dns_label_shape,
    is_dns_subdomain_shape, is_label_name_shape, label_key_faults,
};

use super::{cause::FieldCause, resources::ResourceInfo, status::ApiError};

/// Upstream's words for the shape of a DNS-1123 label.
const DNS_LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// Upstream's words for the shape of a DNS-1123 subdomain.
const DNS_SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Upstream's words for the shape of a label value.
pub const LABEL_VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Upstream's words for the shape of a qualified name's name part.
const QUALIFIED_NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// A path segment (name or namespace in a URL) the server can store: `Name parameter invalid`.
pub fn check_path_segment(segment: &str) -> Result<(), ApiError> {
    let problem = if segment == "." {
        Some("may not be '.'")
    } else if segment == ".." {
        Some("may not be '..'")
    } else if segment.contains('/') {
        Some("may not contain '/'")
    } else if segment.contains('%') {
        Some("may not contain '%'")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ApiError::bad_request(format!(
            "Name parameter invalid: \"{segment}\": {problem}"
        ))),
        None => Ok(()),
    }
}

/// Why `name` is not a valid name for `info`'s kind, as the real server words it: a namespace's
/// name is a DNS-1123 label, every other served kind's a DNS-1123 subdomain.
#[must_use]
pub fn name_causes(info: &ResourceInfo, name: &str) -> Vec<FieldCause> {
    let namespace = info.group.is_empty() && info.plural == "namespaces";
    let (limit, shaped, shape) = if namespace {
        (DNS_LABEL_MAX, is_dns_label_shape(name), DNS_LABEL_RULE)
    } else {
        (
            DNS_SUBDOMAIN_MAX,
            is_dns_subdomain_shape(name),
            DNS_SUBDOMAIN_RULE,
        )
    };
    let mut causes = Vec::new();
    if name.len() > limit {
        causes.push(FieldCause {
            reason: "FieldValueInvalid",
            field: "metadata.name".to_owned(),
            message: format!("Invalid value: \"{name}\": must be no more than {limit} characters"),
        });
    }
    if !shaped {
        causes.push(FieldCause {
            reason: "FieldValueInvalid",
            field: "metadata.name".to_owned(),
            message: format!("Invalid value: \"{name}\": {shape}"),
        });
    }
    causes
}

/// Why `key` is not a qualified name (`[prefix/]name`, a label key), one message for each fault
/// the core finds, in upstream's words and order (`IsQualifiedName`); empty when it is one. An
/// empty name is reported here as invalid, besides the caller's "required", as upstream does.
#[must_use]
pub fn qualified_name_problems(key: &str) -> Vec<String> {
    label_key_faults(key)
        .into_iter()
        .map(|fault| match fault {
            LabelKeyFault::Slashes => format!(
                "a valid label key {QUALIFIED_NAME_RULE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ),
            LabelKeyFault::PrefixEmpty => "prefix part must be non-empty".to_owned(),
            LabelKeyFault::PrefixTooLong => {
                format!("prefix part must be no more than {DNS_SUBDOMAIN_MAX} bytes")
            }
            LabelKeyFault::PrefixShape => format!("prefix part {DNS_SUBDOMAIN_RULE}"),
            LabelKeyFault::NameEmpty => "name part must be non-empty".to_owned(),
            LabelKeyFault::NameTooLong => {
                format!("name part must be no more than {LABEL_NAME_MAX} bytes")
            }
            LabelKeyFault::NameShape => format!("name part {QUALIFIED_NAME_RULE}"),
        })
        .collect()
}

/// Why `value` is not a label value, one message for each fault, in upstream's words and order
/// (`IsValidLabelValue`); empty when it is one.
#[must_use]
pub fn label_value_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > LABEL_NAME_MAX {
        problems.push(format!("must be no more than {LABEL_NAME_MAX} bytes"));
    }
    if !value.is_empty() && !is_label_name_shape(value) {
        problems.push(LABEL_VALUE_RULE.to_owned());
    }
    problems
}
