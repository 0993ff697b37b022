//! `caucus-server`: run the Caucus relay. See `docs/operations.md`.

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Every frame in and out is a buffer allocated on one thread and often
/// freed on another. jemalloc's thread caches cost far less there than
/// glibc's arenas (90–100 against 60–70 µs of relay CPU a post), and it
/// keeps less memory idle than mimalloc, which was faster still but held
/// half as much again per connection (docs/performance.md, "The
/// allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    let signals = signals();
    let (first, second) = (signals.clone(), signals);
    let shutdown = async move { first.nth(1).await };
    let now = async move { second.nth(2).await };
    match server.run_until(shutdown, now).await {
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

/// How many times SIGINT or SIGTERM has come: the first starts the drain,
/// the second ends it.
#[derive(Clone)]
struct Signals(tokio::sync::watch::Receiver<u32>);

impl Signals {
    /// Resolves once the `n`th signal has come.
    async fn nth(mut self, n: u32) {
        if self.0.wait_for(|count| *count >= n).await.is_err() {
            // No more signals will come.
            std::future::pending::<()>().await;
        }
    }
}

/// Count SIGINT and SIGTERM from now on.
fn signals() -> Signals {
    let (tx, rx) = tokio::sync::watch::channel(0);
    tokio::spawn(async move {
        let mut signals = SignalStreams::new();
        loop {
            signals.next().await;
            tx.send_modify(|count| *count += 1);
        }
    });
    Signals(rx)
}

/// The listeners for SIGINT and SIGTERM, made once so that no signal
/// falls between two of them.
struct SignalStreams {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl SignalStreams {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
                let received = match signal {
                    Some(s) => s.recv().await.is_some(),
                    None => false,
                };
                if !received {
                    std::future::pending::<()>().await;
                }
            }
            tokio::select! {
                () = recv(&mut self.interrupt) => {}
                () = recv(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
