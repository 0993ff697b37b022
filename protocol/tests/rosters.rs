//! Rosters and key bundles: who may sign them, which are accepted, and
//! everything a client must refuse.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use caucus_protocol::Error;
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::codec::Canonical;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::keys::SignedKeyBundle;
use caucus_protocol::roster::{Role, SignedRoster};
use caucus_protocol::session::SessionView;
use common::Fixture;
use proptest::prelude::*;

#[test]
fn a_roster_signed_by_anyone_but_the_pinned_mediator_is_rejected() {
    let f = Fixture::new();
    // An impostor builds an otherwise valid roster for the same session.
    let impostor = DeviceKeys::generate().unwrap();
    let mut b = RosterBuilder::new(f.session, &impostor, "Mediator").unwrap();
    let party = b.add_party("Claimant").unwrap();
    b.add_member(
        f.claimant.keys.public(),
        Role::PartyMember,
        Some(party),
        "x",
    )
    .unwrap();
    let (forged, _) = b
        .sign(
            &impostor,
            &SessionView::new(f.session, impostor.fingerprint()),
        )
        .unwrap();
    let mut view = SessionView::new(f.session, f.mediator.keys.fingerprint());
    assert_eq!(view.accept_roster(forged), Err(Error::UnpinnedMediator));
}

#[test]
fn a_roster_that_is_not_newer_is_rejected() {
    let mut f = Fixture::new();
    let first = f.rosters[0].clone();
    f.builder
        .set_phase(caucus_protocol::roster::Phase::IndividualMeetings);
    f.publish();
    // Version 1 again is the roster accepted at that version: redelivery,
    // no error, and no rollback: version 2 is still held.
    assert!(f.claimant.view.accept_roster(first).is_ok());
    assert_eq!(f.claimant.view.roster().map(|r| r.version), Some(2));
    // The current one again is redelivery, not an error: nothing changes.
    let current = f.rosters[1].clone();
    assert_eq!(
        f.claimant.view.accept_roster(current.clone()).cloned(),
        Ok(current.unverified().clone())
    );
    assert_eq!(f.claimant.view.roster().map(|r| r.version), Some(2));
    // Another version 2 (the mediator signed two) is stale.
    let other_two = {
        let mut r = f.rosters[0].unverified().clone();
        r.version = 2;
        r.previous = f.rosters[0].hash();
        r.phase = caucus_protocol::roster::Phase::Negotiation;
        SignedRoster::sign_roster(r, &f.mediator.keys).unwrap()
    };
    assert_eq!(
        f.claimant.view.accept_roster(other_two),
        Err(Error::StaleRoster { held: 2, got: 2 })
    );
}

#[test]
fn a_roster_that_does_not_chain_from_the_held_one_is_rejected() {
    let mut f = Fixture::new();
    // The mediator's builder signs version 2 twice, on two different drafts:
    // a client holding one version 2 refuses a version 3 built on the other.
    let mut fork = SessionView::new(f.session, f.mediator.keys.fingerprint());
    fork.accept_roster(f.rosters[0].clone()).unwrap();
    f.builder
        .set_phase(caucus_protocol::roster::Phase::IndividualMeetings);
    let (v2, _) = f.builder.sign(&f.mediator.keys, &f.mediator.view).unwrap();
    f.builder
        .set_phase(caucus_protocol::roster::Phase::Negotiation);
    let (v3, _) = f.builder.sign(&f.mediator.keys, &f.mediator.view).unwrap();
    fork.accept_roster(v2).unwrap();
    fork.accept_roster(v3.clone()).unwrap();
    let mut other = RosterBuilder::new(f.session, &f.mediator.keys, "M").unwrap();
    let none = SessionView::new(f.session, f.mediator.keys.fingerprint());
    other.add_party("P").unwrap();
    let (o1, _) = other.sign(&f.mediator.keys, &none).unwrap();
    let (o2, _) = other.sign(&f.mediator.keys, &none).unwrap();
    let (o3, _) = other.sign(&f.mediator.keys, &none).unwrap();
    let (o4, _) = other.sign(&f.mediator.keys, &none).unwrap();
    let mut v = SessionView::new(f.session, f.mediator.keys.fingerprint());
    v.accept_roster(o1).unwrap();
    v.accept_roster(o2).unwrap();
    v.accept_roster(o3).unwrap();
    // fork holds v3 from the first history; o4 follows another v3.
    assert_eq!(fork.accept_roster(o4), Err(Error::RosterChain));
}

#[test]
fn a_membership_change_without_a_new_epoch_is_rejected() {
    // Hand-edit a roster so the solicitor leaves the session without any of
    // its rooms starting a new epoch, and sign it with the real mediator
    // key: clients refuse it (the solicitor would keep reading).
    let f = Fixture::new();
    let mut roster = f.mediator.view.roster().unwrap().clone();
    roster.version += 1;
    roster.previous = f.rosters.last().unwrap().hash();
    let solicitor = f.solicitor.keys.fingerprint();
    roster.members.retain(|m| m.id() != solicitor);
    for room in &mut roster.rooms {
        room.members.retain(|m| *m != solicitor);
    }
    let signed = SignedRoster::sign_roster(roster, &f.mediator.keys).unwrap();
    let mut view = f.claimant.view.clone();
    assert_eq!(
        view.accept_roster(signed),
        Err(Error::InvalidRoster(
            "a room's members, their roles or its openness changed without a new epoch"
        ))
    );
}

#[test]
fn a_private_room_may_not_hold_another_partys_member() {
    let f = Fixture::new();
    let mut roster = f.mediator.view.roster().unwrap().clone();
    let defendant = f.defendant.keys.fingerprint();
    for room in &mut roster.rooms {
        if room.id == f.claimant_room {
            room.members.push(defendant);
            room.members.sort();
            room.epoch += 1;
        }
    }
    roster.version += 1;
    roster.previous = f.rosters.last().unwrap().hash();
    assert!(matches!(
        SignedRoster::sign_roster(roster, &f.mediator.keys),
        Err(Error::InvalidRoster(_))
    ));
}

#[test]
fn a_key_bundle_for_another_recipient_is_rejected() {
    let mut f = Fixture::new();
    // The bundle for the defendant's room has no copy for the claimant.
    let defendant_room = f.defendant_room;
    let bundle = f
        .bundles
        .iter()
        .find(|b| b.unverified().room == defendant_room)
        .unwrap()
        .clone();
    assert_eq!(
        f.claimant
            .view
            .open_key_bundle(&f.claimant.keys, &bundle)
            .map(|_| ()),
        Err(Error::NotARecipient)
    );
}

#[test]
fn a_key_bundle_not_signed_by_the_mediator_is_rejected() {
    let mut f = Fixture::new();
    // A co-member (the solicitor) cannot issue keys even with a valid
    // signature of their own: the signature must be the lead mediator's.
    let other = Fixture::new();
    let foreign = other.bundles[0].clone();
    assert!(matches!(
        f.claimant.view.open_key_bundle(&f.claimant.keys, &foreign),
        Err(Error::BadSignature(_))
    ));
}

fn encoded_bundle_for_claimant(f: &Fixture) -> Vec<u8> {
    f.bundles
        .iter()
        .find(|b| b.unverified().room == f.claimant_room)
        .unwrap()
        .to_bytes()
}

#[test]
fn changing_any_byte_of_a_key_bundle_is_rejected() {
    let f = Fixture::new();
    let bytes = encoded_bundle_for_claimant(&f);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x80;
        let mut view = f.claimant.view.clone();
        if let Ok(b) = SignedKeyBundle::from_bytes(&bad) {
            assert!(
                view.open_key_bundle(&f.claimant.keys, &b).is_err(),
                "byte {i}"
            );
        }
    }
}

#[test]
fn changing_any_byte_of_a_roster_is_rejected() {
    let f = Fixture::new();
    let bytes = f.rosters.last().unwrap().to_bytes();
    let mut fresh = SessionView::new(f.session, f.mediator.keys.fingerprint());
    fresh
        .accept_roster(SignedRoster::from_bytes(&bytes).unwrap())
        .unwrap();
    // Sample every 7th byte plus the last 64 (the signature): a full sweep of
    // a roster with several identities is slow in debug builds.
    let positions = (0..bytes.len())
        .step_by(7)
        .chain(bytes.len() - 64..bytes.len());
    for i in positions {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let mut view = SessionView::new(f.session, f.mediator.keys.fingerprint());
        if let Ok(r) = SignedRoster::from_bytes(&bad) {
            assert!(view.accept_roster(r).is_err(), "byte {i}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn arbitrary_bytes_never_decode_into_an_accepted_roster(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let f = Fixture::new();
        let mut view = SessionView::new(f.session, f.mediator.keys.fingerprint());
        if let Ok(r) = SignedRoster::from_bytes(&bytes) {
            prop_assert!(view.accept_roster(r).is_err());
        }
    }
}

#[test]
fn party_labels_and_names_are_sealed_and_open_for_members() {
    let f = Fixture::new();
    let signed = f.rosters.last().unwrap();
    let bytes = signed.to_bytes();
    for label in ["Claimant", "Defendant trust", "Ms C", "Dr D", "Mediator"] {
        assert!(!bytes.windows(label.len()).any(|w| w == label.as_bytes()));
    }
    let roster = f.claimant.view.roster().unwrap();
    let party = roster.party(&f.defendant_party).unwrap();
    assert_eq!(
        f.claimant
            .view
            .open_label(&party.label, &party.id.0)
            .unwrap(),
        "Defendant trust"
    );
    let member = roster.member(&f.defendant.keys.fingerprint()).unwrap();
    assert_eq!(
        f.claimant
            .view
            .open_label(&member.name, &member.id().0)
            .unwrap(),
        "Dr D"
    );
}

#[test]
fn a_roster_that_skips_a_version_is_rejected() {
    let mut f = Fixture::new();
    let mut view = SessionView::new(f.session, f.mediator.keys.fingerprint());
    f.builder
        .set_phase(caucus_protocol::roster::Phase::IndividualMeetings);
    f.publish();
    // Version 2 exists but is withheld; version 1 was never seen either.
    assert_eq!(
        view.accept_roster(f.rosters[1].clone()),
        Err(Error::RosterChain)
    );
    view.accept_roster(f.rosters[0].clone()).unwrap();
    f.builder
        .set_phase(caucus_protocol::roster::Phase::Negotiation);
    f.publish();
    assert_eq!(
        view.accept_roster(f.rosters[2].clone()),
        Err(Error::RosterChain)
    );
}

#[test]
fn a_second_key_for_an_epoch_already_held_is_rejected() {
    let mut f = Fixture::new();
    let room = f.claimant_room;
    let roster = f.mediator.view.roster().unwrap().clone();
    let epoch = roster.room(&room).unwrap().epoch;
    // A mediator view that makes a different key for the same epoch.
    let mut other = SessionView::new(f.session, f.mediator.keys.fingerprint());
    for r in &f.rosters {
        other.accept_roster(r.clone()).unwrap();
    }
    let rival = caucus_protocol::keys::RoomKey::generate(room, epoch).unwrap();
    let bundle = other.seal_key_bundle(&f.mediator.keys, &rival).unwrap();
    assert_eq!(
        f.claimant
            .view
            .open_key_bundle(&f.claimant.keys, &bundle)
            .map(|_| ()),
        Err(Error::BundleMismatch("another key is held for this epoch"))
    );
}
