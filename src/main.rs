//! The `korc` binary; started as `kubectl-korc`, the kubectl plugin.

use clap::Parser;
use korc::cli::{Cli, run};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_env("KORC_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
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
        init_logs(false);
        return ExitCode::from(korc::plugin::main().await);
    }
    let cli = Cli::parse();
    init_logs(cli.log_json);
    match run(cli.command).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("korc: {e}");
            ExitCode::from(1)
        }
    }
}
