//! The relay under abuse: clients that stop reading, hold sockets open
//! without finishing a handshake, spread their requests over several
//! connections, log in twice, or create sessions and invites without end.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use caucus_protocol::auth::AuthTarget;
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::content::{Content, Sharing};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{InviteId, SessionId};
use caucus_protocol::session::SessionView;
use caucus_protocol::wire::{Encoded, ErrorCode, Event, Reply, Request, RequestBody, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use support::{Client, Mediation, Relay, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The relay's `/metrics` text.
async fn metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The value of the metric `name` (a line `name value`).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Poll `/metrics` until `done` holds of it, or fail after a generous
/// while: for a condition the relay reaches on its own.
async fn until_metrics(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(addr).await;
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP connection to the relay from the loopback address `from`
/// (Linux answers on all of 127.0.0.0/8).
async fn tcp_from(relay: &Relay, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    socket.connect(relay.addr).await.unwrap()
}

/// A websocket handshake over `stream`; whether the relay answered `101`.
async fn upgrades(relay: &Relay, stream: TcpStream) -> bool {
    let mut request = relay.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "caucus.v1".parse().unwrap());
    tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .unwrap()
        .is_ok()
}

/// Whether the relay has closed `stream`, reading (and discarding) what it
/// sent first.
async fn closed_by_relay(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn copy(keys: &DeviceKeys) -> DeviceKeys {
    DeviceKeys::from_secret_bytes(&keys.to_secret_bytes()).unwrap()
}

/// A first roster of a new session led by `keys`.
fn first_roster(keys: &DeviceKeys) -> RequestBody {
    let session = SessionId::random().unwrap();
    let mut builder = RosterBuilder::new(session, keys, "Mediator").unwrap();
    builder.add_party("P").unwrap();
    let (roster, _) = builder
        .sign(keys, &SessionView::new(session, keys.fingerprint()))
        .unwrap();
    RequestBody::CreateSession {
        roster: Encoded(roster),
    }
}

/// The session of a `create_session` request.
fn session_of(create: &RequestBody) -> SessionId {
    match create {
        RequestBody::CreateSession { roster } => roster.0.unverified().session,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_is_closed_as_too_slow_while_it_still_reads_nothing() {
    let relay = Relay::start_with(&["--outbound-queue", "64", "--write-timeout-secs", "1"]).await;
    let mut m = Mediation::start(&relay).await;
    let room = m.joint_room;
    // The defendant subscribed and now reads nothing at all; the claimant
    // floods the joint room with 100 KB messages, which the mediator and
    // the solicitor read as they come, until the relay gives up on the
    // defendant (or far more than its socket buffers and queue hold).
    let bulk = "x".repeat(100_000);
    let keys = copy(&m.claimant.keys);
    let mut cut = false;
    for n in 0..400 {
        let content = Content::Text {
            sharing: Sharing::MayShare,
            body: format!("{n}{bulk}"),
        };
        let envelope = m.views[1].seal(&keys, &room, &content).unwrap();
        m.claimant
            .ok(RequestBody::Post {
                envelope: Encoded(envelope),
            })
            .await;
        for reader in [&mut m.solicitor, &mut m.mediator] {
            reader
                .wait_for(|e| matches!(e, Event::Envelope { .. }))
                .await;
        }
        if n % 20 == 19 && metric(&metrics(relay.addr).await, "caucus_slow_consumers_total") > 0 {
            cut = true;
            break;
        }
    }
    assert!(cut, "a member that reads nothing was never cut off");
    // Its connection is gone (the other three remain), though it never
    // read a byte since it subscribed.
    until_metrics(relay.addr, "down to three connections", |t| {
        metric(t, "caucus_connections") == 3
    })
    .await;
}

#[tokio::test]
async fn one_address_is_held_to_its_connection_limit_while_another_still_connects() {
    let relay = Relay::start_with(&["--max-connections-per-ip", "2"]).await;
    // Two sockets from 127.0.0.1 that never send a byte hold its two places.
    let _a = tcp_from(&relay, [127, 0, 0, 1]).await;
    let _b = tcp_from(&relay, [127, 0, 0, 1]).await;
    let mut third = tcp_from(&relay, [127, 0, 0, 1]).await;
    assert!(closed_by_relay(&mut third).await);
    assert!(!upgrades(&relay, tcp_from(&relay, [127, 0, 0, 1]).await).await);
    // Another address is not held up.
    assert!(upgrades(&relay, tcp_from(&relay, [127, 0, 0, 2]).await).await);
    let text = metrics_from(&relay, [127, 0, 0, 3]).await;
    assert!(metric(&text, "caucus_sockets_refused_total") >= 2, "{text}");
}

/// `/metrics` fetched from the loopback address `from`.
async fn metrics_from(relay: &Relay, from: [u8; 4]) -> String {
    let mut s = tcp_from(relay, from).await;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn sockets_still_in_their_handshake_are_limited_per_address_but_logged_in_ones_are_not() {
    let relay = Relay::start_with(&["--max-handshakes-per-ip", "2"]).await;
    // Three logged-in connections from 127.0.0.1 are no handshakes.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await);
    }
    // Two silent sockets are; a third handshake from there is refused.
    let _a = tcp_from(&relay, [127, 0, 0, 1]).await;
    let _b = tcp_from(&relay, [127, 0, 0, 1]).await;
    let mut third = tcp_from(&relay, [127, 0, 0, 1]).await;
    assert!(closed_by_relay(&mut third).await);
    // Another address still connects, and the logged-in ones still work.
    assert!(upgrades(&relay, tcp_from(&relay, [127, 0, 0, 2]).await).await);
    let session = SessionId::random().unwrap();
    for c in &mut clients {
        assert_eq!(
            c.refused(RequestBody::DeletionStatement { session }).await,
            ErrorCode::NotFound
        );
    }
}

#[tokio::test]
async fn a_socket_that_never_finishes_its_request_head_is_closed_after_the_header_timeout() {
    // The authentication timeout is long: only the header timeout can close it.
    let relay = Relay::start_with(&["--header-secs", "1", "--auth-secs", "60"]).await;
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed_by_relay(&mut s).await);
    // A socket that sends nothing at all, likewise.
    let mut silent = TcpStream::connect(relay.addr).await.unwrap();
    assert!(closed_by_relay(&mut silent).await);
}

/// Send `n` requests at once on `c` (each asking for a statement no one
/// holds), then read their replies: how many were refused as
/// `rate_limited`, and how many were handled (`not_found`).
async fn burst(c: &mut Client, n: usize, first_id: u64) -> (usize, usize) {
    let session = SessionId::random().unwrap();
    for id in first_id..first_id + n as u64 {
        let text = serde_json::to_string(&Request {
            v: 1,
            id,
            body: RequestBody::DeletionStatement { session },
        })
        .unwrap();
        c.send_text(text).await;
    }
    let (mut limited, mut handled) = (0, 0);
    for _ in 0..n {
        match c.next_reply().await {
            Reply::Error {
                code: ErrorCode::RateLimited,
                id,
                ..
            } => {
                // Refused before it is parsed, yet it names its request.
                assert!(id.is_some_and(|id| id >= first_id));
                limited += 1;
            }
            Reply::Error {
                code: ErrorCode::NotFound,
                ..
            } => handled += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    (limited, handled)
}

#[tokio::test]
async fn one_device_on_several_connections_is_held_to_one_devices_rate() {
    // 10 requests at once, then one a second, for the device as a whole.
    let relay = Relay::start_with(&["--rate-per-sec", "1", "--rate-burst", "10"]).await;
    let keys = DeviceKeys::generate().unwrap();
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(Client::connect(&relay.url(), copy(&keys)).await);
    }
    let (mut limited, mut handled) = (0, 0);
    for c in &mut connections {
        let (l, h) = burst(c, 10, 1000).await;
        limited += l;
        handled += h;
    }
    // Each connection alone would have taken 9 (its `auth` took one of
    // its 10): 36. The device has 10, and a token a second since.
    assert_eq!(limited + handled, 40);
    assert!(handled >= 10, "{handled} handled");
    assert!(
        handled < 20,
        "{handled} handled: one device got several devices' rate"
    );
}

#[tokio::test]
async fn devices_behind_one_address_share_its_rate() {
    let relay = Relay::start_with(&["--ip-rate-per-sec", "1", "--ip-rate-burst", "12"]).await;
    let mut a = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    let mut b = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    let (la, ha) = burst(&mut a, 10, 1000).await;
    let (lb, hb) = burst(&mut b, 10, 1000).await;
    // The address's 12 went to two logins and ten requests, and a token a
    // second since; each device alone is far inside its own rate.
    assert_eq!(la + ha + lb + hb, 20);
    assert!(ha + hb >= 10, "{} handled", ha + hb);
    assert!(
        ha + hb < 15,
        "{} handled: the address's rate was not shared",
        ha + hb
    );
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Send `message` and read frames up to the next reply.
async fn reply(ws: &mut Ws, message: Message) -> Reply {
    ws.send(message).await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => {
                if let ServerFrame::Reply(r) = serde_json::from_str(t.as_str()).unwrap() {
                    return r;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_second_auth_on_a_connection_is_refused_and_changes_nothing() {
    let relay = Relay::start().await;
    let mut ws = support::raw_connect(&relay.url()).await;
    let (nonce, relay_id) = match ws.next().await {
        Some(Ok(Message::Text(t))) => match serde_json::from_str(t.as_str()).unwrap() {
            ServerFrame::Event(e) => match *e {
                Event::Challenge { nonce, relay, .. } => (nonce, relay.0.fingerprint()),
                other => panic!("expected a challenge, got {other:?}"),
            },
            other => panic!("expected a challenge, got {other:?}"),
        },
        other => panic!("expected a challenge, got {other:?}"),
    };
    let first = DeviceKeys::generate().unwrap();
    let second = DeviceKeys::generate().unwrap();
    let auth = |keys: &DeviceKeys, id: u64| {
        let url = relay.url();
        let body = RequestBody::Auth {
            identity: Encoded(keys.public().clone()),
            signature: AuthTarget::new(nonce, relay_id, &url).sign(keys),
            url,
        };
        Message::text(serde_json::to_string(&Request { v: 1, id, body }).unwrap())
    };
    assert!(matches!(
        reply(&mut ws, auth(&first, 1)).await,
        Reply::Ok { .. }
    ));
    // Again, as another device and as the same one: refused.
    for (keys, id) in [(&second, 2), (&first, 3)] {
        match reply(&mut ws, auth(keys, id)).await {
            Reply::Error { code, id: got, .. } => {
                assert_eq!(code, ErrorCode::Conflict);
                assert_eq!(got, Some(id));
            }
            other => panic!("a second auth was accepted: {other:?}"),
        }
    }
    // The connection is still the first device: it creates a session that
    // the first device leads, which only its lead may do.
    let create = first_roster(&first);
    let text = serde_json::to_string(&Request {
        v: 1,
        id: 4,
        body: create,
    })
    .unwrap();
    assert!(matches!(
        reply(&mut ws, Message::text(text)).await,
        Reply::Ok { .. }
    ));
}

#[tokio::test]
async fn only_the_listed_mediators_create_sessions() {
    let allowed = DeviceKeys::generate().unwrap();
    let other = DeviceKeys::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("mediators");
    std::fs::write(
        &list,
        format!(
            "# the relay's mediators\n\n{}  # Ann, the office laptop\n",
            allowed.fingerprint()
        ),
    )
    .unwrap();
    let relay = Relay::start_with(&["--mediators", list.to_str().unwrap()]).await;
    let mut a = Client::connect(&relay.url(), copy(&allowed)).await;
    let mut o = Client::connect(&relay.url(), copy(&other)).await;
    assert_eq!(o.refused(first_roster(&other)).await, ErrorCode::Forbidden);
    a.ok(first_roster(&allowed)).await;
}

#[tokio::test]
async fn a_device_holds_at_most_its_quota_of_sessions_even_across_a_restart() {
    let flags = ["--max-sessions-per-device", "2"];
    let relay = Relay::start_with(&flags).await;
    let keys = DeviceKeys::generate().unwrap();
    let mut c = Client::connect(&relay.url(), copy(&keys)).await;
    let first = first_roster(&keys);
    let session = session_of(&first);
    c.ok(first).await;
    c.ok(first_roster(&keys)).await;
    assert_eq!(c.refused(first_roster(&keys)).await, ErrorCode::Overloaded);
    // Someone else is not held to this device's quota.
    let mut other = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    let other_keys = copy(&other.keys);
    other.ok(first_roster(&other_keys)).await;
    // The count is the store's, not the process's.
    let dir = relay.stop().await;
    let relay = Relay::start_in(dir, &flags).await;
    let mut c = Client::connect(&relay.url(), copy(&keys)).await;
    assert_eq!(c.refused(first_roster(&keys)).await, ErrorCode::Overloaded);
    // Erasing one (closing, with no retention) gives its place back.
    assert!(matches!(
        c.request(RequestBody::CloseSession { session }).await,
        Reply::Ok { .. }
    ));
    c.ok(first_roster(&keys)).await;
}

#[tokio::test]
async fn a_session_holds_at_most_its_quota_of_invites() {
    let relay = Relay::start_with(&["--max-invites-per-session", "2"]).await;
    let keys = DeviceKeys::generate().unwrap();
    let mut c = Client::connect(&relay.url(), copy(&keys)).await;
    let create = first_roster(&keys);
    let session = session_of(&create);
    c.ok(create).await;
    let invite = |n: u8| RequestBody::CreateInvite {
        session,
        invite: InviteId([n; 16]),
        token_hash: caucus_protocol::crypto::Digest([n; 32]),
        expires_at: u64::from(u32::MAX),
    };
    c.ok(invite(1)).await;
    c.ok(invite(2)).await;
    assert_eq!(c.refused(invite(3)).await, ErrorCode::Overloaded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_of_one_device_creating_sessions_leave_other_sessions_writing() {
    let relay = Relay::start_with(&["--max-sessions-per-device", "1000"]).await;
    let url = relay.url();
    let keys = DeviceKeys::generate().unwrap();
    // 20 connections of one device create sessions as fast as they can;
    // two of them race for one id.
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (url, keys) = (url.clone(), copy(&keys));
        loops.spawn(async move {
            let mut c = Client::connect(&url, copy(&keys)).await;
            for _ in 0..4 {
                c.ok(first_roster(&keys)).await;
            }
        });
    }
    let contested = first_roster(&keys);
    let mut racers = Vec::new();
    for _ in 0..2 {
        let (url, keys, create) = (url.clone(), copy(&keys), contested.clone());
        racers.push(tokio::spawn(async move {
            let mut c = Client::connect(&url, keys).await;
            c.request(create).await
        }));
    }
    // Meanwhile another mediator's session takes invites.
    let other = DeviceKeys::generate().unwrap();
    let mut c = Client::connect(&url, copy(&other)).await;
    let create = first_roster(&other);
    let session = session_of(&create);
    c.ok(create).await;
    for n in 0..20u8 {
        c.ok(RequestBody::CreateInvite {
            session,
            invite: InviteId([n; 16]),
            token_hash: caucus_protocol::crypto::Digest([n; 32]),
            expires_at: u64::from(u32::MAX),
        })
        .await;
    }
    while let Some(done) = loops.join_next().await {
        done.unwrap();
    }
    let mut oks = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Reply::Ok { .. } => oks += 1,
            Reply::Error { code, .. } => assert_eq!(code, ErrorCode::Conflict),
        }
    }
    assert_eq!(oks, 1, "one id, created once");
    let text = metrics(relay.addr).await;
    assert!(!text.contains("code=\"internal\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_logs_the_fingerprint_its_challenges_show() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("relay.log");
    let (mut child, url) = support::spawn_binary(
        &dir.path().join("data"),
        "info",
        std::process::Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let c = Client::connect(&url, DeviceKeys::generate().unwrap()).await;
    let fingerprint = c.relay.fingerprint().to_string();
    drop(c);
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    let logs = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    let line = logs
        .lines()
        .find(|l| l.contains("relay listening"))
        .unwrap_or_else(|| panic!("no start line in {logs}"));
    assert!(line.contains(&fingerprint), "{line}");
}
