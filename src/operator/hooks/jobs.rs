//! Creating, adopting, following and stopping hook Jobs, and recording what became of
//! them in the status (the decisions are in [`super`]).

use super::{
    FAILED, HookEvent, HookPoint, NOT_CREATED, PENDING, RUNNING, SKIPPED, TIMED_OUT, is_final,
    succeeded,
};
use crate::Result;
use crate::api::{FailureDetectionStatus, HookRunStatus, MySQLCluster, RecoveryStatus};
use crate::operator::controller::{Context, publish, write_status};
use crate::operator::decide::RUNNING as RECOVERY_RUNNING;
use crate::operator::events;
use crate::operator::metrics::HookLabels;
use crate::operator::status::{Member, pod_of};
use crate::topology::analysis::Analysis;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use std::time::Duration;

/// The label the Job controller puts on a Job's pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// How often a blocking hook's Job is looked at.
const POLL: Duration = Duration::from_millis(50);

/// How the blocking hooks of a recovery ended.
#[derive(Debug)]
pub enum Blocking {
    /// Every blocking hook succeeded (or there was none): the recovery goes on. The
    /// cluster as last written.
    Passed(MySQLCluster),
    /// A blocking hook did not succeed: the recovery is aborted, for this reason.
    Aborted(MySQLCluster, String),
    /// This replica stopped leading while it waited: the next leader adopts the Jobs.
    LostLeadership,
}

/// Runs the blocking hooks of the registered recovery `id` one after the other and
/// waits for each (adopting Jobs a previous leader created), recording every change
/// in the recovery's entry.
pub async fn run_blocking(ctx: &Context, mut cluster: MySQLCluster, id: &str) -> Result<Blocking> {
    loop {
        let status = cluster.status.clone().unwrap_or_default();
        let Some(mut record) = status.recoveries.iter().find(|r| r.id == id).cloned() else {
            return Ok(Blocking::Passed(cluster));
        };
        let blocking = record
            .hooks
            .iter()
            .take_while(|h| HookPoint::from_field(&h.hook).is_some_and(HookPoint::blocks))
            .count();
        if blocking == 0 {
            return Ok(Blocking::Passed(cluster));
        }
        let event = recovery_event(&cluster, &record, &ctx.identity);
        if advance(ctx, &cluster, &mut record.hooks[..blocking], &event).await {
            let status = crate::operator::failover::with_recovery(&status, record.clone());
            cluster = write_status(ctx, &cluster, status).await?;
        }
        let pre = &record.hooks[..blocking];
        if let Some(bad) = pre
            .iter()
            .find(|h| is_final(&h.outcome) && !succeeded(&h.outcome))
        {
            return Ok(Blocking::Aborted(cluster, events::describe_hook(bad)));
        }
        if pre.iter().all(|h| is_final(&h.outcome)) {
            return Ok(Blocking::Passed(cluster));
        }
        if !ctx.leadership.is_leader() {
            return Ok(Blocking::LostLeadership);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Moves every unfinished hook of the status on as far as it goes without waiting:
/// the detection's and those of ended recoveries (a running recovery's are its
/// runner's). Writes the status when something changed.
pub async fn follow(ctx: &Context, cluster: MySQLCluster) -> Result<MySQLCluster> {
    let Some(mut status) = cluster.status.clone() else {
        return Ok(cluster);
    };
    let mut changed = false;
    if let Some(d) = status.failure_detection.as_mut()
        && d.hooks.iter().any(|h| !is_final(&h.outcome))
    {
        let event = detection_event(&cluster, d, &ctx.identity);
        changed |= advance(ctx, &cluster, &mut d.hooks, &event).await;
    }
    for i in 0..status.recoveries.len() {
        let r = &status.recoveries[i];
        if r.outcome == RECOVERY_RUNNING || r.hooks.iter().all(|h| is_final(&h.outcome)) {
            continue;
        }
        let event = recovery_event(&cluster, r, &ctx.identity);
        changed |= advance(ctx, &cluster, &mut status.recoveries[i].hooks, &event).await;
    }
    if !changed {
        return Ok(cluster);
    }
    write_status(ctx, &cluster, status).await
}

/// Records a newly detected actionable failure and starts its `onFailureDetection`
/// hooks, once per failure: nothing when the cluster has no such hooks or the
/// failure is the one already recorded.
pub async fn detect(
    ctx: &Context,
    cluster: MySQLCluster,
    failure: &Analysis,
    members: &[Member],
) -> Result<MySQLCluster> {
    let Some(spec) = cluster.spec.hooks.as_ref() else {
        return Ok(cluster);
    };
    if spec.on_failure_detection.is_empty() {
        return Ok(cluster);
    }
    let pod = pod_of(members, &failure.instance);
    let mut status = cluster.status.clone().unwrap_or_default();
    if !super::detection_due(&status, &pod) {
        return Ok(cluster);
    }
    let id = crate::operator::failover::recovery_id();
    let mut detection = FailureDetectionStatus {
        id: id.clone(),
        code: crate::operator::status::code_name(failure.code),
        instance: pod,
        description: failure.description.clone(),
        replicas: failure
            .replicas
            .iter()
            .map(|k| pod_of(members, k))
            .collect(),
        downtimed: failure.skippable_due_to_downtime,
        detected_at: Time(Timestamp::now()),
        hooks: super::entries(
            Some(spec),
            &[HookPoint::OnFailureDetection],
            &cluster.name_any(),
            &id,
        ),
    };
    status.failure_detection = Some(detection.clone());
    let cluster = write_status(ctx, &cluster, status.clone()).await?;
    let event = detection_event(&cluster, &detection, &ctx.identity);
    if !advance(ctx, &cluster, &mut detection.hooks, &event).await {
        return Ok(cluster);
    }
    status.failure_detection = Some(detection);
    write_status(ctx, &cluster, status).await
}

/// The hook event of a recovery record.
pub fn recovery_event(cluster: &MySQLCluster, r: &RecoveryStatus, operator: &str) -> HookEvent {
    let takeover = r.kind == "GracefulTakeover";
    let detected = cluster
        .status
        .as_ref()
        .and_then(|s| s.failure_detection.as_ref())
        .filter(|d| d.instance == r.failed && !takeover);
    HookEvent {
        failure_type: r
            .analysis_code
            .clone()
            .unwrap_or_else(|| "DeadMaster".into()),
        is_master: r.kind != "DeadIntermediateMaster",
        description: detected.map(|d| d.description.clone()).unwrap_or_default(),
        command: if takeover {
            "graceful-master-takeover".into()
        } else {
            String::new()
        },
        failed: r.failed.clone(),
        replicas: r.replicas.clone(),
        downtimed: false,
        recovery_uid: r.id.clone(),
        lost_replicas: r.lost_replicas.clone(),
        successor: r.successor.clone().filter(|_| r.outcome == "recovered"),
        ..cluster_event(cluster, operator)
    }
}

/// The hook event of a detection.
pub fn detection_event(
    cluster: &MySQLCluster,
    d: &FailureDetectionStatus,
    operator: &str,
) -> HookEvent {
    HookEvent {
        failure_type: d.code.clone(),
        is_master: d.code.contains("Master") && !d.code.contains("IntermediateMaster"),
        description: d.description.clone(),
        failed: d.instance.clone(),
        replicas: d.replicas.clone(),
        downtimed: d.downtimed,
        recovery_uid: d.id.clone(),
        ..cluster_event(cluster, operator)
    }
}

fn cluster_event(cluster: &MySQLCluster, operator: &str) -> HookEvent {
    let name = cluster.name_any();
    HookEvent {
        domain: format!(
            "{name}-primary.{}.svc",
            cluster.namespace().unwrap_or_default()
        ),
        cluster: name,
        auto_master_recovery: cluster.spec.recovery.automatic_master_recovery,
        auto_intermediate_master_recovery: cluster
            .spec
            .recovery
            .automatic_intermediate_master_recovery,
        operator: operator.into(),
        ..HookEvent::default()
    }
}

/// Moves `entries` on in order as far as they go without waiting: creates the Job of
/// the next pending hook (or adopts the one a previous leader created), and records
/// the end of running ones. A blocking hook that did not succeed skips the blocking
/// hooks after it. Returns whether an entry changed.
pub async fn advance(
    ctx: &Context,
    cluster: &MySQLCluster,
    entries: &mut [HookRunStatus],
    event: &HookEvent,
) -> bool {
    let api = Api::<Job>::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let mut changed = false;
    let mut aborted = false;
    for h in entries.iter_mut() {
        let point = HookPoint::from_field(&h.hook);
        let blocks = point.is_some_and(HookPoint::blocks);
        if is_final(&h.outcome) {
            aborted |= blocks && !succeeded(&h.outcome);
            continue;
        }
        if aborted && blocks {
            h.outcome = SKIPPED.into();
            h.message = Some("not run: an earlier blocking hook did not succeed".into());
            changed = true;
            continue;
        }
        let spec = point.and_then(|p| {
            let hooks = cluster.spec.hooks.as_ref()?;
            p.hooks(hooks).get(h.index as usize).map(|s| (p, s))
        });
        let Some((point, spec)) = spec else {
            finish(
                ctx,
                cluster,
                h,
                NOT_CREATED,
                Some("no longer in spec.hooks".into()),
            )
            .await;
            changed = true;
            aborted |= blocks;
            continue;
        };
        if h.outcome == PENDING {
            let job = super::job(cluster, point, h.index as usize, spec, event);
            match api.create(&PostParams::default(), &job).await {
                Ok(_) => {
                    start(ctx, cluster, h, Timestamp::now(), "created").await;
                    changed = true;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // A previous leader created it: follow that one.
                    let created = match api.get_opt(&h.job).await {
                        Ok(Some(j)) => j.creation_timestamp().map(|t| t.0),
                        _ => None,
                    };
                    start(
                        ctx,
                        cluster,
                        h,
                        created.unwrap_or_else(Timestamp::now),
                        "adopted",
                    )
                    .await;
                    changed = true;
                }
                Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => {
                    let why = format!("the Job cannot be created: {}", e.message);
                    finish(ctx, cluster, h, NOT_CREATED, Some(why)).await;
                    changed = true;
                    aborted |= blocks;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(job = %h.job, error = %e, "cannot create a hook Job; retrying");
                    break;
                }
            }
        }
        match api.get_opt(&h.job).await {
            Ok(Some(job)) => {
                let settled = match super::settled(&job) {
                    Some(s) => Some(s),
                    None => job_pods(ctx, cluster, &h.job)
                        .await
                        .and_then(|pods| super::settled_by_pods(&pods, spec.backoff_limit)),
                };
                let started = h.started_at.as_ref().map_or(Timestamp::now(), |t| t.0);
                let deadline = started
                    .checked_add(SignedDuration::from_secs(spec.timeout_seconds))
                    .unwrap_or(started);
                let late = Timestamp::now() >= deadline;
                match settled {
                    // Its pod stopped at the Job's deadline: a timeout, not a failure.
                    Some((FAILED, _)) if late => {}
                    Some((outcome, why)) => {
                        finish(ctx, cluster, h, outcome, why).await;
                        changed = true;
                        aborted |= blocks && !succeeded(outcome);
                        continue;
                    }
                    None if !late => break,
                    None => {}
                }
                stop(&api, &h.job).await;
                let why = format!("ran past its timeoutSeconds ({} s)", spec.timeout_seconds);
                finish(ctx, cluster, h, TIMED_OUT, Some(why)).await;
                changed = true;
                aborted |= blocks;
            }
            Ok(None) => {
                finish(ctx, cluster, h, FAILED, Some("its Job disappeared".into())).await;
                changed = true;
                aborted |= blocks;
            }
            Err(e) => {
                tracing::warn!(job = %h.job, error = %e, "cannot read a hook Job");
                break;
            }
        }
    }
    changed
}

/// The pods of a hook Job (none when they cannot be listed).
async fn job_pods(ctx: &Context, cluster: &MySQLCluster, job: &str) -> Option<Vec<Pod>> {
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let params = ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job}"));
    api.list(&params).await.ok().map(|l| l.items)
}

/// Deletes a Job that ran too long, with its pods.
async fn stop(api: &Api<Job>, name: &str) {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    if let Err(e) = api.delete(name, &params).await {
        tracing::warn!(job = %name, error = %e, "cannot delete a hook Job past its timeout");
    }
}

async fn start(
    ctx: &Context,
    cluster: &MySQLCluster,
    h: &mut HookRunStatus,
    at: Timestamp,
    how: &str,
) {
    h.outcome = RUNNING.into();
    h.started_at = Some(MicroTime(at));
    publish(ctx, cluster, events::hook_started(h, how)).await;
}

async fn finish(
    ctx: &Context,
    cluster: &MySQLCluster,
    h: &mut HookRunStatus,
    outcome: &str,
    message: Option<String>,
) {
    h.outcome = outcome.into();
    h.message = message;
    h.ended_at = Some(MicroTime(Timestamp::now()));
    ctx.metrics
        .hook_jobs
        .get_or_create(&HookLabels {
            hook: h.hook.clone(),
            outcome: outcome.into(),
        })
        .inc();
    publish(ctx, cluster, events::hook_ended(h, succeeded(outcome))).await;
}
