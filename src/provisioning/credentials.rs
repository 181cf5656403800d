//! Passwords and the accounts korc creates on every instance.

use super::config::Flavor;
use crate::topology::dialect::quote;
use std::collections::BTreeMap;

/// The passwords of a cluster, as stored in its credentials Secret. `Debug` shows no
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Passwords {
    /// `root`.
    pub root: String,
    /// `korc`: the operator's account.
    pub operator: String,
    /// `korc_repl`: replication.
    pub replication: String,
    /// `korc_monitor`: read-only monitoring.
    pub monitor: String,
}

/// Keys of the credentials Secret.
const KEYS: [&str; 4] = [
    "root-password",
    "operator-password",
    "replication-password",
    "monitor-password",
];

/// User name of the operator's account.
pub const OPERATOR_USER: &str = "korc";
/// User name of the replication account.
pub const REPLICATION_USER: &str = "korc_repl";
/// User name of the monitoring account.
pub const MONITOR_USER: &str = "korc_monitor";

/// An account korc creates on every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// `root@localhost`.
    Root,
    /// `korc`: the operator's.
    Operator,
    /// `korc_repl`: replication.
    Replication,
    /// `korc_monitor`: monitoring.
    Monitor,
}

impl Account {
    /// Every account, in the order of the Secret's keys.
    pub const ALL: [Account; 4] = [
        Account::Root,
        Account::Operator,
        Account::Replication,
        Account::Monitor,
    ];

    /// `'user'@'host'`.
    pub fn name(self) -> String {
        match self {
            Self::Root => "'root'@'localhost'".into(),
            Self::Operator => format!("'{OPERATOR_USER}'@'%'"),
            Self::Replication => format!("'{REPLICATION_USER}'@'%'"),
            Self::Monitor => format!("'{MONITOR_USER}'@'%'"),
        }
    }

    /// Whether korc's account may change this account's password on `flavor`: MySQL's
    /// root holds SYSTEM_USER, which only an account holding it may alter.
    pub fn rotatable(self, flavor: Flavor) -> bool {
        !(self == Self::Root && flavor == Flavor::Mysql)
    }
}

/// The statement that sets `account`'s password, and how it is named in errors and
/// logs (without the password). Run on the primary, it reaches every replica through
/// the binary log.
pub fn set_password(account: Account, password: &str) -> (String, String) {
    let name = account.name();
    (
        format!("ALTER USER {name} IDENTIFIED BY {}", quote(password)),
        format!("ALTER USER {name} IDENTIFIED BY <password>"),
    )
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passwords { .. }")
    }
}

impl Passwords {
    /// Fresh random passwords.
    pub fn generate() -> Self {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        Self {
            root: random(),
            operator: random(),
            replication: random(),
            monitor: random(),
        }
    }

    /// The password of `account`.
    pub fn of(&self, account: Account) -> &str {
        match account {
            Account::Root => &self.root,
            Account::Operator => &self.operator,
            Account::Replication => &self.replication,
            Account::Monitor => &self.monitor,
        }
    }

    /// The accounts whose password differs between `self` and `other`.
    pub fn changed(&self, other: &Passwords) -> Vec<Account> {
        Account::ALL
            .into_iter()
            .filter(|a| self.of(*a) != other.of(*a))
            .collect()
    }

    /// Reads the Secret's decoded data; names the first missing key.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, String> {
        let get = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(v).trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the credentials Secret has no {k}"))
        };
        Ok(Self {
            root: get(KEYS[0])?,
            operator: get(KEYS[1])?,
            replication: get(KEYS[2])?,
            monitor: get(KEYS[3])?,
        })
    }

    /// The Secret's data.
    pub fn to_secret_data(&self) -> BTreeMap<String, String> {
        KEYS.iter()
            .zip([&self.root, &self.operator, &self.replication, &self.monitor])
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
}

/// SQL run once on every new instance (the image's `/docker-entrypoint-initdb.d`):
/// korc's accounts with least privilege, kept out of the binary log so no instance
/// holds transactions of its own.
pub fn init_sql(flavor: Flavor, p: &Passwords) -> String {
    let mut sql = String::from("SET SESSION sql_log_bin = 0;\n");
    let user = |name: &str, pw: &str| {
        format!(
            "CREATE USER IF NOT EXISTS '{name}'@'%' IDENTIFIED BY {};\n",
            quote(pw)
        )
    };
    sql += &user(OPERATOR_USER, &p.operator);
    sql += &user(REPLICATION_USER, &p.replication);
    sql += &user(MONITOR_USER, &p.monitor);
    match flavor {
        Flavor::Mariadb => {
            // No SUPER and no SELECT: read-only takes READ_ONLY ADMIN, the semi-sync
            // source REPLICATION MASTER ADMIN, repointing and stopping replicas (and
            // their semi-sync side) REPLICATION SLAVE ADMIN, replica and binlog status
            // SLAVE MONITOR and BINLOG MONITOR, killing the old primary's clients
            // CONNECTION ADMIN, the acknowledged no-op RELOAD, the process list PROCESS,
            // changing the accounts' passwords (rotation) CREATE USER. The replication
            // account is also the donor's side of a copy (mariadb-backup: BACKUP STAGE
            // and BACKUP LOCK take RELOAD, its checks PROCESS, the copy's binlog
            // position BINLOG MONITOR); none reads a table, and it already receives
            // every row change.
            sql += &format!(
                "GRANT CREATE USER, RELOAD, PROCESS, BINLOG MONITOR, REPLICATION MASTER ADMIN, REPLICATION SLAVE ADMIN, \
                 SLAVE MONITOR, READ_ONLY ADMIN, CONNECTION ADMIN ON *.* TO '{OPERATOR_USER}'@'%';\n\
                 GRANT REPLICATION SLAVE, SLAVE MONITOR, RELOAD, PROCESS, BINLOG MONITOR ON *.* TO '{REPLICATION_USER}'@'%';\n\
                 GRANT PROCESS, SLAVE MONITOR, BINLOG MONITOR ON *.* TO '{MONITOR_USER}'@'%';\n"
            );
        }
        Flavor::Mysql => {
            // No SUPER: setting read-only and semi-sync takes SYSTEM_VARIABLES_ADMIN,
            // repointing and stopping replicas REPLICATION_SLAVE_ADMIN, killing the
            // old primary's clients CONNECTION_ADMIN (which also lets korc in when
            // max_connections is reached), reading replica and binlog status
            // REPLICATION CLIENT, the acknowledged no-op (FLUSH USER_RESOURCES) RELOAD,
            // the process list PROCESS, changing korc's accounts' passwords (rotation)
            // CREATE USER, copying a donor's data over a broken instance (clone)
            // CLONE_ADMIN here and BACKUP_ADMIN for the replication account, the donor's
            // side (it already receives every row change), and following the copy
            // SELECT on the two tables where the recipient reports it.
            sql += &format!(
                "GRANT CREATE USER, RELOAD, PROCESS, REPLICATION CLIENT ON *.* TO '{OPERATOR_USER}'@'%';\n\
                 GRANT SYSTEM_VARIABLES_ADMIN, REPLICATION_SLAVE_ADMIN, CONNECTION_ADMIN, CLONE_ADMIN ON *.* TO '{OPERATOR_USER}'@'%';\n\
                 GRANT SELECT ON performance_schema.clone_status TO '{OPERATOR_USER}'@'%';\n\
                 GRANT SELECT ON performance_schema.clone_progress TO '{OPERATOR_USER}'@'%';\n\
                 GRANT REPLICATION SLAVE, BACKUP_ADMIN ON *.* TO '{REPLICATION_USER}'@'%';\n\
                 GRANT PROCESS, REPLICATION CLIENT ON *.* TO '{MONITOR_USER}'@'%';\n"
            );
            // Last, once every account exists: every later start of the server is
            // super-read-only until korc promotes it (my_cnf leaves it out, as it would
            // refuse the image's first-start accounts). PERSIST_ONLY leaves this
            // temporary server writable for the image's remaining init scripts.
            sql += "SET PERSIST_ONLY super_read_only = ON;\n";
        }
    }
    sql
}

/// SQL run after [`init_sql`] on every new instance of a cluster with TLS: korc's
/// account and the replication account refuse connections without it.
pub fn require_tls_sql() -> String {
    [OPERATOR_USER, REPLICATION_USER]
        .iter()
        .map(|user| format!("ALTER USER '{user}'@'%' REQUIRE SSL;\n"))
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn no_password_shows_in_debug_output() {
        use crate::topology::dialect::ReplicationCredentials;
        use crate::topology::session::Credentials;
        let p = Passwords::generate();
        let shown = format!(
            "{p:?} {:?} {:?}",
            Credentials {
                user: "korc".into(),
                password: p.operator.clone(),
            },
            ReplicationCredentials {
                user: "korc_repl".into(),
                password: p.replication.clone(),
                source_ca: None,
            }
        );
        for secret in [&p.root, &p.operator, &p.replication, &p.monitor] {
            assert!(!shown.contains(secret.as_str()), "{shown}");
        }
        assert!(shown.contains("korc_repl"), "{shown}");
    }

    use super::*;

    #[test]
    fn secret_round_trip_and_missing_keys() {
        let p = Passwords::generate();
        let data: BTreeMap<String, Vec<u8>> = p
            .to_secret_data()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        assert_eq!(Passwords::from_secret_data(&data).unwrap(), p);
        let mut partial = data.clone();
        partial.remove("replication-password");
        assert_eq!(
            Passwords::from_secret_data(&partial).unwrap_err(),
            "the credentials Secret has no replication-password"
        );
    }

    #[test]
    fn init_sql_stays_out_of_the_binlog() {
        let p = Passwords {
            root: "r".into(),
            operator: "o'x".into(),
            replication: "p".into(),
            monitor: "m".into(),
        };
        let sql = init_sql(Flavor::Mariadb, &p);
        assert!(sql.starts_with("SET SESSION sql_log_bin = 0;"));
        assert!(sql.contains("IDENTIFIED BY 'o''x'"));
    }

    /// The privileges granted to `user` by `sql`, one word list.
    /// The global privileges `user` is granted.
    fn granted(sql: &str, user: &str) -> Vec<String> {
        sql.lines()
            .filter(|l| l.starts_with("GRANT") && l.ends_with(&format!(" ON *.* TO '{user}'@'%';")))
            .flat_map(|l| {
                let privileges = &l["GRANT ".len()..l.find(" ON ").unwrap()];
                privileges
                    .split(", ")
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn each_account_has_what_its_job_needs_and_no_data_access() {
        let p = Passwords::generate();
        let data_access = [
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "ALL",
            "ALL PRIVILEGES",
        ];
        let cases = [
            (
                Flavor::Mariadb,
                OPERATOR_USER,
                &[
                    "CREATE USER",
                    "READ_ONLY ADMIN",
                    "REPLICATION MASTER ADMIN",
                    "REPLICATION SLAVE ADMIN",
                    "SLAVE MONITOR",
                    "BINLOG MONITOR",
                    "CONNECTION ADMIN",
                    "RELOAD",
                    "PROCESS",
                ][..],
                &["SUPER", "BINLOG ADMIN", "REPLICATION SLAVE"][..],
            ),
            (
                Flavor::Mysql,
                OPERATOR_USER,
                &[
                    "CREATE USER",
                    "CLONE_ADMIN",
                    "SYSTEM_VARIABLES_ADMIN",
                    "REPLICATION_SLAVE_ADMIN",
                    "CONNECTION_ADMIN",
                    "REPLICATION CLIENT",
                    "RELOAD",
                    "PROCESS",
                ][..],
                &[
                    "SUPER",
                    "SYSTEM_USER",
                    "BINLOG_ADMIN",
                    "GROUP_REPLICATION_ADMIN",
                ][..],
            ),
            (
                Flavor::Mariadb,
                REPLICATION_USER,
                &["REPLICATION SLAVE", "SLAVE MONITOR"][..],
                &["SUPER"][..],
            ),
            (
                Flavor::Mysql,
                REPLICATION_USER,
                &["REPLICATION SLAVE", "BACKUP_ADMIN"][..],
                &["SUPER", "CLONE_ADMIN"][..],
            ),
            (
                Flavor::Mariadb,
                MONITOR_USER,
                &["PROCESS", "SLAVE MONITOR", "BINLOG MONITOR"][..],
                &["SUPER", "REPLICATION SLAVE ADMIN"][..],
            ),
            (
                Flavor::Mysql,
                MONITOR_USER,
                &["PROCESS", "REPLICATION CLIENT"][..],
                &["SUPER", "REPLICATION_SLAVE_ADMIN"][..],
            ),
        ];
        for (flavor, user, needed, excess) in cases {
            let sql = init_sql(flavor, &p);
            let privileges = granted(&sql, user);
            for n in needed {
                assert!(
                    privileges.iter().any(|p| p == n),
                    "{flavor:?} {user}: {n} missing from {privileges:?}"
                );
            }
            for x in excess.iter().chain(&data_access) {
                assert!(
                    !privileges.iter().any(|p| p == x),
                    "{flavor:?} {user}: {x} in {privileges:?}"
                );
            }
            // Besides global administrative privileges, korc reads how a MySQL copy
            // goes, on the two tables where the recipient reports it.
            let table_grants: Vec<&str> = sql
                .lines()
                .filter(|l| l.starts_with("GRANT") && !l.contains(" ON *.* TO "))
                .collect();
            let expected = match flavor {
                Flavor::Mariadb => vec![],
                Flavor::Mysql => vec![
                    "GRANT SELECT ON performance_schema.clone_status TO 'korc'@'%';",
                    "GRANT SELECT ON performance_schema.clone_progress TO 'korc'@'%';",
                ],
            };
            assert_eq!(table_grants, expected, "{flavor:?}");
        }
    }

    #[test]
    fn a_password_change_names_the_account_and_hides_the_password() {
        let (statement, shown) = set_password(Account::Root, "n'ew");
        assert_eq!(
            statement,
            "ALTER USER 'root'@'localhost' IDENTIFIED BY 'n''ew'"
        );
        assert_eq!(
            shown,
            "ALTER USER 'root'@'localhost' IDENTIFIED BY <password>"
        );
        let (statement, _) = set_password(Account::Replication, "x");
        assert_eq!(statement, "ALTER USER 'korc_repl'@'%' IDENTIFIED BY 'x'");
        let mut other = Passwords::generate();
        let p = other.clone();
        assert!(p.changed(&other).is_empty());
        other.monitor = "changed".into();
        assert_eq!(p.changed(&other), vec![Account::Monitor]);
    }

    #[test]
    fn mysql_later_starts_are_super_read_only() {
        let p = Passwords::generate();
        let sql = init_sql(Flavor::Mysql, &p);
        assert!(sql.starts_with("SET SESSION sql_log_bin = 0;"));
        assert_eq!(
            sql.lines().last(),
            Some("SET PERSIST_ONLY super_read_only = ON;"),
            "persisted last, after the accounts"
        );
        assert!(!init_sql(Flavor::Mariadb, &p).contains("PERSIST"));
    }
}
