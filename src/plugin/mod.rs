//! `kubectl korc`: the kubectl plugin, a thin client of the operator's controls.
//!
//! The `korc` binary becomes the plugin when it is invoked as `kubectl-korc` (a link or
//! copy of that name on PATH is how kubectl finds plugins). Every command reads or
//! patches the MySQLCluster object; the operator does the rest.

pub mod controls;
pub mod recoveries;
pub mod tree;

use crate::api::{MySQLCluster, MySQLClusterStatus};
use clap::{Args, Parser, Subcommand, ValueEnum};
use controls::Progress;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The name kubectl looks for on PATH.
pub const PLUGIN_NAME: &str = "kubectl-korc";

/// Whether the binary was started as the plugin: argv\[0\]'s file name is `kubectl-korc`.
pub fn invoked_as_plugin(argv0: Option<&OsStr>) -> bool {
    argv0
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|name| name == PLUGIN_NAME)
}

/// kubectl korc: look at and control MySQLClusters managed by korc.
#[derive(Debug, Parser)]
#[command(name = "kubectl korc", bin_name = "kubectl korc", version)]
pub struct Cli {
    /// Where and as whom to connect.
    #[command(flatten)]
    pub connection: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Connection flags, as kubectl's.
#[derive(Debug, Args)]
pub struct Connection {
    /// Namespace of the cluster (default: the context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the in-cluster
    /// service account).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the replication tree: each instance under its source, with role, GTID
    /// position, lag, IO/SQL threads, read_only, reachability and its analysis codes.
    Topology {
        /// The MySQLCluster.
        cluster: String,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the last recoveries, newest first: outcome, steps with their durations,
    /// and each hook's Job and outcome; then the last failure detection and its hooks.
    Recoveries {
        /// The MySQLCluster.
        cluster: String,
        /// How many recoveries to print.
        #[arg(long, default_value_t = 1)]
        last: usize,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Request a graceful switchover: sets spec.switchover with a new requestId and
    /// prints it.
    ///
    /// With --wait, polls the cluster until status.recoveries has an outcome for this
    /// requestId, or status.primary names the new primary (the requested pod, else any
    /// pod other than the primary before the request).
    Switchover {
        /// The MySQLCluster.
        cluster: String,
        /// Pod to promote (default: korc chooses by its candidate rules).
        #[arg(long, value_name = "POD")]
        to: Option<String>,
        /// Wait for the outcome.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 120, requires = "wait")]
        timeout: u64,
    },
    /// Acknowledge the cluster's recoveries, lifting the block on further automatic
    /// recoveries: sets the korc.dev/acknowledge annotation to the time and your user.
    Ack {
        /// The MySQLCluster.
        cluster: String,
    },
    /// Stop korc reconciling and recovering the cluster (sets spec.paused; probing and
    /// status go on).
    Pause {
        /// The MySQLCluster.
        cluster: String,
    },
    /// Let korc reconcile and recover the cluster again (clears spec.paused).
    Resume {
        /// The MySQLCluster.
        cluster: String,
    },
}

/// Output format of `topology`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// The indented tree.
    Text,
    /// The tree as JSON.
    Json,
}

/// What can go wrong in the plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
    /// The MySQLCluster does not exist.
    #[error("MySQLCluster {cluster:?} not found in namespace {namespace:?}")]
    NotFound {
        /// Its name.
        cluster: String,
        /// The namespace looked in.
        namespace: String,
    },
    /// The API server refused or failed a request.
    #[error("{doing}: {source}")]
    Api {
        /// What the plugin was doing.
        doing: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The cluster's status cannot be read.
    #[error("the status of {0} cannot be read: {1}")]
    Status(String, #[source] serde_json::Error),
    /// A request that cannot be made.
    #[error("{0}")]
    Invalid(String),
    /// `--wait` ran out of time.
    #[error(
        "switchover {request_id} of {cluster}: no outcome after {seconds} s (primary: {primary})"
    )]
    Timeout {
        /// The cluster.
        cluster: String,
        /// The request.
        request_id: String,
        /// The bound.
        seconds: u64,
        /// The primary last seen.
        primary: String,
    },
    /// korc recorded the switchover as failed or rolled back.
    #[error("switchover {request_id} of {cluster}: {outcome}{}", error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    SwitchoverFailed {
        /// The cluster.
        cluster: String,
        /// The request.
        request_id: String,
        /// The recorded outcome.
        outcome: String,
        /// The recorded error.
        error: Option<String>,
    },
}

impl Error {
    /// The process exit code: 5 for a failed or rolled back switchover (as `korc
    /// switchover`), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::SwitchoverFailed { .. } => 5,
            _ => 1,
        }
    }
}

/// The API client, namespace and cluster a command works on.
struct Target {
    api: Api<DynamicObject>,
    client: kube::Client,
    /// The API server's URL, for errors.
    server: String,
    namespace: String,
    cluster: String,
}

impl Connection {
    /// Builds the client as kubectl would: `--kubeconfig`, else `KUBECONFIG` or
    /// `~/.kube/config`, with `--context`; without any kubeconfig, the in-cluster
    /// service account.
    async fn client(&self) -> Result<(kube::Client, String, String), Error> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).map_err(|e| Error::Config(e.to_string()))?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| Error::Config(e.to_string()))?
            }
            None => match kube::Config::from_kubeconfig(&options).await {
                Ok(config) => config,
                Err(e) if self.context.is_some() => return Err(Error::Config(e.to_string())),
                Err(file) => kube::Config::incluster().map_err(|pod| {
                    Error::Config(format!("no kubeconfig ({file}) and not in a pod ({pod})"))
                })?,
            },
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
        Ok((client, namespace, server))
    }

    async fn target(&self, cluster: &str) -> Result<Target, Error> {
        let (client, namespace, server) = self.client().await?;
        let api = Api::namespaced_with(
            client.clone(),
            &namespace,
            &ApiResource::erase::<MySQLCluster>(&()),
        );
        Ok(Target {
            api,
            client,
            server,
            namespace,
            cluster: cluster.into(),
        })
    }
}

impl Target {
    fn qualified(&self) -> String {
        format!("{}/{}", self.namespace, self.cluster)
    }

    fn api_error(&self, doing: &str, source: kube::Error) -> Error {
        match &source {
            kube::Error::Api(s) if s.code == 404 => Error::NotFound {
                cluster: self.cluster.clone(),
                namespace: self.namespace.clone(),
            },
            _ => Error::Api {
                doing: format!("{doing} {} on {}", self.qualified(), self.server),
                source,
            },
        }
    }

    async fn get(&self) -> Result<DynamicObject, Error> {
        self.api
            .get(&self.cluster)
            .await
            .map_err(|e| self.api_error("reading", e))
    }

    async fn patch(&self, doing: &str, patch: Value) -> Result<DynamicObject, Error> {
        self.api
            .patch(&self.cluster, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| self.api_error(doing, e))
    }

    fn status(&self, object: &DynamicObject) -> Result<MySQLClusterStatus, Error> {
        match object.data.get("status") {
            Some(s) if !s.is_null() => {
                serde_json::from_value(s.clone()).map_err(|e| Error::Status(self.qualified(), e))
            }
            _ => Ok(MySQLClusterStatus::default()),
        }
    }

    /// Who the API server says we are (what `kubectl auth whoami` prints).
    async fn user(&self) -> Result<String, Error> {
        let review = Api::<SelfSubjectReview>::all(self.client.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .map_err(|source| Error::Api {
                doing: "asking the API server who you are".into(),
                source,
            })?;
        Ok(review
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .unwrap_or_else(|| "unknown".into()))
    }
}

/// Parses the plugin's arguments, runs the command and returns the exit code.
pub async fn main() -> u8 {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kubectl korc: {e}");
            e.exit_code()
        }
    }
}

/// Runs one plugin command.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let c = &cli.connection;
    match cli.command {
        Command::Topology { cluster, output } => {
            let t = c.target(&cluster).await?;
            let object = t.get().await?;
            let paused = object.data["spec"]["paused"].as_bool().unwrap_or(false);
            let topology =
                tree::Topology::build(&t.namespace, &t.cluster, paused, &t.status(&object)?);
            match output {
                Output::Text => print!("{}", topology.render()),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&topology).expect("the tree always serializes")
                ),
            }
        }
        Command::Recoveries {
            cluster,
            last,
            output,
        } => {
            let t = c.target(&cluster).await?;
            let status = t.status(&t.get().await?)?;
            match output {
                Output::Text => print!("{}", recoveries::render(&status, last)),
                Output::Json => {
                    let newest: Vec<_> = status.recoveries.iter().rev().take(last).collect();
                    let doc = serde_json::json!({
                        "recoveries": newest,
                        "failureDetection": status.failure_detection,
                    });
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&doc).expect("the status always serializes")
                    );
                }
            }
        }
        Command::Switchover {
            cluster,
            to,
            wait,
            timeout,
        } => {
            let t = c.target(&cluster).await?;
            let object = t.get().await?;
            let status = t.status(&object)?;
            if let Some(to) = &to {
                let replicas = object.data["spec"]["replicas"].as_i64().unwrap_or(0);
                controls::check_target(&t.cluster, replicas, &status, to)
                    .map_err(Error::Invalid)?;
            }
            let request_id = uuid::Uuid::new_v4().to_string();
            t.patch(
                "requesting a switchover of",
                controls::switchover_patch(&request_id, to.as_deref()),
            )
            .await?;
            println!("{request_id}");
            if wait {
                let primary = wait_for_switchover(
                    &t,
                    &request_id,
                    to.as_deref(),
                    status.primary.as_deref(),
                    timeout,
                )
                .await?;
                println!("{}: {primary} is the primary", t.qualified());
            }
        }
        Command::Ack { cluster } => {
            let t = c.target(&cluster).await?;
            // Fail on a missing cluster before asking who we are.
            t.get().await?;
            let value = controls::acknowledgement(Timestamp::now(), &t.user().await?);
            t.patch(
                "acknowledging the recoveries of",
                controls::acknowledge_patch(&value),
            )
            .await?;
            println!(
                "{}: {}={value}",
                t.qualified(),
                controls::ACKNOWLEDGE_ANNOTATION
            );
        }
        Command::Pause { cluster } => {
            let t = c.target(&cluster).await?;
            t.patch("pausing", controls::paused_patch(true)).await?;
            println!(
                "{}: paused; korc neither reconciles nor recovers it (probing and status go on)",
                t.qualified()
            );
        }
        Command::Resume { cluster } => {
            let t = c.target(&cluster).await?;
            t.patch("resuming", controls::paused_patch(false)).await?;
            println!("{}: resumed", t.qualified());
        }
    }
    Ok(())
}

/// Polls the cluster every half second until the switchover shows an outcome.
async fn wait_for_switchover(
    t: &Target,
    request_id: &str,
    to: Option<&str>,
    primary_before: Option<&str>,
    timeout: u64,
) -> Result<String, Error> {
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let object = t.get().await?;
        let status = object.data.get("status").cloned().unwrap_or(Value::Null);
        match controls::progress(&status, request_id, to, primary_before) {
            Progress::Done { primary } => return Ok(primary),
            Progress::Failed { outcome, error } => {
                return Err(Error::SwitchoverFailed {
                    cluster: t.qualified(),
                    request_id: request_id.into(),
                    outcome,
                    error,
                });
            }
            Progress::Pending if Instant::now() >= deadline => {
                return Err(Error::Timeout {
                    cluster: t.qualified(),
                    request_id: request_id.into(),
                    seconds: timeout,
                    primary: status["primary"].as_str().unwrap_or("none").into(),
                });
            }
            Progress::Pending => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn plugin_is_recognised_by_the_file_name_it_was_started_as() {
        let cases = [
            (Some("kubectl-korc"), true),
            (Some("/home/u/.local/bin/kubectl-korc"), true),
            (Some("./kubectl-korc"), true),
            (Some("korc"), false),
            (Some("/usr/bin/korc"), false),
            (Some("kubectl-korc-old"), false),
            (None, false),
        ];
        for (argv0, expected) in cases {
            assert_eq!(
                invoked_as_plugin(argv0.map(OsStr::new)),
                expected,
                "{argv0:?}"
            );
        }
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connection_flags_go_anywhere_after_the_plugin_name() {
        let cli = Cli::try_parse_from([
            "kubectl-korc",
            "--context",
            "prod",
            "switchover",
            "db",
            "-n",
            "shop",
            "--to",
            "db-2",
            "--wait",
        ])
        .unwrap();
        assert_eq!(cli.connection.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.connection.context.as_deref(), Some("prod"));
        match cli.command {
            Command::Switchover {
                cluster,
                to,
                wait,
                timeout,
            } => {
                assert_eq!(cluster, "db");
                assert_eq!(to.as_deref(), Some("db-2"));
                assert!(wait);
                assert_eq!(timeout, 120);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn engine_commands_are_not_plugin_commands() {
        assert!(Cli::try_parse_from(["kubectl-korc", "analyze", "--instances", "a:1"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-korc", "switchover", "--instances", "a:1"]).is_err());
    }
}
