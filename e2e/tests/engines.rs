//! What netfence renders for a ClusterBaseline, applied to the API server with each engine's
//! published CustomResourceDefinitions installed (from the engines' pinned Go modules, see
//! `e2e/upstream/engines/`): every object must be accepted as it is. The ClusterBaseline CRD's own
//! rules are exercised too. Runs on the sandbox and on the real control plane. (The scenario of
//! the controller that writes these objects is `baseline.rs`.)
//!
//! ```text
//! examples/baselines/*.yaml --netfence render --engine E--> objects --server-side apply--> accepted (or the test fails with the server's message)
//! ```

use std::path::Path;

use kube::{
    Api,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use netfence::{cli::render::baselines, manifests};
use netfence_crd::baseline::Engine;
use netfence_e2e::{Cluster, install_engine_crds, skip};
use serde_json::{Value, json};

const FIELD_MANAGER: &str = "netfence-e2e-engines";

fn api_for(cluster: &Cluster, object: &Value) -> (Api<DynamicObject>, String) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(cluster.client(), namespace, &resource),
        None => Api::all_with(cluster.client(), &resource),
    };
    (api, name)
}

/// Apply `object` and return the API server's refusal, if any.
async fn apply(cluster: &Cluster, object: &Value) -> Result<(), String> {
    let (api, name) = api_for(cluster, object);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
    .map_err(|error| error.to_string())
}

async fn remove(cluster: &Cluster, object: &Value) {
    let (api, name) = api_for(cluster, object);
    let _ = api.delete(&name, &DeleteParams::default()).await;
}

fn example_files() -> Vec<std::path::PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/baselines");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .expect("examples/baselines")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files
}

/// If this fails, a platform team applying what netfence renders (or `netfence run`, once it
/// writes baselines) would get the engine's objects refused by the engine's own schema: the
/// cluster-wide deny would never exist. The message names the object and the server's reason.
#[tokio::test]
async fn every_rendered_baseline_object_is_accepted_by_the_engines_published_crds() {
    let cluster = Cluster::start().await.expect("cluster");
    install_engine_crds(&cluster.client())
        .await
        .expect("the engines' CRDs from their pinned Go modules");
    skip(
        "calico_crds",
        "Calico's projectcalico.org/v3 kinds are served by the Calico API server, not CRDs, and the module with their definitions (github.com/projectcalico/api) is refused by the Go module proxy for every version; Calico's rendering is checked by its snapshots and by netfence verify",
    );
    let mut refused = Vec::new();
    let mut applied = 0;
    let mut to_remove = Vec::new();
    for file in example_files() {
        let documents = manifests::load(std::slice::from_ref(&file)).expect("example loads");
        for engine in [
            Engine::ClusterNetworkPolicy,
            Engine::Cilium,
            Engine::NetworkPolicy,
        ] {
            // An engine that cannot express a field renders nothing (the render tests cover it).
            let Ok(objects) =
                baselines(&documents, Some(engine), "netfence-system", &mut Vec::new())
            else {
                continue;
            };
            for object in objects {
                let mut object = serde_json::to_value(&object).expect("serializes");
                if let Some(namespace) = object["metadata"]["namespace"].as_str() {
                    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
                    apply(&cluster, &namespace).await.expect("namespace");
                    to_remove.push(namespace);
                }
                // Not owned by a real ClusterBaseline here.
                object["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("ownerReferences");
                match apply(&cluster, &object).await {
                    Ok(()) => applied += 1,
                    Err(error) => refused.push(format!(
                        "{} {engine:?}: {} {}: {error}",
                        file.display(),
                        object["kind"],
                        object["metadata"]["name"]
                    )),
                }
                to_remove.push(object);
            }
        }
    }
    // The control: the published schemas are in force, so acceptance means something.
    let out_of_range = json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "netfence-e2e-out-of-range"},
        "spec": {"tier": "Middle", "priority": 5000, "subject": {"namespaces": {}}}
    });
    let control = apply(&cluster, &out_of_range).await;
    for object in to_remove.iter().rev() {
        remove(&cluster, object).await;
    }
    cluster.stop().await;
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
    assert!(applied >= 12, "only {applied} objects were applied");
    let control =
        control.expect_err("a ClusterNetworkPolicy with tier Middle and priority 5000 is refused");
    assert!(
        control.contains("tier") || control.contains("priority"),
        "{control}"
    );
    eprintln!("{applied} rendered objects accepted by the engines' published CRDs");
}

/// If this fails, `kubectl apply` would admit a ClusterBaseline that netfence refuses later (or
/// refuse a valid one): the CRD's CEL rules and schema must agree with `netfence render`.
#[tokio::test]
async fn the_clusterbaseline_crd_admits_the_examples_and_refuses_what_render_refuses() {
    let cluster = Cluster::start().await.expect("cluster");
    // The harness installs netfence's CRDs, the ClusterBaseline one among them.
    let mut names = Vec::new();
    for file in example_files() {
        let text = std::fs::read_to_string(&file).expect("example");
        for document in text.split("\n---\n") {
            let Ok(object) = serde_saphyr::from_str::<Value>(document) else {
                continue;
            };
            if object["kind"] != "ClusterBaseline" {
                continue;
            }
            apply(&cluster, &object)
                .await
                .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            names.push(object);
        }
    }
    let bad = json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "ClusterBaseline",
        "metadata": {"name": "netfence-e2e-bad-baseline"},
        "spec": {
            "namespaceSelector": {},
            "isolate": ["Ingress"],
            "allow": [{"name": "x", "direction": "Egress", "namespace": "a", "action": "Deny"}],
            "guardrails": [{"name": "y", "direction": "Egress", "ipBlock": {"cidr": "10.0.0.0/8"}}]
        }
    });
    let refused = apply(&cluster, &bad).await;
    for object in names.iter().rev() {
        remove(&cluster, object).await;
    }
    remove(&cluster, &bad).await;
    cluster.stop().await;
    assert!(names.len() >= 4, "{} example baselines", names.len());
    let refused = refused.expect_err("the bad baseline is refused at admission");
    for message in [
        "an allow's direction must be listed in spec.isolate",
        "action is for guardrails only",
        "every guardrail needs an action",
    ] {
        assert!(refused.contains(message), "{message:?} not in {refused}");
    }
}
