//! Passwords on the local control plane: each password of the credentials Secret
//! rotated under a running writer, and a lost generated Secret reported instead of
//! silently regenerated.

mod common;

use common::korc::*;
use common::workload::{Writer, assert_everywhere, create_app_schema};
use common::{namespace, wait_for};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use korc::api::MySQLCluster;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use mysql_async::prelude::Queryable;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PODS: [&str; 3] = ["db-0", "db-1", "db-2"];

async fn secret_data(secrets: &Api<Secret>, name: &str) -> BTreeMap<String, String> {
    let secret = secrets.get(name).await.unwrap();
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, ByteString(v))| (k, String::from_utf8(v).unwrap()))
        .collect()
}

/// Whether `user` gets in on `pod` over the network (TLS, which korc's accounts
/// require) with `password`.
async fn logs_in(client: &kube::Client, pod: &str, user: &str, password: &str) -> bool {
    let tls = mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true);
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(pod_ip(client, "rotate", pod).await)
        .user(Some(user))
        .pass(Some(password))
        .ssl_opts(Some(tls))
        .prefer_socket(false);
    match mysql_async::Conn::new(opts).await {
        Ok(c) => {
            let _ = c.disconnect().await;
            true
        }
        Err(_) => false,
    }
}

/// Changes `keys` of the generated credentials Secret and waits until korc records
/// them as in force; returns how long that took.
async fn rotate(secrets: &Api<Secret>, keys: &[(&str, &str)]) -> Duration {
    let string_data: BTreeMap<&str, &str> = keys.iter().copied().collect();
    let started = Instant::now();
    secrets
        .patch(
            "db-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": string_data })),
        )
        .await
        .unwrap();
    wait_for("the new passwords in force", 60, || async {
        let in_force = secret_data(secrets, "db-credentials-in-force").await;
        keys.iter()
            .all(|(k, v)| in_force.get(*k).map(String::as_str) == Some(*v))
            .then_some(())
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_password_rotates_on_every_instance_under_a_running_writer() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "rotate").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "rotate");
    let mut cluster = sample("db", 3);
    cluster.spec.semi_sync = Some(korc::api::SemiSyncSpec {
        enabled: true,
        timeout_ms: None,
    });
    api.create(&PostParams::default(), &cluster).await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), "rotate");
    let old = secret_data(&secrets, "db-credentials").await;
    assert_eq!(
        secret_data(&secrets, "db-credentials-in-force").await,
        old,
        "a new cluster's passwords are in force"
    );
    let mut root = root_conn(&client, "rotate", "db", "db-0").await;
    create_app_schema(&mut root).await;
    let writer = Writer::start(client.clone(), "rotate", "db");
    wait_for("the writer's first rows", 20, || async {
        (writer.count() >= 20).then_some(())
    })
    .await;

    // Replication first: the delicate one, alone.
    let took = rotate(&secrets, &[("replication-password", "repl-rotated-1")]).await;
    println!("replication password rotated in {took:?}");
    // The others together.
    let took = rotate(
        &secrets,
        &[
            ("operator-password", "korc-rotated-1"),
            ("monitor-password", "monitor-rotated-1"),
            ("root-password", "root-rotated-1"),
        ],
    )
    .await;
    println!("operator, monitor and root passwords rotated in {took:?}");
    let since = writer.count();
    wait_for("more rows after the rotations", 20, || async {
        (writer.count() >= since + 50).then_some(())
    })
    .await;
    let gap = writer.longest_gap();
    let acknowledged = writer.stop().await;
    println!(
        "{} rows acknowledged; longest gap between two inserts {gap:?}",
        acknowledged.len()
    );

    for pod in PODS {
        for (user, new, old) in [
            ("korc", "korc-rotated-1", &old["operator-password"]),
            ("korc_repl", "repl-rotated-1", &old["replication-password"]),
            (
                "korc_monitor",
                "monitor-rotated-1",
                &old["monitor-password"],
            ),
        ] {
            assert!(logs_in(&client, pod, user, new).await, "{user} on {pod}");
            assert!(
                !logs_in(&client, pod, user, old).await,
                "{user} old on {pod}"
            );
        }
        // Root, over the socket, with the Secret's new password.
        let mut c = root_conn(&client, "rotate", "db", pod).await;
        if pod != "db-0" {
            // Replication reconnects with the new password.
            c.query_drop("STOP SLAVE IO_THREAD").await.unwrap();
            c.query_drop("START SLAVE IO_THREAD").await.unwrap();
            wait_for(&format!("{pod} receiving again"), 20, || async {
                let mut conn = try_root_conn(&client, "rotate", "db", pod).await?;
                let row: Option<mysql_async::Row> =
                    conn.query_first("SHOW SLAVE STATUS").await.ok()?;
                let io: String = row?.get("Slave_IO_Running")?;
                (io == "Yes").then_some(())
            })
            .await;
        }
    }
    assert_everywhere(&client, "rotate", "db", &PODS, &acknowledged).await;
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 30).await;
    assert!(
        s["recoveries"].as_array().is_none_or(Vec::is_empty),
        "{s:#}"
    );
    assert!(
        gap < Duration::from_secs(2),
        "the writer stalled {gap:?} during the rotations"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_generated_secret_is_reported_not_regenerated() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "lost").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "lost");
    api.create(&PostParams::default(), &sample("db", 1))
        .await
        .unwrap();
    wait_settled(&api, "db", "1/1", "NoProblem", 120).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), "lost");
    let original = secrets.get("db-credentials").await.unwrap();
    secrets
        .delete("db-credentials", &DeleteParams::default())
        .await
        .unwrap();
    let message = wait_status(&api, "db", "CredentialsAvailable=False", 30, |s| {
        s["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "CredentialsAvailable" && c["status"] == "False")
            .map(|c| c["message"].as_str().unwrap_or_default().to_string())
    })
    .await;
    assert!(
        message.contains("db-credentials") && message.contains("db-credentials-in-force"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        secrets.get_opt("db-credentials").await.unwrap().is_none(),
        "korc made new passwords for instances that have others"
    );

    // Restored from the passwords in force, the cluster is whole again.
    let in_force = secrets.get("db-credentials-in-force").await.unwrap();
    let restored = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("db-credentials".into()),
            ..Default::default()
        },
        data: in_force.data,
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &restored)
        .await
        .unwrap();
    assert_eq!(
        secrets.get("db-credentials").await.unwrap().data,
        original.data
    );
    wait_status(&api, "db", "the credentials condition cleared", 30, |s| {
        let conditions = s["conditions"].as_array()?;
        (!conditions
            .iter()
            .any(|c| c["type"] == "CredentialsAvailable"))
        .then_some(())
    })
    .await;
    wait_settled(&api, "db", "1/1", "NoProblem", 30).await;
}
