//! The intent audit as a platform engineer meets it: condition `Isolated` turning False when a
//! team's own policy widens the namespace, naming it, and True again when it goes or is
//! acknowledged; condition `DNSReachable` finding CoreDNS behind a Service on 53 while it
//! listens on 5353. On the sandbox and on the real control plane (the DNS pods and Services are
//! objects in kube-system, with names and labels of each scenario's own, so scenarios running
//! at once never see each other's).

use std::time::Instant;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use netfence_crd::NamespaceIsolation;
use netfence_e2e::{Env, env::LIMIT, shop};
use serde_json::json;

/// The condition `type_` of the resource: (status, reason, message), when it describes the
/// resource's generation.
fn condition(isolation: &NamespaceIsolation, type_: &str) -> Option<(String, String, String)> {
    let generation = isolation.metadata.generation;
    isolation
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == type_ && condition.observed_generation == generation)
        .map(|condition| {
            (
                condition.status.clone(),
                condition.reason.clone(),
                condition.message.clone(),
            )
        })
}

fn is(isolation: &NamespaceIsolation, type_: &str, status: &str) -> bool {
    condition(isolation, type_).is_some_and(|(found, _, _)| found == status)
}

/// A team's policy that lets anything reach backend.
fn allow_all_ingress(namespace: &str) -> serde_json::Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all-ingress", "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"tier": "backend"}}, "ingress": [{}]},
    })
}

/// A team's `allow-all-ingress` on backend turns `Isolated` False with reason `Widened` within
/// seconds, the policy and what it opens named, and a Warning Event says it too;
/// deleted, the namespace is `Isolated` again. The Ready condition never moves: netfence's own
/// policies stay written.
#[tokio::test]
async fn a_foreign_allow_all_widens_the_namespace_until_it_goes() {
    let mut env = Env::start().await;
    let namespace = env.watched_namespace("audit").await;
    env.create(&shop(&namespace)).await;
    let isolated = env
        .wait_isolation(&namespace, "shop", "Isolated True", |isolation| {
            is(isolation, "Isolated", "True")
        })
        .await;
    let ready_before = condition(&isolated, "Ready").expect("Ready");

    let started = Instant::now();
    env.create_policy(&namespace, &allow_all_ingress(&namespace))
        .await;
    let widened = env
        .wait_isolation(&namespace, "shop", "Isolated False, Widened", |isolation| {
            condition(isolation, "Isolated")
                .is_some_and(|(status, reason, _)| status == "False" && reason == "Widened")
        })
        .await;
    let took = started.elapsed();
    let (_, _, message) = condition(&widened, "Isolated").expect("Isolated");
    println!("Isolated False {took:?} after the policy was created: {message}");
    // Reacting at all within the wait (90 s) is the watch of the other policies at work: the
    // next reconcile without an event is an hour away. The time is a figure, printed above.
    assert!(
        message.starts_with("allow-all-ingress lets ")
            && message.contains(" reach backend on every port"),
        "names the policy and what it opens: {message}"
    );
    let audit = widened
        .status
        .as_ref()
        .and_then(|status| status.audit.clone())
        .expect("status.audit");
    assert_eq!(audit.foreign_policies, ["allow-all-ingress"]);
    assert_eq!(audit.widened, std::slice::from_ref(&message));
    assert_eq!(
        condition(&widened, "Ready").map(|(status, reason, _)| (status, reason)),
        Some((ready_before.0.clone(), ready_before.1.clone())),
        "Ready keeps meaning that netfence's own policies are written"
    );
    let events = netfence_e2e::eventually(LIMIT, || async {
        let events = env.events(&namespace, "shop", "Widened").await;
        (!events.is_empty()).then_some(events)
    })
    .await
    .expect("a Warning Event Widened");
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert!(
        events[0]
            .note
            .as_deref()
            .is_some_and(|note| note.contains("allow-all-ingress")),
        "{:?}",
        events[0].note
    );

    // Deleted: isolated again.
    let started = Instant::now();
    env.policies(&namespace)
        .delete("allow-all-ingress", &DeleteParams::default())
        .await
        .expect("deleted");
    env.wait_isolation(&namespace, "shop", "Isolated True again", |isolation| {
        is(isolation, "Isolated", "True")
    })
    .await;
    println!(
        "Isolated True {:?} after the policy was deleted",
        started.elapsed()
    );

    env.finish().await;
}

/// CoreDNS listening on 5353 behind a Service on 53: the policy sees the pod's port, so a DNS
/// rule on 53 blocks every lookup. `DNSReachable` says so with the fix, and turns True once the
/// spec has it.
#[tokio::test]
async fn coredns_on_5353_behind_a_service_on_53_is_reported_with_the_fix() {
    let mut env = Env::start().await;
    let namespace = env.watched_namespace("audit-dns").await;
    let app = format!("dns-{}", env.run);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "kube-system");
    let services: Api<Service> = Api::namespaced(env.client.clone(), "kube-system");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": app, "namespace": "kube-system", "labels": {"k8s-app": app}},
        "spec": {"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.12.0", "ports": [
            {"name": "dns", "containerPort": 5353, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 5353, "protocol": "TCP"},
        ]}]},
    }))
    .expect("a Pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("DNS pod created");
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": app, "namespace": "kube-system"},
        "spec": {"selector": {"k8s-app": app}, "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5353},
        ]},
    }))
    .expect("a Service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("DNS Service created");

    let mut resource = shop(&namespace);
    resource["spec"]["dns"] = json!({"podSelector": {"matchLabels": {"k8s-app": app}}});
    env.create(&resource).await;
    let found = env
        .wait_isolation(&namespace, "shop", "DNSReachable False", |isolation| {
            is(isolation, "DNSReachable", "False")
        })
        .await;
    let (_, reason, message) = condition(&found, "DNSReachable").expect("DNSReachable");
    println!("DNSReachable False, {reason}: {message}");
    assert_eq!(reason, "Misconfigured");
    for (protocol, fix) in [
        ("UDP", "add {port: 5353, protocol: UDP} to spec.dns.ports"),
        ("TCP", "add {port: 5353, protocol: TCP} to spec.dns.ports"),
    ] {
        assert!(
            message.contains(&format!(
                "Service kube-system/{app} sends 53/{protocol} to the DNS pods' port 5353"
            )) && message.contains(fix),
            "{protocol}: {message}"
        );
    }
    // The policies allow DNS on 53 only: the proof of what is declared still holds.
    assert!(is(&found, "Isolated", "True"), "{:?}", found.status);

    env.isolations(&namespace)
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"dns": {"podSelector": {"matchLabels": {"k8s-app": app}}, "ports": [
                    {"port": 5353, "protocol": "UDP"}, {"port": 5353, "protocol": "TCP"},
                ]}}}),
            ),
        )
        .await
        .expect("fixed");
    env.wait_isolation(&namespace, "shop", "DNSReachable True", |isolation| {
        is(isolation, "DNSReachable", "True")
    })
    .await;

    // The DNS pods gone: nothing matches the DNS rule any more.
    pods.delete(&app, &DeleteParams::default().grace_period(0))
        .await
        .expect("DNS pod deleted");
    let gone = env
        .wait_isolation(
            &namespace,
            "shop",
            "DNSReachable False, no pod",
            |isolation| {
                condition(isolation, "DNSReachable").is_some_and(|(status, _, message)| {
                    status == "False"
                        && message.starts_with(
                            "no pod in namespace kube-system matches spec.dns.podSelector",
                        )
                })
            },
        )
        .await;
    println!("{:?}", condition(&gone, "DNSReachable"));
    let _ = services.delete(&app, &DeleteParams::default()).await;
    env.finish().await;
}

/// Acknowledged in the spec (`acknowledgedPolicies`, with the reason), the team's policy stops
/// counting: `Isolated` is True again and the status lists it with the reason.
#[tokio::test]
async fn an_acknowledged_policy_stops_counting() {
    let mut env = Env::start().await;
    let namespace = env.watched_namespace("audit-ack").await;
    env.create(&shop(&namespace)).await;
    env.wait_isolation(&namespace, "shop", "Isolated True", |isolation| {
        is(isolation, "Isolated", "True")
    })
    .await;
    env.create_policy(&namespace, &allow_all_ingress(&namespace))
        .await;
    env.wait_isolation(&namespace, "shop", "Isolated False again", |isolation| {
        is(isolation, "Isolated", "False")
    })
    .await;
    env.isolations(&namespace)
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"acknowledgedPolicies": [
                {"name": "allow-all-ingress", "reason": "the load balancer's health checks, reviewed in PLAT-123"}
            ]}})),
        )
        .await
        .expect("acknowledged");
    let acknowledged = env
        .wait_isolation(
            &namespace,
            "shop",
            "Isolated True, acknowledged",
            |isolation| is(isolation, "Isolated", "True"),
        )
        .await;
    let audit = acknowledged
        .status
        .as_ref()
        .and_then(|status| status.audit.clone())
        .expect("status.audit");
    assert_eq!(
        audit.acknowledged,
        ["allow-all-ingress: the load balancer's health checks, reviewed in PLAT-123"]
    );
    assert!(audit.foreign_policies.is_empty(), "{audit:?}");
    let (_, _, message) = condition(&acknowledged, "Isolated").expect("Isolated");
    assert!(message.contains("1 acknowledged left out"), "{message}");
    env.finish().await;
}

/// A DNS namespace netfence may not read (its Role there not granted: every list of the pods
/// refused with 403) makes `DNSReachable` Unknown at once, saying which Role to grant, while
/// the policies are written as ever; granted (the refusals end), the watch lists again and the
/// condition says what the DNS rule reaches. A 403 is the error retrying does not mend: a 410
/// or a 5xx is retried without a word (`steady_state_and_restart_make_no_writes`).
#[tokio::test]
async fn a_dns_namespace_netfence_may_not_read_is_unknown_with_the_role_to_grant() {
    let mut env = Env::start().await;
    let namespace = env.namespace("audit-role").await;
    let faults = env.cluster.faults();
    let refused = faults.fail("list", "pods", 1.0, 403);
    env.start_controller(Some(&namespace));
    env.create(&shop(&namespace)).await;
    let unknown = env
        .wait_isolation(&namespace, "shop", "DNSReachable Unknown", |isolation| {
            is(isolation, "DNSReachable", "Unknown")
        })
        .await;
    let (_, reason, message) = condition(&unknown, "DNSReachable").expect("DNSReachable");
    assert_eq!(reason, "Unknown", "{message}");
    assert!(
        message
            .starts_with("netfence cannot read the pods, Services and DaemonSets of kube-system: ")
            && message.ends_with("(grant the Role of config/rbac/dns_role.yaml)"),
        "{message}"
    );
    assert!(
        condition(&unknown, "Ready")
            .is_some_and(|(status, reason, _)| status == "True" && reason == "Reconciled"),
        "the policies are written though DNS cannot be read: {:?}",
        unknown.status
    );

    faults.remove(refused);
    env.wait_isolation(&namespace, "shop", "DNSReachable known", |isolation| {
        condition(isolation, "DNSReachable")
            .is_some_and(|(status, _, _)| status == "True" || status == "False")
    })
    .await;
    env.finish().await;
}
