//! `netfence verify` as users run it: the real binary on manifest files, checking what it prints
//! and its exit code (0 verified, 1 a check failed, 2 bad input).

use std::{path::PathBuf, process::Command};

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/verify")
        .join(path)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn verify(args: &[&str], paths: &[PathBuf]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_netfence"))
        .arg("verify")
        .args(paths)
        .args(args)
        .output()
        .expect("run netfence");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// If this fails, a `kubectl get -A -o yaml` dump with Deployments in it (the normal case) is
/// refused, or the skipped objects are dropped without telling the user.
#[test]
fn unknown_kinds_are_skipped_with_a_note_and_the_matrix_is_printed() {
    let run = verify(&["--probe", "5432/TCP"], &[data("cluster.yaml")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("note: skipped 2 Deployment objects (first: ")
            && run.stderr.contains("cluster.yaml: frontend); verify reads Namespace, Pod, NetworkPolicy, NamespaceIsolation, IsolationTemplate, ClusterBaseline"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stdout,
        "rows: from, columns: to; . allowed, X blocked, H not governed (hostNetwork), - same pod

5432/TCP: 2 of 6 connections allowed
                     1 2 3
1 data/node-exporter - H H
2 data/postgres      H - .
3 web/frontend       H . -
"
    );
}

/// If this fails, a malformed policy (an operator typo, an impossible CIDR) is silently read as
/// something else, or the error does not say which file, object and field to fix.
#[test]
fn malformed_policies_are_errors_naming_file_object_and_field() {
    let run = verify(&[], &[data("bad-policy.yaml"), data("cluster.yaml")]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "", "nothing is printed on stdout for bad input");
    let file = data("bad-policy.yaml").display().to_string();
    assert!(
        run.stderr.contains(&format!("error: {file}: NetworkPolicy web/broken: spec.podSelector.matchExpressions[0].operator: unknown operator \"Equals\"; use In, NotIn, Exists or DoesNotExist")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("error: {file}: NetworkPolicy web/broken: spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/33\": prefix length \"33\" must be a number from 0 to 32")),
        "{}",
        run.stderr
    );
}

/// If this fails, scripts reading `-o json` break: the document must be exactly
/// `{"connections":[...]}` with one entry per ordered pair of distinct pods per probe, and
/// `allowed` null for pods NetworkPolicy does not govern.
#[test]
fn json_output_has_one_entry_per_ordered_pair_per_probe() {
    let run = verify(&["-o", "json"], &[data("cluster.yaml")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let document: serde_json::Value = serde_json::from_str(&run.stdout).expect("valid JSON");
    let object = document.as_object().expect("an object");
    assert_eq!(object.keys().collect::<Vec<_>>(), ["connections", "intent"]);
    assert_eq!(document["intent"], serde_json::json!([]));
    let connections = document["connections"].as_array().expect("an array");
    // 3 pods, 6 ordered pairs, probes 5432/TCP, 8080/TCP and 9100/TCP (every declared port).
    assert_eq!(connections.len(), 6 * 3);
    for connection in connections {
        let keys: Vec<&String> = connection.as_object().expect("entry").keys().collect();
        assert_eq!(
            keys,
            ["allowed", "from", "port", "protocol", "reason", "to"]
        );
    }
    let find = |from: &str, to: &str, port: u64| {
        connections
            .iter()
            .find(|c| c["from"] == from && c["to"] == to && c["port"] == port)
            .expect("connection")
    };
    let allowed = find("web/frontend", "data/postgres", 5432);
    assert_eq!(allowed["allowed"], true);
    assert_eq!(allowed["protocol"], "TCP");
    assert_eq!(
        allowed["reason"],
        "allowed: egress not isolated; ingress allowed by data/postgres-from-web ingress[0]"
    );
    assert_eq!(
        find("web/frontend", "data/postgres", 8080)["allowed"],
        false
    );
    assert_eq!(
        find("data/node-exporter", "web/frontend", 8080)["allowed"],
        serde_json::Value::Null
    );
}

/// `-o json` is ONE document holding the pods' matrix and every intent proof, and `-o yaml` the
/// same document. If this fails, `json.load` / `jq` on verify's output fails with "Extra data"
/// (one document per proof after the matrix), or the proofs' fields change under a pipeline.
#[test]
fn json_and_yaml_are_one_document_with_the_matrix_and_every_proof() {
    let paths = [
        data("cluster.yaml"),
        data("shop-without-dns"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/ingress-only.yaml"),
    ];
    let run = verify(&["-o", "json"], &paths);
    // The shop's proof fails: exit 1, with the whole document printed.
    assert_eq!(run.code, 1, "{}", run.stderr);
    let document: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("stdout is exactly one JSON document");
    assert_eq!(
        document
            .as_object()
            .expect("an object")
            .keys()
            .collect::<Vec<_>>(),
        ["connections", "intent"]
    );
    assert_eq!(document["connections"].as_array().expect("array").len(), 18);
    let intent = document["intent"].as_array().expect("array");
    let summary: Vec<(&str, bool, usize)> = intent
        .iter()
        .map(|proof| {
            (
                proof["isolation"].as_str().expect("isolation"),
                proof["holds"].as_bool().expect("holds"),
                proof["differences"].as_array().expect("differences").len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("shop/shop", false, 8), ("reports/reports", true, 0)]
    );
    assert_eq!(
        intent[0]
            .as_object()
            .expect("proof")
            .keys()
            .collect::<Vec<_>>(),
        [
            "against",
            "differences",
            "endpoints",
            "holds",
            "isolation",
            "probes",
            "warnings"
        ]
    );
    assert_eq!(
        intent[0]["against"],
        "the 4 NetworkPolicies of namespace shop in the input"
    );
    assert_eq!(
        intent[0]["differences"][0],
        serde_json::json!({
            "from": "frontend",
            "to": "kube-system/dns-peer",
            "port": 53,
            "protocol": "TCP",
            "declared": true,
            "reason": "the egress of frontend (isolated by shop/shop-default-deny, shop/shop-tier-frontend; no egress rule allows it)",
        })
    );

    let yaml = verify(&["-o", "yaml"], &paths);
    assert_eq!(yaml.code, 1, "{}", yaml.stderr);
    let from_yaml: serde_json::Value =
        serde_saphyr::from_str(&yaml.stdout).expect("stdout is one YAML document");
    assert_eq!(from_yaml, document);
}

/// If this fails, `--explain` stops telling users which rule decided a connection, or accepts a
/// pod that is not in the input.
#[test]
fn explain_names_the_policies_and_rules_that_decided() {
    let run = verify(
        &["--explain", "web/frontend", "data/postgres", "8080/TCP"],
        &[data("cluster.yaml")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("web/frontend -> data/postgres 8080/TCP: blocked\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("  data/postgres-from-web ingress[0]: does not apply\n    from[0] pods app=frontend in namespace web: matches\n    ports[0] pg/TCP: does not match\n"),
        "{}",
        run.stdout
    );

    let run = verify(
        &["--explain", "web/backend", "data/postgres", "80/TCP"],
        &[data("cluster.yaml")],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("error: --explain: pod \"web/backend\" is not in the input"),
        "{}",
        run.stderr
    );
}

/// If this fails, deleting the DNS policy from a namespace's policies (what `kubectl delete` or a
/// bad merge does) is not caught: the proof must fail with exit 1 and name each blocked lookup.
#[test]
fn a_policy_set_without_dns_fails_the_intent_proof() {
    let run = verify(&[], &[data("shop-without-dns")]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("proving against the 4 NetworkPolicies of namespace shop in the input")
    );
    assert!(
        run.stdout.contains("intent does not hold: 8 difference(s) between the policies and the spec\n  frontend -> kube-system/dns-peer 53/TCP: declared but blocked by the egress of frontend (isolated by shop/shop-default-deny, shop/shop-tier-frontend; no egress rule allows it)"),
        "{}",
        run.stdout
    );
}

/// If this fails, the examples users copy no longer verify: `netfence verify` on a
/// NamespaceIsolation alone must print its tier matrix and `intent holds`.
#[test]
fn examples_prove_their_intent() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/three-tier.yaml");
    let run = verify(&[], &[examples]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "inside shop (rows: from, columns: to; cells: the allowed ports, . none)
           frontend  backend   database  (no tier)
frontend   -         8080/TCP  .         .
backend    .         -         5432/TCP  .
"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("\nintent holds: "), "{}", run.stdout);
}

/// If this fails, a cluster whose pods declare no ports prints an empty report instead of
/// telling the user to pass `--probe`.
#[test]
fn no_probe_is_bad_input_that_says_what_to_pass() {
    let run = verify(&[], &[data("bad-policy.yaml")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("error: "), "{}", run.stderr);

    let dir = std::env::temp_dir().join(format!("netfence-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("pods.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: team}\n",
    )
    .expect("write");
    let run = verify(&[], std::slice::from_ref(&file));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no pod declares a container port, so there is nothing to probe; pass --probe PORT/PROTOCOL"),
        "{}",
        run.stderr
    );
}

/// A bad `--probe` (or `--explain` probe) names the flag, says what is wrong with the value, and
/// shows the form to write. If this fails, `--probe 70000/TCP` says only "is not a probe" and
/// the user guesses among a bad port, a bad protocol and a bad shape.
#[test]
fn a_bad_probe_names_the_flag_and_the_reason() {
    for (probe, reason) in [
        ("70000/TCP", "port 70000 is out of range 1-65535"),
        (
            "80/ICMP",
            "unknown protocol \"ICMP\" (NetworkPolicy knows TCP, UDP and SCTP)",
        ),
        ("metrics/TCP", "port \"metrics\" is not a number"),
        ("80/TCP/x", "\"80/TCP/x\" is not of the form PORT/PROTOCOL"),
    ] {
        let run = verify(&["--probe", probe], &[data("cluster.yaml")]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(
            run.stderr.contains(&format!(
                "invalid value '{probe}' for '--probe <PORT/PROTOCOL>': {reason}"
            )) && run.stderr.contains(
                "write PORT/PROTOCOL: a port number from 1 to 65535, then TCP, UDP or SCTP"
            ),
            "{}",
            run.stderr
        );
    }
    let run = verify(
        &["--explain", "data/postgres", "web/frontend", "70000/TCP"],
        &[data("cluster.yaml")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("error: --explain: port 70000 is out of range 1-65535; write PORT/PROTOCOL"),
        "{}",
        run.stderr
    );
}
