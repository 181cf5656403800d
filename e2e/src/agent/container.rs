//! Turning a container spec into a local process launch.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;

use super::env::expand;
use super::images::Runtime;
use super::mariadb;
use super::mysql;
use super::volumes::MountTable;
use crate::error::{Error, IoContext, Result};
use crate::process::Launch;

/// `PATH` for containers that do not set one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Pod-wide inputs to a container launch.
#[derive(Debug, Clone)]
pub(crate) struct PodScope {
    /// The pod's hostname (`HOSTNAME`).
    pub hostname: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The pod's kubeconfig (service-account token), if it has one.
    pub kubeconfig: Option<PathBuf>,
    /// The korc binary for korc images.
    pub korc_binary: PathBuf,
    /// The MySQL installation for MySQL images.
    pub mysql_dir: PathBuf,
    /// The `cgroup.procs` of the pod's cgroup, if pods run in cgroups.
    pub cgroup: Option<PathBuf>,
}

/// Where one container's private files live.
#[derive(Debug, Clone)]
pub(crate) struct ContainerFiles {
    /// Private directory (config, shims, tmp, `HOME`).
    pub dir: PathBuf,
    /// Unix socket path for servers (kept short: at most 108 bytes).
    pub socket: PathBuf,
    /// Log file receiving stdout and stderr.
    pub log: PathBuf,
    /// Where a server's socket path is written (`server_socket_pointer`).
    pub socket_pointer: PathBuf,
}

/// A container ready to start: how to launch it, plus what exec probes need.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The main process.
    pub launch: Launch,
    /// The mounts (exec probes rewrite their commands with them).
    pub mounts: MountTable,
}

impl Plan {
    /// A launch of `argv` in this container's environment (for exec probes).
    pub fn exec(&self, argv: &[String], log: PathBuf) -> Option<Launch> {
        let vars: HashMap<&str, &str> = self
            .launch
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut argv = argv.iter().map(|a| self.mounts.rewrite(&expand(a, &vars)));
        let program = argv.next()?;
        Some(Launch {
            program,
            args: argv.collect(),
            env: self.launch.env.clone(),
            clear_env: true,
            cwd: self.launch.cwd.clone(),
            log,
            cgroup: self.launch.cgroup.clone(),
        })
    }
}

/// Programs of a server image's containers that run with the image's shims on `PATH`
/// (the server, its entrypoint, or a shell that may start either).
const SERVER_PROGRAMS: &[&str] = &[
    "docker-entrypoint.sh",
    "mariadbd",
    "mysqld",
    "healthcheck.sh",
    "sh",
    "bash",
    "dash",
];

/// How a container of a server image runs: an explicit command of another program
/// (korc's agent, a tool) is a plain local process, with the host's MariaDB tools
/// (`mariadb-backup`, `mbstream`) on `PATH` like the image's.
pub(crate) fn effective_runtime(container: &Container, runtime: Runtime) -> Runtime {
    let program = container
        .command
        .as_ref()
        .and_then(|c| c.first())
        .and_then(|p| Path::new(p).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    match (runtime, program) {
        (Runtime::MariaDb | Runtime::MySql, Some(p)) if !SERVER_PROGRAMS.contains(&p.as_str()) => {
            Runtime::Command
        }
        _ => runtime,
    }
}

/// Plans `container` with its resolved environment.
pub(crate) fn plan(
    scope: &PodScope,
    container: &Container,
    runtime: Runtime,
    files: &ContainerFiles,
    mounts: MountTable,
    env: Vec<(String, String)>,
) -> Result<Plan> {
    let runtime = effective_runtime(container, runtime);
    let dir = files.dir.as_path();
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).context(|| format!("creating {}", tmp.display()))?;
    let mut vars: Vec<(String, String)> = vec![
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOSTNAME".to_owned(), scope.hostname.clone()),
        ("HOME".to_owned(), dir.display().to_string()),
        ("TMPDIR".to_owned(), tmp.display().to_string()),
        ("POD_IP".to_owned(), scope.ip.to_string()),
    ];
    if let Some(kubeconfig) = &scope.kubeconfig {
        vars.push(("KUBECONFIG".to_owned(), kubeconfig.display().to_string()));
    }
    for (k, v) in env {
        let v = mounts.rewrite(&v);
        vars.retain(|(name, _)| *name != k);
        vars.push((k, v));
    }
    let spec_argv: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .cloned()
        .collect();
    let argv: Vec<String> = match runtime {
        Runtime::MariaDb | Runtime::MySql => {
            let (layout, server) = if runtime == Runtime::MariaDb {
                let layout = mariadb::prepare(dir, &files.socket, scope.ip, &mounts, &vars)?;
                (layout, "mariadbd")
            } else {
                let install = mysql::Installation::at(&scope.mysql_dir)?;
                let layout =
                    mysql::prepare(&install, dir, &files.socket, scope.ip, &mounts, &vars)?;
                (layout, "mysqld")
            };
            let path = vars
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| format!("{}:{v}", layout.bin.display()))
                .unwrap_or_default();
            set(&mut vars, "PATH", path);
            set(&mut vars, "MYSQL_HOME", layout.home.display().to_string());
            set(
                &mut vars,
                "MYSQL_UNIX_PORT",
                layout.socket.display().to_string(),
            );
            if container.command.as_ref().is_none_or(Vec::is_empty) {
                // The image's ENTRYPOINT and default CMD.
                let mut argv = vec!["docker-entrypoint.sh".to_owned()];
                match container.args.as_ref().filter(|a| !a.is_empty()) {
                    Some(args) => argv.extend(args.iter().cloned()),
                    None => argv.push(server.to_owned()),
                }
                argv
            } else {
                spec_argv
            }
        }
        Runtime::Korc => {
            let binary = scope.korc_binary.display().to_string();
            match container.command.as_ref().filter(|c| !c.is_empty()) {
                // The image's entrypoint is the korc binary; args follow it.
                None => std::iter::once(binary)
                    .chain(container.args.iter().flatten().cloned())
                    .collect(),
                Some(command) => {
                    let mut argv = spec_argv.clone();
                    if Path::new(&command[0])
                        .file_name()
                        .is_some_and(|n| n == "korc")
                    {
                        argv[0] = binary;
                    }
                    argv
                }
            }
        }
        Runtime::Command => {
            if spec_argv.is_empty() {
                return Err(Error::PodSpec(format!(
                    "container {} has neither command nor args, and a local node cannot know image {}'s entrypoint",
                    container.name,
                    container.image.as_deref().unwrap_or_default()
                )));
            }
            spec_argv
        }
    };
    let lookup: HashMap<&str, &str> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut argv = argv.iter().map(|a| mounts.rewrite(&expand(a, &lookup)));
    let program = argv.next().unwrap_or_default();
    let args: Vec<String> = argv.collect();
    let cwd = container
        .working_dir
        .as_deref()
        .and_then(|w| mounts.host_path(w))
        .unwrap_or_else(|| dir.to_path_buf());
    Ok(Plan {
        launch: Launch {
            program,
            args,
            env: vars,
            clear_env: true,
            cwd,
            log: files.log.clone(),
            cgroup: scope.cgroup.clone(),
        },
        mounts,
    })
}

fn set(vars: &mut Vec<(String, String)>, name: &str, value: String) {
    vars.retain(|(k, _)| k != name);
    vars.push((name.to_owned(), value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> PodScope {
        PodScope {
            hostname: "korc-0".to_owned(),
            ip: Ipv4Addr::new(127, 9, 0, 1),
            kubeconfig: Some(PathBuf::from("/state/pod/kubeconfig")),
            korc_binary: PathBuf::from("/build/korc"),
            mysql_dir: PathBuf::from("/cache/mysql"),
            cgroup: None,
        }
    }

    fn files(dir: &Path) -> ContainerFiles {
        ContainerFiles {
            dir: dir.to_path_buf(),
            socket: dir.join("s.sock"),
            log: dir.join("c.log"),
            socket_pointer: dir.join("c.socket"),
        }
    }

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).expect("container")
    }

    #[test]
    fn korc_images_run_the_local_binary_with_a_kubeconfig() {
        let dir = std::env::temp_dir().join(format!("korc-plan-test-{}", std::process::id()));
        let c = container(serde_json::json!({
            "name": "operator", "image": "ghcr.io/korc-dev/korc:0.1.0",
            "args": ["run", "--namespace=$(NS)"],
        }));
        let env = vec![("NS".to_owned(), "db".to_owned())];
        let planned = super::plan(
            &scope(),
            &c,
            Runtime::Korc,
            &files(&dir),
            MountTable::default(),
            env,
        )
        .expect("plan");
        assert_eq!(planned.launch.program, "/build/korc");
        assert_eq!(planned.launch.args, ["run", "--namespace=db"]);
        assert!(
            planned
                .launch
                .env
                .contains(&("KUBECONFIG".to_owned(), "/state/pod/kubeconfig".to_owned()))
        );

        let c = container(serde_json::json!({
            "name": "operator", "image": "korc", "command": ["/usr/local/bin/korc", "run"],
        }));
        let planned = super::plan(
            &scope(),
            &c,
            Runtime::Korc,
            &files(&dir),
            MountTable::default(),
            Vec::new(),
        )
        .expect("plan");
        assert_eq!(planned.launch.program, "/build/korc");
        assert_eq!(planned.launch.args, ["run"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn mysql_images_run_the_entrypoint_shim_or_fail_naming_the_prerequisites() {
        let dir = std::env::temp_dir().join(format!("korc-plan-test3-{}", std::process::id()));
        let c = container(serde_json::json!({
            "name": "mysql", "image": "mysql:8.4", "args": ["--server-id=1$(N)"],
        }));
        let env = vec![("N".to_owned(), "2".to_owned())];
        let err = plan(
            &scope(),
            &c,
            Runtime::MySql,
            &files(&dir),
            MountTable::default(),
            env.clone(),
        )
        .expect_err("no MySQL installed at /cache/mysql");
        assert!(err.to_string().contains("run e2e/prereqs"), "{err}");

        let install = dir.join("install");
        std::fs::create_dir_all(install.join("bin")).unwrap();
        std::fs::create_dir_all(install.join("root/usr")).unwrap();
        std::fs::write(install.join("bin/mysqld"), "").unwrap();
        let mut scope = scope();
        scope.mysql_dir = install;
        let planned = plan(
            &scope,
            &c,
            Runtime::MySql,
            &files(&dir),
            MountTable::default(),
            env,
        )
        .expect("plan");
        assert_eq!(planned.launch.program, "docker-entrypoint.sh");
        assert_eq!(planned.launch.args, ["--server-id=12"]);
        let path = &planned
            .launch
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .unwrap()
            .1;
        assert!(path.starts_with(&format!("{}:", dir.join("bin").display())));

        let c = container(serde_json::json!({ "name": "mysql", "image": "mysql:8.4" }));
        let planned = plan(
            &scope,
            &c,
            Runtime::MySql,
            &files(&dir),
            MountTable::default(),
            Vec::new(),
        )
        .expect("plan");
        assert_eq!(planned.launch.args, ["mysqld"], "the image's default CMD");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn server_images_run_other_programs_as_plain_processes() {
        let dir = std::env::temp_dir().join(format!("korc-plan-test4-{}", std::process::id()));
        let c = container(serde_json::json!({
            "name": "agent", "image": "mariadb:10.11",
            "command": ["/korc-tools/korc", "agent", "serve", "--listen=$(POD_IP):3307"],
        }));
        let planned = plan(
            &scope(),
            &c,
            Runtime::MariaDb,
            &files(&dir),
            MountTable::default(),
            Vec::new(),
        )
        .expect("plan");
        assert_eq!(planned.launch.program, "/korc-tools/korc");
        assert_eq!(
            planned.launch.args,
            ["agent", "serve", "--listen=127.9.0.1:3307"]
        );
        assert!(!dir.join("my.cnf").exists(), "no server prepared");
        assert_eq!(effective_runtime(&c, Runtime::Korc), Runtime::Korc);
        for program in ["mariadbd", "/usr/local/bin/docker-entrypoint.sh", "sh"] {
            let c = container(serde_json::json!({
                "name": "mysql", "image": "mariadb:10.11", "command": [program],
            }));
            assert_eq!(
                effective_runtime(&c, Runtime::MariaDb),
                Runtime::MariaDb,
                "{program}"
            );
        }
        let c = container(serde_json::json!({ "name": "mysql", "image": "mariadb:10.11" }));
        assert_eq!(effective_runtime(&c, Runtime::MariaDb), Runtime::MariaDb);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn other_images_need_a_command() {
        let dir = std::env::temp_dir().join(format!("korc-plan-test2-{}", std::process::id()));
        let c = container(serde_json::json!({ "name": "c", "image": "busybox" }));
        let err = plan(
            &scope(),
            &c,
            Runtime::Command,
            &files(&dir),
            MountTable::default(),
            Vec::new(),
        )
        .expect_err("no command");
        assert!(err.to_string().contains("neither command nor args"));
        let c = container(serde_json::json!({
            "name": "c", "image": "busybox", "command": ["sh", "-c"], "args": ["echo $(X) $$(X)"],
        }));
        let env = vec![("X".to_owned(), "1".to_owned())];
        let planned = super::plan(
            &scope(),
            &c,
            Runtime::Command,
            &files(&dir),
            MountTable::default(),
            env,
        )
        .expect("plan");
        assert_eq!(planned.launch.program, "sh");
        assert_eq!(planned.launch.args, ["-c", "echo 1 $(X)"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
