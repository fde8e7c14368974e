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

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    hash::{BuildHasher, Hasher},
    ops::Bound,
};

use kube::core::cel::cel::Context;
use serde_json::{Map, Value, json};

use super::{
    apply::{conflict_message, merge_apply, settle_ownership},
    cause::FieldCause,
    fields::{Scope, read_managed, same_value, track_update, write_managed},
    names::{check_path_segment, label_value, name_causes, qualified_name},
    patch::{JsonPatchError, PatchType, json_patch, merge_patch, strip_strategic_directives},
    resources::{Catalog, NAMESPACE_NAME_LABEL, ResourceInfo, StoreKey},
    schema::admit,
    selector::{FieldSelector, LabelSelector},
    status::{ApiError, deleted},
    store::{Expired, ObjectKey, Store},
};

/// The longest field manager name the server accepts.
const MAX_FIELD_MANAGER: usize = 128;

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

/// How a write treats managed fields.
enum Ownership {
    /// A create, update or patch by this manager.
    Update(String),
    /// A server-side apply.
    Apply {
        manager: String,
        config_set: super::fields::FieldSet,
        force: bool,
    },
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

/// The parts of an object whose change bumps `metadata.generation`.
fn generation_view(object: &Value, info: &ResourceInfo) -> Value {
    let mut view = object.clone();
    if let Some(map) = view.as_object_mut() {
        map.remove("metadata");
        map.remove("apiVersion");
        map.remove("kind");
        if info.status_subresource {
            map.remove("status");
        }
    }
    view
}

/// `metadata` checks every kind gets: the name, label keys and values.
fn validate_metadata(info: &ResourceInfo, object: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let name = name_of(object);
    let segment_problem = check_path_segment(name).err();
    if let Some(problem) = segment_problem {
        causes.push(FieldCause {
            reason: "FieldValueInvalid",
            field: "metadata.name".to_owned(),
            message: format!(
                "Invalid value: \"{name}\": {}",
                problem.message.rsplit(": ").next().unwrap_or_default()
            ),
        });
    } else {
        causes.extend(name_causes(info, name));
    }
    if let Some(labels) = object.pointer("/metadata/labels") {
        match labels.as_object() {
            Some(labels) => {
                for (key, value) in labels {
                    if !qualified_name(key) {
                        causes.push(FieldCause {
                            reason: "FieldValueInvalid",
                            field: "metadata.labels".to_owned(),
                            message: format!("Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                        });
                    }
                    if !value.as_str().is_some_and(label_value) {
                        causes.push(FieldCause {
                            reason: "FieldValueInvalid",
                            field: "metadata.labels".to_owned(),
                            message: format!("Invalid value: {value}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                        });
                    }
                }
            }
            None => causes.push(FieldCause {
                reason: "FieldValueTypeInvalid",
                field: "metadata.labels".to_owned(),
                message: "Invalid value: \"labels\": must be a map of strings".to_owned(),
            }),
        }
    }
    causes.extend(owner_reference_causes(object));
    causes
}

/// An owner reference as upstream prints it in a message: Go's JSON of `metav1.OwnerReference`,
/// its fields in declaration order, the strings always, the flags when set.
fn owner_reference_json(reference: &Value) -> String {
    let mut fields: Vec<String> = ["apiVersion", "kind", "name", "uid"]
        .iter()
        .map(|field| {
            let text = reference
                .get(*field)
                .and_then(Value::as_str)
                .unwrap_or_default();
            format!("{}:{}", json!(field), json!(text))
        })
        .collect();
    for flag in ["controller", "blockOwnerDeletion"] {
        if let Some(value) = reference.get(flag).and_then(Value::as_bool) {
            fields.push(format!("{}:{value}", json!(flag)));
        }
    }
    format!("{{{}}}", fields.join(","))
}

/// Upstream's `ValidateOwnerReferences`: each reference names its owner whole (apiVersion,
/// kind, name, uid), no Event owns anything, and at most one reference is the controller.
fn owner_reference_causes(object: &Value) -> Vec<FieldCause> {
    let Some(references) = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let mut causes = Vec::new();
    let mut first_controller: Option<String> = None;
    for (index, reference) in references.iter().enumerate() {
        let path = format!("metadata.ownerReferences[{index}]");
        let text = |field: &str| {
            reference
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let required = |field: &str| FieldCause {
            reason: "FieldValueRequired",
            field: format!("{path}.{field}"),
            message: "Required value: must not be empty".to_owned(),
        };
        let api_version = text("apiVersion");
        // schema.ParseGroupVersion: `version` or `group/version`, the version not empty.
        let version = match api_version.split_once('/') {
            Some((_, version)) if version.contains('/') => "",
            Some((_, version)) => version,
            None => api_version,
        };
        if api_version.is_empty() {
            causes.push(required("apiVersion"));
        } else if version.is_empty() {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                field: format!("{path}.apiVersion"),
                message: format!(
                    "Invalid value: {}: must be <group>/<version> or <version>",
                    json!(api_version)
                ),
            });
        }
        for field in ["kind", "name", "uid"] {
            if text(field).is_empty() {
                causes.push(required(field));
            }
        }
        if api_version == "v1" && text("kind") == "Event" {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                field: path.clone(),
                message: format!(
                    "Invalid value: {}: /v1, Kind=Event is disallowed from being an owner",
                    owner_reference_json(reference)
                ),
            });
        }
        if reference.get("controller") == Some(&Value::Bool(true)) {
            let current = format!("{}/{}", text("kind"), text("name"));
            match &first_controller {
                Some(first) => {
                    let listed: Vec<String> = references.iter().map(owner_reference_json).collect();
                    causes.push(FieldCause {
                        reason: "FieldValueInvalid",
                        field: "metadata.ownerReferences".to_owned(),
                        message: format!(
                            "Invalid value: [{}]: Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}",
                            listed.join(",")
                        ),
                    });
                }
                None => first_controller = Some(current),
            }
        }
    }
    causes
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

    /// One object.
    pub fn get(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.store
            .get(&info.store_key(), &ObjectKey::new(namespace, name))
            .map(|object| present(info, object))
            .ok_or_else(|| ApiError::not_found(info, name))
    }

    /// The revision a list or watch is served at, from `resourceVersion` and its match rule.
    pub fn read_revision(
        &self,
        resource_version: Option<&str>,
        version_match: Option<&str>,
    ) -> Result<u64, ApiError> {
        let current = self.store.revision();
        match resource_version.unwrap_or_default() {
            "" | "0" => Ok(current),
            text => {
                let requested: u64 = text.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version \"{text}\""))
                })?;
                if requested > current {
                    let mut error = ApiError::injected(504, None, None);
                    error.message =
                        format!("Too large resource version: {requested}, current: {current}");
                    error.details = Some(
                        json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
                    );
                    return Err(error);
                }
                if version_match == Some("Exact") {
                    Ok(requested)
                } else {
                    Ok(current)
                }
            }
        }
    }

    /// A list, with selectors and pagination.
    pub fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<Value, ApiError> {
        let (revision, start) = match &options.continue_token {
            Some(token) => decode_continue(token)?,
            None => (
                self.read_revision(
                    options.resource_version.as_deref(),
                    options.version_match.as_deref(),
                )?,
                None,
            ),
        };
        let view = self.store.view_at(&info.store_key(), revision).map_err(|expired: Expired| {
            if options.continue_token.is_some() {
                ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
            } else {
                ApiError::gone(format!("too old resource version: {} ({})", expired.requested, expired.oldest))
            }
        })?;
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0_usize;
        let selective = !options.labels.is_empty() || !options.fields.is_empty();
        // Keys are ordered by namespace first: a namespaced list reads only its namespace's range
        // (etcd reads a key prefix), and a continued list starts after its token's key, not at
        // the first object of the resource.
        let namespace_start = namespace.map(|namespace| ObjectKey::new(Some(namespace), ""));
        let from = match (namespace_start, &start) {
            (Some(first), Some(after)) if *after < first => Bound::Included(first),
            (_, Some(after)) => Bound::Excluded(after.clone()),
            (Some(first), None) => Bound::Included(first),
            (None, None) => Bound::Unbounded,
        };
        let objects = view
            .range((from, Bound::Unbounded))
            .take_while(|(key, _)| namespace.is_none_or(|namespace| key.namespace == namespace));
        for (key, object) in objects {
            if start.as_ref().is_some_and(|start| key <= start) {
                continue;
            }
            if !options.labels.matches(object) || !options.fields.matches(object) {
                continue;
            }
            if let Some(limit) = options.limit.filter(|limit| *limit > 0)
                && items.len() == limit
            {
                if next.is_none() {
                    next = items
                        .last()
                        .map(|(key, _): &(ObjectKey, Value)| key.clone());
                }
                // With a selector the real server leaves remainingItemCount unset (it would have
                // to match every remaining object); counting them made every page of a relist
                // scan the rest of the resource.
                if selective {
                    break;
                }
                remaining += 1;
                continue;
            }
            let item = if options.metadata_only {
                json!({
                    "apiVersion": info.api_version(),
                    "kind": info.kind,
                    "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
                })
            } else {
                present(info, object)
            };
            items.push((key.clone(), item));
        }
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if let Some(last) = next {
            metadata["continue"] = json!(encode_continue(revision, &last));
            if !selective {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version(),
            "metadata": metadata,
            "items": items.into_iter().map(|(_, object)| object).collect::<Vec<_>>(),
        }))
    }

    /// Create an object.
    pub fn create(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        body: Value,
        options: &WriteOptions,
    ) -> Result<Answer, ApiError> {
        let mut object = body;
        check_type(info, &object)?;
        check_decodes(info, &object)?;
        let metadata = metadata_mut(&mut object);
        if metadata
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let body_namespace = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if info.namespaced
            && let (Some(body_namespace), Some(namespace)) = (&body_namespace, namespace)
            && body_namespace != namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut name = metadata
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            let generate = metadata
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if generate.is_empty() {
                return Err(ApiError::invalid(
                    info,
                    "",
                    &[FieldCause {
                        reason: "FieldValueRequired",
                        field: "metadata.name".to_owned(),
                        message: "Required value: name or generateName is required".to_owned(),
                    }],
                ));
            }
            name = format!("{generate}{}", self.generated_suffix());
        }
        object["metadata"]["name"] = json!(name);
        self.create_named(
            info,
            namespace,
            &name,
            object,
            &Ownership::Update(options.manager()),
            options,
        )
    }

    fn create_named(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        mut object: Value,
        ownership: &Ownership,
        options: &WriteOptions,
    ) -> Result<Answer, ApiError> {
        if info.namespaced {
            let namespace = namespace.unwrap_or_default();
            match self.namespace_state(namespace) {
                None => return Err(ApiError::namespace_not_found(namespace)),
                Some(true) => {
                    return Err(ApiError::forbidden(
                        info,
                        name,
                        &format!(
                            "unable to create new content in namespace {namespace} because it is being terminated"
                        ),
                    ));
                }
                Some(false) => {}
            }
        }
        let key = ObjectKey::new(namespace.filter(|_| info.namespaced), name);
        if self.store.get(&info.store_key(), &key).is_some() {
            return Err(ApiError::already_exists(info, name));
        }
        let uid = self.new_uid();
        let metadata = metadata_mut(&mut object);
        metadata.insert("uid".to_owned(), json!(uid));
        metadata.insert("creationTimestamp".to_owned(), json!(now()));
        metadata.insert("generation".to_owned(), json!(1));
        for field in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            metadata.remove(field);
        }
        if info.status_subresource
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        let mut answer = self.commit(
            info,
            &key,
            None,
            object,
            ownership,
            Scope::of(info, None),
            options,
        )?;
        answer.code = 201;
        Ok(answer)
    }

    /// Replace an object (PUT), or its status.
    pub fn update(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        body: Value,
        options: &WriteOptions,
    ) -> Result<Answer, ApiError> {
        check_type(info, &body)?;
        check_decodes(info, &body)?;
        // As upstream's checkName: the body names the object it replaces.
        let body_name = name_of(&body);
        if body_name.is_empty() {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name} based on URL) was undeterminable: name must be provided"
            )));
        }
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let key = ObjectKey::new(namespace, name);
        let old = self
            .store
            .get(&info.store_key(), &key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        // A uid in the body is a precondition (upstream's `defaultUpdatedObjectInfo`), checked
        // by the storage before the resourceVersion: another uid is another object, 409.
        let body_uid = uid_of(&body);
        if !body_uid.is_empty() && body_uid != uid_of(&old) {
            return Err(ApiError::uid_precondition_failed(
                info,
                &key.namespace,
                name,
                body_uid,
                uid_of(&old),
            ));
        }
        let requested = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if requested.is_empty() && info.custom {
            return Err(ApiError::invalid(
                info,
                name,
                &[FieldCause {
                    reason: "FieldValueInvalid",
                    field: "metadata.resourceVersion".to_owned(),
                    message: "Invalid value: 0x0: must be specified for an update".to_owned(),
                }],
            ));
        }
        if !requested.is_empty()
            && Some(requested)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::stale(info, name));
        }
        let scope = Scope::of(info, subresource);
        let mut candidate = body;
        if body_has_managed_fields(&candidate) {
            // An update that sends managedFields sets them, as upstream does.
        } else if let Some(managed) = old.pointer("/metadata/managedFields") {
            metadata_mut(&mut candidate).insert("managedFields".to_owned(), managed.clone());
        }
        self.commit(
            info,
            &key,
            Some(&old),
            candidate,
            &Ownership::Update(options.manager()),
            scope,
            options,
        )
    }

    /// Patch an object or its status: merge, JSON, strategic merge, or server-side apply.
    #[allow(clippy::too_many_arguments)] // the parts of a PATCH request, as the handler parsed them
    pub fn patch(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        patch_type: PatchType,
        patch: &Value,
        options: &WriteOptions,
    ) -> Result<Answer, ApiError> {
        let key = ObjectKey::new(namespace, name);
        let old = self.store.get(&info.store_key(), &key).cloned();
        let scope = Scope::of(info, subresource);
        if patch_type == PatchType::Apply {
            return self.apply(info, namespace, name, &key, old, patch, scope, options);
        }
        let old = old.ok_or_else(|| ApiError::not_found(info, name))?;
        let base = present(info, &old);
        let patched = match patch_type {
            PatchType::Merge => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request("error decoding patch: merge patch must be a JSON object"));
                }
                merge_patch(&base, patch)
            }
            PatchType::Strategic => {
                if info.custom {
                    return Err(ApiError::unsupported_media_type(
                        "application/strategic-merge-patch+json",
                        &["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"],
                    ));
                }
                if !patch.is_object() {
                    return Err(ApiError::bad_request("error decoding patch: strategic merge patch must be a JSON object"));
                }
                merge_patch(&base, &strip_strategic_directives(patch))
            }
            PatchType::Json => json_patch(&base, patch).map_err(|error| match error {
                JsonPatchError::TooManyOperations(_) => ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    format!("Request entity too large: {error}"),
                ),
                JsonPatchError::Decode(_) | JsonPatchError::Failed(_) => ApiError::invalid(
                    info,
                    name,
                    &[FieldCause {
                        reason: "FieldValueInvalid",
                        field: String::new(),
                        message: format!("the server rejected our request due to an error in our request: {error}"),
                    }],
                ),
            })?,
            PatchType::Apply => base,
        };
        check_type(info, &patched)?;
        if let Some(problem) = super::builtin::decode_problem(info, &patched) {
            return Err(ApiError::patch_invalid(&patched, &problem));
        }
        let requested = patched
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if requested
            != old
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
        {
            return Err(ApiError::stale(info, name));
        }
        if name_of(&patched) != name {
            return Err(ApiError::bad_request(
                "metadata.name: the name of a patched object cannot change",
            ));
        }
        self.commit(
            info,
            &key,
            Some(&old),
            patched,
            &Ownership::Update(options.manager()),
            scope,
            options,
        )
    }

    #[allow(clippy::too_many_arguments)] // the request, unpacked once by `patch`
    fn apply(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        key: &ObjectKey,
        old: Option<Value>,
        config: &Value,
        scope: Scope,
        options: &WriteOptions,
    ) -> Result<Answer, ApiError> {
        let Some(manager) = options
            .field_manager
            .clone()
            .filter(|manager| !manager.is_empty())
        else {
            return Err(ApiError {
                code: 422,
                reason: "Invalid",
                message: "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".to_owned(),
                details: Some(json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]})),
                retry_after: None,
            });
        };
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "error decoding YAML: the apply configuration is not an object",
            ));
        }
        check_type(info, config)?;
        // Upstream converts the configuration to a typed object first: a field of the wrong
        // type fails the request with 500, as a field the schema lacks does.
        if let Some(problem) = super::builtin::decode_problem(info, config) {
            return Err(ApiError::typed_patch_failed(
                info,
                name,
                &format!(".{problem}"),
            ));
        }
        if config.get("apiVersion").is_none() || config.get("kind").is_none() {
            return Err(ApiError::bad_request(
                "invalid object type: the apply configuration needs apiVersion and kind",
            ));
        }
        // As the real server's checkName: an apply configuration without a name takes the
        // live object's, and cannot create one (the merged object has no name to check).
        let config_name = name_of(config);
        if config_name.is_empty() && old.is_none() {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name} based on URL) was undeterminable: name must be provided"
            )));
        }
        if !config_name.is_empty() && config_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({config_name}) does not match the name on the URL ({name})"
            )));
        }
        if let (Some(body_namespace), Some(namespace)) = (
            config
                .pointer("/metadata/namespace")
                .and_then(Value::as_str),
            namespace,
        ) && body_namespace != namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if let Some(requested) = config
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|requested| !requested.is_empty())
            && old
                .as_ref()
                .and_then(|old| old.pointer("/metadata/resourceVersion"))
                .and_then(Value::as_str)
                != Some(requested)
        {
            return Err(ApiError::stale(info, name));
        }
        // The configuration's uid does not survive the merge below: a changed one is refused
        // here, as upstream refuses the merged object.
        if let Some(cause) = old.as_ref().and_then(|old| changed_uid(old, config)) {
            return Err(ApiError::invalid(info, name, &[cause]));
        }
        let entries = old.as_ref().map(read_managed).unwrap_or_default();
        let live = if let Some(old) = &old {
            present(info, old)
        } else {
            if scope == Scope::Status {
                return Err(ApiError::not_found(info, name));
            }
            let mut fresh = json!({"apiVersion": info.api_version(), "kind": info.kind, "metadata": {"name": name}});
            if let Some(namespace) = namespace {
                fresh["metadata"]["namespace"] = json!(namespace);
            }
            fresh
        };
        let merged = merge_apply(&live, config, &entries, &info.schema, scope, &manager);
        let mut candidate = merged.object;
        write_managed(&mut candidate, &entries);
        let ownership = Ownership::Apply {
            manager,
            config_set: merged.config_set,
            force: options.force,
        };
        match old {
            Some(old) => self.commit(info, key, Some(&old), candidate, &ownership, scope, options),
            None => self.create_named(info, namespace, name, candidate, &ownership, options),
        }
    }

    /// The write pipeline shared by create, update, patch and apply.
    #[allow(clippy::too_many_arguments, clippy::too_many_lines)] // one pipeline, in the order the real server runs it
    fn commit(
        &mut self,
        info: &ResourceInfo,
        key: &ObjectKey,
        old: Option<&Value>,
        candidate: Value,
        ownership: &Ownership,
        scope: Scope,
        options: &WriteOptions,
    ) -> Result<Answer, ApiError> {
        let name = key.name.clone();
        // A patch that changes the uid (an update's is a precondition, refused before).
        let changed_uid = old.and_then(|old| changed_uid(old, &candidate));
        let mut new = match (old, scope) {
            (Some(old), Scope::Status) => {
                let mut next = present(info, old);
                match candidate.get("status") {
                    Some(status) => next["status"] = status.clone(),
                    None => {
                        if let Some(map) = next.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
                if let Some(managed) = candidate.pointer("/metadata/managedFields") {
                    metadata_mut(&mut next).insert("managedFields".to_owned(), managed.clone());
                }
                next
            }
            (Some(old), Scope::Main { without_status }) => {
                let mut next = candidate;
                let old_metadata = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
                let metadata = metadata_mut(&mut next);
                for field in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "name",
                    "namespace",
                ] {
                    match old_metadata.get(field) {
                        Some(value) => metadata.insert(field.to_owned(), value.clone()),
                        None => metadata.remove(field),
                    };
                }
                if without_status {
                    match old.get("status") {
                        Some(status) => next["status"] = status.clone(),
                        None => {
                            if let Some(map) = next.as_object_mut() {
                                map.remove("status");
                            }
                        }
                    }
                }
                next
            }
            (None, _) => candidate,
        };
        new["apiVersion"] = json!(info.api_version());
        new["kind"] = json!(info.kind);
        let metadata = metadata_mut(&mut new);
        metadata.insert("name".to_owned(), json!(name));
        if info.namespaced {
            metadata.insert("namespace".to_owned(), json!(key.namespace));
        } else {
            metadata.remove("namespace");
        }
        if let Some(old) = old {
            let old_finalizers: BTreeSet<String> = finalizers_of(old).into_iter().collect();
            if is_deleting(old)
                && finalizers_of(&new)
                    .iter()
                    .any(|finalizer| !old_finalizers.contains(finalizer))
            {
                return Err(ApiError::invalid(
                    info,
                    &name,
                    &[FieldCause {
                        reason: "FieldValueForbidden",
                        field: "metadata.finalizers".to_owned(),
                        message: "Forbidden: no new finalizers can be added if the object is being deleted".to_owned(),
                    }],
                ));
            }
        }
        // As upstream's ObjectMeta (Go slices and maps with omitempty): empty ones are not stored.
        let metadata = metadata_mut(&mut new);
        for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
            let empty = metadata.get(field).is_some_and(|value| {
                value.is_null()
                    || value.as_array().is_some_and(Vec::is_empty)
                    || value.as_object().is_some_and(Map::is_empty)
            });
            if empty {
                metadata.remove(field);
            }
        }
        let mut causes: Vec<FieldCause> = changed_uid.into_iter().collect();
        causes.extend(validate_metadata(info, &new));
        let old_view = old.map(|old| present(info, old));
        let admitted = admit(info, new.clone(), old_view.as_ref(), &self.cel, &causes);
        causes.extend(admitted.causes.iter().cloned());
        let mut warnings = Vec::new();
        // Server-side apply converts the configuration to a typed object first: a field the
        // schema lacks fails the request whatever fieldValidation says (500, as upstream).
        if matches!(*ownership, Ownership::Apply { .. }) && !admitted.unknown_fields.is_empty() {
            let mut fields = admitted.unknown_fields.clone();
            fields.sort();
            return Err(ApiError::typed_patch(info, &name, &fields));
        }
        if !admitted.unknown_fields.is_empty() {
            match options.field_validation {
                FieldValidation::Strict => {
                    let listed: Vec<String> = admitted
                        .unknown_fields
                        .iter()
                        .map(|field| format!("unknown field \"{}\"", field.trim_start_matches('.')))
                        .collect();
                    let message = format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                        listed.join(", "),
                        kind = info.kind,
                        version = info.version
                    );
                    return Err(ApiError::bad_request(message));
                }
                FieldValidation::Warn => {
                    warnings.extend(admitted.unknown_fields.iter().map(|field| {
                        format!("unknown field \"{}\"", field.trim_start_matches('.'))
                    }));
                }
                FieldValidation::Ignore => {}
            }
        }
        if let Ownership::Apply {
            manager,
            config_set,
            force,
        } = ownership
        {
            let entries = read_managed(&new);
            if let Err(conflicts) = settle_ownership(
                old_view.as_ref(),
                &admitted.object,
                config_set,
                &entries,
                scope,
                manager,
                *force,
                &info.api_version(),
                &now(),
            ) {
                let causes: Vec<FieldCause> = conflicts
                    .iter()
                    .map(|conflict| FieldCause {
                        reason: "FieldManagerConflict",
                        field: super::fields::FieldSet::display(&conflict.path),
                        message: format!("conflict with {}", conflict.owner()),
                    })
                    .collect();
                return Err(ApiError::apply_conflict(
                    info,
                    &name,
                    conflict_message(&conflicts),
                    &causes,
                ));
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(info, &name, &causes));
        }
        let mut new = admitted.object;
        let stamp = now();
        let api_version = info.api_version();
        let mut entries = read_managed(&new);
        match ownership {
            Ownership::Update(manager) => {
                if manager.len() > MAX_FIELD_MANAGER {
                    return Err(ApiError::bad_request(format!(
                        "fieldManager: Too long: may not be more than {MAX_FIELD_MANAGER} bytes"
                    )));
                }
                track_update(
                    &mut entries,
                    old_view.as_ref(),
                    &new,
                    &info.schema,
                    scope,
                    manager,
                    &api_version,
                    &stamp,
                );
            }
            Ownership::Apply {
                manager,
                config_set,
                force,
            } => {
                entries = settle_ownership(
                    old_view.as_ref(),
                    &new,
                    config_set,
                    &entries,
                    scope,
                    manager,
                    *force,
                    &api_version,
                    &stamp,
                )
                .unwrap_or(entries);
            }
        }
        write_managed(&mut new, &entries);
        kind_rules(info, old, &mut new);
        let generation = match old {
            None => 1,
            Some(old) => {
                let previous = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                if same_value(&generation_view(old, info), &generation_view(&new, info)) {
                    previous
                } else {
                    previous + 1
                }
            }
        };
        metadata_mut(&mut new).insert("generation".to_owned(), json!(generation));
        if let Some(old) = old {
            if let Some(version) = old.pointer("/metadata/resourceVersion") {
                metadata_mut(&mut new).insert("resourceVersion".to_owned(), version.clone());
            }
            if same_value(&present(info, old), &new) {
                return Ok(Answer {
                    code: 200,
                    body: new,
                    warnings,
                });
            }
        } else {
            metadata_mut(&mut new).remove("resourceVersion");
        }
        if options.dry_run {
            return Ok(Answer {
                code: 200,
                body: new,
                warnings,
            });
        }
        if info.plural == "customresourcedefinitions"
            && info.group == "apiextensions.k8s.io"
            && let Err(causes) = self.catalog.register_crd(&new)
        {
            return Err(ApiError::invalid(info, &name, &causes));
        }
        let resource = info.store_key();
        let body = if is_deleting(&new) && finalizers_of(&new).is_empty() {
            let removed = self.remove(&resource, key);
            self.collect_garbage();
            removed.unwrap_or(new)
        } else {
            let stored = self.store.put(&resource, key.clone(), new);
            self.mirror_event(&resource, key, Some(&stored));
            if !self.dangling_owners(&stored).is_empty() {
                self.dangling.push((resource.clone(), key.clone()));
            }
            self.collect_garbage();
            stored
        };
        Ok(Answer {
            code: 200,
            body: present(info, &body),
            warnings,
        })
    }

    /// Delete an object: at once, or held by finalizers with `deletionTimestamp` set.
    pub fn delete(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Answer, ApiError> {
        let key = ObjectKey::new(namespace, name);
        let resource = info.store_key();
        let object = self
            .store
            .get(&resource, &key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        if let Some(uid) = &options.uid
            && uid != uid_of(&object)
        {
            return Err(ApiError::precondition_failed(
                info,
                name,
                &format!(
                    "UID in precondition: {uid}, UID in object meta: {}",
                    uid_of(&object)
                ),
            ));
        }
        if let Some(version) = &options.resource_version
            && Some(version.as_str())
                != object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::precondition_failed(
                info,
                name,
                &format!(
                    "ResourceVersion in precondition: {version}, ResourceVersion in object meta: {}",
                    object
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                ),
            ));
        }
        let policy = options
            .propagation_policy
            .as_deref()
            .unwrap_or("Background");
        if !matches!(policy, "Background" | "Foreground" | "Orphan") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{policy}\": supported values: \"Background\", \"Foreground\", \"Orphan\""
            )));
        }
        if options.dry_run {
            return Ok(Answer::ok(present(info, &object)));
        }
        if info.group.is_empty() && info.plural == "namespaces" {
            return Ok(self.delete_namespace(info, &key, object));
        }
        if info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions" {
            self.delete_crd_instances(&object);
        }
        let uid = uid_of(&object).to_owned();
        match policy {
            "Orphan" => self.orphan_dependents(&uid),
            "Foreground" => self.delete_dependents(&uid),
            _ => {}
        }
        let Some(mut object) = self.store.get(&resource, &key).cloned() else {
            return Ok(Answer::ok(deleted(info, name, &uid)));
        };
        let waits_for_dependents = policy == "Foreground" && self.has_dependents(&uid);
        let mut changed = false;
        if waits_for_dependents
            && !finalizers_of(&object)
                .iter()
                .any(|f| f == "foregroundDeletion")
        {
            let mut finalizers = finalizers_of(&object);
            finalizers.push("foregroundDeletion".to_owned());
            object["metadata"]["finalizers"] = json!(finalizers);
            self.foreground.push((resource.clone(), key.clone()));
            changed = true;
        }
        if finalizers_of(&object).is_empty() {
            self.remove(&resource, &key);
            self.collect_garbage();
            return Ok(Answer::ok(deleted(info, name, &uid)));
        }
        if !is_deleting(&object) {
            let metadata = metadata_mut(&mut object);
            metadata.insert("deletionTimestamp".to_owned(), json!(now()));
            metadata.insert("deletionGracePeriodSeconds".to_owned(), json!(0));
            let generation = metadata
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            metadata.insert("generation".to_owned(), json!(generation + 1));
            changed = true;
        }
        if changed {
            object = self.store.put(&resource, key, object);
        }
        Ok(Answer::ok(present(info, &object)))
    }

    /// Delete every object of a collection that matches the selectors.
    pub fn delete_collection(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        list: &ListOptions,
        options: &DeleteOptions,
    ) -> Result<Answer, ApiError> {
        let names: Vec<ObjectKey> = self
            .store
            .iter(&info.store_key())
            .filter(|(key, _)| namespace.is_none_or(|namespace| key.namespace == namespace))
            .filter(|(_, object)| list.labels.matches(object) && list.fields.matches(object))
            .map(|(key, _)| key.clone())
            .collect();
        let mut items = Vec::new();
        for key in names {
            let namespace = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
            if let Ok(answer) = self.delete(info, namespace, &key.name, options) {
                items.push(answer.body);
            }
        }
        Ok(Answer::ok(json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version(),
            "metadata": {"resourceVersion": self.store.revision().to_string()},
            "items": items,
        })))
    }

    fn delete_namespace(
        &mut self,
        info: &ResourceInfo,
        key: &ObjectKey,
        mut namespace: Value,
    ) -> Answer {
        let resource = info.store_key();
        if !is_deleting(&namespace) {
            let metadata = metadata_mut(&mut namespace);
            metadata.insert("deletionTimestamp".to_owned(), json!(now()));
            metadata.insert("deletionGracePeriodSeconds".to_owned(), json!(0));
            namespace["status"] = json!({"phase": "Terminating"});
            namespace = self.store.put(&resource, key.clone(), namespace);
            self.terminating
                .push((key.name.clone(), std::time::Instant::now()));
            self.collect_garbage();
        }
        match self.store.get(&resource, key) {
            Some(current) => Answer::ok(present(info, current)),
            None => Answer::ok(present(info, &namespace)),
        }
    }

    /// The namespace controller, run periodically: once a namespace has been terminating for
    /// `delay`, delete what it holds (the namespace goes when that is gone). Asynchronous like
    /// upstream's, so `kubectl delete -f` of a namespace and the objects in it succeeds.
    pub fn run_namespace_controller(&mut self, delay: std::time::Duration) {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.terminating)
            .into_iter()
            .partition(|(_, since)| since.elapsed() >= delay);
        self.terminating = waiting;
        if due.is_empty() {
            return;
        }
        for (namespace, _) in due {
            self.empty_namespace(&namespace);
        }
        self.collect_garbage();
    }

    /// Delete what a terminating namespace holds (finalizers hold objects back).
    fn empty_namespace(&mut self, namespace: &str) {
        let mut targets = Vec::new();
        for resource in self.store.resources() {
            let Some(info) = self.catalog.any_version(&resource).cloned() else {
                continue;
            };
            if !info.namespaced {
                continue;
            }
            for (key, object) in self.store.iter(&resource) {
                if key.namespace == namespace && !is_deleting(object) {
                    targets.push((info.clone(), key.clone()));
                }
            }
        }
        for (info, key) in targets {
            let _ = self.delete(
                &info,
                Some(&key.namespace),
                &key.name,
                &DeleteOptions::default(),
            );
        }
    }

    /// Deleting a CRD deletes every object of its resources.
    fn delete_crd_instances(&mut self, crd: &Value) {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let resource = StoreKey {
            group: group.to_owned(),
            plural: plural.to_owned(),
        };
        let removed = self.store.remove_all(&resource);
        self.catalog.unregister_crd(name_of(crd));
        self.pending_uids
            .extend(removed.iter().map(|object| uid_of(object).to_owned()));
    }

    fn remove(&mut self, resource: &StoreKey, key: &ObjectKey) -> Option<Value> {
        let removed = self.store.remove(resource, key)?;
        self.pending_uids.push(uid_of(&removed).to_owned());
        self.mirror_event(resource, key, None);
        Some(removed)
    }

    /// A real API server keeps one store of Events and serves it as `events.k8s.io/v1` and as
    /// core `v1`; here an `events.k8s.io` Event written (or removed) is copied to (or removed
    /// from) the core store, converted, so that `kubectl get events` shows what netfence
    /// published. (The copy has its own resourceVersion; writes to core Events are not copied
    /// back.)
    fn mirror_event(&mut self, resource: &StoreKey, key: &ObjectKey, event: Option<&Value>) {
        if resource.group != "events.k8s.io" || resource.plural != "events" {
            return;
        }
        let core = StoreKey {
            group: String::new(),
            plural: "events".to_owned(),
        };
        match event {
            Some(event) => {
                self.store.put(&core, key.clone(), core_event(event));
            }
            None => {
                self.store.remove(&core, key);
            }
        }
    }

    /// Every stored object that names `uid` as an owner (from the store's owner index).
    fn dependents(&self, uid: &str) -> Vec<(StoreKey, ObjectKey)> {
        self.store.dependents_of(uid)
    }

    fn has_dependents(&self, uid: &str) -> bool {
        !self.dependents(uid).is_empty()
    }

    /// Strip the owner reference to `uid` from its dependents (`propagationPolicy: Orphan`).
    fn orphan_dependents(&mut self, uid: &str) {
        for (resource, key) in self.dependents(uid) {
            self.drop_owner_reference(&resource, key, uid);
        }
    }

    fn drop_owner_reference(&mut self, resource: &StoreKey, key: ObjectKey, uid: &str) {
        let Some(mut object) = self.store.get(resource, &key).cloned() else {
            return;
        };
        let remaining: Vec<Value> = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|owners| {
                owners
                    .iter()
                    .filter(|owner| owner.get("uid").and_then(Value::as_str) != Some(uid))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let metadata = metadata_mut(&mut object);
        if remaining.is_empty() {
            metadata.remove("ownerReferences");
        } else {
            metadata.insert("ownerReferences".to_owned(), Value::Array(remaining));
        }
        self.store.put(resource, key, object);
    }

    /// Delete the dependents of `uid` now (`propagationPolicy: Foreground`).
    fn delete_dependents(&mut self, uid: &str) {
        for (resource, key) in self.dependents(uid) {
            let Some(info) = self.catalog.any_version(&resource).cloned() else {
                continue;
            };
            let namespace = (!key.namespace.is_empty()).then_some(key.namespace.clone());
            let _ = self.delete(
                &info,
                namespace.as_deref(),
                &key.name,
                &DeleteOptions::default(),
            );
        }
    }

    /// The uids an object names as owners that no stored object has.
    fn dangling_owners(&self, object: &Value) -> Vec<String> {
        object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|owner| owner.get("uid").and_then(Value::as_str))
            .filter(|uid| !self.store.holds_uid(uid))
            .map(str::to_owned)
            .collect()
    }

    /// An object written with owners that do not exist, as upstream's garbage collector treats
    /// it: deleted when no owner exists, else only the dangling references are removed.
    fn collect_dangling(&mut self, resource: &StoreKey, key: &ObjectKey) {
        let Some(object) = self.store.get(resource, key) else {
            return;
        };
        let dangling = self.dangling_owners(object);
        if dangling.is_empty() {
            return;
        }
        let owners = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if dangling.len() < owners {
            for uid in &dangling {
                self.drop_owner_reference(resource, key.clone(), uid);
            }
        } else if let Some(info) = self.catalog.any_version(resource).cloned() {
            let namespace = (!key.namespace.is_empty()).then_some(key.namespace.clone());
            let _ = self.delete(
                &info,
                namespace.as_deref(),
                &key.name,
                &DeleteOptions::default(),
            );
        }
    }

    /// The garbage collector, run to a fixed point after every write: dependents of removed
    /// owners are deleted (or lose the reference when another owner remains), so are objects
    /// written with owners that do not exist (kube-controller-manager's collector looks such an
    /// owner up, finds none, and does the same), terminating namespaces that are empty go, and
    /// foreground deletions whose dependents are gone finish.
    fn collect_garbage(&mut self) {
        for _round in 0..10_000 {
            if let Some((resource, key)) = self.dangling.pop() {
                self.collect_dangling(&resource, &key);
                continue;
            }
            if let Some(uid) = self.pending_uids.pop() {
                let dependents = self.dependents(&uid);
                if dependents.is_empty() {
                    continue;
                }
                for (resource, key) in dependents {
                    let Some(object) = self.store.get(&resource, &key) else {
                        continue;
                    };
                    let other_owner = object
                        .pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|owners| {
                            owners.iter().any(|owner| {
                                owner
                                    .get("uid")
                                    .and_then(Value::as_str)
                                    .is_some_and(|other| {
                                        other != uid && self.store.holds_uid(other)
                                    })
                            })
                        });
                    if other_owner {
                        self.drop_owner_reference(&resource, key, &uid);
                    } else if let Some(info) = self.catalog.any_version(&resource).cloned() {
                        let namespace =
                            (!key.namespace.is_empty()).then_some(key.namespace.clone());
                        let _ = self.delete(
                            &info,
                            namespace.as_deref(),
                            &key.name,
                            &DeleteOptions::default(),
                        );
                    }
                }
                continue;
            }
            if !self.finish_deletions() {
                return;
            }
        }
    }

    /// Finish one pending deletion that nothing holds any more. Returns whether it did.
    fn finish_deletions(&mut self) -> bool {
        let namespaces = StoreKey {
            group: String::new(),
            plural: "namespaces".to_owned(),
        };
        let terminating: Vec<ObjectKey> = self
            .store
            .terminating_namespaces()
            .into_iter()
            .filter(|key| {
                self.store
                    .get(&namespaces, key)
                    .is_some_and(|object| finalizers_of(object).is_empty())
            })
            .collect();
        for key in terminating {
            let occupied = self.store.resources().iter().any(|resource| {
                self.catalog
                    .any_version(resource)
                    .is_some_and(|info| info.namespaced)
                    && self.store.holds_namespace(resource, &key.name)
            });
            if !occupied {
                self.remove(&namespaces, &key);
                return true;
            }
        }
        let waiting = std::mem::take(&mut self.foreground);
        let mut finished = false;
        for (resource, key) in waiting {
            let Some(mut object) = self.store.get(&resource, &key).cloned() else {
                continue;
            };
            if finished || self.has_dependents(uid_of(&object)) {
                self.foreground.push((resource, key));
                continue;
            }
            let remaining: Vec<String> = finalizers_of(&object)
                .into_iter()
                .filter(|finalizer| finalizer != "foregroundDeletion")
                .collect();
            if remaining.is_empty() {
                self.remove(&resource, &key);
            } else {
                object["metadata"]["finalizers"] = json!(remaining);
                self.store.put(&resource, key, object);
            }
            finished = true;
        }
        finished
    }
}

/// What the server sets on some kinds: namespace labels and phase, CRD status.
fn kind_rules(info: &ResourceInfo, old: Option<&Value>, new: &mut Value) {
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => {
            let name = name_of(new).to_owned();
            let metadata = metadata_mut(new);
            let labels = metadata.entry("labels").or_insert_with(|| json!({}));
            labels[NAMESPACE_NAME_LABEL] = json!(name);
            if new.pointer("/spec/finalizers").is_none() {
                new["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            let phase = if is_deleting(new) {
                "Terminating"
            } else {
                "Active"
            };
            new["status"] = json!({"phase": phase});
        }
        ("", "pods") if new.pointer("/status/phase").is_none() => {
            new["status"]["phase"] = json!("Pending");
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let storage = new
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .and_then(|versions| {
                    versions.iter().find(|version| {
                        version.get("storage").and_then(Value::as_bool) == Some(true)
                    })
                })
                .and_then(|version| version.get("name"))
                .cloned()
                .unwrap_or(Value::Null);
            let since = old
                .and_then(|old| old.pointer("/status/conditions/0/lastTransitionTime"))
                .cloned()
                .unwrap_or_else(|| json!(now()));
            let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message});
            new["status"] = json!({
                "acceptedNames": new.pointer("/spec/names").cloned().unwrap_or_else(|| json!({})),
                "conditions": [
                    condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                    condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                ],
                "storedVersions": [storage],
            });
        }
        _ => {}
    }
}

fn body_has_managed_fields(object: &Value) -> bool {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| !entries.is_empty())
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

/// 400 when the body names another kind or version than the URL.
fn check_type(info: &ResourceInfo, object: &Value) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the object provided is unrecognized (must be of type object)",
        ));
    }
    if let Some(kind) = object.get("kind")
        && kind.as_str() != Some(info.kind.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the body ({}) does not match the kind of the resource ({})",
            kind.as_str().unwrap_or("?"),
            info.kind
        )));
    }
    if let Some(api_version) = object.get("apiVersion")
        && api_version.as_str() != Some(info.api_version().as_str())
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            api_version.as_str().unwrap_or("?"),
            info.api_version()
        )));
    }
    Ok(())
}

/// `metadata.uid: field is immutable` when `new` names another uid than `old` (none keeps it).
fn changed_uid(old: &Value, new: &Value) -> Option<FieldCause> {
    let uid = uid_of(new);
    (!uid.is_empty() && uid != uid_of(old)).then(|| FieldCause {
        reason: "FieldValueInvalid",
        field: "metadata.uid".to_owned(),
        message: format!("Invalid value: {}: field is immutable", json!(uid)),
    })
}

/// 400 when a create's or update's body does not decode into the type of its kind, in
/// upstream's words for a body it cannot decode.
fn check_decodes(info: &ResourceInfo, object: &Value) -> Result<(), ApiError> {
    match super::builtin::decode_problem(info, object) {
        Some(problem) => Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {problem}",
            kind = info.kind,
            version = info.version
        ))),
        None => Ok(()),
    }
}

fn encode_continue(revision: u64, last: &ObjectKey) -> String {
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": revision, "start": [last.namespace, last.name]})
            .to_string();
    let mut hex = String::with_capacity(token.len() * 2);
    for byte in token.bytes() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn decode_continue(token: &str) -> Result<(u64, Option<ObjectKey>), ApiError> {
    let invalid = || ApiError::bad_request("continue key is not valid: the token is malformed");
    if !token.len().is_multiple_of(2) || token.len() > 8192 {
        return Err(invalid());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(token.get(at..at + 2).unwrap_or("zz"), 16))
        .collect();
    let bytes = bytes.map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let revision = value
        .get("rv")
        .and_then(Value::as_u64)
        .ok_or_else(invalid)?;
    let start = value
        .get("start")
        .and_then(Value::as_array)
        .ok_or_else(invalid)?;
    let part = |index: usize| start.get(index).and_then(Value::as_str).map(str::to_owned);
    match (part(0), part(1)) {
        (Some(namespace), Some(name)) => Ok((revision, Some(ObjectKey { namespace, name }))),
        _ => Err(invalid()),
    }
}

/// An `events.k8s.io/v1` Event as the core `v1` Event the real server serves for it.
fn core_event(event: &Value) -> Value {
    let field = |name: &str| event.get(name).cloned().unwrap_or(Value::Null);
    let mut metadata = event.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(map) = metadata.as_object_mut() {
        map.remove("managedFields");
        map.remove("resourceVersion");
    }
    let source_component = event
        .pointer("/deprecatedSource/component")
        .or_else(|| event.get("reportingController"))
        .cloned()
        .unwrap_or(Value::Null);
    let count = event
        .pointer("/series/count")
        .or_else(|| event.get("deprecatedCount"))
        .cloned()
        .unwrap_or_else(|| json!(1));
    let mut core = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": metadata,
        "involvedObject": field("regarding"),
        "related": field("related"),
        "reason": field("reason"),
        "message": field("note"),
        "type": field("type"),
        "action": field("action"),
        "eventTime": field("eventTime"),
        "firstTimestamp": field("deprecatedFirstTimestamp"),
        "lastTimestamp": field("deprecatedLastTimestamp"),
        "count": count,
        "source": {"component": source_component, "host": event.pointer("/deprecatedSource/host").cloned().unwrap_or(Value::Null)},
        "reportingComponent": field("reportingController"),
        "reportingInstance": field("reportingInstance"),
        "series": event.get("series").map_or(Value::Null, |series| json!({
            "count": series.get("count").cloned().unwrap_or(Value::Null),
            "lastObservedTime": series.get("lastObservedTime").cloned().unwrap_or(Value::Null),
        })),
    });
    drop_nulls(&mut core);
    core
}

fn drop_nulls(value: &mut Value) {
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, field| !field.is_null());
        for field in map.values_mut() {
            drop_nulls(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(references: &Value) -> Vec<String> {
        owner_reference_causes(&json!({"metadata": {"ownerReferences": references}}))
            .iter()
            .map(FieldCause::text)
            .collect()
    }

    /// Owner references as upstream's `ValidateOwnerReferences` checks them. If this fails, the
    /// sandbox stores references a real server refuses (or refuses good ones).
    #[test]
    fn owner_references_are_checked_as_upstream() {
        let good = json!({"apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation", "name": "shop", "uid": "u", "controller": true});
        assert!(messages(&json!([good])).is_empty());
        assert_eq!(
            messages(
                &json!([{"apiVersion": "a/b/c", "kind": "K", "name": "n", "uid": "u"}, {"apiVersion": "a/", "kind": "K", "name": "n", "uid": "u"}])
            ),
            [
                "metadata.ownerReferences[0].apiVersion: Invalid value: \"a/b/c\": must be <group>/<version> or <version>",
                "metadata.ownerReferences[1].apiVersion: Invalid value: \"a/\": must be <group>/<version> or <version>",
            ]
        );
        assert_eq!(
            messages(&json!([{"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"}])),
            [
                "metadata.ownerReferences[0]: Invalid value: {\"apiVersion\":\"v1\",\"kind\":\"Event\",\"name\":\"e\",\"uid\":\"u\"}: /v1, Kind=Event is disallowed from being an owner"
            ]
        );
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": "v", "controller": true});
        let third = json!({"apiVersion": "v1", "kind": "Secret", "name": "c", "uid": "w", "controller": true});
        let found = messages(&json!([good, second, third]));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].ends_with(
                "Found \"true\" in references for NamespaceIsolation/shop and ConfigMap/b"
            ),
            "{found:?}"
        );
        assert!(
            found[1]
                .ends_with("Found \"true\" in references for NamespaceIsolation/shop and Secret/c"),
            "{found:?}"
        );
    }
}
