//! The client's state directory: the device's keys and, per session, the
//! verified view, cursors, invites and the messages opened so far. Files are
//! written whole, through a temporary file and a rename, readable by the
//! owner only.
//!
//! ```text
//! STATE/lock                      held by the one process using the directory
//! STATE/device.key                the device's secret keys
//! STATE/sessions/SESSION.state    one file per session: its verified view
//!                                 (rosters, room keys, chains), what the
//!                                 client keeps about it (relay, cursors,
//!                                 invites it issued) and its messages
//! STATE/kept/SESSION.agreement    the concluded agreement, signed (kept
//!                                 when the session is erased)
//! STATE/kept/SESSION.deletion     the relay's signed deletion statement
//! ```
//!
//! Erasing a session ([`StateDir::erase`]) removes its file, and with it its
//! room keys and messages; what is under `kept/` is the participant's own
//! record of the outcome and stays until they delete it.
//!
//! A session's file is written whole and renamed into place, and the
//! directory is synced, so a crash leaves either the old state or the new.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use caucus_protocol::codec::{Canonical, Reader, Writer};
use caucus_protocol::crypto::Digest;
use caucus_protocol::envelope::Header;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{InviteId, PartyId, RoomId, SessionId};
use caucus_protocol::session::{Opened, SessionView};
use serde::{Deserialize, Serialize};

use crate::error::ClientError;

/// An invite this (mediator) client issued. The link holds the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InviteEntry {
    /// The invite's id (also inside the link).
    pub(crate) id: InviteId,
    pub(crate) link: String,
    /// The party the invitee joins; `None` for a co-mediator.
    pub(crate) party: Option<PartyId>,
    pub(crate) name: String,
    pub(crate) used: bool,
}

/// What a client keeps about a session besides its view.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// The relay's URL.
    pub(crate) relay: String,
    /// The last index held per room.
    pub(crate) cursors: BTreeMap<RoomId, u64>,
    /// Invites issued (mediator).
    pub(crate) invites: Vec<InviteEntry>,
    /// Whether this client is a member yet (a joiner waits until admitted).
    pub(crate) joined: bool,
    /// The invite link this client joined with, to knock again if its
    /// connection drops while it waits. It holds the invite secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) link: Option<String>,
    /// Whether [`Event::Joined`](crate::Event::Joined) has been given: once
    /// a member, with the keys of every room this device is in.
    #[serde(default)]
    pub(crate) ready: bool,
    /// Whether the session has closed.
    pub(crate) closed: bool,
}

/// What is kept of a session after it is erased.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kept {
    /// The concluded, signed agreement.
    Agreement,
    /// The relay's deletion statement.
    Deletion,
}

/// A session as the client keeps it.
pub(crate) struct SessionState {
    pub(crate) view: SessionView,
    pub(crate) meta: Meta,
    /// Every message opened or sent, with its index in its room, in the
    /// order they came.
    pub(crate) messages: Vec<(u64, Opened)>,
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
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn corrupt(e: impl std::fmt::Display) -> ClientError {
    ClientError::Corrupt(e.to_string())
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
    pub(crate) fn keep(&self, id: &SessionId, what: Kept, bytes: &[u8]) -> Result<(), ClientError> {
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

    /// Delete a session's state file: its room keys, chains and messages.
    pub(crate) fn erase(&self, id: &SessionId) -> Result<(), ClientError> {
        let path = self.session_file(id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Write a session's whole state: `bytes(view state) || bytes(meta as
    /// JSON) || list(u64 index || bytes(header) || digest || bytes(content))`.
    pub(crate) fn save(&self, state: &SessionState) -> Result<(), ClientError> {
        private_dir(&self.root.join("sessions"))?;
        let mut w = Writer::new();
        w.bytes(&state.view.to_state_bytes());
        w.bytes(&serde_json::to_vec(&state.meta).map_err(corrupt)?);
        w.list(&state.messages, |w, (index, m)| {
            w.u64(*index);
            w.bytes(&m.header.to_bytes());
            m.hash.encode(w);
            w.bytes(&m.content.to_bytes());
        });
        let bytes = zeroize::Zeroizing::new(w.into_bytes());
        write_private(&self.session_file(&state.view.session()), &bytes)
    }

    pub(crate) fn load(&self, id: &SessionId) -> Result<SessionState, ClientError> {
        let raw = zeroize::Zeroizing::new(std::fs::read(self.session_file(id))?);
        let (view, meta, messages) = Reader::decode_all(&raw, |r| {
            let view = r.bytes()?;
            let meta = r.bytes()?;
            let messages = r.list(|r| {
                let index = r.u64()?;
                Ok((
                    index,
                    Opened {
                        header: Header::from_bytes(r.bytes()?)?,
                        hash: Digest::decode(r)?,
                        content: caucus_protocol::content::Content::from_bytes(r.bytes()?)?,
                        gap: None,
                    },
                ))
            })?;
            Ok((view, meta, messages))
        })
        .map_err(corrupt)?;
        Ok(SessionState {
            view: SessionView::from_state_bytes(view)?,
            meta: serde_json::from_slice(meta).map_err(corrupt)?,
            messages,
        })
    }
}
