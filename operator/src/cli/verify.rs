//! `netfence verify PATH...`: read manifests, compute who can reach whom with the pure
//! [`netfence_verify`] engine, and print it.
//!
//! ```text
//! PATH... --manifests::load--> Namespaces, Pods, NetworkPolicies --Cluster::build--> matrix (table | json | yaml)
//!                              NamespaceIsolations --render--> intent proof ("intent holds" or every difference)
//!                                                              tier graph (mermaid | dot | html: graph, matrix, proof, explanations)
//! ```
//!
//! Other kinds are skipped with a note on stderr. Exit codes: 0 verified, 1 an intent proof
//! failed, 2 bad input (every problem on stderr as `error: FILE: KIND NAME: FIELD: message`),
//! a namespace that cannot be one among them (`metadata.namespace`, a Namespace's
//! `metadata.name`).

use std::{
    collections::BTreeMap,
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
};

use k8s_openapi::{
    api::{
        core::v1::{Namespace, Pod},
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{EXIT_BAD_INPUT, output::bad_input};
use netfence_core::meta::BASELINE_LABEL;
use netfence_crd::engines::{calico, cilium, cluster_network_policy};
use netfence_verify::{
    self as verify, Cluster, Probe, cluster_wide::ClusterWidePolicies, intent, picture, report,
};

use crate::manifests::{self, Document};

/// Exit code when a check failed: an intent proof found a difference.
pub const EXIT_CHECK_FAILED: u8 = 1;

/// Output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One matrix per probe: rows are sources, columns destinations.
    #[default]
    Table,
    /// One JSON document: `{"connections": [...], "intent": [...]}`. `connections`: one
    /// `{"from", "to", "port", "protocol", "allowed", "reason"}` per ordered pair of distinct
    /// pods per probe (`allowed` null for `hostNetwork`; empty without pods). `intent`: one
    /// `{"isolation", "against", "holds", "endpoints", "probes", "warnings", "differences"}` per
    /// NamespaceIsolation, each difference `{"from", "to", "port", "protocol", "declared",
    /// "reason", "policies"}` (`port` a number, or the port's name for a named port).
    Json,
    /// The same document as `json`, in YAML.
    Yaml,
    /// The tier graph of each NamespaceIsolation as a Mermaid flowchart (tiers, DNS, shared
    /// services, address ranges; edges labelled with the allowed ports).
    Mermaid,
    /// The same graph in Graphviz DOT (`| dot -Tsvg`).
    Dot,
    /// One self-contained HTML page: per NamespaceIsolation the graph (SVG), the matrix, the
    /// intent proof, and why each edge is allowed.
    Html,
}

impl Format {
    /// Whether the format draws the NamespaceIsolations' graphs.
    fn is_picture(self) -> bool {
        matches!(self, Format::Mermaid | Format::Dot | Format::Html)
    }
}

/// Arguments of `netfence verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories of manifests (YAML or JSON, multi-document, `kind: List` accepted,
    /// so `kubectl get ns,pods,netpol -A -o yaml` works as is), or `-` for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// A port and protocol to test, such as `80/TCP` or `53/UDP` (repeatable). Default: every
    /// port that some pod declares.
    #[arg(long = "probe", value_name = "PORT/PROTOCOL")]
    pub probes: Vec<Probe>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// Explain one connection instead of printing the matrix: which policies select each end,
    /// which rule allowed it, or why none did. Pods are `NAMESPACE/NAME`.
    #[arg(long, num_args = 3, value_names = ["FROM", "TO", "PORT/PROTOCOL"])]
    pub explain: Option<Vec<String>>,
}

pub(super) fn run(args: &Args) -> ExitCode {
    super::output::buffered(|out, err| execute(args, out, err))
}

/// The objects `verify` reads, sorted out of the documents.
#[derive(Default)]
pub(super) struct Input {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    /// NetworkPolicies: the input's, and those of ClusterBaselines for the NetworkPolicy engine.
    pub policies: Vec<NetworkPolicy>,
    isolations: Vec<Document>,
    /// ClusterNetworkPolicies, Calico and Cilium cluster-wide policies: the input's, and those
    /// its ClusterBaselines render.
    pub cluster_wide: ClusterWidePolicies,
    /// ClusterBaselines, rendered for the engine each names.
    pub baselines: Vec<Document>,
    /// The Namespace manifests, for IsolationTemplates to expand over.
    namespace_documents: Vec<Document>,
    /// `(kind, ns/name)` -> the file it came from, to name the file in errors.
    sources: BTreeMap<(&'static str, String), String>,
}

impl Input {
    /// The labels of each Namespace of the input, by name.
    pub fn namespace_labels(&self) -> BTreeMap<String, netfence_verify::selector::Labels> {
        self.namespaces
            .iter()
            .filter_map(|namespace| {
                Some((
                    namespace.metadata.name.clone()?,
                    namespace.metadata.labels.clone().unwrap_or_default(),
                ))
            })
            .collect()
    }
}

fn object_key(document: &Document) -> String {
    match document
        .value
        .pointer("/metadata/namespace")
        .and_then(serde_json::Value::as_str)
    {
        Some(namespace) => format!("{namespace}/{}", document.name()),
        None if matches!(
            document.kind(),
            "Namespace"
                | "IsolationTemplate"
                | "ClusterBaseline"
                | "ClusterNetworkPolicy"
                | "GlobalNetworkPolicy"
                | "Tier"
                | "CiliumClusterwideNetworkPolicy"
        ) =>
        {
            document.name().to_owned()
        }
        None => format!("default/{}", document.name()),
    }
}

/// Read a cluster-wide policy of another engine into `input`; `None` when the document is not
/// one.
fn read_cluster_wide(
    document: &Document,
    input: &mut Input,
) -> Option<Result<(), manifests::FieldError>> {
    let wide = &mut input.cluster_wide;
    let (kind, result) = match document.kind() {
        "ClusterNetworkPolicy" => (
            "ClusterNetworkPolicy",
            document
                .typed()
                .map(|object| wide.cluster_network_policies.push(object)),
        ),
        "GlobalNetworkPolicy" => (
            "GlobalNetworkPolicy",
            document
                .typed()
                .map(|object| wide.calico_policies.push(object)),
        ),
        "Tier" => (
            "Tier",
            document
                .typed()
                .map(|object| wide.calico_tiers.push(object)),
        ),
        "CiliumClusterwideNetworkPolicy" => (
            "CiliumClusterwideNetworkPolicy",
            document
                .typed()
                .map(|object| wide.cilium_policies.push(object)),
        ),
        _ => return None,
    };
    input
        .sources
        .insert((kind, document.name().to_owned()), document.source.clone());
    Some(result)
}

/// The apiVersion verify reads a document's kind in; or, for a kind it skips, how the note
/// names it (another group's kind of the same name with its apiVersion: Antrea's
/// ClusterNetworkPolicy and Tier, Calico's backing crd.projectcalico.org/v1).
fn expected_api_version(document: &Document) -> Result<&'static str, String> {
    let api_version = document.api_version();
    match document.kind() {
        "Namespace" | "Pod" => Ok("v1"),
        "NetworkPolicy" => Ok("networking.k8s.io/v1"),
        "NamespaceIsolation" | "IsolationTemplate" | "ClusterBaseline" => {
            Ok("netfence.io/v1alpha1")
        }
        "ClusterNetworkPolicy" => cluster_network_policy::API_VERSIONS
            .into_iter()
            .find(|version| *version == api_version)
            .ok_or_else(|| format!("ClusterNetworkPolicy ({api_version})")),
        "GlobalNetworkPolicy" | "Tier" if api_version == calico::API_VERSION => {
            Ok(calico::API_VERSION)
        }
        "CiliumClusterwideNetworkPolicy" if api_version == cilium::API_VERSION => {
            Ok(cilium::API_VERSION)
        }
        kind @ ("GlobalNetworkPolicy" | "Tier" | "CiliumClusterwideNetworkPolicy") => {
            Err(format!("{kind} ({api_version})"))
        }
        "" => Err("object without kind".to_owned()),
        other => Err(other.to_owned()),
    }
}

/// Sort documents by kind; collect every error and a note per skipped kind.
fn classify(documents: Vec<Document>, errors: &mut Vec<String>, notes: &mut Vec<String>) -> Input {
    let mut input = Input::default();
    let mut skipped: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for document in documents {
        let expected = match expected_api_version(&document) {
            Ok(expected) => expected,
            Err(kind) => {
                let entry = skipped
                    .entry(kind)
                    .or_insert_with(|| (0, format!("{}: {}", document.source, document.name())));
                entry.0 += 1;
                continue;
            }
        };
        let prefix = format!(
            "{}: {} {}",
            document.source,
            document.kind(),
            object_key(&document)
        );
        if document.api_version() != expected {
            let expected = expected.to_owned();
            errors.push(format!(
                "{prefix}: apiVersion: \"{}\" is not supported; use {expected}",
                document.api_version()
            ));
            continue;
        }
        // A namespace that cannot be one: refused here, so no model or proof is built for it
        // (a NamespaceIsolation's is refused with the other checks of its manifest).
        if matches!(document.kind(), "Namespace" | "Pod" | "NetworkPolicy")
            && let Some(error) = document.namespace_error()
        {
            errors.push(format!("{prefix}: {error}"));
            continue;
        }
        if document.kind() == "ClusterBaseline" {
            input.baselines.push(document);
            continue;
        }
        match read_cluster_wide(&document, &mut input) {
            Some(Err(error)) => {
                errors.push(format!("{prefix}: {error}"));
                continue;
            }
            Some(Ok(())) => continue,
            None => {}
        }
        let kind: &'static str = match document.kind() {
            "Namespace" => "Namespace",
            "Pod" => "Pod",
            "NetworkPolicy" => "NetworkPolicy",
            _ => {
                input.isolations.push(document);
                continue;
            }
        };
        input
            .sources
            .insert((kind, object_key(&document)), document.source.clone());
        let result = match kind {
            "Namespace" => document.lenient().map(|namespace| {
                input.namespaces.push(namespace);
                input.namespace_documents.push(document.clone());
            }),
            "Pod" => document.lenient().map(|pod| input.pods.push(pod)),
            _ => document.typed().map(|policy| input.policies.push(policy)),
        };
        if let Err(error) = result {
            errors.push(format!("{prefix}: {error}"));
        }
    }
    for (kind, (count, first)) in skipped {
        let objects = if count == 1 { "object" } else { "objects" };
        notes.push(format!(
            "skipped {count} {kind} {objects} (first: {first}); verify reads Namespace, Pod, NetworkPolicy, NamespaceIsolation, IsolationTemplate, ClusterBaseline, ClusterNetworkPolicy, Calico GlobalNetworkPolicy and Tier, and CiliumClusterwideNetworkPolicy"
        ));
    }
    input
}

/// Add what the input's ClusterBaselines render: cluster-wide objects, and the NetworkPolicy
/// engine's per-namespace policies. An object the input already holds (by kind and name) is the
/// input's: it is what the cluster or the repository has.
fn add_rendered(input: &mut Input, objects: Vec<netfence_core::baseline::Object>) {
    use netfence_core::baseline::Object;
    /// Add `object` unless `list` holds one with its name (and namespace).
    fn add<T>(list: &mut Vec<T>, object: T, meta: impl Fn(&T) -> &ObjectMeta) {
        let key = |object: &T| (meta(object).namespace.clone(), meta(object).name.clone());
        if !list.iter().any(|other| key(other) == key(&object)) {
            list.push(object);
        }
    }
    let wide = &mut input.cluster_wide;
    for object in objects {
        match object {
            Object::ClusterNetworkPolicy(policy) => {
                add(&mut wide.cluster_network_policies, *policy, |o| &o.metadata);
            }
            Object::CalicoTier(tier) => add(&mut wide.calico_tiers, *tier, |o| &o.metadata),
            Object::CalicoPolicy(policy) => {
                add(&mut wide.calico_policies, *policy, |o| &o.metadata);
            }
            Object::Cilium(policy) => add(&mut wide.cilium_policies, *policy, |o| &o.metadata),
            Object::NetworkPolicy(policy) => add(&mut input.policies, *policy, |o| &o.metadata),
        }
    }
}

/// The model of the input's Namespaces, Pods, NetworkPolicies and cluster-wide policies, or
/// every error in it, each named by the file its object came from.
pub(super) fn model(input: &Input) -> Result<Cluster, Vec<String>> {
    Cluster::build_with(
        &input.namespaces,
        &input.pods,
        &input.policies,
        &input.cluster_wide,
    )
    .map_err(|model_errors| {
        model_errors
            .0
            .iter()
            .map(|error| {
                let (kind, object) = error.object();
                let source = input
                    .sources
                    .get(&(kind, object.to_owned()))
                    .map_or("<input>", String::as_str);
                format!("{source}: {error}")
            })
            .collect()
    })
}

/// What `verify` and `diff` read from manifests: the objects sorted by kind, with what
/// ClusterBaselines render added, and the NamespaceIsolations (written, and generated by
/// IsolationTemplates over the Namespace manifests), validated.
pub(super) struct Read {
    pub input: Input,
    pub isolations: Vec<netfence_core::ValidatedIsolation>,
}

/// Read `documents` as `verify` does: every error in `errors`, a note per skipped kind (and per
/// template or baseline that covers nothing) in `notes`. ClusterBaselines render for `engine`
/// over each one's `spec.engine`.
pub(super) fn read(
    documents: Vec<Document>,
    engine: Option<netfence_crd::baseline::Engine>,
    errors: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Read {
    let mut input = classify(documents, errors, notes);
    let mut isolations = Vec::new();
    if !input.isolations.is_empty() {
        let mut documents = input.isolations.clone();
        if documents
            .iter()
            .any(|document| document.kind() == "IsolationTemplate")
        {
            documents.extend(input.namespace_documents.iter().cloned());
        }
        // What templates would generate is no news when the input is refused already (a
        // Namespace refused above would show as one a template does not match).
        let mut expansion_notes = Vec::new();
        let refused = !errors.is_empty();
        match super::render::isolations(&documents, &mut expansion_notes) {
            Ok(valid) => isolations = valid,
            Err(invalid) => errors.extend(invalid),
        }
        if !refused {
            notes.extend(expansion_notes);
        }
    }
    if !input.baselines.is_empty() {
        let mut documents = input.baselines.clone();
        documents.extend(input.namespace_documents.iter().cloned());
        match super::render::baselines(&documents, engine, super::render::OPERATOR_NAMESPACE, notes)
        {
            Ok(objects) => add_rendered(&mut input, objects),
            Err(invalid) => errors.extend(invalid),
        }
    }
    Read { input, isolations }
}

/// Run `netfence verify` on `args`, writing the report to `out` and notes and errors to `err`;
/// returns the exit code.
pub fn execute(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let documents = match manifests::load(&args.paths) {
        Ok(documents) => documents,
        Err(error) => return bad_input(err, &[error.to_string()]),
    };
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let Read { input, isolations } = read(documents, None, &mut errors, &mut notes);
    let cluster = match model(&input) {
        Ok(cluster) => Some(cluster),
        Err(located) => {
            errors.extend(located);
            None
        }
    };
    for note in notes.iter().chain(cluster.iter().flat_map(Cluster::notes)) {
        writeln!(err, "note: {note}")?;
    }
    let Some(cluster) = cluster.filter(|_| errors.is_empty()) else {
        return bad_input(err, &errors);
    };

    if let Some(explain) = &args.explain {
        return explain_one(&cluster, explain, out, err);
    }
    if cluster.pods().is_empty() && isolations.is_empty() {
        let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        return bad_input(
            err,
            &[format!(
                "no Pod and no NamespaceIsolation found in {}; verify needs pods (such as `kubectl get ns,pods,netpol -A -o yaml`) or NamespaceIsolation resources",
                paths.join(", ")
            )],
        );
    }
    if args.output.is_picture() {
        return draw(args, &cluster, &isolations, &input, out, err);
    }
    let probes = if cluster.pods().is_empty() {
        Vec::new()
    } else {
        let probes = matrix_probes(args, &cluster);
        if probes.is_empty() {
            return bad_input(
                err,
                &["no pod declares a container port, so there is nothing to probe; pass --probe PORT/PROTOCOL, such as --probe 80/TCP".to_owned()],
            );
        }
        probes
    };
    // Every proof before any output: an isolation that cannot be proven prints nothing.
    let mut proofs = Vec::new();
    for isolation in &isolations {
        let Ok(proof) = prove(isolation, &input, err)? else {
            return Ok(EXIT_BAD_INPUT);
        };
        proofs.push(proof);
    }
    let matrix = verify::reachability(&cluster, &probes);
    match args.output {
        Format::Json => write_json(&matrix, &proofs, out)?,
        Format::Yaml => write_yaml(&matrix, &proofs, out)?,
        _ => {
            if !probes.is_empty() {
                write!(out, "{}", report::table(&matrix))?;
            }
            for (proof, against) in &proofs {
                writeln!(out, "proving against {against}")?;
                writeln!(out, "{}\n", intent::report(proof))?;
            }
        }
    }
    let failed = proofs.iter().any(|(proof, _)| !proof.holds());
    Ok(if failed { EXIT_CHECK_FAILED } else { 0 })
}

/// The intent proofs of `-o json` and `-o yaml`: one object per NamespaceIsolation.
fn intent_json(proofs: &[(intent::Proof, String)]) -> Vec<serde_json::Value> {
    proofs
        .iter()
        .map(|(proof, against)| {
            let mut json = intent::json(proof);
            json["against"] = serde_json::Value::String(against.clone());
            json
        })
        .collect()
}

/// `-o json`: one document, `{"connections":[...],"intent":[...]}`. The connections are
/// streamed (millions of them for a large cluster), one per line.
fn write_json(
    matrix: &verify::Reachability<'_>,
    proofs: &[(intent::Proof, String)],
    out: &mut dyn Write,
) -> io::Result<()> {
    write!(out, "{{\"connections\":[")?;
    for (index, connection) in matrix.connections().enumerate() {
        if index > 0 {
            write!(out, ",")?;
        }
        writeln!(out)?;
        serde_json::to_writer(&mut *out, &connection).map_err(io::Error::other)?;
    }
    write!(out, "\n],\"intent\":[")?;
    for (index, proof) in intent_json(proofs).iter().enumerate() {
        if index > 0 {
            write!(out, ",")?;
        }
        writeln!(out)?;
        serde_json::to_writer(&mut *out, proof).map_err(io::Error::other)?;
    }
    writeln!(out, "\n]}}")
}

/// `-o yaml`: the document of `-o json`, in YAML.
fn write_yaml(
    matrix: &verify::Reachability<'_>,
    proofs: &[(intent::Proof, String)],
    out: &mut dyn Write,
) -> io::Result<()> {
    let document = serde_json::json!({
        "connections": matrix.connections().collect::<Vec<_>>(),
        "intent": intent_json(proofs),
    });
    let yaml = serde_saphyr::to_string(&document).map_err(io::Error::other)?;
    write!(out, "{yaml}")
}

/// The probes of the pods' matrix: `--probe`, or every port some pod declares.
fn matrix_probes(args: &Args, cluster: &Cluster) -> Vec<Probe> {
    if args.probes.is_empty() {
        cluster.declared_probes()
    } else {
        args.probes.clone()
    }
}

/// `-o mermaid | dot | html`: every NamespaceIsolation's graph (and, for html, its proof and
/// the pods' matrix). Exit 1 when a proof fails, as for the other formats.
fn draw(
    args: &Args,
    cluster: &Cluster,
    isolations: &[netfence_core::ValidatedIsolation],
    input: &Input,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    if isolations.is_empty() {
        return bad_input(
            err,
            &["-o mermaid, dot and html draw the tier graph of NamespaceIsolations, and the input has none; use -o table or json for the pods' matrix".to_owned()],
        );
    }
    let mut proofs = Vec::new();
    for isolation in isolations {
        let Ok(proof) = prove(isolation, input, err)? else {
            return Ok(EXIT_BAD_INPUT);
        };
        proofs.push(proof);
    }
    let graphs: Vec<picture::Graph> = proofs
        .iter()
        .map(|(proof, _)| picture::of_proof(proof))
        .collect();
    match args.output {
        Format::Mermaid => write!(out, "{}", picture::mermaid(&graphs))?,
        Format::Dot => write!(out, "{}", picture::dot(&graphs))?,
        _ => {
            let probes = matrix_probes(args, cluster);
            let table = (!cluster.pods().is_empty() && !probes.is_empty())
                .then(|| report::table(&verify::reachability(cluster, &probes)));
            let sections: Vec<picture::html::Section<'_>> = proofs
                .iter()
                .map(|(proof, against)| picture::html::Section { proof, against })
                .collect();
            write!(out, "{}", picture::html::page(&sections, table.as_deref()))?;
        }
    }
    let failed = proofs.iter().any(|(proof, _)| !proof.holds());
    Ok(if failed { EXIT_CHECK_FAILED } else { 0 })
}

fn explain_one(
    cluster: &Cluster,
    explain: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    let [from, to, probe] = explain else {
        return bad_input(err, &["--explain takes FROM TO PORT/PROTOCOL".to_owned()]);
    };
    let mut errors = Vec::new();
    let mut pod = |key: &str| {
        let index = cluster.pod_index(key);
        if index.is_none() {
            errors.push(format!(
                "--explain: pod {key:?} is not in the input; name pods NAMESPACE/NAME, as the matrix prints them"
            ));
        }
        index
    };
    let (from, to) = (pod(from), pod(to));
    let probe = match probe.parse::<Probe>() {
        Ok(probe) => Some(probe),
        Err(error) => {
            errors.push(format!("--explain: {error}"));
            None
        }
    };
    let (Some(from), Some(to), Some(probe)) = (from, to, probe) else {
        return bad_input(err, &errors);
    };
    writeln!(out, "{}", verify::explain(cluster, from, to, probe))?;
    Ok(0)
}

/// Prove one isolation against the NetworkPolicies of its namespace found in the input (what
/// the cluster or the repository holds), or, when the input has none, against the policies
/// netfence renders for it. Returns the proof and what it was proven against (`Err` when the
/// policies are invalid: said on `err`).
fn prove(
    isolation: &netfence_core::ValidatedIsolation,
    input: &Input,
    err: &mut dyn Write,
) -> io::Result<Result<(intent::Proof, String), ()>> {
    let namespace = isolation.namespace().unwrap_or("default");
    // A ClusterBaseline's NetworkPolicies (its NetworkPolicy engine) apply beside the
    // namespace's own, which are the input's or, when it has none, the rendered ones.
    let (from_baselines, found): (Vec<NetworkPolicy>, Vec<NetworkPolicy>) = input
        .policies
        .iter()
        .filter(|policy| policy.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .cloned()
        .partition(|policy| {
            policy
                .metadata
                .labels
                .as_ref()
                .is_some_and(|labels| labels.contains_key(BASELINE_LABEL))
        });
    // The foreign policies the resource acknowledges are left out, as the intent audit of
    // `netfence run` leaves them out (condition Isolated).
    let (acknowledged, found): (Vec<NetworkPolicy>, Vec<NetworkPolicy>) =
        found.into_iter().partition(|policy| {
            isolation
                .acknowledged()
                .iter()
                .any(|(name, _)| policy.metadata.name.as_deref() == Some(name.as_str()))
        });
    let (mut policies, mut against) = if found.is_empty() {
        (
            netfence_core::render::network_policies(isolation),
            "the policies netfence renders for it".to_owned(),
        )
    } else {
        let count = found.len();
        (
            found,
            format!("the {count} NetworkPolicies of namespace {namespace} in the input"),
        )
    };
    if !acknowledged.is_empty() {
        let names: Vec<&str> = acknowledged
            .iter()
            .filter_map(|policy| policy.metadata.name.as_deref())
            .collect();
        against = format!(
            "{against} (leaving out {}, acknowledged by spec.acknowledgedPolicies)",
            names.join(", ")
        );
    }
    if !from_baselines.is_empty() {
        against = format!(
            "{against} and the {} NetworkPolicies of ClusterBaselines there",
            from_baselines.len()
        );
        policies.extend(from_baselines);
    }
    let labels = input.namespace_labels();
    let against = if input.cluster_wide.is_empty() {
        against
    } else {
        format!("{against}, with the cluster-wide policies of the input")
    };
    match intent::prove_with(isolation, &policies, &input.cluster_wide, &labels) {
        Ok(proof) => Ok(Ok((proof, against))),
        Err(error) => {
            writeln!(
                err,
                "error: NamespaceIsolation {}: cannot prove its intent: {error}",
                isolation.name()
            )?;
            Ok(Err(()))
        }
    }
}
