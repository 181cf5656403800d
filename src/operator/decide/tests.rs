//! Decisions on hand-made clusters, analysed by the real analysis.

use super::*;
use crate::api::MySQLClusterSpec;
use crate::topology::analysis::analyze;
use crate::topology::instance::{Flavor, InstanceKey, Replication, ThreadState};
use crate::topology::policy::{Downtime, Policy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn node(i: usize) -> Instance {
    let mut n = Instance::unknown(key(i));
    n.reachable = true;
    n.last_seen_ms = Some(1);
    n.flavor = Some(Flavor::Mariadb);
    n.version = Some("10.11.19-MariaDB".into());
    n.read_only = Some(true);
    n.log_bin = Some(true);
    n.log_replica_updates = Some(true);
    n.binlog_format = Some("ROW".into());
    n.gtid.binlog_state = "0-10-5".into();
    n.gtid.current_pos = "0-10-5".into();
    n
}

fn key(i: usize) -> InstanceKey {
    format!("10.0.0.{i}:3306").parse().unwrap()
}

fn replica_of(i: usize, source: usize) -> Instance {
    let mut n = node(i);
    let s = key(source);
    n.replication = Some(Replication {
        source_host: s.host,
        source_port: s.port,
        io_running: ThreadState::Yes,
        sql_running: ThreadState::Yes,
        using_gtid: "Slave_Pos".into(),
        seconds_behind: Some(0),
        ..Default::default()
    });
    n
}

fn failing(mut n: Instance) -> Instance {
    let r = n.replication.as_mut().unwrap();
    r.io_running = ThreadState::Connecting;
    r.last_io_errno = 2003;
    r.last_io_error = "error reconnecting to master".into();
    n
}

fn members(n: usize) -> Vec<Member> {
    (0..n).map(Member::numbered).collect()
}

fn healthy() -> Vec<Instance> {
    let mut p = node(0);
    p.read_only = Some(false);
    vec![p, replica_of(1, 0), replica_of(2, 0)]
}

fn dead_primary() -> Vec<Instance> {
    let mut p = node(0);
    p.reachable = false;
    vec![p, failing(replica_of(1, 0)), failing(replica_of(2, 0))]
}

fn spec() -> MySQLClusterSpec {
    serde_json::from_value(serde_json::json!({"replicas": 3, "image": "mariadb:10.11"})).unwrap()
}

fn status(primary: &str) -> MySQLClusterStatus {
    MySQLClusterStatus {
        primary: Some(primary.into()),
        ..Default::default()
    }
}

fn recovery(outcome: &str, started: Timestamp) -> RecoveryStatus {
    RecoveryStatus {
        id: "r1".into(),
        kind: "DeadMaster".into(),
        failed: "db-0".into(),
        outcome: outcome.into(),
        leader: "korc-a".into(),
        started_at: Time(started),
        ..Default::default()
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn decide_with(
    spec: &MySQLClusterSpec,
    status: &MySQLClusterStatus,
    instances: &[Instance],
    policy: &Policy,
) -> Decision {
    let m = members(instances.len());
    let analysis = analyze(instances, policy, 0);
    decide(&Situation {
        update_revision: None,
        spec,
        status,
        members: &m,
        instances,
        analysis: &analysis,
        now: now(),
    })
}

fn kind(d: &Decision) -> String {
    match d {
        Decision::Converge(_) => "converge".into(),
        Decision::Restart(pod, _) => format!("restart {pod}"),
        Decision::Recover(a) => format!("recover {}", code_name(a.code)),
        Decision::Resume(r) => format!("resume {}", r.id),
        Decision::SwitchOver { request_id, to } => {
            format!(
                "switch over {request_id} to {}",
                to.as_deref().unwrap_or("any")
            )
        }
        Decision::Hold(b, _) => format!("hold {}", b.reason()),
    }
}

#[test]
fn decisions() {
    let p = Policy::default();
    let minute_ago = now() - SignedDuration::from_secs(60);
    let two_hours_ago = now() - SignedDuration::from_secs(7200);
    let with = |f: &dyn Fn(&mut MySQLClusterSpec)| {
        let mut s = spec();
        f(&mut s);
        s
    };
    let recovered = |started, ack: Option<bool>| MySQLClusterStatus {
        recoveries: vec![RecoveryStatus {
            acknowledged: ack,
            ..recovery("recovered", started)
        }],
        ..status("db-1")
    };
    // After a failover db-1 is the primary; db-1 then dies too.
    let second_failure = {
        let mut dead = node(1);
        dead.reachable = false;
        vec![failing(replica_of(0, 1)), dead, failing(replica_of(2, 1))]
    };
    let cases: Vec<(
        &str,
        MySQLClusterSpec,
        MySQLClusterStatus,
        Vec<Instance>,
        &str,
    )> = vec![
        (
            "healthy cluster",
            spec(),
            status("db-0"),
            healthy(),
            "converge",
        ),
        (
            "dead primary",
            spec(),
            status("db-0"),
            dead_primary(),
            "recover DeadMaster",
        ),
        (
            "a dead member that is not the committed primary is not failed over",
            spec(),
            status("db-1"),
            dead_primary(),
            "converge",
        ),
        (
            "paused",
            with(&|s| s.paused = true),
            status("db-0"),
            dead_primary(),
            "hold Paused",
        ),
        (
            "automatic master recovery off",
            with(&|s| s.recovery.automatic_master_recovery = false),
            status("db-0"),
            dead_primary(),
            "hold AutomaticRecoveryDisabled",
        ),
        (
            "a running recovery is resumed before anything else",
            spec(),
            MySQLClusterStatus {
                recoveries: vec![recovery(RUNNING, minute_ago)],
                ..status("db-0")
            },
            dead_primary(),
            "resume r1",
        ),
        (
            "a recovery a minute ago blocks the next one",
            spec(),
            recovered(minute_ago, None),
            second_failure.clone(),
            "hold AntiFlapping",
        ),
        (
            "acknowledged: the block is lifted",
            spec(),
            recovered(minute_ago, Some(true)),
            second_failure.clone(),
            "recover DeadMaster",
        ),
        (
            "the block period is over",
            spec(),
            recovered(two_hours_ago, None),
            second_failure.clone(),
            "recover DeadMaster",
        ),
        (
            "a block period of 0 never blocks",
            with(&|s| s.recovery.block_period_seconds = 0),
            recovered(minute_ago, None),
            second_failure.clone(),
            "recover DeadMaster",
        ),
        (
            "an abandoned recovery does not block",
            spec(),
            MySQLClusterStatus {
                recoveries: vec![recovery("abandoned", minute_ago)],
                ..status("db-1")
            },
            second_failure.clone(),
            "recover DeadMaster",
        ),
        (
            "a switchover does not block",
            spec(),
            MySQLClusterStatus {
                recoveries: vec![RecoveryStatus {
                    kind: "GracefulTakeover".into(),
                    ..recovery("recovered", minute_ago)
                }],
                ..status("db-1")
            },
            second_failure,
            "recover DeadMaster",
        ),
    ];
    for (name, spec, status, instances, want) in cases {
        let got = decide_with(&spec, &status, &instances, &p);
        assert_eq!(kind(&got), want, "{name}");
    }
}

#[test]
fn a_downtimed_primary_is_held() {
    let mut p = Policy::default();
    p.instance_mut(&key(0)).downtime = Some(Downtime {
        until_ms: u64::MAX,
        reason: "maintenance".into(),
    });
    let d = decide_with(&spec(), &status("db-0"), &dead_primary(), &p);
    assert_eq!(kind(&d), "hold Downtimed");
    let Decision::Hold(b, _) = d else { panic!() };
    assert!(b.message().contains("db-0"));
}

#[test]
fn a_locked_semi_sync_primary_is_never_failed_over() {
    // db-1, the only replica acknowledging, is dead; a commit waits on db-0.
    let mut instances = healthy();
    instances[0].semi_sync.master_enabled = true;
    instances[0].semi_sync.master_status = true;
    instances[0].semi_sync.master_wait_for_replica_count = 1;
    instances[0].semi_sync.master_wait_sessions = 1;
    instances[1].reachable = false;
    for p in [
        Policy {
            recover_locked_semi_sync_master: true,
            ..Policy::default()
        },
        Policy {
            enforce_exact_semi_sync_replicas: true,
            ..Policy::default()
        },
    ] {
        let analysis = analyze(&instances, &p, 0);
        let primary = analysis.iter().find(|a| a.instance == key(0)).unwrap();
        assert_eq!(primary.code, AnalysisCode::LockedSemiSyncMaster);
        assert!(primary.actionable, "the engine would recover it");
        let d = decide_with(&spec(), &status("db-0"), &instances, &p);
        assert_eq!(kind(&d), "converge", "{p:?}");
    }
}

#[test]
fn a_single_instance_cannot_fail_over() {
    let mut p = node(0);
    p.reachable = false;
    let spec = MySQLClusterSpec {
        replicas: 1,
        ..spec()
    };
    // A lone dead primary is DeadMasterWithoutReplicas: not actionable, so converge.
    let d = decide_with(&spec, &status("db-0"), &[p], &Policy::default());
    assert_eq!(kind(&d), "converge");
}

#[test]
fn the_anti_flapping_message_says_how_to_acknowledge() {
    let status = MySQLClusterStatus {
        recoveries: vec![recovery("failed", now() - SignedDuration::from_secs(10))],
        ..status("db-0")
    };
    let b = anti_flapping(&spec(), &status, now()).unwrap();
    let m = b.message();
    assert!(
        m.contains(ACKNOWLEDGE_ANNOTATION) && m.contains("r1"),
        "{m}"
    );
    let Blocker::AntiFlapping { until, .. } = b else {
        panic!()
    };
    assert_eq!(until, now() + SignedDuration::from_secs(3590));
}

#[test]
fn a_switchover_request_runs_once_and_never_before_a_recovery() {
    let mut spec = spec();
    spec.switchover = Some(crate::api::SwitchoverSpec {
        to: Some("db-2".into()),
        request_id: "req-1".into(),
    });
    let p = Policy::default();
    let d = decide_with(&spec, &status("db-0"), &healthy(), &p);
    assert_eq!(kind(&d), "switch over req-1 to db-2");
    let served = MySQLClusterStatus {
        recoveries: vec![RecoveryStatus {
            kind: "GracefulTakeover".into(),
            request_id: Some("req-1".into()),
            ..recovery("recovered", now())
        }],
        ..status("db-2")
    };
    let d = decide_with(&spec, &served, &healthy(), &p);
    assert_eq!(kind(&d), "converge", "a served request does not run again");
    let d = decide_with(&spec, &status("db-0"), &dead_primary(), &p);
    assert_eq!(kind(&d), "recover DeadMaster", "a dead primary comes first");
}
