//! What korc knows about one MySQL/MariaDB server: the result of a probe.
//!
//! This is the `instances` document of `korc analyze --output json` and of the state
//! file, so field names are part of korc's stable JSON interface.

use super::gtid::{
    GtidHistory, GtidParseError, GtidPosition, MariaDbBinlogState, MariaDbPosition, MysqlGtidSet,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The address replicas use for an instance: `host:port`. It identifies the instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceKey {
    /// Host name or IP address, as replicas name it.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl InstanceKey {
    /// A key from host and port.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// An instance address that is not `host:port`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:?} is not host:port")]
pub struct InstanceKeyError(String);

impl FromStr for InstanceKey {
    type Err = InstanceKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = s
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| InstanceKeyError(s.to_string()))?;
        let port = port.parse().map_err(|_| InstanceKeyError(s.to_string()))?;
        if host.is_empty() {
            return Err(InstanceKeyError(s.to_string()));
        }
        Ok(Self::new(host, port))
    }
}

impl TryFrom<String> for InstanceKey {
    type Error = InstanceKeyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<InstanceKey> for String {
    fn from(k: InstanceKey) -> String {
        k.to_string()
    }
}

/// Server flavor, detected from `@@version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Oracle MySQL or Percona Server (8.x).
    Mysql,
    /// MariaDB (10.6 and later).
    Mariadb,
}

/// State of a replication thread as `SHOW REPLICA STATUS` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ThreadState {
    /// Running (`Yes`).
    Yes,
    /// Trying to connect to its source (`Connecting`): not replicating.
    Connecting,
    /// Stopped (`No`, or anything unknown).
    #[default]
    No,
}

impl ThreadState {
    /// Parses the column value; anything but `Yes`/`Connecting` counts as stopped.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            v if v.eq_ignore_ascii_case("yes") => Self::Yes,
            v if v.eq_ignore_ascii_case("connecting") => Self::Connecting,
            _ => Self::No,
        }
    }
}

/// The replica side of an instance (`SHOW REPLICA STATUS`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Replication {
    /// The source host as configured (`Master_Host` / `Source_Host`); orchestrator's
    /// detach marker `//host` means replication was deliberately cut.
    pub source_host: String,
    /// The source port.
    pub source_port: u16,
    /// Replication user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_user: Option<String>,
    /// IO (receiver) thread.
    pub io_running: ThreadState,
    /// SQL (applier) thread.
    pub sql_running: ThreadState,
    /// Last IO error number (0 = none).
    pub last_io_errno: u32,
    /// Last IO error text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_io_error: String,
    /// Last SQL error number (0 = none).
    pub last_sql_errno: u32,
    /// Last SQL error text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_sql_error: String,
    /// `Seconds_Behind_Master`; none while a thread is not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_behind: Option<u64>,
    /// Configured delay (`SQL_Delay`).
    #[serde(default)]
    pub sql_delay: u64,
    /// GTID mode of the connection: MariaDB `Using_Gtid` (`Slave_Pos`, `Current_Pos`,
    /// `No`); MySQL `Auto_Position` as `Auto_Position` or `No`.
    pub using_gtid: String,
    /// Transactions received from the source: MariaDB `Gtid_IO_Pos`, MySQL
    /// `Retrieved_Gtid_Set`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub received_gtids: String,
    /// Source binlog coordinates received (`Master_Log_File:Read_Master_Log_Pos`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub read_coordinates: String,
    /// Source binlog coordinates applied (`Relay_Master_Log_File:Exec_Master_Log_Pos`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exec_coordinates: String,
}

impl Replication {
    /// The configured source, or none when replication was detached (`//host`) or the
    /// host is empty.
    pub fn source(&self) -> Option<InstanceKey> {
        self.source_address()
            .map(|(host, port)| InstanceKey::new(host, port))
    }

    /// [`Replication::source`] as borrowed host and port, for lookups that should not
    /// allocate.
    pub fn source_address(&self) -> Option<(&str, u16)> {
        let h = self.source_host.trim();
        (!h.is_empty() && h != "_" && !h.starts_with("//") && self.source_port != 0)
            .then_some((h, self.source_port))
    }

    /// True when the replica was detached from its source on purpose.
    pub fn is_detached(&self) -> bool {
        self.source_host.starts_with("//")
    }

    /// Both threads show `Yes`.
    pub fn is_replicating(&self) -> bool {
        self.io_running == ThreadState::Yes && self.sql_running == ThreadState::Yes
    }

    /// orchestrator's "failing to connect to master": IO not running with a connection
    /// error, SQL thread still running.
    pub fn is_failing_to_connect(&self) -> bool {
        let e = self.last_io_error.to_ascii_lowercase();
        let connect_error = e.contains("error ")
            && (e.contains("connecting to master") || e.contains("connecting to source"));
        self.io_running != ThreadState::Yes && connect_error && self.sql_running == ThreadState::Yes
    }

    /// True when everything received has been applied (read coordinates = exec).
    pub fn relay_log_applied(&self) -> bool {
        self.read_coordinates == self.exec_coordinates
    }
}

/// Semi-synchronous replication variables and status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SemiSync {
    /// `rpl_semi_sync_master_enabled` / `rpl_semi_sync_source_enabled`.
    pub master_enabled: bool,
    /// `Rpl_semi_sync_master_status`: semi-sync is active (not fallen back to async).
    pub master_status: bool,
    /// Acknowledgements a commit waits for (MariaDB always 1).
    pub master_wait_for_replica_count: u32,
    /// Connected semi-sync replicas (`Rpl_semi_sync_master_clients`).
    pub master_clients: u32,
    /// Sessions waiting for an acknowledgement right now.
    pub master_wait_sessions: u32,
    /// Timeout before falling back to async, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_timeout_ms: Option<u64>,
    /// `rpl_semi_sync_slave_enabled` / `rpl_semi_sync_replica_enabled`.
    pub replica_enabled: bool,
    /// `Rpl_semi_sync_slave_status`.
    pub replica_status: bool,
}

/// GTID variables, as the server reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GtidState {
    /// MySQL `gtid_mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// MySQL `gtid_executed`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub executed: String,
    /// MySQL `gtid_purged`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub purged: String,
    /// MariaDB `gtid_binlog_pos`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub binlog_pos: String,
    /// MariaDB `gtid_current_pos`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_pos: String,
    /// MariaDB `gtid_slave_pos`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub slave_pos: String,
    /// MariaDB `gtid_binlog_state`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub binlog_state: String,
    /// MariaDB `gtid_strict_mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_mode: Option<bool>,
}

/// A GTID field of an instance document that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{instance}: {field}: {source}")]
pub struct GtidFieldError {
    /// The instance.
    pub instance: InstanceKey,
    /// The field, as the JSON document names it.
    pub field: &'static str,
    /// Why it does not parse.
    #[source]
    pub source: GtidParseError,
}

/// One probe of one instance. An unreachable instance is a valid result: it keeps
/// the last data seen (if any) with `reachable: false`. Unknown fields are refused,
/// naming the field: the document is read back from files people edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instance {
    /// Identity: the address replicas use.
    pub key: InstanceKey,
    /// The last probe succeeded (orchestrator's LastCheckValid).
    pub reachable: bool,
    /// The last probe failed after its first query succeeded (LastCheckPartialSuccess).
    #[serde(default)]
    pub partial_success: bool,
    /// Why the last probe failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the last probe ran (Unix milliseconds).
    #[serde(default)]
    pub checked_at_ms: u64,
    /// When the instance was last reached (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
    /// How long the last successful probe took, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_micros: Option<u64>,
    /// True when the role was implied by the other instances, never probed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub implied: bool,
    /// Server flavor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<Flavor>,
    /// `@@version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `@@server_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u32>,
    /// `@@server_uuid` (MySQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_uuid: Option<String>,
    /// `@@hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `@@report_host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_host: Option<String>,
    /// `@@read_only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// `@@super_read_only` (MySQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub super_read_only: Option<bool>,
    /// `@@log_bin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bin: Option<bool>,
    /// `@@log_slave_updates` / `@@log_replica_updates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_replica_updates: Option<bool>,
    /// `@@binlog_format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_format: Option<String>,
    /// Own binlog coordinates (`SHOW MASTER STATUS`), `file:pos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_coordinates: Option<String>,
    /// GTID variables.
    #[serde(default)]
    pub gtid: GtidState,
    /// Replica status; none when the instance replicates from nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    /// Semi-sync state.
    #[serde(default)]
    pub semi_sync: SemiSync,
    /// `Uptime` in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
}

impl Instance {
    /// An instance that was never reached: nothing known but its key.
    pub fn unknown(key: InstanceKey) -> Self {
        Self {
            key,
            reachable: false,
            partial_success: false,
            error: None,
            checked_at_ms: 0,
            last_seen_ms: None,
            probe_micros: None,
            implied: false,
            flavor: None,
            version: None,
            server_id: None,
            server_uuid: None,
            hostname: None,
            report_host: None,
            read_only: None,
            super_read_only: None,
            log_bin: None,
            log_replica_updates: None,
            binlog_format: None,
            binlog_coordinates: None,
            gtid: GtidState::default(),
            replication: None,
            semi_sync: SemiSync::default(),
            uptime_seconds: None,
        }
    }

    /// The source this instance replicates from, if any.
    pub fn source(&self) -> Option<InstanceKey> {
        self.replication.as_ref().and_then(Replication::source)
    }

    /// orchestrator's IsMaster: no configured source (a detached replica counts too).
    pub fn is_master(&self) -> bool {
        self.source().is_none()
    }

    /// Both replication threads run.
    pub fn is_replicating(&self) -> bool {
        self.replication
            .as_ref()
            .is_some_and(Replication::is_replicating)
    }

    /// Accepts writes from ordinary users: read_only (and super_read_only) off.
    pub fn is_writable(&self) -> bool {
        self.read_only == Some(false) && self.super_read_only != Some(true)
    }

    /// Has binary logging and logs replicated transactions, so it can serve replicas.
    pub fn is_logging_replica_updates(&self) -> bool {
        self.log_bin == Some(true) && self.log_replica_updates == Some(true)
    }

    /// Replication lag as orchestrator counts it.
    pub fn lag_seconds(&self) -> Option<u64> {
        self.replication.as_ref().and_then(|r| r.seconds_behind)
    }

    /// Major version (`8`, `10`, `11`), for compatibility checks.
    pub fn major_version(&self) -> Option<(u32, u32)> {
        let v = self.version.as_deref()?;
        let mut it = v
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty());
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }

    /// Checks that every GTID text of the instance parses in its format, so that a
    /// document read from a file cannot pass garbage off as "no transactions".
    pub fn check_gtids(&self) -> Result<(), GtidFieldError> {
        let g = &self.gtid;
        let received = self
            .replication
            .as_ref()
            .map(|r| r.received_gtids.as_str())
            .unwrap_or_default();
        type Check = fn(&str) -> Result<(), GtidParseError>;
        let mariadb: Check = |t| MariaDbPosition::parse(t).map(drop);
        let mysql: Check = |t| MysqlGtidSet::parse(t).map(drop);
        let state: Check = |t| MariaDbBinlogState::parse(t).map(drop);
        let checks: [(&'static str, &str, Check); 7] = [
            ("gtid.executed", &g.executed, mysql),
            ("gtid.purged", &g.purged, mysql),
            ("gtid.binlogPos", &g.binlog_pos, mariadb),
            ("gtid.currentPos", &g.current_pos, mariadb),
            ("gtid.slavePos", &g.slave_pos, mariadb),
            ("gtid.binlogState", &g.binlog_state, state),
            (
                "replication.receivedGtids",
                received,
                if self.flavor == Some(Flavor::Mysql) {
                    mysql
                } else {
                    mariadb
                },
            ),
        ];
        for (field, text, parse) in checks {
            parse(text).map_err(|source| GtidFieldError {
                instance: self.key.clone(),
                field,
                source,
            })?;
        }
        Ok(())
    }

    /// Transactions this instance has applied.
    pub fn executed_position(&self) -> Option<GtidPosition> {
        match self.flavor? {
            Flavor::Mariadb => {
                let current = MariaDbPosition::parse(&self.gtid.current_pos).ok()?;
                // A replica without log_slave_updates has nothing in gtid_binlog_pos;
                // gtid_current_pos already prefers the newer of binlog and slave pos.
                Some(GtidPosition::MariaDb(current))
            }
            Flavor::Mysql => Some(GtidPosition::Mysql(
                MysqlGtidSet::parse(&self.gtid.executed).ok()?,
            )),
        }
    }

    /// Transactions this instance has received, applied or still in its relay log:
    /// what candidate choice ranks by.
    pub fn received_position(&self) -> Option<GtidPosition> {
        let executed = self.executed_position()?;
        let received = self
            .replication
            .as_ref()
            .map(|r| r.received_gtids.as_str())
            .unwrap_or_default();
        Some(match executed {
            GtidPosition::MariaDb(p) => {
                GtidPosition::MariaDb(p.max(&MariaDbPosition::parse(received).ok()?))
            }
            GtidPosition::Mysql(s) => {
                GtidPosition::Mysql(s.union(&MysqlGtidSet::parse(received).ok()?))
            }
        })
    }

    /// Transactions this instance wrote itself that `source` does not have. Unlike
    /// [`Instance::errant_gtids`] this holds against a source last seen a while ago
    /// (a dead master): transactions it sent since then carry its own identity, not
    /// this instance's. None when it cannot be told.
    pub fn own_errant_gtids(&self, source: &Instance) -> Option<String> {
        source.last_seen_ms?;
        self.own_errant_between(&self.gtid_history()?, &source.gtid_history()?)
    }

    /// [`Instance::own_errant_gtids`] on histories already parsed: `own` this
    /// instance's, `theirs` its source's.
    pub fn own_errant_between(&self, own: &GtidHistory, theirs: &GtidHistory) -> Option<String> {
        match (own, theirs) {
            (GtidHistory::MariaDb(own), GtidHistory::MariaDb(theirs)) => {
                let own_id = self.server_id?;
                let errant: Vec<String> = own
                    .errant_against(theirs)
                    .iter()
                    .filter(|g| g.server_id == own_id)
                    .map(ToString::to_string)
                    .collect();
                Some(errant.join(","))
            }
            (GtidHistory::Mysql(own), GtidHistory::Mysql(theirs)) => {
                let uuid = self.server_uuid.as_deref()?.to_ascii_lowercase();
                Some(own.subtract(theirs).only_source(&uuid).to_string())
            }
            _ => None,
        }
    }

    /// Every transaction this instance wrote or applied, parsed for errant-transaction
    /// detection. None when it cannot be told (unknown flavor, unparsable GTIDs: see
    /// [`Instance::check_gtids`] for why).
    pub fn gtid_history(&self) -> Option<GtidHistory> {
        Some(match self.flavor? {
            Flavor::Mariadb => {
                GtidHistory::MariaDb(MariaDbBinlogState::parse(&self.gtid.binlog_state).ok()?)
            }
            Flavor::Mysql => GtidHistory::Mysql(MysqlGtidSet::parse(&self.gtid.executed).ok()?),
        })
    }

    /// Transactions this instance holds that `source` does not: errant transactions.
    /// None when it cannot be told (unknown flavor, unparsable GTIDs).
    pub fn errant_gtids(&self, source: &Instance) -> Option<String> {
        self.gtid_history()?
            .errant_against(&source.gtid_history()?, source.server_uuid.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_keys_parse_and_print() {
        let k: InstanceKey = "db-0.db.ns.svc:3306".parse().unwrap();
        assert_eq!(k, InstanceKey::new("db-0.db.ns.svc", 3306));
        assert_eq!(k.to_string(), "db-0.db.ns.svc:3306");
        for bad in ["nohost", ":3306", "h:99999", "h:x"] {
            assert!(bad.parse::<InstanceKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn thread_states() {
        assert_eq!(ThreadState::parse("Yes"), ThreadState::Yes);
        assert_eq!(ThreadState::parse("Connecting"), ThreadState::Connecting);
        assert_eq!(ThreadState::parse("No"), ThreadState::No);
        assert_eq!(ThreadState::parse("Preparing"), ThreadState::No);
    }

    #[test]
    fn failing_to_connect_matches_both_wordings() {
        let mut r = Replication {
            io_running: ThreadState::Connecting,
            sql_running: ThreadState::Yes,
            last_io_error: "error reconnecting to master 'repl@10.0.0.1:3306' - retry-time: 1"
                .into(),
            ..Default::default()
        };
        assert!(r.is_failing_to_connect());
        r.last_io_error =
            "Error connecting to source 'repl@db:3306'. This was attempt 1/86400".into();
        assert!(r.is_failing_to_connect());
        r.sql_running = ThreadState::No;
        assert!(!r.is_failing_to_connect());
    }

    #[test]
    fn detached_source_is_no_source() {
        let r = Replication {
            source_host: "//db-0".into(),
            source_port: 3306,
            ..Default::default()
        };
        assert!(r.is_detached());
        assert_eq!(r.source(), None);
    }

    #[test]
    fn gtid_fields_are_checked_in_their_own_format() {
        let mut i = Instance::unknown("a:1".parse().unwrap());
        assert_eq!(i.check_gtids(), Ok(()));
        i.gtid.current_pos = "0-1-9".into();
        i.gtid.binlog_state = "0-1-9,0-2-3".into();
        assert_eq!(i.check_gtids(), Ok(()));
        i.gtid.executed = "0-1-9".into();
        let e = i.check_gtids().unwrap_err();
        assert_eq!(e.field, "gtid.executed");
        assert!(e.to_string().starts_with("a:1: gtid.executed: "), "{e}");
        i.gtid.executed.clear();
        i.flavor = Some(Flavor::Mysql);
        i.replication = Some(Replication {
            received_gtids: "0-1-11".into(),
            ..Default::default()
        });
        assert_eq!(
            i.check_gtids().unwrap_err().field,
            "replication.receivedGtids"
        );
        i.flavor = Some(Flavor::Mariadb);
        assert_eq!(i.check_gtids(), Ok(()));
    }

    #[test]
    fn received_position_includes_relay_log() {
        let mut i = Instance::unknown("a:1".parse().unwrap());
        i.flavor = Some(Flavor::Mariadb);
        i.gtid.current_pos = "0-1-9".into();
        i.replication = Some(Replication {
            received_gtids: "0-1-11".into(),
            ..Default::default()
        });
        assert_eq!(i.received_position().unwrap().to_string(), "0-1-11");
        assert_eq!(i.executed_position().unwrap().to_string(), "0-1-9");
        assert_eq!(i.major_version(), None);
        i.version = Some("10.11.19-MariaDB-0+deb12u1".into());
        assert_eq!(i.major_version(), Some((10, 11)));
    }
}
