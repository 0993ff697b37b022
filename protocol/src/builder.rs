//! The mediator's side of rosters: a builder that keeps a session's
//! membership, starts a new key epoch for every room whose membership
//! changes, and signs each version as the next link of the roster chain.

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::Digest;
use crate::error::Error;
use crate::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use crate::ids::{PartyId, RoomId, SessionId};
use crate::keys::{RoomKey, SealedLabel};
use crate::roster::{ChainHead, Member, Party, Phase, Role, Room, RoomKind, Roster, SignedRoster};
use crate::session::SessionView;

/// Builds and signs successive rosters of one session, as its lead mediator.
///
/// Edit the draft with the methods below, then [`RosterBuilder::sign`]: it
/// bumps the epoch of every room whose membership changed, makes a fresh
/// [`RoomKey`] for each, re-seals every party label and member name under the
/// joint room's current key, and signs the result as the next version.
#[derive(Debug)]
pub struct RosterBuilder {
    draft: Roster,
    /// Each room as last signed: what, changed, starts a new epoch.
    signed_rooms: BTreeMap<RoomId, RoomShape>,
    last_hash: Option<Digest>,
    /// Plaintext labels and names, by subject (party id or fingerprint bytes).
    labels: BTreeMap<Vec<u8>, String>,
    keys: BTreeMap<RoomId, RoomKey>,
}

impl RosterBuilder {
    /// Start a session's roster with `mediator` (named `name`) as lead
    /// mediator, and a joint room holding only the mediator, closed until the
    /// mediator opens it.
    pub fn new(session: SessionId, mediator: &DeviceKeys, name: &str) -> Result<Self, Error> {
        let joint = RoomId::random()?;
        let id = mediator.fingerprint();
        let mut labels = BTreeMap::new();
        labels.insert(id.0.to_vec(), name.to_owned());
        Ok(Self {
            draft: Roster {
                session,
                version: 0,
                previous: Digest::ZERO,
                phase: Phase::Preparation,
                parties: Vec::new(),
                members: vec![Member {
                    identity: mediator.public().clone(),
                    role: Role::Mediator,
                    party: None,
                    name: placeholder_label(),
                }],
                rooms: vec![Room {
                    id: joint,
                    kind: RoomKind::Joint,
                    open: false,
                    epoch: 0,
                    members: vec![id],
                }],
                heads: Vec::new(),
            },
            signed_rooms: BTreeMap::new(),
            last_hash: None,
            labels,
            keys: BTreeMap::new(),
        })
    }

    /// Pick up where the last signed roster left off, from the lead
    /// mediator's own view (after a restart, say): the view's newest roster
    /// becomes the draft, its labels are opened with the joint room's key,
    /// and the current room keys are taken from the view.
    pub fn resume(view: &SessionView) -> Result<Self, Error> {
        let signed = view.signed_roster().ok_or(Error::NoRoster)?;
        let draft = view.roster().ok_or(Error::NoRoster)?.clone();
        let mut labels = BTreeMap::new();
        for p in &draft.parties {
            labels.insert(p.id.0.to_vec(), view.open_label(&p.label, &p.id.0)?);
        }
        for m in &draft.members {
            let id = m.id();
            labels.insert(id.0.to_vec(), view.open_label(&m.name, &id.0)?);
        }
        let mut keys = BTreeMap::new();
        for room in &draft.rooms {
            let key = view
                .room_key(&room.id, room.epoch)
                .ok_or(Error::MissingRoomKey { epoch: room.epoch })?;
            keys.insert(room.id, key.clone());
        }
        Ok(Self {
            signed_rooms: shapes(&draft),
            last_hash: Some(signed.hash()),
            draft,
            labels,
            keys,
        })
    }

    /// The draft as edited so far.
    pub fn draft(&self) -> &Roster {
        &self.draft
    }

    fn mediators(&self) -> Vec<Fingerprint> {
        self.draft
            .members
            .iter()
            .filter(|m| m.role.is_mediator())
            .map(Member::id)
            .collect()
    }

    fn room_mut(&mut self, room: &RoomId) -> Result<&mut Room, Error> {
        self.draft
            .rooms
            .iter_mut()
            .find(|r| &r.id == room)
            .ok_or(Error::UnknownRoom)
    }

    /// Add a party, labelled `label`, with its private room (holding the
    /// mediators), open.
    pub fn add_party(&mut self, label: &str) -> Result<PartyId, Error> {
        let id = PartyId::random()?;
        self.labels.insert(id.0.to_vec(), label.to_owned());
        self.draft.parties.push(Party {
            id,
            label: placeholder_label(),
            withdrawn: false,
        });
        let mut members = self.mediators();
        members.sort();
        self.draft.rooms.push(Room {
            id: RoomId::random()?,
            kind: RoomKind::Private(id),
            open: true,
            epoch: 0,
            members,
        });
        Ok(id)
    }

    /// Add a member: a party member joins their party's private room and the
    /// joint room; a co-mediator joins every room.
    pub fn add_member(
        &mut self,
        identity: &PublicIdentity,
        role: Role,
        party: Option<PartyId>,
        name: &str,
    ) -> Result<(), Error> {
        let id = identity.fingerprint();
        if self.draft.member(&id).is_some() {
            return Err(Error::InvalidRoster("already a member"));
        }
        if role == Role::Mediator {
            return Err(Error::InvalidRoster("a session has one lead mediator"));
        }
        let party_known = party.is_some_and(|p| self.draft.party(&p).is_some());
        if role.is_mediator() == party.is_some() || (party.is_some() && !party_known) {
            return Err(Error::InvalidRoster(
                "a party member needs a known party; a mediator has none",
            ));
        }
        self.draft.members.push(Member {
            identity: identity.clone(),
            role,
            party,
            name: placeholder_label(),
        });
        self.labels.insert(id.0.to_vec(), name.to_owned());
        let withdrawn = party
            .and_then(|p| self.draft.party(&p))
            .is_some_and(|p| p.withdrawn);
        for room in &mut self.draft.rooms {
            let joins = match room.kind {
                _ if role.is_mediator() => true,
                RoomKind::Joint => !withdrawn,
                RoomKind::Private(p) => Some(p) == party,
                RoomKind::Side => false,
            };
            if joins {
                insert_sorted(&mut room.members, id);
            }
        }
        Ok(())
    }

    /// Remove a member from the session and from every room.
    pub fn remove_member(&mut self, id: &Fingerprint) -> Result<(), Error> {
        let before = self.draft.members.len();
        self.draft
            .members
            .retain(|m| &m.id() != id || m.role == Role::Mediator);
        if self.draft.members.len() == before {
            return Err(Error::InvalidRoster("not a removable member"));
        }
        for room in &mut self.draft.rooms {
            room.members.retain(|m| m != id);
        }
        self.labels.remove(id.0.as_slice());
        Ok(())
    }

    /// Open a room to posting by its party members, or close it.
    pub fn set_open(&mut self, room: &RoomId, open: bool) -> Result<(), Error> {
        self.room_mut(room)?.open = open;
        Ok(())
    }

    /// Create a side room for `members` (the mediators are always in it).
    pub fn add_side_room(&mut self, members: &[Fingerprint]) -> Result<RoomId, Error> {
        let mut set: BTreeSet<Fingerprint> = self.mediators().into_iter().collect();
        for m in members {
            if self.draft.member(m).is_none() {
                return Err(Error::NotAMember);
            }
            set.insert(*m);
        }
        let id = RoomId::random()?;
        self.draft.rooms.push(Room {
            id,
            kind: RoomKind::Side,
            open: true,
            epoch: 0,
            members: set.into_iter().collect(),
        });
        Ok(id)
    }

    /// Close and remove a side room.
    pub fn remove_side_room(&mut self, room: &RoomId) -> Result<(), Error> {
        let before = self.draft.rooms.len();
        self.draft
            .rooms
            .retain(|r| !(&r.id == room && r.kind == RoomKind::Side));
        if self.draft.rooms.len() == before {
            return Err(Error::UnknownRoom);
        }
        self.keys.remove(room);
        Ok(())
    }

    /// Set the phase.
    pub fn set_phase(&mut self, phase: Phase) {
        self.draft.phase = phase;
    }

    /// Mark a party withdrawn (or back). A withdrawn party's members leave
    /// the joint room and every side room (at the next epoch, so they read
    /// nothing new there); they keep their private room. Back, they rejoin
    /// the joint room.
    pub fn set_withdrawn(&mut self, party: &PartyId, withdrawn: bool) -> Result<(), Error> {
        let p = self
            .draft
            .parties
            .iter_mut()
            .find(|p| &p.id == party)
            .ok_or(Error::InvalidRoster("unknown party"))?;
        p.withdrawn = withdrawn;
        let members: Vec<Fingerprint> = self
            .draft
            .members
            .iter()
            .filter(|m| m.party == Some(*party))
            .map(Member::id)
            .collect();
        for room in &mut self.draft.rooms {
            match room.kind {
                RoomKind::Joint if !withdrawn => {
                    members
                        .iter()
                        .for_each(|m| insert_sorted(&mut room.members, *m));
                }
                RoomKind::Joint | RoomKind::Side if withdrawn => {
                    room.members.retain(|m| !members.contains(m));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The current key of `room`, as made by the last [`RosterBuilder::sign`].
    pub fn room_key(&self, room: &RoomId) -> Option<&RoomKey> {
        self.keys.get(room)
    }

    /// Sign the draft as the next version. Every room whose members, their
    /// roles or its openness changed starts a new epoch, and for each epoch
    /// this ends (a room changed or removed) the roster records the chain
    /// head of every member who sent anything there, as `seen` — the lead
    /// mediator's own view, caught up — has followed it. Returns the signed
    /// roster and the fresh keys of every room whose epoch it began, to be
    /// sealed to their members with
    /// [`SessionView::seal_key_bundle`](crate::session::SessionView::seal_key_bundle).
    pub fn sign(
        &mut self,
        mediator: &DeviceKeys,
        seen: &SessionView,
    ) -> Result<(SignedRoster, Vec<RoomKey>), Error> {
        let mut draft = self.draft.clone();
        draft.version += 1;
        draft.previous = self.last_hash.unwrap_or(Digest::ZERO);
        let now = shapes(&draft);
        let mut fresh = Vec::new();
        for room in &mut draft.rooms {
            if self.signed_rooms.get(&room.id) != now.get(&room.id) {
                room.epoch += 1;
                fresh.push(RoomKey::generate(room.id, room.epoch)?);
            }
        }
        draft.heads = Vec::new();
        for (room, before) in &self.signed_rooms {
            if now.get(room) == Some(before) {
                continue;
            }
            for (member, _) in &before.members {
                let (seq, hash) = seen.chain_head(room, member);
                if seq > 0 {
                    draft.heads.push(ChainHead {
                        room: *room,
                        member: *member,
                        seq,
                        hash,
                    });
                }
            }
        }
        draft.heads.sort();
        let mut keys = self.keys.clone();
        for key in &fresh {
            keys.insert(key.room(), key.clone());
        }
        let joint_id = draft
            .joint_room()
            .map(|r| r.id)
            .ok_or(Error::InvalidRoster("exactly one joint room"))?;
        let joint = keys.get(&joint_id).ok_or(Error::UnknownRoom)?;
        let session = draft.session;
        let text = |subject: &[u8]| self.labels.get(subject).map_or("", String::as_str);
        for p in &mut draft.parties {
            p.label = SealedLabel::seal(joint, &session, &p.id.0, text(&p.id.0))?;
        }
        for m in &mut draft.members {
            let id = m.id();
            m.name = SealedLabel::seal(joint, &session, &id.0, text(&id.0))?;
        }
        let signed = SignedRoster::sign_roster(draft.clone(), mediator)?;
        // Only now that it is signed does the builder move on.
        self.signed_rooms = shapes(&draft);
        self.last_hash = Some(signed.hash());
        self.draft = draft;
        self.keys = keys;
        Ok((signed, fresh))
    }
}

/// What fixes a room's epoch: its members with their roles, and whether
/// party members may post.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoomShape {
    members: Vec<(Fingerprint, Role)>,
    open: bool,
}

fn shapes(roster: &Roster) -> BTreeMap<RoomId, RoomShape> {
    roster
        .rooms
        .iter()
        .map(|r| {
            let members = r
                .members
                .iter()
                .filter_map(|id| roster.member(id).map(|m| (*id, m.role)))
                .collect();
            (
                r.id,
                RoomShape {
                    members,
                    open: r.open,
                },
            )
        })
        .collect()
}

fn placeholder_label() -> SealedLabel {
    SealedLabel {
        epoch: 0,
        salt: [0; 16],
        ciphertext: Vec::new(),
    }
}

fn insert_sorted(list: &mut Vec<Fingerprint>, id: Fingerprint) {
    if let Err(at) = list.binary_search(&id) {
        list.insert(at, id);
    }
}
