//! Provisioning: the Kubernetes objects a `MySQLCluster` needs, built as pure data.
//!
//! The controller applies them with server-side apply; everything here is a function
//! of the cluster and a few operator settings, so it is tested without an API server.

pub mod certificates;
mod config;
mod credentials;
mod objects;

pub use config::{Flavor, TLS_DIR, my_cnf, protected_settings_rule, tls_path, validate};
pub use credentials::{
    Account, MONITOR_USER, OPERATOR_USER, Passwords, REPLICATION_USER, init_sql, require_tls_sql,
    set_password,
};
pub use objects::{CLIENT_LABEL, DATADIR, Desired, build, passwords_in_force};

use crate::api::MySQLCluster;
use std::collections::BTreeMap;

/// Label every object and pod of a cluster carries with the cluster's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// The role label korc keeps on each pod: `primary` or `replica` (absent when unknown
/// or excluded, for example for a replica with errant transactions).
pub const ROLE_LABEL: &str = "korc.dev/role";
/// The StatefulSet controller's pod ordinal label.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Port of every instance.
pub const MYSQL_PORT: i32 = 3306;

/// How replicas name their source, and so how korc identifies instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SourceAddress {
    /// The pod's stable DNS name through the headless Service (production).
    #[default]
    PodDns,
    /// The pod's IP (environments without cluster DNS, such as korc's local control plane).
    PodIp,
}

/// Labels that select a cluster's pods.
pub fn selector_labels(cluster: &MySQLCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "mysql".to_string()),
        (
            INSTANCE_LABEL.to_string(),
            cluster.metadata.name.clone().unwrap_or_default(),
        ),
    ])
}

/// Labels of every object korc creates for a cluster.
pub fn common_labels(cluster: &MySQLCluster) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert("app.kubernetes.io/managed-by".into(), "korc".into());
    labels.insert("app.kubernetes.io/component".into(), "database".into());
    labels
}

/// Name of the headless Service, which is also the StatefulSet's and the pods' prefix.
pub fn headless_service(cluster: &MySQLCluster) -> String {
    cluster.metadata.name.clone().unwrap_or_default()
}

/// Name of the Secret with the cluster's CA.
pub fn ca_secret(cluster: &MySQLCluster) -> String {
    format!("{}-ca", headless_service(cluster))
}

/// Name of the Secret with the servers' certificate, its key and the CA.
pub fn tls_secret(cluster: &MySQLCluster) -> String {
    format!("{}-tls", headless_service(cluster))
}

/// Name of the Secret with the passwords.
pub fn credentials_secret(cluster: &MySQLCluster) -> String {
    cluster
        .spec
        .credentials_secret
        .clone()
        .unwrap_or_else(|| format!("{}-credentials", headless_service(cluster)))
}

/// Name of the Secret holding the passwords korc's accounts have on the instances:
/// korc writes it once a password change has reached every instance, so a rotation
/// cut short resumes with the passwords still in force.
pub fn in_force_secret(cluster: &MySQLCluster) -> String {
    format!("{}-credentials-in-force", headless_service(cluster))
}

/// Name of the PersistentVolumeClaim of instance `ordinal` (the StatefulSet's `data`
/// claim template).
pub fn data_claim(cluster: &MySQLCluster, ordinal: i32) -> String {
    format!("data-{}-{ordinal}", headless_service(cluster))
}
