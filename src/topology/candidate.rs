//! Choosing the replica to promote: a pure function of probe results and policy.
//!
//! Rank first by the most advanced *received* GTID position (applied plus relay log),
//! so that korc never promotes a replica that misses transactions another replica
//! has; among equal positions, by the most *applied* (so a replica whose applier lags
//! is not promoted while a caught-up one exists, and the failover does not wait for a
//! relay log to drain), then by promotion rule, same data center as the failed
//! master, lower version, lower binlog format and logging of replica updates.
//! Instances that must not be promoted are excluded but still considered as donors:
//! when an excluded replica is ahead of the chosen one, recovery first lets the
//! chosen one catch up from it.

use super::cluster::ClusterView;
use super::gtid::{GtidHistory, GtidPosition, MariaDbBinlogState, MariaDbPosition, MysqlGtidSet};
use super::instance::{Flavor, Instance, InstanceKey, ThreadState};
use super::policy::{InstancePolicy, Policy, PromotionRule};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::cmp::Reverse;

/// Why a replica cannot be promoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "reason", content = "detail")]
pub enum Exclusion {
    /// korc cannot reach it.
    Unreachable,
    /// Its GTID state does not parse: neither its position nor whether it holds errant
    /// transactions can be told, so it is never taken for clean.
    UnparseableGtids,
    /// Its promotion rule is `must_not`.
    MustNot,
    /// It is downtimed.
    Downtimed,
    /// It has transactions the failed master never had.
    ErrantGtids(String),
    /// It has no binary log or does not log replicated transactions, so it could not
    /// serve the other replicas.
    NoBinaryLog,
    /// Its GTID position is unknown.
    UnknownPosition,
    /// Another data center than the failed master's, and the policy forbids it.
    OtherDataCenter(String),
    /// Another region than the failed master's, and the policy forbids it.
    OtherRegion(String),
    /// It lagged beyond the policy's limit.
    Lagging(u64),
    /// It is not a replica of the master being replaced.
    NotAReplica,
}

impl Exclusion {
    /// The reason's name, as the JSON's `reason` spells it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::UnparseableGtids => "unparseableGtids",
            Self::MustNot => "mustNot",
            Self::Downtimed => "downtimed",
            Self::ErrantGtids(_) => "errantGtids",
            Self::NoBinaryLog => "noBinaryLog",
            Self::UnknownPosition => "unknownPosition",
            Self::OtherDataCenter(_) => "otherDataCenter",
            Self::OtherRegion(_) => "otherRegion",
            Self::Lagging(_) => "lagging",
            Self::NotAReplica => "notAReplica",
        }
    }

    /// True when it also forbids a switchover the user names this replica for. Data
    /// center, region and lag limits guard automatic failover only: a switchover waits
    /// for its target to catch up, and a named target is the user's choice of place.
    pub fn refuses_named_target(&self) -> bool {
        !matches!(
            self,
            Self::OtherDataCenter(_) | Self::OtherRegion(_) | Self::Lagging(_)
        )
    }
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable => f.write_str("korc cannot reach it"),
            Self::UnparseableGtids => f.write_str("its GTID state does not parse"),
            Self::MustNot => f.write_str("its promotion rule is must_not"),
            Self::Downtimed => f.write_str("it is downtimed"),
            Self::ErrantGtids(g) => write!(f, "it has errant transactions {g}"),
            Self::NoBinaryLog => {
                f.write_str("it does not log replicated transactions to a binary log")
            }
            Self::UnknownPosition => f.write_str("its GTID position is unknown"),
            Self::OtherDataCenter(dc) => write!(
                f,
                "it is in data center {dc}, not the failed master's, and cross-data-center failover is prevented"
            ),
            Self::OtherRegion(r) => write!(
                f,
                "it is in region {r}, not the failed master's, and cross-region failover is prevented"
            ),
            Self::Lagging(s) => write!(
                f,
                "it lags {s} s, at or beyond failMasterPromotionOnLagSeconds"
            ),
            Self::NotAReplica => f.write_str("it is not a replica of the master"),
        }
    }
}

/// One replica as candidate choice saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RankedReplica {
    /// The replica.
    pub instance: InstanceKey,
    /// Its received GTID position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
    /// Its promotion rule.
    pub promotion_rule: PromotionRule,
    /// Why it cannot be promoted, if it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<Exclusion>,
}

/// The outcome of candidate choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CandidateChoice {
    /// The replica to promote.
    pub promoted: InstanceKey,
    /// Every replica, best first; excluded ones last.
    pub ranking: Vec<RankedReplica>,
    /// Reachable replicas holding transactions the promoted one lacks, most advanced
    /// first: the promoted one must catch up from the first before promotion.
    pub ahead: Vec<InstanceKey>,
    /// A better-ruled replica (`must`/`prefer`) to hand the primary role over to once
    /// it has caught up (orchestrator's replacePromotedReplicaWithCandidate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_over_to: Option<InstanceKey>,
    /// What set the promoted replica before the next one that could be promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_by: Option<ChosenBy>,
}

/// The first ranking criterion on which the promoted replica beat the runner-up (the
/// next replica that could be promoted), or why there was no contest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChosenBy {
    /// It is the only replica that can be promoted.
    OnlyCandidate,
    /// An interrupted recovery chose it and it can still be promoted.
    Kept,
    /// It received transactions the runner-up did not.
    MostAdvanced,
    /// Equally advanced; it has applied more of what it received.
    MostApplied,
    /// Equally advanced; its promotion rule is better.
    PromotionRule,
    /// Equally advanced and ruled; it is in the failed master's data center.
    DataCenter,
    /// Equally advanced, ruled and placed; its version is lower.
    Version,
    /// Equal but for the binary log format, which is lower (statement before row).
    BinlogFormat,
    /// Equal in everything korc ranks by: the first by address.
    Address,
}

impl std::fmt::Display for ChosenBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OnlyCandidate => "the only replica that can be promoted",
            Self::Kept => "chosen by an interrupted recovery and still promotable",
            Self::MostAdvanced => "it received transactions the next candidate did not",
            Self::MostApplied => "as advanced as the next candidate, and applied more of it",
            Self::PromotionRule => {
                "as advanced as the next candidate, with a better promotion rule"
            }
            Self::DataCenter => {
                "as advanced as the next candidate, in the failed master's data center"
            }
            Self::Version => "as advanced as the next candidate, with a lower version",
            Self::BinlogFormat => "as advanced as the next candidate, with a lower binlog format",
            Self::Address => "as good as the next candidate; first by address",
        })
    }
}

/// No replica can be promoted; the ranking says why for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("no replica can be promoted: {}", summary(.ranking))]
pub struct NoCandidate {
    /// Every replica with its exclusion.
    pub ranking: Vec<RankedReplica>,
}

fn summary(ranking: &[RankedReplica]) -> String {
    if ranking.is_empty() {
        return "no replicas".into();
    }
    ranking
        .iter()
        .map(|r| {
            format!(
                "{} {:?}",
                r.instance,
                r.excluded
                    .as_ref()
                    .map(|e| format!("{e:?}"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn binlog_format_rank(f: Option<&str>) -> u8 {
    match f.map(str::to_ascii_uppercase).as_deref() {
        Some("STATEMENT") => 0,
        Some("MIXED") => 1,
        _ => 2,
    }
}

/// True when every GTID text candidate choice reads from `r` parses. An instance of
/// unknown flavor has no position at all and is excluded for that instead.
fn gtids_parse(r: &Instance) -> bool {
    let received = r
        .replication
        .as_ref()
        .map_or("", |x| x.received_gtids.as_str());
    match r.flavor {
        Some(Flavor::Mariadb) => {
            MariaDbPosition::parse(&r.gtid.current_pos).is_ok()
                && MariaDbPosition::parse(received).is_ok()
                && MariaDbBinlogState::parse(&r.gtid.binlog_state).is_ok()
        }
        Some(Flavor::Mysql) => {
            MysqlGtidSet::parse(&r.gtid.executed).is_ok() && MysqlGtidSet::parse(received).is_ok()
        }
        None => true,
    }
}

/// Why a replica of `failed` must not be put under its successor at all: its GTID
/// state does not parse, or it holds transactions of its own the failed master never
/// had (merging them would spread them). Such a replica is lost to the recovery.
pub fn cannot_follow(r: &Instance, failed: &Instance) -> Option<Exclusion> {
    if !gtids_parse(r) {
        return Some(Exclusion::UnparseableGtids);
    }
    r.own_errant_gtids(failed)
        .filter(|e| !e.is_empty())
        .map(Exclusion::ErrantGtids)
}

/// What candidate choice reads of one replica, each read once: its policy entry, its
/// received position, and why it cannot follow a successor (if it cannot).
struct Seen<'a> {
    policy: Option<&'a InstancePolicy>,
    position: Option<GtidPosition>,
    cannot_follow: Option<Exclusion>,
}

impl<'a> Seen<'a> {
    /// `failed_history` is the failed master's, parsed once for every replica.
    fn new(r: &Instance, failed_history: Option<&GtidHistory>, policy: &'a Policy) -> Self {
        let position = r.reachable.then(|| r.received_position()).flatten();
        // What the position did not parse already: the history the errant check reads
        // (a MariaDB binlog state; a MySQL executed set is the position's own).
        let own = r.reachable.then(|| r.gtid_history()).flatten();
        let parses = match r.flavor {
            Some(_) => position.is_some() && own.is_some(),
            None => true,
        };
        let cannot_follow = if !r.reachable {
            None
        } else if !parses {
            Some(Exclusion::UnparseableGtids)
        } else {
            own.as_ref()
                .zip(failed_history)
                .and_then(|(own, theirs)| r.own_errant_between(own, theirs))
                .filter(|e| !e.is_empty())
                .map(Exclusion::ErrantGtids)
        };
        Self {
            policy: policy.instances.get(&r.key),
            position,
            cannot_follow,
        }
    }

    fn rule(&self) -> PromotionRule {
        self.policy.map(|p| p.promotion_rule).unwrap_or_default()
    }

    fn data_center(&self) -> Option<&'a str> {
        self.policy.and_then(|p| p.data_center.as_deref())
    }

    fn region(&self) -> Option<&'a str> {
        self.policy.and_then(|p| p.region.as_deref())
    }

    fn downtimed(&self, now_ms: u64) -> bool {
        self.policy
            .and_then(|p| p.downtime.as_ref())
            .is_some_and(|d| d.until_ms > now_ms)
    }
}

fn exclusion(
    r: &Instance,
    seen: &Seen<'_>,
    failed: &Instance,
    policy: &Policy,
    now_ms: u64,
) -> Option<Exclusion> {
    let failed_dc = policy.data_center(&failed.key);
    let failed_region = policy.region(&failed.key);
    if !r.reachable {
        return Some(Exclusion::Unreachable);
    }
    if seen.cannot_follow == Some(Exclusion::UnparseableGtids) {
        return Some(Exclusion::UnparseableGtids);
    }
    if seen.rule() == PromotionRule::MustNot {
        return Some(Exclusion::MustNot);
    }
    if seen.downtimed(now_ms) {
        return Some(Exclusion::Downtimed);
    }
    if let Some(e) = &seen.cannot_follow {
        return Some(e.clone());
    }
    if !r.is_logging_replica_updates() {
        return Some(Exclusion::NoBinaryLog);
    }
    if seen.position.is_none() {
        return Some(Exclusion::UnknownPosition);
    }
    let dc = seen.data_center();
    if policy.prevent_cross_data_center_master_failover && failed_dc.is_some() && dc != failed_dc {
        return Some(Exclusion::OtherDataCenter(
            dc.unwrap_or("unknown").to_string(),
        ));
    }
    let region = seen.region();
    if policy.prevent_cross_region_master_failover
        && failed_region.is_some()
        && region != failed_region
    {
        return Some(Exclusion::OtherRegion(
            region.unwrap_or("unknown").to_string(),
        ));
    }
    if let (Some(limit), Some(lag)) = (policy.fail_master_promotion_on_lag_seconds, r.lag_seconds())
        && lag >= limit
    {
        return Some(Exclusion::Lagging(lag));
    }
    None
}

/// Chooses the replica of `failed` to promote. `replicas` are its direct replicas as
/// probed after their IO threads stopped, so received positions are final.
pub fn choose_candidate<R: Borrow<Instance>>(
    replicas: &[R],
    failed: &Instance,
    policy: &Policy,
    now_ms: u64,
) -> Result<CandidateChoice, NoCandidate> {
    choose(replicas, failed, policy, now_ms, None)
}

/// Like [`choose_candidate`], but keeps `keep` (the candidate an interrupted recovery
/// chose) when it can still be promoted; others then catch up from it or donate to it
/// as usual. When it cannot, the choice is made anew.
pub fn keep_candidate<R: Borrow<Instance>>(
    replicas: &[R],
    failed: &Instance,
    policy: &Policy,
    now_ms: u64,
    keep: &InstanceKey,
) -> Result<CandidateChoice, NoCandidate> {
    choose(replicas, failed, policy, now_ms, Some(keep))
}

/// Ranks every replica of `failed`, best first, excluded ones last, whether or not one
/// can be promoted: what a switchover to a named replica checks the target against.
pub fn rank<R: Borrow<Instance>>(
    replicas: &[R],
    failed: &Instance,
    policy: &Policy,
    now_ms: u64,
) -> Vec<RankedReplica> {
    match choose(replicas, failed, policy, now_ms, None) {
        Ok(c) => c.ranking,
        Err(n) => n.ranking,
    }
}

/// "If the primary failed now, who would be promoted?": candidate choice among the
/// direct replicas of the live `primary`, taken as the failed master. None when the
/// primary is unknown or has no replicas.
///
/// A replica still receiving from the primary (IO thread running) is taken to have
/// received everything the primary has applied, as it would in the moment before a
/// crash; one that stopped receiving keeps what it has. Likewise a replica whose
/// applier runs is taken to have applied what it received; one whose applier stopped
/// keeps what it applied. So the answer does not flip between replicas that are in
/// sync with every write, yet a replica that fell out of replication ranks behind as
/// it would in a real failover.
pub fn failover_candidate(
    instances: &[Instance],
    primary: &InstanceKey,
    policy: &Policy,
    now_ms: u64,
) -> Option<Result<CandidateChoice, NoCandidate>> {
    let view = ClusterView::new(instances);
    let p = view.index_of(primary)?;
    let master = &instances[p];
    let applied = match master.flavor {
        Some(Flavor::Mariadb) => master.gtid.current_pos.as_str(),
        Some(Flavor::Mysql) => master.gtid.executed.as_str(),
        None => "",
    };
    let replicas: Vec<Instance> = view
        .replicas_of(p)
        .iter()
        .map(|&i| {
            let mut r = instances[i].clone();
            let in_sync =
                master.reachable && master.flavor == r.flavor && !applied.is_empty() && r.reachable;
            if let Some(rep) = r
                .replication
                .as_mut()
                .filter(|x| in_sync && x.io_running == ThreadState::Yes)
            {
                rep.received_gtids = applied.to_string();
            }
            let applier_runs = r
                .replication
                .as_ref()
                .is_some_and(|x| x.sql_running == ThreadState::Yes);
            if let Some(received) = r.received_position().filter(|_| applier_runs) {
                match r.flavor {
                    Some(Flavor::Mariadb) => r.gtid.current_pos = received.to_string(),
                    Some(Flavor::Mysql) => r.gtid.executed = received.to_string(),
                    None => {}
                }
            }
            r
        })
        .collect();
    if replicas.is_empty() {
        return None;
    }
    Some(choose_candidate(&replicas, master, policy, now_ms))
}

/// What replicas are ranked by, best first (smallest).
type RankKey<'a> = (
    Reverse<usize>,
    Reverse<u64>,
    Reverse<u64>,
    PromotionRule,
    Reverse<bool>,
    Option<(u32, u32)>,
    u8,
    &'a InstanceKey,
);

/// The criterion on which `winner` ranks before `runner_up`.
fn decided_by(winner: &RankKey<'_>, runner_up: &RankKey<'_>) -> ChosenBy {
    if (winner.0, winner.1) != (runner_up.0, runner_up.1) {
        ChosenBy::MostAdvanced
    } else if winner.2 != runner_up.2 {
        ChosenBy::MostApplied
    } else if winner.3 != runner_up.3 {
        ChosenBy::PromotionRule
    } else if winner.4 != runner_up.4 {
        ChosenBy::DataCenter
    } else if winner.5 != runner_up.5 {
        ChosenBy::Version
    } else if winner.6 != runner_up.6 {
        ChosenBy::BinlogFormat
    } else {
        ChosenBy::Address
    }
}

/// For each position, how many of the positions given (itself included) it contains: a
/// strictly more advanced replica always contains more than the one it is ahead of.
/// Positions usually form a chain (one domain, or domains advancing together), where
/// the counts follow from one sort; only positions that do not contain each other are
/// compared pairwise, so ten thousand replicas cost milliseconds, not seconds.
fn containment_counts(positions: &[Option<&GtidPosition>]) -> Vec<usize> {
    let sizes: Vec<u64> = positions
        .iter()
        .map(|p| p.map_or(0, GtidPosition::transactions))
        .collect();
    // Most advanced first; equal positions become one with a multiplicity (equal
    // positions have equal counts of transactions, so they are neighbours).
    let mut by_size: Vec<usize> = (0..positions.len())
        .filter(|&i| positions[i].is_some())
        .collect();
    by_size.sort_by_key(|&i| Reverse(sizes[i]));
    let mut distinct: Vec<(&GtidPosition, usize, u64)> = Vec::new();
    let mut of = vec![None; positions.len()];
    let mut run_start = 0;
    for &i in &by_size {
        let Some(p) = positions[i] else { continue };
        let n = sizes[i];
        if distinct.last().is_some_and(|(_, _, m)| *m != n) {
            run_start = distinct.len();
        }
        let d = match distinct[run_start..].iter().position(|(q, _, _)| *q == p) {
            Some(d) => run_start + d,
            None => {
                distinct.push((p, 0, n));
                distinct.len() - 1
            }
        };
        distinct[d].1 += 1;
        of[i] = Some(d);
    }
    let chain = distinct.windows(2).all(|w| w[0].0.contains(w[1].0));
    let mut count = vec![0; distinct.len()];
    if chain {
        // Each contains everything after it; before it, only equivalent positions
        // (different GTIDs, same transactions: MariaDB GTIDs of other server ids).
        let mut below = 0;
        for at in (0..distinct.len()).rev() {
            let (pos, times, n) = distinct[at];
            below += times;
            let equivalent_before: usize = distinct[..at]
                .iter()
                .rev()
                .take_while(|(_, _, m)| *m == n)
                .filter(|(e, _, _)| pos.contains(e))
                .map(|(_, times, _)| times)
                .sum();
            count[at] = below + equivalent_before;
        }
    } else {
        for (d, c) in count.iter_mut().enumerate() {
            *c = distinct
                .iter()
                .filter(|(o, _, _)| distinct[d].0.contains(o))
                .map(|(_, times, _)| times)
                .sum();
        }
    }
    of.iter().map(|d| d.map_or(0, |d| count[d])).collect()
}

fn choose<R: Borrow<Instance>>(
    replicas: &[R],
    failed: &Instance,
    policy: &Policy,
    now_ms: u64,
    keep: Option<&InstanceKey>,
) -> Result<CandidateChoice, NoCandidate> {
    let replicas: Vec<&Instance> = replicas.iter().map(Borrow::borrow).collect();
    // A master never seen has no history to hold errant transactions against.
    let failed_history = failed.last_seen_ms.and_then(|_| failed.gtid_history());
    let seen: Vec<Seen<'_>> = replicas
        .iter()
        .map(|r| Seen::new(r, failed_history.as_ref(), policy))
        .collect();
    let positions: Vec<Option<&GtidPosition>> = seen.iter().map(|s| s.position.as_ref()).collect();
    let contains = containment_counts(&positions);
    let failed_dc = policy.data_center(&failed.key);
    let keys: Vec<RankKey<'_>> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let transactions = positions[i].map_or(0, GtidPosition::transactions);
            let applied = r
                .reachable
                .then(|| r.executed_position())
                .flatten()
                .map_or(0, |p| p.transactions());
            let same_dc = failed_dc.is_some() && seen[i].data_center() == failed_dc;
            (
                Reverse(contains[i]),
                Reverse(transactions),
                Reverse(applied),
                seen[i].rule(),
                Reverse(same_dc),
                r.major_version(),
                binlog_format_rank(r.binlog_format.as_deref()),
                &r.key,
            )
        })
        .collect();
    let mut order: Vec<usize> = (0..replicas.len()).collect();
    order.sort_by_key(|&i| &keys[i]);
    let exclusions: Vec<Option<Exclusion>> = replicas
        .iter()
        .zip(&seen)
        .map(|(r, seen)| exclusion(r, seen, failed, policy, now_ms))
        .collect();
    order.sort_by_key(|&i| exclusions[i].is_some()); // stable: keeps rank within groups

    let ranking: Vec<RankedReplica> = order
        .iter()
        .map(|&i| RankedReplica {
            instance: replicas[i].key.clone(),
            received: positions[i].map(ToString::to_string),
            promotion_rule: seen[i].rule(),
            excluded: exclusions[i].clone(),
        })
        .collect();
    let kept = keep.and_then(|k| {
        (0..replicas.len()).find(|&i| &replicas[i].key == k && exclusions[i].is_none())
    });
    let Some(best) = kept.or_else(|| order.first().copied().filter(|&i| exclusions[i].is_none()))
    else {
        return Err(NoCandidate { ranking });
    };
    let best_pos = positions[best];
    // A replica whose GTIDs do not parse or hold errant transactions donates nothing:
    // catching up from it would spread what it must not.
    let mut ahead: Vec<usize> = (0..replicas.len())
        .filter(|&i| i != best && replicas[i].reachable)
        .filter(|&i| seen[i].cannot_follow.is_none())
        .filter(|&i| match (positions[i], best_pos) {
            (Some(p), Some(b)) => !b.contains(p),
            _ => false,
        })
        .collect();
    ahead.sort_by_key(|&i| &keys[i]);

    let promoted_rule = seen[best].rule();
    let hand_over_to = if promoted_rule.is_candidate() {
        None
    } else {
        order
            .iter()
            .copied()
            .filter(|&i| i != best && exclusions[i].is_none())
            .filter(|&i| seen[i].rule() < promoted_rule)
            .min_by_key(|&i| (seen[i].rule(), &keys[i]))
            .map(|i| replicas[i].key.clone())
    };
    let runner_up = order
        .iter()
        .copied()
        .find(|&i| i != best && exclusions[i].is_none());
    let chosen_by = if kept.is_some() {
        ChosenBy::Kept
    } else {
        runner_up.map_or(ChosenBy::OnlyCandidate, |r| {
            decided_by(&keys[best], &keys[r])
        })
    };
    Ok(CandidateChoice {
        promoted: replicas[best].key.clone(),
        ranking,
        ahead: ahead.iter().map(|&i| replicas[i].key.clone()).collect(),
        hand_over_to,
        chosen_by: Some(chosen_by),
    })
}

#[cfg(test)]
mod tests;
