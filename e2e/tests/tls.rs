//! TLS on the local control plane: a cluster created with the default spec gets the
//! cluster's CA and server certificate, replicates over TLS, korc probes it over TLS
//! (its account refuses plain text), and a certificate due for renewal is reissued and
//! served by every running server without a restart.

mod common;

use common::korc::*;
use common::{namespace, restarts, wait_for};
use k8s_openapi::api::core::v1::{Pod, Secret};
use korc::api::MySQLCluster;
use korc::provisioning::certificates::{
    self, Authority, SERVER_LIFETIME, ServerCertificate, server_names,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

async fn secret_data(client: &kube::Client, ns: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// korc's account over TLS verified against `ca`, to a pod.
async fn korc_conn(client: &kube::Client, ns: &str, pod: &str, ca: &str) -> mysql_async::Conn {
    let passwords = secret_data(client, ns, "db-credentials").await;
    let operator = String::from_utf8(passwords["operator-password"].clone()).unwrap();
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(pod_ip(client, ns, pod).await)
        .user(Some("korc"))
        .pass(Some(operator))
        .prefer_socket(false)
        .ssl_opts(Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![ca.as_bytes().to_vec().into()])
                .with_disable_built_in_roots(true)
                .with_danger_tls_hostname_override(Some(format!("db.{ns}.svc"))),
        ));
    mysql_async::Conn::new(opts).await.unwrap()
}

/// The end of validity of the certificate a server serves to a new connection (the
/// servers show it to TLS sessions only).
async fn served(client: &kube::Client, ns: &str, pod: &str, ca: &str) -> Option<SystemTime> {
    use mysql_async::prelude::Queryable;
    let mut c = korc_conn(client, ns, pod, ca).await;
    let row: Option<(String, String)> = c
        .query_first("SHOW GLOBAL STATUS LIKE 'Ssl\\_server\\_not\\_after'")
        .await
        .unwrap();
    korc::topology::tls::parse_openssl_time(&row?.1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_cluster_runs_on_tls_and_renews_without_a_restart() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    let ns = "tls";
    namespace(&client, ns).await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), ns);
    let cluster = sample("db", 3);
    assert!(cluster.spec.tls.enabled, "TLS is the default");
    api.create(&PostParams::default(), &cluster).await.unwrap();
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 180).await;
    let primary = s["primary"].as_str().unwrap().to_string();

    // The cluster's CA and the servers' certificate, signed by it.
    let ca = Authority::from_secret_data(&secret_data(&client, ns, "db-ca").await).unwrap();
    let server =
        ServerCertificate::from_secret_data(&secret_data(&client, ns, "db-tls").await).unwrap();
    assert_eq!(server.ca, ca.cert);
    let facts = certificates::facts(&server.cert).unwrap();
    assert!(
        facts.names.contains(&"db-2.db.tls.svc".to_string()),
        "{facts:?}"
    );

    // Replicas stream over TLS, every server serves the certificate.
    for pod in ["db-0", "db-1", "db-2"] {
        assert_eq!(
            served(&client, ns, pod, &ca.cert).await,
            Some(facts.not_after),
            "{pod}"
        );
        if pod == primary {
            continue;
        }
        let mut c = root_conn(&client, ns, "db", pod).await;
        assert_eq!(
            replica_field(&mut c, "Master_SSL_Allowed").await,
            "Yes",
            "{pod}"
        );
        assert_eq!(
            replica_field(&mut c, "Slave_IO_Running").await,
            "Yes",
            "{pod}"
        );
    }

    // korc's account (which probes: the cluster is healthy) refuses plain text.
    let passwords = secret_data(&client, ns, "db-credentials").await;
    let operator = String::from_utf8(passwords["operator-password"].clone()).unwrap();
    let plain = mysql_async::OptsBuilder::default()
        .ip_or_hostname(pod_ip(&client, ns, "db-1").await)
        .user(Some("korc"))
        .pass(Some(operator))
        .prefer_socket(false);
    let refused = mysql_async::Conn::new(plain).await.unwrap_err();
    assert!(refused.to_string().contains("denied"), "{refused}");
    let mut c = korc_conn(&client, ns, "db-1", &ca.cert).await;
    let cipher = scalar(
        &mut c,
        "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_CIPHER'",
    )
    .await;
    assert!(!cipher.is_empty());

    // A certificate due for renewal (issued 70 of its 90 days ago) replaces the
    // servers' one: korc reissues it, the node refreshes the files, korc has every
    // server reload them.
    let restarts_before: Vec<i32> =
        futures::future::join_all(["db-0", "db-1", "db-2"].map(|pod| {
            let pods = Api::<Pod>::namespaced(client.clone(), ns);
            async move { restarts(&pods.get(pod).await.unwrap()) }
        }))
        .await;
    let issued_at = SystemTime::now() - Duration::from_secs(70 * 24 * 3600);
    let due =
        certificates::issue_server(&ca, &server_names("db", ns, 3), issued_at, SERVER_LIFETIME)
            .unwrap();
    let due_not_after = certificates::facts(&due.cert).unwrap().not_after;
    let mut secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db-tls", "namespace": ns},
    }))
    .unwrap();
    secret.string_data = Some(due.to_secret_data());
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "db-tls",
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let renewed = wait_for("korc to reissue the certificate", 120, || async {
        let data = secret_data(&client, ns, "db-tls").await;
        let cert = ServerCertificate::from_secret_data(&data)?;
        let f = certificates::facts(&cert.cert).ok()?;
        (f.not_after != due_not_after && f.not_after != facts.not_after).then_some(f)
    })
    .await;
    assert!(
        !certificates::renewal_due(renewed.not_before, renewed.not_after, SystemTime::now()),
        "{renewed:?}"
    );
    for pod in ["db-0", "db-1", "db-2"] {
        wait_for(
            &format!("{pod} to serve the renewed certificate"),
            60,
            || async {
                (served(&client, ns, pod, &ca.cert).await == Some(renewed.not_after)).then_some(())
            },
        )
        .await;
    }
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    for (pod, before) in ["db-0", "db-1", "db-2"].iter().zip(restarts_before) {
        assert_eq!(
            restarts(&pods.get(pod).await.unwrap()),
            before,
            "{pod} restarted"
        );
    }
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 30).await;
    assert_eq!(s["primary"], primary.as_str(), "no failover");
}
