//! Readiness and liveness probes (exec, tcpSocket, httpGet).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::task::JoinHandle;

use super::container::Plan;
use crate::process::{Launch, Supervised};

/// One probe check, resolved against the running container.
#[derive(Debug, Clone)]
enum Action {
    Exec(Launch),
    Tcp(SocketAddr),
    Http {
        addr: SocketAddr,
        host: String,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// The probe cannot run (e.g. an unknown named port): always fails.
    Invalid,
}

/// Tracks a probe's schedule, thresholds and result.
#[derive(Debug)]
pub(crate) struct Tracker {
    action: Action,
    period: Duration,
    timeout: Duration,
    success_threshold: i32,
    failure_threshold: i32,
    next_due: Instant,
    successes: i32,
    failures: i32,
    passing: bool,
    running: Option<JoinHandle<bool>>,
}

impl Tracker {
    /// A tracker for `probe` of a container started at `started`; `passing`
    /// is the state before the first result (false for readiness, true for liveness).
    pub fn new(
        probe: &Probe,
        container: &Container,
        plan: &Plan,
        ip: Ipv4Addr,
        started: Instant,
        passing: bool,
    ) -> Self {
        let seconds = |v: Option<i32>, default: i32| {
            Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(1))
        };
        let initial = seconds(probe.initial_delay_seconds, 0);
        Self {
            action: action(probe, container, plan, ip),
            period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1),
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1),
            next_due: started + initial,
            successes: 0,
            failures: 0,
            passing,
            running: None,
        }
    }

    /// Collects a finished check and starts a due one; returns whether the probe passes.
    pub fn poll(&mut self, now: Instant) -> bool {
        if let Some(task) = self.running.take_if(|t| t.is_finished()) {
            let ok = futures::FutureExt::now_or_never(task)
                .and_then(Result::ok)
                .unwrap_or(false);
            if ok {
                self.successes += 1;
                self.failures = 0;
                if self.successes >= self.success_threshold {
                    self.passing = true;
                }
            } else {
                self.failures += 1;
                self.successes = 0;
                if self.failures >= self.failure_threshold {
                    self.passing = false;
                }
            }
        }
        if self.running.is_none() && now >= self.next_due {
            self.next_due = now + self.period;
            let action = self.action.clone();
            let timeout = self.timeout;
            self.running = Some(tokio::spawn(check(action, timeout)));
        }
        self.passing
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Some(task) = self.running.take() {
            task.abort();
        }
    }
}

fn action(probe: &Probe, container: &Container, plan: &Plan, ip: Ipv4Addr) -> Action {
    let port = |p: &IntOrString| -> Option<u16> {
        match p {
            IntOrString::Int(n) => u16::try_from(*n).ok(),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .and_then(|cp| u16::try_from(cp.container_port).ok()),
        }
    };
    // "localhost" inside a pod is the pod itself.
    let host = |h: Option<&String>| -> Ipv4Addr {
        h.and_then(|h| h.parse::<Ipv4Addr>().ok())
            .filter(|a| !a.is_loopback() || a.octets()[1] != 0)
            .unwrap_or(ip)
    };
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        return plan
            .exec(&argv, "/dev/null".into())
            .map_or(Action::Invalid, Action::Exec);
    }
    if let Some(tcp) = &probe.tcp_socket {
        return port(&tcp.port).map_or(Action::Invalid, |p| {
            Action::Tcp(SocketAddr::from((host(tcp.host.as_ref()), p)))
        });
    }
    if let Some(get) = &probe.http_get {
        let Some(p) = port(&get.port) else {
            return Action::Invalid;
        };
        let addr = SocketAddr::from((host(get.host.as_ref()), p));
        return Action::Http {
            addr,
            host: addr.to_string(),
            path: get.path.clone().unwrap_or_else(|| "/".to_owned()),
            headers: get
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        };
    }
    Action::Invalid
}

async fn check(action: Action, timeout: Duration) -> bool {
    match action {
        Action::Exec(launch) => {
            let Ok(mut process) = Supervised::spawn(&launch) else {
                return false;
            };
            match tokio::time::timeout(timeout, process.wait()).await {
                Ok(status) => status.is_some_and(|s| s.success()),
                Err(_) => {
                    process.kill().await;
                    false
                }
            }
        }
        Action::Tcp(addr) => matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        ),
        Action::Http {
            addr,
            host,
            path,
            headers,
        } => matches!(
            tokio::time::timeout(timeout, crate::http::get_status(addr, &host, &path, &headers)).await,
            Ok(Ok(code)) if (200..400).contains(&code)
        ),
        Action::Invalid => false,
    }
}
