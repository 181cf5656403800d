//! Recovery: replacing a dead master, relocating the replicas of a dead intermediate
//! master, and graceful takeover. Decisions come from the pure candidate choice; this
//! module executes them step by step and records every step in a [`RecoveryRecord`].

mod dead_master;
mod intermediate;
mod record;
mod takeover;

pub use dead_master::recover_dead_master;
pub use intermediate::recover_dead_intermediate_master;
pub use record::{Outcome, RecoveryKind, RecoveryRecord, Step, StepKind};
pub use takeover::graceful_takeover;

use super::analysis::{Analysis, AnalysisCode};
use super::dialect::ReplicationCredentials;
use super::instance::{Flavor, Instance, InstanceKey};
use super::policy::Policy;
use super::session::Connector;
use crate::topology::Result;
use std::time::Duration;

/// What a recovery needs besides the topology.
#[derive(Debug, Clone)]
pub struct RecoveryContext {
    /// Opens sessions.
    pub connector: Connector,
    /// Policy.
    pub policy: Policy,
    /// Credentials for replicas that have none yet (an old master rejoining).
    pub replication: ReplicationCredentials,
}

/// Runs the recovery the first actionable analysis calls for; none when nothing is
/// actionable.
pub async fn recover(
    ctx: &RecoveryContext,
    instances: &[Instance],
    analyses: &[Analysis],
) -> Option<RecoveryRecord> {
    let a = analyses.iter().find(|a| a.actionable)?;
    Some(match a.code {
        c if c.is_master_failure() => {
            recover_dead_master(ctx, instances, &a.instance, Some(a.clone())).await
        }
        AnalysisCode::NoWriteableMasterStructureWarning => make_writable(ctx, a).await,
        _ => recover_dead_intermediate_master(ctx, instances, &a.instance, Some(a.clone())).await,
    })
}

async fn make_writable(ctx: &RecoveryContext, a: &Analysis) -> RecoveryRecord {
    let mut rec = record::Recorder::start(
        RecoveryKind::NonWriteableMaster,
        a.instance.clone(),
        Some(a.clone()),
    );
    let t = record::clock();
    let r = set_read_only(&ctx.connector, &a.instance, false).await;
    rec.step(
        StepKind::Promote,
        Some(&a.instance),
        t,
        &r,
        "read_only=0 on the master",
    );
    rec.record.successor = r.is_ok().then(|| a.instance.clone());
    let outcome = if r.is_ok() {
        Outcome::Recovered
    } else {
        Outcome::Failed
    };
    rec.finish(outcome, r.err().map(|e| e.to_string()))
}

/// Stops the IO thread with the SQL thread running. MariaDB discards the relay log
/// when replication starts with both threads stopped in GTID mode (orchestrator
/// #1260), so the applier is started first: what was received is then applied, not
/// thrown away. A failing applier start (an SQL error) is left for the wait to report.
async fn stop_io(connector: &Connector, key: &InstanceKey) -> Result<()> {
    let mut s = connector.connect(key).await?;
    let d = s.dialect;
    s.exec(&format!("{} SQL_THREAD", d.start_replica()))
        .await
        .ok();
    s.exec(&d.stop_replica_io()).await
}

/// Waits until `key` has applied `position`, at most `timeout`. Ok(false) on timeout.
async fn wait_applied(
    connector: &Connector,
    key: &InstanceKey,
    position: &str,
    timeout: Duration,
) -> Result<bool> {
    let mut s = connector.connect(key).await?;
    let d = s.dialect;
    // The wait functions only advance while the applier runs; on an instance that is
    // no replica the statement fails harmlessly.
    s.exec(&format!("{} SQL_THREAD", d.start_replica()))
        .await
        .ok();
    let margin = Duration::from_secs(1);
    let rows = s
        .rows_within(
            &d.wait_for_position(position, timeout.as_secs_f64()),
            timeout + margin,
        )
        .await?;
    let value = rows
        .first()
        .and_then(|r| r.values().next().cloned().flatten())
        .and_then(|v| v.parse().ok());
    Ok(d.wait_succeeded(value))
}

/// The position of everything an instance has written or applied.
async fn own_position(connector: &Connector, key: &InstanceKey) -> Result<String> {
    let mut s = connector.connect(key).await?;
    let q = match s.dialect.flavor {
        Flavor::Mariadb => "SELECT @@global.gtid_current_pos",
        Flavor::Mysql => "SELECT @@global.gtid_executed",
    };
    Ok(s.value(q).await?.unwrap_or_default().replace('\n', ""))
}

/// Turns a replica into a master: replication forgotten, writable if asked.
async fn promote(connector: &Connector, key: &InstanceKey, writable: bool) -> Result<()> {
    let mut s = connector.connect(key).await?;
    let d = s.dialect;
    s.exec(&d.stop_replica()).await?;
    s.exec(&d.reset_replica_all()).await?;
    if writable {
        for stmt in d.set_read_only(false) {
            s.exec(&stmt).await?;
        }
    }
    Ok(())
}

/// Points an instance at `source` with GTID auto-positioning and starts replication.
/// `was_master` marks an instance that replicated from nobody (an old master or a new
/// instance): on MariaDB its applied position is then its binlog.
pub async fn point_to(
    connector: &Connector,
    key: &InstanceKey,
    source: &InstanceKey,
    credentials: Option<&ReplicationCredentials>,
    was_master: bool,
) -> Result<()> {
    let mut s = connector.connect(key).await?;
    let d = s.dialect;
    s.exec(&d.stop_replica()).await?;
    if was_master && d.flavor == Flavor::Mariadb {
        s.exec("SET GLOBAL gtid_slave_pos = @@global.gtid_binlog_pos")
            .await?;
    }
    let stmt = d.change_source(&source.host, source.port, credentials);
    let shown = d.change_source(&source.host, source.port, None);
    s.exec_redacted(&stmt, &shown).await?;
    s.exec(&d.start_replica()).await
}

/// Makes an instance read-only, or writable.
pub async fn set_read_only(
    connector: &Connector,
    key: &InstanceKey,
    read_only: bool,
) -> Result<()> {
    let mut s = connector.connect(key).await?;
    for stmt in s.dialect.set_read_only(read_only) {
        s.exec(&stmt).await?;
    }
    Ok(())
}

async fn detach(connector: &Connector, key: &InstanceKey, from: &InstanceKey) -> Result<()> {
    let mut s = connector.connect(key).await?;
    let d = s.dialect;
    s.exec(&d.stop_replica()).await?;
    s.exec(&d.detach_source(&from.host, from.port)).await
}
