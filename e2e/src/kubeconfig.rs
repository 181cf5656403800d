//! Kubeconfig files for the admin, the control-plane components and pods.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{IoContext, Result};

/// Writes a kubeconfig (JSON is valid YAML for every client) that reaches
/// `server`, trusts `ca_cert` and authenticates with a bearer token, given
/// inline or as a file that may be refreshed.
pub fn write(path: &Path, server: &str, ca_cert: &Path, credential: &Credential) -> Result<()> {
    let user = match credential {
        Credential::Token(token) => serde_json::json!({ "token": token }),
        Credential::TokenFile(file) => serde_json::json!({ "tokenFile": file }),
    };
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "korc-local", "cluster": {
            "server": server,
            "certificate-authority": ca_cert,
        }}],
        "users": [{ "name": "korc-local", "user": user }],
        "contexts": [{ "name": "korc-local", "context": {
            "cluster": "korc-local", "user": "korc-local", "namespace": "default",
        }}],
        "current-context": "korc-local",
    });
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text).context(|| format!("writing kubeconfig {}", path.display()))
}

/// How a kubeconfig user authenticates.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A static token (the admin's, from the API server's token file).
    Token(String),
    /// A file holding a service-account token.
    TokenFile(std::path::PathBuf),
}

/// A fresh client for the kubeconfig at `path`.
///
/// Clients are cheap and tied to the tokio runtime that creates them, so every
/// test (each with its own runtime) should make its own.
pub async fn client(path: &Path) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
