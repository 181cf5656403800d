//! Real MariaDB servers for tests: each a separate `mariadbd` process on its own
//! loopback address (127.x.y.z, port 3306) with GTID replication, killed and removed
//! when the sandbox is dropped (and killed by the kernel if the test process dies).
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
pub const ADMIN: (&str, &str) = ("korc", "korc-admin-pw");
/// Replication account.
pub const REPL: (&str, &str) = ("repl", "repl-pw");
/// An application account: ordinary privileges, stopped by read_only.
pub const APP: (&str, &str) = ("app", "app-pw");

fn cache_dir() -> PathBuf {
    std::env::var_os("KORC_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/korc")
        })
}

fn mariadb_version() -> String {
    let out = Command::new("mariadbd")
        .arg("--version")
        .output()
        .expect("mariadbd not found: install Debian's mariadb-server (e2e/prereqs does)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or("unknown")
        .to_string()
}

/// A bootstrapped datadir, made once per machine and MariaDB version and copied for
/// every server (mariadb-install-db takes ~0.3 s, a copy a fraction of that).
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = cache_dir().join(format!("mariadb-datadir-{}", mariadb_version()));
        if dir.join("mysql").is_dir() {
            return dir;
        }
        let scratch = cache_dir().join(format!("mariadb-datadir-build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        let status = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", scratch.display()))
            .arg("--auth-root-authentication-method=socket")
            .arg("--skip-test-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db");
        assert!(status.success(), "mariadb-install-db failed");
        // Another process may have won the race; either copy is fine.
        if std::fs::rename(&scratch, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        dir
    })
}

/// A loopback address nobody listens on at port 3306. The second octet comes from the
/// process id, so test binaries running at once do not collide.
fn free_address() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 100 + (std::process::id() % 100) as u8;
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

/// One mariadbd.
pub struct Server {
    /// The address replicas and korc use.
    pub ip: Ipv4Addr,
    /// server_id.
    pub server_id: u32,
    dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn create(root: &Path, server_id: u32) -> Self {
        let ip = free_address();
        let dir = root.join(format!("s{server_id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("cp")
            .arg("-a")
            .arg(template())
            .arg(dir.join("data"))
            .status()
            .unwrap();
        assert!(status.success());
        let d = dir.display();
        let cnf = format!(
            "[client]\nsocket={d}/mysqld.sock\nuser=root\n\
             [mariadbd]\nuser=root\ndatadir={d}/data\nsocket={d}/mysqld.sock\npid-file={d}/mysqld.pid\n\
             log-error={d}/error.log\nbind-address={ip}\nport=3306\nskip-name-resolve\nserver_id={server_id}\n\
             report_host={ip}\nlog_bin=mysql-bin\nrelay_log=relay-bin\nlog_slave_updates=ON\nbinlog_format=ROW\n\
             gtid_strict_mode=ON\nread_only=1\nslave_net_timeout=4\nrelay_log_recovery=OFF\n\
             innodb_buffer_pool_size=32M\ninnodb_log_file_size=16M\nperformance_schema=OFF\n\
             max_connections=200\n"
        );
        std::fs::write(dir.join("my.cnf"), cnf).unwrap();
        Self {
            ip,
            server_id,
            dir,
            child: None,
        }
    }

    /// `ip:3306`.
    pub fn key(&self) -> String {
        format!("{}:3306", self.ip)
    }

    /// Starts mariadbd on its datadir and waits until it accepts connections.
    pub fn start(&mut self) {
        let mut cmd = Command::new("mariadbd");
        cmd.arg(format!(
            "--defaults-file={}",
            self.dir.join("my.cnf").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("start mariadbd"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(
            &SocketAddr::from((self.ip, 3306)),
            Duration::from_millis(100),
        )
        .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "mariadbd on {} did not start: {}",
                self.ip,
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
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

    /// The `mariadb` client connected as root over the socket.
    fn root_client(&self) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.arg(format!(
            "--defaults-file={}",
            self.dir.join("my.cnf").display()
        ));
        cmd
    }

    /// Runs SQL as the application user over TCP (subject to read_only).
    pub fn app_sql(&self, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new("mariadb");
        cmd.args([
            "--no-defaults",
            "-h",
            &self.ip.to_string(),
            "-P",
            "3306",
            "-u",
            APP.0,
        ])
        .arg(format!("-p{}", APP.1))
        .args(["--connect-timeout=2", "-N", "-B", "test", "-e", sql]);
        run_client(&mut cmd)
    }

    /// Points this server at `source` and starts replication.
    pub fn replicate_from(&self, source: &Server) {
        self.sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT=3306, MASTER_USER='{}', MASTER_PASSWORD='{}', \
             MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE",
            source.ip, REPL.0, REPL.1
        ));
    }

    /// Waits until this server has applied everything `source` has written.
    pub fn wait_caught_up(&self, source: &Server) {
        let pos = source.sql("SELECT @@global.gtid_binlog_pos");
        let r = self.sql(&format!("SELECT MASTER_GTID_WAIT('{pos}', 20)"));
        assert_eq!(
            r,
            "0",
            "{} did not catch up with {} ({pos}): {}",
            self.ip,
            source.ip,
            self.sql("SHOW SLAVE STATUS\\G")
        );
    }

    /// A `SHOW SLAVE STATUS` column.
    pub fn replica_field(&self, column: &str) -> String {
        // Column names are printed only in the vertical format without -N.
        let out = run_client(
            self.root_client()
                .args(["--vertical", "-e", "SHOW SLAVE STATUS"]),
        )
        .unwrap_or_default();
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{column}:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default()
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
        .map_err(|e| format!("cannot run the mariadb client: {e}"))?;
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
    _dir: tempfile::TempDir,
}

impl Sandbox {
    /// `n` servers: the first a writable primary with korc's, the replication and the
    /// application accounts and a `test` database; the others replicating from it with
    /// GTID, caught up.
    pub fn replication(n: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("korc-sandbox-")
            .tempdir()
            .unwrap();
        // Datadirs are copied in parallel; the servers are started from this thread,
        // since they die with the thread that started them.
        let mut servers: Vec<Server> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..=n as u32)
                .map(|id| {
                    let root = dir.path().to_path_buf();
                    scope.spawn(move || Server::create(&root, id))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for s in &mut servers {
            s.start();
        }
        let sb = Self { servers, _dir: dir };
        let primary = &sb.servers[0];
        primary.sql(&format!(
            "CREATE USER '{a}'@'%' IDENTIFIED BY '{ap}'; GRANT ALL PRIVILEGES ON *.* TO '{a}'@'%' WITH GRANT OPTION; \
             CREATE USER '{r}'@'%' IDENTIFIED BY '{rp}'; \
             GRANT REPLICATION SLAVE, REPLICATION CLIENT, SLAVE MONITOR, BINLOG MONITOR ON *.* TO '{r}'@'%'; \
             CREATE DATABASE test; CREATE USER '{u}'@'%' IDENTIFIED BY '{up}'; \
             GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON test.* TO '{u}'@'%'; \
             CREATE TABLE test.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(64)); \
             SET GLOBAL read_only = 0",
            a = ADMIN.0, ap = ADMIN.1, r = REPL.0, rp = REPL.1, u = APP.0, up = APP.1
        ));
        for replica in &sb.servers[1..] {
            replica.replicate_from(primary);
        }
        for replica in &sb.servers[1..] {
            replica.wait_caught_up(primary);
        }
        sb
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

/// Runs the korc binary with the sandbox's admin credentials.
pub fn korc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_korc"))
        .args(args)
        .env("KORC_MYSQL_USER", ADMIN.0)
        .env("KORC_MYSQL_PASSWORD", ADMIN.1)
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
