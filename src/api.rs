//! The `MySQLCluster` API (`korc.dev/v1alpha1`): what users write and what korc reports.
//!
//! Every field is documented here because these comments become the CRD's schema
//! descriptions, which is what `kubectl explain mysqlclusters.spec` shows. Invalid
//! specs are rejected by the API server through the schema and CEL rules below.

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::topology::policy::{PromotionRule, SqlThreadNotUpToDate};

/// A MySQL or MariaDB replication cluster: one primary and its replicas, kept available
/// by korc with orchestrator's failure analysis and recovery.
#[allow(clippy::duplicated_attributes)] // each printcolumn(...) repeats the same keys
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "korc.dev",
    version = "v1alpha1",
    kind = "MySQLCluster",
    plural = "mysqlclusters",
    shortname = "myc",
    category = "korc",
    namespaced,
    status = "MySQLClusterStatus",
    doc = "A MySQL or MariaDB replication cluster kept available by korc",
    printcolumn(name = "Primary", type_ = "string", json_path = ".status.primary"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready"),
    printcolumn(
        name = "Analysis",
        type_ = "string",
        json_path = ".status.analysisCode"
    ),
    printcolumn(
        name = "Last Failover",
        type_ = "date",
        json_path = ".status.lastFailoverTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.switchover) || self.replicas > 1").message("spec.switchover needs at least 2 replicas"))]
#[x_kube(validation = Rule::new("!has(self.semiSync) || !self.semiSync.enabled || self.replicas > 1").message("spec.semiSync.enabled needs at least 2 replicas to acknowledge writes"))]
pub struct MySQLClusterSpec {
    /// Number of instances (1–9). Instance 0 starts as the primary; the others replicate
    /// from it with GTID auto-positioning.
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// Container image: MariaDB 10.6 or later (for example `mariadb:10.11`) or MySQL 8.x
    /// (`mysql:8.4`).
    #[schemars(regex(
        pattern = r"^([a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?/)*[a-z0-9]+([._-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
    ))]
    pub image: String,
    /// Persistent storage of each instance.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Compute resources of the database container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Additions to the pods korc creates.
    #[serde(default)]
    pub pod_template: PodOverrides,
    /// Extra my.cnf settings (`[mysqld]` section), for example `max_connections: "500"`.
    /// korc's own replication and durability settings cannot be overridden, under any
    /// spelling (`loose-`, `skip-`, `-` or `_`, case).
    #[serde(default)]
    #[schemars(extend("maxProperties" = 256, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z][A-Za-z0-9_.-]{0,127}$'))").message("spec.mysqlConfig: a setting name is letters, digits, '_', '-' and '.', starting with a letter (no sections, directives or line breaks)"))]
    #[x_kube(validation = Rule::new("self.all(k, !self[k].contains('\\n') && !self[k].contains('\\r'))").message("spec.mysqlConfig: a value may not contain a line break"))]
    #[x_kube(validation = crate::provisioning::protected_settings_rule())]
    pub mysql_config: BTreeMap<String, String>,
    /// `strict` (default): every commit is on disk before it is acknowledged
    /// (`sync_binlog=1`, `innodb_flush_log_at_trx_commit=1`), so a host crash loses no
    /// transaction a client or a replica was told of. `relaxed` (`sync_binlog=0`,
    /// `innodb_flush_log_at_trx_commit=2`) is faster and may lose about the last second
    /// of commits on a host crash (not on a server crash).
    #[serde(default)]
    pub durability: Durability,
    /// Name of a Secret holding the passwords (`root-password`, `operator-password`,
    /// `replication-password`). Generated as `<name>-credentials` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Semi-synchronous replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync: Option<SemiSyncSpec>,
    /// Failure detection and recovery policy.
    #[serde(default)]
    pub recovery: RecoverySpec,
    /// Per-instance settings, keyed by pod name (`<name>-<ordinal>`).
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceSpec>,
    /// How often every instance is probed, in milliseconds.
    #[serde(default = "default_probe_interval_ms")]
    #[schemars(range(min = 100, max = 60000))]
    pub probe_interval_ms: i64,
    /// Stop reconciling and recovering this cluster (probing and status go on).
    #[serde(default)]
    pub paused: bool,
    /// A requested switchover (graceful takeover). Changing `requestId` requests a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover: Option<SwitchoverSpec>,
    /// orchestrator's hooks, each run as a Kubernetes Job with orchestrator's
    /// environment (`ORC_FAILURE_TYPE`, `ORC_FAILED_HOST`, `ORC_SUCCESSOR_HOST`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksSpec>,
    /// The NetworkPolicy korc creates for the servers.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
    /// TLS between the servers' clients, korc and replicas, with certificates korc
    /// issues from a CA of the cluster's own.
    #[serde(default)]
    pub tls: TlsSpec,
    /// Physical copies that fill an instance which cannot replicate (the transactions
    /// it needs are purged from every binary log, or `korc.dev/rebuild` asks for it).
    #[serde(default)]
    pub clone: CloneSpec,
}

/// How korc copies data into an instance (`spec.clone`). The donor is a caught-up
/// replica of the primary (the primary only when no replica can serve); one copy
/// runs at a time per cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloneSpec {
    /// The most a copy may move per second, in MiB (default 100), so that it cannot
    /// starve the donor's disk and network; 0 lifts the limit.
    #[serde(default = "default_clone_bandwidth")]
    #[schemars(range(min = 0, max = 1048576))]
    pub max_mib_per_second: i64,
}

impl Default for CloneSpec {
    fn default() -> Self {
        Self {
            max_mib_per_second: default_clone_bandwidth(),
        }
    }
}

fn default_clone_bandwidth() -> i64 {
    100
}

/// How durable commits are (`spec.durability`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Durability {
    /// Every commit synced to disk before it is acknowledged.
    #[default]
    Strict,
    /// Binary log and redo log synced about once a second.
    Relaxed,
}

/// The NetworkPolicy korc creates for the servers: on port 3306 it admits the
/// cluster's own pods, korc, and pods labelled `korc.dev/client: <cluster name>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create it (default true). Off, korc deletes the one it created.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn enabled() -> bool {
    true
}

/// TLS for the cluster (`spec.tls`). On, every server gets a certificate signed by
/// the cluster's CA (Secret `<cluster>-ca`; the certificate, its key and the CA in
/// Secret `<cluster>-tls`), korc's own account and the replication account require
/// TLS, and replicas verify their source against the CA. korc renews the certificate
/// when less than a third of its 90 days remains; the servers reload it without a
/// restart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Use TLS (default true). Turning it on for a cluster created without it gives its
    /// servers certificates, but accounts and replicas created before keep accepting
    /// plain text.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// orchestrator's hooks. Each is a list run in order, one Job per hook. Pre hooks
/// block: one that fails or passes its timeout aborts the recovery or switchover.
/// Post hooks and `onFailureDetection` never delay a recovery.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HooksSpec {
    /// Run once per detected actionable failure of the primary or an intermediate
    /// primary, even when its recovery is then blocked. Gets its own recovery UID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure_detection: Vec<HookSpec>,
    /// Run before a failover changes anything; a failure or timeout aborts it (and
    /// `postUnsuccessfulFailover` runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_failover: Vec<HookSpec>,
    /// Run after a successful failover of the primary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_master_failover: Vec<HookSpec>,
    /// Run after a successful recovery of an intermediate primary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_intermediate_master_failover: Vec<HookSpec>,
    /// Run after any recovery that has a successor (after the two above).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_failover: Vec<HookSpec>,
    /// Run after a recovery that ended without a successor, or that a pre hook aborted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_unsuccessful_failover: Vec<HookSpec>,
    /// Run before a switchover makes the primary read-only; a failure or timeout
    /// cancels it and the primary stays writable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_graceful_takeover: Vec<HookSpec>,
    /// Run after a successful switchover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_graceful_takeover: Vec<HookSpec>,
}

/// One hook: a Job korc creates from this pod template, with orchestrator's
/// environment in every container and `{failureType}`-style placeholders replaced in
/// `command` and `args`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookSpec {
    /// Name of the hook, shown in the recovery record and Events.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// How long the hook may run. A pre hook that runs longer aborts the recovery; any
    /// hook's Job is stopped then (`activeDeadlineSeconds`).
    #[serde(default = "default_hook_timeout_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: i64,
    /// Retries of a failed pod before the hook counts as failed (the Job's
    /// `backoffLimit`).
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: i32,
    /// The pod to run, as a Job's `spec.template`: `metadata` and a `spec` with at least
    /// one container. `restartPolicy` is always `Never`.
    #[schemars(schema_with = "hook_template_schema")]
    pub template: k8s_openapi::api::core::v1::PodTemplateSpec,
}

fn default_hook_timeout_seconds() -> i64 {
    300
}

/// A pod template's schema without the whole pod spec (the API server validates that
/// when korc creates the Job): a `spec` with at least one named container.
fn hook_template_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "The pod to run, as a Job's spec.template: metadata and a spec with at least one container.",
        "required": ["spec"],
        "properties": {
            "metadata": {
                "type": "object",
                "description": "Labels and annotations of the hook's pod.",
                "x-kubernetes-preserve-unknown-fields": true
            },
            "spec": {
                "type": "object",
                "description": "A pod spec (see kubectl explain pod.spec).",
                "required": ["containers"],
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "containers": {
                        "type": "array",
                        "minItems": 1,
                        "description": "The hook's containers; each gets orchestrator's environment.",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "x-kubernetes-preserve-unknown-fields": true
                        }
                    }
                }
            }
        }
    })
}

fn default_probe_interval_ms() -> i64 {
    1000
}

/// Persistent storage of each instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each instance's volume (a Kubernetes quantity such as `10Gi`).
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// StorageClass of the volumes (the cluster default when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> String {
    "1Gi".into()
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Additions to the pods korc creates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Topology spread constraints.
    #[serde(default)]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Node selector.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
}

/// Semi-synchronous replication: commits on the primary wait for replicas to
/// acknowledge them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SemiSyncSpec {
    /// Enable semi-sync on the primary and the replicas.
    #[serde(default)]
    pub enabled: bool,
    /// Milliseconds a commit waits for an acknowledgement before the primary falls back
    /// to asynchronous replication. Not set: never fall back (no acknowledged write is
    /// lost, writes stall while no replica acknowledges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<i64>,
}

/// Failure detection and recovery policy (orchestrator's setting names in brackets).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverySpec {
    /// Fail over a dead primary automatically [RecoverMasterClusterFilters].
    #[serde(default = "yes")]
    pub automatic_master_recovery: bool,
    /// Relocate the replicas of a dead intermediate master automatically
    /// [RecoverIntermediateMasterClusterFilters].
    #[serde(default = "yes")]
    pub automatic_intermediate_master_recovery: bool,
    /// After a recovery, further automatic recoveries of this cluster are blocked for
    /// this long unless acknowledged [RecoveryPeriodBlockSeconds].
    #[serde(default = "default_block_period")]
    #[schemars(range(min = 0))]
    pub block_period_seconds: i64,
    /// Make the promoted replica writable and forget its replication
    /// [ApplyMySQLPromotionAfterMasterFailover].
    #[serde(default = "yes")]
    pub apply_promotion: bool,
    /// Detach replicas lost in a recovery [DetachLostReplicasAfterMasterFailover].
    #[serde(default = "yes")]
    pub detach_lost_replicas: bool,
    /// Never promote a replica in another zone than the failed primary
    /// [PreventCrossDataCenterMasterFailover].
    #[serde(default)]
    pub prevent_cross_data_center_failover: bool,
    /// Never promote a replica in another region [PreventCrossRegionMasterFailover].
    #[serde(default)]
    pub prevent_cross_region_failover: bool,
    /// Refuse a candidate lagging this many seconds or more [FailMasterPromotionOnLagMinutes].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub fail_promotion_on_lag_seconds: Option<i64>,
    /// What to do when the candidate has not applied everything it received: `Delay`
    /// (wait while the applier progresses), `Fail`, or `Promote` (losing what is not
    /// applied).
    #[serde(default)]
    pub sql_thread_not_up_to_date: SqlThreadNotUpToDate,
    /// Lag above which a replica counts as lagging [ReasonableReplicationLagSeconds].
    #[serde(default = "default_lag")]
    #[schemars(range(min = 0))]
    pub reasonable_replication_lag_seconds: i64,
    /// Bound on waiting for the candidate's relay log, in seconds: without progress
    /// for `Delay`, in all for `Fail` and `Promote`.
    #[serde(default = "default_lag")]
    #[schemars(range(min = 1))]
    pub relay_log_apply_timeout_seconds: i64,
    /// Rebuild an instance held out for errant transactions (an old primary that wrote
    /// what its successor never received) by copying a healthy replica's data over it,
    /// once its errant transactions are saved on its volume (MariaDB). Off: it stays
    /// held out until the pod is annotated `korc.dev/rebuild`.
    #[serde(default)]
    pub rebuild_errant_instances: bool,
}

fn yes() -> bool {
    true
}

fn default_block_period() -> i64 {
    3600
}

fn default_lag() -> i64 {
    10
}

impl Default for RecoverySpec {
    fn default() -> Self {
        Self {
            automatic_master_recovery: true,
            automatic_intermediate_master_recovery: true,
            block_period_seconds: default_block_period(),
            apply_promotion: true,
            detach_lost_replicas: true,
            prevent_cross_data_center_failover: false,
            prevent_cross_region_failover: false,
            fail_promotion_on_lag_seconds: None,
            sql_thread_not_up_to_date: SqlThreadNotUpToDate::Delay,
            reasonable_replication_lag_seconds: default_lag(),
            relay_log_apply_timeout_seconds: default_lag(),
            rebuild_errant_instances: false,
        }
    }
}

/// Settings of one instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    /// Promotion rule.
    #[serde(default)]
    pub promotion_rule: PromotionRule,
    /// Suppress recovery of this instance until this time (RFC 3339); detection goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// A requested switchover.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverSpec {
    /// Pod to promote; korc chooses by its candidate rules when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Identifies the request: a switchover runs once per distinct value.
    #[schemars(length(min = 1, max = 63))]
    pub request_id: String,
}

/// What korc observes and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySQLClusterStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Available, Healthy, Recovering, RecoveryBlocked.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Pod name of the current primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Ready instances out of all (`3/3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// The most severe analysis code (orchestrator's names), `NoProblem` when healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_code: Option<String>,
    /// The current analysis: one entry per analysed instance with a finding, and the primary.
    #[serde(default)]
    pub analysis: Vec<AnalysisStatus>,
    /// One entry per instance with what the last probe saw.
    #[serde(default)]
    pub instances: Vec<InstanceStatus>,
    /// Recent detections, newest first (bounded).
    #[serde(default)]
    pub detections: Vec<DetectionStatus>,
    /// The last actionable failure korc detected (the one `onFailureDetection` hooks
    /// ran for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_detection: Option<FailureDetectionStatus>,
    /// When the last failover finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// The last recoveries, newest last (at most 10). A recovery is registered here
    /// (outcome `running`) before its first irreversible step.
    #[serde(default)]
    pub recoveries: Vec<RecoveryStatus>,
    /// The last copies into instances that ended, newest last (at most 10); a running
    /// copy shows in its instance's `cloneProgress`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clones: Vec<CloneRecordStatus>,
    /// Automatic recoveries are blocked until then (anti-flapping), unless acknowledged
    /// with the annotation `korc.dev/acknowledge` on the MySQLCluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_blocked_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// The last acknowledgement of recoveries (the annotation's value and when korc saw it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_acknowledgement: Option<AcknowledgementStatus>,
    /// If the primary failed now: who would be promoted and why, and which instances
    /// could not be. Present when the cluster has a primary and a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_candidate: Option<FailoverCandidateStatus>,
}

/// korc's candidate choice on the current probe, with the primary taken as failed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverCandidateStatus {
    /// Pod name of the replica that would be promoted; absent when none could be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Why it, and what would follow (a catch-up from a more advanced replica, a
    /// hand-over to a preferred one); or why no replica could be promoted.
    pub why: String,
    /// Replicas that could not be promoted, with the reason.
    #[serde(default)]
    pub excluded: Vec<ExcludedInstanceStatus>,
}

/// A replica candidate choice excludes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExcludedInstanceStatus {
    /// Pod name.
    pub pod: String,
    /// The reason (`mustNot`, `downtimed`, `errantGtids 0-12-3`, `otherDataCenter
    /// zone-b`, `lagging`, `unreachable`, `noBinaryLog`, ...).
    pub reason: String,
}

/// A recovery korc ran (or is running): orchestrator's recovery record, with instances
/// named by pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryStatus {
    /// Unique id.
    pub id: String,
    /// `DeadMaster`, `DeadIntermediateMaster`, `GracefulTakeover`, `NonWriteableMaster`.
    pub kind: String,
    /// The analysis code that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_code: Option<String>,
    /// The failed pod (for a switchover: the primary it replaced).
    pub failed: String,
    /// The pod that took over, once chosen (committed to `status.primary` before the
    /// promotion for a primary failover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<String>,
    /// Replicas left out of the new topology.
    #[serde(default)]
    pub lost_replicas: Vec<String>,
    /// `running`, `recovered`, `failed`, `abandoned` (stopped before its promotion, for
    /// example by the loss of leadership) or `rolledBack`.
    pub outcome: String,
    /// Why it failed or was abandoned, and where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The operator replica that ran it.
    pub leader: String,
    /// When it was registered.
    pub started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Milliseconds from registration until the successor accepted writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable_after_ms: Option<i64>,
    /// The engine's steps in execution order, each with its duration.
    #[serde(default)]
    pub steps: Vec<RecoveryStepStatus>,
    /// Set once the recovery was acknowledged (it no longer blocks recoveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<bool>,
    /// For a switchover (`GracefulTakeover`): the `spec.switchover.requestId` it served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// For a switchover: milliseconds from the old primary turning read-only until the
    /// new one accepted writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_outage_ms: Option<i64>,
    /// The failed instance's replicas when the recovery started (`ORC_REPLICA_HOSTS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    /// The hooks of this recovery in the order they run, each with its Job and outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRunStatus>,
}

/// One hook of a recovery or detection: its Job and what became of it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookRunStatus {
    /// The hook point (`preFailover`, `postFailover`, …).
    pub hook: String,
    /// The hook's name in the spec.
    pub name: String,
    /// Its position in the hook point's list.
    pub index: u32,
    /// The Job's name.
    pub job: String,
    /// `pending`, `running`, `succeeded`, `failed`, `timedOut` or `notCreated`.
    pub outcome: String,
    /// Why it failed, timed out or was not created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When its Job was created (or found, by a leader adopting it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
    /// When korc saw it end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
}

/// The last actionable failure detected, and its `onFailureDetection` hooks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureDetectionStatus {
    /// The detection's own UID (`ORC_RECOVERY_UID` of its hooks).
    pub id: String,
    /// Analysis code.
    pub code: String,
    /// The failed pod.
    pub instance: String,
    /// The analysis' description.
    pub description: String,
    /// The failed instance's replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    /// Whether the failed instance is downtimed.
    #[serde(default)]
    pub downtimed: bool,
    /// When korc detected it.
    pub detected_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// The `onFailureDetection` hooks run for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRunStatus>,
}

impl Default for RecoveryStatus {
    fn default() -> Self {
        Self {
            id: String::new(),
            kind: String::new(),
            analysis_code: None,
            failed: String::new(),
            successor: None,
            lost_replicas: Vec::new(),
            outcome: String::new(),
            error: None,
            leader: String::new(),
            started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            ended_at: None,
            writable_after_ms: None,
            steps: Vec::new(),
            acknowledged: None,
            request_id: None,
            write_outage_ms: None,
            replicas: Vec::new(),
            hooks: Vec::new(),
        }
    }
}

/// One executed recovery step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryStepStatus {
    /// Step kind (`stopReplicaIo`, `chooseCandidate`, `promote`, `repoint`, …).
    pub kind: String,
    /// The pod it acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Duration in milliseconds (fractional).
    pub duration_ms: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it found or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An acknowledgement of recoveries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcknowledgementStatus {
    /// The annotation's value.
    pub value: String,
    /// When korc saw it.
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// One analysis, as orchestrator reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// Analysis code (orchestrator's name, or korc's for what orchestrator lacks).
    pub code: String,
    /// Pod name of the analysed instance.
    pub instance: String,
    /// What the code means.
    pub description: String,
    /// A recovery exists and nothing suppresses it.
    pub actionable: bool,
    /// Replicas / valid / replicating / failing to connect / lagging / delayed / downtimed.
    pub evidence: BTreeMap<String, i64>,
    /// Structure warnings.
    #[serde(default)]
    pub structure_warnings: Vec<String>,
    /// Errant GTIDs, for `ErrantGTIDDetected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errant_gtids: Option<String>,
}

/// What the last probe saw of one instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Pod name.
    pub name: String,
    /// `primary`, `replica`, or `unknown`.
    pub role: String,
    /// The last probe succeeded.
    pub reachable: bool,
    /// When the instance last answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Why the last probe failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `@@read_only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Executed GTID position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_position: Option<String>,
    /// Source pod (replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// IO thread: Yes, Connecting or No.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_thread: Option<String>,
    /// SQL thread: Yes or No.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_thread: Option<String>,
    /// Last IO error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_io_error: Option<String>,
    /// Last SQL error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sql_error: Option<String>,
    /// Replication lag in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    /// Promotion rule.
    pub promotion_rule: PromotionRule,
    /// Downtime end, if downtimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Zone of the node the pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_center: Option<String>,
    /// The copy korc runs into this instance, while it runs and until it is attached
    /// (or the last one that failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_progress: Option<CloneProgressStatus>,
}

/// A copy into an instance that ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloneRecordStatus {
    /// Pod name of the instance copied into.
    pub pod: String,
    /// Pod name of the donor.
    pub donor: String,
    /// `purged`, `requested` or `errant`.
    pub reason: String,
    /// `completed` (the server restarted on the copy) or `failed`.
    pub outcome: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The errant transactions the instance held, saved before the copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errant_gtids: Option<String>,
    /// Where they are saved: the directory on the pod's data volume holding their
    /// binary log events and the old data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_to: Option<String>,
    /// Bytes copied, as last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_copied: Option<i64>,
    /// When the copy began.
    pub started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// When it ended.
    pub ended_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// A physical copy into an instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloneProgressStatus {
    /// Pod name of the donor.
    pub donor: String,
    /// Why: `purged` (the transactions it needs are purged from every binary log),
    /// `requested` (the pod's `korc.dev/rebuild` annotation) or `errant` (held out for
    /// errant transactions, with `spec.recovery.rebuildErrantInstances`).
    pub reason: String,
    /// `copying`, `restarting` (the copy is in place and the server restarts on it),
    /// or `failed` (korc tries again after a pause).
    pub phase: String,
    /// Bytes copied so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_copied: Option<i64>,
    /// Bytes the copy is estimated to move (grows as its stages begin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_estimated: Option<i64>,
    /// When the copy began.
    pub started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The errant transactions saved before the copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errant_gtids: Option<String>,
    /// Where they are saved (see `status.clones[].savedTo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_to: Option<String>,
}

/// A detected failure (bounded history).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DetectionStatus {
    /// Analysis code.
    pub code: String,
    /// Pod name.
    pub instance: String,
    /// First seen.
    pub first_seen: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// Last seen (the detection is over when this stops moving).
    pub last_seen: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// Prints the CRDs korc defines, as YAML (`korc crd`; `crds/` holds the output).
pub fn crds_yaml() -> String {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&MySQLCluster::crd()).expect("a CRD always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_directory_is_in_sync_with_the_types() {
        for dir in ["crds", "charts/korc/crds"] {
            let path = format!(
                "{}/{dir}/mysqlclusters.korc.dev.yaml",
                env!("CARGO_MANIFEST_DIR")
            );
            let committed = std::fs::read_to_string(path).unwrap_or_default();
            assert!(
                committed == crds_yaml(),
                "{dir}/ is stale: run `cargo run -- crd > {dir}/mysqlclusters.korc.dev.yaml`"
            );
        }
    }

    #[test]
    fn crd_has_names_columns_and_rules() {
        let yaml = crds_yaml();
        for needle in [
            "shortNames:",
            "- myc",
            "name: Primary",
            "name: Last Failover",
            "spec.switchover needs at least 2 replicas",
            "maximum: 9",
            "- must_not",
            "status: {}",
        ] {
            assert!(yaml.contains(needle), "{needle} missing from the CRD");
        }
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec: MySQLClusterSpec =
            serde_json::from_str(r#"{"replicas":3,"image":"mariadb:10.11"}"#).unwrap();
        assert_eq!(spec.storage.size, "1Gi");
        assert_eq!(spec.probe_interval_ms, 1000);
        assert!(spec.recovery.automatic_master_recovery);
        assert_eq!(spec.recovery.block_period_seconds, 3600);
        assert_eq!(
            spec.recovery.sql_thread_not_up_to_date,
            SqlThreadNotUpToDate::Delay
        );
    }
}
