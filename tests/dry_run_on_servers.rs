//! Dry runs against real MariaDB and MySQL servers: the plan names the right candidate
//! and steps, and afterwards nothing changed on any server.

#[macro_use]
mod support;

use serde_json::Value;
use support::{Flavor, Sandbox, Server, korc, korc_json};

on_both_flavors!(
    a_dry_run_after_a_crash_names_the_candidate_and_changes_nothing,
    switchover_dry_runs_change_nothing_and_refuse_an_excluded_target,
);

/// What a dry run must leave as it found it, per server: the replication threads,
/// `read_only` (and MySQL's `super_read_only`) and the source.
fn replication_state(s: &Server) -> [String; 5] {
    let super_read_only = match s.flavor {
        Flavor::MariaDb => String::new(),
        Flavor::Mysql => s.variable("super_read_only"),
    };
    [
        s.io_running(),
        s.sql_running(),
        s.source_host(),
        s.variable("read_only"),
        super_read_only,
    ]
}

fn write_rows(server: &Server, tag: &str, n: usize) {
    let values: Vec<String> = (0..n).map(|i| format!("('{tag}-{i}')")).collect();
    server
        .app_sql(&format!("INSERT INTO t (v) VALUES {}", values.join(",")))
        .unwrap();
}

fn steps(doc: &Value) -> Vec<String> {
    doc["steps"]
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

fn a_dry_run_after_a_crash_names_the_candidate_and_changes_nothing(flavor: Flavor) {
    let mut sb = Sandbox::replication(flavor, 3);
    let [m, a, b] = [0, 1, 2].map(|i| sb.servers[i].key());
    write_rows(&sb.servers[0], "early", 20);
    for r in &sb.servers[1..] {
        r.wait_caught_up(&sb.servers[0]);
    }
    // b stops receiving: a receives the last writes and is the only right candidate.
    sb.servers[2].sql("STOP REPLICA IO_THREAD");
    write_rows(&sb.servers[0], "late", 20);
    sb.servers[1].wait_caught_up(&sb.servers[0]);
    sb.servers[0].kill9();

    let before: Vec<_> = sb.servers[1..].iter().map(replication_state).collect();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let instances = sb.instances();
    let (code, d) = korc_json(&[
        "recover",
        "--dry-run",
        "--instances",
        &instances,
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{d:#}");
    assert_eq!(d["analysis"]["code"], "DeadMaster", "{d:#}");
    assert_eq!(d["promoted"], a.as_str(), "{d:#}");
    assert_eq!(d["chosenBy"], "mostAdvanced");
    assert_eq!(
        steps(&d),
        [
            format!("stopReplicaIo {a}"),
            format!("stopReplicaIo {b}"),
            format!("waitRelayLogApplied {a}"),
            format!("promote {a}"),
            format!("repoint {b}"),
            format!("fenceOldPrimary {m}"),
        ]
    );
    let (code, text, err) = korc(&[
        "recover",
        "--dry-run",
        "--instances",
        &instances,
        "--output",
        "text",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains(&format!("promoted: {a}")), "{text}");

    let after: Vec<_> = sb.servers[1..].iter().map(replication_state).collect();
    assert_eq!(after, before, "a dry run changes nothing");
    assert!(!state.exists(), "a dry run leaves korc's memory alone too");
    // The real recovery then does what the dry run said.
    let (code, rec) = korc_json(&["recover", "--instances", &instances]);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["successor"], a.as_str());
}

fn switchover_dry_runs_change_nothing_and_refuse_an_excluded_target(flavor: Flavor) {
    let sb = Sandbox::replication(flavor, 3);
    let [m, a, b] = [0, 1, 2].map(|i| sb.servers[i].key());
    let instances = sb.instances();
    let before: Vec<_> = sb.servers.iter().map(replication_state).collect();

    let (code, d) = korc_json(&["switchover", "--dry-run", "--instances", &instances]);
    assert_eq!(code, 0, "{d:#}");
    assert_eq!(d["failed"], m.as_str());
    assert_eq!(
        d["successor"],
        a.as_str().min(b.as_str()),
        "equal replicas: the first by address"
    );
    assert_eq!(steps(&d)[0], format!("setReadOnly {m}"));

    let refused = [
        "switchover",
        "--dry-run",
        "--instances",
        &instances,
        "--to",
        &b,
        "--promotion-rule",
        &format!("{b}=must_not"),
    ];
    let (code, d) = korc_json(&refused);
    assert_eq!(code, 6, "{d:#}");
    assert_eq!(
        d["reason"],
        format!("{b} cannot be promoted: its promotion rule is must_not")
    );
    let after: Vec<_> = sb.servers.iter().map(replication_state).collect();
    assert_eq!(after, before, "a dry run changes nothing");

    // The real switchover refuses the same target, before changing anything.
    let real: Vec<&str> = refused
        .iter()
        .copied()
        .filter(|a| *a != "--dry-run")
        .collect();
    let (code, rec) = korc_json(&real);
    assert_eq!(code, 5, "{rec:#}");
    assert_eq!(rec["error"], d["reason"]);
    assert_eq!(sb.servers[0].sql("SELECT @@global.read_only"), "0");
}
