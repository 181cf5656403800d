//! Rolling restarts without a primary outage: a pure function of the pods' revisions.
//!
//! korc's StatefulSet uses the `OnDelete` update strategy, so a change of the pod
//! template (configuration, image, resources) restarts nothing by itself: korc
//! restarts the pods, one at a time, in an order that never restarts a serving
//! primary:
//! 1. every outdated replica, highest ordinal first, each once the cluster is healthy
//!    again (all pods ready, every instance reachable, no failure analysed);
//! 2. then a switchover (a graceful takeover to the replica the candidate rules
//!    choose, recorded with request id `rollout-<revision>`);
//! 3. then the old primary, now a replica.
//!
//! Pods are restarted through the Eviction API, so the PodDisruptionBudget is honoured.
//! A single-instance cluster has nothing to switch over to: its one pod is restarted.
//! When the switchover for a revision does not succeed, the primary keeps the old
//! revision until someone restarts it or asks for a switchover.

use super::status::Member;
use crate::api::RecoveryStatus;

/// What the rollout does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Every pod runs the StatefulSet's current revision.
    Current,
    /// Nothing this round: the reason.
    Wait(String),
    /// Restart (evict) this pod.
    Restart(String),
    /// Move the primary role off the outdated primary first.
    SwitchOver {
        /// The request id the switchover's record carries.
        request_id: String,
    },
    /// The switchover for this revision did not succeed: the primary keeps its revision.
    Stuck(String),
}

/// The next rollout step. `update_revision` is the StatefulSet's; `healthy` says the
/// analysis found nothing wrong with any instance.
pub fn next(
    members: &[Member],
    update_revision: Option<&str>,
    primary: Option<&str>,
    recoveries: &[RecoveryStatus],
    healthy: bool,
) -> Rollout {
    let Some(revision) = update_revision else {
        return Rollout::Current;
    };
    let outdated: Vec<&Member> = members
        .iter()
        .filter(|m| m.revision.as_deref() != Some(revision))
        .collect();
    if outdated.is_empty() {
        return Rollout::Current;
    }
    if let Some(m) = members.iter().find(|m| !m.ready) {
        return Rollout::Wait(format!("{} is not ready", m.pod));
    }
    if !healthy {
        return Rollout::Wait("the cluster is not healthy".into());
    }
    let is_primary = |m: &&Member| Some(m.pod.as_str()) == primary;
    if let Some(replica) = outdated
        .iter()
        .filter(|m| !is_primary(m))
        .max_by_key(|m| m.ordinal)
    {
        return Rollout::Restart(replica.pod.clone());
    }
    let old_primary = outdated[0];
    if members.len() == 1 {
        return Rollout::Restart(old_primary.pod.clone());
    }
    let request_id = format!("rollout-{revision}");
    // Only the latest record counts: a template reverted to an earlier revision later
    // rolls out again.
    match recoveries.last().filter(|r| {
        r.request_id.as_deref() == Some(request_id.as_str()) && r.outcome != "recovered"
    }) {
        None => Rollout::SwitchOver { request_id },
        Some(r) => Rollout::Stuck(format!(
            "the switchover {request_id} ended {}: {} keeps its revision until it is restarted \
             or switched over (spec.switchover)",
            r.outcome, old_primary.pod
        )),
    }
}

#[cfg(test)]
mod tests;
