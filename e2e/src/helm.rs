//! Installing Helm charts into a local control plane.

use crate::binaries::bin_dir;
use crate::control_plane::ControlPlane;
use crate::error::{Error, IoContext, Result};
use std::path::Path;
use std::process::Command;

/// `helm install RELEASE CHART --namespace NAMESPACE --create-namespace --wait` with
/// `--set` values, against `cp`, using the helm that `e2e/prereqs` installed.
pub fn install(
    cp: &ControlPlane,
    release: &str,
    chart: &Path,
    namespace: &str,
    sets: &[&str],
) -> Result<()> {
    let helm = bin_dir().join("helm");
    if !helm.exists() {
        return Err(Error::MissingBinary {
            name: "helm".into(),
            path: helm,
        });
    }
    let mut cmd = Command::new(&helm);
    cmd.args(["install", release])
        .arg(chart)
        .args([
            "--namespace",
            namespace,
            "--create-namespace",
            "--wait",
            "--timeout",
            "3m",
        ])
        .arg("--kubeconfig")
        .arg(cp.kubeconfig());
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = cmd
        .output()
        .context(|| format!("running {}", helm.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("helm install {release} {}", chart.display()),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
