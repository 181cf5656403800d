//! orchestrator's analysis on real MariaDB and MySQL servers: healthy, broken and hung
//! topologies.

#[macro_use]
mod support;

use support::{Flavor, Proxy, Sandbox, code_of, korc, korc_json};

on_both_flavors!(
    healthy_one_primary_three_replicas_is_no_problem,
    replica_problems_each_get_their_code,
    killed_primary_is_dead_master,
    korc_cut_from_the_primary_while_replicas_replicate_is_unreachable_master_and_no_failover,
    semi_sync_primary_without_acknowledging_replica_is_locked,
    snapshot_replays_offline_and_state_remembers_roles,
    sources_outside_the_cluster_are_reported,
    replica_reset_to_replicate_from_nothing_is_a_detached_replica,
    intermediate_master_with_an_errant_write_is_errant_gtid_detected,
    replicas_replicating_from_each_other_beside_the_primary_are_a_ring,
);

fn analyze(sb: &Sandbox) -> (i32, serde_json::Value) {
    korc_json(&[
        "analyze",
        "--instances",
        &sb.instances(),
        "--output",
        "json",
    ])
}

fn healthy_one_primary_three_replicas_is_no_problem(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 4);
    let (code, doc) = analyze(&sb);
    assert_eq!(code, 0, "{doc:#}");
    let primary = sb.servers[0].key();
    assert_eq!(
        code_of(&doc, &primary).as_deref(),
        Some("NoProblem"),
        "{doc:#}"
    );
    let a = doc["analysis"].as_array().unwrap();
    assert_eq!(a.len(), 1, "only the primary is analysed: {doc:#}");
    assert_eq!(a[0]["evidence"]["validReplicatingReplicas"], 3);
    let instances = doc["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 4);
    assert!(
        instances
            .iter()
            .all(|i| i["reachable"] == true && i["flavor"] == flavor.name())
    );
}

fn replica_problems_each_get_their_code(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 4);
    let [p, a, b, c] = [
        &sb.servers[0],
        &sb.servers[1],
        &sb.servers[2],
        &sb.servers[3],
    ];

    a.sql("STOP REPLICA SQL_THREAD");
    let (code, doc) = analyze(&sb);
    assert_eq!(code, 3);
    assert_eq!(
        code_of(&doc, &a.key()).as_deref(),
        Some("ReplicationStopped"),
        "{doc:#}"
    );

    // A broken IO thread: wrong credentials, the replica keeps failing to connect.
    b.break_replication_password();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (_, doc) = analyze(&sb);
    assert_eq!(
        code_of(&doc, &b.key()).as_deref(),
        Some("FirstTierReplicaFailingToConnectToMaster"),
        "{doc:#}"
    );

    c.sql("SET GLOBAL read_only = 0");
    let (_, doc) = analyze(&sb);
    assert_eq!(
        code_of(&doc, &c.key()).as_deref(),
        Some("ReplicaIsWritable"),
        "{doc:#}"
    );

    // A write on the replica itself: an errant transaction.
    c.sql("INSERT INTO test.t (v) VALUES ('errant')");
    let (_, doc) = analyze(&sb);
    assert_eq!(
        code_of(&doc, &c.key()).as_deref(),
        Some("ErrantGTIDDetected"),
        "{doc:#}"
    );
    let entry = doc["analysis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["instance"] == c.key())
        .unwrap()
        .clone();
    assert!(
        entry["errantGtids"]
            .as_str()
            .unwrap()
            .starts_with(&c.own_gtid_prefix()),
        "{entry:#}"
    );
    let primary = doc["analysis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["instance"] == p.key())
        .unwrap()
        .clone();
    assert!(
        primary["structureWarnings"]
            .as_array()
            .unwrap()
            .contains(&"ErrantGTID".into()),
        "{primary:#}"
    );

    b.sql("STOP REPLICA");
    c.sql("STOP REPLICA");
    let (_, doc) = analyze(&sb);
    assert_eq!(
        code_of(&doc, &p.key()).as_deref(),
        Some("AllMasterReplicasNotReplicating"),
        "{doc:#}"
    );
}

fn killed_primary_is_dead_master(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 3);
    sb.servers[0].kill9();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (code, doc) = analyze(&sb);
    assert_eq!(code, 3);
    let primary = sb.servers[0].key();
    assert_eq!(
        code_of(&doc, &primary).as_deref(),
        Some("DeadMaster"),
        "{doc:#}"
    );
    let a = doc["analysis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["instance"] == primary)
        .unwrap()
        .clone();
    assert_eq!(a["actionable"], true);
    assert_eq!(a["evidence"]["replicas"], 2);
    assert_eq!(a["evidence"]["replicasFailingToConnect"], 2);
}

fn korc_cut_from_the_primary_while_replicas_replicate_is_unreachable_master_and_no_failover(
    flavor: Flavor,
) {
    let sb = Sandbox::replication(flavor, 3);
    let primary = &sb.servers[0];
    let proxy = Proxy::start(format!("{}:3306", primary.ip).parse().unwrap());
    let connect = format!("{}={}", primary.key(), proxy.key());
    let args = |cmd: &'static str| -> Vec<String> {
        vec![
            cmd.into(),
            "--instances".into(),
            sb.instances(),
            "--connect".into(),
            connect.clone(),
        ]
    };
    let (code, doc) = korc_json(
        &[args("analyze"), vec!["--output".into(), "json".into()]]
            .concat()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 0, "through the proxy all is well: {doc:#}");

    proxy.sever();
    let (_, doc) = korc_json(
        &[args("analyze"), vec!["--output".into(), "json".into()]]
            .concat()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        code_of(&doc, &primary.key()).as_deref(),
        Some("UnreachableMaster"),
        "{doc:#}"
    );

    let (code, out, err) = korc(
        &args("recover")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 4, "recover must do nothing: {out}\n{err}");
    assert_eq!(
        primary.sql("SELECT @@global.read_only"),
        "0",
        "the primary stays writable"
    );
    primary
        .app_sql("INSERT INTO t (v) VALUES ('after the cut')")
        .unwrap();
    for r in &sb.servers[1..] {
        r.wait_caught_up(primary);
        assert_eq!(r.source_host(), primary.ip.to_string());
    }
}

fn semi_sync_primary_without_acknowledging_replica_is_locked(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 2);
    let (p, r) = (&sb.servers[0], &sb.servers[1]);
    p.sql(&format!(
        "SET GLOBAL {} = 1; SET GLOBAL {} = 4294967295",
        p.semi_sync_variable("source", "enabled"),
        p.semi_sync_variable("source", "timeout")
    ));
    r.sql(&format!(
        "SET GLOBAL {} = 1; STOP REPLICA IO_THREAD; START REPLICA IO_THREAD",
        r.semi_sync_variable("replica", "enabled")
    ));
    support::wait_until(5, "the replica acknowledges", || {
        p.semi_sync_status("source", "clients") == "1"
    });
    p.app_sql("INSERT INTO t (v) VALUES ('acknowledged')")
        .unwrap();
    r.sql("STOP REPLICA");
    // This write waits for an acknowledgement that cannot come.
    let mut blocked = p.app_command("INSERT INTO t (v) VALUES ('blocked')");
    std::thread::spawn(move || blocked.output());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, doc) = analyze(&sb);
        if code_of(&doc, &p.key()).as_deref() == Some("LockedSemiSyncMaster") {
            break;
        }
        let primary = doc["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == p.key())
            .unwrap()
            .clone();
        assert!(
            std::time::Instant::now() < deadline,
            "not locked: {:#} {:#}",
            primary["semiSync"],
            doc["analysis"]
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn snapshot_replays_offline_and_state_remembers_roles(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 3);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().unwrap();
    let (code, _) = korc_json(&[
        "analyze",
        "--instances",
        &sb.instances(),
        "--state",
        state_arg,
        "--output",
        "json",
    ]);
    assert_eq!(code, 0);

    // A replica dies: without memory it would be just an unknown address.
    let dead = sb.servers[2].key();
    sb.servers[2].kill9();
    let (_, doc) = korc_json(&[
        "analyze",
        "--instances",
        &sb.instances(),
        "--state",
        state_arg,
        "--output",
        "json",
    ]);
    let inst = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == dead)
        .unwrap()
        .clone();
    assert_eq!(inst["reachable"], false);
    assert_eq!(inst["serverId"], 3, "last known data kept: {inst:#}");
    assert_eq!(
        inst["replication"]["sourceHost"],
        sb.servers[0].ip.to_string()
    );
    assert_eq!(
        code_of(&doc, &sb.servers[0].key()).as_deref(),
        Some("NoProblem")
    );

    let snap = dir.path().join("incident.json");
    std::fs::write(&snap, serde_json::to_string(&doc).unwrap()).unwrap();
    drop(sb); // nothing left to connect to
    let (_, replay) = korc_json(&[
        "analyze",
        "--snapshot",
        snap.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(
        replay["analysis"],
        doc["analysis"].clone(),
        "replay gives the same analysis"
    );
}

fn sources_outside_the_cluster_are_reported(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 4);
    let [p, a, b, x] = [
        &sb.servers[0],
        &sb.servers[1],
        &sb.servers[2],
        &sb.servers[3],
    ];
    // b replicates from a. Handed only a and b, korc sees a cluster whose top, a,
    // replicates from p outside it.
    b.replicate_from(a);
    b.wait_caught_up(a);
    let (code, doc) = korc_json(&[
        "analyze",
        "--instances",
        &format!("{},{}", a.key(), b.key()),
        "--output",
        "json",
    ]);
    assert_eq!(code, 3, "{doc:#}");
    assert_eq!(
        code_of(&doc, &a.key()).as_deref(),
        Some("ClusterReplicatesFromOutside"),
        "{doc:#}"
    );

    // The cluster is p, a and b; a (with b under it) replicates from x, outside it.
    a.replicate_from(x);
    a.wait_caught_up(x);
    let (code, doc) = korc_json(&[
        "analyze",
        "--instances",
        &format!("{},{},{}", p.key(), a.key(), b.key()),
        "--output",
        "json",
    ]);
    assert_eq!(code, 3, "{doc:#}");
    assert_eq!(
        code_of(&doc, &a.key()).as_deref(),
        Some("ConnectedToWrongSource"),
        "{doc:#}"
    );
    assert_eq!(code_of(&doc, &p.key()).as_deref(), Some("NoProblem"));
}

fn replica_reset_to_replicate_from_nothing_is_a_detached_replica(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 3);
    let (p, c) = (&sb.servers[0], &sb.servers[2]);
    c.sql("STOP REPLICA; RESET REPLICA ALL");
    let (code, doc) = analyze(&sb);
    assert_eq!(code, 3, "{doc:#}");
    assert_eq!(
        code_of(&doc, &c.key()).as_deref(),
        Some("DetachedReplica"),
        "{doc:#}"
    );
    assert_eq!(code_of(&doc, &p.key()).as_deref(), Some("NoProblem"));
}

fn intermediate_master_with_an_errant_write_is_errant_gtid_detected(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 3);
    let [p, im, r] = [&sb.servers[0], &sb.servers[1], &sb.servers[2]];
    r.replicate_from(im);
    r.wait_caught_up(im);
    im.sql_despite_read_only("INSERT INTO test.t (v) VALUES ('errant on the intermediate master')");
    r.wait_caught_up(im);
    let (code, doc) = analyze(&sb);
    assert_eq!(code, 3, "{doc:#}");
    assert_eq!(
        code_of(&doc, &im.key()).as_deref(),
        Some("ErrantGTIDDetected"),
        "{doc:#}"
    );
    let entry = |key: String| {
        doc["analysis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["instance"] == key)
            .cloned()
    };
    let errant = entry(im.key()).unwrap()["errantGtids"].clone();
    assert!(
        errant
            .as_str()
            .is_some_and(|e| e.starts_with(&im.own_gtid_prefix())),
        "{errant}"
    );
    let primary = entry(p.key()).unwrap();
    assert!(
        primary["structureWarnings"]
            .as_array()
            .unwrap()
            .contains(&"ErrantGTID".into()),
        "{primary:#}"
    );
    // Its replica has nothing its own source lacks.
    assert_eq!(code_of(&doc, &r.key()), None, "{doc:#}");
}

fn replicas_replicating_from_each_other_beside_the_primary_are_a_ring(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 4);
    let [p, a, b] = [&sb.servers[0], &sb.servers[1], &sb.servers[2]];
    a.replicate_from(b);
    b.replicate_from(a);
    let (code, doc) = analyze(&sb);
    assert_eq!(code, 3, "{doc:#}");
    for s in [a, b] {
        assert_eq!(
            code_of(&doc, &s.key()).as_deref(),
            Some("ReplicationRing"),
            "{doc:#}"
        );
    }
    assert_eq!(code_of(&doc, &p.key()).as_deref(), Some("NoProblem"));
}
