//! A real relay on a loopback port with a real sled directory, and real
//! websocket clients that speak the wire protocol.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod http;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use caucus_protocol::auth::AuthTarget;
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::identity::{DeviceKeys, PublicIdentity};
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::roster::Role;
use caucus_protocol::session::SessionView;
use caucus_protocol::wire::{Encoded, ErrorCode, Event, Reply, Request, RequestBody, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

/// A relay running in this process on its own data directory (or, with
/// [`Relay::external`], one running elsewhere).
pub struct Relay {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    running: Option<caucus_server::Running>,
}

impl Relay {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, flags).await
    }

    pub async fn start_in(dir: tempfile::TempDir, flags: &[&str]) -> Self {
        let data = dir.path().display().to_string();
        let mut all = vec!["--listen", "127.0.0.1:0", "--data-dir", &data];
        all.extend_from_slice(flags);
        let running = caucus_server::Server::spawn(&all).await.unwrap();
        let addr = running
            .url()
            .trim_start_matches("ws://")
            .trim_start_matches("wss://")
            .parse()
            .unwrap();
        Self {
            addr,
            dir,
            running: Some(running),
        }
    }

    /// A relay already running at `url` over `dir` (a child process).
    pub fn external(url: &str, dir: tempfile::TempDir) -> Self {
        let addr = url.trim_start_matches("ws://").parse().unwrap();
        Self {
            addr,
            dir,
            running: None,
        }
    }

    /// Give back the data directory without stopping anything.
    pub fn into_dir(mut self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Begin shutting down as on SIGTERM: drain, then stop.
    pub fn drain(&mut self) {
        self.running.as_mut().unwrap().drain();
    }

    /// Wait until a drain is over and the relay has stopped.
    pub async fn wait(mut self) {
        self.running.take().unwrap().wait().await.unwrap();
    }

    /// Stop gracefully and give back the data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(running) = self.running.take() {
            running.stop().await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

/// A websocket client speaking the Caucus wire protocol.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub keys: DeviceKeys,
    pub events: VecDeque<Event>,
    /// The relay's identity, from its challenge.
    pub relay: PublicIdentity,
    next_id: u64,
}

pub async fn raw_connect(url: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "caucus.v1".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "caucus.v1"
    );
    ws
}

impl Client {
    /// Connect and authenticate as `keys`.
    pub async fn connect(url: &str, keys: DeviceKeys) -> Self {
        let mut ws = raw_connect(url).await;
        let first = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            other => panic!("expected a challenge, got {other:?}"),
        };
        let (nonce, relay) = match serde_json::from_str(first.as_str()).unwrap() {
            ServerFrame::Event(e) => match *e {
                Event::Challenge { nonce, relay, .. } => (nonce, relay.0),
                other => panic!("expected a challenge, got {other:?}"),
            },
            other => panic!("expected a challenge, got {other:?}"),
        };
        let mut c = Self {
            ws,
            keys,
            events: VecDeque::new(),
            relay,
            next_id: 1,
        };
        let signature = AuthTarget::new(nonce, c.relay.fingerprint(), url).sign(&c.keys);
        let identity = Encoded(c.keys.public().clone());
        c.ok(RequestBody::Auth {
            identity,
            url: url.to_owned(),
            signature,
        })
        .await;
        c
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn next_frame(&mut self) -> ServerFrame {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection closed")
                .expect("websocket error");
            if let Message::Text(text) = msg {
                return serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("bad frame {text}: {e}"));
            }
        }
    }

    /// Send a request and wait for its reply, keeping events for later.
    pub async fn request(&mut self, body: RequestBody) -> Reply {
        let id = self.next_id;
        self.next_id += 1;
        let text = serde_json::to_string(&Request { v: 1, id, body }).unwrap();
        self.send_text(text).await;
        self.reply_to(id).await
    }

    pub async fn reply_to(&mut self, id: u64) -> Reply {
        loop {
            match self.next_frame().await {
                ServerFrame::Reply(r) => {
                    let rid = match &r {
                        Reply::Ok { id, .. } => Some(*id),
                        Reply::Error { id, .. } => *id,
                    };
                    if rid == Some(id) {
                        return r;
                    }
                    panic!("reply to another request: {r:?}");
                }
                ServerFrame::Event(e) => self.events.push_back(*e),
            }
        }
    }

    /// The next reply, whatever its id, keeping events for later.
    pub async fn next_reply(&mut self) -> Reply {
        loop {
            match self.next_frame().await {
                ServerFrame::Reply(r) => return r,
                ServerFrame::Event(e) => self.events.push_back(*e),
            }
        }
    }

    pub async fn ok(&mut self, body: RequestBody) -> Option<u64> {
        match self.request(body).await {
            Reply::Ok { index, .. } => index,
            other => panic!("expected ok, got {other:?}"),
        }
    }

    pub async fn refused(&mut self, body: RequestBody) -> ErrorCode {
        match self.request(body).await {
            Reply::Error { code, .. } => code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The next event (already buffered or newly arrived).
    pub async fn event(&mut self) -> Event {
        if let Some(e) = self.events.pop_front() {
            return e;
        }
        match self.next_frame().await {
            ServerFrame::Event(e) => *e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Wait for an event matching `pred`, dropping others.
    pub async fn wait_for(&mut self, mut pred: impl FnMut(&Event) -> bool) -> Event {
        loop {
            let e = self.event().await;
            if pred(&e) {
                return e;
            }
        }
    }

    /// Whether an event arrives within `d`.
    pub async fn quiet_for(&mut self, d: Duration) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        match tokio::time::timeout(d, self.ws.next()).await {
            Err(_) => None,
            Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str(t.as_str()).unwrap() {
                ServerFrame::Event(e) => Some(*e),
                ServerFrame::Reply(r) => panic!("unexpected reply {r:?}"),
            },
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
}

/// A session on a relay: a mediator, a claimant with a solicitor, and a
/// defendant, all admitted, with keys delivered to each member's view.
pub struct Mediation {
    pub session: SessionId,
    pub builder: RosterBuilder,
    pub mediator: Client,
    pub claimant: Client,
    pub solicitor: Client,
    pub defendant: Client,
    pub views: Vec<SessionView>, // mediator, claimant, solicitor, defendant
    pub claimant_party: PartyId,
    pub defendant_party: PartyId,
    pub claimant_room: RoomId,
    pub defendant_room: RoomId,
    pub joint_room: RoomId,
}

impl Mediation {
    pub async fn start(relay: &Relay) -> Self {
        Self::start_across(&[relay.url()]).await
    }

    /// The same, with participant `i` (mediator, claimant, solicitor,
    /// defendant) connected to `urls[i % urls.len()]`.
    pub async fn start_across(urls: &[String]) -> Self {
        let url = |i: usize| urls[i % urls.len()].as_str();
        let mediator_keys = DeviceKeys::generate().unwrap();
        let session = SessionId::random().unwrap();
        let mut builder = RosterBuilder::new(session, &mediator_keys, "Mediator").unwrap();
        let claimant_party = builder.add_party("Claimant").unwrap();
        let defendant_party = builder.add_party("Defendant").unwrap();
        let mut views = vec![SessionView::new(session, mediator_keys.fingerprint())];
        let (first, _) = builder.sign(&mediator_keys, &views[0]).unwrap();
        views[0].accept_roster(first.clone()).unwrap();
        let mut mediator = Client::connect(url(0), mediator_keys).await;
        mediator
            .ok(RequestBody::CreateSession {
                roster: Encoded(first),
            })
            .await;
        let claimant = Client::connect(url(1), DeviceKeys::generate().unwrap()).await;
        let solicitor = Client::connect(url(2), DeviceKeys::generate().unwrap()).await;
        let defendant = Client::connect(url(3), DeviceKeys::generate().unwrap()).await;
        for (c, p) in [
            (&claimant, claimant_party),
            (&solicitor, claimant_party),
            (&defendant, defendant_party),
        ] {
            builder
                .add_member(c.keys.public(), Role::PartyMember, Some(p), "someone")
                .unwrap();
            views.push(SessionView::new(session, mediator.keys.fingerprint()));
        }
        let joint_room = builder.draft().joint_room().unwrap().id;
        builder.set_open(&joint_room, true).unwrap();
        let claimant_room = builder.draft().private_room(&claimant_party).unwrap().id;
        let defendant_room = builder.draft().private_room(&defendant_party).unwrap().id;
        let mut m = Self {
            session,
            builder,
            mediator,
            claimant,
            solicitor,
            defendant,
            views,
            claimant_party,
            defendant_party,
            claimant_room,
            defendant_room,
            joint_room,
        };
        m.publish().await;
        for i in 0..4 {
            m.subscribe(i, 0).await;
        }
        m
    }

    /// Seal `body` as participant `i` in `room` and post it; its index.
    pub async fn post(&mut self, i: usize, room: RoomId, body: &str) -> u64 {
        let content = caucus_protocol::content::Content::Text {
            sharing: caucus_protocol::content::Sharing::MayShare,
            body: body.into(),
        };
        let keys = DeviceKeys::from_secret_bytes(&self.client(i).keys.to_secret_bytes()).unwrap();
        let envelope = self.views[i].seal(&keys, &room, &content).unwrap();
        let index = self
            .client(i)
            .ok(RequestBody::Post {
                envelope: Encoded(envelope.clone()),
            })
            .await
            .unwrap();
        // The mediator follows every room, so its next roster records the
        // chain heads of what it ends.
        if i != 0 {
            self.views[0].open(&envelope).unwrap();
        }
        index
    }

    pub fn client(&mut self, i: usize) -> &mut Client {
        match i {
            0 => &mut self.mediator,
            1 => &mut self.claimant,
            2 => &mut self.solicitor,
            _ => &mut self.defendant,
        }
    }

    /// Sign the draft and publish it with its key bundles.
    pub async fn publish(&mut self) {
        let (roster, keys) = self
            .builder
            .sign(&self.mediator.keys, &self.views[0])
            .unwrap();
        self.views[0].accept_roster(roster.clone()).unwrap();
        self.mediator
            .ok(RequestBody::PublishRoster {
                roster: Encoded(roster),
            })
            .await;
        for key in keys {
            let bundle = self.views[0]
                .seal_key_bundle(&self.mediator.keys, &key)
                .unwrap();
            self.mediator
                .ok(RequestBody::PublishKeys {
                    bundle: Encoded(bundle),
                })
                .await;
        }
    }

    /// Subscribe member `i` from scratch and feed their view the rosters and
    /// bundles that come first.
    pub async fn subscribe(&mut self, i: usize, roster_after: u64) {
        let session = self.session;
        let c = self.client(i);
        c.ok(RequestBody::Subscribe {
            session,
            roster_after,
            rooms: vec![],
        })
        .await;
        self.absorb(i);
    }

    /// Apply buffered roster and key-bundle events to member `i`'s view.
    pub fn absorb(&mut self, i: usize) {
        let events: Vec<Event> = self.client(i).events.drain(..).collect();
        let mut rest = std::collections::VecDeque::new();
        for e in events {
            match e {
                Event::Roster { roster, .. } if i > 0 => {
                    let _ = self.views[i].accept_roster(roster.0);
                }
                Event::KeyBundle { bundle, .. } if i > 0 => {
                    let keys = match i {
                        1 => &self.claimant.keys,
                        2 => &self.solicitor.keys,
                        _ => &self.defendant.keys,
                    };
                    self.views[i].open_key_bundle(keys, &bundle.0).unwrap();
                }
                Event::Roster { .. } | Event::KeyBundle { .. } => {}
                other => rest.push_back(other),
            }
        }
        self.client(i).events = rest;
    }
}

/// Start the relay binary on a free port over `data`, with `RUST_LOG` set
/// to `log` and its log lines (stderr) going to `stderr`; the child and its
/// websocket URL (read from its first stdout line).
pub fn spawn_binary(
    data: &std::path::Path,
    log: &str,
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    spawn_binary_with(data, log, stderr, &[])
}

/// How a relay's child process ended, if it did within `limit`.
pub async fn exited_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`spawn_binary`] with more flags. SIGTERM stops it at once (no drain)
/// unless `flags` give a `--drain-secs`.
pub fn spawn_binary_with(
    data: &std::path::Path,
    log: &str,
    stderr: std::process::Stdio,
    flags: &[&str],
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_caucus-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(flags)
        .env("CAUCUS_DRAIN_SECS", "0")
        .env("RUST_LOG", log)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("caucus-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, url)
}

/// Read until the relay closes the websocket; the close code.
pub async fn close_code(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> u16 {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
