//! A recovery whose leader is lost half-way ends with exactly one promotion: the new
//! leader completes it when a successor was committed, and abandons it (then recovers
//! afresh) when nothing irreversible happened, and the status says which. The leader
//! is stopped at a chosen step with a failpoint, then its node is lost. In its own test
//! binary (its own control plane), because losing nodes disturbs every other test.

mod common;

use common::korc::*;
use common::workload::WritableWatcher;
use common::{namespace, wait_for};
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, Fault};
use kube::api::{Api, PostParams};
use serde_json::Value;

const PODS: [&str; 3] = ["db-0", "db-1", "db-2"];

/// The running recovery `leader` registered (and, with `committed`, the successor it
/// committed to `status.primary`).
async fn running(api: &Api<MySQLCluster>, leader: &str, committed: bool) -> Value {
    let what = format!("a running recovery of {leader} (successor committed: {committed})");
    wait_status(api, "db", &what, 30, |s| {
        let r = s["recoveries"].as_array()?.last()?;
        (r["outcome"] == "running"
            && r["leader"] == leader
            && (!committed || (r["successor"].is_string() && s["primary"] == r["successor"])))
            .then(|| r.clone())
    })
    .await
}

async fn read_only(client: &kube::Client, pod: &str) -> String {
    let mut conn = root_conn(client, "halt", "db", pod).await;
    scalar(&mut conn, "SELECT CAST(@@global.read_only + 0 AS CHAR)").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_whose_leader_is_lost_half_way_ends_with_one_promotion() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    wait_for("both operator replicas ready", 60, || async {
        let pods = operator_pods(&client).await;
        (pods.len() == 2 && pods.iter().all(common::is_ready)).then_some(())
    })
    .await;
    namespace(&client, "halt").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "halt");
    let mut cluster = sample("db", 3);
    // Both failures below are recovered; no anti-flapping block between them.
    cluster.spec.recovery.block_period_seconds = 0;
    api.create(&PostParams::default(), &cluster).await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let watcher = WritableWatcher::start(client.clone(), "halt", "db", &PODS);

    // 1. The leader commits a successor, stalls before promoting it, and its node is
    //    lost (taking the hung primary with it): the new leader completes the recovery.
    let leader = leader_pod(&client).await;
    let leader_node = node_of(&client, "korc-system", &leader).await;
    let primary = primary_on(
        &api,
        &client,
        "halt",
        &leader_node,
        "primary-on-leader-node",
    )
    .await;
    set_failpoint(&client, &leader, "recovery-step-promote", "return").await;
    cp.inject(&Fault::Stop(ContainerRef::pod("halt", &primary)))
        .await
        .unwrap();
    let registered = running(&api, &leader, true).await;
    let successor = registered["successor"].as_str().unwrap().to_string();
    assert_eq!(
        read_only(&client, &successor).await,
        "1",
        "committed, not yet promoted"
    );
    cp.inject(&Fault::LoseNode(leader_node.clone()))
        .await
        .unwrap();
    let done = wait_status(&api, "db", "the new leader's completion", 60, |s| {
        s["recoveries"]
            .as_array()?
            .iter()
            .find(|r| r["id"] == registered["id"] && r["outcome"] != "running")
            .cloned()
    })
    .await;
    println!("completed: {done:#}");
    assert_eq!(done["outcome"], "recovered", "{done:#}");
    assert_eq!(done["successor"], successor.as_str());
    assert!(
        done["error"]
            .as_str()
            .unwrap_or("")
            .contains("completed it"),
        "{done:#}"
    );
    let s = status(&api, "db").await;
    assert_eq!(s["primary"], successor.as_str());
    assert_eq!(
        s["recoveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "DeadMaster")
            .count(),
        1,
        "{s:#}"
    );
    assert_eq!(read_only(&client, &successor).await, "0");
    cp.inject(&Fault::RestoreNode(leader_node.clone()))
        .await
        .unwrap();
    let healed = wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    assert_eq!(healed["primary"], successor.as_str());

    // 2. The new leader stalls before changing anything, and its node is lost: the
    //    next leader abandons that recovery and recovers the failure afresh, once.
    let second_leader = leader_pod(&client).await;
    assert_ne!(second_leader, leader);
    let second_node = node_of(&client, "korc-system", &second_leader).await;
    let primary = primary_on(
        &api,
        &client,
        "halt",
        &second_node,
        "primary-on-second-leader-node",
    )
    .await;
    set_failpoint(
        &client,
        &second_leader,
        "recovery-step-stopReplicaIo",
        "return",
    )
    .await;
    cp.inject(&Fault::Stop(ContainerRef::pod("halt", &primary)))
        .await
        .unwrap();
    let registered = running(&api, &second_leader, false).await;
    cp.inject(&Fault::LoseNode(second_node.clone()))
        .await
        .unwrap();
    let s = wait_status(&api, "db", "abandoned, then recovered afresh", 60, |s| {
        let rs = s["recoveries"].as_array()?;
        let at = rs.iter().position(|r| r["id"] == registered["id"])?;
        (rs[at]["outcome"] == "abandoned"
            && rs[at + 1..].iter().any(|r| r["outcome"] == "recovered"))
        .then(|| s.clone())
    })
    .await;
    let rs = s["recoveries"].as_array().unwrap();
    let at = rs.iter().position(|r| r["id"] == registered["id"]).unwrap();
    let fresh: Vec<&Value> = rs[at + 1..]
        .iter()
        .filter(|r| r["kind"] == "DeadMaster")
        .collect();
    assert_eq!(fresh.len(), 1, "{s:#}");
    assert_eq!(fresh[0]["leader"], leader.as_str(), "{s:#}");
    assert_eq!(fresh[0]["failed"], primary.as_str());
    assert!(rs[at]["successor"].is_null(), "{s:#}");
    assert_eq!(s["primary"], fresh[0]["successor"]);
    println!("abandoned: {:#}\nrecovered afresh: {:#}", rs[at], fresh[0]);
    cp.inject(&Fault::RestoreNode(second_node)).await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let violations = watcher.stop().await;
    assert!(
        violations.is_empty(),
        "two writable instances: {violations:?}"
    );
}
