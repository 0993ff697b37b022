//! The client library end to end against a real relay: real websockets, real sled and
//! state directories, several clients per test.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::time::Duration;

use caucus_client::{Client, Event, StateDir};
use caucus_protocol::content::{ForwardMode, Sharing};
use caucus_protocol::ids::{PartyId, SessionId};

use caucus_tests::{Relay, dir_contains, wait_for};

/// The mediator, a claimant with a solicitor, and a defendant, all admitted.
struct Cast {
    session: SessionId,
    claimant_party: PartyId,
    mediator: Client,
    claimant: Client,
    solicitor: Client,
    defendant: Client,
    dirs: Vec<tempfile::TempDir>,
}

async fn cast(relay: &Relay) -> Cast {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let state = |i: usize| StateDir::open(dirs[i].path()).unwrap();
    let mut mediator = Client::open(state(0), &relay.url).await.unwrap();
    let (session, parties) = mediator
        .create_session("The mediator", &["Claimant", "Defendant trust"])
        .await
        .unwrap();
    let mut joined = Vec::new();
    for (i, (party, name)) in [
        (parties[0], "Ms C"),
        (parties[0], "Mr S (solicitor)"),
        (parties[1], "Dr D"),
    ]
    .into_iter()
    .enumerate()
    {
        let link = mediator
            .invite(
                &session,
                &party,
                name,
                caucus_client::now() + 3600,
                caucus_client::Admission::Automatic,
            )
            .await
            .unwrap();
        let (mut client, s) = Client::join(state(i + 1), &link).await.unwrap();
        assert_eq!(s, session);
        wait_for(&mut mediator, |e| matches!(e, Event::Admitted { .. })).await;
        wait_for(&mut client, |e| matches!(e, Event::Joined { .. })).await;
        client.sync(&session).await.unwrap();
        joined.push(client);
    }
    let defendant = joined.pop().unwrap();
    let solicitor = joined.pop().unwrap();
    let claimant = joined.pop().unwrap();
    Cast {
        session,
        claimant_party: parties[0],
        mediator,
        claimant,
        solicitor,
        defendant,
        dirs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_message_reaches_its_party_and_the_mediator_only() {
    let relay = Relay::start(&[]).await;
    let mut c = cast(&relay).await;
    let room = c.claimant.my_room(&c.session).unwrap();
    assert_eq!(
        room,
        c.mediator
            .party_room(&c.session, &c.claimant_party)
            .unwrap()
    );
    let canary = "CANARY-3c1f-our-walk-away-figure-is-40k";
    c.claimant
        .send(&c.session, &room, canary, Sharing::MediatorOnly)
        .await
        .unwrap();
    for client in [&mut c.mediator, &mut c.solicitor] {
        match wait_for(client, |e| matches!(e, Event::Message { .. })).await {
            Event::Message { text, sharing, .. } => {
                assert_eq!((text.as_str(), sharing), (canary, Sharing::MediatorOnly));
            }
            _ => unreachable!(),
        }
    }
    while let Some(e) = c
        .defendant
        .next_event_within(Duration::from_millis(500))
        .await
    {
        assert!(
            !matches!(e, Event::Message { .. } | Event::Forwarded { .. }),
            "{e:?}"
        );
    }
    // The canary is nowhere in the relay's data directory, nor in the other
    // party's state; it is in the claimant's own (encrypted at rest is the
    // device's business, not the relay's).
    assert!(!dir_contains(relay.dir.path(), canary.as_bytes()));
    assert!(!dir_contains(c.dirs[3].path(), canary.as_bytes()));
    assert!(dir_contains(c.dirs[1].path(), canary.as_bytes()));
}

/// `party` agrees to `step`; wait until the mediator has it.
async fn agree_heard(
    party: &mut Client,
    mediator: &mut Client,
    session: &SessionId,
    step: caucus_protocol::content::Step,
) {
    party.agree(session, step).await.unwrap();
    wait_for(
        mediator,
        |e| matches!(e, Event::Agreed { step: s, .. } if *s == step),
    )
    .await;
}

/// Both parties agree to continue and to meet; the mediator moves to
/// negotiation and opens the joint room.
async fn open_joint_room(c: &mut Cast) {
    use caucus_protocol::content::Step;
    use caucus_protocol::roster::Phase;
    let session = c.session;
    c.mediator
        .set_phase(&session, Phase::IndividualMeetings)
        .await
        .unwrap();
    for step in [Step::Continue, Step::JointMeeting] {
        for party in [&mut c.claimant, &mut c.defendant] {
            agree_heard(party, &mut c.mediator, &session, step).await;
        }
        if step == Step::Continue {
            c.mediator
                .set_phase(&session, Phase::Negotiation)
                .await
                .unwrap();
        }
    }
    c.mediator.set_joint_open(&session, true).await.unwrap();
}

async fn next_message(client: &mut Client) -> (caucus_protocol::crypto::Digest, String) {
    match wait_for(client, |e| matches!(e, Event::Message { .. })).await {
        Event::Message { hash, text, .. } => (hash, text),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_carry_provenance_and_the_source_room_gets_a_receipt() {
    let relay = Relay::start(&[]).await;
    let mut c = cast(&relay).await;
    let session = c.session;
    let defendant_room = c.defendant.my_room(&session).unwrap();
    let claimant_room = c.claimant.my_room(&session).unwrap();
    let joint = c.mediator.joint_room(&session).unwrap();
    c.defendant
        .send(
            &session,
            &defendant_room,
            "we can offer 60k",
            Sharing::MediatorOnly,
        )
        .await
        .unwrap();
    let (hash, _) = next_message(&mut c.mediator).await;
    // Mediator-only: refused without the author's consent, in any form.
    for reframed in [None, Some("They have moved.".to_string())] {
        let refused = c
            .mediator
            .forward(&session, &hash, &claimant_room, reframed)
            .await;
        assert!(
            matches!(
                refused,
                Err(caucus_client::ClientError::Protocol(
                    caucus_protocol::Error::NotPermitted(_)
                ))
            ),
            "{refused:?}"
        );
    }
    // The defendant consents to that message.
    c.defendant.consent(&session, &hash).await.unwrap();
    wait_for(
        &mut c.mediator,
        |e| matches!(e, Event::Consent { message, .. } if *message == hash),
    )
    .await;
    // Verbatim to the claimant's room.
    c.mediator
        .forward(&session, &hash, &claimant_room, None)
        .await
        .unwrap();
    match wait_for(&mut c.claimant, |e| matches!(e, Event::Forwarded { .. })).await {
        Event::Forwarded {
            mediator,
            from_room,
            mode,
            text,
            author_consented,
            ..
        } => {
            assert_eq!(mediator, c.mediator.fingerprint());
            assert_eq!(from_room, defendant_room);
            assert_eq!(mode, ForwardMode::Verbatim);
            assert_eq!(text, "we can offer 60k");
            assert!(author_consented);
        }
        _ => unreachable!(),
    }
    // The defendant's room is told what was shared, where, how.
    match wait_for(&mut c.defendant, |e| matches!(e, Event::Shared { .. })).await {
        Event::Shared {
            source,
            destination,
            mode,
            text,
            ..
        } => {
            assert_eq!(
                (source, destination, mode),
                (hash, claimant_room, ForwardMode::Verbatim)
            );
            assert_eq!(text, "we can offer 60k");
        }
        _ => unreachable!(),
    }
    // A may-share message, reframed, into the joint room (opened first).
    open_joint_room(&mut c).await;
    c.claimant
        .send(
            &session,
            &claimant_room,
            "I want an apology most of all",
            Sharing::MayShare,
        )
        .await
        .unwrap();
    let (hash2, _) = loop {
        let (h, t) = next_message(&mut c.mediator).await;
        if t.contains("apology") {
            break (h, t);
        }
    };
    c.mediator
        .forward(
            &session,
            &hash2,
            &joint,
            Some("An acknowledgement matters to the claimant.".into()),
        )
        .await
        .unwrap();
    for client in [&mut c.defendant, &mut c.solicitor] {
        match wait_for(
            client,
            |e| matches!(e, Event::Forwarded { room, .. } if *room == joint),
        )
        .await
        {
            Event::Forwarded {
                mode,
                text,
                author_consented,
                ..
            } => {
                assert_eq!(mode, ForwardMode::Reframed);
                assert_eq!(text, "An acknowledgement matters to the claimant.");
                assert!(!author_consented);
            }
            _ => unreachable!(),
        }
    }
    match wait_for(&mut c.claimant, |e| matches!(e, Event::Shared { .. })).await {
        Event::Shared {
            destination, mode, ..
        } => assert_eq!((destination, mode), (joint, ForwardMode::Reframed)),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_cannot_read_what_is_sent_after() {
    let relay = Relay::start(&[]).await;
    let mut c = cast(&relay).await;
    let session = c.session;
    let room = c.claimant.my_room(&session).unwrap();
    let solicitor = c.solicitor.fingerprint();
    c.mediator
        .remove_member(&session, &solicitor)
        .await
        .unwrap();
    // The claimant hears of the new roster before sending.
    let version = c.mediator.roster(&session).unwrap().version;
    wait_for(
        &mut c.claimant,
        |e| matches!(e, Event::Roster { version: v, .. } if *v == version),
    )
    .await;
    // No longer a member, still known by name (to say who was removed).
    let roster = c.claimant.roster(&session).unwrap();
    assert!(roster.member(&solicitor).is_none());
    assert_eq!(
        c.claimant.name_of(&session, &solicitor).as_deref(),
        Some("Mr S (solicitor)")
    );
    c.claimant
        .send(
            &session,
            &room,
            "after the solicitor left",
            Sharing::MediatorOnly,
        )
        .await
        .unwrap();
    let (_, text) = next_message(&mut c.mediator).await;
    assert_eq!(text, "after the solicitor left");
    // The solicitor sees the roster that removes them, and never the message.
    while let Some(e) = c
        .solicitor
        .next_event_within(Duration::from_millis(700))
        .await
    {
        assert!(
            !matches!(&e, Event::Message { text, .. } if text.contains("after the solicitor")),
            "{e:?}"
        );
    }
    let roster = c.solicitor.roster(&session).unwrap();
    assert!(roster.member(&solicitor).is_none());
    assert!(!roster.room(&room).unwrap().has(&solicitor));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_client_resumes_with_nothing_lost_and_nothing_duplicated() {
    let relay = Relay::start(&[]).await;
    let Cast {
        session,
        mut claimant,
        mut solicitor,
        dirs,
        mediator: _mediator,
        ..
    } = cast(&relay).await;
    let room = claimant.my_room(&session).unwrap();
    let claimant_id = claimant.fingerprint();
    for n in 0..3 {
        claimant
            .send(
                &session,
                &room,
                &format!("before {n}"),
                Sharing::MediatorOnly,
            )
            .await
            .unwrap();
        next_message(&mut solicitor).await;
    }
    // The solicitor's process stops; the conversation goes on.
    drop(solicitor);
    for n in 0..4 {
        claimant
            .send(
                &session,
                &room,
                &format!("while away {n}"),
                Sharing::MediatorOnly,
            )
            .await
            .unwrap();
    }
    let dir = StateDir::open(dirs[2].path()).unwrap();
    // It restarts on the same state directory.
    let mut back = Client::open(dir, &relay.url).await.unwrap();
    let mut texts = Vec::new();
    while let Some(e) = back.next_event_within(Duration::from_millis(700)).await {
        if let Event::Message { text, .. } = e {
            texts.push(text);
        }
    }
    assert_eq!(
        texts,
        [
            "while away 0",
            "while away 1",
            "while away 2",
            "while away 3"
        ]
    );
    // Live traffic continues; the restarted client can still send, and its
    // chain continues where it left off (no replay warning anywhere).
    claimant
        .send(&session, &room, "live", Sharing::MediatorOnly)
        .await
        .unwrap();
    assert_eq!(next_message(&mut back).await.1, "live");
    back.send(&session, &room, "I'm back", Sharing::MediatorOnly)
        .await
        .unwrap();
    // (The claimant's own posts show in its stream too: skip them.)
    let from_others = |e: &Event| {
        matches!(e, Event::Message { sender, .. } if *sender != claimant_id)
            || matches!(e, Event::Warning { .. })
    };
    match wait_for(&mut claimant, from_others).await {
        Event::Message { text, .. } => assert_eq!(text, "I'm back"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_by_themselves_when_the_relay_restarts() {
    let relay = Relay::start(&[]).await;
    let mut c = cast(&relay).await;
    let session = c.session;
    let room = c.claimant.my_room(&session).unwrap();
    let claimant_id = c.claimant.fingerprint();
    // The relay goes down and comes back on the same address and data.
    let relay = relay.restart().await;
    // The claimant posts as soon as it is back (the request waits for the
    // reconnection); the solicitor, which did nothing, catches up by itself.
    c.claimant
        .send(&session, &room, "after the restart", Sharing::MediatorOnly)
        .await
        .unwrap();
    match wait_for(
        &mut c.solicitor,
        |e| matches!(e, Event::Message { sender, .. } if *sender == claimant_id),
    )
    .await
    {
        Event::Message { text, .. } => assert_eq!(text, "after the restart"),
        _ => unreachable!(),
    }
    let _ = relay;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_request_with_a_bad_proof_is_rejected_and_reported() {
    use caucus_protocol::wire::{Encoded, Request, RequestBody};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let relay = Relay::start(&[]).await;
    let (mut mediator, _dir) = relay.device().await;
    let (session, parties) = mediator.create_session("M", &["P"]).await.unwrap();
    let link = mediator
        .invite(
            &session,
            &parties[0],
            "someone",
            caucus_client::now() + 600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    // Someone with the admission token (the relay's knowledge) but not the
    // secret knocks with a proof that does not verify.
    let invite = caucus_protocol::invite::Invite::from_link(&link).unwrap();
    let keys = caucus_protocol::identity::DeviceKeys::generate().unwrap();
    let mut request = invite.join_request(keys.public());
    request.proof[0] ^= 1;
    let mut http = relay.url.as_str().into_client_request().unwrap();
    http.headers_mut()
        .insert("sec-websocket-protocol", "caucus.v1".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(http).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    let (nonce, relay_key) = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await
            && let Ok(caucus_protocol::wire::ServerFrame::Event(e)) =
                serde_json::from_str(t.as_str())
            && let caucus_protocol::wire::Event::Challenge { nonce, relay, .. } = *e
        {
            break (nonce, relay.0.fingerprint());
        }
    };
    for (id, body) in [
        (
            1,
            RequestBody::Auth {
                identity: Encoded(keys.public().clone()),
                url: relay.url.clone(),
                signature: caucus_protocol::auth::AuthTarget::new(nonce, relay_key, &relay.url)
                    .sign(&keys),
            },
        ),
        (
            2,
            RequestBody::Join {
                token: invite.admission_token(),
                request: Encoded(request),
            },
        ),
    ] {
        let frame = serde_json::to_string(&Request { v: 1, id, body }).unwrap();
        ws.send(Message::text(frame)).await.unwrap();
    }
    match wait_for(&mut mediator, |e| {
        matches!(e, Event::Rejected { .. } | Event::Admitted { .. })
    })
    .await
    {
        Event::Rejected { reason, .. } => assert!(reason.contains("proof"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The knocker is told, and is not in the roster.
    let declined = loop {
        match tokio::time::timeout(caucus_tests::WAIT, ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"declined\"") => break true,
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert!(declined);
    assert!(
        mediator
            .roster(&session)
            .unwrap()
            .member(&keys.fingerprint())
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_may_withdraw_and_the_others_learn_only_that_a_party_has() {
    let relay = Relay::start(&[]).await;
    let mut c = cast(&relay).await;
    let session = c.session;
    let defendant = c.defendant.fingerprint();
    c.defendant.withdraw(&session).await.unwrap();
    match wait_for(&mut c.mediator, |e| matches!(e, Event::Withdrew { .. })).await {
        Event::Withdrew { member, .. } => assert_eq!(member, defendant),
        _ => unreachable!(),
    }
    // The claimant's side hears that a party has withdrawn, in the joint room.
    match wait_for(&mut c.claimant, |e| matches!(e, Event::System { .. })).await {
        Event::System { event, room, .. } => {
            assert_eq!(event, caucus_protocol::content::SystemEvent::PartyWithdrew);
            assert_eq!(room, c.claimant.joint_room(&session).unwrap());
        }
        _ => unreachable!(),
    }
    // The signed roster records it.
    let roster = c.claimant.roster(&session).unwrap();
    let party = roster.member(&defendant).unwrap().party.unwrap();
    assert!(roster.party(&party).unwrap().withdrawn);
    // Nobody but a party member can give that notice.
    let joint = c.mediator.joint_room(&session).unwrap();
    assert!(
        c.mediator
            .post(
                &session,
                &joint,
                &caucus_protocol::content::Content::Withdrawal
            )
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_joint_room_opens_only_once_every_party_has_agreed() {
    use caucus_protocol::content::Step;
    use caucus_protocol::roster::Phase;
    let relay = Relay::start(&[]).await;
    let mut c = cast(&relay).await;
    let session = c.session;
    // Not in the preparation phase, whatever anyone says.
    assert!(c.mediator.set_joint_open(&session, true).await.is_err());
    c.mediator
        .set_phase(&session, Phase::IndividualMeetings)
        .await
        .unwrap();
    // Moving on needs both parties' agreement to continue.
    agree_heard(&mut c.claimant, &mut c.mediator, &session, Step::Continue).await;
    assert!(
        c.mediator
            .set_phase(&session, Phase::Negotiation)
            .await
            .is_err()
    );
    agree_heard(&mut c.defendant, &mut c.mediator, &session, Step::Continue).await;
    c.mediator
        .set_phase(&session, Phase::Negotiation)
        .await
        .unwrap();
    // The joint room needs both parties' agreement to meet.
    agree_heard(
        &mut c.defendant,
        &mut c.mediator,
        &session,
        Step::JointMeeting,
    )
    .await;
    let refused = c.mediator.set_joint_open(&session, true).await;
    assert!(
        matches!(refused, Err(caucus_client::ClientError::NotAgreed { .. })),
        "{refused:?}"
    );
    let missing = c
        .mediator
        .parties_not_agreed(&session, Step::JointMeeting)
        .unwrap();
    assert_eq!(missing, vec![c.claimant_party]);
    // A withdrawal cancels a party's agreement; readmitted, it must agree again.
    agree_heard(
        &mut c.claimant,
        &mut c.mediator,
        &session,
        Step::JointMeeting,
    )
    .await;
    c.defendant.withdraw(&session).await.unwrap();
    wait_for(&mut c.mediator, |e| matches!(e, Event::Withdrew { .. })).await;
    let defendant_party = c
        .mediator
        .roster(&session)
        .unwrap()
        .member(&c.defendant.fingerprint())
        .unwrap()
        .party
        .unwrap();
    // The withdrawal is recorded and announced before the readmission.
    wait_for(&mut c.mediator, |e| matches!(e, Event::System { .. })).await;
    c.mediator
        .readmit(&session, &defendant_party)
        .await
        .unwrap();
    assert!(c.mediator.set_joint_open(&session, true).await.is_err());
    agree_heard(
        &mut c.defendant,
        &mut c.mediator,
        &session,
        Step::JointMeeting,
    )
    .await;
    c.mediator.set_joint_open(&session, true).await.unwrap();
    // Everyone is told the phase changed and the joint room opened.
    wait_for(&mut c.solicitor, |e| {
        matches!(
            e,
            Event::System {
                event: caucus_protocol::content::SystemEvent::JointOpened,
                ..
            }
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_room_holds_exactly_its_members() {
    let relay = Relay::start(&[]).await;
    let mut c = cast(&relay).await;
    let session = c.session;
    // The lawyers' room: the claimant's solicitor and the trust's member, with the mediator.
    let members = [c.solicitor.fingerprint(), c.defendant.fingerprint()];
    let side = c
        .mediator
        .create_side_room(&session, &members)
        .await
        .unwrap();
    let version = c.mediator.roster(&session).unwrap().version;
    for client in [&mut c.solicitor, &mut c.defendant, &mut c.claimant] {
        wait_for(
            client,
            |e| matches!(e, Event::Roster { version: v, .. } if *v == version),
        )
        .await;
    }
    c.solicitor
        .send(
            &session,
            &side,
            "Between us lawyers: costs are the sticking point.",
            Sharing::MayShare,
        )
        .await
        .unwrap();
    match wait_for(
        &mut c.defendant,
        |e| matches!(e, Event::Message { room, .. } if *room == side),
    )
    .await
    {
        Event::Message { text, .. } => assert!(text.contains("costs")),
        _ => unreachable!(),
    }
    wait_for(
        &mut c.mediator,
        |e| matches!(e, Event::Message { room, .. } if *room == side),
    )
    .await;
    // The claimant is not in it: cannot post, and never hears it.
    assert!(
        c.claimant
            .send(&session, &side, "let me in", Sharing::MayShare)
            .await
            .is_err()
    );
    while let Some(e) = c
        .claimant
        .next_event_within(Duration::from_millis(500))
        .await
    {
        assert!(
            !matches!(&e, Event::Message { room, .. } if *room == side),
            "{e:?}"
        );
    }
    // Closed, it is gone from the roster and no one posts in it.
    c.mediator.close_side_room(&session, &side).await.unwrap();
    let version = c.mediator.roster(&session).unwrap().version;
    wait_for(
        &mut c.solicitor,
        |e| matches!(e, Event::Roster { version: v, .. } if *v == version),
    )
    .await;
    assert!(
        c.solicitor
            .send(&session, &side, "still here?", Sharing::MayShare)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_co_mediator_has_a_mediators_rights_in_every_room() {
    let relay = Relay::start(&[]).await;
    let mut c = cast(&relay).await;
    let session = c.session;
    let link = c
        .mediator
        .invite_co_mediator(
            &session,
            "Mr Co-mediator",
            caucus_client::now() + 600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut co, _) = Client::join(StateDir::open(dir.path()).unwrap(), &link)
        .await
        .unwrap();
    wait_for(&mut c.mediator, |e| matches!(e, Event::Admitted { .. })).await;
    wait_for(&mut co, |e| matches!(e, Event::Joined { .. })).await;
    let roster = co.roster(&session).unwrap();
    let me = co.fingerprint();
    assert_eq!(
        roster.member(&me).unwrap().role,
        caucus_protocol::roster::Role::CoMediator
    );
    assert!(roster.rooms.iter().all(|r| r.has(&me)));
    // The claimant hears of the new roster, then confides; the co-mediator reads it.
    let version = roster.version;
    wait_for(
        &mut c.claimant,
        |e| matches!(e, Event::Roster { version: v, .. } if *v == version),
    )
    .await;
    let room = c.claimant.my_room(&session).unwrap();
    c.claimant
        .send(&session, &room, "for both mediators", Sharing::MayShare)
        .await
        .unwrap();
    let hash = match wait_for(&mut co, |e| matches!(e, Event::Message { .. })).await {
        Event::Message { text, hash, .. } => {
            assert_eq!(text, "for both mediators");
            hash
        }
        _ => unreachable!(),
    };
    // And carries it to the other party, as a mediator may.
    let other = co.party_room(&session, &c.claimant_party).unwrap();
    assert_eq!(other, room);
    let defendant_room = c.defendant.my_room(&session).unwrap();
    co.forward(
        &session,
        &hash,
        &defendant_room,
        Some("The claimant's side wrote to us both.".into()),
    )
    .await
    .unwrap();
    match wait_for(&mut c.defendant, |e| matches!(e, Event::Forwarded { .. })).await {
        Event::Forwarded { mediator, .. } => assert_eq!(mediator, me),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agreement_is_signed_by_every_party_member_and_verifies_offline() {
    let relay = Relay::start(&[]).await;
    let mut c = cast(&relay).await;
    let session = c.session;
    let terms = "1. The trust pays £150,000 within 28 days.\n2. The trust apologises in writing.";
    let checklist = vec!["Will it work in practice?".to_string()];
    let hash = c
        .mediator
        .propose_agreement(&session, "Settlement agreement", terms, &checklist, &[])
        .await
        .unwrap();
    // Each party member reads the exact terms, then signs.
    for party in [&mut c.claimant, &mut c.solicitor, &mut c.defendant] {
        match wait_for(party, |e| matches!(e, Event::AgreementProposed { .. })).await {
            Event::AgreementProposed {
                agreement,
                terms: t,
                ..
            } => {
                assert_eq!((agreement, t.as_str()), (hash, terms));
            }
            _ => unreachable!(),
        }
        party.sign_agreement(&session, &hash).await.unwrap();
    }
    // The mediator, having seen every signature, countersigns; everyone
    // receives the copy.
    c.mediator.sync(&session).await.unwrap();
    c.mediator.countersign(&session, &hash).await.unwrap();
    for party in [&mut c.claimant, &mut c.solicitor, &mut c.defendant] {
        wait_for(party, |e| matches!(e, Event::AgreementConcluded { .. })).await;
        let copy = party.agreement(&session).unwrap();
        let report = copy.verify().unwrap();
        assert_eq!(report.agreement, hash);
        assert_eq!(report.signers.len(), 4); // three party members and the mediator
    }
    // The copy stands alone: its bytes verify with no relay; a changed byte fails.
    let copy = c.claimant.agreement(&session).unwrap();
    let bytes = caucus_protocol::codec::Canonical::to_bytes(&copy);
    drop(relay);
    let again: caucus_protocol::agreement::SignedAgreement =
        caucus_protocol::codec::Canonical::from_bytes(&bytes).unwrap();
    assert!(again.verify().is_ok());
    let at = bytes.len() / 2;
    let mut bad = bytes.clone();
    bad[at] ^= 1;
    let tampered = <caucus_protocol::agreement::SignedAgreement as caucus_protocol::codec::Canonical>::from_bytes(&bad);
    assert!(tampered.map_or(true, |a| a.verify().is_err()));
}

/// Write `len` bytes that differ from chunk to chunk at `dir/name`.
fn a_file(
    dir: &std::path::Path,
    name: &str,
    len: usize,
    seed: u8,
) -> (std::path::PathBuf, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 253) as u8 ^ seed).collect();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_carried_verbatim_or_as_the_mediators_own_with_consent_and_receipts() {
    let relay = Relay::start(&[]).await;
    let mut c = cast(&relay).await;
    let session = c.session;
    let claimant_room = c.claimant.my_room(&session).unwrap();
    let defendant_room = c.defendant.my_room(&session).unwrap();
    let scratch = tempfile::tempdir().unwrap();

    // The claimant adds an expert's report for the mediator only (the default).
    let (path, report) = a_file(scratch.path(), "okafor-report.pdf", 150_000, 1);
    let sent = c
        .claimant
        .send_document(
            &session,
            &claimant_room,
            &path,
            Some("Expert report of Dr Okafor"),
            Sharing::MediatorOnly,
        )
        .await
        .unwrap();
    let seen = wait_for(&mut c.mediator, |e| matches!(e, Event::Document { .. })).await;
    let Event::Document {
        hash,
        sharing,
        document,
        sender,
        ..
    } = seen
    else {
        unreachable!()
    };
    assert_eq!(
        (hash, sharing, sender),
        (
            sent.message,
            Sharing::MediatorOnly,
            c.claimant.fingerprint()
        )
    );
    assert_eq!(
        (
            document.title.as_str(),
            document.name.as_str(),
            document.media_type.as_str(),
            document.size
        ),
        (
            "Expert report of Dr Okafor",
            "okafor-report.pdf",
            "application/pdf",
            150_000
        )
    );
    // The solicitor, in the same private room, sees it and opens it.
    wait_for(&mut c.solicitor, |e| matches!(e, Event::Document { .. })).await;
    let out = scratch.path().join("solicitor.pdf");
    c.solicitor
        .save_document(&session, &hash, &out)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), report);
    // The mediator opens it: the same bytes.
    let out = scratch.path().join("mediator.pdf");
    c.mediator
        .save_document(&session, &hash, &out)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), report);
    // The defendant's side never sees it.
    c.defendant.sync(&session).await.unwrap();
    assert!(c.defendant.documents(&session).is_empty());
    assert!(
        c.defendant
            .save_document(&session, &hash, &out)
            .await
            .is_err()
    );

    // Mediator only: carrying it, as it is or as the mediator's own, is refused.
    let (own_path, own) = a_file(scratch.path(), "report-summary.pdf", 2_000, 2);
    for refused in [
        c.mediator
            .carry_document(&session, &hash, &defendant_room, None)
            .await,
        c.mediator
            .carry_document(
                &session,
                &hash,
                &defendant_room,
                Some((&own_path, Some("Summary"))),
            )
            .await,
    ] {
        assert!(
            matches!(
                refused,
                Err(caucus_client::ClientError::Protocol(
                    caucus_protocol::Error::NotPermitted(_)
                ))
            ),
            "{refused:?}"
        );
    }
    assert!(c.defendant.documents(&session).is_empty());

    // With the claimant's consent it goes across as it is: the same file.
    c.claimant.consent(&session, &hash).await.unwrap();
    wait_for(
        &mut c.mediator,
        |e| matches!(e, Event::Consent { message, .. } if *message == hash),
    )
    .await;
    let carried = c
        .mediator
        .carry_document(&session, &hash, &defendant_room, None)
        .await
        .unwrap();
    let arrived = wait_for(&mut c.defendant, |e| {
        matches!(e, Event::DocumentCarried { .. })
    })
    .await;
    let Event::DocumentCarried {
        hash: copy,
        mode,
        author_consented,
        from_room,
        document,
        ..
    } = arrived
    else {
        unreachable!()
    };
    assert_eq!(
        (copy, mode, author_consented, from_room, document.sha256),
        (
            carried.message,
            ForwardMode::Verbatim,
            true,
            claimant_room,
            caucus_protocol::document::Hasher::digest(&report)
        )
    );
    let out = scratch.path().join("defendant.pdf");
    c.defendant
        .save_document(&session, &copy, &out)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), report);
    // The claimant's room is told what of theirs went where.
    let receipt = wait_for(&mut c.claimant, |e| matches!(e, Event::Shared { .. })).await;
    let Event::Shared {
        source,
        destination,
        mode,
        text,
        ..
    } = receipt
    else {
        unreachable!()
    };
    assert_eq!(
        (source, destination, mode),
        (hash, defendant_room, ForwardMode::Verbatim)
    );
    assert_eq!(
        text,
        "Document: Expert report of Dr Okafor (okafor-report.pdf, 150 KB)"
    );

    // The mediator's own version: a summary, uploaded by the mediator.
    let summary = c
        .mediator
        .carry_document(
            &session,
            &hash,
            &defendant_room,
            Some((&own_path, Some("Summary of the report"))),
        )
        .await
        .unwrap();
    wait_for(&mut c.defendant, |e| {
        matches!(e, Event::DocumentCarried { hash, mode: ForwardMode::Reframed, .. } if *hash == summary.message)
    })
    .await;
    let out = scratch.path().join("summary.pdf");
    c.defendant
        .save_document(&session, &summary.message, &out)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), own);
    let receipt = wait_for(&mut c.claimant, |e| {
        matches!(
            e,
            Event::Shared {
                mode: ForwardMode::Reframed,
                ..
            }
        )
    })
    .await;
    let Event::Shared { text, .. } = receipt else {
        unreachable!()
    };
    assert_eq!(
        text,
        "Document: Summary of the report (report-summary.pdf, 2 KB)"
    );

    // The joint room holds documents too: the mediator's draft heads of
    // terms reach every party.
    let joint = c.mediator.joint_room(&session).unwrap();
    let (heads_path, heads) = a_file(scratch.path(), "heads-of-terms.docx", 70_000, 3);
    let draft = c
        .mediator
        .send_document(
            &session,
            &joint,
            &heads_path,
            Some("Draft heads of terms"),
            Sharing::MayShare,
        )
        .await
        .unwrap();
    for party in [&mut c.claimant, &mut c.defendant] {
        wait_for(party, |e| {
            matches!(e, Event::Document { hash, room, .. } if *hash == draft.message && *room == joint)
        })
        .await;
        let out = scratch.path().join("heads.docx");
        party
            .save_document(&session, &draft.message, &out)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), heads);
    }

    // Closing erases the documents at the relay, and the statement counts
    // them: the report's 3 chunks, the summary's 1 and the draft's 2.
    let statement = c.mediator.close_session(&session).await.unwrap().unwrap();
    let erased = statement.verify().unwrap().erased;
    assert_eq!((erased.documents, erased.chunks), (3, 6), "{erased:?}");
    let dir = relay.stop().await;
    // Only the statement is left of the session: no document (F) or chunk (C).
    assert_eq!(
        caucus_tests::stored_records(dir.path(), &session),
        vec![b'D']
    );
    // Erasing a device's copy removes the chunks it kept.
    let kept = c.dirs[3].path().join("documents");
    assert!(
        std::fs::read_dir(&kept).unwrap().next().is_some(),
        "the defendant kept chunks"
    );
    c.defendant.erase(&session).unwrap();
    assert!(!dir_contains(c.dirs[3].path(), &report[..64]));
    assert!(std::fs::read_dir(&kept).map_or(true, |mut d| d.next().is_none()));
}
