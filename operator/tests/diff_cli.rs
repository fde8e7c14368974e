//! `netfence diff` as a reviewer and a CI job run it: two copies of an example, one changed; the
//! same with `--git REV` in a real git repository; every output format and exit code.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn netfence(args: &[&str]) -> Output {
    netfence_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn netfence_in(directory: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netfence"))
        .current_dir(directory)
        .args(args)
        .output()
        .expect("netfence runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    std::fs::read_to_string(path).expect("example")
}

/// `OLD` and `NEW` directories holding `old` and `new` as `name`.
fn trees(name: &str, old: &str, new: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let directory = tempfile::tempdir().expect("tempdir");
    let (before, after) = (directory.path().join("old"), directory.path().join("new"));
    for (tree, text) in [(&before, old), (&after, new)] {
        std::fs::create_dir_all(tree).expect("mkdir");
        std::fs::write(tree.join(name), text).expect("write");
    }
    (directory, before, after)
}

const FLOW: &str = "    - {from: backend, to: database, ports: [{port: 5432, protocol: TCP}]}\n";

/// The three-tier example with a flow from the frontend straight to the database.
fn with_shortcut() -> String {
    let three_tier = example("three-tier.yaml");
    assert!(three_tier.contains(FLOW), "the example's flow line moved");
    three_tier.replace(
        FLOW,
        &format!("{FLOW}    - {{from: frontend, to: database, ports: [{{port: 5432}}]}}\n"),
    )
}

fn diff(before: &Path, after: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "diff",
        before.to_str().expect("utf-8"),
        after.to_str().expect("utf-8"),
    ];
    args.extend(extra);
    netfence(&args)
}

/// If this fails, a reviewer is not told what a new flow opens, or is told about more.
#[test]
fn a_new_flow_is_reported_as_opened_and_nothing_else() {
    let (_directory, before, after) = trees(
        "three-tier.yaml",
        &example("three-tier.yaml"),
        &with_shortcut(),
    );
    let output = diff(&before, &after, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}{}", stderr(&output));
    assert!(text.contains("1 opened, 0 closed in 1 namespace"), "{text}");
    let opened: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|line| line.contains(" -> "))
        .collect();
    assert_eq!(opened.len(), 1, "{text}");
    assert!(
        opened[0].contains("frontend -> database") && opened[0].contains("5432/TCP"),
        "{text}"
    );
    assert!(!text.contains("closed:"), "{text}");
    assert!(
        text.contains("NetworkPolicies: changed shop/shop-tier-database, shop/shop-tier-frontend"),
        "the policies that changed: {text}"
    );

    // The same as one JSON document.
    let output = diff(&before, &after, &["-o", "json"]);
    assert_eq!(output.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one document");
    assert_eq!(json["opened"], 1);
    assert_eq!(json["closed"], 0);
    let edge = &json["namespaces"][0]["opened"][0];
    assert_eq!(
        (
            edge["from"].as_str(),
            edge["to"].as_str(),
            edge["ports"].as_str()
        ),
        (Some("frontend"), Some("database"), Some("5432/TCP"))
    );

    // A gate that wants a review of every opening fails (1); one for closings does not (3).
    assert_eq!(
        diff(&before, &after, &["--fail-on", "opened"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        diff(&before, &after, &["--fail-on", "closed"])
            .status
            .code(),
        Some(3)
    );
}

/// If this fails, the pull-request comment lacks its summary, table or graph.
#[test]
fn markdown_is_a_pull_request_comment() {
    let (_directory, before, after) = trees(
        "three-tier.yaml",
        &example("three-tier.yaml"),
        &with_shortcut(),
    );
    let output = diff(&before, &after, &["-o", "markdown"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.starts_with("### netfence diff: 1 opened, 0 closed in 1 namespace"),
        "{text}"
    );
    assert!(
        text.contains("| **opened** | frontend | database | 5432/TCP |"),
        "{text}"
    );
    let graph = text.split("```mermaid\n").nth(1).expect("a Mermaid block");
    assert!(graph.starts_with("flowchart LR"), "{graph}");
    assert!(
        graph.contains("==>|\"opened: 5432/TCP\"|"),
        "the opened edge, drawn: {graph}"
    );
    assert_eq!(
        graph.matches("==>").count() + graph.matches("-.->").count(),
        1,
        "only the changed edge is drawn: {graph}"
    );
}

/// If this fails, an unchanged tree is reported as a change (or the reverse).
#[test]
fn identical_trees_change_nothing() {
    let three_tier = example("three-tier.yaml");
    let (_directory, before, after) = trees("three-tier.yaml", &three_tier, &three_tier);
    let output = diff(&before, &after, &["--fail-on", "any"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("no connectivity change in 1 namespace compared"),
        "{}",
        stdout(&output)
    );
}

/// If this fails, removing a shared service is not shown as closing its peer's access.
#[test]
fn a_removed_shared_service_is_closed() {
    let three_tier = example("three-tier.yaml");
    let metrics = three_tier
        .find("    - name: metrics")
        .expect("the metrics shared service");
    let without = &three_tier[..metrics];
    let (_directory, before, after) = trees("three-tier.yaml", &three_tier, without);
    let output = diff(&before, &after, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}{}", stderr(&output));
    assert!(text.contains("0 opened, 1 closed"), "{text}");
    assert!(
        text.contains("monitoring/metrics-peer -> backend") && text.contains("metrics/TCP"),
        "{text}"
    );
}

/// If this fails, a change that only renames (policies follow tier names) or reorders shows as a
/// connectivity change.
#[test]
fn renames_and_reordering_are_no_change() {
    let three_tier = example("three-tier.yaml");
    let renamed = three_tier
        .replace("name: frontend", "name: web")
        .replace("from: frontend", "from: web")
        .replace("tiers: [frontend]", "tiers: [web]")
        .replace(
            "    - {from: web, to: backend, ports: [{port: 8080}]}\n    - {from: backend, to: database, ports: [{port: 5432, protocol: TCP}]}\n",
            "    - {from: backend, to: database, ports: [{port: 5432, protocol: TCP}]}\n    - {from: web, to: backend, ports: [{port: 8080}]}\n",
        );
    assert!(renamed.contains("from: web") && renamed != three_tier);
    let (_directory, before, after) = trees("three-tier.yaml", &three_tier, &renamed);
    let output = diff(&before, &after, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(text.contains("no connectivity change"), "{text}");
    assert!(
        text.contains("added shop/shop-tier-web")
            && text.contains("removed shop/shop-tier-frontend"),
        "the renamed policy is still listed: {text}"
    );
}

/// If this fails, bad input is compared anyway, or the error does not name the file.
#[test]
fn bad_input_is_refused_naming_the_file() {
    let broken = example("three-tier.yaml").replace("to: database", "to: databse");
    let (_directory, before, after) =
        trees("three-tier.yaml", &example("three-tier.yaml"), &broken);
    let output = diff(&before, &after, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
    let errors = stderr(&output);
    assert!(
        errors.contains("new/three-tier.yaml") && errors.contains("databse"),
        "{errors}"
    );
    // A NetworkPolicy beside the resources is checked too, naming its file.
    let broken = format!(
        "{}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: broken, namespace: shop}}\nspec:\n  podSelector: {{matchLabels: {{\"bad key!\": x}}}}\n",
        example("three-tier.yaml")
    );
    let (_directory, before, after) =
        trees("three-tier.yaml", &example("three-tier.yaml"), &broken);
    let output = diff(&before, &after, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(
            "new/three-tier.yaml: NetworkPolicy shop/broken: spec.podSelector.matchLabels"
        ),
        "{}",
        stderr(&output)
    );
    let output = netfence(&["diff", "only-one-path"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("diff takes two paths"),
        "{}",
        stderr(&output)
    );
}

fn git(directory: &Path, args: &[&str]) {
    let output = Command::new("git")
        .current_dir(directory)
        .args([
            "-c",
            "user.name=netfence",
            "-c",
            "user.email=ci@netfence.invalid",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {}", stderr(&output));
}

/// If this fails, `diff --git` does not compare the paths at a revision with the working tree
/// (what a pull request's CI job runs).
#[test]
fn git_compares_a_revision_with_the_working_tree() {
    let repository = tempfile::tempdir().expect("tempdir");
    let root = repository.path();
    git(root, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(root.join("policies")).expect("mkdir");
    std::fs::write(root.join("policies/shop.yaml"), example("three-tier.yaml")).expect("write");
    std::fs::write(root.join("README.md"), "not a manifest\n").expect("write");
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "shop"]);
    git(root, &["update-ref", "refs/remotes/origin/main", "HEAD"]);

    let unchanged = netfence_in(root, &["diff", "--git", "origin/main", "policies/"]);
    assert_eq!(unchanged.status.code(), Some(0), "{}", stderr(&unchanged));

    std::fs::write(root.join("policies/shop.yaml"), with_shortcut()).expect("write");
    let output = netfence_in(root, &["diff", "--git", "origin/main", "policies/"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}{}", stderr(&output));
    assert!(
        text.starts_with("netfence diff origin/main -> the working tree: 1 opened, 0 closed"),
        "{text}"
    );
    // From a subdirectory, the paths are relative to it, as git's are; an absolute path or one
    // with `..` names the same files.
    let policies = root.join("policies");
    for (directory, path) in [
        (policies.as_path(), "."),
        (root, policies.to_str().expect("utf-8")),
        (root, "policies/../policies"),
    ] {
        let output = netfence_in(directory, &["diff", "--git", "origin/main", path]);
        assert!(
            stdout(&output).contains(": 1 opened, 0 closed in 1 namespace"),
            "{path}: {}{}",
            stdout(&output),
            stderr(&output)
        );
    }
    // A file the change deletes: everything in it is removed (its namespace opens).
    git(root, &["rm", "-q", "-f", "policies/shop.yaml"]);
    let output = netfence_in(
        root,
        &["diff", "--git", "origin/main", "policies/shop.yaml"],
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("policies/shop.yaml does not exist in the working tree"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("NamespaceIsolation shop/shop is removed"));
    git(
        root,
        &["checkout", "-q", "HEAD", "--", "policies/shop.yaml"],
    );
    std::fs::write(root.join("policies/shop.yaml"), with_shortcut()).expect("write");

    let missing = netfence_in(root, &["diff", "--git", "origin/nope", "policies/"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("--git origin/nope: not a commit"),
        "{}",
        stderr(&missing)
    );
    // An error in the old revision names it.
    std::fs::write(
        root.join("policies/shop.yaml"),
        example("three-tier.yaml").replace("to: database", "to: databse"),
    )
    .expect("write");
    git(root, &["commit", "-q", "-am", "typo"]);
    std::fs::write(root.join("policies/shop.yaml"), example("three-tier.yaml")).expect("write");
    let output = netfence_in(root, &["diff", "--git", "HEAD", "policies/"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("HEAD:policies/shop.yaml"),
        "{}",
        stderr(&output)
    );
}

/// If this fails, what a change's side leaves in the cluster is compared wrongly: a DryRun
/// resource writes no policy (turning it to Enforce closes what it does not declare), a resource
/// removed with `KeepDefaultDeny` leaves the namespace closed, and a namespace relabelled out of
/// a ClusterBaseline's selector is a change.
#[test]
fn what_each_side_leaves_in_the_cluster_is_compared() {
    let three_tier = example("three-tier.yaml");
    let dry_run = three_tier.replace("spec:\n  tiers:", "spec:\n  mode: DryRun\n  tiers:");
    assert_ne!(dry_run, three_tier);
    let (_directory, before, after) = trees("three-tier.yaml", &dry_run, &three_tier);
    let output = diff(&before, &after, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}{}", stderr(&output));
    assert!(
        text.contains(" 0 opened, ") && !text.contains("opened:"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.contains("frontend -> database ")
                && line.ends_with("every port  (nothing isolated it)")),
        "{text}"
    );

    let kept = three_tier.replace(
        "spec:\n  tiers:",
        "spec:\n  deletionPolicy: KeepDefaultDeny\n  tiers:",
    );
    let namespace_only = &three_tier[..three_tier.find("---").expect("two documents")];
    let (_directory, before, after) = trees("three-tier.yaml", &kept, namespace_only);
    let output = diff(&before, &after, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}{}", stderr(&output));
    assert!(
        text.contains("NamespaceIsolation shop/shop is removed") && text.contains(" 0 opened, "),
        "the default deny and DNS allow stay: nothing opens: {text}"
    );

    let baseline = example("baselines/cluster-network-policy.yaml");
    let relabelled = baseline.replacen(
        "netfence.io/zero-trust: \"true\"",
        "netfence.io/zero-trust: \"false\"",
        1,
    );
    assert_ne!(relabelled, baseline);
    let (_directory, before, after) = trees("baseline.yaml", &baseline, &relabelled);
    let output = diff(&before, &after, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}{}", stderr(&output));
    assert!(text.contains(" opened, 0 closed"), "{text}");
}

/// If this fails, a repository of plain NetworkPolicies (no netfence resource) cannot be
/// reviewed with `netfence diff`.
#[test]
fn plain_network_policies_are_compared_too() {
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: team}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n  ingress: [{ports: [{port: 80}]}]\n";
    let wider = policy.replace("{port: 80}", "{port: 80}, {port: 8443}");
    let (_directory, before, after) = trees("web.yaml", policy, &wider);
    let output = diff(&before, &after, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}{}", stderr(&output));
    assert!(
        text.contains("namespace team (no NamespaceIsolation: its NetworkPolicies and cluster-wide policies only)")
            && text.contains("-> pods with app=web")
            && text.contains("8443/TCP  (allowed by team/web)")
            && text.contains(" 0 closed"),
        "{text}"
    );
}
