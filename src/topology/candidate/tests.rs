//! Candidate choice on hand-built replica sets.

use super::*;
use crate::topology::gtid::MariaDbPosition;
use crate::topology::instance::{Flavor, Replication, ThreadState};
use crate::topology::policy::Downtime;

fn dead_master() -> Instance {
    let mut m = Instance::unknown("m:1".parse().unwrap());
    m.flavor = Some(Flavor::Mariadb);
    m.server_id = Some(1);
    m.last_seen_ms = Some(1);
    m.gtid.binlog_state = "0-1-10".into();
    m
}

/// A replica of `m:1` that applied `applied` and received up to `received` (domain 0).
fn replica(key: &str, server_id: u32, applied: u64, received: u64) -> Instance {
    let mut r = Instance::unknown(key.parse().unwrap());
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
        source_host: "m".into(),
        source_port: 1,
        io_running: ThreadState::No,
        sql_running: ThreadState::Yes,
        using_gtid: "Slave_Pos".into(),
        received_gtids: format!("0-1-{received}"),
        ..Default::default()
    });
    r
}

fn policy(rules: &[(&str, PromotionRule)]) -> Policy {
    let mut p = Policy::default();
    for (k, rule) in rules {
        p.instance_mut(&k.parse().unwrap()).promotion_rule = *rule;
    }
    p
}

fn key(s: &str) -> InstanceKey {
    s.parse().unwrap()
}

#[test]
fn most_received_wins_over_most_applied() {
    let rs = vec![
        replica("a:1", 2, 12, 12),
        replica("b:1", 3, 9, 15),
        replica("c:1", 4, 11, 11),
    ];
    let c = choose_candidate(&rs, &dead_master(), &Policy::default(), 0).unwrap();
    assert_eq!(c.promoted, key("b:1"));
    assert!(c.ahead.is_empty());
    assert_eq!(
        c.ranking
            .iter()
            .map(|r| r.instance.to_string())
            .collect::<Vec<_>>(),
        ["b:1", "a:1", "c:1"]
    );
}

#[test]
fn preferred_replica_behind_gets_a_hand_over_not_the_promotion() {
    let rs = vec![replica("a:1", 2, 15, 15), replica("b:1", 3, 10, 10)];
    let p = policy(&[("b:1", PromotionRule::Prefer)]);
    let c = choose_candidate(&rs, &dead_master(), &p, 0).unwrap();
    assert_eq!(c.promoted, key("a:1"));
    assert_eq!(c.hand_over_to, Some(key("b:1")));
}

#[test]
fn equal_positions_break_ties_by_rule_then_data_center() {
    let rs = vec![
        replica("a:1", 2, 10, 10),
        replica("b:1", 3, 10, 10),
        replica("c:1", 4, 10, 10),
    ];
    let mut p = policy(&[
        ("a:1", PromotionRule::PreferNot),
        ("c:1", PromotionRule::Prefer),
    ]);
    assert_eq!(
        choose_candidate(&rs, &dead_master(), &p, 0)
            .unwrap()
            .promoted,
        key("c:1")
    );
    p.instance_mut(&key("c:1")).promotion_rule = PromotionRule::Neutral;
    p.instance_mut(&key("m:1")).data_center = Some("zone-b".into());
    p.instance_mut(&key("c:1")).data_center = Some("zone-b".into());
    p.instance_mut(&key("b:1")).data_center = Some("zone-a".into());
    let c = choose_candidate(&rs, &dead_master(), &p, 0).unwrap();
    assert_eq!(c.promoted, key("c:1"));
    assert_eq!(c.hand_over_to, None);
}

#[test]
fn excluded_replicas_are_never_promoted_but_are_donors() {
    let mut rs = vec![
        replica("a:1", 2, 20, 20),
        replica("b:1", 3, 10, 10),
        replica("c:1", 4, 15, 15),
    ];
    let mut p = policy(&[("a:1", PromotionRule::MustNot)]);
    p.instance_mut(&key("c:1")).downtime = Some(Downtime {
        until_ms: 100,
        reason: "backup".into(),
    });
    let c = choose_candidate(&rs, &dead_master(), &p, 0).unwrap();
    assert_eq!(c.promoted, key("b:1"));
    assert_eq!(c.ahead, vec![key("a:1"), key("c:1")]);
    assert_eq!(c.ranking[1].excluded, Some(Exclusion::MustNot));
    assert_eq!(c.ranking[2].excluded, Some(Exclusion::Downtimed));
    rs[1].reachable = false;
    let none = choose_candidate(&rs, &dead_master(), &p, 0).unwrap_err();
    assert_eq!(none.ranking.len(), 3);
    assert!(none.to_string().contains("Unreachable"), "{none}");
}

#[test]
fn cross_data_center_prevention_excludes_other_zones() {
    let rs = vec![replica("a:1", 2, 12, 12), replica("b:1", 3, 10, 10)];
    let mut p = Policy {
        prevent_cross_data_center_master_failover: true,
        ..Policy::default()
    };
    p.instance_mut(&key("m:1")).data_center = Some("zone-a".into());
    p.instance_mut(&key("a:1")).data_center = Some("zone-b".into());
    p.instance_mut(&key("b:1")).data_center = Some("zone-a".into());
    let c = choose_candidate(&rs, &dead_master(), &p, 0).unwrap();
    assert_eq!(c.promoted, key("b:1"));
    assert_eq!(c.ahead, vec![key("a:1")]);
    p.instance_mut(&key("b:1")).data_center = Some("zone-c".into());
    let none = choose_candidate(&rs, &dead_master(), &p, 0).unwrap_err();
    assert!(matches!(
        none.ranking[0].excluded,
        Some(Exclusion::OtherDataCenter(_))
    ));
}

#[test]
fn errant_and_non_logging_replicas_are_excluded() {
    let mut errant = replica("a:1", 2, 12, 12);
    errant.gtid.binlog_state = "0-1-12,0-2-13".into();
    let mut no_log = replica("b:1", 3, 12, 12);
    no_log.log_replica_updates = Some(false);
    let ok = replica("c:1", 4, 12, 12);
    let c = choose_candidate(&[errant, no_log, ok], &dead_master(), &Policy::default(), 0).unwrap();
    assert_eq!(c.promoted, key("c:1"));
    assert_eq!(
        c.ranking[1].excluded,
        Some(Exclusion::ErrantGtids("0-2-13".into()))
    );
    assert_eq!(c.ranking[2].excluded, Some(Exclusion::NoBinaryLog));
}

#[test]
fn transactions_received_after_the_last_probe_of_the_master_are_not_errant() {
    // The master was last seen at 0-1-10; replicas since received 0-1-12 from it.
    let rs = vec![replica("a:1", 2, 12, 12)];
    let c = choose_candidate(&rs, &dead_master(), &Policy::default(), 0).unwrap();
    assert_eq!(c.promoted, key("a:1"));
}

#[test]
fn lag_limit_excludes() {
    let mut lagging = replica("a:1", 2, 12, 12);
    lagging.replication.as_mut().unwrap().seconds_behind = Some(600);
    let p = Policy {
        fail_master_promotion_on_lag_seconds: Some(60),
        ..Policy::default()
    };
    let c = choose_candidate(&[lagging, replica("b:1", 3, 11, 11)], &dead_master(), &p, 0).unwrap();
    assert_eq!(c.promoted, key("b:1"));
    assert_eq!(c.ranking[1].excluded, Some(Exclusion::Lagging(600)));
}

#[test]
fn unparseable_gtid_state_is_never_a_candidate_nor_taken_for_clean() {
    type Spoil = fn(&mut Instance);
    let cases: [(&str, Spoil); 4] = [
        ("applied position", |r| r.gtid.current_pos = "0-1-x".into()),
        ("received position", |r| {
            r.replication.as_mut().unwrap().received_gtids = "0-1".into();
        }),
        // The errant check reads the binlog state: unreadable is not "no errant".
        ("binlog state", |r| {
            r.gtid.binlog_state = "0-1-20,junk".into()
        }),
        ("MySQL executed set", |r| {
            r.flavor = Some(Flavor::Mysql);
            r.server_uuid = Some("3e11fa47-71ca-11e1-9e33-c80aa9429562".into());
            r.gtid.executed = "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-".into();
            r.replication.as_mut().unwrap().received_gtids = String::new();
        }),
    ];
    for (what, spoil) in cases {
        // The spoiled replica would otherwise win: it received the most.
        let mut spoiled = replica("a:1", 2, 20, 20);
        spoil(&mut spoiled);
        let rs = vec![spoiled.clone(), replica("b:1", 3, 12, 12)];
        let c = choose_candidate(&rs, &dead_master(), &Policy::default(), 0).unwrap();
        assert_eq!(c.promoted, key("b:1"), "{what}");
        let a = c.ranking.iter().find(|r| r.instance == key("a:1")).unwrap();
        assert_eq!(a.excluded, Some(Exclusion::UnparseableGtids), "{what}");
        assert_eq!(
            cannot_follow(&spoiled, &dead_master()),
            Some(Exclusion::UnparseableGtids),
            "{what}"
        );
        // Alone, it leaves nothing to promote.
        assert!(
            choose_candidate(&[spoiled], &dead_master(), &Policy::default(), 0).is_err(),
            "{what}"
        );
    }
    assert_eq!(
        serde_json::to_value(Exclusion::UnparseableGtids).unwrap(),
        serde_json::json!({ "reason": "unparseableGtids" })
    );
    assert_eq!(
        cannot_follow(&replica("b:1", 3, 12, 12), &dead_master()),
        None
    );
}

#[test]
fn a_kept_candidate_stays_while_it_can_be_promoted() {
    let rs = vec![replica("a:1", 2, 15, 15), replica("b:1", 3, 10, 12)];
    let c = keep_candidate(&rs, &dead_master(), &Policy::default(), 0, &key("b:1")).unwrap();
    assert_eq!(c.promoted, key("b:1"));
    assert_eq!(c.ahead, [key("a:1")]);
    let p = policy(&[("b:1", PromotionRule::MustNot)]);
    let c = keep_candidate(&rs, &dead_master(), &p, 0, &key("b:1")).unwrap();
    assert_eq!(c.promoted, key("a:1"));
}

#[test]
fn containment_counts_match_pairwise_comparison() {
    let maria = |t: &str| Some(GtidPosition::MariaDb(MariaDbPosition::parse(t).unwrap()));
    let sets: [Vec<Option<GtidPosition>>; 4] = [
        // A chain, with repeats, a gap and a position of another server id that is
        // the same position.
        vec![
            maria("0-1-5"),
            maria("0-1-9"),
            None,
            maria("0-1-5"),
            maria("0-2-9"),
            maria("0-1-7"),
        ],
        // Domains that advance apart: no chain.
        vec![
            maria("0-1-10,1-2-5"),
            maria("0-1-12,1-2-3"),
            maria("0-1-9,1-2-3"),
        ],
        // A chain over two domains.
        vec![maria("0-1-1"), maria("0-1-2,1-2-1"), maria("0-1-3,1-2-1")],
        vec![],
    ];
    for positions in sets {
        let pairwise: Vec<usize> = positions
            .iter()
            .map(|p| {
                p.as_ref().map_or(0, |p| {
                    positions.iter().flatten().filter(|o| p.contains(o)).count()
                })
            })
            .collect();
        let refs: Vec<Option<&GtidPosition>> = positions.iter().map(Option::as_ref).collect();
        assert_eq!(containment_counts(&refs), pairwise, "{positions:?}");
    }
}

mod table;
