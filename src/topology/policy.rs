//! Recovery policy: orchestrator's knobs (names in the docs) plus per-instance
//! promotion rules, data centers and downtime.

use super::instance::InstanceKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How much an instance is wanted as a new primary, best first (orchestrator's order).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PromotionRule {
    /// Always preferred. orchestrator orders it but refuses to register it; korc accepts it.
    Must,
    /// Preferred: taken over by a hand-over once caught up if another was promoted.
    Prefer,
    /// No preference.
    #[default]
    Neutral,
    /// Promoted only when nothing else can be.
    PreferNot,
    /// Never promoted.
    MustNot,
}

impl PromotionRule {
    /// orchestrator's IsCandidate: `must` or `prefer`.
    pub fn is_candidate(self) -> bool {
        matches!(self, Self::Must | Self::Prefer)
    }
}

impl FromStr for PromotionRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "must" => Ok(Self::Must),
            "prefer" => Ok(Self::Prefer),
            "neutral" => Ok(Self::Neutral),
            "prefer_not" => Ok(Self::PreferNot),
            "must_not" => Ok(Self::MustNot),
            other => Err(format!(
                "unknown promotion rule {other:?}: expected must, prefer, neutral, prefer_not or must_not"
            )),
        }
    }
}

impl fmt::Display for PromotionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Must => "must",
            Self::Prefer => "prefer",
            Self::Neutral => "neutral",
            Self::PreferNot => "prefer_not",
            Self::MustNot => "must_not",
        })
    }
}

/// What to do with a promotion candidate that has not applied everything it received
/// [Fail/DelayMasterPromotionIfSQLThreadNotUpToDate].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum SqlThreadNotUpToDate {
    /// Keep waiting while the applier makes progress; fail when it stops on an error
    /// or applies nothing for `relayLogApplyTimeoutMs`
    /// [DelayMasterPromotionIfSQLThreadNotUpToDate]. Nothing received is discarded.
    #[default]
    Delay,
    /// Fail when the relay log is not applied within `relayLogApplyTimeoutMs`
    /// [FailMasterPromotionIfSQLThreadNotUpToDate].
    Fail,
    /// Promote after `relayLogApplyTimeoutMs` (or at once on an applier error) even
    /// though transactions received are not applied: they are lost, and the recovery
    /// record names them. An explicit choice, never the default.
    Promote,
}

/// A maintenance window: recovery of the instance is suppressed, detection goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Downtime {
    /// End of the window (Unix milliseconds).
    pub until_ms: u64,
    /// Why (for example `lost-in-recovery`).
    pub reason: String,
}

/// Per-instance policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstancePolicy {
    /// Promotion rule.
    #[serde(default)]
    pub promotion_rule: PromotionRule,
    /// Data center (in Kubernetes, the node's zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_center: Option<String>,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Active downtime, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime: Option<Downtime>,
}

/// Cluster-wide policy. Defaults are orchestrator's. A document with a field korc does
/// not know is refused, naming the field: a misspelt knob must not pass for a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Policy {
    /// Lag above which a replica counts as lagging [ReasonableReplicationLagSeconds].
    pub reasonable_replication_lag_seconds: u64,
    /// Make a read-only primary writable [RecoverNonWriteableMaster].
    pub recover_non_writeable_master: bool,
    /// Keep exactly as many semi-sync replicas as the master waits for
    /// [EnforceExactSemiSyncReplicas]: a locked master gets more, one with too many
    /// (`MasterWithTooManySemiSyncReplicas`, detected only with this) gets fewer.
    pub enforce_exact_semi_sync_replicas: bool,
    /// Unlock a locked semi-sync master by turning semi-sync on in enough replicas,
    /// never off [RecoverLockedSemiSyncMaster].
    pub recover_locked_semi_sync_master: bool,
    /// Refuse a successor in another data center [PreventCrossDataCenterMasterFailover].
    pub prevent_cross_data_center_master_failover: bool,
    /// Refuse a successor in another region [PreventCrossRegionMasterFailover].
    pub prevent_cross_region_master_failover: bool,
    /// Refuse a successor lagging this much or more [FailMasterPromotionOnLagMinutes],
    /// in seconds.
    pub fail_master_promotion_on_lag_seconds: Option<u64>,
    /// What to do with a successor that has not applied its relay log.
    pub sql_thread_not_up_to_date: SqlThreadNotUpToDate,
    /// Bound on waiting for the successor's relay log (milliseconds): without
    /// progress for `Delay`, in all for `Fail` and `Promote`.
    pub relay_log_apply_timeout_ms: u64,
    /// Make the successor writable and reset its replication
    /// [ApplyMySQLPromotionAfterMasterFailover].
    pub apply_promotion: bool,
    /// Detach lost replicas from the topology [DetachLostReplicasAfterMasterFailover].
    pub detach_lost_replicas: bool,
    /// Bound on a graceful takeover's wait for the target to catch up (milliseconds)
    /// [ReasonableMaintenanceReplicationLagSeconds].
    pub takeover_catch_up_timeout_ms: u64,
    /// Per-instance rules.
    pub instances: BTreeMap<InstanceKey, InstancePolicy>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            reasonable_replication_lag_seconds: 10,
            recover_non_writeable_master: false,
            enforce_exact_semi_sync_replicas: false,
            recover_locked_semi_sync_master: false,
            prevent_cross_data_center_master_failover: false,
            prevent_cross_region_master_failover: false,
            fail_master_promotion_on_lag_seconds: None,
            sql_thread_not_up_to_date: SqlThreadNotUpToDate::Delay,
            relay_log_apply_timeout_ms: 10_000,
            apply_promotion: true,
            detach_lost_replicas: true,
            takeover_catch_up_timeout_ms: 20_000,
            instances: BTreeMap::new(),
        }
    }
}

impl Policy {
    /// The policy of one instance (defaults when none was given).
    pub fn instance(&self, key: &InstanceKey) -> InstancePolicy {
        self.instances.get(key).cloned().unwrap_or_default()
    }

    /// The instance's promotion rule.
    pub fn promotion_rule(&self, key: &InstanceKey) -> PromotionRule {
        self.instances
            .get(key)
            .map(|p| p.promotion_rule)
            .unwrap_or_default()
    }

    /// True when the instance has a downtime that has not ended at `now_ms`.
    pub fn is_downtimed(&self, key: &InstanceKey, now_ms: u64) -> bool {
        self.instances
            .get(key)
            .and_then(|p| p.downtime.as_ref())
            .is_some_and(|d| d.until_ms > now_ms)
    }

    /// The instance's data center.
    pub fn data_center(&self, key: &InstanceKey) -> Option<&str> {
        self.instances
            .get(key)
            .and_then(|p| p.data_center.as_deref())
    }

    /// The instance's region.
    pub fn region(&self, key: &InstanceKey) -> Option<&str> {
        self.instances.get(key).and_then(|p| p.region.as_deref())
    }

    /// Mutable per-instance policy, created on first use.
    pub fn instance_mut(&mut self, key: &InstanceKey) -> &mut InstancePolicy {
        self.instances.entry(key.clone()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_rules_order_best_first() {
        let mut rules = vec![
            PromotionRule::MustNot,
            PromotionRule::Neutral,
            PromotionRule::Prefer,
        ];
        rules.sort();
        assert_eq!(
            rules,
            vec![
                PromotionRule::Prefer,
                PromotionRule::Neutral,
                PromotionRule::MustNot
            ]
        );
        assert_eq!(
            "prefer_not".parse::<PromotionRule>(),
            Ok(PromotionRule::PreferNot)
        );
        assert!(
            "always"
                .parse::<PromotionRule>()
                .unwrap_err()
                .contains("must_not")
        );
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        for (doc, field) in [
            (
                r#"{"reasonableReplicationLagSecond": 5}"#,
                "reasonableReplicationLagSecond",
            ),
            (
                r#"{"instances": {"a:1": {"promotion": "prefer"}}}"#,
                "promotion",
            ),
            (
                r#"{"instances": {"a:1": {"downtime": {"untilMs": 1, "reason": "x", "until": 2}}}}"#,
                "until",
            ),
        ] {
            let e = serde_json::from_str::<Policy>(doc).unwrap_err().to_string();
            assert!(
                e.contains(&format!("unknown field `{field}`")),
                "{doc}: {e}"
            );
        }
        let p: Policy = serde_json::from_str(
            r#"{"recoverNonWriteableMaster": true, "instances": {"a:1": {"promotionRule": "prefer"}}}"#,
        )
        .unwrap();
        assert!(p.recover_non_writeable_master);
        assert_eq!(p.reasonable_replication_lag_seconds, 10, "defaults kept");
        let round_trip: Policy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(round_trip, p);
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        for doc in [
            r#"{"reasonableReplicationLagSeconds": -1}"#,
            r#"{"relayLogApplyTimeoutMs": 18446744073709551616}"#,
            r#"{"instances": {"a:99999": {}}}"#,
        ] {
            assert!(serde_json::from_str::<Policy>(doc).is_err(), "{doc}");
        }
    }

    #[test]
    fn downtime_expires() {
        let key: InstanceKey = "a:1".parse().unwrap();
        let mut p = Policy::default();
        p.instance_mut(&key).downtime = Some(Downtime {
            until_ms: 100,
            reason: "maintenance".into(),
        });
        assert!(p.is_downtimed(&key, 99));
        assert!(!p.is_downtimed(&key, 100));
    }
}
