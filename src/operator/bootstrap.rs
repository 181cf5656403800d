//! Bootstrap and rejoin: which instance is the primary, which instances to attach as
//! replicas, which to hold out. Planning is pure; [`execute`] runs the plan over SQL.

use super::status::Member;
use crate::topology::cluster::ClusterView;
use crate::topology::dialect::ReplicationCredentials;
use crate::topology::instance::ThreadState;
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::recovery::{point_to, set_read_only, start_replica};
use crate::topology::session::Connector;
use std::collections::BTreeMap;

/// A change korc makes to bring the topology in shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make the primary writable (it starts read-only like every instance).
    MakeWritable(InstanceKey),
    /// A non-primary accepts writes: make it read-only.
    MakeReadOnly(InstanceKey),
    /// Turn the source side of semi-sync on (the primary) or off (a replica, whose
    /// applier would otherwise wait for acknowledgements nobody sends).
    SetSemiSyncSource {
        /// The instance.
        instance: InstanceKey,
        /// On or off.
        enabled: bool,
    },
    /// Start the stopped receiver of a replica of the primary (a recovery stopped it and
    /// ended before promoting anyone).
    StartReplication(InstanceKey),
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
    /// Why the primary is not made writable, when it is not although it could be.
    pub primary_held: Option<String>,
}

/// Plans the topology. The primary is the one recorded in the status; a new cluster's
/// primary is the master that already has replicas if there is one (korc restarted
/// with its status lost), else the lowest ordinal. Instances without replication, or
/// replicating from an address that is no member (their source came back elsewhere),
/// are attached to it unless they hold transactions it does not have: those are never
/// merged silently but held out and reported. A read-only primary that lacks
/// transactions every other reachable member has (its data directory was lost or is
/// older) is never made writable. With `semi_sync`, the primary is the only instance
/// with the source side of semi-sync on, set before it becomes writable.
pub fn plan(
    members: &[Member],
    instances: &[Instance],
    recorded_primary: Option<&str>,
    semi_sync: bool,
) -> Plan {
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
    let others: Vec<&Instance> = instances
        .iter()
        .enumerate()
        .filter(|&(i, x)| i != p && x.reachable)
        .map(|(_, x)| x)
        .collect();
    let ahead =
        |x: &Instance| primary.reachable && x.errant_gtids(primary).is_some_and(|e| !e.is_empty());
    let behind =
        primary.read_only == Some(true) && !others.is_empty() && others.iter().all(|x| ahead(x));
    if behind {
        out.primary_held = Some(format!(
            "{} lacks transactions every other instance has (empty or older data): not made writable",
            members[p].pod
        ));
        return out;
    }
    if primary.reachable && primary.semi_sync.master_enabled != semi_sync {
        out.actions.push(Action::SetSemiSyncSource {
            instance: primary.key.clone(),
            enabled: semi_sync,
        });
    }
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
        if inst.semi_sync.master_enabled {
            out.actions.push(Action::SetSemiSyncSource {
                instance: inst.key.clone(),
                enabled: false,
            });
        }
        let errant = primary
            .reachable
            .then(|| inst.errant_gtids(primary))
            .flatten()
            .filter(|e| !e.is_empty());
        if let Some(errant) = errant {
            out.excluded.insert(
                pod.clone(),
                format!(
                    "holds transactions the primary lacks ({errant}); annotate the pod \
                     korc.dev/rebuild (or set spec.recovery.rebuildErrantInstances) to save \
                     them and copy a replica's data over it"
                ),
            );
            continue;
        }
        match view.source_of(i) {
            Some(s) if s == p => {
                if primary.reachable && refused_credentials(inst) {
                    out.actions.push(Action::Attach {
                        replica: inst.key.clone(),
                        source: primary.key.clone(),
                    });
                } else if primary.reachable && stopped_cleanly(inst) {
                    out.actions.push(Action::StartReplication(inst.key.clone()));
                }
                out.replicas.push(pod.clone())
            }
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

/// The replica's receiver is stopped while its applier runs, and nothing broke the
/// receiver: that is how korc's own recovery leaves a replica when it ends before
/// promoting anyone (it stops receivers, never appliers), at most after the receiver
/// lost its connection (a client error, 2000–2999, such as a source that hung). A
/// receiver a server error stopped (a purged binlog, refused credentials) and a
/// stopped applier (an error, or someone's `STOP SLAVE`) are left for the analysis to
/// report.
fn stopped_cleanly(inst: &Instance) -> bool {
    inst.replication.as_ref().is_some_and(|r| {
        r.io_running == ThreadState::No
            && r.sql_running == ThreadState::Yes
            && (r.last_io_errno == 0 || (2000..3000).contains(&r.last_io_errno))
    })
}

/// "Access denied": the source refused the replica's credentials.
const ACCESS_DENIED: u32 = 1045;

/// The replica's receiver is refused by the source for its credentials: the
/// replication password changed while it was away (see `docs/credentials.md`).
/// Attaching it again gives it the current one.
fn refused_credentials(inst: &Instance) -> bool {
    inst.replication
        .as_ref()
        .is_some_and(|r| r.io_running != ThreadState::Yes && r.last_io_errno == ACCESS_DENIED)
}

/// Runs the actions; returns each one's result (the server's error as text), in order.
pub async fn execute(
    connector: &Connector,
    replication: &ReplicationCredentials,
    actions: &[Action],
) -> Vec<Result<(), String>> {
    let mut out = Vec::new();
    for a in actions {
        let result = match a {
            Action::MakeWritable(k) => set_read_only(connector, k, false).await,
            Action::MakeReadOnly(k) => set_read_only(connector, k, true).await,
            Action::SetSemiSyncSource { instance, enabled } => {
                set_semi_sync_source(connector, instance, *enabled).await
            }
            Action::StartReplication(k) => start_replica(connector, k).await,
            Action::Attach { replica, source } => {
                point_to(connector, replica, source, Some(replication), true).await
            }
        };
        out.push(result.map_err(|e| e.to_string()));
    }
    out
}

async fn set_semi_sync_source(
    connector: &Connector,
    key: &InstanceKey,
    enabled: bool,
) -> Result<(), crate::topology::error::Error> {
    let mut s = connector.connect(key).await?;
    let stmt = s.dialect.set_semi_sync_source(enabled);
    s.exec(&stmt).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::instance::{Flavor, Replication, ThreadState};

    fn member(i: usize) -> Member {
        Member::numbered(i)
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
        let p = plan(&members, &[fresh(0), fresh(1), fresh(2)], None, false);
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
        let p = plan(&members, &[fresh(1), fresh(2)], None, false);
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
            false,
        );
        assert!(p.actions.is_empty(), "{p:?}");
        assert_eq!(p.replicas, vec!["db-1", "db-2"]);
    }

    #[test]
    fn recorded_primary_wins_and_a_writable_stray_is_fenced() {
        let members: Vec<Member> = (0..2).map(member).collect();
        let mut stray = fresh(0);
        stray.read_only = Some(false);
        let p = plan(&members, &[stray, fresh(1)], Some("db-1"), false);
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
        let p = plan(&members, &[primary, old], Some("db-0"), false);
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
        let p = plan(&members, &[primary, stale], Some("db-0"), false);
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
            false,
        );
        assert_eq!(p.primary.as_deref(), Some("db-0"));
        assert!(p.actions.is_empty(), "{p:?}");
    }

    #[test]
    fn unreachable_primary_attaches_nothing() {
        let members: Vec<Member> = (0..2).map(member).collect();
        let mut primary = fresh(0);
        primary.reachable = false;
        let p = plan(&members, &[primary, fresh(1)], Some("db-0"), false);
        assert!(p.actions.is_empty());
    }

    #[test]
    fn semi_sync_source_only_on_the_primary_and_before_it_is_writable() {
        let members: Vec<Member> = (0..3).map(member).collect();
        let mut replica = replica_of(2, 0);
        replica.semi_sync.master_enabled = true;
        let p = plan(
            &members,
            &[fresh(0), replica_of(1, 0), replica],
            Some("db-0"),
            true,
        );
        assert_eq!(
            p.actions,
            vec![
                Action::SetSemiSyncSource {
                    instance: member(0).key,
                    enabled: true
                },
                Action::MakeWritable(member(0).key),
                Action::SetSemiSyncSource {
                    instance: member(2).key,
                    enabled: false
                },
            ]
        );
    }

    #[test]
    fn a_primary_behind_every_replica_is_never_made_writable() {
        let members: Vec<Member> = (0..3).map(member).collect();
        // db-0 came back with an empty data directory; its replicas have 0-10-5.
        let empty = fresh(0);
        let mut r1 = fresh(1);
        r1.gtid.binlog_state = "0-10-5".into();
        let r2 = Instance {
            key: member(2).key,
            ..r1.clone()
        };
        let p = plan(&members, &[empty, r1, r2], Some("db-0"), false);
        assert!(p.actions.is_empty(), "{p:?}");
        assert!(p.primary_held.unwrap().contains("db-0 lacks transactions"));
        assert!(
            p.excluded.is_empty(),
            "the replicas are not the errant ones"
        );
    }

    #[test]
    fn receivers_a_recovery_stopped_are_started_broken_or_user_stopped_ones_left_alone() {
        let members: Vec<Member> = (0..6).map(member).collect();
        let mut primary = fresh(0);
        primary.read_only = Some(false);
        let mut io_stopped = replica_of(1, 0);
        io_stopped.replication.as_mut().unwrap().io_running = ThreadState::No;
        // STOP SLAVE by someone: both threads stopped.
        let mut broken = replica_of(2, 0);
        let r = broken.replication.as_mut().unwrap();
        r.io_running = ThreadState::No;
        r.sql_running = ThreadState::No;
        let mut connecting = replica_of(3, 0);
        connecting.replication.as_mut().unwrap().io_running = ThreadState::Connecting;
        // Stopped while reconnecting to a hung source: a client error.
        let mut lost_source = replica_of(4, 0);
        let r = lost_source.replication.as_mut().unwrap();
        r.io_running = ThreadState::No;
        r.last_io_errno = 2013;
        // The source purged what it needs: a server error.
        let mut purged = replica_of(5, 0);
        let r = purged.replication.as_mut().unwrap();
        r.io_running = ThreadState::No;
        r.last_io_errno = 1236;
        let p = plan(
            &members,
            &[primary, io_stopped, broken, connecting, lost_source, purged],
            Some("db-0"),
            false,
        );
        assert_eq!(
            p.actions,
            vec![
                Action::StartReplication(member(1).key),
                Action::StartReplication(member(4).key)
            ]
        );
    }

    #[test]
    fn a_replica_refused_for_its_credentials_is_attached_again() {
        let members: Vec<Member> = (0..2).map(member).collect();
        let mut primary = fresh(0);
        primary.read_only = Some(false);
        let mut refused = replica_of(1, 0);
        let r = refused.replication.as_mut().unwrap();
        r.io_running = ThreadState::Connecting;
        r.last_io_errno = 1045;
        let p = plan(&members, &[primary, refused], Some("db-0"), false);
        assert_eq!(
            p.actions,
            vec![Action::Attach {
                replica: member(1).key,
                source: member(0).key
            }]
        );
        assert_eq!(p.replicas, vec!["db-1"]);
    }
}
