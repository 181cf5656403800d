//! Choosing the replica to promote: a pure function of probe results and policy.
//!
//! Rank first by the most advanced *received* GTID position (applied plus relay log),
//! so that korc never promotes a replica that misses transactions another replica
//! has; among equal positions, by promotion rule, same data center as the failed
//! master, lower version, lower binlog format and logging of replica updates.
//! Instances that must not be promoted are excluded but still considered as donors:
//! when an excluded replica is ahead of the chosen one, recovery first lets the
//! chosen one catch up from it.

use super::gtid::{GtidPosition, MariaDbBinlogState, MariaDbPosition, MysqlGtidSet};
use super::instance::{Flavor, Instance, InstanceKey};
use super::policy::{Policy, PromotionRule};
use serde::{Deserialize, Serialize};
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

fn exclusion(r: &Instance, failed: &Instance, policy: &Policy, now_ms: u64) -> Option<Exclusion> {
    let failed_dc = policy.data_center(&failed.key);
    let failed_region = policy.region(&failed.key);
    if !r.reachable {
        return Some(Exclusion::Unreachable);
    }
    if !gtids_parse(r) {
        return Some(Exclusion::UnparseableGtids);
    }
    if policy.promotion_rule(&r.key) == PromotionRule::MustNot {
        return Some(Exclusion::MustNot);
    }
    if policy.is_downtimed(&r.key, now_ms) {
        return Some(Exclusion::Downtimed);
    }
    if let Some(e) = cannot_follow(r, failed) {
        return Some(e);
    }
    if !r.is_logging_replica_updates() {
        return Some(Exclusion::NoBinaryLog);
    }
    if r.received_position().is_none() {
        return Some(Exclusion::UnknownPosition);
    }
    let dc = policy.data_center(&r.key);
    if policy.prevent_cross_data_center_master_failover && failed_dc.is_some() && dc != failed_dc {
        return Some(Exclusion::OtherDataCenter(
            dc.unwrap_or("unknown").to_string(),
        ));
    }
    let region = policy.region(&r.key);
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
pub fn choose_candidate(
    replicas: &[Instance],
    failed: &Instance,
    policy: &Policy,
    now_ms: u64,
) -> Result<CandidateChoice, NoCandidate> {
    choose(replicas, failed, policy, now_ms, None)
}

/// Like [`choose_candidate`], but keeps `keep` (the candidate an interrupted recovery
/// chose) when it can still be promoted; others then catch up from it or donate to it
/// as usual. When it cannot, the choice is made anew.
pub fn keep_candidate(
    replicas: &[Instance],
    failed: &Instance,
    policy: &Policy,
    now_ms: u64,
    keep: &InstanceKey,
) -> Result<CandidateChoice, NoCandidate> {
    choose(replicas, failed, policy, now_ms, Some(keep))
}

fn choose(
    replicas: &[Instance],
    failed: &Instance,
    policy: &Policy,
    now_ms: u64,
    keep: Option<&InstanceKey>,
) -> Result<CandidateChoice, NoCandidate> {
    let positions: Vec<Option<GtidPosition>> = replicas
        .iter()
        .map(|r| r.reachable.then(|| r.received_position()).flatten())
        .collect();
    let failed_dc = policy.data_center(&failed.key);
    let sort_key = |i: usize| {
        let r = &replicas[i];
        let pos = positions[i].as_ref();
        // How many other replicas' positions this one contains: a strictly more
        // advanced replica always contains more than the one it is ahead of.
        let contains = pos.map_or(0, |p| {
            positions.iter().flatten().filter(|o| p.contains(o)).count()
        });
        let transactions = pos.map_or(0, GtidPosition::transactions);
        let same_dc = failed_dc.is_some() && policy.data_center(&r.key) == failed_dc;
        (
            Reverse(contains),
            Reverse(transactions),
            policy.promotion_rule(&r.key),
            Reverse(same_dc),
            r.major_version(),
            binlog_format_rank(r.binlog_format.as_deref()),
            r.key.clone(),
        )
    };
    let mut order: Vec<usize> = (0..replicas.len()).collect();
    order.sort_by_key(|&i| sort_key(i));
    let exclusions: Vec<Option<Exclusion>> = replicas
        .iter()
        .map(|r| exclusion(r, failed, policy, now_ms))
        .collect();
    order.sort_by_key(|&i| exclusions[i].is_some()); // stable: keeps rank within groups

    let ranking: Vec<RankedReplica> = order
        .iter()
        .map(|&i| RankedReplica {
            instance: replicas[i].key.clone(),
            received: positions[i].as_ref().map(ToString::to_string),
            promotion_rule: policy.promotion_rule(&replicas[i].key),
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
    let best_pos = positions[best].as_ref();
    let mut ahead: Vec<usize> = (0..replicas.len())
        .filter(|&i| i != best && replicas[i].reachable)
        .filter(|&i| match (&positions[i], best_pos) {
            (Some(p), Some(b)) => !b.contains(p),
            _ => false,
        })
        .collect();
    ahead.sort_by_key(|&i| sort_key(i));

    let promoted_rule = policy.promotion_rule(&replicas[best].key);
    let hand_over_to = if promoted_rule.is_candidate() {
        None
    } else {
        order
            .iter()
            .copied()
            .filter(|&i| i != best && exclusions[i].is_none())
            .filter(|&i| policy.promotion_rule(&replicas[i].key) < promoted_rule)
            .min_by_key(|&i| (policy.promotion_rule(&replicas[i].key), sort_key(i)))
            .map(|i| replicas[i].key.clone())
    };
    Ok(CandidateChoice {
        promoted: replicas[best].key.clone(),
        ranking,
        ahead: ahead.iter().map(|&i| replicas[i].key.clone()).collect(),
        hand_over_to,
    })
}

#[cfg(test)]
mod tests;
