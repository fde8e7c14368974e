//! Protobuf request bodies, as `kubectl create namespace` sends them: the bytes kubectl put on
//! the wire, posted over raw HTTP with kubectl's headers, and the result read back as JSON.

use netfence_e2e::{Cluster, skip};

use super::common::{assert_status, send};

/// The body of `kubectl create namespace demo` (kubectl v1.32.4), captured from the wire.
const CREATE_DEMO: &[u8] = include_bytes!(
    "../../../operator/src/sandbox/protobuf/fixtures/kubectl-create-namespace-demo.bin"
);
/// Namespace `shop` with labels `team=web`, `tier=api`, annotation `owner=ops` and spec
/// finalizer `example.com/hold`, laid out as kubectl's encoder lays out the captured bodies.
const WITH_LABELS: &[u8] =
    include_bytes!("../../../operator/src/sandbox/protobuf/fixtures/namespace-with-labels.bin");

const KUBECTL_AGENT: &str = "kubectl/v1.32.4 (linux/amd64) kubernetes/4cb5f07";

/// A POST with the headers kubectl sends for a typed create.
fn kubectl_post(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nContent-Type: application/vnd.kubernetes.protobuf\r\nAccept: application/vnd.kubernetes.protobuf,application/json\r\nUser-Agent: {KUBECTL_AGENT}\r\nContent-Length: {length}"
    )
}

/// `kubectl create namespace` works against the sandbox: the protobuf body creates the
/// Namespace, the answer is JSON, and a later GET shows it with its labels, annotations and
/// finalizers, Active, and managed by the user agent's product when no `fieldManager` is
/// given. If this fails, `kubectl create namespace NAME` fails with 415 again.
#[tokio::test]
async fn kubectl_create_namespace_creates_it() {
    let cluster = Cluster::start().await.expect("cluster");
    let Some(sandbox) = cluster.sandbox() else {
        skip(
            "kubectl_create_namespace_creates_it",
            "raw HTTP needs the sandbox's plain loopback port",
        );
        return;
    };
    let address = sandbox.address();
    let path = "/api/v1/namespaces?fieldManager=kubectl-create&fieldValidation=Strict";
    let (code, created) = send(address, &kubectl_post(path, CREATE_DEMO.len()), CREATE_DEMO).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["kind"], "Namespace");
    assert_eq!(created["metadata"]["name"], "demo");
    let (code, demo) = send(
        address,
        "GET /api/v1/namespaces/demo HTTP/1.1\r\nAccept: application/json",
        b"",
    )
    .await;
    assert_eq!(code, 200, "{demo}");
    assert_eq!(demo["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        demo["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "demo"
    );
    assert_eq!(demo["status"]["phase"], "Active");
    let (code, again) = send(address, &kubectl_post(path, CREATE_DEMO.len()), CREATE_DEMO).await;
    assert_eq!(
        code, 409,
        "a second create is a conflict, as with JSON: {again}"
    );

    let (code, created) = send(
        address,
        &kubectl_post("/api/v1/namespaces", WITH_LABELS.len()),
        WITH_LABELS,
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let (code, shop) = send(
        address,
        "GET /api/v1/namespaces/shop HTTP/1.1\r\nAccept: application/json",
        b"",
    )
    .await;
    assert_eq!(code, 200, "{shop}");
    assert_eq!(shop["metadata"]["labels"]["team"], "web");
    assert_eq!(shop["metadata"]["labels"]["tier"], "api");
    assert_eq!(shop["metadata"]["annotations"]["owner"], "ops");
    assert_eq!(shop["spec"]["finalizers"][0], "example.com/hold");
    assert_eq!(shop["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(shop["metadata"]["managedFields"][0]["operation"], "Update");
    cluster.stop().await;
}

/// `kubectl create namespace NAME --dry-run=server` answers the Namespace and stores nothing.
/// If this fails, a dry run creates the namespace, or fails with 415.
#[tokio::test]
async fn server_dry_run_of_a_protobuf_create_stores_nothing() {
    let cluster = Cluster::start().await.expect("cluster");
    let Some(sandbox) = cluster.sandbox() else {
        skip(
            "server_dry_run_of_a_protobuf_create_stores_nothing",
            "raw HTTP needs the sandbox's plain loopback port",
        );
        return;
    };
    let address = sandbox.address();
    let path = "/api/v1/namespaces?dryRun=All&fieldManager=kubectl-create";
    let (code, answer) = send(address, &kubectl_post(path, CREATE_DEMO.len()), CREATE_DEMO).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["metadata"]["name"], "demo");
    let answer = send(address, "GET /api/v1/namespaces/demo HTTP/1.1", b"").await;
    assert_status(&answer, 404, "NotFound", "nothing stored by a dry run");
    cluster.stop().await;
}

/// A truncated protobuf body is a 400 that says so; protobuf for any other kind, or for an
/// update, is a 415 that names what the sandbox decodes and that `kubectl apply -f` works.
/// If this fails, a bad body crashes the sandbox or the user is left without a way forward.
#[tokio::test]
async fn bad_and_unsupported_protobuf_bodies_get_a_status() {
    let cluster = Cluster::start().await.expect("cluster");
    let Some(sandbox) = cluster.sandbox() else {
        skip(
            "bad_and_unsupported_protobuf_bodies_get_a_status",
            "raw HTTP needs the sandbox's plain loopback port",
        );
        return;
    };
    let address = sandbox.address();
    let truncated = CREATE_DEMO.get(..30).unwrap_or_default();
    let answer = send(
        address,
        &kubectl_post("/api/v1/namespaces", truncated.len()),
        truncated,
    )
    .await;
    assert_status(&answer, 400, "BadRequest", "truncated protobuf");
    assert_eq!(
        answer.1["message"],
        "failed to decode the protobuf runtime.Unknown: the message is truncated"
    );
    let answer = send(address, &kubectl_post("/api/v1/namespaces", 4), b"{\"a\"").await;
    assert_status(&answer, 400, "BadRequest", "JSON labelled as protobuf");

    let pods = "/api/v1/namespaces/default/pods";
    let answer = send(address, &kubectl_post(pods, CREATE_DEMO.len()), CREATE_DEMO).await;
    assert_status(&answer, 415, "UnsupportedMediaType", "protobuf Pod create");
    let message = answer.1["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("only for v1 Namespace"), "{message}");
    assert!(message.contains("not v1 Pod"), "{message}");
    assert!(
        message.contains("kubectl apply -f works for every kind"),
        "{message}"
    );
    let put = format!(
        "PUT /api/v1/namespaces/default HTTP/1.1\r\nContent-Type: application/vnd.kubernetes.protobuf\r\nContent-Length: {}",
        CREATE_DEMO.len()
    );
    let answer = send(address, &put, CREATE_DEMO).await;
    assert_status(&answer, 415, "UnsupportedMediaType", "protobuf update");
    let answer = send(address, "GET /version HTTP/1.1", b"").await;
    assert_eq!(answer.0, 200, "the server is still up");
    cluster.stop().await;
}
