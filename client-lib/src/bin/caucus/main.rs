//! `caucus`: the Caucus command-line client. Every workflow is scriptable:
//! `--json` prints one JSON object per line. See README.md for a walk
//! through each command.

mod demo;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use caucus_client::{Client, ClientError, Direction, Event, StateDir};
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, Sharing, Step};
use caucus_protocol::crypto::Digest;
use caucus_protocol::ids::SessionId;
use caucus_protocol::offer::{Amount, Offer, OfferKind};
use caucus_protocol::roster::Phase;
use caucus_protocol::wire::PartyStatus;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use output::{describe, print};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create this device's identity (if there is none) and show it.
    Init,
    /// Show this device's fingerprint and safety code.
    Whoami,
    /// Sessions (as the mediator).
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Make an invite link for one person joining a party (mediator).
    Invite {
        #[command(flatten)]
        at: At,
        /// The party: its label or id.
        #[arg(long)]
        party: String,
        /// The invitee's name, shown to the session's members.
        #[arg(long)]
        name: String,
        /// Hours until the link expires.
        #[arg(long, default_value_t = 72)]
        valid_hours: u64,
    },
    /// Join a session from an invite link and wait to be admitted.
    Join {
        /// The invite link.
        link: String,
        /// Seconds to wait for the mediator.
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
    /// Send a message.
    Send {
        #[command(flatten)]
        at: At,
        /// The room: `mine` (your party's private room), `joint`, or a party's label or id.
        #[arg(long, default_value = "mine")]
        room: String,
        /// Let the mediator share it (the default in a private room is mediator only).
        #[arg(long)]
        may_share: bool,
        /// The message.
        text: String,
    },
    /// Print what has arrived (and, with --follow, what arrives).
    Listen {
        #[command(flatten)]
        at: At,
        /// Keep listening. As the mediator, this also admits joiners.
        #[arg(long)]
        follow: bool,
    },
    /// Carry a message to another room (mediator).
    Forward {
        #[command(flatten)]
        at: At,
        /// The message (its id as `listen` prints it; ids may begin with `-`).
        #[arg(long, allow_hyphen_values = true)]
        message: String,
        /// Where to: `joint`, or a party's label or id.
        #[arg(long)]
        to: String,
        /// Carry it in these words instead of verbatim.
        #[arg(long)]
        reframe: Option<String>,
    },
    /// Let the mediator share one of your messages.
    Consent {
        #[command(flatten)]
        at: At,
        /// The message (its id as `listen` prints it; ids may begin with `-`).
        #[arg(long, allow_hyphen_values = true)]
        message: String,
    },
    /// Agree, for your party, to continue after the individual meeting or to
    /// a joint meeting.
    Agree {
        #[command(flatten)]
        at: At,
        /// continue or joint-meeting.
        step: StepArg,
    },
    /// Move the mediation to another phase (mediator).
    Phase {
        #[command(flatten)]
        at: At,
        /// individual-meetings, negotiation or agreement.
        phase: PhaseArg,
    },
    /// Withdraw your party from the mediation.
    Withdraw {
        #[command(flatten)]
        at: At,
    },
    /// Tell the mediator your status.
    Status {
        #[command(flatten)]
        at: At,
        /// ready, needs-mediator or on-break.
        status: StatusArg,
    },
    /// Open or close the joint room (mediator).
    Joint {
        #[command(flatten)]
        at: At,
        /// open or close.
        action: JointAction,
    },
    /// Record a settlement offer or counter-offer for your party (or, as the
    /// mediator, for a party with --for).
    Offer {
        #[command(flatten)]
        at: At,
        /// The sum, e.g. 250000.00 (with as many decimals as the currency uses).
        #[arg(long)]
        amount: Option<String>,
        /// The sum's currency (ISO 4217).
        #[arg(long, default_value = "GBP")]
        currency: String,
        /// Non-financial terms, in words.
        #[arg(long, default_value = "")]
        terms: String,
        /// A condition attached (repeat for each).
        #[arg(long = "condition")]
        conditions: Vec<String>,
        /// Answer an offer you received (its message id): a counter-offer.
        #[arg(long, allow_hyphen_values = true)]
        counter_to: Option<String>,
        /// (Mediator) record it for this party: its label or id.
        #[arg(long = "for")]
        for_party: Option<String>,
    },
    /// The offers log: what your side made and received, in order.
    Offers {
        #[command(flatten)]
        at: At,
    },
    /// Close the session for everyone (mediator). Prints the relay's signed
    /// statement of what it erased, if it erased at once.
    Close {
        #[command(flatten)]
        at: At,
        /// Also erase this device's copy (as `caucus erase`).
        #[arg(long)]
        erase: bool,
    },
    /// Show the relay's signed statement of what it erased of a closed
    /// session (mediator).
    DeletionStatement {
        #[command(flatten)]
        at: At,
    },
    /// Delete this device's copy of a session: its room keys and messages.
    /// The signed agreement and the relay's deletion statement are kept.
    Erase {
        #[command(flatten)]
        at: At,
    },
    /// The signed agreement: export your copy, or verify one offline.
    Agreement {
        #[command(subcommand)]
        command: AgreementCommand,
    },
    /// Play a whole shuttle mediation against a running relay and show what
    /// each participant saw.
    Demo {
        /// The relay's base URL, e.g. ws://127.0.0.1:7300.
        #[arg(long, env = "CAUCUS_SERVER")]
        server: String,
    },
}

#[derive(Subcommand)]
enum AgreementCommand {
    /// Write this device's copy of the concluded agreement: Markdown (a
    /// readable document carrying the signatures) or JSON.
    Export {
        #[command(flatten)]
        at: At,
        /// md or json.
        #[arg(long, default_value = "md")]
        format: String,
    },
    /// Check a copy (Markdown or JSON export, or the bare signed bytes in
    /// base64url) with no relay: who signed what; a changed byte or a
    /// missing signature fails.
    Verify {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Create a session with named parties; you are its mediator.
    Create {
        /// The relay's base URL.
        #[arg(long, env = "CAUCUS_SERVER")]
        server: String,
        /// Your name, as the members see it.
        #[arg(long, default_value = "Mediator")]
        name: String,
        /// A party's label (repeat for each party).
        #[arg(long = "party", required = true)]
        parties: Vec<String>,
    },
}

/// Which relay and session a command is about.
#[derive(clap::Args)]
struct At {
    /// The relay's base URL.
    #[arg(long, env = "CAUCUS_SERVER")]
    server: String,
    /// The session id (ids may begin with `-`).
    #[arg(long, env = "CAUCUS_SESSION", allow_hyphen_values = true)]
    session: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusArg {
    Ready,
    NeedsMediator,
    OnBreak,
}

#[derive(Clone, Copy, ValueEnum)]
enum StepArg {
    Continue,
    JointMeeting,
}

#[derive(Clone, Copy, ValueEnum)]
enum PhaseArg {
    IndividualMeetings,
    Negotiation,
    Agreement,
}

#[derive(Clone, Copy, ValueEnum)]
enum JointAction {
    Open,
    Close,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("caucus: {e}");
            ExitCode::FAILURE
        }
    }
}

fn session_id(text: &str) -> Result<SessionId, ClientError> {
    SessionId::parse(text).ok_or(ClientError::Usage("not a session id"))
}

fn message_id(text: &str) -> Result<Digest, ClientError> {
    caucus_protocol::b64::decode_array(text)
        .map(Digest)
        .ok_or(ClientError::Usage("not a message id"))
}

async fn open(cli: &Cli, server: &str) -> Result<Client, ClientError> {
    Client::open(StateDir::open(&cli.state)?, server).await
}

/// Find the signed copy in an export (the longest base64url run: the JSON
/// `signed` field, or the Markdown's code block) and verify it.
fn verify_copy(text: &str) -> Result<caucus_protocol::agreement::Verified, ClientError> {
    let candidate = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .max_by_key(|t| t.len())
        .unwrap_or_default();
    let bytes = caucus_protocol::b64::decode(candidate)
        .ok_or(ClientError::Usage("no signed copy found in the file"))?;
    let copy = caucus_protocol::agreement::SignedAgreement::from_bytes(&bytes)
        .map_err(caucus_protocol::Error::from)?;
    Ok(copy.verify()?)
}

/// Whether an event is part of the session's history (a message, a
/// forward, a receipt, a consent, a system event), which `listen` prints
/// from the stored history rather than as it arrives.
fn in_history(event: &Event) -> bool {
    matches!(
        event,
        Event::Message { .. }
            | Event::Forwarded { .. }
            | Event::Shared { .. }
            | Event::Consent { .. }
            | Event::System { .. }
            | Event::Offer { .. }
            | Event::OfferCarried { .. }
    )
}

/// Print what this state directory has not shown yet — every other event
/// that arrived while catching up, then the history since the last `listen`
/// — and with `follow`, everything that arrives from then on.
async fn listen(
    client: &mut Client,
    state: &std::path::Path,
    session: &SessionId,
    follow: bool,
    json_mode: bool,
) -> Result<(), ClientError> {
    let mark = state.join(format!("listen-{session}.seen"));
    let mut seen: usize = std::fs::read_to_string(&mark)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    while let Some(event) = client.next_event_within(Duration::from_millis(300)).await {
        if !in_history(&event) {
            let (text, value) = describe(client, &event);
            print(json_mode, &text, value);
        }
    }
    let history = client.history(session);
    for event in history.iter().skip(seen) {
        let (text, value) = describe(client, event);
        print(json_mode, &text, value);
    }
    seen = history.len();
    std::fs::write(&mark, seen.to_string())?;
    if !follow {
        return Ok(());
    }
    while let Some(event) = client.next_event().await {
        let (text, value) = describe(client, &event);
        print(json_mode, &text, value);
        if in_history(&event) {
            seen += 1;
            std::fs::write(&mark, seen.to_string())?;
        }
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let json_mode = cli.json;
    match &cli.command {
        Command::Init | Command::Whoami => {
            let dir = StateDir::open(&cli.state)?;
            let keys = match cli.command {
                Command::Init => dir.identity_or_create()?,
                _ => dir
                    .identity()?
                    .ok_or(ClientError::Usage("no identity here: run `caucus init`"))?,
            };
            let fingerprint = keys.fingerprint();
            let code = fingerprint.safety_code();
            print(
                json_mode,
                &format!("fingerprint: {fingerprint}\nsafety code: {code}"),
                json!({"fingerprint": fingerprint, "safety_code": code}),
            );
        }
        Command::Session {
            command:
                SessionCommand::Create {
                    server,
                    name,
                    parties,
                },
        } => {
            let client = open(&cli, server).await?;
            let labels: Vec<&str> = parties.iter().map(String::as_str).collect();
            let (session, ids) = client.create_session(name, &labels).await?;
            let listed: Vec<_> = ids
                .iter()
                .zip(&labels)
                .map(|(id, label)| json!({"party": id, "label": label}))
                .collect();
            let text = format!(
                "session {session}\n{}",
                ids.iter()
                    .zip(&labels)
                    .map(|(id, l)| format!("party {l}: {id}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            print(
                json_mode,
                &text,
                json!({"session": session, "parties": listed}),
            );
        }
        Command::Invite {
            at,
            party: p,
            name,
            valid_hours,
        } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let party_id = client.party_named(&session, p)?;
            let expires = caucus_client::now() + valid_hours * 3600;
            let link = client
                .invite(
                    &session,
                    &party_id,
                    name,
                    expires,
                    caucus_client::Admission::Automatic,
                )
                .await?;
            print(
                json_mode,
                &link,
                json!({"link": link, "expires_at": expires}),
            );
        }
        Command::Join { link, wait } => {
            let (mut client, session) = Client::join(StateDir::open(&cli.state)?, link).await?;
            let roster_mediator = caucus_protocol::invite::Invite::from_link(link)?.mediator;
            if !json_mode {
                eprintln!(
                    "waiting for the mediator (safety code {}) to admit you...",
                    roster_mediator.safety_code()
                );
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(*wait);
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match client.next_event_within(left).await {
                    Some(Event::Joined { .. }) => break,
                    Some(Event::Declined { .. }) => {
                        return Err(ClientError::Usage("the mediator declined the request"));
                    }
                    Some(_) => {}
                    None => return Err(ClientError::Timeout),
                }
            }
            client.sync(&session).await?;
            print(
                json_mode,
                &format!("joined session {session}"),
                json!({"joined": session}),
            );
        }
        Command::Send {
            at,
            room: r,
            may_share,
            text,
        } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let target = client.room_named(&session, r)?;
            let sharing = if *may_share {
                Sharing::MayShare
            } else {
                Sharing::MediatorOnly
            };
            let sent = client.send(&session, &target, text, sharing).await?;
            let id = caucus_protocol::b64::encode(&sent.message.0);
            print(
                json_mode,
                &format!("sent (index {}; message {id})", sent.index),
                json!({"sent": sent.index, "message": sent.message, "room": target}),
            );
        }
        Command::Listen { at, follow } => {
            let mut client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            listen(&mut client, &cli.state, &session, *follow, json_mode).await?;
        }
        Command::Forward {
            at,
            message,
            to,
            reframe,
        } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let destination = client.room_named(&session, to)?;
            let id = message_id(message)?;
            let is_offer = client
                .message(&session, &id)
                .is_some_and(|m| matches!(m.content, Content::Offer(_)));
            if is_offer {
                if reframe.is_some() {
                    return Err(ClientError::Usage(
                        "the command line carries an offer verbatim (the library's carry_offer can restate it)",
                    ));
                }
                client
                    .carry_offer(&session, &id, &destination, None)
                    .await?;
            } else {
                client
                    .forward(&session, &id, &destination, reframe.clone())
                    .await?;
            }
            print(
                json_mode,
                "forwarded",
                json!({"forwarded": message, "to": destination}),
            );
        }
        Command::Consent { at, message } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            client.consent(&session, &message_id(message)?).await?;
            print(json_mode, "consent given", json!({"consented": message}));
        }
        Command::Agree { at, step } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let step = match step {
                StepArg::Continue => Step::Continue,
                StepArg::JointMeeting => Step::JointMeeting,
            };
            client.agree(&session, step).await?;
            print(json_mode, "agreed", json!({"agreed": step}));
        }
        Command::Phase { at, phase } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let phase = match phase {
                PhaseArg::IndividualMeetings => Phase::IndividualMeetings,
                PhaseArg::Negotiation => Phase::Negotiation,
                PhaseArg::Agreement => Phase::Agreement,
            };
            client.set_phase(&session, phase).await?;
            print(
                json_mode,
                &format!("phase: {phase:?}"),
                json!({"phase": phase}),
            );
        }
        Command::Withdraw { at } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            client.withdraw(&session).await?;
            print(
                json_mode,
                "withdrawn from the mediation",
                json!({"withdrawn": session}),
            );
        }
        Command::Status { at, status } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let s = match status {
                StatusArg::Ready => PartyStatus::Ready,
                StatusArg::NeedsMediator => PartyStatus::NeedsMediator,
                StatusArg::OnBreak => PartyStatus::OnBreak,
            };
            client.set_status(&session, s).await?;
            print(json_mode, "status set", json!({"status": s}));
        }
        Command::Joint { at, action } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let open_it = matches!(action, JointAction::Open);
            client.set_joint_open(&session, open_it).await?;
            let word = if open_it { "open" } else { "closed" };
            print(
                json_mode,
                &format!("the joint room is {word}"),
                json!({"joint": word}),
            );
        }
        Command::Offer {
            at,
            amount,
            currency,
            terms,
            conditions,
            counter_to,
            for_party,
        } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let responds_to = counter_to.as_deref().map(message_id).transpose()?;
            let offer = Offer {
                kind: if responds_to.is_some() {
                    OfferKind::CounterOffer
                } else {
                    OfferKind::Offer
                },
                amount: amount
                    .as_deref()
                    .map(|a| Amount::parse(currency, a))
                    .transpose()?,
                terms: terms.clone(),
                conditions: conditions.clone(),
                responds_to,
            };
            let sent = match for_party {
                Some(p) => {
                    let p = client.party_named(&session, p)?;
                    client.make_offer_for(&session, &p, &offer).await?
                }
                None => client.make_offer(&session, &offer).await?,
            };
            print(
                json_mode,
                &format!(
                    "recorded: {} (message {})",
                    offer.summary(),
                    caucus_protocol::b64::encode(&sent.message.0)
                ),
                json!({"offer": output::offer(&offer), "message": sent.message, "index": sent.index}),
            );
        }
        Command::Offers { at } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            for entry in client.offers(&session) {
                let (word, place) = match entry.direction {
                    Direction::Made => ("made", client.room_label(&session, &entry.room)),
                    Direction::Received => ("received", client.room_label(&session, &entry.room)),
                };
                print(
                    json_mode,
                    &format!(
                        "{word} [{place}] {}   (message {})",
                        entry.offer.summary(),
                        caucus_protocol::b64::encode(&entry.message.0)
                    ),
                    json!({"direction": entry.direction, "room": entry.room, "room_label": place,
                           "index": entry.index, "message": entry.message, "by": entry.by,
                           "offer": output::offer(&entry.offer)}),
                );
            }
        }
        Command::Close { at, erase } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let statement = client.close_session(&session).await?;
            print(json_mode, "session closed", json!({"closed": session}));
            if let Some(s) = statement {
                let (text, value) = output::statement(s.unverified());
                print(json_mode, &text, json!({"deletion_statement": value}));
            }
            if *erase {
                client.erase(&session)?;
                print(json_mode, "local copy erased", json!({"erased": session}));
            }
        }
        Command::DeletionStatement { at } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let s = client.deletion_statement(&session).await?;
            let (text, value) = output::statement(s.unverified());
            print(json_mode, &text, json!({"deletion_statement": value}));
        }
        Command::Erase { at } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            client.erase(&session)?;
            print(
                json_mode,
                "local copy erased: room keys and messages deleted",
                json!({"erased": session}),
            );
        }
        Command::Agreement {
            command: AgreementCommand::Export { at, format },
        } => {
            let client = open(&cli, &at.server).await?;
            let session = session_id(&at.session)?;
            let copy = client.agreement(&session).ok_or(ClientError::Usage(
                "no concluded agreement in this session yet",
            ))?;
            let text = match format.as_str() {
                "json" => json!({
                    "title": copy.agreement.title,
                    "terms": copy.agreement.terms,
                    "checklist": copy.agreement.checklist,
                    "agreement": copy.agreement.hash(),
                    "signed": caucus_protocol::b64::encode(&copy.to_bytes()),
                })
                .to_string(),
                _ => copy.to_markdown(),
            };
            output::line(&text);
        }
        Command::Agreement {
            command: AgreementCommand::Verify { file },
        } => {
            let text = std::fs::read_to_string(file)?;
            let report = verify_copy(&text)?;
            let signers: Vec<String> = report
                .signers
                .iter()
                .map(|(name, party, _)| match party {
                    Some(p) => format!("{name} ({p})"),
                    None => format!("{name} (mediator)"),
                })
                .collect();
            print(
                json_mode,
                &format!(
                    "valid: \"{}\" ({}) signed by {}",
                    report.title,
                    caucus_protocol::b64::encode(&report.agreement.0),
                    signers.join(", ")
                ),
                json!({"valid": true, "report": report}),
            );
        }
        Command::Demo { server } => demo::run(server, json_mode).await?,
    }
    Ok(())
}
