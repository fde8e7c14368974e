//! `netfence diff OLD NEW` (or `netfence diff --git REV PATH...`): what a change opens and
//! closes. Both sides are read as `netfence verify` reads them (NamespaceIsolations, templates
//! over the Namespace manifests, ClusterBaselines, and any NetworkPolicy or cluster-wide policy
//! beside them), and each namespace is compared in one model world built for both sides
//! ([`netfence_verify::intent::diff`]).
//!
//! ```text
//! OLD (paths, or the paths at REV through `git`) --read--> policies per namespace --\
//!                                                                                     compare --> opened, closed, policies changed
//! NEW (paths, or the paths as they are)          --read--> policies per namespace --/               (text | markdown | json)
//! ```
//!
//! Exit codes: 0 no connectivity change, 3 a connection opened or closed, 1 with `--fail-on` a
//! change of that kind, 2 bad input (every error on stderr, naming the file).

mod format;
mod git;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netfence_core::{
    ValidatedIsolation,
    meta::{BASELINE_LABEL, MANAGED_BY, MANAGED_BY_LABEL},
    render,
};
use netfence_crd::{
    NamespaceIsolation,
    baseline::Engine,
    isolation::{DeletionPolicy, Mode},
};
use netfence_verify::{
    cluster_wide::ClusterWidePolicies,
    intent::diff::{self, NamespaceDiff, ObjectChanges},
    selector::Labels,
};

use super::{output::bad_input, verify::EXIT_CHECK_FAILED};
use crate::manifests::{self, Document};

/// Exit code when a connection opened or closed.
pub const EXIT_CHANGED: u8 = 3;

/// Output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a terminal.
    #[default]
    Text,
    /// A pull-request comment: a summary line, a table per namespace, a Mermaid graph of the
    /// changed connections.
    Markdown,
    /// One JSON document: `{"before","after","changed","opened","closed","namespaces":[...],"clusterWide"}`.
    Json,
}

/// Which change fails the command (exit 1), for CI gates that want a review of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// A connection the change opens.
    Opened,
    /// A connection the change closes.
    Closed,
    /// Any connection opened or closed.
    Any,
}

/// Arguments of `netfence diff`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  netfence diff main-checkout/policies/ policies/
  netfence diff --git origin/main policies/ -o markdown > diff.md

Exit codes: 0 no connectivity change, 3 a connection opened or closed, 1 a change --fail-on
names, 2 bad input.")]
pub struct Args {
    /// OLD and NEW: files or directories of manifests (as `render` and `verify` take them; `-`
    /// for stdin on one side). With `--git REV`: the paths to compare, at REV and as they are
    /// now (default: `.`).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Compare the paths at this git revision (a branch, tag or commit, such as `origin/main`)
    /// with the paths as they are in the working tree.
    #[arg(long, value_name = "REV")]
    pub git: Option<String>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,

    /// Exit 1 when the change opens (or closes, or either) a connection, instead of 3.
    #[arg(long, value_enum, value_name = "CHANGE")]
    pub fail_on: Option<FailOn>,

    /// The namespace of NamespaceIsolations whose manifest has none (as `render --namespace`).
    #[arg(short, long, value_parser = super::render::namespace_argument)]
    pub namespace: Option<String>,

    /// The engine ClusterBaselines render to, over their `spec.engine` (as `render --engine`).
    #[arg(long, value_parser = super::render::engine_argument)]
    pub engine: Option<Engine>,
}

pub(super) fn run(args: &Args) -> ExitCode {
    super::output::buffered(|out, err| execute(args, out, err))
}

/// One side of the change, read.
struct Tree {
    /// How the output names it: `OLD`'s path, `origin/main`, `the working tree`.
    name: String,
    /// NetworkPolicies by namespace: rendered for the isolations, the input's own, and the
    /// NetworkPolicy engine's baseline policies.
    policies: BTreeMap<String, Vec<NetworkPolicy>>,
    /// The isolations by namespace.
    isolations: BTreeMap<String, Vec<ValidatedIsolation>>,
    cluster_wide: ClusterWidePolicies,
    labels: BTreeMap<String, Labels>,
    /// The Namespace manifests' names, when ClusterBaselines or cluster-wide policies are among
    /// the input (their change reaches namespaces without an isolation).
    covered: BTreeSet<String>,
}

/// The documents under `paths`.
fn documents(paths: &[PathBuf]) -> Result<Vec<Document>, String> {
    manifests::load(paths).map_err(|error| error.to_string())
}

/// Read one side: every error in `errors` (prefixed by nothing: each names its file).
fn read_tree(
    name: String,
    documents: Vec<Document>,
    args: &Args,
    errors: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Tree {
    let super::verify::Read { input, isolations } =
        super::verify::read(documents, args.engine, errors, notes);
    // The input's own policies, checked here so that each error names its file.
    if let Err(located) = super::verify::model(&input) {
        errors.extend(located);
    }
    let mut tree = Tree {
        name,
        policies: BTreeMap::new(),
        isolations: BTreeMap::new(),
        labels: input.namespace_labels(),
        cluster_wide: input.cluster_wide,
        covered: BTreeSet::new(),
    };
    // Cluster-wide policies (a baseline's or the input's) reach namespaces without an isolation.
    if !input.baselines.is_empty() || !tree.cluster_wide.is_empty() {
        tree.covered = tree.labels.keys().cloned().collect();
    }
    let mut skipped = 0;
    for policy in input.policies {
        let labels = policy.metadata.labels.as_ref();
        let managed = labels
            .and_then(|labels| labels.get(MANAGED_BY_LABEL))
            .is_some_and(|value| value == MANAGED_BY);
        let baseline = labels.is_some_and(|labels| labels.contains_key(BASELINE_LABEL));
        if managed && !baseline {
            skipped += 1;
            continue;
        }
        let namespace = policy
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        tree.policies.entry(namespace).or_default().push(policy);
    }
    if skipped > 0 {
        notes.push(format!(
            "{}: left out {skipped} NetworkPolicies labelled {MANAGED_BY_LABEL}={MANAGED_BY}: diff renders netfence's policies from the resources",
            tree.name
        ));
    }
    for isolation in isolations {
        let isolation = isolation.with_default_namespace(args.namespace.clone());
        let namespace = isolation.namespace().unwrap_or("default").to_owned();
        // A DryRun resource writes no policy: it shapes the world only.
        let rendered = if isolation.mode() == Mode::DryRun {
            Vec::new()
        } else {
            render::network_policies(&isolation)
        };
        tree.policies
            .entry(namespace.clone())
            .or_default()
            .extend(rendered);
        tree.isolations
            .entry(namespace)
            .or_default()
            .push(isolation);
    }
    tree
}

/// The spec of each object, by key: NetworkPolicies as `namespace/name`, cluster-wide ones as
/// `Kind/name`.
fn specs<T: serde::Serialize>(
    objects: &[T],
    key: impl Fn(&T) -> String,
) -> BTreeMap<String, serde_json::Value> {
    objects
        .iter()
        .map(|object| {
            let value = serde_json::to_value(object).unwrap_or_default();
            (key(object), value.get("spec").cloned().unwrap_or_default())
        })
        .collect()
}

fn cluster_wide_specs(wide: &ClusterWidePolicies) -> BTreeMap<String, serde_json::Value> {
    fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
        meta.name.as_deref().unwrap_or_default()
    }
    let mut all = specs(&wide.cluster_network_policies, |object| {
        format!("ClusterNetworkPolicy/{}", name(&object.metadata))
    });
    all.extend(specs(&wide.calico_tiers, |object| {
        format!("Tier/{}", name(&object.metadata))
    }));
    all.extend(specs(&wide.calico_policies, |object| {
        format!("GlobalNetworkPolicy/{}", name(&object.metadata))
    }));
    all.extend(specs(&wide.cilium_policies, |object| {
        format!("CiliumClusterwideNetworkPolicy/{}", name(&object.metadata))
    }));
    all
}

/// One namespace's comparison.
pub(super) struct Namespace {
    /// The isolations before and after (`namespace/name`), for the header.
    isolations: [Vec<String>; 2],
    connections: NamespaceDiff,
    policies: ObjectChanges,
}

/// The whole comparison.
pub(super) struct Comparison {
    before: String,
    after: String,
    /// How many namespaces were compared.
    compared: usize,
    /// The namespaces where a connection or a policy changed.
    namespaces: Vec<Namespace>,
    cluster_wide: ObjectChanges,
}

impl Comparison {
    fn opened(&self) -> usize {
        self.namespaces
            .iter()
            .map(|namespace| namespace.connections.opened.len())
            .sum()
    }

    fn closed(&self) -> usize {
        self.namespaces
            .iter()
            .map(|namespace| namespace.connections.closed.len())
            .sum()
    }
}

/// The isolation a namespace only a ClusterBaseline covers is modelled with: the defaults.
fn default_isolation(namespace: &str) -> Option<ValidatedIsolation> {
    let mut resource = NamespaceIsolation::new(
        "default",
        netfence_core::validate::baseline::isolation_spec(),
    );
    resource.metadata.namespace = Some(namespace.to_owned());
    ValidatedIsolation::try_from(&resource).ok()
}

/// The policies a NamespaceIsolation of `before` that `after` no longer has leaves behind, as
/// the controller does on its deletion: none (`Delete`), its default deny and DNS allow
/// (`KeepDefaultDeny`), or every one (`Orphan`).
fn left_behind(before: &Tree, after: &Tree, namespace: &str) -> Vec<NetworkPolicy> {
    let Some(isolations) = before.isolations.get(namespace) else {
        return Vec::new();
    };
    let still = |name: &str| {
        after
            .isolations
            .get(namespace)
            .is_some_and(|now| now.iter().any(|isolation| isolation.name() == name))
    };
    isolations
        .iter()
        .filter(|isolation| isolation.mode() == Mode::Enforce && !still(isolation.name()))
        .flat_map(|isolation| {
            let policy = isolation.deletion_policy();
            render::network_policies(isolation)
                .into_iter()
                .filter(move |rendered| match policy {
                    DeletionPolicy::Delete => false,
                    DeletionPolicy::Orphan => true,
                    DeletionPolicy::KeepDefaultDeny => render::fails_closed(
                        isolation.name(),
                        rendered.metadata.name.as_deref().unwrap_or_default(),
                        &rendered.metadata.labels.clone().unwrap_or_default(),
                    ),
                })
        })
        .collect()
}

/// The isolations of `tree` in `namespace`, or `fallback`.
fn isolations_of<'a>(
    tree: &'a Tree,
    namespace: &str,
    fallback: &'a [ValidatedIsolation],
) -> Vec<&'a ValidatedIsolation> {
    tree.isolations
        .get(namespace)
        .map_or(fallback, Vec::as_slice)
        .iter()
        .collect()
}

fn compare(before: &Tree, after: &Tree) -> Result<Comparison, Vec<String>> {
    let namespaces: BTreeSet<&String> = [before, after]
        .iter()
        .flat_map(|tree| {
            tree.isolations
                .keys()
                .chain(&tree.covered)
                .chain(tree.policies.keys())
        })
        .collect();
    let mut errors = Vec::new();
    let mut changed = Vec::new();
    let empty = Vec::new();
    for namespace in &namespaces {
        let fallback: Vec<ValidatedIsolation> = if [before, after]
            .iter()
            .any(|tree| tree.isolations.contains_key(*namespace))
        {
            Vec::new()
        } else {
            default_isolation(namespace).into_iter().collect()
        };
        let (isolations_before, isolations_after) = (
            isolations_of(before, namespace, &fallback),
            isolations_of(after, namespace, &fallback),
        );
        let policies_before = before.policies.get(*namespace).unwrap_or(&empty);
        let mut policies_after = after.policies.get(*namespace).unwrap_or(&empty).clone();
        policies_after.extend(left_behind(before, after, namespace));
        let policies_after = &policies_after;
        let connections = match diff::compare(
            namespace,
            &diff::Side {
                isolations: &isolations_before,
                policies: policies_before,
                cluster_wide: &before.cluster_wide,
                labels: &before.labels,
            },
            &diff::Side {
                isolations: &isolations_after,
                policies: policies_after,
                cluster_wide: &after.cluster_wide,
                labels: &after.labels,
            },
        ) {
            Ok(connections) => connections,
            Err(error) => {
                errors.push(format!("namespace {namespace}: {error}"));
                continue;
            }
        };
        let key = |policy: &NetworkPolicy| {
            format!(
                "{namespace}/{}",
                policy.metadata.name.as_deref().unwrap_or_default()
            )
        };
        let policies =
            ObjectChanges::between(&specs(policies_before, key), &specs(policies_after, key));
        if connections.changed() || !policies.is_empty() {
            let names = |tree: &Tree| {
                tree.isolations
                    .get(*namespace)
                    .map(|isolations| {
                        isolations
                            .iter()
                            .map(|isolation| format!("{namespace}/{}", isolation.name()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            changed.push(Namespace {
                isolations: [names(before), names(after)],
                connections,
                policies,
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Comparison {
        before: before.name.clone(),
        after: after.name.clone(),
        compared: namespaces.len(),
        namespaces: changed,
        cluster_wide: ObjectChanges::between(
            &cluster_wide_specs(&before.cluster_wide),
            &cluster_wide_specs(&after.cluster_wide),
        ),
    })
}

/// The documents of `paths` in the working tree, for `--git`: a path the change deleted (or left
/// without manifests) has none there, with a note.
fn working_tree(paths: &[PathBuf], notes: &mut Vec<String>) -> Result<Vec<Document>, String> {
    let mut all = Vec::new();
    for path in paths {
        match manifests::load(std::slice::from_ref(path)) {
            Ok(documents) => all.extend(documents),
            Err(manifests::LoadError::EmptyDirectory { .. }) => notes.push(format!(
                "{} has no manifest in the working tree: everything in it is removed",
                path.display()
            )),
            Err(_) if !path.exists() => notes.push(format!(
                "{} does not exist in the working tree: everything in it is removed",
                path.display()
            )),
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(all)
}

/// The two sides' documents and names, from the arguments.
fn sides(args: &Args, notes: &mut Vec<String>) -> Result<[(String, Vec<Document>); 2], String> {
    if let Some(rev) = &args.git {
        let paths = if args.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            args.paths.clone()
        };
        if paths.iter().any(|path| path.as_os_str() == "-") {
            return Err(
                "--git compares paths of the repository; `-` (stdin) has no revision".to_owned(),
            );
        }
        let before = git::documents(rev, &paths, notes)?;
        let after = working_tree(&paths, notes)?;
        return Ok([
            (rev.clone(), before),
            ("the working tree".to_owned(), after),
        ]);
    }
    let [old, new] = args.paths.as_slice() else {
        return Err(format!(
            "diff takes two paths, OLD and NEW (got {}), or --git REV and the paths to compare at REV",
            args.paths.len()
        ));
    };
    if old.as_os_str() == "-" && new.as_os_str() == "-" {
        return Err("only one side can be read from stdin (`-`)".to_owned());
    }
    let before = documents(std::slice::from_ref(old))?;
    let after = documents(std::slice::from_ref(new))?;
    Ok([
        (old.display().to_string(), before),
        (new.display().to_string(), after),
    ])
}

/// Run `netfence diff` on `args`, writing the report to `out` and notes and errors to `err`;
/// returns the exit code.
pub fn execute(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let [(before_name, before), (after_name, after)] = match sides(args, &mut notes) {
        Ok(sides) => sides,
        Err(error) => return bad_input(err, &[error]),
    };
    let before = read_tree(before_name, before, args, &mut errors, &mut notes);
    let after = read_tree(after_name, after, args, &mut errors, &mut notes);
    for note in &notes {
        writeln!(err, "note: {note}")?;
    }
    if !errors.is_empty() {
        return bad_input(err, &errors);
    }
    let nothing = |tree: &Tree| {
        tree.isolations.is_empty()
            && tree.covered.is_empty()
            && tree.cluster_wide.is_empty()
            && tree.policies.is_empty()
    };
    if nothing(&before) && nothing(&after) {
        return bad_input(
            err,
            &[format!(
                "no NamespaceIsolation, IsolationTemplate, ClusterBaseline, NetworkPolicy or cluster-wide policy found in {} or {}: nothing to compare",
                before.name, after.name
            )],
        );
    }
    let comparison = match compare(&before, &after) {
        Ok(comparison) => comparison,
        Err(errors) => return bad_input(err, &errors),
    };
    let (opened, closed) = (comparison.opened() > 0, comparison.closed() > 0);
    let failed = match args.fail_on {
        Some(FailOn::Opened) => opened,
        Some(FailOn::Closed) => closed,
        Some(FailOn::Any) => opened || closed,
        None => false,
    };
    let code = if failed {
        EXIT_CHECK_FAILED
    } else if opened || closed {
        EXIT_CHANGED
    } else {
        0
    };
    let written = match args.output {
        Format::Text => write!(out, "{}", format::text(&comparison)),
        Format::Markdown => write!(out, "{}", format::markdown(&comparison)),
        Format::Json => writeln!(out, "{}", format::json(&comparison)),
    };
    match written {
        // A reader that stops early (`| head`) never turns a change into a pass: the verdict stands.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(code),
        other => other.map(|()| code),
    }
}
