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

use std::{borrow::Cow, collections::BTreeMap};

use futures::{StreamExt, TryStreamExt, channel::mpsc::UnboundedSender};
use k8s_openapi::{api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use netfence_core::observed::Digest;
use netfence_core::template::NamespaceInfo;

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
    pub(crate) fn of(namespace: &Kept) -> Seen {
        let labels = namespace.label_map();
        Seen {
            name: namespace.name().to_owned(),
            // Serializing a map of strings cannot fail.
            labels: Digest::of(&[&serde_json::to_vec(&labels).unwrap_or_default()]),
        }
    }
}

/// What the namespace cache keeps of a Namespace: its identity, version, whether it is being
/// deleted, and its labels (as pairs: a label map costs a tree node of eleven entries, and at
/// 10,000 namespaces every copy of every namespace mattered). Its annotations (a `kubectl
/// apply` leaves the whole object in one), managedFields, spec and status are read by nothing.
#[derive(Clone, Debug)]
pub struct Kept {
    metadata: ObjectMeta,
    labels: Box<[(Box<str>, Box<str>)]>,
}

impl Kept {
    /// What the cache keeps of `namespace`.
    #[must_use]
    pub fn of(namespace: &Namespace) -> Kept {
        let source = &namespace.metadata;
        Kept {
            metadata: ObjectMeta {
                name: source.name.clone(),
                uid: source.uid.clone(),
                resource_version: source.resource_version.clone(),
                deletion_timestamp: source.deletion_timestamp.clone(),
                ..ObjectMeta::default()
            },
            labels: source
                .labels
                .iter()
                .flatten()
                .map(|(key, value)| (key.as_str().into(), value.as_str().into()))
                .collect(),
        }
    }

    /// The namespace's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// Its labels.
    #[must_use]
    pub fn label_map(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .map(|(key, value)| ((**key).to_owned(), (**value).to_owned()))
            .collect()
    }

    /// What a template plan reads of it.
    #[must_use]
    pub fn info(&self) -> NamespaceInfo {
        NamespaceInfo {
            name: self.name().to_owned(),
            labels: self.label_map(),
            terminating: self.metadata.deletion_timestamp.is_some(),
        }
    }
}

impl kube::Resource for Kept {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Namespace::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Namespace::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Namespace::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Namespace::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
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
    Store<Kept>,
    impl futures::Stream<Item = ()> + Send + 'static,
) {
    let (namespaces, writer) = reflector::store();
    let changes = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default().page_size(super::LIST_PAGE),
    )
    .default_backoff()
    .map_ok(|event| map_event(event, Kept::of))
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
