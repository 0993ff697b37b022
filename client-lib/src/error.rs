//! The client library's error type.

use caucus_protocol::wire::ErrorCode;

/// What can go wrong in the client library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A protocol check failed (a signature, a roster, a key, an invite).
    #[error(transparent)]
    Protocol(#[from] caucus_protocol::Error),
    /// The relay refused a request.
    #[error("relay refused ({code:?}): {message}")]
    Refused {
        /// The relay's stable code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The relay could not be reached, or the connection broke.
    #[error("connection: {0}")]
    Connection(String),
    /// Reading or writing the state directory failed.
    #[error("state directory: {0}")]
    Io(#[from] std::io::Error),
    /// A state file did not parse.
    #[error("state file corrupt: {0}")]
    Corrupt(String),
    /// The session is not known to this client.
    #[error("no such session in this client's state")]
    UnknownSession,
    /// The request does not fit this participant or session; the string says why.
    #[error("{0}")]
    Usage(&'static str),
    /// Nothing came in time.
    #[error("timed out waiting for the relay")]
    Timeout,
}
