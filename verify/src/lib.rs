//! NetworkPolicy semantics: who can reach whom, on which port, and why. Pure: values in, values
//! out; no I/O, no clock, no async.
//!
//! ```text
//! [ Namespace ] [ Pod ] [ NetworkPolicy ]
//!        |  Cluster::build (model: validate, apply defaults; errors name object and field)
//!        v
//!     Cluster --reachability(probes)--> Reachability --connections()/verdict()--> per pair, per probe
//!        |                                  (grouping: pods no policy tells apart share one class)
//!        +--explain(from, to, probe)--> Explanation (which policies select each end, which rule decided)
//! ```
//!
//! Modules, by what they do:
//! - [`model`]: Kubernetes objects -> the validated [`Cluster`];
//! - label selectors and CIDRs are `netfence_core`'s [`selector`] and [`cidr`], the rules
//!   validation applies, written once;
//! - [`evaluate`]: the semantics of one connection (the reference);
//! - [`grouping`]: equivalence classes of pods and the bitsets behind them;
//! - [`reachability`]: the matrix per probe, expanded to connections;
//! - [`explain`]: the explanation of one connection; [`report`]: the matrix as tables;
//! - [`intent`]: the proof that a NamespaceIsolation's policies allow exactly what it declares,
//!   and the diff of what a change opens and closes;
//! - [`picture`]: a proof's or a diff's tier graph as Mermaid, DOT or SVG.

pub mod cluster_wide;
pub mod conformance;
pub mod evaluate;
pub mod explain;
pub mod grouping;
pub mod intent;
pub mod model;
pub mod picture;
pub mod reachability;
pub mod report;

pub use netfence_core::{cidr, selector};

pub use evaluate::{Decision, Side, Verdict, decide};
pub use explain::{Explanation, explain};
pub use model::{Cluster, ModelError, ModelErrors, Probe};
pub use reachability::{Connection, Reachability, reachability};

#[cfg(test)]
mod tests;
