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
use caucus_protocol::offer::{Amount, AmountError, Offer, OfferKind};
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
fn amounts_are_integers_of_minor_units_in_the_currency_s_decimal_places() {
    for (currency, text, minor, exponent, shown) in [
        ("GBP", "250000.00", 25_000_000, 2, "GBP 250000.00"),
        // Fewer decimals than the currency: the same amount, normalised.
        ("GBP", "250000", 25_000_000, 2, "GBP 250000.00"),
        ("GBP", "1.5", 150, 2, "GBP 1.50"),
        ("GBP", "0", 0, 2, "GBP 0.00"),
        ("JPY", "250000", 250_000, 0, "JPY 250000"),
        ("KWD", "1.555", 1555, 3, "KWD 1.555"),
        ("BHD", "1.555", 1555, 3, "BHD 1.555"),
        ("CLF", "1.2345", 12345, 4, "CLF 1.2345"),
    ] {
        let a = Amount::parse(currency, text).unwrap();
        assert_eq!(
            (a.minor, a.exponent),
            (minor, exponent),
            "{currency} {text}"
        );
        assert_eq!(a.to_string(), shown);
        assert_eq!(Amount::from_bytes(&a.to_bytes()).unwrap(), a);
    }
    assert_eq!(
        Amount::parse("GBP", "1.5").unwrap(),
        Amount::parse("GBP", "1.50").unwrap()
    );
}

#[test]
fn an_amount_that_does_not_fit_its_currency_is_refused_in_words() {
    let refused = |currency: &str, text: &str| match Amount::parse(currency, text) {
        Err(Error::InvalidAmount(e)) => e,
        other => panic!("{currency} {text}: {other:?}"),
    };
    for (currency, text, said) in [
        ("GBP", "1.555", "GBP amounts have at most 2 decimal places"),
        ("JPY", "1.5", "JPY amounts have no decimal places"),
        ("KWD", "1.5555", "KWD amounts have at most 3 decimal places"),
        (
            "XYZ",
            "1",
            "XYZ is not a currency code (use an ISO 4217 code such as GBP, EUR or USD)",
        ),
        (
            "gbp",
            "1",
            "write the currency code in capital letters: GBP",
        ),
        (
            "Eur",
            "1",
            "write the currency code in capital letters: EUR",
        ),
        (
            "XAU",
            "1",
            "XAU is not a currency that sums are paid in (use a code such as GBP, EUR or USD)",
        ),
    ] {
        assert_eq!(refused(currency, text).to_string(), said);
    }
    for (currency, text) in [("GB", "1"), ("POUNDS", "1"), ("", "1")] {
        assert!(matches!(
            refused(currency, text),
            AmountError::UnknownCurrency(_)
        ));
    }
    for text in ["", "1.", ".5", "-1", "1e6", "1,000", " 1", "1.2.3"] {
        assert_eq!(refused("GBP", text), AmountError::NotANumber, "{text:?}");
    }
    assert_eq!(
        refused("GBP", "184467440737095516.16"),
        AmountError::TooLarge
    );
    assert_eq!(
        Amount::parse("GBP", "184467440737095516.15").unwrap().minor,
        u64::MAX
    );
}

#[test]
fn a_received_amount_is_held_to_the_same_rule() {
    let good = offer("100.00");
    // kind(1) || option tag(1) || minor(8) || currency(3) || exponent(1)
    let with = |at: usize, byte: u8| {
        let mut bytes = good.to_bytes();
        bytes[at] = byte;
        bytes
    };
    // Fewer decimals than the currency is still exact: GBP 10000 (not 100.00).
    let fewer = Offer::from_bytes(&with(13, 0)).unwrap();
    assert_eq!(fewer.amount.unwrap().to_string(), "GBP 10000");
    // More decimals than GBP has, a code that is no currency, one in small
    // letters: refused by the decoder, and by `validate` before sealing.
    for bad in [with(13, 3), with(10, b'X'), with(10, b'g')] {
        assert!(Offer::from_bytes(&bad).is_err());
        assert!(Amount::from_bytes(&bad[2..14]).is_err());
    }
    let mut made = good.clone();
    made.amount = Some(Amount {
        exponent: 3,
        ..good.amount.unwrap()
    });
    assert!(matches!(
        made.validate(),
        Err(Error::InvalidAmount(AmountError::TooManyDecimals {
            places: 2,
            ..
        }))
    ));
    // A client that sealed it anyway: the mediator's client refuses it.
    let mut f = Fixture::new();
    let env = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &Content::Offer(made))
        .unwrap();
    assert!(matches!(f.mediator.view.open(&env), Err(Error::Decode(_))));
}

#[test]
fn a_superseded_code_is_refused_when_typed_but_read_in_an_offer_made_before() {
    for (code, by) in [("HRK", "EUR"), ("BGN", "EUR"), ("ZWL", "ZWG")] {
        assert_eq!(
            Amount::parse(code, "1.00").unwrap_err().to_string(),
            format!("invalid amount: {code} is no longer in use: it was replaced by {by}")
        );
        let before = Amount {
            minor: 100,
            currency: code.as_bytes().try_into().unwrap(),
            exponent: 2,
        };
        assert_eq!(before.validate(), Ok(()));
        assert_eq!(Amount::from_bytes(&before.to_bytes()), Ok(before));
    }
    assert!(Amount::parse("EUR", "1.00").is_ok());
}

/// The offers of `docs/protocol.md` appendix A.5 decode as written there.
#[test]
fn the_appendix_offer_examples_decode() {
    let amount = Amount::from_bytes(&hex::decode("00000000017d784047425002").unwrap()).unwrap();
    assert_eq!(amount.to_string(), "GBP 250000.00");
    let offer = hex::decode(concat!(
        "0b010100000000017d7840474250020000001141207772697474656e2061706f",
        "6c6f6779000000010000001d4561636820736964652062656172732069747320",
        "6f776e20636f73747300"
    ))
    .unwrap();
    let Content::Offer(decoded) = Content::from_bytes(&offer).unwrap() else {
        panic!("not an offer");
    };
    assert_eq!(
        decoded.summary(),
        "Offer: GBP 250000.00; A written apology (conditions: Each side bears its own costs)"
    );
    for (at, byte) in [(11, b'g'), (14, 0x03)] {
        let mut bad = offer.clone();
        bad[at] = byte;
        assert!(Content::from_bytes(&bad).is_err(), "byte {at}");
    }
    let carried = hex::decode(concat!(
        "0c44444444444444444444444444444444cdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
        "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd01010100000000017d784047425002",
        "0000001141207772697474656e2061706f6c6f6779000000010000001d456163",
        "68207369646520626561727320697473206f776e20636f73747300"
    ))
    .unwrap();
    let Content::CarriedOffer(c) = Content::from_bytes(&carried).unwrap() else {
        panic!("not a carried offer");
    };
    assert_eq!(c.offer, decoded);
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
            documents: 2,
            chunks: 5,
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
