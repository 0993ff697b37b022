//! Opaque random identifiers: sessions, parties, rooms and invites.
//!
//! Each is 16 random bytes chosen by the mediator's client; the relay sees
//! them but they say nothing about who or what they name.

use std::fmt;

use crate::error::Error;

/// Length of every opaque identifier.
pub const ID_LEN: usize = 16;

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; ID_LEN]);

        impl $name {
            /// A fresh random identifier.
            pub fn random() -> Result<Self, Error> {
                crate::crypto::random_array().map(Self)
            }

            /// Parse the unpadded base64url form.
            pub fn parse(text: &str) -> Option<Self> {
                crate::b64::decode_array(text).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&crate::b64::encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        crate::macros::fixed_bytes!($name);
    };
}

opaque_id!(
    /// One mediation session.
    SessionId
);
opaque_id!(
    /// One party to the dispute (a side: a claimant with their solicitor,
    /// say).
    PartyId
);
opaque_id!(
    /// One room: a party's private room, the joint room or a side room.
    RoomId
);
opaque_id!(
    /// One invitation.
    InviteId
);
opaque_id!(
    /// One document's chunks at the relay (protocol.md 9.6). Chosen at
    /// random by the uploading client and known, besides the relay, only to
    /// those who can open an envelope naming it.
    FileId
);
