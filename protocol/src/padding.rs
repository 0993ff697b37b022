//! Padding: every plaintext that is sealed under a room key (an envelope's
//! content, a roster's party labels and member names) is first padded to one
//! of a few sizes, so that a ciphertext's length tells the relay little about
//! what it holds.
//!
//! `pad(pt, min) = bytes(pt) || zeros`, `padded_len(4 + len(pt), min)` bytes
//! in all. Up to `min` bytes everything is padded to `min`; above it, to the
//! sizes of Padmé (Nikitin, Barman, Lueks, Underwood, Hubaux and Ford,
//! "Reducing Metadata Leakage from Encrypted Files and Communication with
//! PURBs", PoPETs 2019(4), section 4): a length whose highest bit is bit `E`
//! is rounded up to a multiple of `2^(E - floor(log2 E) - 1)`, which costs at
//! most 12% and leaves `O(log log L)` bits of the length to be seen, as
//! padding to powers of two does (at up to 100%).
//!
//! Opening checks the padding exactly: the length must fit, every padding
//! byte must be zero and the whole must be exactly `padded_len` of what it
//! holds. So each plaintext has one padded form, as each value has one
//! canonical encoding.
//!
//! ```
//! use caucus_protocol::padding::{CONTENT_MIN, LABEL_MIN, padded_len};
//!
//! assert_eq!(padded_len(4 + 33, CONTENT_MIN), Some(256)); // a consent
//! assert_eq!(padded_len(4 + 1030, CONTENT_MIN), Some(1088)); // 1 KiB of text: +5%
//! assert_eq!(padded_len(4 + 11, LABEL_MIN), Some(64)); // a name
//! ```

use zeroize::Zeroizing;

use crate::codec::DecodeError;

/// The smallest padded content: every content of up to 252 bytes (a consent,
/// an agreement to a step, a withdrawal, a short text or offer) is padded to
/// this one size.
pub const CONTENT_MIN: usize = 256;

/// The smallest padded label: every party label and member name of up to 60
/// bytes is padded to this one size.
pub const LABEL_MIN: usize = 64;

/// The length `len` is padded to: `min` if `len <= min`, otherwise Padmé's
/// next size. `None` only if that would not fit in a `usize`.
pub fn padded_len(len: usize, min: usize) -> Option<usize> {
    if len <= min {
        return Some(min);
    }
    // len > min >= 0, so len >= 1 and E = floor(log2 len) is defined; for
    // len >= 2, E >= 1 and floor(log2 E) + 1 <= E.
    let e = len.ilog2();
    let s = e.checked_ilog2().map_or(0, |x| x + 1);
    let mask = (1usize << e.saturating_sub(s)) - 1;
    Some(len.checked_add(mask)? & !mask)
}

/// `plaintext` padded for sealing: `bytes(plaintext)`, then zeros up to
/// [`padded_len`]. `None` if it would not fit a `u32` length.
pub(crate) fn pad(plaintext: &[u8], min: usize) -> Option<Zeroizing<Vec<u8>>> {
    let len = padded_len(plaintext.len().checked_add(4)?, min)?;
    // Allocated once at its final size, so no copy of the plaintext is left
    // behind by a reallocation.
    let mut padded = Zeroizing::new(Vec::with_capacity(len));
    padded.extend_from_slice(&u32::try_from(plaintext.len()).ok()?.to_be_bytes());
    padded.extend_from_slice(plaintext);
    padded.resize(len, 0);
    Some(padded)
}

/// The plaintext inside `padded`, if `padded` is exactly what [`pad`] makes
/// of it: a length that fits, zeros after it, and the right size in all.
pub(crate) fn unpad(padded: &[u8], min: usize) -> Result<&[u8], DecodeError> {
    let (len, rest) = padded
        .split_first_chunk::<4>()
        .ok_or_else(|| DecodeError::Truncated {
            needed: 4usize.saturating_sub(padded.len()),
        })?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(DecodeError::Truncated {
            needed: len - rest.len(),
        });
    }
    let (plaintext, padding) = rest.split_at(len);
    if padding.iter().any(|&b| b != 0) {
        return Err(DecodeError::Invalid("padding that is not zero"));
    }
    if padded_len(4 + len, min) != Some(padded.len()) {
        return Err(DecodeError::Invalid("padding of the wrong length"));
    }
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_padme_above_the_minimum() {
        // Padmé's own examples of rounding (E = 9: multiples of 32).
        assert_eq!(padded_len(513, 256), Some(544));
        assert_eq!(padded_len(544, 256), Some(544));
        assert_eq!(padded_len(545, 256), Some(576));
        assert_eq!(padded_len(256, 256), Some(256));
        assert_eq!(padded_len(257, 256), Some(272));
        assert_eq!(padded_len(1, 256), Some(256));
        // The largest padded content is the content limit itself.
        assert_eq!(padded_len(262_144, 256), Some(262_144));
        assert_eq!(padded_len(262_141, 256), Some(262_144));
        assert_eq!(padded_len(usize::MAX, 256), None);
    }

    #[test]
    fn padme_costs_at_most_twelve_percent() {
        for len in 257..70_000usize {
            let p = padded_len(len, 256).unwrap_or(0);
            assert!(p >= len && (p - len) * 100 <= len * 12, "{len} -> {p}");
        }
    }

    #[test]
    fn unpad_takes_back_exactly_what_pad_made() {
        for n in [0usize, 1, 60, 61, 252, 253, 1000] {
            let pt = vec![7u8; n];
            let padded = pad(&pt, CONTENT_MIN).unwrap_or_default();
            assert_eq!(unpad(&padded, CONTENT_MIN), Ok(&pt[..]));
            let mut longer = padded.to_vec();
            longer.extend_from_slice(&[0; 16]);
            assert!(unpad(&longer, CONTENT_MIN).is_err());
            let mut shorter = padded.to_vec();
            shorter.pop();
            assert!(unpad(&shorter, CONTENT_MIN).is_err());
        }
    }
}
