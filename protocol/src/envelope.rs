//! The envelope: a header the relay can read, the content sealed under a
//! single-use key, and the sender's signature.
//!
//! * **Key and nonce.** Each envelope's content key is
//!   `HKDF-Expand(room epoch secret, label "caucus/v1/message-key" || header, 32)`
//!   and the ChaCha20-Poly1305 nonce is all zeros. The header holds the
//!   sender, its sequence number and 16 fresh random bytes, so no two
//!   envelopes share a key unless their headers are identical — and then the
//!   receiver rejects the second as a replay before it matters. A key is
//!   therefore used for exactly one encryption and a (key, nonce) pair never
//!   repeats.
//! * **Associated data** is the canonical header, so the ciphertext cannot be
//!   moved to another session, room, epoch, sender or position.
//! * **Plaintext** is the canonical content padded to a size bucket
//!   ([`crate::padding`], at least [`CONTENT_MIN`] bytes), so the relay learns
//!   the bucket, not the length; the content's type is its first byte, inside.
//!   The header says only the [`ContentClass`] of the sender's role.
//! * **Signature** by the sender over `bytes(header) || bytes(ciphertext)`.

use std::ops::Range;

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::content::{Content, ContentClass};
use crate::crypto::{Digest, Signature, label};
use crate::error::Error;
use crate::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use crate::ids::{RoomId, SessionId};
use crate::keys::RoomKey;
use crate::padding::{CONTENT_MIN, pad, unpad};

/// The protocol version this crate speaks, in headers and wire frames.
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest padded plaintext, in bytes, that may be sealed or opened. The
/// largest content is 4 bytes less: padding adds its `u32` length, and the
/// padded size of every content up to that is at most this.
pub const MAX_CONTENT_LEN: usize = 256 * 1024;

/// The largest ciphertext an envelope may carry: the content limit and the
/// AEAD tag. The relay refuses larger ones, as clients do.
pub const MAX_CIPHERTEXT_LEN: usize = MAX_CONTENT_LEN + TAG_LEN;

/// The length of the ChaCha20-Poly1305 tag that follows the ciphertext.
const TAG_LEN: usize = 16;

/// An envelope header: everything the relay may read about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The session.
    pub session: SessionId,
    /// The room.
    pub room: RoomId,
    /// The room key epoch the content is sealed under.
    pub epoch: u64,
    /// The sender's fingerprint.
    pub sender: Fingerprint,
    /// The sender's sequence number in this room, from 1.
    pub seq: u64,
    /// The envelope hash of the sender's previous message in this room
    /// ([`Digest::ZERO`] before the first).
    pub previous: Digest,
    /// Which side sent it: [`ContentClass::of`] the sender's role. What the
    /// content is travels inside the ciphertext.
    pub class: ContentClass,
    /// Fresh random bytes that make the message key unique.
    pub salt: [u8; 16],
}

impl Canonical for Header {
    fn encode(&self, w: &mut Writer) {
        w.u16(PROTOCOL_VERSION);
        self.session.encode(w);
        self.room.encode(w);
        w.u64(self.epoch);
        self.sender.encode(w);
        w.u64(self.seq);
        self.previous.encode(w);
        self.class.encode(w);
        w.fixed(&self.salt);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u16()?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        Ok(Self {
            session: SessionId::decode(r)?,
            room: RoomId::decode(r)?,
            epoch: r.u64()?,
            sender: Fingerprint::decode(r)?,
            seq: r.u64()?,
            previous: Digest::decode(r)?,
            class: ContentClass::decode(r)?,
            salt: r.array()?,
        })
    }
}

/// A sealed, signed message as it travels and is stored:
/// `bytes(header) || bytes(ciphertext) || signature(64)`.
///
/// It keeps its canonical encoding as received or sealed, so that storing,
/// sending and hashing it copy nothing and encode nothing again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The canonical encoding.
    bytes: Vec<u8>,
    header: Header,
    /// Where `header`'s canonical bytes and the ciphertext lie in `bytes`.
    header_at: Range<usize>,
    ciphertext_at: Range<usize>,
    signature: Signature,
    /// [`Envelope::hash`], computed once.
    hash: Digest,
}

impl Envelope {
    /// Pad, seal and sign `content` with `key` under `header`, exactly as
    /// given. Nothing else is checked: who may send what where, the header's
    /// class, its sequence number and link are the caller's to get right
    /// (see [`crate::session::SessionView::seal`], which does).
    pub fn seal(
        sender: &DeviceKeys,
        key: &RoomKey,
        header: Header,
        content: &Content,
    ) -> Result<Self, Error> {
        let plaintext = pad(&zeroize::Zeroizing::new(content.encoded()?), CONTENT_MIN)
            .filter(|p| p.len() <= MAX_CONTENT_LEN)
            .ok_or(Error::TooLarge)?;
        let header_bytes = header.to_bytes();
        let ciphertext = key
            .message_key(&header_bytes)
            .seal_once(&header_bytes, &plaintext)?;
        let mut w = Writer::new();
        w.bytes(&header_bytes).bytes(&ciphertext);
        let mut bytes = w.into_bytes();
        let signature = sender.sign(label::ENVELOPE, &bytes);
        bytes.extend_from_slice(&signature.0);
        Ok(Self::from_vec(bytes)?)
    }

    /// The envelope whose canonical encoding is `bytes`, and how long that
    /// encoding is (`bytes` may go on).
    fn parse(bytes: &[u8]) -> Result<(Parts, usize), DecodeError> {
        let mut r = Reader::new(bytes);
        // Where the part just read lies: it ends where the rest begins.
        let at = |r: &Reader<'_>, part: &[u8]| {
            let end = bytes.len() - r.rest().len();
            end - part.len()..end
        };
        let header = r.bytes()?;
        let header_at = at(&r, header);
        let ciphertext = r.bytes()?;
        let ciphertext_at = at(&r, ciphertext);
        let signature = Signature::decode(&mut r)?;
        let parts = Parts {
            header: Header::from_bytes(header)?,
            header_at,
            ciphertext_at,
            signature,
        };
        Ok((parts, bytes.len() - r.rest().len()))
    }

    fn from_parts(bytes: Vec<u8>, p: Parts) -> Self {
        let hash = Digest::of(label::ENVELOPE_HASH, &[&bytes[..p.ciphertext_at.end]]);
        Self {
            bytes,
            header: p.header,
            header_at: p.header_at,
            ciphertext_at: p.ciphertext_at,
            signature: p.signature,
            hash,
        }
    }

    /// The header of the envelope whose canonical encoding is `bytes`,
    /// checking that the whole is one well-formed envelope but neither
    /// copying nor hashing it (a relay's catch-up, which sends the bytes as
    /// stored).
    pub fn header_of(bytes: &[u8]) -> Result<Header, DecodeError> {
        let (parts, len) = Self::parse(bytes)?;
        if len < bytes.len() {
            return Err(DecodeError::TrailingBytes(bytes.len() - len));
        }
        Ok(parts.header)
    }

    /// The canonical encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The canonical encoding, given up.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    fn header_bytes(&self) -> &[u8] {
        &self.bytes[self.header_at.clone()]
    }

    fn ciphertext(&self) -> &[u8] {
        &self.bytes[self.ciphertext_at.clone()]
    }

    /// What the sender signed: `bytes(header) || bytes(ciphertext)`, the
    /// encoding less the signature.
    fn signed_body(&self) -> &[u8] {
        &self.bytes[..self.ciphertext_at.end]
    }

    /// The header, readable by anyone (check the envelope before trusting it).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The envelope hash that names this message (chain links, forwards,
    /// consents): `SHA-256(label "caucus/v1/envelope-hash" || bytes(header) || bytes(ciphertext))`.
    pub fn hash(&self) -> Digest {
        self.hash
    }

    /// The size in bytes of the ciphertext.
    pub fn ciphertext_len(&self) -> usize {
        self.ciphertext_at.len()
    }

    /// Check the signature by `sender` (the relay does this before storing;
    /// [`crate::session::SessionView::open`] does it and everything else).
    pub fn verify(&self, sender: &PublicIdentity) -> Result<(), Error> {
        sender.verify(
            label::ENVELOPE,
            self.signed_body(),
            &self.signature,
            "envelope",
        )
    }

    /// Decrypt with `key` (whose room and epoch the caller has matched to
    /// the header), check the padding and decode the content. Who may send
    /// that content is the caller's to check.
    pub(crate) fn decrypt(&self, key: &RoomKey) -> Result<Content, Error> {
        if self.ciphertext_len() > MAX_CIPHERTEXT_LEN {
            return Err(Error::TooLarge);
        }
        let header = self.header_bytes();
        let plaintext = zeroize::Zeroizing::new(
            key.message_key(header)
                .open_once(header, self.ciphertext())?,
        );
        Ok(Content::from_bytes(unpad(&plaintext, CONTENT_MIN)?)?)
    }
}

/// An envelope with its sender's signature checked ahead of
/// [`SessionView::open_checked`](crate::session::SessionView::open_checked)
/// where the sender's identity was known: the part of opening that needs
/// nothing of the session's state, so that a client can do it for a page of
/// a catch-up on several threads at once. Opening relies on the check only
/// if it was made with the key the roster gives the sender at that moment,
/// and checks the signature itself otherwise (one rule: an envelope is
/// opened only with its sender's signature verified, by
/// [`Envelope::verify`]).
#[derive(Debug, Clone)]
pub struct CheckedEnvelope {
    envelope: Envelope,
    /// The signing key whose signature held, if one was checked.
    signer: Option<[u8; 32]>,
}

impl CheckedEnvelope {
    /// Check `envelope`'s signature by `sender` if given (a signature that
    /// does not hold is left for opening to refuse).
    pub fn check(envelope: Envelope, sender: Option<&PublicIdentity>) -> Self {
        let signer = sender
            .filter(|s| envelope.verify(s).is_ok())
            .map(|s| *s.signing_key());
        Self { envelope, signer }
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Whether its signature was checked, and held, with `sender`'s key.
    pub(crate) fn signed_by(&self, sender: &PublicIdentity) -> bool {
        self.signer.as_ref() == Some(sender.signing_key())
    }
}

/// An envelope read from its encoding, less the encoding.
struct Parts {
    header: Header,
    header_at: Range<usize>,
    ciphertext_at: Range<usize>,
    signature: Signature,
}

impl Canonical for Envelope {
    fn encode(&self, w: &mut Writer) {
        w.fixed(&self.bytes);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (parts, len) = Self::parse(r.rest())?;
        let bytes = r.fixed(len)?.to_vec();
        Ok(Self::from_parts(bytes, parts))
    }
    fn from_vec(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        let (parts, len) = Self::parse(&bytes)?;
        if len < bytes.len() {
            return Err(DecodeError::TrailingBytes(bytes.len() - len));
        }
        Ok(Self::from_parts(bytes, parts))
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_vec(bytes.to_vec())
    }
}
