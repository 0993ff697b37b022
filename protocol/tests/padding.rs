//! What the relay learns from an envelope and a roster: the sender's side, the
//! room and a size bucket, not the content's type or exact length (15.15,
//! 15.33). And the checks that come with it: padding is opened one way only,
//! and what a sender may send is checked once the content is decrypted.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod by_hand;
mod common;

use caucus_protocol::Error;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{
    Content, ContentClass, Forward, ForwardMode, Sharing, Step, SystemEvent,
};
use caucus_protocol::crypto::{Digest, Signature, label};
use caucus_protocol::envelope::{Envelope, Header};
use caucus_protocol::ids::RoomId;
use caucus_protocol::keys::SealedLabel;
use caucus_protocol::offer::{Amount, Offer, OfferKind};
use caucus_protocol::wire::ErrorCode;
use common::{Fixture, text};

/// What the relay can read of an envelope, less the salt (fresh for each):
/// the header and the length of the ciphertext.
fn seen_by_the_relay(e: &Envelope) -> (Vec<u8>, usize) {
    let mut h = e.header().clone();
    h.salt = [0; 16];
    (h.to_bytes(), e.ciphertext_len())
}

fn epoch(f: &Fixture, room: &RoomId) -> u64 {
    f.mediator.view.roster().unwrap().room(room).unwrap().epoch
}

#[test]
fn an_offer_text_consent_and_agreed_step_look_the_same_to_the_relay() {
    let f = Fixture::new();
    let room = f.claimant_room;
    let offer = Offer {
        kind: OfferKind::Offer,
        amount: Some(Amount::parse("GBP", "250000").unwrap()),
        terms: "A written apology".into(),
        conditions: vec!["Each side bears its own costs".into()],
        responds_to: None,
    };
    let party = [
        text("Our bottom line is 200k"),
        Content::Offer(offer),
        Content::Consent {
            message: Digest([7; 32]),
        },
        Content::Agree {
            step: Step::JointMeeting,
        },
        Content::Withdrawal,
        Content::AgreementSignature {
            agreement: Digest([8; 32]),
            signature: Signature([9; 64]),
        },
    ];
    let mediator = [
        text("Thank you"),
        Content::Forward(Forward {
            source_room: f.defendant_room,
            source_message: Digest([7; 32]),
            mode: ForwardMode::Reframed,
            text: "They could move on price.".into(),
            author_consented: false,
        }),
        Content::System(SystemEvent::JointOpened),
    ];
    for (who, contents) in [(&f.claimant, &party[..]), (&f.mediator, &mediator[..])] {
        let sealed: Vec<Envelope> = contents
            .iter()
            .map(|c| who.view.clone().seal(&who.keys, &room, c).unwrap())
            .collect();
        for (c, e) in contents.iter().zip(&sealed) {
            assert_eq!(seen_by_the_relay(e), seen_by_the_relay(&sealed[0]), "{c:?}");
            // Each opens as what it is, for a reader of the other side.
            let mut reader = if who.keys.fingerprint() == f.mediator.keys.fingerprint() {
                f.claimant.view.clone()
            } else {
                f.mediator.view.clone()
            };
            assert_eq!(&reader.open(e).unwrap().content, c);
        }
        assert_eq!(sealed[0].ciphertext_len(), 256 + 16);
    }
}

#[test]
fn names_and_labels_up_to_sixty_bytes_are_sealed_to_one_size() {
    // The fixture's labels and names: "Claimant", "Defendant trust", "Ms C",
    // "Mr S", "Dr D", "Mediator".
    let f = Fixture::new();
    let roster = f.mediator.view.roster().unwrap();
    let lengths: Vec<usize> = roster
        .parties
        .iter()
        .map(|p| p.label.ciphertext.len())
        .chain(roster.members.iter().map(|m| m.name.ciphertext.len()))
        .collect();
    assert_eq!(lengths, vec![64 + 16; 6]);
}

/// `padded` sealed by hand as the claimant's first message in its room.
fn sealed_by_hand(f: &Fixture, padded: &[u8]) -> Envelope {
    let room = f.claimant_room;
    let epoch = epoch(f, &room);
    let header = Header {
        session: f.session,
        room,
        epoch,
        sender: f.claimant.keys.fingerprint(),
        seq: 1,
        previous: Digest::ZERO,
        class: ContentClass::Party,
        salt: [5; 16],
    }
    .to_bytes();
    let secret = f.claimant.view.room_key(&room, epoch).unwrap().secret();
    let key = by_hand::message_key(secret, &header);
    by_hand::assemble(
        &f.claimant.keys,
        &header,
        &by_hand::seal_once(&key, &header, padded),
    )
}

#[test]
fn content_is_opened_only_when_padded_the_one_way() {
    let f = Fixture::new();
    let content = text("hello").to_bytes();
    let good = by_hand::pad(&content, 256);
    assert_eq!(good.len(), 256);
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut p = good.clone();
        edit(&mut p);
        p
    };
    let cases: [(&str, Vec<u8>, Result<Content, ErrorCode>); 6] = [
        ("padded", good.clone(), Ok(text("hello"))),
        (
            "a padding byte not zero",
            with(&|p| p[255] = 1),
            Err(ErrorCode::Malformed),
        ),
        (
            "longer than its bucket",
            with(&|p| p.extend_from_slice(&[0; 16])),
            Err(ErrorCode::Malformed),
        ),
        (
            "shorter than its bucket",
            with(&|p| p.truncate(255)),
            Err(ErrorCode::Malformed),
        ),
        (
            "not padded at all",
            content.clone(),
            Err(ErrorCode::Malformed),
        ),
        (
            "a length past the end",
            with(&|p| p[..4].copy_from_slice(&300u32.to_be_bytes())),
            Err(ErrorCode::Malformed),
        ),
    ];
    for (what, padded, expected) in cases {
        let got = f
            .mediator
            .view
            .clone()
            .open(&sealed_by_hand(&f, &padded))
            .map(|o| o.content)
            .map_err(|e| ErrorCode::from(&e));
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn a_label_is_opened_only_when_padded_the_one_way() {
    let f = Fixture::new();
    let roster = f.mediator.view.roster().unwrap();
    let joint = roster.joint_room().unwrap();
    let secret = f
        .mediator
        .view
        .room_key(&joint.id, joint.epoch)
        .unwrap()
        .secret();
    let party = f.claimant_party;
    let salt = [3u8; 16];
    let info = [
        &f.session.0[..],
        &joint.id.0,
        &joint.epoch.to_be_bytes(),
        &by_hand::bytes(&party.0),
        &salt,
    ]
    .concat();
    let key = by_hand::expand(secret, label::ROSTER_LABEL_KEY, &info);
    let sealed = |padded: &[u8]| SealedLabel {
        epoch: joint.epoch,
        salt,
        ciphertext: by_hand::seal_once(&key, &[], padded),
    };
    let good = by_hand::pad(b"Claimant", 64);
    let open = |padded: &[u8]| {
        f.mediator
            .view
            .open_label(&sealed(padded), &party.0)
            .map_err(|e| ErrorCode::from(&e))
    };
    assert_eq!(open(&good), Ok("Claimant".to_string()));
    let mut dirty = good.clone();
    dirty[63] = 0x80;
    assert_eq!(open(&dirty), Err(ErrorCode::Malformed));
    assert_eq!(open(b"Claimant"), Err(ErrorCode::Malformed));
    assert_eq!(
        open(&by_hand::pad(b"Claimant", 128)),
        Err(ErrorCode::Malformed)
    );
}

#[test]
fn a_forward_a_party_member_seals_is_refused_once_decrypted() {
    // The claimant holds its room's key and seals a "forward" under the class
    // of its own side: nothing in the header is wrong, so the relay cannot
    // tell; the receiver's one rule refuses it after decrypting.
    let f = Fixture::new();
    let room = f.claimant_room;
    let epoch = epoch(&f, &room);
    let header = Header {
        session: f.session,
        room,
        epoch,
        sender: f.claimant.keys.fingerprint(),
        seq: 1,
        previous: Digest::ZERO,
        class: ContentClass::Party,
        salt: [6; 16],
    };
    let forward = Content::Forward(Forward {
        source_room: f.joint_room,
        source_message: Digest([7; 32]),
        mode: ForwardMode::Verbatim,
        text: "The other side accepts.".into(),
        author_consented: true,
    });
    let key = f.claimant.view.room_key(&room, epoch).unwrap();
    let forged = Envelope::seal(&f.claimant.keys, key, header, &forward).unwrap();
    let mut mediator = f.mediator.view.clone();
    assert!(matches!(
        mediator.open(&forged),
        Err(Error::NotPermitted(_))
    ));
    // Nothing was recorded: the claimant's real first message opens.
    let honest = f
        .claimant
        .view
        .clone()
        .seal(&f.claimant.keys, &room, &text("hello"))
        .unwrap();
    assert_eq!(mediator.open(&honest).unwrap().content, text("hello"));
    // And a party member's consent sealed by a mediator is refused the same way.
    let header = Header {
        sender: f.mediator.keys.fingerprint(),
        class: ContentClass::Mediator,
        ..forged.header().clone()
    };
    let consent = Content::Consent {
        message: Digest([7; 32]),
    };
    let mediator_key = f.mediator.view.room_key(&room, epoch).unwrap();
    let forged = Envelope::seal(&f.mediator.keys, mediator_key, header, &consent).unwrap();
    assert!(matches!(
        f.claimant.view.clone().open(&forged),
        Err(Error::NotPermitted(_))
    ));
}

#[test]
fn content_up_to_four_bytes_under_the_limit_is_sealed_and_no_more() {
    // Padding adds a u32 length, and the largest padded size is the limit:
    // Text's own encoding is 6 bytes before the body.
    let f = Fixture::new();
    let body = |n: usize| Content::Text {
        sharing: Sharing::MayShare,
        body: "x".repeat(n),
    };
    let mut claimant = f.claimant.view.clone();
    let fits = body(262_144 - 4 - 6);
    let e = claimant
        .seal(&f.claimant.keys, &f.claimant_room, &fits)
        .unwrap();
    assert_eq!(e.ciphertext_len(), 262_144 + 16);
    assert_eq!(f.mediator.view.clone().open(&e).unwrap().content, fits);
    assert_eq!(
        claimant.seal(&f.claimant.keys, &f.claimant_room, &body(262_144 - 4 - 5)),
        Err(Error::TooLarge)
    );
}
