//! Shared helpers: one control plane per test binary, namespaces, waiting.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod hooks;
pub mod korc;
pub mod kubectl_korc;
// The fault suite's workload, which the failover tests run beside their faults too.
#[path = "../faults/workload.rs"]
pub mod workload;

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use korc_e2e::ControlPlane;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tokio::sync::OnceCell;

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

/// The control plane shared by all tests of this binary (tests run on parallel
/// threads, each with its own runtime, so each makes its own client).
///
/// The process's exit kills it (parent-death signal); its directory is reused
/// or cleaned up by the next run.
pub async fn shared() -> &'static ControlPlane {
    SHARED
        .get_or_init(|| async {
            match ControlPlane::start_default().await {
                Ok(cp) => cp,
                Err(e) => panic!("cannot start the local control plane: {e}"),
            }
        })
        .await
}

/// Creates namespace `name` and waits until pods can be created in it.
pub async fn namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait_for(&format!("default ServiceAccount in {name}"), 30, || {
        let accounts = accounts.clone();
        async move { accounts.get_opt("default").await.ok().flatten() }
    })
    .await;
}

/// Polls `check` every 100 ms until it yields a value, panicking after `seconds`.
pub async fn wait_for<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates an object given as JSON.
pub async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let object: K = serde_json::from_value(value).expect("valid object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create object")
}

/// The pod's phase.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The first container's restart count.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count)
}

/// Whether a process with this pid exists.
pub fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// The pid a `sh -c 'echo pid=$$; exec …'` container logged (its last run).
pub fn logged_pid(log: &str) -> Option<i32> {
    log.lines()
        .filter_map(|l| l.strip_prefix("pid="))
        .next_back()
        .and_then(|p| p.trim().parse().ok())
}
