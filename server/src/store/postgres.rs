//! The PostgreSQL engine: one table per [`Kind`], made by the migrations in
//! `server/migrations/` (applied on open, under an advisory lock so that
//! relays starting together apply them once), with a column for each part
//! of the key and the record's bytes as the value, exactly what sled keeps.
//!
//! | kind | table | key columns |
//! | --- | --- | --- |
//! | session | `sessions` | session |
//! | roster | `rosters` | session, version |
//! | bundle | `bundles` | session, seq |
//! | log | `envelopes` | session, room, idx |
//! | invite | `invites` | session, invite |
//! | waiting | `waiting` | session, invite |
//! | presence | `presence` | session |
//! | document | `documents` | session, file |
//! | chunk | `chunks` | session, file, idx |
//! | deletion statement | `deletions` | session |
//!
//! Identifiers are `bytea` and indexes `bigint`, so that the primary keys
//! sort as sled's keys do; an index above `i64::MAX` is refused.
//!
//! Reads use a small pool of connections. Writes go through one committer
//! task on one connection of its own: each group of queued commits is one
//! transaction, of each key's last write in the group (an upsert or a
//! delete), the statements pipelined, committed with
//! `synchronous_commit` on; only then do the group's follow-ups run, in
//! order. One transaction at a time, so follow-ups run in commit order and
//! no group is durable unless every earlier one is.
//!
//! A group that fails before its `COMMIT` (the database out of reach, a
//! write refused, or — under a fence — a session another node now
//! decides for) is stored in no part: each of its commits is refused with
//! `unavailable`, and so is every later one, until the relay has let go of
//! everything it held in memory ([`super::Store::failures`]) and resumes
//! ([`super::Store::resume`]); the committer then connects again, as often
//! as it takes, and takes writes again. A `COMMIT` whose outcome is lost
//! with the connection is asked of PostgreSQL over a new connection
//! (`txid_status` of the transaction's id, taken before the `COMMIT`): its
//! follow-ups run as it turned out; if the answer cannot be had within 30
//! seconds, the relay exits, to start again from what the database holds.
//!
//! Never logged: the connection URL's password, and any record.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use caucus_protocol::ids::{FileId, ID_LEN, InviteId, RoomId, SessionId};
use futures_util::future::try_join_all;
use tokio::sync::{mpsc, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use super::{
    Batch, Commit, CommitterTask, EXIT_STORE_FAILED, Key, Kind, MAX_GROUP, StoreError, Stored,
};
use crate::metrics::Metrics;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// How many connections the readers share.
const READERS: usize = 8;

/// The advisory lock held while the migrations run (any number unique to
/// this use: "caucus" in ASCII).
const MIGRATION_LOCK: i64 = 0x6361_7563_7573;

impl Kind {
    /// Its table, and the columns of its key after the session.
    fn table(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Kind::Session => ("sessions", &[]),
            Kind::Roster => ("rosters", &["version"]),
            Kind::Bundle => ("bundles", &["seq"]),
            Kind::Log => ("envelopes", &["room", "idx"]),
            Kind::Invite => ("invites", &["invite"]),
            Kind::Waiting => ("waiting", &["invite"]),
            Kind::Presence => ("presence", &[]),
            Kind::Document => ("documents", &["file"]),
            Kind::Chunk => ("chunks", &["file", "idx"]),
            Kind::Deleted => ("deletions", &[]),
        }
    }
}

/// The SQL of one kind's statements.
struct Sql {
    get: String,
    records: String,
    all: String,
    sizes: String,
    upsert: String,
    delete: String,
}

impl Sql {
    fn of(kind: Kind) -> Self {
        let (table, rest) = kind.table();
        let columns: Vec<&str> = std::iter::once("session")
            .chain(rest.iter().copied())
            .collect();
        let key = columns.join(", ");
        let rest_key = rest.join(", ");
        let matches = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ${}", i + 1))
            .collect::<Vec<_>>()
            .join(" AND ");
        let placeholders = (1..=columns.len() + 1)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        // A kind keyed by the session alone has one record per session.
        let (select_rest, order_rest) = if rest.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{rest_key}, "), format!(" ORDER BY {rest_key}"))
        };
        Self {
            get: format!("SELECT value FROM {table} WHERE {matches}"),
            records: format!(
                "SELECT {select_rest}value FROM {table} WHERE session = $1{order_rest}"
            ),
            all: format!("SELECT {key}, value FROM {table} ORDER BY {key}"),
            sizes: format!(
                "SELECT {select_rest}octet_length(value)::bigint FROM {table} \
                 WHERE session = $1{order_rest}"
            ),
            upsert: format!(
                "INSERT INTO {table} ({key}, value) VALUES ({placeholders}) \
                 ON CONFLICT ({key}) DO UPDATE SET value = EXCLUDED.value"
            ),
            delete: format!("DELETE FROM {table} WHERE {matches}"),
        }
    }
}

/// A key's columns as PostgreSQL values: the session, then an identifier
/// (room, invite or file), then an index, each where the kind has one.
struct Params {
    session: Vec<u8>,
    id: Option<Vec<u8>>,
    index: Option<i64>,
}

impl Params {
    fn of(key: &Key) -> Result<Self, StoreError> {
        let (id, index): (Option<&[u8; ID_LEN]>, Option<u64>) = match key {
            Key::Session(_) | Key::Presence(_) | Key::Deleted(_) => (None, None),
            Key::Roster(_, n) | Key::Bundle(_, n) => (None, Some(*n)),
            Key::Log(_, room, index) => (Some(&room.0), Some(*index)),
            Key::Invite(_, invite) | Key::Waiting(_, invite) => (Some(&invite.0), None),
            Key::Document(_, file) => (Some(&file.0), None),
            Key::Chunk(_, file, index) => (Some(&file.0), Some(u64::from(*index))),
        };
        Ok(Self {
            session: key.session().0.to_vec(),
            id: id.map(|id| id.to_vec()),
            index: index.map(bigint).transpose()?,
        })
    }

    /// Them, in the key's column order, and then `value` if given.
    fn with<'a>(&'a self, value: Option<&'a Vec<u8>>) -> Vec<&'a (dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.session];
        if let Some(id) = &self.id {
            params.push(id);
        }
        if let Some(index) = &self.index {
            params.push(index);
        }
        if let Some(value) = value {
            params.push(value);
        }
        params
    }
}

/// An index as PostgreSQL's `bigint`.
fn bigint(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n)
        .map_err(|_| StoreError::Corrupt(format!("index {n} beyond PostgreSQL's bigint")))
}

/// A key of `kind` in `session` from a row whose columns from `first` on
/// are the rest of the key.
fn key_from(kind: Kind, session: SessionId, row: &Row, first: usize) -> Result<Key, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("a key of kind {kind:?}"));
    let id = |i: usize| -> Result<[u8; ID_LEN], StoreError> {
        let bytes: &[u8] = row.try_get(first + i).map_err(|_| corrupt())?;
        bytes.try_into().map_err(|_| corrupt())
    };
    let index = |i: usize| -> Result<u64, StoreError> {
        let n: i64 = row.try_get(first + i).map_err(|_| corrupt())?;
        u64::try_from(n).map_err(|_| corrupt())
    };
    Ok(match kind {
        Kind::Session => Key::Session(session),
        Kind::Presence => Key::Presence(session),
        Kind::Deleted => Key::Deleted(session),
        Kind::Roster => Key::Roster(session, index(0)?),
        Kind::Bundle => Key::Bundle(session, index(0)?),
        Kind::Log => Key::Log(session, RoomId(id(0)?), index(1)?),
        Kind::Invite => Key::Invite(session, InviteId(id(0)?)),
        Kind::Waiting => Key::Waiting(session, InviteId(id(0)?)),
        Kind::Document => Key::Document(session, FileId(id(0)?)),
        Kind::Chunk => Key::Chunk(
            session,
            FileId(id(0)?),
            u32::try_from(index(1)?).map_err(|_| corrupt())?,
        ),
    })
}

/// The value in column `i`.
fn value_at(row: &Row, i: usize) -> Result<Vec<u8>, StoreError> {
    row.try_get(i)
        .map_err(|_| StoreError::Corrupt("a record's value".into()))
}

/// A PostgreSQL failure in words: never a record's value, nor the URL.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Postgres(describe(&e))
}

/// Reads from the pool.
#[derive(Clone)]
pub(crate) struct Reader {
    pool: deadpool_postgres::Pool,
    sql: Arc<[Sql; Kind::ALL.len()]>,
}

impl Reader {
    fn sql(&self, kind: Kind) -> &Sql {
        &self.sql[kind as usize]
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Postgres(format!("no connection: {e}")))
    }

    pub(super) async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let Ok(params) = Params::of(key) else {
            // Beyond what PostgreSQL can hold, so never stored.
            return Ok(None);
        };
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql(key.kind()).get)
            .await
            .map_err(pg)?;
        let row = client
            .query_opt(&statement, &params.with(None))
            .await
            .map_err(pg)?;
        row.map(|row| value_at(&row, 0)).transpose()
    }

    pub(super) async fn records(
        &self,
        kind: Kind,
        session: &SessionId,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql(kind).records)
            .await
            .map_err(pg)?;
        let rows = client
            .query(&statement, &[&&session.0[..]])
            .await
            .map_err(pg)?;
        let last = kind.table().1.len();
        rows.iter()
            .map(|row| Ok((key_from(kind, *session, row, 0)?, value_at(row, last)?)))
            .collect()
    }

    pub(super) async fn log(
        &self,
        session: &SessionId,
        room: &RoomId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Stored)>, StoreError> {
        // No stored index is above i64::MAX.
        let (Ok(from), to) = (i64::try_from(from), i64::try_from(to).unwrap_or(i64::MAX)) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT idx, value FROM envelopes \
                 WHERE session = $1 AND room = $2 AND idx BETWEEN $3 AND $4 \
                 ORDER BY idx LIMIT $5",
            )
            .await
            .map_err(pg)?;
        let rows = client
            .query(
                &statement,
                &[&&session.0[..], &&room.0[..], &from, &to, &limit],
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|row| {
                let index: i64 = row
                    .try_get(0)
                    .map_err(|_| StoreError::Corrupt("a log index".into()))?;
                let index =
                    u64::try_from(index).map_err(|_| StoreError::Corrupt("a log index".into()))?;
                Ok((index, Ok(value_at(row, 1)?)))
            })
            .collect()
    }

    pub(super) async fn all(&self, kind: Kind) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql(kind).all)
            .await
            .map_err(pg)?;
        let rows = client.query(&statement, &[]).await.map_err(pg)?;
        let corrupt = || StoreError::Corrupt(format!("a key of kind {kind:?}"));
        let last = kind.table().1.len() + 1;
        rows.iter()
            .map(|row| {
                let session: &[u8] = row.try_get(0).map_err(|_| corrupt())?;
                let session = SessionId(session.try_into().map_err(|_| corrupt())?);
                // The rest of the key follows the session.
                let key = key_from(kind, session, row, 1)?;
                Ok((key, value_at(row, last)?))
            })
            .collect()
    }

    pub(super) async fn session_records(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(Key, u64)>, StoreError> {
        let client = self.client().await?;
        let mut statements = Vec::with_capacity(Kind::OF_A_SESSION.len());
        for &kind in Kind::OF_A_SESSION {
            let statement = client
                .prepare_cached(&self.sql(kind).sizes)
                .await
                .map_err(pg)?;
            statements.push((kind, statement));
        }
        // Pipelined on the one connection.
        let results = try_join_all(statements.iter().map(|(kind, statement)| {
            let client = &client;
            async move {
                let rows = client
                    .query(statement, &[&&session.0[..]])
                    .await
                    .map_err(pg)?;
                Ok::<_, StoreError>((*kind, rows))
            }
        }))
        .await?;
        let mut records = Vec::new();
        for (kind, rows) in results {
            let last = kind.table().1.len();
            for row in &rows {
                let key = key_from(kind, *session, row, 0)?;
                let value: i64 = row
                    .try_get(last)
                    .map_err(|_| StoreError::Corrupt("a record's size".into()))?;
                let value = u64::try_from(value)
                    .map_err(|_| StoreError::Corrupt("a record's size".into()))?;
                let size = key.len() + value;
                records.push((key, size));
            }
        }
        Ok(records)
    }
}

/// Where `config` points, for messages: hosts, ports and database, never
/// the user's password.
fn place(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "PostgreSQL at {} port {} database {}",
        if hosts.is_empty() {
            "localhost".into()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".into()
        } else {
            ports.join(",")
        },
        config.get_dbname().unwrap_or("(the user's)")
    )
}

/// Apply the migrations not yet applied, one relay at a time.
async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    let migrated = embedded::migrations::runner().run_async(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    migrated
        .map(drop)
        .map_err(|e| StoreError::Postgres(format!("migrating the schema: {e}")))
}

/// The committer's connection: its own, with its prepared writes.
struct Writer {
    client: tokio_postgres::Client,
    writes: Writes,
    /// The fence, with a node's name: `SELECT … FOR SHARE` of the leases a
    /// group's sessions must be held under.
    fence: Option<(Statement, String)>,
}

/// Connect the committer to `config` with `synchronous_commit` on, and
/// prepare its statements.
async fn writer(
    config: &tokio_postgres::Config,
    fence: Option<&str>,
) -> Result<Writer, StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot connect to {}: {}",
            place(config),
            describe(&e)
        ))
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %describe(&e), "the store's connection to PostgreSQL ended");
        }
    });
    client
        .batch_execute("SET synchronous_commit = on")
        .await
        .map_err(pg)?;
    let mut writes = Vec::with_capacity(Kind::ALL.len());
    for kind in Kind::ALL {
        let sql = Sql::of(kind);
        let upsert = client.prepare(&sql.upsert).await.map_err(pg)?;
        let delete = client.prepare(&sql.delete).await.map_err(pg)?;
        writes.push((upsert, delete));
    }
    let fence = match fence {
        Some(node) => Some((
            client
                .prepare(
                    "SELECT session FROM owners WHERE node = $1 AND session = ANY($2) FOR SHARE",
                )
                .await
                .map_err(pg)?,
            node.to_owned(),
        )),
        None => None,
    };
    Ok(Writer {
        client,
        writes,
        fence,
    })
}

/// Open the store at `url`: connect, apply the migrations, and start the
/// committer on `commits`. With `fence`, a node's name, every group of
/// commits is stored only while that node holds the lease of each session
/// it writes to (docs/cluster.md).
pub(super) async fn open(
    url: &str,
    commits: mpsc::Receiver<Commit>,
    metrics: Arc<Metrics>,
    failed: Arc<AtomicBool>,
    failures: watch::Sender<u64>,
    fence: Option<&str>,
) -> Result<(Reader, CommitterTask), StoreError> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Postgres(format!("the store's URL: {}", describe(&e))))?;
    let place = place(&config);
    {
        let (mut client, connection) = config.connect(NoTls).await.map_err(|e| {
            StoreError::Postgres(format!("cannot connect to {place}: {}", describe(&e)))
        })?;
        let connection = tokio::spawn(connection);
        migrate(&mut client).await?;
        drop(client);
        let _ = connection.await;
    }
    let writer = writer(&config, fence).await?;
    let sql = Arc::new(Kind::ALL.map(Sql::of));
    let manager = deadpool_postgres::Manager::from_config(
        config.clone(),
        NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(READERS)
        .build()
        .map_err(|e| StoreError::Postgres(format!("the readers' pool: {e}")))?;
    let committing = Committer {
        config,
        writer,
        metrics,
        failed,
        failures,
        fence: fence.map(str::to_owned),
    };
    let committer = tokio::spawn(async move {
        committing.run(commits).await;
        // Nothing to close: every commit is in PostgreSQL once answered.
        Ok(())
    });
    Ok((Reader { pool, sql }, committer))
}

/// Each kind's prepared upsert and delete, by `kind as usize`.
type Writes = Vec<(Statement, Statement)>;

/// What became of a group of commits.
enum Applied {
    /// It is durable.
    Stored,
    /// No part of it is stored, for this reason.
    NotStored(String),
    /// Its `COMMIT` failed or its outcome was lost with the connection:
    /// transaction `xid` is neither known stored nor known lost.
    Unknown { why: String, xid: i64 },
}

/// Apply `batches` in one transaction and commit it. Only each key's last
/// write is applied (as if all were applied in order), so no two of the
/// statements, pipelined on the one connection, touch the same row. Under
/// a fence, the transaction first holds the leases of the sessions it
/// writes to, and stores nothing if one is not this node's.
async fn apply(writer: &mut Writer, batches: Vec<&Batch>) -> Applied {
    let mut last: HashMap<&Key, Option<&Vec<u8>>> = HashMap::new();
    for (key, value) in batches.into_iter().flat_map(|batch| &batch.writes) {
        last.insert(key, value.as_ref());
    }
    // A deletion statement may be forgotten by any node: it is fenced by
    // the erasure that wrote it.
    let mut sessions: Vec<&[u8]> = last
        .keys()
        .filter(|key| key.kind() != Kind::Deleted)
        .map(|key| &key.session().0[..])
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    let writes = last
        .into_iter()
        .map(|(key, value)| Ok((key.kind(), Params::of(key)?, value)))
        .collect::<Result<Vec<_>, StoreError>>();
    let writes = match writes {
        Ok(writes) if writes.is_empty() => return Applied::Stored,
        Ok(writes) => writes,
        Err(e) => return Applied::NotStored(e.to_string()),
    };
    let Writer {
        client,
        writes: statements,
        fence,
    } = writer;
    let transaction = match client.transaction().await {
        Ok(transaction) => transaction,
        Err(e) => return Applied::NotStored(describe(&e)),
    };
    if let Some((held, node)) = fence {
        match transaction.query(&*held, &[&*node, &sessions]).await {
            Ok(rows) if rows.len() == sessions.len() => {}
            Ok(_) => {
                return Applied::NotStored(
                    "another node now decides for a session this group writes to".into(),
                );
            }
            Err(e) => return Applied::NotStored(describe(&e)),
        }
    }
    let xid = transaction.query_one("SELECT txid_current()", &[]);
    let executed = try_join_all(writes.iter().map(|(kind, params, value)| {
        let transaction = &transaction;
        let (upsert, delete) = &statements[*kind as usize];
        async move {
            match value {
                Some(value) => transaction.execute(upsert, &params.with(Some(value))).await,
                None => transaction.execute(delete, &params.with(None)).await,
            }
        }
    }));
    let (xid, executed) = tokio::join!(xid, executed);
    let xid: i64 = match (xid, executed) {
        (Ok(row), Ok(_)) => match row.try_get(0) {
            Ok(xid) => xid,
            Err(e) => return Applied::NotStored(describe(&e)),
        },
        // Dropping the transaction rolls it back.
        (Err(e), _) | (_, Err(e)) => return Applied::NotStored(describe(&e)),
    };
    match transaction.commit().await {
        Ok(()) => Applied::Stored,
        Err(e) => Applied::Unknown {
            why: describe(&e),
            xid,
        },
    }
}

/// How long the committer tries to learn the outcome of a `COMMIT` it lost
/// before it gives up and the relay exits.
const RESOLVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// How often the committer tries to reach a database it lost.
const RECONNECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The committer task and what it holds.
struct Committer {
    config: tokio_postgres::Config,
    writer: Writer,
    metrics: Arc<Metrics>,
    failed: Arc<AtomicBool>,
    failures: watch::Sender<u64>,
    fence: Option<String>,
}

impl Committer {
    /// Commit queued groups, up to [`MAX_GROUP`] commits at a time and one
    /// transaction at a time, running each group's follow-ups in order once
    /// it is durable. After a failure, refuse every commit until a resume
    /// (see [`super::Store::resume`]), then take writes again once the
    /// database answers.
    async fn run(mut self, mut rx: mpsc::Receiver<Commit>) {
        let mut queued = Vec::with_capacity(MAX_GROUP);
        let mut refusing = false;
        while rx.recv_many(&mut queued, MAX_GROUP).await > 0 {
            let mut group = Vec::with_capacity(queued.len());
            for commit in queued.drain(..) {
                if commit.batch.resume {
                    if refusing {
                        self.reconnect().await;
                        refusing = false;
                    }
                } else if refusing {
                    (commit.then)(Err(StoreError::Unavailable(
                        "the store is recovering".into(),
                    )));
                } else {
                    group.push(commit);
                }
            }
            if group.is_empty() {
                continue;
            }
            let started = Instant::now();
            let size = group.len();
            let batches = group.iter().map(|commit| &commit.batch).collect();
            let stored = match apply(&mut self.writer, batches).await {
                Applied::Stored => Ok(()),
                Applied::NotStored(why) => Err(why),
                Applied::Unknown { why, xid } => {
                    tracing::warn!(error = %why, "a commit's outcome was lost: asking PostgreSQL");
                    self.failed.store(true, Ordering::Release);
                    match self.resolve(xid).await {
                        Some(true) => {
                            self.failed.store(false, Ordering::Release);
                            Ok(())
                        }
                        Some(false) => Err(why),
                        None => {
                            tracing::error!(
                                "a commit's outcome cannot be learnt: stopping, to start again from what PostgreSQL holds"
                            );
                            std::process::exit(EXIT_STORE_FAILED);
                        }
                    }
                }
            };
            match stored {
                Ok(()) => {
                    for Commit { then, .. } in group.drain(..) {
                        then(Ok(()));
                    }
                    self.metrics.observe_commit(started.elapsed(), size);
                }
                Err(why) => {
                    // Nothing of the group is stored, but its writers may
                    // hold it in memory: every commit is refused until they
                    // have let go of it and resume.
                    self.failed.store(true, Ordering::Release);
                    tracing::error!(error = %why, "a commit failed, nothing of it stored: writes are refused until the relay has reloaded");
                    for Commit { then, .. } in group.drain(..) {
                        then(Err(StoreError::Unavailable(why.clone())));
                    }
                    refusing = true;
                    self.failures.send_modify(|n| *n += 1);
                }
            }
        }
    }

    /// Connect again, as often as it takes; then take writes again.
    async fn reconnect(&mut self) {
        loop {
            match writer(&self.config, self.fence.as_deref()).await {
                Ok(writer) => {
                    self.writer = writer;
                    self.failed.store(false, Ordering::Release);
                    tracing::warn!("the store takes writes again");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL still out of reach");
                    tokio::time::sleep(RECONNECT_EVERY).await;
                }
            }
        }
    }

    /// Whether transaction `xid` committed, asked of PostgreSQL over a new
    /// connection (which the committer keeps), within [`RESOLVE_WITHIN`].
    async fn resolve(&mut self, xid: i64) -> Option<bool> {
        let deadline = Instant::now() + RESOLVE_WITHIN;
        while Instant::now() < deadline {
            if let Ok(writer) = writer(&self.config, self.fence.as_deref()).await {
                let status = writer
                    .client
                    .query_one("SELECT txid_status($1)", &[&xid])
                    .await;
                self.writer = writer;
                if let Ok(row) = status {
                    match row
                        .try_get::<_, Option<String>>(0)
                        .ok()
                        .flatten()
                        .as_deref()
                    {
                        Some("committed") => return Some(true),
                        Some("aborted") | None => return Some(false),
                        Some(_) => {}
                    }
                }
            }
            tokio::time::sleep(RECONNECT_EVERY).await;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_finds_its_own_statements() {
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i);
        }
    }
}
