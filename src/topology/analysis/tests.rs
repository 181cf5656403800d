//! Table-driven tests: every analysis code from a topology built for it.

use super::*;
use crate::topology::instance::{Flavor, Replication, SemiSync};
use crate::topology::policy::Downtime;
use AnalysisCode::*;

fn node(key: &str) -> Instance {
    let mut i = Instance::unknown(key.parse().unwrap());
    i.reachable = true;
    i.last_seen_ms = Some(1);
    i.flavor = Some(Flavor::Mariadb);
    i.version = Some("10.11.19-MariaDB".into());
    i.read_only = Some(true);
    i.log_bin = Some(true);
    i.log_replica_updates = Some(true);
    i.binlog_format = Some("ROW".into());
    i.gtid.binlog_state = "0-1-10".into();
    i.gtid.current_pos = "0-1-10".into();
    i
}

fn m(key: &str) -> Instance {
    let mut i = node(key);
    i.read_only = Some(false);
    i
}

fn r(key: &str, source: &str) -> Instance {
    let mut i = node(key);
    let s: InstanceKey = source.parse().unwrap();
    i.replication = Some(Replication {
        source_host: s.host,
        source_port: s.port,
        io_running: ThreadState::Yes,
        sql_running: ThreadState::Yes,
        using_gtid: "Slave_Pos".into(),
        seconds_behind: Some(0),
        ..Default::default()
    });
    i
}

trait Tweak {
    fn dead(self) -> Self;
    fn partial(self) -> Self;
    fn io(self, t: ThreadState) -> Self;
    fn sql(self, t: ThreadState) -> Self;
    fn connect_error(self) -> Self;
    fn lag(self, s: u64) -> Self;
    fn delayed(self) -> Self;
    fn read_only(self, ro: bool) -> Self;
    fn semi_sync(self, wait: u32, clients: u32, waiting: u32) -> Self;
    fn binlog_state(self, s: &str) -> Self;
}

impl Tweak for Instance {
    fn dead(mut self) -> Self {
        self.reachable = false;
        self
    }
    fn partial(mut self) -> Self {
        self.partial_success = true;
        self
    }
    fn io(mut self, t: ThreadState) -> Self {
        self.replication.as_mut().unwrap().io_running = t;
        self
    }
    fn sql(mut self, t: ThreadState) -> Self {
        self.replication.as_mut().unwrap().sql_running = t;
        self
    }
    fn connect_error(mut self) -> Self {
        let rep = self.replication.as_mut().unwrap();
        rep.io_running = ThreadState::Connecting;
        rep.last_io_errno = 2003;
        rep.last_io_error = "error reconnecting to master 'repl@m:1' - retry-time: 1".into();
        self
    }
    fn lag(mut self, s: u64) -> Self {
        self.replication.as_mut().unwrap().seconds_behind = Some(s);
        self
    }
    fn delayed(mut self) -> Self {
        self.replication.as_mut().unwrap().sql_delay = 3600;
        self
    }
    fn read_only(mut self, ro: bool) -> Self {
        self.read_only = Some(ro);
        self
    }
    fn semi_sync(mut self, wait: u32, clients: u32, waiting: u32) -> Self {
        self.semi_sync = SemiSync {
            master_enabled: true,
            master_status: true,
            master_wait_for_replica_count: wait,
            master_clients: clients,
            master_wait_sessions: waiting,
            ..Default::default()
        };
        self
    }
    fn binlog_state(mut self, s: &str) -> Self {
        self.gtid.binlog_state = s.into();
        self
    }
}

use ThreadState::{Connecting, No};

struct Case {
    name: &'static str,
    instances: Vec<Instance>,
    policy: Policy,
    instance: &'static str,
    code: AnalysisCode,
    actionable: bool,
}

fn case(
    name: &'static str,
    instances: Vec<Instance>,
    instance: &'static str,
    code: AnalysisCode,
    actionable: bool,
) -> Case {
    Case {
        name,
        instances,
        policy: Policy::default(),
        instance,
        code,
        actionable,
    }
}

fn cases() -> Vec<Case> {
    let healthy = || vec![m("m:1"), r("a:1", "m:1"), r("b:1", "m:1"), r("c:1", "m:1")];
    let mut v = vec![
        case("healthy", healthy(), "m:1", NoProblem, false),
        case(
            "dead master without replicas",
            vec![m("m:1").dead()],
            "m:1",
            DeadMasterWithoutReplicas,
            false,
        ),
        case(
            "dead master",
            vec![
                m("m:1").dead(),
                r("a:1", "m:1").connect_error(),
                r("b:1", "m:1").io(No),
            ],
            "m:1",
            DeadMaster,
            true,
        ),
        case(
            "dead master and replicas",
            vec![
                m("m:1").dead(),
                r("a:1", "m:1").dead(),
                r("b:1", "m:1").dead(),
            ],
            "m:1",
            DeadMasterAndReplicas,
            false,
        ),
        case(
            "dead master and some replicas",
            vec![
                m("m:1").dead(),
                r("a:1", "m:1").connect_error(),
                r("b:1", "m:1").dead(),
            ],
            "m:1",
            DeadMasterAndSomeReplicas,
            true,
        ),
        case(
            "unreachable master with lagging replicas",
            vec![
                m("m:1").dead(),
                r("a:1", "m:1").lag(60),
                r("b:1", "m:1").lag(60),
            ],
            "m:1",
            UnreachableMasterWithLaggingReplicas,
            false,
        ),
        case(
            "unreachable master",
            vec![
                m("m:1").dead(),
                r("a:1", "m:1"),
                r("b:1", "m:1").connect_error(),
            ],
            "m:1",
            UnreachableMaster,
            false,
        ),
        case(
            "unreachable master after partial success with a replica failing to connect",
            vec![
                m("m:1").dead().partial(),
                r("a:1", "m:1"),
                r("b:1", "m:1").connect_error(),
            ],
            "m:1",
            UnreachableMaster,
            false,
        ),
        case(
            "partial success and every replica fine is deliberately no problem",
            vec![m("m:1").dead().partial(), r("a:1", "m:1"), r("b:1", "m:1")],
            "m:1",
            NoProblem,
            false,
        ),
        case(
            "locked semi-sync master",
            vec![m("m:1").semi_sync(1, 0, 1), r("a:1", "m:1").io(No)],
            "m:1",
            LockedSemiSyncMaster,
            false,
        ),
        case(
            "locked semi-sync master hypothesis",
            vec![
                m("m:1").semi_sync(2, 1, 0),
                r("a:1", "m:1"),
                r("b:1", "m:1"),
            ],
            "m:1",
            LockedSemiSyncMasterHypothesis,
            false,
        ),
        case(
            "read-only master",
            vec![m("m:1").read_only(true), r("a:1", "m:1")],
            "m:1",
            NoWriteableMasterStructureWarning,
            false,
        ),
        case(
            "single replica not replicating",
            vec![m("m:1"), r("a:1", "m:1").sql(No)],
            "m:1",
            MasterSingleReplicaNotReplicating,
            false,
        ),
        case(
            "single replica dead",
            vec![m("m:1"), r("a:1", "m:1").dead()],
            "m:1",
            MasterSingleReplicaDead,
            false,
        ),
        case(
            "all master replicas not replicating",
            vec![m("m:1"), r("a:1", "m:1").sql(No), r("b:1", "m:1").io(No)],
            "m:1",
            AllMasterReplicasNotReplicating,
            false,
        ),
        case(
            "all master replicas not replicating or dead",
            vec![m("m:1"), r("a:1", "m:1").sql(No), r("b:1", "m:1").dead()],
            "m:1",
            AllMasterReplicasNotReplicatingOrDead,
            false,
        ),
        case(
            "dead co-master",
            vec![r("x:1", "y:1").dead(), r("y:1", "x:1").connect_error()],
            "x:1",
            DeadCoMaster,
            true,
        ),
        case(
            "dead co-master and some replicas",
            vec![
                r("x:1", "y:1").dead(),
                r("y:1", "x:1").connect_error(),
                r("z:1", "x:1").dead(),
            ],
            "x:1",
            DeadCoMasterAndSomeReplicas,
            true,
        ),
        case(
            "unreachable co-master",
            vec![r("x:1", "y:1").dead(), r("y:1", "x:1")],
            "x:1",
            UnreachableCoMaster,
            false,
        ),
        case(
            "all co-master replicas not replicating",
            vec![r("x:1", "y:1"), r("y:1", "x:1").sql(No)],
            "x:1",
            AllCoMasterReplicasNotReplicating,
            false,
        ),
        case(
            "dead intermediate master with single replica failing to connect",
            vec![
                m("m:1"),
                r("i:1", "m:1").dead(),
                r("a:1", "i:1").connect_error(),
            ],
            "i:1",
            DeadIntermediateMasterWithSingleReplicaFailingToConnect,
            true,
        ),
        case(
            "dead intermediate master with single replica",
            vec![m("m:1"), r("i:1", "m:1").dead(), r("a:1", "i:1").io(No)],
            "i:1",
            DeadIntermediateMasterWithSingleReplica,
            false,
        ),
        case(
            "dead intermediate master",
            vec![
                m("m:1"),
                r("i:1", "m:1").dead(),
                r("a:1", "i:1").connect_error(),
                r("b:1", "i:1").io(Connecting),
            ],
            "i:1",
            DeadIntermediateMaster,
            true,
        ),
        case(
            "dead intermediate master and some replicas",
            vec![
                m("m:1"),
                r("i:1", "m:1").dead(),
                r("a:1", "i:1").connect_error(),
                r("b:1", "i:1").dead(),
            ],
            "i:1",
            DeadIntermediateMasterAndSomeReplicas,
            true,
        ),
        case(
            "dead intermediate master and replicas",
            vec![m("m:1"), r("i:1", "m:1").dead(), r("a:1", "i:1").dead()],
            "i:1",
            DeadIntermediateMasterAndReplicas,
            false,
        ),
        case(
            "unreachable intermediate master with lagging replicas",
            vec![m("m:1"), r("i:1", "m:1").dead(), r("a:1", "i:1").lag(99)],
            "i:1",
            UnreachableIntermediateMasterWithLaggingReplicas,
            false,
        ),
        case(
            "unreachable intermediate master",
            vec![m("m:1"), r("i:1", "m:1").dead(), r("a:1", "i:1")],
            "i:1",
            UnreachableIntermediateMaster,
            false,
        ),
        case(
            "all intermediate master replicas failing to connect or dead",
            vec![
                m("m:1"),
                r("i:1", "m:1"),
                r("a:1", "i:1").connect_error(),
                r("b:1", "i:1").dead(),
            ],
            "i:1",
            AllIntermediateMasterReplicasFailingToConnectOrDead,
            true,
        ),
        case(
            "all intermediate master replicas not replicating",
            vec![m("m:1"), r("i:1", "m:1"), r("a:1", "i:1").sql(No)],
            "i:1",
            AllIntermediateMasterReplicasNotReplicating,
            false,
        ),
        case(
            "first tier replica failing to connect",
            vec![m("m:1"), r("a:1", "m:1").connect_error(), r("b:1", "m:1")],
            "a:1",
            FirstTierReplicaFailingToConnectToMaster,
            false,
        ),
        case(
            "errant transaction on a replica",
            vec![
                m("m:1"),
                r("a:1", "m:1").binlog_state("0-1-10,0-2-11"),
                r("b:1", "m:1"),
            ],
            "a:1",
            ErrantGTIDDetected,
            false,
        ),
        case(
            "stopped SQL thread",
            vec![m("m:1"), r("a:1", "m:1").sql(No), r("b:1", "m:1")],
            "a:1",
            ReplicationStopped,
            false,
        ),
        case(
            "writable replica",
            vec![m("m:1"), r("a:1", "m:1").read_only(false)],
            "a:1",
            ReplicaIsWritable,
            false,
        ),
        case(
            "replica of a foreign source",
            vec![m("m:1"), r("a:1", "elsewhere:1")],
            "a:1",
            ConnectedToWrongSource,
            false,
        ),
        case(
            "top of the cluster replicating from outside it",
            vec![r("t:1", "outside:1"), r("a:1", "t:1"), r("b:1", "t:1")],
            "t:1",
            ClusterReplicatesFromOutside,
            false,
        ),
        case(
            "every instance a replica of an outside source",
            vec![r("a:1", "outside:1"), r("b:1", "outside:1")],
            "b:1",
            ClusterReplicatesFromOutside,
            false,
        ),
        case(
            "intermediate master replicating from outside beside the primary",
            vec![
                m("m:1"),
                r("a:1", "m:1"),
                r("x:1", "outside:1"),
                r("y:1", "x:1"),
            ],
            "x:1",
            ConnectedToWrongSource,
            false,
        ),
        case(
            "read-only instance replicating from nothing beside a writable primary",
            vec![m("m:1"), r("a:1", "m:1"), node("d:1")],
            "d:1",
            DetachedReplica,
            false,
        ),
        case(
            "intermediate master with errant transactions",
            vec![
                m("m:1"),
                r("i:1", "m:1").binlog_state("0-1-10,0-2-11"),
                r("a:1", "i:1").binlog_state("0-1-10,0-2-11"),
            ],
            "i:1",
            ErrantGTIDDetected,
            false,
        ),
        case(
            "intermediate master with a stopped SQL thread",
            vec![
                m("m:1"),
                r("i:1", "m:1").sql(No),
                r("a:1", "i:1"),
                r("b:1", "m:1"),
            ],
            "i:1",
            ReplicationStopped,
            false,
        ),
        case(
            "two replicas replicating from each other beside a writable primary",
            vec![m("m:1"), r("a:1", "m:1"), r("x:1", "y:1"), r("y:1", "x:1")],
            "y:1",
            ReplicationRing,
            false,
        ),
        case(
            "a ring of three beside a writable primary",
            vec![m("m:1"), r("x:1", "z:1"), r("y:1", "x:1"), r("z:1", "y:1")],
            "z:1",
            ReplicationRing,
            false,
        ),
        case(
            "second writable master",
            vec![m("m:1"), r("a:1", "m:1"), m("old:1")],
            "old:1",
            SplitBrain,
            false,
        ),
    ];
    let mut broken = r("a:1", "m:1").sql(No);
    broken.replication.as_mut().unwrap().last_sql_errno = 1062;
    v.push(case(
        "broken SQL thread",
        vec![m("m:1"), broken, r("b:1", "m:1")],
        "a:1",
        ReplicationBroken,
        false,
    ));

    let mut exact = case(
        "too many semi-sync replicas",
        vec![
            m("m:1").semi_sync(1, 2, 0),
            r("a:1", "m:1"),
            r("b:1", "m:1"),
        ],
        "m:1",
        MasterWithTooManySemiSyncReplicas,
        true,
    );
    exact.policy.enforce_exact_semi_sync_replicas = true;
    v.push(exact);

    let locked = || vec![m("m:1").semi_sync(1, 0, 1), r("a:1", "m:1")];
    let mut recover_locked = case(
        "locked semi-sync master with RecoverLockedSemiSyncMaster",
        locked(),
        "m:1",
        LockedSemiSyncMaster,
        true,
    );
    recover_locked.policy.recover_locked_semi_sync_master = true;
    v.push(recover_locked);
    let mut locked_exact = case(
        "locked semi-sync master with EnforceExactSemiSyncReplicas",
        locked(),
        "m:1",
        LockedSemiSyncMaster,
        true,
    );
    locked_exact.policy.enforce_exact_semi_sync_replicas = true;
    v.push(locked_exact);
    let mut hypothesis = case(
        "no commit waits yet: the hypothesis is not recovered (no handler in orchestrator)",
        vec![m("m:1").semi_sync(1, 0, 0), r("a:1", "m:1")],
        "m:1",
        LockedSemiSyncMasterHypothesis,
        false,
    );
    hypothesis.policy.recover_locked_semi_sync_master = true;
    v.push(hypothesis);
    let mut downtimed_locked = case(
        "downtimed locked semi-sync master is not actionable",
        locked(),
        "m:1",
        LockedSemiSyncMaster,
        false,
    );
    downtimed_locked.policy.recover_locked_semi_sync_master = true;
    downtimed_locked
        .policy
        .instance_mut(&"m:1".parse().unwrap())
        .downtime = Some(Downtime {
        until_ms: u64::MAX,
        reason: "test".into(),
    });
    v.push(downtimed_locked);

    let mut recover_ro = case(
        "read-only master with RecoverNonWriteableMaster",
        vec![m("m:1").read_only(true), r("a:1", "m:1")],
        "m:1",
        NoWriteableMasterStructureWarning,
        true,
    );
    recover_ro.policy.recover_non_writeable_master = true;
    v.push(recover_ro);

    let mut downtimed = case(
        "downtimed dead master is not actionable",
        vec![m("m:1").dead(), r("a:1", "m:1").connect_error()],
        "m:1",
        DeadMaster,
        false,
    );
    downtimed
        .policy
        .instance_mut(&"m:1".parse().unwrap())
        .downtime = Some(Downtime {
        until_ms: u64::MAX,
        reason: "test".into(),
    });
    v.push(downtimed);
    v
}

#[test]
fn every_code_from_its_topology() {
    for c in cases() {
        let out = analyze(&c.instances, &c.policy, 1_000);
        let a = out
            .iter()
            .find(|a| a.instance.to_string() == c.instance)
            .unwrap_or_else(|| panic!("{}: no analysis for {} in {out:#?}", c.name, c.instance));
        assert_eq!(a.code, c.code, "{}: {a:#?}", c.name);
        assert_eq!(a.actionable, c.actionable, "{}: actionable", c.name);
        assert_eq!(a.description, c.code.description());
    }
}

#[test]
fn every_code_is_covered_by_a_case() {
    let covered: Vec<AnalysisCode> = cases().iter().map(|c| c.code).collect();
    let all = serde_json::to_value(covered.clone()).unwrap();
    for code in [
        NoProblem,
        DeadMasterWithoutReplicas,
        DeadMaster,
        DeadMasterAndReplicas,
        DeadMasterAndSomeReplicas,
        UnreachableMasterWithLaggingReplicas,
        UnreachableMaster,
        LockedSemiSyncMaster,
        LockedSemiSyncMasterHypothesis,
        MasterWithTooManySemiSyncReplicas,
        NoWriteableMasterStructureWarning,
        MasterSingleReplicaNotReplicating,
        MasterSingleReplicaDead,
        AllMasterReplicasNotReplicating,
        AllMasterReplicasNotReplicatingOrDead,
        DeadCoMaster,
        DeadCoMasterAndSomeReplicas,
        UnreachableCoMaster,
        AllCoMasterReplicasNotReplicating,
        DeadIntermediateMasterWithSingleReplicaFailingToConnect,
        DeadIntermediateMasterWithSingleReplica,
        DeadIntermediateMaster,
        DeadIntermediateMasterAndSomeReplicas,
        DeadIntermediateMasterAndReplicas,
        UnreachableIntermediateMasterWithLaggingReplicas,
        UnreachableIntermediateMaster,
        AllIntermediateMasterReplicasFailingToConnectOrDead,
        AllIntermediateMasterReplicasNotReplicating,
        FirstTierReplicaFailingToConnectToMaster,
        ErrantGTIDDetected,
        ReplicationBroken,
        ReplicationStopped,
        ConnectedToWrongSource,
        ReplicaIsWritable,
        SplitBrain,
        ClusterReplicatesFromOutside,
        DetachedReplica,
        ReplicationRing,
    ] {
        assert!(covered.contains(&code), "no case for {code:?} in {all}");
    }
}

#[test]
fn codes_serialize_verbatim() {
    assert_eq!(
        serde_json::to_string(&DeadMasterAndSomeReplicas).unwrap(),
        "\"DeadMasterAndSomeReplicas\""
    );
    assert_eq!(
        serde_json::to_string(&StructureWarning::StatementAndRowLoggingReplicas).unwrap(),
        "\"Statement+Row\""
    );
}

#[test]
fn evidence_counts_for_dead_master() {
    let list = vec![
        m("m:1").dead(),
        r("a:1", "m:1").connect_error().lag(99),
        r("b:1", "m:1").connect_error().delayed(),
        r("c:1", "m:1").dead(),
    ];
    let out = analyze(&list, &Policy::default(), 0);
    let a = out
        .iter()
        .find(|a| a.instance.to_string() == "m:1")
        .unwrap();
    assert_eq!(a.code, DeadMasterAndSomeReplicas);
    assert_eq!(
        a.evidence,
        Evidence {
            replicas: 3,
            valid_replicas: 2,
            valid_replicating_replicas: 0,
            replicas_failing_to_connect: 2,
            lagging_replicas: 1,
            delayed_replicas: 1,
            downtimed_replicas: 0,
        }
    );
    // The replicas' own failure to connect is reported under the dead master.
    assert_eq!(out.len(), 1, "{out:#?}");
}

#[test]
fn structure_warnings() {
    let mut a = r("a:1", "m:1").binlog_state("0-1-10,0-9-1");
    a.binlog_format = Some("STATEMENT".into());
    let mut b = r("b:1", "m:1");
    b.version = Some("11.4.2-MariaDB".into());
    let out = analyze(&[m("m:1").read_only(true), a, b], &Policy::default(), 0);
    let w = &out
        .iter()
        .find(|x| x.instance.to_string() == "m:1")
        .unwrap()
        .structure_warnings;
    for expected in [
        StructureWarning::StatementAndRowLoggingReplicas,
        StructureWarning::MultipleMajorVersionsLoggingReplicas,
        StructureWarning::ErrantGTID,
        StructureWarning::NoWriteableMaster,
    ] {
        assert!(w.contains(&expected), "{expected:?} missing from {w:?}");
    }
    let mut no_log = r("a:1", "m:1");
    no_log.log_replica_updates = Some(false);
    let mut no_log2 = r("b:1", "m:1");
    no_log2.log_bin = Some(false);
    no_log2.replication.as_mut().unwrap().using_gtid = "No".into();
    let out = analyze(&[m("m:1"), no_log, no_log2], &Policy::default(), 0);
    let w = &out[0].structure_warnings;
    assert!(
        w.contains(&StructureWarning::NoLoggingReplicas)
            && w.contains(&StructureWarning::NoFailoverSupport),
        "{w:?}"
    );
}

#[test]
fn downtimed_replicas_make_replica_centric_codes_skippable() {
    let mut p = Policy::default();
    for k in ["a:1", "b:1"] {
        p.instance_mut(&k.parse().unwrap()).downtime = Some(Downtime {
            until_ms: 10,
            reason: "backup".into(),
        });
    }
    let list = vec![m("m:1"), r("a:1", "m:1").sql(No), r("b:1", "m:1").sql(No)];
    let a = &analyze(&list, &p, 5)[0];
    assert_eq!(a.code, AllMasterReplicasNotReplicating);
    assert!(a.skippable_due_to_downtime);
    assert_eq!(a.evidence.downtimed_replicas, 2);
    assert!(!analyze(&list, &p, 11)[0].skippable_due_to_downtime);
}

#[test]
fn detached_replica_needs_a_writable_primary_beside_it() {
    let code = |list: &[Instance], key: &str| {
        analyze(list, &Policy::default(), 0)
            .into_iter()
            .find(|a| a.instance.to_string() == key)
            .map(|a| a.code)
    };
    // Two read-only instances replicating from nothing: a cluster being set up, or
    // one that lost its primary; neither is the detached one.
    let idle = [node("a:1"), node("b:1")];
    assert_eq!(code(&idle, "a:1"), Some(NoProblem));
    assert_eq!(code(&idle, "b:1"), Some(NoProblem));
    // The primary is dead: the read-only instance may be its successor.
    let dead = [
        m("m:1").dead(),
        r("a:1", "m:1").connect_error(),
        node("d:1"),
    ];
    assert_eq!(code(&dead, "d:1"), Some(NoProblem));
    // Detached on purpose (orchestrator's `//host` marker) is detached all the same.
    let mut marked = r("d:1", "m:1");
    marked.replication.as_mut().unwrap().source_host = "//m".into();
    let list = [m("m:1"), r("a:1", "m:1"), marked];
    assert_eq!(code(&list, "d:1"), Some(DetachedReplica));
    assert_eq!(code(&list, "m:1"), Some(NoProblem));
}

#[test]
fn co_masters_without_a_primary_beside_them_keep_orchestrator_codes() {
    let list = [r("x:1", "y:1"), r("y:1", "x:1").read_only(false)];
    let out = analyze(&list, &Policy::default(), 0);
    assert!(out.iter().all(|a| a.code == NoProblem), "{out:#?}");
}

#[test]
fn intermediate_master_errant_is_reported_on_it_and_on_its_source() {
    let list = [
        m("m:1"),
        r("i:1", "m:1").binlog_state("0-1-10,0-2-11"),
        r("a:1", "i:1").binlog_state("0-1-10,0-2-11"),
    ];
    let out = analyze(&list, &Policy::default(), 0);
    let of = |key: &str| out.iter().find(|a| a.instance.to_string() == key).unwrap();
    assert_eq!(of("i:1").errant_gtids.as_deref(), Some("0-2-11"));
    assert!(
        of("m:1")
            .structure_warnings
            .contains(&StructureWarning::ErrantGTID)
    );
    assert!(
        out.iter().all(|a| a.instance.to_string() != "a:1"),
        "a:1 has nothing its source lacks: {out:#?}"
    );
}

#[test]
fn mysql_replica_ahead_of_its_semi_sync_source_by_the_source_own_transaction_is_not_errant() {
    let (src, own) = (
        "3e11fa47-71ca-11e1-9e33-c80aa9429562",
        "4f22ab58-82db-22f2-8f44-d91bb8530673",
    );
    let mysql = |mut i: Instance, uuid: &str, executed: String| {
        i.flavor = Some(Flavor::Mysql);
        i.version = Some("9.7.4".into());
        i.server_uuid = Some(uuid.into());
        i.gtid = Default::default();
        i.gtid.executed = executed;
        i
    };
    let code = |list: &[Instance], key: &str| {
        analyze(list, &Policy::default(), 0)
            .into_iter()
            .find(|a| a.instance.to_string() == key)
            .map(|a| a.code)
    };
    // The source's sixth transaction waits for an acknowledgement (AFTER_SYNC): the
    // replica applied it before the source committed it.
    let source = mysql(m("m:1"), src, format!("{src}:1-5"));
    let replica = |executed| mysql(r("a:1", "m:1"), own, executed);
    let list = [source.clone(), replica(format!("{src}:1-6"))];
    assert_eq!(
        code(&list, "a:1"),
        None,
        "{:#?}",
        analyze(&list, &Policy::default(), 0)
    );
    let list = [source, replica(format!("{src}:1-6,{own}:1"))];
    assert_eq!(code(&list, "a:1"), Some(ErrantGTIDDetected));
}

#[test]
fn a_source_outside_the_cluster_is_a_warning_under_another_code() {
    let list = [
        m("m:1"),
        r("a:1", "m:1"),
        r("x:1", "outside:1"),
        r("y:1", "x:1").sql(No),
    ];
    let out = analyze(&list, &Policy::default(), 0);
    let x = out
        .iter()
        .find(|a| a.instance.to_string() == "x:1")
        .unwrap();
    assert_eq!(x.code, AllIntermediateMasterReplicasNotReplicating);
    assert_eq!(
        x.structure_warnings,
        vec![StructureWarning::ConnectedToWrongSource]
    );
}
