//! Failover by the operator on the local control plane: korc installed by its Helm
//! chart with two operator replicas electing a leader, real MariaDB pods, real faults.

mod common;

use common::korc::*;
use common::workload::{
    WritableWatcher, Writer, assert_everywhere, assert_has_rows, create_app_schema, wait_failover,
};
use common::{namespace, wait_for};
use futures::StreamExt;
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, Fault};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PODS: [&str; 3] = ["db-0", "db-1", "db-2"];

fn semi_sync_cluster(name: &str) -> MySQLCluster {
    let mut c = sample(name, 3);
    c.spec.semi_sync = Some(korc::api::SemiSyncSpec {
        enabled: true,
        timeout_ms: None,
    });
    c
}

/// Every `Recovering` condition status the cluster's versions showed, in order.
fn record_recovering(api: Api<MySQLCluster>, name: &str) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut stream = watcher(api, config).applied_objects().boxed();
        while let Some(Ok(c)) = stream.next().await {
            let status = c.status.unwrap_or_default();
            if let Some(cond) = status.conditions.iter().find(|c| c.type_ == "Recovering") {
                let mut s = s.lock().unwrap();
                if s.last() != Some(&cond.status) {
                    s.push(cond.status.clone());
                }
            }
        }
    });
    seen
}

fn condition(s: &Value, type_: &str) -> Value {
    s["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn crashed_primary_is_replaced_once_without_losing_a_write_and_rejoins() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    assert_eq!(
        operator_pods(&client).await.len(),
        2,
        "two operator replicas"
    );
    namespace(&client, "crash").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "crash");
    api.create(&PostParams::default(), &semi_sync_cluster("db"))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let mut root = root_conn(&client, "crash", "db", "db-0").await;
    create_app_schema(&mut root).await;
    let recovering = record_recovering(api.clone(), "db");
    let watcher = WritableWatcher::start(client.clone(), "crash", "db", &PODS);
    let writer = Writer::start(client.clone(), "crash", "db");
    wait_for("the writer's first rows", 20, || async {
        (writer.count() >= 20).then_some(())
    })
    .await;

    // With semi-sync on, the replicas apply what they acknowledge.
    let position = gtid_position(&mut root).await;
    for pod in ["db-1", "db-2"] {
        let mut r = root_conn(&client, "crash", "db", pod).await;
        assert!(
            wait_applied(&mut r, &position).await,
            "{pod} applies {position}"
        );
    }

    cp.inject(&Fault::Kill(ContainerRef::pod("crash", "db-0")))
        .await
        .unwrap();
    let f = wait_failover(&client, &api, "crash", "db-0", Instant::now(), &writer, 20).await;
    let new_primary = f.primary;
    println!(
        "kill -9 → -primary endpoint moved {:?}; first insert on {new_primary} {:?}",
        f.endpoint_moved, f.first_insert
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acknowledged = writer.stop().await;

    // The whole story is in the status.
    let s = status(&api, "db").await;
    assert!(s["lastFailoverTime"].is_string(), "{s:#}");
    let recoveries = s["recoveries"].as_array().unwrap();
    assert_eq!(recoveries.len(), 1, "exactly one recovery: {s:#}");
    let r = &recoveries[0];
    assert_eq!(r["kind"], "DeadMaster");
    assert_eq!(r["failed"], "db-0");
    assert_eq!(r["successor"], new_primary.as_str());
    assert_eq!(r["outcome"], "recovered", "{r:#}");
    let steps = r["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|st| st["kind"] == "promote" && st["ok"] == true),
        "{r:#}"
    );
    assert!(steps.iter().all(|st| st["durationMs"].is_string()));
    println!(
        "recovery steps: {}",
        steps
            .iter()
            .map(|st| format!(
                "{}({} ms)",
                st["kind"].as_str().unwrap(),
                st["durationMs"].as_str().unwrap()
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_has_rows(&client, "crash", "db", &new_primary, &acknowledged).await;

    // The restarted old primary rejoins under the new one and the cluster heals.
    let healed = wait_settled(&api, "db", "3/3", "NoProblem", 60).await;
    assert_eq!(healed["primary"], new_primary.as_str());
    let old = healed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "db-0")
        .unwrap()
        .clone();
    assert_eq!(old["role"], "replica", "{old:#}");
    assert_eq!(old["source"], new_primary.as_str(), "{old:#}");
    assert_everywhere(&client, "crash", "db", &PODS, &acknowledged).await;
    let violations = watcher.stop().await;
    assert!(
        violations.is_empty(),
        "two writable instances: {violations:?}"
    );
    let recovering = recovering.lock().unwrap().clone();
    assert!(
        recovering.windows(2).any(|w| w == ["True", "False"]),
        "Recovering went {recovering:?}"
    );
    println!(
        "{} acknowledged rows, all on every instance",
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_and_manual_clusters_are_analysed_not_recovered() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "manual").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "manual");
    let mut manual = sample("manual", 3);
    manual.spec.recovery.automatic_master_recovery = false;
    api.create(&PostParams::default(), &manual).await.unwrap();
    api.create(&PostParams::default(), &sample("paused", 3))
        .await
        .unwrap();
    wait_settled(&api, "manual", "3/3", "NoProblem", 120).await;
    wait_settled(&api, "paused", "3/3", "NoProblem", 120).await;
    api.patch(
        "paused",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true}})),
    )
    .await
    .unwrap();

    // A hung primary (SIGSTOP) stays dead until SIGCONT: the replicas give up on it
    // after slave_net_timeout and the analysis says DeadMaster.
    for cluster in ["manual", "paused"] {
        cp.inject(&Fault::Stop(ContainerRef::pod(
            "manual",
            &format!("{cluster}-0"),
        )))
        .await
        .unwrap();
    }
    for (cluster, reason) in [
        ("manual", "AutomaticRecoveryDisabled"),
        ("paused", "Paused"),
    ] {
        let s = wait_for(&format!("{cluster}: DeadMaster held"), 30, || async {
            let s = status(&api, cluster).await;
            (s["analysisCode"] == "DeadMaster"
                && condition(&s, "RecoveryBlocked")["reason"] == reason)
                .then_some(s)
        })
        .await;
        assert_eq!(condition(&s, "RecoveryBlocked")["status"], "True", "{s:#}");
    }
    // Held, not recovered: still no recovery a few probe intervals later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for cluster in ["manual", "paused"] {
        let s = status(&api, cluster).await;
        assert_eq!(s["primary"], format!("{cluster}-0"), "{s:#}");
        assert!(
            s["recoveries"].as_array().is_none_or(|r| r.is_empty()),
            "{s:#}"
        );
        cp.inject(&Fault::Continue(ContainerRef::pod(
            "manual",
            &format!("{cluster}-0"),
        )))
        .await
        .unwrap();
    }
    wait_settled(&api, "manual", "3/3", "NoProblem", 30).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_failure_within_the_block_period_waits_for_an_acknowledgement() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "flap").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "flap");
    api.create(&PostParams::default(), &sample("db", 3))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;

    cp.inject(&Fault::Kill(ContainerRef::pod("flap", "db-0")))
        .await
        .unwrap();
    let first = wait_new_primary(&api, "db", "db-0", 20).await;
    // The recovery's own record write comes a moment before the status rebuilt from
    // the next probe: wait for the latter, which shows the block.
    let s = wait_status(&api, "db", "3/3 NoProblem under anti-flapping", 60, |s| {
        (s["ready"] == "3/3"
            && s["analysisCode"] == "NoProblem"
            && condition(s, "RecoveryBlocked")["reason"] == "AntiFlapping")
            .then(|| s.clone())
    })
    .await;
    assert!(s["recoveryBlockedUntil"].is_string(), "{s:#}");

    // The new primary hangs: detected, shown, not recovered.
    cp.inject(&Fault::Stop(ContainerRef::pod("flap", &first)))
        .await
        .unwrap();
    let s = wait_for("DeadMaster held by anti-flapping", 30, || async {
        let s = status(&api, "db").await;
        (s["analysisCode"] == "DeadMaster").then_some(s)
    })
    .await;
    let blocked = condition(&s, "RecoveryBlocked");
    assert_eq!(blocked["status"], "True", "{s:#}");
    assert_eq!(blocked["reason"], "AntiFlapping", "{s:#}");
    assert!(
        blocked["message"]
            .as_str()
            .unwrap()
            .contains("korc.dev/acknowledge"),
        "{blocked:#}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status(&api, "db").await["primary"], first.as_str());
    let metrics = leader_metrics(&client).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("korc_recovery_blocks_total{reason=\"AntiFlapping\"} ")),
        "{metrics}"
    );

    // Acknowledged: it recovers, and korc records and removes the annotation.
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"korc.dev/acknowledge": "on-call checked"}}}),
        ),
    )
    .await
    .unwrap();
    let second = wait_new_primary(&api, "db", &first, 20).await;
    let cluster = api.get("db").await.unwrap();
    assert!(
        !cluster
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("korc.dev/acknowledge")
    );
    let s = status(&api, "db").await;
    assert_eq!(
        s["lastAcknowledgement"]["value"], "on-call checked",
        "{s:#}"
    );
    assert_eq!(s["recoveries"].as_array().unwrap().len(), 2, "{s:#}");
    println!("second failover to {second} after the acknowledgement");
    cp.inject(&Fault::Continue(ContainerRef::pod("flap", &first)))
        .await
        .unwrap();
    // The woken old primary is fenced and rejoins.
    let healed = wait_settled(&api, "db", "3/3", "NoProblem", 60).await;
    assert_eq!(healed["primary"], second.as_str());
    let mut woken = root_conn(&client, "flap", "db", &first).await;
    assert_eq!(
        scalar(&mut woken, "SELECT CAST(@@global.read_only + 0 AS CHAR)").await,
        "1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn switchover_under_writes_named_automatic_and_rolled_back() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "switch").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "switch");
    api.create(&PostParams::default(), &semi_sync_cluster("db"))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let mut root = root_conn(&client, "switch", "db", "db-0").await;
    create_app_schema(&mut root).await;
    let watcher = WritableWatcher::start(client.clone(), "switch", "db", &PODS);
    let writer = Writer::start(client.clone(), "switch", "db");
    wait_for("the writer's first rows", 20, || async {
        (writer.count() >= 20).then_some(())
    })
    .await;

    // Named: db-0 → db-1, under writes.
    let asked = Instant::now();
    let r = switch_over(&api, "db", "named-1", Some("db-1"), 30).await;
    assert_eq!(r["outcome"], "recovered", "{r:#}");
    assert_eq!(
        (r["failed"].as_str(), r["successor"].as_str()),
        (Some("db-0"), Some("db-1"))
    );
    let outage = r["writeOutageMs"].as_i64().expect("write outage recorded");
    let ip = pod_ip(&client, "switch", "db-1").await;
    let accepted = wait_for("inserts on db-1", 20, || async {
        writer.first_ack_after(asked, &ip)
    })
    .await;
    println!(
        "switchover to db-1: write outage {outage} ms (engine), first insert on db-1 {:?} after the request",
        accepted - asked
    );
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 60).await;
    assert_eq!(s["primary"], "db-1");
    let old = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "db-0")
        .unwrap()
        .clone();
    assert_eq!(old["source"], "db-1", "{old:#}");

    // Automatic: korc chooses the target.
    let r = switch_over(&api, "db", "auto-1", None, 30).await;
    assert_eq!(r["outcome"], "recovered", "{r:#}");
    assert_ne!(r["successor"], "db-1");
    let primary = r["successor"].as_str().unwrap().to_string();
    wait_settled(&api, "db", "3/3", "NoProblem", 60).await;

    let acknowledged = writer.stop().await;
    assert_everywhere(&client, "switch", "db", &PODS, &acknowledged).await;

    // A target whose applier is blocked cannot catch up: the switchover rolls back and
    // the primary stays writable.
    let target = PODS.into_iter().find(|p| *p != primary).unwrap();
    let mut lock = root_conn(&client, "switch", "db", target).await;
    mysql_async::prelude::Queryable::query_drop(&mut lock, "FLUSH TABLES WITH READ LOCK")
        .await
        .unwrap();
    let mut p = root_conn(&client, "switch", "db", &primary).await;
    mysql_async::prelude::Queryable::query_drop(&mut p, "INSERT INTO app.t VALUES (1000000)")
        .await
        .unwrap();
    let r = switch_over(&api, "db", "blocked-1", Some(target), 60).await;
    assert_eq!(r["outcome"], "rolledBack", "{r:#}");
    mysql_async::prelude::Queryable::query_drop(&mut lock, "UNLOCK TABLES")
        .await
        .unwrap();
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 60).await;
    assert_eq!(s["primary"], primary.as_str());
    let mut p = root_conn(&client, "switch", "db", &primary).await;
    assert_eq!(
        scalar(&mut p, "SELECT CAST(@@global.read_only + 0 AS CHAR)").await,
        "0"
    );
    let violations = watcher.stop().await;
    assert!(
        violations.is_empty(),
        "two writable instances: {violations:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_primary_is_replaced_within_8s_and_never_writable_again() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "hang").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "hang");
    api.create(&PostParams::default(), &semi_sync_cluster("db"))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let mut root = root_conn(&client, "hang", "db", "db-0").await;
    create_app_schema(&mut root).await;
    let watcher = WritableWatcher::start(client.clone(), "hang", "db", &PODS);
    let writer = Writer::start(client.clone(), "hang", "db");
    wait_for("the writer's first rows", 20, || async {
        (writer.count() >= 20).then_some(())
    })
    .await;

    // A hung primary keeps its connections open: only the replicas' heartbeat and
    // slave_net_timeout tell it is gone.
    cp.inject(&Fault::Stop(ContainerRef::pod("hang", "db-0")))
        .await
        .unwrap();
    // The writer gives up on a statement after 2 s, as an application would: its first
    // insert on the new primary comes after that, on a new connection.
    let f = wait_failover(&client, &api, "hang", "db-0", Instant::now(), &writer, 20).await;
    let (new_primary, ip, failed_over) = (f.primary, f.ip, f.endpoint_moved);
    println!(
        "SIGSTOP → -primary endpoint on {new_primary} after {failed_over:?}; first insert there after {:?}",
        f.first_insert
    );
    assert!(failed_over < Duration::from_secs(8), "took {failed_over:?}");
    let acknowledged = writer.stop().await;
    assert_has_rows(&client, "hang", "db", &new_primary, &acknowledged).await;

    // korc could not make the hung primary read-only, so it deleted its pod: whatever
    // wakes is read-only and out of the -primary Service.
    let record = wait_status(&api, "db", "the recovery's record", 20, |s| {
        s["recoveries"]
            .as_array()?
            .iter()
            .find(|r| r["failed"] == "db-0" && r["outcome"] != "running")
            .cloned()
    })
    .await;
    assert_eq!(record["outcome"], "recovered", "{record:#}");
    let killed = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["kind"] == "deletePod")
        .cloned();
    assert!(
        killed
            .as_ref()
            .is_some_and(|st| st["ok"] == true && st["instance"] == "db-0"),
        "{record:#}"
    );
    // The stopped process is gone with its pod; the signal reaches whatever runs now.
    let _ = cp
        .inject(&Fault::Continue(ContainerRef::pod("hang", "db-0")))
        .await;
    wait_for("the woken primary read-only", 20, || async {
        let mut woken = try_root_conn(&client, "hang", "db", "db-0").await?;
        (scalar(&mut woken, "SELECT CAST(@@global.read_only + 0 AS CHAR)").await == "1")
            .then_some(())
    })
    .await;
    assert_eq!(
        endpoint_ips(&client, "hang", "db-primary").await,
        Some(vec![ip.clone()])
    );
    // It rejoins under the new primary, or — when the stop caught a transaction it
    // had logged but no replica had received — is held out with that errant GTID.
    let s = wait_status(&api, "db", "the woken primary placed", 60, |s| {
        let old = s["instances"]
            .as_array()?
            .iter()
            .find(|i| i["name"] == "db-0")?;
        ((old["role"] == "replica" && old["source"] == new_primary.as_str())
            || old["role"] == "excluded")
            .then(|| old.clone())
    })
    .await;
    println!("woken old primary: {s:#}");
    assert_eq!(status(&api, "db").await["primary"], new_primary.as_str());
    let violations = watcher.stop().await;
    assert!(
        violations.is_empty(),
        "two writable instances: {violations:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn must_not_and_downtimed_replicas_are_never_promoted() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "rules").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "rules");
    let mut cluster = sample("db", 3);
    cluster.spec.recovery.block_period_seconds = 0;
    api.create(&PostParams::default(), &cluster).await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let first = status(&api, "db").await["primary"]
        .as_str()
        .unwrap()
        .to_string();
    let replicas: Vec<&str> = PODS.iter().copied().filter(|p| *p != first).collect();
    let (must_not, other) = (replicas[0], replicas[1]);
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"instances": {must_not: {"promotionRule": "must_not"}}}})),
    )
    .await
    .unwrap();
    wait_status(&api, "db", "the promotion rule in the status", 30, |s| {
        s["instances"]
            .as_array()?
            .iter()
            .any(|i| i["name"] == must_not && i["promotionRule"] == "must_not")
            .then_some(())
    })
    .await;

    // The must_not replica is passed over for the other one.
    cp.inject(&Fault::Stop(ContainerRef::pod("rules", &first)))
        .await
        .unwrap();
    let second = wait_new_primary(&api, "db", &first, 30).await;
    assert_eq!(second, other, "{:#}", status(&api, "db").await);
    cp.inject(&Fault::Continue(ContainerRef::pod("rules", &first)))
        .await
        .unwrap();
    wait_status(&api, "db", "3 instances back", 60, |s| {
        (s["ready"] == "3/3").then_some(())
    })
    .await;

    // With the only other candidate downtimed, nobody is promoted and the record
    // says why.
    let until =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1);
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"instances": {&first: {"downtimeUntil": until.to_string()}}}}),
        ),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cp.inject(&Fault::Stop(ContainerRef::pod("rules", &second)))
        .await
        .unwrap();
    let failed = wait_status(&api, "db", "a recovery with no candidate", 30, |s| {
        s["recoveries"]
            .as_array()?
            .iter()
            .find(|r| r["failed"] == second.as_str() && r["outcome"] != "running")
            .cloned()
    })
    .await;
    println!("no candidate: {failed:#}");
    assert_eq!(failed["outcome"], "failed", "{failed:#}");
    assert!(failed["successor"].is_null(), "{failed:#}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("{must_not} \"MustNot\""))
            && error.contains(&format!("{first} \"Downtimed\"")),
        "the record names each exclusion by pod: {error}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = status(&api, "db").await;
    assert_eq!(s["primary"], second.as_str(), "{s:#}");
    for pod in [must_not, first.as_str()] {
        let mut conn = root_conn(&client, "rules", "db", pod).await;
        assert_eq!(
            scalar(&mut conn, "SELECT CAST(@@global.read_only + 0 AS CHAR)").await,
            "1",
            "{pod} was promoted"
        );
    }
    cp.inject(&Fault::Continue(ContainerRef::pod("rules", &second)))
        .await
        .unwrap();
    // The failed recovery had stopped the replicas' receivers; once the primary is back
    // korc starts them again and the cluster heals with its primary unchanged.
    let healed = wait_settled(&api, "db", "3/3", "NoProblem", 60).await;
    assert_eq!(healed["primary"], second.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_change_rolls_every_pod_with_one_switchover_and_no_primary_restart() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "roll").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "roll");
    api.create(&PostParams::default(), &semi_sync_cluster("db"))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let mut root = root_conn(&client, "roll", "db", "db-0").await;
    create_app_schema(&mut root).await;
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), "roll");
    let uid = |p: &k8s_openapi::api::core::v1::Pod| p.metadata.uid.clone().unwrap();
    let mut before = std::collections::BTreeMap::new();
    for pod in PODS {
        before.insert(pod, uid(&pods.get(pod).await.unwrap()));
    }
    let watcher = WritableWatcher::start(client.clone(), "roll", "db", &PODS);
    let writer = Writer::start(client.clone(), "roll", "db");
    wait_for("the writer's first rows", 20, || async {
        (writer.count() >= 20).then_some(())
    })
    .await;

    // Every 100 ms: is a pod being deleted while the status names it the primary?
    let restarted_primary = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = {
        let (api, pods, seen, stop) = (
            api.clone(),
            pods.clone(),
            restarted_primary.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let primary = status(&api, "db").await["primary"].clone();
                for pod in PODS {
                    let deleting = pods
                        .get_opt(pod)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|p| p.metadata.deletion_timestamp.is_some());
                    if deleting && primary == pod {
                        seen.lock().unwrap().push(pod.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let asked = Instant::now();
    let patch = json!({"spec": {"mysqlConfig": {"max_connections": "321"}}});
    api.patch("db", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    wait_for(
        "every pod restarted with max_connections=321",
        300,
        || async {
            for pod in PODS {
                let p = pods.get(pod).await.ok()?;
                if uid(&p) == before[pod] || !common::is_ready(&p) {
                    return None;
                }
                let mut c = try_root_conn(&client, "roll", "db", pod).await?;
                if scalar(&mut c, "SELECT CAST(@@global.max_connections AS CHAR)").await != "321" {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 60).await;
    let rolled = asked.elapsed();
    let gap = writer.longest_gap();
    let acknowledged = writer.stop().await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    monitor.await.unwrap();
    println!("rolled 3 pods in {rolled:?}; longest pause between acknowledged inserts {gap:?}");

    let recoveries = s["recoveries"].as_array().unwrap();
    assert_eq!(recoveries.len(), 1, "one switchover, nothing else: {s:#}");
    let r = &recoveries[0];
    assert_eq!(r["kind"], "GracefulTakeover", "{r:#}");
    assert!(
        r["requestId"].as_str().unwrap().starts_with("rollout-"),
        "{r:#}"
    );
    assert_eq!(r["outcome"], "recovered", "{r:#}");
    let restarted = restarted_primary.lock().unwrap().clone();
    assert!(
        restarted.is_empty(),
        "primary pods deleted while serving: {restarted:?}"
    );
    assert_everywhere(&client, "roll", "db", &PODS, &acknowledged).await;
    let violations = watcher.stop().await;
    assert!(
        violations.is_empty(),
        "two writable instances: {violations:?}"
    );
}
