//! `netfence render PATH...`: NamespaceIsolation manifests in (and IsolationTemplates and
//! ClusterBaselines, expanded over the Namespace manifests beside them), what netfence would apply
//! out (NetworkPolicies, and each baseline's objects for its engine), as multi-document YAML (or a
//! JSON `List`). Any invalid resource, or a namespace that cannot be
//! one (a NamespaceIsolation's `metadata.namespace`, a Namespace's `metadata.name`,
//! `--namespace`): every error on stderr as `FILE: NAME: PATH: message`, nothing on stdout,
//! exit 2.

use std::{path::PathBuf, process::ExitCode};

use k8s_openapi::api::core::v1::Namespace;
use netfence_core::{
    ValidatedBaseline, ValidatedIsolation, ValidatedTemplate, baseline,
    meta::FIELD_MANAGER,
    render,
    template::{self, Existing, NamespaceInfo, World},
};
use netfence_crd::{ClusterBaseline, IsolationTemplate, NamespaceIsolation, baseline::Engine};

use super::EXIT_BAD_INPUT;
use crate::manifests::{self, Document};

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
    #[arg(short, long, value_parser = namespace_argument)]
    pub namespace: Option<String>,

    /// The engine ClusterBaselines render to, over their `spec.engine`: ClusterNetworkPolicy,
    /// Calico, Cilium or NetworkPolicy (without either: ClusterNetworkPolicy).
    #[arg(long, value_parser = engine_argument)]
    pub engine: Option<Engine>,

    /// netfence's own namespace, which a ClusterBaseline never covers (as `netfence run
    /// --operator-namespace`).
    #[arg(long, default_value = OPERATOR_NAMESPACE, value_parser = namespace_argument)]
    pub operator_namespace: String,
}

/// The namespace `config/default` installs netfence in.
pub const OPERATOR_NAMESPACE: &str = "netfence-system";

pub(super) fn engine_argument(text: &str) -> Result<Engine, String> {
    text.parse()
}

/// `--namespace`: a namespace name, or the reason it cannot be one (clap then names the option
/// and exits 2).
pub(super) fn namespace_argument(text: &str) -> Result<String, String> {
    match manifests::namespace_problem(text) {
        Some(problem) => Err(problem),
        None => Ok(text.to_owned()),
    }
}

/// The NamespaceIsolations found among `documents`, validated, and those that the
/// IsolationTemplates among them generate for the Namespace manifests among them (expanded as the
/// controller would); or every error, one line each as `FILE: NAME: PATH: message`. Other kinds
/// are skipped with a note in `notes`, as are conflicts a template would report.
pub fn isolations(
    documents: &[Document],
    notes: &mut Vec<String>,
) -> Result<Vec<ValidatedIsolation>, Vec<String>> {
    let mut valid = Vec::new();
    let mut written: Vec<NamespaceIsolation> = Vec::new();
    let mut templates: Vec<(String, ValidatedTemplate)> = Vec::new();
    let mut namespaces: Vec<(String, NamespaceInfo)> = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let expected_api_version = format!("{}/v1alpha1", netfence_crd::GROUP);
    let has_templates = documents
        .iter()
        .any(|document| matches!(document.kind(), "IsolationTemplate" | "ClusterBaseline"));
    for document in documents {
        let prefix = format!("{}: {}", document.source, document.name());
        let kind = document.kind();
        // The namespaces of what is read: a NamespaceIsolation's own (its policies go there),
        // and a Namespace manifest's name when templates expand over it.
        let read = kind == "NamespaceIsolation" || (kind == "Namespace" && has_templates);
        if let Some(error) = document.namespace_error().filter(|_| read) {
            errors.push(format!("{prefix}: {error}"));
            continue;
        }
        if kind == "Namespace" && has_templates {
            match namespace_info(document) {
                Ok(namespace) => namespaces.push((document.source.clone(), namespace)),
                Err(error) => errors.push(format!("{prefix}: {error}")),
            }
            continue;
        }
        if kind == "ClusterBaseline" {
            // Read by `baselines`.
            continue;
        }
        if kind != "NamespaceIsolation" && kind != "IsolationTemplate" {
            notes.push(format!(
                "{}: skipping {} {} (not a NamespaceIsolation, IsolationTemplate or ClusterBaseline)",
                document.source,
                if kind.is_empty() {
                    "object without kind"
                } else {
                    kind
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
        if !seen.insert((
            kind.to_owned(),
            document
                .value
                .pointer("/metadata/namespace")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            document.name().to_owned(),
        )) {
            errors.push(format!(
                "{prefix}: metadata.name: {kind} declared twice (in the same namespace); keep one"
            ));
            continue;
        }
        // Every error of the document: structural and semantic (`Document::validated`).
        let result = if kind == "IsolationTemplate" {
            document
                .validated::<IsolationTemplate, ValidatedTemplate>()
                .map(|(_, template)| templates.push((document.source.clone(), template)))
        } else {
            document
                .validated::<NamespaceIsolation, ValidatedIsolation>()
                .map(|(resource, isolation)| {
                    valid.push(isolation);
                    written.push(resource);
                })
        };
        if let Err(invalid) = result {
            errors.extend(invalid.0.iter().map(|error| format!("{prefix}: {error}")));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    valid.extend(expand(&templates, &namespaces, &written, notes));
    Ok(valid)
}

/// What the ClusterBaselines among `documents` render to, over the Namespace manifests among them
/// (`engine` overrides each one's `spec.engine`); or every error, one line each as
/// `FILE: NAME: PATH: message` (invalid fields, and fields the engine cannot express).
pub fn baselines(
    documents: &[Document],
    engine: Option<Engine>,
    operator_namespace: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<baseline::Object>, Vec<String>> {
    let expected_api_version = format!("{}/v1alpha1", netfence_crd::GROUP);
    let mut valid: Vec<(String, ValidatedBaseline)> = Vec::new();
    let mut namespaces = Vec::new();
    let mut errors = Vec::new();
    let has_baselines = documents
        .iter()
        .any(|document| document.kind() == "ClusterBaseline");
    if !has_baselines {
        return Ok(Vec::new());
    }
    for document in documents {
        let prefix = format!("{}: {}", document.source, document.name());
        match document.kind() {
            // Its errors are reported by `isolations`.
            "Namespace" => {
                if let Ok(namespace) = namespace_info(document) {
                    namespaces.push((namespace.name, namespace.labels));
                }
            }
            "ClusterBaseline" => {
                if document.api_version() != expected_api_version {
                    errors.push(format!(
                        "{prefix}: apiVersion: \"{}\" is not served; use {expected_api_version}",
                        document.api_version()
                    ));
                    continue;
                }
                if valid
                    .iter()
                    .any(|(_, other)| other.name() == document.name())
                {
                    errors.push(format!(
                        "{prefix}: metadata.name: ClusterBaseline declared twice; keep one"
                    ));
                    continue;
                }
                match document.validated::<ClusterBaseline, ValidatedBaseline>() {
                    Ok((_, validated)) => valid.push((document.source.clone(), validated)),
                    Err(invalid) => {
                        errors.extend(invalid.0.iter().map(|error| format!("{prefix}: {error}")));
                    }
                }
            }
            _ => {}
        }
    }
    let all: Vec<&ValidatedBaseline> = valid.iter().map(|(_, baseline)| baseline).collect();
    let mut objects = Vec::new();
    for (source, validated) in &valid {
        let coverage = baseline::coverage(validated, &all, &namespaces, Some(operator_namespace));
        if coverage.covered.is_empty() {
            notes.push(format!(
                "{source}: ClusterBaseline {} covers none of the {} Namespace manifest(s) given; its cluster-wide objects are rendered all the same (pass the namespaces it should cover, such as `kubectl get namespaces -o yaml`, for its per-namespace ones)",
                validated.name(),
                namespaces.len()
            ));
        }
        for (namespace, winner) in &coverage.lost {
            notes.push(format!(
                "{source}: ClusterBaseline {}: namespace {namespace} is left out: the older ClusterBaseline {winner} covers it",
                validated.name()
            ));
        }
        let engine = baseline::engine(validated, engine);
        match baseline::render(validated, engine, &coverage, Some(operator_namespace)) {
            Ok(rendered) => objects.extend(rendered),
            Err(unsupported) => errors.extend(
                unsupported
                    .0
                    .iter()
                    .map(|problem| format!("{source}: {}: {problem}", validated.name())),
            ),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// A Namespace manifest's name and labels (read leniently: only those matter here).
fn namespace_info(document: &Document) -> Result<NamespaceInfo, manifests::FieldError> {
    let namespace: Namespace = document.lenient()?;
    Ok(NamespaceInfo::from(&namespace))
}

/// Expand every template over the Namespace manifests as the controller would, beside the
/// NamespaceIsolations written in the manifests (which win their namespace, as in a cluster).
fn expand(
    templates: &[(String, ValidatedTemplate)],
    namespaces: &[(String, NamespaceInfo)],
    written: &[NamespaceIsolation],
    notes: &mut Vec<String>,
) -> Vec<ValidatedIsolation> {
    let infos: Vec<NamespaceInfo> = namespaces.iter().map(|(_, info)| info.clone()).collect();
    let written: Vec<Existing> = written
        .iter()
        .map(|isolation| Existing::of(isolation, FIELD_MANAGER))
        .collect();
    let written: Vec<&Existing> = written.iter().collect();
    let mut generated = Vec::new();
    for (source, template) in templates {
        let others: Vec<&ValidatedTemplate> = templates
            .iter()
            .map(|(_, other)| other)
            .filter(|other| other.name() != template.name())
            .collect();
        let plan = template::plan(
            template,
            &World {
                namespaces: &infos,
                isolations: &written,
                templates: &others,
                operator_namespace: None,
            },
        );
        if plan.matched.is_empty() {
            notes.push(format!(
                "{source}: IsolationTemplate {} matches none of the {} Namespace manifest(s) given; pass the namespaces it should cover (such as `kubectl get namespaces -o yaml`)",
                template.name(),
                infos.len()
            ));
        }
        for conflict in &plan.conflicts {
            notes.push(format!(
                "{source}: IsolationTemplate {}: namespace {}: {}",
                template.name(),
                conflict.namespace,
                conflict.reason
            ));
        }
        for (_, namespace) in &plan.apply {
            // The template was validated with this very spec and name.
            if let Ok(valid) =
                ValidatedIsolation::try_from(&template::generated(template, namespace))
            {
                generated.push(valid);
            }
        }
    }
    generated
}

/// One object `netfence render` prints.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Rendered {
    /// A NamespaceIsolation's NetworkPolicy.
    Policy(Box<k8s_openapi::api::networking::v1::NetworkPolicy>),
    /// A ClusterBaseline's object.
    Baseline(baseline::Object),
}

/// The text `netfence render` prints for these objects.
pub fn format_policies<T: serde::Serialize>(
    policies: &[T],
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
    let baseline_result = baselines(
        &documents,
        args.engine,
        &args.operator_namespace,
        &mut notes,
    );
    for note in &notes {
        eprintln!("note: {note}");
    }
    let (isolations, baseline_objects) = match (result, baseline_result) {
        (Ok(isolations), Ok(objects)) => (isolations, objects),
        (result, baseline_result) => {
            let errors: Vec<String> = [result.err(), baseline_result.err()]
                .into_iter()
                .flatten()
                .flatten()
                .collect();
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!("error: {} invalid field(s); nothing rendered", errors.len());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if isolations.is_empty() && baseline_objects.is_empty() {
        let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "error: no NamespaceIsolation or ClusterBaseline (apiVersion netfence.io/v1alpha1) found in {}",
            paths.join(", ")
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let policies: Vec<Rendered> = isolations
        .into_iter()
        .flat_map(|isolation| {
            render::network_policies(&isolation.with_default_namespace(args.namespace.clone()))
        })
        .map(|policy| Rendered::Policy(Box::new(policy)))
        .chain(baseline_objects.into_iter().map(Rendered::Baseline))
        .collect();
    match format_policies(&policies, args.output) {
        Ok(text) => match super::output::write_stdout(&text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: cannot write the policies to stdout: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("error: failed to serialize the policies: {error}");
            ExitCode::FAILURE
        }
    }
}
