//! Kubernetes name and label rules, every one the sandbox checks, gathered here so that they can
//! be replaced in one place by the shared copy (issue 14). They are kept as they were where they
//! came from, differences included: `valid_key` (selectors) accepts `a/b/c`, `qualified_name`
//! (metadata labels) and `qualified_name_problem` (Event `reportingController`) do not.
//!
//! ```text
//! object names, URL segments --> check_path_segment, name_causes (dns_label_shape, dns_subdomain)
//! metadata.labels            --> qualified_name, label_value (label_name)
//! Event reportingController  --> qualified_name_problem
//! labelSelector              --> valid_key, valid_value
//! ```
//!
//! Uses `cause`, `status` (the 400 and 422 they answer) and `resources` (which kind a name is for).

use super::{cause::FieldCause, resources::ResourceInfo, status::ApiError};

/// The longest qualified name part (`reportingController`).
const QUALIFIED_NAME_LIMIT: usize = 63;

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

/// The shape of a DNS-1123 label, `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, without its length limit.
#[must_use]
pub fn dns_label_shape(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A DNS-1123 subdomain as Kubernetes checks it (`IsDNS1123Subdomain`): labels joined by dots,
/// at most 253 characters in all. Unlike DNS itself, no limit applies to each label.
#[must_use]
pub fn dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(dns_label_shape)
}

/// A label name (the name part of a key), or a non-empty label value: at most 63 characters,
/// alphanumerics, `-`, `_` and `.`, alphanumeric at both ends.
#[must_use]
pub fn label_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

/// A label value: empty, or shaped as [`label_name`].
#[must_use]
pub fn label_value(value: &str) -> bool {
    value.is_empty() || label_name(value)
}

/// A qualified name (a label key): `[prefix/]name`, the prefix a DNS-1123 subdomain.
#[must_use]
pub fn qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && label_name(name),
        None => label_name(key),
    }
}

/// Why `name` is not a valid name for `info`'s kind, as the real server words it: a namespace's
/// name is a DNS-1123 label, every other served kind's a DNS-1123 subdomain.
#[must_use]
pub fn name_causes(info: &ResourceInfo, name: &str) -> Vec<FieldCause> {
    let namespace = info.group.is_empty() && info.plural == "namespaces";
    let (limit, shaped, shape) = if namespace {
        (
            63,
            dns_label_shape(name),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )
    } else {
        (
            253,
            name.split('.').all(dns_label_shape),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
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

/// Why `name` is not a qualified name (`[prefix/]name`), in upstream's words; `None` when it
/// is one. An empty name is reported by the caller as required, and here as invalid too, as
/// upstream does.
#[must_use]
pub fn qualified_name_problem(name: &str) -> Option<String> {
    const NAME_MESSAGE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let (prefix, part) = match name.split_once('/') {
        Some((prefix, part)) => (Some(prefix), part),
        None => (None, name),
    };
    if part.is_empty() {
        return Some("name part must be non-empty".to_owned());
    }
    if part.len() > QUALIFIED_NAME_LIMIT {
        return Some(format!(
            "name part must be no more than {QUALIFIED_NAME_LIMIT} bytes"
        ));
    }
    let edges_alphanumeric = part.starts_with(|c: char| c.is_ascii_alphanumeric())
        && part.ends_with(|c: char| c.is_ascii_alphanumeric());
    let characters = part
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !(edges_alphanumeric && characters) {
        return Some(NAME_MESSAGE.to_owned());
    }
    if let Some(prefix) = prefix {
        let subdomain = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|label| {
                !label.is_empty()
                    && label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && label.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            });
        if !subdomain {
            return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_owned());
        }
    }
    None
}

/// A label selector's key as the sandbox's selector parser accepts it (at most 63 characters
/// after the last `/`; alphanumerics, `-`, `_`, `.` and `/`), or `None`.
#[must_use]
pub fn valid_key(key: &str) -> Option<String> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let ok = !name.is_empty()
        && name.len() <= 63
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    ok.then(|| key.to_owned())
}

/// A label selector's value as the sandbox's selector parser accepts it, or `None`.
#[must_use]
pub fn valid_value(value: &str) -> Option<String> {
    let ok = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then(|| value.to_owned())
}
