//! Kubernetes `Status` bodies: every failed request answers one, with the code, reason and
//! message format of the real API server, so clients (`kube::Error::Api`, kubectl) read them.

use serde_json::{Value, json};

use super::{cause::FieldCause, resources::ResourceInfo};

/// A failed request, as the API server reports it: an HTTP code, a machine-readable reason
/// (`NotFound`, `Conflict`, `Invalid`...), a message, and optional details.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// The HTTP status code.
    pub code: u16,
    /// The `reason` of the Status (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`...).
    pub reason: &'static str,
    /// The human-readable message.
    pub message: String,
    /// `details` of the Status: name, group, kind, causes.
    pub details: Option<Value>,
    /// Seconds the client should wait before retrying (`Retry-After`), for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this code, reason and message.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 404 for a path that names no served resource.
    #[must_use]
    pub fn no_route() -> Self {
        let mut error = ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        error.details = Some(json!({}));
        error
    }

    /// 404 for an object that does not exist.
    #[must_use]
    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        let mut error = ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", info.group_resource()),
        );
        error.details = Some(details(info, name));
        error
    }

    /// 404 for a namespace that does not exist, when creating inside it.
    #[must_use]
    pub fn namespace_not_found(namespace: &str) -> Self {
        let mut error = ApiError::new(
            404,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        );
        error.details = Some(json!({"name": namespace, "kind": "namespaces"}));
        error
    }

    /// 409 for a create of an object that exists.
    #[must_use]
    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        let mut error = ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", info.group_resource()),
        );
        error.details = Some(details(info, name));
        error
    }

    /// 409 for a write whose `resourceVersion` or precondition is stale.
    #[must_use]
    pub fn stale(info: &ResourceInfo, name: &str) -> Self {
        ApiError::cannot_fulfil(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 for a precondition (uid or resourceVersion) of a delete that does not hold.
    #[must_use]
    pub fn precondition_failed(info: &ResourceInfo, name: &str, what: &str) -> Self {
        ApiError::cannot_fulfil(info, name, &format!("Precondition failed: {what}"))
    }

    /// 409 for an apply whose configuration names a uid when no object of its name exists:
    /// upstream's patch handler refuses to create an object under a uid it did not give.
    #[must_use]
    pub fn apply_uid_not_found(info: &ResourceInfo, name: &str, uid: &str) -> Self {
        ApiError::cannot_fulfil(
            info,
            name,
            &format!(
                "uid mismatch: the provided object specified uid {uid}, and no existing object was found"
            ),
        )
    }

    /// 409 Conflict, in upstream's words for a write that cannot be carried out (`why`).
    fn cannot_fulfil(info: &ResourceInfo, name: &str, why: &str) -> Self {
        let mut error = ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                info.group_resource()
            ),
        );
        error.details = Some(details(info, name));
        error
    }

    /// 409 for an update whose body names another uid than the stored object's: upstream
    /// takes the body's uid as a precondition, and its storage refuses it in these words.
    #[must_use]
    pub fn uid_precondition_failed(
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        given: &str,
        actual: &str,
    ) -> Self {
        // etcd keys: built-in kinds under their plural, CRDs and custom resources under their
        // group too.
        let prefix = if info.custom || info.group == "apiextensions.k8s.io" {
            format!("{}/{}", info.group, info.plural)
        } else {
            info.plural.clone()
        };
        let key = if namespace.is_empty() {
            format!("/registry/{prefix}/{name}")
        } else {
            format!("/registry/{prefix}/{namespace}/{name}")
        };
        ApiError::cannot_fulfil(
            info,
            name,
            &format!(
                "StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {given}, UID in object meta: {actual}"
            ),
        )
    }

    /// 422 for a patch whose result does not decode into the type of its kind: upstream quotes
    /// the patched object and says why, under an empty kind and name.
    #[must_use]
    pub fn patch_invalid(patched: &Value, problem: &str) -> Self {
        let quoted = serde_json::to_string(&patched.to_string()).unwrap_or_default();
        let cause = FieldCause {
            reason: "FieldValueInvalid",
            field: "patch".to_owned(),
            message: format!("Invalid value: {quoted}: {problem}"),
        };
        let mut error = ApiError::new(
            422,
            "Invalid",
            format!(" \"\" is invalid: {}", cause.text()),
        );
        error.details = Some(json!({"causes": causes_json(&[cause])}));
        error
    }

    /// 409 for a server-side apply that touches fields another manager owns.
    #[must_use]
    pub fn apply_conflict(
        info: &ResourceInfo,
        name: &str,
        message: String,
        causes: &[FieldCause],
    ) -> Self {
        let mut error = ApiError::new(409, "Conflict", message);
        let mut detail = details(info, name);
        detail["causes"] = causes_json(causes);
        error.details = Some(detail);
        error
    }

    /// 422 with every invalid field: `Kind.group "name" is invalid: field: message`.
    #[must_use]
    pub fn invalid(info: &ResourceInfo, name: &str, causes: &[FieldCause]) -> Self {
        let listed: Vec<String> = causes.iter().map(FieldCause::text).collect();
        let joined = if listed.len() == 1 {
            listed[0].clone()
        } else {
            format!("[{}]", listed.join(", "))
        };
        // events.k8s.io Events are validated as the core Event they share a registry with.
        let (group, group_kind) = if info.group == "events.k8s.io" {
            (String::new(), info.kind.clone())
        } else {
            (info.group.clone(), info.group_kind())
        };
        let mut error = ApiError::new(
            422,
            "Invalid",
            format!("{group_kind} \"{name}\" is invalid: {joined}"),
        );
        let mut detail = json!({"name": name, "kind": info.kind});
        if !group.is_empty() {
            detail["group"] = json!(group);
        }
        detail["causes"] = causes_json(causes);
        error.details = Some(detail);
        error
    }

    /// 400 for a request the server cannot make sense of.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    /// 403 for a write the server refuses (a terminating namespace, say).
    #[must_use]
    pub fn forbidden(info: &ResourceInfo, name: &str, message: &str) -> Self {
        let mut error = ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: {message}",
                info.group_resource()
            ),
        );
        error.details = Some(details(info, name));
        error
    }

    /// 405 for a verb the resource does not support at that path.
    #[must_use]
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// 410 for a `resourceVersion` older than the retained history.
    #[must_use]
    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    /// 413 for a body over the limit.
    #[must_use]
    pub fn too_large(limit: usize) -> Self {
        ApiError::new(413, "RequestEntityTooLarge", format!("limit is {limit}"))
    }

    /// 415 for a body of a media type the endpoint does not accept.
    #[must_use]
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                if accepted.is_empty() {
                    content_type.to_owned()
                } else {
                    accepted.join(", ")
                }
            ),
        )
    }

    /// 415 for a protobuf body the sandbox does not decode: says what it decodes, and what
    /// works instead.
    #[must_use]
    pub fn protobuf_unsupported(message: impl Into<String>) -> Self {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    /// 500, as fault injection or an internal failure answers.
    #[must_use]
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", message)
    }

    /// 500 without a reason: what the real server answers for a server-side apply whose
    /// configuration does not fit the schema (it fails to convert the patch to a typed object,
    /// whatever `fieldValidation` says, and lists the fields it trips on).
    #[must_use]
    pub fn typed_patch(info: &ResourceInfo, name: &str, fields: &[String]) -> Self {
        let errors = match fields {
            [field] => format!("{field}: field not declared in schema"),
            _ => format!(
                "errors:\n{}",
                fields
                    .iter()
                    .map(|field| format!("  {field}: field not declared in schema"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        ApiError::typed_patch_failed(info, name, &errors)
    }

    /// 500 without a reason for a server-side apply configuration that does not convert to a
    /// typed object, for the reason `errors` gives (a field of the wrong type, say).
    #[must_use]
    pub fn typed_patch_failed(info: &ResourceInfo, name: &str, errors: &str) -> Self {
        ApiError::new(
            500,
            "",
            format!(
                "failed to create typed patch object (/{name}; {}, Kind={}): {errors}",
                info.api_version(),
                info.kind
            ),
        )
    }

    /// Any code, with the reason the real server gives it. Used by fault injection.
    #[must_use]
    pub fn injected(code: u16, info: Option<&ResourceInfo>, name: Option<&str>) -> Self {
        let (reason, message) = match code {
            400 => ("BadRequest", "injected fault: bad request".to_owned()),
            403 => ("Forbidden", "injected fault: forbidden".to_owned()),
            404 => ("NotFound", "injected fault: not found".to_owned()),
            409 => (
                "Conflict",
                match (info, name) {
                    (Some(info), Some(name)) => format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        info.group_resource()
                    ),
                    _ => "injected fault: conflict".to_owned(),
                },
            ),
            410 => ("Expired", "injected fault: too old resource version".to_owned()),
            429 => (
                "TooManyRequests",
                "injected fault: the server has received too many requests and has asked us to try again later".to_owned(),
            ),
            503 => ("ServiceUnavailable", "injected fault: the server is currently unable to handle the request".to_owned()),
            504 => ("Timeout", "injected fault: the server was unable to return a response in the time allotted".to_owned()),
            _ => ("InternalError", "injected fault: an error on the server has prevented the request from succeeding".to_owned()),
        };
        let mut error = ApiError::new(code, reason, message);
        if matches!(code, 429 | 503) {
            error.retry_after = Some(1);
        }
        error
    }

    /// The `Status` object.
    #[must_use]
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        // The real server leaves out an empty reason (a 500 from server-side apply has none).
        if self.reason.is_empty()
            && let Some(map) = status.as_object_mut()
        {
            map.remove("reason");
        }
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        if let Some(seconds) = self.retry_after {
            let detail = status
                .as_object_mut()
                .map(|map| map.entry("details").or_insert_with(|| json!({})));
            if let Some(detail) = detail {
                detail["retryAfterSeconds"] = json!(seconds);
            }
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

fn details(info: &ResourceInfo, name: &str) -> Value {
    json!({"name": name, "group": info.group, "kind": info.plural})
}

fn causes_json(causes: &[FieldCause]) -> Value {
    Value::Array(
        causes
            .iter()
            .map(|cause| json!({"reason": cause.reason, "message": cause.message, "field": cause.field}))
            .collect(),
    )
}

/// The `Status` of a successful delete of an object that is gone at once.
#[must_use]
pub fn deleted(info: &ResourceInfo, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": info.group, "kind": info.plural, "uid": uid},
    })
}
