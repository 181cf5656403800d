//! `korc recover --dry-run` and `korc switchover --dry-run` on snapshots, through the
//! built binary: no server is involved, so an incident or a hypothetical topology is
//! replayed as a file.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use support::{korc, korc_json};

const M: &str = "10.0.0.1:3306";
const A: &str = "10.0.0.2:3306";
const B: &str = "10.0.0.3:3306";
const C: &str = "10.0.0.4:3306";

/// A reachable MariaDB replica of `M` that applied `applied` and received `received`,
/// its IO thread failing to reach `M` (or running, when `M` is alive).
fn replica(key: &str, id: u32, applied: u64, received: u64, io: &str) -> Value {
    json!({
        "key": key, "reachable": true, "lastSeenMs": 1_000, "flavor": "mariadb",
        "version": "10.11.19-MariaDB", "serverId": id, "readOnly": true, "logBin": true,
        "logReplicaUpdates": true, "binlogFormat": "ROW",
        "gtid": {"currentPos": format!("0-1-{applied}"), "binlogState": format!("0-1-{applied}")},
        "replication": {"sourceHost": "10.0.0.1", "sourcePort": 3306, "ioRunning": io,
            "sqlRunning": "Yes", "lastIoErrno": 2003, "lastSqlErrno": 0, "usingGtid": "Slave_Pos",
            "receivedGtids": format!("0-1-{received}")}
    })
}

fn live_master() -> Value {
    json!({
        "key": M, "reachable": true, "lastSeenMs": 1_000, "flavor": "mariadb",
        "version": "10.11.19-MariaDB", "serverId": 1, "readOnly": false, "logBin": true,
        "logReplicaUpdates": true, "binlogFormat": "ROW",
        "gtid": {"currentPos": "0-1-12", "binlogState": "0-1-12"}
    })
}

/// The master crashed before korc ever reached it; A received the most, B applied
/// the most, C is behind.
fn crash(dir: &Path) -> String {
    write(
        dir,
        "crash.json",
        &json!({"instances": [
            {"key": M, "reachable": false},
            replica(A, 2, 10, 14, "Connecting"),
            replica(B, 3, 12, 12, "Connecting"),
            replica(C, 4, 9, 9, "Connecting"),
        ]}),
    )
}

fn healthy(dir: &Path) -> String {
    write(
        dir,
        "healthy.json",
        &json!({"instances": [
            live_master(),
            replica(A, 2, 12, 12, "Yes"),
            replica(B, 3, 12, 12, "Yes"),
        ]}),
    )
}

fn write(dir: &Path, name: &str, doc: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, doc.to_string()).unwrap();
    path.to_str().unwrap().to_string()
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

#[test]
fn a_crash_replayed_from_a_snapshot_plans_the_promotion_of_the_most_received_replica() {
    let dir = tempfile::tempdir().unwrap();
    let snap = crash(dir.path());
    let (code, d) = korc_json(&["recover", "--dry-run", "--snapshot", &snap]);
    assert_eq!(code, 0, "{d:#}");
    assert_eq!(d["dryRun"], true);
    assert_eq!(d["verdict"], "plan");
    assert_eq!(d["kind"], "DeadMaster");
    assert_eq!(
        d["analysis"]["code"], "DeadMaster",
        "the never-probed master is the source the replicas imply: {d:#}"
    );
    assert_eq!(d["failed"], M);
    assert_eq!(d["promoted"], A, "received beats applied: {d:#}");
    assert_eq!(d["chosenBy"], "mostAdvanced");
    assert_eq!(d["successor"], A);
    let ranked: Vec<&str> = d["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["instance"].as_str().unwrap())
        .collect();
    assert_eq!(ranked, [A, B, C]);
    assert_eq!(
        steps(&d),
        [
            format!("stopReplicaIo {A}"),
            format!("stopReplicaIo {B}"),
            format!("stopReplicaIo {C}"),
            format!("waitRelayLogApplied {A}"),
            format!("promote {A}"),
            format!("repoint {B}"),
            format!("repoint {C}"),
            format!("fenceOldPrimary {M}"),
        ]
    );
    assert!(
        d["notes"][0]
            .as_str()
            .unwrap()
            .contains("re-reads the positions"),
        "{d:#}"
    );
}

#[test]
fn policy_flags_and_files_shape_the_plan_exclusions_donor_and_hand_over() {
    let dir = tempfile::tempdir().unwrap();
    let snap = crash(dir.path());
    let policy = write(
        dir.path(),
        "policy.json",
        &json!({"instances": {C: {"promotionRule": "prefer"}}}),
    );
    let (code, d) = korc_json(&[
        "recover",
        "--dry-run",
        "--snapshot",
        &snap,
        "--policy",
        &policy,
        "--promotion-rule",
        &format!("{A}=must_not"),
    ]);
    assert_eq!(code, 0, "{d:#}");
    assert_eq!(d["promoted"], B);
    assert_eq!(d["donor"], A, "A received what B lacks: {d:#}");
    assert_eq!(d["ranking"][2]["excluded"], json!({"reason": "mustNot"}));
    assert_eq!(d["handOver"]["from"], B);
    assert_eq!(d["handOver"]["to"], C);
    assert_eq!(d["successor"], C);
    assert_eq!(
        d["steps"][3],
        json!({"kind": "catchUpFromDonor", "instance": B, "donor": A})
    );
}

#[test]
fn no_candidate_nothing_to_do_and_refusals_have_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let snap = crash(dir.path());
    let (code, d) = korc_json(&[
        "recover",
        "--dry-run",
        "--snapshot",
        &snap,
        "--promotion-rule",
        &format!("{A}=must_not"),
        "--downtime",
        &format!("{B}=3600"),
        "--prevent-cross-dc",
        "--data-center",
        &format!("{M}=z1"),
        "--data-center",
        &format!("{C}=z2"),
    ]);
    assert_eq!(code, 6, "{d:#}");
    assert_eq!(d["verdict"], "refused");
    let reasons: Vec<&Value> = d["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["excluded"]["reason"])
        .collect();
    assert_eq!(reasons, ["mustNot", "downtimed", "otherDataCenter"]);
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .starts_with("no replica can be promoted")
    );

    let ok = healthy(dir.path());
    let (code, d) = korc_json(&["recover", "--dry-run", "--snapshot", &ok]);
    assert_eq!(code, 4, "{d:#}");
    assert_eq!(d["verdict"], "nothingToDo");
    assert_eq!(d["reason"], "no problem found");

    // The failed master downtimed: detected, not recovered.
    let (code, d) = korc_json(&[
        "recover",
        "--dry-run",
        "--snapshot",
        &snap,
        "--downtime",
        &format!("{M}=600"),
    ]);
    assert_eq!(code, 4, "{d:#}");
    assert_eq!(
        d["reason"],
        format!("DeadMaster on {M} is not actionable: it is downtimed")
    );
}

#[test]
fn a_switchover_dry_run_plans_or_says_why_the_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ok = healthy(dir.path());
    let (code, d) = korc_json(&["switchover", "--dry-run", "--snapshot", &ok, "--to", B]);
    assert_eq!(code, 0, "{d:#}");
    assert_eq!(d["kind"], "GracefulTakeover");
    assert_eq!(d["failed"], M);
    assert_eq!(
        steps(&d),
        [
            format!("setReadOnly {M}"),
            format!("waitCatchUp {B}"),
            format!("promote {B}"),
            format!("repoint {A}"),
            format!("demoteOldPrimary {M}"),
        ]
    );

    let (code, d) = korc_json(&[
        "switchover",
        "--dry-run",
        "--snapshot",
        &ok,
        "--to",
        B,
        "--promotion-rule",
        &format!("{B}=must_not"),
    ]);
    assert_eq!(code, 6, "{d:#}");
    assert_eq!(d["verdict"], "refused");
    assert_eq!(
        d["reason"],
        format!("{B} cannot be promoted: its promotion rule is must_not")
    );
    assert_eq!(d["steps"], json!([]));

    // Text: the same, readable.
    let (code, out, _) = korc(&[
        "switchover",
        "--dry-run",
        "--snapshot",
        &ok,
        "--to",
        B,
        "--promotion-rule",
        &format!("{B}=must_not"),
        "--output",
        "text",
    ]);
    assert_eq!(code, 6);
    assert!(
        out.starts_with("dry run GracefulTakeover: refused\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{B}  received 0-1-12  must_not  excluded (mustNot): its promotion rule is must_not"
        )),
        "{out}"
    );
}

#[test]
fn text_output_lists_the_candidates_and_numbered_steps() {
    let dir = tempfile::tempdir().unwrap();
    let snap = crash(dir.path());
    let (code, out, err) = korc(&[
        "recover",
        "--dry-run",
        "--snapshot",
        &snap,
        "--output",
        "text",
    ]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "dry run DeadMaster: plan".to_string(),
        format!("failed: {M}"),
        format!("promoted: {A} (it received transactions the next candidate did not)"),
        format!("1.  {A}  received 0-1-14  neutral  <- promoted"),
        format!(" 5. promote {A} writable"),
        format!(" 6. repoint {B} -> {A}"),
    ] {
        assert!(out.contains(&line), "{line:?} missing from\n{out}");
    }
}

#[test]
fn a_snapshot_is_only_for_a_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let snap = crash(dir.path());
    for command in ["recover", "switchover"] {
        let (code, _, err) = korc(&[command, "--snapshot", &snap]);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(err.contains("--dry-run"), "{err}");
    }
}

#[test]
fn a_never_probed_member_of_a_snapshot_gets_the_role_the_others_imply() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(
        dir.path(),
        "snapshot.json",
        &json!({"instances": [
            live_master(),
            replica(A, 2, 12, 12, "Yes"),
            {"key": B, "reachable": false},
        ]}),
    );
    let (_, d) = korc_json(&["analyze", "--snapshot", &snap, "--output", "json"]);
    let b = &d["instances"][2];
    assert_eq!(b["implied"], true, "{d:#}");
    assert_eq!(
        b["replication"]["sourceHost"], "10.0.0.1",
        "a dead replica of the primary, not a second master: {d:#}"
    );
    let (code, d) = korc_json(&["switchover", "--dry-run", "--snapshot", &snap]);
    assert_eq!(code, 0, "{d:#}");
    assert_eq!(d["successor"], A);
    assert_eq!(d["lostReplicas"], json!([B]));
}
