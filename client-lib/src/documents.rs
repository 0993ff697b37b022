//! Documents on this device: the file IO the machine asks for (an upload's
//! chunks read from its file; a download's chunks written aside, and kept
//! sealed in the state directory), and the client's document commands.
//! Every check is the machine's: a download's bytes become the file asked
//! for only once its operation ends well (every chunk opened, the hash
//! checked); until then they are in a `.part` file beside it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use caucus_client_core::{
    ClientError, DocumentEntry, DocumentInfo, Machine, NewDocument, OpId, Sent, TransferInfo,
};
use caucus_protocol::content::Sharing;
use caucus_protocol::crypto::Digest;
use caucus_protocol::document::{Hasher, MAX_DOCUMENT_SIZE, UNKNOWN_MEDIA_TYPE};
use caucus_protocol::ids::{RoomId, SessionId};

use crate::client::Client;
use crate::store::private_dir;

type Result<T> = std::result::Result<T, ClientError>;

/// The file a transfer reads or writes.
pub(crate) enum FileIo {
    /// An upload's source.
    Read(File),
    /// A download: the file's bytes set aside, and the directory its
    /// sealed chunks are kept in.
    Write { part: File, cache: PathBuf },
}

/// Do the file IO the machine asks for; whether anything was done. A
/// transfer whose file fails is cancelled, and the error it met is put in
/// `failed` for its caller.
pub(crate) fn serve(
    m: &mut Machine,
    files: &mut HashMap<OpId, FileIo>,
    failed: &mut HashMap<OpId, ClientError>,
) -> bool {
    let mut moved = false;
    while let Some(read) = m.poll_read() {
        moved = true;
        let bytes = match files.get_mut(&read.transfer) {
            Some(FileIo::Read(file)) => read_range(file, read.range.start, read.range.end),
            _ => Err(ClientError::Usage("no file for that upload")),
        };
        match bytes {
            Ok(bytes) => m.provide_chunk(read.transfer, read.index, &bytes, crate::client::clock()),
            Err(e) => {
                failed.insert(read.transfer, e);
                m.cancel_transfer(read.transfer);
            }
        }
    }
    while let Some(chunk) = m.poll_chunk() {
        moved = true;
        let written = match files.get_mut(&chunk.transfer) {
            Some(FileIo::Write { part, cache }) => part
                .seek(SeekFrom::Start(chunk.offset))
                .and_then(|_| part.write_all(&chunk.bytes))
                .and_then(|()| std::fs::write(cache.join(chunk.index.to_string()), &chunk.sealed))
                .map_err(ClientError::from),
            _ => Err(ClientError::Usage("no file for that download")),
        };
        if let Err(e) = written {
            failed.insert(chunk.transfer, e);
            m.cancel_transfer(chunk.transfer);
        }
    }
    moved
}

fn read_range(file: &mut File, start: u64, end: u64) -> Result<Vec<u8>> {
    let len = usize::try_from(end.saturating_sub(start))
        .map_err(|_| ClientError::Usage("a chunk too large to read"))?;
    let mut bytes = vec![0; len];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// A file as a new document: its name, size and SHA-256 (read once), its
/// media type from its extension, and `title` (the file's name if none).
/// A file over the limit is not read: the machine refuses it by its size.
fn describe(path: &Path, title: Option<&str>) -> Result<(NewDocument, File)> {
    let mut file = File::open(path).map_err(|e| {
        ClientError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    })?;
    let size = file.metadata()?.len();
    let hash = if size <= MAX_DOCUMENT_SIZE {
        let mut hasher = Hasher::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        hasher.finish()
    } else {
        Digest([0; 32])
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or(ClientError::Usage("that path names no file"))?;
    let title = title.map_or_else(|| name.clone(), str::to_owned);
    let media_type = media_type(&name).to_owned();
    Ok((
        NewDocument {
            title,
            name,
            media_type,
            size,
            hash,
        },
        file,
    ))
}

/// The media type of a file name's extension, for the documents a
/// mediation holds; [`UNKNOWN_MEDIA_TYPE`] for any other.
fn media_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "rtf" => "application/rtf",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "zip" => "application/zip",
        _ => UNKNOWN_MEDIA_TYPE,
    }
}

fn remove_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Client {
    /// Add the file at `path` to `room` as a document labelled `sharing`,
    /// titled `title` (its file name if none): read once for its SHA-256,
    /// then uploaded chunk by chunk, then posted. A file over the limit is
    /// refused before anything is sent. Sending the same file again after
    /// an interruption resumes its upload. Returns the posted message.
    pub async fn send_document(
        &self,
        session: &SessionId,
        room: &RoomId,
        path: &Path,
        title: Option<&str>,
        sharing: Sharing,
    ) -> Result<Sent> {
        let (document, file) = describe(path, title)?;
        self.run_sent_with(
            |m, now| m.add_document(session, room, document, sharing, now),
            Some(FileIo::Read(file)),
        )
        .await
    }

    /// (Mediator) carry a document to `destination`: verbatim (nothing
    /// uploaded again), or, with `own` (a file and its title), as a
    /// document of the mediator's own standing for it; then the share
    /// receipt goes to its room. A *mediator only* document is refused
    /// unless its author consented. Returns the carried copy.
    pub async fn carry_document(
        &self,
        session: &SessionId,
        message: &Digest,
        destination: &RoomId,
        own: Option<(&Path, Option<&str>)>,
    ) -> Result<Sent> {
        let own = own.map(|(path, title)| describe(path, title)).transpose()?;
        let (document, io) = match own {
            Some((d, file)) => (Some(d), Some(FileIo::Read(file))),
            None => (None, None),
        };
        self.run_sent_with(
            |m, now| m.carry_document(session, message, destination, document, now),
            io,
        )
        .await
    }

    /// Save the document of `message` at `out`: from the chunks this
    /// device keeps of it, or else downloaded (and its chunks kept,
    /// sealed). Every chunk is opened and the whole file's SHA-256 checked
    /// before `out` is written; a document that fails is not saved.
    pub async fn save_document(
        &self,
        session: &SessionId,
        message: &Digest,
        out: &Path,
    ) -> Result<DocumentInfo> {
        let document = self
            .documents(session)
            .into_iter()
            .find(|d| d.message == *message)
            .ok_or(ClientError::Usage("no such document"))?
            .document;
        let cache = self
            .documents_dir(session)
            .join(caucus_protocol::b64::encode(&message.0));
        let file_name = out
            .file_name()
            .ok_or(ClientError::Usage("that path names no file"))?;
        let part = out.with_file_name(format!(".{}.part", file_name.to_string_lossy()));
        if self.open_cached(session, message, &cache, &part).is_ok() {
            std::fs::rename(&part, out)?;
            return Ok(document);
        }
        remove_dir(&cache)?;
        private_dir(&cache)?;
        let io = FileIo::Write {
            part: File::create(&part)?,
            cache: cache.clone(),
        };
        match self
            .run_with(|m, now| m.download(session, message, now), Some(io))
            .await
        {
            Ok(_) => {
                std::fs::rename(&part, out)?;
                Ok(document)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                remove_dir(&cache)?;
                Err(e)
            }
        }
    }

    /// Open the chunks kept of a document into `part`, checked as a
    /// download is.
    fn open_cached(
        &self,
        session: &SessionId,
        message: &Digest,
        cache: &Path,
        part: &Path,
    ) -> Result<()> {
        let mut reader = self.read(|m| m.document_reader(session, message))?;
        let mut file = File::create(part)?;
        for index in 0..reader.chunks() {
            let sealed = std::fs::read(cache.join(index.to_string()))?;
            file.write_all(&reader.open(index, &sealed)?)?;
        }
        reader.finish()?;
        Ok(())
    }

    /// The documents this device can see in `session`, in the order they
    /// came.
    pub fn documents(&self, session: &SessionId) -> Vec<DocumentEntry> {
        self.read(|m| m.documents(session))
    }

    /// The transfers in progress, with how far each has got.
    pub fn transfers(&self) -> Vec<TransferInfo> {
        self.read(Machine::transfers)
    }
}
