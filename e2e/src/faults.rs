//! Fault injection through annotations, so tests, `kubectl annotate` and other
//! crates all use the same channel to the node agent.
//!
//! * A pod annotated `e2e.korc.dev/fault: kill` gets SIGKILL on its container's
//!   main process (like `kill -9` of mysqld); `stop` / `cont` send SIGSTOP /
//!   SIGCONT to the container's process group (a hung server). `kill:NAME`
//!   picks a container other than the first.
//! * A node annotated `e2e.korc.dev/fault: lose` is lost: all its pods' processes
//!   die at once and it stops heartbeating. `restore` brings it back; its pods'
//!   containers then restart, as after a reboot.
//!
//! The agent removes the annotation once the fault is applied, which is how
//! [`inject`] knows it happened.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::error::{Error, Result};

/// The annotation key the agent watches on pods and nodes.
pub const ANNOTATION: &str = "e2e.korc.dev/fault";

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL to a container's main process.
    Kill(ContainerRef),
    /// SIGSTOP to a container's processes.
    Stop(ContainerRef),
    /// SIGCONT to a container's processes.
    Continue(ContainerRef),
    /// The node dies: its pods' processes are killed and it stops heartbeating.
    LoseNode(String),
    /// A lost node comes back and restarts its pods' containers.
    RestoreNode(String),
}

/// A container of a pod; `container: None` means the pod's first container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: Option<String>,
}

impl ContainerRef {
    /// The first container of `namespace/pod`.
    pub fn pod(namespace: &str, pod: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            container: None,
        }
    }
}

/// A fault as the agent reads it from a pod's annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGKILL the main process.
    Kill,
    /// SIGSTOP the process group.
    Stop,
    /// SIGCONT the process group.
    Continue,
}

/// Parses a pod annotation value: `kill`, `stop` or `cont`, optionally `:container`.
pub fn parse_pod_fault(value: &str) -> Option<(Signal, Option<String>)> {
    let (verb, container) = match value.split_once(':') {
        Some((verb, container)) => (verb, Some(container.to_owned())),
        None => (value, None),
    };
    let signal = match verb.trim() {
        "kill" => Signal::Kill,
        "stop" => Signal::Stop,
        "cont" | "continue" => Signal::Continue,
        _ => return None,
    };
    Some((signal, container))
}

/// A fault as the agent reads it from a node's annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFault {
    /// The node is lost.
    Lose,
    /// The node comes back.
    Restore,
}

/// Parses a node annotation value: `lose` or `restore`.
pub fn parse_node_fault(value: &str) -> Option<NodeFault> {
    match value.trim() {
        "lose" => Some(NodeFault::Lose),
        "restore" => Some(NodeFault::Restore),
        _ => None,
    }
}

/// Annotates the target and waits (up to 30 s) until the agent has applied the fault.
pub async fn inject(client: &kube::Client, fault: &Fault) -> Result<()> {
    let (value, target) = match fault {
        Fault::Kill(c) => (pod_value("kill", c), Target::Pod(c)),
        Fault::Stop(c) => (pod_value("stop", c), Target::Pod(c)),
        Fault::Continue(c) => (pod_value("cont", c), Target::Pod(c)),
        Fault::LoseNode(node) => ("lose".to_owned(), Target::Node(node)),
        Fault::RestoreNode(node) => ("restore".to_owned(), Target::Node(node)),
    };
    let patch = Patch::Merge(json!({ "metadata": { "annotations": { ANNOTATION: value } } }));
    let params = PatchParams::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    match target {
        Target::Pod(c) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &c.namespace);
            pods.patch(&c.pod, &params, &patch).await?;
            while pods
                .get(&c.pod)
                .await?
                .metadata
                .annotations
                .is_some_and(|a| a.contains_key(ANNOTATION))
            {
                wait_step(deadline, &format!("fault {value} on pod {}", c.pod)).await?;
            }
        }
        Target::Node(node) => {
            let nodes: Api<Node> = Api::all(client.clone());
            nodes.patch(node, &params, &patch).await?;
            while nodes
                .get(node)
                .await?
                .metadata
                .annotations
                .is_some_and(|a| a.contains_key(ANNOTATION))
            {
                wait_step(deadline, &format!("fault {value} on node {node}")).await?;
            }
        }
    }
    Ok(())
}

/// Removes the fault annotation (the agent's acknowledgement).
pub(crate) fn clear_patch() -> Patch<serde_json::Value> {
    Patch::Merge(json!({ "metadata": { "annotations": { ANNOTATION: null } } }))
}

enum Target<'a> {
    Pod(&'a ContainerRef),
    Node(&'a String),
}

fn pod_value(verb: &str, c: &ContainerRef) -> String {
    match &c.container {
        Some(name) => format!("{verb}:{name}"),
        None => verb.to_owned(),
    }
}

async fn wait_step(deadline: Instant, what: &str) -> Result<()> {
    if Instant::now() > deadline {
        return Err(Error::Timeout {
            component: "node agent".to_owned(),
            seconds: 30,
            detail: format!("{what} was not acknowledged"),
        });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pod_and_node_faults() {
        assert_eq!(parse_pod_fault("kill"), Some((Signal::Kill, None)));
        assert_eq!(
            parse_pod_fault("stop:mariadb"),
            Some((Signal::Stop, Some("mariadb".to_owned())))
        );
        assert_eq!(parse_pod_fault("cont"), Some((Signal::Continue, None)));
        assert_eq!(parse_pod_fault("explode"), None);
        assert_eq!(parse_node_fault("lose"), Some(NodeFault::Lose));
        assert_eq!(parse_node_fault("restore"), Some(NodeFault::Restore));
        assert_eq!(parse_node_fault("kill"), None);
    }
}
