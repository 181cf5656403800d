//! One pod's life on a node: volumes, init containers, containers with restart
//! policy and back-off, probes, faults, graceful deletion and status reports.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;

use super::container::{self, ContainerFiles, Plan, PodScope};
use super::env::{self, PodFacts};
use super::images::{self, Runtime};
use super::probes::Tracker;
use super::sources::Sources;
use super::status::{self, ContainerView, Phase, State};
use super::volumes::{self, MountTable};
use super::{Context, StopMode, container_log_path, delete_now, logs, server_socket_pointer};
use crate::cgroups::PodCgroup;
use crate::cuts::Endpoint;
use crate::error::{Error, IoContext, Result};
use crate::faults::{self, PodFault, Signal};
use crate::kubeconfig::{self, Credential};
use crate::process::Supervised;

/// How often the runner looks at its processes and probes.
const TICK: Duration = Duration::from_millis(100);
/// How often Secret volumes are brought up to date with their Secrets (the kubelet
/// syncs about once a minute; tests want seconds).
const SECRET_SYNC: Duration = Duration::from_secs(5);
/// Longest restart back-off (the kubelet's is 5 min; tests want seconds).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A container that ran this long restarts without back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// Runs the pod until it completes, is deleted, or `stop` says otherwise.
pub(crate) async fn run(
    ctx: Arc<Context>,
    mut pod_rx: watch::Receiver<Pod>,
    mut stop: watch::Receiver<Option<StopMode>>,
) {
    let pod = pod_rx.borrow_and_update().clone();
    let Some(mut run) = PodRun::new(ctx, pod) else {
        return;
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = pod_rx.changed() => {
                if changed.is_err() {
                    run.kill_all().await;
                    return;
                }
                run.pod = pod_rx.borrow_and_update().clone();
            }
            _ = stop.changed() => {
                // Vanished, node lost or agent shutdown: nobody is left to report to.
                let mode = stop.borrow().unwrap_or(StopMode::Shutdown);
                tracing::debug!(pod = run.name, ?mode, "stopping pod processes");
                run.kill_all().await;
                return;
            }
        }
        run.apply_fault().await;
        if run.pod.metadata.deletion_timestamp.is_some() {
            if run.terminate().await {
                return;
            }
            continue;
        }
        run.step().await;
        match run.publish().await {
            Published::Gone => {
                run.kill_all().await;
                return;
            }
            Published::Phase(phase) if phase.is_terminal() => return,
            Published::Phase(_) => {}
        }
    }
}

enum Published {
    Phase(Phase),
    Gone,
}

/// One container slot of the pod.
struct Slot {
    spec: Container,
    runtime: Runtime,
    files: ContainerFiles,
    process: Option<Supervised>,
    started: Option<(Timestamp, Instant)>,
    state: State,
    last: Option<State>,
    restart_count: i32,
    ever_started: bool,
    finished: bool,
    next_start: Instant,
    backoff: Duration,
    readiness: Option<Tracker>,
    liveness: Option<Tracker>,
    ready: bool,
}

impl Slot {
    fn view(&self) -> ContainerView {
        ContainerView {
            name: self.spec.name.clone(),
            image: self.spec.image.clone().unwrap_or_default(),
            state: self.state.clone(),
            last: self.last.clone(),
            restart_count: self.restart_count,
            ready: self.ready,
            ever_started: self.ever_started,
            finished: self.finished,
        }
    }

    /// Records the exit of the process, if it exited; returns its exit code.
    fn reap(&mut self) -> Option<i32> {
        let status = self.process.as_mut()?.try_wait()?;
        if let Some(process) = self.process.take() {
            // Whatever the main process left behind in its group goes with it.
            process.signal_group(libc::SIGKILL);
        }
        Some(self.record_exit(status))
    }

    fn record_exit(&mut self, status: std::process::ExitStatus) -> i32 {
        logs::end_run(&self.files.log);
        let signal = status.signal();
        let exit_code = status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0));
        let (started, _) = self.started.unwrap_or((Timestamp::now(), Instant::now()));
        self.state = State::Terminated {
            exit_code,
            signal,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.to_owned(),
            started,
            finished: Timestamp::now(),
        };
        self.ready = false;
        self.readiness = None;
        self.liveness = None;
        exit_code
    }

    /// Schedules a restart with exponential back-off.
    fn back_off(&mut self, now: Instant) {
        let ran = self.started.map(|(_, at)| now - at).unwrap_or_default();
        if ran >= BACKOFF_RESET {
            self.backoff = Duration::ZERO;
        }
        self.next_start = now + self.backoff;
        if !self.backoff.is_zero() {
            self.last = Some(self.state.clone());
            self.state = State::waiting(
                "CrashLoopBackOff",
                format!(
                    "back-off {}s restarting failed container={}",
                    self.backoff.as_secs(),
                    self.spec.name
                ),
            );
        }
        self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
    }

    async fn kill(&mut self) {
        if let Some(mut process) = self.process.take()
            && let Some(status) = process.kill().await
        {
            self.record_exit(status);
        }
    }
}

struct PodRun {
    ctx: Arc<Context>,
    pod: Pod,
    api: Api<Pod>,
    name: String,
    namespace: String,
    uid: String,
    ip: Ipv4Addr,
    host_ip: Ipv4Addr,
    dir: PathBuf,
    restart_policy: String,
    scope: Option<PodScope>,
    volumes: Option<HashMap<String, PathBuf>>,
    next_prepare: Instant,
    next_secret_sync: Instant,
    init: Vec<Slot>,
    init_next: usize,
    init_failed: bool,
    main: Vec<Slot>,
    start_time: Timestamp,
    conditions: BTreeMap<&'static str, (bool, Timestamp)>,
    last_published: Option<serde_json::Value>,
    handled_fault: Option<String>,
    deadline: Option<Instant>,
    /// The pod's own cgroup (none when the agent runs pods without).
    cgroup: Option<PodCgroup>,
}

impl Drop for PodRun {
    /// The pod no longer runs here: it is no end of a cut, and its cgroup goes.
    fn drop(&mut self) {
        let Some(cgroup) = &self.cgroup else { return };
        if let Ok(mut endpoints) = self.ctx.endpoints.lock() {
            let key = format!("{}/{}", self.namespace, self.name);
            // A new pod of the same name may have registered already.
            if endpoints.get(&key).is_some_and(|e| &e.cgroup == cgroup) {
                endpoints.remove(&key);
            }
        }
        cgroup.remove();
    }
}

impl PodRun {
    fn new(ctx: Arc<Context>, pod: Pod) -> Option<Self> {
        let name = pod.metadata.name.clone()?;
        let namespace = pod.metadata.namespace.clone()?;
        let uid = pod.metadata.uid.clone()?;
        let spec = pod.spec.clone()?;
        let node = ctx.node(spec.node_name.as_deref()?)?.clone();
        let status = pod.status.clone().unwrap_or_default();
        // Keep the address a previous run of this pod had (agent restart, node restore).
        let ip = status
            .pod_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .filter(|ip| ctx.reserve_ip(*ip))
            .or_else(|| ctx.allocate_ip())?;
        let cgroup = ctx.cgroups.as_ref().ok().and_then(|tree| {
            tree.pod(&format!("p{}", ctx.next_seq()))
                .inspect_err(
                    |e| tracing::warn!(pod = name, error = %e, "creating the pod's cgroup"),
                )
                .ok()
        });
        if let (Some(cgroup), Ok(mut endpoints)) = (&cgroup, ctx.endpoints.lock()) {
            let end = Endpoint {
                ip,
                cgroup: cgroup.clone(),
            };
            endpoints.insert(format!("{namespace}/{name}"), end);
        }
        let dir = ctx
            .config
            .state_dir
            .join("pods")
            .join(format!("{namespace}_{name}_{}", &uid[..uid.len().min(8)]));
        let slot =
            |c: &Container, previous: Option<&k8s_openapi::api::core::v1::ContainerStatus>| {
                let seq = ctx.next_seq();
                let ran_before = previous.is_some_and(|s| {
                    s.state
                        .as_ref()
                        .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
                });
                Slot {
                    runtime: container::effective_runtime(
                        c,
                        images::classify(c.image.as_deref().unwrap_or_default()),
                    ),
                    files: ContainerFiles {
                        dir: dir.join("containers").join(&c.name),
                        socket: ctx.run_dir.join(format!("{seq}.sock")),
                        log: container_log_path(&ctx.config.state_dir, &namespace, &name, &c.name),
                        socket_pointer: server_socket_pointer(
                            &ctx.config.state_dir,
                            &namespace,
                            &name,
                            &c.name,
                        ),
                    },
                    process: None,
                    started: None,
                    state: State::waiting("ContainerCreating", ""),
                    last: None,
                    restart_count: previous.map_or(0, |s| s.restart_count),
                    ever_started: ran_before,
                    finished: false,
                    next_start: Instant::now(),
                    backoff: Duration::ZERO,
                    readiness: None,
                    liveness: None,
                    ready: false,
                    spec: c.clone(),
                }
            };
        let previous = |statuses: &Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>,
                        name: &str| {
            statuses.iter().flatten().find(|s| s.name == name).cloned()
        };
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                slot(
                    c,
                    previous(&status.init_container_statuses, &c.name).as_ref(),
                )
            })
            .collect();
        let main = spec
            .containers
            .iter()
            .map(|c| slot(c, previous(&status.container_statuses, &c.name).as_ref()))
            .collect();
        Some(Self {
            api: Api::namespaced(ctx.client.clone(), &namespace),
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".to_owned()),
            start_time: status.start_time.map_or_else(Timestamp::now, |t| t.0),
            host_ip: node.ip,
            ctx,
            pod,
            name,
            namespace,
            uid,
            ip,
            dir,
            scope: None,
            volumes: None,
            next_prepare: Instant::now(),
            next_secret_sync: Instant::now() + SECRET_SYNC,
            init,
            init_next: 0,
            init_failed: false,
            main,
            conditions: BTreeMap::new(),
            last_published: None,
            handled_fault: None,
            deadline: None,
            cgroup,
        })
    }

    fn facts(&self) -> PodFacts {
        PodFacts {
            pod_ip: self.ip.to_string(),
            host_ip: self.host_ip.to_string(),
        }
    }

    /// Volumes, the pod's kubeconfig and the pod-wide launch inputs.
    async fn prepare(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .context(|| format!("creating {}", self.dir.display()))?;
        let mut sources = Sources::new(self.ctx.client.clone(), &self.namespace);
        let volumes = volumes::materialise(
            &self.ctx.client,
            &self.pod,
            &self.facts(),
            &self.dir,
            &mut sources,
        )
        .await?;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let kubeconfig = if spec.automount_service_account_token == Some(false) {
            None
        } else {
            let account = spec.service_account_name.as_deref().unwrap_or("default");
            let token = sources
                .token(account, (&self.name, &self.uid), None, 3607)
                .await?;
            let token_file = self.dir.join("token");
            std::fs::write(&token_file, token)
                .context(|| format!("writing {}", token_file.display()))?;
            let path = self.dir.join("kubeconfig");
            kubeconfig::write(
                &path,
                &self.ctx.config.server,
                &self.ctx.config.ca_cert,
                &Credential::TokenFile(token_file),
            )?;
            Some(path)
        };
        self.scope = Some(PodScope {
            hostname: spec.hostname.clone().unwrap_or_else(|| self.name.clone()),
            ip: self.ip,
            kubeconfig,
            korc_binary: self.ctx.config.korc_binary.clone(),
            mysql_dir: self.ctx.config.mysql_dir.clone(),
            cgroup: self.cgroup.as_ref().map(PodCgroup::procs),
        });
        self.volumes = Some(volumes);
        Ok(())
    }

    async fn step(&mut self) {
        let now = Instant::now();
        if self.volumes.is_none() {
            if now < self.next_prepare {
                return;
            }
            if let Err(e) = self.prepare().await {
                let reason = match e {
                    Error::PodSpec(_) | Error::Kube(_) => "CreateContainerConfigError",
                    _ => "ContainerCreating",
                };
                for slot in self.init.iter_mut().chain(self.main.iter_mut()) {
                    slot.state = State::waiting(reason, e.to_string());
                }
                self.next_prepare = now + Duration::from_secs(1);
                return;
            }
        }
        let (Some(scope), Some(volumes)) = (self.scope.clone(), self.volumes.clone()) else {
            return;
        };
        if now >= self.next_secret_sync {
            self.next_secret_sync = now + SECRET_SYNC;
            let mut sources = Sources::new(self.ctx.client.clone(), &self.namespace);
            if let Err(e) = volumes::sync_secrets(&self.pod, &volumes, &mut sources).await {
                tracing::debug!(pod = self.name, error = %e, "syncing Secret volumes");
            }
        }
        let facts = self.facts();
        // Init containers run one at a time, each to success.
        while self.init_next < self.init.len() && !self.init_failed {
            let never = self.restart_policy == "Never";
            let slot = &mut self.init[self.init_next];
            match slot.reap() {
                Some(0) => {
                    slot.finished = true;
                    self.init_next += 1;
                    continue;
                }
                Some(_) if never => {
                    slot.finished = true;
                    self.init_failed = true;
                }
                Some(_) => slot.back_off(now),
                None => {}
            }
            if slot.process.is_none() && !slot.finished && now >= slot.next_start {
                start(slot, &self.pod, &scope, &volumes, &facts, &self.ctx.client).await;
            }
            return;
        }
        if self.init_failed {
            return;
        }
        for slot in &mut self.main {
            if let Some(code) = slot.reap() {
                let restart = match self.restart_policy.as_str() {
                    "Never" => false,
                    "OnFailure" => code != 0,
                    _ => true,
                };
                if restart {
                    slot.back_off(now);
                } else {
                    slot.finished = true;
                }
            }
            if slot.process.is_none() && !slot.finished && now >= slot.next_start {
                start(slot, &self.pod, &scope, &volumes, &facts, &self.ctx.client).await;
            }
            if slot.process.is_some() {
                if let Some(liveness) = &mut slot.liveness
                    && !liveness.poll(now)
                {
                    // Failed liveness: the kubelet kills and restarts the container.
                    slot.kill().await;
                    slot.back_off(now);
                    continue;
                }
                slot.ready = slot.readiness.as_mut().is_none_or(|r| r.poll(now));
            }
        }
    }

    /// Applies the fault annotation once per value, then acknowledges it by removing it.
    async fn apply_fault(&mut self) {
        let value = self
            .pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(faults::ANNOTATION))
            .cloned();
        let Some(value) = value else {
            self.handled_fault = None;
            return;
        };
        if self.handled_fault.as_deref() == Some(value.as_str()) {
            return;
        }
        let mut error = None;
        match faults::parse_pod_fault(&self.namespace, &value) {
            Some(PodFault::Signal(signal, container)) => self.signal(&value, signal, container),
            Some(PodFault::Cut(peer)) => error = self.cut(&value, &peer, false),
            Some(PodFault::Heal(peer)) => error = self.cut(&value, &peer, true),
            None => error = Some(format!("unknown fault {value:?}")),
        }
        self.handled_fault = Some(value);
        if let Err(e) = self
            .api
            .patch(
                &self.name,
                &PatchParams::default(),
                &faults::clear_patch(error.as_deref()),
            )
            .await
        {
            tracing::warn!(pod = self.name, error = %e, "acknowledging fault");
        }
    }

    /// Cuts or heals the path to `peer`; what went wrong, if anything.
    fn cut(&self, value: &str, peer: &str, heal: bool) -> Option<String> {
        let me = format!("{}/{}", self.namespace, self.name);
        match self.ctx.cut(&me, peer, heal) {
            Ok(()) => {
                tracing::info!(pod = self.name, fault = value, "fault injected");
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }

    /// Sends a fault's signal to a container's process (`None`: the first container's).
    fn signal(&self, value: &str, signal: Signal, container: Option<String>) {
        let slot = match &container {
            Some(name) => self.main.iter().find(|s| &s.spec.name == name),
            None => self.main.first(),
        };
        if let Some(process) = slot.and_then(|s| s.process.as_ref()) {
            match signal {
                Signal::Kill => process.signal(libc::SIGKILL),
                Signal::Stop => process.signal_group(libc::SIGSTOP),
                Signal::Continue => process.signal_group(libc::SIGCONT),
            }
            tracing::info!(
                pod = self.name,
                fault = value,
                pid = process.pid(),
                "fault injected"
            );
        }
    }

    /// Graceful deletion: SIGTERM, SIGKILL after the grace period, then the
    /// pod is deleted for good. Returns true when done.
    async fn terminate(&mut self) -> bool {
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert_with(|| {
            let grace = self
                .pod
                .metadata
                .deletion_grace_period_seconds
                .or(self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            for slot in self.init.iter().chain(self.main.iter()) {
                if let Some(process) = &slot.process {
                    // As with a real container runtime, a stopped (hung) process is
                    // not woken: it acts on nothing until SIGKILL ends the grace period.
                    process.signal(libc::SIGTERM);
                }
            }
            now + Duration::from_secs(u64::try_from(grace.max(0)).unwrap_or(0))
        });
        let mut running = false;
        for slot in self.init.iter_mut().chain(self.main.iter_mut()) {
            slot.reap();
            if slot.process.is_some() {
                if now >= deadline {
                    slot.kill().await;
                } else {
                    running = true;
                }
            }
            slot.finished = true;
        }
        if running {
            return false;
        }
        let _ = self.publish().await;
        delete_now(self.ctx.client.clone(), self.pod.clone()).await;
        true
    }

    async fn kill_all(&mut self) {
        for slot in self.init.iter_mut().chain(self.main.iter_mut()) {
            slot.kill().await;
        }
    }

    /// Patches the pod's status when it changed.
    async fn publish(&mut self) -> Published {
        let init_done = self.init_next >= self.init.len();
        let views: Vec<ContainerView> = self.main.iter().map(Slot::view).collect();
        let phase = status::phase(init_done, self.init_failed, &views);
        let containers_ready = !views.is_empty() && views.iter().all(|v| v.ready);
        let now = Timestamp::now();
        let mut condition = |type_: &'static str, ok: bool, reason: Option<&str>| {
            let entry = self.conditions.entry(type_).or_insert((ok, now));
            if entry.0 != ok {
                *entry = (ok, now);
            }
            json!({
                "type": type_,
                "status": if ok { "True" } else { "False" },
                "lastTransitionTime": Time(entry.1),
                "reason": if ok { None } else { reason },
            })
        };
        let not_ready = if phase == Phase::Succeeded {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let conditions = vec![
            condition("PodScheduled", true, None),
            condition("Initialized", init_done, Some("ContainersNotInitialized")),
            condition("ContainersReady", containers_ready, Some(not_ready)),
            condition("Ready", containers_ready, Some(not_ready)),
        ];
        let status = json!({ "status": {
            "phase": phase.as_str(),
            "hostIP": self.host_ip.to_string(),
            "hostIPs": [{ "ip": self.host_ip.to_string() }],
            "podIP": self.ip.to_string(),
            "podIPs": [{ "ip": self.ip.to_string() }],
            "startTime": Time(self.start_time),
            "conditions": conditions,
            "initContainerStatuses": self.init.iter().map(|s| s.view().to_api()).collect::<Vec<_>>(),
            "containerStatuses": views.iter().map(ContainerView::to_api).collect::<Vec<_>>(),
        }});
        if self.last_published.as_ref() == Some(&status) {
            return Published::Phase(phase);
        }
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => self.last_published = Some(status),
            Err(kube::Error::Api(s)) if s.code == 404 => return Published::Gone,
            Err(e) => tracing::warn!(pod = self.name, error = %e, "reporting pod status"),
        }
        Published::Phase(phase)
    }
}

/// Starts (or restarts) a container.
async fn start(
    slot: &mut Slot,
    pod: &Pod,
    scope: &PodScope,
    volumes: &HashMap<String, PathBuf>,
    facts: &PodFacts,
    client: &kube::Client,
) {
    let now = Instant::now();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut sources = Sources::new(client.clone(), namespace);
    let launched: Result<(Plan, Supervised)> = async {
        let env = env::resolve(pod, &slot.spec, facts, &mut sources).await?;
        let mounts = MountTable::for_container(&slot.spec, volumes)?;
        if let Some(parent) = slot.files.log.parent() {
            std::fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::create_dir_all(&slot.files.dir)
            .context(|| format!("creating {}", slot.files.dir.display()))?;
        let plan = container::plan(scope, &slot.spec, slot.runtime, &slot.files, mounts, env)?;
        if matches!(slot.runtime, Runtime::MariaDb | Runtime::MySql) {
            let pointer = &slot.files.socket_pointer;
            std::fs::write(pointer, slot.files.socket.as_os_str().as_encoded_bytes())
                .context(|| format!("writing {}", pointer.display()))?;
        }
        logs::begin_run(
            &slot.files.log,
            pod.metadata.uid.as_deref().unwrap_or_default(),
        );
        let process = Supervised::spawn(&plan.launch)?;
        Ok((plan, process))
    }
    .await;
    match launched {
        Ok((plan, process)) => {
            if slot.ever_started {
                slot.restart_count += 1;
                if !matches!(slot.state, State::Waiting { .. }) {
                    slot.last = Some(slot.state.clone());
                }
            }
            slot.ever_started = true;
            slot.started = Some((Timestamp::now(), now));
            slot.state = State::Running {
                started: Timestamp::now(),
            };
            slot.ready = false;
            slot.readiness = slot
                .spec
                .readiness_probe
                .as_ref()
                .map(|p| Tracker::new(p, &slot.spec, &plan, scope.ip, now, false));
            slot.liveness = slot
                .spec
                .liveness_probe
                .as_ref()
                .map(|p| Tracker::new(p, &slot.spec, &plan, scope.ip, now, true));
            slot.process = Some(process);
        }
        Err(e) => {
            let reason = match e {
                Error::PodSpec(_) | Error::Kube(_) => "CreateContainerConfigError",
                _ => "RunContainerError",
            };
            slot.state = State::waiting(reason, e.to_string());
            slot.next_start = now + Duration::from_secs(2);
        }
    }
}
