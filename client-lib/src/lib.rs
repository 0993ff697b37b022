//! # caucus-client
//!
//! The native Caucus client: the client machine of `caucus-client-core`
//! (where every check and decision is) driven by tokio — a device identity
//! and its sessions kept in a state directory, a connection to the relay
//! that reconnects and catches up by itself, and the mediator's and the
//! parties' operations as `async` methods. Every roster, key and message
//! from the relay is verified before it becomes an [`Event`]; the relay is
//! untrusted.
//!
//! A whole exchange, against a relay started here for the example:
//!
//! ```
//! use caucus_client::{Admission, Client, Event, StateDir};
//! use caucus_protocol::content::Sharing;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let data = tempfile::tempdir()?;
//! # let data_dir = data.path().display().to_string();
//! # let running = caucus_server::Server::spawn(&["--listen", "127.0.0.1:0", "--data-dir", &data_dir]).await?;
//! # let relay = running.url().to_string();
//! # let (mediator_state, claimant_state) = (tempfile::tempdir()?, tempfile::tempdir()?);
//! // The mediator creates a session with two parties and invites a claimant.
//! let mut mediator = Client::open(StateDir::open(mediator_state.path())?, &relay).await?;
//! let (session, parties) = mediator.create_session("The mediator", &["Claimant", "Defendant"]).await?;
//! let link = mediator
//!     .invite(&session, &parties[0], "A. Claimant", caucus_client::now() + 86_400, Admission::ByMediator)
//!     .await?;
//!
//! // The claimant joins from the link and waits; the mediator sees them in
//! // the waiting room, compares safety codes with them, and admits them.
//! let (mut claimant, _) = Client::join(StateDir::open(claimant_state.path())?, &link).await?;
//! let joiner = loop {
//!     if let Some(Event::Knocking { member, name, .. }) = mediator.next_event().await {
//!         assert_eq!(name, "A. Claimant");
//!         break member;
//!     }
//! };
//! assert_eq!(joiner.safety_code(), claimant.fingerprint().safety_code());
//! mediator.admit(&session, &joiner)?;
//! while !matches!(claimant.next_event().await, Some(Event::Joined { .. })) {}
//! claimant.sync(&session).await?;
//!
//! // The claimant writes to the mediator in confidence.
//! let room = claimant.my_room(&session)?;
//! claimant.send(&session, &room, "Our bottom line is...", Sharing::MediatorOnly).await?;
//! let heard = loop {
//!     if let Some(Event::Message { text, .. }) = mediator.next_event().await {
//!         break text;
//!     }
//! };
//! assert_eq!(heard, "Our bottom line is...");
//! # Ok(()) }
//! ```

mod client;
mod documents;
mod store;
mod transport;

pub use caucus_client_core::{
    Admission, ClientError, Direction, DocumentEntry, DocumentError, DocumentInfo, Event,
    Membership, OfferEntry, Sent, TransferInfo, TransferKind, Warning,
};
pub use client::{Client, now};
pub use store::StateDir;
pub use transport::Tls;
