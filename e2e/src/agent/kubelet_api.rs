//! The kubelet's HTTPS API on each node, as much of it as `kubectl logs` needs.
//!
//! The API server serves `kubectl logs` by asking the pod's node for
//! `GET /containerLogs/{namespace}/{pod}/{container}` on port 10250 (the node's
//! `daemonEndpoints`), over TLS: it checks the node's serving certificate against the
//! control plane's CA and presents its own client certificate, which the node checks
//! against the same CA. `follow`, `previous`, `tailLines` and `limitBytes` are
//! honoured; `timestamps` and `sinceSeconds`/`sinceTime` are not (the log files
//! keep no time per line).

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use super::logs::{self, Run};
use super::{NodeInfo, container_log_path};
use crate::certs::NodeCert;
use crate::error::{Error, IoContext, Result};

/// The kubelet's port.
pub const KUBELET_PORT: u16 = 10250;
/// How often a followed log is read for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// The longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A request for a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRequest {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
}

/// A request refused, with the status and the message the kubelet would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Parses a request line (`GET /containerLogs/ns/pod/c?follow=true HTTP/1.1`).
pub(crate) fn parse_request_line(line: &str) -> std::result::Result<LogRequest, Refusal> {
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return Err(refuse(405, format!("method {method} is not allowed")));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["containerLogs", namespace, pod, container] = parts[..] else {
        return Err(refuse(
            404,
            format!("{path}: this node serves only /containerLogs"),
        ));
    };
    if [namespace, pod, container]
        .iter()
        .any(|p| p.is_empty() || *p == ".." || *p == ".")
    {
        return Err(refuse(400, format!("{path}: not a container")));
    }
    let mut request = LogRequest {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        container: container.to_owned(),
        follow: false,
        previous: false,
        tail_lines: None,
        limit_bytes: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| refuse(400, format!("{name}={value}: not a number")))
        };
        match name {
            "follow" => request.follow = value == "true",
            "previous" => request.previous = value == "true",
            "tailLines" => request.tail_lines = Some(number()?),
            "limitBytes" => request.limit_bytes = Some(number()?),
            _ => {}
        }
    }
    Ok(request)
}

/// The TLS settings of one node: its serving certificate, and client certificates
/// must be signed by the CA.
fn tls_config(cert: &NodeCert, client_ca: &Path) -> Result<Arc<ServerConfig>> {
    let tls = |e: String| Error::Io {
        what: format!("kubelet TLS of {}", cert.node),
        source: std::io::Error::other(e),
    };
    let chain = CertificateDer::pem_file_iter(&cert.cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| tls(format!("{}: {e}", cert.cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&cert.key)
        .map_err(|e| tls(format!("{}: {e}", cert.key.display())))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(client_ca)
        .map_err(|e| tls(format!("{}: {e}", client_ca.display())))?
    {
        roots
            .add(ca.map_err(|e| tls(e.to_string()))?)
            .map_err(|e| tls(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(e.to_string()))?;
    // HTTP/1.1 only: the API server then streams a followed log as chunks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Listens on the node's address, port 10250, until `shutdown`.
pub(crate) async fn bind(
    node: &NodeInfo,
    cert: &NodeCert,
    client_ca: &Path,
) -> Result<(TcpListener, TlsAcceptor)> {
    let config = tls_config(cert, client_ca)?;
    let addr = SocketAddr::from((node.ip, KUBELET_PORT));
    let listener = TcpListener::bind(addr)
        .await
        .context(|| format!("listening on {addr} (kubelet API of {})", node.name))?;
    Ok((listener, TlsAcceptor::from(config)))
}

/// Serves log requests on `listener` until `shutdown`; logs are read under `state_dir`.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API accept");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let state_dir = state_dir.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match acceptor.accept(stream).await {
                Ok(tls) => handle(tls, &state_dir, shutdown).await,
                Err(e) => tracing::info!(%peer, error = %e, "kubelet API: TLS handshake refused"),
            }
        });
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    state_dir: &Path,
    shutdown: watch::Receiver<bool>,
) {
    let head = match read_head(&mut stream).await {
        Some(head) => head,
        None => return,
    };
    let line = head.lines().next().unwrap_or_default();
    // The reading half tells when a follower hangs up.
    let (mut reader, mut writer) = tokio::io::split(stream);
    let outcome = match parse_request_line(line) {
        Ok(request) => respond(&mut writer, &mut reader, state_dir, &request, shutdown).await,
        Err(refusal) => send_refusal(&mut writer, &refusal).await,
    };
    if let Err(e) = outcome {
        tracing::debug!(error = %e, "kubelet API: client went away");
    }
    let _ = writer.shutdown().await;
}

/// The request head, up to the blank line; `None` if the client sent none.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn send_refusal<S: AsyncWrite + Unpin>(stream: &mut S, r: &Refusal) -> std::io::Result<()> {
    let reason = match r.status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let body = format!("{}\n", r.message);
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

/// Reads `range` of the file (to its end when `range.end` is `None`).
fn read_range(path: &Path, start: u64, end: Option<u64>) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    match end {
        Some(end) => {
            file.take(end.saturating_sub(start))
                .read_to_end(&mut bytes)?;
        }
        None => {
            file.read_to_end(&mut bytes)?;
        }
    }
    Ok(bytes)
}

async fn respond<S: AsyncWrite + Unpin, R: AsyncRead + Unpin>(
    stream: &mut S,
    client: &mut R,
    state_dir: &Path,
    request: &LogRequest,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let log = container_log_path(
        state_dir,
        &request.namespace,
        &request.pod,
        &request.container,
    );
    let marks = logs::read_marks(&log);
    let Some(run) = logs::select(&marks, request.previous) else {
        let message = if request.previous {
            format!(
                "previous terminated container \"{}\" in pod \"{}\" not found",
                request.container, request.pod
            )
        } else {
            format!(
                "container \"{}\" in pod \"{}\" is waiting to start",
                request.container, request.pod
            )
        };
        return send_refusal(stream, &refuse(400, message)).await;
    };
    let bytes = read_range(&log, run.start, run.end).unwrap_or_default();
    let Range { start, end } = logs::window(&bytes, request.tail_lines, request.limit_bytes);
    let follow = request.follow && !request.previous && run.end.is_none();
    if !follow {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            end - start
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&bytes[start..end]).await?;
        return stream.flush().await;
    }
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await?;
    send_chunk(stream, &bytes[start..]).await?;
    // Follow until this run ends (its process exited, or the container restarted).
    let mut sent = run.start + bytes.len() as u64;
    loop {
        let mut buf = [0u8; 64];
        tokio::select! {
            _ = shutdown.changed() => break,
            // The client sends nothing more: a read ends only when it hangs up.
            _ = client.read(&mut buf) => return Ok(()),
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        let now: Option<Run> = logs::select(&logs::read_marks(&log), false);
        let ended = match &now {
            Some(r) if r.start == run.start => r.end,
            // A newer run began where this one ended.
            Some(r) => Some(r.start),
            None => Some(sent),
        };
        let more = read_range(&log, sent, ended).unwrap_or_default();
        sent += more.len() as u64;
        send_chunk(stream, &more).await?;
        if ended.is_some() {
            break;
        }
    }
    stream.write_all(b"0\r\n\r\n").await?;
    stream.flush().await
}

async fn send_chunk<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    stream
        .write_all(format!("{:x}\r\n", bytes.len()).as_bytes())
        .await?;
    stream.write_all(bytes).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_requests_as_the_api_server_sends_them() {
        let ok = parse_request_line(
            "GET /containerLogs/shop/db-0/mariadb?follow=true&previous=false&tailLines=10&limitBytes=500&timestamps=true HTTP/1.1",
        )
        .unwrap();
        assert_eq!(
            ok,
            LogRequest {
                namespace: "shop".into(),
                pod: "db-0".into(),
                container: "mariadb".into(),
                follow: true,
                previous: false,
                tail_lines: Some(10),
                limit_bytes: Some(500),
            }
        );
        let previous =
            parse_request_line("GET /containerLogs/shop/db-0/mariadb?previous=true HTTP/1.1")
                .unwrap();
        assert!(previous.previous && !previous.follow);
        for (line, status) in [
            ("POST /containerLogs/shop/db-0/mariadb HTTP/1.1", 405),
            ("GET /exec/shop/db-0/mariadb HTTP/1.1", 404),
            ("GET /containerLogs/shop/db-0 HTTP/1.1", 404),
            ("GET /containerLogs/shop/../mariadb HTTP/1.1", 400),
            (
                "GET /containerLogs/shop/db-0/mariadb?tailLines=x HTTP/1.1",
                400,
            ),
        ] {
            assert_eq!(
                parse_request_line(line).map_err(|r| r.status),
                Err(status),
                "{line}"
            );
        }
    }
}
