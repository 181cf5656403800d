//! Self-healing data on the local control plane, korc installed by its chart: a MySQL
//! cluster whose primary purged its binary logs scales up (the new instance is
//! cloned from a replica), a replica is rebuilt on `korc.dev/rebuild`, and a replica
//! whose volume was lost comes back by a copy — all while an application writes
//! through the primary, losing no acknowledged row.

mod common;

use common::korc::*;
use common::workload::{Writer, assert_everywhere, create_app_schema};
use common::{namespace, wait_for};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use korc::api::MySQLCluster;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The copies into `pod` the status records as completed.
fn completed(status: &Value, pod: &str) -> usize {
    status["clones"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["pod"] == pod && c["outcome"] == "completed")
        .count()
}

/// Waits until a copy into `pod` completed (beyond the `before` first ones) and the
/// cluster is whole, recording every copy phase the status showed for it meanwhile.
async fn wait_copied(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    before: usize,
    ready: &str,
) -> Vec<Value> {
    let api = Api::<MySQLCluster>::namespaced(client.clone(), ns);
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = status(&api, "db").await;
        let progress = s["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["name"] == pod)
            .map(|i| i["cloneProgress"].clone())
            .filter(|p| !p.is_null());
        if let Some(p) = progress
            && seen.last().map(|l| &l["phase"]) != Some(&p["phase"])
        {
            seen.push(p);
        }
        if completed(&s, pod) > before && s["ready"] == ready && s["analysisCode"] == "NoProblem" {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{pod} not copied and attached within 300 s; copies seen {seen:#?}, status {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_instances_that_cannot_replicate_are_cloned_from_a_replica_under_writes() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    let ns = "clone-mysql";
    namespace(&client, ns).await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &mysql_sample("db", 3))
        .await
        .unwrap();
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 240).await;
    let primary = s["primary"].as_str().unwrap().to_string();

    // Rows, then every binary log that holds them purged.
    let mut p = root_conn(&client, ns, "db", &primary).await;
    create_app_schema(&mut p).await;
    p.query_drop("CREATE TABLE app.bulk (id INT PRIMARY KEY, v VARCHAR(200))")
        .await
        .unwrap();
    for batch in 0..20 {
        let rows: Vec<String> = (0..500)
            .map(|i| format!("({}, REPEAT('x', 200))", batch * 500 + i))
            .collect();
        p.query_drop(format!("INSERT INTO app.bulk VALUES {}", rows.join(",")))
            .await
            .unwrap();
    }
    p.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let position = gtid_position(&mut p).await;
    for pod in ["db-0", "db-1", "db-2"] {
        let mut c = root_conn(&client, ns, "db", pod).await;
        assert!(wait_applied(&mut c, &position).await, "{pod} caught up");
    }
    p.query_drop("PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY")
        .await
        .unwrap();
    assert_ne!(scalar(&mut p, "SELECT @@gtid_purged").await, "");

    let writer = Writer::start(client.clone(), ns, "db");

    // Scale up: the new instance is refused for purged transactions and cloned.
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    let phases = wait_copied(&client, ns, "db-3", 0, "4/4").await;
    let s = status(&api, "db").await;
    let copy = s["clones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pod"] == "db-3")
        .unwrap();
    assert_eq!(copy["reason"], "purged", "{copy}");
    assert_ne!(
        copy["donor"],
        primary.as_str(),
        "a replica gave its data: {copy}"
    );
    assert!(
        phases.iter().any(|p| p["phase"] == "copying"),
        "the status showed the copy: {phases:?}"
    );

    // A rebuild on request: the annotation is served and removed.
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let replica = ["db-0", "db-1", "db-2"]
        .into_iter()
        .find(|p| *p != primary)
        .unwrap();
    let before = completed(&status(&api, "db").await, replica);
    pods.patch(
        replica,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"korc.dev/rebuild": "now"}}})),
    )
    .await
    .unwrap();
    let phases = wait_copied(&client, ns, replica, before, "4/4").await;
    assert!(
        phases.iter().any(|p| p["reason"] == "requested"),
        "{phases:?}"
    );
    let annotations: BTreeMap<String, String> = pods
        .get(replica)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    assert!(
        !annotations.contains_key("korc.dev/rebuild"),
        "{annotations:?}"
    );

    // A replica's volume lost: its new, empty instance is cloned too.
    let lost = ["db-0", "db-1", "db-2"]
        .into_iter()
        .rfind(|p| *p != primary)
        .unwrap();
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
    let claim = format!("data-{lost}");
    let old_uid = claims.get(&claim).await.unwrap().metadata.uid;
    let before = completed(&status(&api, "db").await, lost);
    claims
        .delete(&claim, &DeleteParams::default())
        .await
        .unwrap();
    pods.delete(lost, &DeleteParams::default()).await.unwrap();
    wait_for("a new, empty volume", 120, || async {
        let c = claims.get_opt(&claim).await.ok()??;
        (c.metadata.uid != old_uid && c.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await;
    wait_copied(&client, ns, lost, before, "4/4").await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let acknowledged = writer.stop().await;
    assert!(acknowledged.len() > 100, "{} rows", acknowledged.len());
    assert_everywhere(
        &client,
        ns,
        "db",
        &["db-0", "db-1", "db-2", "db-3"],
        &acknowledged,
    )
    .await;
    let primary = status(&api, "db").await["primary"]
        .as_str()
        .unwrap()
        .to_string();
    for pod in ["db-0", "db-1", "db-2", "db-3"] {
        let mut c = root_conn(&client, ns, "db", pod).await;
        assert_eq!(
            scalar(&mut c, "SELECT COUNT(*) FROM app.bulk").await,
            "10000",
            "{pod}"
        );
        // Copies come back fenced like every replica.
        let fenced = if pod == primary { "0" } else { "1" };
        assert_eq!(
            scalar(&mut c, "SELECT CAST(@@super_read_only AS CHAR)").await,
            fenced,
            "{pod}"
        );
    }
}
