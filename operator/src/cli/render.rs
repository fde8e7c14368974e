//! `netfence render PATH...`: NamespaceIsolation manifests in, the NetworkPolicies netfence would
//! apply out, as multi-document YAML (or a JSON `List`). Any invalid resource: every error on
//! stderr as `FILE: NAME: PATH: message`, nothing on stdout, exit 2.

use std::{path::PathBuf, process::ExitCode};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netfence_crd::{NamespaceIsolation, ValidatedIsolation};

use super::EXIT_BAD_INPUT;
use crate::{
    manifests::{self, Document},
    render,
};

/// Output formats.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum Format {
    /// Multi-document YAML.
    #[default]
    Yaml,
    /// One JSON `List` object.
    Json,
}

/// Arguments of `netfence render`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories of manifests (YAML or JSON, multi-document), or `-` for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,

    /// The namespace of resources whose manifest has none (as `kubectl apply -n` would set it).
    #[arg(short, long)]
    pub namespace: Option<String>,
}

/// The NamespaceIsolations found among `documents`, validated; or every error, one line each
/// as `FILE: NAME: PATH: message`. Other kinds are skipped with a note in `notes`.
pub fn isolations(
    documents: &[Document],
    notes: &mut Vec<String>,
) -> Result<Vec<ValidatedIsolation>, Vec<String>> {
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let expected_api_version = format!("{}/v1alpha1", netfence_crd::GROUP);
    for document in documents {
        let prefix = format!("{}: {}", document.source, document.name());
        if document.kind() != "NamespaceIsolation" {
            notes.push(format!(
                "{}: skipping {} {} (not a NamespaceIsolation)",
                document.source,
                if document.kind().is_empty() {
                    "object without kind"
                } else {
                    document.kind()
                },
                document.name()
            ));
            continue;
        }
        if document.api_version() != expected_api_version {
            errors.push(format!(
                "{prefix}: apiVersion: \"{}\" is not served; use {expected_api_version}",
                document.api_version()
            ));
            continue;
        }
        let resource: NamespaceIsolation = match document.typed() {
            Ok(resource) => resource,
            Err(error) => {
                errors.push(format!("{prefix}: {error}"));
                continue;
            }
        };
        let key = (
            resource.metadata.namespace.clone(),
            resource.metadata.name.clone(),
        );
        if !seen.insert(key) {
            errors.push(format!(
                "{prefix}: metadata.name: declared twice in the same namespace; keep one"
            ));
            continue;
        }
        match ValidatedIsolation::try_from(&resource) {
            Ok(isolation) => valid.push(isolation),
            Err(invalid) => errors.extend(
                invalid
                    .0
                    .iter()
                    .map(|error| format!("{prefix}: {}: {}", error.path, error.message)),
            ),
        }
    }
    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(errors)
    }
}

/// The text `netfence render` prints for these policies.
pub fn format_policies(
    policies: &[NetworkPolicy],
    format: Format,
) -> Result<String, Box<dyn std::error::Error>> {
    Ok(match format {
        Format::Yaml => {
            let documents: Vec<String> = policies
                .iter()
                .map(serde_saphyr::to_string)
                .collect::<Result<_, _>>()?;
            documents.join("---\n")
        }
        Format::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": policies});
            let mut text = serde_json::to_string_pretty(&list)?;
            text.push('\n');
            text
        }
    })
}

pub(super) fn run(args: &Args) -> ExitCode {
    let documents = match manifests::load(&args.paths) {
        Ok(documents) => documents,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let mut notes = Vec::new();
    let result = isolations(&documents, &mut notes);
    for note in &notes {
        eprintln!("note: {note}");
    }
    let isolations = match result {
        Ok(isolations) => isolations,
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!("error: {} invalid field(s); nothing rendered", errors.len());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if isolations.is_empty() {
        let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "error: no NamespaceIsolation (apiVersion netfence.io/v1alpha1) found in {}",
            paths.join(", ")
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let policies: Vec<NetworkPolicy> = isolations
        .into_iter()
        .flat_map(|isolation| {
            render::network_policies(&isolation.with_default_namespace(args.namespace.clone()))
        })
        .collect();
    match format_policies(&policies, args.output) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: failed to serialize the policies: {error}");
            ExitCode::FAILURE
        }
    }
}
