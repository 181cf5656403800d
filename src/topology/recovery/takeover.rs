//! Graceful takeover: a planned switchover to a named or automatically chosen replica
//! (orchestrator's GracefulMasterTakeover), with a deadline and rollback.

use super::error::RecoveryError;
use super::executor::{Executor, SwitchError};
use super::plan::{self, Switch};
use super::record::{Outcome, Recorder, RecoveryKind, RecoveryRecord, StepKind, clock};
use super::replication::Replication;
use super::{RecoveryContext, StepGuard};
use crate::topology::cluster::ClusterView;
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::probe::now_ms;

/// Switches over from the cluster's primary to `target`, or to the best replica by
/// candidate choice when none is named: the primary turns read-only, the target
/// applies everything it wrote (bounded by the policy's takeover timeout, rolling back
/// on expiry), the target is promoted, the others follow it, and the old primary
/// becomes its replica.
pub async fn graceful_takeover(
    ctx: &RecoveryContext,
    instances: &[Instance],
    target: Option<&InstanceKey>,
    guard: &dyn StepGuard,
) -> RecoveryRecord {
    let exec = Executor {
        sql: &ctx.connector,
        ctx,
        guard,
    };
    run(&exec, instances, target).await
}

pub(super) async fn run<R: Replication>(
    exec: &Executor<'_, R>,
    instances: &[Instance],
    target: Option<&InstanceKey>,
) -> RecoveryRecord {
    let view = ClusterView::new(instances);
    let Some(p) = view.primary() else {
        let unknown = InstanceKey::new("", 0);
        return Recorder::start(RecoveryKind::GracefulTakeover, unknown, None)
            .end(Err(RecoveryError::NoPrimary));
    };
    let primary = instances[p].key.clone();
    let mut rec = Recorder::start(RecoveryKind::GracefulTakeover, primary.clone(), None);
    let t = clock();
    let plan = plan::takeover(instances, p, target, &exec.ctx.policy, now_ms());
    if target.is_none() {
        let chosen = match &plan {
            Err(e @ RecoveryError::NoCandidate(_)) => Err(e),
            _ => Ok(()),
        };
        rec.step(StepKind::ChooseCandidate, None, t, &chosen, "");
    }
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => return rec.end(Err(e)),
    };
    rec.record.candidate = plan.candidate.clone();
    for k in &plan.lost {
        rec.lost(k);
    }
    let switch = Switch {
        from: primary,
        to: plan.successor.clone(),
        steps: plan.steps,
    };
    match exec.switch(&mut rec, &switch).await {
        Ok(()) => rec.end(Ok(())),
        Err(SwitchError::RolledBack(e)) => rec.finish(Outcome::RolledBack, Some(e.to_string())),
        Err(SwitchError::Failed(e)) => rec.end(Err(e)),
    }
}
