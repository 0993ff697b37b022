//! Documents at the relay (protocol.md 13.5.14-13.5.16): uploads that
//! resume, chunks committed durably and in order, every refusal in the
//! spec's order, the upload budget, the sweep of abandoned uploads, and
//! erasure at close; all against a real relay on a loopback port, with
//! documents sealed and opened by the reference code.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use std::process::Stdio;
use std::time::Duration;

use caucus_protocol::codec::Canonical;
use caucus_protocol::deletion::DeletionStatement;
use caucus_protocol::document::{DocumentKey, Hasher, Layout, Opener, Sealer};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{FileId, SessionId};
use caucus_protocol::wire::{Bytes, ErrorCode, Reply, Request, RequestBody};
use support::{Client, Mediation, Relay};

/// A file of `size` bytes, its key, and the sealer that uploads it.
struct File {
    id: FileId,
    bytes: Vec<u8>,
    key: DocumentKey,
    sealer: Sealer,
}

impl File {
    fn new(size: usize) -> Self {
        Self::of((0..size).map(|i| (i * 7 % 251) as u8).collect())
    }

    fn of(bytes: Vec<u8>) -> Self {
        let size = bytes.len();
        let key = DocumentKey::generate().unwrap();
        let sealer = Sealer::new(&key, size as u64).unwrap();
        Self {
            id: FileId::random().unwrap(),
            bytes,
            key,
            sealer,
        }
    }

    fn layout(&self) -> Layout {
        self.sealer.layout()
    }

    fn size(&self) -> u64 {
        self.layout().padded()
    }

    fn chunks(&self) -> u32 {
        self.layout().chunks()
    }

    fn sealed(&self, index: u32) -> Vec<u8> {
        let range = self.sealer.file_range(index);
        self.sealer.seal_chunk(index, &self.bytes[range]).unwrap()
    }

    fn upload(&self, session: SessionId) -> RequestBody {
        RequestBody::Upload {
            session,
            file: self.id,
            size: self.size(),
        }
    }

    fn chunk(&self, session: SessionId, index: u32) -> RequestBody {
        RequestBody::Chunk {
            session,
            file: self.id,
            index: u64::from(index),
            data: Bytes(self.sealed(index)),
        }
    }

    fn download(&self, session: SessionId, index: u64) -> RequestBody {
        RequestBody::Download {
            session,
            file: self.id,
            index,
        }
    }
}

/// A file of `chunks` chunks, the last of them short.
fn file_of(chunks: usize) -> File {
    let file = File::new((chunks - 1) * 65536 + 1);
    assert_eq!(file.chunks() as usize, chunks);
    file
}

/// The `chunks` of an `ok` reply to `upload`.
async fn upload(c: &mut Client, body: RequestBody) -> u64 {
    match c.request(body).await {
        Reply::Ok {
            chunks: Some(chunks),
            ..
        } => chunks,
        other => panic!("expected ok with chunks, got {other:?}"),
    }
}

/// The code and message of a refusal.
async fn refusal(c: &mut Client, body: RequestBody) -> (ErrorCode, String) {
    match c.request(body).await {
        Reply::Error { code, message, .. } => (code, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Send `body` as request `id` without waiting for its reply.
async fn send(c: &mut Client, id: u64, body: RequestBody) {
    let text = serde_json::to_string(&Request { v: 1, id, body }).unwrap();
    c.send_text(text).await;
}

/// Download every chunk of `file` as `c` and open it: the file's bytes,
/// checked against their hash.
async fn fetch(c: &mut Client, session: SessionId, file: &File) -> Vec<u8> {
    let opener = Opener::new(&file.key, file.bytes.len() as u64).unwrap();
    let mut out = Vec::new();
    for index in 0..file.chunks() {
        let data = match c.request(file.download(session, u64::from(index))).await {
            Reply::Ok {
                data: Some(data), ..
            } => data.0,
            other => panic!("expected a chunk, got {other:?}"),
        };
        out.extend_from_slice(&opener.open_chunk(index, &data).unwrap());
    }
    assert_eq!(Hasher::digest(&out), Hasher::digest(&file.bytes));
    out
}

fn copy(keys: &DeviceKeys) -> DeviceKeys {
    DeviceKeys::from_secret_bytes(&keys.to_secret_bytes()).unwrap()
}

/// The statement in a `close_session` reply, verified.
fn statement_in(reply: Reply, m: &Mediation) -> DeletionStatement {
    let Reply::Ok {
        statement: Some(statement),
        ..
    } = reply
    else {
        panic!("no deletion statement in {reply:?}");
    };
    statement
        .0
        .verify_for(
            &m.session,
            &m.mediator.keys.fingerprint(),
            &m.mediator.relay.fingerprint(),
        )
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_document_uploads_resumes_completes_and_any_member_downloads_it() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let file = file_of(3);
    assert_eq!(upload(&mut m.claimant, file.upload(session)).await, 0);
    m.claimant.ok(file.chunk(session, 0)).await;
    // The same upload again: how far it got, nothing changed.
    assert_eq!(upload(&mut m.claimant, file.upload(session)).await, 1);
    m.claimant.ok(file.chunk(session, 1)).await;
    m.claimant.ok(file.chunk(session, 2)).await;
    assert_eq!(upload(&mut m.claimant, file.upload(session)).await, 3);
    // Any member who names it gets its chunks, as stored.
    assert_eq!(fetch(&mut m.defendant, session, &file).await, file.bytes);
    assert_eq!(fetch(&mut m.mediator, session, &file).await, file.bytes);
    match m.solicitor.request(file.download(session, 1)).await {
        Reply::Ok {
            data: Some(data), ..
        } => assert_eq!(data.0, file.sealed(1)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_refusal_of_upload_chunk_and_download_in_order() {
    // Documents of at most 200000 bytes padded, 402000 a session (two of
    // 135168 bytes and two of 65536, not three of 135168), two uploads
    // under way per device.
    let relay = Relay::start_with(&[
        "--max-document-bytes",
        "200000",
        "--session-document-bytes",
        "402000",
        "--max-uploads-per-device",
        "2",
    ])
    .await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let mut outsider = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    let file = file_of(3); // 135168 bytes padded
    let size = file.size();
    let upload_of = |file: FileId, size: u64| RequestBody::Upload {
        session,
        file,
        size,
    };
    let refused = |code, message: &str| (code, message.to_owned());

    // upload (13.5.14)
    let nowhere = SessionId::random().unwrap();
    assert_eq!(
        refusal(&mut m.claimant, file.upload(nowhere)).await,
        refused(ErrorCode::NotFound, "no such session")
    );
    assert_eq!(
        refusal(&mut outsider, file.upload(session)).await,
        refused(ErrorCode::Forbidden, "not a member of this session")
    );
    for bad in [0, 65535, 65537, size - 1, size + 1] {
        assert_eq!(
            refusal(&mut m.claimant, upload_of(file.id, bad)).await,
            refused(ErrorCode::Invalid, "not a padded document size")
        );
    }
    let over = file_of(4).size(); // 200704 bytes padded
    assert_eq!(
        refusal(&mut m.claimant, upload_of(file.id, over)).await,
        refused(
            ErrorCode::TooLarge,
            "documents at this relay are at most 195 KB"
        )
    );
    assert_eq!(upload(&mut m.claimant, file.upload(session)).await, 0);
    // The id is the claimant's, at that size.
    assert_eq!(
        refusal(&mut m.defendant, file.upload(session)).await,
        refused(ErrorCode::Conflict, "that document id is taken")
    );
    assert_eq!(
        refusal(&mut m.claimant, upload_of(file.id, 65536)).await,
        refused(ErrorCode::Conflict, "that document id is taken")
    );
    let second = file_of(3);
    assert_eq!(upload(&mut m.defendant, second.upload(session)).await, 0);
    // 2 × 135168 held; a third of them would pass 402000.
    let third = file_of(3);
    assert_eq!(
        refusal(&mut m.claimant, third.upload(session)).await,
        refused(
            ErrorCode::TooLarge,
            "this session has no room for more documents"
        )
    );
    let small = file_of(1);
    let other = file_of(1);
    assert_eq!(upload(&mut m.claimant, small.upload(session)).await, 0);
    // Two uploads under way: a third waits until one completes.
    assert_eq!(
        refusal(&mut m.claimant, other.upload(session)).await.0,
        ErrorCode::Overloaded
    );
    m.claimant.ok(small.chunk(session, 0)).await;
    assert_eq!(upload(&mut m.claimant, other.upload(session)).await, 0);

    // chunk (13.5.15)
    let chunk_at = |file: &File, index: u64, data: Vec<u8>| RequestBody::Chunk {
        session,
        file: file.id,
        index,
        data: Bytes(data),
    };
    assert_eq!(
        refusal(&mut m.claimant, third.chunk(session, 0)).await,
        refused(ErrorCode::NotFound, "no such upload")
    );
    assert_eq!(
        refusal(&mut m.defendant, file.chunk(session, 0)).await.0,
        ErrorCode::Forbidden
    );
    assert_eq!(
        refusal(&mut m.claimant, small.chunk(session, 0)).await,
        refused(ErrorCode::Conflict, "the document is complete")
    );
    assert_eq!(
        refusal(&mut m.claimant, file.chunk(session, 1)).await,
        refused(ErrorCode::Conflict, "expected chunk 0")
    );
    for data in [file.sealed(2), [file.sealed(0), vec![0]].concat(), vec![]] {
        assert_eq!(
            refusal(&mut m.claimant, chunk_at(&file, 0, data)).await,
            refused(ErrorCode::Invalid, "a chunk of the wrong length")
        );
    }
    m.claimant.ok(file.chunk(session, 0)).await;
    m.claimant.ok(file.chunk(session, 1)).await;
    // The last chunk is short: a full-length one is refused.
    assert_eq!(
        refusal(&mut m.claimant, chunk_at(&file, 2, file.sealed(1))).await,
        refused(ErrorCode::Invalid, "a chunk of the wrong length")
    );

    // download (13.5.16)
    assert_eq!(
        refusal(&mut outsider, small.download(session, 0)).await,
        refused(ErrorCode::Forbidden, "not a member of this session")
    );
    for incomplete in [&file, &second, &third] {
        assert_eq!(
            refusal(&mut m.defendant, incomplete.download(session, 0)).await,
            refused(ErrorCode::NotFound, "no such document")
        );
    }
    for past in [1, u64::from(u32::MAX) + 1] {
        assert_eq!(
            refusal(&mut m.defendant, small.download(session, past)).await,
            refused(ErrorCode::NotFound, "no such chunk")
        );
    }
    assert_eq!(fetch(&mut m.defendant, session, &small).await, small.bytes);

    // A closed (and erased) session refuses all three.
    m.mediator.ok(RequestBody::CloseSession { session }).await;
    for body in [
        other.upload(session),
        file.chunk(session, 2),
        small.download(session, 0),
    ] {
        assert_eq!(
            refusal(&mut m.claimant, body).await,
            refused(ErrorCode::SessionClosed, "the session has closed")
        );
    }
}

#[tokio::test]
async fn pipelined_chunks_are_accepted_in_order_and_acknowledged_in_order() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let file = file_of(4);
    assert_eq!(upload(&mut m.claimant, file.upload(session)).await, 0);
    // Sent without waiting: 0, 1, then 3 (out of turn: the relay has
    // accepted 0 and 1 whether or not they are stored yet), then 2, 3 and
    // one too many.
    let order = [0, 1, 3, 2, 3, 3];
    for (n, index) in order.into_iter().enumerate() {
        send(&mut m.claimant, 100 + n as u64, file.chunk(session, index)).await;
    }
    // The oks come in the order sent; a refusal is answered at once.
    let mut oks = Vec::new();
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..order.len() {
        match m.claimant.next_reply().await {
            Reply::Ok { id, .. } => {
                oks.push(id);
                outcomes.insert(id, None);
            }
            Reply::Error {
                id, code, message, ..
            } => {
                outcomes.insert(id.unwrap(), Some((code, message)));
            }
        }
    }
    assert_eq!(oks, [100, 101, 103, 104]);
    assert_eq!(
        outcomes.into_values().collect::<Vec<_>>(),
        [
            None,
            None,
            Some((ErrorCode::Conflict, "expected chunk 2".to_owned())),
            None,
            None,
            Some((ErrorCode::Conflict, "the document is complete".to_owned())),
        ]
    );
    assert_eq!(fetch(&mut m.defendant, session, &file).await, file.bytes);
}

#[tokio::test]
async fn a_device_over_its_upload_budget_is_slowed_down_not_refused() {
    // One full chunk a second: the first chunk takes the whole budget, and
    // each of the next two waits for it to refill.
    let relay = Relay::start_with(&["--upload-bytes-per-sec", "65552"]).await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let file = file_of(4);
    assert_eq!(upload(&mut m.claimant, file.upload(session)).await, 0);
    // The claimant's other device connection watches the count.
    let mut watcher = Client::connect(&relay.url(), copy(&m.claimant.keys)).await;
    for index in 0..4 {
        send(
            &mut m.claimant,
            100 + u64::from(index),
            file.chunk(session, index),
        )
        .await;
    }
    let mut seen = vec![0];
    while *seen.last().unwrap() < 4 {
        let held = upload(&mut watcher, file.upload(session)).await;
        if held != *seen.last().unwrap() {
            seen.push(held);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The chunks were taken one at a time, paced: the watcher saw the
    // counts on the way (the second and third chunks each waited a second
    // for the budget), and none was refused.
    assert!(seen.starts_with(&[0, 1, 2]), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    for n in 0..4 {
        assert!(matches!(
            m.claimant.reply_to(100 + n).await,
            Reply::Ok { .. }
        ));
    }
}

#[tokio::test]
async fn the_sweep_deletes_an_abandoned_upload_and_keeps_complete_documents() {
    let relay =
        Relay::start_with(&["--upload-ttl-secs", "1", "--max-uploads-per-device", "1"]).await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let kept = file_of(1);
    upload(&mut m.claimant, kept.upload(session)).await;
    m.claimant.ok(kept.chunk(session, 0)).await;
    let abandoned = file_of(2);
    upload(&mut m.claimant, abandoned.upload(session)).await;
    m.claimant.ok(abandoned.chunk(session, 0)).await;
    let next = file_of(1);
    assert_eq!(
        refusal(&mut m.claimant, next.upload(session)).await.0,
        ErrorCode::Overloaded
    );
    // A chunk out of turn changes nothing, and says whether the upload is
    // still there.
    let probe = RequestBody::Chunk {
        session,
        file: abandoned.id,
        index: 5,
        data: Bytes(abandoned.sealed(1)),
    };
    loop {
        match refusal(&mut m.claimant, probe.clone()).await {
            (ErrorCode::Conflict, message) => assert_eq!(message, "expected chunk 1"),
            (ErrorCode::NotFound, message) => {
                assert_eq!(message, "no such upload");
                break;
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Gone from the device's uploads under way too, and the complete
    // document, older still, stays.
    assert_eq!(upload(&mut m.claimant, next.upload(session)).await, 0);
    assert_eq!(fetch(&mut m.defendant, session, &kept).await, kept.bytes);
    // The abandoned one's record and chunk are gone from the store: the
    // erasure finds only the other two records and the kept chunk.
    let reply = m
        .mediator
        .request(RequestBody::CloseSession { session })
        .await;
    let erased = statement_in(reply, &m).erased;
    assert_eq!((erased.documents, erased.chunks), (2, 1));
}

#[tokio::test]
async fn closing_erases_every_document_and_the_statement_counts_them() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let complete = file_of(3);
    upload(&mut m.claimant, complete.upload(session)).await;
    for index in 0..3 {
        m.claimant.ok(complete.chunk(session, index)).await;
    }
    let partial = file_of(2);
    upload(&mut m.defendant, partial.upload(session)).await;
    m.defendant.ok(partial.chunk(session, 0)).await;
    let reply = m
        .mediator
        .request(RequestBody::CloseSession { session })
        .await;
    let erased = statement_in(reply, &m).erased;
    assert_eq!((erased.documents, erased.chunks), (2, 4));
    // Their stored sizes count: every chunk at least as stored.
    let chunk_bytes = complete.layout().stored_bytes() + partial.sealed(0).len() as u64;
    assert!(erased.bytes > chunk_bytes, "{erased:?}");
    assert_eq!(
        refusal(&mut m.defendant, complete.download(session, 0))
            .await
            .0,
        ErrorCode::SessionClosed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_chunks_survive_kill_9_and_the_upload_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = support::spawn_binary(dir.path(), "warn", Stdio::null());
    let relay = Relay::external(&url, dir);
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let file = file_of(6);
    upload(&mut m.claimant, file.upload(session)).await;
    for index in 0..6 {
        send(
            &mut m.claimant,
            100 + u64::from(index),
            file.chunk(session, index),
        )
        .await;
    }
    for n in 0..3 {
        assert!(matches!(
            m.claimant.reply_to(100 + n).await,
            Reply::Ok { .. }
        ));
    }
    // No goodbye: SIGKILL, with later chunks perhaps still in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    let dir = relay.into_dir();
    let (mut child, url) = support::spawn_binary(dir.path(), "warn", Stdio::null());
    let mut claimant = Client::connect(&url, copy(&m.claimant.keys)).await;
    let held = upload(&mut claimant, file.upload(session)).await;
    assert!((3..=6).contains(&held), "held {held}");
    for index in held as u32..6 {
        claimant.ok(file.chunk(session, index)).await;
    }
    let mut defendant = Client::connect(&url, copy(&m.defendant.keys)).await;
    assert_eq!(fetch(&mut defendant, session, &file).await, file.bytes);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_relay_stores_a_document_as_opaque_chunks_and_never_its_key_or_content() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let canary = b"CANARY the expert's report on the partnership accounts";
    let file = File::of(canary.repeat(2000)); // 2 chunks
    upload(&mut m.claimant, file.upload(session)).await;
    for index in 0..file.chunks() {
        m.claimant.ok(file.chunk(session, index)).await;
    }
    assert_eq!(fetch(&mut m.defendant, session, &file).await, file.bytes);
    let dir = relay.stop().await;
    let stored = all_bytes(dir.path());
    let key = file.key.to_bytes();
    for (what, needle) in [
        ("content", &canary[..]),
        ("file key", &key[..16]),
        ("nonce", &key[16..]),
    ] {
        assert!(!contains(&stored, needle), "{what} found in the data dir");
    }
    // It does hold the sealed chunks, as uploaded (so the search meant something).
    assert!(contains(&stored, &file.sealed(1)));
}

/// sled 0.34 writes a page of more than 128 KiB (a leaf holding a few
/// chunks, say) to a file of its own under `blobs/`. When that write fails,
/// sled keeps the place the page took in its log buffer, and no later flush
/// of the tree ever ends. So a relay whose store fails must stop then and
/// there (to start again from the disk), not flush what came before: a
/// relay that waited on such a flush answered nothing, and never stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_store_cannot_write_a_large_page_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = support::spawn_binary(dir.path(), "warn", Stdio::null());
    let relay = Relay::external(&url, dir);
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let (one, two) = (file_of(48), file_of(48));
    upload(&mut m.claimant, one.upload(session)).await;
    upload(&mut m.defendant, two.upload(session)).await;
    std::fs::remove_dir_all(relay.dir.path().join("blobs")).unwrap();
    // Two members upload at once, so that commits that write the tree
    // share a group with the one that fails.
    tokio::join!(
        send_all(&mut m.claimant, session, &one),
        send_all(&mut m.defendant, session, &two)
    );
    let Some(status) = support::exited_within(&mut child, Duration::from_secs(30)).await else {
        child.kill().unwrap();
        panic!("the relay went on, or hung, after its store failed");
    };
    assert_eq!(status.code(), Some(75), "{status:?}");
}

/// Send every chunk of `file` without waiting for replies, until the
/// connection fails.
async fn send_all(c: &mut Client, session: SessionId, file: &File) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    for index in 0..file.chunks() {
        let id = 100 + u64::from(index);
        let body = file.chunk(session, index);
        let text = serde_json::to_string(&Request { v: 1, id, body }).unwrap();
        if c.ws.send(Message::text(text)).await.is_err() {
            break;
        }
    }
}
