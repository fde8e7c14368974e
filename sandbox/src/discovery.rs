//! Discovery and OpenAPI: what kubectl and `kube::Discovery` read to learn the served
//! resources.
//!
//! ```text
//! /version  /api  /api/v1  /apis  /apis/GROUP  /apis/GROUP/VERSION      legacy discovery documents
//! /openapi/v3  /openapi/v3/api/v1  /openapi/v3/apis/GROUP/VERSION     OpenAPI v3, one document per group/version
//! ```
//!
//! Aggregated discovery is not served: clients that ask for it get the legacy documents with
//! `Content-Type: application/json` and fall back, as they do against older servers. The
//! OpenAPI documents carry every path with its verbs, the `PATCH` parameters kubectl looks for
//! to use server-side field validation (`fieldValidation`, `fieldManager`, `force`, `dryRun`),
//! and the schemas: a CRD's full `openAPIV3Schema` (so `kubectl explain` works), and for
//! built-in kinds only the server-side-apply hints (their fields are not described).

use std::{
    collections::BTreeMap,
    hash::{Hash, Hasher},
};

use serde_json::{Value, json};

use super::resources::{Catalog, ResourceInfo};

/// The Kubernetes version the sandbox reports.
pub const KUBERNETES_MINOR: &str = "33";

/// `/version`.
#[must_use]
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-netfence-sandbox"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "none",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// `/api`.
#[must_use]
pub fn api_versions(address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    })
}

/// The kube-aware priority of a version: GA before beta before alpha, higher numbers first.
fn version_priority(version: &str) -> (u8, u32, u32) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(beta) = tail.strip_prefix("beta") {
        (2, major, beta.parse().unwrap_or(0))
    } else if let Some(alpha) = tail.strip_prefix("alpha") {
        (1, major, alpha.parse().unwrap_or(0))
    } else {
        (0, major, 0)
    }
}

/// The groups and their versions, preferred version first.
fn groups(catalog: &Catalog) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for info in catalog.all().iter().filter(|info| !info.group.is_empty()) {
        let versions = groups.entry(info.group.clone()).or_default();
        if !versions.contains(&info.version) {
            versions.push(info.version.clone());
        }
    }
    for versions in groups.values_mut() {
        versions.sort_by_key(|version| std::cmp::Reverse(version_priority(version)));
    }
    groups
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|version| json!({"groupVersion": format!("{name}/{version}"), "version": version}))
        .collect();
    json!({
        "name": name,
        "versions": entries,
        "preferredVersion": entries.first().cloned().unwrap_or_else(|| json!({})),
    })
}

/// `/apis`.
#[must_use]
pub fn group_list(catalog: &Catalog) -> Value {
    let groups: Vec<Value> = groups(catalog)
        .iter()
        .map(|(name, versions)| group_json(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/GROUP`, if the group is served.
#[must_use]
pub fn group(catalog: &Catalog, name: &str) -> Option<Value> {
    groups(catalog).get(name).map(|versions| {
        let mut document = group_json(name, versions);
        document["kind"] = json!("APIGroup");
        document["apiVersion"] = json!("v1");
        document
    })
}

/// `/api/v1` or `/apis/GROUP/VERSION`, if served.
#[must_use]
pub fn resource_list(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceInfo> = catalog
        .all()
        .iter()
        .filter(|info| info.group == group && info.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for info in served {
        let mut entry = json!({
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": info.verbs(),
        });
        if !info.short_names.is_empty() {
            entry["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            entry["categories"] = json!(info.categories);
        }
        resources.push(entry);
        if info.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", info.plural),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The group/versions an OpenAPI v3 document is served for: `api/v1`, `apis/GROUP/VERSION`.
fn openapi_group_versions(catalog: &Catalog) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for info in catalog.all() {
        let pair = (info.group.clone(), info.version.clone());
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    pairs
}

fn openapi_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per group/version, with a content hash in the URL (clients cache
/// by it).
#[must_use]
pub fn openapi_root(catalog: &Catalog) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, version) in openapi_group_versions(catalog) {
        let document = openapi_document(catalog, &group, version.as_str());
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        document.to_string().hash(&mut hasher);
        let path = openapi_path(&group, &version);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={:016X}", hasher.finish())}),
        );
    }
    json!({"paths": paths})
}

/// The schema name of a kind: `io.netfence.v1alpha1.NamespaceIsolation`,
/// `io.k8s.api.networking.v1.NetworkPolicy`.
fn schema_name(info: &ResourceInfo) -> String {
    if info.custom {
        let reversed: Vec<&str> = info.group.split('.').rev().collect();
        format!("{}.{}.{}", reversed.join("."), info.version, info.kind)
    } else {
        let group = info
            .group
            .split('.')
            .next()
            .filter(|part| !part.is_empty())
            .unwrap_or("core");
        format!("io.k8s.api.{group}.{}.{}", info.version, info.kind)
    }
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn parameter(name: &str, description: &str, kind: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": true}})
}

fn operation(info: &ResourceInfo, action: &str, parameters: &[Value], body: bool) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{}", schema_name(info))});
    let mut operation = json!({
        "operationId": format!("{action}{}", info.kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": info.group, "version": info.version, "kind": info.kind},
    });
    if body {
        operation["requestBody"] =
            json!({"content": {"application/json": {"schema": reference}}, "required": true});
    }
    operation
}

fn write_parameters() -> Vec<Value> {
    vec![
        parameter(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
            "string",
        ),
        parameter(
            "fieldManager",
            "The name of the actor making the change.",
            "string",
        ),
        parameter(
            "fieldValidation",
            "How the server treats unknown and duplicate fields: Ignore, Warn (default) or Strict.",
            "string",
        ),
    ]
}

fn patch_parameters() -> Vec<Value> {
    let mut parameters = write_parameters();
    parameters.push(parameter(
        "force",
        "Force is going to \"force\" Apply requests.",
        "boolean",
    ));
    parameters
}

fn list_parameters() -> Vec<Value> {
    [
        "allowWatchBookmarks",
        "continue",
        "fieldSelector",
        "labelSelector",
        "limit",
        "resourceVersion",
        "resourceVersionMatch",
        "sendInitialEvents",
        "timeoutSeconds",
        "watch",
    ]
    .iter()
    .map(|name| parameter(name, "", "string"))
    .collect()
}

/// The OpenAPI v3 document of one group/version, if served.
#[must_use]
#[allow(clippy::too_many_lines)] // the paths and schemas of one document, built in one place
pub fn openapi_document(catalog: &Catalog, group: &str, version: &str) -> Value {
    let prefix = format!("/{}", openapi_path(group, version));
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for info in catalog
        .all()
        .iter()
        .filter(|info| info.group == group && info.version == version)
    {
        let collection = if info.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", info.plural)
        } else {
            format!("{prefix}/{}", info.plural)
        };
        let item = format!("{collection}/{{name}}");
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(info, "list", &list_parameters(), false),
                "post": operation(info, "post", &write_parameters(), true),
                "delete": operation(info, "deletecollection", &[], false),
            }),
        );
        paths.insert(
            item.clone(),
            json!({
                "get": operation(info, "get", &[], false),
                "put": operation(info, "put", &write_parameters(), true),
                "patch": operation(info, "patch", &patch_parameters(), true),
                "delete": operation(info, "delete", &[parameter("dryRun", "", "string")], false),
            }),
        );
        if info.status_subresource {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": operation(info, "get", &[], false),
                    "put": operation(info, "put", &write_parameters(), true),
                    "patch": operation(info, "patch", &patch_parameters(), true),
                }),
            );
        }
        if info.namespaced {
            paths.insert(
                format!("{prefix}/{}", info.plural),
                json!({"get": operation(info, "list", &list_parameters(), false)}),
            );
        }
        let mut schema = info.schema.as_ref().clone();
        if let Some(map) = schema.as_object_mut() {
            map.remove("x-kubernetes-preserve-unknown-fields");
            let properties = map.entry("properties").or_insert_with(|| json!({}));
            properties["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
            properties["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
            properties["metadata"] = json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "default": {}, "description": "Standard object's metadata."});
            map.insert("type".to_owned(), json!("object"));
            map.insert(
                "x-kubernetes-group-version-kind".to_owned(),
                json!([{"group": info.group, "version": info.version, "kind": info.kind}]),
            );
        }
        schemas.insert(schema_name(info), schema);
        schemas.insert(
            format!("{}List", schema_name(info)),
            json!({
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", schema_name(info))}},
                    "metadata": {"type": "object"},
                },
                "x-kubernetes-group-version-kind": [{"group": info.group, "version": info.version, "kind": info.list_kind}],
            }),
        );
    }
    schemas.insert(
        OBJECT_META.to_owned(),
        json!({
            "type": "object",
            "description": "ObjectMeta is metadata that all persisted resources must have.",
            "properties": {
                "name": {"type": "string"},
                "generateName": {"type": "string"},
                "namespace": {"type": "string"},
                "uid": {"type": "string"},
                "resourceVersion": {"type": "string"},
                "generation": {"type": "integer", "format": "int64"},
                "creationTimestamp": {"type": "string", "format": "date-time"},
                "deletionTimestamp": {"type": "string", "format": "date-time"},
                "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
                "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set"},
                "ownerReferences": {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]},
                "managedFields": {"type": "array", "items": {"type": "object"}},
            },
        }),
    );
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (netfence sandbox)", "version": format!("v1.{KUBERNETES_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// Whether a group/version has an OpenAPI document.
#[must_use]
pub fn serves_group_version(catalog: &Catalog, group: &str, version: &str) -> bool {
    openapi_group_versions(catalog)
        .iter()
        .any(|(served_group, served_version)| served_group == group && served_version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ga_versions_are_preferred_over_beta_and_alpha() {
        let mut versions = vec!["v1alpha1", "v2beta1", "v1", "v1beta2"];
        versions.sort_by_key(|version| std::cmp::Reverse(version_priority(version)));
        assert_eq!(versions, ["v1", "v2beta1", "v1beta2", "v1alpha1"]);
    }

    #[test]
    fn every_patch_operation_announces_field_validation() {
        let catalog = Catalog::builtin();
        let document = openapi_document(&catalog, "networking.k8s.io", "v1");
        let patch = document
            .pointer("/paths/~1apis~1networking.k8s.io~1v1~1namespaces~1{namespace}~1networkpolicies~1{name}/patch")
            .expect("patch operation");
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"})
        );
        assert!(
            patch["parameters"]
                .as_array()
                .is_some_and(|parameters| parameters
                    .iter()
                    .any(|p| p["name"] == "fieldValidation"))
        );
    }
}
