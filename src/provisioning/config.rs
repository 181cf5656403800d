//! The server configuration korc imposes, and spec validation beyond the CRD schema.

use super::certificates::{CA_CERT, SERVER_CERT, SERVER_KEY};
use crate::api::{Durability, MySQLClusterSpec};

/// Server flavor, from the image name (MySQL 8.x and Percona Server images are MySQL;
/// everything else is taken for MariaDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MySQL 8.x.
    Mysql,
    /// MariaDB 10.6 or later.
    Mariadb,
}

impl Flavor {
    /// The flavor of an image reference.
    pub fn of_image(image: &str) -> Self {
        let repo = image.rsplit('/').next().unwrap_or(image);
        if repo.starts_with("mysql") || repo.starts_with("percona") {
            Self::Mysql
        } else {
            Self::Mariadb
        }
    }
}

/// Settings korc relies on; `mysqlConfig` may not override them.
const PROTECTED: &[&str] = &[
    "server_id",
    "log_bin",
    "log_slave_updates",
    "log_replica_updates",
    "binlog_format",
    "gtid_strict_mode",
    "gtid_mode",
    "enforce_gtid_consistency",
    "init_rpl_role",
    "read_only",
    "super_read_only",
    "relay_log",
    "relay_log_recovery",
    "report_host",
    "report_port",
    "bind_address",
    "port",
    "datadir",
    "socket",
    "skip_slave_start",
    "skip_replica_start",
    "slave_net_timeout",
    "replica_net_timeout",
    "sync_binlog",
    "innodb_flush_log_at_trx_commit",
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
];

/// Option prefixes the servers accept before a setting's name (`loose-read-only`,
/// `skip-log-bin`, …): a protected setting behind one is still protected.
const OPTION_PREFIXES: &[&str] = &["loose_", "skip_", "disable_", "enable_", "maximum_"];

/// The CRD's rule refusing protected settings under any spelling (the same
/// normalisation as [`validate`], in CEL).
pub fn protected_settings_rule() -> kube::core::Rule {
    let names = PROTECTED.join("|");
    let prefixes = OPTION_PREFIXES
        .iter()
        .map(|p| p.trim_end_matches('_'))
        .collect::<Vec<_>>()
        .join("|");
    kube::core::Rule::new(format!(
        "self.all(k, !k.lowerAscii().replace('-', '_').matches('^(({prefixes})_)*({names}|rpl_semi_sync.*)$'))"
    ))
    .message("spec.mysqlConfig: a setting korc manages (replication, read_only, durability: see spec.durability) cannot be set, under any spelling")
}

/// A setting's name as the server reads it: case, `-` or `_`, and option prefixes
/// aside.
fn normalize(key: &str) -> String {
    let mut name = key.trim().replace('-', "_").to_ascii_lowercase();
    while let Some(rest) = OPTION_PREFIXES.iter().find_map(|p| name.strip_prefix(p)) {
        name = rest.to_string();
    }
    name
}

/// Checks what the CRD schema cannot: protected settings under any spelling, and odd
/// setting names (the CRD's rules refuse those too).
pub fn validate(spec: &MySQLClusterSpec) -> Result<(), String> {
    for key in spec.mysql_config.keys() {
        let name = normalize(key);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "spec.mysqlConfig: {key:?} is not a server setting name"
            ));
        }
        if PROTECTED.contains(&name.as_str()) || name.starts_with("rpl_semi_sync") {
            return Err(format!(
                "spec.mysqlConfig: {key} sets {name}, which korc manages (durability: spec.durability)"
            ));
        }
    }
    if let Some(v) = spec
        .mysql_config
        .values()
        .find(|v| v.contains(['\n', '\r']))
    {
        return Err(format!("spec.mysqlConfig: value {v:?} spans lines"));
    }
    Ok(())
}

/// Where the servers find the cluster's certificate Secret.
pub const TLS_DIR: &str = "/etc/mysql/tls";

/// The path of a file of the certificate Secret inside a server's pod.
pub fn tls_path(key: &str) -> String {
    format!("{TLS_DIR}/{key}")
}

/// The `[mysqld]` section korc gives every instance: GTID replication with binary logs
/// on every instance, everything starting read-only (only korc makes the primary
/// writable), relay-log recovery off (it would discard received transactions a
/// failover needs), fast failure detection by replicas, and semi-sync as specified.
pub fn my_cnf(spec: &MySQLClusterSpec) -> String {
    let flavor = Flavor::of_image(&spec.image);
    let semi = spec.semi_sync.as_ref().filter(|s| s.enabled);
    // Without a timeout the primary never falls back to asynchronous replication.
    let timeout = semi.and_then(|s| s.timeout_ms).unwrap_or(4_294_967_295);
    let on = |b: bool| if b { "ON" } else { "OFF" };
    let mut cnf = String::from("# Managed by korc.\n[mysqld]\n");
    cnf += "log_bin=mysql-bin\nrelay_log=relay-bin\nread_only=ON\nrelay_log_recovery=OFF\n";
    cnf += "skip_name_resolve=ON\n";
    // Durable: a host crash loses no transaction a client or a replica was told of.
    cnf += match spec.durability {
        Durability::Strict => "sync_binlog=1\ninnodb_flush_log_at_trx_commit=1\n",
        Durability::Relaxed => "sync_binlog=0\ninnodb_flush_log_at_trx_commit=2\n",
    };
    // A hung primary (SIGSTOP, a frozen VM) keeps its connections open and sends no
    // heartbeat (one every net_timeout/2 s): its replicas give up on it after 2 s, and
    // only then can korc tell it is dead rather than unreachable from korc alone.
    match flavor {
        Flavor::Mariadb => {
            cnf += "binlog_format=ROW\nlog_slave_updates=ON\ngtid_strict_mode=ON\nslave_net_timeout=2\n";
            // korc's agent stages copies and keeps the data they replaced in the data
            // directory: neither is a database, nor part of a backup this instance
            // gives (mariadb-backup skips what the server ignores).
            for dir in crate::agent::restore::NOT_DATA {
                cnf += &format!("ignore_db_dirs={dir}\n");
            }
            // Every instance starts read-only with the source side off (korc turns it on
            // on the primary only: a replica's applier would wait for acknowledgements
            // nobody sends) and the replica side on. Starting in the replica role makes a
            // crashed primary truncate the binlog tail no replica acknowledged instead of
            // committing it (MDEV-21117; since MDEV-33465 that takes init_rpl_role=SLAVE):
            // korc fails it over and it rejoins as a replica without errant transactions.
            cnf += &format!(
                "rpl_semi_sync_master_enabled=OFF\nrpl_semi_sync_slave_enabled={m}\n\
                 rpl_semi_sync_master_timeout={timeout}\nrpl_semi_sync_master_wait_point=AFTER_SYNC\n",
                m = on(semi.is_some())
            );
            if semi.is_some() {
                cnf += "init_rpl_role=SLAVE\n";
            }
        }
        Flavor::Mysql => {
            // ROW is MySQL's default and binlog_format is deprecated since 8.0.34. super_read_only is not set here: the official image creates its
            // accounts with a temporary server reading this file, and super_read_only
            // would refuse them; korc's init SQL persists it for every later start
            // (init_sql).
            cnf += "log_replica_updates=ON\ngtid_mode=ON\nenforce_gtid_consistency=ON\n";
            cnf += "replica_net_timeout=2\n";
            // The clone plugin copies a healthy instance's data into a new or broken one.
            cnf += "plugin-load-add=mysql_clone.so\n";
            if semi.is_some() {
                // The plugins' variables are `loose-`: `mysqld --initialize` loads no
                // plugins and would refuse them as unknown.
                cnf += &format!(
                    "plugin-load-add=semisync_source.so\nplugin-load-add=semisync_replica.so\n\
                     loose-rpl_semi_sync_source_enabled=OFF\nloose-rpl_semi_sync_replica_enabled=ON\n\
                     loose-rpl_semi_sync_source_timeout={timeout}\nloose-rpl_semi_sync_source_wait_point=AFTER_SYNC\n"
                );
            }
        }
    }
    if spec.tls.enabled {
        // The mounted Secret's files: a renewal replaces them and korc has the server
        // reload them (FLUSH LOCAL SSL, ALTER INSTANCE RELOAD TLS), without a restart.
        cnf += &format!(
            "ssl_ca={}\nssl_cert={}\nssl_key={}\n",
            tls_path(CA_CERT),
            tls_path(SERVER_CERT),
            tls_path(SERVER_KEY)
        );
    }
    for (k, v) in &spec.mysql_config {
        cnf += &format!("{k}={v}\n");
    }
    cnf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SemiSyncSpec;

    fn spec(image: &str) -> MySQLClusterSpec {
        serde_json::from_value(serde_json::json!({"replicas": 3, "image": image})).unwrap()
    }

    #[test]
    fn flavor_from_image() {
        assert_eq!(Flavor::of_image("mariadb:10.11"), Flavor::Mariadb);
        assert_eq!(
            Flavor::of_image("docker.io/library/mariadb:11.4"),
            Flavor::Mariadb
        );
        assert_eq!(Flavor::of_image("mysql:8.4"), Flavor::Mysql);
        assert_eq!(
            Flavor::of_image("percona/percona-server:8.0"),
            Flavor::Mysql
        );
    }

    #[test]
    fn mariadb_config_starts_read_only_with_gtid_and_no_relay_log_recovery() {
        let mut s = spec("mariadb:10.11");
        s.mysql_config
            .insert("max_connections".into(), "500".into());
        let cnf = my_cnf(&s);
        for line in [
            "read_only=ON",
            "log_slave_updates=ON",
            "gtid_strict_mode=ON",
            "relay_log_recovery=OFF",
            "max_connections=500",
            "rpl_semi_sync_master_enabled=OFF",
        ] {
            assert!(cnf.lines().any(|l| l == line), "{line} missing:\n{cnf}");
        }
    }

    #[test]
    fn tls_points_the_servers_at_the_mounted_certificate() {
        for image in ["mariadb:10.11", "mysql:8.4"] {
            let mut s = spec(image);
            let cnf = my_cnf(&s);
            for line in [
                "ssl_ca=/etc/mysql/tls/ca.crt",
                "ssl_cert=/etc/mysql/tls/tls.crt",
                "ssl_key=/etc/mysql/tls/tls.key",
            ] {
                assert!(cnf.lines().any(|l| l == line), "{line} missing:\n{cnf}");
            }
            s.tls.enabled = false;
            assert!(!my_cnf(&s).contains("ssl_"), "{image}");
        }
        let mut s = spec("mariadb:10.11");
        s.mysql_config.insert("ssl-key".into(), "/x".into());
        assert!(validate(&s).is_err(), "the key path is korc's");
    }

    #[test]
    fn semi_sync_without_timeout_never_falls_back() {
        let mut s = spec("mariadb:10.11");
        s.semi_sync = Some(SemiSyncSpec {
            enabled: true,
            timeout_ms: None,
        });
        let cnf = my_cnf(&s);
        assert!(
            cnf.contains("rpl_semi_sync_master_enabled=OFF"),
            "korc enables it on the primary"
        );
        assert!(cnf.contains("rpl_semi_sync_slave_enabled=ON"));
        assert!(cnf.contains("init_rpl_role=SLAVE"));
        assert!(cnf.contains("rpl_semi_sync_master_timeout=4294967295"));
    }

    #[test]
    fn mysql_config_uses_current_names_and_loads_semi_sync_loosely() {
        let mut m = spec("mysql:8.4");
        m.semi_sync = Some(SemiSyncSpec {
            enabled: true,
            timeout_ms: Some(5000),
        });
        let cnf = my_cnf(&m);
        for line in [
            "read_only=ON",
            "gtid_mode=ON",
            "enforce_gtid_consistency=ON",
            "log_replica_updates=ON",
            "replica_net_timeout=2",
            "plugin-load-add=semisync_source.so",
            "plugin-load-add=semisync_replica.so",
            "loose-rpl_semi_sync_source_enabled=OFF",
            "loose-rpl_semi_sync_replica_enabled=ON",
            "loose-rpl_semi_sync_source_timeout=5000",
            "loose-rpl_semi_sync_source_wait_point=AFTER_SYNC",
        ] {
            assert!(cnf.lines().any(|l| l == line), "{line} missing:\n{cnf}");
        }
        // Deprecated or MariaDB-only names, and what would refuse the image's
        // first-start accounts.
        for name in [
            "binlog_format",
            "super_read_only",
            "log_slave_updates",
            "slave_net_timeout",
            "gtid_strict_mode",
            "init_rpl_role",
            "rpl_semi_sync_master",
            "rpl_semi_sync_slave",
        ] {
            assert!(!cnf.contains(name), "{name} in:\n{cnf}");
        }
        let plain = my_cnf(&spec("mysql:8.4"));
        assert!(!plain.contains("semisync") && !plain.contains("rpl_semi_sync"));
        assert!(plain.contains("plugin-load-add=mysql_clone.so"), "{plain}");
    }

    #[test]
    fn protected_and_malformed_settings_are_refused() {
        for (k, v) in [
            ("read-only", "0"),
            ("server_id", "7"),
            ("rpl_semi_sync_master_timeout", "1"),
            ("bad key", "1"),
            ("x", "a\nb"),
            ("x", "a\rb"),
            ("loose_read_only", "OFF"),
            ("loose-gtid-strict-mode", "OFF"),
            ("LOOSE-GTID_MODE", "OFF"),
            ("skip-log-bin", ""),
            ("disable-log-slave-updates", ""),
            ("loose-skip-relay-log-recovery", ""),
            ("sync-binlog", "0"),
            ("innodb_flush_log_at_trx_commit", "2"),
            ("loose_rpl_semi_sync_slave_enabled", "OFF"),
            ("Slave-Net-Timeout", "60"),
        ] {
            let mut s = spec("mariadb:10.11");
            s.mysql_config.insert(k.into(), v.into());
            assert!(
                validate(&s).unwrap_err().contains("spec.mysqlConfig"),
                "{k}"
            );
        }
        assert!(validate(&spec("mariadb:10.11")).is_ok());
        for fine in [
            "max_connections",
            "skip-name-resolve",
            "loose-innodb-buffer-pool-size",
        ] {
            let mut s = spec("mariadb:10.11");
            s.mysql_config.insert(fine.into(), "1".into());
            assert!(validate(&s).is_ok(), "{fine}");
        }
    }

    #[test]
    fn every_instance_syncs_its_binary_log_and_redo_log_unless_relaxed() {
        for image in ["mariadb:10.11", "mysql:8.4"] {
            let strict = my_cnf(&spec(image));
            for line in ["sync_binlog=1", "innodb_flush_log_at_trx_commit=1"] {
                assert!(strict.lines().any(|l| l == line), "{image}: {line}");
            }
            let mut s = spec(image);
            s.durability = Durability::Relaxed;
            let relaxed = my_cnf(&s);
            assert!(relaxed.lines().any(|l| l == "sync_binlog=0"), "{relaxed}");
        }
    }
}
