//! The cluster-wide policies of other engines, read into the model's [`Policy`] values that the
//! engine evaluates ([`crate::evaluate`]): each object becomes one policy per stage it takes part
//! in.
//!
//! ```text
//! ClusterNetworkPolicy           --> Admin tier: Stage::Before; Baseline tier: Stage::After
//! Calico Tier + GlobalNetworkPolicy --> tiers before `default`: Before; `default`: Namespace (Allow rules only); after: After
//! CiliumClusterwideNetworkPolicy --> allows: Namespace (isolating per enableDefaultDeny); deny rules: Before
//! ```
//!
//! Every field netfence does not model is an error naming it (the typed structs refuse unknown
//! fields too), never a silent misreading.

mod calico;
mod cilium;
mod cluster_network_policy;
#[cfg(test)]
mod tests;

use netfence_crd::engines::{
    calico::{GlobalNetworkPolicy, Tier},
    cilium::CiliumClusterwideNetworkPolicy,
    cluster_network_policy::ClusterNetworkPolicy,
};

use super::model::{ModelError, Policy, PolicyChecker};

/// The cluster-wide objects of a cluster, as read from manifests or the API.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterWidePolicies {
    /// `policy.networking.k8s.io` ClusterNetworkPolicies.
    pub cluster_network_policies: Vec<ClusterNetworkPolicy>,
    /// Calico Tiers.
    pub calico_tiers: Vec<Tier>,
    /// Calico GlobalNetworkPolicies.
    pub calico_policies: Vec<GlobalNetworkPolicy>,
    /// CiliumClusterwideNetworkPolicies.
    pub cilium_policies: Vec<CiliumClusterwideNetworkPolicy>,
}

impl ClusterWidePolicies {
    /// Whether there is none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.cluster_network_policies.is_empty()
            && self.calico_policies.is_empty()
            && self.calico_tiers.is_empty()
            && self.cilium_policies.is_empty()
    }
}

impl ClusterWidePolicies {
    /// Add an object of `kind` as the API serves it. `Err` names what does not read (a field
    /// this version of netfence does not model); `Ok(false)` for a kind that is not one of these.
    ///
    /// # Errors
    ///
    /// When the object does not decode into its kind's type.
    pub fn add(&mut self, kind: &str, object: serde_json::Value) -> Result<bool, String> {
        fn typed<T: serde::de::DeserializeOwned>(object: serde_json::Value) -> Result<T, String> {
            serde_path_to_error::deserialize(object).map_err(|error| {
                let path = error.path().to_string();
                format!("{path}: {}", error.into_inner())
            })
        }
        match kind {
            "ClusterNetworkPolicy" => self.cluster_network_policies.push(typed(object)?),
            "Tier" => self.calico_tiers.push(typed(object)?),
            "GlobalNetworkPolicy" => self.calico_policies.push(typed(object)?),
            "CiliumClusterwideNetworkPolicy" => self.cilium_policies.push(typed(object)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The model's policies for every cluster-wide object, or the problems found (pushed to
/// `errors`).
pub(crate) fn policies(objects: &ClusterWidePolicies, errors: &mut Vec<ModelError>) -> Vec<Policy> {
    let mut policies = Vec::new();
    for policy in &objects.cluster_network_policies {
        policies.extend(cluster_network_policy::policy(policy, errors));
    }
    policies.extend(calico::policies(
        &objects.calico_tiers,
        &objects.calico_policies,
        errors,
    ));
    for policy in &objects.cilium_policies {
        policies.extend(cilium::policies(policy, errors));
    }
    policies
}

/// A checker for one object of `kind` (its errors name it), with its apiVersion checked against
/// the ones read; and the object's name.
fn checker<'a>(
    kind: &'static str,
    name: Option<&String>,
    api_version: &str,
    read: &[&str],
    errors: &'a mut Vec<ModelError>,
) -> (String, PolicyChecker<'a>) {
    let name = name.cloned().unwrap_or_default();
    let mut checker = PolicyChecker {
        kind,
        object: name.clone(),
        errors,
        failed: false,
    };
    if !read.contains(&api_version) {
        checker.problem(
            "apiVersion",
            format!("{api_version:?} is not read; use {}", read.join(" or ")),
        );
    }
    (name, checker)
}

/// Every IPv4 and IPv6 address: `0.0.0.0/0` and `::/0`.
fn every_address() -> Vec<crate::cidr::Cidr> {
    ["0.0.0.0/0", "::/0"]
        .into_iter()
        .filter_map(|text| crate::cidr::Cidr::parse(text).ok())
        .collect()
}

/// Thousandths: the model's integer order keys.
fn thousandths(value: f64) -> i64 {
    // Orders are small numbers written by people; a value beyond i64 saturates.
    #[allow(clippy::cast_possible_truncation)]
    let scaled = (value * 1000.0).round() as i64;
    scaled
}
