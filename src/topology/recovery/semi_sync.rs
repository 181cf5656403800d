//! Which replicas acknowledge a semi-sync master's commits (orchestrator's
//! RecoverLockedSemiSyncMaster and EnforceExactSemiSyncReplicas).
//!
//! A semi-sync master waits for as many acknowledgements as its wait count (MariaDB:
//! always one; MySQL: `rpl_semi_sync_source_wait_for_replica_count`). When the replicas
//! that acknowledged die, every commit waits: the master is locked. The plan turns
//! semi-sync on in enough healthy replicas, the most caught-up first, and then has the
//! master binlog an event they acknowledge, which releases the waiting commits. With
//! `enforce_exact_semi_sync_replicas` it also turns it off in the surplus, the least
//! caught-up first, after the others are on, so the master never lacks
//! acknowledgements in between.
//!
//! The planning is pure; [`run`] executes the plan.

use super::error::RecoveryError;
use super::executor::Executor;
use super::plan::PlannedStep;
use super::record::{Recorder, RecoveryKind, RecoveryRecord};
use super::replication::Replication;
use crate::topology::analysis::Analysis;
use crate::topology::cluster::ClusterView;
use crate::topology::gtid::GtidPosition;
use crate::topology::instance::{Instance, InstanceKey, ThreadState};
use crate::topology::policy::{Policy, PromotionRule};
use crate::topology::probe::now_ms;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::fmt;

/// Why a replica may not be made to acknowledge the master's commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "reason", content = "detail")]
pub enum Unfit {
    /// korc cannot reach it.
    Unreachable,
    /// One of its replication threads is not running.
    NotReplicating,
    /// Its promotion rule is `must_not`: an acknowledged commit must be on a replica
    /// that can take over.
    MustNot,
    /// It is downtimed: korc leaves it alone.
    Downtimed,
    /// It holds transactions the master does not have.
    ErrantGtids(String),
    /// Its GTID position is unknown or does not parse.
    UnknownPosition,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable => f.write_str("unreachable"),
            Self::NotReplicating => f.write_str("not replicating"),
            Self::MustNot => f.write_str("must_not"),
            Self::Downtimed => f.write_str("downtimed"),
            Self::ErrantGtids(g) => write!(f, "errant GTIDs {g}"),
            Self::UnknownPosition => f.write_str("unknown GTID position"),
        }
    }
}

/// The changes to a semi-sync master's set of acknowledging replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemiSyncPlan {
    /// Acknowledgements the master waits for.
    pub wait_count: u32,
    /// Replicas acknowledging now.
    pub acknowledging: Vec<InstanceKey>,
    /// Direct replicas that may not acknowledge, and why.
    pub unfit: Vec<(InstanceKey, Unfit)>,
    /// Turn semi-sync on (most caught-up first), release the waiting commits, then
    /// turn it off in the surplus (least caught-up first).
    pub steps: Vec<PlannedStep>,
}

/// One direct replica of the master as the plan sees it.
struct Seen<'a> {
    instance: &'a Instance,
    position: Option<GtidPosition>,
    acknowledging: bool,
    unfit: Option<Unfit>,
}

/// Decides which replicas of the semi-sync master `primary` turn semi-sync on or off.
/// Without `enforce_exact_semi_sync_replicas` semi-sync is only ever turned on, in as
/// many fit replicas as the master lacks acknowledgements; with it, exactly the wait
/// count's worth of fit replicas acknowledge afterwards: those acknowledging already
/// are kept, the most caught-up first. Fails, saying why for each replica, when fit
/// replicas are too few to reach the wait count, and when nothing would change.
pub fn plan(
    instances: &[Instance],
    primary: &InstanceKey,
    policy: &Policy,
    now_ms: u64,
) -> Result<SemiSyncPlan, RecoveryError> {
    let view = ClusterView::new(instances);
    let p = view
        .index_of(primary)
        .ok_or_else(|| RecoveryError::UnknownInstance(primary.clone()))?;
    let master = &instances[p];
    let wait = master.semi_sync.master_wait_for_replica_count;
    if !master.reachable || !master.semi_sync.master_enabled || wait == 0 {
        return Err(RecoveryError::NotSemiSyncMaster(primary.clone()));
    }
    let mut seen: Vec<Seen<'_>> = view
        .replicas_of(p)
        .iter()
        .map(|&r| {
            let instance = &instances[r];
            Seen {
                instance,
                position: instance
                    .reachable
                    .then(|| instance.received_position())
                    .flatten(),
                acknowledging: acknowledges(instance),
                unfit: unfit(instance, master, policy, now_ms),
            }
        })
        .collect();
    rank(&mut seen, policy);

    let acknowledging: Vec<&Seen<'_>> = seen.iter().filter(|s| s.acknowledging).collect();
    let fit = || seen.iter().filter(|s| s.unfit.is_none());
    let (enable, disable): (Vec<&Seen<'_>>, Vec<&Seen<'_>>) =
        if policy.enforce_exact_semi_sync_replicas {
            // Keep the fit replicas that acknowledge already, then add the most
            // caught-up others; every other one with semi-sync on is surplus, unless
            // downtimed (left alone) or unreachable (nothing can be done to it).
            let keep: Vec<&Seen<'_>> = fit()
                .filter(|s| s.acknowledging)
                .chain(fit().filter(|s| !s.acknowledging))
                .take(wait as usize)
                .collect();
            if keep.len() < wait as usize {
                // Turning any off would leave the master short.
                return Err(cannot_reach(primary, wait, &acknowledging, &seen));
            }
            let enable = keep.iter().copied().filter(|s| !s.acknowledging).collect();
            let surplus = seen
                .iter()
                .rev()
                .filter(|s| s.instance.reachable && s.instance.semi_sync.replica_enabled)
                .filter(|s| s.unfit != Some(Unfit::Downtimed))
                .filter(|s| !keep.iter().any(|k| k.instance.key == s.instance.key))
                .collect();
            (enable, surplus)
        } else {
            let lacking = (wait as usize).saturating_sub(acknowledging.len());
            let enable: Vec<&Seen<'_>> = fit().filter(|s| !s.acknowledging).take(lacking).collect();
            if enable.len() < lacking {
                return Err(cannot_reach(primary, wait, &acknowledging, &seen));
            }
            (enable, Vec::new())
        };
    if enable.is_empty() && disable.is_empty() {
        return Err(RecoveryError::NoSemiSyncChange {
            primary: primary.clone(),
            wait,
            acknowledging: keys(&acknowledging),
        });
    }
    let mut steps: Vec<PlannedStep> = enable
        .iter()
        .map(|s| PlannedStep::EnableSemiSync {
            replica: s.instance.key.clone(),
        })
        .collect();
    if !enable.is_empty() && master.semi_sync.master_wait_sessions > 0 {
        steps.push(PlannedStep::ReleaseWaitingCommits {
            primary: primary.clone(),
        });
    }
    steps.extend(disable.iter().map(|s| PlannedStep::DisableSemiSync {
        replica: s.instance.key.clone(),
    }));
    Ok(SemiSyncPlan {
        wait_count: wait,
        acknowledging: keys(&acknowledging),
        unfit: unfit_list(&seen),
        steps,
    })
}

/// The replica acknowledges now: semi-sync on, active on its connection, receiving.
fn acknowledges(r: &Instance) -> bool {
    r.reachable
        && r.semi_sync.replica_enabled
        && r.semi_sync.replica_status
        && r.replication
            .as_ref()
            .is_some_and(|rep| rep.io_running == ThreadState::Yes)
}

fn unfit(r: &Instance, master: &Instance, policy: &Policy, now_ms: u64) -> Option<Unfit> {
    if !r.reachable {
        return Some(Unfit::Unreachable);
    }
    if policy.is_downtimed(&r.key, now_ms) {
        return Some(Unfit::Downtimed);
    }
    if policy.promotion_rule(&r.key) == PromotionRule::MustNot {
        return Some(Unfit::MustNot);
    }
    if !r.is_replicating() {
        return Some(Unfit::NotReplicating);
    }
    if r.received_position().is_none() || r.gtid_history().is_none() {
        return Some(Unfit::UnknownPosition);
    }
    r.errant_gtids(master)
        .filter(|e| !e.is_empty())
        .map(Unfit::ErrantGtids)
}

/// Most caught-up first: by how many other replicas' received positions a replica's
/// contains (one strictly ahead contains more), then by transactions, then the better
/// promotion rule, then the key, so the choice is the same every time.
fn rank(seen: &mut [Seen<'_>], policy: &Policy) {
    let positions: Vec<Option<GtidPosition>> = seen.iter().map(|s| s.position.clone()).collect();
    seen.sort_by_cached_key(|s| {
        let contains = s.position.as_ref().map_or(0, |p| {
            positions.iter().flatten().filter(|o| p.contains(o)).count()
        });
        (
            Reverse(contains),
            Reverse(s.position.as_ref().map_or(0, GtidPosition::transactions)),
            policy.promotion_rule(&s.instance.key),
            s.instance.key.clone(),
        )
    });
}

fn keys(seen: &[&Seen<'_>]) -> Vec<InstanceKey> {
    seen.iter().map(|s| s.instance.key.clone()).collect()
}

fn unfit_list(seen: &[Seen<'_>]) -> Vec<(InstanceKey, Unfit)> {
    seen.iter()
        .filter_map(|s| Some((s.instance.key.clone(), s.unfit.clone()?)))
        .collect()
}

fn cannot_reach(
    primary: &InstanceKey,
    wait: u32,
    acknowledging: &[&Seen<'_>],
    seen: &[Seen<'_>],
) -> RecoveryError {
    RecoveryError::CannotReachWaitCount {
        primary: primary.clone(),
        wait,
        acknowledging: keys(acknowledging),
        unfit: unfit_list(seen),
    }
}

/// Plans from `instances` (probed just before) and runs the plan for the semi-sync
/// master the analysis names.
pub(super) async fn run<R: Replication>(
    exec: &Executor<'_, R>,
    instances: &[Instance],
    analysis: &Analysis,
) -> RecoveryRecord {
    let mut rec = Recorder::start(
        RecoveryKind::SemiSyncReplicas,
        analysis.instance.clone(),
        Some(analysis.clone()),
    );
    let result = match plan(instances, &analysis.instance, &exec.ctx.policy, now_ms()) {
        Ok(p) => exec.run(&mut rec, &p.steps).await,
        Err(e) => Err(e),
    };
    rec.end(result)
}

#[cfg(test)]
mod tests;
