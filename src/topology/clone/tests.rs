//! Donor choice on hand-built clusters, and MySQL's clone statements.

use super::*;
use crate::topology::instance::{Flavor, Replication, ThreadState};
use crate::topology::policy::Downtime;

fn key(s: &str) -> InstanceKey {
    s.parse().unwrap()
}

fn primary() -> Instance {
    let mut p = Instance::unknown(key("p:1"));
    p.reachable = true;
    p.flavor = Some(Flavor::Mariadb);
    p.version = Some("10.11.19-MariaDB".into());
    p.server_id = Some(1);
    p.read_only = Some(false);
    p.gtid.binlog_state = "0-1-100".into();
    p
}

/// A replica of `p:1`, replicating, `lag` seconds behind.
fn replica(k: &str, server_id: u32, lag: u64) -> Instance {
    let mut r = Instance::unknown(key(k));
    r.reachable = true;
    r.flavor = Some(Flavor::Mariadb);
    r.version = Some("10.11.19-MariaDB".into());
    r.server_id = Some(server_id);
    r.read_only = Some(true);
    r.gtid.binlog_state = "0-1-100".into();
    r.replication = Some(Replication {
        source_host: "p".into(),
        source_port: 1,
        io_running: ThreadState::Yes,
        sql_running: ThreadState::Yes,
        seconds_behind: Some(lag),
        using_gtid: "Slave_Pos".into(),
        ..Default::default()
    });
    r
}

fn choose(
    instances: &[Instance],
    recipient: &str,
    policy: &Policy,
) -> Result<DonorChoice, NoDonor> {
    choose_donor(instances, &key("p:1"), &key(recipient), policy, 0)
}

#[test]
fn the_least_lagging_fit_replica_gives_its_data_never_the_primary() {
    let cluster = [
        primary(),
        replica("a:1", 2, 3),
        replica("b:1", 3, 0),
        replica("new:1", 4, 0),
    ];
    let c = choose(&cluster, "new:1", &Policy::default()).unwrap();
    assert_eq!((c.donor, c.primary), (key("b:1"), false));
    assert!(c.unfit.is_empty());
    // Equal lag: the lower key, so repeated rounds agree.
    let tie = [
        primary(),
        replica("b:1", 3, 1),
        replica("a:1", 2, 1),
        replica("new:1", 4, 0),
    ];
    assert_eq!(
        choose(&tie, "new:1", &Policy::default()).unwrap().donor,
        key("a:1")
    );
}

#[test]
fn unfit_replicas_are_passed_over_with_the_reason() {
    let mut unreachable = replica("a:1", 2, 0);
    unreachable.reachable = false;
    let mut stopped = replica("b:1", 3, 0);
    stopped.replication.as_mut().unwrap().sql_running = ThreadState::No;
    let lagging = replica("c:1", 4, 11);
    let mut errant = replica("d:1", 5, 0);
    errant.gtid.binlog_state = "0-1-100,0-5-7".into();
    let mut elsewhere = replica("e:1", 6, 0);
    elsewhere.replication.as_mut().unwrap().source_host = "a".into();
    let mut other_version = replica("f:1", 7, 0);
    other_version.version = Some("11.4.2-MariaDB".into());
    let downtimed = replica("g:1", 8, 0);
    let mut policy = Policy::default();
    policy.instance_mut(&key("g:1")).downtime = Some(Downtime {
        until_ms: 1_000,
        reason: "maintenance".into(),
    });
    let mut unknown_lag = replica("h:1", 9, 0);
    unknown_lag.replication.as_mut().unwrap().seconds_behind = None;
    let recipient = replica("new:1", 10, 0);
    let cluster = [
        primary(),
        unreachable,
        stopped,
        lagging,
        errant,
        elsewhere,
        other_version,
        downtimed,
        unknown_lag,
        recipient,
    ];
    let c = choose(&cluster, "new:1", &policy).unwrap();
    assert_eq!(
        (c.donor, c.primary),
        (key("p:1"), true),
        "nothing else can serve"
    );
    let reasons: Vec<(String, Unfit)> = c
        .unfit
        .into_iter()
        .map(|(k, u)| (k.to_string(), u))
        .collect();
    assert_eq!(
        reasons,
        [
            ("a:1".to_string(), Unfit::Unreachable),
            ("b:1".into(), Unfit::ReplicationStopped),
            ("c:1".into(), Unfit::Lagging("11 s".into())),
            ("d:1".into(), Unfit::ErrantGtids("0-5-7".into())),
            ("e:1".into(), Unfit::NotReplicatingFromPrimary),
            (
                "f:1".into(),
                Unfit::OtherVersion("11.4.2-MariaDB".into(), "10.11.19-MariaDB".into())
            ),
            ("g:1".into(), Unfit::Downtimed),
            ("h:1".into(), Unfit::Lagging("an unknown time".into())),
        ]
    );
}

#[test]
fn a_two_instance_cluster_copies_from_its_primary() {
    let cluster = [primary(), replica("new:1", 2, 0)];
    let c = choose(&cluster, "new:1", &Policy::default()).unwrap();
    assert_eq!((c.donor, c.primary), (key("p:1"), true));
}

#[test]
fn without_a_reachable_primary_there_is_no_donor() {
    let mut down = primary();
    down.reachable = false;
    assert_eq!(
        choose(
            &[down, replica("a:1", 2, 0), replica("new:1", 3, 0)],
            "new:1",
            &Policy::default()
        ),
        Err(NoDonor)
    );
    // The primary itself is never its own donor.
    assert_eq!(
        choose(&[primary()], "p:1", &Policy::default()),
        Err(NoDonor)
    );
}

#[test]
fn mysql_clone_names_the_donor_and_hides_the_password() {
    let account = ReplicationCredentials {
        user: "korc_repl".into(),
        password: "s'cret".into(),
        source_ca: None,
    };
    let (statements, shown) = mysql_clone_statements(&key("db-1.db.ns.svc:3306"), &account, 100);
    assert_eq!(
        statements,
        [
            "STOP REPLICA",
            "RESET REPLICA ALL",
            "SET GLOBAL super_read_only = OFF",
            "SET GLOBAL clone_max_data_bandwidth = 100",
            "SET GLOBAL clone_valid_donor_list = 'db-1.db.ns.svc:3306'",
            "CLONE INSTANCE FROM 'korc_repl'@'db-1.db.ns.svc':3306 IDENTIFIED BY 's''cret'",
        ]
    );
    assert_eq!(
        shown,
        "CLONE INSTANCE FROM 'korc_repl'@'db-1.db.ns.svc':3306 IDENTIFIED BY <password>"
    );
}
