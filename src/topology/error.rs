//! The engine's errors: what can go wrong talking to an instance. Nothing here knows
//! of Kubernetes; `crate::Error` wraps these for the operator and the command line.

use super::instance::InstanceKey;
use std::time::Duration;

/// Why an operation on an instance failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A connection to an instance could not be opened.
    #[error("cannot connect to {instance}: {source}")]
    Connect {
        /// The instance.
        instance: InstanceKey,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// An instance did not answer in time.
    #[error("{instance} did not answer within {after:?} while {doing}")]
    Timeout {
        /// The instance.
        instance: InstanceKey,
        /// What korc was doing.
        doing: String,
        /// The bound that expired.
        after: Duration,
    },
    /// A statement failed.
    #[error("`{statement}` failed on {instance}: {source}")]
    Sql {
        /// The instance.
        instance: InstanceKey,
        /// The statement (never with a password in it).
        statement: String,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// Replication over TLS was asked for and the replica's server has no CA file.
    #[error("{instance} has no CA file (ssl_ca) to verify its source with")]
    NoCa {
        /// The instance.
        instance: InstanceKey,
    },
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
