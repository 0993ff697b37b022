//! The key of an encrypted state directory: derived from the passphrase
//! with Argon2id, checked against the directory's `keyfile`, and used to
//! seal every secret file, and each log record, with XChaCha20-Poly1305.
//!
//! ```text
//! keyfile   u16 version (1) || u32 m_cost (KiB) || u32 t_cost || u32 p_cost
//!           || salt[16] || verifier: nonce[24] || tag[16]
//! sealed    nonce[24] || ciphertext || tag[16]
//! ```
//!
//! The verifier seals nothing, with the rest of the keyfile as associated
//! data: a passphrase that derives another key fails it before any other
//! file is read. Every sealed blob's associated data says what it is
//! ([`Kind`]): the device key, or which session's snapshot, which record of
//! which session's log, which kept record. Nonces are random; at 24 bytes
//! they do not repeat under one key.

use argon2::{Algorithm, Argon2, Block, Params, Version};
use caucus_client_core::{ClientError, Kept};
use caucus_protocol::codec::{Reader, Writer};
use caucus_protocol::ids::SessionId;
use chacha20poly1305::{AeadInOut, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// The layout of the keyfile.
const KEYFILE_VERSION: u16 = 1;
/// Argon2id at the first of the OWASP Password Storage Cheat Sheet's
/// equivalent minimum configurations: 46 MiB, one pass, one lane — the most
/// memory-hard of them. One derivation per open: 46 MiB and 50 to 70 ms on
/// two Xeon cores (docs/performance.md, "Client state on disk").
const M_COST_KIB: u32 = 46 * 1024;
const T_COST: u32 = 1;
const P_COST: u32 = 1;
/// The most a keyfile may ask for, so that an altered one cannot make an
/// open allocate or compute without bound (later versions may raise the
/// cost up to these).
const MAX_M_COST_KIB: u32 = 1 << 20;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 16;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// What a sealed blob holds: bound to it as associated data, so that none
/// can be passed off as another.
#[derive(Clone, Copy)]
pub(super) enum Kind<'a> {
    /// The keyfile's verifier, over the keyfile's other fields.
    Keyfile(&'a [u8]),
    /// The device's secret keys.
    Identity,
    /// A session's snapshot.
    Snapshot(&'a SessionId),
    /// A record of a session's log, by its position in the log.
    Record(&'a SessionId, u64),
    /// A record kept after the session's erasure.
    Kept(&'a SessionId, Kept),
}

impl Kind<'_> {
    fn associated_data(self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str("caucus state v1");
        match self {
            Kind::Keyfile(header) => w.str("keyfile").bytes(header),
            Kind::Identity => w.str("identity"),
            Kind::Snapshot(id) => w.str("snapshot").fixed(&id.0),
            Kind::Record(id, n) => w.str("log record").fixed(&id.0).u64(n),
            Kind::Kept(id, Kept::Agreement) => w.str("kept agreement").fixed(&id.0),
            Kind::Kept(id, Kept::Deletion) => w.str("kept deletion").fixed(&id.0),
        };
        w.into_bytes()
    }

    fn describe(self) -> String {
        match self {
            Kind::Keyfile(_) => "the keyfile".into(),
            Kind::Identity => "the device key".into(),
            Kind::Snapshot(id) => format!("the snapshot of session {id}"),
            Kind::Record(id, n) => format!("record {n} of the log of session {id}"),
            Kind::Kept(id, _) => format!("a kept record of session {id}"),
        }
    }
}

/// The key. chacha20poly1305's `zeroize` feature wipes it when dropped.
#[derive(Debug)]
pub(super) struct StateKey(XChaCha20Poly1305);

/// The keyfile's fields before its verifier.
struct Header {
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    salt: [u8; SALT_LEN],
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(KEYFILE_VERSION)
            .u32(self.m_cost)
            .u32(self.t_cost)
            .u32(self.p_cost)
            .fixed(&self.salt);
        w.into_bytes()
    }

    fn derive(&self, passphrase: &[u8]) -> Result<StateKey, ClientError> {
        let bad = |e: argon2::Error| ClientError::Corrupt(format!("keyfile: {e}"));
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32)).map_err(bad)?;
        // The derivation's memory, zeroized when dropped: the key could be
        // computed from it.
        let mut memory = Zeroizing::new(Vec::new());
        memory
            .try_reserve_exact(params.block_count())
            .map_err(|_| bad(argon2::Error::OutOfMemory))?;
        memory.resize(params.block_count(), Block::new());
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into_with_memory(
                passphrase,
                &self.salt,
                key.as_mut(),
                memory.as_mut_slice(),
            )
            .map_err(bad)?;
        let cipher = XChaCha20Poly1305::new_from_slice(key.as_ref())
            .map_err(|_| ClientError::Corrupt("keyfile: key length".into()))?;
        Ok(StateKey(cipher))
    }
}

fn random<const N: usize>() -> Result<[u8; N], ClientError> {
    let mut out = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out)
        .map_err(|_| caucus_protocol::Error::Randomness)?;
    Ok(out)
}

impl StateKey {
    /// A new key for a new directory, and the keyfile that holds its salt,
    /// parameters and verifier.
    pub(super) fn create(passphrase: &[u8]) -> Result<(Self, Vec<u8>), ClientError> {
        let header = Header {
            m_cost: M_COST_KIB,
            t_cost: T_COST,
            p_cost: P_COST,
            salt: random()?,
        };
        let mut keyfile = header.encode();
        let key = header.derive(passphrase)?;
        let verifier = key.seal(Kind::Keyfile(&keyfile), &[])?;
        keyfile.extend_from_slice(&verifier);
        Ok((key, keyfile))
    }

    /// The key `passphrase` derives with this keyfile, if its verifier
    /// opens.
    pub(super) fn unlock(keyfile: &[u8], passphrase: &[u8]) -> Result<Self, ClientError> {
        let (header, verifier) = Reader::decode_all(keyfile, |r| {
            let version = r.u16()?;
            let header = Header {
                m_cost: r.u32()?,
                t_cost: r.u32()?,
                p_cost: r.u32()?,
                salt: r.array()?,
            };
            let verifier: [u8; NONCE_LEN + TAG_LEN] = r.array()?;
            Ok((version, header, verifier))
        })
        .map_err(|e| ClientError::Corrupt(format!("keyfile: {e}")))
        .and_then(|(version, header, verifier)| {
            if version != KEYFILE_VERSION {
                return Err(ClientError::Corrupt(format!(
                    "keyfile has layout {version}, this client reads {KEYFILE_VERSION}"
                )));
            }
            if header.m_cost > MAX_M_COST_KIB
                || header.t_cost > MAX_T_COST
                || header.p_cost > MAX_P_COST
            {
                return Err(ClientError::Corrupt(
                    "keyfile asks for more than this client derives".into(),
                ));
            }
            Ok((header, verifier))
        })?;
        let key = header.derive(passphrase)?;
        match key.open(Kind::Keyfile(&header.encode()), &verifier) {
            Ok(_) => Ok(key),
            Err(_) => Err(ClientError::WrongPassphrase),
        }
    }

    /// Seal `plaintext` as `kind`: `nonce || ciphertext || tag`.
    pub(super) fn seal(&self, kind: Kind<'_>, plaintext: &[u8]) -> Result<Vec<u8>, ClientError> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                &kind.associated_data(),
                out[NONCE_LEN..].as_mut().into(),
            )
            .map_err(|_| ClientError::Corrupt(format!("{} too large to seal", kind.describe())))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Open what [`StateKey::seal`] sealed as `kind`.
    pub(super) fn open(
        &self,
        kind: Kind<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let fails = || {
            ClientError::Corrupt(format!(
                "{} fails authentication: altered, moved, or not this directory's",
                kind.describe()
            ))
        };
        let (nonce, rest) = sealed.split_first_chunk::<NONCE_LEN>().ok_or_else(fails)?;
        let (body, tag) = rest.split_last_chunk::<TAG_LEN>().ok_or_else(fails)?;
        let mut plain = Zeroizing::new(body.to_vec());
        self.0
            .decrypt_inout_detached(
                &XNonce::from(*nonce),
                &kind.associated_data(),
                plain.as_mut_slice().into(),
                &Tag::from(*tag),
            )
            .map_err(|_| fails())?;
        Ok(plain)
    }
}
