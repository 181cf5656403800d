//! A cluster as a replication graph: which instance replicates from which.
//!
//! Replicas name their source by whatever address they were configured with, which may
//! be the instance key, its `report_host` or its `hostname`; the graph resolves all of
//! them to the instance key.

use super::instance::{Instance, InstanceKey, Replication, ThreadState};
use std::collections::HashMap;

/// The replication graph of one cluster's instances.
#[derive(Debug)]
pub struct ClusterView<'a> {
    /// The instances, in the order given.
    pub instances: &'a [Instance],
    /// Every name of an instance (key, report host, hostname) as host and port.
    aliases: HashMap<(&'a str, u16), usize>,
    source: Vec<Option<usize>>,
    replicas: Vec<Vec<usize>>,
    in_ring: Vec<bool>,
}

impl<'a> ClusterView<'a> {
    /// Builds the graph. A replica whose source is not among `instances` has no source
    /// index (see [`ClusterView::has_foreign_source`]).
    pub fn new(instances: &'a [Instance]) -> Self {
        let mut aliases = HashMap::with_capacity(instances.len());
        for (i, inst) in instances.iter().enumerate() {
            aliases.insert((inst.key.host.as_str(), inst.key.port), i);
        }
        // Report host and hostname are weaker names: they never shadow a real key.
        for (i, inst) in instances.iter().enumerate() {
            for name in [&inst.report_host, &inst.hostname].into_iter().flatten() {
                aliases.entry((name.as_str(), inst.key.port)).or_insert(i);
            }
        }
        let source: Vec<Option<usize>> = instances
            .iter()
            .enumerate()
            .map(|(i, inst)| {
                inst.replication
                    .as_ref()
                    .and_then(Replication::source_address)
                    .and_then(|s| aliases.get(&s).copied())
                    .filter(|&s| s != i)
            })
            .collect();
        let mut replicas = vec![Vec::new(); instances.len()];
        for (i, s) in source.iter().enumerate() {
            if let Some(s) = s {
                replicas[*s].push(i);
            }
        }
        let in_ring = rings(&source);
        Self {
            instances,
            aliases,
            source,
            replicas,
            in_ring,
        }
    }

    /// Index of the instance a key (or alias) names.
    pub fn index_of(&self, key: &InstanceKey) -> Option<usize> {
        self.aliases.get(&(key.host.as_str(), key.port)).copied()
    }

    /// Index of the instance's source within the cluster.
    pub fn source_of(&self, i: usize) -> Option<usize> {
        self.source[i]
    }

    /// Indexes of the instance's direct replicas.
    pub fn replicas_of(&self, i: usize) -> &[usize] {
        &self.replicas[i]
    }

    /// The instance replicates from an address that is no instance of this cluster.
    pub fn has_foreign_source(&self, i: usize) -> bool {
        self.instances[i].source().is_some() && self.source[i].is_none()
    }

    /// orchestrator's co-master: the instance and its source replicate from each other.
    pub fn is_co_master(&self, i: usize) -> bool {
        self.source[i].is_some_and(|s| self.source[s] == Some(i))
    }

    /// The instance is on a replication ring: following sources from it leads back to
    /// it (co-masters are a ring of two).
    pub fn is_in_ring(&self, i: usize) -> bool {
        self.in_ring[i]
    }

    /// Replication depth: 0 for a master, 1 for its direct replicas, and so on.
    pub fn depth(&self, i: usize) -> usize {
        let mut depth = 0;
        let mut at = i;
        while let Some(s) = self.source[at] {
            depth += 1;
            at = s;
            if depth > self.instances.len() {
                break; // a cycle (co-masters)
            }
        }
        depth
    }

    /// The instance the cluster's writes go to: the master with the most replicas,
    /// preferring a reachable and writable one.
    pub fn primary(&self) -> Option<usize> {
        (0..self.instances.len())
            .filter(|&i| {
                self.instances[i].is_master()
                    && !self.instances[i]
                        .replication
                        .as_ref()
                        .is_some_and(Replication::is_detached)
            })
            .max_by_key(|&i| {
                let inst = &self.instances[i];
                (
                    self.replicas[i].len(),
                    inst.reachable && inst.is_writable(),
                    inst.reachable,
                    std::cmp::Reverse(i),
                )
            })
    }
}

/// Marks the instances on a cycle of the source graph. Each instance has at most one
/// source, so one walk per unvisited instance finds every cycle: O(n) in all.
fn rings(source: &[Option<usize>]) -> Vec<bool> {
    #[derive(Clone, Copy, PartialEq)]
    enum Visit {
        New,
        OnPath,
        Done,
    }
    let mut visit = vec![Visit::New; source.len()];
    let mut in_ring = vec![false; source.len()];
    for start in 0..source.len() {
        let mut path = Vec::new();
        let mut at = Some(start);
        while let Some(i) = at {
            match visit[i] {
                Visit::New => {
                    visit[i] = Visit::OnPath;
                    path.push(i);
                    at = source[i];
                }
                Visit::OnPath => {
                    // The walk came back to itself: from i on, the path is a ring.
                    let from = path.iter().position(|&p| p == i).unwrap_or(path.len());
                    for &p in &path[from..] {
                        in_ring[p] = true;
                    }
                    break;
                }
                Visit::Done => break,
            }
        }
        for p in path {
            visit[p] = Visit::Done;
        }
    }
    in_ring
}

/// Gives instances that were never reached the role the others imply: the source that
/// reachable replicas point to is the primary, unless a reachable master exists, in
/// which case it is an intermediate master under that one (taking it for a primary
/// would fail over a healthy cluster); any other never-seen member is taken for a dead
/// replica of the cluster's primary.
pub fn imply_roles(instances: &mut [Instance]) {
    let live_master = instances
        .iter()
        .filter(|i| i.reachable && i.is_master())
        .max_by_key(|i| i.is_writable())
        .map(|i| i.key.clone());
    let primary_key = {
        let view = ClusterView::new(instances);
        view.primary().map(|p| instances[p].key.clone())
    };
    let referenced: Vec<InstanceKey> = instances.iter().filter_map(Instance::source).collect();
    let replica_of = |source: &InstanceKey| Replication {
        source_host: source.host.clone(),
        source_port: source.port,
        io_running: ThreadState::No,
        sql_running: ThreadState::No,
        ..Default::default()
    };
    for inst in instances
        .iter_mut()
        .filter(|i| !i.reachable && i.last_seen_ms.is_none())
    {
        inst.implied = true;
        let is_someones_source = referenced.contains(&inst.key);
        inst.replication = match (&live_master, &primary_key) {
            (Some(live), _) if is_someones_source => Some(replica_of(live)),
            (None, _) if is_someones_source => None,
            (_, Some(primary)) if *primary != inst.key => Some(replica_of(primary)),
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(key: &str, source: Option<&str>) -> Instance {
        let mut i = Instance::unknown(key.parse().unwrap());
        i.reachable = true;
        i.last_seen_ms = Some(1);
        i.replication = source.map(|s| {
            let k: InstanceKey = s.parse().unwrap();
            Replication {
                source_host: k.host,
                source_port: k.port,
                ..Default::default()
            }
        });
        i
    }

    #[test]
    fn resolves_sources_through_report_host() {
        let mut m = inst("10.0.0.1:3306", None);
        m.report_host = Some("db-0.db".into());
        let r = inst("10.0.0.2:3306", Some("db-0.db:3306"));
        let list = vec![m, r];
        let v = ClusterView::new(&list);
        assert_eq!(v.source_of(1), Some(0));
        assert_eq!(v.replicas_of(0), &[1]);
        assert_eq!(v.primary(), Some(0));
        assert_eq!(v.depth(1), 1);
    }

    #[test]
    fn foreign_source_and_co_masters() {
        let list = vec![
            inst("a:1", Some("b:1")),
            inst("b:1", Some("a:1")),
            inst("c:1", Some("x:1")),
        ];
        let v = ClusterView::new(&list);
        assert!(v.is_co_master(0) && v.is_co_master(1));
        assert!(v.is_in_ring(0) && v.is_in_ring(1) && !v.is_in_ring(2));
        assert!(v.has_foreign_source(2));
        assert_eq!(v.primary(), None);
    }

    #[test]
    fn rings_of_any_length_and_what_hangs_off_them() {
        // m <- a; b -> c -> d -> b (a ring of three); e -> c (a replica of the ring).
        let list = vec![
            inst("m:1", None),
            inst("a:1", Some("m:1")),
            inst("b:1", Some("d:1")),
            inst("c:1", Some("b:1")),
            inst("d:1", Some("c:1")),
            inst("e:1", Some("c:1")),
        ];
        let v = ClusterView::new(&list);
        let ring: Vec<bool> = (0..list.len()).map(|i| v.is_in_ring(i)).collect();
        assert_eq!(ring, [false, false, true, true, true, false]);
        assert!(!v.is_co_master(2), "a ring of three is no co-master pair");
        assert_eq!(v.primary(), Some(0));
    }

    #[test]
    fn never_seen_instances_get_implied_roles() {
        let mut list = vec![
            Instance::unknown("m:1".parse().unwrap()),
            inst("r1:1", Some("m:1")),
            Instance::unknown("r2:1".parse().unwrap()),
        ];
        imply_roles(&mut list);
        assert!(list[0].is_master() && list[0].implied);
        assert_eq!(list[2].source(), Some("m:1".parse().unwrap()));
    }

    #[test]
    fn a_never_seen_source_beside_a_live_master_is_an_intermediate_master() {
        let mut list = vec![
            inst("m:1", None),
            Instance::unknown("im:1".parse().unwrap()),
            inst("a:1", Some("im:1")),
        ];
        imply_roles(&mut list);
        assert_eq!(list[1].source(), Some("m:1".parse().unwrap()));
    }
}
