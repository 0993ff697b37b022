//! The relay keeps the clients' rules (protocol.md 13.5, through
//! `caucus_protocol::relay`): it stores nothing every client would refuse.
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, Sharing};
use caucus_protocol::envelope::{Envelope, MAX_CIPHERTEXT_LEN};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::roster::SignedRoster;
use caucus_protocol::wire::{Encoded, ErrorCode, Reply, RequestBody};
use support::{Mediation, Relay};

fn text(body: &str) -> Content {
    Content::Text {
        sharing: Sharing::MayShare,
        body: body.into(),
    }
}

fn claimant_keys(m: &Mediation) -> DeviceKeys {
    DeviceKeys::from_secret_bytes(&m.claimant.keys.to_secret_bytes()).unwrap()
}

#[tokio::test]
async fn the_same_envelope_posted_twice_is_stored_once_and_another_at_its_seq_is_a_fork() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    let keys = claimant_keys(&m);
    let envelope = m.views[1].seal(&keys, &room, &text("once")).unwrap();
    let post = |e: &Envelope| RequestBody::Post {
        envelope: Encoded(e.clone()),
    };
    let first = m.claimant.ok(post(&envelope)).await.unwrap();
    // Sent again (its reply was lost, say): the same index, stored once.
    let again = m.claimant.ok(post(&envelope)).await.unwrap();
    assert_eq!(first, again);
    // A copy of the claimant's view, made before its next message.
    let mut fork = m.views[1].clone();
    let next = m.views[1].seal(&keys, &room, &text("twice")).unwrap();
    assert_eq!(m.claimant.ok(post(&next)).await.unwrap(), first + 1);
    // Another envelope at a sequence number already held: a fork.
    let replacement = fork.seal(&keys, &room, &text("something else")).unwrap();
    assert_eq!(replacement.header().seq, next.header().seq);
    assert_eq!(
        m.claimant.refused(post(&replacement)).await,
        ErrorCode::Conflict
    );
}

#[tokio::test]
async fn a_ciphertext_over_the_content_limit_is_refused() {
    let relay = Relay::start_with(&["--max-frame-bytes", "2000000"]).await;
    let mut m = Mediation::start(&relay).await;
    let keys = claimant_keys(&m);
    let envelope = m.views[1]
        .seal(&keys, &m.claimant_room, &text("small"))
        .unwrap();
    // Re-encode it with a ciphertext one byte over the limit.
    let bytes = envelope.to_bytes();
    let header_len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    let mut big = bytes[..4 + header_len].to_vec();
    big.extend_from_slice(&u32::try_from(MAX_CIPHERTEXT_LEN + 1).unwrap().to_be_bytes());
    big.extend(std::iter::repeat_n(7u8, MAX_CIPHERTEXT_LEN + 1));
    big.extend_from_slice(&[0; 64]);
    let big = Envelope::from_bytes(&big).unwrap();
    assert_eq!(
        m.claimant
            .refused(RequestBody::Post {
                envelope: Encoded(big),
            })
            .await,
        ErrorCode::TooLarge
    );
}

#[tokio::test]
async fn a_roster_whose_chain_heads_are_behind_the_relay_is_refused_until_the_mediator_catches_up()
{
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    let keys = claimant_keys(&m);
    // The claimant posts; the mediator has not seen it when it removes the
    // solicitor (a new epoch of the claimant's room).
    let unseen = m.views[1].seal(&keys, &room, &text("unseen")).unwrap();
    m.claimant
        .ok(RequestBody::Post {
            envelope: Encoded(unseen.clone()),
        })
        .await;
    let solicitor = m.solicitor.keys.fingerprint();
    m.builder.remove_member(&solicitor).unwrap();
    let mut behind = m.builder.sign(&m.mediator.keys, &m.views[0]).unwrap().0;
    assert_eq!(
        m.mediator
            .refused(RequestBody::PublishRoster {
                roster: Encoded(behind.clone()),
            })
            .await,
        ErrorCode::Conflict
    );
    // Caught up, the mediator signs again and the relay takes it.
    m.views[0].open(&unseen).unwrap();
    let mut builder = caucus_protocol::builder::RosterBuilder::resume(&m.views[0]).unwrap();
    builder.remove_member(&solicitor).unwrap();
    behind = builder.sign(&m.mediator.keys, &m.views[0]).unwrap().0;
    m.mediator
        .ok(RequestBody::PublishRoster {
            roster: Encoded(behind),
        })
        .await;
}

#[tokio::test]
async fn a_roster_every_client_would_refuse_is_not_stored() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    // A room's epoch going back, signed by the real mediator.
    let mut roster = m.views[0].roster().unwrap().clone();
    roster.version += 1;
    roster.previous = m.views[0].signed_roster().unwrap().hash();
    roster.heads.clear();
    for room in &mut roster.rooms {
        if room.id == m.claimant_room {
            room.epoch -= 1;
        }
    }
    let signed = SignedRoster::sign_roster(roster, &m.mediator.keys).unwrap();
    assert!(m.views[1].clone().accept_roster(signed.clone()).is_err());
    match m
        .mediator
        .request(RequestBody::PublishRoster {
            roster: Encoded(signed),
        })
        .await
    {
        Reply::Error { code, .. } => assert_eq!(code, ErrorCode::Invalid),
        other => panic!("stored a roster clients refuse: {other:?}"),
    }
    // The held roster is still the newest: the very one again is no error.
    let held = m.views[0].signed_roster().unwrap().clone();
    m.mediator
        .ok(RequestBody::PublishRoster {
            roster: Encoded(held),
        })
        .await;
}
