//! Cloning on real MySQL servers: a new instance that cannot replicate because the
//! primary purged the transactions it needs is filled from a caught-up replica chosen
//! by korc, while the application writes on, then attached with GTID auto-positioning.

mod support;

use korc::topology::clone::{choose_donor, clone_mysql, mysql_clone_progress, uptime};
use korc::topology::dialect::ReplicationCredentials;
use korc::topology::instance::InstanceKey;
use korc::topology::policy::Policy;
use korc::topology::probe::{now_ms, probe_cluster};
use korc::topology::recovery::point_to;
use korc::topology::session::{Connector, Credentials};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{ADMIN, Flavor, REPL, Sandbox, wait_until};

fn row_count(server: &support::Server) -> usize {
    server.sql("SELECT COUNT(*) FROM test.t").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_a_new_instance_whose_transactions_were_purged_is_cloned_from_a_replica() {
    let mut sb = Sandbox::replication(Flavor::Mysql, 3);
    let values: Vec<String> = (0..500).map(|i| format!("('before-{i}')")).collect();
    sb.servers[0]
        .app_sql(&format!("INSERT INTO t (v) VALUES {}", values.join(",")))
        .unwrap();
    for i in 1..3 {
        sb.servers[i].wait_caught_up(&sb.servers[0]);
    }
    // The primary forgets every transaction so far.
    sb.servers[0].sql("FLUSH BINARY LOGS");
    sb.servers[0].sql("PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY");
    assert_ne!(sb.servers[0].variable("gtid_purged"), "");

    // A new instance cannot replicate: what it needs is purged.
    let new = sb.add_empty();
    sb.servers[new].replicate_from(&sb.servers[0]);
    wait_until(20, "the new instance refused by the primary", || {
        sb.servers[new].replica_status().contains("purged")
    });

    let connector = Connector::new(Credentials {
        user: ADMIN.0.into(),
        password: ADMIN.1.into(),
    });
    let keys: Vec<InstanceKey> = sb
        .servers
        .iter()
        .map(|s| s.key().parse().unwrap())
        .collect();
    let key = |i: usize| keys[i].clone();
    let instances = probe_cluster(&connector, &keys, &[]).await;
    let choice =
        choose_donor(&instances, &key(0), &key(new), &Policy::default(), now_ms()).unwrap();
    assert!(!choice.primary, "a replica can serve: {choice:?}");
    assert!(choice.donor == key(1) || choice.donor == key(2));

    // The application writes through the primary during the copy.
    let writing = Arc::new(AtomicBool::new(true));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let primary_ip = sb.servers[0].ip;
    let writer = {
        let (writing, acknowledged) = (writing.clone(), acknowledged.clone());
        let app = sb.servers[0]
            .app_command("SELECT 1")
            .get_program()
            .to_owned();
        std::thread::spawn(move || {
            let mut i = 0;
            while writing.load(Ordering::SeqCst) {
                let ok = std::process::Command::new(&app)
                    .args(["--no-defaults", "-h", &primary_ip.to_string(), "-P", "3306"])
                    .args(["-u", support::APP.0, &format!("-p{}", support::APP.1)])
                    .args([
                        "test",
                        "-e",
                        &format!("INSERT INTO t (v) VALUES ('during-{i}')"),
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
            }
        })
    };
    let repl = ReplicationCredentials {
        user: REPL.0.into(),
        password: REPL.1.into(),
        source_ca: None,
    };
    let started = Instant::now();
    let copy = {
        let (connector, to, from, repl) = (
            connector.clone(),
            key(new),
            choice.donor.clone(),
            repl.clone(),
        );
        tokio::spawn(async move {
            clone_mysql(&connector, &to, &from, &repl, 0, Duration::from_secs(120)).await
        })
    };
    // korc's account follows the copy on the recipient, and reads nothing else.
    let mut reports = Vec::new();
    while !copy.is_finished() {
        if let Ok(Some(p)) = mysql_clone_progress(&connector, &key(new)).await {
            reports.push(p);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    copy.await.unwrap().unwrap();
    let copied = started.elapsed();
    assert!(
        reports
            .iter()
            .any(|p| p.state == "In Progress" && p.error.is_none()),
        "{reports:?}"
    );
    let ended = Instant::now();
    sb.servers[new].wait_exited(60);
    sb.servers[new].start();
    // The bytes a small copy moved may show only between two reads; the server keeps
    // the last copy's report across its restart.
    let last = mysql_clone_progress(&connector, &key(new))
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        reports.iter().any(|p| p.bytes_copied > 0)
            || (last.state == "Completed" && last.bytes_copied > 0),
        "{reports:?} then {last:?}"
    );
    // What korc tells a server restarted on its copy by (whole seconds, rounded down).
    assert!(uptime(&connector, &key(new)).await.unwrap() <= ended.elapsed());
    point_to(&connector, &key(new), &key(0), Some(&repl), true)
        .await
        .unwrap();
    println!("cloned from {} in {copied:?}", choice.donor);
    writing.store(false, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(acknowledged.load(Ordering::SeqCst) > 0, "the writer wrote");

    // Attached and caught up, with every row: those before the purge and those
    // written during the copy.
    sb.servers[new].wait_caught_up(&sb.servers[0]);
    assert_eq!(sb.servers[new].io_running(), "Yes");
    let expected = 500 + acknowledged.load(Ordering::SeqCst);
    assert_eq!(row_count(&sb.servers[0]), expected);
    assert_eq!(row_count(&sb.servers[new]), expected);
    // It kept its own identity and is read-only.
    assert_ne!(
        sb.servers[new].variable("server_uuid"),
        sb.servers[0].variable("server_uuid")
    );
    assert_eq!(sb.servers[new].variable("super_read_only"), "1");
}
