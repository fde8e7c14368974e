//! The chart installed for real: install, upgrade and uninstall with Helm 4 and 3 on the real
//! control plane, and `netfence run` working in between as the chart's ServiceAccount.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{Helm, chart, helms_and_kubectl, repository, strings};

/// kubectl against the real control plane, as the cluster's admin.
struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("kubectl reads its input");
        }
        child.wait_with_output().expect("kubectl ends")
    }

    /// Run, require success, return stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args, None);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl prints JSON")
    }

    fn exists(&self, args: &[&str]) -> bool {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        self.run(&all, None).status.success()
    }

    /// The status of an object's `Ready` condition (empty before it has one): `args` name it.
    fn ready(&self, args: &[&str]) -> String {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend([
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        self.ok(&all)
    }

    /// The NetworkPolicies netfence manages in `namespace`, as sorted `kubectl -o name` lines.
    fn managed_policies(&self, namespace: &str) -> Vec<String> {
        self.policies(namespace, "app.kubernetes.io/managed-by=netfence")
    }

    /// The NetworkPolicies of `namespace` that `selector` selects, as sorted `kubectl -o name`
    /// lines.
    fn policies(&self, namespace: &str, selector: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .ok(&[
                "-n",
                namespace,
                "get",
                "networkpolicies",
                "-l",
                selector,
                "-o",
                "name",
            ])
            .lines()
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    /// `kubectl apply --server-side` of one object.
    fn apply(&self, object: &Value) {
        let output = self.run(
            &[
                "apply",
                "--server-side",
                "--field-manager=netfence-e2e",
                "-f",
                "-",
            ],
            Some(&object.to_string()),
        );
        assert!(
            output.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Poll `check` every 200 ms until it holds, for at most `limit`; the last value of `what`
/// otherwise, in the panic.
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(()) => return,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {} s; last: {last}", limit.as_secs());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The `netfence` binary of this workspace (built if this test run has not built it yet).
fn netfence_binary() -> PathBuf {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(repository())
        .args(["build", "--quiet", "--locked", "-p", "netfence"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p netfence failed");
    // This test is target/<profile>/deps/helm-<hash>; the binary is target/<profile>/netfence.
    let binary = std::env::current_exe()
        .expect("the test's path")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("netfence");
    assert!(binary.is_file(), "{} was not built", binary.display());
    binary
}

/// A chart installed by one helm, and `netfence run` started as its Deployment would run it.
/// Dropping it stops the operator and removes what the test made.
struct Installed<'a> {
    helm: &'a Helm,
    kubectl: &'a Kubectl,
    release: String,
    namespace: String,
    team: String,
    /// The namespace a ClusterBaseline of the chart's covers (cluster-wide installs).
    base: String,
    operator: Option<Child>,
    log: PathBuf,
}

impl Installed<'_> {
    /// The objects' name (the release's, as the chart names them).
    fn name(&self) -> String {
        format!("{}-netfence", self.release)
    }

    fn helm(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        let kubeconfig = self.kubectl.kubeconfig.to_string_lossy().into_owned();
        all.extend(["--namespace", &self.namespace, "--kubeconfig", &kubeconfig]);
        self.helm.ok(&all)
    }

    fn deployment(&self) -> Value {
        self.kubectl
            .json(&["-n", &self.namespace, "get", "deployment", &self.name()])
    }

    /// `netfence run` with the container's arguments and environment as the kubelet would give
    /// them, `--kubeconfig` holding a token of the chart's ServiceAccount, and metrics on a
    /// loopback port of its own.
    fn start_operator(&mut self) {
        let deployment = self.deployment();
        let pod = &deployment["spec"]["template"]["spec"];
        let account = pod["serviceAccountName"]
            .as_str()
            .expect("a ServiceAccount");
        let token = self.kubectl.ok(&[
            "-n",
            &self.namespace,
            "create",
            "token",
            account,
            "--duration=1h",
        ]);
        let cluster = |field: &str| {
            self.kubectl.ok(&[
                "config",
                "view",
                "--minify",
                "--raw",
                // The authority's file, if the kubeconfig names one, as data.
                "--flatten",
                "-o",
                &format!("jsonpath={{.clusters[0].cluster.{field}}}"),
            ])
        };
        let kubeconfig = self.log.with_extension("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n  - name: c\n    cluster:\n      server: {}\n      certificate-authority-data: {}\nusers:\n  - name: operator\n    user:\n      token: {}\ncontexts:\n  - name: c\n    context: {{cluster: c, user: operator}}\ncurrent-context: c\n",
                cluster("server").trim(),
                cluster("certificate-authority-data").trim(),
                token.trim()
            ),
        )
        .expect("the operator's kubeconfig");
        let container = &pod["containers"][0];
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let args: Vec<String> = strings(&container["args"])
            .into_iter()
            .map(|arg| {
                if arg.starts_with("--metrics-addr=") {
                    format!("--metrics-addr=127.0.0.1:{port}")
                } else {
                    arg
                }
            })
            .collect();
        let mut command = Command::new(netfence_binary());
        command.args(&args).arg("--kubeconfig").arg(&kubeconfig);
        for variable in [
            "KUBECONFIG",
            "RUST_LOG",
            "NETFENCE_NAMESPACE",
            "NETFENCE_LEASE_NAME",
        ] {
            command.env_remove(variable);
        }
        for variable in container["env"].as_array().expect("env") {
            let name = variable["name"].as_str().expect("a name");
            let value = match variable["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => format!("{}-0", self.name()),
                Some("metadata.namespace") => self.namespace.clone(),
                Some(other) => panic!("the kubelet's {other} is not played here"),
                None => variable["value"].as_str().unwrap_or_default().to_owned(),
            };
            command.env(name, value);
        }
        let log = std::fs::File::create(&self.log).expect("the operator's log");
        command
            .stdout(Stdio::null())
            .stderr(log)
            .stdin(Stdio::null());
        eprintln!("netfence {}", args.join(" "));
        self.operator = Some(command.spawn().expect("netfence run starts"));
    }

    fn stop_operator(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Panic, with its log, if the operator has exited.
    fn exited(&mut self) {
        if let Some(child) = &mut self.operator
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("netfence run exited ({status}):\n{}", self.operator_log());
        }
    }

    fn operator_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        self.stop_operator();
        let kubeconfig = self.kubectl.kubeconfig.to_string_lossy().into_owned();
        let _ = self.helm.run(&[
            "uninstall",
            &self.release,
            "--namespace",
            &self.namespace,
            "--kubeconfig",
            &kubeconfig,
            "--ignore-not-found",
        ]);
        for namespace in [&self.team, &self.base, &self.namespace] {
            let _ = self.kubectl.run(
                &[
                    "delete",
                    "namespace",
                    namespace,
                    "--ignore-not-found",
                    "--wait=false",
                ],
                None,
            );
        }
    }
}

/// A merge patch that opens a default deny to every source.
const OPEN: &str = r#"{"spec":{"ingress":[{}]}}"#;

/// One install, upgrade and uninstall by `helm`, with `netfence run` working in between as the
/// chart's ServiceAccount: cluster-wide, or watching one namespace.
#[allow(clippy::too_many_lines)] // one scenario, step after step
fn install_run_upgrade_uninstall(helm: &Helm, kubectl: &Kubectl, namespace_scoped: bool) {
    let suffix = netfence_e2e::unique_suffix();
    let mut installed = Installed {
        helm,
        kubectl,
        release: format!("nf{suffix}"),
        namespace: format!("netfence-helm-{suffix}"),
        team: format!("helm-team-{suffix}"),
        base: format!("helm-base-{suffix}"),
        operator: None,
        log: std::env::temp_dir().join(format!("netfence-helm-{suffix}.log")),
    };
    let name = installed.name();
    let team = installed.team.clone();
    let namespace = installed.namespace.clone();
    let chart = chart().to_string_lossy().into_owned();
    let scope = if namespace_scoped {
        format!("watching {team}")
    } else {
        "cluster-wide".to_owned()
    };
    eprintln!(
        "helm {}: install {name} into {namespace}, {scope}",
        helm.version
    );
    kubectl.ok(&["create", "namespace", &team]);

    let watch = format!("watchNamespace={team}");
    let mut install = vec![
        "install",
        installed.release.as_str(),
        &chart,
        "--create-namespace",
        "--timeout",
        "2m",
    ];
    // Cluster-wide, with the chart's optional ClusterBaseline (NetworkPolicy engine), covering a
    // namespace of the test's own only.
    let base = installed.base.clone();
    let baseline_name = format!("helm-{suffix}");
    let baseline = format!(
        "clusterBaseline={}",
        serde_json::json!({
            "enabled": true,
            "name": baseline_name,
            "spec": {
                "engine": "NetworkPolicy",
                "namespaceSelector": {"matchLabels": {"netfence.io/helm-test": suffix}},
            },
        })
    );
    if namespace_scoped {
        install.extend(["--set", &watch]);
    } else {
        kubectl.ok(&["create", "namespace", &base]);
        kubectl.ok(&[
            "label",
            "namespace",
            &base,
            &format!("netfence.io/helm-test={suffix}"),
        ]);
        install.extend(["--set-json", &baseline]);
    }
    let printed = installed.helm(&install);
    assert!(
        printed.contains("Check that it works") && printed.contains(&format!("deployment/{name}")),
        "helm install does not print the chart's NOTES:\n{printed}"
    );
    let deployment = installed.deployment();
    assert_eq!(
        deployment["metadata"]["annotations"]["meta.helm.sh/release-name"],
        installed.release.as_str(),
        "Helm marks what it installed as the release's"
    );
    assert_eq!(
        kubectl.exists(&["clusterrole", &name]),
        !namespace_scoped,
        "a ClusterRole exactly when cluster-wide"
    );
    assert_eq!(
        kubectl.exists(&["-n", &team, "role", &name]),
        namespace_scoped,
        "a Role in the watched namespace exactly when namespace-scoped"
    );
    // A namespace-scoped release's cluster-wide names carry the watched namespace.
    let admission = if namespace_scoped {
        format!("{name}-{team}-generated-policies")
    } else {
        format!("{name}-generated-policies")
    };
    assert!(kubectl.exists(&["validatingadmissionpolicy", &admission]));

    // The operator, as the chart runs it, with the chart's ServiceAccount: its leader-election
    // Role, its ClusterRole or Role, and the admission policy that lets it write.
    let audit = installed
        .kubectl
        .kubeconfig
        .parent()
        .map(|directory| directory.join(netfence_e2e::cluster::AUDIT_LOG_FILE))
        .filter(|path| path.is_file())
        .map(|path| netfence_e2e::audit::AuditLog::open(&path));
    installed.start_operator();
    kubectl.apply(&netfence_e2e::shop(&team));
    wait_until(Duration::from_secs(90), "shop becomes Ready", || {
        installed.exited();
        let status = kubectl.ready(&["-n", &team, "namespaceisolation", "shop"]);
        if status == "True" {
            Ok(())
        } else {
            Err(format!(
                "Ready={status}; the operator's log:\n{}",
                installed.operator_log()
            ))
        }
    });
    let holder = kubectl.ok(&[
        "-n",
        &namespace,
        "get",
        "lease",
        &name,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(
        holder,
        format!("{name}-0"),
        "the operator leads by the chart's Lease"
    );
    if !namespace_scoped {
        wait_until(
            Duration::from_secs(90),
            "the chart's ClusterBaseline is Ready and enforced",
            || {
                let status = kubectl.ready(&["clusterbaseline", &baseline_name]);
                let written = kubectl.managed_policies(&base);
                if status == "True" && !written.is_empty() {
                    Ok(())
                } else {
                    Err(format!("Ready={status}, policies in {base}: {written:?}"))
                }
            },
        );
    }
    assert_eq!(
        kubectl.managed_policies(&team).len(),
        5,
        "shop's five policies"
    );

    // A tenant's edit (here the admin's: the policy binds every user) is refused once the API
    // server has loaded the chart's admission policy; netfence restores one that got in before.
    let patch = [
        "-n",
        team.as_str(),
        "patch",
        "networkpolicy",
        "shop-default-deny",
        "--type=merge",
        "-p",
        OPEN,
    ];
    wait_until(
        Duration::from_secs(30),
        "the chart's admission policy refuses an edit",
        || {
            let output = kubectl.run(&patch, None);
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            if output.status.success() {
                Err("the edit went through".to_owned())
            } else if stderr.contains(&admission) && stderr.contains("is generated by netfence") {
                Ok(())
            } else {
                Err(stderr)
            }
        },
    );

    // The NOTES' check, a server-side dry run of a deletion, is refused too.
    let dry_run = kubectl.run(
        &[
            "-n",
            &team,
            "delete",
            "networkpolicy",
            "shop-default-deny",
            "--dry-run=server",
        ],
        None,
    );
    assert!(
        !dry_run.status.success() && String::from_utf8_lossy(&dry_run.stderr).contains(&admission),
        "the NOTES' dry run is not refused: {}",
        String::from_utf8_lossy(&dry_run.stderr)
    );

    // Upgrade: the admission policy off, three replicas, text logs.
    installed.helm(&[
        "upgrade",
        installed.release.as_str(),
        &chart,
        "--reuse-values",
        "--set",
        "admissionPolicy.enabled=false",
        "--set",
        "replicas=3",
        "--set",
        "logFormat=text",
        "--timeout",
        "2m",
    ]);
    let upgraded = installed.deployment();
    assert_eq!(upgraded["spec"]["replicas"], 3);
    let args = strings(&upgraded["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--log-format=text".to_owned()), "{args:?}");
    assert_eq!(
        args.contains(&format!("--namespace={team}")),
        namespace_scoped,
        "{args:?}"
    );
    assert!(!kubectl.exists(&["validatingadmissionpolicy", &admission]));
    let history: Value = serde_json::from_str(&installed.helm(&[
        "history",
        installed.release.as_str(),
        "-o",
        "json",
    ]))
    .expect("helm history prints JSON");
    let revisions = history.as_array().expect("revisions");
    assert_eq!(revisions.len(), 2, "{history}");
    assert_eq!(revisions[1]["status"], "deployed", "{history}");

    // With the admission policy gone, an edit goes through, and netfence restores the policy.
    wait_until(
        Duration::from_secs(30),
        "an edit goes through without the admission policy",
        || {
            let output = kubectl.run(&patch, None);
            if output.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        },
    );
    wait_until(
        Duration::from_secs(60),
        "netfence restores the edited deny",
        || {
            let policy = kubectl.json(&["-n", &team, "get", "networkpolicy", "shop-default-deny"]);
            match &policy["spec"]["ingress"] {
                Value::Null => Ok(()),
                Value::Array(rules) if rules.is_empty() => Ok(()),
                other => Err(other.to_string()),
            }
        },
    );
    // Deleting the resource with `deletionPolicy: KeepDefaultDeny`: netfence reads the Namespace
    // (is it going?), keeps the deny and DNS policies and releases its finalizer; the garbage
    // collector takes the allows.
    kubectl.ok(&[
        "-n",
        &team,
        "patch",
        "namespaceisolation",
        "shop",
        "--type=merge",
        "-p",
        r#"{"spec":{"deletionPolicy":"KeepDefaultDeny"}}"#,
    ]);
    wait_until(
        Duration::from_secs(60),
        "netfence adds its finalizer",
        || {
            let resource = kubectl.json(&["-n", &team, "get", "namespaceisolation", "shop"]);
            if strings(&resource["metadata"]["finalizers"])
                .contains(&"netfence.io/deletion-policy".to_owned())
            {
                Ok(())
            } else {
                Err(resource["metadata"].to_string())
            }
        },
    );
    kubectl.ok(&[
        "-n",
        &team,
        "delete",
        "namespaceisolation",
        "shop",
        "--timeout=60s",
    ]);
    // Kept, they are no longer labelled as managed by netfence (nobody manages them), and
    // keep the label naming their resource, which a new `shop` takes them back by.
    wait_until(
        Duration::from_secs(60),
        "the deny and DNS policies stay, the allows go",
        || {
            let names = kubectl.policies(&team, "netfence.io/isolation=shop");
            if names
                == [
                    "networkpolicy.networking.k8s.io/shop-allow-dns",
                    "networkpolicy.networking.k8s.io/shop-default-deny",
                ]
                && kubectl.managed_policies(&team).is_empty()
            {
                Ok(())
            } else {
                Err(format!("{names:?}"))
            }
        },
    );
    installed.stop_operator();

    // Every request of the chart's ServiceAccount was granted by the chart's roles.
    let user = format!("system:serviceaccount:{namespace}:{name}");
    if let Some(audit) = &audit {
        let made: Vec<_> = audit
            .read()
            .into_iter()
            .filter(|audited| audited.user == user)
            .collect();
        assert!(made.len() > 10, "{user} made {} requests", made.len());
        let refused: Vec<String> = made
            .iter()
            .filter(|audited| audited.unauthorized)
            .map(|audited| format!("{} {}", audited.entry.verb, audited.entry.uri))
            .collect();
        assert!(
            refused.is_empty(),
            "RBAC refused the chart's ServiceAccount:\n{}",
            refused.join("\n")
        );
        eprintln!("{user}: {} requests, none refused", made.len());
    } else {
        let log = installed.operator_log();
        assert!(!log.contains("403"), "a request was refused:\n{log}");
        eprintln!("no audit log beside the kubeconfig: the operator's log shows no 403");
    }

    // Uninstall: Helm leaves the CRDs (and every resource of their kinds), and the kept policies.
    installed.helm(&["uninstall", installed.release.as_str(), "--timeout", "2m"]);
    for crd in netfence_crd::crds() {
        let crd_name = crd.metadata.name.unwrap_or_default();
        assert!(
            kubectl.exists(&["crd", &crd_name]),
            "helm uninstall removed {crd_name}"
        );
    }
    assert_eq!(
        kubectl.policies(&team, "netfence.io/isolation=shop").len(),
        2,
        "the kept policies stay"
    );
    assert!(!kubectl.exists(&["-n", &namespace, "deployment", &name]));
    assert!(!kubectl.exists(&["clusterrole", &name]));
    assert!(
        !kubectl.exists(&["clusterbaseline", &baseline_name]),
        "the chart's ClusterBaseline goes with the release"
    );
}

/// If this fails, the chart does not install or upgrade on a real API server, or netfence cannot
/// work with what it grants: see the module's picture.
#[test]
fn the_chart_installs_and_upgrades_and_netfence_runs_with_its_account() {
    let test = "the_chart_installs_and_upgrades_and_netfence_runs_with_its_account";
    let Some(kubeconfig) = std::env::var_os(netfence_e2e::KUBECONFIG_VARIABLE) else {
        netfence_e2e::skip(
            test,
            "the sandbox does not serve what a chart installs (Deployments, Secrets for Helm's release records, RBAC, admission policies); this runs on the real control plane",
        );
        return;
    };
    let helms = helms_and_kubectl(test);
    if helms.is_empty() {
        return;
    }
    let kubectl = Kubectl {
        kubeconfig: PathBuf::from(kubeconfig),
    };
    let by_major = |major: &str| {
        helms
            .iter()
            .find(|helm| helm.version.starts_with(major))
            .expect("Helm 3 and 4")
    };
    install_run_upgrade_uninstall(by_major("v4."), &kubectl, false);
    install_run_upgrade_uninstall(by_major("v3."), &kubectl, true);
}
