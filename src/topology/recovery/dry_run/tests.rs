//! Dry-run documents on hand-built topologies. That their steps are the executor's is
//! checked against a recording executor in `recovery/tests.rs`.

use super::*;
use crate::topology::analysis::analyze;
use crate::topology::candidate::Exclusion;
use crate::topology::instance::{Flavor, Replication, ThreadState};
use crate::topology::policy::{Downtime, PromotionRule};

fn key(s: &str) -> InstanceKey {
    s.parse().unwrap()
}

fn master(k: &str, reachable: bool) -> Instance {
    let mut m = Instance::unknown(key(k));
    m.reachable = reachable;
    m.flavor = Some(Flavor::Mariadb);
    m.server_id = Some(1);
    m.last_seen_ms = Some(1);
    m.read_only = Some(false);
    m.log_bin = Some(true);
    m.log_replica_updates = Some(true);
    m.gtid.current_pos = "0-1-10".into();
    m.gtid.binlog_state = "0-1-10".into();
    m
}

/// A replica of `source` that applied `applied` and received `received`; its IO thread
/// runs when `receiving` (the source is alive) and is connecting otherwise.
fn replica(
    k: &str,
    source: &str,
    id: u32,
    applied: u64,
    received: u64,
    receiving: bool,
) -> Instance {
    let s = key(source);
    let mut r = Instance::unknown(key(k));
    r.reachable = true;
    r.last_seen_ms = Some(1);
    r.flavor = Some(Flavor::Mariadb);
    r.server_id = Some(id);
    r.version = Some("10.11.19-MariaDB".into());
    r.log_bin = Some(true);
    r.log_replica_updates = Some(true);
    r.read_only = Some(true);
    r.gtid.current_pos = format!("0-1-{applied}");
    r.gtid.binlog_state = format!("0-1-{applied}");
    r.replication = Some(Replication {
        source_host: s.host,
        source_port: s.port,
        io_running: if receiving {
            ThreadState::Yes
        } else {
            ThreadState::Connecting
        },
        sql_running: ThreadState::Yes,
        using_gtid: "Slave_Pos".into(),
        received_gtids: format!("0-1-{received}"),
        ..Default::default()
    });
    r
}

fn crashed() -> Vec<Instance> {
    vec![
        master("m:1", false),
        replica("a:1", "m:1", 2, 10, 12, false),
        replica("b:1", "m:1", 3, 10, 10, false),
    ]
}

fn dry_recover(instances: &[Instance], policy: &Policy) -> DryRun {
    let analysis = analyze(instances, policy, 0);
    recover(instances, &analysis, policy, 0)
}

#[test]
fn a_crash_is_planned_from_the_probe_with_a_note_that_positions_are_re_read() {
    let d = dry_recover(&crashed(), &Policy::default());
    assert_eq!(d.verdict, Verdict::Plan);
    assert_eq!(d.kind, Some(RecoveryKind::DeadMaster));
    assert_eq!(d.failed, Some(key("m:1")));
    assert_eq!(d.promoted, Some(key("a:1")));
    assert_eq!(d.chosen_by, Some(ChosenBy::MostAdvanced));
    assert_eq!(d.successor, Some(key("a:1")));
    assert_eq!(d.ranking.len(), 2);
    assert!(
        d.notes[0].contains("re-reads the positions"),
        "{:?}",
        d.notes
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["dryRun"], true);
    assert_eq!(json["verdict"], "plan");
    assert_eq!(json["analysis"]["code"], "DeadMaster");
    assert_eq!(
        json["steps"],
        serde_json::json!([
            {"kind": "stopReplicaIo", "instance": "a:1"},
            {"kind": "stopReplicaIo", "instance": "b:1"},
            {"kind": "waitRelayLogApplied", "instance": "a:1"},
            {"kind": "promote", "instance": "a:1", "writable": true},
            {"kind": "repoint", "instance": "b:1", "to": "a:1"},
            {"kind": "fenceOldPrimary", "instance": "m:1"},
        ])
    );
}

#[test]
fn donor_and_hand_over_are_named() {
    let mut instances = crashed();
    instances.push(replica("x:1", "m:1", 4, 10, 14, false));
    let mut p = Policy::default();
    p.instance_mut(&key("x:1")).promotion_rule = PromotionRule::MustNot;
    p.instance_mut(&key("b:1")).promotion_rule = PromotionRule::Prefer;
    let d = dry_recover(&instances, &p);
    assert_eq!(d.promoted, Some(key("a:1")));
    assert_eq!(d.donor, Some(key("x:1")));
    let h = d.hand_over.as_ref().unwrap();
    assert_eq!((&h.from, &h.to), (&key("a:1"), &key("b:1")));
    assert_eq!(
        d.successor,
        Some(key("b:1")),
        "the hand-over's target in the end"
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json["steps"][3],
        serde_json::json!({"kind": "catchUpFromDonor", "instance": "a:1", "donor": "x:1"})
    );
    assert_eq!(json["ranking"][2]["excluded"]["reason"], "mustNot");
    assert_eq!(json["handOver"]["steps"][0]["kind"], "setReadOnly");
}

#[test]
fn no_candidate_is_refused_with_every_exclusion() {
    let mut p = Policy::default();
    p.instance_mut(&key("a:1")).promotion_rule = PromotionRule::MustNot;
    p.instance_mut(&key("b:1")).downtime = Some(Downtime {
        until_ms: u64::MAX,
        reason: "backup".into(),
    });
    let d = dry_recover(&crashed(), &p);
    assert_eq!(d.verdict, Verdict::Refused);
    assert!(
        d.steps.iter().all(|s| s.kind() == StepKind::StopReplicaIo),
        "only the freeze runs before the refusal: {:?}",
        d.steps
    );
    assert!(d.reason.unwrap().starts_with("no replica can be promoted"));
    let excluded: Vec<_> = d.ranking.iter().map(|r| r.excluded.clone()).collect();
    assert_eq!(
        excluded,
        [Some(Exclusion::MustNot), Some(Exclusion::Downtimed)]
    );
}

#[test]
fn nothing_to_do_says_why() {
    let mut healthy = vec![master("m:1", true)];
    healthy.push(replica("a:1", "m:1", 2, 10, 10, true));
    let d = dry_recover(&healthy, &Policy::default());
    assert_eq!(d.verdict, Verdict::NothingToDo);
    assert_eq!(d.reason.as_deref(), Some("no problem found"));

    let mut p = Policy::default();
    p.instance_mut(&key("m:1")).downtime = Some(Downtime {
        until_ms: u64::MAX,
        reason: "maintenance".into(),
    });
    let d = dry_recover(&crashed(), &p);
    assert_eq!(d.verdict, Verdict::NothingToDo);
    assert_eq!(
        d.reason.as_deref(),
        Some("DeadMaster on m:1 is not actionable: it is downtimed")
    );

    let mut stopped = healthy.clone();
    stopped[1].replication.as_mut().unwrap().sql_running = ThreadState::No;
    let d = dry_recover(&stopped, &Policy::default());
    assert_eq!(d.verdict, Verdict::NothingToDo);
    assert!(
        d.reason
            .as_deref()
            .unwrap()
            .starts_with("no analysis calls for a recovery"),
        "{:?}",
        d.reason
    );
}

#[test]
fn a_writable_master_elsewhere_is_completed_onto_or_refused() {
    // a was promoted by an earlier run and holds everything: completed onto.
    let mut instances = crashed();
    instances[1].replication = None;
    instances[1].read_only = Some(false);
    let analysis = vec![Analysis {
        actionable: true,
        ..analyze(&crashed(), &Policy::default(), 0).remove(0)
    }];
    let d = recover(&instances, &analysis, &Policy::default(), 0);
    assert_eq!(d.verdict, Verdict::Plan, "{d:#?}");
    assert_eq!(d.successor, Some(key("a:1")));
    assert!(d.notes[0].contains("completes it"), "{:?}", d.notes);
    // b is behind what a third replica received: promoting anyone would make a
    // second primary.
    instances.push(replica("c:1", "m:1", 4, 10, 15, false));
    let d = recover(&instances, &analysis, &Policy::default(), 0);
    assert_eq!(d.verdict, Verdict::Refused);
    assert!(d.reason.unwrap().contains("second primary"));
}

#[test]
fn switchover_plans_and_refusals() {
    let healthy = vec![
        master("m:1", true),
        replica("a:1", "m:1", 2, 10, 10, true),
        replica("b:1", "m:1", 3, 10, 10, true),
    ];
    let d = switchover(&healthy, None, &Policy::default(), 0);
    assert_eq!(d.verdict, Verdict::Plan);
    assert_eq!(d.failed, Some(key("m:1")));
    assert_eq!(d.successor, Some(key("a:1")));
    assert_eq!(
        d.steps.last().map(PlannedStep::kind),
        Some(StepKind::DemoteOldPrimary)
    );

    let mut errant = healthy.clone();
    errant[2].gtid.binlog_state = "0-1-10,0-3-2".into();
    let d = switchover(&errant, Some(&key("b:1")), &Policy::default(), 0);
    assert_eq!(d.verdict, Verdict::Refused);
    assert_eq!(
        d.reason.as_deref(),
        Some("b:1 cannot be promoted: it has errant transactions 0-3-2")
    );
    assert_eq!(
        d.ranking[1].excluded,
        Some(Exclusion::ErrantGtids("0-3-2".into()))
    );

    // Place is the user's choice for a named target; it is not for korc's own.
    let mut p = Policy {
        prevent_cross_data_center_master_failover: true,
        ..Policy::default()
    };
    p.instance_mut(&key("m:1")).data_center = Some("zone-a".into());
    p.instance_mut(&key("b:1")).data_center = Some("zone-b".into());
    assert_eq!(
        switchover(&healthy, Some(&key("b:1")), &p, 0).verdict,
        Verdict::Plan
    );

    let none = switchover(&healthy, Some(&key("nope:1")), &p, 0);
    assert_eq!(none.verdict, Verdict::Refused);
    let mut headless = healthy;
    headless[0].replication = healthy_source("a:1");
    headless[1].replication = healthy_source("m:1");
    let d = switchover(&headless, None, &Policy::default(), 0);
    assert_eq!(d.verdict, Verdict::Refused);
    assert_eq!(d.reason.as_deref(), Some("the cluster has no primary"));
}

fn healthy_source(source: &str) -> Option<Replication> {
    let s = key(source);
    Some(Replication {
        source_host: s.host,
        source_port: s.port,
        io_running: ThreadState::Yes,
        sql_running: ThreadState::Yes,
        ..Default::default()
    })
}

#[test]
fn a_dead_intermediate_master_moves_its_replicas_up() {
    let mut im = replica("im:1", "m:1", 5, 10, 10, true);
    im.reachable = false;
    let instances = vec![
        master("m:1", true),
        im,
        replica("a:1", "im:1", 2, 10, 10, false),
        replica("b:1", "im:1", 3, 10, 10, false),
    ];
    let d = dry_recover(&instances, &Policy::default());
    assert_eq!(d.kind, Some(RecoveryKind::DeadIntermediateMaster), "{d:#?}");
    assert_eq!(d.verdict, Verdict::Plan);
    assert_eq!(d.successor, Some(key("m:1")));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json["steps"],
        serde_json::json!([
            {"kind": "repoint", "instance": "a:1", "to": "m:1"},
            {"kind": "repoint", "instance": "b:1", "to": "m:1"},
        ])
    );
}
