//! The relay's acceptance rules for one session: what it stores and
//! forwards, decided by the same checks a client's
//! [`SessionView`](crate::session::SessionView) makes (through
//! [`RosterHistory`]), so a relay keeps nothing every client would refuse.
//!
//! One exception, by design: the relay does not verify envelope signatures.
//! It checks that the header names the device authenticated on the
//! connection; clients verify every signature, and a member who posts a
//! badly signed envelope harms only itself. Roster and key-bundle signatures
//! it does verify.
//!
//! ```
//! use caucus_protocol::builder::RosterBuilder;
//! use caucus_protocol::identity::DeviceKeys;
//! use caucus_protocol::ids::SessionId;
//! use caucus_protocol::relay::RelayRules;
//! use caucus_protocol::session::SessionView;
//!
//! # fn main() -> Result<(), caucus_protocol::Error> {
//! let mediator = DeviceKeys::generate()?;
//! let session = SessionId::random()?;
//! let mut builder = RosterBuilder::new(session, &mediator, "The mediator")?;
//! let (first, _keys) = builder.sign(&mediator, &SessionView::new(session, mediator.fingerprint()))?;
//!
//! let mut relay = RelayRules::new(session, mediator.fingerprint());
//! relay.accept_roster(&mediator.fingerprint(), first.clone())?;
//! // The same roster again is no error, and a stranger may not publish one.
//! relay.accept_roster(&mediator.fingerprint(), first.clone())?;
//! let stranger = DeviceKeys::generate()?;
//! assert!(relay.accept_roster(&stranger.fingerprint(), first).is_err());
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;

use crate::crypto::Digest;
use crate::envelope::{Envelope, MAX_CIPHERTEXT_LEN};
use crate::error::Error;
use crate::history::{RosterHistory, RosterOutcome};
use crate::identity::Fingerprint;
use crate::ids::{RoomId, SessionId};
use crate::keys::SignedKeyBundle;
use crate::roster::SignedRoster;

/// The newest envelope the relay holds from one sender in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Its sequence number.
    pub seq: u64,
    /// Its envelope hash.
    pub hash: Digest,
    /// Its index in the room.
    pub index: u64,
}

/// What to do with a post that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostCheck {
    /// A new envelope: store it, then [`RelayRules::record`] its index.
    New,
    /// The very envelope the relay already holds at `index` (a post sent
    /// again after a lost reply): answer with that index, store nothing.
    Duplicate {
        /// Where it is stored.
        index: u64,
    },
}

/// One session's rosters and chain heads, as the relay holds them.
#[derive(Debug, Clone)]
pub struct RelayRules {
    history: RosterHistory,
    heads: HashMap<(RoomId, Fingerprint), Head>,
}

impl RelayRules {
    /// A session whose rosters `mediator` signs, before its first roster.
    pub fn new(session: SessionId, mediator: Fingerprint) -> Self {
        Self {
            history: RosterHistory::new(session, mediator),
            heads: HashMap::new(),
        }
    }

    /// The rosters accepted so far.
    pub fn history(&self) -> &RosterHistory {
        &self.history
    }

    /// `caller` publishes `signed`: only the lead mediator may; it must be
    /// what a client accepts as the next roster; and for every epoch it
    /// ends, no member may have sent more than its chain heads say (the
    /// mediator signed it before seeing a message the relay already holds:
    /// [`Error::HeadsBehind`], catch up and sign again). The very roster
    /// held already is [`RosterOutcome::AlreadyHeld`].
    pub fn accept_roster(
        &mut self,
        caller: &Fingerprint,
        signed: SignedRoster,
    ) -> Result<RosterOutcome, Error> {
        if caller != &self.history.mediator() {
            return Err(Error::NotPermitted(
                "only the lead mediator publishes rosters",
            ));
        }
        let held = self.history.current().ok().cloned();
        let mut history = self.history.clone();
        let outcome = history.accept(signed)?;
        let next = history.current()?;
        for room in held.iter().flat_map(|h| &h.rooms) {
            let continues = next.room(&room.id).is_some_and(|r| r.epoch == room.epoch);
            if continues {
                continue;
            }
            for member in &room.members {
                let held_seq = self.heads.get(&(room.id, *member)).map_or(0, |h| h.seq);
                let signed_seq = next
                    .heads
                    .iter()
                    .find(|h| h.room == room.id && &h.member == member)
                    .map_or(0, |h| h.seq);
                if held_seq > signed_seq {
                    return Err(Error::HeadsBehind);
                }
            }
        }
        self.history = history;
        Ok(outcome)
    }

    /// `caller` publishes a key bundle: only the lead mediator may, signed
    /// by them, naming the current roster and the room's current epoch, and
    /// sealed to exactly that epoch's members.
    pub fn check_bundle(
        &self,
        caller: &Fingerprint,
        signed: &SignedKeyBundle,
    ) -> Result<(), Error> {
        let mediator = self.history.mediator();
        if caller != &mediator {
            return Err(Error::NotPermitted(
                "only the lead mediator publishes key bundles",
            ));
        }
        let lead = self.history.identity(&mediator).ok_or(Error::NoRoster)?;
        let bundle = signed.verify_by(lead)?;
        self.history.check_bundle(bundle)?;
        if Some(bundle.roster) != self.history.signed().map(SignedRoster::hash) {
            return Err(Error::BundleMismatch(
                "names a roster other than the current one",
            ));
        }
        Ok(())
    }

    /// `caller` posts `envelope`. It must name `caller` as its sender, a room
    /// of the current roster at its current epoch, keep the rules every
    /// client checks at that epoch ([`RosterHistory::check_header`]: member,
    /// open room, content type for the role), fit the content limit, and
    /// follow the sender's chain as the relay holds it: a sequence number
    /// above the last one held, linking to it when it is the next. The
    /// envelope held at the last sequence number, sent again, is a
    /// [`PostCheck::Duplicate`]; another envelope there, or any below, is a
    /// [`Error::Fork`].
    pub fn check_post(
        &self,
        caller: &Fingerprint,
        envelope: &Envelope,
    ) -> Result<PostCheck, Error> {
        let h = envelope.header();
        if &h.sender != caller {
            return Err(Error::NotPermitted("the header's sender is not the caller"));
        }
        let room = self
            .history
            .current()?
            .room(&h.room)
            .ok_or(Error::UnknownRoom)?;
        if room.epoch != h.epoch {
            return Err(Error::NotCurrentEpoch { epoch: h.epoch });
        }
        if envelope.ciphertext_len() > MAX_CIPHERTEXT_LEN {
            return Err(Error::TooLarge);
        }
        let hash = envelope.hash();
        let (_, role) = self.history.check_header(h, &hash)?;
        // The header says only which side sent it; what it holds, and
        // whether the sender may send that, clients check once decrypted.
        h.class
            .check(role)
            .map_err(|_| Error::NotPermitted("the header's class is not the sender's role's"))?;
        if h.seq == 0 || h.seq == u64::MAX {
            return Err(Error::ChainBroken { seq: h.seq });
        }
        let held = self.heads.get(&(h.room, h.sender));
        match held {
            Some(held) if h.seq == held.seq && hash == held.hash => {
                Ok(PostCheck::Duplicate { index: held.index })
            }
            Some(held) if h.seq <= held.seq => Err(Error::Fork { seq: h.seq }),
            Some(held) if h.seq == held.seq + 1 && h.previous != held.hash => {
                Err(Error::ChainBroken { seq: h.seq })
            }
            None if h.seq == 1 && h.previous != Digest::ZERO => {
                Err(Error::ChainBroken { seq: h.seq })
            }
            _ => Ok(PostCheck::New),
        }
    }

    /// Record that `envelope` is stored at `index` in its room: the newest
    /// of its sender there. Also how a relay rebuilds the heads from its log
    /// when it loads a session.
    pub fn record(&mut self, envelope: &Envelope, index: u64) {
        let h = envelope.header();
        let head = Head {
            seq: h.seq,
            hash: envelope.hash(),
            index,
        };
        self.heads
            .entry((h.room, h.sender))
            .and_modify(|held| {
                if held.seq < head.seq {
                    *held = head;
                }
            })
            .or_insert(head);
    }
}
