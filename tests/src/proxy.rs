//! A hostile relay under the test's control: a websocket proxy on loopback
//! between real `caucus-client` clients and the real `caucus-server`.
//!
//! Clients connect to [`Proxy::url`] instead of the relay's URL; the relay
//! behind it knows that URL as its own ([`Proxy::with_relay`]), as a relay
//! behind a real reverse proxy does (`--public-url`), so that a device's
//! login through the proxy names a URL the relay serves. The proxy
//! forwards the websocket handshake (the `caucus.v1` subprotocol offered by
//! the client goes to the relay, and the relay's answer, acceptance or
//! refusal, comes back), then every text frame in both directions, each
//! parsed as JSON. The test decides what happens to each frame with a
//! [rule](Proxy::set_rule): pass it, drop it, rewrite it, duplicate it,
//! hold it back (keep it in the rule's own state) and let it out later
//! behind another frame, or answer it in the relay's place. It can also
//! [inject](Proxy::inject) frames of its own into any client's connection,
//! in either direction, and read back [everything that passed](Proxy::log),
//! before any rule, to capture envelopes, rosters and key bundles for later
//! replay.
//!
//! A connection is named by the device that authenticated on it (the
//! fingerprint of the identity in its `auth` request).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use caucus_protocol::codec::Canonical;
use caucus_protocol::envelope::Envelope;
use caucus_protocol::identity::{Fingerprint, PublicIdentity};
use caucus_protocol::invite::JoinRequest;
use caucus_protocol::keys::SignedKeyBundle;
use caucus_protocol::roster::SignedRoster;
use caucus_protocol::wire;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the client to the relay: a request.
    ToRelay,
    /// From the relay to the client: a reply or an event.
    ToClient,
}

impl Dir {
    /// The other way.
    pub fn back(self) -> Self {
        match self {
            Self::ToRelay => Self::ToClient,
            Self::ToClient => Self::ToRelay,
        }
    }
}

/// One text frame as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The connection it travelled on (numbered from 1 in order of arrival).
    pub conn: u64,
    /// The device authenticated on that connection, once it has sent `auth`.
    pub who: Option<Fingerprint>,
    /// Which way it was going.
    pub dir: Dir,
    /// The frame.
    pub json: Value,
}

impl Frame {
    /// Its `type` (`"post"`, `"envelope"`, `"roster"`, `"ok"`...), or `""`.
    pub fn kind(&self) -> &str {
        self.json.get("type").and_then(Value::as_str).unwrap_or("")
    }

    /// Whether it is going to `who`'s client.
    pub fn to_client(&self, who: &Fingerprint) -> bool {
        self.dir == Dir::ToClient && self.who.as_ref() == Some(who)
    }

    /// Whether `who`'s client sent it.
    pub fn from_client(&self, who: &Fingerprint) -> bool {
        self.dir == Dir::ToRelay && self.who.as_ref() == Some(who)
    }

    /// The canonical object in field `name`, decoded.
    pub fn decode<T: Canonical>(&self, name: &str) -> Option<T> {
        decode_field(&self.json, name)
    }

    /// The envelope it carries (a `post` request or an `envelope` event).
    pub fn envelope(&self) -> Option<Envelope> {
        self.decode("envelope")
    }

    /// The roster it carries (`create_session`, `publish_roster`, `roster`).
    pub fn roster(&self) -> Option<SignedRoster> {
        self.decode("roster")
    }

    /// The key bundle it carries (`publish_keys`, `key_bundle`).
    pub fn bundle(&self) -> Option<SignedKeyBundle> {
        self.decode("bundle")
    }

    /// The join request it carries (`join`, `join_request`).
    pub fn join_request(&self) -> Option<JoinRequest> {
        self.decode("request")
    }
}

/// The canonical object in field `name` of a JSON frame, decoded.
pub fn decode_field<T: Canonical>(json: &Value, name: &str) -> Option<T> {
    let text = json.get(name)?.as_str()?;
    T::from_bytes(&caucus_protocol::b64::decode(text)?).ok()
}

/// A relay event as a JSON frame, for injection.
pub fn event(event: &wire::Event) -> Value {
    serde_json::to_value(event).unwrap_or(Value::Null)
}

/// An `envelope` event carrying `envelope` at `index`.
pub fn envelope_event(index: u64, envelope: &Envelope) -> Value {
    event(&wire::Event::Envelope {
        v: 1,
        index,
        envelope: wire::Encoded(envelope.clone()),
    })
}

/// A `roster` event.
pub fn roster_event(roster: &SignedRoster) -> Value {
    event(&wire::Event::Roster {
        v: 1,
        session: roster.unverified().session,
        roster: wire::Encoded(roster.clone()),
    })
}

/// A `key_bundle` event.
pub fn bundle_event(bundle: &SignedKeyBundle) -> Value {
    event(&wire::Event::KeyBundle {
        v: 1,
        session: bundle.unverified().session,
        bundle: wire::Encoded(bundle.clone()),
    })
}

/// A `join_request` event.
pub fn join_request_event(request: &JoinRequest) -> Value {
    event(&wire::Event::JoinRequest {
        v: 1,
        request: wire::Encoded(request.clone()),
    })
}

/// What to do with a frame.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Forward it unchanged.
    Pass,
    /// Swallow it.
    Drop,
    /// Forward these frames instead, in this order (none drops it; the
    /// frame itself among others duplicates it or puts it behind them).
    Replace(Vec<Value>),
    /// Swallow it and send these frames back to where it came from: answer
    /// a request in the relay's place.
    Answer(Vec<Value>),
}

type Rule = Box<dyn FnMut(&Frame) -> Verdict + Send>;

struct Injection {
    dir: Dir,
    json: Value,
    sent: oneshot::Sender<()>,
}

struct Conn {
    id: u64,
    who: Option<Fingerprint>,
    inject: mpsc::UnboundedSender<Injection>,
}

struct Shared {
    relay: String,
    rule: Mutex<Option<Rule>>,
    log: Mutex<Vec<Frame>>,
    conns: Mutex<Vec<Conn>>,
    next_conn: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The hostile relay: a proxy in front of a real one.
pub struct Proxy {
    url: String,
    shared: Arc<Shared>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Proxy {
    /// A new relay (started with `flags`) behind a new proxy, the relay
    /// told that clients reach it at the proxy's URL.
    pub async fn with_relay(flags: &[&str]) -> (crate::Relay, Self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let mut all = vec!["--public-url", &url];
        all.extend_from_slice(flags);
        let relay = crate::Relay::start(&all).await;
        let proxy = Self::serve_on(listener, url.clone(), &relay.url);
        (relay, proxy)
    }

    /// Listen on a loopback port and relay every connection to `relay` (a
    /// `ws://` URL) that does not know the proxy's URL: a relay that passes
    /// on another relay's challenges, where no device's login is accepted.
    pub async fn start(relay: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        Self::serve_on(listener, url, relay)
    }

    fn serve_on(listener: TcpListener, url: String, relay: &str) -> Self {
        let shared = Arc::new(Shared {
            relay: relay.to_owned(),
            rule: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(1),
        });
        let s = shared.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(s.clone(), tcp));
            }
        });
        Self {
            url,
            shared,
            accepting,
        }
    }

    /// The URL clients connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Decide the fate of every frame from now on (replacing any earlier
    /// rule). The rule runs on the proxy's tasks, one frame at a time.
    pub fn set_rule(&self, rule: impl FnMut(&Frame) -> Verdict + Send + 'static) {
        *lock(&self.shared.rule) = Some(Box::new(rule));
    }

    /// Forward everything unchanged from now on.
    pub fn clear_rule(&self) {
        *lock(&self.shared.rule) = None;
    }

    /// Every frame read from a client or the relay so far, in order, as it
    /// arrived (before any rule).
    pub fn log(&self) -> Vec<Frame> {
        lock(&self.shared.log).clone()
    }

    /// The frames of type `kind` that `who`'s client sent.
    pub fn sent_by(&self, who: &Fingerprint, kind: &str) -> Vec<Frame> {
        self.log()
            .into_iter()
            .filter(|f| f.from_client(who) && f.kind() == kind)
            .collect()
    }

    /// The frames of type `kind` that the relay sent to `who`'s client.
    pub fn sent_to(&self, who: &Fingerprint, kind: &str) -> Vec<Frame> {
        self.log()
            .into_iter()
            .filter(|f| f.to_client(who) && f.kind() == kind)
            .collect()
    }

    /// Every key bundle `who` published (the lead mediator's sealed keys).
    pub fn bundles_published_by(&self, who: &Fingerprint) -> Vec<SignedKeyBundle> {
        self.sent_by(who, "publish_keys")
            .iter()
            .filter_map(Frame::bundle)
            .collect()
    }

    /// Every roster `who` signed and sent to the relay.
    pub fn rosters_published_by(&self, who: &Fingerprint) -> Vec<SignedRoster> {
        let mut all = self.sent_by(who, "create_session");
        all.extend(self.sent_by(who, "publish_roster"));
        all.iter().filter_map(Frame::roster).collect()
    }

    /// Every envelope `who` posted.
    pub fn posted_by(&self, who: &Fingerprint) -> Vec<Envelope> {
        self.sent_by(who, "post")
            .iter()
            .filter_map(Frame::envelope)
            .collect()
    }

    /// Send `json` on the newest connection of `who`, towards `dir` (to
    /// the client: as if the relay had sent it), and return once it has
    /// been written. Whatever the relay sends that connection afterwards
    /// arrives behind it.
    pub async fn inject(&self, who: &Fingerprint, dir: Dir, json: Value) {
        let (sent, written) = oneshot::channel();
        let conn = lock(&self.shared.conns)
            .iter()
            .rev()
            .find(|c| c.who.as_ref() == Some(who))
            .map(|c| c.inject.clone());
        let Some(conn) = conn else {
            panic!("no connection of {who:?} through the proxy")
        };
        conn.send(Injection { dir, json, sent }).unwrap();
        written.await.unwrap();
    }

    /// [`Proxy::inject`] towards `who`'s client, as an event of the relay.
    pub async fn inject_to(&self, who: &Fingerprint, json: Value) {
        self.inject(who, Dir::ToClient, json).await;
    }
}

/// The value of every `Sec-WebSocket-Protocol` header in a request head.
fn offered_protocols(head: &str) -> Option<String> {
    let offered: Vec<&str> = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-protocol"))
        .map(|(_, value)| value.trim())
        .collect();
    (!offered.is_empty()).then(|| offered.join(", "))
}

/// Look at the client's request head without consuming it, so that the
/// websocket handshake can then read it.
async fn peek_head(tcp: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = tcp.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
        if n == buf.len() {
            return None;
        }
        // The rest of the head is on its way.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One client connection: the handshake through to the relay, then frames.
// The handshake callbacks' error type is tungstenite's.
#[allow(clippy::result_large_err)]
async fn serve(shared: Arc<Shared>, tcp: TcpStream) {
    let Some(head) = peek_head(&tcp).await else {
        return;
    };
    let offered = offered_protocols(&head);
    let Ok(mut upstream) = shared.relay.as_str().into_client_request() else {
        return;
    };
    if let Some(p) = offered
        .as_deref()
        .and_then(|p| HeaderValue::from_str(p).ok())
    {
        upstream.headers_mut().insert("sec-websocket-protocol", p);
    }
    let relay = tokio_tungstenite::connect_async(upstream).await;
    let (relay_ws, selected) = match relay {
        Ok((ws, response)) => {
            let selected = response.headers().get("sec-websocket-protocol").cloned();
            (Some(ws), selected)
        }
        Err(WsError::Http(refusal)) => {
            // The relay turned the handshake down: so does the proxy, alike.
            let status = refusal.status();
            let body = refusal
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            let _ = tokio_tungstenite::accept_hdr_async(tcp, move |_: &Request, _: Response| {
                let mut refused = ErrorResponse::new(body);
                *refused.status_mut() = status;
                Err(refused)
            })
            .await;
            return;
        }
        Err(_) => (None, None),
    };
    let Some(relay_ws) = relay_ws else {
        let _ = tokio_tungstenite::accept_hdr_async(tcp, |_: &Request, _: Response| {
            let mut refused = ErrorResponse::new(Some("relay unreachable".into()));
            *refused.status_mut() = StatusCode::BAD_GATEWAY;
            Err(refused)
        })
        .await;
        return;
    };
    let accepted = tokio_tungstenite::accept_hdr_async(tcp, move |_: &Request, mut r: Response| {
        if let Some(p) = selected {
            r.headers_mut().insert("sec-websocket-protocol", p);
        }
        Ok(r)
    })
    .await;
    let Ok(client_ws) = accepted else {
        return;
    };
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (inject, mut injected) = mpsc::unbounded_channel();
    lock(&shared.conns).push(Conn {
        id,
        who: None,
        inject,
    });
    let (mut to_client, mut from_client) = client_ws.split();
    let (mut to_relay, mut from_relay) = relay_ws.split();
    let mut who = None;
    loop {
        let (dir, message) = tokio::select! {
            m = from_client.next() => (Dir::ToRelay, m),
            m = from_relay.next() => (Dir::ToClient, m),
            i = injected.recv() => {
                let Some(i) = i else { break };
                let m = Message::text(i.json.to_string());
                let ok = match i.dir {
                    Dir::ToRelay => to_relay.send(m).await.is_ok(),
                    Dir::ToClient => to_client.send(m).await.is_ok(),
                };
                let _ = i.sent.send(());
                if !ok {
                    break;
                }
                continue;
            }
        };
        let text = match message {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(b))) => {
                let sent = match dir {
                    Dir::ToRelay => to_relay.send(Message::Binary(b)).await,
                    Dir::ToClient => to_client.send(Message::Binary(b)).await,
                };
                if sent.is_err() {
                    break;
                }
                continue;
            }
            // Each side's library answers its own pings.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(close))) => {
                let _ = match dir {
                    Dir::ToRelay => to_relay.send(Message::Close(close)).await,
                    Dir::ToClient => to_client.send(Message::Close(close)).await,
                };
                break;
            }
            Some(Err(_)) | None => break,
        };
        let Ok(json) = serde_json::from_str::<Value>(text.as_str()) else {
            let sent = match dir {
                Dir::ToRelay => to_relay.send(Message::Text(text)).await,
                Dir::ToClient => to_client.send(Message::Text(text)).await,
            };
            if sent.is_err() {
                break;
            }
            continue;
        };
        if dir == Dir::ToRelay
            && json.get("type").and_then(Value::as_str) == Some("auth")
            && let Some(identity) = decode_field::<PublicIdentity>(&json, "identity")
        {
            who = Some(identity.fingerprint());
            if let Some(c) = lock(&shared.conns).iter_mut().find(|c| c.id == id) {
                c.who = who;
            }
        }
        let frame = Frame {
            conn: id,
            who,
            dir,
            json,
        };
        lock(&shared.log).push(frame.clone());
        let verdict = match lock(&shared.rule).as_mut() {
            Some(rule) => rule(&frame),
            None => Verdict::Pass,
        };
        let (out, way) = match verdict {
            Verdict::Pass => (vec![frame.json], dir),
            Verdict::Drop => (Vec::new(), dir),
            Verdict::Replace(frames) => (frames, dir),
            Verdict::Answer(frames) => (frames, dir.back()),
        };
        let mut ok = true;
        for json in out {
            let m = Message::text(json.to_string());
            ok &= match way {
                Dir::ToRelay => to_relay.send(m).await.is_ok(),
                Dir::ToClient => to_client.send(m).await.is_ok(),
            };
        }
        if !ok {
            break;
        }
    }
    lock(&shared.conns).retain(|c| c.id != id);
    let _ = to_client.close().await;
    let _ = to_relay.close().await;
}
