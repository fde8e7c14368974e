//! Protobuf request bodies, as `kubectl create namespace` sends them: the bytes kubectl put on
//! the wire, posted over raw HTTP with kubectl's headers, and the result read back as JSON.
//! The captured bodies name their namespace (`demo`, `shop`); each test writes a name of its
//! own, of the same length, into them, so that parallel tests on one real cluster never meet.

use netfence_e2e::{Cluster, raw::RawAnswer, raw::RawEndpoint, unique_suffix};
use serde_json::{Value, json};

use super::common::{assert_status, send};

/// The body of `kubectl create namespace demo` (kubectl v1.32.4), captured from the wire.
const CREATE_DEMO: &[u8] =
    include_bytes!("../../../sandbox/src/protobuf/fixtures/kubectl-create-namespace-demo.bin");
/// Namespace `shop` with labels `team=web`, `tier=api`, annotation `owner=ops` and spec
/// finalizer `example.com/hold`, laid out as kubectl's encoder lays out the captured bodies.
const WITH_LABELS: &[u8] =
    include_bytes!("../../../sandbox/src/protobuf/fixtures/namespace-with-labels.bin");

const KUBECTL_AGENT: &str = "kubectl/v1.32.4 (linux/amd64) kubernetes/4cb5f07";

/// What kubectl accepts for a typed request: protobuf first, JSON else.
const KUBECTL_ACCEPT: &str = "application/vnd.kubernetes.protobuf,application/json";

/// A POST with the headers kubectl sends for a typed create, accepting `accept`.
fn post(path: &str, length: usize, accept: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nContent-Type: application/vnd.kubernetes.protobuf\r\nAccept: {accept}\r\nUser-Agent: {KUBECTL_AGENT}\r\nContent-Length: {length}"
    )
}

/// `body` with its one occurrence of `from` replaced by `to` (of the same length, so that no
/// protobuf length changes).
fn renamed(body: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "a name of the same length");
    let at: Vec<usize> = body
        .windows(from.len())
        .enumerate()
        .filter(|(_, window)| *window == from.as_bytes())
        .map(|(at, _)| at)
        .collect();
    assert_eq!(at.len(), 1, "{from:?} occurs once in the body");
    let mut renamed = body.to_vec();
    renamed[at[0]..at[0] + to.len()].copy_from_slice(to.as_bytes());
    renamed
}

/// A namespace name of 4 characters that does not exist yet.
async fn free_name(raw: &RawEndpoint) -> String {
    for _ in 0..100 {
        let number = u32::from_str_radix(&unique_suffix(), 16).unwrap_or_default();
        let name = format!("p{}", base36(number % (36 * 36 * 36)));
        let answer = get(raw, &format!("/api/v1/namespaces/{name}")).await;
        if answer.code == 404 {
            return name;
        }
    }
    panic!("no free 4-character namespace name");
}

fn base36(mut number: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut text = Vec::new();
    for _ in 0..3 {
        text.push(digits[(number % 36) as usize]);
        number /= 36;
    }
    String::from_utf8(text).unwrap_or_default()
}

async fn get(raw: &RawEndpoint, path: &str) -> RawAnswer {
    raw.send(
        &format!("GET {path} HTTP/1.1\r\nAccept: application/json"),
        b"",
    )
    .await
    .expect("an answer")
}

/// Whether an answer is Kubernetes protobuf (a real server answers kubectl's typed requests so).
fn is_protobuf(answer: &RawAnswer) -> bool {
    answer.text.as_bytes().starts_with(b"k8s\0")
        && answer.headers.iter().any(|(name, value)| {
            name == "content-type" && value == "application/vnd.kubernetes.protobuf"
        })
}

/// Delete a test's namespace; on a real cluster also release its spec finalizers (the
/// namespace controller removes only `kubernetes`), as `PUT .../finalize` does.
async fn remove_namespace(cluster: &Cluster, name: &str) {
    let raw = cluster.raw();
    let _ = raw
        .send(&format!("DELETE /api/v1/namespaces/{name} HTTP/1.1"), b"")
        .await;
    if cluster.is_real() {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {"finalizers": []}}).to_string();
        let head = format!(
            "PUT /api/v1/namespaces/{name}/finalize HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        );
        let _ = raw.send(&head, body.as_bytes()).await;
    }
}

/// `kubectl create namespace` works against the sandbox: the protobuf body creates the
/// Namespace, the answer is JSON (a real server answers protobuf, which kubectl prefers; both
/// are what kubectl reads), and a later GET shows it with its labels, annotations and
/// finalizers, Active, and managed by the user agent's product when no `fieldManager` is
/// given. If this fails, `kubectl create namespace NAME` fails with 415 again.
#[tokio::test]
async fn kubectl_create_namespace_creates_it() {
    let cluster = Cluster::start().await.expect("cluster");
    let raw = cluster.raw();
    let name = free_name(&raw).await;
    let body = renamed(CREATE_DEMO, "demo", &name);
    let path = "/api/v1/namespaces?fieldManager=kubectl-create&fieldValidation=Strict";
    let created = raw
        .send(&post(path, body.len(), KUBECTL_ACCEPT), &body)
        .await
        .expect("an answer");
    assert_eq!(created.code, 201, "{}", created.text);
    if cluster.is_real() {
        assert!(is_protobuf(&created), "{:?}", created.headers);
    } else {
        assert_eq!(created.body["kind"], "Namespace");
        assert_eq!(created.body["metadata"]["name"], name.as_str());
    }
    let demo = get(&raw, &format!("/api/v1/namespaces/{name}")).await;
    assert_eq!(demo.code, 200, "{}", demo.text);
    if !cluster.is_real() {
        assert_eq!(
            demo.body["metadata"]["uid"],
            created.body["metadata"]["uid"]
        );
    }
    assert_eq!(
        demo.body["metadata"]["labels"]["kubernetes.io/metadata.name"],
        name.as_str()
    );
    assert_eq!(demo.body["status"]["phase"], "Active");
    let again = raw
        .send(&post(path, body.len(), KUBECTL_ACCEPT), &body)
        .await
        .expect("an answer");
    assert_eq!(
        again.code, 409,
        "a second create is a conflict, as with JSON: {}",
        again.text
    );

    let shop = free_name(&raw).await;
    let labelled = renamed(WITH_LABELS, "shop", &shop);
    let created = raw
        .send(
            &post("/api/v1/namespaces", labelled.len(), KUBECTL_ACCEPT),
            &labelled,
        )
        .await
        .expect("an answer");
    assert_eq!(created.code, 201, "{}", created.text);
    let read = get(&raw, &format!("/api/v1/namespaces/{shop}")).await;
    assert_eq!(read.code, 200, "{}", read.text);
    let read = read.body;
    assert_eq!(read["metadata"]["labels"]["team"], "web");
    assert_eq!(read["metadata"]["labels"]["tier"], "api");
    assert_eq!(read["metadata"]["annotations"]["owner"], "ops");
    assert_eq!(read["spec"]["finalizers"][0], "example.com/hold");
    assert_eq!(read["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(read["metadata"]["managedFields"][0]["operation"], "Update");
    remove_namespace(&cluster, &name).await;
    remove_namespace(&cluster, &shop).await;
    cluster.stop().await;
}

/// `kubectl create namespace NAME --dry-run=server` answers the Namespace and stores nothing.
/// If this fails, a dry run creates the namespace, or fails with 415.
#[tokio::test]
async fn server_dry_run_of_a_protobuf_create_stores_nothing() {
    let cluster = Cluster::start().await.expect("cluster");
    let raw = cluster.raw();
    let name = free_name(&raw).await;
    let body = renamed(CREATE_DEMO, "demo", &name);
    let path = "/api/v1/namespaces?dryRun=All&fieldManager=kubectl-create";
    let answer = raw
        .send(&post(path, body.len(), KUBECTL_ACCEPT), &body)
        .await
        .expect("an answer");
    assert_eq!(answer.code, 201, "{}", answer.text);
    if cluster.is_real() {
        assert!(is_protobuf(&answer), "{:?}", answer.headers);
    } else {
        assert_eq!(answer.body["metadata"]["name"], name.as_str());
    }
    let answer = send(
        &raw,
        &format!("GET /api/v1/namespaces/{name} HTTP/1.1"),
        b"",
    )
    .await;
    assert_status(&answer, 404, "NotFound", "nothing stored by a dry run");
    cluster.stop().await;
}

/// Protobuf field 1 (`number`) of wire type 2 (bytes), with its length.
fn bytes_field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut field = vec![number << 3 | 2, u8::try_from(bytes.len()).expect("short")];
    field.extend_from_slice(bytes);
    field
}

/// `kubectl run web --image=nginx`'s Pod in kubectl's protobuf envelope (a minimal Pod: name,
/// one container), which the sandbox does not decode.
fn pod_body() -> Vec<u8> {
    let metadata = bytes_field(1, b"web");
    let container = [bytes_field(1, b"c"), bytes_field(2, b"nginx")].concat();
    let spec = bytes_field(2, &container);
    let pod = [bytes_field(1, &metadata), bytes_field(2, &spec)].concat();
    let type_meta = [bytes_field(1, b"v1"), bytes_field(2, b"Pod")].concat();
    let unknown = [
        bytes_field(1, &type_meta),
        bytes_field(2, &pod),
        bytes_field(3, b""),
        bytes_field(4, b""),
    ]
    .concat();
    [b"k8s\0".as_slice(), &unknown].concat()
}

/// A truncated protobuf body is a 400 that says so; a Namespace's body posted as a Pod is a
/// 400. Protobuf for any other kind, or for an update, is a 415 from the sandbox that names
/// what it decodes and that `kubectl apply -f` works, where a real server decodes it (a
/// difference listed in the sandbox's module docs). If this fails, a bad body crashes the
/// sandbox or the user is left without a way forward.
#[tokio::test]
async fn bad_and_unsupported_protobuf_bodies_get_a_status() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("protobuf").await.expect("namespace");
    let raw = cluster.raw();
    let json = "application/json";
    let truncated = CREATE_DEMO.get(..30).unwrap_or_default();
    let answer = send(
        &raw,
        &post("/api/v1/namespaces", truncated.len(), json),
        truncated,
    )
    .await;
    assert_status(&answer, 400, "BadRequest", "truncated protobuf");
    let expected = if cluster.is_real() {
        "the object provided is unrecognized (must be of type Namespace): unexpected EOF (6b3873000a0f0a02763112094e616d657370616365121c0a140a0464656d)"
    } else {
        "failed to decode the protobuf runtime.Unknown: the message is truncated"
    };
    assert_eq!(answer.1["message"], expected);
    let answer = send(&raw, &post("/api/v1/namespaces", 4, json), b"{\"a\"").await;
    assert_status(&answer, 400, "BadRequest", "JSON labelled as protobuf");
    assert_eq!(
        answer.1["message"],
        "the object provided is unrecognized (must be of type Namespace): provided data does not appear to be a protobuf message, expected prefix [107 56 115 0] ({\"a\")"
    );

    let pods = format!("/api/v1/namespaces/{}/pods?dryRun=All", namespace.name);
    let answer = send(&raw, &post(&pods, CREATE_DEMO.len(), json), CREATE_DEMO).await;
    assert_status(&answer, 400, "BadRequest", "a Namespace's body as a Pod");
    assert_eq!(
        answer.1["message"],
        "Namespace in version \"v1\" cannot be handled as a Pod: converting (v1.Namespace) to (core.Pod): unknown conversion"
    );

    let pod = pod_body();
    let answer = send(&raw, &post(&pods, pod.len(), json), &pod).await;
    if cluster.is_real() {
        assert_eq!(answer.0, 201, "a real server decodes a Pod: {}", answer.1);
        assert_eq!(answer.1["metadata"]["name"], "web");
    } else {
        assert_status(&answer, 415, "UnsupportedMediaType", "protobuf Pod create");
        let message = answer.1["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("only for v1 Namespace"), "{message}");
        assert!(message.contains("not v1 Pod"), "{message}");
        assert!(
            message.contains("kubectl apply -f works for every kind"),
            "{message}"
        );
    }
    let put = format!(
        "PUT /api/v1/namespaces/{}?dryRun=All HTTP/1.1\r\nContent-Type: application/vnd.kubernetes.protobuf\r\nContent-Length: {}",
        namespace.name,
        CREATE_DEMO.len()
    );
    let answer = send(&raw, &put, CREATE_DEMO).await;
    if cluster.is_real() {
        assert_status(&answer, 400, "BadRequest", "a protobuf update naming demo");
        assert_eq!(
            answer.1["message"],
            Value::from(format!(
                "the name of the object (demo) does not match the name on the URL ({})",
                namespace.name
            ))
        );
    } else {
        assert_status(&answer, 415, "UnsupportedMediaType", "protobuf update");
    }
    let answer = send(&raw, "GET /version HTTP/1.1", b"").await;
    assert_eq!(answer.0, 200, "the server is still up");
    namespace.cleanup().await;
    cluster.stop().await;
}
