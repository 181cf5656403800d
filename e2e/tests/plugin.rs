//! `kubectl korc` on the local control plane: the korc binary linked as `kubectl-korc`
//! into a directory on PATH and run through the real kubectl, against MySQLClusters
//! whose status the tests write themselves (no operator runs here, so nothing else
//! changes the objects).

mod common;

use common::kubectl_korc::Kubectl;
use common::{namespace, shared, wait_for};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::jiff::Timestamp;
use korc::api::MySQLCluster;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn instance(name: &str, role: &str, source: Option<&str>) -> Value {
    let mut i = json!({"name": name, "role": role, "reachable": true, "readOnly": role != "primary",
        "gtidPosition": "0-1-42", "promotionRule": "neutral"});
    if let Some(source) = source {
        i["source"] = json!(source);
        i["ioThread"] = json!("Yes");
        i["sqlThread"] = json!("Yes");
        i["lagSeconds"] = json!(0);
    }
    i
}

/// Creates MySQLCluster `db` with 3 instances in `ns` and writes its status: db-0 the
/// primary, db-1 replicating from it, and db-2 from db-1 with its SQL thread stopped.
async fn cluster(client: &kube::Client, ns: &str) -> Api<MySQLCluster> {
    namespace(client, ns).await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), ns);
    let object: MySQLCluster = serde_json::from_value(json!({
        "apiVersion": "korc.dev/v1alpha1", "kind": "MySQLCluster",
        "metadata": {"name": "db"},
        "spec": {"replicas": 3, "image": "mariadb:10.11"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
    let mut stopped = instance("db-2", "replica", Some("db-1"));
    stopped["sqlThread"] = json!("No");
    write_status(
        &api,
        json!({
            "primary": "db-0", "ready": "3/3", "analysisCode": "ReplicationStopped",
            "instances": [instance("db-0", "primary", None), instance("db-1", "replica", Some("db-0")), stopped],
            "analysis": [
                {"code": "NoProblem", "instance": "db-0", "description": "", "actionable": false, "evidence": {}},
                {"code": "ReplicationStopped", "instance": "db-2", "description": "SQL thread stopped",
                 "actionable": false, "evidence": {}},
            ],
        }),
    )
    .await;
    api
}

async fn write_status(api: &Api<MySQLCluster>, status: Value) {
    api.patch_status(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

async fn object(api: &Api<MySQLCluster>) -> Value {
    serde_json::to_value(api.get("db").await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn topology_draws_every_instance_under_its_source() {
    let cp = shared().await;
    let client = cp.client().await.unwrap();
    let kubectl = Kubectl::new(cp, "plugin-topology", "local").await;
    cluster(&client, "plugin-topology").await;

    let text = kubectl.ok(&["topology", "db"]).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "plugin-topology/db: primary db-0, analysis ReplicationStopped, ready 3/3",
        "{text}"
    );
    assert!(
        lines[1].starts_with("db-0  [primary, gtid 0-1-42, rw, reachable]"),
        "{text}"
    );
    assert!(
        lines[2]
            .starts_with("+ db-1  [replica, gtid 0-1-42, lag 0s, io Yes, sql Yes, ro, reachable]"),
        "{text}"
    );
    assert_eq!(
        lines[3],
        "  + db-2  [replica, gtid 0-1-42, lag 0s, io Yes, sql No, ro, reachable]  ReplicationStopped",
        "{text}"
    );
    assert_eq!(lines.len(), 4, "{text}");

    let doc: Value =
        serde_json::from_str(&kubectl.ok(&["topology", "db", "-o", "json"]).await).unwrap();
    assert_eq!(doc["namespace"], "plugin-topology");
    assert_eq!(doc["primary"], "db-0");
    let root = &doc["topology"][0];
    assert_eq!(root["name"], "db-0");
    assert_eq!(root["replicas"][0]["name"], "db-1");
    assert_eq!(root["replicas"][0]["replicas"][0]["name"], "db-2");
    assert_eq!(
        root["replicas"][0]["replicas"][0]["analysis"],
        json!(["ReplicationStopped"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn switchover_sets_a_fresh_request_and_waits_for_the_new_primary() {
    let cp = shared().await;
    let client = cp.client().await.unwrap();
    let kubectl = Kubectl::new(cp, "plugin-switchover", "local").await;
    let api = cluster(&client, "plugin-switchover").await;

    let first = kubectl.ok(&["switchover", "db", "--to", "db-1"]).await;
    let first = first.trim();
    assert_eq!(
        object(&api).await["spec"]["switchover"],
        json!({"requestId": first, "to": "db-1"})
    );
    // A new request without a target: a new id, and the earlier target is gone.
    let second = kubectl.ok(&["switchover", "db"]).await;
    let second = second.trim();
    assert_ne!(first, second);
    assert_eq!(
        object(&api).await["spec"]["switchover"],
        json!({"requestId": second})
    );

    // Targets that cannot be promoted are refused before anything is written.
    let stderr = kubectl
        .fails(&["switchover", "db", "--to", "db-7"], 1)
        .await;
    assert!(
        stderr.contains("db-7 is not an instance of db (instances: db-0, db-1, db-2)"),
        "{stderr}"
    );
    let stderr = kubectl
        .fails(&["switchover", "db", "--to", "db-0"], 1)
        .await;
    assert!(stderr.contains("db-0 is already the primary"), "{stderr}");
    assert_eq!(
        object(&api).await["spec"]["switchover"]["requestId"],
        second
    );

    // --wait returns once the status shows the requested primary (the test plays the
    // operator).
    let waiting = kubectl
        .command(&[
            "switchover",
            "db",
            "--to",
            "db-2",
            "--wait",
            "--timeout",
            "60",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let request = wait_for("the switchover request to db-2", 30, || async {
        let s = object(&api).await["spec"]["switchover"].clone();
        (s["to"] == "db-2").then(|| s["requestId"].as_str().unwrap().to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    write_status(&api, json!({"primary": "db-2"})).await;
    let promoted = Instant::now();
    let out = waiting.wait_with_output().await.unwrap();
    let returned = promoted.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        format!("{request}\nplugin-switchover/db: db-2 is the primary\n")
    );
    println!("switchover --wait returned {returned:?} after the status named the new primary");

    // Nothing happens: --wait gives up and says what it saw.
    let stderr = kubectl
        .fails(
            &[
                "switchover",
                "db",
                "--to",
                "db-1",
                "--wait",
                "--timeout",
                "1",
            ],
            1,
        )
        .await;
    assert!(
        stderr.contains("no outcome after 1 s (primary: db-2)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ack_pause_and_resume_change_the_cluster() {
    let cp = shared().await;
    let client = cp.client().await.unwrap();
    let kubectl = Kubectl::new(cp, "plugin-controls", "local").await;
    let api = cluster(&client, "plugin-controls").await;

    let before = Timestamp::now();
    let stdout = kubectl.ok(&["ack", "db"]).await;
    let after = Timestamp::now();
    let value = object(&api).await["metadata"]["annotations"]["korc.dev/acknowledge"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        stdout,
        format!("plugin-controls/db: korc.dev/acknowledge={value}\n")
    );
    let (when, who) = value.split_once(' ').unwrap();
    let when: Timestamp = when.parse().unwrap();
    assert!(
        when.as_second() >= before.as_second() && when <= after,
        "{value}"
    );
    let me = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap()
        .status
        .unwrap()
        .user_info
        .unwrap()
        .username
        .unwrap();
    assert_eq!(who, me);

    kubectl.ok(&["pause", "db"]).await;
    assert_eq!(object(&api).await["spec"]["paused"], true);
    let text = kubectl.ok(&["topology", "db"]).await;
    assert!(
        text.starts_with(
            "plugin-controls/db: primary db-0, analysis ReplicationStopped, ready 3/3, paused\n"
        ),
        "{text}"
    );
    kubectl.ok(&["resume", "db"]).await;
    assert_eq!(object(&api).await["spec"]["paused"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_context_and_kubeconfig_are_honoured_and_errors_say_where() {
    let cp = shared().await;
    let client = cp.client().await.unwrap();
    // The current context points at a server that does not exist.
    let kubectl = Kubectl::new(cp, "default", "elsewhere").await;
    cluster(&client, "plugin-flags").await;

    let stderr = kubectl
        .fails(&["topology", "db", "-n", "plugin-flags"], 1)
        .await;
    assert!(
        stderr.starts_with("kubectl korc: reading plugin-flags/db on https://127.0.0.1:1/: "),
        "{stderr}"
    );
    let text = kubectl
        .ok(&["topology", "db", "--context", "local", "-n", "plugin-flags"])
        .await;
    assert!(text.starts_with("plugin-flags/db: primary db-0"), "{text}");
    // --kubeconfig wins over KUBECONFIG.
    let text = kubectl
        .ok(&[
            "--kubeconfig",
            cp.kubeconfig().to_str().unwrap(),
            "-n",
            "plugin-flags",
            "topology",
            "db",
        ])
        .await;
    assert!(text.starts_with("plugin-flags/db: primary db-0"), "{text}");

    // The context's namespace applies without -n.
    let stderr = kubectl
        .fails(&["pause", "db", "--context", "local"], 1)
        .await;
    assert!(
        stderr.contains(r#"MySQLCluster "db" not found in namespace "default""#),
        "{stderr}"
    );
    let stderr = kubectl
        .fails(
            &["ack", "nope", "--context", "local", "-n", "plugin-flags"],
            1,
        )
        .await;
    assert!(
        stderr.contains(r#"MySQLCluster "nope" not found in namespace "plugin-flags""#),
        "{stderr}"
    );
    let stderr = kubectl
        .fails(&["topology", "db", "--context", "missing"], 1)
        .await;
    assert!(
        stderr.contains("cannot configure the Kubernetes client"),
        "{stderr}"
    );
    // The engine's command line is not the plugin's, and stays the engine's.
    kubectl
        .fails(&["switchover", "--instances", "127.0.0.1:3306"], 2)
        .await;
    let engine = std::process::Command::new(korc_e2e::agent::default_korc_binary())
        .args(["switchover", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&engine.stdout).contains("--instances"));
}
