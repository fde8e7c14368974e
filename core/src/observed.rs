//! What the controller keeps of each NetworkPolicy it manages: not the object, but the facts a
//! plan decides by, with the spec as a digest.
//!
//! ```text
//! NetworkPolicy (kilobytes decoded) --Facts::of--> Facts (about 100 bytes, no heap)
//!   deleting, managed-by label, digest(isolation label), digest(the labels its role implies),
//!   controller owner reference: digest(uid), digest(whole reference), digest(NamespaceIsolation name),
//!   digest(the spec by what it means)
//! ```
//!
//! At 10,000 namespaces of 9 policies each the operator watches 90,000 policies: kept whole (even
//! as compact JSON, about a kilobyte each), they were most of its memory. A plan needs to know
//! whether a policy carries what netfence renders, not what it carries instead: digests of both
//! sides answer that (SHA-256, 128 bits kept: a tenant who can write a policy cannot make its
//! digest equal another spec's). Whoever needs a policy whole (the intent audit, when a policy
//! is not the rendered one) reads it from the API server.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use netfence_crd::NamespaceIsolation;

use crate::{
    meta::{ISOLATION_LABEL, MANAGED_BY, MANAGED_BY_LABEL},
    render::PolicyRole,
};

/// The first 128 bits of a SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 16]);

impl Digest {
    /// The digest of a sequence of byte strings (each prefixed with its length, so that no two
    /// different sequences read the same).
    #[must_use]
    pub fn of(parts: &[&[u8]]) -> Digest {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for part in parts {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part);
        }
        let full = context.finish();
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&full.as_ref()[..16]);
        Digest(bytes)
    }

    /// The digest of a value's JSON. Typed Kubernetes values serialize deterministically (fields
    /// in declaration order, maps sorted), and serializing them cannot fail.
    pub(crate) fn of_json<T: serde::Serialize>(value: &T) -> Digest {
        Digest::of(&[&serde_json::to_vec(value).unwrap_or_default()])
    }

    fn of_str(text: &str) -> Digest {
        Digest::of(&[text.as_bytes()])
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in &self.0[..6] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The controller owner reference of a policy, as digests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Controller {
    uid: Digest,
    /// The whole reference (every field).
    reference: Digest,
    /// Its name, when it refers to a NamespaceIsolation at the version netfence serves.
    isolation: Option<Digest>,
}

/// What a plan needs to know of an observed policy (its name aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    deleting: bool,
    managed_by_netfence: bool,
    /// It carries no managed-by label at all (what netfence leaves on a policy it keeps).
    managed_by_nobody: bool,
    /// The value of the isolation label.
    isolation: Option<Digest>,
    /// The labels its role implies, with their values (see [`role_labels`]).
    labels: Digest,
    controller: Option<Controller>,
    /// The spec by what it means (see [`normalized_spec`]).
    spec: Digest,
}

impl Facts {
    /// The facts of `policy`.
    #[must_use]
    pub fn of(policy: &NetworkPolicy) -> Facts {
        let empty = BTreeMap::new();
        let labels = policy.metadata.labels.as_ref().unwrap_or(&empty);
        let controller = policy
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| Controller {
                uid: Digest::of_str(&owner.uid),
                reference: Digest::of_json(owner),
                isolation: (owner.kind == <NamespaceIsolation as kube::Resource>::kind(&())
                    // The served version exactly: see `plan`'s predecessor.
                    && owner.api_version
                        == <NamespaceIsolation as kube::Resource>::api_version(&()))
                .then(|| Digest::of_str(&owner.name)),
            });
        Facts {
            deleting: policy.metadata.deletion_timestamp.is_some(),
            managed_by_netfence: labels.get(MANAGED_BY_LABEL).map(String::as_str)
                == Some(MANAGED_BY),
            managed_by_nobody: !labels.contains_key(MANAGED_BY_LABEL),
            isolation: labels
                .get(ISOLATION_LABEL)
                .map(|value| Digest::of_str(value)),
            labels: role_labels(labels),
            controller,
            spec: Digest::of_json(&normalized_spec(policy)),
        }
    }

    /// Whether the policy is being deleted.
    #[must_use]
    pub fn deleting(&self) -> bool {
        self.deleting
    }

    /// Whether its controller owner reference has this UID: the policy is that resource's.
    #[must_use]
    pub fn controlled_by(&self, uid: &str) -> bool {
        self.controller
            .is_some_and(|controller| controller.uid == Digest::of_str(uid))
    }

    /// Whether it has no controller owner reference.
    #[must_use]
    pub fn uncontrolled(&self) -> bool {
        self.controller.is_none()
    }

    /// Whether it carries the isolation label `resource`, with netfence's managed-by label
    /// (what a generated policy carries, and what a policy kept by an older netfence still
    /// carries) or with none (what netfence leaves on a policy it keeps: nobody manages it).
    #[must_use]
    pub fn labelled_for(&self, resource: &str) -> bool {
        (self.managed_by_netfence || self.managed_by_nobody)
            && self.isolation == Some(Digest::of_str(resource))
    }

    /// Whether its controller is a NamespaceIsolation named `resource` (at the served version)
    /// other than the one with UID `uid`.
    #[must_use]
    pub fn controlled_by_other(&self, resource: &str, uid: &str) -> bool {
        self.controller.is_some_and(|controller| {
            controller.isolation == Some(Digest::of_str(resource))
                && controller.uid != Digest::of_str(uid)
        })
    }

    /// Whether its spec means what the spec of `desired` means.
    #[must_use]
    pub fn same_spec(&self, desired: &NetworkPolicy) -> bool {
        self.spec == Digest::of_json(&normalized_spec(desired))
    }

    /// Whether it already carries everything netfence renders in `desired`: the same spec,
    /// every label its role implies with the rendered value, and the rendered owner reference.
    /// Labels and owner references that others add are theirs and do not count as drift.
    #[must_use]
    pub fn carries(&self, desired: &NetworkPolicy) -> bool {
        let empty = BTreeMap::new();
        let labels = desired.metadata.labels.as_ref().unwrap_or(&empty);
        let owners = desired.metadata.owner_references.as_deref().unwrap_or(&[]);
        let owners_present = match owners {
            [] => true,
            [owner] => self
                .controller
                .is_some_and(|controller| controller.reference == Digest::of_json(owner)),
            // render sets one controller reference; anything else is never carried.
            _ => false,
        };
        owners_present && self.labels == role_labels(labels) && self.same_spec(desired)
    }
}

/// A policy as a plan sees it: its name and its [`Facts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The policy's name.
    pub name: String,
    /// What a plan decides by.
    pub facts: Facts,
}

impl Observed {
    /// The observed form of `policy`.
    #[must_use]
    pub fn of(policy: &NetworkPolicy) -> Observed {
        Observed {
            name: policy.metadata.name.clone().unwrap_or_default(),
            facts: Facts::of(policy),
        }
    }
}

/// The digest of the labels netfence renders for a policy of the role its labels carry:
/// managed-by, the isolation label, and its role's ([`PolicyRole::labels`]), each with its
/// value or its absence. Two label sets give the same digest exactly when they carry the same
/// role with the same values of those labels, whatever else they carry: so a policy carries a
/// rendered policy's labels exactly when both give the same digest (render sets no other label,
/// which a test holds).
fn role_labels(labels: &BTreeMap<String, String>) -> Digest {
    let role = PolicyRole::from_labels(labels);
    let role_keys: Vec<&str> = role
        .iter()
        .flat_map(|role| role.labels().into_iter().map(|(key, _)| key))
        .collect();
    let mut parts: Vec<&[u8]> = Vec::new();
    for key in [MANAGED_BY_LABEL, ISOLATION_LABEL]
        .into_iter()
        .chain(role_keys)
    {
        parts.push(key.as_bytes());
        match labels.get(key) {
            Some(value) => {
                parts.push(b"=");
                parts.push(value.as_bytes());
            }
            None => parts.push(b"absent"),
        }
    }
    Digest::of(&parts)
}

/// The spec by what it means: the server defaults a missing port protocol to TCP, and an empty
/// rule list is the same as none (the API server drops empty lists).
#[must_use]
pub fn normalized_spec(policy: &NetworkPolicy) -> NetworkPolicySpec {
    let mut spec = policy.spec.clone().unwrap_or_default();
    if spec.ingress.as_ref().is_some_and(Vec::is_empty) {
        spec.ingress = None;
    }
    if spec.egress.as_ref().is_some_and(Vec::is_empty) {
        spec.egress = None;
    }
    let rules_ports = spec
        .ingress
        .iter_mut()
        .flatten()
        .flat_map(|rule| rule.ports.iter_mut().flatten())
        .chain(
            spec.egress
                .iter_mut()
                .flatten()
                .flat_map(|rule| rule.ports.iter_mut().flatten()),
        );
    for port in rules_ports {
        port.protocol.get_or_insert_with(|| "TCP".to_owned());
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render;

    const UID: &str = "11111111-2222-3333-4444-555555555555";

    fn rendered() -> Vec<NetworkPolicy> {
        crate::plan::rendered_shop(
            UID,
            &serde_json::json!({
                "tiers": [{"name": "web", "podSelector": {"matchLabels": {"app": "web"}}}],
                "sharedServices": [{"name": "ingress", "direction": "Ingress",
                                    "namespace": "ingress-nginx", "ports": [{"port": 80}]}],
            }),
        )
    }

    /// The label digest covers every label render sets, for every role: a label render adds
    /// later without [`role_labels`] knowing it would make every policy look drifted forever.
    #[test]
    fn the_label_digest_covers_every_rendered_label() {
        let policies = rendered();
        let roles: Vec<String> = policies
            .iter()
            .filter_map(|policy| {
                policy
                    .metadata
                    .labels
                    .as_ref()?
                    .get(crate::meta::ROLE_LABEL)
                    .cloned()
            })
            .collect();
        assert!(
            ["default-deny", "tier", "shared"]
                .iter()
                .all(|role| roles.iter().any(|seen| seen == role)),
            "{roles:?}"
        );
        for policy in &policies {
            let labels = policy.metadata.labels.clone().unwrap_or_default();
            let role =
                PolicyRole::from_labels(&labels).expect("a rendered policy carries its role");
            let mut covered: Vec<&str> = vec![MANAGED_BY_LABEL, ISOLATION_LABEL];
            covered.extend(role.labels().into_iter().map(|(key, _)| key));
            let mut set: Vec<&str> = labels.keys().map(String::as_str).collect();
            covered.sort_unstable();
            set.sort_unstable();
            assert_eq!(set, covered, "{:?}", policy.metadata.name);
        }
    }

    /// What others add (labels, owner references that are not the controller) is not drift;
    /// what netfence renders, changed, is; and only a spec that means something else differs.
    #[test]
    fn carries_what_netfence_renders_and_ignores_what_others_add() {
        let policies = rendered();
        for policy in &policies {
            let mut added = policy.clone();
            added
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .extend([
                    ("team".to_owned(), "a".to_owned()),
                    (crate::meta::TIER_LABEL.to_owned(), "forged".to_owned()),
                ]);
            if PolicyRole::from_labels(policy.metadata.labels.as_ref().expect("labels"))
                .is_some_and(|role| matches!(role, PolicyRole::Tier(_)))
            {
                // A tier policy's own tier label was just changed: that is drift.
                assert!(!Facts::of(&added).carries(policy));
                continue;
            }
            added
                .metadata
                .owner_references
                .get_or_insert_with(Vec::new)
                .push(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                        api_version: "v1".to_owned(),
                        kind: "ConfigMap".to_owned(),
                        name: "other".to_owned(),
                        uid: "other".to_owned(),
                        ..Default::default()
                    },
                );
            assert!(
                Facts::of(&added).carries(policy),
                "{:?}",
                policy.metadata.name
            );
            assert!(Facts::of(&added).controlled_by(UID));
        }
        let deny = &policies[0];
        let mut role_changed = deny.clone();
        role_changed
            .metadata
            .labels
            .as_mut()
            .expect("labels")
            .insert(crate::meta::ROLE_LABEL.to_owned(), "allow-dns".to_owned());
        assert!(!Facts::of(&role_changed).carries(deny));
        let mut foreign_owner = deny.clone();
        foreign_owner.metadata.owner_references =
            Some(vec![render::owner_reference("shop", "another-uid")]);
        assert!(!Facts::of(&foreign_owner).carries(deny));
        assert!(!Facts::of(&foreign_owner).controlled_by(UID));
        assert!(Facts::of(&foreign_owner).controlled_by_other("shop", UID));
        // TCP spelled out, and empty rule lists, mean what the rendered spec means.
        let mut spelled = deny.clone();
        let spec = spelled.spec.as_mut().expect("spec");
        spec.ingress.get_or_insert_with(Vec::new);
        spec.egress.get_or_insert_with(Vec::new);
        assert!(Facts::of(&spelled).carries(deny));
        spelled.spec.as_mut().expect("spec").policy_types = Some(vec!["Ingress".to_owned()]);
        assert!(!Facts::of(&spelled).same_spec(deny));
    }
}
