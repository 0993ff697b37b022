//! The state directory: the device's keys and, per session, a snapshot and
//! an append-only message log (see `caucus_client_core::state` for what
//! each holds and why they are saved apart). Files are readable by the
//! owner only.
//!
//! ```text
//! STATE/lock                      held by the one process using the directory
//! STATE/keyfile                   only in an encrypted directory: the salt,
//!                                 Argon2id parameters and a passphrase
//!                                 verifier (see `key`)
//! STATE/device.key                the device's secret keys
//! STATE/sessions/SESSION.state    the session's snapshot: its verified view
//!                                 (rosters, room keys, chains) and what the
//!                                 client keeps about it (relay, cursors,
//!                                 invites, membership); replaced whole, by a
//!                                 temporary file and a rename, when it changes
//! STATE/sessions/SESSION.log      its messages, one frame each, appended:
//!                                 u32 length (big-endian) || record
//! STATE/kept/SESSION.agreement    the concluded agreement, signed (kept
//!                                 when the session is erased)
//! STATE/kept/SESSION.deletion     the relay's signed deletion statement
//! STATE/documents/SESSION/MESSAGE/INDEX
//!                                 a downloaded document's chunks, as the relay
//!                                 stored them (sealed: their key is only in
//!                                 the session's snapshot)
//! ```
//!
//! One batch of changes is saved as: the log appended and synced, then the
//! snapshot renamed into place and the directory synced. A crash leaves the
//! old snapshot or the new, and a log at least as new as the snapshot; a
//! frame cut short by the crash is dropped when the log is read.
//!
//! Erasing a session removes both files, and with them its room keys and
//! messages, and its downloaded documents; what is under `kept/` is the participant's own record of the
//! outcome and stays until they delete it.
//!
//! A directory opened with a passphrase ([`StateDir::open_encrypted`]) is
//! encrypted: `device.key`, each snapshot and each kept record is sealed
//! whole, and each log record is sealed on its own inside its frame (`u32
//! length || sealed record`), bound to its session and its position in the
//! log. An encrypted snapshot starts with the number of log records written
//! before it (`u64 || snapshot`), so records removed from the end of a log
//! are noticed. The layout is otherwise the same: appends, renames and the
//! cutting off of a torn frame work as above.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use caucus_client_core::{Changes, ClientError, Kept};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::SessionId;
use zeroize::Zeroizing;

mod key;

use key::{Kind, StateKey};

/// A session as saved: its snapshot and its log records, in order.
pub(crate) struct Saved {
    pub(crate) snapshot: Zeroizing<Vec<u8>>,
    pub(crate) log: Vec<Zeroizing<Vec<u8>>>,
}

/// The state directory, locked for the one process that uses it: two
/// processes writing one device's state would reuse sequence numbers.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    /// The key, if the directory is encrypted.
    key: Option<Arc<StateKey>>,
    /// The number of records in each log, where known: in an encrypted
    /// directory, the position the next record is sealed at.
    records: Arc<Mutex<BTreeMap<SessionId, u64>>>,
    _lock: Arc<std::fs::File>,
}

pub(crate) fn private_dir(path: &Path) -> Result<(), ClientError> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Write `bytes` to `path` whole: a temporary file readable by the owner
/// only, synced, then renamed over the old one.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), ClientError> {
    match std::fs::File::open(dir) {
        Ok(d) => Ok(d.sync_all()?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether `root` holds a device key or any session or kept record.
fn holds_state(root: &Path) -> Result<bool, ClientError> {
    if root.join("device.key").try_exists()? {
        return Ok(true);
    }
    for dir in ["sessions", "kept"] {
        match std::fs::read_dir(root.join(dir)) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// A session's log as read: its bytes, and where in them each whole
/// record is.
struct Log {
    raw: Zeroizing<Vec<u8>>,
    records: Vec<Range<usize>>,
}

/// The records of a log's whole frames, as ranges of `raw`, and where the
/// last whole frame ends.
fn frames(raw: &[u8]) -> (Vec<Range<usize>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((len, _)) = raw[at..].split_first_chunk::<4>() {
        let start = at + 4;
        let end = start.saturating_add(u32::from_be_bytes(*len) as usize);
        if end > raw.len() {
            break;
        }
        out.push(start..end);
        at = end;
    }
    (out, at)
}

impl StateDir {
    /// Open (creating) a state directory, readable by the owner only.
    ///
    /// Fails if another process holds it, and with
    /// [`ClientError::PassphraseNeeded`] if it is encrypted.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ClientError> {
        let dir = Self::lock(root.into())?;
        if dir.keyfile_path().try_exists()? {
            return Err(ClientError::PassphraseNeeded);
        }
        Ok(dir)
    }

    /// Open (creating) a state directory encrypted with `passphrase`,
    /// readable by the owner only. A new directory (or one holding no state
    /// yet) becomes encrypted; the key is derived with Argon2id, which takes
    /// a moment (see `docs/client.md`).
    ///
    /// Fails if another process holds it; with
    /// [`ClientError::WrongPassphrase`], before anything is read or written,
    /// if the passphrase is not the directory's; and if the directory already
    /// holds state that is not encrypted, or the passphrase is empty.
    pub fn open_encrypted(
        root: impl Into<PathBuf>,
        passphrase: &[u8],
    ) -> Result<Self, ClientError> {
        if passphrase.is_empty() {
            return Err(ClientError::Usage("the passphrase is empty"));
        }
        let mut dir = Self::lock(root.into())?;
        let key = match std::fs::read(dir.keyfile_path()) {
            Ok(keyfile) => StateKey::unlock(&keyfile, passphrase)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if holds_state(&dir.root)? {
                    return Err(ClientError::Usage(
                        "this state directory is not encrypted: open it without a passphrase",
                    ));
                }
                let (key, keyfile) = StateKey::create(passphrase)?;
                write_private(&dir.keyfile_path(), &keyfile)?;
                key
            }
            Err(e) => return Err(e.into()),
        };
        dir.key = Some(Arc::new(key));
        Ok(dir)
    }

    fn lock(root: PathBuf) -> Result<Self, ClientError> {
        private_dir(&root)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ClientError::Busy);
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        Ok(Self {
            root,
            key: None,
            records: Arc::default(),
            _lock: Arc::new(lock),
        })
    }

    fn keyfile_path(&self) -> PathBuf {
        self.root.join("keyfile")
    }

    /// `bytes` as written to disk: sealed as `kind` if the directory is
    /// encrypted.
    fn seal(&self, kind: Kind<'_>, bytes: &[u8]) -> Result<Vec<u8>, ClientError> {
        match &self.key {
            Some(key) => key.seal(kind, bytes),
            None => Ok(bytes.to_vec()),
        }
    }

    /// What [`StateDir::seal`] wrote.
    fn unseal(&self, kind: Kind<'_>, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        match &self.key {
            Some(key) => key.open(kind, bytes),
            None => Ok(Zeroizing::new(bytes.to_vec())),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<SessionId, u64>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn key_path(&self) -> PathBuf {
        self.root.join("device.key")
    }

    /// The device's keys, if an identity has been created here.
    pub fn identity(&self) -> Result<Option<DeviceKeys>, ClientError> {
        match std::fs::read(self.key_path()) {
            Ok(bytes) => {
                let bytes = self.unseal(Kind::Identity, &Zeroizing::new(bytes))?;
                Ok(Some(DeviceKeys::from_secret_bytes(&bytes)?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The device's keys, created on first use.
    pub fn identity_or_create(&self) -> Result<DeviceKeys, ClientError> {
        if let Some(keys) = self.identity()? {
            return Ok(keys);
        }
        let keys = DeviceKeys::generate()?;
        let bytes = self.seal(Kind::Identity, &keys.to_secret_bytes())?;
        write_private(&self.key_path(), &bytes)?;
        Ok(keys)
    }

    fn session_file(&self, id: &SessionId) -> PathBuf {
        self.root.join("sessions").join(format!("{id}.state"))
    }

    /// The sessions kept here.
    pub fn sessions(&self) -> Result<Vec<SessionId>, ClientError> {
        let dir = self.root.join("sessions");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.strip_suffix(".state"))
                .and_then(SessionId::parse);
            if let Some(id) = id {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    fn kept_file(&self, id: &SessionId, what: Kept) -> PathBuf {
        let ext = match what {
            Kept::Agreement => "agreement",
            Kept::Deletion => "deletion",
        };
        self.root.join("kept").join(format!("{id}.{ext}"))
    }

    /// Keep a record of a session that outlives its erasure.
    fn keep(&self, id: &SessionId, what: Kept, bytes: &[u8]) -> Result<(), ClientError> {
        private_dir(&self.root.join("kept"))?;
        write_private(
            &self.kept_file(id, what),
            &self.seal(Kind::Kept(id, what), bytes)?,
        )
    }

    /// A kept record, if there is one.
    pub(crate) fn kept(
        &self,
        id: &SessionId,
        what: Kept,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ClientError> {
        match std::fs::read(self.kept_file(id, what)) {
            Ok(bytes) => Ok(Some(self.unseal(Kind::Kept(id, what), &bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Where a session's downloaded documents are kept, each as its
    /// sealed chunks (erased with the session).
    pub(crate) fn documents(&self, id: &SessionId) -> PathBuf {
        self.root.join("documents").join(id.to_string())
    }

    fn log_file(&self, id: &SessionId) -> PathBuf {
        self.root.join("sessions").join(format!("{id}.log"))
    }

    /// Delete a session's snapshot and log: its room keys, chains and
    /// messages.
    fn erase(&self, id: &SessionId) -> Result<(), ClientError> {
        for path in [self.session_file(id), self.log_file(id)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        match std::fs::remove_dir_all(self.documents(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.counts().insert(*id, 0);
        sync_dir(&self.root.join("sessions"))
    }

    /// A session's log. A frame cut short at the end (a crash mid-append) is
    /// cut off the file, so the next append follows the last whole one.
    fn read_log(&self, id: &SessionId) -> Result<Log, ClientError> {
        let mut raw = Zeroizing::new(Vec::new());
        match std::fs::File::open(self.log_file(id)) {
            Ok(mut f) => {
                f.read_to_end(&mut raw)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let (records, whole) = frames(&raw);
        if whole < raw.len() {
            std::fs::OpenOptions::new()
                .write(true)
                .open(self.log_file(id))?
                .set_len(whole as u64)?;
        }
        Ok(Log { raw, records })
    }

    /// The number of records in a session's log (read from it the first
    /// time).
    fn log_records(&self, id: &SessionId) -> Result<u64, ClientError> {
        if let Some(n) = self.counts().get(id) {
            return Ok(*n);
        }
        let n = self.read_log(id)?.records.len() as u64;
        self.counts().insert(*id, n);
        Ok(n)
    }

    /// Save one batch of changes (see the module documentation for the
    /// order, and why).
    pub(crate) fn apply(&self, changes: &Changes) -> Result<(), ClientError> {
        for (id, c) in &changes.sessions {
            if c.erase {
                self.erase(id)?;
            }
            if !c.appended.is_empty() {
                private_dir(&self.root.join("sessions"))?;
                let first = match self.key {
                    Some(_) => self.log_records(id)?,
                    None => 0,
                };
                let mut frames = Zeroizing::new(Vec::new());
                for (n, record) in (first..).zip(&c.appended) {
                    let sealed = self.seal(Kind::Record(id, n), record)?;
                    let len = u32::try_from(sealed.len())
                        .map_err(|_| ClientError::Corrupt("a message too large to keep".into()))?;
                    frames.extend_from_slice(&len.to_be_bytes());
                    frames.extend_from_slice(&sealed);
                }
                let mut options = std::fs::OpenOptions::new();
                options.append(true).create(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut log = options.open(self.log_file(id))?;
                log.write_all(&frames)?;
                log.sync_data()?;
                if self.key.is_some() {
                    self.counts().insert(*id, first + c.appended.len() as u64);
                }
            }
            if let Some(snapshot) = &c.snapshot {
                private_dir(&self.root.join("sessions"))?;
                let sealed = match self.key {
                    Some(_) => {
                        let mut counted = Zeroizing::new(Vec::with_capacity(8 + snapshot.len()));
                        counted.extend_from_slice(&self.log_records(id)?.to_be_bytes());
                        counted.extend_from_slice(snapshot);
                        self.seal(Kind::Snapshot(id), &counted)?
                    }
                    None => snapshot.to_vec(),
                };
                write_private(&self.session_file(id), &sealed)?;
            }
            for (what, bytes) in &c.kept {
                self.keep(id, *what, bytes)?;
            }
        }
        Ok(())
    }

    /// Every session saved here, with its log. A frame cut short at the end
    /// of a log (a crash mid-append) is dropped; a whole record that does not
    /// open, anywhere in the log, is an error.
    pub(crate) fn load(&self) -> Result<Vec<Saved>, ClientError> {
        let mut out = Vec::new();
        for id in self.sessions()? {
            let mut snapshot =
                self.unseal(Kind::Snapshot(&id), &std::fs::read(self.session_file(&id))?)?;
            let Log { raw, records } = self.read_log(&id)?;
            let count = records.len() as u64;
            if self.key.is_some() {
                let Some((counted, _)) = snapshot.split_first_chunk::<8>() else {
                    return Err(ClientError::Corrupt(format!(
                        "the snapshot of session {id} is too short"
                    )));
                };
                if u64::from_be_bytes(*counted) > count {
                    return Err(ClientError::Corrupt(format!(
                        "the log of session {id} has fewer records than its snapshot counts: some were removed"
                    )));
                }
                snapshot.drain(..8);
                self.counts().insert(id, count);
            }
            let log = (0..)
                .zip(records)
                .map(|(n, record)| self.unseal(Kind::Record(&id, n), &raw[record]))
                .collect::<Result<_, _>>()?;
            out.push(Saved { snapshot, log });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use caucus_client_core::SessionChanges;

    use super::*;

    fn append(dir: &StateDir, id: SessionId, records: &[&[u8]]) {
        let mut changes = Changes::default();
        changes.sessions.insert(
            id,
            SessionChanges {
                appended: records.iter().map(|r| Zeroizing::new(r.to_vec())).collect(),
                snapshot: Some(Zeroizing::new(id.to_string().into_bytes())),
                ..SessionChanges::default()
            },
        );
        dir.apply(&changes).unwrap();
    }

    fn records(dir: &StateDir) -> Vec<Vec<u8>> {
        let saved = dir.load().unwrap();
        assert_eq!(saved.len(), 1);
        saved[0].log.iter().map(|r| r.to_vec()).collect()
    }

    #[test]
    fn a_frame_cut_short_by_a_crash_is_dropped_and_the_next_append_follows_the_last_whole_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path()).unwrap();
        let id = SessionId::random().unwrap();
        append(&dir, id, &[b"first", b"second"]);
        // A crash in the middle of an append: a length, and part of a record.
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.log_file(&id))
            .unwrap();
        log.write_all(&100u32.to_be_bytes()).unwrap();
        log.write_all(b"thir").unwrap();
        drop(log);

        assert_eq!(records(&dir), [b"first".to_vec(), b"second".to_vec()]);
        append(&dir, id, &[b"third"]);
        assert_eq!(
            records(&dir),
            [b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
        );
    }

    const PASSPHRASE: &[u8] = b"correct horse battery staple";

    fn encrypted(root: &Path) -> StateDir {
        StateDir::open_encrypted(root, PASSPHRASE).unwrap()
    }

    fn load_error(dir: &StateDir) -> String {
        match dir.load() {
            Err(ClientError::Corrupt(why)) => why,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("loaded"),
        }
    }

    #[test]
    fn encrypted_a_record_cut_short_by_a_crash_is_dropped_and_the_next_append_follows_the_last_whole_one()
     {
        let root = tempfile::tempdir().unwrap();
        let dir = encrypted(root.path());
        let id = SessionId::random().unwrap();
        append(&dir, id, &[b"first", b"second"]);
        // A crash in the middle of an append: a whole length, and part of a
        // sealed record (nonce, 5 bytes, tag).
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.log_file(&id))
            .unwrap();
        log.write_all(&45u32.to_be_bytes()).unwrap();
        log.write_all(&[7; 30]).unwrap();
        drop(log);

        drop(dir);
        let again = encrypted(root.path());
        assert_eq!(records(&again), [b"first".to_vec(), b"second".to_vec()]);
        append(&again, id, &[b"third"]);
        assert_eq!(
            records(&again),
            [b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
        );
    }

    #[test]
    fn encrypted_a_record_altered_moved_or_removed_is_an_error_not_dropped() {
        let root = tempfile::tempdir().unwrap();
        let dir = encrypted(root.path());
        let id = SessionId::random().unwrap();
        append(&dir, id, &[b"first", b"second", b"third"]);
        let log = std::fs::read(dir.log_file(&id)).unwrap();
        let (f, whole) = frames(&log);
        assert_eq!((f.len(), whole), (3, log.len()));
        let frame = |n: usize| &log[f[n].start - 4..f[n].end];

        let mut altered = log.clone();
        altered[f[1].start + 30] ^= 1;
        let swapped = [frame(0), frame(2), frame(1)].concat();
        let shortened = log[..f[1].end].to_vec();
        for (bad, why) in [
            (altered, "record 1 of the log"),
            (swapped, "record 1 of the log"),
            (shortened, "fewer records than its snapshot counts"),
        ] {
            std::fs::write(dir.log_file(&id), &bad).unwrap();
            let error = load_error(&dir);
            assert!(error.contains(why), "{error}");
            // Nothing was cut off.
            assert_eq!(std::fs::read(dir.log_file(&id)).unwrap(), bad);
        }
        std::fs::write(dir.log_file(&id), &log).unwrap();
        assert_eq!(records(&dir).len(), 3);
    }

    #[test]
    fn encrypted_one_sessions_snapshot_or_log_in_place_of_anothers_fails_authentication() {
        let root = tempfile::tempdir().unwrap();
        let dir = encrypted(root.path());
        let (a, b) = (SessionId::random().unwrap(), SessionId::random().unwrap());
        append(&dir, a, &[b"for a"]);
        append(&dir, b, &[b"for b"]);
        for (file, why) in [
            (dir.session_file(&a), format!("the snapshot of session {a}")),
            (
                dir.log_file(&a),
                format!("record 0 of the log of session {a}"),
            ),
        ] {
            let mine = std::fs::read(&file).unwrap();
            let theirs = file.with_file_name(
                file.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .replace(&a.to_string(), &b.to_string()),
            );
            std::fs::copy(&theirs, &file).unwrap();
            let error = load_error(&dir);
            assert!(error.contains(&why), "{error}");
            assert!(error.contains("fails authentication"), "{error}");
            std::fs::write(&file, mine).unwrap();
        }
        let snapshots: Vec<_> = dir
            .load()
            .unwrap()
            .iter()
            .map(|s| s.snapshot.to_vec())
            .collect();
        assert_eq!(snapshots.len(), 2);
        for id in [a, b] {
            assert!(snapshots.contains(&id.to_string().into_bytes()));
        }
    }

    #[test]
    fn encrypted_no_file_holds_a_record_a_snapshot_or_a_kept_record_in_the_clear() {
        let root = tempfile::tempdir().unwrap();
        let dir = encrypted(root.path());
        let id = SessionId::random().unwrap();
        let mut changes = Changes::default();
        changes.sessions.insert(
            id,
            SessionChanges {
                appended: vec![Zeroizing::new(b"the record's canary".to_vec())],
                snapshot: Some(Zeroizing::new(b"the snapshot's canary".to_vec())),
                kept: vec![(Kept::Agreement, b"the agreement's canary".to_vec())],
                ..SessionChanges::default()
            },
        );
        dir.apply(&changes).unwrap();
        let mut files = Vec::new();
        for sub in ["", "sessions", "kept"] {
            for entry in std::fs::read_dir(root.path().join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    files.push(std::fs::read(path).unwrap());
                }
            }
        }
        assert_eq!(files.len(), 5, "lock, keyfile, snapshot, log, agreement");
        for bytes in &files {
            assert!(!bytes.windows(6).any(|w| w == b"canary"));
        }
        assert_eq!(
            *dir.kept(&id, Kept::Agreement).unwrap().unwrap(),
            *b"the agreement's canary"
        );
    }
}
