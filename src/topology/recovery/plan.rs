//! Recovery plans: pure functions from probe results, the failed instance and the
//! policy to the ordered steps a recovery takes. Nothing here does I/O; the executor
//! runs the steps and the recovery functions read the topology in between.

use super::error::RecoveryError;
use super::record::StepKind;
use crate::topology::candidate::{
    CandidateChoice, Exclusion, cannot_follow, choose_candidate, keep_candidate, rank,
};
use crate::topology::cluster::ClusterView;
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::policy::Policy;
use std::borrow::Borrow;
use std::collections::HashSet;

/// One step a recovery will take, decided before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedStep {
    /// Stop a replica receiving from the dead master; its applier keeps running.
    StopReplicaIo {
        /// The replica.
        replica: InstanceKey,
    },
    /// Let the candidate fetch from a more advanced replica what only that one received.
    CatchUpFromDonor {
        /// The replica to promote.
        candidate: InstanceKey,
        /// The more advanced replica.
        donor: InstanceKey,
    },
    /// Wait until the candidate has applied everything it received.
    WaitRelayLogApplied {
        /// The replica to promote.
        candidate: InstanceKey,
    },
    /// Make the candidate a master: replication reset, and writable when `writable`.
    Promote {
        /// The successor.
        candidate: InstanceKey,
        /// Make it writable [ApplyMySQLPromotionAfterMasterFailover].
        writable: bool,
        /// Turn on the semi-sync source side before it becomes writable (the master
        /// it replaces had it on), so no write is acknowledged before a replica has it.
        semi_sync: bool,
    },
    /// Make a read-only master writable; nothing else changes.
    MakeWritable {
        /// The master.
        master: InstanceKey,
    },
    /// Point a replica at a new source.
    Repoint {
        /// The replica.
        replica: InstanceKey,
        /// Its new source.
        to: InstanceKey,
    },
    /// Best-effort read_only on the failed master, in case it is alive.
    FenceOldPrimary {
        /// The failed master.
        failed: InstanceKey,
    },
    /// Detach a lost replica from the failed master (`//host`, reversible).
    DetachLostReplica {
        /// The replica.
        replica: InstanceKey,
        /// The failed master.
        from: InstanceKey,
    },
    /// Make the primary read-only before switching to another instance.
    SetReadOnly {
        /// The primary.
        primary: InstanceKey,
    },
    /// Wait until the switch target has applied everything the primary wrote.
    WaitCatchUp {
        /// The switch target.
        target: InstanceKey,
        /// The primary, now read-only.
        primary: InstanceKey,
    },
    /// The old primary becomes a replica of the new one.
    DemoteOldPrimary {
        /// The old primary.
        primary: InstanceKey,
        /// The new primary.
        to: InstanceKey,
    },
    /// Make the old primary writable again: a switch that could not complete is undone.
    Rollback {
        /// The old primary.
        primary: InstanceKey,
    },
    /// Turn semi-sync on in a replica and restart its IO thread (semi-sync is
    /// negotiated at connect), then wait until it acknowledges.
    EnableSemiSync {
        /// The replica.
        replica: InstanceKey,
    },
    /// Turn semi-sync off in a replica, restarting its IO thread if it runs.
    DisableSemiSync {
        /// The replica.
        replica: InstanceKey,
    },
    /// Have a locked master binlog an event that changes no data: the replicas just
    /// turned semi-sync acknowledge it, which releases every commit waiting before it.
    ReleaseWaitingCommits {
        /// The semi-sync master.
        primary: InstanceKey,
    },
}

impl PlannedStep {
    /// The kind the record gives the step.
    pub fn kind(&self) -> StepKind {
        match self {
            Self::StopReplicaIo { .. } => StepKind::StopReplicaIo,
            Self::CatchUpFromDonor { .. } => StepKind::CatchUpFromDonor,
            Self::WaitRelayLogApplied { .. } => StepKind::WaitRelayLogApplied,
            Self::Promote { .. } | Self::MakeWritable { .. } => StepKind::Promote,
            Self::Repoint { .. } => StepKind::Repoint,
            Self::FenceOldPrimary { .. } => StepKind::FenceOldPrimary,
            Self::DetachLostReplica { .. } => StepKind::DetachLostReplica,
            Self::SetReadOnly { .. } => StepKind::SetReadOnly,
            Self::WaitCatchUp { .. } => StepKind::WaitCatchUp,
            Self::DemoteOldPrimary { .. } => StepKind::DemoteOldPrimary,
            Self::Rollback { .. } => StepKind::Rollback,
            Self::EnableSemiSync { .. } => StepKind::EnableSemiSync,
            Self::DisableSemiSync { .. } => StepKind::DisableSemiSync,
            Self::ReleaseWaitingCommits { .. } => StepKind::ReleaseWaitingCommits,
        }
    }

    /// The instance the step acts on (for a promotion: the successor).
    pub fn instance(&self) -> &InstanceKey {
        match self {
            Self::StopReplicaIo { replica }
            | Self::Repoint { replica, .. }
            | Self::DetachLostReplica { replica, .. }
            | Self::EnableSemiSync { replica }
            | Self::DisableSemiSync { replica } => replica,
            Self::CatchUpFromDonor { candidate, .. }
            | Self::WaitRelayLogApplied { candidate }
            | Self::Promote { candidate, .. } => candidate,
            Self::MakeWritable { master } => master,
            Self::FenceOldPrimary { failed } => failed,
            Self::WaitCatchUp { target, .. } => target,
            Self::SetReadOnly { primary }
            | Self::DemoteOldPrimary { primary, .. }
            | Self::Rollback { primary }
            | Self::ReleaseWaitingCommits { primary } => primary,
        }
    }
}

/// What a recovery will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The instance that takes over when the steps succeed.
    pub successor: InstanceKey,
    /// The candidate choice behind it, when one was made.
    pub candidate: Option<CandidateChoice>,
    /// The steps, in order.
    pub steps: Vec<PlannedStep>,
    /// Replicas left out whatever happens: unreachable, errant, unparseable.
    pub lost: Vec<InstanceKey>,
    /// A switch to a better-ruled replica once the successor is writable.
    pub hand_over: Option<Switch>,
}

/// Moving the primary role from one instance to another, both alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The primary.
    pub from: InstanceKey,
    /// The replica that takes over.
    pub to: InstanceKey,
    /// The steps, in order: read-only, catch up, promote, repoint, demote.
    pub steps: Vec<PlannedStep>,
}

/// Where a dead-master recovery starts, once the topology was re-read: an earlier
/// recovery of the same failure may have been interrupted part of the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Nothing was done yet: choose a candidate.
    Anew,
    /// An earlier recovery chose this replica and did not promote it yet: keep it if
    /// it can still be promoted.
    Keep(InstanceKey),
    /// An earlier recovery promoted this instance: complete onto it.
    Complete(InstanceKey),
}

/// Decides where a dead-master recovery starts. `hint` is the successor a caller
/// recorded before an interrupted recovery's promotion. Without one, a reachable
/// writable master other than the failed one is taken as the successor when it holds
/// everything the failed master's replicas received; if it does not, or there are
/// several, nothing is promoted: a second primary is never made.
pub fn start(
    instances: &[Instance],
    failed: &InstanceKey,
    hint: Option<&InstanceKey>,
) -> Result<Start, RecoveryError> {
    let view = ClusterView::new(instances);
    let f = view
        .index_of(failed)
        .ok_or_else(|| RecoveryError::UnknownInstance(failed.clone()))?;
    let hinted = hint
        .filter(|h| *h != failed)
        .and_then(|h| view.index_of(h))
        .filter(|&h| instances[h].reachable);
    if let Some(h) = hinted {
        let key = instances[h].key.clone();
        if view.source_of(h) == Some(f) {
            return Ok(Start::Keep(key));
        }
        if instances[h].is_master() {
            return Ok(Start::Complete(key));
        }
    }
    let writable: Vec<usize> = (0..instances.len())
        .filter(|&i| i != f)
        .filter(|&i| instances[i].reachable && instances[i].is_master())
        .filter(|&i| instances[i].is_writable())
        .collect();
    match writable[..] {
        [] => Ok(Start::Anew),
        [w] => {
            let held = instances[w].executed_position();
            let behind = view
                .replicas_of(f)
                .iter()
                .map(|&r| &instances[r])
                .find(|r| {
                    match (&held, r.reachable.then(|| r.received_position()).flatten()) {
                        (Some(h), Some(p)) => !h.contains(&p),
                        (None, Some(_)) => true,
                        // Unreachable or unparseable: lost anyway, no reason to refuse.
                        (_, None) => false,
                    }
                });
            match behind {
                Some(r) => Err(RecoveryError::WritableElsewhere {
                    writable: instances[w].key.clone(),
                    replica: r.key.clone(),
                }),
                None => Ok(Start::Complete(instances[w].key.clone())),
            }
        }
        _ => Err(RecoveryError::SeveralWritable(
            writable.iter().map(|&i| instances[i].key.clone()).collect(),
        )),
    }
}

/// The first steps of a dead-master recovery: every reachable replica of `failed`
/// stops receiving, so that what each received can be compared.
pub fn freeze(
    instances: &[Instance],
    failed: &InstanceKey,
) -> Result<Vec<PlannedStep>, RecoveryError> {
    let view = ClusterView::new(instances);
    let f = view
        .index_of(failed)
        .ok_or_else(|| RecoveryError::UnknownInstance(failed.clone()))?;
    let replicas = view.replicas_of(f);
    if replicas.is_empty() {
        return Err(RecoveryError::NoReplicas(failed.clone()));
    }
    Ok(replicas
        .iter()
        .map(|&r| &instances[r])
        .filter(|r| r.reachable)
        .map(|r| PlannedStep::StopReplicaIo {
            replica: r.key.clone(),
        })
        .collect())
}

/// Replacing the dead master `dead`. `replicas` are its direct replicas as read after
/// they stopped receiving. The candidate (or `keep`, when an interrupted recovery chose
/// it and it can still be promoted) first catches up from a more advanced excluded
/// replica if there is one, applies its relay log and is promoted; the other replicas
/// follow it, the old master is fenced, lost replicas are detached, and a better-ruled
/// replica takes over at the end.
pub fn dead_master<R: Borrow<Instance>>(
    replicas: &[R],
    dead: &Instance,
    policy: &Policy,
    now_ms: u64,
    keep: Option<&InstanceKey>,
) -> Result<Plan, RecoveryError> {
    let choice = match keep {
        Some(k) => keep_candidate(replicas, dead, policy, now_ms, k),
        None => choose_candidate(replicas, dead, policy, now_ms),
    }?;
    let promoted = choice.promoted.clone();
    let mut steps = Vec::new();
    if let Some(donor) = choice.ahead.first() {
        steps.push(PlannedStep::CatchUpFromDonor {
            candidate: promoted.clone(),
            donor: donor.clone(),
        });
    }
    steps.push(PlannedStep::WaitRelayLogApplied {
        candidate: promoted.clone(),
    });
    steps.push(PlannedStep::Promote {
        candidate: promoted.clone(),
        writable: policy.apply_promotion,
        semi_sync: dead.semi_sync.master_enabled,
    });
    let replicas = || replicas.iter().map(Borrow::borrow);
    let eligible: HashSet<&InstanceKey> = choice
        .ranking
        .iter()
        .filter(|r| r.excluded.is_none())
        .map(|r| &r.instance)
        .collect();
    let (followers, lost) = followers(replicas(), dead, &promoted, None, &eligible);
    steps.extend(followers.iter().map(|k| PlannedStep::Repoint {
        replica: k.clone(),
        to: promoted.clone(),
    }));
    steps.extend(fence_and_detach(replicas(), dead, &lost, policy));
    let hand_over = choice
        .hand_over_to
        .as_ref()
        .filter(|b| followers.contains(b))
        .map(|better| {
            let others: Vec<InstanceKey> =
                followers.iter().filter(|k| *k != better).cloned().collect();
            switch(&promoted, better, &others, dead.semi_sync.master_enabled)
        });
    Ok(Plan {
        successor: promoted,
        candidate: Some(choice),
        steps,
        lost,
        hand_over,
    })
}

/// Completing an interrupted dead-master recovery onto `successor`, which an earlier
/// run promoted (or at least took out of replication): it is made writable if it is
/// not, the replicas still under the failed master follow it, the failed master is
/// fenced and lost replicas detached. A replica that received transactions the
/// successor lacks is left out rather than made to discard them.
pub fn completion(
    instances: &[Instance],
    failed: &InstanceKey,
    successor: &InstanceKey,
    policy: &Policy,
) -> Result<Plan, RecoveryError> {
    let view = ClusterView::new(instances);
    let (f, s) = view
        .index_of(failed)
        .zip(view.index_of(successor))
        .ok_or_else(|| RecoveryError::UnknownInstance(failed.clone()))?;
    let dead = &instances[f];
    let succ = &instances[s];
    let mut steps = Vec::new();
    if !succ.is_writable() {
        steps.push(PlannedStep::Promote {
            candidate: successor.clone(),
            writable: policy.apply_promotion,
            semi_sync: dead.semi_sync.master_enabled,
        });
    }
    let orphans = || {
        view.replicas_of(f)
            .iter()
            .filter(move |&&r| r != s)
            .map(|&r| &instances[r])
    };
    let (followers, lost) = followers(orphans(), dead, successor, Some(succ), &HashSet::new());
    steps.extend(followers.iter().map(|k| PlannedStep::Repoint {
        replica: k.clone(),
        to: successor.clone(),
    }));
    steps.extend(fence_and_detach(orphans(), dead, &lost, policy));
    Ok(Plan {
        successor: successor.clone(),
        candidate: None,
        steps,
        lost,
        hand_over: None,
    })
}

/// Splits the replicas of `dead` other than `successor` into those that follow the
/// successor and those lost: unreachable, unparseable, errant, or (when the successor
/// is known) holding transactions it lacks.
/// `eligible` are replicas candidate choice found promotable: they can follow anyone,
/// so they are not checked again.
fn followers<'a>(
    replicas: impl Iterator<Item = &'a Instance>,
    dead: &Instance,
    successor: &InstanceKey,
    known_successor: Option<&Instance>,
    eligible: &HashSet<&InstanceKey>,
) -> (Vec<InstanceKey>, Vec<InstanceKey>) {
    let held = known_successor.and_then(Instance::executed_position);
    let mut follow = Vec::new();
    let mut lost = Vec::new();
    for r in replicas.filter(|r| &r.key != successor) {
        let ahead = known_successor.is_some()
            && match (&held, r.received_position()) {
                (Some(h), Some(p)) => !h.contains(&p),
                _ => true,
            };
        let clean = eligible.contains(&r.key) || cannot_follow(r, dead).is_none();
        if !r.reachable || ahead || !clean {
            lost.push(r.key.clone());
        } else {
            follow.push(r.key.clone());
        }
    }
    (follow, lost)
}

/// Fencing the old master, then detaching the reachable lost replicas if the policy
/// says so.
fn fence_and_detach<'a>(
    replicas: impl Iterator<Item = &'a Instance>,
    dead: &Instance,
    lost: &[InstanceKey],
    policy: &Policy,
) -> Vec<PlannedStep> {
    let mut steps = vec![PlannedStep::FenceOldPrimary {
        failed: dead.key.clone(),
    }];
    if policy.detach_lost_replicas {
        let lost: HashSet<&InstanceKey> = lost.iter().collect();
        steps.extend(
            replicas
                .filter(|r| r.reachable && lost.contains(&r.key))
                .map(|r| PlannedStep::DetachLostReplica {
                    replica: r.key.clone(),
                    from: dead.key.clone(),
                }),
        );
    }
    steps
}

/// Switching the primary role from `primary` to its replica `target`: the primary
/// turns read-only, the target applies everything it wrote and is promoted, `others`
/// follow it, and the old primary becomes its replica. With `semi_sync` the target
/// becomes a semi-sync source before it is writable, as the primary was.
pub fn switch(
    primary: &InstanceKey,
    target: &InstanceKey,
    others: &[InstanceKey],
    semi_sync: bool,
) -> Switch {
    let mut steps = vec![
        PlannedStep::SetReadOnly {
            primary: primary.clone(),
        },
        PlannedStep::WaitCatchUp {
            target: target.clone(),
            primary: primary.clone(),
        },
        PlannedStep::Promote {
            candidate: target.clone(),
            writable: true,
            semi_sync,
        },
    ];
    steps.extend(others.iter().map(|k| PlannedStep::Repoint {
        replica: k.clone(),
        to: target.clone(),
    }));
    steps.push(PlannedStep::DemoteOldPrimary {
        primary: primary.clone(),
        to: target.clone(),
    });
    Switch {
        from: primary.clone(),
        to: target.clone(),
        steps,
    }
}

/// A graceful takeover of the primary at index `p`: to `target` if given (refused when
/// candidate choice excludes it for a reason other than place or lag, as orchestrator
/// refuses a banned designated replica), else to the best replica by candidate choice
/// (a `prefer` replica before a more advanced neutral one: the takeover waits for it to
/// catch up anyway).
pub fn takeover(
    instances: &[Instance],
    p: usize,
    target: Option<&InstanceKey>,
    policy: &Policy,
    now_ms: u64,
) -> Result<Plan, RecoveryError> {
    let view = ClusterView::new(instances);
    let primary = &instances[p];
    let replicas: Vec<&Instance> = view.replicas_of(p).iter().map(|&i| &instances[i]).collect();
    let (chosen, candidate) = match target {
        Some(t) => match view.index_of(t) {
            Some(i) if view.source_of(i) == Some(p) && instances[i].reachable => {
                let key = &instances[i].key;
                let refused = rank(&replicas, primary, policy, now_ms)
                    .into_iter()
                    .find(|r| &r.instance == key)
                    .and_then(|r| r.excluded)
                    .filter(Exclusion::refuses_named_target);
                if let Some(exclusion) = refused {
                    return Err(RecoveryError::TargetExcluded {
                        target: key.clone(),
                        exclusion,
                    });
                }
                (key.clone(), None)
            }
            _ => {
                return Err(RecoveryError::NotADirectReplica {
                    target: t.clone(),
                    primary: primary.key.clone(),
                });
            }
        },
        None => {
            let c = choose_candidate(&replicas, primary, policy, now_ms)?;
            let to = c.hand_over_to.clone().unwrap_or_else(|| c.promoted.clone());
            (to, Some(c))
        }
    };
    if !primary.reachable {
        return Err(RecoveryError::PrimaryUnreachable(primary.key.clone()));
    }
    let others: Vec<InstanceKey> = replicas
        .iter()
        .filter(|r| r.reachable && r.key != chosen)
        .map(|r| r.key.clone())
        .collect();
    let lost = replicas
        .iter()
        .filter(|r| !r.reachable)
        .map(|r| r.key.clone())
        .collect();
    let Switch { steps, .. } = switch(
        &primary.key,
        &chosen,
        &others,
        primary.semi_sync.master_enabled,
    );
    Ok(Plan {
        successor: chosen,
        candidate,
        steps,
        lost,
        hand_over: None,
    })
}

/// Where the orphaned replicas of a dead intermediate master go: a sibling that can
/// serve them (replicating, logging replica updates, at least as advanced as the dead
/// intermediate master was last seen; promotion candidates, then the same data center,
/// then the most replicas first), else up to the intermediate master's own source.
pub fn relocation_target(
    instances: &[Instance],
    failed: &InstanceKey,
    policy: &Policy,
) -> Option<InstanceKey> {
    let view = ClusterView::new(instances);
    let f = view.index_of(failed)?;
    let up = view.source_of(f)?;
    let dead = &instances[f];
    let dc = policy.data_center(failed);
    let dead_pos = dead.executed_position();
    let mut siblings: Vec<usize> = view
        .replicas_of(up)
        .iter()
        .copied()
        .filter(|&s| s != f)
        .filter(|&s| {
            let sib = &instances[s];
            sib.reachable
                && sib.is_replicating()
                && sib.is_logging_replica_updates()
                && match (sib.executed_position(), dead_pos.as_ref()) {
                    (Some(sp), Some(dp)) => sp.contains(dp),
                    (_, None) => true,
                    (None, Some(_)) => false,
                }
        })
        .collect();
    siblings.sort_by_key(|&s| {
        let rule = policy.promotion_rule(&instances[s].key);
        (
            !rule.is_candidate(),
            dc.is_none() || policy.data_center(&instances[s].key) != dc,
            std::cmp::Reverse(view.replicas_of(s).len()),
        )
    });
    Some(
        siblings
            .first()
            .map_or_else(|| instances[up].key.clone(), |&s| instances[s].key.clone()),
    )
}

/// Moving the replicas of the dead intermediate master `failed` under a sibling or its
/// source.
pub fn intermediate(
    instances: &[Instance],
    failed: &InstanceKey,
    policy: &Policy,
) -> Result<Plan, RecoveryError> {
    let view = ClusterView::new(instances);
    let f = view
        .index_of(failed)
        .ok_or_else(|| RecoveryError::UnknownInstance(failed.clone()))?;
    let target = relocation_target(instances, failed, policy)
        .ok_or_else(|| RecoveryError::NoRelocationTarget(failed.clone()))?;
    let orphans = || view.replicas_of(f).iter().map(|&i| &instances[i]);
    Ok(Plan {
        steps: orphans()
            .filter(|o| o.reachable)
            .map(|o| PlannedStep::Repoint {
                replica: o.key.clone(),
                to: target.clone(),
            })
            .collect(),
        lost: orphans()
            .filter(|o| !o.reachable)
            .map(|o| o.key.clone())
            .collect(),
        successor: target,
        candidate: None,
        hand_over: None,
    })
}

#[cfg(test)]
mod tests;
