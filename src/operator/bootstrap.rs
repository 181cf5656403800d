//! Bootstrap and rejoin: which instance is the primary, which instances to attach as
//! replicas, which to hold out. Planning is pure; [`execute`] runs the plan over SQL.

use super::status::Member;
use crate::topology::cluster::ClusterView;
use crate::topology::dialect::ReplicationCredentials;
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::recovery::{point_to, set_read_only};
use crate::topology::session::Connector;
use std::collections::BTreeMap;

/// A change korc makes to bring the topology in shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make the primary writable (it starts read-only like every instance).
    MakeWritable(InstanceKey),
    /// A non-primary accepts writes: make it read-only.
    MakeReadOnly(InstanceKey),
    /// Attach an instance with no replication as a replica of the primary.
    Attach {
        /// The new replica.
        replica: InstanceKey,
        /// The primary.
        source: InstanceKey,
    },
}

/// The outcome of planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Pod name of the primary.
    pub primary: Option<String>,
    /// Changes to make.
    pub actions: Vec<Action>,
    /// Pods held out of the topology, with the reason.
    pub excluded: BTreeMap<String, String>,
    /// Pods that replicate from the primary and belong in the replicas Service.
    pub replicas: Vec<String>,
}

/// Plans the topology. The primary is the one recorded in the status; a new cluster's
/// primary is the master that already has replicas if there is one (korc restarted
/// with its status lost), else the lowest ordinal. Instances without replication, or
/// replicating from an address that is no member (their source came back elsewhere),
/// are attached to it unless they hold transactions it does not have: those are never
/// merged silently but held out and reported.
pub fn plan(members: &[Member], instances: &[Instance], recorded_primary: Option<&str>) -> Plan {
    let view = ClusterView::new(instances);
    // The recorded primary stays the primary while its pod is away (restarting, or
    // being replaced): nothing is attached or promoted meanwhile.
    let primary = recorded_primary.map(str::to_string).or_else(|| {
        let established = view.primary().filter(|&p| !view.replicas_of(p).is_empty());
        let first = || {
            members
                .iter()
                .position(|m| m.ordinal == 0)
                .filter(|&i| instances[i].reachable)
        };
        established.or_else(first).map(|i| members[i].pod.clone())
    });
    let mut out = Plan {
        primary,
        ..Plan::default()
    };
    let Some(p) = out
        .primary
        .as_ref()
        .and_then(|pod| members.iter().position(|m| &m.pod == pod))
    else {
        return out;
    };
    let primary = &instances[p];
    let others_writable = instances
        .iter()
        .enumerate()
        .any(|(i, x)| i != p && x.reachable && x.is_writable());
    if primary.reachable
        && primary.is_master()
        && primary.read_only == Some(true)
        && !others_writable
    {
        out.actions.push(Action::MakeWritable(primary.key.clone()));
    }
    for (i, inst) in instances
        .iter()
        .enumerate()
        .filter(|&(i, x)| i != p && x.reachable)
    {
        let pod = &members[i].pod;
        if inst.is_writable() {
            out.actions.push(Action::MakeReadOnly(inst.key.clone()));
        }
        let errant = primary
            .reachable
            .then(|| inst.errant_gtids(primary))
            .flatten()
            .filter(|e| !e.is_empty());
        if let Some(errant) = errant {
            out.excluded.insert(
                pod.clone(),
                format!("holds transactions the primary lacks ({errant}); rebuild it"),
            );
            continue;
        }
        match view.source_of(i) {
            Some(s) if s == p => out.replicas.push(pod.clone()),
            Some(_) => {} // replicates from another member: reported by the analysis, left alone
            // No source, or one that is no member any more (a pod that came back with
            // a new address): attach to the primary.
            None if primary.reachable => out.actions.push(Action::Attach {
                replica: inst.key.clone(),
                source: primary.key.clone(),
            }),
            None => {}
        }
    }
    out
}

/// Runs the actions; returns a line per action for events and logs.
pub async fn execute(
    connector: &Connector,
    replication: &ReplicationCredentials,
    actions: &[Action],
) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for a in actions {
        let (result, what) = match a {
            Action::MakeWritable(k) => (
                set_read_only(connector, k, false).await,
                format!("made the primary {k} writable"),
            ),
            Action::MakeReadOnly(k) => (
                set_read_only(connector, k, true).await,
                format!("made {k} read-only"),
            ),
            Action::Attach { replica, source } => (
                point_to(connector, replica, source, Some(replication), true).await,
                format!("attached {replica} as a replica of {source}"),
            ),
        };
        out.push(match result {
            Ok(()) => (true, what),
            Err(e) => (
                false,
                format!(
                    "could not {}: {e}",
                    what.replacen("made", "make", 1)
                        .replacen("attached", "attach", 1)
                ),
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::instance::{Flavor, Replication, ThreadState};

    fn member(i: usize) -> Member {
        Member {
            pod: format!("db-{i}"),
            ordinal: i as i32,
            key: format!("10.0.0.{i}:3306").parse().unwrap(),
            address: None,
            zone: None,
        }
    }

    fn fresh(i: usize) -> Instance {
        let mut x = Instance::unknown(member(i).key);
        x.reachable = true;
        x.last_seen_ms = Some(1);
        x.flavor = Some(Flavor::Mariadb);
        x.read_only = Some(true);
        x
    }

    fn replica_of(i: usize, p: usize) -> Instance {
        let mut x = fresh(i);
        x.replication = Some(Replication {
            source_host: format!("10.0.0.{p}"),
            source_port: 3306,
            io_running: ThreadState::Yes,
            sql_running: ThreadState::Yes,
            ..Default::default()
        });
        x
    }

    #[test]
    fn new_cluster_makes_ordinal_zero_primary_and_attaches_the_rest() {
        let members: Vec<Member> = (0..3).map(member).collect();
        let p = plan(&members, &[fresh(0), fresh(1), fresh(2)], None);
        assert_eq!(p.primary.as_deref(), Some("db-0"));
        assert_eq!(
            p.actions,
            vec![
                Action::MakeWritable(member(0).key),
                Action::Attach {
                    replica: member(1).key,
                    source: member(0).key
                },
                Action::Attach {
                    replica: member(2).key,
                    source: member(0).key
                },
            ]
        );
    }

    #[test]
    fn a_new_cluster_waits_for_ordinal_zero() {
        let members: Vec<Member> = (1..3).map(member).collect();
        let p = plan(&members, &[fresh(1), fresh(2)], None);
        assert_eq!(p, Plan::default(), "db-1 must not become the first primary");
    }

    #[test]
    fn steady_cluster_needs_nothing() {
        let members: Vec<Member> = (0..3).map(member).collect();
        let mut primary = fresh(0);
        primary.read_only = Some(false);
        let p = plan(
            &members,
            &[primary, replica_of(1, 0), replica_of(2, 0)],
            Some("db-0"),
        );
        assert!(p.actions.is_empty(), "{p:?}");
        assert_eq!(p.replicas, vec!["db-1", "db-2"]);
    }

    #[test]
    fn recorded_primary_wins_and_a_writable_stray_is_fenced() {
        let members: Vec<Member> = (0..2).map(member).collect();
        let mut stray = fresh(0);
        stray.read_only = Some(false);
        let p = plan(&members, &[stray, fresh(1)], Some("db-1"));
        assert_eq!(p.primary.as_deref(), Some("db-1"));
        assert!(p.actions.contains(&Action::MakeReadOnly(member(0).key)));
        assert!(
            !p.actions.contains(&Action::MakeWritable(member(1).key)),
            "not while another is writable"
        );
    }

    #[test]
    fn an_instance_with_errant_transactions_is_held_out() {
        let members: Vec<Member> = (0..2).map(member).collect();
        let mut primary = fresh(0);
        primary.read_only = Some(false);
        primary.gtid.binlog_state = "0-10-5".into();
        let mut old = fresh(1);
        old.gtid.binlog_state = "0-10-5,0-11-6".into();
        let p = plan(&members, &[primary, old], Some("db-0"));
        assert!(p.actions.is_empty(), "{p:?}");
        assert!(p.excluded["db-1"].contains("0-11-6"));
        assert!(p.replicas.is_empty());
    }

    #[test]
    fn a_replica_of_a_vanished_address_is_repointed() {
        let members: Vec<Member> = (0..2).map(member).collect();
        let mut primary = fresh(0);
        primary.read_only = Some(false);
        let mut stale = replica_of(1, 0);
        stale.replication.as_mut().unwrap().source_host = "10.9.9.9".into();
        let p = plan(&members, &[primary, stale], Some("db-0"));
        assert_eq!(
            p.actions,
            vec![Action::Attach {
                replica: member(1).key,
                source: member(0).key
            }]
        );
    }

    #[test]
    fn the_recorded_primary_stays_while_its_pod_is_away() {
        let members: Vec<Member> = (1..3).map(member).collect();
        let p = plan(
            &members,
            &[replica_of(1, 0), replica_of(2, 0)],
            Some("db-0"),
        );
        assert_eq!(p.primary.as_deref(), Some("db-0"));
        assert!(p.actions.is_empty(), "{p:?}");
    }

    #[test]
    fn unreachable_primary_attaches_nothing() {
        let members: Vec<Member> = (0..2).map(member).collect();
        let mut primary = fresh(0);
        primary.reachable = false;
        let p = plan(&members, &[primary, fresh(1)], Some("db-0"));
        assert!(p.actions.is_empty());
    }
}
