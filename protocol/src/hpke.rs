//! Hybrid Public Key Encryption (HPKE, [RFC 9180]) for exactly one cipher suite:
//! DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20Poly1305
//! (`kem_id` 0x0020, `kdf_id` 0x0001, `aead_id` 0x0003).
//!
//! All four modes are supported. [`setup_sender`] and [`setup_receiver`] select
//! the mode from their arguments:
//!
//! | `psk`    | sender key (`sk_s` / `pk_s`) | mode            |
//! |----------|------------------------------|-----------------|
//! | `None`   | `None`                       | base (0)        |
//! | `Some`   | `None`                       | psk (1)         |
//! | `None`   | `Some`                       | auth (2)        |
//! | `Some`   | `Some`                       | auth_psk (3)    |
//!
//! [`seal`] and [`open`] are the single-shot base-mode helpers of RFC 9180 §6.1.
//! Every X25519 Diffie-Hellman output is checked, and an all-zero
//! (non-contributory) result, which a low-order public key produces, is rejected
//! with [`HpkeError::NonContributory`].
//!
//! The primitives come from `ring` (HMAC-SHA256 / HKDF-SHA256), `x25519-dalek`
//! and `chacha20poly1305`; this module only implements the RFC 9180 framing.
//! Secret values held by this module (keys, nonces, exporter secrets, shared
//! secrets, PRKs) are zeroized when dropped and never printed by `Debug`.
//! Copies made inside the dependencies are outside its control: `ring`'s HMAC
//! key state is not zeroized, and the `ChaCha20Poly1305` instance built for
//! each message wipes its key copy only when that crate's `zeroize` feature is
//! enabled.
//!
//! ```
//! use caucus_protocol::hpke;
//! use x25519_dalek::{PublicKey, StaticSecret};
//!
//! let sk_r = StaticSecret::random();
//! let pk_r = PublicKey::from(&sk_r);
//!
//! let (enc, ct) = hpke::seal(&pk_r, b"app info", b"header", b"hello")?;
//! let pt = hpke::open(&enc, &sk_r, b"app info", b"header", &ct)?;
//! assert_eq!(pt, b"hello");
//!
//! // Anything else fails to open.
//! assert_eq!(
//!     hpke::open(&enc, &sk_r, b"app info", b"other header", &ct),
//!     Err(hpke::HpkeError::OpenFailed)
//! );
//! # Ok::<(), hpke::HpkeError>(())
//! ```
//!
//! [RFC 9180]: https://www.rfc-editor.org/rfc/rfc9180

use core::fmt;

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit,
    aead::{Aead, Payload},
};
use ring::{hkdf, hmac};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The KEM identifier of DHKEM(X25519, HKDF-SHA256).
pub const KEM_ID: u16 = 0x0020;
/// The KDF identifier of HKDF-SHA256.
pub const KDF_ID: u16 = 0x0001;
/// The AEAD identifier of ChaCha20Poly1305.
pub const AEAD_ID: u16 = 0x0003;
/// Length of `enc` (an X25519 public key).
pub const ENC_LEN: usize = 32;

/// `Nsecret` / `Npk` / `Nsk` of DHKEM(X25519, HKDF-SHA256).
const N_SECRET: usize = 32;
/// `Nh` of HKDF-SHA256 (also the length of every PRK).
const N_H: usize = 32;
/// `Nk` of ChaCha20Poly1305.
const N_K: usize = 32;
/// `Nn` of ChaCha20Poly1305.
const N_N: usize = 12;
/// Largest output HKDF-Expand can produce (255 * `Nh`).
const MAX_EXPAND_LEN: usize = 255 * N_H;
/// Minimum accepted length of a PSK (RFC 9180 §5.1.2: at least 32 bytes of entropy).
const MIN_PSK_LEN: usize = 32;
/// Minimum accepted length of the `ikm` of [`derive_key_pair`] (`Nsk`).
const MIN_IKM_LEN: usize = 32;
/// The sequence number may not reach this value: `(1 << (8 * Nn)) - 1`.
const SEQ_LIMIT: u128 = (1u128 << (8 * N_N)) - 1;

/// `mode_base`.
const MODE_BASE: u8 = 0x00;
/// `mode_psk`.
const MODE_PSK: u8 = 0x01;
/// `mode_auth`.
const MODE_AUTH: u8 = 0x02;
/// `mode_auth_psk`.
const MODE_AUTH_PSK: u8 = 0x03;

/// `"HPKE-v1"`, the version label of every labeled KDF call.
const VERSION_LABEL: &[u8] = b"HPKE-v1";

/// `suite_id` of the KEM's labeled functions: `"KEM" || I2OSP(kem_id, 2)`.
const KEM_SUITE_ID: [u8; 5] = {
    let k = KEM_ID.to_be_bytes();
    [b'K', b'E', b'M', k[0], k[1]]
};

/// `suite_id` of the key schedule:
/// `"HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2)`.
const HPKE_SUITE_ID: [u8; 10] = {
    let k = KEM_ID.to_be_bytes();
    let f = KDF_ID.to_be_bytes();
    let a = AEAD_ID.to_be_bytes();
    [b'H', b'P', b'K', b'E', k[0], k[1], f[0], f[1], a[0], a[1]]
};

/// Errors returned by HPKE operations.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HpkeError {
    /// An X25519 Diffie-Hellman output was all-zero (non-contributory): a
    /// public key (the recipient's, the sender's or `enc`) is a low-order point.
    #[error("X25519 shared secret is non-contributory (low-order public key)")]
    NonContributory,
    /// AEAD authentication failed: the ciphertext, associated data, `info`,
    /// `enc`, keys or PSK do not match what the sender used.
    #[error("HPKE open failed: message is not authentic")]
    OpenFailed,
    /// The context's sequence number would overflow; no more messages can be
    /// sealed or opened with it.
    #[error("HPKE message limit reached")]
    MessageLimitReached,
    /// The PSK inputs are inconsistent: when a [`Psk`] is supplied, both its
    /// `key` and its `id` must be non-empty (RFC 9180 §5.1, `VerifyPSKInputs`).
    #[error("inconsistent PSK inputs: psk and psk_id must both be non-empty")]
    InconsistentPsk,
    /// A length is out of range: a requested export longer than 255 * 32
    /// bytes, a PSK shorter than 32 bytes, `ikm` shorter than 32 bytes, or a
    /// plaintext too long for the AEAD.
    #[error("invalid length")]
    InvalidLength,
    /// The operating system's random number generator failed to provide an
    /// ephemeral key.
    #[error("no randomness available")]
    Randomness,
}

/// A pre-shared key and its identifier (RFC 9180 §5.1.2).
///
/// `key` must be at least 32 bytes of high-entropy secret; `id` must be non-empty.
#[derive(Clone, Copy)]
pub struct Psk<'a> {
    /// The pre-shared key (`psk`).
    pub key: &'a [u8],
    /// The pre-shared key identifier (`psk_id`).
    pub id: &'a [u8],
}

impl fmt::Debug for Psk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Psk").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Labeled KDF functions (RFC 9180 §4)
// ---------------------------------------------------------------------------

/// HKDF output length for `ring`'s `Prk::expand`.
struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// `LabeledExtract(salt, label, ikm)`, with `ikm` given as pieces that are
/// concatenated:
/// `HKDF-Extract(salt, "HPKE-v1" || suite_id || label || ikm)`, where
/// HKDF-Extract(salt, ikm) = HMAC-SHA256(key = salt, ikm) (an empty salt is
/// the empty HMAC key, which HMAC pads exactly like RFC 5869's zero salt).
fn labeled_extract(
    suite_id: &[u8],
    salt: &[u8],
    label: &[u8],
    ikm: &[&[u8]],
) -> Zeroizing<[u8; N_H]> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(VERSION_LABEL);
    ctx.update(suite_id);
    ctx.update(label);
    for piece in ikm {
        ctx.update(piece);
    }
    let tag = ctx.sign();
    let mut prk = Zeroizing::new([0u8; N_H]);
    for (out, byte) in prk.iter_mut().zip(tag.as_ref()) {
        *out = *byte;
    }
    prk
}

/// `LabeledExpand(prk, label, info, L)` into `out` (L = `out.len()`):
/// `HKDF-Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L)`.
fn labeled_expand(
    suite_id: &[u8],
    prk: &[u8; N_H],
    label: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), HpkeError> {
    if out.len() > MAX_EXPAND_LEN {
        return Err(HpkeError::InvalidLength);
    }
    let len = u16::try_from(out.len())
        .map_err(|_| HpkeError::InvalidLength)?
        .to_be_bytes();
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk);
    let labeled_info: [&[u8]; 5] = [&len, VERSION_LABEL, suite_id, label, info];
    prk.expand(&labeled_info, OkmLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| HpkeError::InvalidLength)
}

// ---------------------------------------------------------------------------
// DHKEM(X25519, HKDF-SHA256) (RFC 9180 §4.1, §7.1)
// ---------------------------------------------------------------------------

/// X25519 DH that fails on an all-zero (non-contributory) result.
fn dh(sk: &StaticSecret, pk: &PublicKey) -> Result<Zeroizing<[u8; N_SECRET]>, HpkeError> {
    let shared = sk.diffie_hellman(pk);
    if !shared.was_contributory() {
        return Err(HpkeError::NonContributory);
    }
    let mut out = Zeroizing::new([0u8; N_SECRET]);
    out.copy_from_slice(shared.as_bytes());
    Ok(out)
}

/// `ExtractAndExpand(dh, kem_context)`; `dh` is given as pieces (one DH output,
/// or two for the authenticated modes).
fn extract_and_expand(
    dh: &[&[u8]],
    kem_context: &[u8],
) -> Result<Zeroizing<[u8; N_SECRET]>, HpkeError> {
    let eae_prk = labeled_extract(&KEM_SUITE_ID, b"", b"eae_prk", dh);
    let mut shared_secret = Zeroizing::new([0u8; N_SECRET]);
    labeled_expand(
        &KEM_SUITE_ID,
        &eae_prk,
        b"shared_secret",
        kem_context,
        shared_secret.as_mut_slice(),
    )?;
    Ok(shared_secret)
}

/// `kem_context = enc || pkRm` (|| `pkSm` in the authenticated modes).
fn kem_context(enc: &[u8; ENC_LEN], pk_r: &PublicKey, pk_s: Option<&PublicKey>) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(3 * ENC_LEN);
    ctx.extend_from_slice(enc);
    ctx.extend_from_slice(pk_r.as_bytes());
    if let Some(pk_s) = pk_s {
        ctx.extend_from_slice(pk_s.as_bytes());
    }
    ctx
}

/// `Encap(pkR)` with the ephemeral secret `sk_e`, or `AuthEncap(pkR, skS)`
/// when `sk_s` is given. Returns `(shared_secret, enc)`.
fn encap(
    pk_r: &PublicKey,
    sk_e: &StaticSecret,
    sk_s: Option<&StaticSecret>,
) -> Result<(Zeroizing<[u8; N_SECRET]>, [u8; ENC_LEN]), HpkeError> {
    let enc = PublicKey::from(sk_e).to_bytes();
    let dh_e = dh(sk_e, pk_r)?;
    let shared_secret = match sk_s {
        None => extract_and_expand(&[dh_e.as_slice()], &kem_context(&enc, pk_r, None))?,
        Some(sk_s) => {
            let dh_s = dh(sk_s, pk_r)?;
            let pk_s = PublicKey::from(sk_s);
            extract_and_expand(
                &[dh_e.as_slice(), dh_s.as_slice()],
                &kem_context(&enc, pk_r, Some(&pk_s)),
            )?
        }
    };
    Ok((shared_secret, enc))
}

/// `Decap(enc, skR)`, or `AuthDecap(enc, skR, pkS)` when `pk_s` is given.
fn decap(
    enc: &[u8; ENC_LEN],
    sk_r: &StaticSecret,
    pk_s: Option<&PublicKey>,
) -> Result<Zeroizing<[u8; N_SECRET]>, HpkeError> {
    let pk_e = PublicKey::from(*enc);
    let pk_r = PublicKey::from(sk_r);
    let dh_e = dh(sk_r, &pk_e)?;
    match pk_s {
        None => extract_and_expand(&[dh_e.as_slice()], &kem_context(enc, &pk_r, None)),
        Some(pk_s) => {
            let dh_s = dh(sk_r, pk_s)?;
            extract_and_expand(
                &[dh_e.as_slice(), dh_s.as_slice()],
                &kem_context(enc, &pk_r, Some(pk_s)),
            )
        }
    }
}

/// DeriveKeyPair (RFC 9180 §7.1.3) for X25519.
///
/// `dkp_prk = LabeledExtract("", "dkp_prk", ikm)`,
/// `sk = LabeledExpand(dkp_prk, "sk", "", 32)`. The returned secret holds the
/// raw (unclamped) 32 bytes; X25519 clamps them when it is used.
///
/// # Errors
///
/// [`HpkeError::InvalidLength`] if `ikm` is shorter than 32 bytes (RFC 9180
/// requires at least `Nsk` = 32 bytes of entropy).
pub fn derive_key_pair(ikm: &[u8]) -> Result<(StaticSecret, PublicKey), HpkeError> {
    if ikm.len() < MIN_IKM_LEN {
        return Err(HpkeError::InvalidLength);
    }
    let dkp_prk = labeled_extract(&KEM_SUITE_ID, b"", b"dkp_prk", &[ikm]);
    let mut sk = Zeroizing::new([0u8; N_SECRET]);
    labeled_expand(&KEM_SUITE_ID, &dkp_prk, b"sk", b"", sk.as_mut_slice())?;
    let sk = StaticSecret::from(*sk);
    let pk = PublicKey::from(&sk);
    Ok((sk, pk))
}

// ---------------------------------------------------------------------------
// Key schedule (RFC 9180 §5.1)
// ---------------------------------------------------------------------------

/// `VerifyPSKInputs`, returning `(psk, psk_id)` (both empty without a PSK).
fn psk_inputs(psk: Option<Psk<'_>>) -> Result<(&[u8], &[u8]), HpkeError> {
    match psk {
        None => Ok((b"", b"")),
        Some(Psk { key, id }) => {
            if key.is_empty() || id.is_empty() {
                return Err(HpkeError::InconsistentPsk);
            }
            if key.len() < MIN_PSK_LEN {
                return Err(HpkeError::InvalidLength);
            }
            Ok((key, id))
        }
    }
}

/// The mode byte for the given inputs.
fn mode(has_psk: bool, has_sender: bool) -> u8 {
    match (has_psk, has_sender) {
        (false, false) => MODE_BASE,
        (true, false) => MODE_PSK,
        (false, true) => MODE_AUTH,
        (true, true) => MODE_AUTH_PSK,
    }
}

/// Length of `key_schedule_context`: mode || psk_id_hash || info_hash.
const KEY_SCHEDULE_CONTEXT_LEN: usize = 1 + 2 * N_H;

/// `key_schedule_context = mode || LabeledExtract("", "psk_id_hash", psk_id)
/// || LabeledExtract("", "info_hash", info)`.
fn key_schedule_context(mode: u8, info: &[u8], psk_id: &[u8]) -> [u8; KEY_SCHEDULE_CONTEXT_LEN] {
    let psk_id_hash = labeled_extract(&HPKE_SUITE_ID, b"", b"psk_id_hash", &[psk_id]);
    let info_hash = labeled_extract(&HPKE_SUITE_ID, b"", b"info_hash", &[info]);
    let mut ctx = [0u8; KEY_SCHEDULE_CONTEXT_LEN];
    let parts = core::iter::once(&mode)
        .chain(psk_id_hash.iter())
        .chain(info_hash.iter());
    for (out, byte) in ctx.iter_mut().zip(parts) {
        *out = *byte;
    }
    ctx
}

/// `secret = LabeledExtract(shared_secret, "secret", psk)`.
fn key_schedule_secret(shared_secret: &[u8; N_SECRET], psk: &[u8]) -> Zeroizing<[u8; N_H]> {
    labeled_extract(&HPKE_SUITE_ID, shared_secret, b"secret", &[psk])
}

/// `KeySchedule<ROLE>(mode, shared_secret, info, psk, psk_id)`; the PSK inputs
/// must already have been checked by [`psk_inputs`].
fn key_schedule(
    mode: u8,
    shared_secret: &[u8; N_SECRET],
    info: &[u8],
    psk: &[u8],
    psk_id: &[u8],
) -> Result<ContextState, HpkeError> {
    let ksc = key_schedule_context(mode, info, psk_id);
    let secret = key_schedule_secret(shared_secret, psk);
    let mut state = ContextState {
        key: [0u8; N_K],
        base_nonce: [0u8; N_N],
        exporter_secret: [0u8; N_H],
        seq: 0,
    };
    labeled_expand(&HPKE_SUITE_ID, &secret, b"key", &ksc, &mut state.key)?;
    labeled_expand(
        &HPKE_SUITE_ID,
        &secret,
        b"base_nonce",
        &ksc,
        &mut state.base_nonce,
    )?;
    labeled_expand(
        &HPKE_SUITE_ID,
        &secret,
        b"exp",
        &ksc,
        &mut state.exporter_secret,
    )?;
    Ok(state)
}

// ---------------------------------------------------------------------------
// Encryption contexts (RFC 9180 §5.2, §5.3)
// ---------------------------------------------------------------------------

/// The state shared by sender and receiver contexts.
#[derive(Zeroize, ZeroizeOnDrop)]
struct ContextState {
    key: [u8; N_K],
    base_nonce: [u8; N_N],
    exporter_secret: [u8; N_H],
    seq: u128,
}

impl ContextState {
    /// `ComputeNonce(seq)`: `base_nonce XOR I2OSP(seq, Nn)`. Fails once the
    /// sequence number has reached its limit.
    fn current_nonce(&self) -> Result<Zeroizing<[u8; N_N]>, HpkeError> {
        if self.seq >= SEQ_LIMIT {
            return Err(HpkeError::MessageLimitReached);
        }
        let seq = self.seq.to_be_bytes();
        let mut nonce = Zeroizing::new(self.base_nonce);
        // I2OSP(seq, 12) is the low 12 bytes of the 16-byte big-endian u128:
        // pair the bytes from the end; `zip` stops after the 12 nonce bytes.
        for (n, s) in nonce.iter_mut().rev().zip(seq.iter().rev()) {
            *n ^= *s;
        }
        Ok(nonce)
    }

    /// `IncrementSeq()`; only called after a successful seal/open, whose
    /// `current_nonce` check guarantees `seq < SEQ_LIMIT`.
    fn increment_seq(&mut self) {
        self.seq = self.seq.saturating_add(1);
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        let key: &chacha20poly1305::Key = (&self.key).into();
        ChaCha20Poly1305::new(key)
    }

    fn seal(&mut self, aad: &[u8], pt: &[u8]) -> Result<Vec<u8>, HpkeError> {
        let nonce = self.current_nonce()?;
        let nonce: &chacha20poly1305::Nonce = (&*nonce).into();
        let ct = self
            .cipher()
            .encrypt(nonce, Payload { msg: pt, aad })
            .map_err(|_| HpkeError::InvalidLength)?;
        self.increment_seq();
        Ok(ct)
    }

    fn open(&mut self, aad: &[u8], ct: &[u8]) -> Result<Vec<u8>, HpkeError> {
        let nonce = self.current_nonce()?;
        let nonce: &chacha20poly1305::Nonce = (&*nonce).into();
        let pt = self
            .cipher()
            .decrypt(nonce, Payload { msg: ct, aad })
            .map_err(|_| HpkeError::OpenFailed)?;
        self.increment_seq();
        Ok(pt)
    }

    /// `Export(exporter_context, L)`:
    /// `LabeledExpand(exporter_secret, "sec", exporter_context, L)`.
    fn export(&self, exporter_context: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>, HpkeError> {
        if len > MAX_EXPAND_LEN {
            return Err(HpkeError::InvalidLength);
        }
        let mut out = Zeroizing::new(vec![0u8; len]);
        labeled_expand(
            &HPKE_SUITE_ID,
            &self.exporter_secret,
            b"sec",
            exporter_context,
            out.as_mut_slice(),
        )?;
        Ok(out)
    }
}

/// A sender's HPKE encryption context, returned by [`setup_sender`].
///
/// Holds the AEAD key, base nonce, sequence number and exporter secret; they
/// are zeroized on drop.
pub struct SenderContext(ContextState);

/// A receiver's HPKE encryption context, returned by [`setup_receiver`].
///
/// Holds the AEAD key, base nonce, sequence number and exporter secret; they
/// are zeroized on drop.
pub struct ReceiverContext(ContextState);

impl fmt::Debug for SenderContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderContext")
            .field("seq", &self.0.seq)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ReceiverContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverContext")
            .field("seq", &self.0.seq)
            .finish_non_exhaustive()
    }
}

impl SenderContext {
    /// Encrypts `pt` with associated data `aad` under the next sequence number
    /// (RFC 9180 §5.2 `ContextS.Seal`). Returns the ciphertext (with its
    /// 16-byte tag appended).
    ///
    /// # Errors
    ///
    /// [`HpkeError::MessageLimitReached`] when the sequence number is exhausted,
    /// [`HpkeError::InvalidLength`] if `pt` is too long for ChaCha20Poly1305.
    pub fn seal(&mut self, aad: &[u8], pt: &[u8]) -> Result<Vec<u8>, HpkeError> {
        self.0.seal(aad, pt)
    }

    /// Derives `len` bytes of secret from the exporter secret and
    /// `exporter_context` (RFC 9180 §5.3).
    ///
    /// # Errors
    ///
    /// [`HpkeError::InvalidLength`] if `len` exceeds 255 * 32 bytes.
    pub fn export(
        &self,
        exporter_context: &[u8],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, HpkeError> {
        self.0.export(exporter_context, len)
    }
}

impl ReceiverContext {
    /// Decrypts and authenticates `ct` with associated data `aad` under the
    /// next sequence number (RFC 9180 §5.2 `ContextR.Open`). On failure the
    /// sequence number does not advance.
    ///
    /// # Errors
    ///
    /// [`HpkeError::OpenFailed`] if authentication fails,
    /// [`HpkeError::MessageLimitReached`] when the sequence number is exhausted.
    pub fn open(&mut self, aad: &[u8], ct: &[u8]) -> Result<Vec<u8>, HpkeError> {
        self.0.open(aad, ct)
    }

    /// Derives `len` bytes of secret from the exporter secret and
    /// `exporter_context` (RFC 9180 §5.3).
    ///
    /// # Errors
    ///
    /// [`HpkeError::InvalidLength`] if `len` exceeds 255 * 32 bytes.
    pub fn export(
        &self,
        exporter_context: &[u8],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, HpkeError> {
        self.0.export(exporter_context, len)
    }
}

// ---------------------------------------------------------------------------
// Setup (RFC 9180 §5.1.1 - §5.1.4)
// ---------------------------------------------------------------------------

/// Set up a sender: base (psk None, sender None), psk, auth (sender Some) or auth_psk.
///
/// Draws a fresh ephemeral X25519 key, encapsulates to `pk_r` (authenticated
/// with `sk_s` when given) and runs the key schedule with `info` and `psk`.
/// Returns `enc`, which must be sent to the receiver, and the context.
///
/// # Errors
///
/// [`HpkeError::NonContributory`] if `pk_r` is a low-order point,
/// [`HpkeError::InconsistentPsk`] if a [`Psk`] has an empty `key` or `id`,
/// [`HpkeError::InvalidLength`] if a PSK is shorter than 32 bytes.
pub fn setup_sender(
    pk_r: &PublicKey,
    info: &[u8],
    psk: Option<Psk<'_>>,
    sk_s: Option<&StaticSecret>,
) -> Result<([u8; ENC_LEN], SenderContext), HpkeError> {
    let mut ikm = Zeroizing::new([0u8; 32]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), ikm.as_mut())
        .map_err(|_| HpkeError::Randomness)?;
    let sk_e = StaticSecret::from(*ikm);
    setup_sender_with_ephemeral(pk_r, info, psk, sk_s, &sk_e)
}

/// [`setup_sender`] with an explicit ephemeral secret `sk_e` (for test vectors).
fn setup_sender_with_ephemeral(
    pk_r: &PublicKey,
    info: &[u8],
    psk: Option<Psk<'_>>,
    sk_s: Option<&StaticSecret>,
    sk_e: &StaticSecret,
) -> Result<([u8; ENC_LEN], SenderContext), HpkeError> {
    let (psk_key, psk_id) = psk_inputs(psk)?;
    let mode = mode(psk.is_some(), sk_s.is_some());
    let (shared_secret, enc) = encap(pk_r, sk_e, sk_s)?;
    let state = key_schedule(mode, &shared_secret, info, psk_key, psk_id)?;
    Ok((enc, SenderContext(state)))
}

/// Set up a receiver for `enc`: base (psk None, pk_s None), psk, auth (pk_s
/// Some) or auth_psk. The arguments must match those of the sender.
///
/// # Errors
///
/// [`HpkeError::NonContributory`] if `enc` (or `pk_s`) is a low-order point,
/// [`HpkeError::InconsistentPsk`] if a [`Psk`] has an empty `key` or `id`,
/// [`HpkeError::InvalidLength`] if a PSK is shorter than 32 bytes.
/// A mismatch in the other inputs is only detected by
/// [`ReceiverContext::open`], as [`HpkeError::OpenFailed`].
pub fn setup_receiver(
    enc: &[u8; ENC_LEN],
    sk_r: &StaticSecret,
    info: &[u8],
    psk: Option<Psk<'_>>,
    pk_s: Option<&PublicKey>,
) -> Result<ReceiverContext, HpkeError> {
    let (psk_key, psk_id) = psk_inputs(psk)?;
    let mode = mode(psk.is_some(), pk_s.is_some());
    let shared_secret = decap(enc, sk_r, pk_s)?;
    let state = key_schedule(mode, &shared_secret, info, psk_key, psk_id)?;
    Ok(ReceiverContext(state))
}

/// Single-shot base mode (RFC 9180 §6.1): encrypts `pt` with associated data
/// `aad` to `pk_r`. Returns `(enc, ct)`.
///
/// # Errors
///
/// As [`setup_sender`] and [`SenderContext::seal`].
pub fn seal(
    pk_r: &PublicKey,
    info: &[u8],
    aad: &[u8],
    pt: &[u8],
) -> Result<([u8; ENC_LEN], Vec<u8>), HpkeError> {
    let (enc, mut ctx) = setup_sender(pk_r, info, None, None)?;
    let ct = ctx.seal(aad, pt)?;
    Ok((enc, ct))
}

/// Single-shot base mode (RFC 9180 §6.1): decrypts `ct` sent with `enc`.
///
/// # Errors
///
/// As [`setup_receiver`] and [`ReceiverContext::open`].
pub fn open(
    enc: &[u8; ENC_LEN],
    sk_r: &StaticSecret,
    info: &[u8],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, HpkeError> {
    let mut ctx = setup_receiver(enc, sk_r, info, None, None)?;
    ctx.open(aad, ct)
}

#[cfg(test)]
mod tests;
