//! What the fault suite (and every failover test) runs beside a fault: an application
//! writing numbered rows through the `-primary` Service, and a watcher of writable
//! instances.

use super::korc::{endpoint_ips, pod_ip, try_root_conn, wait_new_primary};
use super::wait_for;
use korc::api::MySQLCluster;
use kube::api::Api;
use mysql_async::prelude::Queryable;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The application account: data privileges on `app` only, no SUPER.
pub const APP_USER: &str = "app";
const APP_PASSWORD: &str = "app-password";

/// Creates database `app`, table `app.t` and the application account on the primary.
pub async fn create_app_schema(conn: &mut mysql_async::Conn) {
    for sql in [
        "CREATE DATABASE IF NOT EXISTS app",
        "CREATE TABLE IF NOT EXISTS app.t (id INT PRIMARY KEY)",
        &format!("CREATE USER IF NOT EXISTS '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'"),
        &format!("GRANT SELECT, INSERT, UPDATE, DELETE ON app.* TO '{APP_USER}'@'%'"),
    ] {
        conn.query_drop(sql).await.unwrap();
    }
}

/// Inserts 1, 2, 3, … into `app.t` as the application user, through whatever address
/// the `-primary` Service's EndpointSlices list (looked up again on every reconnect,
/// as a client behind kube-proxy would be routed), and records every acknowledged
/// insert with its time.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<(u32, Instant, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Starts writing to cluster `cluster` in namespace `ns`.
    pub fn start(client: kube::Client, ns: &str, cluster: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acknowledged.clone());
        let service = format!("{cluster}-primary");
        let ns = ns.to_string();
        let task = tokio::spawn(async move {
            let mut next = 1u32;
            let mut conn: Option<(mysql_async::Conn, String)> = None;
            while !s.load(Ordering::SeqCst) {
                if conn.is_none() {
                    conn = connect(&client, &ns, &service).await;
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
                let (c, ip) = conn.as_mut().unwrap();
                let insert = c.query_drop(format!("INSERT INTO app.t VALUES ({next})"));
                match tokio::time::timeout(Duration::from_secs(2), insert).await {
                    Ok(Ok(())) => {
                        a.lock().unwrap().push((next, Instant::now(), ip.clone()));
                        next += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // Failed or unacknowledged: the row may or may not exist; use a
                    // new number so every acknowledged number is unambiguous.
                    _ => {
                        next += 1;
                        conn = None;
                    }
                }
            }
        });
        Self {
            stop,
            acknowledged,
            task,
        }
    }

    /// The first insert acknowledged at or after `since` by an instance at `ip`.
    pub fn first_ack_after(&self, since: Instant, ip: &str) -> Option<Instant> {
        self.acknowledged
            .lock()
            .unwrap()
            .iter()
            .find(|(_, t, at)| *t >= since && at == ip)
            .map(|(_, t, _)| *t)
    }

    /// The longest time between two consecutive acknowledged inserts.
    pub fn longest_gap(&self) -> Duration {
        self.longest_gap_since(None)
    }

    /// The longest time between two consecutive acknowledged inserts, the later one
    /// at or after `since` when given.
    pub fn longest_gap_since(&self, since: Option<Instant>) -> Duration {
        let acks = self.acknowledged.lock().unwrap();
        acks.windows(2)
            .filter(|w| since.is_none_or(|s| w[1].1 >= s))
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or_default()
    }

    /// How many inserts acknowledged at or after `since` came from the instance at `ip`.
    pub fn acks_from_since(&self, ip: &str, since: Instant) -> usize {
        self.acknowledged
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t, at)| *t >= since && at == ip)
            .count()
    }

    /// How many inserts were acknowledged so far.
    pub fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Stops writing; returns the acknowledged numbers.
    pub async fn stop(self) -> BTreeSet<u32> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.acknowledged
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _, _)| *n)
            .collect()
    }
}

async fn connect(
    client: &kube::Client,
    ns: &str,
    service: &str,
) -> Option<(mysql_async::Conn, String)> {
    let ips = endpoint_ips(client, ns, service).await?;
    let [ip] = ips.as_slice() else {
        return None;
    };
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(ip.clone())
        .user(Some(APP_USER))
        .pass(Some(APP_PASSWORD))
        .prefer_socket(false);
    let conn = tokio::time::timeout(Duration::from_secs(1), mysql_async::Conn::new(opts))
        .await
        .ok()?
        .ok()?;
    Some((conn, ip.clone()))
}

/// A failover as the writer saw it, timed from the fault.
pub struct Failover {
    /// The new primary's pod.
    pub primary: String,
    /// Its IP.
    pub ip: String,
    /// Until the `-primary` EndpointSlice listed only it.
    pub endpoint_moved: Duration,
    /// Until the writer's first insert on it was acknowledged.
    pub first_insert: Duration,
}

/// After a fault at `since` of primary `old` of cluster `db` in `ns`: waits (each wait
/// up to `seconds`) for the status to name a new primary, the `-primary` EndpointSlice
/// to list only it, and the writer's first insert acknowledged by it.
pub async fn wait_failover(
    client: &kube::Client,
    api: &Api<MySQLCluster>,
    ns: &str,
    old: &str,
    since: Instant,
    writer: &Writer,
    seconds: u64,
) -> Failover {
    let primary = wait_new_primary(api, "db", old, seconds).await;
    let ip = pod_ip(client, ns, &primary).await;
    wait_for("-primary lists only the new primary", seconds, || async {
        (endpoint_ips(client, ns, "db-primary").await? == vec![ip.clone()]).then_some(())
    })
    .await;
    let endpoint_moved = since.elapsed();
    let first_insert = wait_for(
        "the writer's inserts on the new primary",
        seconds,
        || async { writer.first_ack_after(since, &ip) },
    )
    .await
        - since;
    Failover {
        primary,
        ip,
        endpoint_moved,
        first_insert,
    }
}

/// Every acknowledged number must be in `app.t` on `pod`.
pub async fn assert_has_rows(
    client: &kube::Client,
    ns: &str,
    cluster: &str,
    pod: &str,
    acknowledged: &BTreeSet<u32>,
) {
    let mut c = try_root_conn(client, ns, cluster, pod)
        .await
        .unwrap_or_else(|| panic!("no connection to {pod}"));
    let rows: Vec<u32> = c.query("SELECT id FROM app.t").await.unwrap();
    let present: BTreeSet<u32> = rows.into_iter().collect();
    let lost: Vec<&u32> = acknowledged.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "{pod} lacks {} acknowledged rows: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
}

/// How many acknowledged numbers `pod` lacks, once it has had up to `seconds` to catch
/// up (every acknowledged number when it cannot be reached).
pub async fn missing_rows(
    client: &kube::Client,
    ns: &str,
    cluster: &str,
    pod: &str,
    acknowledged: &BTreeSet<u32>,
    seconds: u64,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut missing = acknowledged.len();
    loop {
        if let Some(mut c) = try_root_conn(client, ns, cluster, pod).await
            && let Ok(rows) = c.query::<u32, _>("SELECT id FROM app.t").await
        {
            let present: BTreeSet<u32> = rows.into_iter().collect();
            missing = acknowledged.difference(&present).count();
        }
        if missing == 0 || Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every pod has at least as many rows as were acknowledged, then checks
/// each acknowledged number is there.
pub async fn assert_everywhere(
    client: &kube::Client,
    ns: &str,
    cluster: &str,
    pods: &[&str],
    acknowledged: &BTreeSet<u32>,
) {
    for pod in pods {
        super::wait_for(&format!("{pod} has every acknowledged row"), 20, || async {
            let mut c = try_root_conn(client, ns, cluster, pod).await?;
            let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM app.t").await.ok()?;
            (n? as usize >= acknowledged.len()).then_some(())
        })
        .await;
        assert_has_rows(client, ns, cluster, pod, acknowledged).await;
    }
}

/// Checks every 100 ms that at most one instance of the cluster has `read_only=0`, and
/// at most one such instance is in the `-primary` Service.
pub struct WritableWatcher {
    stop: Arc<AtomicBool>,
    violations: Arc<Mutex<Watched>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`WritableWatcher`] saw: each moment two or more instances were writable.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// Two or more instances with `read_only=0`.
    pub writable: Vec<String>,
    /// Two or more instances with `read_only=0` listed by the `-primary` Service.
    pub writable_in_service: Vec<String>,
}

impl WritableWatcher {
    /// Starts watching pods `pods` of `cluster`.
    pub fn start(client: kube::Client, ns: &str, cluster: &str, pods: &[&str]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Watched::default()));
        let (s, v) = (stop.clone(), violations.clone());
        let ns = ns.to_string();
        let cluster = cluster.to_string();
        let service = format!("{cluster}-primary");
        let pods: Vec<String> = pods.iter().map(|p| p.to_string()).collect();
        let task = tokio::spawn(async move {
            // Each pod's connection, with the pod's address when it was made.
            let mut conns: Vec<Option<(mysql_async::Conn, String)>> =
                pods.iter().map(|_| None).collect();
            while !s.load(Ordering::SeqCst) {
                let mut writable = Vec::new();
                for (pod, conn) in pods.iter().zip(conns.iter_mut()) {
                    if conn.is_none() {
                        let connect = async {
                            let c = try_root_conn(&client, &ns, &cluster, pod).await?;
                            Some((c, pod_address(&client, &ns, pod).await?))
                        };
                        *conn = tokio::time::timeout(Duration::from_millis(300), connect)
                            .await
                            .ok()
                            .flatten();
                    }
                    let Some((c, ip)) = conn.as_mut() else {
                        continue;
                    };
                    let ro =
                        c.query_first::<String, _>("SELECT CAST(@@global.read_only + 0 AS CHAR)");
                    match tokio::time::timeout(Duration::from_millis(300), ro).await {
                        Ok(Ok(Some(ro))) if ro == "0" => writable.push((pod.clone(), ip.clone())),
                        Ok(Ok(_)) => {}
                        _ => *conn = None,
                    }
                }
                if writable.len() > 1 {
                    let listed = endpoint_ips(&client, &ns, &service)
                        .await
                        .unwrap_or_default();
                    let names = |w: &[(String, String)]| {
                        w.iter()
                            .map(|(p, _)| p.as_str())
                            .collect::<Vec<_>>()
                            .join(" and ")
                    };
                    let in_service: Vec<(String, String)> = writable
                        .iter()
                        .filter(|(_, ip)| listed.contains(ip))
                        .cloned()
                        .collect();
                    let mut v = v.lock().unwrap();
                    v.writable.push(names(&writable));
                    if in_service.len() > 1 {
                        v.writable_in_service.push(names(&in_service));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            stop,
            violations,
            task,
        }
    }

    /// Stops; returns each moment two or more instances were writable.
    pub async fn stop(self) -> Vec<String> {
        self.stop_watched().await.writable
    }

    /// Stops; returns what it saw.
    pub async fn stop_watched(self) -> Watched {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.violations.lock().unwrap().clone()
    }
}

/// A pod's address, if it has one.
async fn pod_address(client: &kube::Client, ns: &str, pod: &str) -> Option<String> {
    let pod = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .get(pod)
        .await
        .ok()?;
    pod.status?.pod_ip
}
