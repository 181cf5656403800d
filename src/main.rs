//! The `korc` binary.

use clap::Parser;
use korc::cli::{Cli, run};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("KORC_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    match run(cli.command).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("korc: {e}");
            ExitCode::from(1)
        }
    }
}
