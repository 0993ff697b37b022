//! The roster: the mediator-signed membership of a session.
//!
//! A roster names the session's parties (their labels sealed so the relay
//! never reads them), its members with their public identities, roles and
//! parties, its rooms with who is in each and at which key epoch, and the
//! session's phase. Each new roster carries a version that only grows and the
//! hash of the roster before it. Clients accept a roster only when it is
//! signed by the mediator pinned from their invite link (see
//! [`crate::session::SessionView::accept_roster`]).

use std::collections::BTreeSet;

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::{Digest, label};
use crate::error::Error;
use crate::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use crate::ids::{PartyId, RoomId, SessionId};
use crate::keys::SealedLabel;
use crate::signed::{Signed, SignedKind};

/// What a member is in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The lead mediator: signs rosters and key bundles. Exactly one.
    Mediator,
    /// A co-mediator: a mediator's rights in every room, but the lead signs
    /// rosters and key bundles.
    CoMediator,
    /// A member of one party (the party itself, or its lawyer, say).
    PartyMember,
}

impl Role {
    /// Whether this role mediates (lead or co-mediator).
    pub fn is_mediator(self) -> bool {
        matches!(self, Self::Mediator | Self::CoMediator)
    }
}

impl Canonical for Role {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            Self::Mediator => 1,
            Self::CoMediator => 2,
            Self::PartyMember => 3,
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Mediator),
            2 => Ok(Self::CoMediator),
            3 => Ok(Self::PartyMember),
            tag => Err(DecodeError::InvalidTag { what: "role", tag }),
        }
    }
}

/// Where a mediation has got to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Invitations, admissions and preparation.
    Preparation,
    /// Individual confidential meetings with each party.
    IndividualMeetings,
    /// Shuttle and joint work on the issues.
    Negotiation,
    /// Drafting, reality-testing and signing the agreement.
    Agreement,
    /// The session has closed.
    Closed,
}

impl Canonical for Phase {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            Self::Preparation => 1,
            Self::IndividualMeetings => 2,
            Self::Negotiation => 3,
            Self::Agreement => 4,
            Self::Closed => 5,
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Preparation),
            2 => Ok(Self::IndividualMeetings),
            3 => Ok(Self::Negotiation),
            4 => Ok(Self::Agreement),
            5 => Ok(Self::Closed),
            tag => Err(DecodeError::InvalidTag { what: "phase", tag }),
        }
    }
}

/// A party to the dispute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// Its opaque id.
    pub id: PartyId,
    /// Its label ("Claimant"), sealed under the joint room's key.
    pub label: SealedLabel,
    /// Whether the party has withdrawn from the mediation.
    pub withdrawn: bool,
}

impl Canonical for Party {
    fn encode(&self, w: &mut Writer) {
        self.id.encode(w);
        self.label.encode(w);
        w.bool(self.withdrawn);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: PartyId::decode(r)?,
            label: SealedLabel::decode(r)?,
            withdrawn: r.bool()?,
        })
    }
}

/// A member: one person's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Their public identity.
    pub identity: PublicIdentity,
    /// Their role.
    pub role: Role,
    /// Their party; `None` exactly for mediators.
    pub party: Option<PartyId>,
    /// Their name, sealed under the joint room's key.
    pub name: SealedLabel,
}

impl Member {
    /// The member's fingerprint, which names them everywhere else.
    pub fn id(&self) -> Fingerprint {
        self.identity.fingerprint()
    }
}

impl Canonical for Member {
    fn encode(&self, w: &mut Writer) {
        self.identity.encode(w);
        self.role.encode(w);
        w.option(self.party.as_ref(), |w, p| p.encode(w));
        self.name.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            identity: PublicIdentity::decode(r)?,
            role: Role::decode(r)?,
            party: r.option(PartyId::decode)?,
            name: SealedLabel::decode(r)?,
        })
    }
}

/// What a room is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    /// A party's private room: that party's members and the mediators.
    Private(PartyId),
    /// The joint room: everyone.
    Joint,
    /// A side room for a subset (the lawyers only, say).
    Side,
}

impl Canonical for RoomKind {
    fn encode(&self, w: &mut Writer) {
        match self {
            Self::Private(p) => {
                w.u8(1);
                p.encode(w);
            }
            Self::Joint => {
                w.u8(2);
            }
            Self::Side => {
                w.u8(3);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Private(PartyId::decode(r)?)),
            2 => Ok(Self::Joint),
            3 => Ok(Self::Side),
            tag => Err(DecodeError::InvalidTag {
                what: "room kind",
                tag,
            }),
        }
    }
}

/// A room and who is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// Its opaque id.
    pub id: RoomId,
    /// What it is for.
    pub kind: RoomKind,
    /// Whether members other than mediators may post in it now.
    pub open: bool,
    /// Its current key epoch. Any change of membership starts a new one.
    pub epoch: u64,
    /// Its members, by fingerprint, in ascending order.
    pub members: Vec<Fingerprint>,
}

impl Room {
    /// Whether `member` is in this room.
    pub fn has(&self, member: &Fingerprint) -> bool {
        self.members.binary_search(member).is_ok()
    }
}

impl Canonical for Room {
    fn encode(&self, w: &mut Writer) {
        self.id.encode(w);
        self.kind.encode(w);
        w.bool(self.open).u64(self.epoch);
        w.list(&self.members, |w, m| m.encode(w));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: RoomId::decode(r)?,
            kind: RoomKind::decode(r)?,
            open: r.bool()?,
            epoch: r.u64()?,
            members: r.list(Fingerprint::decode)?,
        })
    }
}

/// Where one member's chain in one room stood when the room's epoch ended:
/// the last of their envelopes the mediator had accepted there. Receivers
/// accept an envelope of an ended epoch only up to this head, so a member
/// who keeps an old epoch's key (one removed, or whose party withdrew)
/// cannot seal anything new under it, however a relay delivers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChainHead {
    /// The room.
    pub room: RoomId,
    /// The member.
    pub member: Fingerprint,
    /// Their last sequence number in the room (at least 1: a member who
    /// sent nothing there has no head).
    pub seq: u64,
    /// The envelope hash at that sequence number.
    pub hash: Digest,
}

impl Canonical for ChainHead {
    fn encode(&self, w: &mut Writer) {
        self.room.encode(w);
        self.member.encode(w);
        w.u64(self.seq);
        self.hash.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            room: RoomId::decode(r)?,
            member: Fingerprint::decode(r)?,
            seq: r.u64()?,
            hash: Digest::decode(r)?,
        })
    }
}

/// The membership of a session at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    /// The session.
    pub session: SessionId,
    /// The version: 1 for the first roster, then strictly growing.
    pub version: u64,
    /// The hash of the previous roster ([`Digest::ZERO`] for version 1).
    pub previous: Digest,
    /// The phase of the mediation.
    pub phase: Phase,
    /// The parties.
    pub parties: Vec<Party>,
    /// The members.
    pub members: Vec<Member>,
    /// The rooms.
    pub rooms: Vec<Room>,
    /// For every room whose epoch this roster ends (a new epoch, or the room
    /// removed), the chain head of each member of the ended epoch who has
    /// sent anything in the room, sorted by room then member.
    pub heads: Vec<ChainHead>,
}

impl Canonical for Roster {
    fn encode(&self, w: &mut Writer) {
        self.session.encode(w);
        w.u64(self.version);
        self.previous.encode(w);
        self.phase.encode(w);
        w.list(&self.parties, |w, p| p.encode(w));
        w.list(&self.members, |w, m| m.encode(w));
        w.list(&self.rooms, |w, r| r.encode(w));
        w.list(&self.heads, |w, h| h.encode(w));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            session: SessionId::decode(r)?,
            version: r.u64()?,
            previous: Digest::decode(r)?,
            phase: Phase::decode(r)?,
            parties: r.list(Party::decode)?,
            members: r.list(Member::decode)?,
            rooms: r.list(Room::decode)?,
            heads: r.list(ChainHead::decode)?,
        })
    }
}

impl Roster {
    /// The lead mediator.
    pub fn mediator(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.role == Role::Mediator)
    }

    /// The member with this fingerprint.
    pub fn member(&self, id: &Fingerprint) -> Option<&Member> {
        self.members.iter().find(|m| &m.id() == id)
    }

    /// The room with this id.
    pub fn room(&self, id: &RoomId) -> Option<&Room> {
        self.rooms.iter().find(|r| &r.id == id)
    }

    /// The joint room.
    pub fn joint_room(&self) -> Option<&Room> {
        self.rooms.iter().find(|r| r.kind == RoomKind::Joint)
    }

    /// The private room of `party`.
    pub fn private_room(&self, party: &PartyId) -> Option<&Room> {
        self.rooms
            .iter()
            .find(|r| r.kind == RoomKind::Private(*party))
    }

    /// The party with this id.
    pub fn party(&self, id: &PartyId) -> Option<&Party> {
        self.parties.iter().find(|p| &p.id == id)
    }

    /// Check the structural rules every roster must keep (listed in
    /// `docs/protocol.md`, "Roster rules").
    pub fn validate(&self) -> Result<(), Error> {
        use Error::InvalidRoster as Bad;
        if self.version == 0 {
            return Err(Bad("version 0"));
        }
        if (self.version == 1) != (self.previous == Digest::ZERO) {
            return Err(Bad("only version 1 has no previous roster"));
        }
        if self
            .members
            .iter()
            .filter(|m| m.role == Role::Mediator)
            .count()
            != 1
        {
            return Err(Bad("exactly one lead mediator"));
        }
        let party_ids = unique(self.parties.iter().map(|p| p.id)).ok_or(Bad("duplicate party"))?;
        let member_ids =
            unique(self.members.iter().map(Member::id)).ok_or(Bad("duplicate member"))?;
        unique(self.rooms.iter().map(|r| r.id)).ok_or(Bad("duplicate room"))?;
        for m in &self.members {
            match (m.role.is_mediator(), m.party) {
                (true, None) => {}
                (false, Some(p)) if party_ids.contains(&p) => {}
                _ => {
                    return Err(Bad(
                        "a party member needs a known party; a mediator has none",
                    ));
                }
            }
        }
        let mediators: BTreeSet<Fingerprint> = self
            .members
            .iter()
            .filter(|m| m.role.is_mediator())
            .map(Member::id)
            .collect();
        if self
            .rooms
            .iter()
            .filter(|r| r.kind == RoomKind::Joint)
            .count()
            != 1
        {
            return Err(Bad("exactly one joint room"));
        }
        for p in &party_ids {
            let privates = self
                .rooms
                .iter()
                .filter(|r| r.kind == RoomKind::Private(*p))
                .count();
            if privates != 1 {
                return Err(Bad("exactly one private room per party"));
            }
        }
        for room in &self.rooms {
            if !room.members.windows(2).all(|w| w[0] < w[1]) {
                return Err(Bad("room members must be sorted and unique"));
            }
            if !room.members.iter().all(|m| member_ids.contains(m)) {
                return Err(Bad("room member not in the roster"));
            }
            if !mediators.iter().all(|m| room.has(m)) {
                return Err(Bad("every mediator is in every room"));
            }
            if room.epoch == 0 {
                return Err(Bad("epochs start at 1"));
            }
            if let RoomKind::Private(p) = room.kind {
                if !party_ids.contains(&p) {
                    return Err(Bad("private room of an unknown party"));
                }
                let outsider = room.members.iter().any(|id| {
                    self.member(id)
                        .is_some_and(|m| !m.role.is_mediator() && m.party != Some(p))
                });
                if outsider {
                    return Err(Bad("a private room holds only its party and the mediators"));
                }
            }
        }
        let joint = self.joint_room().ok_or(Bad("exactly one joint room"))?;
        for m in &self.members {
            let Some(party) = m.party.and_then(|p| self.party(&p)) else {
                continue;
            };
            let id = m.id();
            if !self.private_room(&party.id).is_some_and(|r| r.has(&id)) {
                return Err(Bad("a party member is in their party's private room"));
            }
            if joint.has(&id) == party.withdrawn {
                return Err(Bad(
                    "a party member is in the joint room exactly while their party has not withdrawn",
                ));
            }
            let in_side_room = self
                .rooms
                .iter()
                .any(|r| r.kind == RoomKind::Side && r.has(&id));
            if party.withdrawn && in_side_room {
                return Err(Bad("a withdrawn party's members are in no side room"));
            }
        }
        let labels = self.parties.iter().map(|p| &p.label);
        if !labels
            .chain(self.members.iter().map(|m| &m.name))
            .all(|l| l.epoch == joint.epoch)
        {
            return Err(Bad("labels and names are sealed at the joint room's epoch"));
        }
        if self.version == 1 && !self.heads.is_empty() {
            return Err(Bad("the first roster ends no epoch"));
        }
        let ordered = self
            .heads
            .windows(2)
            .all(|w| (w[0].room, w[0].member) < (w[1].room, w[1].member));
        if !ordered || self.heads.iter().any(|h| h.seq == 0 || h.seq == u64::MAX) {
            return Err(Bad(
                "chain heads are sorted by room and member, once each, with a sequence number",
            ));
        }
        Ok(())
    }
}

fn unique<T: Ord>(items: impl Iterator<Item = T>) -> Option<BTreeSet<T>> {
    let mut set = BTreeSet::new();
    for item in items {
        if !set.insert(item) {
            return None;
        }
    }
    Some(set)
}

impl SignedKind for Roster {
    const LABEL: &'static str = label::ROSTER;
    const WHAT: &'static str = "roster";
}

/// A roster with the lead mediator's signature, as it travels.
pub type SignedRoster = Signed<Roster>;

impl Signed<Roster> {
    /// Validate `roster` and sign it as its lead mediator.
    pub fn sign_roster(roster: Roster, mediator: &DeviceKeys) -> Result<Self, Error> {
        roster.validate()?;
        if roster.mediator().map(Member::id) != Some(mediator.fingerprint()) {
            return Err(Error::InvalidRoster(
                "signer is not the roster's lead mediator",
            ));
        }
        Ok(Self::sign(roster, mediator))
    }

    /// The hash that names this roster: `SHA-256(label "caucus/v1/roster-hash" || body)`.
    pub fn hash(&self) -> Digest {
        Digest::of(label::ROSTER_HASH, &[self.body()])
    }

    /// Check that the roster is well formed, that its lead mediator is
    /// `mediator`, and that the lead mediator signed it.
    pub fn verify(&self, mediator: &Fingerprint) -> Result<&Roster, Error> {
        let roster = self.unverified();
        roster.validate()?;
        let lead = roster
            .mediator()
            .ok_or(Error::InvalidRoster("exactly one lead mediator"))?;
        if &lead.id() != mediator {
            return Err(Error::UnpinnedMediator);
        }
        self.verify_by(&lead.identity)
    }
}
