//! korc: a Kubernetes operator for MySQL/MariaDB replication clusters.
#![warn(missing_docs)]

pub mod topology;
