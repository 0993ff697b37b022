//! The chain of rosters a session has accepted, and every rule that binds a
//! roster, a key bundle or an envelope to it. A client's
//! [`SessionView`](crate::session::SessionView) and the relay
//! ([`relay::RelayRules`](crate::relay::RelayRules)) both check through this
//! one type, so the relay refuses exactly what clients would refuse (less
//! the envelope signature, which only clients verify).
//!
//! What it keeps: every accepted roster (as signed), and for every room
//! epoch who was in it with which role, whether party members could post,
//! and — once a later roster ended it — each member's chain head at its end.

use std::collections::BTreeMap;

use crate::crypto::Digest;
use crate::envelope::Header;
use crate::error::Error;
use crate::identity::{Fingerprint, PublicIdentity};
use crate::ids::{RoomId, SessionId};
use crate::keys::KeyBundle;
use crate::roster::{ChainHead, Phase, Role, RoomKind, Roster, SignedRoster};
use crate::signed::Signed;

/// One epoch of one room, fixed by the roster that began it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    /// What the room is for.
    pub kind: RoomKind,
    /// Whether party members may post in it (a room opens or closes only
    /// with a new epoch).
    pub open: bool,
    /// Its members and their roles, by fingerprint in ascending order.
    pub members: Vec<(Fingerprint, Role)>,
    /// Set once a later roster ended the epoch: each member's chain head
    /// at its end (a member absent from it had sent nothing in the room).
    pub ended: Option<BTreeMap<Fingerprint, (u64, Digest)>>,
}

impl Epoch {
    /// The role `member` had in this epoch, if they were in it.
    pub fn role(&self, member: &Fingerprint) -> Option<Role> {
        self.members
            .binary_search_by(|(m, _)| m.cmp(member))
            .ok()
            .map(|i| self.members[i].1)
    }

    /// Whether this epoch's membership, roles, kind and openness equal `other`'s.
    fn same_room(&self, other: &Self) -> bool {
        self.kind == other.kind && self.open == other.open && self.members == other.members
    }
}

/// The rosters one session has accepted, oldest first, and what they fix.
#[derive(Debug, Clone)]
pub struct RosterHistory {
    session: SessionId,
    mediator: Fingerprint,
    rosters: Vec<SignedRoster>,
    /// For each accepted roster, by hash: the epoch of each of its rooms.
    accepted: BTreeMap<Digest, BTreeMap<RoomId, u64>>,
    epochs: BTreeMap<(RoomId, u64), Epoch>,
    identities: BTreeMap<Fingerprint, PublicIdentity>,
}

/// What [`RosterHistory::accept`] made of a roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RosterOutcome {
    /// The next version: accepted.
    Accepted,
    /// A version already held, byte for byte: nothing to do.
    AlreadyHeld,
}

impl RosterHistory {
    /// An empty history of `session`, whose rosters `mediator` must sign.
    pub fn new(session: SessionId, mediator: Fingerprint) -> Self {
        Self {
            session,
            mediator,
            rosters: Vec::new(),
            accepted: BTreeMap::new(),
            epochs: BTreeMap::new(),
            identities: BTreeMap::new(),
        }
    }

    /// The session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The pinned lead mediator.
    pub fn mediator(&self) -> Fingerprint {
        self.mediator
    }

    /// The newest accepted roster, as signed.
    pub fn signed(&self) -> Option<&SignedRoster> {
        self.rosters.last()
    }

    /// The newest accepted roster.
    pub fn current(&self) -> Result<&Roster, Error> {
        self.rosters
            .last()
            .map(Signed::unverified)
            .ok_or(Error::NoRoster)
    }

    /// Every accepted roster as signed, oldest first.
    pub fn all(&self) -> &[SignedRoster] {
        &self.rosters
    }

    /// Whether the roster whose hash is `roster` was accepted.
    pub fn is_accepted(&self, roster: &Digest) -> bool {
        self.accepted.contains_key(roster)
    }

    /// The epoch `epoch` of `room`, if an accepted roster began it.
    pub fn epoch(&self, room: &RoomId, epoch: u64) -> Option<&Epoch> {
        self.epochs.get(&(*room, epoch))
    }

    /// The public identity behind `member`, from any accepted roster.
    pub fn identity(&self, member: &Fingerprint) -> Option<&PublicIdentity> {
        self.identities.get(member)
    }

    /// Accept `signed` as the next roster, or recognise it as one already
    /// held. It must be signed by the pinned mediator, well formed, for this
    /// session, the next version naming the held one's hash, and follow the
    /// held one by the rules of a roster's successor (protocol.md 7.6):
    /// no epoch goes back; a room's members, their roles and its openness
    /// change only with a new epoch; the phase never goes back and nothing
    /// follows `Closed`; and the chain heads are given for exactly the
    /// members of the epochs it ends.
    pub fn accept(&mut self, signed: SignedRoster) -> Result<RosterOutcome, Error> {
        let roster = signed.verify(&self.mediator)?;
        if roster.session != self.session {
            return Err(Error::WrongSession);
        }
        let held = self.rosters.last();
        let held_version = held.map_or(0, |h| h.unverified().version);
        if roster.version <= held_version {
            let index = usize::try_from(roster.version - 1).map_err(|_| Error::RosterChain)?;
            if self.rosters.get(index).map(Signed::hash) == Some(signed.hash()) {
                return Ok(RosterOutcome::AlreadyHeld);
            }
            return Err(Error::StaleRoster {
                held: held_version,
                got: roster.version,
            });
        }
        if roster.version != held_version + 1
            || roster.previous != held.map_or(Digest::ZERO, Signed::hash)
        {
            return Err(Error::RosterChain);
        }
        let ended = self.check_successor(held.map(Signed::unverified), roster)?;
        // Every check passed: record it.
        for ((room, epoch), heads) in ended {
            if let Some(e) = self.epochs.get_mut(&(room, epoch)) {
                e.ended = Some(heads);
            }
        }
        for room in &roster.rooms {
            self.epochs
                .entry((room.id, room.epoch))
                .or_insert_with(|| epoch_of(roster, room));
        }
        for m in &roster.members {
            self.identities.insert(m.id(), m.identity.clone());
        }
        self.accepted.insert(
            signed.hash(),
            roster.rooms.iter().map(|r| (r.id, r.epoch)).collect(),
        );
        self.rosters.push(signed);
        Ok(RosterOutcome::Accepted)
    }

    /// The rules between the held roster and its successor; returns the
    /// epochs `next` ends, each with its members' chain heads.
    #[allow(clippy::type_complexity)]
    fn check_successor(
        &self,
        held: Option<&Roster>,
        next: &Roster,
    ) -> Result<Vec<((RoomId, u64), BTreeMap<Fingerprint, (u64, Digest)>)>, Error> {
        use Error::InvalidRoster as Bad;
        if let Some(held) = held {
            if held.phase == Phase::Closed {
                return Err(Bad("nothing follows a closed session's roster"));
            }
            if next.phase < held.phase {
                return Err(Bad("the phase went back"));
            }
        }
        for room in &next.rooms {
            let newest = self
                .epochs
                .range((room.id, 0)..=(room.id, u64::MAX))
                .next_back();
            match newest {
                Some(((_, e), _)) if room.epoch < *e => {
                    return Err(Bad("a room's epoch went backwards"));
                }
                Some(((_, e), known))
                    if room.epoch == *e && !known.same_room(&epoch_of(next, room)) =>
                {
                    return Err(Bad(
                        "a room's members, their roles or its openness changed without a new epoch",
                    ));
                }
                Some(((_, e), _)) if room.epoch == *e => {}
                Some(((_, e), _)) if room.epoch != e + 1 => {
                    return Err(Bad("a room's epoch moves on by one"));
                }
                None if room.epoch != 1 => return Err(Bad("epochs start at 1")),
                _ => {}
            }
        }
        // The epochs this roster ends: each room of the held roster that it
        // removes or moves to a new epoch.
        let mut ended = Vec::new();
        for room in held.map_or(&[][..], |h| &h.rooms) {
            let continues = next.room(&room.id).is_some_and(|r| r.epoch == room.epoch);
            if !continues {
                ended.push(((room.id, room.epoch), BTreeMap::new()));
            }
        }
        for ChainHead {
            room,
            member,
            seq,
            hash,
        } in &next.heads
        {
            let slot = ended
                .iter_mut()
                .find(|((r, _), _)| r == room)
                .ok_or(Bad("a chain head for a room whose epoch did not end"))?;
            let was_member = self
                .epochs
                .get(&slot.0)
                .is_some_and(|e| e.role(member).is_some());
            if !was_member {
                return Err(Bad("a chain head for someone not in the ended epoch"));
            }
            slot.1.insert(*member, (*seq, *hash));
        }
        Ok(ended)
    }

    /// Check a key bundle against the rosters: for this session, naming an
    /// accepted roster in which the room has the bundle's epoch, and sealed
    /// to exactly that epoch's members, once each. Returns the epoch.
    /// (The bundle's signature is checked by whoever decoded it.)
    pub fn check_bundle(&self, bundle: &KeyBundle) -> Result<&Epoch, Error> {
        if bundle.session != self.session {
            return Err(Error::WrongSession);
        }
        let epochs = self
            .accepted
            .get(&bundle.roster)
            .ok_or(Error::BundleMismatch("names a roster not accepted"))?;
        if epochs.get(&bundle.room) != Some(&bundle.epoch) {
            return Err(Error::BundleMismatch("room or epoch not in that roster"));
        }
        let epoch = self
            .epochs
            .get(&(bundle.room, bundle.epoch))
            .ok_or(Error::UnknownEpoch {
                epoch: bundle.epoch,
            })?;
        let covers = bundle.entries.len() == epoch.members.len()
            && epoch
                .members
                .iter()
                .all(|(m, _)| bundle.entries.iter().any(|e| &e.recipient == m));
        if !covers {
            return Err(Error::BundleMismatch(
                "not sealed to exactly the room's members, once each",
            ));
        }
        Ok(epoch)
    }

    /// The rules an envelope's header must keep at its epoch, whoever
    /// checks it: for this session, an epoch an accepted roster began, a
    /// sender who was in the room then, a room open to party members then
    /// (or a mediator sending), and — when a later roster ended the epoch —
    /// a sequence number no later than the sender's chain head at its end.
    /// Returns the epoch and the sender's role in it.
    pub fn check_header(&self, header: &Header, hash: &Digest) -> Result<(&Epoch, Role), Error> {
        if header.session != self.session {
            return Err(Error::WrongSession);
        }
        let epoch = self
            .epochs
            .get(&(header.room, header.epoch))
            .ok_or(Error::UnknownEpoch {
                epoch: header.epoch,
            })?;
        let role = epoch.role(&header.sender).ok_or(Error::NotAMember)?;
        if !epoch.open && !role.is_mediator() {
            return Err(Error::RoomClosed);
        }
        if let Some(heads) = &epoch.ended {
            let (last, last_hash) = heads
                .get(&header.sender)
                .copied()
                .unwrap_or((0, Digest::ZERO));
            if header.seq > last {
                return Err(Error::AfterEpochEnded { seq: header.seq });
            }
            if header.seq == last && *hash != last_hash {
                return Err(Error::Fork { seq: header.seq });
            }
        }
        Ok((epoch, role))
    }

    /// Where `sender`'s chain in `room` stood before `epoch` began, as the
    /// roster that began it recorded: the base from which a member who
    /// joined the room at `epoch` follows that chain.
    pub fn head_before(
        &self,
        room: &RoomId,
        epoch: u64,
        sender: &Fingerprint,
    ) -> Option<(u64, Digest)> {
        let before = epoch.checked_sub(1)?;
        self.epochs
            .get(&(*room, before))?
            .ended
            .as_ref()?
            .get(sender)
            .copied()
    }
}

fn epoch_of(roster: &Roster, room: &crate::roster::Room) -> Epoch {
    Epoch {
        kind: room.kind,
        open: room.open,
        members: room
            .members
            .iter()
            .filter_map(|id| roster.member(id).map(|m| (*id, m.role)))
            .collect(),
        ended: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::builder::RosterBuilder;
    use crate::identity::DeviceKeys;
    use crate::keys::RoomKey;
    use crate::session::SessionView;

    /// A bundle that leaves out one of the room's members, or names one
    /// twice, is refused by clients and the relay alike (one check).
    #[test]
    fn a_key_bundle_is_sealed_to_exactly_the_rooms_members_once_each() {
        let mediator = DeviceKeys::generate().unwrap();
        let member = DeviceKeys::generate().unwrap();
        let session = SessionId::random().unwrap();
        let mut view = SessionView::new(session, mediator.fingerprint());
        let mut builder = RosterBuilder::new(session, &mediator, "M").unwrap();
        let party = builder.add_party("P").unwrap();
        builder
            .add_member(member.public(), Role::PartyMember, Some(party), "A")
            .unwrap();
        let (roster, _) = builder.sign(&mediator, &view).unwrap();
        view.accept_roster(roster.clone()).unwrap();
        let room = roster.unverified().private_room(&party).unwrap().id;
        let key = RoomKey::generate(room, 1).unwrap();
        let history = view.history();
        let short = KeyBundle::seal(session, roster.hash(), &key, &[mediator.public()]).unwrap();
        assert!(matches!(
            history.check_bundle(&short),
            Err(Error::BundleMismatch(_))
        ));
        let twice = KeyBundle::seal(
            session,
            roster.hash(),
            &key,
            &[mediator.public(), mediator.public()],
        )
        .unwrap();
        assert!(matches!(
            history.check_bundle(&twice),
            Err(Error::BundleMismatch(_))
        ));
        let whole = KeyBundle::seal(
            session,
            roster.hash(),
            &key,
            &[mediator.public(), member.public()],
        )
        .unwrap();
        assert!(history.check_bundle(&whole).is_ok());
    }
}
