//! netfence: turns `NamespaceIsolation` resources into the NetworkPolicies of a zero-trust namespace.
//!
//! ```text
//! manifests   files, directories, stdin -> Kubernetes objects as JSON, typed with field paths
//! render      ValidatedIsolation -> NetworkPolicies (pure)
//! sandbox     an in-memory Kubernetes API server for trying netfence and for tests
//! ```

pub mod cli;
pub mod manifests;
pub mod sandbox;
