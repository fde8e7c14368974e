//! A graph as a self-contained SVG: no script, no font or style fetched, laid out here.
//!
//! Columns: what only sends into the namespace on the left; the namespace's nodes in the middle,
//! each one column right of the farthest node that reaches it (cycles broken where a depth-first
//! walk finds them); what the namespace reaches on the right. An edge to a column on the right is
//! a curve between the facing sides; any other runs below the nodes.
//!
//! Every node is a `g.node` with `data-label` and `data-endpoint`; every edge a `g.edge` with
//! `data-from`, `data-to` (the nodes' labels) and `data-ports`, inside a link to `#PREFIXedge-N`
//! (where a page can explain it).

use std::fmt::Write as _;

use super::{Graph, Node};

const MARGIN: f64 = 16.0;
const GAP: f64 = 170.0;
const ROW_GAP: f64 = 26.0;
const CHAR: f64 = 7.0;
const LINE: f64 = 15.0;
const BOX_TOP: f64 = 28.0;

/// Escape text for XML content and attributes.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// The label a node shows, one line each.
fn lines(node: &Node) -> Vec<&str> {
    std::iter::once(node.label.as_str())
        .chain(node.detail.as_deref())
        .collect()
}

/// Where a node is drawn.
#[derive(Clone, Copy, Debug, Default)]
struct Place {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    column: usize,
}

/// Depth of each inside node: one more than the deepest inside node with an edge to it, over
/// the edges a depth-first walk does not find going back.
fn depths(graph: &Graph) -> Vec<usize> {
    let count = graph.nodes.len();
    let inside_edge =
        |from: usize, to: usize| from != to && graph.nodes[from].inside && graph.nodes[to].inside;
    // 0 unvisited, 1 on the walk's stack, 2 done.
    let mut state = vec![0u8; count];
    let mut forward: Vec<(usize, usize)> = Vec::new();
    for start in 0..count {
        if state[start] != 0 || !graph.nodes[start].inside {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some((node, next)) = stack.pop() {
            let targets: Vec<usize> = graph
                .edges
                .iter()
                .filter(|edge| edge.from == node && inside_edge(edge.from, edge.to))
                .map(|edge| edge.to)
                .collect();
            if let Some(&target) = targets.get(next) {
                stack.push((node, next + 1));
                match state[target] {
                    0 => {
                        forward.push((node, target));
                        state[target] = 1;
                        stack.push((target, 0));
                    }
                    2 => forward.push((node, target)),
                    _ => {}
                }
            } else {
                state[node] = 2;
            }
        }
    }
    let mut depth = vec![0usize; count];
    // The forward edges form no cycle: `count` rounds settle the longest paths.
    for _ in 0..count {
        let mut changed = false;
        for &(from, to) in &forward {
            if depth[to] < depth[from] + 1 {
                depth[to] = depth[from] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

fn layout(graph: &Graph) -> Vec<Place> {
    let depth = depths(graph);
    let deepest = graph
        .nodes
        .iter()
        .zip(&depth)
        .filter(|(node, _)| node.inside)
        .map(|(_, depth)| *depth)
        .max()
        .unwrap_or(0);
    let column = |index: usize| {
        if graph.nodes[index].inside {
            return depth[index] + 1;
        }
        let reached = graph
            .edges
            .iter()
            .any(|edge| edge.to == index && graph.nodes[edge.from].inside);
        if reached { deepest + 2 } else { 0 }
    };
    let mut places: Vec<Place> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let text = lines(node);
            let longest = text
                .iter()
                .map(|line| line.chars().count())
                .max()
                .unwrap_or(0);
            #[allow(clippy::cast_precision_loss)]
            let width = (longest as f64 * CHAR + 28.0).max(96.0);
            #[allow(clippy::cast_precision_loss)]
            let height = text.len() as f64 * LINE + 18.0;
            Place {
                width,
                height,
                column: column(index),
                ..Place::default()
            }
        })
        .collect();
    let columns = deepest + 3;
    let mut x = MARGIN;
    for current in 0..columns {
        let width = places
            .iter()
            .filter(|place| place.column == current)
            .map(|place| place.width)
            .fold(0.0, f64::max);
        let mut y = MARGIN + BOX_TOP;
        for place in places.iter_mut().filter(|place| place.column == current) {
            place.x = x + (width - place.width) / 2.0;
            place.y = y;
            y += place.height + ROW_GAP;
        }
        if width > 0.0 {
            x += width + GAP;
        }
    }
    places
}

/// A point of a cubic Bézier curve.
fn bezier(points: [(f64, f64); 4], t: f64) -> (f64, f64) {
    let u = 1.0 - t;
    let weights = [u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t];
    points
        .iter()
        .zip(weights)
        .fold((0.0, 0.0), |(x, y), ((px, py), weight)| {
            (x + px * weight, y + py * weight)
        })
}

/// The namespace's box, around its nodes.
fn namespace_box(graph: &Graph, places: &[Place]) -> String {
    let inside: Vec<&Place> = places
        .iter()
        .zip(&graph.nodes)
        .filter(|(_, node)| node.inside)
        .map(|(place, _)| place)
        .collect();
    if inside.is_empty() {
        return String::new();
    }
    let left = inside.iter().map(|place| place.x).fold(f64::MAX, f64::min) - 12.0;
    let top = MARGIN;
    let end = inside
        .iter()
        .map(|place| place.x + place.width)
        .fold(0.0, f64::max)
        + 12.0;
    let low = inside
        .iter()
        .map(|place| place.y + place.height)
        .fold(0.0, f64::max)
        + 12.0;
    format!(
        r#"<g class="namespace" data-namespace="{name}"><rect x="{left:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" rx="10"/><text x="{:.1}" y="{:.1}">namespace {name}</text></g>"#,
        end - left,
        low - top,
        left + 10.0,
        top + 18.0,
        name = escape(&graph.namespace),
    )
}

/// Routes edges: one to the next column on the right is a curve between the facing sides; any
/// other runs in a lane of its own below every node, so it crosses none, leaving and entering
/// through the gaps between columns.
struct Router {
    /// The next lane's y.
    below: f64,
    /// Per column, the lines that left (entered) through the gap on its right (left), so lines
    /// of nodes stacked in one column never share an x.
    departures: Vec<usize>,
    arrivals: Vec<usize>,
    /// The labels placed so far: centre and width.
    labels: Vec<((f64, f64), f64)>,
}

impl Router {
    fn new(places: &[Place]) -> Self {
        let bottom = places
            .iter()
            .map(|place| place.y + place.height)
            .fold(MARGIN + BOX_TOP, f64::max);
        let columns = places
            .iter()
            .map(|place| place.column + 1)
            .max()
            .unwrap_or(0);
        Self {
            below: bottom + 22.0,
            departures: vec![0; columns],
            arrivals: vec![0; columns],
            labels: Vec::new(),
        }
    }

    /// Where a label `width` wide goes on a curve: its middle, or the first point along it
    /// (towards either end) that no label placed before overlaps, or the one they overlap least.
    fn place_label(&mut self, points: [(f64, f64); 4], width: f64) -> (f64, f64) {
        // How much of the label at `centre` other labels cover.
        let covered = |centre: (f64, f64)| -> f64 {
            self.labels
                .iter()
                .map(|&(other, other_width)| {
                    let across = f64::midpoint(width, other_width) - (centre.0 - other.0).abs();
                    let down = 17.0 - (centre.1 - other.1).abs();
                    across.max(0.0) * down.max(0.0)
                })
                .sum()
        };
        let mut best = (f64::MAX, bezier(points, 0.5));
        for t in [
            0.5, 0.35, 0.65, 0.2, 0.8, 0.27, 0.73, 0.42, 0.58, 0.12, 0.88,
        ] {
            let centre = bezier(points, t);
            let cover = covered(centre);
            if cover < best.0 {
                best = (cover, centre);
            }
            if cover <= 0.0 {
                break;
            }
        }
        let centre = best.1;
        self.labels.push((centre, width));
        centre
    }

    /// The path of an edge from `from` to `to`, and where its label (`width` wide) goes.
    fn route(&mut self, from: Place, to: Place, width: f64) -> (String, (f64, f64)) {
        if to.column == from.column + 1 {
            let start = (from.x + from.width, from.y + from.height / 2.0);
            let end = (to.x, to.y + to.height / 2.0);
            let reach = (end.0 - start.0) / 2.0;
            let points = [
                start,
                (start.0 + reach, start.1),
                (end.0 - reach, end.1),
                end,
            ];
            let [p0, p1, p2, p3] = points;
            return (
                format!(
                    "M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                    p0.0, p0.1, p1.0, p1.1, p2.0, p2.1, p3.0, p3.1
                ),
                self.place_label(points, width),
            );
        }
        let lane = self.below;
        self.below += 20.0;
        let (departure, arrival) = (self.departures[from.column], self.arrivals[to.column]);
        self.departures[from.column] += 1;
        self.arrivals[to.column] += 1;
        #[allow(clippy::cast_precision_loss)]
        let (down, up) = (
            from.x + from.width + 14.0 + departure as f64 * 7.0,
            to.x - 14.0 - arrival as f64 * 7.0,
        );
        (
            format!(
                "M{:.1},{:.1} H{down:.1} V{lane:.1} H{up:.1} V{:.1} H{:.1}",
                from.x + from.width,
                from.y + from.height / 2.0 + 5.0,
                to.y + to.height / 2.0 + 5.0,
                to.x
            ),
            {
                let centre = (f64::midpoint(down, up), lane);
                self.labels.push((centre, width));
                centre
            },
        )
    }
}

/// An edge's label, and how wide it is drawn.
fn edge_label(edge: &super::Edge) -> (String, f64) {
    let label = edge.label();
    #[allow(clippy::cast_precision_loss)]
    let width = label.chars().count() as f64 * 6.2 + 10.0;
    (label, width)
}

/// An edge: a link to its explanation around its path and label.
fn edge_element(
    graph: &Graph,
    number: usize,
    path: &str,
    middle: (f64, f64),
    prefix: &str,
) -> String {
    let edge = &graph.edges[number];
    let (label, label_width) = edge_label(edge);
    let (from_node, to_node) = (&graph.nodes[edge.from], &graph.nodes[edge.to]);
    format!(
        r##"<a href="#{prefix}edge-{number}"><g class="edge {change}" id="{prefix}svg-edge-{number}" data-from="{from}" data-to="{to}" data-ports="{ports}"><title>{from_endpoint} -&gt; {to_endpoint}: {ports}</title><path d="{path}" marker-end="url(#{prefix}arrow)"/><rect x="{:.1}" y="{:.1}" width="{label_width:.1}" height="16" rx="3"/><text x="{:.1}" y="{:.1}">{label}</text></g></a>"##,
        middle.0 - label_width / 2.0,
        middle.1 - 8.0,
        middle.0,
        middle.1 + 4.0,
        change = edge.change.as_str(),
        from = escape(&from_node.label),
        to = escape(&to_node.label),
        from_endpoint = escape(&from_node.endpoint),
        to_endpoint = escape(&to_node.endpoint),
        ports = escape(&edge.ports),
        label = escape(&label),
    )
}

fn node_element(node: &Node, place: &Place) -> String {
    let mut out = format!(
        r#"<g class="node {kind}" data-label="{label}" data-endpoint="{endpoint}"><title>{endpoint}</title><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="8"/>"#,
        place.x,
        place.y,
        place.width,
        place.height,
        kind = node.kind.as_str(),
        label = escape(&node.label),
        endpoint = escape(&node.endpoint),
    );
    for (line, text) in lines(node).iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = place.y + 9.0 + LINE * (line as f64 + 0.8);
        let class = if line == 0 { "label" } else { "detail" };
        let _ = write!(
            out,
            r#"<text class="{class}" x="{:.1}" y="{y:.1}">{}</text>"#,
            place.x + place.width / 2.0,
            escape(text)
        );
    }
    out.push_str("</g>");
    out
}

/// The graph as an `<svg>` element; ids start with `prefix` (one page may hold several).
#[must_use]
pub fn svg(graph: &Graph, prefix: &str) -> String {
    let places = layout(graph);
    let right = places
        .iter()
        .map(|place| place.x + place.width)
        .fold(MARGIN, f64::max);
    let mut body = namespace_box(graph, &places);
    // Edges under nodes.
    let mut router = Router::new(&places);
    for (number, edge) in graph.edges.iter().enumerate() {
        let (_, width) = edge_label(edge);
        let (path, middle) = router.route(places[edge.from], places[edge.to], width);
        body.push_str(&edge_element(graph, number, &path, middle, prefix));
    }
    for (node, place) in graph.nodes.iter().zip(&places) {
        body.push_str(&node_element(node, place));
    }
    let width = right + MARGIN;
    let height = router.below + MARGIN;
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" aria-label="connections of namespace {name}" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}"><defs><marker id="{prefix}arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>{body}</svg>"#,
        name = escape(&graph.namespace),
    )
}
