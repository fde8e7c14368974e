//! What the real API server does to the built-in kinds netfence and kubectl rely on, beyond
//! their metadata: NetworkPolicy defaults and the dropping of empty fields, and the validation
//! of Events (core `v1` and `events.k8s.io/v1`, which netfence's recorder writes).
//!
//! ```text
//! built-in object --fields its type lacks: pruned, listed (Strict: 400, apply: 500)-->
//! NetworkPolicy --drop empty lists and maps--> --defaults: policyTypes, port protocol TCP--> stored
//! Event (create | update) --upstream's ValidateEventCreate / ValidateEventUpdate--> causes (422)
//! ```
//!
//! Upstream decodes every built-in object into its Go type, so a field left empty (`[]`, `{}`
//! where the Go field is a slice or a map) is not stored: `egress: []` reads back without
//! `egress`. Its defaults (`pkg/apis/networking/v1/defaults.go`) give a port without `protocol`
//! the protocol TCP, and a policy without `policyTypes` `[Ingress]`, plus `Egress` when it has
//! egress rules. Both are applied before managed fields are tracked, as upstream: an update
//! owns the defaulted fields, an apply only what it sent.
//!
//! Event validation follows `pkg/apis/core/validation/events.go` of Kubernetes 1.37, with its
//! field paths (those of the internal type, also for `events.k8s.io`: `message`, not `note`).

use serde_json::{Map, Value};

use super::{cause::FieldCause, names::qualified_name_problems, resources::ResourceInfo};

/// The longest `reportingInstance`, `action` and `reason` of an Event.
const EVENT_FIELD_LIMIT: usize = 128;
/// The longest note (message) of an Event.
const NOTE_LIMIT: usize = 1024;

/// Default and normalise a built-in object as the real server stores it.
pub fn default(info: &ResourceInfo, object: &mut Value) {
    if info.group == "networking.k8s.io"
        && info.plural == "networkpolicies"
        && let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
    {
        default_network_policy_spec(spec);
    }
}

/// The fields of a built-in object that its Kubernetes type does not have, as `.spec.foo` and
/// `.spec.ingress[0].foo` paths, removed from the object as upstream's decoding drops them. The
/// types are k8s-openapi's (Kubernetes 1.33, the version netfence is built against). An object
/// that does not decode into its type (a field of the wrong type) is left as it is.
pub fn prune_unknown_fields(info: &ResourceInfo, object: &mut Value) -> Vec<String> {
    use k8s_openapi::{
        api::{
            apps::v1::DaemonSet,
            coordination::v1::Lease,
            core::v1::{Event, Namespace, Pod, Service},
            networking::v1::NetworkPolicy,
        },
        apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    };
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(segments(&path));
    let decoded = match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => ignored::<Namespace>(object, &mut record),
        ("", "pods") => ignored::<Pod>(object, &mut record),
        ("", "services") => ignored::<Service>(object, &mut record),
        ("apps", "daemonsets") => ignored::<DaemonSet>(object, &mut record),
        ("", "events") => ignored::<Event>(object, &mut record),
        ("networking.k8s.io", "networkpolicies") => ignored::<NetworkPolicy>(object, &mut record),
        ("events.k8s.io", "events") => {
            ignored::<k8s_openapi::api::events::v1::Event>(object, &mut record)
        }
        ("coordination.k8s.io", "leases") => ignored::<Lease>(object, &mut record),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            ignored::<CustomResourceDefinition>(object, &mut record)
        }
        _ => true,
    };
    if !decoded {
        return Vec::new();
    }
    let mut paths: Vec<String> = unknown.iter().map(|path| display(path)).collect();
    for path in &unknown {
        remove(object, path);
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Why `object` does not decode into the type of its kind, as `field.path: what is wrong`, if it
/// does not: a field of the wrong type (`spec.podSelector: 5`, `metadata.finalizers: [1]`), which
/// upstream's decoding refuses before anything else looks at the object. Built-in kinds are
/// decoded whole into k8s-openapi's types; custom resources only in their `metadata`
/// (upstream decodes it into `ObjectMeta`; their schema checks the rest, with 422 and the field).
#[must_use]
pub fn decode_problem(info: &ResourceInfo, object: &Value) -> Option<String> {
    use k8s_openapi::{
        api::{
            apps::v1::DaemonSet,
            coordination::v1::Lease,
            core::v1::{Event, Namespace, Pod, Service},
            networking::v1::NetworkPolicy,
        },
        apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };
    if info.custom {
        let metadata = object.get("metadata")?;
        return problem::<ObjectMeta>(metadata).map(|(path, message)| match path.as_str() {
            "" => format!("metadata: {message}"),
            path => format!("metadata.{path}: {message}"),
        });
    }
    let found = match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => problem::<Namespace>(object),
        ("", "pods") => problem::<Pod>(object),
        ("", "services") => problem::<Service>(object),
        ("apps", "daemonsets") => problem::<DaemonSet>(object),
        ("", "events") => problem::<Event>(object),
        ("networking.k8s.io", "networkpolicies") => problem::<NetworkPolicy>(object),
        ("events.k8s.io", "events") => problem::<k8s_openapi::api::events::v1::Event>(object),
        ("coordination.k8s.io", "leases") => problem::<Lease>(object),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            problem::<CustomResourceDefinition>(object)
        }
        _ => None,
    };
    found.map(|(path, message)| {
        if path.is_empty() {
            message
        } else {
            format!("{path}: {message}")
        }
    })
}

/// The field path (empty for the object itself) and serde's words when `value` does not decode
/// into `K`.
fn problem<K: serde::de::DeserializeOwned>(value: &Value) -> Option<(String, String)> {
    serde_path_to_error::deserialize::<_, K>(value)
        .err()
        .map(|error| {
            let path = match error.path().to_string().as_str() {
                "." => String::new(),
                path => path.to_owned(),
            };
            (path, error.inner().to_string())
        })
}

/// Whether `object` decodes into `K`, calling `record` for every field `K` does not have.
fn ignored<K: serde::de::DeserializeOwned>(
    object: &Value,
    record: &mut dyn FnMut(serde_ignored::Path<'_>),
) -> bool {
    serde_ignored::deserialize::<_, _, K>(object, record).is_ok()
}

/// One step of a path into a JSON object.
#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut steps = segments(parent);
            steps.push(Segment::Index(*index));
            steps
        }
        Path::Map { parent, key } => {
            let mut steps = segments(parent);
            steps.push(Segment::Key(key.clone()));
            steps
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    }
}

/// `.spec.ingress[0].foo`, as the sandbox names unknown fields.
fn display(path: &[Segment]) -> String {
    path.iter()
        .map(|step| match step {
            Segment::Key(key) => format!(".{key}"),
            Segment::Index(index) => format!("[{index}]"),
        })
        .collect()
}

fn remove(object: &mut Value, path: &[Segment]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = object;
    for step in parents {
        let next = match step {
            Segment::Key(key) => current.get_mut(key.as_str()),
            Segment::Index(index) => current.get_mut(*index),
        };
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
    if let (Segment::Key(key), Some(map)) = (last, current.as_object_mut()) {
        map.remove(key);
    }
}

/// The causes a built-in object is refused for (none for most kinds: the sandbox validates
/// only what is listed in the module docs).
#[must_use]
pub fn validate(info: &ResourceInfo, object: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "events") => validate_event(&EventView::core(object), old.map(EventView::core), false),
        ("events.k8s.io", "events") => validate_event(
            &EventView::events_v1(object),
            old.map(EventView::events_v1),
            true,
        ),
        _ => Vec::new(),
    }
}

fn default_network_policy_spec(spec: &mut Map<String, Value>) {
    drop_empty(spec, &["ingress", "egress", "policyTypes"]);
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        for rule in spec
            .get_mut(direction)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(rule) = rule.as_object_mut() else {
                continue;
            };
            drop_empty(rule, &["ports", peers]);
            for port in rule
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                if port.get("protocol").is_none_or(Value::is_null) {
                    port.insert("protocol".to_owned(), Value::from("TCP"));
                }
            }
            for peer in rule
                .get_mut(peers)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                for selector in ["podSelector", "namespaceSelector"] {
                    if let Some(selector) = peer.get_mut(selector).and_then(Value::as_object_mut) {
                        normalize_selector(selector);
                    }
                }
                if let Some(block) = peer.get_mut("ipBlock").and_then(Value::as_object_mut) {
                    drop_empty(block, &["except"]);
                }
            }
        }
    }
    if let Some(selector) = spec.get_mut("podSelector").and_then(Value::as_object_mut) {
        normalize_selector(selector);
    }
    if spec.get("policyTypes").is_none() {
        let mut types = vec![Value::from("Ingress")];
        if spec.contains_key("egress") {
            types.push(Value::from("Egress"));
        }
        spec.insert("policyTypes".to_owned(), Value::Array(types));
    }
}

/// A label selector as stored: empty `matchLabels`, `matchExpressions` and `values` dropped.
fn normalize_selector(selector: &mut Map<String, Value>) {
    drop_empty(selector, &["matchLabels", "matchExpressions"]);
    for expression in selector
        .get_mut("matchExpressions")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        drop_empty(expression, &["values"]);
    }
}

/// Remove the `fields` that are null, `[]` or `{}` (Go's `omitempty` slices and maps).
fn drop_empty(map: &mut Map<String, Value>, fields: &[&str]) {
    for field in fields {
        let empty = map.get(*field).is_some_and(|value| match value {
            Value::Null => true,
            Value::Array(items) => items.is_empty(),
            Value::Object(entries) => entries.is_empty(),
            _ => false,
        });
        if empty {
            map.remove(*field);
        }
    }
}

/// An Event's fields under their internal (core) names, from either API's JSON.
struct EventView {
    namespace: String,
    involved_object: Value,
    involved_namespace: String,
    event_time: bool,
    reporting_controller: String,
    reporting_instance: String,
    action: String,
    reason: String,
    message: String,
    type_: String,
    first_timestamp: bool,
    last_timestamp: bool,
    count: i64,
    source: Value,
    series: Option<Value>,
    related: Value,
}

fn text(object: &Value, field: &str) -> String {
    object
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn set(object: &Value, field: &str) -> bool {
    object.get(field).is_some_and(|value| !value.is_null())
}

impl EventView {
    fn core(event: &Value) -> EventView {
        let involved_object = event.get("involvedObject").cloned().unwrap_or(Value::Null);
        EventView {
            namespace: text(event.get("metadata").unwrap_or(&Value::Null), "namespace"),
            involved_namespace: text(&involved_object, "namespace"),
            involved_object,
            event_time: set(event, "eventTime"),
            reporting_controller: text(event, "reportingComponent"),
            reporting_instance: text(event, "reportingInstance"),
            action: text(event, "action"),
            reason: text(event, "reason"),
            message: text(event, "message"),
            type_: text(event, "type"),
            first_timestamp: set(event, "firstTimestamp"),
            last_timestamp: set(event, "lastTimestamp"),
            count: event.get("count").and_then(Value::as_i64).unwrap_or(0),
            source: event.get("source").cloned().unwrap_or(Value::Null),
            series: event
                .get("series")
                .filter(|series| !series.is_null())
                .cloned(),
            related: event.get("related").cloned().unwrap_or(Value::Null),
        }
    }

    fn events_v1(event: &Value) -> EventView {
        let involved_object = event.get("regarding").cloned().unwrap_or(Value::Null);
        EventView {
            namespace: text(event.get("metadata").unwrap_or(&Value::Null), "namespace"),
            involved_namespace: text(&involved_object, "namespace"),
            involved_object,
            event_time: set(event, "eventTime"),
            reporting_controller: text(event, "reportingController"),
            reporting_instance: text(event, "reportingInstance"),
            action: text(event, "action"),
            reason: text(event, "reason"),
            message: text(event, "note"),
            type_: text(event, "type"),
            first_timestamp: set(event, "deprecatedFirstTimestamp"),
            last_timestamp: set(event, "deprecatedLastTimestamp"),
            count: event
                .get("deprecatedCount")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            source: event
                .get("deprecatedSource")
                .cloned()
                .unwrap_or(Value::Null),
            series: event
                .get("series")
                .filter(|series| !series.is_null())
                .cloned(),
            related: event.get("related").cloned().unwrap_or(Value::Null),
        }
    }

    fn source_set(&self) -> bool {
        ["component", "host"]
            .iter()
            .any(|field| !text(&self.source, field).is_empty())
    }
}

/// `legacyValidateEvent`, then, for `events.k8s.io` (`strict`), the checks of
/// `ValidateEventCreate` or `ValidateEventUpdate`.
fn validate_event(event: &EventView, old: Option<EventView>, strict: bool) -> Vec<FieldCause> {
    let mut causes = legacy_event_causes(event, strict);
    if !strict {
        return causes;
    }
    let series_changed = old.as_ref().is_none_or(|old| old.series != event.series);
    if series_changed && let Some(series) = &event.series {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            causes.push(FieldCause::invalid(
                "series.count",
                "",
                "should be at least 2",
            ));
        }
        if !set(series, "lastObservedTime") {
            causes.push(FieldCause::required("series.lastObservedTime"));
        }
    }
    match old {
        None => {
            if !event.event_time {
                causes.push(FieldCause::required("eventTime"));
            }
            if event.type_ != "Normal" && event.type_ != "Warning" {
                causes.push(FieldCause::invalid(
                    "type",
                    "",
                    &format!("has invalid value: {}", event.type_),
                ));
            }
            for (unset, field) in [
                (event.first_timestamp, "firstTimestamp"),
                (event.last_timestamp, "lastTimestamp"),
                (event.count != 0, "count"),
                (event.source_set(), "source"),
            ] {
                if unset {
                    causes.push(FieldCause::invalid(field, "", "needs to be unset"));
                }
            }
        }
        Some(old) => {
            let pairs: [(&str, Value, Value); 12] = [
                (
                    "involvedObject",
                    old.involved_object,
                    event.involved_object.clone(),
                ),
                ("reason", old.reason.into(), event.reason.clone().into()),
                ("message", old.message.into(), event.message.clone().into()),
                ("source", old.source, event.source.clone()),
                (
                    "firstTimestamp",
                    old.first_timestamp.into(),
                    event.first_timestamp.into(),
                ),
                (
                    "lastTimestamp",
                    old.last_timestamp.into(),
                    event.last_timestamp.into(),
                ),
                ("count", old.count.into(), event.count.into()),
                ("type", old.type_.into(), event.type_.clone().into()),
                ("action", old.action.into(), event.action.clone().into()),
                ("related", old.related, event.related.clone()),
                (
                    "reportingController",
                    old.reporting_controller.into(),
                    event.reporting_controller.clone().into(),
                ),
                (
                    "reportingInstance",
                    old.reporting_instance.into(),
                    event.reporting_instance.clone().into(),
                ),
            ];
            for (field, before, after) in pairs {
                if before != after {
                    causes.push(FieldCause {
                        reason: "FieldValueInvalid",
                        field: field.to_owned(),
                        message: format!("Invalid value: {after}: field is immutable"),
                    });
                }
            }
        }
    }
    causes
}

fn legacy_event_causes(event: &EventView, strict: bool) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let controller_field = if strict {
        "reportingController"
    } else {
        "reportingComponent"
    };
    let namespace = event.namespace.as_str();
    let involved = event.involved_namespace.as_str();
    if event.event_time {
        if involved.is_empty() && namespace != "default" && namespace != "kube-system" {
            causes.push(FieldCause::invalid(
                "involvedObject.namespace",
                involved,
                "does not match event.namespace",
            ));
        }
        if event.reporting_controller.is_empty() {
            causes.push(FieldCause::required(controller_field));
        }
        for problem in qualified_name_problems(&event.reporting_controller) {
            causes.push(FieldCause::invalid(
                controller_field,
                &event.reporting_controller,
                &problem,
            ));
        }
        if event.reporting_instance.is_empty() {
            causes.push(FieldCause::required("reportingInstance"));
        }
        let limited = |field: &str, value: &str, limit: usize| {
            (value.chars().count() > limit).then(|| {
                FieldCause::invalid(field, "", &format!("can have at most {limit} characters"))
            })
        };
        causes.extend(limited(
            "reportingInstance",
            &event.reporting_instance,
            EVENT_FIELD_LIMIT,
        ));
        if event.action.is_empty() {
            causes.push(FieldCause::required("action"));
        }
        causes.extend(limited("action", &event.action, EVENT_FIELD_LIMIT));
        if event.reason.is_empty() {
            causes.push(FieldCause::required("reason"));
        }
        causes.extend(limited("reason", &event.reason, EVENT_FIELD_LIMIT));
        causes.extend(limited("message", &event.message, NOTE_LIMIT));
    } else if (involved.is_empty() && !namespace.is_empty() && namespace != "default")
        || (!involved.is_empty() && involved != namespace)
    {
        causes.push(FieldCause::invalid(
            "involvedObject.namespace",
            involved,
            "does not match event.namespace",
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec_of(mut policy: Value) -> Value {
        if let Some(spec) = policy.get_mut("spec").and_then(Value::as_object_mut) {
            default_network_policy_spec(spec);
        }
        policy["spec"].take()
    }

    #[test]
    fn network_policies_are_defaulted_and_lose_their_empty_fields() {
        let spec = spec_of(json!({"spec": {
            "podSelector": {"matchLabels": {}, "matchExpressions": []},
            "ingress": [],
            "egress": [{"ports": [{"port": 53}], "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": []}}, {"podSelector": {}}]}, {}],
        }}));
        assert_eq!(
            spec,
            json!({
                "podSelector": {},
                "egress": [{"ports": [{"port": 53, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}, {"podSelector": {}}]}, {}],
                "policyTypes": ["Ingress", "Egress"],
            })
        );
    }

    #[test]
    fn given_policy_types_and_protocols_are_kept() {
        let spec = spec_of(json!({"spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "ingress": [{"ports": [{"port": 53, "protocol": "UDP"}]}],
        }}));
        assert_eq!(spec["policyTypes"], json!(["Egress"]));
        assert_eq!(spec["ingress"][0]["ports"][0]["protocol"], json!("UDP"));
        let ingress_only = spec_of(json!({"spec": {"podSelector": {}, "egress": []}}));
        assert_eq!(
            ingress_only,
            json!({"podSelector": {}, "policyTypes": ["Ingress"]})
        );
    }

    #[test]
    fn unknown_fields_of_built_in_kinds_are_found_and_pruned() {
        let info = ResourceInfo {
            group: "networking.k8s.io".to_owned(),
            version: "v1".to_owned(),
            plural: "networkpolicies".to_owned(),
            singular: "networkpolicy".to_owned(),
            kind: "NetworkPolicy".to_owned(),
            list_kind: "NetworkPolicyList".to_owned(),
            namespaced: true,
            short_names: Vec::new(),
            categories: Vec::new(),
            status_subresource: false,
            custom: false,
            schema: std::sync::Arc::new(json!({})),
            rules: None,
            printer_columns: Vec::new(),
            crd_name: None,
        };
        let mut policy = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "colour": "blue"},
            "spec": {"podSelecter": {}, "podSelector": {}, "ingress": [{"ports": [{"port": 80, "size": 1}]}]},
        });
        assert_eq!(
            prune_unknown_fields(&info, &mut policy),
            [
                ".metadata.colour",
                ".spec.ingress[0].ports[0].size",
                ".spec.podSelecter"
            ]
        );
        assert_eq!(
            policy,
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "p"},
                "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]},
            })
        );
    }

    /// A value of the wrong type is named by its field path; a custom resource is decoded only
    /// in its metadata (its schema checks the rest). If this fails, the sandbox stores objects a
    /// real server refuses to decode, and typed clients fail to read them back.
    #[test]
    fn fields_of_the_wrong_type_are_named() {
        let catalog = crate::resources::Catalog::builtin();
        let policies = catalog
            .find("networking.k8s.io", "v1", "networkpolicies")
            .cloned()
            .expect("served");
        for (object, problem) in [
            (
                json!({"metadata": {"name": "p"}, "spec": {"podSelector": 5}}),
                "spec.podSelector: invalid type: integer `5`, expected LabelSelector",
            ),
            (
                json!({"metadata": {"name": "p", "finalizers": [1]}}),
                "metadata.finalizers[0]: invalid type: integer `1`, expected a string",
            ),
            (
                json!({"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": -99_999_999_999_i64}]}]}}),
                "spec.ingress[0].ports[0].port: invalid value: integer `-99999999999`, expected a 32-bit integer",
            ),
        ] {
            assert_eq!(decode_problem(&policies, &object).as_deref(), Some(problem));
        }
        assert_eq!(
            decode_problem(
                &policies,
                &json!({"metadata": {"name": "p"}, "spec": {"podSelector": {}}})
            ),
            None
        );
        let mut custom = policies.clone();
        custom.custom = true;
        assert_eq!(
            decode_problem(
                &custom,
                &json!({"metadata": {"finalizers": [1]}, "spec": 5})
            )
            .as_deref(),
            Some("metadata.finalizers[0]: invalid type: integer `1`, expected a string")
        );
        assert_eq!(
            decode_problem(&custom, &json!({"metadata": {"name": "c"}, "spec": 5})),
            None
        );
    }

    fn fields(causes: &[FieldCause]) -> Vec<&str> {
        causes.iter().map(|cause| cause.field.as_str()).collect()
    }

    #[test]
    fn events_k8s_io_events_are_validated_as_upstream() {
        let event = json!({
            "metadata": {"name": "e", "namespace": "shop"},
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "reportingController": "e2e", "reportingInstance": "e2e", "reason": "R", "type": "Bad",
            "note": "x".repeat(2000), "regarding": {"kind": "Pod", "name": "p", "namespace": "other"},
            "series": {"count": 1, "lastObservedTime": "2025-01-01T00:00:00.000000Z"},
            "deprecatedCount": 3,
        });
        let causes = validate_event(&EventView::events_v1(&event), None, true);
        assert_eq!(
            fields(&causes),
            ["action", "message", "series.count", "type", "count"]
        );
        assert_eq!(
            causes[1].message,
            "Invalid value: \"\": can have at most 1024 characters"
        );
    }

    #[test]
    fn an_events_k8s_io_update_keeps_the_immutable_fields() {
        let old = json!({
            "metadata": {"name": "e", "namespace": "shop"},
            "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "netfence",
            "reportingInstance": "pod-1", "action": "Apply", "reason": "Applied", "type": "Normal",
            "note": "first", "regarding": {"kind": "NamespaceIsolation", "name": "shop", "namespace": "shop"},
        });
        let mut repeat = old.clone();
        repeat["series"] = json!({"count": 2, "lastObservedTime": "2025-01-01T00:01:00.000000Z"});
        let view = EventView::events_v1(&old);
        assert!(validate_event(&EventView::events_v1(&repeat), Some(view), true).is_empty());
        let mut changed = repeat.clone();
        changed["note"] = json!("second");
        let causes = validate_event(
            &EventView::events_v1(&changed),
            Some(EventView::events_v1(&old)),
            true,
        );
        assert_eq!(fields(&causes), ["message"]);
        assert_eq!(
            causes[0].message,
            "Invalid value: \"second\": field is immutable"
        );
    }

    #[test]
    fn a_core_event_names_the_namespace_of_its_object() {
        let event = json!({"metadata": {"name": "e", "namespace": "shop"}, "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "R"});
        let causes = validate_event(&EventView::core(&event), None, false);
        assert_eq!(fields(&causes), ["involvedObject.namespace"]);
        assert_eq!(
            causes[0].message,
            "Invalid value: \"\": does not match event.namespace"
        );
        let mut fixed = event.clone();
        fixed["involvedObject"]["namespace"] = json!("shop");
        assert!(validate_event(&EventView::core(&fixed), None, false).is_empty());
    }

    #[test]
    fn qualified_names_follow_upstream() {
        assert!(qualified_name_problems("netfence").is_empty());
        assert!(qualified_name_problems("netfence.io/controller").is_empty());
        assert_eq!(qualified_name_problems("-bad").len(), 1);
        assert_eq!(qualified_name_problems("Bad.IO/x").len(), 1);
        assert_eq!(
            qualified_name_problems(&"a".repeat(64)),
            ["name part must be no more than 63 bytes"]
        );
        let slashes = qualified_name_problems("a/b/c");
        assert_eq!(slashes.len(), 1);
        assert!(slashes[0].starts_with("a valid label key must consist of"));
    }
}
