//! Offers and counter-offers: amounts without floats, the rules a decoder
//! enforces, where an offer may be made, and how the mediator carries one.
//! And the relay's deletion statement: signed, checked, bound to its session.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use caucus_protocol::Error;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, ForwardMode};
use caucus_protocol::deletion::{DeletionStatement, Erased, SignedDeletionStatement};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::SessionId;
use caucus_protocol::offer::{Amount, Offer, OfferKind};
use common::Fixture;

fn offer(amount: &str) -> Offer {
    Offer {
        kind: OfferKind::Offer,
        amount: Some(Amount::parse("GBP", amount).unwrap()),
        terms: "An apology in writing".into(),
        conditions: vec!["Confidential".into()],
        responds_to: None,
    }
}

#[test]
fn amounts_are_integers_of_minor_units_and_print_as_written() {
    for (text, minor, exponent) in [("250000.00", 25_000_000, 2), ("7", 7, 0), ("0.5", 5, 1)] {
        let a = Amount::parse("GBP", text).unwrap();
        assert_eq!((a.minor, a.exponent), (minor, exponent));
        assert_eq!(a.to_string(), format!("GBP {text}"));
        assert_eq!(Amount::from_bytes(&a.to_bytes()).unwrap(), a);
    }
    for (currency, text) in [
        ("gbp", "1"),
        ("GB", "1"),
        ("GBP", ""),
        ("GBP", "1."),
        ("GBP", "-1"),
        ("GBP", "1.23456"),
        ("GBP", "1e6"),
        ("GBP", "99999999999999999999"),
    ] {
        assert!(
            matches!(Amount::parse(currency, text), Err(Error::InvalidOffer(_))),
            "{currency} {text}"
        );
    }
}

#[test]
fn a_decoder_refuses_an_empty_offer_an_unanchored_counter_offer_and_a_bad_currency() {
    let good = offer("100.00");
    assert_eq!(Offer::from_bytes(&good.to_bytes()).unwrap(), good);
    let empty = Offer {
        amount: None,
        terms: " ".into(),
        ..good.clone()
    };
    let loose = Offer {
        kind: OfferKind::CounterOffer,
        ..good.clone()
    };
    for bad in [empty, loose] {
        assert!(bad.validate().is_err());
        assert!(Offer::from_bytes(&bad.to_bytes()).is_err());
    }
    let mut bytes = good.to_bytes();
    // kind(1) || option tag(1) || minor(8) || currency(3): lower-case it.
    bytes[10] = b'g';
    assert!(Offer::from_bytes(&bytes).is_err());
}

#[test]
fn an_offer_is_made_only_in_a_private_room_and_opens_there_for_the_mediator() {
    let mut f = Fixture::new();
    let content = Content::Offer(offer("250000.00"));
    assert!(matches!(
        f.claimant
            .view
            .seal(&f.claimant.keys, &f.joint_room, &content),
        Err(Error::NotPermitted(_))
    ));
    let env = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &content)
        .unwrap();
    assert_eq!(f.mediator.view.open(&env).unwrap().content, content);
    // The mediator may record one for a party, in that party's room.
    let for_them = f
        .mediator
        .view
        .seal(&f.mediator.keys, &f.defendant_room, &content)
        .unwrap();
    assert_eq!(f.defendant.view.open(&for_them).unwrap().content, content);
}

#[test]
fn the_mediator_carries_an_offer_verbatim_or_restated_with_a_receipt() {
    let mut f = Fixture::new();
    let made = offer("250000.00");
    let env = f
        .claimant
        .view
        .seal(
            &f.claimant.keys,
            &f.claimant_room,
            &Content::Offer(made.clone()),
        )
        .unwrap();
    let opened = f.mediator.view.open(&env).unwrap();
    let (carried, receipt) = opened.carry_offer(f.defendant_room, None).unwrap();
    assert_eq!(carried.mode, ForwardMode::Verbatim);
    assert_eq!(carried.offer, made);
    assert_eq!(carried.source_message, env.hash());
    assert_eq!(receipt.text, made.summary());
    assert!(receipt.text.contains("GBP 250000.00"));
    let restated = Offer {
        terms: "An apology".into(),
        ..made.clone()
    };
    let (carried, _) = opened
        .carry_offer(f.defendant_room, Some(restated.clone()))
        .unwrap();
    assert_eq!(
        (carried.mode, carried.offer),
        (ForwardMode::Reframed, restated)
    );
    // The carried copy opens in the other party's room; a party cannot
    // send one itself.
    let copy = Content::CarriedOffer(opened.carry_offer(f.defendant_room, None).unwrap().0);
    let sealed = f
        .mediator
        .view
        .seal(&f.mediator.keys, &f.defendant_room, &copy)
        .unwrap();
    assert_eq!(f.defendant.view.open(&sealed).unwrap().content, copy);
    assert!(matches!(
        f.defendant
            .view
            .seal(&f.defendant.keys, &f.defendant_room, &copy),
        Err(Error::NotPermitted(_))
    ));
    // Back to its own room, or anything but an offer: refused.
    assert!(opened.carry_offer(f.claimant_room, None).is_err());
    let text = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &common::text("hello"))
        .unwrap();
    let text = f.mediator.view.open(&text).unwrap();
    assert!(text.carry_offer(f.defendant_room, None).is_err());
}

fn statement(relay: &DeviceKeys, session: SessionId, mediator: &DeviceKeys) -> DeletionStatement {
    DeletionStatement {
        relay: relay.public().clone(),
        session,
        mediator: mediator.fingerprint(),
        closed_at: 1_900_000_000,
        erased_at: 1_900_000_060,
        erased: Erased {
            envelopes: 12,
            rosters: 4,
            key_bundles: 9,
            invites: 3,
            join_requests: 0,
            sessions: 1,
            bytes: 9_000,
        },
    }
}

#[test]
fn a_deletion_statement_verifies_only_as_signed_for_its_session_mediator_and_relay() {
    let (relay, mediator, other) = (
        DeviceKeys::generate().unwrap(),
        DeviceKeys::generate().unwrap(),
        DeviceKeys::generate().unwrap(),
    );
    let session = SessionId::random().unwrap();
    let signed = statement(&relay, session, &mediator).sign(&relay).unwrap();
    let copy = SignedDeletionStatement::from_bytes(&signed.to_bytes()).unwrap();
    let (m, r) = (mediator.fingerprint(), relay.fingerprint());
    assert_eq!(
        copy.verify_for(&session, &m, &r).unwrap().erased.envelopes,
        12
    );
    // Bound to its session, its mediator and its relay.
    let elsewhere = SessionId::random().unwrap();
    assert_eq!(
        copy.verify_for(&elsewhere, &m, &r).unwrap_err(),
        Error::WrongSession
    );
    assert!(copy.verify_for(&session, &other.fingerprint(), &r).is_err());
    assert!(copy.verify_for(&session, &m, &other.fingerprint()).is_err());
    // Only the relay it names can sign it; a changed byte fails.
    assert!(statement(&relay, session, &mediator).sign(&other).is_err());
    let mut bytes = signed.to_bytes();
    let at = bytes.len() - 70; // the byte count, just before the signature
    bytes[at] ^= 1;
    let tampered = SignedDeletionStatement::from_bytes(&bytes).unwrap();
    assert!(matches!(tampered.verify(), Err(Error::BadSignature(_))));
}
