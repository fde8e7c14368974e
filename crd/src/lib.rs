//! The custom resources of netfence as users write them (their docs are `kubectl explain`), their
//! CEL rules and CRD generation. Types only: validation lives in `netfence-core`. No I/O.
//!
//! ```text
//! isolation   NamespaceIsolation: the types users write (and their CEL rules)
//! template    IsolationTemplate: a NamespaceIsolation for every namespace chosen by label
//! baseline    ClusterBaseline: cluster-wide zero trust, rendered to one engine's cluster-wide kinds
//! engines     the other engines' kinds netfence renders and verifies (ClusterNetworkPolicy,
//!             Calico, Cilium): their wire format, not netfence's resources
//! ```

pub mod baseline;
pub mod engines;
pub mod isolation;
pub mod template;

pub use baseline::{ClusterBaseline, ClusterBaselineSpec, ClusterBaselineStatus};
pub use isolation::{NamespaceIsolation, NamespaceIsolationSpec, NamespaceIsolationStatus};
pub use template::{IsolationTemplate, IsolationTemplateSpec, IsolationTemplateStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

/// The API group of every netfence resource.
pub const GROUP: &str = "netfence.io";

/// Every CustomResourceDefinition netfence installs, in a stable order, labelled
/// `app.kubernetes.io/part-of: netfence` as every object of an installation is (`config/default`
/// and the Helm chart, whose `crds/` Helm installs untemplated, hold the same CRDs).
#[must_use]
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        NamespaceIsolation::crd(),
        IsolationTemplate::crd(),
        ClusterBaseline::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|validation| validation.open_api_v3_schema.as_mut())
            {
                join_description_lines(schema);
            }
        }
        crd.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(
                "app.kubernetes.io/part-of".to_owned(),
                "netfence".to_owned(),
            );
    }
    crds
}

/// Join the lines of every paragraph of every description in `schema` (paragraphs stay apart,
/// separated by a blank line). The descriptions are the `///` docs of the types, wrapped at 100
/// columns in the source; `kubectl explain` wraps them again itself, so a kept line break would
/// cut its text mid-sentence.
fn join_description_lines(schema: &mut JSONSchemaProps) {
    if let Some(description) = schema.description.as_mut() {
        *description = join_paragraph_lines(description);
    }
    let children =
        schema
            .properties
            .iter_mut()
            .flat_map(|properties| properties.values_mut())
            .chain(schema.items.iter_mut().flat_map(|items| match items {
                JSONSchemaPropsOrArray::Schema(schema) => std::slice::from_mut(schema.as_mut()),
                JSONSchemaPropsOrArray::Schemas(schemas) => schemas.as_mut_slice(),
            }))
            .chain(schema.additional_properties.iter_mut().filter_map(
                |additional| match additional {
                    JSONSchemaPropsOrBool::Schema(schema) => Some(schema.as_mut()),
                    JSONSchemaPropsOrBool::Bool(_) => None,
                },
            ))
            .chain(schema.all_of.iter_mut().flatten())
            .chain(schema.any_of.iter_mut().flatten())
            .chain(schema.one_of.iter_mut().flatten());
    for child in children {
        join_description_lines(child);
    }
}

/// `text` with the single line breaks inside each paragraph made spaces; paragraphs (separated
/// by blank lines) stay separated by one blank line.
#[must_use]
pub fn join_paragraph_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|paragraph| !paragraph.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every description of every CRD is one line per paragraph. If this fails, `kubectl explain`
    /// (which wraps text itself) breaks its sentences where the Rust source wrapped them.
    #[test]
    fn descriptions_have_no_line_break_inside_a_paragraph() {
        fn check(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, child) in map {
                        if key == "description"
                            && let Some(text) = child.as_str()
                            && text.split("\n\n").any(|paragraph| paragraph.contains('\n'))
                        {
                            found.push(format!("{path}: {text:?}"));
                        }
                        check(child, &format!("{path}.{key}"), found);
                    }
                }
                serde_json::Value::Array(items) => {
                    for (index, item) in items.iter().enumerate() {
                        check(item, &format!("{path}[{index}]"), found);
                    }
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        for crd in crds() {
            let value = serde_json::to_value(&crd).expect("a CRD serializes");
            check(&value, &crd.spec.names.kind, &mut found);
        }
        assert!(found.is_empty(), "{found:#?}");
    }

    /// The CRD YAML `netfence crd` writes (serde-saphyr folds long descriptions with `>-`) reads
    /// back as exactly the CRD. If this fails, the installed CRD's descriptions, patterns or CEL
    /// messages differ from the ones netfence generated (a folded scalar read or written wrong).
    #[test]
    fn crd_yaml_reads_back_as_the_crd() {
        for crd in crds() {
            let yaml = serde_saphyr::to_string(&crd).expect("a CRD serializes");
            let read: serde_json::Value = serde_saphyr::from_str(&yaml).expect("the YAML parses");
            let expected = serde_json::to_value(&crd).expect("a CRD serializes");
            assert!(
                read == expected,
                "{} differs after YAML",
                crd.spec.names.kind
            );
        }
    }

    #[test]
    fn paragraphs_are_joined_and_kept_apart() {
        assert_eq!(
            join_paragraph_lines("The tiers of the\napplication.\n\nSecond\nparagraph."),
            "The tiers of the application.\n\nSecond paragraph."
        );
        assert_eq!(join_paragraph_lines("one line"), "one line");
    }
}
