//! Why a recovery stopped: each message says where and why.

use super::record::StepKind;
use super::semi_sync::Unfit;
use crate::topology::candidate::{Exclusion, NoCandidate};
use crate::topology::instance::InstanceKey;
use std::time::Duration;

/// Why a recovery did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The failed instance is not among the instances given.
    #[error("{0} is not an instance of the cluster")]
    UnknownInstance(InstanceKey),
    /// A dead master without replicas: there is nothing to promote.
    #[error("{0} has no replicas to promote")]
    NoReplicas(InstanceKey),
    /// No replica may be promoted.
    #[error(transparent)]
    NoCandidate(#[from] NoCandidate),
    /// A dead intermediate master has neither a source nor a sibling left.
    #[error("{0} has no source or sibling to move its replicas to")]
    NoRelocationTarget(InstanceKey),
    /// Not one replica of a dead intermediate master could be moved.
    #[error("no replica of {0} could be moved")]
    NothingMoved(InstanceKey),
    /// A switchover needs a primary.
    #[error("the cluster has no primary")]
    NoPrimary,
    /// The primary of a switchover cannot be reached.
    #[error("the primary {0} cannot be reached")]
    PrimaryUnreachable(InstanceKey),
    /// The named switchover target is no reachable direct replica of the primary.
    #[error("{target} is not a reachable direct replica of the primary {primary}")]
    NotADirectReplica {
        /// The requested target.
        target: InstanceKey,
        /// The primary.
        primary: InstanceKey,
    },
    /// The named switchover target is a replica candidate choice excludes.
    #[error("{target} cannot be promoted: {exclusion}")]
    TargetExcluded {
        /// The requested target.
        target: InstanceKey,
        /// Why it is excluded.
        exclusion: Exclusion,
    },
    /// Another instance is a writable master already, and it cannot take the failed
    /// master's replicas without losing what they received: promoting one of them
    /// would make a second primary.
    #[error(
        "{writable} is a writable master already but lacks transactions {replica} received; \
         refusing to make a second primary"
    )]
    WritableElsewhere {
        /// The writable master.
        writable: InstanceKey,
        /// A replica holding transactions it lacks.
        replica: InstanceKey,
    },
    /// More than one other instance is a writable master: nothing can be decided safely.
    #[error("several instances are writable masters already ({}); refusing to choose", list(.0))]
    SeveralWritable(Vec<InstanceKey>),
    /// A step failed and the recovery cannot go on without it.
    #[error("{kind} on {instance} failed: {source}")]
    Step {
        /// The step.
        kind: StepKind,
        /// The instance it acted on.
        instance: InstanceKey,
        /// Why.
        #[source]
        source: Box<StepError>,
    },
    /// The instance is no reachable master with semi-sync on and a wait count.
    #[error("{0} is no reachable semi-sync master")]
    NotSemiSyncMaster(InstanceKey),
    /// Too few replicas may acknowledge the semi-sync master's commits to reach its
    /// wait count: nothing is changed (a partial change would not unlock it).
    #[error(
        "{primary} waits for {wait} acknowledgement(s); acknowledging: {}; no other replica \
         can: {}",
        or_none(&list(acknowledging)),
        or_none(&unfit.iter().map(|(k, why)| format!("{k} {why}")).collect::<Vec<_>>().join(", "))
    )]
    CannotReachWaitCount {
        /// The semi-sync master.
        primary: InstanceKey,
        /// Acknowledgements it waits for.
        wait: u32,
        /// Replicas acknowledging now.
        acknowledging: Vec<InstanceKey>,
        /// The others, and why each may not acknowledge.
        unfit: Vec<(InstanceKey, Unfit)>,
    },
    /// The replicas acknowledging already are the ones the policy wants.
    #[error(
        "{primary} waits for {wait} acknowledgement(s) and its replicas {} acknowledge already: \
         nothing to change",
        or_none(&list(acknowledging))
    )]
    NoSemiSyncChange {
        /// The semi-sync master.
        primary: InstanceKey,
        /// Acknowledgements it waits for.
        wait: u32,
        /// Replicas acknowledging now.
        acknowledging: Vec<InstanceKey>,
    },
    /// A switch could not complete, and undoing it failed too.
    #[error("{cause}; rollback failed: {rollback}")]
    RollbackFailed {
        /// Why the switch could not complete.
        cause: Box<RecoveryError>,
        /// Why the old primary could not be made writable again.
        rollback: Box<RecoveryError>,
    },
    /// The caller's step guard stopped the recovery before a step.
    #[error("stopped before {kind} on {instance}: {reason}")]
    Abandoned {
        /// The step that did not run.
        kind: StepKind,
        /// The instance it would have acted on.
        instance: InstanceKey,
        /// The guard's reason.
        reason: String,
    },
}

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Talking to the instance failed.
    #[error(transparent)]
    Sql(#[from] crate::topology::Error),
    /// The instance's GTID position cannot be read or parsed.
    #[error("the GTID position of {0} is unknown")]
    UnknownPosition(InstanceKey),
    /// The applier stopped on an error: what it received cannot be applied.
    #[error("{instance} cannot apply its relay log: error {errno}: {error}")]
    ApplierError {
        /// The instance.
        instance: InstanceKey,
        /// The applier's error number.
        errno: u32,
        /// The applier's error text.
        error: String,
    },
    /// The applier made no progress for the whole bound.
    #[error("{instance} applied nothing for {after:?}: received {received}, applied {applied}")]
    NoProgress {
        /// The instance.
        instance: InstanceKey,
        /// The bound (relayLogApplyTimeout).
        after: Duration,
        /// What it received.
        received: String,
        /// What it applied.
        applied: String,
    },
    /// The position was not applied within the bound.
    #[error("{instance} did not apply {position} within {after:?}")]
    NotApplied {
        /// The instance.
        instance: InstanceKey,
        /// The position waited for.
        position: String,
        /// The bound.
        after: Duration,
    },
    /// A replica turned semi-sync on but does not acknowledge within the bound.
    #[error("{instance} does not acknowledge semi-sync commits {after:?} after turning it on")]
    NotAcknowledging {
        /// The replica.
        instance: InstanceKey,
        /// The bound.
        after: Duration,
    },
    /// Commits still wait for acknowledgements on the semi-sync master.
    #[error("{primary} still waits for acknowledgements: {source}")]
    StillLocked {
        /// The semi-sync master.
        primary: InstanceKey,
        /// Why the acknowledged event did not complete.
        #[source]
        source: crate::topology::Error,
    },
    /// Catching up from a donor failed: the donor's transactions would be lost.
    #[error("donor {donor}: {source}")]
    Donor {
        /// The more advanced replica.
        donor: InstanceKey,
        /// Why.
        #[source]
        source: Box<StepError>,
    },
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

fn list(keys: &[InstanceKey]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
