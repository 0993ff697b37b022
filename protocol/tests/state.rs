//! A view stored and restored, a builder resumed, and the forwarding rules.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use caucus_protocol::Error;
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::codec::DecodeError;
use caucus_protocol::content::{Content, ForwardMode, Sharing};
use caucus_protocol::roster::Phase;
use caucus_protocol::session::SessionView;
use common::{Fixture, text};

#[test]
fn a_restored_view_opens_new_messages_and_still_refuses_replays() {
    let mut f = Fixture::new();
    let first = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("one"))
        .unwrap();
    f.solicitor.view.open(&first).unwrap();
    let stored = f.solicitor.view.to_state_bytes();
    let mut restored = SessionView::from_state_bytes(&stored).unwrap();
    assert_eq!(restored.roster(), f.solicitor.view.roster());
    assert_eq!(restored.open(&first), Err(Error::Replay { seq: 1 }));
    let second = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("two"))
        .unwrap();
    let opened = restored.open(&second).unwrap();
    assert_eq!((opened.content, opened.gap), (text("two"), None));
    // The restored sender continues its own chain.
    let mut claimant = SessionView::from_state_bytes(&f.claimant.view.to_state_bytes()).unwrap();
    let third = claimant
        .seal(&f.claimant.keys, &f.claimant_room, &text("three"))
        .unwrap();
    assert_eq!(third.header().seq, 3);
    assert_eq!(restored.open(&third).unwrap().gap, None);
}

#[test]
fn a_tampered_state_file_is_refused() {
    let f = Fixture::new();
    let stored = f.claimant.view.to_state_bytes();
    // Flip a byte inside the first stored roster's signature area.
    let mut bad = stored.to_vec();
    let at = bad.len() / 3;
    bad[at] ^= 1;
    assert!(SessionView::from_state_bytes(&bad).is_err());
    assert!(SessionView::from_state_bytes(&stored[..stored.len() - 1]).is_err());
}

#[test]
fn a_stored_view_does_not_grow_with_the_messages_it_has_seen() {
    let mut f = Fixture::new();
    let mut size_after = Vec::new();
    for i in 1..=200 {
        let env = f
            .claimant
            .view
            .seal(&f.claimant.keys, &f.claimant_room, &text(&format!("m{i}")))
            .unwrap();
        f.solicitor.view.open(&env).unwrap();
        if i == 20 || i == 200 {
            size_after.push((
                f.claimant.view.to_state_bytes().len(),
                f.solicitor.view.to_state_bytes().len(),
            ));
        }
    }
    assert_eq!(size_after[0], size_after[1], "sender's and receiver's");
}

#[test]
fn a_restored_view_still_fills_a_hole_once_and_refuses_a_fork() {
    let mut f = Fixture::new();
    let (keys, room) = (&f.claimant.keys, f.claimant_room);
    let mut envs = Vec::new();
    let mut rewound = None;
    for i in 1..=6 {
        if i == 3 {
            rewound = Some(f.claimant.view.clone());
        }
        envs.push(
            f.claimant
                .view
                .seal(keys, &room, &text(&format!("m{i}")))
                .unwrap(),
        );
    }
    // The same sender's state, copied after seq 2, signs another seq 3.
    let forked = rewound
        .unwrap()
        .seal(keys, &room, &text("m3, otherwise"))
        .unwrap();
    assert_eq!(forked.header().seq, 3);
    // 3 and 5 withheld.
    for e in [&envs[0], &envs[1], &envs[3], &envs[5]] {
        f.solicitor.view.open(e).unwrap();
    }
    let mut restored = SessionView::from_state_bytes(&f.solicitor.view.to_state_bytes()).unwrap();
    assert_eq!(restored.open(&envs[1]), Err(Error::Replay { seq: 2 }));
    assert_eq!(restored.open(&envs[3]), Err(Error::Replay { seq: 4 }));
    // 4 names the real 3: the other branch's 3 does not fit the hole.
    assert_eq!(restored.open(&forked), Err(Error::ChainBroken { seq: 3 }));
    assert_eq!(restored.open(&envs[2]).unwrap().gap, None);
    assert_eq!(restored.open(&envs[4]).unwrap().gap, None);
    for (e, seq) in envs.iter().zip(1..) {
        assert_eq!(restored.open(e), Err(Error::Replay { seq }));
    }
}

#[test]
fn a_state_of_the_old_layout_is_refused_by_its_version() {
    let f = Fixture::new();
    let mut old = f.claimant.view.to_state_bytes().to_vec();
    old[..2].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(
        SessionView::from_state_bytes(&old).err(),
        Some(Error::Decode(DecodeError::UnsupportedVersion(1)))
    );
}

#[test]
fn a_resumed_builder_signs_the_next_version_with_the_same_labels() {
    let mut f = Fixture::new();
    let mut resumed = RosterBuilder::resume(&f.mediator.view).unwrap();
    assert_eq!(resumed.draft(), f.mediator.view.roster().unwrap());
    resumed.set_phase(Phase::Negotiation);
    let (next, keys) = resumed.sign(&f.mediator.keys, &f.mediator.view).unwrap();
    assert!(keys.is_empty(), "no room changed, so no new epoch");
    f.claimant.view.accept_roster(next).unwrap();
    let roster = f.claimant.view.roster().unwrap();
    let party = roster.party(&f.defendant_party).unwrap();
    assert_eq!(
        f.claimant
            .view
            .open_label(&party.label, &party.id.0)
            .unwrap(),
        "Defendant trust"
    );
}

#[test]
fn mediator_only_text_is_forwarded_only_with_its_authors_consent() {
    let mut f = Fixture::new();
    let secret = f
        .defendant
        .view
        .seal(
            &f.defendant.keys,
            &f.defendant_room,
            &text("our ceiling is 80k"),
        )
        .unwrap();
    let source = f.mediator.view.open(&secret).unwrap();
    assert!(matches!(
        source.forward(f.claimant_room, None, None),
        Err(Error::NotPermitted(_))
    ));
    assert!(matches!(
        source.forward(f.claimant_room, Some("they have room to move".into()), None),
        Err(Error::NotPermitted(_))
    ));
    // A consent from someone else, or for another message, does not count.
    let other = f
        .claimant
        .view
        .seal(
            &f.claimant.keys,
            &f.claimant_room,
            &Content::Consent {
                message: source.hash,
            },
        )
        .unwrap();
    let wrong = f.mediator.view.open(&other).unwrap();
    assert!(source.forward(f.claimant_room, None, Some(&wrong)).is_err());
    let consent = f
        .defendant
        .view
        .seal(
            &f.defendant.keys,
            &f.defendant_room,
            &Content::Consent {
                message: source.hash,
            },
        )
        .unwrap();
    let consent = f.mediator.view.open(&consent).unwrap();
    let (forward, receipt) = source
        .forward(f.claimant_room, None, Some(&consent))
        .unwrap();
    assert_eq!(forward.mode, ForwardMode::Verbatim);
    assert!(forward.author_consented);
    assert_eq!(forward.text, "our ceiling is 80k");
    assert_eq!(receipt.destination_room, f.claimant_room);
    assert_eq!(receipt.source_message, source.hash);
}

#[test]
fn may_share_text_is_forwarded_verbatim_or_reframed_without_consent() {
    let mut f = Fixture::new();
    let open = f
        .defendant
        .view
        .seal(
            &f.defendant.keys,
            &f.defendant_room,
            &Content::Text {
                sharing: Sharing::MayShare,
                body: "we apologise".into(),
            },
        )
        .unwrap();
    let source = f.mediator.view.open(&open).unwrap();
    let (verbatim, _) = source.forward(f.joint_room, None, None).unwrap();
    assert_eq!(
        (verbatim.mode, verbatim.text.as_str()),
        (ForwardMode::Verbatim, "we apologise")
    );
    let (reframed, receipt) = source
        .forward(
            f.joint_room,
            Some("The trust wishes to apologise.".into()),
            None,
        )
        .unwrap();
    assert_eq!(reframed.mode, ForwardMode::Reframed);
    assert_eq!(receipt.text, "The trust wishes to apologise.");
    assert!(!reframed.author_consented);
}
