//! The HTTP surface: paths parsed the way the real server's request-info resolver does, verbs
//! from methods, bodies decoded and bounded, answers as JSON (objects, lists, Tables, Status).
//!
//! ```text
//! /api/v1/namespaces/NS/RESOURCE/NAME/SUBRESOURCE
//! /apis/GROUP/VERSION/RESOURCE/NAME                     (cluster-scoped)
//! /apis/GROUP/VERSION/RESOURCE                          (every namespace)
//!   GET -> get | list | watch    POST -> create    PUT -> update
//!   PATCH -> patch | apply       DELETE -> delete | deletecollection
//! ```
//!
//! Every request goes through fault injection first and lands in the audit log with its code.
//! Nothing a client sends can crash the server: malformed bodies are 400, bodies nested deeper
//! than [`super::limits`] allows 400 before they are parsed, unknown paths 404, bodies over the
//! limit 413, unsupported media types 415, each with a `Status` body.

use std::{collections::HashMap, fmt::Write as _, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    Shared,
    audit::AuditEntry,
    discovery,
    limits::{self, MAX_DEPTH, MAX_YAML_DEPTH, json_too_deep},
    names::check_path_segment,
    objects::{DeleteOptions, FieldValidation, ListOptions, WriteOptions},
    patch::PatchType,
    protobuf,
    resources::ResourceInfo,
    selector::{FieldSelector, LabelSelector},
    status::ApiError,
    table::Output,
    watch::{self, WatchRequest},
};

/// The parsed path of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    Root,
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    Resources(String, String),
    OpenApiRoot,
    OpenApiDocument(String, String),
    Object(Target),
}

/// A resource request: which resource, where, which object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// The subresources of a namespace that follow its name: `/api/v1/namespaces/NAME/status`.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

fn percent_decode(segment: &str) -> Result<String, ApiError> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = segment
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("invalid escape in path segment {segment:?}"))
                })?;
            decoded.push(hex);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| ApiError::bad_request("path is not UTF-8"))
}

fn parse_route(path: &str) -> Result<Route, ApiError> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(percent_decode)
        .collect::<Result<_, _>>()?;
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let route = match parts.as_slice() {
        [] => Route::Root,
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz"] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["api", version] => Route::Resources(String::new(), (*version).to_owned()),
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group((*group).to_owned()),
        ["apis", group, version] => Route::Resources((*group).to_owned(), (*version).to_owned()),
        ["openapi", "v3"] => Route::OpenApiRoot,
        ["openapi", "v3", "api", version] => {
            Route::OpenApiDocument(String::new(), (*version).to_owned())
        }
        ["openapi", "v3", "apis", group, version] => {
            Route::OpenApiDocument((*group).to_owned(), (*version).to_owned())
        }
        ["api", version, rest @ ..] => Route::Object(parse_target("", version, rest)?),
        ["apis", group, version, rest @ ..] => Route::Object(parse_target(group, version, rest)?),
        _ => return Err(ApiError::no_route()),
    };
    Ok(route)
}

fn parse_target(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let mut target = Target {
        group: group.to_owned(),
        version: version.to_owned(),
        ..Target::default()
    };
    let mut rest = rest;
    if rest.first() == Some(&"namespaces")
        && rest.len() > 1
        && rest.len() > 2
        && !NAMESPACE_SUBRESOURCES.contains(&rest[2])
    {
        check_path_segment(rest[1])?;
        target.namespace = Some(rest[1].to_owned());
        rest = &rest[2..];
    }
    match rest {
        [plural] => (*plural).clone_into(&mut target.plural),
        [plural, name] => {
            (*plural).clone_into(&mut target.plural);
            target.name = Some((*name).to_owned());
        }
        [plural, name, subresource] => {
            (*plural).clone_into(&mut target.plural);
            target.name = Some((*name).to_owned());
            target.subresource = Some((*subresource).to_owned());
        }
        _ => return Err(ApiError::no_route()),
    }
    if let Some(name) = &target.name {
        check_path_segment(name)?;
    }
    Ok(target)
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

fn truthy(query: &HashMap<String, String>, key: &str) -> bool {
    query
        .get(key)
        .is_some_and(|value| matches!(value.as_str(), "true" | "1" | "True"))
}

fn json_response(code: u16, body: &Value, warnings: &[String]) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for warning in warnings {
        let text = format!("299 - \"{}\"", warning.replace('"', "\\\""));
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.append(header::WARNING, value);
        }
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, headers, body.to_string()).into_response()
}

/// What a request is, for the audit log and fault injection.
#[derive(Clone, Debug, Default)]
struct Facts {
    verb: String,
    target: Target,
    field_manager: Option<String>,
}

impl Facts {
    /// The facts of a request for an object or a list: the verb as the audit log names it
    /// (`apply` for a server-side apply patch), the target, the field manager.
    fn of(
        method: &Method,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        target: Target,
    ) -> Facts {
        let verb = verb_of(method, target.name.is_some(), truthy(query, "watch"));
        Facts {
            verb: if verb == "patch" && is_apply(headers) {
                "apply".to_owned()
            } else {
                verb
            },
            field_manager: query.get("fieldManager").cloned(),
            target,
        }
    }
}

/// What a request asks, named as the sandbox's audit log and fault rules name it. The sandbox's
/// handler and the e2e harness's fault-injecting proxy in front of a real API server share it,
/// so one fault rule means the same on both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// As [`AuditEntry::verb`].
    pub verb: String,
    /// API group, empty for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name; empty for discovery.
    pub resource: String,
    /// `status` for the status subresource.
    pub subresource: Option<String>,
    /// The namespace of the request.
    pub namespace: Option<String>,
    /// The object name.
    pub name: Option<String>,
    /// `fieldManager` of a write.
    pub field_manager: Option<String>,
}

/// Classify one request by its method, path, query and `Content-Type`.
#[must_use]
pub fn request_info(method: &Method, uri: &Uri, headers: &HeaderMap) -> RequestInfo {
    let query = parse_query(uri.query());
    let facts = match parse_route(uri.path()) {
        Ok(Route::Object(target)) => Facts::of(method, headers, &query, target),
        Ok(_) => Facts {
            verb: "discovery".to_owned(),
            ..Facts::default()
        },
        Err(_) => Facts {
            verb: verb_of(method, false, false),
            ..Facts::default()
        },
    };
    RequestInfo {
        verb: facts.verb,
        group: facts.target.group,
        version: facts.target.version,
        resource: facts.target.plural,
        subresource: facts.target.subresource,
        namespace: facts.target.namespace,
        name: facts.target.name,
        field_manager: facts.field_manager,
    }
}

/// The response of a watch: its stream of events.
fn watch_response(body: Body) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        body,
    )
        .into_response()
}

/// `text` quoted as Go's `%q` (`strconv.Quote`) quotes it in an error message.
fn go_quote(text: &str) -> String {
    // A JSON string escapes what `%q` escapes, in the same `\"`, `\\` and `\n` forms.
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

/// The response of a failed request: its `Status`, with `Retry-After` where the error sets one.
#[must_use]
pub fn error_response(error: &ApiError) -> Response {
    let mut response = json_response(error.code, &error.to_status(), &[]);
    if let Some(seconds) = error.retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The single handler: every path goes through here.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let received = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let query = parse_query(parts.uri.query());
    // Go reads the header's bytes as they are; invalid UTF-8 becomes U+FFFD either way.
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let uri = parts.uri.to_string();
    let (facts, result) = match parse_route(parts.uri.path()) {
        Err(error) => (
            Facts {
                verb: verb_of(&parts.method, false, false),
                ..Facts::default()
            },
            Err(error),
        ),
        Ok(Route::Object(target)) => {
            let facts = Facts::of(&parts.method, &parts.headers, &query, target);
            let result = serve_object(
                &shared,
                &facts,
                &parts.method,
                &parts.headers,
                &query,
                &user_agent,
                body,
            )
            .await;
            (facts, result)
        }
        Ok(route) => (
            Facts {
                verb: "discovery".to_owned(),
                ..Facts::default()
            },
            serve_meta(&shared, &route, &parts.method),
        ),
    };
    let response = match result {
        Ok(response) => response,
        Err(error) if error.code == 404 => {
            unserved_path(&shared, parts.uri.path()).unwrap_or_else(|| error_response(&error))
        }
        Err(error) => error_response(&error),
    };
    shared.record(AuditEntry {
        verb: facts.verb,
        group: facts.target.group,
        version: facts.target.version,
        resource: facts.target.plural,
        subresource: facts.target.subresource,
        namespace: facts.target.namespace,
        name: facts.target.name,
        field_manager: facts.field_manager,
        code: response.status().as_u16(),
        user_agent,
        uri,
        received,
    });
    response
}

/// What the real server answers for a path outside the APIs it serves, where its 404 is not a
/// `Status`: Go's plain-text `404 page not found` for an unknown top-level path or API group,
/// an empty body for an OpenAPI document it does not have. `None` inside a served API.
fn unserved_path(shared: &Shared, path: &str) -> Option<Response> {
    let segments: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    match segments.as_slice() {
        ["apis", group, ..] => {
            let state = shared.read_state();
            discovery::group(&state.catalog, group)
                .is_none()
                .then(page_not_found)
        }
        [] | ["api" | "apis", ..] => None,
        ["openapi", ..] => Some(StatusCode::NOT_FOUND.into_response()),
        _ => Some(page_not_found()),
    }
}

/// Go's plain-text `404 page not found`.
fn page_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        "404 page not found\n",
    )
        .into_response()
}

fn is_apply(headers: &HeaderMap) -> bool {
    content_type(headers)
        .is_some_and(|media| PatchType::from_content_type(media) == Some(PatchType::Apply))
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
}

fn verb_of(method: &Method, named: bool, watch: bool) -> String {
    match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
    .to_owned()
}

fn serve_meta(shared: &Arc<Shared>, route: &Route, method: &Method) -> Result<Response, ApiError> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let state = shared.read_state();
    let catalog = &state.catalog;
    let body = match route {
        Route::Root => {
            let mut paths = vec!["/api".to_owned(), "/api/v1".to_owned(), "/apis".to_owned()];
            for info in catalog.all().iter().filter(|info| !info.group.is_empty()) {
                paths.push(format!("/apis/{}", info.group));
                paths.push(format!("/apis/{}/{}", info.group, info.version));
            }
            paths.extend(
                ["/healthz", "/livez", "/openapi/v3", "/readyz", "/version"].map(str::to_owned),
            );
            paths.sort();
            paths.dedup();
            json!({"paths": paths})
        }
        Route::Version => discovery::version(),
        Route::Health => {
            return Ok(
                (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response(),
            );
        }
        Route::CoreVersions => discovery::api_versions(&shared.address.to_string()),
        Route::Groups => discovery::group_list(catalog),
        Route::Group(group) => discovery::group(catalog, group).ok_or_else(ApiError::no_route)?,
        Route::Resources(group, version) => {
            discovery::resource_list(catalog, group, version).ok_or_else(ApiError::no_route)?
        }
        Route::OpenApiRoot => discovery::openapi_root(catalog),
        Route::OpenApiDocument(group, version) => {
            if !discovery::serves_group_version(catalog, group, version) {
                return Err(ApiError::no_route());
            }
            discovery::openapi_document(catalog, group, version)
        }
        Route::Object(_) => return Err(ApiError::no_route()),
    };
    Ok(json_response(200, &body, &[]))
}

async fn read_body(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let limit = shared.options.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::too_large(limit));
    }
    axum::body::to_bytes(body, limit)
        .await
        .map(|bytes| bytes.to_vec())
        .map_err(|_| ApiError::too_large(limit))
}

/// What a body is read as: an object of a kind (create, update), a JSON patch of any type, or
/// a server-side apply configuration. Upstream words a body it cannot read differently for each.
#[derive(Clone, Copy, Debug)]
enum BodyRole<'a> {
    /// A create's or update's object, of this kind.
    Object(&'a str),
    /// A JSON merge patch, JSON patch or strategic merge patch.
    Patch,
    /// A server-side apply configuration (YAML or JSON).
    Apply,
}

/// Decode a JSON or YAML body into a value, refusing one nested deeper than the sandbox walks
/// safely ([`MAX_DEPTH`] for JSON, [`MAX_YAML_DEPTH`] for YAML), with upstream's words for its
/// own depth limits. JSON is measured before it is parsed; YAML as it is parsed. An apply
/// configuration written as JSON (what kubectl and kube clients send) is read as JSON.
fn decode(bytes: &[u8], media: &str, role: BodyRole<'_>) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty: an object is required",
        ));
    }
    let media = media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !media.ends_with("yaml") && !matches!(role, BodyRole::Apply) {
        if let Some(opening) = json_too_deep(bytes, MAX_DEPTH) {
            let limit = format!("invalid character '{opening}' exceeded max depth");
            return Err(match role {
                BodyRole::Object(kind) => ApiError::bad_request(format!(
                    "the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; json parse error: {limit} ({})",
                    summarize_data(bytes, 30)
                )),
                BodyRole::Patch | BodyRole::Apply => {
                    ApiError::bad_request(format!("invalid JSON patch: {limit} of {MAX_DEPTH}"))
                }
            });
        }
        return serde_json::from_slice(bytes).map_err(|error| {
            ApiError::bad_request(format!(
                "couldn't get version/kind; json parse error: {error}"
            ))
        });
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("error decoding YAML: the body is not UTF-8"))?;
    // JSON is YAML: read it as JSON (serde_json stops by itself at 128 levels), as deep as
    // JSON may go; what does not parse as JSON (`{a: 1}`) is read as YAML below.
    if text.trim_start().starts_with(['{', '[']) {
        match serde_json::from_str::<Value>(text) {
            Ok(value) if limits::depth(&value) <= MAX_DEPTH => return Ok(value),
            Ok(_) => return Err(yaml_too_deep(bytes, role, None, MAX_DEPTH)),
            Err(error) if error.to_string().starts_with("recursion limit exceeded") => {
                return Err(yaml_too_deep(bytes, role, None, MAX_DEPTH));
            }
            Err(_) => {}
        }
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_YAML_DEPTH;
    budget.flow_nesting_limit = MAX_YAML_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options(text, options).map_err(|error| match too_deep_at(&error) {
        Some(line) => yaml_too_deep(bytes, role, Some(line), MAX_YAML_DEPTH),
        None => ApiError::bad_request(format!("error decoding YAML: {error}")),
    })
}

/// The line where YAML went deeper than its budget allows, when that is the error: the
/// deserializer's depth budget (block and flow collections), or the parser's own limit on flow
/// collections, which it meets while scanning ahead.
fn too_deep_at(error: &serde_saphyr::Error) -> Option<u64> {
    match error {
        serde_saphyr::Error::WithSnippet { error, .. } => too_deep_at(error),
        serde_saphyr::Error::Budget {
            breach: serde_saphyr::budget::BudgetBreach::Depth { .. },
            location,
        } => Some(location.line()),
        serde_saphyr::Error::ExternalMessage { msg, location, .. }
            if msg == "recursion limit exceeded" =>
        {
            Some(location.line())
        }
        _ => None,
    }
}

/// 400 for a YAML body (or a JSON apply configuration) nested deeper than `limit`, in
/// upstream's words for each kind of body: with the line where YAML went too deep, without one
/// for JSON, which upstream converts as a whole.
fn yaml_too_deep(bytes: &[u8], role: BodyRole<'_>, line: Option<u64>, limit: usize) -> ApiError {
    let at = line
        .map(|line| format!("line {line}: "))
        .unwrap_or_default();
    let exceeded = format!("yaml: {at}exceeded max depth of {limit}");
    ApiError::bad_request(match (role, line) {
        (BodyRole::Object(kind), _) => format!(
            "the object provided is unrecognized (must be of type {kind}): {exceeded} ({})",
            summarize_data(bytes, 30)
        ),
        (BodyRole::Patch | BodyRole::Apply, Some(_)) => format!("error encoding patch: {exceeded}"),
        (BodyRole::Patch | BodyRole::Apply, None) => {
            format!("error decoding patch: error converting YAML to JSON: {exceeded}")
        }
    })
}

const BODY_TYPES: [&str; 2] = ["application/json", "application/yaml"];

/// The media type of a create or update body: JSON, YAML or protobuf (which [`decode_body`]
/// then takes only where the sandbox decodes it).
fn body_media(headers: &HeaderMap) -> Result<String, ApiError> {
    let media = content_type(headers).unwrap_or("application/json");
    let base = media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if BODY_TYPES.contains(&base.as_str()) || base == protobuf::MEDIA_TYPE {
        Ok(base)
    } else {
        Err(ApiError::unsupported_media_type(media, &BODY_TYPES))
    }
}

/// Whether a create of this resource may send protobuf: only core v1 namespaces. The `Err`
/// names what was sent, for the 415 that says what works instead.
fn protobuf_create(info: &ResourceInfo) -> Result<(), String> {
    if info.group.is_empty() && info.version == "v1" && info.plural == "namespaces" {
        Ok(())
    } else if info.group.is_empty() {
        Err(format!("{} {}", info.version, info.kind))
    } else {
        Err(format!("{}/{} {}", info.group, info.version, info.kind))
    }
}

/// The start of a body, as upstream quotes it in a decoding error: JSON as text, anything else
/// in hex, cut at `limit` bytes.
fn summarize_data(data: &[u8], limit: usize) -> String {
    let cut = data.get(..limit).filter(|_| data.len() > limit);
    match (data.first(), cut) {
        (None, _) => "<empty>".to_owned(),
        (Some(b'{'), Some(cut)) => format!("{} ...", String::from_utf8_lossy(cut)),
        (Some(b'{'), None) => String::from_utf8_lossy(data).into_owned(),
        (_, Some(cut)) => format!("{} ...", hex(cut)),
        (_, None) => hex(data),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Decode a create's or update's body from its media type. Protobuf without the Kubernetes
/// prefix is a 400, as upstream; protobuf the sandbox does not decode (`supported` says what
/// was sent) is a 415 that says what works instead.
fn decode_body(
    info: &ResourceInfo,
    bytes: &[u8],
    media: &str,
    supported: Result<(), String>,
) -> Result<Value, ApiError> {
    if media != protobuf::MEDIA_TYPE {
        return decode(bytes, media, BodyRole::Object(&info.kind));
    }
    if !bytes.starts_with(protobuf::MAGIC) {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): {} ({})",
            info.kind,
            protobuf::DecodeError::Magic,
            summarize_data(bytes, 30)
        )));
    }
    if let Some((api_version, kind)) = protobuf::envelope_type(bytes)
        && kind != info.kind
    {
        // As upstream's decoder: the envelope's type cannot be converted to the URL's.
        let version = api_version.rsplit('/').next().unwrap_or_default();
        let internal = info
            .group
            .split('.')
            .next()
            .filter(|group| !group.is_empty());
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {target}: converting ({version}.{kind}) to ({package}.{target}): unknown conversion",
            target = info.kind,
            package = internal.unwrap_or("core"),
        )));
    }
    if let Err(what) = supported {
        return Err(ApiError::protobuf_unsupported(
            protobuf::DecodeError::Unsupported { what }.to_string(),
        ));
    }
    protobuf::to_json(bytes).map_err(|error| {
        if error.is_unsupported() {
            ApiError::protobuf_unsupported(error.to_string())
        } else {
            ApiError::bad_request(error.to_string())
        }
    })
}

fn write_options(
    query: &HashMap<String, String>,
    user_agent: &str,
) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        field_manager: query.get("fieldManager").cloned(),
        user_agent: user_agent.to_owned(),
        dry_run: query.get("dryRun").is_some_and(|value| value == "All"),
        field_validation: FieldValidation::parse(query.get("fieldValidation").map(String::as_str))?,
        force: truthy(query, "force"),
    })
}

fn list_options(query: &HashMap<String, String>) -> Result<ListOptions, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let limit = match query.get("limit") {
        Some(text) => Some(
            text.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("limit: Invalid value: \"{text}\"")))?,
        ),
        None => None,
    };
    // As upstream's conversion of the query, `strconv.ParseInt(text, 10, 64)` and its words.
    let timeout_seconds = match query.get("timeoutSeconds") {
        Some(text) => Some(text.parse::<i64>().map_err(|error| {
            let problem = match error.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            };
            ApiError::bad_request(format!(
                "strconv.ParseInt: parsing {}: {problem}",
                go_quote(text)
            ))
        })?),
        None => None,
    };
    Ok(ListOptions {
        labels,
        fields,
        limit,
        timeout_seconds,
        continue_token: query
            .get("continue")
            .filter(|token| !token.is_empty())
            .cloned(),
        resource_version: query.get("resourceVersion").cloned(),
        version_match: query.get("resourceVersionMatch").cloned(),
        metadata_only: false,
    })
}

fn delete_options(
    query: &HashMap<String, String>,
    bytes: &[u8],
) -> Result<DeleteOptions, ApiError> {
    let mut options = DeleteOptions {
        propagation_policy: query.get("propagationPolicy").cloned(),
        dry_run: query.get("dryRun").is_some_and(|value| value == "All"),
        ..DeleteOptions::default()
    };
    if query
        .get("orphanDependents")
        .is_some_and(|value| value == "true")
    {
        options.propagation_policy = Some("Orphan".to_owned());
    }
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let body: Value = serde_json::from_slice(bytes).map_err(|error| {
            ApiError::bad_request(format!("couldn't decode DeleteOptions: {error}"))
        })?;
        if let Some(policy) = body.get("propagationPolicy").and_then(Value::as_str) {
            options.propagation_policy = Some(policy.to_owned());
        }
        if body.get("orphanDependents") == Some(&Value::Bool(true)) {
            options.propagation_policy = Some("Orphan".to_owned());
        }
        if let Some(dry_run) = body.get("dryRun").and_then(Value::as_array) {
            options.dry_run |= dry_run.iter().any(|value| value == "All");
        }
        options.uid = body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        options.resource_version = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    Ok(options)
}

/// Resolve the resource of a target, with the real server's 404s for wrong scopes and unknown
/// subresources.
fn resolve(shared: &Shared, target: &Target) -> Result<ResourceInfo, ApiError> {
    let state = shared.read_state();
    let info = state
        .catalog
        .find(&target.group, &target.version, &target.plural)
        .cloned()
        .ok_or_else(ApiError::no_route)?;
    if !info.namespaced && target.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    if info.namespaced && target.namespace.is_none() && target.name.is_some() {
        return Err(ApiError::no_route());
    }
    match target.subresource.as_deref() {
        None => {}
        Some("status") if info.status_subresource => {}
        Some(_) => return Err(ApiError::no_route()),
    }
    Ok(info)
}

/// What upstream answers for a deletecollection it does not serve: namespaces have none (their
/// registry implements no `DeleteCollection`: 405, so `DELETE /api/v1/namespaces` deletes
/// nothing), and a namespaced resource has one only inside a namespace (built-in kinds: 405, as
/// there is no such route; custom resources: the CRD handler's plain-text 404). `None` when the
/// deletecollection is served.
fn refuse_delete_collection(
    info: &ResourceInfo,
    namespace: Option<&str>,
) -> Option<Result<Response, ApiError>> {
    let namespaces = info.group.is_empty() && info.plural == "namespaces";
    if namespaces || (info.namespaced && namespace.is_none() && !info.custom) {
        let mut error = ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        );
        error.details = Some(json!({}));
        return Some(Err(error));
    }
    if info.namespaced && namespace.is_none() {
        return Some(Ok(page_not_found()));
    }
    None
}

#[allow(clippy::too_many_lines)] // one dispatch table over the verbs
async fn serve_object(
    shared: &Arc<Shared>,
    facts: &Facts,
    method: &Method,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    user_agent: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let target = &facts.target;
    let info = resolve(shared, target)?;
    let decision = shared.decide(&crate::audit::Request {
        verb: &facts.verb,
        resource: &info.plural,
        subresource: target.subresource.as_deref(),
        label_selector: query.get("labelSelector").map(String::as_str),
    });
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(code) = decision.fail {
        return Err(ApiError::injected(
            code,
            Some(&info),
            target.name.as_deref(),
        ));
    }
    let namespace = target.namespace.as_deref();
    let name = target.name.as_deref();
    let subresource = target.subresource.as_deref();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let include_object = query
        .get("includeObject")
        .map_or("Metadata", String::as_str);
    let output = Output::from_accept(accept, include_object);
    match (method, name) {
        (&Method::GET, _) if truthy(query, "watch") => {
            let ListOptions {
                labels,
                mut fields,
                timeout_seconds,
                ..
            } = list_options(query)?;
            if let Some(name) = name {
                let pinned = format!("metadata.name={name}");
                fields = FieldSelector::parse(&pinned)
                    .map_err(|error| ApiError::bad_request(error.to_string()))?;
            }
            // 0 or unset: the server's limit. Negative: the deadline has passed before the
            // watch starts, and upstream answers one ERROR event saying so.
            let timeout = match timeout_seconds {
                Some(seconds) if seconds < 0 => return Ok(watch_response(watch::expired())),
                Some(seconds) if seconds > 0 => Duration::from_secs(seconds.unsigned_abs())
                    .min(shared.options.max_watch_timeout),
                _ => shared.options.max_watch_timeout,
            };
            let request = WatchRequest {
                info,
                namespace: namespace.map(str::to_owned),
                labels,
                fields,
                resource_version: query.get("resourceVersion").cloned(),
                bookmarks: truthy(query, "allowWatchBookmarks"),
                initial_events: truthy(query, "sendInitialEvents"),
                timeout,
                output,
            };
            let body = watch::start(shared, request)?;
            Ok(watch_response(body))
        }
        (&Method::GET, Some(name)) => {
            let object = shared.read_state().get(&info, namespace, name)?;
            Ok(json_response(200, &output.render(&info, object), &[]))
        }
        (&Method::GET, None) => {
            let options = ListOptions {
                metadata_only: output == Output::Metadata,
                ..list_options(query)?
            };
            let list = shared.read_state().list(&info, namespace, &options)?;
            Ok(json_response(200, &output.render(&info, list), &[]))
        }
        (&Method::POST, None) => {
            let media = body_media(headers)?;
            let bytes = read_body(shared, headers, body).await?;
            let object = decode_body(&info, &bytes, &media, protobuf_create(&info))?;
            let options = write_options(query, user_agent)?;
            let answer = shared
                .lock_state()
                .create(&info, namespace, object, &options)?;
            Ok(json_response(answer.code, &answer.body, &answer.warnings))
        }
        (&Method::PUT, Some(name)) => {
            let media = body_media(headers)?;
            let bytes = read_body(shared, headers, body).await?;
            let supported = Err(format!("an update (PUT) of {}", info.plural));
            let object = decode_body(&info, &bytes, &media, supported)?;
            let options = write_options(query, user_agent)?;
            let answer = shared.lock_state().update(
                &info,
                namespace,
                name,
                subresource,
                object,
                &options,
            )?;
            Ok(json_response(answer.code, &answer.body, &answer.warnings))
        }
        (&Method::PATCH, Some(name)) => {
            let media = content_type(headers).unwrap_or_default().to_owned();
            let Some(patch_type) = PatchType::from_content_type(&media) else {
                return Err(ApiError::unsupported_media_type(
                    &media,
                    &[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                        "application/apply-patch+yaml",
                        "application/strategic-merge-patch+json",
                    ],
                ));
            };
            let bytes = read_body(shared, headers, body).await?;
            let patch = if patch_type == PatchType::Apply {
                decode(&bytes, "yaml", BodyRole::Apply)?
            } else {
                decode(&bytes, "json", BodyRole::Patch)?
            };
            let options = write_options(query, user_agent)?;
            if patch_type != PatchType::Apply && options.force {
                return Err(ApiError::bad_request(
                    "force: Forbidden: may not be specified for non-apply patch",
                ));
            }
            let answer = shared.lock_state().patch(
                &info,
                namespace,
                name,
                subresource,
                patch_type,
                &patch,
                &options,
            )?;
            Ok(json_response(answer.code, &answer.body, &answer.warnings))
        }
        (&Method::DELETE, Some(name)) => {
            if subresource.is_some() {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            }
            let bytes = read_body(shared, headers, body).await?;
            let options = delete_options(query, &bytes)?;
            let answer = shared
                .lock_state()
                .delete(&info, namespace, name, &options)?;
            Ok(json_response(answer.code, &answer.body, &answer.warnings))
        }
        (&Method::DELETE, None) => {
            if let Some(refused) = refuse_delete_collection(&info, namespace) {
                return refused;
            }
            let bytes = read_body(shared, headers, body).await?;
            let options = delete_options(query, &bytes)?;
            let list = list_options(query)?;
            let answer = shared
                .lock_state()
                .delete_collection(&info, namespace, &list, &options)?;
            Ok(json_response(answer.code, &answer.body, &answer.warnings))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        objects::State,
        store::{Change, Store},
    };

    /// `{"a": {"a": ... 1}}`, `levels` objects deep, as JSON text (built as text: a deep
    /// `Value` is what the test must not build outside the server's own code).
    fn nested(levels: usize) -> String {
        format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
    }

    /// Run `test` on a thread with a tokio worker's stack (2 MiB), where the sandbox serves
    /// requests: a walk over an object that recursed too deep would abort the test process.
    fn on_a_worker_stack(test: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(test)
            .expect("a thread")
            .join()
            .expect("no stack overflow, no panic");
    }

    /// A custom resource whose spec keeps any field, with a CEL rule and a printer column
    /// over it: what walks a deep object most.
    fn deep_resource(state: &mut State) -> ResourceInfo {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "deeps.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "deeps", "singular": "deep", "kind": "Deep", "listKind": "DeepList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "additionalPrinterColumns": [{"name": "A", "type": "string", "jsonPath": ".spec.a"}],
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                        "x-kubernetes-validations": [{"rule": "self.size() >= 0"}]}}}}}]},
        });
        let crds = state
            .catalog
            .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .cloned()
            .expect("CRDs are served");
        state
            .create(&crds, None, crd, &WriteOptions::default())
            .expect("the CRD");
        state
            .catalog
            .find("example.com", "v1", "deeps")
            .cloned()
            .expect("the resource")
    }

    /// An object nested as deep as the sandbox accepts goes through every step of the server,
    /// in a debug build and on a worker's stack: decoding, pruning and schema checks, CEL,
    /// managed fields, merge and JSON patches, server-side apply, lists, Tables and
    /// serialization. If this fails, [`MAX_DEPTH`] is too high for the recursive walks and a
    /// client can abort the sandbox with an object it accepts.
    #[test]
    fn objects_as_deep_as_the_limit_are_served_on_a_worker_stack() {
        on_a_worker_stack(|| {
            let (events, _) = tokio::sync::broadcast::channel::<Arc<Change>>(16);
            let mut state = State::new(Store::new(100, events));
            state.create_system_namespaces();
            let info = deep_resource(&mut state);
            // The object is level 1, spec level 2: 98 more reach the limit.
            let body = format!(
                r#"{{"apiVersion":"example.com/v1","kind":"Deep","metadata":{{"name":"d"}},"spec":{}}}"#,
                nested(MAX_DEPTH - 1)
            );
            let object = decode(
                body.as_bytes(),
                "application/json",
                BodyRole::Object("Deep"),
            )
            .expect("as deep as the limit");
            let options = WriteOptions {
                field_manager: Some("test".to_owned()),
                ..WriteOptions::default()
            };
            state
                .create(&info, Some("default"), object, &options)
                .expect("stored");
            let merge = decode(
                format!(r#"{{"spec":{{"b":{}}}}}"#, nested(MAX_DEPTH - 3)).as_bytes(),
                "json",
                BodyRole::Patch,
            )
            .expect("a merge patch");
            state
                .patch(
                    &info,
                    Some("default"),
                    "d",
                    None,
                    PatchType::Merge,
                    &merge,
                    &options,
                )
                .expect("merged");
            let copy = json!([{"op": "copy", "from": "/spec/b", "path": "/spec/c"}]);
            state
                .patch(
                    &info,
                    Some("default"),
                    "d",
                    None,
                    PatchType::Json,
                    &copy,
                    &options,
                )
                .expect("copied");
            let apply = decode(
                format!(
                    r#"{{"apiVersion":"example.com/v1","kind":"Deep","metadata":{{"name":"d"}},"spec":{{"e":{}}}}}"#,
                    nested(MAX_DEPTH - 3)
                )
                .as_bytes(),
                "yaml",
                BodyRole::Apply,
            )
            .expect("an apply configuration");
            state
                .patch(
                    &info,
                    Some("default"),
                    "d",
                    None,
                    PatchType::Apply,
                    &apply,
                    &options,
                )
                .expect("applied");
            let list = state
                .list(&info, Some("default"), &ListOptions::default())
                .expect("listed");
            let table = Output::Table("Object".to_owned()).render(&info, list.clone());
            let text = serde_json::to_string(&table).expect("serialized");
            assert!(
                limits::depth(&list) > MAX_DEPTH,
                "the list wraps the object"
            );
            let read: Value = serde_json::from_str(&text).expect("a serde_json client reads it");
            assert_eq!(read["kind"], "Table");
        });
    }

    /// A built-in kind with a field it does not have, nested to the limit: pruned through
    /// serde_ignored on a worker's stack.
    #[test]
    fn unknown_fields_as_deep_as_the_limit_are_pruned_on_a_worker_stack() {
        on_a_worker_stack(|| {
            let (events, _) = tokio::sync::broadcast::channel::<Arc<Change>>(16);
            let mut state = State::new(Store::new(100, events));
            state.create_system_namespaces();
            let info = state
                .catalog
                .find("networking.k8s.io", "v1", "networkpolicies")
                .cloned()
                .expect("served");
            let body = format!(
                r#"{{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{{"name":"p"}},"spec":{{"podSelector":{{}},"x":{}}}}}"#,
                nested(MAX_DEPTH - 2)
            );
            let object = decode(body.as_bytes(), "json", BodyRole::Object("NetworkPolicy"))
                .expect("as deep as the limit");
            let answer = state
                .create(&info, Some("default"), object, &WriteOptions::default())
                .expect("stored");
            assert_eq!(answer.warnings, ["unknown field \"spec.x\""]);
        });
    }

    /// Bodies past the limit are refused before they are parsed, in upstream's words, however
    /// deep they go.
    #[test]
    fn bodies_past_the_limit_are_refused_before_parsing() {
        let deep = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","spec":{}}}"#,
            nested(1_000_000)
        );
        let error = decode(deep.as_bytes(), "application/json", BodyRole::Object("Pod"))
            .expect_err("too deep");
        assert_eq!(
            error.message,
            r#"the object provided is unrecognized (must be of type Pod): couldn't get version/kind; json parse error: invalid character '{' exceeded max depth ({"apiVersion":"v1","kind":"Pod ...)"#
        );
        let error = decode(deep.as_bytes(), "json", BodyRole::Patch).expect_err("too deep");
        assert_eq!(
            error.message,
            "invalid JSON patch: invalid character '{' exceeded max depth of 100"
        );
        let yaml = format!("a:\n  b: {}\n", "[".repeat(100_000));
        let error = decode(yaml.as_bytes(), "yaml", BodyRole::Apply).expect_err("too deep");
        assert_eq!(
            error.message,
            "error encoding patch: yaml: line 2: exceeded max depth of 64"
        );
        let error = decode(yaml.as_bytes(), "application/yaml", BodyRole::Object("Pod"))
            .expect_err("too deep");
        assert!(
            error.message.starts_with("the object provided is unrecognized (must be of type Pod): yaml: line 2: exceeded max depth of 64 (613a0a2020623a"),
            "{}",
            error.message
        );
        let error = decode(deep.as_bytes(), "yaml", BodyRole::Apply).expect_err("too deep");
        assert_eq!(
            error.message,
            "error decoding patch: error converting YAML to JSON: yaml: exceeded max depth of 100"
        );
        let shallow = format!(r#"{{"a":{}}}"#, nested(MAX_DEPTH - 1));
        decode(shallow.as_bytes(), "json", BodyRole::Patch).expect("as deep as the limit");
        decode(shallow.as_bytes(), "yaml", BodyRole::Apply).expect("JSON as deep as the limit");
        let yaml = format!(
            "a: {}\n",
            "{a: ".repeat(MAX_YAML_DEPTH - 1) + &"}".repeat(MAX_YAML_DEPTH - 1)
        );
        on_a_worker_stack(move || {
            decode(yaml.as_bytes(), "yaml", BodyRole::Apply).expect("YAML as deep as its limit");
        });
    }

    #[test]
    fn paths_resolve_like_the_request_info_resolver() {
        let route = parse_route("/api/v1/namespaces/shop/networkpolicies/web").expect("route");
        assert_eq!(
            route,
            Route::Object(Target {
                version: "v1".into(),
                plural: "networkpolicies".into(),
                namespace: Some("shop".into()),
                name: Some("web".into()),
                ..Target::default()
            })
        );
        let route = parse_route("/api/v1/namespaces/shop/status").expect("route");
        assert_eq!(
            route,
            Route::Object(Target {
                version: "v1".into(),
                plural: "namespaces".into(),
                name: Some("shop".into()),
                subresource: Some("status".into()),
                ..Target::default()
            })
        );
    }

    #[test]
    fn traversal_in_names_is_a_bad_request() {
        for path in [
            "/api/v1/namespaces/default/pods/..",
            "/api/v1/namespaces/default/pods/%2E%2E",
            "/api/v1/namespaces/default/pods/a%2Fb",
            "/api/v1/namespaces/../pods/x",
        ] {
            let error = parse_route(path).expect_err(path);
            assert_eq!(error.code, 400, "{path}");
        }
        assert_eq!(
            parse_route("/api/v1/a/b/c/d/e").map_err(|error| error.code),
            Err(404)
        );
    }
}
