//! The malicious-relay suite: real clients talk to the real relay through a
//! hostile proxy ([`caucus_tests::proxy`]) that tries one attack per test.
//! Each test checks, through the public client API, that the client raises
//! the typed warning (or refuses), that none of the forged or moved content
//! shows as an event or in the history, and, for admissions, that the
//! mediator never seals a key to anyone it did not admit. Forgeries that
//! need well-formed, signed bytes are built with `caucus-protocol`'s public
//! API and signed by an attacker's own device key: the relay has no keys.
//! `docs/security.md` ("Malicious relay: attack → test") maps each attack to
//! its test.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::time::Duration;

use caucus_client::{Client, ClientError, Event, StateDir, Warning};
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::codec::{Canonical, Reader, Writer};
use caucus_protocol::content::{
    Content, ContentClass, Forward, ForwardMode, ShareReceipt, Sharing, Step, SystemEvent,
};
use caucus_protocol::crypto::{Digest, Signature, label};
use caucus_protocol::envelope::{Envelope, Header};
use caucus_protocol::identity::{DeviceKeys, Fingerprint};
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::invite::JoinRequest;
use caucus_protocol::keys::{KeyBundle, SealedKey, SignedKeyBundle};
use caucus_protocol::roster::{Phase, Role, Roster};
use caucus_protocol::session::SessionView;
use caucus_protocol::signed::{Signed, SignedKind};
use caucus_tests::proxy::{
    self, Proxy, Verdict, bundle_event, envelope_event, join_request_event, roster_event,
};
use caucus_tests::{Relay, WAIT, wait_for};

// ----- the stage: a mediator and two parties, all through the proxy -----

/// A mediator, a claimant and a defendant, admitted through the proxy.
struct Stage {
    _relay: Relay,
    proxy: Proxy,
    session: SessionId,
    parties: Vec<PartyId>,
    mediator: Client,
    claimant: Client,
    defendant: Client,
    claimant_room: RoomId,
    defendant_room: RoomId,
    joint: RoomId,
    dirs: Vec<tempfile::TempDir>,
}

impl Stage {
    fn m(&self) -> Fingerprint {
        self.mediator.fingerprint()
    }
    fn c(&self) -> Fingerprint {
        self.claimant.fingerprint()
    }
    fn d(&self) -> Fingerprint {
        self.defendant.fingerprint()
    }
}

/// A state directory, once the process that held it has let it go.
async fn state_dir(path: &std::path::Path) -> StateDir {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match StateDir::open(path) {
            Ok(dir) => return dir,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Invite one member of `party`, let them join from `dir`, and wait until
/// the mediator has admitted them and they hold their keys.
async fn admit(
    mediator: &mut Client,
    session: &SessionId,
    party: &PartyId,
    dir: &std::path::Path,
) -> Client {
    let link = mediator
        .invite(
            session,
            party,
            "a member",
            caucus_client::now() + 3600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    let (mut client, s) = Client::join(state_dir(dir).await, &link).await.unwrap();
    assert_eq!(&s, session);
    wait_for(mediator, |e| matches!(e, Event::Admitted { .. })).await;
    wait_for(&mut client, |e| matches!(e, Event::Joined { .. })).await;
    client.sync(session).await.unwrap();
    client
}

async fn stage() -> Stage {
    let (relay, proxy) = Proxy::with_relay(&[]).await;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut mediator = Client::open(state_dir(dirs[0].path()).await, proxy.url())
        .await
        .unwrap();
    let (session, parties) = mediator
        .create_session("The mediator", &["Claimant", "Defendant"])
        .await
        .unwrap();
    let mut claimant = admit(&mut mediator, &session, &parties[0], dirs[1].path()).await;
    let mut defendant = admit(&mut mediator, &session, &parties[1], dirs[2].path()).await;
    for client in [&mut mediator, &mut claimant, &mut defendant] {
        settle(client, &session).await;
    }
    Stage {
        claimant_room: claimant.my_room(&session).unwrap(),
        defendant_room: defendant.my_room(&session).unwrap(),
        joint: mediator.joint_room(&session).unwrap(),
        _relay: relay,
        proxy,
        session,
        parties,
        mediator,
        claimant,
        defendant,
        dirs,
    }
}

/// Catch `client` up with the relay and return every event it has given
/// since the last call. The sync's reply comes behind anything injected
/// before it, and resolves only once those frames have been handled, so
/// whatever they caused is in the returned events.
async fn settle(client: &mut Client, session: &SessionId) -> Vec<Event> {
    client.sync(session).await.unwrap();
    let mut events = Vec::new();
    while let Some(e) = client.next_event_within(Duration::ZERO).await {
        events.push(e);
    }
    events
}

fn warnings(events: &[Event]) -> Vec<Warning> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Warning { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect()
}

/// Whether some event that is not a warning mentions `needle` (the text of
/// a message, forward or share receipt, or any other field).
fn shows(events: &[Event], needle: &str) -> bool {
    events
        .iter()
        .filter(|e| !matches!(e, Event::Warning { .. }))
        .any(|e| format!("{e:?}").contains(needle))
}

/// Assert that `client` refused with `kind` and shows `needle` nowhere:
/// not in `events`, not in its history.
fn assert_refused(
    client: &Client,
    session: &SessionId,
    events: &[Event],
    kind: &Warning,
    needle: &str,
) {
    assert!(
        warnings(events).contains(kind),
        "no {kind:?} warning in {events:#?}"
    );
    assert!(!shows(events, needle), "{needle} was shown: {events:#?}");
    assert!(
        !shows(&client.history(session), needle),
        "{needle} is in the history"
    );
}

// ----- building forged and moved bytes -----

/// (header bytes, ciphertext, signature) of an envelope.
fn split(env: &Envelope) -> (Vec<u8>, Vec<u8>, Signature) {
    Reader::decode_all(&env.to_bytes(), |r| {
        Ok((
            r.bytes()?.to_vec(),
            r.bytes()?.to_vec(),
            Signature::decode(r)?,
        ))
    })
    .unwrap()
}

fn assemble(header: &[u8], ciphertext: &[u8], signature: &Signature) -> Envelope {
    let mut w = Writer::new();
    w.bytes(header).bytes(ciphertext);
    signature.encode(&mut w);
    Envelope::from_bytes(&w.into_bytes()).unwrap()
}

/// `env` with its header changed by `f` and everything else, the sender's
/// signature included, as it was: what a relay can do to move it.
fn moved(env: &Envelope, f: impl FnOnce(&mut Header)) -> Envelope {
    let (_, ciphertext, signature) = split(env);
    let mut header = env.header().clone();
    f(&mut header);
    assemble(&header.to_bytes(), &ciphertext, &signature)
}

/// `value`, signed by `signer` as if it were the lead mediator.
fn signed_by<T: SignedKind>(value: &T, signer: &DeviceKeys) -> Signed<T> {
    let body = value.to_bytes();
    let mut w = Writer::new();
    w.bytes(&body);
    signer.sign(T::LABEL, &body).encode(&mut w);
    Signed::from_bytes(&w.into_bytes()).unwrap()
}

/// `value` with the signature of `original` (another body): a relay's edit.
fn resigned_as<T: SignedKind>(value: &T, original: &Signed<T>) -> Signed<T> {
    let bytes = original.to_bytes();
    let mut w = Writer::new();
    w.bytes(&value.to_bytes()).fixed(&bytes[bytes.len() - 64..]);
    Signed::from_bytes(&w.into_bytes()).unwrap()
}

/// The relay's accomplice: device keys of its own (a lead mediator and a
/// party member of a session it made up with the same id), so that it can
/// seal any content under a room key it holds and sign the envelope.
struct Attacker {
    keys: DeviceKeys,
    member: DeviceKeys,
    lead_view: SessionView,
    member_view: SessionView,
    room: RoomId,
}

impl Attacker {
    fn new(session: SessionId) -> Self {
        let keys = DeviceKeys::generate().unwrap();
        let member = DeviceKeys::generate().unwrap();
        let mut builder = RosterBuilder::new(session, &keys, "Not the mediator").unwrap();
        let party = builder.add_party("Accomplices").unwrap();
        builder
            .add_member(
                member.public(),
                Role::PartyMember,
                Some(party),
                "Accomplice",
            )
            .unwrap();
        let (roster, room_keys) = builder
            .sign(&keys, &SessionView::new(session, keys.fingerprint()))
            .unwrap();
        let mut lead_view = SessionView::new(session, keys.fingerprint());
        lead_view.accept_roster(roster.clone()).unwrap();
        let bundles: Vec<_> = room_keys
            .iter()
            .map(|k| lead_view.seal_key_bundle(&keys, k).unwrap())
            .collect();
        let mut member_view = SessionView::new(session, keys.fingerprint());
        member_view.accept_roster(roster.clone()).unwrap();
        for b in &bundles {
            let _ = member_view.open_key_bundle(&member, b);
        }
        let room = roster.unverified().private_room(&party).unwrap().id;
        Self {
            keys,
            member,
            lead_view,
            member_view,
            room,
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        self.keys.fingerprint()
    }

    /// An envelope with `header`, whose ciphertext is `content` sealed under
    /// the attacker's own room key, signed by the attacker.
    fn envelope(&mut self, header: Header, content: &Content) -> Envelope {
        let own = match self.lead_view.seal(&self.keys, &self.room, content) {
            Ok(env) => env,
            Err(_) => self
                .member_view
                .seal(&self.member, &self.room, content)
                .unwrap(),
        };
        let (_, ciphertext, _) = split(&own);
        let header = header.to_bytes();
        let mut body = Writer::new();
        body.bytes(&header).bytes(&ciphertext);
        let signature = self.keys.sign(label::ENVELOPE, &body.into_bytes());
        assemble(&header, &ciphertext, &signature)
    }
}

/// The header that `sender`'s next message in `room` would have, as far as
/// the relay has seen that sender's chain, with the class of `sender`'s role.
fn next_header(proxy: &Proxy, roster: &Roster, room: RoomId, sender: Fingerprint) -> Header {
    let last = proxy
        .posted_by(&sender)
        .into_iter()
        .rev()
        .find(|e| e.header().session == roster.session && e.header().room == room);
    let (seq, previous) = last.map_or((1, Digest::ZERO), |e| (e.header().seq + 1, e.hash()));
    Header {
        session: roster.session,
        room,
        epoch: roster.room(&room).unwrap().epoch,
        sender,
        seq,
        previous,
        class: ContentClass::of(roster.member(&sender).unwrap().role),
        salt: [0x5a; 16],
    }
}

/// What `client` sealed in `envelope`, which it posted: only its own client
/// can say, since the header no longer does (the proxy, a relay, cannot).
fn sent(client: &Client, session: &SessionId, envelope: &Envelope) -> Option<Content> {
    client.message(session, &envelope.hash()).map(|m| m.content)
}

/// The last envelope `who` posted whose text `client` shows as `text`.
fn posted(proxy: &Proxy, who: &Fingerprint, client: &Client, session: &SessionId) -> Envelope {
    let hash = client
        .history(session)
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Message { hash, sender, .. } if sender == who => Some(*hash),
            _ => None,
        })
        .unwrap();
    proxy
        .posted_by(who)
        .into_iter()
        .find(|e| e.hash() == hash)
        .unwrap()
}

/// Send `text` from `from` in `room` and wait until `to` shows it.
/// The claimant says `words` in its private room: its envelope as posted,
/// and a copy whose header names `room` at that room's current epoch.
async fn said_then_moved(s: &mut Stage, words: &str, room: RoomId) -> (Envelope, Envelope) {
    let session = s.session;
    let own = s.claimant_room;
    say(&s.claimant, &mut s.mediator, &session, &own, words).await;
    let env = posted(&s.proxy, &s.c(), &s.mediator, &session);
    let epoch = s
        .mediator
        .roster(&session)
        .unwrap()
        .room(&room)
        .unwrap()
        .epoch;
    let into = moved(&env, |h| {
        h.room = room;
        h.epoch = epoch;
    });
    (env, into)
}

async fn say(from: &Client, to: &mut Client, session: &SessionId, room: &RoomId, text: &str) {
    from.send(session, room, text, Sharing::MayShare)
        .await
        .unwrap();
    wait_for(
        to,
        |e| matches!(e, Event::Message { text: t, .. } if t == text),
    )
    .await;
}

fn verification() -> Warning {
    Warning::Verification
}

// ----- the proxy itself -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_passes_the_caucus_v1_handshake_through_and_a_refusal_back() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (_relay, proxy) = Proxy::with_relay(&[]).await;
    // Offered: the relay's choice comes back, then its challenge.
    let mut request = proxy.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "caucus.v1".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "caucus.v1"
    );
    use futures_util::StreamExt;
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"challenge\""));
    // Not offered: the relay's refusal, passed back as it was.
    let refused = tokio_tungstenite::connect_async(proxy.url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 400);
            let body =
                String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("caucus.v1"), "{body}");
        }
        other => panic!("{other:?}"),
    }
}

// ----- admission -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_adding_a_member_the_mediator_never_admitted_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let attacker = Attacker::new(session);
    // The newest roster, with the attacker added to the claimant's party and
    // rooms at new epochs: well formed, chained, but not the mediator's
    // signature.
    let held = s.proxy.rosters_published_by(&s.m()).pop().unwrap();
    let mut roster = held.unverified().clone();
    roster.version += 1;
    roster.previous = held.hash();
    let mut member = roster.member(&s.c()).unwrap().clone();
    member.identity = attacker.keys.public().clone();
    roster.members.push(member);
    for room in &mut roster.rooms {
        if room.id == s.claimant_room || room.id == s.joint {
            room.members.push(attacker.fingerprint());
            room.members.sort();
            room.epoch += 1;
        }
    }
    let forged = signed_by(&roster, &attacker.keys);
    for who in [s.c(), s.m(), s.d()] {
        s.proxy.inject_to(&who, roster_event(&forged)).await;
    }
    // What the attacker would then say in the claimant's room.
    let header = next_header(&s.proxy, &roster, s.claimant_room, attacker.fingerprint());
    let mut attacker = attacker;
    let words = "FORGED-from-an-unadmitted-member";
    let env = attacker.envelope(
        Header {
            epoch: roster.room(&s.claimant_room).unwrap().epoch - 1,
            ..header
        },
        &Content::Text {
            sharing: Sharing::MayShare,
            body: words.into(),
        },
    );
    for who in [s.c(), s.m()] {
        s.proxy.inject_to(&who, envelope_event(1, &env)).await;
    }
    for client in [&mut s.claimant, &mut s.mediator, &mut s.defendant] {
        let events = settle(client, &session).await;
        assert_refused(client, &session, &events, &verification(), words);
        let roster = client.roster(&session).unwrap();
        assert_eq!(roster.version, held.unverified().version);
        assert!(roster.member(&attacker.fingerprint()).is_none());
    }
    // The mediator goes on changing rooms: no roster it signs names the
    // attacker, and no key it seals goes to them.
    s.mediator
        .create_side_room(&session, &[s.c(), s.d()])
        .await
        .unwrap();
    s.mediator.remove_member(&session, &s.d()).await.unwrap();
    let rosters = s.proxy.rosters_published_by(&s.m());
    assert!(
        rosters
            .iter()
            .all(|r| r.unverified().member(&attacker.fingerprint()).is_none())
    );
    let bundles = s.proxy.bundles_published_by(&s.m());
    assert!(bundles.len() > 5);
    assert!(bundles.iter().all(|b| {
        b.unverified()
            .entries
            .iter()
            .all(|e| e.recipient != attacker.fingerprint())
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_request_the_relay_made_up_admits_no_one() {
    let mut s = stage().await;
    let session = s.session;
    let attacker = Attacker::new(session);
    // An invite the mediator issued and no one has used yet: the relay
    // knows its id and token hash, but not the secret behind the proof.
    let link = s
        .mediator
        .invite(
            &session,
            &s.parties[0],
            "Someone",
            caucus_client::now() + 3600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    let invite = caucus_protocol::invite::Invite::from_link(&link).unwrap();
    let forged = JoinRequest {
        session,
        invite: invite.id,
        identity: attacker.keys.public().clone(),
        proof: [0x42; 32],
    };
    s.proxy.inject_to(&s.m(), join_request_event(&forged)).await;
    match wait_for(&mut s.mediator, |e| {
        matches!(e, Event::Rejected { .. } | Event::Admitted { .. })
    })
    .await
    {
        Event::Rejected { invite: i, .. } => assert_eq!(i, invite.id),
        other => panic!("{other:?}"),
    }
    settle(&mut s.mediator, &session).await;
    assert!(
        s.mediator
            .roster(&session)
            .unwrap()
            .member(&attacker.fingerprint())
            .is_none()
    );
    assert!(
        s.proxy
            .rosters_published_by(&s.m())
            .iter()
            .all(|r| r.unverified().member(&attacker.fingerprint()).is_none())
    );
    assert!(s.proxy.bundles_published_by(&s.m()).iter().all(|b| {
        b.unverified()
            .entries
            .iter()
            .all(|e| e.recipient != attacker.fingerprint())
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_refuses_a_mediator_key_other_than_the_one_its_link_pins() {
    let mut s = stage().await;
    let session = s.session;
    let dir = s.dirs[3].path().to_owned();
    let joiner_keys = state_dir(&dir).await.identity_or_create().unwrap();
    let joiner_id = joiner_keys.fingerprint();
    drop(joiner_keys);
    // The relay's own session history, in which it is the lead mediator and
    // the joiner a member, with keys sealed to the joiner.
    let attacker = DeviceKeys::generate().unwrap();
    let joiner_identity = {
        let dir = state_dir(&dir).await;
        dir.identity().unwrap().unwrap().public().clone()
    };
    let mut builder = RosterBuilder::new(session, &attacker, "The mediator").unwrap();
    let party = builder.add_party("Claimant").unwrap();
    builder
        .add_member(&joiner_identity, Role::PartyMember, Some(party), "Joiner")
        .unwrap();
    let (fake, keys) = builder
        .sign(
            &attacker,
            &SessionView::new(session, attacker.fingerprint()),
        )
        .unwrap();
    let mut fake_view = SessionView::new(session, attacker.fingerprint());
    fake_view.accept_roster(fake.clone()).unwrap();
    let fake_bundles: Vec<_> = keys
        .iter()
        .map(|k| fake_view.seal_key_bundle(&attacker, k).unwrap())
        .collect();
    let swapped = fake_bundles.clone();
    let fake_roster = fake.clone();
    s.proxy.set_rule(move |f| {
        if !f.to_client(&joiner_id) {
            return Verdict::Pass;
        }
        match f.kind() {
            "roster" => Verdict::Replace(vec![roster_event(&fake_roster)]),
            "key_bundle" => Verdict::Replace(swapped.iter().map(bundle_event).collect()),
            _ => Verdict::Pass,
        }
    });
    let link = s
        .mediator
        .invite(
            &session,
            &s.parties[0],
            "Joiner",
            caucus_client::now() + 3600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    let (mut joiner, _) = Client::join(state_dir(&dir).await, &link).await.unwrap();
    assert_eq!(joiner.fingerprint(), joiner_id);
    wait_for(&mut s.mediator, |e| matches!(e, Event::Admitted { .. })).await;
    wait_for(&mut joiner, |e| {
        matches!(
            e,
            Event::Warning {
                kind: Warning::Verification,
                ..
            }
        )
    })
    .await;
    // Asked for everything: the relay serves its own history again.
    let events = settle(&mut joiner, &session).await;
    assert!(warnings(&events).contains(&Warning::Verification));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Joined { .. } | Event::Roster { .. })),
        "{events:#?}"
    );
    assert!(joiner.roster(&session).is_err());
    // It seals nothing for the relay's mediator: it cannot even post.
    let refused = joiner
        .send(&session, &RoomId([0; 16]), "hello?", Sharing::MayShare)
        .await;
    assert!(refused.is_err());
    assert!(s.proxy.sent_by(&joiner_id, "post").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mediator_refuses_a_joiner_key_the_relay_substituted() {
    let mut s = stage().await;
    let session = s.session;
    let attacker = DeviceKeys::generate().unwrap();
    let substitute = attacker.public().clone();
    let mediator = s.m();
    s.proxy.set_rule(move |f| {
        if f.to_client(&mediator) && f.kind() == "join_request" {
            let mut request = f.join_request().unwrap();
            request.identity = substitute.clone();
            Verdict::Replace(vec![join_request_event(&request)])
        } else {
            Verdict::Pass
        }
    });
    let link = s
        .mediator
        .invite(
            &session,
            &s.parties[0],
            "Joiner",
            caucus_client::now() + 3600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    let (mut joiner, _) = Client::join(state_dir(s.dirs[3].path()).await, &link)
        .await
        .unwrap();
    match wait_for(&mut s.mediator, |e| {
        matches!(e, Event::Rejected { .. } | Event::Admitted { .. })
    })
    .await
    {
        Event::Rejected { reason, .. } => assert!(reason.contains("proof"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The real joiner is turned away too (the relay could have done that
    // anyway); no one is admitted with the substituted key.
    wait_for(&mut joiner, |e| matches!(e, Event::Declined { .. })).await;
    settle(&mut s.mediator, &session).await;
    let roster = s.mediator.roster(&session).unwrap();
    assert!(roster.member(&attacker.fingerprint()).is_none());
    assert!(roster.member(&joiner.fingerprint()).is_none());
    for r in s.proxy.rosters_published_by(&s.m()) {
        assert!(r.unverified().member(&attacker.fingerprint()).is_none());
    }
    assert!(s.proxy.bundles_published_by(&s.m()).iter().all(|b| {
        b.unverified()
            .entries
            .iter()
            .all(|e| e.recipient != attacker.fingerprint())
    }));
}

// ----- moving envelopes -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_moved_from_a_private_room_to_the_joint_room_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let words = "MOVED-private-to-joint-our-bottom-line";
    let joint = s.joint;
    let (env, into_joint) = said_then_moved(&mut s, words, joint).await;
    // To the other party: moved into a room they are in, and as it was.
    s.proxy
        .inject_to(&s.d(), envelope_event(1, &into_joint))
        .await;
    s.proxy.inject_to(&s.d(), envelope_event(1, &env)).await;
    let events = settle(&mut s.defendant, &session).await;
    assert_refused(&s.defendant, &session, &events, &verification(), words);
    // To the mediator and the author, in the joint room.
    for who in [s.m(), s.c()] {
        s.proxy
            .inject_to(&who, envelope_event(2, &into_joint))
            .await;
    }
    for client in [&mut s.mediator, &mut s.claimant] {
        let events = settle(client, &session).await;
        assert!(
            warnings(&events).contains(&Warning::Verification),
            "{events:#?}"
        );
        let in_joint = client
            .history(&session)
            .into_iter()
            .any(|e| matches!(e, Event::Message { room, .. } if room == s.joint));
        assert!(!in_joint);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_moved_to_another_partys_room_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let words = "MOVED-to-the-other-party";
    let theirs = s.defendant_room;
    let (_, into_theirs) = said_then_moved(&mut s, words, theirs).await;
    for who in [s.d(), s.m()] {
        s.proxy
            .inject_to(&who, envelope_event(1, &into_theirs))
            .await;
    }
    for client in [&mut s.defendant, &mut s.mediator] {
        let events = settle(client, &session).await;
        assert!(
            warnings(&events).contains(&Warning::Verification),
            "{events:#?}"
        );
        let moved_in = client.history(&session).into_iter().any(
            |e| matches!(e, Event::Message { room, text, .. } if room == s.defendant_room && text == words),
        );
        assert!(!moved_in);
    }
    let events = settle(&mut s.defendant, &session).await;
    assert!(!shows(&events, words));
    assert!(!shows(&s.defendant.history(&session), words));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_moved_to_another_epoch_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    // The joint room is at epoch 3 (mediator, then claimant, then
    // defendant admitted); the claimant holds the keys of epochs 2 and 3.
    let joint_epoch = s
        .mediator
        .roster(&session)
        .unwrap()
        .room(&s.joint)
        .unwrap()
        .epoch;
    assert_eq!(joint_epoch, 3);
    let words = "MOVED-to-an-older-epoch";
    s.mediator
        .send(&session, &s.joint, words, Sharing::MayShare)
        .await
        .unwrap();
    wait_for(
        &mut s.claimant,
        |e| matches!(e, Event::Message { text, .. } if text == words),
    )
    .await;
    let env = s.proxy.posted_by(&s.m()).pop().unwrap();
    assert_eq!(env.header().epoch, 3);
    for epoch in [2, 1, 4] {
        let other_epoch = moved(&env, |h| {
            h.epoch = epoch;
            h.seq += 1;
            h.previous = env.hash();
        });
        s.proxy
            .inject_to(&s.c(), envelope_event(9, &other_epoch))
            .await;
    }
    let events = settle(&mut s.claimant, &session).await;
    assert_eq!(
        warnings(&events),
        vec![Warning::Verification; 3],
        "{events:#?}"
    );
    assert!(!shows(&events, words));
    // Shown once: the genuine message at its own epoch.
    let shown = s
        .claimant
        .history(&session)
        .into_iter()
        .filter(|e| matches!(e, Event::Message { text, .. } if text == words))
        .count();
    assert_eq!(shown, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_moved_to_another_session_is_refused() {
    let mut s = stage().await;
    let first = s.session;
    // A second session with the same mediator and the same claimant device.
    let (second, parties) = s
        .mediator
        .create_session("The mediator", &["Claimant"])
        .await
        .unwrap();
    let claimant_dir = s.dirs[1].path().to_owned();
    drop(s.claimant);
    let mut claimant = admit(&mut s.mediator, &second, &parties[0], &claimant_dir).await;
    settle(&mut claimant, &first).await;
    let second_room = claimant.my_room(&second).unwrap();
    let epoch = claimant
        .roster(&second)
        .unwrap()
        .room(&second_room)
        .unwrap()
        .epoch;
    let words = "MOVED-to-another-session";
    say(&claimant, &mut s.mediator, &first, &s.claimant_room, words).await;
    let env = posted(&s.proxy, &claimant.fingerprint(), &s.mediator, &first);
    settle(&mut claimant, &first).await;
    settle(&mut s.mediator, &first).await;
    let into_second = moved(&env, |h| {
        h.session = second;
        h.room = second_room;
        h.epoch = epoch;
    });
    // The header alone moved (as if the relay re-routed it), and the
    // header moved as a whole into the other session's room.
    let only_session = moved(&env, |h| h.session = second);
    for client in [&mut s.mediator, &mut claimant] {
        let who = client.fingerprint();
        s.proxy
            .inject_to(&who, envelope_event(1, &into_second))
            .await;
        s.proxy
            .inject_to(&who, envelope_event(1, &only_session))
            .await;
        let events = settle(client, &second).await;
        assert_eq!(
            warnings(&events),
            vec![Warning::Verification; 2],
            "{events:#?}"
        );
        assert!(!shows(&events, words));
        assert!(!shows(&client.history(&second), words));
    }
}

// ----- replay, reordering, dropping -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_envelope_is_passed_over_silently_and_shown_once() {
    let mut s = stage().await;
    let session = s.session;
    let words = "said once, replayed twice";
    say(
        &s.claimant,
        &mut s.mediator,
        &session,
        &s.claimant_room,
        words,
    )
    .await;
    let env = posted(&s.proxy, &s.c(), &s.mediator, &session);
    // Again at its index, and again later as if it were new.
    s.proxy.inject_to(&s.m(), envelope_event(1, &env)).await;
    s.proxy.inject_to(&s.m(), envelope_event(7, &env)).await;
    let events = settle(&mut s.mediator, &session).await;
    // Delivered again, it is the same message: no alarm, nothing new.
    assert_eq!(warnings(&events), vec![], "{events:#?}");
    assert!(!shows(&events, words));
    let shown = s
        .mediator
        .history(&session)
        .into_iter()
        .filter(|e| matches!(e, Event::Message { text, .. } if text == words))
        .count();
    assert_eq!(shown, 1);
}

/// A rule: hold back the first envelope from `sender` to `to`, and let it
/// out right behind the next one.
fn swap_first_two(to: Fingerprint, sender: Fingerprint) -> impl FnMut(&proxy::Frame) -> Verdict {
    let mut held: Option<serde_json::Value> = None;
    let mut done = false;
    move |f| {
        let Some(env) = f.envelope().filter(|_| f.to_client(&to)) else {
            return Verdict::Pass;
        };
        if done || env.header().sender != sender {
            return Verdict::Pass;
        }
        match held.take() {
            None => {
                held = Some(f.json.clone());
                Verdict::Drop
            }
            Some(first) => {
                done = true;
                Verdict::Replace(vec![f.json.clone(), first])
            }
        }
    }
}

/// Every event `client` gives until one matches `pred` (included).
async fn collect_until(client: &mut Client, mut pred: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = wait_for(client, |_| true).await;
        let last = pred(&e);
        seen.push(e);
        if last {
            return seen;
        }
    }
}

/// The messages and gaps among `events`, as short strings, in order.
fn messages_and_gaps(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Warning {
                kind: Warning::Gap { missing, .. },
                ..
            } => Some(format!("gap {missing:?}")),
            Event::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn is_text(text: &str) -> impl FnMut(&Event) -> bool + '_ {
    move |e| matches!(e, Event::Message { text: t, .. } if t == text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_envelopes_show_a_gap_that_the_late_one_fills() {
    let mut s = stage().await;
    let session = s.session;
    let (mediator, claimant) = (s.m(), s.c());
    s.proxy.set_rule(swap_first_two(mediator, claimant));
    for text in ["one", "two"] {
        s.claimant
            .send(&session, &s.claimant_room, text, Sharing::MayShare)
            .await
            .unwrap();
    }
    let seen = collect_until(&mut s.mediator, is_text("one")).await;
    // The gap is shown when the second arrives first; the first, arriving
    // late, links into the chain and closes it.
    assert_eq!(messages_and_gaps(&seen), ["gap 1..=1", "two", "one"]);
    assert!(seen.iter().any(|e| matches!(
        e,
        Event::Warning { kind: Warning::Gap { sender, room, .. }, .. }
            if *sender == claimant && *room == s.claimant_room
    )));
    // Nothing is missing after that: the next message brings no gap.
    s.claimant
        .send(&session, &s.claimant_room, "three", Sharing::MayShare)
        .await
        .unwrap();
    let seen = collect_until(&mut s.mediator, is_text("three")).await;
    assert_eq!(messages_and_gaps(&seen), ["three"]);
    let shown = messages_and_gaps(&s.mediator.history(&session));
    assert_eq!(shown, ["two", "one", "three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_envelope_shows_as_a_gap_in_its_senders_chain() {
    let mut s = stage().await;
    let session = s.session;
    let (mediator, claimant) = (s.m(), s.c());
    // The relay drops the claimant's 2nd and 4th messages to the mediator.
    s.proxy.set_rule(move |f| match f.envelope() {
        Some(env)
            if f.to_client(&mediator)
                && env.header().sender == claimant
                && [2, 4].contains(&env.header().seq) =>
        {
            Verdict::Drop
        }
        _ => Verdict::Pass,
    });
    for text in ["m1", "DROPPED-m2", "m3", "DROPPED-m4"] {
        s.claimant
            .send(&session, &s.claimant_room, text, Sharing::MayShare)
            .await
            .unwrap();
    }
    // The 2nd shows as a gap once the 3rd arrives.
    let seen = collect_until(&mut s.mediator, is_text("m3")).await;
    assert_eq!(messages_and_gaps(&seen), ["m1", "gap 2..=2", "m3"]);
    assert!(seen.iter().any(|e| matches!(
        e,
        Event::Warning { kind: Warning::Gap { sender, room, .. }, .. }
            if *sender == claimant && *room == s.claimant_room
    )));
    // A dropped last message cannot be seen missing yet: nothing names it.
    let events = settle(&mut s.mediator, &session).await;
    assert!(warnings(&events).is_empty(), "{events:#?}");
    // Once the claimant says anything more, it shows.
    s.claimant
        .send(&session, &s.claimant_room, "m5", Sharing::MayShare)
        .await
        .unwrap();
    let seen = collect_until(&mut s.mediator, is_text("m5")).await;
    assert_eq!(messages_and_gaps(&seen), ["gap 4..=4", "m5"]);
    assert!(!shows(&s.mediator.history(&session), "DROPPED"));
}

// ----- rosters -----

/// Every event `client` gives up to a marker the proxy sends it behind
/// everything injected so far (for a client the relay no longer serves, so
/// that [`settle`] cannot be used).
async fn settle_by_marker(proxy: &Proxy, client: &mut Client, session: &SessionId) -> Vec<Event> {
    let marker = DeviceKeys::generate().unwrap().fingerprint();
    let presence = caucus_protocol::wire::Event::Presence {
        v: 1,
        session: *session,
        online: vec![marker],
        mediator: caucus_protocol::wire::MediatorWhereabouts::Away,
    };
    proxy
        .inject_to(&client.fingerprint(), proxy::event(&presence))
        .await;
    collect_until(
        client,
        |e| matches!(e, Event::Presence { online, .. } if online == &vec![marker]),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_rolled_back_to_an_older_version_or_an_abandoned_branch_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let mediator = s.m();
    // The relay answers the mediator's next roster with an error, as if it
    // had refused it, and keeps it: a roster the mediator signed but that
    // never became the session's.
    let mut refused_one = false;
    s.proxy.set_rule(move |f| {
        if !refused_one && f.from_client(&mediator) && f.kind() == "publish_roster" {
            refused_one = true;
            let id = f.json["id"].clone();
            return Verdict::Answer(vec![serde_json::json!({
                "type": "error", "v": 1, "id": id, "code": "internal", "message": "try again"
            })]);
        }
        Verdict::Pass
    });
    let before = s.proxy.rosters_published_by(&mediator).len();
    assert!(
        s.mediator
            .set_phase(&session, Phase::IndividualMeetings)
            .await
            .is_err()
    );
    s.proxy.clear_rule();
    s.mediator
        .set_phase(&session, Phase::IndividualMeetings)
        .await
        .unwrap();
    s.mediator
        .create_side_room(&session, &[s.c()])
        .await
        .unwrap();
    let rosters = s.proxy.rosters_published_by(&mediator);
    assert_eq!(rosters.len(), before + 3);
    let abandoned = rosters[before].clone();
    let newest = rosters.last().unwrap().unverified().clone();
    assert_eq!(abandoned.unverified().version + 1, newest.version);
    wait_for(
        &mut s.claimant,
        |e| matches!(e, Event::Roster { version, .. } if *version == newest.version),
    )
    .await;
    for client in [&mut s.claimant, &mut s.mediator] {
        settle(client, &session).await;
        let who = client.fingerprint();
        // Every older version again, exactly as accepted: nothing changes,
        // and nothing is said (the relay repeats rosters honestly too).
        for r in &rosters[..before] {
            s.proxy.inject_to(&who, roster_event(r)).await;
        }
        s.proxy
            .inject_to(&who, roster_event(&rosters[before + 1]))
            .await;
        let events = settle(client, &session).await;
        assert!(warnings(&events).is_empty(), "{events:#?}");
        // The branch the mediator abandoned: signed by the mediator, older
        // than the roster held, and not the one accepted at its version.
        s.proxy.inject_to(&who, roster_event(&abandoned)).await;
        let events = settle(client, &session).await;
        assert_eq!(warnings(&events), vec![Warning::Rollback], "{events:#?}");
        assert!(!events.iter().any(|e| matches!(e, Event::Roster { .. })));
        assert_eq!(client.roster(&session).unwrap(), newest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_not_signed_by_the_pinned_mediator_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let attacker = DeviceKeys::generate().unwrap();
    let rosters = s.proxy.rosters_published_by(&s.m());
    let held = rosters.last().unwrap().clone();
    // The next version, as the mediator would sign it, signed by another key.
    let mut next = held.unverified().clone();
    next.version += 1;
    next.previous = held.hash();
    next.phase = Phase::Closed;
    let not_signed = signed_by(&next, &attacker);
    // The next version with the attacker as the lead mediator.
    let mut led = next.clone();
    for m in &mut led.members {
        if m.role == Role::Mediator {
            m.identity = attacker.public().clone();
        }
    }
    for room in &mut led.rooms {
        for f in &mut room.members {
            if *f == s.m() {
                *f = attacker.fingerprint();
            }
        }
        room.members.sort();
    }
    let unpinned = signed_by(&led, &attacker);
    // The held version and an older one, changed, with the mediator's own
    // signatures kept.
    let mut changed = held.unverified().clone();
    changed.phase = Phase::Closed;
    let same_version = resigned_as(&changed, &held);
    let older = &rosters[rosters.len() - 2];
    let mut changed = older.unverified().clone();
    changed.phase = Phase::Closed;
    let older_version = resigned_as(&changed, older);
    for client in [&mut s.claimant, &mut s.defendant] {
        for forged in [&not_signed, &unpinned, &same_version, &older_version] {
            s.proxy
                .inject_to(&client.fingerprint(), roster_event(forged))
                .await;
        }
        let events = settle(client, &session).await;
        assert_eq!(
            warnings(&events),
            vec![Warning::Verification; 4],
            "{events:#?}"
        );
        assert!(!events.iter().any(|e| matches!(e, Event::Roster { .. })));
        assert_eq!(client.roster(&session).unwrap(), *held.unverified());
    }
}

// ----- forged content -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forward_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let mut attacker = Attacker::new(session);
    let roster = s.mediator.roster(&session).unwrap();
    let words = "FORGED-forward-they-accept-your-terms";
    let forward = Content::Forward(Forward {
        source_room: s.defendant_room,
        source_message: Digest([1; 32]),
        mode: ForwardMode::Verbatim,
        text: words.into(),
        author_consented: true,
    });
    for room in [s.claimant_room, s.joint] {
        let header = next_header(&s.proxy, &roster, room, s.m());
        let env = attacker.envelope(header, &forward);
        s.proxy.inject_to(&s.c(), envelope_event(1, &env)).await;
    }
    let events = settle(&mut s.claimant, &session).await;
    assert_eq!(warnings(&events), vec![Warning::Verification; 2]);
    assert_refused(&s.claimant, &session, &events, &verification(), words);
    let forwarded = |e: &Event| matches!(e, Event::Forwarded { .. });
    assert!(!events.iter().any(forwarded));
    assert!(!s.claimant.history(&session).iter().any(forwarded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_carried_offer_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let mut attacker = Attacker::new(session);
    let roster = s.mediator.roster(&session).unwrap();
    let words = "FORGED-offer-the-trust-will-pay-everything";
    let carried = Content::CarriedOffer(caucus_protocol::offer::CarriedOffer {
        source_room: s.defendant_room,
        source_message: Digest([2; 32]),
        mode: ForwardMode::Verbatim,
        offer: caucus_protocol::offer::Offer {
            kind: caucus_protocol::offer::OfferKind::Offer,
            amount: Some(caucus_protocol::offer::Amount::parse("GBP", "9999999.00").unwrap()),
            terms: words.into(),
            conditions: vec![],
            responds_to: None,
        },
    });
    let header = next_header(&s.proxy, &roster, s.claimant_room, s.m());
    let env = attacker.envelope(header, &carried);
    s.proxy.inject_to(&s.c(), envelope_event(1, &env)).await;
    let events = settle(&mut s.claimant, &session).await;
    assert_eq!(warnings(&events), vec![Warning::Verification]);
    assert_refused(&s.claimant, &session, &events, &verification(), words);
    assert!(s.claimant.offers(&session).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_share_receipt_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let mut attacker = Attacker::new(session);
    say(
        &s.claimant,
        &mut s.mediator,
        &session,
        &s.claimant_room,
        "our real position",
    )
    .await;
    let source = posted(&s.proxy, &s.c(), &s.mediator, &session);
    let roster = s.mediator.roster(&session).unwrap();
    let words = "FORGED-receipt-shared-with-the-other-side";
    let receipt = Content::ShareReceipt(ShareReceipt {
        source_message: source.hash(),
        destination_room: s.joint,
        mode: ForwardMode::Verbatim,
        text: words.into(),
    });
    let header = next_header(&s.proxy, &roster, s.claimant_room, s.m());
    let env = attacker.envelope(header, &receipt);
    s.proxy.inject_to(&s.c(), envelope_event(2, &env)).await;
    let events = settle(&mut s.claimant, &session).await;
    assert_refused(&s.claimant, &session, &events, &verification(), words);
    let shared = |e: &Event| matches!(e, Event::Shared { .. });
    assert!(!events.iter().any(shared));
    assert!(!s.claimant.history(&session).iter().any(shared));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_consent_is_refused_and_unlocks_no_forward() {
    let mut s = stage().await;
    let session = s.session;
    let mut attacker = Attacker::new(session);
    let secret = "our walk-away figure, for the mediator only";
    s.defendant
        .send(&session, &s.defendant_room, secret, Sharing::MediatorOnly)
        .await
        .unwrap();
    wait_for(&mut s.mediator, is_text(secret)).await;
    let source = posted(&s.proxy, &s.d(), &s.mediator, &session);
    let roster = s.mediator.roster(&session).unwrap();
    let header = next_header(&s.proxy, &roster, s.defendant_room, s.d());
    let consent = attacker.envelope(
        header,
        &Content::Consent {
            message: source.hash(),
        },
    );
    s.proxy.inject_to(&s.m(), envelope_event(2, &consent)).await;
    let events = settle(&mut s.mediator, &session).await;
    assert!(
        warnings(&events).contains(&Warning::Verification),
        "{events:#?}"
    );
    let consented = |e: &Event| matches!(e, Event::Consent { .. });
    assert!(!events.iter().any(consented));
    assert!(!s.mediator.history(&session).iter().any(consented));
    // The mediator's client still will not carry the message across.
    let refused = s
        .mediator
        .forward(&session, &source.hash(), &s.claimant_room, None)
        .await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Protocol(caucus_protocol::Error::NotPermitted(
                _
            )))
        ),
        "{refused:?}"
    );
    assert!(
        s.proxy
            .posted_by(&s.m())
            .iter()
            .all(|e| !matches!(sent(&s.mediator, &session, e), Some(Content::Forward(_))))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_system_event_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let mut attacker = Attacker::new(session);
    let roster = s.mediator.roster(&session).unwrap();
    let lies = [
        SystemEvent::PartyWithdrew,
        SystemEvent::MemberRemoved(s.c()),
        SystemEvent::PhaseChanged(Phase::Closed),
    ];
    let mut header = next_header(&s.proxy, &roster, s.joint, s.m());
    let mut forged = Vec::new();
    for lie in &lies {
        let env = attacker.envelope(header.clone(), &Content::System(lie.clone()));
        header.seq += 1;
        header.previous = env.hash();
        forged.push(env);
    }
    for client in [&mut s.claimant, &mut s.defendant] {
        for env in &forged {
            s.proxy
                .inject_to(&client.fingerprint(), envelope_event(1, env))
                .await;
        }
        let events = settle(client, &session).await;
        assert_eq!(
            warnings(&events),
            vec![Warning::Verification; 3],
            "{events:#?}"
        );
        let told = |e: &Event| matches!(e, Event::System { .. });
        assert!(!events.iter().any(told));
        assert!(!client.history(&session).iter().any(told));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_agreement_signature_is_refused_and_nothing_is_countersigned() {
    let mut s = stage().await;
    let session = s.session;
    let mut attacker = Attacker::new(session);
    let hash = s
        .mediator
        .propose_agreement(&session, "Settlement", "The defendant pays 50k.", &[], &[])
        .await
        .unwrap();
    wait_for(&mut s.claimant, |e| {
        matches!(e, Event::AgreementProposed { .. })
    })
    .await;
    let roster = s.mediator.roster(&session).unwrap();
    // Each signatory's signature, made by the attacker, in an envelope
    // that names the signatory as its sender.
    for (who, room) in [(s.c(), s.claimant_room), (s.d(), s.defendant_room)] {
        let header = next_header(&s.proxy, &roster, room, who);
        let env = attacker.envelope(
            header,
            &Content::AgreementSignature {
                agreement: hash,
                signature: attacker.keys.sign(label::AGREEMENT_SIGN, &hash.0),
            },
        );
        s.proxy.inject_to(&s.m(), envelope_event(3, &env)).await;
    }
    let events = settle(&mut s.mediator, &session).await;
    assert_eq!(
        warnings(&events),
        vec![Warning::Verification; 2],
        "{events:#?}"
    );
    let signed = |e: &Event| {
        matches!(
            e,
            Event::AgreementSigned { .. } | Event::AgreementConcluded { .. }
        )
    };
    assert!(!events.iter().any(signed));
    assert!(!s.mediator.history(&session).iter().any(signed));
    assert!(s.mediator.agreement(&session).is_none());
    // The mediator asked to countersign is told that no one has signed.
    let refused = s.mediator.countersign(&session, &hash).await;
    assert!(
        matches!(&refused, Err(ClientError::Unsigned { signatories }) if signatories.len() == 2),
        "{refused:?}"
    );
    // And a "final", countersigned copy made by the attacker, to a party.
    let draft_env = s
        .proxy
        .posted_by(&s.m())
        .into_iter()
        .find(|e| {
            matches!(
                sent(&s.mediator, &session, e),
                Some(Content::AgreementDraft(_))
            ) && e.header().room == s.claimant_room
        })
        .unwrap();
    let Some(Content::AgreementDraft(draft)) = s
        .claimant
        .message(&session, &draft_env.hash())
        .map(|m| m.content)
    else {
        panic!("the claimant holds the draft")
    };
    let signatures: Vec<_> = draft
        .signatories
        .iter()
        .map(|_| attacker.keys.sign(label::AGREEMENT_SIGN, &hash.0))
        .collect();
    let fake_final = caucus_protocol::agreement::SignedAgreement {
        agreement: draft,
        signatures,
        countersignature: attacker.keys.sign(label::AGREEMENT_COUNTERSIGN, &hash.0),
    };
    let header = next_header(&s.proxy, &roster, s.claimant_room, s.m());
    let env = attacker.envelope(header, &Content::AgreementFinal(fake_final));
    s.proxy.inject_to(&s.c(), envelope_event(4, &env)).await;
    let events = settle(&mut s.claimant, &session).await;
    assert!(
        warnings(&events).contains(&Warning::Verification),
        "{events:#?}"
    );
    assert!(!events.iter().any(signed));
    assert!(s.claimant.agreement(&session).is_none());
    // The mediator countersigned nothing.
    assert!(s.proxy.posted_by(&s.m()).iter().all(|e| !matches!(
        sent(&s.mediator, &session, e),
        Some(Content::AgreementFinal(_))
    )));
}

// ----- key bundles -----

/// The newest key bundle the mediator published for `room`.
fn bundle_for(s: &Stage, room: RoomId, epoch: Option<u64>) -> SignedKeyBundle {
    s.proxy
        .bundles_published_by(&s.m())
        .into_iter()
        .rev()
        .find(|b| b.unverified().room == room && epoch.is_none_or(|e| b.unverified().epoch == e))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_bundle_meant_for_another_member_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let words = "the defendant's private words";
    say(
        &s.defendant,
        &mut s.mediator,
        &session,
        &s.defendant_room,
        words,
    )
    .await;
    let env = posted(&s.proxy, &s.d(), &s.mediator, &session);
    // The defendant's room key as the mediator sealed it (to the defendant
    // and the mediator), then with the defendant's copy relabelled as the
    // claimant's.
    let theirs = bundle_for(&s, s.defendant_room, None);
    let mut relabelled = theirs.unverified().clone();
    for e in &mut relabelled.entries {
        if e.recipient == s.d() {
            e.recipient = s.c();
        }
    }
    let relabelled = resigned_as(&relabelled, &theirs);
    for bundle in [&theirs, &relabelled] {
        s.proxy.inject_to(&s.c(), bundle_event(bundle)).await;
    }
    s.proxy.inject_to(&s.c(), envelope_event(1, &env)).await;
    let events = settle(&mut s.claimant, &session).await;
    assert_eq!(
        warnings(&events),
        vec![Warning::Verification; 3],
        "{events:#?}"
    );
    assert_refused(&s.claimant, &session, &events, &verification(), words);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_bundle_moved_to_another_room_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let attacker = DeviceKeys::generate().unwrap();
    let roster = s.claimant.roster(&session).unwrap();
    let joint_epoch = roster.room(&s.joint).unwrap().epoch;
    // The claimant's own private room key, relabelled as the joint room's.
    let own = bundle_for(&s, s.claimant_room, None);
    let mut moved_bundle = own.unverified().clone();
    moved_bundle.room = s.joint;
    moved_bundle.epoch = joint_epoch;
    let moved_bundle = resigned_as(&moved_bundle, &own);
    // A joint room key of the relay's own choosing, sealed to the claimant
    // with the right HPKE info, signed by the attacker.
    let mut relays = KeyBundle {
        session,
        room: s.joint,
        epoch: joint_epoch,
        roster: s.proxy.rosters_published_by(&s.m()).last().unwrap().hash(),
        entries: Vec::new(),
    };
    let claimant_identity = roster.member(&s.c()).unwrap().identity.clone();
    let (enc, mut ctx) = caucus_protocol::hpke::setup_sender(
        &claimant_identity.dh_key(),
        &relays.hpke_info(&s.c()),
        None,
        None,
    )
    .unwrap();
    relays.entries.push(SealedKey {
        recipient: s.c(),
        enc,
        ciphertext: ctx.seal(&[], &[0x33; 32]).unwrap(),
    });
    let relays = signed_by(&relays, &attacker);
    for bundle in [&moved_bundle, &relays] {
        s.proxy.inject_to(&s.c(), bundle_event(bundle)).await;
    }
    let events = settle(&mut s.claimant, &session).await;
    assert_eq!(
        warnings(&events),
        vec![Warning::Verification; 2],
        "{events:#?}"
    );
    // The joint room key the claimant holds is still the mediator's.
    let words = "the mediator, in the joint room";
    s.mediator
        .send(&session, &s.joint, words, Sharing::MayShare)
        .await
        .unwrap();
    wait_for(&mut s.claimant, is_text(words)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_bundle_moved_to_another_epoch_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    // Joint room epochs: 1 (the mediator), 2 (+ claimant), 3 (+ defendant).
    let epoch1 = bundle_for(&s, s.joint, Some(1));
    let epoch2 = bundle_for(&s, s.joint, Some(2));
    let epoch3 = bundle_for(&s, s.joint, Some(3));
    // Genuine bundles of epochs the recipient was not in.
    s.proxy.inject_to(&s.c(), bundle_event(&epoch1)).await;
    s.proxy.inject_to(&s.d(), bundle_event(&epoch2)).await;
    // The current bundle relabelled as an earlier epoch.
    let mut earlier = epoch3.unverified().clone();
    earlier.epoch = 2;
    let earlier = resigned_as(&earlier, &epoch3);
    s.proxy.inject_to(&s.d(), bundle_event(&earlier)).await;
    let events = settle(&mut s.claimant, &session).await;
    assert_eq!(
        warnings(&events),
        vec![Warning::Verification],
        "{events:#?}"
    );
    let events = settle(&mut s.defendant, &session).await;
    assert_eq!(
        warnings(&events),
        vec![Warning::Verification; 2],
        "{events:#?}"
    );
    // What the claimant said at epoch 2, before the defendant came, stays
    // unreadable to the defendant.
    let envelopes = s.proxy.log();
    let early: Vec<_> = envelopes
        .iter()
        .filter(|f| f.to_client(&s.c()) && f.kind() == "envelope")
        .filter_map(proxy::Frame::envelope)
        .filter(|e| e.header().room == s.joint && e.header().epoch == 2)
        .collect();
    for env in &early {
        s.proxy.inject_to(&s.d(), envelope_event(1, env)).await;
    }
    let events = settle(&mut s.defendant, &session).await;
    assert_eq!(warnings(&events).len(), early.len(), "{events:#?}");
    // Both still read the joint room at its current epoch.
    let words = "the joint room, epoch 3";
    s.mediator
        .send(&session, &s.joint, words, Sharing::MayShare)
        .await
        .unwrap();
    wait_for(&mut s.claimant, is_text(words)).await;
    wait_for(&mut s.defendant, is_text(words)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_members_old_keys_do_not_read_what_is_said_after() {
    let mut s = stage().await;
    let session = s.session;
    let old_joint = bundle_for(&s, s.joint, None);
    let old_epoch = old_joint.unverified().epoch;
    s.mediator.remove_member(&session, &s.d()).await.unwrap();
    let words = "AFTER-removal-the-claimant-may-settle";
    s.mediator
        .send(&session, &s.joint, words, Sharing::MayShare)
        .await
        .unwrap();
    wait_for(&mut s.claimant, is_text(words)).await;
    let env = s.proxy.posted_by(&s.m()).pop().unwrap();
    assert!(env.header().epoch > old_epoch);
    let new_joint = bundle_for(&s, s.joint, Some(env.header().epoch));
    // The mediator sealed the new epochs to no one removed.
    for b in s
        .proxy
        .bundles_published_by(&s.m())
        .iter()
        .filter(|b| b.unverified().roster == new_joint.unverified().roster)
    {
        assert!(b.unverified().entries.iter().all(|e| e.recipient != s.d()));
    }
    // The relay hands the removed defendant its old joint key again, the
    // new bundle, the new message, and the new message relabelled as of
    // the epoch whose key the defendant still holds.
    let at_old_epoch = moved(&env, |h| h.epoch = old_epoch);
    for frame in [
        bundle_event(&old_joint),
        bundle_event(&new_joint),
        envelope_event(9, &env),
        envelope_event(9, &at_old_epoch),
    ] {
        s.proxy.inject_to(&s.d(), frame).await;
    }
    let events = settle_by_marker(&s.proxy, &mut s.defendant, &session).await;
    assert_eq!(
        warnings(&events),
        vec![Warning::Verification; 3],
        "{events:#?}"
    );
    assert_refused(&s.defendant, &session, &events, &verification(), words);
}

// ----- members who left, and consent (protocol.md 7.6, 10.5, 9.3) -----

/// Both parties agree to continue and to meet, and the mediator opens the
/// joint room (its gates, protocol.md 9.3).
async fn open_joint_room(s: &mut Stage) {
    let session = s.session;
    s.mediator
        .set_phase(&session, Phase::IndividualMeetings)
        .await
        .unwrap();
    for step in [Step::Continue, Step::JointMeeting] {
        for party in [&mut s.claimant, &mut s.defendant] {
            party.agree(&session, step).await.unwrap();
            wait_for(
                &mut s.mediator,
                |e| matches!(e, Event::Agreed { step: got, .. } if *got == step),
            )
            .await;
        }
        if step == Step::Continue {
            s.mediator
                .set_phase(&session, Phase::Negotiation)
                .await
                .unwrap();
        }
    }
    s.mediator.set_joint_open(&session, true).await.unwrap();
    for client in [&mut s.claimant, &mut s.defendant] {
        settle(client, &session).await;
    }
}

/// The relay withholds from `leaver` every roster and key bundle from now
/// on, so its device still believes itself in the joint room at the old
/// epoch; what it then posts there is refused by the relay, but the proxy
/// keeps it to deliver to the others "as if it were old".
fn withhold_rosters_from(s: &Stage, leaver: Fingerprint) {
    s.proxy.set_rule(move |f| {
        if f.to_client(&leaver) && matches!(f.kind(), "roster" | "key_bundle") {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
}

/// `leaver` writes `words` in the joint room with the key it kept; the
/// relay refuses it, and the proxy hands it to the mediator and `other`,
/// who must both refuse it without showing it.
async fn smuggled_into_the_joint_room(s: &mut Stage, leaver: Fingerprint, words: &str) {
    let session = s.session;
    let joint = s.joint;
    let client = if leaver == s.c() {
        &s.claimant
    } else {
        &s.defendant
    };
    assert!(
        client
            .send(&session, &joint, words, Sharing::MayShare)
            .await
            .is_err(),
        "the relay took a post from someone no longer in the room"
    );
    let smuggled = s
        .proxy
        .posted_by(&leaver)
        .into_iter()
        .rev()
        .find(|e| e.header().room == joint)
        .unwrap();
    let others = [s.m(), if leaver == s.c() { s.d() } else { s.c() }];
    for who in others {
        s.proxy
            .inject_to(&who, envelope_event(1_000, &smuggled))
            .await;
    }
    for who in others {
        let client = if who == s.m() {
            &mut s.mediator
        } else if who == s.c() {
            &mut s.claimant
        } else {
            &mut s.defendant
        };
        let events = settle(client, &session).await;
        assert_refused(client, &session, &events, &Warning::Verification, words);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_party_leaves_the_joint_room_and_what_it_seals_with_the_old_key_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    open_joint_room(&mut s).await;
    let claimant = s.c();
    withhold_rosters_from(&s, claimant);
    s.claimant.withdraw(&session).await.unwrap();
    // The mediator's device records the withdrawal: the claimant is out of
    // the joint room at its next epoch.
    wait_for(&mut s.defendant, |e| {
        matches!(e, Event::System { .. }) && format!("{e:?}").contains("PartyWithdrew")
    })
    .await;
    let roster = s.defendant.roster(&session).unwrap();
    assert!(!roster.joint_room().unwrap().has(&claimant));
    smuggled_into_the_joint_room(&mut s, claimant, "written after withdrawing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_cannot_post_with_the_key_it_kept_however_the_relay_delivers_it() {
    let mut s = stage().await;
    let session = s.session;
    open_joint_room(&mut s).await;
    let defendant = s.d();
    s.defendant
        .send(&session, &s.joint, "said while a member", Sharing::MayShare)
        .await
        .unwrap();
    wait_for(&mut s.claimant, is_text("said while a member")).await;
    wait_for(&mut s.mediator, is_text("said while a member")).await;
    withhold_rosters_from(&s, defendant);
    s.mediator
        .remove_member(&session, &defendant)
        .await
        .unwrap();
    settle(&mut s.claimant, &session).await;
    // What the defendant said while a member still stands; what it seals
    // now with the key it kept does not.
    assert!(shows(&s.claimant.history(&session), "said while a member"));
    let events = {
        let client = &mut s.defendant;
        let joint = s.joint;
        assert!(
            client
                .send(&session, &joint, "after removal", Sharing::MayShare)
                .await
                .is_err()
        );
        let smuggled = s
            .proxy
            .posted_by(&defendant)
            .into_iter()
            .rev()
            .find(|e| e.header().room == joint)
            .unwrap();
        s.proxy
            .inject_to(&s.claimant.fingerprint(), envelope_event(1_000, &smuggled))
            .await;
        settle(&mut s.claimant, &session).await
    };
    assert_refused(
        &s.claimant,
        &session,
        &events,
        &Warning::Verification,
        "after removal",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_for_someone_elses_message_is_refused() {
    let mut s = stage().await;
    let session = s.session;
    let solicitor_dir = tempfile::tempdir().unwrap();
    let mut solicitor = admit(
        &mut s.mediator,
        &session,
        &s.parties[0],
        solicitor_dir.path(),
    )
    .await;
    let secret = "the claimant's own words, for the mediator only";
    s.claimant
        .send(&session, &s.claimant_room, secret, Sharing::MediatorOnly)
        .await
        .unwrap();
    wait_for(&mut s.mediator, is_text(secret)).await;
    wait_for(&mut solicitor, is_text(secret)).await;
    let source = posted(&s.proxy, &s.c(), &s.mediator, &session);
    // The solicitor "consents" for the claimant.
    solicitor
        .post(
            &session,
            &s.claimant_room,
            &Content::Consent {
                message: source.hash(),
            },
        )
        .await
        .unwrap();
    for client in [&mut s.mediator, &mut s.claimant] {
        let events = settle(client, &session).await;
        assert!(
            warnings(&events).contains(&Warning::Verification),
            "{events:#?}"
        );
        assert!(!events.iter().any(|e| matches!(e, Event::Consent { .. })));
    }
    let refused = s
        .mediator
        .forward(&session, &source.hash(), &s.defendant_room, None)
        .await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_author_is_warned_when_its_private_words_are_shared_without_its_consent() {
    let mut s = stage().await;
    let session = s.session;
    let secret = "our real bottom line";
    s.defendant
        .send(&session, &s.defendant_room, secret, Sharing::MediatorOnly)
        .await
        .unwrap();
    wait_for(&mut s.mediator, is_text(secret)).await;
    let source = posted(&s.proxy, &s.d(), &s.mediator, &session);
    // A mediator client that skips the consent rule carries it anyway and
    // files the receipt in the defendant's room.
    s.mediator
        .post(
            &session,
            &s.defendant_room,
            &Content::ShareReceipt(ShareReceipt {
                source_message: source.hash(),
                destination_room: s.claimant_room,
                mode: ForwardMode::Verbatim,
                text: secret.into(),
            }),
        )
        .await
        .unwrap();
    let events = settle(&mut s.defendant, &session).await;
    assert!(warnings(&events).contains(&Warning::Consent), "{events:#?}");
    // With its consent, a receipt is no alarm.
    let consented = "this one may go";
    s.defendant
        .send(
            &session,
            &s.defendant_room,
            consented,
            Sharing::MediatorOnly,
        )
        .await
        .unwrap();
    wait_for(&mut s.mediator, is_text(consented)).await;
    let second = posted(&s.proxy, &s.d(), &s.mediator, &session);
    s.defendant.consent(&session, &second.hash()).await.unwrap();
    settle(&mut s.mediator, &session).await;
    s.mediator
        .forward(&session, &second.hash(), &s.claimant_room, None)
        .await
        .unwrap();
    let events = settle(&mut s.defendant, &session).await;
    assert!(
        !warnings(&events).contains(&Warning::Consent),
        "{events:#?}"
    );
}

// ----- documents: a relay that swaps, drops, truncates or reorders chunks -----

/// A file of `len` bytes that is not all one byte, so that chunks differ.
fn file_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// The claimant adds a three-chunk document (150,000 bytes: chunks of 65552,
/// 65552 and 20496 bytes at the relay) to their private room, for the
/// mediator to share; the mediator has seen it. Returns its message and
/// bytes.
async fn claimant_adds_a_document(s: &mut Stage, name: &str, seed: u8) -> (Digest, Vec<u8>) {
    let bytes = file_bytes(150_000, seed);
    let path = s.dirs[3].path().join(name);
    std::fs::write(&path, &bytes).unwrap();
    let sent = s
        .claimant
        .send_document(&s.session, &s.claimant_room, &path, None, Sharing::MayShare)
        .await
        .unwrap();
    settle(&mut s.mediator, &s.session.clone()).await;
    (sent.message, bytes)
}

/// The request id of each `download` the mediator sends, by chunk index.
fn download_index(frame: &proxy::Frame, ids: &mut std::collections::HashMap<u64, u64>) {
    if frame.kind() == "download" {
        let id = frame.json["id"].as_u64().unwrap();
        ids.insert(id, frame.json["index"].as_u64().unwrap());
    }
}

/// The chunk index of a reply to one of the mediator's downloads, if it is
/// one.
fn reply_index(
    frame: &proxy::Frame,
    m: &Fingerprint,
    ids: &std::collections::HashMap<u64, u64>,
) -> Option<u64> {
    if !frame.to_client(m) || frame.kind() != "ok" || frame.json.get("data").is_none() {
        return None;
    }
    ids.get(&frame.json["id"].as_u64()?).copied()
}

/// The mediator saves `message` with the proxy's current rule: it must fail
/// with a document error, leaving no file and no partial file; then, with
/// the relay honest again, the same download gives exactly `bytes`.
async fn refused_then_saved(s: &Stage, message: &Digest, bytes: &[u8], what: &str) {
    let out = s.dirs[0].path().join("saved.bin");
    match s.mediator.save_document(&s.session, message, &out).await {
        Err(ClientError::Document(e)) => {
            assert!(e.to_string().contains("refused"), "{what}: {e}");
        }
        other => panic!("{what}: the download was not refused: {other:?}"),
    }
    assert!(!out.exists(), "{what}: a file was saved");
    let leftovers: Vec<_> = std::fs::read_dir(s.dirs[0].path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    s.proxy.clear_rule();
    s.mediator
        .save_document(&s.session, message, &out)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), bytes, "{what}: honest again");
    std::fs::remove_file(&out).unwrap();
}

/// Rewrite the `data` of the reply for chunk `index` with `f`.
fn with_data(frame: &proxy::Frame, f: impl FnOnce(Vec<u8>) -> Vec<u8>) -> serde_json::Value {
    let mut json = frame.json.clone();
    let data = caucus_protocol::b64::decode(json["data"].as_str().unwrap()).unwrap();
    json["data"] = caucus_protocol::b64::encode(&f(data)).into();
    json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_swaps_truncates_drops_or_reorders_chunks_is_caught_and_nothing_is_saved() {
    // A fresh document for each attack: a device that has opened a document
    // keeps its sealed chunks and opens them again without the relay.
    let mut s = stage().await;
    let m = s.m();
    let (message, bytes) = claimant_adds_a_document(&mut s, "report.pdf", 1).await;

    // Swapped: chunk 0's reply carries chunk 1 and chunk 1's carries chunk 0.
    let mut ids = std::collections::HashMap::new();
    let mut held: Option<proxy::Frame> = None;
    s.proxy.set_rule(move |f| {
        download_index(f, &mut ids);
        match reply_index(f, &m, &ids) {
            Some(0) => {
                held = Some(f.clone());
                Verdict::Drop
            }
            Some(1) => {
                let Some(first) = held.take() else {
                    return Verdict::Pass;
                };
                let one = f.json["data"].clone();
                let mut zero = first.json.clone();
                zero["data"] = one;
                let mut second = f.json.clone();
                second["data"] = first.json["data"].clone();
                Verdict::Replace(vec![zero, second])
            }
            _ => Verdict::Pass,
        }
    });
    refused_then_saved(&s, &message, &bytes, "swapped").await;

    // Truncated: the last chunk cut in half.
    let (message, bytes) = claimant_adds_a_document(&mut s, "report-2.pdf", 5).await;
    let mut ids = std::collections::HashMap::new();
    s.proxy.set_rule(move |f| {
        download_index(f, &mut ids);
        match reply_index(f, &m, &ids) {
            Some(2) => Verdict::Replace(vec![with_data(f, |mut d| {
                d.truncate(d.len() / 2);
                d
            })]),
            _ => Verdict::Pass,
        }
    });
    refused_then_saved(&s, &message, &bytes, "truncated").await;

    // Dropped: the relay says it has no chunk 1.
    let (message, _) = claimant_adds_a_document(&mut s, "report-3.pdf", 6).await;
    let mut ids = std::collections::HashMap::new();
    s.proxy.set_rule(move |f| {
        download_index(f, &mut ids);
        match reply_index(f, &m, &ids) {
            Some(1) => Verdict::Replace(vec![serde_json::json!({
                "type": "error", "v": 1, "id": f.json["id"],
                "code": "not_found", "message": "no such chunk",
            })]),
            _ => Verdict::Pass,
        }
    });
    let out = s.dirs[0].path().join("saved.bin");
    let dropped = s.mediator.save_document(&s.session, &message, &out).await;
    assert!(dropped.is_err() && !out.exists(), "dropped: {dropped:?}");
    s.proxy.clear_rule();

    // Dropped without a word: a reply with no data.
    let (message, bytes) = claimant_adds_a_document(&mut s, "report-4.pdf", 7).await;
    let mut ids = std::collections::HashMap::new();
    s.proxy.set_rule(move |f| {
        download_index(f, &mut ids);
        match reply_index(f, &m, &ids) {
            Some(1) => {
                let mut json = f.json.clone();
                json.as_object_mut().unwrap().remove("data");
                Verdict::Replace(vec![json])
            }
            _ => Verdict::Pass,
        }
    });
    refused_then_saved(&s, &message, &bytes, "no data").await;

    // Reordered: every chunk served one place along (0 gets 1, 1 gets 2, 2 gets 0).
    let (message, bytes) = claimant_adds_a_document(&mut s, "report-5.pdf", 8).await;
    let mut ids = std::collections::HashMap::new();
    let mut seen: Vec<Option<proxy::Frame>> = vec![None, None, None];
    s.proxy.set_rule(move |f| {
        download_index(f, &mut ids);
        let Some(i) = reply_index(f, &m, &ids) else {
            return Verdict::Pass;
        };
        seen[i as usize] = Some(f.clone());
        if seen.iter().any(Option::is_none) {
            return Verdict::Drop;
        }
        let frames: Vec<proxy::Frame> = seen.iter_mut().map(|x| x.take().unwrap()).collect();
        Verdict::Replace(
            (0..3)
                .map(|i| {
                    let mut json = frames[i].json.clone();
                    json["data"] = frames[(i + 1) % 3].json["data"].clone();
                    json
                })
                .collect(),
        )
    });
    refused_then_saved(&s, &message, &bytes, "reordered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_of_another_document_or_one_altered_in_upload_never_opens() {
    let mut s = stage().await;
    let (message, bytes) = claimant_adds_a_document(&mut s, "accounts.xlsx", 2).await;
    let (other, _) = claimant_adds_a_document(&mut s, "letter.pdf", 3).await;
    let m = s.m();

    // Fetch the other document's first chunk, as the relay holds it.
    let mut other_chunk = None;
    let out = s.dirs[0].path().join("other.bin");
    s.mediator
        .save_document(&s.session, &other, &out)
        .await
        .unwrap();
    for f in s.proxy.log() {
        if f.to_client(&m) && f.json.get("data").is_some() && other_chunk.is_none() {
            other_chunk = Some(f.json["data"].clone());
        }
    }
    let other_chunk = other_chunk.unwrap();

    // Substituted: chunk 0 of the other document, the same length, for chunk 0.
    let mut ids = std::collections::HashMap::new();
    s.proxy.set_rule(move |f| {
        download_index(f, &mut ids);
        match reply_index(f, &m, &ids) {
            Some(0) => {
                let mut json = f.json.clone();
                json["data"] = other_chunk.clone();
                Verdict::Replace(vec![json])
            }
            _ => Verdict::Pass,
        }
    });
    refused_then_saved(&s, &message, &bytes, "another document's chunk").await;

    // Altered on its way up: the relay stores a chunk with one byte changed.
    let c = s.c();
    s.proxy.set_rule(move |f| {
        if f.from_client(&c) && f.kind() == "chunk" && f.json["index"] == 1 {
            return Verdict::Replace(vec![with_data(f, |mut d| {
                d[100] ^= 0x40;
                d
            })]);
        }
        Verdict::Pass
    });
    let path = s.dirs[3].path().join("minutes.pdf");
    let altered = file_bytes(150_000, 4);
    std::fs::write(&path, &altered).unwrap();
    let sent = s
        .claimant
        .send_document(&s.session, &s.claimant_room, &path, None, Sharing::MayShare)
        .await
        .unwrap();
    s.proxy.clear_rule();
    settle(&mut s.mediator, &s.session.clone()).await;
    let out = s.dirs[0].path().join("minutes.pdf");
    match s
        .mediator
        .save_document(&s.session, &sent.message, &out)
        .await
    {
        // Chunk 1 is the second part.
        Err(ClientError::Document(e)) => assert!(e.to_string().contains("part 2 of"), "{e}"),
        other => panic!("an altered chunk was not caught: {other:?}"),
    }
    assert!(!out.exists());
}
