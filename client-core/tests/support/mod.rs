//! A simulated network for client machines: an in-memory relay that speaks
//! the wire protocol of `docs/protocol.md` (authentication, sessions,
//! rosters, key bundles, invites and the waiting room, posts with indices,
//! catch-up), and a [`World`] that steps several machines against it with a
//! virtual clock — quinn-proto's `Pair`, for Caucus. No sockets, no time
//! read from the system: every run is the same.
//!
//! The relay here checks what routing needs (who is authenticated, who is
//! in which room at which epoch); the real relay's full checks are tested
//! in `server/` and end to end.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::{BTreeMap, VecDeque};

use caucus_client_core::{Changes, Event, Machine, OpId, Outcome, Timestamp};
use caucus_protocol::auth::AuthTarget;
use caucus_protocol::crypto::Digest;
use caucus_protocol::document::Layout;
use caucus_protocol::envelope::{Envelope, PROTOCOL_VERSION};
use caucus_protocol::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use caucus_protocol::ids::{FileId, InviteId, RoomId, SessionId};
use caucus_protocol::invite::{JoinRequest, same_relay};
use caucus_protocol::keys::SignedKeyBundle;
use caucus_protocol::roster::{Roster, SignedRoster};
use caucus_protocol::wire::{
    self, Encoded, ErrorCode, Event as WireEvent, MediatorWhereabouts, Reply, RequestBody,
    ServerFrame,
};

pub const RELAY: &str = "ws://sim.invalid";

/// How many frames a device handles before it saves (as the native driver).
pub const BATCH: usize = 256;

/// A connection's id.
pub type Conn = usize;

#[derive(Default)]
struct SimSession {
    rosters: Vec<SignedRoster>,
    mediator: Option<PublicIdentity>,
    bundles: Vec<SignedKeyBundle>,
    logs: BTreeMap<RoomId, Vec<Envelope>>,
    invites: BTreeMap<InviteId, Digest>,
    waiting: Vec<(Conn, JoinRequest)>,
    followers: Vec<Conn>,
    closed: bool,
    documents: BTreeMap<FileId, SimDocument>,
}

/// A document at the relay: who began it, its layout, its chunks so far.
struct SimDocument {
    uploader: Fingerprint,
    layout: Layout,
    chunks: Vec<Vec<u8>>,
}

/// How a hostile relay answers a `download` (13.5.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// Chunk `i + 1` for chunk `i` (the last for the last).
    Swap,
    /// The chunk cut short by one byte.
    Truncate,
    /// An `ok` with no chunk in it.
    Drop,
    /// The chunk of another document, at the same index.
    Substitute(FileId),
    /// The first chunk for every index after it.
    Repeat,
}

impl SimSession {
    fn roster(&self) -> Option<&Roster> {
        self.rosters.last().map(SignedRoster::unverified)
    }
}

/// The in-memory relay.
#[derive(Default)]
pub struct SimRelay {
    conns: BTreeMap<Conn, Option<Fingerprint>>,
    nonces: BTreeMap<Conn, Digest>,
    sessions: BTreeMap<SessionId, SimSession>,
    keys: Option<DeviceKeys>,
    /// Frames to deliver: to which connection, what.
    pub out: VecDeque<(Conn, String)>,
    /// While true, frames from clients are lost before the relay reads
    /// them (a connection that dies on the way).
    pub deaf: bool,
    /// Once this many document chunks have been stored, or served, the
    /// relay turns deaf (a connection that dies in the middle of a
    /// transfer).
    pub deaf_after_chunks: Option<usize>,
    /// Chunks stored (`chunk`) and served (`download`) so far.
    pub chunks_stored: usize,
    /// See [`SimRelay::chunks_stored`].
    pub chunks_served: usize,
    /// Every request's type, in the order the relay read them.
    pub requests: Vec<&'static str>,
    /// How this relay lies about documents, if it does.
    pub hostile: Option<Hostile>,
    next_conn: Conn,
}

fn frame(event: WireEvent) -> String {
    serde_json::to_string(&ServerFrame::Event(Box::new(event))).unwrap()
}

fn reply(r: Reply) -> String {
    serde_json::to_string(&ServerFrame::Reply(r)).unwrap()
}

impl SimRelay {
    pub fn new() -> Self {
        Self {
            keys: Some(DeviceKeys::generate().unwrap()),
            ..Self::default()
        }
    }

    /// A new connection: the relay sends its challenge.
    pub fn connect(&mut self) -> Conn {
        let conn = self.next_conn;
        self.next_conn += 1;
        let mut nonce = Digest([7; 32]);
        nonce.0[..8].copy_from_slice(&(conn as u64).to_be_bytes());
        self.conns.insert(conn, None);
        self.nonces.insert(conn, nonce);
        let relay = self.keys.as_ref().unwrap().public().clone();
        self.out.push_back((
            conn,
            frame(WireEvent::Challenge {
                v: PROTOCOL_VERSION,
                nonce,
                relay: Encoded(relay),
                rotations: Vec::new(),
            }),
        ));
        conn
    }

    /// Change the stored envelope at `index` in `room` (its bytes, as
    /// `alter` makes them): a relay that damages or forges one.
    pub fn alter_envelope(
        &mut self,
        session: &SessionId,
        room: &RoomId,
        index: u64,
        alter: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) {
        use caucus_protocol::codec::Canonical;
        let stored = &mut self
            .sessions
            .get_mut(session)
            .unwrap()
            .logs
            .get_mut(room)
            .unwrap()[usize::try_from(index - 1).unwrap()];
        *stored = Envelope::from_bytes(&alter(stored.to_bytes())).unwrap();
    }

    /// The connection is gone.
    pub fn disconnect(&mut self, conn: Conn) {
        self.conns.remove(&conn);
        for s in self.sessions.values_mut() {
            s.followers.retain(|c| *c != conn);
            s.waiting.retain(|(c, _)| *c != conn);
        }
        self.out.retain(|(c, _)| *c != conn);
    }

    fn send(&mut self, conn: Conn, text: String) {
        self.out.push_back((conn, text));
    }

    /// Send `text` to every follower of `session` whose device `to` picks.
    fn tell(&mut self, session: &SessionId, to: impl Fn(&Fingerprint) -> bool, text: &str) {
        let targets: Vec<Conn> = self.sessions[session]
            .followers
            .iter()
            .copied()
            .filter(|c| self.conns.get(c).copied().flatten().is_some_and(|f| to(&f)))
            .collect();
        for c in targets {
            self.send(c, text.to_owned());
        }
    }

    /// Handle a frame from `conn`.
    pub fn handle(&mut self, conn: Conn, text: &str) {
        if self.deaf {
            return;
        }
        let request = match wire::parse_request(text) {
            Ok(r) => r,
            Err(e) => return self.send(conn, reply(e.reply())),
        };
        let id = request.id;
        self.requests.push(request.body.kind());
        if let Some(r) = self.serve_document(conn, &request.body, id) {
            let r = r.unwrap_or_else(|(code, msg)| Reply::error(Some(id), code, msg));
            return self.send(conn, reply(r));
        }
        let outcome = self.serve(conn, request.body, id);
        let r = match outcome {
            Ok(Some(index)) => Reply::posted(id, index),
            Ok(None) => Reply::ok(id),
            Err((code, msg)) => Reply::error(Some(id), code, msg),
        };
        self.send(conn, reply(r));
    }

    fn who(&self, conn: Conn) -> Result<Fingerprint, (ErrorCode, &'static str)> {
        self.conns
            .get(&conn)
            .copied()
            .flatten()
            .ok_or((ErrorCode::Unauthenticated, "authenticate first"))
    }

    /// Serve `upload`, `chunk` and `download` as protocol.md 13.5.14-16
    /// says (less the quotas and the budget); `None` for other requests.
    fn serve_document(
        &mut self,
        conn: Conn,
        body: &RequestBody,
        id: u64,
    ) -> Option<Result<Reply, (ErrorCode, &'static str)>> {
        let (session, file) = match body {
            RequestBody::Upload { session, file, .. }
            | RequestBody::Chunk { session, file, .. }
            | RequestBody::Download { session, file, .. } => (*session, *file),
            _ => return None,
        };
        let hostile = self.hostile;
        let limit = self.deaf_after_chunks;
        let me = match self.who(conn) {
            Ok(me) => me,
            Err(e) => return Some(Err(e)),
        };
        let Some(s) = self.sessions.get_mut(&session) else {
            return Some(Err((ErrorCode::NotFound, "no such session")));
        };
        if s.closed {
            return Some(Err((ErrorCode::SessionClosed, "closed")));
        }
        if s.roster().is_none_or(|r| r.member(&me).is_none()) {
            return Some(Err((ErrorCode::Forbidden, "not a member of this session")));
        }
        let other = |s: &SimSession, i: u64| {
            let Some(Hostile::Substitute(other)) = hostile else {
                return None;
            };
            s.documents.get(&other)?.chunks.get(i as usize).cloned()
        };
        let result = match body {
            RequestBody::Upload { size, .. } => {
                let Some(layout) = Layout::of_padded(*size) else {
                    return Some(Err((ErrorCode::Invalid, "not a padded document size")));
                };
                match s.documents.get(&file) {
                    Some(d) if d.uploader == me && d.layout == layout => {
                        Ok(Reply::uploading(id, d.chunks.len() as u64))
                    }
                    Some(_) => Err((ErrorCode::Conflict, "that document id is taken")),
                    None => {
                        s.documents.insert(
                            file,
                            SimDocument {
                                uploader: me,
                                layout,
                                chunks: Vec::new(),
                            },
                        );
                        Ok(Reply::uploading(id, 0))
                    }
                }
            }
            RequestBody::Chunk { index, data, .. } => {
                let Some(d) = s.documents.get_mut(&file) else {
                    return Some(Err((ErrorCode::NotFound, "no such upload")));
                };
                if d.uploader != me {
                    return Some(Err((ErrorCode::Forbidden, "not the uploader")));
                }
                if d.chunks.len() as u32 == d.layout.chunks() {
                    return Some(Err((ErrorCode::Conflict, "the document is complete")));
                }
                if *index != d.chunks.len() as u64 {
                    return Some(Err((ErrorCode::Conflict, "expected another chunk")));
                }
                if Some(data.0.len()) != d.layout.chunk_len(*index as u32) {
                    return Some(Err((ErrorCode::Invalid, "a chunk of the wrong length")));
                }
                d.chunks.push(data.0.clone());
                self.chunks_stored += 1;
                Ok(Reply::ok(id))
            }
            RequestBody::Download { index, .. } => {
                let Some(d) = s.documents.get(&file) else {
                    return Some(Err((ErrorCode::NotFound, "no such document")));
                };
                if d.chunks.len() as u32 != d.layout.chunks() {
                    return Some(Err((ErrorCode::NotFound, "no such document")));
                }
                let Some(chunk) = d.chunks.get(*index as usize) else {
                    return Some(Err((ErrorCode::NotFound, "no such chunk")));
                };
                let last = d.chunks.len() - 1;
                let i = *index as usize;
                let served = match hostile {
                    None => Some(chunk.clone()),
                    Some(Hostile::Swap) => Some(d.chunks[(i + 1).min(last)].clone()),
                    Some(Hostile::Truncate) => Some(chunk[..chunk.len() - 1].to_vec()),
                    Some(Hostile::Drop) => None,
                    Some(Hostile::Substitute(_)) => other(s, *index),
                    Some(Hostile::Repeat) => Some(d.chunks[0].clone()),
                };
                self.chunks_served += 1;
                Ok(match served {
                    Some(data) => Reply::chunk(id, data),
                    None => Reply::ok(id),
                })
            }
            _ => return None,
        };
        if limit.is_some_and(|n| self.chunks_stored + self.chunks_served >= n) {
            self.deaf = true;
        }
        Some(result)
    }

    fn serve(
        &mut self,
        conn: Conn,
        body: RequestBody,
        _id: u64,
    ) -> Result<Option<u64>, (ErrorCode, &'static str)> {
        if let RequestBody::Auth {
            identity,
            url,
            signature,
        } = &body
        {
            let nonce = self.nonces[&conn];
            let relay = self.keys.as_ref().unwrap().fingerprint();
            if !same_relay(url, RELAY) {
                return Err((ErrorCode::AuthFailed, "not this relay's URL"));
            }
            AuthTarget::new(nonce, relay, url)
                .verify(&identity.0, signature)
                .map_err(|_| (ErrorCode::Unauthenticated, "bad signature"))?;
            self.conns.insert(conn, Some(identity.0.fingerprint()));
            return Ok(None);
        }
        let me = self.who(conn)?;
        match body {
            RequestBody::Auth { .. } => unreachable!(),
            RequestBody::CreateSession { roster } => {
                let r = roster.0.unverified();
                let mediator = r.members[0].identity.clone();
                roster
                    .0
                    .verify(&mediator.fingerprint())
                    .map_err(|_| (ErrorCode::Invalid, "bad roster"))?;
                let s = self.sessions.entry(r.session).or_default();
                s.mediator = Some(mediator);
                s.rosters.push(roster.0);
                Ok(None)
            }
            RequestBody::PublishRoster { roster } => {
                let session = roster.0.unverified().session;
                let s = self
                    .sessions
                    .get_mut(&session)
                    .ok_or((ErrorCode::NotFound, "no such session"))?;
                let mediator = s.mediator.clone().unwrap();
                if me != mediator.fingerprint() {
                    return Err((ErrorCode::Forbidden, "not the mediator"));
                }
                let r = roster
                    .0
                    .verify(&me)
                    .map_err(|_| (ErrorCode::Invalid, "bad roster"))?;
                if r.version != s.roster().map_or(0, |r| r.version) + 1 {
                    return Err((ErrorCode::Conflict, "not the next version"));
                }
                let event = frame(WireEvent::Roster {
                    v: PROTOCOL_VERSION,
                    session,
                    roster: Encoded(roster.0.clone()),
                });
                let admitted: Vec<Conn> = s
                    .waiting
                    .iter()
                    .filter(|(_, j)| r.member(&j.identity.fingerprint()).is_some())
                    .map(|(c, _)| *c)
                    .collect();
                s.waiting.retain(|(c, _)| !admitted.contains(c));
                let new = roster.0.unverified().clone();
                s.rosters.push(roster.0);
                let followers: Vec<Conn> = s.followers.clone();
                for c in followers.into_iter().chain(admitted) {
                    self.send(c, event.clone());
                }
                let s = self.sessions.get_mut(&session).unwrap();
                let conns = &self.conns;
                s.followers.retain(|c| {
                    conns
                        .get(c)
                        .copied()
                        .flatten()
                        .is_some_and(|f| new.member(&f).is_some())
                });
                Ok(None)
            }
            RequestBody::PublishKeys { bundle } => {
                let b = bundle.0.unverified().clone();
                let s = self
                    .sessions
                    .get_mut(&b.session)
                    .ok_or((ErrorCode::NotFound, "no such session"))?;
                s.bundles.push(bundle.0.clone());
                let event = frame(WireEvent::KeyBundle {
                    v: PROTOCOL_VERSION,
                    session: b.session,
                    bundle: Encoded(bundle.0),
                });
                self.tell(
                    &b.session,
                    |f| b.entries.iter().any(|e| e.recipient == *f),
                    &event,
                );
                Ok(None)
            }
            RequestBody::CreateInvite {
                session,
                invite,
                token_hash,
                ..
            } => {
                let s = self
                    .sessions
                    .get_mut(&session)
                    .ok_or((ErrorCode::NotFound, "no such session"))?;
                s.invites.insert(invite, token_hash);
                Ok(None)
            }
            RequestBody::Join { token, request } => {
                let j = request.0;
                let s = self
                    .sessions
                    .get_mut(&j.session)
                    .ok_or((ErrorCode::NotFound, "no such session"))?;
                if s.invites.get(&j.invite) != Some(&token.hash()) {
                    return Err((ErrorCode::Forbidden, "no such invite"));
                }
                s.waiting.retain(|(c, _)| *c != conn);
                s.waiting.push((conn, j.clone()));
                let mediator = s.mediator.clone().unwrap().fingerprint();
                let event = frame(WireEvent::JoinRequest {
                    v: PROTOCOL_VERSION,
                    request: Encoded(j.clone()),
                });
                self.tell(&j.session, |f| *f == mediator, &event);
                Ok(None)
            }
            RequestBody::Decline { session, invite } => {
                let s = self
                    .sessions
                    .get_mut(&session)
                    .ok_or((ErrorCode::NotFound, "no such session"))?;
                let gone: Vec<Conn> = s
                    .waiting
                    .iter()
                    .filter(|(_, j)| j.invite == invite)
                    .map(|(c, _)| *c)
                    .collect();
                s.waiting.retain(|(_, j)| j.invite != invite);
                for c in gone {
                    self.send(
                        c,
                        frame(WireEvent::Declined {
                            v: PROTOCOL_VERSION,
                            session,
                        }),
                    );
                }
                Ok(None)
            }
            RequestBody::Post { envelope } => {
                let h = envelope.0.header().clone();
                if h.sender != me {
                    return Err((ErrorCode::Forbidden, "not the sender"));
                }
                let s = self
                    .sessions
                    .get_mut(&h.session)
                    .ok_or((ErrorCode::NotFound, "no such session"))?;
                if s.closed {
                    return Err((ErrorCode::SessionClosed, "closed"));
                }
                let roster = s.roster().unwrap().clone();
                let room = roster
                    .room(&h.room)
                    .ok_or((ErrorCode::NotFound, "no such room"))?;
                if !room.has(&me) {
                    return Err((ErrorCode::Forbidden, "not in this room"));
                }
                if room.epoch != h.epoch {
                    return Err((ErrorCode::Invalid, "not the room's current epoch"));
                }
                let log = s.logs.entry(h.room).or_default();
                log.push(envelope.0.clone());
                let index = log.len() as u64;
                let event = frame(WireEvent::Envelope {
                    v: PROTOCOL_VERSION,
                    index,
                    envelope: Encoded(envelope.0),
                });
                self.tell(&h.session, |f| *f != me && room.has(f), &event);
                Ok(Some(index))
            }
            RequestBody::Subscribe {
                session,
                roster_after,
                rooms,
            } => {
                let s = self
                    .sessions
                    .get_mut(&session)
                    .ok_or((ErrorCode::NotFound, "no such session"))?;
                if s.closed {
                    return Err((ErrorCode::SessionClosed, "closed"));
                }
                let roster = s.roster().unwrap().clone();
                if roster.member(&me).is_none() {
                    return Err((ErrorCode::Forbidden, "not a member"));
                }
                if !s.followers.contains(&conn) {
                    s.followers.push(conn);
                }
                let mut frames = Vec::new();
                for r in s
                    .rosters
                    .iter()
                    .filter(|r| r.unverified().version > roster_after)
                {
                    frames.push(frame(WireEvent::Roster {
                        v: PROTOCOL_VERSION,
                        session,
                        roster: Encoded(r.clone()),
                    }));
                }
                for b in &s.bundles {
                    if b.unverified().entries.iter().any(|e| e.recipient == me) {
                        frames.push(frame(WireEvent::KeyBundle {
                            v: PROTOCOL_VERSION,
                            session,
                            bundle: Encoded(b.clone()),
                        }));
                    }
                }
                if s.mediator.as_ref().map(PublicIdentity::fingerprint) == Some(me) {
                    for (_, j) in &s.waiting {
                        frames.push(frame(WireEvent::JoinRequest {
                            v: PROTOCOL_VERSION,
                            request: Encoded(j.clone()),
                        }));
                    }
                }
                for room in roster.rooms.iter().filter(|r| r.has(&me)) {
                    let after = rooms
                        .iter()
                        .find(|c| c.room == room.id)
                        .map_or(0, |c| c.after);
                    for (i, e) in s.logs.get(&room.id).into_iter().flatten().enumerate() {
                        let index = i as u64 + 1;
                        if index > after {
                            frames.push(frame(WireEvent::Envelope {
                                v: PROTOCOL_VERSION,
                                index,
                                envelope: Encoded(e.clone()),
                            }));
                        }
                    }
                }
                frames.push(frame(WireEvent::Presence {
                    v: PROTOCOL_VERSION,
                    session,
                    online: vec![me],
                    mediator: MediatorWhereabouts::Away,
                }));
                for f in frames {
                    self.send(conn, f);
                }
                Ok(None)
            }
            RequestBody::Location { .. } | RequestBody::Status { .. } => Ok(None),
            RequestBody::CloseSession { session } => {
                let s = self
                    .sessions
                    .get_mut(&session)
                    .ok_or((ErrorCode::NotFound, "no such session"))?;
                s.closed = true;
                let followers = s.followers.clone();
                for c in followers {
                    if c != conn {
                        self.send(
                            c,
                            frame(WireEvent::SessionClosed {
                                v: PROTOCOL_VERSION,
                                session,
                            }),
                        );
                    }
                }
                Ok(None)
            }
            RequestBody::DeletionStatement { .. } => Err((ErrorCode::NotFound, "kept for now")),
            RequestBody::Upload { .. }
            | RequestBody::Chunk { .. }
            | RequestBody::Download { .. } => {
                unreachable!("served by serve_document")
            }
        }
    }
}

/// What a device has saved: the snapshot and log of each session, as a
/// driver's storage would hold them.
#[derive(Default, Clone)]
pub struct Disk {
    pub sessions: BTreeMap<SessionId, (Vec<u8>, Vec<Vec<u8>>)>,
    /// Every byte ever written.
    pub written: u64,
}

impl Disk {
    pub fn apply(&mut self, changes: Changes) {
        for (id, c) in changes.sessions {
            if c.erase {
                self.sessions.remove(&id);
            }
            let entry = self.sessions.entry(id).or_default();
            for record in c.appended {
                self.written += record.len() as u64;
                entry.1.push(record.to_vec());
            }
            if let Some(s) = c.snapshot {
                self.written += s.len() as u64;
                entry.0 = s.to_vec();
            }
        }
    }
}

/// One simulated device.
pub struct Device {
    pub name: &'static str,
    pub keys_bytes: Vec<u8>,
    pub machine: Machine,
    pub conn: Option<Conn>,
    pub disk: Disk,
    pub events: Vec<Event>,
    pub done: BTreeMap<OpId, Result<Outcome, caucus_client_core::ClientError>>,
    /// The files being uploaded, by operation: what the driver reads.
    pub files: BTreeMap<OpId, Vec<u8>>,
    /// What each download has written, at the offsets given.
    pub downloads: BTreeMap<OpId, Vec<u8>>,
    /// The sealed chunks of each download, in the order they came (a
    /// driver's cache).
    pub cache: BTreeMap<OpId, Vec<Vec<u8>>>,
}

/// Several devices and one relay, stepped on a virtual clock.
pub struct World {
    pub relay: SimRelay,
    pub devices: Vec<Device>,
    pub now: Timestamp,
    /// Whether a device reads each batch of frames before it handles them
    /// (`read_frame`, then `handle_read`), as the native driver does, or
    /// handles each as it reads it (`handle_frame`), as the browser's.
    pub read_ahead: bool,
}

impl World {
    pub fn new() -> Self {
        Self {
            relay: SimRelay::new(),
            devices: Vec::new(),
            now: Timestamp::from_millis(1_800_000_000_000),
            read_ahead: true,
        }
    }

    /// A new device, connected.
    pub fn device(&mut self, name: &'static str) -> usize {
        let keys = DeviceKeys::generate().unwrap();
        let keys_bytes = keys.to_secret_bytes().to_vec();
        self.devices.push(Device {
            name,
            keys_bytes,
            machine: Machine::new(keys, RELAY),
            conn: None,
            disk: Disk::default(),
            events: Vec::new(),
            done: BTreeMap::new(),
            files: BTreeMap::new(),
            downloads: BTreeMap::new(),
            cache: BTreeMap::new(),
        });
        let d = self.devices.len() - 1;
        self.connect(d);
        d
    }

    pub fn connect(&mut self, d: usize) {
        self.connect_only(d);
        self.run();
    }

    /// Connect device `d`, and let nothing move yet (see [`World::step`]).
    pub fn connect_only(&mut self, d: usize) {
        let conn = self.relay.connect();
        self.devices[d].conn = Some(conn);
        self.devices[d].machine.connected(self.now);
    }

    pub fn disconnect(&mut self, d: usize) {
        if let Some(conn) = self.devices[d].conn.take() {
            self.relay.disconnect(conn);
        }
        self.devices[d].machine.disconnected(self.now);
        self.run();
    }

    /// The device as a crash leaves it: a new machine from what was saved,
    /// not connected.
    pub fn crash(&mut self, d: usize) {
        if let Some(conn) = self.devices[d].conn.take() {
            self.relay.disconnect(conn);
        }
        let dev = &mut self.devices[d];
        let keys = DeviceKeys::from_secret_bytes(&dev.keys_bytes).unwrap();
        let mut machine = Machine::new(keys, RELAY);
        for (snapshot, log) in dev.disk.sessions.values() {
            machine
                .restore(snapshot, log.iter().map(Vec::as_slice))
                .unwrap();
        }
        dev.machine = machine;
        dev.events.clear();
    }

    /// Move the clock on, and let every machine see it.
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_millis(ms);
        for d in &mut self.devices {
            if d.machine.poll_timeout().is_some_and(|t| t <= self.now) {
                d.machine.handle_timeout(self.now);
            }
        }
        self.run();
    }

    /// Step until nothing moves: each device saves, sends; the relay
    /// answers; frames are delivered. Each delivery costs a millisecond.
    pub fn run(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the world did not settle");
    }

    /// One round of [`World::run`]: every device saves and sends, then up
    /// to a batch of frames is delivered. Whether anything moved.
    pub fn step(&mut self) -> bool {
        let mut moved = false;
        for d in 0..self.devices.len() {
            moved |= self.flush(d);
        }
        // Up to a batch of frames, then every device saves: as the
        // native driver does with frames that have already arrived,
        // each device's read first (`read_frame`), then handled in
        // order.
        let mut batch: Vec<Vec<String>> = vec![Vec::new(); self.devices.len()];
        for _ in 0..BATCH {
            let Some((conn, text)) = self.relay.out.pop_front() else {
                break;
            };
            moved = true;
            if let Some(d) = self.devices.iter().position(|d| d.conn == Some(conn)) {
                batch[d].push(text);
            }
        }
        for (d, texts) in batch.into_iter().enumerate() {
            let machine = &mut self.devices[d].machine;
            if self.read_ahead {
                let read: Vec<_> = texts.iter().map(|t| machine.read_frame(t)).collect();
                for frame in read {
                    machine.handle_read(frame, self.now);
                }
            } else {
                for text in &texts {
                    machine.handle_frame(text, self.now);
                }
            }
        }
        if moved {
            self.now = self.now.plus_millis(1);
        }
        moved
    }

    /// Device `d` saves and sends what it has, and nothing is delivered.
    pub fn transmit(&mut self, d: usize) {
        self.flush(d);
    }

    fn flush(&mut self, d: usize) -> bool {
        let mut moved = false;
        loop {
            let dev = &mut self.devices[d];
            if dev.machine.has_changes() {
                let changes = dev.machine.take_changes().unwrap();
                dev.disk.apply(changes);
            }
            while let Some(e) = dev.machine.poll_event() {
                dev.events.push(e);
                moved = true;
            }
            while let Some((op, outcome)) = dev.machine.poll_done() {
                dev.done.insert(op, outcome);
                moved = true;
            }
            while let Some(read) = dev.machine.poll_read() {
                let file = &dev.files[&read.transfer];
                let bytes = &file[read.range.start as usize..read.range.end as usize];
                dev.machine
                    .provide_chunk(read.transfer, read.index, bytes, self.now);
                moved = true;
            }
            while let Some(chunk) = dev.machine.poll_chunk() {
                let out = dev.downloads.entry(chunk.transfer).or_default();
                let end = chunk.offset as usize + chunk.bytes.len();
                if out.len() < end {
                    out.resize(end, 0);
                }
                out[chunk.offset as usize..end].copy_from_slice(&chunk.bytes);
                dev.cache
                    .entry(chunk.transfer)
                    .or_default()
                    .push(chunk.sealed);
                moved = true;
            }
            let Some(frame) = dev.machine.poll_transmit() else {
                return moved;
            };
            moved = true;
            if let Some(conn) = dev.conn {
                self.relay.handle(conn, &frame);
            }
        }
    }

    /// Ask device `d` (`ask(machine, now)` gives an operation), and run
    /// until it is done: its outcome, or the command's refusal.
    pub fn ask(
        &mut self,
        d: usize,
        ask: impl FnOnce(&mut Machine, Timestamp) -> Result<OpId, caucus_client_core::ClientError>,
    ) -> Result<Outcome, caucus_client_core::ClientError> {
        let now = self.now;
        let op = ask(&mut self.devices[d].machine, now)?;
        self.outcome(d, op)
    }

    /// Run until `op` of device `d` is done, and give its outcome.
    pub fn outcome(
        &mut self,
        d: usize,
        op: OpId,
    ) -> Result<Outcome, caucus_client_core::ClientError> {
        self.run();
        let dev = &mut self.devices[d];
        dev.done
            .remove(&op)
            .unwrap_or_else(|| panic!("{}'s operation did not finish", dev.name))
    }

    pub fn m(&mut self, d: usize) -> &mut Machine {
        &mut self.devices[d].machine
    }

    /// The events device `d` has been shown, taken.
    pub fn events(&mut self, d: usize) -> Vec<Event> {
        std::mem::take(&mut self.devices[d].events)
    }
}
