//! Runs planned steps over [`Replication`], asking the guard before each, recording
//! each with its duration, and reacting to a failure as the step's kind says: a
//! replica that cannot be repointed is lost, a fence or detach is best effort, and
//! anything else stops the recovery.

use super::RecoveryContext;
use super::error::{RecoveryError, StepError};
use super::guard::StepGuard;
use super::plan::{PlannedStep, Switch};
use super::record::{Recorder, StepKind, clock};
use super::replication::Replication;
use crate::topology::instance::{InstanceKey, ThreadState};
use crate::topology::policy::SqlThreadNotUpToDate;
use futures::future::join_all;
use std::time::{Duration, Instant};

/// The longest single wait between two looks at the applier's progress and errors.
const APPLY_POLL: Duration = Duration::from_millis(500);
/// How long a replica whose IO thread reconnects with semi-sync on may take to
/// acknowledge (it reconnects at once: MASTER_CONNECT_RETRY is 1 s at worst).
const SEMI_SYNC_CONNECT: Duration = Duration::from_secs(5);
/// Between two looks at whether it acknowledges.
const SEMI_SYNC_POLL: Duration = Duration::from_millis(20);

/// How a switch ended when it did not complete.
#[derive(Debug)]
pub(super) enum SwitchError {
    /// The old primary was made writable again; nothing changed.
    RolledBack(RecoveryError),
    /// A step failed past the point where undoing is safe, or the guard stopped it.
    Failed(RecoveryError),
}

/// Runs steps against the instances.
pub(super) struct Executor<'a, R> {
    /// The SQL side.
    pub sql: &'a R,
    /// Policy and replication credentials.
    pub ctx: &'a RecoveryContext,
    /// The caller's veto.
    pub guard: &'a dyn StepGuard,
}

impl<R: Replication> Executor<'_, R> {
    /// Runs `steps` in order. Consecutive steps of a kind that touches one replica each
    /// (stopping IO threads, repointing) run concurrently once the guard allowed each.
    pub async fn run(
        &self,
        rec: &mut Recorder,
        steps: &[PlannedStep],
    ) -> Result<(), RecoveryError> {
        let mut i = 0;
        while i < steps.len() {
            let kind = steps[i].kind();
            let len = if matches!(kind, StepKind::StopReplicaIo | StepKind::Repoint) {
                steps[i..].iter().take_while(|s| s.kind() == kind).count()
            } else {
                1
            };
            let group = &steps[i..i + len];
            let mut allowed = 0;
            let mut refused = None;
            for s in group {
                match self.guard.before(s).await {
                    Ok(()) => allowed += 1,
                    Err(reason) => {
                        refused = Some((s, reason));
                        break;
                    }
                }
            }
            let results = join_all(group[..allowed].iter().map(|s| async move {
                let t = clock();
                (s, t, self.step(s).await)
            }))
            .await;
            for (s, t, r) in results {
                let ok = r.is_ok();
                self.record(rec, s, t, r)?;
                if ok {
                    self.guard.after(s).await;
                }
            }
            if let Some((s, reason)) = refused {
                return Err(RecoveryError::Abandoned {
                    kind: s.kind(),
                    instance: s.instance().clone(),
                    reason,
                });
            }
            i += len;
        }
        Ok(())
    }

    /// Runs a switch; if the target cannot catch up, the old primary is made writable
    /// again.
    pub async fn switch(&self, rec: &mut Recorder, switch: &Switch) -> Result<(), SwitchError> {
        match self.run(rec, &switch.steps).await {
            Ok(()) => Ok(()),
            Err(
                e @ RecoveryError::Step {
                    kind: StepKind::WaitCatchUp,
                    ..
                },
            ) => {
                let undo = [PlannedStep::Rollback {
                    primary: switch.from.clone(),
                }];
                match self.run(rec, &undo).await {
                    Ok(()) => Err(SwitchError::RolledBack(e)),
                    Err(a @ RecoveryError::Abandoned { .. }) => Err(SwitchError::Failed(a)),
                    Err(rollback) => Err(SwitchError::Failed(RecoveryError::RollbackFailed {
                        cause: Box::new(e),
                        rollback: Box::new(rollback),
                    })),
                }
            }
            Err(e) => Err(SwitchError::Failed(e)),
        }
    }

    fn record(
        &self,
        rec: &mut Recorder,
        s: &PlannedStep,
        t: (Instant, u64),
        r: Result<String, StepError>,
    ) -> Result<(), RecoveryError> {
        let key = s.instance();
        match r {
            Ok(detail) => {
                rec.step::<(), String>(s.kind(), Some(key), t, &Ok(()), detail);
                if let PlannedStep::Promote { writable, .. } = s {
                    rec.record.successor = Some(key.clone());
                    if *writable {
                        rec.writable();
                    }
                }
                if let PlannedStep::MakeWritable { .. } = s {
                    rec.record.successor = Some(key.clone());
                    rec.writable();
                }
                Ok(())
            }
            Err(e) => {
                rec.step::<(), _>(s.kind(), Some(key), t, &Err(&e), failure_context(s));
                match s {
                    PlannedStep::StopReplicaIo { .. }
                    | PlannedStep::FenceOldPrimary { .. }
                    | PlannedStep::DetachLostReplica { .. } => Ok(()),
                    PlannedStep::Repoint { replica: k, .. }
                    | PlannedStep::DemoteOldPrimary { primary: k, .. } => {
                        rec.lost(k);
                        Ok(())
                    }
                    _ => Err(RecoveryError::Step {
                        kind: s.kind(),
                        instance: key.clone(),
                        source: Box::new(e),
                    }),
                }
            }
        }
    }

    /// Runs one step; on success, what the record says about it.
    async fn step(&self, s: &PlannedStep) -> Result<String, StepError> {
        let sql = self.sql;
        let policy = &self.ctx.policy;
        Ok(match s {
            PlannedStep::StopReplicaIo { replica } => {
                sql.stop_io(replica).await?;
                String::new()
            }
            PlannedStep::CatchUpFromDonor { candidate, donor } => {
                self.catch_up(candidate, donor)
                    .await
                    .map_err(|e| StepError::Donor {
                        donor: donor.clone(),
                        source: Box::new(e),
                    })?;
                format!("from {donor}")
            }
            PlannedStep::WaitRelayLogApplied { candidate } => {
                self.apply_relay_log(candidate, policy.sql_thread_not_up_to_date)
                    .await?
            }
            PlannedStep::Promote {
                candidate,
                writable,
                semi_sync,
            } => {
                sql.promote(candidate, *writable, *semi_sync).await?;
                if *semi_sync {
                    "semi-sync source on".into()
                } else {
                    String::new()
                }
            }
            PlannedStep::MakeWritable { master } => {
                sql.set_read_only(master, false).await?;
                "read_only=0 on the master".into()
            }
            PlannedStep::Repoint { replica, to } => {
                sql.point_to(replica, to, None, false).await?;
                format!("to {to}")
            }
            PlannedStep::FenceOldPrimary { failed } => {
                sql.set_read_only(failed, true).await?;
                "read_only=1".into()
            }
            PlannedStep::DetachLostReplica { replica, from } => {
                sql.detach(replica, from).await?;
                String::new()
            }
            PlannedStep::SetReadOnly { primary } => {
                sql.set_read_only(primary, true).await?;
                String::new()
            }
            PlannedStep::WaitCatchUp { target, primary } => {
                let timeout = Duration::from_millis(policy.takeover_catch_up_timeout_ms);
                let position = sql.own_position(primary).await?;
                if !sql.wait_applied(target, &position, timeout).await? {
                    return Err(StepError::NotApplied {
                        instance: target.clone(),
                        position,
                        after: timeout,
                    });
                }
                format!("applied {position}")
            }
            PlannedStep::DemoteOldPrimary { primary, to } => {
                sql.point_to(primary, to, Some(&self.ctx.replication), true)
                    .await?;
                format!("now replicates from {to}")
            }
            PlannedStep::Rollback { primary } => {
                sql.set_read_only(primary, false).await?;
                "read_only=0 on the old primary".into()
            }
            PlannedStep::EnableSemiSync { replica } => {
                sql.set_semi_sync_replica(replica, true).await?;
                self.wait_acknowledging(replica).await?;
                "semi-sync on, IO thread restarted; acknowledging".into()
            }
            PlannedStep::DisableSemiSync { replica } => {
                sql.set_semi_sync_replica(replica, false).await?;
                "semi-sync off, IO thread restarted".into()
            }
            PlannedStep::ReleaseWaitingCommits { primary } => {
                sql.release_waiting_commits(primary)
                    .await
                    .map_err(|source| StepError::StillLocked {
                        primary: primary.clone(),
                        source,
                    })?;
                let now = sql.probe(primary).await.semi_sync;
                format!(
                    "acknowledged; {} semi-sync replica(s), {} commit(s) waiting",
                    now.master_clients, now.master_wait_sessions
                )
            }
        })
    }

    /// Waits until `replica`, whose IO thread just reconnected with semi-sync on,
    /// reports semi-sync active on its connection.
    async fn wait_acknowledging(&self, replica: &InstanceKey) -> Result<(), StepError> {
        let started = Instant::now();
        loop {
            if self.sql.probe(replica).await.semi_sync.replica_status {
                return Ok(());
            }
            if started.elapsed() >= SEMI_SYNC_CONNECT {
                return Err(StepError::NotAcknowledging {
                    instance: replica.clone(),
                    after: SEMI_SYNC_CONNECT,
                });
            }
            tokio::time::sleep(SEMI_SYNC_POLL).await;
        }
    }

    /// Lets `candidate` fetch from `donor` what only the donor received: the donor
    /// first applies its own relay log (its binary log then holds everything), the
    /// candidate replicates from it up to that position, then stops. Both waits go on
    /// while the applier progresses: the donor's transactions exist nowhere else.
    async fn catch_up(
        &self,
        candidate: &InstanceKey,
        donor: &InstanceKey,
    ) -> Result<(), StepError> {
        let sql = self.sql;
        self.apply_relay_log(donor, SqlThreadNotUpToDate::Delay)
            .await?;
        let target = sql.own_position(donor).await?;
        sql.point_to(candidate, donor, None, false).await?;
        let caught_up = self
            .wait_applying(candidate, &target, SqlThreadNotUpToDate::Delay)
            .await;
        sql.stop_replica(candidate).await?;
        caught_up.map(drop)
    }

    /// Waits for `key` to apply everything it received.
    async fn apply_relay_log(
        &self,
        key: &InstanceKey,
        mode: SqlThreadNotUpToDate,
    ) -> Result<String, StepError> {
        let received = self
            .sql
            .probe(key)
            .await
            .received_position()
            .ok_or_else(|| StepError::UnknownPosition(key.clone()))?
            .to_string();
        self.wait_applying(key, &received, mode).await
    }

    /// Waits for `key` to apply `position`, looking at its applier between waits. An
    /// applier stopped on an error fails at once; otherwise `mode` says what the
    /// relay-log bound means: `Delay` fails only after that long without progress,
    /// `Fail` after that long in all, `Promote` succeeds then, naming what was not
    /// applied.
    async fn wait_applying(
        &self,
        key: &InstanceKey,
        position: &str,
        mode: SqlThreadNotUpToDate,
    ) -> Result<String, StepError> {
        let sql = self.sql;
        let bound = Duration::from_millis(self.ctx.policy.relay_log_apply_timeout_ms);
        let slice = bound.min(APPLY_POLL);
        let started = Instant::now();
        let mut progressed = started;
        let mut applied = None;
        loop {
            if sql.wait_applied(key, position, slice).await? {
                return Ok(format!("applied {position}"));
            }
            let now = sql.probe(key).await;
            let executed = now.executed_position().map(|p| p.to_string());
            if executed != applied {
                applied = executed;
                progressed = Instant::now();
            }
            let applied_text = applied.clone().unwrap_or_else(|| "?".into());
            let unapplied = || {
                format!(
                    "promoting although not all is applied: received {position}, applied only {applied_text}"
                )
            };
            if let Some(r) = now
                .replication
                .as_ref()
                .filter(|r| r.last_sql_errno != 0 && r.sql_running != ThreadState::Yes)
            {
                if mode == SqlThreadNotUpToDate::Promote {
                    return Ok(unapplied());
                }
                return Err(StepError::ApplierError {
                    instance: key.clone(),
                    errno: r.last_sql_errno,
                    error: r.last_sql_error.clone(),
                });
            }
            match mode {
                SqlThreadNotUpToDate::Delay if progressed.elapsed() >= bound => {
                    return Err(StepError::NoProgress {
                        instance: key.clone(),
                        after: bound,
                        received: position.to_string(),
                        applied: applied_text,
                    });
                }
                SqlThreadNotUpToDate::Fail if started.elapsed() >= bound => {
                    return Err(StepError::NotApplied {
                        instance: key.clone(),
                        position: position.to_string(),
                        after: bound,
                    });
                }
                SqlThreadNotUpToDate::Promote if started.elapsed() >= bound => {
                    return Ok(unapplied());
                }
                _ => {}
            }
        }
    }
}

/// What a failed step's record detail starts with.
fn failure_context(s: &PlannedStep) -> String {
    match s {
        PlannedStep::Repoint { to, .. } | PlannedStep::DemoteOldPrimary { to, .. } => {
            format!("to {to}")
        }
        PlannedStep::FenceOldPrimary { .. } => "not fenced".into(),
        _ => String::new(),
    }
}
