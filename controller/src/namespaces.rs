//! One watch of Namespaces for every controller that reads them: the template and baseline
//! controllers plan against its cache, the cluster-wide audit reads its labels, and the
//! NamespaceIsolation controller learns from it which namespaces came, went or were relabelled.
//!
//! ```text
//! watch Namespace --> cache (name, labels, deleting) --> template controller (any change: every template)
//!                                                    +-> baseline controller (any change: every baseline)
//!                                                    +-> NamespaceIsolation controller (name, digest of labels)
//! ```
//!
//! One cache, not one per controller, and what is sent on is a name and a digest, not the
//! object: at 10,000 namespaces each copy of every namespace's labels cost megabytes.

use futures::{StreamExt, channel::mpsc::UnboundedSender};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use netfence_core::observed::Digest;

use std::sync::Arc;

use crate::{compact::map_event, metrics::Metrics, relist::RelistAsChanges};

/// What the NamespaceIsolation controller learns of a namespace: its name and its labels'
/// digest (a relabelling changes which cluster-wide policies apply to its resources).
#[derive(Clone, Debug)]
pub struct Seen {
    /// The namespace.
    pub name: String,
    /// The digest of its labels.
    pub labels: Digest,
}

impl Seen {
    pub(crate) fn of(namespace: &Namespace) -> Seen {
        let labels = namespace.metadata.labels.clone().unwrap_or_default();
        Seen {
            name: namespace.metadata.name.clone().unwrap_or_default(),
            // Serializing a map of strings cannot fail.
            labels: Digest::of(&[&serde_json::to_vec(&labels).unwrap_or_default()]),
        }
    }
}

/// What the namespace cache keeps of a Namespace: its name, labels and whether it is being
/// deleted (and its identity and version). Its annotations (a `kubectl apply` leaves the whole
/// object in one), managedFields, spec and status are read by nothing, and at 10,000
/// namespaces they cost megabytes.
pub(crate) fn keep_of_namespace(namespace: &mut Namespace) {
    namespace.metadata.managed_fields = None;
    namespace.metadata.annotations = None;
    namespace.spec = None;
    namespace.status = None;
}

/// The namespace cache, and the watch that fills it: a stream of one `()` per change the cache
/// applied (an added, changed or deleted namespace, or the end of a list), for the template
/// controller to drive. It sends each event, as [`Seen`], to `isolations`, and each change to
/// `baselines`.
pub(crate) fn watch(
    client: &Client,
    metrics: &Arc<Metrics>,
    isolations: UnboundedSender<watcher::Event<Seen>>,
    baselines: UnboundedSender<()>,
) -> (
    Store<Namespace>,
    impl futures::Stream<Item = ()> + Send + 'static,
) {
    let (namespaces, writer) = reflector::store();
    let changes = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default().page_size(super::LIST_PAGE),
    )
    .default_backoff()
    .modify(keep_of_namespace)
    .relist_as_changes(namespaces.clone(), Clone::clone, {
        let metrics = metrics.clone();
        move || metrics.listed("Namespace")
    })
    .reflect(writer)
    .filter_map(move |event| {
        let change = match event {
            Ok(event) => {
                let change = matches!(
                    event,
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone
                );
                // The receivers live as long as the controllers; one gone is shutting down.
                let _ = isolations.unbounded_send(map_event(event, Seen::of));
                if change {
                    let _ = baselines.unbounded_send(());
                }
                change.then_some(())
            }
            Err(error) => {
                tracing::debug!(%error, watch = "Namespaces", "watch failed; it retries");
                None
            }
        };
        std::future::ready(change)
    });
    (namespaces, changes)
}
