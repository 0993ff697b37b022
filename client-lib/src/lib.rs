//! # caucus-client
//!
//! The Caucus client library: a device identity kept in a state directory,
//! a connection to the relay that reconnects and catches up by itself, and
//! the mediator's and the parties' operations. Every roster, key and message
//! from the relay is verified with `caucus-protocol` before it becomes an
//! [`Event`]; the relay is untrusted.
//!
//! A whole exchange, against a relay started here for the example:
//!
//! ```
//! use caucus_client::{Client, Event, StateDir};
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
//! let link = mediator.invite(&session, &parties[0], "A. Claimant", caucus_client::now() + 86_400).await?;
//!
//! // The claimant joins from the link; the mediator's client admits them
//! // once their proof verifies.
//! let (mut claimant, _) = Client::join(StateDir::open(claimant_state.path())?, &link).await?;
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
mod error;
mod event;
mod offers;
mod store;
mod transport;

pub use client::{Client, Sent, now};
pub use error::ClientError;
pub use event::{Event, Warning};
pub use offers::{Direction, OfferEntry};
pub use store::StateDir;
