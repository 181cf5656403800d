//! Replacing a dead master with GTID (orchestrator's recoverDeadMaster, GTID path).

use super::error::RecoveryError;
use super::executor::{Executor, SwitchError};
use super::plan::{self, Start};
use super::record::{Recorder, RecoveryKind, RecoveryRecord, StepKind, clock};
use super::replication::Replication;
use super::{RecoveryContext, StepGuard};
use crate::topology::analysis::Analysis;
use crate::topology::cluster::ClusterView;
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::probe::now_ms;
use futures::future::join_all;

/// Replaces the dead master `failed`. The topology is re-read first: when an earlier
/// recovery of the same failure got as far as a promotion — the successor is
/// `successor_hint` (a caller records it before the promotion), or a writable master
/// that holds everything the failed master's replicas received — that recovery is
/// completed instead of choosing anew, so there is never a second primary. Otherwise
/// the replicas stop receiving, the most advanced eligible one is chosen, catches up
/// from a more advanced excluded one if needed, applies its relay log and is promoted;
/// the other replicas follow it, the old master is fenced if it answers, lost replicas
/// are detached, and a better-ruled replica takes over once it has caught up.
pub async fn recover_dead_master(
    ctx: &RecoveryContext,
    instances: &[Instance],
    failed: &InstanceKey,
    analysis: Option<Analysis>,
    successor_hint: Option<&InstanceKey>,
    guard: &dyn StepGuard,
) -> RecoveryRecord {
    let exec = Executor {
        sql: &ctx.connector,
        ctx,
        guard,
    };
    run(&exec, instances, failed, analysis, successor_hint).await
}

pub(super) async fn run<R: Replication>(
    exec: &Executor<'_, R>,
    instances: &[Instance],
    failed: &InstanceKey,
    analysis: Option<Analysis>,
    successor_hint: Option<&InstanceKey>,
) -> RecoveryRecord {
    let mut rec = Recorder::start(RecoveryKind::DeadMaster, failed.clone(), analysis);
    let result = replace(exec, instances, failed, successor_hint, &mut rec).await;
    rec.end(result)
}

async fn replace<R: Replication>(
    exec: &Executor<'_, R>,
    instances: &[Instance],
    failed: &InstanceKey,
    hint: Option<&InstanceKey>,
    rec: &mut Recorder,
) -> Result<(), RecoveryError> {
    let policy = &exec.ctx.policy;
    let fresh = reread(exec.sql, instances, failed, rec).await;
    let plan = match plan::start(&fresh, failed, hint)? {
        Start::Complete(successor) => plan::completion(&fresh, failed, &successor, policy)?,
        start => {
            // Nothing more can arrive from the dead master; stopping the IO threads
            // freezes what each replica received, so positions can be compared.
            exec.run(rec, &plan::freeze(&fresh, failed)?).await?;
            let view = ClusterView::new(&fresh);
            let f = view
                .index_of(failed)
                .ok_or_else(|| RecoveryError::UnknownInstance(failed.clone()))?;
            let replicas = read_positions(exec.sql, view.replicas_of(f), &fresh, rec).await;
            let keep = match &start {
                Start::Keep(k) => Some(k),
                _ => None,
            };
            let t = clock();
            let plan = plan::dead_master(&replicas, &fresh[f], policy, now_ms(), keep);
            let detail = plan
                .as_ref()
                .map(|p| p.successor.to_string())
                .unwrap_or_default();
            rec.step(StepKind::ChooseCandidate, None, t, &plan, detail);
            plan?
        }
    };
    rec.record.candidate = plan.candidate.clone();
    for k in &plan.lost {
        rec.lost(k);
    }
    if !plan.steps.iter().any(|s| s.kind() == StepKind::Promote) {
        // Completing onto a successor that is writable already.
        rec.record.successor = Some(plan.successor.clone());
    }
    exec.run(rec, &plan.steps).await?;

    if let Some(switch) = &plan.hand_over {
        let t = clock();
        let r = exec.switch(rec, switch).await;
        let r = match r {
            Ok(()) => Ok(()),
            Err(SwitchError::Failed(e @ RecoveryError::Abandoned { .. })) => return Err(e),
            Err(SwitchError::RolledBack(e) | SwitchError::Failed(e)) => Err(e),
        };
        rec.step(
            StepKind::HandOver,
            Some(&switch.to),
            t,
            &r,
            format!("from {}", switch.from),
        );
        if r.is_err() {
            // The promoted replica stays the successor: the switch made it writable
            // again, or failed after the point where that is known.
            rec.record.successor = Some(switch.from.clone());
        }
    }
    Ok(())
}

/// Re-reads every instance that was reachable (but the failed one, which may hang
/// until a timeout): an earlier recovery may have changed them.
async fn reread<R: Replication>(
    sql: &R,
    instances: &[Instance],
    failed: &InstanceKey,
    rec: &mut Recorder,
) -> Vec<Instance> {
    let t = clock();
    let fresh: Vec<Instance> = join_all(instances.iter().map(|i| async move {
        if !i.reachable || &i.key == failed {
            return i.clone();
        }
        let now = sql.probe(&i.key).await;
        if now.reachable {
            now
        } else {
            Instance {
                reachable: false,
                error: now.error,
                ..i.clone()
            }
        }
    }))
    .await;
    let writable: Vec<String> = fresh
        .iter()
        .filter(|i| i.reachable && i.is_master() && i.is_writable())
        .map(|i| i.key.to_string())
        .collect();
    let detail = format!(
        "{} of {} reachable; writable masters: {}",
        fresh.iter().filter(|i| i.reachable).count(),
        fresh.len(),
        if writable.is_empty() {
            "none".into()
        } else {
            writable.join(" ")
        }
    );
    rec.step::<(), String>(StepKind::ReadTopology, None, t, &Ok(()), detail);
    fresh
}

/// Re-reads the replicas once they stopped receiving: their received positions are
/// final now.
async fn read_positions<R: Replication>(
    sql: &R,
    replicas: &[usize],
    fresh: &[Instance],
    rec: &mut Recorder,
) -> Vec<Instance> {
    let t = clock();
    let replicas: Vec<Instance> = join_all(replicas.iter().map(|&i| async move {
        let r = &fresh[i];
        if r.reachable {
            sql.probe(&r.key).await
        } else {
            r.clone()
        }
    }))
    .await;
    let positions: Vec<String> = replicas
        .iter()
        .map(|r| {
            format!(
                "{}={}",
                r.key,
                r.received_position()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into())
            )
        })
        .collect();
    rec.step::<(), String>(
        StepKind::ReadPositions,
        None,
        t,
        &Ok(()),
        positions.join(" "),
    );
    replicas
}
