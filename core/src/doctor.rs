//! `netfence doctor`'s checks (pure): what a cluster holds in, the common mistakes that break
//! zero trust out, each with its severity, what it means and the fix.
//!
//! ```text
//! Snapshot { DaemonSets, namespaces, pods, Services, NamespaceIsolations, ClusterBaselines, served engines }
//!   --check--> [Finding { severity, check, subject, message, fix }]
//! ```
//!
//! The command reads (only reads) the snapshot; a list it may not read is a finding too, never
//! a silent gap.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Namespace, Pod, Service},
};
use netfence_crd::{ClusterBaseline, NamespaceIsolation, isolation::NAMESPACE_NAME_LABEL};
use serde::Serialize;

use crate::{
    ValidatedIsolation,
    audit::{DnsNamespace, DnsReality, ISOLATED, dns_reality},
    baseline::plan::{Served, engine_for},
    status::READY,
};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Zero trust is broken or not in force: the command exits 1.
    Error,
    /// Something to look at.
    Warning,
    /// Checked and fine.
    Ok,
}

impl Severity {
    /// `ERROR`, `WARNING`, `OK`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Ok => "OK",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// Which check: `crds`, `cni`, `dns`, `namespace-labels`, `host-network`, `isolations`,
    /// `baselines`.
    pub check: &'static str,
    /// What it is about (`kube-system/kube-flannel-ds`, `shop/shop`), or empty.
    pub subject: String,
    /// What it means.
    pub message: String,
    /// What to do; empty for `Ok`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

/// A list the command could not read: its findings are then unknown, and said so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unread {
    /// What (`DaemonSets in all namespaces`).
    pub what: String,
    /// Why (the API server's answer).
    pub why: String,
}

/// What the command read from the cluster.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `--namespace`, when the checks are about one namespace.
    pub namespace: Option<String>,
    /// Whether netfence's NamespaceIsolation kind is served.
    pub isolations_served: bool,
    /// The DaemonSets of every namespace (the CNI's).
    pub daemon_sets: Vec<DaemonSet>,
    /// The namespaces (or the one of `--namespace`).
    pub namespaces: Vec<Namespace>,
    /// The NamespaceIsolations (of `--namespace`, or all).
    pub isolations: Vec<NamespaceIsolation>,
    /// The pods of the namespaces with a NamespaceIsolation, and of their DNS namespaces.
    pub pods: BTreeMap<String, Vec<Pod>>,
    /// The Services of the DNS namespaces.
    pub services: BTreeMap<String, Vec<Service>>,
    /// The ClusterBaselines.
    pub baselines: Vec<ClusterBaseline>,
    /// Which ClusterBaseline engines' kinds are served.
    pub served: Served,
    /// What could not be read.
    pub unread: Vec<Unread>,
}

/// A CNI or policy engine, recognised by a DaemonSet's name or a container image.
struct Engine {
    name: &'static str,
    /// DaemonSet names, or image fragments (`/calico/node`).
    marks: &'static [&'static str],
    enforces: bool,
}

/// What `cni` recognises. Canal is Flannel with Calico's policy engine (`calico-node` or
/// `canal`); GKE Dataplane V2 is Cilium (`anetd`); AKS's Network Policy Manager is `azure-npm`;
/// EKS enforces with the VPC CNI's network policy agent, a container of `aws-node` (see
/// [`recognise`]).
const ENGINES: &[Engine] = &[
    Engine {
        name: "Calico",
        marks: &["calico-node", "/calico/node"],
        enforces: true,
    },
    Engine {
        name: "Canal",
        marks: &["canal"],
        enforces: true,
    },
    Engine {
        name: "Cilium",
        marks: &["cilium", "cilium-agent", "/cilium/cilium"],
        enforces: true,
    },
    Engine {
        name: "GKE Dataplane V2 (Cilium)",
        marks: &["anetd"],
        enforces: true,
    },
    Engine {
        name: "Antrea",
        marks: &["antrea-agent", "/antrea/antrea"],
        enforces: true,
    },
    Engine {
        name: "kube-router",
        marks: &["kube-router", "/cloudnativelabs/kube-router"],
        enforces: true,
    },
    Engine {
        name: "Weave Net",
        marks: &["weave-net", "/weaveworks/weave-npc"],
        enforces: true,
    },
    Engine {
        name: "kube-network-policies",
        marks: &["kube-network-policies"],
        enforces: true,
    },
    Engine {
        name: "Azure Network Policy Manager",
        marks: &["azure-npm"],
        enforces: true,
    },
    Engine {
        name: "Amazon VPC CNI network policy agent",
        marks: &["aws-network-policy-agent"],
        enforces: true,
    },
    Engine {
        name: "OVN-Kubernetes",
        marks: &["ovnkube-node"],
        enforces: true,
    },
    Engine {
        name: "Kube-OVN",
        marks: &["kube-ovn-cni"],
        enforces: true,
    },
    Engine {
        name: "Flannel",
        marks: &["kube-flannel-ds", "flannel", "/flannel/flannel"],
        enforces: false,
    },
    Engine {
        name: "kindnet",
        marks: &["kindnet", "/kindnetd"],
        enforces: false,
    },
    Engine {
        name: "Amazon VPC CNI",
        marks: &["aws-node"],
        enforces: false,
    },
];

/// Every finding about `snapshot`, errors first.
#[must_use]
pub fn check(snapshot: &Snapshot) -> Vec<Finding> {
    let mut findings = Vec::new();
    for unread in &snapshot.unread {
        findings.push(Finding {
            severity: Severity::Warning,
            check: "access",
            subject: String::new(),
            message: format!(
                "cannot read {}: {}; the checks that need them are incomplete",
                unread.what, unread.why
            ),
            fix: "run netfence doctor with credentials that can list them (it only reads)"
                .to_owned(),
        });
    }
    if !snapshot.isolations_served {
        findings.push(finding(
            Severity::Error,
            "crds",
            "",
            "netfence's CRDs are not installed: no NamespaceIsolation can exist",
            "kubectl apply -k config/default (or config/crd)",
        ));
    }
    findings.extend(cni(snapshot));
    findings.extend(dns(snapshot));
    findings.extend(namespace_labels(snapshot));
    findings.extend(host_network(snapshot));
    findings.extend(isolations(snapshot));
    findings.extend(baselines(snapshot));
    findings.sort_by_key(|finding| finding.severity);
    findings
}

fn finding(
    severity: Severity,
    check: &'static str,
    subject: &str,
    message: &str,
    fix: &str,
) -> Finding {
    Finding {
        severity,
        check,
        subject: subject.to_owned(),
        message: message.to_owned(),
        fix: fix.to_owned(),
    }
}

fn key(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        metadata.namespace.as_deref().unwrap_or_default(),
        metadata.name.as_deref().unwrap_or_default()
    )
}

/// The engines a DaemonSet stands for.
/// The Amazon VPC CNI's network policy agent: a container of `aws-node`, enforcing only when
/// started with `--enable-network-policy=true`.
static VPC_CNI_POLICY_AGENT: Engine = Engine {
    name: "Amazon VPC CNI network policy agent",
    marks: &[],
    enforces: true,
};

fn recognise(daemon_set: &DaemonSet) -> Vec<&'static Engine> {
    let containers = crate::audit::containers(daemon_set);
    let agent = containers.iter().any(|container| {
        container
            .image
            .as_deref()
            .is_some_and(|image| image.contains("aws-network-policy-agent"))
            && container
                .args
                .iter()
                .flatten()
                .any(|argument| argument == "--enable-network-policy=true")
    });
    if agent {
        return vec![&VPC_CNI_POLICY_AGENT];
    }
    let name = daemon_set.metadata.name.as_deref().unwrap_or_default();
    let images: Vec<&str> = containers
        .iter()
        .filter_map(|container| container.image.as_deref())
        .collect();
    ENGINES
        .iter()
        .filter(|engine| {
            engine.marks.iter().any(|mark| {
                if mark.starts_with('/') {
                    images.iter().any(|image| image.contains(mark))
                } else {
                    name == *mark
                }
            })
        })
        .collect()
}

fn cni(snapshot: &Snapshot) -> Vec<Finding> {
    let mut enforcing = Vec::new();
    let mut other = Vec::new();
    for daemon_set in &snapshot.daemon_sets {
        for engine in recognise(daemon_set) {
            let found = format!("{} (DaemonSet {})", engine.name, key(&daemon_set.metadata));
            if engine.enforces {
                enforcing.push(found);
            } else {
                other.push(found);
            }
        }
    }
    if !enforcing.is_empty() {
        return vec![finding(
            Severity::Ok,
            "cni",
            "",
            &format!("{} enforces NetworkPolicy", enforcing.join(", ")),
            "",
        )];
    }
    if !other.is_empty() {
        return vec![finding(
            Severity::Error,
            "cni",
            "",
            &format!(
                "{} handles pod networking and does not enforce NetworkPolicy, and nothing else here does: the policies netfence writes are stored and will not be enforced (every pod reaches every pod)",
                other.join(", ")
            ),
            "install a NetworkPolicy engine: Calico's policy beside Flannel (Canal), or a CNI that enforces it (Calico, Cilium, Antrea, kube-router); on EKS enable the VPC CNI's network policy agent",
        )];
    }
    vec![finding(
        Severity::Warning,
        "cni",
        "",
        "no NetworkPolicy engine recognised among the DaemonSets (kubenet, or an engine that runs outside the cluster's DaemonSets?): nothing here shows that the policies are enforced",
        "check that the cluster's network plugin enforces NetworkPolicy (a pod denied by a policy must not connect)",
    )]
}

/// The DNS checks of `netfence run` (condition DNSReachable), for each resource, or for the
/// defaults when there is none.
fn dns(snapshot: &Snapshot) -> Vec<Finding> {
    let default;
    let mut subjects: Vec<(String, &NamespaceIsolation)> = snapshot
        .isolations
        .iter()
        .map(|isolation| (key(&isolation.metadata), isolation))
        .collect();
    if subjects.is_empty() {
        default =
            NamespaceIsolation::new("default-dns", crate::validate::baseline::isolation_spec());
        subjects.push(("the default spec.dns".to_owned(), &default));
    }
    let mut findings = Vec::new();
    for (subject, resource) in subjects {
        let Ok(isolation) = ValidatedIsolation::try_from(resource) else {
            continue;
        };
        let Some(valid) = isolation.dns() else {
            continue;
        };
        let namespace = resource.spec.dns.namespace.as_str();
        // Pods that could not be read are an access warning already, not "no DNS pod".
        if !snapshot.pods.contains_key(namespace) {
            continue;
        }
        let pods: Vec<&Pod> = snapshot.pods.get(namespace).into_iter().flatten().collect();
        let services: Vec<&Service> = snapshot
            .services
            .get(namespace)
            .into_iter()
            .flatten()
            .collect();
        let daemon_sets: Vec<&DaemonSet> = snapshot
            .daemon_sets
            .iter()
            .filter(|daemon_set| daemon_set.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let reality = dns_reality(
            valid,
            &DnsNamespace {
                name: namespace,
                pods: &pods,
                services: &services,
                daemon_sets: &daemon_sets,
            },
        );
        match reality {
            DnsReality::Findings(problems) => {
                for problem in problems {
                    let (message, fix) = problem
                        .split_once(": ")
                        .map_or((problem.as_str(), ""), |(message, fix)| (message, fix));
                    findings.push(finding(Severity::Error, "dns", &subject, message, fix));
                }
            }
            _ => findings.push(finding(
                Severity::Ok,
                "dns",
                &subject,
                &format!("the DNS pods in {namespace} match spec.dns, on the ports their Services send to"),
                "",
            )),
        }
    }
    merge_subjects(findings)
}

/// One finding per message: resources that share a DNS spec share its findings, named together.
fn merge_subjects(findings: Vec<Finding>) -> Vec<Finding> {
    let mut merged: Vec<Finding> = Vec::new();
    for found in findings {
        match merged.iter_mut().find(|known| {
            (known.severity, &known.message, &known.fix)
                == (found.severity, &found.message, &found.fix)
        }) {
            Some(known) => {
                known.subject.push_str(", ");
                known.subject.push_str(&found.subject);
            }
            None => merged.push(found),
        }
    }
    merged
}

fn namespace_labels(snapshot: &Snapshot) -> Vec<Finding> {
    let missing: Vec<&str> = snapshot
        .namespaces
        .iter()
        .filter(|namespace| {
            namespace
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(NAMESPACE_NAME_LABEL))
                != namespace.metadata.name.as_ref()
        })
        .filter_map(|namespace| namespace.metadata.name.as_deref())
        .collect();
    if missing.is_empty() {
        return vec![finding(
            Severity::Ok,
            "namespace-labels",
            "",
            &format!("every namespace carries {NAMESPACE_NAME_LABEL} with its name"),
            "",
        )];
    }
    vec![finding(
        Severity::Error,
        "namespace-labels",
        &missing.join(", "),
        &format!(
            "these namespaces lack {NAMESPACE_NAME_LABEL} (or carry another value): policies that choose a namespace by name (shared services' `namespace`, DNS) never match them"
        ),
        &format!(
            "the API server sets the label itself since Kubernetes 1.21: upgrade, or label them: kubectl label namespace NAME {NAMESPACE_NAME_LABEL}=NAME"
        ),
    )]
}

fn host_network(snapshot: &Snapshot) -> Vec<Finding> {
    let isolated: BTreeSet<&str> = snapshot
        .isolations
        .iter()
        .filter_map(|isolation| isolation.metadata.namespace.as_deref())
        .collect();
    let mut findings = Vec::new();
    for namespace in &isolated {
        let pods: Vec<&str> = snapshot
            .pods
            .get(*namespace)
            .into_iter()
            .flatten()
            .filter(|pod| pod.spec.as_ref().and_then(|spec| spec.host_network) == Some(true))
            .filter_map(|pod| pod.metadata.name.as_deref())
            .collect();
        if !pods.is_empty() {
            findings.push(finding(
                Severity::Warning,
                "host-network",
                namespace,
                &format!(
                    "pods on the host network bypass every NetworkPolicy of the namespace: {}",
                    pods.join(", ")
                ),
                "run them without hostNetwork, or move them to a namespace that is not meant to be isolated (and forbid hostNetwork with Pod Security `baseline`)",
            ));
        }
    }
    findings
}

fn condition<'a>(
    resource: &'a NamespaceIsolation,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    resource
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == type_)
}

fn isolations(snapshot: &Snapshot) -> Vec<Finding> {
    let mut findings = Vec::new();
    for resource in &snapshot.isolations {
        let subject = key(&resource.metadata);
        let ready = condition(resource, READY);
        let isolated = condition(resource, ISOLATED);
        match (ready, isolated) {
            (Some(ready), _) if ready.status != "True" => findings.push(finding(
                Severity::Error,
                "isolations",
                &subject,
                &format!("not Ready ({}): {}", ready.reason, ready.message),
                "fix what the message names (kubectl describe nsi)",
            )),
            (None, _) => findings.push(finding(
                Severity::Error,
                "isolations",
                &subject,
                "has no status: is netfence running?",
                "kubectl -n netfence-system get pods; kubectl -n netfence-system logs deploy/netfence",
            )),
            (Some(_), Some(isolated)) if isolated.reason == "DryRun" => findings.push(finding(
                Severity::Warning,
                "isolations",
                &subject,
                &format!("in DryRun: {}", isolated.message),
                "set spec.mode: Enforce once status.plannedChanges is what you want",
            )),
            (Some(_), Some(isolated)) if isolated.status == "False" => findings.push(finding(
                Severity::Error,
                "isolations",
                &subject,
                &format!("Ready, but not Isolated ({}): {}", isolated.reason, isolated.message),
                "delete or narrow the policy named, or acknowledge it in spec.acknowledgedPolicies with the reason",
            )),
            (Some(_), Some(isolated)) if isolated.status == "True" => findings.push(finding(
                Severity::Ok,
                "isolations",
                &subject,
                "Ready and Isolated: the policies that apply allow exactly what it declares",
                "",
            )),
            (Some(_), isolated) => findings.push(finding(
                Severity::Warning,
                "isolations",
                &subject,
                &format!(
                    "Ready; whether it is Isolated is unknown{}",
                    isolated.map(|condition| format!(": {}", condition.message)).unwrap_or_default()
                ),
                "upgrade netfence (its audit writes condition Isolated), or see the message",
            )),
        }
    }
    findings
}

fn baselines(snapshot: &Snapshot) -> Vec<Finding> {
    let mut findings = Vec::new();
    for baseline in &snapshot.baselines {
        let subject = format!(
            "ClusterBaseline {}",
            baseline.metadata.name.as_deref().unwrap_or_default()
        );
        findings.push(match engine_for(baseline.spec.engine, snapshot.served) {
            Ok(engine) => finding(
                Severity::Ok,
                "baselines",
                &subject,
                &format!("its engine, {}, is served", engine.as_str()),
                "",
            ),
            Err(engine) => finding(
                Severity::Error,
                "baselines",
                &subject,
                &format!(
                    "spec.engine {} is not served by this cluster: nothing of the baseline is written",
                    engine.as_str()
                ),
                "install the engine (its CRDs come with it), or set spec.engine to one the cluster serves",
            ),
        });
    }
    findings
}

#[cfg(test)]
mod tests;
