//! Running a MySQL image (`mysql`, `mysql/mysql-server`, Percona Server) with the
//! MySQL server `e2e/prereqs` unpacks into the cache.
//!
//! Shims on the container's `PATH` stand in for the official image's
//! `docker-entrypoint.sh`, `mysqld`, `mysql` and `mysqladmin`. The `mysqld` shim
//! initialises a new data directory as the official entrypoint does: `mysqld
//! --initialize-insecure` with the pod's configuration and arguments, then a
//! temporary server without networking (also with the pod's configuration, so a
//! configuration that makes the server read-only binds the initialisation as it
//! would in the image), the SQL of the image's `MYSQL_*` environment, then the
//! `*.sql` and `*.sh` files of `/docker-entrypoint-initdb.d`, and a shutdown. The
//! server always starts with the generated `my.cnf` first, which adds what the
//! private build needs (its base, message and plugin directories), includes the
//! pod's mounted configuration and pins paths and address to this pod.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::server_image::{
    self, DATADIR, FirstStart, Layout, Server, entrypoint, option_file, shell_path, write,
};
use super::volumes::MountTable;
use crate::error::{Error, IoContext, Result};

/// The MySQL installation `e2e/prereqs` made: `bin/` holds the `mysqld`, `mysql`
/// and `mysqladmin` wrappers, `root/usr` is the server's base directory.
#[derive(Debug, Clone)]
pub(crate) struct Installation {
    dir: PathBuf,
}

impl Installation {
    /// The installation at `dir`, failing with a hint to run `e2e/prereqs` when its
    /// server is missing.
    pub fn at(dir: &Path) -> Result<Self> {
        let install = Self {
            dir: dir.to_path_buf(),
        };
        for path in [install.program("mysqld"), install.basedir()] {
            if !path.exists() {
                return Err(Error::MissingMysql { path });
            }
        }
        Ok(install)
    }

    fn program(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    fn basedir(&self) -> PathBuf {
        self.dir.join("root").join("usr")
    }
}

/// Writes config, shims and first-start SQL for a container whose private directory
/// is `dir`, serving on `ip:3306`.
pub(crate) fn prepare(
    install: &Installation,
    dir: &Path,
    socket: &Path,
    ip: Ipv4Addr,
    mounts: &MountTable,
    env: &[(String, String)],
) -> Result<Layout> {
    let datadir = mounts
        .host_path(DATADIR)
        .unwrap_or_else(|| dir.join("data"));
    let tmp = dir.join("tmp");
    let bin = dir.join("bin");
    // The server refuses to start unless secure-file-priv names an existing directory.
    let files = dir.join("files");
    for d in [&datadir, &tmp, &bin, &files] {
        std::fs::create_dir_all(d).context(|| format!("creating {}", d.display()))?;
    }
    let includes = server_image::mounted_config(&dir.join("cnf.d"), mounts)?;
    let basedir = install.basedir();
    let pinned = format!(
        "user=root\ndatadir={datadir}\nsocket={socket}\npid-file={pid}\ntmpdir={tmp}\nbind-address={ip}\n\
         basedir={base}\nlc-messages-dir={messages}\nplugin_dir={plugins}\nsecure-file-priv={files}\nmysqlx=OFF\n",
        datadir = datadir.display(),
        socket = socket.display(),
        pid = dir.join("mysqld.pid").display(),
        tmp = tmp.display(),
        base = basedir.display(),
        messages = basedir.join("share/mysql").display(),
        plugins = basedir.join("lib/mysql/plugin").display(),
        files = files.display(),
    );
    let cnf = option_file(
        "mysqld",
        socket,
        &pinned,
        // Small defaults for many servers on one machine; the pod's config may raise them.
        "port=3306\nskip-name-resolve\ninnodb_buffer_pool_size=32M\ninnodb_redo_log_capacity=8M\n",
        &includes,
    );
    let cnf_path = dir.join("my.cnf");
    write(&cnf_path, &cnf, 0o644)?;

    let first = FirstStart::new(Server::MySql, env);
    let root_password = first.root_password()?;
    let env_sql = dir.join("init.sql");
    write(&env_sql, &first.statements(root_password.as_deref()), 0o600)?;
    // Root's client options once the environment SQL has set its password.
    let root_cnf = dir.join("root.cnf");
    let mut root_options = format!("[client]\nsocket={}\nuser=root\n", socket.display());
    if let Some(pw) = &root_password {
        root_options.push_str(&format!(
            "password=\"{}\"\n",
            pw.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    write(&root_cnf, &root_options, 0o600)?;

    let database = env
        .iter()
        .find(|(k, v)| k == "MYSQL_DATABASE" && !v.is_empty())
        .map(|(_, v)| v.as_str());
    let scripts = initdb_commands(
        &server_image::initdb_scripts(mounts),
        &bin.join("mysql"),
        &root_cnf,
        database,
    );
    let q = shell_path;
    let mysqld = q(&install.program("mysqld"));
    let server = format!(
        "#!/bin/sh\n\
         # Generated by korc-node-agent: MySQL's mysqld with this pod's configuration.\n\
         set -e\n\
         if [ ! -d {data}/mysql ]; then\n\
         \techo 'korc-node-agent: initializing the data directory' >&2\n\
         \t{mysqld} --defaults-file={cnf} \"$@\" --initialize-insecure\n\
         \t{mysqld} --defaults-file={cnf} \"$@\" --skip-networking &\n\
         \ttemporary=$!\n\
         \tuntil {admin} --defaults-file={cnf} ping >/dev/null 2>&1; do\n\
         \t\tkill -0 \"$temporary\" 2>/dev/null || {{ echo 'korc-node-agent: the temporary server did not start' >&2; exit 1; }}\n\
         \t\tsleep 0.1\n\
         \tdone\n\
         \t{client} --defaults-file={cnf} < {env_sql}\n\
         {scripts}\
         \t{admin} --defaults-file={root_cnf} shutdown\n\
         \twait \"$temporary\"\n\
         \techo 'korc-node-agent: initialization done' >&2\n\
         fi\n\
         exec {mysqld} --defaults-file={cnf} \"$@\"\n",
        data = q(&datadir),
        cnf = q(&cnf_path),
        root_cnf = q(&root_cnf),
        env_sql = q(&env_sql),
        admin = q(&install.program("mysqladmin")),
        client = q(&install.program("mysql")),
    );
    write(&bin.join("mysqld"), &server, 0o755)?;
    write(
        &bin.join("docker-entrypoint.sh"),
        &entrypoint(&bin.join("mysqld"), &["mysqld"]),
        0o755,
    )?;
    for client in ["mysql", "mysqladmin"] {
        write(
            &bin.join(client),
            &client_shim(&install.program(client), &cnf_path),
            0o755,
        )?;
    }
    Ok(Layout {
        bin,
        home: dir.to_path_buf(),
        socket: socket.to_path_buf(),
    })
}

/// The shell lines that run the first-start scripts as the official image does:
/// `*.sql` through the client as root (in `MYSQL_DATABASE` when set), executable
/// `*.sh` run, others sourced; anything else ignored.
fn initdb_commands(
    scripts: &[PathBuf],
    client: &Path,
    root_cnf: &Path,
    database: Option<&str>,
) -> String {
    let db = database
        .map(|d| format!(" --database={}", server_image::shell_quote(d)))
        .unwrap_or_default();
    let mut lines = String::new();
    for script in scripts {
        let path = shell_path(script);
        let name = script.to_string_lossy();
        if name.ends_with(".sql") {
            lines.push_str(&format!(
                "\t{} --defaults-file={}{db} < {path}\n",
                shell_path(client),
                shell_path(root_cnf)
            ));
        } else if name.ends_with(".sh") {
            lines.push_str(&format!(
                "\tif [ -x {path} ]; then {path}; else . {path}; fi\n"
            ));
        } else {
            lines.push_str(&format!("\techo 'ignoring '{path} >&2\n"));
        }
    }
    lines
}

/// A client that reads this container's option file (socket, user root) unless the
/// caller names its own.
fn client_shim(program: &Path, cnf: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         # Generated by korc-node-agent: the MySQL client, finding this pod's server.\n\
         case \"$1\" in\n\
         \t--defaults-file=*|--defaults-extra-file=*|--no-defaults|--print-defaults) exec {program} \"$@\" ;;\n\
         esac\n\
         exec {program} --defaults-file={cnf} \"$@\"\n",
        program = shell_path(program),
        cnf = shell_path(cnf),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A directory standing for the cache's MySQL installation.
    fn installation(root: &Path) -> Installation {
        let dir = root.join("mysql");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("root/usr")).unwrap();
        std::fs::write(dir.join("bin/mysqld"), "").unwrap();
        Installation::at(&dir).expect("installation")
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("korc-mysql-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_missing_server_names_the_prerequisites() {
        let root = scratch("missing");
        let err = Installation::at(&root.join("nothing")).expect_err("missing");
        assert!(err.to_string().contains("e2e/prereqs"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn config_adds_the_private_build_and_pins_the_pod_after_its_files() {
        let root = scratch("cnf");
        let install = installation(&root);
        let dir = root.join("container");
        let config = root.join("volumes/config");
        let data = root.join("volumes/data");
        let initdb = root.join("volumes/init");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::create_dir_all(&initdb).unwrap();
        std::fs::write(
            config.join("korc.cnf"),
            "[mysqld]\nmax_connections=77\ndatadir=/elsewhere\n",
        )
        .unwrap();
        std::fs::write(initdb.join("10-users.sql"), "CREATE USER x;").unwrap();
        std::fs::write(initdb.join("20-setup.sh"), "echo hi").unwrap();
        std::fs::write(initdb.join("README"), "").unwrap();
        let container: k8s_openapi::api::core::v1::Container =
            serde_json::from_value(serde_json::json!({
                "name": "mysql",
                "volumeMounts": [
                    { "name": "config", "mountPath": "/etc/mysql/conf.d" },
                    { "name": "data", "mountPath": "/var/lib/mysql" },
                    { "name": "init", "mountPath": "/docker-entrypoint-initdb.d" },
                ],
            }))
            .unwrap();
        let volumes = HashMap::from([
            ("config".to_owned(), config.clone()),
            ("data".to_owned(), data.clone()),
            ("init".to_owned(), initdb.clone()),
        ]);
        let mounts = MountTable::for_container(&container, &volumes).expect("mounts");
        let env = vec![
            ("MYSQL_ROOT_PASSWORD".to_owned(), "p\"w".to_owned()),
            ("MYSQL_DATABASE".to_owned(), "app".to_owned()),
        ];
        let socket = dir.join("s.sock");
        let layout = prepare(
            &install,
            &dir,
            &socket,
            Ipv4Addr::new(127, 9, 0, 3),
            &mounts,
            &env,
        )
        .expect("prepare");
        assert_eq!(layout.bin, dir.join("bin"));

        let cnf = std::fs::read_to_string(dir.join("my.cnf")).unwrap();
        let basedir = install.basedir().display().to_string();
        for line in [
            "user=root".to_owned(),
            format!("basedir={basedir}"),
            format!("lc-messages-dir={basedir}/share/mysql"),
            format!("plugin_dir={basedir}/lib/mysql/plugin"),
            format!("secure-file-priv={}", dir.join("files").display()),
            "mysqlx=OFF".to_owned(),
            "bind-address=127.9.0.3".to_owned(),
            format!("datadir={}", data.display()),
        ] {
            assert!(cnf.lines().any(|l| l == line), "{line} missing:\n{cnf}");
        }
        // The pod's file is included, and the pinned datadir comes after it.
        let include = cnf.find("!include").expect("include");
        let last_datadir = cnf.rfind("datadir=").unwrap();
        assert!(include < last_datadir, "{cnf}");
        assert!(cnf[last_datadir..].starts_with(&format!("datadir={}", data.display())));
        let included = std::fs::read_to_string(dir.join("cnf.d/00-korc.cnf")).unwrap();
        assert!(included.contains("max_connections=77"));
        assert!(dir.join("files").is_dir(), "secure-file-priv must exist");

        let root_cnf = std::fs::read_to_string(dir.join("root.cnf")).unwrap();
        assert!(root_cnf.contains("password=\"p\\\"w\""), "{root_cnf}");
        let env_sql = std::fs::read_to_string(dir.join("init.sql")).unwrap();
        assert!(env_sql.contains("ALTER USER 'root'@'localhost' IDENTIFIED BY 'p\"w';"));
        assert!(env_sql.contains("CREATE DATABASE IF NOT EXISTS `app`"));

        let shim = std::fs::read_to_string(dir.join("bin/mysqld")).unwrap();
        let mysqld = shell_path(&install.program("mysqld"));
        assert!(shim.contains(&format!(
            "{mysqld} --defaults-file={} \"$@\" --initialize-insecure",
            shell_path(&dir.join("my.cnf"))
        )));
        assert!(shim.contains("--skip-networking &"));
        assert!(shim.contains(&format!(
            "--database='app' < {}",
            shell_path(&initdb.join("10-users.sql"))
        )));
        assert!(shim.contains(&format!(". {}", shell_path(&initdb.join("20-setup.sh")))));
        assert!(shim.contains("ignoring"));
        // Scripts run after the environment's SQL, before the temporary server stops.
        let env_at = shim.find("init.sql").unwrap();
        let users_at = shim.find("10-users.sql").unwrap();
        let shutdown_at = shim.find("shutdown").unwrap();
        assert!(env_at < users_at && users_at < shutdown_at, "{shim}");
        assert!(shim.trim_end().ends_with(&format!(
            "exec {mysqld} --defaults-file={} \"$@\"",
            shell_path(&dir.join("my.cnf"))
        )));

        let entry = std::fs::read_to_string(dir.join("bin/docker-entrypoint.sh")).unwrap();
        assert!(entry.contains("mysqld) shift;"));
        let client = std::fs::read_to_string(dir.join("bin/mysqladmin")).unwrap();
        assert!(client.contains(&format!(
            "--defaults-file={} \"$@\"",
            shell_path(&dir.join("my.cnf"))
        )));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn initdb_commands_follow_the_official_image() {
        let scripts = [PathBuf::from("/i/a.sql"), PathBuf::from("/i/b.sh")];
        let lines = initdb_commands(&scripts, Path::new("/b/mysql"), Path::new("/r.cnf"), None);
        assert_eq!(
            lines.lines().collect::<Vec<_>>(),
            [
                "\t'/b/mysql' --defaults-file='/r.cnf' < '/i/a.sql'",
                "\tif [ -x '/i/b.sh' ]; then '/i/b.sh'; else . '/i/b.sh'; fi",
            ]
        );
    }
}
