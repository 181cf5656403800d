//! The operator: reconciles `MySQLCluster` resources.

pub mod status;
