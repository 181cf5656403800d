//! Which instances are copied, and how copies are kept out of the topology.

use super::*;
use crate::topology::instance::{InstanceKey, Replication};
use k8s_openapi::jiff::Timestamp;

fn members(n: usize) -> Vec<Member> {
    (0..n).map(Member::numbered).collect()
}

fn primary() -> Instance {
    let mut p = Instance::unknown(Member::numbered(0).key);
    p.reachable = true;
    p.flavor = Some(Flavor::Mysql);
    p.read_only = Some(false);
    p.gtid.executed = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100".into();
    p
}

/// MySQL 8's report of the source's error 1236.
const MYSQL_PURGED: &str = "Got fatal error 1236 from source when reading data from binary log: \
     'Cannot replicate because the source purged required binary logs.'";

/// Instance `i` replicating from db-0, its receiver in `io` with error `errno`.
fn replica(i: usize, io: ThreadState, errno: u32) -> Instance {
    let mut r = Instance::unknown(Member::numbered(i).key);
    r.reachable = true;
    r.flavor = Some(Flavor::Mysql);
    r.read_only = Some(true);
    r.replication = Some(Replication {
        source_host: "10.0.0.0".into(),
        source_port: 3306,
        io_running: io,
        sql_running: ThreadState::Yes,
        last_io_errno: errno,
        ..Default::default()
    });
    r
}

/// A case: its name, the pods, their probe, the copies expected.
type Case = (
    &'static str,
    Vec<Member>,
    Vec<Instance>,
    Vec<(String, Reason)>,
);

#[test]
fn replicas_refused_for_purged_transactions_and_annotated_pods_are_copied() {
    let mut annotated = members(5);
    annotated[3].rebuild = true;
    let mut errant = replica(4, ThreadState::No, 1236);
    errant.gtid.executed = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100,\
                            aaaaaaaa-71ca-11e1-9e33-c80aa9429562:1"
        .into();
    let mut unreachable = replica(2, ThreadState::No, 1236);
    unreachable.reachable = false;
    let cases: Vec<Case> = vec![
        (
            "healthy",
            members(3),
            vec![
                primary(),
                replica(1, ThreadState::Yes, 0),
                replica(2, ThreadState::Yes, 0),
            ],
            vec![],
        ),
        (
            "purged",
            members(3),
            vec![
                primary(),
                replica(1, ThreadState::Yes, 0),
                replica(2, ThreadState::No, 1236),
            ],
            vec![("db-2".into(), Reason::Purged)],
        ),
        (
            "purged, as MySQL 8 reports it",
            members(2),
            vec![primary(), {
                let mut r = replica(1, ThreadState::No, 13114);
                r.replication.as_mut().unwrap().last_io_error = MYSQL_PURGED.into();
                r
            }],
            vec![("db-1".into(), Reason::Purged)],
        ),
        (
            "another fatal error from the source",
            members(2),
            vec![primary(), {
                let mut r = replica(1, ThreadState::No, 13114);
                r.replication.as_mut().unwrap().last_io_error =
                    "Got fatal error 1593 from source when reading data from binary log".into();
                r
            }],
            vec![],
        ),
        (
            "a receiver that only lost its connection",
            members(2),
            vec![primary(), replica(1, ThreadState::Connecting, 2003)],
            vec![],
        ),
        (
            "refused credentials are attached again, not copied",
            members(2),
            vec![primary(), replica(1, ThreadState::No, 1045)],
            vec![],
        ),
        (
            "unreachable: nothing to copy into",
            members(3),
            vec![primary(), replica(1, ThreadState::Yes, 0), unreachable],
            vec![],
        ),
        (
            "annotated, and one whose errant transactions a copy would destroy",
            annotated,
            vec![
                primary(),
                replica(1, ThreadState::Yes, 0),
                replica(2, ThreadState::Yes, 0),
                replica(3, ThreadState::Yes, 0),
                errant,
            ],
            vec![("db-3".into(), Reason::Requested)],
        ),
    ];
    for (name, members, instances, expected) in cases {
        assert_eq!(
            wanted(&members, &instances, Some("db-0"), false),
            expected,
            "{name}"
        );
    }
}

/// Instance `i`, a MariaDB replica of db-0 (server 10, at 0-10-100) that wrote
/// 0-`i`-101..105 of its own after it forked (an old primary that came back).
fn maria_errant(i: usize) -> Instance {
    let mut r = replica(i, ThreadState::No, 0);
    r.flavor = Some(Flavor::Mariadb);
    r.gtid.binlog_state = format!("0-10-100,0-{i}-105");
    r
}

fn maria_primary() -> Instance {
    let mut p = primary();
    p.flavor = Some(Flavor::Mariadb);
    p.gtid.binlog_state = "0-10-100,0-20-130".into();
    p
}

#[test]
fn errant_instances_are_copied_over_on_request_or_by_policy_only() {
    let instances = [
        maria_primary(),
        maria_errant(1),
        replica(2, ThreadState::Yes, 0),
    ];
    let mut instances = instances.to_vec();
    instances[2].flavor = Some(Flavor::Mariadb);
    instances[2].gtid.binlog_state = "0-10-100,0-20-130".into();
    let plain = members(3);
    assert_eq!(wanted(&plain, &instances, Some("db-0"), false), vec![]);
    assert_eq!(
        wanted(&plain, &instances, Some("db-0"), true),
        vec![("db-1".into(), Reason::Errant)]
    );
    let mut annotated = members(3);
    annotated[1].rebuild = true;
    assert_eq!(
        wanted(&annotated, &instances, Some("db-0"), false),
        vec![("db-1".into(), Reason::Requested)]
    );
    // Refused for purged transactions too: still only on request or by policy.
    instances[1].replication.as_mut().unwrap().last_io_errno = 1236;
    assert_eq!(wanted(&plain, &instances, Some("db-0"), false), vec![]);
    // With the primary unreachable nothing can be told, and nothing is copied.
    instances[0].reachable = false;
    assert_eq!(wanted(&plain, &instances, Some("db-0"), true), vec![]);
}

#[test]
fn what_a_copy_saves_is_the_errant_transactions_per_writer() {
    let (gtids, ranges) = errant_of(&maria_errant(1), &maria_primary()).unwrap();
    assert_eq!(gtids, "0-1-105");
    assert_eq!(
        ranges,
        [ErrantRange {
            domain: 0,
            server_id: 1,
            after: None,
            through: 105
        }]
    );
    let mut clean = maria_errant(2);
    clean.gtid.binlog_state = "0-10-100".into();
    assert_eq!(errant_of(&clean, &maria_primary()), None);
    // MySQL: the GTIDs, no ranges (korc does not save them there).
    let mut mysql = replica(3, ThreadState::Yes, 0);
    mysql.gtid.executed = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100,\
                           aaaaaaaa-71ca-11e1-9e33-c80aa9429562:1"
        .into();
    let (gtids, ranges) = errant_of(&mysql, &primary()).unwrap();
    assert_eq!(gtids, "aaaaaaaa-71ca-11e1-9e33-c80aa9429562:1");
    assert!(ranges.is_empty());
}

#[test]
fn the_primary_is_never_copied_over() {
    let mut m = members(2);
    m[0].rebuild = true;
    let instances = [primary(), replica(1, ThreadState::Yes, 0)];
    assert_eq!(wanted(&m, &instances, Some("db-0"), true), vec![]);
    assert_eq!(wanted(&m, &instances, None, true), vec![]);
}

fn copy(phase: &str) -> CloneProgressStatus {
    CloneProgressStatus {
        donor: "db-1".into(),
        reason: "purged".into(),
        phase: phase.into(),
        bytes_copied: None,
        bytes_estimated: None,
        started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        error: None,
        errant_gtids: None,
        saved_to: None,
    }
}

#[test]
fn an_instance_being_copied_is_neither_attached_nor_listed() {
    let m = members(3);
    let key = |i: usize| -> InstanceKey { m[i].key.clone() };
    let plan = || Plan {
        primary: Some("db-0".into()),
        actions: vec![
            Action::Attach {
                replica: key(2),
                source: key(0),
            },
            Action::StartReplication(key(2)),
            Action::SetSemiSyncSource {
                instance: key(2),
                enabled: false,
            },
            Action::StartReplication(key(1)),
        ],
        replicas: vec!["db-1".into(), "db-2".into()],
        ..Plan::default()
    };
    for (phase, held) in [("copying", true), ("restarting", true), ("failed", false)] {
        let mut p = plan();
        hold_out(
            &mut p,
            &m,
            &[],
            &BTreeMap::from([("db-2".to_string(), copy(phase))]),
            10,
        );
        if held {
            assert_eq!(p.actions, vec![Action::StartReplication(key(1))], "{phase}");
            assert_eq!(p.replicas, ["db-1"], "{phase}");
            assert_eq!(
                p.excluded["db-2"],
                format!("being cloned from db-1 ({phase})")
            );
        } else {
            assert_eq!(p, plan(), "{phase}");
        }
    }
}

#[test]
fn a_donor_leaves_the_replicas_service_only_while_the_copy_makes_it_lag() {
    let m = members(3);
    let lagging = |seconds: Option<u64>| {
        let mut donor = replica(1, ThreadState::Yes, 0);
        donor.replication.as_mut().unwrap().seconds_behind = seconds;
        vec![primary(), donor, replica(2, ThreadState::Yes, 0)]
    };
    let listed = |phase: &str, seconds: Option<u64>| {
        let mut p = Plan {
            primary: Some("db-0".into()),
            replicas: vec!["db-1".into(), "db-2".into()],
            ..Plan::default()
        };
        let copies = BTreeMap::from([("db-2".to_string(), copy(phase))]);
        hold_out(&mut p, &m, &lagging(seconds), &copies, 10);
        p.replicas
    };
    assert_eq!(listed("copying", Some(3)), ["db-1"], "serving reads");
    assert_eq!(listed("copying", Some(10)), ["db-1"], "at the limit");
    assert!(listed("copying", Some(11)).is_empty(), "beyond it");
    assert_eq!(listed("copying", None), ["db-1"], "lag unknown");
    assert_eq!(listed("restarting", Some(60)), ["db-1"], "the copy is done");
}

fn record(pod: &str, started: i64, outcome: &str) -> CloneRecordStatus {
    let at = |s: i64| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::from_second(s).unwrap())
    };
    CloneRecordStatus {
        pod: pod.into(),
        donor: "db-1".into(),
        reason: "purged".into(),
        outcome: outcome.into(),
        error: None,
        bytes_copied: None,
        started_at: at(started),
        ended_at: at(started + 5),
        errant_gtids: None,
        saved_to: None,
    }
}

#[test]
fn the_history_adds_each_ended_copy_once_and_keeps_the_last_ten() {
    let recorded = vec![record("db-3", 1, "failed")];
    let ended = vec![record("db-3", 1, "failed"), record("db-3", 40, "completed")];
    assert_eq!(
        history(&recorded, &ended),
        vec![record("db-3", 1, "failed"), record("db-3", 40, "completed")]
    );
    let many: Vec<CloneRecordStatus> = (0..12).map(|i| record("db-2", i, "completed")).collect();
    let kept = history(&[], &many);
    assert_eq!(kept.len(), HISTORY);
    assert_eq!(
        kept[0],
        record("db-2", 2, "completed"),
        "the oldest go first"
    );
}

#[test]
fn a_recorded_copy_read_back_from_the_status_is_known_again() {
    let copy = Copy {
        donor: "db-1".into(),
        reason: Reason::Purged,
        started: Timestamp::from_nanosecond(1_700_000_000_123_456_789).unwrap(),
        phase: Phase::Restarting(std::time::Instant::now(), None),
        progress: None,
        reported: None,
        saved: None,
    };
    let ended = vec![copy.record("db-3", None)];
    // What the API server gives back: the status's times to the second.
    let stored: Vec<CloneRecordStatus> =
        serde_json::from_value(serde_json::to_value(&ended).unwrap()).unwrap();
    assert_eq!(history(&stored, &ended), stored, "recorded once");
}
