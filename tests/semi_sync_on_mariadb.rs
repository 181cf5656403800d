//! Semi-sync recoveries on real MariaDB servers, through the korc CLI: a locked
//! semi-sync primary unlocked by turning semi-sync on in another replica, and the
//! surplus semi-sync replica turned off under enforceExactSemiSyncReplicas.

mod support;

use serde_json::Value;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{Sandbox, Server, korc_json};

/// A semi-sync primary that never falls back to asynchronous replication, waiting
/// after the binlog sync (lossless).
fn semi_sync_primary(p: &Server) {
    p.sql(
        "SET GLOBAL rpl_semi_sync_master_enabled = 1; \
         SET GLOBAL rpl_semi_sync_master_timeout = 4294967295; \
         SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC",
    );
}

/// Turns the replica side on; the IO thread reconnects to negotiate it.
fn semi_sync_replica(r: &Server) {
    r.sql(
        "SET GLOBAL rpl_semi_sync_slave_enabled = 1; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD",
    );
}

fn status(s: &Server, name: &str) -> String {
    s.sql(&format!(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{name}'"
    ))
}

fn variable(s: &Server, name: &str) -> String {
    s.sql(&format!("SELECT @@global.{name}"))
}

/// Waits until `f` holds, at most `secs` seconds; `what` says what was awaited.
fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Inserts `v` through the application account from another thread; the receiver
/// gets the result once the commit returns.
fn insert_in_background(p: &Server, v: &str) -> mpsc::Receiver<(Result<String, String>, Instant)> {
    let (tx, rx) = mpsc::channel();
    let mut cmd = std::process::Command::new("mariadb");
    cmd.args([
        "--no-defaults",
        "-h",
        &p.ip.to_string(),
        "-u",
        support::APP.0,
    ])
    .arg(format!("-p{}", support::APP.1))
    .args(["test", "-e", &format!("INSERT INTO t (v) VALUES ('{v}')")]);
    std::thread::spawn(move || {
        let result = cmd.output().map_err(|e| e.to_string()).and_then(|o| {
            if o.status.success() {
                Ok(String::new())
            } else {
                Err(String::from_utf8_lossy(&o.stderr).into_owned())
            }
        });
        let _ = tx.send((result, Instant::now()));
    });
    rx
}

fn recover(sb: &Sandbox, extra: &[&str]) -> (i32, Value) {
    let instances = sb.instances();
    let mut args = vec!["recover", "--instances", &instances];
    args.extend_from_slice(extra);
    korc_json(&args)
}

fn steps(record: &Value) -> Vec<String> {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["kind"].as_str().unwrap(),
                s["instance"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_locked_semi_sync_primary_is_unlocked_by_another_replica_and_its_commit_returns() {
    let mut sb = Sandbox::replication(3);
    let (p, b) = (&sb.servers[0], &sb.servers[2]);
    let (pk, bk) = (p.key(), b.key());
    semi_sync_primary(p);
    semi_sync_replica(&sb.servers[1]);
    wait_until(5, "the first replica acknowledges", || {
        status(p, "Rpl_semi_sync_master_clients") == "1"
    });
    p.app_sql("INSERT INTO t (v) VALUES ('acknowledged')")
        .unwrap();

    // The only acknowledging replica crashes; the next commit waits for ever.
    sb.servers[1].kill9();
    let (p, b) = (&sb.servers[0], &sb.servers[2]);
    let blocked = insert_in_background(p, "blocked");
    wait_until(10, "the commit waits for an acknowledgement", || {
        status(p, "Rpl_semi_sync_master_wait_sessions") == "1"
            && status(p, "Rpl_semi_sync_master_clients") == "0"
    });
    assert!(
        blocked.recv_timeout(Duration::from_millis(300)).is_err(),
        "the commit must wait while no replica acknowledges"
    );

    // Opt-in, as in orchestrator: without the policy nothing is done.
    let (code, doc) = recover(&sb, &[]);
    assert_eq!(code, 4, "{doc:#}");
    assert!(
        doc["analysis"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["code"] == "LockedSemiSyncMaster" && a["instance"] == pk.as_str()),
        "{doc:#}"
    );

    let started = Instant::now();
    let (code, rec) = recover(&sb, &["--recover-locked-semi-sync-master"]);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["kind"], "SemiSyncReplicas");
    assert_eq!(rec["analysis"]["code"], "LockedSemiSyncMaster");
    assert_eq!(rec["outcome"], "recovered", "{rec:#}");
    assert_eq!(
        steps(&rec),
        [
            format!("enableSemiSync {bk}"),
            format!("releaseWaitingCommits {pk}")
        ],
        "{rec:#}"
    );
    let (result, returned) = blocked
        .recv_timeout(Duration::from_secs(5))
        .expect("the blocked commit returns once the other replica acknowledges");
    result.unwrap();
    println!(
        "blocked commit returned {} ms after korc recover started (recovery took {} ms)",
        returned.duration_since(started).as_millis(),
        rec["endedAtMs"].as_u64().unwrap() - rec["startedAtMs"].as_u64().unwrap()
    );
    assert_eq!(
        b.sql("SELECT COUNT(*) FROM test.t WHERE v = 'blocked'"),
        "1",
        "the released commit is on the replica that acknowledged it"
    );
    assert_eq!(variable(b, "rpl_semi_sync_slave_enabled"), "1");
    assert_eq!(status(b, "Rpl_semi_sync_slave_status"), "ON");
    assert_eq!(status(p, "Rpl_semi_sync_master_wait_sessions"), "0");
    // Later commits are acknowledged by it too.
    let next = insert_in_background(p, "after");
    next.recv_timeout(Duration::from_secs(5))
        .expect("a later commit is acknowledged")
        .0
        .unwrap();
}

#[test]
fn enforce_exact_turns_off_the_surplus_semi_sync_replica() {
    let sb = Sandbox::replication(3);
    let p = &sb.servers[0];
    // Both replicas are equally caught up: the promotion rule decides, then the key.
    let (mut kept, mut surplus) = (&sb.servers[1], &sb.servers[2]);
    if kept.key() > surplus.key() {
        std::mem::swap(&mut kept, &mut surplus);
    }
    semi_sync_primary(p);
    semi_sync_replica(kept);
    semi_sync_replica(surplus);
    wait_until(5, "both replicas acknowledge", || {
        status(p, "Rpl_semi_sync_master_clients") == "2"
    });
    p.app_sql("INSERT INTO t (v) VALUES ('acknowledged')")
        .unwrap();

    // Without enforcing, two acknowledging replicas for a wait count of 1 are fine.
    let (code, doc) = recover(&sb, &[]);
    assert_eq!(code, 4, "{doc:#}");

    // The lower key would be kept on a tie; prefer_not makes it the surplus.
    let rule = format!("{}=prefer_not", kept.key());
    std::mem::swap(&mut kept, &mut surplus);
    let (code, rec) = recover(
        &sb,
        &[
            "--enforce-exact-semi-sync-replicas",
            "--promotion-rule",
            &rule,
        ],
    );
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["analysis"]["code"], "MasterWithTooManySemiSyncReplicas");
    assert_eq!(rec["outcome"], "recovered", "{rec:#}");
    assert_eq!(
        steps(&rec),
        [format!("disableSemiSync {}", surplus.key())],
        "{rec:#}"
    );
    assert_eq!(variable(surplus, "rpl_semi_sync_slave_enabled"), "0");
    assert_eq!(variable(kept, "rpl_semi_sync_slave_enabled"), "1");
    wait_until(5, "the primary counts one semi-sync replica", || {
        status(p, "Rpl_semi_sync_master_clients") == "1"
    });
    assert_eq!(status(surplus, "Rpl_semi_sync_slave_status"), "OFF");
    assert_eq!(surplus.replica_field("Slave_IO_Running"), "Yes");
    let write = insert_in_background(p, "after");
    write
        .recv_timeout(Duration::from_secs(5))
        .expect("commits are still acknowledged")
        .0
        .unwrap();
    surplus.wait_caught_up(p);

    let (code, doc) = recover(
        &sb,
        &[
            "--enforce-exact-semi-sync-replicas",
            "--promotion-rule",
            &rule,
        ],
    );
    assert_eq!(code, 4, "exactly one acknowledges now: {doc:#}");
}
