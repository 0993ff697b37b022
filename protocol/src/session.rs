//! One client's verified view of one session: the rosters it accepted, the
//! room keys it holds and every sender's hash chain. This is where rosters,
//! key bundles and envelopes from the (untrusted) relay are checked; nothing
//! leaves it as content unless every check passed.
//!
//! A chain is kept in a size that does not grow with the messages: the
//! sequence numbers seen, as runs, and the links at the edges of each run,
//! which are all that checking a new message needs (`session/chain.rs`).

mod chain;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use zeroize::Zeroizing;

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::content::{Content, ContentClass, Forward, ForwardMode, ShareReceipt, Sharing};
use crate::crypto::Digest;
use crate::envelope::{Envelope, Header};
use crate::error::Error;
use crate::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use crate::ids::{RoomId, SessionId};
use crate::keys::{KeyBundle, RoomKey, SealedLabel, SignedKeyBundle};
use crate::offer::{CarriedOffer, Offer};
use crate::roster::{Role, RoomKind, Roster, SignedRoster};
use crate::signed::Signed;
use chain::Chain;

/// A message that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Its header.
    pub header: Header,
    /// Its envelope hash, by which forwards and consents name it.
    pub hash: Digest,
    /// The decrypted content.
    pub content: Content,
    /// Sequence numbers of this sender in this room that have not been seen
    /// and now never can be in order: messages the relay dropped or has not
    /// delivered yet. Show the user that something is missing.
    pub gap: Option<RangeInclusive<u64>>,
}

impl Opened {
    /// As a mediator: carry this message to `destination`, verbatim or (with
    /// `reframed`) in the mediator's own words, and the share receipt for its
    /// room. Only text is carried. *Mediator only* text is carried only with
    /// `consent`: a consent its own author posted in the same room naming
    /// this message.
    pub fn forward(
        &self,
        destination: RoomId,
        reframed: Option<String>,
        consent: Option<&Opened>,
    ) -> Result<(Forward, ShareReceipt), Error> {
        let Content::Text { sharing, body } = &self.content else {
            return Err(Error::NotPermitted("only text is forwarded"));
        };
        if let Some(c) = consent {
            let names_this = c.content == Content::Consent { message: self.hash };
            if !names_this
                || c.header.sender != self.header.sender
                || c.header.room != self.header.room
            {
                return Err(Error::NotPermitted(
                    "the consent is not its author's for this message",
                ));
            }
        }
        if *sharing == Sharing::MediatorOnly && consent.is_none() {
            return Err(Error::NotPermitted(
                "mediator-only content is forwarded only with its author's consent",
            ));
        }
        let mode = mode_of(reframed.is_some());
        let text = reframed.unwrap_or_else(|| body.clone());
        let receipt = self.receipt(destination, mode, text.clone());
        Ok((
            Forward {
                source_room: self.header.room,
                source_message: self.hash,
                mode,
                text,
                author_consented: consent.is_some(),
            },
            receipt,
        ))
    }

    /// Carry this offer to `destination`: verbatim, or as `restated` in the
    /// mediator's terms. An offer needs no separate consent: making it is
    /// asking the mediator to carry it.
    pub fn carry_offer(
        &self,
        destination: RoomId,
        restated: Option<Offer>,
    ) -> Result<(CarriedOffer, ShareReceipt), Error> {
        let Content::Offer(offer) = &self.content else {
            return Err(Error::NotPermitted("only an offer is carried as an offer"));
        };
        if destination == self.header.room {
            return Err(Error::NotPermitted("an offer is carried to another room"));
        }
        if let Some(o) = &restated {
            o.validate()?;
        }
        let mode = mode_of(restated.is_some());
        let offer = restated.unwrap_or_else(|| offer.clone());
        let receipt = self.receipt(destination, mode, offer.summary());
        Ok((
            CarriedOffer {
                source_room: self.header.room,
                source_message: self.hash,
                mode,
                offer,
            },
            receipt,
        ))
    }

    fn receipt(&self, destination: RoomId, mode: ForwardMode, text: String) -> ShareReceipt {
        ShareReceipt {
            source_message: self.hash,
            destination_room: destination,
            mode,
            text,
        }
    }
}

fn mode_of(reframed: bool) -> ForwardMode {
    if reframed {
        ForwardMode::Reframed
    } else {
        ForwardMode::Verbatim
    }
}

/// Who was in a room at one epoch, fixed by the roster that began it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Epoch {
    kind: RoomKind,
    members: Vec<Fingerprint>,
}

/// A client's verified state for one session.
#[derive(Debug, Clone)]
pub struct SessionView {
    session: SessionId,
    mediator: Fingerprint,
    /// Every accepted roster, oldest first.
    history: Vec<SignedRoster>,
    /// For each accepted roster, by hash: the epoch of each of its rooms.
    accepted: BTreeMap<Digest, BTreeMap<RoomId, u64>>,
    epochs: BTreeMap<(RoomId, u64), Epoch>,
    identities: BTreeMap<Fingerprint, (PublicIdentity, Role)>,
    keys: BTreeMap<(RoomId, u64), RoomKey>,
    chains: BTreeMap<(RoomId, Fingerprint), Chain>,
}

impl SessionView {
    /// A view of `session` whose rosters must be signed by `mediator` — the
    /// fingerprint pinned from the invite link, or the mediator's own.
    pub fn new(session: SessionId, mediator: Fingerprint) -> Self {
        Self {
            session,
            mediator,
            history: Vec::new(),
            accepted: BTreeMap::new(),
            epochs: BTreeMap::new(),
            identities: BTreeMap::new(),
            keys: BTreeMap::new(),
            chains: BTreeMap::new(),
        }
    }

    /// The session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The pinned mediator.
    pub fn mediator(&self) -> Fingerprint {
        self.mediator
    }

    /// The newest accepted roster.
    pub fn roster(&self) -> Option<&Roster> {
        self.history.last().map(Signed::unverified)
    }

    /// Every accepted roster, oldest first.
    pub fn rosters(&self) -> impl DoubleEndedIterator<Item = &Roster> {
        self.history.iter().map(Signed::unverified)
    }

    /// The newest accepted roster as signed.
    pub fn signed_roster(&self) -> Option<&SignedRoster> {
        self.history.last()
    }

    /// Whether the roster whose hash is `roster` is one this view accepted.
    pub fn is_accepted(&self, roster: &Digest) -> bool {
        self.accepted.contains_key(roster)
    }

    /// The room key held for `room` at `epoch`.
    pub fn room_key(&self, room: &RoomId, epoch: u64) -> Option<&RoomKey> {
        self.keys.get(&(*room, epoch))
    }

    /// Open a party label or member name from the roster (`subject` is the
    /// party id's or the member fingerprint's bytes), with the joint room key
    /// of the label's epoch.
    pub fn open_label(&self, label: &SealedLabel, subject: &[u8]) -> Result<String, Error> {
        let joint = self
            .current()?
            .joint_room()
            .ok_or(Error::InvalidRoster("exactly one joint room"))?;
        let key = self
            .keys
            .get(&(joint.id, label.epoch))
            .ok_or(Error::MissingRoomKey { epoch: label.epoch })?;
        label.open(key, &self.session, subject)
    }

    /// Accept `signed` as the session's new roster, if the pinned mediator
    /// signed it, it is well formed, it is the next version after the one
    /// held (version 1 first) and names the held one's hash, and it changes
    /// no room's membership without a new epoch.
    pub fn accept_roster(&mut self, signed: SignedRoster) -> Result<&Roster, Error> {
        let roster = signed.verify(&self.mediator)?;
        if roster.session != self.session {
            return Err(Error::WrongSession);
        }
        // Rosters are accepted one version at a time, each naming the hash of
        // the one before, so a client has checked every link of the chain.
        let (held_version, held_hash) = self
            .history
            .last()
            .map_or((0, Digest::ZERO), |h| (h.unverified().version, h.hash()));
        if roster.version <= held_version {
            return Err(Error::StaleRoster {
                held: held_version,
                got: roster.version,
            });
        }
        if roster.version != held_version + 1 || roster.previous != held_hash {
            return Err(Error::RosterChain);
        }
        for room in &roster.rooms {
            let newest = self
                .epochs
                .range((room.id, 0)..=(room.id, u64::MAX))
                .next_back();
            match newest {
                Some(((_, e), _)) if room.epoch < *e => {
                    return Err(Error::InvalidRoster("a room's epoch went backwards"));
                }
                Some(((_, e), known))
                    if room.epoch == *e
                        && (known.members != room.members || known.kind != room.kind) =>
                {
                    return Err(Error::InvalidRoster(
                        "a room's membership changed without a new epoch",
                    ));
                }
                _ => {}
            }
        }
        // Every check passed: record it.
        for room in &roster.rooms {
            self.epochs.entry((room.id, room.epoch)).or_insert(Epoch {
                kind: room.kind,
                members: room.members.clone(),
            });
        }
        for m in &roster.members {
            self.identities.insert(m.id(), (m.identity.clone(), m.role));
        }
        self.accepted.insert(
            signed.hash(),
            roster.rooms.iter().map(|r| (r.id, r.epoch)).collect(),
        );
        self.history.push(signed);
        self.roster().ok_or(Error::NoRoster)
    }

    fn current(&self) -> Result<&Roster, Error> {
        self.roster().ok_or(Error::NoRoster)
    }

    fn lead_identity(&self) -> Result<&PublicIdentity, Error> {
        self.identities
            .get(&self.mediator)
            .map(|(identity, _)| identity)
            .ok_or(Error::NoRoster)
    }

    /// As the lead mediator: seal `key` (made by
    /// [`RosterBuilder::sign`](crate::builder::RosterBuilder::sign) for a
    /// room's current epoch) to exactly that room's members in the current
    /// roster, and hold it. Sealing the same epoch again (to re-deliver it)
    /// must use the same key.
    pub fn seal_key_bundle(
        &mut self,
        mediator: &DeviceKeys,
        key: &RoomKey,
    ) -> Result<SignedKeyBundle, Error> {
        if mediator.fingerprint() != self.mediator {
            return Err(Error::NotPermitted(
                "only the lead mediator seals room keys",
            ));
        }
        let signed = self.history.last().ok_or(Error::NoRoster)?;
        let roster = signed.unverified();
        let room = roster.room(&key.room()).ok_or(Error::UnknownRoom)?;
        if room.epoch != key.epoch() {
            return Err(Error::UnknownEpoch { epoch: key.epoch() });
        }
        let slot = (room.id, room.epoch);
        if self.keys.get(&slot).is_some_and(|held| held != key) {
            return Err(Error::BundleMismatch("another key is held for this epoch"));
        }
        let recipients: Vec<&PublicIdentity> = room
            .members
            .iter()
            .filter_map(|id| roster.member(id).map(|m| &m.identity))
            .collect();
        let bundle = KeyBundle::seal(self.session, signed.hash(), key, &recipients)?;
        self.keys.insert(slot, key.clone());
        Ok(Signed::sign(bundle, mediator))
    }

    /// Check a key bundle and open this device's copy: signed by the pinned
    /// mediator, for this session, naming an accepted roster in which the
    /// room has that epoch, sealed only to that epoch's members, and holding
    /// a copy for `me` that opens with the bound HPKE `info`.
    pub fn open_key_bundle(
        &mut self,
        me: &DeviceKeys,
        signed: &SignedKeyBundle,
    ) -> Result<&RoomKey, Error> {
        let bundle = signed.verify_by(self.lead_identity()?)?;
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
        if !epoch.members.contains(&me.fingerprint()) {
            return Err(Error::NotARecipient);
        }
        if !bundle
            .entries
            .iter()
            .all(|e| epoch.members.contains(&e.recipient))
        {
            return Err(Error::BundleMismatch("sealed to someone outside the room"));
        }
        let key = bundle.open(me)?;
        let held = self
            .keys
            .entry((bundle.room, bundle.epoch))
            .or_insert_with(|| key.clone());
        if *held != key {
            return Err(Error::BundleMismatch("another key is held for this epoch"));
        }
        Ok(held)
    }

    /// Seal `content` from `me` into `room` at its current epoch, as the next
    /// link of `me`'s chain there. Refuses what the roster does not allow:
    /// a room `me` is not in, a closed room for a party member, content `me`'s
    /// role may not send.
    pub fn seal(
        &mut self,
        me: &DeviceKeys,
        room: &RoomId,
        content: &Content,
    ) -> Result<Envelope, Error> {
        let roster = self.current()?;
        let sender = me.fingerprint();
        let r = roster.room(room).ok_or(Error::UnknownRoom)?;
        if !r.has(&sender) {
            return Err(Error::NotAMember);
        }
        let role = roster.member(&sender).ok_or(Error::NotAMember)?.role;
        if !r.open && !role.is_mediator() {
            return Err(Error::NotPermitted("the room is closed"));
        }
        content.content_type().check_sender(role, r.kind)?;
        let epoch = r.epoch;
        let key = self
            .keys
            .get(&(*room, epoch))
            .ok_or(Error::MissingRoomKey { epoch })?;
        let chain = self.chains.entry((*room, sender)).or_default();
        let (seq, previous) = chain.next();
        let header = Header {
            session: self.session,
            room: *room,
            epoch,
            sender,
            seq,
            previous,
            class: ContentClass::of(role),
            salt: crate::crypto::random_array()?,
        };
        let envelope = Envelope::seal(me, key, header, content)?;
        chain.link(seq, previous, envelope.hash())?;
        Ok(envelope)
    }

    /// Verify and decrypt an envelope from the relay. Checks, in order: the
    /// session; that the epoch is known and its key held; that the sender
    /// was a member of the room at that epoch; the sender's signature; that
    /// the header's class is the sender's role's; the decryption, padding
    /// and content; that the sender's role may send that content type in
    /// this room; and the sender's chain (no replay, links that match). Only then is the message recorded and returned.
    pub fn open(&mut self, envelope: &Envelope) -> Result<Opened, Error> {
        let h = envelope.header();
        if h.session != self.session {
            return Err(Error::WrongSession);
        }
        let epoch = self
            .epochs
            .get(&(h.room, h.epoch))
            .ok_or(Error::UnknownEpoch { epoch: h.epoch })?;
        let key = self
            .keys
            .get(&(h.room, h.epoch))
            .ok_or(Error::MissingRoomKey { epoch: h.epoch })?;
        if !epoch.members.contains(&h.sender) {
            return Err(Error::NotAMember);
        }
        let (identity, role) = self.identities.get(&h.sender).ok_or(Error::NotAMember)?;
        envelope.verify(identity)?;
        h.class.check(*role)?;
        let content = envelope.decrypt(key)?;
        content.content_type().check_sender(*role, epoch.kind)?;
        let hash = envelope.hash();
        let gap = self
            .chains
            .entry((h.room, h.sender))
            .or_default()
            .link(h.seq, h.previous, hash)?;
        Ok(Opened {
            header: h.clone(),
            hash,
            content,
            gap,
        })
    }
}

/// The version of [`SessionView::to_state_bytes`]'s layout: 2 keeps each
/// chain as runs of sequence numbers, 1 kept every link.
const STATE_VERSION: u16 = 2;

impl SessionView {
    /// Everything the view holds, for a client to store between runs: the
    /// accepted rosters (as signed), the room keys and every sender's chain.
    /// It contains room keys: keep it as secret as the device's own keys.
    ///
    /// Its size grows with the rosters, rooms, epochs and senders, not with
    /// the number of messages: a chain is kept as the runs of sequence
    /// numbers seen, one run plus one for each hole a late message may
    /// still fill, with the links at each run's edges.
    pub fn to_state_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new();
        w.u16(STATE_VERSION);
        self.session.encode(&mut w);
        self.mediator.encode(&mut w);
        w.list(&self.history, |w, r| {
            w.bytes(&r.to_bytes());
        });
        let keys: Vec<&RoomKey> = self.keys.values().collect();
        w.list(&keys, |w, k| {
            k.room().encode(w);
            w.u64(k.epoch()).fixed(k.secret());
        });
        let chains: Vec<_> = self.chains.iter().collect();
        w.list(&chains, |w, ((room, sender), chain)| {
            room.encode(w);
            sender.encode(w);
            chain.write(w);
        });
        Zeroizing::new(w.into_bytes())
    }

    /// Restore a view stored by [`SessionView::to_state_bytes`]. The rosters
    /// are accepted again, one by one, so a tampered file cannot smuggle in a
    /// roster the pinned mediator did not sign. A state of another layout
    /// version (one written before chains were kept as runs, say) is refused
    /// with [`DecodeError::UnsupportedVersion`].
    pub fn from_state_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (session, mediator, rosters, keys, chains) = Reader::decode_all(bytes, |r| {
            let version = r.u16()?;
            if version != STATE_VERSION {
                return Err(DecodeError::UnsupportedVersion(version));
            }
            let session = SessionId::decode(r)?;
            let mediator = Fingerprint::decode(r)?;
            let rosters = r.list(|r| SignedRoster::from_bytes(r.bytes()?))?;
            let keys = r.list(|r| {
                let room = RoomId::decode(r)?;
                let epoch = r.u64()?;
                let secret = Zeroizing::new(r.array::<32>()?);
                Ok(RoomKey::from_secret(room, epoch, *secret))
            })?;
            let chains = r.list(|r| {
                Ok((
                    (RoomId::decode(r)?, Fingerprint::decode(r)?),
                    Chain::read(r)?,
                ))
            })?;
            Ok((session, mediator, rosters, keys, chains))
        })?;
        let mut view = Self::new(session, mediator);
        for roster in rosters {
            view.accept_roster(roster)?;
        }
        for key in keys {
            view.keys.insert((key.room(), key.epoch()), key);
        }
        view.chains.extend(chains);
        Ok(view)
    }
}
