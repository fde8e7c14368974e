//! What a careless or hostile client can send: malformed bodies, unknown resources, oversized
//! bodies, traversal in names. Raw HTTP over loopback, so nothing normalises the request first.

use netfence_e2e::{Cluster, skip};

use super::common::{assert_status, send};

fn post(path: &str, content_type: &str, length: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {length}")
}

fn patch(path: &str, content_type: &str, length: usize) -> String {
    format!(
        "PATCH {path}?fieldManager=e2e HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {length}"
    )
}

/// Malformed JSON and YAML, bodies of the wrong shape or media type, get 400 or 415 with a
/// Status. If this fails, a typo in a manifest crashes the sandbox or hangs the client.
#[tokio::test]
async fn malformed_bodies_get_a_status() {
    let cluster = Cluster::start().await.expect("cluster");
    let Some(sandbox) = cluster.sandbox() else {
        skip(
            "malformed_bodies_get_a_status",
            "raw HTTP needs the sandbox's plain loopback port",
        );
        return;
    };
    let address = sandbox.address();
    let pods = "/api/v1/namespaces/default/pods";
    let netpol = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/p";
    let cases: Vec<(String, Vec<u8>, u16, &str, &str)> = vec![
        (
            post(pods, "application/json", 9),
            b"{not json".to_vec(),
            400,
            "BadRequest",
            "malformed JSON",
        ),
        (
            post(pods, "application/json", 3),
            b"[1]".to_vec(),
            400,
            "BadRequest",
            "JSON that is not an object",
        ),
        (
            post(pods, "application/json", 0),
            Vec::new(),
            400,
            "BadRequest",
            "empty body",
        ),
        (
            post(pods, "application/json", 2),
            vec![0xff, 0xfe],
            400,
            "BadRequest",
            "not UTF-8",
        ),
        (
            post(pods, "application/yaml", 15),
            b"kind: [unclosed".to_vec(),
            400,
            "BadRequest",
            "malformed YAML",
        ),
        (
            post(pods, "application/vnd.kubernetes.protobuf", 4),
            b"\x00\x01\x02\x03".to_vec(),
            415,
            "UnsupportedMediaType",
            "protobuf",
        ),
        (
            patch(netpol, "application/apply-patch+yaml", 15),
            b"kind: [unclosed".to_vec(),
            400,
            "BadRequest",
            "malformed apply YAML",
        ),
        (
            patch(netpol, "text/plain", 2),
            b"{}".to_vec(),
            415,
            "UnsupportedMediaType",
            "unknown patch type",
        ),
        (
            patch(netpol, "application/merge-patch+json", 5),
            b"[1,2]".to_vec(),
            404,
            "NotFound",
            "patch of a missing object",
        ),
    ];
    for (head, body, code, reason, what) in cases {
        let answer = send(address, &head, &body).await;
        assert_status(&answer, code, reason, what);
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let answer = send(
        address,
        &post(pods, "application/json", deep.len()),
        deep.as_bytes(),
    )
    .await;
    assert_status(&answer, 400, "BadRequest", "JSON nested too deep");
    let deep_yaml = format!("a: {}{}", "[".repeat(50_000), "]".repeat(50_000));
    let answer = send(
        address,
        &patch(netpol, "application/apply-patch+yaml", deep_yaml.len()),
        deep_yaml.as_bytes(),
    )
    .await;
    assert_status(&answer, 400, "BadRequest", "YAML nested too deep");
    let answer = send(address, "GET /version HTTP/1.1", b"").await;
    assert_eq!(answer.0, 200, "the server is still up");
    cluster.stop().await;
}

/// Paths that name no served resource are 404 with a Status, and so are subresources and
/// scopes that do not exist. If this fails, clients cannot tell a missing CRD from a bug.
#[tokio::test]
async fn unknown_resources_are_not_found() {
    let cluster = Cluster::start().await.expect("cluster");
    let Some(sandbox) = cluster.sandbox() else {
        skip(
            "unknown_resources_are_not_found",
            "raw HTTP needs the sandbox's plain loopback port",
        );
        return;
    };
    let address = sandbox.address();
    for path in [
        "/apis/nope.example.com/v1/things",
        "/api/v1/namespaces/default/widgets",
        "/api/v2/pods",
        "/apis/networking.k8s.io/v9/networkpolicies",
        "/api/v1/namespaces/default/pods/web/exec",
        "/api/v1/pods/web",
        "/api/v1/namespaces/default/namespaces/x",
        "/apis/netfence.io/v1alpha1/namespaces/default/namespaceisolations/a/b/c",
        "/openapi/v3/apis/nope.example.com/v1",
        "/nonsense",
    ] {
        let answer = send(address, &format!("GET {path} HTTP/1.1"), b"").await;
        assert_status(&answer, 404, "NotFound", path);
    }
    let answer = send(
        address,
        "GET /api/v1/namespaces/default/pods/missing HTTP/1.1",
        b"",
    )
    .await;
    assert_status(&answer, 404, "NotFound", "a missing object");
    assert_eq!(answer.1["details"]["name"], "missing");
    cluster.stop().await;
}

/// A body over the limit (3 MiB, as upstream) is refused with 413, with or without a declared
/// length. If this fails, one large request can exhaust the sandbox's memory.
#[tokio::test]
async fn oversized_bodies_are_refused() {
    let cluster = Cluster::start().await.expect("cluster");
    let Some(sandbox) = cluster.sandbox() else {
        skip(
            "oversized_bodies_are_refused",
            "raw HTTP needs the sandbox's plain loopback port",
        );
        return;
    };
    let address = sandbox.address();
    let big = vec![b' '; 4 * 1024 * 1024];
    let answer = send(
        address,
        &post(
            "/api/v1/namespaces/default/pods",
            "application/json",
            big.len(),
        ),
        &big,
    )
    .await;
    assert_status(&answer, 413, "RequestEntityTooLarge", "declared length");
    let mut chunked = Vec::new();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1024 * 1024).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 1024 * 1024));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /api/v1/namespaces/default/pods HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked";
    let answer = send(address, head, &chunked).await;
    assert_status(&answer, 413, "RequestEntityTooLarge", "chunked");
    cluster.stop().await;
}

/// Traversal in names and namespaces (`..`, encoded slashes, bad escapes) is a 400 Status and
/// reaches no other object. If this fails, a crafted name reads or deletes objects elsewhere.
#[tokio::test]
async fn path_traversal_in_names_is_refused() {
    let cluster = Cluster::start().await.expect("cluster");
    let Some(sandbox) = cluster.sandbox() else {
        skip(
            "path_traversal_in_names_is_refused",
            "raw HTTP needs the sandbox's plain loopback port",
        );
        return;
    };
    let address = sandbox.address();
    for request in [
        "GET /api/v1/namespaces/default/pods/.. HTTP/1.1",
        "GET /api/v1/namespaces/default/pods/%2E%2E HTTP/1.1",
        "GET /api/v1/namespaces/default/pods/..%2F..%2Fnamespaces%2Fkube-system HTTP/1.1",
        "GET /api/v1/namespaces/../pods/x HTTP/1.1",
        "GET /api/v1/namespaces/%2E%2E/pods HTTP/1.1",
        "DELETE /api/v1/namespaces/kube-system%2F.. HTTP/1.1",
        "GET /api/v1/namespaces/default/pods/%zz HTTP/1.1",
        "GET /api/v1/namespaces/default/pods/a%25b HTTP/1.1",
    ] {
        let answer = send(address, request, b"").await;
        assert_status(&answer, 400, "BadRequest", request);
    }
    let answer = send(address, "GET /api/v1/namespaces/kube-system HTTP/1.1", b"").await;
    assert_eq!(answer.0, 200, "kube-system is untouched");
    let body = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"../escape"},"spec":{"containers":[]}}"#;
    let answer = send(
        address,
        &post(
            "/api/v1/namespaces/default/pods",
            "application/json",
            body.len(),
        ),
        body,
    )
    .await;
    assert_status(&answer, 422, "Invalid", "a name with a slash in the body");
    cluster.stop().await;
}
