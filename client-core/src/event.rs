//! What a client is told: one typed stream of verified events. Only
//! content that passed every check in `caucus-protocol` appears; anything
//! else arrives as a [`Warning`].

use std::ops::RangeInclusive;

use caucus_protocol::content::Content;
use caucus_protocol::content::{ForwardMode, Sharing, Step, SystemEvent};
use caucus_protocol::crypto::Digest;
use caucus_protocol::document::DocumentRef;
use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::{InviteId, PartyId, RoomId, SessionId};
use caucus_protocol::offer::Offer;
use caucus_protocol::session::Opened;
use caucus_protocol::wire::{MediatorWhereabouts, PartyStatus};

/// Something that happened in a session.
///
/// As JSON (for a browser's UI, or a script) each event is one object
/// tagged by `"type"` in snake case, its fields as named here; ids, hashes
/// and fingerprints in unpadded base64url, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A message, verified and decrypted.
    Message {
        /// The session.
        session: SessionId,
        /// The room.
        room: RoomId,
        /// Its index in the room.
        index: u64,
        /// Who wrote it.
        sender: Fingerprint,
        /// Its envelope hash (to consent to or forward it).
        hash: Digest,
        /// Its author's sharing label.
        sharing: Sharing,
        /// The words.
        text: String,
    },
    /// Content the mediator carried across from another room.
    Forwarded {
        /// The session.
        session: SessionId,
        /// The room it arrived in.
        room: RoomId,
        /// Its index in the room.
        index: u64,
        /// The mediator who carried it.
        mediator: Fingerprint,
        /// The room it came from.
        from_room: RoomId,
        /// Verbatim or reframed in the mediator's words.
        mode: ForwardMode,
        /// What was carried.
        text: String,
        /// Whether the author consented (for *mediator only* content).
        author_consented: bool,
    },
    /// A document, verified; its chunks are fetched with
    /// [`crate::Machine::download`].
    Document {
        /// The session.
        session: SessionId,
        /// The room.
        room: RoomId,
        /// Its index in the room.
        index: u64,
        /// Who added it.
        sender: Fingerprint,
        /// Its envelope hash (to consent to, carry or download it).
        hash: Digest,
        /// Its author's sharing label.
        sharing: Sharing,
        /// What it is.
        document: DocumentInfo,
    },
    /// A document the mediator carried across from another room.
    DocumentCarried {
        /// The session.
        session: SessionId,
        /// The room it arrived in.
        room: RoomId,
        /// Its index in the room.
        index: u64,
        /// The mediator who carried it.
        mediator: Fingerprint,
        /// Its envelope hash here (to download it).
        hash: Digest,
        /// The room it came from.
        from_room: RoomId,
        /// Verbatim (the author's file) or the mediator's own copy.
        mode: ForwardMode,
        /// What it is.
        document: DocumentInfo,
        /// Whether the author consented (for a *mediator only* document).
        author_consented: bool,
    },
    /// In the source room: what of it was shared, where and how.
    Shared {
        /// The session.
        session: SessionId,
        /// The source room.
        room: RoomId,
        /// The message that was shared.
        source: Digest,
        /// Where it went.
        destination: RoomId,
        /// Verbatim or reframed.
        mode: ForwardMode,
        /// The text as shared.
        text: String,
    },
    /// A party member consented to sharing one of their messages.
    Consent {
        /// The session.
        session: SessionId,
        /// The room.
        room: RoomId,
        /// Who consented.
        member: Fingerprint,
        /// The message.
        message: Digest,
    },
    /// An event announced by a mediator.
    System {
        /// The session.
        session: SessionId,
        /// The room.
        room: RoomId,
        /// What happened.
        event: SystemEvent,
    },
    /// A party member gave notice that their party withdraws from the
    /// mediation (seen in their party's private room).
    Withdrew {
        /// The session.
        session: SessionId,
        /// Their private room.
        room: RoomId,
        /// Who gave notice.
        member: Fingerprint,
    },
    /// A party member agreed, for their party, to a step of the process.
    Agreed {
        /// The session.
        session: SessionId,
        /// Their private room.
        room: RoomId,
        /// Who agreed.
        member: Fingerprint,
        /// To what.
        step: Step,
    },
    /// The mediator proposed an agreement to sign.
    AgreementProposed {
        /// The session.
        session: SessionId,
        /// Where it was posted.
        room: RoomId,
        /// The agreement's hash, to sign it.
        agreement: Digest,
        /// Its title.
        title: String,
        /// Its terms, exactly as they would be signed.
        terms: String,
        /// The reality-testing checklist.
        checklist: Vec<String>,
        /// The documents it attaches: each file's SHA-256 is signed with it.
        attachments: Vec<caucus_protocol::agreement::Attachment>,
    },
    /// A signatory signed a proposed agreement.
    AgreementSigned {
        /// The session.
        session: SessionId,
        /// Where the signature was posted.
        room: RoomId,
        /// Who signed.
        member: Fingerprint,
        /// What they signed.
        agreement: Digest,
    },
    /// The agreement is signed by everyone and countersigned: this device
    /// holds a copy that verifies offline ([`crate::Machine::agreement`]).
    AgreementConcluded {
        /// The session.
        session: SessionId,
        /// Where it was posted.
        room: RoomId,
        /// Its hash.
        agreement: Digest,
    },
    /// A settlement offer made in a private room (by the party, or by the
    /// mediator for it).
    Offer {
        /// The session.
        session: SessionId,
        /// The private room it was made in.
        room: RoomId,
        /// Its index in the room.
        index: u64,
        /// Who recorded it.
        by: Fingerprint,
        /// Its message id (to carry it, or to answer it).
        message: Digest,
        /// The offer.
        offer: Offer,
    },
    /// An offer the mediator carried into this room.
    OfferCarried {
        /// The session.
        session: SessionId,
        /// The room it arrived in.
        room: RoomId,
        /// Its index in the room.
        index: u64,
        /// The mediator who carried it.
        mediator: Fingerprint,
        /// Its message id here (a counter-offer names it).
        message: Digest,
        /// The room it was made in.
        from_room: RoomId,
        /// Verbatim or restated by the mediator.
        mode: ForwardMode,
        /// The offer as carried.
        offer: Offer,
    },
    /// A new roster was accepted.
    Roster {
        /// The session.
        session: SessionId,
        /// Its version.
        version: u64,
    },
    /// This client was admitted to a session it knocked on, and holds the
    /// keys of its rooms.
    Joined {
        /// The session.
        session: SessionId,
    },
    /// (Mediator) someone is in the waiting room with a proof that
    /// verifies: compare their safety code with them, then admit or decline
    /// them.
    Knocking {
        /// The session.
        session: SessionId,
        /// The invite they used.
        invite: InviteId,
        /// Their device (its safety code is what to compare).
        member: Fingerprint,
        /// Their name, as given on the invite.
        name: String,
        /// The party they join; `None` for a co-mediator.
        party: Option<PartyId>,
    },
    /// (Mediator) a joiner was admitted.
    Admitted {
        /// The session.
        session: SessionId,
        /// The invite they used.
        invite: InviteId,
        /// The new member.
        member: Fingerprint,
    },
    /// (Mediator) a join request was refused: a bad proof, an expired or
    /// used invite, or the mediator declined it.
    Rejected {
        /// The session.
        session: SessionId,
        /// The invite named.
        invite: InviteId,
        /// Why.
        reason: String,
    },
    /// This client is in the waiting room; whether a mediator is online to
    /// let it in (sent on knocking, and again whenever that changes).
    Waiting {
        /// The session.
        session: SessionId,
        /// Whether the lead mediator or a co-mediator is connected.
        mediator_online: bool,
    },
    /// This client's join request was declined.
    Declined {
        /// The session.
        session: SessionId,
    },
    /// Who is connected and where the mediator is.
    Presence {
        /// The session.
        session: SessionId,
        /// Members connected.
        online: Vec<Fingerprint>,
        /// Where the mediator is, as far as this client may know.
        mediator: MediatorWhereabouts,
    },
    /// (Mediator) a party member's status.
    Status {
        /// The session.
        session: SessionId,
        /// The member.
        member: Fingerprint,
        /// Their status.
        status: PartyStatus,
    },
    /// The session has closed.
    Closed {
        /// The session.
        session: SessionId,
    },
    /// Something failed verification or is missing; nothing of it is shown.
    Warning {
        /// The session.
        session: SessionId,
        /// What kind of problem.
        kind: Warning,
        /// Details for a log.
        detail: String,
    },
}

impl Event {
    /// The session it happened in.
    pub fn session(&self) -> &SessionId {
        match self {
            Self::Message { session, .. }
            | Self::Document { session, .. }
            | Self::DocumentCarried { session, .. }
            | Self::Forwarded { session, .. }
            | Self::Shared { session, .. }
            | Self::Consent { session, .. }
            | Self::System { session, .. }
            | Self::Withdrew { session, .. }
            | Self::Agreed { session, .. }
            | Self::AgreementProposed { session, .. }
            | Self::AgreementSigned { session, .. }
            | Self::AgreementConcluded { session, .. }
            | Self::Offer { session, .. }
            | Self::OfferCarried { session, .. }
            | Self::Roster { session, .. }
            | Self::Joined { session, .. }
            | Self::Knocking { session, .. }
            | Self::Admitted { session, .. }
            | Self::Rejected { session, .. }
            | Self::Waiting { session, .. }
            | Self::Declined { session, .. }
            | Self::Presence { session, .. }
            | Self::Status { session, .. }
            | Self::Closed { session, .. }
            | Self::Warning { session, .. } => session,
        }
    }
}

/// Kinds of [`Event::Warning`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Warning {
    /// Messages of a sender are missing: the relay dropped or withheld them.
    Gap {
        /// The sender.
        sender: Fingerprint,
        /// The room.
        room: RoomId,
        /// The missing sequence numbers.
        missing: RangeInclusive<u64>,
    },
    /// An envelope, roster or key bundle failed verification.
    Verification,
    /// Two different envelopes from one sender at one sequence number in
    /// one room: the sender, or the relay, forked the history. The first
    /// stays; the second is not shown.
    Fork,
    /// The mediator shared a message of this device's that was for the
    /// mediator only, and this device holds no consent of its own for it.
    Consent,
    /// Something this device does by itself (catching up, recording a
    /// withdrawal, handing out keys) could not reach the relay or was
    /// refused.
    Connection,
    /// The relay served a roster that is not newer than the one held, is
    /// signed by the mediator, and is not the roster this client accepted
    /// at that version: an older or abandoned branch. The held roster stays.
    Rollback,
}

/// What a person is shown of a document: everything but its key and where
/// its chunks are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DocumentInfo {
    /// What it is called.
    pub title: String,
    /// The file name it is saved under.
    pub name: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, checked when it is downloaded.
    pub sha256: Digest,
}

impl From<&DocumentRef> for DocumentInfo {
    fn from(d: &DocumentRef) -> Self {
        Self {
            title: d.title.clone(),
            name: d.name.clone(),
            media_type: d.media_type.clone(),
            size: d.size,
            sha256: d.hash,
        }
    }
}

/// The event for a verified message, stored at `index` in its room.
pub(crate) fn of_message(session: SessionId, index: u64, opened: Opened) -> Event {
    let h = &opened.header;
    match opened.content {
        Content::Text { sharing, body } => Event::Message {
            session,
            room: h.room,
            index,
            sender: h.sender,
            hash: opened.hash,
            sharing,
            text: body,
        },
        Content::Forward(f) => Event::Forwarded {
            session,
            room: h.room,
            index,
            mediator: h.sender,
            from_room: f.source_room,
            mode: f.mode,
            text: f.text,
            author_consented: f.author_consented,
        },
        Content::ShareReceipt(r) => Event::Shared {
            session,
            room: h.room,
            source: r.source_message,
            destination: r.destination_room,
            mode: r.mode,
            text: r.text,
        },
        Content::Consent { message } => Event::Consent {
            session,
            room: h.room,
            member: h.sender,
            message,
        },
        Content::System(event) => Event::System {
            session,
            room: h.room,
            event,
        },
        Content::Withdrawal => Event::Withdrew {
            session,
            room: h.room,
            member: h.sender,
        },
        Content::Agree { step } => Event::Agreed {
            session,
            room: h.room,
            member: h.sender,
            step,
        },
        Content::AgreementDraft(a) => Event::AgreementProposed {
            session,
            room: h.room,
            agreement: a.hash(),
            title: a.title,
            terms: a.terms,
            checklist: a.checklist,
            attachments: a.attachments,
        },
        Content::AgreementSignature { agreement, .. } => Event::AgreementSigned {
            session,
            room: h.room,
            member: h.sender,
            agreement,
        },
        Content::AgreementFinal(a) => Event::AgreementConcluded {
            session,
            room: h.room,
            agreement: a.agreement.hash(),
        },
        Content::Offer(offer) => Event::Offer {
            session,
            room: h.room,
            index,
            by: h.sender,
            message: opened.hash,
            offer,
        },
        Content::CarriedOffer(c) => Event::OfferCarried {
            session,
            room: h.room,
            index,
            mediator: h.sender,
            message: opened.hash,
            from_room: c.source_room,
            mode: c.mode,
            offer: c.offer,
        },
        Content::Document { sharing, document } => Event::Document {
            session,
            room: h.room,
            index,
            sender: h.sender,
            hash: opened.hash,
            sharing,
            document: (&document).into(),
        },
        Content::CarriedDocument(c) => Event::DocumentCarried {
            session,
            room: h.room,
            index,
            mediator: h.sender,
            hash: opened.hash,
            from_room: c.source_room,
            mode: c.mode,
            document: (&c.document).into(),
            author_consented: c.author_consented,
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use caucus_protocol::roster::Phase;

    use super::*;

    #[test]
    fn events_are_json_objects_tagged_by_type_with_ids_in_base64url() {
        let session = SessionId([1; 16]);
        let room = RoomId([2; 16]);
        let json = serde_json::to_value(Event::System {
            session,
            room,
            event: SystemEvent::PhaseChanged(Phase::Negotiation),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "system",
                "session": session.to_string(),
                "room": room.to_string(),
                "event": {"kind": "phase_changed", "detail": "negotiation"},
            })
        );
        let json = serde_json::to_value(Event::Joined { session }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "joined", "session": session.to_string()})
        );
    }
}
