//! The relay's own identity: a device key pair kept in `relay.key` in the
//! data directory (mode 0600), made on first start, and the statements of
//! its key rotations in `relay.rotations`, oldest first, each signed by the
//! key it replaced (protocol.md section 13.11). The identity signs the
//! relay's deletion statements; clients see its public half, with the
//! rotations, in the login challenge, and pin its fingerprint. It is never
//! logged; its fingerprint is.
//!
//! `caucus-server --rotate-key` ([`rotate`]) moves the relay to a new key:
//! it writes the new key to `relay.key.new`, appends the old key's
//! statement to `relay.rotations` (written whole, then renamed into place),
//! and renames `relay.key.new` over `relay.key`, so that a crash at any
//! point leaves either the old key with its statements or the new one with
//! its statement — or, between the last two steps, a finished statement
//! beside an unfinished rename, which the next start completes.

use std::io::Write;
use std::path::{Path, PathBuf};

use caucus_protocol::auth::{RelayRotation, SignedRelayRotation};
use caucus_protocol::codec::{Canonical, Reader, Writer};
use caucus_protocol::identity::{DeviceKeys, Fingerprint};
use caucus_protocol::invite::canonical_url;

use crate::server::ServerError;

/// The key's file name, in the data directory.
const FILE: &str = "relay.key";
/// A new key being rotated in.
const NEW_FILE: &str = "relay.key.new";
/// The rotation statements' file name.
const ROTATIONS: &str = "relay.rotations";

/// Who the relay is: its keys, the rotations that lead to them, and the
/// URLs (canonical) at which clients reach it.
pub(crate) struct RelayIdentity {
    /// The current key pair.
    pub(crate) keys: DeviceKeys,
    /// Every rotation, oldest first; the last names `keys`.
    pub(crate) rotations: Vec<SignedRelayRotation>,
    /// The relay's URLs in canonical form: an auth signature must name one.
    urls: Vec<String>,
}

impl RelayIdentity {
    /// The identity kept in `dir` (made on first start), reached at `urls`.
    pub(crate) fn load(dir: &Path, urls: &[String]) -> Result<Self, ServerError> {
        let (keys, rotations) = load_or_create(dir)?;
        let mut canonical: Vec<String> = urls.iter().map(|u| canonical_url(u)).collect();
        canonical.dedup();
        Ok(Self {
            keys,
            rotations,
            urls: canonical,
        })
    }

    /// Whether `url`, as a client dialled it, names this relay.
    pub(crate) fn serves(&self, url: &str) -> bool {
        self.urls.contains(&canonical_url(url))
    }

    /// The URLs, for a message.
    pub(crate) fn urls(&self) -> String {
        self.urls.join(", ")
    }
}

fn fail(path: &Path, what: &str, e: &dyn std::fmt::Display) -> ServerError {
    ServerError::RelayKey(format!("{}: {what}: {e}", path.display()))
}

fn read_keys(path: &Path) -> Result<Option<DeviceKeys>, ServerError> {
    match std::fs::read(path) {
        Ok(bytes) => DeviceKeys::from_secret_bytes(&bytes)
            .map(Some)
            .map_err(|e| fail(path, "unreadable", &e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(path, "read", &e)),
    }
}

/// Write `bytes` to a new file at `path` (mode 0600), flushed to disk.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| fail(path, "create", &e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(path, "write", &e))
}

/// Make sure a rename in `dir` is on disk.
fn sync_dir(dir: &Path) -> Result<(), ServerError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail(dir, "sync", &e))?;
    Ok(())
}

fn read_rotations(dir: &Path) -> Result<Vec<SignedRelayRotation>, ServerError> {
    let path = dir.join(ROTATIONS);
    match std::fs::read(&path) {
        Ok(bytes) => Reader::decode_all(&bytes, |r| r.list(SignedRelayRotation::decode))
            .map_err(|e| fail(&path, "unreadable", &e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(fail(&path, "read", &e)),
    }
}

/// The key the rotations lead to, if any.
fn last_key(rotations: &[SignedRelayRotation]) -> Option<Fingerprint> {
    rotations.last().map(|r| r.unverified().new.fingerprint())
}

/// Load the relay's identity and rotations from `dir`, or make and store a
/// new identity; finish a rotation interrupted before its last rename.
fn load_or_create(dir: &Path) -> Result<(DeviceKeys, Vec<SignedRelayRotation>), ServerError> {
    let path = dir.join(FILE);
    let rotations = read_rotations(dir)?;
    let keys = match read_keys(&path)? {
        Some(keys) => keys,
        None if rotations.is_empty() => {
            let keys = DeviceKeys::generate().map_err(|e| fail(&path, "generate", &e))?;
            write_new(&path, &keys.to_secret_bytes())?;
            keys
        }
        None => {
            return Err(fail(
                &path,
                "missing",
                &"relay.rotations names a key but relay.key is gone",
            ));
        }
    };
    let keys = match last_key(&rotations) {
        Some(last) if last != keys.fingerprint() => {
            let new_path = dir.join(NEW_FILE);
            match read_keys(&new_path)? {
                Some(new) if new.fingerprint() == last => {
                    std::fs::rename(&new_path, &path).map_err(|e| fail(&path, "rename", &e))?;
                    sync_dir(dir)?;
                    new
                }
                _ => {
                    return Err(fail(
                        &dir.join(ROTATIONS),
                        "inconsistent",
                        &"the last rotation names another key than relay.key's",
                    ));
                }
            }
        }
        _ => keys,
    };
    Ok((keys, rotations))
}

/// Move the relay in `dir` to a new identity, with a statement signed by the
/// old one that clients accept in its place (`now` in seconds since the
/// Unix epoch). Returns the old and new fingerprints. A running relay keeps
/// its old key until it restarts.
pub fn rotate(dir: &Path, now: u64) -> Result<(Fingerprint, Fingerprint), ServerError> {
    let (old, mut rotations) = load_or_create(dir)?;
    let new = DeviceKeys::generate().map_err(|e| fail(&dir.join(NEW_FILE), "generate", &e))?;
    let statement = RelayRotation {
        old: old.public().clone(),
        new: new.public().clone(),
        rotated_at: now,
    }
    .sign(&old)
    .map_err(|e| fail(&dir.join(ROTATIONS), "sign", &e))?;
    rotations.push(statement);
    let new_path = dir.join(NEW_FILE);
    if new_path.exists() {
        std::fs::remove_file(&new_path).map_err(|e| fail(&new_path, "remove", &e))?;
    }
    write_new(&new_path, &new.to_secret_bytes())?;
    let mut w = Writer::new();
    w.list(&rotations, |w, r| r.encode(w));
    let staged: PathBuf = dir.join(format!("{ROTATIONS}.tmp"));
    if staged.exists() {
        std::fs::remove_file(&staged).map_err(|e| fail(&staged, "remove", &e))?;
    }
    write_new(&staged, &w.into_bytes())?;
    let rotations_path = dir.join(ROTATIONS);
    std::fs::rename(&staged, &rotations_path).map_err(|e| fail(&rotations_path, "rename", &e))?;
    sync_dir(dir)?;
    let key_path = dir.join(FILE);
    std::fs::rename(&new_path, &key_path).map_err(|e| fail(&key_path, "rename", &e))?;
    sync_dir(dir)?;
    Ok((old.fingerprint(), new.fingerprint()))
}
