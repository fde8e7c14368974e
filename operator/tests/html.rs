//! `netfence verify -o html` in a real browser: headless Chromium from Debian's packages, driven
//! through ChromeDriver (WebDriver over HTTP). The page renders without a console error and
//! without fetching anything, its SVG has the expected nodes and edges (none drawn on top of
//! another), an edge links to why it is allowed, and a screenshot is written to the test's output
//! directory (`target/tmp/verify-html/`).

mod common;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{Value, json};

const TEST: &str = "verify_html_renders_in_chromium";

/// A program on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|directory| directory.join(program))
            .find(|path| path.is_file())
    })
}

/// ChromeDriver, stopped when dropped.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(program: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut response) = ureq::get(&format!("{}/status", driver.base)).call()
                && let Ok(status) = response.body_mut().read_json::<Value>()
                && status["value"]["ready"] == true
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let mut response = ureq::post(&format!("{}{path}", self.base))
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(body)
            .unwrap_or_else(|error| panic!("POST {path}: {error}"));
        let value: Value = response.body_mut().read_json().expect("JSON");
        assert!(
            value["value"].get("error").is_none(),
            "POST {path}: {value}"
        );
        value["value"].clone()
    }

    fn get(&self, path: &str) -> Value {
        let mut response = ureq::get(&format!("{}{path}", self.base))
            .call()
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        let value: Value = response.body_mut().read_json().expect("JSON");
        value["value"].clone()
    }
}

const INSPECT: &str = r"
const svg = document.querySelector('section.isolation svg.graph');
const box = (element) => { const r = element.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; };
return {
  sections: document.querySelectorAll('section.isolation').length,
  verdict: document.querySelector('section.isolation h2').textContent,
  svg: box(svg),
  nodes: [...svg.querySelectorAll('g.node')].map((node) => ({
    label: node.dataset.label, kind: node.getAttribute('class'), box: box(node.querySelector('rect')),
  })),
  edges: [...svg.querySelectorAll('g.edge')].map((edge) => ({
    from: edge.dataset.from, to: edge.dataset.to, ports: edge.dataset.ports,
    length: edge.querySelector('path').getTotalLength(),
    link: edge.parentElement.getAttribute('href'),
  })),
  explanations: document.querySelectorAll('section.isolation details').length,
  fetched: performance.getEntriesByType('resource').map((entry) => entry.name),
  scripts: document.scripts.length,
};
";

/// If this fails, the page a reviewer opens is broken in a browser: a console error, something
/// fetched, a node or edge missing or drawn over another, or an edge that does not lead to its
/// explanation.
#[test]
fn verify_html_renders_in_chromium() {
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        common::skip(
            TEST,
            "chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver; .ci/run installs them)",
        );
        return;
    };
    let output_directory = Path::new(env!("CARGO_TARGET_TMPDIR")).join("verify-html");
    std::fs::create_dir_all(&output_directory).expect("output directory");
    let page = output_directory.join("three-tier.html");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/three-tier.yaml");
    let output = Command::new(env!("CARGO_BIN_EXE_netfence"))
        .args(["verify", "-o", "html"])
        .arg(&example)
        .output()
        .expect("netfence runs");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    std::fs::write(&page, &output.stdout).expect("write the page");

    let Visit {
        state: page_state,
        link,
        opened,
        console,
    } = visit(&chromium, &chromedriver, &page, &output_directory);
    let errors: Vec<&Value> = console
        .as_array()
        .expect("log entries")
        .iter()
        .filter(|entry| entry["level"] == "SEVERE" || entry["level"] == "WARNING")
        .collect();
    assert!(errors.is_empty(), "console: {errors:?}");
    assert_eq!(page_state["fetched"], json!([]), "the page fetches nothing");
    assert_eq!(page_state["scripts"], 0, "the page runs no script");
    assert_eq!(page_state["sections"], 1);
    assert_eq!(
        page_state["verdict"],
        "NamespaceIsolation shop/shop: intent holds"
    );
    assert_eq!(opened[0], link, "the edge's link is followed");
    assert_eq!(opened[1], "DETAILS");
    assert!(
        opened[2]
            .as_str()
            .is_some_and(|text| text.contains("allows it")),
        "the explanation names the rule that allows it: {opened}"
    );

    let labels: Vec<&str> = page_state["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|node| node["label"].as_str())
        .collect();
    assert_eq!(
        labels,
        [
            "frontend",
            "backend",
            "database",
            "(no tier)",
            "DNS",
            "ingress",
            "metrics"
        ]
    );
    let mut edges: Vec<String> = page_state["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| {
            format!("{} -> {}: {}", edge["from"], edge["to"], edge["ports"]).replace('"', "")
        })
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        [
            "(no tier) -> DNS: 53/TCP,UDP",
            "backend -> DNS: 53/TCP,UDP",
            "backend -> database: 5432/TCP",
            "database -> DNS: 53/TCP,UDP",
            "frontend -> DNS: 53/TCP,UDP",
            "frontend -> backend: 8080/TCP",
            "ingress -> frontend: 80/TCP 443/TCP",
            "metrics -> backend: metrics/TCP",
        ],
        "what is blocked (frontend -> database, anything into (no tier)) is absent"
    );
    assert_eq!(page_state["explanations"], edges.len());
    for edge in page_state["edges"].as_array().expect("edges") {
        assert!(
            edge["length"].as_f64().is_some_and(|length| length > 20.0),
            "{edge}"
        );
    }
    assert_drawn(&page_state);
}

/// What the browser showed.
struct Visit {
    /// What [`INSPECT`] found.
    state: Value,
    /// The first edge's link.
    link: String,
    /// After following it: the fragment, the tag and the text of its target.
    opened: Value,
    /// The browser's console.
    console: Value,
}

/// Open `page` in Chromium, inspect it, screenshot it into `output_directory`, follow an edge.
fn visit(chromium: &Path, chromedriver: &Path, page: &Path, output_directory: &Path) -> Visit {
    let driver = Driver::start(chromedriver);
    let profile = tempfile::tempdir().expect("profile directory");
    let session = driver.post(
        "/session",
        &json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1400,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}}),
    );
    let id = session["sessionId"].as_str().expect("a session").to_owned();
    let session = format!("/session/{id}");
    driver.post(
        &format!("{session}/url"),
        &json!({"url": format!("file://{}", page.display())}),
    );
    let page_state = driver.post(
        &format!("{session}/execute/sync"),
        &json!({"script": INSPECT, "args": []}),
    );

    // A screenshot for the reader of the test's output (and the README's picture).
    let screenshot = driver.get(&format!("{session}/screenshot"));
    let png = base64::engine::general_purpose::STANDARD
        .decode(screenshot.as_str().expect("base64"))
        .expect("a PNG");
    let picture = output_directory.join("three-tier.png");
    std::fs::write(&picture, &png).expect("write the screenshot");
    eprintln!("screenshot: {} ({} bytes)", picture.display(), png.len());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);

    // An edge leads to its explanation.
    let link = page_state["edges"][0]["link"]
        .as_str()
        .expect("a link")
        .to_owned();
    let opened = driver.post(
        &format!("{session}/execute/sync"),
        &json!({"script": "document.querySelector('svg.graph a').dispatchEvent(new MouseEvent('click', {bubbles: true})); const target = document.querySelector(location.hash); return [location.hash, target ? target.tagName : null, target ? target.textContent : null];", "args": []}),
    );
    let console = driver.post(&format!("{session}/se/log"), &json!({"type": "browser"}));
    let _ = ureq::delete(&format!("{}{session}", driver.base)).call();

    Visit {
        state: page_state,
        link,
        opened,
        console,
    }
}

/// Every node has a size, lies inside the picture, and overlaps no other.
fn assert_drawn(page_state: &Value) {
    let boxes: Vec<[f64; 4]> = page_state["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| {
            let value = |index: usize| node["box"][index].as_f64().unwrap_or(0.0);
            [value(0), value(1), value(2), value(3)]
        })
        .collect();
    let svg = &page_state["svg"];
    let (svg_right, svg_bottom) = (
        svg[0].as_f64().unwrap_or(0.0) + svg[2].as_f64().unwrap_or(0.0),
        svg[1].as_f64().unwrap_or(0.0) + svg[3].as_f64().unwrap_or(0.0),
    );
    for (index, [x, y, width, height]) in boxes.iter().enumerate() {
        assert!(*width > 40.0 && *height > 20.0, "node {index}: {boxes:?}");
        assert!(
            x + width <= svg_right + 0.5 && y + height <= svg_bottom + 0.5,
            "node {index} outside the picture"
        );
        for [other_x, other_y, other_width, other_height] in &boxes[index + 1..] {
            let apart = x + width <= *other_x
                || other_x + other_width <= *x
                || y + height <= *other_y
                || other_y + other_height <= *y;
            assert!(apart, "nodes overlap: {boxes:?}");
        }
    }
}
