//! A relay node for the cluster tests (`tests/tests/cluster.rs`): the relay
//! of `caucus-server` started with these arguments by
//! `caucus_server::Server::spawn`, its address on the first line of stdout
//! as `caucus-server` prints it. It runs until it is killed: the tests kill
//! it with `SIGKILL`. It logs to stderr as `RUST_LOG` asks.
//!
//! A binary of this crate because an integration test is given the path of
//! its own package's binaries only (`CARGO_BIN_EXE_…`), so cargo builds it,
//! fresh, whenever these tests run.

use std::io::Write;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags: Vec<&str> = args.iter().map(String::as_str).collect();
    // Logs to stderr as `RUST_LOG` asks (none by default).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match caucus_server::Server::spawn(&flags).await {
        Ok(running) => {
            let banner = format!("caucus-server listening on {}\n", running.url());
            let _ = std::io::stdout().lock().write_all(banner.as_bytes());
            let _ = std::io::stdout().lock().flush();
            match running.wait().await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("caucus-node: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("caucus-node: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
