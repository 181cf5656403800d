//! A leader lost while a blocking `preFailover` hook runs: the next leader adopts the
//! same Job (no second Job, no second run of the hook) and finishes the recovery
//! exactly once. In its own test binary (its own control plane), because losing a node
//! disturbs every other test.

mod common;

use common::hooks::*;
use common::korc::*;
use common::workload::WritableWatcher;
use common::{namespace, wait_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, Fault};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const PODS: [&str; 3] = ["db-0", "db-1", "db-2"];

#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_adopts_the_running_pre_failover_job_and_recovers_once() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    wait_for("both operator replicas ready", 60, || async {
        let pods = operator_pods(&client).await;
        (pods.len() == 2 && pods.iter().all(common::is_ready)).then_some(())
    })
    .await;
    let leader = leader_pod(&client).await;
    let leader_node = node_of(&client, "korc-system", &leader).await;
    // The hook's pod runs elsewhere, so that losing the leader's node spares it.
    let hook_node = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.name_any())
        .find(|n| *n != leader_node)
        .unwrap();
    let dir = out_dir("adopt");
    let out = dir.path();
    let mut gate = recorder(
        "gate",
        out,
        "pre",
        &format!("echo started >> {}/pre.starts; sleep 12", out.display()),
        120,
    );
    gate["template"]["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": hook_node});
    let cluster = with_hooks(
        "db",
        json!({
            "preFailover": [gate],
            "postMasterFailover": [recorder("dns", out, "post-master", "true", 30)],
        }),
    );
    namespace(&client, "adopt").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "adopt");
    api.create(&PostParams::default(), &cluster).await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let primary = primary_on(
        &api,
        &client,
        "adopt",
        &leader_node,
        "primary-on-leader-node",
    )
    .await;
    let watcher = WritableWatcher::start(client.clone(), "adopt", "db", &PODS);

    cp.inject(&Fault::Stop(ContainerRef::pod("adopt", &primary)))
        .await
        .unwrap();
    let registered = wait_status(
        &api,
        "db",
        "the leader waiting for its preFailover hook",
        60,
        |s| {
            let r = s["recoveries"].as_array()?.last()?;
            (r["outcome"] == "running"
                && r["leader"] == leader.as_str()
                && hook_entry(r, "preFailover")["outcome"] == "running")
                .then(|| r.clone())
        },
    )
    .await;
    cp.inject(&Fault::LoseNode(leader_node.clone()))
        .await
        .unwrap();
    let done = wait_status(
        &api,
        "db",
        "the recovery, finished by the new leader",
        90,
        |s| {
            s["recoveries"]
                .as_array()?
                .iter()
                .find(|r| r["id"] == registered["id"] && r["outcome"] != "running")
                .cloned()
        },
    )
    .await;
    println!("finished: {done:#}");
    assert_eq!(done["outcome"], "recovered", "{done:#}");
    assert_ne!(done["leader"], leader.as_str(), "{done:#}");
    assert_eq!(hook_entry(&done, "preFailover")["outcome"], "succeeded");
    let s = status(&api, "db").await;
    // Beside the switchover that put the primary on the leader's node: one failover.
    let failovers = s["recoveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] != "GracefulTakeover")
        .count();
    assert_eq!(failovers, 1, "{s:#}");
    assert_eq!(s["primary"], done["successor"]);

    // One Job for the hook, whose pod ran once; the post hook ran for the same recovery.
    let jobs = Api::<Job>::namespaced(client.clone(), "adopt")
        .list(&ListParams::default().labels("korc.dev/hook=preFailover"))
        .await
        .unwrap();
    assert_eq!(
        jobs.items.len(),
        1,
        "{:?}",
        jobs.items.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
    let starts = std::fs::read_to_string(out.join("pre.starts")).unwrap();
    assert_eq!(starts.lines().count(), 1, "the hook ran more than once");
    let post = recorded(out, "post-master", 30).await;
    assert_eq!(post["ORC_RECOVERY_UID"], registered["id"].as_str().unwrap());
    assert_eq!(
        post["ORC_SUCCESSOR_HOST"],
        done["successor"].as_str().unwrap()
    );

    cp.inject(&Fault::RestoreNode(leader_node)).await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let violations = watcher.stop().await;
    assert!(
        violations.is_empty(),
        "two writable instances: {violations:?}"
    );
}
