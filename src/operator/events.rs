//! The Events korc publishes on a `MySQLCluster`: pure functions from what happened
//! to the Event's type, reason and note.
//!
//! Every note names pods, never addresses, and says what korc saw and what it did (or
//! why it did nothing), so that `kubectl describe myc` reads as a log a person can act
//! on.

use super::bootstrap::Action;
use super::decide::{ACKNOWLEDGE_ANNOTATION, Blocker};
use super::status::{Member, pod_of};
use crate::api::{AnalysisStatus, HookRunStatus, MySQLClusterStatus, RecoveryStatus};
use crate::provisioning::Account;
use kube::runtime::events::EventType;

/// The analysis code of a cluster without a problem.
const NO_PROBLEM: &str = "NoProblem";

/// One Event: its type, reason, action and note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// The machine-readable reason (`FailureDetected`, `TopologyChanged`, …).
    pub reason: &'static str,
    /// What korc was doing (`Analyze`, `Bootstrap`, …).
    pub action: &'static str,
    /// What a person reads.
    pub text: String,
}

impl Note {
    fn normal(reason: &'static str, action: &'static str, text: String) -> Self {
        Self {
            type_: EventType::Normal,
            reason,
            action,
            text,
        }
    }

    fn warning(reason: &'static str, action: &'static str, text: String) -> Self {
        Self {
            type_: EventType::Warning,
            reason,
            action,
            text,
        }
    }
}

/// `InvalidSpec`: the spec fails korc's own checks.
pub fn invalid_spec(message: &str) -> Note {
    Note::warning(
        "InvalidSpec",
        "Validate",
        format!("spec refused: {message}; korc changes nothing until it is fixed"),
    )
}

/// `PasswordsRotated`: new passwords set on the primary and applied by the replicas.
pub fn passwords_rotated(accounts: &[Account], primary: &str, replicas: &[&str]) -> Note {
    let names: Vec<String> = accounts.iter().map(|a| a.name()).collect();
    let repointed = if accounts.contains(&Account::Replication) && !replicas.is_empty() {
        format!(
            "; repointed {} with the new replication password",
            replicas.join(", ")
        )
    } else {
        String::new()
    };
    let applied = if replicas.is_empty() {
        String::new()
    } else {
        format!(", applied by {}", replicas.join(", "))
    };
    Note::normal(
        "PasswordsRotated",
        "Rotate",
        format!(
            "set the new password of {} on the primary {primary}{applied}{repointed}; korc uses it from now on",
            names.join(", ")
        ),
    )
}

/// `PasswordRotationFailed`: a rotation stopped; the passwords in force stay in use.
pub fn rotation_failed(error: &str) -> Note {
    Note::warning(
        "PasswordRotationFailed",
        "Rotate",
        format!(
            "password rotation stopped: {error}; korc keeps the passwords in force and tries again"
        ),
    )
}

/// `TopologyChanged` or `TopologyChangeFailed`: one bootstrap or repair action and its
/// result (`Err` holds the server's error).
pub fn topology_action(action: &Action, members: &[Member], result: &Result<(), String>) -> Note {
    let pod = |k| pod_of(members, k);
    let (seen, done, undone) = match action {
        Action::MakeWritable(k) => (
            format!("{} is the primary and read-only", pod(k)),
            format!("made {} writable", pod(k)),
            format!("make {} writable", pod(k)),
        ),
        Action::MakeReadOnly(k) => (
            format!("{} accepts writes but is not the primary", pod(k)),
            format!("made {} read-only", pod(k)),
            format!("make {} read-only", pod(k)),
        ),
        Action::SetSemiSyncSource {
            instance,
            enabled: true,
        } => (
            format!(
                "{} is the primary and its commits did not wait for a replica",
                pod(instance)
            ),
            format!(
                "turned on the source side of semi-sync on {}",
                pod(instance)
            ),
            format!("turn on the source side of semi-sync on {}", pod(instance)),
        ),
        Action::SetSemiSyncSource {
            instance,
            enabled: false,
        } => (
            format!(
                "{} is a replica with the source side of semi-sync on",
                pod(instance)
            ),
            format!(
                "turned off the source side of semi-sync on {}",
                pod(instance)
            ),
            format!("turn off the source side of semi-sync on {}", pod(instance)),
        ),
        Action::StartReplication(k) => (
            format!(
                "the receiver of {} was stopped by a recovery that promoted nobody",
                pod(k)
            ),
            format!("started it again on {}", pod(k)),
            format!("start it again on {}", pod(k)),
        ),
        Action::Attach { replica, source } => (
            format!("{} replicates from nothing", pod(replica)),
            format!(
                "attached it as a replica of {} (GTID auto-positioning)",
                pod(source)
            ),
            format!("attach {} as a replica of {}", pod(replica), pod(source)),
        ),
    };
    match result {
        Ok(()) => Note::normal("TopologyChanged", "Bootstrap", format!("{seen}: {done}")),
        Err(e) => Note::warning(
            "TopologyChangeFailed",
            "Bootstrap",
            format!("{seen}: could not {undone}: {e}; korc tries again next round"),
        ),
    }
}

/// `RecoveriesAcknowledged`: the acknowledgement annotation was recorded.
pub fn acknowledged(value: &str) -> Note {
    Note::normal(
        "RecoveriesAcknowledged",
        "Acknowledge",
        format!(
            "recoveries acknowledged ({ACKNOWLEDGE_ANNOTATION}={value}): automatic recovery \
             is no longer blocked"
        ),
    )
}

/// `Recovered`, `RecoveryFailed`, `SwitchedOver` or `SwitchoverFailed`: a recovery or
/// switchover ended.
pub fn recovery_ended(r: &RecoveryStatus) -> Note {
    let ok = r.outcome == "recovered";
    let failure = r.analysis_code.as_deref().unwrap_or(r.kind.as_str());
    let mut text = match (&r.request_id, ok) {
        (Some(id), true) => format!(
            "switchover {id} moved the primary from {} to {}",
            r.failed,
            r.successor.as_deref().unwrap_or("?")
        ),
        (Some(id), false) => format!("switchover {id} away from {} ended {}", r.failed, r.outcome),
        (None, true) => format!(
            "{} failed ({failure}): recovery {} promoted {}",
            r.failed,
            r.id,
            r.successor.as_deref().unwrap_or("?")
        ),
        (None, false) => format!(
            "{} failed ({failure}): recovery {} ended {}",
            r.failed, r.id, r.outcome
        ),
    };
    if let Some(ms) = r.write_outage_ms {
        text += &format!(", write outage {ms} ms");
    } else if let Some(ms) = r.writable_after_ms.filter(|_| ok) {
        text += &format!(", writable after {ms} ms");
    }
    if let Some(e) = &r.error {
        text += &format!(": {e}");
    }
    if !r.lost_replicas.is_empty() {
        text += &format!("; lost replicas: {}", r.lost_replicas.join(", "));
    }
    if !ok {
        let tail = match (&r.successor, &r.request_id) {
            (Some(s), _) => format!("; {s} holds the primary role"),
            (None, Some(_)) => format!("; {} stays the primary", r.failed),
            (None, None) => {
                "; nobody was promoted (kubectl korc recoveries shows the steps)".into()
            }
        };
        text += &tail;
    }
    match (r.request_id.is_some(), ok) {
        (false, true) => Note::normal("Recovered", "Recover", text),
        (false, false) => Note::warning("RecoveryFailed", "Recover", text),
        (true, true) => Note::normal("SwitchedOver", "Recover", text),
        (true, false) => Note::warning("SwitchoverFailed", "Recover", text),
    }
}

/// `RollingRestart`: an outdated pod was evicted to restart on the current template.
pub fn rolling_restart(pod: &str, revision: Option<&str>) -> Note {
    let on = revision.map_or_else(
        || "the current pod template".to_owned(),
        |r| format!("revision {r}"),
    );
    Note::normal(
        "RollingRestart",
        "Restart",
        format!("{pod} runs an outdated pod template: evicted it to restart on {on}"),
    )
}

/// `CloneStarted`: korc copies a donor's data into a pod, and why.
pub fn clone_started(pod: &str, donor: &str, reason: &str) -> Note {
    let why = match reason {
        "purged" => "its source purged the transactions it needs",
        _ => "korc.dev/rebuild asks for it",
    };
    Note::normal(
        "CloneStarted",
        "Clone",
        format!(
            "{why}: copying {donor}'s data into {pod}; {pod} stays out of the replicas until it is attached"
        ),
    )
}

/// `CloneFinished`: the pod restarted on its copy; korc attaches it next.
pub fn clone_finished(pod: &str, donor: &str, seconds: f64) -> Note {
    Note::normal(
        "CloneFinished",
        "Clone",
        format!(
            "{pod} restarted on the copy of {donor}'s data ({seconds:.1} s): attaching it as a replica"
        ),
    )
}

/// `CloneFailed`: a copy could not start or did not finish; korc tries again.
pub fn clone_failed(pod: &str, donor: &str, error: &str) -> Note {
    let from = if donor.is_empty() {
        String::new()
    } else {
        format!(" from {donor}")
    };
    Note::warning(
        "CloneFailed",
        "Clone",
        format!("copying data{from} into {pod} failed: {error}; korc tries again in 30 s"),
    )
}

/// `RecoveryBlocked`: a detected failure is held, and why (`cluster`: its name, for
/// the command that lifts an anti-flapping block).
pub fn recovery_blocked(blocker: &Blocker, cluster: &str) -> Note {
    let text = match blocker {
        Blocker::AntiFlapping { until, recovery } => format!(
            "recovery {recovery} blocks automatic recoveries until {until} \
             (spec.recovery.blockPeriodSeconds); to lift the block: \
             kubectl korc ack {cluster}"
        ),
        other => other.message(),
    };
    Note::warning("RecoveryBlocked", "Decide", text)
}

/// `FailureDetected` or `AnalysisCleared` when the cluster's analysis code changed
/// from `previous` to the one in `status`; `None` while the cluster is being created
/// (no code yet) or when a restarted operator first sees a cluster without a problem.
pub fn analysis_changed(
    previous: Option<&str>,
    status: &MySQLClusterStatus,
    blocker: Option<&Blocker>,
) -> Option<Note> {
    let code = status.analysis_code.as_deref()?;
    if code == NO_PROBLEM {
        let was = previous.filter(|p| !p.is_empty() && *p != NO_PROBLEM)?;
        let primary = status.primary.as_deref().unwrap_or("none");
        let ready = status.ready.as_deref().unwrap_or("?");
        return Some(Note::normal(
            "AnalysisCleared",
            "Analyze",
            format!("no problem any more (was {was}): primary {primary}, {ready} ready"),
        ));
    }
    let found = summary(&status.analysis, code);
    let mut text = match found {
        Some(a) => format!("{code} on {}: {}", a.instance, a.description),
        None => code.to_owned(),
    };
    if let Some(gtids) = found.and_then(|a| a.errant_gtids.as_deref()) {
        text += &format!(" (errant GTIDs {gtids})");
    }
    text += "; ";
    text += &match (blocker, found.is_some_and(|a| a.actionable)) {
        (Some(b), _) => format!("not recovered: {}", b.message()),
        (None, true) => "korc recovers it".to_owned(),
        (None, false) => "no automatic recovery for this code: korc reports it in \
                          status.analysis and keeps probing"
            .to_owned(),
    };
    Some(Note::warning("FailureDetected", "Analyze", text))
}

/// The analysis entry that carries the summary code: the actionable one first.
fn summary<'a>(analysis: &'a [AnalysisStatus], code: &str) -> Option<&'a AnalysisStatus> {
    analysis
        .iter()
        .filter(|a| a.code == code)
        .max_by_key(|a| a.actionable)
}

/// `HookStarted`: a hook's Job was created, or adopted from an earlier leader (`how`).
pub fn hook_started(h: &HookRunStatus, how: &str) -> Note {
    Note::normal(
        "HookStarted",
        "RunHook",
        format!("{} hook {}: Job {} {how}", h.hook, h.name, h.job),
    )
}

/// `HookSucceeded` or `HookFailed`: a hook ended (`succeeded`: its outcome counts as
/// success).
pub fn hook_ended(h: &HookRunStatus, succeeded: bool) -> Note {
    let text = describe_hook(h);
    if succeeded {
        Note::normal("HookSucceeded", "RunHook", text)
    } else {
        Note::warning("HookFailed", "RunHook", text)
    }
}

/// A hook run in one line: point, name, Job, outcome and message.
pub fn describe_hook(h: &HookRunStatus) -> String {
    let mut text = format!("{} hook {} (Job {}) {}", h.hook, h.name, h.job, h.outcome);
    if let Some(m) = &h.message {
        text += &format!(": {m}");
    }
    text
}

#[cfg(test)]
mod tests;
