//! The SQL side of recovery, as a small trait: the executor runs plans over it, the
//! [`Connector`] implements it against real servers, and tests record what it is asked.

use crate::topology::Result;
use crate::topology::dialect::parse_replica_status;
use crate::topology::dialect::{ReplicationCredentials, SourceCa};
use crate::topology::instance::{Flavor, Instance, InstanceKey, ThreadState};
use crate::topology::probe::probe;
use crate::topology::session::{Connector, Session};
use std::future::Future;
use std::time::Duration;

/// What recovery asks of the instances.
pub trait Replication: Sync {
    /// Reads an instance's state; an unreachable instance is a result, not an error.
    fn probe(&self, key: &InstanceKey) -> impl Future<Output = Instance> + Send;
    /// Stops receiving, with the applier running so that nothing received is lost.
    fn stop_io(&self, key: &InstanceKey) -> impl Future<Output = Result<()>> + Send;
    /// Waits until the instance has applied `position`, at most `timeout`; false when
    /// the bound expired first.
    fn wait_applied(
        &self,
        key: &InstanceKey,
        position: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The position of everything the instance has written or applied.
    fn own_position(&self, key: &InstanceKey) -> impl Future<Output = Result<String>> + Send;
    /// Stops replication (both threads).
    fn stop_replica(&self, key: &InstanceKey) -> impl Future<Output = Result<()>> + Send;
    /// Turns a replica into a master: replication forgotten, a semi-sync source if
    /// asked, then writable if asked.
    fn promote(
        &self,
        key: &InstanceKey,
        writable: bool,
        semi_sync: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Points the instance at `source` with GTID auto-positioning and starts replication.
    fn point_to(
        &self,
        key: &InstanceKey,
        source: &InstanceKey,
        credentials: Option<&ReplicationCredentials>,
        was_master: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Fences the instance (read-only, and the sessions read-only may not bind ended:
    /// see [`set_read_only`]), or makes it writable.
    fn set_read_only(
        &self,
        key: &InstanceKey,
        read_only: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Detaches a replica from `from` (`//host`, reversible).
    fn detach(
        &self,
        key: &InstanceKey,
        from: &InstanceKey,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Turns the replica side of semi-sync on or off and restarts the IO thread if it
    /// runs, so the setting takes effect on the next connect.
    fn set_semi_sync_replica(
        &self,
        key: &InstanceKey,
        enabled: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Has a semi-sync master binlog an event that changes no data; returns once its
    /// replicas acknowledged it, which releases every commit waiting before it.
    fn release_waiting_commits(&self, key: &InstanceKey)
    -> impl Future<Output = Result<()>> + Send;
}

impl Replication for Connector {
    async fn probe(&self, key: &InstanceKey) -> Instance {
        probe(self, key).await
    }

    /// The applier is started first, while the receiver still runs: what was received
    /// is then applied, and starting it later is not needed (see [`start_applier`]).
    async fn stop_io(&self, key: &InstanceKey) -> Result<()> {
        let mut s = self.connect(key).await?;
        start_applier(&mut s).await?;
        let stop = s.dialect.stop_replica_io();
        s.exec(&stop).await
    }

    async fn wait_applied(
        &self,
        key: &InstanceKey,
        position: &str,
        timeout: Duration,
    ) -> Result<bool> {
        let mut s = self.connect(key).await?;
        // The wait functions only advance while the applier runs.
        start_applier(&mut s).await?;
        let d = s.dialect;
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

    async fn own_position(&self, key: &InstanceKey) -> Result<String> {
        let mut s = self.connect(key).await?;
        let q = match s.dialect.flavor {
            Flavor::Mariadb => "SELECT @@global.gtid_current_pos",
            Flavor::Mysql => "SELECT @@global.gtid_executed",
        };
        Ok(s.value(q).await?.unwrap_or_default().replace('\n', ""))
    }

    async fn stop_replica(&self, key: &InstanceKey) -> Result<()> {
        let mut s = self.connect(key).await?;
        let stop = s.dialect.stop_replica();
        s.exec(&stop).await
    }

    async fn promote(&self, key: &InstanceKey, writable: bool, semi_sync: bool) -> Result<()> {
        let mut s = self.connect(key).await?;
        let d = s.dialect;
        s.exec(&d.stop_replica()).await?;
        s.exec(&d.reset_replica_all()).await?;
        if semi_sync {
            s.exec(&d.set_semi_sync_source(true)).await?;
        }
        if writable {
            for stmt in d.set_read_only(false) {
                s.exec(&stmt).await?;
            }
        }
        Ok(())
    }

    async fn point_to(
        &self,
        key: &InstanceKey,
        source: &InstanceKey,
        credentials: Option<&ReplicationCredentials>,
        was_master: bool,
    ) -> Result<()> {
        point_to(self, key, source, credentials, was_master).await
    }

    async fn set_read_only(&self, key: &InstanceKey, read_only: bool) -> Result<()> {
        set_read_only(self, key, read_only).await
    }

    async fn detach(&self, key: &InstanceKey, from: &InstanceKey) -> Result<()> {
        let mut s = self.connect(key).await?;
        let d = s.dialect;
        s.exec(&d.stop_replica()).await?;
        s.exec(&d.detach_source(&from.host, from.port)).await
    }

    /// The IO thread restarts while the applier runs (a fit replica's does), so
    /// MariaDB resumes from what it received instead of discarding the relay log.
    async fn set_semi_sync_replica(&self, key: &InstanceKey, enabled: bool) -> Result<()> {
        let mut s = self.connect(key).await?;
        let d = s.dialect;
        s.exec(&d.set_semi_sync_replica(enabled)).await?;
        let status = s.rows(d.replica_status_query()).await?;
        let receiving = status
            .first()
            .map(parse_replica_status)
            .is_some_and(|r| r.io_running != ThreadState::No);
        if receiving {
            s.exec(&d.stop_replica_io()).await?;
            s.exec(&d.start_replica_io()).await?;
        }
        Ok(())
    }

    async fn release_waiting_commits(&self, key: &InstanceKey) -> Result<()> {
        let mut s = self.connect(key).await?;
        let no_op = s.dialect.acknowledged_no_op();
        s.exec(no_op).await
    }
}

/// Starts the applier of a replica whose applier is stopped, where that cannot cost
/// received transactions. MariaDB throws the relay log away and fetches again from its
/// applied position when a replication thread starts while both are stopped in GTID
/// mode (orchestrator #1260): there the applier is started only while the receiver
/// still runs. A replica left with both threads stopped keeps its relay log, and a wait
/// on it reports that nothing is applied. An applier that fails to start (an SQL
/// error) is left for the wait to report.
async fn start_applier(s: &mut Session) -> Result<()> {
    let d = s.dialect;
    let status = s.rows(d.replica_status_query()).await?;
    let Some(r) = status.first().map(parse_replica_status) else {
        return Ok(()); // no replica
    };
    let receiving = r.io_running != ThreadState::No;
    if r.sql_running == ThreadState::Yes || (d.flavor == Flavor::Mariadb && !receiving) {
        return Ok(());
    }
    s.exec(&format!("{} SQL_THREAD", d.start_replica()))
        .await
        .ok();
    Ok(())
}

/// Points an instance at `source` with GTID auto-positioning and starts replication.
/// `was_master` marks an instance that replicated from nobody (an old master or a new
/// instance): on MariaDB its applied position is then its binlog, or its replica
/// position when its binlog is empty (an instance restarted on a copy).
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
        // An instance restarted on a physical copy has no binary log yet: its
        // position is the copy's, in gtid_slave_pos (korc sets it), and stays.
        s.exec(
            "SET GLOBAL gtid_slave_pos = IF(@@global.gtid_binlog_pos = '', \
             @@global.gtid_slave_pos, @@global.gtid_binlog_pos)",
        )
        .await?;
    }
    let resolved = match credentials {
        Some(c) if c.source_ca == Some(SourceCa::ServerCa) => {
            let file = s
                .value(d.server_ca_query())
                .await?
                .filter(|f| !f.is_empty())
                .ok_or_else(|| crate::topology::Error::NoCa {
                    instance: key.clone(),
                })?;
            Some(ReplicationCredentials {
                source_ca: Some(SourceCa::File(file)),
                ..c.clone()
            })
        }
        _ => None,
    };
    let credentials = resolved.as_ref().or(credentials);
    let stmt = d.change_source(&source.host, source.port, credentials);
    let shown = d.change_source(&source.host, source.port, None);
    s.exec_redacted(&stmt, &shown).await?;
    s.exec(&d.start_replica()).await
}

/// Starts a replica's stopped replication threads (`START SLAVE`).
pub async fn start_replica(connector: &Connector, key: &InstanceKey) -> Result<()> {
    let mut s = connector.connect(key).await?;
    let start = s.dialect.start_replica();
    s.exec(&start).await
}

/// Makes an instance writable, or fences it: read-only, then every client session
/// ended that read-only might not bind (see [`Dialect::fenced_sessions_query`]).
/// Whatever such a session committed before its end is in the instance's position
/// read afterwards, so a catch-up to that position carries it.
///
/// [`Dialect::fenced_sessions_query`]: crate::topology::dialect::Dialect::fenced_sessions_query
pub async fn set_read_only(
    connector: &Connector,
    key: &InstanceKey,
    read_only: bool,
) -> Result<()> {
    let mut s = connector.connect(key).await?;
    for stmt in s.dialect.set_read_only(read_only) {
        s.exec(&stmt).await?;
    }
    if read_only {
        end_client_sessions(&mut s).await?;
    }
    Ok(())
}

/// "Unknown thread id": the session ended by itself meanwhile.
const UNKNOWN_THREAD: u16 = 1094;
/// "You are not owner of thread": MySQL keeps SYSTEM_USER sessions from accounts
/// without SYSTEM_USER, which korc's lacks. `super_read_only` binds them already.
const NOT_OWNER: u16 = 1095;

async fn end_client_sessions(s: &mut Session) -> Result<()> {
    let rows = s.rows(s.dialect.fenced_sessions_query()).await?;
    let flavor = s.dialect.flavor;
    for id in rows.iter().filter_map(|r| r.get("id").cloned().flatten()) {
        match s.exec(&format!("KILL CONNECTION {id}")).await {
            Err(crate::topology::Error::Sql {
                source: mysql_async::Error::Server(e),
                ..
            }) if e.code == UNKNOWN_THREAD || (e.code == NOT_OWNER && flavor == Flavor::Mysql) => {}
            other => other?,
        }
    }
    Ok(())
}
