//! Each pod's processes in a cgroup v2 of their own.
//!
//! Pods share the host's network namespace, and every loopback connection leaves
//! from 127.0.0.1 (the kernel's route source) whatever pod opens it, so addresses
//! cannot tell one pod's connections from another's. A socket keeps the cgroup of the
//! process that created it, so nftables' `socket cgroupv2` can (see [`crate::cuts`]).
//!
//! The cgroups live under `korc-e2e-<B>` of a cgroup v2 hierarchy mounted under
//! `/sys/fs/cgroup` (nftables resolves cgroup paths relative to that directory): the
//! hierarchy itself when `/sys/fs/cgroup` is one, else the one at
//! `/sys/fs/cgroup/unified`, which is mounted when missing (root only). No
//! controller is enabled: the cgroups only label processes.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Where nftables looks up cgroup paths.
const SYSFS_CGROUP: &str = "/sys/fs/cgroup";

/// The control plane's cgroup, parent of its pods' cgroups.
#[derive(Debug)]
pub struct CgroupTree {
    dir: PathBuf,
    /// `dir` relative to [`SYSFS_CGROUP`], as nftables names it.
    nft_dir: String,
    /// The level of `dir` below the hierarchy's root (pods are one deeper).
    level: u32,
}

/// One pod's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    /// Its directory.
    pub dir: PathBuf,
    /// Its path as nftables' `socket cgroupv2` takes it (relative to `/sys/fs/cgroup`).
    pub nft_path: String,
    /// Its level below the hierarchy's root (`socket cgroupv2 level N`).
    pub level: u32,
}

impl PodCgroup {
    /// The file a process is moved into the cgroup through.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Removes the cgroup (it must have no process left; an error is only logged).
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::debug!(cgroup = %self.dir.display(), error = %e, "removing pod cgroup");
        }
    }
}

impl CgroupTree {
    /// The cgroup of the control plane on block `octet`, created afresh (cgroups a
    /// previous run left behind are removed).
    pub fn create(octet: u8) -> Result<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .context(|| "reading /proc/self/mountinfo".to_owned())?;
        let mount = match cgroup2_mount(&mountinfo) {
            Some(mount) => mount,
            None => mount_cgroup2()?,
        };
        let name = format!("korc-e2e-{octet}");
        let dir = mount.join(&name);
        if dir.exists() {
            remove_children(&dir);
        } else {
            std::fs::create_dir(&dir).context(|| format!("creating cgroup {}", dir.display()))?;
        }
        let relative = mount.strip_prefix(SYSFS_CGROUP).map_err(|_| {
            Error::NetworkCut(format!("{} is not under {SYSFS_CGROUP}", mount.display()))
        })?;
        let nft_dir = relative.join(&name).display().to_string();
        Ok(Self {
            dir,
            nft_dir,
            level: 1,
        })
    }

    /// Creates the cgroup `name` for a pod.
    pub fn pod(&self, name: &str) -> Result<PodCgroup> {
        let dir = self.dir.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::Io {
                    what: format!("creating cgroup {}", dir.display()),
                    source: e,
                });
            }
        }
        Ok(PodCgroup {
            dir,
            nft_path: format!("{}/{name}", self.nft_dir),
            level: self.level + 1,
        })
    }

    /// Removes the pods' cgroups that have no process left, and this one if it is empty.
    pub fn remove(&self) {
        remove_children(&self.dir);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn remove_children(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Mounts a cgroup v2 hierarchy at `/sys/fs/cgroup/unified` (where hybrid systems keep it).
fn mount_cgroup2() -> Result<PathBuf> {
    let target = Path::new(SYSFS_CGROUP).join("unified");
    std::fs::create_dir_all(&target).context(|| format!("creating {}", target.display()))?;
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let (source, fstype) = (c("none"), c("cgroup2"));
    let path = c(&target.display().to_string());
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call and no data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(Error::Io {
            what: format!("mounting cgroup2 at {} (needs root)", target.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(target)
}

/// The mount point of a whole cgroup v2 hierarchy at or under `/sys/fs/cgroup`, from
/// the text of `/proc/self/mountinfo`.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mount-point options [optional…] - type source super-options
        let (mounted, fs) = line.split_once(" - ")?;
        let fields: Vec<&str> = mounted.split(' ').collect();
        let (root, point) = (*fields.get(3)?, *fields.get(4)?);
        let in_sysfs = point == SYSFS_CGROUP || point.starts_with(&format!("{SYSFS_CGROUP}/"));
        (fs.split(' ').next() == Some("cgroup2") && root == "/" && in_sysfs)
            .then(|| PathBuf::from(point))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_whole_cgroup2_hierarchy_under_sys_fs_cgroup() {
        let hybrid = "\
35 25 0:30 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 35 0:31 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
44 35 0:39 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        let unified =
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate";
        let bound_subtree = "30 25 0:26 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
        let elsewhere = "30 25 0:26 / /mnt/cg rw - cgroup2 none rw";
        let v1_only = "36 35 0:31 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu";
        for (text, want) in [
            (hybrid, Some("/sys/fs/cgroup/unified")),
            (unified, Some("/sys/fs/cgroup")),
            (bound_subtree, None),
            (elsewhere, None),
            (v1_only, None),
        ] {
            assert_eq!(cgroup2_mount(text), want.map(PathBuf::from), "{text}");
        }
    }
}
