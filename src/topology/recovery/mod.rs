//! Recovery: replacing a dead master, relocating the replicas of a dead intermediate
//! master, graceful takeover, and changing which replicas acknowledge a semi-sync
//! master's commits ([`semi_sync`]). Each is a pure plan ([`plan`]) of steps decided from
//! probe results, run by a thin executor over the [`Replication`] trait, which asks a
//! [`StepGuard`] before every step and records every step in a [`RecoveryRecord`].

mod dead_master;
pub mod dry_run;
mod error;
mod executor;
mod guard;
mod intermediate;
pub mod plan;
mod record;
mod replication;
pub mod semi_sync;
mod takeover;

pub use dead_master::recover_dead_master;
pub use error::{RecoveryError, StepError};
pub use guard::{StepGuard, Unguarded};
pub use intermediate::recover_dead_intermediate_master;
pub use plan::PlannedStep;
pub use record::{Outcome, RecoveryKind, RecoveryRecord, Step, StepKind, StoppedBefore};
pub use replication::{Replication, point_to, set_read_only, start_replica};
pub use takeover::graceful_takeover;

use super::analysis::{Analysis, AnalysisCode};
use super::dialect::ReplicationCredentials;
use super::instance::{Instance, InstanceKey};
use super::policy::Policy;
use super::session::Connector;
use executor::Executor;
use record::Recorder;

/// What a recovery needs besides the topology.
#[derive(Debug, Clone)]
pub struct RecoveryContext {
    /// Opens sessions.
    pub connector: Connector,
    /// Policy.
    pub policy: Policy,
    /// Credentials for replicas that have none yet (an old master rejoining).
    pub replication: ReplicationCredentials,
}

/// Runs the recovery the first actionable analysis calls for; none when nothing is
/// actionable. `guard` is asked before every step; `successor_hint` is the successor
/// an interrupted recovery of a dead master recorded (see [`recover_dead_master`]).
pub async fn recover(
    ctx: &RecoveryContext,
    instances: &[Instance],
    analyses: &[Analysis],
    guard: &dyn StepGuard,
    successor_hint: Option<&InstanceKey>,
) -> Option<RecoveryRecord> {
    let a = analyses.iter().find(|a| a.actionable)?;
    let exec = Executor {
        sql: &ctx.connector,
        ctx,
        guard,
    };
    let analysis = Some(a.clone());
    Some(match a.code {
        c if c.is_master_failure() => {
            dead_master::run(&exec, instances, &a.instance, analysis, successor_hint).await
        }
        AnalysisCode::NoWriteableMasterStructureWarning => make_writable(&exec, a).await,
        c if c.is_semi_sync_failure() => semi_sync::run(&exec, instances, a).await,
        _ => intermediate::run(&exec, instances, &a.instance, analysis).await,
    })
}

async fn make_writable<R: Replication>(exec: &Executor<'_, R>, a: &Analysis) -> RecoveryRecord {
    let mut rec = Recorder::start(
        RecoveryKind::NonWriteableMaster,
        a.instance.clone(),
        Some(a.clone()),
    );
    let steps = [PlannedStep::MakeWritable {
        master: a.instance.clone(),
    }];
    let result = exec.run(&mut rec, &steps).await;
    rec.end(result)
}

#[cfg(test)]
mod tests;
