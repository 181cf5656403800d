//! `kubectl logs` against the local control plane: the API server asks the node agent's
//! kubelet API (port 10250, TLS both ways) for a MariaDB pod's log, its previous run
//! after a kill -9, and follows it as the server writes a new line.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use korc_e2e::{ContainerRef, ControlPlane, Fault};
use kube::Api;
use serde_json::json;

use common::{create, is_ready, namespace, restarts, shared, wait_for};

const NS: &str = "logs";
const READY: &str = "mariadbd: ready for connections";

/// `kubectl logs ARGS` against `cp`: success, stdout, stderr.
fn kubectl_logs(cp: &ControlPlane, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(["logs", "-n", NS])
        .args(args)
        .output()
        .expect("run kubectl (installed by e2e/prereqs)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pod's log through the API server once it shows `READY` (a run of the server
/// that accepts connections; the entrypoint's temporary server says it too, without a
/// port, so the port line is waited for).
async fn log_when_ready(cp: &ControlPlane, pods: &Api<Pod>, restarts_seen: i32) -> String {
    wait_for(
        &format!("db ready after {restarts_seen} restarts"),
        90,
        || {
            let pods = pods.clone();
            async move {
                let pod = pods.get("db").await.ok()?;
                if !(is_ready(&pod) && restarts(&pod) == restarts_seen) {
                    return None;
                }
                let (ok, log, _) = kubectl_logs(cp, &["db"]);
                (ok && log
                    .lines()
                    .any(|l| l.starts_with("Version:") && l.contains("port: 3306")))
                .then_some(log)
            }
        },
    )
    .await
}

/// `curl` of the kubelet API of the pod's node, trusting the control plane's CA, with
/// the API server's client certificate or without one: whether it answered 200.
fn curl_kubelet(cp: &ControlPlane, node_ip: &str, with_client_cert: bool) -> bool {
    let pki = cp.dir().join("pki");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(pki.join("ca.crt"));
    if with_client_cert {
        cmd.arg("--cert")
            .arg(pki.join("kubelet-client.crt"))
            .arg("--key")
            .arg(pki.join("kubelet-client.key"));
    }
    let out = cmd
        .arg(format!(
            "https://{node_ip}:10250/containerLogs/{NS}/db/mariadb?tailLines=1"
        ))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout) == "200"
}

async fn failed_login(ip: &str) {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(ip)
        .tcp_port(3306)
        .user(Some("nobody"))
        .pass(Some("wrong"));
    let refused = mysql_async::Conn::new(opts).await;
    assert!(refused.is_err(), "a wrong password is refused");
}

#[tokio::test]
async fn kubectl_logs_reads_a_mariadb_pods_log_its_previous_run_and_follows_it() {
    let cp = shared().await;
    let client = cp.client().await.expect("client");
    namespace(&client, NS).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    create(
        &pods,
        json!({
            "metadata": { "name": "db" },
            "spec": { "containers": [{
                "name": "mariadb", "image": "mariadb:10.11",
                "env": [{ "name": "MARIADB_ROOT_PASSWORD", "value": "rootpw" }],
            }]},
        }),
    )
    .await;

    // The whole log of the first run, exactly what the container wrote.
    let first = log_when_ready(cp, &pods, 0).await;
    assert!(first.contains(READY), "{first}");
    let file = cp.container_log(NS, "db", "mariadb");
    assert!(
        file.starts_with(&first),
        "kubectl logs is the container's log"
    );
    let (ok, last, _) = kubectl_logs(cp, &["db", "--tail=1"]);
    assert!(
        ok && last.lines().count() == 1 && first.ends_with(&last),
        "{last:?}"
    );
    let (ok, _, err) = kubectl_logs(cp, &["db", "--previous"]);
    assert!(
        !ok && err.contains("previous terminated container"),
        "{err}"
    );
    // The node's certificate is the CA's (curl checks it against the node's address),
    // and the node answers only a client with a certificate of the CA.
    let node_ip = pods
        .get("db")
        .await
        .expect("pod")
        .status
        .and_then(|s| s.host_ip)
        .expect("host IP");
    assert!(curl_kubelet(cp, &node_ip, true));
    assert!(!curl_kubelet(cp, &node_ip, false));

    // kill -9: the container restarts; --previous is the first run, the log the new one.
    cp.inject(&Fault::Kill(ContainerRef::pod(NS, "db")))
        .await
        .expect("kill -9");
    let second = log_when_ready(cp, &pods, 1).await;
    let (ok, previous, err) = kubectl_logs(cp, &["db", "--previous"]);
    assert!(ok, "{err}");
    assert!(
        previous.starts_with(&first),
        "--previous is the run before the kill"
    );
    assert!(
        !second.contains(&first),
        "the new run's log has only the new run"
    );
    assert!(second.contains(READY), "{second}");
    assert_eq!(
        cp.container_log(NS, "db", "mariadb"),
        format!("{previous}{second}"),
        "the two runs are the whole file"
    );

    // -f streams what the server writes after it started, and ends with the run.
    let mut follow = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(["logs", "-n", NS, "-f", "db"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = follow.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The stream first repeats the run so far.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("the followed log so far")
        .contains("port: 3306")
    {}
    let ip = pods
        .get("db")
        .await
        .expect("pod")
        .status
        .and_then(|s| s.pod_ip)
        .expect("pod IP");
    let written = Instant::now();
    failed_login(&ip).await;
    let deadline = written + Duration::from_secs(20);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the new line streamed by kubectl logs -f");
        if line.contains("Access denied for user 'nobody'") {
            break;
        }
    }
    println!(
        "kubectl logs -f showed a new line {:.2} s after it was caused",
        written.elapsed().as_secs_f64()
    );
    cp.inject(&Fault::Kill(ContainerRef::pod(NS, "db")))
        .await
        .expect("kill -9");
    let ended = wait_for("kubectl logs -f to end with the run", 30, || {
        let status = follow.try_wait().expect("try_wait");
        async move { status }
    })
    .await;
    assert!(ended.success(), "{ended}");
    reader.join().expect("reader");
}
