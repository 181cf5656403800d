//! korc: a Kubernetes operator for MySQL/MariaDB replication clusters.
#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod cli;
pub mod error;
pub mod import;
pub mod operator;
pub mod plugin;
pub mod provisioning;
pub mod topology;

pub use error::{Error, Result};
