//! `caucus`: the Caucus command-line client. Every workflow is scriptable:
//! `--json` prints one JSON object per line (`docs/cli-json.md`).
//!
//! One process holds a state directory at a time. While `caucus daemon` or
//! `caucus listen --follow` runs, it serves the others over a local socket
//! in the state directory (`daemon.sock`, JSON-RPC 2.0, one object per
//! line); every other command asks it when it runs and works alone when it
//! does not. See README.md for a walk through each command.

mod commands;
mod demo;
mod host;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use caucus_client::ClientError;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "caucus",
    version,
    about = "The Caucus client: remote shuttle mediation, end-to-end encrypted"
)]
struct Cli {
    /// This device's state directory (identity, sessions).
    #[arg(
        long,
        env = "CAUCUS_STATE",
        default_value = "caucus-state",
        global = true
    )]
    state: PathBuf,
    /// Print one JSON object per line.
    #[arg(long, global = true)]
    json: bool,
    /// A certificate authority (PEM) to trust for a `wss://` relay besides
    /// the system's: a relay with a private certificate.
    #[arg(long, env = "CAUCUS_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// A command. As JSON-RPC over the daemon's socket, the method is the
/// command's name in kebab case and the params its options by their long
/// names in snake case (`docs/cli-json.md`).
#[derive(Subcommand, Serialize, Deserialize, Debug, Clone)]
#[serde(tag = "method", content = "params", rename_all = "kebab-case")]
pub(crate) enum Command {
    /// Create this device's identity (if there is none) and show it.
    Init,
    /// Show this device's fingerprint and safety code.
    Whoami,
    /// Hold this state directory and its connection to the relay, and serve
    /// the other `caucus` commands over a local socket until stopped.
    Daemon {
        /// The relay's base URL.
        #[arg(long, env = "CAUCUS_SERVER")]
        server: String,
    },
    /// Sessions (as the mediator).
    Session {
        #[command(subcommand)]
        #[serde(flatten)]
        command: SessionCommand,
    },
    /// Make an invite link for one person joining a party, or a co-mediator
    /// (mediator). They wait in the waiting room until you admit them.
    Invite {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The party: its label or id.
        #[arg(long, required_unless_present = "co_mediator")]
        party: Option<String>,
        /// Invite a co-mediator instead of a party member.
        #[arg(long, conflicts_with = "party")]
        #[serde(default)]
        co_mediator: bool,
        /// The invitee's name, shown to the session's members.
        #[arg(long)]
        name: String,
        /// Hours until the link expires.
        #[arg(long, default_value_t = 72)]
        #[serde(default = "valid_hours")]
        valid_hours: u64,
        /// Let them in as soon as their link checks out, without the waiting
        /// room (for a script, or when you already know who holds the link).
        #[arg(long)]
        #[serde(default)]
        auto_admit: bool,
    },
    /// Who is in the waiting room, with the safety code to compare with each
    /// (mediator).
    Waiting {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
    },
    /// Let someone in from the waiting room, after comparing safety codes
    /// with them (mediator).
    Admit {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// Their name, safety code or device fingerprint.
        who: String,
    },
    /// Turn someone in the waiting room away (mediator).
    Decline {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// Their name, safety code or device fingerprint.
        who: String,
    },
    /// Join a session from an invite link and wait to be let in.
    Join {
        /// The invite link.
        link: String,
        /// Seconds to wait for the mediator.
        #[arg(long, default_value_t = 600)]
        #[serde(default = "wait")]
        wait: u64,
    },
    /// Send a message.
    Send {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The room: `mine` (your party's private room), `joint`, a party's
        /// label, or a side room's id.
        #[arg(long, default_value = "mine")]
        #[serde(default = "mine")]
        room: String,
        /// Let the mediator share it (the default in a private room is
        /// mediator only).
        #[arg(long)]
        #[serde(default)]
        may_share: bool,
        /// The message.
        text: String,
    },
    /// Print what has arrived since the last `listen` (and, with --follow,
    /// what arrives, serving the other commands meanwhile).
    Listen {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// Keep listening.
        #[arg(long)]
        #[serde(default)]
        follow: bool,
    },
    /// Carry a message or an offer to another room (mediator).
    Forward {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The message (its id as `listen` prints it; ids may begin with `-`).
        #[arg(long, allow_hyphen_values = true)]
        message: String,
        /// Where to: `joint`, a party's label, or a side room's id.
        #[arg(long)]
        to: String,
        /// Carry a message in these words instead of verbatim.
        #[arg(long)]
        reframe: Option<String>,
        /// Restate an offer as you carry it: these options replace the
        /// offer's (the rest are kept).
        #[command(flatten)]
        #[serde(flatten)]
        restate: OfferTerms,
    },
    /// Let the mediator share one of your messages.
    Consent {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The message (its id as `listen` prints it; ids may begin with `-`).
        #[arg(long, allow_hyphen_values = true)]
        message: String,
    },
    /// Agree, for your party, to continue after the individual meetings or
    /// to a joint meeting.
    Agree {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// continue or joint-meeting.
        step: StepArg,
    },
    /// The parties that have not yet agreed to a step (mediator).
    NotAgreed {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// continue or joint-meeting.
        step: StepArg,
    },
    /// Move the mediation to another phase (mediator).
    Phase {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// individual-meetings, negotiation or agreement.
        phase: PhaseArg,
    },
    /// Withdraw your party from the mediation.
    Withdraw {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
    },
    /// Let a party that withdrew back into the mediation (mediator).
    Readmit {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The party: its label or id.
        party: String,
    },
    /// Remove a member from the session: they can read nothing new
    /// (mediator).
    Remove {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// Their name, safety code or device fingerprint.
        who: String,
    },
    /// Tell the mediator your status.
    Status {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// ready, needs-mediator or on-break.
        status: StatusArg,
    },
    /// Say which room you are with, so that its party sees "the mediator is
    /// with you" (mediator).
    Location {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The room: `joint`, a party's label, a side room's id, or `away`.
        room: String,
        /// Tell the other parties which room, not only that you are busy.
        #[arg(long)]
        #[serde(default)]
        disclose: bool,
    },
    /// Open or close the joint room (mediator).
    Joint {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// open or close.
        action: OpenClose,
    },
    /// Side rooms for some members only, the lawyers say (mediator).
    SideRoom {
        #[command(subcommand)]
        #[serde(flatten)]
        command: SideRoomCommand,
    },
    /// The session's parties, and whether each is still in the mediation.
    Parties {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
    },
    /// The session's members: name, role, party and safety code.
    Members {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
    },
    /// The session's rooms and who is in each.
    Rooms {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
    },
    /// Record a settlement offer or counter-offer for your party (or, as the
    /// mediator, for a party with --for).
    Offer {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        #[command(flatten)]
        #[serde(flatten)]
        terms: OfferTerms,
        /// Answer an offer you received (its message id): a counter-offer.
        #[arg(long, allow_hyphen_values = true)]
        counter_to: Option<String>,
        /// (Mediator) record it for this party, at its request: its label
        /// or id. The party's log shows it as recorded by the mediator. To
        /// restate another party's offer, carry it (`forward` with --amount,
        /// --currency, --terms or --condition) instead.
        #[arg(long = "for")]
        #[serde(rename = "for")]
        for_party: Option<String>,
    },
    /// The offers log: what your side made and received, in order.
    Offers {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
    },
    /// Close the session for everyone (mediator). Prints the relay's signed
    /// statement of what it erased, if it erased at once.
    Close {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// Also erase this device's copy (as `caucus erase`).
        #[arg(long)]
        #[serde(default)]
        erase: bool,
    },
    /// Show the relay's signed statement of what it erased of a closed
    /// session (mediator).
    DeletionStatement {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
    },
    /// Delete this device's copy of a session: its room keys and messages.
    /// The signed agreement and the relay's deletion statement are kept.
    Erase {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
    },
    /// The agreement: propose, sign, countersign, export, verify.
    Agreement {
        #[command(subcommand)]
        #[serde(flatten)]
        command: AgreementCommand,
    },
    /// Documents: send, list, get and carry encrypted files.
    File {
        #[command(subcommand)]
        #[serde(flatten)]
        command: FileCommand,
    },
    /// Play a whole shuttle mediation against a running relay and show what
    /// each participant saw.
    Demo {
        /// The relay's base URL, e.g. ws://127.0.0.1:7300.
        #[arg(long, env = "CAUCUS_SERVER")]
        server: String,
    },
}

#[derive(Subcommand, Serialize, Deserialize, Debug, Clone)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub(crate) enum AgreementCommand {
    /// Propose the agreement for every party to read and sign (mediator).
    Propose {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// Its title.
        #[arg(long)]
        title: String,
        /// The exact terms (the signatures cover these words).
        #[arg(long)]
        terms: String,
        /// A reality-testing question for the parties (repeat for each).
        #[arg(long = "question")]
        #[serde(default)]
        questions: Vec<String>,
        /// Attach a document this device holds: the message that brought it,
        /// as `listen` prints it (repeat for each; the signatures cover each
        /// file's SHA-256).
        #[arg(long = "attach", allow_hyphen_values = true)]
        #[serde(default)]
        attach: Vec<String>,
    },
    /// Sign the proposed agreement, exactly as drafted (read it first: `caucus
    /// listen` shows it).
    Sign {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The agreement's id (default: the newest proposed).
        #[arg(long, allow_hyphen_values = true)]
        agreement: Option<String>,
    },
    /// Countersign the agreement once every party has signed, and give each
    /// member the concluded copy (mediator).
    Countersign {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The agreement's id (default: the newest proposed).
        #[arg(long, allow_hyphen_values = true)]
        agreement: Option<String>,
    },
    /// Write this device's copy of the concluded agreement: Markdown (a
    /// readable document carrying the signatures) or JSON.
    Export {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// md or json.
        #[arg(long, default_value = "md")]
        #[serde(default)]
        format: ExportFormat,
    },
    /// Check a copy (Markdown or JSON export, or the bare signed bytes in
    /// base64url) with no relay: who signed what; a changed byte, a changed
    /// word in the readable text or a missing signature fails.
    Verify {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Serialize, Deserialize, Debug, Clone)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub(crate) enum FileCommand {
    /// Add a file to a room as a document, encrypted (at most 50 MB). It is
    /// for the mediator only unless --may-share; an interrupted send
    /// resumes when the same file is sent again.
    Send {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The file.
        path: PathBuf,
        /// What people see it called (default: the file's name).
        #[arg(long)]
        title: Option<String>,
        /// The room: `mine` (your party's private room), `joint`, a party's
        /// label, or a side room's id.
        #[arg(long, default_value = "mine")]
        #[serde(default = "mine")]
        room: String,
        /// Let the mediator share it (the default is mediator only).
        #[arg(long)]
        #[serde(default)]
        may_share: bool,
    },
    /// Save a document: downloaded (or from this device's copy), every
    /// chunk checked and the whole file's SHA-256 compared before it is
    /// written.
    Get {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The document's message id (as `file list` prints it; ids may
        /// begin with `-`).
        #[arg(allow_hyphen_values = true)]
        message: String,
        /// Where to save it: a file, or a directory to save it in under its
        /// own name (default: this directory), where an existing file is
        /// not replaced.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The documents this device can see: title, size, type, sender, room.
    List {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
    },
    /// Carry a document to another room (mediator): verbatim, or with --own
    /// a file of your own standing for it (a redacted copy, a summary).
    Carry {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The document's message id (ids may begin with `-`).
        #[arg(allow_hyphen_values = true)]
        message: String,
        /// Where to: `joint`, a party's label, or a side room's id.
        #[arg(long)]
        to: String,
        /// Carry this file instead of the original.
        #[arg(long)]
        own: Option<PathBuf>,
        /// The title of the --own file (default: its file name).
        #[arg(long, requires = "own")]
        title: Option<String>,
    },
}

impl Command {
    /// Paths made absolute here, where they were given: the command may
    /// run in a daemon started in another directory.
    fn with_absolute_paths(mut self) -> std::io::Result<Self> {
        if let Self::File { command } = &mut self {
            let path = match command {
                FileCommand::Send { path, .. } => Some(path),
                // Saved here by default, not where a daemon runs.
                FileCommand::Get { out, .. } => Some(out.get_or_insert_with(|| ".".into())),
                FileCommand::Carry { own, .. } => own.as_mut(),
                FileCommand::List { .. } => None,
            };
            if let Some(path) = path {
                *path = std::path::absolute(&*path)?;
            }
        }
        Ok(self)
    }
}

#[derive(Subcommand, Serialize, Deserialize, Debug, Clone)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub(crate) enum SessionCommand {
    /// Create a session with named parties; you are its mediator.
    Create {
        /// The relay's base URL.
        #[arg(long, env = "CAUCUS_SERVER")]
        server: String,
        /// Your name, as the members see it.
        #[arg(long, default_value = "Mediator")]
        #[serde(default = "mediator")]
        name: String,
        /// A party's label (repeat for each party).
        #[arg(long = "party", required = true)]
        parties: Vec<String>,
    },
}

#[derive(Subcommand, Serialize, Deserialize, Debug, Clone)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub(crate) enum SideRoomCommand {
    /// Open a side room for some members (the mediators are always in it).
    Open {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// A member: name, safety code or device (repeat for each).
        #[arg(long = "member", required = true)]
        members: Vec<String>,
    },
    /// Close a side room: no one can post in it any more.
    Close {
        #[command(flatten)]
        #[serde(flatten)]
        at: At,
        /// The room's id, as `caucus rooms` prints it.
        #[arg(allow_hyphen_values = true)]
        room: String,
    },
}

/// Which relay and session a command is about.
#[derive(Args, Serialize, Deserialize, Debug, Clone)]
pub(crate) struct At {
    /// The relay's base URL.
    #[arg(long, env = "CAUCUS_SERVER")]
    pub server: String,
    /// The session id (ids may begin with `-`).
    #[arg(long, env = "CAUCUS_SESSION", allow_hyphen_values = true)]
    pub session: String,
}

/// An offer's terms as options.
#[derive(Args, Serialize, Deserialize, Debug, Clone, Default)]
pub(crate) struct OfferTerms {
    /// The sum, e.g. 250000.00 (at most as many decimals as the currency
    /// uses).
    #[arg(long)]
    pub amount: Option<String>,
    /// The sum's currency (ISO 4217, e.g. GBP).
    #[arg(long)]
    pub currency: Option<String>,
    /// Non-financial terms, in words.
    #[arg(long)]
    pub terms: Option<String>,
    /// A condition attached (repeat for each).
    #[arg(long = "condition")]
    #[serde(default)]
    pub conditions: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum StatusArg {
    Ready,
    NeedsMediator,
    OnBreak,
}

#[derive(Clone, Copy, Debug, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum StepArg {
    Continue,
    JointMeeting,
}

#[derive(Clone, Copy, Debug, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PhaseArg {
    IndividualMeetings,
    Negotiation,
    Agreement,
}

#[derive(Clone, Copy, Debug, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OpenClose {
    Open,
    Close,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ExportFormat {
    #[default]
    Md,
    Json,
}

// The command line's defaults, for a JSON-RPC request that leaves them out.
fn mine() -> String {
    "mine".into()
}

fn mediator() -> String {
    "Mediator".into()
}

fn valid_hours() -> u64 {
    72
}

fn wait() -> u64 {
    600
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = host::Options {
        state: cli.state,
        json: cli.json,
        ca_cert: cli.ca_cert,
    };
    let command = match cli.command.with_absolute_paths() {
        Ok(command) => command,
        Err(e) => {
            eprintln!("caucus: {e}");
            return ExitCode::FAILURE;
        }
    };
    match host::run(options, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("caucus: {}", output::error(&e));
            ExitCode::FAILURE
        }
    }
}

/// Why a command could not run: the client's error, or the daemon's word
/// for it when the command ran there.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The command failed here.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The daemon ran it and it failed there; its message.
    #[error("{0}")]
    Daemon(String),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Client(e.into())
    }
}
