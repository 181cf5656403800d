//! ConfigMaps, Secrets and ServiceAccount tokens a pod refers to, fetched once
//! per container start.

use std::collections::HashMap;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::error::{Error, Result};

/// Fetches (and caches) objects of one namespace.
pub(crate) struct Sources {
    client: kube::Client,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Sources {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// The ConfigMap's data (binary data included), `None` if it does not exist.
    pub async fn config_map(&mut self, name: &str) -> Result<Option<HashMap<String, Vec<u8>>>> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let cm = api.get_opt(name).await?;
            self.config_maps.insert(name.to_owned(), cm);
        }
        Ok(self.config_maps[name].as_ref().map(|cm| {
            let mut data: HashMap<String, Vec<u8>> = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect();
            data.extend(
                cm.binary_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone())),
            );
            data
        }))
    }

    /// The Secret's data, `None` if it does not exist.
    pub async fn secret(&mut self, name: &str) -> Result<Option<HashMap<String, Vec<u8>>>> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let secret = api.get_opt(name).await?;
            self.secrets.insert(name.to_owned(), secret);
        }
        Ok(self.secrets[name].as_ref().map(|s| {
            let mut data: HashMap<String, Vec<u8>> = s
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            data.extend(
                s.string_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
            );
            data
        }))
    }

    /// A token for `service_account`, bound to the pod, from the TokenRequest API.
    pub async fn token(
        &self,
        service_account: &str,
        pod: (&str, &str),
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.namespace);
        let request: TokenRequest = serde_json::from_value(json!({
            "spec": {
                "audiences": audience.map(|a| vec![a]).unwrap_or_default(),
                "expirationSeconds": expiration_seconds,
                "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": pod.0, "uid": pod.1 },
            }
        }))?;
        let response = api
            .create_token_request(service_account, &PostParams::default(), &request)
            .await?;
        response.status.and_then(|s| s.token).ok_or_else(|| {
            Error::PodSpec(format!(
                "no token issued for service account {service_account}"
            ))
        })
    }
}
