//! The `korc` command line: the topology engine on a list of instances, without
//! Kubernetes (like orchestrator-client for a cluster korc does not manage).
//!
//! Exit codes: 0 success (analyze: no problem; a dry run: a plan); 1 error; 2 usage;
//! 3 analyze found a problem; 4 recover (or its dry run) found nothing actionable; 5 a
//! recovery or switchover failed or rolled back; 6 a dry run found the recovery or
//! switchover would be refused (no candidate, an excluded target, a second primary).

mod text;

use crate::topology::analysis::{Analysis, AnalysisCode, analyze};
use crate::topology::cluster::imply_roles;
use crate::topology::dialect::{ReplicationCredentials, SourceCa};
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::policy::{Downtime, Policy, PromotionRule};
use crate::topology::probe::{now_ms, probe_cluster};
use crate::topology::recovery::dry_run::{self, DryRun, Verdict};
use crate::topology::recovery::{
    Outcome, RecoveryContext, RecoveryRecord, Unguarded, graceful_takeover, recover,
};
use crate::topology::session::{Connector, Credentials, Tls};
use crate::{Error, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// korc: MySQL/MariaDB replication failure analysis and recovery.
#[derive(Debug, Parser)]
#[command(name = "korc", version, about)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe the instances and print orchestrator's replication analysis.
    Analyze {
        /// The cluster.
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Analyse a saved `instances` document instead of probing (incident replay).
        #[arg(long, value_name = "FILE", conflicts_with = "instances")]
        snapshot: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Probe, analyse, and run the recovery the analysis calls for; prints the
    /// recovery record.
    Recover {
        /// The cluster.
        #[command(flatten)]
        cluster: ClusterArgs,
        /// What would happen.
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Print the CustomResourceDefinitions korc defines, as YAML.
    Crd,
    /// Turn another tool's configuration into a MySQLCluster, printed as YAML.
    Import {
        /// Which tool.
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Run the operator: reconcile MySQLCluster resources (in-cluster config or KUBECONFIG).
    Run {
        /// Address of the /metrics, /healthz and /readyz endpoints.
        #[arg(long, env = "KORC_LISTEN", default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// How replicas name their source: the pod's DNS name, or its IP where there is
        /// no cluster DNS (korc's local control plane).
        #[arg(long, env = "KORC_SOURCE_ADDRESS", value_enum, default_value_t = crate::provisioning::SourceAddress::PodDns)]
        source_address: crate::provisioning::SourceAddress,
        /// Watch only these namespaces (comma-separated); every namespace when empty.
        /// The Helm chart's `watchNamespaces` gives korc Roles in them instead of a
        /// ClusterRole.
        #[arg(long, env = "KORC_WATCH_NAMESPACES", value_delimiter = ',')]
        watch_namespaces: Vec<String>,
        /// korc's own image: MariaDB pods copy the korc binary from it to run the
        /// agent that copies data between instances.
        #[arg(long, env = "KORC_IMAGE", default_value = concat!("korc:", env!("CARGO_PKG_VERSION")))]
        image: String,
        /// Leader election.
        #[command(flatten)]
        election: crate::operator::election::ElectionArgs,
    },
    /// The agent beside a MariaDB server, run by korc's pods from the database image
    /// (copies of data between instances; see docs/cloning.md).
    Agent {
        /// What the agent does.
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Graceful takeover: move the primary role to a replica; prints the record.
    Switchover {
        /// The cluster.
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The replica to promote (default: chosen by candidate rules).
        #[arg(long, value_name = "HOST:PORT")]
        to: Option<InstanceKey>,
        /// What would happen.
        #[command(flatten)]
        plan: PlanArgs,
    },
}

/// `korc agent`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Copy this korc binary to PATH (an emptyDir the database image's containers
    /// share).
    Install {
        /// Where the binary goes.
        path: PathBuf,
    },
    /// Before the server starts: swap a complete staged copy into the data
    /// directory, or delete an incomplete one.
    Restore {
        /// The server's data directory.
        #[arg(long, default_value = "/var/lib/mysql")]
        datadir: PathBuf,
    },
    /// Serve backups (donor) and copies (recipient) beside the server.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The local server.
        #[arg(long, value_name = "HOST:PORT")]
        server: InstanceKey,
        /// The server's data directory.
        #[arg(long, default_value = "/var/lib/mysql")]
        datadir: PathBuf,
        /// The only account that may call the agent.
        #[arg(long, default_value = crate::provisioning::REPLICATION_USER)]
        user: String,
        /// The cluster's certificate directory (ca.crt, tls.crt, tls.key): TLS on.
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
        /// The name the cluster's certificates carry.
        #[arg(long, value_name = "NAME", requires = "tls_dir")]
        tls_server_name: Option<String>,
    },
}

impl AgentCommand {
    async fn run(self) -> Result<u8> {
        let failed = |e: crate::agent::AgentError| Error::Invalid(e.to_string());
        match self {
            AgentCommand::Install { path } => crate::agent::install(&path).map_err(failed)?,
            AgentCommand::Restore { datadir } => {
                let steps = crate::agent::restore::restore(&datadir).map_err(failed)?;
                if !steps.is_empty() {
                    eprintln!("korc agent restore: {steps:?}");
                }
            }
            AgentCommand::Serve {
                listen,
                server,
                datadir,
                user,
                tls_dir,
                tls_server_name,
            } => crate::agent::serve::serve(crate::agent::serve::Settings {
                listen,
                server,
                datadir,
                user,
                tls_dir,
                tls_server_name,
            })
            .await
            .map_err(failed)?,
        }
        Ok(0)
    }
}

/// The tools `korc import` reads.
#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// orchestrator's configuration (orchestrator.conf.json): a MySQLCluster whose
    /// spec.recovery carries every setting korc honours, with what was left behind
    /// and why as comments.
    Orchestrator(OrchestratorImport),
}

/// `korc import orchestrator`.
#[derive(Debug, Args)]
pub struct OrchestratorImport {
    /// orchestrator's configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Turn the *Processes hooks into spec.hooks (each command a Job).
    #[arg(long)]
    pub hooks: bool,
    /// Image the hook commands run in; it must have the hook shell
    /// (ProcessesShellCommand, default bash).
    #[arg(long, value_name = "IMAGE", default_value = "bash:5.2")]
    pub hook_image: String,
    /// Print a merge patch of an existing cluster's spec instead of a whole cluster.
    #[arg(long)]
    pub patch: bool,
    /// The MySQLCluster's name.
    #[arg(long, default_value = "db")]
    pub name: String,
    /// Its namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// spec.image.
    #[arg(long, default_value = "mysql:8.4")]
    pub image: String,
    /// spec.replicas.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=9))]
    pub replicas: i32,
    /// The alias orchestrator knew the cluster by, which Recover*ClusterFilters are
    /// matched against (default: --name).
    #[arg(long, value_name = "ALIAS")]
    pub cluster_alias: Option<String>,
    /// An instance's host name in orchestrator and the pod it becomes (HOST=POD).
    #[arg(long = "pod", value_name = "HOST=POD", value_parser = parse_named::<String>)]
    pub pods: Vec<(String, String)>,
    /// A promotion rule registered with orchestrator (register-candidate), by host
    /// or pod: HOST=must|prefer|neutral|prefer_not|must_not.
    #[arg(long = "promotion-rule", value_name = "HOST=RULE", value_parser = parse_named::<PromotionRule>)]
    pub promotion_rules: Vec<(String, PromotionRule)>,
}

impl OrchestratorImport {
    /// Reads the configuration and prints the cluster or the patch.
    fn run(self) -> Result<u8> {
        let path = self.config.display().to_string();
        let config: serde_json::Value = read_json(&self.config)?;
        let options = crate::import::orchestrator::Options {
            name: self.name,
            namespace: self.namespace,
            image: self.image,
            replicas: self.replicas,
            cluster_alias: self.cluster_alias,
            hooks: self.hooks,
            hook_image: self.hook_image,
            pods: self.pods,
            promotion_rules: self.promotion_rules,
        };
        let imported = crate::import::orchestrator::import(&config, &options)
            .map_err(|e| Error::Invalid(format!("{path}: {e}")))?;
        print!("{}", imported.to_yaml(self.patch));
        Ok(0)
    }
}

fn parse_named<V: std::str::FromStr>(s: &str) -> std::result::Result<(String, V), String>
where
    V::Err: std::fmt::Display,
{
    let (k, v) = s
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    Ok((k.to_owned(), v.parse().map_err(|e| format!("{e}"))?))
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable lines.
    Text,
    /// The document as JSON.
    Json,
}

/// `--dry-run`, `--snapshot` and `--output` of `recover` and `switchover`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print the plan korc would execute and change nothing (not the state file either).
    #[arg(long)]
    pub dry_run: bool,
    /// Plan from a saved `analyze --output json` document instead of probing.
    #[arg(
        long,
        value_name = "FILE",
        requires = "dry_run",
        conflicts_with = "instances"
    )]
    pub snapshot: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

/// `--ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SslMode {
    /// Plain text (unless --ssl-ca is given).
    Disabled,
    /// TLS, any certificate accepted.
    Required,
    /// TLS, the certificate verified against --ssl-ca.
    Verify,
}

/// The instances of one cluster, how to reach them, and the policy.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The cluster's instances, as replicas name them.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT,...")]
    pub instances: Vec<InstanceKey>,
    /// Dial ADDR whenever KEY is meant (KEY=ADDR, both host:port).
    #[arg(long = "connect", value_name = "KEY=ADDR", value_parser = parse_pair::<InstanceKey>)]
    pub connect: Vec<(InstanceKey, InstanceKey)>,
    /// User korc connects as.
    #[arg(long, env = "KORC_MYSQL_USER", default_value = "root")]
    pub user: String,
    /// A file holding its password (else the environment's `KORC_MYSQL_PASSWORD`).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Its password: visible to every user of the machine in the process list, so
    /// korc warns; prefer --password-file or `KORC_MYSQL_PASSWORD`.
    #[arg(long, hide = true)]
    pub password: Option<String>,
    /// Replication user for an old primary that rejoins (default: --user).
    #[arg(long, env = "KORC_REPLICATION_USER")]
    pub replication_user: Option<String>,
    /// A file holding its password (else `KORC_REPLICATION_PASSWORD`, else korc's).
    #[arg(long, value_name = "FILE")]
    pub replication_password_file: Option<PathBuf>,
    /// Remember the topology between runs in FILE (like orchestrator's backend), so an
    /// instance that died before this run keeps its last known role.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// TLS of korc's connections: disabled, required (any certificate), or verify (the
    /// certificate must verify to --ssl-ca and name --ssl-server-name, else the host
    /// dialled).
    #[arg(long, value_enum, default_value_t = SslMode::Disabled)]
    pub ssl_mode: SslMode,
    /// The CA certificate (PEM) the servers' certificates must verify to; the only
    /// root trusted. Implies --ssl-mode verify unless another mode is given.
    #[arg(long, value_name = "FILE")]
    pub ssl_ca: Option<PathBuf>,
    /// The name the servers' certificates must carry, instead of the host dialled
    /// (for instances dialled by IP whose certificates name the cluster).
    #[arg(long, value_name = "NAME")]
    pub ssl_server_name: Option<String>,
    /// A replica korc points at a source replicates over TLS, verifying its source
    /// against the CA file its own server is configured with (`ssl_ca`).
    #[arg(long)]
    pub replication_ssl: bool,
    /// Like --replication-ssl, against this CA file on the replicas instead.
    #[arg(long, value_name = "PATH")]
    pub replication_ssl_ca: Option<String>,
    /// Connect timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub connect_timeout_ms: u64,
    /// Per-statement timeout in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub query_timeout_ms: u64,
    /// Policy as a JSON document (the `Policy` fields of the README); flags below add to it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Promotion rule of an instance: KEY=must|prefer|neutral|prefer_not|must_not.
    #[arg(long = "promotion-rule", value_name = "KEY=RULE", value_parser = parse_pair::<PromotionRule>)]
    pub promotion_rules: Vec<(InstanceKey, PromotionRule)>,
    /// Data center of an instance: KEY=DC.
    #[arg(long = "data-center", value_name = "KEY=DC", value_parser = parse_pair::<String>)]
    pub data_centers: Vec<(InstanceKey, String)>,
    /// Region of an instance: KEY=REGION.
    #[arg(long = "region", value_name = "KEY=REGION", value_parser = parse_pair::<String>)]
    pub regions: Vec<(InstanceKey, String)>,
    /// Downtime an instance for SECONDS (KEY=SECONDS): recovery of it is suppressed.
    #[arg(long = "downtime", value_name = "KEY=SECONDS", value_parser = parse_downtime)]
    pub downtimes: Vec<(InstanceKey, u64)>,
    /// Never promote a replica in another data center than the failed master's.
    #[arg(long)]
    pub prevent_cross_dc: bool,
    /// Never promote a replica in another region than the failed master's.
    #[arg(long)]
    pub prevent_cross_region: bool,
    /// Unlock a locked semi-sync master by turning semi-sync on in enough replicas.
    #[arg(long)]
    pub recover_locked_semi_sync_master: bool,
    /// Keep exactly as many semi-sync replicas as the master waits for.
    #[arg(long)]
    pub enforce_exact_semi_sync_replicas: bool,
}

fn parse_pair<V: std::str::FromStr>(s: &str) -> std::result::Result<(InstanceKey, V), String>
where
    V::Err: std::fmt::Display,
{
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    Ok((
        k.parse().map_err(|e| format!("{e}"))?,
        v.parse().map_err(|e| format!("{e}"))?,
    ))
}

/// `--downtime KEY=SECONDS`, refused when the window's end is beyond what korc's
/// millisecond clock can hold (it must not wrap round to "not downtimed").
fn parse_downtime(s: &str) -> std::result::Result<(InstanceKey, u64), String> {
    let (key, secs) = parse_pair::<u64>(s)?;
    downtime_until(now_ms(), secs)
        .map(|_| (key, secs))
        .ok_or_else(|| format!("a downtime of {secs} seconds is out of range"))
}

/// When a downtime of `secs` seconds starting at `now_ms` ends; none on overflow.
fn downtime_until(now_ms: u64, secs: u64) -> Option<u64> {
    secs.checked_mul(1000)?.checked_add(now_ms)
}

/// The document `analyze --output json` prints, `--snapshot` reads and `--state` keeps.
/// Unknown fields are refused, naming the field.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisDocument {
    /// Probe results.
    pub instances: Vec<Instance>,
    /// Analyses.
    #[serde(default)]
    pub analysis: Vec<Analysis>,
}

/// A secret from a file (its trailing newline aside), else from the environment.
fn secret(file: Option<&Path>, env: &str) -> Result<Option<String>> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display()))),
        None => Ok(std::env::var(env).ok()),
    }
}

impl ClusterArgs {
    /// korc's password: `--password-file`, `KORC_MYSQL_PASSWORD`, or (with a warning)
    /// `--password`.
    fn password(&self) -> Result<String> {
        if self.password.is_some() {
            eprintln!(
                "korc: warning: --password shows the password to every user of this machine; \
                 use --password-file or KORC_MYSQL_PASSWORD"
            );
        }
        let from = secret(self.password_file.as_deref(), "KORC_MYSQL_PASSWORD")?;
        Ok(from.or_else(|| self.password.clone()).unwrap_or_default())
    }

    fn connector(&self) -> Result<Connector> {
        let mut c = Connector::new(Credentials {
            user: self.user.clone(),
            password: self.password()?,
        });
        c.tls = self.tls()?;
        c.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        c.query_timeout = Duration::from_millis(self.query_timeout_ms);
        for (k, a) in &self.connect {
            c.map_address(k.clone(), a.clone());
        }
        Ok(c)
    }

    fn tls(&self) -> Result<Tls> {
        let ca = match &self.ssl_ca {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                Error::Invalid(format!("cannot read --ssl-ca {}: {e}", path.display()))
            })?),
            None => None,
        };
        match (self.ssl_mode, ca) {
            (SslMode::Disabled, None) => Ok(Tls::Disabled),
            (SslMode::Required, _) => Ok(Tls::Required),
            (SslMode::Verify | SslMode::Disabled, Some(ca)) => Ok(Tls::Verified {
                ca,
                server_name: self.ssl_server_name.clone(),
            }),
            (SslMode::Verify, None) => {
                Err(Error::Invalid("--ssl-mode verify needs --ssl-ca".into()))
            }
        }
    }

    fn recovery_context(&self) -> Result<RecoveryContext> {
        Ok(RecoveryContext {
            connector: self.connector()?,
            policy: self.policy()?,
            replication: self.replication()?,
        })
    }

    fn replication(&self) -> Result<ReplicationCredentials> {
        let file = self.replication_password_file.as_deref();
        let password = match secret(file, "KORC_REPLICATION_PASSWORD")? {
            Some(p) => p,
            None => self.password()?,
        };
        Ok(ReplicationCredentials {
            user: self
                .replication_user
                .clone()
                .unwrap_or_else(|| self.user.clone()),
            password,
            source_ca: match (&self.replication_ssl_ca, self.replication_ssl) {
                (Some(file), _) => Some(SourceCa::File(file.clone())),
                (None, true) => Some(SourceCa::ServerCa),
                (None, false) => None,
            },
        })
    }

    fn policy(&self) -> Result<Policy> {
        let mut p: Policy = match &self.policy {
            Some(path) => read_json(path)?,
            None => Policy::default(),
        };
        p.prevent_cross_data_center_master_failover |= self.prevent_cross_dc;
        p.prevent_cross_region_master_failover |= self.prevent_cross_region;
        p.recover_locked_semi_sync_master |= self.recover_locked_semi_sync_master;
        p.enforce_exact_semi_sync_replicas |= self.enforce_exact_semi_sync_replicas;
        for (k, rule) in &self.promotion_rules {
            p.instance_mut(k).promotion_rule = *rule;
        }
        for (k, dc) in &self.data_centers {
            p.instance_mut(k).data_center = Some(dc.clone());
        }
        for (k, region) in &self.regions {
            p.instance_mut(k).region = Some(region.clone());
        }
        for (k, secs) in &self.downtimes {
            let until_ms = downtime_until(now_ms(), *secs)
                .ok_or_else(|| Error::Invalid(format!("--downtime {k}={secs}: out of range")))?;
            p.instance_mut(k).downtime = Some(Downtime {
                until_ms,
                reason: "requested on the command line".into(),
            });
        }
        Ok(p)
    }

    /// Probes the cluster, completing unreachable instances from the state file, and
    /// saves the new state.
    async fn probe(&self, connector: &Connector) -> Result<Vec<Instance>> {
        let instances = self.observe(connector).await?;
        self.save(&instances)?;
        Ok(instances)
    }

    /// Probes the cluster, completing unreachable instances from the state file, which
    /// is left as it is.
    async fn observe(&self, connector: &Connector) -> Result<Vec<Instance>> {
        if self.instances.is_empty() {
            return Err(Error::Invalid(
                "--instances is required: the cluster's instances as host:port,...".into(),
            ));
        }
        let previous = self.previous_state();
        Ok(probe_cluster(connector, &self.instances, &previous).await)
    }

    /// The topology a dry run plans from: the snapshot, or a probe.
    async fn topology(&self, plan: &PlanArgs) -> Result<Vec<Instance>> {
        match &plan.snapshot {
            Some(path) => read_snapshot(path),
            None => self.observe(&self.connector()?).await,
        }
    }

    /// The instances the state file remembers. A state file that cannot be read or
    /// parsed (truncated by a crash, edited by hand) is reported and ignored: it is
    /// memory, and losing it must not block a recovery.
    fn previous_state(&self) -> Vec<Instance> {
        let Some(path) = &self.state else {
            return Vec::new();
        };
        match read_document(path) {
            Ok(instances) => instances,
            Err(Error::File { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Vec::new()
            }
            Err(e) => {
                eprintln!("korc: ignoring the state file: {e}");
                Vec::new()
            }
        }
    }

    fn save(&self, instances: &[Instance]) -> Result<()> {
        if let Some(path) = &self.state {
            let doc = AnalysisDocument {
                instances: instances.to_vec(),
                analysis: Vec::new(),
            };
            write_json(path, &doc)?;
        }
        Ok(())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        context: path.display().to_string(),
        source,
    })
}

/// The instances of an `analyze` document, every GTID text checked.
fn read_document(path: &Path) -> Result<Vec<Instance>> {
    let doc: AnalysisDocument = read_json(path)?;
    for inst in &doc.instances {
        inst.check_gtids()
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    }
    Ok(doc.instances)
}

/// A snapshot to analyse or plan from: the document's instances, each one never probed
/// given the role the others imply, as a live probe gives it.
fn read_snapshot(path: &Path) -> Result<Vec<Instance>> {
    let mut instances = read_document(path)?;
    imply_roles(&mut instances);
    Ok(instances)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        context: "state".into(),
        source,
    })?;
    write_atomically(path, (text + "\n").as_bytes()).map_err(|source| Error::File {
        path: path.display().to_string(),
        source,
    })
}

/// Replaces `path` with `content` so that a crash leaves the old file or the new one,
/// never a mix: a temporary file in the same directory, fsynced, renamed over `path`,
/// and the directory fsynced so the rename itself is durable.
fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    // Unique per writer, so two korc runs sharing a state file never share a temp file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(content)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::File::open(dir)?.sync_all()
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        context: "output".into(),
        source,
    })?;
    println!("{text}");
    Ok(())
}

fn print_text(analysis: &[Analysis]) {
    for a in analysis {
        let warnings: Vec<String> = a
            .structure_warnings
            .iter()
            .map(|w| {
                serde_json::to_value(w)
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            })
            .collect();
        let e = &a.evidence;
        println!(
            "{}\t{:?}\tactionable={}\treplicas={} valid={} replicating={}\t{}{}",
            a.instance,
            a.code,
            a.actionable,
            e.replicas,
            e.valid_replicas,
            e.valid_replicating_replicas,
            a.description,
            if warnings.is_empty() {
                String::new()
            } else {
                format!("\twarnings={}", warnings.join(","))
            }
        );
    }
}

fn exit_code_of(record: &RecoveryRecord) -> u8 {
    if record.outcome == Outcome::Recovered {
        0
    } else {
        5
    }
}

/// Prints a dry run; returns its exit code.
fn print_dry_run(d: &DryRun, output: Output) -> Result<u8> {
    match output {
        Output::Json => print_json(d)?,
        Output::Text => print!("{}", text::dry_run(d)),
    }
    Ok(match d.verdict {
        Verdict::Plan => 0,
        Verdict::NothingToDo => 4,
        Verdict::Refused => 6,
    })
}

fn print_record(record: &RecoveryRecord, output: Output) -> Result<()> {
    match output {
        Output::Json => print_json(record),
        Output::Text => {
            print!("{}", text::record(record));
            Ok(())
        }
    }
}

/// Runs a subcommand; returns the process exit code.
pub async fn run(command: Command) -> Result<u8> {
    match command {
        Command::Analyze {
            cluster,
            snapshot,
            output,
        } => {
            let policy = cluster.policy()?;
            let instances = match &snapshot {
                Some(path) => read_snapshot(path)?,
                None => cluster.probe(&cluster.connector()?).await?,
            };
            let analysis = analyze(&instances, &policy, now_ms());
            let problem = analysis.iter().any(|a| a.code != AnalysisCode::NoProblem);
            match output {
                Output::Json => print_json(&AnalysisDocument {
                    instances,
                    analysis,
                })?,
                Output::Text => print_text(&analysis),
            }
            Ok(if problem { 3 } else { 0 })
        }
        Command::Recover { cluster, plan } if plan.dry_run => {
            let policy = cluster.policy()?;
            let instances = cluster.topology(&plan).await?;
            let now = now_ms();
            let analysis = analyze(&instances, &policy, now);
            print_dry_run(
                &dry_run::recover(&instances, &analysis, &policy, now),
                plan.output,
            )
        }
        Command::Recover { cluster, plan } => {
            let ctx = cluster.recovery_context()?;
            let instances = cluster.probe(&ctx.connector).await?;
            let analysis = analyze(&instances, &ctx.policy, now_ms());
            match recover(&ctx, &instances, &analysis, &Unguarded, None).await {
                Some(record) => {
                    print_record(&record, plan.output)?;
                    cluster.probe(&ctx.connector).await?;
                    Ok(exit_code_of(&record))
                }
                None => {
                    match plan.output {
                        Output::Json => print_json(
                            &serde_json::json!({ "outcome": "nothingToDo", "analysis": analysis }),
                        )?,
                        Output::Text => {
                            println!("nothing to do");
                            print_text(&analysis);
                        }
                    }
                    Ok(4)
                }
            }
        }
        Command::Run {
            listen,
            source_address,
            watch_namespaces,
            image,
            election,
        } => {
            crate::operator::run(
                crate::operator::controller::Settings {
                    source_address,
                    watch_namespaces,
                    image,
                },
                &election,
                listen,
            )
            .await?;
            Ok(0)
        }
        Command::Agent { command } => command.run().await,
        Command::Crd => {
            print!("{}", crate::api::crds_yaml());
            Ok(0)
        }
        Command::Import {
            from: ImportFrom::Orchestrator(args),
        } => args.run(),
        Command::Switchover { cluster, to, plan } if plan.dry_run => {
            let policy = cluster.policy()?;
            let instances = cluster.topology(&plan).await?;
            print_dry_run(
                &dry_run::switchover(&instances, to.as_ref(), &policy, now_ms()),
                plan.output,
            )
        }
        Command::Switchover { cluster, to, plan } => {
            let ctx = cluster.recovery_context()?;
            let instances = cluster.probe(&ctx.connector).await?;
            let record = graceful_takeover(&ctx, &instances, to.as_ref(), &Unguarded).await;
            print_record(&record, plan.output)?;
            cluster.probe(&ctx.connector).await?;
            Ok(exit_code_of(&record))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downtime_ends_are_checked_not_wrapped() {
        for (now, secs, until) in [
            (1_000, 60, Some(61_000)),
            (0, u64::MAX / 1000, Some(u64::MAX / 1000 * 1000)),
            (1, u64::MAX / 1000 + 1, None),
            (u64::MAX - 999, 1, None),
            (1_795_430_000_000, u64::MAX, None),
        ] {
            assert_eq!(downtime_until(now, secs), until, "{now} + {secs}s");
        }
        assert!(parse_downtime("a:1=600").is_ok());
        let e = parse_downtime("a:1=18446744073709551615").unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_failed_atomic_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename fails after the temporary
        // file was written, which must then be cleaned up.
        let path = dir.path().join("state.json");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), b"old").unwrap();
        assert!(write_atomically(&path, b"new").is_err());
        assert_eq!(std::fs::read(path.join("keep")).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn documents_korc_writes_are_read_back_and_unknown_fields_refused() {
        let mut inst = Instance::unknown("a:1".parse().unwrap());
        inst.reachable = true;
        inst.replication = Some(Default::default());
        let analysis = analyze(std::slice::from_ref(&inst), &Policy::default(), 0);
        let doc = AnalysisDocument {
            instances: vec![inst],
            analysis,
        };
        let text = serde_json::to_string(&doc).unwrap();
        let back: AnalysisDocument = serde_json::from_str(&text).unwrap();
        assert_eq!(back.instances, doc.instances);
        assert_eq!(back.analysis, doc.analysis);
        for (from, to) in [
            ("\"instances\"", "\"instance\""),
            ("\"reachable\"", "\"reached\""),
            ("\"sourceHost\"", "\"masterHost\""),
            ("\"evidence\":{", "\"evidence\":{\"extra\":1,"),
        ] {
            let bad = text.replacen(from, to, 1);
            assert_ne!(bad, text, "{from}");
            let e = serde_json::from_str::<AnalysisDocument>(&bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("unknown field"), "{to}: {e}");
        }
    }
}
