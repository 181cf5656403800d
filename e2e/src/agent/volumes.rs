//! A pod's volumes as per-pod directories, and the mapping from a container's
//! mount paths to those directories.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Volume,
};
use kube::Api;

use super::env::{self, PodFacts};
use super::sources::Sources;
use crate::error::{Error, IoContext, Result};

/// Materialises every volume of `pod` under `pod_dir/volumes/` (PVCs resolve
/// to their persistent volume's directory) and returns volume name → directory.
pub(crate) async fn materialise(
    client: &kube::Client,
    pod: &Pod,
    facts: &PodFacts,
    pod_dir: &Path,
    sources: &mut Sources,
) -> Result<HashMap<String, PathBuf>> {
    let mut dirs = HashMap::new();
    let Some(spec) = &pod.spec else {
        return Ok(dirs);
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    for volume in spec.volumes.iter().flatten() {
        let dir = pod_dir.join("volumes").join(&volume.name);
        let path = materialise_one(client, pod, facts, namespace, volume, &dir, sources).await?;
        dirs.insert(volume.name.clone(), path);
    }
    Ok(dirs)
}

async fn materialise_one(
    client: &kube::Client,
    pod: &Pod,
    facts: &PodFacts,
    namespace: &str,
    volume: &Volume,
    dir: &Path,
    sources: &mut Sources,
) -> Result<PathBuf> {
    if let Some(claim) = &volume.persistent_volume_claim {
        return claim_dir(client, namespace, &claim.claim_name).await;
    }
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        if host.type_.as_deref() == Some("DirectoryOrCreate") {
            create_dir(&path)?;
        }
        return Ok(path);
    }
    let fresh = !dir.exists();
    create_dir(dir)?;
    if volume.empty_dir.is_some() {
        // Survives container restarts; pods get a new directory.
        return Ok(dir.to_path_buf());
    }
    if !fresh {
        // Already materialised for this pod: keep what containers may have written.
        return Ok(dir.to_path_buf());
    }
    if let Some(cm) = &volume.config_map {
        let data = sources.config_map(&cm.name).await?;
        write_keyed(
            dir,
            data,
            cm.items.as_deref(),
            cm.default_mode,
            cm.optional,
            "ConfigMap",
            &cm.name,
        )?;
    } else if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let data = sources.secret(&name).await?;
        write_keyed(
            dir,
            data,
            secret.items.as_deref(),
            secret.default_mode,
            secret.optional,
            "Secret",
            &name,
        )?;
    } else if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let data = sources.config_map(&cm.name).await?;
                write_keyed(
                    dir,
                    data,
                    cm.items.as_deref(),
                    projected.default_mode,
                    cm.optional,
                    "ConfigMap",
                    &cm.name,
                )?;
            }
            if let Some(secret) = &source.secret {
                let data = sources.secret(&secret.name).await?;
                write_keyed(
                    dir,
                    data,
                    secret.items.as_deref(),
                    projected.default_mode,
                    secret.optional,
                    "Secret",
                    &secret.name,
                )?;
            }
            if let Some(token) = &source.service_account_token {
                let account = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_else(|| "default".to_owned());
                let value = sources
                    .token(
                        &account,
                        (
                            pod.metadata.name.as_deref().unwrap_or_default(),
                            pod.metadata.uid.as_deref().unwrap_or_default(),
                        ),
                        token.audience.as_deref(),
                        token.expiration_seconds.unwrap_or(3607),
                    )
                    .await?;
                write_file(
                    &dir.join(&token.path),
                    value.as_bytes(),
                    projected.default_mode,
                )?;
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    if let Some(f) = &item.field_ref {
                        let value = env::field(pod, facts, &f.field_path).unwrap_or_default();
                        write_file(
                            &dir.join(&item.path),
                            value.as_bytes(),
                            item.mode.or(projected.default_mode),
                        )?;
                    }
                }
            }
        }
    } else if let Some(downward) = &volume.downward_api {
        for item in downward.items.iter().flatten() {
            if let Some(f) = &item.field_ref {
                let value = env::field(pod, facts, &f.field_path).unwrap_or_default();
                write_file(
                    &dir.join(&item.path),
                    value.as_bytes(),
                    item.mode.or(downward.default_mode),
                )?;
            }
        }
    } else {
        return Err(Error::PodSpec(format!(
            "volume {} has a type the local node agent does not support",
            volume.name
        )));
    }
    Ok(dir.to_path_buf())
}

/// Brings the files of the pod's Secret volumes up to date with their Secrets, as the
/// kubelet's periodic sync does: a changed key is replaced atomically, so a reader
/// sees the old file or the new one (a renewed certificate reaches a running server).
pub(crate) async fn sync_secrets(
    pod: &Pod,
    dirs: &HashMap<String, PathBuf>,
    sources: &mut Sources,
) -> Result<()> {
    let Some(spec) = &pod.spec else {
        return Ok(());
    };
    for volume in spec.volumes.iter().flatten() {
        let (Some(secret), Some(dir)) = (&volume.secret, dirs.get(&volume.name)) else {
            continue;
        };
        let name = secret.secret_name.clone().unwrap_or_default();
        let Some(data) = sources.secret(&name).await? else {
            continue; // deleted: the kubelet keeps the last files too
        };
        write_keyed(
            dir,
            Some(data),
            secret.items.as_deref(),
            secret.default_mode,
            secret.optional,
            "Secret",
            &name,
        )?;
    }
    Ok(())
}

/// The directory of the persistent volume bound to claim `name`.
async fn claim_dir(client: &kube::Client, namespace: &str, name: &str) -> Result<PathBuf> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let claim = claims
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::PodSpec(format!("persistentvolumeclaim \"{name}\" not found")))?;
    let volume_name = claim
        .spec
        .and_then(|s| s.volume_name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::PodSpec(format!("persistentvolumeclaim \"{name}\" is not bound")))?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let spec = volumes.get(&volume_name).await?.spec.unwrap_or_default();
    let path = spec
        .host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .ok_or_else(|| {
            Error::PodSpec(format!(
                "persistent volume {volume_name} is neither hostPath nor local"
            ))
        })?;
    let path = PathBuf::from(path);
    create_dir(&path)?;
    Ok(path)
}

fn write_keyed(
    dir: &Path,
    data: Option<HashMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: Option<bool>,
    kind: &str,
    name: &str,
) -> Result<()> {
    let Some(data) = data else {
        return if optional == Some(true) {
            Ok(())
        } else {
            Err(Error::PodSpec(format!("{kind} \"{name}\" not found")))
        };
    };
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let value = data.get(&item.key).ok_or_else(|| {
                    Error::PodSpec(format!("couldn't find key {} in {kind} {name}", item.key))
                })?;
                write_file(&dir.join(&item.path), value, item.mode.or(default_mode))?;
            }
        }
        _ => {
            for (key, value) in &data {
                write_file(&dir.join(key), value, default_mode)?;
            }
        }
    }
    Ok(())
}

/// Writes `contents` to `path` unless it holds them already: to a temporary file
/// renamed over `path`, so a reader never sees a half-written file.
fn write_file(path: &Path, contents: &[u8], mode: Option<i32>) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    // Kubernetes' default is 0644; scripts need an explicit defaultMode such as 0755.
    let mode = u32::try_from(mode.unwrap_or(0o644)).unwrap_or(0o644);
    let unchanged = std::fs::read(path).is_ok_and(|old| old == contents)
        && std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    if unchanged {
        return Ok(());
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    std::fs::write(&tmp, contents).context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .context(|| format!("setting mode of {}", tmp.display()))?;
    std::fs::rename(&tmp, path).context(|| format!("replacing {}", path.display()))
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).context(|| format!("creating {}", path.display()))
}

/// Where a container's mount paths live on this machine.
///
/// There is no mount namespace, so a path the container would see (e.g.
/// `/var/lib/mysql/binlog`) is rewritten to the volume's directory wherever it
/// appears in the container's command, args, environment and config files.
#[derive(Debug, Clone, Default)]
pub(crate) struct MountTable {
    /// (mount path, host path), longest mount path first.
    entries: Vec<(String, PathBuf)>,
}

impl MountTable {
    /// The mounts of `container` given the pod's volume directories.
    pub fn for_container(
        container: &Container,
        volumes: &HashMap<String, PathBuf>,
    ) -> Result<Self> {
        let mut entries = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let base = volumes.get(&mount.name).ok_or_else(|| {
                Error::PodSpec(format!(
                    "volume mount {} refers to an unknown volume",
                    mount.name
                ))
            })?;
            let host = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    let path = base.join(sub);
                    if !path.exists() {
                        create_dir(&path)?;
                    }
                    path
                }
                None => base.clone(),
            };
            entries.push((mount.mount_path.trim_end_matches('/').to_owned(), host));
        }
        entries.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        Ok(Self { entries })
    }

    /// Mount path → host path pairs.
    pub fn entries(&self) -> &[(String, PathBuf)] {
        &self.entries
    }

    /// The host path behind a container path, if it is inside a mount.
    pub fn host_path(&self, container_path: &str) -> Option<PathBuf> {
        self.entries.iter().find_map(|(mount, host)| {
            let rest = container_path.strip_prefix(mount.as_str())?;
            if rest.is_empty() {
                Some(host.clone())
            } else {
                rest.strip_prefix('/').map(|r| host.join(r))
            }
        })
    }

    /// Rewrites every occurrence of a mount path that starts a path (at the
    /// start or after a separator such as space, `=`, `:`, or a quote) and ends
    /// at a path boundary.
    pub fn rewrite(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        let bytes = text.as_bytes();
        'scan: while i < text.len() {
            let starts_path = i == 0
                || matches!(
                    bytes[i - 1],
                    b' ' | b'=' | b':' | b'\'' | b'"' | b'\t' | b'\n' | b'(' | b',' | b';'
                );
            if starts_path && bytes[i] == b'/' {
                for (mount, host) in &self.entries {
                    if text[i..].starts_with(mount.as_str()) {
                        let end = i + mount.len();
                        let boundary = end == text.len()
                            || matches!(
                                bytes[end],
                                b'/' | b' '
                                    | b'\''
                                    | b'"'
                                    | b'\t'
                                    | b'\n'
                                    | b')'
                                    | b','
                                    | b';'
                                    | b':'
                            );
                        if boundary {
                            out.push_str(&host.display().to_string());
                            i = end;
                            continue 'scan;
                        }
                    }
                }
            }
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MountTable {
        let mut t = MountTable {
            entries: vec![
                ("/var/lib/mysql".to_owned(), PathBuf::from("/s/pv1")),
                ("/etc/mysql/conf.d".to_owned(), PathBuf::from("/s/cm")),
                ("/etc".to_owned(), PathBuf::from("/s/etc")),
            ],
        };
        t.entries.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        t
    }

    #[test]
    fn rewrites_mount_paths_at_path_boundaries_only() {
        let t = table();
        assert_eq!(
            t.rewrite("--log-bin=/var/lib/mysql/bin"),
            "--log-bin=/s/pv1/bin"
        );
        assert_eq!(
            t.rewrite("cat /etc/mysql/conf.d/my.cnf"),
            "cat /s/cm/my.cnf"
        );
        assert_eq!(t.rewrite("/etcetera /etc"), "/etcetera /s/etc");
        assert_eq!(t.rewrite("/var/lib/mysqlx"), "/var/lib/mysqlx");
        assert_eq!(t.rewrite("http://x/etc"), "http://x/etc");
        assert_eq!(t.host_path("/var/lib/mysql"), Some(PathBuf::from("/s/pv1")));
        assert_eq!(
            t.host_path("/etc/hosts"),
            Some(PathBuf::from("/s/etc/hosts"))
        );
        assert_eq!(t.host_path("/opt"), None);
    }
}
