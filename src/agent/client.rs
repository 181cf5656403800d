//! Calling an agent: korc starts and follows copies on the recipient's agent, the
//! recipient's agent pulls the backup from the donor's.

use super::protocol::{self, CloneRequest, CopyReport};
use super::transport::{self, ClientTls};
use super::{AgentError, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// A client of korc's agents, with the replication account's credentials.
#[derive(Clone)]
pub struct AgentClient {
    authorization: String,
    tls: Option<ClientTls>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client authenticating as `user`, over TLS verified with `tls` when given.
    pub fn new(user: &str, password: &str, tls: Option<ClientTls>) -> Self {
        Self {
            authorization: protocol::basic_authorization(user, password),
            tls,
        }
    }

    /// Sends a request to the agent at `address` (`host:port`); the response's body
    /// streams.
    pub async fn send(
        &self,
        address: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>> {
        let remote = |detail: String| AgentError::Remote {
            address: address.to_string(),
            detail,
        };
        let stream = transport::connect(address, self.tls.as_ref()).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| remote(e.to_string()))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, address)
            .header(hyper::header::AUTHORIZATION, &self.authorization);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| remote(e.to_string()))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| remote(e.to_string()))
    }

    /// Sends a request and reads the whole answer, which must be a success.
    async fn call(
        &self,
        address: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes> {
        let response = self.send(address, method, path, body).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| AgentError::Remote {
                address: address.to_string(),
                detail: e.to_string(),
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(refused(address, status, &body));
        }
        Ok(body)
    }

    /// Starts a copy on the recipient's agent at `recipient`.
    pub async fn start_copy(&self, recipient: &str, request: &CloneRequest) -> Result<()> {
        let body = serde_json::to_vec(request).expect("a request serializes");
        self.call(recipient, Method::POST, "/clone", Some(body))
            .await
            .map(|_| ())
    }

    /// The copy as the recipient's agent at `recipient` reports it.
    pub async fn copy_report(&self, recipient: &str) -> Result<CopyReport> {
        let body = self.call(recipient, Method::GET, "/clone", None).await?;
        serde_json::from_slice(&body).map_err(|e| AgentError::Remote {
            address: recipient.to_string(),
            detail: format!("unreadable report: {e}"),
        })
    }
}

/// The error of an answer that is not a success.
pub(crate) fn refused(address: &str, status: StatusCode, body: &[u8]) -> AgentError {
    AgentError::Refused {
        address: address.to_string(),
        status: status.as_u16(),
        detail: String::from_utf8_lossy(body).trim().to_string(),
    }
}
