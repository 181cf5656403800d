//! korc: a Kubernetes operator for MySQL/MariaDB replication clusters.
