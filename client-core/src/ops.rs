//! Operations: what a command asks of the relay, as a queue of stages run
//! one after another. A stage is started only when it can run (a roster
//! change waits for the one before it to merge; a post waits for its room's
//! key), so each is built on the newest state, not the state of the moment
//! the command was given.

use std::collections::VecDeque;

use caucus_protocol::content::Content;
use caucus_protocol::crypto::Digest;
use caucus_protocol::deletion::SignedDeletionStatement;
use caucus_protocol::envelope::Envelope;
use caucus_protocol::identity::{Fingerprint, PublicIdentity};
use caucus_protocol::ids::{InviteId, PartyId, RoomId, SessionId};
use caucus_protocol::roster::{Phase, Role};
use caucus_protocol::session::Opened;
use caucus_protocol::wire::RequestBody;

use crate::Timestamp;

/// Names one operation, to match it with its outcome in
/// [`crate::Machine::poll_done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub(crate) u64);

impl OpId {
    /// The id as a number (for a driver in another language).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// A message the relay has stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Its index in its room.
    pub index: u64,
    /// Its message id (envelope hash), to consent to or forward it.
    pub message: Digest,
}

/// What a finished operation gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Done; nothing to give back.
    Done,
    /// A message was stored.
    Sent(Sent),
    /// A session was created, with its parties in order.
    Created(SessionId, Vec<PartyId>),
    /// An invite link.
    Invite(String),
    /// A side room was opened.
    SideRoom(RoomId),
    /// An agreement was proposed.
    Proposed(Digest),
    /// The session was closed; the relay's deletion statement if it erased
    /// it at once (checked, and kept).
    Closed(Option<SignedDeletionStatement>),
    /// The relay's deletion statement (checked, and kept).
    Statement(SignedDeletionStatement),
}

/// One change to the roster, applied to the newest roster when its stage
/// starts.
#[derive(Debug, Clone)]
pub(crate) enum RosterEdit {
    AddMember {
        identity: Box<PublicIdentity>,
        role: Role,
        party: Option<PartyId>,
        name: String,
    },
    RemoveMember(Fingerprint),
    SetOpen(RoomId, bool),
    AddSideRoom(Vec<Fingerprint>),
    RemoveSideRoom(RoomId),
    SetPhase(Phase),
    SetWithdrawn(PartyId, bool),
}

/// One step of an operation.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a post holds its content (an agreement's final copy at most) once, moved in and out; a box would only add an allocation"
)]
pub(crate) enum Stage {
    /// A request whose acceptance is all that is needed.
    Request(RequestBody),
    /// Catch up: every roster, key and message missed. On a reconnect a
    /// waiting joiner's refusal means its place was lost: knock again.
    Subscribe,
    /// Send the join request from the stored link.
    Knock,
    /// Change the roster, sign it, publish it; once it merges, publish the
    /// keys of its new epochs.
    Roster(RosterEdit),
    /// [`Stage::Roster`] again, after a catch-up: the relay refused the
    /// first signing because it holds messages this device had not seen
    /// when it recorded the chain heads of the epochs the roster ends.
    RosterAgain(RosterEdit),
    /// Seal and post content in a room; with `report`, the operation's
    /// outcome is the stored message.
    Post {
        room: RoomId,
        content: Content,
        report: bool,
    },
    /// Close the session at the relay.
    Close,
    /// Ask the relay for its deletion statement.
    Statement,
}

/// Who is waiting for an operation, and what to tell when it ends.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// A caller of a command, through [`crate::Machine::poll_done`].
    Caller,
    /// Resuming a session after (re)connecting; a failure is a warning.
    Resume,
    /// Admitting a joiner: [`crate::Event::Admitted`] or
    /// [`crate::Event::Rejected`].
    Admit {
        invite: InviteId,
        member: Fingerprint,
    },
    /// Turning a joiner away: [`crate::Event::Rejected`] with the reason.
    Decline { invite: InviteId, reason: String },
    /// Something the mediator's device does by itself (recording a
    /// withdrawal, countersigning); a failure is a warning saying what.
    Automatic(&'static str),
}

/// What a request sent for a stage waits for, to finish that stage.
#[derive(Debug)]
pub(crate) enum Awaiting {
    /// Acceptance is all.
    Accepted,
    /// A catch-up ([`Stage::Subscribe`]).
    Subscribe,
    /// A join request ([`Stage::Knock`]).
    Knock,
    /// A published roster ([`Stage::Roster`]), with its edit when it may be
    /// signed again after a catch-up.
    Roster(Option<RosterEdit>),
    /// A post: the message as sent, recorded once stored; with `report`,
    /// the operation's outcome. The sealed envelope is kept to post again
    /// if the connection is lost before the reply.
    Post {
        envelope: Box<Envelope>,
        own: Box<Opened>,
        report: bool,
    },
    /// Closing ([`Stage::Close`]).
    Close,
    /// The deletion statement ([`Stage::Statement`]).
    Statement,
}

/// Where an operation's current stage stands.
#[derive(Debug)]
pub(crate) enum Waiting {
    /// Ready to start the next stage.
    Idle,
    /// A request was queued or sent; its reply decides.
    Reply { request: u64, awaiting: Awaiting },
    /// The stage could not start yet (a key in flight, a roster change
    /// before it); it is tried again after every input until `until`.
    Blocked { until: Timestamp },
    /// A post was sent and the connection lost before its reply: whether
    /// the relay stored it, the next catch-up of its session tells (its own
    /// envelope comes back, or not, and then it is posted again). Its
    /// session's later posts wait, so that the room keeps their order.
    Unconfirmed {
        envelope: Box<Envelope>,
        own: Box<Opened>,
        report: bool,
    },
}

impl Waiting {
    /// The post this stage holds, sealed and not yet known to be stored
    /// (awaiting its reply, or unconfirmed): its envelope and the message
    /// as sent.
    pub(crate) fn post(&self) -> Option<(&Envelope, &Opened)> {
        match self {
            Self::Reply {
                awaiting: Awaiting::Post { envelope, own, .. },
                ..
            }
            | Self::Unconfirmed { envelope, own, .. } => Some((envelope, own)),
            _ => None,
        }
    }

    /// The post this stage holds, taken as the reply it awaits (the stage
    /// left idle); anything else is left as it is.
    pub(crate) fn take_post(&mut self) -> Option<Awaiting> {
        match std::mem::replace(self, Self::Idle) {
            Self::Reply {
                awaiting: awaiting @ Awaiting::Post { .. },
                ..
            } => Some(awaiting),
            other => {
                *self = other;
                self.take_unconfirmed()
            }
        }
    }

    /// An unconfirmed post, taken as the reply it awaits again (the stage
    /// left idle); anything else is left as it is.
    pub(crate) fn take_unconfirmed(&mut self) -> Option<Awaiting> {
        match std::mem::replace(self, Self::Idle) {
            Self::Unconfirmed {
                envelope,
                own,
                report,
            } => Some(Awaiting::Post {
                envelope,
                own,
                report,
            }),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// An operation in progress.
#[derive(Debug)]
pub(crate) struct Op {
    pub(crate) session: SessionId,
    pub(crate) origin: Origin,
    pub(crate) stages: VecDeque<Stage>,
    pub(crate) waiting: Waiting,
    pub(crate) outcome: Outcome,
}

impl Op {
    pub(crate) fn new(
        session: SessionId,
        origin: Origin,
        stages: impl IntoIterator<Item = Stage>,
        outcome: Outcome,
    ) -> Self {
        Self {
            session,
            origin,
            stages: stages.into_iter().collect(),
            waiting: Waiting::Idle,
            outcome,
        }
    }
}
