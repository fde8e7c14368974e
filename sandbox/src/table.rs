//! Table output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), which `kubectl get`
//! asks for: a CRD's `additionalPrinterColumns`, evaluated with their JSONPath, and the usual
//! columns of the built-in kinds.
//!
//! ```text
//! [ object x N ] + columns --JSONPath--> { columnDefinitions, rows: [ { cells, object } ] }
//! ```
//!
//! The JSONPath subset is what printer columns use: `.a.b`, `[n]`, `[*]` and filters
//! `[?(@.key=="value")]`. Columns of type `date` are shown as ages (`5m`), as upstream does.

use serde_json::{Value, json};

use super::resources::ResourceInfo;

/// One step of a JSONPath.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(Vec<String>, String),
}

fn parse_path(path: &str) -> Option<Vec<Step>> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut steps = Vec::new();
    let characters: Vec<char> = path.chars().collect();
    let mut at = 0;
    while at < characters.len() {
        match characters[at] {
            '.' => at += 1,
            '[' => {
                let close = characters[at..].iter().position(|c| *c == ']')? + at;
                let inner: String = characters[at + 1..close].iter().collect();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Ok(index) = inner.parse::<usize>() {
                    steps.push(Step::Index(index));
                } else {
                    let filter = inner.strip_prefix("?(@.")?.strip_suffix(')')?;
                    let (field, value) = filter.split_once("==")?;
                    let value = value.trim().trim_matches('"').trim_matches('\'');
                    steps.push(Step::Filter(
                        field.trim().split('.').map(str::to_owned).collect(),
                        value.to_owned(),
                    ));
                }
                at = close + 1;
            }
            _ => {
                let end = characters[at..]
                    .iter()
                    .position(|c| matches!(c, '.' | '['))
                    .map_or(characters.len(), |offset| at + offset);
                steps.push(Step::Field(characters[at..end].iter().collect()));
                at = end;
            }
        }
    }
    Some(steps)
}

/// Every value a JSONPath selects.
fn evaluate<'a>(object: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse_path(path) else {
        return Vec::new();
    };
    let mut current = vec![object];
    for step in &steps {
        let mut next = Vec::new();
        for value in current {
            match step {
                Step::Field(field) => next.extend(value.get(field)),
                Step::Index(index) => next.extend(value.get(*index)),
                Step::All => next.extend(value.as_array().into_iter().flatten()),
                Step::Filter(field, wanted) => {
                    for item in value.as_array().into_iter().flatten() {
                        let mut found = Some(item);
                        for segment in field {
                            found = found.and_then(|found| found.get(segment));
                        }
                        let matches = match found {
                            Some(Value::String(text)) => text == wanted,
                            Some(other) => other.to_string().as_str() == wanted.as_str(),
                            None => false,
                        };
                        if matches {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current
}

/// A duration as `kubectl` shows ages: `45s`, `3m12s`, `5h`, `2d3h`, `1y`.
#[must_use]
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let rest = seconds % 60;
        return if rest == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{rest}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let rest = minutes % 60;
        return if rest == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{rest}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let rest = hours % 24;
        return if rest == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{rest}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let rest = (hours / 24) % 365;
        return if rest == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{rest}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(timestamp: Option<&Value>) -> Value {
    let Some(parsed) = timestamp
        .and_then(Value::as_str)
        .and_then(|text| text.parse::<jiff::Timestamp>().ok())
    else {
        return Value::Null;
    };
    let seconds = jiff::Timestamp::now().as_second() - parsed.as_second();
    json!(human_duration(seconds))
}

struct Column {
    name: String,
    kind: String,
    format: String,
    description: String,
    priority: i64,
    cell: Box<dyn Fn(&Value) -> Value>,
}

fn column(
    name: &str,
    kind: &str,
    description: &str,
    cell: impl Fn(&Value) -> Value + 'static,
) -> Column {
    Column {
        name: name.to_owned(),
        kind: kind.to_owned(),
        format: if name == "Name" {
            "name".to_owned()
        } else {
            String::new()
        },
        description: description.to_owned(),
        priority: 0,
        cell: Box::new(cell),
    }
}

fn name_column() -> Column {
    column(
        "Name",
        "string",
        "Name must be unique within a namespace.",
        |object| {
            object
                .pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null)
        },
    )
}

fn age_column() -> Column {
    column(
        "Age",
        "string",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        |object| age(object.pointer("/metadata/creationTimestamp")),
    )
}

fn selector_text(selector: Option<&Value>) -> Value {
    let mut parts = Vec::new();
    if let Some(labels) = selector
        .and_then(|selector| selector.get("matchLabels"))
        .and_then(Value::as_object)
    {
        for (key, value) in labels {
            parts.push(format!("{key}={}", value.as_str().unwrap_or_default()));
        }
    }
    if let Some(expressions) = selector
        .and_then(|selector| selector.get("matchExpressions"))
        .and_then(Value::as_array)
    {
        for expression in expressions {
            let key = expression
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let values: Vec<&str> = expression
                .get("values")
                .and_then(Value::as_array)
                .map(|values| values.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match expression
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_owned()),
                _ => parts.push(format!("!{key}")),
            }
        }
    }
    if parts.is_empty() {
        json!("<none>")
    } else {
        json!(parts.join(","))
    }
}

fn custom_column(definition: &Value) -> Column {
    let path = definition
        .get("jsonPath")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = definition
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string")
        .to_owned();
    let cell_kind = kind.clone();
    let mut result = column(
        definition
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        &kind,
        definition
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        move |object| {
            let found = evaluate(object, &path);
            match (cell_kind.as_str(), found.as_slice()) {
                (_, []) => Value::Null,
                ("date", [first, ..]) => age(Some(first)),
                ("integer" | "number" | "boolean", [first]) => (*first).clone(),
                (_, [Value::String(text)]) => json!(text),
                (_, values) => json!(
                    values
                        .iter()
                        .map(|value| value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            }
        },
    );
    definition
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .clone_into(&mut result.format);
    result.priority = definition
        .get("priority")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    result
}

/// The columns of core v1 Events, as the real server prints them (the name last, priority 1).
fn event_columns() -> Vec<Column> {
    let text = |path: &'static str| {
        move |object: &Value| object.pointer(path).cloned().unwrap_or(Value::Null)
    };
    let mut name = name_column();
    name.priority = 1;
    vec![
        column(
            "Last Seen",
            "string",
            "Time when this Event was last seen.",
            |object| {
                let seen = ["/lastTimestamp", "/series/lastObservedTime", "/eventTime"]
                    .iter()
                    .find_map(|path| object.pointer(path).filter(|value| !value.is_null()));
                age(seen.or_else(|| object.pointer("/metadata/creationTimestamp")))
            },
        ),
        column("Type", "string", "Type of this event.", text("/type")),
        column(
            "Reason",
            "string",
            "Reason why this event was generated.",
            text("/reason"),
        ),
        column(
            "Object",
            "string",
            "The object that this event is about.",
            |object| {
                let kind = object
                    .pointer("/involvedObject/kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_lowercase();
                let name = object
                    .pointer("/involvedObject/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                json!(format!("{kind}/{name}"))
            },
        ),
        column(
            "Message",
            "string",
            "A human-readable description of the status of this operation.",
            text("/message"),
        ),
        name,
    ]
}

fn columns(info: &ResourceInfo) -> Vec<Column> {
    if info.group.is_empty() && info.plural == "events" {
        return event_columns();
    }
    let mut columns = vec![name_column()];
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => columns.push(column(
            "Status",
            "string",
            "The status of the namespace",
            |object| {
                object
                    .pointer("/status/phase")
                    .cloned()
                    .unwrap_or(Value::Null)
            },
        )),
        ("", "pods") => {
            columns.push(column(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
                |object| {
                    let total = object
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    let ready = object
                        .pointer("/status/containerStatuses")
                        .and_then(Value::as_array)
                        .map_or(0, |statuses| {
                            statuses
                                .iter()
                                .filter(|status| status["ready"] == json!(true))
                                .count()
                        });
                    json!(format!("{ready}/{total}"))
                },
            ));
            columns.push(column(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
                |object| {
                    object
                        .pointer("/status/phase")
                        .cloned()
                        .unwrap_or(Value::Null)
                },
            ));
            columns.push(column(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted.",
                |_| json!("0"),
            ));
        }
        ("networking.k8s.io", "networkpolicies") => {
            columns.push(column(
                "Pod-Selector",
                "string",
                "Pods selected by this policy.",
                |object| selector_text(object.pointer("/spec/podSelector")),
            ));
        }
        ("coordination.k8s.io", "leases") => {
            columns.push(column(
                "Holder",
                "string",
                "The holder of the lease.",
                |object| {
                    object
                        .pointer("/spec/holderIdentity")
                        .cloned()
                        .unwrap_or(Value::Null)
                },
            ));
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            columns.push(column("Created At", "date", "", |object| {
                object
                    .pointer("/metadata/creationTimestamp")
                    .cloned()
                    .unwrap_or(Value::Null)
            }));
            return columns;
        }
        _ => {}
    }
    if info.custom && !info.printer_columns.is_empty() {
        columns.extend(info.printer_columns.iter().map(custom_column));
        return columns;
    }
    columns.push(age_column());
    columns
}

/// A list (or one object) as a Table. `include_object` is `None`, `Metadata` (default) or
/// `Object`.
#[must_use]
pub fn to_table(info: &ResourceInfo, body: &Value, include_object: &str) -> Value {
    let columns = columns(info);
    let objects: Vec<&Value> = match body.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().collect(),
        None => vec![body],
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = columns.iter().map(|column| (column.cell)(object)).collect();
            let mut row = json!({"cells": cells});
            match include_object {
                "None" => {}
                "Object" => row["object"] = (*object).clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                }
            }
            row
        })
        .collect();
    let definitions: Vec<Value> = columns
        .iter()
        .map(|column| {
            json!({
                "name": column.name,
                "type": if column.kind == "date" { "string" } else { column.kind.as_str() },
                "format": column.format,
                "description": column.description,
                "priority": column.priority,
            })
        })
        .collect();
    let mut metadata = json!({});
    if let Some(version) = body.pointer("/metadata/resourceVersion") {
        metadata["resourceVersion"] = version.clone();
    }
    if let Some(token) = body.pointer("/metadata/continue") {
        metadata["continue"] = token.clone();
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// How objects are answered, from the `Accept` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The objects themselves.
    Json,
    /// A Table (`as=Table`), with this `includeObject` (`None`, `Metadata`, `Object`).
    Table(String),
    /// Metadata only (`as=PartialObjectMetadata`, what kube's metadata watchers ask for).
    Metadata,
}

impl Output {
    /// The output an `Accept` header asks for.
    #[must_use]
    pub fn from_accept(accept: &str, include_object: &str) -> Self {
        if accept.contains("as=Table") {
            Output::Table(include_object.to_owned())
        } else if accept.contains("as=PartialObjectMetadata") {
            Output::Metadata
        } else {
            Output::Json
        }
    }

    /// One object, or a list, in this output.
    #[must_use]
    pub fn render(&self, info: &ResourceInfo, body: Value) -> Value {
        match self {
            Output::Json => body,
            Output::Table(include) => to_table(info, &body, include),
            Output::Metadata => match body.get("items").and_then(Value::as_array) {
                Some(items) => json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": body.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    "items": items.iter().map(partial).collect::<Vec<_>>(),
                }),
                None => partial(&body),
            },
        }
    }
}

fn partial(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths_select_like_kubectl() {
        let object = json!({"status": {"conditions": [
            {"type": "Progressing", "status": "False"},
            {"type": "Ready", "status": "True"}
        ], "policyCount": 4}});
        assert_eq!(
            evaluate(&object, r#".status.conditions[?(@.type=="Ready")].status"#),
            [&json!("True")]
        );
        assert_eq!(evaluate(&object, ".status.policyCount"), [&json!(4)]);
        assert_eq!(evaluate(&object, ".status.conditions[*].type").len(), 2);
        assert!(evaluate(&object, ".spec.mode").is_empty());
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(185), "3m5s");
        assert_eq!(human_duration(3600 * 5 + 60 * 7), "5h7m");
        assert_eq!(human_duration(3600 * 24 * 3), "3d");
    }
}
