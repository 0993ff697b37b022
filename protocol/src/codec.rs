//! The canonical byte encoding of everything that is signed, hashed or used as
//! associated data.
//!
//! The rules (also in `docs/protocol.md`, "Canonical encoding"):
//!
//! * integers are big-endian, of fixed width (`u8`, `u16`, `u32`, `u64`);
//! * a boolean is one byte, `0` or `1`;
//! * a fixed-size value (an id, a key, a hash) is its bytes, with no length;
//! * a variable-length byte string is a `u32` length followed by the bytes;
//!   a text string is the same, holding UTF-8;
//! * a list is a `u32` count followed by the items;
//! * an optional value is a `0` byte, or a `1` byte followed by the value;
//! * an enumeration is a `u8` tag followed by the fields of that variant.
//!
//! A decoder accepts exactly one encoding of each value: it rejects unknown
//! tags, booleans other than 0 and 1, invalid UTF-8, lengths that run past the
//! input, and any byte left over at the end.
//!
//! An encoder never truncates: a byte string or list longer than a `u32` can
//! count is an [`EncodeError`] from [`Canonical::encoded`]. Until then the
//! [`Writer`] writes nothing more, so what it holds is a strict prefix of an
//! encoding, which no decoder accepts.

use thiserror::Error;

/// Why bytes did not decode as the expected canonical value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("input ends early: {needed} more bytes needed")]
    Truncated {
        /// How many more bytes the decoder wanted.
        needed: usize,
    },
    /// Bytes were left over after the value.
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// An enumeration tag or boolean byte had no meaning here.
    #[error("invalid {what} tag {tag}")]
    InvalidTag {
        /// What was being decoded.
        what: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// A text string was not UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// A protocol version this implementation does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// A value was structurally valid but out of its allowed range.
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

/// Why a value has no canonical encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A byte string or list is longer than its `u32` length prefix can say.
    #[error("a value of {len} items is longer than a u32 length can say")]
    TooLong {
        /// Its length.
        len: usize,
    },
}

/// Appends canonical encodings to a byte buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
    /// The first value that could not be encoded; from then on nothing more
    /// is written.
    failed: Option<EncodeError>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far. If a value could not be encoded they stop
    /// before it: see [`Writer::finish`].
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The encoding, or why there is none.
    pub fn finish(self) -> Result<Vec<u8>, EncodeError> {
        match self.failed {
            None => Ok(self.buf),
            Some(e) => Err(e),
        }
    }

    /// Append raw bytes, unless an earlier value failed.
    fn put(&mut self, v: &[u8]) -> &mut Self {
        if self.failed.is_none() {
            self.buf.extend_from_slice(v);
        }
        self
    }

    /// The `u32` length prefix of a value of `len` bytes or items; `false`
    /// (and nothing more written, ever) if it does not fit.
    fn length(&mut self, len: usize) -> bool {
        match u32::try_from(len) {
            Ok(n) if self.failed.is_none() => {
                self.u32(n);
                true
            }
            Ok(_) => false,
            Err(_) => {
                self.failed = Some(EncodeError::TooLong { len });
                false
            }
        }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.put(&[v])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.put(&v.to_be_bytes())
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.put(&v.to_be_bytes())
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.put(&v.to_be_bytes())
    }

    /// A boolean as `0` or `1`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// Fixed-size bytes, with no length prefix.
    pub fn fixed(&mut self, v: &[u8]) -> &mut Self {
        self.put(v)
    }

    /// Variable-length bytes: a `u32` length, then the bytes. Longer than a
    /// `u32` can say, they are [`EncodeError::TooLong`] (see [`Writer::finish`]).
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        if self.length(v.len()) {
            self.put(v);
        }
        self
    }

    /// A UTF-8 string, encoded as [`Writer::bytes`].
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// A list: a `u32` count, then each item written by `f`. More items than
    /// a `u32` can count are [`EncodeError::TooLong`] (see [`Writer::finish`]).
    pub fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) -> &mut Self {
        if self.length(items.len()) {
            for item in items {
                f(self, item);
            }
        }
        self
    }

    /// An optional value: `0`, or `1` followed by the value written by `f`.
    pub fn option<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
                self
            }
        }
    }
}

/// Reads canonical encodings from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// Decode a whole value with `f`, rejecting trailing bytes.
    pub fn decode_all<T>(
        input: &'a [u8],
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let mut r = Self::new(input);
        let v = f(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// The input not yet read.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// The next `n` bytes, as they are (the reading side of
    /// [`Writer::fixed`]).
    pub fn fixed(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.take(n)
    }

    /// Fail unless all input has been read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.rest.len()))
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated {
                needed: n - self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A boolean: exactly `0` or `1`.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::InvalidTag { what: "bool", tag }),
        }
    }

    /// Variable-length bytes (a `u32` length, then the bytes), borrowed.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A UTF-8 string.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.bytes()?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    /// A list of items each read by `f`.
    ///
    /// The count is not trusted for allocation: every item takes at least one
    /// byte, so a count larger than the remaining input fails before any
    /// allocation is made. An item can take far more memory than input, so
    /// the space reserved up front is also capped at the size of the
    /// remaining input; a longer list grows as its items actually decode.
    pub fn list<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.u32()? as usize;
        if count > self.rest.len() {
            return Err(DecodeError::Truncated {
                needed: count - self.rest.len(),
            });
        }
        let fits = self.rest.len() / std::mem::size_of::<T>().max(1);
        let mut out = Vec::with_capacity(count.min(fits));
        for _ in 0..count {
            out.push(f(self)?);
        }
        Ok(out)
    }

    /// An optional value read by `f`.
    pub fn option<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            tag => Err(DecodeError::InvalidTag {
                what: "option",
                tag,
            }),
        }
    }
}

/// A value with one canonical byte encoding.
pub trait Canonical: Sized {
    /// Append the canonical encoding of `self`.
    fn encode(&self, w: &mut Writer);

    /// Read one value.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The canonical encoding of `self`, or [`EncodeError::TooLong`] if a
    /// byte string or list in it is too long to encode. Values that came
    /// from bytes, or that a size limit checked, always encode.
    fn encoded(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.finish()
    }

    /// The canonical encoding of `self`, for a value that always encodes
    /// (see [`Canonical::encoded`]). Of a value too long to encode it is a
    /// strict prefix of the encoding, which no decoder accepts.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }

    /// Decode exactly one value from `bytes`, with nothing left over.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Reader::decode_all(bytes, Self::decode)
    }

    /// [`Canonical::from_bytes`] of bytes the caller gives up: a value that
    /// keeps its encoding (an [`crate::envelope::Envelope`]) keeps these
    /// instead of copying them.
    fn from_vec(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_big_endian_and_length_prefixed() {
        let mut w = Writer::new();
        w.u16(0x0102).u64(3).bool(true).bytes(b"ab").str("c");
        w.option(Some(&7u8), |w, v| {
            w.u8(*v);
        });
        w.list(&[1u8, 2], |w, v| {
            w.u8(*v);
        });
        assert_eq!(
            w.into_bytes(),
            [
                1, 2, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 1, b'c', 1, 7, 0,
                0, 0, 2, 1, 2
            ]
        );
    }

    #[test]
    fn rejects_non_canonical_input() {
        assert_eq!(
            Reader::decode_all(&[2], |r| r.bool()),
            Err(DecodeError::InvalidTag {
                what: "bool",
                tag: 2
            })
        );
        assert_eq!(
            Reader::decode_all(&[0, 0], |r| r.u8()),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(
            Reader::decode_all(&[0, 0, 0, 5, 1], |r| r.bytes().map(<[u8]>::to_vec)),
            Err(DecodeError::Truncated { needed: 4 })
        );
        assert_eq!(
            Reader::decode_all(&[0, 0, 0, 1, 0xff], |r| r.string()),
            Err(DecodeError::InvalidUtf8)
        );
        // A huge list count fails without allocating.
        assert!(Reader::decode_all(&[0xff, 0xff, 0xff, 0xff], |r| r.list(|r| r.u8())).is_err());
    }

    #[test]
    fn a_list_too_long_to_count_is_an_error_not_a_truncation() {
        // Items of no size: a list longer than u32::MAX costs no memory.
        let items = vec![(); u32::MAX as usize + 1];
        let mut w = Writer::new();
        w.u8(9).list(&items, |w, ()| {
            w.u8(0);
        });
        w.u8(1);
        assert_eq!(
            w.finish(),
            Err(EncodeError::TooLong {
                len: u32::MAX as usize + 1
            })
        );
        let mut w = Writer::new();
        w.u8(9).list(&items, |w, ()| {
            w.u8(0);
        });
        assert_eq!(w.into_bytes(), [9], "nothing past the value that failed");
    }

    proptest! {
        #[test]
        fn bytes_and_strings_round_trip(b in proptest::collection::vec(any::<u8>(), 0..64), s in ".*") {
            let mut w = Writer::new();
            w.bytes(&b).str(&s);
            let out = w.into_bytes();
            let (b2, s2) = Reader::decode_all(&out, |r| Ok((r.bytes()?.to_vec(), r.string()?))).unwrap();
            prop_assert_eq!(b2, b);
            prop_assert_eq!(s2, s);
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Reader::decode_all(&input, |r| r.list(|r| Ok((r.option(|r| r.string())?, r.u64()?))));
        }
    }
}
