//! What an idle session costs the relay, in memory and on disk
//! (`docs/operations.md` section 7, "What a session costs"):
//!
//! ```sh
//! cargo build --release -p caucus-server --examples
//! target/release/examples/idle_sessions target/release/caucus-server 2000
//! ```
//!
//! Starts the relay binary given on a scratch directory, creates N sessions
//! (each its own mediator: a roster of two parties, published with its key
//! bundles, so that the relay holds it in memory), closes every connection,
//! and prints the relay's resident memory and its data directory's size
//! before and after, and the difference per session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use caucus_protocol::auth::AuthTarget;
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::SessionId;
use caucus_protocol::session::SessionView;
use caucus_protocol::wire::{Encoded, Event, Reply, Request, RequestBody, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Bytes in the files under `dir`.
fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                size_of(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

async fn request(ws: &mut Ws, id: u64, body: RequestBody) {
    let text = serde_json::to_string(&Request { v: 1, id, body }).unwrap();
    ws.send(Message::text(text)).await.unwrap();
    loop {
        let t = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("connection lost: {other:?}"),
        };
        if let ServerFrame::Reply(reply) = serde_json::from_str(t.as_str()).unwrap() {
            match reply {
                Reply::Ok { .. } => return,
                other => panic!("refused: {other:?}"),
            }
        }
    }
}

/// One session, created and keyed by its own mediator.
async fn session(url: &str) {
    let mut request_ = url.into_client_request().unwrap();
    request_
        .headers_mut()
        .insert("sec-websocket-protocol", "caucus.v1".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request_).await.unwrap();
    let Some(Ok(Message::Text(t))) = ws.next().await else {
        panic!("no challenge")
    };
    let ServerFrame::Event(event) = serde_json::from_str(t.as_str()).unwrap() else {
        panic!("no challenge")
    };
    let Event::Challenge { nonce, relay, .. } = *event else {
        panic!("no challenge")
    };
    let keys = DeviceKeys::generate().unwrap();
    let body = RequestBody::Auth {
        identity: Encoded(keys.public().clone()),
        url: url.to_owned(),
        signature: AuthTarget::new(nonce, relay.0.fingerprint(), url).sign(&keys),
    };
    request(&mut ws, 1, body).await;
    let id = SessionId::random().unwrap();
    let mut builder = RosterBuilder::new(id, &keys, "Mediator").unwrap();
    builder.add_party("Claimant").unwrap();
    builder.add_party("Respondent").unwrap();
    let mut view = SessionView::new(id, keys.fingerprint());
    let (roster, room_keys) = builder.sign(&keys, &view).unwrap();
    view.accept_roster(roster.clone()).unwrap();
    let create = RequestBody::CreateSession {
        roster: Encoded(roster),
    };
    request(&mut ws, 2, create).await;
    for (n, room_key) in room_keys.iter().enumerate() {
        let bundle = view.seal_key_bundle(&keys, room_key).unwrap();
        let publish = RequestBody::PublishKeys {
            bundle: Encoded(bundle),
        };
        request(&mut ws, 3 + n as u64, publish).await;
    }
    let _ = ws.close(None).await;
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let relay = args.next().expect("usage: idle_sessions RELAY-BINARY [N]");
    let n: usize = args.next().map_or(1000, |n| n.parse().unwrap());
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let mut child = Command::new(relay)
        .args(["--listen", "127.0.0.1:0", "--no-web", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .trim_start_matches("caucus-server listening on ")
        .to_owned();
    // One session first, so that what every relay holds anyway is counted
    // in the baseline.
    session(&url).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (rss0, disk0) = (rss_kib(child.id()), size_of(&data));
    for chunk in 0..n.div_ceil(50) {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..50.min(n - chunk * 50) {
            let url = url.clone();
            batch.spawn(async move { session(&url).await });
        }
        while let Some(done) = batch.join_next().await {
            done.unwrap();
        }
    }
    // Let the connections close and sled write out.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (rss1, disk1) = (rss_kib(child.id()), size_of(&data));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / n as f64;
    println!("sessions: {n}");
    println!(
        "RSS: {rss0} KiB -> {rss1} KiB, {:.2} KiB per session",
        per(rss0, rss1)
    );
    println!(
        "data dir: {disk0} B -> {disk1} B, {:.0} B per session",
        per(disk0, disk1)
    );
}
