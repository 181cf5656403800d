//! TLS on real MariaDB and MySQL servers, provisioned as korc provisions a cluster:
//! certificates from the cluster's own CA, korc's and the replication account
//! requiring TLS, replicas verifying their source against the CA. korc's sessions and
//! replication run encrypted, plain text is refused, a switchover keeps replication on
//! TLS, and a renewed certificate is served without a restart.

#[macro_use]
mod support;

use korc::topology::instance::InstanceKey;
use korc::topology::session::{Connector, Credentials, Tls};
use korc::topology::tls::{Served, ensure_served, served_not_after};
use std::time::{Duration, SystemTime};
use support::{ADMIN, Flavor, REPL, Sandbox, TLS_SERVER_NAME, korc_json};

on_both_flavors!(
    plain_text_of_korcs_accounts_is_refused,
    a_switchover_keeps_replication_on_tls;
    async:
    korc_and_replication_run_over_tls,
    korc_refuses_a_certificate_of_another_ca,
    a_renewed_certificate_is_served_without_a_restart,
);

fn connector(tls: Tls) -> Connector {
    let mut c = Connector::new(Credentials {
        user: ADMIN.0.into(),
        password: ADMIN.1.into(),
    });
    c.tls = tls;
    c
}

fn key(s: &support::Server) -> InstanceKey {
    s.key().parse().unwrap()
}

/// A `SHOW REPLICA STATUS` field by its MariaDB and MySQL names.
fn replica_field(s: &support::Server, mariadb: &str, mysql: &str) -> String {
    let column = match s.flavor {
        Flavor::MariaDb => mariadb,
        Flavor::Mysql => mysql,
    };
    s.replica_status()
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{column}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn assert_replicates_over_tls(s: &support::Server) {
    assert_eq!(
        replica_field(s, "Master_SSL_Allowed", "Source_SSL_Allowed"),
        "Yes",
        "{}",
        s.replica_status()
    );
    assert!(
        replica_field(s, "Master_SSL_CA_File", "Source_SSL_CA_File").ends_with("ca.crt"),
        "{}",
        s.replica_status()
    );
    assert_eq!(s.io_running(), "Yes", "{}", s.replica_status());
}

async fn korc_and_replication_run_over_tls(flavor: Flavor) {
    let sb = Sandbox::replication_with_tls(flavor, 3);
    let certs = sb.certificates.as_ref().unwrap();
    let c = connector(certs.connector_tls());
    for server in &sb.servers {
        let mut s = c.connect(&key(server)).await.unwrap();
        let status = s
            .name_values("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            .await
            .unwrap();
        let cipher = status.get("Ssl_cipher").cloned().unwrap_or_default();
        assert!(
            !cipher.is_empty(),
            "korc's session is encrypted: {status:?}"
        );
        let probed = korc::topology::probe::probe(&c, &key(server)).await;
        assert!(probed.reachable, "{:?}", probed.error);
    }
    let primary = &sb.servers[0];
    primary
        .app_sql("INSERT INTO t (v) VALUES ('over tls')")
        .unwrap();
    for replica in &sb.servers[1..] {
        // The replication account requires TLS: that it replicates at all proves the
        // source's session of it is encrypted.
        assert_replicates_over_tls(replica);
        replica.wait_caught_up(primary);
    }
    let dumps = primary.sql(&format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{}'",
        REPL.0
    ));
    assert_eq!(dumps, "2", "both replicas stream from the primary");
}

fn plain_text_of_korcs_accounts_is_refused(flavor: Flavor) {
    let sb = Sandbox::replication_with_tls(flavor, 2);
    for server in &sb.servers {
        for account in [ADMIN, REPL] {
            let refused = server
                .account_sql_over(account, "SELECT 1", false)
                .unwrap_err();
            // 1045: access denied at login (REQUIRE SSL), not to some database.
            assert!(
                refused.contains("1045"),
                "{} in plain text: {refused}",
                account.0
            );
            let encrypted = server
                .account_sql_over(account, "SHOW SESSION STATUS LIKE 'Ssl_cipher'", true)
                .unwrap();
            let cipher = encrypted.split('\t').nth(1).unwrap_or_default();
            assert!(!cipher.is_empty(), "{}: {encrypted:?}", account.0);
        }
    }
    // Other accounts are not forced.
    assert!(
        sb.servers[0]
            .account_sql_over(support::APP, "SELECT 1", false)
            .is_ok()
    );
}

async fn korc_refuses_a_certificate_of_another_ca(flavor: Flavor) {
    let sb = Sandbox::replication_with_tls(flavor, 1);
    let server = key(&sb.servers[0]);
    let other =
        korc::provisioning::certificates::issue_authority("other", SystemTime::now()).unwrap();
    let err = connector(Tls::Verified {
        ca: other.cert.into_bytes(),
        server_name: Some(TLS_SERVER_NAME.into()),
    })
    .connect(&server)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    let certs = sb.certificates.as_ref().unwrap();
    let err = connector(Tls::Verified {
        ca: certs.authority.cert.clone().into_bytes(),
        server_name: Some("another-cluster.test.svc".into()),
    })
    .connect(&server)
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("certificate"),
        "the cluster's name is checked: {err}"
    );

    let err = connector(Tls::Disabled).connect(&server).await.unwrap_err();
    assert!(
        err.to_string().contains("denied"),
        "plain text is refused: {err}"
    );
    connector(certs.connector_tls())
        .connect(&server)
        .await
        .expect("the cluster's CA and name");
}

fn a_switchover_keeps_replication_on_tls(flavor: Flavor) {
    let sb = Sandbox::replication_with_tls(flavor, 3);
    let certs = sb.certificates.as_ref().unwrap();
    let ca = certs.ca_path().display().to_string();
    let (code, rec) = korc_json(&[
        "switchover",
        "--instances",
        &sb.instances(),
        "--ssl-ca",
        &ca,
        "--ssl-server-name",
        TLS_SERVER_NAME,
        "--replication-ssl",
    ]);
    assert_eq!(code, 0, "{rec:#}");
    let successor = rec["successor"].as_str().unwrap().to_string();
    let new_primary = sb.by_key(&successor);
    new_primary
        .app_sql("INSERT INTO t (v) VALUES ('after switchover')")
        .unwrap();
    for s in sb.servers.iter().filter(|s| s.key() != successor) {
        assert_eq!(
            s.source_host(),
            new_primary.ip.to_string(),
            "{}",
            s.replica_status()
        );
        support::wait_until(10, "replicating over TLS", || s.io_running() == "Yes");
        assert_replicates_over_tls(s);
        s.wait_caught_up(new_primary);
    }

    // Without TLS korc cannot reach the servers at all.
    let (code, rec) = korc_json(&["switchover", "--instances", &sb.instances()]);
    assert_ne!(code, 0, "{rec:#}");
}

async fn a_renewed_certificate_is_served_without_a_restart(flavor: Flavor) {
    let sb = Sandbox::replication_with_tls(flavor, 2);
    let certs = sb.certificates.as_ref().unwrap();
    let c = connector(certs.connector_tls());
    let primary = &sb.servers[0];
    let uptime = |s: &support::Server| -> u64 {
        s.sql("SHOW GLOBAL STATUS LIKE 'Uptime'")
            .split('\t')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = served_not_after(&c, &key(primary)).await.unwrap().unwrap();
    let positions: Vec<String> = sb.servers.iter().map(|s| s.gtid_position()).collect();
    let uptime_before = uptime(primary);

    // A certificate that ends a day earlier than the first: a different one.
    let lifetime = korc::provisioning::certificates::SERVER_LIFETIME - Duration::from_secs(86_400);
    let renewed = certs.renew(lifetime);
    let expected = korc::provisioning::certificates::facts(&renewed.cert)
        .unwrap()
        .not_after;
    assert_ne!(before, expected);
    assert_eq!(
        served_not_after(&c, &key(primary)).await.unwrap(),
        Some(before),
        "new files alone change nothing"
    );
    for server in &sb.servers {
        assert_eq!(
            ensure_served(&c, &key(server), expected).await.unwrap(),
            Served::Current
        );
        assert_eq!(
            ensure_served(&c, &key(server), expected).await.unwrap(),
            Served::Current,
            "reloading again is harmless"
        );
    }
    let after: Vec<String> = sb.servers.iter().map(|s| s.gtid_position()).collect();
    assert_eq!(
        after, positions,
        "a reload writes no transaction (no errant GTID on replicas)"
    );
    // A fresh connection (a new connector keeps none) sees the new certificate.
    let fresh = connector(certs.connector_tls());
    assert_eq!(
        served_not_after(&fresh, &key(primary)).await.unwrap(),
        Some(expected)
    );
    assert!(uptime(primary) >= uptime_before, "no restart");
    let probed = korc::topology::probe::probe(&c, &key(primary)).await;
    assert!(
        probed.reachable,
        "kept connections live on: {:?}",
        probed.error
    );
    let serial = |s: &support::Server| -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -starttls mysql -connect {}:3306 </dev/null 2>/dev/null \
                 | openssl x509 -noout -serial",
                s.ip
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let expected_serial = korc::provisioning::certificates::facts(&renewed.cert)
        .unwrap()
        .serial
        .to_uppercase();
    assert_eq!(
        serial(primary).trim_start_matches("serial="),
        expected_serial,
        "a new connection gets the new certificate"
    );
    primary
        .app_sql("INSERT INTO t (v) VALUES ('after renewal')")
        .unwrap();
    sb.servers[1].wait_caught_up(primary);
}
