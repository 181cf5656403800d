//! Dry runs: what a recovery or a switchover would do, planned from one probe by the
//! same pure functions the real runs use ([`super::plan`]), and nothing executed.
//!
//! A real dead-master recovery plans in two parts: it stops the replicas' IO threads,
//! re-reads their positions, and only then chooses the candidate. A dry run cannot
//! stop anything, so it chooses from the positions as probed and says so in its
//! `notes`; the real run may choose differently when a replica receives more in
//! between.

use super::error::RecoveryError;
use super::plan::{self, PlannedStep, Start, Switch};
use super::record::{RecoveryKind, StepKind};
use super::semi_sync;
use crate::topology::analysis::{Analysis, AnalysisCode};
use crate::topology::candidate::{CandidateChoice, ChosenBy, RankedReplica, rank};
use crate::topology::cluster::ClusterView;
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::policy::Policy;
use serde::{Deserialize, Serialize};

/// What a dry run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// A recovery or switchover would run the steps listed.
    Plan,
    /// No analysis calls for a recovery.
    NothingToDo,
    /// A recovery is called for (or a switchover asked for) but would stop without a
    /// successor: no candidate, an excluded target, a second primary. The steps listed
    /// (a dead master's replicas stop receiving) run before it stops; nothing is
    /// promoted.
    Refused,
}

/// The hand-over to a better-ruled replica once the successor is writable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandOver {
    /// The promoted replica.
    pub from: InstanceKey,
    /// The better-ruled replica that takes over.
    pub to: InstanceKey,
    /// Its steps, in order.
    pub steps: Vec<PlannedStep>,
}

/// The document `korc recover --dry-run` and `korc switchover --dry-run` print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Always true: nothing was changed.
    pub dry_run: bool,
    /// Plan, nothing to do, or refused.
    pub verdict: Verdict,
    /// The recovery it would be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<RecoveryKind>,
    /// The analysis acted on (the first actionable one), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// The failed instance, or the primary a switchover moves away from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<InstanceKey>,
    /// Who would take over in the end (after the hand-over, if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successor: Option<InstanceKey>,
    /// Why nothing would be done, or why it would be refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The replica candidate choice would promote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted: Option<InstanceKey>,
    /// What set it before the next candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen_by: Option<ChosenBy>,
    /// Every replica considered, best first, excluded ones last with the reason.
    pub ranking: Vec<RankedReplica>,
    /// The more advanced replica the candidate first catches up from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub donor: Option<InstanceKey>,
    /// The hand-over to a better-ruled replica, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hand_over: Option<HandOver>,
    /// Replicas left out whatever happens.
    pub lost_replicas: Vec<InstanceKey>,
    /// The steps the executor would run, in order.
    pub steps: Vec<PlannedStep>,
    /// What the real run does differently from what is planned here.
    pub notes: Vec<String>,
}

impl DryRun {
    fn new(verdict: Verdict, kind: Option<RecoveryKind>, analysis: Option<Analysis>) -> Self {
        Self {
            dry_run: true,
            verdict,
            kind,
            failed: analysis.as_ref().map(|a| a.instance.clone()),
            analysis,
            successor: None,
            reason: None,
            promoted: None,
            chosen_by: None,
            ranking: Vec::new(),
            donor: None,
            hand_over: None,
            lost_replicas: Vec::new(),
            steps: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn refuse(mut self, e: &RecoveryError) -> Self {
        self.verdict = Verdict::Refused;
        self.reason = Some(e.to_string());
        if let RecoveryError::NoCandidate(n) = e {
            self.ranking = n.ranking.clone();
        }
        self
    }

    fn choice(&mut self, c: &CandidateChoice) {
        self.promoted = Some(c.promoted.clone());
        self.chosen_by = c.chosen_by;
        self.ranking = c.ranking.clone();
        self.donor = c.ahead.first().cloned();
    }

    fn planned(mut self, p: plan::Plan) -> Self {
        if let Some(c) = &p.candidate {
            self.choice(c);
        }
        self.successor = Some(p.hand_over.as_ref().map_or(p.successor, |h| h.to.clone()));
        self.hand_over = p
            .hand_over
            .map(|Switch { from, to, steps }| HandOver { from, to, steps });
        self.lost_replicas = p.lost;
        self.steps.extend(p.steps);
        self
    }
}

/// What `korc recover` would do with this probe: the recovery the first actionable
/// analysis calls for, planned as [`super::recover`] plans it.
pub fn recover(
    instances: &[Instance],
    analyses: &[Analysis],
    policy: &Policy,
    now_ms: u64,
) -> DryRun {
    let Some(a) = analyses.iter().find(|a| a.actionable) else {
        let mut d = DryRun::new(Verdict::NothingToDo, None, None);
        d.reason = Some(why_nothing(analyses));
        return d;
    };
    let analysis = Some(a.clone());
    match a.code {
        c if c.is_master_failure() => dead_master(instances, a, policy, now_ms),
        c if c.is_semi_sync_failure() => {
            let mut d = DryRun::new(
                Verdict::Plan,
                Some(RecoveryKind::SemiSyncReplicas),
                analysis,
            );
            match semi_sync::plan(instances, &a.instance, policy, now_ms) {
                Ok(p) => {
                    d.notes.extend(
                        p.unfit
                            .iter()
                            .map(|(k, why)| format!("{k} may not acknowledge: {why}")),
                    );
                    d.steps = p.steps;
                    d
                }
                Err(e) => d.refuse(&e),
            }
        }
        AnalysisCode::NoWriteableMasterStructureWarning => {
            let mut d = DryRun::new(
                Verdict::Plan,
                Some(RecoveryKind::NonWriteableMaster),
                analysis,
            );
            d.successor = Some(a.instance.clone());
            d.steps.push(PlannedStep::MakeWritable {
                master: a.instance.clone(),
            });
            d
        }
        _ => {
            let d = DryRun::new(
                Verdict::Plan,
                Some(RecoveryKind::DeadIntermediateMaster),
                analysis,
            );
            match plan::intermediate(instances, &a.instance, policy) {
                Ok(p) => d.planned(p),
                Err(e) => d.refuse(&e),
            }
        }
    }
}

fn dead_master(instances: &[Instance], a: &Analysis, policy: &Policy, now_ms: u64) -> DryRun {
    let failed = &a.instance;
    let d = DryRun::new(
        Verdict::Plan,
        Some(RecoveryKind::DeadMaster),
        Some(a.clone()),
    );
    let start = match plan::start(instances, failed, None) {
        Ok(s) => s,
        Err(e) => return d.refuse(&e),
    };
    if let Start::Complete(successor) = start {
        let mut d = match plan::completion(instances, failed, &successor, policy) {
            Ok(p) => d.planned(p),
            Err(e) => return d.refuse(&e),
        };
        d.notes.push(format!(
            "{successor} is a writable master already holding everything the replicas of \
             {failed} received: an earlier recovery got that far, and this one completes it"
        ));
        return d;
    }
    let freeze = match plan::freeze(instances, failed) {
        Ok(steps) => steps,
        Err(e) => return d.refuse(&e),
    };
    let view = ClusterView::new(instances);
    let Some(f) = view.index_of(failed) else {
        return d.refuse(&RecoveryError::UnknownInstance(failed.clone()));
    };
    let replicas: Vec<&Instance> = view.replicas_of(f).iter().map(|&r| &instances[r]).collect();
    let mut d = d;
    d.steps = freeze;
    d.notes.push(format!(
        "the real run stops these IO threads, re-reads the positions ({}) and chooses the \
         candidate ({}) from them: a replica that receives more in between may change the choice",
        StepKind::ReadPositions,
        StepKind::ChooseCandidate
    ));
    match plan::dead_master(&replicas, &instances[f], policy, now_ms, None) {
        Ok(p) => d.planned(p),
        Err(e) => d.refuse(&e),
    }
}

/// Why no recovery would run: the first recoverable failure and what suppresses it,
/// else the cluster's state.
fn why_nothing(analyses: &[Analysis]) -> String {
    if let Some(a) = analyses.iter().find(|a| a.code.has_recovery()) {
        let why = if a.skippable_due_to_downtime {
            "it is downtimed"
        } else if a.code == AnalysisCode::NoWriteableMasterStructureWarning {
            "recoverNonWriteableMaster is off"
        } else {
            "the policy suppresses it"
        };
        return format!("{:?} on {} is not actionable: {why}", a.code, a.instance);
    }
    match analyses.iter().find(|a| a.code != AnalysisCode::NoProblem) {
        Some(a) => format!(
            "no analysis calls for a recovery (first problem: {:?} on {})",
            a.code, a.instance
        ),
        None => "no problem found".into(),
    }
}

/// What `korc switchover [--to TARGET]` would do with this probe, planned as
/// [`super::graceful_takeover`] plans it. The ranking is given even for a named
/// target, so a refused one shows its exclusion.
pub fn switchover(
    instances: &[Instance],
    target: Option<&InstanceKey>,
    policy: &Policy,
    now_ms: u64,
) -> DryRun {
    let mut d = DryRun::new(Verdict::Plan, Some(RecoveryKind::GracefulTakeover), None);
    let view = ClusterView::new(instances);
    let Some(p) = view.primary() else {
        return d.refuse(&RecoveryError::NoPrimary);
    };
    let primary = &instances[p];
    d.failed = Some(primary.key.clone());
    // A named target is checked, not chosen: rank the replicas for the document.
    if target.is_some() {
        let replicas: Vec<&Instance> = view.replicas_of(p).iter().map(|&i| &instances[i]).collect();
        d.ranking = rank(&replicas, primary, policy, now_ms);
    }
    match plan::takeover(instances, p, target, policy, now_ms) {
        Ok(plan) => {
            let mut d = d.planned(plan);
            d.notes.push(format!(
                "the primary stays read-only at most takeoverCatchUpTimeoutMs ({} ms) while \
                 the target catches up; on expiry it is made writable again",
                policy.takeover_catch_up_timeout_ms
            ));
            d
        }
        Err(e) => d.refuse(&e),
    }
}

/// A planned step as the document shows it: the kind the record would give it, the
/// instance it acts on, and what else it names.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepView<'a> {
    kind: StepKind,
    instance: &'a InstanceKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a InstanceKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    donor: Option<&'a InstanceKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a InstanceKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary: Option<&'a InstanceKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    writable: Option<bool>,
    /// A promotion that turns the semi-sync source side on first.
    #[serde(skip_serializing_if = "Option::is_none")]
    semi_sync: Option<bool>,
}

impl Serialize for PlannedStep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = StepView {
            kind: self.kind(),
            instance: self.instance(),
            to: None,
            donor: None,
            from: None,
            primary: None,
            writable: None,
            semi_sync: None,
        };
        match self {
            Self::CatchUpFromDonor { donor, .. } => v.donor = Some(donor),
            Self::Promote {
                writable,
                semi_sync,
                ..
            } => {
                v.writable = Some(*writable);
                v.semi_sync = semi_sync.then_some(true);
            }
            Self::MakeWritable { .. } => v.writable = Some(true),
            Self::Repoint { to, .. } | Self::DemoteOldPrimary { to, .. } => v.to = Some(to),
            Self::DetachLostReplica { from, .. } => v.from = Some(from),
            Self::WaitCatchUp { primary, .. } => v.primary = Some(primary),
            Self::StopReplicaIo { .. }
            | Self::WaitRelayLogApplied { .. }
            | Self::FenceOldPrimary { .. }
            | Self::SetReadOnly { .. }
            | Self::Rollback { .. }
            | Self::EnableSemiSync { .. }
            | Self::DisableSemiSync { .. }
            | Self::ReleaseWaitingCommits { .. } => {}
        }
        v.serialize(s)
    }
}

#[cfg(test)]
mod tests;
