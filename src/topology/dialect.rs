//! The SQL korc speaks to each flavor and version, and the parsing of what comes back.
//!
//! Everything here is pure: statements are strings, result rows are maps from column
//! name to text. That is what lets MySQL 8.0/8.4 be verified on recorded rows although
//! no MySQL server runs in korc's test environment.

use super::instance::{Flavor, Instance, Replication, SemiSync, ThreadState};
use std::collections::BTreeMap;

/// A result row: column name to value (NULL as `None`).
pub type Row = BTreeMap<String, Option<String>>;

/// Credentials a replica uses to connect to its source. `Debug` shows no password.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplicationCredentials {
    /// User with the REPLICATION SLAVE privilege.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The CA its source's certificate must verify to: replication runs over TLS
    /// when set.
    pub source_ca: Option<SourceCa>,
}

/// The CA a replica verifies its source's certificate against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceCa {
    /// This CA file on the replica.
    File(String),
    /// The CA file the replica's own server is configured with (its `ssl_ca`): in a
    /// korc cluster every instance has the cluster's CA there. Read when the replica
    /// is pointed at its source (see `point_to`), so no path outside the server is
    /// assumed.
    ServerCa,
}

impl std::fmt::Debug for ReplicationCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationCredentials")
            .field("user", &self.user)
            .field("source_ca", &self.source_ca)
            .finish_non_exhaustive()
    }
}

/// Flavor and version of a server: decides every statement's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// Server flavor.
    pub flavor: Flavor,
    /// (major, minor, patch).
    pub version: (u16, u16, u16),
}

/// Quotes a string literal for SQL.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

impl Dialect {
    /// The dialect of a server from its handshake version. MariaDB numbers its
    /// releases from 10 up, MySQL below that.
    pub fn from_version(version: (u16, u16, u16)) -> Self {
        let flavor = if version.0 >= 10 {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        };
        Self { flavor, version }
    }

    fn mysql_at_least(&self, major: u16, minor: u16, patch: u16) -> bool {
        self.flavor == Flavor::Mysql && self.version >= (major, minor, patch)
    }

    /// The server-variables query; its columns are read by [`Dialect::apply_variables`].
    pub fn variables_query(&self) -> String {
        match self.flavor {
            Flavor::Mariadb => "SELECT @@global.server_id AS server_id, @@global.version AS version, \
                 @@global.hostname AS hostname, @@global.report_host AS report_host, \
                 CAST(@@global.read_only AS SIGNED) AS read_only, CAST(@@global.log_bin AS SIGNED) AS log_bin, \
                 CAST(@@global.log_slave_updates AS SIGNED) AS log_replica_updates, \
                 @@global.binlog_format AS binlog_format, @@global.gtid_binlog_pos AS gtid_binlog_pos, \
                 @@global.gtid_current_pos AS gtid_current_pos, @@global.gtid_slave_pos AS gtid_slave_pos, \
                 @@global.gtid_binlog_state AS gtid_binlog_state, \
                 CAST(@@global.gtid_strict_mode AS SIGNED) AS gtid_strict_mode"
                .to_string(),
            Flavor::Mysql => {
                // log_replica_updates exists from 8.0.26; the old name before.
                let log_updates =
                    if self.mysql_at_least(8, 0, 26) { "log_replica_updates" } else { "log_slave_updates" };
                format!(
                    "SELECT @@global.server_id AS server_id, @@global.version AS version, \
                     @@global.hostname AS hostname, @@global.report_host AS report_host, \
                     @@global.server_uuid AS server_uuid, @@global.read_only AS read_only, \
                     @@global.super_read_only AS super_read_only, @@global.log_bin AS log_bin, \
                     @@global.{log_updates} AS log_replica_updates, @@global.binlog_format AS binlog_format, \
                     @@global.gtid_mode AS gtid_mode, @@global.gtid_executed AS gtid_executed, \
                     @@global.gtid_purged AS gtid_purged"
                )
            }
        }
    }

    /// The GTID-only part of the variables query, to re-read a source's position.
    pub fn gtid_query(&self) -> &'static str {
        match self.flavor {
            Flavor::Mariadb => {
                "SELECT @@global.gtid_binlog_pos AS gtid_binlog_pos, @@global.gtid_current_pos AS gtid_current_pos, \
                 @@global.gtid_binlog_state AS gtid_binlog_state"
            }
            Flavor::Mysql => {
                "SELECT @@global.gtid_executed AS gtid_executed, @@global.gtid_purged AS gtid_purged"
            }
        }
    }

    /// Semi-sync and uptime status.
    pub fn status_query(&self) -> &'static str {
        "SHOW GLOBAL STATUS WHERE Variable_name = 'Uptime' OR Variable_name LIKE 'Rpl\\_semi\\_sync\\_%'"
    }

    /// Semi-sync variables.
    pub fn semi_sync_variables_query(&self) -> &'static str {
        "SHOW GLOBAL VARIABLES LIKE 'rpl\\_semi\\_sync\\_%'"
    }

    /// The replica-status statement (MySQL 8.0.22 renamed it; MariaDB keeps the old
    /// name's columns either way).
    pub fn replica_status_query(&self) -> &'static str {
        if self.mysql_at_least(8, 0, 22) {
            "SHOW REPLICA STATUS"
        } else {
            "SHOW SLAVE STATUS"
        }
    }

    /// Own binlog coordinates (MySQL 8.4 removed `SHOW MASTER STATUS`).
    pub fn binlog_status_query(&self) -> &'static str {
        if self.mysql_at_least(8, 2, 0) {
            "SHOW BINARY LOG STATUS"
        } else {
            "SHOW MASTER STATUS"
        }
    }

    fn replica_word(&self) -> &'static str {
        if self.mysql_at_least(8, 0, 22) {
            "REPLICA"
        } else {
            "SLAVE"
        }
    }

    /// Stops both replication threads.
    pub fn stop_replica(&self) -> String {
        format!("STOP {}", self.replica_word())
    }

    /// Stops only the IO (receiver) thread: nothing new arrives, the relay log drains.
    pub fn stop_replica_io(&self) -> String {
        format!("STOP {} IO_THREAD", self.replica_word())
    }

    /// Starts replication.
    pub fn start_replica(&self) -> String {
        format!("START {}", self.replica_word())
    }

    /// Forgets the replica configuration entirely: the instance becomes a master.
    pub fn reset_replica_all(&self) -> String {
        format!("RESET {} ALL", self.replica_word())
    }

    /// The statement that configures the source, and the prefix of its options
    /// (MySQL 8.0.23 renamed both).
    fn change_source_words(&self) -> (&'static str, &'static str) {
        if self.mysql_at_least(8, 0, 23) {
            ("CHANGE REPLICATION SOURCE TO", "SOURCE")
        } else {
            ("CHANGE MASTER TO", "MASTER")
        }
    }

    /// Points the instance at a new source with GTID auto-positioning. Credentials are
    /// given only when the instance has none yet (an old master); otherwise the
    /// existing ones are kept, as `CHANGE MASTER` keeps unspecified options (TLS
    /// among them). With a CA the connection to the source takes TLS and the source's
    /// certificate must verify to the CA; its name is not checked, as sources are
    /// often named by IP (MariaDB 11.4 would check it by default).
    pub fn change_source(
        &self,
        host: &str,
        port: u16,
        credentials: Option<&ReplicationCredentials>,
    ) -> String {
        let (statement, word) = self.change_source_words();
        let mut s = format!(
            "{statement} {word}_HOST={}, {word}_PORT={port}",
            quote(host)
        );
        if let Some(c) = credentials {
            s += &format!(
                ", {word}_USER={}, {word}_PASSWORD={}",
                quote(&c.user),
                quote(&c.password)
            );
            match &c.source_ca {
                Some(ca) => {
                    s += &format!(", {word}_SSL=1");
                    // ServerCa is resolved to a file before a statement is made.
                    if let SourceCa::File(file) = ca {
                        s += &format!(", {word}_SSL_CA={}", quote(file));
                    }
                    if self.flavor == Flavor::Mariadb {
                        s += ", MASTER_SSL_VERIFY_SERVER_CERT=0";
                    }
                }
                // caching_sha2_password over a connection without TLS.
                None if word == "SOURCE" => s += ", GET_SOURCE_PUBLIC_KEY=1",
                None => {}
            }
        }
        match self.flavor {
            Flavor::Mariadb => s += ", MASTER_USE_GTID=slave_pos",
            Flavor::Mysql => s += &format!(", {word}_AUTO_POSITION=1"),
        }
        s + &format!(", {word}_CONNECT_RETRY=1")
    }

    /// orchestrator's reversible detach: the source host becomes `//host`.
    pub fn detach_source(&self, host: &str, port: u16) -> String {
        let (statement, word) = self.change_source_words();
        format!(
            "{statement} {word}_HOST={}, {word}_PORT={port}",
            quote(&format!("//{host}"))
        )
    }

    /// Statements that make the instance read-only or writable. MySQL's
    /// super_read_only also stops users with SUPER; MariaDB has no such variable.
    pub fn set_read_only(&self, read_only: bool) -> Vec<String> {
        match (self.flavor, read_only) {
            (Flavor::Mariadb, ro) => vec![format!("SET GLOBAL read_only = {}", u8::from(ro))],
            (Flavor::Mysql, true) => vec!["SET GLOBAL super_read_only = 1".into()],
            (Flavor::Mysql, false) => {
                vec![
                    "SET GLOBAL super_read_only = 0".into(),
                    "SET GLOBAL read_only = 0".into(),
                ]
            }
        }
    }

    /// The client sessions a fence ends, as `id` rows: every session but this one,
    /// those of the account korc connects as, the server's own threads and replicas'
    /// binlog dumps. MariaDB's `read_only` does not bind holders of READ ONLY ADMIN
    /// (root among them), so read-only alone leaves their open sessions writable.
    pub fn fenced_sessions_query(&self) -> &'static str {
        "SELECT CAST(ID AS CHAR) AS id FROM information_schema.PROCESSLIST \
         WHERE ID <> CONNECTION_ID() \
         AND USER <> SUBSTRING_INDEX(CURRENT_USER(), '@', 1) \
         AND USER NOT IN ('system user', 'event_scheduler') \
         AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID')"
    }

    /// Turns the source (master) side of semi-sync on or off.
    pub fn set_semi_sync_source(&self, enabled: bool) -> String {
        let name = match self.flavor {
            Flavor::Mariadb => "rpl_semi_sync_master_enabled",
            Flavor::Mysql => "rpl_semi_sync_source_enabled",
        };
        format!("SET GLOBAL {name} = {}", u8::from(enabled))
    }

    /// Turns the replica side of semi-sync on or off. It takes effect when the IO
    /// thread next connects: semi-sync is negotiated at connect.
    pub fn set_semi_sync_replica(&self, enabled: bool) -> String {
        let name = match self.flavor {
            Flavor::Mariadb => "rpl_semi_sync_slave_enabled",
            Flavor::Mysql => "rpl_semi_sync_replica_enabled",
        };
        format!("SET GLOBAL {name} = {}", u8::from(enabled))
    }

    /// Starts only the IO (receiver) thread.
    pub fn start_replica_io(&self) -> String {
        format!("START {} IO_THREAD", self.replica_word())
    }

    /// A binlogged statement that changes no data, for a semi-sync master to send to
    /// its replicas with an acknowledgement request. A replica that turned semi-sync
    /// on after receiving the transactions commits wait for resumes past them and
    /// never acknowledges those (MariaDB reports its start as the binlog file's
    /// beginning); acknowledging this later event releases every commit before it.
    /// It resets per-account hourly limits (max_queries_per_hour and the like), the
    /// only effect, and needs RELOAD.
    pub fn acknowledged_no_op(&self) -> &'static str {
        "FLUSH USER_RESOURCES"
    }

    /// Has the server load its certificate, key and CA files again, without a restart.
    /// Kept out of the binary log: MariaDB logs `FLUSH` statements, and a replica
    /// would hold a transaction of its own (an errant GTID).
    pub fn reload_tls(&self) -> &'static str {
        match self.flavor {
            Flavor::Mariadb => "FLUSH LOCAL SSL",
            Flavor::Mysql => "ALTER INSTANCE RELOAD TLS",
        }
    }

    /// The CA file the server is configured with (empty or NULL when none).
    pub fn server_ca_query(&self) -> &'static str {
        "SELECT @@global.ssl_ca"
    }

    /// The end of validity of the certificate the server presents to new connections
    /// (OpenSSL's text, such as `Mar  1 12:00:00 2027 GMT`; empty without TLS).
    pub fn served_certificate_query(&self) -> &'static str {
        "SHOW GLOBAL STATUS LIKE 'Ssl\\_server\\_not\\_after'"
    }

    /// A query that waits until the instance has applied `position` or `timeout_secs`
    /// passed. Returns a single integer: see [`Dialect::wait_succeeded`].
    pub fn wait_for_position(&self, position: &str, timeout_secs: f64) -> String {
        match self.flavor {
            Flavor::Mariadb => format!(
                "SELECT MASTER_GTID_WAIT({}, {timeout_secs:.3})",
                quote(position)
            ),
            Flavor::Mysql => format!(
                "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {timeout_secs:.3})",
                quote(position)
            ),
        }
    }

    /// Reads the result of [`Dialect::wait_for_position`]: MariaDB answers 0 on
    /// success and -1 on timeout, MySQL 0 and 1.
    pub fn wait_succeeded(&self, result: Option<i64>) -> bool {
        result == Some(0)
    }

    /// Fills the instance from the variables row.
    pub fn apply_variables(&self, row: &Row, inst: &mut Instance) {
        inst.flavor = Some(self.flavor);
        inst.server_id = num(row, &["server_id"]).and_then(|v| u32::try_from(v).ok());
        inst.version = text(row, &["version"]);
        inst.hostname = text(row, &["hostname"]);
        inst.report_host = text(row, &["report_host"]).filter(|h| !h.is_empty());
        inst.server_uuid = text(row, &["server_uuid"]);
        inst.read_only = flag(row, &["read_only"]);
        inst.super_read_only = flag(row, &["super_read_only"]);
        inst.log_bin = flag(row, &["log_bin"]);
        inst.log_replica_updates = flag(row, &["log_replica_updates"]);
        inst.binlog_format = text(row, &["binlog_format"]);
        self.apply_gtids(row, inst);
        inst.gtid.mode = text(row, &["gtid_mode"]);
        inst.gtid.strict_mode = flag(row, &["gtid_strict_mode"]);
    }

    /// Fills the GTID variables from a row of [`Dialect::variables_query`] or
    /// [`Dialect::gtid_query`].
    pub fn apply_gtids(&self, row: &Row, inst: &mut Instance) {
        let g = &mut inst.gtid;
        let field = |name: &str| {
            text(row, &[name])
                .map(|v| v.replace('\n', ""))
                .unwrap_or_default()
        };
        g.executed = field("gtid_executed");
        g.purged = field("gtid_purged");
        g.binlog_pos = field("gtid_binlog_pos");
        g.current_pos = field("gtid_current_pos");
        if row.contains_key("gtid_slave_pos") {
            g.slave_pos = field("gtid_slave_pos");
        }
        g.binlog_state = field("gtid_binlog_state");
    }
}

fn text(row: &Row, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| row.get(*n).cloned().flatten())
}

fn num(row: &Row, names: &[&str]) -> Option<u64> {
    text(row, names).and_then(|v| v.trim().parse().ok())
}

fn flag(row: &Row, names: &[&str]) -> Option<bool> {
    text(row, names).map(|v| {
        matches!(
            v.trim().to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE"
        )
    })
}

/// Parses a `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS` row by column name, with both
/// naming schemes (Replica_/Source_ and Slave_/Master_). Missing columns and NULLs
/// become defaults, never a panic.
pub fn parse_replica_status(row: &Row) -> Replication {
    let t = |names: &[&str]| text(row, names).unwrap_or_default();
    let n = |names: &[&str]| num(row, names);
    let auto_position = n(&["Auto_Position"]).unwrap_or(0) == 1;
    let using_gtid = match text(row, &["Using_Gtid"]) {
        Some(v) => v,
        None if auto_position => "Auto_Position".to_string(),
        None => "No".to_string(),
    };
    Replication {
        source_host: t(&["Source_Host", "Master_Host"]),
        source_port: n(&["Source_Port", "Master_Port"])
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0),
        source_user: text(row, &["Source_User", "Master_User"]),
        io_running: ThreadState::parse(&t(&["Replica_IO_Running", "Slave_IO_Running"])),
        sql_running: ThreadState::parse(&t(&["Replica_SQL_Running", "Slave_SQL_Running"])),
        last_io_errno: n(&["Last_IO_Errno"])
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        last_io_error: t(&["Last_IO_Error"]),
        last_sql_errno: n(&["Last_SQL_Errno"])
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        last_sql_error: t(&["Last_SQL_Error"]),
        // Negative values (clock skew) are clamped to 0 by failing the u64 parse.
        seconds_behind: text(row, &["Seconds_Behind_Source", "Seconds_Behind_Master"])
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|v| v.max(0) as u64),
        sql_delay: n(&["SQL_Delay"]).unwrap_or(0),
        using_gtid,
        received_gtids: t(&["Gtid_IO_Pos", "Retrieved_Gtid_Set"]).replace('\n', ""),
        read_coordinates: coordinates(
            row,
            &["Source_Log_File", "Master_Log_File"],
            &["Read_Source_Log_Pos", "Read_Master_Log_Pos"],
        ),
        exec_coordinates: coordinates(
            row,
            &["Relay_Source_Log_File", "Relay_Master_Log_File"],
            &["Exec_Source_Log_Pos", "Exec_Master_Log_Pos"],
        ),
    }
}

fn coordinates(row: &Row, file: &[&str], pos: &[&str]) -> String {
    match (text(row, file), text(row, pos)) {
        (Some(f), Some(p)) if !f.is_empty() => format!("{f}:{p}"),
        _ => String::new(),
    }
}

/// Parses `SHOW MASTER STATUS` / `SHOW BINARY LOG STATUS` into `file:pos`.
pub fn parse_binlog_status(row: &Row) -> Option<String> {
    Some(coordinates(row, &["File"], &["Position"])).filter(|c| !c.is_empty())
}

/// Parses the name/value rows of the semi-sync variables and status, with MySQL's
/// `source`/`replica` and the older `master`/`slave` names. MariaDB has no
/// wait-for-count variable: it always waits for one acknowledgement.
pub fn parse_semi_sync(
    variables: &BTreeMap<String, String>,
    status: &BTreeMap<String, String>,
) -> SemiSync {
    let get = |map: &BTreeMap<String, String>, names: &[&str]| {
        names.iter().find_map(|n| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        })
    };
    let on = |v: Option<String>| {
        v.is_some_and(|v| matches!(v.to_ascii_uppercase().as_str(), "ON" | "1" | "YES"))
    };
    let count = |v: Option<String>| v.and_then(|v| v.parse::<u32>().ok());
    let master_enabled = on(get(
        variables,
        &[
            "rpl_semi_sync_source_enabled",
            "rpl_semi_sync_master_enabled",
        ],
    ));
    SemiSync {
        master_enabled,
        master_status: on(get(
            status,
            &["Rpl_semi_sync_source_status", "Rpl_semi_sync_master_status"],
        )),
        master_wait_for_replica_count: count(get(
            variables,
            &[
                "rpl_semi_sync_source_wait_for_replica_count",
                "rpl_semi_sync_master_wait_for_slave_count",
            ],
        ))
        .unwrap_or(u32::from(master_enabled)),
        master_clients: count(get(
            status,
            &[
                "Rpl_semi_sync_source_clients",
                "Rpl_semi_sync_master_clients",
            ],
        ))
        .unwrap_or(0),
        master_wait_sessions: count(get(
            status,
            &[
                "Rpl_semi_sync_source_wait_sessions",
                "Rpl_semi_sync_master_wait_sessions",
            ],
        ))
        .unwrap_or(0),
        master_timeout_ms: get(
            variables,
            &[
                "rpl_semi_sync_source_timeout",
                "rpl_semi_sync_master_timeout",
            ],
        )
        .and_then(|v| v.parse().ok()),
        replica_enabled: on(get(
            variables,
            &[
                "rpl_semi_sync_replica_enabled",
                "rpl_semi_sync_slave_enabled",
            ],
        )),
        replica_status: on(get(
            status,
            &["Rpl_semi_sync_replica_status", "Rpl_semi_sync_slave_status"],
        )),
    }
}

#[cfg(test)]
mod tests;
