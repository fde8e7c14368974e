//! Kubernetes manifests: the text of a file in, its documents out, each typed with field paths.
//! Pure: reading files, directories and stdin is the binary's (`netfence::manifests::load`).
//!
//! ```text
//! PATH... --load--> [ Document { source, value } x N ] --typed::<T>--> T, or one error with its field path
//! ```
//!
//! A path is a file, a directory (its `.yaml`, `.yml` and `.json` files, recursively, in name
//! order) or `-` for stdin. A file holds one or more YAML documents (JSON is YAML); documents of
//! `kind: List` (what `kubectl get -o yaml` prints) are expanded into their items. Empty documents
//! are skipped, but a file with no document at all is an error: it is almost always a mistake.

pub use crate::validate::FieldError;
use crate::validate::{ValidationErrors, schema};
use kube::core::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The largest manifest file read, in bytes. Larger inputs are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

pub use crate::names::{NAMESPACE_RULE, namespace_problem};

/// One Kubernetes object read from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Where it came from: the file path as given, or `-` for stdin.
    pub source: String,
    /// The object, as JSON.
    pub value: Value,
}

impl Document {
    /// `metadata.name`, or `<unnamed>` when it is missing.
    #[must_use]
    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>")
    }

    /// `kind`, or the empty string when it is missing.
    #[must_use]
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    /// `apiVersion`, or the empty string when it is missing.
    #[must_use]
    pub fn api_version(&self) -> &str {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The namespace this document names, when it cannot be one, as the field and what to do:
    /// its `metadata.namespace` (an empty one too: kubectl would put the object into the
    /// current context's namespace, and a policy into the wrong one), or a Namespace's
    /// `metadata.name`, which it must have. A `metadata.namespace` that is not a string is left
    /// to the typed read, which names its type.
    #[must_use]
    pub fn namespace_error(&self) -> Option<FieldError> {
        if self.kind() == "Namespace" {
            let name = self.value.pointer("/metadata/name").and_then(Value::as_str);
            let message = match name {
                None => Some(format!(
                    "is missing; a Namespace manifest names its namespace, and {NAMESPACE_RULE}"
                )),
                Some(name) => namespace_problem(name),
            };
            return message.map(|message| FieldError {
                path: "metadata.name".to_owned(),
                message,
            });
        }
        let namespace = self.value.pointer("/metadata/namespace")?.as_str()?;
        let problem = namespace_problem(namespace)?;
        Some(FieldError {
            path: "metadata.namespace".to_owned(),
            message: if namespace.is_empty() {
                format!(
                    "is empty: name the namespace, or leave the field out for `kubectl apply -n` (or `netfence render --namespace`) to set it; {NAMESPACE_RULE}"
                )
            } else {
                problem
            },
        })
    }

    /// Deserialize into `T`, refusing unknown fields: a misspelt field in a manifest is an error,
    /// never silently ignored. The error names the field path (`spec.flows[1].ports[0].port`).
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, FieldError> {
        typed(&self.value)
    }

    /// Read a netfence resource and validate it, with every error of the document: the
    /// structural ones (unknown fields, wrong types, enum values that do not exist, missing
    /// required fields: walked against `T`'s CRD schema, see [`crate::validate::schema`]) and
    /// the semantic ones of `V`'s validation, run on the object with the structural errors
    /// replaced (its errors at or below a structurally wrong field are left out: they would be
    /// about the placeholder, not about what was written).
    pub fn validated<T, V>(&self) -> Result<(T, V), ValidationErrors>
    where
        T: DeserializeOwned + CustomResourceExt,
        V: for<'a> TryFrom<&'a T, Error = ValidationErrors>,
    {
        let crd = T::crd();
        let schema = crd
            .spec
            .versions
            .first()
            .and_then(|version| version.schema.as_ref())
            .and_then(|validation| validation.open_api_v3_schema.as_ref())
            .and_then(|schema| serde_json::to_value(schema).ok())
            .unwrap_or(Value::Null);
        let (mut repaired, mut errors) = schema::check(&schema, &self.value);
        let resource = loop {
            match typed::<T>(&repaired) {
                Ok(resource) => break resource,
                Err(error) => {
                    // A metadata field the walk does not type (`creationTimestamp: 3`): reported,
                    // then left out, so that the spec is still validated.
                    let key = error
                        .path
                        .strip_prefix("metadata.")
                        .map(|rest| rest.split(['.', '[']).next().unwrap_or(rest).to_owned());
                    if !schema::covered(&error.path, &errors) {
                        errors.push(error);
                    }
                    let removed = key.and_then(|key| {
                        repaired
                            .get_mut("metadata")
                            .and_then(Value::as_object_mut)
                            .and_then(|metadata| metadata.remove(&key))
                    });
                    if removed.is_none() {
                        return Err(ValidationErrors(errors));
                    }
                }
            }
        };
        match V::try_from(&resource) {
            Ok(valid) if errors.is_empty() => Ok((resource, valid)),
            Ok(_) => Err(ValidationErrors(errors)),
            Err(ValidationErrors(semantic)) => {
                let structural = errors.clone();
                errors.extend(
                    semantic
                        .into_iter()
                        .filter(|error| !schema::covered(&error.path, &structural)),
                );
                Err(ValidationErrors(errors))
            }
        }
    }

    /// Deserialize into `T`, ignoring fields this version does not know: for objects read only
    /// for a few fields (a Pod's labels and ports, a Namespace's labels) from dumps of newer
    /// clusters.
    pub fn lenient<T: DeserializeOwned>(&self) -> Result<T, FieldError> {
        serde_path_to_error::deserialize(&self.value).map_err(|error| FieldError {
            path: match error.path().to_string().as_str() {
                "." => "(object)".to_owned(),
                path => path.to_owned(),
            },
            message: error.inner().to_string(),
        })
    }
}

/// Deserialize a JSON value into `T`, refusing unknown fields, with the field path of any error.
pub fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    let mut unknown = Vec::new();
    // Some types (kube's derived resources) read `apiVersion` and `kind` outside serde: they are
    // not unknown fields.
    let mut record_unknown = |path: serde_ignored::Path<'_>| {
        let path = field_path(&path);
        if !matches!(path.as_str(), "apiVersion" | "kind") {
            unknown.push(path);
        }
    };
    let result: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        value,
        &mut record_unknown,
    ));
    match result {
        Err(error) => Err(FieldError {
            path: path_text(&error.path().to_string()),
            message: error.inner().to_string(),
        }),
        Ok(_) if !unknown.is_empty() => Err(FieldError {
            path: path_text(&unknown[0]),
            message: "unknown field; check its spelling and indentation against `kubectl explain`"
                .to_owned(),
        }),
        Ok(object) => Ok(object),
    }
}

/// A path from serde_ignored in the Kubernetes field-path style: `spec.containers[0].name`
/// (serde_ignored's own text writes `?` for every optional value and `.0` for indexes).
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// serde_path_to_error writes `.` for the root and `spec.flows[1].to` otherwise; serde_ignored
/// writes `?` for the root. Both become the Kubernetes field-path style.
fn path_text(path: &str) -> String {
    match path {
        "." | "?" => String::new(),
        other => other.to_owned(),
    }
}

/// An error reading manifests: the file, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A path could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than [`MAX_FILE_BYTES`].
    #[error("{path}: file is larger than {limit} MiB; split it into smaller files", limit = MAX_FILE_BYTES / 1024 / 1024)]
    TooLarge {
        /// The path.
        path: String,
    },
    /// A file is not UTF-8 text.
    #[error("{path}: not UTF-8 text; manifests are YAML or JSON")]
    NotText {
        /// The path.
        path: String,
    },
    /// A file is not valid YAML or JSON.
    #[error("{path}: not valid YAML or JSON: {message}")]
    Syntax {
        /// The path.
        path: String,
        /// The parser's message, with the line.
        message: String,
    },
    /// A file holds no document.
    #[error("{path}: holds no Kubernetes object; remove the file or add a manifest")]
    Empty {
        /// The path.
        path: String,
    },
    /// A document is not a Kubernetes object.
    #[error(
        "{path}: document {index} is not a Kubernetes object (a mapping with apiVersion and kind)"
    )]
    NotAnObject {
        /// The path.
        path: String,
        /// The document's position in the file, from 1.
        index: usize,
    },
    /// A directory holds no manifest file.
    #[error("{path}: directory holds no .yaml, .yml or .json file")]
    EmptyDirectory {
        /// The path.
        path: String,
    },
}

/// Parse the text of one file (or stdin) into its documents.
pub fn parse(source: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let values: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|error| LoadError::Syntax {
            path: source.to_owned(),
            message: error.to_string(),
        })?;
    let mut documents = Vec::new();
    for (position, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let is_object = value
            .as_object()
            .is_some_and(|map| map.contains_key("kind") && map.contains_key("apiVersion"));
        if !is_object {
            return Err(LoadError::NotAnObject {
                path: source.to_owned(),
                index: position + 1,
            });
        }
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            documents.extend(items.into_iter().map(|item| Document {
                source: source.to_owned(),
                value: item,
            }));
        } else {
            documents.push(Document {
                source: source.to_owned(),
                value,
            });
        }
    }
    if documents.is_empty() {
        return Err(LoadError::Empty {
            path: source.to_owned(),
        });
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_and_lists_are_expanded() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: p}}\n- {apiVersion: v1, kind: Pod, metadata: {name: q}}\n";
        let documents = parse("f.yaml", text).expect("parses");
        let names: Vec<_> = documents.iter().map(Document::name).collect();
        assert_eq!(names, ["a", "p", "q"]);
    }

    #[test]
    fn empty_input_is_an_error_naming_the_file() {
        let error = parse("empty.yaml", "").expect_err("empty");
        assert_eq!(
            error.to_string(),
            "empty.yaml: holds no Kubernetes object; remove the file or add a manifest"
        );
        assert!(matches!(
            parse("c.yaml", "# only a comment\n---\n"),
            Err(LoadError::Empty { .. })
        ));
    }

    #[test]
    fn scalars_and_mappings_without_kind_are_not_objects() {
        let error = parse("x.yaml", "just some words").expect_err("scalar");
        assert_eq!(
            error.to_string(),
            "x.yaml: document 1 is not a Kubernetes object (a mapping with apiVersion and kind)"
        );
        assert!(matches!(
            parse("x.yaml", "apiVersion: v1\nkind: Pod\n---\nfoo: bar\n"),
            Err(LoadError::NotAnObject { index: 2, .. })
        ));
    }

    #[test]
    fn malformed_yaml_is_a_syntax_error_naming_the_file() {
        let error = parse("bad.yaml", "kind: [unclosed\n").expect_err("bad");
        assert!(matches!(error, LoadError::Syntax { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("bad.yaml: not valid YAML or JSON")
        );
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct Sample {
        #[allow(dead_code)]
        spec: SampleSpec,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct SampleSpec {
        #[allow(dead_code)]
        ports: Vec<u16>,
    }

    #[derive(serde::Deserialize, Debug)]
    struct Nested {
        #[allow(dead_code)]
        spec: Option<NestedSpec>,
    }
    #[derive(serde::Deserialize, Debug)]
    struct NestedSpec {
        #[allow(dead_code)]
        items: Option<Vec<Sample>>,
    }

    /// An unknown field below optional values and lists is named as `kubectl explain` names it;
    /// if this fails, users read serde's internal path (`spec.?.items.?.0.spek`) instead.
    #[test]
    fn unknown_fields_below_options_and_lists_have_kubernetes_paths() {
        let error = typed::<Nested>(&serde_json::json!({"spec": {"items": [
            {"spec": {"ports": [80]}},
            {"spec": {"ports": [80]}, "spek": {}},
        ]}}))
        .expect_err("unknown field");
        assert_eq!(error.path, "spec.items[1].spek");
    }

    /// A namespace named by a manifest is a DNS-1123 label; the error names the field and says
    /// what a namespace is. If this fails, render prints policies for a namespace kubectl
    /// refuses (or, for an empty one, puts into the current context's namespace).
    #[test]
    fn namespaces_are_dns_labels() {
        let document = |value: Value| Document {
            source: "f.yaml".to_owned(),
            value,
        };
        let isolation = |namespace: &str| {
            document(
                serde_json::json!({"apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation", "metadata": {"name": "a", "namespace": namespace}}),
            )
        };
        assert_eq!(isolation("shop").namespace_error(), None);
        assert_eq!(
            document(serde_json::json!({"kind": "Pod", "metadata": {"name": "p"}}))
                .namespace_error(),
            None
        );
        for (namespace, start) in [
            (
                "Bad_NS../x",
                "\"Bad_NS../x\" is not a valid namespace; a namespace is a DNS-1123 label",
            ),
            ("x/y", "\"x/y\" is not a valid namespace"),
            ("", "is empty: name the namespace, or leave the field out"),
        ] {
            let error = isolation(namespace).namespace_error().expect(namespace);
            assert_eq!(error.path, "metadata.namespace");
            assert!(error.message.starts_with(start), "{}", error.message);
        }
        let long = "a".repeat(64);
        assert!(isolation(&long).namespace_error().is_some());
        let nameless =
            document(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {}}));
        let error = nameless
            .namespace_error()
            .expect("a Namespace needs a name");
        assert_eq!(error.path, "metadata.name");
        assert!(
            error.message.starts_with("is missing; "),
            "{}",
            error.message
        );
        let bad = document(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Team_A"}}),
        );
        assert_eq!(
            bad.namespace_error().map(|error| error.path),
            Some("metadata.name".to_owned())
        );
    }

    fn document(text: &str) -> Document {
        parse("f.yaml", text).expect("YAML").remove(0)
    }

    fn isolation_errors(text: &str) -> Vec<String> {
        use crate::validate::ValidatedIsolation;
        use netfence_crd::NamespaceIsolation;
        document(text)
            .validated::<NamespaceIsolation, ValidatedIsolation>()
            .expect_err("invalid")
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const HEAD: &str = "apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: shop, namespace: shop}\n";

    /// Two unknown fields are two errors, as kubectl reports them. If this fails, `render`
    /// says "1 invalid field(s)" and the user fixes one misspelling per run.
    #[test]
    fn every_unknown_field_is_reported() {
        let errors = isolation_errors(&format!(
            "{HEAD}spec:\n  tierz: []\n  flowz: []\n  dns: {{enabeld: false}}\n"
        ));
        assert_eq!(
            errors,
            [
                "spec.dns.enabeld: unknown field; check its spelling and indentation against `kubectl explain`",
                "spec.flowz: unknown field; check its spelling and indentation against `kubectl explain`",
                "spec.tierz: unknown field; check its spelling and indentation against `kubectl explain`",
            ]
        );
    }

    /// A wrong enum value, a wrong type and a missing required field do not hide each other nor
    /// the semantic errors of the same document (an unknown tier, a bad namespace, a CIDR with
    /// host bits). If this fails, the first parse-level error is the only one `render` prints.
    #[test]
    fn structural_errors_do_not_hide_the_other_errors() {
        let errors = isolation_errors(&format!(
            "{HEAD}spec:
  isolate: [ingress, Egress]
  mode: enforce
  tiers:
    - name: web
    - name: Worker
      podSelector: {{matchLabels: {{tier: worker}}}}
  flows:
    - {{from: web, to: db, ports: [{{port: [80]}}]}}
  sharedServices:
    - name: mon
      direction: Ingress
      namespace: Monitoring
    - name: out
      direction: Egress
      ipBlock: {{cidr: 10.0.0.1/8}}
"
        ));
        assert_eq!(
            errors,
            [
                "spec.flows[0].ports[0].port: must be a number or a name, not a list",
                "spec.isolate[0]: unsupported value \"ingress\"; use one of: Ingress, Egress (case matters)",
                "spec.mode: unsupported value \"enforce\"; use one of: Enforce, DryRun (case matters)",
                "spec.tiers[0].podSelector: is required but missing; add it (`kubectl explain` describes it)",
                "spec.tiers[1].name: \"Worker\" is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit",
                "spec.flows[0].to: unknown tier \"db\"; declared tiers: web, Worker",
                "spec.sharedServices[0].namespace: \"Monitoring\" is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit",
                "spec.sharedServices[1].ipBlock.cidr: \"10.0.0.1/8\": has host bits set; write 10.0.0.0/8",
            ]
        );
    }

    /// A forgotten value (`tier:`) in a selector, a `values` or `except` entry, and a peer's
    /// selector or ports left empty are errors, on the real CRD schema; a misspelt field with
    /// no value (`port:`) is still an unknown field. If this fails, `render` passes
    /// `matchLabels: {tier: }` with exit 0, and the policy it writes selects every pod.
    #[test]
    fn empty_values_that_widen_a_policy_are_errors() {
        let errors = isolation_errors(&format!(
            "{HEAD}spec:
  tiers:
    - {{name: web, podSelector: {{matchLabels: {{tier: }}}}}}
    - {{name: db, podSelector: {{matchExpressions: [{{key: tier, operator: NotIn, values: [web, null]}}]}}}}
  flows:
    - {{from: web, to: db, port: }}
  sharedServices:
    - {{name: a, direction: Egress, ipBlock: {{cidr: 10.0.0.0/8, except: [10.1.0.0/16, null]}}}}
    - {{name: b, direction: Egress, namespace: kube-system, podSelector: , ports: }}
    - {{name: c, direction: Egress, namespaceSelector: {{matchLabels: {{team: }}}}}}
  dns:
"
        ));
        assert_eq!(
            errors,
            [
                "spec.flows[0].port: unknown field; check its spelling and indentation against `kubectl explain`",
                "spec.sharedServices[0].ipBlock.except[1]: has no value; the API server drops it and the range then excepts fewer addresses than written: write a CIDR, or remove the entry",
                "spec.sharedServices[1].podSelector: has no value; left out, it can allow more than was written: write a value, or remove the key if that is what you mean",
                "spec.sharedServices[1].ports: has no value; left out, it can allow more than was written: write a value, or remove the key if that is what you mean",
                "spec.sharedServices[2].namespaceSelector.matchLabels.team: has no value; the API server drops it and the selector then matches namespaces whatever their `team` label: write a value, or remove the key",
                "spec.tiers[0].podSelector.matchLabels.tier: has no value; the API server drops it and the selector then matches pods whatever their `tier` label: write a value, or remove the key",
                "spec.tiers[1].podSelector.matchExpressions[0].values[1]: has no value; the API server drops it, which changes which pods the selector matches: write a value, or remove the entry",
            ]
        );
    }

    /// A label that is not a string is reported with its path and a hint, and the spec's own
    /// errors are still reported. If this fails, `metadata.labels: {team: 1}` hides every error
    /// of the spec behind a raw serde message.
    #[test]
    fn a_metadata_error_hides_nothing() {
        let errors = isolation_errors(
            "apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: shop, namespace: shop, labels: {team: 1, owner: }, annotations: {a: true}, creationTimestamp: 3}\nspec:\n  tiers: [{name: web, podSelector: {}}]\n  flows: [{from: web, to: db}]\n",
        );
        assert_eq!(
            errors,
            [
                "metadata.annotations.a: must be a string, not true or false; put it in quotes",
                "metadata.labels.owner: has no value; write a value, or remove the key",
                "metadata.labels.team: must be a string, not a number; put it in quotes",
                "metadata.creationTimestamp: invalid type: integer `3`, expected a timestamp string",
                "spec.flows[0].to: unknown tier \"db\"; declared tiers: web",
            ]
        );
    }

    /// A template missing its required `namespaceSelector` still reports the errors of its
    /// embedded spec. If this fails, the missing selector hides them.
    #[test]
    fn a_missing_namespace_selector_hides_nothing() {
        use crate::validate::ValidatedTemplate;
        use netfence_crd::IsolationTemplate;
        let errors: Vec<String> = document(
            "apiVersion: netfence.io/v1alpha1\nkind: IsolationTemplate\nmetadata: {name: teams}\nspec:\n  template:\n    spec:\n      isolate: [egress]\n      sameNamespace: allow\n      tiers: [{name: web, podSelector: {}}]\n      flows: [{from: web, to: api}]\n",
        )
        .validated::<IsolationTemplate, ValidatedTemplate>()
        .expect_err("invalid")
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            errors,
            [
                "spec.template.spec.isolate[0]: unsupported value \"egress\"; use one of: Ingress, Egress (case matters)",
                "spec.template.spec.sameNamespace: unsupported value \"allow\"; use one of: Deny, Allow (case matters)",
                "spec.namespaceSelector: is required but missing; add it (`kubectl explain` describes it)",
                "spec.template.spec.flows[0].to: unknown tier \"api\"; declared tiers: web",
            ]
        );
    }

    /// Folded (`>`) and literal (`|`) scalars read as YAML says: a folded paragraph is one line.
    /// If this fails, a reason or description written folded reaches the cluster with line breaks
    /// (or without the paragraph breaks).
    #[test]
    fn folded_scalars_are_folded() {
        let documents = parse(
            "f.yaml",
            "apiVersion: v1\nkind: ConfigMap\ndata:\n  folded: >\n    one\n    two\n\n    three\n  strip: >-\n    a\n    b\n  literal: |\n    x\n    y\n",
        )
        .expect("YAML");
        assert_eq!(
            documents[0].value["data"],
            serde_json::json!({"folded": "one two\nthree\n", "strip": "a b", "literal": "x\ny\n"})
        );
    }

    /// A value written as a folded (`>`) or literal (`|`) block keeps its final line break, as
    /// YAML says; a message that quotes it escapes it, so every error stays on its one line.
    /// If this fails, `render` prints `unsupported value "DryRun` and a stray `"; use one of`
    /// line, and the user cannot see why `DryRun` is refused.
    #[test]
    fn values_from_block_scalars_are_quoted_on_one_line() {
        let errors = isolation_errors(&format!(
            "{HEAD}spec:\n  mode: >\n    DryRun\n  tiers:\n    - name: >\n        web\n      podSelector: {{}}\n"
        ));
        assert_eq!(
            errors,
            [
                "spec.mode: unsupported value \"DryRun\\n\"; use one of: Enforce, DryRun (case matters)",
                "spec.tiers[0].name: \"web\\n\" is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit",
            ]
        );
    }

    #[test]
    fn typed_errors_name_the_field_path() {
        let error = typed::<Sample>(&serde_json::json!({"spec": {"ports": [80, "x"]}}))
            .expect_err("bad port");
        assert_eq!(error.path, "spec.ports[1]");
        let error = typed::<Sample>(&serde_json::json!({"spec": {"ports": [80], "prots": []}}))
            .expect_err("unknown field");
        assert_eq!(error.path, "spec.prots");
        assert!(error.message.contains("unknown field"));
    }
}
