//! The state directory: the device's keys and, per session, a snapshot and
//! an append-only message log (see `caucus_client_core::state` for what
//! each holds and why they are saved apart). Files are readable by the
//! owner only.
//!
//! ```text
//! STATE/lock                      held by the one process using the directory
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
//! ```
//!
//! One batch of changes is saved as: the log appended and synced, then the
//! snapshot renamed into place and the directory synced. A crash leaves the
//! old snapshot or the new, and a log at least as new as the snapshot; a
//! frame cut short by the crash is dropped when the log is read.
//!
//! Erasing a session removes both files, and with them its room keys and
//! messages; what is under `kept/` is the participant's own record of the
//! outcome and stays until they delete it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use caucus_client_core::{Changes, ClientError, Kept};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::SessionId;
use zeroize::Zeroizing;

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
    _lock: std::sync::Arc<std::fs::File>,
}

fn private_dir(path: &Path) -> Result<(), ClientError> {
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

impl StateDir {
    /// Open (creating) a state directory, readable by the owner only.
    ///
    /// Fails if another process holds it.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ClientError> {
        let root = root.into();
        private_dir(&root)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ClientError::Usage(
                    "another process is using this state directory",
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        Ok(Self {
            root,
            _lock: std::sync::Arc::new(lock),
        })
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
                let bytes = zeroize::Zeroizing::new(bytes);
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
        write_private(&self.key_path(), &keys.to_secret_bytes())?;
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
        write_private(&self.kept_file(id, what), bytes)
    }

    /// A kept record, if there is one.
    pub(crate) fn kept(&self, id: &SessionId, what: Kept) -> Result<Option<Vec<u8>>, ClientError> {
        match std::fs::read(self.kept_file(id, what)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
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
        sync_dir(&self.root.join("sessions"))
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
                let mut frames = Zeroizing::new(Vec::new());
                for record in &c.appended {
                    let len = u32::try_from(record.len())
                        .map_err(|_| ClientError::Corrupt("a message too large to keep".into()))?;
                    frames.extend_from_slice(&len.to_be_bytes());
                    frames.extend_from_slice(record);
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
            }
            if let Some(snapshot) = &c.snapshot {
                private_dir(&self.root.join("sessions"))?;
                write_private(&self.session_file(id), snapshot)?;
            }
            for (what, bytes) in &c.kept {
                self.keep(id, *what, bytes)?;
            }
        }
        Ok(())
    }

    /// Every session saved here, with its log. A frame cut short at the end
    /// of a log (a crash mid-append) is dropped.
    pub(crate) fn load(&self) -> Result<Vec<Saved>, ClientError> {
        let mut out = Vec::new();
        for id in self.sessions()? {
            let snapshot = Zeroizing::new(std::fs::read(self.session_file(&id))?);
            let mut raw = Zeroizing::new(Vec::new());
            match std::fs::File::open(self.log_file(&id)) {
                Ok(mut f) => {
                    f.read_to_end(&mut raw)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            let mut log = Vec::new();
            let mut rest: &[u8] = &raw;
            while let Some((len, tail)) = rest.split_first_chunk::<4>() {
                let len = u32::from_be_bytes(*len) as usize;
                let Some(record) = tail.get(..len) else {
                    break;
                };
                log.push(Zeroizing::new(record.to_vec()));
                rest = &tail[len..];
            }
            if !rest.is_empty() {
                // Cut the torn frame off, so the next append follows the
                // last whole one.
                let whole = (raw.len() - rest.len()) as u64;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(self.log_file(&id))?
                    .set_len(whole)?;
            }
            out.push(Saved { snapshot, log });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use caucus_client_core::SessionChanges;

    use super::*;

    fn append(dir: &StateDir, id: SessionId, records: &[&[u8]]) {
        let mut changes = Changes::default();
        changes.sessions.insert(
            id,
            SessionChanges {
                appended: records.iter().map(|r| Zeroizing::new(r.to_vec())).collect(),
                snapshot: Some(Zeroizing::new(b"snapshot".to_vec())),
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
}
