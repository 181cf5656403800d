//! korc on MySQL: the MySQL sample (`mysql:8.4`, which the node agent runs with the
//! cached MySQL server) provisioned by the operator as real pods, replication on GTID
//! auto-position, errant replicas held out, scaling, and a crash failover under
//! semi-sync.

mod common;

use common::korc::*;
use common::workload::{
    WritableWatcher, Writer, assert_everywhere, assert_has_rows, create_app_schema, wait_failover,
};
use common::{namespace, wait_for};
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, Fault};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PODS: [&str; 3] = ["db-0", "db-1", "db-2"];

/// `(read_only, super_read_only)` of an instance.
async fn read_only(conn: &mut mysql_async::Conn) -> (u8, u8) {
    conn.query_first("SELECT @@global.read_only, @@global.super_read_only")
        .await
        .unwrap()
        .unwrap()
}

/// The instance's `SHOW REPLICA STATUS` columns named in `columns`.
async fn replica_status(conn: &mut mysql_async::Conn, columns: &[&str]) -> Vec<String> {
    let row: mysql_async::Row = conn
        .query_first("SHOW REPLICA STATUS")
        .await
        .unwrap()
        .expect("a replica");
    columns
        .iter()
        .map(|c| {
            row.get_opt::<String, _>(*c)
                .and_then(Result::ok)
                .unwrap_or_default()
        })
        .collect()
}

/// Checks a replica the way korc should leave it: super-read-only, both threads
/// running from `source_ip` with GTID auto-position.
async fn assert_replica_of(client: &kube::Client, ns: &str, pod: &str, source_ip: &str) {
    let mut c = root_conn(client, ns, "db", pod).await;
    assert_eq!(read_only(&mut c).await, (1, 1), "{pod} is super-read-only");
    let status = replica_status(
        &mut c,
        &[
            "Source_Host",
            "Auto_Position",
            "Replica_IO_Running",
            "Replica_SQL_Running",
        ],
    )
    .await;
    assert_eq!(status, [source_ip, "1", "Yes", "Yes"], "{pod}");
}

async fn create_cluster(client: &kube::Client, ns: &str, replicas: i32) -> Api<MySQLCluster> {
    namespace(client, ns).await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &mysql_sample("db", replicas))
        .await
        .unwrap();
    api
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_sample_replicates_on_gtid_auto_position_and_holds_out_an_errant_replica() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    let ns = "mysql";
    let api = create_cluster(&client, ns, 3).await;
    let t = Instant::now();
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 240).await;
    println!("MySQL sample 3/3 NoProblem after {:?}", t.elapsed());
    let primary = s["primary"].as_str().unwrap().to_string();
    assert_eq!(primary, "db-0");

    // Exactly one writable instance; the replicas follow it on GTID auto-position.
    let mut p = root_conn(&client, ns, "db", &primary).await;
    assert!(!is_mariadb(&mut p).await, "a MySQL server runs");
    assert_eq!(read_only(&mut p).await, (0, 0), "the primary is writable");
    let primary_ip = pod_ip(&client, ns, &primary).await;
    for pod in ["db-1", "db-2"] {
        assert_replica_of(&client, ns, pod, &primary_ip).await;
    }
    // The sample asks for semi-sync: the primary waits for the replicas' acknowledgements.
    wait_for("two semi-sync replicas", 30, || async {
        let mut p = root_conn(&client, ns, "db", &primary).await;
        let rows: Vec<(String, String)> = p
            .query("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_source_%'")
            .await
            .ok()?;
        let get = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        (get("Rpl_semi_sync_source_status")? == "ON" && get("Rpl_semi_sync_source_clients")? == "2")
            .then_some(())
    })
    .await;
    // korc's account works without SUPER.
    let grants: Vec<String> = p.query("SHOW GRANTS FOR 'korc'@'%'").await.unwrap();
    assert!(
        !grants
            .iter()
            .any(|g| g.split([' ', ',']).any(|w| w == "SUPER")),
        "{grants:?}"
    );

    // Rows written through the primary appear on both replicas.
    p.query_drop("CREATE DATABASE app").await.unwrap();
    p.query_drop("CREATE TABLE app.t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    p.query_drop("INSERT INTO app.t VALUES (1), (2), (3)")
        .await
        .unwrap();
    let position = gtid_position(&mut p).await;
    for pod in ["db-1", "db-2"] {
        assert_caught_up(&client, ns, pod, &position, "3").await;
    }

    // A write on a replica (super_read_only lifted by hand) is an errant transaction:
    // flagged, held out of the replicas Service.
    let (kept, errant_pod) = ("db-1", "db-2");
    let mut errant = root_conn(&client, ns, "db", errant_pod).await;
    errant
        .query_drop("SET GLOBAL super_read_only = 0")
        .await
        .unwrap();
    errant.query_drop("CREATE DATABASE errant").await.unwrap();
    errant
        .query_drop("SET GLOBAL super_read_only = 1")
        .await
        .unwrap();
    wait_for("the replica flagged as errant", 10, || async {
        (analysis_of(&api, "db", errant_pod).await.as_deref() == Some("ErrantGTIDDetected"))
            .then_some(())
    })
    .await;
    let s = status(&api, "db").await;
    let held = instance(&s, errant_pod);
    assert_eq!(held["role"], "excluded", "{held:#}");
    let kept_ip = pod_ip(&client, ns, kept).await;
    wait_for("db-replicas lists only the clean replica", 30, || async {
        (endpoint_ips(&client, ns, "db-replicas").await? == vec![kept_ip.clone()]).then_some(())
    })
    .await;
}

fn instance(status: &Value, pod: &str) -> Value {
    status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == pod)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_cluster_scales_up_and_down() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    let ns = "mysql-scale";
    let api = create_cluster(&client, ns, 3).await;
    wait_settled(&api, "db", "3/3", "NoProblem", 240).await;
    let mut p = root_conn(&client, ns, "db", "db-0").await;
    p.query_drop("CREATE DATABASE app").await.unwrap();
    p.query_drop("CREATE TABLE app.t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    p.query_drop("INSERT INTO app.t VALUES (1), (2)")
        .await
        .unwrap();

    let patch = |n: i32| json!({"spec": {"replicas": n}});
    api.patch("db", &PatchParams::default(), &Patch::Merge(patch(4)))
        .await
        .unwrap();
    wait_settled(&api, "db", "4/4", "NoProblem", 180).await;
    let position = gtid_position(&mut p).await;
    assert_caught_up(&client, ns, "db-3", &position, "2").await;
    let primary_ip = pod_ip(&client, ns, "db-0").await;
    assert_replica_of(&client, ns, "db-3", &primary_ip).await;

    api.patch("db", &PatchParams::default(), &Patch::Merge(patch(3)))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns);
    wait_for("the scaled-down pod gone", 60, || async {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=db"))
            .await
            .ok()?;
        (list.items.len() == 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_crashed_primary_fails_over_under_semi_sync_without_losing_an_acknowledged_write() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    let ns = "mysql-crash";
    let api = create_cluster(&client, ns, 3).await;
    wait_settled(&api, "db", "3/3", "NoProblem", 240).await;
    let mut root = root_conn(&client, ns, "db", "db-0").await;
    create_app_schema(&mut root).await;
    let watcher = WritableWatcher::start(client.clone(), ns, "db", &PODS);
    let writer = Writer::start(client.clone(), ns, "db");
    wait_for("the writer's first rows", 30, || async {
        (writer.count() >= 20).then_some(())
    })
    .await;
    let position = gtid_position(&mut root).await;
    for pod in ["db-1", "db-2"] {
        let mut r = root_conn(&client, ns, "db", pod).await;
        assert!(
            wait_applied(&mut r, &position).await,
            "{pod} applies {position}"
        );
    }

    cp.inject(&Fault::Kill(ContainerRef::pod(ns, "db-0")))
        .await
        .unwrap();
    let f = wait_failover(&client, &api, ns, "db-0", Instant::now(), &writer, 30).await;
    println!(
        "MySQL kill -9 → -primary endpoint moved {:?}; first insert on {} {:?}",
        f.endpoint_moved, f.primary, f.first_insert
    );
    // db-2 is prefer_not in the sample.
    assert_eq!(f.primary, "db-1");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acknowledged = writer.stop().await;

    let s = status(&api, "db").await;
    let recoveries = s["recoveries"].as_array().unwrap();
    assert_eq!(recoveries.len(), 1, "exactly one recovery: {s:#}");
    let r = &recoveries[0];
    assert_eq!(
        (
            r["kind"].as_str(),
            r["failed"].as_str(),
            r["outcome"].as_str()
        ),
        (Some("DeadMaster"), Some("db-0"), Some("recovered")),
        "{r:#}"
    );
    assert_eq!(r["successor"], "db-1");
    println!(
        "recovery steps: {}",
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| format!(
                "{}({} ms)",
                st["kind"].as_str().unwrap_or_default(),
                st["durationMs"].as_str().unwrap_or_default()
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_has_rows(&client, ns, "db", "db-1", &acknowledged).await;
    assert_replica_of(&client, ns, "db-2", &f.ip).await;

    // The restarted old primary comes back super-read-only. It rejoins under the new
    // primary, unless crash recovery committed a transaction no replica received
    // (MySQL has no counterpart of MariaDB's init_rpl_role): then it is errant and
    // held out.
    let old = wait_status(&api, "db", "db-0 back as replica or held out", 60, |s| {
        let old = instance(s, "db-0");
        let rejoined = old["role"] == "replica" && old["source"] == "db-1";
        let held = old["role"] == "excluded";
        (rejoined || held).then_some(old)
    })
    .await;
    let mut c = wait_for("db-0 answers", 30, || {
        try_root_conn(&client, ns, "db", "db-0")
    })
    .await;
    assert_eq!(
        read_only(&mut c).await.1,
        1,
        "db-0 restarted super-read-only"
    );
    let mut healthy = vec!["db-1", "db-2"];
    if old["role"] == "replica" {
        healthy.push("db-0");
        wait_settled(&api, "db", "3/3", "NoProblem", 60).await;
    }
    println!("old primary after restart: {old}");
    assert_everywhere(&client, ns, "db", &healthy, &acknowledged).await;
    let violations = watcher.stop().await;
    assert!(
        violations.is_empty(),
        "two writable instances: {violations:?}"
    );
    println!(
        "{} acknowledged rows, all on {healthy:?}",
        acknowledged.len()
    );
}
