//! The I/O edge of a cluster's TLS: its CA and server certificate Secrets, issued and
//! renewed as [`certificates`] decides, and every server brought to serve the current
//! certificate (see [`crate::topology::tls`]).

use crate::Result;
use crate::api::MySQLCluster;
use crate::provisioning::certificates::{
    self, Authority, Reissue, SERVER_LIFETIME, ServerCertificate, cluster_server_name, server_names,
};
use crate::provisioning::{ca_secret, common_labels, tls_secret};
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::session::{Connector, Tls};
use crate::topology::tls::{Served, ensure_served};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The Secrets are read again at least this often (a user may replace them).
const REREAD: Duration = Duration::from_secs(60);

/// What korc's connections to a cluster's instances and its replicas use.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The cluster's CA certificate, PEM.
    pub ca: String,
    /// The name every instance's certificate carries.
    pub server_name: String,
    /// When the current server certificate expires: what the servers should serve.
    pub not_after: SystemTime,
}

impl ClusterTls {
    /// TLS for korc's connections: the certificate must verify to the cluster's CA
    /// and carry the cluster's name.
    pub fn connector_tls(&self) -> Tls {
        Tls::Verified {
            ca: self.ca.clone().into_bytes(),
            server_name: Some(self.server_name.clone()),
        }
    }
}

struct Kept {
    tls: ClusterTls,
    server: ServerCertificate,
    ca: Authority,
    read: Instant,
    /// Instances seen serving the current certificate.
    serving: HashSet<InstanceKey>,
}

/// The certificates korc keeps for every cluster, between reconciliations.
#[derive(Default)]
pub struct Certificates {
    kept: Mutex<HashMap<String, Kept>>,
}

impl Certificates {
    /// Drops what is kept for clusters (`namespace/name`) not in `present`.
    pub fn forget_all_but(&self, present: &HashSet<String>) {
        self.lock().retain(|id, _| present.contains(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cluster's TLS, issuing the CA and the server certificate when missing and
    /// renewing the certificate when due (only when `write`: a paused cluster's
    /// Secrets are left alone). `None` when TLS is off or nothing is issued yet.
    pub async fn ensure(
        &self,
        client: &Client,
        cluster: &MySQLCluster,
        id: &str,
        write: bool,
    ) -> Result<Option<ClusterTls>> {
        if !cluster.spec.tls.enabled {
            self.lock().remove(id);
            return Ok(None);
        }
        let ns = cluster.namespace().unwrap_or_default();
        let name = cluster.name_any();
        let names = server_names(&name, &ns, cluster.spec.replicas);
        let now = SystemTime::now();
        if let Some(kept) = self.lock().get(id).filter(|k| k.read.elapsed() < REREAD)
            && certificates::reissue(Some(&kept.server), &kept.ca, &names, now).is_none()
        {
            return Ok(Some(kept.tls.clone()));
        }
        let api = Api::<Secret>::namespaced(client.clone(), &ns);
        let data = |s: Option<Secret>| -> BTreeMap<String, Vec<u8>> {
            s.and_then(|s| s.data)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        };
        let ca_name = ca_secret(cluster);
        let ca = match Authority::from_secret_data(&data(api.get_opt(&ca_name).await?)) {
            Some(ca) => ca,
            None if write => {
                let ca = certificates::issue_authority(&name, now).map_err(invalid)?;
                apply(
                    &api,
                    secret(cluster, ca_name, "Opaque", ca.to_secret_data()),
                )
                .await?;
                ca
            }
            None => return Ok(None),
        };
        let tls_name = tls_secret(cluster);
        let mut server = ServerCertificate::from_secret_data(&data(api.get_opt(&tls_name).await?));
        match certificates::reissue(server.as_ref(), &ca, &names, now) {
            Some(reason) if write => {
                let issued = certificates::issue_server(&ca, &names, now, SERVER_LIFETIME)
                    .map_err(invalid)?;
                let data = issued.to_secret_data();
                apply(&api, secret(cluster, tls_name, "kubernetes.io/tls", data)).await?;
                tracing::info!(cluster = id, ?reason, "issued the servers' certificate");
                server = Some(issued);
            }
            Some(Reissue::Missing) | Some(Reissue::OtherAuthority) => return Ok(None),
            _ => {}
        }
        let Some(server) = server else {
            return Ok(None);
        };
        let facts = certificates::facts(&server.cert).map_err(invalid)?;
        let tls = ClusterTls {
            ca: server.ca.clone(),
            server_name: cluster_server_name(&name, &ns),
            not_after: facts.not_after,
        };
        let mut kept = self.lock();
        let serving = kept
            .remove(id)
            .filter(|k| k.server == server)
            .map(|k| k.serving)
            .unwrap_or_default();
        kept.insert(
            id.to_string(),
            Kept {
                tls: tls.clone(),
                server,
                ca,
                read: Instant::now(),
                serving,
            },
        );
        Ok(Some(tls))
    }

    /// Has every reachable instance not yet seen serving the current certificate
    /// reload its files. One that still serves another (its files not refreshed yet)
    /// is tried again on the next call.
    pub async fn reload(&self, id: &str, connector: &Connector, instances: &[Instance]) {
        let (not_after, serving) = match self.lock().get(id) {
            Some(k) => (k.tls.not_after, k.serving.clone()),
            None => return,
        };
        for inst in instances
            .iter()
            .filter(|i| i.reachable && !serving.contains(&i.key))
        {
            match ensure_served(connector, &inst.key, not_after).await {
                Ok(Served::Current) => {
                    if let Some(k) = self.lock().get_mut(id) {
                        k.serving.insert(inst.key.clone());
                    }
                }
                Ok(Served::Stale) => {
                    tracing::debug!(cluster = id, instance = %inst.key, "certificate files not refreshed yet");
                }
                Err(e) => {
                    tracing::warn!(cluster = id, instance = %inst.key, error = %e, "reloading the certificate");
                }
            }
        }
    }
}

fn invalid(e: certificates::CertificateError) -> crate::Error {
    crate::Error::Invalid(e.to_string())
}

fn secret(
    cluster: &MySQLCluster,
    name: String,
    type_: &str,
    data: BTreeMap<String, String>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cluster.namespace(),
            labels: Some(common_labels(cluster)),
            owner_references: cluster.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some(type_.into()),
        string_data: Some(data),
        ..Default::default()
    }
}

async fn apply(api: &Api<Secret>, secret: Secret) -> Result<()> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(super::controller::FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await?;
    Ok(())
}
