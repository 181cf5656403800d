//! Running a recovery from the operator: register it in the status, fence the failed
//! primary's role label, let the engine recover, commit the successor to
//! `status.primary`, and record the outcome.
//!
//! Invariants:
//! - A recovery is registered (`status.recoveries`, outcome `running`) with a
//!   `resourceVersion` precondition before anything changes. Two leaders racing on the
//!   same failure cannot both register: the second write conflicts and that leader
//!   re-reads and decides again (and sees the running recovery).
//! - The failed primary loses its `korc.dev/role` label first, so the `-primary`
//!   Service stops sending it traffic even before the promotion; this never waits more
//!   than [`FENCE_BOUND`]. The successor gets the label as soon as it is writable.
//! - Before every step the leader checks it still leads, and before the promotion it
//!   commits the successor to `status.primary` (precondition again): the commit point.
//!   A leader that lost its Lease stops between two steps and leaves the registered
//!   recovery to the next leader, which completes it when a successor was committed
//!   and abandons it otherwise.
//! - Pods are named in the record, as everywhere in the status.

use super::controller::{Context, write_status};
use super::decide::{RECOVERY_HISTORY, RUNNING};
use super::hooks::jobs::{self, Blocking};
use super::hooks::{self, Ending, HookPoint};
use super::status::{Member, code_name, mark_recovering, pod_of};
use crate::api::{MySQLCluster, MySQLClusterStatus, RecoveryStatus, RecoveryStepStatus};
use crate::provisioning::ROLE_LABEL;
use crate::topology::analysis::Analysis;
use crate::topology::instance::Instance;
use crate::topology::recovery::{
    Outcome, PlannedStep, RecoveryContext, RecoveryRecord, StepGuard, StepKind, graceful_takeover,
    recover, recover_dead_master,
};
use crate::{Error, Result};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use std::time::Duration;

/// The longest the role-label fence may delay a promotion.
pub const FENCE_BOUND: Duration = Duration::from_millis(500);

/// A new recovery's id: short enough to read in `kubectl describe`.
pub(crate) fn recovery_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// The registration of a new recovery: outcome `running`, by this leader, with its
/// `preFailover` hooks pending.
pub fn registration(
    cluster: &MySQLCluster,
    analysis: &Analysis,
    members: &[Member],
    leader: &str,
    now: Timestamp,
) -> RecoveryStatus {
    let kind = if analysis.code.is_master_failure() {
        "DeadMaster"
    } else {
        "DeadIntermediateMaster"
    };
    let id = recovery_id();
    RecoveryStatus {
        hooks: hooks::entries(
            cluster.spec.hooks.as_ref(),
            &[HookPoint::PreFailover],
            &cluster.name_any(),
            &id,
        ),
        id,
        kind: kind.into(),
        analysis_code: Some(code_name(analysis.code)),
        failed: pod_of(members, &analysis.instance),
        replicas: analysis
            .replicas
            .iter()
            .map(|k| pod_of(members, k))
            .collect(),
        outcome: RUNNING.into(),
        leader: leader.into(),
        started_at: Time(now),
        ..RecoveryStatus::default()
    }
}

/// The status with `record` added (or replacing the entry with its id), the history
/// bounded.
pub fn with_recovery(status: &MySQLClusterStatus, record: RecoveryStatus) -> MySQLClusterStatus {
    let mut s = status.clone();
    match s.recoveries.iter_mut().find(|r| r.id == record.id) {
        Some(r) => *r = record,
        None => s.recoveries.push(record),
    }
    let excess = s.recoveries.len().saturating_sub(RECOVERY_HISTORY);
    s.recoveries.drain(..excess);
    s
}

/// The registered recovery completed with the engine's record: successor, lost
/// The engine names instances by address; the status names them by pod, in the
/// record's error and step details too.
fn by_pod(text: &str, members: &[Member]) -> String {
    members.iter().fold(text.to_string(), |t, m| {
        let t = t.replace(&m.key.to_string(), &m.pod);
        match &m.address {
            Some(a) => t.replace(&a.to_string(), &m.pod),
            None => t,
        }
    })
}

/// replicas, steps and outcome, instances named by pod.
pub fn completed(
    registered: &RecoveryStatus,
    record: &RecoveryRecord,
    members: &[Member],
    now: Timestamp,
) -> RecoveryStatus {
    let outcome = match record.outcome {
        Outcome::Recovered => "recovered",
        Outcome::Failed => "failed",
        Outcome::RolledBack => "rolledBack",
        Outcome::Abandoned => "abandoned",
    };
    let started_ms = registered.started_at.0.as_millisecond();
    RecoveryStatus {
        write_outage_ms: write_outage_ms(record),
        successor: record.successor.as_ref().map(|k| pod_of(members, k)),
        lost_replicas: record
            .lost_replicas
            .iter()
            .map(|k| pod_of(members, k))
            .collect(),
        outcome: outcome.into(),
        error: record.error.as_deref().map(|e| by_pod(e, members)),
        ended_at: Some(Time(now)),
        writable_after_ms: record
            .writable_after_micros
            .map(|us| (record.started_at_ms as i64 - started_ms).max(0) + us as i64 / 1000),
        steps: record
            .steps
            .iter()
            .map(|s| RecoveryStepStatus {
                kind: serde_json::to_value(s.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                instance: s.instance.as_ref().map(|k| pod_of(members, k)),
                duration_ms: format!("{:.3}", s.duration_micros as f64 / 1000.0),
                ok: s.ok,
                detail: (!s.detail.is_empty()).then(|| by_pod(&s.detail, members)),
            })
            .collect(),
        ..registered.clone()
    }
}

/// For a switchover: from the old primary turning read-only until the end of the
/// promotion.
fn write_outage_ms(record: &RecoveryRecord) -> Option<i64> {
    let read_only = record
        .steps
        .iter()
        .find(|s| s.kind == StepKind::SetReadOnly && s.ok)?;
    let promoted = record
        .steps
        .iter()
        .rev()
        .find(|s| s.kind == StepKind::Promote && s.ok)?;
    let end = promoted.started_at_ms + promoted.duration_micros / 1000;
    Some(end.saturating_sub(read_only.started_at_ms) as i64)
}

/// Registers, fences and runs the recovery of `analysis`; returns the cluster as last
/// written. A conflict at registration means another leader acted: nothing was done.
pub async fn run(
    ctx: &Context,
    cluster: &MySQLCluster,
    members: &[Member],
    instances: &[Instance],
    analysis: &Analysis,
    engine: &RecoveryContext,
) -> Result<MySQLCluster> {
    let status = cluster.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let registered = registration(cluster, analysis, members, &ctx.identity, now);
    let mut status = with_recovery(&status, registered.clone());
    mark_recovering(
        &mut status,
        format!(
            "{} recovery {} of {} is running",
            registered.kind, registered.id, registered.failed
        ),
        now,
    );
    let cluster = write_status(ctx, cluster, status).await?;
    tracing::info!(cluster = %cluster.name_any(), id = %registered.id,
        failed = %registered.failed, code = ?analysis.code, "recovery registered");
    proceed(
        ctx,
        cluster,
        members,
        instances,
        analysis,
        &registered,
        engine,
    )
    .await
}

/// Runs a registered recovery: fences the failed primary's role label, waits for the
/// `preFailover` hooks (a hook that does not succeed aborts it), lets the engine
/// recover, and records the outcome.
async fn proceed(
    ctx: &Context,
    cluster: MySQLCluster,
    members: &[Member],
    instances: &[Instance],
    analysis: &Analysis,
    registered: &RecoveryStatus,
    engine: &RecoveryContext,
) -> Result<MySQLCluster> {
    if analysis.code.is_master_failure() {
        set_role_label(ctx, &cluster, &registered.failed, None).await;
    }
    let cluster = match jobs::run_blocking(ctx, cluster, &registered.id).await? {
        Blocking::Passed(cluster) => cluster,
        Blocking::Aborted(cluster, why) => {
            let why = format!("recovery aborted: {why}");
            return abort(ctx, &cluster, &registered.id, why, Ending::Unsuccessful).await;
        }
        Blocking::LostLeadership => {
            return Err(Error::Invalid(format!(
                "{} stopped leading while recovery {} waited for its hooks",
                ctx.identity, registered.id
            )));
        }
    };
    let guard = Commit::new(ctx, members, registered, cluster);
    let record = recover(
        engine,
        instances,
        std::slice::from_ref(analysis),
        &guard,
        None,
    )
    .await
    .ok_or_else(|| Error::Invalid(format!("{:?} is not actionable", analysis.code)))?;
    finish(ctx, guard, registered, &record, members).await
}

/// Ends the registered recovery `id` without changing the topology, because a
/// blocking hook did not succeed, and starts the hooks of `ending`.
async fn abort(
    ctx: &Context,
    cluster: &MySQLCluster,
    id: &str,
    why: String,
    ending: Ending,
) -> Result<MySQLCluster> {
    let status = cluster.status.clone().unwrap_or_default();
    let Some(record) = status.recoveries.iter().find(|r| r.id == id) else {
        return Ok(cluster.clone());
    };
    let mut record = RecoveryStatus {
        outcome: "failed".into(),
        error: Some(why),
        ended_at: Some(Time(Timestamp::now())),
        ..record.clone()
    };
    tracing::warn!(id = %record.id, error = ?record.error, "recovery aborted by a hook");
    record.hooks.extend(hooks::entries(
        cluster.spec.hooks.as_ref(),
        hooks::post_points(ending),
        &cluster.name_any(),
        id,
    ));
    let cluster = write_status(ctx, cluster, with_recovery(&status, record)).await?;
    jobs::follow(ctx, cluster).await
}

/// Runs the switchover `spec.switchover` asks for: registered like a recovery (kind
/// `GracefulTakeover`, with the request id), the primary's role label removed, the
/// engine's graceful takeover (deadline and rollback) with the successor committed
/// before its promotion. The engine's fence of the old primary ends its client
/// sessions, so applications reconnect through the `-primary` Service. A target that is no member
/// or already the primary is refused with a failed record.
#[allow(clippy::too_many_arguments)]
pub async fn switch_over(
    ctx: &Context,
    cluster: &MySQLCluster,
    members: &[Member],
    instances: &[Instance],
    request_id: &str,
    to: Option<&str>,
    engine: &RecoveryContext,
) -> Result<MySQLCluster> {
    let status = cluster.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let primary = status.primary.clone().unwrap_or_default();
    let id = recovery_id();
    let registered = RecoveryStatus {
        hooks: hooks::entries(
            cluster.spec.hooks.as_ref(),
            &[HookPoint::PreGracefulTakeover],
            &cluster.name_any(),
            &id,
        ),
        id,
        kind: "GracefulTakeover".into(),
        failed: primary.clone(),
        outcome: RUNNING.into(),
        leader: ctx.identity.clone(),
        started_at: Time(now),
        request_id: Some(request_id.into()),
        ..RecoveryStatus::default()
    };
    let target = match to {
        None => Ok(None),
        Some(pod) if pod == primary => Err(format!("{pod} is already the primary")),
        Some(pod) => members
            .iter()
            .find(|m| m.pod == pod)
            .map(|m| Some(m.key.clone()))
            .ok_or_else(|| format!("{pod} is not an instance of this cluster")),
    };
    let target = match target {
        Ok(t) => t,
        Err(why) => {
            let refused = RecoveryStatus {
                outcome: "failed".into(),
                error: Some(format!("switchover refused: {why}")),
                ended_at: Some(Time(now)),
                ..registered
            };
            return write_status(ctx, cluster, with_recovery(&status, refused)).await;
        }
    };
    let mut status = with_recovery(&status, registered.clone());
    mark_recovering(
        &mut status,
        format!("switchover {request_id} from {primary} is running"),
        now,
    );
    let cluster = write_status(ctx, cluster, status).await?;
    // The primary stays writable, and labelled, until the pre hooks have passed.
    let cluster = match jobs::run_blocking(ctx, cluster, &registered.id).await? {
        Blocking::Passed(cluster) => cluster,
        Blocking::Aborted(cluster, why) => {
            let why = format!("switchover cancelled: {why}");
            return abort(ctx, &cluster, &registered.id, why, Ending::TakeoverNotDone).await;
        }
        Blocking::LostLeadership => {
            return Err(Error::Invalid(format!(
                "{} stopped leading while switchover {} waited for its hooks",
                ctx.identity, registered.id
            )));
        }
    };
    set_role_label(ctx, &cluster, &primary, None).await;
    let guard = Commit::new(ctx, members, &registered, cluster);
    let record = graceful_takeover(engine, instances, target.as_ref(), &guard).await;
    finish(ctx, guard, &registered, &record, members).await
}

/// Completes a registered recovery whose leader stopped after committing its
/// successor (the engine finishes what is left: promotion if not yet done, repoints,
/// fencing), or abandons one that never committed a successor: nothing irreversible
/// happened, and the next round analyses afresh.
pub async fn resume(
    ctx: &Context,
    cluster: &MySQLCluster,
    members: &[Member],
    instances: &[Instance],
    analysis: &[Analysis],
    registered: &RecoveryStatus,
    engine: &RecoveryContext,
) -> Result<MySQLCluster> {
    let status = cluster.status.clone().unwrap_or_default();
    let committed = registered
        .successor
        .as_ref()
        .filter(|s| status.primary.as_ref() == Some(*s))
        .and_then(|s| members.iter().find(|m| &m.pod == s))
        .map(|m| m.key.clone());
    let failed = members.iter().find(|m| m.pod == registered.failed);
    let waiting = registered.hooks.iter().any(|h| {
        !hooks::is_final(&h.outcome)
            && HookPoint::from_field(&h.hook).is_some_and(HookPoint::blocks)
    });
    if committed.is_none() && waiting && registered.kind != "GracefulTakeover" {
        // Its leader stopped while a pre hook ran: adopt that hook's Job and go on
        // with the same recovery, if the failure is still there.
        let failure = failed.and_then(|f| {
            analysis
                .iter()
                .find(|a| a.instance == f.key && a.actionable)
                .cloned()
        });
        if let Some(failure) = failure {
            tracing::warn!(id = %registered.id, leader = %registered.leader,
                "taking over a recovery whose leader stopped during its pre hooks");
            let mut registered = registered.clone();
            registered.leader = ctx.identity.clone();
            return proceed(
                ctx,
                cluster.clone(),
                members,
                instances,
                &failure,
                &registered,
                engine,
            )
            .await;
        }
    }
    let (Some(successor), Some(failed)) = (committed, failed) else {
        return abandon(ctx, cluster, registered).await;
    };
    tracing::warn!(id = %registered.id, leader = %registered.leader, successor = %successor,
        "completing a recovery another leader left unfinished");
    let guard = Commit::new(ctx, members, registered, cluster.clone());
    let analysis = analysis.iter().find(|a| a.instance == failed.key).cloned();
    let record = recover_dead_master(
        engine,
        instances,
        &failed.key,
        analysis,
        Some(&successor),
        &guard,
    )
    .await;
    let note = format!(
        "{} stopped leading during this recovery; {} completed it",
        registered.leader, ctx.identity
    );
    let mut registered = registered.clone();
    registered.error = Some(note);
    finish(ctx, guard, &registered, &record, members).await
}

/// Records the engine's outcome: the recovery entry, and for a recovered primary
/// `lastFailoverTime` (the successor was committed before its promotion).
async fn finish(
    ctx: &Context,
    guard: Commit<'_>,
    registered: &RecoveryStatus,
    record: &RecoveryRecord,
    members: &[Member],
) -> Result<MySQLCluster> {
    let cluster = guard.cluster.into_inner();
    let now = Timestamp::now();
    let mut done = completed(registered, record, members, now);
    // The hooks as they ran (the registration only listed them).
    if let Some(current) = cluster
        .status
        .as_ref()
        .and_then(|s| s.recoveries.iter().find(|r| r.id == registered.id))
    {
        done.hooks.clone_from(&current.hooks);
    }
    if record.outcome == Outcome::Recovered
        && let Some(step) = kill_unfenced(ctx, &cluster, &done).await
    {
        done.steps.push(step);
    }
    if let (Some(note), Some(error)) = (&registered.error, &record.error) {
        done.error = Some(format!("{note}; {error}"));
    } else if registered.error.is_some() {
        done.error.clone_from(&registered.error);
    }
    let mut status = with_recovery(&cluster.status.clone().unwrap_or_default(), done.clone());
    match record.outcome {
        Outcome::Recovered => {
            status.primary = done.successor.clone();
            if done.kind == "DeadMaster" {
                status.last_failover_time = Some(Time(now));
            }
        }
        // The old primary is writable again: it stays (or is again) the primary.
        Outcome::RolledBack => status.primary = Some(done.failed.clone()),
        Outcome::Failed | Outcome::Abandoned => {}
    }
    let ending = match (record.outcome, done.kind.as_str()) {
        (Outcome::Abandoned, _) => None,
        (Outcome::Recovered, "GracefulTakeover") => Some(Ending::TakeoverDone),
        (_, "GracefulTakeover") => Some(Ending::TakeoverNotDone),
        (Outcome::Recovered, "DeadIntermediateMaster") => Some(Ending::IntermediateMasterRecovered),
        (Outcome::Recovered, _) => Some(Ending::MasterRecovered),
        _ => Some(Ending::Unsuccessful),
    };
    if let Some(ending) = ending {
        let post = hooks::entries(
            cluster.spec.hooks.as_ref(),
            hooks::post_points(ending),
            &cluster.name_any(),
            &done.id,
        );
        if let Some(r) = status.recoveries.iter_mut().find(|r| r.id == done.id) {
            r.hooks.extend(post);
        }
    }
    let cluster = write_status(ctx, &cluster, status).await?;
    // Post hooks start once the outcome is written: they never delay the recovery.
    jobs::follow(ctx, cluster).await
}

/// The operator's step guard: before every step it checks this replica still leads;
/// before a promotion it commits the successor to `status.primary` (and to the
/// recovery's record) with a `resourceVersion` precondition. A failed check or a
/// conflicting write stops the recovery before the step.
struct Commit<'a> {
    ctx: &'a Context,
    members: &'a [Member],
    registered: &'a RecoveryStatus,
    cluster: tokio::sync::Mutex<MySQLCluster>,
}

impl<'a> Commit<'a> {
    fn new(
        ctx: &'a Context,
        members: &'a [Member],
        registered: &'a RecoveryStatus,
        cluster: MySQLCluster,
    ) -> Self {
        Self {
            ctx,
            members,
            registered,
            cluster: tokio::sync::Mutex::new(cluster),
        }
    }

    async fn check(&self, step: &PlannedStep) -> std::result::Result<(), String> {
        if !self.ctx.leadership.is_leader() {
            return Err(format!("{} no longer leads", self.ctx.identity));
        }
        let PlannedStep::Promote { candidate, .. } = step else {
            stall_at(step).await;
            return Ok(());
        };
        let successor = pod_of(self.members, candidate);
        let mut cluster = self.cluster.lock().await;
        let mut status = cluster.status.clone().unwrap_or_default();
        let previous = status
            .recoveries
            .iter()
            .find(|r| r.id == self.registered.id)
            .cloned()
            .unwrap_or_else(|| self.registered.clone());
        status = with_recovery(
            &status,
            RecoveryStatus {
                successor: Some(successor.clone()),
                ..previous
            },
        );
        status.primary = Some(successor.clone());
        *cluster = write_status(self.ctx, &cluster, status)
            .await
            .map_err(|e| format!("cannot commit {successor} as the primary: {e}"))?;
        stall_at(step).await;
        Ok(())
    }
}

/// Failpoint `recovery-step-<step kind>` (e.g. `recovery-step-promote`), set to
/// `return` in a test build: the recovery stalls for good just before that step (after
/// the successor's commit, for a promotion), as if the operator froze there, so tests
/// can lose the leader at a chosen step. Does nothing in builds without `failpoints`.
async fn stall_at(step: &PlannedStep) {
    #[cfg(feature = "failpoints")]
    {
        let name = format!("recovery-step-{}", step.kind());
        let stall = || {
            fail::fail_point!(&name, |_| true);
            false
        };
        if stall() {
            tracing::warn!(failpoint = %name, "stalled at a failpoint");
            std::future::pending::<()>().await;
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = step;
}

impl StepGuard for Commit<'_> {
    fn before<'b>(
        &'b self,
        step: &'b PlannedStep,
    ) -> BoxFuture<'b, std::result::Result<(), String>> {
        Box::pin(self.check(step))
    }

    /// A writable successor gets the primary role label at once, so the `-primary`
    /// Service follows the promotion instead of the end of the recovery (repointing,
    /// fencing a hung old primary); the next reconcile sets every other label.
    fn after<'b>(&'b self, step: &'b PlannedStep) -> BoxFuture<'b, ()> {
        Box::pin(async move {
            let promoted = match step {
                PlannedStep::Promote {
                    candidate,
                    writable: true,
                    ..
                } => candidate,
                PlannedStep::MakeWritable { master } => master,
                _ => return,
            };
            let pod = pod_of(self.members, promoted);
            let cluster = self.cluster.lock().await.clone();
            set_role_label(self.ctx, &cluster, &pod, Some("primary")).await;
        })
    }
}

/// Sets (or with `None` removes) a pod's role label within [`FENCE_BOUND`]: the
/// `-primary` Service selects by it. The recovery goes on whatever happens.
async fn set_role_label(ctx: &Context, cluster: &MySQLCluster, pod: &str, role: Option<&str>) {
    let ns = cluster.metadata.namespace.clone().unwrap_or_default();
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"metadata": {"labels": {ROLE_LABEL: role}}});
    let params = PatchParams::default();
    let merge = Patch::Merge(&patch);
    match tokio::time::timeout(FENCE_BOUND, api.patch(pod, &params, &merge)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(%pod, ?role, error = %e, "cannot set the role label"),
        Err(_) => tracing::warn!(%pod, ?role, "setting the role label timed out"),
    }
}

/// A failed primary korc could not make read-only because it did not answer (hung, or
/// its node cut off) would be writable again the moment it wakes. Its pod is deleted,
/// with a short grace period (never forced: a StatefulSet pod on an unreachable node
/// stays until its node confirms), so it restarts read-only and rejoins instead. One
/// that refused the connection is down and restarts read-only anyway. Returns the
/// step for the record.
async fn kill_unfenced(
    ctx: &Context,
    cluster: &MySQLCluster,
    done: &RecoveryStatus,
) -> Option<RecoveryStepStatus> {
    let unfenced = done.steps.iter().any(|s| {
        s.kind == "fenceOldPrimary"
            && !s.ok
            && s.instance.as_ref() == Some(&done.failed)
            && s.detail
                .as_deref()
                .is_some_and(|d| d.contains("did not answer"))
    });
    if !unfenced {
        return None;
    }
    let ns = cluster.metadata.namespace.clone().unwrap_or_default();
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let params = DeleteParams {
        grace_period_seconds: Some(1),
        ..DeleteParams::default()
    };
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(FENCE_BOUND, api.delete(&done.failed, &params)).await;
    let (ok, detail) = match result {
        Ok(Ok(_)) => (
            true,
            "not fenced over SQL: its pod is deleted, so it restarts read-only".to_string(),
        ),
        Ok(Err(e)) => (false, format!("cannot delete its pod: {e}")),
        Err(_) => (false, "deleting its pod timed out".to_string()),
    };
    Some(RecoveryStepStatus {
        kind: "deletePod".into(),
        instance: Some(done.failed.clone()),
        duration_ms: format!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        ok,
        detail: Some(detail),
    })
}

/// A registered recovery whose leader stopped before committing a successor: nothing
/// irreversible happened, so it is abandoned and the next round analyses afresh.
async fn abandon(
    ctx: &Context,
    cluster: &MySQLCluster,
    registered: &RecoveryStatus,
) -> Result<MySQLCluster> {
    let status = cluster.status.clone().unwrap_or_default();
    let record = RecoveryStatus {
        outcome: "abandoned".into(),
        error: Some(format!(
            "{} stopped leading before this recovery committed a successor; {} abandoned it and analyses the cluster afresh",
            registered.leader, ctx.identity
        )),
        ended_at: Some(Time(Timestamp::now())),
        ..registered.clone()
    };
    tracing::warn!(id = %registered.id, leader = %registered.leader, "abandoning an unfinished recovery");
    write_status(ctx, cluster, with_recovery(&status, record)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_texts_become_pod_names() {
        let members: Vec<Member> = (0..3)
            .map(|i| Member {
                address: Some(format!("127.0.0.{i}:3306").parse().unwrap()),
                ..Member::numbered(i)
            })
            .collect();
        assert_eq!(
            by_pod(
                "no replica can be promoted: 10.0.0.1:3306 \"Downtimed\", 127.0.0.2:3306 \"MustNot\"",
                &members
            ),
            "no replica can be promoted: db-1 \"Downtimed\", db-2 \"MustNot\""
        );
        assert_eq!(by_pod("to 10.0.0.12:3306", &members), "to 10.0.0.12:3306");
    }
}
