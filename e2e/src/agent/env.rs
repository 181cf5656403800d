//! A container's environment, resolved the way the kubelet does it.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, EnvVarSource, Pod};

use super::sources::Sources;
use crate::error::{Error, Result};

/// Pod facts that `fieldRef`s and downward-API volumes read.
#[derive(Debug, Clone)]
pub(crate) struct PodFacts {
    pub pod_ip: String,
    pub host_ip: String,
}

/// The value of a downward-API `fieldPath` such as `metadata.labels['app']`.
pub(crate) fn field(pod: &Pod, facts: &PodFacts, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str| -> Option<String> {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(key.to_owned())
    };
    if let Some(key) = keyed("metadata.labels") {
        return meta.labels.as_ref()?.get(&key).cloned();
    }
    if let Some(key) = keyed("metadata.annotations") {
        return meta.annotations.as_ref()?.get(&key).cloned();
    }
    let pairs = |map: &Option<std::collections::BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(pairs(&meta.labels)),
        "metadata.annotations" => Some(pairs(&meta.annotations)),
        "spec.nodeName" => spec?.node_name.clone(),
        "spec.serviceAccountName" => spec?.service_account_name.clone(),
        "status.podIP" | "status.podIPs" => Some(facts.pod_ip.clone()),
        "status.hostIP" | "status.hostIPs" => Some(facts.host_ip.clone()),
        _ => None,
    }
}

/// Resolves `envFrom` then `env` (later entries win), expanding `$(VAR)` references.
pub(crate) async fn resolve(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    sources: &mut Sources,
) -> Result<Vec<(String, String)>> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(cm) = &from.config_map_ref {
            optional(
                sources.config_map(&cm.name).await?,
                cm.optional,
                "ConfigMap",
                &cm.name,
            )?
        } else if let Some(secret) = &from.secret_ref {
            optional(
                sources.secret(&secret.name).await?,
                secret.optional,
                "Secret",
                &secret.name,
            )?
        } else {
            HashMap::new()
        };
        let mut entries: Vec<_> = data.into_iter().collect();
        entries.sort();
        for (k, v) in entries {
            set(
                &mut vars,
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            Some(source) => match value_from(pod, container, facts, source, sources).await? {
                Some(v) => v,
                None => continue,
            },
            None => {
                let known: HashMap<&str, &str> =
                    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                expand(var.value.as_deref().unwrap_or_default(), &known)
            }
        };
        set(&mut vars, var.name.clone(), value);
    }
    Ok(vars)
}

fn set(vars: &mut Vec<(String, String)>, name: String, value: String) {
    vars.retain(|(k, _)| *k != name);
    vars.push((name, value));
}

fn optional(
    data: Option<HashMap<String, Vec<u8>>>,
    optional: Option<bool>,
    kind: &str,
    name: &str,
) -> Result<HashMap<String, Vec<u8>>> {
    match data {
        Some(d) => Ok(d),
        None if optional == Some(true) => Ok(HashMap::new()),
        None => Err(Error::PodSpec(format!("{kind} \"{name}\" not found"))),
    }
}

async fn value_from(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    source: &EnvVarSource,
    sources: &mut Sources,
) -> Result<Option<String>> {
    if let Some(f) = &source.field_ref {
        return Ok(Some(field(pod, facts, &f.field_path).unwrap_or_default()));
    }
    if let Some(r) = &source.resource_field_ref {
        // No cgroups here: report the declared value, else the node's capacity.
        let resources = container.resources.as_ref();
        let (kind, resource) = r
            .resource
            .split_once('.')
            .unwrap_or(("limits", &r.resource));
        let declared = match kind {
            "requests" => resources.and_then(|res| res.requests.as_ref()),
            _ => resources.and_then(|res| res.limits.as_ref()),
        }
        .and_then(|m| m.get(resource))
        .map(|q| q.0.clone());
        let fallback = if resource == "cpu" {
            "8"
        } else {
            "17179869184"
        };
        return Ok(Some(declared.unwrap_or_else(|| fallback.to_owned())));
    }
    if let Some(key) = &source.config_map_key_ref {
        let data = sources.config_map(&key.name).await?;
        return keyed(data, &key.key, key.optional, "ConfigMap", &key.name);
    }
    if let Some(key) = &source.secret_key_ref {
        let data = sources.secret(&key.name).await?;
        return keyed(data, &key.key, key.optional, "Secret", &key.name);
    }
    Ok(None)
}

fn keyed(
    data: Option<HashMap<String, Vec<u8>>>,
    key: &str,
    optional: Option<bool>,
    kind: &str,
    name: &str,
) -> Result<Option<String>> {
    match data.as_ref().and_then(|d| d.get(key)) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        None if optional == Some(true) => Ok(None),
        None => Err(Error::PodSpec(format!(
            "couldn't find key {key} in {kind} {name}"
        ))),
    }
}

/// Expands `$(NAME)` from `vars`; `$$(` stays a literal `$(`; unknown names stay as written.
pub(crate) fn expand(input: &str, vars: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_references_like_the_kubelet() {
        let vars = HashMap::from([("A", "1"), ("B", "two")]);
        assert_eq!(expand("x$(A)y$(B)", &vars), "x1ytwo");
        assert_eq!(expand("$(C)", &vars), "$(C)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5", &vars), "cost $5");
        assert_eq!(expand("${A}", &vars), "${A}");
    }
}
