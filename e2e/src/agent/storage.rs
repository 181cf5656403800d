//! Dynamic provisioning of persistent volumes as directories.
//!
//! The agent installs a default StorageClass with `WaitForFirstConsumer`
//! binding, so the real kube-scheduler picks a node first and the real
//! persistent-volume controller then waits for this provisioner: for each claim
//! annotated with a selected node of ours, it creates a pre-bound hostPath
//! PersistentVolume backed by a directory under the agent's state directory.
//! All nodes share the machine's disk, so the volume has no node affinity: like
//! network storage, it follows a pod that is rescheduled to another node.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::watch;

use super::Context;
use crate::error::Result;

/// Name of the default StorageClass the agent serves.
pub const STORAGE_CLASS: &str = "standard";
/// The provisioner name in that StorageClass.
pub const PROVISIONER: &str = "e2e.korc.dev/local-path";

const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// Creates the default StorageClass unless it exists.
pub(crate) async fn ensure_storage_class(ctx: &Context) -> Result<()> {
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": { "storageclass.kubernetes.io/is-default-class": "true" },
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": true,
    }))?;
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Provisions volumes for claims and deletes released ones.
pub(crate) async fn provision(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let claims: Api<PersistentVolumeClaim> = Api::all(ctx.client.clone());
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mut claim_events = watcher(claims, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut volume_events = watcher(volumes, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            Some(claim) = claim_events.next() => match claim {
                Ok(claim) => if let Err(e) = provision_claim(&ctx, &claim).await {
                    tracing::warn!(claim = claim.metadata.name, error = %e, "provisioning volume");
                },
                Err(e) => tracing::warn!(error = %e, "claim watch"),
            },
            Some(volume) = volume_events.next() => match volume {
                Ok(volume) => if let Err(e) = reclaim(&ctx, &volume).await {
                    tracing::warn!(volume = volume.metadata.name, error = %e, "deleting volume");
                },
                Err(e) => tracing::warn!(error = %e, "volume watch"),
            },
        }
    }
}

async fn provision_claim(ctx: &Context, claim: &PersistentVolumeClaim) -> Result<()> {
    let Some(spec) = &claim.spec else {
        return Ok(());
    };
    let ours = spec.storage_class_name.as_deref() == Some(STORAGE_CLASS);
    let selected = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SELECTED_NODE))
        .is_some_and(|node| ctx.node(node).is_some());
    let bound = spec.volume_name.as_deref().is_some_and(|v| !v.is_empty());
    if !ours || !selected || bound || claim.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let (Some(uid), Some(name), Some(ns)) = (
        claim.metadata.uid.as_deref(),
        claim.metadata.name.as_deref(),
        claim.metadata.namespace.as_deref(),
    ) else {
        return Ok(());
    };
    let pv_name = format!("pvc-{uid}");
    let dir = ctx.config.state_dir.join("volumes").join(&pv_name);
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or_else(|| "1Gi".to_owned(), |q| q.0.clone());
    let volume: PersistentVolume = serde_json::from_value(json!({
        "metadata": {
            "name": pv_name,
            "annotations": { PROVISIONED_BY: PROVISIONER },
        },
        "spec": {
            "capacity": { "storage": size },
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
            "hostPath": { "path": dir, "type": "DirectoryOrCreate" },
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": ns, "name": name, "uid": uid,
            },
        },
    }))?;
    std::fs::create_dir_all(&dir).map_err(|source| crate::Error::Io {
        what: format!("creating volume directory {}", dir.display()),
        source,
    })?;
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match volumes.create(&PostParams::default(), &volume).await {
        Ok(_) => {
            tracing::info!(
                claim = name,
                namespace = ns,
                volume = pv_name,
                "provisioned volume"
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a released volume of ours together with its directory.
async fn reclaim(ctx: &Context, volume: &PersistentVolume) -> Result<()> {
    let ours = volume
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .is_some_and(|p| p == PROVISIONER);
    let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    if !(ours && released && delete) || volume.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let Some(name) = volume.metadata.name.as_deref() else {
        return Ok(());
    };
    let dir = ctx.config.state_dir.join("volumes").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match volumes.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
