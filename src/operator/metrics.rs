//! Prometheus metrics of the operator.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// Namespace.
    pub namespace: String,
    /// Cluster name.
    pub cluster: String,
}

/// Labels of an analysis code gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// Namespace.
    pub namespace: String,
    /// Cluster name.
    pub cluster: String,
    /// Analysis code.
    pub code: String,
}

/// Labels of a probe or topology action outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What was done.
    pub kind: String,
    /// `ok` or `failed`.
    pub result: String,
}

/// Labels of a recovery outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecoveryLabels {
    /// `DeadMaster`, `DeadIntermediateMaster`, ...
    pub kind: String,
    /// `recovered`, `failed`, `abandoned`, ...
    pub outcome: String,
}

/// Labels of a held failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockLabels {
    /// The `RecoveryBlocked` reason: `AntiFlapping`, `Paused`, `Downtimed`, ...
    pub reason: String,
}

/// Labels of a finished hook Job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// The hook point (`preFailover`, …).
    pub hook: String,
    /// `succeeded`, `failed`, `timedOut`, `notCreated` or `skipped`.
    pub outcome: String,
}

/// The operator's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Probes by outcome.
    pub probes: Family<OutcomeLabels, Counter>,
    /// Probe latency of reachable instances.
    pub probe_seconds: Histogram,
    /// 1 for each cluster's current summary analysis code (one series per cluster).
    pub analysis: Family<CodeLabels, Gauge>,
    /// Topology actions (attach, make writable, ...) by outcome.
    pub actions: Family<OutcomeLabels, Counter>,
    /// Status writes per cluster.
    pub status_writes: Family<ClusterLabels, Counter>,
    /// Reconcile failures per cluster.
    pub reconcile_errors: Family<ClusterLabels, Counter>,
    /// Recoveries by kind and outcome.
    pub recoveries: Family<RecoveryLabels, Counter>,
    /// From registering a failover until the successor accepted writes.
    pub failover_seconds: Histogram,
    /// Detected failures held instead of recovered, counted when a block begins.
    pub blocks: Family<BlockLabels, Counter>,
    /// Hooks by hook point and outcome, counted when they end.
    pub hook_jobs: Family<HookLabels, Counter>,
    /// 1 while this replica leads.
    pub leader: Gauge,
}

impl Metrics {
    /// Drops a deleted cluster's series (`code`: its current analysis gauge, if any).
    pub fn forget(&self, cluster: &ClusterLabels, code: Option<&str>) {
        self.status_writes.remove(cluster);
        self.reconcile_errors.remove(cluster);
        if let Some(code) = code {
            self.analysis.remove(&CodeLabels {
                namespace: cluster.namespace.clone(),
                cluster: cluster.cluster.clone(),
                code: code.into(),
            });
        }
    }

    /// Metrics registered under the `korc` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            probes: Family::default(),
            probe_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            analysis: Family::default(),
            actions: Family::default(),
            status_writes: Family::default(),
            reconcile_errors: Family::default(),
            recoveries: Family::default(),
            failover_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            blocks: Family::default(),
            hook_jobs: Family::default(),
            leader: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("korc");
        r.register("probes", "Instance probes by outcome", m.probes.clone());
        r.register(
            "probe_duration_seconds",
            "Latency of successful probes",
            m.probe_seconds.clone(),
        );
        r.register(
            "analysis",
            "1 for each cluster's current analysis code",
            m.analysis.clone(),
        );
        r.register(
            "topology_actions",
            "Bootstrap and repair actions by outcome",
            m.actions.clone(),
        );
        r.register(
            "status_writes",
            "MySQLCluster status writes",
            m.status_writes.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciliations",
            m.reconcile_errors.clone(),
        );
        r.register(
            "recoveries",
            "Recoveries by kind and outcome",
            m.recoveries.clone(),
        );
        r.register(
            "failover_duration_seconds",
            "From registering a failover until the successor accepted writes",
            m.failover_seconds.clone(),
        );
        r.register(
            "recovery_blocks",
            "Detected failures held instead of recovered, by reason (counted when a block begins)",
            m.blocks.clone(),
        );
        r.register(
            "hook_jobs",
            "Hook Jobs by hook point and outcome (counted when they end)",
            m.hook_jobs.clone(),
        );
        r.register("leader", "1 while this replica leads", m.leader.clone());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_clusters_series_are_dropped() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let db = ClusterLabels {
            namespace: "shop".into(),
            cluster: "db".into(),
        };
        let other = ClusterLabels {
            namespace: "shop".into(),
            cluster: "other".into(),
        };
        for c in [&db, &other] {
            m.status_writes.get_or_create(c).inc();
            m.analysis
                .get_or_create(&CodeLabels {
                    namespace: c.namespace.clone(),
                    cluster: c.cluster.clone(),
                    code: "NoProblem".into(),
                })
                .set(1);
        }
        m.forget(&db, Some("NoProblem"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("cluster=\"db\""), "{text}");
        assert!(text.contains("cluster=\"other\""), "{text}");
    }
}
