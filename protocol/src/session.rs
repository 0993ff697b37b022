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
use crate::content::{
    CarriedDocument, Content, ContentClass, Forward, ForwardMode, ShareReceipt, Sharing,
};
use crate::crypto::Digest;
use crate::document::DocumentRef;
use crate::envelope::{CheckedEnvelope, Envelope, Header};
use crate::error::Error;
use crate::history::RosterHistory;
use crate::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use crate::ids::{RoomId, SessionId};
use crate::keys::{KeyBundle, RoomKey, SealedLabel, SignedKeyBundle};
use crate::offer::{CarriedOffer, Offer};
use crate::roster::{Roster, SignedRoster};
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
        self.check_consent(*sharing, consent)?;
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

    /// As a mediator: carry this document to `destination`, verbatim (the
    /// same file: its key is passed on, its chunks are not uploaded again)
    /// or as `own`, a document of the mediator's own standing for it (a
    /// redacted copy, a summary), and the share receipt for its room. The
    /// consent rule is [`Opened::forward`]'s.
    pub fn carry_document(
        &self,
        destination: RoomId,
        own: Option<DocumentRef>,
        consent: Option<&Opened>,
    ) -> Result<(CarriedDocument, ShareReceipt), Error> {
        let Content::Document { sharing, document } = &self.content else {
            return Err(Error::NotPermitted(
                "only a document is carried as a document",
            ));
        };
        if destination == self.header.room {
            return Err(Error::NotPermitted("a document is carried to another room"));
        }
        self.check_consent(*sharing, consent)?;
        if let Some(d) = &own {
            d.validate()?;
        }
        let mode = mode_of(own.is_some());
        let document = own.unwrap_or_else(|| document.clone());
        let receipt = self.receipt(destination, mode, document.summary());
        Ok((
            CarriedDocument {
                source_room: self.header.room,
                source_message: self.hash,
                mode,
                document,
                author_consented: consent.is_some(),
            },
            receipt,
        ))
    }

    /// The one consent rule for carrying: a `consent` given must be this
    /// message's author's for it, and *mediator only* content needs one.
    fn check_consent(&self, sharing: Sharing, consent: Option<&Opened>) -> Result<(), Error> {
        if consent.is_some_and(|c| !c.consents_to(self)) {
            return Err(Error::NotPermitted(
                "the consent is not its author's for this message",
            ));
        }
        if sharing == Sharing::MediatorOnly && consent.is_none() {
            return Err(Error::NotPermitted(
                "mediator-only content is forwarded only with its author's consent",
            ));
        }
        Ok(())
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

    /// Whether this message is its author's consent to share `message`: a
    /// `Consent` naming it, sent by the same member in the same room. No
    /// other consent counts: a member consents only for their own words.
    pub fn consents_to(&self, message: &Opened) -> bool {
        self.content
            == Content::Consent {
                message: message.hash,
            }
            && self.header.sender == message.header.sender
            && self.header.room == message.header.room
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

/// A client's verified state for one session.
#[derive(Debug, Clone)]
pub struct SessionView {
    rosters: RosterHistory,
    keys: BTreeMap<(RoomId, u64), RoomKey>,
    chains: BTreeMap<(RoomId, Fingerprint), Chain>,
}

impl SessionView {
    /// A view of `session` whose rosters must be signed by `mediator` — the
    /// fingerprint pinned from the invite link, or the mediator's own.
    pub fn new(session: SessionId, mediator: Fingerprint) -> Self {
        Self {
            rosters: RosterHistory::new(session, mediator),
            keys: BTreeMap::new(),
            chains: BTreeMap::new(),
        }
    }

    /// The session.
    pub fn session(&self) -> SessionId {
        self.rosters.session()
    }

    /// The pinned mediator.
    pub fn mediator(&self) -> Fingerprint {
        self.rosters.mediator()
    }

    /// The newest accepted roster.
    pub fn roster(&self) -> Option<&Roster> {
        self.rosters.current().ok()
    }

    /// Every accepted roster, oldest first.
    pub fn rosters(&self) -> impl DoubleEndedIterator<Item = &Roster> {
        self.rosters.all().iter().map(Signed::unverified)
    }

    /// The accepted rosters and the rules they fix.
    pub fn history(&self) -> &RosterHistory {
        &self.rosters
    }

    /// The newest accepted roster as signed.
    pub fn signed_roster(&self) -> Option<&SignedRoster> {
        self.rosters.signed()
    }

    /// Whether the roster whose hash is `roster` is one this view accepted.
    pub fn is_accepted(&self, roster: &Digest) -> bool {
        self.rosters.is_accepted(roster)
    }

    /// The room key held for `room` at `epoch`.
    pub fn room_key(&self, room: &RoomId, epoch: u64) -> Option<&RoomKey> {
        self.keys.get(&(*room, epoch))
    }

    /// Where `sender`'s chain in `room` stands as this view has followed it:
    /// the highest sequence number accepted and its envelope hash (`0` and
    /// [`Digest::ZERO`] when none). A mediator's client records these as the
    /// chain heads of every epoch a roster ends
    /// ([`RosterBuilder::sign`](crate::builder::RosterBuilder::sign)).
    pub fn chain_head(&self, room: &RoomId, sender: &Fingerprint) -> (u64, Digest) {
        self.chains
            .get(&(*room, *sender))
            .map_or((0, Digest::ZERO), Chain::head)
    }

    /// Open a party label or member name from the roster (`subject` is the
    /// party id's or the member fingerprint's bytes), with the joint room key
    /// of the label's epoch.
    pub fn open_label(&self, label: &SealedLabel, subject: &[u8]) -> Result<String, Error> {
        let joint = self
            .rosters
            .current()?
            .joint_room()
            .ok_or(Error::InvalidRoster("exactly one joint room"))?;
        let key = self
            .keys
            .get(&(joint.id, label.epoch))
            .ok_or(Error::MissingRoomKey { epoch: label.epoch })?;
        label.open(key, &self.session(), subject)
    }

    /// Accept `signed` as the session's new roster, by every rule of
    /// [`RosterHistory::accept`]: signed by the pinned mediator, well
    /// formed, the next version naming the held one's hash, and a lawful
    /// successor of it. The very roster held already (delivered again) is
    /// no error: it is returned as held.
    pub fn accept_roster(&mut self, signed: SignedRoster) -> Result<&Roster, Error> {
        let version = signed.unverified().version;
        self.rosters.accept(signed)?;
        self.rosters
            .all()
            .iter()
            .map(Signed::unverified)
            .find(|r| r.version == version)
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
        if mediator.fingerprint() != self.mediator() {
            return Err(Error::NotPermitted(
                "only the lead mediator seals room keys",
            ));
        }
        let signed = self.rosters.signed().ok_or(Error::NoRoster)?;
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
        let bundle = KeyBundle::seal(self.session(), signed.hash(), key, &recipients)?;
        self.keys.insert(slot, key.clone());
        Ok(Signed::sign(bundle, mediator))
    }

    /// Check a key bundle and open this device's copy: signed by the pinned
    /// mediator, and by [`RosterHistory::check_bundle`] for this session,
    /// naming an accepted roster in which the room has that epoch, sealed to
    /// exactly that epoch's members once each; then this device's copy,
    /// opened with the bound HPKE `info`.
    pub fn open_key_bundle(
        &mut self,
        me: &DeviceKeys,
        signed: &SignedKeyBundle,
    ) -> Result<&RoomKey, Error> {
        let lead = self
            .rosters
            .identity(&self.mediator())
            .ok_or(Error::NoRoster)?;
        let bundle = signed.verify_by(lead)?;
        let epoch = self.rosters.check_bundle(bundle)?;
        if epoch.role(&me.fingerprint()).is_none() {
            return Err(Error::NotARecipient);
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
        let roster = self.rosters.current()?;
        let sender = me.fingerprint();
        let r = roster.room(room).ok_or(Error::UnknownRoom)?;
        if !r.has(&sender) {
            return Err(Error::NotAMember);
        }
        let role = roster.member(&sender).ok_or(Error::NotAMember)?.role;
        if !r.open && !role.is_mediator() {
            return Err(Error::RoomClosed);
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
            session: self.rosters.session(),
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
    /// rules of [`RosterHistory::check_header`] (the session; an epoch an
    /// accepted roster began; a sender in the room at that epoch; a room
    /// open to party members then; no sequence number past the sender's
    /// chain head if the epoch has ended); that the epoch's key is held; the
    /// sender's signature; that the header's class is the sender's role's at
    /// that epoch; the decryption, padding and content; that the role may
    /// send that content type in this room; and the sender's chain (no
    /// replay, links that match). Only then is the message recorded and
    /// returned.
    ///
    /// A sender's chain is followed from this device's first epoch in the
    /// room: from the chain head the roster that began it recorded, so a
    /// member who joins late sees no gap for what came before.
    pub fn open(&mut self, envelope: &Envelope) -> Result<Opened, Error> {
        self.open_with(envelope, None)
    }

    /// [`SessionView::open`] an envelope whose signature was perhaps
    /// checked ahead (see [`CheckedEnvelope`]): every check is the same,
    /// in the same order; the signature is checked here unless it was
    /// checked already with the key the roster gives the sender.
    pub fn open_checked(&mut self, checked: &CheckedEnvelope) -> Result<Opened, Error> {
        self.open_with(checked.envelope(), Some(checked))
    }

    fn open_with(
        &mut self,
        envelope: &Envelope,
        checked: Option<&CheckedEnvelope>,
    ) -> Result<Opened, Error> {
        let h = envelope.header();
        let hash = envelope.hash();
        let (epoch, role) = self.rosters.check_header(h, &hash)?;
        let key = self
            .keys
            .get(&(h.room, h.epoch))
            .ok_or(Error::MissingRoomKey { epoch: h.epoch })?;
        let identity = self.rosters.identity(&h.sender).ok_or(Error::NotAMember)?;
        if !checked.is_some_and(|c| c.signed_by(identity)) {
            envelope.verify(identity)?;
        }
        h.class.check(role)?;
        let content = envelope.decrypt(key)?;
        content.content_type().check_sender(role, epoch.kind)?;
        // A chain is started once, the first time this sender is opened in
        // the room: from the head recorded when the epoch before this
        // device's first one there ended.
        let (keys, rosters) = (&self.keys, &self.rosters);
        let gap = self
            .chains
            .entry((h.room, h.sender))
            .or_insert_with(|| {
                let first_epoch = keys
                    .range((h.room, 0)..=(h.room, u64::MAX))
                    .next()
                    .map_or(h.epoch, |((_, e), _)| *e);
                rosters
                    .head_before(&h.room, first_epoch, &h.sender)
                    .map_or_else(Chain::default, |(seq, last)| Chain::after(seq, last))
            })
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
        self.session().encode(&mut w);
        self.mediator().encode(&mut w);
        w.list(self.rosters.all(), |w, r| {
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
