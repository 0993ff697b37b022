//! `caucus-server`: run the Caucus relay. See `docs/operations.md`.

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = caucus_server::Args::parse();
    let rotate = args.rotate_key;
    let config = match caucus_server::Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("caucus-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if rotate {
        return rotate_key(&config.data_dir);
    }
    // tungstenite traces whole frames (admission tokens, envelopes): never
    // below debug, whatever RUST_LOG asks.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(QUIET_TUNGSTENITE.parse().unwrap_or_default())
        .add_directive(QUIET_TOKIO_TUNGSTENITE.parse().unwrap_or_default());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let serves_web = !matches!(config.web, caucus_server::WebClient::Off);
    let server = match caucus_server::Server::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The address first, on a line of its own (scripts read it); then where
    // the web client is (the same address, over HTTP). One write, and an
    // error ignored: whoever reads the first line may close the pipe.
    let mut banner = format!("caucus-server listening on {}\n", server.url());
    if serves_web {
        let page = server.url().replacen("ws", "http", 1);
        banner.push_str(&format!("the web client: open {page}/ in a browser\n"));
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), banner.as_bytes());
    match server.run(shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--rotate-key`: a new identity for the relay in `dir`, vouched for by
/// the old one (docs/operations.md).
fn rotate_key(dir: &std::path::Path) -> std::process::ExitCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match caucus_server::rotate_key(dir, now) {
        Ok((old, new)) => {
            println!(
                "caucus-server: relay key rotated from {old} to {new}; restart the relay to use it"
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("caucus-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

const QUIET_TUNGSTENITE: &str = "tungstenite=debug";
const QUIET_TOKIO_TUNGSTENITE: &str = "tokio_tungstenite=debug";

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
