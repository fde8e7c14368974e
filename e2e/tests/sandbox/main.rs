//! Scenario tests of the in-memory API server through the real `kube` client (and raw HTTP
//! where a client would hide what the server answers). Each runs in its own namespace, against
//! a fresh sandbox, or against the cluster of `NETFENCE_E2E_KUBECONFIG` when it is set.

mod apply;
mod common;
mod crud;
mod faults;
mod lifecycle;
mod protobuf;
mod robustness;
mod validation;
mod watch;
