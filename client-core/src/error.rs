//! The client's error type: one enum, each variant documented, the relay's
//! refusals carried with their stable wire code.

use caucus_protocol::content::Step;
use caucus_protocol::wire::ErrorCode;

/// What can go wrong in a Caucus client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A protocol check failed (a signature, a roster, a key, an invite).
    #[error(transparent)]
    Protocol(#[from] caucus_protocol::Error),
    /// The relay refused a request; nothing was changed.
    #[error("{}", refused(*.code, .message))]
    Refused {
        /// The relay's stable code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The relay sent a frame of a protocol version this client does not
    /// speak; nothing more is sent to it.
    #[error(
        "the relay speaks protocol version {0}; this client speaks {ours}",
        ours = caucus_protocol::envelope::PROTOCOL_VERSION
    )]
    RelayVersion(u64),
    /// The relay could not be reached, or the connection broke.
    #[error("connection: {0}")]
    Connection(String),
    /// TLS refused the relay (its certificate, or the handshake): trying
    /// again with the same settings fails the same way. The string says why,
    /// for a person.
    #[error("{0}")]
    Tls(String),
    /// A certificate authority's file did not read or parse.
    #[error("certificate authority {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Reading or writing this device's saved state failed.
    #[error("state directory: {0}")]
    Io(#[from] std::io::Error),
    /// Saved state did not parse (or did not decrypt).
    #[error("state file corrupt: {0}")]
    Corrupt(String),
    /// Another process holds the state directory.
    #[error("another process is using this state directory")]
    Busy,
    /// The state directory is encrypted, and was opened without a passphrase.
    #[error(
        "this state directory is encrypted: set CAUCUS_PASSPHRASE or run from a terminal to be asked"
    )]
    PassphraseNeeded,
    /// The passphrase does not open this state directory.
    #[error("wrong passphrase for this state directory")]
    WrongPassphrase,
    /// The session is not known to this client.
    #[error("no such session in this client's state")]
    UnknownSession,
    /// The request does not fit this participant or session; the string says why.
    #[error("{0}")]
    Usage(&'static str),
    /// A step of the process needs every party's agreement first.
    #[error("{}", not_agreed(*.step, .parties))]
    NotAgreed {
        /// The step.
        step: Step,
        /// The labels of the parties that have not agreed to it yet.
        parties: Vec<String>,
    },
    /// An agreement cannot be countersigned before every signatory signs.
    #[error(
        "{} {} still to sign the agreement",
        names(.signatories),
        if .signatories.len() == 1 { "has" } else { "have" }
    )]
    Unsigned {
        /// The names of the signatories who have not signed yet.
        signatories: Vec<String>,
    },
    /// A document was refused: too large to send, or a download that is
    /// not the document described.
    #[error(transparent)]
    Document(#[from] crate::transfer::DocumentError),
    /// The transfer was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// Nothing came in time.
    #[error("timed out waiting for the relay")]
    Timeout,
}

/// A refusal as a person should read it: the relay's words, or for a
/// relay that cannot store anything just now, what that means to them.
fn refused(code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::Unavailable => "the relay can't save anything just now, so nothing was done. \
             Nothing was lost — try again in a minute"
            .to_owned(),
        _ => format!("the relay refused: {message}"),
    }
}

fn not_agreed(step: Step, parties: &[String]) -> String {
    let what = match step {
        Step::Continue => "to continue after the individual meetings",
        Step::JointMeeting => "to a joint meeting",
    };
    let verb = if parties.len() == 1 { "has" } else { "have" };
    format!(
        "every party must first agree {what}: {} {verb} not agreed yet",
        names(parties)
    )
}

/// Names as a sentence lists them: "A", "A and B", "A, B and C".
fn names(names: &[String]) -> String {
    match names {
        [] => "everyone".to_owned(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_that_cannot_store_anything_is_told_in_plain_words_and_others_in_its_own() {
        let unavailable = ClientError::Refused {
            code: ErrorCode::Unavailable,
            message: "store unavailable".into(),
        };
        assert_eq!(
            unavailable.to_string(),
            "the relay can't save anything just now, so nothing was done. \
             Nothing was lost — try again in a minute"
        );
        let other = ClientError::Refused {
            code: ErrorCode::Forbidden,
            message: "not the lead mediator".into(),
        };
        assert_eq!(
            other.to_string(),
            "the relay refused: not the lead mediator"
        );
    }

    #[test]
    fn a_gate_refusal_names_the_parties_still_missing() {
        let e = ClientError::NotAgreed {
            step: Step::JointMeeting,
            parties: vec!["Dr Okafor".into(), "Dr Shah".into(), "Dr Lee".into()],
        };
        assert_eq!(
            e.to_string(),
            "every party must first agree to a joint meeting: Dr Okafor, Dr Shah and Dr Lee have not agreed yet"
        );
        let e = ClientError::NotAgreed {
            step: Step::Continue,
            parties: vec!["Claimant".into()],
        };
        assert_eq!(
            e.to_string(),
            "every party must first agree to continue after the individual meetings: Claimant has not agreed yet"
        );
    }
}
