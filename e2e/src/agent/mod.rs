//! The node agent: registers nodes, keeps them alive, provisions volumes and runs
//! the pods bound to its nodes as local processes (a kubelet without containers).

mod container;
mod env;
mod images;
mod kubelet_api;
mod logs;
mod mariadb;
mod mysql;
mod node;
mod pod_runner;
mod probes;
mod server_image;
mod sources;
mod status;
mod storage;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::cgroups::CgroupTree;
use crate::cuts::{Cuts, Endpoint};
use crate::error::{Error, IoContext, Result};
use crate::network;

pub use node::node_is_ready;
pub use storage::{PROVISIONER, STORAGE_CLASS};

/// How the agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Number of nodes to register (`node-a`, `node-b`, … in zones `zone-a`, …).
    pub nodes: usize,
    /// Second octet of the `127.B.0.0/16` block the pods' and nodes' addresses come from.
    pub address_block: u8,
    /// Where pods' volumes, logs and provisioned persistent volumes live.
    pub state_dir: PathBuf,
    /// The API server URL written into pods' kubeconfigs.
    pub server: String,
    /// The CA certificate pods trust.
    pub ca_cert: PathBuf,
    /// The binary run for korc images.
    pub korc_binary: PathBuf,
    /// The MySQL installation run for MySQL images (see [`crate::binaries::mysql_dir`]).
    pub mysql_dir: PathBuf,
    /// The kubelet API's certificates; without them no node serves container logs.
    pub kubelet_tls: Option<KubeletTls>,
}

/// What each node's kubelet API needs: its serving certificate, and the CA its
/// clients' (the API server's) certificates are signed by.
#[derive(Debug, Clone)]
pub struct KubeletTls {
    /// The CA of client certificates.
    pub client_ca: PathBuf,
    /// Each node's serving certificate.
    pub nodes: Vec<crate::certs::NodeCert>,
}

/// The name of node `index` (0-based): `node-a`, `node-b`, ….
pub fn node_name(index: usize) -> String {
    format!("node-{}", node::suffix(index))
}

/// `$KORC_BINARY`, else `target/debug/korc` of this workspace (honouring
/// `$CARGO_TARGET_DIR`).
pub fn default_korc_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KORC_BINARY") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        },
        PathBuf::from,
    );
    target.join("debug").join("korc")
}

/// The file naming the Unix socket of the server `container` of `namespace/pod` runs
/// (written when it starts): what `kubectl exec … mysql` would reach, root's only way in
/// when korc keeps root off the network.
pub fn server_socket_pointer(
    state_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
) -> PathBuf {
    container_log_path(state_dir, namespace, pod, container).with_extension("socket")
}

/// Where the log of `container` in `namespace/pod` is written (all runs appended).
pub fn container_log_path(
    state_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
) -> PathBuf {
    state_dir
        .join("logs")
        .join(namespace)
        .join(pod)
        .join(format!("{container}.log"))
}

/// A node this agent runs.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub name: String,
    pub zone: String,
    pub ip: Ipv4Addr,
}

/// State shared by the agent's tasks.
pub(crate) struct Context {
    pub client: kube::Client,
    pub config: AgentConfig,
    pub nodes: Vec<NodeInfo>,
    /// Short directory for unix sockets (their paths are limited to 108 bytes).
    pub run_dir: PathBuf,
    /// Nodes currently lost by fault injection.
    pub lost: Mutex<HashSet<String>>,
    /// The pods' cgroups, or why pods run without (network cuts then fail saying so).
    pub cgroups: std::result::Result<CgroupTree, String>,
    /// The network cuts in force, or why there can be none.
    pub cuts: Mutex<std::result::Result<Cuts, String>>,
    /// Each running pod's address and cgroup, by `namespace/name`: the ends of cuts.
    pub endpoints: Mutex<HashMap<String, Endpoint>>,
    next_ip: Mutex<u32>,
    next_seq: Mutex<u64>,
}

impl Context {
    /// The next unused pod address.
    pub fn allocate_ip(&self) -> Option<Ipv4Addr> {
        let mut next = self.next_ip.lock().ok()?;
        let ip = network::pod_ip(self.config.address_block, *next)?;
        *next += 1;
        Some(ip)
    }

    /// Keeps `ip` (from a pod's existing status) out of future allocations.
    pub fn reserve_ip(&self, ip: Ipv4Addr) -> bool {
        let Some(index) = network::pod_index(self.config.address_block, ip) else {
            return false;
        };
        if let Ok(mut next) = self.next_ip.lock() {
            *next = (*next).max(index + 1);
        }
        true
    }

    /// A small number unique within this agent, for short file names.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.lock().map_or(0, |mut n| {
            *n += 1;
            *n
        })
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn is_lost(&self, node: &str) -> bool {
        self.lost.lock().is_ok_and(|l| l.contains(node))
    }

    /// Cuts (`heal` false) or heals the path between running pods `a` and `b`
    /// (`namespace/name`).
    pub fn cut(&self, a: &str, b: &str, heal: bool) -> Result<()> {
        let mut cuts = self
            .cuts
            .lock()
            .map_err(|_| Error::NetworkCut("poisoned".to_owned()))?;
        let cuts = cuts.as_mut().map_err(|e| Error::NetworkCut(e.clone()))?;
        if heal {
            return cuts.heal(a, b).map(drop);
        }
        let end = |key: &str| {
            self.endpoints
                .lock()
                .ok()
                .and_then(|e| e.get(key).cloned())
                .ok_or_else(|| Error::NetworkCut(format!("pod {key} is not running here")))
        };
        cuts.cut((a, end(a)?), (b, end(b)?))
    }
}

/// Why a pod's runner must stop without the usual graceful termination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopMode {
    /// The pod object is gone from the API: kill its processes.
    Vanished,
    /// Its node was lost: kill everything at once and say nothing to the API.
    NodeLost,
    /// The agent is shutting down.
    Shutdown,
}

/// Node-level events for the pod dispatcher.
#[derive(Debug)]
pub(crate) enum NodeEvent {
    /// The node is lost; the sender is told once all its pods' processes are dead.
    Lost(String, oneshot::Sender<()>),
    /// The node is back; the sender is told once its pods' runners are started.
    Restored(String, oneshot::Sender<()>),
}

/// A running node agent; its tasks run on the tokio runtime that started it.
pub struct NodeAgent {
    ctx: Arc<Context>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    names: Vec<String>,
}

impl NodeAgent {
    /// Registers the nodes and the storage class, then starts heartbeats, the
    /// volume provisioner and the pod dispatcher.
    pub async fn start(config: AgentConfig, client: kube::Client) -> Result<Self> {
        std::fs::create_dir_all(&config.state_dir)
            .context(|| format!("creating {}", config.state_dir.display()))?;
        let run_dir = std::env::temp_dir().join(format!(
            "korc-run-{}-{}",
            config.address_block,
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).context(|| format!("creating {}", run_dir.display()))?;
        let nodes: Vec<NodeInfo> = (0..config.nodes)
            .map(|i| NodeInfo {
                name: node_name(i),
                zone: format!("zone-{}", node::suffix(i)),
                ip: network::node_ip(config.address_block, i),
            })
            .collect();
        let names = nodes.iter().map(|n| n.name.clone()).collect();
        let cgroups = CgroupTree::create(config.address_block).map_err(|e| e.to_string());
        let cuts = match &cgroups {
            Ok(_) => Cuts::new(config.address_block).map_err(|e| e.to_string()),
            Err(e) => Err(format!("pods run without cgroups: {e}")),
        };
        if let Err(e) = &cuts {
            tracing::warn!(error = %e, "network cuts are unavailable");
        }
        let ctx = Arc::new(Context {
            client,
            config,
            nodes,
            run_dir,
            lost: Mutex::new(HashSet::new()),
            cgroups,
            cuts: Mutex::new(cuts),
            endpoints: Mutex::new(HashMap::new()),
            next_ip: Mutex::new(0),
            next_seq: Mutex::new(0),
        });
        node::register(&ctx).await?;
        storage::ensure_storage_class(&ctx).await?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let (node_tx, node_rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        if let Some(tls) = &ctx.config.kubelet_tls {
            for node in &ctx.nodes {
                let Some(cert) = tls.nodes.iter().find(|c| c.node == node.name) else {
                    continue;
                };
                let (listener, acceptor) = kubelet_api::bind(node, cert, &tls.client_ca).await?;
                tasks.push(tokio::spawn(kubelet_api::serve(
                    listener,
                    acceptor,
                    ctx.config.state_dir.clone(),
                    shutdown_rx.clone(),
                )));
            }
        }
        tasks.extend([
            tokio::spawn(node::heartbeat(ctx.clone(), shutdown_rx.clone())),
            tokio::spawn(node::watch_faults(
                ctx.clone(),
                node_tx,
                shutdown_rx.clone(),
            )),
            tokio::spawn(storage::provision(ctx.clone(), shutdown_rx.clone())),
            tokio::spawn(dispatch(ctx.clone(), node_rx, shutdown_rx)),
        ]);
        Ok(Self {
            ctx,
            shutdown,
            tasks,
            names,
        })
    }

    /// Names of the registered nodes.
    pub fn node_names(&self) -> &[String] {
        &self.names
    }

    /// Kills every pod process and stops the agent's tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Ok(Ok(cuts)) = self.ctx.cuts.lock().as_deref_mut() {
            cuts.remove();
        }
        if let Ok(cgroups) = &self.ctx.cgroups {
            cgroups.remove();
        }
        let _ = std::fs::remove_dir_all(&self.ctx.run_dir);
    }
}

struct Runner {
    node: String,
    pod: watch::Sender<Pod>,
    stop: watch::Sender<Option<StopMode>>,
    task: JoinHandle<()>,
}

/// Watches all pods and keeps one runner per pod bound to a live node of ours.
async fn dispatch(
    ctx: Arc<Context>,
    mut node_events: mpsc::UnboundedReceiver<NodeEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let mut stream = watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: HashMap<String, Pod> = HashMap::new();
    let mut runners: HashMap<String, Runner> = HashMap::new();
    // Pods whose runner ended by itself (completed, or deleted from the API):
    // they must not run again when a stale watch event shows them.
    let mut finished: HashSet<String> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            event = stream.next() => match event {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                    on_pod(&ctx, pod, &mut known, &mut runners, &finished, &done_tx);
                }
                Some(Ok(watcher::Event::Delete(pod))) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    known.remove(&uid);
                    finished.remove(&uid);
                    if let Some(runner) = runners.remove(&uid) {
                        let _ = runner.stop.send(Some(StopMode::Vanished));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch"),
                None => break,
            },
            Some(event) = node_events.recv() => match event {
                NodeEvent::Lost(node, applied) => {
                    let lost: Vec<String> = runners
                        .iter()
                        .filter(|(_, r)| r.node == node)
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in lost {
                        if let Some(runner) = runners.remove(&uid) {
                            let _ = runner.stop.send(Some(StopMode::NodeLost));
                            // All processes of the node die together, before the fault is acknowledged.
                            let _ = runner.task.await;
                        }
                    }
                    let _ = applied.send(());
                }
                NodeEvent::Restored(node, applied) => {
                    let pods: Vec<Pod> = known
                        .values()
                        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
                        .cloned()
                        .collect();
                    for pod in pods {
                        on_pod(&ctx, pod, &mut known, &mut runners, &finished, &done_tx);
                    }
                    let _ = applied.send(());
                }
            },
            Some(uid) = done_rx.recv() => {
                if runners.get(&uid).is_some_and(|r| r.task.is_finished()) {
                    runners.remove(&uid);
                    finished.insert(uid);
                }
            }
        }
    }
    for (_, runner) in runners.drain() {
        let _ = runner.stop.send(Some(StopMode::Shutdown));
        let _ = runner.task.await;
    }
}

fn on_pod(
    ctx: &Arc<Context>,
    pod: Pod,
    known: &mut HashMap<String, Pod>,
    runners: &mut HashMap<String, Runner>,
    finished: &HashSet<String>,
    done: &mpsc::UnboundedSender<String>,
) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return;
    };
    if ctx.node(&node).is_none() {
        return;
    }
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    known.insert(uid.clone(), pod.clone());
    if ctx.is_lost(&node) {
        return;
    }
    if let Some(runner) = runners.get(&uid) {
        runner.pod.send_replace(pod);
        return;
    }
    let terminal = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    if terminal || finished.contains(&uid) {
        // Nothing runs any more; a terminal pod being deleted just goes away.
        if pod.metadata.deletion_timestamp.is_some() {
            tokio::spawn(delete_now(ctx.client.clone(), pod));
        }
        return;
    }
    let (pod_tx, pod_rx) = watch::channel(pod);
    let (stop_tx, stop_rx) = watch::channel(None);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let done = done.clone();
        let uid = uid.clone();
        async move {
            pod_runner::run(ctx, pod_rx, stop_rx).await;
            let _ = done.send(uid);
        }
    });
    runners.insert(
        uid,
        Runner {
            node,
            pod: pod_tx,
            stop: stop_tx,
            task,
        },
    );
}

/// Deletes a pod whose processes are gone (the kubelet's final step).
pub(crate) async fn delete_now(client: kube::Client, pod: Pod) {
    let (Some(ns), Some(name)) = (
        pod.metadata.namespace.as_deref(),
        pod.metadata.name.as_deref(),
    ) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(client, ns);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: pod
            .metadata
            .uid
            .clone()
            .map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
        ..DeleteParams::default()
    };
    if let Err(e) = api.delete(name, &params).await
        && !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
    {
        tracing::warn!(pod = name, error = %e, "deleting terminated pod");
    }
}
