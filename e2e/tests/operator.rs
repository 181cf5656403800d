//! korc on the local control plane: installed by its Helm chart, run by the node
//! agent as a pod, managing real MariaDB pods.

mod common;

use common::korc::*;
use common::{namespace, shared, wait_for};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, Fault};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use mysql_async::prelude::Queryable;
use serde_json::json;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread")]
async fn sample_cluster_replicates_and_status_tells_the_truth() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "sample").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "sample");
    api.create(&PostParams::default(), &sample("db", 3))
        .await
        .unwrap();
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let primary = s["primary"].as_str().unwrap().to_string();
    assert_eq!(primary, "db-0");
    // The pods run with the restricted profile, and a NetworkPolicy guards them.
    let pod = Api::<Pod>::namespaced(client.clone(), "sample")
        .get("db-0")
        .await
        .unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    let security = spec.security_context.unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let policy = Api::<NetworkPolicy>::namespaced(client.clone(), "sample")
        .get("db")
        .await
        .unwrap();
    let ingress = &policy.spec.unwrap().ingress.unwrap()[0];
    assert_eq!(ingress.from.as_ref().unwrap().len(), 3);
    // If the primary failed now, a replica would be promoted.
    let candidate = s["failoverCandidate"]["pod"].as_str().unwrap_or_default();
    assert!(["db-1", "db-2"].contains(&candidate), "{s:#}");
    let conditions = s["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True"),
        "{s:#}"
    );

    // Exactly one writable instance, and it is the primary.
    let pods = ["db-0", "db-1", "db-2"];
    for pod in pods {
        let mut c = root_conn(&client, "sample", "db", pod).await;
        let ro = scalar(&mut c, "SELECT CAST(@@global.read_only + 0 AS CHAR)").await;
        assert_eq!(ro == "0", pod == primary, "{pod} read_only={ro}");
        // root only over the socket; korc's accounts on the network.
        let hosts = scalar(
            &mut c,
            "SELECT GROUP_CONCAT(CONCAT(user, '@', host) ORDER BY user) FROM mysql.user \
             WHERE user IN ('root', 'korc', 'korc_repl', 'korc_monitor')",
        )
        .await;
        assert_eq!(
            hosts, "korc@%,korc_monitor@%,korc_repl@%,root@localhost",
            "{pod}"
        );
    }
    // The -primary Service points at the primary.
    let primary_ip = pod_ip(&client, "sample", &primary).await;
    wait_for("db-primary endpoints", 30, || async {
        (endpoint_ips(&client, "sample", "db-primary").await? == vec![primary_ip.clone()])
            .then_some(())
    })
    .await;

    // Rows written through the primary appear on both replicas.
    let mut p = root_conn(&client, "sample", "db", &primary).await;
    p.query_drop("CREATE DATABASE app").await.unwrap();
    p.query_drop("CREATE TABLE app.t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    p.query_drop("INSERT INTO app.t VALUES (1), (2), (3)")
        .await
        .unwrap();
    let position = gtid_position(&mut p).await;
    for pod in ["db-1", "db-2"] {
        assert_caught_up(&client, "sample", pod, &position, "3").await;
    }

    // A stopped SQL thread shows within 3 s and clears when fixed.
    let mut r1 = root_conn(&client, "sample", "db", "db-1").await;
    r1.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    let t = Instant::now();
    wait_for("ReplicationStopped", 3, || async {
        (analysis_of(&api, "db", "db-1").await.as_deref() == Some("ReplicationStopped"))
            .then_some(())
    })
    .await;
    println!(
        "stopped SQL thread visible in status after {:?}",
        t.elapsed()
    );
    r1.query_drop("START SLAVE SQL_THREAD").await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 5).await;

    // A hung replica (SIGSTOP) shows within 3 s and clears after SIGCONT.
    cp.inject(&Fault::Stop(ContainerRef::pod("sample", "db-2")))
        .await
        .unwrap();
    let t = Instant::now();
    wait_for("db-2 unreachable", 3, || async {
        let s = status(&api, "db").await;
        let i = s["instances"]
            .as_array()?
            .iter()
            .find(|i| i["name"] == "db-2")?
            .clone();
        (i["reachable"] == false
            && analysis_of(&api, "db", "db-2").await.as_deref() == Some("UnreachableReplica"))
        .then_some(())
    })
    .await;
    println!("hung replica visible in status after {:?}", t.elapsed());
    cp.inject(&Fault::Continue(ContainerRef::pod("sample", "db-2")))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 10).await;

    // Probed every second, a steady cluster's status is not rewritten every second:
    // at most one refresh of its volatile fields in 5 s.
    let writes_before = status_writes(&client, "sample", "db").await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let writes = status_writes(&client, "sample", "db").await - writes_before;
    assert!(
        writes <= 1,
        "{writes} status writes in 5 s of a steady cluster"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scaling_up_and_down_and_deleting() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "scale").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "scale");
    api.create(&PostParams::default(), &sample("db", 3))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let mut p = root_conn(&client, "scale", "db", "db-0").await;
    p.query_drop("CREATE DATABASE app").await.unwrap();
    p.query_drop("CREATE TABLE app.t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    p.query_drop("INSERT INTO app.t VALUES (1), (2)")
        .await
        .unwrap();

    let patch = |n: i32| json!({"spec": {"replicas": n}});
    api.patch("db", &PatchParams::default(), &Patch::Merge(patch(5)))
        .await
        .unwrap();
    wait_settled(&api, "db", "5/5", "NoProblem", 120).await;
    let position = gtid_position(&mut p).await;
    for pod in ["db-3", "db-4"] {
        assert_caught_up(&client, "scale", pod, &position, "2").await;
    }
    api.patch("db", &PatchParams::default(), &Patch::Merge(patch(3)))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "scale");
    wait_for("scaled-down pods gone", 60, || async {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=db"))
            .await
            .ok()?;
        (list.items.len() == 3).then_some(())
    })
    .await;

    api.delete("db", &DeleteParams::default()).await.unwrap();
    let sts = Api::<StatefulSet>::namespaced(client.clone(), "scale");
    let services = Api::<Service>::namespaced(client.clone(), "scale");
    let maps = Api::<ConfigMap>::namespaced(client.clone(), "scale");
    let secrets = Api::<Secret>::namespaced(client.clone(), "scale");
    let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), "scale");
    wait_for("children deleted", 60, || async {
        let gone = sts.get_opt("db").await.ok()?.is_none()
            && services.get_opt("db-primary").await.ok()?.is_none()
            && services.get_opt("db").await.ok()?.is_none()
            && maps.get_opt("db-config").await.ok()?.is_none()
            && secrets.get_opt("db-credentials").await.ok()?.is_none()
            && pdbs.get_opt("db").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    // The operator forgets it too: no metric series of the deleted cluster remain.
    let series = "namespace=\"scale\",cluster=\"db\"";
    wait_for(
        "the deleted cluster's metric series dropped",
        30,
        || async { (!leader_metrics(&client).await.contains(series)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn single_instance_is_a_writable_primary_without_failover() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "single").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "single");
    // A probe interval far longer than the test: only pod events can bring korc back.
    let mut solo = sample("solo", 1);
    solo.spec.probe_interval_ms = 60_000;
    api.create(&PostParams::default(), &solo).await.unwrap();
    let s = wait_settled(&api, "solo", "1/1", "NoProblem", 120).await;
    let blocked = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "RecoveryBlocked")
        .unwrap()
        .clone();
    assert_eq!(blocked["status"], "True");
    assert_eq!(blocked["reason"], "SingleInstance");
    assert!(
        blocked["message"]
            .as_str()
            .unwrap()
            .contains("no failover possible")
    );
    let mut c = root_conn(&client, "single", "solo", "solo-0").await;
    assert_eq!(
        scalar(&mut c, "SELECT CAST(@@global.read_only + 0 AS CHAR)").await,
        "0"
    );

    // kill -9 of the primary: it restarts read-only, and the pod event makes korc
    // reconcile at once, long before the 60 s probe interval.
    cp.inject(&Fault::Kill(ContainerRef::pod("single", "solo-0")))
        .await
        .unwrap();
    let t = Instant::now();
    wait_for("solo-0 writable again", 15, || async {
        let mut c = try_root_conn(&client, "single", "solo", "solo-0").await?;
        let ro: Option<String> = c
            .query_first("SELECT CAST(@@global.read_only + 0 AS CHAR)")
            .await
            .ok()?;
        (ro.as_deref() == Some("0")).then_some(())
    })
    .await;
    println!("restarted primary writable again after {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_specs_are_rejected_by_the_api_server_naming_the_field() {
    let cp = shared().await;
    let client = cp.client().await.unwrap();
    let crds = repo().join("crds/mysqlclusters.korc.dev.yaml");
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(["apply", "--server-side", "-f"])
        .arg(&crds)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    namespace(&client, "invalid").await;
    let api = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "invalid",
        &kube::api::ApiResource::erase::<MySQLCluster>(&()),
    );
    let base = json!({"apiVersion": "korc.dev/v1alpha1", "kind": "MySQLCluster", "metadata": {"name": "bad"},
        "spec": {"replicas": 3, "image": "mariadb:10.11"}});
    let cases = [
        ("/spec/replicas", json!(0), "spec.replicas"),
        ("/spec/replicas", json!(12), "spec.replicas"),
        (
            "/spec/instances",
            json!({"bad-0": {"promotionRule": "always"}}),
            "promotionRule",
        ),
        (
            "/spec/recovery",
            json!({"blockPeriodSeconds": -1}),
            "spec.recovery.blockPeriodSeconds",
        ),
        ("/spec/image", json!("Not An Image!"), "spec.image"),
        (
            "/spec/switchover",
            json!({"requestId": "x"}),
            "spec.switchover needs at least 2 replicas",
        ),
        (
            "/spec/mysqlConfig",
            json!({"loose_read_only": "OFF"}),
            "spec.mysqlConfig: a setting korc manages",
        ),
        (
            "/spec/mysqlConfig",
            json!({"Loose-GTID-Strict-Mode": "OFF"}),
            "spec.mysqlConfig: a setting korc manages",
        ),
        (
            "/spec/mysqlConfig",
            json!({"sync_binlog": "0"}),
            "spec.mysqlConfig: a setting korc manages",
        ),
        (
            "/spec/mysqlConfig",
            json!({"[client]": "x"}),
            "spec.mysqlConfig: a setting name is",
        ),
        (
            "/spec/mysqlConfig",
            json!({"!include /etc/secrets.cnf": ""}),
            "spec.mysqlConfig: a setting name is",
        ),
        (
            "/spec/mysqlConfig",
            json!({"max_connections": "100\n[mysqld]\nread_only=0"}),
            "spec.mysqlConfig: a value may not contain a line break",
        ),
        (
            "/spec/hooks",
            json!({"preFailover": [{"name": "page", "template": {"spec": {"containers": []}}}]}),
            "spec.hooks.preFailover[0].template.spec.containers",
        ),
        (
            "/spec/hooks",
            json!({"postFailover": [{"name": "page", "template": {"metadata": {}}}]}),
            "spec.hooks.postFailover[0].template.spec",
        ),
        (
            "/spec/hooks",
            json!({"preFailover": [{"name": "page", "timeoutSeconds": -5,
                "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}]}),
            "spec.hooks.preFailover[0].timeoutSeconds",
        ),
    ];
    for (pointer, value, expected) in cases {
        let mut doc = base.clone();
        if pointer == "/spec/switchover" {
            doc["spec"]["replicas"] = json!(1);
        }
        let field = pointer.trim_start_matches("/spec/");
        doc["spec"][field] = value.clone();
        // Kubernetes ships CRDs asynchronously: wait until the schema is enforced.
        let err = wait_for(&format!("rejection of {pointer}={value}"), 30, || {
            let api = api.clone();
            let doc = doc.clone();
            async move {
                let obj: DynamicObject = serde_json::from_value(doc).unwrap();
                match api.create(&PostParams::default(), &obj).await {
                    Err(kube::Error::Api(s)) if s.code == 422 => Some(s.message),
                    Ok(_) => {
                        let _ = api.delete("bad", &DeleteParams::default()).await;
                        None
                    }
                    Err(_) => None,
                }
            }
        })
        .await;
        assert!(err.contains(expected), "{pointer}={value}: {err}");
    }
    // An unknown hook name is refused by kubectl, whose default is strict validation.
    let mut doc = base.clone();
    doc["metadata"]["namespace"] = json!("invalid");
    doc["spec"]["hooks"] = json!({"onFailreDetection": [{"name": "page",
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}]});
    let file = std::env::temp_dir().join(format!("korc-unknown-hook-{}.json", std::process::id()));
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(["create", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown hook name was accepted");
    assert!(
        stderr.contains("unknown field \"spec.hooks.onFailreDetection\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restarted_replica_rejoins_config_rolls_and_errant_replica_is_held_out() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "rejoin").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "rejoin");
    api.create(&PostParams::default(), &sample("db", 3))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "rejoin");

    // kill -9 of a replica: the container restarts and the replica rejoins by itself.
    cp.inject(&Fault::Kill(ContainerRef::pod("rejoin", "db-1")))
        .await
        .unwrap();
    let t = Instant::now();
    wait_for("db-1 restarted", 60, || async {
        let p = pods.get("db-1").await.ok()?;
        (common::restarts(&p) >= 1 && common::is_ready(&p)).then_some(())
    })
    .await;
    wait_settled(&api, "db", "3/3", "NoProblem", 30).await;
    let s = status(&api, "db").await;
    let db1 = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "db-1")
        .unwrap()
        .clone();
    assert_eq!(
        (db1["ioThread"].as_str(), db1["sqlThread"].as_str()),
        (Some("Yes"), Some("Yes")),
        "{db1:#}"
    );
    println!(
        "killed replica back in the topology after {:?}",
        t.elapsed()
    );

    // A configuration change rolls the pods; every instance runs with it afterwards.
    let patch = json!({"spec": {"mysqlConfig": {"max_connections": "321"}}});
    api.patch("db", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    wait_for("every pod runs with max_connections=321", 180, || async {
        for pod in ["db-0", "db-1", "db-2"] {
            if !common::is_ready(&pods.get(pod).await.ok()?) {
                return None;
            }
            let mut c = try_root_conn(&client, "rejoin", "db", pod).await?;
            let v: Option<String> = c
                .query_first("SELECT CAST(@@global.max_connections AS CHAR)")
                .await
                .ok()?;
            if v.as_deref() != Some("321") {
                return None;
            }
        }
        Some(())
    })
    .await;
    // The primary's pod restarts last, after a switchover: whichever instance is
    // primary afterwards accepts writes.
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 60).await;
    let primary = s["primary"].as_str().unwrap().to_string();
    let mut p = root_conn(&client, "rejoin", "db", &primary).await;
    assert_eq!(
        scalar(&mut p, "SELECT CAST(@@global.read_only + 0 AS CHAR)").await,
        "0",
        "the primary is writable after the roll"
    );
    let replicas: Vec<&str> = ["db-0", "db-1", "db-2"]
        .into_iter()
        .filter(|pod| *pod != primary)
        .collect();
    let (kept, errant_pod) = (replicas[0], replicas[1]);

    // A write on a replica is an errant transaction: flagged, held out, never merged.
    let mut errant = root_conn(&client, "rejoin", "db", errant_pod).await;
    errant.query_drop("CREATE DATABASE errant").await.unwrap();
    wait_for("the replica flagged as errant", 10, || async {
        (analysis_of(&api, "db", errant_pod).await.as_deref() == Some("ErrantGTIDDetected"))
            .then_some(())
    })
    .await;
    let s = status(&api, "db").await;
    let held = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == errant_pod)
        .unwrap()
        .clone();
    assert_eq!(held["role"], "excluded", "{held:#}");
    let replica_ip = pod_ip(&client, "rejoin", kept).await;
    wait_for("db-replicas lists only the clean replica", 30, || async {
        (endpoint_ips(&client, "rejoin", "db-replicas").await? == vec![replica_ip.clone()])
            .then_some(())
    })
    .await;
}
