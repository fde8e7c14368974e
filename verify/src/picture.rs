//! Pictures of a namespace's connections: the tier graph of a proof (what the policies allow) or
//! of a diff (what a change opens and closes), as Mermaid, Graphviz DOT, or a self-contained SVG.
//!
//! ```text
//! Proof ----------of_proof--> Graph { nodes: tiers, DNS, shared services, CIDRs; edges: ports } --mermaid | dot | svg--> text
//! NamespaceDiff --of_diff---> Graph (edges opened or closed)
//! ```
//!
//! What is blocked is absent: an edge is drawn only for a connection allowed (or changed).
//! Pure: values in, text out; the SVG's layout is computed here (columns by the longest path
//! from the namespace's entry points), so no renderer and no script is needed to show it.

use std::{collections::BTreeMap, fmt::Write as _};

use super::intent::{Proof, Role, World, compact, diff::NamespaceDiff};

/// What a node stands for, and how it is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A tier of the namespace.
    Tier,
    /// The namespace's pods in no tier.
    NoTier,
    /// The cluster DNS.
    Dns,
    /// A shared service's peer.
    SharedService,
    /// An address range outside the cluster.
    External,
    /// Every other namespace.
    Outside,
    /// Anything else (a peer's other pods, pods other policies name).
    Other,
}

impl Kind {
    /// The CSS class (and DOT, Mermaid style) name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tier => "tier",
            Kind::NoTier => "notier",
            Kind::Dns => "dns",
            Kind::SharedService => "shared",
            Kind::External => "external",
            Kind::Outside => "outside",
            Kind::Other => "other",
        }
    }
}

/// One node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The first line: a tier's name, `DNS`, a shared service's name, a CIDR.
    pub label: String,
    /// The second line, if any: the peer's namespace, the address that stands for a range.
    pub detail: Option<String>,
    /// Whether the node is in the namespace (drawn inside its box).
    pub inside: bool,
    /// What it stands for.
    pub kind: Kind,
    /// How the proof and `--explain` name the endpoint.
    pub endpoint: String,
}

/// What an edge says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Allowed, as declared (a proof's graph).
    Allowed,
    /// Allowed on some port the spec does not declare (a proof that fails).
    Undeclared,
    /// Allowed after a change, not before.
    Opened,
    /// Allowed before a change, not after.
    Closed,
}

impl Change {
    /// The CSS class name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Allowed => "allowed",
            Change::Undeclared => "undeclared",
            Change::Opened => "opened",
            Change::Closed => "closed",
        }
    }
}

/// One edge: a connection allowed (or changed) on some ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Index of the source in [`Graph::nodes`].
    pub from: usize,
    /// Index of the destination.
    pub to: usize,
    /// The ports, compact: `8080/TCP`, `53/TCP,UDP`, `all`.
    pub ports: String,
    /// What the edge says.
    pub change: Change,
}

impl Edge {
    /// What the edge is labelled with: its ports, and what changed (`opened: 8080/TCP`).
    #[must_use]
    pub fn label(&self) -> String {
        match self.change {
            Change::Allowed => self.ports.clone(),
            Change::Undeclared => format!("not declared: {}", self.ports),
            Change::Opened => format!("opened: {}", self.ports),
            Change::Closed => format!("closed: {}", self.ports),
        }
    }
}

/// The graph of one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    /// The namespace.
    pub namespace: String,
    /// Nodes: the namespace's tiers first, then what is outside, in the world's order.
    pub nodes: Vec<Node>,
    /// Edges, sorted by source and destination.
    pub edges: Vec<Edge>,
}

fn node(world: &World, index: usize) -> Node {
    let endpoint = &world.endpoints[index];
    let inside = !endpoint.pod.external && endpoint.pod.namespace == world.namespace;
    let peer_namespace = Some(endpoint.pod.namespace.clone());
    let (kind, label, detail) = match &endpoint.role {
        Role::Tier => (Kind::Tier, endpoint.label.clone(), None),
        Role::NoTier => (Kind::NoTier, endpoint.label.clone(), None),
        Role::Dns => (Kind::Dns, "DNS".to_owned(), peer_namespace),
        Role::SharedService(name) => (Kind::SharedService, name.clone(), peer_namespace),
        // A range may stand for several addresses (inside, past an except): each shows its own.
        Role::External(place) => (
            Kind::External,
            place.clone(),
            endpoint.pod.ips.first().map(ToString::to_string),
        ),
        Role::Outside => (Kind::Outside, "other namespaces".to_owned(), None),
        Role::Other => (Kind::Other, endpoint.label.clone(), None),
    };
    Node {
        label,
        detail,
        inside,
        kind,
        endpoint: endpoint.label.clone(),
    }
}

/// The graph of `world` with `edges` (pairs of endpoint indices, ports, change): the endpoints
/// an edge touches, and with `every_inside` every endpoint of the namespace.
fn of_world(world: &World, edges: &[(usize, usize, String, Change)], every_inside: bool) -> Graph {
    let mut index: BTreeMap<usize, usize> = BTreeMap::new();
    let mut nodes = Vec::new();
    let touched = |endpoint: usize| {
        edges
            .iter()
            .any(|(from, to, _, _)| *from == endpoint || *to == endpoint)
    };
    let inside = |endpoint: usize| {
        let pod = &world.endpoints[endpoint].pod;
        !pod.external && pod.namespace == world.namespace
    };
    for first in [true, false] {
        for endpoint in 0..world.endpoints.len() {
            if inside(endpoint) == first && ((first && every_inside) || touched(endpoint)) {
                index.insert(endpoint, nodes.len());
                nodes.push(node(world, endpoint));
            }
        }
    }
    let mut drawn: Vec<Edge> = edges
        .iter()
        .filter_map(|(from, to, ports, change)| {
            Some(Edge {
                from: *index.get(from)?,
                to: *index.get(to)?,
                ports: ports.clone(),
                change: *change,
            })
        })
        .collect();
    drawn.sort_by_key(|edge| (edge.from, edge.to, edge.change.as_str()));
    Graph {
        namespace: world.namespace.clone(),
        nodes,
        edges: drawn,
    }
}

/// The graph of what `proof`'s policies allow; an edge with a port the spec does not declare is
/// marked [`Change::Undeclared`].
#[must_use]
pub fn of_proof(proof: &Proof) -> Graph {
    let edges: Vec<(usize, usize, String, Change)> = proof
        .allowed
        .iter()
        .map(|(&(from, to), probes)| {
            let (source, destination) = (
                &proof.world.endpoints[from].label,
                &proof.world.endpoints[to].label,
            );
            let undeclared = proof.differences.iter().any(|difference| {
                !difference.declared && &difference.from == source && &difference.to == destination
            });
            let change = if undeclared {
                Change::Undeclared
            } else {
                Change::Allowed
            };
            (from, to, compact(probes, &proof.world), change)
        })
        .collect();
    of_world(&proof.world, &edges, true)
}

/// The graph of what a change opens and closes in one namespace: the edges that changed.
#[must_use]
pub fn of_diff(diff: &NamespaceDiff) -> Graph {
    let edges: Vec<(usize, usize, String, Change)> = diff
        .opened
        .iter()
        .map(|edge| (edge, Change::Opened))
        .chain(diff.closed.iter().map(|edge| (edge, Change::Closed)))
        .map(|(edge, change)| (edge.source, edge.destination, edge.ports.clone(), change))
        .collect();
    of_world(&diff.world, &edges, false)
}

/// The nodes of `graph` (with their indices) inside its namespace, or outside it.
fn placed(graph: &Graph, inside: bool) -> impl Iterator<Item = (usize, &Node)> {
    graph
        .nodes
        .iter()
        .enumerate()
        .filter(move |(_, node)| node.inside == inside)
}

/// Text for a Mermaid quoted label.
fn mermaid_text(text: &str) -> String {
    text.replace('#', "#35;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
        .replace(['\n', '\r'], " ")
}

/// The graphs as one Mermaid flowchart: a subgraph per namespace.
#[must_use]
pub fn mermaid(graphs: &[Graph]) -> String {
    let mut out = String::from("flowchart LR\n");
    let mut links = Vec::new();
    for (number, graph) in graphs.iter().enumerate() {
        let id = |node: usize| format!("g{number}n{node}");
        let shape = |node: &Node| {
            let text = match &node.detail {
                Some(detail) => {
                    format!("{}<br/>{}", mermaid_text(&node.label), mermaid_text(detail))
                }
                None => mermaid_text(&node.label),
            };
            match node.kind {
                Kind::Tier | Kind::NoTier | Kind::Other => format!("[\"{text}\"]"),
                Kind::Dns | Kind::SharedService => format!("([\"{text}\"])"),
                Kind::External => format!("{{{{\"{text}\"}}}}"),
                Kind::Outside => format!("[/\"{text}\"/]"),
            }
        };
        let _ = writeln!(
            out,
            "  subgraph g{number}[\"namespace {}\"]",
            mermaid_text(&graph.namespace)
        );
        for (index, node) in placed(graph, true) {
            let _ = writeln!(
                out,
                "    {}{}:::{}",
                id(index),
                shape(node),
                node.kind.as_str()
            );
        }
        let _ = writeln!(out, "  end");
        for (index, node) in placed(graph, false) {
            let _ = writeln!(
                out,
                "  {}{}:::{}",
                id(index),
                shape(node),
                node.kind.as_str()
            );
        }
        for edge in &graph.edges {
            let arrow = match edge.change {
                Change::Allowed | Change::Undeclared => "-->",
                Change::Opened => "==>",
                Change::Closed => "-.->",
            };
            let label = edge.label();
            let _ = writeln!(
                out,
                "  {} {arrow}|\"{}\"| {}",
                id(edge.from),
                mermaid_text(&label),
                id(edge.to)
            );
            links.push(edge.change);
        }
    }
    for (index, change) in links.iter().enumerate() {
        match change {
            Change::Allowed => {}
            Change::Opened => {
                let _ = writeln!(out, "  linkStyle {index} stroke:#1a7f37,stroke-width:3px");
            }
            Change::Undeclared => {
                let _ = writeln!(out, "  linkStyle {index} stroke:#cf222e,stroke-width:3px");
            }
            Change::Closed => {
                let _ = writeln!(out, "  linkStyle {index} stroke:#cf222e,stroke-width:2px");
            }
        }
    }
    out.push_str(
        "  classDef tier fill:#ddf4ff,stroke:#0969da\n  classDef notier fill:#f6f8fa,stroke:#8c959f,stroke-dasharray:4\n  classDef dns fill:#fff8c5,stroke:#9a6700\n  classDef shared fill:#fbefff,stroke:#8250df\n  classDef external fill:#fff1e5,stroke:#bc4c00\n  classDef outside fill:#f6f8fa,stroke:#57606a\n  classDef other fill:#f6f8fa,stroke:#8c959f\n",
    );
    out
}

/// Text for a DOT quoted string.
fn dot_text(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(['\n', '\r'], " ")
}

/// The graphs as one Graphviz digraph: a cluster per namespace.
#[must_use]
pub fn dot(graphs: &[Graph]) -> String {
    let mut out = String::from(
        "digraph netfence {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
    );
    for (number, graph) in graphs.iter().enumerate() {
        let id = |node: usize| format!("\"g{number}n{node}\"");
        let declare = |node: &Node, index: usize| {
            let label = match &node.detail {
                Some(detail) => format!("{}\\n{}", dot_text(&node.label), dot_text(detail)),
                None => dot_text(&node.label),
            };
            let shape = match node.kind {
                Kind::Tier => "box, style=\"rounded,filled\", fillcolor=\"#ddf4ff\"",
                Kind::NoTier | Kind::Other => "box, style=\"rounded,dashed\"",
                Kind::Dns => "ellipse, style=filled, fillcolor=\"#fff8c5\"",
                Kind::SharedService => "ellipse, style=filled, fillcolor=\"#fbefff\"",
                Kind::External => "hexagon, style=filled, fillcolor=\"#fff1e5\"",
                Kind::Outside => "parallelogram",
            };
            format!("{} [label=\"{label}\", shape={shape}];", id(index))
        };
        let _ = writeln!(out, "  subgraph cluster_{number} {{");
        let _ = writeln!(
            out,
            "    label=\"namespace {}\";",
            dot_text(&graph.namespace)
        );
        for (index, node) in placed(graph, true) {
            let _ = writeln!(out, "    {}", declare(node, index));
        }
        let _ = writeln!(out, "  }}");
        for (index, node) in placed(graph, false) {
            let _ = writeln!(out, "  {}", declare(node, index));
        }
        for edge in &graph.edges {
            let style = match edge.change {
                Change::Allowed => "",
                Change::Undeclared => ", color=\"#cf222e\", penwidth=2",
                Change::Opened => ", color=\"#1a7f37\", penwidth=2",
                Change::Closed => ", color=\"#cf222e\", style=dashed",
            };
            let label = edge.label();
            let _ = writeln!(
                out,
                "  {} -> {} [label=\"{}\"{style}];",
                id(edge.from),
                id(edge.to),
                dot_text(&label)
            );
        }
    }
    out.push_str("}\n");
    out
}

pub mod html;
pub mod svg;

#[cfg(test)]
mod tests;
