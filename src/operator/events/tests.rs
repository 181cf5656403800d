//! The text of every Event reason korc publishes.

use super::*;
use crate::topology::instance::InstanceKey;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

fn key(i: usize) -> InstanceKey {
    Member::numbered(i).key
}

fn members() -> Vec<Member> {
    (0..3).map(Member::numbered).collect()
}

fn recovery(fields: serde_json::Value) -> RecoveryStatus {
    let mut r = json!({
        "id": "5b0c", "kind": "DeadMaster", "analysisCode": "DeadMaster", "failed": "db-0",
        "outcome": "recovered", "leader": "korc-1", "startedAt": "2026-01-01T00:00:00Z",
    });
    for (k, v) in fields.as_object().unwrap() {
        r[k] = v.clone();
    }
    serde_json::from_value(r).unwrap()
}

fn status(code: Option<&str>, analysis: serde_json::Value) -> MySQLClusterStatus {
    serde_json::from_value(json!({
        "primary": "db-1", "ready": "3/3", "analysisCode": code, "analysis": analysis,
    }))
    .unwrap()
}

fn hook(outcome: &str, message: Option<&str>) -> HookRunStatus {
    HookRunStatus {
        hook: "preFailover".into(),
        name: "page".into(),
        index: 0,
        job: "db-prefailover-5b0c-0".into(),
        outcome: outcome.into(),
        message: message.map(str::to_owned),
        ..HookRunStatus::default()
    }
}

/// Every note a person reads, by reason, for the situations that produce it.
#[test]
fn every_event_reason_reads_as_what_was_seen_and_done() {
    let failed: Result<(), String> = Err("Access denied for user 'korc'".into());
    let dead_master = json!([{
        "code": "DeadMaster", "instance": "db-0", "actionable": true, "evidence": {},
        "description": "Master cannot be reached and none of its replicas is replicating",
    }]);
    let errant = json!([
        {"code": "NoProblem", "instance": "db-1", "description": "", "actionable": false,
         "evidence": {}},
        {"code": "ErrantGTIDDetected", "instance": "db-2", "actionable": false, "evidence": {},
         "description": "replica has transactions its source does not have",
         "errantGtids": "0-12-3"},
    ]);
    let until: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
    let cases: Vec<(Note, EventType, &str, &str)> = vec![
        (
            invalid_spec("spec.replicas: 12 is more than 9"),
            EventType::Warning,
            "InvalidSpec",
            "spec refused: spec.replicas: 12 is more than 9; korc changes nothing until it is fixed",
        ),
        (
            topology_action(&Action::MakeWritable(key(0)), &members(), &Ok(())),
            EventType::Normal,
            "TopologyChanged",
            "db-0 is the primary and read-only: made db-0 writable",
        ),
        (
            topology_action(&Action::MakeReadOnly(key(2)), &members(), &Ok(())),
            EventType::Normal,
            "TopologyChanged",
            "db-2 accepts writes but is not the primary: made db-2 read-only",
        ),
        (
            topology_action(
                &Action::SetSemiSyncSource {
                    instance: key(0),
                    enabled: true,
                },
                &members(),
                &Ok(()),
            ),
            EventType::Normal,
            "TopologyChanged",
            "db-0 is the primary and its commits did not wait for a replica: \
             turned on the source side of semi-sync on db-0",
        ),
        (
            topology_action(
                &Action::SetSemiSyncSource {
                    instance: key(1),
                    enabled: false,
                },
                &members(),
                &Ok(()),
            ),
            EventType::Normal,
            "TopologyChanged",
            "db-1 is a replica with the source side of semi-sync on: \
             turned off the source side of semi-sync on db-1",
        ),
        (
            topology_action(&Action::StartReplication(key(1)), &members(), &Ok(())),
            EventType::Normal,
            "TopologyChanged",
            "the receiver of db-1 was stopped by a recovery that promoted nobody: \
             started it again on db-1",
        ),
        (
            topology_action(
                &Action::Attach {
                    replica: key(2),
                    source: key(0),
                },
                &members(),
                &Ok(()),
            ),
            EventType::Normal,
            "TopologyChanged",
            "db-2 replicates from nothing: attached it as a replica of db-0 (GTID auto-positioning)",
        ),
        (
            topology_action(
                &Action::Attach {
                    replica: key(2),
                    source: key(0),
                },
                &members(),
                &failed,
            ),
            EventType::Warning,
            "TopologyChangeFailed",
            "db-2 replicates from nothing: could not attach db-2 as a replica of db-0: \
             Access denied for user 'korc'; korc tries again next round",
        ),
        (
            topology_action(&Action::MakeWritable(key(0)), &members(), &failed),
            EventType::Warning,
            "TopologyChangeFailed",
            "db-0 is the primary and read-only: could not make db-0 writable: \
             Access denied for user 'korc'; korc tries again next round",
        ),
        (
            acknowledged("checked by on-call"),
            EventType::Normal,
            "RecoveriesAcknowledged",
            "recoveries acknowledged (korc.dev/acknowledge=checked by on-call): \
             automatic recovery is no longer blocked",
        ),
        (
            recovery_ended(&recovery(
                json!({"successor": "db-1", "writableAfterMs": 210}),
            )),
            EventType::Normal,
            "Recovered",
            "db-0 failed (DeadMaster): recovery 5b0c promoted db-1, writable after 210 ms",
        ),
        (
            recovery_ended(&recovery(json!({
                "successor": "db-1", "writableAfterMs": 210, "lostReplicas": ["db-2"],
            }))),
            EventType::Normal,
            "Recovered",
            "db-0 failed (DeadMaster): recovery 5b0c promoted db-1, writable after 210 ms; \
             lost replicas: db-2",
        ),
        (
            recovery_ended(&recovery(json!({
                "outcome": "failed",
                "error": "no replica can be promoted: db-1 is must_not, db-2 is downtimed",
            }))),
            EventType::Warning,
            "RecoveryFailed",
            "db-0 failed (DeadMaster): recovery 5b0c ended failed: no replica can be \
             promoted: db-1 is must_not, db-2 is downtimed; nobody was promoted \
             (kubectl korc recoveries shows the steps)",
        ),
        (
            recovery_ended(&recovery(json!({
                "kind": "GracefulTakeover", "analysisCode": null, "requestId": "r1",
                "successor": "db-2", "writeOutageMs": 78,
            }))),
            EventType::Normal,
            "SwitchedOver",
            "switchover r1 moved the primary from db-0 to db-2, write outage 78 ms",
        ),
        (
            recovery_ended(&recovery(json!({
                "kind": "GracefulTakeover", "analysisCode": null, "requestId": "r2",
                "outcome": "rolledBack", "error": "db-2 did not catch up within 20 s",
            }))),
            EventType::Warning,
            "SwitchoverFailed",
            "switchover r2 away from db-0 ended rolledBack: db-2 did not catch up within \
             20 s; db-0 stays the primary",
        ),
        (
            clone_started("db-3", "db-1", "purged"),
            EventType::Normal,
            "CloneStarted",
            "its source purged the transactions it needs: copying db-1's data into db-3; \
             db-3 stays out of the replicas until it is attached",
        ),
        (
            clone_started("db-2", "db-1", "requested"),
            EventType::Normal,
            "CloneStarted",
            "korc.dev/rebuild asks for it: copying db-1's data into db-2; \
             db-2 stays out of the replicas until it is attached",
        ),
        (
            clone_finished("db-3", "db-1", 12.34),
            EventType::Normal,
            "CloneFinished",
            "db-3 restarted on the copy of db-1's data (12.3 s): attaching it as a replica",
        ),
        (
            clone_failed("db-3", "", "no instance can give its data"),
            EventType::Warning,
            "CloneFailed",
            "copying data into db-3 failed: no instance can give its data; korc tries again in 30 s",
        ),
        (
            rolling_restart("db-2", Some("db-7c9f")),
            EventType::Normal,
            "RollingRestart",
            "db-2 runs an outdated pod template: evicted it to restart on revision db-7c9f",
        ),
        (
            recovery_blocked(
                &Blocker::AntiFlapping {
                    until,
                    recovery: "5b0c".into(),
                },
                "db",
            ),
            EventType::Warning,
            "RecoveryBlocked",
            "recovery 5b0c blocks automatic recoveries until 2026-01-01T01:00:00Z \
             (spec.recovery.blockPeriodSeconds); to lift the block: kubectl korc ack db",
        ),
        (
            recovery_blocked(&Blocker::Downtimed { pod: "db-0".into() }, "db"),
            EventType::Warning,
            "RecoveryBlocked",
            "db-0 is downtimed (spec.instances.db-0.downtimeUntil): not recovered",
        ),
        (
            analysis_changed(
                Some("NoProblem"),
                &status(Some("DeadMaster"), dead_master.clone()),
                Some(&Blocker::Paused),
            )
            .unwrap(),
            EventType::Warning,
            "FailureDetected",
            "DeadMaster on db-0: Master cannot be reached and none of its replicas is \
             replicating; not recovered: spec.paused is set: korc neither reconciles nor recovers",
        ),
        (
            analysis_changed(
                Some("NoProblem"),
                &status(Some("DeadMaster"), dead_master),
                None,
            )
            .unwrap(),
            EventType::Warning,
            "FailureDetected",
            "DeadMaster on db-0: Master cannot be reached and none of its replicas is \
             replicating; korc recovers it",
        ),
        (
            analysis_changed(None, &status(Some("ErrantGTIDDetected"), errant), None).unwrap(),
            EventType::Warning,
            "FailureDetected",
            "ErrantGTIDDetected on db-2: replica has transactions its source does not have \
             (errant GTIDs 0-12-3); no automatic recovery for this code: korc reports it in \
             status.analysis and keeps probing",
        ),
        (
            analysis_changed(
                Some("ReplicationStopped"),
                &status(Some("NoProblem"), json!([])),
                None,
            )
            .unwrap(),
            EventType::Normal,
            "AnalysisCleared",
            "no problem any more (was ReplicationStopped): primary db-1, 3/3 ready",
        ),
        (
            hook_started(&hook("running", None), "created"),
            EventType::Normal,
            "HookStarted",
            "preFailover hook page: Job db-prefailover-5b0c-0 created",
        ),
        (
            hook_ended(&hook("succeeded", None), true),
            EventType::Normal,
            "HookSucceeded",
            "preFailover hook page (Job db-prefailover-5b0c-0) succeeded",
        ),
        (
            hook_ended(&hook("timedOut", Some("still running after 60 s")), false),
            EventType::Warning,
            "HookFailed",
            "preFailover hook page (Job db-prefailover-5b0c-0) timedOut: still running after 60 s",
        ),
    ];
    for (note, type_, reason, text) in cases {
        assert_eq!(
            (note.type_, note.reason, note.text.as_str()),
            (type_, reason, text),
            "{note:?}"
        );
        assert!(
            !note.text.contains("10.0.0."),
            "an Event names pods, not addresses: {}",
            note.text
        );
    }
}

#[test]
fn no_analysis_event_while_the_cluster_is_created_or_stays_healthy() {
    let creating = status(None, json!([]));
    let healthy = status(Some("NoProblem"), json!([]));
    for (previous, status) in [
        (None, &creating),
        (Some(""), &creating),
        // A restarted operator sees a healthy cluster: nothing was cleared.
        (None, &healthy),
        // The first code of a new cluster: nothing was cleared either.
        (Some(""), &healthy),
    ] {
        assert_eq!(
            analysis_changed(previous, status, None),
            None,
            "{previous:?}"
        );
    }
}

#[test]
fn an_address_outside_the_cluster_is_named_as_it_is() {
    let outside: InstanceKey = "192.0.2.7:3306".parse().unwrap();
    let note = topology_action(&Action::MakeReadOnly(outside), &members(), &Ok(()));
    assert_eq!(
        note.text,
        "192.0.2.7:3306 accepts writes but is not the primary: made 192.0.2.7:3306 read-only"
    );
}

#[test]
fn password_rotation_notes_name_accounts_and_pods() {
    let note = passwords_rotated(
        &[Account::Operator, Account::Replication],
        "db-0",
        &["db-1", "db-2"],
    );
    assert_eq!(
        (note.type_, note.reason),
        (EventType::Normal, "PasswordsRotated")
    );
    assert_eq!(
        note.text,
        "set the new password of 'korc'@'%', 'korc_repl'@'%' on the primary db-0, applied by \
         db-1, db-2; repointed db-1, db-2 with the new replication password; korc uses it from now on"
    );
    let single = passwords_rotated(&[Account::Monitor], "solo-0", &[]);
    assert_eq!(
        single.text,
        "set the new password of 'korc_monitor'@'%' on the primary solo-0; korc uses it from now on"
    );
    let failed = rotation_failed("db-2 had not applied the new passwords after 10s");
    assert_eq!(
        (failed.type_, failed.reason),
        (EventType::Warning, "PasswordRotationFailed")
    );
    assert!(
        failed.text.contains("db-2 had not applied"),
        "{}",
        failed.text
    );
}
