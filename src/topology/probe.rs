//! Probing: reading every instance's replication state over SQL.
//!
//! A probe never fails: an instance that cannot be reached, or answers oddly, is a
//! valid result with `reachable: false` and the reason. Probes of a cluster run
//! concurrently, each bounded by the connector's timeouts.

use super::cluster::{ClusterView, imply_roles};
use super::dialect::{parse_binlog_status, parse_replica_status, parse_semi_sync};
use super::instance::{Instance, InstanceKey};
use super::session::Connector;
use crate::topology::Result;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Probes one instance.
pub async fn probe(connector: &Connector, key: &InstanceKey) -> Instance {
    let started = Instant::now();
    let mut inst = Instance::unknown(key.clone());
    inst.checked_at_ms = now_ms();
    let bound = connector.connect_timeout + connector.query_timeout;
    let outcome = tokio::time::timeout(bound, read_instance(connector, &mut inst)).await;
    match outcome {
        Ok(Ok(())) => {
            inst.reachable = true;
            inst.last_seen_ms = Some(inst.checked_at_ms);
            inst.probe_micros = Some(started.elapsed().as_micros() as u64);
        }
        Ok(Err(e)) => inst.error = Some(e.to_string()),
        Err(_) => inst.error = Some(format!("probe did not finish within {bound:?}")),
    }
    inst
}

async fn read_instance(connector: &Connector, inst: &mut Instance) -> Result<()> {
    let mut s = connector.connect(&inst.key).await?;
    let dialect = s.dialect;
    let vars = s.rows(&dialect.variables_query()).await?;
    if let Some(row) = vars.first() {
        dialect.apply_variables(row, inst);
    }
    // From here on a failure is orchestrator's "partial success".
    inst.partial_success = true;
    let status = s.name_values(dialect.status_query()).await?;
    let semi_vars = s.name_values(dialect.semi_sync_variables_query()).await?;
    inst.semi_sync = parse_semi_sync(&semi_vars, &status);
    inst.uptime_seconds = status.get("Uptime").and_then(|v| v.parse().ok());
    inst.replication = s
        .rows(dialect.replica_status_query())
        .await?
        .first()
        .map(parse_replica_status);
    if inst.log_bin == Some(true) {
        inst.binlog_coordinates = s
            .rows(dialect.binlog_status_query())
            .await?
            .first()
            .and_then(parse_binlog_status);
    }
    inst.partial_success = false;
    Ok(())
}

/// Probes every instance of a cluster concurrently and completes the picture:
/// an unreachable instance keeps what `previous` knew of it (its last role), an
/// instance never seen gets the role the others imply, and a suspected errant
/// transaction is confirmed against a fresh read of the source's GTIDs (the source
/// may have been probed before the replica received its latest transactions).
pub async fn probe_cluster(
    connector: &Connector,
    keys: &[InstanceKey],
    previous: &[Instance],
) -> Vec<Instance> {
    let probes = keys.iter().map(|k| probe(connector, k));
    let mut instances: Vec<Instance> = futures::future::join_all(probes).await;
    for inst in instances.iter_mut().filter(|i| !i.reachable) {
        if let Some(last) = previous
            .iter()
            .find(|p| p.key == inst.key && p.last_seen_ms.is_some())
        {
            let fresh = std::mem::replace(inst, last.clone());
            inst.reachable = false;
            inst.partial_success = fresh.partial_success;
            inst.error = fresh.error;
            inst.checked_at_ms = fresh.checked_at_ms;
            inst.probe_micros = None;
        }
    }
    imply_roles(&mut instances);
    confirm_errant_sources(connector, &mut instances).await;
    instances
}

async fn confirm_errant_sources(connector: &Connector, instances: &mut [Instance]) {
    let suspects: Vec<usize> = {
        let view = ClusterView::new(instances);
        let mut sources: Vec<usize> = (0..instances.len())
            .filter_map(|r| {
                let s = view.source_of(r)?;
                let errant = instances[r].reachable
                    && instances[s].reachable
                    && instances[r]
                        .errant_gtids(&instances[s])
                        .is_some_and(|e| !e.is_empty());
                errant.then_some(s)
            })
            .collect();
        sources.sort_unstable();
        sources.dedup();
        sources
    };
    for s in suspects {
        let inst = &mut instances[s];
        if let Ok(mut session) = connector.connect(&inst.key).await {
            let dialect = session.dialect;
            if let Ok(rows) = session.rows(dialect.gtid_query()).await
                && let Some(row) = rows.first()
            {
                dialect.apply_gtids(row, inst);
            }
        }
    }
}
