//! Domain-separated hashing, signing, key derivation and the symmetric
//! cipher, on top of `ring`, `ed25519-dalek` (signature verification) and
//! `chacha20poly1305`.
//!
//! Every use of a primitive in Caucus passes a distinct label from
//! [`label`], so that no signature, hash, MAC or derived key made for one
//! purpose is ever valid for another.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use ed25519_dalek::VerifyingKey;
use ring::{digest, hkdf, hmac};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::Error;

/// The domain-separation labels, one per use. Each is written as a `u8`
/// length followed by its ASCII bytes wherever it prefixes an input.
pub mod label {
    /// A device's self-signature over its public identity.
    pub const IDENTITY: &str = "caucus/v1/identity";
    /// The fingerprint of a public identity.
    pub const FINGERPRINT: &str = "caucus/v1/fingerprint";
    /// The mediator's signature over a roster.
    pub const ROSTER: &str = "caucus/v1/roster";
    /// The hash that names a roster.
    pub const ROSTER_HASH: &str = "caucus/v1/roster-hash";
    /// The key that seals a party label or member name in a roster.
    pub const ROSTER_LABEL_KEY: &str = "caucus/v1/roster-label-key";
    /// The mediator's signature over a key bundle.
    pub const KEY_BUNDLE: &str = "caucus/v1/key-bundle";
    /// HPKE `info` when sealing a room epoch secret to one member.
    pub const ROOM_KEY: &str = "caucus/v1/room-key";
    /// A sender's signature over an envelope.
    pub const ENVELOPE: &str = "caucus/v1/envelope";
    /// The hash that names an envelope (its chain link and reference).
    pub const ENVELOPE_HASH: &str = "caucus/v1/envelope-hash";
    /// The per-message content key.
    pub const MESSAGE_KEY: &str = "caucus/v1/message-key";
    /// The admission token derived from an invite secret.
    pub const ADMISSION_TOKEN: &str = "caucus/v1/admission-token";
    /// The hash of an admission token that the relay stores.
    pub const ADMISSION_TOKEN_HASH: &str = "caucus/v1/admission-token-hash";
    /// The join-proof MAC key derived from an invite secret.
    pub const JOIN_MAC_KEY: &str = "caucus/v1/join-mac-key";
    /// The join-proof MAC input.
    pub const JOIN_PROOF: &str = "caucus/v1/join-proof";
    /// A device's signature answering the relay's login challenge.
    pub const AUTH: &str = "caucus/v1/auth";
    /// A relay's statement, signed by its old identity, of its new one.
    pub const RELAY_ROTATION: &str = "caucus/v1/relay-rotation";
    /// The hash that names an agreement.
    pub const AGREEMENT: &str = "caucus/v1/agreement";
    /// A signatory's signature on an agreement.
    pub const AGREEMENT_SIGN: &str = "caucus/v1/agreement-sign";
    /// The mediator's countersignature on a signed agreement.
    pub const AGREEMENT_COUNTERSIGN: &str = "caucus/v1/agreement-countersign";
    /// A relay's statement of what it erased when a session closed.
    pub const DELETION: &str = "caucus/v1/deletion";
}

/// Length of a SHA-256 digest.
pub const DIGEST_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A labelled SHA-256 digest: `SHA-256(u8(len(label)) || label || input)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; DIGEST_LEN]);

impl Digest {
    /// The all-zero digest, standing for "no previous value".
    pub const ZERO: Self = Self([0; DIGEST_LEN]);

    /// Hash the concatenation of `parts` under `label`.
    pub fn of(label: &str, parts: &[&[u8]]) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&label_prefix(label));
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; DIGEST_LEN];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", crate::b64::encode(&self.0))
    }
}

crate::macros::fixed_bytes!(Digest);

/// `u8(len(label)) || label`.
pub(crate) fn label_prefix(label: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(label.len() + 1);
    v.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
    v.extend_from_slice(label.as_bytes());
    v
}

/// The exact bytes signed for `label` over `body`: `u8(len(label)) || label || body`.
pub(crate) fn signing_input(label: &str, body: &[u8]) -> Vec<u8> {
    let mut v = label_prefix(label);
    v.extend_from_slice(body);
    v
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", crate::b64::encode(&self.0))
    }
}

crate::macros::fixed_bytes!(Signature);

/// Check an Ed25519 signature by `public_key` over `label`-prefixed `body`,
/// with the strict rules of protocol.md section 2.1: RFC 8032 section 5.1.7
/// without the cofactor, `S < L` required, `R` a point not of small order,
/// and the encoding of `[S]B - [k]A` compared with `R` byte for byte (the
/// key itself was refused at decoding if it is small-order or not
/// canonical, [`verifying_key`]). Signatures are made with `ring`; they are
/// checked with `ed25519-dalek`'s `verify_strict`, which, using the CPU's
/// vector unit, takes two thirds of ring's time (docs/performance.md).
pub(crate) fn verify_signature(
    public_key: &VerifyingKey,
    label: &str,
    body: &[u8],
    sig: &Signature,
    what: &'static str,
) -> Result<(), Error> {
    if ed25519_verify(public_key, &signing_input(label, body), &sig.0) {
        Ok(())
    } else {
        Err(Error::BadSignature(what))
    }
}

/// An Ed25519 public key, decoded (RFC 8032 section 5.1.3) once so that each
/// check need not decode it again: `None` if it is not the canonical
/// encoding (`y < p`) of a point on the curve, or if that point has small
/// order (a multiple of it by the cofactor 8 is the identity): such a key
/// would make signatures that hold for many messages (section 2.1).
pub(crate) fn verifying_key(public_key: &[u8; 32]) -> Option<VerifyingKey> {
    let key = VerifyingKey::from_bytes(public_key).ok()?;
    (is_canonical_field_element(public_key) && !key.is_weak()).then_some(key)
}

/// Whether the low 255 bits of `bytes`, little-endian, are below
/// `p = 2^255 - 19`: the canonical encoding of a field element.
fn is_canonical_field_element(bytes: &[u8; 32]) -> bool {
    // Only 2^255 - 19 ..= 2^255 - 1 are not: 0xed..=0xff, then thirty
    // 0xff, then 0x7f (ignoring the top bit, the sign of x).
    !(bytes[0] >= 0xed && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[31] & 0x7f == 0x7f)
}

/// The X25519 public keys of small order (on the curve or its twist), with
/// the top bit cleared as RFC 7748 section 5 reads them: `0`, `1`, the two
/// points of order 8, `p - 1`, and the non-canonical `p` and `p + 1`. Any
/// of them gives an all-zero shared secret with every (clamped) secret key.
const X25519_SMALL_ORDER: [[u8; 32]; 7] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    top_bytes(0xec),
    top_bytes(0xed),
    top_bytes(0xee),
];

/// `b, 0xff × 30, 0x7f`: `p - 1`, `p` and `p + 1` for `b` = `0xec`, `0xed`, `0xee`.
const fn top_bytes(first: u8) -> [u8; 32] {
    let mut a = [0xff; 32];
    a[0] = first;
    a[31] = 0x7f;
    a
}

/// Whether an X25519 public key has small order, so that a key agreement
/// with it would not depend on the other side's secret (section 5.2).
pub(crate) fn is_small_order_x25519(public_key: &[u8; 32]) -> bool {
    let mut u = *public_key;
    u[31] &= 0x7f;
    X25519_SMALL_ORDER.contains(&u)
}

/// Strict Ed25519 verification of `signature` by `public_key` over `message`.
fn ed25519_verify(
    public_key: &VerifyingKey,
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> bool {
    public_key
        .verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
        .is_ok()
}

/// A 32-byte secret used only as an HKDF pseudorandom key. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret32(pub(crate) [u8; 32]);

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(..)")
    }
}

impl Secret32 {
    /// A fresh random secret from the operating system's generator.
    pub fn random() -> Result<Self, Error> {
        let mut s = [0u8; 32];
        fill_random(&mut s)?;
        Ok(Self(s))
    }

    /// The secret's bytes (for sealing it to a recipient or storing it).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// HKDF-Expand (RFC 5869) with this secret as the PRK:
    /// `info = u8(len(label)) || label || parts…`, 32 bytes out.
    pub(crate) fn expand(&self, label: &str, parts: &[&[u8]]) -> Secret32 {
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &self.0);
        let prefix = label_prefix(label);
        let mut info: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        info.push(&prefix);
        info.extend_from_slice(parts);
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so neither
        // step can fail; fall back to zeros defensively rather than panic.
        if let Ok(okm) = prk.expand(&info, hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut out);
        }
        Secret32(out)
    }

    /// HMAC-SHA256 keyed with this secret over `label || parts…`.
    pub(crate) fn mac(&self, label: &str, parts: &[&[u8]]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&label_prefix(label));
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Check, in constant time, an HMAC made by [`Secret32::mac`].
    pub(crate) fn verify_mac(&self, label: &str, parts: &[&[u8]], tag: &[u8]) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut msg = label_prefix(label);
        for p in parts {
            msg.extend_from_slice(p);
        }
        hmac::verify(&key, &msg, tag).is_ok()
    }

    /// ChaCha20-Poly1305 with this secret as a single-use key and the
    /// all-zero nonce. Only for keys derived for exactly one message.
    pub(crate) fn seal_once(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        ChaCha20Poly1305::new(&self.0.into())
            .encrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::TooLarge)
    }

    /// Open what [`Secret32::seal_once`] sealed.
    pub(crate) fn open_once(&self, aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
        ChaCha20Poly1305::new(&self.0.into())
            .decrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| Error::DecryptFailed)
    }
}

/// Fill `buf` from the operating system's random number generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), Error> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Randomness)
}

/// A fresh random array.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], Error> {
    let mut a = [0u8; N];
    fill_random(&mut a)?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ring::signature::{ED25519, UnparsedPublicKey};

    use super::*;

    fn ring_verify(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(message, signature)
            .is_ok()
    }

    fn array<const N: usize>(hex: &str) -> [u8; N] {
        hex::decode(hex).unwrap().try_into().unwrap()
    }

    /// RFC 8032 section 7.1, tests 1 to 3: public key, message, signature.
    const RFC8032: [(&str, &str, &str); 3] = [
        (
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];

    #[test]
    fn rfc8032_vectors_verify() {
        for (key, message, signature) in RFC8032 {
            let (key, message, signature) =
                (array(key), hex::decode(message).unwrap(), array(signature));
            assert!(ed25519_verify(
                &verifying_key(&key).unwrap(),
                &message,
                &signature
            ));
            assert!(ring_verify(&key, &message, &signature));
        }
    }

    /// Signatures are made with ring and checked with ed25519-dalek: ours
    /// must accept exactly what ring accepts, except what the strict rules
    /// add (section 2.1): keys of small order or not canonically encoded,
    /// and an `R` of small order. Each vector, one-bit changes (every
    /// seventh bit) of its signature and key, a longer message, `S + L`
    /// (non-canonical `S`), and the small-order and non-canonical keys with
    /// the signature `(R = A, S = 0)`, which ring accepts for the identity
    /// point's canonical encoding whatever the message.
    #[test]
    fn verification_accepts_what_ring_accepts_but_small_order_and_non_canonical_points() {
        let mut cases: Vec<([u8; 32], Vec<u8>, [u8; 64])> = Vec::new();
        for (key, message, signature) in RFC8032 {
            let (key, message, signature): ([u8; 32], _, [u8; 64]) =
                (array(key), hex::decode(message).unwrap(), array(signature));
            cases.push((key, message.clone(), signature));
            for bit in (0..512).step_by(7) {
                let mut s = signature;
                s[bit / 8] ^= 1 << (bit % 8);
                cases.push((key, message.clone(), s));
            }
            for bit in (0..256).step_by(7) {
                let mut k = key;
                k[bit / 8] ^= 1 << (bit % 8);
                cases.push((k, message.clone(), signature));
            }
            let mut m = message.clone();
            m.push(0);
            cases.push((key, m, signature));
            cases.push((key, message, plus_l(signature)));
        }
        for (small, _) in EDGE_KEYS {
            let key: [u8; 32] = array(small);
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&key);
            cases.push((key, b"any message".to_vec(), signature));
        }
        let mut accepted = 0;
        let mut refused_only_by_strict = 0;
        for (key, message, signature) in &cases {
            let ours = verifying_key(key).is_some_and(|k| ed25519_verify(&k, message, signature));
            let strict_refuses = !is_canonical_field_element(key)
                || VerifyingKey::from_bytes(key).is_ok_and(|k| k.is_weak())
                || r_has_small_order(signature);
            let ring = ring_verify(key, message, signature);
            assert_eq!(
                ours,
                ring && !strict_refuses,
                "key {} signature {}",
                hex::encode(key),
                hex::encode(signature)
            );
            accepted += usize::from(ours);
            refused_only_by_strict += usize::from(ring && !ours);
        }
        assert!(accepted > 0 && accepted < cases.len());
        assert!(refused_only_by_strict > 0);
    }

    /// `S + L`, where L = 2^252 + 27742317777372353535851937790883648493.
    fn plus_l(signature: [u8; 64]) -> [u8; 64] {
        let l: [u8; 32] = array("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let mut s = signature;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(s[32 + i]) + u16::from(l[i]) + carry;
            s[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        s
    }

    fn r_has_small_order(signature: &[u8; 64]) -> bool {
        let r: [u8; 32] = signature[..32].try_into().unwrap();
        VerifyingKey::from_bytes(&r).is_ok_and(|r| r.is_weak())
    }

    /// The edge cases of protocol.md Appendix A.3: Ed25519 public keys that
    /// decoding refuses, and why. With the signature `(R = A, S = 0)`, the
    /// cofactorless check of RFC 8032 accepts the first for every message.
    const EDGE_KEYS: [(&str, &str); 7] = [
        (
            "0100000000000000000000000000000000000000000000000000000000000000",
            "identity (order 1)",
        ),
        (
            "0100000000000000000000000000000000000000000000000000000000000080",
            "identity, sign of x set",
        ),
        (
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "order 2",
        ),
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "order 4",
        ),
        (
            "0000000000000000000000000000000000000000000000000000000000000080",
            "order 4",
        ),
        (
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "order 8",
        ),
        (
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "y = 1 + p (not canonical)",
        ),
    ];

    #[test]
    fn small_order_and_non_canonical_ed25519_keys_are_refused() {
        for (key, why) in EDGE_KEYS {
            let key: [u8; 32] = array(key);
            assert!(verifying_key(&key).is_none(), "{why}");
            let mut forged = [0u8; 64];
            forged[..32].copy_from_slice(&key);
            if let Ok(k) = VerifyingKey::from_bytes(&key) {
                assert!(!ed25519_verify(&k, b"any message", &forged), "{why}");
            }
        }
        // What the old, cofactorless-and-lax rules accepted: the identity
        // point signs every message with (R = A, S = 0).
        let identity: [u8; 32] = array(EDGE_KEYS[0].0);
        let mut forged = [0u8; 64];
        forged[..32].copy_from_slice(&identity);
        assert!(ring_verify(&identity, b"any message", &forged));
    }

    fn vectors(name: &str) -> serde_json::Value {
        let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn groups(v: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
        v["testGroups"].as_array().unwrap().iter()
    }

    fn text<'a>(v: &'a serde_json::Value, field: &str) -> &'a str {
        v[field].as_str().unwrap()
    }

    /// Wycheproof's Ed25519 vectors (protocol/tests/vectors/README.md):
    /// every valid signature verifies, every invalid one does not.
    #[test]
    fn wycheproof_ed25519_valid_signatures_verify_and_invalid_ones_fail() {
        let all = vectors("ed25519_test.json");
        let (mut valid, mut invalid) = (0, 0);
        for group in groups(&all) {
            let key: [u8; 32] = array(text(&group["publicKey"], "pk"));
            for test in group["tests"].as_array().unwrap() {
                let message = hex::decode(text(test, "msg")).unwrap();
                let signature = hex::decode(text(test, "sig")).unwrap();
                let ours = <[u8; 64]>::try_from(signature.as_slice()).is_ok_and(|signature| {
                    verifying_key(&key).is_some_and(|k| ed25519_verify(&k, &message, &signature))
                });
                match text(test, "result") {
                    "valid" => {
                        assert!(ours, "tcId {} should verify", test["tcId"]);
                        valid += 1;
                    }
                    _ => {
                        assert!(!ours, "tcId {} should not verify", test["tcId"]);
                        invalid += 1;
                    }
                }
            }
        }
        assert_eq!(valid + invalid, all["numberOfTests"].as_u64().unwrap());
        assert!(valid > 0 && invalid > 0);
    }

    /// Wycheproof's X25519 vectors: the public keys whose shared secret is
    /// all zeros (`LowOrderPublic`) are exactly those the small-order check
    /// refuses; every other one is accepted and gives the expected secret.
    #[test]
    fn wycheproof_x25519_low_order_public_keys_are_exactly_those_refused() {
        let all = vectors("x25519_test.json");
        let (mut low, mut other) = (0, 0);
        for group in groups(&all) {
            for test in group["tests"].as_array().unwrap() {
                let public: [u8; 32] = array(text(test, "public"));
                let private: [u8; 32] = array(text(test, "private"));
                let shared = x25519_dalek::x25519(private, public);
                let flagged = test["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "LowOrderPublic");
                assert_eq!(
                    is_small_order_x25519(&public),
                    flagged,
                    "tcId {}",
                    test["tcId"]
                );
                if flagged {
                    assert_eq!(shared, [0u8; 32]);
                    low += 1;
                } else {
                    assert_eq!(
                        hex::encode(shared),
                        text(test, "shared"),
                        "tcId {}",
                        test["tcId"]
                    );
                    other += 1;
                }
            }
        }
        assert!(low > 0 && other > 0);
        assert_eq!(low + other, all["numberOfTests"].as_u64().unwrap());
    }

    /// Each small-order X25519 key gives the all-zero secret with a
    /// clamped secret key (every one is a multiple of the cofactor 8).
    #[test]
    fn each_listed_x25519_key_has_small_order() {
        for key in X25519_SMALL_ORDER {
            assert_eq!(x25519_dalek::x25519([0x42; 32], key), [0u8; 32]);
            let mut high = key;
            high[31] |= 0x80;
            assert!(is_small_order_x25519(&high));
        }
    }
}
