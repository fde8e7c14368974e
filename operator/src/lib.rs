//! netfence: turns `NamespaceIsolation` resources into the NetworkPolicies of a zero-trust
//! namespace. This crate is the thin binary: the command line over the crates that do the work.
//!
//! ```text
//! cli         the subcommands: crd, render, plan, verify, run, sandbox (feature `sandbox`)
//! manifests   files, directories, stdin -> the documents netfence_core::manifests parses
//! ```

pub mod cli;
pub mod manifests;
