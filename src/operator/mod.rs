//! The operator: reconciles `MySQLCluster` resources.

pub mod bootstrap;
pub mod status;
