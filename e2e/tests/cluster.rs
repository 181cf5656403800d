//! The control plane itself: nodes, core objects, CRD validation, Leases.

mod common;

use std::collections::BTreeSet;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use common::{create, namespace, shared, wait_for};

#[tokio::test]
async fn three_ready_nodes_in_distinct_zones() {
    let cp = shared().await;
    let client = cp.client().await.expect("client");
    let nodes: Api<Node> = Api::all(client);
    let list = nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    let ready: Vec<&Node> = list
        .items
        .iter()
        .filter(|n| korc_e2e::agent::node_is_ready(n))
        .collect();
    assert!(ready.len() >= 3, "only {} Ready nodes", ready.len());
    let zones: BTreeSet<String> = ready
        .iter()
        .filter_map(|n| {
            n.metadata
                .labels
                .as_ref()?
                .get("topology.kubernetes.io/zone")
                .cloned()
        })
        .collect();
    assert_eq!(zones.len(), ready.len(), "zones: {zones:?}");
}

#[tokio::test]
async fn kubectl_sees_the_cluster() {
    let cp = shared().await;
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(["get", "nodes", "--no-headers"])
        .output()
        .expect("run kubectl (installed by e2e/prereqs)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.contains(" Ready ")).count(),
        3,
        "{text}"
    );
}

#[tokio::test]
async fn namespaces_config_maps_and_crds_with_schema_validation() {
    let cp = shared().await;
    let client = cp.client().await.expect("client");
    namespace(&client, "objects").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "objects");
    create(
        &cms,
        json!({ "metadata": { "name": "conf" }, "data": { "my.cnf": "[mariadbd]\n" } }),
    )
    .await;
    assert_eq!(
        cms.get("conf")
            .await
            .expect("get")
            .data
            .and_then(|d| d.get("my.cnf").cloned())
            .as_deref(),
        Some("[mariadbd]\n")
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    create(&crds, json!({
        "metadata": { "name": "widgets.e2e.korc.dev" },
        "spec": {
            "group": "e2e.korc.dev",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": { "size": { "type": "integer", "minimum": 1, "maximum": 5 } },
                    }},
                }},
            }],
        },
    }))
    .await;
    wait_for("CRD Established", 30, || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("widgets.e2e.korc.dev").await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
    let widgets = widgets(&client);
    let widget = |name: &str, size: i64| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "e2e.korc.dev/v1", "kind": "Widget",
            "metadata": { "name": name }, "spec": { "size": size },
        }))
        .unwrap()
    };
    // Discovery may lag the Established condition by a moment.
    wait_for("a valid Widget accepted", 30, || {
        let widgets = widgets.clone();
        let w = widget("ok", 3);
        async move { widgets.create(&PostParams::default(), &w).await.ok() }
    })
    .await;
    let err = widgets
        .create(&PostParams::default(), &widget("too-big", 99))
        .await
        .expect_err("the API server must reject size 99");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains("spec.size"),
                "message: {}",
                status.message
            );
        }
        other => panic!("unexpected error {other}"),
    }
}

fn widgets(client: &Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("e2e.korc.dev", "v1", "Widget"));
    Api::namespaced_with(client.clone(), "objects", &resource)
}

#[tokio::test]
async fn lease_updates_need_the_current_resource_version() {
    let cp = shared().await;
    let client = cp.client().await.expect("client");
    let leases: Api<Lease> = Api::namespaced(client, "default");
    let created = create(
        &leases,
        json!({
            "metadata": { "name": "korc-leader" },
            "spec": { "holderIdentity": "a", "leaseDurationSeconds": 10 },
        }),
    )
    .await;
    let mut first = created.clone();
    first.spec.get_or_insert_default().holder_identity = Some("b".to_owned());
    let updated = leases
        .replace("korc-leader", &PostParams::default(), &first)
        .await
        .expect("update with the current resourceVersion");
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );

    // `created` now carries a stale resourceVersion.
    let mut stale = created;
    stale.spec.get_or_insert_default().holder_identity = Some("c".to_owned());
    match leases
        .replace("korc-leader", &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("a stale update must be refused with 409, got {other:?}"),
    }
    let current = leases.get("korc-leader").await.expect("get");
    assert_eq!(
        current.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("b")
    );
}
