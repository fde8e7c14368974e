//! The matrix as text: one table per probe, rows are sources and columns destinations.
//!
//! ```text
//! Reachability --table--> "80/TCP: 70 of 72 connections allowed\n      x/a x/b ...\nx/a     -   . ..."
//! ```
//!
//! `.` allowed, `X` blocked (the symbols of the upstream e2e truth tables), `H` not governed by
//! NetworkPolicy (`hostNetwork`), `-` a pod and itself. Short pod names head the columns; when a
//! name is longer than [`MAX_HEADER`], columns are numbered and rows carry the number.

use std::fmt::Write as _;

use super::{evaluate::Verdict, reachability::Reachability};

/// The longest `ns/pod` printed as a column header; longer names switch to numbered columns.
pub const MAX_HEADER: usize = 12;

/// The legend printed above the tables.
pub const LEGEND: &str =
    "rows: from, columns: to; . allowed, X blocked, H not governed (hostNetwork), - same pod";

/// The symbol of a verdict in a table.
#[must_use]
pub fn symbol(verdict: Verdict) -> char {
    match verdict {
        Verdict::Allowed => '.',
        Verdict::Blocked => 'X',
        Verdict::NotGoverned => 'H',
    }
}

/// Every probe's table, separated by blank lines, after the legend.
#[must_use]
pub fn table(reachability: &Reachability<'_>) -> String {
    let pods = reachability.cluster().pods();
    let keys: Vec<String> = pods.iter().map(super::model::PodInfo::key).collect();
    let numbered = keys.iter().any(|key| key.len() > MAX_HEADER);
    let headers: Vec<String> = if numbered {
        (1..=keys.len()).map(|number| number.to_string()).collect()
    } else {
        keys.clone()
    };
    let row_labels: Vec<String> = if numbered {
        let width = keys.len().to_string().len();
        keys.iter()
            .enumerate()
            .map(|(index, key)| format!("{:>width$} {key}", index + 1))
            .collect()
    } else {
        keys.clone()
    };
    let label_width = row_labels.iter().map(String::len).max().unwrap_or(0);
    let column_width = headers.iter().map(String::len).max().unwrap_or(1);
    let total = pods.len() * pods.len().saturating_sub(1);

    let mut out = String::new();
    let _ = writeln!(out, "{LEGEND}");
    for (probe_index, probe) in reachability.probes().iter().enumerate() {
        let allowed = reachability.allowed_count(probe_index);
        let _ = writeln!(out);
        let _ = writeln!(out, "{probe}: {allowed} of {total} connections allowed");
        let _ = write!(out, "{:label_width$}", "");
        for header in &headers {
            let _ = write!(out, " {header:>column_width$}");
        }
        let _ = writeln!(out);
        for (from, label) in row_labels.iter().enumerate() {
            let _ = write!(out, "{label:<label_width$}");
            for to in 0..pods.len() {
                let cell = if from == to {
                    '-'
                } else {
                    symbol(reachability.verdict(probe_index, from, to))
                };
                let _ = write!(out, " {cell:>column_width$}");
            }
            let _ = writeln!(out);
        }
    }
    out
}
