//! The sled engine: one tree, keys spelt as bytes that sort as the records
//! do, written in groups by one committer task so that many acknowledged
//! envelopes share one flush. The envelopes themselves are appended to the
//! envelope log beside the tree ([`super::segments`]), and the tree keeps
//! where, a block of positions at a time ([`super::log`]).
//!
//! A commit of one write is applied with a plain `insert`, and only a
//! commit of several with sled's `apply_batch`: sled 0.34 writes out and
//! syncs its IO buffer twice for every `apply_batch`, whatever its size,
//! which cost about 150 µs of CPU per post when every post was applied that
//! way (docs/performance.md).
//!
//! | key | value |
//! | --- | --- |
//! | `S` session | session record (JSON): mediator fingerprint, when closed |
//! | `R` session version(u64 BE) | signed roster, canonical bytes |
//! | `B` session seq(u64 BE) | signed key bundle, canonical bytes |
//! | `E` session room first-index(u64 BE) | a block of envelope positions: for each, index(u64 BE), segment(u64 BE), offset(u64 BE), length(u32 BE) |
//! | `G` session segment(u64 BE) | nothing: the session has envelopes in that segment |
//! | `K` | the envelope log's checkpoint: segment(u64 BE), offset(u64 BE) |
//! | `I` session invite | invite record (JSON): token hash, expiry, state |
//! | `W` session invite | a waiting join request, canonical bytes |
//! | `P` session | presence (JSON): the party members' statuses and the mediators' locations |
//! | `F` session file | document record (JSON): uploader, padded size, chunks held, when begun |
//! | `C` session file index(u32 BE) | a document's chunk, as uploaded |
//! | `D` session | after erasure: the signed deletion statement, canonical bytes |
//!
//! A group's flush syncs the segment its envelopes were appended to and,
//! if the group wrote anything else, flushes the tree, both at once; a
//! group of posts only needs the first (see [`super::log`]).
//!
//! A flush that fails leaves what it covered neither known stored nor known
//! lost: none of their follow-ups runs (no reply is sent), and the process
//! exits, so that the relay starts again from what is on disk, as
//! PostgreSQL does after a failed fsync. A relay that fails to apply a
//! commit, or to append to the envelope log, exits there and then, with
//! nothing applied since the last flush answered, and flushes nothing more:
//! when sled 0.34 fails to write a page of its own (one of more than
//! 128 KiB, which it keeps in a file under `blobs/`), it keeps the place
//! the page took in its log buffer, and no later flush of the tree ever
//! ends, not even the one sled makes when the last handle on a tree goes.
//! For the same reason a relay that stops and fails to write its last
//! checkpoint neither flushes nor lets go of its handles.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caucus_protocol::ids::{ID_LEN, RoomId, SessionId};
use tokio::sync::mpsc;

use super::log::{Log, Tails};
use super::segments::{SEGMENT_BYTES, Segments};
use super::{
    Commit, CommitterTask, EXIT_STORE_FAILED, Key, Kind, MAX_GROUP, Outcome, StoreError, Stored,
};
use crate::metrics::Metrics;

impl Kind {
    /// The first byte of its keys.
    pub(super) fn tag(self) -> u8 {
        match self {
            Kind::Session => b'S',
            Kind::Roster => b'R',
            Kind::Bundle => b'B',
            Kind::Log => b'E',
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
pub(super) fn prefix(kind: Kind, session: &SessionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ID_LEN + ID_LEN + 8);
    k.push(kind.tag());
    k.extend_from_slice(&session.0);
    k
}

/// A key as sled holds it.
pub(super) fn encode(key: &Key) -> Vec<u8> {
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
pub(super) fn decode(kind: Kind, bytes: &[u8]) -> Result<Key, StoreError> {
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

/// Reads from the sled tree and the envelope log.
#[derive(Clone)]
pub(crate) struct Reader {
    tree: sled::Tree,
    segments: Segments,
    tails: Tails,
}

impl Reader {
    pub(super) fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        if let Key::Log(session, room, index) = key {
            let found = self.log(session, room, *index, *index, 1)?.pop();
            return found.map(|(_, envelope)| envelope).transpose();
        }
        Ok(self.tree.get(encode(key))?.map(|v| v.to_vec()))
    }

    /// The records of `kind` from `from` on, as the tree keeps them.
    fn scan(
        &self,
        kind: Kind,
        from: &[u8],
    ) -> impl Iterator<Item = Result<(Key, sled::IVec), StoreError>> {
        self.tree.scan_prefix(from).map(move |item| {
            let (k, v) = item?;
            Ok((decode(kind, &k)?, v))
        })
    }

    /// Every envelope of a session, by room, then index.
    fn envelopes(&self, session: &SessionId) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let mut envelopes = Vec::new();
        let mut positions = self
            .tails
            .session(&self.tree, session)?
            .into_iter()
            .peekable();
        while let Some((room, index, position)) = positions.next() {
            let mut these = vec![(index, position)];
            while let Some((_, index, position)) = positions.next_if(|(r, ..)| *r == room) {
                these.push((index, position));
            }
            for (index, envelope) in self.segments.read_room(session, &room, these)? {
                envelopes.push((Key::Log(*session, room, index), envelope?));
            }
        }
        Ok(envelopes)
    }

    pub(super) fn records(
        &self,
        kind: Kind,
        session: &SessionId,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        if kind == Kind::Log {
            return self.envelopes(session);
        }
        self.scan(kind, &prefix(kind, session))
            .map(|item| item.map(|(key, value)| (key, value.to_vec())))
            .collect()
    }

    pub(super) fn log(
        &self,
        session: &SessionId,
        room: &RoomId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Stored)>, StoreError> {
        let positions = self
            .tails
            .positions(&self.tree, session, room, from, to, limit)?;
        self.segments.read_room(session, room, positions)
    }

    pub(super) fn all(&self, kind: Kind) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        if kind != Kind::Log {
            return self
                .scan(kind, &[kind.tag()])
                .map(|item| item.map(|(key, value)| (key, value.to_vec())))
                .collect();
        }
        let mut sessions: Vec<SessionId> = Vec::new();
        for key in self.tree.scan_prefix([kind.tag()]).keys() {
            let session = *decode(kind, &key?)?.session();
            if sessions.last() != Some(&session) {
                sessions.push(session);
            }
        }
        let mut all = Vec::new();
        for session in sessions {
            all.extend(self.envelopes(&session)?);
        }
        Ok(all)
    }

    pub(super) fn session_records(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(Key, u64)>, StoreError> {
        let mut records = Vec::new();
        for &kind in Kind::OF_A_SESSION {
            if kind == Kind::Log {
                for (room, index, position) in self.tails.session(&self.tree, session)? {
                    let key = Key::Log(*session, room, index);
                    records.push((key.clone(), key.len() + u64::from(position.len)));
                }
                continue;
            }
            for item in self.scan(kind, &prefix(kind, session)) {
                let (key, value) = item?;
                let size = key.len() + value.len() as u64;
                records.push((key, size));
            }
        }
        Ok(records)
    }
}

/// The most sled keeps of the tree in memory (its default is 1 GiB). A
/// relay's memory should grow with its connections and the sessions they
/// follow, not with what it has stored: what is written is read back only
/// by catch-ups, and the pages sled evicts stay in the system's file cache
/// (docs/performance.md, "A mediation service's day").
const CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// Open (or create) the sled store in `dir`, with its envelope log, and
/// start its committer on `commits`.
pub(super) fn open(
    dir: &Path,
    commits: mpsc::Receiver<Commit>,
    metrics: Arc<Metrics>,
    durable: bool,
) -> Result<(Reader, CommitterTask), StoreError> {
    wait_unlocked(dir);
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .open()?;
    let tree = db.open_tree("caucus")?;
    let (segments, appender) = Segments::open(dir)?;
    let log = Log::open(&db, &tree, segments, appender, SEGMENT_BYTES)?;
    let reader = Reader {
        tree: tree.clone(),
        segments: log.segments.clone(),
        tails: log.tails.clone(),
    };
    let dir = dir.to_path_buf();
    let committer = tokio::task::spawn_blocking(move || {
        let closed = run_committer(db, tree, log, commits, &metrics, durable);
        // The relay's stop awaits this, once nothing else holds the store:
        // its files are then let go too.
        wait_unlocked(&dir);
        closed
    });
    Ok((reader, committer))
}

/// Wait, for a while, until no one holds the lock on the tree's file.
/// sled lets go of it only once the last of its IO threads working for the
/// tree has, a moment after the tree is dropped: so a relay started again
/// in the same process, on the same directory, right after it stopped,
/// could be refused, and so could a look into a stopped relay's tree. So
/// the committer waits for it once it has let go of the tree (a stop
/// awaits the committer), and an opening waits for it too. Past the wait,
/// sled's own opening says why it cannot.
fn wait_unlocked(dir: &Path) {
    const PATIENCE: Duration = Duration::from_secs(2);
    let Ok(file) = File::open(dir.join("db")) else {
        return; // a new store
    };
    let since = Instant::now();
    while let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        if since.elapsed() > PATIENCE {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The follow-ups of commits applied but not yet flushed: each is stored
/// once the flush is done.
type Applied = Vec<Box<dyn FnOnce(Outcome) + Send>>;

/// A group applied, for the flusher: when it began, its commits, the
/// segment to sync, whether the tree must be flushed, and the segments to
/// delete once the group is durable.
struct Group {
    started: Instant,
    applied: Applied,
    file: Option<Arc<File>>,
    tree: bool,
    unheld: Vec<u64>,
}

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
    tree: sled::Tree,
    mut log: Log,
    mut rx: mpsc::Receiver<Commit>,
    metrics: &Arc<Metrics>,
    durable: bool,
) -> Result<(), StoreError> {
    let (to_flusher, applied_groups) = mpsc::channel(4);
    let runtime = tokio::runtime::Handle::current();
    let flusher = runtime.spawn(run_flusher(
        db.clone(),
        log.segments.clone(),
        applied_groups,
        metrics.clone(),
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
        let mut wrote_tree = false;
        for Commit { batch, then } in group.drain(..) {
            wrote_tree |= log
                .apply(&tree, batch)
                .unwrap_or_else(|e| stop_failed("a commit", &e));
            applied.push(then);
        }
        let (file, unheld) = log
            .write(&tree)
            .and_then(|file| {
                let mut unheld = log.reclaim(&tree)?;
                unheld.extend(log.rotate(&tree)?);
                Ok((file, unheld))
            })
            .unwrap_or_else(|e| stop_failed("writing the envelope log", &e));
        if !durable {
            metrics.observe_commit(started.elapsed(), size);
            remove_segments(&log.segments, &unheld);
            for then in applied {
                then(Ok(()));
            }
        } else if to_flusher
            .blocking_send(Group {
                started,
                applied,
                file,
                tree: wrote_tree,
                unheld,
            })
            .is_err()
        {
            break;
        }
    }
    drop(to_flusher);
    let _ = runtime.block_on(flusher);
    // Stopping: the next opening need read nothing back into the tails.
    match log.checkpoint(&tree, None) {
        Ok(()) => {
            db.flush()?;
            Ok(())
        }
        Err(e) => {
            // Nothing is lost: the next opening reads the envelope log
            // back from the checkpoint before. But no flush (module
            // documentation), and sled flushes when the last handle on a
            // tree goes: these never go.
            tracing::error!(error = %e, "the envelope log's checkpoint was not written");
            std::mem::forget((db, tree));
            Err(e)
        }
    }
}

/// How long a flush may take before the relay stops as if it had failed
/// ([`run_flusher`]): far beyond any flush of a working disk.
const FLUSH_LIMIT: Duration = Duration::from_secs(60);

/// A write or a flush failed: stop the relay, to start again from what is
/// on disk (module documentation).
fn stop_failed(what: &str, e: &StoreError) -> ! {
    tracing::error!(error = %e, "{what} failed: stopping, to start again from what is on disk");
    std::process::exit(EXIT_STORE_FAILED);
}

/// Delete segments no session holds any more.
fn remove_segments(segments: &Segments, unheld: &[u64]) {
    for &id in unheld {
        if let Err(e) = segments.remove(id) {
            tracing::warn!(segment = id, error = %e, "an envelope log segment no one holds was not deleted");
        }
    }
}

/// Flush the groups the committer has applied, every group waiting at once,
/// then run their follow-ups in commit order. A flush syncs the segments
/// the groups appended to and, if any group wrote anything else, flushes the
/// tree, which covers every write applied before it starts; so no follow-up
/// runs before its batch is durable. Flushes start at least
/// `MIN_FLUSH_INTERVAL` apart: each costs CPU whatever it carries (about
/// 300 µs in sled), so under light load the groups that arrive within that
/// interval share one.
///
/// A flush that has not ended after [`FLUSH_LIMIT`] stops the relay as one
/// that failed: sled may never end one after a failed write of its own
/// (module documentation), and the committer's are not its only writes (a
/// read may rewrite a page). A relay waiting on it would answer nothing
/// and never stop.
async fn run_flusher(
    db: sled::Db,
    segments: Segments,
    mut rx: mpsc::Receiver<Group>,
    metrics: Arc<Metrics>,
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
        let mut files: Vec<Arc<File>> = Vec::new();
        for file in groups.iter().filter_map(|g| g.file.as_ref()) {
            if !files.iter().any(|f| Arc::ptr_eq(f, file)) {
                files.push(file.clone());
            }
        }
        // Groups that appended no envelope have no segment to sync.
        let synced = async move {
            if files.is_empty() {
                return Ok(());
            }
            tokio::task::spawn_blocking(move || files.iter().try_for_each(|f| f.sync_data()))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        let tree = groups.iter().any(|g| g.tree);
        let flushed = async {
            if tree {
                db.flush_async().await.map(drop)
            } else {
                Ok(())
            }
        };
        let (synced, flushed) =
            tokio::time::timeout(FLUSH_LIMIT, async { tokio::join!(synced, flushed) })
                .await
                .unwrap_or_else(|_| {
                    let late = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("not done after {} s", FLUSH_LIMIT.as_secs()),
                    );
                    stop_failed("a flush", &StoreError::Log(late))
                });
        if let Err(e) = synced
            .map_err(StoreError::Log)
            .and(flushed.map_err(StoreError::Sled))
        {
            // What the flush covered may or may not be on disk: nothing is
            // said of it, and the relay starts again from the disk.
            stop_failed("a flush", &e);
        }
        for group in groups.drain(..) {
            metrics.observe_commit(group.started.elapsed(), group.applied.len());
            remove_segments(&segments, &group.unheld);
            for then in group.applied {
                then(Ok(()));
            }
        }
    }
}
