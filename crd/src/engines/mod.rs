//! The other engines' kinds netfence renders a ClusterBaseline to and `netfence verify` reads:
//! their wire format as their CRDs define it, for the fields netfence models. Every struct refuses
//! unknown fields, so a field netfence does not model is an error naming it, never a silent
//! misreading.
//!
//! ```text
//! cluster_network_policy   policy.networking.k8s.io/v1alpha2 (and v1beta1) ClusterNetworkPolicy
//! calico                   projectcalico.org/v3 GlobalNetworkPolicy and Tier
//! cilium                   cilium.io/v2 CiliumClusterwideNetworkPolicy
//! ```

pub mod calico;
pub mod cilium;
pub mod cluster_network_policy;
