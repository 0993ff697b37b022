//! The connection to the relay: connect, authenticate, match replies to
//! requests, pass events on, and reconnect with back-off when the connection
//! breaks. Requests wait (up to a timeout) while it is down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caucus_protocol::crypto::label;
use caucus_protocol::deletion::SignedDeletionStatement;
use caucus_protocol::identity::{DeviceKeys, Fingerprint};
use caucus_protocol::wire::{
    Encoded, Event, Reply, Request, RequestBody, SUBPROTOCOL, ServerFrame,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::error::ClientError;

/// How long a request waits for its reply (including while reconnecting).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the connection tells the client.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// (Re)connected and authenticated: resubscribe.
    Connected,
    /// An event from the relay.
    Event(Box<Event>),
    /// The reply to an ordered request, passed along after every event that
    /// came before it, so the receiver has handled those first.
    Reply(Reply, oneshot::Sender<Reply>),
}

/// Where a reply goes: straight to its requester, or (ordered) through the
/// event channel behind the events before it.
struct Pending {
    reply: oneshot::Sender<Reply>,
    ordered: bool,
}

/// A handle for sending requests; the connection lives in a task.
#[derive(Clone)]
pub(crate) struct Transport {
    out: mpsc::Sender<(RequestBody, Pending)>,
    /// The relay identity shown in the latest connection's challenge.
    relay: Arc<Mutex<Option<Fingerprint>>>,
}

/// What an `ok` reply carries.
#[derive(Debug, Default)]
pub(crate) struct Accepted {
    /// For `post`: the envelope's index.
    pub(crate) index: Option<u64>,
    /// For `close_session` and `deletion_statement`: the relay's statement.
    pub(crate) statement: Option<SignedDeletionStatement>,
}

fn outcome(
    reply: Result<Result<Reply, oneshot::error::RecvError>, tokio::time::error::Elapsed>,
) -> Result<Accepted, ClientError> {
    match reply {
        Err(_) => Err(ClientError::Timeout),
        Ok(Err(_)) => Err(ClientError::Connection(
            "connection lost before the reply".into(),
        )),
        Ok(Ok(Reply::Ok {
            index, statement, ..
        })) => Ok(Accepted {
            index,
            statement: statement.map(|s| s.0),
        }),
        Ok(Ok(Reply::Error { code, message, .. })) => Err(ClientError::Refused { code, message }),
    }
}

impl Transport {
    /// Start connecting to `url` as `keys`; events arrive on the receiver.
    pub(crate) fn start(url: String, keys: DeviceKeys) -> (Self, mpsc::Receiver<Incoming>) {
        let (out, requests) = mpsc::channel(256);
        let (events, incoming) = mpsc::channel(1024);
        let relay = Arc::new(Mutex::new(None));
        tokio::spawn(supervise(url, keys, requests, events, relay.clone()));
        (Self { out, relay }, incoming)
    }

    /// The fingerprint of the relay's identity, as its latest challenge
    /// showed it (`None` before the first connection).
    pub(crate) fn relay_fingerprint(&self) -> Option<Fingerprint> {
        *self
            .relay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Send a request and wait for its reply; an `error` reply is an `Err`.
    pub(crate) async fn request(&self, body: RequestBody) -> Result<Accepted, ClientError> {
        self.send(body, false).await
    }

    /// As [`Transport::request`], but the reply resolves only once the
    /// events that arrived before it have been handled (see
    /// [`Incoming::Reply`]).
    pub(crate) async fn request_ordered(&self, body: RequestBody) -> Result<Accepted, ClientError> {
        self.send(body, true).await
    }

    async fn send(&self, body: RequestBody, ordered: bool) -> Result<Accepted, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.out
            .send((body, Pending { reply, ordered }))
            .await
            .map_err(|_| ClientError::Connection("client stopped".into()))?;
        outcome(tokio::time::timeout(REPLY_TIMEOUT, rx).await)
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connect and authenticate; the socket and the relay's identity.
async fn connect(url: &str, keys: &DeviceKeys) -> Result<(Socket, Fingerprint), ClientError> {
    let conn = |e: &dyn std::fmt::Display| ClientError::Connection(e.to_string());
    let mut request = url.into_client_request().map_err(|e| conn(&e))?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        SUBPROTOCOL.parse().map_err(|e| conn(&e))?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| conn(&e))?;
    let (nonce, relay) = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerFrame>(t.as_str()) {
                Ok(ServerFrame::Event(e)) => {
                    if let Event::Challenge { nonce, relay, .. } = *e {
                        break (nonce, relay.0.fingerprint());
                    }
                }
                _ => return Err(ClientError::Connection("expected a challenge".into())),
            },
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(conn(&e)),
            None => {
                return Err(ClientError::Connection(
                    "closed before the challenge".into(),
                ));
            }
        }
    };
    let auth = Request {
        v: caucus_protocol::envelope::PROTOCOL_VERSION,
        id: 0,
        body: RequestBody::Auth {
            identity: Encoded(keys.public().clone()),
            signature: keys.sign(label::AUTH, &nonce.0),
        },
    };
    let text = serde_json::to_string(&auth).map_err(|e| conn(&e))?;
    ws.send(Message::text(text)).await.map_err(|e| conn(&e))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerFrame>(t.as_str()) {
                Ok(ServerFrame::Reply(Reply::Ok { id: 0, .. })) => return Ok((ws, relay)),
                Ok(ServerFrame::Reply(Reply::Error { message, .. })) => {
                    return Err(ClientError::Connection(format!(
                        "authentication refused: {message}"
                    )));
                }
                _ => continue,
            },
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(conn(&e)),
            None => {
                return Err(ClientError::Connection(
                    "closed during authentication".into(),
                ));
            }
        }
    }
}

/// Keep a connection up until every [`Transport`] is dropped.
async fn supervise(
    url: String,
    keys: DeviceKeys,
    mut requests: mpsc::Receiver<(RequestBody, Pending)>,
    events: mpsc::Sender<Incoming>,
    relay: Arc<Mutex<Option<Fingerprint>>>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut next_id: u64 = 1;
    loop {
        let mut ws = match connect(&url, &keys).await {
            Ok((ws, identity)) => {
                *relay
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(identity);
                ws
            }
            Err(e) => {
                tracing::debug!(error = %e, "connect failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                if requests.is_closed() {
                    return;
                }
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if events.send(Incoming::Connected).await.is_err() {
            return;
        }
        let mut pending: HashMap<u64, Pending> = HashMap::new();
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some((body, waiting)) = request else {
                        let _ = ws.close(None).await;
                        return;
                    };
                    let id = next_id;
                    next_id += 1;
                    let frame = Request { v: caucus_protocol::envelope::PROTOCOL_VERSION, id, body };
                    let Ok(text) = serde_json::to_string(&frame) else { continue };
                    pending.insert(id, waiting);
                    if ws.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerFrame>(t.as_str()) {
                        Ok(ServerFrame::Reply(reply)) => {
                            let id = match &reply {
                                Reply::Ok { id, .. } => Some(*id),
                                Reply::Error { id, .. } => *id,
                            };
                            match id.and_then(|id| pending.remove(&id)) {
                                Some(Pending { reply: tx, ordered: true }) => {
                                    let handed_on = events.send(Incoming::Reply(reply, tx)).await;
                                    if handed_on.is_err() {
                                        return;
                                    }
                                }
                                Some(Pending { reply: tx, ordered: false }) => {
                                    let _ = tx.send(reply);
                                }
                                None => {}
                            }
                        }
                        Ok(ServerFrame::Event(e)) => {
                            if events.send(Incoming::Event(e)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable frame from the relay"),
                    },
                    Some(Ok(Message::Close(frame))) => {
                        tracing::debug!(?frame, "relay closed the connection");
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
            }
        }
        // Pending replies are lost with the connection; their senders drop.
        drop(pending);
        tokio::time::sleep(backoff).await;
    }
}
