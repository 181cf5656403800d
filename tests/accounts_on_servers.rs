//! korc's accounts on real MariaDB and MySQL servers, created by the same SQL korc
//! provisions: each does its job and reads or writes no user data; and a fenced
//! primary refuses writes from every account, privileged ones included.

#[macro_use]
mod support;

use mysql_async::prelude::Queryable;
use support::{ADMIN, Flavor, MONITOR, REPL, Sandbox, korc_as, korc_json};

on_both_flavors!(
    korc_accounts_do_their_jobs_and_touch_no_user_data;
    async:
    a_switchover_ends_the_sessions_read_only_does_not_bind,
);

/// `korc analyze` as the monitoring account: reads are all it needs.
fn analyze_as_monitor(sb: &Sandbox) -> serde_json::Value {
    let (code, out, err) = korc_as(
        MONITOR,
        &[
            "analyze",
            "--instances",
            &sb.instances(),
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn korc_accounts_do_their_jobs_and_touch_no_user_data(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 3);
    let primary = &sb.servers[0];
    primary
        .app_sql("INSERT INTO t (v) VALUES ('private')")
        .unwrap();
    for replica in &sb.servers[1..] {
        replica.wait_caught_up(primary);
    }

    // Each account does its job: the monitor reads the topology, the replication
    // account carries the replicas (the sandbox attached them with it), the operator's
    // moves the primary.
    let doc = analyze_as_monitor(&sb);
    let instances = doc["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 3, "{doc:#}");
    assert!(
        instances.iter().all(|i| i["reachable"] == true),
        "the monitor reads every instance: {doc:#}"
    );
    for replica in &sb.servers[1..] {
        assert_eq!(replica.io_running(), "Yes");
    }
    let (code, rec) = korc_json(&["switchover", "--instances", &sb.instances()]);
    assert_eq!(code, 0, "{rec:#}");

    // None reads or writes a user table, on any instance.
    for server in &sb.servers {
        for account in [ADMIN, REPL, MONITOR] {
            let read = server
                .account_sql(account, "SELECT v FROM test.t")
                .unwrap_err();
            assert!(
                read.contains("denied"),
                "{} reads on {}: {read}",
                account.0,
                server.key()
            );
            let write = server
                .account_sql(account, "INSERT INTO test.t (v) VALUES ('x')")
                .unwrap_err();
            assert!(write.contains("denied"), "{} writes: {write}", account.0);
        }
    }
    // The operator's account holds no SUPER and no global SELECT; on MySQL it reads
    // the two tables where a copy's recipient reports it, and nothing else.
    let grants = primary.sql(&format!("SHOW GRANTS FOR '{}'@'%'", ADMIN.0));
    for grant in grants.lines() {
        if grant.contains(" ON *.* ") {
            for word in ["SUPER", "SELECT", "ALL PRIVILEGES"] {
                assert!(
                    !grant.split([' ', ',']).any(|w| w == word),
                    "{word} in {grants}"
                );
            }
        } else {
            assert!(
                grant.starts_with("GRANT SELECT ON `performance_schema`.`clone_"),
                "{grants}"
            );
        }
    }
}

/// A DBA's session of an all-powerful account, open on the primary across a
/// switchover: MariaDB's `read_only` does not bind it, so the fence ends it.
async fn a_switchover_ends_the_sessions_read_only_does_not_bind(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 3);
    let primary = &sb.servers[0];
    primary.sql(
        "CREATE USER 'dba'@'%' IDENTIFIED BY 'dba-pw'; \
         GRANT ALL PRIVILEGES ON *.* TO 'dba'@'%' WITH GRANT OPTION",
    );
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(primary.ip.to_string())
        .user(Some("dba"))
        .pass(Some("dba-pw"))
        .prefer_socket(false);
    let mut dba = mysql_async::Conn::new(opts).await.unwrap();
    dba.query_drop("INSERT INTO test.t (v) VALUES ('dba before')")
        .await
        .unwrap();

    let instances = sb.instances();
    let (code, rec) =
        tokio::task::spawn_blocking(move || korc_json(&["switchover", "--instances", &instances]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{rec:#}");
    let successor = sb.by_key(rec["successor"].as_str().unwrap());

    let after = dba
        .query_drop("INSERT INTO test.t (v) VALUES ('dba after')")
        .await;
    assert!(
        after.is_err(),
        "the old primary took a write from a privileged session after the switchover"
    );
    // Nothing of the old primary is missing on the new one, and nothing is errant.
    for s in &sb.servers {
        if s.key() != successor.key() {
            s.wait_caught_up(successor);
        }
        assert_eq!(
            s.sql("SELECT COUNT(*) FROM test.t WHERE v LIKE 'dba%'"),
            "1"
        );
    }
    let (code, doc) = korc_json(&[
        "analyze",
        "--instances",
        &sb.instances(),
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "healthy after the switchover: {doc:#}");
}
