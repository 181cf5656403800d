//! Replacing a dead master with GTID (orchestrator's recoverDeadMaster, GTID path).

use super::record::{Outcome, Recorder, RecoveryKind, RecoveryRecord, StepKind, clock};
use super::{
    RecoveryContext, detach, own_position, point_to, promote, set_read_only, stop_io, wait_applied,
};
use crate::topology::analysis::Analysis;
use crate::topology::candidate::choose_candidate;
use crate::topology::cluster::ClusterView;
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::probe::{now_ms, probe};
use futures::future::join_all;
use std::time::Duration;

/// Replaces the dead master `failed`: stops the replicas' IO threads, chooses the most
/// advanced eligible replica, lets it catch up from a more advanced excluded one if
/// needed, waits for its relay log, promotes it, repoints the other replicas, fences
/// the old master if it answers, detaches lost replicas, and hands over to a
/// better-ruled replica once that one has caught up.
pub async fn recover_dead_master(
    ctx: &RecoveryContext,
    instances: &[Instance],
    failed: &InstanceKey,
    analysis: Option<Analysis>,
) -> RecoveryRecord {
    let mut rec = Recorder::start(RecoveryKind::DeadMaster, failed.clone(), analysis);
    match run(ctx, instances, failed, &mut rec).await {
        Ok(()) => rec.finish(Outcome::Recovered, None),
        Err(e) => rec.finish(Outcome::Failed, Some(e)),
    }
}

async fn run(
    ctx: &RecoveryContext,
    instances: &[Instance],
    failed: &InstanceKey,
    rec: &mut Recorder,
) -> Result<(), String> {
    let c = &ctx.connector;
    let view = ClusterView::new(instances);
    let f = view
        .index_of(failed)
        .ok_or_else(|| format!("{failed} is not an instance of the cluster"))?;
    let dead = &instances[f];
    let replicas: Vec<&Instance> = view.replicas_of(f).iter().map(|&i| &instances[i]).collect();
    if replicas.is_empty() {
        return Err(format!("{failed} has no replicas to promote"));
    }

    // Nothing more can arrive from the dead master; stopping the IO threads freezes
    // what each replica received, so positions can be compared.
    let reachable: Vec<&InstanceKey> = replicas
        .iter()
        .filter(|r| r.reachable)
        .map(|r| &r.key)
        .collect();
    let stops = join_all(
        reachable
            .iter()
            .map(|k| async move { (*k, clock(), stop_io(c, k).await) }),
    )
    .await;
    for (k, t, r) in &stops {
        rec.step(StepKind::StopReplicaIo, Some(k), *t, r, "");
    }

    let t = clock();
    let fresh: Vec<Instance> = join_all(replicas.iter().map(|r| async move {
        if r.reachable {
            probe(c, &r.key).await
        } else {
            (*r).clone()
        }
    }))
    .await;
    let positions: Vec<String> = fresh
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

    let t = clock();
    let choice = choose_candidate(&fresh, dead, &ctx.policy, now_ms());
    rec.step(
        StepKind::ChooseCandidate,
        None,
        t,
        &choice,
        choice
            .as_ref()
            .map(|c| c.promoted.to_string())
            .unwrap_or_default(),
    );
    let choice = choice.map_err(|e| e.to_string())?;
    rec.record.candidate = Some(choice.clone());
    let promoted = choice.promoted.clone();

    if let Some(donor) = choice.ahead.first() {
        let t = clock();
        let r = catch_up_from(ctx, &promoted, donor).await;
        rec.step(
            StepKind::CatchUpFromDonor,
            Some(&promoted),
            t,
            &r,
            format!("from {donor}"),
        );
        if r.is_err() {
            // The transactions only the donor has cannot be saved: it is lost.
            for k in &choice.ahead {
                rec.lost(k);
            }
        }
    }

    let t = clock();
    let applied = wait_relay_log(ctx, &promoted).await;
    let detail = applied.clone().unwrap_or_default();
    rec.step(
        StepKind::WaitRelayLogApplied,
        Some(&promoted),
        t,
        &applied,
        detail,
    );
    applied?;

    let t = clock();
    let r = promote(c, &promoted, ctx.policy.apply_promotion).await;
    rec.step(StepKind::Promote, Some(&promoted), t, &r, "");
    r.map_err(|e| e.to_string())?;
    rec.writable();
    rec.record.successor = Some(promoted.clone());

    let excluded_for_errant = |k: &InstanceKey| {
        choice.ranking.iter().any(|r| {
            &r.instance == k
                && matches!(
                    r.excluded,
                    Some(crate::topology::candidate::Exclusion::ErrantGtids(_))
                )
        })
    };
    let movable: Vec<&InstanceKey> = fresh
        .iter()
        .filter(|r| r.reachable && r.key != promoted && !excluded_for_errant(&r.key))
        .filter(|r| !rec.record.lost_replicas.contains(&r.key))
        .map(|r| &r.key)
        .collect();
    let moves = join_all(
        movable
            .iter()
            .map(|k| async { (*k, clock(), point_to(c, k, &promoted, None, false).await) }),
    )
    .await;
    for (k, t, r) in &moves {
        rec.step(StepKind::Repoint, Some(k), *t, r, format!("to {promoted}"));
        if r.is_err() {
            rec.lost(k);
        }
    }
    for r in fresh
        .iter()
        .filter(|r| !r.reachable || excluded_for_errant(&r.key))
    {
        rec.lost(&r.key);
    }

    // If the old master is alive after all (it only looked dead), it must not take writes.
    let t = clock();
    let fenced = set_read_only(c, failed, true).await;
    rec.step(
        StepKind::FenceOldPrimary,
        Some(failed),
        t,
        &fenced,
        if fenced.is_ok() {
            "read_only=1"
        } else {
            "unreachable"
        },
    );

    if ctx.policy.detach_lost_replicas {
        let lost: Vec<InstanceKey> = rec.record.lost_replicas.clone();
        for k in lost
            .iter()
            .filter(|k| fresh.iter().any(|r| &r.key == *k && r.reachable))
        {
            let t = clock();
            let r = detach(c, k, failed).await;
            rec.step(StepKind::DetachLostReplica, Some(k), t, &r, "");
        }
    }

    if let Some(better) = choice.hand_over_to.as_ref().filter(|b| movable.contains(b)) {
        let others: Vec<InstanceKey> = movable
            .iter()
            .filter(|k| **k != better)
            .map(|k| (*k).clone())
            .collect();
        let t = clock();
        let r = super::takeover::switch(ctx, rec, &promoted, better, &others).await;
        rec.step(
            StepKind::HandOver,
            Some(better),
            t,
            &r,
            format!("from {promoted}"),
        );
        if r.is_ok() {
            rec.record.successor = Some(better.clone());
        }
    }
    Ok(())
}

/// Lets `candidate` fetch from `donor` what only the donor received: the donor first
/// applies its own relay log (its binary log then holds everything), the candidate
/// replicates from it up to that position, then stops.
async fn catch_up_from(
    ctx: &RecoveryContext,
    candidate: &InstanceKey,
    donor: &InstanceKey,
) -> Result<(), String> {
    let c = &ctx.connector;
    let timeout = Duration::from_millis(ctx.policy.relay_log_apply_timeout_ms);
    let donor_state = probe(c, donor).await;
    let received = donor_state
        .received_position()
        .ok_or("donor position unknown")?
        .to_string();
    if !wait_applied(c, donor, &received, timeout)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "{donor} did not apply its relay log within {timeout:?}"
        ));
    }
    let target = own_position(c, donor).await.map_err(|e| e.to_string())?;
    point_to(c, candidate, donor, None, false)
        .await
        .map_err(|e| e.to_string())?;
    let caught_up = wait_applied(c, candidate, &target, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let mut s = c.connect(candidate).await.map_err(|e| e.to_string())?;
    let stop = s.dialect.stop_replica();
    s.exec(&stop).await.map_err(|e| e.to_string())?;
    if caught_up {
        Ok(())
    } else {
        Err(format!("did not reach {target} within {timeout:?}"))
    }
}

/// Waits for the candidate to apply everything it received. orchestrator's
/// Fail/DelayMasterPromotionIfSQLThreadNotUpToDate decide what a timeout means.
async fn wait_relay_log(ctx: &RecoveryContext, candidate: &InstanceKey) -> Result<String, String> {
    let c = &ctx.connector;
    let p = &ctx.policy;
    let state = probe(c, candidate).await;
    let received = state
        .received_position()
        .ok_or("candidate position unknown")?
        .to_string();
    let bound = Duration::from_millis(p.relay_log_apply_timeout_ms);
    let mut last = state.executed_position();
    loop {
        if wait_applied(c, candidate, &received, bound)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(format!("applied {received}"));
        }
        if p.fail_master_promotion_if_sql_thread_not_up_to_date {
            return Err(format!(
                "relay log not applied within {bound:?} (FailMasterPromotionIfSQLThreadNotUpToDate)"
            ));
        }
        if !p.delay_master_promotion_if_sql_thread_not_up_to_date {
            // orchestrator's default: promote anyway; what was not applied is lost.
            return Ok(format!(
                "not all of {received} applied within {bound:?}; promoting anyway"
            ));
        }
        let now = probe(c, candidate).await.executed_position();
        if now == last {
            return Err(
                "relay log apply made no progress (DelayMasterPromotionIfSQLThreadNotUpToDate)"
                    .into(),
            );
        }
        last = now;
    }
}
