//! The scenarios: each sets up its clusters, runs its faults under the writer and the
//! watcher, checks the invariants and returns its figures; see [`ALL`].

use crate::common::korc::*;
use crate::common::workload::{
    WritableWatcher, Writer, create_app_schema, missing_rows, wait_failover,
};
use crate::common::{namespace, wait_for};
use crate::figures::Figures;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, ControlPlane, Fault, PodRef};
use kube::api::{Api, Patch, PatchParams, PostParams};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// Every scenario, in the order `all` runs them.
pub const ALL: [&str; 11] = [
    "cut",
    "crash",
    "hang",
    "korc-cut",
    "partition",
    "node",
    "leader-node",
    "leader-successor-node",
    "lagging",
    "errant",
    "three-clusters",
];

const PODS: [&str; 3] = ["db-0", "db-1", "db-2"];

/// The scenario's name, fault and goal, without figures.
pub fn describe(name: &str) -> Figures {
    let (fault, goal) = match name {
        "cut" => (
            "network cut between two pods, then healed",
            "a connect times out and a session stalls; both work again after the heal",
        ),
        "crash" => (
            "kill -9 of the primary, again after each failover (anti-flapping acknowledged between)",
            "failover median < 1 s; one recovery each",
        ),
        "hang" => (
            "SIGSTOP of the primary, SIGCONT after the failover",
            "failover median < 8 s",
        ),
        "korc-cut" => (
            "korc (both operator pods) cut off from the primary; replicas still reach it",
            "no failover (`UnreachableMaster`), writes go on",
        ),
        "partition" => (
            "primary cut off from korc and both replicas, healed after the failover",
            "failover median < 10 s; the old primary takes no write",
        ),
        "node" => ("the primary's node lost, then restored", "failover, rejoin"),
        "leader-node" => (
            "the node of the leading operator and the primary lost while it fails over the primary",
            "the standby finishes: one promotion",
        ),
        "leader-successor-node" => (
            "the leading operator's node lost with the successor it committed, while it fails over a crashed primary",
            "the standby finishes within 60 s: one promotion",
        ),
        "lagging" => (
            "kill -9 of the primary while one replica's SQL thread is stopped",
            "the caught-up replica is promoted",
        ),
        "errant" => (
            "the primary cut off while it commits a transaction, healed after the failover: it comes back errant",
            "held out of both Services and left alone; rebuilt on `korc.dev/rebuild`, then by `rebuildErrantInstances`, its errant transaction saved",
        ),
        "three-clusters" => (
            "kill -9 of the primaries of 3 clusters at once",
            "all recover, each exactly once",
        ),
        _ => ("unknown scenario", ""),
    };
    let mut f = Figures::new(name, fault, goal);
    f.median_limit = match name {
        "crash" => Some(1.0),
        "hang" => Some(8.0),
        "partition" => Some(10.0),
        _ => None,
    };
    f
}

/// Runs scenario `name` (`runs` times where it repeats); a failure is recorded in the
/// figures, which keep what the runs before it measured.
pub async fn run(name: String, runs: usize) -> Figures {
    let mut f = describe(&name);
    let outcome = AssertUnwindSafe(scenario(&name, runs, &mut f))
        .catch_unwind()
        .await;
    if let Err(panic) = outcome {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        f.failure = Some(why);
    }
    f
}

async fn scenario(name: &str, runs: usize, f: &mut Figures) {
    let cp = korc_installed().await;
    match name {
        "cut" => cut(cp, f).await,
        "crash" => crashes(cp, f, runs).await,
        "hang" => hang(cp, f, runs).await,
        "korc-cut" => korc_cut(cp, f, runs).await,
        "partition" => partition(cp, f, runs).await,
        "node" => node(cp, f, runs).await,
        "leader-node" => leader_node(cp, f, false).await,
        "leader-successor-node" => leader_node(cp, f, true).await,
        "lagging" => lagging(cp, f).await,
        "errant" => errant(cp, f).await,
        "three-clusters" => three_clusters(cp, f).await,
        other => panic!("unknown scenario {other}; known: {}", ALL.join(", ")),
    }
}

/// Leaves the control plane as a scenario found it: every node back, and the
/// scenarios' namespaces (`f-…`) deleted, so their servers stop competing for the CPU.
pub async fn clean_up() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    // A node a failed scenario left lost is NotReady (12 s after the loss).
    for node in Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await
        .unwrap()
    {
        if !korc_e2e::agent::node_is_ready(&node) {
            let name = node.metadata.name.unwrap_or_default();
            let _ = cp.inject(&Fault::RestoreNode(name)).await;
        }
    }
    let namespaces = Api::<Namespace>::all(client);
    for ns in namespaces.list(&Default::default()).await.unwrap().items {
        let name = ns.metadata.name.unwrap_or_default();
        if name.starts_with("f-") {
            let _ = namespaces.delete(&name, &Default::default()).await;
        }
    }
}

/// A semi-sync cluster `db` in its own namespace, settled, with the application's schema.
struct Cluster {
    client: kube::Client,
    api: Api<MySQLCluster>,
    ns: String,
}

impl Cluster {
    /// With `spec.recovery.rebuildErrantInstances`: an old primary that comes back
    /// errant is rebuilt, and the cluster returns to full strength.
    async fn create(cp: &ControlPlane, ns: &str) -> Self {
        Self::create_with(cp, ns, true).await
    }

    async fn create_with(cp: &ControlPlane, ns: &str, rebuild_errant: bool) -> Self {
        let client = cp.client().await.unwrap();
        namespace(&client, ns).await;
        let api = Api::<MySQLCluster>::namespaced(client.clone(), ns);
        let mut cluster = sample("db", 3);
        cluster.spec.semi_sync = Some(korc::api::SemiSyncSpec {
            enabled: true,
            timeout_ms: None,
        });
        cluster.spec.recovery.rebuild_errant_instances = rebuild_errant;
        api.create(&PostParams::default(), &cluster).await.unwrap();
        let s = wait_settled(&api, "db", "3/3", "NoProblem", 180).await;
        let primary = s["primary"].as_str().unwrap().to_string();
        let mut root = root_conn(&client, ns, "db", &primary).await;
        create_app_schema(&mut root).await;
        Self {
            client,
            api,
            ns: ns.to_owned(),
        }
    }

    async fn primary(&self) -> String {
        status(&self.api, "db").await["primary"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The ids of the recoveries the status holds.
    async fn recovery_ids(&self) -> HashSet<String> {
        self.recoveries()
            .await
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    }

    async fn recoveries(&self) -> Vec<Value> {
        status(&self.api, "db").await["recoveries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Starts the writer and the watcher, and waits for the first rows.
    async fn load(&self) -> Load {
        let watcher = WritableWatcher::start(self.client.clone(), &self.ns, "db", &PODS);
        let writer = Writer::start(self.client.clone(), &self.ns, "db");
        wait_for("the writer's first rows", 30, || async {
            (writer.count() >= 20).then_some(())
        })
        .await;
        Load { writer, watcher }
    }

    /// Waits (up to `bound` s) until the cluster is `NoProblem` and healthy with every
    /// instance replicating (from the primary or through another replica, which is
    /// printed) and every pod ready. Returns the time since `since`.
    async fn converge(&self, since: Instant, bound: u64) -> f64 {
        let what = "NoProblem with every instance replicating and every pod ready";
        wait_status(&self.api, "db", what, bound, |s| {
            let primary = s["primary"].as_str()?;
            let instances = s["instances"].as_array()?;
            for i in instances {
                let name = i["name"].as_str()?;
                if name == primary {
                    if i["role"] != "primary" {
                        return None;
                    }
                } else if i["role"] != "replica" || !i["source"].is_string() {
                    return None;
                }
            }
            let healthy = s["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Healthy" && c["status"] == "True");
            // Every pod ready, too: a restarting pod's last probe can still show it
            // replicating.
            let ready = s["ready"] == format!("{}/{}", PODS.len(), PODS.len());
            (s["analysisCode"] == "NoProblem" && healthy && ready).then_some(())
        })
        .await;
        let s = status(&self.api, "db").await;
        for i in s["instances"].as_array().into_iter().flatten() {
            if i["role"] == "replica" && i["source"] != s["primary"] {
                println!(
                    "  {}: {} replicates through {}, not from the primary {}",
                    self.ns, i["name"], i["source"], s["primary"]
                );
            }
        }
        since.elapsed().as_secs_f64()
    }

    /// The copy korc made into `pod` since `since` (wall clock), if any: an old primary
    /// that came back errant and was rebuilt.
    async fn rebuilt_since(&self, pod: &str, since: k8s_openapi::jiff::Timestamp) -> Option<Value> {
        let s = status(&self.api, "db").await;
        s["clones"]
            .as_array()?
            .iter()
            .rev()
            .find(|r| {
                r["pod"] == pod
                    && r["outcome"] == "completed"
                    && r["startedAt"]
                        .as_str()
                        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                        .is_some_and(|t| t.as_second() >= since.as_second())
            })
            .cloned()
    }

    /// Lifts the anti-flapping block the last recovery set, as an operator would.
    async fn acknowledge(&self, value: &str) {
        let patch = json!({"metadata": {"annotations": {"korc.dev/acknowledge": value}}});
        self.api
            .patch("db", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
        wait_status(&self.api, "db", "the acknowledgement recorded", 30, |s| {
            (s["lastAcknowledgement"]["value"] == value).then_some(())
        })
        .await;
    }

    async fn ip(&self, pod: &str) -> String {
        pod_ip(&self.client, &self.ns, pod).await
    }
}

struct Load {
    writer: Writer,
    watcher: WritableWatcher,
}

impl Load {
    /// Stops the load and checks the data invariants: every acknowledged row on every
    /// instance, and never two writable instances.
    async fn check(self, c: &Cluster, f: &mut Figures) {
        let acknowledged = self.writer.stop().await;
        let watched = self.watcher.stop_watched().await;
        for pod in PODS {
            let missing = missing_rows(&c.client, &c.ns, "db", pod, &acknowledged, 30).await;
            if missing > 0 {
                f.note(format!("{pod} lacks {missing} acknowledged rows"));
            }
            f.lost = f.lost.max(missing);
        }
        f.writable_in_service += watched.writable_in_service.len();
        f.writable += watched.writable.len();
        f.note(format!(
            "{} acknowledged rows checked on every instance",
            acknowledged.len()
        ));
        if !watched.writable.is_empty() {
            f.note(format!(
                "two instances with read_only=0: {:?}",
                &watched.writable[..watched.writable.len().min(5)]
            ));
        }
        assert_eq!(f.lost, 0, "acknowledged rows lost");
        assert!(
            watched.writable_in_service.is_empty(),
            "two writable instances in the -primary Service: {:?}",
            watched.writable_in_service
        );
    }
}

/// The recoveries not in `before` (ids): the status keeps only the latest ones.
fn new_recoveries<'a>(recoveries: &'a [Value], before: &HashSet<String>) -> Vec<&'a Value> {
    recoveries
        .iter()
        .filter(|r| r["id"].as_str().is_some_and(|id| !before.contains(id)))
        .collect()
}

/// The one recovery not in `before`: it must have recovered `failed`.
fn one_recovery(recoveries: &[Value], before: &HashSet<String>, failed: &str) -> Value {
    let new = new_recoveries(recoveries, before);
    assert_eq!(new.len(), 1, "exactly one new recovery: {new:#?}");
    let r = new[0].clone();
    assert_eq!(r["failed"], failed, "{r:#}");
    assert_eq!(r["outcome"], "recovered", "{r:#}");
    r
}

fn steps(r: &Value) -> String {
    r["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{}{}",
                s["kind"].as_str().unwrap_or_default(),
                if s["ok"] == true { "" } else { "(failed)" }
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Cuts (or heals) the path between pod `a` and every pod of `peers`.
async fn cut_all(cp: &ControlPlane, a: &PodRef, peers: &[PodRef], heal: bool) {
    for b in peers {
        // Healed through the peer: `a` may be gone by then (korc deletes a primary it
        // could not fence).
        let fault = if heal {
            Fault::Heal(b.clone(), a.clone())
        } else {
            Fault::Cut(a.clone(), b.clone())
        };
        cp.inject(&fault).await.unwrap();
    }
}

/// Every pod a primary `old` talks to: the operators and the cluster's other pods.
fn everyone_but(ns: &str, old: &str, operators: &[PodRef]) -> Vec<PodRef> {
    let others = PODS
        .iter()
        .filter(|p| **p != old)
        .map(|p| PodRef::new(ns, p));
    operators.iter().cloned().chain(others).collect()
}

async fn operators(client: &kube::Client) -> Vec<PodRef> {
    operator_pods(client)
        .await
        .iter()
        .map(|p| PodRef::new("korc-system", p.metadata.name.as_deref().unwrap()))
        .collect()
}

/// Proof that a cut drops packets: a client pod keeps a session to a server pod and
/// connects afresh every 200 ms; under the cut the session stalls and connects time
/// out (no refusal: the packets vanish), while the test process, outside the cut,
/// still reaches the server; after the heal both work again.
async fn cut(cp: &ControlPlane, f: &mut Figures) {
    const SERVER: &str = r"
import os, socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ['POD_IP'], 7000))
s.listen(64)
def echo(c):
    while c.recv(64):
        c.sendall(b'x')
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
";
    const CLIENT: &str = r"
import os, socket, time
addr = (os.environ['SERVER'], 7000)
session = None
while True:
    if session is None:
        try:
            session = socket.create_connection(addr, timeout=1)
        except OSError as e:
            print('session connect', type(e).__name__, flush=True)
    if session is not None:
        try:
            session.sendall(b'x')
            session.recv(1)
            print('session ok', flush=True)
        except socket.timeout:
            print('session timeout', flush=True)
        except OSError as e:
            print('session', type(e).__name__, flush=True)
            session = None
    try:
        socket.create_connection(addr, timeout=1).close()
        print('connect ok', flush=True)
    except socket.timeout:
        print('connect timeout', flush=True)
    except OSError as e:
        print('connect', type(e).__name__, flush=True)
    time.sleep(0.2)
";
    let client = cp.client().await.unwrap();
    namespace(&client, "f-cut").await;
    let pods = Api::<Pod>::namespaced(client.clone(), "f-cut");
    let pod = |name: &str, script: &str, env: Value| {
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "main",
            "image": "python:3", "command": ["python3", "-u", "-c", script], "env": env}]}})
    };
    crate::common::create(&pods, pod("server", SERVER, json!([]))).await;
    let server_ip = wait_for("the server pod running", 60, || async {
        let p = pods.get("server").await.ok()?;
        crate::common::is_ready(&p).then(|| p.status?.pod_ip)?
    })
    .await;
    let env = json!([{"name": "SERVER", "value": server_ip}]);
    crate::common::create(&pods, pod("client", CLIENT, env)).await;
    let log = || cp.container_log("f-cut", "client", "main");
    let lines_after = |from: usize| log().get(from..).unwrap_or_default().to_owned();
    wait_for("the client's session and connects working", 60, || async {
        let l = log();
        (l.contains("session ok") && l.contains("connect ok")).then_some(())
    })
    .await;

    let (client_pod, server_pod) = (
        PodRef::new("f-cut", "client"),
        PodRef::new("f-cut", "server"),
    );
    let mark = log().len();
    let at = Instant::now();
    cp.inject(&Fault::Cut(client_pod.clone(), server_pod.clone()))
        .await
        .unwrap();
    wait_for(
        "the session stalled and a connect timed out",
        15,
        || async {
            let l = lines_after(mark);
            (l.contains("session timeout") && l.contains("connect timeout")).then_some(())
        },
    )
    .await;
    f.note(format!(
        "cut: session stalled and a connect timed out {:.1} s after the cut",
        at.elapsed().as_secs_f64()
    ));
    // Only that path is cut: the test process still reaches the server.
    tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect((server_ip.as_str(), 7000)),
    )
    .await
    .expect("a connect from outside the cut timed out")
    .expect("a connect from outside the cut");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let under_cut = lines_after(mark);
    // The first line may predate the cut; after it nothing gets through or is refused.
    let through: Vec<&str> = under_cut
        .lines()
        .skip(2)
        .filter(|l| l.ends_with(" ok") || l.contains("Refused"))
        .collect();
    assert!(through.is_empty(), "under the cut: {under_cut}");

    let mark = log().len();
    let at = Instant::now();
    cp.inject(&Fault::Heal(client_pod, server_pod))
        .await
        .unwrap();
    wait_for("the session and connects working again", 60, || async {
        let l = lines_after(mark);
        (l.contains("session ok") && l.contains("connect ok")).then_some(())
    })
    .await;
    f.note(format!(
        "healed: the stalled session carried on and connects worked {:.1} s after the heal",
        at.elapsed().as_secs_f64()
    ));
    f.runs = 1;
}

/// kill -9 of the primary, `runs` times in a row in one cluster, acknowledging the
/// anti-flapping block between the runs.
async fn crashes(cp: &ControlPlane, f: &mut Figures, runs: usize) {
    let ns = "f-crash";
    let c = Cluster::create(cp, ns).await;
    let load = c.load().await;
    for run in 1..=runs {
        let old = c.primary().await;
        let before = c.recovery_ids().await;
        let at = Instant::now();
        cp.inject(&Fault::Kill(ContainerRef::pod(ns, &old)))
            .await
            .unwrap();
        let failover = wait_failover(&c.client, &c.api, ns, &old, at, &load.writer, 30).await;
        let healed = c.converge(at, 60).await;
        let r = one_recovery(&c.recoveries().await, &before, &old);
        assert_eq!(r["kind"], "DeadMaster", "{r:#}");
        println!(
            "  run {run}: {old} → {}: first write {:.3} s, -primary {:.3} s, NoProblem {healed:.1} s; {}",
            failover.primary,
            failover.first_insert.as_secs_f64(),
            failover.endpoint_moved.as_secs_f64(),
            steps(&r)
        );
        f.failover.push(failover.first_insert.as_secs_f64());
        f.no_problem.push(healed);
        f.runs = run;
        c.acknowledge(&format!("run {run} checked")).await;
    }
    load.check(&c, f).await;
}

/// SIGSTOP of the primary; SIGCONT once another primary took over.
async fn hang(cp: &ControlPlane, f: &mut Figures, runs: usize) {
    let c = Cluster::create(cp, "f-hang").await;
    let load = c.load().await;
    for run in 1..=runs {
        let old = c.primary().await;
        let before = c.recovery_ids().await;
        let (at, wall) = (Instant::now(), k8s_openapi::jiff::Timestamp::now());
        cp.inject(&Fault::Stop(ContainerRef::pod("f-hang", &old)))
            .await
            .unwrap();
        let failover = wait_failover(&c.client, &c.api, "f-hang", &old, at, &load.writer, 30).await;
        // Woken once the recovery is over: korc deleted the pod it could not fence, so
        // the signal reaches the process that replaced it, if any.
        let r = recorded(&c, &before).await;
        let _ = cp
            .inject(&Fault::Continue(ContainerRef::pod("f-hang", &old)))
            .await;
        let healed = c.converge(at, 240).await;
        one_recovery(&c.recoveries().await, &before, &old);
        f.note(format!(
            "run {run}: {old} → {}: first write {:.3} s, NoProblem {healed:.1} s; the old primary {}; steps {}",
            failover.primary,
            failover.first_insert.as_secs_f64(),
            came_back(&c, &old, wall).await,
            steps(&r)
        ));
        f.failover.push(failover.first_insert.as_secs_f64());
        f.no_problem.push(healed);
        f.runs = run;
        c.acknowledge(&format!("run {run} checked")).await;
    }
    load.check(&c, f).await;
}

/// How an old primary came back after a failover: rejoined, or rebuilt because it
/// held errant transactions (which, saved where).
async fn came_back(c: &Cluster, old: &str, since: k8s_openapi::jiff::Timestamp) -> String {
    match c.rebuilt_since(old, since).await {
        Some(r) => format!(
            "came back with errant transactions {} and was rebuilt from {} (saved to {})",
            r["errantGtids"].as_str().unwrap_or("?"),
            r["donor"].as_str().unwrap_or("?"),
            r["savedTo"].as_str().unwrap_or("?")
        ),
        None => "rejoined as a replica".into(),
    }
}

/// The record of the recovery not in `before`, once it ended.
async fn recorded(c: &Cluster, before: &HashSet<String>) -> Value {
    wait_status(&c.api, "db", "the recovery's record", 30, |s| {
        let recoveries = s["recoveries"].as_array()?;
        let r = *new_recoveries(recoveries, before).first()?;
        (r["outcome"] != "running").then(|| r.clone())
    })
    .await
}

/// korc cut off from the primary while the replicas still replicate from it.
async fn korc_cut(cp: &ControlPlane, f: &mut Figures, runs: usize) {
    let c = Cluster::create(cp, "f-korc-cut").await;
    let load = c.load().await;
    let operators = operators(&c.client).await;
    for run in 1..=runs {
        let primary = c.primary().await;
        let target = PodRef::new("f-korc-cut", &primary);
        let before = c.recovery_ids().await;
        cut_all(cp, &target, &operators, false).await;
        let at = Instant::now();
        wait_status(&c.api, "db", "UnreachableMaster", 30, |s| {
            (s["analysisCode"] == "UnreachableMaster").then_some(())
        })
        .await;
        f.note(format!(
            "run {run}: UnreachableMaster after {:.1} s",
            at.elapsed().as_secs_f64()
        ));
        // Longer than any failover takes: nothing is recovered, writes go on.
        let acked = load.writer.count();
        let held = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let s = status(&c.api, "db").await;
        assert_eq!(s["primary"], primary.as_str(), "{s:#}");
        assert!(c.recovery_ids().await.is_subset(&before), "{s:#}");
        let written = load.writer.count() - acked;
        let gap = load.writer.longest_gap_since(Some(held));
        assert!(written > 0, "no write acknowledged while korc was cut off");
        f.note(format!(
            "run {run}: {written} writes acknowledged in 10 s under the cut (longest pause {:.2} s), no recovery",
            gap.as_secs_f64()
        ));
        cut_all(cp, &target, &operators, true).await;
        let healed = c.converge(Instant::now(), 60).await;
        f.no_problem.push(healed);
        f.runs = run;
    }
    load.check(&c, f).await;
}

/// The primary cut off from korc and from both replicas; healed after the failover.
async fn partition(cp: &ControlPlane, f: &mut Figures, runs: usize) {
    const NS: &str = "f-partition";
    let c = Cluster::create(cp, NS).await;
    let load = c.load().await;
    let operators = operators(&c.client).await;
    for run in 1..=runs {
        let old = c.primary().await;
        let old_ip = c.ip(&old).await;
        let target = PodRef::new(NS, &old);
        let peers = everyone_but(NS, &old, &operators);
        let before = c.recovery_ids().await;
        let (at, wall) = (Instant::now(), k8s_openapi::jiff::Timestamp::now());
        cut_all(cp, &target, &peers, false).await;
        let failover = wait_failover(&c.client, &c.api, NS, &old, at, &load.writer, 60).await;
        let r = recorded(&c, &before).await;
        let taken = load
            .writer
            .acks_from_since(&old_ip, at + failover.endpoint_moved);
        assert_eq!(
            taken, 0,
            "the cut-off old primary acknowledged writes after the failover"
        );
        cut_all(cp, &target, &peers, true).await;
        let healed = c.converge(at, 240).await;
        one_recovery(&c.recoveries().await, &before, &old);
        f.note(format!(
            "run {run}: {old} → {}: first write {:.3} s; after the heal the old primary {}; steps {}",
            failover.primary,
            failover.first_insert.as_secs_f64(),
            came_back(&c, &old, wall).await,
            steps(&r)
        ));
        f.failover.push(failover.first_insert.as_secs_f64());
        f.no_problem.push(healed);
        f.runs = run;
        c.acknowledge(&format!("run {run} checked")).await;
    }
    load.check(&c, f).await;
}

/// The primary's node lost (not the leading operator's), then restored.
async fn node(cp: &ControlPlane, f: &mut Figures, runs: usize) {
    let c = Cluster::create(cp, "f-node").await;
    let load = c.load().await;
    for run in 1..=runs {
        let leader_node = node_of(&c.client, "korc-system", &leader_pod(&c.client).await).await;
        let mut old = c.primary().await;
        if node_of(&c.client, "f-node", &old).await == leader_node {
            let mut elsewhere = None;
            for pod in PODS {
                if node_of(&c.client, "f-node", pod).await != leader_node {
                    elsewhere = Some(pod);
                }
            }
            let r = switch_over(&c.api, "db", &format!("away-{run}"), elsewhere, 60).await;
            assert_eq!(r["outcome"], "recovered", "{r:#}");
            old = r["successor"].as_str().unwrap().to_string();
            c.converge(Instant::now(), 60).await;
            c.acknowledge(&format!("switchover {run}")).await;
        }
        let node = node_of(&c.client, "f-node", &old).await;
        let before = c.recovery_ids().await;
        let at = Instant::now();
        cp.inject(&Fault::LoseNode(node.clone())).await.unwrap();
        let failover = wait_failover(&c.client, &c.api, "f-node", &old, at, &load.writer, 60).await;
        cp.inject(&Fault::RestoreNode(node)).await.unwrap();
        let healed = c.converge(at, 180).await;
        let r = one_recovery(&c.recoveries().await, &before, &old);
        f.note(format!(
            "run {run}: {old}'s node lost → {}: first write {:.3} s; {}",
            failover.primary,
            failover.first_insert.as_secs_f64(),
            steps(&r)
        ));
        f.failover.push(failover.first_insert.as_secs_f64());
        f.no_problem.push(healed);
        f.runs = run;
        c.acknowledge(&format!("run {run} checked")).await;
    }
    load.check(&c, f).await;
}

/// The leading operator stalls (a failpoint) at the promotion of the successor it
/// committed for a crashed primary, and its node is lost: the standby leads and
/// finishes, with one promotion. The node takes the primary along, or (with
/// `successor_on_leader_node`) the committed successor, which the replica there is
/// made by `promotionRule: prefer`.
async fn leader_node(cp: &ControlPlane, f: &mut Figures, successor_on_leader_node: bool) {
    let ns = if successor_on_leader_node {
        "f-leader-successor"
    } else {
        "f-leader"
    };
    let c = Cluster::create(cp, ns).await;
    let load = c.load().await;
    let leader = leader_pod(&c.client).await;
    let leader_node = node_of(&c.client, "korc-system", &leader).await;
    let mut on_leader_node = None;
    let mut elsewhere = None;
    for pod in PODS {
        if node_of(&c.client, ns, pod).await == leader_node {
            on_leader_node = Some(pod);
        } else {
            elsewhere = Some(pod);
        }
    }
    let on_leader_node = on_leader_node.expect("a database pod on the leader's node");
    let old = if successor_on_leader_node {
        // The primary elsewhere, and the replica on the leader's node preferred.
        let old = elsewhere.unwrap();
        if c.primary().await != old {
            let r = switch_over(&c.api, "db", "away-from-the-leader", Some(old), 60).await;
            assert_eq!(r["outcome"], "recovered", "{r:#}");
            c.converge(Instant::now(), 60).await;
            c.acknowledge("switchover").await;
        }
        let prefer = json!({"spec": {"instances": {on_leader_node: {"promotionRule": "prefer"}}}});
        c.api
            .patch("db", &PatchParams::default(), &Patch::Merge(prefer))
            .await
            .unwrap();
        old.to_string()
    } else {
        // The primary on the leader's node: losing it takes both.
        if c.primary().await != on_leader_node {
            let r = switch_over(&c.api, "db", "to-the-leader", Some(on_leader_node), 60).await;
            assert_eq!(r["outcome"], "recovered", "{r:#}");
            c.converge(Instant::now(), 60).await;
            c.acknowledge("switchover").await;
        }
        on_leader_node.to_string()
    };
    set_failpoint(&c.client, &leader, "recovery-step-promote", "sleep(10000)").await;
    let before = c.recovery_ids().await;
    let at = Instant::now();
    cp.inject(&Fault::Kill(ContainerRef::pod(ns, &old)))
        .await
        .unwrap();
    let registered = wait_status(
        &c.api,
        "db",
        "a successor committed by the leader",
        30,
        |s| {
            let recoveries = s["recoveries"].as_array()?;
            let r = *new_recoveries(recoveries, &before).first()?;
            (r["leader"] == leader.as_str() && r["successor"].is_string()).then(|| r.clone())
        },
    )
    .await;
    let committed = registered["successor"].as_str().unwrap().to_string();
    cp.inject(&Fault::LoseNode(leader_node.clone()))
        .await
        .unwrap();
    let lost = Instant::now();
    // Up to 60 s for the standby to finish, with the node still lost.
    let mut moved = None;
    while moved.is_none() && lost.elapsed() < Duration::from_secs(60) {
        let primary = c.primary().await;
        if primary != old
            && endpoint_ips(&c.client, ns, "db-primary").await == Some(vec![c.ip(&primary).await])
        {
            moved = Some(primary);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let standby = leader_pod(&c.client).await;
    if moved.is_none() {
        f.note(format!(
            "{leader} lost after committing {committed} (on its node) as the successor of {old}: {standby} had not finished 60 s later"
        ));
    }
    cp.inject(&Fault::RestoreNode(leader_node)).await.unwrap();
    let failover = wait_failover(&c.client, &c.api, ns, &old, at, &load.writer, 120).await;
    let healed = c.converge(at, 180).await;
    let recoveries = c.recoveries().await;
    let new = new_recoveries(&recoveries, &before);
    let promoted: Vec<&&Value> = new.iter().filter(|r| r["outcome"] == "recovered").collect();
    f.note(format!(
        "{leader} lost while failing over {old} (successor {committed} committed); {standby} led; records: {}; {} is primary",
        new.iter()
            .map(|r| format!("{} by {}", r["outcome"].as_str().unwrap_or_default(), r["leader"].as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", then "),
        failover.primary,
    ));
    f.failover.push(failover.first_insert.as_secs_f64());
    f.no_problem.push(healed);
    f.runs = 1;
    load.check(&c, f).await;
    assert_eq!(promoted.len(), 1, "one promotion: {recoveries:#?}");
    assert!(
        moved.is_some(),
        "the standby did not finish the recovery while the committed successor's node was lost"
    );
}

/// One replica's SQL thread stopped (it receives, acknowledges, does not apply) while
/// the writer goes on; then the primary crashes: the caught-up replica is promoted.
async fn lagging(cp: &ControlPlane, f: &mut Figures) {
    let c = Cluster::create(cp, "f-lagging").await;
    let load = c.load().await;
    let old = c.primary().await;
    // Of replicas that received the same transactions (semi-sync), korc's ranking
    // ends on the address: the replica made to lag is the one that tie-break favours.
    let mut replicas = Vec::new();
    for pod in PODS.into_iter().filter(|p| *p != old) {
        replicas.push((c.ip(pod).await, pod));
    }
    replicas.sort();
    let lagging = replicas[0].1;
    let mut r = root_conn(&c.client, "f-lagging", "db", lagging).await;
    r.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    let rows = load.writer.count();
    wait_for(
        "200 rows the lagging replica has not applied",
        60,
        || async { (load.writer.count() >= rows + 200).then_some(()) },
    )
    .await;
    let before = c.recovery_ids().await;
    let at = Instant::now();
    cp.inject(&Fault::Kill(ContainerRef::pod("f-lagging", &old)))
        .await
        .unwrap();
    let failover = wait_failover(&c.client, &c.api, "f-lagging", &old, at, &load.writer, 30).await;
    let record = recorded(&c, &before).await;
    let waited = record["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|st| st["kind"] == "waitRelayLogApplied")
        .and_then(|st| st["durationMs"].as_str().map(str::to_owned))
        .unwrap_or_default();
    f.note(format!(
        "{lagging} (SQL thread stopped, 200+ rows behind): {} promoted, its relay log applied in {waited} ms; {}",
        failover.primary,
        steps(&record)
    ));
    // Whether korc restarted its applier, or it still waits for someone to.
    if let Some(mut conn) = try_root_conn(&c.client, "f-lagging", "db", lagging).await {
        let _ = conn.query_drop("START SLAVE SQL_THREAD").await;
    }
    let healed = c.converge(at, 90).await;
    one_recovery(&c.recoveries().await, &before, &old);
    f.failover.push(failover.first_insert.as_secs_f64());
    f.no_problem.push(healed);
    f.runs = 1;
    load.check(&c, f).await;
    assert_ne!(
        failover.primary, lagging,
        "the lagging replica was promoted while a caught-up one was there"
    );
}

/// The old primary comes back holding a transaction nobody else has: cut off from korc
/// and both replicas, it commits a row (semi-sync waits for an acknowledgement that
/// never comes, the row stays in its binary log) and is failed over; after the heal
/// korc holds it out of both Services. Run 1, default policy: korc leaves it alone
/// until the pod is annotated `korc.dev/rebuild`; run 2, with
/// `spec.recovery.rebuildErrantInstances`: korc rebuilds it by itself. Each rebuild
/// saves the errant transaction first, where `status.clones[]` says, and the cluster
/// returns to 3/3 `NoProblem` with every acknowledged row everywhere.
async fn errant(cp: &ControlPlane, f: &mut Figures) {
    const NS: &str = "f-errant";
    // Run 1 shows korc's default: an errant instance is left alone.
    let c = Cluster::create_with(cp, NS, false).await;
    let load = c.load().await;
    let operators = operators(&c.client).await;
    for (run, by_policy) in [(1, false), (2, true)] {
        if by_policy {
            let patch = json!({"spec": {"recovery": {"rebuildErrantInstances": true}}});
            c.api
                .patch("db", &PatchParams::default(), &Patch::Merge(patch))
                .await
                .unwrap();
        }
        let old = c.primary().await;
        let old_ip = c.ip(&old).await;
        let marker = 2_000_000_000 + run;
        let target = PodRef::new(NS, &old);
        let peers = everyone_but(NS, &old, &operators);
        let before = c.recovery_ids().await;
        let at = Instant::now();
        cut_all(cp, &target, &peers, false).await;
        // The test process is outside the cut: its insert commits on the old primary,
        // then waits for a replica's acknowledgement that never comes.
        let mut conn = root_conn(&c.client, NS, "db", &old).await;
        let errant_insert = tokio::spawn(async move {
            let _ = conn
                .query_drop(format!("INSERT INTO app.t (id) VALUES ({marker})"))
                .await;
        });
        let failover = wait_failover(&c.client, &c.api, NS, &old, at, &load.writer, 60).await;
        recorded(&c, &before).await;
        cut_all(cp, &target, &peers, true).await;
        errant_insert.abort();
        let healed = Instant::now();

        let held = wait_status(
            &c.api,
            "db",
            "the old primary held out as errant",
            120,
            |s| {
                let i = s["instances"]
                    .as_array()?
                    .iter()
                    .find(|i| i["name"] == old.as_str())?;
                let excluded = i["role"] == "excluded"
                    && i["error"].as_str().is_some_and(|e| e.contains("lacks"));
                let copying = !i["cloneProgress"].is_null();
                (excluded || copying).then(|| i.clone())
            },
        )
        .await;
        let ip = c.ip(&old).await;
        for service in ["db-primary", "db-replicas"] {
            let listed = endpoint_ips(&c.client, NS, service)
                .await
                .unwrap_or_default();
            assert!(
                !listed.contains(&ip) && !listed.contains(&old_ip),
                "{old} (errant) is in {service}: {listed:?}"
            );
        }
        if !by_policy {
            assert_eq!(held["role"], "excluded", "{held:#}");
            // Left alone: no copy starts without the annotation or the policy.
            tokio::time::sleep(Duration::from_secs(10)).await;
            let s = status(&c.api, "db").await;
            let copies = s["clones"].as_array().map_or(0, Vec::len);
            assert_eq!(copies, 0, "copied over without being asked: {s:#}");
            let patch =
                json!({"metadata": {"annotations": {"korc.dev/rebuild": "save and rebuild"}}});
            Api::<Pod>::namespaced(c.client.clone(), NS)
                .patch(&old, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .unwrap();
        }
        let record = wait_status(&c.api, "db", "the rebuild recorded", 240, |s| {
            s["clones"]
                .as_array()?
                .iter()
                .rev()
                .find(|r| r["pod"] == old.as_str() && r["outcome"] == "completed")
                .cloned()
        })
        .await;
        assert_eq!(
            record["reason"],
            if by_policy { "errant" } else { "requested" },
            "{record:#}"
        );
        let to_no_problem = c.converge(healed, 240).await;
        let saved_to = record["savedTo"]
            .as_str()
            .expect("where the errant transactions are");
        let gtids = record["errantGtids"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let saved = saved_events(&c.client, NS, &old, saved_to).await;
        assert!(
            saved.contains(&marker.to_string()),
            "the saved events hold the errant row {marker}: {saved_to}"
        );
        let mut rebuilt = root_conn(&c.client, NS, "db", &old).await;
        let kept: u64 = rebuilt
            .query_first(format!("SELECT COUNT(*) FROM app.t WHERE id = {marker}"))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(kept, 0, "the rebuilt instance still holds the errant row");
        let pod = Api::<Pod>::namespaced(c.client.clone(), NS)
            .get(&old)
            .await
            .unwrap();
        assert!(
            !pod.metadata
                .annotations
                .unwrap_or_default()
                .contains_key("korc.dev/rebuild"),
            "the annotation is removed once served"
        );
        f.note(format!(
            "run {run} ({}): {old} → {} in {:.3} s; held out with {gtids}; rebuilt from {} ({} bytes), saved to {saved_to}; NoProblem {:.1} s after the heal",
            if by_policy { "rebuildErrantInstances" } else { "korc.dev/rebuild" },
            failover.primary,
            failover.first_insert.as_secs_f64(),
            record["donor"],
            record["bytesCopied"],
            to_no_problem
        ));
        f.failover.push(failover.first_insert.as_secs_f64());
        f.no_problem.push(to_no_problem);
        f.runs = run as usize;
        c.acknowledge(&format!("errant run {run} checked")).await;
    }
    load.check(&c, f).await;
}

/// The binary log events a rebuild saved on `pod`'s volume under `saved_to` (a path
/// in the pod's data directory), read through the volume's directory on this host.
async fn saved_events(client: &kube::Client, ns: &str, pod: &str, saved_to: &str) -> String {
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get(&format!("data-{pod}"))
        .await
        .unwrap();
    let volume = claim.spec.and_then(|s| s.volume_name).unwrap();
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&volume)
        .await
        .unwrap();
    let host = pv.spec.and_then(|s| s.host_path).unwrap().path;
    let relative = saved_to
        .strip_prefix(korc::provisioning::DATADIR)
        .unwrap()
        .trim_start_matches('/');
    let dir = std::path::Path::new(&host).join(relative);
    let mut out = String::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "sql") {
            out += &std::fs::read_to_string(&path).unwrap();
        }
    }
    out
}

/// Three clusters lose their primaries at the same moment.
async fn three_clusters(cp: &ControlPlane, f: &mut Figures) {
    let names = ["f-three-1", "f-three-2", "f-three-3"];
    let clusters = futures::future::join_all(names.map(|ns| Cluster::create(cp, ns))).await;
    let mut loads = Vec::new();
    let mut olds = Vec::new();
    for c in &clusters {
        loads.push(c.load().await);
        olds.push(c.primary().await);
    }
    let kills: Vec<Fault> = clusters
        .iter()
        .zip(&olds)
        .map(|(c, old)| Fault::Kill(ContainerRef::pod(&c.ns, old)))
        .collect();
    let at = Instant::now();
    for done in futures::future::join_all(kills.iter().map(|k| cp.inject(k))).await {
        done.unwrap();
    }
    let failovers =
        futures::future::join_all(
            clusters.iter().zip(&olds).zip(&loads).map(|((c, old), l)| {
                wait_failover(&c.client, &c.api, &c.ns, old, at, &l.writer, 30)
            }),
        )
        .await;
    for ((c, old), failover) in clusters.iter().zip(&olds).zip(&failovers) {
        let healed = c.converge(at, 90).await;
        let r = one_recovery(&c.recoveries().await, &HashSet::new(), old);
        f.note(format!(
            "{}: {old} → {}: first write {:.3} s; {}",
            c.ns,
            failover.primary,
            failover.first_insert.as_secs_f64(),
            steps(&r)
        ));
        f.failover.push(failover.first_insert.as_secs_f64());
        f.no_problem.push(healed);
    }
    f.runs = 1;
    for (c, l) in clusters.iter().zip(loads) {
        l.check(c, f).await;
    }
}
