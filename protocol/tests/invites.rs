//! Invite links, admission tokens and join proofs.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use caucus_protocol::Error;
use caucus_protocol::codec::Canonical;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::SessionId;
use caucus_protocol::invite::{Invite, JoinRequest};

const NOW: u64 = 1_900_000_000;

fn invite() -> (DeviceKeys, Invite) {
    let mediator = DeviceKeys::generate().unwrap();
    let invite = Invite::new(
        "wss://relay.example:7300".into(),
        DeviceKeys::generate().unwrap().fingerprint(),
        SessionId::random().unwrap(),
        mediator.fingerprint(),
        NOW + 3600,
    )
    .unwrap();
    (mediator, invite)
}

#[test]
fn a_link_round_trips_and_pins_the_mediator() {
    let (mediator, invite) = invite();
    let link = invite.to_link();
    assert!(link.starts_with("caucus:invite:v1:"));
    let parsed = Invite::from_link(&link).unwrap();
    assert_eq!(parsed, invite);
    assert_eq!(parsed.mediator, mediator.fingerprint());
    assert_eq!(parsed.admission_token(), invite.admission_token());
}

#[test]
fn malformed_links_are_rejected_with_a_reason() {
    let (_, invite) = invite();
    let link = invite.to_link();
    for bad in [
        "",
        "https://example.com",
        "caucus:invite:v1:***",
        "caucus:invite:v2:AAAA",
        &link[..link.len() - 4],
        &format!("{link}AA"),
    ] {
        assert!(
            matches!(
                Invite::from_link(bad),
                Err(Error::InvalidInvite(_) | Error::Decode(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_valid_join_proof_verifies_once_for_its_identity() {
    let (_, invite) = invite();
    let joiner = DeviceKeys::generate().unwrap();
    let received = Invite::from_link(&invite.to_link()).unwrap();
    let request = received.join_request(joiner.public());
    assert_eq!(invite.verify_join(&request, NOW), Ok(()));
    // It survives the wire.
    let again = JoinRequest::from_bytes(&request.to_bytes()).unwrap();
    assert_eq!(invite.verify_join(&again, NOW), Ok(()));
}

#[test]
fn a_relay_cannot_substitute_the_joiners_key() {
    let (_, invite) = invite();
    let joiner = DeviceKeys::generate().unwrap();
    let relay_key = DeviceKeys::generate().unwrap();
    let mut request = invite.join_request(joiner.public());
    // The relay knows the admission token, never the secret: it swaps in
    // its own identity and keeps the proof, or makes a proof from the token.
    request.identity = relay_key.public().clone();
    assert_eq!(invite.verify_join(&request, NOW), Err(Error::BadJoinProof));
    request.proof = invite.admission_token().0;
    assert_eq!(invite.verify_join(&request, NOW), Err(Error::BadJoinProof));
}

#[test]
fn changing_any_byte_of_a_join_proof_is_rejected() {
    let (_, invite) = invite();
    let joiner = DeviceKeys::generate().unwrap();
    let request = invite.join_request(joiner.public());
    for i in 0..32 {
        let mut bad = request.clone();
        bad.proof[i] ^= 1;
        assert_eq!(invite.verify_join(&bad, NOW), Err(Error::BadJoinProof));
    }
}

#[test]
fn a_proof_for_another_invite_or_after_expiry_is_rejected() {
    let (_, first) = invite();
    let (_, second) = invite();
    let joiner = DeviceKeys::generate().unwrap();
    let request = first.join_request(joiner.public());
    assert_eq!(second.verify_join(&request, NOW), Err(Error::BadJoinProof));
    assert_eq!(
        first.verify_join(&request, NOW + 3601),
        Err(Error::InviteExpired)
    );
}

#[test]
fn the_relay_sees_only_a_hash_of_a_token_that_is_not_the_secret() {
    let (_, invite) = invite();
    let link = invite.to_link();
    let token = invite.admission_token();
    let hash = token.hash();
    assert_ne!(token.0, hash.0);
    let link_bytes =
        caucus_protocol::b64::decode(link.trim_start_matches("caucus:invite:v1:")).unwrap();
    // Neither the token nor its hash appears in the link: both are one-way
    // derivations of the secret.
    assert!(!link_bytes.windows(32).any(|w| w == token.0 || w == hash.0));
    assert!(
        !format!("{invite:?}").contains(&caucus_protocol::b64::encode(
            &link_bytes[link_bytes.len() - 72..link_bytes.len() - 40]
        ))
    );
}
