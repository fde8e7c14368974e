//! The pure core of netfence: values in, values out. No client, no async runtime, no clock, no
//! file reads (`cargo tree -p netfence-core` shows no kube client, tokio or hyper).
//!
//! ```text
//! names      DNS-1123 names, label keys and values, port names: each rule written once
//! selector   LabelSelector -> Selector (validated, sorted), and matching labels
//! cidr       "10.0.0.0/8" -> Cidr, and matching addresses
//! meta       the labels, annotations, finalizer and field manager netfence writes
//! validate   NamespaceIsolation / IsolationTemplate / ClusterBaseline -> Validated* (parsed selectors and CIDRs), or every error
//! manifests  the text of a manifest -> its documents, typed with field paths
//! render     ValidatedIsolation -> NetworkPolicies
//! baseline   ValidatedBaseline x engine x covered namespaces -> the engine's objects, or the fields it cannot express
//! observed   NetworkPolicy -> what a plan needs of it (facts and digests, not the object)
//! plan       rendered + observed policies -> the writes that make them equal
//! template   IsolationTemplate x namespaces -> the NamespaceIsolations to write
//! status     the outcome of a reconcile -> the resource's status
//! audit      what the DNS peer really reaches, and the intent audit's part of the status
//! doctor     what a cluster holds -> the common mistakes that break zero trust, with fixes
//! testing    random valid specs for property tests (feature `testing`, dev-dependencies only)
//! ```

pub mod audit;
pub mod baseline;
pub mod cidr;
pub mod doctor;
pub mod manifests;
pub mod meta;
pub mod names;
pub mod observed;
pub mod plan;
pub mod render;
pub mod selector;
pub mod status;
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;

pub use validate::{ValidatedBaseline, ValidatedIsolation, ValidatedTemplate, ValidationErrors};
