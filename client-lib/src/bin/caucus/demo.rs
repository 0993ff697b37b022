//! `caucus demo`: a whole shuttle mediation against a running relay — a
//! mediator; a claimant with her solicitor; a defendant trust with its
//! solicitor — with each participant's own client and state directory:
//! individual meetings, consent to go on and to meet, offers carried both
//! ways, a side meeting of the lawyers, the joint meeting, the signed
//! agreement, close with the relay's deletion statement, and erasure. Then
//! what each one saw.

use std::path::PathBuf;
use std::time::Duration;

use caucus_client::{Client, ClientError, Event, StateDir};
use caucus_protocol::content::{Sharing, Step};
use caucus_protocol::ids::SessionId;
use caucus_protocol::offer::{Amount, Offer, OfferKind};
use caucus_protocol::roster::Phase;
use caucus_protocol::wire::PartyStatus;
use serde_json::json;

use crate::output::{Record, describe, line, print};

/// One participant: their client, and every event they received.
struct Person {
    title: &'static str,
    client: Client,
    seen: Vec<Event>,
}

impl Person {
    /// Record events until one matches `pred` (or ten seconds pass).
    async fn until(&mut self, mut pred: impl FnMut(&Event) -> bool) -> Result<Event, ClientError> {
        loop {
            let event = self
                .client
                .next_event_within(Duration::from_secs(10))
                .await
                .ok_or(ClientError::Timeout)?;
            self.seen.push(event.clone());
            if pred(&event) {
                return Ok(event);
            }
        }
    }

    /// Record whatever else has arrived.
    async fn settle(&mut self) {
        while let Some(event) = self
            .client
            .next_event_within(Duration::from_millis(300))
            .await
        {
            self.seen.push(event);
        }
    }
}

/// A scratch directory for the demo's state, removed afterwards.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether an event is worth showing in the transcript: not roster
/// versions, and an agreement's draft and conclusion once (each is posted
/// in every room the reader is in).
fn shown(event: &Event, earlier: &[Event]) -> bool {
    match event {
        Event::Roster { .. } => false,
        Event::AgreementProposed { agreement, .. } => !earlier
            .iter()
            .any(|e| matches!(e, Event::AgreementProposed { agreement: a, .. } if a == agreement)),
        Event::AgreementConcluded { agreement, .. } => !earlier
            .iter()
            .any(|e| matches!(e, Event::AgreementConcluded { agreement: a, .. } if a == agreement)),
        _ => true,
    }
}

pub(crate) async fn run(server: &str, json_mode: bool) -> Result<(), ClientError> {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("caucus-demo-{}", SessionId::random()?)));
    let state = |name: &str| StateDir::open(scratch.0.join(name));

    let mut mediator = Person {
        title: "Mediator",
        client: Client::open(state("mediator")?, server).await?,
        seen: Vec::new(),
    };
    let (session, parties) = mediator
        .client
        .create_session("Ms Mediator", &["Claimant", "Defendant trust"])
        .await?;
    let expires = caucus_client::now() + 3600;
    let mut people = Vec::new();
    for (title, dir, party, name) in [
        ("Claimant", "claimant", parties[0], "Ms Claimant"),
        (
            "Claimant's solicitor",
            "solicitor",
            parties[0],
            "Mr Solicitor",
        ),
        ("Defendant trust", "defendant", parties[1], "Dr Defendant"),
        (
            "Trust's solicitor",
            "trust-solicitor",
            parties[1],
            "Ms Trust Solicitor",
        ),
    ] {
        let link = mediator
            .client
            .invite(
                &session,
                &party,
                name,
                expires,
                caucus_client::Admission::Automatic,
            )
            .await?;
        let (client, _) = Client::join(state(dir)?, &link).await?;
        let mut person = Person {
            title,
            client,
            seen: Vec::new(),
        };
        mediator
            .until(|e| matches!(e, Event::Admitted { .. }))
            .await?;
        person.until(|e| matches!(e, Event::Joined { .. })).await?;
        person.client.sync(&session).await?;
        people.push(person);
    }
    let (claimant_room, defendant_room) = (
        mediator.client.party_room(&session, &parties[0])?,
        mediator.client.party_room(&session, &parties[1])?,
    );

    // Individual meetings.
    mediator
        .client
        .set_phase(&session, Phase::IndividualMeetings)
        .await?;
    mediator
        .client
        .set_location(&session, Some(claimant_room), false)
        .await?;
    people[0]
        .client
        .send(
            &session,
            &claimant_room,
            "I want them to admit the operation went wrong.",
            Sharing::MediatorOnly,
        )
        .await?;
    let shareable = people[1]
        .client
        .send(
            &session,
            &claimant_room,
            "An apology would matter to our client as much as the money.",
            Sharing::MayShare,
        )
        .await?;

    // Individual meeting with the trust, which records a settlement offer
    // for the mediator to carry.
    mediator
        .client
        .set_location(&session, Some(defendant_room), false)
        .await?;
    let first = Offer {
        kind: OfferKind::Offer,
        amount: Some(Amount::parse("GBP", "120000.00")?),
        terms: String::new(),
        conditions: vec!["Without admission of liability".into()],
        responds_to: None,
    };
    let offer = people[2].client.make_offer(&session, &first).await?;
    mediator
        .until(|e| matches!(e, Event::Offer { message, .. } if *message == offer.message))
        .await?;
    // Both sides agree to go on; the mediator moves to negotiation.
    for i in [0, 2] {
        people[i].client.agree(&session, Step::Continue).await?;
        mediator
            .until(|e| {
                matches!(
                    e,
                    Event::Agreed {
                        step: Step::Continue,
                        ..
                    }
                )
            })
            .await?;
    }
    mediator
        .client
        .set_phase(&session, Phase::Negotiation)
        .await?;

    // Shuttle: the offer to the claimant's side; the apology point reframed
    // to the trust.
    mediator
        .client
        .set_location(&session, Some(claimant_room), false)
        .await?;
    let carried = mediator
        .client
        .carry_offer(&session, &offer.message, &claimant_room, None)
        .await?;
    mediator
        .client
        .forward(
            &session,
            &shareable.message,
            &defendant_room,
            Some("The claimant's side says an apology matters as much as the amount.".into()),
        )
        .await?;
    // The claimant's solicitor counters; the mediator restates it for the trust.
    people[1]
        .until(|e| matches!(e, Event::OfferCarried { message, .. } if *message == carried.message))
        .await?;
    let counter = Offer {
        kind: OfferKind::CounterOffer,
        amount: Some(Amount::parse("GBP", "180000.00")?),
        terms: "A written apology".into(),
        conditions: vec!["The trust pays the claimant's costs".into()],
        responds_to: Some(carried.message),
    };
    let countered = people[1].client.make_offer(&session, &counter).await?;
    mediator
        .until(|e| matches!(e, Event::Offer { message, .. } if *message == countered.message))
        .await?;
    mediator
        .client
        .carry_offer(&session, &countered.message, &defendant_room, None)
        .await?;
    people[0]
        .client
        .set_status(&session, PartyStatus::OnBreak)
        .await?;

    // A side meeting of the two solicitors with the mediator.
    let lawyers = [
        people[1].client.fingerprint(),
        people[3].client.fingerprint(),
    ];
    let side = mediator.client.create_side_room(&session, &lawyers).await?;
    mediator
        .client
        .set_location(&session, Some(side), false)
        .await?;
    people[3].client.sync(&session).await?;
    people[3]
        .client
        .send(
            &session,
            &side,
            "Costs are the sticking point; could we meet at £150,000 with costs?",
            Sharing::MayShare,
        )
        .await?;
    people[1]
        .until(|e| matches!(e, Event::Message { room, .. } if *room == side))
        .await?;
    mediator.client.close_side_room(&session, &side).await?;

    // Both sides agree to meet: the joint room opens.
    for i in [0, 2] {
        people[i].client.agree(&session, Step::JointMeeting).await?;
        mediator
            .until(|e| {
                matches!(
                    e,
                    Event::Agreed {
                        step: Step::JointMeeting,
                        ..
                    }
                )
            })
            .await?;
    }
    mediator.client.set_joint_open(&session, true).await?;
    let joint = mediator.client.joint_room(&session)?;
    mediator
        .client
        .set_location(&session, Some(joint), true)
        .await?;
    people[2]
        .client
        .send(
            &session,
            &joint,
            "The trust is sorry for what happened to you.",
            Sharing::MayShare,
        )
        .await?;

    // Reality-testing and the signed agreement.
    mediator
        .client
        .set_phase(&session, Phase::Agreement)
        .await?;
    let terms = "1. The trust pays the claimant £150,000 and her costs within 28 days.\n\
                 2. The trust apologises in writing.";
    let checklist = [
        "Will it work in practice?",
        "What if payment is late?",
        "Who else must see it?",
    ]
    .map(String::from);
    let hash = mediator
        .client
        .propose_agreement(&session, "Settlement agreement", terms, &checklist, &[])
        .await?;
    for person in &mut people {
        person
            .until(
                |e| matches!(e, Event::AgreementProposed { agreement, .. } if *agreement == hash),
            )
            .await?;
        person.client.sign_agreement(&session, &hash).await?;
    }
    // The mediator reads each signature as it comes, then countersigns.
    for _ in 0..people.len() {
        mediator
            .until(|e| matches!(e, Event::AgreementSigned { agreement, .. } if *agreement == hash))
            .await?;
    }
    mediator.client.countersign(&session, &hash).await?;
    for person in &mut people {
        person
            .until(|e| matches!(e, Event::AgreementConcluded { .. }))
            .await?;
    }
    let copy = people[0]
        .client
        .agreement(&session)
        .ok_or(ClientError::Usage("no agreement concluded"))?;
    let report = copy.verify()?;

    // Close: the relay erases the session and signs a statement of it.
    mediator.settle().await;
    let statement = mediator.client.close_session(&session).await?;
    mediator.settle().await;
    for person in &mut people {
        person.settle().await;
    }
    if !json_mode {
        line(&format!(
            "Caucus demo: one shuttle mediation on {server}, session {session}\n"
        ));
    }
    for person in std::iter::once(&mediator).chain(people.iter()) {
        let name = person
            .client
            .name_of(&session, &person.client.fingerprint())
            .unwrap_or_default();
        if !json_mode {
            line(&format!("== {} — {name} — what they saw ==", person.title));
        }
        let mut last_presence = String::new();
        for (at, event) in person.seen.iter().enumerate() {
            if !shown(event, &person.seen[..at]) {
                continue;
            }
            let Record {
                text, data: value, ..
            } = describe(&person.client, event);
            if text.is_empty() && !json_mode {
                continue;
            }
            // Presence is shown only when where the mediator is changes.
            if let Event::Presence { .. } = event {
                let place = value["mediator"].to_string();
                if place == last_presence {
                    continue;
                }
                last_presence = place;
            }
            print(
                json_mode,
                &Record::new(
                    format!("  {text}"),
                    json!({"participant": person.title, "name": name, "event": value}),
                ),
            );
        }
        if !json_mode {
            line("");
        }
    }
    let heading = |title: &str| {
        if !json_mode {
            line(&format!("== {title} =="));
        }
    };
    let signers: Vec<String> = report.signers.iter().map(|(n, _, _)| n.clone()).collect();
    heading("The agreement");
    print(
        json_mode,
        &Record::new(
            format!("  verifies offline, signed by {}", signers.join(", ")),
            json!({"agreement": report}),
        ),
    );
    if let Some(s) = statement {
        let (text, value) = crate::output::statement(s.unverified());
        heading("The relay's signed deletion statement");
        print(
            json_mode,
            &Record::new(format!("  {text}"), json!({"deletion_statement": value})),
        );
    }
    // Nothing kept longer than agreed: every device deletes its copy,
    // keeping only the signed agreement.
    for person in std::iter::once(&mediator).chain(people.iter()) {
        person.client.erase(&session)?;
    }
    heading("Erased");
    print(
        json_mode,
        &Record::new(
            "  every device deleted its room keys and messages; each keeps the signed agreement",
            json!({"erased": session}),
        ),
    );
    Ok(())
}
