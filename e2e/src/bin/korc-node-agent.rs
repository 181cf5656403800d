//! The node agent on its own, against any API server: registers nodes and runs
//! the pods bound to them as local processes until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use clap::Parser;
use korc_e2e::agent::{AgentConfig, NodeAgent};

/// Process-running node agent for korc's local clusters.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Admin kubeconfig the agent uses.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// API server URL written into pods' kubeconfigs.
    #[arg(long)]
    server: String,
    /// CA certificate pods trust.
    #[arg(long)]
    ca_cert: PathBuf,
    /// Where pods' volumes, logs and persistent volumes live.
    #[arg(long)]
    state_dir: PathBuf,
    /// Number of nodes to register.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Second octet B of the 127.B.0.0/16 block pod and node addresses come from.
    #[arg(long)]
    address_block: u8,
    /// The korc binary run for korc images (default: $KORC_BINARY or target/debug/korc).
    #[arg(long)]
    korc_binary: Option<PathBuf>,
    /// The MySQL installation run for MySQL images (default: the cache's `mysql`).
    #[arg(long)]
    mysql_dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // The harness polls the API server while it starts; each refused
            // connection would otherwise be logged as an error.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .init();
    let args = Args::parse();
    // One thread: pods get a parent-death signal tied to the thread that spawned them.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("korc-node-agent: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let result: korc_e2e::Result<()> = async {
            let client = korc_e2e::kubeconfig::client(&args.kubeconfig).await?;
            let config = AgentConfig {
                nodes: args.nodes,
                address_block: args.address_block,
                state_dir: args.state_dir,
                server: args.server,
                ca_cert: args.ca_cert,
                korc_binary: args
                    .korc_binary
                    .unwrap_or_else(korc_e2e::agent::default_korc_binary),
                mysql_dir: args.mysql_dir.unwrap_or_else(korc_e2e::binaries::mysql_dir),
                // Without the control plane's CA key there are no kubelet certificates:
                // `kubectl logs` needs korc-local.
                kubelet_tls: None,
            };
            let agent = NodeAgent::start(config, client).await?;
            tracing::info!(nodes = ?agent.node_names(), "node agent running");
            wait_for_signal().await;
            agent.shutdown().await;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("korc-node-agent: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
