//! Domain-separated hashing, signing, key derivation and the symmetric
//! cipher, on top of `ring` and `chacha20poly1305`.
//!
//! Every use of a primitive in Caucus passes a distinct label from
//! [`label`], so that no signature, hash, MAC or derived key made for one
//! purpose is ever valid for another.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use ring::{digest, hkdf, hmac, signature};
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

/// Check an Ed25519 signature by `public_key` over `label`-prefixed `body`.
pub(crate) fn verify_signature(
    public_key: &[u8; 32],
    label: &str,
    body: &[u8],
    sig: &Signature,
    what: &'static str,
) -> Result<(), Error> {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&signing_input(label, body), &sig.0)
        .map_err(|_| Error::BadSignature(what))
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
