//! A comparison as text, as a pull-request comment (Markdown with a Mermaid graph), or as one
//! JSON document.

use std::fmt::Write as _;

use netfence_verify::{intent::diff::ObjectChanges, picture};

use super::{Comparison, Namespace};

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// `1 opened, 2 closed in 1 namespace (3 compared)`, or that nothing changed.
fn summary(comparison: &Comparison) -> String {
    let (opened, closed) = (comparison.opened(), comparison.closed());
    let touched = comparison
        .namespaces
        .iter()
        .filter(|namespace| namespace.connections.changed())
        .count();
    if opened + closed == 0 {
        return format!(
            "no connectivity change in {} compared",
            plural(comparison.compared, "namespace", "namespaces")
        );
    }
    format!(
        "{opened} opened, {closed} closed in {} ({} compared)",
        plural(touched, "namespace", "namespaces"),
        comparison.compared
    )
}

fn changes_line(changes: &ObjectChanges) -> String {
    let mut parts = Vec::new();
    for (what, list) in [
        ("added", &changes.added),
        ("changed", &changes.changed),
        ("removed", &changes.removed),
    ] {
        if !list.is_empty() {
            parts.push(format!("{what} {}", list.join(", ")));
        }
    }
    parts.join("; ")
}

fn isolations_line(namespace: &Namespace) -> String {
    match &namespace.isolations {
        [before, after] if before.is_empty() && !after.is_empty() => {
            format!("NamespaceIsolation {} is new", after.join(", "))
        }
        [before, after] if !before.is_empty() && after.is_empty() => {
            format!("NamespaceIsolation {} is removed", before.join(", "))
        }
        [_, after] if !after.is_empty() => format!("NamespaceIsolation {}", after.join(", ")),
        _ => "no NamespaceIsolation: its NetworkPolicies and cluster-wide policies only".to_owned(),
    }
}

/// The comparison for a terminal.
pub fn text(comparison: &Comparison) -> String {
    let mut out = format!(
        "netfence diff {} -> {}: {}\n",
        comparison.before,
        comparison.after,
        summary(comparison)
    );
    for namespace in &comparison.namespaces {
        let connections = &namespace.connections;
        let _ = writeln!(
            out,
            "\nnamespace {} ({})",
            connections.namespace,
            isolations_line(namespace)
        );
        for (what, edges) in [
            ("opened", &connections.opened),
            ("closed", &connections.closed),
        ] {
            if edges.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  {what}:");
            let width = edges
                .iter()
                .map(|edge| edge.from.len() + edge.to.len() + 4)
                .max()
                .unwrap_or(0);
            for edge in edges {
                let pair = format!("{} -> {}", edge.from, edge.to);
                let by = match (what, edge.policies.is_empty()) {
                    ("opened", true) => "nothing isolates it".to_owned(),
                    (_, true) => "nothing isolated it".to_owned(),
                    ("opened", false) => format!("allowed by {}", edge.policies.join(", ")),
                    (_, false) => format!("was allowed by {}", edge.policies.join(", ")),
                };
                let _ = writeln!(out, "    {pair:<width$}  {}  ({by})", edge.ports);
            }
        }
        if !connections.changed() {
            let _ = writeln!(out, "  no connection opened or closed");
        }
        if !namespace.policies.is_empty() {
            let _ = writeln!(
                out,
                "  NetworkPolicies: {}",
                changes_line(&namespace.policies)
            );
        }
    }
    if !comparison.cluster_wide.is_empty() {
        let _ = writeln!(
            out,
            "\ncluster-wide policies: {}",
            changes_line(&comparison.cluster_wide)
        );
    }
    out
}

/// Text for a Markdown table cell.
/// Text for Markdown, inert: no table cell ends, no tag, link, code span or line starts in it
/// (a policy's or a file's name is whatever the repository holds).
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '|' | '[' | ']' | '*' | '_' | '\\' => {
                out.push('\\');
                out.push(character);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push_str("&#96;"),
            '\n' | '\r' => out.push(' '),
            other => out.push(other),
        }
    }
    out
}

/// The comparison as a pull-request comment.
pub fn markdown(comparison: &Comparison) -> String {
    let mut out = format!(
        "### netfence diff: {}\n\n{} → {}, compared in each namespace's model world (every tier, DNS, shared service and address range, on every port the policies name).\n",
        summary(comparison),
        cell(&comparison.before),
        cell(&comparison.after)
    );
    for namespace in &comparison.namespaces {
        let connections = &namespace.connections;
        let _ = writeln!(
            out,
            "\n#### namespace `{}`\n\n{}\n",
            connections.namespace,
            isolations_line(namespace)
        );
        if connections.changed() {
            out.push_str("| change | from | to | ports | allowed by |\n|---|---|---|---|---|\n");
            for (what, edges) in [
                ("**opened**", &connections.opened),
                ("closed", &connections.closed),
            ] {
                for edge in edges {
                    let by: Vec<String> = edge.policies.iter().map(|policy| cell(policy)).collect();
                    let by = if by.is_empty() {
                        "(nothing isolates it)".to_owned()
                    } else {
                        by.join(", ")
                    };
                    let _ = writeln!(
                        out,
                        "| {what} | {} | {} | {} | {by} |",
                        cell(&edge.from),
                        cell(&edge.to),
                        cell(&edge.ports)
                    );
                }
            }
        } else {
            out.push_str("No connection opened or closed.\n");
        }
        if !namespace.policies.is_empty() {
            let _ = writeln!(
                out,
                "\nNetworkPolicies: {}",
                cell(&changes_line(&namespace.policies))
            );
        }
    }
    if !comparison.cluster_wide.is_empty() {
        let _ = writeln!(
            out,
            "\nCluster-wide policies: {}",
            cell(&changes_line(&comparison.cluster_wide))
        );
    }
    let graphs: Vec<picture::Graph> = comparison
        .namespaces
        .iter()
        .filter(|namespace| namespace.connections.changed())
        .map(|namespace| picture::of_diff(&namespace.connections))
        .collect();
    if !graphs.is_empty() {
        let _ = write!(out, "\n```mermaid\n{}```\n", picture::mermaid(&graphs));
    }
    out
}

/// The comparison as one JSON document.
pub fn json(comparison: &Comparison) -> serde_json::Value {
    let namespaces: Vec<serde_json::Value> = comparison
        .namespaces
        .iter()
        .map(|namespace| {
            let [before, after] = &namespace.isolations;
            serde_json::json!({
                "namespace": namespace.connections.namespace,
                "isolations": {"before": before, "after": after},
                "opened": namespace.connections.opened,
                "closed": namespace.connections.closed,
                "policies": namespace.policies,
            })
        })
        .collect();
    serde_json::json!({
        "before": comparison.before,
        "after": comparison.after,
        "changed": comparison.opened() + comparison.closed() > 0,
        "opened": comparison.opened(),
        "closed": comparison.closed(),
        "compared": comparison.compared,
        "namespaces": namespaces,
        "clusterWide": comparison.cluster_wide,
    })
}
