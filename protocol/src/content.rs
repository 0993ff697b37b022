//! What travels inside an envelope's ciphertext.
//!
//! The relay never sees any of this. The envelope header holds only a
//! [`ContentClass`], which says which side sent the message (a party member
//! or a mediator) and so nothing the roster does not already say; the
//! [`ContentType`] is the first byte of the content, inside the ciphertext,
//! and receivers apply [`ContentType::check_sender`] to it once decrypted.

use crate::agreement::{Agreement, SignedAgreement};
use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::{Digest, Signature};
use crate::document::DocumentRef;
use crate::error::Error;
use crate::identity::Fingerprint;
use crate::ids::RoomId;
use crate::offer::{CarriedOffer, Offer};
use crate::roster::{Phase, Role, RoomKind};

/// Whether the author lets the mediator carry a message to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    /// For the mediator only, not to be shared (the default in a private
    /// room). The mediator may forward it only with the author's consent.
    MediatorOnly,
    /// The mediator may share it.
    MayShare,
}

/// How a forward carries the source message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardMode {
    /// The author's words, unchanged.
    Verbatim,
    /// The mediator's own words.
    Reframed,
}

/// A mediator carrying content from one room to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The room the content came from.
    pub source_room: RoomId,
    /// The envelope hash of the source message.
    pub source_message: Digest,
    /// Verbatim or reframed.
    pub mode: ForwardMode,
    /// What is carried across.
    pub text: String,
    /// Whether the author consented to sharing *mediator only* content.
    pub author_consented: bool,
}

/// Posted in the source room: what of it was shared, where and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareReceipt {
    /// The envelope hash of the message that was shared.
    pub source_message: Digest,
    /// Where it was carried.
    pub destination_room: RoomId,
    /// Verbatim or reframed.
    pub mode: ForwardMode,
    /// The text as it was shared.
    pub text: String,
}

/// A mediator carrying a document from one room to another: the same file
/// (verbatim: the same chunks and key, nothing uploaded again) or a document
/// of the mediator's own standing for it (a redacted copy, a summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedDocument {
    /// The room the document came from.
    pub source_room: RoomId,
    /// The envelope hash of the document there.
    pub source_message: Digest,
    /// Verbatim (the same file) or the mediator's own copy.
    pub mode: ForwardMode,
    /// The document as carried.
    pub document: DocumentRef,
    /// Whether the author consented to sharing a *mediator only* document.
    pub author_consented: bool,
}

impl Canonical for CarriedDocument {
    fn encode(&self, w: &mut Writer) {
        self.source_room.encode(w);
        self.source_message.encode(w);
        self.mode.encode(w);
        self.document.encode(w);
        w.bool(self.author_consented);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            source_room: RoomId::decode(r)?,
            source_message: Digest::decode(r)?,
            mode: ForwardMode::decode(r)?,
            document: DocumentRef::decode(r)?,
            author_consented: r.bool()?,
        })
    }
}

/// A session event announced by a mediator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum SystemEvent {
    /// A member was admitted.
    MemberAdmitted(Fingerprint),
    /// A member was removed.
    MemberRemoved(Fingerprint),
    /// The joint room was opened.
    JointOpened,
    /// The joint room was closed.
    JointClosed,
    /// The mediation moved to a new phase.
    PhaseChanged(Phase),
    /// A party has withdrawn from the mediation (which one is not said).
    PartyWithdrew,
    /// A party that had withdrawn has been readmitted.
    PartyRejoined,
}

impl Canonical for SystemEvent {
    fn encode(&self, w: &mut Writer) {
        match self {
            Self::MemberAdmitted(m) => {
                w.u8(1);
                m.encode(w);
            }
            Self::MemberRemoved(m) => {
                w.u8(2);
                m.encode(w);
            }
            Self::JointOpened => {
                w.u8(3);
            }
            Self::JointClosed => {
                w.u8(4);
            }
            Self::PhaseChanged(p) => {
                w.u8(5);
                p.encode(w);
            }
            Self::PartyWithdrew => {
                w.u8(6);
            }
            Self::PartyRejoined => {
                w.u8(7);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::MemberAdmitted(Fingerprint::decode(r)?)),
            2 => Ok(Self::MemberRemoved(Fingerprint::decode(r)?)),
            3 => Ok(Self::JointOpened),
            4 => Ok(Self::JointClosed),
            5 => Ok(Self::PhaseChanged(Phase::decode(r)?)),
            6 => Ok(Self::PartyWithdrew),
            7 => Ok(Self::PartyRejoined),
            tag => Err(DecodeError::InvalidTag {
                what: "system event",
                tag,
            }),
        }
    }
}

/// A step of the process a party agrees to take.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// To continue with the mediation after the individual meeting.
    Continue,
    /// To meet the other parties in the joint room.
    JointMeeting,
}

impl Canonical for Step {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            Self::Continue => 1,
            Self::JointMeeting => 2,
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Continue),
            2 => Ok(Self::JointMeeting),
            tag => Err(DecodeError::InvalidTag { what: "step", tag }),
        }
    }
}

/// The type of an envelope's content: the first byte of the content, inside
/// the ciphertext, so the relay cannot tell one type from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContentType {
    /// [`Content::Text`].
    Text,
    /// [`Content::Forward`].
    Forward,
    /// [`Content::ShareReceipt`].
    ShareReceipt,
    /// [`Content::Consent`].
    Consent,
    /// [`Content::Withdrawal`].
    Withdrawal,
    /// [`Content::System`].
    System,
    /// [`Content::Agree`].
    Agree,
    /// [`Content::AgreementDraft`].
    AgreementDraft,
    /// [`Content::AgreementSignature`].
    AgreementSignature,
    /// [`Content::AgreementFinal`].
    AgreementFinal,
    /// [`Content::Offer`].
    Offer,
    /// [`Content::CarriedOffer`].
    CarriedOffer,
    /// [`Content::Document`].
    Document,
    /// [`Content::CarriedDocument`].
    CarriedDocument,
}

impl ContentType {
    /// Whether only mediators may send content of this type.
    pub fn mediator_only(self) -> bool {
        matches!(
            self,
            Self::Forward
                | Self::ShareReceipt
                | Self::System
                | Self::AgreementDraft
                | Self::AgreementFinal
                | Self::CarriedOffer
                | Self::CarriedDocument
        )
    }

    /// Whether only a party member may send content of this type, and only
    /// in their own party's private room.
    pub fn party_only(self) -> bool {
        matches!(self, Self::Consent | Self::Withdrawal | Self::Agree)
    }

    /// Whether a member of `role` may send this content type in a room of
    /// `kind`: the one rule a sender applies before sealing and a receiver
    /// after decrypting. The relay cannot apply it: it sees only the
    /// [`ContentClass`].
    pub fn check_sender(self, role: Role, kind: RoomKind) -> Result<(), Error> {
        if self.mediator_only() && !role.is_mediator() {
            return Err(Error::NotPermitted("only a mediator sends this content"));
        }
        if self == Self::AgreementSignature && role.is_mediator() {
            return Err(Error::NotPermitted(
                "a mediator countersigns; party members sign",
            ));
        }
        let private = matches!(kind, RoomKind::Private(_));
        if self.party_only() && (role.is_mediator() || !private) {
            return Err(Error::NotPermitted(
                "consent and withdrawal come from a party member in their private room",
            ));
        }
        if self == Self::Offer && !private {
            return Err(Error::NotPermitted(
                "an offer is made in the offering party's private room",
            ));
        }
        Ok(())
    }

    fn tag(self) -> u8 {
        match self {
            Self::Text => 1,
            Self::Forward => 2,
            Self::ShareReceipt => 3,
            Self::Consent => 4,
            Self::Withdrawal => 6,
            Self::Agree => 7,
            Self::AgreementDraft => 8,
            Self::AgreementSignature => 9,
            Self::AgreementFinal => 10,
            Self::Offer => 11,
            Self::CarriedOffer => 12,
            Self::Document => 13,
            Self::CarriedDocument => 14,
            Self::System => 5,
        }
    }
}

/// What an envelope's header says about its content: which side of the
/// mediation sent it. It is fixed by the sender's role, so it tells the relay
/// nothing the roster does not; what the content is (text, an offer, a
/// consent, a step agreed, a forward) is inside the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContentClass {
    /// Content from a party member.
    Party,
    /// Content from the lead mediator or a co-mediator.
    Mediator,
}

impl ContentClass {
    /// The class of everything a member of `role` sends.
    pub fn of(role: Role) -> Self {
        if role.is_mediator() {
            Self::Mediator
        } else {
            Self::Party
        }
    }

    /// Check that a header of this class can come from a sender of `role`:
    /// the relay's one check of the header's class, and a receiver's before
    /// it decrypts.
    pub fn check(self, role: Role) -> Result<(), Error> {
        if self == Self::of(role) {
            Ok(())
        } else {
            Err(Error::ContentTypeMismatch)
        }
    }
}

impl Canonical for ContentClass {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            Self::Party => 1,
            Self::Mediator => 2,
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Party),
            2 => Ok(Self::Mediator),
            tag => Err(DecodeError::InvalidTag {
                what: "content class",
                tag,
            }),
        }
    }
}

impl Canonical for ContentType {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.tag());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Text),
            2 => Ok(Self::Forward),
            3 => Ok(Self::ShareReceipt),
            4 => Ok(Self::Consent),
            6 => Ok(Self::Withdrawal),
            7 => Ok(Self::Agree),
            8 => Ok(Self::AgreementDraft),
            9 => Ok(Self::AgreementSignature),
            10 => Ok(Self::AgreementFinal),
            11 => Ok(Self::Offer),
            12 => Ok(Self::CarriedOffer),
            13 => Ok(Self::Document),
            14 => Ok(Self::CarriedDocument),
            5 => Ok(Self::System),
            tag => Err(DecodeError::InvalidTag {
                what: "content type",
                tag,
            }),
        }
    }
}

impl Canonical for Sharing {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            Self::MediatorOnly => 1,
            Self::MayShare => 2,
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::MediatorOnly),
            2 => Ok(Self::MayShare),
            tag => Err(DecodeError::InvalidTag {
                what: "sharing",
                tag,
            }),
        }
    }
}

impl Canonical for ForwardMode {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            Self::Verbatim => 1,
            Self::Reframed => 2,
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Verbatim),
            2 => Ok(Self::Reframed),
            tag => Err(DecodeError::InvalidTag {
                what: "forward mode",
                tag,
            }),
        }
    }
}

/// The plaintext of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A message, with its author's sharing label.
    Text {
        /// Whether the mediator may share it.
        sharing: Sharing,
        /// The words.
        body: String,
    },
    /// Content carried across by a mediator.
    Forward(Forward),
    /// The source room's record of what was shared.
    ShareReceipt(ShareReceipt),
    /// A party member's consent to share one of their messages.
    Consent {
        /// The envelope hash of the message that may be shared.
        message: Digest,
    },
    /// A session event from a mediator.
    System(SystemEvent),
    /// A party member's notice that their party withdraws from the mediation.
    Withdrawal,
    /// A party member's signed agreement, for their party, to take a step of
    /// the process (to continue; to meet jointly).
    Agree {
        /// The step.
        step: Step,
    },
    /// The mediator's draft of the outcome, for the parties to reality-test
    /// and sign.
    AgreementDraft(Agreement),
    /// A signatory's signature on a draft.
    AgreementSignature {
        /// The draft's hash.
        agreement: Digest,
        /// The signature over it.
        signature: Signature,
    },
    /// The agreement with every signature and the mediator's
    /// countersignature: everyone's copy.
    AgreementFinal(SignedAgreement),
    /// A settlement offer or counter-offer, made in the offering party's
    /// private room by one of its members or by a mediator for it.
    Offer(Offer),
    /// An offer carried by a mediator to another room.
    CarriedOffer(CarriedOffer),
    /// A document, with its author's sharing label: its chunks are at the
    /// relay, its key is here.
    Document {
        /// Whether the mediator may share it.
        sharing: Sharing,
        /// The document.
        document: DocumentRef,
    },
    /// A document carried by a mediator to another room.
    CarriedDocument(CarriedDocument),
}

impl Content {
    /// This content's type, its first byte.
    pub fn content_type(&self) -> ContentType {
        match self {
            Self::Text { .. } => ContentType::Text,
            Self::Forward(_) => ContentType::Forward,
            Self::ShareReceipt(_) => ContentType::ShareReceipt,
            Self::Consent { .. } => ContentType::Consent,
            Self::System(_) => ContentType::System,
            Self::Withdrawal => ContentType::Withdrawal,
            Self::Agree { .. } => ContentType::Agree,
            Self::AgreementDraft(_) => ContentType::AgreementDraft,
            Self::AgreementSignature { .. } => ContentType::AgreementSignature,
            Self::AgreementFinal(_) => ContentType::AgreementFinal,
            Self::Offer(_) => ContentType::Offer,
            Self::CarriedOffer(_) => ContentType::CarriedOffer,
            Self::Document { .. } => ContentType::Document,
            Self::CarriedDocument(_) => ContentType::CarriedDocument,
        }
    }
}

impl Canonical for Content {
    fn encode(&self, w: &mut Writer) {
        self.content_type().encode(w);
        match self {
            Self::Text { sharing, body } => {
                sharing.encode(w);
                w.str(body);
            }
            Self::Forward(f) => {
                f.source_room.encode(w);
                f.source_message.encode(w);
                f.mode.encode(w);
                w.str(&f.text).bool(f.author_consented);
            }
            Self::ShareReceipt(s) => {
                s.source_message.encode(w);
                s.destination_room.encode(w);
                s.mode.encode(w);
                w.str(&s.text);
            }
            Self::Consent { message } => message.encode(w),
            Self::System(e) => e.encode(w),
            Self::Withdrawal => {}
            Self::Agree { step } => step.encode(w),
            Self::AgreementDraft(a) => {
                w.bytes(&a.to_bytes());
            }
            Self::AgreementSignature {
                agreement,
                signature,
            } => {
                agreement.encode(w);
                signature.encode(w);
            }
            Self::AgreementFinal(a) => {
                w.bytes(&a.to_bytes());
            }
            Self::Offer(o) => o.encode(w),
            Self::CarriedOffer(c) => c.encode(w),
            Self::Document { sharing, document } => {
                sharing.encode(w);
                document.encode(w);
            }
            Self::CarriedDocument(c) => c.encode(w),
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match ContentType::decode(r)? {
            ContentType::Text => Self::Text {
                sharing: Sharing::decode(r)?,
                body: r.string()?,
            },
            ContentType::Forward => Self::Forward(Forward {
                source_room: RoomId::decode(r)?,
                source_message: Digest::decode(r)?,
                mode: ForwardMode::decode(r)?,
                text: r.string()?,
                author_consented: r.bool()?,
            }),
            ContentType::ShareReceipt => Self::ShareReceipt(ShareReceipt {
                source_message: Digest::decode(r)?,
                destination_room: RoomId::decode(r)?,
                mode: ForwardMode::decode(r)?,
                text: r.string()?,
            }),
            ContentType::Consent => Self::Consent {
                message: Digest::decode(r)?,
            },
            ContentType::System => Self::System(SystemEvent::decode(r)?),
            ContentType::Withdrawal => Self::Withdrawal,
            ContentType::Agree => Self::Agree {
                step: Step::decode(r)?,
            },
            ContentType::AgreementDraft => Self::AgreementDraft(Agreement::from_bytes(r.bytes()?)?),
            ContentType::AgreementSignature => Self::AgreementSignature {
                agreement: Digest::decode(r)?,
                signature: Signature::decode(r)?,
            },
            ContentType::AgreementFinal => {
                Self::AgreementFinal(SignedAgreement::from_bytes(r.bytes()?)?)
            }
            ContentType::Offer => Self::Offer(Offer::decode(r)?),
            ContentType::CarriedOffer => Self::CarriedOffer(CarriedOffer::decode(r)?),
            ContentType::Document => Self::Document {
                sharing: Sharing::decode(r)?,
                document: DocumentRef::decode(r)?,
            },
            ContentType::CarriedDocument => Self::CarriedDocument(CarriedDocument::decode(r)?),
        })
    }
}
