//! Crash failover and graceful takeover on real MariaDB servers, through the korc CLI.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::{Sandbox, Server, korc, korc_json};

/// Writes `n` rows through the application account.
fn write_rows(server: &Server, tag: &str, n: usize) {
    let values: Vec<String> = (0..n).map(|i| format!("('{tag}-{i}')")).collect();
    server
        .app_sql(&format!("INSERT INTO t (v) VALUES {}", values.join(",")))
        .unwrap();
}

fn row_count(server: &Server) -> usize {
    server.sql("SELECT COUNT(*) FROM test.t").parse().unwrap()
}

/// Waits until `replica` has received (not necessarily applied) all `source` wrote.
fn wait_received(replica: &Server, source: &Server) {
    let pos = source.sql("SELECT @@global.gtid_binlog_pos");
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.replica_field("Gtid_IO_Pos") != pos {
        assert!(
            Instant::now() < deadline,
            "{} never received {pos}",
            replica.ip
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn recover(sb: &Sandbox, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["recover", "--instances"];
    let instances = sb.instances();
    args.push(&instances);
    args.extend_from_slice(extra);
    korc_json(&args)
}

fn steps(record: &Value) -> Vec<String> {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn crash_promotes_the_most_received_replica_then_hands_over_to_the_preferred_one() {
    let mut sb = Sandbox::replication(4);
    let [a, b, c] = [1, 2, 3].map(|i| sb.servers[i].key());
    write_rows(&sb.servers[0], "early", 50);
    for r in &sb.servers[1..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    // b is preferred but misses the next writes; a receives them without applying
    // them (its relay log must be applied before promotion); c is prefer_not.
    sb.servers[2].sql("STOP SLAVE IO_THREAD");
    sb.servers[1].sql("STOP SLAVE SQL_THREAD");
    write_rows(&sb.servers[0], "late", 200);
    wait_received(&sb.servers[1], &sb.servers[0]);
    wait_received(&sb.servers[3], &sb.servers[0]);
    sb.servers[0].kill9();

    let (code, rec) = recover(
        &sb,
        &[
            "--promotion-rule",
            &format!("{b}=prefer"),
            "--promotion-rule",
            &format!("{c}=prefer_not"),
        ],
    );
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["outcome"], "recovered");
    assert_eq!(rec["analysis"]["code"], "DeadMaster");
    assert_eq!(
        rec["candidate"]["promoted"], a,
        "the most advanced replica is promoted first: {rec:#}"
    );
    assert_eq!(rec["candidate"]["handOverTo"], b);
    assert_eq!(
        rec["successor"], b,
        "the preferred replica takes over once caught up: {rec:#}"
    );
    assert!(steps(&rec).contains(&"handOver".to_string()), "{rec:#}");
    assert_eq!(rec["lostReplicas"], serde_json::json!([]));

    let successor = sb.by_key(&b);
    assert_eq!(
        row_count(successor),
        250,
        "no row written before the crash is lost: {rec:#}"
    );
    write_rows(successor, "after", 10);
    for k in [&a, &c] {
        let r = sb.by_key(k);
        r.wait_caught_up(successor);
        assert_eq!(row_count(r), 260);
        assert_eq!(r.sql("SELECT @@global.read_only"), "1");
    }
}

#[test]
fn dead_master_and_some_replicas() {
    let mut sb = Sandbox::replication(4);
    write_rows(&sb.servers[0], "x", 20);
    for r in &sb.servers[1..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    let dead_replica = sb.servers[3].key();
    sb.servers[3].kill9();
    sb.servers[0].kill9();
    let (code, rec) = recover(&sb, &[]);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["analysis"]["code"], "DeadMasterAndSomeReplicas");
    assert_eq!(rec["lostReplicas"], serde_json::json!([dead_replica]));
    let successor = sb.by_key(rec["successor"].as_str().unwrap());
    write_rows(successor, "after", 1);
    let other = sb.servers[1..3]
        .iter()
        .find(|s| s.key() != successor.key())
        .unwrap();
    other.wait_caught_up(successor);
    assert_eq!(row_count(other), 21);
}

#[test]
fn must_not_and_downtimed_replicas_are_never_promoted_even_when_ahead() {
    let mut sb = Sandbox::replication(4);
    let [a, b, c] = [1, 2, 3].map(|i| sb.servers[i].key());
    write_rows(&sb.servers[0], "early", 10);
    for r in &sb.servers[1..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    // a (must_not) and b (downtimed) receive the late writes, c does not.
    sb.servers[3].sql("STOP SLAVE IO_THREAD");
    write_rows(&sb.servers[0], "late", 30);
    sb.servers[1].wait_caught_up(&sb.servers[0]);
    sb.servers[2].wait_caught_up(&sb.servers[0]);
    sb.servers[0].kill9();

    let (code, rec) = recover(
        &sb,
        &[
            "--promotion-rule",
            &format!("{a}=must_not"),
            "--downtime",
            &format!("{b}=3600"),
        ],
    );
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["successor"], c, "{rec:#}");
    assert!(
        steps(&rec).contains(&"catchUpFromDonor".to_string()),
        "{rec:#}"
    );
    assert_eq!(
        row_count(sb.by_key(&c)),
        40,
        "c fetched the late rows from a replica before promotion"
    );
}

#[test]
fn cross_data_center_promotion_is_refused() {
    let mut sb = Sandbox::replication(3);
    let [p, a, b] = [0, 1, 2].map(|i| sb.servers[i].key());
    sb.servers[0].kill9();
    let dcs = [
        "--prevent-cross-dc",
        "--data-center",
        &format!("{p}=zone-a"),
    ];
    let a_zone = format!("{a}=zone-b");
    let b_zone_c = format!("{b}=zone-c");
    let (code, rec) = recover(
        &sb,
        &[
            &dcs[..],
            &["--data-center", &a_zone, "--data-center", &b_zone_c],
        ]
        .concat(),
    );
    assert_eq!(code, 5, "no candidate in zone-a: {rec:#}");
    assert_eq!(rec["outcome"], "failed");
    assert!(
        rec["error"].as_str().unwrap().contains("OtherDataCenter"),
        "{rec:#}"
    );
    assert!(rec.get("successor").is_none());
    // Nothing was promoted.
    for s in &sb.servers[1..] {
        assert_eq!(s.sql("SELECT @@global.read_only"), "1");
    }

    let b_zone_a = format!("{b}=zone-a");
    let (code, rec) = recover(
        &sb,
        &[
            &dcs[..],
            &["--data-center", &a_zone, "--data-center", &b_zone_a],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["successor"], b);
}

#[test]
fn graceful_takeover_to_named_and_automatic_targets_loses_nothing() {
    let sb = Sandbox::replication(3);
    let [p, a, b] = [0, 1, 2].map(|i| sb.servers[i].key());
    write_rows(sb.by_key(&p), "before", 100);

    let (code, rec) = korc_json(&["switchover", "--instances", &sb.instances(), "--to", &b]);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["successor"], b);
    let new_primary = sb.by_key(&b);
    assert_eq!(new_primary.sql("SELECT @@global.read_only"), "0");
    assert_eq!(sb.by_key(&p).sql("SELECT @@global.read_only"), "1");
    write_rows(new_primary, "after", 10);
    for k in [&p, &a] {
        let s = sb.by_key(k);
        s.wait_caught_up(new_primary);
        assert_eq!(row_count(s), 110);
        assert_eq!(s.replica_field("Master_Host"), new_primary.ip.to_string());
    }

    let (code, rec) = korc_json(&["switchover", "--instances", &sb.instances()]);
    assert_eq!(code, 0, "{rec:#}");
    let auto = sb.by_key(rec["successor"].as_str().unwrap());
    assert_ne!(auto.key(), b);
    write_rows(auto, "again", 5);
    for s in &sb.servers {
        if s.key() != auto.key() {
            s.wait_caught_up(auto);
        }
        assert_eq!(row_count(s), 115);
    }
    let (code, _) = korc_json(&[
        "analyze",
        "--instances",
        &sb.instances(),
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "healthy after two switchovers");
}

#[test]
fn takeover_whose_target_cannot_catch_up_rolls_back() {
    let sb = Sandbox::replication(3);
    let [p, _, b] = [0, 1, 2].map(|i| sb.servers[i].key());
    sb.by_key(&b).sql("STOP SLAVE IO_THREAD");
    write_rows(sb.by_key(&p), "unseen", 5);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"takeoverCatchUpTimeoutMs": 1000}"#).unwrap();
    let (code, rec) = korc_json(&[
        "switchover",
        "--instances",
        &sb.instances(),
        "--to",
        &b,
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(code, 5, "{rec:#}");
    assert_eq!(rec["outcome"], "rolledBack");
    assert!(steps(&rec).contains(&"rollback".to_string()));
    let old = sb.by_key(&p);
    assert_eq!(
        old.sql("SELECT @@global.read_only"),
        "0",
        "the old primary is writable again"
    );
    write_rows(old, "still-primary", 1);
    assert_eq!(sb.by_key(&b).sql("SELECT @@global.read_only"), "1");
}

#[test]
fn recover_on_a_healthy_cluster_does_nothing() {
    let sb = Sandbox::replication(2);
    let (code, out, _) = korc(&["recover", "--instances", &sb.instances()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("nothingToDo"));
}

#[test]
fn dead_intermediate_master_replicas_move_up() {
    let mut sb = Sandbox::replication(4);
    // primary <- im <- (a, b)
    let (p, im) = (sb.servers[0].key(), sb.servers[1].key());
    for r in &sb.servers[2..] {
        r.sql("STOP SLAVE");
        r.replicate_from(&sb.servers[1]);
    }
    write_rows(&sb.servers[0], "before", 10);
    for r in &sb.servers[2..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    sb.servers[1].kill9();
    std::thread::sleep(Duration::from_millis(100));
    let (code, rec) = recover(&sb, &[]);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["kind"], "DeadIntermediateMaster");
    assert_eq!(rec["failed"], im);
    assert_eq!(
        rec["successor"], p,
        "no valid sibling: the replicas move up to the primary"
    );
    write_rows(&sb.servers[0], "after", 5);
    for r in &sb.servers[2..] {
        r.wait_caught_up(&sb.servers[0]);
        assert_eq!(row_count(r), 15);
        assert_eq!(r.replica_field("Master_Host"), sb.servers[0].ip.to_string());
    }
}
