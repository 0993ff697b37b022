//! Documents moving to and from the relay: uploads and downloads as
//! explicit states, with no IO. The machine never reads or writes a file:
//! for an upload it asks the driver for each chunk's bytes
//! ([`Machine::poll_read`], answered with [`Machine::provide_chunk`]) and
//! seals them; for a download it hands each opened chunk's bytes to the
//! driver ([`Machine::poll_chunk`]), and the operation ends well only once
//! every chunk opened and the file's SHA-256 is the one the document names.
//!
//! A few chunks are in flight at a time ([`WINDOW`]). After a reconnect an
//! upload asks the relay how many chunks it holds and goes on from there;
//! a download goes on from the first chunk not yet opened. An upload also
//! survives a restart: its document id and key are saved with the session,
//! and adding the same file again (same size and SHA-256) resumes it,
//! sealing the missing chunks byte for byte as before.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;

use caucus_protocol::content::{Content, ForwardMode, Sharing};
use caucus_protocol::crypto::Digest;
use caucus_protocol::document::{
    CHUNK_SIZE, DocumentKey, DocumentRef, Hasher, MAX_DOCUMENT_SIZE, Opener, Sealer, format_size,
};
use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::{FileId, RoomId, SessionId};
use caucus_protocol::wire::{Reply, RequestBody};
use zeroize::Zeroizing;

use crate::error::ClientError;
use crate::event::DocumentInfo;
use crate::machine::{Link, Machine, Timestamp};
use crate::ops::{Op, OpId, Origin, Outcome, Stage};

type Result<T> = std::result::Result<T, ClientError>;

/// How many chunks of one transfer are asked for, or sent, and not yet
/// answered, at a time.
pub const WINDOW: u32 = 16;

/// What goes wrong with a document itself, in words a person understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The file is over [`MAX_DOCUMENT_SIZE`]: refused before anything is
    /// sent.
    #[error("{name} is {}; documents can be at most {}", format_size(*.size), limit())]
    TooLarge {
        /// The file's name.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The driver gave a chunk of the wrong length: the file is not the
    /// one the upload began with.
    #[error(
        "{name} changed while it was being sent: chunk {index} should hold {expected} bytes, not {got}"
    )]
    WrongLength {
        /// The file's name.
        name: String,
        /// The chunk.
        index: u32,
        /// The bytes it should hold.
        expected: usize,
        /// The bytes given.
        got: usize,
    },
    /// A chunk from the relay did not open: cut short, padded out, moved
    /// from another place, of another document, or altered.
    #[error(
        "part {} of “{title}” was damaged or changed on its way from the relay, so the download is refused ({reason})",
        .index + 1
    )]
    Chunk {
        /// The document's title.
        title: String,
        /// The chunk.
        index: u32,
        /// Why.
        reason: caucus_protocol::Error,
    },
    /// The relay's reply to a download held no chunk.
    #[error(
        "the relay did not send part {} of “{title}”, so the download is refused",
        .index + 1
    )]
    Missing {
        /// The document's title.
        title: String,
        /// The chunk.
        index: u32,
    },
    /// A chunk was given out of order to a [`DocumentReader`].
    #[error("chunk {index} of “{title}” came out of order (chunk {expected} was next)")]
    OutOfOrder {
        /// The document's title.
        title: String,
        /// The chunk given.
        index: u32,
        /// The chunk that was next.
        expected: u32,
    },
    /// The stream ended before its last chunk.
    #[error("“{title}” ended after {got} of its {chunks} chunks: the download is refused")]
    Truncated {
        /// The document's title.
        title: String,
        /// The chunks opened.
        got: u32,
        /// The chunks it has.
        chunks: u32,
    },
    /// Every chunk opened, but the file's SHA-256 is not the one the
    /// document names.
    #[error("“{title}” is not the document described: its SHA-256 differs; it is refused")]
    HashDiffers {
        /// The document's title.
        title: String,
    },
}

impl DocumentError {
    /// [`DocumentError::TooLarge`] for a file of `size` bytes over
    /// [`MAX_DOCUMENT_SIZE`]: the one size rule, for a driver to apply
    /// before it reads the file at all.
    pub fn check_size(name: &str, size: u64) -> std::result::Result<(), Self> {
        if size > MAX_DOCUMENT_SIZE {
            return Err(Self::TooLarge {
                name: name.to_owned(),
                size,
            });
        }
        Ok(())
    }
}

/// The size limit as people read it ("50 MB").
fn limit() -> String {
    format!("{} MB", MAX_DOCUMENT_SIZE / (1024 * 1024))
}

/// A file to add as a document: what to call it and what it holds. The
/// driver computes `hash` ([`caucus_protocol::document::Hasher`]) reading
/// the file once before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocument {
    /// What people see it called.
    pub title: String,
    /// The file name to save it under.
    pub name: String,
    /// Its media type ([`caucus_protocol::document::UNKNOWN_MEDIA_TYPE`]
    /// when not known).
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes.
    pub hash: Digest,
}

/// Upload or download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// To the relay.
    Upload,
    /// From the relay.
    Download,
}

/// A transfer in progress, to draw a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferInfo {
    /// The operation.
    pub id: OpId,
    /// The session.
    pub session: SessionId,
    /// Which way.
    pub kind: TransferKind,
    /// The document.
    pub document: DocumentInfo,
    /// The file's bytes the relay holds (upload) or handed to the driver
    /// (download).
    pub done: u64,
    /// The file's size.
    pub total: u64,
}

/// The machine asks the driver for bytes of the file being uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// The upload.
    pub transfer: OpId,
    /// The chunk.
    pub index: u32,
    /// Which bytes of the file, to give to [`Machine::provide_chunk`].
    pub range: Range<u64>,
}

/// A chunk of a download, opened, for the driver to write at `offset`.
/// The driver keeps it aside (a temporary file) until the operation ends
/// well: only then is every chunk checked against the document's hash.
pub struct DownloadedChunk {
    /// The download.
    pub transfer: OpId,
    /// The chunk.
    pub index: u32,
    /// Where its bytes go in the file.
    pub offset: u64,
    /// The file's bytes of the chunk.
    pub bytes: Zeroizing<Vec<u8>>,
    /// The chunk as the relay stored it (sealed), for a cache that a
    /// [`DocumentReader`] opens later.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for DownloadedChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadedChunk")
            .field("transfer", &self.transfer)
            .field("index", &self.index)
            .field("offset", &self.offset)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// A document this device can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentEntry {
    /// The message that names it (to download, carry or consent to it).
    pub message: Digest,
    /// The room it is in.
    pub room: RoomId,
    /// Its index there.
    pub index: u64,
    /// Who posted it (for a carried one, the mediator who carried it).
    pub sender: Fingerprint,
    /// Its label; `None` for one a mediator carried.
    pub sharing: Option<Sharing>,
    /// For a carried one: where it came from, and how.
    pub carried: Option<(RoomId, ForwardMode)>,
    /// What it is.
    pub document: DocumentInfo,
}

/// Opens a document's sealed chunks in order and checks the whole file's
/// SHA-256 at the end: the one check of a downloaded document, used for a
/// download from the relay and for reading a cache of its chunks.
pub struct DocumentReader {
    title: String,
    hash: Digest,
    opener: Opener,
    hasher: Hasher,
    next: u32,
}

impl DocumentReader {
    fn new(document: &DocumentRef) -> Result<Self> {
        Ok(Self {
            title: document.title.clone(),
            hash: document.hash,
            opener: Opener::new(&document.key, document.size)?,
            hasher: Hasher::new(),
            next: 0,
        })
    }

    /// How many chunks the document has.
    pub fn chunks(&self) -> u32 {
        self.opener.layout().chunks()
    }

    /// The next chunk to open.
    pub fn next(&self) -> u32 {
        self.next
    }

    /// Open chunk `index`, the next one, from its sealed bytes: the file's
    /// bytes it holds.
    pub fn open(
        &mut self,
        index: u32,
        sealed: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, DocumentError> {
        if index != self.next {
            return Err(DocumentError::OutOfOrder {
                title: self.title.clone(),
                index,
                expected: self.next,
            });
        }
        let bytes =
            self.opener
                .open_chunk(index, sealed)
                .map_err(|reason| DocumentError::Chunk {
                    title: self.title.clone(),
                    index,
                    reason,
                })?;
        self.hasher.update(&bytes);
        self.next += 1;
        Ok(bytes)
    }

    /// Whether every chunk is open.
    pub fn is_complete(&self) -> bool {
        self.next == self.chunks()
    }

    /// Check, once every chunk is open, that the file is the one the
    /// document names.
    pub fn finish(self) -> std::result::Result<(), DocumentError> {
        if !self.is_complete() {
            let chunks = self.chunks();
            return Err(DocumentError::Truncated {
                title: self.title,
                got: self.next,
                chunks,
            });
        }
        if self.hasher.finish() == self.hash {
            Ok(())
        } else {
            Err(DocumentError::HashDiffers { title: self.title })
        }
    }
}

/// An upload saved with its session, so that it resumes after a restart:
/// the document's id and key (the key never leaves the session's saved
/// state, which the driver encrypts).
#[derive(Clone)]
pub(crate) struct SavedUpload(pub(crate) DocumentRef);

impl std::fmt::Debug for SavedUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SavedUpload").field(&self.0.file).finish()
    }
}

impl serde::Serialize for SavedUpload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use caucus_protocol::codec::Canonical;
        let bytes = Zeroizing::new(self.0.to_bytes());
        s.serialize_str(&caucus_protocol::b64::encode(&bytes))
    }
}

impl<'de> serde::Deserialize<'de> for SavedUpload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use caucus_protocol::codec::Canonical;
        let text = String::deserialize(d)?;
        let bytes = Zeroizing::new(
            caucus_protocol::b64::decode(&text)
                .ok_or_else(|| serde::de::Error::custom("a saved upload that is not base64"))?,
        );
        DocumentRef::from_bytes(&bytes)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// Where an upload stands.
enum UploadState {
    /// Waiting for a connection; then `upload` asks what the relay holds.
    Paused,
    /// `upload` sent: its reply says how many chunks the relay holds.
    Opening { request: u64 },
    /// Sending chunks, at most [`WINDOW`] ahead of those the relay holds.
    Sending {
        /// Chunks the relay holds.
        held: u32,
        /// The next chunk to ask the driver for.
        next_ask: u32,
        /// The next chunk to send.
        next_send: u32,
        /// Chunks asked for and not yet given.
        reading: BTreeSet<u32>,
        /// Chunks sealed, waiting for an earlier one before they go.
        sealed: BTreeMap<u32, Vec<u8>>,
        /// Chunks sent, by request id.
        sent: BTreeMap<u64, u32>,
    },
}

pub(crate) struct Upload {
    session: SessionId,
    document: DocumentRef,
    sealer: Sealer,
    state: UploadState,
    /// What to do once the relay holds every chunk: post the document.
    then: Vec<Stage>,
}

pub(crate) struct Download {
    session: SessionId,
    document: DocumentRef,
    reader: Option<DocumentReader>,
    /// The next chunk to ask for.
    next_request: u32,
    /// Chunks asked for, by request id.
    requested: BTreeMap<u64, u32>,
    /// Chunks arrived before an earlier one.
    arrived: BTreeMap<u32, Vec<u8>>,
    /// Chunks opened, for the driver.
    ready: VecDeque<DownloadedChunk>,
    /// Chunks handed to the driver.
    handed: u32,
    /// The file's bytes handed to the driver.
    done: u64,
    /// Every chunk opened and the hash checked: done once `ready` drains.
    verified: bool,
}

pub(crate) enum Transfer {
    Upload(Box<Upload>),
    Download(Box<Download>),
}

impl Transfer {
    fn session(&self) -> SessionId {
        match self {
            Self::Upload(u) => u.session,
            Self::Download(d) => d.session,
        }
    }
}

/// The file's bytes in the first `chunks` chunks of a document of `size`.
fn bytes_in(size: u64, chunks: u32) -> u64 {
    (u64::from(chunks) * CHUNK_SIZE as u64).min(size)
}

impl Machine {
    // ----- commands -----

    /// Add a document to `room`, labelled `sharing`: checked here (its size
    /// first, then its title, name and type), saved with the session, then
    /// uploaded chunk by chunk as the driver gives the file's bytes
    /// ([`Machine::poll_read`]); once the relay holds every chunk the
    /// `Document` is posted, and the outcome is that message. Adding the
    /// same file again (same size and SHA-256) after a restart resumes its
    /// upload.
    pub fn add_document(
        &mut self,
        session: &SessionId,
        room: &RoomId,
        document: NewDocument,
        sharing: Sharing,
        now: Timestamp,
    ) -> Result<OpId> {
        self.now = now;
        let document = self.document_ref(session, document)?;
        self.may_post(session, room)?;
        let stages = vec![Stage::Post {
            room: *room,
            content: Content::Document {
                sharing,
                document: document.clone(),
            },
            report: true,
        }];
        self.start_upload(*session, document, stages)
    }

    /// As a mediator: carry a document to `destination`, verbatim (`own`
    /// `None`: the same file, nothing uploaded again) or as a document of
    /// the mediator's own standing for it (uploaded first), then post the
    /// share receipt in its room. A *mediator only* document is refused
    /// unless its author consented. The outcome is the carried copy.
    pub fn carry_document(
        &mut self,
        session: &SessionId,
        message: &Digest,
        destination: &RoomId,
        own: Option<NewDocument>,
        now: Timestamp,
    ) -> Result<OpId> {
        self.now = now;
        let own = own.map(|d| self.document_ref(session, d)).transpose()?;
        let carried = own.clone();
        let stages = self.carry_stages(session, message, destination, |source, consent| {
            let (carried, receipt) = source.carry_document(*destination, carried, consent)?;
            Ok((Content::CarriedDocument(carried), receipt))
        })?;
        match own {
            None => Ok(self.start_op(*session, Origin::Caller, stages, Outcome::Done)),
            Some(document) => self.start_upload(*session, document, stages),
        }
    }

    /// Download a document this device can see (a `Document` or a
    /// `CarriedDocument`, by its message id): its chunks come to the driver
    /// through [`Machine::poll_chunk`], and the operation ends well only
    /// once every chunk opened and the file's SHA-256 checked; otherwise it
    /// fails with a [`DocumentError`] naming what was wrong.
    pub fn download(
        &mut self,
        session: &SessionId,
        message: &Digest,
        now: Timestamp,
    ) -> Result<OpId> {
        self.now = now;
        let document = self.document_of(session, message)?;
        let reader = DocumentReader::new(&document)?;
        let id = self.new_op_id();
        self.transfers.insert(
            id,
            Transfer::Download(Box::new(Download {
                session: *session,
                document,
                reader: Some(reader),
                next_request: 0,
                requested: BTreeMap::new(),
                arrived: BTreeMap::new(),
                ready: VecDeque::new(),
                handed: 0,
                done: 0,
                verified: false,
            })),
        );
        self.pump(id);
        Ok(id)
    }

    /// A reader for a document this device can see, to open chunks the
    /// driver kept (a cache of a download's [`DownloadedChunk::sealed`]).
    pub fn document_reader(&self, session: &SessionId, message: &Digest) -> Result<DocumentReader> {
        DocumentReader::new(&self.document_of(session, message)?)
    }

    /// The documents this device can see in `session`, in the order they
    /// came.
    pub fn documents(&self, session: &SessionId) -> Vec<DocumentEntry> {
        self.sessions.get(session).map_or_else(Vec::new, |s| {
            s.messages
                .iter()
                .filter_map(|(index, m)| {
                    let (sharing, carried, document) = match &m.content {
                        Content::Document { sharing, document } => (Some(*sharing), None, document),
                        Content::CarriedDocument(c) => {
                            (None, Some((c.source_room, c.mode)), &c.document)
                        }
                        _ => return None,
                    };
                    Some(DocumentEntry {
                        message: m.hash,
                        room: m.header.room,
                        index: *index,
                        sender: m.header.sender,
                        sharing,
                        carried,
                        document: document.into(),
                    })
                })
                .collect()
        })
    }

    /// Uploads of `session` begun and not finished (saved with it): adding
    /// the same file again resumes one.
    pub fn pending_uploads(&self, session: &SessionId) -> Vec<DocumentInfo> {
        self.sessions.get(session).map_or_else(Vec::new, |s| {
            s.meta.uploads.iter().map(|u| (&u.0).into()).collect()
        })
    }

    /// Every transfer in progress, with how far it has got.
    pub fn transfers(&self) -> Vec<TransferInfo> {
        self.transfers
            .iter()
            .map(|(id, t)| match t {
                Transfer::Upload(u) => {
                    let held = match &u.state {
                        UploadState::Sending { held, .. } => *held,
                        _ => 0,
                    };
                    TransferInfo {
                        id: *id,
                        session: u.session,
                        kind: TransferKind::Upload,
                        document: (&u.document).into(),
                        done: bytes_in(u.document.size, held),
                        total: u.document.size,
                    }
                }
                Transfer::Download(d) => TransferInfo {
                    id: *id,
                    session: d.session,
                    kind: TransferKind::Download,
                    document: (&d.document).into(),
                    done: d.done,
                    total: d.document.size,
                },
            })
            .collect()
    }

    /// Stop a transfer: it fails with [`ClientError::Cancelled`]. A stopped
    /// upload is forgotten (adding the file again starts afresh).
    pub fn cancel_transfer(&mut self, id: OpId) {
        if let Some(Transfer::Upload(u)) = self.transfers.get(&id) {
            let (session, file) = (u.session, u.document.file);
            self.forget_upload(&session, &file);
        }
        self.fail(id, ClientError::Cancelled);
    }

    // ----- the driver's side -----

    /// The next bytes of a file being uploaded that the machine wants: the
    /// driver reads them and gives them to [`Machine::provide_chunk`].
    pub fn poll_read(&mut self) -> Option<ReadRequest> {
        let ids: Vec<OpId> = self.transfers.keys().copied().collect();
        for id in ids {
            while let Some(Transfer::Upload(u)) = self.transfers.get_mut(&id) {
                let chunks = u.sealer.layout().chunks();
                let UploadState::Sending {
                    held,
                    next_ask,
                    reading,
                    ..
                } = &mut u.state
                else {
                    break;
                };
                if *next_ask >= chunks || *next_ask >= held.saturating_add(WINDOW) {
                    break;
                }
                let index = *next_ask;
                *next_ask += 1;
                let range = u.sealer.file_range(index);
                reading.insert(index);
                if range.is_empty() {
                    // Padding only: nothing of the file to read.
                    self.provide_chunk(id, index, &[], self.now);
                    continue;
                }
                return Some(ReadRequest {
                    transfer: id,
                    index,
                    range: range.start as u64..range.end as u64,
                });
            }
        }
        None
    }

    /// The driver read chunk `index` of an upload's file (the bytes a
    /// [`ReadRequest`] named): it is sealed and sent. Bytes no longer
    /// wanted (the transfer ended or the connection dropped meanwhile) are
    /// passed over; bytes of the wrong length fail the upload.
    pub fn provide_chunk(&mut self, transfer: OpId, index: u32, bytes: &[u8], now: Timestamp) {
        self.now = now;
        let Some(Transfer::Upload(u)) = self.transfers.get_mut(&transfer) else {
            return;
        };
        let UploadState::Sending {
            reading, sealed, ..
        } = &mut u.state
        else {
            return;
        };
        if !reading.remove(&index) {
            return;
        }
        let expected = u.sealer.file_range(index).len();
        let result = if bytes.len() == expected {
            u.sealer
                .seal_chunk(index, bytes)
                .map(|chunk| {
                    sealed.insert(index, chunk);
                })
                .map_err(ClientError::from)
        } else {
            Err(DocumentError::WrongLength {
                name: u.document.name.clone(),
                index,
                expected,
                got: bytes.len(),
            }
            .into())
        };
        match result {
            Ok(()) => self.pump(transfer),
            Err(e) => self.fail(transfer, e),
        }
    }

    /// The next opened chunk of a download, for the driver to write.
    pub fn poll_chunk(&mut self) -> Option<DownloadedChunk> {
        let (id, chunk, finished) = self.transfers.iter_mut().find_map(|(id, t)| {
            let Transfer::Download(d) = t else {
                return None;
            };
            let chunk = d.ready.pop_front()?;
            d.handed += 1;
            d.done += chunk.bytes.len() as u64;
            Some((*id, chunk, d.verified && d.ready.is_empty()))
        })?;
        if finished {
            self.transfers.remove(&id);
            self.done.push_back((id, Ok(Outcome::Done)));
        } else {
            self.pump(id);
        }
        Some(chunk)
    }

    // ----- inside -----

    /// The document a message names.
    fn document_of(&self, session: &SessionId, message: &Digest) -> Result<DocumentRef> {
        match self.message(session, message).map(|m| m.content) {
            Some(Content::Document { document, .. }) => Ok(document),
            Some(Content::CarriedDocument(c)) => Ok(c.document),
            Some(_) => Err(ClientError::Usage("that message is not a document")),
            None => Err(ClientError::Usage("no such message")),
        }
    }

    /// A new document's reference, checked: its size first (before
    /// anything else is done), then the rest. An upload of the same file
    /// (size and hash) saved with the session lends its id and key, so it
    /// resumes.
    fn document_ref(&mut self, session: &SessionId, new: NewDocument) -> Result<DocumentRef> {
        DocumentError::check_size(&new.name, new.size)?;
        let saved = self
            .session(session)?
            .meta
            .uploads
            .iter()
            .find(|u| u.0.size == new.size && u.0.hash == new.hash)
            .map(|u| (u.0.file, u.0.key.clone()));
        let (file, key) = match saved {
            Some(saved) => saved,
            None => (FileId::random()?, DocumentKey::generate()?),
        };
        let document = DocumentRef {
            file,
            key,
            size: new.size,
            hash: new.hash,
            title: new.title,
            name: new.name,
            media_type: new.media_type,
        };
        document.validate()?;
        Ok(document)
    }

    /// Start uploading `document`, saved with its session first; `then`
    /// runs once the relay holds it.
    fn start_upload(
        &mut self,
        session: SessionId,
        document: DocumentRef,
        then: Vec<Stage>,
    ) -> Result<OpId> {
        let busy = self.transfers.values().any(|t| {
            matches!(t, Transfer::Upload(u) if u.session == session && u.document.file == document.file)
        });
        if busy {
            return Err(ClientError::Usage("that file is being sent already"));
        }
        let sealer = Sealer::new(&document.key, document.size)?;
        let state = self.session_mut(&session)?;
        if !state.meta.uploads.iter().any(|u| u.0.file == document.file) {
            state.meta.uploads.push(SavedUpload(document.clone()));
            state.dirty = true;
        }
        let id = self.new_op_id();
        self.transfers.insert(
            id,
            Transfer::Upload(Box::new(Upload {
                session,
                document,
                sealer,
                state: UploadState::Paused,
                then,
            })),
        );
        self.pump(id);
        Ok(id)
    }

    fn forget_upload(&mut self, session: &SessionId, file: &FileId) {
        if let Some(state) = self.sessions.get_mut(session) {
            let before = state.meta.uploads.len();
            state.meta.uploads.retain(|u| u.0.file != *file);
            state.dirty |= state.meta.uploads.len() != before;
        }
    }

    /// Queue what transfer `id` can send now.
    fn pump(&mut self, id: OpId) {
        if self.link() != Link::Online {
            return;
        }
        let mut requests = Vec::new();
        match self.transfers.get_mut(&id) {
            Some(Transfer::Upload(u)) => match &mut u.state {
                UploadState::Paused => requests.push(RequestBody::Upload {
                    session: u.session,
                    file: u.document.file,
                    size: u.sealer.layout().padded(),
                }),
                UploadState::Opening { .. } => {}
                UploadState::Sending {
                    next_send, sealed, ..
                } => {
                    while let Some(data) = sealed.remove(next_send) {
                        requests.push(RequestBody::Chunk {
                            session: u.session,
                            file: u.document.file,
                            index: u64::from(*next_send),
                            data: caucus_protocol::wire::Bytes(data),
                        });
                        *next_send += 1;
                    }
                }
            },
            Some(Transfer::Download(d)) => {
                let chunks = d.reader.as_ref().map_or(0, DocumentReader::chunks);
                while d.next_request < chunks && d.next_request < d.handed.saturating_add(WINDOW) {
                    requests.push(RequestBody::Download {
                        session: d.session,
                        file: d.document.file,
                        index: u64::from(d.next_request),
                    });
                    d.next_request += 1;
                }
            }
            None => return,
        }
        for body in requests {
            let index = match &body {
                RequestBody::Chunk { index, .. } | RequestBody::Download { index, .. } => {
                    u32::try_from(*index).unwrap_or(u32::MAX)
                }
                _ => 0,
            };
            let request = self.queue_request(id, body);
            match self.transfers.get_mut(&id) {
                Some(Transfer::Upload(u)) => match &mut u.state {
                    UploadState::Paused => u.state = UploadState::Opening { request },
                    UploadState::Sending { sent, .. } => {
                        sent.insert(request, index);
                    }
                    UploadState::Opening { .. } => {}
                },
                Some(Transfer::Download(d)) => {
                    d.requested.insert(request, index);
                }
                None => {}
            }
        }
    }

    /// The connection is up: every transfer goes on.
    pub(crate) fn resume_transfers(&mut self) {
        let ids: Vec<OpId> = self.transfers.keys().copied().collect();
        for id in ids {
            self.pump(id);
        }
    }

    /// The connection is gone, and every request with it: an upload asks
    /// the relay again what it holds; a download asks again from the first
    /// chunk not yet opened.
    pub(crate) fn pause_transfers(&mut self) {
        for t in self.transfers.values_mut() {
            match t {
                Transfer::Upload(u) => u.state = UploadState::Paused,
                Transfer::Download(d) => {
                    d.requested.clear();
                    d.arrived.clear();
                    d.next_request = d.reader.as_ref().map_or(0, DocumentReader::next);
                }
            }
        }
        let transfers = &self.transfers;
        self.queue.retain(|q| !transfers.contains_key(&q.op));
    }

    /// End transfer `id` with an error, if it is one.
    pub(crate) fn fail_transfer(
        &mut self,
        id: OpId,
        e: ClientError,
    ) -> std::result::Result<(), ClientError> {
        if self.transfers.remove(&id).is_none() {
            return Err(e);
        }
        self.queue.retain(|q| q.op != id);
        self.in_flight.retain(|_, f| f.op != id);
        self.done.push_back((id, Err(e)));
        Ok(())
    }

    /// Whether `op` is a transfer.
    pub(crate) fn is_transfer(&self, op: &OpId) -> bool {
        self.transfers.contains_key(op)
    }

    /// The transfers of a session being erased end.
    pub(crate) fn drop_transfers(&mut self, session: &SessionId) {
        let ids: Vec<OpId> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.session() == *session)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.fail(id, ClientError::UnknownSession);
        }
    }

    /// The relay answered request `request` of transfer `id`.
    pub(crate) fn on_transfer_reply(&mut self, id: OpId, request: u64, reply: Reply) {
        if let Err(e) = self.transfer_reply(id, request, reply) {
            self.fail(id, e);
        }
    }

    fn transfer_reply(&mut self, id: OpId, request: u64, reply: Reply) -> Result<()> {
        let (chunks, data) = match reply {
            Reply::Ok { chunks, data, .. } => (chunks, data.map(|d| d.0)),
            Reply::Error { code, message, .. } => {
                return Err(ClientError::Refused { code, message });
            }
        };
        match self.transfers.get_mut(&id) {
            Some(Transfer::Upload(u)) => {
                let total = u.sealer.layout().chunks();
                let held = if matches!(u.state, UploadState::Opening { request: r } if r == request)
                {
                    let held = chunks
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n <= total)
                        .ok_or(ClientError::Connection(
                            "the relay's answer to an upload holds no chunk count".into(),
                        ))?;
                    u.state = UploadState::Sending {
                        held,
                        next_ask: held,
                        next_send: held,
                        reading: BTreeSet::new(),
                        sealed: BTreeMap::new(),
                        sent: BTreeMap::new(),
                    };
                    held
                } else if let UploadState::Sending { held, sent, .. } = &mut u.state {
                    if sent.remove(&request) != Some(*held) {
                        return Err(ClientError::Connection(
                            "the relay acknowledged chunks out of order".into(),
                        ));
                    }
                    *held += 1;
                    *held
                } else {
                    return Ok(());
                };
                if held == total {
                    self.uploaded(id);
                } else {
                    self.pump(id);
                }
            }
            Some(Transfer::Download(d)) => {
                let Some(index) = d.requested.remove(&request) else {
                    return Ok(());
                };
                let Some(reader) = d.reader.as_mut() else {
                    return Ok(());
                };
                let title = d.document.title.clone();
                let data = data.ok_or(DocumentError::Missing { title, index })?;
                d.arrived.insert(index, data);
                while let Some(sealed) = d.arrived.remove(&reader.next()) {
                    let index = reader.next();
                    let bytes = reader.open(index, &sealed)?;
                    d.ready.push_back(DownloadedChunk {
                        transfer: id,
                        index,
                        offset: u64::from(index) * CHUNK_SIZE as u64,
                        bytes,
                        sealed,
                    });
                }
                if reader.is_complete()
                    && let Some(reader) = d.reader.take()
                {
                    reader.finish()?;
                    d.verified = true;
                    if d.ready.is_empty() {
                        self.transfers.remove(&id);
                        self.done.push_back((id, Ok(Outcome::Done)));
                    }
                }
            }
            None => {}
        }
        Ok(())
    }

    /// The relay holds every chunk of upload `id`: it is no longer saved,
    /// and what it was for (posting the document) runs as the same
    /// operation.
    fn uploaded(&mut self, id: OpId) {
        let Some(Transfer::Upload(u)) = self.transfers.remove(&id) else {
            return;
        };
        self.forget_upload(&u.session, &u.document.file);
        self.ops.insert(
            id,
            Op::new(u.session, Origin::Caller, u.then, Outcome::Done),
        );
        self.progress();
    }
}
