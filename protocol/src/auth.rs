//! Who is at each end of a connection (protocol.md sections 12.3 and 13.11).
//!
//! * The **device** answers the relay's challenge with a signature that
//!   binds the nonce, the relay's identity and the URL the device dialled
//!   ([`AuthTarget`]). The relay checks it with the same function, against
//!   its own identity and the URLs it serves, so an answer a device gave one
//!   relay cannot log in at another: a malicious relay that passes on
//!   another relay's challenge gets a signature naming itself.
//! * The **relay** is known by its identity's fingerprint, which the
//!   device pins (from the invite link, or on first use). A relay that
//!   changes its key shows, with its challenge, a [`RelayRotation`] signed
//!   by the old key; [`follow_rotations`] accepts a new key only through
//!   such statements from the pinned one.
//!
//! ```
//! use caucus_protocol::auth::{AuthTarget, RelayRotation, follow_rotations};
//! use caucus_protocol::crypto::Digest;
//! use caucus_protocol::identity::DeviceKeys;
//!
//! # fn main() -> Result<(), caucus_protocol::Error> {
//! let (device, relay, other) = (DeviceKeys::generate()?, DeviceKeys::generate()?, DeviceKeys::generate()?);
//! let nonce = Digest([0xcc; 32]);
//! let dialled = AuthTarget::new(nonce, relay.fingerprint(), "wss://Relay.example:443/");
//! let signature = dialled.sign(&device);
//! // The relay, at wss://relay.example, checks the answer.
//! AuthTarget::new(nonce, relay.fingerprint(), "wss://relay.example").verify(device.public(), &signature)?;
//! // Another relay, or another URL, does not accept it.
//! assert!(AuthTarget::new(nonce, other.fingerprint(), "wss://relay.example").verify(device.public(), &signature).is_err());
//! assert!(AuthTarget::new(nonce, relay.fingerprint(), "wss://evil.example").verify(device.public(), &signature).is_err());
//!
//! // The relay moves to a new key, vouched for by the old one.
//! let rotation = RelayRotation { old: relay.public().clone(), new: other.public().clone(), rotated_at: 1_900_000_000 }.sign(&relay)?;
//! assert_eq!(follow_rotations(&relay.fingerprint(), other.public(), &[rotation])?, vec![other.fingerprint()]);
//! assert!(follow_rotations(&relay.fingerprint(), other.public(), &[]).is_err());
//! # Ok(())
//! # }
//! ```

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::{Digest, Signature, label};
use crate::error::Error;
use crate::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use crate::invite::canonical_url;
use crate::signed::{Signed, SignedKind};

/// What a device's answer to a challenge is bound to: the relay's nonce,
/// the relay's identity, and the relay URL the device dialled (in its
/// canonical form, [`canonical_url`]). The signed body is
/// `nonce(32) || relay fingerprint(32) || str(canonical URL)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthTarget {
    nonce: Digest,
    relay: Fingerprint,
    url: String,
}

impl AuthTarget {
    /// The challenge `nonce` of the relay whose identity has the fingerprint
    /// `relay`, reached at `url` (in any of the forms [`canonical_url`]
    /// makes one).
    pub fn new(nonce: Digest, relay: Fingerprint, url: &str) -> Self {
        Self {
            nonce,
            relay,
            url: canonical_url(url),
        }
    }

    /// The URL, in canonical form.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.nonce.encode(&mut w);
        self.relay.encode(&mut w);
        w.str(&self.url);
        w.into_bytes()
    }

    /// As the device: `Sign(device, "caucus/v1/auth", body)`.
    pub fn sign(&self, device: &DeviceKeys) -> Signature {
        device.sign(label::AUTH, &self.body())
    }

    /// As the relay: check a device's answer (`bad_signature` if it was
    /// made for another nonce, relay or URL, or by another key).
    pub fn verify(&self, device: &PublicIdentity, signature: &Signature) -> Result<(), Error> {
        device.verify(label::AUTH, &self.body(), signature, "auth")
    }
}

/// A relay's statement that it has moved from one identity to another,
/// signed by the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRotation {
    /// The identity the relay had, which signs the statement.
    pub old: PublicIdentity,
    /// The identity it has from now on.
    pub new: PublicIdentity,
    /// When, in seconds since the Unix epoch, by the relay's clock.
    pub rotated_at: u64,
}

impl Canonical for RelayRotation {
    fn encode(&self, w: &mut Writer) {
        self.old.encode(w);
        self.new.encode(w);
        w.u64(self.rotated_at);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            old: PublicIdentity::decode(r)?,
            new: PublicIdentity::decode(r)?,
            rotated_at: r.u64()?,
        })
    }
}

impl SignedKind for RelayRotation {
    const LABEL: &'static str = label::RELAY_ROTATION;
    const WHAT: &'static str = "relay rotation";
}

/// A rotation statement with the old key's signature, as it travels.
pub type SignedRelayRotation = Signed<RelayRotation>;

impl RelayRotation {
    /// Sign as the old identity (`bad_statement` if `old` is not the
    /// signer's, or if the two identities are the same).
    pub fn sign(self, old: &DeviceKeys) -> Result<SignedRelayRotation, Error> {
        if self.old != *old.public() {
            return Err(Error::BadStatement(
                "signer is not the relay's old identity",
            ));
        }
        if self.new == self.old {
            return Err(Error::BadStatement("a rotation to the same identity"));
        }
        Ok(Signed::sign(self, old))
    }
}

/// Whether a device that pinned the relay key `pinned` may accept the relay
/// identity `shown`, given the rotation statements the relay served with it
/// (oldest first). The answer is the fingerprints the pin moves through,
/// after `pinned` and ending with `shown`: none when `shown` is the pinned
/// key itself. Otherwise the statements from the one whose `old` is
/// `pinned` to the last must each be signed by their `old` identity, each
/// `new` must be the next one's `old`, and the last `new` must be `shown`;
/// if not, `unpinned_relay`, or `bad_signature` for a statement whose
/// signature fails.
pub fn follow_rotations(
    pinned: &Fingerprint,
    shown: &PublicIdentity,
    rotations: &[SignedRelayRotation],
) -> Result<Vec<Fingerprint>, Error> {
    let shown_key = shown.fingerprint();
    if &shown_key == pinned {
        return Ok(Vec::new());
    }
    let refused = Error::UnpinnedRelay {
        pinned: *pinned,
        shown: shown_key,
    };
    let start = rotations
        .iter()
        .position(|r| &r.unverified().old.fingerprint() == pinned)
        .ok_or(refused.clone())?;
    let mut keys = Vec::new();
    let mut current = None::<&PublicIdentity>;
    for signed in &rotations[start..] {
        let step = signed.unverified();
        if current.is_some_and(|c| c != &step.old) {
            return Err(refused);
        }
        signed.verify_by(&step.old)?;
        keys.push(step.new.fingerprint());
        current = Some(&step.new);
    }
    if current != Some(shown) {
        return Err(refused);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotate(old: &DeviceKeys, new: &DeviceKeys) -> SignedRelayRotation {
        RelayRotation {
            old: old.public().clone(),
            new: new.public().clone(),
            rotated_at: 1_900_000_000,
        }
        .sign(old)
        .unwrap()
    }

    /// A chain K0 → K1 → K2: a device pinned to K0 or K1 follows it to
    /// K2; a prefix forged by a key of the relay's own (X → K1) does not
    /// vouch for anything to a device pinned to X's victim; a chain with a
    /// missing link, or a statement not signed by its old key, fails.
    #[test]
    fn rotations_are_followed_only_from_the_pinned_key_through_signed_links() {
        let k: Vec<DeviceKeys> = (0..4).map(|_| DeviceKeys::generate().unwrap()).collect();
        let chain = [rotate(&k[0], &k[1]), rotate(&k[1], &k[2])];
        let shown = k[2].public();
        assert_eq!(
            follow_rotations(&k[0].fingerprint(), shown, &chain).unwrap(),
            [k[1].fingerprint(), k[2].fingerprint()]
        );
        assert_eq!(
            follow_rotations(&k[1].fingerprint(), shown, &chain).unwrap(),
            [k[2].fingerprint()]
        );
        assert!(matches!(
            follow_rotations(&k[3].fingerprint(), shown, &chain),
            Err(Error::UnpinnedRelay { .. })
        ));
        let gap = [chain[0].clone(), rotate(&k[3], &k[2])];
        assert!(matches!(
            follow_rotations(&k[0].fingerprint(), shown, &gap),
            Err(Error::UnpinnedRelay { .. })
        ));
        let mut bytes = chain[1].to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = [
            chain[0].clone(),
            SignedRelayRotation::from_bytes(&bytes).unwrap(),
        ];
        assert!(matches!(
            follow_rotations(&k[0].fingerprint(), shown, &tampered),
            Err(Error::BadSignature(_))
        ));
        assert!(
            RelayRotation {
                old: k[0].public().clone(),
                new: k[1].public().clone(),
                rotated_at: 0
            }
            .sign(&k[1])
            .is_err()
        );
    }
}
