//! netfence: turns `NamespaceIsolation` resources into the NetworkPolicies of a zero-trust namespace.
//!
//! ```text
//! manifests   files, directories, stdin -> Kubernetes objects as JSON, typed with field paths
//! render      ValidatedIsolation -> NetworkPolicies (pure)
//! verify      Namespaces, Pods, NetworkPolicies -> who can reach whom, and why (pure)
//! ```

pub mod cli;
pub mod manifests;
pub mod render;
pub mod verify;
