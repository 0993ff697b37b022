//! The operations of `docs/protocol.md` (2.3, 8.2, 10.3, the padding of 9.2),
//! computed here as the document states them, with `ring` and
//! `chacha20poly1305` and not through the crate's own code: what an
//! independent implementation does, for tests that build what the crate's
//! API would refuse to, or check the crate against the document.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use caucus_protocol::codec::{Canonical, Writer};
use caucus_protocol::crypto::label;
use caucus_protocol::envelope::Envelope;
use caucus_protocol::identity::DeviceKeys;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use ring::hkdf;

/// `prefix(L) = u8(len(L)) || L`.
pub fn prefix(l: &str) -> Vec<u8> {
    let mut out = vec![u8::try_from(l.len()).unwrap()];
    out.extend_from_slice(l.as_bytes());
    out
}

/// `bytes(x) = u32(len(x)) || x`.
pub fn bytes(x: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(x.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(x);
    out
}

/// `Expand(S, L, m)`: HKDF-Expand with `S` as the PRK, 32 bytes.
pub fn expand(secret: &[u8; 32], l: &str, m: &[u8]) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let info = [prefix(l), m.to_vec()].concat();
    let mut out = [0u8; 32];
    hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret)
        .expand(&[&info], Len32)
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

/// `SealOnce(K, aad, pt)`: ChaCha20-Poly1305 with the all-zero nonce.
pub fn seal_once(key: &[u8; 32], aad: &[u8], pt: &[u8]) -> Vec<u8> {
    ChaCha20Poly1305::new(key.into())
        .encrypt(&[0u8; 12].into(), Payload { msg: pt, aad })
        .unwrap()
}

/// `OpenOnce(K, aad, ct)`.
pub fn open_once(key: &[u8; 32], aad: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
    ChaCha20Poly1305::new(key.into())
        .decrypt(&[0u8; 12].into(), Payload { msg: ct, aad })
        .ok()
}

/// The padded size of `n` bytes with minimum `min` (9.2): `min`, or Padmé.
pub fn padded_len(n: usize, min: usize) -> usize {
    if n <= min {
        return min;
    }
    let log2 = |x: usize| usize::BITS - 1 - x.leading_zeros();
    let e = log2(n);
    let s = log2(e as usize) + 1;
    let step = 1usize << (e - s);
    n.div_ceil(step) * step
}

/// `pad(pt, min) = bytes(pt) || zeros`, to `padded_len(4 + len(pt), min)`.
pub fn pad(pt: &[u8], min: usize) -> Vec<u8> {
    let mut out = bytes(pt);
    out.resize(padded_len(4 + pt.len(), min), 0);
    out
}

/// The message key of 10.3 for the canonical header `header`.
pub fn message_key(room_secret: &[u8; 32], header: &[u8]) -> [u8; 32] {
    expand(room_secret, label::MESSAGE_KEY, header)
}

/// An envelope of `header` and `ciphertext`, signed by `signer` (10.3).
pub fn assemble(signer: &DeviceKeys, header: &[u8], ciphertext: &[u8]) -> Envelope {
    let body = [bytes(header), bytes(ciphertext)].concat();
    let signature = signer.sign(label::ENVELOPE, &body);
    let mut w = Writer::new();
    w.fixed(&body);
    signature.encode(&mut w);
    Envelope::from_bytes(&w.into_bytes()).unwrap()
}
