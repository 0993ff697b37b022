//! The listener: accepts connections, hands each (after TLS, if any) to
//! [`crate::http`], sweeps expired sessions, and shuts down cleanly: told
//! to stop, it drains (goes on serving, `/healthz` saying `draining`, for
//! `--drain-secs`), then closes every connection with 1001 and finishes
//! every queued commit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::cluster::Cluster;
use crate::config::{Config, WebClient};
use crate::health::Health;
use crate::http::Shared;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::relay_key::RelayIdentity;
use crate::store::{Store, StoreError, StoreLocation};

/// Why the relay could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket failed.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
    /// The data directory could not be created.
    #[error("data dir {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The store failed to open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node could not join its cluster.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The relay's key file could not be read or made.
    #[error("relay key {0}")]
    RelayKey(String),
    /// The flags given to [`Server::spawn`] did not parse or fit together.
    #[error("configuration: {0}")]
    Config(String),
    /// The `--web-dir` folder cannot be served.
    #[error("web dir {dir}: {reason}")]
    WebDir {
        /// The folder.
        dir: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A bound relay, ready to run.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    hub: Arc<Hub>,
    /// The store, asked at each health check whether it still takes writes.
    store: Store,
    health: Arc<Health>,
    committer: crate::store::CommitterTask,
    /// What this node sends the cluster's other nodes, if it is in one.
    outgoing: Option<crate::cluster::Outgoing>,
}

/// A relay running in the background, from [`Server::spawn`].
pub struct Running {
    url: String,
    drain: Option<tokio::sync::oneshot::Sender<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Its websocket URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Begin shutting down as on SIGTERM: drain for `--drain-secs`, then
    /// close every connection and finish every commit; [`Running::wait`]
    /// waits for the end.
    pub fn drain(&mut self) {
        if let Some(drain) = self.drain.take() {
            let _ = drain.send(());
        }
    }

    /// Wait until it has stopped (after [`Running::drain`]).
    pub async fn wait(self) -> Result<(), ServerError> {
        joined(self.task).await
    }

    /// Shut it down at once, with no drain (or ending one under way), and
    /// wait until every commit is done.
    pub async fn stop(self) -> Result<(), ServerError> {
        let _ = self.stop.send(());
        joined(self.task).await
    }
}

/// The relay task's result.
async fn joined(task: tokio::task::JoinHandle<Result<(), ServerError>>) -> Result<(), ServerError> {
    task.await
        .map_err(|e| ServerError::Config(format!("relay task failed: {e}")))?
}

impl Server {
    /// Start a relay on the current tokio runtime, configured by `flags` as
    /// on the command line (`["--listen", "127.0.0.1:0", "--data-dir", …]`):
    /// for embedding, examples and tests. Dropping the handle leaves it
    /// running until the runtime ends; [`Running::stop`] stops it.
    pub async fn spawn(flags: &[&str]) -> Result<Running, ServerError> {
        use clap::Parser;
        let args = crate::config::Args::try_parse_from(
            std::iter::once("caucus-server").chain(flags.iter().copied()),
        )
        .map_err(|e| ServerError::Config(e.to_string()))?;
        let config = Config::from_args(args).map_err(|e| ServerError::Config(e.to_string()))?;
        let server = Self::bind(config).await?;
        let url = server.url();
        let (drain, drained) = tokio::sync::oneshot::channel::<()>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A dropped sender is no signal: only `Running::drain` starts one.
        let task = tokio::spawn(server.run_until(
            async {
                if drained.await.is_err() {
                    std::future::pending::<()>().await;
                }
            },
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Running {
            url,
            drain: Some(drain),
            stop,
            task,
        })
    }

    /// Open the store and bind the listening socket.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
            dir: config.data_dir.display().to_string(),
            source,
        })?;
        let metrics = Arc::new(Metrics::default());
        let durable = !config.unsafe_ack_before_commit;
        if !durable {
            tracing::warn!(
                "--unsafe-ack-before-commit: acknowledged writes can be lost in a crash (benchmarking aid)"
            );
        }
        // A node of a cluster stores only under its leases (docs/cluster.md).
        let node = match config.cluster {
            Some(_) => Some(crate::cluster::node_name()?),
            None => None,
        };
        let (store, committer) = Store::open(
            &config.store,
            &config.data_dir,
            65_536,
            metrics.clone(),
            durable,
            node.as_deref(),
        )
        .await?;
        crate::web::check(&config.web)?;
        let tls = match &config.tls {
            Some((cert, key)) => Some(crate::tls::acceptor(cert, key)?),
            None => None,
        };
        let listener = TcpListener::bind(config.listen).await?;
        // A login names the URL the device dialled: the relay's own
        // address, or one of the public URLs it is given (13.3).
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let mut urls = vec![format!("{scheme}://{}", listener.local_addr()?)];
        urls.extend(config.public_urls.iter().cloned());
        let relay = RelayIdentity::load(&config.data_dir, &urls)?;
        let health = Arc::new(Health::default());
        let (cluster, outgoing) = match (&config.cluster, &config.store, node) {
            (Some(settings), StoreLocation::Postgres(url), Some(node)) => {
                let (cluster, outgoing) =
                    Cluster::join(settings, node, url, &relay.keys, health.clone()).await?;
                (Some(cluster), Some(outgoing))
            }
            _ => (None, None),
        };
        Ok(Self {
            listener,
            tls,
            hub: Arc::new(Hub::new(store.clone(), cluster, metrics, config, relay).await?),
            store,
            health,
            committer,
            outgoing,
        })
    }

    /// What its `/healthz` reports besides its store, for whatever else
    /// knows whether it can serve (the link between the relays of a
    /// cluster) to set.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.hub.config.listen)
    }

    /// The relay's websocket URL: `ws://ADDR`, or `wss://ADDR` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}", self.local_addr())
    }

    /// Serve until `shutdown` resolves; then drain: answer `/healthz` with
    /// `503 draining` and go on serving, new connections included, for the
    /// drain period (`--drain-secs`); then stop accepting, close every
    /// connection with 1001, and finish every queued commit. An error if
    /// the store could not then be closed cleanly (its last checkpoint or
    /// flush failed): nothing acknowledged is lost, but the next start has
    /// more to read back.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        self.run_until(shutdown, std::future::pending()).await
    }

    /// [`Server::run`], with `now` to end the drain early: once `now`
    /// resolves (a second signal, say), the relay stops at once, drained
    /// or not.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()>,
        now: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let Self {
            listener,
            tls,
            hub,
            store,
            health,
            committer,
            outgoing,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let cluster = hub.cluster.clone();
        if let (Some(cluster), Some(outgoing)) = (&cluster, outgoing) {
            tokio::spawn(cluster.clone().run(hub.clone(), outgoing, stop_rx.clone()));
        }
        let shared = Arc::new(Shared {
            hub: hub.clone(),
            store,
            health: health.clone(),
            slots: Arc::new(Semaphore::new(hub.config.max_connections)),
            stop: stop_rx.clone(),
        });
        let router = crate::http::router(shared.clone());
        let limits = Limits::new(&hub.config);
        let mut backoff = AcceptBackoff::default();
        let mut tasks = JoinSet::new();
        let sweeper = tokio::spawn(sweep(hub.clone(), stop_rx.clone()));
        let reloader = tokio::spawn(reload_after_store_failures(hub.clone(), stop_rx.clone()));
        tracing::info!(addr = %listener.local_addr()?, data_dir = %hub.config.data_dir.display(), relay = %hub.relay.keys.fingerprint(), urls = %hub.relay.urls(), "relay listening");
        log_web_client(&hub.config.web);
        tokio::pin!(shutdown);
        tokio::pin!(now);
        let mut phase = Phase::Serving;
        loop {
            tokio::select! {
                () = &mut shutdown, if matches!(phase, Phase::Serving) => {
                    health.drain();
                    let drain = hub.config.drain;
                    tracing::info!(secs = drain.as_secs(), "draining: /healthz says so; a second signal stops at once");
                    phase = Phase::Draining(Box::pin(tokio::time::sleep(drain)));
                }
                () = phase.over() => break,
                () = &mut now => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors, say: back off, don't spin.
                            tokio::time::sleep(backoff.failed(&e)).await;
                            continue;
                        }
                    };
                    backoff.accepted();
                    // Over its address's limits: closed at once, unread.
                    let Ok(ticket) = limits.admit(peer.ip()) else {
                        Metrics::add(&hub.metrics.refused_sockets, 1);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let router = router.clone();
                    let tls = tls.clone();
                    // Each phase's future is boxed in a statement of its
                    // own: in `Box::pin(f).await`, rustc keeps room for `f`
                    // in the task too, for the connection's life
                    // (docs/performance.md, seventh run).
                    tasks.spawn(async move {
                        match tls {
                            // A socket that does not finish its TLS
                            // handshake within the header timeout is
                            // dropped.
                            Some(tls) => {
                                let limit = shared.hub.config.header;
                                let accept = tokio::time::timeout(limit, Box::pin(tls.accept(stream)));
                                let Ok(Ok(stream)) = accept.await else { return };
                                let serve = Box::pin(crate::http::serve(shared, router, stream, peer, ticket));
                                serve.await;
                            }
                            None => {
                                let serve = Box::pin(crate::http::serve(shared, router, stream, peer, ticket));
                                serve.await;
                            }
                        }
                    });
                }
            }
        }
        tracing::info!("shutting down");
        drop(listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        // Nothing holds the store once they are done, so that it is closed
        // (its files let go) when this returns.
        let _ = sweeper.await;
        let _ = reloader.await;
        drop(router);
        drop(shared);
        drop(hub);
        let closed = committer.await;
        // Every commit is done: other nodes may take this one's sessions.
        if let Some(cluster) = cluster {
            cluster.leave().await;
        }
        match closed {
            // The store could not be closed cleanly: nothing is lost, but
            // whoever runs the relay should hear of it.
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(())) | Err(_) => {
                tracing::info!("stopped");
                Ok(())
            }
        }
    }
}

/// Where the accept loop is in its life.
enum Phase {
    /// Serving: `/healthz` says `ok` if nothing else is wrong.
    Serving,
    /// Told to shut down: serving on until the drain period ends.
    Draining(std::pin::Pin<Box<tokio::time::Sleep>>),
}

impl Phase {
    /// Resolves when the drain period is over; never while serving.
    async fn over(&mut self) {
        match self {
            Phase::Serving => std::future::pending().await,
            Phase::Draining(sleep) => sleep.as_mut().await,
        }
    }
}

/// Accept failures in a row (out of file descriptors, say): a wait that
/// doubles with each, from 10 ms up to one second, and one `warn` line
/// for the whole run of them, the next when accepting works again.
#[derive(Default)]
struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    /// How long to wait after the failure `error`.
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 {
            tracing::warn!(%error, "accept failed: backing off until it works again");
        }
        let doublings = self.failures.saturating_sub(1).min(7);
        Duration::from_millis(10 << doublings).min(Duration::from_secs(1))
    }

    /// A socket was accepted: the run of failures, if any, is over.
    fn accepted(&mut self) {
        if self.failures > 0 {
            tracing::warn!(failures = self.failures, "accepting again");
            self.failures = 0;
        }
    }
}

/// Erase closed sessions whose retention has passed, and delete abandoned
/// uploads, until shutdown: every 30 seconds, or every retention period or
/// upload lifetime if that is shorter (at least 1 s). The first sweep runs
/// at start.
async fn sweep(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    // With no retention, closing erases at once and the sweep only mops up
    // after a crash between the two, so every 30 seconds is plenty.
    let period = [hub.config.retention, hub.config.upload_ttl]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min()
        .map_or(Duration::from_secs(30), |d| {
            d.clamp(Duration::from_secs(1), Duration::from_secs(30))
        });
    let mut every = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = every.tick() => {
                if let Err(e) = hub.sweep().await {
                    tracing::warn!(error = ?e, "retention sweep failed");
                }
            }
        }
    }
}

/// Each time the store fails (PostgreSQL), let go of every session held in
/// memory — they may hold what was not stored — and let the store resume;
/// sessions load again from what it holds on their next request.
async fn reload_after_store_failures(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    let mut failures = hub.store().failures();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            changed = failures.changed() => {
                if changed.is_err() {
                    return;
                }
                hub.evict_all();
                if let Err(e) = hub.store().resume() {
                    tracing::error!(error = %e, "the store cannot resume");
                }
            }
        }
    }
}

/// Log the published hash of the web client served (`web_client`), for
/// comparison with `sha256sum web/dist/SHA256SUMS` of a reproducible build.
fn log_web_client(web: &WebClient) {
    let source = match web {
        WebClient::Embedded => "built-in".to_owned(),
        WebClient::Dir(dir) => dir.display().to_string(),
        WebClient::Off => {
            tracing::info!("no web client served (--no-web)");
            return;
        }
    };
    match crate::web::published_hash(web) {
        Some(hash) => tracing::info!(web_client = %hash, %source, "serving the web client"),
        None => tracing::warn!(%source, "the web client has no SHA256SUMS: no hash to publish"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_in_a_row_wait_twice_as_long_each_time_up_to_a_second() {
        let mut backoff = AcceptBackoff::default();
        let error = std::io::Error::from_raw_os_error(24); // EMFILE
        let waits: Vec<u64> = (0..10)
            .map(|_| backoff.failed(&error).as_millis() as u64)
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        // A socket accepted ends the run: the next failure starts again.
        backoff.accepted();
        assert_eq!(backoff.failed(&error), Duration::from_millis(10));
    }
}
