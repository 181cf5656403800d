//! Status building from hand-made observations.

use super::*;
use crate::topology::analysis::analyze;
use crate::topology::instance::{Flavor, Replication};
use crate::topology::policy::Policy;

fn cluster(replicas: i32) -> MySQLCluster {
    let mut c = MySQLCluster::new(
        "db",
        serde_json::from_value(serde_json::json!({"replicas": replicas, "image": "mariadb:10.11"}))
            .unwrap(),
    );
    c.metadata.generation = Some(4);
    c
}

fn instance(key: &str, source: Option<&str>, writable: bool) -> Instance {
    let mut i = Instance::unknown(key.parse().unwrap());
    i.reachable = true;
    i.last_seen_ms = Some(1_000);
    i.flavor = Some(Flavor::Mariadb);
    i.read_only = Some(!writable);
    i.log_bin = Some(true);
    i.log_replica_updates = Some(true);
    i.gtid.current_pos = "0-10-5".into();
    i.gtid.binlog_state = "0-10-5".into();
    i.replication = source.map(|s| {
        let k: InstanceKey = s.parse().unwrap();
        Replication {
            source_host: k.host,
            source_port: k.port,
            io_running: ThreadState::Yes,
            sql_running: ThreadState::Yes,
            using_gtid: "Slave_Pos".into(),
            ..Default::default()
        }
    });
    i
}

fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member {
            zone: Some(format!("zone-{i}")),
            ..Member::numbered(i)
        })
        .collect()
}

fn observe(c: &MySQLCluster, instances: &[Instance], primary: Option<&str>) -> MySQLClusterStatus {
    observe_with(c, instances, primary, &Policy::default())
}

fn observe_with(
    c: &MySQLCluster,
    instances: &[Instance],
    primary: Option<&str>,
    policy: &Policy,
) -> MySQLClusterStatus {
    let m = members(instances.len());
    let analysis = analyze(instances, policy, 0);
    let excluded = BTreeMap::new();
    build(
        c,
        &Observation {
            members: &m,
            instances,
            analysis: &analysis,
            primary,
            excluded: &excluded,
            blocker: None,
            primary_held: None,
            policy,
            now: Timestamp::from_second(100).unwrap(),
        },
    )
}

fn cond<'a>(s: &'a MySQLClusterStatus, t: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn healthy_cluster() {
    let c = cluster(3);
    let list = [
        instance("10.0.0.0:3306", None, true),
        instance("10.0.0.1:3306", Some("10.0.0.0:3306"), false),
        instance("10.0.0.2:3306", Some("10.0.0.0:3306"), false),
    ];
    let s = observe(&c, &list, Some("db-0"));
    assert_eq!(s.primary.as_deref(), Some("db-0"));
    assert_eq!(s.ready.as_deref(), Some("3/3"));
    assert_eq!(s.analysis_code.as_deref(), Some("NoProblem"));
    assert_eq!(s.observed_generation, Some(4));
    assert_eq!(cond(&s, "Available").status, "True");
    assert_eq!(cond(&s, "Healthy").status, "True");
    assert_eq!(cond(&s, "RecoveryBlocked").status, "False");
    assert_eq!(
        s.instances[1].source.as_deref(),
        Some("db-0"),
        "sources are named by pod"
    );
    assert_eq!(s.instances[1].role, "replica");
    assert_eq!(s.instances[2].data_center.as_deref(), Some("zone-2"));
    assert!(s.detections.is_empty());
}

#[test]
fn nothing_is_detected_while_the_cluster_is_created() {
    let c = cluster(2);
    let mut absent = instance("10.0.0.1:3306", None, false);
    absent.reachable = false;
    let s = observe(
        &c,
        &[instance("10.0.0.0:3306", None, true), absent],
        Some("db-0"),
    );
    assert!(s.detections.is_empty(), "{:?}", s.detections);
}

#[test]
fn stopped_replica_is_unhealthy_and_detected_once() {
    let mut c = cluster(3);
    c.status = Some(MySQLClusterStatus {
        primary: Some("db-0".into()),
        ..Default::default()
    });
    let mut broken = instance("10.0.0.1:3306", Some("10.0.0.0:3306"), false);
    broken.replication.as_mut().unwrap().sql_running = ThreadState::No;
    let list = [
        instance("10.0.0.0:3306", None, true),
        broken,
        instance("10.0.0.2:3306", Some("10.0.0.0:3306"), false),
    ];
    let s = observe(&c, &list, Some("db-0"));
    assert_eq!(s.analysis_code.as_deref(), Some("ReplicationStopped"));
    assert_eq!(cond(&s, "Healthy").status, "False");
    assert_eq!(cond(&s, "Healthy").reason, "ReplicationStopped");
    assert_eq!(s.detections.len(), 1);
    assert_eq!(s.detections[0].instance, "db-1");
    c.status = Some(s.clone());
    let again = observe(&c, &list, Some("db-0"));
    assert_eq!(
        again.detections.len(),
        1,
        "a continuing detection is not repeated"
    );
    assert_eq!(
        significant(&again),
        significant(&s),
        "nothing significant changed"
    );
}

#[test]
fn single_instance_says_no_failover_is_possible() {
    let c = cluster(1);
    let s = observe(&c, &[instance("10.0.0.0:3306", None, true)], Some("db-0"));
    let blocked = cond(&s, "RecoveryBlocked");
    assert_eq!(
        (blocked.status.as_str(), blocked.reason.as_str()),
        ("True", "SingleInstance")
    );
    assert!(blocked.message.contains("no failover possible"));
    assert_eq!(cond(&s, "Available").status, "True");
}

#[test]
fn transition_times_move_only_on_transitions() {
    let mut c = cluster(2);
    let list = [
        instance("10.0.0.0:3306", None, true),
        instance("10.0.0.1:3306", Some("10.0.0.0:3306"), false),
    ];
    let first = observe(&c, &list, Some("db-0"));
    c.status = Some(first.clone());
    let m = members(2);
    let analysis = analyze(&list, &Policy::default(), 0);
    let excluded = BTreeMap::new();
    let later = build(
        &c,
        &Observation {
            members: &m,
            instances: &list,
            analysis: &analysis,
            primary: Some("db-0"),
            excluded: &excluded,
            blocker: None,
            primary_held: None,
            policy: &Policy::default(),
            now: Timestamp::from_second(999).unwrap(),
        },
    );
    assert_eq!(
        cond(&later, "Available").last_transition_time,
        cond(&first, "Available").last_transition_time
    );
    let mut dead = list.clone();
    dead[0].reachable = false;
    c.status = Some(later);
    let s = build(
        &c,
        &Observation {
            members: &m,
            instances: &dead,
            analysis: &analyze(&dead, &Policy::default(), 0),
            primary: Some("db-0"),
            excluded: &excluded,
            blocker: None,
            primary_held: None,
            policy: &Policy::default(),
            now: Timestamp::from_second(1500).unwrap(),
        },
    );
    assert_eq!(cond(&s, "Available").reason, "PrimaryUnreachable");
    assert_eq!(
        cond(&s, "Available").last_transition_time,
        Time(Timestamp::from_second(1500).unwrap())
    );
}

#[test]
fn a_primary_kept_read_only_because_it_is_behind_says_why() {
    let c = cluster(2);
    let instances = [
        instance("10.0.0.0:3306", None, false),
        instance("10.0.0.1:3306", Some("10.0.0.0:3306"), false),
    ];
    let m = members(2);
    let analysis = analyze(&instances, &Policy::default(), 0);
    let excluded = BTreeMap::new();
    let why =
        "db-0 lacks transactions every other instance has (empty or older data): not made writable";
    let s = build(
        &c,
        &Observation {
            members: &m,
            instances: &instances,
            analysis: &analysis,
            primary: Some("db-0"),
            excluded: &excluded,
            blocker: None,
            primary_held: Some(why),
            policy: &Policy::default(),
            now: Timestamp::from_second(100).unwrap(),
        },
    );
    let available = cond(&s, "Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_str()),
        ("False", "PrimaryBehind")
    );
    assert_eq!(available.message, why);
}

/// A primary `db-0` and replicas `db-1`, `db-2` replicating from it, in sync.
fn three() -> Vec<Instance> {
    vec![
        instance("10.0.0.0:3306", None, true),
        instance("10.0.0.1:3306", Some("10.0.0.0:3306"), false),
        instance("10.0.0.2:3306", Some("10.0.0.0:3306"), false),
    ]
}

fn key(pod: usize) -> InstanceKey {
    format!("10.0.0.{pod}:3306").parse().unwrap()
}

#[test]
fn the_failover_candidate_names_who_would_be_promoted_and_who_could_not_be() {
    let c = cluster(3);
    let s = observe(&c, &three(), Some("db-0"));
    let f = s.failover_candidate.unwrap();
    assert_eq!(f.pod.as_deref(), Some("db-1"), "{f:?}");
    assert_eq!(f.why, "as good as the next candidate; first by address");
    assert!(f.excluded.is_empty());

    let mut p = Policy::default();
    p.instance_mut(&key(1)).promotion_rule = PromotionRule::MustNot;
    p.instance_mut(&key(2)).promotion_rule = PromotionRule::Prefer;
    let f = observe_with(&c, &three(), Some("db-0"), &p)
        .failover_candidate
        .unwrap();
    assert_eq!(f.pod.as_deref(), Some("db-2"));
    assert_eq!(
        f.excluded,
        [ExcludedInstanceStatus {
            pod: "db-1".into(),
            reason: "mustNot".into()
        }]
    );

    // A replica that stopped receiving ranks behind one that still receives.
    let mut behind = three();
    behind[1].replication.as_mut().unwrap().io_running = ThreadState::No;
    behind[1].gtid.current_pos = "0-10-4".into();
    behind[1].gtid.binlog_state = "0-10-4".into();
    let f = observe(&c, &behind, Some("db-0"))
        .failover_candidate
        .unwrap();
    assert_eq!(f.pod.as_deref(), Some("db-2"));
    assert_eq!(f.why, "it received transactions the next candidate did not");

    // A replica whose applier stopped behind ranks behind one whose applier runs,
    // though both received everything; a running applier behind counts as caught up.
    let mut stalled = three();
    for r in &mut stalled[1..] {
        r.gtid.current_pos = "0-10-3".into();
        r.gtid.binlog_state = "0-10-3".into();
    }
    stalled[1].replication.as_mut().unwrap().sql_running = ThreadState::No;
    let f = observe(&c, &stalled, Some("db-0"))
        .failover_candidate
        .unwrap();
    assert_eq!(f.pod.as_deref(), Some("db-2"));
    assert_eq!(
        f.why,
        "as advanced as the next candidate, and applied more of it"
    );

    p.instance_mut(&key(2)).promotion_rule = PromotionRule::MustNot;
    let f = observe_with(&c, &three(), Some("db-0"), &p)
        .failover_candidate
        .unwrap();
    assert_eq!(f.pod, None);
    assert_eq!(f.why, "no replica can be promoted");
    assert_eq!(f.excluded.len(), 2);
}

#[test]
fn no_failover_candidate_without_a_primary_or_a_replica() {
    let c = cluster(3);
    assert_eq!(observe(&c, &three(), None).failover_candidate, None);
    let alone = [instance("10.0.0.0:3306", None, true)];
    assert_eq!(
        observe(&cluster(1), &alone, Some("db-0")).failover_candidate,
        None
    );
}

#[test]
fn a_hand_over_and_a_donor_are_part_of_why() {
    let c = cluster(3);
    let mut list = three();
    // db-1 stopped receiving behind; db-2 is must_not and ahead of nobody.
    list[1].replication.as_mut().unwrap().io_running = ThreadState::No;
    list[1].gtid.current_pos = "0-10-4".into();
    list[1].gtid.binlog_state = "0-10-4".into();
    let mut p = Policy::default();
    p.instance_mut(&key(2)).promotion_rule = PromotionRule::MustNot;
    let f = observe_with(&c, &list, Some("db-0"), &p)
        .failover_candidate
        .unwrap();
    assert_eq!(f.pod.as_deref(), Some("db-1"));
    assert_eq!(
        f.why,
        "the only replica that can be promoted; it would first catch up from db-2"
    );

    let mut p = Policy::default();
    p.instance_mut(&key(1)).promotion_rule = PromotionRule::Prefer;
    let f = observe_with(&c, &list, Some("db-0"), &p)
        .failover_candidate
        .unwrap();
    assert_eq!(f.pod.as_deref(), Some("db-2"));
    assert_eq!(
        f.why,
        "it received transactions the next candidate did not; \
         then it would hand over to db-1 (promotion rule prefer)"
    );
}

#[test]
fn candidate_and_exclusion_changes_are_significant_lag_and_positions_are_not() {
    let mut c = cluster(3);
    let mut p = Policy {
        fail_master_promotion_on_lag_seconds: Some(60),
        ..Policy::default()
    };
    let first = observe_with(&c, &three(), Some("db-0"), &p);
    c.status = Some(first.clone());

    // Writes and lag under the limit: positions and lag move, nothing significant.
    let mut moved = three();
    for (i, inst) in moved.iter_mut().enumerate() {
        inst.gtid.current_pos = format!("0-10-{}", 50 - i);
        inst.gtid.binlog_state = format!("0-10-{}", 50 - i);
        if let Some(r) = inst.replication.as_mut() {
            r.seconds_behind = Some(i as u64 * 4);
            r.received_gtids = "0-10-50".into();
        }
    }
    let later = observe_with(&c, &moved, Some("db-0"), &p);
    assert_ne!(later, first, "the volatile fields did move");
    assert_eq!(significant(&later), significant(&first));

    // Lag beyond the limit excludes db-1: significant, but its figure is not.
    moved[1].replication.as_mut().unwrap().seconds_behind = Some(61);
    let lagging = observe_with(&c, &moved, Some("db-0"), &p);
    assert_ne!(significant(&lagging), significant(&first));
    let f = lagging.failover_candidate.clone().unwrap();
    assert_eq!(f.pod.as_deref(), Some("db-2"));
    assert_eq!(f.excluded[0].reason, "lagging");
    moved[1].replication.as_mut().unwrap().seconds_behind = Some(95);
    assert_eq!(
        significant(&observe_with(&c, &moved, Some("db-0"), &p)),
        significant(&lagging)
    );

    // A promotion rule change moves the candidate: significant.
    p.fail_master_promotion_on_lag_seconds = None;
    p.instance_mut(&key(2)).promotion_rule = PromotionRule::Prefer;
    let preferred = observe_with(&c, &three(), Some("db-0"), &p);
    assert_eq!(
        preferred
            .failover_candidate
            .as_ref()
            .unwrap()
            .pod
            .as_deref(),
        Some("db-2")
    );
    assert_ne!(significant(&preferred), significant(&first));
}
