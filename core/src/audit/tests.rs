use k8s_openapi::jiff::Timestamp;
use netfence_crd::NamespaceIsolation;

use super::*;
use crate::ValidatedIsolation;

fn dns_of(spec: &serde_json::Value) -> ValidDns {
    let resource: NamespaceIsolation = serde_json::from_value(serde_json::json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "NamespaceIsolation",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": spec,
    }))
    .expect("a resource");
    ValidatedIsolation::try_from(&resource)
        .expect("valid")
        .dns()
        .expect("a DNS rule")
        .clone()
}

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("an object")
}

fn coredns(port: i32) -> Pod {
    object(serde_json::json!({
        "metadata": {"name": "coredns-7d8f", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"containers": [{"name": "coredns", "ports": [
            {"name": "dns", "containerPort": port, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": port, "protocol": "TCP"}
        ]}]}
    }))
}

fn kube_dns(target: &serde_json::Value) -> Service {
    object(serde_json::json!({
        "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {"selector": {"k8s-app": "kube-dns"}, "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": target},
            // CoreDNS's metrics, as kubeadm and kind install kube-dns: no DNS client dials it.
            {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
        ]}
    }))
}

fn reality(
    dns: &ValidDns,
    pods: &[Pod],
    services: &[Service],
    daemon_sets: &[DaemonSet],
) -> DnsReality {
    let pods: Vec<&Pod> = pods.iter().collect();
    let services: Vec<&Service> = services.iter().collect();
    let daemon_sets: Vec<&DaemonSet> = daemon_sets.iter().collect();
    dns_reality(
        dns,
        &DnsNamespace {
            name: "kube-system",
            pods: &pods,
            services: &services,
            daemon_sets: &daemon_sets,
        },
    )
}

/// CoreDNS on 53 behind kube-dns on 53: reachable with the defaults.
#[test]
fn the_defaults_reach_coredns_on_53() {
    let dns = dns_of(&serde_json::json!({}));
    let pods = [coredns(53)];
    let services = [kube_dns(&serde_json::json!(53))];
    assert_eq!(reality(&dns, &pods, &services, &[]), DnsReality::Reachable);
}

/// CoreDNS listening on 5353 behind a Service on 53: the policy must allow 5353 (it sees the
/// pod's port), and the finding says so, by number or through a named targetPort.
#[test]
fn a_service_on_53_with_pods_on_5353_needs_5353() {
    let dns = dns_of(&serde_json::json!({}));
    let pods = [coredns(5353)];
    for target in [serde_json::json!(5353), serde_json::json!("dns")] {
        let services = [kube_dns(&target)];
        let DnsReality::Findings(findings) = reality(&dns, &pods, &services, &[]) else {
            panic!("expected a finding");
        };
        assert_eq!(
            findings,
            [
                "Service kube-system/kube-dns sends 53/UDP to the DNS pods' port 5353, which spec.dns.ports lacks (a NetworkPolicy sees the pod's port, not the Service's): add {port: 5353, protocol: UDP} to spec.dns.ports"
            ]
        );
    }
    let fixed = dns_of(&serde_json::json!({"dns": {"ports": [{"port": 5353, "protocol": "UDP"}]}}));
    let services = [kube_dns(&serde_json::json!(5353))];
    assert_eq!(
        reality(&fixed, &pods, &services, &[]),
        DnsReality::Reachable
    );
}

/// A selector that matches no pod: the finding names the pod that looks like CoreDNS and its
/// labels.
#[test]
fn a_selector_matching_no_pod_names_the_likely_dns_pod() {
    let dns = dns_of(&serde_json::json!({"dns": {"podSelector": {"matchLabels": {"app": "dns"}}}}));
    let pods = [coredns(53)];
    let DnsReality::Findings(findings) = reality(&dns, &pods, &[], &[]) else {
        panic!("expected a finding");
    };
    assert_eq!(findings.len(), 1);
    assert!(
        findings[0].starts_with("no pod in namespace kube-system matches spec.dns.podSelector"),
        "{}",
        findings[0]
    );
    assert!(
        findings[0]
            .contains("(a pod there named like CoreDNS carries the labels k8s-app: kube-dns)"),
        "{}",
        findings[0]
    );
}

/// NodeLocal DNSCache: its -localip address must be in dns.ipBlocks.
#[test]
fn node_local_dns_needs_its_address_in_ip_blocks() {
    let daemon_set: DaemonSet = object(serde_json::json!({
        "metadata": {"name": "node-local-dns", "namespace": "kube-system"},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "node-cache",
            "args": ["-localip", "169.254.20.25,10.96.0.10", "-conf", "/etc/Corefile"]}]}}}
    }));
    let pods = [coredns(53)];
    let daemon_sets = [daemon_set];
    let dns = dns_of(&serde_json::json!({}));
    let DnsReality::Findings(findings) = reality(&dns, &pods, &[], &daemon_sets) else {
        panic!("expected a finding");
    };
    assert_eq!(
        findings,
        [
            "NodeLocal DNSCache runs (DaemonSet kube-system/node-local-dns) and answers at 169.254.20.25, 10.96.0.10, which spec.dns.ipBlocks lacks: pods that resolve through it are blocked; add {cidr: 169.254.20.25/32} and {cidr: 10.96.0.10/32} to spec.dns.ipBlocks"
        ]
    );
    let fixed = dns_of(
        &serde_json::json!({"dns": {"ipBlocks": [{"cidr": "169.254.20.25/32"}, {"cidr": "10.96.0.10/32"}]}}),
    );
    assert_eq!(
        reality(&fixed, &pods, &[], &daemon_sets),
        DnsReality::Reachable
    );
}

fn now(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("a time"))
}

/// The audit's part: conditions keep their transition time while their status holds.
#[test]
fn the_audit_part_keeps_transition_times() {
    let audit = Audit {
        isolation: Isolation::Departs {
            widened: vec![
                "allow-all-ingress lets any pod or address reach backend on every port".to_owned(),
            ],
            narrowed: Vec::new(),
        },
        dns: DnsReality::Reachable,
        foreign: vec!["allow-all-ingress".to_owned()],
        acknowledged: Vec::new(),
        dry_run: false,
    };
    let first = part(&audit, Some(1), &[], &now(100));
    assert_eq!(first.conditions[0].type_, ISOLATED);
    assert_eq!(first.conditions[0].status, "False");
    assert_eq!(first.conditions[0].reason, "Widened");
    assert_eq!(
        first.conditions[0].message,
        "allow-all-ingress lets any pod or address reach backend on every port"
    );
    assert_eq!(first.conditions[1].status, "True");
    let again = part(&audit, Some(1), &first.conditions, &now(200));
    assert_eq!(
        again, first,
        "nothing changed: the same part, the same times"
    );
    let mut status = NamespaceIsolationStatus::default();
    merge(&mut status, first.clone());
    assert_eq!(status.conditions, first.conditions);
    assert_eq!(status.audit.as_ref(), Some(&first.audit));
}
