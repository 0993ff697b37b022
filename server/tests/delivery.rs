//! Delivery and state at the relay (protocol.md 13.5, 15.6, 15.19, 15.21,
//! 15.22): who gets what once, what a closed session still does, and what
//! admission spends.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::invite::Invite;
use caucus_protocol::roster::Role;
use caucus_protocol::wire::{Encoded, ErrorCode, Event, RequestBody, RoomCursor};
use support::{Client, Mediation, Relay};

const FAR_FUTURE: u64 = 4_000_000_000;

/// The mediator registers an invite for the session.
async fn invite(m: &mut Mediation, url: &str) -> Invite {
    let invite = Invite::new(
        url.into(),
        m.mediator.relay.fingerprint(),
        m.session,
        m.mediator.keys.fingerprint(),
        FAR_FUTURE,
    )
    .unwrap();
    m.mediator
        .ok(RequestBody::CreateInvite {
            session: m.session,
            invite: invite.id,
            token_hash: invite.admission_token().hash(),
            expires_at: FAR_FUTURE,
        })
        .await;
    invite
}

fn join(invite: &Invite, keys: &DeviceKeys) -> RequestBody {
    RequestBody::Join {
        token: invite.admission_token(),
        request: Encoded(invite.join_request(keys.public())),
    }
}

fn copy(keys: &DeviceKeys) -> DeviceKeys {
    DeviceKeys::from_secret_bytes(&keys.to_secret_bytes()).unwrap()
}

#[tokio::test]
async fn a_device_on_two_connections_sees_its_own_post_on_the_other() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    // The claimant opens a second tab.
    let mut tab = Client::connect(&relay.url(), copy(&m.claimant.keys)).await;
    tab.ok(RequestBody::Subscribe {
        session: m.session,
        roster_after: 0,
        rooms: vec![],
    })
    .await;
    tab.events.clear();
    let room = m.claimant_room;
    let index = m.post(1, room, "from the first tab").await;
    let (seen, envelope) = match tab.wait_for(|e| matches!(e, Event::Envelope { .. })).await {
        Event::Envelope {
            index, envelope, ..
        } => (index, envelope.0),
        _ => unreachable!(),
    };
    assert_eq!(seen, index);
    assert_eq!(envelope.header().sender, m.claimant.keys.fingerprint());
    // The connection that posted learnt the index from its reply, and is
    // not sent it again: the next envelope it gets is the mediator's.
    let next = m.post(0, room, "the mediator answers").await;
    match m
        .claimant
        .wait_for(|e| matches!(e, Event::Envelope { .. }))
        .await
    {
        Event::Envelope { index, .. } => assert_eq!(index, next),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_closed_session_kept_for_its_retention_refuses_subscribe_and_decline() {
    let relay = Relay::start_with(&["--retention-secs", "3600"]).await;
    let mut m = Mediation::start(&relay).await;
    let link = invite(&mut m, &relay.url()).await;
    let joiner_keys = DeviceKeys::generate().unwrap();
    let mut joiner = Client::connect(&relay.url(), copy(&joiner_keys)).await;
    joiner.ok(join(&link, &joiner_keys)).await;
    let session = m.session;
    m.mediator.ok(RequestBody::CloseSession { session }).await;
    // Kept, not erased: yet a member can no longer follow it…
    let mut late = Client::connect(&relay.url(), copy(&m.defendant.keys)).await;
    assert_eq!(
        late.refused(RequestBody::Subscribe {
            session,
            roster_after: 0,
            rooms: vec![],
        })
        .await,
        ErrorCode::SessionClosed
    );
    // …and the mediator cannot decline the joiner who waited.
    assert_eq!(
        m.mediator
            .refused(RequestBody::Decline {
                session,
                invite: link.id,
            })
            .await,
        ErrorCode::SessionClosed
    );
}

#[tokio::test]
async fn admission_spends_the_invite() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let link = invite(&mut m, &relay.url()).await;
    let joiner_keys = DeviceKeys::generate().unwrap();
    let mut joiner = Client::connect(&relay.url(), copy(&joiner_keys)).await;
    joiner.ok(join(&link, &joiner_keys)).await;
    m.mediator
        .wait_for(|e| matches!(e, Event::JoinRequest { .. }))
        .await;
    m.builder
        .add_member(
            joiner_keys.public(),
            Role::PartyMember,
            Some(m.claimant_party),
            "New member",
        )
        .unwrap();
    m.publish().await;
    // Admitted, the same identity knocks again with the same token: it is
    // told it is a member already.
    let mut again = Client::connect(&relay.url(), copy(&joiner_keys)).await;
    assert_eq!(
        again.refused(join(&link, &joiner_keys)).await,
        ErrorCode::Conflict
    );
    // No request was stored: a mediator subscribing afresh is shown none.
    let mut fresh = Client::connect(&relay.url(), copy(&m.mediator.keys)).await;
    fresh
        .ok(RequestBody::Subscribe {
            session: m.session,
            roster_after: 0,
            rooms: vec![],
        })
        .await;
    assert!(
        !fresh
            .events
            .iter()
            .any(|e| matches!(e, Event::JoinRequest { .. })),
        "a spent invite's request shown again"
    );
}

#[tokio::test]
async fn a_catch_up_that_fails_leaves_the_connection_not_following() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    let index = m.post(0, room, "to be damaged on disk").await;
    let session = m.session;
    let keys = [copy(&m.mediator.keys), copy(&m.claimant.keys)];
    drop(m);
    // The stored envelope is damaged while the relay is down.
    let dir = relay.stop().await;
    {
        let db = (0..100)
            .find_map(|_| {
                sled::open(dir.path())
                    .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(50)))
                    .ok()
            })
            .unwrap();
        let tree = db.open_tree("caucus").unwrap();
        // Where the envelope is (operations.md section 7): segment, then
        // offset, big-endian; one byte of the envelope is changed there.
        let mut key = vec![b'E'];
        key.extend_from_slice(&session.0);
        key.extend_from_slice(&room.0);
        key.extend_from_slice(&index.to_be_bytes());
        let position = tree.get(key).unwrap().unwrap();
        let segment = u64::from_be_bytes(position[..8].try_into().unwrap());
        let offset = u64::from_be_bytes(position[8..16].try_into().unwrap());
        let file = dir.path().join(format!("envelopes/{segment:016x}.log"));
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[offset as usize + 48 + 20] ^= 0x20;
        std::fs::write(&file, bytes).unwrap();
    }
    let relay = Relay::start_in(dir, &[]).await;
    let [mediator_keys, claimant_keys] = keys;
    let claimant = claimant_keys.fingerprint();
    let mut failed = Client::connect(&relay.url(), claimant_keys).await;
    assert_eq!(
        failed
            .refused(RequestBody::Subscribe {
                session,
                roster_after: 0,
                rooms: vec![],
            })
            .await,
        ErrorCode::Internal
    );
    // The mediator follows the session (past the damage), and finds the
    // claimant not online: the failed subscription was undone.
    let mut mediator = Client::connect(&relay.url(), mediator_keys).await;
    mediator
        .ok(RequestBody::Subscribe {
            session,
            roster_after: 0,
            rooms: vec![RoomCursor { room, after: index }],
        })
        .await;
    let online = match mediator
        .wait_for(|e| matches!(e, Event::Presence { .. }))
        .await
    {
        Event::Presence { online, .. } => online,
        _ => unreachable!(),
    };
    assert_eq!(online, [mediator.keys.fingerprint()]);
    assert!(!online.contains(&claimant));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_request_stored_while_a_mediator_subscribes_reaches_it_once() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    for round in 0..30 {
        let link = invite(&mut m, &relay.url()).await;
        let joiner_keys = DeviceKeys::generate().unwrap();
        let mut joiner = Client::connect(&relay.url(), copy(&joiner_keys)).await;
        let mut mediator = Client::connect(&relay.url(), copy(&m.mediator.keys)).await;
        // The knock and a mediator's subscription, sent together: the
        // request is stored while the subscription reads the store.
        let knock = serde_json::to_string(&caucus_protocol::wire::Request {
            v: 1,
            id: 1,
            body: join(&link, &joiner_keys),
        })
        .unwrap();
        let subscribe = serde_json::to_string(&caucus_protocol::wire::Request {
            v: 1,
            id: 1,
            body: RequestBody::Subscribe {
                session,
                roster_after: 0,
                rooms: vec![],
            },
        })
        .unwrap();
        tokio::join!(joiner.send_text(knock), mediator.send_text(subscribe));
        assert!(matches!(
            joiner.reply_to(1).await,
            caucus_protocol::wire::Reply::Ok { .. }
        ));
        assert!(matches!(
            mediator.reply_to(1).await,
            caucus_protocol::wire::Reply::Ok { .. }
        ));
        // The knock is answered after it is sent live; a request of the
        // mediator's is answered after whatever was queued for it before.
        mediator
            .ok(RequestBody::Location {
                session,
                room: None,
                disclose: false,
            })
            .await;
        let requests = mediator
            .events
            .iter()
            .filter(
                |e| matches!(e, Event::JoinRequest { request, .. } if request.0.invite == link.id),
            )
            .count();
        assert_eq!(
            requests, 1,
            "round {round}: the request came {requests} times"
        );
    }
}
