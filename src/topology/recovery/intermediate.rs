//! Relocating the replicas of a dead intermediate master (orchestrator §4).

use super::record::{Outcome, Recorder, RecoveryKind, RecoveryRecord, StepKind, clock};
use super::{RecoveryContext, point_to};
use crate::topology::analysis::Analysis;
use crate::topology::cluster::ClusterView;
use crate::topology::instance::{Instance, InstanceKey};
use futures::future::join_all;

/// Where the orphaned replicas of a dead intermediate master go: a sibling that can
/// serve them (replicating, logging replica updates, at least as advanced as the dead
/// intermediate master was last seen; same data center first), else up to the
/// intermediate master's own source. Pure.
pub fn relocation_target(
    instances: &[Instance],
    failed: &InstanceKey,
    policy: &crate::topology::policy::Policy,
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

/// Moves the replicas of the dead intermediate master `failed` under a sibling or its
/// source, with GTID auto-positioning.
pub async fn recover_dead_intermediate_master(
    ctx: &RecoveryContext,
    instances: &[Instance],
    failed: &InstanceKey,
    analysis: Option<Analysis>,
) -> RecoveryRecord {
    let mut rec = Recorder::start(
        RecoveryKind::DeadIntermediateMaster,
        failed.clone(),
        analysis,
    );
    let view = ClusterView::new(instances);
    let (Some(f), Some(target)) = (
        view.index_of(failed),
        relocation_target(instances, failed, &ctx.policy),
    ) else {
        return rec.finish(
            Outcome::Failed,
            Some(format!(
                "{failed} has no source or sibling to move its replicas to"
            )),
        );
    };
    let orphans: Vec<&Instance> = view.replicas_of(f).iter().map(|&i| &instances[i]).collect();
    let c = &ctx.connector;
    let moves = join_all(orphans.iter().filter(|o| o.reachable).map(|o| async {
        (
            &o.key,
            clock(),
            point_to(c, &o.key, &target, None, false).await,
        )
    }))
    .await;
    let mut moved = 0;
    for (k, t, r) in &moves {
        rec.step(StepKind::Repoint, Some(k), *t, r, format!("to {target}"));
        if r.is_ok() {
            moved += 1;
        } else {
            rec.lost(k);
        }
    }
    for o in orphans.iter().filter(|o| !o.reachable) {
        rec.lost(&o.key);
    }
    if moved == 0 {
        return rec.finish(Outcome::Failed, Some("no replica could be moved".into()));
    }
    rec.record.successor = Some(target);
    rec.finish(Outcome::Recovered, None)
}
