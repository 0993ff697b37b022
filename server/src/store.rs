//! The relay's durable store: one sled tree, keys prefixed by record kind
//! and session, written in groups by one committer task so that many
//! acknowledged envelopes share one flush.
//!
//! Each commit is a [`Batch`] of writes that stand or fall together. A
//! commit of one write (every post) is applied with a plain `insert`, and
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
//! Only ciphertext and the metadata of `docs/security.md` §2 are stored.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use caucus_protocol::crypto::Digest;
use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::{FileId, RoomId, SessionId};
use caucus_protocol::wire::PartyStatus;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record did not decode.
    #[error("store record corrupt: {0}")]
    Corrupt(String),
    /// The committer has stopped (shutting down).
    #[error("store is shutting down")]
    Closed,
    /// Too many commits are waiting.
    #[error("store is overloaded")]
    Overloaded,
    /// An earlier commit failed: the store takes no more writes.
    #[error("store failed earlier; nothing more is written")]
    Failed,
}

/// Record kinds, the first byte of every key.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Session = b'S' as isize,
    Roster = b'R' as isize,
    Bundle = b'B' as isize,
    Log = b'L' as isize,
    Invite = b'I' as isize,
    Waiting = b'W' as isize,
    Presence = b'P' as isize,
    Document = b'F' as isize,
    Chunk = b'C' as isize,
    Deleted = b'D' as isize,
}

/// Build a key: kind, session, then the given parts.
pub(crate) fn key(kind: Kind, session: &SessionId, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(kind as u8);
    k.extend_from_slice(&session.0);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// The key of an envelope in a room's log.
pub(crate) fn log_key(session: &SessionId, room: &RoomId, index: u64) -> Vec<u8> {
    key(Kind::Log, session, &[&room.0, &index.to_be_bytes()])
}

/// The key of a document's record.
pub(crate) fn document_key(session: &SessionId, file: &FileId) -> Vec<u8> {
    key(Kind::Document, session, &[&file.0])
}

/// The key of a document's chunk.
pub(crate) fn chunk_key(session: &SessionId, file: &FileId, index: u32) -> Vec<u8> {
    key(Kind::Chunk, session, &[&file.0, &index.to_be_bytes()])
}

/// The `u64` that ends a key (a log index, a roster version, a bundle number).
pub(crate) fn key_suffix(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8).and_then(|at| key.get(at..))?;
    tail.try_into().ok().map(u64::from_be_bytes)
}

/// What the relay keeps about a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub(crate) mediator: Fingerprint,
    /// When the mediator closed it, in seconds since the Unix epoch.
    pub(crate) closed_at: Option<u64>,
}

/// What the relay keeps about an invite: never the secret or the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InviteRecord {
    pub(crate) token_hash: Digest,
    pub(crate) expires_at: u64,
    /// The joiner who knocked with it, once one has.
    pub(crate) joiner: Option<Fingerprint>,
}

/// What the relay keeps about a document (protocol.md 13.4): never its
/// name, type, title or key, which it never sees.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DocumentRecord {
    /// The device that began the upload.
    pub(crate) uploader: Fingerprint,
    /// Its padded size.
    pub(crate) size: u64,
    /// How many of its chunks are stored, from the first.
    pub(crate) chunks: u32,
    /// When the upload began, in seconds since the Unix epoch.
    pub(crate) begun_at: u64,
}

/// Where a mediator said they are: the room, and whether the parties may
/// learn which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Location {
    pub(crate) room: RoomId,
    pub(crate) disclose: bool,
}

/// What the relay keeps of a session's presence, so that a restart does not
/// lose it: each party member's last status and each mediator's location.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PresenceRecord {
    pub(crate) statuses: Vec<(Fingerprint, PartyStatus)>,
    pub(crate) locations: Vec<(Fingerprint, Location)>,
}

/// Writes that stand or fall together, in order: a later write to a key
/// replaces an earlier one, as if applied one after another.
#[derive(Default)]
pub(crate) struct Batch {
    writes: Vec<(sled::IVec, Option<sled::IVec>)>,
}

impl Batch {
    /// Set `key` to `value`.
    pub(crate) fn insert(&mut self, key: impl Into<sled::IVec>, value: impl Into<sled::IVec>) {
        self.writes.push((key.into(), Some(value.into())));
    }

    /// Remove `key`.
    pub(crate) fn remove(&mut self, key: impl Into<sled::IVec>) {
        self.writes.push((key.into(), None));
    }

    /// Apply the writes to `tree`, atomically.
    fn apply(self, tree: &sled::Tree) -> sled::Result<()> {
        let mut writes = self.writes.into_iter();
        match (writes.next(), writes.len()) {
            (None, _) => Ok(()),
            (Some((key, Some(value))), 0) => tree.insert(key, value).map(drop),
            (Some((key, None)), 0) => tree.remove(key).map(drop),
            (Some(first), _) => {
                let mut batch = sled::Batch::default();
                for (key, value) in std::iter::once(first).chain(writes) {
                    match value {
                        Some(value) => batch.insert(key, value),
                        None => batch.remove(key),
                    }
                }
                tree.apply_batch(batch)
            }
        }
    }
}

/// A group of writes that stand or fall together, and what to do once they
/// are durable.
pub(crate) struct Commit {
    pub(crate) batch: Batch,
    /// Runs on the committer, in commit order, after the flush.
    pub(crate) then: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// The store and its committer.
///
/// A failed commit stops all writing, so that `internal` always means
/// nothing was stored and the stored indexes never have a gap
/// (protocol.md 13.6): a commit that sled fails to apply is not stored (its
/// writes stand or fall together), and every commit after it is refused
/// unapplied. A flush that fails leaves what it covered neither known
/// stored nor known lost: none of their follow-ups runs (no reply is sent),
/// and the process exits, so that the relay starts again from what is on
/// disk, as PostgreSQL does after a failed fsync. A relay that fails to
/// apply a commit exits too, once what was applied before it is flushed.
#[derive(Clone)]
pub(crate) struct Store {
    tree: sled::Tree,
    commits: mpsc::Sender<Commit>,
    failed: Arc<AtomicBool>,
}

/// The exit status of a relay whose store failed.
const EXIT_STORE_FAILED: i32 = 75;

impl Store {
    /// Open (or create) the store in `dir` and start its committer, which
    /// stops once every `Store` clone is dropped and all commits are done.
    /// With `durable` false (`--unsafe-ack-before-commit`, a benchmarking
    /// aid) a commit's follow-up runs before the flush.
    pub(crate) fn open(
        dir: &Path,
        queue: usize,
        metrics: std::sync::Arc<Metrics>,
        durable: bool,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let tree = db.open_tree("caucus")?;
        let (commits, rx) = mpsc::channel(queue);
        let failed = Arc::new(AtomicBool::new(false));
        let committer = tokio::spawn(run_committer(
            db,
            tree.clone(),
            rx,
            metrics,
            durable,
            failed.clone(),
        ));
        Ok((
            Self {
                tree,
                commits,
                failed,
            },
            committer,
        ))
    }

    /// Queue `commit` without waiting; fails at once if the queue is full,
    /// or if an earlier commit failed.
    pub(crate) fn submit(&self, commit: Commit) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Failed);
        }
        self.commits.try_send(commit).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })
    }

    /// Apply `batch` durably and wait for it.
    pub(crate) async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.queue(batch)?.await
    }

    /// Queue `batch` now, in order with every commit queued before it, and
    /// wait for it to be durable later (when the queue must be kept in
    /// order under a lock that the wait may not hold).
    pub(crate) fn queue(
        &self,
        batch: Batch,
    ) -> Result<impl Future<Output = Result<(), StoreError>> + use<>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Commit {
            batch,
            then: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        })?;
        Ok(async move {
            rx.await
                .map_err(|_| StoreError::Closed)?
                .map_err(StoreError::Corrupt)
        })
    }

    /// One value.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.tree.get(key)?)
    }

    /// A JSON record.
    pub(crate) fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.get(key)?
            .map(|v| serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Values whose keys start with `prefix`, in key order.
    pub(crate) fn scan(&self, prefix: &[u8]) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|r| r.map_err(StoreError::from))
            .collect()
    }

    /// Up to `limit` entries with keys in `[from, to]`, in key order.
    pub(crate) fn range(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        self.tree
            .range(from..=to)
            .take(limit)
            .map(|r| r.map_err(StoreError::from))
            .collect()
    }

    /// The last key starting with `prefix`.
    pub(crate) fn last_key(&self, prefix: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self
            .tree
            .scan_prefix(prefix)
            .keys()
            .next_back()
            .transpose()?)
    }

    /// Every record of a session (all but its deletion statement): each
    /// key, its kind and its stored size (key and value).
    pub(crate) fn session_records(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(Kind, sled::IVec, u64)>, StoreError> {
        let mut records = Vec::new();
        for kind in [
            Kind::Session,
            Kind::Roster,
            Kind::Bundle,
            Kind::Log,
            Kind::Invite,
            Kind::Waiting,
            Kind::Presence,
            Kind::Document,
            Kind::Chunk,
        ] {
            for item in self.tree.scan_prefix(key(kind, session, &[])) {
                let (k, v) = item?;
                let size = (k.len() + v.len()) as u64;
                records.push((kind, k, size));
            }
        }
        Ok(records)
    }

    /// The ids of the sessions with a record of `kind`.
    pub(crate) fn sessions(&self, kind: Kind) -> Result<Vec<SessionId>, StoreError> {
        self.tree
            .scan_prefix([kind as u8])
            .keys()
            .map(|k| {
                let k = k?;
                k.get(1..17)
                    .and_then(|b| b.try_into().ok())
                    .map(SessionId)
                    .ok_or_else(|| StoreError::Corrupt("session key".into()))
            })
            .collect()
    }
}

/// Commits applied but not yet flushed, with their follow-ups.
type Applied = Vec<(
    Result<(), String>,
    Box<dyn FnOnce(Result<(), String>) + Send>,
)>;

/// Apply queued commits in order, up to 512 at a time, and hand each group to
/// the flusher; applying the next group overlaps with flushing the last.
/// Not `durable`: run each follow-up as soon as its commit is applied and
/// leave the flush to sled's own background flusher (every 500 ms).
async fn run_committer(
    db: sled::Db,
    tree: sled::Tree,
    mut rx: mpsc::Receiver<Commit>,
    metrics: std::sync::Arc<Metrics>,
    durable: bool,
    failed: Arc<AtomicBool>,
) {
    const MAX_GROUP: usize = 512;
    let (to_flusher, applied_groups) = mpsc::channel(4);
    let flusher = tokio::spawn(run_flusher(
        db.clone(),
        applied_groups,
        metrics.clone(),
        failed.clone(),
    ));
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let started = Instant::now();
        let size = group.len();
        let mut applied: Applied = Vec::with_capacity(size);
        for Commit { batch, then } in group.drain(..) {
            let result = if failed.load(Ordering::Acquire) {
                Err(StoreError::Failed.to_string())
            } else {
                batch.apply(&tree).map_err(|e| {
                    tracing::error!(error = %e, "a commit failed: the store takes no more writes");
                    failed.store(true, Ordering::Release);
                    e.to_string()
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
        } else if to_flusher.send((started, applied)).await.is_err() {
            break;
        }
    }
    drop(to_flusher);
    let _ = flusher.await;
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
    metrics: std::sync::Arc<Metrics>,
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Commits queued together, of one write and of several, must leave
    /// what applying them one after another gives, and their follow-ups
    /// must run in commit order, after the flush.
    #[tokio::test(flavor = "current_thread")]
    async fn a_group_of_commits_applies_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) =
            Store::open(dir.path(), 16, Arc::new(Metrics::default()), true).unwrap();
        let ran = Arc::new(Mutex::new(Vec::new()));
        type Write = (&'static [u8], Option<&'static [u8]>);
        let writes: [&[Write]; 4] = [
            &[(b"a", Some(b"1")), (b"b", Some(b"1"))],
            &[(b"a", None)],
            &[(b"b", Some(b"2")), (b"c", Some(b"1"))],
            &[(b"c", None), (b"c", Some(b"3"))],
        ];
        // Submitted before the committer runs (one thread), so one group.
        for (n, commit) in writes.iter().enumerate() {
            let mut batch = Batch::default();
            for (key, value) in commit.iter() {
                match value {
                    Some(v) => batch.insert(*key, *v),
                    None => batch.remove(*key),
                }
            }
            let ran = ran.clone();
            store
                .submit(Commit {
                    batch,
                    then: Box::new(move |r| ran.lock().unwrap().push((n, r))),
                })
                .unwrap();
        }
        store.commit(Batch::default()).await.unwrap();
        assert_eq!(
            *ran.lock().unwrap(),
            (0..4).map(|n| (n, Ok(()))).collect::<Vec<_>>()
        );
        let value = |k: &[u8]| store.get(k).unwrap().map(|v| v.to_vec());
        assert_eq!(value(b"a"), None);
        assert_eq!(value(b"b"), Some(b"2".to_vec()));
        assert_eq!(value(b"c"), Some(b"3".to_vec()));
        drop(store);
        committer.await.unwrap();
        // And it is on disk. (sled's flusher thread lets go of the
        // directory's lock a moment after the last handle is dropped.)
        let db = (0..100)
            .find_map(|_| {
                sled::open(dir.path())
                    .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(50)))
                    .ok()
            })
            .unwrap();
        let tree = db.open_tree("caucus").unwrap();
        assert_eq!(tree.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(tree.get(b"a").unwrap(), None);
    }
}
