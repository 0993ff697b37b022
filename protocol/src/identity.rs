//! Device identities: an Ed25519 signing key (signed with ring, checked
//! with ed25519-dalek) and an X25519 key
//! (x25519-dalek) per device, the self-signed public identity, its
//! fingerprint and the safety code people compare aloud.

use std::fmt;

use ed25519_dalek::VerifyingKey;
use ring::signature::{Ed25519KeyPair, KeyPair};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::{
    Digest, Signature, is_small_order_x25519, label, signing_input, verify_signature, verifying_key,
};
use crate::error::Error;

/// The SHA-256 fingerprint of a public identity. It is also how a member is
/// named in rosters and envelope headers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 32]);

crate::macros::fixed_bytes!(Fingerprint);

impl Fingerprint {
    /// The safety code: six groups of five digits, for two people to read
    /// to each other and compare (about 100 bits of the fingerprint).
    pub fn safety_code(&self) -> String {
        self.0
            .chunks_exact(5)
            .take(6)
            .map(|c| {
                let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                format!("{:05}", n % 100_000)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parse the unpadded base64url form.
    pub fn parse(text: &str) -> Option<Self> {
        crate::b64::decode_array(text).map(Self)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::b64::encode(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A device's public identity: its Ed25519 and X25519 public keys, signed by
/// the Ed25519 key. A value of this type has always had its self-signature
/// checked, and neither key is of small order: decoding verifies both
/// (protocol.md section 5.2). It keeps the signing key decoded, so that
/// checking its signatures does not decode the key each time.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicIdentity {
    signing_key: VerifyingKey,
    dh_key: [u8; 32],
    self_signature: Signature,
}

impl PublicIdentity {
    fn signed_body(signing_key: &[u8; 32], dh_key: &[u8; 32]) -> Vec<u8> {
        let mut w = Writer::new();
        w.fixed(signing_key).fixed(dh_key);
        w.into_bytes()
    }

    /// The Ed25519 public key.
    pub fn signing_key(&self) -> &[u8; 32] {
        self.signing_key.as_bytes()
    }

    /// The X25519 public key that room keys are sealed to.
    pub fn dh_key(&self) -> PublicKey {
        PublicKey::from(self.dh_key)
    }

    /// The fingerprint: `SHA-256(label "caucus/v1/fingerprint" || signing key || DH key)`.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(Digest::of(label::FINGERPRINT, &[self.signing_key(), &self.dh_key]).0)
    }

    /// Check a signature made by this identity.
    pub fn verify(
        &self,
        label: &str,
        body: &[u8],
        sig: &Signature,
        what: &'static str,
    ) -> Result<(), Error> {
        verify_signature(&self.signing_key, label, body, sig, what)
    }
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicIdentity")
            .field(&self.fingerprint())
            .finish()
    }
}

impl Canonical for PublicIdentity {
    fn encode(&self, w: &mut Writer) {
        w.fixed(self.signing_key())
            .fixed(&self.dh_key)
            .fixed(&self.self_signature.0);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let signing_key = r.array()?;
        let dh_key = r.array()?;
        let self_signature = Signature(r.array()?);
        let signing_key = verifying_key(&signing_key).ok_or(DecodeError::Invalid(
            "identity signing key is of small order or not canonical",
        ))?;
        if is_small_order_x25519(&dh_key) {
            return Err(DecodeError::Invalid("identity DH key is of small order"));
        }
        let bad = DecodeError::Invalid("identity self-signature does not verify");
        verify_signature(
            &signing_key,
            label::IDENTITY,
            &Self::signed_body(signing_key.as_bytes(), &dh_key),
            &self_signature,
            "identity",
        )
        .map_err(|_| bad)?;
        Ok(Self {
            signing_key,
            dh_key,
            self_signature,
        })
    }
}

/// A device's secret keys. Zeroized on drop; `Debug` shows only the
/// fingerprint.
pub struct DeviceKeys {
    pkcs8: Zeroizing<Vec<u8>>,
    signing: Ed25519KeyPair,
    dh: StaticSecret,
    public: PublicIdentity,
}

impl DeviceKeys {
    /// Generate a new device identity from the operating system's RNG.
    pub fn generate() -> Result<Self, Error> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| Error::Randomness)?;
        let dh = StaticSecret::from(crate::crypto::random_array::<32>()?);
        Self::from_parts(Zeroizing::new(pkcs8.as_ref().to_vec()), dh)
    }

    fn from_parts(pkcs8: Zeroizing<Vec<u8>>, dh: StaticSecret) -> Result<Self, Error> {
        let signing = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| Error::Decode(DecodeError::Invalid("Ed25519 PKCS#8 key")))?;
        let mut signing_key = [0u8; 32];
        signing_key.copy_from_slice(signing.public_key().as_ref());
        let dh_key = PublicKey::from(&dh).to_bytes();
        let sig = signing.sign(&signing_input(
            label::IDENTITY,
            &PublicIdentity::signed_body(&signing_key, &dh_key),
        ));
        let mut self_signature = [0u8; 64];
        self_signature.copy_from_slice(sig.as_ref());
        let public = PublicIdentity {
            signing_key: verifying_key(&signing_key).ok_or(Error::Decode(DecodeError::Invalid(
                "Ed25519 PKCS#8 key's public key",
            )))?,
            dh_key,
            self_signature: Signature(self_signature),
        };
        Ok(Self {
            pkcs8,
            signing,
            dh,
            public,
        })
    }

    /// The secret keys for storage: `bytes(Ed25519 PKCS#8 v2) || X25519 secret (32)`.
    /// Keep it as secret as the device itself.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new();
        w.bytes(&self.pkcs8).fixed(self.dh.as_bytes());
        Zeroizing::new(w.into_bytes())
    }

    /// Load keys stored by [`DeviceKeys::to_secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (pkcs8, dh) = Reader::decode_all(bytes, |r| {
            let pkcs8 = Zeroizing::new(r.bytes()?.to_vec());
            let dh = Zeroizing::new(r.array::<32>()?);
            Ok((pkcs8, dh))
        })?;
        Self::from_parts(pkcs8, StaticSecret::from(*dh))
    }

    /// The public identity.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// The fingerprint of the public identity.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint()
    }

    /// Sign `body` under `label`.
    pub fn sign(&self, label: &str, body: &[u8]) -> Signature {
        let sig = self.signing.sign(&signing_input(label, body));
        let mut out = [0u8; 64];
        out.copy_from_slice(sig.as_ref());
        Signature(out)
    }

    /// The X25519 secret, for opening what was sealed to this device.
    pub(crate) fn dh_secret(&self) -> &StaticSecret {
        &self.dh
    }
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_self_signature_is_checked() {
        let keys = DeviceKeys::generate().unwrap();
        let bytes = keys.public().to_bytes();
        let decoded = PublicIdentity::from_bytes(&bytes).unwrap();
        assert_eq!(&decoded, keys.public());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(PublicIdentity::from_bytes(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn secret_bytes_round_trip_to_the_same_identity() {
        let keys = DeviceKeys::generate().unwrap();
        let again = DeviceKeys::from_secret_bytes(&keys.to_secret_bytes()).unwrap();
        assert_eq!(again.public(), keys.public());
        assert!(DeviceKeys::from_secret_bytes(&[1, 2, 3]).is_err());
    }

    #[test]
    fn safety_code_is_six_groups_of_five_digits_and_debug_hides_secrets() {
        let keys = DeviceKeys::generate().unwrap();
        let code = keys.fingerprint().safety_code();
        let groups: Vec<_> = code.split(' ').collect();
        assert_eq!(groups.len(), 6);
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        let other = DeviceKeys::generate().unwrap();
        assert_ne!(code, other.fingerprint().safety_code());
        let debug = format!("{keys:?}");
        let secret = crate::b64::encode(&keys.to_secret_bytes());
        assert!(!debug.contains(&secret[..16]));
    }
}
