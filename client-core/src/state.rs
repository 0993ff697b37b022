//! What a client keeps of a session, and how it is saved: by change, never
//! by rewriting everything.
//!
//! A session is saved as two things, which any storage can hold (files
//! natively, IndexedDB in a browser):
//!
//! * a **snapshot**: the verified view (rosters, room keys, chains) and what
//!   the client keeps beside it (relay, cursors, invites, membership), written
//!   whole whenever it changes — at most once per batch of input. Its size
//!   does not grow with the messages (the view keeps each sender's chain as
//!   runs of sequence numbers, not a link per message), so a catch-up of `n`
//!   envelopes writes O(n) bytes: the records, and a snapshot of bounded size
//!   per batch;
//! * a **message log**: one record per message opened or sent, only ever
//!   appended.
//!
//! The machine hands both out in [`Changes`]; a driver writes the appended
//! records first and the snapshot second, so the log is never behind the
//! snapshot. After a crash between the two, the old snapshot's cursors make
//! the relay send the newest messages again; they are recognised by their
//! hash and not recorded twice ([`SessionState::restore`]).
//!
//! The snapshot also holds every post sealed and not yet known to be stored
//! (its reply lost with the connection, or not yet come): after a restart
//! the catch-up confirms it (its own envelope comes back) or it is posted
//! again, the same envelope, so a post is neither lost nor sent twice.
//!
//! Snapshot layout: `u16 version (4) || bytes(view state) || bytes(meta as
//! JSON) || list(bytes(envelope) || bytes(content))`, the last being the
//! posts not yet confirmed, in the order they were sealed. Version 3 is read
//! as version 4 with no such posts; version 2 held a view that kept every
//! chain link, and is refused as a layout this client does not read. Log
//! record: `u64 index || bytes(header) || digest || bytes(content)`. All use
//! `caucus-protocol`'s canonical codec.

use std::collections::{BTreeMap, HashSet};

use caucus_protocol::codec::{Canonical, Reader, Writer};
use caucus_protocol::crypto::Digest;
use caucus_protocol::envelope::{Envelope, Header};
use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::{InviteId, PartyId, RoomId, SessionId};
use caucus_protocol::session::{Opened, SessionView};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::ClientError;

/// The layout version of a snapshot: 4 since it holds the posts not yet
/// confirmed.
const SNAPSHOT_VERSION: u16 = 4;

/// The layout before posts not yet confirmed were kept (read as holding
/// none).
const SNAPSHOT_VERSION_3: u16 = 3;

/// A post sealed and not yet known to be stored, as the snapshot keeps it.
pub(crate) struct Unconfirmed {
    /// The envelope, to post again as it is.
    pub(crate) envelope: Envelope,
    /// The message as sent, to record once stored.
    pub(crate) own: Opened,
}

/// Where this device stands in a session.
///
/// ```text
/// Knocking ──join sent──▶ Waiting ──admitted (in a roster)──▶ Admitted ──every room key held──▶ Ready
///     ▲                      │                                                                   │
///     └──reconnected─────────┘                                  closed, removed or erased ──▶ Closed
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Membership {
    /// The join request is to be sent (again, after a reconnect: a place in
    /// the waiting room lasts only as long as the connection).
    Knocking {
        /// The invite link, holding the invite secret.
        link: String,
    },
    /// The relay holds the join request; the mediator has not let this
    /// device in yet.
    Waiting {
        /// The invite link, to knock again after a reconnect.
        link: String,
    },
    /// In the roster; the keys of some of its rooms are still on their way.
    Admitted,
    /// A member holding the key of every room it is in.
    Ready,
    /// The session closed, this device was removed, or the relay erased it.
    Closed,
}

impl Membership {
    /// Whether the session is over for this device.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

/// An invite this (mediator) device issued. The link holds the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteEntry {
    /// The invite's id (also inside the link).
    pub id: InviteId,
    /// The link.
    pub link: String,
    /// The party the invitee joins; `None` for a co-mediator.
    pub party: Option<PartyId>,
    /// The invitee's name, as the mediator gave it.
    pub name: String,
    /// Whether the joiner is let in as soon as their proof verifies, rather
    /// than waiting for the mediator.
    #[serde(default)]
    pub auto_admit: bool,
    /// Whether someone has been admitted with it.
    pub used: bool,
}

/// What a client keeps about a session besides its view and messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// The relay's URL.
    pub(crate) relay: String,
    /// The relay's identity as pinned for this session: the first key
    /// pinned (from the invite link, or on first use), then each key it
    /// moved to by a rotation statement; the last is the pin.
    #[serde(default)]
    pub(crate) relay_keys: Vec<Fingerprint>,
    /// The last index held per room.
    pub(crate) cursors: BTreeMap<RoomId, u64>,
    /// Invites issued (mediator).
    pub(crate) invites: Vec<InviteEntry>,
    /// Where this device stands.
    pub(crate) membership: Membership,
    /// Documents being uploaded: their ids and keys, so that an upload
    /// resumes after a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) uploads: Vec<crate::transfer::SavedUpload>,
}

/// What is kept of a session after it is erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The concluded, signed agreement.
    Agreement,
    /// The relay's signed deletion statement.
    Deletion,
}

/// A session as the client holds it.
pub(crate) struct SessionState {
    pub(crate) view: SessionView,
    pub(crate) meta: Meta,
    /// Every message opened or sent, with its index in its room, in the
    /// order they came.
    pub(crate) messages: Vec<(u64, Opened)>,
    /// The hashes of `messages`, so that none is recorded twice.
    seen: HashSet<Digest>,
    /// Whether the snapshot must be written again.
    pub(crate) dirty: bool,
    /// Log records not yet handed out.
    pub(crate) appended: Vec<Zeroizing<Vec<u8>>>,
}

impl SessionState {
    /// A new session: it is saved whole at the next [`Changes`].
    pub(crate) fn new(view: SessionView, meta: Meta) -> Self {
        Self {
            view,
            meta,
            messages: Vec::new(),
            seen: HashSet::new(),
            dirty: true,
            appended: Vec::new(),
        }
    }

    /// Rebuild a session from its snapshot and its log records, in order,
    /// with the posts it had not yet confirmed. A record already held
    /// (written again after a crash) is passed over, and so is a post
    /// already recorded (the snapshot that dropped it was not written).
    pub(crate) fn restore<'a>(
        snapshot: &[u8],
        log: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(Self, Vec<Unconfirmed>), ClientError> {
        let version = Reader::new(snapshot).u16().map_err(corrupt)?;
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_3 {
            return Err(ClientError::Corrupt(format!(
                "saved session has layout {version}, this client reads {SNAPSHOT_VERSION}"
            )));
        }
        let (view, meta, posts) = Reader::decode_all(snapshot, |r| {
            r.u16()?;
            let view = r.bytes()?.to_vec();
            let meta = r.bytes()?.to_vec();
            let posts = if version == SNAPSHOT_VERSION {
                r.list(|r| Ok((r.bytes()?.to_vec(), Zeroizing::new(r.bytes()?.to_vec()))))?
            } else {
                Vec::new()
            };
            Ok((view, meta, posts))
        })
        .map_err(corrupt)?;
        let view = Zeroizing::new(view);
        let mut state = Self {
            view: SessionView::from_state_bytes(&view)?,
            meta: serde_json::from_slice(&meta).map_err(corrupt)?,
            messages: Vec::new(),
            seen: HashSet::new(),
            dirty: false,
            appended: Vec::new(),
        };
        for record in log {
            let (index, opened) = decode_record(record)?;
            if state.seen.insert(opened.hash) {
                state.messages.push((index, opened));
            }
        }
        let mut unconfirmed = Vec::with_capacity(posts.len());
        for (envelope, content) in posts {
            let envelope = Envelope::from_bytes(&envelope).map_err(corrupt)?;
            let own = Opened {
                header: envelope.header().clone(),
                hash: envelope.hash(),
                content: caucus_protocol::content::Content::from_bytes(&content)
                    .map_err(corrupt)?,
                gap: None,
            };
            if !state.seen.contains(&own.hash) {
                unconfirmed.push(Unconfirmed { envelope, own });
            }
        }
        Ok((state, unconfirmed))
    }

    /// Record a message (once) and queue its log record.
    pub(crate) fn record(&mut self, index: u64, opened: Opened) -> bool {
        if !self.seen.insert(opened.hash) {
            return false;
        }
        self.appended.push(encode_record(index, &opened));
        self.messages.push((index, opened));
        true
    }

    /// Whether the message `hash` is recorded.
    pub(crate) fn has(&self, hash: &Digest) -> bool {
        self.seen.contains(hash)
    }

    /// Move a room's cursor forward to `index`.
    pub(crate) fn advance(&mut self, room: RoomId, index: u64) {
        let cursor = self.meta.cursors.entry(room).or_insert(0);
        if *cursor < index {
            *cursor = index;
            self.dirty = true;
        }
    }

    /// The whole snapshot, with the session's posts not yet confirmed
    /// (envelope and message as sent), in the order they were sealed.
    pub(crate) fn snapshot(
        &self,
        unconfirmed: &[(&Envelope, &Opened)],
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let mut w = Writer::new();
        w.u16(SNAPSHOT_VERSION);
        w.bytes(&self.view.to_state_bytes());
        w.bytes(&Zeroizing::new(
            serde_json::to_vec(&self.meta).map_err(corrupt)?,
        ));
        w.list(unconfirmed, |w, (envelope, own)| {
            w.bytes(&envelope.to_bytes());
            w.bytes(&Zeroizing::new(own.content.to_bytes()));
        });
        Ok(Zeroizing::new(w.into_bytes()))
    }

    /// A message this device has, by id.
    pub(crate) fn message(&self, hash: &Digest) -> Option<&Opened> {
        self.messages
            .iter()
            .map(|(_, m)| m)
            .find(|m| &m.hash == hash)
    }

    /// Whether `member` holds the key of every room it is in.
    pub(crate) fn keyed(&self, member: &Fingerprint) -> bool {
        self.view.roster().is_some_and(|roster| {
            roster
                .rooms
                .iter()
                .filter(|r| r.has(member))
                .all(|r| self.view.room_key(&r.id, r.epoch).is_some())
        })
    }
}

fn encode_record(index: u64, m: &Opened) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::new();
    w.u64(index);
    w.bytes(&m.header.to_bytes());
    m.hash.encode(&mut w);
    w.bytes(&Zeroizing::new(m.content.to_bytes()));
    Zeroizing::new(w.into_bytes())
}

fn decode_record(record: &[u8]) -> Result<(u64, Opened), ClientError> {
    Reader::decode_all(record, |r| {
        let index = r.u64()?;
        Ok((
            index,
            Opened {
                header: Header::from_bytes(r.bytes()?)?,
                hash: Digest::decode(r)?,
                content: caucus_protocol::content::Content::from_bytes(r.bytes()?)?,
                gap: None,
            },
        ))
    })
    .map_err(corrupt)
}

fn corrupt(e: impl std::fmt::Display) -> ClientError {
    ClientError::Corrupt(e.to_string())
}

/// What changed since the last [`crate::Machine::take_changes`], for the
/// driver to save before it sends anything more.
#[derive(Default)]
pub struct Changes {
    /// Per session, what to write.
    pub sessions: BTreeMap<SessionId, SessionChanges>,
}

/// What to write for one session, in this order: erase, append, snapshot,
/// keep.
#[derive(Default)]
pub struct SessionChanges {
    /// Delete everything held of the session first (its snapshot and log).
    pub erase: bool,
    /// Message log records to append, in order.
    pub appended: Vec<Zeroizing<Vec<u8>>>,
    /// The new snapshot, replacing the old one whole.
    pub snapshot: Option<Zeroizing<Vec<u8>>>,
    /// Records that outlive the session's erasure.
    pub kept: Vec<(Kept, Vec<u8>)>,
}

impl std::fmt::Debug for SessionChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionChanges")
            .field("erase", &self.erase)
            .field("appended", &self.appended.len())
            .field("snapshot", &self.snapshot.as_ref().map(|s| s.len()))
            .field("kept", &self.kept.len())
            .finish()
    }
}
