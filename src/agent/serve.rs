//! `korc agent serve`: the sidecar beside a MariaDB server. As a donor it streams a
//! `mariadb-backup` of its server (`GET /backup`); as a recipient it pulls such a
//! stream into the staging directory, extracts it with `mbstream`, prepares it with
//! `mariadb-backup --prepare` and only then marks it complete (`POST /clone`,
//! `GET /clone`). The swap itself happens before the server's next start
//! ([`super::restore`]).
//!
//! Only the replication account may call it: every request's basic credentials must
//! name that account and log into the local server, which stays the authority on the
//! password (a rotated password works at once). The same credentials run
//! `mariadb-backup`, so the agent holds no password of its own.

use super::client::{AgentClient, refused};
use super::protocol::{self, CloneRequest, CopyReport, CopyState, Refusal, Route};
use super::restore::{self, NOT_DATA, Staged};
use super::transport::{self, ClientTls};
use super::{AgentError, Result, io, save, throttle};
use crate::topology::instance::InstanceKey;
use crate::topology::session::{Connector, Credentials, Tls};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, Command};

/// What the agent serves, and where.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The local server.
    pub server: InstanceKey,
    /// The server's data directory.
    pub datadir: PathBuf,
    /// The only account that may call (the replication account).
    pub user: String,
    /// The cluster's certificate Secret (`ca.crt`, `tls.crt`, `tls.key`): TLS for the
    /// agent's own endpoint, its calls to other agents, and its server logins.
    pub tls_dir: Option<PathBuf>,
    /// The name the cluster's certificates carry (verified on other agents and on the
    /// local server).
    pub tls_server_name: Option<String>,
}

impl Settings {
    /// Connections to the local server as `credentials`, with the cluster's TLS.
    fn connector(&self, credentials: &Credentials) -> Result<Connector> {
        let mut connector = Connector::new(credentials.clone());
        if let Some(ca) = self.ca()? {
            connector.tls = Tls::Verified {
                ca,
                server_name: self.tls_server_name.clone(),
            };
        }
        Ok(connector)
    }

    fn ca(&self) -> Result<Option<Vec<u8>>> {
        let Some(dir) = &self.tls_dir else {
            return Ok(None);
        };
        let path = dir.join(crate::provisioning::certificates::CA_CERT);
        std::fs::read(&path)
            .map(Some)
            .map_err(io(format!("reading {}", path.display())))
    }

    /// How this agent verifies other agents.
    fn client_tls(&self) -> Result<Option<ClientTls>> {
        Ok(self.ca()?.map(|ca| ClientTls {
            ca,
            server_name: self.tls_server_name.clone().unwrap_or_default(),
        }))
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

struct Agent {
    settings: Settings,
    copy: Mutex<CopyReport>,
}

impl Agent {
    fn report(&self) -> CopyReport {
        self.copy.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut CopyReport)) {
        f(&mut self.copy.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Serves until the process ends. A staged copy left incomplete (the agent was killed
/// during a copy) is deleted first; a complete one is reported as staged.
pub async fn serve(settings: Settings) -> Result<()> {
    let initial = match restore::staged(&settings.datadir)? {
        Staged::Incomplete => {
            let dir = restore::staging(&settings.datadir);
            tracing::warn!(dir = %dir.display(), "deleting an incomplete copy");
            std::fs::remove_dir_all(&dir).map_err(io(format!("deleting {}", dir.display())))?;
            CopyReport::idle()
        }
        Staged::Prepared => CopyReport {
            state: CopyState::Staged,
            gtid_position: staged_position(&settings.datadir).ok(),
            ..CopyReport::idle()
        },
        _ => CopyReport::idle(),
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(io(format!("listening on {}", settings.listen)))?;
    tracing::info!(listen = %settings.listen, "agent serving");
    let agent = Arc::new(Agent {
        settings,
        copy: Mutex::new(initial),
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                continue;
            }
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            let stream: Box<dyn transport::Stream> = match &agent.settings.tls_dir {
                Some(dir) => {
                    let accepted = match transport::server_config(dir) {
                        Ok(config) => tokio_rustls::TlsAcceptor::from(config)
                            .accept(tcp)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match accepted {
                        Ok(s) => Box::new(s),
                        Err(e) => {
                            tracing::warn!(%peer, error = e, "TLS handshake");
                            return;
                        }
                    }
                }
                None => Box::new(tcp),
            };
            let service = hyper::service::service_fn(move |request| {
                let agent = agent.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(agent, request).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(message.into() + "\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

fn json(value: &impl serde::Serialize) -> Response<Body> {
    let mut r = text(
        StatusCode::OK,
        serde_json::to_string(value).expect("a report serializes"),
    );
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(agent: Arc<Agent>, request: Request<Incoming>) -> Response<Body> {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let route = match protocol::route(request.method().as_str(), &path) {
        Ok(r) => r,
        Err(e @ Refusal::NotFound(_)) => return text(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ Refusal::BadRequest(_)) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let credentials = match authenticate(&agent.settings, &request).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    match route {
        Route::Backup { max_mib_per_second } => {
            match backup(&agent.settings, &credentials, max_mib_per_second).await {
                Ok(r) => r,
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        Route::CopyReport => json(&agent.report()),
        Route::StartCopy => {
            let body = match request.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
            };
            let clone: CloneRequest = match serde_json::from_slice(&body) {
                Ok(c) => c,
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("the request: {e}")),
            };
            start_copy(agent, clone, credentials)
        }
    }
}

/// The caller's credentials, once the local server accepted them.
async fn authenticate(
    settings: &Settings,
    request: &Request<Incoming>,
) -> std::result::Result<Credentials, Response<Body>> {
    let Some((user, password)) = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(protocol::basic_credentials)
    else {
        let mut r = text(StatusCode::UNAUTHORIZED, "credentials required");
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"korc\""),
        );
        return Err(r);
    };
    if user != settings.user {
        return Err(text(
            StatusCode::FORBIDDEN,
            format!("only {} may call", settings.user),
        ));
    }
    let credentials = Credentials { user, password };
    let connector = match settings.connector(&credentials) {
        Ok(c) => c,
        Err(e) => return Err(text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    match connector.connect_new(&settings.server).await {
        Ok(_) => Ok(credentials),
        Err(e) => Err(text(
            StatusCode::FORBIDDEN,
            format!("the server refused the credentials: {e}"),
        )),
    }
}

/// A file of client options holding a password, readable by this user only and
/// deleted with this value.
struct OptionFile(PathBuf);

impl OptionFile {
    fn write(settings: &Settings, credentials: &Credentials) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut text = format!(
            "[client]\nuser={}\npassword={}\nhost={}\nport={}\n",
            quote(&credentials.user),
            quote(&credentials.password),
            settings.server.host,
            settings.server.port
        );
        if let Some(dir) = &settings.tls_dir {
            text += &format!(
                "ssl\nssl-ca={}\n",
                dir.join(crate::provisioning::certificates::CA_CERT)
                    .display()
            );
        }
        let path = std::env::temp_dir().join(format!("korc-backup-{}.cnf", uuid::Uuid::new_v4()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(format!("writing {}", path.display())))?;
        use std::io::Write;
        f.write_all(text.as_bytes())
            .map_err(io(format!("writing {}", path.display())))?;
        Ok(Self(path))
    }
}

impl Drop for OptionFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The last lines a tool wrote on its standard error, kept for error messages.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn follow(&self, stderr: ChildStderr) {
        let lines = self.0.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
                if l.len() == 8 {
                    l.pop_front();
                }
                l.push_back(line);
            }
        });
    }

    fn text(&self) -> String {
        let l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

fn tool_failed(tool: &str, status: std::process::ExitStatus, tail: &Tail) -> AgentError {
    AgentError::Tool {
        tool: tool.into(),
        detail: format!("{status}: {}", tail.text()),
    }
}

/// The size of the data directory's files (the copy's estimate), the staging and
/// replaced directories aside.
fn data_size(datadir: &Path) -> u64 {
    fn walk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    std::fs::read_dir(datadir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !NOT_DATA.contains(&e.file_name().to_string_lossy().as_ref()))
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => walk(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A running `mariadb-backup --backup` whose stream is sent, paced.
struct Sending {
    child: Child,
    stdout: tokio::process::ChildStdout,
    tail: Tail,
    _options: OptionFile,
    sent: u64,
    started: Instant,
    limit: u64,
    done: bool,
}

/// `GET /backup`: streams a backup of the local server.
async fn backup(
    settings: &Settings,
    credentials: &Credentials,
    max_mib_per_second: u32,
) -> Result<Response<Body>> {
    let options = OptionFile::write(settings, credentials)?;
    let mut child = Command::new("mariadb-backup")
        .arg(format!("--defaults-file={}", options.0.display()))
        .arg("--backup")
        .arg("--stream=mbstream")
        .arg(format!("--datadir={}", settings.datadir.display()))
        .arg(format!("--target-dir={}", std::env::temp_dir().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AgentError::Tool {
            tool: "mariadb-backup".into(),
            detail: format!("cannot start: {e}"),
        })?;
    let tail = Tail::default();
    tail.follow(child.stderr.take().expect("piped"));
    let stdout = child.stdout.take().expect("piped");
    tracing::info!(max_mib_per_second, "streaming a backup");
    let sending = Sending {
        child,
        stdout,
        tail,
        _options: options,
        sent: 0,
        started: Instant::now(),
        limit: throttle::bytes_per_second(max_mib_per_second),
        done: false,
    };
    let frames = futures::stream::unfold(sending, |mut s| async move {
        if s.done {
            return None;
        }
        let mut buf = vec![0u8; 64 * 1024];
        match s.stdout.read(&mut buf).await {
            Ok(0) => {
                s.done = true;
                match s.child.wait().await {
                    Ok(status) if status.success() => {
                        tracing::info!(
                            bytes = s.sent,
                            seconds = s.started.elapsed().as_secs_f64(),
                            "backup sent"
                        );
                        None
                    }
                    Ok(status) => {
                        let e = tool_failed("mariadb-backup", status, &s.tail);
                        tracing::warn!(error = %e, "backup failed");
                        // An error ends the stream without its last chunk: the
                        // recipient sees the copy failed.
                        Some((Err(std::io::Error::other(e.to_string())), s))
                    }
                    Err(e) => Some((Err(e), s)),
                }
            }
            Ok(n) => {
                s.sent += n as u64;
                let pause = throttle::pause(s.sent, s.started.elapsed(), s.limit);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), s))
            }
            Err(e) => {
                s.done = true;
                Some((Err(e), s))
            }
        }
    });
    let mut response = Response::new(StreamBody::new(frames).boxed());
    response.headers_mut().insert(
        protocol::ESTIMATE_HEADER,
        hyper::header::HeaderValue::from(data_size(&settings.datadir)),
    );
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// `POST /clone`: starts a copy unless one runs.
fn start_copy(
    agent: Arc<Agent>,
    request: CloneRequest,
    credentials: Credentials,
) -> Response<Body> {
    {
        let mut report = agent.copy.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(report.state, CopyState::Copying | CopyState::Preparing) {
            return text(
                StatusCode::CONFLICT,
                format!(
                    "a copy from {} runs",
                    report.donor.clone().unwrap_or_default()
                ),
            );
        }
        *report = CopyReport {
            state: CopyState::Copying,
            donor: Some(request.donor.clone()),
            ..CopyReport::idle()
        };
    }
    let report = agent.report();
    tokio::spawn(async move {
        let result = copy(&agent, &request, &credentials).await;
        if result.is_err() {
            // Nothing incomplete stays behind: not the copy, nor the events a save
            // extracted (the data they came from is still the server's own).
            let datadir = &agent.settings.datadir;
            let _ = std::fs::remove_dir_all(restore::staging(datadir));
            if let Some(save) = request.save.as_ref().filter(|s| s.validate().is_ok()) {
                let _ = std::fs::remove_dir_all(save::saved_dir(datadir, &save.name));
            }
        }
        agent.update(|r| match result {
            Ok(position) => {
                tracing::info!(
                    donor = request.donor,
                    bytes = r.bytes_copied,
                    gtid = position,
                    "copy staged"
                );
                r.state = CopyState::Staged;
                r.gtid_position = Some(position);
            }
            Err(e) => {
                tracing::warn!(donor = request.donor, error = %e, "copy failed");
                r.state = CopyState::Failed;
                r.error = Some(e.to_string());
            }
        });
    });
    json(&report)
}

/// The local server's binary log index file.
async fn binlog_index(settings: &Settings, credentials: &Credentials) -> Result<PathBuf> {
    let failed = |detail: String| AgentError::Tool {
        tool: "save".into(),
        detail,
    };
    let mut session = settings
        .connector(credentials)?
        .connect_new(&settings.server)
        .await
        .map_err(|e| failed(format!("cannot read the binary log index: {e}")))?;
    let index = session
        .value("SELECT @@log_bin_index")
        .await
        .map_err(|e| failed(format!("cannot read the binary log index: {e}")))?
        .filter(|i| !i.is_empty())
        .ok_or_else(|| failed("the server has no binary log".into()))?;
    let path = PathBuf::from(index);
    Ok(if path.is_absolute() {
        path
    } else {
        settings.datadir.join(path)
    })
}

/// The GTID position of the staged copy.
fn staged_position(datadir: &Path) -> Result<String> {
    let path = restore::staging(datadir).join("xtrabackup_binlog_info");
    let text = std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
    protocol::binlog_gtid_position(&text).ok_or_else(|| AgentError::Tool {
        tool: "mariadb-backup".into(),
        detail: format!("no GTID position in {}: {text:?}", path.display()),
    })
}

/// Streams the donor's backup into the staging directory, prepares it and marks it
/// complete; returns its GTID position.
async fn copy(agent: &Agent, request: &CloneRequest, credentials: &Credentials) -> Result<String> {
    let settings = &agent.settings;
    let staging = restore::staging(&settings.datadir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(format!("deleting {}", staging.display())))?;
    }
    std::fs::create_dir(&staging).map_err(io(format!("creating {}", staging.display())))?;
    if let Some(save) = &request.save {
        // Before anything is copied: a save that fails stops the copy.
        let index = binlog_index(settings, credentials).await?;
        let dir = save::extract(&settings.datadir, &index, save).await?;
        tracing::info!(dir = %dir.display(), gtids = save.errant_gtids, "errant transactions saved");
    }
    let client = AgentClient::new(
        &credentials.user,
        &credentials.password,
        settings.client_tls()?,
    );
    let response = client
        .send(
            &request.donor,
            Method::GET,
            &protocol::backup_path(request.max_mib_per_second),
            None,
        )
        .await?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(refused(&request.donor, status, &body));
    }
    let estimated = response
        .headers()
        .get(protocol::ESTIMATE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    agent.update(|r| r.bytes_estimated = estimated);

    let mut extract = Command::new("mbstream")
        .arg("-x")
        .arg("-C")
        .arg(&staging)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AgentError::Tool {
            tool: "mbstream".into(),
            detail: format!("cannot start: {e}"),
        })?;
    let tail = Tail::default();
    tail.follow(extract.stderr.take().expect("piped"));
    let mut stdin = extract.stdin.take().expect("piped");
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| AgentError::Remote {
            address: request.donor.clone(),
            detail: format!("the backup stream broke: {e}"),
        })?;
        if let Ok(data) = frame.into_data() {
            stdin.write_all(&data).await.map_err(|e| AgentError::Tool {
                tool: "mbstream".into(),
                detail: format!("{e}: {}", tail.text()),
            })?;
            agent.update(|r| r.bytes_copied += data.len() as u64);
        }
    }
    drop(stdin);
    let status = extract.wait().await.map_err(io("waiting for mbstream"))?;
    if !status.success() {
        return Err(tool_failed("mbstream", status, &tail));
    }

    agent.update(|r| r.state = CopyState::Preparing);
    let mut prepare = Command::new("mariadb-backup")
        .arg("--no-defaults")
        .arg("--prepare")
        .arg(format!("--target-dir={}", staging.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AgentError::Tool {
            tool: "mariadb-backup --prepare".into(),
            detail: format!("cannot start: {e}"),
        })?;
    let tail = Tail::default();
    tail.follow(prepare.stderr.take().expect("piped"));
    let status = prepare
        .wait()
        .await
        .map_err(io("waiting for mariadb-backup --prepare"))?;
    if !status.success() {
        return Err(tool_failed("mariadb-backup --prepare", status, &tail));
    }
    let position = staged_position(&settings.datadir)?;
    if let Some(save) = &request.save {
        restore::mark_save(&settings.datadir, &save.name)?;
    }
    // Last: from now on the copy is complete, and the next start swaps it in.
    restore::mark(&settings.datadir, Staged::Prepared)?;
    Ok(position)
}
