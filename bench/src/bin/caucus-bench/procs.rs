//! The relays under test as child processes, and what `/proc` says about
//! them: CPU time and resident memory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Which relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The Caucus relay, acknowledging after the durable commit.
    Caucus,
    /// The Caucus relay with `--unsafe-ack-before-commit`.
    CaucusNoFlush,
    /// `bare-relay`.
    Bare,
    /// nats-server, websocket listener.
    Nats,
    /// nats-server with JetStream: file storage, publishes acknowledged
    /// once stored, durable push consumers acknowledging every delivery.
    JetStream,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Caucus => "caucus (durable ack)",
            Self::CaucusNoFlush => "caucus (ack before commit)",
            Self::Bare => "bare relay",
            Self::Nats => "nats-server",
            Self::JetStream => "nats jetstream (file, acked)",
        }
    }
}

/// Where the binaries are.
#[derive(Clone)]
pub(crate) struct Bins {
    pub(crate) caucus: PathBuf,
    pub(crate) bare: PathBuf,
    pub(crate) nats: PathBuf,
}

/// The most connections the benchmark lets a Caucus relay hold (its
/// default is 20,000): as many as its descriptors allow, for the service's
/// day (`day.rs`).
pub(crate) const MAX_CONNECTIONS: usize = 100_000;

/// A running relay; killed when dropped.
pub(crate) struct Relay {
    pub(crate) url: String,
    child: Child,
    dir: PathBuf,
}

/// A free loopback port (bound, then released).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Relay {
    /// Start one relay of `kind` on loopback with its own scratch directory.
    pub(crate) async fn start(kind: Kind, bins: &Bins, scratch: &Path) -> anyhow::Result<Self> {
        Self::start_with(kind, bins, scratch, &[], None).await
    }

    /// Start a Caucus relay with further flags (`--store postgres://…`,
    /// `--nats …`), holding a copy of the relay key at `key` if given (every
    /// node of a cluster holds the first node's).
    pub(crate) async fn start_node(
        bins: &Bins,
        scratch: &Path,
        flags: &[String],
        key: Option<&Path>,
    ) -> anyhow::Result<Self> {
        Self::start_with(Kind::Caucus, bins, scratch, flags, key).await
    }

    async fn start_with(
        kind: Kind,
        bins: &Bins,
        scratch: &Path,
        flags: &[String],
        key: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = scratch.join(format!("{kind:?}-{port}"));
        std::fs::create_dir_all(dir.join("data"))?;
        if let Some(key) = key {
            std::fs::copy(key, dir.join("data").join("relay.key"))?;
        }
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = match kind {
            Kind::Caucus | Kind::CaucusNoFlush => {
                let mut c = Command::new(&bins.caucus);
                c.args(["--listen", &listen, "--data-dir"])
                    .arg(dir.join("data"))
                    // The rate limits (per connection, device, address) and
                    // the per-address counts protect a relay from one client;
                    // the benchmark measures capacity from one address, so
                    // lift them.
                    .args(["--rate-per-sec", "1000000", "--rate-burst", "1000000"])
                    .args(["--ip-rate-per-sec", "1000000", "--ip-rate-burst", "1000000"])
                    .arg("--max-connections")
                    .arg(MAX_CONNECTIONS.to_string())
                    .args(["--max-connections-per-ip", "20000"])
                    .args(["--max-handshakes-per-ip", "20000"])
                    // Likewise each device's document upload budget (16 MiB/s
                    // by default), so that a document measures the relay.
                    .args(["--upload-bytes-per-sec", "4294967295"])
                    .args(flags)
                    .env("RUST_LOG", "warn");
                if kind == Kind::CaucusNoFlush {
                    c.arg("--unsafe-ack-before-commit");
                }
                c
            }
            Kind::Bare => {
                let mut c = Command::new(&bins.bare);
                c.args(["--listen", &listen]);
                c
            }
            Kind::Nats | Kind::JetStream => {
                let conf = dir.join("nats.conf");
                // JetStream: file storage in the run's directory; how often
                // it syncs to disk is the server's default (docs/performance.md).
                let jetstream = if kind == Kind::JetStream {
                    format!("jetstream {{\n  store_dir: {:?}\n}}\n", dir.join("js"))
                } else {
                    String::new()
                };
                std::fs::write(
                    &conf,
                    format!(
                        "listen: 127.0.0.1:{}\nmax_connections: 20000\nwebsocket {{\n  listen: \"{listen}\"\n  no_tls: true\n  compression: false\n}}\n{jetstream}",
                        free_port()?
                    ),
                )?;
                let mut c = Command::new(&bins.nats);
                c.arg("-c").arg(conf);
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(dir.join("stderr.log"))?))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        let url = format!("ws://{listen}");
        if let Some(out) = child.stdout.take() {
            // Keep draining stdout so the child never blocks on it.
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(_)) = lines.next_line().await {}
            });
        }
        let mut waited = Duration::ZERO;
        while tokio::net::TcpStream::connect(&listen).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "{} exited ({status}); see {}",
                    kind.name(),
                    dir.join("stderr.log").display()
                );
            }
            if waited > Duration::from_secs(20) {
                bail!("{} did not start listening", kind.name());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        Ok(Self { url, child, dir })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Its relay key (a Caucus relay's).
    pub(crate) fn key(&self) -> PathBuf {
        self.dir.join("data").join("relay.key")
    }

    /// The last `n` warnings and errors the relay logged.
    pub(crate) fn warnings(&self, n: usize) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        let found: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        found
            .iter()
            .skip(found.len().saturating_sub(n))
            .map(|l| (*l).to_owned())
            .collect()
    }

    /// Stop it and remove its scratch directory.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The numeric fields of `/proc/PID/stat` after the parenthesised command
/// name (so index 0 is the state, 1 the parent, 11 and 12 utime and stime,
/// 13 and 14 the reaped children's, in clock ticks of 100 per second).
fn stat_fields(pid: &str) -> Vec<f64> {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Vec::new();
    };
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .collect()
}

fn field(fields: &[f64], i: usize) -> f64 {
    fields.get(i).copied().unwrap_or(0.0)
}

/// CPU seconds (user + system) used so far by process `pid` (`self` works).
pub(crate) fn cpu_seconds(pid: &str) -> f64 {
    let f = stat_fields(pid);
    (field(&f, 11) + field(&f, 12)) / 100.0
}

/// Every process id on the machine.
fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|c| field(&stat_fields(&c.to_string()), 1) == f64::from(pid))
        .collect()
}

/// A server process found by its command (`postgres`, `nats-server`) and a
/// `-p PORT` among its arguments, with its arguments.
pub(crate) fn find_server(command: &str, port: u16) -> Option<(u32, Vec<String>)> {
    let port = port.to_string();
    all_pids().into_iter().find_map(|pid| {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() != command {
            return None;
        }
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        args.windows(2)
            .any(|w| w[0] == "-p" && w[1] == port)
            .then_some((pid, args))
    })
}

/// CPU seconds used so far by server `pid` and all its processes: its own,
/// its children's that have ended, and its live children's (PostgreSQL's
/// backends, writers and checkpointer).
pub(crate) fn tree_cpu_seconds(pid: u32) -> f64 {
    let own = stat_fields(&pid.to_string());
    let live: f64 = children(pid)
        .into_iter()
        .map(|c| cpu_seconds(&c.to_string()))
        .sum();
    (field(&own, 11) + field(&own, 12) + field(&own, 13) + field(&own, 14)) / 100.0 + live
}

/// Bytes that server `pid` and its live children have caused to be written
/// to storage so far (`/proc/PID/io`, `write_bytes`).
pub(crate) fn tree_write_bytes(pid: u32) -> f64 {
    std::iter::once(pid)
        .chain(children(pid))
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/io")).ok())
        .filter_map(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .sum()
}

/// Bytes of the files under `dir`, all the way down.
pub(crate) fn du_bytes(dir: &Path) -> f64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du_bytes(&e.path()),
            Ok(m) => m.len() as f64,
            Err(_) => 0.0,
        })
        .sum()
}

/// A `/proc/PID/status` memory figure in KiB (`VmRSS`, `VmHWM`).
pub(crate) fn mem_kib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// The file descriptors process `pid` may open (`self` works), from
/// `/proc/PID/limits`: the soft limit, then the hard one (`u64::MAX` for
/// unlimited, 0 if unknown).
pub(crate) fn open_files_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let mut values = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|v| {
            if v == "unlimited" {
                u64::MAX
            } else {
                v.parse().unwrap_or(0)
            }
        });
    (values.next().unwrap_or(0), values.next().unwrap_or(0))
}

/// How many file descriptors process `pid` has open.
pub(crate) fn open_files(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The machine's memory, KiB.
pub(crate) fn mem_kib_total() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// The Caucus relay's group commits so far, from `GET /metrics`: how many
/// groups, how many batches, and the seconds they took (apply and flush).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Commits {
    pub(crate) groups: f64,
    pub(crate) batches: f64,
    pub(crate) seconds: f64,
}

impl Commits {
    /// Two relays' counters together.
    pub(crate) fn plus(self, other: Self) -> Self {
        Self {
            groups: self.groups + other.groups,
            batches: self.batches + other.batches,
            seconds: self.seconds + other.seconds,
        }
    }

    /// The commits between `self` (earlier) and `later`.
    pub(crate) fn since(self, later: Self) -> Self {
        Self {
            groups: later.groups - self.groups,
            batches: later.batches - self.batches,
            seconds: later.seconds - self.seconds,
        }
    }
}

/// Read the relay's commit counters (zero if it has none, as for the
/// bare relay and nats-server).
pub(crate) async fn commits(url: &str) -> Commits {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(addr) = url.strip_prefix("ws://") else {
        return Commits::default();
    };
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return Commits::default();
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    if s.write_all(request.as_bytes()).await.is_err() || s.read_to_string(&mut body).await.is_err()
    {
        return Commits::default();
    }
    let value = |name: &str| {
        body.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    Commits {
        groups: value("caucus_commit_seconds_count "),
        batches: value("caucus_commits_total "),
        seconds: value("caucus_commit_seconds_sum "),
    }
}
