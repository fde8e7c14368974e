//! The CI examples of `examples/ci/`, parsed and run: a real git repository with a base branch
//! (pushed to a real `origin`) and a pull-request branch that adds a flow; every command of the
//! GitHub workflow and of the GitLab job runs in it with `bash` as those runners do, with this
//! build's `netfence` on PATH. Only what needs the forge is stood in for: `cargo install` (the
//! build is here), `gh` and `curl` (they record what they were asked to post).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("readable");
    serde_saphyr::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn run(directory: &Path, program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .current_dir(directory)
        .args(args)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn git(directory: &Path, args: &[&str]) {
    let mut all = vec![
        "-c",
        "user.name=netfence",
        "-c",
        "user.email=ci@netfence.invalid",
    ];
    all.extend(args);
    run(directory, "git", &all);
}

const FLOW: &str = "    - {from: backend, to: database, ports: [{port: 5432, protocol: TCP}]}\n";

/// A checkout as CI has it: a clone of `origin` (whose `main` holds the three-tier example under
/// `policies/`) on a branch that adds a flow from the frontend to the database. Also returns a
/// directory of stand-ins for `cargo`, `gh` and `curl` that log their arguments to `calls`.
struct Checkout {
    _directory: tempfile::TempDir,
    root: PathBuf,
    stand_ins: PathBuf,
    calls: PathBuf,
}

fn checkout() -> Checkout {
    let directory = tempfile::tempdir().expect("tempdir");
    let origin = directory.path().join("origin.git");
    let author = directory.path().join("author");
    let root = directory.path().join("checkout");
    run(
        directory.path(),
        "git",
        &["init", "-q", "--bare", "-b", "main", "origin.git"],
    );
    std::fs::create_dir_all(author.join("policies")).expect("mkdir");
    let three_tier = std::fs::read_to_string(examples().join("three-tier.yaml")).expect("example");
    std::fs::write(author.join("policies/shop.yaml"), &three_tier).expect("write");
    git(&author, &["init", "-q", "-b", "main"]);
    git(&author, &["add", "."]);
    git(&author, &["commit", "-q", "-m", "shop"]);
    git(
        &author,
        &["remote", "add", "origin", origin.to_str().expect("utf-8")],
    );
    git(&author, &["push", "-q", "origin", "main"]);
    git(
        directory.path(),
        &["clone", "-q", origin.to_str().expect("utf-8"), "checkout"],
    );
    git(&root, &["checkout", "-q", "-b", "shortcut"]);
    assert!(three_tier.contains(FLOW), "the example's flow line moved");
    let changed = three_tier.replace(
        FLOW,
        &format!("{FLOW}    - {{from: frontend, to: database, ports: [{{port: 5432}}]}}\n"),
    );
    std::fs::write(root.join("policies/shop.yaml"), changed).expect("write");
    git(
        &root,
        &["commit", "-q", "-am", "frontend reads the database"],
    );

    let stand_ins = directory.path().join("bin");
    let calls = directory.path().join("calls");
    std::fs::create_dir_all(&stand_ins).expect("mkdir");
    for program in ["cargo", "gh", "curl"] {
        let path = stand_ins.join(program);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{program} $*\" >> \"{}\"\n",
                calls.display()
            ),
        )
        .expect("write");
        run(
            directory.path(),
            "chmod",
            &["+x", path.to_str().expect("utf-8")],
        );
    }
    Checkout {
        _directory: directory,
        root,
        stand_ins,
        calls,
    }
}

/// PATH with the stand-ins first, then this build's `netfence`.
fn path(checkout: &Checkout) -> String {
    let netfence = Path::new(env!("CARGO_BIN_EXE_netfence"))
        .parent()
        .expect("a directory")
        .to_path_buf();
    let mut paths = vec![checkout.stand_ins.clone(), netfence];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths)
        .expect("PATH")
        .to_string_lossy()
        .into_owned()
}

/// Run `script` with bash as a CI runner does (`-e -o pipefail`), in the checkout; its exit code
/// and output.
fn bash(checkout: &Checkout, script: &str, env: &BTreeMap<String, String>) -> (i32, String) {
    let output = Command::new("bash")
        .args([
            "--noprofile",
            "--norc",
            "-e",
            "-o",
            "pipefail",
            "-c",
            script,
        ])
        .current_dir(&checkout.root)
        .envs(env)
        .env("PATH", path(checkout))
        .output()
        .expect("bash runs");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Replace GitHub's `${{ expression }}`s by their values; an expression the test does not know
/// fails it (a new one needs a value here).
fn expand(script: &str, values: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("a closed expression") + start;
        let expression = rest[start + 3..end].trim();
        let value = values
            .get(expression)
            .unwrap_or_else(|| panic!("the test gives no value to ${{{{ {expression} }}}}"));
        out.push_str(value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn step_named<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|step| step["name"] == name)
        .unwrap_or_else(|| panic!("a step named {name:?}"))
}

/// Run GitHub workflow `steps` in order in the checkout, as the runner would: `${{ }}`
/// expressions expanded, `if:` evaluated, each step's own `env` added; each step's name, exit
/// code and output.
fn run_steps(
    checkout: &Checkout,
    steps: &[Value],
    env: &BTreeMap<String, String>,
    output_file: &Path,
) -> Vec<(String, i32, String)> {
    let values = BTreeMap::from([
        ("github.token", "a-token"),
        ("github.event.pull_request.number", "42"),
    ]);
    let mut ran = Vec::new();
    for step in steps {
        let name = step["name"].as_str().expect("every step has a name");
        let script = expand(step["run"].as_str().expect("a run step"), &values);
        let outputs = std::fs::read_to_string(output_file).unwrap_or_default();
        let runs = match step.get("if").and_then(Value::as_str) {
            None => true,
            Some("steps.diff.outputs.status == '1'") => outputs.contains("status=1"),
            Some(condition) => panic!("the test cannot evaluate `if: {condition}`"),
        };
        if !runs {
            continue;
        }
        let mut step_env = env.clone();
        if let Some(own) = step["env"].as_object() {
            for (key, value) in own {
                step_env.insert(
                    key.clone(),
                    expand(value.as_str().unwrap_or_default(), &values),
                );
            }
        }
        let (code, output) = bash(checkout, &script, &step_env);
        ran.push((name.to_owned(), code, output));
    }
    ran
}

/// If this fails, the GitHub workflow a team copies does not check out the base branch, runs
/// netfence wrongly, posts something else than the diff, or does not fail on an opening.
#[test]
fn the_github_workflow_runs_and_posts_the_diff() {
    let workflow = read_yaml(&examples().join("ci/.github/workflows/netfence.yml"));
    assert!(workflow["on"]["pull_request"].is_object(), "{workflow}");
    assert_eq!(workflow["permissions"]["pull-requests"], "write");
    let job = &workflow["jobs"]["connectivity"];
    let steps = job["steps"].as_array().expect("steps");
    let checkout_step = &steps[0];
    assert!(
        checkout_step["uses"]
            .as_str()
            .is_some_and(|uses| uses.starts_with("actions/checkout@"))
            && checkout_step["with"]["fetch-depth"] == 0,
        "the whole history, so that origin/<base> exists: {checkout_step}"
    );
    let diff_step = step_named(steps, "netfence diff");
    assert!(
        diff_step["run"]
            .as_str()
            .is_some_and(|run| run.contains("netfence diff --git \"origin/$GITHUB_BASE_REF\"")),
        "{diff_step}"
    );

    let checkout = checkout();
    let output_file = checkout.root.join("github-output");
    let mut env: BTreeMap<String, String> = workflow["env"]
        .as_object()
        .expect("env")
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect();
    env.insert("GITHUB_BASE_REF".into(), "main".into());
    env.insert("GITHUB_REPOSITORY".into(), "netfence/shop".into());
    env.insert("GITHUB_OUTPUT".into(), output_file.display().to_string());
    env.insert(
        "GITHUB_STEP_SUMMARY".into(),
        checkout.root.join("summary.md").display().to_string(),
    );
    let ran = run_steps(&checkout, &steps[1..], &env, &output_file);
    let codes: Vec<(&str, i32)> = ran
        .iter()
        .map(|(name, code, _)| (name.as_str(), *code))
        .collect();
    assert_eq!(
        codes,
        [
            ("Install netfence", 0),
            ("netfence render", 0),
            ("netfence verify", 0),
            ("netfence diff", 0),
            ("Post the diff on the pull request", 0),
            ("Openings need a security review", 1),
        ],
        "{ran:#?}"
    );
    let comment =
        std::fs::read_to_string(checkout.root.join("netfence-diff.md")).expect("the diff");
    assert!(
        comment.starts_with("### netfence diff: 1 opened, 0 closed in 1 namespace")
            && comment.contains("| **opened** | frontend | database | 5432/TCP |")
            && comment.contains("```mermaid"),
        "{comment}"
    );
    let rendered = std::fs::read_to_string(checkout.root.join("rendered.yaml")).expect("rendered");
    assert!(rendered.contains("kind: NetworkPolicy"), "{rendered}");
    let calls = std::fs::read_to_string(&checkout.calls).expect("calls");
    assert!(
        calls.contains("gh api repos/netfence/shop/issues/42/comments --paginate")
            && calls.contains("gh pr comment 42 --body-file comment.md"),
        "looks for its own comment, then posts one: {calls}"
    );
    let posted = std::fs::read_to_string(checkout.root.join("comment.md")).expect("the comment");
    assert_eq!(posted, format!("<!-- netfence diff -->\n{comment}"));
    assert_eq!(
        step_named(steps, "Post the diff on the pull request")["continue-on-error"],
        true,
        "a fork's read-only token does not fail the job"
    );
}

/// If this fails, the GitLab job a team copies runs netfence wrongly, posts something else than
/// the diff, or does not fail on an opening.
#[test]
fn the_gitlab_job_runs_and_posts_the_diff() {
    let pipeline = read_yaml(&examples().join("ci/.gitlab-ci.yml"));
    let job = &pipeline["netfence"];
    assert!(
        job["rules"][0]["if"]
            .as_str()
            .is_some_and(|rule| rule.contains("merge_request_event")),
        "{job}"
    );
    let lines = |key: &str| -> Vec<String> {
        job[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}"))
            .iter()
            .map(|line| line.as_str().expect("a command").to_owned())
            .collect()
    };
    // GitLab runs before_script and script as one shell script.
    let mut script = lines("before_script");
    script.extend(lines("script"));
    let checkout = checkout();
    let mut env: BTreeMap<String, String> = job["variables"]
        .as_object()
        .expect("variables")
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect();
    for (key, value) in [
        ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main"),
        ("CI_API_V4_URL", "https://gitlab.example/api/v4"),
        ("CI_PROJECT_ID", "7"),
        ("CI_MERGE_REQUEST_IID", "42"),
        ("NETFENCE_GITLAB_TOKEN", "a-token"),
    ] {
        env.insert(key.into(), value.into());
    }
    let (code, output) = bash(&checkout, &script.join("\n"), &env);
    assert_eq!(code, 1, "the opening fails the job: {output}");
    assert!(
        output.contains("this change opens connections: a security review is needed"),
        "{output}"
    );
    let comment =
        std::fs::read_to_string(checkout.root.join("netfence-diff.md")).expect("the diff");
    assert!(
        comment.starts_with("### netfence diff: 1 opened, 0 closed in 1 namespace"),
        "{comment}"
    );
    let calls = std::fs::read_to_string(&checkout.calls).expect("calls");
    assert!(
        calls.contains("--data-urlencode body@netfence-diff.md https://gitlab.example/api/v4/projects/7/merge_requests/42/notes"),
        "{calls}"
    );
    assert!(
        job["artifacts"]["paths"]
            .as_array()
            .is_some_and(|paths| paths.iter().any(|path| path == "netfence-diff.md")),
        "{job}"
    );
}
