//! SQL connections to instances, every call bounded by a timeout.
//!
//! mysql_async has no connect or query timeout of its own, so each await is wrapped.
//! A dropped session's connection is closed in the background by mysql_async.
//! Instances are reached by their key unless a connect address is mapped for them
//! (in Kubernetes korc may dial a pod IP while replicas use the pod's DNS name).
//!
//! Connections are kept between sessions, one small pool per dialled address, so a
//! probe costs its queries and not a TCP and TLS handshake. An idle connection whose
//! server closed it (a restart, a kill) is noticed when it is taken and replaced by a
//! new one; korc sets no session state, so none is reset when a session ends.

use super::dialect::{Dialect, Row};
use super::error::{Error, Result};
use super::instance::InstanceKey;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How korc's connections use TLS.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Tls {
    /// Plain text.
    #[default]
    Disabled,
    /// TLS with any certificate: encrypted, but the server is not authenticated.
    Required,
    /// TLS with a certificate that verifies to `ca` (PEM; the only root trusted) and
    /// names `server_name`, or the dialled host when none is given. A cluster's CA is
    /// its own, so its instances' certificates all carry one name (see
    /// [`cluster_server_name`]) however they are dialled.
    ///
    /// [`cluster_server_name`]: crate::provisioning::certificates::cluster_server_name
    Verified {
        /// The CA certificate(s), PEM.
        ca: Vec<u8>,
        /// The name checked instead of the dialled host.
        server_name: Option<String>,
    },
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disabled => f.write_str("Disabled"),
            Self::Required => f.write_str("Required"),
            Self::Verified { server_name, .. } => f
                .debug_struct("Verified")
                .field("server_name", server_name)
                .finish_non_exhaustive(),
        }
    }
}

impl Tls {
    fn ssl_opts(&self) -> Option<SslOpts> {
        match self {
            Self::Disabled => None,
            Self::Required => Some(SslOpts::default().with_danger_accept_invalid_certs(true)),
            Self::Verified { ca, server_name } => Some(
                SslOpts::default()
                    .with_root_certs(vec![ca.clone().into()])
                    .with_disable_built_in_roots(true)
                    .with_danger_tls_hostname_override(server_name.clone()),
            ),
        }
    }
}

/// Open connections kept for reuse, shared by every clone of a [`Connector`] (and by
/// connectors given the same pools with [`Connector::share_pools`]).
#[derive(Debug, Clone, Default)]
pub struct ConnectionPools(Arc<Mutex<HashMap<InstanceKey, KeptPool>>>);

#[derive(Debug)]
struct KeptPool {
    opts: Opts,
    pool: Pool,
    used: Instant,
}

/// A pool nobody took a connection from for this long is closed (an address gone
/// with its pod).
const POOL_UNUSED: Duration = Duration::from_secs(600);

impl ConnectionPools {
    /// The pool for `address` with `opts`; a pool made with other options (a new
    /// password, other TLS settings) is replaced.
    fn pool(&self, address: &InstanceKey, opts: Opts) -> Pool {
        let mut pools = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        pools.retain(|_, kept| now.duration_since(kept.used) < POOL_UNUSED);
        match pools.get_mut(address) {
            Some(kept) if kept.opts == opts => {
                kept.used = now;
                kept.pool.clone()
            }
            _ => {
                let pool = Pool::new(opts.clone());
                pools.insert(
                    address.clone(),
                    KeptPool {
                        opts,
                        pool: pool.clone(),
                        used: now,
                    },
                );
                pool
            }
        }
    }
}

/// The account korc uses to probe and repair instances. `Debug` shows no password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Opens sessions to instances.
#[derive(Debug, Clone)]
pub struct Connector {
    credentials: Credentials,
    /// Bound on opening a connection.
    pub connect_timeout: Duration,
    /// Bound on each statement.
    pub query_timeout: Duration,
    /// TLS of every connection.
    pub tls: Tls,
    addresses: HashMap<InstanceKey, InstanceKey>,
    pools: ConnectionPools,
    /// Tried when `credentials` are refused: while a new password replicates, some
    /// instances still have the one before.
    previous: Option<Credentials>,
}

impl Connector {
    /// A connector with orchestrator-like bounds scaled down for a fast local network:
    /// 1 s to connect, 2 s per statement.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            connect_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(2),
            tls: Tls::Disabled,
            addresses: HashMap::new(),
            pools: ConnectionPools::default(),
            previous: None,
        }
    }

    /// Keeps connections in `pools` (for connectors made anew for each round of work
    /// to reuse the connections of the last).
    pub fn share_pools(&mut self, pools: &ConnectionPools) {
        self.pools = pools.clone();
    }

    /// Also tries `password` where the current one is refused (a rotation under way).
    pub fn with_previous_password(mut self, password: String) -> Self {
        self.previous = (password != self.credentials.password).then(|| Credentials {
            user: self.credentials.user.clone(),
            password,
        });
        self
    }

    /// Dial `address` whenever `key` is meant.
    pub fn map_address(&mut self, key: InstanceKey, address: InstanceKey) {
        self.addresses.insert(key, address);
    }

    /// The address dialled for an instance.
    pub fn address_of<'a>(&'a self, key: &'a InstanceKey) -> &'a InstanceKey {
        self.addresses.get(key).unwrap_or(key)
    }

    /// Opens a session, on a kept connection when one is idle.
    pub async fn connect(&self, key: &InstanceKey) -> Result<Session> {
        match (self.pooled(key, &self.credentials).await, &self.previous) {
            (
                Err(Error::Connect {
                    source: mysql_async::Error::Server(e),
                    ..
                }),
                Some(previous),
            ) if e.code == ACCESS_DENIED => self.pooled(key, previous).await,
            (other, _) => other,
        }
    }

    /// Opens a session on a new connection, closed when the session ends (what a
    /// connection established now sees, such as the certificate served now).
    pub async fn connect_new(&self, key: &InstanceKey) -> Result<Session> {
        self.session(key, Conn::new(self.opts(key, &self.credentials)))
            .await
    }

    async fn pooled(&self, key: &InstanceKey, credentials: &Credentials) -> Result<Session> {
        let pool = self
            .pools
            .pool(self.address_of(key), self.opts(key, credentials));
        self.session(key, pool.get_conn()).await
    }

    fn opts(&self, key: &InstanceKey, credentials: &Credentials) -> Opts {
        let address = self.address_of(key);
        let pool_opts = PoolOpts::default()
            .with_constraints(PoolConstraints::new(1, 16).expect("1 <= 16"))
            .with_inactive_connection_ttl(Duration::from_secs(60))
            .with_reset_connection(false);
        OptsBuilder::default()
            .ip_or_hostname(address.host.clone())
            .tcp_port(address.port)
            .user(Some(credentials.user.clone()))
            .pass(Some(credentials.password.clone()))
            .prefer_socket(false)
            .tcp_nodelay(true)
            .stmt_cache_size(0)
            .ssl_opts(self.tls.ssl_opts())
            .pool_opts(pool_opts)
            .into()
    }

    async fn session(
        &self,
        key: &InstanceKey,
        conn: impl Future<Output = mysql_async::Result<Conn>>,
    ) -> Result<Session> {
        let conn = bounded(key, "connecting", self.connect_timeout, conn)
            .await?
            .map_err(|source| Error::Connect {
                instance: key.clone(),
                source,
            })?;
        let dialect = Dialect::from_version(conn.server_version());
        Ok(Session {
            key: key.clone(),
            conn,
            dialect,
            timeout: self.query_timeout,
        })
    }
}

/// "Access denied for user".
const ACCESS_DENIED: u16 = 1045;

async fn bounded<T>(
    key: &InstanceKey,
    doing: &str,
    after: Duration,
    fut: impl Future<Output = T>,
) -> Result<T> {
    tokio::time::timeout(after, fut)
        .await
        .map_err(|_| Error::Timeout {
            instance: key.clone(),
            doing: doing.to_string(),
            after,
        })
}

/// An open connection to one instance.
#[derive(Debug)]
pub struct Session {
    key: InstanceKey,
    conn: Conn,
    /// The instance's SQL dialect.
    pub dialect: Dialect,
    timeout: Duration,
}

impl Session {
    /// The instance this session talks to.
    pub fn key(&self) -> &InstanceKey {
        &self.key
    }

    fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Runs a statement that returns no rows.
    pub async fn exec(&mut self, statement: &str) -> Result<()> {
        self.exec_redacted(statement, statement).await
    }

    /// Runs a statement, naming it `shown` in errors (for statements with secrets).
    pub async fn exec_redacted(&mut self, statement: &str, shown: &str) -> Result<()> {
        let (key, timeout) = (self.key.clone(), self.timeout);
        bounded(
            &key,
            &format!("running `{shown}`"),
            timeout,
            self.conn().query_drop(statement),
        )
        .await?
        .map_err(|source| Error::Sql {
            instance: key,
            statement: shown.to_string(),
            source,
        })
    }

    /// Runs a query and returns its rows as column-name maps.
    pub async fn rows(&mut self, query: &str) -> Result<Vec<Row>> {
        self.rows_within(query, self.timeout).await
    }

    /// Like [`Session::rows`] with an explicit bound (for deliberate waits).
    pub async fn rows_within(&mut self, query: &str, timeout: Duration) -> Result<Vec<Row>> {
        let key = self.key.clone();
        let result: Vec<mysql_async::Row> = bounded(
            &key,
            &format!("running `{query}`"),
            timeout,
            self.conn().query(query),
        )
        .await?
        .map_err(|source| Error::Sql {
            instance: key,
            statement: query.to_string(),
            source,
        })?;
        Ok(result.into_iter().map(to_row).collect())
    }

    /// Runs a query and returns the first column of its first row, as text.
    pub async fn value(&mut self, query: &str) -> Result<Option<String>> {
        Ok(self
            .rows(query)
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_values().next().flatten()))
    }

    /// `Variable_name`/`Value` rows (`SHOW STATUS`, `SHOW VARIABLES`) as a map.
    pub async fn name_values(
        &mut self,
        query: &str,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        Ok(self
            .rows(query)
            .await?
            .into_iter()
            .filter_map(|mut r| {
                let name = r.remove("Variable_name").flatten()?;
                Some((name, r.remove("Value").flatten().unwrap_or_default()))
            })
            .collect())
    }
}

fn to_row(row: mysql_async::Row) -> Row {
    let columns = row.columns();
    let values = row.unwrap();
    columns
        .iter()
        .zip(values)
        .map(|(c, v)| {
            let text = match v {
                Value::NULL => None,
                Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Value::Int(i) => Some(i.to_string()),
                Value::UInt(u) => Some(u.to_string()),
                Value::Float(f) => Some(f.to_string()),
                Value::Double(d) => Some(d.to_string()),
                other => Some(other.as_sql(true).trim_matches('\'').to_string()),
            };
            (c.name_str().into_owned(), text)
        })
        .collect()
}
