//! Self-healing data on the local control plane, korc installed by its chart: a
//! cluster whose primary purged its binary logs scales up (the new instance is
//! cloned from a replica), a replica is rebuilt on `korc.dev/rebuild`, and a replica
//! whose volume was lost comes back by a copy — all while an application writes
//! through the primary, losing no acknowledged row. MySQL copies with its clone
//! plugin; MariaDB with korc's agents and mariadb-backup, where copies killed -9 half
//! way (the recipient's agent, the donor's server) start again and complete.

mod common;

use common::korc::*;
use common::workload::{Writer, assert_everywhere, create_app_schema};
use common::{namespace, wait_for};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, Fault};
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

/// The copies into `pod` the status records as failed.
fn failed(status: &Value, pod: &str) -> usize {
    status["clones"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["pod"] == pod && c["outcome"] == "failed")
        .count()
}

/// Waits until `pod`'s copy has moved `bytes` bytes; returns its progress.
async fn wait_copying(api: &Api<MySQLCluster>, pod: &str, bytes: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = status(api, "db").await;
        let progress = s["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["name"] == pod)
            .map(|i| i["cloneProgress"].clone())
            .unwrap_or_default();
        if progress["phase"] == "copying" && progress["bytesCopied"].as_i64().unwrap_or(0) >= bytes
        {
            return progress;
        }
        assert!(
            Instant::now() < deadline,
            "{pod} never copied {bytes} bytes: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_instances_that_cannot_replicate_are_copied_by_korcs_agents_under_writes() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    let ns = "clone-mariadb";
    namespace(&client, ns).await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), ns);
    let mut cluster = sample("db", 3);
    // Slow enough to be killed half-way.
    cluster.spec.clone.max_mib_per_second = 2;
    api.create(&PostParams::default(), &cluster).await.unwrap();
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 240).await;
    let primary = s["primary"].as_str().unwrap().to_string();

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
    // MASTER_GTID_WAIT follows the replica position: the replicas.
    for pod in ["db-0", "db-1", "db-2"]
        .into_iter()
        .filter(|p| *p != primary)
    {
        let mut c = root_conn(&client, ns, "db", pod).await;
        assert!(wait_applied(&mut c, &position).await, "{pod} caught up");
    }
    // MariaDB keeps a log a replica's dump thread still reads: purge until only the
    // new one is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        p.query_drop("PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY")
            .await
            .unwrap();
        let logs: Vec<mysql_async::Row> = p.query("SHOW BINARY LOGS").await.unwrap();
        if logs.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "binary logs still in use: {}",
            logs.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(p);

    let writer = Writer::start(client.clone(), ns, "db");
    let pods = Api::<Pod>::namespaced(client.clone(), ns);

    // Scale up; the recipient's agent is killed -9 half-way through the copy.
    let started = Instant::now();
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    let progress = wait_copying(&api, "db-3", 4 << 20).await;
    assert!(
        progress["bytesCopied"].as_i64() < progress["bytesEstimated"].as_i64(),
        "{progress}"
    );
    cp.inject(&Fault::Kill(ContainerRef {
        namespace: ns.into(),
        pod: "db-3".into(),
        container: Some("agent".into()),
    }))
    .await
    .unwrap();
    wait_copied(&client, ns, "db-3", 0, "4/4").await;
    let copy_time = started.elapsed();
    let s = status(&api, "db").await;
    assert!(
        failed(&s, "db-3") >= 1,
        "the interrupted copy failed: {s:#}"
    );
    let copy = s["clones"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|c| c["pod"] == "db-3" && c["outcome"] == "completed")
        .unwrap()
        .clone();
    assert_eq!(copy["reason"], "purged", "{copy}");
    assert_ne!(
        copy["donor"],
        primary.as_str(),
        "a replica gave its data: {copy}"
    );
    let bytes = copy["bytesCopied"].as_i64().unwrap();
    println!(
        "db-3: {:.1} MiB copied; a caught-up replica {copy_time:?} after the scale-up, one copy killed half-way",
        bytes as f64 / 1048576.0
    );

    // A rebuild on request; the donor's server is killed -9 half-way through it.
    let replica = ["db-0", "db-1", "db-2"]
        .into_iter()
        .find(|p| *p != primary)
        .unwrap();
    let before = completed(&status(&api, "db").await, replica);
    let failed_before = failed(&status(&api, "db").await, replica);
    pods.patch(
        replica,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"korc.dev/rebuild": "now"}}})),
    )
    .await
    .unwrap();
    let progress = wait_copying(&api, replica, 4 << 20).await;
    let donor = progress["donor"].as_str().unwrap().to_string();
    cp.inject(&Fault::Kill(ContainerRef::pod(ns, &donor)))
        .await
        .unwrap();
    let phases = wait_copied(&client, ns, replica, before, "4/4").await;
    assert!(
        phases.iter().any(|p| p["reason"] == "requested"),
        "{phases:?}"
    );
    assert!(
        failed(&status(&api, "db").await, replica) > failed_before,
        "the copy from the killed donor failed"
    );

    // A replica's volume lost: its new, empty instance is copied too.
    let lost = ["db-0", "db-1", "db-2"]
        .into_iter()
        .rfind(|p| *p != primary && *p != replica)
        .unwrap_or(replica);
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
    let all = ["db-0", "db-1", "db-2", "db-3"];
    assert_everywhere(&client, ns, "db", &all, &acknowledged).await;
    for pod in all {
        let mut c = root_conn(&client, ns, "db", pod).await;
        assert_eq!(
            scalar(&mut c, "SELECT COUNT(*) FROM app.bulk").await,
            "10000",
            "{pod}"
        );
        // No staging or kept directory is a database.
        assert!(
            !scalar(
                &mut c,
                "SELECT GROUP_CONCAT(SCHEMA_NAME) FROM information_schema.SCHEMATA"
            )
            .await
            .contains("korc"),
            "{pod}"
        );
    }
}
