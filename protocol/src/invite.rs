//! Invitations: the link a mediator sends to one person, the admission token
//! the relay checks, and the join proof the mediator checks.
//!
//! The link carries a 32-byte invite secret that never reaches the relay.
//! From it both sides derive, with HKDF-Expand under separate labels:
//!
//! * the **admission token**, which the joiner shows the relay to enter the
//!   waiting room (the relay stores only its SHA-256 hash), and
//! * the **join MAC key**, with which the joiner proves to the mediator that
//!   its public identity came from whoever holds the link.
//!
//! Knowing the token does not give the MAC key, so the relay cannot forge a
//! join proof for a key of its own; and the link pins the mediator's
//! fingerprint, so the relay cannot hand the joiner a mediator key of its
//! own either. It pins the relay's fingerprint too, so that the joiner
//! connects only to the relay the mediator used (or one it vouched for
//! with a rotation statement, [`crate::auth`]).

use std::fmt;

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::{Digest, Secret32, label};
use crate::error::Error;
use crate::identity::{Fingerprint, PublicIdentity};
use crate::ids::{InviteId, SessionId};

/// The scheme prefix of an invite link.
pub const LINK_PREFIX: &str = "caucus:invite:v1:";

/// The longest relay URL a link may carry.
const MAX_URL_LEN: usize = 2048;

/// One person's invitation to a session.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// The relay's base URL (`ws://…` or `wss://…`).
    pub relay: String,
    /// The fingerprint of the relay's identity, which the joiner pins.
    pub relay_key: Fingerprint,
    /// The session.
    pub session: SessionId,
    /// The invite's id, which the relay sees.
    pub id: InviteId,
    secret: Secret32,
    /// The mediator's fingerprint, which the joiner pins.
    pub mediator: Fingerprint,
    /// When the invite expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Invite {
    /// A new invite with a fresh random id and secret.
    pub fn new(
        relay: String,
        relay_key: Fingerprint,
        session: SessionId,
        mediator: Fingerprint,
        expires_at: u64,
    ) -> Result<Self, Error> {
        if relay.len() > MAX_URL_LEN {
            return Err(Error::TooLarge);
        }
        check_relay_url(&relay)?;
        Ok(Self {
            relay,
            relay_key,
            session,
            id: InviteId::random()?,
            secret: Secret32::random()?,
            mediator,
            expires_at,
        })
    }

    /// The link to send to the invitee:
    /// `caucus:invite:v1:` followed by the unpadded base64url of the
    /// canonical invite.
    pub fn to_link(&self) -> String {
        format!("{LINK_PREFIX}{}", crate::b64::encode(&self.to_bytes()))
    }

    /// The link as a web page address, for a person to open in a browser:
    /// the relay's own page (`ws://` becomes `http://`, `wss://` becomes
    /// `https://`, the path `/`), with the link as its fragment. A browser
    /// never sends a fragment, so the secret does not reach the relay.
    ///
    /// ```
    /// # use caucus_protocol::{identity::DeviceKeys, ids::SessionId, invite::Invite};
    /// let (mediator, relay) = (DeviceKeys::generate()?.fingerprint(), DeviceKeys::generate()?.fingerprint());
    /// let invite = Invite::new("wss://relay.example:7300".into(), relay, SessionId::random()?, mediator, 0)?;
    /// let web = invite.to_web_link();
    /// assert!(web.starts_with("https://relay.example:7300/#caucus:invite:v1:"));
    /// assert_eq!(Invite::from_link(&web)?, invite);
    /// # Ok::<(), caucus_protocol::Error>(())
    /// ```
    pub fn to_web_link(&self) -> String {
        let (scheme, rest) = match self.relay.split_once("://") {
            Some(("wss", rest)) => ("https", rest),
            Some((_, rest)) => ("http", rest),
            None => ("http", self.relay.as_str()),
        };
        // The relay's host and port, without any path or query of its own.
        let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        format!("{scheme}://{host}/#{}", self.to_link())
    }

    /// Parse a link made by [`Invite::to_link`], or the web address made by
    /// [`Invite::to_web_link`] (any address whose fragment is such a link).
    pub fn from_link(link: &str) -> Result<Self, Error> {
        let link = link.trim();
        let link = match link.split_once('#') {
            Some((_, fragment)) if !link.starts_with(LINK_PREFIX) => fragment,
            _ => link,
        };
        let encoded = link
            .trim()
            .strip_prefix(LINK_PREFIX)
            .ok_or(Error::InvalidInvite("not a caucus:invite:v1: link"))?;
        let bytes = crate::b64::decode(encoded).ok_or(Error::InvalidInvite("not base64url"))?;
        let invite = Self::from_bytes(&bytes)?;
        check_relay_url(&invite.relay)?;
        Ok(invite)
    }

    /// The admission token shown to the relay:
    /// `HKDF-Expand(secret, label "caucus/v1/admission-token" || session || invite id, 32)`.
    pub fn admission_token(&self) -> AdmissionToken {
        AdmissionToken(
            self.secret
                .expand(label::ADMISSION_TOKEN, &[&self.session.0, &self.id.0])
                .0,
        )
    }

    fn mac_key(&self) -> Secret32 {
        self.secret
            .expand(label::JOIN_MAC_KEY, &[&self.session.0, &self.id.0])
    }

    fn proof_input(&self, identity: &PublicIdentity) -> Vec<u8> {
        let mut w = Writer::new();
        self.session.encode(&mut w);
        self.id.encode(&mut w);
        identity.encode(&mut w);
        w.into_bytes()
    }

    /// As the joiner: a request to join carrying `identity` and its proof,
    /// `HMAC-SHA256(join MAC key, label "caucus/v1/join-proof" || session || invite id || identity)`.
    pub fn join_request(&self, identity: &PublicIdentity) -> JoinRequest {
        JoinRequest {
            session: self.session,
            invite: self.id,
            identity: identity.clone(),
            proof: self
                .mac_key()
                .mac(label::JOIN_PROOF, &[&self.proof_input(identity)]),
        }
    }

    /// As the mediator: check that `request` answers this invite, before it
    /// expires (`now` in seconds since the Unix epoch). Single use is the
    /// caller's to enforce, by remembering which invites it has admitted.
    pub fn verify_join(&self, request: &JoinRequest, now: u64) -> Result<(), Error> {
        if request.session != self.session || request.invite != self.id {
            return Err(Error::BadJoinProof);
        }
        if now > self.expires_at {
            return Err(Error::InviteExpired);
        }
        let input = self.proof_input(&request.identity);
        if self
            .mac_key()
            .verify_mac(label::JOIN_PROOF, &[&input], &request.proof)
        {
            Ok(())
        } else {
            Err(Error::BadJoinProof)
        }
    }
}

/// Whether two relay URLs name the same relay, as a person would read them:
/// the scheme and host in any case, a default port (80 for `ws://`, 443 for
/// `wss://`) written or not, a trailing `/` or not. An invite made against
/// `ws://Relay.example:80/` is for a client of `ws://relay.example`.
///
/// ```
/// use caucus_protocol::invite::same_relay;
/// assert!(same_relay("ws://127.0.0.1:7300/", "ws://127.0.0.1:7300"));
/// assert!(same_relay("wss://Relay.Example:443", "wss://relay.example/"));
/// assert!(!same_relay("ws://relay.example", "wss://relay.example"));
/// assert!(!same_relay("ws://127.0.0.1:7300", "ws://127.0.0.1:7301"));
/// ```
pub fn same_relay(a: &str, b: &str) -> bool {
    canonical_url(a) == canonical_url(b)
}

/// A relay URL in the one form that [`same_relay`] compares and the auth
/// signature covers ([`crate::auth::AuthTarget`]): surrounding whitespace
/// removed; the scheme (before `://`) and the authority (up to the first
/// `/`, `?` or `#`) in ASCII lower case; a port of `:80` after `ws` or
/// `:443` after `wss` removed; the rest (path, query, fragment) as written,
/// less any trailing `/`.
///
/// ```
/// use caucus_protocol::invite::canonical_url;
/// assert_eq!(canonical_url(" WSS://Relay.Example:443/ "), "wss://relay.example");
/// assert_eq!(canonical_url("ws://127.0.0.1:7300/Caucus/"), "ws://127.0.0.1:7300/Caucus");
/// ```
pub fn canonical_url(url: &str) -> String {
    let (scheme, rest) = url.trim().split_once("://").unwrap_or(("", url.trim()));
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest
        .find(['/', '?', '#'])
        .map_or((rest, ""), |at| rest.split_at(at));
    let authority = authority.to_ascii_lowercase();
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("ws", Some((host, "80"))) | ("wss", Some((host, "443"))) => host.to_owned(),
        _ => authority,
    };
    format!("{scheme}://{authority}{}", path.trim_end_matches('/'))
}

fn check_relay_url(url: &str) -> Result<(), Error> {
    if url.starts_with("ws://") || url.starts_with("wss://") {
        Ok(())
    } else {
        Err(Error::InvalidInvite("relay URL is not ws:// or wss://"))
    }
}

impl fmt::Debug for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invite")
            .field("relay", &self.relay)
            .field("relay_key", &self.relay_key)
            .field("session", &self.session)
            .field("id", &self.id)
            .field("mediator", &self.mediator)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Canonical for Invite {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.relay);
        self.relay_key.encode(w);
        self.session.encode(w);
        self.id.encode(w);
        w.fixed(self.secret.expose());
        self.mediator.encode(w);
        w.u64(self.expires_at);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let relay = r.string()?;
        if relay.len() > MAX_URL_LEN {
            return Err(DecodeError::Invalid("relay URL too long"));
        }
        Ok(Self {
            relay,
            relay_key: Fingerprint::decode(r)?,
            session: SessionId::decode(r)?,
            id: InviteId::decode(r)?,
            secret: Secret32(r.array()?),
            mediator: Fingerprint::decode(r)?,
            expires_at: r.u64()?,
        })
    }
}

/// The token a joiner shows the relay to enter the waiting room.
#[derive(Clone, PartialEq, Eq)]
pub struct AdmissionToken(pub [u8; 32]);

crate::macros::fixed_bytes!(AdmissionToken);

impl AdmissionToken {
    /// What the relay stores and compares:
    /// `SHA-256(label "caucus/v1/admission-token-hash" || token)`.
    pub fn hash(&self) -> Digest {
        Digest::of(label::ADMISSION_TOKEN_HASH, &[&self.0])
    }
}

impl fmt::Debug for AdmissionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdmissionToken(..)")
    }
}

/// A joiner's request, carried by the relay to the mediator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The session.
    pub session: SessionId,
    /// The invite answered.
    pub invite: InviteId,
    /// The joiner's public identity.
    pub identity: PublicIdentity,
    /// The MAC proving the identity came from the link's holder.
    pub proof: [u8; 32],
}

impl Canonical for JoinRequest {
    fn encode(&self, w: &mut Writer) {
        self.session.encode(w);
        self.invite.encode(w);
        self.identity.encode(w);
        w.fixed(&self.proof);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            session: SessionId::decode(r)?,
            invite: InviteId::decode(r)?,
            identity: PublicIdentity::decode(r)?,
            proof: r.array()?,
        })
    }
}
