//! What netfence ships, checked without a cluster: the kustomize bases of `config/` and the
//! GitOps examples of `examples/gitops/`.
//!
//! ```text
//! config/**, examples/** --manifests::load--> Document --kind--> typed object (unknown fields refused)
//! config/*/kustomization.yaml --> the files they list exist, and every file is listed
//! config/manager/deployment.yaml --> every hardening field, `netfence run` flags that parse
//! kubectl kustomize config/default (when kubectl is installed) --> renders, every object typed
//! ```
//!
//! Kinds without a Rust type in k8s-openapi or netfence (kustomize's Kustomization, Argo CD's
//! Application, Flux's Kustomization and GitRepository, the Prometheus Operator's
//! ServiceMonitor) are read into the minimal structs below, which hold exactly the fields the
//! manifests use and refuse any other: a misspelt field fails here instead of being ignored by
//! the tool that reads it. That they match the tools' own schemas is checked by hand, against
//! each tool's documentation, when a field is added.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use clap::Parser;
use k8s_openapi::{
    api::{
        admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding},
        apps::v1::Deployment,
        core::v1::{ConfigMap, Namespace, PodSpec, Service, ServiceAccount},
        policy::v1::PodDisruptionBudget,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::Resource;
use netfence::{
    cli::{Cli, Command as Subcommand},
    manifests::{self, Document},
};
use netfence_crd::NamespaceIsolation;
use serde::Deserialize;

/// The namespace every namespaced object of netfence's installation lives in.
const NAMESPACE: &str = "netfence-system";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the operator crate sits in the repository")
        .to_path_buf()
}

/// The `.yaml` files below `directory`, recursively, sorted; Helm charts left out.
fn yaml_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            // Hidden entries are not manifests, as `netfence render` skips them: the CI jobs of
            // examples/ci/ (.github/, .gitlab-ci.yml), which tests/ci_examples.rs runs.
            if path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with('.'))
            {
                continue;
            }
            // A Helm chart's templates are YAML only once rendered: e2e/tests/helm/ renders
            // the chart with the real helm and checks what it renders.
            if path.is_dir() {
                if !path.join("Chart.yaml").is_file() {
                    pending.push(path);
                }
            } else if path
                .extension()
                .is_some_and(|extension| extension == "yaml" || extension == "yml")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn load(path: &Path) -> Vec<Document> {
    manifests::load(&[path.to_path_buf()]).unwrap_or_else(|error| panic!("{error}"))
}

fn typed<T: serde::de::DeserializeOwned>(document: &Document) -> T {
    document
        .typed()
        .unwrap_or_else(|error| panic!("{}", describe(document, &error)))
}

fn describe(document: &Document, error: &manifests::FieldError) -> String {
    format!(
        "{}: {} {}: {}: {}",
        document.source,
        document.kind(),
        document.name(),
        error.path,
        error.message
    )
}

// ---- the kinds without a Rust type elsewhere: exactly the fields netfence's manifests use ----

/// kustomize's `Kustomization` (kustomize.config.k8s.io/v1beta1).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    images: Vec<KustomizeImage>,
    #[serde(default)]
    #[allow(dead_code)] // read to refuse a misspelt field
    labels: Vec<KustomizeLabels>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KustomizeImage {
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KustomizeLabels {
    #[allow(dead_code)] // read to refuse a misspelt field, not used
    pairs: BTreeMap<String, String>,
    #[allow(dead_code)]
    include_selectors: Option<bool>,
}

/// A kustomize patch, as Argo CD's `spec.source.kustomize.patches` and Flux's `spec.patches`
/// take it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KustomizePatch {
    target: PatchTarget,
    patch: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PatchTarget {
    kind: String,
    group: Option<String>,
}

/// Argo CD's `Application` (argoproj.io/v1alpha1).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Application {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[allow(dead_code)]
    metadata: ObjectMeta,
    spec: ApplicationSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApplicationSpec {
    #[allow(dead_code)]
    project: String,
    source: ApplicationSource,
    destination: ApplicationDestination,
    #[allow(dead_code)]
    sync_policy: Option<ArgoSyncPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApplicationSource {
    #[serde(rename = "repoURL")]
    repo_url: String,
    target_revision: String,
    path: String,
    kustomize: Option<ArgoKustomize>,
    helm: Option<ArgoHelm>,
}

/// A Helm chart's rendering options in an Argo CD source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArgoHelm {
    release_name: String,
    skip_crds: Option<bool>,
    #[allow(dead_code)] // e2e/tests/helm/ renders the chart with these values
    values_object: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArgoKustomize {
    patches: Vec<KustomizePatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApplicationDestination {
    #[allow(dead_code)]
    server: String,
    namespace: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArgoSyncPolicy {
    #[allow(dead_code)]
    automated: Option<ArgoAutomated>,
    #[serde(default)]
    #[allow(dead_code)]
    sync_options: Vec<String>,
    managed_namespace_metadata: Option<ArgoNamespaceMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArgoNamespaceMetadata {
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArgoAutomated {
    #[allow(dead_code)]
    prune: bool,
    #[allow(dead_code)]
    self_heal: bool,
}

/// Flux's `GitRepository` (source.toolkit.fluxcd.io/v1).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GitRepository {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: ObjectMeta,
    spec: GitRepositorySpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GitRepositorySpec {
    #[allow(dead_code)]
    interval: String,
    url: String,
    #[serde(rename = "ref")]
    reference: GitReference,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GitReference {
    tag: Option<String>,
    #[allow(dead_code)]
    branch: Option<String>,
}

/// Flux's `Kustomization` (kustomize.toolkit.fluxcd.io/v1).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FluxKustomization {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[allow(dead_code)]
    metadata: ObjectMeta,
    spec: FluxKustomizationSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FluxKustomizationSpec {
    #[allow(dead_code)]
    interval: String,
    #[serde(default)]
    #[allow(dead_code)]
    depends_on: Vec<FluxReference>,
    source_ref: FluxSourceReference,
    path: String,
    #[allow(dead_code)]
    prune: bool,
    #[allow(dead_code)]
    timeout: Option<String>,
    #[serde(default)]
    patches: Vec<KustomizePatch>,
    #[serde(default)]
    health_checks: Vec<FluxHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FluxReference {
    #[allow(dead_code)]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FluxSourceReference {
    #[allow(dead_code)]
    kind: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FluxHealthCheck {
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

/// Flux's `HelmRelease` (helm.toolkit.fluxcd.io/v2).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HelmRelease {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[allow(dead_code)]
    metadata: ObjectMeta,
    spec: HelmReleaseSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HelmReleaseSpec {
    #[allow(dead_code)]
    interval: String,
    release_name: String,
    target_namespace: String,
    storage_namespace: String,
    chart: HelmReleaseChart,
    install: HelmReleaseCrds,
    upgrade: HelmReleaseCrds,
    #[allow(dead_code)] // e2e/tests/helm/ renders the chart with these values
    values: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HelmReleaseChart {
    spec: HelmChartSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HelmChartSpec {
    chart: String,
    source_ref: FluxSourceReference,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HelmReleaseCrds {
    crds: String,
}

/// The Prometheus Operator's `ServiceMonitor` (monitoring.coreos.com/v1).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitor {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[allow(dead_code)]
    metadata: ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    selector: LabelSelector,
    namespace_selector: ServiceMonitorNamespaces,
    endpoints: Vec<ServiceMonitorEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorNamespaces {
    match_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorEndpoint {
    port: String,
    path: String,
    #[allow(dead_code)]
    interval: String,
}

/// Read a document into its type, by apiVersion and kind; an unknown kind is an error.
fn check_typed(document: &Document) -> Result<(), String> {
    fn parse<T: serde::de::DeserializeOwned>(document: &Document) -> Result<(), String> {
        document
            .typed::<T>()
            .map(|_| ())
            .map_err(|error| describe(document, &error))
    }
    match (document.api_version(), document.kind()) {
        ("v1", "Namespace") => parse::<Namespace>(document),
        ("v1", "ServiceAccount") => parse::<ServiceAccount>(document),
        ("v1", "Service") => parse::<Service>(document),
        ("v1", "ConfigMap") => parse::<ConfigMap>(document),
        ("apps/v1", "Deployment") => parse::<Deployment>(document),
        ("policy/v1", "PodDisruptionBudget") => parse::<PodDisruptionBudget>(document),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => parse::<ClusterRole>(document),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            parse::<ClusterRoleBinding>(document)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => parse::<Role>(document),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => parse::<RoleBinding>(document),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            parse::<CustomResourceDefinition>(document)
        }
        ("netfence.io/v1alpha1", "NamespaceIsolation") => parse::<NamespaceIsolation>(document),
        ("netfence.io/v1alpha1", "ClusterBaseline") => {
            parse::<netfence_crd::ClusterBaseline>(document)
        }
        ("netfence.io/v1alpha1", "IsolationTemplate") => {
            parse::<netfence_crd::IsolationTemplate>(document)
        }
        ("kustomize.config.k8s.io/v1beta1", "Kustomization") => parse::<Kustomization>(document),
        ("argoproj.io/v1alpha1", "Application") => parse::<Application>(document),
        ("source.toolkit.fluxcd.io/v1", "GitRepository") => parse::<GitRepository>(document),
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization") => parse::<FluxKustomization>(document),
        ("helm.toolkit.fluxcd.io/v2", "HelmRelease") => parse::<HelmRelease>(document),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => parse::<ServiceMonitor>(document),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            parse::<ValidatingAdmissionPolicy>(document)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            parse::<ValidatingAdmissionPolicyBinding>(document)
        }
        (api_version, kind) => Err(format!(
            "{}: {kind} {} ({api_version}): no type to check it against; add its arm to check_typed in operator/tests/deploy.rs",
            document.source,
            document.name()
        )),
    }
}

/// If this fails, a manifest that `kubectl apply -k`, Argo CD or Flux reads has a misspelt or
/// misplaced field (which the tool ignores or rejects at install time), a wrong type, or a kind
/// nothing checks. The message names the file, the object and the field path.
#[test]
fn every_manifest_parses_into_its_type_without_unknown_fields() {
    let mut errors = Vec::new();
    let mut kinds = BTreeSet::new();
    for directory in ["config", "examples"] {
        for file in yaml_files(&repo().join(directory)) {
            let documents = match manifests::load(std::slice::from_ref(&file)) {
                Ok(documents) => documents,
                Err(error) => {
                    errors.push(error.to_string());
                    continue;
                }
            };
            for document in &documents {
                kinds.insert(format!("{}/{}", document.api_version(), document.kind()));
                if let Err(error) = check_typed(document) {
                    errors.push(error);
                }
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    for expected in [
        "apps/v1/Deployment",
        "rbac.authorization.k8s.io/v1/ClusterRole",
        "kustomize.config.k8s.io/v1beta1/Kustomization",
        "argoproj.io/v1alpha1/Application",
        "kustomize.toolkit.fluxcd.io/v1/Kustomization",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "netfence.io/v1alpha1/NamespaceIsolation",
    ] {
        assert!(kinds.contains(expected), "no {expected} read: {kinds:?}");
    }
}

/// The checker itself refuses what it must: a misspelt field in a Deployment (k8s-openapi
/// ignores unknown fields by itself) and in one of this file's own structs, and an unknown
/// kind. If this fails, the test above passes on manifests it should reject.
#[test]
fn the_manifest_check_refuses_unknown_fields_and_kinds() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 2\n  selector: {}\n  template:\n    spec:\n      containers: [{name: c, image: i, securityContxt: {}}]\n";
    let error = check_typed(&manifests::parse("d.yaml", text).expect("YAML")[0])
        .expect_err("misspelt securityContext");
    assert!(
        error.contains("spec.template.spec.containers[0].securityContxt"),
        "{error}"
    );
    let text = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: x}\nspec:\n  project: default\n  source: {repoURL: url, targetRevision: main, path: path, directory: {recurse: true}}\n  destination: {server: server, namespace: team}\n";
    let error = check_typed(&manifests::parse("a.yaml", text).expect("YAML")[0])
        .expect_err("a field the struct does not hold");
    assert!(error.contains("spec.source"), "{error}");
    let text = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n";
    let error =
        check_typed(&manifests::parse("w.yaml", text).expect("YAML")[0]).expect_err("unknown kind");
    assert!(error.contains("no type to check it against"), "{error}");
}

fn kustomization(directory: &Path) -> Kustomization {
    let path = directory.join("kustomization.yaml");
    let documents = load(&path);
    assert_eq!(documents.len(), 1, "{}", path.display());
    typed(&documents[0])
}

/// The files a kustomization installs, following the directories it lists.
fn installed_files(directory: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    for resource in kustomization(directory).resources {
        let path = directory.join(&resource);
        if path.is_dir() {
            files.extend(installed_files(&path));
        } else {
            files.insert(path.canonicalize().expect("listed file exists"));
        }
    }
    files
}

/// If this fails, `kubectl apply -k` stops on a missing file, or a manifest in config/ is never
/// installed because no kustomization lists it (an RBAC rule or a PodDisruptionBudget written
/// but silently not deployed).
#[test]
fn kustomizations_list_every_file_and_only_files_that_exist() {
    let config = repo().join("config");
    let mut problems = Vec::new();
    for path in yaml_files(&config) {
        let directory = path.parent().expect("a directory");
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .expect("name");
        if name == "kustomization.yaml" {
            let kustomization = kustomization(directory);
            assert_eq!(
                (
                    kustomization.api_version.as_str(),
                    kustomization.kind.as_str()
                ),
                ("kustomize.config.k8s.io/v1beta1", "Kustomization")
            );
            for resource in &kustomization.resources {
                let listed = directory.join(resource);
                let exists = if listed.is_dir() {
                    listed.join("kustomization.yaml").is_file()
                } else {
                    listed.is_file()
                };
                if !exists {
                    problems.push(format!(
                        "{}: lists {resource}, which does not exist",
                        path.display()
                    ));
                }
            }
            continue;
        }
        let listed = directory.join("kustomization.yaml").is_file()
            && kustomization(directory)
                .resources
                .iter()
                .any(|resource| resource == name);
        if !listed {
            problems.push(format!(
                "{}: not listed in {}/kustomization.yaml",
                path.display(),
                directory.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let installed = installed_files(&config.join("default"));
    for base in ["crd", "rbac", "manager"] {
        for file in yaml_files(&config.join(base)) {
            if file
                .file_name()
                .is_some_and(|name| name == "kustomization.yaml")
            {
                continue;
            }
            assert!(
                installed.contains(&file.canonicalize().expect("exists")),
                "config/default does not install {}",
                file.display()
            );
        }
    }
    // No namespace transformer: it would move the DNS checks' Role out of kube-system (every
    // namespaced object names its namespace; the test below checks them).
    assert_eq!(kustomization(&config.join("default")).namespace, None);
    let prometheus = installed_files(&config.join("prometheus"));
    assert!(
        prometheus.is_superset(&installed),
        "config/prometheus is config/default plus the ServiceMonitor"
    );
}

/// If this fails, `kubectl apply -k config/default` installs a CRD that `netfence crd` no
/// longer generates, or leaves one out (the operator then fails its preflight, or a kind it
/// reconciles is missing). `checked_in_crds_are_generated` in tests/render.rs checks their
/// content.
#[test]
fn the_crd_kustomization_lists_exactly_the_generated_crds() {
    let listed: BTreeSet<String> = kustomization(&repo().join("config/crd"))
        .resources
        .into_iter()
        .collect();
    let generated: BTreeSet<String> = netfence_crd::crds()
        .iter()
        .map(netfence::cli::crd::crd_file_name)
        .collect();
    assert_eq!(listed, generated);
}

fn manager_document(kind: &str) -> Document {
    load(&repo().join("config/manager"))
        .into_iter()
        .find(|document| document.kind() == kind)
        .unwrap_or_else(|| panic!("config/manager holds no {kind}"))
}

fn deployment() -> Deployment {
    typed(&manager_document("Deployment"))
}

fn pod_spec(deployment: &Deployment) -> PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.clone())
        .expect("a pod template")
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.as_ref())
        .and_then(|metadata| metadata.labels.clone())
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

/// If this fails, the operator's pod has lost a hardening field the issue requires (it would
/// run as root, write its filesystem, keep capabilities, go without probes or resources, or
/// stop surviving a node drain). The message lists every missing field by name.
#[test]
#[allow(clippy::too_many_lines)] // one flat list of named checks, one per hardening field
fn the_deployment_is_hardened() {
    let deployment = deployment();
    let spec = deployment.spec.clone().expect("spec");
    let pod = pod_spec(&deployment);
    let pod_security = pod.security_context.clone().unwrap_or_default();
    let container = pod
        .containers
        .iter()
        .find(|container| container.name == "manager")
        .expect("a container named manager");
    let security = container.security_context.clone().unwrap_or_default();
    let resources = container.resources.clone().unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let probe_path = |probe: Option<&k8s_openapi::api::core::v1::Probe>| {
        probe
            .and_then(|probe| probe.http_get.as_ref())
            .and_then(|get| get.path.clone())
    };
    let user = security.run_as_user.or(pod_security.run_as_user);
    let pdb: PodDisruptionBudget = typed(&manager_document("PodDisruptionBudget"));
    let pdb_selector = pdb
        .spec
        .as_ref()
        .and_then(|spec| spec.selector.as_ref())
        .and_then(|selector| selector.match_labels.clone())
        .unwrap_or_default();
    let pdb_keeps_one = pdb.spec.as_ref().is_some_and(|spec| {
        spec.min_available == Some(IntOrString::Int(1))
            || spec.max_unavailable == Some(IntOrString::Int(1))
    });
    let checks = [
        (
            "spec.replicas >= 2",
            spec.replicas.is_some_and(|replicas| replicas >= 2),
        ),
        (
            "--leader-election in the container's args",
            container
                .args
                .iter()
                .flatten()
                .any(|arg| arg == "--leader-election"),
        ),
        (
            "runAsNonRoot: true (pod and container)",
            pod_security.run_as_non_root == Some(true) && security.run_as_non_root != Some(false),
        ),
        (
            "runAsUser: a numeric non-root user",
            user.is_some_and(|user| user > 0),
        ),
        (
            "readOnlyRootFilesystem: true",
            security.read_only_root_filesystem == Some(true),
        ),
        (
            "allowPrivilegeEscalation: false",
            security.allow_privilege_escalation == Some(false),
        ),
        ("privileged: not true", security.privileged != Some(true)),
        (
            "capabilities.drop: [ALL], nothing added",
            security.capabilities.as_ref().is_some_and(|capabilities| {
                capabilities
                    .drop
                    .iter()
                    .flatten()
                    .any(|capability| capability == "ALL")
                    && capabilities.add.as_ref().is_none_or(Vec::is_empty)
            }),
        ),
        (
            "seccompProfile: RuntimeDefault",
            security
                .seccomp_profile
                .as_ref()
                .or(pod_security.seccomp_profile.as_ref())
                .is_some_and(|profile| profile.type_ == "RuntimeDefault"),
        ),
        (
            "hostNetwork, hostPID, hostIPC: not set",
            pod.host_network != Some(true)
                && pod.host_pid != Some(true)
                && pod.host_ipc != Some(true),
        ),
        (
            "resources.requests: cpu and memory",
            requests.contains_key("cpu") && requests.contains_key("memory"),
        ),
        (
            "resources.limits: cpu and memory",
            limits.contains_key("cpu") && limits.contains_key("memory"),
        ),
        (
            "livenessProbe: GET /healthz",
            probe_path(container.liveness_probe.as_ref()).as_deref() == Some("/healthz"),
        ),
        (
            "readinessProbe: GET /readyz",
            probe_path(container.readiness_probe.as_ref()).as_deref() == Some("/readyz"),
        ),
        (
            "priorityClassName",
            pod.priority_class_name
                .as_ref()
                .is_some_and(|name| !name.is_empty()),
        ),
        (
            "topologySpreadConstraints across nodes (kubernetes.io/hostname)",
            pod.topology_spread_constraints
                .iter()
                .flatten()
                .any(|constraint| constraint.topology_key == "kubernetes.io/hostname"),
        ),
        (
            "serviceAccountName: netfence's own",
            pod.service_account_name.as_deref() == Some("netfence"),
        ),
        (
            "image: a pinned tag, not latest",
            container.image.as_ref().is_some_and(|image| {
                image
                    .rsplit_once(':')
                    .is_some_and(|(_, tag)| tag != "latest" && !tag.contains('/'))
            }),
        ),
        (
            "a PodDisruptionBudget that selects these pods and keeps one",
            selects(&pdb_selector, &pod_labels(&deployment)) && pdb_keeps_one,
        ),
    ];
    let missing: Vec<&str> = checks
        .iter()
        .filter(|(_, present)| !present)
        .map(|(name, _)| *name)
        .collect();
    assert!(
        missing.is_empty(),
        "config/manager/deployment.yaml is missing: {}",
        missing.join("; ")
    );
}

/// If this fails, the pods crash at start (`netfence run` refuses an argument), or the probes,
/// the metrics Service or the ServiceMonitor point at a port or pods that do not exist: the
/// Deployment never becomes ready, or Prometheus scrapes nothing.
#[test]
fn args_ports_and_selectors_line_up() {
    let deployment = deployment();
    let pod = pod_spec(&deployment);
    let container = &pod.containers[0];
    let arguments =
        std::iter::once("netfence".to_owned()).chain(container.args.clone().unwrap_or_default());
    let cli = Cli::try_parse_from(arguments)
        .unwrap_or_else(|error| panic!("`netfence` refuses the Deployment's arguments: {error}"));
    let Subcommand::Run(args) = cli.command else {
        panic!("the Deployment does not run `netfence run`");
    };
    assert!(args.leader_election);
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|port| port.name.as_deref() == Some("metrics"))
        .expect("a container port named metrics");
    assert_eq!(
        i32::from(args.metrics_addr.port()),
        port.container_port,
        "--metrics-addr serves another port than the container declares"
    );
    assert!(
        args.metrics_addr.ip().is_unspecified(),
        "--metrics-addr must listen beyond loopback for the kubelet's probes"
    );
    for probe in [&container.liveness_probe, &container.readiness_probe] {
        let port = probe
            .as_ref()
            .and_then(|probe| probe.http_get.as_ref())
            .map(|get| get.port.clone());
        assert_eq!(port, Some(IntOrString::String("metrics".to_owned())));
    }
    let environment: BTreeMap<String, String> = container
        .env
        .iter()
        .flatten()
        .filter_map(|variable| {
            let field = variable.value_from.as_ref()?.field_ref.as_ref()?;
            Some((variable.name.clone(), field.field_path.clone()))
        })
        .collect();
    assert_eq!(
        environment.get("POD_NAME").map(String::as_str),
        Some("metadata.name"),
        "the Lease identity and the Events' instance come from POD_NAME"
    );
    assert_eq!(
        environment
            .get("NETFENCE_LEASE_NAMESPACE")
            .map(String::as_str),
        Some("metadata.namespace"),
        "the Lease must live where the leader-election Role grants it: the pod's namespace"
    );
    assert_eq!(
        environment.get("POD_NAMESPACE").map(String::as_str),
        Some("metadata.namespace"),
        "netfence's own namespace (which no IsolationTemplate generates into) is the pod's"
    );

    let labels = pod_labels(&deployment);
    let deployment_selector = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.selector.match_labels.clone())
        .unwrap_or_default();
    assert!(selects(&deployment_selector, &labels));
    let service: Service = typed(&manager_document("Service"));
    let service_spec = service.spec.clone().expect("spec");
    assert!(
        selects(&service_spec.selector.unwrap_or_default(), &labels),
        "the metrics Service selects no operator pod"
    );
    let service_port = service_spec
        .ports
        .iter()
        .flatten()
        .find(|port| port.name.as_deref() == Some("metrics"))
        .expect("a Service port named metrics");
    assert_eq!(
        service_port.target_port,
        Some(IntOrString::String("metrics".to_owned()))
    );

    let monitor_documents = load(&repo().join("config/prometheus/monitor.yaml"));
    let monitor: ServiceMonitor = typed(&monitor_documents[0]);
    assert!(
        selects(
            &monitor.spec.selector.match_labels.unwrap_or_default(),
            &service.metadata.labels.unwrap_or_default()
        ),
        "the ServiceMonitor selects no Service"
    );
    assert_eq!(monitor.spec.namespace_selector.match_names, [NAMESPACE]);
    assert_eq!(monitor.spec.endpoints[0].port, "metrics");
    assert_eq!(monitor.spec.endpoints[0].path, "/metrics");
}

/// If this fails, an install or a GitOps example deploys another release than this source
/// tree: the image, the Argo CD and Flux revisions and the README's install command must all
/// name the workspace version.
#[test]
fn every_install_path_names_this_version() {
    let version = env!("CARGO_PKG_VERSION");
    let manager = kustomization(&repo().join("config/manager"));
    let image = manager
        .images
        .iter()
        .find(|image| image.name == "ghcr.io/netfence/netfence")
        .expect("config/manager/kustomization.yaml sets the image");
    assert_eq!(image.new_name, None);
    assert_eq!(image.new_tag.as_deref(), Some(version));
    let container_image = pod_spec(&deployment()).containers[0].image.clone();
    assert_eq!(
        container_image,
        Some(format!("ghcr.io/netfence/netfence:{version}"))
    );

    let tag = format!("v{version}");
    let argocd = load(&repo().join("examples/gitops/argocd/netfence.yaml"));
    let application: Application = typed(&argocd[0]);
    assert_eq!(
        application.spec.source.repo_url,
        "https://github.com/netfence/netfence"
    );
    assert_eq!(application.spec.source.target_revision, tag);
    assert_eq!(application.spec.source.path, "config/default");
    assert_eq!(application.spec.destination.namespace, NAMESPACE);

    let flux = load(&repo().join("examples/gitops/flux/netfence.yaml"));
    let repository: GitRepository = typed(
        flux.iter()
            .find(|document| document.kind() == "GitRepository")
            .expect("a GitRepository"),
    );
    assert_eq!(repository.spec.url, "https://github.com/netfence/netfence");
    assert_eq!(repository.spec.reference.tag.as_deref(), Some(tag.as_str()));
    let operator: FluxKustomization = typed(
        flux.iter()
            .find(|document| document.kind() == "Kustomization")
            .expect("a Kustomization"),
    );
    assert_eq!(operator.spec.path, "./config/default");
    assert_eq!(
        Some(operator.spec.source_ref.name),
        repository.metadata.name
    );

    // The chart, and the Helm forms of the GitOps examples.
    let chart: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("config/helm/netfence/Chart.yaml"))
            .expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(chart["version"], version, "Chart.yaml's version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml's appVersion");
    for document in load(&repo().join("examples/gitops/argocd/netfence-helm.yaml")) {
        let application: Application = typed(&document);
        assert_eq!(
            application.spec.source.repo_url,
            "https://github.com/netfence/netfence"
        );
        assert_eq!(application.spec.source.target_revision, tag);
        assert_eq!(application.spec.destination.namespace, NAMESPACE);
    }
    let flux_helm = load(&repo().join("examples/gitops/flux/netfence-helm.yaml"));
    let helm_repository: GitRepository = typed(
        flux_helm
            .iter()
            .find(|document| document.kind() == "GitRepository")
            .expect("a GitRepository"),
    );
    assert_eq!(
        helm_repository.spec.reference.tag.as_deref(),
        Some(tag.as_str())
    );
    let release: HelmRelease = typed(
        flux_helm
            .iter()
            .find(|document| document.kind() == "HelmRelease")
            .expect("a HelmRelease"),
    );
    assert_eq!(release.spec.chart.spec.chart, "./config/helm/netfence");
    assert_eq!(
        Some(release.spec.chart.spec.source_ref.name),
        helm_repository.metadata.name
    );

    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let install = format!("github.com/netfence/netfence/config/default?ref={tag}");
    assert!(
        readme.contains(&install),
        "the README does not say {install}"
    );
}

/// If this fails, Argo CD or Flux cannot tell a healthy netfence resource from a broken one:
/// a kind of netfence's CRDs has no Argo CD health check, the health checks do not read what
/// netfence's status writes (`observedGeneration`, the `Ready` condition), the Flux health
/// checks name a group other than netfence's, or the CRD is not protected from pruning (pruning
/// it deletes every NamespaceIsolation).
#[test]
fn gitops_examples_read_netfence_health_and_keep_the_crds() {
    let directory = repo().join("examples/gitops");
    let config_map: ConfigMap = typed(
        load(&directory.join("argocd/argocd-cm.yaml"))
            .iter()
            .find(|document| document.kind() == "ConfigMap")
            .expect("the argocd-cm ConfigMap"),
    );
    assert_eq!(config_map.metadata.name.as_deref(), Some("argocd-cm"));
    let data = config_map.data.unwrap_or_default();
    let kinds: Vec<String> = netfence_crd::crds()
        .iter()
        .map(|crd| crd.spec.names.kind.clone())
        .collect();
    for kind in kinds {
        let key = format!(
            "resource.customizations.health.{}_{kind}",
            netfence_crd::GROUP
        );
        let lua = data
            .get(&key)
            .unwrap_or_else(|| panic!("argocd-cm has no {key}"));
        for needle in [
            "obj.status.observedGeneration",
            "obj.metadata.generation",
            "condition.type == \"Ready\"",
            "\"Healthy\"",
            "\"Degraded\"",
            "\"Progressing\"",
        ] {
            assert!(lua.contains(needle), "{key} does not read {needle}");
        }
    }

    let defined = defined_by_examples(&directory);

    let mut health_checked = BTreeSet::new();
    let mut crds_kept = 0;
    for file in yaml_files(&directory.join("flux")) {
        for document in load(&file) {
            if document.kind() != "Kustomization" {
                continue;
            }
            let kustomization: FluxKustomization = typed(&document);
            for check in &kustomization.spec.health_checks {
                if check.api_version.starts_with("netfence.io/") {
                    health_checked.insert(check.kind.clone());
                    assert_eq!(
                        check.api_version,
                        NamespaceIsolation::api_version(&()),
                        "{}",
                        check.name
                    );
                    let object = (
                        check.kind.clone(),
                        check.namespace.clone(),
                        check.name.clone(),
                    );
                    assert!(
                        defined.contains(&object),
                        "{}: the health check of {object:?} names nothing examples/ defines \
                         (Flux would wait for it until the timeout)",
                        file.display()
                    );
                }
                assert!(
                    check.kind != "NamespaceIsolation" || check.namespace.is_some(),
                    "a NamespaceIsolation health check needs its namespace"
                );
            }
            if kustomization.spec.path == "./config/default" {
                crds_kept += kustomization
                    .spec
                    .patches
                    .iter()
                    .filter(|patch| {
                        patch.target.kind == "CustomResourceDefinition"
                            && patch
                                .patch
                                .contains("kustomize.toolkit.fluxcd.io/prune: disabled")
                    })
                    .count();
            }
        }
    }
    assert_eq!(
        health_checked,
        BTreeSet::from([
            "ClusterBaseline".to_owned(),
            "IsolationTemplate".to_owned(),
            "NamespaceIsolation".to_owned()
        ])
    );
    assert_eq!(crds_kept, 1, "Flux may prune netfence's CRD");

    let argocd = load(&directory.join("argocd/netfence.yaml"));
    let application: Application = typed(&argocd[0]);
    assert!(
        keeps_crds(&application),
        "Argo CD may prune or delete netfence's CRD"
    );
}

/// What `examples/` defines outside `gitops` (kind, namespace, name): a health check names an
/// object a user who applies the examples has.
fn defined_by_examples(gitops: &Path) -> BTreeSet<(String, Option<String>, String)> {
    let mut defined = BTreeSet::new();
    for file in yaml_files(&repo().join("examples"))
        .into_iter()
        .filter(|file| !file.starts_with(gitops))
    {
        for document in load(&file) {
            let namespace = document
                .value
                .pointer("/metadata/namespace")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            defined.insert((
                document.kind().to_owned(),
                namespace,
                document.name().to_owned(),
            ));
        }
    }
    defined
}

/// If this fails, an Argo CD Application of the examples that syncs NamespaceIsolations deletes
/// them with foreground propagation (Argo CD's default, for pruning and for its resources
/// finalizer): the garbage collector then deletes a `KeepDefaultDeny` resource's default deny
/// before netfence's finalizer can keep it, and the namespace is left open.
#[test]
fn argocd_examples_delete_isolations_in_the_background() {
    let file = repo().join("examples/gitops/argocd/team-isolations.yaml");
    let application: Application = typed(&load(&file)[0]);
    let finalizers = application.metadata.finalizers.unwrap_or_default();
    assert!(
        finalizers.iter().all(|finalizer| !finalizer
            .starts_with("resources-finalizer.argocd.argoproj.io")
            || finalizer.ends_with("/background")),
        "{}: the resources finalizer deletes in the foreground: {finalizers:?}",
        file.display()
    );
    let options = application
        .spec
        .sync_policy
        .map(|policy| policy.sync_options)
        .unwrap_or_default();
    assert!(
        options.contains(&"PrunePropagationPolicy=background".to_owned()),
        "{}: pruning deletes in the foreground: {options:?}",
        file.display()
    );
}

/// Whether an Argo CD Application annotates the CRDs it applies so that Argo CD never prunes
/// nor deletes them.
fn keeps_crds(application: &Application) -> bool {
    application
        .spec
        .source
        .kustomize
        .iter()
        .flat_map(|kustomize| &kustomize.patches)
        .any(|patch| {
            patch.target.kind == "CustomResourceDefinition"
                && patch.target.group.as_deref() == Some("apiextensions.k8s.io")
                && patch.patch.contains("Delete=false,Prune=false")
        })
}

/// If this fails, a GitOps example of the Helm chart lets Argo CD prune the CRDs (deleting every
/// NamespaceIsolation), lets Flux install without them or never update them, or creates the
/// namespace without the Pod Security labels config/default gives it.
#[test]
fn gitops_helm_examples_keep_the_crds_and_label_the_namespace() {
    let directory = repo().join("examples/gitops");
    // Argo CD: the chart's own crds/ skipped, the CRDs from config/crd kept as netfence.yaml
    // keeps them; the namespace labelled as config/default labels it.
    let namespace: Namespace = typed(&manager_document("Namespace"));
    let pod_security: BTreeMap<String, String> = namespace
        .metadata
        .labels
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| key.starts_with("pod-security.kubernetes.io/"))
        .collect();
    assert!(!pod_security.is_empty());
    let applications: Vec<Application> = load(&directory.join("argocd/netfence-helm.yaml"))
        .iter()
        .map(typed)
        .collect();
    let crds = applications
        .iter()
        .find(|application| application.spec.source.path == "config/crd")
        .expect("an Application of config/crd");
    assert!(
        keeps_crds(crds),
        "Argo CD may prune or delete netfence's CRD"
    );
    let chart = applications
        .iter()
        .find(|application| application.spec.source.path == "config/helm/netfence")
        .expect("an Application of the chart");
    let helm = chart.spec.source.helm.as_ref().expect("helm options");
    assert_eq!(
        helm.skip_crds,
        Some(true),
        "Argo CD would prune the chart's CRDs"
    );
    assert_eq!(helm.release_name, "netfence");
    let labels = &chart
        .spec
        .sync_policy
        .as_ref()
        .and_then(|policy| policy.managed_namespace_metadata.as_ref())
        .expect("managedNamespaceMetadata")
        .labels;
    for (key, value) in &pod_security {
        assert_eq!(labels.get(key), Some(value), "{key}");
    }
    // Flux: the namespace first, as config/default makes it; the chart's CRDs created and
    // replaced (never deleted: Helm's rule).
    let flux = load(&directory.join("flux/netfence-helm.yaml"));
    let flux_namespace: Namespace = typed(
        flux.iter()
            .find(|document| document.kind() == "Namespace")
            .expect("the namespace"),
    );
    assert_eq!(flux_namespace.metadata.name.as_deref(), Some(NAMESPACE));
    let flux_labels = flux_namespace.metadata.labels.unwrap_or_default();
    for (key, value) in &pod_security {
        assert_eq!(flux_labels.get(key), Some(value), "{key}");
    }
    let release: HelmRelease = typed(
        flux.iter()
            .find(|document| document.kind() == "HelmRelease")
            .expect("a HelmRelease"),
    );
    assert_eq!(release.spec.install.crds, "Create");
    assert_eq!(release.spec.upgrade.crds, "CreateReplace");
    assert_eq!(release.spec.release_name, "netfence");
    assert_eq!(release.spec.target_namespace, NAMESPACE);
    assert_eq!(release.spec.storage_namespace, NAMESPACE);
}

/// If this fails, `kubectl apply -k config/default` (or config/prometheus) does not render, or
/// renders objects outside netfence-system or with unknown fields. Skipped, with the reason
/// printed past the output capture, when kubectl is not installed (CI needs only the Rust
/// toolchain).
#[test]
fn kubectl_kustomize_renders_the_installation() {
    let available = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !available {
        common::skip(
            "kubectl_kustomize_renders_the_installation",
            "kubectl is not installed",
        );
        return;
    }
    for (base, expected) in [
        (
            "config/default",
            vec![
                "CustomResourceDefinition",
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Deployment",
                "PodDisruptionBudget",
                "Service",
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding",
            ],
        ),
        ("config/prometheus", vec!["Deployment", "ServiceMonitor"]),
    ] {
        let output = Command::new("kubectl")
            .arg("kustomize")
            .arg(repo().join(base))
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl kustomize {base}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("UTF-8");
        let documents = manifests::parse(base, &text).expect("rendered YAML");
        let mut kinds = BTreeSet::new();
        for document in &documents {
            kinds.insert(document.kind().to_owned());
            check_typed(document).unwrap_or_else(|error| panic!("{error}"));
            // kustomize's built-in schema predates the admission policy kinds (Kubernetes 1.30)
            // and gives them the namespace too; the API server drops a namespace from a
            // cluster-scoped object (the real `kubectl apply -k config/default` scenario
            // installs them), so either is fine for those two.
            if document.kind().starts_with("ValidatingAdmissionPolicy") {
                continue;
            }
            let cluster_scoped = matches!(
                document.kind(),
                "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
            );
            let namespace = document
                .value
                .pointer("/metadata/namespace")
                .and_then(serde_json::Value::as_str);
            if cluster_scoped {
                assert_eq!(
                    namespace,
                    None,
                    "{base}: {} {}",
                    document.kind(),
                    document.name()
                );
            } else if document.name() == "netfence-dns" {
                // The DNS checks' read-only Role, and its binding, where the DNS pods are.
                assert_eq!(
                    namespace,
                    Some("kube-system"),
                    "{base}: {}",
                    document.kind()
                );
            } else {
                assert_eq!(
                    namespace,
                    Some(NAMESPACE),
                    "{base}: {} {}",
                    document.kind(),
                    document.name()
                );
            }
        }
        for kind in expected {
            assert!(kinds.contains(kind), "{base} renders no {kind}: {kinds:?}");
        }
    }
}

/// If this fails, the image is built from other crate versions than Cargo.lock (`--locked`
/// missing), ships the sandbox (a test double: `--no-default-features` missing), runs as root
/// or as another user than the Deployment declares (with `runAsNonRoot`, a non-numeric or
/// mismatched user keeps the pod from starting), or is not the minimal distroless runtime.
/// Docker itself is not needed.
#[test]
fn the_dockerfile_builds_locked_and_runs_as_the_deployments_user() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect();
    let stages: Vec<&&str> = instructions
        .iter()
        .filter(|line| line.starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "a multi-stage build: {stages:?}");
    let runtime = stages.last().expect("a runtime stage");
    assert!(
        runtime.starts_with("FROM gcr.io/distroless/") && runtime.ends_with(":nonroot"),
        "{runtime}"
    );
    assert!(
        dockerfile.contains("cargo build --release --locked -p netfence --no-default-features"),
        "the release binary is built with --locked and without the sandbox"
    );
    let user = instructions
        .iter()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("a USER instruction");
    let pod = pod_spec(&deployment());
    let container_user = pod.containers[0]
        .security_context
        .as_ref()
        .and_then(|context| context.run_as_user);
    let group = pod.containers[0]
        .security_context
        .as_ref()
        .and_then(|context| context.run_as_group);
    let declared = format!(
        "{}:{}",
        container_user.expect("runAsUser"),
        group.expect("runAsGroup")
    );
    assert_eq!(user, declared);
    assert!(
        instructions
            .iter()
            .any(|line| line.starts_with("ENTRYPOINT [\"/netfence\"]")),
        "the Deployment's args start with the subcommand: the entrypoint is the binary"
    );
    let ignored = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    for entry in ["target/", ".git"] {
        assert!(
            ignored.lines().any(|line| line.trim() == entry),
            ".dockerignore misses {entry}"
        );
    }
}
