//! korc installed by its chart in namespaced mode: Roles in the watched namespace
//! instead of a ClusterRole, a cluster there provisioned and healthy with the
//! restricted pod profile, TLS and its NetworkPolicy, a cluster elsewhere left alone.

mod common;

use common::korc::{replica_field, repo, root_conn, sample, wait_settled};
use common::{namespace, shared};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use korc::api::MySQLCluster;
use kube::api::{Api, ListParams, PostParams};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_namespaced_install_runs_clusters_in_its_namespaces_only() {
    let cp = shared().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "team-a").await;
    namespace(&client, "team-b").await;
    korc_e2e::helm::install(
        cp,
        "korc",
        &repo().join("charts/korc"),
        "korc-system",
        &[
            "image.repository=korc",
            "image.tag=dev",
            "sourceAddress=pod-ip",
            "watchNamespaces={team-a}",
        ],
    )
    .expect("helm install of charts/korc in namespaced mode");

    // Roles where korc works; the only ClusterRole is the one reading nodes.
    let release = ListParams::default().labels("app.kubernetes.io/instance=korc");
    let cluster_roles: Vec<String> = Api::<ClusterRole>::all(client.clone())
        .list(&release)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.metadata.name.unwrap_or_default())
        .collect();
    assert_eq!(cluster_roles, ["korc-nodes"]);
    let nodes_only = Api::<ClusterRole>::all(client.clone())
        .get("korc-nodes")
        .await
        .unwrap();
    let rules = nodes_only.rules.unwrap_or_default();
    assert!(
        rules.len() == 1 && rules[0].resources.as_deref() == Some(&["nodes".to_string()][..]),
        "{rules:?}"
    );
    assert!(
        Api::<Role>::namespaced(client.clone(), "team-a")
            .get_opt("korc")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Api::<Role>::namespaced(client.clone(), "team-b")
            .get_opt("korc")
            .await
            .unwrap()
            .is_none()
    );

    let watched = Api::<MySQLCluster>::namespaced(client.clone(), "team-a");
    let unwatched = Api::<MySQLCluster>::namespaced(client.clone(), "team-b");
    watched
        .create(&PostParams::default(), &sample("db", 3))
        .await
        .unwrap();
    unwatched
        .create(&PostParams::default(), &sample("db", 3))
        .await
        .unwrap();
    let settled = wait_settled(&watched, "db", "3/3", "NoProblem", 180).await;

    // TLS, as in every mode: the cluster's certificate issued into the watched
    // namespace, and its replicas streaming over TLS.
    for secret in ["db-ca", "db-tls"] {
        assert!(
            Api::<Secret>::namespaced(client.clone(), "team-a")
                .get_opt(secret)
                .await
                .unwrap()
                .is_some(),
            "{secret}"
        );
    }
    let primary = settled["primary"].as_str().unwrap();
    for pod in ["db-0", "db-1", "db-2"]
        .into_iter()
        .filter(|p| *p != primary)
    {
        let mut conn = root_conn(&client, "team-a", "db", pod).await;
        assert_eq!(replica_field(&mut conn, "Master_SSL_Allowed").await, "Yes");
        assert_eq!(replica_field(&mut conn, "Slave_IO_Running").await, "Yes");
    }

    // The restricted profile and the NetworkPolicy, as in every mode.
    let pod = Api::<Pod>::namespaced(client.clone(), "team-a")
        .get("db-0")
        .await
        .unwrap();
    let spec = pod.spec.unwrap();
    let security = spec.security_context.unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert_eq!(spec.automount_service_account_token, Some(false));
    let container = spec.containers[0].security_context.clone().unwrap();
    assert_eq!(container.allow_privilege_escalation, Some(false));
    assert!(
        Api::<NetworkPolicy>::namespaced(client.clone(), "team-a")
            .get_opt("db")
            .await
            .unwrap()
            .is_some()
    );

    // The other namespace's cluster is not korc's business here.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let other = unwatched.get("db").await.unwrap();
    assert!(other.status.is_none(), "{:?}", other.status);
    assert!(
        Api::<StatefulSet>::namespaced(client.clone(), "team-b")
            .get_opt("db")
            .await
            .unwrap()
            .is_none()
    );
}
