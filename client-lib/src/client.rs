//! The client: one device, its state directory and its connection to one
//! relay. All cryptography goes through `caucus-protocol`; the relay is
//! untrusted. An engine task verifies everything the relay sends, keeps the
//! state directory current, and turns it into [`Event`]s; the methods here
//! seal, sign and post.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use caucus_protocol::agreement::{Agreement, Signatory, SignedAgreement};
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, ShareReceipt, Sharing, Step, SystemEvent};
use caucus_protocol::crypto::Digest;
use caucus_protocol::deletion::SignedDeletionStatement;
use caucus_protocol::identity::{DeviceKeys, Fingerprint};
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::invite::Invite;
use caucus_protocol::keys::SignedKeyBundle;
use caucus_protocol::offer::Offer;
use caucus_protocol::roster::{Phase, Role, RoomKind, Roster, SignedRoster};
use caucus_protocol::session::{Opened, SessionView};
use caucus_protocol::wire::{self, Encoded, ErrorCode, PartyStatus, RequestBody, RoomCursor};
use tokio::sync::mpsc;

use crate::error::ClientError;
use crate::event::{Event, Warning};
use crate::offers::OfferEntry;
use crate::store::{InviteEntry, Kept, Meta, SessionState, StateDir};
use crate::transport::{Incoming, Transport};

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the engine and the methods share.
struct Shared {
    keys: DeviceKeys,
    dir: StateDir,
    relay: String,
    transport: Transport,
    sessions: Mutex<HashMap<SessionId, SessionState>>,
    events: mpsc::UnboundedSender<Event>,
    /// Held while a roster change is built and published.
    publishing: tokio::sync::Mutex<()>,
}

/// A message the relay has stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Its index in its room.
    pub index: u64,
    /// Its message id (envelope hash), to consent to or forward it.
    pub message: Digest,
}

/// A Caucus participant's device, connected to a relay.
///
/// Dropping it stops its engine and closes its connection.
pub struct Client {
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Dropped with the client, which stops the engine.
    _stop: tokio::sync::oneshot::Sender<()>,
}

type Result<T> = std::result::Result<T, ClientError>;

impl Shared {
    fn sessions(&self) -> MutexGuard<'_, HashMap<SessionId, SessionState>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Run `f` on a session's state and save it.
    fn with_session<T>(
        &self,
        id: &SessionId,
        f: impl FnOnce(&mut SessionState, &DeviceKeys) -> Result<T>,
    ) -> Result<T> {
        let mut sessions = self.sessions();
        let state = sessions.get_mut(id).ok_or(ClientError::UnknownSession)?;
        let out = f(state, &self.keys)?;
        self.dir.save(state)?;
        Ok(out)
    }

    fn emit(&self, event: Event) {
        // Events are kept until the application reads them (it may also
        // have stopped listening, which is its choice).
        let _ = self.events.send(event);
    }

    fn subscribe_body(&self, id: &SessionId) -> Option<RequestBody> {
        let sessions = self.sessions();
        let state = sessions.get(id)?;
        Some(RequestBody::Subscribe {
            session: *id,
            roster_after: state.view.roster().map_or(0, |r| r.version),
            rooms: state
                .meta
                .cursors
                .iter()
                .map(|(room, after)| RoomCursor {
                    room: *room,
                    after: *after,
                })
                .collect(),
        })
    }

    /// For a session this device has knocked on but not yet been admitted
    /// to: if it has been admitted meanwhile, catch up; if not, knock again
    /// with the stored link (its waiting-room place went with its old
    /// connection). In the background.
    fn knock_again(self: &Arc<Self>, id: SessionId) {
        let shared = self.clone();
        tokio::spawn(async move {
            let Some(body) = shared.subscribe_body(&id) else {
                return;
            };
            match shared.transport.request_ordered(body).await {
                Err(ClientError::Refused {
                    code: ErrorCode::Forbidden,
                    ..
                }) => {}
                _ => return,
            }
            let link = shared.sessions().get(&id).and_then(|s| s.meta.link.clone());
            let Some(invite) = link.and_then(|l| Invite::from_link(&l).ok()) else {
                return;
            };
            let knock = RequestBody::Join {
                token: invite.admission_token(),
                request: Encoded(invite.join_request(shared.keys.public())),
            };
            if let Err(e) = shared.transport.request(knock).await {
                tracing::warn!(session = %id, error = %e, "knocking again failed");
            }
        });
    }

    /// Subscribe in the background (from the engine, which must never wait
    /// for a reply itself).
    fn resubscribe(self: &Arc<Self>, id: SessionId) {
        let shared = self.clone();
        tokio::spawn(async move {
            if let Some(body) = shared.subscribe_body(&id)
                && let Err(e) = shared.transport.request_ordered(body).await
            {
                tracing::warn!(session = %id, error = %e, "subscribe failed");
            }
        });
    }
}

impl Client {
    /// Open the state directory (creating the device identity on first use),
    /// connect to `relay`, and catch up every session kept there for it.
    pub async fn open(dir: StateDir, relay: &str) -> Result<Self> {
        let keys = dir.identity_or_create()?;
        let mut sessions = HashMap::new();
        for id in dir.sessions()? {
            let state = dir.load(&id)?;
            if state.meta.relay == relay {
                sessions.insert(id, state);
            }
        }
        let (transport, incoming) = Transport::start(relay.to_owned(), clone_keys(&keys)?);
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            keys,
            dir,
            relay: relay.to_owned(),
            transport,
            sessions: Mutex::new(sessions),
            events: events_tx,
            publishing: tokio::sync::Mutex::new(()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(engine(shared.clone(), incoming, stopped));
        let client = Self {
            shared,
            events,
            _stop: stop,
        };
        let ids: Vec<SessionId> = client.shared.sessions().keys().copied().collect();
        for id in ids {
            let (joined, waiting) = client
                .shared
                .sessions()
                .get(&id)
                .map_or((false, false), |s| {
                    let live = !s.meta.closed;
                    (live && s.meta.joined, live && !s.meta.joined)
                });
            if waiting {
                client.shared.knock_again(id);
                continue;
            }
            if !joined {
                continue;
            }
            match client.sync(&id).await {
                Ok(()) => {}
                // Erased, or this device was removed: the session is over for
                // this device; the others are still served.
                Err(ClientError::Refused {
                    code: ErrorCode::NotFound | ErrorCode::Forbidden | ErrorCode::SessionClosed,
                    ..
                }) => {
                    client.shared.with_session(&id, |s, _| {
                        s.meta.closed = true;
                        Ok(())
                    })?;
                    client.shared.emit(Event::Closed { session: id });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(client)
    }

    /// Join a session from an invite link: connect to the link's relay and
    /// knock. The mediator's key is pinned from the link. [`Event::Joined`]
    /// arrives once the mediator admits this device.
    pub async fn join(dir: StateDir, link: &str) -> Result<(Self, SessionId)> {
        let invite = Invite::from_link(link)?;
        let client = Self::open(dir, &invite.relay).await?;
        let session = invite.session;
        {
            let mut sessions = client.shared.sessions();
            let state = sessions.entry(session).or_insert_with(|| SessionState {
                view: SessionView::new(session, invite.mediator),
                meta: Meta {
                    relay: invite.relay.clone(),
                    link: Some(link.trim().to_owned()),
                    ..Meta::default()
                },
                messages: Vec::new(),
            });
            client.shared.dir.save(state)?;
        }
        client
            .shared
            .transport
            .request(RequestBody::Join {
                token: invite.admission_token(),
                request: Encoded(invite.join_request(client.shared.keys.public())),
            })
            .await?;
        Ok((client, session))
    }

    /// This device's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.shared.keys.fingerprint()
    }

    /// The relay's URL.
    pub fn relay(&self) -> &str {
        &self.shared.relay
    }

    /// The next event, or `None` once the client has stopped.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event if one comes within `wait`.
    pub async fn next_event_within(&mut self, wait: std::time::Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Catch up with the relay on `session`: every roster, key and message
    /// missed. Resolves once all of it has been verified and applied.
    pub async fn sync(&self, session: &SessionId) -> Result<()> {
        let body = self
            .shared
            .subscribe_body(session)
            .ok_or(ClientError::UnknownSession)?;
        self.shared.transport.request_ordered(body).await?;
        Ok(())
    }

    /// The sessions this client holds.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.shared.sessions().keys().copied().collect()
    }

    /// The newest verified roster of `session`.
    pub fn roster(&self, session: &SessionId) -> Result<Roster> {
        self.shared
            .sessions()
            .get(session)
            .and_then(|s| s.view.roster().cloned())
            .ok_or(ClientError::UnknownSession)
    }

    /// The parties of `session` with their labels (as far as this device can
    /// open them).
    pub fn parties(&self, session: &SessionId) -> Result<Vec<(PartyId, String)>> {
        let sessions = self.shared.sessions();
        let state = sessions.get(session).ok_or(ClientError::UnknownSession)?;
        let roster = state.view.roster().ok_or(ClientError::UnknownSession)?;
        Ok(roster
            .parties
            .iter()
            .map(|p| {
                let label = state
                    .view
                    .open_label(&p.label, &p.id.0)
                    .unwrap_or_else(|_| "(unreadable)".into());
                (p.id, label)
            })
            .collect())
    }

    /// A member's name as the roster gives it (sealed to the members).
    pub fn name_of(&self, session: &SessionId, member: &Fingerprint) -> Option<String> {
        let sessions = self.shared.sessions();
        let state = sessions.get(session)?;
        let m = state.view.roster()?.member(member)?.clone();
        state.view.open_label(&m.name, &member.0).ok()
    }

    /// A room's label for people: "joint", "side", or the party's label.
    pub fn room_label(&self, session: &SessionId, room: &RoomId) -> String {
        let Ok(roster) = self.roster(session) else {
            return "?".into();
        };
        match roster.room(room).map(|r| r.kind) {
            Some(RoomKind::Joint) => "joint".into(),
            Some(RoomKind::Side) => "side".into(),
            Some(RoomKind::Private(p)) => self
                .parties(session)
                .ok()
                .and_then(|ps| ps.into_iter().find(|(id, _)| *id == p).map(|(_, l)| l))
                .map_or_else(|| "private".into(), |l| format!("{l} (private)")),
            // A side room the mediator has since closed.
            None => "closed room".into(),
        }
    }

    /// The joint room.
    pub fn joint_room(&self, session: &SessionId) -> Result<RoomId> {
        self.roster(session)?
            .joint_room()
            .map(|r| r.id)
            .ok_or(ClientError::Usage("the roster has no joint room"))
    }

    /// The private room of `party`.
    pub fn party_room(&self, session: &SessionId, party: &PartyId) -> Result<RoomId> {
        self.roster(session)?
            .private_room(party)
            .map(|r| r.id)
            .ok_or(ClientError::Usage("no such party"))
    }

    /// This device's own private room (a party member's).
    pub fn my_room(&self, session: &SessionId) -> Result<RoomId> {
        let roster = self.roster(session)?;
        let party = roster
            .member(&self.fingerprint())
            .and_then(|m| m.party)
            .ok_or(ClientError::Usage("this device is not a party member here"))?;
        roster
            .private_room(&party)
            .map(|r| r.id)
            .ok_or(ClientError::Usage("no private room"))
    }

    /// A message this client has opened or sent, by id.
    pub fn message(&self, session: &SessionId, hash: &Digest) -> Option<Opened> {
        let sessions = self.shared.sessions();
        sessions
            .get(session)?
            .messages
            .iter()
            .find(|(_, m)| &m.hash == hash)
            .map(|(_, m)| m.clone())
    }

    /// Everything said in `session` that this device has seen or sent, in
    /// order, as events (without the warnings of the moment).
    pub fn history(&self, session: &SessionId) -> Vec<Event> {
        let sessions = self.shared.sessions();
        sessions.get(session).map_or_else(Vec::new, |s| {
            s.messages
                .iter()
                .map(|(index, m)| event_of(*session, *index, m.clone()))
                .collect()
        })
    }

    // ----- as a party member, or anyone in a room -----

    /// Seal and post `content` in `room`; once the relay has stored it
    /// durably, its index and its message id.
    pub async fn post(
        &self,
        session: &SessionId,
        room: &RoomId,
        content: &Content,
    ) -> Result<Sent> {
        post_as(&self.shared, session, room, content).await
    }

    /// Send text in `room` with a sharing label (*mediator only* is the
    /// practice in a private room).
    pub async fn send(
        &self,
        session: &SessionId,
        room: &RoomId,
        text: &str,
        sharing: Sharing,
    ) -> Result<Sent> {
        let content = Content::Text {
            sharing,
            body: text.to_owned(),
        };
        self.post(session, room, &content).await
    }

    /// Let the mediator share one of this device's own messages.
    pub async fn consent(&self, session: &SessionId, message: &Digest) -> Result<Sent> {
        let original = self
            .message(session, message)
            .ok_or(ClientError::Usage("no such message"))?;
        if original.header.sender != self.fingerprint() {
            return Err(ClientError::Usage(
                "one consents only to one's own messages",
            ));
        }
        let room = original.header.room;
        self.post(session, &room, &Content::Consent { message: *message })
            .await
    }

    /// Record a settlement offer or counter-offer for this device's party,
    /// in its private room, for the mediator to carry across.
    pub async fn make_offer(&self, session: &SessionId, offer: &Offer) -> Result<Sent> {
        offer.validate()?;
        let room = self.my_room(session)?;
        self.post(session, &room, &Content::Offer(offer.clone()))
            .await
    }

    /// The offers log: every offer this device has seen made or carried in
    /// `session`, in the order they came. A party sees what it made and
    /// what it received; a mediator sees every party's.
    pub fn offers(&self, session: &SessionId) -> Vec<OfferEntry> {
        let sessions = self.shared.sessions();
        sessions
            .get(session)
            .map_or_else(Vec::new, |s| crate::offers::log(&s.messages))
    }

    /// Erase this device's copy of a session: its room keys, chains and
    /// messages. The concluded agreement, if any, and the relay's deletion
    /// statement are kept (under `kept/` in the state directory); nothing
    /// else of the session remains here.
    pub fn erase(&self, session: &SessionId) -> Result<()> {
        if let Some(agreement) = self.agreement(session) {
            self.shared
                .dir
                .keep(session, Kept::Agreement, &agreement.to_bytes())?;
        }
        let removed = self.shared.sessions().remove(session);
        if removed.is_none() {
            return Err(ClientError::UnknownSession);
        }
        self.shared.dir.erase(session)
    }

    /// Withdraw this device's party from the mediation: a signed notice in
    /// the party's private room. The mediator's client marks the party
    /// withdrawn in the roster and tells the joint room that a party has
    /// withdrawn (not which).
    pub async fn withdraw(&self, session: &SessionId) -> Result<Sent> {
        let room = self.my_room(session)?;
        self.post(session, &room, &Content::Withdrawal).await
    }

    /// Agree, for this device's party, to a step of the process: to continue
    /// after the individual meeting, or to meet the others jointly. A signed
    /// record in the party's private room; the mediator's client will not
    /// move on without every party's.
    pub async fn agree(&self, session: &SessionId, step: Step) -> Result<Sent> {
        let room = self.my_room(session)?;
        self.post(session, &room, &Content::Agree { step }).await
    }

    /// Tell the mediator this party member's status.
    pub async fn set_status(&self, session: &SessionId, status: PartyStatus) -> Result<()> {
        self.shared
            .transport
            .request(RequestBody::Status {
                session: *session,
                status,
            })
            .await?;
        Ok(())
    }

    // ----- as the mediator -----

    /// Create a session with this device as lead mediator (named `name`) and
    /// one party per label, each with its private room; the joint room
    /// starts closed. Returns the session and its parties in order.
    pub async fn create_session(
        &self,
        name: &str,
        parties: &[&str],
    ) -> Result<(SessionId, Vec<PartyId>)> {
        let keys = &self.shared.keys;
        let session = SessionId::random()?;
        let mut builder = RosterBuilder::new(session, keys, name)?;
        let party_ids = parties
            .iter()
            .map(|p| builder.add_party(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (roster, room_keys) = builder.sign(keys)?;
        let mut view = SessionView::new(session, keys.fingerprint());
        view.accept_roster(roster.clone())?;
        let bundles = room_keys
            .iter()
            .map(|k| view.seal_key_bundle(keys, k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let state = SessionState {
            view,
            meta: Meta {
                relay: self.shared.relay.clone(),
                joined: true,
                ready: true,
                ..Meta::default()
            },
            messages: Vec::new(),
        };
        self.shared.dir.save(&state)?;
        self.shared.sessions().insert(session, state);
        self.shared
            .transport
            .request(RequestBody::CreateSession {
                roster: Encoded(roster),
            })
            .await?;
        self.publish_bundles(bundles).await?;
        self.sync(&session).await?;
        Ok((session, party_ids))
    }

    async fn publish_bundles(&self, bundles: Vec<SignedKeyBundle>) -> Result<()> {
        for bundle in bundles {
            self.shared
                .transport
                .request(RequestBody::PublishKeys {
                    bundle: Encoded(bundle),
                })
                .await?;
        }
        Ok(())
    }

    /// Change the roster with `edit`, sign it as the next version, and
    /// publish it with the keys of every new epoch.
    async fn publish(
        &self,
        session: &SessionId,
        edit: impl FnOnce(&mut RosterBuilder) -> std::result::Result<(), caucus_protocol::Error>,
    ) -> Result<()> {
        publish(&self.shared, session, edit).await
    }

    /// An invite link for one person joining `party` (named `name`), valid
    /// until `expires_at` (seconds since the Unix epoch). Send it to them
    /// privately: it holds the invite secret.
    pub async fn invite(
        &self,
        session: &SessionId,
        party: &PartyId,
        name: &str,
        expires_at: u64,
    ) -> Result<String> {
        self.roster(session)?
            .party(party)
            .ok_or(ClientError::Usage("no such party"))?;
        self.issue_invite(session, Some(*party), name, expires_at)
            .await
    }

    /// An invite link for a co-mediator (named `name`): once admitted, a
    /// mediator's rights in every room.
    pub async fn invite_co_mediator(
        &self,
        session: &SessionId,
        name: &str,
        expires_at: u64,
    ) -> Result<String> {
        self.issue_invite(session, None, name, expires_at).await
    }

    async fn issue_invite(
        &self,
        session: &SessionId,
        party: Option<PartyId>,
        name: &str,
        expires_at: u64,
    ) -> Result<String> {
        let invite = Invite::new(
            self.shared.relay.clone(),
            *session,
            self.fingerprint(),
            expires_at,
        )?;
        self.shared
            .transport
            .request(RequestBody::CreateInvite {
                session: *session,
                invite: invite.id,
                token_hash: invite.admission_token().hash(),
                expires_at,
            })
            .await?;
        let link = invite.to_link();
        self.shared.with_session(session, |s, _| {
            s.meta.invites.push(InviteEntry {
                id: invite.id,
                link: link.clone(),
                party,
                name: name.to_owned(),
                used: false,
            });
            Ok(())
        })?;
        Ok(link)
    }

    /// Remove a member: every room they were in starts a new epoch whose key
    /// they never receive.
    pub async fn remove_member(&self, session: &SessionId, member: &Fingerprint) -> Result<()> {
        self.publish(session, |b| b.remove_member(member)).await?;
        let room = self.joint_room(session)?;
        self.post(
            session,
            &room,
            &Content::System(SystemEvent::MemberRemoved(*member)),
        )
        .await?;
        Ok(())
    }

    /// The parties still in the mediation that have not agreed to `step`
    /// since they last withdrew, as this (mediator) device has seen.
    pub fn parties_not_agreed(&self, session: &SessionId, step: Step) -> Result<Vec<PartyId>> {
        let sessions = self.shared.sessions();
        let state = sessions.get(session).ok_or(ClientError::UnknownSession)?;
        let roster = state.view.roster().ok_or(ClientError::UnknownSession)?;
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

    /// Move the mediation to `phase`, and say so in the joint room. Moving on
    /// from the individual meetings needs every party's agreement to
    /// continue.
    pub async fn set_phase(&self, session: &SessionId, phase: Phase) -> Result<()> {
        let current = self.roster(session)?.phase;
        if current <= Phase::IndividualMeetings
            && phase > Phase::IndividualMeetings
            && !self.parties_not_agreed(session, Step::Continue)?.is_empty()
        {
            return Err(ClientError::Usage(
                "every party must first agree to continue after its individual meeting",
            ));
        }
        self.enter_phase(session, phase).await
    }

    /// Publish `phase` in the roster and announce it in the joint room.
    async fn enter_phase(&self, session: &SessionId, phase: Phase) -> Result<()> {
        self.publish(session, |b| {
            b.set_phase(phase);
            Ok(())
        })
        .await?;
        let joint = self.joint_room(session)?;
        self.post(
            session,
            &joint,
            &Content::System(SystemEvent::PhaseChanged(phase)),
        )
        .await?;
        Ok(())
    }

    /// Open or close the joint room to the parties, and say so there. It
    /// opens only in the negotiation or agreement phase, and only once every
    /// party still in the mediation has agreed to a joint meeting.
    pub async fn set_joint_open(&self, session: &SessionId, open: bool) -> Result<()> {
        if open {
            let phase = self.roster(session)?.phase;
            if !matches!(phase, Phase::Negotiation | Phase::Agreement) {
                return Err(ClientError::Usage(
                    "the joint room opens only in the negotiation or agreement phase",
                ));
            }
            if !self
                .parties_not_agreed(session, Step::JointMeeting)?
                .is_empty()
            {
                return Err(ClientError::Usage(
                    "every party must first agree to a joint meeting",
                ));
            }
        }
        let room = self.joint_room(session)?;
        self.publish(session, |b| b.set_open(&room, open)).await?;
        let event = if open {
            SystemEvent::JointOpened
        } else {
            SystemEvent::JointClosed
        };
        self.post(session, &room, &Content::System(event)).await?;
        Ok(())
    }

    /// Readmit a party that withdrew, and say so in the joint room.
    pub async fn readmit(&self, session: &SessionId, party: &PartyId) -> Result<()> {
        self.publish(session, |b| b.set_withdrawn(party, false))
            .await?;
        let joint = self.joint_room(session)?;
        self.post(
            session,
            &joint,
            &Content::System(SystemEvent::PartyRejoined),
        )
        .await?;
        Ok(())
    }

    /// Open a side room for `members` (the mediators are always in it): the
    /// lawyers only, say. Its key is sealed to exactly those members.
    pub async fn create_side_room(
        &self,
        session: &SessionId,
        members: &[Fingerprint],
    ) -> Result<RoomId> {
        let mut created = None;
        self.publish(session, |b| {
            created = Some(b.add_side_room(members)?);
            Ok(())
        })
        .await?;
        created.ok_or(ClientError::Usage("no side room was made"))
    }

    /// Close a side room: it leaves the roster, and no one can post in it.
    pub async fn close_side_room(&self, session: &SessionId, room: &RoomId) -> Result<()> {
        self.publish(session, |b| b.remove_side_room(room)).await
    }

    /// Propose an agreement: the exact `terms`, with a reality-testing
    /// `checklist`, for every member of every party still in the mediation to
    /// sign. Posted in the joint room and in each party's private room, so
    /// that it can be shuttled as well as read together. Returns its hash.
    pub async fn propose_agreement(
        &self,
        session: &SessionId,
        title: &str,
        terms: &str,
        checklist: &[String],
    ) -> Result<Digest> {
        let (agreement, rooms) = {
            let sessions = self.shared.sessions();
            let state = sessions.get(session).ok_or(ClientError::UnknownSession)?;
            let roster = state.view.roster().ok_or(ClientError::UnknownSession)?;
            let name = |m: &caucus_protocol::roster::Member| {
                state
                    .view
                    .open_label(&m.name, &m.id().0)
                    .unwrap_or_default()
            };
            let mediator = roster
                .member(&self.fingerprint())
                .filter(|m| m.role == Role::Mediator)
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
                mediator: Signatory {
                    identity: mediator.identity.clone(),
                    name: name(mediator),
                    party: None,
                },
                signatories,
                drafted_at: now(),
            };
            (agreement, everyones_rooms(roster))
        };
        let hash = agreement.hash();
        for room in rooms {
            self.post(session, &room, &Content::AgreementDraft(agreement.clone()))
                .await?;
        }
        Ok(hash)
    }

    /// Sign a proposed agreement, exactly as drafted (after reading it: the
    /// terms are in the [`Event::AgreementProposed`]).
    pub async fn sign_agreement(&self, session: &SessionId, agreement: &Digest) -> Result<Sent> {
        let draft = self
            .draft(session, agreement)
            .ok_or(ClientError::Usage("no such proposed agreement"))?;
        let signature = draft.sign(&self.shared.keys)?;
        let room = self.my_room(session)?;
        self.post(
            session,
            &room,
            &Content::AgreementSignature {
                agreement: *agreement,
                signature,
            },
        )
        .await
    }

    fn draft(&self, session: &SessionId, hash: &Digest) -> Option<Agreement> {
        let sessions = self.shared.sessions();
        sessions
            .get(session)?
            .messages
            .iter()
            .find_map(|(_, m)| match &m.content {
                Content::AgreementDraft(a) if a.hash() == *hash => Some(a.clone()),
                _ => None,
            })
    }

    /// The concluded agreement of `session`, signed by everyone and
    /// countersigned, if this device holds it.
    pub fn agreement(&self, session: &SessionId) -> Option<SignedAgreement> {
        let held = self.shared.sessions().get(session).and_then(|s| {
            s.messages.iter().rev().find_map(|(_, m)| match &m.content {
                Content::AgreementFinal(a) => Some(a.clone()),
                _ => None,
            })
        });
        held.or_else(|| {
            let kept = self.shared.dir.kept(session, Kept::Agreement).ok()??;
            SignedAgreement::from_bytes(&kept).ok()
        })
    }

    /// Say which room the mediator is with (`None`: away); with `disclose`,
    /// the other parties learn which.
    pub async fn set_location(
        &self,
        session: &SessionId,
        room: Option<RoomId>,
        disclose: bool,
    ) -> Result<()> {
        self.shared
            .transport
            .request(RequestBody::Location {
                session: *session,
                room,
                disclose,
            })
            .await?;
        Ok(())
    }

    /// Carry a message to `destination`, verbatim or (with `reframed`) in the
    /// mediator's words, and post the share receipt in its source room.
    /// *Mediator only* text is refused unless its author has consented.
    pub async fn forward(
        &self,
        session: &SessionId,
        message: &Digest,
        destination: &RoomId,
        reframed: Option<String>,
    ) -> Result<Sent> {
        self.carry(session, message, destination, |source, consent| {
            let (forward, receipt) = source.forward(*destination, reframed, consent)?;
            Ok((Content::Forward(forward), receipt))
        })
        .await
    }

    /// Record a settlement offer for a party, in its private room (when the
    /// party asks the mediator to put it for them).
    pub async fn make_offer_for(
        &self,
        session: &SessionId,
        party: &PartyId,
        offer: &Offer,
    ) -> Result<Sent> {
        offer.validate()?;
        let room = self.party_room(session, party)?;
        self.post(session, &room, &Content::Offer(offer.clone()))
            .await
    }

    /// Carry an offer to `destination` (another party's private room, or
    /// the joint room), verbatim or `restated` in the mediator's terms, and
    /// post the share receipt where it was made. Returns the carried copy.
    pub async fn carry_offer(
        &self,
        session: &SessionId,
        offer: &Digest,
        destination: &RoomId,
        restated: Option<Offer>,
    ) -> Result<Sent> {
        self.carry(session, offer, destination, |source, _| {
            let (carried, receipt) = source.carry_offer(*destination, restated)?;
            Ok((Content::CarriedOffer(carried), receipt))
        })
        .await
    }

    /// Carry `message` to `destination` as `make` builds it from the source
    /// and its author's consent, then post the receipt in the source room.
    async fn carry(
        &self,
        session: &SessionId,
        message: &Digest,
        destination: &RoomId,
        make: impl FnOnce(&Opened, Option<&Opened>) -> Result<(Content, ShareReceipt)>,
    ) -> Result<Sent> {
        let (content, receipt, source_room) = {
            let sessions = self.shared.sessions();
            let state = sessions.get(session).ok_or(ClientError::UnknownSession)?;
            let source = state
                .messages
                .iter()
                .map(|(_, m)| m)
                .find(|m| &m.hash == message)
                .ok_or(ClientError::Usage("no such message"))?;
            let consent = state.messages.iter().map(|(_, m)| m).find(|c| {
                c.content == Content::Consent { message: *message }
                    && c.header.sender == source.header.sender
                    && c.header.room == source.header.room
            });
            let (content, receipt) = make(source, consent)?;
            (content, receipt, source.header.room)
        };
        let sent = self.post(session, destination, &content).await?;
        self.post(session, &source_room, &Content::ShareReceipt(receipt))
            .await?;
        Ok(sent)
    }

    /// Close the session for everyone: the roster moves to the closed phase
    /// (so every member sees it, signed), then the relay closes the session.
    /// If the relay erases it at once, its
    /// signed statement of what it erased, checked and kept (see
    /// [`Client::deletion_statement`] for a relay that keeps data for a
    /// while first).
    pub async fn close_session(
        &self,
        session: &SessionId,
    ) -> Result<Option<SignedDeletionStatement>> {
        // Every member sees the end in the signed roster first.
        if self.roster(session)?.phase != Phase::Closed {
            self.enter_phase(session, Phase::Closed).await?;
        }
        let accepted = self
            .shared
            .transport
            .request(RequestBody::CloseSession { session: *session })
            .await?;
        self.shared.with_session(session, |s, _| {
            s.meta.closed = true;
            Ok(())
        })?;
        accepted
            .statement
            .map(|s| self.keep_statement(session, s))
            .transpose()
    }

    /// The relay's signed statement of what it erased of this (closed)
    /// session: the copy kept here, or else asked of the relay, checked and
    /// kept. The relay refuses while it still keeps the session's data.
    pub async fn deletion_statement(&self, session: &SessionId) -> Result<SignedDeletionStatement> {
        if let Some(bytes) = self.shared.dir.kept(session, Kept::Deletion)? {
            let kept = SignedDeletionStatement::from_bytes(&bytes)
                .map_err(caucus_protocol::Error::from)?;
            kept.verify()?;
            return Ok(kept);
        }
        let statement = self
            .shared
            .transport
            .request(RequestBody::DeletionStatement { session: *session })
            .await?
            .statement
            .ok_or(ClientError::Connection(
                "the relay answered without a statement".into(),
            ))?;
        self.keep_statement(session, statement)
    }

    fn keep_statement(
        &self,
        session: &SessionId,
        statement: SignedDeletionStatement,
    ) -> Result<SignedDeletionStatement> {
        let relay = self
            .shared
            .transport
            .relay_fingerprint()
            .ok_or(ClientError::Connection("no relay identity yet".into()))?;
        statement.verify_for(session, &self.fingerprint(), &relay)?;
        self.shared
            .dir
            .keep(session, Kept::Deletion, &statement.to_bytes())?;
        Ok(statement)
    }
}

/// Seal and post `content` in `room` as this device (see [`Client::post`]).
async fn post_as(
    shared: &Shared,
    session: &SessionId,
    room: &RoomId,
    content: &Content,
) -> Result<Sent> {
    // Just after a roster change, the new epoch's key may still be on its
    // way (bundles follow the roster): wait for it a little.
    for _ in 0..100 {
        let waiting = shared.sessions().get(session).is_some_and(|s| {
            s.view.roster().and_then(|r| r.room(room)).is_some_and(|r| {
                r.has(&shared.keys.fingerprint()) && s.view.room_key(room, r.epoch).is_none()
            })
        });
        if !waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (envelope, own) = shared.with_session(session, |s, keys| {
        let envelope = s.view.seal(keys, room, content)?;
        let own = Opened {
            header: envelope.header().clone(),
            hash: envelope.hash(),
            content: content.clone(),
            gap: None,
        };
        Ok((envelope, own))
    })?;
    let message = own.hash;
    // Ordered: the reply is taken only after every envelope that reached
    // the socket before it has been applied, so moving the room's cursor to
    // our own index cannot skip anyone else's message.
    let index = shared
        .transport
        .request_ordered(RequestBody::Post {
            envelope: Encoded(envelope),
        })
        .await?
        .index
        .ok_or(ClientError::Connection(
            "post acknowledged without an index".into(),
        ))?;
    shared.with_session(session, |s, _| {
        let cursor = s.meta.cursors.entry(*room).or_insert(0);
        *cursor = (*cursor).max(index);
        // Keep our own words too: to consent to them, or to forward them.
        s.messages.push((index, own.clone()));
        Ok(())
    })?;
    // The relay does not echo our own posts; the event stream shows them
    // once stored, like anyone else's.
    emit_opened(shared, *session, index, own);
    Ok(Sent { index, message })
}

/// The joint room and every party's private room: where everyone's copy of
/// the agreement goes.
fn everyones_rooms(roster: &Roster) -> Vec<RoomId> {
    roster
        .rooms
        .iter()
        .filter(|r| matches!(r.kind, RoomKind::Joint | RoomKind::Private(_)))
        .map(|r| r.id)
        .collect()
}

/// As the lead mediator: a signatory signed a draft. Once every signatory
/// has, countersign and give everyone the copy.
fn on_agreement_signature(shared: &Arc<Shared>, session: SessionId, agreement: Digest) {
    let concluded = {
        let sessions = shared.sessions();
        let Some(state) = sessions.get(&session) else {
            return;
        };
        if state.view.mediator() != shared.keys.fingerprint() {
            return;
        }
        let already = state.messages.iter().any(|(_, m)| {
            matches!(&m.content, Content::AgreementFinal(a) if a.agreement.hash() == agreement)
        });
        let Some(draft) = state.messages.iter().find_map(|(_, m)| match &m.content {
            Content::AgreementDraft(a) if a.hash() == agreement => Some(a.clone()),
            _ => None,
        }) else {
            return;
        };
        if already {
            return;
        }
        // The signature each signatory posted for this draft, if it verifies.
        let signatures: Option<Vec<_>> = draft
            .signatories
            .iter()
            .map(|s| {
                let who = s.identity.fingerprint();
                state.messages.iter().find_map(|(_, m)| match &m.content {
                    Content::AgreementSignature {
                        agreement: a,
                        signature,
                    } if *a == agreement && m.header.sender == who => Some(*signature),
                    _ => None,
                })
            })
            .collect();
        let Some(signatures) = signatures else {
            return; // not everyone yet
        };
        let rooms = state.view.roster().map(everyones_rooms).unwrap_or_default();
        match SignedAgreement::countersign(draft, signatures, &shared.keys) {
            Ok(signed) => (signed, rooms),
            Err(e) => {
                warn(
                    shared,
                    session,
                    Warning::Verification,
                    format!("agreement not countersigned: {e}"),
                );
                return;
            }
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let (signed, rooms) = concluded;
        for room in rooms {
            if let Err(e) = post_as(
                &shared,
                &session,
                &room,
                &Content::AgreementFinal(signed.clone()),
            )
            .await
            {
                warn(
                    &shared,
                    session,
                    Warning::Verification,
                    format!("giving out the agreement failed: {e}"),
                );
            }
        }
    });
}

/// A copy of the device keys for the connection task.
fn clone_keys(keys: &DeviceKeys) -> Result<DeviceKeys> {
    Ok(DeviceKeys::from_secret_bytes(&keys.to_secret_bytes())?)
}

async fn publish(
    shared: &Shared,
    session: &SessionId,
    edit: impl FnOnce(&mut RosterBuilder) -> std::result::Result<(), caucus_protocol::Error>,
) -> Result<()> {
    // One roster change at a time: each is built on the one before.
    let _one_at_a_time = shared.publishing.lock().await;
    let (roster, room_keys) = {
        let sessions = shared.sessions();
        let state = sessions.get(session).ok_or(ClientError::UnknownSession)?;
        let mut builder = RosterBuilder::resume(&state.view)?;
        edit(&mut builder)?;
        builder.sign(&shared.keys)?
    };
    // The relay first: only a roster it accepted becomes ours, so the two
    // never diverge if it refuses or the connection drops.
    shared
        .transport
        .request_ordered(RequestBody::PublishRoster {
            roster: Encoded(roster.clone()),
        })
        .await?;
    let bundles = shared.with_session(session, |s, keys| {
        // The relay's own copy of the event may have been applied already.
        if s.view.signed_roster().map(SignedRoster::hash) != Some(roster.hash()) {
            s.view.accept_roster(roster)?;
        }
        Ok(room_keys
            .iter()
            .map(|k| s.view.seal_key_bundle(keys, k))
            .collect::<std::result::Result<Vec<_>, _>>()?)
    })?;
    for bundle in bundles {
        shared
            .transport
            .request(RequestBody::PublishKeys {
                bundle: Encoded(bundle),
            })
            .await?;
    }
    Ok(())
}

/// Verify and apply everything the relay sends, in order.
/// Stops when the client is dropped; with it go the last references to the
/// shared state, and so the connection.
async fn engine(
    shared: Arc<Shared>,
    mut incoming: mpsc::Receiver<Incoming>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut connections = 0u64;
    loop {
        let item = tokio::select! {
            _ = &mut stopped => return,
            item = incoming.recv() => match item {
                Some(item) => item,
                None => return,
            },
        };
        match item {
            Incoming::Connected => {
                connections += 1;
                if connections > 1 {
                    let ids: Vec<(SessionId, bool)> = shared
                        .sessions()
                        .iter()
                        .filter(|(_, s)| !s.meta.closed)
                        .map(|(id, s)| (*id, s.meta.joined))
                        .collect();
                    for (id, joined) in ids {
                        if joined {
                            shared.resubscribe(id);
                        } else {
                            shared.knock_again(id);
                        }
                    }
                }
            }
            Incoming::Reply(reply, waiter) => {
                let _ = waiter.send(reply);
            }
            Incoming::Event(event) => handle(&shared, *event),
        }
    }
}

fn warn(shared: &Shared, session: SessionId, kind: Warning, detail: impl Into<String>) {
    shared.emit(Event::Warning {
        session,
        kind,
        detail: detail.into(),
    });
}

fn handle(shared: &Arc<Shared>, event: wire::Event) {
    match event {
        wire::Event::Roster {
            session, roster, ..
        } => on_roster(shared, session, roster.0),
        wire::Event::KeyBundle {
            session, bundle, ..
        } => {
            let result = shared.with_session(&session, |s, keys| {
                s.view.open_key_bundle(keys, &bundle.0)?;
                Ok(())
            });
            if result.is_ok() {
                announce_if_ready(shared, session);
            }
            if let Err(e) = result {
                warn(
                    shared,
                    session,
                    Warning::Verification,
                    format!("key bundle refused: {e}"),
                );
            }
        }
        wire::Event::Envelope {
            index, envelope, ..
        } => on_envelope(shared, index, envelope.0),
        wire::Event::JoinRequest { request, .. } => on_join_request(shared, request.0),
        wire::Event::Declined { session, .. } => shared.emit(Event::Declined { session }),
        wire::Event::Presence {
            session,
            online,
            mediator,
            ..
        } => shared.emit(Event::Presence {
            session,
            online,
            mediator,
        }),
        wire::Event::Status {
            session,
            member,
            status,
            ..
        } => shared.emit(Event::Status {
            session,
            member,
            status,
        }),
        wire::Event::SessionClosed { session, .. } => {
            let _ = shared.with_session(&session, |s, _| {
                s.meta.closed = true;
                Ok(())
            });
            shared.emit(Event::Closed { session });
        }
        wire::Event::Challenge { .. } => {}
    }
}

fn on_roster(shared: &Arc<Shared>, session: SessionId, roster: SignedRoster) {
    let me = shared.keys.fingerprint();
    let held = shared
        .sessions()
        .get(&session)
        .map(|s| s.view.roster().map_or(0, |r| r.version));
    let Some(held) = held else { return };
    let offered = roster.unverified().version;
    if offered <= held {
        stale_roster(shared, session, &roster);
        return;
    }
    let result = shared.with_session(&session, |s, _| {
        let accepted = s.view.accept_roster(roster)?;
        let newly_joined = !s.meta.joined && accepted.member(&me).is_some();
        s.meta.joined |= newly_joined;
        if newly_joined {
            // Admitted: the link (and its secret) is no longer needed.
            s.meta.link = None;
        }
        Ok(newly_joined)
    });
    match result {
        Ok(newly_joined) => {
            shared.emit(Event::Roster {
                session,
                version: offered,
            });
            if newly_joined {
                // The key bundles follow the roster: fetch them with the rest.
                shared.resubscribe(session);
            }
            announce_if_ready(shared, session);
        }
        // Versions are missing (a joiner hears only the newest): fetch them.
        Err(ClientError::Protocol(caucus_protocol::Error::RosterChain)) if offered > held + 1 => {
            shared.resubscribe(session);
        }
        Err(e) => warn(
            shared,
            session,
            Warning::Verification,
            format!("roster refused: {e}"),
        ),
    }
}

/// A roster not newer than the one held: a repeat of one this client
/// accepted is harmless (the relay repeats rosters honestly too, when a
/// catch-up and live delivery overlap) and is passed over; anything else
/// is reported, and the held roster stays.
fn stale_roster(shared: &Shared, session: SessionId, roster: &SignedRoster) {
    let verdict = shared.sessions().get(&session).and_then(|s| {
        (!s.view.is_accepted(&roster.hash())).then(|| {
            let r = roster.verify(&s.view.mediator())?;
            if r.session == session {
                Ok(())
            } else {
                Err(caucus_protocol::Error::WrongSession)
            }
        })
    });
    match verdict {
        None => {}
        Some(Ok(())) => warn(
            shared,
            session,
            Warning::Rollback,
            format!(
                "roster refused: version {} signed by the mediator but not the one accepted",
                roster.unverified().version
            ),
        ),
        Some(Err(e)) => warn(
            shared,
            session,
            Warning::Verification,
            format!("roster refused: {e}"),
        ),
    }
}

/// Give [`Event::Joined`] once this device is a member and holds the key
/// of every room it is in, so that it can read and write at once.
fn announce_if_ready(shared: &Shared, session: SessionId) {
    let me = shared.keys.fingerprint();
    let ready = shared.with_session(&session, |s, _| {
        if s.meta.ready || !s.meta.joined {
            return Ok(false);
        }
        let Some(roster) = s.view.roster() else {
            return Ok(false);
        };
        let keyed = roster
            .rooms
            .iter()
            .filter(|r| r.has(&me))
            .all(|r| s.view.room_key(&r.id, r.epoch).is_some());
        s.meta.ready = keyed;
        Ok(keyed)
    });
    if ready.unwrap_or(false) {
        shared.emit(Event::Joined { session });
    }
}

fn on_envelope(shared: &Arc<Shared>, index: u64, envelope: caucus_protocol::envelope::Envelope) {
    let session = envelope.header().session;
    let room = envelope.header().room;
    let me = shared.keys.fingerprint();
    let result = shared.with_session(&session, |s, _| {
        let outcome = match s.view.open(&envelope) {
            Ok(opened) => {
                s.messages.push((index, opened.clone()));
                Ok(Some(opened))
            }
            // Our own message, met again in a catch-up.
            Err(caucus_protocol::Error::Replay { .. }) if envelope.header().sender == me => {
                Ok(None)
            }
            Err(e) => Err(e),
        };
        // The cursor moves past a message once it is opened, or refused for
        // good; a key that may still come (a bundle in flight) does not
        // count as for good, so the message is fetched again next time.
        let may_come_later = matches!(
            outcome,
            Err(caucus_protocol::Error::MissingRoomKey { .. }
                | caucus_protocol::Error::UnknownEpoch { .. })
        );
        if !may_come_later {
            let cursor = s.meta.cursors.entry(room).or_insert(0);
            *cursor = (*cursor).max(index);
        }
        Ok(outcome)
    });
    let result = match result {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(e)) => Err(ClientError::Protocol(e)),
        Err(e) => Err(e),
    };
    match result {
        Ok(Some(opened)) => {
            match &opened.content {
                Content::Withdrawal => on_withdrawal(shared, session, opened.header.sender),
                Content::AgreementSignature { agreement, .. } => {
                    on_agreement_signature(shared, session, *agreement);
                }
                _ => {}
            }
            emit_opened(shared, session, index, opened);
        }
        Ok(None) => {}
        Err(ClientError::Protocol(caucus_protocol::Error::Replay { seq })) => warn(
            shared,
            session,
            Warning::Replay,
            format!("replay of sequence {seq} from {}", envelope.header().sender),
        ),
        Err(e) => warn(
            shared,
            session,
            Warning::Verification,
            format!("envelope refused: {e}"),
        ),
    }
}

fn emit_opened(shared: &Shared, session: SessionId, index: u64, opened: Opened) {
    let h = &opened.header;
    if let Some(missing) = opened.gap.clone() {
        warn(
            shared,
            session,
            Warning::Gap {
                sender: h.sender,
                room: h.room,
                missing,
            },
            "messages from this sender are missing",
        );
    }
    shared.emit(event_of(session, index, opened));
}

/// The event for a verified message.
fn event_of(session: SessionId, index: u64, opened: Opened) -> Event {
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
    }
}

/// As the lead mediator: a party member withdrew their party. Mark it in
/// the roster and tell the joint room that a party has withdrawn.
fn on_withdrawal(shared: &Arc<Shared>, session: SessionId, member: Fingerprint) {
    let party = {
        let sessions = shared.sessions();
        let Some(state) = sessions.get(&session) else {
            return;
        };
        if state.view.mediator() != shared.keys.fingerprint() {
            return;
        }
        let Some(roster) = state.view.roster() else {
            return;
        };
        let Some(party) = roster.member(&member).and_then(|m| m.party) else {
            return;
        };
        // Already recorded: a repeated notice changes nothing.
        if roster.party(&party).is_none_or(|p| p.withdrawn) {
            return;
        }
        party
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let done = async {
            publish(&shared, &session, |b| b.set_withdrawn(&party, true)).await?;
            let joint = shared
                .sessions()
                .get(&session)
                .and_then(|s| s.view.roster().and_then(|r| r.joint_room()).map(|r| r.id))
                .ok_or(ClientError::UnknownSession)?;
            post_as(
                &shared,
                &session,
                &joint,
                &Content::System(SystemEvent::PartyWithdrew),
            )
            .await
        }
        .await;
        if let Err(e) = done {
            warn(
                &shared,
                session,
                Warning::Verification,
                format!("recording a withdrawal failed: {e}"),
            );
        }
    });
}

/// As the lead mediator: admit a joiner whose proof verifies against an
/// unused, unexpired invite of ours; turn anyone else away.
fn on_join_request(shared: &Arc<Shared>, request: caucus_protocol::invite::JoinRequest) {
    let session = request.session;
    let me = shared.keys.fingerprint();
    let verdict = {
        let sessions = shared.sessions();
        let Some(state) = sessions.get(&session) else {
            return;
        };
        if state.view.mediator() != me {
            return;
        }
        let joiner = request.identity.fingerprint();
        if state
            .view
            .roster()
            .is_some_and(|r| r.member(&joiner).is_some())
        {
            return; // already admitted
        }
        let entry = state.meta.invites.iter().find(|e| e.id == request.invite);
        match entry {
            None => Err("no such invite".to_string()),
            Some(e) if e.used => Err("the invite has been used".into()),
            Some(e) => match Invite::from_link(&e.link).map(|i| i.verify_join(&request, now())) {
                Ok(Ok(())) => Ok((e.party, e.name.clone())),
                Ok(Err(err)) | Err(err) => Err(err.to_string()),
            },
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let invite = request.invite;
        match verdict {
            Ok((party, name)) => {
                let identity = request.identity.clone();
                let member = identity.fingerprint();
                let admitted = async {
                    shared.with_session(&session, |s, _| {
                        if let Some(e) = s.meta.invites.iter_mut().find(|e| e.id == invite) {
                            e.used = true;
                        }
                        Ok(())
                    })?;
                    publish(&shared, &session, |b| {
                        let role = if party.is_some() {
                            Role::PartyMember
                        } else {
                            Role::CoMediator
                        };
                        b.add_member(&identity, role, party, &name)
                    })
                    .await
                }
                .await;
                match admitted {
                    Ok(()) => shared.emit(Event::Admitted {
                        session,
                        invite,
                        member,
                    }),
                    Err(e) => shared.emit(Event::Rejected {
                        session,
                        invite,
                        reason: format!("admission failed: {e}"),
                    }),
                }
            }
            Err(reason) => {
                let _ = shared
                    .transport
                    .request(RequestBody::Decline { session, invite })
                    .await;
                shared.emit(Event::Rejected {
                    session,
                    invite,
                    reason,
                });
            }
        }
    });
}
