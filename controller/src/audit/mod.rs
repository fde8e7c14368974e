//! The intent audit's I/O: the NetworkPolicies netfence does not own, the DNS namespace's pods,
//! Services and DaemonSets, and the audit of one resource from them, computed by each
//! reconcile beside the rest of its status (one write, none in a steady state).
//!
//! ```text
//! reflect NetworkPolicy (managed-by!=netfence) ---> foreign PolicyCache --\   change: reconcile
//! reflect Pod, Service, DaemonSet (kube-system) --> DnsCaches ------------+   the namespace's
//! reflect the served cluster-wide kinds ----------> ClusterWideCache -----+   resources (DNS,
//! PolicyCache (netfence's own) ---------------------------------------------+ cluster-wide: all)
//!                                                                           |
//! reconcile: own + foreign - acknowledged --verify::intent::prove--> findings --\
//!            spec.dns x DnsCaches --core::audit::dns_reality-------------------+--> Isolated, DNSReachable
//! ```

mod cluster_wide;
mod dns;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use futures::{Stream, TryStreamExt};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    Api,
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use netfence_core::{
    ValidatedIsolation,
    audit::{Audit, DnsReality, Isolation},
};
use netfence_crd::{NamespaceIsolation, isolation::Direction};
use netfence_verify::{
    intent::{
        self,
        audit::{Departure, findings},
    },
    selector::Labels,
};

pub use cluster_wide::ClusterWideCache;
pub use dns::DnsCaches;

use super::{
    Context, LIST_PAGE, PolicyCache,
    decode::{self, Lenient},
    metrics::Metrics,
};

/// The NetworkPolicies without netfence's managed-by label, kept like netfence's own, and the
/// stream that fills them: it yields each policy that changed (added, edited, deleted, or
/// different after a relist).
pub(crate) fn foreign_policies(
    api: Api<Lenient<NetworkPolicy>>,
    metrics: &Arc<Metrics>,
) -> (
    PolicyCache,
    impl Stream<Item = Result<NetworkPolicy, watcher::Error>> + Send + 'static,
) {
    let cache = PolicyCache::default();
    let writer = cache.clone();
    let bad = super::report_undecodable(
        metrics.clone(),
        "undecodable_foreign_policy",
        "NetworkPolicy",
    );
    let events = watcher(
        api,
        watcher::Config::default()
            .labels(&super::foreign_selector())
            .page_size(LIST_PAGE),
    )
    .default_backoff()
    .map_ok(move |event| decode::typed(event, &bad))
    .modify(|policy: &mut NetworkPolicy| policy.metadata.managed_fields = None)
    .map_ok(move |event| futures::stream::iter(writer.apply(&event).into_iter().map(Ok)))
    .try_flatten();
    (cache, events)
}

/// The resources a foreign policy's change must reconcile: those of its namespace (their audit
/// is all it changes).
pub(crate) fn in_namespace(
    isolations: Store<NamespaceIsolation>,
) -> impl Fn(NetworkPolicy) -> Vec<ObjectRef<NamespaceIsolation>> + Send + Sync + 'static {
    move |policy: NetworkPolicy| {
        let namespace = policy.metadata.namespace;
        isolations
            .state()
            .iter()
            .filter(|resource| resource.metadata.namespace == namespace)
            .map(|resource| ObjectRef::from(resource.as_ref()))
            .collect()
    }
}

/// What the DNS peer of a valid resource reaches.
fn dns_reality(
    dns: &DnsCaches,
    resource: &NamespaceIsolation,
    isolation: &ValidatedIsolation,
) -> DnsReality {
    match (isolation.isolates(Direction::Egress), isolation.dns()) {
        (false, _) => DnsReality::NotRestricted,
        (true, None) => DnsReality::Disabled,
        (true, Some(valid)) => dns.reality(&resource.spec.dns.namespace, valid),
    }
}

/// The audit of one resource: its namespace's NetworkPolicies (netfence's and the others, but
/// those it acknowledges) proven against its spec, and its DNS peer as the cluster has it.
/// `isolation` is `None` for an invalid spec.
pub(crate) fn audit(
    context: &Context,
    resource: &NamespaceIsolation,
    isolation: Option<&ValidatedIsolation>,
    namespace: &str,
) -> Audit {
    let (own, foreign, dns) = (&context.policies, &context.foreign, &context.dns);
    let acknowledged_names: HashMap<&str, &str> = isolation
        .map(|isolation| {
            isolation
                .acknowledged()
                .iter()
                .map(|(name, reason)| (name.as_str(), reason.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut policies = own.in_namespace(namespace);
    let mut counted = Vec::new();
    let mut acknowledged = Vec::new();
    for policy in foreign.in_namespace(namespace) {
        let name = policy.metadata.name.clone().unwrap_or_default();
        if let Some(reason) = acknowledged_names.get(name.as_str()) {
            acknowledged.push(format!("{name}: {reason}"));
        } else {
            counted.push(name);
            policies.push(policy);
        }
    }
    let Some(isolation) = isolation else {
        let message = "the spec is invalid (condition Ready says why): there is no intent to prove"
            .to_owned();
        return Audit {
            isolation: Isolation::Unknown("InvalidSpec", message.clone()),
            dns: DnsReality::Unknown(message),
            foreign: counted,
            acknowledged,
        };
    };
    let cluster_wide = context.cluster_wide.view();
    if !cluster_wide.unreadable.is_empty() {
        return Audit {
            isolation: Isolation::Unknown(
                "UnreadablePolicy",
                format!(
                    "netfence cannot read {}: what the policies add up to is unknown until it can",
                    cluster_wide.unreadable.join("; ")
                ),
            ),
            dns: dns_reality(dns, resource, isolation),
            foreign: counted,
            acknowledged,
        };
    }
    let labels: BTreeMap<String, Labels> = context
        .cluster_wide
        .labels(namespace)
        .map(|labels| (namespace.to_owned(), labels))
        .into_iter()
        .collect();
    let proven = intent::prove_with(isolation, &policies, &cluster_wide.policies, &labels);
    let isolation_found = match proven {
        Ok(proof) => {
            let found = findings(&proof);
            if found.is_empty() {
                Isolation::AsDeclared {
                    policies: policies.len(),
                }
            } else {
                let (widened, narrowed): (Vec<_>, Vec<_>) = found
                    .into_iter()
                    .partition(|finding| finding.departure == Departure::Widened);
                Isolation::Departs {
                    widened: widened.into_iter().map(|finding| finding.message).collect(),
                    narrowed: narrowed
                        .into_iter()
                        .map(|finding| finding.message)
                        .collect(),
                }
            }
        }
        Err(error) => Isolation::Unknown(
            "InvalidPolicy",
            format!("{error}: netfence cannot tell what the namespace's policies allow"),
        ),
    };
    let dns_found = dns_reality(dns, resource, isolation);
    Audit {
        isolation: isolation_found,
        dns: dns_found,
        foreign: counted,
        acknowledged,
    }
}
