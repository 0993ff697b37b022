//! The frames exchanged between a client and the relay: JSON text frames on
//! a websocket with subprotocol [`SUBPROTOCOL`], bytes as unpadded base64url.
//!
//! Every client frame is a [`Request`] with a protocol version `v`, an `id`
//! the client chooses, and a `type`; the relay answers each with exactly one
//! [`Reply`]: `ok` with the same `id`, or `error` with the same `id` and a
//! stable [`ErrorCode`]. Everything else the relay sends is an [`Event`].
//! Signed and sealed objects (rosters, key bundles, envelopes, join
//! requests, identities) travel as [`Encoded`]: the base64url of their exact
//! canonical bytes, never re-serialized as JSON.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::auth::SignedRelayRotation;
use crate::codec::Canonical;
use crate::crypto::{Digest, Signature};
use crate::deletion::SignedDeletionStatement;
use crate::envelope::{Envelope, PROTOCOL_VERSION};
use crate::identity::{Fingerprint, PublicIdentity};
use crate::ids::{FileId, InviteId, RoomId, SessionId};
use crate::invite::{AdmissionToken, JoinRequest};
use crate::keys::SignedKeyBundle;
use crate::roster::SignedRoster;

/// The websocket subprotocol a client must request.
pub const SUBPROTOCOL: &str = "caucus.v1";

/// A canonical object carried in JSON as the base64url of its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded<T>(pub T);

impl<T: fmt::Debug> fmt::Debug for Encoded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Canonical> Serialize for Encoded<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::b64::encode(&self.0.to_bytes()))
    }
}

impl<'de, T: Canonical> Deserialize<'de> for Encoded<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: Canonical> serde::de::Visitor<'_> for V<T> {
            type Value = Encoded<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a canonical object as unpadded base64url")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let bytes = crate::b64::decode(v).ok_or_else(|| E::custom("not base64url"))?;
                T::from_vec(bytes).map(Encoded).map_err(E::custom)
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// Where a client resumes one room: deliver envelopes with index > `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomCursor {
    /// The room.
    pub room: RoomId,
    /// The last index the client holds (0 for none).
    pub after: u64,
}

/// A party's status, shown to the mediator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartyStatus {
    /// Ready to continue.
    Ready,
    /// Asking for the mediator.
    NeedsMediator,
    /// On a break.
    OnBreak,
}

/// One client frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The protocol version: [`PROTOCOL_VERSION`].
    pub v: u16,
    /// The client's id for this request, echoed in the reply.
    pub id: u64,
    /// What is asked.
    #[serde(flatten)]
    pub body: RequestBody,
}

/// What a client asks of the relay. A field the request type does not have
/// is refused, as the canonical encoding refuses a byte it does not expect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RequestBody {
    /// Answer the relay's challenge: the device's identity, the URL it
    /// dialled, and its signature binding the nonce, the relay's identity
    /// and that URL ([`crate::auth::AuthTarget`]).
    Auth {
        /// The device's public identity.
        identity: Encoded<PublicIdentity>,
        /// The relay URL the device dialled.
        url: String,
        /// The signature over the challenge.
        signature: Signature,
    },
    /// Create a session with its first roster (signed by the caller, who
    /// becomes its mediator).
    CreateSession {
        /// Version 1 of the roster.
        roster: Encoded<SignedRoster>,
    },
    /// Publish a newer roster (mediator only).
    PublishRoster {
        /// The roster.
        roster: Encoded<SignedRoster>,
    },
    /// Publish a key bundle (mediator only).
    PublishKeys {
        /// The bundle.
        bundle: Encoded<SignedKeyBundle>,
    },
    /// Register an invite's admission token hash (mediator only).
    CreateInvite {
        /// The session.
        session: SessionId,
        /// The invite.
        invite: InviteId,
        /// SHA-256 of the admission token, as [`AdmissionToken::hash`].
        token_hash: Digest,
        /// Expiry, seconds since the Unix epoch.
        expires_at: u64,
    },
    /// Knock: enter a session's waiting room with an invite.
    Join {
        /// The admission token derived from the invite secret.
        token: AdmissionToken,
        /// The join request for the mediator.
        request: Encoded<JoinRequest>,
    },
    /// Turn a waiting joiner away (mediator only).
    Decline {
        /// The session.
        session: SessionId,
        /// The invite the joiner used.
        invite: InviteId,
    },
    /// Post an envelope in a room.
    Post {
        /// The envelope.
        envelope: Encoded<Envelope>,
    },
    /// Receive a session's rosters, key bundles and the envelopes after
    /// each cursor, then live traffic.
    Subscribe {
        /// The session.
        session: SessionId,
        /// The last roster version held (0 for none).
        roster_after: u64,
        /// Where to resume each room.
        rooms: Vec<RoomCursor>,
    },
    /// Say where the mediator is (mediator only). `room` is `None` when away.
    Location {
        /// The session.
        session: SessionId,
        /// The room the mediator is with.
        room: Option<RoomId>,
        /// Whether the other parties may learn which room.
        disclose: bool,
    },
    /// Set the caller's party status.
    Status {
        /// The session.
        session: SessionId,
        /// The status.
        status: PartyStatus,
    },
    /// Close the session (mediator only).
    CloseSession {
        /// The session.
        session: SessionId,
    },
    /// Ask for the relay's signed statement of what it erased of a closed
    /// session (its lead mediator only).
    DeletionStatement {
        /// The session.
        session: SessionId,
    },
    /// Begin, or resume, uploading a document's chunks (13.5.14). The `ok`
    /// reply says how many chunks the relay already holds.
    Upload {
        /// The session.
        session: SessionId,
        /// The document's id, chosen by the uploader.
        file: FileId,
        /// Its padded size ([`crate::document::Layout::padded`]).
        size: u64,
    },
    /// Store the next chunk of a document being uploaded (13.5.15).
    Chunk {
        /// The session.
        session: SessionId,
        /// The document.
        file: FileId,
        /// The chunk's index, from 0: the number of chunks already held.
        index: u64,
        /// The sealed chunk.
        data: Bytes,
    },
    /// Fetch one chunk of a complete document (13.5.16). The `ok` reply
    /// carries it.
    Download {
        /// The session.
        session: SessionId,
        /// The document.
        file: FileId,
        /// The chunk's index, from 0.
        index: u64,
    },
}

impl RequestBody {
    /// The `type` string of this request.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Auth { .. } => "auth",
            Self::CreateSession { .. } => "create_session",
            Self::PublishRoster { .. } => "publish_roster",
            Self::PublishKeys { .. } => "publish_keys",
            Self::CreateInvite { .. } => "create_invite",
            Self::Join { .. } => "join",
            Self::Decline { .. } => "decline",
            Self::Post { .. } => "post",
            Self::Subscribe { .. } => "subscribe",
            Self::Location { .. } => "location",
            Self::Status { .. } => "status",
            Self::CloseSession { .. } => "close_session",
            Self::DeletionStatement { .. } => "deletion_statement",
            Self::Upload { .. } => "upload",
            Self::Chunk { .. } => "chunk",
            Self::Download { .. } => "download",
        }
    }
}

/// Every request `type` this version knows.
pub const REQUEST_TYPES: &[&str] = &[
    "auth",
    "create_session",
    "publish_roster",
    "publish_keys",
    "create_invite",
    "join",
    "decline",
    "post",
    "subscribe",
    "location",
    "status",
    "close_session",
    "deletion_statement",
    "upload",
    "chunk",
    "download",
];

/// Bytes of any length in a JSON frame, as unpadded base64url: a document's
/// sealed chunk.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::b64::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::b64::decode(&text)
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom("not unpadded base64url"))
    }
}

/// A stable error code in an `error` reply. The set only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or mistyped field, bad base64url,
    /// or bytes that are not the canonical encoding of the expected object.
    Malformed,
    /// A `v` (or header version) this relay does not speak.
    UnsupportedVersion,
    /// A `type` this relay does not know.
    UnknownType,
    /// A frame or object over the relay's size limits.
    TooLarge,
    /// Too many requests; slow down.
    RateLimited,
    /// The request needs an authenticated connection.
    Unauthenticated,
    /// The authentication signature or identity did not verify.
    AuthFailed,
    /// The roster does not allow the caller this.
    Forbidden,
    /// No such session, room or invite.
    NotFound,
    /// The request conflicts with the relay's state (an existing session, a
    /// sequence number already used).
    Conflict,
    /// A signature did not verify.
    BadSignature,
    /// A roster not newer than the relay's.
    StaleRoster,
    /// A roster or key bundle that breaks the protocol's rules.
    Invalid,
    /// An invite token that is unknown, used or expired.
    InvalidInvite,
    /// The room is closed to the caller for posting.
    RoomClosed,
    /// The session has closed.
    SessionClosed,
    /// The relay is at a limit (connections, storage); try again later.
    Overloaded,
    /// The relay cannot store anything just now (its database or the link
    /// between its nodes is down); nothing was changed; try again later.
    Unavailable,
    /// A fault in the relay; nothing was changed.
    Internal,
    /// A code this build does not know (from a newer relay): a refusal all
    /// the same, for nothing was changed (12.9). Never sent.
    #[serde(other)]
    Unknown,
}

/// The one map from a protocol error to its wire code (12.10). Errors the
/// relay itself never meets (HPKE, decryption, offers, agreements) still
/// have a code, so that a client can report any of them the same way.
impl From<&crate::error::Error> for ErrorCode {
    fn from(e: &crate::error::Error) -> Self {
        use crate::codec::DecodeError;
        use crate::error::Error as E;
        match e {
            E::Decode(DecodeError::UnsupportedVersion(_)) => Self::UnsupportedVersion,
            E::Decode(_) => Self::Malformed,
            E::BadSignature(_) => Self::BadSignature,
            E::StaleRoster { .. } => Self::StaleRoster,
            E::UnpinnedMediator | E::UnpinnedRelay { .. } | E::NotAMember | E::NotPermitted(_) => {
                Self::Forbidden
            }
            E::RoomClosed => Self::RoomClosed,
            E::TooLarge => Self::TooLarge,
            E::UnknownRoom => Self::NotFound,
            E::Replay { .. } | E::Fork { .. } | E::HeadsBehind => Self::Conflict,
            E::AfterEpochEnded { .. } => Self::Forbidden,
            E::InvalidInvite(_) | E::InviteExpired | E::BadJoinProof => Self::InvalidInvite,
            E::Randomness => Self::Internal,
            E::Hpke(_)
            | E::WrongSession
            | E::RosterChain
            | E::InvalidRoster(_)
            | E::NoRoster
            | E::UnknownEpoch { .. }
            | E::MissingRoomKey { .. }
            | E::BundleMismatch(_)
            | E::NotARecipient
            | E::DecryptFailed
            | E::ContentTypeMismatch
            | E::ChainBroken { .. }
            | E::NotCurrentEpoch { .. }
            | E::InvalidOffer(_)
            | E::InvalidDocument(_)
            | E::InvalidAmount(_)
            | E::NotAnExport(_)
            | E::ReadableTextDiffers(_)
            | E::BadStatement(_) => Self::Invalid,
        }
    }
}

/// The relay's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// Done.
    Ok {
        /// The protocol version.
        v: u16,
        /// The request's id.
        id: u64,
        /// For `post`: the envelope's index in its room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<u64>,
        /// For `close_session` (when the relay erases at once) and
        /// `deletion_statement`: the relay's signed statement of what it
        /// erased.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        statement: Option<Box<Encoded<SignedDeletionStatement>>>,
        /// For `upload`: how many of the document's chunks the relay holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chunks: Option<u64>,
        /// For `download`: the chunk.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Bytes>,
    },
    /// Refused; nothing was changed.
    Error {
        /// The protocol version.
        v: u16,
        /// The request's id, if the frame had a readable one.
        id: Option<u64>,
        /// The stable code.
        code: ErrorCode,
        /// A human-readable explanation (never secret material).
        message: String,
    },
}

impl Reply {
    /// An `ok` reply.
    pub fn ok(id: u64) -> Self {
        Self::Ok {
            v: PROTOCOL_VERSION,
            id,
            index: None,
            statement: None,
            chunks: None,
            data: None,
        }
    }

    /// An `ok` reply to an `upload`: the chunks already held.
    pub fn uploading(id: u64, chunks: u64) -> Self {
        Self::Ok {
            v: PROTOCOL_VERSION,
            id,
            index: None,
            statement: None,
            chunks: Some(chunks),
            data: None,
        }
    }

    /// An `ok` reply to a `download`: the chunk.
    pub fn chunk(id: u64, data: Vec<u8>) -> Self {
        Self::Ok {
            v: PROTOCOL_VERSION,
            id,
            index: None,
            statement: None,
            chunks: None,
            data: Some(Bytes(data)),
        }
    }

    /// An `ok` reply to a `post`, with the envelope's index.
    pub fn posted(id: u64, index: u64) -> Self {
        Self::Ok {
            v: PROTOCOL_VERSION,
            id,
            index: Some(index),
            statement: None,
            chunks: None,
            data: None,
        }
    }

    /// An `ok` reply carrying the relay's deletion statement.
    pub fn erased(id: u64, statement: SignedDeletionStatement) -> Self {
        Self::Ok {
            v: PROTOCOL_VERSION,
            id,
            index: None,
            statement: Some(Box::new(Encoded(statement))),
            chunks: None,
            data: None,
        }
    }

    /// An `error` reply.
    pub fn error(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            v: PROTOCOL_VERSION,
            id,
            code,
            message: message.into(),
        }
    }
}

/// Where the mediator is, as a party sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "where", content = "room", rename_all = "snake_case")]
pub enum MediatorWhereabouts {
    /// Not with anyone.
    Away,
    /// In the viewer's own room (named).
    WithYou(RoomId),
    /// With another party or group; which is not said.
    Elsewhere,
    /// In this room, disclosed by the mediator.
    In(RoomId),
}

/// Something the relay tells a client unasked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Sent once on connect: sign `nonce` to authenticate.
    Challenge {
        /// The protocol version.
        v: u16,
        /// 32 random bytes.
        nonce: Digest,
        /// The relay's own identity, which signs its deletion statements.
        relay: Encoded<PublicIdentity>,
        /// The relay's key rotations, oldest first: each signed by the
        /// identity it replaces, the last naming `relay` (empty if the relay
        /// has always had this identity).
        rotations: Vec<Encoded<SignedRelayRotation>>,
    },
    /// A roster of a session the client is in or waiting for.
    Roster {
        /// The protocol version.
        v: u16,
        /// The session.
        session: SessionId,
        /// The roster.
        roster: Encoded<SignedRoster>,
    },
    /// A key bundle that holds a copy for the client.
    KeyBundle {
        /// The protocol version.
        v: u16,
        /// The session.
        session: SessionId,
        /// The bundle.
        bundle: Encoded<SignedKeyBundle>,
    },
    /// An envelope in a room the client is in, with its index there.
    Envelope {
        /// The protocol version.
        v: u16,
        /// The room's index of this envelope, from 1.
        index: u64,
        /// The envelope.
        envelope: Encoded<Envelope>,
    },
    /// To mediators: someone is in the waiting room.
    JoinRequest {
        /// The protocol version.
        v: u16,
        /// The request.
        request: Encoded<JoinRequest>,
    },
    /// To a joiner: the mediator turned the request away.
    Declined {
        /// The protocol version.
        v: u16,
        /// The session.
        session: SessionId,
    },
    /// To a waiting joiner: whether a mediator is connected to let them in.
    Waiting {
        /// The protocol version.
        v: u16,
        /// The session.
        session: SessionId,
        /// Whether a connection of the lead mediator or a co-mediator
        /// follows the session now.
        mediator_online: bool,
    },
    /// Who is connected, and where the mediator is.
    Presence {
        /// The protocol version.
        v: u16,
        /// The session.
        session: SessionId,
        /// Members connected now.
        online: Vec<Fingerprint>,
        /// Where the mediator is, as this client may know it.
        mediator: MediatorWhereabouts,
    },
    /// To mediators: a member's status changed.
    Status {
        /// The protocol version.
        v: u16,
        /// The session.
        session: SessionId,
        /// The member.
        member: Fingerprint,
        /// The status.
        status: PartyStatus,
    },
    /// The session has closed.
    SessionClosed {
        /// The protocol version.
        v: u16,
        /// The session.
        session: SessionId,
    },
}

/// Any frame the relay sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerFrame {
    /// A reply to a request.
    Reply(Reply),
    /// An event.
    Event(Box<Event>),
}

/// Why a client could not read a relay frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerFrameError {
    /// The frame's `v` is not the version this client speaks: the relay
    /// speaks another protocol, and nothing it sends can be trusted to mean
    /// what this client would read it as.
    #[error("the relay speaks protocol version {0}; this client speaks {PROTOCOL_VERSION}")]
    UnsupportedVersion(u64),
    /// Not a frame of this version: not JSON, no `v`, or fields that do not
    /// fit its `type`.
    #[error("unreadable frame from the relay: {0}")]
    Unreadable(String),
}

/// Read a relay text frame as a client: its `v` first (a frame of another
/// version is [`ServerFrameError::UnsupportedVersion`], whatever else it
/// holds), then the reply or event.
pub fn parse_server_frame(text: &str) -> Result<ServerFrame, ServerFrameError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ServerFrameError::Unreadable(e.to_string()))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => return Err(ServerFrameError::UnsupportedVersion(v)),
        None => return Err(ServerFrameError::Unreadable("no v".into())),
    }
    serde_json::from_value(value).map_err(|e| ServerFrameError::Unreadable(e.to_string()))
}

/// Why a client frame was refused before it could be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// The request id, if one could be read.
    pub id: Option<u64>,
    /// The code.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

impl FrameError {
    /// The `error` reply for this refusal.
    pub fn reply(&self) -> Reply {
        Reply::error(self.id, self.code, self.message.clone())
    }
}

/// The largest integer a frame may carry, in either direction: 2^53 − 1, the
/// largest a JavaScript number holds exactly.
pub const MAX_JSON_INTEGER: u64 = (1 << 53) - 1;

/// Parse a client text frame, telling apart (in this order) a frame that is
/// not a JSON object, an unknown `v`, a missing `id`, an unknown `type`, an
/// envelope header version of a `post` this relay does not speak, and a
/// frame that does not fit its type: a missing or mistyped field, a field
/// the type does not have, or an integer above [`MAX_JSON_INTEGER`].
///
/// A `post` as clients send it is read straight from the text, without a
/// JSON tree or another copy of the envelope ([`parse_post`]); anything that
/// path does not take as it stands is parsed in full here, which decides.
pub fn parse_request(text: &str) -> Result<Request, FrameError> {
    parse_request_keeping_envelope(text).map(|(request, _)| request)
}

/// [`parse_request`], also giving, for a `post` as clients send it, its
/// envelope's base64url as it stands in `text`. Decoding takes only the
/// canonical spelling, so it is what encoding the envelope again would
/// give: a relay can deliver the envelope without encoding it again.
pub fn parse_request_keeping_envelope(text: &str) -> Result<(Request, Option<&str>), FrameError> {
    if let Some((post, envelope)) = parse_post(text) {
        return Ok((post, Some(envelope)));
    }
    let fail = |id, code, message: String| FrameError { id, code, message };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| fail(None, ErrorCode::Malformed, format!("not JSON: {e}")))?;
    let serde_json::Value::Object(mut obj) = value else {
        return Err(fail(None, ErrorCode::Malformed, "not a JSON object".into()));
    };
    let id = obj
        .get("id")
        .and_then(serde_json::Value::as_u64)
        .filter(|id| *id <= MAX_JSON_INTEGER);
    let v = match obj.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => PROTOCOL_VERSION,
        Some(v) => {
            return Err(fail(
                id,
                ErrorCode::UnsupportedVersion,
                format!("version {v}; this relay speaks {PROTOCOL_VERSION}"),
            ));
        }
        None => return Err(fail(id, ErrorCode::Malformed, "missing v".into())),
    };
    let Some(id) = id else {
        return Err(fail(None, ErrorCode::Malformed, "missing id".into()));
    };
    let kind = match obj.get("type").and_then(serde_json::Value::as_str) {
        Some(t) if REQUEST_TYPES.contains(&t) => t,
        Some(_) => {
            return Err(fail(
                Some(id),
                ErrorCode::UnknownType,
                "unknown type".into(),
            ));
        }
        None => return Err(fail(Some(id), ErrorCode::Malformed, "missing type".into())),
    };
    if kind == "post"
        && let Some(version) = obj.get("envelope").and_then(envelope_version)
        && version != PROTOCOL_VERSION
    {
        return Err(fail(
            Some(id),
            ErrorCode::UnsupportedVersion,
            format!("envelope header version {version}; this relay speaks {PROTOCOL_VERSION}"),
        ));
    }
    obj.remove("v");
    obj.remove("id");
    let body = serde_json::Value::Object(obj);
    if let Some(n) = too_large_integer(&body) {
        return Err(fail(
            Some(id),
            ErrorCode::Malformed,
            format!("{n} is not an integer from 0 to 2^53 - 1"),
        ));
    }
    let body = serde_json::from_value(body)
        .map_err(|e| fail(Some(id), ErrorCode::Malformed, e.to_string()))?;
    Ok((Request { v, id, body }, None))
}

/// A `post` frame with exactly its four fields, its envelope's base64url
/// borrowed from the frame.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    v: u64,
    id: u64,
    envelope: &'a str,
}

/// The relay's hot path: a well-formed `post` of this version, read in one
/// pass over the text, with its envelope decoded once into the buffer it
/// keeps. `None` for anything else, including every frame
/// [`parse_request`] would refuse; what this returns, the full parse
/// returns too (`tests/wire.rs` checks the two agree). With the request,
/// the envelope's base64url as it stands in the text.
fn parse_post(text: &str) -> Option<(Request, &str)> {
    let frame: PostFrame<'_> = serde_json::from_str(text).ok()?;
    if frame.kind != "post" || frame.v != u64::from(PROTOCOL_VERSION) || frame.id > MAX_JSON_INTEGER
    {
        return None;
    }
    let envelope = Envelope::from_vec(crate::b64::decode(frame.envelope)?).ok()?;
    let request = Request {
        v: PROTOCOL_VERSION,
        id: frame.id,
        body: RequestBody::Post {
            envelope: Encoded(envelope),
        },
    };
    Some((request, frame.envelope))
}

/// The first number in `value` that is not an integer from 0 to
/// [`MAX_JSON_INTEGER`], if any.
fn too_large_integer(value: &serde_json::Value) -> Option<&serde_json::Number> {
    match value {
        serde_json::Value::Number(n) => {
            n.as_u64().is_none_or(|n| n > MAX_JSON_INTEGER).then_some(n)
        }
        serde_json::Value::Array(items) => items.iter().find_map(too_large_integer),
        serde_json::Value::Object(fields) => fields.values().find_map(too_large_integer),
        _ => None,
    }
}

/// The header version of a `post` frame's envelope, if it is inside a
/// well-formed header: the envelope starts with a `u32` header length, and
/// the header (at least two bytes, all present) with its `u16` version.
fn envelope_version(envelope: &serde_json::Value) -> Option<u16> {
    let bytes = crate::b64::decode(envelope.as_str()?)?;
    let mut r = crate::codec::Reader::new(&bytes);
    let header = r.bytes().ok()?;
    crate::codec::Reader::new(header).u16().ok()
}
