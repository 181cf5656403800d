//! The `korc` binary; started as `kubectl-korc`, the kubectl plugin.

use clap::Parser;
use korc::cli::{Cli, run};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn init_logs(json: bool, default_filter: &str) {
    let filter =
        EnvFilter::try_from_env("KORC_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    if korc::plugin::invoked_as_plugin(std::env::args_os().next().as_deref()) {
        // The plugin reports its errors itself; the client library's logs would repeat them.
        init_logs(false, "off");
        return ExitCode::from(korc::plugin::main().await);
    }
    let cli = Cli::parse();
    // The agent tells what it copies, as a server's log would.
    let quiet = match cli.command {
        korc::cli::Command::Agent { .. } => "info",
        _ => "warn",
    };
    init_logs(cli.log_json, quiet);
    match run(cli.command).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("korc: {e}");
            ExitCode::from(1)
        }
    }
}
