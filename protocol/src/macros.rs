//! Shared implementations for newtypes over fixed-size byte arrays.

/// Implement [`Canonical`](crate::codec::Canonical) (the bytes, with no
/// length) and serde as unpadded base64url for `$name(pub [u8; N])`.
macro_rules! fixed_bytes {
    ($name:ident) => {
        impl $crate::codec::Canonical for $name {
            fn encode(&self, w: &mut $crate::codec::Writer) {
                w.fixed(&self.0);
            }
            fn decode(
                r: &mut $crate::codec::Reader<'_>,
            ) -> Result<Self, $crate::codec::DecodeError> {
                r.array().map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&$crate::b64::encode(&self.0))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::b64::deserialize_array(d).map(Self)
            }
        }
    };
}

pub(crate) use fixed_bytes;
