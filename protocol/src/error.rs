//! The one error type of the protocol crate.

use thiserror::Error;

use crate::codec::{DecodeError, EncodeError};
use crate::hpke::HpkeError;
use crate::offer::AmountError;

/// Everything that can fail when building, sealing, opening or verifying a
/// Caucus object. Where one crosses the wire, its code is the one
/// [`ErrorCode`](crate::wire::ErrorCode) map, `From<&Error>`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes did not decode as the canonical encoding of the expected value.
    #[error("malformed: {0}")]
    Decode(#[from] DecodeError),
    /// HPKE failed: a low-order point, or a sealed key that did not open.
    #[error("hpke: {0}")]
    Hpke(#[from] HpkeError),
    /// The operating system's random number generator failed.
    #[error("no randomness available")]
    Randomness,
    /// A signature did not verify; the string says over what.
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    /// The object names another session.
    #[error("object belongs to another session")]
    WrongSession,
    /// A roster was not signed by the session's pinned mediator.
    #[error("roster is not from the pinned mediator")]
    UnpinnedMediator,
    /// A roster was not newer than the one already held.
    #[error("roster version {got} is not newer than held version {held}")]
    StaleRoster {
        /// The version already held.
        held: u64,
        /// The version offered.
        got: u64,
    },
    /// A roster's previous-roster hash does not name the roster it follows.
    #[error("roster does not follow the held roster")]
    RosterChain,
    /// A roster breaks a structural rule; the string says which.
    #[error("invalid roster: {0}")]
    InvalidRoster(&'static str),
    /// No roster has been accepted yet for this session.
    #[error("no roster held for this session")]
    NoRoster,
    /// The room is not in the roster.
    #[error("unknown room")]
    UnknownRoom,
    /// The (room, epoch) pair is not known from any accepted roster.
    #[error("unknown epoch {epoch} for this room")]
    UnknownEpoch {
        /// The epoch named.
        epoch: u64,
    },
    /// The room key for that epoch has not been received.
    #[error("no key held for epoch {epoch} of this room")]
    MissingRoomKey {
        /// The epoch named.
        epoch: u64,
    },
    /// A key bundle does not match the roster it names; the string says how.
    #[error("key bundle does not match the roster: {0}")]
    BundleMismatch(&'static str),
    /// A key bundle holds no entry for this device.
    #[error("key bundle holds no key for this device")]
    NotARecipient,
    /// The sender is not a member of the room at that epoch.
    #[error("sender is not a member of this room at this epoch")]
    NotAMember,
    /// The sender's role may not send this content here; the string says what.
    #[error("not permitted: {0}")]
    NotPermitted(&'static str),
    /// The room is closed to party members for posting (its roster entry is
    /// not `open`): sealing there, or a party member's envelope in an epoch
    /// whose room was closed.
    #[error("the room is closed")]
    RoomClosed,
    /// Authenticated decryption failed.
    #[error("ciphertext does not decrypt")]
    DecryptFailed,
    /// The header's content class is not the one of the sender's role.
    #[error("the header's content class is not the sender's role's")]
    ContentTypeMismatch,
    /// A sequence number already seen from this sender in this room.
    #[error("replay of sequence {seq}")]
    Replay {
        /// The repeated sequence number.
        seq: u64,
    },
    /// The sender's hash chain does not link up: the sender signed two
    /// histories, or a message was altered in a way the chain exposes.
    #[error("sender's chain is broken at sequence {seq}")]
    ChainBroken {
        /// Where the chain fails to link.
        seq: u64,
    },
    /// An envelope of an epoch that has ended, past the sender's chain head
    /// at its end: sealed after the sender left the room (or the epoch
    /// ended), with a key they kept.
    #[error("sequence {seq} was sealed after its epoch ended")]
    AfterEpochEnded {
        /// Its sequence number.
        seq: u64,
    },
    /// Two different envelopes from one sender at one sequence number in
    /// one room: the sender (or a relay) forked the chain.
    #[error("another message is held at sequence {seq}")]
    Fork {
        /// The sequence number.
        seq: u64,
    },
    /// A post sealed under an epoch that is not the room's current one.
    #[error("epoch {epoch} is not the room's current epoch")]
    NotCurrentEpoch {
        /// The epoch named.
        epoch: u64,
    },
    /// A roster ends an epoch at chain heads behind messages the relay
    /// holds: its mediator signed it before seeing them.
    #[error("the roster's chain heads are behind messages already held")]
    HeadsBehind,
    /// An invite link did not parse; the string says why.
    #[error("invalid invite link: {0}")]
    InvalidInvite(&'static str),
    /// An invite has expired.
    #[error("invite has expired")]
    InviteExpired,
    /// A join request's proof did not verify against the invite secret.
    #[error("join proof does not verify")]
    BadJoinProof,
    /// A value is larger than the protocol allows.
    #[error("too large")]
    TooLarge,
    /// An offer breaks a rule; the string says which.
    #[error("invalid offer: {0}")]
    InvalidOffer(&'static str),
    /// A document, or a chunk of one, that breaks the rules of protocol.md
    /// 9.6: a description that is not valid, or a chunk of the wrong length
    /// or with padding that is not zeros.
    #[error("invalid document: {0}")]
    InvalidDocument(&'static str),
    /// An amount does not fit its currency; the reason is in words for the
    /// person who typed it.
    #[error("invalid amount: {0}")]
    InvalidAmount(#[from] AmountError),
    /// A file is not an agreement export, or its signed copy cannot be
    /// found in it; the string says why.
    #[error("not an agreement export: {0}")]
    NotAnExport(&'static str),
    /// An agreement export's signatures verify, but the text a person reads
    /// in it is not the text signed; the string names the first part that
    /// differs ("the terms").
    #[error("the readable text differs from what was signed: {0}")]
    ReadableTextDiffers(&'static str),
    /// A relay's deletion statement does not match what was asked.
    #[error("deletion statement: {0}")]
    BadStatement(&'static str),
    /// The relay shows an identity other than the one pinned for it, and no
    /// chain of rotation statements from the pinned one to it.
    #[error(
        "the relay shows the key {shown}, not the key pinned for it ({pinned}), and no rotation statement from the pinned key vouches for it"
    )]
    UnpinnedRelay {
        /// The fingerprint pinned (from the invite link, or on first use).
        pinned: crate::identity::Fingerprint,
        /// The fingerprint the relay showed.
        shown: crate::identity::Fingerprint,
    },
}

impl From<EncodeError> for Error {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::TooLong { .. } => Self::TooLarge,
        }
    }
}
