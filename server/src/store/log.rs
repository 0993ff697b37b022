//! The sled engine's index of the envelope log ([`super::segments`]): where
//! each envelope is, kept in the tree a block at a time.
//!
//! An index entry per envelope in sled still cost most of what storing the
//! envelope there did (a tree walk, a leaf copied and split every 16
//! inserts, a flush), so the tree holds blocks: under `E`, session, room
//! and the first index of the block, the positions of consecutive
//! envelopes of the room (each the index, u64 big-endian, then the
//! [`Position`]'s 20 bytes). A room's latest positions wait in memory, in
//! its *tail*, until there are [`BLOCK`] of them (or more, when one group
//! posts more to the room), or until a checkpoint.
//!
//! The tails are not lost in a crash, because the segments say what they
//! held: each record names its envelope. The tree keeps a checkpoint (`K`:
//! segment and offset, u64 big-endian each) before which every record is
//! in a block; whenever a segment is closed, and at every opening, all the
//! tails are written as blocks and the checkpoint moved on, in one atomic
//! write. Opening reads the records after the checkpoint (at most a
//! segment or two) back into the tails. So a group of posts is durable
//! once its segment is synced, and the tree is flushed only for groups that
//! wrote something else: the blocks and `G` records a group of posts
//! writes are found again from the segments if sled loses them (sled
//! recovers a prefix of its writes, so it loses only the latest).
//!
//! A room's envelopes are written in index order, as the relay does; one
//! written at or below an index already in a block goes into that block.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use caucus_protocol::ids::{ID_LEN, RoomId, SessionId};

use super::segments::{Appender, Position, Segments};
use super::sled::{decode, encode, prefix};
use super::{Batch, Key, Kind, StoreError};

/// How many positions a tail gathers before it is written as a block.
pub(super) const BLOCK: usize = 16;

/// The bytes of one entry of a block: the index, then the position.
const ENTRY: usize = 8 + Position::LEN;

/// The key of the checkpoint.
const CHECKPOINT: &[u8] = b"K";

/// The first byte of the keys of envelopes kept in the tree itself, before
/// the envelope log.
const LEGACY_LOG: u8 = b'L';

/// The first byte of the `G` records: which segments a session has
/// envelopes in.
const HOLDS: u8 = b'G';

/// The `G` record of `session` in `segment`.
fn holds(session: &SessionId, segment: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ID_LEN + 8);
    k.push(HOLDS);
    k.extend_from_slice(&session.0);
    k.extend_from_slice(&segment.to_be_bytes());
    k
}

/// The session and segment of a `G` record.
fn held(key: &[u8]) -> Result<(SessionId, u64), StoreError> {
    key.strip_prefix(&[HOLDS])
        .and_then(|rest| rest.split_first_chunk::<ID_LEN>())
        .and_then(|(session, rest)| {
            Some((
                SessionId(*session),
                u64::from_be_bytes(rest.try_into().ok()?),
            ))
        })
        .ok_or_else(|| StoreError::Corrupt("a G key".into()))
}

/// A block's entries from its bytes.
fn entries(bytes: &[u8]) -> Result<BTreeMap<u64, Position>, StoreError> {
    if !bytes.len().is_multiple_of(ENTRY) {
        return Err(StoreError::Corrupt("a block of envelope positions".into()));
    }
    bytes
        .chunks_exact(ENTRY)
        .map(|entry| {
            let (index, position) = entry.split_at(8);
            let index = u64::from_be_bytes(index.try_into().unwrap_or_default());
            Ok((index, Position::from_bytes(position)?))
        })
        .collect()
}

/// A block's bytes.
fn block<'a>(entries: impl IntoIterator<Item = (&'a u64, &'a Position)>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(BLOCK * ENTRY);
    for (index, position) in entries {
        bytes.extend_from_slice(&index.to_be_bytes());
        bytes.extend_from_slice(&position.to_bytes());
    }
    bytes
}

/// The first index of a block from its key.
fn first_index(key: &[u8]) -> Result<u64, StoreError> {
    match decode(Kind::Log, key)? {
        Key::Log(_, _, index) => Ok(index),
        _ => Err(StoreError::Corrupt("a block key".into())),
    }
}

/// The key of the room's block that holds `index`, if there is one: the
/// last that begins at or before it.
fn block_of(
    tree: &sled::Tree,
    session: &SessionId,
    room: &RoomId,
    index: u64,
) -> Result<Option<sled::IVec>, StoreError> {
    let start = encode(&Key::Log(*session, *room, 0));
    let at = encode(&Key::Log(*session, *room, index));
    Ok(tree.range(start..=at).keys().next_back().transpose()?)
}

/// The positions of a room not yet in a block.
#[derive(Default)]
struct Tail {
    entries: BTreeMap<u64, Position>,
    /// The highest index in the room's blocks.
    floor: u64,
}

impl Tail {
    /// Its positions as a block to write, with the block's key, leaving the
    /// tail empty; `None` if it is empty.
    fn take_block(&mut self, session: &SessionId, room: &RoomId) -> Option<(Vec<u8>, Vec<u8>)> {
        let (first, last) = (
            self.entries.first_key_value()?,
            self.entries.last_key_value()?,
        );
        let key = encode(&Key::Log(*session, *room, *first.0));
        self.floor = self.floor.max(*last.0);
        let bytes = block(&self.entries);
        self.entries.clear();
        Some((key, bytes))
    }
}

/// Every room's tail, shared by the committer and the readers. A reader
/// holds the lock while it reads blocks and tail together, so that it never
/// misses positions being moved from one to the other.
#[derive(Clone, Default)]
pub(super) struct Tails(Arc<Mutex<HashMap<(SessionId, RoomId), Tail>>>);

impl Tails {
    fn lock(&self) -> MutexGuard<'_, HashMap<(SessionId, RoomId), Tail>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to `limit` positions of a room's envelopes with index in
    /// `from..=to`, in index order.
    pub(super) fn positions(
        &self,
        tree: &sled::Tree,
        session: &SessionId,
        room: &RoomId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Position)>, StoreError> {
        let tails = self.lock();
        let mut found = Vec::new();
        let start = match block_of(tree, session, room, from)? {
            Some(key) => first_index(&key)?,
            None => from,
        };
        let (start, end) = (
            encode(&Key::Log(*session, *room, start)),
            encode(&Key::Log(*session, *room, to)),
        );
        'blocks: for stored in tree.range(start..=end).values() {
            for (index, position) in entries(&stored?)?.range(from..=to) {
                if found.len() == limit {
                    break 'blocks;
                }
                found.push((*index, *position));
            }
        }
        if let Some(tail) = tails.get(&(*session, *room)) {
            let room = tail.entries.range(from..=to).map(|(i, p)| (*i, *p));
            found.extend(room.take(limit - found.len()));
        }
        Ok(found)
    }

    /// Every position of a session's envelopes, by room, then index.
    pub(super) fn session(
        &self,
        tree: &sled::Tree,
        session: &SessionId,
    ) -> Result<Vec<(RoomId, u64, Position)>, StoreError> {
        let tails = self.lock();
        let mut rooms: BTreeMap<RoomId, BTreeMap<u64, Position>> = BTreeMap::new();
        for item in tree.scan_prefix(prefix(Kind::Log, session)) {
            let (key, stored) = item?;
            let Key::Log(_, room, _) = decode(Kind::Log, &key)? else {
                continue;
            };
            rooms.entry(room).or_default().extend(entries(&stored)?);
        }
        for ((s, room), tail) in tails.iter() {
            if s == session && !tail.entries.is_empty() {
                rooms.entry(*room).or_default().extend(&tail.entries);
            }
        }
        Ok(rooms
            .into_iter()
            .flat_map(|(room, entries)| entries.into_iter().map(move |(i, p)| (room, i, p)))
            .collect())
    }
}

/// The committer's side of the envelope log: where it appends, the index,
/// and which sessions hold each segment.
pub(super) struct Log {
    pub(super) segments: Segments,
    appender: Appender,
    pub(super) tails: Tails,
    /// A segment is closed once it holds this much.
    limit: u64,
    /// How many sessions have envelopes in each segment (their `G` records).
    holders: HashMap<u64, usize>,
    /// The sessions with a `G` record for the segment appended to.
    in_head: HashSet<SessionId>,
    /// `G` records to write once the group's records are.
    holding: Vec<Vec<u8>>,
    /// Rooms whose tails are full, to write as blocks once the group's
    /// records are.
    full: Vec<(SessionId, RoomId)>,
    /// Sessions some of whose envelopes the group removes.
    emptied: HashSet<SessionId>,
}

/// A block to write, by key (`None`: to remove).
type Blocks = HashMap<Vec<u8>, BTreeMap<u64, Position>>;

impl Log {
    /// Open the log: move envelopes kept in the tree into it, read back the
    /// records after the checkpoint, count the holders of each segment, let
    /// go of those of sessions erased before a crash could record it, and
    /// delete the segments no one holds.
    pub(super) fn open(
        db: &sled::Db,
        tree: &sled::Tree,
        segments: Segments,
        appender: Appender,
        limit: u64,
    ) -> Result<Self, StoreError> {
        let mut log = Self {
            segments,
            appender,
            tails: Tails::default(),
            limit,
            holders: HashMap::new(),
            in_head: HashSet::new(),
            holding: Vec::new(),
            full: Vec::new(),
            emptied: HashSet::new(),
        };
        log.recover(tree)?;
        log.migrate(db, tree)?;
        let mut sessions = HashSet::new();
        for key in tree.scan_prefix([HOLDS]).keys() {
            let (session, segment) = held(&key?)?;
            *log.holders.entry(segment).or_default() += 1;
            if segment == log.appender.id() {
                log.in_head.insert(session);
            }
            sessions.insert(session);
        }
        for session in sessions {
            if !tree.contains_key(encode(&Key::Session(session)))? {
                log.emptied.insert(session);
            }
        }
        for id in log.reclaim(tree)? {
            log.segments.remove(id)?;
        }
        for id in log.segments.ids() {
            if id != log.appender.id() && !log.holders.contains_key(&id) {
                log.segments.remove(id)?;
            }
        }
        db.flush()?;
        Ok(log)
    }

    /// Move the envelopes a store kept in the tree before the envelope log
    /// into the log, a thousand at a time, each thousand made durable before
    /// they leave the tree.
    fn migrate(&mut self, db: &sled::Db, tree: &sled::Tree) -> Result<(), StoreError> {
        loop {
            let legacy = tree
                .scan_prefix([LEGACY_LOG])
                .take(1000)
                .collect::<Result<Vec<_>, _>>()?;
            if legacy.is_empty() {
                return Ok(());
            }
            let mut batch = Batch::default();
            let mut old = sled::Batch::default();
            for (key, envelope) in legacy {
                let mut moved = key.to_vec();
                moved[0] = Kind::Log.tag();
                batch.insert(decode(Kind::Log, &moved)?, envelope.to_vec());
                old.remove(key);
            }
            self.apply(tree, batch)?;
            if let Some(file) = self.write(tree)? {
                file.sync_data()?;
            }
            self.checkpoint(tree, Some(old))?;
            db.flush()?;
            tracing::info!("envelopes moved from the tree into the envelope log");
        }
    }

    /// Read the records after the checkpoint back into the tails (those of
    /// erased sessions, and those already in blocks, aside), then write
    /// every tail as a block.
    fn recover(&mut self, tree: &sled::Tree) -> Result<(), StoreError> {
        let (from_segment, from_offset) = match tree.get(CHECKPOINT)? {
            Some(at) => {
                let at: [u8; 16] = at
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("the checkpoint".into()))?;
                let (segment, offset) = at.split_at(8);
                (
                    u64::from_be_bytes(segment.try_into().unwrap_or_default()),
                    u64::from_be_bytes(offset.try_into().unwrap_or_default()),
                )
            }
            None => (0, 0),
        };
        let mut open_sessions = HashMap::new();
        let mut holding = HashSet::new();
        for id in self.segments.ids() {
            if id < from_segment || id == self.appender.id() {
                continue;
            }
            let from = if id == from_segment { from_offset } else { 0 };
            for (session, room, index, position) in self.segments.scan(id, from)? {
                let open = match open_sessions.get(&session) {
                    Some(open) => *open,
                    None => {
                        let open = tree.contains_key(encode(&Key::Session(session)))?;
                        *open_sessions.entry(session).or_insert(open)
                    }
                };
                if !open {
                    continue;
                }
                let mut tails = self.tails.lock();
                let tail = tail_of(&mut tails, tree, &session, &room)?;
                if index > tail.floor {
                    tail.entries.insert(index, position);
                    if holding.insert((session, id)) {
                        tree.insert(holds(&session, id), &[])?;
                    }
                }
            }
        }
        self.checkpoint(tree, None)
    }

    /// Write every tail as a block, and the checkpoint at the end of what
    /// is appended, with `also`, in one atomic write.
    pub(super) fn checkpoint(
        &mut self,
        tree: &sled::Tree,
        also: Option<sled::Batch>,
    ) -> Result<(), StoreError> {
        let mut tails = self.tails.lock();
        let mut batch = also.unwrap_or_default();
        for ((session, room), tail) in tails.iter_mut() {
            if let Some((key, block)) = tail.take_block(session, room) {
                batch.insert(key, block);
            }
        }
        let mut at = self.appender.id().to_be_bytes().to_vec();
        at.extend_from_slice(&self.appender.len().to_be_bytes());
        batch.insert(CHECKPOINT, at);
        tree.apply_batch(batch)?;
        Ok(())
    }

    /// Apply one commit's writes: its envelopes are appended to the log
    /// (written by the next [`write`](Self::write)) and their positions
    /// put in their rooms' tails; removed envelopes leave their tail or
    /// block; the rest is applied to the tree, atomically. Says whether it
    /// wrote to the tree anything that only a flush makes durable.
    pub(super) fn apply(&mut self, tree: &sled::Tree, batch: Batch) -> Result<bool, StoreError> {
        let mut ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut blocks = Blocks::new();
        for (key, value) in batch.writes {
            match (key, value) {
                (Key::Log(session, room, index), Some(envelope)) => {
                    let position = self.appender.append(&session, &room, index, &envelope)?;
                    self.index(tree, &mut blocks, session, room, index, position)?;
                }
                (Key::Log(session, room, index), None) => {
                    self.emptied.insert(session);
                    let mut tails = self.tails.lock();
                    let tail = tail_of(&mut tails, tree, &session, &room)?;
                    if tail.entries.remove(&index).is_none() {
                        drop(tails);
                        if let Some(entries) = load(tree, &mut blocks, &session, &room, index)? {
                            entries.remove(&index);
                        }
                    }
                }
                (key, value) => ops.push((encode(&key), value)),
            }
        }
        for (key, entries) in blocks {
            ops.push((key, (!entries.is_empty()).then(|| block(&entries))));
        }
        let wrote = !ops.is_empty();
        let mut ops = ops.into_iter();
        match (ops.next(), ops.len()) {
            (None, _) => {}
            (Some((key, Some(value))), 0) => drop(tree.insert(key, value)?),
            (Some((key, None)), 0) => drop(tree.remove(key)?),
            (Some(first), _) => {
                let mut batch = sled::Batch::default();
                for (key, value) in std::iter::once(first).chain(ops) {
                    match value {
                        Some(value) => batch.insert(key, value),
                        None => batch.remove(key),
                    }
                }
                tree.apply_batch(batch)?;
            }
        }
        Ok(wrote)
    }

    /// Put an envelope's position in its room's tail, or, if its index is
    /// at or below one already in a block, in that block.
    fn index(
        &mut self,
        tree: &sled::Tree,
        blocks: &mut Blocks,
        session: SessionId,
        room: RoomId,
        index: u64,
        position: Position,
    ) -> Result<(), StoreError> {
        if self.in_head.insert(session) {
            let head = self.appender.id();
            *self.holders.entry(head).or_default() += 1;
            self.holding.push(holds(&session, head));
        }
        let mut tails = self.tails.lock();
        let tail = tail_of(&mut tails, tree, &session, &room)?;
        if index > tail.floor {
            tail.entries.insert(index, position);
            if tail.entries.len() == BLOCK {
                self.full.push((session, room));
            }
            return Ok(());
        }
        drop(tails);
        match load(tree, blocks, &session, &room, index)? {
            Some(entries) => drop(entries.insert(index, position)),
            None => {
                let key = encode(&Key::Log(session, room, index));
                blocks.insert(key, BTreeMap::from([(index, position)]));
            }
        }
        Ok(())
    }

    /// Write what the group appended, in one write, then the blocks of the
    /// tails it filled and the `G` records of sessions new to the segment;
    /// give the segment's file to sync (none if nothing was appended).
    pub(super) fn write(&mut self, tree: &sled::Tree) -> Result<Option<Arc<File>>, StoreError> {
        let file = self.appender.write()?;
        for g in self.holding.drain(..) {
            tree.insert(g, &[])?;
        }
        let mut tails = self.tails.lock();
        for (session, room) in self.full.drain(..) {
            if let Some((key, block)) = tails
                .get_mut(&(session, room))
                .and_then(|tail| tail.take_block(&session, &room))
            {
                tree.insert(key, block)?;
            }
        }
        Ok(file)
    }

    /// For each session some of whose envelopes were removed since the last
    /// time, drop its `G` records of the segments it no longer has
    /// envelopes in, and its empty tails; give the segments no one holds now
    /// (but the one appended to), to delete once this is durable.
    pub(super) fn reclaim(&mut self, tree: &sled::Tree) -> Result<Vec<u64>, StoreError> {
        let head = self.appender.id();
        let mut unheld = Vec::new();
        for session in std::mem::take(&mut self.emptied) {
            let live: HashSet<u64> = self
                .tails
                .session(tree, &session)?
                .into_iter()
                .map(|(_, _, p)| p.segment)
                .collect();
            if live.is_empty() {
                self.tails.lock().retain(|(s, _), _| *s != session);
            }
            let all = &holds(&session, 0)[..1 + ID_LEN];
            for key in tree.scan_prefix(all).keys() {
                let key = key?;
                let (_, segment) = held(&key)?;
                if live.contains(&segment) {
                    continue;
                }
                tree.remove(&key)?;
                if segment == head {
                    self.in_head.remove(&session);
                }
                let holders = self.holders.entry(segment).or_default();
                *holders = holders.saturating_sub(1);
                if *holders == 0 && segment != head {
                    self.holders.remove(&segment);
                    unheld.push(segment);
                }
            }
        }
        Ok(unheld)
    }

    /// Begin the next segment if the one appended to is full, and write
    /// every tail as a block with the checkpoint at its start: give the
    /// closed one to delete if no one holds it.
    pub(super) fn rotate(&mut self, tree: &sled::Tree) -> Result<Option<u64>, StoreError> {
        let Some(closed) = self.appender.rotate(self.limit)? else {
            return Ok(None);
        };
        self.in_head.clear();
        self.checkpoint(tree, None)?;
        let held = self.holders.get(&closed).is_some_and(|n| *n > 0);
        if !held {
            self.holders.remove(&closed);
        }
        Ok((!held).then_some(closed))
    }
}

/// A room's tail, made on its first use with the highest index in its
/// blocks.
fn tail_of<'a>(
    tails: &'a mut HashMap<(SessionId, RoomId), Tail>,
    tree: &sled::Tree,
    session: &SessionId,
    room: &RoomId,
) -> Result<&'a mut Tail, StoreError> {
    use std::collections::hash_map::Entry;
    Ok(match tails.entry((*session, *room)) {
        Entry::Occupied(tail) => tail.into_mut(),
        Entry::Vacant(vacant) => {
            let floor = match block_of(tree, session, room, u64::MAX)? {
                Some(key) => tree
                    .get(&key)?
                    .map(|b| entries(&b))
                    .transpose()?
                    .and_then(|e| e.last_key_value().map(|(i, _)| *i))
                    .unwrap_or(0),
                None => 0,
            };
            vacant.insert(Tail {
                entries: BTreeMap::new(),
                floor,
            })
        }
    })
}

/// The entries of the block that holds `index` as this commit leaves them,
/// read from the tree on first use; `None` if no block holds it.
fn load<'a>(
    tree: &sled::Tree,
    blocks: &'a mut Blocks,
    session: &SessionId,
    room: &RoomId,
    index: u64,
) -> Result<Option<&'a mut BTreeMap<u64, Position>>, StoreError> {
    let Some(key) = block_of(tree, session, room, index)? else {
        return Ok(None);
    };
    let key = key.to_vec();
    if !blocks.contains_key(&key) {
        let stored = tree.get(&key)?.map(|b| entries(&b)).transpose()?;
        blocks.insert(key.clone(), stored.unwrap_or_default());
    }
    Ok(blocks.get_mut(&key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segments::SEGMENT_BYTES;

    fn post(log: &mut Log, tree: &sled::Tree, session: SessionId, room: RoomId, index: u64) {
        let mut batch = Batch::default();
        batch.insert(Key::Log(session, room, index), format!("{index}"));
        log.apply(tree, batch).unwrap();
        log.write(tree).unwrap();
    }

    fn envelopes(log: &Log, tree: &sled::Tree, session: SessionId, room: RoomId) -> Vec<Vec<u8>> {
        let positions = log
            .tails
            .positions(tree, &session, &room, 1, u64::MAX, usize::MAX);
        let read = log.segments.read_room(&session, &room, positions.unwrap());
        read.unwrap().into_iter().map(|(_, e)| e.unwrap()).collect()
    }

    /// A crash loses the tails, and whatever the tree had not flushed: the
    /// next opening finds every whole record after the checkpoint again,
    /// but none of an erased session, nor a record a crash cut short.
    #[test]
    fn the_tails_are_found_again_in_the_segments_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let tree = db.open_tree("caucus").unwrap();
        let (segments, appender) = Segments::open(dir.path()).unwrap();
        let mut log = Log::open(&db, &tree, segments, appender, SEGMENT_BYTES).unwrap();
        let (open, erased) = (SessionId([1; 16]), SessionId([2; 16]));
        let (a, b) = (RoomId([3; 16]), RoomId([4; 16]));
        tree.insert(encode(&Key::Session(open)), &b"{}"[..])
            .unwrap();
        for index in 1..=40 {
            post(&mut log, &tree, open, a, index);
        }
        for index in 1..=3 {
            post(&mut log, &tree, open, b, index);
            post(&mut log, &tree, erased, a, index);
        }
        let expected: Vec<Vec<u8>> = (1..=40).map(|i| format!("{i}").into_bytes()).collect();
        assert_eq!(envelopes(&log, &tree, open, a), expected);
        // Two blocks of 16 were written for room a; the rest are in tails.
        assert_eq!(tree.scan_prefix(prefix(Kind::Log, &open)).count(), 2);

        // The crash: the tree loses its latest writes (the second block and
        // every G record), and the last write is cut short.
        let second = encode(&Key::Log(open, a, 17));
        assert!(tree.remove(second).unwrap().is_some());
        for key in tree.scan_prefix([HOLDS]).keys() {
            tree.remove(key.unwrap()).unwrap();
        }
        let head = log.appender.id();
        drop(log);
        let path = dir.path().join(format!("envelopes/{head:016x}.log"));
        let mut torn = std::fs::read(&path).unwrap();
        torn.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
        std::fs::write(&path, torn).unwrap();

        let (segments, appender) = Segments::open(dir.path()).unwrap();
        let log = Log::open(&db, &tree, segments, appender, SEGMENT_BYTES).unwrap();
        assert_eq!(envelopes(&log, &tree, open, a), expected);
        assert_eq!(envelopes(&log, &tree, open, b).len(), 3);
        assert!(envelopes(&log, &tree, erased, a).is_empty());
        // The tails were written as blocks at the opening; the open
        // session holds the segment again, so it was kept.
        assert!(log.tails.lock().values().all(|t| t.entries.is_empty()));
        assert_eq!(log.holders.get(&head), Some(&1));
        assert!(path.exists());
    }

    /// Envelopes written below a room's blocks go into them, and removing
    /// a room's envelopes empties its blocks and tail alike.
    #[test]
    fn envelopes_out_of_order_and_removed_keep_the_blocks_whole() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let tree = db.open_tree("caucus").unwrap();
        let (segments, appender) = Segments::open(dir.path()).unwrap();
        let mut log = Log::open(&db, &tree, segments, appender, SEGMENT_BYTES).unwrap();
        let (s, room) = (SessionId([1; 16]), RoomId([2; 16]));
        for index in (20..=40).chain([5, 30, 41]) {
            post(&mut log, &tree, s, room, index);
        }
        let indexes = |log: &Log| -> Vec<u64> {
            let p = log
                .tails
                .positions(&tree, &s, &room, 0, u64::MAX, usize::MAX);
            p.unwrap().into_iter().map(|(i, _)| i).collect()
        };
        let mut expected: Vec<u64> = (20..=41).collect();
        expected.insert(0, 5);
        assert_eq!(indexes(&log), expected);
        // The later write at 30 replaced the first.
        let at_30 = log.tails.positions(&tree, &s, &room, 30, 30, 1).unwrap();
        let read = log.segments.read_room(&s, &room, at_30).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!((read[0].0, read[0].1.as_deref().unwrap()), (30, &b"30"[..]));
        assert_eq!(
            log.tails
                .positions(&tree, &s, &room, 6, 35, 3)
                .unwrap()
                .len(),
            3
        );

        let mut erase = Batch::default();
        for index in expected {
            erase.remove(Key::Log(s, room, index));
        }
        log.apply(&tree, erase).unwrap();
        assert!(indexes(&log).is_empty());
        assert_eq!(tree.scan_prefix(prefix(Kind::Log, &s)).count(), 0);
        assert_eq!(log.reclaim(&tree).unwrap(), Vec::<u64>::new());
        assert_eq!(tree.scan_prefix([HOLDS]).count(), 0);
    }
}
