//! Finding the binaries that `e2e/prereqs` installs into the cache.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Paths of the control-plane binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// etcd 3.5.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
    /// kube-scheduler.
    pub kube_scheduler: PathBuf,
}

impl Binaries {
    /// Looks the binaries up in [`bin_dir`], failing with a hint to run `e2e/prereqs`
    /// when one is missing.
    pub fn locate() -> Result<Self> {
        let dir = bin_dir();
        Ok(Self {
            etcd: find(&dir, "etcd")?,
            kube_apiserver: find(&dir, "kube-apiserver")?,
            kube_controller_manager: find(&dir, "kube-controller-manager")?,
            kube_scheduler: find(&dir, "kube-scheduler")?,
        })
    }
}

/// The directory holding the binaries: `$KORC_E2E_BIN`, else
/// `${KORC_CACHE:-$HOME/.cache/korc}/bin`, where `e2e/prereqs` links them.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KORC_E2E_BIN") {
        return PathBuf::from(dir);
    }
    cache_dir().join("bin")
}

/// The MySQL server `e2e/prereqs` unpacks: `${KORC_CACHE:-$HOME/.cache/korc}/mysql`
/// (`bin/` with `mysqld`, `mysql`, `mysqladmin`; `root/usr` its base directory).
pub fn mysql_dir() -> PathBuf {
    cache_dir().join("mysql")
}

/// `${KORC_CACHE:-$HOME/.cache/korc}`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KORC_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    home.join(".cache").join("korc")
}

fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    // A dangling symlink (cache wiped) counts as missing.
    if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
        Ok(path)
    } else {
        Err(Error::MissingBinary {
            name: name.to_owned(),
            path,
        })
    }
}
