//! The primary's node is lost (`e2e.korc.dev/fault=lose`: its processes die and it
//! stops heartbeating) under a writer: korc fails over without losing an acknowledged
//! row, and when the node returns the old primary rejoins as a replica. In its own test
//! binary (its own control plane), because losing a node disturbs every other test.

mod common;

use common::korc::*;
use common::workload::{
    WritableWatcher, Writer, assert_everywhere, assert_has_rows, create_app_schema, wait_failover,
};
use common::{namespace, wait_for};
use korc::api::MySQLCluster;
use korc_e2e::Fault;
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};

const PODS: [&str; 3] = ["db-0", "db-1", "db-2"];

#[tokio::test(flavor = "multi_thread")]
async fn losing_the_primarys_node_fails_over_without_losing_a_write() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "node").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "node");
    let mut cluster = sample("db", 3);
    cluster.spec.semi_sync = Some(korc::api::SemiSyncSpec {
        enabled: true,
        timeout_ms: None,
    });
    api.create(&PostParams::default(), &cluster).await.unwrap();
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 120).await;

    // The primary must not share its node with the leading operator: that is the
    // leadership test's case. Move it if it does.
    let leader_node = node_of(&client, "korc-system", &leader_pod(&client).await).await;
    let mut primary = s["primary"].as_str().unwrap().to_string();
    if node_of(&client, "node", &primary).await == leader_node {
        let mut elsewhere = None;
        for pod in PODS {
            if node_of(&client, "node", pod).await != leader_node {
                elsewhere = Some(pod);
            }
        }
        let r = switch_over(&api, "db", "away-from-the-leader", elsewhere, 60).await;
        assert_eq!(r["outcome"], "recovered", "{r:#}");
        primary = r["successor"].as_str().unwrap().to_string();
        wait_settled(&api, "db", "3/3", "NoProblem", 60).await;
    }
    let node = node_of(&client, "node", &primary).await;

    let mut root = root_conn(&client, "node", "db", &primary).await;
    create_app_schema(&mut root).await;
    let watcher = WritableWatcher::start(client.clone(), "node", "db", &PODS);
    let writer = Writer::start(client.clone(), "node", "db");
    wait_for("the writer's first rows", 20, || async {
        (writer.count() >= 20).then_some(())
    })
    .await;

    cp.inject(&Fault::LoseNode(node.clone())).await.unwrap();
    let f = wait_failover(&client, &api, "node", &primary, Instant::now(), &writer, 30).await;
    let new_primary = f.primary;
    println!(
        "{primary}'s node lost → -primary on {new_primary} after {:?}, first insert there after {:?}",
        f.endpoint_moved, f.first_insert
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acknowledged = writer.stop().await;
    assert_has_rows(&client, "node", "db", &new_primary, &acknowledged).await;
    let s = status(&api, "db").await;
    let r = s["recoveries"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|r| r["kind"] == "DeadMaster")
        .cloned()
        .unwrap_or_else(|| panic!("no DeadMaster recovery: {s:#}"));
    assert_eq!(r["failed"], primary.as_str(), "{r:#}");
    assert_eq!(r["outcome"], "recovered", "{r:#}");

    // The node returns: its old primary restarts and rejoins under the new one.
    cp.inject(&Fault::RestoreNode(node)).await.unwrap();
    let healed = wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    assert_eq!(healed["primary"], new_primary.as_str());
    let old = healed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == primary.as_str())
        .unwrap()
        .clone();
    assert_eq!(old["source"], new_primary.as_str(), "{old:#}");
    assert_everywhere(&client, "node", "db", &PODS, &acknowledged).await;
    let violations = watcher.stop().await;
    assert!(
        violations.is_empty(),
        "two writable instances: {violations:?}"
    );
}
