//! Documents: files encrypted in the client, stored at the relay as opaque
//! chunks, and named with their key inside an ordinary envelope
//! (protocol.md 9.6).
//!
//! A document is encrypted exactly as the payload of an [age] v1 file: a
//! fresh 16-byte *file key* and 16-byte *nonce*, the payload key
//! `HKDF-SHA256(salt = nonce, IKM = file key, info = "payload")`, and the
//! STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár ("Online
//! Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO
//! 2015) over ChaCha20-Poly1305: 64 KiB chunks, each sealed with the nonce
//! `u88be(index) || last`, where `last` is `0x01` on the final chunk and
//! `0x00` before it. So a chunk moved to another place, another file's chunk,
//! a stream cut short or one with a chunk added after the last all fail to
//! open. [`Stream`] is that construction (the `aead-stream` crate's
//! `StreamBE32`, whose nonce is the same bytes below 2^32 chunks), checked
//! against the age test kit of C2SP/CCTV (`protocol/tests/documents.rs`).
//!
//! What Caucus adds is only around it:
//!
//! - the file is padded with zero bytes to a Padmé size of at least one chunk
//!   ([`Layout`], the same rule as envelope content, [`crate::padding`]), so
//!   the relay learns the size only to within a few percent;
//! - the receiver knows the exact length of every chunk before it fetches
//!   any, from the size in the envelope, so it refuses a chunk of another
//!   length before it decrypts and never waits for a chunk that does not
//!   exist;
//! - the file's SHA-256 travels in the envelope ([`DocumentRef`]) and is
//!   checked when the last chunk is opened ([`Hasher`]): it is what a carried
//!   copy and an agreement's signatures name, and what anyone can check with
//!   `sha256sum`.
//!
//! ```
//! use caucus_protocol::document::{DocumentKey, Hasher, Opener, Sealer};
//!
//! # fn main() -> Result<(), caucus_protocol::Error> {
//! let file = b"Position statement of the claimant".to_vec();
//! let key = DocumentKey::generate()?;
//! let sealer = Sealer::new(&key, file.len() as u64)?;
//! let chunks = (0..sealer.layout().chunks())
//!     .map(|i| sealer.seal_chunk(i, &file[sealer.file_range(i)]))
//!     .collect::<Result<Vec<_>, _>>()?;
//! assert_eq!(chunks.len(), 1);
//! assert_eq!(chunks[0].len(), 65536 + 16); // padded to one whole chunk
//!
//! let opener = Opener::new(&key, file.len() as u64)?;
//! let mut hasher = Hasher::new();
//! let opened = opener.open_chunk(0, &chunks[0])?;
//! hasher.update(&opened);
//! assert_eq!(&opened[..], &file[..]);
//! assert_eq!(hasher.finish(), Hasher::digest(&file));
//! # Ok(()) }
//! ```
//!
//! [age]: https://age-encryption.org/v1

use std::fmt;
use std::ops::Range;

use aead_stream::{NewStream, Nonce as StreamNonce, StreamBE32, StreamPrimitive};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use ring::{digest, hkdf};
use zeroize::{Zeroize, Zeroizing};

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::{DIGEST_LEN, Digest};
use crate::error::Error;
use crate::ids::FileId;

/// Plaintext bytes in every chunk but the last (age's 64 KiB).
pub const CHUNK_SIZE: usize = 65536;

/// The Poly1305 tag after each chunk's ciphertext.
pub const TAG_LEN: usize = 16;

/// The largest document a client seals: 50 MiB. A relay may be set to
/// accept less (protocol.md 13.3).
pub const MAX_DOCUMENT_SIZE: u64 = 50 * 1024 * 1024;

/// The most bytes a title, a file name or a media type may take.
pub const MAX_TITLE_LEN: usize = 300;
/// See [`MAX_TITLE_LEN`].
pub const MAX_NAME_LEN: usize = 255;
/// See [`MAX_TITLE_LEN`].
pub const MAX_MEDIA_TYPE_LEN: usize = 127;

/// The media type of a file whose type is not known.
pub const UNKNOWN_MEDIA_TYPE: &str = "application/octet-stream";

/// A document's secret: age's 16-byte file key and 16-byte payload nonce.
/// Whoever holds it can read the document, so it travels only inside an
/// envelope, and carrying a document verbatim passes it on.
#[derive(Clone, PartialEq, Eq)]
pub struct DocumentKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl DocumentKey {
    /// A fresh key for one document.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        crate::crypto::fill_random(&mut bytes[..])?;
        Ok(Self { bytes })
    }

    /// age's file key.
    fn file_key(&self) -> &[u8] {
        &self.bytes[..16]
    }

    /// age's payload nonce.
    fn nonce(&self) -> &[u8] {
        &self.bytes[16..]
    }
}

impl fmt::Debug for DocumentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DocumentKey(..)")
    }
}

impl Canonical for DocumentKey {
    fn encode(&self, w: &mut Writer) {
        w.fixed(&self.bytes[..]);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut array: [u8; 32] = r.array()?;
        let key = Self {
            bytes: Zeroizing::new(array),
        };
        array.zeroize();
        Ok(key)
    }
}

/// age's payload STREAM: one key, chunks sealed at their index, the last
/// one marked. Stateless, so any chunk can be sealed or opened on its own:
/// an upload resumes, and a download continues, from any chunk.
pub struct Stream {
    inner: StreamBE32<ChaCha20Poly1305>,
}

impl Stream {
    /// The stream of `key`: its payload key derived as age derives it.
    pub fn new(key: &DocumentKey) -> Self {
        let mut payload_key = Zeroizing::new([0u8; 32]);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, key.nonce()).extract(key.file_key());
        // 32 bytes is far below HKDF-SHA256's limit: neither step can fail.
        if let Ok(okm) = prk.expand(&[b"payload"], hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut payload_key[..]);
        }
        let aead = ChaCha20Poly1305::new(&(*payload_key).into());
        // age's nonce is an 11-byte big-endian counter and the last-chunk
        // byte; StreamBE32's is a prefix, a 4-byte big-endian counter and the
        // same byte. With a zero prefix they are the same bytes.
        let prefix = StreamNonce::<ChaCha20Poly1305, StreamBE32<ChaCha20Poly1305>>::default();
        Self {
            inner: StreamBE32::from_aead(aead, &prefix),
        }
    }

    /// Seal chunk `index`, `last` if it is the final one. A chunk holds at
    /// most [`CHUNK_SIZE`] bytes, and only a stream's one and only chunk may
    /// be empty (age's rule).
    pub fn seal(&self, index: u32, last: bool, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        check_chunk(index, last, plaintext.len())?;
        self.inner
            .encrypt(index, last, plaintext)
            .map_err(|_| Error::TooLarge)
    }

    /// Open chunk `index`, `last` if it must be the final one. Fails with
    /// `decrypt_failed` if it is not exactly what was sealed at that index
    /// with that flag under this key.
    pub fn open(
        &self,
        index: u32,
        last: bool,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let len = ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::InvalidDocument("a chunk shorter than its tag"))?;
        check_chunk(index, last, len)?;
        self.inner
            .decrypt(index, last, ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| Error::DecryptFailed)
    }
}

fn check_chunk(index: u32, last: bool, len: usize) -> Result<(), Error> {
    if len > CHUNK_SIZE {
        return Err(Error::InvalidDocument("a chunk longer than 64 KiB"));
    }
    if !last && len != CHUNK_SIZE {
        return Err(Error::InvalidDocument(
            "a chunk before the last that is not full",
        ));
    }
    if last && len == 0 && index > 0 {
        return Err(Error::InvalidDocument("an empty last chunk after others"));
    }
    Ok(())
}

/// How a document of a given size is stored: its padded size and its
/// chunks. The relay sees only this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    padded: u64,
}

impl Layout {
    /// The layout of a document of `size` bytes: padded to
    /// `padded_len(size, 65536)`. `too_large` above [`MAX_DOCUMENT_SIZE`].
    pub fn for_size(size: u64) -> Result<Self, Error> {
        if size > MAX_DOCUMENT_SIZE {
            return Err(Error::TooLarge);
        }
        let size = usize::try_from(size).map_err(|_| Error::TooLarge)?;
        let padded = crate::padding::padded_len(size, CHUNK_SIZE).ok_or(Error::TooLarge)?;
        Ok(Self {
            padded: padded as u64,
        })
    }

    /// The layout a relay is asked to store, from the padded size alone:
    /// `None` unless `padded` is a size [`Layout::for_size`] gives for some
    /// document.
    pub fn of_padded(padded: u64) -> Option<Self> {
        let layout = Self::for_size(padded).ok()?;
        (layout.padded == padded).then_some(layout)
    }

    /// The padded size: the plaintext bytes in all chunks together.
    pub fn padded(&self) -> u64 {
        self.padded
    }

    /// How many chunks: at least one.
    pub fn chunks(&self) -> u32 {
        // padded <= 50 MiB, so at most 800 chunks.
        u32::try_from(self.padded.div_ceil(CHUNK_SIZE as u64)).unwrap_or(u32::MAX)
    }

    /// The plaintext bytes in chunk `index` (padding included), or `None`
    /// past the last chunk.
    pub fn plain_len(&self, index: u32) -> Option<usize> {
        let start = u64::from(index) * CHUNK_SIZE as u64;
        (index < self.chunks()).then(|| (self.padded - start).min(CHUNK_SIZE as u64) as usize)
    }

    /// The exact length of chunk `index` as stored: its plaintext and the tag.
    pub fn chunk_len(&self, index: u32) -> Option<usize> {
        self.plain_len(index).map(|n| n + TAG_LEN)
    }

    /// Every byte stored: the padded size and one tag a chunk.
    pub fn stored_bytes(&self) -> u64 {
        self.padded + u64::from(self.chunks()) * TAG_LEN as u64
    }

    fn is_last(&self, index: u32) -> bool {
        index + 1 == self.chunks()
    }
}

/// The file's own bytes in chunk `index` of a document of `size` bytes
/// (empty for a chunk of padding only).
fn file_range(size: u64, index: u32) -> Range<usize> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let start = (index as usize).saturating_mul(CHUNK_SIZE).min(size);
    start..start.saturating_add(CHUNK_SIZE).min(size)
}

/// Seals a document chunk by chunk, in any order: an interrupted upload
/// seals again, byte for byte, the chunks the relay lacks.
pub struct Sealer {
    stream: Stream,
    layout: Layout,
    size: u64,
}

impl Sealer {
    /// A sealer for a document of `size` bytes under `key`.
    pub fn new(key: &DocumentKey, size: u64) -> Result<Self, Error> {
        Ok(Self {
            stream: Stream::new(key),
            layout: Layout::for_size(size)?,
            size,
        })
    }

    /// The document's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Which bytes of the file chunk `index` holds.
    pub fn file_range(&self, index: u32) -> Range<usize> {
        file_range(self.size, index)
    }

    /// Seal chunk `index` of the file from its bytes, `file[file_range(index)]`.
    pub fn seal_chunk(&self, index: u32, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        let plain_len = self
            .layout
            .plain_len(index)
            .ok_or(Error::InvalidDocument("no such chunk"))?;
        if bytes.len() != self.file_range(index).len() {
            return Err(Error::InvalidDocument("the bytes are not the chunk's"));
        }
        let mut plain = Zeroizing::new(Vec::with_capacity(plain_len + TAG_LEN));
        plain.extend_from_slice(bytes);
        plain.resize(plain_len, 0);
        self.stream.seal(index, self.layout.is_last(index), &plain)
    }
}

/// Opens a document's chunks, each checked on its own: its length, then
/// its tag (index and last flag included), then that its padding is zeros.
pub struct Opener {
    stream: Stream,
    layout: Layout,
    size: u64,
}

impl Opener {
    /// An opener for the document `key` seals, of `size` bytes.
    pub fn new(key: &DocumentKey, size: u64) -> Result<Self, Error> {
        Ok(Self {
            stream: Stream::new(key),
            layout: Layout::for_size(size)?,
            size,
        })
    }

    /// The document's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Which bytes of the file chunk `index` holds.
    pub fn file_range(&self, index: u32) -> Range<usize> {
        file_range(self.size, index)
    }

    /// Open chunk `index` as fetched from the relay: the file's bytes in it.
    pub fn open_chunk(&self, index: u32, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let expected = self
            .layout
            .chunk_len(index)
            .ok_or(Error::InvalidDocument("no such chunk"))?;
        if ciphertext.len() != expected {
            return Err(Error::InvalidDocument("a chunk of the wrong length"));
        }
        let mut plain = self
            .stream
            .open(index, self.layout.is_last(index), ciphertext)?;
        let keep = self.file_range(index).len();
        if plain[keep..].iter().any(|&b| b != 0) {
            return Err(Error::InvalidDocument("padding that is not zeros"));
        }
        plain.truncate(keep);
        Ok(plain)
    }
}

/// The SHA-256 of a file's bytes, as a document names it: plain SHA-256, so
/// that anyone can check a saved copy with `sha256sum` (protocol.md 9.6).
pub struct Hasher(digest::Context);

impl Hasher {
    /// An empty hash.
    pub fn new() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }

    /// Add the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of everything added.
    pub fn finish(self) -> Digest {
        let mut out = [0u8; DIGEST_LEN];
        out.copy_from_slice(self.0.finish().as_ref());
        Digest(out)
    }

    /// The hash of `bytes`.
    pub fn digest(bytes: &[u8]) -> Digest {
        let mut h = Self::new();
        h.update(bytes);
        h.finish()
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

/// A document as an envelope names it: where its chunks are, the key that
/// opens them, what it holds and what to call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRef {
    /// Its chunks at the relay.
    pub file: FileId,
    /// The key that opens them.
    pub key: DocumentKey,
    /// The file's size in bytes, at most [`MAX_DOCUMENT_SIZE`].
    pub size: u64,
    /// The SHA-256 of the file's bytes ([`Hasher`]).
    pub hash: Digest,
    /// What people see it called ("Expert report of Dr Okafor").
    pub title: String,
    /// The file name to save it under ("okafor-report.pdf"): no folders.
    pub name: String,
    /// Its media type ("application/pdf"), or [`UNKNOWN_MEDIA_TYPE`].
    pub media_type: String,
}

impl DocumentRef {
    /// The rules a document's description keeps, checked when it is sealed
    /// and when it is opened (a name is a file name and nothing more, so
    /// that saving it cannot write outside the folder chosen).
    pub fn validate(&self) -> Result<(), Error> {
        check_file(self.size, &self.title, &self.name)?;
        let media = &self.media_type;
        let well_formed = media
            .split_once('/')
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
            && media.bytes().all(|b| b.is_ascii_graphic());
        if !well_formed || media.len() > MAX_MEDIA_TYPE_LEN {
            return Err(Error::InvalidDocument(
                "a media type is ASCII type/subtype, at most 127 bytes",
            ));
        }
        Ok(())
    }

    /// How a share receipt describes it: `Document: Expert report
    /// (okafor-report.pdf, 2.4 MB)`.
    pub fn summary(&self) -> String {
        format!(
            "Document: {} ({}, {})",
            self.title,
            self.name,
            format_size(self.size)
        )
    }
}

/// The rules for a file's size, title and name, which a [`DocumentRef`]
/// and an agreement's [`Attachment`](crate::agreement::Attachment) both
/// keep: at most [`MAX_DOCUMENT_SIZE`] bytes (`too_large`); a title of 1 to
/// 300 bytes, not only white space, on one line; a name that is a file name
/// and nothing more (`invalid_document`).
pub(crate) fn check_file(size: u64, title: &str, name: &str) -> Result<(), Error> {
    if size > MAX_DOCUMENT_SIZE {
        return Err(Error::TooLarge);
    }
    if title.trim().is_empty() || title.len() > MAX_TITLE_LEN || has_control(title) {
        return Err(Error::InvalidDocument(
            "a title is 1 to 300 bytes of text on one line",
        ));
    }
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || has_control(name)
    {
        return Err(Error::InvalidDocument(
            "a file name is 1 to 255 bytes, with no folder and no control characters",
        ));
    }
    Ok(())
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// A size as people read it, in decimal units: `512 bytes`, `48 KB`,
/// `2.4 MB`.
pub fn format_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} bytes"),
        1_000..1_000_000 => format!("{} KB", bytes.div_ceil(1_000)),
        _ => {
            let tenths = bytes.div_ceil(100_000);
            format!("{}.{} MB", tenths / 10, tenths % 10)
        }
    }
}

impl Canonical for DocumentRef {
    fn encode(&self, w: &mut Writer) {
        self.file.encode(w);
        self.key.encode(w);
        w.u64(self.size);
        self.hash.encode(w);
        w.str(&self.title).str(&self.name).str(&self.media_type);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let document = Self {
            file: FileId::decode(r)?,
            key: DocumentKey::decode(r)?,
            size: r.u64()?,
            hash: Digest::decode(r)?,
            title: r.string()?,
            name: r.string()?,
            media_type: r.string()?,
        };
        document
            .validate()
            .map_err(|_| DecodeError::Invalid("document"))?;
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DocumentKey {
        DocumentKey::from_bytes(&[7u8; 32]).unwrap()
    }

    #[test]
    fn layouts_pad_to_a_chunk_then_padme() {
        let sizes = [
            (0, 65536, 1),
            (1, 65536, 1),
            (65536, 65536, 1),
            (65537, 67584, 2),
            (MAX_DOCUMENT_SIZE, MAX_DOCUMENT_SIZE, 800),
        ];
        for (size, padded, chunks) in sizes {
            let layout = Layout::for_size(size).unwrap();
            assert_eq!(
                (layout.padded(), layout.chunks()),
                (padded, chunks),
                "{size}"
            );
            assert_eq!(Layout::of_padded(padded), Some(layout));
        }
        assert_eq!(
            Layout::for_size(MAX_DOCUMENT_SIZE + 1),
            Err(Error::TooLarge)
        );
        assert_eq!(Layout::of_padded(65537), None);
        assert_eq!(Layout::of_padded(1), None);
        let two = Layout::for_size(65537).unwrap();
        assert_eq!(two.chunk_len(0), Some(65552));
        assert_eq!(two.chunk_len(1), Some(2048 + 16));
        assert_eq!(two.chunk_len(2), None);
        assert_eq!(two.stored_bytes(), 67584 + 32);
    }

    #[test]
    fn every_chunk_opens_only_in_its_place() {
        let file: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let sealer = Sealer::new(&key(), file.len() as u64).unwrap();
        let chunks: Vec<Vec<u8>> = (0..sealer.layout().chunks())
            .map(|i| sealer.seal_chunk(i, &file[sealer.file_range(i)]).unwrap())
            .collect();
        assert_eq!(chunks.len(), 3);
        let opener = Opener::new(&key(), file.len() as u64).unwrap();
        let mut whole = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            whole.extend_from_slice(&opener.open_chunk(i as u32, c).unwrap());
        }
        assert_eq!(whole, file);
        // Swapped, truncated, from another key, or sealed as the last.
        assert_eq!(opener.open_chunk(1, &chunks[0]), Err(Error::DecryptFailed));
        assert!(opener.open_chunk(2, &chunks[2][..100]).is_err());
        let other = Opener::new(&DocumentKey::generate().unwrap(), file.len() as u64).unwrap();
        assert_eq!(other.open_chunk(0, &chunks[0]), Err(Error::DecryptFailed));
        let shorter = Opener::new(&key(), 65536).unwrap();
        assert_eq!(shorter.open_chunk(0, &chunks[0]), Err(Error::DecryptFailed));
    }

    #[test]
    fn descriptions_name_a_file_and_nothing_more() {
        let good = DocumentRef {
            file: FileId([1; 16]),
            key: key(),
            size: 10,
            hash: Hasher::digest(b"0123456789"),
            title: "Expert report".into(),
            name: "report.pdf".into(),
            media_type: "application/pdf".into(),
        };
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(DocumentRef::from_bytes(&good.to_bytes()).unwrap(), good);
        for name in ["", ".", "..", "../x", "a/b", "a\\b", "a\nb"] {
            let bad = DocumentRef {
                name: name.into(),
                ..good.clone()
            };
            assert!(bad.validate().is_err(), "{name:?}");
            assert!(DocumentRef::from_bytes(&bad.to_bytes()).is_err());
        }
        for media in ["", "pdf", "text/ plain", "/x"] {
            let bad = DocumentRef {
                media_type: media.into(),
                ..good.clone()
            };
            assert!(bad.validate().is_err(), "{media:?}");
        }
        assert_eq!(
            good.summary(),
            "Document: Expert report (report.pdf, 10 bytes)"
        );
        assert_eq!(format_size(2_345_678), "2.4 MB");
        assert_eq!(format_size(48_100), "49 KB");
    }
}
