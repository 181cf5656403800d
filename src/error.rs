//! korc's error type.

use crate::topology::instance::InstanceKey;
use std::time::Duration;

/// Everything that can go wrong in korc.
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
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A command-line argument or input document is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document could not be read or written.
    #[error("{context}: {source}")]
    Json {
        /// Which document.
        context: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// korc's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
