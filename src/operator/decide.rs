//! What the leader does with a cluster this round: one pure function of what it
//! observed, the status, the spec and the time.
//!
//! States and invariants:
//! - **One commit point.** `status.primary` says who the primary is. Only a registered
//!   recovery (and a switchover) moves it, by a status write with a `resourceVersion`
//!   precondition made before the promotion. Everything else — bootstrap, rejoin, role
//!   labels, the `-primary` Service — follows it and never fights it.
//! - **Converge** (the normal state): the bootstrap plan brings the members in line with
//!   `status.primary`: the primary writable, new or returning instances attached under
//!   it, instances with errant transactions held out, any other writable instance made
//!   read-only (fenced).
//! - **Recover**: an actionable failure of the committed primary (or of an intermediate
//!   master) that nothing blocks. The caller registers the recovery in
//!   `status.recoveries` before acting.
//! - **Resume**: a registered recovery never finished (its leader died). With a
//!   committed successor it is completed; without one it is abandoned (nothing
//!   irreversible happened) and the next round decides afresh.
//! - **SwitchOver**: `spec.switchover` names a `requestId` no recovery record has
//!   served, and nothing needs recovering: a graceful takeover, registered like a
//!   recovery (kind `GracefulTakeover`) and committed the same way.
//! - **Restart**: nothing to recover and the pods run an outdated template: converge,
//!   then restart the next pod of the rolling restart (replicas first, then a
//!   switchover, then the old primary: see [`super::rollout`]).
//! - **Hold**: a failure is detected but not recovered, with the reason: the cluster
//!   is paused, a single instance, automatic recovery is off for the code, the failed
//!   instance is downtimed, or a recent recovery blocks further ones (anti-flapping,
//!   orchestrator's RecoveryPeriodBlockSeconds) until acknowledged.

use super::bootstrap::{self, Plan};
use super::rollout::{self, Rollout};
use super::status::{Member, code_name, pod_of};
use crate::api::{MySQLClusterSpec, MySQLClusterStatus, RecoveryStatus};
use crate::topology::analysis::{Analysis, AnalysisCode};
use crate::topology::instance::Instance;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// `status.recoveries` keeps this many records.
pub const RECOVERY_HISTORY: usize = 10;
/// The annotation that acknowledges recoveries and lifts the anti-flapping block.
pub const ACKNOWLEDGE_ANNOTATION: &str = "korc.dev/acknowledge";
/// Outcome of a registered recovery that has not ended.
pub const RUNNING: &str = "running";

/// Everything a decision depends on.
#[derive(Debug)]
pub struct Situation<'a> {
    /// The spec.
    pub spec: &'a MySQLClusterSpec,
    /// The status as last written.
    pub status: &'a MySQLClusterStatus,
    /// The pods.
    pub members: &'a [Member],
    /// Their probe results (same order).
    pub instances: &'a [Instance],
    /// The analysis of those results.
    pub analysis: &'a [Analysis],
    /// The StatefulSet's update revision (the pod template pods should run).
    pub update_revision: Option<&'a str>,
    /// Now.
    pub now: Timestamp,
}

/// Why a detected failure is not recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// `spec.paused`.
    Paused,
    /// One instance: nothing to fail over to.
    SingleInstance,
    /// `spec.recovery.automatic*Recovery` is false for this kind of failure.
    AutomaticRecoveryDisabled {
        /// The analysis code.
        code: String,
    },
    /// The failed instance is downtimed (`spec.instances.<pod>.downtimeUntil`).
    Downtimed {
        /// The pod.
        pod: String,
    },
    /// A recent recovery blocks further automatic ones.
    AntiFlapping {
        /// Until when.
        until: Timestamp,
        /// The recovery that blocks.
        recovery: String,
    },
}

impl Blocker {
    /// The `RecoveryBlocked` condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Paused => "Paused",
            Self::SingleInstance => "SingleInstance",
            Self::AutomaticRecoveryDisabled { .. } => "AutomaticRecoveryDisabled",
            Self::Downtimed { .. } => "Downtimed",
            Self::AntiFlapping { .. } => "AntiFlapping",
        }
    }

    /// The `RecoveryBlocked` condition's message.
    pub fn message(&self) -> String {
        match self {
            Self::Paused => "spec.paused is set: korc neither reconciles nor recovers".into(),
            Self::SingleInstance => {
                "a single instance has no replica to fail over to: no failover possible".into()
            }
            Self::AutomaticRecoveryDisabled { code } => {
                format!("{code} is detected but automatic recovery of it is off in spec.recovery")
            }
            Self::Downtimed { pod } => {
                format!("{pod} is downtimed (spec.instances.{pod}.downtimeUntil): not recovered")
            }
            Self::AntiFlapping { until, recovery } => format!(
                "recovery {recovery} blocks automatic recoveries until {until} \
                 (spec.recovery.blockPeriodSeconds); to lift the block: \
                 kubectl annotate myc <name> {ACKNOWLEDGE_ANNOTATION}=<reason>"
            ),
        }
    }
}

/// What to do this round.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to recover: bring the members in line with `status.primary`.
    Converge(Plan),
    /// Register and run the recovery of this failure.
    Recover(Analysis),
    /// Complete (with a committed successor) or abandon a registered, unfinished recovery.
    Resume(Box<RecoveryStatus>),
    /// Run the switchover `spec.switchover` requests (graceful takeover), to this pod
    /// or, without one, to the replica the candidate rules choose.
    SwitchOver {
        /// The request's id.
        request_id: String,
        /// The target pod.
        to: Option<String>,
    },
    /// A failure is detected but not recovered; converge what can be.
    Hold(Blocker, Plan),
    /// Nothing to recover: converge, then restart this outdated pod (a rolling restart,
    /// see [`super::rollout`]).
    Restart(String, Plan),
}

/// Decides. `plan` is the converge arm, computed from the same observation.
pub fn decide(s: &Situation<'_>) -> Decision {
    let semi_sync = s.spec.semi_sync.as_ref().is_some_and(|x| x.enabled);
    let plan = bootstrap::plan(
        s.members,
        s.instances,
        s.status.primary.as_deref(),
        semi_sync,
    );
    if s.spec.paused {
        return Decision::Hold(Blocker::Paused, plan);
    }
    if let Some(r) = s.status.recoveries.last().filter(|r| r.outcome == RUNNING) {
        return Decision::Resume(Box::new(r.clone()));
    }
    let Some(failure) = recoverable_failure(s) else {
        if let Some((request_id, to)) = pending_switchover(s) {
            return Decision::SwitchOver { request_id, to };
        }
        return match rollout::next(
            s.members,
            s.update_revision,
            s.status.primary.as_deref(),
            &s.status.recoveries,
            healthy(s),
        ) {
            Rollout::Restart(pod) => Decision::Restart(pod, plan),
            Rollout::SwitchOver { request_id } => Decision::SwitchOver {
                request_id,
                to: None,
            },
            Rollout::Current | Rollout::Wait(_) | Rollout::Stuck(_) => Decision::Converge(plan),
        };
    };
    if s.spec.replicas == 1 {
        return Decision::Hold(Blocker::SingleInstance, plan);
    }
    let code = code_name(failure.code);
    let automatic = if failure.code.is_master_failure() {
        s.spec.recovery.automatic_master_recovery
    } else {
        s.spec.recovery.automatic_intermediate_master_recovery
    };
    if !automatic {
        return Decision::Hold(Blocker::AutomaticRecoveryDisabled { code }, plan);
    }
    if failure.skippable_due_to_downtime {
        let pod = pod_of(s.members, &failure.instance);
        return Decision::Hold(Blocker::Downtimed { pod }, plan);
    }
    if let Some(b) = anti_flapping(s.spec, s.status, s.now) {
        return Decision::Hold(b, plan);
    }
    Decision::Recover(failure.clone())
}

/// Every pod of the spec is there and reachable, and nothing is wrong with any
/// instance: a pod may be restarted.
fn healthy(s: &Situation<'_>) -> bool {
    s.members.len() == s.spec.replicas as usize
        && s.instances.iter().all(|i| i.reachable)
        && s.analysis.iter().all(|a| a.code == AnalysisCode::NoProblem)
}

/// A `spec.switchover` request no recovery record has served yet.
fn pending_switchover(s: &Situation<'_>) -> Option<(String, Option<String>)> {
    let req = s.spec.switchover.as_ref()?;
    s.status.primary.as_ref()?;
    let served = s
        .status
        .recoveries
        .iter()
        .any(|r| r.request_id.as_deref() == Some(req.request_id.as_str()));
    (!served).then(|| (req.request_id.clone(), req.to.clone()))
}

/// The block a recent recovery puts on further automatic recoveries, if any: the last
/// recovery that made a change (not abandoned) and is not acknowledged blocks until
/// `blockPeriodSeconds` after it started.
pub fn anti_flapping(
    spec: &MySQLClusterSpec,
    status: &MySQLClusterStatus,
    now: Timestamp,
) -> Option<Blocker> {
    let last = status.recoveries.iter().rev().find(|r| {
        r.outcome != "abandoned" && r.outcome != RUNNING && r.kind != "GracefulTakeover"
    })?;
    if last.acknowledged == Some(true) {
        return None;
    }
    let until = last
        .started_at
        .0
        .checked_add(SignedDuration::from_secs(
            spec.recovery.block_period_seconds,
        ))
        .ok()?;
    (now < until).then(|| Blocker::AntiFlapping {
        until,
        recovery: last.id.clone(),
    })
}

/// The failure korc would recover (and runs `onFailureDetection` hooks for, even when
/// something blocks its recovery): an actionable dead-primary analysis of the
/// committed primary, or an actionable intermediate-master analysis of a member. A
/// writable instance other than the committed primary is never "recovered": converge
/// fences it. A locked semi-sync primary is no failover: every replica's configuration
/// has semi-sync on, so any replica that replicates acknowledges.
pub fn recoverable_failure<'a>(s: &'a Situation<'_>) -> Option<&'a Analysis> {
    let primary_key = s
        .status
        .primary
        .as_ref()
        .and_then(|p| s.members.iter().find(|m| &m.pod == p))
        .map(|m| &m.key);
    s.analysis.iter().find(|a| {
        (a.actionable || a.skippable_due_to_downtime)
            && if a.code.is_master_failure() {
                Some(&a.instance) == primary_key
            } else {
                is_intermediate_master_failure(a.code)
                    && s.members.iter().any(|m| m.key == a.instance)
            }
    })
}

fn is_intermediate_master_failure(code: AnalysisCode) -> bool {
    use AnalysisCode::*;
    matches!(
        code,
        DeadIntermediateMaster
            | DeadIntermediateMasterAndSomeReplicas
            | DeadIntermediateMasterWithSingleReplicaFailingToConnect
            | AllIntermediateMasterReplicasFailingToConnectOrDead
    )
}

#[cfg(test)]
mod tests;
