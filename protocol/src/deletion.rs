//! The relay's signed statement of what it erased when a session closed.
//!
//! The relay has a long-term identity of its own (the same kind of
//! [`DeviceKeys`] a device has), shown to every client in the login
//! challenge. When it erases a closed session it signs a
//! [`DeletionStatement`]: which session, whose, when it closed, when it was
//! erased, and how many records of each kind (and how many bytes) went. The
//! mediator keeps it; anyone can check it offline against the relay's
//! identity. It is an accountable claim by the relay's operator, not a
//! proof: no signature can show that bytes are gone from a disk.
//!
//! ```
//! use caucus_protocol::deletion::{DeletionStatement, Erased};
//! use caucus_protocol::identity::DeviceKeys;
//! use caucus_protocol::ids::SessionId;
//!
//! # fn main() -> Result<(), caucus_protocol::Error> {
//! let relay = DeviceKeys::generate()?;
//! let mediator = DeviceKeys::generate()?;
//! let session = SessionId::random()?;
//! let statement = DeletionStatement {
//!     relay: relay.public().clone(),
//!     session,
//!     mediator: mediator.fingerprint(),
//!     closed_at: 1_900_000_000,
//!     erased_at: 1_900_000_000,
//!     erased: Erased { envelopes: 42, ..Erased::default() },
//! }
//! .sign(&relay)?;
//! let checked = statement.verify_for(&session, &mediator.fingerprint(), &relay.fingerprint())?;
//! assert_eq!(checked.erased.envelopes, 42);
//! # Ok(())
//! # }
//! ```

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::label;
use crate::error::Error;
use crate::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use crate::ids::SessionId;
use crate::signed::{Signed, SignedKind};

/// How many records of each kind were erased.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Signed rosters.
    pub rosters: u64,
    /// Key bundles.
    pub key_bundles: u64,
    /// Envelopes, in every room.
    pub envelopes: u64,
    /// Invite records.
    pub invites: u64,
    /// Join requests still waiting.
    pub join_requests: u64,
    /// The session record itself (1).
    pub sessions: u64,
    /// Document records, complete or not.
    pub documents: u64,
    /// Document chunks.
    pub chunks: u64,
    /// The stored size of all of them, keys and values.
    pub bytes: u64,
}

/// What the relay says it erased, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionStatement {
    /// The relay's identity, which signs the statement.
    pub relay: PublicIdentity,
    /// The session erased.
    pub session: SessionId,
    /// Its lead mediator, to whom the statement is owed.
    pub mediator: Fingerprint,
    /// When it closed, in seconds since the Unix epoch.
    pub closed_at: u64,
    /// When its data was erased.
    pub erased_at: u64,
    /// What was erased.
    pub erased: Erased,
}

impl Canonical for Erased {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.rosters)
            .u64(self.key_bundles)
            .u64(self.envelopes)
            .u64(self.invites)
            .u64(self.join_requests)
            .u64(self.sessions)
            .u64(self.documents)
            .u64(self.chunks)
            .u64(self.bytes);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            rosters: r.u64()?,
            key_bundles: r.u64()?,
            envelopes: r.u64()?,
            invites: r.u64()?,
            join_requests: r.u64()?,
            sessions: r.u64()?,
            documents: r.u64()?,
            chunks: r.u64()?,
            bytes: r.u64()?,
        })
    }
}

impl Canonical for DeletionStatement {
    fn encode(&self, w: &mut Writer) {
        self.relay.encode(w);
        self.session.encode(w);
        self.mediator.encode(w);
        w.u64(self.closed_at).u64(self.erased_at);
        self.erased.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            relay: PublicIdentity::decode(r)?,
            session: SessionId::decode(r)?,
            mediator: Fingerprint::decode(r)?,
            closed_at: r.u64()?,
            erased_at: r.u64()?,
            erased: Erased::decode(r)?,
        })
    }
}

impl SignedKind for DeletionStatement {
    const LABEL: &'static str = label::DELETION;
    const WHAT: &'static str = "deletion statement";
}

/// A deletion statement with the relay's signature, as it travels.
pub type SignedDeletionStatement = Signed<DeletionStatement>;

impl DeletionStatement {
    /// Sign as the relay named in the statement.
    pub fn sign(self, relay: &DeviceKeys) -> Result<SignedDeletionStatement, Error> {
        if self.relay != *relay.public() {
            return Err(Error::BadStatement("signer is not the relay it names"));
        }
        Ok(Signed::sign(self, relay))
    }
}

impl Signed<DeletionStatement> {
    /// Check the relay's signature, with nothing else: for a copy read
    /// offline.
    pub fn verify(&self) -> Result<&DeletionStatement, Error> {
        self.verify_by(&self.unverified().relay)
    }

    /// Check the signature, and that the statement is about `session`, owed
    /// to `mediator` and signed by the relay whose identity is `relay`.
    pub fn verify_for(
        &self,
        session: &SessionId,
        mediator: &Fingerprint,
        relay: &Fingerprint,
    ) -> Result<&DeletionStatement, Error> {
        let s = self.verify()?;
        if &s.session != session {
            return Err(Error::WrongSession);
        }
        if &s.mediator != mediator {
            return Err(Error::BadStatement("owed to another mediator"));
        }
        if &s.relay.fingerprint() != relay {
            return Err(Error::BadStatement("signed by another relay"));
        }
        Ok(s)
    }
}
