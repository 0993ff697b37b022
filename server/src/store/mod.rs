//! The relay's durable store: the records of `docs/security.md` §2, kept by
//! one of two engines behind one interface.
//!
//! - **sled** ([`sled`]), embedded in the relay's data directory: the
//!   default, for one relay on one machine.
//! - **PostgreSQL** ([`postgres`]), for relays that share one database
//!   (docs/operations.md, "Running several relays"): one table per kind of
//!   record, made by the migrations in `server/migrations/`.
//!
//! Every record is named by a [`Key`]: its [`Kind`], its session, and what
//! distinguishes it within the session. Reads are `async`; writes are
//! [`Batch`]es that stand or fall together, queued in order to one
//! committer task per store, which makes many of them durable at once (one
//! sled flush, or one PostgreSQL transaction) and then runs each one's
//! follow-up in the order they were queued. The relay never reads a write
//! back before its follow-up has run.
//!
//! A failed commit stops all writing, so that `internal` always means
//! nothing was stored and the stored indexes never have a gap
//! (protocol.md 13.6): the commit is not stored (its writes stand or fall
//! together), and no commit after it is applied: PostgreSQL's store refuses
//! them until it has recovered, and a sled relay exits. What each engine
//! does next is in its module.
//!
//! Only ciphertext and the metadata of `docs/security.md` §2 are stored.

mod log;
pub(crate) mod postgres;
mod segments;
pub(crate) mod sled;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use caucus_protocol::crypto::Digest;
use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::{FileId, ID_LEN, InviteId, RoomId, SessionId};
use caucus_protocol::wire::PartyStatus;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::Metrics;

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("store: {0}")]
    Sled(#[from] ::sled::Error),
    /// The sled engine's envelope log failed.
    #[error("envelope log: {0}")]
    Log(#[from] std::io::Error),
    /// PostgreSQL failed, or could not be reached.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// A stored record did not decode.
    #[error("store record corrupt: {0}")]
    Corrupt(String),
    /// The committer has stopped (shutting down).
    #[error("store is shutting down")]
    Closed,
    /// Too many commits are waiting.
    #[error("store is overloaded")]
    Overloaded,
    /// The database cannot be reached just now: nothing was read or
    /// written, and trying again later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// An envelope as the store read it: its bytes, or why they could not be
/// read (its record is damaged), which harms that envelope alone.
pub(crate) type Stored = Result<Vec<u8>, StoreError>;

/// Where the relay keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// sled, in the relay's data directory.
    Sled,
    /// PostgreSQL, at a `postgres://` connection URL.
    Postgres(String),
}

/// The kinds of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// The session record (JSON): mediator fingerprint, when closed.
    Session,
    /// A signed roster, canonical bytes, by version.
    Roster,
    /// A signed key bundle, canonical bytes, numbered in publishing order.
    Bundle,
    /// An envelope, canonical bytes, by room and index.
    Log,
    /// An invite record (JSON): token hash, expiry, joiner.
    Invite,
    /// A waiting join request, canonical bytes, by invite.
    Waiting,
    /// The session's presence (JSON).
    Presence,
    /// A document record (JSON), by file.
    Document,
    /// A document's chunk, as uploaded, by file and index.
    Chunk,
    /// After erasure: the signed deletion statement, canonical bytes.
    Deleted,
}

impl Kind {
    /// Every kind, each once, in the order declared (so `kind as usize` is
    /// its place here), the deletion statement last.
    pub(crate) const ALL: [Kind; 10] = [
        Kind::Session,
        Kind::Roster,
        Kind::Bundle,
        Kind::Log,
        Kind::Invite,
        Kind::Waiting,
        Kind::Presence,
        Kind::Document,
        Kind::Chunk,
        Kind::Deleted,
    ];

    /// Every kind of a session's records but its deletion statement, in
    /// the order erasure lists them.
    pub(crate) const OF_A_SESSION: &'static [Kind] = match Kind::ALL.split_last() {
        Some((_, rest)) => rest,
        None => &[],
    };
}

/// The name of one record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Session(SessionId),
    Roster(SessionId, u64),
    Bundle(SessionId, u64),
    Log(SessionId, RoomId, u64),
    Invite(SessionId, InviteId),
    Waiting(SessionId, InviteId),
    Presence(SessionId),
    Document(SessionId, FileId),
    Chunk(SessionId, FileId, u32),
    Deleted(SessionId),
}

impl Key {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Key::Session(_) => Kind::Session,
            Key::Roster(..) => Kind::Roster,
            Key::Bundle(..) => Kind::Bundle,
            Key::Log(..) => Kind::Log,
            Key::Invite(..) => Kind::Invite,
            Key::Waiting(..) => Kind::Waiting,
            Key::Presence(_) => Kind::Presence,
            Key::Document(..) => Kind::Document,
            Key::Chunk(..) => Kind::Chunk,
            Key::Deleted(_) => Kind::Deleted,
        }
    }

    pub(crate) fn session(&self) -> &SessionId {
        match self {
            Key::Session(s)
            | Key::Roster(s, _)
            | Key::Bundle(s, _)
            | Key::Log(s, ..)
            | Key::Invite(s, _)
            | Key::Waiting(s, _)
            | Key::Presence(s)
            | Key::Document(s, _)
            | Key::Chunk(s, ..)
            | Key::Deleted(s) => s,
        }
    }

    /// Its length as the sled store spells it: what a record's size counts
    /// besides its value, on either engine, so that a deletion statement
    /// says the same number of bytes whichever engine kept them.
    pub(crate) fn len(&self) -> u64 {
        let rest = match self {
            Key::Session(_) | Key::Presence(_) | Key::Deleted(_) => 0,
            Key::Roster(..) | Key::Bundle(..) => 8,
            Key::Log(..) => ID_LEN + 8,
            Key::Invite(..) | Key::Waiting(..) | Key::Document(..) => ID_LEN,
            Key::Chunk(..) => ID_LEN + 4,
        };
        (1 + ID_LEN + rest) as u64
    }
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

/// Decode a JSON record.
pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Writes that stand or fall together, in order: a later write to a key
/// replaces an earlier one, as if applied one after another.
#[derive(Default)]
pub(crate) struct Batch {
    writes: Vec<(Key, Option<Vec<u8>>)>,
    /// A store that failed may take writes again once it reaches this
    /// (see [`Store::resume`]).
    resume: bool,
}

impl Batch {
    /// Set `key` to `value`.
    pub(crate) fn insert(&mut self, key: Key, value: impl Into<Vec<u8>>) {
        self.writes.push((key, Some(value.into())));
    }

    /// Remove `key`.
    pub(crate) fn remove(&mut self, key: Key) {
        self.writes.push((key, None));
    }
}

/// What a commit's follow-up is told: `Ok`, or why nothing was stored.
pub(crate) type Outcome = Result<(), StoreError>;

/// A group of writes that stand or fall together, and what to do once they
/// are durable.
pub(crate) struct Commit {
    pub(crate) batch: Batch,
    /// Runs on the committer, in commit order, once the batch is durable
    /// (or known not stored).
    pub(crate) then: Box<dyn FnOnce(Outcome) + Send>,
}

/// The engine behind a [`Store`]: how it reads.
#[derive(Clone)]
enum Engine {
    Sled(sled::Reader),
    Postgres(postgres::Reader),
}

/// The store: its reads, and the queue to its committer.
#[derive(Clone)]
pub(crate) struct Store {
    engine: Engine,
    commits: mpsc::Sender<Commit>,
    failed: Arc<AtomicBool>,
    failures: watch::Receiver<u64>,
}

/// The exit status of a relay whose store failed.
pub(crate) const EXIT_STORE_FAILED: i32 = 75;

/// The most commits one durable write carries.
pub(crate) const MAX_GROUP: usize = 512;

/// What opening a store gives: the store, and its committer's task, which
/// ends once every [`Store`] clone is dropped and every queued commit is
/// done.
pub(crate) type Opened = (Store, CommitterTask);

/// A store's committer task: an error if it could not close the store
/// cleanly (nothing is lost; the next start has more to read back).
pub(crate) type CommitterTask = tokio::task::JoinHandle<Result<(), StoreError>>;

impl Store {
    /// Open (or create) the store at `location` (sled in `dir`) and start
    /// its committer, with room for `queue` waiting commits. With `durable`
    /// false (`--unsafe-ack-before-commit`, a benchmarking aid, sled only) a
    /// commit's follow-up runs before the flush. With `fence`, a cluster
    /// node's name (PostgreSQL only), a commit is stored only while the node
    /// holds the leases of the sessions it writes to.
    pub(crate) async fn open(
        location: &StoreLocation,
        dir: &std::path::Path,
        queue: usize,
        metrics: Arc<Metrics>,
        durable: bool,
        fence: Option<&str>,
    ) -> Result<Opened, StoreError> {
        let (commits, rx) = mpsc::channel(queue);
        let failed = Arc::new(AtomicBool::new(false));
        let (failed_again, failures) = watch::channel(0);
        let (engine, committer) = match location {
            StoreLocation::Sled => {
                let (reader, committer) = sled::open(dir, rx, metrics, durable)?;
                (Engine::Sled(reader), committer)
            }
            StoreLocation::Postgres(url) => {
                let (reader, committer) =
                    postgres::open(url, rx, metrics, failed.clone(), failed_again, fence).await?;
                (Engine::Postgres(reader), committer)
            }
        };
        Ok((
            Self {
                engine,
                commits,
                failed,
                failures,
            },
            committer,
        ))
    }

    /// Whether it still takes writes (no commit has failed).
    pub(crate) fn healthy(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }

    /// Resolves each time a commit fails and the store stops taking writes
    /// until told to [`resume`](Self::resume) (PostgreSQL); never for sled,
    /// whose relay exits instead.
    pub(crate) fn failures(&self) -> watch::Receiver<u64> {
        self.failures.clone()
    }

    /// After a failure, once whoever writes holds nothing in memory that
    /// the store may lack: take writes again, from behind every commit
    /// queued before now, as soon as the database answers.
    pub(crate) fn resume(&self) -> Result<(), StoreError> {
        self.enqueue(Commit {
            batch: Batch {
                writes: Vec::new(),
                resume: true,
            },
            then: Box::new(|_| {}),
        })
    }

    /// Queue `commit` without waiting; fails at once if the queue is full,
    /// or if an earlier commit failed (PostgreSQL: a sled relay whose
    /// commit fails exits).
    pub(crate) fn submit(&self, commit: Commit) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the store is recovering".into()));
        }
        self.enqueue(commit)
    }

    fn enqueue(&self, commit: Commit) -> Result<(), StoreError> {
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
        Ok(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }

    /// One record.
    pub(crate) async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.engine {
            Engine::Sled(r) => r.get(key),
            Engine::Postgres(r) => r.get(key).await,
        }
    }

    /// A JSON record.
    pub(crate) async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        key: &Key,
    ) -> Result<Option<T>, StoreError> {
        self.get(key).await?.map(|v| from_json(&v)).transpose()
    }

    /// Every record of `kind` in `session`, in key order (for the log: by
    /// room, then index).
    pub(crate) async fn records(
        &self,
        kind: Kind,
        session: &SessionId,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        match &self.engine {
            Engine::Sled(r) => r.records(kind, session),
            Engine::Postgres(r) => r.records(kind, session).await,
        }
    }

    /// Up to `limit` envelopes of a room with index in `from..=to`, in
    /// index order, each as read.
    pub(crate) async fn log(
        &self,
        session: &SessionId,
        room: &RoomId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Stored)>, StoreError> {
        match &self.engine {
            Engine::Sled(r) => r.log(session, room, from, to, limit),
            Engine::Postgres(r) => r.log(session, room, from, to, limit).await,
        }
    }

    /// Every record of `kind`, in every session.
    pub(crate) async fn all(&self, kind: Kind) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        match &self.engine {
            Engine::Sled(r) => r.all(kind),
            Engine::Postgres(r) => r.all(kind).await,
        }
    }

    /// Every record of a session but its deletion statement: each key and
    /// its stored size (the key as [`Key::len`] counts it, and the value).
    pub(crate) async fn session_records(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(Key, u64)>, StoreError> {
        match &self.engine {
            Engine::Sled(r) => r.session_records(session),
            Engine::Postgres(r) => r.session_records(session).await,
        }
    }
}

#[cfg(test)]
mod tests;
