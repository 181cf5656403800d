//! The replication tree of `kubectl korc topology`, as orchestrator-client draws it:
//! every instance indented under its source. Built from the cluster's status alone, so
//! it is a pure function; fields the status gains later are ignored.

use crate::api::{InstanceStatus, MySQLClusterStatus};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write;

/// One instance and the instances replicating from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// What the last probe saw.
    #[serde(flatten)]
    pub instance: InstanceStatus,
    /// Codes of the current analyses of this instance (`NoProblem` left out).
    pub analysis: Vec<String>,
    /// Instances whose source this one is.
    pub replicas: Vec<Node>,
}

/// An analysis whose instance is not in the tree (for example a source outside the
/// cluster).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stray {
    /// Analysis code.
    pub code: String,
    /// The instance the analysis names.
    pub instance: String,
}

/// A cluster's topology: its summary and the tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    /// Namespace of the MySQLCluster.
    pub namespace: String,
    /// Its name.
    pub cluster: String,
    /// Pod name of the primary.
    pub primary: Option<String>,
    /// The cluster's analysis code.
    pub analysis_code: Option<String>,
    /// Ready instances out of all.
    pub ready: Option<String>,
    /// `spec.paused`.
    pub paused: bool,
    /// Why recovery is blocked, when the `RecoveryBlocked` condition is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_blocked: Option<String>,
    /// The trees: the primary's first, then any instance whose source is unknown.
    pub topology: Vec<Node>,
    /// Analyses of instances that are not in the tree.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_analysis: Vec<Stray>,
}

impl Topology {
    /// Arranges the status's instances by source.
    pub fn build(
        namespace: &str,
        cluster: &str,
        paused: bool,
        status: &MySQLClusterStatus,
    ) -> Self {
        let instances = &status.instances;
        let known: BTreeSet<&str> = instances.iter().map(|i| i.name.as_str()).collect();
        let has_source_here = |i: &InstanceStatus| {
            i.source
                .as_deref()
                .is_some_and(|s| s != i.name && known.contains(s))
        };
        // The primary heads the list; the rest keep the status's order.
        let mut roots: Vec<&InstanceStatus> =
            instances.iter().filter(|i| !has_source_here(i)).collect();
        roots.sort_by_key(|i| Some(i.name.as_str()) != status.primary.as_deref());

        let mut placed = BTreeSet::new();
        let mut topology: Vec<Node> = roots
            .into_iter()
            .map(|root| subtree(root, status, &mut placed))
            .collect();
        // Instances in a replication ring (co-masters) have no root: start from the
        // first one not yet drawn.
        while let Some(rest) = instances.iter().find(|i| !placed.contains(&i.name)) {
            topology.push(subtree(rest, status, &mut placed));
        }

        let recovery_blocked = status
            .conditions
            .iter()
            .find(|c| c.type_ == "RecoveryBlocked" && c.status == "True")
            .map(|c| format!("{}: {}", c.reason, c.message));
        let other_analysis = status
            .analysis
            .iter()
            .filter(|a| a.code != "NoProblem" && !known.contains(a.instance.as_str()))
            .map(|a| Stray {
                code: a.code.clone(),
                instance: a.instance.clone(),
            })
            .collect();
        Self {
            namespace: namespace.into(),
            cluster: cluster.into(),
            primary: status.primary.clone(),
            analysis_code: status.analysis_code.clone(),
            ready: status.ready.clone(),
            paused,
            recovery_blocked,
            topology,
            other_analysis,
        }
    }

    /// The text view: a summary line, then one line per instance, each replica
    /// indented under its source with `+ `.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}/{}: primary {}, analysis {}, ready {}{}\n",
            self.namespace,
            self.cluster,
            self.primary.as_deref().unwrap_or("none"),
            self.analysis_code.as_deref().unwrap_or("unknown"),
            self.ready.as_deref().unwrap_or("?"),
            if self.paused { ", paused" } else { "" },
        );
        if let Some(why) = &self.recovery_blocked {
            let _ = writeln!(out, "recovery blocked: {why}");
        }
        for s in &self.other_analysis {
            let _ = writeln!(out, "analysis {} on {}", s.code, s.instance);
        }
        if self.topology.is_empty() {
            out.push_str("no instances reported yet\n");
        }
        for node in &self.topology {
            render_node(&mut out, node, 0);
        }
        out
    }
}

fn subtree(
    instance: &InstanceStatus,
    status: &MySQLClusterStatus,
    placed: &mut BTreeSet<String>,
) -> Node {
    placed.insert(instance.name.clone());
    let mut replicas = Vec::new();
    for child in &status.instances {
        if child.source.as_deref() == Some(instance.name.as_str()) && !placed.contains(&child.name)
        {
            replicas.push(subtree(child, status, placed));
        }
    }
    Node {
        instance: instance.clone(),
        analysis: status
            .analysis
            .iter()
            .filter(|a| a.instance == instance.name && a.code != "NoProblem")
            .map(|a| a.code.clone())
            .collect(),
        replicas,
    }
}

fn render_node(out: &mut String, node: &Node, depth: usize) {
    let i = &node.instance;
    let indent = match depth {
        0 => String::new(),
        d => format!("{}+ ", "  ".repeat(d - 1)),
    };
    let mut facts = vec![
        i.role.clone(),
        format!("gtid {}", i.gtid_position.as_deref().unwrap_or("?")),
    ];
    // Only a replicating instance has threads and a lag.
    if i.io_thread.is_some() || i.sql_thread.is_some() {
        facts.push(match i.lag_seconds {
            Some(l) => format!("lag {l}s"),
            None => "lag ?".into(),
        });
        facts.push(format!("io {}", i.io_thread.as_deref().unwrap_or("?")));
        facts.push(format!("sql {}", i.sql_thread.as_deref().unwrap_or("?")));
    }
    facts.push(
        match i.read_only {
            Some(true) => "ro",
            Some(false) => "rw",
            None => "ro ?",
        }
        .into(),
    );
    facts.push(
        if i.reachable {
            "reachable"
        } else {
            "unreachable"
        }
        .into(),
    );
    let _ = write!(out, "{indent}{}  [{}]", i.name, facts.join(", "));
    if !node.analysis.is_empty() {
        let _ = write!(out, "  {}", node.analysis.join(","));
    }
    for (label, text) in [
        ("error", &i.error),
        ("io error", &i.last_io_error),
        ("sql error", &i.last_sql_error),
    ] {
        if let Some(text) = text {
            let _ = write!(out, "  {label}: {text}");
        }
    }
    out.push('\n');
    for r in &node.replicas {
        render_node(out, r, depth + 1);
    }
}

#[cfg(test)]
mod tests;
