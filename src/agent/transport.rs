//! The agents' connections: plain TCP, or TLS with the cluster's certificate (served
//! from the mounted Secret, read again for every connection so a renewal is served
//! without a restart) verified against the cluster's CA.

use super::{AgentError, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A byte stream to or from an agent.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How a client verifies the agents it calls.
#[derive(Clone)]
pub struct ClientTls {
    /// The cluster's CA certificate, PEM.
    pub ca: Vec<u8>,
    /// The name every agent's certificate carries.
    pub server_name: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: impl std::fmt::Display) -> AgentError {
    AgentError::Tls(e.to_string())
}

/// The server side's TLS from a directory holding `tls.crt` and `tls.key`.
pub(crate) fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use crate::provisioning::certificates::{SERVER_CERT, SERVER_KEY};
    let read =
        |name: &str| std::fs::read(dir.join(name)).map_err(|e| tls_error(format!("{name}: {e}")));
    let certs = CertificateDer::pem_slice_iter(&read(SERVER_CERT)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(tls_error)?;
    let key = PrivateKeyDer::from_pem_slice(&read(SERVER_KEY)?).map_err(tls_error)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_error)?;
    Ok(Arc::new(config))
}

fn client_config(tls: &ClientTls) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&tls.ca) {
        roots.add(cert.map_err(tls_error)?).map_err(tls_error)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// How long opening a connection to an agent may take.
const CONNECT_BOUND: Duration = Duration::from_secs(5);

/// Opens a connection to the agent at `address` (`host:port`).
pub(crate) async fn connect(address: &str, tls: Option<&ClientTls>) -> Result<Box<dyn Stream>> {
    let remote = |detail: String| AgentError::Remote {
        address: address.to_string(),
        detail,
    };
    let tcp = tokio::time::timeout(CONNECT_BOUND, TcpStream::connect(address))
        .await
        .map_err(|_| {
            remote(format!(
                "no connection within {} s",
                CONNECT_BOUND.as_secs()
            ))
        })?
        .map_err(|e| remote(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = ServerName::try_from(tls.server_name.clone()).map_err(tls_error)?;
    let stream = tokio_rustls::TlsConnector::from(client_config(tls)?)
        .connect(name, tcp)
        .await
        .map_err(|e| remote(format!("TLS: {e}")))?;
    Ok(Box::new(stream))
}
