//! Runs a whole local cluster in the foreground until SIGTERM or Ctrl-C:
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the node
//! agent. `e2e/up` starts it in the background.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use korc_e2e::{ControlPlane, ControlPlaneConfig};

/// A local Kubernetes cluster whose pods are local processes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// State directory (kubeconfig, logs, etcd data, pods); wiped at start.
    #[arg(long, env = "KORC_LOCAL_CLUSTER_DIR")]
    dir: PathBuf,
    /// Number of nodes, each in its own zone.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Second octet B of the 127.B.0.0/16 block for the API server, nodes and pods.
    #[arg(long, default_value_t = 20)]
    address_block: u8,
    /// The korc binary run for korc images (default: $KORC_BINARY or target/debug/korc).
    #[arg(long)]
    korc_binary: Option<PathBuf>,
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
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("korc-local: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let began = Instant::now();
        let config = ControlPlaneConfig {
            nodes: args.nodes,
            dir: Some(args.dir),
            address_block: Some(args.address_block),
            korc_binary: args.korc_binary,
            ..ControlPlaneConfig::default()
        };
        let cp = match ControlPlane::start(config).await {
            Ok(cp) => cp,
            Err(e) => {
                eprintln!("korc-local: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        println!(
            "korc-local: ready in {:.1} s: kubectl --kubeconfig {}",
            began.elapsed().as_secs_f64(),
            cp.kubeconfig().display()
        );
        let rss: u64 = cp.rss_bytes().iter().map(|(_, b)| b).sum();
        println!("korc-local: control plane RSS {} MiB", rss / (1024 * 1024));
        wait_for_signal().await;
        println!("korc-local: stopping");
        cp.shutdown();
        std::process::ExitCode::SUCCESS
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
