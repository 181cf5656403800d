//! Cloning: filling an instance that cannot replicate (an empty data directory, or
//! transactions it needs already purged from every binary log) with a physical copy of
//! a healthy instance, the donor, then attaching it with GTID auto-positioning.
//!
//! The donor is chosen here, as a pure function of the probe: a caught-up replica of
//! the primary, so that the copy does not load the primary; the primary only when no
//! replica can serve (a two-instance cluster). MySQL copies with its clone plugin
//! (`CLONE INSTANCE FROM`, driven over SQL from the recipient); the statements are
//! built here too.

use super::dialect::{ReplicationCredentials, quote};
use super::instance::{Instance, InstanceKey};
use super::policy::Policy;
use super::session::Connector;
use super::{Error, Result};
use crate::agent::AgentError;
use crate::agent::client::AgentClient;
use crate::agent::protocol::{CloneRequest, CopyState};
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a replica cannot be the donor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "camelCase", tag = "reason", content = "detail")]
pub enum Unfit {
    /// The probe did not reach it.
    #[error("unreachable")]
    Unreachable,
    /// It replicates from another source, or from none.
    #[error("does not replicate from the primary")]
    NotReplicatingFromPrimary,
    /// A replication thread is stopped.
    #[error("replication is stopped")]
    ReplicationStopped,
    /// Its lag is unknown or above `reasonableReplicationLagSeconds`.
    #[error("lags {0}")]
    Lagging(String),
    /// It holds transactions the primary does not have.
    #[error("holds errant transactions {0}")]
    ErrantGtids(String),
    /// Another flavor or major version than the primary: the copy would not start.
    #[error("runs {0}, the primary {1}")]
    OtherVersion(String, String),
    /// Downtimed in the policy.
    #[error("downtimed")]
    Downtimed,
}

/// The donor of a copy and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DonorChoice {
    /// The instance that gives its data.
    pub donor: InstanceKey,
    /// True when it is the primary (no replica could serve).
    pub primary: bool,
    /// The replicas that could not serve, with the reason.
    pub unfit: Vec<(InstanceKey, Unfit)>,
}

/// Why there is no donor at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no instance can give its data: the primary is unreachable or is the recipient")]
pub struct NoDonor;

/// Chooses the donor for `recipient`: the least lagging fit replica of `primary`
/// (ties by key, for a stable choice), else the primary itself.
pub fn choose_donor(
    instances: &[Instance],
    primary: &InstanceKey,
    recipient: &InstanceKey,
    policy: &Policy,
    now_ms: u64,
) -> Result<DonorChoice, NoDonor> {
    let primary_instance = instances
        .iter()
        .find(|i| &i.key == primary && i.reachable && &i.key != recipient)
        .ok_or(NoDonor)?;
    let mut fit: Vec<(u64, &InstanceKey)> = Vec::new();
    let mut unfit = Vec::new();
    for i in instances
        .iter()
        .filter(|i| &i.key != primary && &i.key != recipient)
    {
        match fitness(i, primary_instance, policy, now_ms) {
            Ok(lag) => fit.push((lag, &i.key)),
            Err(why) => unfit.push((i.key.clone(), why)),
        }
    }
    fit.sort();
    Ok(match fit.first() {
        Some((_, key)) => DonorChoice {
            donor: (*key).clone(),
            primary: false,
            unfit,
        },
        None => DonorChoice {
            donor: primary.clone(),
            primary: true,
            unfit,
        },
    })
}

/// A replica's lag when it can serve as donor, else why not.
fn fitness(r: &Instance, primary: &Instance, policy: &Policy, now_ms: u64) -> Result<u64, Unfit> {
    if !r.reachable {
        return Err(Unfit::Unreachable);
    }
    if policy.is_downtimed(&r.key, now_ms) {
        return Err(Unfit::Downtimed);
    }
    let version = |i: &Instance| (i.flavor, i.major_version());
    if version(r) != version(primary) {
        let shown = |i: &Instance| {
            i.version
                .clone()
                .unwrap_or_else(|| "an unknown version".into())
        };
        return Err(Unfit::OtherVersion(shown(r), shown(primary)));
    }
    if r.source().as_ref() != Some(&primary.key) {
        return Err(Unfit::NotReplicatingFromPrimary);
    }
    if !r.is_replicating() {
        return Err(Unfit::ReplicationStopped);
    }
    if let Some(errant) = r.errant_gtids(primary).filter(|e| !e.is_empty()) {
        return Err(Unfit::ErrantGtids(errant));
    }
    match r.lag_seconds() {
        Some(lag) if lag <= policy.reasonable_replication_lag_seconds => Ok(lag),
        Some(lag) => Err(Unfit::Lagging(format!("{lag} s"))),
        None => Err(Unfit::Lagging("an unknown time".into())),
    }
}

/// The statements a MySQL recipient runs to copy `donor` over its own data, with the
/// last one as shown in logs and errors (no password). The recipient forgets its
/// broken replication first (the copy brings the donor's GTIDs, korc attaches it
/// afterwards), lifts `super_read_only` (the copy writes its data dictionary), and
/// the copy is limited to `max_mib_per_second` (0: no limit). The
/// server restarts once the copy is in place; it then holds the donor's data and
/// GTIDs. The recipient's session needs `CLONE_ADMIN`, `SYSTEM_VARIABLES_ADMIN` and
/// `REPLICATION_SLAVE_ADMIN` (korc's account has them), `account` on the donor
/// `BACKUP_ADMIN` (the replication account has it: it already receives every row
/// change).
pub fn mysql_clone_statements(
    donor: &InstanceKey,
    account: &ReplicationCredentials,
    max_mib_per_second: u32,
) -> (Vec<String>, String) {
    let address = format!("{}:{}", donor.host, donor.port);
    let clone = |password: &str| {
        format!(
            "CLONE INSTANCE FROM {}@{}:{} IDENTIFIED BY {password}",
            quote(&account.user),
            quote(&donor.host),
            donor.port
        )
    };
    (
        vec![
            "STOP REPLICA".to_string(),
            "RESET REPLICA ALL".to_string(),
            // The copy writes the recipient's data dictionary, which super_read_only
            // refuses; read_only stays on, and the restart brings back the persisted
            // super_read_only.
            "SET GLOBAL super_read_only = OFF".to_string(),
            format!("SET GLOBAL clone_max_data_bandwidth = {max_mib_per_second}"),
            format!("SET GLOBAL clone_valid_donor_list = {}", quote(&address)),
            clone(&quote(&account.password)),
        ],
        clone("<password>"),
    )
}

/// MySQL's "Restart server failed (mysqld is not managed by supervisor process)": the
/// copy is in place and the server has shut down for its supervisor (the kubelet, in
/// Kubernetes) to start it again.
const RESTART_LEFT_TO_SUPERVISOR: u16 = 3707;

/// Copies `donor` over `recipient` with MySQL's clone plugin, as `account` on the
/// donor, at most `max_mib_per_second` (0: no limit), waiting at most `bound` for
/// the copy. Returns once the copy is in place: the
/// recipient then restarts, or has shut down for its supervisor to start it, and
/// holds the donor's data and GTIDs (its own server UUID kept); attach it with GTID
/// auto-positioning.
pub async fn clone_mysql(
    connector: &Connector,
    recipient: &InstanceKey,
    donor: &InstanceKey,
    account: &ReplicationCredentials,
    max_mib_per_second: u32,
    bound: Duration,
) -> Result<()> {
    let mut connector = connector.clone();
    connector.query_timeout = bound;
    let mut session = connector.connect(recipient).await?;
    let (statements, shown) = mysql_clone_statements(donor, account, max_mib_per_second);
    let (clone, settings) = statements.split_last().expect("the clone statement");
    for statement in settings {
        session.exec(statement).await?;
    }
    match session.exec_redacted(clone, &shown).await {
        Err(Error::Sql {
            source: mysql_async::Error::Server(e),
            ..
        }) if e.code == RESTART_LEFT_TO_SUPERVISOR => Ok(()),
        other => other,
    }
}

/// A copy as the recipient reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyProgress {
    /// `Not Started`, `In Progress`, `Completed` or `Failed` (MySQL's words).
    pub state: String,
    /// Bytes copied so far, over all stages.
    pub bytes_copied: u64,
    /// Bytes the copy is estimated to move, over the stages begun.
    pub bytes_estimated: u64,
    /// The server's error, when the copy failed.
    pub error: Option<String>,
}

/// The last copy into MySQL instance `recipient` (`None` when it never had one), from
/// `performance_schema.clone_status` and `clone_progress` (korc's account may read
/// those two tables, and no other).
pub async fn mysql_clone_progress(
    connector: &Connector,
    recipient: &InstanceKey,
) -> Result<Option<CopyProgress>> {
    let mut session = connector.connect(recipient).await?;
    let status = session
        .rows(
            "SELECT STATE AS state, ERROR_NO AS error_no, ERROR_MESSAGE AS message \
             FROM performance_schema.clone_status",
        )
        .await?;
    let Some(mut row) = status.into_iter().next() else {
        return Ok(None);
    };
    let mut text = |column: &str| row.remove(column).flatten().unwrap_or_default();
    let (state, error_no, message) = (text("state"), text("error_no"), text("message"));
    let amounts = session
        .rows(
            "SELECT CAST(COALESCE(SUM(DATA), 0) AS UNSIGNED) AS copied, \
             CAST(COALESCE(SUM(ESTIMATE), 0) AS UNSIGNED) AS estimated \
             FROM performance_schema.clone_progress",
        )
        .await?;
    let amount = |column: &str| -> u64 {
        amounts
            .first()
            .and_then(|r| r.get(column).cloned().flatten())
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    Ok(Some(CopyProgress {
        state,
        bytes_copied: amount("copied"),
        bytes_estimated: amount("estimated"),
        error: (!error_no.is_empty() && error_no != "0")
            .then(|| format!("error {error_no}: {message}")),
    }))
}

/// How often korc asks the recipient's agent how its copy goes.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Unanswered questions in a row after which a copy is taken as lost (its agent died).
const UNANSWERED: u32 = 10;

/// Copies into the MariaDB instance whose agent is at `recipient` (`host:port`; see
/// `crate::agent`) what `request` says (the donor's agent, the pace, what to save
/// first), waiting at most `bound`, writing what the recipient reports into
/// `progress`. Returns once the copy is staged, complete and prepared, with its GTID
/// position: the recipient's next start swaps it in (delete its pod), then set its
/// `gtid_slave_pos` to that position and attach it.
pub async fn clone_mariadb(
    client: &AgentClient,
    recipient: &str,
    request: &CloneRequest,
    progress: &Mutex<Option<CopyProgress>>,
    bound: Duration,
) -> Result<String, AgentError> {
    match client.start_copy(recipient, request).await {
        // A copy korc started before (a retried round) runs: it is followed.
        Err(AgentError::Refused { status: 409, .. }) | Ok(()) => {}
        Err(e) => return Err(e),
    }
    let started = Instant::now();
    let mut unanswered = 0;
    let lost = |detail: String| AgentError::Remote {
        address: recipient.to_string(),
        detail,
    };
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        if started.elapsed() > bound {
            return Err(lost(format!(
                "the copy took more than {} s",
                bound.as_secs()
            )));
        }
        let report = match client.copy_report(recipient).await {
            Ok(r) => {
                unanswered = 0;
                r
            }
            Err(e) if unanswered < UNANSWERED => {
                unanswered += 1;
                tracing::debug!(recipient, error = %e, "no copy report");
                continue;
            }
            Err(e) => return Err(e),
        };
        *progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(CopyProgress {
            state: match report.state {
                CopyState::Staged => "Completed",
                CopyState::Failed => "Failed",
                _ => "In Progress",
            }
            .into(),
            bytes_copied: report.bytes_copied,
            bytes_estimated: report.bytes_estimated,
            error: report.error.clone(),
        });
        match report.state {
            CopyState::Copying | CopyState::Preparing => {}
            CopyState::Staged => {
                return report
                    .gtid_position
                    .ok_or_else(|| lost("a staged copy without its GTID position".into()));
            }
            CopyState::Failed => {
                return Err(lost(
                    report.error.unwrap_or_else(|| "the copy failed".into()),
                ));
            }
            CopyState::Idle => return Err(lost("the agent has no copy (it restarted)".into())),
        }
    }
}

/// Sets the replica position of MariaDB instance `key`, restarted on a copy, to the
/// copy's `gtid` (when it differs), so that GTID replication resumes where the copy
/// ends: the copy's `mysql.gtid_slave_pos` is the donor's replica position, which
/// lags the copy when the donor was the primary.
pub async fn set_replica_position(
    connector: &Connector,
    key: &InstanceKey,
    gtid: &str,
) -> Result<()> {
    let mut session = connector.connect(key).await?;
    let current = session
        .value("SELECT @@global.gtid_slave_pos")
        .await?
        .unwrap_or_default();
    if current != gtid {
        session
            .exec(&format!("SET GLOBAL gtid_slave_pos = {}", quote(gtid)))
            .await?;
    }
    Ok(())
}

/// How long `key`'s server has been up: a server that restarted on its copy has been
/// up for less time than since the copy ended.
pub async fn uptime(connector: &Connector, key: &InstanceKey) -> Result<Duration> {
    let mut session = connector.connect(key).await?;
    let seconds = session
        .name_values("SHOW GLOBAL STATUS LIKE 'Uptime'")
        .await?
        .get("Uptime")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests;
