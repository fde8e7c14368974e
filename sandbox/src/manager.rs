//! The field manager of a create, update or non-apply patch, as upstream's handlers name it
//! (`managerOrUserAgent` and `prefixFromUserAgent` in k8s.io/apiserver `pkg/endpoints/handlers`):
//!
//! ```text
//! ?fieldManager=NAME (non-empty)  --> NAME
//! User-Agent: kubectl/v1.32.4 (linux/amd64) kubernetes/4cb5f07  --> "kubectl"
//!   (text before the first '/', non-printable characters dropped, at most 128 bytes)
//! no User-Agent (or nothing printable before its '/')  --> "unknown"
//!   (apimachinery's `buildManagerInfo` names an empty manager so)
//! ```

/// Upstream's `FieldManagerMaxLength`, in bytes.
pub const MAX_LENGTH: usize = 128;

/// The manager upstream records for an empty one.
pub const UNKNOWN: &str = "unknown";

/// The manager of a non-apply write: `fieldManager` when it is set and not empty, else the
/// prefix of the user agent, else `unknown`.
#[must_use]
pub fn manager_or_user_agent(field_manager: Option<&str>, user_agent: &str) -> String {
    let manager = match field_manager {
        Some(manager) if !manager.is_empty() => manager.to_owned(),
        _ => prefix_from_user_agent(user_agent),
    };
    if manager.is_empty() {
        UNKNOWN.to_owned()
    } else {
        manager
    }
}

/// The user agent up to its first `/`, without non-printable characters, cut at the last
/// whole character that fits in [`MAX_LENGTH`] bytes.
#[must_use]
pub fn prefix_from_user_agent(user_agent: &str) -> String {
    let product = user_agent.split('/').next().unwrap_or_default();
    let mut prefix = String::new();
    for character in product.chars().filter(|character| is_print(*character)) {
        if prefix.len() + character.len_utf8() > MAX_LENGTH {
            break;
        }
        prefix.push(character);
    }
    prefix
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
/// Exact for ASCII (what HTTP header values carry); for other characters, control, format
/// (zero-width, bidirectional marks) and space characters other than U+0020 are not printable,
/// which is the rule without the Unicode category table.
fn is_print(character: char) -> bool {
    if character.is_ascii() {
        return character.is_ascii_graphic() || character == ' ';
    }
    !(character.is_control()
        || character.is_whitespace()
        || matches!(character, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// If this fails, `managedFields` of objects written by kubectl, client-go or kube-rs name
    /// another manager than on a real cluster, and `kubectl apply --server-side` conflicts
    /// and `kubectl get --show-managed-fields` read differently in the sandbox.
    #[test]
    fn the_manager_is_the_user_agent_product_like_upstream() {
        let kubectl = "kubectl/v1.32.4 (linux/amd64) kubernetes/4cb5f07";
        assert_eq!(manager_or_user_agent(None, kubectl), "kubectl");
        assert_eq!(manager_or_user_agent(Some(""), kubectl), "kubectl");
        assert_eq!(
            manager_or_user_agent(Some("kubectl-create"), kubectl),
            "kubectl-create"
        );
        assert_eq!(manager_or_user_agent(None, "netfence"), "netfence");
        assert_eq!(manager_or_user_agent(None, ""), "unknown");
        assert_eq!(manager_or_user_agent(None, "/v1"), "unknown");
        assert_eq!(prefix_from_user_agent("my tool\t\u{7f}x/1"), "my toolx");
        assert_eq!(prefix_from_user_agent("a\u{200b}b/1"), "ab");
        assert_eq!(prefix_from_user_agent("é/1"), "é");
    }

    /// If this fails, a long user agent makes a manager name the real server would never
    /// record (upstream cuts at 128 bytes, never inside a character).
    #[test]
    fn long_user_agents_are_cut_at_128_bytes() {
        let long = "x".repeat(300);
        assert_eq!(prefix_from_user_agent(&long).len(), 128);
        // 127 ASCII bytes and a two-byte character: the character does not fit.
        let split = format!("{}é", "y".repeat(127));
        assert_eq!(prefix_from_user_agent(&split), "y".repeat(127));
    }
}
