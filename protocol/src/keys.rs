//! Room keys: one random secret per room and epoch, made by the mediator,
//! sealed with HPKE to each member of the room in a signed key bundle.
//!
//! An epoch secret is never used as a cipher key directly: every message key
//! and roster-label key is derived from it with HKDF-Expand under its own
//! label and inputs (see [`crate::envelope`] and [`SealedLabel`]).

use std::fmt;

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::{Digest, Secret32, label};
use crate::error::Error;
use crate::hpke;
use crate::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use crate::ids::{RoomId, SessionId};
use crate::padding::{LABEL_MIN, pad, unpad};
use crate::signed::{Signed, SignedKind};

/// The secret of one room at one epoch.
#[derive(Clone, PartialEq, Eq)]
pub struct RoomKey {
    room: RoomId,
    epoch: u64,
    secret: Secret32,
}

impl RoomKey {
    /// A fresh random key for `room` at `epoch`.
    pub fn generate(room: RoomId, epoch: u64) -> Result<Self, Error> {
        Ok(Self {
            room,
            epoch,
            secret: Secret32::random()?,
        })
    }

    /// Rebuild a stored key. The secret bytes are as secret as the key.
    pub fn from_secret(room: RoomId, epoch: u64, secret: [u8; 32]) -> Self {
        Self {
            room,
            epoch,
            secret: Secret32(secret),
        }
    }

    /// The room.
    pub fn room(&self) -> RoomId {
        self.room
    }

    /// The epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The secret bytes, for sealing to a member or storing.
    pub fn secret(&self) -> &[u8; 32] {
        self.secret.expose()
    }

    /// The single-use key for the message whose canonical header is
    /// `header`: `HKDF-Expand(secret, label "caucus/v1/message-key" || header, 32)`.
    pub(crate) fn message_key(&self, header: &[u8]) -> Secret32 {
        self.secret.expand(label::MESSAGE_KEY, &[header])
    }
}

impl fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomKey")
            .field("room", &self.room)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// A short text (a party's label, a member's name) in a roster, sealed under
/// a key derived from the joint room's key at `epoch`, so that members read
/// it and the relay does not. The text is padded ([`crate::padding`], at
/// least [`LABEL_MIN`] bytes), so the relay sees its size bucket, not its
/// length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedLabel {
    /// The joint room epoch whose key seals it.
    pub epoch: u64,
    /// A fresh random salt, making each sealing's key unique.
    pub salt: [u8; 16],
    /// ChaCha20-Poly1305 ciphertext of the padded text, and tag.
    pub ciphertext: Vec<u8>,
}

impl SealedLabel {
    /// `Expand(joint secret, "caucus/v1/roster-label-key", session || joint
    /// room || u64(epoch) || bytes(subject) || salt)`: every input has a fixed
    /// length or its own, so no two inputs run together. The key binds all
    /// there is to bind, and is used once, so the AAD is empty.
    fn key(joint: &RoomKey, session: &SessionId, subject: &[u8], salt: &[u8; 16]) -> Secret32 {
        let mut w = Writer::new();
        w.bytes(subject);
        joint.secret.expand(
            label::ROSTER_LABEL_KEY,
            &[
                &session.0,
                &joint.room.0,
                &joint.epoch.to_be_bytes(),
                &w.into_bytes(),
                salt,
            ],
        )
    }

    /// Seal `text` about `subject` (a party id or member fingerprint).
    pub fn seal(
        joint: &RoomKey,
        session: &SessionId,
        subject: &[u8],
        text: &str,
    ) -> Result<Self, Error> {
        let salt = crate::crypto::random_array()?;
        let padded = pad(text.as_bytes(), LABEL_MIN).ok_or(Error::TooLarge)?;
        let ciphertext = Self::key(joint, session, subject, &salt).seal_once(&[], &padded)?;
        Ok(Self {
            epoch: joint.epoch,
            salt,
            ciphertext,
        })
    }

    /// Open a label sealed by [`SealedLabel::seal`].
    pub fn open(
        &self,
        joint: &RoomKey,
        session: &SessionId,
        subject: &[u8],
    ) -> Result<String, Error> {
        if joint.epoch != self.epoch {
            return Err(Error::MissingRoomKey { epoch: self.epoch });
        }
        let padded =
            Self::key(joint, session, subject, &self.salt).open_once(&[], &self.ciphertext)?;
        let text = unpad(&padded, LABEL_MIN)?;
        String::from_utf8(text.to_vec()).map_err(|_| Error::Decode(DecodeError::InvalidUtf8))
    }
}

impl Canonical for SealedLabel {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.epoch).fixed(&self.salt).bytes(&self.ciphertext);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            epoch: r.u64()?,
            salt: r.array()?,
            ciphertext: r.bytes()?.to_vec(),
        })
    }
}

/// One member's copy of a room key, sealed to their X25519 key with HPKE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// Whom it is for.
    pub recipient: Fingerprint,
    /// The HPKE encapsulated key.
    pub enc: [u8; hpke::ENC_LEN],
    /// The HPKE ciphertext of the 32-byte secret.
    pub ciphertext: Vec<u8>,
}

impl Canonical for SealedKey {
    fn encode(&self, w: &mut Writer) {
        self.recipient.encode(w);
        w.fixed(&self.enc).bytes(&self.ciphertext);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            recipient: Fingerprint::decode(r)?,
            enc: r.array()?,
            ciphertext: r.bytes()?.to_vec(),
        })
    }
}

/// A room key for one epoch, sealed to each member of the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBundle {
    /// The session.
    pub session: SessionId,
    /// The room.
    pub room: RoomId,
    /// The epoch.
    pub epoch: u64,
    /// The hash of the roster whose membership of the room this follows.
    pub roster: Digest,
    /// One sealed copy per member.
    pub entries: Vec<SealedKey>,
}

impl KeyBundle {
    /// The HPKE `info` for `recipient`'s copy: `u8(len(label)) || label ||
    /// session || room || u64 epoch || recipient || roster hash`.
    pub fn hpke_info(&self, recipient: &Fingerprint) -> Vec<u8> {
        let mut w = Writer::new();
        w.fixed(&crate::crypto::label_prefix(label::ROOM_KEY));
        self.session.encode(&mut w);
        self.room.encode(&mut w);
        w.u64(self.epoch);
        recipient.encode(&mut w);
        self.roster.encode(&mut w);
        w.into_bytes()
    }

    /// Seal `key` to each of `recipients`.
    pub(crate) fn seal(
        session: SessionId,
        roster: Digest,
        key: &RoomKey,
        recipients: &[&PublicIdentity],
    ) -> Result<Self, Error> {
        let mut bundle = Self {
            session,
            room: key.room,
            epoch: key.epoch,
            roster,
            entries: Vec::with_capacity(recipients.len()),
        };
        for identity in recipients {
            let recipient = identity.fingerprint();
            let (enc, ciphertext) = hpke::seal(
                &identity.dh_key(),
                &bundle.hpke_info(&recipient),
                &[],
                key.secret(),
            )?;
            bundle.entries.push(SealedKey {
                recipient,
                enc,
                ciphertext,
            });
        }
        Ok(bundle)
    }

    /// Open the copy sealed to `me`.
    pub(crate) fn open(&self, me: &DeviceKeys) -> Result<RoomKey, Error> {
        let id = me.fingerprint();
        let entry = self
            .entries
            .iter()
            .find(|e| e.recipient == id)
            .ok_or(Error::NotARecipient)?;
        let plain = zeroize::Zeroizing::new(hpke::open(
            &entry.enc,
            me.dh_secret(),
            &self.hpke_info(&id),
            &[],
            &entry.ciphertext,
        )?);
        let secret: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| Error::BundleMismatch("room secret is not 32 bytes"))?;
        Ok(RoomKey::from_secret(self.room, self.epoch, secret))
    }
}

impl Canonical for KeyBundle {
    fn encode(&self, w: &mut Writer) {
        self.session.encode(w);
        self.room.encode(w);
        w.u64(self.epoch);
        self.roster.encode(w);
        w.list(&self.entries, |w, e| e.encode(w));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            session: SessionId::decode(r)?,
            room: RoomId::decode(r)?,
            epoch: r.u64()?,
            roster: Digest::decode(r)?,
            entries: r.list(SealedKey::decode)?,
        })
    }
}

impl SignedKind for KeyBundle {
    const LABEL: &'static str = label::KEY_BUNDLE;
    const WHAT: &'static str = "key bundle";
}

/// A key bundle with the lead mediator's signature, as it travels.
pub type SignedKeyBundle = Signed<KeyBundle>;
