//! Statements and parsing for MySQL 8.0, MySQL 8.4 and MariaDB, on rows recorded from
//! those servers' `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS` output.

use super::*;
use crate::topology::instance::InstanceKey;

fn row(pairs: &[(&str, Option<&str>)]) -> Row {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

const MYSQL84: Dialect = Dialect {
    flavor: Flavor::Mysql,
    version: (8, 4, 3),
};
const MYSQL80: Dialect = Dialect {
    flavor: Flavor::Mysql,
    version: (8, 0, 36),
};
const MYSQL8021: Dialect = Dialect {
    flavor: Flavor::Mysql,
    version: (8, 0, 21),
};
const MARIADB: Dialect = Dialect {
    flavor: Flavor::Mariadb,
    version: (10, 11, 19),
};

/// `SHOW REPLICA STATUS` of a MySQL 8.4.3 replica whose source was just killed.
fn mysql84_replica_row() -> Row {
    row(&[
        (
            "Replica_IO_State",
            Some("Reconnecting after a failed source event read"),
        ),
        ("Source_Host", Some("db-0.db.default.svc")),
        ("Source_User", Some("korc_repl")),
        ("Source_Port", Some("3306")),
        ("Connect_Retry", Some("1")),
        ("Source_Log_File", Some("binlog.000003")),
        ("Read_Source_Log_Pos", Some("4711")),
        ("Relay_Log_File", Some("relay.000002")),
        ("Relay_Log_Pos", Some("1200")),
        ("Relay_Source_Log_File", Some("binlog.000003")),
        ("Replica_IO_Running", Some("Connecting")),
        ("Replica_SQL_Running", Some("Yes")),
        ("Exec_Source_Log_Pos", Some("4711")),
        ("Seconds_Behind_Source", None),
        ("Last_IO_Errno", Some("2003")),
        (
            "Last_IO_Error",
            Some(
                "Error reconnecting to source 'korc_repl@db-0.db.default.svc:3306'. This was attempt 1/86400, with a delay of 1 seconds between attempts. Message: Can't connect to MySQL server on 'db-0.db.default.svc:3306' (111)",
            ),
        ),
        ("Last_SQL_Errno", Some("0")),
        ("Last_SQL_Error", Some("")),
        ("Source_UUID", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562")),
        ("SQL_Delay", Some("0")),
        (
            "Retrieved_Gtid_Set",
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42"),
        ),
        (
            "Executed_Gtid_Set",
            Some(
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42,\n4f22ab58-82db-22f2-8f44-d91bb8530673:1-3",
            ),
        ),
        ("Auto_Position", Some("1")),
    ])
}

/// `SHOW SLAVE STATUS` of a MySQL 8.0.21 replica (old column names).
fn mysql80_slave_row() -> Row {
    row(&[
        ("Master_Host", Some("10.1.2.3")),
        ("Master_User", Some("repl")),
        ("Master_Port", Some("3307")),
        ("Master_Log_File", Some("mysql-bin.000010")),
        ("Read_Master_Log_Pos", Some("900")),
        ("Relay_Master_Log_File", Some("mysql-bin.000010")),
        ("Exec_Master_Log_Pos", Some("850")),
        ("Slave_IO_Running", Some("Yes")),
        ("Slave_SQL_Running", Some("Yes")),
        ("Seconds_Behind_Master", Some("-3")),
        ("Last_IO_Errno", Some("0")),
        ("Last_SQL_Errno", Some("0")),
        ("SQL_Delay", Some("60")),
        ("Retrieved_Gtid_Set", Some("")),
        ("Auto_Position", Some("0")),
    ])
}

/// `SHOW SLAVE STATUS` of a MariaDB 10.11 replica (54 columns; the ones korc reads).
fn mariadb_slave_row() -> Row {
    row(&[
        ("Slave_IO_State", Some("Waiting for master to send event")),
        ("Master_Host", Some("127.0.10.1")),
        ("Master_User", Some("repl")),
        ("Master_Port", Some("3306")),
        ("Master_Log_File", Some("mysql-bin.000002")),
        ("Read_Master_Log_Pos", Some("3301")),
        ("Relay_Master_Log_File", Some("mysql-bin.000002")),
        ("Exec_Master_Log_Pos", Some("3301")),
        ("Slave_IO_Running", Some("Yes")),
        ("Slave_SQL_Running", Some("No")),
        ("Seconds_Behind_Master", None),
        ("Last_IO_Errno", Some("0")),
        ("Last_IO_Error", Some("")),
        ("Last_SQL_Errno", Some("1062")),
        (
            "Last_SQL_Error",
            Some("Error 'Duplicate entry '1' for key 'PRIMARY'' on query"),
        ),
        ("Using_Gtid", Some("Slave_Pos")),
        ("Gtid_IO_Pos", Some("0-1-12")),
        ("SQL_Delay", Some("0")),
    ])
}

#[test]
fn mysql84_replica_status() {
    let r = parse_replica_status(&mysql84_replica_row());
    assert_eq!(
        r.source(),
        Some(InstanceKey::new("db-0.db.default.svc", 3306))
    );
    assert_eq!(r.source_user.as_deref(), Some("korc_repl"));
    assert_eq!(r.io_running, ThreadState::Connecting);
    assert_eq!(r.sql_running, ThreadState::Yes);
    assert!(r.is_failing_to_connect());
    assert_eq!(r.seconds_behind, None);
    assert_eq!(r.using_gtid, "Auto_Position");
    assert_eq!(
        r.received_gtids,
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42"
    );
    assert_eq!(r.read_coordinates, "binlog.000003:4711");
    assert!(r.relay_log_applied());
}

#[test]
fn mysql80_slave_status_with_old_names() {
    let r = parse_replica_status(&mysql80_slave_row());
    assert_eq!(r.source(), Some(InstanceKey::new("10.1.2.3", 3307)));
    assert!(r.is_replicating());
    assert_eq!(r.seconds_behind, Some(0), "negative lag is clamped");
    assert_eq!(r.sql_delay, 60);
    assert_eq!(r.using_gtid, "No");
    assert!(!r.relay_log_applied());
}

#[test]
fn mariadb_slave_status() {
    let r = parse_replica_status(&mariadb_slave_row());
    assert_eq!(r.sql_running, ThreadState::No);
    assert_eq!(r.last_sql_errno, 1062);
    assert_eq!(r.using_gtid, "Slave_Pos");
    assert_eq!(r.received_gtids, "0-1-12");
}

#[test]
fn missing_columns_and_nulls_never_panic() {
    let r = parse_replica_status(&row(&[
        ("Master_Port", Some("x")),
        ("Slave_IO_Running", None),
    ]));
    assert_eq!(r.source(), None);
    assert_eq!(r.io_running, ThreadState::No);
    assert_eq!(parse_binlog_status(&Row::new()), None);
}

#[test]
fn mysql_variables_row() {
    let mut inst = Instance::unknown(InstanceKey::new("db-1", 3306));
    MYSQL84.apply_variables(
        &row(&[
            ("server_id", Some("101")),
            ("version", Some("8.4.3")),
            ("hostname", Some("db-1")),
            ("report_host", None),
            ("server_uuid", Some("4f22ab58-82db-22f2-8f44-d91bb8530673")),
            ("read_only", Some("1")),
            ("super_read_only", Some("1")),
            ("log_bin", Some("1")),
            ("log_replica_updates", Some("1")),
            ("binlog_format", Some("ROW")),
            ("gtid_mode", Some("ON")),
            ("gtid_executed", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42,\n4f22ab58-82db-22f2-8f44-d91bb8530673:1-3")),
            ("gtid_purged", Some("")),
        ]),
        &mut inst,
    );
    assert_eq!(inst.flavor, Some(Flavor::Mysql));
    assert_eq!(inst.server_id, Some(101));
    assert_eq!(inst.super_read_only, Some(true));
    assert!(!inst.is_writable());
    assert!(inst.is_logging_replica_updates());
    assert_eq!(inst.gtid.mode.as_deref(), Some("ON"));
    assert_eq!(
        inst.executed_position().unwrap().to_string(),
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42,4f22ab58-82db-22f2-8f44-d91bb8530673:1-3"
    );
}

#[test]
fn variables_queries_per_version() {
    assert!(
        MYSQL84
            .variables_query()
            .contains("@@global.log_replica_updates")
    );
    assert!(
        MYSQL8021
            .variables_query()
            .contains("@@global.log_slave_updates")
    );
    assert!(MYSQL84.variables_query().contains("super_read_only"));
    let maria = MARIADB.variables_query();
    assert!(maria.contains("gtid_binlog_state") && !maria.contains("super_read_only"));
    // MariaDB 10.11 misreports booleans in multi-column selects unless cast.
    assert!(maria.contains("CAST(@@global.read_only AS SIGNED)"));
}

#[test]
fn statements_per_version() {
    assert_eq!(MYSQL84.replica_status_query(), "SHOW REPLICA STATUS");
    assert_eq!(MYSQL8021.replica_status_query(), "SHOW SLAVE STATUS");
    assert_eq!(MARIADB.replica_status_query(), "SHOW SLAVE STATUS");
    assert_eq!(MYSQL84.binlog_status_query(), "SHOW BINARY LOG STATUS");
    assert_eq!(MYSQL80.binlog_status_query(), "SHOW MASTER STATUS");
    assert_eq!(MYSQL84.stop_replica_io(), "STOP REPLICA IO_THREAD");
    assert_eq!(MARIADB.stop_replica(), "STOP SLAVE");
    assert_eq!(MYSQL84.reset_replica_all(), "RESET REPLICA ALL");
    assert_eq!(MARIADB.reset_replica_all(), "RESET SLAVE ALL");
    assert_eq!(MYSQL8021.start_replica(), "START SLAVE");
    assert_eq!(MYSQL84.start_replica_io(), "START REPLICA IO_THREAD");
    assert_eq!(MARIADB.start_replica_io(), "START SLAVE IO_THREAD");
    assert_eq!(
        MARIADB.set_semi_sync_replica(true),
        "SET GLOBAL rpl_semi_sync_slave_enabled = 1"
    );
    assert_eq!(
        MYSQL84.set_semi_sync_replica(false),
        "SET GLOBAL rpl_semi_sync_replica_enabled = 0"
    );
}

#[test]
fn change_source_statements() {
    let creds = ReplicationCredentials {
        user: "repl".into(),
        password: "p'w".into(),
        source_ca: None,
    };
    assert_eq!(
        MYSQL84.change_source("db-1.db", 3306, Some(&creds)),
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.db', SOURCE_PORT=3306, SOURCE_USER='repl', \
         SOURCE_PASSWORD='p''w', GET_SOURCE_PUBLIC_KEY=1, SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1"
    );
    assert_eq!(
        MYSQL80.change_source("db-1.db", 3306, None),
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.db', SOURCE_PORT=3306, SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1"
    );
    assert_eq!(
        MYSQL8021.change_source("h", 1, None),
        "CHANGE MASTER TO MASTER_HOST='h', MASTER_PORT=1, MASTER_AUTO_POSITION=1, MASTER_CONNECT_RETRY=1"
    );
    assert_eq!(
        MARIADB.change_source("127.0.10.2", 3306, None),
        "CHANGE MASTER TO MASTER_HOST='127.0.10.2', MASTER_PORT=3306, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
    );
    let tls = ReplicationCredentials {
        source_ca: Some(SourceCa::File("/etc/mysql/tls/ca.crt".into())),
        ..creds.clone()
    };
    assert_eq!(
        MYSQL84.change_source("db-1.db", 3306, Some(&tls)),
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.db', SOURCE_PORT=3306, SOURCE_USER='repl', \
         SOURCE_PASSWORD='p''w', SOURCE_SSL=1, SOURCE_SSL_CA='/etc/mysql/tls/ca.crt', \
         SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1",
        "TLS, so no public key"
    );
    assert_eq!(
        MYSQL8021.change_source("h", 1, Some(&tls)),
        "CHANGE MASTER TO MASTER_HOST='h', MASTER_PORT=1, MASTER_USER='repl', MASTER_PASSWORD='p''w', \
         MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/tls/ca.crt', MASTER_AUTO_POSITION=1, MASTER_CONNECT_RETRY=1"
    );
    assert_eq!(
        MARIADB.change_source("127.0.10.2", 3306, Some(&tls)),
        "CHANGE MASTER TO MASTER_HOST='127.0.10.2', MASTER_PORT=3306, MASTER_USER='repl', \
         MASTER_PASSWORD='p''w', MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/tls/ca.crt', \
         MASTER_SSL_VERIFY_SERVER_CERT=0, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
    );
    let unresolved = ReplicationCredentials {
        source_ca: Some(SourceCa::ServerCa),
        ..creds.clone()
    };
    assert_eq!(
        MARIADB.change_source("h", 1, Some(&unresolved)),
        "CHANGE MASTER TO MASTER_HOST='h', MASTER_PORT=1, MASTER_USER='repl', MASTER_PASSWORD='p''w', \
         MASTER_SSL=1, MASTER_SSL_VERIFY_SERVER_CERT=0, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
        "TLS still, were it not resolved to the server's CA file first"
    );
    assert_eq!(
        MARIADB.change_source("127.0.10.2", 3306, Some(&creds)),
        "CHANGE MASTER TO MASTER_HOST='127.0.10.2', MASTER_PORT=3306, MASTER_USER='repl', \
         MASTER_PASSWORD='p''w', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
    );
    assert_eq!(
        MYSQL84.detach_source("db-0", 3306),
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='//db-0', SOURCE_PORT=3306"
    );
}

#[test]
fn read_only_and_waits() {
    assert_eq!(
        MYSQL84.set_read_only(true),
        vec!["SET GLOBAL super_read_only = 1"]
    );
    assert_eq!(
        MYSQL84.set_read_only(false),
        vec!["SET GLOBAL super_read_only = 0", "SET GLOBAL read_only = 0"]
    );
    assert_eq!(
        MARIADB.set_read_only(false),
        vec!["SET GLOBAL read_only = 0"]
    );
    assert_eq!(
        MARIADB.wait_for_position("0-1-12", 2.5),
        "SELECT MASTER_GTID_WAIT('0-1-12', 2.500)"
    );
    assert_eq!(
        MYSQL84.wait_for_position("uuid:1-3", 1.0),
        "SELECT WAIT_FOR_EXECUTED_GTID_SET('uuid:1-3', 1.000)"
    );
    assert!(MARIADB.wait_succeeded(Some(0)) && !MARIADB.wait_succeeded(Some(-1)));
    assert!(!MYSQL84.wait_succeeded(Some(1)) && !MYSQL84.wait_succeeded(None));
}

#[test]
fn flavor_from_handshake_version() {
    assert_eq!(Dialect::from_version((10, 11, 19)).flavor, Flavor::Mariadb);
    assert_eq!(Dialect::from_version((11, 4, 2)).flavor, Flavor::Mariadb);
    assert_eq!(Dialect::from_version((8, 4, 3)).flavor, Flavor::Mysql);
    assert_eq!(Dialect::from_version((9, 1, 0)).flavor, Flavor::Mysql);
}

#[test]
fn semi_sync_names_of_both_generations() {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mysql = parse_semi_sync(
        &map(&[
            ("rpl_semi_sync_source_enabled", "ON"),
            ("rpl_semi_sync_source_wait_for_replica_count", "2"),
        ]),
        &map(&[
            ("Rpl_semi_sync_source_status", "ON"),
            ("Rpl_semi_sync_source_clients", "1"),
        ]),
    );
    assert!(mysql.master_enabled && mysql.master_status);
    assert_eq!(
        (mysql.master_wait_for_replica_count, mysql.master_clients),
        (2, 1)
    );
    let maria = parse_semi_sync(
        &map(&[
            ("rpl_semi_sync_master_enabled", "ON"),
            ("rpl_semi_sync_master_timeout", "4294967295"),
        ]),
        &map(&[
            ("Rpl_semi_sync_master_status", "ON"),
            ("Rpl_semi_sync_master_clients", "0"),
            ("Rpl_semi_sync_master_wait_sessions", "1"),
        ]),
    );
    assert_eq!(
        maria.master_wait_for_replica_count, 1,
        "MariaDB waits for one ack"
    );
    assert_eq!(maria.master_wait_sessions, 1);
    assert_eq!(maria.master_timeout_ms, Some(4294967295));
    assert!(!parse_semi_sync(&BTreeMap::new(), &BTreeMap::new()).master_enabled);
}

#[test]
fn quoting() {
    assert_eq!(quote(r"a'b\c"), r"'a''b\\c'");
}

#[test]
fn tls_reload_statements() {
    assert_eq!(MARIADB.reload_tls(), "FLUSH LOCAL SSL");
    assert_eq!(MYSQL84.reload_tls(), "ALTER INSTANCE RELOAD TLS");
    assert_eq!(MYSQL80.reload_tls(), "ALTER INSTANCE RELOAD TLS");
}
