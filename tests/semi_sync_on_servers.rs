//! Semi-sync recoveries on real MariaDB and MySQL servers, through the korc CLI: a
//! locked semi-sync primary unlocked by turning semi-sync on in another replica, and the
//! surplus semi-sync replica turned off under enforceExactSemiSyncReplicas.

#[macro_use]
mod support;

use serde_json::Value;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{Flavor, Sandbox, Server, korc_json, wait_until};

on_both_flavors!(
    a_locked_semi_sync_primary_is_unlocked_by_another_replica_and_its_commit_returns,
    enforce_exact_turns_off_the_surplus_semi_sync_replica,
);

/// A semi-sync primary that never falls back to asynchronous replication, waiting
/// after the binlog sync (lossless).
fn semi_sync_primary(p: &Server) {
    p.sql(&format!(
        "SET GLOBAL {} = 1; SET GLOBAL {} = 4294967295; SET GLOBAL {} = AFTER_SYNC",
        p.semi_sync_variable("source", "enabled"),
        p.semi_sync_variable("source", "timeout"),
        p.semi_sync_variable("source", "wait_point"),
    ));
}

/// Turns the replica side on; the IO thread reconnects to negotiate it.
fn semi_sync_replica(r: &Server) {
    r.sql(&format!(
        "SET GLOBAL {} = 1; STOP REPLICA IO_THREAD; START REPLICA IO_THREAD",
        r.semi_sync_variable("replica", "enabled")
    ));
}

/// Inserts `v` through the application account from another thread; the receiver
/// gets the result once the commit returns.
fn insert_in_background(p: &Server, v: &str) -> mpsc::Receiver<(Result<String, String>, Instant)> {
    let (tx, rx) = mpsc::channel();
    let mut cmd = p.app_command(&format!("INSERT INTO t (v) VALUES ('{v}')"));
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

fn a_locked_semi_sync_primary_is_unlocked_by_another_replica_and_its_commit_returns(
    flavor: Flavor,
) {
    let mut sb = Sandbox::replication(flavor, 3);
    let (p, b) = (&sb.servers[0], &sb.servers[2]);
    let (pk, bk) = (p.key(), b.key());
    semi_sync_primary(p);
    semi_sync_replica(&sb.servers[1]);
    wait_until(5, "the first replica acknowledges", || {
        p.semi_sync_status("source", "clients") == "1"
    });
    p.app_sql("INSERT INTO t (v) VALUES ('acknowledged')")
        .unwrap();

    // The only acknowledging replica crashes; the next commit waits for ever.
    sb.servers[1].kill9();
    let (p, b) = (&sb.servers[0], &sb.servers[2]);
    let blocked = insert_in_background(p, "blocked");
    wait_until(10, "the commit waits for an acknowledgement", || {
        p.semi_sync_status("source", "wait_sessions") == "1"
            && p.semi_sync_status("source", "clients") == "0"
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
    assert_eq!(b.variable(&b.semi_sync_variable("replica", "enabled")), "1");
    assert_eq!(b.semi_sync_status("replica", "status"), "ON");
    assert_eq!(p.semi_sync_status("source", "wait_sessions"), "0");
    // Later commits are acknowledged by it too.
    let next = insert_in_background(p, "after");
    next.recv_timeout(Duration::from_secs(5))
        .expect("a later commit is acknowledged")
        .0
        .unwrap();
}

fn enforce_exact_turns_off_the_surplus_semi_sync_replica(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 3);
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
        p.semi_sync_status("source", "clients") == "2"
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
    assert_eq!(
        surplus.variable(&surplus.semi_sync_variable("replica", "enabled")),
        "0"
    );
    assert_eq!(
        kept.variable(&kept.semi_sync_variable("replica", "enabled")),
        "1"
    );
    wait_until(5, "the primary counts one semi-sync replica", || {
        p.semi_sync_status("source", "clients") == "1"
    });
    assert_eq!(surplus.semi_sync_status("replica", "status"), "OFF");
    assert_eq!(surplus.io_running(), "Yes");
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
