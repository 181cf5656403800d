//! orchestrator's replication analysis as a pure function of probe results and policy.
//!
//! Each master, co-master and intermediate master is analysed with orchestrator's
//! ordered rule chain (first match wins; the reference's §1.2 table, rules 1–29, in the
//! same order). Group Replication rules are left out: korc manages asynchronous and
//! semi-synchronous replication only.
//!
//! Deliberate differences from orchestrator, each marked `korc:` below:
//! - replicas, intermediate masters included, get analyses of their own for problems
//!   orchestrator ignores: `ErrantGTIDDetected`, `ReplicationBroken`,
//!   `ReplicationStopped`, `ConnectedToWrongSource`, `ReplicaIsWritable`,
//!   `UnreachableReplica`, and `SplitBrain` for a second writable master;
//! - structures orchestrator's rules do not see are reported: a cluster whose topmost
//!   instance replicates from outside it (`ClusterReplicatesFromOutside`), a reachable
//!   read-only instance replicating from nothing beside a writable primary
//!   (`DetachedReplica`, not a second master), and replicas replicating from each
//!   other in a ring beside a writable primary (`ReplicationRing`, not co-masters);
//! - a semi-sync master is `LockedSemiSyncMaster` as soon as a session is waiting for an
//!   acknowledgement (`Rpl_semi_sync_master_wait_sessions`), without orchestrator's
//!   wait for stale binlog coordinates;
//! - a read-only master with replicating replicas is always reported as
//!   `NoWriteableMasterStructureWarning`; it is actionable only with
//!   `recover_non_writeable_master`, as in orchestrator;
//! - a replica failing to connect to a source that is itself dead or unreachable is
//!   reported under its source's analysis, not as `FirstTierReplicaFailingToConnectToMaster`.

use super::cluster::ClusterView;
use super::instance::{Instance, InstanceKey, ThreadState};
use super::policy::Policy;
use serde::{Deserialize, Serialize};

/// Analysis codes. orchestrator's names are verbatim; korc's additions are marked.
#[allow(missing_docs)] // the names are orchestrator's vocabulary; see `description`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AnalysisCode {
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
    /// korc: a replica holds transactions its source does not have.
    ErrantGTIDDetected,
    /// korc: a replication thread stopped with an error.
    ReplicationBroken,
    /// korc: a replication thread was stopped without an error.
    ReplicationStopped,
    /// korc: a replica replicates from an address outside the cluster.
    ConnectedToWrongSource,
    /// korc: a replica accepts writes.
    ReplicaIsWritable,
    /// korc: korc cannot reach a replica whose source it can reach.
    UnreachableReplica,
    /// korc: a second master accepts writes besides the primary.
    SplitBrain,
    /// korc: the cluster has no master of its own: its topmost instance replicates
    /// from an address outside the cluster.
    ClusterReplicatesFromOutside,
    /// korc: a reachable, read-only instance replicates from nothing while the
    /// cluster has a writable primary.
    DetachedReplica,
    /// korc: instances replicate from each other in a ring while the cluster has a
    /// writable primary elsewhere.
    ReplicationRing,
}

impl AnalysisCode {
    /// orchestrator's dispatch (reference §1.3): codes with a recovery handler. As in
    /// orchestrator, some act only when the policy asks: a read-only master with
    /// `recover_non_writeable_master`, a locked semi-sync master with
    /// `recover_locked_semi_sync_master` or `enforce_exact_semi_sync_replicas` (both
    /// off by default: korc does not change the set of semi-sync replicas unasked).
    /// `LockedSemiSyncMasterHypothesis` has no handler in orchestrator either: no
    /// commit waits yet.
    pub fn has_recovery(self) -> bool {
        use AnalysisCode::*;
        matches!(
            self,
            DeadMaster
                | DeadMasterAndSomeReplicas
                | DeadIntermediateMaster
                | DeadIntermediateMasterAndSomeReplicas
                | DeadIntermediateMasterWithSingleReplicaFailingToConnect
                | AllIntermediateMasterReplicasFailingToConnectOrDead
                | DeadCoMaster
                | DeadCoMasterAndSomeReplicas
                | NoWriteableMasterStructureWarning
                | LockedSemiSyncMaster
                | MasterWithTooManySemiSyncReplicas
        )
    }

    /// The failure is about which replicas acknowledge a semi-sync master's commits:
    /// the recovery changes replicas' semi-sync setting, never the primary.
    pub fn is_semi_sync_failure(self) -> bool {
        matches!(
            self,
            AnalysisCode::LockedSemiSyncMaster | AnalysisCode::MasterWithTooManySemiSyncReplicas
        )
    }

    /// The failure is of a master (as opposed to an intermediate master or replica).
    pub fn is_master_failure(self) -> bool {
        use AnalysisCode::*;
        matches!(
            self,
            DeadMaster | DeadMasterAndSomeReplicas | DeadCoMaster | DeadCoMasterAndSomeReplicas
        )
    }

    /// What the code means, in a sentence.
    pub fn description(self) -> &'static str {
        use AnalysisCode::*;
        match self {
            NoProblem => "No problem found",
            DeadMasterWithoutReplicas => "Master cannot be reached and has no replicas",
            DeadMaster => "Master cannot be reached and none of its replicas is replicating",
            DeadMasterAndReplicas => {
                "Master cannot be reached and none of its replicas can be reached"
            }
            DeadMasterAndSomeReplicas => {
                "Master cannot be reached; some of its replicas are unreachable and none of them is replicating"
            }
            UnreachableMasterWithLaggingReplicas => {
                "Master cannot be reached and all of its replicas are lagging"
            }
            UnreachableMaster => {
                "Master cannot be reached but its replicas are still replicating from it"
            }
            LockedSemiSyncMaster => {
                "Semi-sync master is locked: commits wait for acknowledgements no replica can send"
            }
            LockedSemiSyncMasterHypothesis => {
                "Semi-sync master has fewer semi-sync replicas than it waits for"
            }
            MasterWithTooManySemiSyncReplicas => {
                "Semi-sync master has more semi-sync replicas than it waits for"
            }
            NoWriteableMasterStructureWarning => {
                "Master is read-only while its replicas replicate from it"
            }
            MasterSingleReplicaNotReplicating => {
                "Master is reachable but its single replica is not replicating"
            }
            MasterSingleReplicaDead => {
                "Master is reachable but its single replica cannot be reached"
            }
            AllMasterReplicasNotReplicating => {
                "Master is reachable but none of its replicas is replicating"
            }
            AllMasterReplicasNotReplicatingOrDead => {
                "Master is reachable but none of its replicas is replicating; some cannot be reached"
            }
            DeadCoMaster => "Co-master cannot be reached and none of its replicas is replicating",
            DeadCoMasterAndSomeReplicas => {
                "Co-master cannot be reached; some of its replicas are unreachable"
            }
            UnreachableCoMaster => {
                "Co-master cannot be reached but its replicas are still replicating"
            }
            AllCoMasterReplicasNotReplicating => {
                "Co-master is reachable but none of its replicas is replicating"
            }
            DeadIntermediateMasterWithSingleReplicaFailingToConnect => {
                "Intermediate master cannot be reached and its single replica is failing to connect to it"
            }
            DeadIntermediateMasterWithSingleReplica => {
                "Intermediate master cannot be reached and its single replica is not replicating"
            }
            DeadIntermediateMaster => {
                "Intermediate master cannot be reached and none of its replicas is replicating"
            }
            DeadIntermediateMasterAndSomeReplicas => {
                "Intermediate master cannot be reached; some of its replicas are unreachable and none replicates"
            }
            DeadIntermediateMasterAndReplicas => {
                "Intermediate master and all of its replicas cannot be reached"
            }
            UnreachableIntermediateMasterWithLaggingReplicas => {
                "Intermediate master cannot be reached and all of its replicas are lagging"
            }
            UnreachableIntermediateMaster => {
                "Intermediate master cannot be reached but its replicas are replicating"
            }
            AllIntermediateMasterReplicasFailingToConnectOrDead => {
                "Intermediate master is reachable but its replicas are failing to connect to it or are dead"
            }
            AllIntermediateMasterReplicasNotReplicating => {
                "Intermediate master is reachable but none of its replicas is replicating"
            }
            FirstTierReplicaFailingToConnectToMaster => {
                "Replica of the master is failing to connect to it"
            }
            ErrantGTIDDetected => {
                "Replica has transactions its source does not have (errant GTIDs)"
            }
            ReplicationBroken => "Replica's replication stopped with an error",
            ReplicationStopped => "Replica's replication is stopped",
            ConnectedToWrongSource => {
                "Replica replicates from an instance outside the cluster, which has a master of its own"
            }
            ReplicaIsWritable => "Replica is not read-only",
            UnreachableReplica => "Replica cannot be reached",
            SplitBrain => "More than one master accepts writes",
            ClusterReplicatesFromOutside => {
                "The cluster's topmost instance replicates from an instance outside the cluster"
            }
            DetachedReplica => {
                "Instance replicates from nothing while the cluster has a writable primary"
            }
            ReplicationRing => {
                "Instances replicate from each other in a ring, cut off from the writable primary"
            }
        }
    }
}

/// Informational findings appended to an analysis, whatever its code.
#[allow(missing_docs)] // orchestrator's names, explained in the README
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StructureWarning {
    NoLoggingReplicas,
    NoFailoverSupport,
    #[serde(rename = "Statement+Mixed")]
    StatementAndMixedLoggingReplicas,
    #[serde(rename = "Statement+Row")]
    StatementAndRowLoggingReplicas,
    #[serde(rename = "Mixed+Row")]
    MixedAndRowLoggingReplicas,
    MultipleMajorVersionsLoggingReplicas,
    DifferentGTIDModes,
    ErrantGTID,
    NoWriteableMaster,
    NotEnoughValidSemiSyncReplicas,
    /// korc: more than one instance of the cluster is writable.
    MultipleWritableInstances,
    /// korc: the replica is writable (secondary to its main code).
    ReplicaIsWritable,
    /// korc: the replica replicates from outside the cluster (secondary).
    ConnectedToWrongSource,
}

/// The counts behind an analysis (orchestrator's evidence).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Evidence {
    /// Direct replicas.
    pub replicas: u32,
    /// Replicas korc can reach.
    pub valid_replicas: u32,
    /// Reachable replicas with both threads running.
    pub valid_replicating_replicas: u32,
    /// Reachable replicas whose IO thread fails to connect to this instance.
    pub replicas_failing_to_connect: u32,
    /// Replicas lagging more than the reasonable lag.
    pub lagging_replicas: u32,
    /// Replicas with a configured delay.
    pub delayed_replicas: u32,
    /// Replicas in downtime.
    pub downtimed_replicas: u32,
}

/// The analysis of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    /// Analysis code.
    pub code: AnalysisCode,
    /// The analysed instance.
    pub instance: InstanceKey,
    /// Human-readable description.
    pub description: String,
    /// A recovery exists for this code and nothing (such as downtime) suppresses it.
    pub actionable: bool,
    /// The instance, or all replicas of a replica-centric code, are downtimed.
    pub skippable_due_to_downtime: bool,
    /// The instance has no source.
    pub is_master: bool,
    /// The instance is a co-master.
    pub is_co_master: bool,
    /// korc reached the instance on its last probe.
    pub last_check_valid: bool,
    /// The last failed probe got past its first query.
    pub last_check_partial_success: bool,
    /// Counts.
    pub evidence: Evidence,
    /// Direct replicas.
    pub replicas: Vec<InstanceKey>,
    /// Structure warnings.
    pub structure_warnings: Vec<StructureWarning>,
    /// Errant GTIDs, for `ErrantGTIDDetected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errant_gtids: Option<String>,
}

/// Analyses a cluster: one entry per master, co-master and intermediate master, and
/// one per replica with a problem of its own. `now_ms` judges downtime expiry.
pub fn analyze(instances: &[Instance], policy: &Policy, now_ms: u64) -> Vec<Analysis> {
    use AnalysisCode::*;
    let view = ClusterView::new(instances);
    let writable: Vec<usize> = (0..instances.len())
        .filter(|&i| instances[i].reachable && instances[i].is_writable())
        .collect();
    let primary = view.primary();
    let writable_primary = primary.filter(|p| writable.contains(p));
    let errant = errant_transactions(&view);
    let mut out: Vec<Analysis> = Vec::new();
    for i in 0..instances.len() {
        let inst = &instances[i];
        let analysed_as_source =
            inst.is_master() || !view.replicas_of(i).is_empty() || view.is_co_master(i);
        let mut a = source_analysis(&view, i, policy, now_ms, &errant);
        let in_ring = view.is_in_ring(i);
        if in_ring && writable_primary.is_some() {
            // korc: co-master and intermediate-master rules assume the ring is the
            // cluster's top; beside a writable primary it is a ring of lost replicas.
            a.code = ReplicationRing;
            a.skippable_due_to_downtime = policy.is_downtimed(&inst.key, now_ms);
        } else if a.code == NoProblem && (!analysed_as_source || (!inst.is_master() && !in_ring)) {
            // A replica, intermediate masters included, with no problem of
            // orchestrator's kind: korc's checks.
            a = replica_analysis(&view, i, policy, now_ms, &errant, a);
        } else if a.code == NoProblem
            && inst.is_master()
            && inst.reachable
            && !inst.is_writable()
            && view.replicas_of(i).is_empty()
            && writable_primary.is_some_and(|p| p != i)
        {
            a.code = DetachedReplica;
            a.skippable_due_to_downtime = policy.is_downtimed(&inst.key, now_ms);
        }
        if view.has_foreign_source(i) {
            a.structure_warnings
                .push(StructureWarning::ConnectedToWrongSource);
        }
        if a.code == FirstTierReplicaFailingToConnectToMaster
            && view.source_of(i).is_some_and(|s| !instances[s].reachable)
        {
            continue; // korc: reported under the dead source's analysis
        }
        if writable.len() > 1 {
            a.structure_warnings
                .push(StructureWarning::MultipleWritableInstances);
            if inst.is_master()
                && Some(i) != primary
                && writable.contains(&i)
                && a.code == NoProblem
            {
                a.code = SplitBrain;
            }
        }
        if a.code != NoProblem || analysed_as_source {
            if matches!(
                a.code,
                ConnectedToWrongSource | ClusterReplicatesFromOutside
            ) {
                a.structure_warnings
                    .retain(|&w| w != StructureWarning::ConnectedToWrongSource);
            }
            a.structure_warnings.sort();
            a.structure_warnings.dedup();
            a.description = a.code.description().to_string();
            a.actionable = actionable(&a, policy);
            out.push(a);
        }
    }
    out
}

/// Per instance, the errant transactions it holds against its source, when both are
/// reachable and it has any. Every GTID history is parsed once, so a cluster of n
/// instances costs n parses and n subtractions, however large the sets.
fn errant_transactions(view: &ClusterView<'_>) -> Vec<Option<String>> {
    let instances = view.instances;
    let histories: Vec<_> = instances
        .iter()
        .map(|i| i.reachable.then(|| i.gtid_history()).flatten())
        .collect();
    (0..instances.len())
        .map(|r| {
            let s = view.source_of(r)?;
            histories[r]
                .as_ref()?
                .errant_against(histories[s].as_ref()?, instances[s].server_uuid.as_deref())
                .filter(|e| !e.is_empty())
        })
        .collect()
}

fn actionable(a: &Analysis, policy: &Policy) -> bool {
    use AnalysisCode::*;
    let enabled = match a.code {
        NoWriteableMasterStructureWarning => policy.recover_non_writeable_master,
        LockedSemiSyncMaster => {
            policy.recover_locked_semi_sync_master || policy.enforce_exact_semi_sync_replicas
        }
        code => code.has_recovery(),
    };
    enabled && !a.skippable_due_to_downtime
}

fn source_analysis(
    view: &ClusterView<'_>,
    i: usize,
    policy: &Policy,
    now_ms: u64,
    errant: &[Option<String>],
) -> Analysis {
    use AnalysisCode::*;
    let m = &view.instances[i];
    let replicas: Vec<&Instance> = view
        .replicas_of(i)
        .iter()
        .map(|&r| &view.instances[r])
        .collect();
    let ev = evidence(&replicas, policy, now_ms);
    let (r, v, vr, f, l, d) = (
        ev.replicas,
        ev.valid_replicas,
        ev.valid_replicating_replicas,
        ev.replicas_failing_to_connect,
        ev.lagging_replicas,
        ev.delayed_replicas,
    );
    let lcv = m.reachable;
    let ps = m.partial_success;
    let is_master = m.is_master();
    let is_co_master =
        view.is_co_master(i) || view.replicas_of(i).iter().any(|&r| view.is_co_master(r));
    let ss = &m.semi_sync;
    let semi_sync_short = ss.master_enabled
        && ss.master_status
        && ss.master_wait_for_replica_count > 0
        && ss.master_clients < ss.master_wait_for_replica_count;
    let failing_to_connect = m
        .replication
        .as_ref()
        .is_some_and(|rep| rep.is_failing_to_connect());

    let code = if is_master && !lcv && r == 0 {
        DeadMasterWithoutReplicas
    } else if is_master && !lcv && v == r && vr == 0 {
        DeadMaster
    } else if is_master && !lcv && r > 0 && v == 0 && vr == 0 {
        DeadMasterAndReplicas
    } else if is_master && !lcv && v < r && v > 0 && vr == 0 {
        DeadMasterAndSomeReplicas
    } else if is_master && !lcv && l == r && d < r && vr > 0 {
        UnreachableMasterWithLaggingReplicas
    } else if is_master && !lcv && v > 0 && vr > 0 && (!ps || f > 0) {
        // Rules 6 and 7: after a partial success, only with a replica failing to
        // connect (without one, orchestrator deliberately reports no problem).
        UnreachableMaster
    } else if is_master && semi_sync_short {
        // korc: a waiting session is direct evidence of the lock.
        if ss.master_wait_sessions > 0 {
            LockedSemiSyncMaster
        } else {
            LockedSemiSyncMasterHypothesis
        }
    } else if policy.enforce_exact_semi_sync_replicas
        && is_master
        && ss.master_enabled
        && ss.master_status
        && ss.master_wait_for_replica_count > 0
        && ss.master_clients > ss.master_wait_for_replica_count
    {
        MasterWithTooManySemiSyncReplicas
    } else if is_master && lcv && m.read_only == Some(true) && vr > 0 {
        NoWriteableMasterStructureWarning
    } else if is_master && lcv && r == 1 && v == r && vr == 0 {
        MasterSingleReplicaNotReplicating
    } else if is_master && lcv && r == 1 && v == 0 {
        MasterSingleReplicaDead
    } else if is_master && lcv && r > 1 && v == r && vr == 0 {
        AllMasterReplicasNotReplicating
    } else if is_master && lcv && r > 1 && v < r && v > 0 && vr == 0 {
        AllMasterReplicasNotReplicatingOrDead
    } else if is_co_master && !lcv && r > 0 && v == r && vr == 0 {
        DeadCoMaster
    } else if is_co_master && !lcv && r > 0 && v < r && v > 0 && vr == 0 {
        DeadCoMasterAndSomeReplicas
    } else if is_co_master && !lcv && !ps && v > 0 && vr > 0 {
        UnreachableCoMaster
    } else if is_co_master && lcv && r > 0 && vr == 0 {
        AllCoMasterReplicasNotReplicating
    } else if !is_master && !lcv && r == 1 && v == r && f == r && vr == 0 {
        DeadIntermediateMasterWithSingleReplicaFailingToConnect
    } else if !is_master && !lcv && r == 1 && v == r && vr == 0 {
        DeadIntermediateMasterWithSingleReplica
    } else if !is_master && !lcv && r > 1 && v == r && vr == 0 {
        DeadIntermediateMaster
    } else if !is_master && !lcv && v < r && v > 0 && vr == 0 {
        DeadIntermediateMasterAndSomeReplicas
    } else if !is_master && !lcv && r > 0 && v == 0 {
        DeadIntermediateMasterAndReplicas
    } else if !is_master && !lcv && r > 0 && l == r && d < r && vr > 0 {
        UnreachableIntermediateMasterWithLaggingReplicas
    } else if !is_master && !lcv && !ps && v > 0 && vr > 0 {
        UnreachableIntermediateMaster
    } else if !is_master && lcv && r > 1 && vr == 0 && f > 0 && f == v {
        AllIntermediateMasterReplicasFailingToConnectOrDead
    } else if !is_master && lcv && r > 0 && vr == 0 {
        AllIntermediateMasterReplicasNotReplicating
    } else if view.depth(i) == 1 && failing_to_connect {
        FirstTierReplicaFailingToConnectToMaster
    } else {
        NoProblem
    };

    let downtimed = policy.is_downtimed(&m.key, now_ms);
    let replica_centric = matches!(
        code,
        AllMasterReplicasNotReplicating
            | AllMasterReplicasNotReplicatingOrDead
            | MasterSingleReplicaDead
            | AllCoMasterReplicasNotReplicating
            | DeadIntermediateMasterWithSingleReplica
            | DeadIntermediateMasterWithSingleReplicaFailingToConnect
            | DeadIntermediateMasterAndReplicas
            | DeadIntermediateMasterAndSomeReplicas
            | AllIntermediateMasterReplicasFailingToConnectOrDead
            | AllIntermediateMasterReplicasNotReplicating
    );
    let skippable = downtimed || (replica_centric && r > 0 && ev.downtimed_replicas == r);

    Analysis {
        code,
        instance: m.key.clone(),
        description: String::new(),
        actionable: false,
        skippable_due_to_downtime: skippable,
        is_master,
        is_co_master,
        last_check_valid: lcv,
        last_check_partial_success: ps,
        evidence: ev,
        replicas: replicas.iter().map(|r| r.key.clone()).collect(),
        structure_warnings: structure_warnings(view, i, &replicas, policy, now_ms, errant),
        errant_gtids: None,
    }
}

fn evidence(replicas: &[&Instance], policy: &Policy, now_ms: u64) -> Evidence {
    let count = |f: &dyn Fn(&Instance) -> bool| replicas.iter().filter(|r| f(r)).count() as u32;
    let lag_limit = policy.reasonable_replication_lag_seconds;
    Evidence {
        replicas: replicas.len() as u32,
        valid_replicas: count(&|r| r.reachable),
        valid_replicating_replicas: count(&|r| r.reachable && r.is_replicating()),
        replicas_failing_to_connect: count(&|r| {
            r.reachable
                && r.replication
                    .as_ref()
                    .is_some_and(|rep| rep.is_failing_to_connect())
        }),
        lagging_replicas: count(&|r| r.lag_seconds().is_some_and(|l| l > lag_limit)),
        delayed_replicas: count(&|r| r.replication.as_ref().is_some_and(|rep| rep.sql_delay > 0)),
        downtimed_replicas: count(&|r| policy.is_downtimed(&r.key, now_ms)),
    }
}

fn structure_warnings(
    view: &ClusterView<'_>,
    i: usize,
    replicas: &[&Instance],
    policy: &Policy,
    now_ms: u64,
    errant: &[Option<String>],
) -> Vec<StructureWarning> {
    use StructureWarning::*;
    let m = &view.instances[i];
    let mut w = Vec::new();
    let valid: Vec<&&Instance> = replicas.iter().filter(|r| r.reachable).collect();
    let logging: Vec<&&Instance> = valid
        .iter()
        .copied()
        .filter(|r| r.is_logging_replica_updates())
        .collect();
    if m.is_master() && replicas.len() > 1 {
        if logging.is_empty() {
            w.push(NoLoggingReplicas);
        }
        let uses_gtid = |r: &Instance| {
            r.replication.as_ref().is_some_and(|rep| {
                !rep.using_gtid.is_empty() && !rep.using_gtid.eq_ignore_ascii_case("no")
            })
        };
        if valid.is_empty() || !valid.iter().all(|r| uses_gtid(r)) {
            w.push(NoFailoverSupport);
        }
    }
    if m.is_master() {
        let formats: Vec<String> = logging
            .iter()
            .filter_map(|r| r.binlog_format.clone())
            .map(|f| f.to_ascii_uppercase())
            .collect();
        let has = |f: &str| formats.iter().any(|x| x == f);
        if has("STATEMENT") && has("MIXED") {
            w.push(StatementAndMixedLoggingReplicas);
        }
        if has("STATEMENT") && has("ROW") {
            w.push(StatementAndRowLoggingReplicas);
        }
        if has("MIXED") && has("ROW") {
            w.push(MixedAndRowLoggingReplicas);
        }
        let mut majors: Vec<(u32, u32)> =
            logging.iter().filter_map(|r| r.major_version()).collect();
        majors.sort();
        majors.dedup();
        if majors.len() > 1 {
            w.push(MultipleMajorVersionsLoggingReplicas);
        }
        if m.reachable && m.read_only == Some(true) {
            w.push(NoWriteableMaster);
        }
    }
    if !replicas.is_empty()
        && let Some(mode) = m.gtid.mode.as_deref()
        && valid
            .iter()
            .any(|r| r.gtid.mode.as_deref().is_some_and(|rm| rm != mode))
    {
        w.push(DifferentGTIDModes);
    }
    if m.reachable
        && view
            .replicas_of(i)
            .iter()
            .any(|&r| !policy.is_downtimed(&view.instances[r].key, now_ms) && errant[r].is_some())
    {
        w.push(ErrantGTID);
    }
    let ss = &m.semi_sync;
    if ss.master_enabled
        && !ss.master_status
        && ss.master_wait_for_replica_count > 0
        && ss.master_clients < ss.master_wait_for_replica_count
    {
        w.push(NotEnoughValidSemiSyncReplicas);
    }
    w
}

/// korc's replica checks, for a replica orchestrator finds no problem with.
fn replica_analysis(
    view: &ClusterView<'_>,
    i: usize,
    policy: &Policy,
    now_ms: u64,
    errant: &[Option<String>],
    mut a: Analysis,
) -> Analysis {
    use AnalysisCode::*;
    let r = &view.instances[i];
    let source = view.source_of(i).map(|s| &view.instances[s]);
    if !r.reachable && source.is_some_and(|s| s.reachable) {
        a.code = UnreachableReplica;
        a.skippable_due_to_downtime = policy.is_downtimed(&r.key, now_ms);
        return a;
    }
    let Some(rep) = r.replication.as_ref().filter(|_| r.reachable) else {
        return a;
    };
    let errant = errant[i].clone();
    let mut findings = Vec::new();
    if errant.is_some() {
        findings.push(ErrantGTIDDetected);
    }
    let stopped = rep.io_running == ThreadState::No || rep.sql_running == ThreadState::No;
    let source_alive = source.is_none_or(|s| s.reachable);
    if stopped && source_alive {
        findings.push(if rep.last_io_errno != 0 || rep.last_sql_errno != 0 {
            ReplicationBroken
        } else {
            ReplicationStopped
        });
    }
    if view.has_foreign_source(i) {
        // Beside a master of the cluster's own, a source outside is the wrong one;
        // without one, the whole cluster hangs off that outside source.
        findings.push(if view.primary().is_some() {
            ConnectedToWrongSource
        } else {
            ClusterReplicatesFromOutside
        });
    }
    if r.is_writable() {
        findings.push(ReplicaIsWritable);
    }
    if let Some(&first) = findings.first() {
        a.code = first;
        a.errant_gtids = errant;
        a.skippable_due_to_downtime = policy.is_downtimed(&r.key, now_ms);
        // A source outside the cluster is a warning wherever it is not the code
        // (see `analyze`).
        if findings[1..].contains(&ReplicaIsWritable) {
            a.structure_warnings
                .push(StructureWarning::ReplicaIsWritable);
        }
    }
    a
}

#[cfg(test)]
mod tests;
