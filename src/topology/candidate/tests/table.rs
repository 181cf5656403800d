//! Candidate ranking, table-driven: each case names the replicas, the policy and what
//! candidate choice must make of them (promoted, donors ahead, hand-over, exclusions,
//! and the criterion that decided).

use super::super::*;
use crate::topology::instance::{Flavor, Replication, ThreadState};
use crate::topology::policy::Downtime;

const M_UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

fn uuid(id: u32) -> String {
    format!("00000000-0000-0000-0000-{id:012}")
}

/// The failed MariaDB master `m:1` (server 1), last seen at 0-1-10.
fn maria_master() -> Instance {
    let mut m = Instance::unknown("m:1".parse().unwrap());
    m.flavor = Some(Flavor::Mariadb);
    m.server_id = Some(1);
    m.last_seen_ms = Some(1);
    m.gtid.binlog_state = "0-1-10".into();
    m
}

/// The failed MySQL master `m:1`, last seen having executed 1-10.
fn mysql_master() -> Instance {
    let mut m = Instance::unknown("m:1".parse().unwrap());
    m.flavor = Some(Flavor::Mysql);
    m.server_uuid = Some(M_UUID.into());
    m.last_seen_ms = Some(1);
    m.gtid.executed = format!("{M_UUID}:1-10");
    m
}

fn base(name: &str, id: u32) -> Instance {
    let mut r = Instance::unknown(format!("{name}:1").parse().unwrap());
    r.reachable = true;
    r.last_seen_ms = Some(1);
    r.server_id = Some(id);
    r.log_bin = Some(true);
    r.log_replica_updates = Some(true);
    r.read_only = Some(true);
    r.binlog_format = Some("ROW".into());
    r.replication = Some(Replication {
        source_host: "m".into(),
        source_port: 1,
        io_running: ThreadState::No,
        sql_running: ThreadState::Yes,
        ..Default::default()
    });
    r
}

/// A MariaDB replica of `m:1` that applied `applied` and received `received` (0-1-n).
fn maria(name: &str, id: u32, applied: u64, received: u64) -> Instance {
    let mut r = base(name, id);
    r.flavor = Some(Flavor::Mariadb);
    r.version = Some("10.11.19-MariaDB".into());
    r.gtid.current_pos = format!("0-1-{applied}");
    r.gtid.binlog_state = format!("0-1-{applied}");
    let rep = r.replication.as_mut().unwrap();
    rep.using_gtid = "Slave_Pos".into();
    rep.received_gtids = format!("0-1-{received}");
    r
}

/// A MySQL replica of `m:1` that executed and retrieved the master's 1-n.
fn mysql(name: &str, id: u32, applied: u64, received: u64) -> Instance {
    let mut r = base(name, id);
    r.flavor = Some(Flavor::Mysql);
    r.version = Some("8.0.36".into());
    r.server_uuid = Some(uuid(id));
    r.gtid.mode = Some("ON".into());
    r.gtid.executed = format!("{M_UUID}:1-{applied}");
    let rep = r.replication.as_mut().unwrap();
    rep.using_gtid = "Auto_Position".into();
    rep.received_gtids = format!("{M_UUID}:1-{received}");
    r
}

fn with(mut r: Instance, f: impl FnOnce(&mut Instance)) -> Instance {
    f(&mut r);
    r
}

fn k(name: &str) -> InstanceKey {
    format!("{name}:1").parse().unwrap()
}

fn rule(r: PromotionRule) -> impl Fn(&mut Policy, &str) {
    move |p, name| p.instance_mut(&k(name)).promotion_rule = r
}

fn dc(p: &mut Policy, name: &str, zone: &str) {
    p.instance_mut(&if name == "m" {
        "m:1".parse().unwrap()
    } else {
        k(name)
    })
    .data_center = Some(zone.into());
}

fn region(p: &mut Policy, name: &str, region: &str) {
    p.instance_mut(&if name == "m" {
        "m:1".parse().unwrap()
    } else {
        k(name)
    })
    .region = Some(region.into());
}

/// What candidate choice must decide.
struct Expect {
    /// The promoted replica; none when nothing can be promoted.
    promoted: Option<&'static str>,
    /// Donors ahead of it, most advanced first.
    ahead: &'static [&'static str],
    /// The hand-over target.
    hand_over: Option<&'static str>,
    /// Excluded replicas with their reason code.
    excluded: &'static [(&'static str, &'static str)],
    /// What decided (checked when given).
    chosen_by: Option<ChosenBy>,
}

const fn promotes(name: &'static str) -> Expect {
    Expect {
        promoted: Some(name),
        ahead: &[],
        hand_over: None,
        excluded: &[],
        chosen_by: None,
    }
}

const NONE: Expect = Expect {
    promoted: None,
    ahead: &[],
    hand_over: None,
    excluded: &[],
    chosen_by: None,
};

struct Case {
    name: &'static str,
    failed: Instance,
    replicas: Vec<Instance>,
    policy: Policy,
    expect: Expect,
}

fn case(name: &'static str, replicas: Vec<Instance>, policy: Policy, expect: Expect) -> Case {
    let failed = if replicas.iter().any(|r| r.flavor == Some(Flavor::Mysql)) {
        mysql_master()
    } else {
        maria_master()
    };
    Case {
        name,
        failed,
        replicas,
        policy,
        expect,
    }
}

fn p(f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::default();
    f(&mut p);
    p
}

fn cases() -> Vec<Case> {
    use PromotionRule::*;
    let none = Policy::default;
    vec![
        // Promotion rules.
        case(
            "equal replicas, no rules: the first by address",
            vec![maria("b", 3, 10, 10), maria("a", 2, 10, 10)],
            none(),
            Expect {
                chosen_by: Some(ChosenBy::Address),
                ..promotes("a")
            },
        ),
        case(
            "must beats neutral at the same position",
            vec![maria("a", 2, 10, 10), maria("b", 3, 10, 10)],
            p(|p| rule(Must)(p, "b")),
            Expect {
                chosen_by: Some(ChosenBy::PromotionRule),
                ..promotes("b")
            },
        ),
        case(
            "prefer beats neutral at the same position",
            vec![maria("a", 2, 10, 10), maria("b", 3, 10, 10)],
            p(|p| rule(Prefer)(p, "b")),
            Expect {
                chosen_by: Some(ChosenBy::PromotionRule),
                ..promotes("b")
            },
        ),
        case(
            "prefer_not loses to neutral at the same position",
            vec![maria("a", 2, 10, 10), maria("b", 3, 10, 10)],
            p(|p| rule(PreferNot)(p, "a")),
            Expect {
                chosen_by: Some(ChosenBy::PromotionRule),
                ..promotes("b")
            },
        ),
        case(
            "must_not is excluded although most advanced, and donates",
            vec![maria("a", 2, 14, 14), maria("b", 3, 10, 10)],
            p(|p| rule(MustNot)(p, "a")),
            Expect {
                ahead: &["a"],
                excluded: &[("a", "mustNot")],
                chosen_by: Some(ChosenBy::OnlyCandidate),
                ..promotes("b")
            },
        ),
        case(
            "a preferred replica behind gets a hand-over, not the promotion",
            vec![maria("a", 2, 14, 14), maria("b", 3, 10, 10)],
            p(|p| rule(Prefer)(p, "b")),
            Expect {
                hand_over: Some("b"),
                chosen_by: Some(ChosenBy::MostAdvanced),
                ..promotes("a")
            },
        ),
        case(
            "of a must and a prefer both behind, the hand-over goes to must",
            vec![
                maria("a", 2, 14, 14),
                maria("b", 3, 10, 10),
                maria("c", 4, 12, 12),
            ],
            p(|p| {
                rule(Prefer)(p, "c");
                rule(Must)(p, "b");
            }),
            Expect {
                hand_over: Some("b"),
                ..promotes("a")
            },
        ),
        case(
            "a prefer_not replica ahead is promoted, then hands over to a neutral one",
            vec![maria("a", 2, 14, 14), maria("b", 3, 10, 10)],
            p(|p| rule(PreferNot)(p, "a")),
            Expect {
                hand_over: Some("b"),
                ..promotes("a")
            },
        ),
        case(
            "a promoted prefer replica is not handed over to a must one",
            vec![maria("a", 2, 14, 14), maria("b", 3, 10, 10)],
            p(|p| {
                rule(Prefer)(p, "a");
                rule(Must)(p, "b");
            }),
            promotes("a"),
        ),
        case(
            "only must_not replicas: nothing to promote",
            vec![maria("a", 2, 10, 10), maria("b", 3, 10, 10)],
            p(|p| {
                rule(MustNot)(p, "a");
                rule(MustNot)(p, "b");
            }),
            Expect {
                excluded: &[("a", "mustNot"), ("b", "mustNot")],
                ..NONE
            },
        ),
        // Received versus executed positions.
        case(
            "received more but applied less ranks first",
            vec![maria("a", 2, 12, 12), maria("b", 3, 9, 15)],
            none(),
            Expect {
                chosen_by: Some(ChosenBy::MostAdvanced),
                ..promotes("b")
            },
        ),
        case(
            "at the same received position, the one that applied more ranks first",
            vec![maria("b", 3, 12, 12), maria("a", 2, 10, 12)],
            none(),
            Expect {
                chosen_by: Some(ChosenBy::MostApplied),
                ..promotes("b")
            },
        ),
        case(
            "MySQL: at the same received set, the one that executed more ranks first",
            vec![mysql("b", 3, 12, 12), mysql("a", 2, 10, 12)],
            none(),
            Expect {
                chosen_by: Some(ChosenBy::MostApplied),
                ..promotes("b")
            },
        ),
        case(
            "applying more outranks a better promotion rule",
            vec![maria("b", 3, 12, 12), maria("a", 2, 10, 12)],
            p(|p| rule(Prefer)(p, "a")),
            Expect {
                chosen_by: Some(ChosenBy::MostApplied),
                hand_over: Some("a"),
                ..promotes("b")
            },
        ),
        case(
            "multi-domain positions that do not contain each other: the other donates",
            vec![
                with(maria("a", 2, 10, 10), |r| {
                    r.replication.as_mut().unwrap().received_gtids = "0-1-10,1-7-5".into();
                }),
                with(maria("b", 3, 10, 10), |r| {
                    r.replication.as_mut().unwrap().received_gtids = "0-1-12,1-7-3".into();
                }),
            ],
            none(),
            Expect {
                ahead: &["b"],
                chosen_by: Some(ChosenBy::Address),
                ..promotes("a")
            },
        ),
        case(
            "a multi-domain position containing another's ranks first",
            vec![
                with(maria("a", 2, 10, 10), |r| {
                    r.replication.as_mut().unwrap().received_gtids = "0-1-10,1-7-5".into();
                }),
                with(maria("b", 3, 10, 10), |r| {
                    r.replication.as_mut().unwrap().received_gtids = "0-1-12,1-7-5".into();
                }),
            ],
            none(),
            Expect {
                chosen_by: Some(ChosenBy::MostAdvanced),
                ..promotes("b")
            },
        ),
        case(
            "an instance of unknown flavor has no position",
            vec![
                with(maria("a", 2, 14, 14), |r| r.flavor = None),
                maria("b", 3, 10, 10),
            ],
            none(),
            Expect {
                excluded: &[("a", "unknownPosition")],
                ..promotes("b")
            },
        ),
        // Data centers and regions.
        case(
            "cross-DC prevention excludes the other zone, which donates",
            vec![maria("a", 2, 14, 14), maria("b", 3, 10, 10)],
            p(|p| {
                p.prevent_cross_data_center_master_failover = true;
                dc(p, "m", "z1");
                dc(p, "a", "z2");
                dc(p, "b", "z1");
            }),
            Expect {
                ahead: &["a"],
                excluded: &[("a", "otherDataCenter")],
                ..promotes("b")
            },
        ),
        case(
            "cross-DC prevention with every replica elsewhere: nothing to promote",
            vec![maria("a", 2, 14, 14), maria("b", 3, 10, 10)],
            p(|p| {
                p.prevent_cross_data_center_master_failover = true;
                dc(p, "m", "z1");
                dc(p, "a", "z2");
                dc(p, "b", "z3");
            }),
            Expect {
                excluded: &[("a", "otherDataCenter"), ("b", "otherDataCenter")],
                ..NONE
            },
        ),
        case(
            "without prevention the failed master's zone breaks a tie",
            vec![maria("a", 2, 10, 10), maria("b", 3, 10, 10)],
            p(|p| {
                dc(p, "m", "z1");
                dc(p, "a", "z2");
                dc(p, "b", "z1");
            }),
            Expect {
                chosen_by: Some(ChosenBy::DataCenter),
                ..promotes("b")
            },
        ),
        case(
            "cross-region prevention excludes the other region",
            vec![maria("a", 2, 14, 14), maria("b", 3, 10, 10)],
            p(|p| {
                p.prevent_cross_region_master_failover = true;
                region(p, "m", "eu");
                region(p, "a", "us");
                region(p, "b", "eu");
            }),
            Expect {
                ahead: &["a"],
                excluded: &[("a", "otherRegion")],
                ..promotes("b")
            },
        ),
        case(
            "cross-DC prevention without the failed master's zone excludes nobody",
            vec![maria("a", 2, 14, 14), maria("b", 3, 10, 10)],
            p(|p| {
                p.prevent_cross_data_center_master_failover = true;
                dc(p, "a", "z2");
            }),
            promotes("a"),
        ),
        // Lag limits.
        case(
            "lag at the limit excludes",
            vec![
                with(maria("a", 2, 14, 14), |r| {
                    r.replication.as_mut().unwrap().seconds_behind = Some(60);
                }),
                maria("b", 3, 10, 10),
            ],
            p(|p| p.fail_master_promotion_on_lag_seconds = Some(60)),
            Expect {
                ahead: &["a"],
                excluded: &[("a", "lagging")],
                ..promotes("b")
            },
        ),
        case(
            "lag under the limit does not",
            vec![
                with(maria("a", 2, 14, 14), |r| {
                    r.replication.as_mut().unwrap().seconds_behind = Some(59);
                }),
                maria("b", 3, 10, 10),
            ],
            p(|p| p.fail_master_promotion_on_lag_seconds = Some(60)),
            promotes("a"),
        ),
        case(
            "without a limit lag does not matter",
            vec![
                with(maria("a", 2, 14, 14), |r| {
                    r.replication.as_mut().unwrap().seconds_behind = Some(86_400);
                }),
                maria("b", 3, 10, 10),
            ],
            none(),
            promotes("a"),
        ),
        // Version and binlog format break ties.
        case(
            "the lower version wins a tie",
            vec![
                maria("a", 2, 10, 10),
                with(maria("b", 3, 10, 10), |r| {
                    r.version = Some("10.6.18-MariaDB".into())
                }),
            ],
            none(),
            Expect {
                chosen_by: Some(ChosenBy::Version),
                ..promotes("b")
            },
        ),
        case(
            "statement binlog format wins a tie over row",
            vec![
                maria("a", 2, 10, 10),
                with(maria("b", 3, 10, 10), |r| {
                    r.binlog_format = Some("STATEMENT".into())
                }),
            ],
            none(),
            Expect {
                chosen_by: Some(ChosenBy::BinlogFormat),
                ..promotes("b")
            },
        ),
        case(
            "mixed binlog format wins a tie over row",
            vec![
                maria("a", 2, 10, 10),
                with(maria("b", 3, 10, 10), |r| {
                    r.binlog_format = Some("mixed".into())
                }),
            ],
            none(),
            Expect {
                chosen_by: Some(ChosenBy::BinlogFormat),
                ..promotes("b")
            },
        ),
        case(
            "a more advanced replica beats a lower version",
            vec![
                maria("a", 2, 11, 11),
                with(maria("b", 3, 10, 10), |r| {
                    r.version = Some("10.6.18-MariaDB".into())
                }),
            ],
            none(),
            Expect {
                chosen_by: Some(ChosenBy::MostAdvanced),
                ..promotes("a")
            },
        ),
        // Errant transactions, GTIDs that do not parse.
        case(
            "a replica with its own errant transactions is excluded",
            vec![
                with(maria("a", 2, 10, 10), |r| {
                    r.gtid.binlog_state = "0-1-10,0-2-11".into()
                }),
                maria("b", 3, 10, 10),
            ],
            none(),
            Expect {
                excluded: &[("a", "errantGtids")],
                ..promotes("b")
            },
        ),
        case(
            "an errant replica ahead by its own writes donates nothing",
            vec![
                with(maria("a", 2, 10, 10), |r| {
                    r.gtid.current_pos = "0-2-11".into();
                    r.gtid.binlog_state = "0-1-10,0-2-11".into();
                }),
                maria("b", 3, 10, 10),
            ],
            none(),
            Expect {
                excluded: &[("a", "errantGtids")],
                ..promotes("b")
            },
        ),
        case(
            "transactions of another server are not this replica's errant ones",
            vec![
                with(maria("a", 2, 10, 10), |r| {
                    r.gtid.binlog_state = "0-1-10,0-9-4".into()
                }),
                maria("b", 3, 9, 9),
            ],
            none(),
            promotes("a"),
        ),
        case(
            "an applied position that does not parse",
            vec![
                with(maria("a", 2, 14, 14), |r| {
                    r.gtid.current_pos = "0-1-x".into()
                }),
                maria("b", 3, 10, 10),
            ],
            none(),
            Expect {
                excluded: &[("a", "unparseableGtids")],
                ..promotes("b")
            },
        ),
        case(
            "a binlog state that does not parse is not taken for clean",
            vec![
                with(maria("a", 2, 14, 14), |r| {
                    r.gtid.binlog_state = "junk".into()
                }),
                maria("b", 3, 10, 10),
            ],
            none(),
            Expect {
                excluded: &[("a", "unparseableGtids")],
                ..promotes("b")
            },
        ),
        // Downtime, binary logs, reachability.
        case(
            "a downtimed replica is excluded and donates",
            vec![maria("a", 2, 14, 14), maria("b", 3, 10, 10)],
            p(|p| {
                p.instance_mut(&k("a")).downtime = Some(Downtime {
                    until_ms: 1_000,
                    reason: "backup".into(),
                });
            }),
            Expect {
                ahead: &["a"],
                excluded: &[("a", "downtimed")],
                ..promotes("b")
            },
        ),
        case(
            "an expired downtime excludes nobody",
            vec![maria("a", 2, 14, 14), maria("b", 3, 10, 10)],
            p(|p| {
                p.instance_mut(&k("a")).downtime = Some(Downtime {
                    until_ms: 500,
                    reason: "backup".into(),
                });
            }),
            promotes("a"),
        ),
        case(
            "no binary log",
            vec![
                with(maria("a", 2, 14, 14), |r| r.log_bin = Some(false)),
                maria("b", 3, 10, 10),
            ],
            none(),
            Expect {
                ahead: &["a"],
                excluded: &[("a", "noBinaryLog")],
                ..promotes("b")
            },
        ),
        case(
            "log_slave_updates off",
            vec![
                with(maria("a", 2, 14, 14), |r| {
                    r.log_replica_updates = Some(false)
                }),
                maria("b", 3, 10, 10),
            ],
            none(),
            Expect {
                ahead: &["a"],
                excluded: &[("a", "noBinaryLog")],
                ..promotes("b")
            },
        ),
        case(
            "an unreachable replica is excluded and cannot donate",
            vec![
                with(maria("a", 2, 14, 14), |r| r.reachable = false),
                maria("b", 3, 10, 10),
            ],
            none(),
            Expect {
                excluded: &[("a", "unreachable")],
                ..promotes("b")
            },
        ),
        // MySQL.
        case(
            "MySQL: retrieved more but executed less ranks first",
            vec![mysql("a", 2, 12, 12), mysql("b", 3, 9, 15)],
            none(),
            Expect {
                chosen_by: Some(ChosenBy::MostAdvanced),
                ..promotes("b")
            },
        ),
        case(
            "MySQL: a replica's own transactions are errant",
            vec![
                with(mysql("a", 2, 12, 12), |r| {
                    r.gtid.executed = format!("{M_UUID}:1-12,{}:1-3", uuid(2));
                }),
                mysql("b", 3, 10, 10),
            ],
            none(),
            Expect {
                excluded: &[("a", "errantGtids")],
                ..promotes("b")
            },
        ),
        case(
            "MySQL: an executed set that does not parse",
            vec![
                with(mysql("a", 2, 12, 12), |r| {
                    r.gtid.executed = format!("{M_UUID}:5-")
                }),
                mysql("b", 3, 10, 10),
            ],
            none(),
            Expect {
                excluded: &[("a", "unparseableGtids")],
                ..promotes("b")
            },
        ),
        case(
            "MySQL: the failed master's zone breaks a tie, a must_not replica ahead donates",
            vec![
                mysql("a", 2, 10, 10),
                mysql("b", 3, 10, 10),
                mysql("c", 4, 11, 11),
            ],
            p(|p| {
                dc(p, "m", "z1");
                dc(p, "b", "z1");
                rule(MustNot)(p, "c");
            }),
            Expect {
                ahead: &["c"],
                excluded: &[("c", "mustNot")],
                chosen_by: Some(ChosenBy::DataCenter),
                ..promotes("b")
            },
        ),
    ]
}

#[test]
fn candidate_ranking_table() {
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for c in cases {
        let name = c.name;
        let got = choose_candidate(&c.replicas, &c.failed, &c.policy, 700);
        let ranking = match &got {
            Ok(choice) => &choice.ranking,
            Err(n) => &n.ranking,
        };
        let excluded: Vec<(String, &str)> = ranking
            .iter()
            .filter_map(|r| Some((r.instance.host.clone(), r.excluded.as_ref()?.code())))
            .collect();
        let want: Vec<(String, &str)> = c
            .expect
            .excluded
            .iter()
            .map(|(n, code)| (n.to_string(), *code))
            .collect();
        assert_eq!(excluded, want, "{name}: exclusions");
        assert_eq!(
            ranking.len(),
            c.replicas.len(),
            "{name}: every replica is ranked"
        );
        match (got, c.expect.promoted) {
            (Ok(choice), Some(promoted)) => {
                assert_eq!(choice.promoted, k(promoted), "{name}: promoted");
                let ahead: Vec<InstanceKey> = c.expect.ahead.iter().map(|a| k(a)).collect();
                assert_eq!(choice.ahead, ahead, "{name}: ahead");
                assert_eq!(
                    choice.hand_over_to,
                    c.expect.hand_over.map(k),
                    "{name}: hand-over"
                );
                if let Some(by) = c.expect.chosen_by {
                    assert_eq!(choice.chosen_by, Some(by), "{name}: decided by");
                }
            }
            (Err(_), None) => {}
            (got, want) => panic!("{name}: expected {want:?}, got {got:?}"),
        }
    }
}
