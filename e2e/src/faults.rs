//! Fault injection through annotations, so tests, `kubectl annotate` and other
//! crates all use the same channel to the node agent.
//!
//! * A pod annotated `e2e.korc.dev/fault: kill` gets SIGKILL on its container's
//!   main process (like `kill -9` of mysqld); `stop` / `cont` send SIGSTOP /
//!   SIGCONT to the container's process group (a hung server). `kill:NAME`
//!   picks a container other than the first.
//! * `cut:NAMESPACE/POD` (or `cut:POD`, same namespace) cuts the network path between
//!   the annotated pod and that one: their packets are dropped both ways
//!   ([`crate::cuts`]); `heal:NAMESPACE/POD` heals it.
//! * A node annotated `e2e.korc.dev/fault: lose` is lost: all its pods' processes
//!   die at once and it stops heartbeating. `restore` brings it back; its pods'
//!   containers then restart, as after a reboot.
//!
//! The agent removes the annotation once the fault is applied, which is how
//! [`inject`] knows it happened; when it could not apply it, it says why in
//! [`ERROR_ANNOTATION`], which [`inject`] returns as an error.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::error::{Error, Result};

/// The annotation key the agent watches on pods and nodes.
pub const ANNOTATION: &str = "e2e.korc.dev/fault";
/// Where the agent says why it could not apply the last fault (removed on success).
pub const ERROR_ANNOTATION: &str = "e2e.korc.dev/fault-error";

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
    /// The network path between two pods is cut: packets are dropped both ways.
    Cut(PodRef, PodRef),
    /// A cut path works again.
    Heal(PodRef, PodRef),
}

/// A pod, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

impl PodRef {
    /// Pod `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// `namespace/name`, how the agent keys pods.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
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

/// A fault on a pod, as the agent reads it from the pod's annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodFault {
    /// A signal to a container (`None`: the first).
    Signal(Signal, Option<String>),
    /// Cut the path to this pod (`namespace/name`).
    Cut(String),
    /// Heal the path to this pod (`namespace/name`).
    Heal(String),
}

/// Parses the annotation value of a pod in `namespace`: `kill`, `stop` or `cont`,
/// optionally `:container`; `cut:` or `heal:` and a pod, `namespace/name` or a name in
/// the same namespace.
pub fn parse_pod_fault(namespace: &str, value: &str) -> Option<PodFault> {
    let (verb, argument) = match value.split_once(':') {
        Some((verb, argument)) => (verb, Some(argument.trim().to_owned())),
        None => (value, None),
    };
    let peer = || {
        let peer = argument.clone().filter(|p| !p.is_empty())?;
        Some(if peer.contains('/') {
            peer
        } else {
            format!("{namespace}/{peer}")
        })
    };
    let signal = match verb.trim() {
        "kill" => Signal::Kill,
        "stop" => Signal::Stop,
        "cont" | "continue" => Signal::Continue,
        "cut" => return peer().map(PodFault::Cut),
        "heal" => return peer().map(PodFault::Heal),
        _ => return None,
    };
    Some(PodFault::Signal(signal, argument))
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
        Fault::Kill(c) => (pod_value("kill", c), Target::Pod(&c.namespace, &c.pod)),
        Fault::Stop(c) => (pod_value("stop", c), Target::Pod(&c.namespace, &c.pod)),
        Fault::Continue(c) => (pod_value("cont", c), Target::Pod(&c.namespace, &c.pod)),
        Fault::LoseNode(node) => ("lose".to_owned(), Target::Node(node)),
        Fault::RestoreNode(node) => ("restore".to_owned(), Target::Node(node)),
        Fault::Cut(a, b) => (
            format!("cut:{}", b.key()),
            Target::Pod(a.namespace.as_str(), a.name.as_str()),
        ),
        Fault::Heal(a, b) => (
            format!("heal:{}", b.key()),
            Target::Pod(a.namespace.as_str(), a.name.as_str()),
        ),
    };
    let patch = Patch::Merge(json!({ "metadata": { "annotations": { ANNOTATION: value } } }));
    let params = PatchParams::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    match target {
        Target::Pod(namespace, name) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            pods.patch(name, &params, &patch).await?;
            loop {
                let annotations = pods
                    .get(name)
                    .await?
                    .metadata
                    .annotations
                    .unwrap_or_default();
                if !annotations.contains_key(ANNOTATION) {
                    return match annotations.get(ERROR_ANNOTATION) {
                        Some(detail) => Err(Error::Fault {
                            fault: value,
                            detail: detail.clone(),
                        }),
                        None => Ok(()),
                    };
                }
                wait_step(deadline, &format!("fault {value} on pod {name}")).await?;
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

/// Removes the fault annotation (the agent's acknowledgement), saying why the fault
/// could not be applied when `error` is given.
pub(crate) fn clear_patch(error: Option<&str>) -> Patch<serde_json::Value> {
    Patch::Merge(
        json!({ "metadata": { "annotations": { ANNOTATION: null, ERROR_ANNOTATION: error } } }),
    )
}

enum Target<'a> {
    Pod(&'a str, &'a str),
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
        let signal = |s, c: Option<&str>| Some(PodFault::Signal(s, c.map(str::to_owned)));
        for (value, want) in [
            ("kill", signal(Signal::Kill, None)),
            ("stop:mariadb", signal(Signal::Stop, Some("mariadb"))),
            ("cont", signal(Signal::Continue, None)),
            ("explode", None),
            (
                "cut:korc-system/korc-0",
                Some(PodFault::Cut("korc-system/korc-0".to_owned())),
            ),
            ("cut:db-1", Some(PodFault::Cut("db/db-1".to_owned()))),
            ("heal:db-1", Some(PodFault::Heal("db/db-1".to_owned()))),
            ("cut", None),
            ("heal:", None),
        ] {
            assert_eq!(parse_pod_fault("db", value), want, "{value}");
        }
        assert_eq!(parse_node_fault("lose"), Some(NodeFault::Lose));
        assert_eq!(parse_node_fault("restore"), Some(NodeFault::Restore));
        assert_eq!(parse_node_fault("kill"), None);
    }
}
