//! The write pipeline: create (with `generateName`), update, the patch types, server-side apply,
//! and `commit`, the steps they share, in the order the real server runs them.
//!
//! ```text
//! create | update | patch | apply --> Write --commit--> server fields --> finalizers --> admission
//!     --> managed fields --> kind rules, generation --> no-op or dry run? --> store --> collector
//! ```

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::super::{
    apply::{conflict_message, merge_apply, settle_ownership},
    builtin,
    cause::FieldCause,
    fields::{FieldSet, Scope, read_managed, same_value, track_update, write_managed},
    patch::{JsonPatchError, PatchType, json_patch, merge_patch, strip_strategic_directives},
    resources::{NAMESPACE_NAME_LABEL, ResourceInfo},
    schema::admit,
    status::ApiError,
    store::ObjectKey,
};
use super::{
    Answer, FieldValidation, State, WriteOptions, finalizers_of, is_deleting,
    metadata::{changed_uid, check_decodes, check_type, validate_metadata},
    metadata_mut, name_of, now, present, uid_of,
};

/// The longest field manager name the server accepts.
const MAX_FIELD_MANAGER: usize = 128;

/// How a write treats managed fields.
enum Ownership {
    /// A create, update or patch by this manager.
    Update(String),
    /// A server-side apply.
    Apply {
        manager: String,
        config_set: FieldSet,
        force: bool,
    },
}

impl State {
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
        if info.tracks_generation() {
            metadata.insert("generation".to_owned(), json!(1));
        }
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
        let write = Write {
            info,
            key: &key,
            old: None,
            ownership,
            scope: Scope::of(info, None),
            options,
        };
        let mut answer = self.commit(&write, object)?;
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
        let ownership = Ownership::Update(options.manager());
        let write = Write {
            info,
            key: &key,
            old: Some(&old),
            ownership: &ownership,
            scope,
            options,
        };
        self.commit(&write, candidate)
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
        if let Some(problem) = builtin::decode_problem(info, &patched) {
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
        let ownership = Ownership::Update(options.manager());
        let write = Write {
            info,
            key: &key,
            old: Some(&old),
            ownership: &ownership,
            scope,
            options,
        };
        self.commit(&write, patched)
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
        check_apply_config(info, namespace, name, old.as_ref(), config)?;
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
            Some(old) => {
                let write = Write {
                    info,
                    key,
                    old: Some(&old),
                    ownership: &ownership,
                    scope,
                    options,
                };
                self.commit(&write, candidate)
            }
            None => self.create_named(info, namespace, name, candidate, &ownership, options),
        }
    }

    /// The write pipeline shared by create, update, patch and apply, in the order the real
    /// server runs it: each step refuses the write or hands the object on.
    fn commit(&mut self, write: &Write<'_>, candidate: Value) -> Result<Answer, ApiError> {
        // A patch that changes the uid (an update's is a precondition, refused before).
        let changed_uid = write.old.and_then(|old| changed_uid(old, &candidate));
        let mut new = write.with_server_fields(candidate);
        write.check_finalizers(&new)?;
        drop_empty_metadata(&mut new);
        let old_view = write.old.map(|old| present(write.info, old));
        let (mut new, warnings) = self.admission(write, &new, old_view.as_ref(), changed_uid)?;
        write.record_managers(old_view.as_ref(), &mut new)?;
        kind_rules(write.info, write.old, &mut new);
        write.set_generation(&mut new);
        let unchanged = write.keep_resource_version(&mut new);
        if unchanged || write.options.dry_run {
            return Ok(Answer {
                code: 200,
                body: new,
                warnings,
            });
        }
        let body = self.store_write(write, new)?;
        Ok(Answer {
            code: 200,
            body: present(write.info, &body),
            warnings,
        })
    }

    /// Admission: the metadata checks, the schema and CEL rules, fields the schema lacks (by
    /// `fieldValidation`) and an apply's conflicts. The admitted object and the `Warning`s, or
    /// the refusal: every cause at once, after a typed-patch, strict-decoding or conflict error.
    fn admission(
        &self,
        write: &Write<'_>,
        new: &Value,
        old_view: Option<&Value>,
        changed_uid: Option<FieldCause>,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let mut causes: Vec<FieldCause> = changed_uid.into_iter().collect();
        causes.extend(validate_metadata(write.info, new));
        let admitted = admit(write.info, new.clone(), old_view, &self.cel, &causes);
        causes.extend(admitted.causes.iter().cloned());
        let warnings = write.unknown_fields(&admitted.unknown_fields)?;
        write.check_conflicts(old_view, &admitted.object, new)?;
        if !causes.is_empty() {
            return Err(ApiError::invalid(write.info, &write.key.name, &causes));
        }
        Ok((admitted.object, warnings))
    }

    /// Store the written object (or remove it, when the write dropped the last finalizer of an
    /// object being deleted), register a CRD, and run the garbage collector. The stored object.
    fn store_write(&mut self, write: &Write<'_>, new: Value) -> Result<Value, ApiError> {
        let Write { info, key, .. } = *write;
        if info.plural == "customresourcedefinitions"
            && info.group == "apiextensions.k8s.io"
            && let Err(causes) = self.catalog.register_crd(&new)
        {
            return Err(ApiError::invalid(info, &key.name, &causes));
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
        Ok(body)
    }
}

/// One write on its way to the store: everything [`State::commit`] needs but the object.
struct Write<'a> {
    /// The resource written.
    info: &'a ResourceInfo,
    /// Where the object is stored.
    key: &'a ObjectKey,
    /// The stored object the write replaces; `None` for a create.
    old: Option<&'a Value>,
    /// Who writes, and how managed fields record it.
    ownership: &'a Ownership,
    /// The object or its status.
    scope: Scope,
    /// `dryRun`, `fieldValidation`.
    options: &'a WriteOptions,
}

impl Write<'_> {
    /// The candidate with what the client may not change taken from the stored object: a
    /// status write changes only status (and managed fields), an object write keeps the
    /// server's metadata, and its status when the resource has a status subresource. Then the
    /// type, name and namespace the URL says.
    fn with_server_fields(&self, candidate: Value) -> Value {
        let (info, key) = (self.info, self.key);
        let mut new = match (self.old, self.scope) {
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
        metadata.insert("name".to_owned(), json!(key.name));
        if info.namespaced {
            metadata.insert("namespace".to_owned(), json!(key.namespace));
        } else {
            metadata.remove("namespace");
        }
        new
    }

    /// 422 when a finalizer is added to an object being deleted.
    fn check_finalizers(&self, new: &Value) -> Result<(), ApiError> {
        if let Some(old) = self.old {
            let old_finalizers: BTreeSet<String> = finalizers_of(old).into_iter().collect();
            if is_deleting(old)
                && finalizers_of(new)
                    .iter()
                    .any(|finalizer| !old_finalizers.contains(finalizer))
            {
                return Err(ApiError::invalid(
                    self.info,
                    &self.key.name,
                    &[FieldCause {
                        reason: "FieldValueForbidden",
                        field: "metadata.finalizers".to_owned(),
                        message: "Forbidden: no new finalizers can be added if the object is being deleted".to_owned(),
                    }],
                ));
            }
        }
        Ok(())
    }

    /// Fields the schema does not declare: the `Warning`s they give, or the refusal.
    fn unknown_fields(&self, unknown: &[String]) -> Result<Vec<String>, ApiError> {
        let mut warnings = Vec::new();
        // Server-side apply converts the configuration to a typed object first: a field the
        // schema lacks fails the request whatever fieldValidation says (500, as upstream).
        if matches!(*self.ownership, Ownership::Apply { .. }) && !unknown.is_empty() {
            let mut fields = unknown.to_vec();
            fields.sort();
            return Err(ApiError::typed_patch(self.info, &self.key.name, &fields));
        }
        if !unknown.is_empty() {
            match self.options.field_validation {
                FieldValidation::Strict => {
                    let listed: Vec<String> = unknown
                        .iter()
                        .map(|field| format!("unknown field \"{}\"", field.trim_start_matches('.')))
                        .collect();
                    let message = format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                        listed.join(", "),
                        kind = self.info.kind,
                        version = self.info.version
                    );
                    return Err(ApiError::bad_request(message));
                }
                FieldValidation::Warn => {
                    warnings.extend(unknown.iter().map(|field| {
                        format!("unknown field \"{}\"", field.trim_start_matches('.'))
                    }));
                }
                FieldValidation::Ignore => {}
            }
        }
        Ok(warnings)
    }

    /// 409 when an apply would take fields another manager owns, without `force`; `new` is
    /// the object before admission (its managed fields), `admitted` after.
    fn check_conflicts(
        &self,
        old_view: Option<&Value>,
        admitted: &Value,
        new: &Value,
    ) -> Result<(), ApiError> {
        if let Ownership::Apply {
            manager,
            config_set,
            force,
        } = self.ownership
        {
            let entries = read_managed(new);
            if let Err(conflicts) = settle_ownership(
                old_view,
                admitted,
                config_set,
                &entries,
                self.scope,
                manager,
                *force,
                &self.info.api_version(),
                &now(),
            ) {
                let causes: Vec<FieldCause> = conflicts
                    .iter()
                    .map(|conflict| FieldCause {
                        reason: "FieldManagerConflict",
                        field: FieldSet::display(&conflict.path),
                        message: format!("conflict with {}", conflict.owner()),
                    })
                    .collect();
                return Err(ApiError::apply_conflict(
                    self.info,
                    &self.key.name,
                    conflict_message(&conflicts),
                    &causes,
                ));
            }
        }
        Ok(())
    }

    /// `metadata.managedFields` after the write: an update's manager takes the fields it
    /// changed, an apply's the fields of its configuration (conflicts were checked before).
    fn record_managers(&self, old_view: Option<&Value>, new: &mut Value) -> Result<(), ApiError> {
        let stamp = now();
        let api_version = self.info.api_version();
        let mut entries = read_managed(new);
        match self.ownership {
            Ownership::Update(manager) => {
                if manager.len() > MAX_FIELD_MANAGER {
                    return Err(ApiError::bad_request(format!(
                        "fieldManager: Too long: may not be more than {MAX_FIELD_MANAGER} bytes"
                    )));
                }
                track_update(
                    &mut entries,
                    old_view,
                    new,
                    &self.info.schema,
                    self.scope,
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
                    old_view,
                    new,
                    config_set,
                    &entries,
                    self.scope,
                    manager,
                    *force,
                    &api_version,
                    &stamp,
                )
                .unwrap_or(entries);
            }
        }
        write_managed(new, &entries);
        Ok(())
    }

    /// `metadata.generation`: 1 for a create; one more than before when the write changed
    /// more than metadata (and status, for a resource with a status subresource); none for a
    /// resource that keeps none ([`ResourceInfo::tracks_generation`]).
    fn set_generation(&self, new: &mut Value) {
        if !self.info.tracks_generation() {
            metadata_mut(new).remove("generation");
            return;
        }
        let generation = match self.old {
            None => 1,
            Some(old) => {
                let previous = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                if same_value(
                    &generation_view(old, self.info),
                    &generation_view(new, self.info),
                ) {
                    previous
                } else {
                    previous + 1
                }
            }
        };
        metadata_mut(new).insert("generation".to_owned(), json!(generation));
    }

    /// The stored `resourceVersion` put on the object (a create's removed), and whether the
    /// write changes nothing: such a write is answered without storing anything.
    fn keep_resource_version(&self, new: &mut Value) -> bool {
        if let Some(old) = self.old {
            if let Some(version) = old.pointer("/metadata/resourceVersion") {
                metadata_mut(new).insert("resourceVersion".to_owned(), version.clone());
            }
            same_value(&present(self.info, old), new)
        } else {
            metadata_mut(new).remove("resourceVersion");
            false
        }
    }
}

/// As upstream's ObjectMeta (Go slices and maps with omitempty): empty labels, annotations,
/// finalizers and owner references are not stored.
fn drop_empty_metadata(object: &mut Value) {
    let metadata = metadata_mut(object);
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
}

/// The checks of an apply configuration before it is merged, in the real server's order: an
/// object, of the URL's kind, that decodes into its type, naming the URL's object and
/// namespace, at the stored resourceVersion if it names one, with the stored uid (and none when
/// it creates the object).
fn check_apply_config(
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    old: Option<&Value>,
    config: &Value,
) -> Result<(), ApiError> {
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the apply configuration is not an object",
        ));
    }
    check_type(info, config)?;
    // Upstream converts the configuration to a typed object first: a field of the wrong
    // type fails the request with 500, as a field the schema lacks does.
    if let Some(problem) = builtin::decode_problem(info, config) {
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
    // Upstream's patch handler: an apply that would create the object may not name its uid
    // (the server gives one), so a uid cannot stand for "create only if absent".
    if old.is_none() && !uid_of(config).is_empty() {
        return Err(ApiError::apply_uid_not_found(info, name, uid_of(config)));
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
            .and_then(|old| old.pointer("/metadata/resourceVersion"))
            .and_then(Value::as_str)
            != Some(requested)
    {
        return Err(ApiError::stale(info, name));
    }
    // The configuration's uid does not survive the merge that follows: a changed one is
    // refused here, as upstream refuses the merged object.
    if let Some(cause) = old.and_then(|old| changed_uid(old, config)) {
        return Err(ApiError::invalid(info, name, &[cause]));
    }
    Ok(())
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

fn body_has_managed_fields(object: &Value) -> bool {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| !entries.is_empty())
}
