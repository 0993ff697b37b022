//! Relay nodes as processes on one [`Postgres`] and one [`Nats`]: the
//! cluster the relay's and the end-to-end tests start (docs/cluster.md).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::{Nats, Postgres};

/// One relay node: a process of the relay's binary, killed when dropped.
pub struct Node {
    /// The process.
    pub child: Child,
    /// Its websocket URL, `ws://127.0.0.1:PORT`.
    pub url: String,
    /// Its data directory, holding the cluster's relay key.
    dir: tempfile::TempDir,
}

impl Node {
    /// Its address.
    ///
    /// # Panics
    ///
    /// If the URL it printed names none.
    #[allow(clippy::panic)] // The kit's failures fail the test.
    pub fn addr(&self) -> SocketAddr {
        self.url
            .trim_start_matches("ws://")
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", self.url))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Relay nodes on one throwaway PostgreSQL and one nats-server, every node
/// holding the first node's relay key.
pub struct Cluster {
    /// The nodes, in the order started.
    pub nodes: Vec<Node>,
    /// Their NATS server.
    pub nats: Nats,
    /// Their database's server.
    pub postgres: Postgres,
}

impl Cluster {
    /// Start `count` processes of the relay binary `binary`, each with
    /// `--listen 127.0.0.1:0`, its own `--data-dir`, the database and NATS
    /// server, and `flags`; each logs to this process's standard error at
    /// `CAUCUS_TEST_LOG` (default `warn`) and drains for no time.
    ///
    /// # Panics
    ///
    /// If a server or a node cannot be started.
    #[allow(clippy::panic)] // The kit's failures fail the test.
    pub fn start(binary: &Path, count: usize, flags: &[&str]) -> Self {
        let postgres = Postgres::start();
        let nats = Nats::start();
        let log = std::env::var("CAUCUS_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let mut nodes: Vec<Node> = Vec::with_capacity(count);
        for _ in 0..count {
            let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
                panic!("starting a relay node: {what}: {e}")
            };
            let dir = tempfile::tempdir().unwrap_or_else(|e| fail("a data directory", &e));
            if let Some(first) = nodes.first() {
                std::fs::copy(
                    first.dir.path().join("relay.key"),
                    dir.path().join("relay.key"),
                )
                .unwrap_or_else(|e| fail("copying the relay key", &e));
            }
            let mut child = Command::new(binary)
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path())
                .args(["--store", postgres.url(), "--nats", nats.url()])
                .args(flags)
                .env("RUST_LOG", &log)
                .env("CAUCUS_DRAIN_SECS", "0")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| fail(&binary.display().to_string(), &e));
            let mut line = String::new();
            if let Some(stdout) = child.stdout.take() {
                let _ = BufReader::new(stdout).read_line(&mut line);
            }
            let url = line
                .trim()
                .strip_prefix("caucus-server listening on ")
                .unwrap_or_else(|| fail("its first line", &format!("{line:?}")))
                .to_owned();
            nodes.push(Node { child, url, dir });
        }
        Self {
            nodes,
            nats,
            postgres,
        }
    }

    /// `kill -9` node `i`, and wait until it is gone.
    pub fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
}
