//! The login is bound to the relay (protocol.md 12.3, open question 12):
//! the device signs the relay's nonce together with the relay's identity
//! and the URL it dialled, and a relay accepts only an answer naming
//! itself at one of its URLs. Two real relays on loopback ports.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use caucus_protocol::auth::AuthTarget;
use caucus_protocol::crypto::{Digest, Signature};
use caucus_protocol::identity::{DeviceKeys, Fingerprint};
use caucus_protocol::wire::{Encoded, ErrorCode, Event, Reply, Request, RequestBody, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use support::{Relay, raw_connect};
use tokio_tungstenite::tungstenite::Message;

/// A connection that has read its challenge and not answered it yet.
struct Unauthenticated {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    nonce: Digest,
    relay: Fingerprint,
}

async fn challenged(url: &str) -> Unauthenticated {
    let mut ws = raw_connect(url).await;
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        panic!("no challenge")
    };
    match serde_json::from_str(text.as_str()).unwrap() {
        ServerFrame::Event(e) => match *e {
            Event::Challenge { nonce, relay, .. } => Unauthenticated {
                ws,
                nonce,
                relay: relay.0.fingerprint(),
            },
            other => panic!("expected a challenge, got {other:?}"),
        },
        other => panic!("expected a challenge, got {other:?}"),
    }
}

impl Unauthenticated {
    /// Send `auth` naming `url`; the relay's answer.
    async fn auth(&mut self, keys: &DeviceKeys, url: &str, signature: Signature) -> Reply {
        let request = Request {
            v: 1,
            id: 1,
            body: RequestBody::Auth {
                identity: Encoded(keys.public().clone()),
                url: url.into(),
                signature,
            },
        };
        let text = serde_json::to_string(&request).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
        loop {
            let Some(Ok(Message::Text(text))) = self.ws.next().await else {
                panic!("connection closed")
            };
            if let ServerFrame::Reply(r) = serde_json::from_str(text.as_str()).unwrap() {
                return r;
            }
        }
    }
}

fn refused(reply: &Reply) -> (ErrorCode, &str) {
    match reply {
        Reply::Error { code, message, .. } => (*code, message.as_str()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Relay B passes relay A's challenge to a device that dialled B, and the
/// device's answer to A: A refuses it, whether B showed the device its own
/// key or A's, and whichever URL B then puts in the request. The same
/// device's answer made for A itself is accepted.
#[tokio::test]
async fn an_auth_answer_made_for_one_relay_is_refused_by_another() {
    let (a, b) = (Relay::start().await, Relay::start().await);
    let device = DeviceKeys::generate().unwrap();
    let b_key = challenged(&b.url()).await.relay;
    let mut at_a = challenged(&a.url()).await;
    let (nonce, a_key) = (at_a.nonce, at_a.relay);
    assert_ne!(a_key, b_key);

    for (shown, named) in [(b_key, b.url()), (a_key, b.url()), (b_key, a.url())] {
        let for_b = AuthTarget::new(nonce, shown, &b.url()).sign(&device);
        let reply = at_a.auth(&device, &named, for_b).await;
        let (code, message) = refused(&reply);
        assert_eq!(code, ErrorCode::AuthFailed, "{message}");
        if named == b.url() {
            assert!(message.contains("is not this relay's URL"), "{message}");
        }
    }
    let for_a = AuthTarget::new(nonce, a_key, &a.url()).sign(&device);
    let reply = at_a.auth(&device, &a.url(), for_a).await;
    assert!(matches!(reply, Reply::Ok { .. }), "{reply:?}");
}

/// The URL is compared in its canonical form (case, default port, a
/// trailing `/`), and a relay given `--public-url` accepts that URL too:
/// the one a proxy in front of it is reached at.
#[tokio::test]
async fn a_relay_accepts_its_own_urls_in_any_written_form_and_its_public_urls() {
    let relay = Relay::start_with(&["--public-url", "wss://Relay.Example:443/caucus/"]).await;
    let device = DeviceKeys::generate().unwrap();
    let own = format!("WS://{}/", relay.addr);
    for url in [own.as_str(), "wss://relay.example/caucus"] {
        let mut conn = challenged(&relay.url()).await;
        let signature = AuthTarget::new(conn.nonce, conn.relay, url).sign(&device);
        let reply = conn.auth(&device, url, signature).await;
        assert!(matches!(reply, Reply::Ok { .. }), "{url}: {reply:?}");
    }
    let mut conn = challenged(&relay.url()).await;
    let elsewhere = "wss://relay.example/other";
    let signature = AuthTarget::new(conn.nonce, conn.relay, elsewhere).sign(&device);
    let reply = conn.auth(&device, elsewhere, signature).await;
    assert_eq!(refused(&reply).0, ErrorCode::AuthFailed);
}
