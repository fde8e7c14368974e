//! Helpers shared by the scenarios.

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject},
};
use netfence_e2e::raw::RawEndpoint;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A typed object from JSON (test data is written as JSON, as manifests are).
pub fn object<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("test object matches its type")
}

/// The HTTP code of a kube error, if the server answered with a Status.
pub fn code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The Status of a kube error; panics when the error is not an answer of the server.
pub fn status(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The `ApiResource` of the netfence NamespaceIsolation.
pub fn isolation_resource() -> ApiResource {
    ApiResource {
        group: "netfence.io".into(),
        version: "v1alpha1".into(),
        api_version: "netfence.io/v1alpha1".into(),
        kind: "NamespaceIsolation".into(),
        plural: "namespaceisolations".into(),
    }
}

/// NamespaceIsolations of a namespace, as dynamic objects.
pub fn isolations(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &isolation_resource())
}

/// A small valid NamespaceIsolation.
pub fn isolation(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "NamespaceIsolation",
        "metadata": {"name": name},
        "spec": {
            "tiers": [
                {"name": "web", "podSelector": {"matchLabels": {"tier": "web"}}},
                {"name": "api", "podSelector": {"matchLabels": {"tier": "api"}}}
            ],
            "flows": [{"from": "web", "to": "api", "ports": [{"port": 8080}]}]
        }
    })
}

/// The labels of an object.
pub fn labels(object: &Value) -> Value {
    object
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(Value::Null)
}

/// Send one raw HTTP/1.1 request (the sandbox's plain port, or the real server over TLS as its
/// admin), so nothing normalises it first; return the status code and the body as JSON (Null
/// when the body is not JSON). Write errors are ignored: a server may answer 413 before reading
/// it all.
pub async fn send(raw: &RawEndpoint, head: &str, body: &[u8]) -> (u16, Value) {
    let answer = raw
        .send(head, body)
        .await
        .unwrap_or_else(|error| panic!("{head:?}: {error:#}"));
    (answer.code, answer.body)
}

/// Assert that an answer is a failure `Status` with this code and reason.
pub fn assert_status(answer: &(u16, Value), code: u16, reason: &str, what: &str) {
    let (answered, body) = answer;
    assert_eq!(*answered, code, "{what}: {body}");
    assert_eq!(body["kind"], "Status", "{what}: a Status body");
    assert_eq!(body["code"], code, "{what}");
    assert_eq!(body["reason"], reason, "{what}");
    assert_eq!(body["status"], "Failure", "{what}");
}
