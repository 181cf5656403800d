//! Moving to korc from another tool: `korc import orchestrator` turns an orchestrator
//! configuration into a `MySQLCluster` (or a patch of one) with every setting korc
//! honours, and says, as comments, what it could not carry over and why.

pub mod orchestrator;
