//! RBAC sufficiency: the operator, started as `config/manager/deployment.yaml` runs it (all
//! namespaces, leader election), goes through everything it does in production against the
//! sandbox or the real API server; every request it makes, read from the audit log, must be
//! granted by the roles `config/rbac/` binds to the Deployment's service account, and every grant
//! there must be either used or listed in [`UNEXERCISED`] with its reason. On the real server the
//! operator runs as a ServiceAccount bound to exactly those roles, so a missing grant is also a
//! real 403 (which fails the scenario at `Cluster::stop`).
//!
//! ```text
//! scenarios (test client) --> sandbox <-- operator (its own client, user agent OPERATOR_USER_AGENT)
//!                               |
//!                         audit log --filter by user agent--> (verb, group, resource) set
//!                                                              == grants of config/rbac (+ UNEXERCISED)
//! ```
//!
//! How audit entries become RBAC requests: `apply` (server-side apply) is the verb `patch`, and
//! also `create` when it created the object (the API server then authorizes `create` too);
//! a subresource is `resource/subresource`; `get`, `list` and `watch` are themselves. Discovery
//! requests (non-resource URLs) are granted to every authenticated user by the default
//! `system:discovery` binding; they are printed, not checked against config/rbac.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use clap::Parser;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::Namespace,
    networking::v1::NetworkPolicy,
    rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject},
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use netfence::{
    cli::{Cli, Command, run::Args},
    manifests::{self, Document},
};
use netfence_controller::{self as controller, metrics::Metrics};
use netfence_crd::{IsolationTemplate, NamespaceIsolation};
use netfence_e2e::{
    Cluster, eventually, example_isolations, shop, shop_without_database, skip, wait_for_reason,
};
use netfence_sandbox::AuditEntry;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The user agent of the operator's client: how the audit log tells its requests from the
/// test's own.
const OPERATOR_USER_AGENT: &str = "netfence-operator-rbac-test";

/// Grants in config/rbac that no scenario exercises yet, with the reason each is granted:
/// `(verb, group, resource, reason)`. A grant that a scenario starts to use must leave this list
/// (the test says so), and a grant that is neither used nor listed here fails the test.
const UNEXERCISED: &[(&str, &str, &str, &str)] = &[
    (
        "update",
        "netfence.io",
        "namespaceisolations/finalizers",
        "every generated NetworkPolicy's owner reference sets blockOwnerDeletion, which the \
         OwnerReferencesPermissionEnforcement admission plugin (OpenShift, hardened clusters) \
         allows only with update on the owner's finalizers; the sandbox does not run that plugin",
    ),
    (
        "update",
        "netfence.io",
        "isolationtemplates/finalizers",
        "generated NamespaceIsolations carry an owner reference with blockOwnerDeletion to their \
         template (OwnerReferencesPermissionEnforcement, as for namespaceisolations/finalizers)",
    ),
    (
        "update",
        "netfence.io",
        "clusterbaselines/finalizers",
        "what a ClusterBaseline renders carries an owner reference with blockOwnerDeletion to it \
         (OwnerReferencesPermissionEnforcement, as for namespaceisolations/finalizers)",
    ),
    ("list", "projectcalico.org", "globalnetworkpolicies", CALICO),
    ("get", "projectcalico.org", "globalnetworkpolicies", CALICO),
    (
        "watch",
        "projectcalico.org",
        "globalnetworkpolicies",
        CALICO,
    ),
    (
        "create",
        "projectcalico.org",
        "globalnetworkpolicies",
        CALICO,
    ),
    (
        "patch",
        "projectcalico.org",
        "globalnetworkpolicies",
        CALICO,
    ),
    (
        "delete",
        "projectcalico.org",
        "globalnetworkpolicies",
        CALICO,
    ),
    ("list", "projectcalico.org", "tiers", CALICO),
    ("get", "projectcalico.org", "tiers", CALICO),
    ("watch", "projectcalico.org", "tiers", CALICO),
    ("create", "projectcalico.org", "tiers", CALICO),
    ("patch", "projectcalico.org", "tiers", CALICO),
    ("delete", "projectcalico.org", "tiers", CALICO),
];

/// Why the Calico grants go unused here.
const CALICO: &str = "Calico's projectcalico.org/v3 kinds are served by the Calico API server, which \
    cannot run here (its module is refused by the Go module proxy), so no scenario writes them; the \
    grants are what the baseline controller needs for the Calico engine, as it has them for \
    ClusterNetworkPolicy and Cilium, which the scenarios exercise";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the repository")
        .to_path_buf()
}

fn documents(path: &str) -> Vec<Document> {
    manifests::load(&[repo().join(path)]).unwrap_or_else(|error| panic!("{error}"))
}

fn typed<T: serde::de::DeserializeOwned>(document: &Document) -> T {
    document.typed().unwrap_or_else(|error| {
        panic!(
            "{}: {} {}: {}: {}",
            document.source,
            document.kind(),
            document.name(),
            error.path,
            error.message
        )
    })
}

/// One request as RBAC authorizes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Request {
    verb: String,
    group: String,
    /// `plural` or `plural/subresource`.
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

impl Request {
    fn key(&self) -> (String, String, String) {
        (self.verb.clone(), self.group.clone(), self.resource.clone())
    }
}

/// The RBAC requests of the operator's audited requests (see the module doc for the mapping).
fn rbac_requests(entries: &[AuditEntry]) -> (Vec<Request>, Vec<String>) {
    let mut requests = Vec::new();
    let mut discovery = Vec::new();
    for entry in entries {
        if entry.verb == "discovery" {
            discovery.push(entry.uri.clone());
            continue;
        }
        let resource = match &entry.subresource {
            Some(subresource) => format!("{}/{subresource}", entry.resource),
            None => entry.resource.clone(),
        };
        let verbs: &[&str] = match entry.verb.as_str() {
            "apply" if entry.code == 201 => &["patch", "create"],
            "apply" => &["patch"],
            other => &[other],
        };
        for verb in verbs {
            requests.push(Request {
                verb: (*verb).to_owned(),
                group: entry.group.clone(),
                resource: resource.clone(),
                namespace: entry.namespace.clone(),
                name: entry.name.clone(),
            });
        }
    }
    (requests, discovery)
}

/// One verb on one resource, granted by a role bound to the service account.
#[derive(Clone, Debug)]
struct Grant {
    /// `ClusterRole netfence` or `Role netfence-system/netfence-leader-election`.
    role: String,
    verb: String,
    group: String,
    resource: String,
    /// Empty: any name.
    names: Vec<String>,
    /// `None`: every namespace (a ClusterRole bound by a ClusterRoleBinding).
    namespace: Option<String>,
}

impl Grant {
    fn allows(&self, request: &Request) -> bool {
        self.verb == request.verb
            && self.group == request.group
            && self.resource == request.resource
            && (self.names.is_empty()
                || request
                    .name
                    .as_ref()
                    .is_some_and(|name| self.names.contains(name)))
            && (self.namespace.is_none() || self.namespace == request.namespace)
    }

    fn key(&self) -> (String, String, String) {
        (self.verb.clone(), self.group.clone(), self.resource.clone())
    }
}

/// The grants of the roles config/rbac binds to the Deployment's service account. Wildcards are
/// refused outright: least privilege names every verb and resource.
fn grants(service_account: &Subject) -> Vec<Grant> {
    let rbac = documents("config/rbac");
    let mut cluster_roles = BTreeMap::new();
    let mut namespaced = BTreeMap::new();
    for document in &rbac {
        match document.kind() {
            "ClusterRole" => {
                let role: ClusterRole = typed(document);
                cluster_roles.insert(document.name().to_owned(), role.rules.unwrap_or_default());
            }
            "Role" => {
                let role: Role = typed(document);
                let namespace = role.metadata.namespace.clone().expect("a Role's namespace");
                namespaced.insert(
                    (namespace, document.name().to_owned()),
                    role.rules.unwrap_or_default(),
                );
            }
            _ => {}
        }
    }
    let binds = |subjects: Option<Vec<Subject>>| {
        subjects.unwrap_or_default().iter().any(|subject| {
            subject.kind == "ServiceAccount"
                && subject.name == service_account.name
                && subject.namespace == service_account.namespace
        })
    };
    let mut grants = Vec::new();
    for document in &rbac {
        match document.kind() {
            "ClusterRoleBinding" => {
                let binding: ClusterRoleBinding = typed(document);
                if !binds(binding.subjects) {
                    continue;
                }
                assert_eq!(binding.role_ref.kind, "ClusterRole", "{}", document.source);
                let rules = cluster_roles
                    .get(&binding.role_ref.name)
                    .unwrap_or_else(|| panic!("no ClusterRole {}", binding.role_ref.name));
                let role = format!("ClusterRole {}", binding.role_ref.name);
                grants.extend(expand(&role, rules, None));
            }
            "RoleBinding" => {
                let binding: RoleBinding = typed(document);
                if !binds(binding.subjects) {
                    continue;
                }
                let namespace = binding.metadata.namespace.clone().expect("namespace");
                assert_eq!(
                    binding.role_ref.kind, "Role",
                    "{}: netfence's namespaced grants are a Role of their own",
                    document.source
                );
                let rules = namespaced
                    .get(&(namespace.clone(), binding.role_ref.name.clone()))
                    .unwrap_or_else(|| panic!("no Role {namespace}/{}", binding.role_ref.name));
                let role = format!("Role {namespace}/{}", binding.role_ref.name);
                grants.extend(expand(&role, rules, Some(&namespace)));
            }
            _ => {}
        }
    }
    grants
}

fn expand(role: &str, rules: &[PolicyRule], namespace: Option<&str>) -> Vec<Grant> {
    let mut grants = Vec::new();
    for rule in rules {
        assert!(
            rule.non_resource_urls.is_none(),
            "{role}: netfence needs no non-resource URL"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for word in [group, resource, verb] {
                        assert_ne!(
                            word, "*",
                            "{role}: a wildcard grants more than netfence uses"
                        );
                    }
                    grants.push(Grant {
                        role: role.to_owned(),
                        verb: verb.clone(),
                        group: group.clone(),
                        resource: resource.clone(),
                        names: rule.resource_names.clone().unwrap_or_default(),
                        namespace: namespace.map(str::to_owned),
                    });
                }
            }
        }
    }
    grants
}

/// The Deployment of config/manager: its service account, and `netfence run` as its container
/// runs it (the arguments parsed by netfence's own CLI; the Lease namespace is the pod's own
/// when the Deployment passes it by the downward API).
fn deployment() -> (Subject, Args) {
    let documents = documents("config/manager/deployment.yaml");
    let deployment: Deployment = typed(&documents[0]);
    let namespace = deployment.metadata.namespace.clone().expect("namespace");
    let pod = deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .expect("a pod spec");
    let service_account = Subject {
        kind: "ServiceAccount".to_owned(),
        name: pod.service_account_name.clone().expect("a service account"),
        namespace: Some(namespace.clone()),
        ..Subject::default()
    };
    let container = &pod.containers[0];
    let arguments =
        std::iter::once("netfence".to_owned()).chain(container.args.clone().unwrap_or_default());
    let Command::Run(mut args) = Cli::try_parse_from(arguments)
        .unwrap_or_else(|error| panic!("the Deployment's arguments: {error}"))
        .command
    else {
        panic!("the Deployment does not run `netfence run`");
    };
    let from_pod_namespace = |name: &str| {
        container.env.iter().flatten().any(|variable| {
            variable.name == name
                && variable
                    .value_from
                    .as_ref()
                    .and_then(|from| from.field_ref.as_ref())
                    .is_some_and(|field| field.field_path == "metadata.namespace")
        })
    };
    if from_pod_namespace("NETFENCE_LEASE_NAMESPACE") {
        args.lease_namespace.clone_from(&namespace);
    }
    if from_pod_namespace("POD_NAMESPACE") {
        args.operator_namespace = namespace;
    }
    (service_account, args)
}

/// The operator under test: `netfence run`'s start (preflight, then the controller under leader
/// election for all namespaces), on a client of its own.
struct Operator {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    async fn start(client: Client, args: &Args) -> Operator {
        netfence::cli::run::preflight(&client, args.namespace.as_deref())
            .await
            .expect("preflight passes with the CRD installed");
        let settings = netfence::cli::run::settings(args, Some("netfence-0".to_owned()));
        let lease = controller::LeaseSettings {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: "netfence-0".to_owned(),
        };
        assert!(
            args.leader_election,
            "the Deployment runs two replicas: it must elect a leader"
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            controller::run_as_leader(
                client,
                &settings,
                &lease,
                Arc::new(Metrics::default()),
                Arc::new(AtomicBool::new(false)),
                async move {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("leader election runs");
        });
        Operator { stop, task }
    }

    /// Stop as on SIGTERM: the Lease is released.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// The template of the RBAC scenario, its shared service on `port`.
fn rbac_template(port: u16) -> IsolationTemplate {
    serde_json::from_value(json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "IsolationTemplate",
        "metadata": {"name": "rbac-baseline"},
        "spec": {
            "namespaceSelector": {"matchLabels": {"netfence.io/profile": "rbac"}},
            "isolationName": "baseline",
            "template": {"spec": {
                "tiers": [{"name": "web", "podSelector": {}}],
                "sharedServices": [{"name": "lb", "direction": "Ingress",
                    "namespace": "ingress-nginx", "ports": [{"port": port}]}],
            }},
        },
    }))
    .expect("an IsolationTemplate")
}

/// What the scenarios share: the cluster and the test's own client.
struct Scenarios {
    cluster: Cluster,
    client: Client,
}

impl Scenarios {
    fn isolations(&self, namespace: &str) -> Api<NamespaceIsolation> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn policies(&self, namespace: &str) -> Api<NetworkPolicy> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn namespace(&self, prefix: &str) -> String {
        self.cluster
            .namespace(prefix)
            .await
            .expect("namespace created")
            .name
    }

    async fn create(&self, mut resource: Value, namespace: &str) -> String {
        resource["metadata"]["namespace"] = json!(namespace);
        let resource: NamespaceIsolation =
            serde_json::from_value(resource).expect("a NamespaceIsolation");
        let name = resource.metadata.name.clone().expect("name");
        self.isolations(namespace)
            .create(&PostParams::default(), &resource)
            .await
            .expect("created");
        name
    }

    async fn reason(&self, namespace: &str, name: &str, reason: &str) {
        wait_for_reason(&self.isolations(namespace), name, reason)
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
    }

    /// Whether `namespace` holds a NamespaceIsolation `name` (false when the read fails).
    async fn holds(&self, namespace: &str, name: &str) -> Option<bool> {
        self.isolations(namespace)
            .get_opt(name)
            .await
            .ok()
            .map(|found| found.is_some())
    }

    async fn until(&self, what: &str, check: impl AsyncFn() -> bool) {
        let done = eventually(Duration::from_secs(20), || async {
            check().await.then_some(())
        })
        .await;
        assert!(done.is_some(), "never happened: {what}");
    }

    /// ClusterBaselines with the ClusterNetworkPolicy engine (Orphan: a finalizer, then its
    /// objects orphaned) and the Cilium engine (Delete: garbage collection): rendered, a drifted
    /// object restored, an object pruned when its namespace leaves.
    async fn baselines(&self) {
        let run = netfence_e2e::unique_suffix();
        let label = "netfence.io/rbac-baseline";
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let mut covered = Vec::new();
        for prefix in ["rbac-baseline-a", "rbac-baseline-b"] {
            let name = self.namespace(prefix).await;
            namespaces
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {label: run}}})),
                )
                .await
                .expect("labelled");
            covered.push(name);
        }
        for (engine, deletion, group, version, plural) in [
            (
                "ClusterNetworkPolicy",
                "Orphan",
                "policy.networking.k8s.io",
                "v1alpha2",
                "clusternetworkpolicies",
            ),
            (
                "Cilium",
                "Delete",
                "cilium.io",
                "v2",
                "ciliumclusterwidenetworkpolicies",
            ),
        ] {
            self.one_baseline(
                engine,
                deletion,
                (group, version, plural),
                label,
                &run,
                &covered[0],
            )
            .await;
        }
    }

    /// One baseline of [`Scenarios::baselines`]: rendered, restored, pruned, deleted.
    async fn one_baseline(
        &self,
        engine: &str,
        deletion: &str,
        (group, version, plural): (&str, &str, &str),
        label: &str,
        run: &str,
        covered: &str,
    ) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let baselines: Api<netfence_crd::ClusterBaseline> = Api::all(self.client.clone());
        let name = format!("rbac-{}-{run}", engine.to_lowercase());
        let baseline: netfence_crd::ClusterBaseline = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "engine": engine,
                "namespaceSelector": {"matchLabels": {label: run}},
                "sameNamespace": "Allow",
                "deletionPolicy": deletion,
            },
        }))
        .expect("a ClusterBaseline");
        baselines
            .create(&PostParams::default(), &baseline)
            .await
            .expect("created");
        let resource = kube::api::ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: format!("{group}/{version}"),
            kind: String::new(),
            plural: plural.to_owned(),
        };
        let objects: Api<kube::api::DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let same = format!("{name}-same-namespace-{covered}");
        // Every object written (they are applied one after another) before one is deleted.
        self.until(&format!("{engine}: rendered"), async || {
            objects.get_opt(&same).await.ok().flatten().is_some()
                && objects
                    .get_opt(&format!("{name}-baseline"))
                    .await
                    .ok()
                    .flatten()
                    .is_some()
        })
        .await;
        objects
            .delete(&format!("{name}-baseline"), &DeleteParams::default())
            .await
            .expect("deleted");
        self.until(&format!("{engine}: restored"), async || {
            objects
                .get_opt(&format!("{name}-baseline"))
                .await
                .ok()
                .flatten()
                .is_some()
        })
        .await;
        namespaces
            .patch(
                covered,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {label: null}}})),
            )
            .await
            .expect("unlabelled");
        self.until(&format!("{engine}: pruned"), async || {
            objects.get_opt(&same).await.ok().flatten().is_none()
        })
        .await;
        namespaces
            .patch(
                covered,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {label: run}}})),
            )
            .await
            .expect("labelled again");
        baselines
            .delete(&name, &DeleteParams::default())
            .await
            .expect("deleted");
        self.until(&format!("{engine}: baseline gone"), async || {
            baselines.get_opt(&name).await.ok().flatten().is_none()
        })
        .await;
        // Orphaned objects are the cluster's now: the scenario removes its own.
        let list = objects
            .list(&kube::api::ListParams::default().labels(&format!("netfence.io/baseline={name}")))
            .await
            .expect("list");
        for object in list.items {
            let _ = objects
                .delete(
                    &kube::ResourceExt::name_any(&object),
                    &DeleteParams::default(),
                )
                .await;
        }
    }

    /// A template generates a NamespaceIsolation per labelled namespace, updates them on an
    /// edit, removes one from a namespace that loses the label, reports a hand-written one as a
    /// conflict, and its generated resources go with it.
    async fn templates(&self) {
        let labels = BTreeMap::from([("netfence.io/profile".to_owned(), "rbac".to_owned())]);
        let mut namespaces = Vec::new();
        for _ in 0..2 {
            let namespace = self
                .cluster
                .namespace_labelled("team", &labels)
                .await
                .expect("namespace created");
            namespaces.push(namespace.name);
        }
        let hand_written = self
            .cluster
            .namespace_labelled("team-own", &labels)
            .await
            .expect("namespace created")
            .name;
        self.create(
            json!({
                "apiVersion": "netfence.io/v1alpha1",
                "kind": "NamespaceIsolation",
                "metadata": {"name": "baseline"},
                "spec": {"isolate": ["Ingress"]},
            }),
            &hand_written,
        )
        .await;
        let templates: Api<IsolationTemplate> = Api::all(self.client.clone());
        templates
            .create(&PostParams::default(), &rbac_template(80))
            .await
            .expect("template created");
        for namespace in &namespaces {
            self.until("the template generates its resource", async || {
                self.holds(namespace, "baseline").await == Some(true)
            })
            .await;
            self.reason(namespace, "baseline", "Reconciled").await;
        }
        self.until(
            "the template reports the hand-written conflict",
            async || {
                templates
                    .get("rbac-baseline")
                    .await
                    .ok()
                    .and_then(|t| t.status)
                    .is_some_and(|s| s.conflicts.iter().any(|c| c.namespace == hand_written))
            },
        )
        .await;
        templates
            .patch(
                "rbac-baseline",
                &PatchParams::default(),
                &Patch::Merge(serde_json::to_value(rbac_template(8080)).expect("json")),
            )
            .await
            .expect("template edited");
        let first = namespaces[0].clone();
        self.until("the edit reaches the generated resource", async || {
            self.isolations(&first)
                .get("baseline")
                .await
                .is_ok_and(|isolation| {
                    serde_json::to_string(&isolation.spec.shared_services)
                        .is_ok_and(|text| text.contains("8080"))
                })
        })
        .await;
        let namespace_api: Api<Namespace> = Api::all(self.client.clone());
        namespace_api
            .patch(
                &first,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"netfence.io/profile": null}}})),
            )
            .await
            .expect("relabelled");
        self.until("the released namespace loses its resource", async || {
            self.holds(&first, "baseline").await == Some(false)
        })
        .await;
        templates
            .delete("rbac-baseline", &DeleteParams::default())
            .await
            .expect("template deleted");
        let second = namespaces[1].clone();
        self.until("the generated resources go with the template", async || {
            self.holds(&second, "baseline").await == Some(false)
        })
        .await;
    }

    /// Every example users copy (every field of the spec between them: tiers, flows, shared
    /// services by namespace, selector and ipBlock, sameNamespace, DNS ipBlocks, deletion
    /// policies) is reconciled: policies applied, status written, Events published.
    async fn examples(&self) {
        let isolations = example_isolations().expect("examples/");
        assert!(
            isolations.len() >= 5,
            "the examples hold {} NamespaceIsolations",
            isolations.len()
        );
        for (_, resource) in isolations {
            let prefix = resource["metadata"]["namespace"]
                .as_str()
                .expect("namespace")
                .to_owned();
            let namespace = self.namespace(&prefix).await;
            let name = self.create(resource, &namespace).await;
            self.reason(&namespace, &name, "Reconciled").await;
        }
    }

    /// Drift: a deleted policy and an edited one are restored, twice for the same policy (the
    /// second DriftCorrected Event of a series is a patch).
    async fn drift(&self) {
        let namespace = self.namespace("rbac-drift").await;
        self.create(shop(&namespace), &namespace).await;
        self.reason(&namespace, "shop", "Reconciled").await;
        let policies = self.policies(&namespace);
        for _ in 0..2 {
            policies
                .delete("shop-tier-backend", &DeleteParams::default())
                .await
                .expect("delete");
            self.until("shop-tier-backend restored", async || {
                policies
                    .get_opt("shop-tier-backend")
                    .await
                    .expect("get")
                    .is_some()
            })
            .await;
        }
        policies
            .patch(
                "shop-tier-frontend",
                &PatchParams::default(),
                &Patch::Merge(
                    &json!({"spec": {"podSelector": {"matchLabels": {"tier": "other"}}}}),
                ),
            )
            .await
            .expect("edit");
        self.until("shop-tier-frontend restored", async || {
            policies
                .get("shop-tier-frontend")
                .await
                .expect("get")
                .spec
                .and_then(|spec| spec.pod_selector)
                .and_then(|selector| selector.match_labels)
                .and_then(|labels| labels.get("tier").cloned())
                .as_deref()
                == Some("frontend")
        })
        .await;
    }

    /// Spec changes: a tier removed (its policy pruned), an invalid spec (InvalidSpec, nothing
    /// written), DryRun (status only), a foreign policy holding a generated name (reported).
    async fn spec_changes(&self) {
        let namespace = self.namespace("rbac-change").await;
        let isolations = self.isolations(&namespace);
        self.create(shop(&namespace), &namespace).await;
        self.reason(&namespace, "shop", "Reconciled").await;
        isolations
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(&shop_without_database()),
            )
            .await
            .expect("remove a tier");
        self.reason(&namespace, "shop", "Reconciled").await;
        self.until("shop-tier-database pruned", async || {
            self.policies(&namespace)
                .get_opt("shop-tier-database")
                .await
                .expect("get")
                .is_none()
        })
        .await;
        isolations
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"tiers": [
                    {"name": "frontend", "podSelector": {"matchLabels": {"tier": "-bad-"}}},
                    {"name": "backend", "podSelector": {"matchLabels": {"tier": "backend"}}},
                ]}})),
            )
            .await
            .expect("admitted");
        self.reason(&namespace, "shop", "InvalidSpec").await;
        isolations
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"mode": "DryRun", "tiers": shop(&namespace)["spec"]["tiers"]}})),
            )
            .await
            .expect("DryRun");
        self.reason(&namespace, "shop", "DryRun").await;

        let squatter: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"name": "taken-tier-backend"},
            "spec": {"podSelector": {"matchLabels": {"mine": "yes"}}},
        }))
        .expect("policy");
        self.policies(&namespace)
            .create(&PostParams::default(), &squatter)
            .await
            .expect("foreign policy");
        let mut taken = shop(&namespace);
        taken["metadata"]["name"] = json!("taken");
        self.create(taken, &namespace).await;
        self.reason(&namespace, "taken", "ApplyFailed").await;
    }

    /// Deletion: each deletionPolicy (Delete by garbage collection; Orphan and KeepDefaultDeny
    /// through the finalizer), and a namespace deleted under a KeepDefaultDeny resource (the
    /// finalizer is released at once).
    async fn deletion(&self) {
        for policy in ["Delete", "Orphan", "KeepDefaultDeny"] {
            let namespace = self
                .namespace(&format!("rbac-{}", policy.to_lowercase()))
                .await;
            let mut resource = shop(&namespace);
            resource["spec"]["deletionPolicy"] = json!(policy);
            self.create(resource, &namespace).await;
            self.reason(&namespace, "shop", "Reconciled").await;
            self.isolations(&namespace)
                .delete("shop", &DeleteParams::default())
                .await
                .expect("delete");
            self.until(&format!("{policy}: resource gone"), async || {
                self.isolations(&namespace)
                    .get_opt("shop")
                    .await
                    .expect("get")
                    .is_none()
            })
            .await;
        }
        let namespace = self.namespace("rbac-namespace-gone").await;
        let mut resource = shop(&namespace);
        resource["spec"]["deletionPolicy"] = json!("KeepDefaultDeny");
        self.create(resource, &namespace).await;
        self.reason(&namespace, "shop", "Reconciled").await;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces
            .delete(&namespace, &DeleteParams::default())
            .await
            .expect("delete the namespace");
        self.until("the namespace is gone", async || {
            namespaces.get_opt(&namespace).await.expect("get").is_none()
        })
        .await;
    }
}

/// Every request is granted, and every grant is used or listed in [`UNEXERCISED`] (and every
/// entry there is granted and still unused).
fn assert_exactly_granted(
    requests: &[Request],
    observed: &BTreeSet<(String, String, String)>,
    grants: &[Grant],
) {
    let refused: BTreeSet<String> = requests
        .iter()
        .filter(|request| !grants.iter().any(|grant| grant.allows(request)))
        .map(|request| {
            format!(
                "{} {}/{} namespace={} name={}",
                request.verb,
                request.group,
                request.resource,
                request.namespace.as_deref().unwrap_or("<cluster>"),
                request.name.as_deref().unwrap_or("<none>")
            )
        })
        .collect();
    assert!(
        refused.is_empty(),
        "config/rbac does not grant these requests of the operator:\n{}",
        refused.into_iter().collect::<Vec<_>>().join("\n")
    );

    let unexercised: BTreeMap<(String, String, String), &str> = UNEXERCISED
        .iter()
        .map(|(verb, group, resource, reason)| {
            (
                (
                    (*verb).to_owned(),
                    (*group).to_owned(),
                    (*resource).to_owned(),
                ),
                *reason,
            )
        })
        .collect();
    let unused: BTreeSet<String> = grants
        .iter()
        .filter(|grant| !observed.contains(&grant.key()) && !unexercised.contains_key(&grant.key()))
        .map(|grant| {
            format!(
                "{}: {} {}/{}",
                grant.role, grant.verb, grant.group, grant.resource
            )
        })
        .collect();
    assert!(
        unused.is_empty(),
        "config/rbac grants what no scenario uses; remove it, or list it in UNEXERCISED with the reason:\n{}",
        unused.into_iter().collect::<Vec<_>>().join("\n")
    );
    let stale: Vec<String> = unexercised
        .keys()
        .filter(|key| observed.contains(*key) || !grants.iter().any(|grant| &grant.key() == *key))
        .map(|(verb, group, resource)| format!("{verb} {group}/{resource}"))
        .collect();
    assert!(
        stale.is_empty(),
        "UNEXERCISED lists grants that are now used, or no longer granted; remove them: {stale:?}"
    );
}

/// If this fails, netfence as installed by `kubectl apply -k config/default` is refused a request
/// it needs (reconciles fail with 403 and the namespace is not isolated, or leader election never
/// starts), or config/rbac grants something netfence never uses (more than least privilege).
/// The message names each request or grant.
#[tokio::test]
async fn config_rbac_grants_exactly_what_the_operator_uses() {
    let cluster = Cluster::start().await.expect("a cluster to test against");
    if !cluster.has_audit() {
        skip(
            "config_rbac_grants_exactly_what_the_operator_uses",
            "it reads the audit log, and this cluster's is not readable here (set NETFENCE_E2E_AUDIT_LOG)",
        );
        cluster.stop().await;
        return;
    }
    let (service_account, args) = deployment();
    let grants = grants(&service_account);
    assert!(
        !grants.is_empty(),
        "config/rbac binds nothing to {service_account:?}"
    );

    let mut config = cluster.operator_config();
    config.headers.push((
        "user-agent".try_into().expect("header name"),
        OPERATOR_USER_AGENT.try_into().expect("header value"),
    ));
    let operator_client = Client::try_from(config).expect("operator client");
    let client = cluster.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let lease_namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": args.lease_namespace},
    }))
    .expect("namespace");
    // The real cluster's harness made it already (its ServiceAccounts live there).
    match namespaces
        .create(&PostParams::default(), &lease_namespace)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("the operator's namespace: {error}"),
    }

    // The engines' CRDs first: the baseline controller discovers them when it starts.
    netfence_e2e::install_engine_crds(&client)
        .await
        .expect("the engines' CRDs");
    let operator = Operator::start(operator_client, &args).await;
    let scenarios = Scenarios { cluster, client };
    scenarios.examples().await;
    scenarios.drift().await;
    scenarios.spec_changes().await;
    scenarios.deletion().await;
    scenarios.templates().await;
    scenarios.baselines().await;
    operator.stop().await;

    let operator_entries: Vec<AuditEntry> = scenarios
        .cluster
        .audit()
        .await
        .into_iter()
        .filter(|entry| entry.user_agent == OPERATOR_USER_AGENT)
        .collect();
    let (requests, discovery) = rbac_requests(&operator_entries);
    let observed: BTreeSet<(String, String, String)> = requests.iter().map(Request::key).collect();
    eprintln!("the operator's requests, as RBAC authorizes them (verb, group, resource):");
    for (verb, group, resource) in &observed {
        eprintln!(
            "  {verb:<7} {:<22} {resource}",
            if group.is_empty() { "\"\"" } else { group }
        );
    }
    eprintln!("discovery requests: {discovery:?}");

    assert_exactly_granted(&requests, &observed, &grants);
    scenarios.cluster.stop().await;
}
