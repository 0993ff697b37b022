//! What the relay checks of a post now that the header says only which side
//! sent it (protocol.md 13.5.8): the sender, the room, the epoch, the room's
//! `open` flag and that the header's class is the sender's role's. What the
//! content is, it cannot tell; clients check that once they decrypt.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use caucus_protocol::content::{Content, ContentClass, Forward, ForwardMode, Sharing};
use caucus_protocol::crypto::Digest;
use caucus_protocol::envelope::{Envelope, Header};
use caucus_protocol::ids::RoomId;
use caucus_protocol::offer::{Amount, Offer, OfferKind};
use caucus_protocol::wire::{Encoded, ErrorCode, Event, RequestBody};
use support::{Mediation, Relay};

/// `content` sealed by hand as member `i` into `room` at its current epoch,
/// as the `seq`th message there (linked to the member's view's chain), with
/// the header `class`; the room key is
/// the mediator's copy (every member's is the same).
fn by_hand(
    m: &Mediation,
    i: usize,
    room: RoomId,
    seq: u64,
    class: ContentClass,
    content: &Content,
) -> Envelope {
    let epoch = m.views[0].roster().unwrap().room(&room).unwrap().epoch;
    let keys = match i {
        0 => &m.mediator.keys,
        1 => &m.claimant.keys,
        2 => &m.solicitor.keys,
        _ => &m.defendant.keys,
    };
    let header = Header {
        session: m.session,
        room,
        epoch,
        sender: keys.fingerprint(),
        seq,
        // Linked to the member's last message there, as the relay requires.
        previous: if seq == 1 {
            Digest::ZERO
        } else {
            m.views[i].chain_head(&room, &keys.fingerprint()).1
        },
        class,
        salt: [seq as u8; 16],
    };
    let key = m.views[0].room_key(&room, epoch).unwrap();
    Envelope::seal(keys, key, header, content).unwrap()
}

fn post(envelope: Envelope) -> RequestBody {
    RequestBody::Post {
        envelope: Encoded(envelope),
    }
}

fn text(body: &str) -> Content {
    Content::Text {
        sharing: Sharing::MayShare,
        body: body.into(),
    }
}

#[tokio::test]
async fn the_relay_cannot_tell_an_offer_from_text_and_leaves_the_content_rules_to_clients() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    let offer = Content::Offer(Offer {
        kind: OfferKind::Offer,
        amount: Some(Amount::parse("GBP", "250000").unwrap()),
        terms: "A written apology".into(),
        conditions: vec![],
        responds_to: None,
    });
    let keys = caucus_protocol::identity::DeviceKeys::from_secret_bytes(
        &m.claimant.keys.to_secret_bytes(),
    )
    .unwrap();
    for content in [text("Our bottom line is 200k"), offer] {
        let e = m.views[1].seal(&keys, &room, &content).unwrap();
        m.claimant.ok(post(e)).await.unwrap();
    }
    // A forward a party member sealed itself: the relay sees a party's
    // envelope like any other and stores it.
    let forward = Content::Forward(Forward {
        source_room: m.joint_room,
        source_message: Digest([7; 32]),
        mode: ForwardMode::Verbatim,
        text: "The other side accepts.".into(),
        author_consented: true,
    });
    let forged = by_hand(&m, 1, room, 3, ContentClass::Party, &forward);
    assert_eq!(m.claimant.ok(post(forged)).await, Some(3));
    let mut received = Vec::new();
    while received.len() < 3 {
        if let Event::Envelope { envelope, .. } = m
            .mediator
            .wait_for(|e| matches!(e, Event::Envelope { .. }))
            .await
        {
            received.push(envelope.0);
        }
    }
    // What the relay stored of the text, the offer and the forward: headers
    // that differ only in sequence, link and salt, ciphertexts of one size.
    let seen = |e: &Envelope| {
        let h = e.header();
        (
            h.session,
            h.room,
            h.epoch,
            h.sender,
            h.class,
            e.ciphertext_len(),
        )
    };
    assert_eq!(seen(&received[0]), seen(&received[1]));
    assert_eq!(seen(&received[0]), seen(&received[2]));
    // The mediator's client opens the text and the offer, and refuses the
    // forward once it has decrypted it.
    assert_eq!(
        m.views[0].open(&received[0]).unwrap().content,
        text("Our bottom line is 200k")
    );
    assert!(matches!(
        m.views[0].open(&received[1]).unwrap().content,
        Content::Offer(_)
    ));
    assert!(matches!(
        m.views[0].open(&received[2]),
        Err(caucus_protocol::Error::NotPermitted(_))
    ));
}

#[tokio::test]
async fn the_relay_still_refuses_a_party_post_in_a_closed_room_a_room_not_its_own_or_a_mediators_class()
 {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let (own, other) = (m.claimant_room, m.defendant_room);
    // A mediator's class from a party member, in its own open room.
    let e = by_hand(&m, 1, own, 1, ContentClass::Mediator, &text("x"));
    assert_eq!(m.claimant.refused(post(e)).await, ErrorCode::Forbidden);
    // Another party's room, even with that room's key.
    let e = by_hand(&m, 1, other, 1, ContentClass::Party, &text("x"));
    assert_eq!(m.claimant.refused(post(e)).await, ErrorCode::Forbidden);
    // Its own room, closed.
    m.builder.set_open(&own, false).unwrap();
    m.publish().await;
    let e = by_hand(&m, 1, own, 1, ContentClass::Party, &text("x"));
    assert_eq!(m.claimant.refused(post(e)).await, ErrorCode::RoomClosed);
    // The mediator may still post there, and a party's class is not its.
    let e = by_hand(&m, 0, own, 1, ContentClass::Party, &text("y"));
    assert_eq!(m.mediator.refused(post(e)).await, ErrorCode::Forbidden);
    let e = by_hand(&m, 0, own, 1, ContentClass::Mediator, &text("y"));
    assert!(m.mediator.ok(post(e)).await.is_some());
}
