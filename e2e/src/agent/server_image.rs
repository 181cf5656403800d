//! What the official MariaDB and MySQL images have in common: where they read
//! configuration and data, the first-start environment (`*_ROOT_PASSWORD`,
//! `*_DATABASE`, `*_USER`…) and the `/docker-entrypoint-initdb.d` scripts.
//!
//! The flavor modules (`mariadb`, `mysql`) decide how the server is initialised and
//! started; this module builds the files both need from the pod.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::volumes::MountTable;
use crate::error::{IoContext, Result};

/// Container paths whose `*.cnf` files the server reads, as in the official images.
const CONFIG_MOUNTS: &[&str] = &["/etc/mysql", "/etc/my.cnf", "/etc/my.cnf.d"];
/// The official images' data directory.
pub(crate) const DATADIR: &str = "/var/lib/mysql";
/// The official images' directory of first-start scripts.
const INITDB: &str = "/docker-entrypoint-initdb.d";

/// Files generated for one server container.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Directory holding the shims; goes first on `PATH`.
    pub bin: PathBuf,
    /// Goes into `MYSQL_HOME`, so clients in the container find the socket.
    pub home: PathBuf,
    /// The server's unix socket.
    pub socket: PathBuf,
}

/// The server an image carries: decides the environment's names and the root
/// account's authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    /// MariaDB: `MARIADB_*` first, then the `MYSQL_*` names it still honours.
    MariaDb,
    /// MySQL (and Percona Server): `MYSQL_*` only.
    MySql,
}

impl Server {
    fn prefixes(self) -> &'static [&'static str] {
        match self {
            Self::MariaDb => &["MARIADB_", "MYSQL_"],
            Self::MySql => &["MYSQL_"],
        }
    }
}

/// The image's first-start environment, read with the server's names.
pub(crate) struct FirstStart<'a> {
    server: Server,
    vars: HashMap<&'a str, &'a str>,
}

impl<'a> FirstStart<'a> {
    /// Reads the container's environment.
    pub fn new(server: Server, env: &'a [(String, String)]) -> Self {
        let vars = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self { server, vars }
    }

    /// The value of `name` under the first prefix that sets it non-empty.
    fn get(&self, name: &str) -> Option<&'a str> {
        self.server
            .prefixes()
            .iter()
            .find_map(|p| self.vars.get(format!("{p}{name}").as_str()))
            .copied()
            .filter(|v| !v.is_empty())
    }

    /// The root password the image sets: `*_ROOT_PASSWORD`, else a random one when
    /// `*_RANDOM_ROOT_PASSWORD` asks for it, else none (an empty password).
    pub fn root_password(&self) -> Result<Option<String>> {
        match self.get("ROOT_PASSWORD") {
            Some(pw) => Ok(Some(pw.to_owned())),
            None if self.get("RANDOM_ROOT_PASSWORD").is_some() => random_password().map(Some),
            None => Ok(None),
        }
    }

    /// The SQL the image runs on a new data directory, root's password being
    /// `root_password`: root's accounts, `*_DATABASE`, `*_USER`/`*_PASSWORD`. It runs
    /// with the binary log off, so no instance gets GTIDs of its own (every replica
    /// runs it too).
    pub fn statements(&self, root_password: Option<&str>) -> String {
        let mut sql = String::from("SET SESSION sql_log_bin=0;\n");
        let root_host = self.get("ROOT_HOST").unwrap_or("%");
        let allow_empty = match self.server {
            Server::MariaDb => self.get("ALLOW_EMPTY_ROOT_PASSWORD"),
            Server::MySql => self.get("ALLOW_EMPTY_PASSWORD"),
        }
        .is_some();
        let remote_root = |sql: &mut String, identified: &str| {
            if root_host != "localhost" {
                let host = sql_quote(root_host);
                sql.push_str(&format!(
                    "CREATE USER IF NOT EXISTS 'root'@{host}{identified};\n\
                     GRANT ALL ON *.* TO 'root'@{host} WITH GRANT OPTION;\n"
                ));
            }
        };
        if let Some(password) = root_password {
            let pw = sql_quote(password);
            sql.push_str(&match self.server {
                // Root keeps socket authentication, as in the official image.
                Server::MariaDb => format!(
                    "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD({pw}) OR unix_socket;\n"
                ),
                Server::MySql => format!("ALTER USER 'root'@'localhost' IDENTIFIED BY {pw};\n"),
            });
            remote_root(&mut sql, &format!(" IDENTIFIED BY {pw}"));
        } else if allow_empty {
            remote_root(&mut sql, "");
        }
        let database = self.get("DATABASE");
        if let Some(db) = database {
            sql.push_str(&format!(
                "CREATE DATABASE IF NOT EXISTS `{}`;\n",
                db.replace('`', "``")
            ));
        }
        if let (Some(user), Some(password)) = (self.get("USER"), self.get("PASSWORD")) {
            let user = sql_quote(user);
            sql.push_str(&format!(
                "CREATE USER IF NOT EXISTS {user}@'%' IDENTIFIED BY {};\n",
                sql_quote(password)
            ));
            if let Some(db) = database {
                sql.push_str(&format!(
                    "GRANT ALL ON `{}`.* TO {user}@'%';\n",
                    db.replace('`', "``")
                ));
            }
        }
        sql
    }
}

/// A random password, as `*_RANDOM_ROOT_PASSWORD` asks for.
fn random_password() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context(|| "reading /dev/urandom".to_owned())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The first-start scripts mounted at `/docker-entrypoint-initdb.d`, in the order
/// the image runs them (by name).
pub(crate) fn initdb_scripts(mounts: &MountTable) -> Vec<PathBuf> {
    let Some(dir) = mounts.host_path(INITDB) else {
        return Vec::new();
    };
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    scripts.sort();
    scripts
}

/// Copies every `*.cnf` mounted where the image reads configuration into `confd`
/// (emptied first: an init container may have written new config), container paths
/// rewritten to this node's, and returns the copies in include order.
pub(crate) fn mounted_config(confd: &Path, mounts: &MountTable) -> Result<Vec<PathBuf>> {
    let _ = std::fs::remove_dir_all(confd);
    std::fs::create_dir_all(confd).context(|| format!("creating {}", confd.display()))?;
    let mut includes = Vec::new();
    for (mount, host) in mounts.entries() {
        if !CONFIG_MOUNTS
            .iter()
            .any(|c| mount == c || mount.starts_with(&format!("{c}/")))
        {
            continue;
        }
        for file in cnf_files(host) {
            let text =
                std::fs::read_to_string(&file).context(|| format!("reading {}", file.display()))?;
            let target = confd.join(format!(
                "{:02}-{}",
                includes.len(),
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            let rewritten: String = text
                .lines()
                // Their includes point into the container's file system; ours cover the files.
                .filter(|l| !l.trim_start().starts_with('!'))
                .map(|l| mounts.rewrite(l) + "\n")
                .collect();
            std::fs::write(&target, rewritten)
                .context(|| format!("writing {}", target.display()))?;
            includes.push(target);
        }
    }
    Ok(includes)
}

/// The server's option file: clients use `socket` as root; the server's `section`
/// gets `pinned` and `defaults`, then the pod's `includes` (which may change the
/// defaults), then `pinned` again so the pod's files cannot move the server off
/// this pod's paths and address.
pub(crate) fn option_file(
    section: &str,
    socket: &Path,
    pinned: &str,
    defaults: &str,
    includes: &[PathBuf],
) -> String {
    let mut cnf = String::from("# Generated by korc-node-agent for this container.\n");
    cnf.push_str(&format!(
        "[client]\nsocket={}\nuser=root\n\n",
        socket.display()
    ));
    cnf.push_str(&format!("[{section}]\n{pinned}{defaults}\n"));
    for include in includes {
        cnf.push_str(&format!("!include {}\n", include.display()));
    }
    cnf.push_str(&format!(
        "\n# Pinned to this pod whatever the included files say.\n[{section}]\n{pinned}"
    ));
    cnf
}

/// `*.cnf` files under `path` (or `path` itself), sorted, as `!includedir` would read them.
fn cnf_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "cnf") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// The official images' `docker-entrypoint.sh` contract: options or one of
/// `server_names` start `server` with the rest as arguments; anything else runs as is.
pub(crate) fn entrypoint(server: &Path, server_names: &[&str]) -> String {
    format!(
        "#!/bin/sh\n\
         # Generated by korc-node-agent: the official image's entrypoint contract.\n\
         case \"$1\" in\n\
         \t-*) exec {server} \"$@\" ;;\n\
         \t{names}) shift; exec {server} \"$@\" ;;\n\
         \t*) exec \"$@\" ;;\n\
         esac\n",
        server = shell_quote(&server.display().to_string()),
        names = server_names.join("|"),
    )
}

/// A string literal for SQL.
pub(crate) fn sql_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A word for `sh`.
pub(crate) fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// A path as a word for `sh`.
pub(crate) fn shell_path(path: &Path) -> String {
    shell_quote(&path.display().to_string())
}

/// Writes `contents` to `path` with permissions `mode`.
pub(crate) fn write(path: &Path, contents: &str, mode: u32) -> Result<()> {
    std::fs::write(path, contents).context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .context(|| format!("setting mode of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn mariadb_reads_its_own_names_before_mysql_ones() {
        let env = env(&[
            ("MARIADB_ROOT_PASSWORD", "s3'cret"),
            ("MYSQL_ROOT_PASSWORD", "ignored"),
            ("MYSQL_DATABASE", "app"),
            ("MARIADB_USER", "u"),
            ("MARIADB_PASSWORD", "p"),
        ]);
        let first = FirstStart::new(Server::MariaDb, &env);
        let pw = first.root_password().expect("root password");
        assert_eq!(pw.as_deref(), Some("s3'cret"));
        let sql = first.statements(pw.as_deref());
        assert!(sql.starts_with("SET SESSION sql_log_bin=0;"));
        assert!(sql.contains("PASSWORD('s3\\'cret') OR unix_socket"));
        assert!(sql.contains("CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY 's3\\'cret'"));
        assert!(sql.contains("CREATE DATABASE IF NOT EXISTS `app`"));
        assert!(sql.contains("GRANT ALL ON `app`.* TO 'u'@'%'"));
    }

    #[test]
    fn mysql_reads_only_mysql_names() {
        let env = env(&[
            ("MARIADB_ROOT_PASSWORD", "not-mine"),
            ("MYSQL_ROOT_PASSWORD", "pw"),
            ("MYSQL_ROOT_HOST", "10.%"),
        ]);
        let first = FirstStart::new(Server::MySql, &env);
        let pw = first.root_password().expect("root password");
        let sql = first.statements(pw.as_deref());
        assert!(sql.contains("ALTER USER 'root'@'localhost' IDENTIFIED BY 'pw';"));
        assert!(!sql.contains("unix_socket") && !sql.contains("not-mine"));
        assert!(sql.contains("CREATE USER IF NOT EXISTS 'root'@'10.%' IDENTIFIED BY 'pw'"));
    }

    #[test]
    fn empty_and_random_root_passwords() {
        let empty = env(&[("MYSQL_ALLOW_EMPTY_PASSWORD", "yes")]);
        let first = FirstStart::new(Server::MySql, &empty);
        assert_eq!(first.root_password().expect("root password"), None);
        let sql = first.statements(None);
        assert!(sql.contains("CREATE USER IF NOT EXISTS 'root'@'%';"));
        assert!(!sql.contains("ALTER USER"));

        let random = env(&[("MYSQL_RANDOM_ROOT_PASSWORD", "1")]);
        let first = FirstStart::new(Server::MySql, &random);
        let generated = first.root_password().expect("random").expect("a password");
        assert_eq!(generated.len(), 32);
        assert_ne!(Some(generated), first.root_password().expect("random"));

        let nothing: Vec<(String, String)> = Vec::new();
        let sql = FirstStart::new(Server::MySql, &nothing).statements(None);
        assert_eq!(
            sql, "SET SESSION sql_log_bin=0;\n",
            "no root account for others"
        );
    }

    #[test]
    fn the_entrypoint_runs_the_server_for_options_and_its_names() {
        let script = entrypoint(Path::new("/c/bin/mysqld"), &["mysqld"]);
        assert!(script.contains("-*) exec '/c/bin/mysqld' \"$@\""));
        assert!(script.contains("mysqld) shift; exec '/c/bin/mysqld' \"$@\""));
        assert!(script.contains("*) exec \"$@\""));
    }
}
