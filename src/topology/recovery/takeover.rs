//! Graceful takeover: a planned switchover to a named or automatically chosen replica
//! (orchestrator's GracefulMasterTakeover), with a deadline and rollback.

use super::record::{Outcome, Recorder, RecoveryKind, RecoveryRecord, StepKind, clock};
use super::{RecoveryContext, own_position, point_to, promote, set_read_only, wait_applied};
use crate::topology::candidate::choose_candidate;
use crate::topology::cluster::ClusterView;
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::probe::now_ms;
use futures::future::join_all;
use std::time::Duration;

/// Why a switch did not complete.
#[derive(Debug)]
pub(super) enum SwitchError {
    /// The old primary was made writable again; nothing changed.
    RolledBack(String),
    /// A step after the point of no return failed.
    Failed(String),
}

impl std::fmt::Display for SwitchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RolledBack(e) => write!(f, "rolled back: {e}"),
            Self::Failed(e) => f.write_str(e),
        }
    }
}

/// Switches the primary role from `primary` to `target`, a replica of it: the primary
/// turns read-only, the target applies everything it wrote (bounded by the policy's
/// takeover timeout, rolling back on expiry), the target is promoted, `others` are
/// repointed to it, and the old primary becomes its replica.
pub(super) async fn switch(
    ctx: &RecoveryContext,
    rec: &mut Recorder,
    primary: &InstanceKey,
    target: &InstanceKey,
    others: &[InstanceKey],
) -> Result<(), SwitchError> {
    let c = &ctx.connector;
    let t = clock();
    let r = set_read_only(c, primary, true).await;
    rec.step(StepKind::SetReadOnly, Some(primary), t, &r, "");
    r.map_err(|e| SwitchError::Failed(e.to_string()))?;

    let timeout = Duration::from_millis(ctx.policy.takeover_catch_up_timeout_ms);
    let t = clock();
    let caught_up = match own_position(c, primary).await {
        Ok(position) => match wait_applied(c, target, &position, timeout).await {
            Ok(true) => Ok(format!("applied {position}")),
            Ok(false) => Err(format!(
                "{target} did not apply {position} within {timeout:?}"
            )),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let detail = caught_up.clone().unwrap_or_default();
    rec.step(StepKind::WaitCatchUp, Some(target), t, &caught_up, detail);
    if let Err(e) = caught_up {
        let t = clock();
        let r = set_read_only(c, primary, false).await;
        rec.step(
            StepKind::Rollback,
            Some(primary),
            t,
            &r,
            "read_only=0 on the old primary",
        );
        return Err(match r {
            Ok(()) => SwitchError::RolledBack(e),
            Err(re) => SwitchError::Failed(format!("{e}; rollback failed: {re}")),
        });
    }

    let t = clock();
    let r = promote(c, target, true).await;
    rec.step(StepKind::Promote, Some(target), t, &r, "");
    r.map_err(|e| SwitchError::Failed(e.to_string()))?;
    rec.writable();

    let moves = join_all(
        others
            .iter()
            .map(|k| async move { (k, clock(), point_to(c, k, target, None, false).await) }),
    )
    .await;
    for (k, t, r) in &moves {
        rec.step(StepKind::Repoint, Some(k), *t, r, format!("to {target}"));
        if r.is_err() {
            rec.lost(k);
        }
    }

    let t = clock();
    let r = point_to(c, primary, target, Some(&ctx.replication), true).await;
    rec.step(
        StepKind::DemoteOldPrimary,
        Some(primary),
        t,
        &r,
        format!("now replicates from {target}"),
    );
    if r.is_err() {
        rec.lost(primary);
    }
    Ok(())
}

/// Switches over from the cluster's primary to `target`, or to the best replica by
/// candidate choice when none is named (a `prefer` replica before a more advanced
/// neutral one: the takeover waits for it to catch up anyway).
pub async fn graceful_takeover(
    ctx: &RecoveryContext,
    instances: &[Instance],
    target: Option<&InstanceKey>,
) -> RecoveryRecord {
    let view = ClusterView::new(instances);
    let Some(p) = view.primary() else {
        let unknown = InstanceKey::new("", 0);
        return Recorder::start(RecoveryKind::GracefulTakeover, unknown, None)
            .finish(Outcome::Failed, Some("the cluster has no primary".into()));
    };
    let primary = &instances[p];
    let mut rec = Recorder::start(RecoveryKind::GracefulTakeover, primary.key.clone(), None);
    let replicas: Vec<Instance> = view
        .replicas_of(p)
        .iter()
        .map(|&i| instances[i].clone())
        .collect();
    let chosen = match target {
        Some(t) => match view.index_of(t) {
            Some(i) if view.source_of(i) == Some(p) && instances[i].reachable => {
                Ok(instances[i].key.clone())
            }
            Some(_) => Err(format!(
                "{t} is not a reachable direct replica of the primary {}",
                primary.key
            )),
            None => Err(format!("{t} is not an instance of the cluster")),
        },
        None => {
            let t = clock();
            let choice = choose_candidate(&replicas, primary, &ctx.policy, now_ms());
            rec.step(StepKind::ChooseCandidate, None, t, &choice, "");
            choice
                .map(|c| {
                    let target = c.hand_over_to.clone().unwrap_or_else(|| c.promoted.clone());
                    rec.record.candidate = Some(c);
                    target
                })
                .map_err(|e| e.to_string())
        }
    };
    let target = match chosen {
        Ok(t) => t,
        Err(e) => return rec.finish(Outcome::Failed, Some(e)),
    };
    if !primary.reachable {
        return rec.finish(
            Outcome::Failed,
            Some(format!("the primary {} cannot be reached", primary.key)),
        );
    }
    let others: Vec<InstanceKey> = replicas
        .iter()
        .filter(|r| r.reachable && r.key != target)
        .map(|r| r.key.clone())
        .collect();
    for r in replicas.iter().filter(|r| !r.reachable) {
        rec.lost(&r.key);
    }
    match switch(ctx, &mut rec, &primary.key.clone(), &target, &others).await {
        Ok(()) => {
            rec.record.successor = Some(target);
            rec.finish(Outcome::Recovered, None)
        }
        Err(SwitchError::RolledBack(e)) => rec.finish(Outcome::RolledBack, Some(e)),
        Err(SwitchError::Failed(e)) => rec.finish(Outcome::Failed, Some(e)),
    }
}
