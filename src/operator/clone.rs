//! Cloning in the operator: which instances need a physical copy (pure: [`wanted`]),
//! and the copies korc runs for them, one at a time per cluster, followed round by
//! round ([`Copies::follow`]). The engine chooses the donor and copies
//! (`topology::clone`); see `docs/cloning.md` for the invariants.

use super::bootstrap::{Action, Plan};
use super::events::{self, Note};
use super::status::Member;
use crate::api::{CloneProgressStatus, CloneRecordStatus};
use crate::topology::clone::{self as engine, CopyProgress};
use crate::topology::dialect::ReplicationCredentials;
use crate::topology::gtid::{ErrantRange, MariaDbBinlogState};
use crate::topology::instance::{Flavor, Instance, ThreadState};
use crate::topology::policy::Policy;
use crate::topology::session::Connector;
use k8s_openapi::jiff::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The pod annotation that asks korc to copy an instance's data again (any value;
/// korc removes it once the copy is attached).
pub const REBUILD_ANNOTATION: &str = "korc.dev/rebuild";

/// The source's "fatal error 1236": it cannot send what the replica asks for (the
/// transactions were purged from its binary logs). MariaDB reports it as the
/// receiver's error number; MySQL 8 as its own 13114, "Got fatal error 1236 from
/// source …".
const SOURCE_CANNOT_SEND: u32 = 1236;
const MYSQL_FATAL_FROM_SOURCE: u32 = 13114;

/// The receiver stopped because its source cannot send what it needs.
fn refused_for_purged(inst: &Instance) -> bool {
    inst.replication.as_ref().is_some_and(|r| {
        r.io_running != ThreadState::Yes
            && (r.last_io_errno == SOURCE_CANNOT_SEND
                || (r.last_io_errno == MYSQL_FATAL_FROM_SOURCE
                    && r.last_io_error
                        .contains(&format!("error {SOURCE_CANNOT_SEND} "))))
    })
}

/// How long a copy may take before korc gives it up.
const COPY_BOUND: Duration = Duration::from_secs(6 * 3600);

/// How long a server may take to come back on its copy.
const RESTART_BOUND: Duration = Duration::from_secs(600);

/// The pause before a failed copy is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why an instance is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The transactions it needs are purged from its source's binary logs.
    Purged,
    /// The pod's `korc.dev/rebuild` annotation.
    Requested,
    /// It holds errant transactions, and `spec.recovery.rebuildErrantInstances` asks
    /// for such instances to be rebuilt.
    Errant,
}

impl Reason {
    /// The word in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Purged => "purged",
            Reason::Requested => "requested",
            Reason::Errant => "errant",
        }
    }
}

/// The instances that need a copy, with the reason, in pod order: a pod annotated
/// `korc.dev/rebuild`, an instance holding errant transactions when `rebuild_errant`
/// (`spec.recovery.rebuildErrantInstances`), and a replica whose source refuses it
/// because the transactions it needs are purged. Never the primary (switch over
/// first), and nothing while the primary is unreachable. A copy over errant
/// transactions saves them first ([`errant_of`]); without the annotation or the
/// policy such an instance stays held out, even when refused for purged transactions.
pub fn wanted(
    members: &[Member],
    instances: &[Instance],
    primary: Option<&str>,
    rebuild_errant: bool,
) -> Vec<(String, Reason)> {
    let Some(p) = primary.and_then(|p| members.iter().position(|m| m.pod == p)) else {
        return Vec::new();
    };
    let source = &instances[p];
    if !source.reachable {
        // Whether an instance holds errant transactions cannot be told.
        return Vec::new();
    }
    members
        .iter()
        .zip(instances)
        .enumerate()
        .filter(|&(i, (_, inst))| i != p && inst.reachable)
        .filter_map(|(_, (m, inst))| {
            let errant = errant_of(inst, source).is_some();
            if m.rebuild {
                Some((m.pod.clone(), Reason::Requested))
            } else if errant {
                rebuild_errant.then(|| (m.pod.clone(), Reason::Errant))
            } else if refused_for_purged(inst) {
                Some((m.pod.clone(), Reason::Purged))
            } else {
                None
            }
        })
        .collect()
}

/// What only `inst` holds and a copy over it would destroy: its errant transactions
/// against `primary` (the GTIDs as korc reports them, and on MariaDB the ranges of
/// binary log events that hold them). None when it holds none, or when that cannot be
/// told (an unknown flavor or unparsable GTIDs; analysis reports those).
pub fn errant_of(inst: &Instance, primary: &Instance) -> Option<(String, Vec<ErrantRange>)> {
    let gtids = inst.errant_gtids(primary).filter(|e| !e.is_empty())?;
    let ranges = match inst.flavor {
        Some(Flavor::Mariadb) => {
            let state = |i: &Instance| MariaDbBinlogState::parse(&i.gtid.binlog_state).ok();
            state(inst)?.errant_ranges(&state(primary)?)
        }
        _ => Vec::new(),
    };
    Some((gtids, ranges))
}

/// Keeps instances being copied out of the topology: nothing attaches, starts or
/// lists them as replicas until their copy is in place and they restarted on it. A
/// donor stays a replica serving reads, unless the running copy makes it lag more than
/// `reasonable_lag_s` (`spec.recovery.reasonableReplicationLagSeconds`): then it
/// leaves the `-replicas` Service until it is back under.
pub fn hold_out(
    plan: &mut Plan,
    members: &[Member],
    instances: &[Instance],
    copies: &BTreeMap<String, CloneProgressStatus>,
    reasonable_lag_s: u64,
) {
    for copy in copies.values().filter(|c| c.phase == "copying") {
        let lag = members
            .iter()
            .position(|m| m.pod == copy.donor)
            .and_then(|i| instances.get(i))
            .and_then(|d| d.replication.as_ref())
            .and_then(|r| r.seconds_behind);
        if lag.is_some_and(|l| l > reasonable_lag_s) {
            plan.replicas.retain(|r| r != &copy.donor);
        }
    }
    for (pod, copy) in copies.iter().filter(|(_, c)| c.phase != "failed") {
        let Some(member) = members.iter().find(|m| &m.pod == pod) else {
            continue;
        };
        plan.actions.retain(|a| match a {
            Action::Attach { replica, .. } => replica != &member.key,
            Action::StartReplication(k) => k != &member.key,
            Action::SetSemiSyncSource { instance, .. } => instance != &member.key,
            Action::MakeWritable(_) | Action::MakeReadOnly(_) => true,
        });
        plan.replicas.retain(|r| r != pod);
        plan.excluded.insert(
            pod.clone(),
            format!("being cloned from {} ({})", copy.donor, copy.phase),
        );
    }
}

/// Where a copy is.
enum Phase {
    /// The copy runs in this task; a MariaDB copy ends staged, with its GTID position.
    Copying(JoinHandle<Result<Option<String>, String>>),
    /// The copy is in place (or staged) since then; the server restarts on it, and a
    /// MariaDB replica then resumes from this GTID position.
    Restarting(Instant, Option<String>),
    /// The copy failed then, for this reason.
    Failed(Instant, String),
}

/// A copy korc runs.
struct Copy {
    donor: String,
    reason: Reason,
    started: Timestamp,
    phase: Phase,
    progress: Option<CopyProgress>,
    /// Where the task of a MariaDB copy writes what the recipient's agent reports.
    reported: Option<Arc<Mutex<Option<CopyProgress>>>>,
    /// The errant transactions saved before the copy, and where.
    saved: Option<Saved>,
}

/// Errant transactions a copy saved first.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Saved {
    /// As korc reports them.
    gtids: String,
    /// The directory on the pod's data volume.
    to: String,
}

impl Copy {
    /// The record of this copy, ended now with `error` (or completed).
    fn record(&self, pod: &str, error: Option<String>) -> CloneRecordStatus {
        CloneRecordStatus {
            pod: pod.into(),
            donor: self.donor.clone(),
            reason: self.reason.as_str().into(),
            outcome: if error.is_some() {
                "failed"
            } else {
                "completed"
            }
            .into(),
            error,
            bytes_copied: self.progress.as_ref().map(|p| p.bytes_copied as i64),
            // To the second, as the status keeps times: [`history`] knows a recorded
            // copy again by its start.
            started_at: whole_seconds(self.started),
            ended_at: whole_seconds(Timestamp::now()),
            errant_gtids: self.saved.as_ref().map(|s| s.gtids.clone()),
            saved_to: self.saved.as_ref().map(|s| s.to.clone()),
        }
    }

    fn status(&self) -> CloneProgressStatus {
        let (phase, error) = match &self.phase {
            Phase::Copying(_) => ("copying", None),
            Phase::Restarting(..) => ("restarting", None),
            Phase::Failed(_, e) => ("failed", Some(e.clone())),
        };
        CloneProgressStatus {
            donor: self.donor.clone(),
            reason: self.reason.as_str().into(),
            phase: phase.into(),
            bytes_copied: self.progress.as_ref().map(|p| p.bytes_copied as i64),
            bytes_estimated: self.progress.as_ref().map(|p| p.bytes_estimated as i64),
            started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(self.started),
            error,
            errant_gtids: self.saved.as_ref().map(|s| s.gtids.clone()),
            saved_to: self.saved.as_ref().map(|s| s.to.clone()),
        }
    }
}

/// What a round of [`Copies::follow`] needs.
pub struct Round<'a> {
    /// `namespace/name` of the cluster.
    pub id: &'a str,
    /// The pods.
    pub members: &'a [Member],
    /// Their probe results.
    pub instances: &'a [Instance],
    /// Pod name of the primary.
    pub primary: Option<&'a str>,
    /// The cluster's policy (donor choice).
    pub policy: &'a Policy,
    /// korc's connections.
    pub connector: &'a Connector,
    /// The replication account (the donor's side of a copy, and the account korc's
    /// agents answer).
    pub replication: &'a ReplicationCredentials,
    /// `spec.clone.maxMiBPerSecond`.
    pub max_mib_per_second: u32,
    /// `spec.recovery.rebuildErrantInstances`.
    pub rebuild_errant: bool,
}

/// Copies kept in the status's history.
pub const HISTORY: usize = 10;

/// What a round did.
#[derive(Default)]
pub struct Followed {
    /// The copies to show in the status, by pod.
    pub copies: BTreeMap<String, CloneProgressStatus>,
    /// Copies that ended, oldest first (the last [`HISTORY`] this leader saw end).
    pub ended: Vec<CloneRecordStatus>,
    /// What to tell in Events.
    pub notes: Vec<Note>,
    /// Pods whose `korc.dev/rebuild` annotation is served and can be removed.
    pub served: Vec<String>,
    /// Pods holding a staged copy, to delete: their next start swaps it in.
    pub restart: Vec<String>,
}

/// The copies of every cluster, kept by the leader between rounds.
#[derive(Default)]
pub struct Copies {
    all: Mutex<HashMap<String, BTreeMap<String, Copy>>>,
    ended: Mutex<HashMap<String, Vec<CloneRecordStatus>>>,
}

impl Copies {
    /// One round: ends copies whose task ended, notices servers restarted on their
    /// copy, reads the progress of the running one, and starts the next wanted copy
    /// when none runs.
    pub async fn follow(&self, round: &Round<'_>) -> Followed {
        let mut copies = self
            .all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(round.id)
            .unwrap_or_default();
        let mut out = Followed::default();
        let wanted = wanted(
            round.members,
            round.instances,
            round.primary,
            round.rebuild_errant,
        );
        let key_of = |pod: &str| round.members.iter().find(|m| m.pod == pod).map(|m| &m.key);
        let instance_of = |pod: &str| {
            round
                .members
                .iter()
                .position(|m| m.pod == pod)
                .map(|i| &round.instances[i])
        };
        let mut done = Vec::new();
        let mut ended = Vec::new();
        for (pod, copy) in copies.iter_mut() {
            let Some(key) = key_of(pod) else {
                // A pod restarting on its copy is away until the StatefulSet made it
                // again; any other is scaled away.
                if !matches!(copy.phase, Phase::Restarting(..)) {
                    done.push(pod.clone());
                }
                continue;
            };
            match &mut copy.phase {
                Phase::Copying(task) if task.is_finished() => {
                    let result = match task.await {
                        Ok(r) => r,
                        Err(e) => Err(format!("the copy's task ended: {e}")),
                    };
                    copy.phase = match result {
                        Ok(position) => {
                            if position.is_some() {
                                out.restart.push(pod.clone());
                            }
                            Phase::Restarting(Instant::now(), position)
                        }
                        Err(e) => {
                            out.notes.push(events::clone_failed(pod, &copy.donor, &e));
                            ended.push(copy.record(pod, Some(e.clone())));
                            Phase::Failed(Instant::now(), e)
                        }
                    };
                }
                Phase::Copying(_) => match &copy.reported {
                    Some(reported) => {
                        let p = reported.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        copy.progress = p.or(copy.progress.take());
                    }
                    None => {
                        if let Ok(Some(p)) =
                            engine::mysql_clone_progress(round.connector, key).await
                        {
                            copy.progress = Some(p);
                        }
                    }
                },
                Phase::Restarting(since, position) => {
                    let mut back = instance_of(pod).is_some_and(|i| i.reachable)
                        && engine::uptime(round.connector, key)
                            .await
                            .is_ok_and(|up| up < since.elapsed());
                    if back && let Some(gtid) = position {
                        // Replication resumes where the copy ends; until that is set,
                        // the instance stays held out.
                        if let Err(e) =
                            engine::set_replica_position(round.connector, key, gtid).await
                        {
                            tracing::warn!(pod, error = %e, "cannot set the copy's replica position");
                            back = false;
                        }
                    }
                    if back {
                        let seconds = Timestamp::now().duration_since(copy.started).as_secs_f64();
                        out.notes
                            .push(events::clone_finished(pod, &copy.donor, seconds));
                        if copy.reason == Reason::Requested {
                            out.served.push(pod.clone());
                        }
                        ended.push(copy.record(pod, None));
                        done.push(pod.clone());
                    } else if since.elapsed() > RESTART_BOUND {
                        let e = format!(
                            "the server did not come back on its copy within {} s",
                            RESTART_BOUND.as_secs()
                        );
                        out.notes.push(events::clone_failed(pod, &copy.donor, &e));
                        ended.push(copy.record(pod, Some(e.clone())));
                        copy.phase = Phase::Failed(Instant::now(), e);
                    }
                }
                Phase::Failed(at, _) => {
                    let still = wanted.iter().any(|(p, _)| p == pod);
                    if !still || at.elapsed() > RETRY_AFTER {
                        done.push(pod.clone());
                    }
                }
            }
        }
        for pod in done {
            copies.remove(&pod);
        }
        let running = copies
            .values()
            .any(|c| !matches!(c.phase, Phase::Failed(..)));
        let next = wanted.iter().find(|(pod, _)| !copies.contains_key(pod));
        if let (false, Some((pod, reason))) = (running, next) {
            let copy = start(round, pod, *reason);
            if let Phase::Failed(_, e) = &copy.phase {
                ended.push(copy.record(pod, Some(e.clone())));
            }
            tracing::info!(
                cluster = round.id,
                pod,
                donor = copy.donor,
                reason = reason.as_str(),
                "copying data"
            );
            if let Phase::Failed(_, e) = &copy.phase {
                out.notes.push(events::clone_failed(pod, &copy.donor, e));
            } else {
                out.notes
                    .push(events::clone_started(pod, &copy.donor, reason.as_str()));
            }
            copies.insert(pod.clone(), copy);
        }
        out.copies = copies
            .iter()
            .map(|(p, c)| (p.clone(), c.status()))
            .collect();
        {
            let mut all = self.ended.lock().unwrap_or_else(|e| e.into_inner());
            let history = all.entry(round.id.to_string()).or_default();
            history.extend(ended);
            let excess = history.len().saturating_sub(HISTORY);
            history.drain(..excess);
            out.ended = history.clone();
        }
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(round.id.to_string(), copies);
        out
    }

    /// Forgets the copies of clusters not in `present` (their tasks run to the end).
    pub fn forget_all_but(&self, present: &std::collections::HashSet<String>) {
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| present.contains(id));
        self.ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| present.contains(id));
    }
}

/// `t` as the status holds it: whole seconds.
fn whole_seconds(t: Timestamp) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Timestamp::from_second(t.as_second()).unwrap_or(t),
    )
}

/// The status's history of copies: the recorded one with those this leader saw end
/// added (each once), the last [`HISTORY`] kept.
pub fn history(
    recorded: &[CloneRecordStatus],
    ended: &[CloneRecordStatus],
) -> Vec<CloneRecordStatus> {
    let mut all = recorded.to_vec();
    for e in ended {
        let known = all
            .iter()
            .any(|r| r.pod == e.pod && r.started_at == e.started_at && r.outcome == e.outcome);
        if !known {
            all.push(e.clone());
        }
    }
    let excess = all.len().saturating_sub(HISTORY);
    all.drain(..excess);
    all
}

/// Starts copying into `pod`: chooses the donor and spawns the copy, or returns a
/// failed copy saying why it cannot run.
fn start(round: &Round<'_>, pod: &str, reason: Reason) -> Copy {
    let failed = |donor: String, why: String| Copy {
        donor,
        reason,
        started: Timestamp::now(),
        phase: Phase::Failed(Instant::now(), why),
        progress: None,
        reported: None,
        saved: None,
    };
    let member = |name: &str| round.members.iter().find(|m| m.pod == name);
    let (Some(recipient), Some(primary)) = (member(pod), round.primary.and_then(member)) else {
        return failed(String::new(), "no primary to copy from".into());
    };
    let choice = match engine::choose_donor(
        round.instances,
        &primary.key,
        &recipient.key,
        round.policy,
        crate::topology::probe::now_ms(),
    ) {
        Ok(c) => c,
        Err(e) => return failed(String::new(), e.to_string()),
    };
    let donor = round
        .members
        .iter()
        .find(|m| m.key == choice.donor)
        .map(|m| m.pod.clone())
        .unwrap_or_else(|| choice.donor.to_string());
    let instance = |name: &str| {
        round
            .members
            .iter()
            .position(|m| m.pod == name)
            .map(|i| &round.instances[i])
    };
    let (Some(target), Some(source)) = (instance(pod), round.primary.and_then(instance)) else {
        return failed(donor, "the recipient or the primary was not probed".into());
    };
    let errant = errant_of(target, source);
    match (target.flavor, errant) {
        (Some(Flavor::Mariadb), errant) => {
            return start_mariadb(round, &recipient.key, &choice.donor, donor, reason, errant);
        }
        (Some(Flavor::Mysql), Some((gtids, _))) => {
            return failed(
                donor,
                format!(
                    "it holds errant transactions ({gtids}) that korc saves before a copy \
                     only on MariaDB: save them (mysqlbinlog --include-gtids on the pod), then \
                     delete the pod's volume, and korc copies into the new instance"
                ),
            );
        }
        (Some(Flavor::Mysql), None) => {}
        (None, _) => return failed(donor, "the recipient's flavor is unknown".into()),
    }
    let (connector, replication) = (round.connector.clone(), round.replication.clone());
    let (to, from, bandwidth) = (
        recipient.key.clone(),
        choice.donor.clone(),
        round.max_mib_per_second,
    );
    let task = tokio::spawn(async move {
        engine::clone_mysql(&connector, &to, &from, &replication, bandwidth, COPY_BOUND)
            .await
            .map(|()| None)
            .map_err(|e| e.to_string())
    });
    Copy {
        donor,
        reason,
        started: Timestamp::now(),
        phase: Phase::Copying(task),
        progress: None,
        reported: None,
        saved: None,
    }
}

/// Starts a MariaDB copy through korc's agents (`crate::agent`): the recipient's
/// pulls a backup from the donor's, on the pods' addresses, over TLS verified like
/// korc's sessions when the cluster has TLS. `errant`: what the recipient's agent
/// saves first (see `crate::agent::save`).
fn start_mariadb(
    round: &Round<'_>,
    recipient: &crate::topology::instance::InstanceKey,
    donor_key: &crate::topology::instance::InstanceKey,
    donor: String,
    reason: Reason,
    errant: Option<(String, Vec<ErrantRange>)>,
) -> Copy {
    use crate::agent::protocol::CloneRequest;
    use crate::agent::save::{SAVED, SaveRequest};
    use crate::agent::{AGENT_PORT, ClientTls, client::AgentClient};
    use crate::topology::session::Tls;
    let agent = |key| format!("{}:{AGENT_PORT}", round.connector.address_of(key).host);
    let (to, from) = (agent(recipient), agent(donor_key));
    let tls = match &round.connector.tls {
        Tls::Verified { ca, server_name } => Some(ClientTls {
            ca: ca.clone(),
            server_name: server_name
                .clone()
                .unwrap_or_else(|| recipient.host.clone()),
        }),
        Tls::Disabled | Tls::Required => None,
    };
    let client = AgentClient::new(&round.replication.user, &round.replication.password, tls);
    let started = Timestamp::now();
    let save = errant.map(|(gtids, ranges)| SaveRequest {
        // Named by the copy's start: each rebuild keeps its own.
        name: started.strftime("%Y%m%dT%H%M%SZ").to_string(),
        errant_gtids: gtids,
        errant: ranges,
    });
    let saved = save.as_ref().map(|s| Saved {
        gtids: s.errant_gtids.clone(),
        to: format!("{}/{SAVED}/{}", crate::provisioning::DATADIR, s.name),
    });
    let request = CloneRequest {
        donor: from,
        max_mib_per_second: round.max_mib_per_second,
        save,
    };
    let reported = Arc::new(Mutex::new(None));
    let shared = reported.clone();
    let task = tokio::spawn(async move {
        engine::clone_mariadb(&client, &to, &request, &shared, COPY_BOUND)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    });
    Copy {
        donor,
        reason,
        started,
        phase: Phase::Copying(task),
        progress: None,
        reported: Some(reported),
        saved,
    }
}

#[cfg(test)]
mod tests;
