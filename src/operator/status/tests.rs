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
    let m = members(instances.len());
    let analysis = analyze(instances, &Policy::default(), 0);
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
