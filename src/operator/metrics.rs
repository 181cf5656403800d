//! Prometheus metrics of the operator.

use crate::api::InstanceStatus;
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

impl ClusterLabels {
    /// The labels of one of its pods' series.
    pub fn instance(&self, pod: &str) -> InstanceLabels {
        InstanceLabels {
            namespace: self.namespace.clone(),
            cluster: self.cluster.clone(),
            instance: pod.into(),
        }
    }

    /// The labels of its block gauge.
    pub fn blocked(&self, reason: &str) -> BlockedLabels {
        BlockedLabels {
            namespace: self.namespace.clone(),
            cluster: self.cluster.clone(),
            reason: reason.into(),
        }
    }
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

/// Labels of an instance's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// Namespace.
    pub namespace: String,
    /// Cluster name.
    pub cluster: String,
    /// Pod name.
    pub instance: String,
}

/// Labels of a cluster whose recovery is blocked.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockedLabels {
    /// Namespace.
    pub namespace: String,
    /// Cluster name.
    pub cluster: String,
    /// The `RecoveryBlocked` reason.
    pub reason: String,
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
    /// Seconds each replica is behind its source (`Seconds_Behind_Master`), while known.
    pub replication_lag: Family<InstanceLabels, Gauge>,
    /// 1 while a detected failure of the cluster is held, with the reason.
    pub recovery_blocked: Family<BlockedLabels, Gauge>,
    /// 1 while this replica leads.
    pub leader: Gauge,
}

impl Metrics {
    /// Drops a deleted cluster's series: `code` its current analysis gauge, `blocked`
    /// its block reason, `lagging` the pods with a lag series.
    pub fn forget(
        &self,
        cluster: &ClusterLabels,
        code: Option<&str>,
        blocked: Option<&str>,
        lagging: &[String],
    ) {
        self.status_writes.remove(cluster);
        self.reconcile_errors.remove(cluster);
        for pod in lagging {
            self.replication_lag.remove(&cluster.instance(pod));
        }
        if let Some(reason) = blocked {
            self.recovery_blocked.remove(&cluster.blocked(reason));
        }
        if let Some(code) = code {
            self.analysis.remove(&CodeLabels {
                namespace: cluster.namespace.clone(),
                cluster: cluster.cluster.clone(),
                code: code.into(),
            });
        }
    }

    /// Sets each replica's lag from the status's `instances`; the series of a pod whose
    /// lag is unknown now (the primary, a stopped or unreachable replica) is removed.
    /// `previous`: the pods that had a series. Returns those that have one now.
    pub fn record_lag(
        &self,
        cluster: &ClusterLabels,
        previous: &[String],
        instances: &[InstanceStatus],
    ) -> Vec<String> {
        let mut now = Vec::new();
        for i in instances {
            if let Some(lag) = i.lag_seconds {
                self.replication_lag
                    .get_or_create(&cluster.instance(&i.name))
                    .set(lag);
                now.push(i.name.clone());
            }
        }
        for pod in previous.iter().filter(|p| !now.contains(p)) {
            self.replication_lag.remove(&cluster.instance(pod));
        }
        now
    }

    /// Moves the cluster's block gauge from the `previous` reason to `now`'s.
    pub fn record_blocked(
        &self,
        cluster: &ClusterLabels,
        previous: Option<&str>,
        now: Option<&str>,
    ) {
        if previous == now {
            return;
        }
        if let Some(reason) = previous {
            self.recovery_blocked.remove(&cluster.blocked(reason));
        }
        if let Some(reason) = now {
            self.recovery_blocked
                .get_or_create(&cluster.blocked(reason))
                .set(1);
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
            replication_lag: Family::default(),
            recovery_blocked: Family::default(),
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
        r.register(
            "replication_lag_seconds",
            "Seconds each replica is behind its source (Seconds_Behind_Master)",
            m.replication_lag.clone(),
        );
        r.register(
            "recovery_blocked",
            "1 while a detected failure of the cluster is held instead of recovered, by reason",
            m.recovery_blocked.clone(),
        );
        r.register("leader", "1 while this replica leads", m.leader.clone());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    fn instance(name: &str, lag: Option<i64>) -> InstanceStatus {
        InstanceStatus {
            name: name.into(),
            lag_seconds: lag,
            ..InstanceStatus::default()
        }
    }

    #[test]
    fn each_replicas_lag_is_a_series_while_it_is_known() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let db = ClusterLabels {
            namespace: "shop".into(),
            cluster: "db".into(),
        };
        let series = |pod: &str, lag: i64| {
            format!(
                "korc_replication_lag_seconds{{namespace=\"shop\",cluster=\"db\",instance=\"{pod}\"}} {lag}\n"
            )
        };
        let first = m.record_lag(
            &db,
            &[],
            &[
                instance("db-0", None),
                instance("db-1", Some(0)),
                instance("db-2", Some(42)),
            ],
        );
        assert_eq!(first, ["db-1", "db-2"]);
        let text = exported(&registry);
        assert!(text.contains(&series("db-1", 0)), "{text}");
        assert!(text.contains(&series("db-2", 42)), "{text}");
        assert!(
            !text.contains("instance=\"db-0\""),
            "the primary has no lag: {text}"
        );
        // db-2's replication stopped: its lag is unknown, not 42 any more.
        let second = m.record_lag(
            &db,
            &first,
            &[instance("db-1", Some(1)), instance("db-2", None)],
        );
        assert_eq!(second, ["db-1"]);
        let text = exported(&registry);
        assert!(text.contains(&series("db-1", 1)), "{text}");
        assert!(!text.contains("instance=\"db-2\""), "{text}");
    }

    #[test]
    fn a_block_is_one_series_with_the_current_reason() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let db = ClusterLabels {
            namespace: "shop".into(),
            cluster: "db".into(),
        };
        m.record_blocked(&db, None, Some("Paused"));
        m.record_blocked(&db, Some("Paused"), Some("AntiFlapping"));
        let text = exported(&registry);
        assert!(
            text.contains("korc_recovery_blocked{namespace=\"shop\",cluster=\"db\",reason=\"AntiFlapping\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("reason=\"Paused\""), "{text}");
        m.record_blocked(&db, Some("AntiFlapping"), None);
        assert!(!exported(&registry).contains("korc_recovery_blocked{"));
    }

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
            m.replication_lag.get_or_create(&c.instance("db-1")).set(3);
            m.recovery_blocked
                .get_or_create(&c.blocked("Paused"))
                .set(1);
            m.analysis
                .get_or_create(&CodeLabels {
                    namespace: c.namespace.clone(),
                    cluster: c.cluster.clone(),
                    code: "NoProblem".into(),
                })
                .set(1);
        }
        m.forget(&db, Some("NoProblem"), Some("Paused"), &["db-1".into()]);
        let text = exported(&registry);
        assert!(!text.contains("cluster=\"db\""), "{text}");
        assert!(text.contains("cluster=\"other\""), "{text}");
    }
}
