//! Kubernetes names, label keys and values, and port names: each rule written once, as the API
//! server applies it, with a message that says what to write instead.
//!
//! ```text
//! &str --*_problem--> None (valid) | Some(what is wrong, and what to do)
//! ```

/// What a namespace name must be, as every refusal of one says it.
pub const NAMESPACE_RULE: &str = "a namespace is a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit";

/// The longest DNS-1123 label (a namespace's name).
pub const DNS_LABEL_MAX: usize = 63;

/// The longest DNS-1123 subdomain (most objects' names, a label key's prefix).
pub const DNS_SUBDOMAIN_MAX: usize = 253;

/// The longest label value, and the longest name part of a label key.
pub const LABEL_NAME_MAX: usize = 63;

/// Why `name` is not a DNS-1123 label (lowercase alphanumerics and `-`, at most 63), if it is not.
#[must_use]
pub fn dns_label_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty; use a DNS-1123 label such as \"backend\"".to_owned());
    }
    if name.len() > DNS_LABEL_MAX {
        return Some(format!(
            "{name:?} is {} characters; a DNS-1123 label has at most {DNS_LABEL_MAX}",
            name.len()
        ));
    }
    if !is_dns_label_shape(name) {
        return Some(format!(
            "{name:?} is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    None
}

/// Lowercase letters, digits and `-`, starting and ending with a letter or digit, any length
/// but empty: a DNS-1123 label without its 63-character limit (each part of a subdomain).
#[must_use]
pub fn is_dns_label_shape(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// DNS-1123 labels joined by `.`, any length: a DNS-1123 subdomain without its 253-character
/// limit. As upstream's `IsDNS1123Subdomain`, a part between dots has no length limit of its own.
#[must_use]
pub fn is_dns_subdomain_shape(name: &str) -> bool {
    name.split('.').all(is_dns_label_shape)
}

/// Why `name` is not a DNS-1123 subdomain (at most 253 characters, labels joined by `.`), if it
/// is not.
#[must_use]
pub fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.len() > DNS_SUBDOMAIN_MAX {
        return Some(format!(
            "{name:?} is longer than {DNS_SUBDOMAIN_MAX} characters"
        ));
    }
    if is_dns_subdomain_shape(name) {
        None
    } else {
        Some(format!(
            "{name:?} is not a DNS-1123 subdomain: use lowercase letters, digits, '-' and '.'"
        ))
    }
}

/// Alphanumerics, `-`, `_` and `.`, starting and ending with an alphanumeric, any length but
/// empty: a non-empty label value, or a label key's name part, without the 63-character limit.
#[must_use]
pub fn is_label_name_shape(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// What [`is_label_name_shape`] asks, as the problems here say it.
const LABEL_NAME_SHAPE: &str =
    "must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric";

/// One thing wrong with a label key (a qualified name, `[prefix/]name`), as upstream's
/// `IsQualifiedName` tells them apart: each fault is one of its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKeyFault {
    /// More than one `/`: nothing else is checked.
    Slashes,
    /// A `/` with nothing before it.
    PrefixEmpty,
    /// A prefix longer than [`DNS_SUBDOMAIN_MAX`].
    PrefixTooLong,
    /// A prefix that is not shaped as a DNS-1123 subdomain.
    PrefixShape,
    /// Nothing after the `/`, or an empty key.
    NameEmpty,
    /// A name part longer than [`LABEL_NAME_MAX`].
    NameTooLong,
    /// A name part that is not alphanumerics, `-`, `_` and `.` with alphanumeric ends.
    NameShape,
}

/// Every fault of `key` as a label key, in the order upstream reports them; empty when the key
/// is valid. As upstream, an empty name part is also a [`LabelKeyFault::NameShape`].
#[must_use]
pub fn label_key_faults(key: &str) -> Vec<LabelKeyFault> {
    let mut faults = Vec::new();
    let (prefix, name) = match key.split_once('/') {
        Some((_, rest)) if rest.contains('/') => return vec![LabelKeyFault::Slashes],
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    match prefix {
        Some("") => faults.push(LabelKeyFault::PrefixEmpty),
        Some(prefix) => {
            if prefix.len() > DNS_SUBDOMAIN_MAX {
                faults.push(LabelKeyFault::PrefixTooLong);
            }
            if !is_dns_subdomain_shape(prefix) {
                faults.push(LabelKeyFault::PrefixShape);
            }
        }
        None => {}
    }
    if name.is_empty() {
        faults.push(LabelKeyFault::NameEmpty);
    } else if name.len() > LABEL_NAME_MAX {
        faults.push(LabelKeyFault::NameTooLong);
    }
    if !is_label_name_shape(name) {
        faults.push(LabelKeyFault::NameShape);
    }
    faults
}

/// Why `key` is not a label key (`[prefix/]name`: a DNS-1123 subdomain, `/`, and a name of at
/// most 63 alphanumerics, `-`, `_` and `.`), if it is not. Annotation keys follow the same rule.
#[must_use]
pub fn label_key_problem(key: &str) -> Option<String> {
    let fault = *label_key_faults(key).first()?;
    let prefix = key.split_once('/').map_or("", |(prefix, _)| prefix);
    let name = key.rsplit('/').next().unwrap_or(key);
    Some(match fault {
        LabelKeyFault::Slashes => {
            "has more than one '/'; a label key is a name with an optional prefix and '/', such as example.com/team".to_owned()
        }
        LabelKeyFault::PrefixEmpty
        | LabelKeyFault::PrefixTooLong
        | LabelKeyFault::PrefixShape => format!(
            "prefix {prefix:?} must be a DNS-1123 subdomain such as example.com"
        ),
        LabelKeyFault::NameEmpty => "has an empty name part".to_owned(),
        LabelKeyFault::NameTooLong => format!(
            "name part is {} characters; at most {LABEL_NAME_MAX}",
            name.len()
        ),
        LabelKeyFault::NameShape => format!("name part {LABEL_NAME_SHAPE}"),
    })
}

/// Why `value` is not a label value (empty, or at most 63 alphanumerics, `-`, `_` and `.`,
/// starting and ending with an alphanumeric), if it is not.
#[must_use]
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.len() > LABEL_NAME_MAX {
        return Some(format!(
            "is {} characters; at most {LABEL_NAME_MAX}",
            value.len()
        ));
    }
    if value.is_empty() || is_label_name_shape(value) {
        None
    } else {
        Some(LABEL_NAME_SHAPE.to_owned())
    }
}

/// Why `name` is not a named port (an IANA service name: at most 15 lowercase alphanumerics and
/// `-`, with a letter, no `--`, not starting or ending with `-`), if it is not.
#[must_use]
pub fn port_name_problem(name: &str) -> Option<String> {
    if !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit()) {
        return Some(format!(
            "{name:?} is a number written as a string; write it without quotes"
        ));
    }
    let valid = name.len() <= 15
        && is_dns_label_shape(name)
        && name.bytes().any(|byte| byte.is_ascii_lowercase())
        && !name.contains("--");
    if valid {
        None
    } else {
        Some(format!(
            "{name:?} is neither a port number nor a port name: a name has at most 15 lowercase letters, digits and single '-', with at least one letter"
        ))
    }
}

/// Why `namespace` cannot name a namespace, and what it must be, if it cannot.
#[must_use]
pub fn namespace_problem(namespace: &str) -> Option<String> {
    dns_label_problem(namespace)?;
    Some(if namespace.is_empty() {
        format!("is empty; {NAMESPACE_RULE}")
    } else {
        format!("{namespace:?} is not a valid namespace; {NAMESPACE_RULE}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_as_the_api_server_takes_them() {
        for valid in ["app", "example.com/team", "a.b-c/x_y.z", "k8s.io/a"] {
            assert_eq!(label_key_problem(valid), None, "{valid}");
        }
        for invalid in ["a/b/c", "/x", "x/", "Example.com/x", "-a", "a..b/x", ""] {
            assert!(label_key_problem(invalid).is_some(), "{invalid}");
        }
        assert!(label_key_problem(&"a".repeat(64)).is_some());
        assert_eq!(label_key_problem(&format!("{}/x", "a".repeat(70))), None);
    }

    /// If this fails, the sandbox and netfence's own validation disagree with the API server on
    /// which label keys exist, and each fault upstream reports is not told apart.
    #[test]
    fn label_key_faults_follow_upstream_order() {
        use LabelKeyFault::{
            NameEmpty, NameShape, NameTooLong, PrefixEmpty, PrefixShape, PrefixTooLong, Slashes,
        };
        assert_eq!(label_key_faults("example.com/team"), []);
        assert_eq!(label_key_faults("a/b/c"), [Slashes]);
        assert_eq!(label_key_faults("/x"), [PrefixEmpty]);
        assert_eq!(label_key_faults("x/"), [NameEmpty, NameShape]);
        assert_eq!(label_key_faults(""), [NameEmpty, NameShape]);
        assert_eq!(label_key_faults("Bad.IO/x"), [PrefixShape]);
        assert_eq!(
            label_key_faults(&format!("{}/-", "a".repeat(254))),
            [PrefixTooLong, NameShape]
        );
        assert_eq!(label_key_faults(&"a".repeat(64)), [NameTooLong]);
        assert_eq!(label_key_faults(&"-".repeat(64)), [NameTooLong, NameShape]);
        assert!(
            label_key_problem("a/b/c").is_some_and(|problem| problem.contains("more than one '/'"))
        );
    }

    #[test]
    fn label_values_and_name_shapes() {
        for valid in ["", "a", "A.b_c-9", &"z".repeat(63)] {
            assert_eq!(label_value_problem(valid), None, "{valid}");
        }
        for invalid in ["-a", "a-", "a b", "a/b", &"z".repeat(64)] {
            assert!(label_value_problem(invalid).is_some(), "{invalid}");
        }
        assert!(!is_label_name_shape(""));
        assert!(is_label_name_shape(&"z".repeat(100)));
    }

    #[test]
    fn subdomains_limit_the_whole_not_the_parts() {
        assert_eq!(dns_subdomain_problem(&"a".repeat(100)), None);
        assert!(dns_subdomain_problem(&"a".repeat(254)).is_some());
        assert!(dns_subdomain_problem("a..b").is_some());
        assert!(dns_label_problem(&"a".repeat(64)).is_some());
    }

    #[test]
    fn port_names() {
        assert_eq!(port_name_problem("http-alt"), None);
        for invalid in ["8080", "a--b", "-a", "sixteen-letters1", "123-", ""] {
            assert!(port_name_problem(invalid).is_some(), "{invalid}");
        }
    }
}
