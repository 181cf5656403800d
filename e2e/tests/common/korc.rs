//! korc installed by its Helm chart on the shared control plane, and what tests of
//! the operator read and write: clusters, status, root connections, endpoints.

use super::{shared, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use korc::api::MySQLCluster;
use korc_e2e::ControlPlane;
use kube::api::{Api, ListParams, Patch, PatchParams};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use std::path::PathBuf;
use tokio::sync::OnceCell;

static INSTALLED: OnceCell<()> = OnceCell::const_new();

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The control plane with korc installed from charts/korc (once per test binary).
pub async fn korc_installed() -> &'static ControlPlane {
    let cp = shared().await;
    INSTALLED
        .get_or_init(|| async {
            // The binary the node agent runs for korc images.
            let korc = korc_e2e::agent::default_korc_binary();
            assert!(
                korc.exists(),
                "{} is missing: cargo build -p korc first",
                korc.display()
            );
            let sets = [
                "image.repository=korc",
                "image.tag=dev",
                "sourceAddress=pod-ip",
            ];
            korc_e2e::helm::install(
                cp,
                "korc",
                &repo().join("charts/korc"),
                "korc-system",
                &sets,
            )
            .expect("helm install of charts/korc");
        })
        .await;
    cp
}

/// The MariaDB sample (`deploy/samples/mariadb-cluster.yaml`) named `name`.
pub fn sample(name: &str, replicas: i32) -> MySQLCluster {
    sample_of("mariadb-cluster.yaml", name, replicas)
}

/// The MySQL sample (`deploy/samples/mysql-cluster.yaml`, semi-sync on) named `name`.
pub fn mysql_sample(name: &str, replicas: i32) -> MySQLCluster {
    sample_of("mysql-cluster.yaml", name, replicas)
}

fn sample_of(file: &str, name: &str, replicas: i32) -> MySQLCluster {
    let text = std::fs::read_to_string(repo().join("deploy/samples").join(file)).unwrap();
    let mut c: MySQLCluster = serde_saphyr::from_str(&text).expect("the sample parses");
    // Per-instance settings follow the pods to the new name.
    let old = c.metadata.name.replace(name.into()).unwrap_or_default();
    c.spec.instances = std::mem::take(&mut c.spec.instances)
        .into_iter()
        .map(|(pod, settings)| (pod.replacen(&old, name, 1), settings))
        .collect();
    c.spec.replicas = replicas;
    c
}

pub async fn status(api: &Api<MySQLCluster>, name: &str) -> Value {
    serde_json::to_value(api.get(name).await.unwrap().status).unwrap()
}

/// Waits until the cluster reports `ready` instances and `code`, with the instance
/// `status.primary` names probed as the primary (a recovery's record lands a moment
/// before the status rebuilt from the next probe).
pub async fn wait_settled(
    api: &Api<MySQLCluster>,
    name: &str,
    ready: &str,
    code: &str,
    seconds: u64,
) -> Value {
    wait_status(api, name, &format!("{ready} {code}"), seconds, |s| {
        let primary = s["primary"].as_str()?;
        let probed_primary = s["instances"]
            .as_array()?
            .iter()
            .filter(|i| i["role"] == "primary")
            .map(|i| i["name"].as_str())
            .collect::<Vec<_>>()
            == [Some(primary)];
        (s["ready"] == ready && s["analysisCode"] == code && probed_primary).then(|| s.clone())
    })
    .await
}

pub async fn pod_ip(client: &kube::Client, ns: &str, pod: &str) -> String {
    let pod = Api::<Pod>::namespaced(client.clone(), ns)
        .get(pod)
        .await
        .unwrap();
    pod.status.unwrap().pod_ip.unwrap()
}

/// A root connection to a pod over its server's socket (root exists only at
/// `localhost`, as `kubectl exec` would reach it), or none while it cannot be had
/// (pod restarting).
pub async fn try_root_conn(
    client: &kube::Client,
    ns: &str,
    cluster: &str,
    pod: &str,
) -> Option<mysql_async::Conn> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(&format!("{cluster}-credentials"))
        .await
        .ok()?;
    let password = String::from_utf8(secret.data?["root-password"].0.clone()).ok()?;
    let socket = super::shared().await.server_socket(ns, pod, "mysql")?;
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket.display().to_string()))
        .user(Some("root"))
        .pass(Some(password));
    mysql_async::Conn::new(opts).await.ok()
}

pub async fn root_conn(
    client: &kube::Client,
    ns: &str,
    cluster: &str,
    pod: &str,
) -> mysql_async::Conn {
    try_root_conn(client, ns, cluster, pod)
        .await
        .unwrap_or_else(|| panic!("no connection to {ns}/{pod}"))
}

/// The addresses a Service's EndpointSlices list.
pub async fn endpoint_ips(client: &kube::Client, ns: &str, service: &str) -> Option<Vec<String>> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns);
    let selector = format!("kubernetes.io/service-name={service}");
    let list = slices
        .list(&ListParams::default().labels(&selector))
        .await
        .ok()?;
    let endpoints = list
        .items
        .into_iter()
        .flat_map(|s| s.endpoints.into_iter().flatten());
    Some(endpoints.flat_map(|e| e.addresses).collect())
}

/// Waits until `pod` of cluster `db` has applied `position`, then checks its row count.
pub async fn assert_caught_up(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    position: &str,
    rows: &str,
) {
    let mut r = root_conn(client, ns, "db", pod).await;
    assert!(
        wait_applied(&mut r, position).await,
        "{pod} did not reach {position}"
    );
    let count = scalar(&mut r, "SELECT CAST(COUNT(*) AS CHAR) FROM app.t").await;
    assert_eq!(count, rows, "{pod} caught up");
}

/// Whether the server is MariaDB (else MySQL): the GTID variables and functions differ.
pub async fn is_mariadb(conn: &mut mysql_async::Conn) -> bool {
    scalar(conn, "SELECT @@global.version")
        .await
        .contains("MariaDB")
}

/// The GTID position of everything the instance binlogged (MariaDB's
/// `gtid_binlog_pos`, MySQL's `gtid_executed`).
pub async fn gtid_position(conn: &mut mysql_async::Conn) -> String {
    let variable = if is_mariadb(conn).await {
        "gtid_binlog_pos"
    } else {
        "gtid_executed"
    };
    scalar(conn, &format!("SELECT @@global.{variable}"))
        .await
        .replace('\n', "")
}

/// Waits up to 10 s until the instance has applied `position`; whether it did.
pub async fn wait_applied(conn: &mut mysql_async::Conn, position: &str) -> bool {
    let function = if is_mariadb(conn).await {
        "MASTER_GTID_WAIT"
    } else {
        "WAIT_FOR_EXECUTED_GTID_SET"
    };
    // Both answer 0 once the position is applied.
    scalar(
        conn,
        &format!("SELECT CAST({function}('{position}', 10) AS CHAR)"),
    )
    .await
        == "0"
}

pub async fn scalar(conn: &mut mysql_async::Conn, sql: &str) -> String {
    let v: Option<String> = conn.query_first(sql).await.unwrap();
    v.unwrap_or_default()
}

/// A `SHOW SLAVE STATUS` column ("" when the server is no replica).
pub async fn replica_field(conn: &mut mysql_async::Conn, column: &str) -> String {
    let row: Option<mysql_async::Row> = conn.query_first("SHOW SLAVE STATUS").await.unwrap();
    row.and_then(|r| r.get_opt::<String, _>(column).and_then(Result::ok))
        .unwrap_or_default()
}

pub async fn analysis_of(api: &Api<MySQLCluster>, name: &str, pod: &str) -> Option<String> {
    let s = status(api, name).await;
    s["analysis"]
        .as_array()?
        .iter()
        .find(|a| a["instance"] == pod)
        .and_then(|a| a["code"].as_str().map(str::to_string))
}

/// `korc_status_writes_total` of a cluster, read from the leading operator pod's /metrics
/// (after checking /healthz and /readyz).
pub async fn status_writes(client: &kube::Client, ns: &str, cluster: &str) -> u64 {
    let metrics = leader_metrics(client).await;
    let needle = format!("korc_status_writes_total{{namespace=\"{ns}\",cluster=\"{cluster}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {needle} in {metrics}"))
}

/// The leading operator pod's /metrics text (after checking /healthz and /readyz).
pub async fn leader_metrics(client: &kube::Client) -> String {
    let leader = leader_pod(client).await;
    let ip = Api::<Pod>::namespaced(client.clone(), "korc-system")
        .get(&leader)
        .await
        .unwrap()
        .status
        .unwrap()
        .pod_ip
        .unwrap();
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect((ip.as_str(), 8080)).expect("korc's HTTP port");
        write!(conn, "GET {path} HTTP/1.0\r\nHost: korc\r\n\r\n").unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        response
    };
    for path in ["/healthz", "/readyz"] {
        assert!(get(path).starts_with("HTTP/1.0 200"), "{path}");
    }
    get("/metrics")
}

/// The operator pod holding the leader Lease (waiting until one does).
pub async fn leader_pod(client: &kube::Client) -> String {
    let leases = Api::<Lease>::namespaced(client.clone(), "korc-system");
    wait_for("a korc leader", 60, || async {
        let lease = leases.get_opt("korc-leader").await.ok()??;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    })
    .await
}

/// The korc operator pods.
pub async fn operator_pods(client: &kube::Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "korc-system")
        .list(&ListParams::default().labels("app.kubernetes.io/name=korc"))
        .await
        .unwrap()
        .items
}

/// Polls the cluster's status every 100 ms until `check` yields a value; on timeout
/// panics with the last status seen, so a failure shows what korc reported.
pub async fn wait_status<T>(
    api: &Api<MySQLCluster>,
    name: &str,
    what: &str,
    seconds: u64,
    check: impl Fn(&Value) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let s = status(api, name).await;
        if let Some(v) = check(&s) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}; last status of {name}:\n{s:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits until the status names a primary other than `old`; returns it.
pub async fn wait_new_primary(
    api: &Api<MySQLCluster>,
    name: &str,
    old: &str,
    seconds: u64,
) -> String {
    wait_status(
        api,
        name,
        &format!("a primary other than {old}"),
        seconds,
        |s| {
            s["primary"]
                .as_str()
                .filter(|p| *p != old)
                .map(str::to_string)
        },
    )
    .await
}

/// Requests a switchover and waits for the recovery record that serves it.
pub async fn switch_over(
    api: &Api<MySQLCluster>,
    name: &str,
    request: &str,
    to: Option<&str>,
    seconds: u64,
) -> Value {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"switchover": {"requestId": request, "to": to}}})),
    )
    .await
    .unwrap();
    wait_status(api, name, &format!("switchover {request}"), seconds, |s| {
        s["recoveries"]
            .as_array()?
            .iter()
            .find(|r| r["requestId"] == request && r["outcome"] != "running")
            .cloned()
    })
    .await
}

/// The node a pod runs on.
pub async fn node_of(client: &kube::Client, ns: &str, pod: &str) -> String {
    Api::<Pod>::namespaced(client.clone(), ns)
        .get(pod)
        .await
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .unwrap()
}

/// Sets failpoint `name` to `actions` on an operator pod (korc built with the
/// `failpoints` feature, as `cargo test --workspace` builds it).
pub async fn set_failpoint(client: &kube::Client, operator_pod: &str, name: &str, actions: &str) {
    use std::io::{Read, Write};
    let ip = pod_ip(client, "korc-system", operator_pod).await;
    let mut conn = std::net::TcpStream::connect((ip.as_str(), 8080)).expect("korc's HTTP port");
    write!(
        conn,
        "PUT /failpoints/{name} HTTP/1.0\r\nHost: korc\r\nContent-Length: {}\r\n\r\n{actions}",
        actions.len()
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200"),
        "setting failpoint {name} on {operator_pod}: {response}\n\
         (build korc with its failpoints: cargo build -p korc --features failpoints)"
    );
}

/// The MySQL pod on `node`, made the primary (by a switchover if need be), so that
/// losing the node takes the primary and nothing else the recovery needs.
pub async fn primary_on(
    api: &Api<MySQLCluster>,
    client: &kube::Client,
    ns: &str,
    node: &str,
    request: &str,
) -> String {
    let mut on_node = None;
    for pod in ["db-0", "db-1", "db-2"] {
        if node_of(client, ns, pod).await == node {
            on_node = Some(pod.to_string());
        }
    }
    let pod = on_node.unwrap_or_else(|| panic!("no MySQL pod on {node}"));
    if status(api, "db").await["primary"] != pod.as_str() {
        let r = switch_over(api, "db", request, Some(&pod), 60).await;
        assert_eq!(r["outcome"], "recovered", "{r:#}");
    }
    wait_settled(api, "db", "3/3", "NoProblem", 60).await;
    pod
}
