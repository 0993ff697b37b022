//! The machine: one device, its sessions, and its conversation with one
//! relay, with no IO. See the crate documentation for the driver's loop.

use std::collections::{BTreeMap, VecDeque};

use caucus_protocol::auth::{AuthTarget, SignedRelayRotation, follow_rotations};
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, SystemEvent};
use caucus_protocol::deletion::SignedDeletionStatement;
use caucus_protocol::envelope::{CheckedEnvelope, PROTOCOL_VERSION};
use caucus_protocol::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::invite::{Invite, JoinRequest};
use caucus_protocol::keys::{RoomKey, SignedKeyBundle};
use caucus_protocol::roster::{Role, RoomKind, Roster, SignedRoster};
use caucus_protocol::session::Opened;
use caucus_protocol::wire::{
    self, Encoded, ErrorCode, Reply, Request, RequestBody, RoomCursor, ServerFrame,
};

use crate::error::ClientError;
use crate::event::{Event, Warning};
use crate::ops::{Awaiting, Op, OpId, Origin, Outcome, RosterEdit, Sent, Stage, Waiting};
use crate::state::{Changes, Kept, Membership, SessionChanges, SessionState};

type Result<T> = std::result::Result<T, ClientError>;

/// A moment, in milliseconds since the Unix epoch. The machine never reads
/// a clock: every input carries the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// `ms` milliseconds since the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (invites and agreements count in
    /// seconds).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// `ms` milliseconds later.
    pub const fn plus_millis(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

/// How long a request may wait for its reply, including while the
/// connection is down.
pub const REPLY_TIMEOUT_MS: u64 = 30_000;

/// How long a post waits for its room's key to arrive (key bundles follow a
/// new roster) before it fails.
pub const KEY_WAIT_MS: u64 = 5_000;

/// The request id of `auth`; every other request counts up from 1.
const AUTH_ID: u64 = 0;

/// The connection, as the machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// No connection: requests wait (until their deadline).
    Offline,
    /// Connected, authenticating: waiting for the challenge or the reply to
    /// `auth`.
    Authenticating,
    /// Authenticated: requests flow.
    Online,
    /// Connected, but the relay showed an identity other than the one
    /// pinned for it, with no rotation statement from the pinned one: this
    /// device does not authenticate, and nothing is sent
    /// ([`Machine::refused_relay`] says why).
    Refused,
}

/// A roster this (mediator) device signed and published, pending until the
/// relay accepts it or its echo comes back: only then does it become the
/// held roster, and only then are the new epochs' keys handed out.
struct PendingRoster {
    roster: SignedRoster,
    room_keys: Vec<RoomKey>,
    /// The operation that published it, while it is still waiting.
    op: Option<OpId>,
    /// Accepted from the relay's echo before the reply came.
    merged: bool,
}

/// A joiner in the waiting room whose proof verified, for the mediator to
/// admit or decline.
#[derive(Debug, Clone)]
pub struct Knock {
    /// The join request.
    pub request: JoinRequest,
    /// The party they join (`None`: a co-mediator).
    pub party: Option<PartyId>,
    /// Their name, as the mediator gave it on the invite.
    pub name: String,
}

pub(crate) struct Queued {
    id: u64,
    body: RequestBody,
    pub(crate) op: OpId,
    deadline: Timestamp,
}

impl Queued {
    /// A post: sealed, with its place in the sender's chain taken, so it
    /// waits for a connection however long that takes, rather than fail and
    /// leave a gap in the chain.
    fn is_post(&self) -> bool {
        matches!(self.body, RequestBody::Post { .. })
    }
}

pub(crate) struct InFlight {
    pub(crate) op: OpId,
    deadline: Timestamp,
}

/// A frame from the relay as [`Machine::read_frame`] read it, for
/// [`Machine::handle_read`].
#[derive(Debug)]
pub struct ReadFrame(Read);

#[derive(Debug)]
enum Read {
    /// An envelope, hashed and perhaps its signature checked.
    Envelope {
        index: u64,
        envelope: Box<CheckedEnvelope>,
    },
    /// Any other frame, or why it could not be read.
    Frame(std::result::Result<ServerFrame, wire::ServerFrameError>),
}

/// A Caucus device as a state machine: frames and the time in; frames to
/// send, events to show and changes to save out.
pub struct Machine {
    pub(crate) keys: DeviceKeys,
    relay: String,
    /// The relay's identity and rotations, from the latest challenge.
    shown: Option<(PublicIdentity, Vec<SignedRelayRotation>)>,
    /// Why the latest challenge was not answered.
    refused: Option<caucus_protocol::Error>,
    link: Link,
    pub(crate) transfers: BTreeMap<OpId, crate::transfer::Transfer>,
    pub(crate) sessions: BTreeMap<SessionId, SessionState>,
    pending: BTreeMap<SessionId, PendingRoster>,
    knocks: BTreeMap<SessionId, Vec<Knock>>,
    pub(crate) ops: BTreeMap<OpId, Op>,
    next_op: u64,
    next_request: u64,
    pub(crate) queue: VecDeque<Queued>,
    pub(crate) in_flight: BTreeMap<u64, InFlight>,
    auth: Option<String>,
    events: VecDeque<Event>,
    pub(crate) done: VecDeque<(OpId, Result<Outcome>)>,
    kept: Vec<(SessionId, Kept, Vec<u8>)>,
    erased: Vec<SessionId>,
    pub(crate) now: Timestamp,
}

impl Machine {
    /// A device with `keys`, talking to the relay at `relay` (its URL, as
    /// sessions and invites name it).
    pub fn new(keys: DeviceKeys, relay: &str) -> Self {
        Self {
            keys,
            relay: relay.to_owned(),
            shown: None,
            refused: None,
            link: Link::Offline,
            transfers: BTreeMap::new(),
            sessions: BTreeMap::new(),
            pending: BTreeMap::new(),
            knocks: BTreeMap::new(),
            ops: BTreeMap::new(),
            next_op: 0,
            next_request: AUTH_ID + 1,
            queue: VecDeque::new(),
            in_flight: BTreeMap::new(),
            auth: None,
            events: VecDeque::new(),
            done: VecDeque::new(),
            kept: Vec::new(),
            erased: Vec::new(),
            now: Timestamp::default(),
        }
    }

    /// Take back a saved session: its snapshot and its message log records,
    /// in the order they were appended (see [`crate::state`]). Sessions of
    /// another relay are not this machine's and are refused.
    pub fn restore<'a>(
        &mut self,
        snapshot: &[u8],
        log: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<SessionId> {
        let (state, unconfirmed) = SessionState::restore(snapshot, log)?;
        if !caucus_protocol::invite::same_relay(&state.meta.relay, &self.relay) {
            return Err(ClientError::Usage("a session of another relay"));
        }
        let id = state.view.session();
        self.sessions.insert(id, state);
        // Posts sealed before the restart and not known to be stored: the
        // next catch-up confirms them or they go again, as after a lost
        // connection.
        for post in unconfirmed {
            let op = OpId(self.next_op);
            self.next_op += 1;
            let mut unsent = Op::new(
                id,
                Origin::Automatic("sending a message written before a restart"),
                [],
                Outcome::Done,
            );
            unsent.waiting = Waiting::Unconfirmed {
                envelope: Box::new(post.envelope),
                own: Box::new(post.own),
                report: false,
            };
            self.ops.insert(op, unsent);
        }
        Ok(id)
    }

    // ----- the connection -----

    /// The driver opened a connection to the relay; the relay's challenge
    /// comes next.
    pub fn connected(&mut self, now: Timestamp) {
        self.now = now;
        self.link = Link::Authenticating;
        self.auth = None;
    }

    /// The connection is gone. Requests already sent fail (their replies
    /// are lost with it), except posts: a sealed message is never dropped,
    /// and whether the relay stored it the next catch-up tells
    /// ([`Waiting::Unconfirmed`]). Requests not yet sent wait for the next
    /// connection.
    pub fn disconnected(&mut self, now: Timestamp) {
        self.now = now;
        self.link = Link::Offline;
        self.auth = None;
        let lost: Vec<InFlight> = std::mem::take(&mut self.in_flight).into_values().collect();
        self.pause_transfers();
        for f in lost {
            let Some(op) = self.ops.get_mut(&f.op) else {
                continue;
            };
            match std::mem::replace(&mut op.waiting, Waiting::Idle) {
                Waiting::Reply {
                    awaiting:
                        Awaiting::Post {
                            envelope,
                            own,
                            report,
                        },
                    ..
                } => {
                    op.waiting = Waiting::Unconfirmed {
                        envelope,
                        own,
                        report,
                    };
                }
                other => {
                    op.waiting = other;
                    self.fail(
                        f.op,
                        ClientError::Connection("connection lost before the reply".into()),
                    );
                }
            }
        }
        // A catch-up starts again from scratch on the next connection.
        let resumes: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, op)| matches!(op.origin, Origin::Resume))
            .map(|(id, _)| *id)
            .collect();
        for id in resumes {
            self.ops.remove(&id);
            self.queue.retain(|q| q.op != id);
        }
        self.progress();
    }

    /// Where the connection stands.
    pub fn link(&self) -> Link {
        self.link
    }

    /// Why this device would not authenticate to the relay on the latest
    /// connection: the relay showed a key other than the one pinned for it
    /// ([`Link::Refused`]).
    pub fn refused_relay(&self) -> Option<&caucus_protocol::Error> {
        self.refused.as_ref()
    }

    /// The fingerprint of the relay's identity as this device knows it:
    /// the one shown in the latest challenge, once it was accepted.
    pub fn relay_key(&self) -> Option<Fingerprint> {
        match (&self.shown, &self.refused) {
            (Some((shown, _)), None) => Some(shown.fingerprint()),
            _ => None,
        }
    }

    /// Check the relay's identity against the key pinned for every session
    /// held (following rotation statements from it), then move the pins to
    /// it; a session with no pin yet (a mediator's, created before any
    /// challenge) pins it now. Nothing moves if any check fails.
    fn pin_relay(
        &mut self,
        shown: &PublicIdentity,
        rotations: &[SignedRelayRotation],
    ) -> std::result::Result<(), caucus_protocol::Error> {
        let mut moves = Vec::new();
        for (id, state) in &self.sessions {
            let newer = match state.meta.relay_keys.last() {
                Some(pinned) => follow_rotations(pinned, shown, rotations)?,
                None => vec![shown.fingerprint()],
            };
            if !newer.is_empty() {
                moves.push((*id, newer));
            }
        }
        for (id, newer) in moves {
            if let Some(state) = self.sessions.get_mut(&id) {
                state.meta.relay_keys.extend(newer);
                state.dirty = true;
            }
        }
        Ok(())
    }

    /// The relay is not the one pinned: do not authenticate, fail what
    /// waits for it, and say so in every session.
    fn refuse_relay(&mut self, why: caucus_protocol::Error) {
        self.link = Link::Refused;
        self.auth = None;
        let waiting: Vec<OpId> = self.queue.iter().map(|q| q.op).collect();
        for op in waiting {
            self.fail(op, ClientError::Protocol(why.clone()));
        }
        for session in self.live_sessions() {
            self.warn(session, Warning::Verification, why.to_string());
        }
        self.refused = Some(why);
    }

    /// Whether the relay as last shown may serve a session whose relay key
    /// is `pinned` (an invite's), following its rotation statements.
    pub(crate) fn check_relay_key(
        &self,
        pinned: &Fingerprint,
    ) -> std::result::Result<(), caucus_protocol::Error> {
        match &self.shown {
            Some((shown, rotations)) => follow_rotations(pinned, shown, rotations).map(drop),
            None => Ok(()),
        }
    }

    /// Whether every session has caught up since the last connection: the
    /// relay is reachable and no catch-up is still running.
    pub fn is_caught_up(&self) -> bool {
        self.link == Link::Online
            && !self
                .ops
                .values()
                .any(|op| matches!(op.origin, Origin::Resume))
    }

    /// Handle one text frame from the relay: [`Machine::read_frame`], then
    /// [`Machine::handle_read`].
    pub fn handle_frame(&mut self, text: &str, now: Timestamp) {
        let frame = self.read_frame(text);
        self.handle_read(frame, now);
    }

    /// Read one text frame from the relay, without changing anything:
    /// parse it, and for an envelope, hash it and check its signature if
    /// its sender is in a roster held here ([`CheckedEnvelope`]). This is
    /// most of the work a message costs, and it needs only `&self`: a
    /// driver that has a page of frames (a catch-up) may read them on
    /// several threads at once, then hand them to [`Machine::handle_read`]
    /// in the order they came. Opening still checks everything else, and
    /// the signature too unless it was checked here with the key the
    /// roster gives the sender when the envelope is opened.
    pub fn read_frame(&self, text: &str) -> ReadFrame {
        ReadFrame(match wire::parse_server_frame(text) {
            Ok(ServerFrame::Event(event)) => match *event {
                wire::Event::Envelope {
                    index, envelope, ..
                } => {
                    let h = envelope.0.header();
                    let sender = self
                        .sessions
                        .get(&h.session)
                        .and_then(|s| s.view.history().identity(&h.sender));
                    Read::Envelope {
                        index,
                        envelope: Box::new(CheckedEnvelope::check(envelope.0, sender)),
                    }
                }
                other => Read::Frame(Ok(ServerFrame::Event(Box::new(other)))),
            },
            other => Read::Frame(other),
        })
    }

    /// Handle one frame read by [`Machine::read_frame`]. Frames must be
    /// handled in the order they came.
    pub fn handle_read(&mut self, frame: ReadFrame, now: Timestamp) {
        self.now = now;
        match frame.0 {
            Read::Envelope { index, envelope } => self.on_envelope(index, &envelope),
            Read::Frame(Ok(ServerFrame::Reply(reply))) => self.on_reply(reply),
            Read::Frame(Ok(ServerFrame::Event(event))) => self.on_event(*event),
            Read::Frame(Err(wire::ServerFrameError::UnsupportedVersion(v))) => {
                self.other_version(v, now);
            }
            Read::Frame(Err(e)) => tracing::warn!(error = %e, "unreadable frame from the relay"),
        }
        self.progress();
    }

    /// The relay sent a frame of protocol version `v`, which this client
    /// does not speak: nothing more goes out on this connection (as if it
    /// were lost, so posts stay unconfirmed), and every other request fails
    /// saying so.
    fn other_version(&mut self, v: u64, now: Timestamp) {
        tracing::warn!(v, "the relay speaks another protocol version");
        let asked: Vec<OpId> = self
            .queue
            .iter()
            .filter(|q| !q.is_post())
            .map(|q| q.op)
            .chain(self.in_flight.values().map(|f| f.op))
            .filter(|op| {
                !self.ops.get(op).is_some_and(|o| {
                    matches!(
                        o.waiting,
                        Waiting::Reply {
                            awaiting: Awaiting::Post { .. },
                            ..
                        }
                    )
                })
            })
            .collect();
        for op in asked {
            self.fail(op, ClientError::RelayVersion(v));
        }
        self.disconnected(now);
    }

    /// Fail whatever has waited past its deadline.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        let late: Vec<OpId> = self
            .queue
            .iter()
            .filter(|q| q.deadline <= now && !q.is_post())
            .map(|q| q.op)
            .chain(
                self.in_flight
                    .values()
                    .filter(|f| f.deadline <= now)
                    .map(|f| f.op),
            )
            .collect();
        for op in late {
            self.fail(op, ClientError::Timeout);
        }
        let blocked: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, op)| matches!(op.waiting, Waiting::Blocked { until } if until <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in blocked {
            // Once more, without waiting: it runs, or fails saying why.
            self.step(id, true);
        }
        self.progress();
    }

    /// When [`Machine::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let requests = self
            .queue
            .iter()
            .filter(|q| !q.is_post())
            .map(|q| q.deadline)
            .chain(self.in_flight.values().map(|f| f.deadline));
        let blocked = self.ops.values().filter_map(|op| match op.waiting {
            Waiting::Blocked { until } => Some(until),
            _ => None,
        });
        requests.chain(blocked).min()
    }

    /// The next frame to send to the relay. Nothing is given while changes
    /// are unsaved: a sealed message must be on disk (its chain position
    /// with it) before it can reach anyone.
    pub fn poll_transmit(&mut self) -> Option<String> {
        if self.has_changes() {
            return None;
        }
        if let Some(auth) = self.auth.take() {
            return Some(auth);
        }
        if self.link != Link::Online {
            return None;
        }
        // The first request that may go: a post of a session with an
        // unconfirmed post waits until that one is settled, in order.
        let held: Vec<SessionId> = self
            .ops
            .values()
            .filter(|o| matches!(o.waiting, Waiting::Unconfirmed { .. }))
            .map(|o| o.session)
            .collect();
        let waits = |q: &Queued| {
            q.is_post()
                && self
                    .ops
                    .get(&q.op)
                    .is_some_and(|o| held.contains(&o.session))
        };
        let at = self.queue.iter().position(|q| !waits(q))?;
        let q = self.queue.remove(at)?;
        let frame = Request {
            v: PROTOCOL_VERSION,
            id: q.id,
            body: q.body,
        };
        match serde_json::to_string(&frame) {
            Ok(text) => {
                self.in_flight.insert(
                    q.id,
                    InFlight {
                        op: q.op,
                        deadline: q.deadline,
                    },
                );
                Some(text)
            }
            Err(e) => {
                self.fail(q.op, ClientError::Corrupt(e.to_string()));
                self.progress();
                self.poll_transmit()
            }
        }
    }

    /// The next event to show.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next finished operation, with its outcome. Only operations the
    /// caller started appear; what the device does by itself reports
    /// through events.
    pub fn poll_done(&mut self) -> Option<(OpId, Result<Outcome>)> {
        self.done.pop_front()
    }

    /// Whether anything is waiting to be saved.
    pub fn has_changes(&self) -> bool {
        !self.kept.is_empty()
            || !self.erased.is_empty()
            || self
                .sessions
                .values()
                .any(|s| s.dirty || !s.appended.is_empty())
    }

    /// What changed since the last call, to save before sending anything
    /// more (see [`Machine::poll_transmit`]).
    pub fn take_changes(&mut self) -> Result<Changes> {
        let mut changes = Changes::default();
        for id in self.erased.drain(..) {
            changes.sessions.entry(id).or_default().erase = true;
        }
        for (id, state) in &mut self.sessions {
            if !state.dirty && state.appended.is_empty() {
                continue;
            }
            let entry = changes.sessions.entry(*id).or_default();
            entry.appended = std::mem::take(&mut state.appended);
            if state.dirty {
                let unconfirmed: Vec<_> = self
                    .ops
                    .values()
                    .filter(|op| op.session == *id)
                    .filter_map(|op| op.waiting.post())
                    .collect();
                entry.snapshot = Some(state.snapshot(&unconfirmed)?);
                state.dirty = false;
            }
        }
        for (id, what, bytes) in self.kept.drain(..) {
            changes
                .sessions
                .entry(id)
                .or_insert_with(SessionChanges::default)
                .kept
                .push((what, bytes));
        }
        Ok(changes)
    }

    // ----- operations -----

    /// A fresh operation id.
    pub(crate) fn new_op_id(&mut self) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        id
    }

    pub(crate) fn start_op(
        &mut self,
        session: SessionId,
        origin: Origin,
        stages: impl IntoIterator<Item = Stage>,
        outcome: Outcome,
    ) -> OpId {
        let id = self.new_op_id();
        self.ops
            .insert(id, Op::new(session, origin, stages, outcome));
        self.progress();
        id
    }

    /// Start every stage that can start, until nothing moves.
    pub(crate) fn progress(&mut self) {
        loop {
            let ids: Vec<OpId> = self.ops.keys().copied().collect();
            let mut moved = false;
            for id in ids {
                moved |= self.step(id, false);
            }
            if !moved {
                break;
            }
        }
    }

    /// Start the next stage of `id` if it can start (with `force`, without
    /// blocking); finish it when no stage is left. Whether anything moved.
    fn step(&mut self, id: OpId, force: bool) -> bool {
        let Some(op) = self.ops.get_mut(&id) else {
            return false;
        };
        if matches!(
            op.waiting,
            Waiting::Reply { .. } | Waiting::Unconfirmed { .. }
        ) {
            return false;
        }
        let session = op.session;
        let Some(stage) = op.stages.pop_front() else {
            let outcome = op.outcome.clone();
            self.finish(id, Ok(outcome));
            return true;
        };
        match self.start(id, session, stage, force) {
            Ok(Started::Waiting(request, awaiting)) => {
                if let Some(op) = self.ops.get_mut(&id) {
                    op.waiting = Waiting::Reply { request, awaiting };
                }
                true
            }
            Ok(Started::Done) => {
                if let Some(op) = self.ops.get_mut(&id) {
                    op.waiting = Waiting::Idle;
                }
                true
            }
            Ok(Started::Blocked(stage)) => {
                let now = self.now;
                if let Some(op) = self.ops.get_mut(&id) {
                    op.stages.push_front(*stage);
                    if !matches!(op.waiting, Waiting::Blocked { .. }) {
                        op.waiting = Waiting::Blocked {
                            until: now.plus_millis(KEY_WAIT_MS),
                        };
                    }
                }
                false
            }
            Err(e) => {
                self.fail(id, e);
                true
            }
        }
    }

    /// Start one stage.
    fn start(
        &mut self,
        id: OpId,
        session: SessionId,
        stage: Stage,
        force: bool,
    ) -> Result<Started> {
        let me = self.keys.fingerprint();
        match stage {
            Stage::Request(body) => Ok(self.request(id, body, Awaiting::Accepted)),
            Stage::Subscribe => {
                let body = self.subscribe_body(&session)?;
                Ok(self.request(id, body, Awaiting::Subscribe))
            }
            Stage::Knock => {
                let state = self.session(&session)?;
                let link = match &state.meta.membership {
                    Membership::Knocking { link } | Membership::Waiting { link } => link.clone(),
                    // Admitted meanwhile (or closed): nothing to knock on.
                    _ => return Ok(Started::Done),
                };
                let invite = Invite::from_link(&link)?;
                let body = RequestBody::Join {
                    token: invite.admission_token(),
                    request: Encoded(invite.join_request(self.keys.public())),
                };
                Ok(self.request(id, body, Awaiting::Knock))
            }
            Stage::Roster(edit) => self.start_roster(id, session, edit, true, force),
            Stage::RosterAgain(edit) => self.start_roster(id, session, edit, false, force),
            Stage::Post {
                room,
                content,
                report,
            } => {
                let state = self
                    .sessions
                    .get_mut(&session)
                    .ok_or(ClientError::UnknownSession)?;
                let key_in_flight = state
                    .view
                    .roster()
                    .and_then(|r| r.room(&room))
                    .is_some_and(|r| r.has(&me) && state.view.room_key(&room, r.epoch).is_none());
                if key_in_flight && !force {
                    return Ok(Started::Blocked(Box::new(Stage::Post {
                        room,
                        content,
                        report,
                    })));
                }
                let envelope = state.view.seal(&self.keys, &room, &content)?;
                // The chain moved: saved before the envelope can leave.
                state.dirty = true;
                let own = Box::new(Opened {
                    header: envelope.header().clone(),
                    hash: envelope.hash(),
                    content,
                    gap: None,
                });
                let envelope = Box::new(envelope);
                let body = RequestBody::Post {
                    envelope: Encoded((*envelope).clone()),
                };
                Ok(self.request(
                    id,
                    body,
                    Awaiting::Post {
                        envelope,
                        own,
                        report,
                    },
                ))
            }
            Stage::Close => {
                Ok(self.request(id, RequestBody::CloseSession { session }, Awaiting::Close))
            }
            Stage::Statement => Ok(self.request(
                id,
                RequestBody::DeletionStatement { session },
                Awaiting::Statement,
            )),
        }
    }

    /// Start a roster change: resume the builder from the held roster,
    /// apply `edit`, sign (recording the chain heads this device has seen)
    /// and publish. With `first`, a refusal for heads behind the relay's is
    /// answered by catching up and signing once more.
    fn start_roster(
        &mut self,
        id: OpId,
        session: SessionId,
        edit: RosterEdit,
        first: bool,
        force: bool,
    ) -> Result<Started> {
        if self.pending.contains_key(&session) {
            if force {
                return Err(ClientError::Timeout);
            }
            let stage = if first {
                Stage::Roster(edit)
            } else {
                Stage::RosterAgain(edit)
            };
            return Ok(Started::Blocked(Box::new(stage)));
        }
        let state = self.session(&session)?;
        let mut builder = RosterBuilder::resume(&state.view)?;
        let side_room = apply(&mut builder, &edit)?;
        let (roster, room_keys) = builder.sign(&self.keys, &state.view)?;
        if let (Some(room), Some(op)) = (side_room, self.ops.get_mut(&id)) {
            op.outcome = Outcome::SideRoom(room);
        }
        self.pending.insert(
            session,
            PendingRoster {
                roster: roster.clone(),
                room_keys,
                op: Some(id),
                merged: false,
            },
        );
        let body = RequestBody::PublishRoster {
            roster: Encoded(roster),
        };
        Ok(self.request(id, body, Awaiting::Roster(first.then_some(edit))))
    }

    /// Queue a request for operation `op`.
    fn request(&mut self, op: OpId, body: RequestBody, awaiting: Awaiting) -> Started {
        Started::Waiting(self.queue_request(op, body), awaiting)
    }

    /// Queue a request for operation `op`; its id.
    pub(crate) fn queue_request(&mut self, op: OpId, body: RequestBody) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.queue.push_back(Queued {
            id,
            body,
            op,
            deadline: self.now.plus_millis(REPLY_TIMEOUT_MS),
        });
        id
    }

    /// End an operation: to its caller through [`Machine::poll_done`], or as
    /// the event its origin calls for.
    fn finish(&mut self, id: OpId, result: Result<Outcome>) {
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        if op.waiting.post().is_some()
            && let Some(state) = self.sessions.get_mut(&op.session)
        {
            // The snapshot no longer keeps it.
            state.dirty = true;
        }
        self.queue.retain(|q| q.op != id);
        self.in_flight.retain(|_, f| f.op != id);
        if let Some(p) = self.pending.get_mut(&op.session)
            && p.op == Some(id)
        {
            // Whether the relay took it is unknown: its echo will tell (see
            // `on_roster`), or the next catch-up (see `on_accepted`).
            p.op = None;
        }
        let session = op.session;
        match (op.origin, result) {
            (Origin::Caller, result) => self.done.push_back((id, result)),
            (Origin::Admit { invite, member }, Ok(_)) => self.events.push_back(Event::Admitted {
                session,
                invite,
                member,
            }),
            (Origin::Admit { invite, .. }, Err(e)) => self.events.push_back(Event::Rejected {
                session,
                invite,
                reason: format!("admission failed: {e}"),
            }),
            (Origin::Decline { invite, reason }, _) => self.events.push_back(Event::Rejected {
                session,
                invite,
                reason,
            }),
            (Origin::Resume | Origin::Automatic(_), Ok(_)) => {}
            (Origin::Resume, Err(e)) => {
                self.warn(
                    session,
                    Warning::Connection,
                    format!("catching up failed: {e}"),
                );
            }
            (Origin::Automatic(what), Err(e)) => {
                self.warn(session, Warning::Connection, format!("{what} failed: {e}"));
            }
        }
    }

    pub(crate) fn fail(&mut self, id: OpId, e: ClientError) {
        if let Err(e) = self.fail_transfer(id, e) {
            self.finish(id, Err(e));
        }
    }

    // ----- what the relay says -----

    fn on_reply(&mut self, reply: Reply) {
        let id = match &reply {
            Reply::Ok { id, .. } => Some(*id),
            Reply::Error { id, .. } => *id,
        };
        if id == Some(AUTH_ID) && self.link == Link::Authenticating {
            self.on_auth(reply);
            return;
        }
        let Some((rid, f)) = id.and_then(|id| Some((id, self.in_flight.remove(&id)?))) else {
            return;
        };
        if self.is_transfer(&f.op) {
            self.on_transfer_reply(f.op, rid, reply);
            return;
        }
        let Some(op) = self.ops.get_mut(&f.op) else {
            return;
        };
        let (awaiting, session) = match std::mem::replace(&mut op.waiting, Waiting::Idle) {
            Waiting::Reply { awaiting, request } if request == rid => (awaiting, op.session),
            other => {
                op.waiting = other;
                return;
            }
        };
        let result = match reply {
            Reply::Ok {
                index, statement, ..
            } => self.on_accepted(f.op, session, awaiting, index, statement.map(|s| s.0)),
            Reply::Error { code, message, .. } => {
                self.on_refused(f.op, session, awaiting, code, message)
            }
        };
        if let Err(e) = result {
            self.fail(f.op, e);
        }
    }

    /// The sessions this device still takes part in (not closed for it).
    fn live_sessions(&self) -> Vec<SessionId> {
        self.sessions
            .iter()
            .filter(|(_, s)| !s.meta.membership.is_closed())
            .map(|(id, _)| *id)
            .collect()
    }

    fn on_auth(&mut self, reply: Reply) {
        match reply {
            Reply::Ok { .. } => {
                self.link = Link::Online;
                for session in self.live_sessions() {
                    self.start_op(session, Origin::Resume, [Stage::Subscribe], Outcome::Done);
                }
                self.resume_transfers();
            }
            Reply::Error { message, .. } => {
                let waiting: Vec<OpId> = self.queue.iter().map(|q| q.op).collect();
                for op in waiting {
                    self.fail(
                        op,
                        ClientError::Connection(format!(
                            "the relay refused this device: {message}"
                        )),
                    );
                }
            }
        }
    }

    /// The relay accepted the request `op` was waiting on.
    fn on_accepted(
        &mut self,
        op: OpId,
        session: SessionId,
        awaiting: Awaiting,
        index: Option<u64>,
        statement: Option<SignedDeletionStatement>,
    ) -> Result<()> {
        match awaiting {
            Awaiting::Accepted => {}
            Awaiting::Subscribe => {
                // Caught up: a roster of ours that the relay has not sent
                // back by now never reached it.
                if self
                    .pending
                    .get(&session)
                    .is_some_and(|p| p.op.is_none() && !p.merged)
                {
                    self.pending.remove(&session);
                }
                // Likewise a post of ours: it goes again, ahead of the
                // session's later posts.
                self.post_again(session);
            }
            Awaiting::Knock => {
                let state = self.session_mut(&session)?;
                if let Membership::Knocking { link } = &state.meta.membership {
                    state.meta.membership = Membership::Waiting { link: link.clone() };
                    state.dirty = true;
                }
            }
            Awaiting::Roster(_) => {
                let bundles = self.merge_pending(session)?;
                if let Some(op) = self.ops.get_mut(&op) {
                    for bundle in bundles.into_iter().rev() {
                        op.stages
                            .push_front(Stage::Request(RequestBody::PublishKeys {
                                bundle: Encoded(bundle),
                            }));
                    }
                }
            }
            Awaiting::Post { own, report, .. } => {
                let index = index.ok_or(ClientError::Connection(
                    "post acknowledged without an index".into(),
                ))?;
                let message = own.hash;
                let state = self.session_mut(&session)?;
                // The relay delivers in index order and replies after every
                // envelope before this one, so the cursor skips no one's.
                state.advance(own.header.room, index);
                // Stored: the snapshot stops keeping it to post again.
                state.dirty = true;
                // The relay does not echo our own posts to the connection
                // that posted: the event stream shows them once stored,
                // like anyone else's.
                if state.record(index, (*own).clone()) {
                    self.emit_opened(session, index, *own);
                }
                if report && let Some(op) = self.ops.get_mut(&op) {
                    op.outcome = Outcome::Sent(Sent { index, message });
                }
            }
            Awaiting::Close => {
                let state = self.session_mut(&session)?;
                state.meta.membership = Membership::Closed;
                state.dirty = true;
                let kept = statement
                    .map(|s| self.keep_statement(&session, s))
                    .transpose()?;
                if let Some(op) = self.ops.get_mut(&op) {
                    op.outcome = Outcome::Closed(kept);
                }
            }
            Awaiting::Statement => {
                let statement = statement.ok_or(ClientError::Connection(
                    "the relay answered without a statement".into(),
                ))?;
                let kept = self.keep_statement(&session, statement)?;
                if let Some(op) = self.ops.get_mut(&op) {
                    op.outcome = Outcome::Statement(kept);
                }
            }
        }
        Ok(())
    }

    /// The relay refused the request `op` was waiting on.
    fn on_refused(
        &mut self,
        op: OpId,
        session: SessionId,
        awaiting: Awaiting,
        code: ErrorCode,
        message: String,
    ) -> Result<()> {
        let resuming = self
            .ops
            .get(&op)
            .is_some_and(|o| matches!(o.origin, Origin::Resume));
        let membership = self.session(&session)?.meta.membership.clone();
        match awaiting {
            // A joiner's place in the waiting room went with its old
            // connection: knock again.
            Awaiting::Subscribe
                if resuming
                    && code == ErrorCode::Forbidden
                    && matches!(
                        membership,
                        Membership::Knocking { .. } | Membership::Waiting { .. }
                    ) =>
            {
                if let Some(op) = self.ops.get_mut(&op) {
                    op.stages.push_front(Stage::Knock);
                }
                return Ok(());
            }
            // Erased, closed, or this device was removed: the session is
            // over for this device; the others are still served.
            Awaiting::Subscribe
                if resuming
                    && matches!(
                        code,
                        ErrorCode::NotFound | ErrorCode::Forbidden | ErrorCode::SessionClosed
                    ) =>
            {
                self.close(&session);
                return Ok(());
            }
            // Admitted meanwhile (the roster that says so went to a lost
            // connection): follow the session instead.
            Awaiting::Knock if code == ErrorCode::Conflict => {
                if let Some(op) = self.ops.get_mut(&op) {
                    op.stages.push_front(Stage::Subscribe);
                }
                return Ok(());
            }
            Awaiting::Roster(again) => {
                self.pending.remove(&session);
                // The relay holds messages this device had not seen when it
                // signed: catch up, then sign once more.
                if let (ErrorCode::Conflict, Some(edit)) = (code, again)
                    && let Some(op) = self.ops.get_mut(&op)
                {
                    op.stages.push_front(Stage::RosterAgain(edit));
                    op.stages.push_front(Stage::Subscribe);
                    return Ok(());
                }
            }
            Awaiting::Post { .. } => {
                // Refused, so not stored: the snapshot stops keeping it.
                self.session_mut(&session)?.dirty = true;
            }
            _ => {}
        }
        Err(ClientError::Refused { code, message })
    }

    /// The pending roster of `session` is accepted (by the relay's reply or
    /// its echo): make it the held roster if it is not yet, and seal the
    /// keys of its new epochs to their members.
    fn merge_pending(&mut self, session: SessionId) -> Result<Vec<SignedKeyBundle>> {
        let Some(p) = self.pending.remove(&session) else {
            return Ok(Vec::new());
        };
        let state = self
            .sessions
            .get_mut(&session)
            .ok_or(ClientError::UnknownSession)?;
        if !p.merged && !state.view.is_accepted(&p.roster.hash()) {
            state.view.accept_roster(p.roster)?;
        }
        state.dirty = true;
        let keys = &self.keys;
        Ok(p.room_keys
            .iter()
            .map(|k| state.view.seal_key_bundle(keys, k))
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }

    fn on_event(&mut self, event: wire::Event) {
        match event {
            wire::Event::Challenge {
                nonce,
                relay,
                rotations,
                ..
            } => {
                let shown = relay.0;
                let rotations: Vec<SignedRelayRotation> =
                    rotations.into_iter().map(|r| r.0).collect();
                match self.pin_relay(&shown, &rotations) {
                    Ok(()) => {
                        self.refused = None;
                        let target = AuthTarget::new(nonce, shown.fingerprint(), &self.relay);
                        let auth = Request {
                            v: PROTOCOL_VERSION,
                            id: AUTH_ID,
                            body: RequestBody::Auth {
                                identity: Encoded(self.keys.public().clone()),
                                url: self.relay.clone(),
                                signature: target.sign(&self.keys),
                            },
                        };
                        self.auth = serde_json::to_string(&auth).ok();
                    }
                    Err(e) => self.refuse_relay(e),
                }
                self.shown = Some((shown, rotations));
            }
            wire::Event::Roster {
                session, roster, ..
            } => self.on_roster(session, roster.0),
            wire::Event::KeyBundle {
                session, bundle, ..
            } => {
                let opened = match self.sessions.get_mut(&session) {
                    None => Err(ClientError::UnknownSession),
                    Some(s) => s
                        .view
                        .open_key_bundle(&self.keys, &bundle.0)
                        .map(|_| s.dirty = true)
                        .map_err(ClientError::from),
                };
                match opened {
                    Ok(()) => self.check_ready(session),
                    Err(ClientError::UnknownSession) => {}
                    Err(e) => self.warn(
                        session,
                        Warning::Verification,
                        format!("key bundle refused: {e}"),
                    ),
                }
            }
            wire::Event::Envelope {
                index, envelope, ..
            } => self.on_envelope(index, &CheckedEnvelope::check(envelope.0, None)),
            wire::Event::JoinRequest { request, .. } => self.on_join_request(request.0),
            wire::Event::Declined { session, .. } => {
                self.events.push_back(Event::Declined { session });
            }
            wire::Event::Waiting {
                session,
                mediator_online,
                ..
            } => self.events.push_back(Event::Waiting {
                session,
                mediator_online,
            }),
            wire::Event::Presence {
                session,
                online,
                mediator,
                ..
            } => self.events.push_back(Event::Presence {
                session,
                online,
                mediator,
            }),
            wire::Event::Status {
                session,
                member,
                status,
                ..
            } => self.events.push_back(Event::Status {
                session,
                member,
                status,
            }),
            wire::Event::SessionClosed { session, .. } => self.close(&session),
        }
    }

    /// The session is over for this device.
    fn close(&mut self, session: &SessionId) {
        if let Ok(state) = self.session_mut(session)
            && !state.meta.membership.is_closed()
        {
            state.meta.membership = Membership::Closed;
            state.dirty = true;
            self.events.push_back(Event::Closed { session: *session });
        }
    }

    fn on_roster(&mut self, session: SessionId, roster: SignedRoster) {
        let me = self.keys.fingerprint();
        let Some(held) = self
            .sessions
            .get(&session)
            .map(|s| s.view.roster().map_or(0, |r| r.version))
        else {
            return;
        };
        let offered = roster.unverified().version;
        if offered <= held {
            self.stale_roster(session, &roster);
            return;
        }
        let ours = self
            .pending
            .get(&session)
            .is_some_and(|p| p.roster.hash() == roster.hash());
        let accepted = self.session_mut(&session).and_then(|s| {
            let accepted = s.view.accept_roster(roster)?;
            let admitted = matches!(
                s.meta.membership,
                Membership::Knocking { .. } | Membership::Waiting { .. }
            ) && accepted.member(&me).is_some();
            if admitted {
                // The link (and its secret) is no longer needed.
                s.meta.membership = Membership::Admitted;
            }
            s.dirty = true;
            Ok(admitted)
        });
        match accepted {
            Ok(admitted) => {
                self.events.push_back(Event::Roster {
                    session,
                    version: offered,
                });
                if ours {
                    self.on_echo(session);
                }
                if admitted {
                    // The key bundles follow the roster: fetch them.
                    self.start_op(
                        session,
                        Origin::Automatic("fetching the room keys"),
                        [Stage::Subscribe],
                        Outcome::Done,
                    );
                }
                self.check_ready(session);
            }
            // Versions are missing (a joiner hears only the newest): fetch them.
            Err(ClientError::Protocol(caucus_protocol::Error::RosterChain))
                if offered > held + 1 =>
            {
                self.start_op(
                    session,
                    Origin::Automatic("fetching missing rosters"),
                    [Stage::Subscribe],
                    Outcome::Done,
                );
            }
            Err(e) => self.warn(
                session,
                Warning::Verification,
                format!("roster refused: {e}"),
            ),
        }
    }

    /// The relay sent back the roster this device published. If the
    /// publishing operation still waits, its reply finishes the work;
    /// otherwise (it failed with its connection) hand out the keys now.
    fn on_echo(&mut self, session: SessionId) {
        let Some(p) = self.pending.get_mut(&session) else {
            return;
        };
        p.merged = true;
        if p.op.is_some() {
            return;
        }
        match self.merge_pending(session) {
            Ok(bundles) => {
                let stages = bundles
                    .into_iter()
                    .map(|b| Stage::Request(RequestBody::PublishKeys { bundle: Encoded(b) }));
                self.start_op(
                    session,
                    Origin::Automatic("handing out the room keys"),
                    stages.collect::<Vec<_>>(),
                    Outcome::Done,
                );
            }
            Err(e) => self.warn(
                session,
                Warning::Verification,
                format!("handing out the room keys failed: {e}"),
            ),
        }
    }

    /// A roster not newer than the one held: a repeat of one this client
    /// accepted is harmless (the relay repeats rosters honestly too, when a
    /// catch-up and live delivery overlap) and is passed over; anything
    /// else is reported, and the held roster stays.
    fn stale_roster(&mut self, session: SessionId, roster: &SignedRoster) {
        let verdict = self.sessions.get(&session).and_then(|s| {
            (!s.view.is_accepted(&roster.hash())).then(|| {
                let r = roster.verify(&s.view.mediator())?;
                if r.session == session {
                    Ok(())
                } else {
                    Err(caucus_protocol::Error::WrongSession)
                }
            })
        });
        match verdict {
            None => {}
            Some(Ok(())) => self.warn(
                session,
                Warning::Rollback,
                format!(
                    "roster refused: version {} signed by the mediator but not the one accepted",
                    roster.unverified().version
                ),
            ),
            Some(Err(e)) => self.warn(
                session,
                Warning::Verification,
                format!("roster refused: {e}"),
            ),
        }
    }

    /// Admitted, and now holding the key of every room this device is in:
    /// [`Event::Joined`], once.
    fn check_ready(&mut self, session: SessionId) {
        let me = self.keys.fingerprint();
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        if state.meta.membership == Membership::Admitted && state.keyed(&me) {
            state.meta.membership = Membership::Ready;
            state.dirty = true;
            self.events.push_back(Event::Joined { session });
        }
    }

    fn on_envelope(&mut self, index: u64, checked: &CheckedEnvelope) {
        let envelope = checked.envelope();
        let hash = envelope.hash();
        let session = envelope.header().session;
        let room = envelope.header().room;
        let sender = envelope.header().sender;
        let me = self.keys.fingerprint();
        if sender == me && self.posting(&hash).is_some() {
            // Our own post, unconfirmed or awaiting its reply, met in a
            // catch-up or on this device's other connection: stored after
            // all, and recorded now, once.
            if let Some(state) = self.sessions.get_mut(&session) {
                state.advance(room, index);
            }
            self.confirmed(session, index, &hash);
            return;
        }
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let outcome = state.view.open_checked(checked);
        // The cursor moves past a message once it is opened, or refused for
        // good; a key that may still come (a bundle in flight) does not
        // count as for good, so the message is fetched again next time.
        let may_come_later = matches!(
            outcome,
            Err(caucus_protocol::Error::MissingRoomKey { .. }
                | caucus_protocol::Error::UnknownEpoch { .. })
        );
        if !may_come_later {
            state.advance(room, index);
        }
        match outcome {
            Ok(opened) => {
                state.dirty = true;
                if let Err(why) = consent_rules(state, &me, &opened) {
                    let warning = match why {
                        ConsentBreach::NotItsAuthors => Warning::Verification,
                        ConsentBreach::SharedWithout => Warning::Consent,
                    };
                    self.warn(session, warning, why.to_string());
                    if why == ConsentBreach::NotItsAuthors {
                        return;
                    }
                }
                let Some(state) = self.sessions.get_mut(&session) else {
                    return;
                };
                // A message already held (delivered again) is not shown
                // again.
                if !state.record(index, opened.clone()) {
                    return;
                }
                if let Content::Withdrawal = &opened.content {
                    self.on_withdrawal(session, opened.header.sender);
                }
                self.emit_opened(session, index, opened);
            }
            // Our own message, already confirmed, met again (in a catch-up,
            // or on this device's other connection): nothing new.
            Err(caucus_protocol::Error::Replay { .. }) if sender == me => {}
            // A message held already, delivered again: nothing to do.
            Err(caucus_protocol::Error::Replay { .. }) if state.has(&hash) => {}
            // Another message at a place in the sender's sequence that one
            // already holds: two histories.
            Err(
                caucus_protocol::Error::Replay { seq } | caucus_protocol::Error::Fork { seq },
            ) => self.warn(
                session,
                Warning::Fork,
                format!(
                    "two different messages from {sender} at sequence {seq}: the sender or the relay is not honest; the second is not shown"
                ),
            ),
            Err(caucus_protocol::Error::AfterEpochEnded { seq }) => self.warn(
                session,
                Warning::Verification,
                format!(
                    "a message from {sender} (sequence {seq}) was written after they left the room or it changed, with a key they kept: not shown"
                ),
            ),
            Err(e) => self.warn(
                session,
                Warning::Verification,
                format!("envelope refused: {e}"),
            ),
        }
    }

    /// The operation posting our own envelope `hash`, unconfirmed or
    /// awaiting its reply.
    fn posting(&self, hash: &caucus_protocol::crypto::Digest) -> Option<OpId> {
        self.ops
            .iter()
            .find(|(_, o)| o.waiting.post().is_some_and(|(_, own)| own.hash == *hash))
            .map(|(id, _)| *id)
    }

    /// The relay sent back our own envelope `hash` at `index`: the post of
    /// it was stored, and is done as if its reply had come (a reply still
    /// to come is then passed over).
    fn confirmed(
        &mut self,
        session: SessionId,
        index: u64,
        hash: &caucus_protocol::crypto::Digest,
    ) {
        let Some(id) = self.posting(hash) else {
            return;
        };
        let Some(awaiting) = self.ops.get_mut(&id).and_then(|o| o.waiting.take_post()) else {
            return;
        };
        self.in_flight.retain(|_, f| f.op != id);
        self.queue.retain(|q| q.op != id);
        if let Err(e) = self.on_accepted(id, session, awaiting, Some(index), None) {
            self.fail(id, e);
        }
    }

    /// `session` has caught up: each post still unconfirmed was not stored,
    /// and is posted again — the same envelope, first in the queue, in the
    /// order they were sealed.
    fn post_again(&mut self, session: SessionId) {
        let mut unconfirmed: Vec<(OpId, u64)> = self
            .ops
            .iter()
            .filter(|(_, o)| o.session == session)
            .filter_map(|(id, o)| match &o.waiting {
                Waiting::Unconfirmed { own, .. } => Some((*id, own.header.seq)),
                _ => None,
            })
            .collect();
        unconfirmed.sort_by_key(|(_, seq)| *seq);
        for (id, _) in unconfirmed.into_iter().rev() {
            let Some(op) = self.ops.get_mut(&id) else {
                continue;
            };
            let Some(awaiting) = op.waiting.take_unconfirmed() else {
                continue;
            };
            let Awaiting::Post { envelope, .. } = &awaiting else {
                continue;
            };
            let body = RequestBody::Post {
                envelope: Encoded((**envelope).clone()),
            };
            let Started::Waiting(request, awaiting) = self.request(id, body, awaiting) else {
                continue;
            };
            // `request` queued it last; it goes first.
            if let Some(q) = self.queue.pop_back() {
                self.queue.push_front(q);
            }
            if let Some(op) = self.ops.get_mut(&id) {
                op.waiting = Waiting::Reply { request, awaiting };
            }
        }
    }

    /// As the lead mediator: a party member withdrew their party. Mark it
    /// in the roster and tell the joint room that a party has withdrawn.
    fn on_withdrawal(&mut self, session: SessionId, member: Fingerprint) {
        let Some(state) = self.sessions.get(&session) else {
            return;
        };
        if state.view.mediator() != self.keys.fingerprint() {
            return;
        }
        let Some(roster) = state.view.roster() else {
            return;
        };
        let Some(party) = roster.member(&member).and_then(|m| m.party) else {
            return;
        };
        // Already recorded: a repeated notice changes nothing.
        if roster.party(&party).is_none_or(|p| p.withdrawn) {
            return;
        }
        let Ok(stages) = change_and_announce(
            roster,
            RosterEdit::SetWithdrawn(party, true),
            SystemEvent::PartyWithdrew,
        ) else {
            return;
        };
        self.start_op(
            session,
            Origin::Automatic("recording a withdrawal"),
            stages,
            Outcome::Done,
        );
    }

    /// As the lead mediator: someone knocks with one of our invites. A
    /// proof that does not verify is turned away at once; a good one waits
    /// for the mediator, unless the invite admits automatically.
    fn on_join_request(&mut self, request: JoinRequest) {
        let session = request.session;
        let me = self.keys.fingerprint();
        let Some(state) = self.sessions.get(&session) else {
            return;
        };
        if state.view.mediator() != me {
            return;
        }
        let joiner = request.identity.fingerprint();
        let admitting = self
            .pending
            .get(&session)
            .is_some_and(|p| p.roster.unverified().member(&joiner).is_some());
        if admitting
            || state
                .view
                .roster()
                .is_some_and(|r| r.member(&joiner).is_some())
        {
            return; // admitted, or being admitted (the relay repeats a request)
        }
        let invite = request.invite;
        let entry = state.meta.invites.iter().find(|e| e.id == invite);
        let verdict = match entry {
            None => Err("no such invite".to_owned()),
            Some(e) if e.used => Err("the invite has been used".into()),
            Some(e) => match Invite::from_link(&e.link)
                .and_then(|i| i.verify_join(&request, self.now.as_secs()))
            {
                Ok(()) => Ok((e.party, e.name.clone(), e.auto_admit)),
                Err(err) => Err(err.to_string()),
            },
        };
        match verdict {
            Ok((party, name, true)) => {
                let knock = Knock {
                    request,
                    party,
                    name,
                };
                self.admit_knock(session, knock);
            }
            Ok((party, name, false)) => {
                let knocks = self.knocks.entry(session).or_default();
                if knocks
                    .iter()
                    .any(|k| k.request.identity.fingerprint() == joiner)
                {
                    return; // already waiting (the relay repeats it on catch-up)
                }
                knocks.push(Knock {
                    request,
                    party,
                    name: name.clone(),
                });
                self.events.push_back(Event::Knocking {
                    session,
                    invite,
                    member: joiner,
                    name,
                    party,
                });
            }
            Err(reason) => {
                self.start_op(
                    session,
                    Origin::Decline { invite, reason },
                    [Stage::Request(RequestBody::Decline { session, invite })],
                    Outcome::Done,
                );
            }
        }
    }

    /// Admit a joiner: mark the invite used and add them to the roster.
    pub(crate) fn admit_knock(&mut self, session: SessionId, knock: Knock) {
        let invite = knock.request.invite;
        if let Some(state) = self.sessions.get_mut(&session)
            && let Some(e) = state.meta.invites.iter_mut().find(|e| e.id == invite)
        {
            e.used = true;
            state.dirty = true;
        }
        let role = if knock.party.is_some() {
            Role::PartyMember
        } else {
            Role::CoMediator
        };
        let member = knock.request.identity.fingerprint();
        self.start_op(
            session,
            Origin::Admit { invite, member },
            [Stage::Roster(RosterEdit::AddMember {
                identity: Box::new(knock.request.identity),
                role,
                party: knock.party,
                name: knock.name,
            })],
            Outcome::Done,
        );
    }

    pub(crate) fn knocks(&self, session: &SessionId) -> &[Knock] {
        self.knocks.get(session).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn take_knock(
        &mut self,
        session: &SessionId,
        member: &Fingerprint,
    ) -> Option<Knock> {
        let knocks = self.knocks.get_mut(session)?;
        let at = knocks
            .iter()
            .position(|k| &k.request.identity.fingerprint() == member)?;
        Some(knocks.remove(at))
    }

    fn emit_opened(&mut self, session: SessionId, index: u64, opened: Opened) {
        let h = &opened.header;
        if let Some(missing) = opened.gap.clone() {
            self.warn(
                session,
                Warning::Gap {
                    sender: h.sender,
                    room: h.room,
                    missing,
                },
                "messages from this sender are missing",
            );
        }
        self.events
            .push_back(crate::event::of_message(session, index, opened));
    }

    pub(crate) fn warn(&mut self, session: SessionId, kind: Warning, detail: impl Into<String>) {
        self.events.push_back(Event::Warning {
            session,
            kind,
            detail: detail.into(),
        });
    }

    /// Check the relay's deletion statement against this device and the
    /// relay keys pinned for the session (the first pinned, or one it moved
    /// to by a rotation statement), and keep it.
    fn keep_statement(
        &mut self,
        session: &SessionId,
        statement: SignedDeletionStatement,
    ) -> Result<SignedDeletionStatement> {
        let signer = statement.unverified().relay.fingerprint();
        let pinned = &self.session(session)?.meta.relay_keys;
        let relay = if pinned.contains(&signer) {
            signer
        } else {
            *pinned.last().ok_or(ClientError::Usage(
                "no relay key is pinned for this session yet",
            ))?
        };
        statement.verify_for(session, &self.keys.fingerprint(), &relay)?;
        self.kept
            .push((*session, Kept::Deletion, statement.to_bytes()));
        Ok(statement)
    }

    pub(crate) fn keep(&mut self, session: SessionId, what: Kept, bytes: Vec<u8>) {
        self.kept.push((session, what, bytes));
    }

    pub(crate) fn forget(&mut self, session: &SessionId) -> bool {
        self.drop_transfers(session);
        self.knocks.remove(session);
        self.pending.remove(session);
        let had = self.sessions.remove(session).is_some();
        if had {
            self.erased.push(*session);
        }
        had
    }

    fn subscribe_body(&self, id: &SessionId) -> Result<RequestBody> {
        let state = self.session(id)?;
        Ok(RequestBody::Subscribe {
            session: *id,
            roster_after: state.view.roster().map_or(0, |r| r.version),
            rooms: state
                .meta
                .cursors
                .iter()
                .map(|(room, after)| RoomCursor {
                    room: *room,
                    after: *after,
                })
                .collect(),
        })
    }

    pub(crate) fn session(&self, id: &SessionId) -> Result<&SessionState> {
        self.sessions.get(id).ok_or(ClientError::UnknownSession)
    }

    pub(crate) fn session_mut(&mut self, id: &SessionId) -> Result<&mut SessionState> {
        self.sessions.get_mut(id).ok_or(ClientError::UnknownSession)
    }

    pub(crate) fn roster_of(&self, id: &SessionId) -> Result<&Roster> {
        self.session(id)?
            .view
            .roster()
            .ok_or(ClientError::UnknownSession)
    }

    /// The relay's URL.
    pub fn relay(&self) -> &str {
        &self.relay
    }

    /// This device's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.keys.fingerprint()
    }
}

enum Started {
    /// A request is queued; its reply finishes the stage.
    Waiting(u64, Awaiting),
    /// Nothing to do.
    Done,
    /// Not yet: the stage goes back to wait.
    Blocked(Box<Stage>),
}

/// The joint room and every party's private room: where everyone's copy of
/// the agreement goes.
pub(crate) fn everyones_rooms(roster: &Roster) -> Vec<RoomId> {
    roster
        .rooms
        .iter()
        .filter(|r| matches!(r.kind, RoomKind::Joint | RoomKind::Private(_)))
        .map(|r| r.id)
        .collect()
}

/// A roster change, then its announcement in the joint room.
pub(crate) fn change_and_announce(
    roster: &Roster,
    edit: RosterEdit,
    event: SystemEvent,
) -> Result<[Stage; 2]> {
    let joint = roster
        .joint_room()
        .map(|r| r.id)
        .ok_or(ClientError::Usage("the roster has no joint room"))?;
    Ok([
        Stage::Roster(edit),
        Stage::Post {
            room: joint,
            content: Content::System(event),
            report: false,
        },
    ])
}

/// `content` posted in the joint room and every party's private room.
pub(crate) fn to_everyone(roster: &Roster, content: &Content) -> Vec<Stage> {
    everyones_rooms(roster)
        .into_iter()
        .map(|room| Stage::Post {
            room,
            content: content.clone(),
            report: false,
        })
        .collect()
}

/// Apply `edit` to the draft; for a new side room, its id.
/// How a message breaks the consent rule (protocol.md 9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum ConsentBreach {
    /// A consent that names no message of its sender's in its room: refused.
    #[error("a consent that names no message of its sender's in this room: not shown")]
    NotItsAuthors,
    /// A share receipt for one of this device's *mediator only* messages,
    /// which this device never consented to share: shown, and warned of.
    #[error(
        "the mediator shared a message of yours that was for the mediator only, and you did not agree to share it"
    )]
    SharedWithout,
}

/// The consent checks a receiver can make: a `Consent` names a message its
/// own sender sent in the same room; and a share receipt for one of `me`'s
/// *mediator only* messages is matched by a consent of `me`'s own.
fn consent_rules(
    state: &crate::state::SessionState,
    me: &caucus_protocol::identity::Fingerprint,
    opened: &Opened,
) -> std::result::Result<(), ConsentBreach> {
    match &opened.content {
        Content::Consent { message } => match state.message(message) {
            Some(named) if opened.consents_to(named) => Ok(()),
            _ => Err(ConsentBreach::NotItsAuthors),
        },
        Content::ShareReceipt(receipt) => {
            let Some(source) = state.message(&receipt.source_message) else {
                return Ok(());
            };
            let mine_and_private = &source.header.sender == me
                && matches!(
                    source.content,
                    Content::Text {
                        sharing: caucus_protocol::content::Sharing::MediatorOnly,
                        ..
                    } | Content::Document {
                        sharing: caucus_protocol::content::Sharing::MediatorOnly,
                        ..
                    }
                );
            let consented = state.messages.iter().any(|(_, c)| c.consents_to(source));
            if mine_and_private && !consented {
                Err(ConsentBreach::SharedWithout)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

fn apply(builder: &mut RosterBuilder, edit: &RosterEdit) -> Result<Option<RoomId>> {
    match edit {
        RosterEdit::AddMember {
            identity,
            role,
            party,
            name,
        } => builder.add_member(identity, *role, *party, name)?,
        RosterEdit::RemoveMember(member) => builder.remove_member(member)?,
        RosterEdit::SetOpen(room, open) => builder.set_open(room, *open)?,
        RosterEdit::AddSideRoom(members) => return Ok(Some(builder.add_side_room(members)?)),
        RosterEdit::RemoveSideRoom(room) => builder.remove_side_room(room)?,
        RosterEdit::SetPhase(phase) => builder.set_phase(*phase),
        RosterEdit::SetWithdrawn(party, withdrawn) => builder.set_withdrawn(party, *withdrawn)?,
    }
    Ok(None)
}
