//! The sled engine: one tree, keys spelt as bytes that sort as the records
//! do, written in groups by one committer task so that many acknowledged
//! envelopes share one flush.
//!
//! A commit of one write (every post) is applied with a plain `insert`, and
//! only a commit of several with sled's `apply_batch`: sled 0.34 writes out
//! and syncs its IO buffer twice for every `apply_batch`, whatever its size,
//! which cost about 150 µs of CPU per post when every post was applied that
//! way (docs/performance.md).
//!
//! | key | value |
//! | --- | --- |
//! | `S` session | session record (JSON): mediator fingerprint, when closed |
//! | `R` session version(u64 BE) | signed roster, canonical bytes |
//! | `B` session seq(u64 BE) | signed key bundle, canonical bytes |
//! | `L` session room index(u64 BE) | envelope, canonical bytes |
//! | `I` session invite | invite record (JSON): token hash, expiry, state |
//! | `W` session invite | a waiting join request, canonical bytes |
//! | `P` session | presence (JSON): the party members' statuses and the mediators' locations |
//! | `F` session file | document record (JSON): uploader, padded size, chunks held, when begun |
//! | `C` session file index(u32 BE) | a document's chunk, as uploaded |
//! | `D` session | after erasure: the signed deletion statement, canonical bytes |
//!
//! A flush that fails leaves what it covered neither known stored nor known
//! lost: none of their follow-ups runs (no reply is sent), and the process
//! exits, so that the relay starts again from what is on disk, as
//! PostgreSQL does after a failed fsync. A relay that fails to apply a
//! commit exits too, once what was applied before it is flushed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use caucus_protocol::ids::{ID_LEN, RoomId, SessionId};
use tokio::sync::mpsc;

use super::{Batch, Commit, EXIT_STORE_FAILED, Key, Kind, MAX_GROUP, Outcome, StoreError};
use crate::metrics::Metrics;

impl Kind {
    /// The first byte of its keys.
    fn tag(self) -> u8 {
        match self {
            Kind::Session => b'S',
            Kind::Roster => b'R',
            Kind::Bundle => b'B',
            Kind::Log => b'L',
            Kind::Invite => b'I',
            Kind::Waiting => b'W',
            Kind::Presence => b'P',
            Kind::Document => b'F',
            Kind::Chunk => b'C',
            Kind::Deleted => b'D',
        }
    }
}

/// The bytes before a session's keys of `kind`.
fn prefix(kind: Kind, session: &SessionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ID_LEN + ID_LEN + 8);
    k.push(kind.tag());
    k.extend_from_slice(&session.0);
    k
}

/// A key as sled holds it.
fn encode(key: &Key) -> Vec<u8> {
    let mut k = prefix(key.kind(), key.session());
    match key {
        Key::Session(_) | Key::Presence(_) | Key::Deleted(_) => {}
        Key::Roster(_, n) | Key::Bundle(_, n) => k.extend_from_slice(&n.to_be_bytes()),
        Key::Log(_, room, index) => {
            k.extend_from_slice(&room.0);
            k.extend_from_slice(&index.to_be_bytes());
        }
        Key::Invite(_, invite) | Key::Waiting(_, invite) => k.extend_from_slice(&invite.0),
        Key::Document(_, file) => k.extend_from_slice(&file.0),
        Key::Chunk(_, file, index) => {
            k.extend_from_slice(&file.0);
            k.extend_from_slice(&index.to_be_bytes());
        }
    }
    k
}

/// A key of `kind` from its bytes.
fn decode(kind: Kind, bytes: &[u8]) -> Result<Key, StoreError> {
    fn take<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
        let (head, tail) = rest.split_first_chunk::<N>()?;
        *rest = tail;
        Some(*head)
    }
    let parse = || {
        let mut rest = bytes.strip_prefix(&[kind.tag()])?;
        let session = SessionId(take(&mut rest)?);
        let key = match kind {
            Kind::Session => Key::Session(session),
            Kind::Presence => Key::Presence(session),
            Kind::Deleted => Key::Deleted(session),
            Kind::Roster => Key::Roster(session, u64::from_be_bytes(take(&mut rest)?)),
            Kind::Bundle => Key::Bundle(session, u64::from_be_bytes(take(&mut rest)?)),
            Kind::Log => Key::Log(
                session,
                RoomId(take(&mut rest)?),
                u64::from_be_bytes(take(&mut rest)?),
            ),
            Kind::Invite => Key::Invite(session, caucus_protocol::ids::InviteId(take(&mut rest)?)),
            Kind::Waiting => {
                Key::Waiting(session, caucus_protocol::ids::InviteId(take(&mut rest)?))
            }
            Kind::Document => {
                Key::Document(session, caucus_protocol::ids::FileId(take(&mut rest)?))
            }
            Kind::Chunk => Key::Chunk(
                session,
                caucus_protocol::ids::FileId(take(&mut rest)?),
                u32::from_be_bytes(take(&mut rest)?),
            ),
        };
        rest.is_empty().then_some(key)
    };
    parse().ok_or_else(|| StoreError::Corrupt(format!("a key of kind {kind:?}")))
}

/// Reads from the sled tree.
#[derive(Clone)]
pub(crate) struct Reader {
    tree: sled::Tree,
}

impl Reader {
    pub(super) fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(encode(key))?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        kind: Kind,
        from: &[u8],
    ) -> impl Iterator<Item = Result<(Key, Vec<u8>), StoreError>> {
        self.tree.scan_prefix(from).map(move |item| {
            let (k, v) = item?;
            Ok((decode(kind, &k)?, v.to_vec()))
        })
    }

    pub(super) fn records(
        &self,
        kind: Kind,
        session: &SessionId,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        self.scan(kind, &prefix(kind, session)).collect()
    }

    pub(super) fn log(
        &self,
        session: &SessionId,
        room: &RoomId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let from = encode(&Key::Log(*session, *room, from));
        let to = encode(&Key::Log(*session, *room, to));
        self.tree
            .range(from..=to)
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                match decode(Kind::Log, &k)? {
                    Key::Log(_, _, index) => Ok((index, v.to_vec())),
                    _ => Err(StoreError::Corrupt("a log key".into())),
                }
            })
            .collect()
    }

    pub(super) fn all(&self, kind: Kind) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        self.scan(kind, &[kind.tag()]).collect()
    }

    pub(super) fn session_records(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(Key, u64)>, StoreError> {
        let mut records = Vec::new();
        for &kind in Kind::OF_A_SESSION {
            for item in self.scan(kind, &prefix(kind, session)) {
                let (key, value) = item?;
                let size = key.len() + value.len() as u64;
                records.push((key, size));
            }
        }
        Ok(records)
    }
}

/// Apply `batch` to `tree`, atomically.
fn apply(batch: Batch, tree: &sled::Tree) -> sled::Result<()> {
    let mut writes = batch.writes.into_iter();
    match (writes.next(), writes.len()) {
        (None, _) => Ok(()),
        (Some((key, Some(value))), 0) => tree.insert(encode(&key), value).map(drop),
        (Some((key, None)), 0) => tree.remove(encode(&key)).map(drop),
        (Some(first), _) => {
            let mut batch = sled::Batch::default();
            for (key, value) in std::iter::once(first).chain(writes) {
                match value {
                    Some(value) => batch.insert(encode(&key), value),
                    None => batch.remove(encode(&key)),
                }
            }
            tree.apply_batch(batch)
        }
    }
}

/// The most sled keeps of the tree in memory (its default is 1 GiB). A
/// relay's memory should grow with its connections and the sessions they
/// follow, not with what it has stored: what is written is read back only
/// by catch-ups, and the pages sled evicts stay in the system's file cache
/// (docs/performance.md, "A mediation service's day").
const CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// Open (or create) the sled store in `dir` and start its committer on
/// `commits`.
pub(super) fn open(
    dir: &Path,
    commits: mpsc::Receiver<Commit>,
    metrics: Arc<Metrics>,
    durable: bool,
    failed: Arc<AtomicBool>,
) -> Result<(Reader, tokio::task::JoinHandle<()>), StoreError> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .open()?;
    let tree = db.open_tree("caucus")?;
    let flusher_tree = tree.clone();
    let committer = tokio::task::spawn_blocking(move || {
        run_committer(db, &flusher_tree, commits, &metrics, durable, &failed);
    });
    Ok((Reader { tree }, committer))
}

/// Commits applied but not yet flushed, with their follow-ups.
type Applied = Vec<(Outcome, Box<dyn FnOnce(Outcome) + Send>)>;

/// Apply queued commits in order, up to 512 at a time, and hand each group to
/// the flusher; applying the next group overlaps with flushing the last.
/// Not `durable`: run each follow-up as soon as its commit is applied and
/// leave the flush to sled's own background flusher (every 500 ms).
///
/// It runs on a thread of its own: sled's writes are synchronous, and a
/// group of 512 takes milliseconds, which on a runtime worker would hold up
/// every connection queued behind it there.
fn run_committer(
    db: sled::Db,
    tree: &sled::Tree,
    mut rx: mpsc::Receiver<Commit>,
    metrics: &Arc<Metrics>,
    durable: bool,
    failed: &Arc<AtomicBool>,
) {
    let (to_flusher, applied_groups) = mpsc::channel(4);
    let runtime = tokio::runtime::Handle::current();
    let flusher = runtime.spawn(run_flusher(
        db.clone(),
        applied_groups,
        metrics.clone(),
        failed.clone(),
    ));
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP
            && let Ok(next) = rx.try_recv()
        {
            group.push(next);
        }
        let started = Instant::now();
        let size = group.len();
        let mut applied: Applied = Vec::with_capacity(size);
        for Commit { batch, then } in group.drain(..) {
            let result = if failed.load(Ordering::Acquire) {
                Err(StoreError::Failed)
            } else {
                apply(batch, tree).map_err(|e| {
                    tracing::error!(error = %e, "a commit failed: the store takes no more writes");
                    failed.store(true, Ordering::Release);
                    StoreError::Sled(e)
                })
            };
            if durable {
                applied.push((result, then));
            } else {
                then(result);
            }
        }
        if !durable {
            metrics.observe_commit(started.elapsed(), size);
        } else if to_flusher.blocking_send((started, applied)).is_err() {
            break;
        }
    }
    drop(to_flusher);
    let _ = runtime.block_on(flusher);
    let _ = db.flush();
}

/// Flush the groups the committer has applied, every group waiting at once,
/// then run their follow-ups in commit order. A flush covers every write
/// applied before it starts, so no follow-up runs before its batch is
/// durable. Flushes start at least `MIN_FLUSH_INTERVAL` apart: each costs
/// about 300 µs of CPU in sled whatever it carries, so under light load
/// the groups that arrive within that interval share one.
async fn run_flusher(
    db: sled::Db,
    mut rx: mpsc::Receiver<(Instant, Applied)>,
    metrics: Arc<Metrics>,
    failed: Arc<AtomicBool>,
) {
    const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(2);
    let mut groups = Vec::new();
    let mut last_flush: Option<Instant> = None;
    while rx.recv_many(&mut groups, 64).await > 0 {
        if let Some(last) = last_flush {
            tokio::time::sleep_until((last + MIN_FLUSH_INTERVAL).into()).await;
            while let Ok(group) = rx.try_recv() {
                groups.push(group);
            }
        }
        last_flush = Some(Instant::now());
        if let Err(e) = db.flush_async().await {
            // What the flush covered may or may not be on disk: nothing is
            // said of it, and the relay starts again from the disk.
            tracing::error!(error = %e, "flush failed: stopping, to start again from what is on disk");
            std::process::exit(EXIT_STORE_FAILED);
        }
        for (started, applied) in groups.drain(..) {
            metrics.observe_commit(started.elapsed(), applied.len());
            for (result, then) in applied {
                then(result);
            }
        }
        if failed.load(Ordering::Acquire) {
            tracing::error!("a commit failed: stopping, to start again from what is on disk");
            std::process::exit(EXIT_STORE_FAILED);
        }
    }
}
