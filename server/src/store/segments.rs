//! The sled engine's envelope log: envelopes appended to files of the
//! relay's own, which sled indexes.
//!
//! sled 0.34 keeps each value in its leaf, splits a leaf past 16 entries and
//! writes a page out whole once ten updates are chained to it, so an
//! envelope stored in sled was written to disk about six times over
//! (docs/performance.md, "The envelope log"). Here it is written once: the
//! committer appends a group's envelopes to the current segment in one
//! write, syncs it once, and sled keeps, under the envelope's key, only its
//! [`Position`].
//!
//! A segment is the file `envelopes/<id>.log` in the data directory (the id
//! in 16 hexadecimal digits): records one after another, each
//!
//! | bytes | |
//! | --- | --- |
//! | 4 | `n`, the envelope's length (u32, little-endian) |
//! | 4 | CRC-32 (IEEE 802.3) of the 40 bytes of key and the `n` bytes of envelope (u32, little-endian) |
//! | 16, 16, 8 | the key: session, room, index (u64, big-endian) |
//! | `n` | the envelope's canonical bytes |
//!
//! A record is checked (its length, checksum and key) before its envelope
//! is returned, so a torn write or an index that points astray reads as
//! corruption, never as an envelope. Every opening starts a new segment, so
//! nothing is appended after a tail a crash may have torn. Segments are
//! never rewritten: one is deleted once no session has envelopes in it
//! (the sled engine keeps that count).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use caucus_protocol::ids::{ID_LEN, RoomId, SessionId};

use super::{StoreError, Stored};

/// The bytes of a record's key: session, room, index.
const KEY: usize = 2 * ID_LEN + 8;

/// The bytes of a record before its envelope.
const HEADER: usize = 8 + KEY;

/// A segment is closed, and the next begun, once it holds this much.
pub(super) const SEGMENT_BYTES: u64 = 64 << 20;

/// The most one read takes at once when a catch-up's records lie one after
/// another.
const MAX_RUN: u64 = 1 << 20;

/// Where an envelope is kept: its segment, where its record begins, and
/// the envelope's length. sled holds it as 20 bytes, big-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Position {
    pub(super) segment: u64,
    offset: u64,
    /// The envelope's length in bytes (its record is [`HEADER`] more).
    pub(super) len: u32,
}

impl Position {
    /// Its length in bytes, as the tree keeps it.
    pub(super) const LEN: usize = 20;

    pub(super) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0; Self::LEN];
        b[..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..16].copy_from_slice(&self.offset.to_be_bytes());
        b[16..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub(super) fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt("an envelope's position".into());
        let (segment, rest) = bytes.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let (offset, len) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        Ok(Self {
            segment: u64::from_be_bytes(*segment),
            offset: u64::from_be_bytes(*offset),
            len: u32::from_be_bytes(len.try_into().map_err(|_| corrupt())?),
        })
    }

    /// Where its record ends.
    fn end(self) -> u64 {
        self.offset + HEADER as u64 + u64::from(self.len)
    }
}

/// An envelope's key as its record spells it.
fn record_key(session: &SessionId, room: &RoomId, index: u64) -> [u8; KEY] {
    let mut k = [0; KEY];
    k[..ID_LEN].copy_from_slice(&session.0);
    k[ID_LEN..2 * ID_LEN].copy_from_slice(&room.0);
    k[2 * ID_LEN..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The session, room and index a record's key spells.
fn parse_key(key: &[u8]) -> Option<(SessionId, RoomId, u64)> {
    let (session, rest) = key.split_first_chunk::<ID_LEN>()?;
    let (room, index) = rest.split_first_chunk::<ID_LEN>()?;
    Some((
        SessionId(*session),
        RoomId(*room),
        u64::from_be_bytes(index.try_into().ok()?),
    ))
}

/// The envelope of `record`, if it is whole and is the one `key` names.
fn check<'a>(record: &'a [u8], key: &[u8; KEY]) -> Result<&'a [u8], StoreError> {
    let corrupt = || StoreError::Corrupt("an envelope's record in the log".into());
    let (head, envelope) = record.split_at_checked(HEADER).ok_or_else(corrupt)?;
    let (len, rest) = head.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let (crc, stored_key) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(stored_key);
    hasher.update(envelope);
    let whole = u32::from_le_bytes(*len) as usize == envelope.len()
        && u32::from_le_bytes(*crc) == hasher.finalize()
        && stored_key == key;
    whole.then_some(envelope).ok_or_else(corrupt)
}

/// The segment files, for reading: shared by the store's readers and its
/// committer.
#[derive(Clone)]
pub(super) struct Segments {
    dir: PathBuf,
    files: Arc<RwLock<BTreeMap<u64, Arc<File>>>>,
}

impl Segments {
    /// Open the segments in `data_dir` (making its `envelopes` folder if it
    /// has none) and begin a new one to append to.
    pub(super) fn open(data_dir: &Path) -> io::Result<(Segments, Appender)> {
        let dir = data_dir.join("envelopes");
        fs::create_dir_all(&dir)?;
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .filter(|n| n.len() == 16)
                .and_then(|n| u64::from_str_radix(n, 16).ok());
            if let Some(id) = id {
                files.insert(id, Arc::new(File::open(dir.join(&name))?));
            }
        }
        let segments = Segments {
            dir,
            files: Arc::new(RwLock::new(files)),
        };
        let head = segments.last().map_or(1, |id| id + 1);
        let appender = Appender::begin(segments.clone(), head)?;
        Ok((segments, appender))
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}.log"))
    }

    fn last(&self) -> Option<u64> {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files.keys().next_back().copied()
    }

    /// Every segment's id, in order.
    pub(super) fn ids(&self) -> Vec<u64> {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files.keys().copied().collect()
    }

    fn file(&self, id: u64) -> Result<Arc<File>, StoreError> {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("envelope log segment {id} is missing")))
    }

    /// Delete segment `id`. Reads already under way finish on the open file.
    pub(super) fn remove(&self, id: u64) -> io::Result<()> {
        let mut files = self.files.write().unwrap_or_else(PoisonError::into_inner);
        files.remove(&id);
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The envelopes of one room at these positions, in the order given,
    /// each as read: a damaged record (cut short, changed, or another
    /// envelope's) is an error for that envelope alone. Records that lie
    /// one after another in a segment are read at once.
    pub(super) fn read_room(
        &self,
        session: &SessionId,
        room: &RoomId,
        positions: Vec<(u64, Position)>,
    ) -> Result<Vec<(u64, Stored)>, StoreError> {
        let mut envelopes = Vec::with_capacity(positions.len());
        let mut buf = Vec::new();
        let mut rest = positions.as_slice();
        while let Some(((_, first), _)) = rest.split_first() {
            let run = 1 + rest
                .windows(2)
                .take_while(|w| {
                    let (a, b) = (w[0].1, w[1].1);
                    b.segment == a.segment
                        && b.offset == a.end()
                        && b.end() - first.offset <= MAX_RUN
                })
                .count();
            let (these, after) = rest.split_at(run);
            let end = these.last().map_or(first.end(), |(_, p)| p.end());
            buf.resize((end - first.offset) as usize, 0);
            let read = read_at(&*self.file(first.segment)?, &mut buf, first.offset)?;
            for &(index, p) in these {
                let (start, end) = (p.offset - first.offset, p.end() - first.offset);
                let envelope = buf[..read]
                    .get(start as usize..end as usize)
                    .ok_or_else(|| StoreError::Corrupt("an envelope's record is cut short".into()))
                    .and_then(|record| check(record, &record_key(session, room, index)))
                    .map(<[u8]>::to_vec);
                envelopes.push((index, envelope));
            }
            rest = after;
        }
        Ok(envelopes)
    }
}

impl Segments {
    /// The records of segment `id` from `offset` on, up to the first that
    /// is not whole (the tail of a write a crash cut short): each one's
    /// session, room, index and position.
    pub(super) fn scan(
        &self,
        id: u64,
        offset: u64,
    ) -> Result<Vec<(SessionId, RoomId, u64, Position)>, StoreError> {
        let mut bytes = Vec::new();
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = File::open(self.path(id))?;
            file.seek(SeekFrom::Start(offset))?;
            file.read_to_end(&mut bytes)?;
        }
        let mut records = Vec::new();
        let mut at = 0;
        while let Some(len) = bytes.get(at..).and_then(<[u8]>::first_chunk::<4>) {
            let len = u32::from_le_bytes(*len);
            let Some(record) = bytes.get(at..at + HEADER + len as usize) else {
                break;
            };
            let Some((session, room, index)) = record.get(8..HEADER).and_then(parse_key) else {
                break;
            };
            if check(record, &record_key(&session, &room, index)).is_err() {
                break;
            }
            let position = Position {
                segment: id,
                offset: offset + at as u64,
                len,
            };
            records.push((session, room, index, position));
            at += record.len();
        }
        Ok(records)
    }
}

/// Read into `buf` from `offset` until it is full or the file ends; say
/// how much was read.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match file.read_at(&mut buf[read..], offset + read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(read)
}

/// The segment being appended to: used by the committer alone.
pub(super) struct Appender {
    segments: Segments,
    id: u64,
    file: Arc<File>,
    /// How much of the file is written.
    len: u64,
    /// Records appended but not yet written.
    pending: Vec<u8>,
}

impl Appender {
    /// Make segment `id`, empty, and its name durable.
    fn begin(segments: Segments, id: u64) -> io::Result<Self> {
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(segments.path(id))?,
        );
        File::open(&segments.dir)?.sync_all()?;
        segments
            .files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, file.clone());
        Ok(Self {
            segments,
            id,
            file,
            len: 0,
            pending: Vec::new(),
        })
    }

    /// The segment appended to.
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// How much of it is written.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Append an envelope's record, to be written by the next
    /// [`write`](Self::write), and say where it will be.
    pub(super) fn append(
        &mut self,
        session: &SessionId,
        room: &RoomId,
        index: u64,
        envelope: &[u8],
    ) -> Result<Position, StoreError> {
        let len = u32::try_from(envelope.len())
            .map_err(|_| StoreError::Corrupt("an envelope of 4 GiB or more".into()))?;
        let key = record_key(session, room, index);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&key);
        hasher.update(envelope);
        let position = Position {
            segment: self.id,
            offset: self.len + self.pending.len() as u64,
            len,
        };
        self.pending.extend_from_slice(&len.to_le_bytes());
        self.pending
            .extend_from_slice(&hasher.finalize().to_le_bytes());
        self.pending.extend_from_slice(&key);
        self.pending.extend_from_slice(envelope);
        Ok(position)
    }

    /// Write what was appended since the last write, in one write, and give
    /// the file to sync (none if nothing was appended).
    pub(super) fn write(&mut self) -> io::Result<Option<Arc<File>>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        self.file.write_all_at(&self.pending, self.len)?;
        self.len += self.pending.len() as u64;
        self.pending.clear();
        // A group of large envelopes grows the buffer; keep it no larger
        // than a usual group needs.
        self.pending.shrink_to(1 << 20);
        Ok(Some(self.file.clone()))
    }

    /// If the segment holds `limit` or more, begin the next one and give
    /// the id of the one closed.
    pub(super) fn rotate(&mut self, limit: u64) -> io::Result<Option<u64>> {
        if self.len < limit {
            return Ok(None);
        }
        let closed = self.id;
        *self = Self::begin(self.segments.clone(), closed + 1)?;
        Ok(Some(closed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Segments {
        fn read(
            &self,
            session: &SessionId,
            room: &RoomId,
            index: u64,
            position: Position,
        ) -> Result<Vec<u8>, StoreError> {
            let mut read = self.read_room(session, room, vec![(index, position)])?;
            read.pop().map_or(Ok(Vec::new()), |(_, envelope)| envelope)
        }
    }

    #[test]
    fn records_read_back_alone_or_in_runs_and_refuse_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (segments, mut log) = Segments::open(dir.path()).unwrap();
        let (s, r) = (SessionId([1; 16]), RoomId([2; 16]));
        let mut positions = Vec::new();
        for index in 1..=5u64 {
            let envelope = vec![index as u8; 100 * index as usize];
            positions.push((index, log.append(&s, &r, index, &envelope).unwrap()));
        }
        assert!(log.write().unwrap().is_some());
        assert!(log.write().unwrap().is_none());
        let all = segments.read_room(&s, &r, positions.clone()).unwrap();
        for (index, envelope) in &all {
            let envelope = envelope.as_ref().unwrap();
            assert_eq!(envelope, &vec![*index as u8; 100 * *index as usize]);
        }
        assert_eq!(all.len(), 5);
        // Out of order, and one alone.
        let some = vec![positions[3], positions[0]];
        let read = segments.read_room(&s, &r, some).unwrap();
        assert_eq!(read.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [4, 1]);
        let (index, at) = positions[2];
        assert_eq!(segments.read(&s, &r, index, at).unwrap(), vec![3; 300]);
        // Another key at that position, or a changed byte, is corruption.
        assert!(matches!(
            segments.read(&s, &r, index + 1, at),
            Err(StoreError::Corrupt(_))
        ));
        let file = segments.path(log.id());
        let mut bytes = fs::read(&file).unwrap();
        bytes[at.offset as usize + HEADER + 7] ^= 1;
        fs::write(&file, bytes).unwrap();
        assert!(matches!(
            segments.read(&s, &r, index, at),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(
            segments.read(&s, &r, 2, positions[1].1).unwrap(),
            vec![2; 200]
        );
        assert_eq!(Position::from_bytes(&at.to_bytes()).unwrap(), at);
    }

    #[test]
    fn each_opening_begins_a_segment_and_a_full_one_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (s, r) = (SessionId([1; 16]), RoomId([2; 16]));
        let (segments, mut log) = Segments::open(dir.path()).unwrap();
        let first = log.append(&s, &r, 1, b"one").unwrap();
        log.write().unwrap();
        assert_eq!(log.rotate(1 << 20).unwrap(), None);
        assert_eq!(log.rotate(1).unwrap(), Some(1));
        let second = log.append(&s, &r, 2, b"two").unwrap();
        log.write().unwrap();
        assert_eq!((first.segment, second.segment), (1, 2));
        assert_eq!(segments.ids(), [1, 2]);
        drop((segments, log));
        let (segments, log) = Segments::open(dir.path()).unwrap();
        assert_eq!(log.id(), 3);
        assert_eq!(segments.read(&s, &r, 2, second).unwrap(), b"two");
        segments.remove(1).unwrap();
        assert_eq!(segments.ids(), [2, 3]);
        assert!(matches!(
            segments.read(&s, &r, 1, first),
            Err(StoreError::Corrupt(_))
        ));
    }
}
