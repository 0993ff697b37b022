//! What a person (or a program) asks of the machine, and what it can read
//! back. Each command checks what can be checked here — a gate, a role, a
//! consent — and refuses at once with a typed error; otherwise it starts an
//! operation whose outcome comes from [`Machine::poll_done`].

use caucus_protocol::agreement::{Agreement, Signatory, SignedAgreement};
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, ShareReceipt, Sharing, Step, SystemEvent};
use caucus_protocol::crypto::Digest;
use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::invite::{Invite, same_relay};
use caucus_protocol::offer::{Offer, OfferKind};
use caucus_protocol::roster::{Phase, Role, RoomKind, Roster};
use caucus_protocol::session::{Opened, SessionView};
use caucus_protocol::wire::{Encoded, PartyStatus, RequestBody};

use crate::error::ClientError;
use crate::event::Event;
use crate::machine::{Knock, Machine, Timestamp, change_and_announce, to_everyone};
use crate::offers::OfferEntry;
use crate::ops::{OpId, Origin, Outcome, RosterEdit, Stage};
use crate::state::{InviteEntry, Kept, Membership, Meta, SessionState};

type Result<T> = std::result::Result<T, ClientError>;

/// How a joiner with an invite is let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// They wait in the waiting room until the mediator, having compared
    /// safety codes with them, admits or declines them.
    ByMediator,
    /// They are let in as soon as their proof verifies (for a script, or a
    /// mediator who has already checked who holds the link).
    Automatic,
}

impl Machine {
    fn caller(
        &mut self,
        session: SessionId,
        stages: impl IntoIterator<Item = Stage>,
        outcome: Outcome,
    ) -> OpId {
        self.start_op(session, Origin::Caller, stages, outcome)
    }

    fn post_stage(room: RoomId, content: Content) -> Stage {
        Stage::Post {
            room,
            content,
            report: true,
        }
    }

    // ----- joining and catching up -----

    /// Join a session from an invite link: knock, and wait to be admitted.
    /// The mediator's key is pinned from the link. [`Event::Joined`] comes
    /// once the mediator has let this device in and its keys have arrived.
    pub fn join(&mut self, link: &str, now: Timestamp) -> Result<(SessionId, OpId)> {
        self.now = now;
        let invite = Invite::from_link(link)?;
        if !same_relay(&invite.relay, self.relay()) {
            return Err(ClientError::Usage(
                "the invite is for another relay than this client's",
            ));
        }
        // The relay already connected must be the one the link pins.
        self.check_relay_key(&invite.relay_key)?;
        let session = invite.session;
        let link = link.trim().to_owned();
        match self.sessions.get(&session).map(|s| &s.meta.membership) {
            Some(Membership::Admitted | Membership::Ready) => {
                return Err(ClientError::Usage("this device is already in that session"));
            }
            Some(Membership::Closed) => {
                return Err(ClientError::Usage("that session has closed"));
            }
            Some(Membership::Knocking { .. } | Membership::Waiting { .. }) | None => {}
        }
        let state = self.sessions.entry(session).or_insert_with(|| {
            SessionState::new(
                SessionView::new(session, invite.mediator),
                Meta {
                    relay: invite.relay.clone(),
                    relay_keys: vec![invite.relay_key],
                    cursors: Default::default(),
                    invites: Vec::new(),
                    membership: Membership::Knocking { link: link.clone() },
                    uploads: Vec::new(),
                },
            )
        });
        state.meta.membership = Membership::Knocking { link };
        state.dirty = true;
        Ok((session, self.caller(session, [Stage::Knock], Outcome::Done)))
    }

    /// Catch up with the relay on `session`: every roster, key and message
    /// missed. Done once all of it has been verified and applied.
    pub fn sync(&mut self, session: &SessionId, now: Timestamp) -> Result<OpId> {
        self.now = now;
        self.session(session)?;
        Ok(self.caller(*session, [Stage::Subscribe], Outcome::Done))
    }

    // ----- as anyone in a room -----

    /// Seal and post `content` in `room`; the outcome is the stored message.
    pub fn post(
        &mut self,
        session: &SessionId,
        room: &RoomId,
        content: Content,
        now: Timestamp,
    ) -> Result<OpId> {
        self.now = now;
        self.session(session)?;
        self.may_post(session, room)?;
        Ok(self.caller(*session, [Self::post_stage(*room, content)], Outcome::Done))
    }

    /// Whether this device may post in `room` now, as the roster says (the
    /// relay would refuse otherwise; this says why in words).
    pub(crate) fn may_post(&self, session: &SessionId, room: &RoomId) -> Result<()> {
        let roster = self.roster_of(session)?;
        let me = self.fingerprint();
        let room = roster.room(room).ok_or(ClientError::Usage(
            "that room is not in the session (a side room that was closed?)",
        ))?;
        let mediator = roster.member(&me).is_some_and(|m| m.role.is_mediator());
        if !room.has(&me) {
            return Err(ClientError::Usage(
                "you are not in that room: a party writes in its own private room, or in the joint room when it is open",
            ));
        }
        if !room.open && !mediator {
            return Err(ClientError::Usage(
                "that room is closed: the mediator opens the joint room once every party agrees to meet",
            ));
        }
        Ok(())
    }

    /// Send text in `room` with a sharing label (*mediator only* is the
    /// practice in a private room).
    pub fn send(
        &mut self,
        session: &SessionId,
        room: &RoomId,
        text: &str,
        sharing: Sharing,
        now: Timestamp,
    ) -> Result<OpId> {
        if text.trim().is_empty() {
            return Err(ClientError::Usage("a message needs some words"));
        }
        let content = Content::Text {
            sharing,
            body: text.to_owned(),
        };
        self.post(session, room, content, now)
    }

    /// Let the mediator share one of this device's own messages.
    pub fn consent(
        &mut self,
        session: &SessionId,
        message: &Digest,
        now: Timestamp,
    ) -> Result<OpId> {
        let original = self
            .message(session, message)
            .ok_or(ClientError::Usage("no such message"))?;
        if original.header.sender != self.fingerprint() {
            return Err(ClientError::Usage(
                "one consents only to one's own messages",
            ));
        }
        if self.said_already(session, |c| *c == Content::Consent { message: *message }) {
            return Err(ClientError::Usage(
                "you have already let the mediator share that message",
            ));
        }
        let room = original.header.room;
        self.post(session, &room, Content::Consent { message: *message }, now)
    }

    /// Record a settlement offer or counter-offer for this device's party,
    /// in its private room, for the mediator to carry across.
    pub fn make_offer(
        &mut self,
        session: &SessionId,
        offer: &Offer,
        now: Timestamp,
    ) -> Result<OpId> {
        offer.validate()?;
        let room = self.my_room(session)?;
        self.check_answer(session, &room, offer)?;
        self.post(session, &room, Content::Offer(offer.clone()), now)
    }

    /// Withdraw this device's party from the mediation: a signed notice in
    /// the party's private room. The mediator's device marks the party
    /// withdrawn and tells the joint room that a party has withdrawn (not
    /// which).
    pub fn withdraw(&mut self, session: &SessionId, now: Timestamp) -> Result<OpId> {
        let roster = self.roster_of(session)?;
        let withdrawn = roster
            .member(&self.fingerprint())
            .and_then(|m| m.party)
            .and_then(|p| roster.party(&p))
            .is_some_and(|p| p.withdrawn);
        if withdrawn {
            return Err(ClientError::Usage("your party has already withdrawn"));
        }
        let room = self.my_room(session)?;
        self.post(session, &room, Content::Withdrawal, now)
    }

    /// Agree, for this device's party, to a step of the process.
    pub fn agree(&mut self, session: &SessionId, step: Step, now: Timestamp) -> Result<OpId> {
        let room = self.my_room(session)?;
        self.post(session, &room, Content::Agree { step }, now)
    }

    /// Tell the mediator this party member's status.
    pub fn set_status(
        &mut self,
        session: &SessionId,
        status: PartyStatus,
        now: Timestamp,
    ) -> Result<OpId> {
        self.now = now;
        self.session(session)?;
        let party_member = self
            .roster_of(session)?
            .member(&self.fingerprint())
            .is_some_and(|m| m.party.is_some());
        if !party_member {
            return Err(ClientError::Usage(
                "a status is a party's word to the mediator: the mediator has none to set",
            ));
        }
        let body = RequestBody::Status {
            session: *session,
            status,
        };
        Ok(self.caller(*session, [Stage::Request(body)], Outcome::Done))
    }

    /// Sign a proposed agreement, exactly as drafted.
    pub fn sign_agreement(
        &mut self,
        session: &SessionId,
        agreement: &Digest,
        now: Timestamp,
    ) -> Result<OpId> {
        let draft = self
            .draft(session, agreement)
            .ok_or(ClientError::Usage("no such proposed agreement"))?;
        if self.said_already(
            session,
            |c| matches!(c, Content::AgreementSignature { agreement: a, .. } if a == agreement),
        ) {
            return Err(ClientError::Usage("you have already signed that agreement"));
        }
        let signature = draft.sign(&self.keys)?;
        let room = self.my_room(session)?;
        let content = Content::AgreementSignature {
            agreement: *agreement,
            signature,
        };
        self.post(session, &room, content, now)
    }

    /// The newest agreement proposed in `session`, if any: what "sign the
    /// agreement" means when no hash is given.
    pub fn latest_draft(&self, session: &SessionId) -> Option<Agreement> {
        self.newest(session, |c| match c {
            Content::AgreementDraft(a) => Some(a.clone()),
            _ => None,
        })
    }

    /// Whether this device has already posted content that `is` in
    /// `session`.
    fn said_already(&self, session: &SessionId, is: impl Fn(&Content) -> bool) -> bool {
        let me = self.fingerprint();
        self.sessions.get(session).is_some_and(|s| {
            s.messages
                .iter()
                .any(|(_, m)| m.header.sender == me && is(&m.content))
        })
    }

    /// The newest content of `session` that `pick` takes.
    fn newest<T>(&self, session: &SessionId, pick: impl Fn(&Content) -> Option<T>) -> Option<T> {
        self.sessions
            .get(session)?
            .messages
            .iter()
            .rev()
            .find_map(|(_, m)| pick(&m.content))
    }

    /// (Lead mediator) countersign a proposed agreement that every
    /// signatory has signed, and give each member the concluded copy. Until
    /// then, [`ClientError::Unsigned`] names who has still to sign.
    pub fn countersign(
        &mut self,
        session: &SessionId,
        agreement: &Digest,
        now: Timestamp,
    ) -> Result<OpId> {
        self.mediator_at(session, now)?;
        if self
            .agreement(session)
            .is_some_and(|a| a.agreement.hash() == *agreement)
        {
            return Err(ClientError::Usage(
                "that agreement is already countersigned",
            ));
        }
        let draft = self
            .draft(session, agreement)
            .ok_or(ClientError::Usage("no such proposed agreement"))?;
        let state = self
            .sessions
            .get(session)
            .ok_or(ClientError::UnknownSession)?;
        let mut signatures = Vec::new();
        let mut unsigned = Vec::new();
        for signatory in &draft.signatories {
            let who = signatory.identity.fingerprint();
            let signed = state.messages.iter().find_map(|(_, m)| match &m.content {
                Content::AgreementSignature {
                    agreement: a,
                    signature,
                } if a == agreement && m.header.sender == who => Some(*signature),
                _ => None,
            });
            match signed {
                Some(signature) => signatures.push(signature),
                None => unsigned.push(signatory.name.clone()),
            }
        }
        if !unsigned.is_empty() {
            return Err(ClientError::Unsigned {
                signatories: unsigned,
            });
        }
        let signed = SignedAgreement::countersign(draft, signatures, &self.keys)?;
        let stages = to_everyone(self.roster_of(session)?, &Content::AgreementFinal(signed));
        Ok(self.caller(*session, stages, Outcome::Done))
    }

    /// Erase this device's copy of a session: its room keys, chains and
    /// messages. The concluded agreement, if any, is kept (see
    /// [`crate::Kept`]); nothing else of the session remains.
    pub fn erase(&mut self, session: &SessionId) -> Result<()> {
        if let Some(agreement) = self.agreement(session) {
            self.keep(*session, Kept::Agreement, agreement.to_bytes());
        }
        if self.forget(session) {
            Ok(())
        } else {
            Err(ClientError::UnknownSession)
        }
    }

    // ----- as the mediator -----

    fn mediating(&self, session: &SessionId) -> Result<()> {
        let roster = self.roster_of(session)?;
        match roster.member(&self.fingerprint()).map(|m| m.role) {
            Some(Role::Mediator) => Ok(()),
            Some(Role::CoMediator) => Err(ClientError::Usage(
                "only the lead mediator can do that; a co-mediator cannot",
            )),
            _ => Err(ClientError::Usage("only the mediator can do that")),
        }
    }

    /// As the lead mediator of `session`, at `now`.
    fn mediator_at(&mut self, session: &SessionId, now: Timestamp) -> Result<()> {
        self.now = now;
        self.mediating(session)
    }

    /// Change the roster and announce it in the joint room.
    fn announced(
        &mut self,
        session: &SessionId,
        edit: RosterEdit,
        event: SystemEvent,
    ) -> Result<OpId> {
        let stages = change_and_announce(self.roster_of(session)?, edit, event)?;
        Ok(self.caller(*session, stages, Outcome::Done))
    }

    /// Create a session with this device as lead mediator (named `name`)
    /// and one party per label, each with its private room; the joint room
    /// starts closed. The outcome gives the session and its parties.
    pub fn create_session(
        &mut self,
        name: &str,
        parties: &[&str],
        now: Timestamp,
    ) -> Result<(SessionId, OpId)> {
        self.now = now;
        let session = SessionId::random()?;
        let mut builder = RosterBuilder::new(session, &self.keys, name)?;
        let party_ids = parties
            .iter()
            .map(|p| builder.add_party(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut view = SessionView::new(session, self.fingerprint());
        let (roster, room_keys) = builder.sign(&self.keys, &view)?;
        view.accept_roster(roster.clone())?;
        let bundles = room_keys
            .iter()
            .map(|k| view.seal_key_bundle(&self.keys, k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let meta = Meta {
            relay: self.relay().to_owned(),
            // Pinned on first use: the relay connected now, or else the one
            // that answers next.
            relay_keys: self.relay_key().into_iter().collect(),
            cursors: Default::default(),
            invites: Vec::new(),
            membership: Membership::Ready,
            uploads: Vec::new(),
        };
        self.sessions.insert(session, SessionState::new(view, meta));
        let stages = std::iter::once(Stage::Request(RequestBody::CreateSession {
            roster: Encoded(roster),
        }))
        .chain(
            bundles
                .into_iter()
                .map(|b| Stage::Request(RequestBody::PublishKeys { bundle: Encoded(b) })),
        )
        .chain([Stage::Subscribe]);
        let op = self.caller(
            session,
            stages.collect::<Vec<_>>(),
            Outcome::Created(session, party_ids),
        );
        Ok((session, op))
    }

    /// An invite link for one person joining `party` (named `name`), valid
    /// until `expires_at` (seconds since the Unix epoch). The outcome is the
    /// link: send it to them privately, it holds the invite secret.
    pub fn invite(
        &mut self,
        session: &SessionId,
        party: &PartyId,
        name: &str,
        expires_at: u64,
        admission: Admission,
        now: Timestamp,
    ) -> Result<OpId> {
        self.roster_of(session)?
            .party(party)
            .ok_or(ClientError::Usage("no such party"))?;
        self.issue_invite(session, Some(*party), name, expires_at, admission, now)
    }

    /// An invite link for a co-mediator (named `name`): once admitted, a
    /// mediator's rights in every room.
    pub fn invite_co_mediator(
        &mut self,
        session: &SessionId,
        name: &str,
        expires_at: u64,
        admission: Admission,
        now: Timestamp,
    ) -> Result<OpId> {
        self.issue_invite(session, None, name, expires_at, admission, now)
    }

    fn issue_invite(
        &mut self,
        session: &SessionId,
        party: Option<PartyId>,
        name: &str,
        expires_at: u64,
        admission: Admission,
        now: Timestamp,
    ) -> Result<OpId> {
        self.mediator_at(session, now)?;
        if expires_at > caucus_protocol::wire::MAX_JSON_INTEGER {
            // Past what a JSON number carries exactly (12.1).
            return Err(ClientError::Usage("an invite cannot expire that far ahead"));
        }
        let relay_key =
            *self
                .session(session)?
                .meta
                .relay_keys
                .last()
                .ok_or(ClientError::Usage(
                    "the relay's key is not known yet: connect to the relay first",
                ))?;
        let invite = Invite::new(
            self.relay().to_owned(),
            relay_key,
            *session,
            self.fingerprint(),
            expires_at,
        )?;
        let link = invite.to_link();
        let body = RequestBody::CreateInvite {
            session: *session,
            invite: invite.id,
            token_hash: invite.admission_token().hash(),
            expires_at,
        };
        let state = self.session_mut(session)?;
        state.meta.invites.push(InviteEntry {
            id: invite.id,
            link: link.clone(),
            party,
            name: name.to_owned(),
            auto_admit: admission == Admission::Automatic,
            used: false,
        });
        state.dirty = true;
        Ok(self.caller(*session, [Stage::Request(body)], Outcome::Invite(link)))
    }

    /// Let in a joiner from the waiting room (see [`Event::Knocking`]),
    /// after comparing safety codes with them.
    pub fn admit(
        &mut self,
        session: &SessionId,
        member: &Fingerprint,
        now: Timestamp,
    ) -> Result<()> {
        self.mediator_at(session, now)?;
        let knock = self
            .take_knock(session, member)
            .ok_or(ClientError::Usage("no one with that device is waiting"))?;
        self.admit_knock(*session, knock);
        Ok(())
    }

    /// Turn a joiner in the waiting room away; they are told.
    pub fn decline(
        &mut self,
        session: &SessionId,
        member: &Fingerprint,
        now: Timestamp,
    ) -> Result<OpId> {
        self.mediator_at(session, now)?;
        let knock = self
            .take_knock(session, member)
            .ok_or(ClientError::Usage("no one with that device is waiting"))?;
        let body = RequestBody::Decline {
            session: *session,
            invite: knock.request.invite,
        };
        Ok(self.caller(*session, [Stage::Request(body)], Outcome::Done))
    }

    /// Remove a member: every room they were in starts a new epoch whose
    /// key they never receive.
    pub fn remove_member(
        &mut self,
        session: &SessionId,
        member: &Fingerprint,
        now: Timestamp,
    ) -> Result<OpId> {
        self.mediator_at(session, now)?;
        self.announced(
            session,
            RosterEdit::RemoveMember(*member),
            SystemEvent::MemberRemoved(*member),
        )
    }

    /// The parties still in the mediation that have not agreed to `step`
    /// since they last withdrew, as this device has seen.
    pub fn parties_not_agreed(&self, session: &SessionId, step: Step) -> Result<Vec<PartyId>> {
        let state = self.session(session)?;
        let roster = self.roster_of(session)?;
        let party_of = |m: &Fingerprint| roster.member(m).and_then(|m| m.party);
        let mut agreed = std::collections::BTreeSet::new();
        for (_, m) in &state.messages {
            let Some(party) = party_of(&m.header.sender) else {
                continue;
            };
            match &m.content {
                Content::Agree { step: s } if *s == step => {
                    agreed.insert(party);
                }
                Content::Withdrawal => {
                    agreed.remove(&party);
                }
                _ => {}
            }
        }
        Ok(roster
            .parties
            .iter()
            .filter(|p| !p.withdrawn && !agreed.contains(&p.id))
            .map(|p| p.id)
            .collect())
    }

    /// Refuse unless every party still in the mediation has agreed to
    /// `step`, naming those that have not.
    fn gate(&self, session: &SessionId, step: Step) -> Result<()> {
        let missing = self.parties_not_agreed(session, step)?;
        if missing.is_empty() {
            return Ok(());
        }
        let parties = missing
            .iter()
            .map(|id| self.party_label(session, id))
            .collect();
        Err(ClientError::NotAgreed { step, parties })
    }

    /// Move the mediation to `phase`, and say so in the joint room. Moving
    /// on from the individual meetings needs every party's agreement to
    /// continue.
    pub fn set_phase(&mut self, session: &SessionId, phase: Phase, now: Timestamp) -> Result<OpId> {
        self.mediator_at(session, now)?;
        let current = self.roster_of(session)?.phase;
        if current == phase {
            return Err(ClientError::Usage("the mediation is already in that phase"));
        }
        if current <= Phase::IndividualMeetings
            && phase > Phase::IndividualMeetings
            && phase != Phase::Closed
        {
            self.gate(session, Step::Continue)?;
        }
        self.announced(
            session,
            RosterEdit::SetPhase(phase),
            SystemEvent::PhaseChanged(phase),
        )
    }

    /// Open or close the joint room to the parties, and say so there. It
    /// opens only in the negotiation or agreement phase, and only once
    /// every party still in the mediation has agreed to a joint meeting.
    pub fn set_joint_open(
        &mut self,
        session: &SessionId,
        open: bool,
        now: Timestamp,
    ) -> Result<OpId> {
        self.mediator_at(session, now)?;
        let joint = self.roster_of(session)?.joint_room().map(|r| r.open);
        match (joint, open) {
            (Some(true), true) => return Err(ClientError::Usage("the joint room is already open")),
            (Some(false), false) => {
                return Err(ClientError::Usage("the joint room is already closed"));
            }
            _ => {}
        }
        if open {
            let phase = self.roster_of(session)?.phase;
            if !matches!(phase, Phase::Negotiation | Phase::Agreement) {
                return Err(ClientError::Usage(
                    "the joint room opens only in the negotiation or agreement phase",
                ));
            }
            self.gate(session, Step::JointMeeting)?;
        }
        let room = self.joint_room(session)?;
        let event = if open {
            SystemEvent::JointOpened
        } else {
            SystemEvent::JointClosed
        };
        self.announced(session, RosterEdit::SetOpen(room, open), event)
    }

    /// Readmit a party that withdrew, and say so in the joint room.
    pub fn readmit(
        &mut self,
        session: &SessionId,
        party: &PartyId,
        now: Timestamp,
    ) -> Result<OpId> {
        self.mediator_at(session, now)?;
        let withdrawn = self
            .roster_of(session)?
            .party(party)
            .ok_or(ClientError::Usage("no such party"))?
            .withdrawn;
        if !withdrawn {
            return Err(ClientError::Usage(
                "that party has not withdrawn: it is still in the mediation",
            ));
        }
        self.announced(
            session,
            RosterEdit::SetWithdrawn(*party, false),
            SystemEvent::PartyRejoined,
        )
    }

    /// Open a side room for `members` (the mediators are always in it): the
    /// lawyers only, say. The outcome names the room.
    pub fn create_side_room(
        &mut self,
        session: &SessionId,
        members: &[Fingerprint],
        now: Timestamp,
    ) -> Result<OpId> {
        self.mediator_at(session, now)?;
        let me = self.fingerprint();
        if members.iter().all(|m| *m == me) {
            return Err(ClientError::Usage(
                "a side room needs at least one member besides the mediator",
            ));
        }
        Ok(self.caller(
            *session,
            [Stage::Roster(RosterEdit::AddSideRoom(members.to_vec()))],
            Outcome::Done,
        ))
    }

    /// Close a side room: it leaves the roster, and no one can post in it.
    pub fn close_side_room(
        &mut self,
        session: &SessionId,
        room: &RoomId,
        now: Timestamp,
    ) -> Result<OpId> {
        self.mediator_at(session, now)?;
        Ok(self.caller(
            *session,
            [Stage::Roster(RosterEdit::RemoveSideRoom(*room))],
            Outcome::Done,
        ))
    }

    /// Record a settlement offer for a party, in its private room (when the
    /// party asks the mediator to put it for them).
    pub fn make_offer_for(
        &mut self,
        session: &SessionId,
        party: &PartyId,
        offer: &Offer,
        now: Timestamp,
    ) -> Result<OpId> {
        offer.validate()?;
        let room = self.party_room(session, party)?;
        self.check_answer(session, &room, offer)?;
        self.post(session, &room, Content::Offer(offer.clone()), now)
    }

    /// What an offer to be made in `room` answers: nothing for a first
    /// offer; for a counter-offer, a `CarriedOffer` the party received
    /// there (9.5).
    fn check_answer(&self, session: &SessionId, room: &RoomId, offer: &Offer) -> Result<()> {
        let Some(answered) = offer.responds_to else {
            return Ok(());
        };
        if offer.kind == OfferKind::Offer {
            return Err(ClientError::Usage(
                "a first offer answers nothing: make it a counter-offer",
            ));
        }
        let received = self.sessions.get(session).is_some_and(|s| {
            s.messages.iter().any(|(_, m)| {
                m.hash == answered
                    && m.header.room == *room
                    && matches!(m.content, Content::CarriedOffer(_))
            })
        });
        if received {
            Ok(())
        } else {
            Err(ClientError::Usage(
                "a counter-offer answers an offer the mediator brought to the party, and that message is not one",
            ))
        }
    }

    /// Propose an agreement: the exact `terms`, with a reality-testing
    /// `checklist` and the documents it `attaches` (each named by the hash
    /// of the message that brought it to this device, a `Document` or a
    /// `CarriedDocument`: the signatures cover its SHA-256), for every
    /// member of every party still in the mediation to sign. Posted in the
    /// joint room and in each party's private room. The outcome names it.
    pub fn propose_agreement(
        &mut self,
        session: &SessionId,
        title: &str,
        terms: &str,
        checklist: &[String],
        attaches: &[Digest],
        now: Timestamp,
    ) -> Result<OpId> {
        self.mediator_at(session, now)?;
        if title.trim().is_empty() || terms.trim().is_empty() {
            return Err(ClientError::Usage(
                "an agreement needs a title and its terms",
            ));
        }
        let state = self.session(session)?;
        let mut attachments: Vec<caucus_protocol::agreement::Attachment> = Vec::new();
        for message in attaches {
            let document = match state.message(message).map(|m| &m.content) {
                Some(Content::Document { document, .. }) => document,
                Some(Content::CarriedDocument(carried)) => &carried.document,
                _ => {
                    return Err(ClientError::Usage(
                        "an agreement attaches a document this device holds, named by the message that brought it",
                    ));
                }
            };
            if attachments.iter().any(|a| a.sha256 == document.hash) {
                return Err(ClientError::Usage("that document is attached already"));
            }
            attachments.push(document.into());
        }
        let roster = self.roster_of(session)?;
        let name = |m: &caucus_protocol::roster::Member| {
            state
                .view
                .open_label(&m.name, &m.id().0)
                .unwrap_or_default()
        };
        let mediator = roster
            .member(&self.fingerprint())
            .ok_or(ClientError::Usage(
                "only the lead mediator proposes the agreement",
            ))?;
        let mut signatories = Vec::new();
        for party in roster.parties.iter().filter(|p| !p.withdrawn) {
            let label = state
                .view
                .open_label(&party.label, &party.id.0)
                .unwrap_or_default();
            for m in roster.members.iter().filter(|m| m.party == Some(party.id)) {
                signatories.push(Signatory {
                    identity: m.identity.clone(),
                    name: name(m),
                    party: Some((party.id, label.clone())),
                });
            }
        }
        let agreement = Agreement {
            session: *session,
            title: title.to_owned(),
            terms: terms.to_owned(),
            checklist: checklist.to_vec(),
            attachments,
            mediator: Signatory {
                identity: mediator.identity.clone(),
                name: name(mediator),
                party: None,
            },
            signatories,
            drafted_at: now.as_secs(),
        };
        let hash = agreement.hash();
        let stages = to_everyone(roster, &Content::AgreementDraft(agreement));
        Ok(self.caller(*session, stages, Outcome::Proposed(hash)))
    }

    /// Say which room the mediator is with (`None`: away); with `disclose`,
    /// the other parties learn which.
    pub fn set_location(
        &mut self,
        session: &SessionId,
        room: Option<RoomId>,
        disclose: bool,
        now: Timestamp,
    ) -> Result<OpId> {
        self.now = now;
        self.session(session)?;
        let body = RequestBody::Location {
            session: *session,
            room,
            disclose,
        };
        Ok(self.caller(*session, [Stage::Request(body)], Outcome::Done))
    }

    /// Carry a message to `destination`, verbatim or (with `reframed`) in
    /// the mediator's words, and post the share receipt in its source room.
    /// *Mediator only* text is refused unless its author has consented. The
    /// outcome is the carried copy.
    pub fn forward(
        &mut self,
        session: &SessionId,
        message: &Digest,
        destination: &RoomId,
        reframed: Option<String>,
        now: Timestamp,
    ) -> Result<OpId> {
        self.carry(session, message, destination, now, |source, consent| {
            let (forward, receipt) = source.forward(*destination, reframed, consent)?;
            Ok((Content::Forward(forward), receipt))
        })
    }

    /// Carry an offer to `destination` (another party's private room, or
    /// the joint room), verbatim or `restated` in the mediator's terms, and
    /// post the share receipt where it was made.
    pub fn carry_offer(
        &mut self,
        session: &SessionId,
        offer: &Digest,
        destination: &RoomId,
        restated: Option<Offer>,
        now: Timestamp,
    ) -> Result<OpId> {
        self.carry(session, offer, destination, now, |source, _| {
            let (carried, receipt) = source.carry_offer(*destination, restated)?;
            Ok((Content::CarriedOffer(carried), receipt))
        })
    }

    /// Carry `message` to `destination` as `make` builds it from the source
    /// and its author's consent, then post the receipt in the source room.
    fn carry(
        &mut self,
        session: &SessionId,
        message: &Digest,
        destination: &RoomId,
        now: Timestamp,
        make: impl FnOnce(&Opened, Option<&Opened>) -> Result<(Content, ShareReceipt)>,
    ) -> Result<OpId> {
        self.now = now;
        let stages = self.carry_stages(session, message, destination, make)?;
        Ok(self.caller(*session, stages, Outcome::Done))
    }

    /// The stages of carrying `message` to `destination` as `make` builds
    /// it (checked as a mediator may, with its author's consent looked up):
    /// the carried copy, whose message is the outcome, then the receipt in
    /// the source room.
    pub(crate) fn carry_stages(
        &self,
        session: &SessionId,
        message: &Digest,
        destination: &RoomId,
        make: impl FnOnce(&Opened, Option<&Opened>) -> Result<(Content, ShareReceipt)>,
    ) -> Result<Vec<Stage>> {
        let carrier = self
            .roster_of(session)?
            .member(&self.fingerprint())
            .map(|m| m.role);
        if !carrier.is_some_and(Role::is_mediator) {
            return Err(ClientError::Usage(
                "only the mediator can carry messages between rooms",
            ));
        }
        let state = self.session(session)?;
        let source = state
            .message(message)
            .ok_or(ClientError::Usage("no such message"))?;
        let consent = state
            .messages
            .iter()
            .map(|(_, m)| m)
            .find(|c| c.consents_to(source));
        let source_room = source.header.room;
        let (content, receipt) = make(source, consent)?;
        Ok(vec![
            Self::post_stage(*destination, content),
            Stage::Post {
                room: source_room,
                content: Content::ShareReceipt(receipt),
                report: false,
            },
        ])
    }

    /// Close the session for everyone: the roster moves to the closed
    /// phase (so every member sees it, signed), then the relay closes the
    /// session. The outcome carries the relay's signed statement of what it
    /// erased, if it erased at once (checked, and kept).
    pub fn close_session(&mut self, session: &SessionId, now: Timestamp) -> Result<OpId> {
        self.mediator_at(session, now)?;
        let mut stages = Vec::new();
        if self.roster_of(session)?.phase != Phase::Closed {
            stages.extend(change_and_announce(
                self.roster_of(session)?,
                RosterEdit::SetPhase(Phase::Closed),
                SystemEvent::PhaseChanged(Phase::Closed),
            )?);
        }
        stages.push(Stage::Close);
        Ok(self.caller(*session, stages, Outcome::Closed(None)))
    }

    /// Ask the relay for its signed statement of what it erased of this
    /// (closed) session; the outcome is the statement, checked and kept.
    pub fn fetch_deletion_statement(
        &mut self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<OpId> {
        self.now = now;
        Ok(self.caller(*session, [Stage::Statement], Outcome::Done))
    }

    // ----- what the device knows -----

    /// The sessions this device holds.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }

    /// Where this device stands in `session`.
    pub fn membership(&self, session: &SessionId) -> Option<&Membership> {
        self.sessions.get(session).map(|s| &s.meta.membership)
    }

    /// The newest verified roster of `session`.
    pub fn roster(&self, session: &SessionId) -> Result<Roster> {
        self.roster_of(session).cloned()
    }

    /// The parties of `session` with their labels (as far as this device
    /// can open them).
    pub fn parties(&self, session: &SessionId) -> Result<Vec<(PartyId, String)>> {
        let state = self.session(session)?;
        let roster = self.roster_of(session)?;
        Ok(roster
            .parties
            .iter()
            .map(|p| {
                let label =
                    newest_label(&state.view, &p.id.0, |r| r.party(&p.id).map(|p| &p.label))
                        .unwrap_or_else(|| "(unreadable)".into());
                (p.id, label)
            })
            .collect())
    }

    /// A member's name as the newest roster naming them gives it (sealed to
    /// the members): a removed member keeps theirs.
    pub fn name_of(&self, session: &SessionId, member: &Fingerprint) -> Option<String> {
        let state = self.sessions.get(session)?;
        newest_label(&state.view, &member.0, |r| {
            r.member(member).map(|m| &m.name)
        })
    }

    /// A party's label as this device can open it (its id otherwise).
    pub fn party_label(&self, session: &SessionId, party: &PartyId) -> String {
        self.parties(session)
            .ok()
            .and_then(|ps| ps.into_iter().find(|(id, _)| id == party))
            .map_or_else(|| party.to_string(), |(_, label)| label)
    }

    /// A room's label for people: "joint", "side", or the party's label.
    pub fn room_label(&self, session: &SessionId, room: &RoomId) -> String {
        let Ok(roster) = self.roster_of(session) else {
            return "?".into();
        };
        match roster.room(room).map(|r| r.kind) {
            Some(RoomKind::Joint) => "joint".into(),
            Some(RoomKind::Side) => "side".into(),
            Some(RoomKind::Private(p)) => format!("{} (private)", self.party_label(session, &p)),
            // A side room the mediator has since closed.
            None => "closed room".into(),
        }
    }

    /// The joint room.
    pub fn joint_room(&self, session: &SessionId) -> Result<RoomId> {
        self.roster_of(session)?
            .joint_room()
            .map(|r| r.id)
            .ok_or(ClientError::Usage("the roster has no joint room"))
    }

    /// The private room of `party`.
    pub fn party_room(&self, session: &SessionId, party: &PartyId) -> Result<RoomId> {
        self.roster_of(session)?
            .private_room(party)
            .map(|r| r.id)
            .ok_or(ClientError::Usage("no such party"))
    }

    /// A party by its label (any case) or its id, as a person names it.
    pub fn party_named(&self, session: &SessionId, name: &str) -> Result<PartyId> {
        self.parties(session)?
            .into_iter()
            .find(|(id, label)| label.eq_ignore_ascii_case(name) || id.to_string() == name)
            .map(|(id, _)| id)
            .ok_or(ClientError::Usage("no party with that label or id"))
    }

    /// (Mediator) who is in the waiting room of `session`, in the order
    /// they knocked.
    pub fn waiting(&self, session: &SessionId) -> Result<Vec<Knock>> {
        self.mediating(session)?;
        Ok(self.knocks(session).to_vec())
    }

    /// (Mediator) the invites this device issued for `session`, in the
    /// order it issued them, each with its link and whether it was used.
    pub fn invites(&self, session: &SessionId) -> Result<Vec<InviteEntry>> {
        self.mediating(session)?;
        Ok(self.session(session)?.meta.invites.clone())
    }

    /// (Mediator) a joiner in the waiting room as a person names them: by
    /// the name on their invite (any case), their safety code, or their
    /// device's fingerprint.
    pub fn waiting_named(&self, session: &SessionId, who: &str) -> Result<Fingerprint> {
        self.mediating(session)?;
        one_named(
            self.knocks(session)
                .iter()
                .map(|k| (k.request.identity.fingerprint(), k.name.clone())),
            who,
            "no one waiting has that name, safety code or device",
        )
    }

    /// A member of `session` as a person names them: by name (any case),
    /// safety code or device fingerprint.
    pub fn member_named(&self, session: &SessionId, who: &str) -> Result<Fingerprint> {
        let roster = self.roster_of(session)?;
        one_named(
            roster.members.iter().map(|m| {
                let f = m.identity.fingerprint();
                (f, self.name_of(session, &f).unwrap_or_default())
            }),
            who,
            "no member has that name, safety code or device",
        )
    }

    /// A room as a person names it: `mine` (this party member's private
    /// room), `joint`, a party's label or id (its private room), or a
    /// room's id (a side room's, say).
    pub fn room_named(&self, session: &SessionId, name: &str) -> Result<RoomId> {
        match name {
            "mine" => self.my_room(session),
            "joint" => self.joint_room(session),
            other => {
                let roster = self.roster_of(session)?;
                if let Some(room) = roster.rooms.iter().find(|r| r.id.to_string() == other) {
                    return Ok(room.id);
                }
                self.party_room(session, &self.party_named(session, other)?)
            }
        }
    }

    /// This device's own private room (a party member's).
    pub fn my_room(&self, session: &SessionId) -> Result<RoomId> {
        let roster = self.roster_of(session)?;
        let member = roster
            .member(&self.fingerprint())
            .ok_or(ClientError::Usage(
                "this device is not a member of that session",
            ))?;
        let party = member.party.ok_or(ClientError::Usage(
            "a mediator has no party room of their own: name the party",
        ))?;
        roster
            .private_room(&party)
            .map(|r| r.id)
            .ok_or(ClientError::Usage("no private room"))
    }

    /// A message this device has opened or sent, by id.
    pub fn message(&self, session: &SessionId, hash: &Digest) -> Option<Opened> {
        self.sessions.get(session)?.message(hash).cloned()
    }

    /// Everything said in `session` that this device has seen or sent, in
    /// order, as events (without the warnings of the moment).
    pub fn history(&self, session: &SessionId) -> Vec<Event> {
        self.history_since(session, 0)
    }

    /// The history of `session` after its first `seen` entries: what a
    /// reader who has shown `seen` of them has not shown yet.
    pub fn history_since(&self, session: &SessionId, seen: usize) -> Vec<Event> {
        self.sessions.get(session).map_or_else(Vec::new, |s| {
            s.messages
                .iter()
                .skip(seen)
                .map(|(index, m)| crate::event::of_message(*session, *index, m.clone()))
                .collect()
        })
    }

    /// The offers log: every offer this device has seen made or carried in
    /// `session`, in the order they came.
    pub fn offers(&self, session: &SessionId) -> Vec<OfferEntry> {
        self.sessions.get(session).map_or_else(Vec::new, |s| {
            crate::offers::log(&s.messages, |who| {
                s.view
                    .rosters()
                    .any(|r| r.member(who).is_some_and(|m| m.role.is_mediator()))
            })
        })
    }

    /// A proposed agreement, by hash.
    pub fn draft(&self, session: &SessionId, hash: &Digest) -> Option<Agreement> {
        self.sessions
            .get(session)?
            .messages
            .iter()
            .find_map(|(_, m)| match &m.content {
                Content::AgreementDraft(a) if a.hash() == *hash => Some(a.clone()),
                _ => None,
            })
    }

    /// The concluded agreement of `session`, signed by everyone and
    /// countersigned, if this device holds it (in the session; a kept copy
    /// of an erased session is the driver's to read).
    pub fn agreement(&self, session: &SessionId) -> Option<SignedAgreement> {
        self.newest(session, |c| match c {
            Content::AgreementFinal(a) => Some(a.clone()),
            _ => None,
        })
    }
}

/// The one person among `people` (device, name) that `who` names: their
/// name in any case, their safety code (spaces optional) or their device's
/// fingerprint. Two people who answer to it are an error, not a guess.
fn one_named(
    people: impl Iterator<Item = (Fingerprint, String)>,
    who: &str,
    none: &'static str,
) -> Result<Fingerprint> {
    let who = who.trim();
    let digits: String = who.chars().filter(|c| !c.is_whitespace()).collect();
    let mut found = people.filter(|(device, name)| {
        name.eq_ignore_ascii_case(who)
            || device.to_string() == who
            || device.safety_code().replace(' ', "") == digits
    });
    match (found.next(), found.next()) {
        (Some((device, _)), None) => Ok(device),
        (Some(_), Some(_)) => Err(ClientError::Usage(
            "more than one person answers to that name: give their safety code instead",
        )),
        (None, _) => Err(ClientError::Usage(none)),
    }
}

/// The newest label `pick` finds in the rosters that this device can open:
/// a party that withdrew no longer holds the joint room's newer keys, and
/// keeps the names as they were when it left.
fn newest_label(
    view: &SessionView,
    subject: &[u8],
    pick: impl Fn(&caucus_protocol::roster::Roster) -> Option<&caucus_protocol::keys::SealedLabel>,
) -> Option<String> {
    view.rosters()
        .rev()
        .filter_map(pick)
        .find_map(|label| view.open_label(label, subject).ok())
}
