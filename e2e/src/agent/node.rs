//! Node registration, heartbeats (Leases in kube-node-lease plus the Ready
//! condition) and node-level faults.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Context, NodeEvent, NodeInfo};
use crate::error::Result;
use crate::faults::{self, NodeFault};

/// How often each node renews its Lease.
const LEASE_RENEW: Duration = Duration::from_secs(2);
/// How often each node re-reports its conditions.
const STATUS_REPORT: Duration = Duration::from_secs(10);
/// What nodes report as their kubelet version (the API level the agent implements).
const KUBELET_VERSION: &str = "v1.36.0-korc";
/// The Lease duration nodes announce.
const LEASE_SECONDS: i32 = 40;

/// Letter-style node suffix: a, b, …, z, then numbers.
pub(crate) fn suffix(index: usize) -> String {
    match u8::try_from(index) {
        Ok(i) if i < 26 => char::from(b'a' + i).to_string(),
        _ => index.to_string(),
    }
}

/// Whether the node's Ready condition is True.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Creates (or adopts) every node, reports its status and takes its Lease.
pub(crate) async fn register(ctx: &Context) -> Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    for node in &ctx.nodes {
        let object: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": node.name, "labels": labels(node) },
        }))?;
        match nodes.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // An earlier run of the agent registered it; refresh the labels.
                let patch = json!({ "metadata": { "labels": labels(node), "annotations": { faults::ANNOTATION: null } } });
                nodes
                    .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        report_status(ctx, node, true).await?;
        renew_lease(ctx, node).await?;
    }
    Ok(())
}

fn labels(node: &NodeInfo) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), node.name.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("kubernetes.io/arch".to_owned(), go_arch().to_owned()),
        ("topology.kubernetes.io/zone".to_owned(), node.zone.clone()),
        (
            "topology.kubernetes.io/region".to_owned(),
            "local".to_owned(),
        ),
        (
            "node.kubernetes.io/instance-type".to_owned(),
            "korc-process".to_owned(),
        ),
    ])
}

/// Patches the node's status: Ready (or not), addresses, capacity and info.
async fn report_status(ctx: &Context, node: &NodeInfo, ready: bool) -> Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let now = Time(Timestamp::now());
    let condition = |type_: &str, ok: bool, reason: &str, message: &str| {
        json!({
            "type": type_,
            "status": if ok { "True" } else { "False" },
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        })
    };
    // Keep lastTransitionTime stable while a condition does not change.
    let current = nodes.get_status(&node.name).await?;
    let previous = current
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    let mut conditions = vec![
        condition(
            "Ready",
            ready,
            "KubeletReady",
            "korc node agent is running pods as local processes",
        ),
        condition(
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            "no memory pressure",
        ),
        condition(
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "no disk pressure",
        ),
        condition(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "no PID pressure",
        ),
    ];
    for c in &mut conditions {
        if let Some(old) = previous
            .iter()
            .find(|o| Some(o.type_.as_str()) == c["type"].as_str())
            && Some(old.status.as_str()) == c["status"].as_str()
            && let Some(t) = &old.last_transition_time
        {
            c["lastTransitionTime"] = json!(t);
        }
    }
    let capacity =
        json!({ "cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi" });
    let status = json!({ "status": {
        "conditions": conditions,
        "addresses": [
            { "type": "InternalIP", "address": node.ip.to_string() },
            { "type": "Hostname", "address": node.name },
        ],
        "capacity": capacity,
        "allocatable": capacity,
        "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
        "nodeInfo": {
            "machineID": node.name, "systemUUID": node.name, "bootID": std::process::id().to_string(),
            "kernelVersion": "", "osImage": "korc local processes",
            "containerRuntimeVersion": concat!("korc-process://", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": go_arch(),
        },
    }});
    nodes
        .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

/// The architecture in Go's (and Kubernetes') spelling.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Renews (creating if needed) the node's Lease in kube-node-lease.
async fn renew_lease(ctx: &Context, node: &NodeInfo) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let now = MicroTime(Timestamp::now());
    let patch = json!({ "spec": {
        "holderIdentity": node.name,
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": now,
    }});
    match leases
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            let uid = nodes.get(&node.name).await?.metadata.uid;
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {
                    "name": node.name,
                    "namespace": "kube-node-lease",
                    // Like the kubelet: the Lease goes away with its Node.
                    "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": node.name, "uid": uid }],
                },
                "spec": patch["spec"],
            }))?;
            leases.create(&PostParams::default(), &lease).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Renews Leases and node status for every node that is not lost.
pub(crate) async fn heartbeat(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    let mut status_tick = tokio::time::interval(STATUS_REPORT);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = lease_tick.tick() => {
                for node in ctx.nodes.iter().filter(|n| !ctx.is_lost(&n.name)) {
                    if let Err(e) = renew_lease(&ctx, node).await {
                        tracing::warn!(node = node.name, error = %e, "renewing lease");
                    }
                }
            }
            _ = status_tick.tick() => {
                for node in ctx.nodes.iter().filter(|n| !ctx.is_lost(&n.name)) {
                    if let Err(e) = report_status(&ctx, node, true).await {
                        tracing::warn!(node = node.name, error = %e, "reporting node status");
                    }
                }
            }
        }
    }
}

/// Applies `e2e.korc.dev/fault` annotations on our nodes.
pub(crate) async fn watch_faults(
    ctx: Arc<Context>,
    events: mpsc::UnboundedSender<NodeEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut stream = watcher(nodes.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    loop {
        let node = tokio::select! {
            _ = shutdown.changed() => return,
            next = stream.next() => match next {
                Some(Ok(node)) => node,
                Some(Err(e)) => { tracing::warn!(error = %e, "node watch"); continue; }
                None => return,
            },
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        let Some(info) = ctx.node(&name) else {
            continue;
        };
        let Some(fault) = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(faults::ANNOTATION))
            .and_then(|v| faults::parse_node_fault(v))
        else {
            continue;
        };
        match fault {
            NodeFault::Lose => {
                if let Ok(mut lost) = ctx.lost.lock() {
                    lost.insert(name.clone());
                }
                let (done, applied) = oneshot::channel();
                let _ = events.send(NodeEvent::Lost(name.clone(), done));
                let _ = applied.await;
            }
            NodeFault::Restore => {
                if let Ok(mut lost) = ctx.lost.lock() {
                    lost.remove(&name);
                }
                if let Err(e) = renew_lease(&ctx, info).await {
                    tracing::warn!(node = name, error = %e, "renewing lease");
                }
                if let Err(e) = report_status(&ctx, info, true).await {
                    tracing::warn!(node = name, error = %e, "reporting node status");
                }
                let (done, applied) = oneshot::channel();
                let _ = events.send(NodeEvent::Restored(name.clone(), done));
                let _ = applied.await;
            }
        }
        if let Err(e) = nodes
            .patch(&name, &PatchParams::default(), &faults::clear_patch(None))
            .await
        {
            tracing::warn!(node = name, error = %e, "acknowledging node fault");
        }
    }
}
