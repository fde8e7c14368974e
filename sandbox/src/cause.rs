//! One invalid field of a request, as a 422 `Status` lists it in `details.causes`: the reason,
//! the field path and upstream's message. Raised by every check (metadata, schema, CEL, built-in
//! kinds, CRD registration) and turned into a `Status` by [`super::status::ApiError::invalid`].
//!
//! ```text
//! check --> [ FieldCause x N ] --ApiError::invalid--> 422 Status
//! ```

/// One invalid field of a 422 answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldCause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`...
    pub reason: &'static str,
    /// The field path, `spec.flows[1].to`.
    pub field: String,
    /// What is wrong, without the field path: `Required value`, `Invalid value: "x": ...`.
    pub message: String,
}

impl FieldCause {
    /// `field: Required value`.
    #[must_use]
    pub fn required(field: &str) -> FieldCause {
        FieldCause {
            reason: "FieldValueRequired",
            field: field.to_owned(),
            message: "Required value".to_owned(),
        }
    }

    /// `field: Invalid value: "value": detail`, the value quoted as Go's `%q` quotes it.
    #[must_use]
    pub fn invalid(field: &str, value: &str, detail: &str) -> FieldCause {
        FieldCause {
            reason: "FieldValueInvalid",
            field: field.to_owned(),
            message: format!("Invalid value: {value:?}: {detail}"),
        }
    }

    /// `field: message`, the way `field.Error` prints.
    #[must_use]
    pub fn text(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}
