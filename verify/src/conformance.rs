//! The format of the conformance corpus (`verify/tests/conformance/`): one case per multi-document
//! YAML file, the world's objects and one `ExpectedReachability` document holding, per probe, a
//! truth table in the upstream e2e format (rows are sources, columns destinations; `.` connected,
//! `X` blocked, `-` the pod itself, which upstream ignores too).
//!
//! ```text
//! (file name, text) --parse_case--> Case { namespaces, pods, policies, expected }
//! table text --parse_table--> (pods listed, (from, to) -> allowed)
//! ```
//!
//! The engine's test (`tests/conformance.rs`) checks the tables against `netfence verify`; the
//! packet suite (`netfence-e2e`'s `packets`) against a real dataplane too.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    core::v1::{Namespace, Pod},
    networking::v1::NetworkPolicy,
};
use netfence_core::manifests;

use crate::cluster_wide::ClusterWidePolicies;
use serde::Deserialize;

/// The expectation document of a case.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expectation {
    /// `conformance.netfence.io/v1`.
    pub api_version: String,
    /// `ExpectedReachability`.
    pub kind: String,
    /// Its name: the case's.
    pub metadata: ExpectationMetadata,
    /// `upstream` (translated from network_policy.go) or `netfence` (our own).
    pub origin: String,
    /// The upstream test's name, or what the case checks.
    pub title: String,
    /// One table per probe.
    pub expected: Vec<ProbeTable>,
    /// Single connections, in the order upstream checks them (the ClusterNetworkPolicy corpus,
    /// translated from network-policy-api's conformance tests, which check pairs, not tables).
    #[serde(default)]
    pub checks: Vec<Check>,
}

/// One connection and what a conformant cluster does with it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// The client, `namespace/pod`.
    pub from: String,
    /// The server, `namespace/pod`.
    pub to: String,
    /// `80/TCP`.
    pub probe: String,
    /// Whether it connects.
    pub connected: bool,
}

/// The expectation's metadata.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationMetadata {
    /// The case's name.
    pub name: String,
}

/// The truth table of one probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeTable {
    /// `80/TCP`.
    pub probe: String,
    /// The table, in the upstream format.
    pub table: String,
}

/// A case's objects and its expectation.
#[derive(Clone, Debug)]
pub struct Case {
    /// The namespaces.
    pub namespaces: Vec<Namespace>,
    /// The pods.
    pub pods: Vec<Pod>,
    /// The NetworkPolicies.
    pub policies: Vec<NetworkPolicy>,
    /// The cluster-wide policies of other kinds (ClusterNetworkPolicy, Calico, Cilium).
    pub cluster_wide: ClusterWidePolicies,
    /// What a conformant cluster does.
    pub expected: Expectation,
}

/// Read one case from its text; `source` names it in errors.
///
/// # Errors
///
/// When it is not YAML, an object does not parse, a kind is unexpected, or the expectation is
/// missing.
pub fn parse_case(source: &str, text: &str) -> Result<Case, String> {
    let documents = manifests::parse(source, text).map_err(|error| error.to_string())?;
    let mut case = Case {
        namespaces: Vec::new(),
        pods: Vec::new(),
        policies: Vec::new(),
        cluster_wide: ClusterWidePolicies::default(),
        expected: Expectation {
            api_version: String::new(),
            kind: String::new(),
            metadata: ExpectationMetadata {
                name: String::new(),
            },
            origin: String::new(),
            title: String::new(),
            expected: Vec::new(),
            checks: Vec::new(),
        },
    };
    let mut expected = false;
    for document in &documents {
        let error = |error: manifests::FieldError| {
            format!("{} {}: {error}", document.kind(), document.name())
        };
        match document.kind() {
            "Namespace" => case.namespaces.push(document.typed().map_err(error)?),
            "Pod" => case.pods.push(document.typed().map_err(error)?),
            "NetworkPolicy" => case.policies.push(document.typed().map_err(error)?),
            "ClusterNetworkPolicy" => case
                .cluster_wide
                .cluster_network_policies
                .push(document.typed().map_err(error)?),
            "GlobalNetworkPolicy" => case
                .cluster_wide
                .calico_policies
                .push(document.typed().map_err(error)?),
            "Tier" => case
                .cluster_wide
                .calico_tiers
                .push(document.typed().map_err(error)?),
            "CiliumClusterwideNetworkPolicy" => case
                .cluster_wide
                .cilium_policies
                .push(document.typed().map_err(error)?),
            "ExpectedReachability" => {
                case.expected = document.typed().map_err(error)?;
                expected = true;
            }
            other => return Err(format!("unexpected kind {other}")),
        }
    }
    if !expected {
        return Err("no ExpectedReachability document".to_owned());
    }
    Ok(case)
}

/// The pods a table lists, and (from, to) -> allowed.
pub type Table = (Vec<String>, BTreeMap<(String, String), bool>);

/// Parse a truth table.
///
/// # Errors
///
/// When a row is short, a cell is not `.`, `X` or `-` on the diagonal, or the rows and columns
/// differ.
pub fn parse_table(table: &str) -> Result<Table, String> {
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
