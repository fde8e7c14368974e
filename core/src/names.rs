//! Kubernetes names, label keys and values, and port names: each rule written once, as the API
//! server applies it, with a message that says what to write instead.
//!
//! ```text
//! &str --*_problem--> None (valid) | Some(what is wrong, and what to do)
//! ```

/// What a namespace name must be, as every refusal of one says it.
pub const NAMESPACE_RULE: &str = "a namespace is a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit";

/// Why `name` is not a DNS-1123 label (lowercase alphanumerics and `-`, at most 63), if it is not.
#[must_use]
pub fn dns_label_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty; use a DNS-1123 label such as \"backend\"".to_owned());
    }
    if name.len() > 63 {
        return Some(format!(
            "\"{name}\" is {} characters; a DNS-1123 label has at most 63",
            name.len()
        ));
    }
    if !is_dns_label_shape(name) {
        return Some(format!(
            "\"{name}\" is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit"
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

/// Why `name` is not a DNS-1123 subdomain (at most 253 characters, labels joined by `.`), if it
/// is not. As upstream's `IsDNS1123Subdomain`, a part between dots has no length limit of its own.
#[must_use]
pub fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.len() > 253 {
        return Some(format!("\"{name}\" is longer than 253 characters"));
    }
    if name.split('.').all(is_dns_label_shape) {
        None
    } else {
        Some(format!(
            "\"{name}\" is not a DNS-1123 subdomain: use lowercase letters, digits, '-' and '.'"
        ))
    }
}

/// Why `key` is not a label key (`[prefix/]name`: a DNS-1123 subdomain, `/`, and a name of at
/// most 63 alphanumerics, `-`, `_` and `.`), if it is not. Annotation keys follow the same rule.
#[must_use]
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || dns_subdomain_problem(prefix).is_some())
    {
        return Some(format!(
            "prefix \"{prefix}\" must be a DNS-1123 subdomain such as example.com"
        ));
    }
    if name.is_empty() {
        return Some("has an empty name part".to_owned());
    }
    label_value_problem(name).map(|problem| format!("name part {problem}"))
}

/// Why `value` is not a label value (empty, or at most 63 alphanumerics, `-`, `_` and `.`,
/// starting and ending with an alphanumeric), if it is not.
#[must_use]
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.len() > 63 {
        return Some(format!("is {} characters; at most 63", value.len()));
    }
    let bytes = value.as_bytes();
    let valid = bytes
        .iter()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    let edges = bytes.first().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.last().is_none_or(u8::is_ascii_alphanumeric);
    if valid && edges {
        None
    } else {
        Some(
            "must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
                .to_owned(),
        )
    }
}

/// Why `name` is not a named port (an IANA service name: at most 15 lowercase alphanumerics and
/// `-`, with a letter, no `--`, not starting or ending with `-`), if it is not.
#[must_use]
pub fn port_name_problem(name: &str) -> Option<String> {
    if !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit()) {
        return Some(format!(
            "\"{name}\" is a number written as a string; write it without quotes"
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
            "\"{name}\" is neither a port number nor a port name: a name has at most 15 lowercase letters, digits and single '-', with at least one letter"
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
