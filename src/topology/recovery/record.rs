//! The recovery record: what a recovery did, step by step, and how it ended.

use super::super::analysis::Analysis;
use super::super::candidate::CandidateChoice;
use super::super::instance::InstanceKey;
use super::super::probe::now_ms;
use super::error::RecoveryError;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What kind of recovery ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoveryKind {
    /// Replacing a dead master (orchestrator's checkAndRecoverDeadMaster).
    DeadMaster,
    /// Moving the replicas of a dead intermediate master.
    DeadIntermediateMaster,
    /// A planned switchover (orchestrator's graceful master takeover).
    GracefulTakeover,
    /// Making a read-only master writable (orchestrator's RecoverNonWriteableMaster).
    NonWriteableMaster,
    /// Changing which replicas acknowledge a semi-sync master's commits
    /// (orchestrator's RecoverLockedSemiSyncMaster and EnforceExactSemiSyncReplicas).
    SemiSyncReplicas,
}

/// A step of a recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepKind {
    /// Re-read the topology before changing anything (an earlier recovery may have
    /// got part of the way).
    ReadTopology,
    /// Stop receiving from the dead master, so positions stop moving.
    StopReplicaIo,
    /// Re-read the replicas' positions.
    ReadPositions,
    /// Choose the replica to promote.
    ChooseCandidate,
    /// Let the candidate fetch transactions it lacks from a more advanced replica.
    CatchUpFromDonor,
    /// Wait for the candidate to apply its relay log.
    WaitRelayLogApplied,
    /// Make the old primary read-only (switchover).
    SetReadOnly,
    /// Wait for the target to apply everything the old primary wrote.
    WaitCatchUp,
    /// Turn the candidate into a writable master.
    Promote,
    /// Point a replica at the new primary.
    Repoint,
    /// Make the old primary a replica of the new one (switchover).
    DemoteOldPrimary,
    /// Best-effort read_only on the failed master, in case it is alive.
    FenceOldPrimary,
    /// Detach a lost replica (`//host`).
    DetachLostReplica,
    /// Hand the primary role over to a better-ruled replica.
    HandOver,
    /// Undo a switchover that could not complete.
    Rollback,
    /// Turn semi-sync on in a replica and restart its IO thread, so that it
    /// acknowledges the master's commits.
    EnableSemiSync,
    /// Turn semi-sync off in a replica and restart its IO thread.
    DisableSemiSync,
    /// Have the master send an event its semi-sync replicas acknowledge, releasing
    /// the commits that waited.
    ReleaseWaitingCommits,
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ReadTopology => "readTopology",
            Self::StopReplicaIo => "stopReplicaIo",
            Self::ReadPositions => "readPositions",
            Self::ChooseCandidate => "chooseCandidate",
            Self::CatchUpFromDonor => "catchUpFromDonor",
            Self::WaitRelayLogApplied => "waitRelayLogApplied",
            Self::SetReadOnly => "setReadOnly",
            Self::WaitCatchUp => "waitCatchUp",
            Self::Promote => "promote",
            Self::Repoint => "repoint",
            Self::DemoteOldPrimary => "demoteOldPrimary",
            Self::FenceOldPrimary => "fenceOldPrimary",
            Self::DetachLostReplica => "detachLostReplica",
            Self::HandOver => "handOver",
            Self::Rollback => "rollback",
            Self::EnableSemiSync => "enableSemiSync",
            Self::DisableSemiSync => "disableSemiSync",
            Self::ReleaseWaitingCommits => "releaseWaitingCommits",
        })
    }
}

/// One executed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// What the step does.
    pub kind: StepKind,
    /// The instance it acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceKey>,
    /// When it started (Unix milliseconds).
    pub started_at_ms: u64,
    /// How long it took.
    pub duration_micros: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it found or why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How a recovery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// A successor took over.
    Recovered,
    /// The recovery stopped; `error` and the last step say where.
    Failed,
    /// A switchover was undone: the old primary is writable again.
    RolledBack,
    /// The caller's step guard stopped the recovery between two steps;
    /// `stoppedBefore` says before which.
    Abandoned,
}

/// The step a stopped recovery did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoppedBefore {
    /// What the step would have done.
    pub kind: StepKind,
    /// The instance it would have acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceKey>,
    /// Why the guard stopped it.
    pub reason: String,
}

/// The record of one recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryRecord {
    /// Unique id.
    pub id: String,
    /// Kind of recovery.
    pub kind: RecoveryKind,
    /// The analysis that caused it (none for a requested switchover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// The failed (or demoted) instance.
    pub failed: InstanceKey,
    /// The instance that took over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<InstanceKey>,
    /// Replicas left out of the new topology.
    pub lost_replicas: Vec<InstanceKey>,
    /// Candidate choice, with the ranking and exclusions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<CandidateChoice>,
    /// Steps in execution order.
    pub steps: Vec<Step>,
    /// Start (Unix milliseconds).
    pub started_at_ms: u64,
    /// End (Unix milliseconds).
    pub ended_at_ms: u64,
    /// From the start until the successor accepted writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable_after_micros: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it failed, rolled back or was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For an abandoned recovery, the step it stopped before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_before: Option<StoppedBefore>,
}

/// A moment to measure a step from: monotonic for the duration, wall clock for the
/// record.
pub fn clock() -> (Instant, u64) {
    (Instant::now(), now_ms())
}

/// Builds a record while a recovery runs.
#[derive(Debug)]
pub struct Recorder {
    /// The record so far.
    pub record: RecoveryRecord,
    started: Instant,
}

impl Recorder {
    /// Starts a record.
    pub fn start(kind: RecoveryKind, failed: InstanceKey, analysis: Option<Analysis>) -> Self {
        let now = now_ms();
        Self {
            record: RecoveryRecord {
                id: uuid::Uuid::new_v4().to_string(),
                kind,
                analysis,
                failed,
                successor: None,
                lost_replicas: Vec::new(),
                candidate: None,
                steps: Vec::new(),
                started_at_ms: now,
                ended_at_ms: now,
                writable_after_micros: None,
                outcome: Outcome::Failed,
                error: None,
                stopped_before: None,
            },
            started: Instant::now(),
        }
    }

    /// Records a finished step.
    pub fn step<T, E: std::fmt::Display>(
        &mut self,
        kind: StepKind,
        instance: Option<&InstanceKey>,
        since: (Instant, u64),
        result: &Result<T, E>,
        detail: impl Into<String>,
    ) {
        let mut detail = detail.into();
        if let Err(e) = result {
            detail = if detail.is_empty() {
                e.to_string()
            } else {
                format!("{detail}: {e}")
            };
        }
        self.record.steps.push(Step {
            kind,
            instance: instance.cloned(),
            started_at_ms: since.1,
            duration_micros: since.0.elapsed().as_micros() as u64,
            ok: result.is_ok(),
            detail,
        });
    }

    /// Notes that the successor accepts writes now.
    pub fn writable(&mut self) {
        self.record.writable_after_micros = Some(self.started.elapsed().as_micros() as u64);
    }

    /// Marks a replica lost (once).
    pub fn lost(&mut self, key: &InstanceKey) {
        if !self.record.lost_replicas.contains(key) {
            self.record.lost_replicas.push(key.clone());
        }
    }

    /// Ends the record with the result of the recovery's steps.
    pub fn end(self, result: Result<(), RecoveryError>) -> RecoveryRecord {
        match result {
            Ok(()) => self.finish(Outcome::Recovered, None),
            Err(e) => {
                let stopped_before = match &e {
                    RecoveryError::Abandoned {
                        kind,
                        instance,
                        reason,
                    } => Some(StoppedBefore {
                        kind: *kind,
                        instance: Some(instance.clone()),
                        reason: reason.clone(),
                    }),
                    _ => None,
                };
                let outcome = if stopped_before.is_some() {
                    Outcome::Abandoned
                } else {
                    Outcome::Failed
                };
                let mut record = self.finish(outcome, Some(e.to_string()));
                record.stopped_before = stopped_before;
                record
            }
        }
    }

    /// Ends the record.
    pub fn finish(mut self, outcome: Outcome, error: Option<String>) -> RecoveryRecord {
        self.record.outcome = outcome;
        self.record.error = error;
        self.record.ended_at_ms = now_ms();
        self.record
    }
}
