//! orchestrator's hooks, run as Kubernetes Jobs.
//!
//! This module is pure: which hooks a recovery runs and in what order, the Job each
//! becomes (name, labels, owner, orchestrator's environment, placeholders), and what a
//! Job's status means for its hook. [`jobs`] creates, follows and stops the Jobs.
//!
//! Invariants (see `docs/hooks.md`):
//! - A hook is recorded (outcome `pending`) in the recovery's or detection's status
//!   entry before its Job is created, and its Job's name is a function of the cluster,
//!   the hook point, the recovery id and the hook's index: a leader that takes over
//!   finds the Job its predecessor created instead of creating a second one.
//! - The hooks of one record run one after the other, in the order of the record.
//! - Pre hooks (`preFailover`, `preGracefulTakeover`) are awaited: the first that does
//!   not succeed within its `timeoutSeconds` aborts the recovery. Everything else is
//!   followed by later reconciliations and never delays a recovery.

pub mod jobs;

use crate::api::{HookRunStatus, HookSpec, HooksSpec, MySQLCluster, MySQLClusterStatus};
use crate::provisioning::{CLIENT_LABEL, INSTANCE_LABEL, MYSQL_PORT};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// Label naming the cluster a hook Job belongs to.
pub const CLUSTER_LABEL: &str = "korc.dev/cluster";
/// Label naming the hook point of a Job.
pub const HOOK_LABEL: &str = "korc.dev/hook";
/// Label naming the recovery (or detection) a Job serves.
pub const RECOVERY_LABEL: &str = "korc.dev/recovery";
/// Finished hook Jobs are deleted by Kubernetes after this long; the record keeps
/// their outcome.
pub const JOB_TTL_SECONDS: i32 = 3600;

/// Hook outcome: recorded, Job not yet created.
pub const PENDING: &str = "pending";
/// Hook outcome: its Job runs.
pub const RUNNING: &str = "running";
/// Hook outcome: its Job completed.
pub const SUCCEEDED: &str = "succeeded";
/// Hook outcome: its Job failed.
pub const FAILED: &str = "failed";
/// Hook outcome: it ran past its `timeoutSeconds`.
pub const TIMED_OUT: &str = "timedOut";
/// Hook outcome: its Job could not be created (for example an invalid template).
pub const NOT_CREATED: &str = "notCreated";
/// Hook outcome: not run, because a blocking hook before it did not succeed.
pub const SKIPPED: &str = "skipped";

/// orchestrator's hook points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// `OnFailureDetectionProcesses`.
    OnFailureDetection,
    /// `PreFailoverProcesses`: blocks the recovery.
    PreFailover,
    /// `PostMasterFailoverProcesses`.
    PostMasterFailover,
    /// `PostIntermediateMasterFailoverProcesses`.
    PostIntermediateMasterFailover,
    /// `PostFailoverProcesses`.
    PostFailover,
    /// `PostUnsuccessfulFailoverProcesses`.
    PostUnsuccessfulFailover,
    /// `PreGracefulTakeoverProcesses`: blocks the switchover.
    PreGracefulTakeover,
    /// `PostGracefulTakeoverProcesses`.
    PostGracefulTakeover,
}

impl HookPoint {
    /// Every hook point.
    pub const ALL: [HookPoint; 8] = [
        Self::OnFailureDetection,
        Self::PreFailover,
        Self::PostMasterFailover,
        Self::PostIntermediateMasterFailover,
        Self::PostFailover,
        Self::PostUnsuccessfulFailover,
        Self::PreGracefulTakeover,
        Self::PostGracefulTakeover,
    ];

    /// The field of `spec.hooks` (and the value of the `korc.dev/hook` label).
    pub fn field(self) -> &'static str {
        match self {
            Self::OnFailureDetection => "onFailureDetection",
            Self::PreFailover => "preFailover",
            Self::PostMasterFailover => "postMasterFailover",
            Self::PostIntermediateMasterFailover => "postIntermediateMasterFailover",
            Self::PostFailover => "postFailover",
            Self::PostUnsuccessfulFailover => "postUnsuccessfulFailover",
            Self::PreGracefulTakeover => "preGracefulTakeover",
            Self::PostGracefulTakeover => "postGracefulTakeover",
        }
    }

    /// The hook point named `field`.
    pub fn from_field(field: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.field() == field)
    }

    /// The short form in Job names.
    fn slug(self) -> &'static str {
        match self {
            Self::OnFailureDetection => "detect",
            Self::PreFailover => "pre-failover",
            Self::PostMasterFailover => "post-master",
            Self::PostIntermediateMasterFailover => "post-im",
            Self::PostFailover => "post-failover",
            Self::PostUnsuccessfulFailover => "post-unsuccessful",
            Self::PreGracefulTakeover => "pre-takeover",
            Self::PostGracefulTakeover => "post-takeover",
        }
    }

    /// Whether the recovery waits for it and aborts when it does not succeed.
    pub fn blocks(self) -> bool {
        matches!(self, Self::PreFailover | Self::PreGracefulTakeover)
    }

    /// The spec's hooks at this point.
    pub fn hooks(self, spec: &HooksSpec) -> &[HookSpec] {
        match self {
            Self::OnFailureDetection => &spec.on_failure_detection,
            Self::PreFailover => &spec.pre_failover,
            Self::PostMasterFailover => &spec.post_master_failover,
            Self::PostIntermediateMasterFailover => &spec.post_intermediate_master_failover,
            Self::PostFailover => &spec.post_failover,
            Self::PostUnsuccessfulFailover => &spec.post_unsuccessful_failover,
            Self::PreGracefulTakeover => &spec.pre_graceful_takeover,
            Self::PostGracefulTakeover => &spec.post_graceful_takeover,
        }
    }
}

/// How a recovery ended, for choosing its post hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A failover of the primary with a successor.
    MasterRecovered,
    /// A recovery of an intermediate primary with a successor.
    IntermediateMasterRecovered,
    /// A recovery without a successor, or aborted by a pre hook.
    Unsuccessful,
    /// A completed switchover.
    TakeoverDone,
    /// A switchover that did not happen: no post hook (orchestrator runs none).
    TakeoverNotDone,
}

/// The post hook points an ending runs, in order.
pub fn post_points(ending: Ending) -> &'static [HookPoint] {
    match ending {
        Ending::MasterRecovered => &[HookPoint::PostMasterFailover, HookPoint::PostFailover],
        Ending::IntermediateMasterRecovered => &[
            HookPoint::PostIntermediateMasterFailover,
            HookPoint::PostFailover,
        ],
        Ending::Unsuccessful => &[HookPoint::PostUnsuccessfulFailover],
        Ending::TakeoverDone => &[HookPoint::PostGracefulTakeover],
        Ending::TakeoverNotDone => &[],
    }
}

/// A hook Job's name: `<cluster>-<point>-<recovery id>-<index>`, with the cluster's
/// name shortened so the whole stays within 63 characters (the Job controller puts it
/// in a label).
pub fn job_name(cluster: &str, point: HookPoint, recovery: &str, index: usize) -> String {
    let tail = format!("-{}-{recovery}-{index}", point.slug());
    let room = 63usize.saturating_sub(tail.len());
    let head: String = cluster.chars().take(room).collect();
    format!("{}{tail}", head.trim_end_matches(['-', '.']))
}

/// The pending status entries of `points`' hooks, in order.
pub fn entries(
    spec: Option<&HooksSpec>,
    points: &[HookPoint],
    cluster: &str,
    recovery: &str,
) -> Vec<HookRunStatus> {
    let Some(spec) = spec else {
        return Vec::new();
    };
    points
        .iter()
        .flat_map(|&point| {
            point
                .hooks(spec)
                .iter()
                .enumerate()
                .map(move |(i, h)| HookRunStatus {
                    hook: point.field().into(),
                    name: h.name.clone(),
                    index: i as u32,
                    job: job_name(cluster, point, recovery, i),
                    outcome: PENDING.into(),
                    ..HookRunStatus::default()
                })
        })
        .collect()
}

/// Whether a detected failure of `pod` is new, so its `onFailureDetection` hooks run:
/// no failure is recorded, the recorded one is another pod's, or a recovery or
/// switchover ended since it was detected (the pod failed again after that).
pub fn detection_due(status: &MySQLClusterStatus, pod: &str) -> bool {
    let Some(d) = &status.failure_detection else {
        return true;
    };
    d.instance != pod
        || status
            .recoveries
            .iter()
            .any(|r| r.ended_at.as_ref().is_some_and(|t| t.0 > d.detected_at.0))
}

/// Whether a hook's outcome is final.
pub fn is_final(outcome: &str) -> bool {
    !matches!(outcome, PENDING | RUNNING)
}

/// Whether a final outcome lets a blocking hook's recovery go on.
pub fn succeeded(outcome: &str) -> bool {
    outcome == SUCCEEDED
}

/// What a hook is told about the failure, the recovery and its successor: the values
/// of orchestrator's `ORC_*` variables and `{placeholders}`. Hosts are pod names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookEvent {
    /// Analysis code (`DeadMaster`, …).
    pub failure_type: String,
    /// Whether the failed instance is the primary (else an intermediate primary).
    pub is_master: bool,
    /// The analysis' description.
    pub description: String,
    /// `""` for an automated recovery, `graceful-master-takeover` for a switchover.
    pub command: String,
    /// The failed pod.
    pub failed: String,
    /// The cluster's name.
    pub cluster: String,
    /// The `-primary` Service's DNS name.
    pub domain: String,
    /// The failed instance's replicas.
    pub replicas: Vec<String>,
    /// Whether the failed instance is downtimed.
    pub downtimed: bool,
    /// `spec.recovery.automaticMasterRecovery`.
    pub auto_master_recovery: bool,
    /// `spec.recovery.automaticIntermediateMasterRecovery`.
    pub auto_intermediate_master_recovery: bool,
    /// The operator replica running the hook.
    pub operator: String,
    /// The recovery's (or detection's) id.
    pub recovery_uid: String,
    /// Replicas left out of the new topology.
    pub lost_replicas: Vec<String>,
    /// The successor pod, once there is one.
    pub successor: Option<String>,
}

impl HookEvent {
    /// The `{placeholder}` names and values, orchestrator's aliases included. The
    /// successor's only when there is one: otherwise they stay literally in the
    /// command, as with orchestrator.
    pub fn values(&self) -> Vec<(&'static str, String)> {
        let port = MYSQL_PORT.to_string();
        let replicas = self.replicas.join(",");
        let lost = self.lost_replicas.join(",");
        let instance_type = if self.is_master {
            "master"
        } else {
            "intermediate-master"
        };
        let mut v = vec![
            ("failureType", self.failure_type.clone()),
            ("instanceType", instance_type.into()),
            ("isMaster", self.is_master.to_string()),
            ("isCoMaster", "false".into()),
            ("failureDescription", self.description.clone()),
            ("command", self.command.clone()),
            ("failedHost", self.failed.clone()),
            ("failedPort", port.clone()),
            ("failureCluster", self.cluster.clone()),
            ("failureClusterAlias", self.cluster.clone()),
            ("failureClusterDomain", self.domain.clone()),
            ("countReplicas", self.replicas.len().to_string()),
            ("countSlaves", self.replicas.len().to_string()),
            ("isDowntimed", self.downtimed.to_string()),
            ("autoMasterRecovery", self.auto_master_recovery.to_string()),
            (
                "autoIntermediateMasterRecovery",
                self.auto_intermediate_master_recovery.to_string(),
            ),
            ("orchestratorHost", self.operator.clone()),
            ("recoveryUID", self.recovery_uid.clone()),
            ("isSuccessful", self.successor.is_some().to_string()),
            ("lostReplicas", lost.clone()),
            ("lostSlaves", lost),
            ("countLostReplicas", self.lost_replicas.len().to_string()),
            ("replicaHosts", replicas.clone()),
            ("slaveHosts", replicas),
        ];
        if let Some(successor) = &self.successor {
            v.extend([
                ("successorHost", successor.clone()),
                ("successorPort", port),
                ("successorAlias", successor.clone()),
            ]);
        }
        v
    }

    /// orchestrator's environment variables (`ORC_*`). The successor's only when there
    /// is one.
    pub fn environment(&self) -> Vec<(String, String)> {
        const ENV: [(&str, &str); 23] = [
            ("failureType", "ORC_FAILURE_TYPE"),
            ("instanceType", "ORC_INSTANCE_TYPE"),
            ("isMaster", "ORC_IS_MASTER"),
            ("isCoMaster", "ORC_IS_CO_MASTER"),
            ("failureDescription", "ORC_FAILURE_DESCRIPTION"),
            ("command", "ORC_COMMAND"),
            ("failedHost", "ORC_FAILED_HOST"),
            ("failedPort", "ORC_FAILED_PORT"),
            ("failureCluster", "ORC_FAILURE_CLUSTER"),
            ("failureClusterAlias", "ORC_FAILURE_CLUSTER_ALIAS"),
            ("failureClusterDomain", "ORC_FAILURE_CLUSTER_DOMAIN"),
            ("countReplicas", "ORC_COUNT_REPLICAS"),
            ("isDowntimed", "ORC_IS_DOWNTIMED"),
            ("autoMasterRecovery", "ORC_AUTO_MASTER_RECOVERY"),
            (
                "autoIntermediateMasterRecovery",
                "ORC_AUTO_INTERMEDIATE_MASTER_RECOVERY",
            ),
            ("orchestratorHost", "ORC_ORCHESTRATOR_HOST"),
            ("recoveryUID", "ORC_RECOVERY_UID"),
            ("isSuccessful", "ORC_IS_SUCCESSFUL"),
            ("lostReplicas", "ORC_LOST_REPLICAS"),
            ("replicaHosts", "ORC_REPLICA_HOSTS"),
            ("successorHost", "ORC_SUCCESSOR_HOST"),
            ("successorPort", "ORC_SUCCESSOR_PORT"),
            ("successorAlias", "ORC_SUCCESSOR_ALIAS"),
        ];
        let values = self.values();
        ENV.iter()
            .filter_map(|(name, var)| {
                let value = values.iter().find(|(n, _)| n == name)?;
                Some((var.to_string(), value.1.clone()))
            })
            .collect()
    }

    /// `text` with every `{placeholder}` replaced.
    pub fn substitute(&self, text: &str) -> String {
        self.values()
            .iter()
            .fold(text.to_string(), |t, (name, value)| {
                t.replace(&format!("{{{name}}}"), value)
            })
    }
}

/// The Job that runs `hook` (the `index`th of `point`) for `event`: owned by the
/// cluster, labelled for it, its pods never restarted in place, stopped after the
/// hook's timeout and deleted an hour after it finished.
pub fn job(
    cluster: &MySQLCluster,
    point: HookPoint,
    index: usize,
    hook: &HookSpec,
    event: &HookEvent,
) -> Job {
    let name = job_name(&cluster.name_any(), point, &event.recovery_uid, index);
    let labels = BTreeMap::from([
        (CLUSTER_LABEL.to_string(), cluster.name_any()),
        (HOOK_LABEL.to_string(), point.field().to_string()),
        (RECOVERY_LABEL.to_string(), event.recovery_uid.clone()),
        (INSTANCE_LABEL.to_string(), cluster.name_any()),
    ]);
    let env: Vec<EnvVar> = event
        .environment()
        .into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            value_from: None,
        })
        .collect();
    let prepare = |c: &mut Container| {
        let mut vars: Vec<EnvVar> = c
            .env
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !env.iter().any(|e| e.name == v.name))
            .collect();
        vars.extend(env.iter().cloned());
        c.env = Some(vars);
        for list in [&mut c.command, &mut c.args].into_iter().flatten() {
            for arg in list.iter_mut() {
                *arg = event.substitute(arg);
            }
        }
    };
    let mut template: PodTemplateSpec = hook.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    let pod_labels = meta.labels.get_or_insert_with(BTreeMap::new);
    pod_labels.extend(labels.clone());
    // A hook may talk to the servers: the cluster's NetworkPolicy lets clients in.
    pod_labels.insert(CLIENT_LABEL.into(), cluster.name_any());
    let mut spec = template.spec.take().unwrap_or_default();
    spec.restart_policy = Some("Never".into());
    spec.containers.iter_mut().for_each(prepare);
    spec.init_containers.iter_mut().flatten().for_each(prepare);
    template.spec = Some(spec);
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cluster.namespace(),
            labels: Some(labels),
            owner_references: cluster.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(hook.backoff_limit),
            active_deadline_seconds: Some(hook.timeout_seconds),
            ttl_seconds_after_finished: Some(JOB_TTL_SECONDS),
            template,
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// What a Job's status says of its hook: `None` while it runs, else the final
/// outcome and why. A Job stopped at its deadline timed out.
pub fn settled(job: &Job) -> Option<(&'static str, Option<String>)> {
    let status = job.status.as_ref()?;
    if status.succeeded.unwrap_or(0) > 0 {
        return Some((SUCCEEDED, None));
    }
    let conditions = status.conditions.iter().flatten();
    for c in conditions.filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" | "SuccessCriteriaMet" => return Some((SUCCEEDED, None)),
            "Failed" | "FailureTarget" => {
                let why = [c.reason.as_deref(), c.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                let outcome = if c.reason.as_deref() == Some("DeadlineExceeded") {
                    TIMED_OUT
                } else {
                    FAILED
                };
                return Some((outcome, Some(why)));
            }
            _ => {}
        }
    }
    None
}

/// What a hook Job's pods say of its hook, before the Job controller does (it batches
/// pod updates for a second): succeeded once a pod succeeded, failed once more pods
/// failed than the hook's `backoffLimit` allows, with the last one's exit.
pub fn settled_by_pods(pods: &[Pod], backoff_limit: i32) -> Option<(&'static str, Option<String>)> {
    let phase = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    if pods.iter().any(|p| phase(p) == "Succeeded") {
        return Some((SUCCEEDED, None));
    }
    let failed: Vec<&Pod> = pods.iter().filter(|p| phase(p) == "Failed").collect();
    if failed.len() as i64 <= i64::from(backoff_limit) {
        return None;
    }
    let exit = failed
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref().map(|t| (c, t)))
        .find(|(_, t)| t.exit_code != 0)
        .map(|(c, t)| {
            let reason = t.reason.as_deref().unwrap_or("Error");
            format!(
                "container {} exited with code {} ({reason})",
                c.name, t.exit_code
            )
        });
    Some((
        FAILED,
        exit.or_else(|| Some(format!("{} pods failed", failed.len()))),
    ))
}

#[cfg(test)]
mod tests;
