//! netfence: turns `NamespaceIsolation` resources into the NetworkPolicies of a zero-trust namespace.
//!
//! ```text
//! manifests   files, directories, stdin -> Kubernetes objects as JSON, typed with field paths
//! render      ValidatedIsolation -> NetworkPolicies (pure)
//! controller  reconcile loops: apply, prune, status (I/O)
//! metrics     Prometheus counters, /metrics /healthz /readyz
//! sandbox     an in-memory Kubernetes API server for trying netfence and for tests (I/O)
//! plan        rendered + observed policies -> the writes that make them equal (pure)
//! template    IsolationTemplate x namespaces -> the NamespaceIsolations to write (pure)
//! verify      Namespaces, Pods, NetworkPolicies -> who can reach whom, and why (pure)
//! ```

pub mod cli;
pub mod controller;
pub mod manifests;
pub mod metrics;
pub mod plan;
pub mod render;
pub mod sandbox;
pub mod template;
pub mod verify;
