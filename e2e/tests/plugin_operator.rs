//! `kubectl korc` against the status the operator itself writes: korc installed by its
//! Helm chart on the local control plane, managing real MariaDB pods.

mod common;

use common::korc::{korc_installed, sample};
use common::kubectl_korc::Kubectl;
use common::{namespace, wait_for};
use korc::api::MySQLCluster;
use kube::api::{Api, PostParams};
use serde_json::Value;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread")]
async fn topology_and_pause_on_a_cluster_the_operator_manages() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "plugin-live").await;
    let sample = sample("db", 3);
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "plugin-live");
    api.create(&PostParams::default(), &sample).await.unwrap();
    let kubectl = Kubectl::new(cp, "plugin-live", "local").await;

    // The tree once the operator reports the cluster settled.
    let text = wait_for("db settled", 180, || async {
        let text = kubectl.ok(&["topology", "db"]).await;
        text.starts_with("plugin-live/db: primary db-0, analysis NoProblem, ready 3/3\n")
            .then_some(text)
    })
    .await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].starts_with("db-0  [primary, gtid "), "{text}");
    assert!(lines[1].ends_with(", rw, reachable]"), "{text}");
    for (line, pod) in lines[2..].iter().zip(["db-1", "db-2"]) {
        assert!(
            line.starts_with(&format!("+ {pod}  [replica, gtid ")),
            "{text}"
        );
        assert!(line.contains(", io Yes, sql Yes, ro, reachable]"), "{text}");
    }
    let json: Value =
        serde_json::from_str(&kubectl.ok(&["topology", "db", "-o", "json"]).await).unwrap();
    let replicas = json["topology"][0]["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2, "{json:#}");
    for r in replicas {
        assert_eq!(r["source"], "db-0", "{json:#}");
        assert_eq!(r["ioThread"], "Yes", "{json:#}");
    }

    // The operator sees the pause and says recovery is blocked; resume lifts it.
    kubectl.ok(&["pause", "db"]).await;
    let paused = Instant::now();
    wait_for("the operator to report the pause", 30, || async {
        let text = kubectl.ok(&["topology", "db"]).await;
        text.contains(", paused\nrecovery blocked: Paused: ")
            .then_some(())
    })
    .await;
    println!(
        "pause shown as RecoveryBlocked after {:?}",
        paused.elapsed()
    );
    kubectl.ok(&["resume", "db"]).await;
    wait_for("the operator to report the resume", 30, || async {
        let text = kubectl.ok(&["topology", "db"]).await;
        (!text.contains("recovery blocked")).then_some(())
    })
    .await;
}
