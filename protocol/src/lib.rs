//! # caucus-protocol
//!
//! Everything that crosses the wire in Caucus, and every cryptographic step,
//! with no networking, no clock and no async runtime: the relay
//! (`caucus-server`) and the client library (`caucus-client`) are thin shells
//! that move bytes and call this crate. `docs/protocol.md` in the repository
//! specifies the same thing byte by byte.
//!
//! | module | holds |
//! | --- | --- |
//! | [`codec`] | the canonical byte encoding of everything signed or authenticated |
//! | [`identity`] | device keys, public identities, fingerprints, safety codes |
//! | [`hpke`] | RFC 9180 HPKE, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20Poly1305 |
//! | [`roster`] | the mediator-signed membership of a session |
//! | [`keys`] | room keys per epoch, sealed to members in signed key bundles |
//! | [`content`] | what is inside a message: text, forwards, receipts, consents, events |
//! | [`document`] | files: chunks sealed as age's payload, and the reference an envelope carries |
//! | [`envelope`] | a sealed, signed message and its header |
//! | [`history`] | the accepted rosters and the rules binding rosters, bundles and envelopes to them |
//! | [`padding`] | the size buckets every sealed plaintext is padded to |
//! | [`session`] | a client's verified view of one session: where everything is checked |
//! | [`relay`] | the relay's acceptance rules, from the same checks |
//! | [`invite`] | invite links, admission tokens and join proofs |
//! | [`wire`] | the JSON frames between clients and the relay |
//! | [`offer`] | settlement offers and counter-offers, and their carried copies |
//! | [`agreement`] | the signed outcome, verifiable offline |
//! | [`deletion`] | the relay's signed statement of what it erased at close |
//! | [`auth`] | the device's answer to the relay's challenge; the relay's pinned identity and its rotations |
//!
//! ## A whole exchange
//!
//! A mediator creates a session with one party, invites its member, admits
//! them, hands out the private room's key and exchanges a message:
//!
//! ```
//! use caucus_protocol::builder::RosterBuilder;
//! use caucus_protocol::content::{Content, Sharing};
//! use caucus_protocol::identity::DeviceKeys;
//! use caucus_protocol::ids::SessionId;
//! use caucus_protocol::invite::Invite;
//! use caucus_protocol::roster::Role;
//! use caucus_protocol::session::SessionView;
//!
//! # fn main() -> Result<(), caucus_protocol::Error> {
//! let mediator = DeviceKeys::generate()?;
//! let claimant = DeviceKeys::generate()?;
//! let session = SessionId::random()?;
//!
//! // The mediator drafts the roster: one party, its private room, the joint room.
//! let mut builder = RosterBuilder::new(session, &mediator, "The mediator")?;
//! let party = builder.add_party("Claimant")?;
//! let mut mediator_view = SessionView::new(session, mediator.fingerprint());
//! let (first, _keys) = builder.sign(&mediator, &mediator_view)?;
//! mediator_view.accept_roster(first.clone())?;
//!
//! // An invite link; the joiner proves its identity with the link's secret.
//! let relay = DeviceKeys::generate()?.fingerprint(); // the relay's identity, pinned
//! let invite = Invite::new("ws://127.0.0.1:7300".into(), relay, session, mediator.fingerprint(), 2_000_000_000)?;
//! let received = Invite::from_link(&invite.to_link())?;
//! let request = received.join_request(claimant.public());
//! invite.verify_join(&request, 1_900_000_000)?; // `now`, passed in
//!
//! // The mediator admits the claimant: the next roster, new epochs, new keys.
//! builder.add_member(&request.identity, Role::PartyMember, Some(party), "A. Claimant")?;
//! let (roster, keys) = builder.sign(&mediator, &mediator_view)?;
//! mediator_view.accept_roster(roster.clone())?;
//! let bundles = keys
//!     .iter()
//!     .map(|key| mediator_view.seal_key_bundle(&mediator, key))
//!     .collect::<Result<Vec<_>, _>>()?;
//!
//! // The claimant pins the mediator from the link and checks everything:
//! // every roster version in turn (the relay serves them all), then its keys.
//! let mut claimant_view = SessionView::new(session, received.mediator);
//! claimant_view.accept_roster(first)?;
//! let room = claimant_view.accept_roster(roster)?.private_room(&party).map(|r| r.id);
//! for bundle in &bundles {
//!     claimant_view.open_key_bundle(&claimant, bundle)?;
//! }
//!
//! let words = Content::Text { sharing: Sharing::MediatorOnly, body: "My bottom line is...".into() };
//! let envelope = claimant_view.seal(&claimant, &room.unwrap(), &words)?;
//! let opened = mediator_view.open(&envelope)?;
//! assert_eq!(opened.content, words);
//! assert_eq!(opened.header.sender, claimant.fingerprint());
//! # Ok(())
//! # }
//! ```

pub mod agreement;
pub mod auth;
pub mod b64;
pub mod builder;
pub mod codec;
pub mod content;
pub mod crypto;
pub mod deletion;
pub mod document;
pub mod envelope;
mod error;
pub mod history;
pub mod hpke;
pub mod identity;
pub mod ids;
pub mod invite;
pub mod keys;
mod macros;
pub mod offer;
pub mod padding;
pub mod relay;
pub mod roster;
pub mod session;
pub mod signed;
pub mod wire;

pub use error::Error;
