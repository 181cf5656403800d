//! Real MariaDB and MySQL servers for tests: each a separate `mariadbd` or `mysqld`
//! process on its own loopback address (127.x.y.z, port 3306) with GTID replication,
//! killed and removed when the sandbox is dropped (and killed by the kernel if the test
//! process dies). Every server carries the accounts korc provisions, with their grants,
//! so the tests also prove that those grants suffice for what korc does.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// korc's administrative account in the sandbox.
pub const ADMIN: (&str, &str) = (korc::provisioning::OPERATOR_USER, "korc-admin-pw");
/// Replication account.
pub const REPL: (&str, &str) = (korc::provisioning::REPLICATION_USER, "repl-pw");
/// An application account: ordinary privileges, stopped by read_only.
pub const APP: (&str, &str) = ("app", "app-pw");
/// korc's monitoring account.
pub const MONITOR: (&str, &str) = (korc::provisioning::MONITOR_USER, "monitor-pw");

/// Which server a sandbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MariaDB from the system (`mariadbd`, `mariadb`).
    MariaDb,
    /// MySQL unpacked into korc's cache by `e2e/prereqs` (`mysqld`, `mysql` wrappers).
    Mysql,
}

/// Generates one test per flavor for each listed test function taking a [`Flavor`]:
/// `mariadb::NAME` and `mysql::NAME`. Functions listed after `async:` are async.
#[macro_export]
macro_rules! on_both_flavors {
    ($($name:ident),* $(,)? $(; async: $($async_name:ident),* $(,)?)?) => {
        mod mariadb {
            $(#[test]
            fn $name() {
                super::$name(super::support::Flavor::MariaDb)
            })*
            $($(#[tokio::test]
            async fn $async_name() {
                super::$async_name(super::support::Flavor::MariaDb).await
            })*)?
        }
        mod mysql {
            $(#[test]
            fn $name() {
                super::$name(super::support::Flavor::Mysql)
            })*
            $($(#[tokio::test]
            async fn $async_name() {
                super::$async_name(super::support::Flavor::Mysql).await
            })*)?
        }
    };
}

fn cache_dir() -> PathBuf {
    std::env::var_os("KORC_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/korc")
        })
}

/// The private MySQL's directory in the cache: `bin/` wrappers, `root/usr` basedir.
fn mysql_dir() -> PathBuf {
    let dir = cache_dir().join("mysql");
    assert!(
        dir.join("bin/mysqld").is_file(),
        "MySQL is not installed at {}: run e2e/prereqs (it unpacks MySQL into korc's cache)",
        dir.display()
    );
    dir
}

impl Flavor {
    /// The flavor's name in korc's JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::MariaDb => "mariadb",
            Self::Mysql => "mysql",
        }
    }

    fn server(self) -> PathBuf {
        match self {
            Self::MariaDb => "mariadbd".into(),
            Self::Mysql => mysql_dir().join("bin/mysqld"),
        }
    }

    /// The command-line client.
    pub fn client(self) -> Command {
        match self {
            Self::MariaDb => Command::new("mariadb"),
            Self::Mysql => Command::new(mysql_dir().join("bin/mysql")),
        }
    }

    fn version(self) -> String {
        let out = Command::new(self.server())
            .arg("--version")
            .output()
            .unwrap_or_else(|e| match self {
                Self::MariaDb => panic!(
                    "mariadbd not found ({e}): install Debian's mariadb-server (e2e/prereqs does)"
                ),
                Self::Mysql => panic!("cannot run mysqld ({e}): run e2e/prereqs"),
            });
        let text = String::from_utf8_lossy(&out.stdout);
        // "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for …", "mysqld  Ver 9.7.4-2 for …"
        let mut words = text.split_whitespace();
        words.find(|w| *w == "Ver");
        words.next().unwrap_or("unknown").to_string()
    }

    /// The word of the semi-sync names: MariaDB's `master`/`slave`, MySQL's
    /// `source`/`replica`. `side` is `source` or `replica`.
    fn semi_sync_side(self, side: &str) -> &str {
        match (self, side) {
            (Self::MariaDb, "source") => "master",
            (Self::MariaDb, "replica") => "slave",
            _ => side,
        }
    }
}

/// A bootstrapped datadir, made once per machine, flavor and version and copied for
/// every server (bootstrapping takes ~0.3 s for MariaDB and seconds for MySQL, a copy
/// a fraction of that).
fn template(flavor: Flavor) -> &'static Path {
    static MARIADB: OnceLock<PathBuf> = OnceLock::new();
    static MYSQL: OnceLock<PathBuf> = OnceLock::new();
    let cell = match flavor {
        Flavor::MariaDb => &MARIADB,
        Flavor::Mysql => &MYSQL,
    };
    cell.get_or_init(|| {
        let dir = cache_dir().join(format!("{}-datadir-{}", flavor.name(), flavor.version()));
        if dir.join("mysql").is_dir() {
            return dir;
        }
        let scratch = cache_dir().join(format!(
            "{}-datadir-build-{}",
            flavor.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        let data = scratch.join("data");
        match flavor {
            Flavor::MariaDb => {
                let status = Command::new("mariadb-install-db")
                    .arg("--no-defaults")
                    .arg("--user=root")
                    .arg(format!("--datadir={}", data.display()))
                    .arg("--auth-root-authentication-method=socket")
                    .arg("--skip-test-db")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("mariadb-install-db");
                assert!(status.success(), "mariadb-install-db failed");
            }
            Flavor::Mysql => {
                let cnf = scratch.join("init.cnf");
                std::fs::write(
                    &cnf,
                    format!(
                        "[mysqld]\n{}datadir={}\nlog-error={}\n",
                        mysql_basics(&scratch),
                        data.display(),
                        scratch.join("init.log").display()
                    ),
                )
                .unwrap();
                let status = Command::new(Flavor::Mysql.server())
                    .arg(format!("--defaults-file={}", cnf.display()))
                    .arg("--initialize-insecure")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("mysqld --initialize-insecure");
                assert!(
                    status.success(),
                    "mysqld --initialize-insecure failed: {}",
                    std::fs::read_to_string(scratch.join("init.log")).unwrap_or_default()
                );
                // The server UUID: every copy must make its own.
                std::fs::remove_file(data.join("auto.cnf")).unwrap();
            }
        }
        // Another process may have won the race; either copy is fine.
        let _ = std::fs::rename(&data, &dir);
        let _ = std::fs::remove_dir_all(&scratch);
        dir
    })
}

/// The `[mysqld]` settings the private MySQL needs wherever it runs, with small
/// InnoDB files; `dir` holds the directory `secure-file-priv` names.
fn mysql_basics(dir: &Path) -> String {
    let usr = mysql_dir().join("root/usr");
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    format!(
        "user=root\nbasedir={usr}\nlc-messages-dir={usr}/share/mysql\nplugin_dir={usr}/lib/mysql/plugin\n\
         secure-file-priv={files}\nmysqlx=OFF\ninnodb_redo_log_capacity=8M\ninnodb_buffer_pool_size=32M\n",
        usr = usr.display(),
        files = files.display()
    )
}

/// A loopback address nobody listens on at port 3306. The second octet comes from the
/// process id, so test binaries running at once do not collide.
fn free_address() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // 127.200–249: the end-to-end control planes take their blocks from 127.100–199,
    // so a sandbox never races one of their pods for an address.
    let base = 200 + (std::process::id() % 50) as u8;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let ip = Ipv4Addr::new(127, base, (n / 250) as u8, (n % 250) as u8 + 1);
        if TcpListener::bind((ip, 3306)).is_ok() {
            return ip;
        }
    }
}

fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child
    // when the thread that started it exits, so no server outlives its test.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The name every sandbox server's certificate carries (what korc verifies).
pub const TLS_SERVER_NAME: &str = "sandbox.test.svc";

/// A sandbox's certificates: korc's own CA and server certificate, as files.
pub struct Certificates {
    /// The CA korc issued.
    pub authority: korc::provisioning::certificates::Authority,
    /// The directory of `ca.crt`, `tls.crt`, `tls.key` (the servers' `ssl_*`).
    pub dir: PathBuf,
}

impl Certificates {
    /// Issues a CA and a server certificate into `dir`.
    fn issue(dir: &Path) -> Self {
        use korc::provisioning::certificates::issue_authority;
        let authority = issue_authority("sandbox", std::time::SystemTime::now()).unwrap();
        let c = Self {
            authority,
            dir: dir.to_path_buf(),
        };
        std::fs::create_dir_all(dir).unwrap();
        c.renew(korc::provisioning::certificates::SERVER_LIFETIME);
        c
    }

    /// Issues a new server certificate lasting `lifetime` and replaces the files (as a
    /// refreshed Secret volume does); returns it.
    pub fn renew(&self, lifetime: Duration) -> korc::provisioning::certificates::ServerCertificate {
        use korc::provisioning::certificates::{CA_CERT, SERVER_CERT, SERVER_KEY, issue_server};
        let names = vec![TLS_SERVER_NAME.to_string()];
        let server = issue_server(
            &self.authority,
            &names,
            std::time::SystemTime::now(),
            lifetime,
        )
        .unwrap();
        for (key, text) in [
            (CA_CERT, &server.ca),
            (SERVER_CERT, &server.cert),
            (SERVER_KEY, &server.key),
        ] {
            let tmp = self.dir.join(format!(".{key}"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, self.dir.join(key)).unwrap();
        }
        server
    }

    /// `ca.crt`'s path.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(korc::provisioning::certificates::CA_CERT)
    }

    /// The TLS korc's connector uses for these servers.
    pub fn connector_tls(&self) -> korc::topology::session::Tls {
        korc::topology::session::Tls::Verified {
            ca: self.authority.cert.clone().into_bytes(),
            server_name: Some(TLS_SERVER_NAME.into()),
        }
    }
}

/// One mariadbd or mysqld.
pub struct Server {
    /// The address replicas and korc use.
    pub ip: Ipv4Addr,
    /// server_id.
    pub server_id: u32,
    /// MariaDB or MySQL.
    pub flavor: Flavor,
    dir: PathBuf,
    child: Option<Child>,
    /// The CA file replicas verify their source against, when the servers use TLS.
    tls_ca: Option<PathBuf>,
}

impl Server {
    fn create(root: &Path, flavor: Flavor, server_id: u32, tls: Option<&Path>) -> Self {
        let ip = free_address();
        let dir = root.join(format!("s{server_id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        let status = Command::new("cp")
            .arg("-a")
            .arg(template(flavor))
            .arg(&data)
            .status()
            .unwrap();
        assert!(status.success());
        let d = dir.display();
        let common = format!(
            "[client]\nsocket={d}/mysqld.sock\nuser=root\n\
             [mysqld]\ndatadir={d}/data\nsocket={d}/mysqld.sock\npid-file={d}/mysqld.pid\n\
             log-error={d}/error.log\nbind-address={ip}\nport=3306\nskip-name-resolve\nserver_id={server_id}\n\
             report_host={ip}\nlog_bin=mysql-bin\nrelay_log=relay-bin\nread_only=ON\nrelay_log_recovery=OFF\n\
             innodb_buffer_pool_size=32M\nperformance_schema=OFF\nmax_connections=200\n"
        );
        let cnf = match flavor {
            Flavor::MariaDb => {
                common
                    + "user=root\nlog_slave_updates=ON\nbinlog_format=ROW\ngtid_strict_mode=ON\n\
                       slave_net_timeout=4\ninnodb_log_file_size=16M\n\
                       ignore_db_dirs=.korc-clone\nignore_db_dirs=.korc-replaced\nignore_db_dirs=.korc-saved\n"
            }
            Flavor::Mysql => {
                // A copy made before the template lost it would share the UUID.
                let _ = std::fs::remove_file(data.join("auto.cnf"));
                common
                    + &mysql_basics(&dir)
                    + "log_replica_updates=ON\ngtid_mode=ON\nenforce_gtid_consistency=ON\n\
                       super_read_only=ON\nreplica_net_timeout=4\n\
                       plugin-load-add=semisync_source.so;semisync_replica.so;mysql_clone.so\n"
            }
        };
        let cnf = match tls {
            Some(t) => {
                cnf + &format!(
                    "ssl_ca={t}/ca.crt\nssl_cert={t}/tls.crt\nssl_key={t}/tls.key\n",
                    t = t.display()
                )
            }
            None => cnf,
        };
        std::fs::write(dir.join("my.cnf"), cnf).unwrap();
        Self {
            ip,
            server_id,
            flavor,
            dir,
            child: None,
            tls_ca: tls.map(|t| t.join("ca.crt")),
        }
    }

    /// `ip:3306`.
    pub fn key(&self) -> String {
        format!("{}:3306", self.ip)
    }

    /// Starts the server on its datadir and waits until it accepts connections.
    pub fn start(&mut self) {
        let mut cmd = Command::new(self.flavor.server());
        cmd.arg(format!(
            "--defaults-file={}",
            self.dir.join("my.cnf").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        // The kernel accepts TCP connections as soon as the server listens, which can
        // be before its socket file exists: wait for both, a stale file removed first.
        let socket = self.dir.join("mysqld.sock");
        let _ = std::fs::remove_file(&socket);
        self.child = Some(cmd.spawn().expect("start the server"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(
            &SocketAddr::from((self.ip, 3306)),
            Duration::from_millis(100),
        )
        .is_err()
            || !socket.exists()
        {
            assert!(
                Instant::now() < deadline,
                "{} on {} did not start: {}",
                self.flavor.name(),
                self.ip,
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's data directory.
    pub fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's error log.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        if let Some(child) = &self.child {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, sig) };
        }
    }

    /// kill -9: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the server has exited by itself (a shutdown), at most `secs`.
    pub fn wait_exited(&mut self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let child = self.child.as_mut().expect("a started server");
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{} did not exit", self.ip);
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = None;
    }

    /// SIGSTOP: a hang.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Runs SQL as root over the socket; returns the tab-separated output.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("SQL on {} failed: {e}\n{sql}", self.ip))
    }

    /// Like [`Server::sql`], returning the client's error.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        run_client(self.root_client().args(["-N", "-B", "-e", sql]))
    }

    /// The client connected as root over the socket.
    fn root_client(&self) -> Command {
        let mut cmd = self.flavor.client();
        cmd.arg(format!(
            "--defaults-file={}",
            self.dir.join("my.cnf").display()
        ));
        cmd
    }

    /// The client running `sql` as the application user over TCP, in `test`.
    pub fn app_command(&self, sql: &str) -> Command {
        self.account_command(APP, sql)
    }

    /// Runs SQL as `account` over TCP, in no database, in plain text or over TLS
    /// verified against the sandbox's CA.
    pub fn account_sql_over(
        &self,
        account: (&str, &str),
        sql: &str,
        tls: bool,
    ) -> Result<String, String> {
        let mut cmd = self.flavor.client();
        cmd.args([
            "--no-defaults",
            "-h",
            &self.ip.to_string(),
            "-P",
            "3306",
            "-u",
            account.0,
        ])
        .arg(format!("-p{}", account.1))
        .args(["--connect-timeout=2", "-N", "-B", "-e", sql]);
        match (self.flavor, &self.tls_ca) {
            (Flavor::MariaDb, Some(ca)) if tls => {
                cmd.arg("--ssl").arg(format!("--ssl-ca={}", ca.display()))
            }
            (Flavor::Mysql, Some(ca)) if tls => cmd
                .arg("--ssl-mode=VERIFY_CA")
                .arg(format!("--ssl-ca={}", ca.display())),
            (Flavor::MariaDb, _) => cmd.arg("--skip-ssl"),
            // The RSA key lets caching_sha2_password authenticate without TLS, so what
            // refuses is the account's REQUIRE SSL.
            (Flavor::Mysql, _) => cmd.args(["--ssl-mode=DISABLED", "--get-server-public-key"]),
        };
        run_client(&mut cmd)
    }

    /// The client running `sql` as `account` (user, password) over TCP, in `test`.
    pub fn account_command(&self, account: (&str, &str), sql: &str) -> Command {
        let mut cmd = self.flavor.client();
        cmd.args([
            "--no-defaults",
            "-h",
            &self.ip.to_string(),
            "-P",
            "3306",
            "-u",
            account.0,
        ])
        .arg(format!("-p{}", account.1))
        .args(["--connect-timeout=2", "-N", "-B", "test", "-e", sql]);
        cmd
    }

    /// Runs SQL as the application user over TCP (subject to read_only).
    pub fn app_sql(&self, sql: &str) -> Result<String, String> {
        run_client(&mut self.app_command(sql))
    }

    /// Runs SQL as `account` (user, password) over TCP.
    pub fn account_sql(&self, account: (&str, &str), sql: &str) -> Result<String, String> {
        run_client(&mut self.account_command(account, sql))
    }

    /// Runs SQL as root on a read-only instance too (MySQL's super_read_only stops root
    /// as well, so it is lifted for the statement).
    pub fn sql_despite_read_only(&self, sql: &str) -> String {
        let sql = sql.trim().trim_end_matches(';');
        match self.flavor {
            Flavor::MariaDb => self.sql(sql),
            Flavor::Mysql => {
                let ro = self.variable("super_read_only");
                self.sql(&format!(
                    "SET GLOBAL super_read_only = 0; {sql}; SET GLOBAL super_read_only = {ro}"
                ))
            }
        }
    }

    /// Runs SQL as root outside the binary log, on a read-only instance too.
    pub fn unlogged_sql(&self, sql: &str) -> String {
        self.sql_despite_read_only(&format!("SET sql_log_bin = 0; {sql}"))
    }

    /// Points this server at `source` with GTID auto-positioning and starts
    /// replication. On MySQL the replication account authenticates with
    /// caching_sha2_password, and without TLS the replica asks the source for its RSA
    /// key (korc's `CHANGE REPLICATION SOURCE TO` does the same). With TLS the statement
    /// is korc's own.
    pub fn replicate_from(&self, source: &Server) {
        if let Some(ca) = &self.tls_ca {
            let dialect = korc::topology::dialect::Dialect::from_version(match self.flavor {
                Flavor::MariaDb => (10, 11, 0),
                Flavor::Mysql => (9, 7, 0),
            });
            let change = dialect.change_source(
                &source.ip.to_string(),
                3306,
                Some(&korc::topology::dialect::ReplicationCredentials {
                    user: REPL.0.into(),
                    password: REPL.1.into(),
                    source_ca: Some(korc::topology::dialect::SourceCa::File(
                        ca.display().to_string(),
                    )),
                }),
            );
            self.sql(&format!("STOP REPLICA; {change}; START REPLICA"));
            return;
        }
        let change = match self.flavor {
            Flavor::MariaDb => format!(
                "CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT=3306, MASTER_USER='{}', MASTER_PASSWORD='{}', \
                 MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                source.ip, REPL.0, REPL.1
            ),
            Flavor::Mysql => format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='{}', SOURCE_PORT=3306, SOURCE_USER='{}', \
                 SOURCE_PASSWORD='{}', SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1",
                source.ip, REPL.0, REPL.1
            ),
        };
        self.sql(&format!("STOP REPLICA; {change}; START REPLICA"));
    }

    /// Gives the replica a wrong replication password and restarts replication: its
    /// receiver keeps failing to connect.
    pub fn break_replication_password(&self) {
        let change = match self.flavor {
            Flavor::MariaDb => "CHANGE MASTER TO MASTER_PASSWORD='wrong'",
            Flavor::Mysql => "CHANGE REPLICATION SOURCE TO SOURCE_PASSWORD='wrong'",
        };
        self.sql(&format!("STOP REPLICA; {change}; START REPLICA"));
    }

    /// Everything this server wrote or applied, as its GTID position (MariaDB's
    /// `gtid_binlog_pos`, MySQL's `gtid_executed`).
    pub fn gtid_position(&self) -> String {
        let var = match self.flavor {
            Flavor::MariaDb => "gtid_binlog_pos",
            Flavor::Mysql => "gtid_executed",
        };
        self.sql(&format!("SELECT @@global.{var}"))
            .replace("\\n", "")
    }

    /// Waits until this server has applied everything `source` has written.
    pub fn wait_caught_up(&self, source: &Server) {
        let pos = source.gtid_position();
        let wait = match self.flavor {
            Flavor::MariaDb => format!("SELECT MASTER_GTID_WAIT('{pos}', 20)"),
            Flavor::Mysql => format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{pos}', 20)"),
        };
        let r = self.sql(&wait);
        assert_eq!(
            r,
            "0",
            "{} did not catch up with {} ({pos}): {}",
            self.ip,
            source.ip,
            self.replica_status()
        );
    }

    /// Whether this replica has received (not necessarily applied) all `source` wrote.
    pub fn received_all_of(&self, source: &Server) -> bool {
        let pos = source.gtid_position();
        match self.flavor {
            Flavor::MariaDb => self.received_gtids() == pos,
            Flavor::Mysql => {
                let query = format!(
                    "SELECT GTID_SUBSET(GTID_SUBTRACT('{pos}', @@global.gtid_executed), '{}')",
                    self.received_gtids()
                );
                self.sql(&query) == "1"
            }
        }
    }

    /// Waits until this replica has received all `source` wrote.
    pub fn wait_received(&self, source: &Server) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.received_all_of(source) {
            assert!(
                Instant::now() < deadline,
                "{} never received {}: {}",
                self.ip,
                source.gtid_position(),
                self.replica_status()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The GTIDs the receiver got (`Gtid_IO_Pos`, `Retrieved_Gtid_Set`).
    pub fn received_gtids(&self) -> String {
        self.replica_field("Gtid_IO_Pos", "Retrieved_Gtid_Set")
            .replace('\n', "")
    }

    /// The configured source host (empty when not a replica).
    pub fn source_host(&self) -> String {
        self.replica_field("Master_Host", "Source_Host")
    }

    /// The receiver thread's state (`Yes`, `No`, `Connecting`).
    pub fn io_running(&self) -> String {
        self.replica_field("Slave_IO_Running", "Replica_IO_Running")
    }

    /// The applier thread's state.
    pub fn sql_running(&self) -> String {
        self.replica_field("Slave_SQL_Running", "Replica_SQL_Running")
    }

    /// The prefix of GTIDs this server writes itself: MariaDB's `domain-server_id-`,
    /// MySQL's `server_uuid:`.
    pub fn own_gtid_prefix(&self) -> String {
        match self.flavor {
            Flavor::MariaDb => format!("0-{}-", self.server_id),
            Flavor::Mysql => format!("{}:", self.sql("SELECT @@global.server_uuid")),
        }
    }

    /// A semi-sync variable by its side and name (`source`, `enabled`):
    /// `rpl_semi_sync_master_enabled` on MariaDB, `rpl_semi_sync_source_enabled` on MySQL.
    pub fn semi_sync_variable(&self, side: &str, name: &str) -> String {
        format!("rpl_semi_sync_{}_{name}", self.flavor.semi_sync_side(side))
    }

    /// A semi-sync status variable's name (`source`, `clients`).
    pub fn semi_sync_status_name(&self, side: &str, name: &str) -> String {
        format!("Rpl_semi_sync_{}_{name}", self.flavor.semi_sync_side(side))
    }

    /// A semi-sync status value, as `SHOW GLOBAL STATUS` gives it.
    pub fn semi_sync_status(&self, side: &str, name: &str) -> String {
        let name = self.semi_sync_status_name(side, name);
        let row = self.sql(&format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        row.split('\t').nth(1).unwrap_or_default().to_string()
    }

    /// The value of a global variable.
    pub fn variable(&self, name: &str) -> String {
        self.sql(&format!("SELECT @@global.{name}"))
    }

    /// The whole `SHOW REPLICA STATUS`, for messages.
    pub fn replica_status(&self) -> String {
        run_client(
            self.root_client()
                .args(["--vertical", "-e", "SHOW REPLICA STATUS"]),
        )
        .unwrap_or_default()
    }

    /// A `SHOW REPLICA STATUS` column by its MariaDB and its MySQL name.
    fn replica_field(&self, mariadb: &str, mysql: &str) -> String {
        let column = match self.flavor {
            Flavor::MariaDb => mariadb,
            Flavor::Mysql => mysql,
        };
        // Column names are printed only in the vertical format without -N; MySQL
        // continues a GTID set on the next lines.
        let status = self.replica_status();
        let mut lines = status.lines();
        let Some(first) = lines
            .by_ref()
            .find_map(|l| l.trim().strip_prefix(&format!("{column}:")))
        else {
            return String::new();
        };
        let mut value = first.trim().to_string();
        for l in lines.take_while(|l| !l.contains(": ") && !l.trim_end().ends_with(':')) {
            value.push_str(l.trim());
        }
        value
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.thaw();
        self.kill9();
    }
}

/// Runs a client command: its trimmed output, or its error text.
fn run_client(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the client: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A set of servers in one temporary directory.
pub struct Sandbox {
    /// The servers; `servers[0]` is the first primary.
    pub servers: Vec<Server>,
    /// The servers' certificates, when they use TLS.
    pub certificates: Option<Certificates>,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    /// `n` servers of `flavor`, each with korc's accounts as korc provisions them: the
    /// first a writable primary with the application account and a `test` database;
    /// the others replicating from it with GTID, caught up.
    pub fn replication(flavor: Flavor, n: usize) -> Self {
        Self::build(flavor, n, false)
    }

    /// Like [`Sandbox::replication`] with TLS as korc provisions it: certificates from
    /// a CA of korc's, korc's and the replication account requiring TLS, replicas
    /// verifying their source against the CA.
    pub fn replication_with_tls(flavor: Flavor, n: usize) -> Self {
        Self::build(flavor, n, true)
    }

    fn build(flavor: Flavor, n: usize, tls: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("korc-sandbox-")
            .tempdir()
            .unwrap();
        let certificates = tls.then(|| Certificates::issue(&dir.path().join("tls")));
        let tls_dir = certificates.as_ref().map(|c| c.dir.clone());
        // Datadirs are copied in parallel; the servers are started from this thread,
        // since they die with the thread that started them.
        let mut servers: Vec<Server> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..=n as u32)
                .map(|id| {
                    let root = dir.path().to_path_buf();
                    let tls_dir = tls_dir.clone();
                    scope.spawn(move || Server::create(&root, flavor, id, tls_dir.as_deref()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for s in &mut servers {
            s.start();
        }
        for s in &servers {
            s.unlogged_sql(&accounts(flavor, tls));
        }
        let sb = Self {
            servers,
            certificates,
            _dir: dir,
        };
        let primary = &sb.servers[0];
        let writable = match flavor {
            Flavor::MariaDb => "SET GLOBAL read_only = 0",
            Flavor::Mysql => "SET GLOBAL super_read_only = 0; SET GLOBAL read_only = 0",
        };
        primary.sql(&format!(
            "{writable}; CREATE DATABASE test; CREATE USER '{u}'@'%' IDENTIFIED BY '{up}'; \
             GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON test.* TO '{u}'@'%'; \
             CREATE TABLE test.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(64))",
            u = APP.0,
            up = APP.1
        ));
        for replica in &sb.servers[1..] {
            replica.replicate_from(primary);
        }
        for replica in &sb.servers[1..] {
            replica.wait_caught_up(primary);
        }
        sb
    }

    /// Adds a new, empty server with korc's accounts, replicating from nobody (what a
    /// StatefulSet's new pod is); returns its index in `servers`.
    pub fn add_empty(&mut self) -> usize {
        let flavor = self.servers[0].flavor;
        let id = self.servers.iter().map(|s| s.server_id).max().unwrap_or(0) + 1;
        let tls_dir = self.certificates.as_ref().map(|c| c.dir.clone());
        let mut server = Server::create(self._dir.path(), flavor, id, tls_dir.as_deref());
        // Where MySQL reports a copy into it (off elsewhere, to keep servers small).
        let cnf = server.dir.join("my.cnf");
        let text = std::fs::read_to_string(&cnf).unwrap();
        std::fs::write(
            &cnf,
            text.replace("performance_schema=OFF", "performance_schema=ON"),
        )
        .unwrap();
        server.start();
        server.unlogged_sql(&accounts(flavor, tls_dir.is_some()));
        self.servers.push(server);
        self.servers.len() - 1
    }

    /// `ip:3306` of every server, comma separated (for `--instances`).
    pub fn instances(&self) -> String {
        self.servers
            .iter()
            .map(Server::key)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server with this key.
    pub fn by_key(&self, key: &str) -> &Server {
        self.servers
            .iter()
            .find(|s| s.key() == key)
            .unwrap_or_else(|| panic!("no server {key}"))
    }
}

/// korc's accounts as korc provisions them, with the sandbox's passwords (requiring
/// TLS when `tls`).
fn accounts(flavor: Flavor, tls: bool) -> String {
    let passwords = korc::provisioning::Passwords {
        root: String::new(),
        operator: ADMIN.1.into(),
        replication: REPL.1.into(),
        monitor: MONITOR.1.into(),
    };
    let provisioning_flavor = match flavor {
        Flavor::MariaDb => korc::provisioning::Flavor::Mariadb,
        Flavor::Mysql => korc::provisioning::Flavor::Mysql,
    };
    let mut accounts = korc::provisioning::init_sql(provisioning_flavor, &passwords);
    if tls {
        accounts += &korc::provisioning::require_tls_sql();
    }
    accounts
}

/// Waits until `f` holds, at most `secs` seconds; `what` says what was awaited.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the korc binary with the sandbox's admin credentials.
pub fn korc(args: &[&str]) -> (i32, String, String) {
    korc_as(ADMIN, args)
}

/// Runs the korc binary as `account` (user, password), replicas repointed with the
/// sandbox's replication account.
pub fn korc_as(account: (&str, &str), args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_korc"))
        .args(args)
        .env("KORC_MYSQL_USER", account.0)
        .env("KORC_MYSQL_PASSWORD", account.1)
        .env("KORC_REPLICATION_USER", REPL.0)
        .env("KORC_REPLICATION_PASSWORD", REPL.1)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `korc ... --output json` style commands and parses stdout.
pub fn korc_json(args: &[&str]) -> (i32, serde_json::Value) {
    let (code, out, err) = korc(args);
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("korc {args:?} printed no JSON ({e}): {out}\n{err}"));
    (code, v)
}

/// The analysis codes a JSON `analyze` document gives an instance.
pub fn code_of(doc: &serde_json::Value, instance: &str) -> Option<String> {
    doc["analysis"]
        .as_array()?
        .iter()
        .find(|a| a["instance"] == instance)
        .and_then(|a| a["code"].as_str().map(str::to_string))
}

/// A TCP forwarder korc can be pointed at, which the test can sever: the cut network
/// between korc and one instance, while everything else still reaches it.
pub struct Proxy {
    /// Where it listens.
    pub address: SocketAddr,
    severed: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards a fresh loopback address's port 3306 to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let ip = free_address();
        let listener = TcpListener::bind((ip, 3306)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let severed = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (flag, list) = (severed.clone(), streams.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(target) else {
                            continue;
                        };
                        list.lock()
                            .unwrap()
                            .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                        pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pump(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            address: SocketAddr::from((ip, 3306)),
            severed,
            streams,
        }
    }

    /// `ip:3306` of the proxy.
    pub fn key(&self) -> String {
        self.address.to_string()
    }

    /// Cuts every connection and stops accepting new ones.
    pub fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.sever();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// korc's agent beside one sandbox server (`korc agent serve`), killed when dropped.
pub struct Agent {
    child: Child,
    /// `ip:3307`.
    pub address: String,
}

impl Agent {
    /// Starts it on `server`'s address (port 3307), with the cluster's TLS when given.
    pub fn start(server: &Server, tls: Option<&Certificates>) -> Self {
        let address = format!("{}:{}", server.ip, korc::agent::AGENT_PORT);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_korc"));
        cmd.args([
            "agent",
            "serve",
            "--listen",
            &address,
            "--server",
            &server.key(),
        ])
        .arg(format!("--datadir={}", server.datadir().display()))
        .env("KORC_LOG", "warn");
        if let Some(t) = tls {
            cmd.arg(format!("--tls-dir={}", t.dir.display()))
                .arg(format!("--tls-server-name={}", TLS_SERVER_NAME));
        }
        let child = cmd.spawn().expect("korc agent serve");
        wait_until(20, "the agent listening", || {
            std::net::TcpStream::connect(&address).is_ok()
        });
        Self { child, address }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `korc agent restore` on `server`'s data directory (the init container).
pub fn restore(server: &Server) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_korc"))
        .args(["agent", "restore"])
        .arg(format!("--datadir={}", server.datadir().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
