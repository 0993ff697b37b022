//! # caucus-client
//!
//! The Caucus client library: a device identity kept in a state directory,
//! a connection to the relay that reconnects and catches up by itself, and
//! the mediator's and the parties' operations. Every roster, key and message
//! from the relay is verified with `caucus-protocol` before it becomes an
//! [`Event`]; the relay is untrusted.
//!
//! ```no_run
//! use caucus_client::{Client, Event, StateDir};
//! use caucus_protocol::content::Sharing;
//!
//! # async fn demo() -> Result<(), caucus_client::ClientError> {
//! // The mediator creates a session with two parties and invites a claimant.
//! let mediator = Client::open(StateDir::open("mediator-state")?, "ws://127.0.0.1:7300").await?;
//! let (session, parties) = mediator.create_session("The mediator", &["Claimant", "Defendant"]).await?;
//! let link = mediator.invite(&session, &parties[0], "A. Claimant", caucus_client::now() + 86_400).await?;
//!
//! // The claimant joins from the link (the mediator's client admits them
//! // once their proof verifies) and writes to the mediator in confidence.
//! let (mut claimant, session) = Client::join(StateDir::open("claimant-state")?, &link).await?;
//! while let Some(event) = claimant.next_event().await {
//!     if let Event::Joined { .. } = event { break; }
//! }
//! let room = claimant.my_room(&session)?;
//! claimant.send(&session, &room, "Our bottom line is...", Sharing::MediatorOnly).await?;
//! # Ok(()) }
//! ```

mod client;
mod error;
mod event;
mod store;
mod transport;

pub use client::{Client, Sent, now};
pub use error::ClientError;
pub use event::{Event, Warning};
pub use store::StateDir;
