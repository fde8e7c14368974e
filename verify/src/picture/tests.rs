//! The pictures of a real spec: what is allowed is drawn, what is blocked is absent, and each
//! format says it in its own syntax.

use netfence_core::render;
use serde_json::json;

use super::{
    super::intent::{prove, tests::shop},
    *,
};

fn graph() -> Graph {
    let isolation = shop();
    let proof = prove(&isolation, &render::network_policies(&isolation)).expect("valid");
    of_proof(&proof)
}

fn edges(graph: &Graph) -> Vec<String> {
    graph
        .edges
        .iter()
        .map(|edge| {
            format!(
                "{} -> {}: {}",
                graph.nodes[edge.from].label, graph.nodes[edge.to].label, edge.ports
            )
        })
        .collect()
}

/// If this fails, the picture shows a connection the policies block, misses one they allow, or
/// names the DNS, a shared service or an address range so nobody recognises it.
#[test]
fn the_graph_is_what_the_policies_allow() {
    let graph = graph();
    let labels: Vec<(&str, Kind, bool)> = graph
        .nodes
        .iter()
        .map(|node| (node.label.as_str(), node.kind, node.inside))
        .collect();
    assert_eq!(
        labels,
        [
            ("frontend", Kind::Tier, true),
            ("backend", Kind::Tier, true),
            ("database", Kind::Tier, true),
            ("(no tier)", Kind::NoTier, true),
            ("DNS", Kind::Dns, false),
            ("ingress", Kind::SharedService, false),
            ("metrics", Kind::SharedService, false),
            ("203.0.113.0/24", Kind::External, false),
        ],
        "the address in the except (203.0.113.128/25) is blocked: absent"
    );
    let external = graph
        .nodes
        .iter()
        .find(|node| node.kind == Kind::External)
        .expect("the range");
    assert_eq!(
        external.detail.as_deref(),
        Some("203.0.113.1"),
        "the address that stands for the range"
    );
    assert_eq!(
        edges(&graph),
        [
            "frontend -> backend: 8080/TCP",
            "frontend -> DNS: 53/TCP,UDP",
            "backend -> database: 5432/TCP",
            "backend -> DNS: 53/TCP,UDP",
            "backend -> 203.0.113.0/24: 443/TCP",
            "database -> DNS: 53/TCP,UDP",
            "(no tier) -> DNS: 53/TCP,UDP",
            "ingress -> frontend: 80/TCP 443/TCP",
            "metrics -> backend: metrics/TCP",
        ]
    );
}

/// If this fails, the Mermaid or DOT text draws other edges than the graph, or breaks its syntax
/// on a quote.
#[test]
fn mermaid_and_dot_draw_the_same_edges() {
    let mut graph = graph();
    let text = mermaid(std::slice::from_ref(&graph));
    assert!(text.starts_with("flowchart LR\n"), "{text}");
    assert!(
        text.contains("g0n0 -->|\"8080/TCP\"| g0n1"),
        "frontend -> backend: {text}"
    );
    assert!(
        text.contains("g0n4([\"DNS<br/>kube-system\"]):::dns"),
        "{text}"
    );
    assert_eq!(text.matches("-->").count(), graph.edges.len(), "{text}");
    let text = dot(std::slice::from_ref(&graph));
    assert!(text.starts_with("digraph netfence {"), "{text}");
    assert!(
        text.contains("\"g0n0\" -> \"g0n1\" [label=\"8080/TCP\"];"),
        "{text}"
    );
    assert_eq!(text.matches(" -> ").count(), graph.edges.len(), "{text}");
    assert_eq!(text.matches('{').count(), text.matches('}').count());

    graph.nodes[0].label = "we\"b <1>".to_owned();
    assert!(mermaid(std::slice::from_ref(&graph)).contains("[\"we#quot;b #lt;1#gt;\"]"));
    assert!(dot(std::slice::from_ref(&graph)).contains("label=\"we\\\"b <1>\""));
}

/// If this fails, the SVG lacks a node or edge a reader (or the browser test) looks for, or
/// lets a label break out of its attribute.
#[test]
fn the_svg_has_every_node_and_edge() {
    let mut graph = graph();
    graph.nodes[0].label = "a\"<b>".to_owned();
    let svg = svg::svg(&graph, "s0-");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(svg.matches("<g class=\"node ").count(), graph.nodes.len());
    assert_eq!(svg.matches("<g class=\"edge ").count(), graph.edges.len());
    assert!(svg.contains("data-label=\"a&quot;&lt;b&gt;\""), "{svg}");
    assert!(
        svg.contains("data-from=\"backend\" data-to=\"database\" data-ports=\"5432/TCP\""),
        "{svg}"
    );
    assert!(svg.contains("href=\"#s0-edge-0\""));
    assert!(!svg.contains("NaN"), "every coordinate is a number: {svg}");
}

/// If this fails, the picture of a proof that fails looks like one that holds: an edge the spec
/// does not declare is drawn as any other.
#[test]
fn an_undeclared_edge_is_marked() {
    let isolation = shop();
    let mut policies = render::network_policies(&isolation);
    policies.push(
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "allow-all-ingress", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"tier": "database"}}, "ingress": [{}], "policyTypes": ["Ingress"]},
        }))
        .expect("a NetworkPolicy"),
    );
    let proof = prove(&isolation, &policies).expect("valid");
    assert!(!proof.holds());
    let graph = of_proof(&proof);
    let marked: Vec<String> = graph
        .edges
        .iter()
        .filter(|edge| edge.change == Change::Undeclared)
        .map(|edge| {
            format!(
                "{} -> {}: {}",
                graph.nodes[edge.from].label,
                graph.nodes[edge.to].label,
                edge.label()
            )
        })
        .collect();
    assert!(
        marked.contains(&"other namespaces -> database: not declared: all".to_owned())
            && marked.contains(&"ingress -> database: not declared: all".to_owned())
            && marked.iter().all(|edge| edge.contains(" -> database: ")),
        "{marked:#?}"
    );
    assert!(
        graph
            .edges
            .iter()
            .any(|edge| edge.change == Change::Allowed && graph.nodes[edge.to].label == "database"),
        "the declared edge into the database (its egress isolated, the tiers inside keep to theirs) stays as it is"
    );
    assert!(mermaid(std::slice::from_ref(&graph)).contains("stroke:#cf222e,stroke-width:3px"));
}
