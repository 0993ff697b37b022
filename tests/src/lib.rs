//! Shared harness for the end-to-end tests in `tests/tests/`: a real relay
//! on a loopback port over a real sled directory, helpers to wait for
//! client events, and ([`proxy`]) a hostile relay under the test's control
//! that sits between real clients and the real relay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test harness

pub mod proxy;

use std::time::Duration;

use caucus_client::{Client, Event};

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// A relay running in this process. Dropped, it stops before its data
/// directory is removed.
pub struct Relay {
    /// Its websocket URL.
    pub url: String,
    /// The flags it was started with, to start again with.
    flags: Vec<String>,
    // Before `dir`: fields are dropped in order.
    running: Stopping,
    /// Its data directory.
    pub dir: tempfile::TempDir,
}

/// A running relay that stops when dropped, so that it never writes to a
/// data directory already removed: its writes would fail (and a relay whose
/// store fails exits, taking the test process with it).
struct Stopping(Option<caucus_server::Running>);

impl Stopping {
    async fn stop(mut self) {
        if let Some(running) = self.0.take() {
            running.stop().await.unwrap();
        }
    }
}

impl Drop for Stopping {
    fn drop(&mut self) {
        let Some(running) = self.0.take() else {
            return;
        };
        // Blocking a worker until the relay has stopped needs a
        // multi-threaded runtime: every test here has one.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return; // no runtime left to run the relay
        };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            assert!(
                std::thread::panicking(),
                "a test with a relay runs on a multi-threaded runtime"
            );
            return;
        }
        let stopped = tokio::task::block_in_place(|| {
            handle.block_on(tokio::time::timeout(WAIT, running.stop()))
        });
        match stopped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("the relay did not stop well: {e}"),
            Err(_) if std::thread::panicking() => {
                eprintln!("the relay did not stop within {WAIT:?}")
            }
            Err(_) => panic!("the relay did not stop within {WAIT:?}"),
        }
    }
}

impl Relay {
    /// Start a relay on `127.0.0.1:0` over a fresh data directory, with
    /// extra `flags`.
    pub async fn start(flags: &[&str]) -> Self {
        Self::start_at(tempfile::tempdir().unwrap(), "127.0.0.1:0", flags).await
    }

    /// Stop gracefully (clients are closed with 1001) and start again on
    /// the same address and data directory.
    pub async fn restart(self) -> Self {
        let addr = self.url.trim_start_matches("ws://").to_string();
        self.running.stop().await;
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        Self::start_at(self.dir, &addr, &flags).await
    }

    /// A new device with a fresh state directory, connected to this relay.
    pub async fn device(&self) -> (Client, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::open(
            caucus_client::StateDir::open(dir.path()).unwrap(),
            &self.url,
        )
        .await
        .unwrap();
        (client, dir)
    }

    /// Stop gracefully; the data directory, to look into.
    pub async fn stop(self) -> tempfile::TempDir {
        self.running.stop().await;
        self.dir
    }

    async fn start_at(dir: tempfile::TempDir, listen: &str, flags: &[&str]) -> Self {
        let data = dir.path().display().to_string();
        let mut all = vec!["--listen", listen, "--data-dir", &data];
        all.extend_from_slice(flags);
        let running = caucus_server::Server::spawn(&all).await.unwrap();
        Self {
            url: running.url().to_string(),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            running: Stopping(Some(running)),
            dir,
        }
    }
}

/// Wait for the first event matching `pred`, passing over others.
pub async fn wait_for(client: &mut Client, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.next_event_within(left).await {
            Some(e) if pred(&e) => return e,
            Some(_) => continue,
            None => panic!("no matching event within {WAIT:?}"),
        }
    }
}

/// The relay's stored records (by key) that belong to `session`, read from
/// its sled directory (the relay must be stopped): every key holds the
/// session id in bytes 1..17, after its one-byte kind.
pub fn stored_records(dir: &std::path::Path, session: &caucus_protocol::ids::SessionId) -> Vec<u8> {
    let db = sled::open(dir).unwrap();
    let tree = db.open_tree("caucus").unwrap();
    tree.iter()
        .keys()
        .map(Result::unwrap)
        .filter(|k| k.get(1..17) == Some(&session.0[..]))
        .map(|k| k[0])
        .collect()
}

/// Whether any file under `dir` contains `needle`.
pub fn dir_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            dir_contains(&path, needle)
        } else {
            std::fs::read(&path)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        }
    })
}
