//! Protobuf request bodies: what `kubectl create namespace` sends, turned into the JSON object
//! the rest of the sandbox handles.
//!
//! ```text
//! "k8s\0" + runtime.Unknown { 1 typeMeta { 1 apiVersion, 2 kind }, 2 raw, 3 contentEncoding, 4 contentType }
//!            |-- v1 Namespace --> namespace::to_json(raw) --> {"apiVersion": "v1", "kind": "Namespace", ...}
//!            '-- any other kind --> Unsupported (415: send JSON, `kubectl apply -f` works for all)
//! ```
//!
//! Field numbers are those of upstream's `generated.proto` (k8s.io/apimachinery `runtime` and
//! `pkg/apis/meta/v1`, k8s.io/api `core/v1`). Only creating a core v1 Namespace is decoded: it is
//! the one built-in kind kubectl sends as protobuf that the sandbox's users need (`kubectl create
//! namespace`); every other typed `kubectl create` subcommand makes a kind the sandbox does not
//! serve, or that `kubectl apply -f` creates as JSON.

mod namespace;
pub mod wire;

use serde_json::Value;
use thiserror::Error;

use wire::{Field, WireError, WireValue, fields};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The kinds the sandbox decodes from protobuf, as a user reads them in an error.
pub const ACCEPTED_KINDS: &str = "v1 Namespace (kubectl create namespace)";

/// Why a protobuf body was not turned into an object.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The body does not start with `k8s\0`.
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    Magic,
    /// The bytes of a message are not protobuf.
    #[error("failed to decode the protobuf {message}: {source}")]
    Wire {
        /// The message being read: `runtime.Unknown`, `ObjectMeta`, ...
        message: &'static str,
        /// What is wrong with its bytes.
        #[source]
        source: WireError,
    },
    /// A known field with the wrong wire type or a string that is not UTF-8.
    #[error("failed to decode the protobuf {message}: field {field} is not a valid {expected}")]
    Field {
        /// The message being read.
        message: &'static str,
        /// The field's name in the `.proto` definition.
        field: &'static str,
        /// What it should be: `string`, `bool`, `message`.
        expected: &'static str,
    },
    /// The envelope names no kind.
    #[error("Object 'Kind' is missing in the protobuf body")]
    MissingKind,
    /// A kind, encoding or field the sandbox does not decode from protobuf.
    #[error(
        "the sandbox accepts protobuf request bodies only for {ACCEPTED_KINDS}, not {what}: send the object as JSON or YAML instead (kubectl apply -f works for every kind)"
    )]
    Unsupported {
        /// What was sent: `apps/v1 Deployment`, `ObjectMeta.managedFields`, ...
        what: String,
    },
}

impl DecodeError {
    /// Whether the body is valid but beyond what the sandbox decodes (415), rather than
    /// malformed (400).
    #[must_use]
    pub fn is_unsupported(&self) -> bool {
        matches!(self, DecodeError::Unsupported { .. })
    }
}

/// The fields of a message, each checked, with the message's name on any error.
fn message_fields<'a>(
    bytes: &'a [u8],
    message: &'static str,
) -> impl Iterator<Item = Result<Field<'a>, DecodeError>> {
    fields(bytes).map(move |field| field.map_err(|source| DecodeError::Wire { message, source }))
}

/// The bytes of a length-delimited field.
fn bytes_of<'a>(
    field: &Field<'a>,
    message: &'static str,
    name: &'static str,
    expected: &'static str,
) -> Result<&'a [u8], DecodeError> {
    match field.value {
        WireValue::Bytes(bytes) => Ok(bytes),
        WireValue::Varint(_) | WireValue::Fixed => Err(DecodeError::Field {
            message,
            field: name,
            expected,
        }),
    }
}

/// A string field.
fn text_of(
    field: &Field<'_>,
    message: &'static str,
    name: &'static str,
) -> Result<String, DecodeError> {
    let bytes = bytes_of(field, message, name, "string")?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Field {
        message,
        field: name,
        expected: "UTF-8 string",
    })
}

/// A bool field.
fn flag_of(
    field: &Field<'_>,
    message: &'static str,
    name: &'static str,
) -> Result<bool, DecodeError> {
    match field.value {
        WireValue::Varint(value) => Ok(value != 0),
        WireValue::Bytes(_) | WireValue::Fixed => Err(DecodeError::Field {
            message,
            field: name,
            expected: "bool",
        }),
    }
}

/// The `runtime.Unknown` envelope after the magic.
#[derive(Debug, Default)]
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

fn envelope(bytes: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    const UNKNOWN: &str = "runtime.Unknown";
    const TYPE_META: &str = "runtime.TypeMeta";
    let mut envelope = Envelope::default();
    for field in message_fields(bytes, UNKNOWN) {
        let field = field?;
        match field.number {
            1 => {
                for type_field in
                    message_fields(bytes_of(&field, UNKNOWN, "typeMeta", "message")?, TYPE_META)
                {
                    let type_field = type_field?;
                    match type_field.number {
                        1 => envelope.api_version = text_of(&type_field, TYPE_META, "apiVersion")?,
                        2 => envelope.kind = text_of(&type_field, TYPE_META, "kind")?,
                        _ => {}
                    }
                }
            }
            2 => envelope.raw = bytes_of(&field, UNKNOWN, "raw", "bytes")?,
            3 => envelope.content_encoding = text_of(&field, UNKNOWN, "contentEncoding")?,
            4 => envelope.content_type = text_of(&field, UNKNOWN, "contentType")?,
            _ => {}
        }
    }
    Ok(envelope)
}

/// The `apiVersion` and `kind` a protobuf body's envelope names, when it can be read.
#[must_use]
pub fn envelope_type(body: &[u8]) -> Option<(String, String)> {
    let envelope = envelope(body.strip_prefix(MAGIC)?).ok()?;
    (!envelope.kind.is_empty()).then_some((envelope.api_version, envelope.kind))
}

/// Decode a Kubernetes protobuf request body into the JSON object it encodes.
pub fn to_json(body: &[u8]) -> Result<Value, DecodeError> {
    let rest = body.strip_prefix(MAGIC).ok_or(DecodeError::Magic)?;
    let envelope = envelope(rest)?;
    if !envelope.content_encoding.is_empty() {
        return Err(DecodeError::Unsupported {
            what: format!("contentEncoding {:?}", envelope.content_encoding),
        });
    }
    if !envelope.content_type.is_empty() && envelope.content_type != MEDIA_TYPE {
        return Err(DecodeError::Unsupported {
            what: format!("raw data of contentType {:?}", envelope.content_type),
        });
    }
    if envelope.kind.is_empty() {
        return Err(DecodeError::MissingKind);
    }
    match (envelope.api_version.as_str(), envelope.kind.as_str()) {
        ("v1", "Namespace") => namespace::to_json(envelope.raw),
        (api_version, kind) => Err(DecodeError::Unsupported {
            what: format!("{api_version} {kind}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The body of `kubectl create namespace demo` (kubectl v1.32.4), captured from the wire.
    const CREATE_DEMO: &[u8] = include_bytes!("fixtures/kubectl-create-namespace-demo.bin");
    /// The body of `kubectl create namespace labelled --dry-run=server`, captured likewise.
    const CREATE_DRY_RUN: &[u8] = include_bytes!("fixtures/kubectl-create-namespace-dry-run.bin");
    /// A Namespace with labels, annotations and a spec finalizer, encoded the way kubectl's
    /// encoder lays out the captured bodies (kubectl has no flag that sends labels in protobuf).
    const WITH_LABELS: &[u8] = include_bytes!("fixtures/namespace-with-labels.bin");

    /// If this fails, `kubectl create namespace demo` does not create `demo` in the sandbox.
    #[test]
    fn kubectl_create_namespace_decodes_to_the_json_object() {
        assert_eq!(
            to_json(CREATE_DEMO).expect("decodes"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
        );
        assert_eq!(
            to_json(CREATE_DRY_RUN).expect("decodes"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "labelled"}})
        );
    }

    /// If this fails, labels or annotations of a Namespace created over protobuf are lost.
    #[test]
    fn labels_annotations_and_finalizers_are_kept() {
        assert_eq!(
            to_json(WITH_LABELS).expect("decodes"),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": "shop",
                    "labels": {"team": "web", "tier": "api"},
                    "annotations": {"owner": "ops"},
                },
                "spec": {"finalizers": ["example.com/hold"]},
            })
        );
    }

    /// If this fails, a truncated or garbled body crashes the sandbox or is half-created
    /// instead of being refused with a message.
    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        // A cut between two top-level fields of the envelope is a valid, shorter message; a cut
        // anywhere else is malformed.
        for (body, boundaries) in [(CREATE_DEMO, [21, 51, 53]), (WITH_LABELS, [21, 109, 111])] {
            let decoded: Vec<usize> = (0..body.len())
                .filter(
                    |length| match to_json(body.get(..*length).unwrap_or_default()) {
                        Ok(_) => true,
                        Err(error) => {
                            assert!(!error.is_unsupported(), "{length}: {error}");
                            false
                        }
                    },
                )
                .collect();
            assert_eq!(decoded, boundaries);
            for at in 0..body.len() {
                for byte in [0x00, 0x07, 0x80, 0xff] {
                    let mut corrupt = body.to_vec();
                    corrupt[at] = byte;
                    let _ = to_json(&corrupt);
                }
            }
        }
        let truncated = CREATE_DEMO.get(..CREATE_DEMO.len() - 3).unwrap_or_default();
        let error = to_json(truncated).expect_err("truncated");
        assert!(!error.is_unsupported());
        assert_eq!(
            error.to_string(),
            "failed to decode the protobuf runtime.Unknown: the message is truncated"
        );
        let error = to_json(b"{\"kind\":\"Namespace\"}").expect_err("JSON is not protobuf");
        assert!(error.to_string().contains("expected prefix [107 56 115 0]"));
    }

    /// If this fails, a Pod or Deployment sent as protobuf is decoded as something else, or
    /// refused without telling the user what works.
    #[test]
    fn other_kinds_are_unsupported_with_the_way_out() {
        let mut body = MAGIC.to_vec();
        // runtime.Unknown { typeMeta { apiVersion "apps/v1", kind "Deployment" } }
        body.extend([0x0a, 0x15, 0x0a, 0x07]);
        body.extend(b"apps/v1");
        body.extend([0x12, 0x0a]);
        body.extend(b"Deployment");
        let error = to_json(&body).expect_err("unsupported");
        assert!(error.is_unsupported());
        assert_eq!(
            error.to_string(),
            "the sandbox accepts protobuf request bodies only for v1 Namespace (kubectl create namespace), not apps/v1 Deployment: send the object as JSON or YAML instead (kubectl apply -f works for every kind)"
        );
    }
}
