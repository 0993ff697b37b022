//! The client machine without sockets: several machines and a simulated
//! relay stepped on a virtual clock (see `support`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use caucus_client_core::{
    Admission, ClientError, DocumentError, Event, Link, Machine, Membership, NewDocument, OpId,
    Outcome, REPLY_TIMEOUT_MS, TransferKind, Warning,
};
use caucus_protocol::content::{Content, ForwardMode, ShareReceipt, Sharing, Step, SystemEvent};
use caucus_protocol::crypto::Digest;
use caucus_protocol::document::Hasher;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::offer::{Amount, Offer, OfferKind};
use caucus_protocol::roster::{Phase, RoomKind};
use caucus_protocol::wire::PartyStatus;
use support::{Hostile, World};

/// A mediator's session with these parties; returns (mediator, session,
/// parties).
fn session_with(w: &mut World, parties: &[&str]) -> (usize, SessionId, Vec<PartyId>) {
    let med = w.device("mediator");
    let now = w.now;
    let (session, op) = w
        .m(med)
        .create_session("Ms Mediator", parties, now)
        .unwrap();
    let Ok(Outcome::Created(_, parties)) = w.outcome(med, op) else {
        panic!("created");
    };
    (med, session, parties)
}

/// A one-party session and someone named `name` in its waiting room;
/// returns (mediator, joiner, session, party).
fn waiting_joiner(w: &mut World, name: &'static str) -> (usize, usize, SessionId, PartyId) {
    let (med, session, parties) = session_with(w, &["Claimant"]);
    let link = invite(w, med, session, parties[0], name, Admission::ByMediator);
    let joiner = w.device(name);
    let now = w.now;
    let (_, op) = w.m(joiner).join(&link, now).unwrap();
    w.outcome(joiner, op).unwrap();
    assert!(matches!(
        w.m(joiner).membership(&session),
        Some(Membership::Waiting { .. })
    ));
    (med, joiner, session, parties[0])
}

/// A mediator, a claimant and a trust's representative, each admitted to
/// their party; returns (mediator, claimant, trust, session, parties).
fn mediation(w: &mut World) -> (usize, usize, usize, SessionId, Vec<PartyId>) {
    let (med, session, parties) = session_with(w, &["Claimant", "Defendant trust"]);
    let mut members = Vec::new();
    for (name, party) in [("claimant", parties[0]), ("trust", parties[1])] {
        let d = w.device(name);
        let link = invite(w, med, session, party, name, Admission::Automatic);
        let now = w.now;
        let (_, op) = w.m(d).join(&link, now).unwrap();
        w.outcome(d, op).unwrap();
        w.run();
        assert_eq!(
            w.m(d).membership(&session),
            Some(&Membership::Ready),
            "{name}"
        );
        assert!(w.events(d).contains(&Event::Joined { session }));
        members.push(d);
    }
    (med, members[0], members[1], session, parties)
}

fn invite(
    w: &mut World,
    med: usize,
    session: SessionId,
    party: PartyId,
    name: &str,
    admission: Admission,
) -> String {
    let now = w.now;
    let expires = now.as_secs() + 3600;
    let op = w
        .m(med)
        .invite(&session, &party, name, expires, admission, now)
        .unwrap();
    match w.outcome(med, op) {
        Ok(Outcome::Invite(link)) => link,
        other => panic!("{other:?}"),
    }
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { text, .. } | Event::Forwarded { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn say(
    w: &mut World,
    d: usize,
    session: SessionId,
    text: &str,
    sharing: Sharing,
) -> caucus_client_core::Sent {
    let room = w.m(d).my_room(&session).unwrap();
    match w.ask(d, |m, now| m.send(&session, &room, text, sharing, now)) {
        Ok(Outcome::Sent(sent)) => sent,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_joiner_waits_in_the_waiting_room_until_the_mediator_admits_them() {
    let mut w = World::new();
    let (med, claimant, session, claimant_party) = waiting_joiner(&mut w, "Ms Claimant");

    // The mediator sees who knocks, with the device whose safety code to
    // compare; nothing happens until they decide.
    let me = w.m(claimant).fingerprint();
    let knocking: Vec<_> = w
        .events(med)
        .into_iter()
        .filter(|e| matches!(e, Event::Knocking { .. }))
        .collect();
    assert_eq!(knocking.len(), 1);
    let Event::Knocking {
        member,
        name,
        party,
        ..
    } = &knocking[0]
    else {
        panic!()
    };
    assert_eq!(
        (member, name.as_str(), *party),
        (&me, "Ms Claimant", Some(claimant_party))
    );
    w.advance(60_000);
    assert!(matches!(
        w.m(claimant).membership(&session),
        Some(Membership::Waiting { .. })
    ));

    let now = w.now;
    w.m(med).admit(&session, &me, now).unwrap();
    w.run();
    assert_eq!(w.m(claimant).membership(&session), Some(&Membership::Ready));
    assert!(w.events(claimant).contains(&Event::Joined { session }));
    assert!(
        w.events(med)
            .iter()
            .any(|e| matches!(e, Event::Admitted { member, .. } if *member == me))
    );
    // Admitting again finds no one waiting.
    let now = w.now;
    assert!(matches!(
        w.m(med).admit(&session, &me, now),
        Err(ClientError::Usage(_))
    ));
}

#[test]
fn a_declined_joiner_is_told_and_never_gets_in() {
    let mut w = World::new();
    let (med, stranger, session, _) = waiting_joiner(&mut w, "Someone");
    let who = w.m(stranger).fingerprint();
    w.ask(med, |m, now| m.decline(&session, &who, now)).unwrap();
    assert!(w.events(stranger).contains(&Event::Declined { session }));
    assert!(w.m(med).roster(&session).unwrap().member(&who).is_none());
}

#[test]
fn gates_name_the_parties_that_have_not_agreed_and_open_once_all_have() {
    let mut w = World::new();
    let (med, claimant, trust, session, _) = mediation(&mut w);
    w.ask(med, |m, now| {
        m.set_phase(&session, Phase::IndividualMeetings, now)
    })
    .unwrap();

    let now = w.now;
    let refused = w.m(med).set_phase(&session, Phase::Negotiation, now);
    match refused {
        Err(ClientError::NotAgreed {
            step: Step::Continue,
            parties,
        }) => {
            assert_eq!(parties, ["Claimant", "Defendant trust"]);
        }
        other => panic!("{other:?}"),
    }
    w.ask(claimant, |m, now| m.agree(&session, Step::Continue, now))
        .unwrap();
    let now = w.now;
    match w.m(med).set_phase(&session, Phase::Negotiation, now) {
        Err(ClientError::NotAgreed { parties, .. }) => assert_eq!(parties, ["Defendant trust"]),
        other => panic!("{other:?}"),
    }
    w.ask(trust, |m, now| m.agree(&session, Step::Continue, now))
        .unwrap();
    w.ask(med, |m, now| m.set_phase(&session, Phase::Negotiation, now))
        .unwrap();
    for d in [med, claimant, trust] {
        assert_eq!(w.m(d).roster(&session).unwrap().phase, Phase::Negotiation);
    }
    assert!(w.events(trust).iter().any(|e| matches!(
        e,
        Event::System {
            event: SystemEvent::PhaseChanged(Phase::Negotiation),
            ..
        }
    )));
}

#[test]
fn carrying_private_words_needs_the_authors_consent_and_the_author_sees_what_was_shared() {
    let mut w = World::new();
    let (med, claimant, trust, session, parties) = mediation(&mut w);
    let secret = say(
        &mut w,
        claimant,
        session,
        "Our bottom line is 200k",
        Sharing::MediatorOnly,
    );
    w.run();
    let trust_room = w.m(med).party_room(&session, &parties[1]).unwrap();

    let now = w.now;
    let refused = w
        .m(med)
        .forward(&session, &secret.message, &trust_room, None, now);
    assert!(
        matches!(refused, Err(ClientError::Protocol(_))),
        "{refused:?}"
    );
    assert!(texts(&w.events(trust)).is_empty());

    w.ask(claimant, |m, now| m.consent(&session, &secret.message, now))
        .unwrap();
    w.run();
    let Ok(Outcome::Sent(carried)) = w.ask(med, |m, now| {
        m.forward(
            &session,
            &secret.message,
            &trust_room,
            Some("They have room to move".into()),
            now,
        )
    }) else {
        panic!()
    };
    assert_eq!(texts(&w.events(trust)), ["They have room to move"]);
    let shared: Vec<_> = w
        .events(claimant)
        .into_iter()
        .filter_map(|e| match e {
            Event::Shared {
                source, mode, text, ..
            } => Some((source, mode, text)),
            _ => None,
        })
        .collect();
    assert_eq!(
        shared,
        [(
            secret.message,
            ForwardMode::Reframed,
            "They have room to move".to_owned()
        )]
    );
    assert!(w.m(trust).message(&session, &carried.message).is_some());
}

#[test]
fn an_offer_is_carried_and_both_logs_show_it() {
    let mut w = World::new();
    let (med, claimant, trust, session, parties) = mediation(&mut w);
    let offer = Offer {
        kind: OfferKind::Offer,
        amount: Some(Amount::parse("GBP", "120000.00").unwrap()),
        terms: String::new(),
        conditions: vec!["Without admission of liability".into()],
        responds_to: None,
    };
    let Ok(Outcome::Sent(made)) = w.ask(trust, |m, now| m.make_offer(&session, &offer, now)) else {
        panic!()
    };
    w.run();
    let claimant_room = w.m(med).party_room(&session, &parties[0]).unwrap();
    w.ask(med, |m, now| {
        m.carry_offer(&session, &made.message, &claimant_room, None, now)
    })
    .unwrap();
    let received = w.m(claimant).offers(&session);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].offer, offer);
    assert_eq!(
        received[0].direction,
        caucus_client_core::Direction::Received
    );
    assert_eq!(
        w.m(trust).offers(&session)[0].direction,
        caucus_client_core::Direction::Made
    );
}

#[test]
fn the_mediator_countersigns_the_agreement_once_everyone_has_signed() {
    let mut w = World::new();
    let (med, claimant, trust, session, _) = mediation(&mut w);
    let Ok(Outcome::Proposed(hash)) = w.ask(med, |m, now| {
        m.propose_agreement(
            &session,
            "Settlement",
            "The trust pays 150,000.",
            &["Can you live with this?".into()],
            &[],
            now,
        )
    }) else {
        panic!()
    };
    w.ask(claimant, |m, now| m.sign_agreement(&session, &hash, now))
        .unwrap();
    w.run();
    let early = w.ask(med, |m, now| m.countersign(&session, &hash, now));
    assert!(
        matches!(&early, Err(ClientError::Unsigned { signatories }) if signatories.len() == 1),
        "not before everyone has signed, and the refusal names who is missing: {early:?}"
    );
    assert!(w.m(med).agreement(&session).is_none());
    w.ask(trust, |m, now| m.sign_agreement(&session, &hash, now))
        .unwrap();
    w.run();
    assert!(
        w.m(med).agreement(&session).is_none(),
        "a mediator countersigns deliberately, not by default"
    );
    w.ask(med, |m, now| m.countersign(&session, &hash, now))
        .unwrap();
    assert!(matches!(
        w.ask(claimant, |m, now| m.countersign(&session, &hash, now)),
        Err(ClientError::Usage(_))
    ));
    for d in [med, claimant, trust] {
        let signed = w.m(d).agreement(&session).expect("a copy");
        assert_eq!(signed.agreement.hash(), hash);
        assert_eq!(
            signed.verify().unwrap().signers.len(),
            3,
            "two parties and the mediator"
        );
    }
}

#[test]
fn an_agreement_attaches_a_document_the_mediator_holds_and_the_signatories_see_it() {
    use caucus_protocol::agreement::Attachment;
    use caucus_protocol::document::{DocumentKey, DocumentRef, Hasher};
    let mut w = World::new();
    let (med, claimant, trust, session, parties) = mediation(&mut w);
    let report = DocumentRef {
        file: caucus_protocol::ids::FileId([9; 16]),
        key: DocumentKey::generate().unwrap(),
        size: 21,
        hash: Hasher::digest(b"The trust's valuation"),
        title: "Valuation".into(),
        name: "valuation.pdf".into(),
        media_type: "application/pdf".into(),
    };
    let room = w.m(trust).party_room(&session, &parties[1]).unwrap();
    let document = caucus_protocol::content::Content::Document {
        sharing: Sharing::MayShare,
        document: report.clone(),
    };
    w.ask(trust, |m, now| m.post(&session, &room, document, now))
        .unwrap();
    w.run();
    let held = w
        .events(med)
        .iter()
        .find_map(|e| match e {
            Event::Document { hash, .. } => Some(*hash),
            _ => None,
        })
        .expect("the mediator holds the document");
    w.ask(med, |m, now| {
        m.send(&session, &room, "Thank you.", Sharing::MayShare, now)
    })
    .unwrap();
    let text = w
        .m(med)
        .history(&session)
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Message { hash, .. } => Some(*hash),
            _ => None,
        });
    // Only a document: not a text, not a message this device never saw, not twice.
    for (attaches, why) in [
        (vec![text.unwrap()], "a text"),
        (vec![caucus_protocol::crypto::Digest([3; 32])], "unknown"),
        (vec![held, held], "twice"),
    ] {
        let refused = w.ask(med, |m, now| {
            m.propose_agreement(&session, "Settlement", "Terms.", &[], &attaches, now)
        });
        assert!(matches!(refused, Err(ClientError::Usage(_))), "{why}");
    }
    let Ok(Outcome::Proposed(hash)) = w.ask(med, |m, now| {
        m.propose_agreement(&session, "Settlement", "The trust pays.", &[], &[held], now)
    }) else {
        panic!()
    };
    w.run();
    let attached = vec![Attachment::from(&report)];
    let proposed = w.events(claimant).into_iter().find_map(|e| match e {
        Event::AgreementProposed {
            agreement,
            attachments,
            ..
        } => Some((agreement, attachments)),
        _ => None,
    });
    assert_eq!(proposed, Some((hash, attached.clone())));
    let draft = w.m(trust).draft(&session, &hash).unwrap();
    assert_eq!(draft.attachments, attached);
    assert_eq!(draft.hash(), hash);
}

#[test]
fn a_withdrawal_is_recorded_in_the_roster_by_the_mediators_device() {
    let mut w = World::new();
    let (med, claimant, trust, session, parties) = mediation(&mut w);
    w.ask(trust, |m, now| m.withdraw(&session, now)).unwrap();
    w.run();
    for d in [med, claimant, trust] {
        let roster = w.m(d).roster(&session).unwrap();
        assert!(roster.party(&parties[1]).unwrap().withdrawn);
    }
    assert!(w.events(claimant).iter().any(|e| matches!(
        e,
        Event::System {
            event: SystemEvent::PartyWithdrew,
            ..
        }
    )));
    // A withdrawn party no longer blocks a gate, and is not asked again.
    assert_eq!(
        w.m(med)
            .parties_not_agreed(&session, Step::Continue)
            .unwrap(),
        [parties[0]]
    );
}

#[test]
fn a_request_fails_with_a_timeout_on_the_virtual_clock_while_the_relay_is_unreachable() {
    let mut w = World::new();
    let (_, claimant, _, session, _) = mediation(&mut w);
    w.disconnect(claimant);
    assert_eq!(w.m(claimant).link(), Link::Offline);
    let now = w.now;
    let op = w
        .m(claimant)
        .set_status(&session, PartyStatus::OnBreak, now)
        .unwrap();
    w.advance(REPLY_TIMEOUT_MS - 1);
    assert!(
        w.devices[claimant].done.is_empty(),
        "not before its deadline"
    );
    w.advance(1);
    assert!(matches!(
        w.devices[claimant].done.remove(&op),
        Some(Err(ClientError::Timeout))
    ));
}

#[test]
fn what_is_sent_while_offline_goes_once_the_connection_is_back_and_missed_messages_arrive() {
    let mut w = World::new();
    let (med, claimant, _, session, parties) = mediation(&mut w);
    w.disconnect(claimant);
    let room = w.m(med).party_room(&session, &parties[0]).unwrap();
    w.ask(med, |m, now| {
        m.send(
            &session,
            &room,
            "Are you still there?",
            Sharing::MayShare,
            now,
        )
    })
    .unwrap();
    let now = w.now;
    let op = w
        .m(claimant)
        .send(
            &session,
            &room,
            "Yes, reconnecting",
            Sharing::MediatorOnly,
            now,
        )
        .unwrap();
    w.advance(5_000);
    w.connect(claimant);
    assert!(matches!(w.outcome(claimant, op), Ok(Outcome::Sent(_))));
    assert_eq!(
        texts(&w.events(claimant)),
        ["Yes, reconnecting", "Are you still there?"]
    );
    assert!(texts(&w.events(med)).contains(&"Yes, reconnecting".to_owned()));
}

/// Every text the mediator has been shown from the claimant, in order.
fn heard_from(w: &mut World, med: usize, claimant: usize) -> Vec<String> {
    let from = w.devices[claimant].machine.fingerprint();
    w.events(med)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { sender, text, .. } if sender == from => Some(text),
            _ => None,
        })
        .collect()
}

#[test]
fn a_message_written_offline_waits_for_the_connection_however_long_it_takes() {
    let mut w = World::new();
    let (med, claimant, _, session, _) = mediation(&mut w);
    w.events(med);
    w.disconnect(claimant);
    let room = w.m(claimant).my_room(&session).unwrap();
    let now = w.now;
    let op = w
        .m(claimant)
        .send(
            &session,
            &room,
            "written on the train",
            Sharing::MediatorOnly,
            now,
        )
        .unwrap();
    // Far past any reply's deadline: a sealed message is not dropped.
    w.advance(10 * REPLY_TIMEOUT_MS);
    assert!(w.devices[claimant].done.is_empty(), "still on its way");
    w.connect(claimant);
    assert!(matches!(w.outcome(claimant, op), Ok(Outcome::Sent(_))));
    assert_eq!(heard_from(&mut w, med, claimant), ["written on the train"]);
}

#[test]
fn a_post_the_relay_never_read_before_the_connection_was_lost_goes_again_once_in_order() {
    let mut w = World::new();
    let (med, claimant, _, session, _) = mediation(&mut w);
    w.events(med);
    let room = w.m(claimant).my_room(&session).unwrap();
    // The relay goes away before it reads the post.
    let conn = w.devices[claimant].conn.take().unwrap();
    w.relay.disconnect(conn);
    let now = w.now;
    let first = w
        .m(claimant)
        .send(&session, &room, "first", Sharing::MediatorOnly, now)
        .unwrap();
    w.transmit(claimant);
    let now = w.now;
    w.m(claimant).disconnected(now);
    // A second message, written while offline, must not overtake it.
    let second = w
        .m(claimant)
        .send(&session, &room, "second", Sharing::MediatorOnly, now)
        .unwrap();
    w.run();
    assert!(w.devices[claimant].done.is_empty(), "neither fails");
    w.connect(claimant);
    assert!(matches!(w.outcome(claimant, first), Ok(Outcome::Sent(_))));
    assert!(matches!(w.outcome(claimant, second), Ok(Outcome::Sent(_))));
    assert_eq!(heard_from(&mut w, med, claimant), ["first", "second"]);
    let own = texts(&w.events(claimant));
    assert_eq!(own.iter().filter(|t| *t == "first").count(), 1);
    assert_eq!(own.iter().filter(|t| *t == "second").count(), 1);
    for d in [med, claimant] {
        assert!(
            !w.events(d)
                .iter()
                .any(|e| matches!(e, Event::Warning { .. })),
            "no gap, no replay"
        );
    }
}

#[test]
fn a_post_stored_whose_reply_was_lost_is_confirmed_by_the_catch_up_and_not_sent_twice() {
    let mut w = World::new();
    let (med, claimant, _, session, _) = mediation(&mut w);
    w.events(med);
    let room = w.m(claimant).my_room(&session).unwrap();
    let now = w.now;
    let op = w
        .m(claimant)
        .send(
            &session,
            &room,
            "stored, unanswered",
            Sharing::MediatorOnly,
            now,
        )
        .unwrap();
    // The relay reads and stores it; its reply is lost with the connection.
    w.transmit(claimant);
    w.disconnect(claimant);
    assert!(w.devices[claimant].done.is_empty(), "not failed");
    w.connect(claimant);
    let Ok(Outcome::Sent(sent)) = w.outcome(claimant, op) else {
        panic!("the post is done");
    };
    assert_eq!(heard_from(&mut w, med, claimant), ["stored, unanswered"]);
    let own: Vec<Event> = w
        .events(claimant)
        .into_iter()
        .filter(|e| matches!(e, Event::Message { text, .. } if text == "stored, unanswered"))
        .collect();
    assert_eq!(own.len(), 1, "the author is shown it once");
    assert!(matches!(&own[0], Event::Message { index, .. } if *index == sent.index));
    assert_eq!(
        w.m(claimant)
            .history(&session)
            .iter()
            .filter(|e| matches!(e, Event::Message { text, .. } if text == "stored, unanswered"))
            .count(),
        1,
        "and keeps it once"
    );
}

/// How often the claimant's history holds `text`.
fn kept(w: &mut World, d: usize, session: SessionId, text: &str) -> usize {
    w.m(d)
        .history(&session)
        .iter()
        .filter(|e| matches!(e, Event::Message { text: t, .. } if t == text))
        .count()
}

fn warnings(w: &mut World, d: usize) -> Vec<Event> {
    w.events(d)
        .into_iter()
        .filter(|e| matches!(e, Event::Warning { .. }))
        .collect()
}

#[test]
fn a_post_stored_whose_reply_was_lost_with_a_restart_is_kept_once_and_not_sent_again() {
    let mut w = World::new();
    let (med, claimant, _, session, _) = mediation(&mut w);
    w.events(med);
    let room = w.m(claimant).my_room(&session).unwrap();
    let now = w.now;
    w.m(claimant)
        .send(
            &session,
            &room,
            "stored, then the crash",
            Sharing::MediatorOnly,
            now,
        )
        .unwrap();
    // The relay stores it; the device dies before the reply arrives.
    w.transmit(claimant);
    w.crash(claimant);
    w.connect(claimant);
    // The catch-up brings it back: the author keeps it, once.
    assert_eq!(kept(&mut w, claimant, session, "stored, then the crash"), 1);
    // And it was not posted twice: the mediator heard it once, and a later
    // message follows it with no gap and no replay.
    say(&mut w, claimant, session, "and then", Sharing::MediatorOnly);
    assert_eq!(
        heard_from(&mut w, med, claimant),
        ["stored, then the crash", "and then"]
    );
    assert_eq!(warnings(&mut w, med), []);
    assert_eq!(warnings(&mut w, claimant), []);
    // Settled: a further restart has nothing left to confirm or send.
    w.crash(claimant);
    w.connect(claimant);
    assert_eq!(kept(&mut w, claimant, session, "stored, then the crash"), 1);
    assert_eq!(heard_from(&mut w, med, claimant), Vec::<String>::new());
}

#[test]
fn a_post_the_relay_never_got_before_a_restart_goes_once_the_device_is_back() {
    let mut w = World::new();
    let (med, claimant, _, session, _) = mediation(&mut w);
    w.events(med);
    let room = w.m(claimant).my_room(&session).unwrap();
    let now = w.now;
    w.m(claimant)
        .send(
            &session,
            &room,
            "lost on the way",
            Sharing::MediatorOnly,
            now,
        )
        .unwrap();
    // The frame is lost before the relay reads it, and the device dies.
    w.relay.deaf = true;
    w.transmit(claimant);
    w.relay.deaf = false;
    w.crash(claimant);
    w.connect(claimant);
    // Back, it posts the same envelope again: nothing lost, no gap.
    say(&mut w, claimant, session, "and then", Sharing::MediatorOnly);
    assert_eq!(
        heard_from(&mut w, med, claimant),
        ["lost on the way", "and then"]
    );
    assert_eq!(warnings(&mut w, med), []);
    assert_eq!(kept(&mut w, claimant, session, "lost on the way"), 1);
}

#[test]
fn a_crash_at_any_point_loses_nothing_acknowledged_and_records_nothing_twice() {
    let mut w = World::new();
    let (med, claimant, _, session, parties) = mediation(&mut w);
    let room = w.m(med).party_room(&session, &parties[0]).unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..12 {
        let now = w.now;
        let op = w
            .m(claimant)
            .send(
                &session,
                &room,
                &format!("claimant {i}"),
                Sharing::MediatorOnly,
                now,
            )
            .unwrap();
        let now = w.now;
        let op2 = w
            .m(med)
            .send(
                &session,
                &room,
                &format!("mediator {i}"),
                Sharing::MayShare,
                now,
            )
            .unwrap();
        // Crash the claimant at a different point each round: before its
        // frame leaves, after, or with replies still on their way.
        match i % 3 {
            0 => {}
            1 => {
                w.run();
            }
            _ => {
                let _ = w.m(claimant).poll_transmit();
            }
        }
        if let Some(Ok(Outcome::Sent(s))) = w.devices[claimant].done.remove(&op) {
            acknowledged.push(s.message);
        }
        w.crash(claimant);
        w.connect(claimant);
        w.outcome(med, op2).unwrap();
        w.run();
        if let Some(Ok(Outcome::Sent(s))) = w.devices[claimant].done.remove(&op) {
            acknowledged.push(s.message);
        }
    }
    w.crash(claimant);
    w.connect(claimant);
    let history = w.m(claimant).history(&session);
    for id in &acknowledged {
        assert!(
            w.m(claimant).message(&session, id).is_some(),
            "acknowledged and kept"
        );
    }
    let said: Vec<String> = texts(&history);
    for i in 0..12 {
        let heard = format!("mediator {i}");
        assert_eq!(
            said.iter().filter(|t| **t == heard).count(),
            1,
            "{heard} exactly once"
        );
    }
    let mut ids: Vec<_> = history
        .iter()
        .filter_map(|e| match e {
            Event::Message { hash, .. } => Some(*hash),
            _ => None,
        })
        .collect();
    let n = ids.len();
    ids.sort_by_key(|d| d.0);
    ids.dedup();
    assert_eq!(ids.len(), n, "no message recorded twice");
    assert!(
        !w.events(claimant).iter().any(|e| matches!(
            e,
            Event::Warning {
                kind: Warning::Fork | Warning::Verification,
                ..
            }
        )),
        "nothing refused after the crashes"
    );
}

/// What a device showed of a catch-up, the same in any world: the texts,
/// and each warning's kind (and words, but for a gap's, which name a
/// sender).
fn shown(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { text, .. } => Some(text.clone()),
            Event::Warning {
                kind: Warning::Gap { missing, .. },
                ..
            } => Some(format!("gap {missing:?}")),
            Event::Warning { kind, detail, .. } => Some(format!("{kind:?}: {detail}")),
            _ => None,
        })
        .collect()
}

/// The claimant misses five messages, the third of which the relay
/// damaged (its signature) or replaced with one signed by someone else
/// naming the mediator as sender; it catches up on all five in one batch.
/// Returns what it showed, kept and saved.
fn catch_up_with_a_bad_envelope(read_ahead: bool, forged: bool) -> (Vec<String>, Vec<String>) {
    let mut w = World::new();
    w.read_ahead = read_ahead;
    let (med, claimant, _, session, parties) = mediation(&mut w);
    w.disconnect(claimant);
    let room = w.m(med).party_room(&session, &parties[0]).unwrap();
    let mut third = 0;
    for i in 0..5 {
        let sent = match w.ask(med, |m, now| {
            m.send(&session, &room, &format!("m{i}"), Sharing::MayShare, now)
        }) {
            Ok(Outcome::Sent(sent)) => sent,
            other => panic!("{other:?}"),
        };
        if i == 2 {
            third = sent.index;
        }
    }
    let outsider = DeviceKeys::generate().unwrap();
    w.relay.alter_envelope(&session, &room, third, |mut bytes| {
        if forged {
            // The same header and ciphertext, signed by another key.
            use caucus_protocol::codec::{Canonical, Reader, Writer};
            let mut r = Reader::new(&bytes);
            let (header, ciphertext) = (r.bytes().unwrap(), r.bytes().unwrap());
            let mut body = Writer::new();
            body.bytes(header).bytes(ciphertext);
            let signature =
                outsider.sign(caucus_protocol::crypto::label::ENVELOPE, &body.into_bytes());
            let mut out = Writer::new();
            out.bytes(header).bytes(ciphertext);
            signature.encode(&mut out);
            out.into_bytes()
        } else {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            bytes
        }
    });
    w.events(claimant);
    w.connect(claimant);
    let seen = shown(&w.events(claimant));
    w.crash(claimant);
    w.connect(claimant);
    let kept = texts(&w.m(claimant).history(&session));
    (seen, kept)
}

#[test]
fn a_batch_with_a_badly_signed_envelope_refuses_it_alone_as_one_frame_at_a_time_does() {
    for forged in [false, true] {
        let (seen, kept) = catch_up_with_a_bad_envelope(true, forged);
        assert_eq!(
            seen,
            [
                "m0",
                "m1",
                "Verification: envelope refused: bad signature on envelope",
                "gap 3..=3",
                "m3",
                "m4"
            ],
            "forged: {forged}"
        );
        assert!(kept.ends_with(&["m0", "m1", "m3", "m4"].map(String::from)));
        assert_eq!((seen, kept), catch_up_with_a_bad_envelope(false, forged));
    }
}

/// A roster admitting a new member and that member's first message arrive
/// in one batch: the message is read before its sender is known here, so
/// its signature is checked as it is opened, and it opens.
#[test]
fn a_message_from_a_member_admitted_in_the_same_batch_is_checked_as_it_opens() {
    let mut w = World::new();
    let (med, claimant, _, session, parties) = mediation(&mut w);
    w.disconnect(claimant);
    let link = invite(
        &mut w,
        med,
        session,
        parties[0],
        "partner",
        Admission::Automatic,
    );
    let partner = w.device("partner");
    let now = w.now;
    let (_, op) = w.m(partner).join(&link, now).unwrap();
    w.outcome(partner, op).unwrap();
    w.run();
    say(
        &mut w,
        partner,
        session,
        "I am the claimant's partner",
        Sharing::MayShare,
    );
    w.events(claimant);
    w.connect(claimant);
    let events = w.events(claimant);
    assert_eq!(
        shown(&events),
        ["I am the claimant's partner"],
        "{events:?}"
    );
}

/// The bytes a device writes to catch up on `n` envelopes.
fn catch_up_bytes(n: usize) -> (u64, u64, u64) {
    let mut w = World::new();
    let (med, claimant, _, session, parties) = mediation(&mut w);
    w.disconnect(claimant);
    let room = w.m(med).party_room(&session, &parties[0]).unwrap();
    let text = "x".repeat(200);
    for _ in 0..n {
        w.ask(med, |m, now| {
            m.send(&session, &room, &text, Sharing::MayShare, now)
        })
        .unwrap();
    }
    let before = w.devices[claimant].disk.written;
    w.connect(claimant);
    let written = w.devices[claimant].disk.written - before;
    let (snapshot, log) = &w.devices[claimant].disk.sessions[&session];
    assert_eq!(log.len(), n, "every envelope kept");
    (
        written,
        snapshot.len() as u64,
        log.iter().map(|r| r.len() as u64).sum(),
    )
}

/// At most this many bytes written per envelope caught up, for messages
/// of 200 characters: its log record (385 bytes) and its share of a
/// snapshot (about 3.3 kB, whatever the number of messages) per batch of
/// `support::BATCH`. It holds from a few hundred envelopes on; below that,
/// the first snapshot weighs more.
const BYTES_PER_ENVELOPE: u64 = 450;

#[test]
fn a_catch_up_writes_each_message_once_and_a_snapshot_per_batch_not_per_message() {
    let n: usize = std::env::var("CAUCUS_CATCHUP_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let (written, snapshot, log) = catch_up_bytes(n);
    let batches = n.div_ceil(support::BATCH) as u64 + 1;
    assert!(
        written <= log + batches * snapshot,
        "{written} bytes for {n} envelopes: more than the log ({log}) and {batches} snapshots of {snapshot}"
    );
    // The snapshot does not grow with the messages: after a tenth of them
    // it is as large, but for the digits of the rooms' cursors.
    let (_, tenth, _) = catch_up_bytes(n / 10);
    assert!(
        snapshot.abs_diff(tenth) <= 16,
        "the snapshot grows with the messages: {tenth} bytes after {}, {snapshot} after {n}",
        n / 10
    );
    // So the whole catch-up is linear.
    assert!(
        written <= BYTES_PER_ENVELOPE * n as u64,
        "{written} bytes for {n} envelopes: more than {BYTES_PER_ENVELOPE} an envelope"
    );
    // What the client wrote before: the whole file again per envelope.
    let record = log / n as u64;
    let old: u64 = (1..=n as u64).map(|k| snapshot + k * record).sum();
    println!(
        "catch-up of {n} envelopes: {written} bytes written (log {log}, final snapshot {snapshot}, \
         {tenth} after {}); rewriting the whole state per envelope would write {old}",
        n / 10
    );
}

#[test]
fn a_snapshot_of_an_older_layout_is_refused_saying_so() {
    let mut w = World::new();
    let (_, claimant, _, session, _) = mediation(&mut w);
    let (snapshot, log) = w.devices[claimant].disk.sessions[&session].clone();
    let log = || log.iter().map(Vec::as_slice);
    // Layout 2 kept every chain link in the view.
    let mut old = snapshot.clone();
    old[..2].copy_from_slice(&2u16.to_be_bytes());
    let keys = || DeviceKeys::from_secret_bytes(&w.devices[claimant].keys_bytes).unwrap();
    let mut machine = Machine::new(keys(), support::RELAY);
    match machine.restore(&old, log()) {
        Err(ClientError::Corrupt(why)) => {
            assert_eq!(why, "saved session has layout 2, this client reads 4");
        }
        other => panic!("an old snapshot restored as {other:?}"),
    }
    assert_eq!(machine.restore(&snapshot, log()).unwrap(), session);
}

#[test]
fn a_roster_whose_reply_was_lost_merges_from_its_echo_and_its_keys_still_go_out() {
    let mut w = World::new();
    let (med, claimant, _, session, _) = mediation(&mut w);
    let me = w.m(claimant).fingerprint();
    let now = w.now;
    let op = w.m(med).create_side_room(&session, &[me], now).unwrap();
    // The relay takes the new roster, and the connection dies before the
    // reply comes back.
    w.transmit(med);
    w.disconnect(med);
    assert!(matches!(
        w.devices[med].done.remove(&op),
        Some(Err(ClientError::Connection(_)))
    ));
    w.connect(med);
    let roster = w.m(med).roster(&session).unwrap();
    let side = roster
        .rooms
        .iter()
        .find(|r| r.kind == RoomKind::Side)
        .expect("the echo merged the side room")
        .id;
    w.ask(med, |m, now| {
        m.send(
            &session,
            &side,
            "Just the two of us",
            Sharing::MayShare,
            now,
        )
    })
    .unwrap();
    assert_eq!(texts(&w.events(claimant)), ["Just the two of us"]);
}

#[test]
fn a_roster_the_relay_never_got_is_dropped_and_the_next_change_goes_through() {
    let mut w = World::new();
    let (med, claimant, _, session, _) = mediation(&mut w);
    let version = w.m(med).roster(&session).unwrap().version;
    w.relay.deaf = true;
    let now = w.now;
    let lost = w
        .m(med)
        .set_phase(&session, Phase::IndividualMeetings, now)
        .unwrap();
    w.transmit(med);
    w.relay.deaf = false;
    w.disconnect(med);
    assert!(matches!(
        w.devices[med].done.remove(&lost),
        Some(Err(ClientError::Connection(_)))
    ));
    w.connect(med);
    assert_eq!(w.m(med).roster(&session).unwrap().version, version);
    w.ask(med, |m, now| {
        m.set_phase(&session, Phase::IndividualMeetings, now)
    })
    .unwrap();
    for d in [med, claimant] {
        let roster = w.m(d).roster(&session).unwrap();
        assert_eq!(
            (roster.version, roster.phase),
            (version + 1, Phase::IndividualMeetings)
        );
    }
}

#[test]
fn a_waiting_joiner_who_reconnects_knocks_again_and_can_still_be_admitted() {
    let mut w = World::new();
    let (med, joiner, session, _) = waiting_joiner(&mut w, "Ms Claimant");
    // The relay forgets a waiting place with its connection.
    w.disconnect(joiner);
    w.connect(joiner);
    assert!(matches!(
        w.m(joiner).membership(&session),
        Some(Membership::Waiting { .. })
    ));
    let me = w.m(joiner).fingerprint();
    let now = w.now;
    w.m(med).admit(&session, &me, now).unwrap();
    w.run();
    assert_eq!(w.m(joiner).membership(&session), Some(&Membership::Ready));
}

#[test]
fn requests_that_make_no_sense_are_refused_in_words_before_anything_is_sent() {
    let mut w = World::new();
    let (med, claimant, trust, session, parties) = mediation(&mut w);
    let usage = |r: Result<Outcome, ClientError>| match r {
        Err(ClientError::Usage(why)) => why,
        other => panic!("{other:?}"),
    };
    // An empty message.
    let room = w.m(claimant).my_room(&session).unwrap();
    let why = usage(w.ask(claimant, |m, now| {
        m.send(&session, &room, "  ", Sharing::MayShare, now)
    }));
    assert!(why.contains("needs some words"), "{why}");
    // Readmitting a party that never withdrew.
    let why = usage(w.ask(med, |m, now| m.readmit(&session, &parties[0], now)));
    assert!(why.contains("has not withdrawn"), "{why}");
    // A side room of the mediator alone.
    let me = w.m(med).fingerprint();
    let why = usage(w.ask(med, |m, now| m.create_side_room(&session, &[me], now)));
    assert!(why.contains("at least one member besides"), "{why}");
    // A party asking who is in the waiting room.
    assert!(matches!(
        w.m(claimant).waiting(&session),
        Err(ClientError::Usage(_))
    ));
    // The same thing twice: said once, then refused.
    let phase = w.m(med).roster(&session).unwrap().phase;
    let why = usage(w.ask(med, |m, now| m.set_phase(&session, phase, now)));
    assert!(why.contains("already in that phase"), "{why}");
    let why = usage(w.ask(med, |m, now| m.set_joint_open(&session, false, now)));
    assert!(why.contains("already closed"), "{why}");
    w.ask(trust, |m, now| m.withdraw(&session, now)).unwrap();
    w.run();
    let why = usage(w.ask(trust, |m, now| m.withdraw(&session, now)));
    assert!(why.contains("already withdrawn"), "{why}");
}

#[test]
fn a_frame_of_another_protocol_version_fails_the_requests_saying_so() {
    let now = caucus_client_core::Timestamp::from_millis(1_800_000_000_000);
    let mut m = Machine::new(DeviceKeys::generate().unwrap(), "ws://127.0.0.1:7300");
    let (_, op) = m.create_session("Ms Mediator", &["Claimant"], now).unwrap();
    m.take_changes().unwrap();
    m.connected(now);
    let relay = DeviceKeys::generate().unwrap();
    let challenge = serde_json::json!({"type": "challenge", "v": 2,
        "nonce": caucus_protocol::b64::encode(&[7u8; 32]),
        "relay": caucus_protocol::b64::encode(&caucus_protocol::codec::Canonical::to_bytes(relay.public()))});
    m.handle_frame(&challenge.to_string(), now);
    assert_eq!(
        m.poll_transmit(),
        None,
        "a challenge of version 2 is not answered"
    );
    assert_eq!(m.link(), Link::Offline);
    let (done, result) = m.poll_done().unwrap();
    assert_eq!(done, op);
    assert_eq!(
        result.unwrap_err().to_string(),
        "the relay speaks protocol version 2; this client speaks 1"
    );
}

#[test]
fn a_counter_offer_answers_a_carried_offer_and_one_recorded_by_the_mediator_says_so() {
    let mut w = World::new();
    let (med, claimant, trust, session, parties) = mediation(&mut w);
    let first = Offer {
        kind: OfferKind::Offer,
        amount: Some(Amount::parse("GBP", "120000.00").unwrap()),
        terms: String::new(),
        conditions: vec![],
        responds_to: None,
    };
    let Ok(Outcome::Sent(made)) = w.ask(trust, |m, now| m.make_offer(&session, &first, now)) else {
        panic!()
    };
    w.run();
    let claimant_room = w.m(med).party_room(&session, &parties[0]).unwrap();
    let Ok(Outcome::Sent(carried)) = w.ask(med, |m, now| {
        m.carry_offer(&session, &made.message, &claimant_room, None, now)
    }) else {
        panic!()
    };
    w.run();
    let counter = |answers| Offer {
        kind: OfferKind::CounterOffer,
        amount: Some(Amount::parse("GBP", "180000.00").unwrap()),
        terms: String::new(),
        conditions: vec![],
        responds_to: Some(answers),
    };
    // The trust's own offer, or any message that is not a carried offer
    // the claimant's side received, is not something to answer.
    for wrong in [made.message, caucus_protocol::crypto::Digest([9; 32])] {
        let refused = w.ask(claimant, |m, now| {
            m.make_offer(&session, &counter(wrong), now)
        });
        assert!(matches!(refused, Err(ClientError::Usage(_))), "{refused:?}");
    }
    let first_answering = Offer {
        kind: OfferKind::Offer,
        ..counter(carried.message)
    };
    assert!(matches!(
        w.ask(claimant, |m, now| m.make_offer(
            &session,
            &first_answering,
            now
        )),
        Err(ClientError::Usage(_))
    ));
    w.ask(claimant, |m, now| {
        m.make_offer(&session, &counter(carried.message), now)
    })
    .unwrap();
    // The mediator records one for the trust, at its request: the trust's
    // log tells it from the offer its member made.
    let for_trust = Offer {
        terms: "A written apology".into(),
        amount: None,
        ..first.clone()
    };
    w.ask(med, |m, now| {
        m.make_offer_for(&session, &parties[1], &for_trust, now)
    })
    .unwrap();
    w.run();
    let log = w.m(trust).offers(&session);
    let flags: Vec<bool> = log.iter().map(|e| e.recorded_by_mediator).collect();
    assert_eq!(flags, [false, true]);
    assert_eq!(log[1].offer, for_trust);
}

// ----- documents -----

/// A file of `len` bytes that differ from place to place.
fn file_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn new_document(title: &str, bytes: &[u8]) -> NewDocument {
    NewDocument {
        title: title.into(),
        name: format!("{}.pdf", title.to_lowercase().replace(' ', "-")),
        media_type: "application/pdf".into(),
        size: bytes.len() as u64,
        hash: Hasher::digest(bytes),
    }
}

/// Device `d` adds `bytes` to `room` (the driver reads them as asked); the
/// operation, not yet run.
fn add(
    w: &mut World,
    d: usize,
    session: SessionId,
    room: RoomId,
    title: &str,
    bytes: &[u8],
    sharing: Sharing,
) -> OpId {
    let now = w.now;
    let op = w
        .m(d)
        .add_document(&session, &room, new_document(title, bytes), sharing, now)
        .unwrap();
    w.devices[d].files.insert(op, bytes.to_vec());
    op
}

/// Device `d` downloads the document of `message`, run to the end: its
/// outcome and the bytes the driver wrote.
fn download(
    w: &mut World,
    d: usize,
    session: SessionId,
    message: Digest,
) -> (Result<Outcome, ClientError>, Vec<u8>) {
    let now = w.now;
    let op = w.m(d).download(&session, &message, now).unwrap();
    let outcome = w.outcome(d, op);
    let bytes = w.devices[d].downloads.remove(&op).unwrap_or_default();
    (outcome, bytes)
}

fn sent(outcome: Result<Outcome, ClientError>) -> caucus_client_core::Sent {
    match outcome {
        Ok(Outcome::Sent(sent)) => sent,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_document_goes_up_in_chunks_and_comes_down_checked_and_whole() {
    let mut w = World::new();
    let (med, claimant, _trust, session, _) = mediation(&mut w);
    let room = w.m(claimant).my_room(&session).unwrap();
    // Three chunks, the last a short one.
    let report = file_of(2 * 65536 + 1000, 1);
    let op = add(
        &mut w,
        claimant,
        session,
        room,
        "Expert report",
        &report,
        Sharing::MayShare,
    );
    let progress = w.m(claimant).transfers();
    assert_eq!(progress.len(), 1);
    assert_eq!(
        (progress[0].kind, progress[0].done, progress[0].total),
        (TransferKind::Upload, 0, report.len() as u64)
    );
    let posted = sent(w.outcome(claimant, op));
    assert!(w.m(claimant).transfers().is_empty());
    assert!(w.m(claimant).pending_uploads(&session).is_empty());

    // The mediator sees what it is, not yet its bytes.
    let seen: Vec<_> = w
        .events(med)
        .into_iter()
        .filter_map(|e| match e {
            Event::Document {
                hash,
                document,
                sharing,
                ..
            } => Some((hash, document.title, document.size, sharing)),
            _ => None,
        })
        .collect();
    assert_eq!(
        seen,
        [(
            posted.message,
            "Expert report".to_owned(),
            report.len() as u64,
            Sharing::MayShare
        )]
    );
    let listed = w.m(med).documents(&session);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].message,
            listed[0].room,
            listed[0].document.name.as_str()
        ),
        (posted.message, room, "expert-report.pdf")
    );

    let (outcome, bytes) = download(&mut w, med, session, posted.message);
    assert!(matches!(outcome, Ok(Outcome::Done)), "{outcome:?}");
    assert_eq!(bytes, report);
    // Each chunk was sent once, and fetched once.
    assert_eq!((w.relay.chunks_stored, w.relay.chunks_served), (3, 3));
}

#[test]
fn a_file_over_the_limit_is_refused_in_words_before_anything_is_sent() {
    let mut w = World::new();
    let (_med, claimant, _trust, session, _) = mediation(&mut w);
    let room = w.m(claimant).my_room(&session).unwrap();
    let before = w.relay.requests.len();
    let now = w.now;
    let big = NewDocument {
        title: "Accounts".into(),
        name: "report.pdf".into(),
        media_type: "application/pdf".into(),
        size: 63_200_000,
        hash: Hasher::digest(b"not read"),
    };
    let refused = w
        .m(claimant)
        .add_document(&session, &room, big, Sharing::MediatorOnly, now);
    let Err(e) = refused else {
        panic!("{refused:?}")
    };
    assert!(matches!(
        e,
        ClientError::Document(DocumentError::TooLarge { .. })
    ));
    assert_eq!(
        e.to_string(),
        "report.pdf is 63.2 MB; documents can be at most 50 MB"
    );
    w.run();
    assert_eq!(w.relay.requests.len(), before, "nothing was sent");
    assert!(!w.m(claimant).has_changes());
    assert!(w.m(claimant).pending_uploads(&session).is_empty());
}

#[test]
fn an_upload_cut_off_midway_goes_on_from_the_chunks_the_relay_holds() {
    let mut w = World::new();
    let (med, claimant, _trust, session, _) = mediation(&mut w);
    let room = w.m(claimant).my_room(&session).unwrap();
    let bytes = file_of(6 * 65536 + 5, 2);
    w.relay.deaf_after_chunks = Some(w.relay.chunks_stored + 2);
    let op = add(
        &mut w,
        claimant,
        session,
        room,
        "Position statement",
        &bytes,
        Sharing::MediatorOnly,
    );
    w.run();
    assert_eq!(w.relay.chunks_stored, 2);
    let held = w.m(claimant).transfers()[0].done;
    assert_eq!(held, 2 * 65536);

    w.disconnect(claimant);
    w.relay.deaf = false;
    w.relay.deaf_after_chunks = None;
    w.connect(claimant);
    let posted = sent(w.outcome(claimant, op));
    // Nothing sent twice: the relay's count told where to go on.
    assert_eq!(w.relay.chunks_stored, 7);
    let (outcome, got) = download(&mut w, med, session, posted.message);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(got, bytes);
}

#[test]
fn an_upload_interrupted_by_a_restart_resumes_when_the_same_file_is_added_again() {
    let mut w = World::new();
    let (med, claimant, _trust, session, _) = mediation(&mut w);
    let room = w.m(claimant).my_room(&session).unwrap();
    let bytes = file_of(5 * 65536, 3);
    w.relay.deaf_after_chunks = Some(w.relay.chunks_stored + 3);
    add(
        &mut w,
        claimant,
        session,
        room,
        "Draft heads of terms",
        &bytes,
        Sharing::MayShare,
    );
    w.run();
    w.crash(claimant);
    w.relay.deaf = false;
    w.relay.deaf_after_chunks = None;
    w.connect(claimant);
    // The saved upload is there, and nothing of it goes by itself.
    let pending = w.m(claimant).pending_uploads(&session);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].title, "Draft heads of terms");

    let op = add(
        &mut w,
        claimant,
        session,
        room,
        "Draft heads of terms",
        &bytes,
        Sharing::MayShare,
    );
    let posted = sent(w.outcome(claimant, op));
    // The same document id, its missing chunks sealed again byte for byte.
    assert_eq!(w.relay.chunks_stored, 5);
    assert!(w.m(claimant).pending_uploads(&session).is_empty());
    let (outcome, got) = download(&mut w, med, session, posted.message);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(got, bytes);
}

#[test]
fn a_download_cut_off_midway_goes_on_from_the_next_chunk_not_yet_handed_out() {
    let mut w = World::new();
    let (med, claimant, _trust, session, _) = mediation(&mut w);
    let room = w.m(claimant).my_room(&session).unwrap();
    let bytes = file_of(7 * 65536 + 77, 4);
    let op = add(
        &mut w,
        claimant,
        session,
        room,
        "Accounts",
        &bytes,
        Sharing::MayShare,
    );
    let posted = sent(w.outcome(claimant, op));

    w.relay.deaf_after_chunks = Some(w.relay.chunks_stored + w.relay.chunks_served + 3);
    let now = w.now;
    let op = w.m(med).download(&session, &posted.message, now).unwrap();
    w.run();
    assert_eq!(w.relay.chunks_served, 3);
    let done = w.m(med).transfers()[0].done;
    assert_eq!(done, 3 * 65536);
    w.disconnect(med);
    w.relay.deaf = false;
    w.relay.deaf_after_chunks = None;
    w.connect(med);
    let outcome = w.outcome(med, op);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(w.devices[med].downloads[&op], bytes);
    assert_eq!(
        w.relay.chunks_served, 8,
        "the first three were not fetched again"
    );

    // The chunks kept as they came open again from the cache, checked the
    // same way.
    let cache = w.devices[med].cache[&op].clone();
    let mut reader = w.m(med).document_reader(&session, &posted.message).unwrap();
    let mut again = Vec::new();
    for (i, sealed) in cache.iter().enumerate() {
        again.extend_from_slice(&reader.open(i as u32, sealed).unwrap());
    }
    reader.finish().unwrap();
    assert_eq!(again, bytes);
}

#[test]
fn a_relay_that_swaps_cuts_drops_substitutes_or_repeats_chunks_is_caught_and_nothing_is_accepted() {
    let mut w = World::new();
    let (med, claimant, _trust, session, _) = mediation(&mut w);
    let room = w.m(claimant).my_room(&session).unwrap();
    let bytes = file_of(3 * 65536 + 9, 5);
    let op = add(
        &mut w,
        claimant,
        session,
        room,
        "Report",
        &bytes,
        Sharing::MayShare,
    );
    let posted = sent(w.outcome(claimant, op));
    let other = file_of(3 * 65536 + 9, 6);
    let op = add(
        &mut w,
        claimant,
        session,
        room,
        "Other",
        &other,
        Sharing::MayShare,
    );
    let other_posted = sent(w.outcome(claimant, op));
    let Some(Content::Document {
        document: other_ref,
        ..
    }) = w
        .m(claimant)
        .message(&session, &other_posted.message)
        .map(|m| m.content)
    else {
        panic!()
    };

    for hostile in [
        Hostile::Swap,
        Hostile::Truncate,
        Hostile::Drop,
        Hostile::Substitute(other_ref.file),
        Hostile::Repeat,
    ] {
        w.relay.hostile = Some(hostile);
        let (outcome, _) = download(&mut w, med, session, posted.message);
        let Err(ClientError::Document(e)) = &outcome else {
            panic!("{hostile:?}: {outcome:?}")
        };
        match (hostile, e) {
            (Hostile::Drop, DocumentError::Missing { index: 0, .. })
            | (
                Hostile::Swap | Hostile::Truncate | Hostile::Substitute(_),
                DocumentError::Chunk { index: 0, .. },
            )
            | (Hostile::Repeat, DocumentError::Chunk { index: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("Report"), "{e}");
        assert!(w.m(med).transfers().is_empty());
    }
}

#[test]
fn a_document_whose_bytes_are_not_the_ones_described_is_refused() {
    let mut w = World::new();
    let (med, claimant, _trust, session, _) = mediation(&mut w);
    let room = w.m(claimant).my_room(&session).unwrap();
    let bytes = file_of(70_000, 7);
    // The sender's driver names one file and sends another of its size.
    let now = w.now;
    let mut described = new_document("Settlement draft", &bytes);
    described.hash = Hasher::digest(&file_of(70_000, 8));
    let op = w
        .m(claimant)
        .add_document(&session, &room, described, Sharing::MayShare, now)
        .unwrap();
    w.devices[claimant].files.insert(op, bytes);
    let posted = sent(w.outcome(claimant, op));
    let (outcome, _) = download(&mut w, med, session, posted.message);
    let Err(e) = outcome else { panic!() };
    assert!(matches!(
        e,
        ClientError::Document(DocumentError::HashDiffers { .. })
    ));
    assert_eq!(
        e.to_string(),
        "“Settlement draft” is not the document described: its SHA-256 differs; it is refused"
    );
}

#[test]
fn the_mediator_carries_a_document_verbatim_or_as_their_own_copy_with_receipts() {
    let mut w = World::new();
    let (med, claimant, trust, session, parties) = mediation(&mut w);
    let room = w.m(claimant).my_room(&session).unwrap();
    let trust_room = w.m(med).party_room(&session, &parties[1]).unwrap();
    let bytes = file_of(100_000, 9);
    let op = add(
        &mut w,
        claimant,
        session,
        room,
        "Valuation",
        &bytes,
        Sharing::MayShare,
    );
    let posted = sent(w.outcome(claimant, op));
    w.run();
    w.events(claimant);
    let stored = w.relay.chunks_stored;

    // Verbatim: the same file, nothing uploaded again.
    let carried = sent(w.ask(med, |m, now| {
        m.carry_document(&session, &posted.message, &trust_room, None, now)
    }));
    assert_eq!(w.relay.chunks_stored, stored);
    let (outcome, got) = download(&mut w, trust, session, carried.message);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(got, bytes);

    // The mediator's own copy: uploaded, then carried.
    let redacted = file_of(50_000, 10);
    let now = w.now;
    let op = w
        .m(med)
        .carry_document(
            &session,
            &posted.message,
            &trust_room,
            Some(new_document("Valuation redacted", &redacted)),
            now,
        )
        .unwrap();
    w.devices[med].files.insert(op, redacted.clone());
    let own = sent(w.outcome(med, op));
    let (outcome, got) = download(&mut w, trust, session, own.message);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(got, redacted);
    let arrived: Vec<_> = w
        .events(trust)
        .into_iter()
        .filter_map(|e| match e {
            Event::DocumentCarried { mode, document, .. } => Some((mode, document.title)),
            _ => None,
        })
        .collect();
    assert_eq!(
        arrived,
        [
            (ForwardMode::Verbatim, "Valuation".to_owned()),
            (ForwardMode::Reframed, "Valuation redacted".to_owned())
        ]
    );
    let listed = w.m(trust).documents(&session);
    assert_eq!(
        listed
            .iter()
            .map(|d| d.carried.map(|c| c.1))
            .collect::<Vec<_>>(),
        [Some(ForwardMode::Verbatim), Some(ForwardMode::Reframed)]
    );

    // The author sees both receipts, each naming the document carried.
    let receipts: Vec<_> = w
        .events(claimant)
        .into_iter()
        .filter_map(|e| match e {
            Event::Shared {
                source, mode, text, ..
            } => Some((source, mode, text)),
            _ => None,
        })
        .collect();
    assert_eq!(receipts.len(), 2);
    assert!(
        receipts
            .iter()
            .all(|(source, ..)| *source == posted.message)
    );
    assert!(
        receipts[0].2.starts_with("Document: Valuation ("),
        "{}",
        receipts[0].2
    );
    assert!(
        receipts[1].2.starts_with("Document: Valuation redacted ("),
        "{}",
        receipts[1].2
    );
}

#[test]
fn a_mediator_only_document_is_carried_only_with_its_authors_consent() {
    let mut w = World::new();
    let (med, claimant, trust, session, parties) = mediation(&mut w);
    let room = w.m(claimant).my_room(&session).unwrap();
    let trust_room = w.m(med).party_room(&session, &parties[1]).unwrap();
    let bytes = file_of(10_000, 11);
    let op = add(
        &mut w,
        claimant,
        session,
        room,
        "Medical notes",
        &bytes,
        Sharing::MediatorOnly,
    );
    let posted = sent(w.outcome(claimant, op));
    w.run();

    // Refused before anything is sent, and before any upload of an own copy.
    let before = w.relay.requests.len();
    let now = w.now;
    let refused = w
        .m(med)
        .carry_document(&session, &posted.message, &trust_room, None, now);
    assert!(
        matches!(refused, Err(ClientError::Protocol(_))),
        "{refused:?}"
    );
    let refused = w.m(med).carry_document(
        &session,
        &posted.message,
        &trust_room,
        Some(new_document("Summary", b"a summary")),
        now,
    );
    assert!(
        matches!(refused, Err(ClientError::Protocol(_))),
        "{refused:?}"
    );
    w.run();
    assert_eq!(w.relay.requests.len(), before);
    assert!(w.m(med).transfers().is_empty());

    w.ask(claimant, |m, now| m.consent(&session, &posted.message, now))
        .unwrap();
    w.run();
    let carried = sent(w.ask(med, |m, now| {
        m.carry_document(&session, &posted.message, &trust_room, None, now)
    }));
    let (outcome, got) = download(&mut w, trust, session, carried.message);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(got, bytes);
    assert!(w.events(trust).iter().any(|e| matches!(
        e,
        Event::DocumentCarried {
            author_consented: true,
            ..
        }
    )));
}

#[test]
fn the_author_is_warned_of_a_receipt_for_a_mediator_only_document_shared_without_consent() {
    let mut w = World::new();
    let (med, claimant, _trust, session, parties) = mediation(&mut w);
    let room = w.m(claimant).my_room(&session).unwrap();
    let trust_room = w.m(med).party_room(&session, &parties[1]).unwrap();
    let bytes = file_of(1_000, 12);
    let op = add(
        &mut w,
        claimant,
        session,
        room,
        "Private letter",
        &bytes,
        Sharing::MediatorOnly,
    );
    let posted = sent(w.outcome(claimant, op));
    w.run();
    w.events(claimant);
    // A mediator's device that does not keep the rule posts a receipt.
    let receipt = ShareReceipt {
        source_message: posted.message,
        destination_room: trust_room,
        mode: ForwardMode::Verbatim,
        text: "Document: Private letter".into(),
    };
    w.ask(med, |m, now| {
        m.post(&session, &room, Content::ShareReceipt(receipt), now)
    })
    .unwrap();
    w.run();
    assert!(
        w.events(claimant).iter().any(|e| matches!(
            e,
            Event::Warning {
                kind: Warning::Consent,
                ..
            }
        )),
        "the author is warned"
    );
}

/// A device that crashes in the middle of a catch-up, after its first page
/// was saved, keeps that page; the next catch-up goes on from there, and
/// every message is held once, in order.
#[test]
fn a_crash_in_the_middle_of_a_catch_up_keeps_the_pages_saved_and_goes_on_from_there() {
    let mut w = World::new();
    let (med, claimant, _, session, parties) = mediation(&mut w);
    w.disconnect(claimant);
    let room = w.m(med).party_room(&session, &parties[0]).unwrap();
    let n = support::BATCH + 50;
    for i in 0..n {
        w.ask(med, |m, now| {
            m.send(&session, &room, &format!("m{i}"), Sharing::MayShare, now)
        })
        .unwrap();
    }
    w.connect_only(claimant);
    // The challenge, the answer, the catch-up's first page, its save.
    let mut steps = 0;
    while w.devices[claimant].disk.sessions[&session].1.len() < support::BATCH / 2 {
        assert!(w.step(), "the catch-up stopped");
        steps += 1;
        assert!(steps < 20, "no page was saved");
    }
    let saved = w.devices[claimant].disk.sessions[&session].1.len();
    assert!(saved < n, "the whole catch-up in one page");
    w.crash(claimant);
    // What the crash left: the pages saved, in order.
    let kept: Vec<String> = texts(&w.m(claimant).history(&session))
        .into_iter()
        .filter(|t| t.starts_with('m'))
        .collect();
    assert_eq!(
        kept,
        (0..saved).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    w.connect(claimant);
    let held: Vec<String> = texts(&w.m(claimant).history(&session))
        .into_iter()
        .filter(|t| t.starts_with('m'))
        .collect();
    let expected: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(held, expected);
    assert!(warnings(&mut w, claimant).is_empty());
}
