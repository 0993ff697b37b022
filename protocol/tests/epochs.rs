//! Epochs end with chain heads (protocol.md 7.4, 7.6, 10.6): what a member
//! seals under an old epoch's key after it ended is refused, whoever
//! delivers it; a withdrawn party leaves the joint room; a joiner follows
//! each chain from its first epoch; roles are judged at the envelope's epoch.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use caucus_protocol::Error;
use caucus_protocol::content::{Content, Step};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::roster::{Phase, Role, SignedRoster};
use caucus_protocol::session::SessionView;
use common::{Fixture, Person, text};

fn open_all(person: &mut Person, envelopes: &[caucus_protocol::envelope::Envelope]) {
    for e in envelopes {
        person.view.open(e).unwrap();
    }
}

#[test]
fn a_removed_member_cannot_seal_under_the_old_epoch_however_it_is_delivered() {
    let mut f = Fixture::new();
    let room = f.claimant_room;
    // Two messages before the removal, which the mediator has seen.
    let before: Vec<_> = (0..2)
        .map(|i| {
            f.solicitor
                .view
                .seal(&f.solicitor.keys, &room, &text(&format!("m{i}")))
                .unwrap()
        })
        .collect();
    open_all(&mut f.mediator, &before);
    // The solicitor is removed, but keeps the old epoch's key and chain and
    // seals on under them.
    let mut kept = f.solicitor.view.clone();
    f.builder
        .remove_member(&f.solicitor.keys.fingerprint())
        .unwrap();
    let (removal, _) = f.publish();
    let head = removal
        .unverified()
        .heads
        .iter()
        .find(|h| h.room == room && h.member == f.solicitor.keys.fingerprint())
        .copied()
        .unwrap();
    assert_eq!((head.seq, head.hash), (2, before[1].hash()));
    let after = kept
        .seal(&f.solicitor.keys, &room, &text("sealed after removal"))
        .unwrap();
    // The claimant, who missed none of this, refuses it but not what came
    // before; the mediator too.
    open_all(&mut f.claimant, &before);
    assert_eq!(
        f.claimant.view.open(&after),
        Err(Error::AfterEpochEnded { seq: 3 })
    );
    assert_eq!(
        f.mediator.view.open(&after),
        Err(Error::AfterEpochEnded { seq: 3 })
    );
}

#[test]
fn a_message_the_relay_delivers_late_but_the_mediator_saw_is_still_accepted() {
    let mut f = Fixture::new();
    let room = f.joint_room;
    let early = f
        .defendant
        .view
        .seal(&f.defendant.keys, &room, &text("said before"))
        .unwrap();
    f.mediator.view.open(&early).unwrap();
    f.builder
        .remove_member(&f.defendant.keys.fingerprint())
        .unwrap();
    f.publish();
    // The claimant receives it only after the roster that ended its epoch.
    assert!(f.claimant.view.open(&early).is_ok());
}

#[test]
fn a_withdrawn_party_leaves_the_joint_room_and_cannot_post_or_read_there() {
    let mut f = Fixture::new();
    let joint = f.joint_room;
    let claimant = f.claimant.keys.fingerprint();
    f.builder.set_withdrawn(&f.claimant_party, true).unwrap();
    let (roster, _) = f.publish();
    let r = roster.unverified();
    assert!(!r.joint_room().unwrap().has(&claimant));
    assert!(r.private_room(&f.claimant_party).unwrap().has(&claimant));
    // New joint-room messages are under a key the claimant does not hold.
    let news = f
        .defendant
        .view
        .seal(&f.defendant.keys, &joint, &text("after the withdrawal"))
        .unwrap();
    assert!(matches!(
        f.claimant.view.open(&news),
        Err(Error::MissingRoomKey { .. })
    ));
    assert_eq!(
        f.claimant
            .view
            .seal(&f.claimant.keys, &joint, &text("still here?")),
        Err(Error::NotAMember)
    );
    // What the claimant seals with the old joint key is refused by all.
    let mut stale = SessionView::new(f.session, f.mediator.keys.fingerprint());
    for r in &f.rosters[..f.rosters.len() - 1] {
        stale.accept_roster(r.clone()).unwrap();
    }
    for b in &f.bundles {
        let _ = stale.open_key_bundle(&f.claimant.keys, b);
    }
    let smuggled = stale
        .seal(&f.claimant.keys, &joint, &text("as if before"))
        .unwrap();
    assert_eq!(
        f.defendant.view.open(&smuggled),
        Err(Error::AfterEpochEnded { seq: 1 })
    );
    // Readmitted, they are back in the joint room at a new epoch.
    f.builder.set_withdrawn(&f.claimant_party, false).unwrap();
    let (back, _) = f.publish();
    assert!(back.unverified().joint_room().unwrap().has(&claimant));
}

#[test]
fn closing_a_room_starts_an_epoch_and_ends_party_posts_under_the_old_one() {
    let mut f = Fixture::new();
    let joint = f.joint_room;
    let mut stale = SessionView::new(f.session, f.mediator.keys.fingerprint());
    for r in &f.rosters {
        stale.accept_roster(r.clone()).unwrap();
    }
    for b in &f.bundles {
        let _ = stale.open_key_bundle(&f.defendant.keys, b);
    }
    f.builder.set_open(&joint, false).unwrap();
    let (closed, keys) = f.publish();
    assert_eq!(keys.len(), 1, "the joint room alone starts a new epoch");
    assert!(!closed.unverified().joint_room().unwrap().open);
    let late = stale
        .seal(&f.defendant.keys, &joint, &text("posted after the close"))
        .unwrap();
    assert_eq!(
        f.claimant.view.open(&late),
        Err(Error::AfterEpochEnded { seq: 1 })
    );
}

#[test]
fn a_joiner_follows_each_chain_from_its_first_epoch_without_a_gap() {
    let mut f = Fixture::new();
    let joint = f.joint_room;
    let before: Vec<_> = (0..3)
        .map(|i| {
            f.defendant
                .view
                .seal(&f.defendant.keys, &joint, &text(&format!("{i}")))
                .unwrap()
        })
        .collect();
    open_all(&mut f.mediator, &before);
    let joiner = DeviceKeys::generate().unwrap();
    f.builder
        .add_member(
            joiner.public(),
            Role::PartyMember,
            Some(f.claimant_party),
            "J",
        )
        .unwrap();
    f.publish();
    let mut view = SessionView::new(f.session, f.mediator.keys.fingerprint());
    for r in &f.rosters {
        view.accept_roster(r.clone()).unwrap();
    }
    for b in &f.bundles {
        let _ = view.open_key_bundle(&joiner, b);
    }
    let next = f
        .defendant
        .view
        .seal(&f.defendant.keys, &joint, &text("welcome"))
        .unwrap();
    let opened = view.open(&next).unwrap();
    assert_eq!(opened.header.seq, 4);
    assert_eq!(opened.gap, None, "nothing the joiner was owed is missing");
}

#[test]
fn an_envelope_is_judged_by_its_senders_role_at_its_epoch() {
    let mut f = Fixture::new();
    let room = f.claimant_room;
    // The claimant agrees to continue, as a party may.
    let agree = f
        .claimant
        .view
        .seal(
            &f.claimant.keys,
            &room,
            &Content::Agree {
                step: Step::Continue,
            },
        )
        .unwrap();
    f.mediator.view.open(&agree).unwrap();
    // Later the same device becomes a co-mediator (removed, then re-added).
    let identity = f.claimant.keys.public().clone();
    f.builder.remove_member(&identity.fingerprint()).unwrap();
    f.publish();
    f.builder
        .add_member(&identity, Role::CoMediator, None, "Now co-mediating")
        .unwrap();
    f.publish();
    // The solicitor, receiving the old message only now, judges it by the
    // claimant's role when it was sealed.
    assert!(f.solicitor.view.open(&agree).is_ok());
}

/// Sign `roster` as the next version after `f`'s newest, by the real mediator.
fn resign(f: &Fixture, mut roster: caucus_protocol::roster::Roster) -> SignedRoster {
    roster.version += 1;
    roster.previous = f.rosters.last().unwrap().hash();
    roster.heads.clear();
    SignedRoster::sign_roster(roster, &f.mediator.keys).unwrap()
}

#[test]
fn a_successor_that_breaks_the_rules_between_rosters_is_refused() {
    let f = Fixture::new();
    let current = f.mediator.view.roster().unwrap().clone();
    let mut claimant = SessionView::new(f.session, f.mediator.keys.fingerprint());
    for r in &f.rosters {
        claimant.accept_roster(r.clone()).unwrap();
    }

    // Opening or closing a room without a new epoch.
    let mut flipped = current.clone();
    for room in &mut flipped.rooms {
        room.open = !room.open;
    }
    assert!(matches!(
        claimant.accept_roster(resign(&f, flipped)),
        Err(Error::InvalidRoster(_))
    ));

    // Going back a phase; anything after Closed.
    let mut ahead = current.clone();
    ahead.phase = Phase::Closed;
    let ahead = resign(&f, ahead);
    let mut back = current.clone();
    back.phase = Phase::Preparation;
    let mut later = claimant.clone();
    if current.phase > Phase::Preparation {
        assert!(matches!(
            later.accept_roster(resign(&f, back)),
            Err(Error::InvalidRoster(_))
        ));
    }
    later.accept_roster(ahead.clone()).unwrap();
    let mut after_close = ahead.unverified().clone();
    after_close.version += 1;
    after_close.previous = ahead.hash();
    let after_close = SignedRoster::sign_roster(after_close, &f.mediator.keys).unwrap();
    assert_eq!(
        later.accept_roster(after_close),
        Err(Error::InvalidRoster(
            "nothing follows a closed session's roster"
        ))
    );

    // A chain head for a room whose epoch goes on.
    let mut bogus = current.clone();
    bogus.heads.push(caucus_protocol::roster::ChainHead {
        room: f.claimant_room,
        member: f.claimant.keys.fingerprint(),
        seq: 9,
        hash: caucus_protocol::crypto::Digest::ZERO,
    });
    let mut signed = bogus;
    signed.version += 1;
    signed.previous = f.rosters.last().unwrap().hash();
    let signed = SignedRoster::sign_roster(signed, &f.mediator.keys).unwrap();
    assert_eq!(
        claimant.accept_roster(signed),
        Err(Error::InvalidRoster(
            "a chain head for a room whose epoch did not end"
        ))
    );
}

#[test]
fn a_roster_keeps_withdrawn_parties_out_of_the_joint_room() {
    let f = Fixture::new();
    let mut roster = f.mediator.view.roster().unwrap().clone();
    roster.version += 1;
    roster.previous = f.rosters.last().unwrap().hash();
    for p in &mut roster.parties {
        if p.id == f.claimant_party {
            p.withdrawn = true;
        }
    }
    assert!(matches!(
        SignedRoster::sign_roster(roster, &f.mediator.keys),
        Err(Error::InvalidRoster(_))
    ));
}
