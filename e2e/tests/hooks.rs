//! orchestrator's hooks run as Jobs by korc installed from its Helm chart: each hook's
//! container writes what it received (its `ORC_*` environment and its substituted
//! arguments) to a file the test reads.

mod common;

use common::hooks::*;
use common::korc::*;
use common::kubectl_korc::Kubectl;
use common::workload::{Writer, create_app_schema, wait_failover};
use common::{namespace, wait_for};
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, Fault};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn read_only(client: &kube::Client, ns: &str, pod: &str) -> String {
    let mut conn = root_conn(client, ns, "db", pod).await;
    scalar(&mut conn, "SELECT CAST(@@global.read_only + 0 AS CHAR)").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_runs_detection_pre_and_post_hooks_in_order_and_a_slow_post_hook_delays_nothing() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    let dir = out_dir("crash");
    let out = dir.path();
    namespace(&client, "hooks").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "hooks");
    let mut cluster = with_hooks(
        "db",
        json!({
            "onFailureDetection": [
                recorder("page", out, "detect", "true", 30),
                // The API server refuses this Job (no image): reported, not retried.
                {"name": "broken", "template": {"spec": {"containers": [{"name": "x"}]}}},
            ],
            "preFailover": [recorder("ask", out, "pre", "true", 30)],
            "postMasterFailover": [recorder("dns", out, "post-master", "sleep 30", 60)],
            "postFailover": [recorder("audit", out, "post", "true", 30)],
        }),
    );
    // Semi-sync: the crashed primary holds nothing its replicas lack, so it rejoins and
    // the cluster heals before the second failure.
    cluster.spec.semi_sync = Some(korc::api::SemiSyncSpec {
        enabled: true,
        timeout_ms: None,
    });
    api.create(&PostParams::default(), &cluster).await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let mut root = root_conn(&client, "hooks", "db", "db-0").await;
    create_app_schema(&mut root).await;
    let writer = Writer::start(client.clone(), "hooks", "db");
    wait_for("the writer's first rows", 20, || async {
        (writer.count() >= 20).then_some(())
    })
    .await;

    cp.inject(&Fault::Kill(ContainerRef::pod("hooks", "db-0")))
        .await
        .unwrap();
    let f = wait_failover(&client, &api, "hooks", "db-0", Instant::now(), &writer, 20).await;
    let primary = f.primary.clone();
    println!(
        "kill -9 with a trivial preFailover hook → first insert on {primary} after {:?}",
        f.first_insert
    );
    // The slow post hook was still sleeping when the new primary took writes.
    let s = status(&api, "db").await;
    let r = s["recoveries"].as_array().unwrap().last().unwrap().clone();
    let pre = hook_entry(&r, "preFailover");
    assert_eq!(pre["outcome"], "succeeded", "{r:#}");
    let pre_ms = (micros(&pre["endedAt"]) - micros(&pre["startedAt"])) as f64 / 1000.0;
    println!("preFailover Job created → seen completed: {pre_ms:.0} ms");
    let post_master = recorded(out, "post-master", 20).await;
    assert!(
        !out.join("post.env").exists(),
        "postFailover waits for the sleeping postMasterFailover"
    );
    writer.stop().await;

    let detect = recorded(out, "detect", 5).await;
    let pre = recorded(out, "pre", 5).await;
    let post = recorded(out, "post", 60).await;
    let s = status(&api, "db").await;
    let recoveries = s["recoveries"].as_array().unwrap();
    assert_eq!(recoveries.len(), 1, "{s:#}");
    let r = &recoveries[0];
    let uid = r["id"].as_str().unwrap();
    let detection = &s["failureDetection"];
    assert_eq!(detection["instance"], "db-0", "{s:#}");
    let broken = &detection["hooks"][1];
    assert_eq!(broken["outcome"], "notCreated", "{s:#}");
    assert!(
        broken["message"].as_str().unwrap().contains("image"),
        "{broken:#}"
    );
    for env in [&detect, &pre, &post_master, &post] {
        assert_eq!(env["ORC_FAILURE_TYPE"], "DeadMaster", "{env:#?}");
        assert_eq!(env["ORC_FAILED_HOST"], "db-0");
        assert_eq!(env["ORC_FAILED_PORT"], "3306");
        assert_eq!(env["ORC_FAILURE_CLUSTER"], "db");
        assert_eq!(env["ORC_INSTANCE_TYPE"], "master");
        assert_eq!(env["ORC_IS_MASTER"], "true");
        assert_eq!(env["ORC_COUNT_REPLICAS"], "2");
    }
    assert_eq!(
        detect["ORC_RECOVERY_UID"],
        detection["id"].as_str().unwrap()
    );
    assert_ne!(detect["ORC_RECOVERY_UID"], uid);
    for env in [&pre, &post_master, &post] {
        assert_eq!(env["ORC_RECOVERY_UID"], uid);
    }
    for env in [&detect, &pre] {
        assert!(!env.contains_key("ORC_SUCCESSOR_HOST"), "{env:#?}");
        assert_eq!(env["ORC_IS_SUCCESSFUL"], "false");
    }
    for env in [&post_master, &post] {
        assert_eq!(env["ORC_SUCCESSOR_HOST"], primary, "{env:#?}");
        assert_eq!(env["ORC_IS_SUCCESSFUL"], "true");
    }
    assert_eq!(
        args(out, "pre"),
        format!("DeadMaster db-0 {{successorHost}} {uid}")
    );
    assert_eq!(
        args(out, "post"),
        format!("DeadMaster db-0 {primary} {uid}")
    );

    // In order: detection, pre, post master, post (after the post master ended).
    let started = |h: &Value| micros(&h["startedAt"]);
    let times = [
        started(&detection["hooks"][0]),
        started(hook_entry(r, "preFailover")),
        started(hook_entry(r, "postMasterFailover")),
        started(hook_entry(r, "postFailover")),
    ];
    assert!(times.is_sorted(), "hooks out of order: {times:?}\n{s:#}");
    assert!(micros(&hook_entry(r, "postMasterFailover")["endedAt"]) <= times[3]);
    // `kubectl korc recoveries` shows the hooks with their Jobs.
    let kubectl = Kubectl::new(cp, "hooks", "local").await;
    let text = kubectl.ok(&["recoveries", "db"]).await;
    println!("{text}");
    for line in [
        format!("recovery {uid}: DeadMaster (DeadMaster) of db-0 -> {primary}: recovered"),
        format!("  hook preFailover ask (Job db-pre-failover-{uid}-0): succeeded in "),
        format!("  hook postFailover audit (Job db-post-failover-{uid}-0): succeeded in "),
    ] {
        assert!(text.contains(&line), "{line}\n{text}");
    }
    let metrics = leader_metrics(&client).await;
    assert!(
        metrics.contains("korc_hook_jobs_total{hook=\"preFailover\",outcome=\"succeeded\"}"),
        "{metrics}"
    );

    // A second failure, blocked by anti-flapping, still runs its detection hook.
    wait_settled(&api, "db", "3/3", "NoProblem", 60).await;
    std::fs::remove_file(out.join("detect.env")).unwrap();
    cp.inject(&Fault::Kill(ContainerRef::pod("hooks", &primary)))
        .await
        .unwrap();
    let again = recorded(out, "detect", 30).await;
    assert_eq!(again["ORC_FAILED_HOST"], primary);
    assert_ne!(again["ORC_RECOVERY_UID"], detect["ORC_RECOVERY_UID"]);
    let s = status(&api, "db").await;
    assert_eq!(s["failureDetection"]["instance"], primary.as_str());
    assert_eq!(
        s["recoveries"].as_array().unwrap().len(),
        1,
        "blocked: {s:#}"
    );
}

/// Hangs the primary of the cluster in `ns` whose `preFailover` hook does not succeed
/// (a hang rather than a kill: it stays down however long the hook takes):
/// the recovery is aborted, recorded with the hook and why, nothing is promoted, and
/// `postUnsuccessfulFailover` runs.
async fn aborted_by(cp: &korc_e2e::ControlPlane, ns: &str, then: &str, timeout: i64, why: &str) {
    let client = cp.client().await.unwrap();
    let dir = out_dir(ns);
    let out = dir.path();
    namespace(&client, ns).await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), ns);
    let cluster = with_hooks(
        "db",
        json!({
            "preFailover": [recorder("gate", out, "pre", then, timeout)],
            "postUnsuccessfulFailover": [recorder("page", out, "unsuccessful", "true", 30)],
        }),
    );
    api.create(&PostParams::default(), &cluster).await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    cp.inject(&Fault::Stop(ContainerRef::pod(ns, "db-0")))
        .await
        .unwrap();
    let r = wait_status(&api, "db", "the aborted recovery", 60, |s| {
        let r = s["recoveries"].as_array()?.last()?;
        (r["outcome"] == "failed").then(|| r.clone())
    })
    .await;
    let error = r["error"].as_str().unwrap();
    println!("{ns}: {error}");
    assert!(
        error.starts_with("recovery aborted: preFailover hook gate (Job db-pre-failover-")
            && error.contains(why),
        "{r:#}"
    );
    assert!(r["successor"].is_null(), "{r:#}");
    let env = recorded(out, "unsuccessful", 30).await;
    assert_eq!(env["ORC_IS_SUCCESSFUL"], "false");
    assert_eq!(env["ORC_RECOVERY_UID"], r["id"].as_str().unwrap());
    assert!(!env.contains_key("ORC_SUCCESSOR_HOST"));
    // Nothing was promoted: db-0 is still the primary, and no replica writable.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = status(&api, "db").await;
    assert_eq!(s["primary"], "db-0", "{s:#}");
    assert_eq!(s["recoveries"].as_array().unwrap().len(), 1, "{s:#}");
    for pod in ["db-1", "db-2"] {
        assert_eq!(read_only(&client, ns, pod).await, "1", "{pod}");
    }
    cp.inject(&Fault::Continue(ContainerRef::pod(ns, "db-0")))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pre_failover_hook_that_fails_or_times_out_aborts_the_recovery() {
    let cp = korc_installed().await;
    tokio::join!(
        aborted_by(cp, "hookfail", "exit 3", 30, "failed"),
        aborted_by(cp, "hookslow", "sleep 120", 3, "timedOut"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_switchover_runs_the_graceful_takeover_hooks_and_a_failing_pre_hook_cancels_it() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    let dir = out_dir("switch");
    let out = dir.path();
    namespace(&client, "hookswitch").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "hookswitch");
    let gate = format!("test -e {}/allow", out.display());
    let cluster = with_hooks(
        "db",
        json!({
            "preGracefulTakeover": [recorder("drain", out, "pre", &gate, 30)],
            "postGracefulTakeover": [recorder("dns", out, "post", "true", 30)],
        }),
    );
    api.create(&PostParams::default(), &cluster).await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;

    let refused = switch_over(&api, "db", "first", Some("db-1"), 60).await;
    assert_eq!(refused["outcome"], "failed", "{refused:#}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.starts_with("switchover cancelled: preGracefulTakeover hook drain")
            && error.contains("failed"),
        "{refused:#}"
    );
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 30).await;
    assert_eq!(s["primary"], "db-0");
    assert_eq!(read_only(&client, "hookswitch", "db-0").await, "0");
    let ip = pod_ip(&client, "hookswitch", "db-0").await;
    assert_eq!(
        endpoint_ips(&client, "hookswitch", "db-primary").await,
        Some(vec![ip])
    );
    assert!(
        !out.join("post.env").exists(),
        "no post hook for a cancelled switchover"
    );

    std::fs::write(out.join("allow"), "").unwrap();
    let done = switch_over(&api, "db", "second", Some("db-1"), 60).await;
    assert_eq!(done["outcome"], "recovered", "{done:#}");
    let pre = recorded(out, "pre", 5).await;
    let post = recorded(out, "post", 30).await;
    for env in [&pre, &post] {
        assert_eq!(env["ORC_COMMAND"], "graceful-master-takeover", "{env:#?}");
        assert_eq!(env["ORC_FAILED_HOST"], "db-0");
        assert_eq!(env["ORC_RECOVERY_UID"], done["id"].as_str().unwrap());
    }
    assert!(!pre.contains_key("ORC_SUCCESSOR_HOST"));
    assert_eq!(post["ORC_SUCCESSOR_HOST"], "db-1");
    assert_eq!(read_only(&client, "hookswitch", "db-0").await, "1");
}
