//! Relocating the replicas of a dead intermediate master (orchestrator §4).

use super::error::RecoveryError;
use super::executor::Executor;
use super::record::{Recorder, RecoveryKind, RecoveryRecord, StepKind};
use super::replication::Replication;
use super::{RecoveryContext, StepGuard, plan};
use crate::topology::analysis::Analysis;
use crate::topology::instance::{Instance, InstanceKey};

/// Moves the replicas of the dead intermediate master `failed` under a sibling or its
/// source, with GTID auto-positioning.
pub async fn recover_dead_intermediate_master(
    ctx: &RecoveryContext,
    instances: &[Instance],
    failed: &InstanceKey,
    analysis: Option<Analysis>,
    guard: &dyn StepGuard,
) -> RecoveryRecord {
    let exec = Executor {
        sql: &ctx.connector,
        ctx,
        guard,
    };
    run(&exec, instances, failed, analysis).await
}

pub(super) async fn run<R: Replication>(
    exec: &Executor<'_, R>,
    instances: &[Instance],
    failed: &InstanceKey,
    analysis: Option<Analysis>,
) -> RecoveryRecord {
    let mut rec = Recorder::start(
        RecoveryKind::DeadIntermediateMaster,
        failed.clone(),
        analysis,
    );
    let result = relocate(exec, instances, failed, &mut rec).await;
    rec.end(result)
}

async fn relocate<R: Replication>(
    exec: &Executor<'_, R>,
    instances: &[Instance],
    failed: &InstanceKey,
    rec: &mut Recorder,
) -> Result<(), RecoveryError> {
    let plan = plan::intermediate(instances, failed, &exec.ctx.policy)?;
    for k in &plan.lost {
        rec.lost(k);
    }
    exec.run(rec, &plan.steps).await?;
    let moved = rec
        .record
        .steps
        .iter()
        .any(|s| s.kind == StepKind::Repoint && s.ok);
    if !moved {
        return Err(RecoveryError::NothingMoved(failed.clone()));
    }
    rec.record.successor = Some(plan.successor);
    Ok(())
}
