//! The topology engine: probing, failure analysis and recovery of MySQL/MariaDB
//! replication, with no Kubernetes inside. The decisions (analysis, candidate choice,
//! recovery planning) are pure functions of probe results; SQL sits at the edges.

pub mod analysis;
pub mod candidate;
pub mod clone;
pub mod cluster;
pub mod dialect;
pub mod error;
pub mod gtid;
pub mod instance;
pub mod policy;
pub mod probe;
pub mod recovery;
pub mod session;
pub mod tls;

pub use error::{Error, Result};
