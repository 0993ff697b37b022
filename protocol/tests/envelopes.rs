//! Envelopes: sealing, opening, and everything `open` must refuse.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use caucus_protocol::Error;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, Forward, ForwardMode, ShareReceipt, SystemEvent};
use caucus_protocol::envelope::Envelope;
use caucus_protocol::session::SessionView;
use caucus_protocol::wire::ErrorCode;
use common::{Fixture, text};
use proptest::prelude::*;

#[test]
fn a_private_message_opens_for_its_room_and_no_one_else() {
    let mut f = Fixture::new();
    let env = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("private"))
        .unwrap();
    let for_mediator = f.mediator.view.open(&env).unwrap();
    assert_eq!(for_mediator.content, text("private"));
    assert_eq!(for_mediator.header.seq, 1);
    assert_eq!(
        f.solicitor.view.open(&env).unwrap().content,
        text("private")
    );
    // The defendant holds no key for the claimant's room.
    assert!(matches!(
        f.defendant.view.open(&env),
        Err(Error::MissingRoomKey { .. })
    ));
}

#[test]
fn a_party_member_cannot_post_in_another_partys_room() {
    let mut f = Fixture::new();
    let err = f
        .defendant
        .view
        .seal(&f.defendant.keys, &f.claimant_room, &text("hi"))
        .unwrap_err();
    assert_eq!(err, Error::NotAMember);
}

#[test]
fn a_replayed_envelope_is_rejected() {
    let mut f = Fixture::new();
    let env = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("once"))
        .unwrap();
    f.mediator.view.open(&env).unwrap();
    assert_eq!(f.mediator.view.open(&env), Err(Error::Replay { seq: 1 }));
}

#[test]
fn a_dropped_envelope_shows_as_a_gap_and_can_arrive_late() {
    let mut f = Fixture::new();
    let envs: Vec<Envelope> = (0..4)
        .map(|i| {
            f.claimant
                .view
                .seal(&f.claimant.keys, &f.claimant_room, &text(&format!("m{i}")))
                .unwrap()
        })
        .collect();
    assert_eq!(f.mediator.view.open(&envs[0]).unwrap().gap, None);
    // The relay withholds 2 and 3.
    assert_eq!(f.mediator.view.open(&envs[3]).unwrap().gap, Some(2..=3));
    // Late arrivals still link into the chain.
    assert_eq!(f.mediator.view.open(&envs[1]).unwrap().gap, None);
    assert_eq!(f.mediator.view.open(&envs[2]).unwrap().gap, None);
}

#[test]
fn a_sender_who_forks_their_chain_is_caught() {
    let mut f = Fixture::new();
    let first = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("a"))
        .unwrap();
    let mut other_history = f.claimant.view.clone();
    let second = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("b"))
        .unwrap();
    // The same device state, copied, signs a different seq 2: an equivocation.
    let forked = other_history
        .seal(&f.claimant.keys, &f.claimant_room, &text("b'"))
        .unwrap();
    f.mediator.view.open(&first).unwrap();
    f.mediator.view.open(&second).unwrap();
    assert_eq!(f.mediator.view.open(&forked), Err(Error::Replay { seq: 2 }));
    // A receiver that saw the fork first rejects the other branch's successor.
    let third = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("c"))
        .unwrap();
    let mut solicitor = f.solicitor.view.clone();
    solicitor.open(&first).unwrap();
    solicitor.open(&forked).unwrap();
    assert_eq!(solicitor.open(&third), Err(Error::ChainBroken { seq: 3 }));
}

#[test]
fn only_mediators_send_forwards_receipts_and_system_events() {
    let mut f = Fixture::new();
    let forward = Content::Forward(Forward {
        source_room: f.defendant_room,
        source_message: caucus_protocol::crypto::Digest::ZERO,
        mode: ForwardMode::Reframed,
        text: "they accept".into(),
        author_consented: false,
    });
    let receipt = Content::ShareReceipt(ShareReceipt {
        source_message: caucus_protocol::crypto::Digest::ZERO,
        destination_room: f.joint_room,
        mode: ForwardMode::Verbatim,
        text: "x".into(),
    });
    let system = Content::System(SystemEvent::JointOpened);
    for content in [&forward, &receipt, &system] {
        assert!(matches!(
            f.claimant
                .view
                .seal(&f.claimant.keys, &f.joint_room, content),
            Err(Error::NotPermitted(_))
        ));
        let env = f
            .mediator
            .view
            .seal(&f.mediator.keys, &f.joint_room, content)
            .unwrap();
        assert_eq!(&f.defendant.view.open(&env).unwrap().content, content);
    }
}

#[test]
fn a_forward_carries_the_mediators_attestation_not_the_authors_signature() {
    let mut f = Fixture::new();
    let original = f
        .defendant
        .view
        .seal(
            &f.defendant.keys,
            &f.defendant_room,
            &text("we could pay 50k"),
        )
        .unwrap();
    let source = f.mediator.view.open(&original).unwrap();
    let fwd = Content::Forward(Forward {
        source_room: f.defendant_room,
        source_message: source.hash,
        mode: ForwardMode::Verbatim,
        text: "we could pay 50k".into(),
        author_consented: true,
    });
    let env = f
        .mediator
        .view
        .seal(&f.mediator.keys, &f.claimant_room, &fwd)
        .unwrap();
    let seen = f.claimant.view.open(&env).unwrap();
    // The claimant sees the mediator as sender; nothing in the envelope
    // verifies under the defendant's key.
    assert_eq!(seen.header.sender, f.mediator.keys.fingerprint());
    let bytes = env.to_bytes();
    let defendant_sig_key = f.defendant.keys.public().signing_key();
    assert!(!bytes.windows(32).any(|w| w == defendant_sig_key));
    assert!(!bytes.windows(64).any(|w| original.to_bytes().ends_with(w)));
}

#[test]
fn consent_and_withdrawal_come_only_from_a_party_member_in_their_private_room() {
    let mut f = Fixture::new();
    let consent = Content::Consent {
        message: caucus_protocol::crypto::Digest::ZERO,
    };
    assert!(
        f.claimant
            .view
            .seal(&f.claimant.keys, &f.claimant_room, &consent)
            .is_ok()
    );
    assert!(matches!(
        f.claimant
            .view
            .seal(&f.claimant.keys, &f.joint_room, &consent),
        Err(Error::NotPermitted(_))
    ));
    assert!(matches!(
        f.mediator
            .view
            .seal(&f.mediator.keys, &f.claimant_room, &consent),
        Err(Error::NotPermitted(_))
    ));
    // A withdrawal follows the same rule.
    let withdrawal = Content::Withdrawal;
    let env = f
        .defendant
        .view
        .seal(&f.defendant.keys, &f.defendant_room, &withdrawal)
        .unwrap();
    assert_eq!(f.mediator.view.open(&env).unwrap().content, withdrawal);
    assert!(matches!(
        f.defendant
            .view
            .seal(&f.defendant.keys, &f.joint_room, &withdrawal),
        Err(Error::NotPermitted(_))
    ));
    assert!(matches!(
        f.mediator
            .view
            .seal(&f.mediator.keys, &f.joint_room, &withdrawal),
        Err(Error::NotPermitted(_))
    ));
}

#[test]
fn a_closed_room_refuses_party_posts_but_not_the_mediator() {
    let mut f = Fixture::new();
    let joint = f.joint_room;
    f.builder.set_open(&joint, false).unwrap();
    f.publish();
    let refused = f
        .claimant
        .view
        .seal(&f.claimant.keys, &joint, &text("hello?"))
        .unwrap_err();
    assert_eq!(refused, Error::RoomClosed);
    assert_eq!(ErrorCode::from(&refused), ErrorCode::RoomClosed);
    assert!(
        f.mediator
            .view
            .seal(&f.mediator.keys, &joint, &text("soon"))
            .is_ok()
    );
}

#[test]
fn an_envelope_for_another_session_is_rejected() {
    let mut f = Fixture::new();
    let g = Fixture::new();
    let env = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("x"))
        .unwrap();
    let mut other = SessionView::new(g.session, g.mediator.keys.fingerprint());
    assert_eq!(other.open(&env), Err(Error::WrongSession));
}

#[test]
fn an_unknown_header_version_is_refused_as_unsupported() {
    let mut f = Fixture::new();
    let mut bytes = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("x"))
        .unwrap()
        .to_bytes();
    // bytes(header): a 4-byte length, then the u16 version.
    bytes[5] = 2;
    let err = Envelope::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        ErrorCode::from(&Error::from(err)),
        ErrorCode::UnsupportedVersion
    );
}

#[test]
fn a_removed_member_gets_no_key_for_the_new_epoch() {
    let mut f = Fixture::new();
    let solicitor = f.solicitor.keys.fingerprint();
    let old_epoch = f
        .mediator
        .view
        .roster()
        .unwrap()
        .room(&f.claimant_room)
        .unwrap()
        .epoch;
    f.builder.remove_member(&solicitor).unwrap();
    let (_roster, bundles) = f.publish();
    let new_epoch = f
        .mediator
        .view
        .roster()
        .unwrap()
        .room(&f.claimant_room)
        .unwrap()
        .epoch;
    assert!(new_epoch > old_epoch);
    for b in &bundles {
        assert!(
            b.unverified()
                .entries
                .iter()
                .all(|e| e.recipient != solicitor)
        );
    }
    let env = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("after removal"))
        .unwrap();
    assert_eq!(env.header().epoch, new_epoch);
    // The solicitor's old view holds only the old epoch's key.
    assert!(f.solicitor.view.open(&env).is_err());
    assert!(
        f.solicitor
            .view
            .room_key(&f.claimant_room, new_epoch)
            .is_none()
    );
    assert!(f.mediator.view.open(&env).is_ok());
}

fn sealed(f: &mut Fixture) -> Vec<u8> {
    f.claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("tamper with me"))
        .unwrap()
        .to_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Changing any byte of an envelope — header, ciphertext or signature —
    /// makes it fail to decode or fail to open; nothing is returned as content.
    #[test]
    fn changing_any_envelope_byte_is_rejected(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut f = Fixture::new();
        let mut bytes = sealed(&mut f);
        let i = pos.index(bytes.len());
        bytes[i] ^= flip;
        if let Ok(env) = Envelope::from_bytes(&bytes) {
            prop_assert!(f.mediator.view.open(&env).is_err());
        }
    }
}

#[test]
fn every_single_byte_change_is_rejected_exhaustively() {
    let mut f = Fixture::new();
    let bytes = sealed(&mut f);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        if let Ok(env) = Envelope::from_bytes(&bad) {
            assert!(f.mediator.view.open(&env).is_err(), "byte {i} accepted");
        }
    }
    // The untouched envelope still opens: the state was not poisoned.
    let env = Envelope::from_bytes(&bytes).unwrap();
    assert!(f.mediator.view.open(&env).is_ok());
}

#[test]
fn a_post_parses_alike_however_it_is_spelled_and_keeps_its_exact_bytes() {
    use caucus_protocol::wire::{
        Encoded, ErrorCode, RequestBody, parse_request, parse_request_keeping_envelope,
    };
    let mut f = Fixture::new();
    let env = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("as sent"))
        .unwrap();
    let b64 = caucus_protocol::b64::encode(&env.to_bytes());
    // As clients send it (read in one pass), then spelled in ways only the
    // full parse reads: other field order, spaces, an escaped character.
    let escaped = format!("\\u{:04x}{}", u32::from(b64.as_bytes()[0]), &b64[1..]);
    let spellings = [
        format!(r#"{{"type":"post","v":1,"id":7,"envelope":"{b64}"}}"#),
        format!(r#"{{"envelope":"{b64}","id":7,"v":1,"type":"post"}}"#),
        format!(r#" {{ "v" : 1 , "id" : 7 , "type" : "post" , "envelope" : "{b64}" }} "#),
        format!(r#"{{"v":1,"id":7,"type":"post","envelope":"{escaped}"}}"#),
    ];
    for text in &spellings {
        let request = parse_request(text).unwrap();
        assert_eq!(request.id, 7, "{text}");
        let RequestBody::Post {
            envelope: Encoded(parsed),
        } = request.body
        else {
            panic!("not a post: {text}");
        };
        assert_eq!(parsed, env, "{text}");
        assert_eq!(parsed.hash(), env.hash());
        assert_eq!(parsed.as_bytes(), env.to_bytes().as_slice());
        assert_eq!(parsed.into_bytes(), env.to_bytes());
    }
    // The one-pass read also gives the envelope's text as sent, which is
    // its encoding; the full parse (here, of the escaped spelling) none.
    let kept: Vec<Option<&str>> = spellings
        .iter()
        .map(|text| parse_request_keeping_envelope(text).unwrap().1)
        .collect();
    assert_eq!(kept[..3], [Some(b64.as_str()); 3]);
    assert_eq!(kept[3], None);
    // What the one-pass read does not take is refused as before: a field a
    // post does not have, another version, an id above 2^53 - 1, an
    // envelope with a byte more or less.
    let refused = [
        (
            format!(r#"{{"type":"post","v":1,"id":7,"envelope":"{b64}","x":0}}"#),
            ErrorCode::Malformed,
        ),
        (
            format!(r#"{{"type":"post","v":2,"id":7,"envelope":"{b64}"}}"#),
            ErrorCode::UnsupportedVersion,
        ),
        (
            format!(r#"{{"type":"post","v":1,"id":9007199254740992,"envelope":"{b64}"}}"#),
            ErrorCode::Malformed,
        ),
        (
            format!(
                r#"{{"type":"post","v":1,"id":7,"envelope":"{}"}}"#,
                caucus_protocol::b64::encode(&[env.to_bytes().as_slice(), &[0]].concat())
            ),
            ErrorCode::Malformed,
        ),
        (
            format!(
                r#"{{"type":"post","v":1,"id":7,"envelope":"{}"}}"#,
                caucus_protocol::b64::encode(&env.to_bytes()[1..])
            ),
            ErrorCode::Malformed,
        ),
    ];
    for (text, code) in &refused {
        assert_eq!(parse_request(text).unwrap_err().code, *code, "{text}");
    }
    // The relay passes the text as sent on as the envelope's encoding, so
    // only the canonical spelling is read: none padded, and none whose
    // last character carries bits beyond the bytes.
    let rem = env.to_bytes().len() % 3;
    assert_ne!(rem, 0, "this envelope's encoding has no unused bits");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (head, last) = b64.split_at(b64.len() - 1);
    let value = alphabet
        .iter()
        .position(|&c| c == last.as_bytes()[0])
        .unwrap();
    let loose = format!("{head}{}", char::from(alphabet[value | 1]));
    let padded = format!("{b64}{}", "=".repeat(3 - rem));
    for spelling in [loose, padded] {
        let text = format!(r#"{{"type":"post","v":1,"id":7,"envelope":"{spelling}"}}"#);
        assert_eq!(
            parse_request_keeping_envelope(&text).unwrap_err().code,
            ErrorCode::Malformed,
            "{text}"
        );
        assert_eq!(parse_request(&text).unwrap_err().code, ErrorCode::Malformed);
    }
}

/// A signature checked ahead of opening (a client reading a page of a
/// catch-up on several threads) counts only if it held with the key the
/// roster gives the header's sender: a bad signature, or one made by
/// another key, is refused by `open_checked` exactly as by `open`, and
/// leaves the sender's chain as it was.
#[test]
fn a_signature_checked_ahead_counts_only_with_the_senders_key() {
    use caucus_protocol::envelope::CheckedEnvelope;
    use caucus_protocol::identity::DeviceKeys;
    let mut f = Fixture::new();
    let good = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("mine"))
        .unwrap();
    let mut bytes = good.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let badly_signed = Envelope::from_bytes(&bytes).unwrap();
    // Someone else's signature on a header naming the claimant, checked
    // ahead with the key that made it.
    let outsider = DeviceKeys::generate().unwrap();
    let key = f
        .claimant
        .view
        .room_key(&f.claimant_room, good.header().epoch)
        .unwrap()
        .clone();
    let forged =
        Envelope::seal(&outsider, &key, good.header().clone(), &text("not theirs")).unwrap();
    let claimant = f.claimant.keys.public().clone();
    for (envelope, checked_with) in [
        (&badly_signed, Some(&claimant)),
        (&badly_signed, None),
        (&forged, Some(outsider.public())),
        (&forged, None),
    ] {
        assert_eq!(
            f.mediator.view.open(envelope),
            Err(Error::BadSignature("envelope"))
        );
        let checked = CheckedEnvelope::check(envelope.clone(), checked_with);
        assert_eq!(
            f.mediator.view.open_checked(&checked),
            Err(Error::BadSignature("envelope"))
        );
    }
    // Checked ahead with the sender's key, or not at all: it opens, once.
    let checked = CheckedEnvelope::check(good.clone(), Some(&claimant));
    let opened = f.mediator.view.open_checked(&checked).unwrap();
    assert_eq!((opened.content, opened.header.seq), (text("mine"), 1));
    assert_eq!(f.mediator.view.open(&good), Err(Error::Replay { seq: 1 }));
    assert_eq!(
        f.solicitor
            .view
            .open_checked(&CheckedEnvelope::check(good, None))
            .unwrap()
            .content,
        text("mine")
    );
}
