//! `korc import orchestrator` output against a real API server: every sample
//! configuration, hooks included, is a MySQLCluster the API server accepts (schema
//! and CEL rules), and a patch applies to an existing cluster.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{namespace, shared};

const NS: &str = "imported";

fn korc_import(config: &str, extra: &[&str]) -> String {
    let korc = korc_e2e::agent::default_korc_binary();
    let out = Command::new(&korc)
        .args(["import", "orchestrator", "--config"])
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../src/import/testdata")
                .join(config),
        )
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (build it: cargo build -p korc)", korc.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn imported_clusters_and_patches_are_accepted_by_the_api_server() {
    let cp = shared().await;
    let client = cp.client().await.expect("client");
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let out = kubectl(
        cp.kubeconfig(),
        &["apply", "--server-side", "-f", crds.to_str().unwrap()],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    namespace(&client, NS).await;
    // The CRD is served once it is established.
    let established = kubectl(
        cp.kubeconfig(),
        &[
            "wait",
            "--for=condition=Established",
            "crd/mysqlclusters.korc.dev",
            "--timeout=30s",
        ],
        "",
    );
    assert!(established.status.success());

    for config in [
        "orchestrator-sample.conf.json",
        "raft-on-kubernetes.conf.json",
        "legacy-names.conf.json",
    ] {
        let yaml = korc_import(config, &["--hooks", "-n", NS, "--name", "orders"]);
        let out = kubectl(
            cp.kubeconfig(),
            &["apply", "--dry-run=server", "-f", "-"],
            &yaml,
        );
        assert!(
            out.status.success(),
            "{config}: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let yaml = korc_import("legacy-names.conf.json", &["-n", NS, "--name", "orders"]);
    let out = kubectl(cp.kubeconfig(), &["apply", "-f", "-"], &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let patch = korc_import(
        "raft-on-kubernetes.conf.json",
        &["--hooks", "--patch", "--name", "orders"],
    );
    let out = kubectl(
        cp.kubeconfig(),
        &[
            "patch",
            "myc",
            "orders",
            "-n",
            NS,
            "--type",
            "merge",
            "--patch-file",
            "/dev/stdin",
        ],
        &patch,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(
        cp.kubeconfig(),
        &[
            "get",
            "myc",
            "orders",
            "-n",
            NS,
            "-o",
            "jsonpath={.spec.recovery.blockPeriodSeconds} {.spec.hooks.preFailover[0].name}",
        ],
        "",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "600 proxysql-drain-1");
}
