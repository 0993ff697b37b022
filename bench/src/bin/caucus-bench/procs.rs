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
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Caucus => "caucus (durable ack)",
            Self::CaucusNoFlush => "caucus (ack before commit)",
            Self::Bare => "bare relay",
            Self::Nats => "nats-server",
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
        let port = free_port()?;
        let dir = scratch.join(format!("{kind:?}-{port}"));
        std::fs::create_dir_all(&dir)?;
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
                    .args(["--max-connections", "20000"])
                    .args(["--max-connections-per-ip", "20000"])
                    .args(["--max-handshakes-per-ip", "20000"])
                    // Likewise each device's document upload budget (16 MiB/s
                    // by default), so that a document measures the relay.
                    .args(["--upload-bytes-per-sec", "4294967295"])
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
            Kind::Nats => {
                let conf = dir.join("nats.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "listen: 127.0.0.1:{}\nmax_connections: 20000\nwebsocket {{\n  listen: \"{listen}\"\n  no_tls: true\n  compression: false\n}}\n",
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

    /// Stop it and remove its scratch directory.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CPU seconds (user + system) used so far by process `pid` (`self` works).
pub(crate) fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 per second).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
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
