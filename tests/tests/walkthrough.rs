//! Two whole mediations, start to finish, through a real relay with real
//! clients: a clinical-negligence claim (a claimant with her solicitor; a
//! trust with a manager, a clinician and a solicitor), and a falling-out
//! between three GP partners mediated by shuttle alone.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use caucus_client::{Client, ClientError, Direction, Event, StateDir};
use caucus_protocol::agreement::SignedAgreement;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{ForwardMode, Sharing, Step, SystemEvent};
use caucus_protocol::crypto::Digest;
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::offer::{Amount, Offer, OfferKind};
use caucus_protocol::roster::Phase;
use caucus_tests::{Relay, dir_contains, stored_records, wait_for};

/// A participant: their client and their state directory.
struct Person {
    client: Client,
    dir: tempfile::TempDir,
}

/// Invite `name` to `party` and admit them.
async fn admit(mediator: &mut Client, session: &SessionId, party: &PartyId, name: &str) -> Person {
    let link = mediator
        .invite(
            session,
            party,
            name,
            caucus_client::now() + 3600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut client, joined) = Client::join(StateDir::open(dir.path()).unwrap(), &link)
        .await
        .unwrap();
    assert_eq!(&joined, session);
    wait_for(mediator, |e| matches!(e, Event::Admitted { .. })).await;
    wait_for(&mut client, |e| matches!(e, Event::Joined { .. })).await;
    Person { client, dir }
}

/// Catch everyone up; afterwards each holds all the relay had accepted.
async fn sync_all(people: &[&Person], session: &SessionId) {
    for p in people {
        p.client.sync(session).await.unwrap();
    }
}

/// Everyone sees `phase` in the mediator-signed roster.
async fn all_see_phase(people: &[&Person], session: &SessionId, phase: Phase) {
    sync_all(people, session).await;
    for p in people {
        assert_eq!(p.client.roster(session).unwrap().phase, phase);
    }
}

/// The texts of the messages `client` holds in `room`.
fn texts_in(client: &Client, session: &SessionId, room: &RoomId) -> Vec<String> {
    client
        .history(session)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { room: r, text, .. } if &r == room => Some(text),
            _ => None,
        })
        .collect()
}

/// `party` agrees to `step` and the mediator has it.
async fn agree(party: &Person, mediator: &mut Client, session: &SessionId, step: Step) {
    party.client.agree(session, step).await.unwrap();
    wait_for(
        mediator,
        |e| matches!(e, Event::Agreed { step: s, .. } if *s == step),
    )
    .await;
}

fn money(kind: OfferKind, value: &str, conditions: &[&str], responds_to: Option<Digest>) -> Offer {
    Offer {
        kind,
        amount: Some(Amount::parse("GBP", value).unwrap()),
        terms: String::new(),
        conditions: conditions.iter().map(|c| (*c).to_owned()).collect(),
        responds_to,
    }
}

/// The offers log as (direction, summary).
fn log(client: &Client, session: &SessionId) -> Vec<(Direction, String)> {
    client
        .offers(session)
        .into_iter()
        .map(|e| (e.direction, e.offer.summary()))
        .collect()
}

/// Everyone signs the proposed agreement `hash` after reading its terms;
/// the mediator, having seen every signature, countersigns and all receive
/// the copy.
async fn sign_all(
    mediator: &Client,
    people: &mut [&mut Person],
    session: &SessionId,
    hash: Digest,
    terms: &str,
) {
    for p in people.iter_mut() {
        match wait_for(
            &mut p.client,
            |e| matches!(e, Event::AgreementProposed { agreement, .. } if *agreement == hash),
        )
        .await
        {
            Event::AgreementProposed {
                terms: t,
                checklist,
                ..
            } => {
                assert_eq!(t, terms);
                assert!(!checklist.is_empty());
            }
            _ => unreachable!(),
        }
        p.client.sign_agreement(session, &hash).await.unwrap();
    }
    mediator.sync(session).await.unwrap();
    mediator.countersign(session, &hash).await.unwrap();
    for p in people.iter_mut() {
        wait_for(
            &mut p.client,
            |e| matches!(e, Event::AgreementConcluded { agreement, .. } if *agreement == hash),
        )
        .await;
    }
}

/// A copy that verifies offline; the same copy with a changed byte in its
/// terms, or with a signature missing, does not.
fn verify_offline_and_reject_changes(copy: &SignedAgreement, signers: usize) {
    let bytes = copy.to_bytes();
    let report = SignedAgreement::from_bytes(&bytes)
        .unwrap()
        .verify()
        .unwrap();
    assert_eq!(report.signers.len(), signers);
    let mut changed = copy.clone();
    changed.agreement.terms = changed.agreement.terms.replacen("28", "29", 1);
    assert_ne!(changed.agreement.terms, copy.agreement.terms);
    assert!(changed.verify().is_err());
    let mut missing = copy.clone();
    missing.signatures.pop();
    assert!(missing.verify().is_err());
    let text = copy.to_markdown();
    assert!(text.contains(&copy.agreement.terms));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinical_negligence_mediation_from_invitation_to_erasure() {
    let relay = Relay::start(&[]).await;
    let (mut mediator, mediator_dir) = relay.device().await;

    // ---- Preparation: the session, its parties, and everyone admitted.
    let (session, parties) = mediator
        .create_session("Ms M (mediator)", &["Claimant", "The Trust"])
        .await
        .unwrap();
    let (claimant_party, trust_party) = (parties[0], parties[1]);
    let claimant = admit(&mut mediator, &session, &claimant_party, "Ms C").await;
    let c_solicitor = admit(&mut mediator, &session, &claimant_party, "Mr S (solicitor)").await;
    let manager = admit(&mut mediator, &session, &trust_party, "Ms R (manager)").await;
    let clinician = admit(&mut mediator, &session, &trust_party, "Dr K (clinician)").await;
    let t_solicitor = admit(&mut mediator, &session, &trust_party, "Ms L (solicitor)").await;
    let everyone = [&claimant, &c_solicitor, &manager, &clinician, &t_solicitor];
    all_see_phase(&everyone, &session, Phase::Preparation).await;
    let joint = mediator.joint_room(&session).unwrap();
    let claimant_room = mediator.party_room(&session, &claimant_party).unwrap();
    let trust_room = mediator.party_room(&session, &trust_party).unwrap();

    // A premature joint room is refused: by the mediator's client in
    // preparation, and by the relay for a party posting in a closed room.
    assert!(matches!(
        mediator.set_joint_open(&session, true).await,
        Err(ClientError::Usage(_))
    ));
    assert!(
        claimant
            .client
            .send(&session, &joint, "Can we all talk?", Sharing::MayShare)
            .await
            .is_err()
    );

    // ---- Individual confidential meetings.
    mediator
        .set_phase(&session, Phase::IndividualMeetings)
        .await
        .unwrap();
    all_see_phase(&everyone, &session, Phase::IndividualMeetings).await;
    let claimant_secret = "CANARY-7d2e my real worry is the care I will need";
    claimant
        .client
        .send(
            &session,
            &claimant_room,
            claimant_secret,
            Sharing::MediatorOnly,
        )
        .await
        .unwrap();
    let trust_secret = "CANARY-a41b the ward was short-staffed that night";
    clinician
        .client
        .send(&session, &trust_room, trust_secret, Sharing::MediatorOnly)
        .await
        .unwrap();

    // ---- Agreeing how to proceed: continuing needs both parties.
    agree(&claimant, &mut mediator, &session, Step::Continue).await;
    assert!(
        mediator
            .set_phase(&session, Phase::Negotiation)
            .await
            .is_err()
    );
    agree(&manager, &mut mediator, &session, Step::Continue).await;
    mediator
        .set_phase(&session, Phase::Negotiation)
        .await
        .unwrap();
    all_see_phase(&everyone, &session, Phase::Negotiation).await;

    // ---- The joint meeting, only once both agree to meet.
    agree(&c_solicitor, &mut mediator, &session, Step::JointMeeting).await;
    assert!(matches!(
        mediator.set_joint_open(&session, true).await,
        Err(ClientError::NotAgreed { .. })
    ));
    agree(&t_solicitor, &mut mediator, &session, Step::JointMeeting).await;
    mediator.set_joint_open(&session, true).await.unwrap();
    manager
        .client
        .send(
            &session,
            &joint,
            "We are sorry for what happened.",
            Sharing::MayShare,
        )
        .await
        .unwrap();
    sync_all(&everyone, &session).await;
    for p in &everyone {
        assert_eq!(
            texts_in(&p.client, &session, &joint),
            ["We are sorry for what happened."]
        );
    }

    // ---- A side room for the lawyers.
    let lawyers = [
        c_solicitor.client.fingerprint(),
        t_solicitor.client.fingerprint(),
    ];
    let side = mediator.create_side_room(&session, &lawyers).await.unwrap();
    sync_all(&everyone, &session).await;
    t_solicitor
        .client
        .send(
            &session,
            &side,
            "Quantum turns on the care report.",
            Sharing::MayShare,
        )
        .await
        .unwrap();
    sync_all(&everyone, &session).await;
    assert_eq!(
        texts_in(&c_solicitor.client, &session, &side),
        ["Quantum turns on the care report."]
    );
    for p in [&claimant, &manager, &clinician] {
        assert!(texts_in(&p.client, &session, &side).is_empty());
        assert!(
            p.client
                .send(&session, &side, "let me in", Sharing::MayShare)
                .await
                .is_err()
        );
    }
    mediator.close_side_room(&session, &side).await.unwrap();

    // ---- Offers carried both ways, each side keeping its own log.
    let first = money(
        OfferKind::Offer,
        "150000.00",
        &["Full and final settlement", "Each side bears its own costs"],
        None,
    );
    let made = manager.client.make_offer(&session, &first).await.unwrap();
    wait_for(&mut mediator, |e| matches!(e, Event::Offer { .. })).await;
    let carried = mediator
        .carry_offer(&session, &made.message, &claimant_room, None)
        .await
        .unwrap();
    let counter = money(
        OfferKind::CounterOffer,
        "275000.00",
        &["Costs to be paid by the trust"],
        Some(carried.message),
    );
    c_solicitor.client.sync(&session).await.unwrap();
    let countered = c_solicitor
        .client
        .make_offer(&session, &counter)
        .await
        .unwrap();
    wait_for(
        &mut mediator,
        |e| matches!(e, Event::Offer { message, .. } if *message == countered.message),
    )
    .await;
    // The mediator restates it for the trust, in the mediator's terms.
    let restated = Offer {
        terms: "The claimant's side would also want an apology in writing".into(),
        ..counter.clone()
    };
    mediator
        .carry_offer(
            &session,
            &countered.message,
            &trust_room,
            Some(restated.clone()),
        )
        .await
        .unwrap();
    sync_all(&everyone, &session).await;
    let claimant_log = vec![
        (Direction::Received, first.summary()),
        (Direction::Made, counter.summary()),
    ];
    let trust_log = vec![
        (Direction::Made, first.summary()),
        (Direction::Received, restated.summary()),
    ];
    for p in [&claimant, &c_solicitor] {
        assert_eq!(log(&p.client, &session), claimant_log);
    }
    for p in [&manager, &clinician, &t_solicitor] {
        assert_eq!(log(&p.client, &session), trust_log);
    }
    let received = manager.client.offers(&session)[1].clone();
    assert_eq!(
        received.carried,
        Some((claimant_room, ForwardMode::Reframed))
    );
    // The trust is told what of its own was carried, and how.
    assert!(manager.client.history(&session).iter().any(|e| matches!(
        e,
        Event::Shared { source, destination, mode: ForwardMode::Verbatim, .. }
            if *source == made.message && *destination == claimant_room
    )));
    // The mediator's log holds both sides' offers.
    assert_eq!(mediator.offers(&session).len(), 4);
    // Nothing said in confidence crossed over.
    for p in [&manager, &clinician, &t_solicitor] {
        assert!(!dir_contains(p.dir.path(), claimant_secret.as_bytes()));
    }
    for p in [&claimant, &c_solicitor] {
        assert!(!dir_contains(p.dir.path(), trust_secret.as_bytes()));
    }

    // ---- The claimant withdraws, thinks again, and is readmitted.
    claimant.client.withdraw(&session).await.unwrap();
    wait_for(&mut mediator, |e| matches!(e, Event::Withdrew { .. })).await;
    wait_for(&mut mediator, |e| {
        matches!(
            e,
            Event::System {
                event: SystemEvent::PartyWithdrew,
                ..
            }
        )
    })
    .await;
    sync_all(&everyone, &session).await;
    assert!(
        manager
            .client
            .roster(&session)
            .unwrap()
            .party(&claimant_party)
            .unwrap()
            .withdrawn
    );
    assert!(manager.client.history(&session).iter().any(|e| matches!(
        e,
        Event::System { event: SystemEvent::PartyWithdrew, room, .. } if *room == joint
    )));
    mediator.readmit(&session, &claimant_party).await.unwrap();
    agree(&claimant, &mut mediator, &session, Step::Continue).await;
    agree(&claimant, &mut mediator, &session, Step::JointMeeting).await;
    assert!(
        mediator
            .parties_not_agreed(&session, Step::JointMeeting)
            .unwrap()
            .is_empty()
    );

    // ---- Reality-testing and the signed agreement.
    mediator
        .set_phase(&session, Phase::Agreement)
        .await
        .unwrap();
    all_see_phase(&everyone, &session, Phase::Agreement).await;
    let terms = "1. The trust pays the claimant £210,000 within 28 days.\n\
                 2. The trust apologises in writing and shares its learning review.\n\
                 3. The claim is discontinued; each side bears its own costs.";
    let checklist = [
        "Will it work in practice?",
        "What are the risks if it is not honoured?",
        "What happens if payment is late?",
        "Who else must see it (the trust board, the NHS resolution team)?",
    ]
    .map(String::from);
    let hash = mediator
        .propose_agreement(&session, "Settlement agreement", terms, &checklist, &[])
        .await
        .unwrap();
    let [
        mut claimant,
        mut c_solicitor,
        mut manager,
        mut clinician,
        mut t_solicitor,
    ] = [claimant, c_solicitor, manager, clinician, t_solicitor];
    sign_all(
        &mediator,
        &mut [
            &mut claimant,
            &mut c_solicitor,
            &mut manager,
            &mut clinician,
            &mut t_solicitor,
        ],
        &session,
        hash,
        terms,
    )
    .await;
    let everyone = [&claimant, &c_solicitor, &manager, &clinician, &t_solicitor];
    let copies: Vec<SignedAgreement> = everyone
        .iter()
        .map(|p| p.client.agreement(&session).unwrap())
        .collect();
    assert!(copies.iter().all(|c| c == &copies[0]));
    verify_offline_and_reject_changes(&copies[0], 6);

    // ---- Close: the relay erases the session and says so, signed.
    let statement = mediator.close_session(&session).await.unwrap().unwrap();
    let erased = statement.unverified().erased;
    assert!(erased.envelopes >= 30, "{erased:?}");
    // Each of the five invites was spent when its joiner was admitted.
    assert_eq!((erased.sessions, erased.invites), (1, 0));
    // Everyone hears it closed, after the signed roster that says so.
    let mut everyone = [claimant, c_solicitor, manager, clinician, t_solicitor];
    for p in &mut everyone {
        wait_for(&mut p.client, |e| matches!(e, Event::Closed { .. })).await;
        assert_eq!(p.client.roster(&session).unwrap().phase, Phase::Closed);
    }
    let [claimant, ..] = everyone;
    assert_eq!(
        mediator.deletion_statement(&session).await.unwrap(),
        statement
    );
    // Each device deletes its room keys on request, keeping its signed copy.
    assert!(dir_contains(
        claimant.dir.path(),
        claimant_secret.as_bytes()
    ));
    claimant.client.erase(&session).unwrap();
    assert!(!dir_contains(
        claimant.dir.path(),
        claimant_secret.as_bytes()
    ));
    assert!(claimant.client.roster(&session).is_err());
    assert_eq!(claimant.client.agreement(&session).unwrap(), copies[0]);
    mediator.erase(&session).unwrap();
    assert!(!dir_contains(mediator_dir.path(), trust_secret.as_bytes()));
    assert_eq!(
        mediator.deletion_statement(&session).await.unwrap(),
        statement
    );
    // The relay's store holds nothing of the session but the statement.
    drop(mediator);
    let dir = relay.stop().await;
    assert_eq!(stored_records(dir.path(), &session), vec![b'D']);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gp_partnership_dispute_settled_by_shuttle_alone() {
    let relay = Relay::start(&[]).await;
    let (mut mediator, _mediator_dir) = relay.device().await;
    let (session, parties) = mediator
        .create_session("Mr N (mediator)", &["Dr A", "Dr B", "Dr C"])
        .await
        .unwrap();
    let mut partners = Vec::new();
    for (party, name) in parties.iter().zip(["Dr A", "Dr B", "Dr C"]) {
        partners.push(admit(&mut mediator, &session, party, name).await);
    }
    let rooms: Vec<RoomId> = parties
        .iter()
        .map(|p| mediator.party_room(&session, p).unwrap())
        .collect();
    let joint = mediator.joint_room(&session).unwrap();
    mediator
        .set_phase(&session, Phase::IndividualMeetings)
        .await
        .unwrap();
    for p in &partners {
        agree(p, &mut mediator, &session, Step::Continue).await;
    }
    mediator
        .set_phase(&session, Phase::Negotiation)
        .await
        .unwrap();

    // Dr A confides, then lets the mediator carry one point, reframed.
    let a = &partners[0];
    a.client
        .send(
            &session,
            &rooms[0],
            "I cannot keep doing every weekend on call.",
            Sharing::MediatorOnly,
        )
        .await
        .unwrap();
    let (hash, _) = match wait_for(&mut mediator, |e| matches!(e, Event::Message { .. })).await {
        Event::Message { hash, text, .. } => (hash, text),
        _ => unreachable!(),
    };
    // Not without consent.
    assert!(
        mediator
            .forward(
                &session,
                &hash,
                &rooms[1],
                Some("A asks for a fairer rota".into())
            )
            .await
            .is_err()
    );
    a.client.consent(&session, &hash).await.unwrap();
    wait_for(&mut mediator, |e| matches!(e, Event::Consent { .. })).await;
    for room in &rooms[1..] {
        mediator
            .forward(
                &session,
                &hash,
                room,
                Some("Dr A asks for a fairer share of the on-call rota.".into()),
            )
            .await
            .unwrap();
    }

    // Dr C offers to leave the partnership on terms; Dr B counters; each
    // offer is carried to the other two partners.
    let leave = Offer {
        kind: OfferKind::Offer,
        amount: Some(Amount::parse("GBP", "90000.00").unwrap()),
        terms: "Dr C retires from the partnership on 31 March; A and B buy out C's share".into(),
        conditions: vec!["Paid in two instalments".into()],
        responds_to: None,
    };
    let made = partners[2]
        .client
        .make_offer(&session, &leave)
        .await
        .unwrap();
    wait_for(&mut mediator, |e| matches!(e, Event::Offer { .. })).await;
    let mut carried_to_b = None;
    for i in [0, 1] {
        let sent = mediator
            .carry_offer(&session, &made.message, &rooms[i], None)
            .await
            .unwrap();
        if i == 1 {
            carried_to_b = Some(sent.message);
        }
    }
    let counter = Offer {
        kind: OfferKind::CounterOffer,
        amount: Some(Amount::parse("GBP", "80000.00").unwrap()),
        terms: "Buy-out of Dr C's share".into(),
        conditions: vec!["Paid over 12 months".into()],
        responds_to: carried_to_b,
    };
    partners[1].client.sync(&session).await.unwrap();
    let countered = partners[1]
        .client
        .make_offer(&session, &counter)
        .await
        .unwrap();
    wait_for(
        &mut mediator,
        |e| matches!(e, Event::Offer { message, .. } if *message == countered.message),
    )
    .await;
    for i in [0, 2] {
        mediator
            .carry_offer(&session, &countered.message, &rooms[i], None)
            .await
            .unwrap();
    }
    let all: Vec<&Person> = partners.iter().collect();
    sync_all(&all, &session).await;
    assert_eq!(
        log(&partners[1].client, &session),
        [
            (Direction::Received, leave.summary()),
            (Direction::Made, counter.summary())
        ]
    );
    assert_eq!(
        log(&partners[2].client, &session),
        [
            (Direction::Made, leave.summary()),
            (Direction::Received, counter.summary())
        ]
    );
    // Dr A received both, and said nothing the others heard.
    assert_eq!(
        log(&partners[0].client, &session)
            .into_iter()
            .map(|(d, _)| d)
            .collect::<Vec<_>>(),
        [Direction::Received, Direction::Received]
    );
    for p in &partners[1..] {
        assert!(texts_in(&p.client, &session, &rooms[0]).is_empty());
        assert!(
            p.client
                .history(&session)
                .iter()
                .any(|e| matches!(e, Event::Forwarded { text, .. } if text.contains("rota")))
        );
    }

    // Shuttle only: the joint room never opens, and no partner can use it.
    for p in &partners {
        assert!(
            !p.client
                .roster(&session)
                .unwrap()
                .room(&joint)
                .unwrap()
                .open
        );
        assert!(
            p.client
                .send(&session, &joint, "hello all", Sharing::MayShare)
                .await
                .is_err()
        );
    }

    // The agreement, shuttled into each private room and signed there.
    mediator
        .set_phase(&session, Phase::Agreement)
        .await
        .unwrap();
    let terms = "1. Dr C retires on 31 March; Drs A and B pay £85,000 within 28 days.\n\
                 2. The on-call rota is shared equally from April.";
    let checklist = ["Does the rota work with the practice's opening hours?".to_string()];
    let hash = mediator
        .propose_agreement(&session, "Partnership agreement", terms, &checklist, &[])
        .await
        .unwrap();
    let mut refs: Vec<&mut Person> = partners.iter_mut().collect();
    sign_all(&mediator, &mut refs, &session, hash, terms).await;
    let copy = partners[0].client.agreement(&session).unwrap();
    verify_offline_and_reject_changes(&copy, 4);
    for p in &partners {
        assert!(
            p.client
                .history(&session)
                .iter()
                .all(|e| !matches!(e, Event::Message { room, .. } if *room == joint))
        );
    }
    let statement = mediator.close_session(&session).await.unwrap().unwrap();
    assert_eq!(statement.unverified().session, session);
    drop(mediator);
    let dir = relay.stop().await;
    assert_eq!(stored_records(dir.path(), &session), vec![b'D']);
}
