//! A value with one signature over its exact canonical bytes, as rosters and
//! key bundles travel. The signed bytes are kept as received and never
//! re-encoded.

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::Signature;
use crate::error::Error;
use crate::identity::{DeviceKeys, PublicIdentity};

/// A kind of value that travels signed, with its own signature label.
pub trait SignedKind: Canonical {
    /// The domain-separation label of its signature.
    const LABEL: &'static str;
    /// What it is, for error messages.
    const WHAT: &'static str;
}

/// `bytes(body) || signature(64)`, where `body` is the canonical encoding of
/// a `T` and the signature is over `u8(len(T::LABEL)) || T::LABEL || body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<T> {
    body: Vec<u8>,
    value: T,
    signature: Signature,
}

impl<T: SignedKind> Signed<T> {
    /// Sign `value` with `keys`.
    pub(crate) fn sign(value: T, keys: &DeviceKeys) -> Self {
        let body = value.to_bytes();
        let signature = keys.sign(T::LABEL, &body);
        Self {
            body,
            value,
            signature,
        }
    }

    /// The value, whose signature may not have been checked yet.
    pub fn unverified(&self) -> &T {
        &self.value
    }

    /// The exact signed bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Check the signature by `signer`, and return the value.
    pub fn verify_by(&self, signer: &PublicIdentity) -> Result<&T, Error> {
        signer.verify(T::LABEL, &self.body, &self.signature, T::WHAT)?;
        Ok(&self.value)
    }
}

impl<T: SignedKind> Canonical for Signed<T> {
    fn encode(&self, w: &mut Writer) {
        w.bytes(&self.body);
        self.signature.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let body = r.bytes()?.to_vec();
        let value = T::from_bytes(&body)?;
        Ok(Self {
            body,
            value,
            signature: Signature::decode(r)?,
        })
    }
}
