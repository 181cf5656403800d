//! SQL connections to instances, every call bounded by a timeout.
//!
//! mysql_async has no connect or query timeout of its own, so each await is wrapped.
//! A dropped session's connection is closed in the background by mysql_async.
//! Instances are reached by their key unless a connect address is mapped for them
//! (in Kubernetes korc may dial a pod IP while replicas use the pod's DNS name).

use super::dialect::{Dialect, Row};
use super::error::{Error, Result};
use super::instance::InstanceKey;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Value};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

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
    addresses: HashMap<InstanceKey, InstanceKey>,
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
            addresses: HashMap::new(),
            previous: None,
        }
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

    /// Opens a session.
    pub async fn connect(&self, key: &InstanceKey) -> Result<Session> {
        let conn = match (self.open(key, &self.credentials).await, &self.previous) {
            (
                Err(Error::Connect {
                    source: mysql_async::Error::Server(e),
                    ..
                }),
                Some(previous),
            ) if e.code == ACCESS_DENIED => self.open(key, previous).await?,
            (other, _) => other?,
        };
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

impl Connector {
    async fn open(&self, key: &InstanceKey, credentials: &Credentials) -> Result<Conn> {
        let address = self.address_of(key);
        let opts = OptsBuilder::default()
            .ip_or_hostname(address.host.clone())
            .tcp_port(address.port)
            .user(Some(credentials.user.clone()))
            .pass(Some(credentials.password.clone()))
            .prefer_socket(false)
            .tcp_nodelay(true)
            .stmt_cache_size(0);
        bounded(key, "connecting", self.connect_timeout, Conn::new(opts))
            .await?
            .map_err(|source| Error::Connect {
                instance: key.clone(),
                source,
            })
    }
}

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
