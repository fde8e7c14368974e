//! The object lifecycle: create, read, update, patch, server-side apply and delete of any
//! served resource, with the rules of the real server.
//!
//! ```text
//! request --> prepare (names, server fields, status isolation) --> admission (schema, CEL)
//!         --> managed fields (update tracking | apply merge + conflicts) --> generation
//!         --> no-op? (no new resourceVersion) --> store --> garbage collection
//! ```
//!
//! `metadata.generation` moves only when something outside `metadata` (and outside `status`
//! for resources with a status subresource) changes. Writes to `/status` change only status;
//! writes to the object leave status alone when the resource has a status subresource. A write
//! that changes nothing keeps its `resourceVersion` and emits no watch event.
//!
//! One `impl State`, split by what each part does:
//!
//! ```text
//! write      create, update, patch, apply --> commit (the pipeline above)
//!  |-- metadata   checks on the body: kind, decoding, uid, names, labels, owner references
//!  |-- events     an events.k8s.io Event written is mirrored as a core v1 Event
//!  '-- collector  (after every write) owner-reference garbage collection, foreground deletion
//! lifecycle  delete, deletecollection, finalizers, namespace deletion and controller, CRD deletion
//! read       get, list (selectors, limit/continue tokens), the resourceVersion a read is served at
//! ```

mod collector;
mod events;
mod lifecycle;
mod metadata;
mod read;
mod write;

use std::hash::{BuildHasher, Hasher};

use kube::core::cel::cel::Context;
use serde_json::{Map, Value, json};

use super::{
    resources::{Catalog, ResourceInfo, StoreKey},
    selector::{FieldSelector, LabelSelector},
    status::ApiError,
    store::{ObjectKey, Store},
};

/// `fieldValidation`: what to do with fields the schema does not declare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and answer a `Warning` header (the server default).
    #[default]
    Warn,
    /// Refuse the request with 400.
    Strict,
}

impl FieldValidation {
    /// Parse the query parameter.
    pub fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        match text.unwrap_or_default() {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation: Invalid value: \"{other}\": must be one of Ignore, Warn, or Strict"
            ))),
        }
    }
}

/// Who writes, and how.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `fieldManager`, or the one derived from the user agent.
    pub field_manager: Option<String>,
    /// The `User-Agent` header, for the default field manager.
    pub user_agent: String,
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `force` of server-side apply.
    pub force: bool,
}

impl WriteOptions {
    /// The field manager of a non-apply write: the parameter, else the user agent's prefix
    /// (empty without a user agent), as upstream names it.
    fn manager(&self) -> String {
        super::manager::manager_or_user_agent(self.field_manager.as_deref(), &self.user_agent)
    }
}

/// `DeleteOptions`, from the body and the query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation_policy: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// What a list asks for.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit`.
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub version_match: Option<String>,
    /// The client asked for `PartialObjectMetadata`: items carry only their metadata, so the
    /// list copies no spec or status (the answer is the same).
    pub metadata_only: bool,
    /// `timeoutSeconds`: how long a watch may stay open (0 or unset: the server's limit; a
    /// negative one has expired already). Parsed for lists too, as upstream.
    pub timeout_seconds: Option<i64>,
}

/// A successful answer: the HTTP code, the body, and `Warning` headers.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// 200 or 201.
    pub code: u16,
    /// The object, list or Status.
    pub body: Value,
    /// `Warning` header texts.
    pub warnings: Vec<String>,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Answer {
            code: 200,
            body,
            warnings: Vec::new(),
        }
    }
}

/// The whole server state: served resources, objects, the CEL evaluator.
pub struct State {
    /// The served resources.
    pub catalog: Catalog,
    /// The objects.
    pub store: Store,
    cel: Context<'static>,
    random: std::collections::hash_map::RandomState,
    counter: u64,
    /// Uids of removed objects whose dependents the garbage collector has not visited yet.
    pending_uids: Vec<String>,
    /// Objects written with an owner reference to a uid that no object has: the garbage
    /// collector deletes them (or drops those references when another owner exists).
    dangling: Vec<(StoreKey, ObjectKey)>,
    /// Namespaces being deleted whose content the namespace controller has not deleted yet.
    terminating: Vec<(String, std::time::Instant)>,
    /// Objects whose foreground deletion waits for their dependents to go.
    foreground: Vec<(StoreKey, ObjectKey)>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("revision", &self.store.revision())
            .finish_non_exhaustive()
    }
}

/// Now, as Kubernetes writes timestamps.
#[must_use]
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn uid_of(object: &Value) -> &str {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn finalizers_of(object: &Value) -> Vec<String> {
    super::resources::string_list(object.pointer("/metadata/finalizers"))
}

fn is_deleting(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

fn object_mut(value: &mut Value) -> &mut Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => {
            *other = Value::Object(Map::new());
            object_mut(other)
        }
    }
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    let metadata = object_mut(object)
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    object_mut(metadata)
}

/// An object as served at `info`'s version: `apiVersion` set to it (versions of a custom
/// resource share storage, without conversion).
#[must_use]
pub fn present(info: &ResourceInfo, object: &Value) -> Value {
    let mut object = object.clone();
    if object.is_object() {
        object["apiVersion"] = json!(info.api_version());
        object["kind"] = json!(info.kind);
    }
    object
}

impl State {
    /// An empty server state with the built-in resources.
    #[must_use]
    pub fn new(store: Store) -> Self {
        State {
            catalog: Catalog::builtin(),
            store,
            cel: super::cel::context(),
            random: std::collections::hash_map::RandomState::new(),
            counter: 0,
            pending_uids: Vec::new(),
            dangling: Vec::new(),
            terminating: Vec::new(),
            foreground: Vec::new(),
        }
    }

    fn random(&mut self) -> u64 {
        self.counter += 1;
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.counter);
        hasher.finish()
    }

    fn new_uid(&mut self) -> String {
        let high = self.random();
        let low = self.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xfff,
            (low >> 48) & 0x3fff | 0x8000,
            low & 0xffff_ffff_ffff
        )
    }

    fn generated_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut value = self.random();
        let mut suffix = String::new();
        for _ in 0..5 {
            suffix.push(char::from(ALPHABET[(value % 27) as usize]));
            value /= 27;
        }
        suffix
    }

    /// Create the namespaces every cluster has: `default`, `kube-system`, `kube-public`,
    /// `kube-node-lease`.
    pub fn create_system_namespaces(&mut self) {
        let Some(info) = self.catalog.find("", "v1", "namespaces").cloned() else {
            return;
        };
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            let options = WriteOptions {
                field_manager: Some("kube-apiserver".to_owned()),
                ..WriteOptions::default()
            };
            // The store is empty: a create of a valid name cannot fail.
            let _ = self.create(&info, None, body, &options);
        }
    }

    /// Whether a namespace exists, and whether it is terminating.
    fn namespace_state(&self, namespace: &str) -> Option<bool> {
        let key = StoreKey {
            group: String::new(),
            plural: "namespaces".to_owned(),
        };
        self.store
            .get(&key, &ObjectKey::new(None, namespace))
            .map(is_deleting)
    }
}
