//! Running `kubectl korc`: the korc binary linked as `kubectl-korc` into a directory put
//! first on PATH, run through the real kubectl from the prereqs cache.

use korc_e2e::ControlPlane;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use tokio::sync::OnceCell;

static PLUGIN_DIR: OnceCell<PathBuf> = OnceCell::const_new();

pub fn kubectl() -> PathBuf {
    let path = korc_e2e::binaries::bin_dir().join("kubectl");
    assert!(
        path.exists(),
        "{} is missing: run e2e/prereqs",
        path.display()
    );
    path
}

/// A directory holding only `kubectl-korc`, a link to the korc binary; the CRD is
/// installed on the way (once per test binary).
pub async fn plugin_dir(cp: &ControlPlane) -> &'static Path {
    PLUGIN_DIR
        .get_or_init(|| async {
            let korc = korc_e2e::agent::default_korc_binary();
            assert!(
                korc.exists(),
                "{} is missing: cargo build -p korc first",
                korc.display()
            );
            let dir = cp.dir().join("plugin-bin");
            std::fs::create_dir_all(&dir).unwrap();
            let link = dir.join("kubectl-korc");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&korc, &link).unwrap();

            let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../crds/mysqlclusters.korc.dev.yaml");
            for args in [
                vec!["apply", "--server-side", "-f", crds.to_str().unwrap()],
                vec![
                    "wait",
                    "--for",
                    "condition=established",
                    "--timeout=30s",
                    "crd/mysqlclusters.korc.dev",
                ],
            ] {
                let out = std::process::Command::new(kubectl())
                    .arg("--kubeconfig")
                    .arg(cp.kubeconfig())
                    .args(&args)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "kubectl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            dir
        })
        .await
}

/// A kubeconfig with the control plane as context `local` (namespace `ns`) and a context
/// `elsewhere` whose server does not exist; `current` is the current context.
pub fn kubeconfig(cp: &ControlPlane, ns: &str, current: &str) -> PathBuf {
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(cp.kubeconfig()).unwrap()).unwrap();
    let cluster = doc["contexts"][0]["context"]["cluster"].clone();
    let user = doc["contexts"][0]["context"]["user"].clone();
    doc["clusters"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}}));
    doc["contexts"] = json!([
        {"name": "local", "context": {"cluster": cluster, "user": user, "namespace": ns}},
        {"name": "elsewhere", "context": {"cluster": "nowhere", "user": user, "namespace": "nowhere"}},
    ]);
    doc["current-context"] = json!(current);
    let path = cp.dir().join(format!("plugin-{ns}-{current}.kubeconfig"));
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// How a test runs `kubectl korc`: the plugin directory first on PATH, KUBECONFIG set.
pub struct Kubectl {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    pub async fn new(cp: &ControlPlane, ns: &str, current: &str) -> Self {
        Self {
            dir: plugin_dir(cp).await.to_path_buf(),
            kubeconfig: kubeconfig(cp, ns, current),
        }
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let path = std::env::var("PATH").unwrap_or_default();
        let mut cmd = tokio::process::Command::new(kubectl());
        cmd.arg("korc")
            .args(args)
            .env("PATH", format!("{}:{path}", self.dir.display()))
            .env("KUBECONFIG", &self.kubeconfig)
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().await.unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "kubectl korc {args:?} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects exit code `code`; returns stderr.
    pub async fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "kubectl korc {args:?}: {stderr}"
        );
        stderr
    }
}
