//! # caucus-client-core
//!
//! The Caucus client as one state machine with no IO: no sockets, no
//! clock, no files, no async runtime. It is the whole client — every
//! verification, every decision (who is admitted, whether a gate is open,
//! when the agreement is concluded, whether a consent is there), every
//! roster change — and it compiles to WebAssembly as well as natively. A
//! driver around it only moves bytes: the native one in `caucus-client`
//! (tokio, websockets, files), the browser's in `web/`.
//!
//! The driver's loop, as quinn-proto and matrix-sdk-crypto's `OlmMachine`
//! have it:
//!
//! 1. give the machine what arrives: [`Machine::connected`],
//!    [`Machine::handle_frame`] for each text frame, [`Machine::disconnected`],
//!    [`Machine::handle_timeout`] when [`Machine::poll_timeout`] says; and
//!    what the person asks ([`Machine::send`], [`Machine::forward`], …, each
//!    giving an [`OpId`]);
//! 2. save [`Machine::take_changes`] — the machine sends nothing while
//!    changes are unsaved, so a sealed message is on disk before it leaves;
//! 3. send every frame from [`Machine::poll_transmit`];
//! 4. show every [`Event`] from [`Machine::poll_event`], and hand each
//!    finished operation from [`Machine::poll_done`] to whoever asked;
//! 5. for documents: read the file's bytes each [`ReadRequest`] from
//!    [`Machine::poll_read`] names and give them to
//!    [`Machine::provide_chunk`]; write each [`DownloadedChunk`] from
//!    [`Machine::poll_chunk`] aside (it is the document only once its
//!    operation ends well); then go round again (both make frames to send).
//!
//! Every input takes the time, as a [`Timestamp`].
//!
//! ```
//! use caucus_client_core::{Machine, Timestamp};
//! use caucus_protocol::identity::DeviceKeys;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = Timestamp::from_millis(1_800_000_000_000);
//! let mut mediator = Machine::new(DeviceKeys::generate()?, "ws://127.0.0.1:7300");
//!
//! // Creating a session is decided and signed here, at once…
//! let (session, _op) = mediator.create_session("Ms Mediator", &["Claimant", "Defendant"], now)?;
//! assert_eq!(mediator.parties(&session)?.len(), 2);
//!
//! // …and saved before anything can go out; with no connection yet,
//! // nothing does.
//! let changes = mediator.take_changes()?;
//! assert!(changes.sessions[&session].snapshot.is_some());
//! assert_eq!(mediator.poll_transmit(), None);
//!
//! // Connected, the relay's challenge is answered, and once the relay
//! // accepts this device the requests flow.
//! mediator.connected(now);
//! # let relay = DeviceKeys::generate()?;
//! # let challenge = serde_json::json!({"type": "challenge", "v": 1,
//! #     "nonce": caucus_protocol::b64::encode(&[7u8; 32]),
//! #     "relay": caucus_protocol::b64::encode(&caucus_protocol::codec::Canonical::to_bytes(relay.public())),
//! #     "rotations": []});
//! mediator.handle_frame(&challenge.to_string(), now);
//! // The relay's key, pinned for the session on first use, is saved first.
//! mediator.take_changes()?;
//! let auth = mediator.poll_transmit().expect("the answer to the challenge");
//! assert!(auth.contains(r#""type":"auth""#));
//! mediator.handle_frame(r#"{"type":"ok","v":1,"id":0}"#, now);
//! let create = mediator.poll_transmit().expect("the new session");
//! assert!(create.contains(r#""type":"create_session""#));
//! # Ok(()) }
//! ```

mod commands;
mod error;
mod event;
mod machine;
mod offers;
mod ops;
pub mod state;
mod transfer;

pub use commands::Admission;
pub use error::ClientError;
pub use event::{DocumentInfo, Event, Warning};
pub use machine::{KEY_WAIT_MS, Knock, Link, Machine, REPLY_TIMEOUT_MS, ReadFrame, Timestamp};
pub use offers::{Direction, OfferEntry};
pub use ops::{OpId, Outcome, Sent};
pub use state::{Changes, InviteEntry, Kept, Membership, SessionChanges};
pub use transfer::{
    DocumentEntry, DocumentError, DocumentReader, DownloadedChunk, NewDocument, ReadRequest,
    TransferInfo, TransferKind, WINDOW,
};
