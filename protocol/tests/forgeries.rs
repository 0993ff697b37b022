//! Forgeries built by hand from the public encoding, with real keys: what a
//! malicious relay, or a member with a valid key, can assemble, and why each
//! is refused.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use caucus_protocol::Error;
use caucus_protocol::codec::{Canonical, Reader, Writer};
use caucus_protocol::crypto::{Signature, label};
use caucus_protocol::envelope::{Envelope, Header};
use caucus_protocol::hpke::HpkeError;
use caucus_protocol::identity::{DeviceKeys, PublicIdentity};
use caucus_protocol::keys::{KeyBundle, SignedKeyBundle};
use caucus_protocol::roster::{Role, SignedRoster};
use common::{Fixture, text};

/// Split an encoded envelope into (header bytes, ciphertext, signature).
fn parts(env: &Envelope) -> (Vec<u8>, Vec<u8>, Signature) {
    let bytes = env.to_bytes();
    Reader::decode_all(&bytes, |r| {
        Ok((
            r.bytes()?.to_vec(),
            r.bytes()?.to_vec(),
            Signature::decode(r)?,
        ))
    })
    .unwrap()
}

/// Assemble and sign an envelope from arbitrary header and ciphertext.
fn assemble(signer: &DeviceKeys, header: &Header, ciphertext: &[u8]) -> Envelope {
    let header_bytes = header.to_bytes();
    let mut body = Writer::new();
    body.bytes(&header_bytes).bytes(ciphertext);
    let sig = signer.sign(label::ENVELOPE, &body.into_bytes());
    let mut w = Writer::new();
    w.bytes(&header_bytes).bytes(ciphertext);
    sig.encode(&mut w);
    Envelope::from_bytes(&w.into_bytes()).unwrap()
}

#[test]
fn a_ciphertext_moved_to_another_room_or_epoch_does_not_open_even_if_re_signed() {
    let mut f = Fixture::new();
    let env = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("private to us"))
        .unwrap();
    let (_, ct, _) = parts(&env);
    // Moved to the joint room (which the claimant is in) by the sender itself:
    // the signature is now valid, but the key and associated data are not.
    let mut moved = env.header().clone();
    moved.room = f.joint_room;
    moved.epoch = f
        .mediator
        .view
        .roster()
        .unwrap()
        .room(&f.joint_room)
        .unwrap()
        .epoch;
    let forged = assemble(&f.claimant.keys, &moved, &ct);
    assert_eq!(f.defendant.view.open(&forged), Err(Error::DecryptFailed));
    // Moved to another party's room by a relay, which cannot re-sign.
    let mut relay_moved = env.header().clone();
    relay_moved.room = f.defendant_room;
    let (_, _, sig) = parts(&env);
    let mut w = Writer::new();
    w.bytes(&relay_moved.to_bytes()).bytes(&ct);
    sig.encode(&mut w);
    let forged = Envelope::from_bytes(&w.into_bytes()).unwrap();
    assert!(matches!(
        f.defendant.view.open(&forged),
        Err(Error::NotAMember | Error::BadSignature(_))
    ));
    assert!(f.mediator.view.open(&forged).is_err());
}

#[test]
fn an_envelope_signed_by_someone_other_than_its_named_sender_is_rejected() {
    let mut f = Fixture::new();
    let env = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &text("mine"))
        .unwrap();
    let (_, ct, _) = parts(&env);
    // The solicitor (same room, same key) claims the claimant wrote it.
    let forged = assemble(&f.solicitor.keys, env.header(), &ct);
    assert_eq!(
        f.mediator.view.open(&forged),
        Err(Error::BadSignature("envelope"))
    );
}

#[test]
fn a_member_cannot_pass_off_text_as_a_mediators() {
    // A party member holding the room key claims a mediator's class in the
    // header: the class check refuses it before decryption.
    let mut f = Fixture::new();
    let env = f
        .claimant
        .view
        .seal(
            &f.claimant.keys,
            &f.joint_room,
            &text("the mediator says..."),
        )
        .unwrap();
    let (_, ct, _) = parts(&env);
    let mut header = env.header().clone();
    header.class = caucus_protocol::content::ContentClass::Mediator;
    let forged = assemble(&f.claimant.keys, &header, &ct);
    assert_eq!(
        f.defendant.view.open(&forged),
        Err(Error::ContentTypeMismatch)
    );
}

#[test]
fn a_key_copy_moved_between_bundles_does_not_open() {
    let f = Fixture::new();
    let joint = f.joint_room;
    let claimant_room = f.claimant_room;
    let me = f.claimant.keys.fingerprint();
    let find = |room| {
        f.bundles
            .iter()
            .rev()
            .find(|b| b.unverified().room == room)
            .unwrap()
            .unverified()
            .clone()
    };
    let private = find(claimant_room);
    let mut target = find(joint);
    // Splice the claimant's copy of the private-room key into the joint
    // bundle, re-signed with the real mediator key (the strongest forger):
    // the HPKE info binds the room, so it does not open.
    let entry = private
        .entries
        .iter()
        .find(|e| e.recipient == me)
        .unwrap()
        .clone();
    target.entries.retain(|e| e.recipient != me);
    target.entries.push(entry);
    let body = target.to_bytes();
    let sig = f.mediator.keys.sign(label::KEY_BUNDLE, &body);
    let mut w = Writer::new();
    w.bytes(&body);
    sig.encode(&mut w);
    let spliced = SignedKeyBundle::from_bytes(&w.into_bytes()).unwrap();
    let mut view = f.claimant.view.clone();
    assert_eq!(
        view.open_key_bundle(&f.claimant.keys, &spliced).map(|_| ()),
        Err(Error::Hpke(HpkeError::OpenFailed))
    );
    // The same with the epoch changed: the bundle names an epoch that its
    // roster does not have.
    let mut later: KeyBundle = find(joint);
    later.epoch += 1;
    let body = later.to_bytes();
    let sig = f.mediator.keys.sign(label::KEY_BUNDLE, &body);
    let mut w = Writer::new();
    w.bytes(&body);
    sig.encode(&mut w);
    let shifted = SignedKeyBundle::from_bytes(&w.into_bytes()).unwrap();
    assert!(matches!(
        view.open_key_bundle(&f.claimant.keys, &shifted),
        Err(Error::BundleMismatch(_))
    ));
}

/// A self-signed identity whose X25519 key is `dh_key`, decoded.
fn identity_with_dh_key(
    keys: &DeviceKeys,
    dh_key: [u8; 32],
) -> Result<PublicIdentity, caucus_protocol::codec::DecodeError> {
    let sig_key = *keys.public().signing_key();
    let mut body = Writer::new();
    body.fixed(&sig_key).fixed(&dh_key);
    let sig = keys.sign(label::IDENTITY, &body.into_bytes());
    let mut w = Writer::new();
    w.fixed(&sig_key).fixed(&dh_key);
    sig.encode(&mut w);
    PublicIdentity::from_bytes(&w.into_bytes())
}

/// A member with a low-order X25519 key would get no room key (sealing to
/// it fails, HPKE's `low_order_point`); such an identity does not even
/// decode (5.2), so no roster can name it.
#[test]
fn an_identity_with_a_low_order_x25519_key_does_not_decode() {
    let evil = DeviceKeys::generate().unwrap();
    let mut one = [0u8; 32];
    one[0] = 1;
    for low_order in [[0u8; 32], one] {
        assert!(identity_with_dh_key(&evil, low_order).is_err());
    }
    assert!(identity_with_dh_key(&evil, *evil.public().dh_key().as_bytes()).is_ok());
}

#[test]
fn a_relay_cannot_add_a_member_without_the_mediators_signature() {
    let f = Fixture::new();
    let stranger = DeviceKeys::generate().unwrap();
    // Splice the stranger into the held roster's members and joint room,
    // keeping the mediator's signature.
    let mut roster = f.mediator.view.roster().unwrap().clone();
    roster.version += 1;
    roster.previous = f.rosters.last().unwrap().hash();
    let good = roster.clone();
    roster.members.push(caucus_protocol::roster::Member {
        identity: stranger.public().clone(),
        role: Role::PartyMember,
        party: Some(f.claimant_party),
        name: roster.members[0].name.clone(),
    });
    // In the claimant's private room and the joint room, as a member of a
    // party must be (7.4): well formed, so the signature is what fails.
    for room in &mut roster.rooms {
        if room.id == f.claimant_room || room.id == f.joint_room {
            room.members.push(stranger.fingerprint());
            room.members.sort();
        }
    }
    let mediator_sig = SignedRoster::sign_roster(good, &f.mediator.keys).unwrap();
    let (_, sig) = Reader::decode_all(&mediator_sig.to_bytes(), |r| {
        Ok((r.bytes()?.to_vec(), Signature::decode(r)?))
    })
    .unwrap();
    let mut w = Writer::new();
    w.bytes(&roster.to_bytes());
    sig.encode(&mut w);
    let forged = SignedRoster::from_bytes(&w.into_bytes()).unwrap();
    let mut view = f.claimant.view.clone();
    assert_eq!(
        view.accept_roster(forged),
        Err(Error::BadSignature("roster"))
    );
}
