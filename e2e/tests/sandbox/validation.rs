//! Admission of NamespaceIsolations: the CRD's OpenAPI schema and CEL rules, with field paths.

use kube::api::{Patch, PatchParams, PostParams};
use netfence_e2e::Cluster;
use serde_json::{Value, json};

use super::common::{assert_status, isolation, isolations, object, send, status};

/// Create `spec` and return the 422 causes as `field: message`.
async fn rejected(
    cluster: &Cluster,
    namespace: &str,
    spec: Value,
) -> (String, Vec<(String, String)>) {
    let api = isolations(&cluster.client(), namespace);
    let mut body = isolation("bad");
    body["spec"] = spec;
    let error = api
        .create(&PostParams::default(), &object(body))
        .await
        .expect_err("refused");
    let status = status(error);
    assert_eq!(status.code, 422, "{}", status.message);
    assert_eq!(status.reason, "Invalid");
    let causes = status
        .details
        .map(|details| details.causes)
        .unwrap_or_default()
        .into_iter()
        .map(|cause| (cause.field, cause.message))
        .collect();
    (status.message, causes)
}

/// A NamespaceIsolation that breaks the schema or a CEL rule is refused with 422, and the
/// message names the field path and says what is wrong (the undeclared tier of a flow; a tier
/// name, shared-service namespace, selector operator or CIDR that netfence would refuse later
/// as InvalidSpec), word for word as Kubernetes 1.37 says it (a failed rule on an object shows no value; an OpenAPI error that blocks the CEL rules
/// adds a `<nil>` cause saying they were not checked). If this fails, `kubectl apply` of a
/// broken spec succeeds and the mistake only shows later (or never) in the controller, or the
/// sandbox words it differently from a cluster.
#[tokio::test]
async fn a_bad_namespace_isolation_is_refused_with_the_field_path() {
    const NOT_CHECKED: &str = "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("invalid").await.expect("namespace");
    let ns = namespace.name.as_str();
    let tiers = json!([{"name": "web", "podSelector": {}}]);
    let refusals = [
        (
            json!({"tiers": tiers, "flows": [{"from": "web", "to": "db"}]}),
            vec![
                "spec.flows: Invalid value: every flow's from and to must name a tier declared in spec.tiers; \"db\" is not declared",
            ],
        ),
        (
            json!({"tiers": [{"name": "Worker", "podSelector": {"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}}],
                   "sharedServices": [{"name": "mon", "direction": "Ingress", "namespace": "Monitoring"}]}),
            vec![
                "spec.sharedServices[0].namespace: Invalid value: \"Monitoring\": spec.sharedServices[0].namespace in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
                "spec.tiers[0].name: Invalid value: \"Worker\": spec.tiers[0].name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
                "spec.tiers[0].podSelector.matchExpressions[0].operator: Unsupported value: \"in\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
                NOT_CHECKED,
            ],
        ),
        (
            json!({"sharedServices": [{"name": "x", "direction": "Egress", "ipBlock": {"cidr": "10.0.0.0/33", "except": ["nope"]}}]}),
            vec![
                "spec.sharedServices[0].ipBlock.cidr: Invalid value: cidr must be an IP range in CIDR notation, such as 203.0.113.0/24 or 2001:db8::/32",
                "spec.sharedServices[0].ipBlock.except: Invalid value: every except must be an IP range in CIDR notation, such as 203.0.113.128/25",
            ],
        ),
        (
            json!({"mode": "Audit"}),
            vec![
                "spec.mode: Unsupported value: \"Audit\": supported values: \"Enforce\", \"DryRun\"",
                NOT_CHECKED,
            ],
        ),
        (
            json!({"sharedServices": [{"name": "x", "direction": "Ingress", "namespace": "a", "ipBlock": {"cidr": "10.0.0.0/8"}}]}),
            vec![
                "spec.sharedServices[0]: Invalid value: a shared service names exactly one peer: namespace, namespaceSelector or ipBlock",
            ],
        ),
        (
            json!({"tiers": tiers, "flows": [{"from": "web", "to": "web", "ports": [{"port": 70000}]}]}),
            vec![
                "spec.flows[0].ports[0].port: Invalid value: port must be a number from 1 to 65535 or a port name (lowercase letters, digits and '-', at most 15 characters)",
            ],
        ),
        (
            json!({"tiers": [{"podSelector": {}}]}),
            vec!["spec.tiers[0].name: Required value", NOT_CHECKED],
        ),
        (
            json!({"isolate": "Ingress"}),
            vec![
                "spec.isolate: Invalid value: \"string\": spec.isolate in body must be of type array: \"string\"",
                NOT_CHECKED,
            ],
        ),
    ];
    for (spec, expected) in refusals {
        let (message, causes) = rejected(&cluster, ns, spec.clone()).await;
        let causes: Vec<String> = causes
            .iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect();
        // kube-apiserver lists the schema's errors in no fixed order (its validator walks Go
        // maps); the trailing "not checked" cause stays last. Compared as sets.
        let sorted = |list: &[String]| {
            let mut list = list.to_vec();
            list.sort();
            list
        };
        let expected: Vec<String> = expected.iter().map(|cause| (*cause).to_owned()).collect();
        assert_eq!(sorted(&causes), sorted(&expected), "{spec}");
        let prefix = "NamespaceIsolation.netfence.io \"bad\" is invalid: ";
        assert!(message.starts_with(prefix), "{spec}: {message}");
        if let [only] = expected.as_slice() {
            assert_eq!(message, format!("{prefix}{only}"), "{spec}");
        } else {
            let listed = message[prefix.len()..]
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .unwrap_or_else(|| panic!("{spec}: not a list: {message}"));
            assert_eq!(listed.len(), expected.join(", ").len(), "{spec}: {message}");
            for cause in &expected {
                assert!(
                    listed.contains(cause.as_str()),
                    "{spec}: {message} lacks {cause}"
                );
            }
        }
    }

    let named_port = json!({"tiers": tiers, "flows": [{"from": "web", "to": "web", "ports": [{"port": "metrics"}]}]});
    let api = isolations(&cluster.client(), ns);
    let mut body = isolation("good");
    body["spec"] = named_port;
    api.create(&PostParams::default(), &object(body))
        .await
        .expect("a named port is valid");
    namespace.cleanup().await;
    cluster.stop().await;
}

/// The schema's defaults are stored, and unknown fields are pruned; a create with
/// `fieldValidation=Strict` refuses them with 400, and a server-side apply (what
/// `kubectl apply --server-side` sends) fails on them whatever the validation, with a 500 that
/// names the field, as upstream. If this fails, a misspelt field in a manifest is silently
/// ignored, or the stored spec differs from what `kubectl get -o yaml` shows.
#[tokio::test]
async fn defaults_are_stored_and_unknown_fields_pruned_or_refused() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("defaults").await.expect("namespace");
    let api = isolations(&cluster.client(), &namespace.name);
    let mut body = isolation("shop");
    body["spec"]["colour"] = json!("blue");
    let created = api
        .create(&PostParams::default(), &object(body.clone()))
        .await
        .expect("create");
    assert_eq!(created.data["spec"]["mode"], json!("Enforce"));
    assert_eq!(
        created.data["spec"]["isolate"],
        json!(["Ingress", "Egress"])
    );
    assert_eq!(
        created.data["spec"]["dns"]["namespace"],
        json!("kube-system")
    );
    assert_eq!(
        created.data["spec"]["flows"][0]["ports"][0]["protocol"],
        json!("TCP")
    );
    assert!(
        created.data["spec"].get("colour").is_none(),
        "unknown fields are pruned"
    );

    body["metadata"]["name"] = json!("strict");
    // kube's PostParams has no fieldValidation: the create kubectl sends, raw.
    let text = body.to_string();
    let head = format!(
        "POST /apis/netfence.io/v1alpha1/namespaces/{}/namespaceisolations?fieldValidation=Strict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
        namespace.name,
        text.len()
    );
    let answer = send(&cluster.raw(), &head, text.as_bytes()).await;
    assert_status(&answer, 400, "BadRequest", "a strict create");
    assert_eq!(
        answer.1["message"],
        "NamespaceIsolation in version \"v1alpha1\" cannot be handled as a NamespaceIsolation: strict decoding error: unknown field \"spec.colour\""
    );

    // A misspelt field left empty (`port:` for `ports`) is unknown all the same.
    let mut empty = isolation("empty");
    empty["spec"]["flows"][0]["port"] = Value::Null;
    let text = empty.to_string();
    let head = format!(
        "POST /apis/netfence.io/v1alpha1/namespaces/{}/namespaceisolations?fieldValidation=Strict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
        namespace.name,
        text.len()
    );
    let answer = send(&cluster.raw(), &head, text.as_bytes()).await;
    assert_status(
        &answer,
        400,
        "BadRequest",
        "a strict create of an empty unknown field",
    );
    assert_eq!(
        answer.1["message"],
        "NamespaceIsolation in version \"v1alpha1\" cannot be handled as a NamespaceIsolation: strict decoding error: unknown field \"spec.flows[0].port\""
    );

    for params in [
        PatchParams::apply("kubectl").validation_strict(),
        PatchParams::apply("kubectl").validation_ignore(),
    ] {
        let error = api
            .patch("strict", &params, &Patch::Apply(&body))
            .await
            .expect_err("an apply with an unknown field");
        let refused = status(error);
        assert_eq!(refused.code, 500, "{}", refused.message);
        assert_eq!(
            refused.message,
            "failed to create typed patch object (/strict; netfence.io/v1alpha1, Kind=NamespaceIsolation): .spec.colour: field not declared in schema"
        );
    }
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A built-in kind's misspelt fields are handled as upstream's decoding does: a create with
/// `fieldValidation=Strict` (what kubectl sends) is refused with 400 naming each, the default
/// (`Warn`) stores the object without them and says so in `Warning` headers, and a server-side
/// apply fails with 500. If this fails, `kubectl apply` of a NetworkPolicy with a typo
/// (`podSelecter`) succeeds in the sandbox, and the policy a cluster would refuse is tested.
#[tokio::test]
async fn unknown_fields_of_a_built_in_kind_are_refused_or_dropped() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("typo").await.expect("namespace");
    let raw = cluster.raw();
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "typo"},
        "spec": {"podSelector": {}, "podSelecter": {}, "ingress": [{"ports": [{"port": 80, "size": 1}]}]},
    });
    let body = policy.to_string();
    let post = |query: &str| {
        format!(
            "POST /apis/networking.k8s.io/v1/namespaces/{}/networkpolicies?{query} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
            namespace.name,
            body.len()
        )
    };
    let answer = send(&raw, &post("fieldValidation=Strict"), body.as_bytes()).await;
    assert_status(&answer, 400, "BadRequest", "a strict create");
    let message = answer.1["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.starts_with(
            "NetworkPolicy in version \"v1\" cannot be handled as a NetworkPolicy: strict decoding error: "
        ),
        "{message}"
    );
    for field in [
        "unknown field \"spec.podSelecter\"",
        "unknown field \"spec.ingress[0].ports[0].size\"",
    ] {
        assert!(message.contains(field), "{field}: {message}");
    }

    let created = raw
        .send(&post("fieldValidation=Warn"), body.as_bytes())
        .await
        .expect("an answer");
    assert_eq!(created.code, 201, "{}", created.text);
    let warnings: Vec<&str> = created
        .headers
        .iter()
        .filter(|(name, _)| name == "warning")
        .map(|(_, value)| value.as_str())
        .collect();
    assert!(
        warnings.contains(&"299 - \"unknown field \\\"spec.podSelecter\\\"\""),
        "{warnings:?}"
    );
    assert_eq!(
        created.body["spec"],
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}], "policyTypes": ["Ingress"]}),
        "stored without the unknown fields"
    );

    let policies: kube::Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        kube::Api::namespaced(cluster.client(), &namespace.name);
    let error = policies
        .patch(
            "typo",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&policy),
        )
        .await
        .expect_err("an apply with unknown fields");
    let refused = status(error);
    assert_eq!(refused.code, 500, "{}", refused.message);
    assert!(
        refused.message.starts_with(
            "failed to create typed patch object (/typo; networking.k8s.io/v1, Kind=NetworkPolicy): "
        ),
        "{}",
        refused.message
    );
    assert!(
        refused
            .message
            .contains(".spec.podSelecter: field not declared in schema"),
        "{}",
        refused.message
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A raw request to the API server under test: `METHOD PATH` with a JSON (or `media`) body.
async fn request(
    cluster: &Cluster,
    method: &str,
    path: &str,
    media: &str,
    body: &Value,
) -> (u16, Value) {
    let body = body.to_string();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nContent-Type: {media}\r\nContent-Length: {}",
        body.len()
    );
    send(&cluster.raw(), &head, body.as_bytes()).await
}

fn message_of(answer: &(u16, Value)) -> &str {
    answer.1["message"].as_str().unwrap_or_default()
}

/// A 422's causes, each as `field: message`.
fn causes_of(answer: &(u16, Value)) -> Vec<String> {
    answer.1["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|cause| {
            format!(
                "{}: {}",
                cause["field"].as_str().unwrap_or_default(),
                cause["message"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// A create with a field of the wrong type in a built-in kind (`spec.podSelector: 5`) or in
/// any object's metadata (`finalizers: [1]`, custom resources too) is refused as upstream's
/// decoding refuses it: 400, naming the kind and the field. If this fails, the sandbox stores objects no real server holds, and a client that reads them back
/// into typed objects (netfence, kubectl) fails where a cluster never would.
#[tokio::test]
async fn fields_of_the_wrong_type_are_refused_as_upstream_decodes_them() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("types").await.expect("namespace");
    let policies = format!(
        "/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies",
        namespace.name
    );
    let isolations = format!(
        "/apis/netfence.io/v1alpha1/namespaces/{}/namespaceisolations",
        namespace.name
    );
    let policy = |metadata: Value, spec: Value| json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata, "spec": spec});
    let cases = [
        (
            &policies,
            policy(json!({"name": "p"}), json!({"podSelector": 5})),
            "NetworkPolicy in version \"v1\" cannot be handled as a NetworkPolicy: ",
            "spec.podSelector",
        ),
        (
            &policies,
            policy(
                json!({"name": "p", "finalizers": [1]}),
                json!({"podSelector": {}}),
            ),
            "NetworkPolicy in version \"v1\" cannot be handled as a NetworkPolicy: ",
            "finalizers",
        ),
        (
            &isolations,
            json!({"apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation", "metadata": {"name": "i", "finalizers": [1]}, "spec": {}}),
            "NamespaceIsolation in version \"v1alpha1\" cannot be handled as a NamespaceIsolation: ",
            "finalizers",
        ),
    ];
    for (collection, body, prefix, field) in cases {
        let answer = request(&cluster, "POST", collection, "application/json", &body).await;
        assert_status(&answer, 400, "BadRequest", field);
        assert!(message_of(&answer).starts_with(prefix), "{}", answer.1);
        assert!(message_of(&answer).contains(field), "{}", answer.1);
    }

    namespace.cleanup().await;
    cluster.stop().await;
}

/// An update, a patch or an apply that would give a field the wrong type is refused as
/// upstream refuses it: 400 for an update, 422 for a patch (the patched object quoted), 500
/// for an apply, each naming the field, and the object stays as it was. If this fails, a
/// patch stores in the sandbox what no cluster would hold.
#[tokio::test]
async fn writes_that_give_a_field_the_wrong_type_are_refused() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("retype").await.expect("namespace");
    let policies = format!(
        "/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies",
        namespace.name
    );
    let policy = |metadata: Value, spec: Value| json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata, "spec": spec});
    let good = policy(json!({"name": "p"}), json!({"podSelector": {}}));
    let created = request(&cluster, "POST", &policies, "application/json", &good).await;
    assert_eq!(created.0, 201, "{}", created.1);
    let object = format!("{policies}/p");
    let mut replaced = created.1.clone();
    replaced["spec"]["podSelector"] = json!(5);
    let answer = request(&cluster, "PUT", &object, "application/json", &replaced).await;
    assert_status(&answer, 400, "BadRequest", "an update");
    assert!(
        message_of(&answer).contains("spec.podSelector"),
        "{}",
        answer.1
    );
    let answer = request(
        &cluster,
        "PATCH",
        &object,
        "application/merge-patch+json",
        &json!({"spec": {"podSelector": 5}}),
    )
    .await;
    assert_status(&answer, 422, "Invalid", "a merge patch");
    assert!(
        message_of(&answer).starts_with(" \"\" is invalid: patch: Invalid value: "),
        "{}",
        answer.1
    );
    assert!(
        message_of(&answer).contains("spec.podSelector"),
        "{}",
        answer.1
    );
    let answer = request(
        &cluster,
        "PATCH",
        &object,
        "application/json-patch+json",
        &json!([{"op": "add", "path": "/metadata/finalizers", "value": [1]}]),
    )
    .await;
    assert_status(&answer, 422, "Invalid", "a JSON patch");
    assert!(message_of(&answer).contains("finalizers"), "{}", answer.1);
    let answer = request(
        &cluster,
        "PATCH",
        &format!("{object}?fieldManager=e2e"),
        "application/apply-patch+yaml",
        &policy(
            json!({"name": "p", "finalizers": [1]}),
            json!({"podSelector": {}}),
        ),
    )
    .await;
    assert_eq!(answer.0, 500, "{}", answer.1);
    assert!(
        message_of(&answer).starts_with(
            "failed to create typed patch object (/p; networking.k8s.io/v1, Kind=NetworkPolicy): .metadata.finalizers["
        ),
        "{}",
        answer.1
    );
    let stored = send(&cluster.raw(), &format!("GET {object} HTTP/1.1"), b"").await;
    assert_eq!(stored.1["spec"]["podSelector"], json!({}), "unchanged");
    assert_eq!(stored.1["metadata"].get("finalizers"), None, "unchanged");
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Owner references are validated as upstream's `ValidateOwnerReferences` does: each names its
/// owner whole (422 naming the missing apiVersion, kind, name and uid), and at most one is the
/// controller, word for word. If this fails, the garbage collector and every controller that
/// follows controller references (netfence's ownership check among them) meet references a
/// real cluster never holds.
#[tokio::test]
async fn owner_references_are_validated_as_upstream() {
    const NOT_CHECKED: &str = "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("owners").await.expect("namespace");
    let policies = format!(
        "/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies",
        namespace.name
    );
    let isolations = format!(
        "/apis/netfence.io/v1alpha1/namespaces/{}/namespaceisolations",
        namespace.name
    );
    let missing: Vec<String> = ["apiVersion", "kind", "name", "uid"]
        .iter()
        .map(|field| {
            format!("metadata.ownerReferences[0].{field}: Required value: must not be empty")
        })
        .collect();
    let empty = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "ownerReferences": [{}]}, "spec": {"podSelector": {}}});
    let answer = request(&cluster, "POST", &policies, "application/json", &empty).await;
    assert_status(&answer, 422, "Invalid", "an empty owner reference");
    assert_eq!(causes_of(&answer), missing);
    assert_eq!(
        message_of(&answer),
        format!(
            "NetworkPolicy.networking.k8s.io \"p\" is invalid: [{}]",
            missing.join(", ")
        )
    );
    let empty = json!({"apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation", "metadata": {"name": "i", "ownerReferences": [{}]}, "spec": {}});
    let answer = request(&cluster, "POST", &isolations, "application/json", &empty).await;
    assert_status(
        &answer,
        422,
        "Invalid",
        "an empty owner reference of a custom resource",
    );
    let mut expected = missing.clone();
    expected.push(NOT_CHECKED.to_owned());
    assert_eq!(
        causes_of(&answer),
        expected,
        "missing fields block the CEL rules"
    );

    let two = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "u1", "controller": true, "blockOwnerDeletion": true},
        {"apiVersion": "v1", "kind": "Secret", "name": "b", "uid": "u2", "controller": true},
    ]}, "spec": {"podSelector": {}}});
    let answer = request(&cluster, "POST", &policies, "application/json", &two).await;
    assert_status(&answer, 422, "Invalid", "two controllers");
    let only_one = "metadata.ownerReferences: Invalid value: [{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"a\",\"uid\":\"u1\",\"controller\":true,\"blockOwnerDeletion\":true},{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"name\":\"b\",\"uid\":\"u2\",\"controller\":true}]: Only one reference can have Controller set to true. Found \"true\" in references for ConfigMap/a and Secret/b";
    assert_eq!(causes_of(&answer), [only_one]);
    assert_eq!(
        message_of(&answer),
        format!("NetworkPolicy.networking.k8s.io \"p\" is invalid: {only_one}")
    );
    let listed = send(&cluster.raw(), &format!("GET {policies} HTTP/1.1"), b"").await;
    assert_eq!(listed.1["items"], json!([]), "nothing was stored");
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Label keys and values are validated as upstream's `ValidateLabels` does: one cause for each
/// fault, word for word, and a `labelSelector` with a key that is no label key is refused with
/// 400. If this fails, the sandbox stores labels a real server refuses (it once took `a/b/c`),
/// and a selector or label that works in the sandbox fails on a cluster.
#[tokio::test]
async fn labels_are_validated_as_upstream() {
    const NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("labels").await.expect("namespace");
    let policies = format!(
        "/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies",
        namespace.name
    );
    let long = "a".repeat(64);
    let cases = [
        (
            json!({"a/b/c": "v"}),
            vec![format!(
                "metadata.labels: Invalid value: \"a/b/c\": a valid label key {NAME_RULE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )],
        ),
        (
            json!({"-a": "v"}),
            vec![format!(
                "metadata.labels: Invalid value: \"-a\": name part {NAME_RULE}"
            )],
        ),
        (
            json!({"x/": "v"}),
            vec![
                "metadata.labels: Invalid value: \"x/\": name part must be non-empty".to_owned(),
                format!("metadata.labels: Invalid value: \"x/\": name part {NAME_RULE}"),
            ],
        ),
        (
            json!({"/x": "v"}),
            vec!["metadata.labels: Invalid value: \"/x\": prefix part must be non-empty".to_owned()],
        ),
        (
            json!({"Bad.IO/x": "v"}),
            vec!["metadata.labels: Invalid value: \"Bad.IO/x\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_owned()],
        ),
        (
            json!({(long.clone()): "v"}),
            vec![format!(
                "metadata.labels: Invalid value: \"{long}\": name part must be no more than 63 bytes"
            )],
        ),
        (
            json!({(format!("{}/x", "b".repeat(254))): "v"}),
            vec![format!(
                "metadata.labels: Invalid value: \"{}/x\": prefix part must be no more than 253 bytes",
                "b".repeat(254)
            )],
        ),
        (
            json!({"app": "-web"}),
            vec![format!(
                "metadata.labels: Invalid value: \"-web\": {VALUE_RULE}"
            )],
        ),
        (
            json!({"app": long.clone()}),
            vec![format!(
                "metadata.labels: Invalid value: \"{long}\": must be no more than 63 bytes"
            )],
        ),
    ];
    for (labels, expected) in cases {
        let body = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "m", "labels": labels}, "spec": {"podSelector": {}}});
        let answer = request(&cluster, "POST", &policies, "application/json", &body).await;
        assert_status(&answer, 422, "Invalid", &labels.to_string());
        assert_eq!(causes_of(&answer), expected, "{labels}");
    }
    let good = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "m", "labels": {"example.com/team": "", "app": "web"}}, "spec": {"podSelector": {}}});
    let answer = request(&cluster, "POST", &policies, "application/json", &good).await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    for selector in ["a/b/c", "-a=b", "a=-b", "a%20in%20(-b)"] {
        let head = format!("GET {policies}?labelSelector={selector} HTTP/1.1");
        let answer = send(&cluster.raw(), &head, b"").await;
        assert_status(&answer, 400, "BadRequest", selector);
    }
    let head = format!("GET {policies}?labelSelector=example.com/team,app%20in%20(web) HTTP/1.1");
    let listed = send(&cluster.raw(), &head, b"").await;
    assert_eq!(
        listed.1["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.1
    );
    namespace.cleanup().await;
    cluster.stop().await;
}
