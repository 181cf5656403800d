//! The recoveries of `kubectl korc recoveries`: each with its outcome, its steps and
//! its hooks' Jobs, and the last failure detection with its hooks. A pure rendering of
//! the cluster's status.

use crate::api::{FailureDetectionStatus, HookRunStatus, MySQLClusterStatus, RecoveryStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use std::fmt::Write;

/// The last `count` recoveries, newest first, then the last failure detection.
pub fn render(status: &MySQLClusterStatus, count: usize) -> String {
    let mut out = String::new();
    if status.recoveries.is_empty() {
        out.push_str("no recoveries\n");
    }
    for r in status.recoveries.iter().rev().take(count) {
        recovery(&mut out, r);
    }
    if let Some(d) = &status.failure_detection {
        detection(&mut out, d);
    }
    out
}

fn recovery(out: &mut String, r: &RecoveryStatus) {
    let code = r
        .analysis_code
        .as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let successor = r
        .successor
        .as_deref()
        .map(|s| format!(" -> {s}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "recovery {}: {}{code} of {}{successor}: {}",
        r.id, r.kind, r.failed, r.outcome
    );
    let ended = r
        .ended_at
        .as_ref()
        .map(|t| format!(", ended {}", t.0))
        .unwrap_or_default();
    let writable = r
        .writable_after_ms
        .map(|ms| format!(", writable after {ms} ms"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  by {}, started {}{ended}{writable}",
        r.leader, r.started_at.0
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  error: {e}");
    }
    if !r.lost_replicas.is_empty() {
        let _ = writeln!(out, "  lost replicas: {}", r.lost_replicas.join(", "));
    }
    for s in &r.steps {
        let ok = if s.ok { "ok" } else { "FAILED" };
        let on = s.instance.as_deref().unwrap_or("-");
        let detail = s
            .detail
            .as_deref()
            .map(|d| format!("  {d}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  step {:<24} {on:<12} {:>10} ms  {ok}{detail}",
            s.kind, s.duration_ms
        );
    }
    hooks(out, &r.hooks);
}

fn detection(out: &mut String, d: &FailureDetectionStatus) {
    let _ = writeln!(
        out,
        "failure detection {}: {} of {}, detected {}",
        d.id, d.code, d.instance, d.detected_at.0
    );
    hooks(out, &d.hooks);
}

fn hooks(out: &mut String, hooks: &[HookRunStatus]) {
    for h in hooks {
        let took = match (&h.started_at, &h.ended_at) {
            (Some(MicroTime(a)), Some(MicroTime(b))) => {
                format!(
                    " in {:.2} s",
                    (b.as_microsecond() - a.as_microsecond()) as f64 / 1e6
                )
            }
            _ => String::new(),
        };
        let message = h
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  hook {} {} (Job {}): {}{took}{message}",
            h.hook, h.name, h.job, h.outcome
        );
    }
}

#[cfg(test)]
mod tests;
