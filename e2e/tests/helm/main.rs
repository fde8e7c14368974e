//! The Helm chart (`config/helm/netfence/`) with the real `helm`, 3 and 4, built from their Go
//! modules (`e2e/upstream/helm3`, `helm4`) and cached like the control plane:
//!
//! ```text
//! helm lint --strict                   (3, 4) -> no warning
//! helm template, default values        (3, 4) == kubectl kustomize config/default, field for field
//!                                               (but its Namespace: Helm installs into one)
//! helm template, each value            (3, 4) -> the objects say what the value says, and
//!                                               netfence's own CLI parses the Deployment's args
//! helm template, bad or clashing values (3, 4) -> refused, naming the value
//! real control plane (NETFENCE_E2E_KUBECONFIG):
//!   helm 4 install + upgrade, every namespace   |  helm 3 install + upgrade, watchNamespace
//!   -> `netfence run` (the binary) with the Deployment's args and env and the chart's
//!      ServiceAccount token: a NamespaceIsolation becomes Ready, a tenant's edit of a generated
//!      policy is refused by the chart's admission policy, and once an upgrade turns that policy
//!      off an edit is restored; no request of the account is refused by RBAC (audit log)
//!   -> helm uninstall leaves the CRDs and the resources (Helm's rule)
//! ```
//!
//! Rendering needs no cluster and runs on both targets. Installing runs on the real control plane
//! only: the sandbox serves the kinds netfence reads and writes, not the Deployments, Secrets
//! (Helm's release records), RBAC objects and admission policies a chart installs.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

const CHART: &str = "config/helm/netfence";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repository().join(CHART)
}

/// One `helm` of the pins, with a home of its own (no repository, cache or plugin of the
/// machine's user is read or written).
struct Helm {
    program: PathBuf,
    version: String,
    home: tempfile::TempDir,
}

impl Helm {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        for (variable, folder) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            command.env(variable, self.home.path().join(folder));
        }
        command
            .env_remove("KUBECONFIG")
            .env_remove("HELM_NAMESPACE");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("helm {} does not run: {error}", self.version))
    }

    /// Run, require success, return what it printed (stdout, then stderr).
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "helm {} {args:?} failed:\n{printed}",
            self.version
        );
        printed
    }

    /// `helm template RELEASE CHART -n netfence-system --include-crds -f VALUES`: the objects, or
    /// what helm printed when it refused.
    fn template(&self, release: &str, values: &Value) -> Result<Vec<Value>, String> {
        let file = values_file(values);
        let output = self.run(&[
            "template",
            release,
            &chart().to_string_lossy(),
            "--namespace",
            "netfence-system",
            "--include-crds",
            "--values",
            &file.path().to_string_lossy(),
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "{}{}",
                stdout,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(parse(&format!("helm {} template", self.version), &stdout))
    }
}

/// Values as a file for `--values` (JSON is YAML).
fn values_file(values: &Value) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("a values file");
    file.write_all(values.to_string().as_bytes())
        .expect("the values are written");
    file
}

fn parse(source: &str, text: &str) -> Vec<Value> {
    netfence::manifests::parse(source, text)
        .unwrap_or_else(|error| panic!("{source} printed YAML that does not parse: {error}"))
        .into_iter()
        .map(|document| document.value)
        .collect()
}

/// Held while helm is found or built.
static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Helm 3 and 4, built on first use; none, with the skip said, when Go is not installed (the
/// README's test command needs only the Rust toolchain).
fn helms(test: &str) -> Vec<Helm> {
    let go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !go {
        netfence_e2e::skip(
            test,
            "Go is not installed: helm is built from its Go module (install Go 1.26)",
        );
        return Vec::new();
    }
    // One build at a time: the tests run on threads of one process, and the first builds what
    // the others then find in the cache.
    let _building = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    [3, 4]
        .into_iter()
        .map(|major| {
            let (program, version) = netfence_e2e::cluster::build::ensure_helm(major)
                .unwrap_or_else(|error| panic!("Helm {major} does not build: {error:#}"));
            Helm {
                program,
                version,
                home: tempfile::tempdir().expect("a helm home"),
            }
        })
        .collect()
}

/// [`helms`], for a test that needs kubectl too; none, with the skip said, without it.
fn helms_and_kubectl(test: &str) -> Vec<Helm> {
    let helms = helms(test);
    if helms.is_empty() {
        return helms;
    }
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !kubectl {
        netfence_e2e::skip(test, "kubectl is not installed");
        return Vec::new();
    }
    helms
}

/// The strings of a JSON list (none for anything else).
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

mod install;
mod render;
mod values;
