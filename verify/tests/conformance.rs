//! The conformance corpus: every case under `tests/conformance/` (and under each directory of
//! `NETFENCE_CONFORMANCE_DIRS`, colon-separated, for cases netfence was not developed against)
//! runs through the verify engine, and every cell of its expected reachability table is checked.
//!
//! A case is one multi-document YAML file: the namespaces, the pods, the NetworkPolicies, and one
//! `ExpectedReachability` document holding, per probe, a truth table in the upstream e2e format
//! (rows are sources, columns destinations; `.` connected, `X` blocked, `-` the pod itself,
//! which upstream ignores too).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use k8s_openapi::api::{
    core::v1::{Namespace, Pod},
    networking::v1::NetworkPolicy,
};
use netfence_core::manifests::{self, Document};
use netfence_verify::{self as verify, Cluster, Probe, Verdict};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expectation {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Metadata,
    /// `upstream` (translated from network_policy.go) or `netfence` (our own).
    origin: String,
    /// The upstream test's name, or what the case checks.
    title: String,
    expected: Vec<ProbeTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeTable {
    probe: String,
    table: String,
}

/// A parsed case.
struct Case {
    file: PathBuf,
    cluster: Cluster,
    expected: Expectation,
}

fn case_files() -> Vec<PathBuf> {
    let mut directories = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")];
    if let Ok(extra) = std::env::var("NETFENCE_CONFORMANCE_DIRS") {
        directories.extend(
            extra
                .split(':')
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from),
        );
    }
    let mut files = Vec::new();
    for directory in directories {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&directory)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", directory.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "yaml")
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

fn load_case(file: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(file).map_err(|error| error.to_string())?;
    let documents =
        manifests::parse(&file.display().to_string(), &text).map_err(|error| error.to_string())?;
    let mut namespaces = Vec::new();
    let mut pods = Vec::new();
    let mut policies = Vec::new();
    let mut expected = None;
    let typed = |document: &Document| -> Result<_, String> {
        Ok(match document.kind() {
            "Namespace" => (Some(document.typed::<Namespace>()), None, None),
            "Pod" => (None, Some(document.typed::<Pod>()), None),
            "NetworkPolicy" => (None, None, Some(document.typed::<NetworkPolicy>())),
            _ => (None, None, None),
        })
    };
    for document in &documents {
        let error = |error: manifests::FieldError| {
            format!("{} {}: {error}", document.kind(), document.name())
        };
        match typed(document)? {
            (Some(namespace), _, _) => namespaces.push(namespace.map_err(error)?),
            (_, Some(pod), _) => pods.push(pod.map_err(error)?),
            (_, _, Some(policy)) => policies.push(policy.map_err(error)?),
            _ if document.kind() == "ExpectedReachability" => {
                expected = Some(document.typed::<Expectation>().map_err(error)?);
            }
            _ => return Err(format!("unexpected kind {}", document.kind())),
        }
    }
    let expected = expected.ok_or("no ExpectedReachability document")?;
    let cluster =
        Cluster::build(&namespaces, &pods, &policies).map_err(|error| error.to_string())?;
    Ok(Case {
        file: file.to_path_buf(),
        cluster,
        expected,
    })
}

/// The pods a table lists, and (from, to) -> allowed.
type Table = (Vec<String>, BTreeMap<(String, String), bool>);

/// Parse a truth table.
fn parse_table(table: &str) -> Result<Table, String> {
    let mut lines = table.lines().filter(|line| !line.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or("empty table")?
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    let mut cells = BTreeMap::new();
    let mut rows = Vec::new();
    for line in lines {
        let mut tokens = line.split_whitespace();
        let from = tokens.next().ok_or("empty row")?.to_owned();
        let values: Vec<&str> = tokens.collect();
        if values.len() != header.len() {
            return Err(format!(
                "row {from} has {} cells for {} columns",
                values.len(),
                header.len()
            ));
        }
        for (to, value) in header.iter().zip(values) {
            match value {
                "." => cells.insert((from.clone(), to.clone()), true),
                "X" => cells.insert((from.clone(), to.clone()), false),
                "-" if from == *to => None,
                other => {
                    return Err(format!(
                        "cell {from} -> {to}: {other:?} is not '.', 'X' or '-' (diagonal)"
                    ));
                }
            };
        }
        rows.push(from);
    }
    if rows != header {
        return Err("rows and columns must list the same pods in the same order".to_owned());
    }
    Ok((header, cells))
}

/// Every difference between a case's expected tables and the engine, one line each.
fn check(case: &Case) -> Vec<String> {
    let name = &case.expected.metadata.name;
    let mut failures = Vec::new();
    let pods: Vec<String> = case
        .cluster
        .pods()
        .iter()
        .map(verify::model::PodInfo::key)
        .collect();
    for table in &case.expected.expected {
        let context = format!("case {name} ({}) {}", case.file.display(), table.probe);
        let probe: Probe = match table.probe.parse() {
            Ok(probe) => probe,
            Err(error) => {
                failures.push(format!("{context}: {error}"));
                continue;
            }
        };
        let (listed, cells) = match parse_table(&table.table) {
            Ok(parsed) => parsed,
            Err(error) => {
                failures.push(format!("{context}: bad table: {error}"));
                continue;
            }
        };
        if listed != pods {
            failures.push(format!(
                "{context}: the table lists {listed:?} but the case has pods {pods:?}"
            ));
            continue;
        }
        let matrix = verify::reachability(&case.cluster, &[probe]);
        for ((from, to), allowed) in &cells {
            let from_index = case.cluster.pod_index(from).expect("listed pod");
            let to_index = case.cluster.pod_index(to).expect("listed pod");
            let verdict = matrix.verdict(0, from_index, to_index);
            if (verdict == Verdict::Allowed) != *allowed {
                let decision = matrix.decision(0, from_index, to_index);
                let symbol = |allowed: bool| if allowed { "." } else { "X" };
                failures.push(format!(
                    "{context}: {from} -> {to}: expected {}, netfence says {} ({})",
                    symbol(*allowed),
                    symbol(verdict == Verdict::Allowed),
                    decision.reason(
                        &case.cluster,
                        &case.cluster.pods()[from_index],
                        &case.cluster.pods()[to_index]
                    )
                ));
            }
        }
    }
    failures
}

/// If this fails, netfence's verdicts disagree with the reachability tables of Kubernetes' own
/// network policy e2e tests (or of our own cases): `netfence verify` would tell users that a
/// connection is open when a conformant cluster blocks it, or the reverse. The message names
/// each case, probe and differing cell, with netfence's reason.
#[test]
fn every_case_matches_its_expected_tables() {
    let files = case_files();
    assert!(
        files.len() >= 25,
        "the corpus holds only {} cases",
        files.len()
    );
    let mut failures = Vec::new();
    let mut upstream = 0;
    for file in &files {
        match load_case(file) {
            Ok(case) => {
                if case.expected.origin == "upstream" {
                    upstream += 1;
                }
                assert!(
                    matches!(case.expected.origin.as_str(), "upstream" | "netfence"),
                    "{}: origin must be upstream or netfence",
                    file.display()
                );
                assert!(
                    !case.expected.title.is_empty(),
                    "{}: title is empty",
                    file.display()
                );
                failures.extend(check(&case));
            }
            Err(error) => failures.push(format!("{}: cannot load: {error}", file.display())),
        }
    }
    assert!(
        upstream >= 25,
        "only {upstream} cases are translated from upstream"
    );
    assert!(
        failures.is_empty(),
        "{} difference(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// If this fails, the runner itself stopped catching differences (a table it cannot read, or a
/// comparison that always passes), and the corpus above would prove nothing.
#[test]
fn a_wrong_expectation_is_reported_with_its_cell() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/default-deny-ingress.yaml");
    let mut case = load_case(&file).expect("case loads");
    // Claim that y/a reaches x/a, which the default deny blocks.
    let table = &mut case.expected.expected[0].table;
    let mut lines: Vec<String> = table.lines().map(str::to_owned).collect();
    let row = lines
        .iter()
        .position(|line| line.starts_with("y/a"))
        .expect("row y/a");
    lines[row] = lines[row].replacen('X', ".", 1);
    *table = lines.join("\n");
    let failures = check(&case);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains("80/TCP: y/a -> x/a: expected ., netfence says X (blocked: ingress isolated by x/deny-ingress and no rule allows it)"),
        "{}",
        failures[0]
    );
}
