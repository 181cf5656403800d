//! Readable renderings of the documents `recover` and `switchover` print, in the
//! manner of orchestrator-client: one line per fact, instances by `host:port`.

use crate::topology::candidate::RankedReplica;
use crate::topology::instance::InstanceKey;
use crate::topology::recovery::dry_run::{DryRun, Verdict};
use crate::topology::recovery::{PlannedStep, RecoveryKind, RecoveryRecord};
use std::fmt::Write;

/// A dry run: what it acts on, the verdict, the ranking, the steps and the notes.
pub fn dry_run(d: &DryRun) -> String {
    let mut out = String::new();
    let kind = d.kind.map(|k| format!("{k:?}")).unwrap_or_default();
    let verdict = match d.verdict {
        Verdict::Plan => "plan",
        Verdict::NothingToDo => "nothing to do",
        Verdict::Refused => "refused",
    };
    let _ = writeln!(out, "dry run{}: {verdict}", prefixed(" ", &kind));
    if let Some(a) = &d.analysis {
        let _ = writeln!(
            out,
            "analysis: {:?} on {}: {}",
            a.code, a.instance, a.description
        );
    }
    if let Some(f) = &d.failed {
        let role = match d.kind {
            Some(RecoveryKind::GracefulTakeover) => "primary",
            _ => "failed",
        };
        let _ = writeln!(out, "{role}: {f}");
    }
    if let Some(r) = &d.reason {
        let _ = writeln!(out, "reason: {r}");
    }
    if let Some(p) = &d.promoted {
        let why = d.chosen_by.map(|c| format!(" ({c})")).unwrap_or_default();
        let _ = writeln!(out, "promoted: {p}{why}");
    }
    if let Some(donor) = &d.donor {
        let _ = writeln!(out, "catches up first from: {donor}");
    }
    if let Some(s) = &d.successor {
        let _ = writeln!(out, "successor: {s}");
    }
    if !d.ranking.is_empty() {
        let _ = writeln!(out, "candidates:");
        for (i, r) in d.ranking.iter().enumerate() {
            let _ = writeln!(out, "  {}", ranked(i, r, d.promoted.as_ref()));
        }
    }
    steps(&mut out, "steps", &d.steps);
    if let Some(h) = &d.hand_over {
        steps(
            &mut out,
            &format!("hand-over {} -> {}", h.from, h.to),
            &h.steps,
        );
    }
    if !d.lost_replicas.is_empty() {
        let _ = writeln!(out, "lost: {}", keys(&d.lost_replicas));
    }
    for n in &d.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

fn prefixed(prefix: &str, s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("{prefix}{s}")
    }
}

fn keys(k: &[InstanceKey]) -> String {
    k.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ranked(i: usize, r: &RankedReplica, promoted: Option<&InstanceKey>) -> String {
    let place = match &r.excluded {
        Some(_) => "-".to_string(),
        None => format!("{}.", i + 1),
    };
    let received = r.received.as_deref().unwrap_or("?");
    let tail = match (&r.excluded, promoted == Some(&r.instance)) {
        (Some(e), _) => format!("  excluded ({}): {e}", e.code()),
        (None, true) => "  <- promoted".into(),
        (None, false) => String::new(),
    };
    format!(
        "{place:<3} {}  received {received}  {}{tail}",
        r.instance, r.promotion_rule
    )
}

fn steps(out: &mut String, title: &str, steps: &[PlannedStep]) {
    if steps.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}:");
    for (i, s) in steps.iter().enumerate() {
        let _ = writeln!(out, "  {:>2}. {}", i + 1, step(s));
    }
}

fn step(s: &PlannedStep) -> String {
    let extra = match s {
        PlannedStep::CatchUpFromDonor { donor, .. } => format!(" from {donor}"),
        PlannedStep::Promote { writable, .. } => {
            if *writable { " writable" } else { " read-only" }.into()
        }
        PlannedStep::MakeWritable { .. } => " writable".into(),
        PlannedStep::Repoint { to, .. } | PlannedStep::DemoteOldPrimary { to, .. } => {
            format!(" -> {to}")
        }
        PlannedStep::DetachLostReplica { from, .. } => format!(" from {from}"),
        PlannedStep::WaitCatchUp { primary, .. } => format!(" to {primary}"),
        _ => String::new(),
    };
    format!("{} {}{extra}", s.kind(), s.instance())
}

/// A recovery record: outcome, who, the candidate, each step with its time, and the
/// error.
pub fn record(r: &RecoveryRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:?} {}: {:?} (failed {})",
        r.kind, r.id, r.outcome, r.failed
    );
    if let Some(s) = &r.successor {
        let writable = r
            .writable_after_micros
            .map(|us| format!(", writable after {:.1} ms", us as f64 / 1000.0))
            .unwrap_or_default();
        let _ = writeln!(out, "successor: {s}{writable}");
    }
    if let Some(c) = &r.candidate {
        let why = c.chosen_by.map(|w| format!(" ({w})")).unwrap_or_default();
        let _ = writeln!(out, "promoted: {}{why}", c.promoted);
        for (i, rr) in c.ranking.iter().enumerate() {
            let _ = writeln!(out, "  {}", ranked(i, rr, Some(&c.promoted)));
        }
    }
    if !r.lost_replicas.is_empty() {
        let _ = writeln!(out, "lost: {}", keys(&r.lost_replicas));
    }
    for s in &r.steps {
        let on = s
            .instance
            .as_ref()
            .map(|k| format!(" {k}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<6} {}{on}  {:.1} ms{}",
            if s.ok { "ok" } else { "FAILED" },
            s.kind,
            s.duration_micros as f64 / 1000.0,
            prefixed("  ", &s.detail)
        );
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "error: {e}");
    }
    out
}
