//! One websocket connection, once [`crate::http`] has upgraded it:
//! authentication, the request loop with its rate limit and timers, and the
//! writer fed by the connection's [`Outbox`].
//!
//! Close codes: 1000 normal, 1001 relay shutting down, 1009 frame too big,
//! 4000 too slow (the outbound queue overflowed, or a write took longer
//! than the write timeout; resume with `subscribe`), 4001 not authenticated
//! in time, 4002 idle.
//!
//! Every write to the socket (a frame, a ping, a close) is bounded by the
//! write timeout, so that a client that stops reading cannot hold the
//! connection's loop, and with it the cut-off, idle, ping and shutdown
//! checks, for longer than that.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use caucus_protocol::auth::AuthTarget;
use caucus_protocol::crypto::Digest;
use caucus_protocol::deletion::SignedDeletionStatement;
use caucus_protocol::envelope::PROTOCOL_VERSION;
use caucus_protocol::identity::PublicIdentity;
use caucus_protocol::ids::SessionId;
use caucus_protocol::wire::{
    Encoded, ErrorCode, Event, Reply, RequestBody, parse_request_keeping_envelope,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::cluster::{RemoteInput, Route};
use crate::config::Config;
use crate::hub::{Catchup, ConnId, Hub, Refusal};
use crate::limits::Ticket;
use crate::metrics::Metrics;
use crate::outbox::{Frame, Outbox, Queue};
use crate::store::InviteRecord;

/// Close code: the client fell behind its outbound queue.
pub const CLOSE_TOO_SLOW: u16 = 4000;
/// Its reason.
pub(crate) const TOO_SLOW: &str = "too slow: resume with subscribe";
/// Close code: the client did not authenticate in time.
pub const CLOSE_AUTH_TIMEOUT: u16 = 4001;
/// Close code: the client was silent too long.
pub const CLOSE_IDLE: u16 = 4002;

/// How a request is answered.
enum Outcome {
    /// Done: reply `ok` now.
    Done,
    /// Done: reply `ok` now, with the relay's deletion statement.
    Statement(Box<SignedDeletionStatement>),
    /// The reply is queued later (a `post`, once durable).
    Later,
    /// Write this catch-up, then the `ok` reply (a `subscribe`).
    Catchup(Catchup),
    /// Done: reply `ok` now, with the chunks held (an `upload`).
    Uploading(u64),
    /// Done: reply `ok` now, with a chunk (a `download`).
    Chunk(Vec<u8>),
}

/// Envelopes read from the store per page of a catch-up.
const CATCHUP_PAGE: usize = 256;

/// Bytes of frames tungstenite gathers before it writes to the socket
/// (every flush writes too).
const WRITE_BUFFER: usize = 8 * 1024;

/// Frames written in one go (one flush) from a connection's queue.
const WRITE_BATCH: usize = 64;

/// Why a write to the client's socket did not complete.
enum WriteError {
    /// The client did not take it within the write timeout.
    Stalled,
    /// The socket failed.
    Broken,
}

/// One write to the socket, bounded by `limit`.
async fn bounded<E>(
    limit: Duration,
    write: impl Future<Output = Result<(), E>>,
) -> Result<(), WriteError> {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteError::Broken),
        Err(_) => Err(WriteError::Stalled),
    }
}

/// The socket's writes: each frame, and each flush, bounded by the write
/// timeout.
struct Writer<'a, S> {
    hub: &'a Hub,
    sink: &'a mut S,
}

impl<S: futures_util::Sink<Message> + Unpin> Writer<'_, S> {
    async fn feed(&mut self, frame: Frame) -> Result<(), WriteError> {
        Metrics::add(&self.hub.metrics.bytes_out, frame.len() as u64);
        let limit = self.hub.config.write_timeout;
        bounded(limit, self.sink.feed(Message::Text(frame))).await
    }

    async fn flush(&mut self) -> Result<(), WriteError> {
        bounded(self.hub.config.write_timeout, self.sink.flush()).await
    }

    async fn send(&mut self, frame: Frame) -> Result<(), WriteError> {
        self.feed(frame).await?;
        self.flush().await
    }
}

/// Write `first` and up to [`WRITE_BATCH`] frames already queued behind it,
/// then flush once: a connection with a backlog gets few large writes
/// instead of one system call per frame. A batch stops early once the
/// queue has overflowed, so that the cut-off is not delayed.
async fn write_queued<S>(
    hub: &Hub,
    sink: &mut S,
    first: Frame,
    queue: &mut Queue,
    outbox: &Outbox,
) -> Result<(), WriteError>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut out = Writer { hub, sink };
    let mut next = Some(first);
    let mut written = 0;
    while let Some(frame) = next.take() {
        out.feed(frame).await?;
        written += 1;
        if written < WRITE_BATCH && !outbox.lagged() {
            next = queue.try_recv();
        }
    }
    out.flush().await
}

/// Write a subscription's catch-up and its reply straight to the socket,
/// ahead of the live frames that queue meanwhile, reading the log a page at a
/// time so that neither the queue nor memory grows with the backlog.
async fn write_catchup<S>(
    hub: &Hub,
    sink: &mut S,
    mut catchup: Catchup,
    id: u64,
) -> Result<(), WriteError>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut out = Writer { hub, sink };
    for frame in std::mem::take(&mut catchup.frames) {
        out.feed(frame).await?;
    }
    for mut part in std::mem::take(&mut catchup.rooms) {
        while part.after < part.upto {
            let page = match hub.log_page(&catchup.session, &part, CATCHUP_PAGE).await {
                Ok(page) if !page.is_empty() => page,
                Ok(_) => break,
                Err(Refusal(code, message)) => {
                    // The catch-up cannot be completed: the connection does
                    // not follow after all, and is told so instead of ok.
                    hub.unsubscribe(&catchup);
                    hub.metrics.reject(code);
                    let refusal = serde_json::to_string(&Reply::error(Some(id), code, message))
                        .map_err(|_| WriteError::Broken)?;
                    return out.send(refusal.into()).await;
                }
            };
            for (index, frame) in page {
                if let Some(frame) = frame {
                    out.feed(frame).await?;
                    Metrics::add(&hub.metrics.envelopes_out, 1);
                }
                part.after = index;
            }
            out.flush().await?;
        }
    }
    let reply = serde_json::to_string(&Reply::ok(id)).map_err(|_| WriteError::Broken)?;
    out.send(reply.into()).await
}

/// What a connection knows of itself.
struct Conn {
    id: ConnId,
    hub: Arc<Hub>,
    outbox: Arc<Outbox>,
    nonce: Digest,
    identity: Option<PublicIdentity>,
    sessions: HashSet<SessionId>,
}

/// The websocket limits of every connection under `config`.
pub(crate) fn ws_config(config: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        // Per idle connection, tungstenite keeps its read buffer (touched
        // in full on every read) and its write buffer's largest size: 1 KiB
        // reads keep an idle authenticated connection under 8 KiB of RSS;
        // frames are written once 8 KiB is buffered or on each flush.
        .read_buffer_size(1024)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + config.max_frame_bytes * 2)
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes))
}

/// The close of a connection that fell behind (its queue overflowed, or a
/// write stalled), counted.
fn too_slow(hub: &Hub) -> Option<(u16, &'static str)> {
    Metrics::add(&hub.metrics.slow_consumers, 1);
    Some((CLOSE_TOO_SLOW, TOO_SLOW))
}

/// How long the relay tries to hand a close frame to a client that has
/// already stalled a write, and waits for the client's own close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The `id` of a frame refused before it is parsed: the field read alone,
/// every other one skipped unparsed (12.8's checks are not made).
fn request_id(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: u64,
    }
    serde_json::from_str::<Id>(text).ok().map(|r| r.id)
}

/// Serve one websocket connection, its handshake done (with the limits of
/// [`ws_config`]), until it closes or the relay shuts down. `ticket` holds
/// its place among its address's connections and its request buckets.
pub(crate) async fn serve<S>(
    hub: Arc<Hub>,
    ws: WebSocketStream<S>,
    id: ConnId,
    mut shutdown: watch::Receiver<bool>,
    mut ticket: Ticket,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let config = &hub.config;
    let (mut sink, mut stream) = ws.split();
    let (outbox, mut queue) = Outbox::new(config.outbound_queue);
    let mut nonce = Digest::ZERO;
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce.0).is_err() {
        tracing::error!("no randomness for a login challenge");
        return;
    }
    let mut conn = Conn {
        id,
        hub: hub.clone(),
        outbox: outbox.clone(),
        nonce,
        identity: None,
        sessions: HashSet::new(),
    };
    if let Some(cluster) = &hub.cluster {
        cluster.attach(id, outbox.clone());
    }
    outbox.send(&Event::Challenge {
        v: PROTOCOL_VERSION,
        nonce,
        relay: Encoded(hub.relay.keys.public().clone()),
        rotations: hub.relay.rotations.iter().cloned().map(Encoded).collect(),
    });
    Metrics::add(&hub.metrics.connections, 1);
    let mut ping = tokio::time::interval_at(Instant::now() + config.ping, config.ping);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let auth_deadline = Instant::now() + config.auth;
    let mut last_heard = Instant::now();
    let close: Option<(u16, &str)> = loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Some((1001, "relay shutting down")),
            () = outbox.cut_off() => match outbox.closing() {
                Some(close) if !outbox.lagged() => break Some(close),
                _ => break too_slow(&hub),
            },
            frame = queue.recv() => {
                match write_queued(&hub, &mut sink, frame, &mut queue, &outbox).await {
                    Ok(()) => {}
                    Err(WriteError::Stalled) => break too_slow(&hub),
                    Err(WriteError::Broken) => break None,
                }
            }
            message = stream.next() => {
                last_heard = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        if ticket.take() {
                            let catchup = Box::pin(conn.handle(text.as_str(), Some(&ticket))).await;
                            if !ticket.authenticated()
                                && let Some(identity) = &conn.identity
                            {
                                ticket.authenticate(identity.fingerprint());
                            }
                            if let Some((catchup, id)) = catchup {
                                match Box::pin(write_catchup(&hub, &mut sink, catchup, id)).await {
                                    Ok(()) => {}
                                    Err(WriteError::Stalled) => break too_slow(&hub),
                                    Err(WriteError::Broken) => break None,
                                }
                                // A long catch-up is activity, not silence.
                                last_heard = Instant::now();
                            }
                        } else {
                            hub.metrics.reject(ErrorCode::RateLimited);
                            let id = request_id(text.as_str());
                            outbox.send(&Reply::error(id, ErrorCode::RateLimited, "slow down"));
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        hub.metrics.reject(ErrorCode::Malformed);
                        outbox.send(&Reply::error(None, ErrorCode::Malformed, "binary frames are not accepted; send JSON text"));
                    }
                    Some(Ok(Message::Close(_))) | None => break Some((1000, "bye")),
                    Some(Ok(_)) => {} // ping, pong: tungstenite answers pings itself
                    Some(Err(WsError::Capacity(_))) => {
                        hub.metrics.reject(ErrorCode::TooLarge);
                        break Some((1009, "frame too large"));
                    }
                    Some(Err(e)) => {
                        tracing::debug!(conn = id, error = %e, "read failed");
                        break None;
                    }
                }
            }
            _ = ping.tick() => {
                if conn.identity.is_none() && Instant::now() >= auth_deadline {
                    break Some((CLOSE_AUTH_TIMEOUT, "authenticate first"));
                }
                if last_heard.elapsed() >= config.idle {
                    break Some((CLOSE_IDLE, "idle"));
                }
                match bounded(config.write_timeout, sink.send(Message::Ping(Default::default()))).await {
                    Ok(()) => {}
                    Err(WriteError::Stalled) => break too_slow(&hub),
                    Err(WriteError::Broken) => break None,
                }
            }
            () = tokio::time::sleep_until(auth_deadline), if conn.identity.is_none() => {
                break Some((CLOSE_AUTH_TIMEOUT, "authenticate first"));
            }
        }
    };
    if let Some((code, reason)) = close {
        // Drain what is already queued (replies, the last events), then
        // close; a client that fell behind gets only the close, and that
        // only if it takes it at once.
        let slow = code == CLOSE_TOO_SLOW;
        let limit = if slow {
            CLOSE_GRACE
        } else {
            config.write_timeout
        };
        let _ = tokio::time::timeout(limit, async {
            while !slow && let Some(frame) = queue.try_recv() {
                if sink.send(Message::Text(frame)).await.is_err() {
                    break;
                }
            }
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                })))
                .await;
        })
        .await;
        // The closing handshake: give the peer a moment to read our close
        // and answer it, so that it sees the code rather than a reset.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            let _ = sink.flush().await;
            while let Some(Ok(m)) = stream.next().await {
                if m.is_close() {
                    break;
                }
            }
            let _ = sink.close().await;
        })
        .await;
    }
    hub.disconnect(id, &conn.sessions);
    if let Some(cluster) = &hub.cluster {
        cluster.detach(id);
    }
    Metrics::sub(&hub.metrics.connections, 1);
    drop(ticket);
}

/// Serve, for `node`, its connection `remote` authenticated as `identity`,
/// whose sessions this node decides: its requests come in on `input`, in
/// the order it sent them, and everything it is sent goes back to `node`.
/// Its limits (rates, the upload budget) were applied at `node`. Ends when
/// `node` says the connection closed (or the link broke).
pub(crate) async fn serve_remote(
    hub: Arc<Hub>,
    node: String,
    remote: ConnId,
    identity: PublicIdentity,
    mut input: mpsc::Receiver<RemoteInput>,
) {
    let Some(cluster) = hub.cluster.clone() else {
        return;
    };
    let (outbox, mut queue) = Outbox::new(hub.config.outbound_queue);
    let mut conn = Conn {
        id: hub.conn_id(),
        hub: hub.clone(),
        outbox: outbox.clone(),
        nonce: Digest::ZERO,
        identity: Some(identity),
        sessions: HashSet::new(),
    };
    let mut frames = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = outbox.cut_off() => {
                let code = match outbox.closing() {
                    Some((code, _)) if !outbox.lagged() => code,
                    _ => CLOSE_TOO_SLOW,
                };
                // What is queued goes first.
                while queue.take(&mut frames, WRITE_BATCH) > 0 {
                    cluster.frames(&node, remote, std::mem::take(&mut frames));
                }
                cluster.close(&node, remote, code);
                break;
            }
            _ = queue.recv_many(&mut frames, WRITE_BATCH) => {
                cluster.frames(&node, remote, std::mem::take(&mut frames));
            }
            next = input.recv() => match next {
                None => break,
                Some(RemoteInput::Request(text)) => {
                    if let Some((catchup, id)) = Box::pin(conn.handle(&text, None)).await {
                        cluster.catchup(&node, remote, id, catchup);
                    }
                }
                Some(RemoteInput::Unsubscribe(session)) => {
                    hub.unfollow(conn.id, &session);
                }
            }
        }
    }
    hub.disconnect(conn.id, &conn.sessions);
}

/// Wait until the device's upload budget (`ticket`'s) covers `bytes` of a
/// chunk; a connection served for another node was budgeted there.
async fn wait_for_budget(ticket: Option<&Ticket>, bytes: usize) {
    let delay = ticket.map_or(Duration::ZERO, |t| t.upload_delay(bytes));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// The session a request names, if any.
fn session_of(body: &RequestBody) -> Option<SessionId> {
    match body {
        RequestBody::Auth { .. } => None,
        RequestBody::CreateSession { roster } | RequestBody::PublishRoster { roster } => {
            Some(roster.0.unverified().session)
        }
        RequestBody::PublishKeys { bundle } => Some(bundle.0.unverified().session),
        RequestBody::Join { request, .. } => Some(request.0.session),
        RequestBody::Post { envelope } => Some(envelope.0.header().session),
        RequestBody::CreateInvite { session, .. }
        | RequestBody::Decline { session, .. }
        | RequestBody::Subscribe { session, .. }
        | RequestBody::Location { session, .. }
        | RequestBody::Status { session, .. }
        | RequestBody::CloseSession { session }
        | RequestBody::DeletionStatement { session }
        | RequestBody::Upload { session, .. }
        | RequestBody::Chunk { session, .. }
        | RequestBody::Download { session, .. } => Some(*session),
    }
}

impl Conn {
    /// Handle one text frame; exactly one reply is queued for it (for
    /// `post` and `chunk`, once what they store is durable), except for
    /// `subscribe`, whose catch-up and reply are returned for the caller to
    /// write. A `chunk` over the device's upload budget (`ticket`) waits
    /// here first.
    async fn handle(&mut self, text: &str, ticket: Option<&Ticket>) -> Option<(Catchup, u64)> {
        Metrics::add(&self.hub.metrics.bytes_in, text.len() as u64);
        let (request, envelope_text) = match parse_request_keeping_envelope(text) {
            Ok(r) => r,
            Err(e) => {
                self.hub.metrics.reject(e.code);
                self.outbox.send(&e.reply());
                return None;
            }
        };
        let id = request.id;
        let kind = request.body.kind();
        let reply = match self
            .dispatch(id, text, request.body, envelope_text, ticket)
            .await
        {
            Ok(Outcome::Done) => Reply::ok(id),
            Ok(Outcome::Uploading(chunks)) => Reply::uploading(id, chunks),
            Ok(Outcome::Chunk(data)) => Reply::chunk(id, data),
            Ok(Outcome::Statement(statement)) => Reply::erased(id, *statement),
            Ok(Outcome::Later) => return None,
            Ok(Outcome::Catchup(c)) => return Some((c, id)),
            Err(Refusal(code, message)) => {
                tracing::debug!(conn = self.id, request = kind, code = ?code, "refused");
                self.hub.metrics.reject(code);
                Reply::error(Some(id), code, message)
            }
        };
        self.outbox.send(&reply);
        None
    }

    async fn dispatch(
        &mut self,
        id: u64,
        text: &str,
        body: RequestBody,
        envelope_text: Option<&str>,
        ticket: Option<&Ticket>,
    ) -> Result<Outcome, Refusal> {
        let ok = Ok(Outcome::Done);
        if let RequestBody::Auth {
            identity,
            url,
            signature,
        } = &body
        {
            if self.identity.is_some() {
                return Err(Refusal::new(ErrorCode::Conflict, "already authenticated"));
            }
            let relay = &self.hub.relay;
            if !relay.serves(url) {
                return Err(Refusal::new(
                    ErrorCode::AuthFailed,
                    format!("{url} is not this relay's URL; it serves {}", relay.urls()),
                ));
            }
            AuthTarget::new(self.nonce, relay.keys.fingerprint(), url)
                .verify(&identity.0, signature)
                .map_err(|_| Refusal::new(ErrorCode::AuthFailed, "signature does not verify"))?;
            self.identity = Some(identity.0.clone());
            return ok;
        }
        let identity = self
            .identity
            .clone()
            .ok_or_else(|| Refusal::new(ErrorCode::Unauthenticated, "authenticate first"))?;
        let me = identity.fingerprint();
        let hub = self.hub.clone();
        if let Some(session) = session_of(&body)
            && let Route::At(node) = hub.route(&session).await?
        {
            return self
                .forward(&node, id, text, &body, &identity, ticket)
                .await;
        }
        match body {
            RequestBody::Auth { .. } => ok,
            RequestBody::CreateSession { roster } => {
                hub.create_session(&identity, roster.0).await?;
                ok
            }
            RequestBody::PublishRoster { roster } => {
                hub.publish_roster(&me, roster.0).await?;
                ok
            }
            RequestBody::PublishKeys { bundle } => {
                hub.publish_keys(&me, bundle.0).await?;
                ok
            }
            RequestBody::CreateInvite {
                session,
                invite,
                token_hash,
                expires_at,
            } => {
                let record = InviteRecord {
                    token_hash,
                    expires_at,
                    joiner: None,
                };
                hub.create_invite(&me, session, invite, record).await?;
                ok
            }
            RequestBody::Join { token, request } => {
                let session = request.0.session;
                hub.join(self.id, &me, &self.outbox, token, request.0)
                    .await?;
                self.sessions.insert(session);
                ok
            }
            RequestBody::Decline { session, invite } => {
                hub.decline(&me, session, invite).await?;
                ok
            }
            RequestBody::Post { envelope } => {
                // Answered by the committer once durable, without holding
                // up this connection.
                hub.post(&me, envelope.0, envelope_text, id, &self.outbox)
                    .await?;
                Ok(Outcome::Later)
            }
            RequestBody::Subscribe {
                session,
                roster_after,
                rooms,
            } => {
                let catchup = hub
                    .subscribe(self.id, &me, &self.outbox, session, roster_after, &rooms)
                    .await?;
                self.sessions.insert(session);
                Ok(Outcome::Catchup(catchup))
            }
            RequestBody::Location {
                session,
                room,
                disclose,
            } => {
                hub.location(&me, session, room, disclose).await?;
                ok
            }
            RequestBody::Status { session, status } => {
                hub.status(&me, session, status).await?;
                ok
            }
            RequestBody::CloseSession { session } => {
                Ok(match hub.close_session(&me, session).await? {
                    Some(statement) => Outcome::Statement(Box::new(statement)),
                    None => Outcome::Done,
                })
            }
            RequestBody::DeletionStatement { session } => Ok(Outcome::Statement(Box::new(
                hub.deletion_statement(&me, session).await?,
            ))),
            RequestBody::Upload {
                session,
                file,
                size,
            } => Ok(Outcome::Uploading(
                hub.upload(&me, session, file, size).await?,
            )),
            RequestBody::Chunk {
                session,
                file,
                index,
                data,
            } => {
                // Checked, then the device's upload budget waited for (this
                // connection reads nothing meanwhile), then checked again
                // and accepted: answered by the committer once durable.
                hub.check_chunk(&me, session, file, index, data.0.len())
                    .await?;
                wait_for_budget(ticket, data.0.len()).await;
                hub.chunk(&me, session, file, index, data.0, id, &self.outbox)
                    .await?;
                Ok(Outcome::Later)
            }
            RequestBody::Download {
                session,
                file,
                index,
            } => Ok(Outcome::Chunk(
                hub.download(&me, session, file, index).await?,
            )),
        }
    }

    /// Send request `text` to `node`, which decides for its session; the
    /// reply comes from there. A `subscribe` waits for its catch-up, which
    /// this node writes; a chunk first waits for the upload budget here.
    async fn forward(
        &mut self,
        node: &str,
        id: u64,
        text: &str,
        body: &RequestBody,
        identity: &PublicIdentity,
        ticket: Option<&Ticket>,
    ) -> Result<Outcome, Refusal> {
        let Some(cluster) = self.hub.cluster.clone() else {
            return Err(Refusal::new(ErrorCode::Internal, "no cluster"));
        };
        let subscribe = match body {
            RequestBody::Subscribe { session, .. } => Some((id, *session)),
            RequestBody::Chunk { data, .. } => {
                wait_for_budget(ticket, data.0.len()).await;
                None
            }
            _ => None,
        };
        if let Some(session) = session_of(body) {
            self.sessions.insert(session);
        }
        match cluster
            .forward(node, self.id, identity, text, subscribe)
            .await?
        {
            Some(catchup) => Ok(Outcome::Catchup(catchup)),
            None => Ok(Outcome::Later),
        }
    }
}
