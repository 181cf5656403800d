//! A complete local Kubernetes control plane: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and the process-running node agent.
//!
//! All processes are started from one dedicated thread that lives exactly as long
//! as the [`ControlPlane`], so the kernel's parent-death signal cleans up even when
//! the owner is killed, and a control plane kept in a `static` (shared by the
//! tests of one binary, each with its own tokio runtime) never depends on a
//! runtime that a finished test has dropped.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::Api;
use kube::api::ListParams;
use tokio::sync::oneshot;

use crate::agent::{AgentConfig, KubeletTls, NodeAgent};
use crate::binaries::Binaries;
use crate::certs::Pki;
use crate::error::{Error, IoContext, Result};
use crate::faults::Fault;
use crate::kubeconfig::{self, Credential};
use crate::network::{self, AddressBlock};
use crate::process::{Launch, Supervised};

/// How to start a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// Number of nodes the agent registers (each in its own zone).
    pub nodes: usize,
    /// State directory; `None` makes a temporary one that is removed on shutdown.
    pub dir: Option<PathBuf>,
    /// Second octet of the `127.B.0.0/16` block; `None` picks a free one.
    pub address_block: Option<u8>,
    /// The korc binary run for korc images; `None` means [`crate::agent::default_korc_binary`].
    pub korc_binary: Option<PathBuf>,
    /// How long to wait for everything to become healthy.
    pub start_timeout: Duration,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            dir: None,
            address_block: None,
            korc_binary: None,
            start_timeout: Duration::from_secs(90),
        }
    }
}

/// Facts about a running control plane, reported by its supervisor thread.
#[derive(Debug, Clone)]
struct Started {
    dir: PathBuf,
    server: String,
    kubeconfig: PathBuf,
    octet: u8,
    nodes: Vec<String>,
    pids: Vec<(String, i32)>,
}

/// A running local control plane with its node agent. Dropping it (or calling
/// [`ControlPlane::shutdown`]) stops every process it started, pods included.
#[derive(Debug)]
pub struct ControlPlane {
    started: Started,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlPlane {
    /// Starts a control plane with the default configuration (3 nodes, temp dir).
    pub async fn start_default() -> Result<Self> {
        Self::start(ControlPlaneConfig::default()).await
    }

    /// Starts a control plane and waits until it is usable: API server ready,
    /// nodes registered and Ready, controller manager working.
    pub async fn start(config: ControlPlaneConfig) -> Result<Self> {
        // Fail fast, before any thread or directory exists.
        let binaries = Binaries::locate()?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("korc-control-plane".to_owned())
            .spawn(move || supervise(config, binaries, ready_tx, stop_rx))
            .context(|| "spawning the control-plane thread".to_owned())?;
        match ready_rx.await {
            Ok(Ok(started)) => Ok(Self {
                started,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::Supervisor(
                    "the control-plane thread died".to_owned(),
                ))
            }
        }
    }

    /// The admin kubeconfig (token with `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.started.kubeconfig
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.started.server
    }

    /// The state directory (certs, logs, etcd data, pods).
    pub fn dir(&self) -> &Path {
        &self.started.dir
    }

    /// Names of the registered nodes.
    pub fn nodes(&self) -> &[String] {
        &self.started.nodes
    }

    /// The second octet `B` of this control plane's `127.B.0.0/16` block.
    pub fn address_block(&self) -> u8 {
        self.started.octet
    }

    /// A new admin client. Make one per tokio runtime (i.e. per test).
    pub async fn client(&self) -> Result<kube::Client> {
        kubeconfig::client(&self.started.kubeconfig).await
    }

    /// Path of a container's log file (stdout and stderr of every run, appended).
    pub fn container_log_path(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        crate::agent::container_log_path(&agent_dir(&self.started.dir), namespace, pod, container)
    }

    /// The Unix socket of the server a container runs, once it has started.
    pub fn server_socket(&self, namespace: &str, pod: &str, container: &str) -> Option<PathBuf> {
        let pointer = crate::agent::server_socket_pointer(
            &agent_dir(&self.started.dir),
            namespace,
            pod,
            container,
        );
        std::fs::read_to_string(pointer).ok().map(PathBuf::from)
    }

    /// A container's log so far (empty if it never ran).
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        std::fs::read_to_string(self.container_log_path(namespace, pod, container))
            .unwrap_or_default()
    }

    /// Injects `fault` through the agent and waits until the agent has applied it.
    pub async fn inject(&self, fault: &Fault) -> Result<()> {
        let client = self.client().await?;
        crate::faults::inject(&client, fault).await
    }

    /// Resident memory of the control-plane processes (etcd, apiserver, KCM,
    /// scheduler), in bytes, by process name. Pods and the in-process agent are
    /// not included.
    pub fn rss_bytes(&self) -> Vec<(String, u64)> {
        self.started
            .pids
            .iter()
            .map(|(name, pid)| (name.clone(), rss_of(*pid)))
            .collect()
    }

    /// Stops everything and waits for it (same as dropping).
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn agent_dir(dir: &Path) -> PathBuf {
    dir.join("agent")
}

fn rss_of(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The body of the control-plane thread.
fn supervise(
    config: ControlPlaneConfig,
    binaries: Binaries,
    ready: oneshot::Sender<Result<Started>>,
    stop: std::sync::mpsc::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(Error::Io {
                what: "building the control-plane runtime".to_owned(),
                source: e,
            }));
            return;
        }
    };
    runtime.block_on(async move {
        let mut cluster = Cluster::default();
        let result = cluster.start(&config, &binaries).await;
        let ok = result.is_ok();
        let _ = ready.send(result);
        if ok {
            // Block this (dedicated) thread's runtime on the stop signal without
            // starving the agent's tasks.
            let (tx, rx) = oneshot::channel();
            std::thread::spawn(move || {
                let _ = stop.recv();
                let _ = tx.send(());
            });
            let _ = rx.await;
        }
        cluster.stop().await;
    });
}

/// What the supervisor thread owns.
#[derive(Default)]
struct Cluster {
    /// Control-plane processes in start order.
    processes: Vec<(String, Supervised)>,
    agent: Option<NodeAgent>,
    block: Option<AddressBlock>,
    /// A temporary directory removed on stop.
    temp_dir: Option<PathBuf>,
}

impl Cluster {
    async fn start(&mut self, config: &ControlPlaneConfig, bin: &Binaries) -> Result<Started> {
        let began = Instant::now();
        remove_stale_temp_dirs();
        let deadline = began + config.start_timeout;
        let block = AddressBlock::acquire(config.address_block)?;
        let octet = block.octet();
        let ip = block.api_ip();
        self.block = Some(block);

        let dir = match &config.dir {
            Some(dir) => dir.clone(),
            None => {
                let dir =
                    std::env::temp_dir().join(format!("korc-e2e-{octet}-{}", std::process::id()));
                self.temp_dir = Some(dir.clone());
                dir
            }
        };
        // A previous run's etcd data or pods must not leak into this one.
        let _ = std::fs::remove_dir_all(&dir);
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).context(|| format!("creating {}", logs.display()))?;

        let node_addresses: Vec<(String, IpAddr)> = (0..config.nodes)
            .map(|i| {
                (
                    crate::agent::node_name(i),
                    IpAddr::V4(network::node_ip(octet, i)),
                )
            })
            .collect();
        let pki = Pki::generate(&dir.join("pki"), IpAddr::V4(ip), &node_addresses)?;
        let token = random_token()?;
        let tokens = dir.join("pki").join("tokens.csv");
        std::fs::write(&tokens, format!("{token},admin,admin,system:masters\n"))
            .context(|| format!("writing {}", tokens.display()))?;
        let server = format!("https://{ip}:{}", network::API_PORT);
        let admin = dir.join("kubeconfig");
        kubeconfig::write(&admin, &server, &pki.ca_cert, &Credential::Token(token))?;

        // etcd
        let etcd_client = format!("http://{ip}:{}", network::ETCD_CLIENT_PORT);
        let etcd_peer = format!("http://{ip}:{}", network::ETCD_PEER_PORT);
        self.spawn(
            "etcd",
            &bin.etcd,
            &[
                "--name=default".to_owned(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_client}"),
                format!("--advertise-client-urls={etcd_client}"),
                format!("--listen-peer-urls={etcd_peer}"),
                format!("--initial-advertise-peer-urls={etcd_peer}"),
                format!("--initial-cluster=default={etcd_peer}"),
                // Throw-away data: durability is not worth the fsync latency.
                "--unsafe-no-fsync".to_owned(),
                "--log-level=warn".to_owned(),
            ],
            &logs,
        )?;
        let etcd_addr = SocketAddr::from((ip, network::ETCD_CLIENT_PORT));
        self.wait_until("etcd", deadline, &logs, || async {
            match crate::http::get_status(etcd_addr, &ip.to_string(), "/health", &[]).await {
                Ok(200) => Ok(()),
                Ok(code) => Err(format!("/health returned {code}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;

        // kube-apiserver
        let sa_key = pki.service_account_key.display().to_string();
        self.spawn(
            "kube-apiserver",
            &bin.kube_apiserver,
            &[
                format!("--etcd-servers={etcd_client}"),
                format!("--bind-address={ip}"),
                format!("--advertise-address={ip}"),
                format!("--secure-port={}", network::API_PORT),
                format!("--tls-cert-file={}", pki.serving_cert.display()),
                format!("--tls-private-key-file={}", pki.serving_key.display()),
                format!("--client-ca-file={}", pki.ca_cert.display()),
                format!("--token-auth-file={}", tokens.display()),
                "--authorization-mode=RBAC".to_owned(),
                format!("--service-account-issuer={server}"),
                format!(
                    "--service-account-key-file={}",
                    pki.service_account_public_key.display()
                ),
                format!("--service-account-signing-key-file={sa_key}"),
                "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
                "--allow-privileged=true".to_owned(),
                // The "kubernetes" Service would point at a loopback address no pod
                // could use anyway; pods get a kubeconfig instead.
                "--endpoint-reconciler-type=none".to_owned(),
                // `kubectl logs`: the node agent serves the kubelet's log endpoint on
                // each node's address with a certificate of this CA, and wants this
                // client certificate. Node names do not resolve: dial the address.
                format!("--kubelet-certificate-authority={}", pki.ca_cert.display()),
                format!(
                    "--kubelet-client-certificate={}",
                    pki.kubelet_client_cert.display()
                ),
                format!("--kubelet-client-key={}", pki.kubelet_client_key.display()),
                "--kubelet-preferred-address-types=InternalIP".to_owned(),
                "--profiling=false".to_owned(),
            ],
            &logs,
        )?;
        let client = kubeconfig::client(&admin).await?;
        self.wait_until("kube-apiserver", deadline, &logs, || {
            let client = client.clone();
            async move {
                let request = http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                client
                    .request_text(request)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
        .await?;

        // kube-controller-manager and kube-scheduler (their ports sit on this
        // block's own address, so they cannot collide with another control plane).
        let admin_s = admin.display().to_string();
        self.spawn(
            "kube-controller-manager",
            &bin.kube_controller_manager,
            &[
                format!("--kubeconfig={admin_s}"),
                format!("--authentication-kubeconfig={admin_s}"),
                format!("--authorization-kubeconfig={admin_s}"),
                format!("--bind-address={ip}"),
                "--secure-port=10257".to_owned(),
                "--leader-elect=false".to_owned(),
                format!("--root-ca-file={}", pki.ca_cert.display()),
                format!("--service-account-private-key-file={sa_key}"),
                // Notice a lost node within seconds, not the default 50 s.
                "--node-monitor-period=2s".to_owned(),
                "--node-monitor-grace-period=12s".to_owned(),
                "--kube-api-qps=200".to_owned(),
                "--kube-api-burst=400".to_owned(),
                "--profiling=false".to_owned(),
            ],
            &logs,
        )?;
        self.spawn(
            "kube-scheduler",
            &bin.kube_scheduler,
            &[
                format!("--kubeconfig={admin_s}"),
                format!("--authentication-kubeconfig={admin_s}"),
                format!("--authorization-kubeconfig={admin_s}"),
                format!("--bind-address={ip}"),
                "--secure-port=10259".to_owned(),
                "--leader-elect=false".to_owned(),
                "--profiling=false".to_owned(),
            ],
            &logs,
        )?;

        // The node agent runs on this thread, so its pods share the death signal.
        let agent_config = AgentConfig {
            nodes: config.nodes,
            address_block: octet,
            state_dir: agent_dir(&dir),
            server: server.clone(),
            ca_cert: pki.ca_cert.clone(),
            korc_binary: config
                .korc_binary
                .clone()
                .unwrap_or_else(crate::agent::default_korc_binary),
            mysql_dir: crate::binaries::mysql_dir(),
            kubelet_tls: Some(KubeletTls {
                client_ca: pki.ca_cert.clone(),
                nodes: pki.kubelet_serving.clone(),
            }),
        };
        let agent = NodeAgent::start(agent_config, client.clone()).await?;
        let nodes = agent.node_names().to_vec();
        self.agent = Some(agent);

        let expected = nodes.len();
        self.wait_until("nodes", deadline, &logs, || {
            let nodes: Api<Node> = Api::all(client.clone());
            async move {
                let list = nodes
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let ready = list
                    .items
                    .iter()
                    .filter(|n| crate::agent::node_is_ready(n))
                    .count();
                if ready >= expected {
                    Ok(())
                } else {
                    Err(format!("{ready} of {expected} nodes Ready"))
                }
            }
        })
        .await?;
        // The "default" ServiceAccount proves the controller manager works; pods
        // are refused by admission until it exists.
        self.wait_until("kube-controller-manager", deadline, &logs, || {
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
            async move {
                match accounts.get_opt("default").await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("no default ServiceAccount yet".to_owned()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await?;
        tracing::info!(
            elapsed_ms = began.elapsed().as_millis() as u64,
            %server,
            "control plane ready"
        );
        Ok(Started {
            dir,
            server,
            kubeconfig: admin,
            octet,
            nodes,
            pids: self
                .processes
                .iter()
                .map(|(name, p)| (name.clone(), p.pid()))
                .collect(),
        })
    }

    fn spawn(&mut self, name: &str, program: &Path, args: &[String], logs: &Path) -> Result<()> {
        let launch = Launch {
            program: program.display().to_string(),
            args: args.to_vec(),
            env: Vec::new(),
            clear_env: false,
            cwd: logs.to_path_buf(),
            log: logs.join(format!("{name}.log")),
            cgroup: None,
        };
        let process = Supervised::spawn(&launch)?;
        self.processes.push((name.to_owned(), process));
        Ok(())
    }

    /// Polls `check` until it succeeds, failing early when a process has exited.
    async fn wait_until<F, Fut>(
        &mut self,
        component: &str,
        deadline: Instant,
        logs: &Path,
        mut check: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), String>>,
    {
        let started = Instant::now();
        loop {
            let detail = match check().await {
                Ok(()) => return Ok(()),
                Err(detail) => detail,
            };
            for (name, process) in &mut self.processes {
                if let Some(status) = process.try_wait() {
                    return Err(Error::Exited {
                        component: name.clone(),
                        status: status.to_string(),
                        log: logs.join(format!("{name}.log")),
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    component: component.to_owned(),
                    seconds: started.elapsed().as_secs(),
                    detail,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
        }
        // Reverse start order: clients before the API server, etcd last.
        while let Some((_, mut process)) = self.processes.pop() {
            process.stop(Duration::from_secs(5)).await;
        }
        if let Some(dir) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        self.block = None;
    }
}

/// Removes temporary directories of control planes whose process is gone.
///
/// A control plane kept in a `static` is never dropped: the kernel kills its
/// processes when the test binary exits, but its directory stays behind.
fn remove_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = ["korc-e2e-", "korc-run-"]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .and_then(|rest| rest.rsplit('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context(|| "reading /dev/urandom".to_owned())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
