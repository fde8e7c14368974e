//! Validation: the resources users write in, values whose every field was checked out, or every
//! error with its field path.
//!
//! ```text
//! [ NamespaceIsolation ] --TryFrom--> [ ValidatedIsolation ]   parsed selectors and CIDRs; tiers by index
//! [ IsolationTemplate ]  --TryFrom--> [ ValidatedTemplate ]    its spec validated as the generated resource's
//! [ ClusterBaseline ]    --TryFrom--> [ ValidatedBaseline ]    its baseline validated as a NamespaceIsolation's
//!                                 \-> [ ValidationErrors ]     every bad field, with its path
//! ```
//!
//! The rules themselves (names, label keys and values, selectors, CIDRs, ports) are written once,
//! in [`crate::names`], [`crate::selector`] and [`crate::cidr`].

pub mod baseline;
pub mod isolation;
pub mod schema;
pub mod template;

use std::fmt;

pub use baseline::{ValidGuardrail, ValidatedBaseline};
pub use isolation::{
    MAX_RESOURCE_NAME, Peer, PortValue, Ports, ValidDns, ValidFlow, ValidIpBlock, ValidPort,
    ValidSelector, ValidSharedService, ValidTier, ValidatedIsolation, namespace_name_selector,
    selector_errors,
};
pub use template::ValidatedTemplate;

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, `spec.flows[1].to`; empty for the object as a whole.
    pub path: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every invalid field of one resource, in the order of the spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let messages: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", messages.join("; "))
    }
}
