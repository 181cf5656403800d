//! The status korc writes: a pure function of what the probes saw.
//!
//! Some fields move with every probe (positions, lag, last-seen times). They are
//! *volatile*: a change in them alone does not justify a status write, so a steady
//! cluster is written at most every [`VOLATILE_REFRESH`], not every second.

use super::decide::{Blocker, RUNNING, anti_flapping};
use crate::api::{
    AnalysisStatus, DetectionStatus, ExcludedInstanceStatus, FailoverCandidateStatus,
    InstanceStatus, MySQLCluster, MySQLClusterStatus,
};
use crate::topology::analysis::{Analysis, AnalysisCode};
use crate::topology::candidate::{self, Exclusion};
use crate::topology::instance::{Instance, InstanceKey, ThreadState};
use crate::topology::policy::{Policy, PromotionRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long volatile fields may be stale before a write refreshes them.
pub const VOLATILE_REFRESH: Duration = Duration::from_secs(30);
/// Detections kept in the history.
pub const DETECTION_HISTORY: usize = 20;

/// A pod of the cluster as korc sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Pod name.
    pub pod: String,
    /// The StatefulSet ordinal.
    pub ordinal: i32,
    /// The instance's key (what replicas use).
    pub key: InstanceKey,
    /// Where korc dials it (the pod IP), when known.
    pub address: Option<InstanceKey>,
    /// The zone of the pod's node.
    pub zone: Option<String>,
    /// The StatefulSet revision the pod was created from (`controller-revision-hash`).
    pub revision: Option<String>,
    /// The pod is Ready and not being deleted.
    pub ready: bool,
    /// The pod carries `korc.dev/rebuild`: its data is to be copied again.
    pub rebuild: bool,
}

#[cfg(test)]
impl Member {
    /// Pod `db-<i>` at `10.0.0.<i>:3306`: ready, no zone, no revision.
    pub fn numbered(i: usize) -> Self {
        Self {
            pod: format!("db-{i}"),
            ordinal: i as i32,
            key: format!("10.0.0.{i}:3306").parse().unwrap(),
            address: None,
            zone: None,
            revision: None,
            ready: true,
            rebuild: false,
        }
    }
}

/// Everything the status is made of.
#[derive(Debug)]
pub struct Observation<'a> {
    /// The pods.
    pub members: &'a [Member],
    /// Their probe results (same order as `members`).
    pub instances: &'a [Instance],
    /// The analysis.
    pub analysis: &'a [Analysis],
    /// Pod name of the primary korc maintains.
    pub primary: Option<&'a str>,
    /// Pods held out of the topology (errant transactions), with the reason.
    pub excluded: &'a BTreeMap<String, String>,
    /// Why a detected failure is not recovered, when it is not.
    pub blocker: Option<&'a Blocker>,
    /// Why the primary is kept read-only (its data is behind its replicas'), if it is.
    pub primary_held: Option<&'a str>,
    /// The engine's policy (promotion rules, downtimes, zones), for the failover
    /// candidate.
    pub policy: &'a Policy,
    /// Now.
    pub now: Timestamp,
}

fn time(ms: u64) -> Time {
    Time(Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The pod of an instance key, or the key itself for an instance outside the cluster.
pub fn pod_of(members: &[Member], key: &InstanceKey) -> String {
    members
        .iter()
        .find(|m| &m.key == key)
        .map(|m| m.pod.clone())
        .unwrap_or_else(|| key.to_string())
}

/// The code that sums the cluster up: the first actionable analysis, else the first
/// problem, else `NoProblem`.
pub fn summary_code(analysis: &[Analysis]) -> AnalysisCode {
    analysis
        .iter()
        .find(|a| a.actionable)
        .or_else(|| analysis.iter().find(|a| a.code != AnalysisCode::NoProblem))
        .map_or(AnalysisCode::NoProblem, |a| a.code)
}

/// An analysis code's name as the status spells it.
pub fn code_name(code: AnalysisCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Builds the new status from the observation and the previous status.
pub fn build(cluster: &MySQLCluster, o: &Observation<'_>) -> MySQLClusterStatus {
    let previous = cluster.status.clone().unwrap_or_default();
    let now = Time(o.now);
    let instances: Vec<InstanceStatus> = o
        .members
        .iter()
        .zip(o.instances)
        .map(|(m, i)| {
            let rep = i.replication.as_ref();
            let thread = |t: ThreadState| format!("{t:?}");
            let spec = cluster.spec.instances.get(&m.pod);
            let role = if Some(m.pod.as_str()) == o.primary {
                "primary"
            } else if o.excluded.contains_key(&m.pod) {
                "excluded"
            } else if rep.is_some() {
                "replica"
            } else {
                "unknown"
            };
            InstanceStatus {
                name: m.pod.clone(),
                role: role.into(),
                reachable: i.reachable,
                last_seen: i.last_seen_ms.map(time),
                error: i.error.clone().or_else(|| o.excluded.get(&m.pod).cloned()),
                read_only: i.read_only,
                gtid_position: i
                    .executed_position()
                    .map(|p| p.to_string())
                    .filter(|p| !p.is_empty()),
                source: rep.and_then(|r| r.source()).map(|s| pod_of(o.members, &s)),
                io_thread: rep.map(|r| thread(r.io_running)),
                sql_thread: rep.map(|r| thread(r.sql_running)),
                last_io_error: rep
                    .map(|r| r.last_io_error.clone())
                    .filter(|e| !e.is_empty()),
                last_sql_error: rep
                    .map(|r| r.last_sql_error.clone())
                    .filter(|e| !e.is_empty()),
                lag_seconds: i.lag_seconds().map(|l| l as i64),
                promotion_rule: spec.map_or(PromotionRule::Neutral, |s| s.promotion_rule),
                downtime_until: spec.and_then(|s| s.downtime_until.clone()),
                data_center: m.zone.clone(),
                clone_progress: None,
            }
        })
        .collect();

    let analysis: Vec<AnalysisStatus> = o
        .analysis
        .iter()
        .map(|a| {
            let e = &a.evidence;
            AnalysisStatus {
                code: code_name(a.code),
                instance: pod_of(o.members, &a.instance),
                description: a.description.clone(),
                actionable: a.actionable,
                evidence: BTreeMap::from([
                    ("replicas".into(), e.replicas.into()),
                    ("validReplicas".into(), e.valid_replicas.into()),
                    (
                        "validReplicatingReplicas".into(),
                        e.valid_replicating_replicas.into(),
                    ),
                    (
                        "replicasFailingToConnect".into(),
                        e.replicas_failing_to_connect.into(),
                    ),
                    ("laggingReplicas".into(), e.lagging_replicas.into()),
                    ("delayedReplicas".into(), e.delayed_replicas.into()),
                    ("downtimedReplicas".into(), e.downtimed_replicas.into()),
                ]),
                structure_warnings: a
                    .structure_warnings
                    .iter()
                    .filter_map(|w| serde_json::to_value(w).ok()?.as_str().map(str::to_string))
                    .collect(),
                errant_gtids: a.errant_gtids.clone(),
            }
        })
        .collect();

    let mut detections = previous.detections.clone();
    // While the cluster is being created, missing instances are not failures.
    let established = previous.primary.is_some();
    for a in analysis
        .iter()
        .filter(|a| established && a.code != "NoProblem")
    {
        match detections
            .iter_mut()
            .find(|d| d.code == a.code && d.instance == a.instance)
        {
            Some(d) => d.last_seen = now.clone(),
            None => detections.insert(
                0,
                DetectionStatus {
                    code: a.code.clone(),
                    instance: a.instance.clone(),
                    first_seen: now.clone(),
                    last_seen: now.clone(),
                },
            ),
        }
    }
    detections.truncate(DETECTION_HISTORY);

    let code = summary_code(o.analysis);
    let primary_instance = o
        .primary
        .and_then(|p| o.members.iter().position(|m| m.pod == p))
        .map(|i| &o.instances[i]);
    let ready = instances
        .iter()
        .filter(|i| i.reachable && (i.role == "primary" || i.role == "replica"))
        .count();
    let replicating = o
        .instances
        .iter()
        .filter(|i| i.reachable && i.is_replicating())
        .count();

    let (available, available_reason, available_message) = match primary_instance {
        None => (
            false,
            "NoPrimary",
            "no primary has been established".to_string(),
        ),
        Some(p) if !p.reachable => (
            false,
            "PrimaryUnreachable",
            format!("{} cannot be reached", o.primary.unwrap_or_default()),
        ),
        Some(p) if !p.is_writable() => match o.primary_held {
            Some(why) => (false, "PrimaryBehind", why.to_string()),
            None => (
                false,
                "PrimaryReadOnly",
                format!("{} is read-only", o.primary.unwrap_or_default()),
            ),
        },
        Some(_) => (
            true,
            "PrimaryWritable",
            format!("{} accepts writes", o.primary.unwrap_or_default()),
        ),
    };
    let all_members_fine = replicating + 1 == o.members.len() && o.excluded.is_empty();
    let healthy = available && code == AnalysisCode::NoProblem && all_members_fine;
    // A blocker seen with a failure comes from the decision; without a failure the
    // cluster is still blocked when paused, single or inside an anti-flapping period.
    let standing = || {
        if cluster.spec.paused {
            Some(Blocker::Paused)
        } else if cluster.spec.replicas == 1 {
            Some(Blocker::SingleInstance)
        } else {
            anti_flapping(&cluster.spec, &previous, o.now)
        }
    };
    let blocker = o.blocker.cloned().or_else(standing);
    let (blocked, blocked_reason, blocked_message) = match &blocker {
        Some(b) => (true, b.reason(), b.message()),
        None => (false, "NotBlocked", "nothing blocks recovery".to_string()),
    };
    let blocked_until = match &blocker {
        Some(Blocker::AntiFlapping { until, .. }) => Some(Time(*until)),
        _ => None,
    };
    let running = previous
        .recoveries
        .iter()
        .rev()
        .find(|r| r.outcome == RUNNING);
    let (recovering, recovering_reason, recovering_message) = match running {
        Some(r) => (
            true,
            "RecoveryRunning",
            format!("{} recovery {} of {} is running", r.kind, r.id, r.failed),
        ),
        None => (false, "NoRecovery", "no recovery is running".to_string()),
    };
    let conditions = vec![
        condition(
            &previous,
            "Available",
            available,
            available_reason,
            &available_message,
            &now,
            cluster,
        ),
        condition(
            &previous,
            "Healthy",
            healthy,
            &code_name(code),
            &format!(
                "{replicating} of {} replicas replicating; analysis {}",
                o.members.len().saturating_sub(1),
                code_name(code)
            ),
            &now,
            cluster,
        ),
        condition(
            &previous,
            "Recovering",
            recovering,
            recovering_reason,
            &recovering_message,
            &now,
            cluster,
        ),
        condition(
            &previous,
            "RecoveryBlocked",
            blocked,
            blocked_reason,
            &blocked_message,
            &now,
            cluster,
        ),
    ];

    MySQLClusterStatus {
        observed_generation: cluster.metadata.generation,
        conditions,
        primary: o.primary.map(str::to_string),
        ready: Some(format!("{ready}/{}", cluster.spec.replicas)),
        // While the cluster is being created there is nothing to sum up yet.
        analysis_code: (established || available).then(|| code_name(code)),
        analysis,
        instances,
        detections,
        last_failover_time: previous.last_failover_time.clone(),
        recoveries: previous.recoveries.clone(),
        clones: previous.clones.clone(),
        failure_detection: previous.failure_detection.clone(),
        recovery_blocked_until: blocked_until,
        last_acknowledgement: previous.last_acknowledgement.clone(),
        failover_candidate: failover_candidate(o),
    }
}

/// If the primary failed now: the engine's candidate choice with the primary taken as
/// failed, instances named by pod. Nothing volatile goes in (no positions, no lag
/// figures), so it changes only when the candidate or an exclusion does.
fn failover_candidate(o: &Observation<'_>) -> Option<FailoverCandidateStatus> {
    let primary = o.primary?;
    let key = &o.members.iter().find(|m| m.pod == primary)?.key;
    let now_ms = u64::try_from(o.now.as_millisecond()).unwrap_or(0);
    let choice = candidate::failover_candidate(o.instances, key, o.policy, now_ms)?;
    let ranking = match &choice {
        Ok(c) => &c.ranking,
        Err(none) => &none.ranking,
    };
    let excluded = ranking
        .iter()
        .filter_map(|r| {
            Some(ExcludedInstanceStatus {
                pod: pod_of(o.members, &r.instance),
                reason: exclusion_reason(r.excluded.as_ref()?),
            })
        })
        .collect();
    let pods = |keys: &[InstanceKey]| {
        keys.iter()
            .map(|k| pod_of(o.members, k))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (pod, why) = match &choice {
        Ok(c) => {
            let mut why = c.chosen_by.map(|b| b.to_string()).unwrap_or_default();
            if !c.ahead.is_empty() {
                why += &format!("; it would first catch up from {}", pods(&c.ahead));
            }
            if let Some(h) = &c.hand_over_to {
                why += &format!(
                    "; then it would hand over to {} (promotion rule {})",
                    pod_of(o.members, h),
                    o.policy.promotion_rule(h)
                );
            }
            (Some(pod_of(o.members, &c.promoted)), why)
        }
        Err(_) => (None, "no replica can be promoted".to_string()),
    };
    Some(FailoverCandidateStatus { pod, why, excluded })
}

/// An exclusion as the status gives it: the reason's name, with what names the place
/// or the transactions; a lag figure is left out, since it moves with every probe.
fn exclusion_reason(e: &Exclusion) -> String {
    match e {
        Exclusion::ErrantGtids(detail)
        | Exclusion::OtherDataCenter(detail)
        | Exclusion::OtherRegion(detail) => format!("{} {detail}", e.code()),
        _ => e.code().to_string(),
    }
}

fn condition(
    previous: &MySQLClusterStatus,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
    cluster: &MySQLCluster,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    // The transition time moves only when the status does.
    let last_transition_time = previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: message.into(),
        last_transition_time,
        observed_generation: cluster.metadata.generation,
    }
}

/// Marks the `Recovering` condition true for a registered recovery, so the
/// registration itself tells readers a recovery runs.
pub fn mark_recovering(status: &mut MySQLClusterStatus, message: String, now: Timestamp) {
    let now = Time(now);
    match status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == "Recovering")
    {
        Some(c) => {
            if c.status != "True" {
                c.last_transition_time = now;
            }
            c.status = "True".into();
            c.reason = "RecoveryRunning".into();
            c.message = message;
        }
        None => status.conditions.push(Condition {
            type_: "Recovering".into(),
            status: "True".into(),
            reason: "RecoveryRunning".into(),
            message,
            last_transition_time: now,
            observed_generation: None,
        }),
    }
}

/// The status with its volatile fields blanked: what decides whether to write.
pub fn significant(status: &MySQLClusterStatus) -> MySQLClusterStatus {
    let mut s = status.clone();
    for i in &mut s.instances {
        i.last_seen = None;
        i.gtid_position = None;
        i.lag_seconds = None;
        // A copy's progress is told every 64 MiB, not every round.
        if let Some(p) = &mut i.clone_progress {
            const STEP: i64 = 64 << 20;
            p.bytes_copied = p.bytes_copied.map(|b| b / STEP);
            p.bytes_estimated = p.bytes_estimated.map(|b| b / STEP);
        }
    }
    for d in &mut s.detections {
        d.last_seen = d.first_seen.clone();
    }
    s
}

#[cfg(test)]
mod tests;
