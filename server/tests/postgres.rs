//! The relay on the PostgreSQL store (`--store postgres://…`): what it
//! acknowledges is in the database for the next relay, and a write the
//! database refuses, or cannot take, is refused `unavailable` and stored
//! once it can be.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use caucus_protocol::content::{Content, Sharing};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{RoomId, SessionId};
use caucus_protocol::wire::{Encoded, ErrorCode, Event, Reply, RequestBody, RoomCursor};
use caucus_server::CLOSE_MOVED;
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

/// Seal `body` as participant `i` of `m` in `room`: a post request.
fn post(m: &mut Mediation, i: usize, room: RoomId, body: &str) -> RequestBody {
    let keys = copy(&m.client(i).keys);
    let content = Content::Text {
        sharing: Sharing::MayShare,
        body: body.into(),
    };
    RequestBody::Post {
        envelope: Encoded(m.views[i].seal(&keys, &room, &content).unwrap()),
    }
}

/// What PostgreSQL cannot store is refused `unavailable`, never
/// acknowledged; the relay lets go of the session (its followers are
/// closed with 1012, to resume) and takes writes again as soon as the
/// database does, its indexes without a gap.
async fn refused_then_resumed(break_it: &str, mend_it: &str) {
    let store = caucus_testkit::Postgres::shared().database();
    let relay = Relay::start_with(&["--store", store.as_str()]).await;
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    assert_eq!(m.post(1, room, "kept").await, 1);

    let (db, connection) = tokio_postgres::connect(&store, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    db.batch_execute(break_it).await.unwrap();
    let refused = post(&mut m, 1, room, "refused");
    assert_eq!(
        m.claimant.refused(refused.clone()).await,
        ErrorCode::Unavailable
    );
    // Every follower of the session is told to resume.
    assert_eq!(support::close_code(&mut m.mediator.ws).await, CLOSE_MOVED);
    if !mend_it.is_empty() {
        db.batch_execute(mend_it).await.unwrap();
    }

    // The same post, sent again, is stored next, once the store is back.
    let mut claimant = Client::connect(&relay.url(), copy(&m.claimant.keys)).await;
    let mut index = None;
    for _ in 0..50 {
        match claimant.request(refused.clone()).await {
            Reply::Ok { index: i, .. } => {
                index = i;
                break;
            }
            Reply::Error { code, .. } => {
                assert_eq!(code, ErrorCode::Unavailable);
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
    assert_eq!(index, Some(2));
    let (session, mediator) = (m.session, copy(&m.mediator.keys));
    assert_eq!(stored(&relay.url(), mediator, session, room).await, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_postgres_refuses_is_refused_unavailable_and_written_once_it_is_taken() {
    refused_then_resumed(
        "ALTER TABLE envelopes ADD CONSTRAINT refuse CHECK (idx < 0) NOT VALID",
        "ALTER TABLE envelopes DROP CONSTRAINT refuse",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_loses_its_database_connections_refuses_then_connects_again() {
    refused_then_resumed(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
        "",
    )
    .await;
}

/// The same mediation, closed on sled and on PostgreSQL: each relay erases
/// everything and signs a statement that counts the same records and the
/// same bytes, and nothing of the session is left in PostgreSQL's tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_on_postgres_erases_everything_and_counts_as_sled_does() {
    let store = caucus_testkit::Postgres::shared().database();
    let mut erased = Vec::new();
    for flags in [vec![], vec!["--store", store.as_str()]] {
        let relay = Relay::start_with(&flags).await;
        let mut m = Mediation::start(&relay).await;
        for (i, text) in [(1, "one"), (2, "two"), (3, "three")] {
            let room = if i == 3 {
                m.defendant_room
            } else {
                m.claimant_room
            };
            m.post(i, room, text).await;
        }
        let session = m.session;
        let reply = m
            .mediator
            .request(RequestBody::CloseSession { session })
            .await;
        let Reply::Ok {
            statement: Some(statement),
            ..
        } = reply
        else {
            panic!("no deletion statement in {reply:?}");
        };
        let statement = statement
            .0
            .verify_for(
                &session,
                &m.mediator.keys.fingerprint(),
                &m.mediator.relay.fingerprint(),
            )
            .unwrap()
            .clone();
        assert_eq!(statement.erased.envelopes, 3);
        erased.push(statement.erased);
    }
    assert_eq!(erased[0], erased[1]);
    let (db, connection) = tokio_postgres::connect(&store, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for table in [
        "sessions",
        "rosters",
        "bundles",
        "envelopes",
        "invites",
        "waiting",
        "presence",
        "documents",
        "chunks",
    ] {
        let row = db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 0, "{table} still holds records");
    }
    let row = db
        .query_one("SELECT count(*) FROM deletions", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}
