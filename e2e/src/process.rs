//! Child processes that cannot outlive their owner.
//!
//! Every process is started in its own process group (so a signal reaches the
//! whole tree a shell may have forked) and with `PR_SET_PDEATHSIG`, so the kernel
//! kills it when the spawning thread dies, even if the owner is killed with
//! SIGKILL and no destructor runs. Because the death signal is tied to the
//! spawning *thread*, all spawns happen on the long-lived thread that runs the
//! control plane (or the node agent's main thread), never on a pooled thread.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::error::{IoContext, Result};

/// What to start: program, arguments, environment, working directory and log.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The program, looked up on `PATH` of `env` when it has no slash.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The complete environment (nothing is inherited when `clear_env` is set).
    pub env: Vec<(String, String)>,
    /// Start from an empty environment instead of the parent's.
    pub clear_env: bool,
    /// Working directory.
    pub cwd: PathBuf,
    /// File that receives stdout and stderr (appended).
    pub log: PathBuf,
    /// The `cgroup.procs` of the cgroup v2 to start the process in, if any.
    pub cgroup: Option<PathBuf>,
}

/// A running child process in its own process group.
#[derive(Debug)]
pub struct Supervised {
    child: tokio::process::Child,
    pid: i32,
}

impl Supervised {
    /// Starts `launch`.
    pub fn spawn(launch: &Launch) -> Result<Self> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .context(|| format!("opening log {}", launch.log.display()))?;
        let log_err = log
            .try_clone()
            .context(|| format!("duplicating log {}", launch.log.display()))?;
        let mut cmd = tokio::process::Command::new(resolve(&launch.program, &launch.env));
        cmd.args(&launch.args)
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(true);
        if launch.clear_env {
            cmd.env_clear();
        }
        cmd.envs(
            launch
                .env
                .iter()
                .map(|(k, v)| (OsStr::new(k), OsStr::new(v))),
        );
        let cgroup = match &launch.cgroup {
            Some(procs) => Some(
                std::ffi::CString::new(procs.as_os_str().as_encoded_bytes())
                    .map_err(std::io::Error::other)
                    .context(|| format!("cgroup {}", procs.display()))?,
            ),
            None => None,
        };
        // SAFETY: prctl, open, write and close are async-signal-safe; the path was
        // allocated before the fork and is only read.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(procs) = &cgroup {
                    // "0" moves the writing process: the child, before it execs.
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let error = std::io::Error::last_os_error();
                    libc::close(fd);
                    if written != 1 {
                        return Err(error);
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .context(|| format!("starting {} {}", launch.program, launch.args.join(" ")))?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or_default();
        Ok(Self { child, pid })
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Returns the exit status if the process has exited, without blocking.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        self.child.wait().await.ok()
    }

    /// Sends `signal` to the main process only.
    pub fn signal(&self, signal: i32) {
        send(self.pid, signal);
    }

    /// Sends `signal` to the whole process group.
    pub fn signal_group(&self, signal: i32) {
        send(-self.pid, signal);
    }

    /// SIGTERM, then SIGKILL to the group after `grace`; returns the exit status.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_wait() {
            self.signal_group(libc::SIGKILL);
            return Some(status);
        }
        self.signal(libc::SIGTERM);
        // A stopped process cannot act on SIGTERM.
        self.signal(libc::SIGCONT);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                self.signal_group(libc::SIGKILL);
                self.child.wait().await.ok()
            }
        };
        // Reap anything the main process left behind in its group.
        self.signal_group(libc::SIGKILL);
        status
    }

    /// SIGKILL to the group, then reap.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        self.signal_group(libc::SIGKILL);
        self.child.wait().await.ok()
    }
}

fn send(pid: i32, signal: i32) {
    if pid != 0 && pid != -1 {
        // SAFETY: kill(2) with a concrete pid or process group; errors (ESRCH) are expected
        // when the process is already gone and need no handling.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Resolves a bare program name against the `PATH` the child will see, since
/// `Command` searches the parent's `PATH` instead.
fn resolve(program: &str, env: &[(String, String)]) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    path.split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| PathBuf::from(program))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
