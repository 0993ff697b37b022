//! The store's promises, checked on each engine: writes stand or fall
//! together and apply in order, follow-ups run in commit order once durable,
//! and every read returns what was written, in key order.

use std::sync::{Arc, Mutex};

use caucus_protocol::ids::{FileId, InviteId, RoomId, SessionId};

use super::*;

/// Commits queued together, of one write and of several, must leave what
/// applying them one after another gives, and their follow-ups must run in
/// commit order, after they are durable.
pub(super) async fn a_group_of_commits_applies_in_order(store: &Store) {
    let s = SessionId([1; 16]);
    let (a, b, c) = (Key::Roster(s, 1), Key::Roster(s, 2), Key::Roster(s, 3));
    let ran = Arc::new(Mutex::new(Vec::new()));
    type Write = (Key, Option<&'static [u8]>);
    let writes: [Vec<Write>; 4] = [
        vec![(a.clone(), Some(b"1")), (b.clone(), Some(b"1"))],
        vec![(a.clone(), None)],
        vec![(b.clone(), Some(b"2")), (c.clone(), Some(b"1"))],
        vec![(c.clone(), None), (c.clone(), Some(b"3"))],
    ];
    for (n, commit) in writes.into_iter().enumerate() {
        let mut batch = Batch::default();
        for (key, value) in commit {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        let ran = ran.clone();
        store
            .submit(Commit {
                batch,
                then: Box::new(move |r| ran.lock().unwrap().push((n, r.is_ok()))),
            })
            .unwrap();
    }
    store.commit(Batch::default()).await.unwrap();
    assert_eq!(
        *ran.lock().unwrap(),
        (0..4).map(|n| (n, true)).collect::<Vec<_>>()
    );
    assert_eq!(store.get(&a).await.unwrap(), None);
    assert_eq!(store.get(&b).await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.get(&c).await.unwrap(), Some(b"3".to_vec()));
}

/// Each read returns the records it names and only those, in key order;
/// the sizes erasure counts are the same on every engine.
pub(super) async fn reads_return_what_was_written_in_key_order(store: &Store) {
    let (s, other) = (SessionId([2; 16]), SessionId([3; 16]));
    let (r1, r2) = (RoomId([1; 16]), RoomId([2; 16]));
    let file = FileId([9; 16]);
    let mut batch = Batch::default();
    batch.insert(Key::Session(s), b"{}".to_vec());
    batch.insert(Key::Session(other), b"{}".to_vec());
    for index in [3u64, 1, 2, 256] {
        batch.insert(Key::Log(s, r2, index), format!("r2-{index}"));
        batch.insert(Key::Log(s, r1, index), format!("r1-{index}"));
    }
    batch.insert(Key::Log(other, r1, 1), b"other".to_vec());
    batch.insert(Key::Invite(s, InviteId([5; 16])), b"invite".to_vec());
    batch.insert(Key::Waiting(s, InviteId([5; 16])), b"waiting".to_vec());
    batch.insert(Key::Bundle(s, 0), b"bundle".to_vec());
    batch.insert(Key::Presence(s), b"presence".to_vec());
    batch.insert(Key::Document(s, file), b"document".to_vec());
    batch.insert(Key::Chunk(s, file, 1), vec![1; 70_000]);
    batch.insert(Key::Chunk(s, file, 0), vec![0; 70_000]);
    batch.insert(Key::Deleted(other), b"statement".to_vec());
    store.commit(batch).await.unwrap();

    let log = store.log(&s, &r1, 2, 256, 10).await.unwrap();
    let indexes: Vec<u64> = log.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, [2, 3, 256]);
    assert_eq!(log[0].1.as_deref().unwrap(), b"r1-2");
    assert_eq!(store.log(&s, &r1, 1, u64::MAX, 2).await.unwrap().len(), 2);
    assert!(
        store
            .log(&s, &r1, 257, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let rooms: Vec<Key> = store
        .records(Kind::Log, &s)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut expected = Vec::new();
    for room in [r1, r2] {
        for index in [1, 2, 3, 256] {
            expected.push(Key::Log(s, room, index));
        }
    }
    assert_eq!(rooms, expected);
    let chunks = store.records(Kind::Chunk, &s).await.unwrap();
    assert_eq!(
        chunks
            .iter()
            .map(|(k, v)| (k.clone(), v[0]))
            .collect::<Vec<_>>(),
        [(Key::Chunk(s, file, 0), 0), (Key::Chunk(s, file, 1), 1)]
    );

    let mut sessions: Vec<Key> = store
        .all(Kind::Session)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    sessions.sort_by_key(|k| k.session().0);
    assert_eq!(sessions, [Key::Session(s), Key::Session(other)]);
    assert_eq!(
        store.all(Kind::Deleted).await.unwrap(),
        [(Key::Deleted(other), b"statement".to_vec())]
    );

    let records = store.session_records(&s).await.unwrap();
    // 1 session, 8 envelopes, 1 each of invite, waiting, bundle, presence,
    // document, and 2 chunks; nothing of the other session.
    assert_eq!(records.len(), 16);
    assert!(records.iter().all(|(k, _)| k.session() == &s));
    let bytes: u64 = records.iter().map(|(_, size)| size).sum();
    let keys: u64 = records.iter().map(|(k, _)| k.len()).sum();
    // "{}", the eight envelopes' "rN-I", the invite, waiting request,
    // bundle, presence, document and the two chunks.
    let values = 2 + 2 * (3 * 4 + 6) + 6 + 7 + 6 + 8 + 8 + 2 * 70_000;
    assert_eq!(bytes, keys + values);
}

/// Within one batch, a later write to a key replaces an earlier one.
pub(super) async fn a_batch_writing_one_key_twice_keeps_the_last(store: &Store) {
    let s = SessionId([4; 16]);
    let (twice, removed, back) = (Key::Session(s), Key::Presence(s), Key::Roster(s, 7));
    let mut batch = Batch::default();
    batch.insert(twice.clone(), b"first".to_vec());
    batch.insert(removed.clone(), b"gone".to_vec());
    batch.insert(twice.clone(), b"second".to_vec());
    batch.remove(removed.clone());
    batch.remove(back.clone());
    batch.insert(back.clone(), b"back".to_vec());
    store.commit(batch).await.unwrap();
    assert_eq!(store.get(&twice).await.unwrap(), Some(b"second".to_vec()));
    assert_eq!(store.get(&removed).await.unwrap(), None);
    assert_eq!(store.get(&back).await.unwrap(), Some(b"back".to_vec()));
}

/// A value of more than a MiB comes back byte for byte.
pub(super) async fn a_large_value_round_trips(store: &Store) {
    let key = Key::Chunk(SessionId([5; 16]), FileId([1; 16]), 0);
    let value: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let mut batch = Batch::default();
    batch.insert(key.clone(), value.clone());
    store.commit(batch).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(value));
}

/// Indexes sort as numbers (as sled's big-endian bytes do), across byte
/// boundaries.
pub(super) async fn indexes_sort_as_numbers(store: &Store) {
    let (s, room, file) = (SessionId([6; 16]), RoomId([1; 16]), FileId([2; 16]));
    let indexes = [1u64 << 32, 256, 0, 255, 1];
    let mut batch = Batch::default();
    for index in indexes {
        batch.insert(Key::Log(s, room, index), index.to_string());
        batch.insert(Key::Roster(s, index), index.to_string());
    }
    for index in [u32::MAX, 256, 255] {
        batch.insert(Key::Chunk(s, file, index), index.to_string());
    }
    store.commit(batch).await.unwrap();
    let sorted = [0, 1, 255, 256, 1 << 32];
    let log = store.log(&s, &room, 0, u64::MAX, 10).await.unwrap();
    assert_eq!(log.iter().map(|(i, _)| *i).collect::<Vec<_>>(), sorted);
    assert!(
        log.iter()
            .all(|(i, v)| v.as_deref().unwrap() == i.to_string().as_bytes())
    );
    let from_256 = store.log(&s, &room, 256, 1 << 32, 1).await.unwrap();
    assert_eq!(from_256.len(), 1);
    assert_eq!(from_256[0].0, 256);
    assert_eq!(from_256[0].1.as_deref().unwrap(), b"256");
    let rosters = store.records(Kind::Roster, &s).await.unwrap();
    let expected: Vec<Key> = sorted.iter().map(|i| Key::Roster(s, *i)).collect();
    assert_eq!(
        rosters.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
        expected
    );
    let chunks = store.records(Kind::Chunk, &s).await.unwrap();
    let expected: Vec<Key> = [255, 256, u32::MAX]
        .iter()
        .map(|i| Key::Chunk(s, file, *i))
        .collect();
    assert_eq!(
        chunks.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
        expected
    );
}

/// Open the store at `location`, with a small queue.
async fn open(location: &StoreLocation, dir: &std::path::Path) -> Opened {
    Store::open(location, dir, 16, Arc::new(Metrics::default()), true, None)
        .await
        .unwrap()
}

/// A fresh PostgreSQL database, on the test process's one server.
fn postgres() -> StoreLocation {
    StoreLocation::Postgres(caucus_testkit::Postgres::shared().database())
}

#[tokio::test(flavor = "current_thread")]
async fn sled_keeps_the_last_write_large_values_and_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&StoreLocation::Sled, dir.path()).await;
    a_batch_writing_one_key_twice_keeps_the_last(&store).await;
    a_large_value_round_trips(&store).await;
    indexes_sort_as_numbers(&store).await;
}

#[tokio::test(flavor = "current_thread")]
async fn postgres_keeps_the_store_promises() {
    let (store, committer) = open(&postgres(), std::path::Path::new("")).await;
    a_group_of_commits_applies_in_order(&store).await;
    reads_return_what_was_written_in_key_order(&store).await;
    a_batch_writing_one_key_twice_keeps_the_last(&store).await;
    a_large_value_round_trips(&store).await;
    indexes_sort_as_numbers(&store).await;
    drop(store);
    committer.await.unwrap().unwrap();
}

/// A second relay on the same database finds the schema made (applying the
/// migrations again changes nothing) and reads what the first committed.
#[tokio::test(flavor = "current_thread")]
async fn postgres_opens_twice_on_one_database() {
    let location = postgres();
    let (first, _) = open(&location, std::path::Path::new("")).await;
    let key = Key::Session(SessionId([7; 16]));
    let mut batch = Batch::default();
    batch.insert(key.clone(), b"{}".to_vec());
    first.commit(batch).await.unwrap();
    let (second, _) = open(&location, std::path::Path::new("")).await;
    assert_eq!(second.get(&key).await.unwrap(), Some(b"{}".to_vec()));
    assert_eq!(first.all(Kind::Session).await.unwrap().len(), 1);
}

/// What a store committed is there when the store is opened again.
#[tokio::test(flavor = "current_thread")]
async fn postgres_reopened_store_reads_what_was_committed() {
    let location = postgres();
    let (store, committer) = open(&location, std::path::Path::new("")).await;
    let key = Key::Log(SessionId([8; 16]), RoomId([1; 16]), 3);
    let mut batch = Batch::default();
    batch.insert(key.clone(), b"envelope".to_vec());
    store.commit(batch).await.unwrap();
    drop(store);
    committer.await.unwrap().unwrap();
    let (store, _) = open(&location, std::path::Path::new("")).await;
    assert_eq!(store.get(&key).await.unwrap(), Some(b"envelope".to_vec()));
    assert_eq!(
        store.session_records(key.session()).await.unwrap(),
        [(key.clone(), key.len() + 8)]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn sled_keeps_the_store_promises() {
    let dir = tempfile::tempdir().unwrap();
    let (store, committer) = Store::open(
        &StoreLocation::Sled,
        dir.path(),
        16,
        Arc::new(Metrics::default()),
        true,
        None,
    )
    .await
    .unwrap();
    a_group_of_commits_applies_in_order(&store).await;
    reads_return_what_was_written_in_key_order(&store).await;
    drop(store);
    committer.await.unwrap().unwrap();
    // And it is on disk.
    let tree = raw_tree(dir.path());
    // The records but the nine envelopes, a block of positions for each of
    // the three rooms with envelopes, a `G` record for each of the two
    // sessions with envelopes, and the checkpoint.
    assert_eq!(tree.len(), 2 + 19 - 9 + 3 + 2 + 1);
}

/// The tree of the sled store in `dir`, opened directly once the store has
/// let go of it (sled's flusher thread lets go of the directory's lock a
/// moment after the last handle is dropped).
fn raw_tree(dir: &std::path::Path) -> ::sled::Tree {
    let db = (0..100)
        .find_map(|_| {
            ::sled::open(dir)
                .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(50)))
                .ok()
        })
        .unwrap();
    db.open_tree("caucus").unwrap()
}

/// The envelope files (`envelopes/*.log`) in a sled store's directory, and
/// whether any holds `needle`.
fn segment_files(dir: &std::path::Path, needle: &[u8]) -> (usize, bool) {
    let mut count = 0;
    let mut found = false;
    for entry in std::fs::read_dir(dir.join("envelopes")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        count += 1;
        found |= bytes.windows(needle.len()).any(|w| w == needle);
    }
    (count, found)
}

/// Open the sled store in `dir`, once the last one to open it has let go.
async fn reopen(dir: &std::path::Path) -> Opened {
    for _ in 0..100 {
        match Store::open(
            &StoreLocation::Sled,
            dir,
            16,
            Arc::new(Metrics::default()),
            true,
            None,
        )
        .await
        {
            Ok(opened) => return opened,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    panic!("the sled store did not open again");
}

/// An erased session's envelopes leave the disk with the last segment
/// that held them: once every session with envelopes in a segment is
/// erased, the file is deleted, and what other sessions wrote stays.
#[tokio::test(flavor = "current_thread")]
async fn sled_deletes_a_segment_once_no_session_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, room) = (SessionId([1; 16]), SessionId([2; 16]), RoomId([3; 16]));
    let write = |session: SessionId, marker: &str| {
        let mut batch = Batch::default();
        batch.insert(Key::Session(session), b"{}".to_vec());
        for index in 1..=3 {
            batch.insert(Key::Log(session, room, index), format!("{marker}-{index}"));
        }
        batch
    };
    let erase = |session: SessionId| {
        let mut batch = Batch::default();
        batch.remove(Key::Session(session));
        for index in 1..=3 {
            batch.remove(Key::Log(session, room, index));
        }
        batch
    };
    // Each opening appends to a segment of its own: a's in the first, a's
    // and b's in the second.
    let (store, committer) = reopen(dir.path()).await;
    store.commit(write(a, "alpha")).await.unwrap();
    drop(store);
    committer.await.unwrap().unwrap();
    let (store, committer) = reopen(dir.path()).await;
    let mut more = Batch::default();
    more.insert(Key::Log(a, room, 4), b"alpha-4".to_vec());
    store.commit(more).await.unwrap();
    store.commit(write(b, "bravo")).await.unwrap();
    assert_eq!(segment_files(dir.path(), b"alpha-1"), (2, true));

    let mut gone = erase(a);
    gone.remove(Key::Log(a, room, 4));
    store.commit(gone).await.unwrap();
    // The first segment held only a's envelopes; the second (appended to)
    // holds b's too.
    assert_eq!(segment_files(dir.path(), b"alpha-1"), (1, false));
    assert_eq!(segment_files(dir.path(), b"alpha-4"), (1, true));
    assert_eq!(store.log(&b, &room, 1, 3, 10).await.unwrap().len(), 3);
    drop(store);
    committer.await.unwrap().unwrap();

    // Reopened: a third segment to append to; the second is still b's.
    let (store, committer) = reopen(dir.path()).await;
    assert_eq!(segment_files(dir.path(), b"bravo-2"), (2, true));
    assert_eq!(
        store.get(&Key::Log(b, room, 2)).await.unwrap(),
        Some(b"bravo-2".to_vec())
    );
    store.commit(erase(b)).await.unwrap();
    assert_eq!(segment_files(dir.path(), b"bravo-2"), (1, false));
    assert_eq!(segment_files(dir.path(), b"alpha-4"), (1, false));
    drop(store);
    committer.await.unwrap().unwrap();
}

/// A store written before the envelope log, with its envelopes in the
/// tree, is read as it was once opened: the envelopes are moved into the
/// log, and the tree keeps only where they are.
#[tokio::test(flavor = "current_thread")]
async fn sled_moves_envelopes_kept_in_the_tree_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (s, room) = (SessionId([4; 16]), RoomId([5; 16]));
    {
        let db = ::sled::open(dir.path()).unwrap();
        let tree = db.open_tree("caucus").unwrap();
        for index in 1..=1500u64 {
            let mut key = vec![b'L'];
            key.extend_from_slice(&s.0);
            key.extend_from_slice(&room.0);
            key.extend_from_slice(&index.to_be_bytes());
            tree.insert(key, format!("envelope {index}").as_bytes())
                .unwrap();
        }
        db.flush().unwrap();
    }
    let (store, committer) = reopen(dir.path()).await;
    let log = store.log(&s, &room, 1, u64::MAX, usize::MAX).await.unwrap();
    assert_eq!(log.len(), 1500);
    assert!(
        log.iter()
            .all(|(i, v)| v.as_deref().unwrap() == format!("envelope {i}").as_bytes())
    );
    assert_eq!(
        store.session_records(&s).await.unwrap()[0],
        (Key::Log(s, room, 1), Key::Log(s, room, 1).len() + 10)
    );
    drop(store);
    committer.await.unwrap().unwrap();
    let tree = raw_tree(dir.path());
    assert_eq!(tree.scan_prefix(b"L").count(), 0);
    // Blocks of positions, 28 bytes each (operations.md section 7).
    let positions: usize = tree
        .scan_prefix(b"E")
        .values()
        .map(|v| v.unwrap().len() / 28)
        .sum();
    assert_eq!(positions, 1500);
}

/// Under a fence, a node stores only into the sessions whose leases it
/// holds: a group that writes to another node's session stores nothing and
/// is refused `unavailable`; the store takes writes again once resumed,
/// and a deletion statement is forgotten by any node.
#[tokio::test(flavor = "current_thread")]
async fn postgres_under_a_fence_stores_only_into_the_nodes_own_sessions() {
    let StoreLocation::Postgres(url) = postgres() else {
        unreachable!()
    };
    let location = StoreLocation::Postgres(url.clone());
    let (store, _) = Store::open(
        &location,
        std::path::Path::new(""),
        16,
        Arc::new(Metrics::default()),
        true,
        Some("here"),
    )
    .await
    .unwrap();
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let (mine, theirs) = (SessionId([1; 16]), SessionId([2; 16]));
    for (session, node) in [(mine, "here"), (theirs, "there")] {
        db.execute(
            "INSERT INTO owners (session, node) VALUES ($1, $2)",
            &[&&session.0[..], &node],
        )
        .await
        .unwrap();
    }
    let write = |session: SessionId| {
        let mut batch = Batch::default();
        batch.insert(Key::Session(session), b"{}".to_vec());
        batch
    };
    store.commit(write(mine)).await.unwrap();
    let mut failures = store.failures();
    assert!(matches!(
        store.commit(write(theirs)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(store.get(&Key::Session(theirs)).await.unwrap(), None);
    // Refused until resumed, then taken again.
    failures.changed().await.unwrap();
    assert!(!store.healthy());
    assert!(matches!(
        store.commit(write(mine)).await,
        Err(StoreError::Unavailable(_))
    ));
    store.resume().unwrap();
    let mut statement = Batch::default();
    statement.insert(Key::Deleted(theirs), b"statement".to_vec());
    for _ in 0..50 {
        if store.healthy() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    store.commit(statement).await.unwrap();
    let mut forget = Batch::default();
    forget.remove(Key::Deleted(theirs));
    store.commit(forget).await.unwrap();
    store.commit(write(mine)).await.unwrap();
}
