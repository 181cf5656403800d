//! Crash failover and graceful takeover on real MariaDB and MySQL servers, through the
//! korc CLI (and the library, where a recovery must be interrupted between two steps).

#[macro_use]
mod support;

use futures::future::BoxFuture;
use korc::topology::analysis::analyze;
use korc::topology::dialect::ReplicationCredentials;
use korc::topology::instance::InstanceKey;
use korc::topology::policy::Policy;
use korc::topology::probe::{now_ms, probe_cluster};
use korc::topology::recovery::{
    Outcome, PlannedStep, RecoveryContext, RecoveryRecord, StepGuard, StepKind, Unguarded,
    recover as recover_with,
};
use korc::topology::session::{Connector, Credentials};
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;
use support::{Flavor, Sandbox, Server, korc, korc_json};

on_both_flavors!(
    crash_promotes_the_most_received_replica_then_hands_over_to_the_preferred_one,
    dead_master_and_some_replicas,
    must_not_and_downtimed_replicas_are_never_promoted_even_when_ahead,
    cross_data_center_promotion_is_refused,
    graceful_takeover_to_named_and_automatic_targets_loses_nothing,
    takeover_whose_target_cannot_catch_up_rolls_back,
    recover_on_a_healthy_cluster_does_nothing,
    dead_intermediate_master_replicas_move_up,
    a_candidate_that_cannot_apply_what_it_received_is_never_promoted,
    a_stalled_applier_fails_the_recovery_and_a_later_one_loses_nothing,
    a_failed_catch_up_from_a_donor_aborts_instead_of_dropping_its_transactions;
    async:
    a_recovery_interrupted_after_the_promotion_is_completed_by_the_next_cli_run,
    a_recovery_interrupted_after_the_promotion_is_completed_onto_the_hinted_successor,
);

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

fn crash_promotes_the_most_received_replica_then_hands_over_to_the_preferred_one(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 4);
    let [a, b, c] = [1, 2, 3].map(|i| sb.servers[i].key());
    write_rows(&sb.servers[0], "early", 50);
    for r in &sb.servers[1..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    // b is preferred but misses the next writes; a receives them without applying
    // them (its relay log must be applied before promotion); c is prefer_not.
    sb.servers[2].sql("STOP REPLICA IO_THREAD");
    sb.servers[1].sql("STOP REPLICA SQL_THREAD");
    write_rows(&sb.servers[0], "late", 200);
    sb.servers[1].wait_received(&sb.servers[0]);
    sb.servers[3].wait_received(&sb.servers[0]);
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
        assert_fenced(r);
    }
}

fn dead_master_and_some_replicas(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 4);
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

fn must_not_and_downtimed_replicas_are_never_promoted_even_when_ahead(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 4);
    let [a, b, c] = [1, 2, 3].map(|i| sb.servers[i].key());
    write_rows(&sb.servers[0], "early", 10);
    for r in &sb.servers[1..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    // a (must_not) and b (downtimed) receive the late writes, c does not.
    sb.servers[3].sql("STOP REPLICA IO_THREAD");
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

fn cross_data_center_promotion_is_refused(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 3);
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

fn graceful_takeover_to_named_and_automatic_targets_loses_nothing(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 3);
    let [p, a, b] = [0, 1, 2].map(|i| sb.servers[i].key());
    write_rows(sb.by_key(&p), "before", 100);

    let (code, rec) = korc_json(&["switchover", "--instances", &sb.instances(), "--to", &b]);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["successor"], b);
    let new_primary = sb.by_key(&b);
    assert_writable(new_primary);
    assert_fenced(sb.by_key(&p));
    write_rows(new_primary, "after", 10);
    for k in [&p, &a] {
        let s = sb.by_key(k);
        s.wait_caught_up(new_primary);
        assert_eq!(row_count(s), 110);
        assert_eq!(s.source_host(), new_primary.ip.to_string());
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

fn takeover_whose_target_cannot_catch_up_rolls_back(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 3);
    let [p, _, b] = [0, 1, 2].map(|i| sb.servers[i].key());
    sb.by_key(&b).sql("STOP REPLICA IO_THREAD");
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
    assert_writable(old);
    write_rows(old, "still-primary", 1);
    assert_fenced(sb.by_key(&b));
}

fn recover_on_a_healthy_cluster_does_nothing(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 2);
    let (code, out, _) = korc(&["recover", "--instances", &sb.instances()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("nothingToDo"));
}

fn dead_intermediate_master_replicas_move_up(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 4);
    // primary <- im <- (a, b)
    let (p, im) = (sb.servers[0].key(), sb.servers[1].key());
    for r in &sb.servers[2..] {
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
        assert_eq!(r.source_host(), sb.servers[0].ip.to_string());
    }
}

/// Makes `replica` unable to apply what `source` writes next: a row with the id the
/// source is about to use, written on the replica alone (outside its binary log).
fn plant_conflict(replica: &Server, id: u32) {
    replica.unlogged_sql(&format!(
        "INSERT INTO test.t (id, v) VALUES ({id}, 'conflict')"
    ));
}

fn read_only(server: &Server) -> String {
    server.sql("SELECT @@global.read_only")
}

/// Nobody writes to `s`: the application is refused by `read_only`, and on MySQL root
/// too, by `super_read_only`.
fn assert_fenced(s: &Server) {
    assert_eq!(read_only(s), "1", "{} is read-only", s.key());
    assert!(
        s.app_sql("INSERT INTO t (v) VALUES ('on a fenced instance')")
            .is_err()
    );
    if s.flavor == Flavor::Mysql {
        assert_eq!(s.variable("super_read_only"), "1", "{}", s.key());
        let refused = s
            .try_sql("INSERT INTO test.t (v) VALUES ('root on a fenced instance')")
            .unwrap_err();
        assert!(refused.contains("super-read-only"), "{refused}");
    }
}

/// `s` takes writes: neither `read_only` nor MySQL's `super_read_only` is on.
fn assert_writable(s: &Server) {
    assert_eq!(read_only(s), "0", "{} is writable", s.key());
    if s.flavor == Flavor::Mysql {
        assert_eq!(s.variable("super_read_only"), "0", "{}", s.key());
    }
}

fn policy_file(dir: &tempfile::TempDir, json: &str) -> String {
    let path = dir.path().join("policy.json");
    std::fs::write(&path, json).unwrap();
    path.to_str().unwrap().to_string()
}

fn a_candidate_that_cannot_apply_what_it_received_is_never_promoted(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 3);
    write_rows(&sb.servers[0], "early", 10);
    for r in &sb.servers[1..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    // a receives the late writes but its applier will stop on the first of them; b
    // misses them, so a is the most advanced and the candidate.
    let a = &sb.servers[1];
    sb.servers[2].sql("STOP REPLICA IO_THREAD");
    a.sql("STOP REPLICA SQL_THREAD");
    plant_conflict(a, 1000);
    sb.servers[0]
        .app_sql("INSERT INTO t (id, v) VALUES (1000, 'late')")
        .unwrap();
    write_rows(&sb.servers[0], "late", 5);
    a.wait_received(&sb.servers[0]);
    let received = a.received_gtids();
    sb.servers[0].kill9();
    let a = &sb.servers[1];

    let (code, rec) = recover(&sb, &[]);
    assert_eq!(code, 5, "{rec:#}");
    assert_eq!(rec["outcome"], "failed");
    let error = rec["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("waitRelayLogApplied on {} failed", a.key()))
            && error.contains("cannot apply its relay log: error 1062"),
        "{rec:#}"
    );
    assert!(rec.get("successor").is_none(), "{rec:#}");
    assert!(!steps(&rec).contains(&"promote".to_string()), "{rec:#}");
    for s in &sb.servers[1..] {
        assert_eq!(read_only(s), "1", "nothing was made writable");
    }
    assert_eq!(
        a.received_gtids(),
        received,
        "a still holds what it received"
    );
}

fn a_stalled_applier_fails_the_recovery_and_a_later_one_loses_nothing(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 3);
    write_rows(&sb.servers[0], "early", 10);
    for r in &sb.servers[1..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    sb.servers[2].sql("STOP REPLICA IO_THREAD");
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir, r#"{"relayLogApplyTimeoutMs": 1000}"#);
    let instances = sb.instances();
    let args = ["recover", "--instances", &instances, "--policy", &policy];
    let (primary, replicas) = sb.servers.split_at_mut(1);
    let (primary, a) = (&mut primary[0], &replicas[0]);
    std::thread::scope(|scope| {
        // A session on a holds a table lock for 5 s: its applier receives the late
        // writes but applies nothing meanwhile.
        scope.spawn(|| a.sql("LOCK TABLES test.t READ; DO SLEEP(5)"));
        std::thread::sleep(Duration::from_millis(300));
        write_rows(primary, "late", 20);
        a.wait_received(primary);
        primary.kill9();
        let (code, rec) = korc_json(&args);
        assert_eq!(code, 5, "{rec:#}");
        assert!(
            !steps(&rec).contains(&"promote".to_string()),
            "no promotion is even tried: {rec:#}"
        );
        let error = rec["error"].as_str().unwrap();
        assert!(error.contains("applied nothing for 1s"), "{rec:#}");
        assert!(rec.get("successor").is_none(), "{rec:#}");
        for s in replicas.iter() {
            assert_eq!(read_only(s), "1", "nothing was made writable");
        }
    });
    // The lock is gone; the next recovery promotes a with every row it received.
    let (code, rec) = korc_json(&args);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["successor"], sb.servers[1].key(), "{rec:#}");
    assert_eq!(row_count(&sb.servers[1]), 30);
    sb.servers[2].wait_caught_up(&sb.servers[1]);
    assert_eq!(row_count(&sb.servers[2]), 30);
}

fn a_failed_catch_up_from_a_donor_aborts_instead_of_dropping_its_transactions(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 3);
    let (x, b) = (sb.servers[1].key(), sb.servers[2].key());
    write_rows(&sb.servers[0], "early", 10);
    for r in &sb.servers[1..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    // x (must_not) alone receives the late writes and cannot apply them: the
    // candidate b cannot get them from it.
    sb.servers[2].sql("STOP REPLICA IO_THREAD");
    sb.servers[1].sql("STOP REPLICA SQL_THREAD");
    plant_conflict(&sb.servers[1], 1000);
    sb.servers[0]
        .app_sql("INSERT INTO t (id, v) VALUES (1000, 'late')")
        .unwrap();
    sb.servers[1].wait_received(&sb.servers[0]);
    sb.servers[0].kill9();

    let (code, rec) = recover(&sb, &["--promotion-rule", &format!("{x}=must_not")]);
    assert_eq!(code, 5, "{rec:#}");
    assert_eq!(rec["outcome"], "failed");
    assert_eq!(rec["candidate"]["promoted"], b);
    let error = rec["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("catchUpFromDonor on {b} failed: donor {x}: "))
            && error.contains("error 1062"),
        "{rec:#}"
    );
    assert!(rec.get("successor").is_none(), "{rec:#}");
    for s in &sb.servers[1..] {
        assert_eq!(read_only(s), "1", "nothing was made writable");
    }
}

/// Lets every step run up to and including the promotion, then stops the recovery:
/// the operator losing its Lease right after promoting.
#[derive(Default)]
struct StopAfterPromotion(Mutex<bool>);

impl StepGuard for StopAfterPromotion {
    fn before<'a>(&'a self, step: &'a PlannedStep) -> BoxFuture<'a, Result<(), String>> {
        let mut promoted = self.0.lock().unwrap();
        let refuse = *promoted;
        *promoted |= step.kind() == StepKind::Promote;
        Box::pin(std::future::ready(if refuse {
            Err("leader lease lost".to_string())
        } else {
            Ok(())
        }))
    }
}

fn context() -> RecoveryContext {
    RecoveryContext {
        connector: Connector::new(Credentials {
            user: support::ADMIN.0.into(),
            password: support::ADMIN.1.into(),
        }),
        policy: Policy::default(),
        replication: ReplicationCredentials {
            user: support::REPL.0.into(),
            password: support::REPL.1.into(),
            source_ca: None,
        },
    }
}

fn keys(sb: &Sandbox) -> Vec<InstanceKey> {
    sb.servers
        .iter()
        .map(|s| s.key().parse().unwrap())
        .collect()
}

/// Probes, analyses and recovers through the library, as the operator does.
async fn recover_in_process(
    sb: &Sandbox,
    guard: &dyn StepGuard,
    hint: Option<&InstanceKey>,
) -> RecoveryRecord {
    let ctx = context();
    let instances = probe_cluster(&ctx.connector, &keys(sb), &[]).await;
    let analysis = analyze(&instances, &ctx.policy, now_ms());
    recover_with(&ctx, &instances, &analysis, guard, hint)
        .await
        .expect("an actionable analysis")
}

/// Crashes the primary of a 1+3 cluster holding 30 rows and runs a recovery that
/// stops right after the promotion; returns the promoted instance.
async fn interrupted_failover(sb: &mut Sandbox) -> InstanceKey {
    write_rows(&sb.servers[0], "before", 30);
    for r in &sb.servers[1..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    sb.servers[0].kill9();
    let rec = recover_in_process(sb, &StopAfterPromotion::default(), None).await;
    assert_eq!(rec.outcome, Outcome::Abandoned, "{rec:#?}");
    let stopped = rec
        .stopped_before
        .as_ref()
        .expect("the step it stopped before");
    assert_eq!(stopped.kind, StepKind::Repoint);
    let successor = rec.successor.clone().expect("promoted before the stop");
    assert_eq!(
        writable(sb),
        [successor.to_string()],
        "only the successor is writable"
    );
    successor
}

/// The reachable instances that accept writes.
fn writable(sb: &Sandbox) -> Vec<String> {
    sb.servers[1..]
        .iter()
        .filter(|s| read_only(s) == "0")
        .map(Server::key)
        .collect()
}

/// One writable instance, every other reachable one replicating from it with all rows.
fn single_primary_with_all_replicas(sb: &Sandbox, successor: &str) {
    assert_eq!(writable(sb), [successor.to_string()]);
    let primary = sb.by_key(successor);
    write_rows(primary, "after", 1);
    for s in sb.servers[1..].iter().filter(|s| s.key() != successor) {
        assert_eq!(s.source_host(), primary.ip.to_string());
        s.wait_caught_up(primary);
        assert_eq!(row_count(s), 31);
    }
}

async fn a_recovery_interrupted_after_the_promotion_is_completed_by_the_next_cli_run(
    flavor: Flavor,
) {
    let mut sb = Sandbox::replication(flavor, 4);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let instances = sb.instances();
    let (code, _) = korc_json(&[
        "analyze",
        "--instances",
        &instances,
        "--state",
        state,
        "--output",
        "json",
    ]);
    assert_eq!(code, 0);
    let successor = interrupted_failover(&mut sb).await;

    let (code, rec) = korc_json(&["recover", "--instances", &instances, "--state", state]);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["successor"], successor.to_string(), "{rec:#}");
    assert!(!steps(&rec).contains(&"promote".to_string()), "{rec:#}");
    single_primary_with_all_replicas(&sb, &successor.to_string());
}

async fn a_recovery_interrupted_after_the_promotion_is_completed_onto_the_hinted_successor(
    flavor: Flavor,
) {
    let mut sb = Sandbox::replication(flavor, 4);
    let successor = interrupted_failover(&mut sb).await;
    let rec = recover_in_process(&sb, &Unguarded, Some(&successor)).await;
    assert_eq!(rec.outcome, Outcome::Recovered, "{rec:#?}");
    assert_eq!(rec.successor.as_ref(), Some(&successor));
    assert!(rec.steps.iter().all(|s| s.kind != StepKind::Promote));
    single_primary_with_all_replicas(&sb, &successor.to_string());
}
