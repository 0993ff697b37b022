//! `caucus demo`: a whole shuttle mediation against a running relay — a
//! mediator; a claimant with her solicitor; a defendant trust — with each
//! participant's own client and state directory, then what each one saw.

use std::path::PathBuf;
use std::time::Duration;

use caucus_client::{Client, ClientError, Event, StateDir};
use caucus_protocol::content::{Sharing, Step};
use caucus_protocol::ids::SessionId;
use caucus_protocol::roster::Phase;
use caucus_protocol::wire::PartyStatus;
use serde_json::json;

use crate::output::{describe, line, print};

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

/// Whether an event is worth showing in the transcript.
fn shown(event: &Event) -> bool {
    !matches!(event, Event::Roster { .. })
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
    ] {
        let link = mediator
            .client
            .invite(&session, &party, name, expires)
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

    // Individual meeting with the trust, which makes an offer in confidence,
    // then lets the mediator carry it.
    mediator
        .client
        .set_location(&session, Some(defendant_room), false)
        .await?;
    let offer = people[2]
        .client
        .send(
            &session,
            &defendant_room,
            "The trust can offer £120,000, without admission of liability.",
            Sharing::MediatorOnly,
        )
        .await?;
    people[2].client.consent(&session, &offer.message).await?;
    mediator
        .until(|e| matches!(e, Event::Consent { message, .. } if *message == offer.message))
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

    // Shuttle: the offer verbatim to the claimant's side; the apology point
    // reframed to the trust.
    mediator
        .client
        .set_location(&session, Some(claimant_room), false)
        .await?;
    mediator
        .client
        .forward(&session, &offer.message, &claimant_room, None)
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
    people[0]
        .client
        .set_status(&session, PartyStatus::OnBreak)
        .await?;

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
    mediator
        .client
        .send(
            &session,
            &joint,
            "Thank you both for agreeing to meet. Shall we start with the apology?",
            Sharing::MayShare,
        )
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
    mediator.settle().await;
    mediator.client.close_session(&session).await?;

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
        for event in person.seen.iter().filter(|e| shown(e)) {
            let (text, value) = describe(&person.client, event);
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
                &format!("  {text}"),
                json!({"participant": person.title, "name": name, "event": value}),
            );
        }
        if !json_mode {
            line("");
        }
    }
    Ok(())
}
