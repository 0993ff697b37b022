//! Several relays (issue 16, `docs/cluster.md`): the relay on sled, the
//! relay on PostgreSQL, and clusters of nodes on PostgreSQL and NATS, driven
//! with the same sessions, members and post rates; PostgreSQL and
//! nats-server are throwaway servers of `caucus-testkit` (PostgreSQL with
//! `fsync=on` and `synchronous_commit=on`, its defaults).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use serde::Serialize;

use crate::drive::{self, Mode, Placement, Run, Timing, Watch};
use crate::med;
use crate::procs::{self, Bins, Kind, Relay};
use crate::world::Session;

/// Where a setup keeps its records, and how many nodes serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// One relay on sled (the default store).
    Sled,
    /// One relay on PostgreSQL, no NATS.
    Postgres,
    /// Nodes on PostgreSQL and NATS, members placed by the placement.
    Cluster(usize, Placement),
}

impl Store {
    fn name(self) -> String {
        match self {
            Self::Sled => "1 relay, sled".into(),
            Self::Postgres => "1 relay, PostgreSQL".into(),
            Self::Cluster(n, Placement::Spread) => {
                format!("cluster of {n}, PostgreSQL + NATS, members spread")
            }
            Self::Cluster(n, Placement::ByOwner) => {
                format!("cluster of {n}, PostgreSQL + NATS, sessions spread")
            }
        }
    }

    fn nodes(self) -> usize {
        match self {
            Self::Sled | Self::Postgres => 1,
            Self::Cluster(n, _) => n,
        }
    }
}

/// One setup's runs.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    setup: String,
    nodes: usize,
    saturation: Vec<Run>,
    half_load: Vec<Run>,
}

/// What the cluster measurement found.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    /// The open-loop rate every setup was driven at for latency: half of
    /// the lowest saturation among the setups.
    half_load_posts_per_sec: f64,
    rows: Vec<Row>,
    /// The runs that failed and were started again, and why.
    retries: Vec<String>,
}

/// The throwaway servers.
struct Servers {
    postgres: Arc<caucus_testkit::Postgres>,
    nats: caucus_testkit::Nats,
    /// PostgreSQL's server process and data directory; nats-server's process.
    postgres_proc: (u32, PathBuf),
    nats_proc: u32,
}

fn port_of(url: &str) -> anyhow::Result<u16> {
    let authority = url.split_once("://").map_or(url, |(_, r)| r);
    let host = authority.split('/').next().unwrap_or(authority);
    host.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("no port in {url}"))
}

impl Servers {
    async fn start() -> anyhow::Result<Self> {
        eprintln!("starting a throwaway PostgreSQL and nats-server…");
        let (postgres, nats) = tokio::task::spawn_blocking(|| {
            Ok::<_, caucus_testkit::Error>((
                caucus_testkit::Postgres::try_start()?,
                caucus_testkit::Nats::try_start()?,
            ))
        })
        .await??;
        let (pg_pid, pg_args) = procs::find_server("postgres", port_of(postgres.url())?)
            .context("PostgreSQL's server process not found")?;
        let data = pg_args
            .windows(2)
            .find(|w| w[0] == "-D")
            .map(|w| PathBuf::from(&w[1]))
            .context("PostgreSQL's data directory not found")?;
        let (nats_pid, _) = procs::find_server("nats-server", port_of(nats.url())?)
            .context("nats-server's process not found")?;
        Ok(Self {
            postgres: Arc::new(postgres),
            nats,
            postgres_proc: (pg_pid, data),
            nats_proc: nats_pid,
        })
    }

    async fn database(&self) -> anyhow::Result<String> {
        let postgres = self.postgres.clone();
        Ok(tokio::task::spawn_blocking(move || postgres.try_database()).await??)
    }
}

/// Start the relays of `store` (each on a fresh database), every member
/// connected, one measured run, the relays stopped.
async fn one_run(
    store: Store,
    servers: &Servers,
    bins: &Bins,
    scratch: &Path,
    sessions: &Arc<Vec<Session>>,
    mode: Mode,
    timing: Timing,
) -> anyhow::Result<Run> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut flags = Vec::new();
    if store != Store::Sled {
        flags.extend(["--store".to_owned(), servers.database().await?]);
    }
    if let Store::Cluster(..) = store {
        flags.extend([
            "--nats".to_owned(),
            servers.nats.url().to_owned(),
            "--cluster".to_owned(),
            format!("bench{}{run}", std::process::id()),
        ]);
    }
    let mut relays: Vec<Relay> = Vec::new();
    let result = async {
        for _ in 0..store.nodes() {
            let key = relays.first().map(Relay::key);
            relays.push(Relay::start_node(bins, scratch, &flags, key.as_deref()).await?);
        }
        let urls: Vec<String> = relays.iter().map(|r| r.url.clone()).collect();
        let placement = match store {
            Store::Cluster(_, p) => p,
            Store::Sled | Store::Postgres => Placement::Spread,
        };
        let socks = drive::join_nodes(Kind::Caucus, &urls, placement, sessions).await?;
        let watch = Watch {
            relays: relays.iter().map(|r| (r.pid(), r.url.clone())).collect(),
            postgres: (store != Store::Sled).then(|| servers.postgres_proc.clone()),
            nats: matches!(store, Store::Cluster(..)).then_some(servers.nats_proc),
        };
        drive::drive(Kind::Caucus, sessions, socks, mode, timing, &watch).await
    }
    .await;
    if let Err(e) = &result {
        eprintln!("{}: {e:#}", store.name());
        for (n, relay) in relays.iter().enumerate() {
            for line in relay.warnings(5) {
                eprintln!("  node {n}: {line}");
            }
        }
    }
    for relay in relays {
        relay.stop().await;
    }
    result
}

/// [`one_run`], started once more if it fails (a relay may refuse a request
/// `unavailable`, "try again later", as a client would); counts the retries.
#[allow(clippy::too_many_arguments)]
async fn run_retrying(
    store: Store,
    servers: &Servers,
    bins: &Bins,
    scratch: &Path,
    sessions: &Arc<Vec<Session>>,
    mode: Mode,
    timing: Timing,
    retries: &mut Vec<String>,
) -> anyhow::Result<Run> {
    match one_run(store, servers, bins, scratch, sessions, mode, timing).await {
        Ok(run) => Ok(run),
        Err(e) => {
            retries.push(format!("{}: {e:#}", store.name()));
            eprintln!("starting that run again");
            one_run(store, servers, bins, scratch, sessions, mode, timing).await
        }
    }
}

/// Measure every setup: the relay on sled, on PostgreSQL, and a cluster of
/// each of `nodes` (members spread; then, for more than one node, sessions
/// spread), at saturation and then all at one open-loop rate.
pub(crate) async fn measure(
    nodes: &[usize],
    bins: &Bins,
    scratch: &Path,
    sessions: &Arc<Vec<Session>>,
    (window, repeat, timing): (usize, usize, Timing),
) -> anyhow::Result<Report> {
    let servers = Servers::start().await?;
    let mut stores = vec![Store::Sled, Store::Postgres];
    stores.extend(nodes.iter().map(|n| Store::Cluster(*n, Placement::Spread)));
    stores.extend(
        nodes
            .iter()
            .filter(|n| **n > 1)
            .map(|n| Store::Cluster(*n, Placement::ByOwner)),
    );
    let mut rows: Vec<Row> = stores
        .iter()
        .map(|s| Row {
            setup: s.name(),
            nodes: s.nodes(),
            saturation: Vec::new(),
            half_load: Vec::new(),
        })
        .collect();
    let mut retries = Vec::new();
    for round in 0..repeat {
        for (store, row) in stores.iter().zip(&mut rows) {
            let run = run_retrying(
                *store,
                &servers,
                bins,
                scratch,
                sessions,
                Mode::Closed { window },
                timing,
                &mut retries,
            )
            .await
            .with_context(|| store.name())?;
            eprintln!(
                "saturation {round} {:<48} {:>7.0} delivered/s  p99 {:>7.0} µs  relay CPU {:.2}  PostgreSQL CPU {:.2}  NATS CPU {:.2}  errors {}",
                row.setup,
                run.delivered_per_sec,
                run.latency.p99,
                run.relay_cpu,
                run.store_cpu,
                run.nats_cpu,
                run.errors
            );
            row.saturation.push(run);
        }
    }
    let half = rows
        .iter()
        .map(|r| med(&r.saturation, |x| x.posts_per_sec))
        .fold(f64::INFINITY, f64::min)
        / 2.0;
    if !half.is_finite() || half <= 0.0 {
        return Err(anyhow!("no saturation measured"));
    }
    for round in 0..repeat {
        for (store, row) in stores.iter().zip(&mut rows) {
            let run = run_retrying(
                *store,
                &servers,
                bins,
                scratch,
                sessions,
                Mode::Open {
                    posts_per_sec: half,
                },
                timing,
                &mut retries,
            )
            .await
            .with_context(|| store.name())?;
            eprintln!(
                "half load {round} {:<48} {:>7.0} delivered/s  p50 {:>6.0} p99 {:>7.0} µs  errors {}",
                row.setup, run.delivered_per_sec, run.latency.p50, run.latency.p99, run.errors
            );
            row.half_load.push(run);
        }
    }
    Ok(Report {
        half_load_posts_per_sec: half,
        rows,
        retries,
    })
}

/// Print the tables of docs/performance.md, "Several relays (issue 16)".
pub(crate) fn print(r: &Report) {
    println!();
    println!(
        "Several relays: saturation (closed loop), then all at {:.0} posts/s (half the lowest saturation), open loop; medians of {} runs",
        r.half_load_posts_per_sec,
        r.rows.first().map_or(0, |row| row.saturation.len())
    );
    println!(
        "| setup | nodes | delivered env/s (saturation) | posts/s (saturation) | p99 µs (saturation) | delivered env/s (same load) | p50 µs (same load) | p99 µs (same load) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &r.rows {
        let (s, h) = (&row.saturation, &row.half_load);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            row.setup,
            row.nodes,
            med(s, |x| x.delivered_per_sec),
            med(s, |x| x.posts_per_sec),
            med(s, |x| x.latency.p99),
            med(h, |x| x.delivered_per_sec),
            med(h, |x| x.latency.p50),
            med(h, |x| x.latency.p99),
        );
    }
    println!();
    println!("Cost per post, at saturation (CPU µs per post accepted; bytes per post)");
    println!(
        "| setup | relay CPU µs | PostgreSQL CPU µs | NATS CPU µs | load generator CPU µs | PostgreSQL bytes written | PostgreSQL data file growth, bytes | group commit ms / batches |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &r.rows {
        let s = &row.saturation;
        let per = |f: fn(&Run) -> f64| med(s, |x| f(x) / x.posts_per_sec.max(1.0));
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} / {:.0} |",
            row.setup,
            per(|x| x.relay_cpu * 1e6),
            per(|x| x.store_cpu * 1e6),
            per(|x| x.nats_cpu * 1e6),
            per(|x| x.loadgen_cpu * 1e6),
            per(|x| x.store_write_bytes_per_sec),
            per(|x| x.store_growth_bytes_per_sec),
            med(s, |x| x.commit_ms),
            med(s, |x| x.commit_group),
        );
    }
    println!();
    println!("Runs started again: {}", r.retries.len());
    for why in &r.retries {
        println!("- {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_of_a_server_url() {
        assert_eq!(
            port_of("postgres://postgres@127.0.0.1:5433/caucus_test_1").unwrap(),
            5433
        );
        assert_eq!(port_of("nats://127.0.0.1:4222").unwrap(), 4222);
        assert!(port_of("postgres://localhost/caucus").is_err());
    }
}
