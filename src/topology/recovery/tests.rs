//! The executor and the recovery functions over a recording fake of [`Replication`]:
//! which statements run in which order, what the guard sees, and how a failure or a
//! refusal ends the record. The real-server behaviour is in `tests/recovery_on_servers.rs`.

use super::*;
use crate::topology::Result as SqlResult;
use crate::topology::instance::{Flavor, Replication as ReplicaStatus, ThreadState};
use crate::topology::policy::{PromotionRule, SqlThreadNotUpToDate};
use crate::topology::session::Credentials;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn key(s: &str) -> InstanceKey {
    s.parse().unwrap()
}

/// What happened, in order: the fake's calls and the guard's questions.
type Log = Arc<Mutex<Vec<String>>>;

/// Instances as a map; every call is logged; chosen calls fail.
struct Fake {
    instances: Mutex<BTreeMap<InstanceKey, Instance>>,
    log: Log,
    /// `"op key"` entries that fail.
    failing: BTreeSet<String>,
    /// Instances whose wait for a position never succeeds.
    never_applies: BTreeSet<InstanceKey>,
}

impl Fake {
    fn new(instances: &[Instance], log: &Log) -> Self {
        Self {
            instances: Mutex::new(
                instances
                    .iter()
                    .map(|i| (i.key.clone(), i.clone()))
                    .collect(),
            ),
            log: log.clone(),
            failing: BTreeSet::new(),
            never_applies: BTreeSet::new(),
        }
    }

    fn call(&self, op: &str, key: &InstanceKey) -> SqlResult<()> {
        let call = format!("{op} {key}");
        self.log.lock().unwrap().push(call.clone());
        if self.failing.contains(&call) {
            return Err(crate::topology::Error::Timeout {
                instance: key.clone(),
                doing: op.into(),
                after: Duration::ZERO,
            });
        }
        Ok(())
    }

    fn update(&self, key: &InstanceKey, f: impl FnOnce(&mut Instance)) {
        if let Some(i) = self.instances.lock().unwrap().get_mut(key) {
            f(i);
        }
    }
}

impl Replication for Fake {
    async fn probe(&self, key: &InstanceKey) -> Instance {
        self.instances
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .unwrap_or_else(|| Instance::unknown(key.clone()))
    }

    async fn stop_io(&self, key: &InstanceKey) -> SqlResult<()> {
        self.call("stop_io", key)
    }

    async fn wait_applied(
        &self,
        key: &InstanceKey,
        position: &str,
        _: Duration,
    ) -> SqlResult<bool> {
        self.call("wait_applied", key)?;
        if self.never_applies.contains(key) {
            return Ok(false);
        }
        self.update(key, |i| i.gtid.current_pos = position.into());
        Ok(true)
    }

    async fn own_position(&self, key: &InstanceKey) -> SqlResult<String> {
        self.call("own_position", key)?;
        Ok("0-1-20".into())
    }

    async fn stop_replica(&self, key: &InstanceKey) -> SqlResult<()> {
        self.call("stop_replica", key)
    }

    async fn promote(&self, key: &InstanceKey, writable: bool, semi_sync: bool) -> SqlResult<()> {
        self.call("promote", key)?;
        self.update(key, |i| {
            i.replication = None;
            i.read_only = Some(!writable);
            i.semi_sync.master_enabled |= semi_sync;
        });
        Ok(())
    }

    async fn point_to(
        &self,
        key: &InstanceKey,
        source: &InstanceKey,
        _: Option<&crate::topology::dialect::ReplicationCredentials>,
        _: bool,
    ) -> SqlResult<()> {
        self.call(&format!("point_to({source})"), key)?;
        self.update(key, |i| {
            let r = i.replication.get_or_insert_with(ReplicaStatus::default);
            r.source_host = source.host.clone();
            r.source_port = source.port;
        });
        Ok(())
    }

    async fn set_read_only(&self, key: &InstanceKey, read_only: bool) -> SqlResult<()> {
        self.call(&format!("read_only={}", u8::from(read_only)), key)?;
        self.update(key, |i| i.read_only = Some(read_only));
        Ok(())
    }

    async fn detach(&self, key: &InstanceKey, _: &InstanceKey) -> SqlResult<()> {
        self.call("detach", key)
    }

    async fn set_semi_sync_replica(&self, key: &InstanceKey, enabled: bool) -> SqlResult<()> {
        self.call(&format!("semi_sync={}", u8::from(enabled)), key)?;
        self.update(key, |i| {
            i.semi_sync.replica_enabled = enabled;
            i.semi_sync.replica_status = enabled;
        });
        Ok(())
    }

    async fn release_waiting_commits(&self, key: &InstanceKey) -> SqlResult<()> {
        self.call("release", key)?;
        self.update(key, |i| i.semi_sync.master_wait_sessions = 0);
        Ok(())
    }
}

/// Logs every step it is asked about; refuses the first step after one of kind
/// `after` ran, or the first of kind `before`.
struct Guard {
    log: Log,
    before: Option<StepKind>,
    after: Option<StepKind>,
    passed: Mutex<bool>,
}

impl Guard {
    fn new(log: &Log) -> Self {
        Self {
            log: log.clone(),
            before: None,
            after: None,
            passed: Mutex::new(false),
        }
    }
}

impl StepGuard for Guard {
    fn before<'a>(&'a self, step: &'a PlannedStep) -> BoxFuture<'a, Result<(), String>> {
        let mut passed = self.passed.lock().unwrap();
        let refuse = *passed || self.before == Some(step.kind());
        *passed |= self.after == Some(step.kind());
        self.log
            .lock()
            .unwrap()
            .push(format!("guard {} {}", step.kind(), step.instance()));
        Box::pin(std::future::ready(if refuse {
            Err("leader lease lost".into())
        } else {
            Ok(())
        }))
    }
}

fn dead_master() -> Instance {
    let mut m = Instance::unknown(key("m:1"));
    m.flavor = Some(Flavor::Mariadb);
    m.server_id = Some(1);
    m.last_seen_ms = Some(1);
    m.read_only = Some(false);
    m.gtid.binlog_state = "0-1-10".into();
    m
}

fn replica(k: &str, server_id: u32, applied: u64, received: u64) -> Instance {
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
    r.replication = Some(ReplicaStatus {
        source_host: "m".into(),
        source_port: 1,
        io_running: ThreadState::Connecting,
        sql_running: ThreadState::Yes,
        using_gtid: "Slave_Pos".into(),
        received_gtids: format!("0-1-{received}"),
        ..Default::default()
    });
    r
}

fn context(policy: Policy) -> RecoveryContext {
    RecoveryContext {
        connector: Connector::new(Credentials {
            user: "korc".into(),
            password: String::new(),
        }),
        policy,
        replication: ReplicationCredentials {
            user: "repl".into(),
            password: String::new(),
            source_ca: None,
        },
    }
}

fn kinds(rec: &RecoveryRecord) -> Vec<String> {
    rec.steps
        .iter()
        .map(|s| {
            let on = s
                .instance
                .as_ref()
                .map(|k| format!(" {k}"))
                .unwrap_or_default();
            format!("{}{on}{}", s.kind, if s.ok { "" } else { " FAILED" })
        })
        .collect()
}

fn log_of(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

async fn run_dead_master(
    fake: &Fake,
    policy: Policy,
    instances: &[Instance],
    guard: &dyn StepGuard,
    hint: Option<&InstanceKey>,
) -> RecoveryRecord {
    let ctx = context(policy);
    let exec = Executor {
        sql: fake,
        ctx: &ctx,
        guard,
    };
    dead_master::run(&exec, instances, &key("m:1"), None, hint).await
}

#[tokio::test]
async fn dead_master_steps_run_in_plan_order_with_the_guard_asked_before_each() {
    let log = Log::default();
    let instances = [
        dead_master(),
        replica("a:1", 2, 10, 12),
        replica("b:1", 3, 10, 10),
    ];
    let fake = Fake::new(&instances, &log);
    let guard = Guard::new(&log);
    let rec = run_dead_master(&fake, Policy::default(), &instances, &guard, None).await;
    assert_eq!(rec.outcome, Outcome::Recovered, "{rec:#?}");
    assert_eq!(rec.successor, Some(key("a:1")));
    assert_eq!(
        kinds(&rec),
        [
            "readTopology",
            "stopReplicaIo a:1",
            "stopReplicaIo b:1",
            "readPositions",
            "chooseCandidate",
            "waitRelayLogApplied a:1",
            "promote a:1",
            "repoint b:1",
            "fenceOldPrimary m:1",
        ]
    );
    assert_eq!(
        log_of(&log),
        [
            "guard stopReplicaIo a:1",
            "guard stopReplicaIo b:1",
            "stop_io a:1",
            "stop_io b:1",
            "guard waitRelayLogApplied a:1",
            "wait_applied a:1",
            "guard promote a:1",
            "promote a:1",
            "guard repoint b:1",
            "point_to(a:1) b:1",
            "guard fenceOldPrimary m:1",
            "read_only=1 m:1",
        ]
    );
    assert!(rec.writable_after_micros.is_some());
    let json = serde_json::to_value(&rec).unwrap();
    assert!(json.get("stoppedBefore").is_none(), "{json:#}");
}

#[tokio::test]
async fn a_refusing_guard_abandons_before_the_step_and_the_record_says_which() {
    let log = Log::default();
    let instances = [
        dead_master(),
        replica("a:1", 2, 10, 12),
        replica("b:1", 3, 10, 10),
    ];
    let fake = Fake::new(&instances, &log);
    let guard = Guard {
        before: Some(StepKind::Promote),
        ..Guard::new(&log)
    };
    let rec = run_dead_master(&fake, Policy::default(), &instances, &guard, None).await;
    assert_eq!(rec.outcome, Outcome::Abandoned);
    let stopped = rec.stopped_before.as_ref().unwrap();
    assert_eq!(stopped.kind, StepKind::Promote);
    assert_eq!(stopped.instance, Some(key("a:1")), "the successor is known");
    assert_eq!(stopped.reason, "leader lease lost");
    assert_eq!(
        rec.candidate.as_ref().map(|c| &c.promoted),
        Some(&key("a:1"))
    );
    assert!(!log_of(&log).iter().any(|c| c.starts_with("promote")));
    assert_eq!(rec.successor, None);
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["outcome"], "abandoned");
    assert_eq!(json["stoppedBefore"]["kind"], "promote");
}

#[tokio::test]
async fn a_recovery_stopped_after_the_promotion_is_completed_not_repeated() {
    let log = Log::default();
    let instances = [
        dead_master(),
        replica("a:1", 2, 10, 12),
        replica("b:1", 3, 10, 10),
        replica("c:1", 4, 10, 11),
    ];
    let fake = Fake::new(&instances, &log);
    let guard = Guard {
        after: Some(StepKind::Promote),
        ..Guard::new(&log)
    };
    let first = run_dead_master(&fake, Policy::default(), &instances, &guard, None).await;
    assert_eq!(first.outcome, Outcome::Abandoned);
    assert_eq!(first.successor, Some(key("a:1")));
    assert_eq!(
        first.stopped_before.as_ref().map(|s| s.kind),
        Some(StepKind::Repoint)
    );

    // The second run starts from the topology as the first left it, with and without
    // the hint: a:1 is completed, nobody else is promoted.
    let left: Vec<Instance> =
        futures::future::join_all(instances.iter().map(|i| fake.probe(&i.key))).await;
    for hint in [Some(key("a:1")), None] {
        log.lock().unwrap().clear();
        let fake = Fake::new(&left, &log);
        let rec = run_dead_master(
            &fake,
            Policy::default(),
            &left,
            &Guard::new(&log),
            hint.as_ref(),
        )
        .await;
        assert_eq!(rec.outcome, Outcome::Recovered, "{rec:#?}");
        assert_eq!(rec.successor, Some(key("a:1")));
        assert_eq!(
            kinds(&rec),
            [
                "readTopology",
                "repoint b:1",
                "repoint c:1",
                "fenceOldPrimary m:1"
            ],
            "hint {hint:?}"
        );
        assert!(!log_of(&log).iter().any(|c| c.starts_with("promote")));
    }
}

#[tokio::test]
async fn a_hinted_successor_not_yet_promoted_is_kept() {
    let log = Log::default();
    let instances = [
        dead_master(),
        replica("a:1", 2, 10, 12),
        replica("b:1", 3, 10, 11),
    ];
    let fake = Fake::new(&instances, &log);
    let hint = key("b:1");
    let rec = run_dead_master(
        &fake,
        Policy::default(),
        &instances,
        &Guard::new(&log),
        Some(&hint),
    )
    .await;
    assert_eq!(rec.outcome, Outcome::Recovered, "{rec:#?}");
    assert_eq!(rec.successor, Some(hint));
    assert!(kinds(&rec).contains(&"catchUpFromDonor b:1".to_string()));
}

#[tokio::test]
async fn an_applier_error_fails_the_recovery_before_anything_is_writable() {
    let log = Log::default();
    let mut a = replica("a:1", 2, 10, 12);
    if let Some(r) = a.replication.as_mut() {
        r.sql_running = ThreadState::No;
        r.last_sql_errno = 1062;
        r.last_sql_error = "Duplicate entry '7' for key 'PRIMARY'".into();
    }
    let instances = [dead_master(), a, replica("b:1", 3, 10, 10)];
    for mode in [SqlThreadNotUpToDate::Delay, SqlThreadNotUpToDate::Fail] {
        let mut fake = Fake::new(&instances, &log);
        fake.never_applies.insert(key("a:1"));
        let policy = Policy {
            sql_thread_not_up_to_date: mode,
            ..Policy::default()
        };
        let rec = run_dead_master(&fake, policy, &instances, &Guard::new(&log), None).await;
        assert_eq!(rec.outcome, Outcome::Failed, "{mode:?}");
        let error = rec.error.clone().unwrap();
        assert!(
            error.contains("waitRelayLogApplied on a:1 failed")
                && error.contains("cannot apply its relay log: error 1062"),
            "{error}"
        );
        assert!(rec.successor.is_none());
        assert!(!log_of(&log).iter().any(|c| c.starts_with("promote")));
    }
}

#[tokio::test]
async fn delay_fails_without_progress_and_promote_names_what_was_not_applied() {
    let log = Log::default();
    let instances = [
        dead_master(),
        replica("a:1", 2, 10, 12),
        replica("b:1", 3, 10, 10),
    ];
    let cases = [
        (
            SqlThreadNotUpToDate::Delay,
            Outcome::Failed,
            "applied nothing for",
        ),
        (
            SqlThreadNotUpToDate::Fail,
            Outcome::Failed,
            "did not apply 0-1-12",
        ),
        (
            SqlThreadNotUpToDate::Promote,
            Outcome::Recovered,
            "received 0-1-12, applied only 0-1-10",
        ),
    ];
    for (mode, outcome, says) in cases {
        let mut fake = Fake::new(&instances, &log);
        fake.never_applies.insert(key("a:1"));
        let policy = Policy {
            sql_thread_not_up_to_date: mode,
            relay_log_apply_timeout_ms: 0,
            ..Policy::default()
        };
        let rec = run_dead_master(&fake, policy, &instances, &Guard::new(&log), None).await;
        assert_eq!(rec.outcome, outcome, "{mode:?}: {rec:#?}");
        let wait = rec
            .steps
            .iter()
            .find(|s| s.kind == StepKind::WaitRelayLogApplied)
            .unwrap();
        assert!(wait.detail.contains(says), "{mode:?}: {}", wait.detail);
    }
}

#[tokio::test]
async fn a_failed_catch_up_from_a_donor_aborts_the_recovery() {
    let log = Log::default();
    let instances = [
        dead_master(),
        replica("x:1", 2, 10, 14),
        replica("b:1", 3, 10, 10),
    ];
    let mut fake = Fake::new(&instances, &log);
    fake.failing.insert("point_to(x:1) b:1".into());
    let mut policy = Policy::default();
    policy.instance_mut(&key("x:1")).promotion_rule = PromotionRule::MustNot;
    let rec = run_dead_master(&fake, policy, &instances, &Guard::new(&log), None).await;
    assert_eq!(rec.outcome, Outcome::Failed, "{rec:#?}");
    let error = rec.error.unwrap();
    assert!(
        error.starts_with("catchUpFromDonor on b:1 failed: donor x:1: "),
        "{error}"
    );
    assert!(rec.lost_replicas.is_empty());
    assert!(!log_of(&log).iter().any(|c| c.starts_with("promote")));
}

#[tokio::test]
async fn failed_repoints_lose_the_replica_and_the_fence_is_best_effort() {
    let log = Log::default();
    let instances = [
        dead_master(),
        replica("a:1", 2, 10, 12),
        replica("b:1", 3, 10, 10),
    ];
    let mut fake = Fake::new(&instances, &log);
    fake.failing.insert("point_to(a:1) b:1".into());
    fake.failing.insert("read_only=1 m:1".into());
    let rec = run_dead_master(
        &fake,
        Policy::default(),
        &instances,
        &Guard::new(&log),
        None,
    )
    .await;
    assert_eq!(rec.outcome, Outcome::Recovered);
    assert_eq!(rec.lost_replicas, [key("b:1")]);
    assert_eq!(
        kinds(&rec)[7..],
        ["repoint b:1 FAILED", "fenceOldPrimary m:1 FAILED"]
    );
}

#[tokio::test]
async fn takeover_rolls_back_when_the_target_cannot_catch_up() {
    let log = Log::default();
    let mut p = replica("m:1", 1, 20, 20);
    p.replication = None;
    p.read_only = Some(false);
    let mut a = replica("a:1", 2, 18, 18);
    a.replication.as_mut().unwrap().io_running = ThreadState::Yes;
    let instances = [p, a];
    let mut fake = Fake::new(&instances, &log);
    fake.never_applies.insert(key("a:1"));
    let ctx = context(Policy::default());
    let exec = Executor {
        sql: &fake,
        ctx: &ctx,
        guard: &Guard::new(&log),
    };
    let rec = takeover::run(&exec, &instances, Some(&key("a:1"))).await;
    assert_eq!(rec.outcome, Outcome::RolledBack, "{rec:#?}");
    assert_eq!(
        kinds(&rec),
        ["setReadOnly m:1", "waitCatchUp a:1 FAILED", "rollback m:1"]
    );
    assert_eq!(
        log_of(&log).last().map(String::as_str),
        Some("read_only=0 m:1")
    );
}

/// A locked semi-sync master `m:1` whose acknowledging replica `a:1` died; `b:1` can
/// take over acknowledging; `n:1` (must_not) has semi-sync on without acknowledging.
fn locked_semi_sync() -> (Vec<Instance>, Policy) {
    let mut m = Instance::unknown(key("m:1"));
    m.reachable = true;
    m.flavor = Some(Flavor::Mariadb);
    m.server_id = Some(1);
    m.read_only = Some(false);
    m.gtid.binlog_state = "0-1-10".into();
    m.gtid.current_pos = "0-1-10".into();
    m.semi_sync.master_enabled = true;
    m.semi_sync.master_status = true;
    m.semi_sync.master_wait_for_replica_count = 1;
    m.semi_sync.master_wait_sessions = 1;
    let healthy = |k: &str, id: u32| {
        let mut r = replica(k, id, 10, 10);
        r.replication.as_mut().unwrap().io_running = ThreadState::Yes;
        r
    };
    let mut a = healthy("a:1", 2);
    a.reachable = false;
    a.semi_sync.replica_enabled = true;
    a.semi_sync.replica_status = true;
    let mut n = healthy("n:1", 4);
    n.semi_sync.replica_enabled = true;
    let mut policy = Policy {
        enforce_exact_semi_sync_replicas: true,
        ..Policy::default()
    };
    policy.instance_mut(&key("n:1")).promotion_rule = PromotionRule::MustNot;
    (vec![m, a, healthy("b:1", 3), n], policy)
}

async fn run_semi_sync(fake: &Fake, policy: Policy, instances: &[Instance]) -> RecoveryRecord {
    let analysis = crate::topology::analysis::analyze(instances, &policy, 0)
        .into_iter()
        .find(|a| a.instance == key("m:1"))
        .unwrap();
    assert_eq!(analysis.code, AnalysisCode::LockedSemiSyncMaster);
    assert!(analysis.actionable);
    let ctx = context(policy);
    let guard = Guard::new(&fake.log);
    let exec = Executor {
        sql: fake,
        ctx: &ctx,
        guard: &guard,
    };
    semi_sync::run(&exec, instances, &analysis).await
}

#[tokio::test]
async fn a_locked_semi_sync_master_gets_a_new_acknowledger_then_its_commits_released() {
    let log = Log::default();
    let (instances, policy) = locked_semi_sync();
    let fake = Fake::new(&instances, &log);
    let rec = run_semi_sync(&fake, policy, &instances).await;
    assert_eq!(rec.kind, RecoveryKind::SemiSyncReplicas);
    assert_eq!(rec.outcome, Outcome::Recovered, "{rec:#?}");
    assert_eq!(rec.failed, key("m:1"));
    assert_eq!(
        kinds(&rec),
        [
            "enableSemiSync b:1",
            "releaseWaitingCommits m:1",
            "disableSemiSync n:1"
        ]
    );
    assert_eq!(
        log_of(&log),
        [
            "guard enableSemiSync b:1",
            "semi_sync=1 b:1",
            "guard releaseWaitingCommits m:1",
            "release m:1",
            "guard disableSemiSync n:1",
            "semi_sync=0 n:1",
        ],
        "the surplus is turned off only once the master is released"
    );
    assert!(
        rec.steps[1].detail.contains("0 commit(s) waiting"),
        "{rec:#?}"
    );
}

#[tokio::test]
async fn a_replica_that_cannot_turn_semi_sync_on_stops_the_recovery_before_any_turns_off() {
    let log = Log::default();
    let (instances, policy) = locked_semi_sync();
    let mut fake = Fake::new(&instances, &log);
    fake.failing.insert("semi_sync=1 b:1".into());
    let rec = run_semi_sync(&fake, policy, &instances).await;
    assert_eq!(rec.outcome, Outcome::Failed);
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .contains("enableSemiSync on b:1 failed"),
        "{rec:#?}"
    );
    assert!(
        !log_of(&log)
            .iter()
            .any(|c| c.starts_with("semi_sync=0") || c.starts_with("release")),
        "{:?}",
        log_of(&log)
    );
}

#[tokio::test]
async fn a_locked_master_nobody_can_acknowledge_for_is_left_as_it_is_and_the_record_says_why() {
    let log = Log::default();
    let (mut instances, policy) = locked_semi_sync();
    instances[2].reachable = false;
    let fake = Fake::new(&instances, &log);
    let rec = run_semi_sync(&fake, policy, &instances).await;
    assert_eq!(rec.outcome, Outcome::Failed);
    assert!(rec.steps.is_empty());
    let error = rec.error.unwrap();
    assert!(
        error.contains("b:1 unreachable") && error.contains("n:1 must_not"),
        "{error}"
    );
    assert!(log_of(&log).is_empty());
}

/// The planned steps a run put to its guard, in order: what the executor ran.
fn guarded(log: &Log) -> Vec<String> {
    log_of(log)
        .iter()
        .filter_map(|l| l.strip_prefix("guard ").map(str::to_string))
        .collect()
}

fn described(steps: &[PlannedStep]) -> Vec<String> {
    steps
        .iter()
        .map(|s| format!("{} {}", s.kind(), s.instance()))
        .collect()
}

#[tokio::test]
async fn a_dry_run_plans_exactly_the_steps_the_executor_runs() {
    // A donor (must_not, most advanced), a lost errant replica, and a hand-over to a
    // preferred one; then the plainest failover.
    let mut errant = replica("e:1", 5, 9, 9);
    errant.gtid.binlog_state = "0-1-9,0-5-3".into();
    let mut rich = Policy::default();
    rich.instance_mut(&key("x:1")).promotion_rule = PromotionRule::MustNot;
    rich.instance_mut(&key("b:1")).promotion_rule = PromotionRule::Prefer;
    let cases = [
        (
            rich,
            vec![
                dead_master(),
                replica("a:1", 2, 10, 12),
                replica("b:1", 3, 10, 10),
                replica("x:1", 4, 10, 14),
                errant,
            ],
        ),
        (
            Policy::default(),
            vec![
                dead_master(),
                replica("a:1", 2, 10, 12),
                replica("b:1", 3, 10, 10),
            ],
        ),
    ];
    for (policy, instances) in cases {
        let analysis = crate::topology::analysis::analyze(&instances, &policy, 0);
        let dry = dry_run::recover(&instances, &analysis, &policy, 0);
        assert_eq!(dry.verdict, dry_run::Verdict::Plan, "{dry:#?}");
        let mut planned = described(&dry.steps);
        if let Some(h) = &dry.hand_over {
            planned.extend(described(&h.steps));
        }

        let log = Log::default();
        let fake = Fake::new(&instances, &log);
        let rec = run_dead_master(&fake, policy, &instances, &Guard::new(&log), None).await;
        assert_eq!(rec.outcome, Outcome::Recovered, "{rec:#?}");
        assert_eq!(planned, guarded(&log));
        assert_eq!(dry.successor, rec.successor);
        assert_eq!(dry.lost_replicas, rec.lost_replicas);
    }

    // Switchover, to korc's choice and to a named replica.
    let mut p = replica("m:1", 1, 20, 20);
    p.replication = None;
    p.read_only = Some(false);
    let instances = [p, replica("a:1", 2, 20, 20), replica("b:1", 3, 19, 19)];
    for target in [None, Some(key("b:1"))] {
        let dry = dry_run::switchover(&instances, target.as_ref(), &Policy::default(), 0);
        assert_eq!(dry.verdict, dry_run::Verdict::Plan, "{dry:#?}");
        let log = Log::default();
        let fake = Fake::new(&instances, &log);
        let ctx = context(Policy::default());
        let exec = Executor {
            sql: &fake,
            ctx: &ctx,
            guard: &Guard::new(&log),
        };
        let rec = takeover::run(&exec, &instances, target.as_ref()).await;
        assert_eq!(rec.outcome, Outcome::Recovered, "{rec:#?}");
        assert_eq!(described(&dry.steps), guarded(&log), "{target:?}");
        assert_eq!(dry.successor, rec.successor);
    }
}

#[tokio::test]
async fn a_switchover_to_an_excluded_replica_is_refused_before_anything_changes() {
    let mut p = replica("m:1", 1, 20, 20);
    p.replication = None;
    p.read_only = Some(false);
    let instances = [p, replica("a:1", 2, 20, 20), replica("b:1", 3, 20, 20)];
    let mut policy = Policy::default();
    policy.instance_mut(&key("b:1")).promotion_rule = PromotionRule::MustNot;
    let log = Log::default();
    let fake = Fake::new(&instances, &log);
    let ctx = context(policy.clone());
    let exec = Executor {
        sql: &fake,
        ctx: &ctx,
        guard: &Guard::new(&log),
    };
    let rec = takeover::run(&exec, &instances, Some(&key("b:1"))).await;
    assert_eq!(rec.outcome, Outcome::Failed);
    let error = rec.error.unwrap();
    assert_eq!(
        error,
        "b:1 cannot be promoted: its promotion rule is must_not"
    );
    assert!(log_of(&log).is_empty(), "nothing ran: {:?}", log_of(&log));
    let dry = dry_run::switchover(&instances, Some(&key("b:1")), &policy, 0);
    assert_eq!(dry.verdict, dry_run::Verdict::Refused);
    assert_eq!(dry.reason.as_deref(), Some(error.as_str()));
    assert!(dry.steps.is_empty());
}

#[tokio::test]
async fn a_dry_run_of_a_locked_semi_sync_master_plans_the_steps_the_executor_runs() {
    let (instances, policy) = locked_semi_sync();
    let analysis = crate::topology::analysis::analyze(&instances, &policy, 0);
    let dry = dry_run::recover(&instances, &analysis, &policy, 0);
    assert_eq!(dry.verdict, dry_run::Verdict::Plan, "{dry:#?}");
    assert_eq!(dry.kind, Some(RecoveryKind::SemiSyncReplicas));
    assert!(
        dry.notes.iter().any(|n| n.contains("n:1")),
        "{:?}",
        dry.notes
    );
    let log = Log::default();
    let fake = Fake::new(&instances, &log);
    run_semi_sync(&fake, policy, &instances).await;
    assert_eq!(described(&dry.steps), guarded(&log));
}
