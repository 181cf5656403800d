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
use serde::Serialize;
use std::time::Duration;

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
/// last one as shown in logs and errors (no password). The server restarts once the
/// copy is in place; it then holds the donor's data and GTIDs. The recipient's
/// session needs `CLONE_ADMIN` (korc's account has it), `account` on the donor
/// `BACKUP_ADMIN` (the replication account has it: it already receives every row
/// change).
pub fn mysql_clone_statements(
    donor: &InstanceKey,
    account: &ReplicationCredentials,
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
/// donor, waiting at most `bound` for the copy. Returns once the copy is in place: the
/// recipient then restarts, or has shut down for its supervisor to start it, and
/// holds the donor's data and GTIDs (its own server UUID kept); attach it with GTID
/// auto-positioning.
pub async fn clone_mysql(
    connector: &Connector,
    recipient: &InstanceKey,
    donor: &InstanceKey,
    account: &ReplicationCredentials,
    bound: Duration,
) -> Result<()> {
    let mut connector = connector.clone();
    connector.query_timeout = bound;
    let mut session = connector.connect(recipient).await?;
    let (statements, shown) = mysql_clone_statements(donor, account);
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

#[cfg(test)]
mod tests;
