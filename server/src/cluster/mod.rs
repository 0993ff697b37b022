//! Several relay nodes, one service (docs/cluster.md).
//!
//! The nodes share one PostgreSQL store and talk over NATS. Each session is
//! decided by one node at a time, its *owner*: the node holding the
//! session's lease ([`lease`]), which runs the hub's rules for it exactly as
//! a single relay does — it orders the session's envelopes, keeps its
//! roster, chains, invites and documents, and commits them. A connection
//! may sit on any node: a request for a session another node owns is
//! forwarded to the owner as it came, and everything the owner sends that
//! connection (replies, events, catch-ups) comes back over NATS to the
//! node that holds the socket.
//!
//! NATS core publish/subscribe is at most once, and is all this needs: the
//! store, not NATS, keeps what was acknowledged. Every packet between two
//! nodes is numbered on its link; a packet missing from a link (or a peer
//! that stops sending its heartbeat) ends everything that depended on the
//! link — each connection with state at the other node is closed with
//! [`CLOSE_MOVED`] and resumes, from its cursor, wherever it reconnects.
//! Nothing acknowledged is lost (the store has it) and nothing is delivered
//! twice (cursors and the relay's duplicate check).

pub(crate) mod lease;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use caucus_protocol::identity::PublicIdentity;
use caucus_protocol::ids::SessionId;
use caucus_protocol::wire::{Encoded, ErrorCode, Reply, ServerFrame};
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use futures_util::StreamExt;
use ring::hkdf;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::ClusterSettings;
use crate::health::{Health, Link};
use crate::hub::{Catchup, ConnId, Hub, Refusal, RoomCatchup};
use crate::outbox::{Frame, Outbox};
pub(crate) use lease::Leases;

/// Close code: the node that decides for one of the connection's sessions
/// went away, or the session moved to another node; reconnect and resume.
pub const CLOSE_MOVED: u16 = 1012;

/// Its reason.
pub(crate) const MOVED: &str = "the relay moved a session between its nodes: reconnect";

/// The refusal of a request for a session between two nodes.
const MOVING: &str = "the relay is moving this session between its nodes; try again shortly";

/// How many leases a session routed here but not held in memory stays this
/// node's (a `create_session` waiting for its commit, say).
const IDLE_LEASES: u32 = 10;

/// How often a node says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a silent peer is believed alive.
const SILENCE: Duration = Duration::from_secs(3);

/// How long a peer is believed to own a session before the lease is read
/// again.
const OWNER_CACHE: Duration = Duration::from_secs(1);

/// Packets a node may have queued for sending before its links are judged
/// broken.
const SEND_QUEUE: usize = 65_536;

/// Requests a connection served for another node may have waiting.
const REMOTE_QUEUE: usize = 1024;

/// How long a forwarded `subscribe` waits for its catch-up.
const CATCHUP_WAIT: Duration = Duration::from_secs(30);

/// The id of the request `frame` refuses, if it is a refusal.
fn refused(frame: &str) -> Option<u64> {
    match serde_json::from_str(frame) {
        Ok(ServerFrame::Reply(Reply::Error { id, .. })) => id,
        _ => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one node sends another, numbered on its link.
#[derive(Serialize, Deserialize)]
struct Packet {
    from: String,
    to: String,
    seq: u64,
    body: Body,
}

/// A heartbeat.
#[derive(Serialize, Deserialize)]
struct Alive {
    node: String,
}

/// The key that seals what the nodes say to each other: derived
/// (HKDF-SHA256) from the relay key every node holds, so that whoever can
/// read or publish on NATS but does not hold the relay key learns nothing
/// of it and cannot speak for a node (nor, through one, for any device).
fn packet_key(
    relay: &caucus_protocol::identity::DeviceKeys,
) -> Result<XChaCha20Poly1305, ClusterError> {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let secret = relay.to_secret_bytes();
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"caucus cluster v1")
        .extract(&secret)
        .expand(&[b"packets between relay nodes"], Len)
        .and_then(|okm| okm.fill(&mut key[..]))
        .map_err(|_| ClusterError::PacketKey)?;
    XChaCha20Poly1305::new_from_slice(&key[..]).map_err(|_| ClusterError::PacketKey)
}

/// `message` as sent: a random 24-byte nonce, then its JSON sealed with
/// XChaCha20-Poly1305.
fn seal(key: &XChaCha20Poly1305, message: &impl Serialize) -> Option<Vec<u8>> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec(message).ok()?);
    let mut nonce = [0u8; NONCE];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).ok()?;
    let sealed = key.encrypt(&XNonce::from(nonce), json.as_slice()).ok()?;
    let mut packet = Vec::with_capacity(NONCE + sealed.len());
    packet.extend_from_slice(&nonce);
    packet.extend_from_slice(&sealed);
    Some(packet)
}

/// A message as sent, if it opens under the cluster's key.
fn open<T: for<'de> Deserialize<'de>>(key: &XChaCha20Poly1305, packet: &[u8]) -> Option<T> {
    let (nonce, sealed) = packet.split_first_chunk::<NONCE>()?;
    let json = zeroize::Zeroizing::new(key.decrypt(&XNonce::from(*nonce), sealed).ok()?);
    serde_json::from_slice(&json).ok()
}

/// The length of a packet's nonce.
const NONCE: usize = 24;

/// The packets.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Body {
    /// To an owner: a request, as sent, of connection `conn` at the sender,
    /// authenticated as `identity`.
    Request {
        conn: ConnId,
        identity: Box<Encoded<PublicIdentity>>,
        text: String,
    },
    /// To an owner: connection `conn` at the sender closed.
    Gone { conn: ConnId },
    /// To an owner: connection `conn` could not take its catch-up; it does
    /// not follow `session` after all.
    Unsubscribe { conn: ConnId, session: SessionId },
    /// From an owner: frames for connection `conn`, in order.
    Frames {
        conn: ConnId,
        #[serde(with = "crate::outbox::frames")]
        frames: Vec<Frame>,
    },
    /// From an owner: the catch-up of `conn`'s `subscribe` request `id`.
    Catchup {
        conn: ConnId,
        id: u64,
        session: SessionId,
        #[serde(with = "crate::outbox::frames")]
        frames: Vec<Frame>,
        rooms: Vec<RoomCatchup>,
    },
    /// From an owner: close connection `conn` with `code`.
    Close { conn: ConnId, code: u16 },
}

/// Where a session's requests are decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// Here.
    Here,
    /// At this other node.
    At(String),
}

/// What a connection served for another node is given.
pub(crate) enum RemoteInput {
    /// A request, as sent.
    Request(String),
    /// Its catch-up of `session` failed at the node with the socket.
    Unsubscribe(SessionId),
}

/// A peer, as this node knows it.
struct Peer {
    heard: Instant,
    /// The number of the next packet expected from it.
    next: u64,
}

/// A connection with its socket here.
struct Local {
    outbox: Arc<Outbox>,
    /// The nodes that hold state for it.
    nodes: HashSet<String>,
    /// Its forwarded `subscribe`s waiting for their catch-ups, by request
    /// (`None`: the owner refused it).
    catchups: HashMap<u64, oneshot::Sender<Option<Catchup>>>,
}

/// What a node believes about who owns a session.
struct Known {
    route: Route,
    until: Instant,
}

#[derive(Default)]
struct State {
    owners: HashMap<SessionId, Known>,
    peers: HashMap<String, Peer>,
    locals: HashMap<ConnId, Local>,
    /// Connections served here for other nodes: where their requests go.
    remotes: HashMap<(String, ConnId), mpsc::Sender<RemoteInput>>,
    /// Until when this node's leases are known good (its last renewal).
    held_until: Option<Instant>,
    /// Sessions routed here, and when last: one not held in memory is
    /// given up only once it has been idle for [`IDLE_LEASES`] leases, so
    /// that no request under way loses its session to the renewal.
    claimed: HashMap<SessionId, Instant>,
    /// The sessions this node held at its last renewal.
    held: HashSet<SessionId>,
    /// Peers that went silent, until heard from again.
    silent: HashSet<String>,
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// NATS could not be reached.
    #[error("NATS at {url}: {error}")]
    Nats {
        /// The server named.
        url: String,
        /// What failed.
        error: String,
    },
    /// The store failed.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// This node's relay key is not the cluster's.
    #[error(
        "this node's relay key is not the one the cluster's other nodes use: give every node the same key (docs/cluster.md)"
    )]
    OtherRelay,
    /// The key for packets between nodes could not be derived.
    #[error("could not derive the key for packets between the nodes")]
    PacketKey,
    /// The system gave no randomness for a node's name.
    #[error("no randomness for a node's name")]
    NoRandomness,
}

/// This node's part in the cluster.
pub(crate) struct Cluster {
    node: String,
    prefix: String,
    nats: async_nats::Client,
    key: XChaCha20Poly1305,
    leases: Leases,
    lease: Duration,
    outgoing: mpsc::Sender<(String, Body)>,
    state: Mutex<State>,
}

/// A new node's name: random, so that a restarted node is a new one.
pub(crate) fn node_name() -> Result<String, ClusterError> {
    let mut id = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| ClusterError::NoRandomness)?;
    Ok(hex::encode(id))
}

/// The queue of packets for other nodes, which [`Cluster::run`] sends.
pub(crate) type Outgoing = mpsc::Receiver<(String, Body)>;

impl Cluster {
    /// Join the cluster `settings` name, as a new node with the relay key
    /// `relay`, keeping session leases in the PostgreSQL database at
    /// `store`.
    pub(crate) async fn join(
        settings: &ClusterSettings,
        node: String,
        store: &str,
        relay: &caucus_protocol::identity::DeviceKeys,
        health: Arc<Health>,
    ) -> Result<(Arc<Self>, Outgoing), ClusterError> {
        let key = packet_key(relay)?;
        let relay = &relay.fingerprint();
        let url = settings.nats.as_str();
        let lease = settings.lease;
        let leases = Leases::new(lease::pool(store)?, node.clone(), lease);
        if leases.relay_identity(relay).await? != relay.0 {
            return Err(ClusterError::OtherRelay);
        }
        leases.forget_the_dead().await?;
        leases.renew(&[]).await?;
        let nats = async_nats::ConnectOptions::new()
            .name(format!("caucus-relay {node}"))
            .event_callback(move |event| {
                let health = health.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => health.set_cluster(Link::Up),
                        async_nats::Event::Disconnected => {
                            tracing::warn!("lost the link to NATS");
                            health.set_cluster(Link::Down);
                        }
                        _ => {}
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| ClusterError::Nats {
                url: url.into(),
                error: e.to_string(),
            })?;
        let (outgoing, queue) = mpsc::channel(SEND_QUEUE);
        let cluster = Arc::new(Self {
            node,
            prefix: format!("caucus.{}", settings.name),
            nats,
            key,
            leases,
            lease,
            outgoing,
            state: Mutex::new(State::default()),
        });
        tracing::info!(node = %cluster.node, "joined the cluster");
        Ok((cluster, queue))
    }

    fn subject(&self, node: &str) -> String {
        format!("{}.node.{node}", self.prefix)
    }

    /// Queue `body` for `node`. A queue that overflows breaks the link.
    fn send(&self, node: &str, body: Body) {
        if self.outgoing.try_send((node.to_owned(), body)).is_err() {
            tracing::warn!(peer = node, "send queue full: the link is dropped");
            self.break_link(node);
        }
    }

    /// Which node decides for `session`: this one if no live node holds its
    /// lease (it takes it), or the holder. When the holder has gone silent
    /// its lease is waited out.
    pub(crate) async fn route(&self, session: &SessionId) -> Result<Route, Refusal> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "session lease unavailable");
            Refusal::new(
                ErrorCode::Unavailable,
                "the relay cannot reach its database just now; try again later",
            )
        };
        for _ in 0..3 {
            let now = Instant::now();
            {
                let mut state = lock(&self.state);
                if let Some(known) = state.owners.get(session)
                    && known.until > now
                {
                    let route = known.route.clone();
                    if route == Route::Here {
                        // In use: not to be given up meanwhile.
                        state.claimed.insert(*session, now);
                    }
                    return Ok(route);
                }
            }
            let owner = self
                .leases
                .claim(session)
                .await
                .map_err(|e| unavailable(&e))?;
            if let Some(route) = self.learn(session, &owner, now) {
                return Ok(route);
            }
            // The holder is silent: wait its lease out, then take it.
            if owner.remaining > self.lease * 2 {
                break;
            }
            tokio::time::sleep(owner.remaining + Duration::from_millis(50)).await;
        }
        Err(Refusal::new(ErrorCode::Unavailable, MOVING))
    }

    /// What `node` holding `session`'s lease means here: the route, unless
    /// the holder is a peer gone silent.
    fn learn(&self, session: &SessionId, owner: &lease::Owner, now: Instant) -> Option<Route> {
        let node = owner.node.as_str();
        let mut state = lock(&self.state);
        if node == self.node {
            state.claimed.insert(*session, now);
            let until = state
                .held_until
                .map_or(now + self.lease / 2, |h| h.max(now));
            state.owners.insert(
                *session,
                Known {
                    route: Route::Here,
                    until,
                },
            );
            return Some(Route::Here);
        }
        let alive = match state.peers.get(node) {
            Some(peer) => now.duration_since(peer.heard) < SILENCE,
            // Not heard from yet (this node has just started): alive if
            // PostgreSQL says so and it has not gone silent here; it is
            // judged by its heartbeats from now on.
            None if owner.remaining > Duration::ZERO && !state.silent.contains(node) => {
                state.peers.insert(
                    node.to_owned(),
                    Peer {
                        heard: now,
                        next: 0,
                    },
                );
                true
            }
            None => false,
        };
        if !alive {
            return None;
        }
        let route = Route::At(node.to_owned());
        state.owners.insert(
            *session,
            Known {
                route: route.clone(),
                until: now + OWNER_CACHE,
            },
        );
        Some(route)
    }

    /// A connection with its socket here: frames from other nodes for it go
    /// to `outbox`.
    pub(crate) fn attach(&self, conn: ConnId, outbox: Arc<Outbox>) {
        lock(&self.state).locals.insert(
            conn,
            Local {
                outbox,
                nodes: HashSet::new(),
                catchups: HashMap::new(),
            },
        );
    }

    /// The connection closed: the nodes holding state for it forget it.
    pub(crate) fn detach(&self, conn: ConnId) {
        let local = lock(&self.state).locals.remove(&conn);
        for node in local.into_iter().flat_map(|l| l.nodes) {
            self.send(&node, Body::Gone { conn });
        }
    }

    /// Forward `conn`'s request `text` to `node`, which owns its session.
    /// For a `subscribe` (`id`), wait for its catch-up; otherwise the
    /// reply comes later, as a frame.
    pub(crate) async fn forward(
        &self,
        node: &str,
        conn: ConnId,
        identity: &PublicIdentity,
        text: &str,
        subscribe: Option<(u64, SessionId)>,
    ) -> Result<Option<Catchup>, Refusal> {
        let waiting = {
            let mut state = lock(&self.state);
            // Only a socket here forwards: a connection served here for
            // another node asks for a session that has just moved on.
            let Some(local) = state.locals.get_mut(&conn) else {
                return Err(Refusal::new(ErrorCode::Unavailable, MOVING));
            };
            local.nodes.insert(node.to_owned());
            subscribe.map(|(id, _)| {
                let (tx, rx) = oneshot::channel();
                local.catchups.insert(id, tx);
                rx
            })
        };
        self.send(
            node,
            Body::Request {
                conn,
                identity: Box::new(Encoded(identity.clone())),
                text: text.to_owned(),
            },
        );
        let Some(waiting) = waiting else {
            return Ok(None);
        };
        match tokio::time::timeout(CATCHUP_WAIT, waiting).await {
            Ok(Ok(Some(catchup))) => Ok(Some(catchup)),
            // Refused by the owner: its reply was written as it came.
            Ok(Ok(None)) => Ok(None),
            Ok(Err(_)) | Err(_) => {
                if let Some(local) = lock(&self.state).locals.get_mut(&conn) {
                    local.catchups.retain(|_, tx| !tx.is_closed());
                }
                Err(Refusal::new(
                    ErrorCode::Unavailable,
                    "the relay's node for this session did not answer; try again",
                ))
            }
        }
    }

    /// A catch-up from `node` could not be written: the owner forgets the
    /// subscription.
    pub(crate) fn unsubscribe(&self, node: &str, conn: ConnId, session: SessionId) {
        self.send(node, Body::Unsubscribe { conn, session });
    }

    /// Send a connection served here for `node` its frames.
    pub(crate) fn frames(&self, node: &str, conn: ConnId, frames: Vec<Frame>) {
        self.send(node, Body::Frames { conn, frames });
    }

    /// Send a connection served here for `node` its catch-up.
    pub(crate) fn catchup(&self, node: &str, conn: ConnId, id: u64, catchup: Catchup) {
        self.send(
            node,
            Body::Catchup {
                conn,
                id,
                session: catchup.session,
                frames: catchup.frames,
                rooms: catchup.rooms,
            },
        );
    }

    /// Close, at `node`, a connection served here for it.
    pub(crate) fn close(&self, node: &str, conn: ConnId, code: u16) {
        self.send(node, Body::Close { conn, code });
    }

    /// Everything that depends on the link with `node` ends: connections
    /// here with state there are closed to resume, and connections served
    /// here for it are dropped (and it is told to close them).
    fn break_link(&self, node: &str) {
        let mut state = lock(&self.state);
        for local in state.locals.values_mut() {
            if local.nodes.remove(node) {
                local.catchups.clear();
                local.outbox.close(CLOSE_MOVED, MOVED);
            }
        }
        let dropped: Vec<ConnId> = state
            .remotes
            .keys()
            .filter(|(n, _)| n == node)
            .map(|(_, c)| *c)
            .collect();
        for conn in &dropped {
            state.remotes.remove(&(node.to_owned(), *conn));
        }
        state
            .owners
            .retain(|_, known| known.route != Route::At(node.to_owned()));
        drop(state);
        for conn in dropped {
            // Sent directly: the queue may be what overflowed.
            let _ = self.outgoing.try_send((
                node.to_owned(),
                Body::Close {
                    conn,
                    code: CLOSE_MOVED,
                },
            ));
        }
    }

    /// The outbox of connection `conn`, with its socket here.
    fn outbox(&self, conn: ConnId) -> Option<Arc<Outbox>> {
        lock(&self.state)
            .locals
            .get(&conn)
            .map(|l| l.outbox.clone())
    }

    /// Take in one packet from a peer.
    fn receive(&self, hub: &Arc<Hub>, packet: Packet) {
        let Packet {
            from, seq, body, ..
        } = packet;
        let in_order = {
            let mut state = lock(&self.state);
            let now = Instant::now();
            state.silent.remove(&from);
            let peer = state.peers.entry(from.clone()).or_insert(Peer {
                heard: now,
                next: 0,
            });
            peer.heard = now;
            let in_order = peer.next == seq;
            peer.next = seq + 1;
            in_order
        };
        if !in_order {
            tracing::warn!(peer = %from, "packets lost on a link: its connections resume");
            self.break_link(&from);
        }
        match body {
            Body::Request {
                conn,
                identity,
                text,
            } => self.request(hub, &from, conn, identity.0, text),
            Body::Unsubscribe { conn, session } => {
                let remote = lock(&self.state).remotes.get(&(from, conn)).cloned();
                if let Some(remote) = remote {
                    let _ = remote.try_send(RemoteInput::Unsubscribe(session));
                }
            }
            Body::Gone { conn } => {
                lock(&self.state).remotes.remove(&(from, conn));
            }
            Body::Frames { conn, frames } => {
                let outbox = lock(&self.state).locals.get_mut(&conn).map(|l| {
                    // A subscribe the owner refused: its reply is among
                    // these frames, and no catch-up follows.
                    if !l.catchups.is_empty() {
                        for id in frames.iter().filter_map(|f| refused(f)) {
                            if let Some(waiting) = l.catchups.remove(&id) {
                                let _ = waiting.send(None);
                            }
                        }
                    }
                    l.outbox.clone()
                });
                if let Some(outbox) = outbox {
                    for frame in frames {
                        outbox.push(frame);
                    }
                }
            }
            Body::Catchup {
                conn,
                id,
                session,
                frames,
                rooms,
            } => {
                let waiting = lock(&self.state)
                    .locals
                    .get_mut(&conn)
                    .and_then(|l| l.catchups.remove(&id));
                if let Some(waiting) = waiting {
                    let _ = waiting.send(Some(Catchup {
                        conn,
                        session,
                        frames,
                        rooms,
                        owner: Some(from),
                    }));
                }
            }
            Body::Close { conn, code } => {
                if let Some(outbox) = self.outbox(conn) {
                    let reason = match code {
                        crate::conn::CLOSE_TOO_SLOW => crate::conn::TOO_SLOW,
                        _ => MOVED,
                    };
                    outbox.close(code, reason);
                }
            }
        }
    }

    /// A request for a connection served here for `node`: to its task,
    /// started with its first request.
    fn request(
        self: &Cluster,
        hub: &Arc<Hub>,
        node: &str,
        conn: ConnId,
        identity: PublicIdentity,
        text: String,
    ) {
        let key = (node.to_owned(), conn);
        let mut state = lock(&self.state);
        let remote = state.remotes.entry(key).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(REMOTE_QUEUE);
            tokio::spawn(crate::conn::serve_remote(
                hub.clone(),
                node.to_owned(),
                conn,
                identity,
                rx,
            ));
            tx
        });
        if remote.try_send(RemoteInput::Request(text)).is_err() {
            state.remotes.remove(&(node.to_owned(), conn));
            drop(state);
            self.close(node, conn, crate::conn::CLOSE_TOO_SLOW);
        }
    }

    /// Say this node lives for another lease, and give up the sessions it
    /// no longer holds (neither loaded in `hub` nor routed here within
    /// [`IDLE_LEASES`] leases). A node that cannot say so before its last lease runs out
    /// decides for nothing more: every session it holds is evicted.
    async fn renew(&self, hub: &Hub) {
        let started = Instant::now();
        let (held, released) = {
            let mut state = lock(&self.state);
            let idle = self.lease * IDLE_LEASES;
            state
                .claimed
                .retain(|_, at| started.duration_since(*at) < idle);
            let held: HashSet<SessionId> = hub
                .loaded()
                .into_iter()
                .chain(state.claimed.keys().copied())
                .collect();
            let released: Vec<SessionId> = state.held.difference(&held).copied().collect();
            for session in &released {
                state.owners.remove(session);
            }
            // What was learnt of other nodes' sessions and has gone stale.
            state
                .owners
                .retain(|_, k| k.route == Route::Here || k.until > started);
            state.held.clone_from(&held);
            (held, released)
        };
        match self.leases.renew(&released).await {
            Ok(()) => {
                let mut state = lock(&self.state);
                let until = started + self.lease - self.lease / 4;
                state.held_until = Some(until);
                for known in state.owners.values_mut() {
                    if known.route == Route::Here {
                        known.until = until;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew this node's leases");
                let expired = lock(&self.state)
                    .held_until
                    .is_none_or(|until| Instant::now() >= until);
                if expired {
                    // No longer sure of any lease: decide for nothing.
                    let mut state = lock(&self.state);
                    state.owners.retain(|_, k| k.route != Route::Here);
                    state.claimed.clear();
                    state.held.clear();
                    drop(state);
                    for session in held {
                        hub.evict(&session);
                    }
                }
            }
        }
    }

    /// A peer is silent: believe it gone.
    fn check_peers(&self) {
        let now = Instant::now();
        let silent: Vec<String> = lock(&self.state)
            .peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.heard) >= SILENCE)
            .map(|(n, _)| n.clone())
            .collect();
        for node in silent {
            tracing::warn!(peer = %node, "a relay node went silent: its sessions move");
            let mut state = lock(&self.state);
            state.peers.remove(&node);
            state.silent.insert(node.clone());
            drop(state);
            self.break_link(&node);
        }
    }

    /// Run the node's part until `stop`: send queued packets in order,
    /// take in packets and heartbeats, say it is alive, renew leases.
    pub(crate) async fn run(
        self: Arc<Self>,
        hub: Arc<Hub>,
        queue: Outgoing,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        if let Err(e) = self.serve(hub, queue, stop).await {
            tracing::error!(error = %e, "the link to the cluster failed");
        }
    }

    async fn serve(
        &self,
        hub: Arc<Hub>,
        mut queue: Outgoing,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ClusterError> {
        let nats_error = |e: &dyn std::fmt::Display| ClusterError::Nats {
            url: "the cluster's server".into(),
            error: e.to_string(),
        };
        let mut inbox = self
            .nats
            .subscribe(self.subject(&self.node))
            .await
            .map_err(|e| nats_error(&e))?;
        let mut alive = self
            .nats
            .subscribe(format!("{}.alive", self.prefix))
            .await
            .map_err(|e| nats_error(&e))?;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let mut renewal = tokio::time::interval(self.lease / 3);
        let mut sent: HashMap<String, u64> = HashMap::new();
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                n = queue.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    for (to, body) in batch.drain(..) {
                        let seq = sent.entry(to.clone()).or_default();
                        let subject = self.subject(&to);
                        let packet = Packet { from: self.node.clone(), to, seq: *seq, body };
                        *seq += 1;
                        match seal(&self.key, &packet) {
                            Some(bytes) => {
                                if let Err(e) = self.nats.publish(subject, bytes.into()).await {
                                    tracing::warn!(peer = %packet.to, error = %e, "publish failed");
                                }
                            }
                            None => tracing::error!("a packet did not encode"),
                        }
                    }
                }
                Some(message) = inbox.next() => {
                    match open::<Packet>(&self.key, &message.payload) {
                        Some(packet) if packet.to == self.node => self.receive(&hub, packet),
                        _ => tracing::warn!("a packet on this node's subject is not from a node of this cluster, or not for this node: dropped"),
                    }
                }
                Some(message) = alive.next() => {
                    if let Some(Alive { node }) = open(&self.key, &message.payload)
                        && node != self.node
                    {
                        let now = Instant::now();
                        let mut state = lock(&self.state);
                        state.silent.remove(&node);
                        state.peers.entry(node).or_insert(Peer { heard: now, next: 0 }).heard = now;
                    }
                }
                _ = heartbeat.tick() => {
                    if let Some(bytes) = seal(&self.key, &Alive { node: self.node.clone() }) {
                        let _ = self.nats.publish(format!("{}.alive", self.prefix), bytes.into()).await;
                    }
                    self.check_peers();
                }
                _ = renewal.tick() => self.renew(&hub).await,
            }
        }
        Ok(())
    }

    /// Give up every lease (a node that drains), so that other nodes take
    /// its sessions at once.
    pub(crate) async fn leave(&self) {
        if let Err(e) = self.leases.release().await {
            tracing::warn!(error = %e, "could not give up session leases");
        }
        let _ = self.nats.flush().await;
    }
}
