//! Semi-sync plans on hand-built topologies.

use super::*;
use crate::topology::instance::{Flavor, Replication, SemiSync};
use crate::topology::policy::Downtime;

fn key(s: &str) -> InstanceKey {
    s.parse().unwrap()
}

/// The semi-sync master `m:1` (server 1) waiting for `wait` acknowledgements, with
/// `waiting` commits waiting.
fn master(flavor: Flavor, wait: u32, clients: u32, waiting: u32) -> Instance {
    let mut m = Instance::unknown(key("m:1"));
    m.reachable = true;
    m.flavor = Some(flavor);
    m.server_id = Some(1);
    m.server_uuid = Some("00000000-0000-0000-0000-000000000001".into());
    m.read_only = Some(false);
    m.gtid.binlog_state = "0-1-20".into();
    m.gtid.current_pos = "0-1-20".into();
    m.gtid.executed = "00000000-0000-0000-0000-000000000001:1-20".into();
    m.semi_sync = SemiSync {
        master_enabled: true,
        master_status: true,
        master_wait_for_replica_count: wait,
        master_clients: clients,
        master_wait_sessions: waiting,
        ..SemiSync::default()
    };
    m
}

fn mariadb(wait: u32, clients: u32, waiting: u32) -> Instance {
    master(Flavor::Mariadb, wait, clients, waiting)
}

/// A replica of `m:1` replicating, having received up to transaction `received`,
/// with semi-sync off.
fn replica(flavor: Flavor, k: &str, server_id: u32, received: u64) -> Instance {
    let mut r = Instance::unknown(key(k));
    r.reachable = true;
    r.flavor = Some(flavor);
    r.server_id = Some(server_id);
    r.server_uuid = Some(format!("00000000-0000-0000-0000-0000000000{server_id:02}"));
    r.read_only = Some(true);
    r.gtid.binlog_state = format!("0-1-{received}");
    r.gtid.current_pos = format!("0-1-{received}");
    r.gtid.executed = format!("00000000-0000-0000-0000-000000000001:1-{received}");
    r.replication = Some(Replication {
        source_host: "m".into(),
        source_port: 1,
        io_running: ThreadState::Yes,
        sql_running: ThreadState::Yes,
        using_gtid: "Slave_Pos".into(),
        received_gtids: match flavor {
            Flavor::Mariadb => format!("0-1-{received}"),
            Flavor::Mysql => format!("00000000-0000-0000-0000-000000000001:1-{received}"),
        },
        ..Replication::default()
    });
    r
}

fn r(k: &str, server_id: u32, received: u64) -> Instance {
    replica(Flavor::Mariadb, k, server_id, received)
}

trait Tweak {
    /// Semi-sync on and active: it acknowledges.
    fn acking(self) -> Self;
    /// Semi-sync on in the variable only (the IO thread has not reconnected since).
    fn enabled_only(self) -> Self;
    fn dead(self) -> Self;
    fn sql_stopped(self) -> Self;
}

impl Tweak for Instance {
    fn acking(mut self) -> Self {
        self.semi_sync.replica_enabled = true;
        self.semi_sync.replica_status = true;
        self
    }
    fn enabled_only(mut self) -> Self {
        self.semi_sync.replica_enabled = true;
        self
    }
    fn dead(mut self) -> Self {
        self.reachable = false;
        self
    }
    fn sql_stopped(mut self) -> Self {
        self.replication.as_mut().unwrap().sql_running = ThreadState::No;
        self
    }
}

fn described(steps: &[PlannedStep]) -> Vec<String> {
    steps
        .iter()
        .map(|s| format!("{} {}", s.kind(), s.instance()))
        .collect()
}

struct Case {
    name: &'static str,
    instances: Vec<Instance>,
    policy: Policy,
    /// The steps, or a text the error contains.
    want: Result<Vec<&'static str>, &'static str>,
}

fn case(
    name: &'static str,
    instances: Vec<Instance>,
    want: Result<Vec<&'static str>, &'static str>,
) -> Case {
    Case {
        name,
        instances,
        policy: Policy::default(),
        want,
    }
}

fn with(mut c: Case, f: impl FnOnce(&mut Policy)) -> Case {
    f(&mut c.policy);
    c
}

fn rule(k: &str, rule: PromotionRule) -> impl FnOnce(&mut Policy) {
    let k = key(k);
    move |p| p.instance_mut(&k).promotion_rule = rule
}

fn exact(p: &mut Policy) {
    p.enforce_exact_semi_sync_replicas = true;
}

fn cases() -> Vec<Case> {
    use Flavor::Mysql;
    vec![
        case(
            "the acknowledging replica died: the most caught-up other one, then the release",
            vec![
                mariadb(1, 0, 1),
                r("a:1", 2, 20).acking().dead(),
                r("b:1", 3, 18),
                r("c:1", 4, 20),
            ],
            Ok(vec!["enableSemiSync c:1", "releaseWaitingCommits m:1"]),
        ),
        case(
            "a dead replica is never chosen, however far ahead it was",
            vec![mariadb(1, 0, 1), r("a:1", 2, 20).dead(), r("b:1", 3, 15)],
            Ok(vec!["enableSemiSync b:1", "releaseWaitingCommits m:1"]),
        ),
        case(
            "semi-sync on in the variable but not active: restarted like one that is off",
            vec![
                mariadb(1, 0, 1),
                r("a:1", 2, 20).enabled_only(),
                r("b:1", 3, 19),
            ],
            Ok(vec!["enableSemiSync a:1", "releaseWaitingCommits m:1"]),
        ),
        with(
            case(
                "must_not is skipped",
                vec![mariadb(1, 0, 1), r("a:1", 2, 20), r("b:1", 3, 19)],
                Ok(vec!["enableSemiSync b:1", "releaseWaitingCommits m:1"]),
            ),
            rule("a:1", PromotionRule::MustNot),
        ),
        with(
            case(
                "downtimed is skipped",
                vec![mariadb(1, 0, 1), r("a:1", 2, 20), r("b:1", 3, 19)],
                Ok(vec!["enableSemiSync b:1", "releaseWaitingCommits m:1"]),
            ),
            |p| {
                p.instance_mut(&key("a:1")).downtime = Some(Downtime {
                    until_ms: u64::MAX,
                    reason: "maintenance".into(),
                })
            },
        ),
        case(
            "errant and not replicating are skipped",
            vec![
                mariadb(1, 0, 1),
                r("a:1", 2, 20).sql_stopped(),
                {
                    let mut e = r("e:1", 5, 20);
                    e.gtid.binlog_state = "0-1-20,0-5-1".into();
                    e
                },
                r("b:1", 3, 12),
            ],
            Ok(vec!["enableSemiSync b:1", "releaseWaitingCommits m:1"]),
        ),
        case(
            "equal positions: the key decides, the same every time",
            vec![mariadb(1, 0, 1), r("b:1", 3, 20), r("a:1", 2, 20)],
            Ok(vec!["enableSemiSync a:1", "releaseWaitingCommits m:1"]),
        ),
        with(
            case(
                "equal positions: the better promotion rule first",
                vec![mariadb(1, 0, 1), r("a:1", 2, 20), r("b:1", 3, 20)],
                Ok(vec!["enableSemiSync b:1", "releaseWaitingCommits m:1"]),
            ),
            rule("b:1", PromotionRule::Prefer),
        ),
        case(
            "MySQL waiting for 2 with one acknowledging: one more, the most caught-up",
            vec![
                master(Mysql, 2, 1, 1),
                replica(Mysql, "a:1", 2, 20).acking(),
                replica(Mysql, "b:1", 3, 17),
                replica(Mysql, "c:1", 4, 19),
            ],
            Ok(vec!["enableSemiSync c:1", "releaseWaitingCommits m:1"]),
        ),
        case(
            "MySQL waiting for 2 with none acknowledging: two, most caught-up first",
            vec![
                master(Mysql, 2, 0, 1),
                replica(Mysql, "a:1", 2, 17),
                replica(Mysql, "b:1", 3, 20),
                replica(Mysql, "c:1", 4, 19),
            ],
            Ok(vec![
                "enableSemiSync b:1",
                "enableSemiSync c:1",
                "releaseWaitingCommits m:1",
            ]),
        ),
        case(
            "no commit waits (too few, not locked yet): no release",
            vec![mariadb(1, 0, 0), r("a:1", 2, 20)],
            Ok(vec!["enableSemiSync a:1"]),
        ),
        with(
            case(
                "enforce exact: the surplus is turned off, least caught-up first",
                vec![
                    mariadb(1, 3, 0),
                    r("a:1", 2, 18).acking(),
                    r("b:1", 3, 20).acking(),
                    r("c:1", 4, 17).acking(),
                ],
                Ok(vec!["disableSemiSync c:1", "disableSemiSync a:1"]),
            ),
            exact,
        ),
        with(
            case(
                "enforce exact on a locked master: on first, then the unfit one off",
                vec![
                    mariadb(1, 0, 1),
                    r("a:1", 2, 20).acking().dead(),
                    r("b:1", 3, 19),
                    r("n:1", 4, 20).enabled_only(),
                ],
                Ok(vec![
                    "enableSemiSync b:1",
                    "releaseWaitingCommits m:1",
                    "disableSemiSync n:1",
                ]),
            ),
            |p| {
                exact(p);
                rule("n:1", PromotionRule::MustNot)(p);
            },
        ),
        with(
            case(
                "enforce exact keeps the ones acknowledging rather than swapping",
                vec![
                    master(Mysql, 2, 3, 0),
                    replica(Mysql, "a:1", 2, 20),
                    replica(Mysql, "b:1", 3, 19).acking(),
                    replica(Mysql, "c:1", 4, 18).acking(),
                    replica(Mysql, "d:1", 5, 17).acking(),
                ],
                Ok(vec!["disableSemiSync d:1"]),
            ),
            exact,
        ),
        with(
            case(
                "enforce exact never turns off what leaves the master short",
                vec![
                    mariadb(1, 2, 0),
                    r("a:1", 2, 20).acking(),
                    r("b:1", 3, 20).acking(),
                ],
                Err("no other replica can: a:1 must_not, b:1 must_not"),
            ),
            |p| {
                exact(p);
                rule("a:1", PromotionRule::MustNot)(p);
                rule("b:1", PromotionRule::MustNot)(p);
            },
        ),
        case(
            "without enforcing, a surplus is left alone",
            vec![
                mariadb(1, 2, 0),
                r("a:1", 2, 20).acking(),
                r("b:1", 3, 20).acking(),
            ],
            Err("nothing to change"),
        ),
        case(
            "nothing healthy to turn on: it cannot unlock, and says why",
            vec![
                mariadb(1, 0, 1),
                r("a:1", 2, 20).acking().dead(),
                r("b:1", 3, 20).sql_stopped(),
            ],
            Err(
                "m:1 waits for 1 acknowledgement(s); acknowledging: none; no other replica can: \
                 b:1 not replicating, a:1 unreachable",
            ),
        ),
        case(
            "one short of two is no unlock: nothing is changed",
            vec![
                master(Mysql, 2, 0, 1),
                replica(Mysql, "a:1", 2, 20),
                replica(Mysql, "b:1", 3, 20).dead(),
            ],
            Err("no other replica can: b:1 unreachable"),
        ),
        case(
            "not a semi-sync master",
            vec![
                {
                    let mut m = mariadb(1, 0, 0);
                    m.semi_sync.master_enabled = false;
                    m
                },
                r("a:1", 2, 20),
            ],
            Err("m:1 is no reachable semi-sync master"),
        ),
    ]
}

#[test]
fn semi_sync_plans() {
    for c in cases() {
        let got = plan(&c.instances, &key("m:1"), &c.policy, 1_000);
        match (&got, &c.want) {
            (Ok(p), Ok(want)) => assert_eq!(described(&p.steps), *want, "{}", c.name),
            (Err(e), Err(want)) => {
                assert!(e.to_string().contains(want), "{}: {e}", c.name)
            }
            _ => panic!("{}: got {got:?}, want {:?}", c.name, c.want),
        }
    }
}

#[test]
fn the_plan_names_who_acknowledges_and_who_cannot() {
    let instances = vec![
        mariadb(1, 0, 1),
        r("a:1", 2, 20).acking().dead(),
        r("b:1", 3, 19),
    ];
    let p = plan(&instances, &key("m:1"), &Policy::default(), 0).unwrap();
    assert_eq!(p.wait_count, 1);
    assert!(
        p.acknowledging.is_empty(),
        "a dead replica acknowledges nothing"
    );
    assert_eq!(p.unfit, vec![(key("a:1"), Unfit::Unreachable)]);
    assert_eq!(
        serde_json::to_value(Unfit::ErrantGtids("0-5-1".into())).unwrap(),
        serde_json::json!({"reason": "errantGtids", "detail": "0-5-1"})
    );
}
