//! The relay on the PostgreSQL store (`--store postgres://…`): what it
//! acknowledges is in the database for the next relay, and a write the
//! database refuses stops the relay without storing any of it.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use std::process::Stdio;

use caucus_protocol::content::{Content, Sharing};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{RoomId, SessionId};
use caucus_protocol::wire::{Encoded, Event, RequestBody, RoomCursor};
use support::{Client, Mediation, Relay};

fn copy(keys: &DeviceKeys) -> DeviceKeys {
    DeviceKeys::from_secret_bytes(&keys.to_secret_bytes()).unwrap()
}

/// The indexes of `room`'s envelopes that `keys` (the mediator) is sent on
/// subscribing to `session` at the relay at `url`.
async fn stored(url: &str, keys: DeviceKeys, session: SessionId, room: RoomId) -> Vec<u64> {
    let mut mediator = Client::connect(url, keys).await;
    mediator
        .ok(RequestBody::Subscribe {
            session,
            roster_after: 0,
            rooms: vec![RoomCursor { room, after: 0 }],
        })
        .await;
    let mut indexes = Vec::new();
    while let Some(event) = mediator
        .quiet_for(std::time::Duration::from_millis(500))
        .await
    {
        if let Event::Envelope {
            index, envelope, ..
        } = event
            && envelope.0.header().room == room
        {
            indexes.push(index);
        }
    }
    indexes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_on_postgres_serves_what_an_earlier_one_stored() {
    let store = caucus_testkit::Postgres::shared().database();
    let flags = ["--store", store.as_str()];
    let relay = Relay::start_with(&flags).await;
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    assert_eq!(m.post(1, room, "one").await, 1);
    assert_eq!(m.post(2, room, "two").await, 2);
    let (session, mediator) = (m.session, copy(&m.mediator.keys));
    drop(m);
    let relay = Relay::start_in(relay.stop().await, &flags).await;
    assert_eq!(stored(&relay.url(), mediator, session, room).await, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_postgres_refuses_stops_the_relay_and_none_of_it_is_stored() {
    let store = caucus_testkit::Postgres::shared().database();
    let flags = ["--store", store.as_str()];
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = support::spawn_binary_with(dir.path(), "error", Stdio::null(), &flags);
    let relay = Relay::external(&url, dir);
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    assert_eq!(m.post(1, room, "kept").await, 1);

    // From now on PostgreSQL refuses every envelope.
    let (db, connection) = tokio_postgres::connect(&store, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let refuse = "ALTER TABLE envelopes ADD CONSTRAINT refuse CHECK (idx < 0) NOT VALID";
    db.batch_execute(refuse).await.unwrap();
    let keys = copy(&m.claimant.keys);
    let content = Content::Text {
        sharing: Sharing::MayShare,
        body: "refused".into(),
    };
    let envelope = m.views[1].seal(&keys, &room, &content).unwrap();
    // Told `internal`, or cut off as the relay exits; never acknowledged.
    let post = RequestBody::Post {
        envelope: Encoded(envelope),
    };
    let frame = serde_json::to_string(&caucus_protocol::wire::Request {
        v: 1,
        id: 99,
        body: post,
    })
    .unwrap();
    m.claimant.send_text(frame).await;
    let mut status = None;
    for _ in 0..100 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let Some(status) = status else {
        child.kill().unwrap();
        panic!("the relay went on after PostgreSQL refused a write");
    };
    assert_eq!(status.code(), Some(75), "{status:?}");

    // Started again once PostgreSQL takes envelopes: only the first post.
    db.batch_execute("ALTER TABLE envelopes DROP CONSTRAINT refuse")
        .await
        .unwrap();
    let (session, mediator) = (m.session, copy(&m.mediator.keys));
    drop(m);
    let relay = Relay::start_in(relay.into_dir(), &flags).await;
    assert_eq!(stored(&relay.url(), mediator, session, room).await, [1]);
}
