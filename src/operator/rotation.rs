//! Password rotation. The credentials Secret says which passwords korc's accounts
//! should have; the Secret `<cluster>-credentials-in-force` says which they have. When
//! they differ on a cluster with a reachable primary, korc sets the new passwords on
//! the primary (the binary log carries them to every replica), waits until the
//! reachable replicas have applied them, repoints those replicas with the new
//! replication password, and only then records the new passwords as in force.
//!
//! Replication never loses its connection to a password change: a replica's open
//! connection outlives the change, and it reconnects with the new password only once
//! the primary has it. While a change travels, korc connects with the new password and
//! falls back to the one in force. A rotation cut short is run again from the start:
//! every step is idempotent.

use super::controller::{Context, publish};
use super::events;
use crate::api::MySQLCluster;
use crate::provisioning::{self, Account, Flavor, OPERATOR_USER, Passwords, set_password};
use crate::topology::dialect::ReplicationCredentials;
use crate::topology::instance::InstanceKey;
use crate::topology::recovery::Replication;
use crate::topology::session::Connector;
use std::time::Duration;

/// How long replicas have to apply the new passwords.
const APPLY_BOUND: Duration = Duration::from_secs(10);

/// The passwords korc's accounts should have, and those they have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordState {
    /// From the credentials Secret.
    pub desired: Passwords,
    /// From the in-force Secret: what the instances have.
    pub in_force: Passwords,
    /// korc generated the credentials Secret (and so owns it).
    pub generated: bool,
}

impl PasswordState {
    /// The accounts whose password is to change on `flavor` (MySQL's root is left to
    /// its administrator: see [`Account::rotatable`]).
    pub fn pending(&self, flavor: Flavor) -> Vec<Account> {
        self.in_force
            .changed(&self.desired)
            .into_iter()
            .filter(|a| a.rotatable(flavor))
            .collect()
    }
}

/// An instance taking part in a rotation: its pod and key.
#[derive(Debug, Clone)]
pub struct Target {
    /// Pod name.
    pub pod: String,
    /// The instance's key.
    pub key: InstanceKey,
}

/// Why a rotation stopped; the next round runs it again.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// A statement failed or an instance did not answer.
    #[error("{doing} on {pod}: {source}")]
    Sql {
        /// What korc was doing.
        doing: String,
        /// Where.
        pod: String,
        /// The engine's error.
        #[source]
        source: crate::topology::Error,
    },
    /// A replica did not apply the new passwords in time.
    #[error("{pod} had not applied the new passwords after {after:?}")]
    NotApplied {
        /// The replica.
        pod: String,
        /// The bound.
        after: Duration,
    },
}

/// Sets the `accounts`' new passwords on `primary`, waits for `replicas` to apply them,
/// and repoints the replicas with `replication` (the new replication password) when it
/// changed.
pub async fn rotate(
    connector: &Connector,
    primary: &Target,
    replicas: &[Target],
    accounts: &[Account],
    desired: &Passwords,
    replication: &ReplicationCredentials,
) -> Result<(), RotationError> {
    let sql = |doing: &str, pod: &str| {
        let (doing, pod) = (doing.to_string(), pod.to_string());
        move |source| RotationError::Sql { doing, pod, source }
    };
    let mut session = connector
        .connect(&primary.key)
        .await
        .map_err(sql("connecting", &primary.pod))?;
    for account in accounts {
        let (statement, shown) = set_password(*account, desired.of(*account));
        session
            .exec_redacted(&statement, &shown)
            .await
            .map_err(sql(&shown, &primary.pod))?;
    }
    drop(session);
    let position = connector
        .own_position(&primary.key)
        .await
        .map_err(sql("reading the position", &primary.pod))?;
    for replica in replicas {
        let applied = connector
            .wait_applied(&replica.key, &position, APPLY_BOUND)
            .await
            .map_err(sql("waiting for the new passwords", &replica.pod))?;
        if !applied {
            return Err(RotationError::NotApplied {
                pod: replica.pod.clone(),
                after: APPLY_BOUND,
            });
        }
    }
    if accounts.contains(&Account::Replication) {
        for replica in replicas {
            connector
                .point_to(&replica.key, &primary.key, Some(replication), false)
                .await
                .map_err(sql("repointing with the new password", &replica.pod))?;
        }
    }
    Ok(())
}

/// Runs a pending rotation and, once done, records the new passwords as in force;
/// publishes what happened. Returns whether the passwords in force changed.
pub async fn run(
    ctx: &Context,
    cluster: &MySQLCluster,
    connector: &Connector,
    primary: &Target,
    replicas: &[Target],
    state: &PasswordState,
    replication: &ReplicationCredentials,
) -> crate::Result<bool> {
    let flavor = Flavor::of_image(&cluster.spec.image);
    let accounts = state.pending(flavor);
    if accounts.is_empty() {
        return Ok(false);
    }
    match rotate(
        connector,
        primary,
        replicas,
        &accounts,
        &state.desired,
        replication,
    )
    .await
    {
        Ok(()) => {
            let ns = cluster.metadata.namespace.clone().unwrap_or_default();
            let secret = provisioning::passwords_in_force(cluster, &state.desired);
            super::controller::apply(ctx, &ns, &secret).await?;
            let replicas: Vec<&str> = replicas.iter().map(|r| r.pod.as_str()).collect();
            publish(
                ctx,
                cluster,
                events::passwords_rotated(&accounts, &primary.pod, &replicas),
            )
            .await;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(cluster = %cluster.metadata.name.as_deref().unwrap_or_default(), error = %e, "password rotation stopped");
            publish(ctx, cluster, events::rotation_failed(&e.to_string())).await;
            Ok(false)
        }
    }
}

/// Connects as korc's account with the desired password, falling back to the one in
/// force while a change travels.
pub fn operator_connector(state: &PasswordState) -> Connector {
    Connector::new(crate::topology::session::Credentials {
        user: OPERATOR_USER.into(),
        password: state.desired.operator.clone(),
    })
    .with_previous_password(state.in_force.operator.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(change: impl Fn(&mut Passwords)) -> PasswordState {
        let in_force = Passwords::generate();
        let mut desired = in_force.clone();
        change(&mut desired);
        PasswordState {
            desired,
            in_force,
            generated: true,
        }
    }

    #[test]
    fn pending_accounts_are_those_whose_password_changed() {
        assert!(state(|_| {}).pending(Flavor::Mariadb).is_empty());
        let s = state(|p| {
            p.replication = "new".into();
            p.operator = "new too".into();
        });
        assert_eq!(
            s.pending(Flavor::Mariadb),
            vec![Account::Operator, Account::Replication]
        );
        let root = state(|p| p.root = "new".into());
        assert_eq!(root.pending(Flavor::Mariadb), vec![Account::Root]);
        assert!(
            root.pending(Flavor::Mysql).is_empty(),
            "MySQL's root holds SYSTEM_USER"
        );
    }
}
