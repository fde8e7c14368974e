//! `netfence verify -o html`: one self-contained page. Per NamespaceIsolation: the tier graph
//! (SVG), the matrix of the namespace, the intent proof, and for each edge the policies and
//! rules that allow it (the `--explain` text of each port). No script, no network fetch: the
//! page's Content-Security-Policy forbids both, so a browser proves it.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{
    super::intent::{Proof, compact, report},
    of_proof,
    svg::{escape, svg},
};

const STYLE: &str = r"
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px; color: #1f2328; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 15px; }
.holds { color: #1a7f37; } .fails { color: #cf222e; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; font-size: 12px; }
table.matrix { border-collapse: collapse; font-size: 12px; }
table.matrix th, table.matrix td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; }
table.matrix td.none { color: #8c959f; }
svg.graph { max-width: 100%; height: auto; }
svg.graph text { font: 12px system-ui, sans-serif; text-anchor: middle; fill: #1f2328; }
svg.graph text.detail { fill: #57606a; font-size: 11px; }
svg.graph g.namespace rect { fill: #f6f8fa; stroke: #d0d7de; }
svg.graph g.namespace text { text-anchor: start; font-weight: 600; fill: #57606a; }
svg.graph g.node rect { fill: #ffffff; stroke: #57606a; stroke-width: 1.2; }
svg.graph g.node.tier rect { fill: #ddf4ff; stroke: #0969da; }
svg.graph g.node.notier rect, svg.graph g.node.other rect { stroke-dasharray: 4 3; }
svg.graph g.node.dns rect { fill: #fff8c5; stroke: #9a6700; }
svg.graph g.node.shared rect { fill: #fbefff; stroke: #8250df; }
svg.graph g.node.external rect { fill: #fff1e5; stroke: #bc4c00; }
svg.graph g.edge path { fill: none; stroke: #57606a; stroke-width: 1.4; stroke-linejoin: round; }
svg.graph g.edge.opened path { stroke: #1a7f37; stroke-width: 2.5; }
svg.graph g.edge.closed path { stroke: #cf222e; stroke-dasharray: 5 4; }
svg.graph g.edge.undeclared path { stroke: #cf222e; stroke-width: 2.5; }
svg.graph g.edge.undeclared text { fill: #cf222e; }
svg.graph g.edge rect { fill: #ffffff; opacity: 0.9; }
svg.graph g.edge text { font-size: 11px; fill: #0550ae; }
svg.graph a:hover path { stroke: #0969da; stroke-width: 2.5; }
svg.graph marker path { fill: #57606a; }
details { margin: 4px 0; } details:target { outline: 2px solid #0969da; }
summary { cursor: pointer; }
";

/// One NamespaceIsolation's part of the page.
pub struct Section<'a> {
    /// The proof.
    pub proof: &'a Proof,
    /// What it was proven against (`the policies netfence renders for it`).
    pub against: &'a str,
}

/// The matrix of the namespace's endpoints as an HTML table: rows from, columns to, cells the
/// allowed ports.
fn matrix(proof: &Proof) -> String {
    let world = &proof.world;
    let inside: Vec<usize> = (0..world.endpoints.len())
        .filter(|&index| {
            let pod = &world.endpoints[index].pod;
            !pod.external && pod.namespace == world.namespace
        })
        .collect();
    let mut out = String::from("<table class=\"matrix\"><tr><th>from \\ to</th>");
    for &to in &inside {
        let _ = write!(out, "<th>{}</th>", escape(&world.endpoints[to].label));
    }
    out.push_str("</tr>");
    for &from in &inside {
        let _ = write!(out, "<tr><th>{}</th>", escape(&world.endpoints[from].label));
        for &to in &inside {
            match proof.allowed.get(&(from, to)) {
                _ if from == to => out.push_str("<td class=\"none\">-</td>"),
                Some(probes) => {
                    let _ = write!(out, "<td>{}</td>", escape(&compact(probes, world)));
                }
                None => out.push_str("<td class=\"none\">blocked</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// Why each edge is allowed: per edge, the `--explain` text of its ports, ports with the same
/// explanation (apart from the port itself) told once.
fn explanations(proof: &Proof, prefix: &str) -> String {
    let graph = of_proof(proof);
    let world = &proof.world;
    let mut out = String::new();
    for (number, edge) in graph.edges.iter().enumerate() {
        let from = world
            .endpoints
            .iter()
            .position(|endpoint| endpoint.label == graph.nodes[edge.from].endpoint);
        let to = world
            .endpoints
            .iter()
            .position(|endpoint| endpoint.label == graph.nodes[edge.to].endpoint);
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        let probes = proof.allowed.get(&(from, to)).cloned().unwrap_or_default();
        // Explanation bodies (without the first line, which names the probe) -> their probes.
        let mut groups: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for probe in probes {
            let text = proof.explain(from, to, probe).to_string();
            let body = text
                .split_once('\n')
                .map_or(String::new(), |(_, body)| body.to_owned());
            groups.entry(body).or_default().push(probe);
        }
        let _ = write!(
            out,
            "<details id=\"{prefix}edge-{number}\"><summary>{} &rarr; {}: {}</summary>",
            escape(&world.endpoints[from].label),
            escape(&world.endpoints[to].label),
            escape(&edge.ports)
        );
        for (body, probes) in &groups {
            let _ = write!(
                out,
                "<p>on {}:</p><pre>{}</pre>",
                escape(&compact(probes, world)),
                escape(body.trim())
            );
        }
        out.push_str("</details>");
    }
    out
}

/// The page for `sections`; `table`, when the input has pods, is `netfence verify`'s matrix of
/// them.
#[must_use]
pub fn page(sections: &[Section<'_>], table: Option<&str>) -> String {
    let mut body = String::new();
    let holding = sections
        .iter()
        .filter(|section| section.proof.holds())
        .count();
    let _ = write!(
        body,
        "<h1>netfence verify</h1><p>{holding} of {} NamespaceIsolations hold: their policies allow exactly the declared flows, DNS and shared services.</p>",
        sections.len()
    );
    for (number, section) in sections.iter().enumerate() {
        let proof = section.proof;
        let prefix = format!("s{number}-");
        let (class, verdict) = if proof.holds() {
            ("holds", "intent holds")
        } else {
            ("fails", "intent does not hold")
        };
        let _ = write!(
            body,
            "<section class=\"isolation\" id=\"isolation-{number}\" data-isolation=\"{isolation}\"><h2>NamespaceIsolation {isolation}: <span class=\"{class}\">{verdict}</span></h2><p>Proven against {}. Edges are the connections the policies allow (what is blocked is absent; red: allowed but not declared); select one to see why it is allowed.</p>{}<h3>Inside namespace {}</h3>{}<h3>Why each edge is allowed</h3>{}<h3>The intent proof</h3><pre>{}</pre></section>",
            escape(section.against),
            svg(&of_proof(proof), &prefix),
            escape(&proof.world.namespace),
            matrix(proof),
            explanations(proof, &prefix),
            escape(&report(proof)),
            isolation = escape(&proof.isolation),
        );
    }
    if let Some(table) = table {
        let _ = write!(
            body,
            "<section class=\"pods\"><h2>Every pod of the input</h2><pre>{}</pre></section>",
            escape(table)
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>netfence verify</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
}
