//! The conformance corpus: every case under `tests/conformance/` and `tests/conformance/cluster-network-policy/`
//! (ClusterNetworkPolicy, from network-policy-api's conformance tests), and under each directory of
//! `NETFENCE_CONFORMANCE_DIRS`, colon-separated, for cases netfence was not developed against)
//! runs through the verify engine, and every cell of its expected reachability table is checked.
//!
//! A case is one multi-document YAML file: the namespaces, the pods, the NetworkPolicies, and one
//! `ExpectedReachability` document holding, per probe, a truth table in the upstream e2e format
//! (rows are sources, columns destinations; `.` connected, `X` blocked, `-` the pod itself,
//! which upstream ignores too).

use std::path::{Path, PathBuf};

use netfence_verify::{
    self as verify, Cluster, Probe, Verdict,
    conformance::{self, Expectation, parse_table},
};

/// A parsed case.
struct Case {
    file: PathBuf,
    cluster: Cluster,
    expected: Expectation,
}

fn case_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut directories = vec![
        root.join("cluster-network-policy"),
        root.join("cluster-wide"),
        root,
    ];
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
    let case = conformance::parse_case(&file.display().to_string(), &text)?;
    let cluster = Cluster::build_with(
        &case.namespaces,
        &case.pods,
        &case.policies,
        &case.cluster_wide,
    )
    .map_err(|error| error.to_string())?;
    Ok(Case {
        file: file.to_path_buf(),
        cluster,
        expected: case.expected,
    })
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
    failures.extend(check_connections(case));
    failures
}

/// Every difference between a case's single-connection checks and the engine (both the
/// reference semantics and the matrix), one line each.
fn check_connections(case: &Case) -> Vec<String> {
    let name = &case.expected.metadata.name;
    let mut failures = Vec::new();
    for check in &case.expected.checks {
        let context = format!(
            "case {name} ({}) {} -> {} {}",
            case.file.display(),
            check.from,
            check.to,
            check.probe
        );
        let probe: Probe = match check.probe.parse() {
            Ok(probe) => probe,
            Err(error) => {
                failures.push(format!("{context}: {error}"));
                continue;
            }
        };
        let (Some(from), Some(to)) = (
            case.cluster.pod_index(&check.from),
            case.cluster.pod_index(&check.to),
        ) else {
            failures.push(format!("{context}: a pod of the check is not in the case"));
            continue;
        };
        let decision = verify::evaluate::decide(&case.cluster, from, to, probe);
        let matrix = verify::reachability(&case.cluster, &[probe]);
        let fast = matrix.verdict(0, from, to);
        if fast != decision.verdict {
            failures.push(format!(
                "{context}: the matrix says {fast:?}, the reference semantics {:?}",
                decision.verdict
            ));
        }
        if (decision.verdict == Verdict::Allowed) != check.connected {
            failures.push(format!(
                "{context}: expected {}, netfence says {} ({})",
                if check.connected {
                    "connected"
                } else {
                    "blocked"
                },
                if check.connected {
                    "blocked"
                } else {
                    "connected"
                },
                decision.reason(
                    &case.cluster,
                    &case.cluster.pods()[from],
                    &case.cluster.pods()[to]
                )
            ));
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
    let mut checks = 0;
    for file in &files {
        match load_case(file) {
            Ok(case) => {
                if case.expected.origin == "upstream" {
                    upstream += 1;
                }
                checks += case.expected.checks.len();
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
    // The ClusterNetworkPolicy corpus (network-policy-api v0.3.0's conformance tests).
    assert!(
        checks >= 380,
        "only {checks} single-connection checks: the ClusterNetworkPolicy corpus is missing"
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

/// If this fails, the runner stopped checking the single-connection checks of the
/// ClusterNetworkPolicy corpus, and a wrong Pass or tier order would go unnoticed.
#[test]
fn a_wrong_check_is_reported_with_the_deciding_rule() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance/cluster-network-policy/admin-tier-priority-field.yaml");
    let mut case = load_case(&file).expect("case loads");
    let first = case
        .expected
        .checks
        .first_mut()
        .expect("the case has checks");
    assert!(!first.connected, "the first check is a denied connection");
    first.connected = true;
    let failures = check(&case);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains("expected connected, netfence says blocked")
            && failures[0].contains(
                "denied by the cluster-wide rule ClusterNetworkPolicy/priority-50-example"
            ),
        "{}",
        failures[0]
    );
}
