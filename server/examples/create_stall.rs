//! How much one device creating sessions in a loop delays another
//! session's writes (`docs/operations.md` section 8):
//!
//! ```sh
//! cargo build --release -p caucus-server --examples
//! target/release/examples/create_stall ws://127.0.0.1:7300 150
//! ```
//!
//! Against a running relay (started with `--max-sessions-per-device`,
//! `--max-connections-per-ip`, `--max-handshakes-per-ip`, `--ip-rate-per-sec`
//! and `--ip-rate-burst` high enough for the load), measures another
//! mediator's `create_invite` round trip alone, then while N connections of
//! one device loop `create_session`, and prints the median and the 99th
//! percentile of each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use caucus_protocol::auth::AuthTarget;
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::crypto::Digest;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{InviteId, SessionId};
use caucus_protocol::session::SessionView;
use caucus_protocol::wire::{Encoded, Event, Reply, Request, RequestBody, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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

async fn connect(url: &str, keys: &DeviceKeys) -> Ws {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "caucus.v1".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let Some(Ok(Message::Text(t))) = ws.next().await else {
        panic!("no challenge")
    };
    let ServerFrame::Event(event) = serde_json::from_str(t.as_str()).unwrap() else {
        panic!("no challenge")
    };
    let Event::Challenge { nonce, relay, .. } = *event else {
        panic!("no challenge")
    };
    let body = RequestBody::Auth {
        identity: Encoded(keys.public().clone()),
        url: url.to_owned(),
        signature: AuthTarget::new(nonce, relay.0.fingerprint(), url).sign(keys),
    };
    request(&mut ws, 0, body).await;
    ws
}

fn create(keys: &DeviceKeys) -> (SessionId, RequestBody) {
    let id = SessionId::random().unwrap();
    let mut builder = RosterBuilder::new(id, keys, "Mediator").unwrap();
    builder.add_party("P").unwrap();
    let (roster, _) = builder
        .sign(keys, &SessionView::new(id, keys.fingerprint()))
        .unwrap();
    let body = RequestBody::CreateSession {
        roster: Encoded(roster),
    };
    (id, body)
}

/// `rounds` invites of `session`, one after another: each round trip.
async fn invites(ws: &mut Ws, session: SessionId, from: u32, rounds: u32) -> Vec<Duration> {
    let mut times = Vec::new();
    for n in from..from + rounds {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        let body = RequestBody::CreateInvite {
            session,
            invite: InviteId(id),
            token_hash: Digest([1; 32]),
            expires_at: u64::from(u32::MAX),
        };
        let started = Instant::now();
        request(ws, u64::from(n) + 1, body).await;
        times.push(started.elapsed());
    }
    times.sort();
    times
}

fn summary(times: &[Duration]) -> String {
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    format!(
        "median {:.1} ms, p99 {:.1} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: create_stall URL [N]");
    let n: usize = args.next().map_or(150, |n| n.parse().unwrap());
    let other = DeviceKeys::generate().unwrap();
    let mut ws = connect(&url, &other).await;
    let (session, body) = create(&other);
    request(&mut ws, 1, body).await;
    let alone = invites(&mut ws, session, 0, 50).await;
    eprintln!("create_invite alone: {}", summary(&alone));
    let attacker = DeviceKeys::generate().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (url, keys, stop) = (
            url.clone(),
            DeviceKeys::from_secret_bytes(&attacker.to_secret_bytes()).unwrap(),
            stop.clone(),
        );
        loops.spawn(async move {
            let mut ws = connect(&url, &keys).await;
            let mut id = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (_, body) = create(&keys);
                request(&mut ws, id, body).await;
                id += 1;
            }
            id - 1
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = invites(&mut ws, session, 1000, 50).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut created = 0;
    while let Some(done) = loops.join_next().await {
        created += done.unwrap();
    }
    eprintln!(
        "create_invite while {n} connections of one device loop create_session: {} ({created} sessions created)",
        summary(&loaded)
    );
}
