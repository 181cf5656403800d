//! Recovery plans on hand-built topologies.

use super::*;
use crate::topology::instance::{Flavor, Replication, ThreadState};
use crate::topology::policy::PromotionRule;

fn key(s: &str) -> InstanceKey {
    s.parse().unwrap()
}

/// The dead master `m:1` (server 1), last seen having written up to 0-1-10.
fn failed_master() -> Instance {
    let mut m = Instance::unknown(key("m:1"));
    m.flavor = Some(Flavor::Mariadb);
    m.server_id = Some(1);
    m.last_seen_ms = Some(1);
    m.read_only = Some(false);
    m.gtid.binlog_state = "0-1-10".into();
    m
}

/// A replica of `source` that applied `applied` and received `received` (domain 0,
/// server 1), with its IO thread stopped.
fn replica_of(source: &str, k: &str, server_id: u32, applied: u64, received: u64) -> Instance {
    let (host, port) = source.split_once(':').unwrap();
    let mut r = Instance::unknown(key(k));
    r.reachable = true;
    r.last_seen_ms = Some(1);
    r.flavor = Some(Flavor::Mariadb);
    r.server_id = Some(server_id);
    r.version = Some("10.11.19-MariaDB".into());
    r.log_bin = Some(true);
    r.log_replica_updates = Some(true);
    r.read_only = Some(true);
    r.gtid.current_pos = format!("0-1-{applied}");
    r.gtid.binlog_state = format!("0-1-{applied}");
    r.replication = Some(Replication {
        source_host: host.into(),
        source_port: port.parse().unwrap(),
        io_running: ThreadState::No,
        sql_running: ThreadState::Yes,
        using_gtid: "Slave_Pos".into(),
        received_gtids: format!("0-1-{received}"),
        ..Default::default()
    });
    r
}

fn replica(k: &str, server_id: u32, applied: u64, received: u64) -> Instance {
    replica_of("m:1", k, server_id, applied, received)
}

/// `r` promoted by an earlier run: no source, writable or not.
fn promoted(mut r: Instance, writable: bool) -> Instance {
    r.replication = None;
    r.read_only = Some(!writable);
    r
}

fn described(steps: &[PlannedStep]) -> Vec<String> {
    steps
        .iter()
        .map(|s| format!("{} {}", s.kind(), s.instance()))
        .collect()
}

#[test]
fn dead_master_plan_orders_catch_up_apply_promote_repoint_fence_detach_then_hand_over() {
    let mut errant = replica("e:1", 5, 9, 9);
    errant.gtid.binlog_state = "0-1-9,0-5-3".into();
    let mut unparseable = replica("u:1", 6, 9, 9);
    unparseable.gtid.current_pos = "garbage".into();
    let mut down = replica("d:1", 7, 9, 9);
    down.reachable = false;
    let replicas = vec![
        replica("a:1", 2, 10, 12),
        replica("b:1", 3, 10, 10),
        replica("x:1", 4, 10, 14),
        errant,
        unparseable,
        down,
    ];
    let mut policy = Policy::default();
    policy.instance_mut(&key("x:1")).promotion_rule = PromotionRule::MustNot;
    policy.instance_mut(&key("b:1")).promotion_rule = PromotionRule::Prefer;
    let plan = dead_master(&replicas, &failed_master(), &policy, 0, None).unwrap();
    assert_eq!(plan.successor, key("a:1"));
    assert_eq!(
        described(&plan.steps),
        [
            "catchUpFromDonor a:1",
            "waitRelayLogApplied a:1",
            "promote a:1",
            "repoint b:1",
            "repoint x:1",
            "fenceOldPrimary m:1",
            "detachLostReplica e:1",
            "detachLostReplica u:1",
        ]
    );
    assert_eq!(
        plan.steps[0],
        PlannedStep::CatchUpFromDonor {
            candidate: key("a:1"),
            donor: key("x:1")
        }
    );
    assert_eq!(plan.lost, [key("e:1"), key("u:1"), key("d:1")]);
    let hand_over = plan.hand_over.unwrap();
    assert_eq!((hand_over.from, hand_over.to), (key("a:1"), key("b:1")));
    assert_eq!(
        described(&hand_over.steps),
        [
            "setReadOnly a:1",
            "waitCatchUp b:1",
            "promote b:1",
            "repoint x:1",
            "demoteOldPrimary a:1",
        ]
    );
}

#[test]
fn no_promotion_without_apply_promotion_and_no_detach_without_detach_lost_replicas() {
    let mut errant = replica("e:1", 5, 9, 9);
    errant.gtid.binlog_state = "0-1-9,0-5-3".into();
    let replicas = vec![replica("a:1", 2, 10, 10), errant];
    let policy = Policy {
        apply_promotion: false,
        detach_lost_replicas: false,
        ..Policy::default()
    };
    let plan = dead_master(&replicas, &failed_master(), &policy, 0, None).unwrap();
    assert!(plan.steps.contains(&PlannedStep::Promote {
        candidate: key("a:1"),
        writable: false,
        semi_sync: false
    }));
    assert_eq!(
        described(&plan.steps),
        [
            "waitRelayLogApplied a:1",
            "promote a:1",
            "fenceOldPrimary m:1"
        ]
    );
}

#[test]
fn a_kept_candidate_is_promoted_and_catches_up_from_the_more_advanced() {
    let replicas = vec![replica("a:1", 2, 10, 14), replica("b:1", 3, 10, 12)];
    let plan = dead_master(
        &replicas,
        &failed_master(),
        &Policy::default(),
        0,
        Some(&key("b:1")),
    )
    .unwrap();
    assert_eq!(plan.successor, key("b:1"));
    assert_eq!(
        described(&plan.steps)[..3],
        [
            "catchUpFromDonor b:1",
            "waitRelayLogApplied b:1",
            "promote b:1"
        ]
    );
    // A kept candidate that can no longer be promoted is replaced.
    let mut policy = Policy::default();
    policy.instance_mut(&key("b:1")).promotion_rule = PromotionRule::MustNot;
    let plan = dead_master(&replicas, &failed_master(), &policy, 0, Some(&key("b:1"))).unwrap();
    assert_eq!(plan.successor, key("a:1"));
}

#[test]
fn no_candidate_is_an_error_naming_each_exclusion() {
    let mut policy = Policy::default();
    policy.instance_mut(&key("a:1")).promotion_rule = PromotionRule::MustNot;
    let e = dead_master(
        &[replica("a:1", 2, 10, 10)],
        &failed_master(),
        &policy,
        0,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("MustNot"), "{e}");
}

#[test]
fn start_reads_what_an_earlier_recovery_left() {
    let m = failed_master();
    let a = replica("a:1", 2, 10, 12);
    let b = replica("b:1", 3, 10, 10);
    let fresh = [m.clone(), a.clone(), b.clone()];
    let failed = key("m:1");
    /// Name, instances after the earlier run, hint, expected start or error text.
    type Case<'a> = (
        &'a str,
        Vec<Instance>,
        Option<&'a str>,
        Result<Start, &'a str>,
    );
    let cases: Vec<Case> = vec![
        ("nothing done", fresh.to_vec(), None, Ok(Start::Anew)),
        (
            "hint not promoted yet",
            fresh.to_vec(),
            Some("a:1"),
            Ok(Start::Keep(key("a:1"))),
        ),
        (
            "hint promoted but read-only",
            vec![m.clone(), promoted(a.clone(), false), b.clone()],
            Some("a:1"),
            Ok(Start::Complete(key("a:1"))),
        ),
        (
            "promoted without hint, holding what the others received",
            vec![
                m.clone(),
                promoted(replica("a:1", 2, 12, 12), true),
                b.clone(),
            ],
            None,
            Ok(Start::Complete(key("a:1"))),
        ),
        (
            "a writable master lacking what a replica received",
            vec![
                m.clone(),
                promoted(replica("a:1", 2, 9, 9), true),
                b.clone(),
            ],
            None,
            Err("refusing to make a second primary"),
        ),
        (
            "two writable masters",
            vec![
                m.clone(),
                promoted(replica("a:1", 2, 12, 12), true),
                promoted(replica("b:1", 3, 12, 12), true),
            ],
            None,
            Err("several instances are writable masters"),
        ),
        (
            "an unreachable hint is ignored",
            {
                let mut a = a.clone();
                a.reachable = false;
                vec![m.clone(), a, b.clone()]
            },
            Some("a:1"),
            Ok(Start::Anew),
        ),
    ];
    for (name, instances, hint, want) in cases {
        let hint = hint.map(key);
        let got = start(&instances, &failed, hint.as_ref());
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{name}"),
            (Err(g), Err(w)) => assert!(g.to_string().contains(w), "{name}: {g}"),
            (g, w) => panic!("{name}: got {g:?}, want {w:?}"),
        }
    }
}

#[test]
fn completion_promotes_only_if_needed_and_leaves_out_replicas_ahead_of_the_successor() {
    let m = failed_master();
    let instances = vec![
        m.clone(),
        promoted(replica("a:1", 2, 12, 12), false),
        replica("b:1", 3, 10, 12),
        replica("c:1", 4, 10, 13),
    ];
    let plan = completion(&instances, &key("m:1"), &key("a:1"), &Policy::default()).unwrap();
    assert_eq!(
        described(&plan.steps),
        [
            "promote a:1",
            "repoint b:1",
            "fenceOldPrimary m:1",
            "detachLostReplica c:1"
        ]
    );
    assert_eq!(plan.lost, [key("c:1")]);
    assert!(plan.candidate.is_none() && plan.hand_over.is_none());

    let instances = vec![
        m,
        promoted(replica("a:1", 2, 12, 12), true),
        replica("b:1", 3, 10, 12),
    ];
    let plan = completion(&instances, &key("m:1"), &key("a:1"), &Policy::default()).unwrap();
    assert_eq!(
        described(&plan.steps),
        ["repoint b:1", "fenceOldPrimary m:1"]
    );
}

#[test]
fn freeze_stops_every_reachable_replica_and_needs_one() {
    let mut down = replica("d:1", 4, 1, 1);
    down.reachable = false;
    let instances = vec![
        failed_master(),
        replica("a:1", 2, 1, 1),
        down,
        replica_of("a:1", "x:1", 3, 1, 1),
    ];
    assert_eq!(
        described(&freeze(&instances, &key("m:1")).unwrap()),
        ["stopReplicaIo a:1"]
    );
    let e = freeze(&instances, &key("x:1")).unwrap_err();
    assert_eq!(e.to_string(), "x:1 has no replicas to promote");
    let e = freeze(&instances, &key("nope:1")).unwrap_err();
    assert_eq!(e.to_string(), "nope:1 is not an instance of the cluster");
}

#[test]
fn takeover_plans_a_switch_to_the_named_or_chosen_replica() {
    let mut p = promoted(replica("p:1", 1, 10, 10), true);
    p.last_seen_ms = Some(1);
    let mut down = replica_of("p:1", "d:1", 4, 10, 10);
    down.reachable = false;
    let instances = vec![
        p,
        replica_of("p:1", "a:1", 2, 10, 10),
        replica_of("p:1", "b:1", 3, 10, 10),
        down,
    ];
    let plan = takeover(&instances, 0, Some(&key("b:1")), &Policy::default(), 0).unwrap();
    assert_eq!(
        described(&plan.steps),
        [
            "setReadOnly p:1",
            "waitCatchUp b:1",
            "promote b:1",
            "repoint a:1",
            "demoteOldPrimary p:1"
        ]
    );
    assert_eq!(plan.lost, [key("d:1")]);
    assert!(plan.candidate.is_none());

    let plan = takeover(&instances, 0, None, &Policy::default(), 0).unwrap();
    assert_eq!(plan.successor, key("a:1"));
    assert!(plan.candidate.is_some());

    let e = takeover(&instances, 0, Some(&key("d:1")), &Policy::default(), 0).unwrap_err();
    assert!(
        e.to_string().contains("not a reachable direct replica"),
        "{e}"
    );
}

#[test]
fn intermediate_plan_moves_reachable_orphans_up() {
    let mut down = replica_of("im:1", "d:1", 4, 1, 1);
    down.reachable = false;
    let mut im = replica("im:1", 5, 1, 1);
    im.reachable = false;
    let instances = vec![
        promoted(replica("m:1", 1, 1, 1), true),
        im,
        replica_of("im:1", "a:1", 2, 1, 1),
        down,
    ];
    let plan = intermediate(&instances, &key("im:1"), &Policy::default()).unwrap();
    assert_eq!(plan.successor, key("m:1"));
    assert_eq!(described(&plan.steps), ["repoint a:1"]);
    assert_eq!(plan.lost, [key("d:1")]);
}

#[test]
fn the_successor_of_a_semi_sync_master_is_a_semi_sync_source_before_it_is_writable() {
    let mut dead = failed_master();
    dead.semi_sync.master_enabled = true;
    let replicas = vec![replica("a:1", 2, 10, 10)];
    let plan = dead_master(&replicas, &dead, &Policy::default(), 0, None).unwrap();
    assert!(plan.steps.contains(&PlannedStep::Promote {
        candidate: key("a:1"),
        writable: true,
        semi_sync: true
    }));
}
