//! What each command does, given the client holding the state directory
//! (in this process or in the daemon): it asks the client and says what
//! came of it as [`Record`]s. Every decision is the client's.

use std::path::Path;
use std::time::Duration;

use caucus_client::{Admission, Client, ClientError, Direction, Event, StateDir, TransferKind};
use caucus_protocol::content::{Content, Sharing, Step};
use caucus_protocol::crypto::Digest;
use caucus_protocol::document::format_size;
use caucus_protocol::ids::SessionId;
use caucus_protocol::invite::Invite;
use caucus_protocol::offer::{Amount, Offer, OfferKind};
use caucus_protocol::roster::{Phase, Role, RoomKind};
use caucus_protocol::wire::PartyStatus;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::host::{Host, Out};
use crate::output::{self, Record, describe};
use crate::{
    AgreementCommand, At, Command, ExportFormat, Failure, FileCommand, OfferTerms, OpenClose,
    PhaseArg, SessionCommand, SideRoomCommand, StatusArg, StepArg,
};

type Result<T> = std::result::Result<T, Failure>;

/// How long `join` gives the relay to answer before saying it cannot be
/// reached.
const RELAY_WAIT: Duration = Duration::from_secs(5);

impl Command {
    /// The relay the command talks to; `None` for one about this device
    /// only.
    pub(crate) fn relay(&self) -> Result<Option<String>> {
        Ok(Some(match self {
            Self::Init | Self::Whoami => return Ok(None),
            Self::Join { link, .. } => Invite::from_link(link).map_err(ClientError::from)?.relay,
            Self::Daemon { server }
            | Self::Demo { server }
            | Self::Session {
                command: SessionCommand::Create { server, .. },
            } => server.clone(),
            Self::Agreement {
                command: AgreementCommand::Verify { .. },
            } => return Ok(None),
            other => other.at().map(|at| at.server.clone()).unwrap_or_default(),
        }))
    }

    /// The relay and session the command is about, if it names one.
    fn at(&self) -> Option<&At> {
        match self {
            Self::Invite { at, .. }
            | Self::Waiting { at }
            | Self::Admit { at, .. }
            | Self::Decline { at, .. }
            | Self::Send { at, .. }
            | Self::Listen { at, .. }
            | Self::Forward { at, .. }
            | Self::Consent { at, .. }
            | Self::Agree { at, .. }
            | Self::NotAgreed { at, .. }
            | Self::Phase { at, .. }
            | Self::Withdraw { at }
            | Self::Readmit { at, .. }
            | Self::Remove { at, .. }
            | Self::Status { at, .. }
            | Self::Location { at, .. }
            | Self::Joint { at, .. }
            | Self::Parties { at }
            | Self::Members { at }
            | Self::Rooms { at }
            | Self::Offer { at, .. }
            | Self::Offers { at }
            | Self::Close { at, .. }
            | Self::DeletionStatement { at }
            | Self::Erase { at } => Some(at),
            Self::SideRoom { command } => match command {
                SideRoomCommand::Open { at, .. } | SideRoomCommand::Close { at, .. } => Some(at),
            },
            Self::File { command } => match command {
                FileCommand::Send { at, .. }
                | FileCommand::Get { at, .. }
                | FileCommand::List { at }
                | FileCommand::Carry { at, .. } => Some(at),
            },
            Self::Agreement { command } => match command {
                AgreementCommand::Propose { at, .. }
                | AgreementCommand::Sign { at, .. }
                | AgreementCommand::Countersign { at, .. }
                | AgreementCommand::Export { at, .. } => Some(at),
                AgreementCommand::Verify { .. } => None,
            },
            _ => None,
        }
    }
}

/// Send a record to whoever reads the command's output.
fn emit(out: &Out, record: Record) -> Result<()> {
    out.send(record)
        .map_err(|_| Failure::Daemon("the reader went away".into()))
}

/// Say something: `text` for people, `data` for `--json`.
fn say(out: &Out, text: impl Into<String>, data: serde_json::Value) -> Result<()> {
    emit(out, Record::new(text, data))
}

fn session_id(text: &str) -> Result<SessionId> {
    Ok(SessionId::parse(text).ok_or(ClientError::Usage("not a session id"))?)
}

fn message_id(text: &str) -> Result<Digest> {
    Ok(caucus_protocol::b64::decode_array(text)
        .map(Digest)
        .ok_or(ClientError::Usage("not a message id"))?)
}

fn id(digest: &Digest) -> String {
    caucus_protocol::b64::encode(&digest.0)
}

/// This device's identity, from the state directory alone.
pub(crate) fn identity(dir: &StateDir, command: &Command) -> Result<Vec<Record>> {
    let keys = match command {
        Command::Init => dir.identity_or_create()?,
        _ => dir
            .identity()?
            .ok_or(ClientError::Usage("no identity here: run `caucus init`"))?,
    };
    Ok(vec![whoami(&keys.fingerprint())])
}

fn whoami(fingerprint: &caucus_protocol::identity::Fingerprint) -> Record {
    let code = fingerprint.safety_code();
    Record::new(
        format!("fingerprint: {fingerprint}\nsafety code: {code}"),
        json!({"fingerprint": fingerprint, "safety_code": code}),
    )
}

/// Check an exported copy of an agreement with no relay.
pub(crate) fn verify(file: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Daemon(format!("cannot read {}: {e}", file.display())))?;
    let report = caucus_protocol::agreement::verify_export(&text).map_err(ClientError::from)?;
    let signers: Vec<String> = report
        .signers
        .iter()
        .map(|(name, party, _)| match party {
            Some(p) => format!("{name} ({p})"),
            None => format!("{name} (mediator)"),
        })
        .collect();
    // What was verified is the signed text: show that, not the file.
    let questions: String = report
        .checklist
        .iter()
        .map(|q| format!("\n  - {q}"))
        .collect();
    let files: String = report
        .attachments
        .iter()
        .map(|a| format!("\n  - {}", a.summary()))
        .collect();
    Ok(vec![Record::new(
        format!(
            "valid: \"{}\" (agreement {}), signed by {}\nThe signed terms:\n{}{}{}",
            report.title,
            id(&report.agreement),
            signers.join(", "),
            report.terms,
            if questions.is_empty() {
                String::new()
            } else {
                format!("\nReality-testing questions:{questions}")
            },
            if files.is_empty() {
                String::new()
            } else {
                format!("\nAttached documents (the signatures cover each SHA-256):{files}")
            }
        ),
        json!({"valid": true, "report": report}),
    )])
}

/// An offer from its options; `base` gives what they leave out.
fn offer_from(terms: &OfferTerms, base: Option<&Offer>) -> Result<Offer> {
    let currency = terms
        .currency
        .clone()
        .or_else(|| base.and_then(|o| o.amount.map(|a| a.currency().to_owned())))
        .unwrap_or_else(|| "GBP".to_owned());
    let amount = match &terms.amount {
        Some(value) => Some(Amount::parse(&currency, value).map_err(ClientError::from)?),
        None if terms.currency.is_some() => {
            return Err(ClientError::Usage("give --amount with --currency").into());
        }
        None => base.and_then(|o| o.amount),
    };
    Ok(Offer {
        kind: base.map_or(OfferKind::Offer, |o| o.kind),
        amount,
        terms: terms
            .terms
            .clone()
            .or_else(|| base.map(|o| o.terms.clone()))
            .unwrap_or_default(),
        conditions: if terms.conditions.is_empty() {
            base.map(|o| o.conditions.clone()).unwrap_or_default()
        } else {
            terms.conditions.clone()
        },
        responds_to: base.and_then(|o| o.responds_to),
    })
}

fn step(s: StepArg) -> Step {
    match s {
        StepArg::Continue => Step::Continue,
        StepArg::JointMeeting => Step::JointMeeting,
    }
}

/// Names as a sentence lists them.
fn listed(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The agreement a command names, or the newest proposed.
fn agreement_named(client: &Client, session: &SessionId, named: Option<&str>) -> Result<Digest> {
    match named {
        Some(text) => message_id(text),
        None => Ok(client
            .latest_draft(session)
            .ok_or(ClientError::Usage("no agreement has been proposed yet"))?
            .hash()),
    }
}

/// Run `command` with the client `host` holds, its records to `out`.
pub(crate) async fn execute(host: &Host, command: Command, out: Out) -> Result<()> {
    let client = &host.client;
    if let Some(relay) = command.relay()?
        && !caucus_protocol::invite::same_relay(&relay, client.relay())
    {
        return Err(Failure::Daemon(format!(
            "this state directory is connected to {}, not {relay}",
            client.relay()
        )));
    }
    let session = match command.at() {
        Some(at) => Some(session_id(&at.session)?),
        None => None,
    };
    let session = session.as_ref();
    // Every command with `At` has a session; this keeps the arms short.
    let s = || session.ok_or(ClientError::Usage("no session given"));
    match command {
        Command::Init | Command::Whoami => emit(&out, whoami(&client.fingerprint())),
        Command::Daemon { .. } => {
            say(
                &out,
                format!(
                    "serving {} for other caucus commands (stop with Ctrl-C)",
                    host.state.display()
                ),
                json!({"daemon": host.state.display().to_string(), "relay": client.relay()}),
            )?;
            std::future::pending().await
        }
        Command::Session {
            command: SessionCommand::Create { name, parties, .. },
        } => {
            let labels: Vec<&str> = parties.iter().map(String::as_str).collect();
            let (session, ids) = client.create_session(&name, &labels).await?;
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
            say(&out, text, json!({"session": session, "parties": listed}))
        }
        Command::Invite {
            party,
            co_mediator,
            name,
            valid_hours,
            auto_admit,
            ..
        } => {
            let session = s()?;
            let expires = caucus_client::now().saturating_add(valid_hours.saturating_mul(3600));
            let admission = if auto_admit {
                Admission::Automatic
            } else {
                Admission::ByMediator
            };
            let link = match (party, co_mediator) {
                (Some(p), false) => {
                    let party = client.party_named(session, &p)?;
                    client
                        .invite(session, &party, &name, expires, admission)
                        .await?
                }
                _ => {
                    client
                        .invite_co_mediator(session, &name, expires, admission)
                        .await?
                }
            };
            // The same invitation as the relay's web page, for a browser.
            let web_link = Invite::from_link(&link)
                .map_err(ClientError::from)?
                .to_web_link();
            say(
                &out,
                format!("{link}\nto open in a browser: {web_link}"),
                json!({"link": link, "web_link": web_link, "expires_at": expires, "auto_admit": auto_admit}),
            )
        }
        Command::Waiting { .. } => {
            let session = s()?;
            let waiting = client.waiting(session)?;
            if waiting.is_empty() {
                say(&out, "no one is waiting", json!({"waiting": []}))?;
            }
            for knock in waiting {
                let member = knock.request.identity.fingerprint();
                let joining = output::joining(client, session, knock.party.as_ref());
                say(
                    &out,
                    format!(
                        "{} ({joining}): safety code {}",
                        knock.name,
                        member.safety_code()
                    ),
                    json!({"name": knock.name, "party": knock.party, "member": member,
                           "safety_code": member.safety_code(), "invite": knock.request.invite}),
                )?;
            }
            Ok(())
        }
        Command::Admit { who, .. } => {
            let session = s()?;
            let member = client.waiting_named(session, &who)?;
            let mut events = host.subscribe();
            client.admit(session, &member)?;
            loop {
                match events.recv().await {
                    Ok(Event::Admitted { member: m, .. }) if m == member => break,
                    Ok(Event::Rejected { reason, .. }) => {
                        return Err(Failure::Daemon(format!("not admitted: {reason}")));
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => {
                        return Err(ClientError::Connection("client stopped".into()).into());
                    }
                }
            }
            let name = client.name_of(session, &member).unwrap_or(who);
            say(
                &out,
                format!("{name} is in"),
                json!({"admitted": member, "name": name}),
            )
        }
        Command::Decline { who, .. } => {
            let session = s()?;
            let member = client.waiting_named(session, &who)?;
            client.decline(session, &member).await?;
            say(
                &out,
                format!("{who} was turned away"),
                json!({"declined": member}),
            )
        }
        Command::Join { link, wait } => join(host, &link, wait, &out).await,
        Command::Send {
            room,
            may_share,
            text,
            ..
        } => {
            let session = s()?;
            let target = client.room_named(session, &room)?;
            let sharing = if may_share {
                Sharing::MayShare
            } else {
                Sharing::MediatorOnly
            };
            let sent = client.send(session, &target, &text, sharing).await?;
            say(
                &out,
                format!("sent (message {})", id(&sent.message)),
                json!({"sent": sent.index, "message": sent.message, "room": target}),
            )
        }
        Command::Listen { follow, .. } => listen(host, s()?, follow, &out).await,
        Command::Forward {
            message,
            to,
            reframe,
            restate,
            ..
        } => {
            let session = s()?;
            let destination = client.room_named(session, &to)?;
            let source = message_id(&message)?;
            let offer = client
                .message(session, &source)
                .and_then(|m| match m.content {
                    Content::Offer(o) => Some(o),
                    _ => None,
                });
            let restates = restate.amount.is_some()
                || restate.currency.is_some()
                || restate.terms.is_some()
                || !restate.conditions.is_empty();
            let sent = match offer {
                Some(offer) => {
                    if reframe.is_some() {
                        return Err(ClientError::Usage(
                            "an offer is restated with --amount, --currency, --terms or --condition, not --reframe",
                        )
                        .into());
                    }
                    let restated = if restates {
                        Some(offer_from(&restate, Some(&offer))?)
                    } else {
                        None
                    };
                    client
                        .carry_offer(session, &source, &destination, restated)
                        .await?
                }
                None if restates => {
                    return Err(ClientError::Usage(
                        "that message is not an offer: carry it in your words with --reframe",
                    )
                    .into());
                }
                None => {
                    client
                        .forward(session, &source, &destination, reframe)
                        .await?
                }
            };
            say(
                &out,
                format!(
                    "carried to {} (the copy is message {})",
                    output::party_of(client, session, &destination),
                    id(&sent.message)
                ),
                json!({"forwarded": message, "to": destination, "message": sent.message, "index": sent.index}),
            )
        }
        Command::Consent { message, .. } => {
            client.consent(s()?, &message_id(&message)?).await?;
            say(
                &out,
                "you consent: the mediator may share that message",
                json!({"consented": message}),
            )
        }
        Command::Agree { step: st, .. } => {
            let st = step(st);
            client.agree(s()?, st).await?;
            let what = match st {
                Step::Continue => "you agree, for your party, to continue with the mediation",
                Step::JointMeeting => "you agree, for your party, to a joint meeting",
            };
            say(&out, what, json!({"agreed": st}))
        }
        Command::NotAgreed { step: st, .. } => {
            let session = s()?;
            let missing: Vec<String> = client
                .parties_not_agreed(session, step(st))?
                .iter()
                .map(|p| client.party_label(session, p))
                .collect();
            let text = if missing.is_empty() {
                "every party has agreed".to_owned()
            } else {
                format!(
                    "{} {} not agreed yet",
                    listed(&missing),
                    if missing.len() == 1 { "has" } else { "have" }
                )
            };
            say(&out, text, json!({"step": step(st), "not_agreed": missing}))
        }
        Command::Phase { phase, .. } => {
            let phase = match phase {
                PhaseArg::IndividualMeetings => Phase::IndividualMeetings,
                PhaseArg::Negotiation => Phase::Negotiation,
                PhaseArg::Agreement => Phase::Agreement,
            };
            client.set_phase(s()?, phase).await?;
            say(
                &out,
                format!("the mediation is now in the {} phase", output::phase(phase)),
                json!({"phase": phase}),
            )
        }
        Command::Withdraw { .. } => {
            let session = s()?;
            client.withdraw(session).await?;
            say(
                &out,
                "you have withdrawn your party from the mediation",
                json!({"withdrawn": session}),
            )
        }
        Command::Readmit { party, .. } => {
            let session = s()?;
            let p = client.party_named(session, &party)?;
            client.readmit(session, &p).await?;
            say(
                &out,
                format!("{party} is back in the mediation"),
                json!({"readmitted": p}),
            )
        }
        Command::Remove { who, .. } => {
            let session = s()?;
            let member = client.member_named(session, &who)?;
            client.remove_member(session, &member).await?;
            say(
                &out,
                format!("{who} was removed from the session"),
                json!({"removed": member}),
            )
        }
        Command::Status { status, .. } => {
            let st = match status {
                StatusArg::Ready => PartyStatus::Ready,
                StatusArg::NeedsMediator => PartyStatus::NeedsMediator,
                StatusArg::OnBreak => PartyStatus::OnBreak,
            };
            client.set_status(s()?, st).await?;
            let text = match st {
                PartyStatus::Ready => "the mediator sees that you are ready",
                PartyStatus::NeedsMediator => "the mediator sees that you need them",
                PartyStatus::OnBreak => "the mediator sees that you are on a break",
            };
            say(&out, text, json!({"status": st}))
        }
        Command::Location { room, disclose, .. } => {
            let session = s()?;
            let target = match room.as_str() {
                "away" => None,
                name => Some(client.room_named(session, name)?),
            };
            client.set_location(session, target, disclose).await?;
            let text = match &target {
                None => "you are away".to_owned(),
                Some(r) => match output::party_of(client, session, r) {
                    joint if joint.starts_with("the ") => format!("you are in {joint}"),
                    party => format!("you are with {party}"),
                },
            };
            say(
                &out,
                text,
                json!({"location": target, "disclosed": disclose}),
            )
        }
        Command::Joint { action, .. } => {
            let open_it = matches!(action, OpenClose::Open);
            client.set_joint_open(s()?, open_it).await?;
            let word = if open_it { "open" } else { "closed" };
            say(
                &out,
                format!("the joint room is {word}"),
                json!({"joint": word}),
            )
        }
        Command::SideRoom { command } => match command {
            SideRoomCommand::Open { members, .. } => {
                let session = s()?;
                let devices = members
                    .iter()
                    .map(|m| client.member_named(session, m))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let room = client.create_side_room(session, &devices).await?;
                say(
                    &out,
                    format!("side room {room} is open for you and {}", listed(&members)),
                    json!({"side_room": room, "members": devices}),
                )
            }
            SideRoomCommand::Close { room, .. } => {
                let session = s()?;
                let room = client.room_named(session, &room)?;
                client.close_side_room(session, &room).await?;
                say(
                    &out,
                    format!("side room {room} is closed"),
                    json!({"closed": room}),
                )
            }
        },
        Command::Parties { .. } => {
            let session = s()?;
            let roster = client.roster(session)?;
            for (party, label) in client.parties(session)? {
                let withdrawn = roster.party(&party).is_some_and(|p| p.withdrawn);
                say(
                    &out,
                    format!(
                        "{label}{}   (party {party})",
                        if withdrawn { ": withdrawn" } else { "" }
                    ),
                    json!({"party": party, "label": label, "withdrawn": withdrawn}),
                )?;
            }
            Ok(())
        }
        Command::Members { .. } => {
            let session = s()?;
            let roster = client.roster(session)?;
            for m in &roster.members {
                let device = m.identity.fingerprint();
                let name = client.name_of(session, &device).unwrap_or_default();
                let place = match (m.role, m.party) {
                    (Role::Mediator, _) => "mediator".to_owned(),
                    (Role::CoMediator, _) => "co-mediator".to_owned(),
                    (_, Some(p)) => client.party_label(session, &p),
                    (_, None) => "member".to_owned(),
                };
                let you = if device == client.fingerprint() {
                    " (you)"
                } else {
                    ""
                };
                // For a script: the role itself, and the party's label
                // apart (a party may be labelled "mediator").
                let role = match m.role {
                    Role::Mediator => "mediator",
                    Role::CoMediator => "co_mediator",
                    Role::PartyMember => "party_member",
                };
                let party_label = m.party.map(|p| client.party_label(session, &p));
                say(
                    &out,
                    format!("{name}{you}: {place}; safety code {}", device.safety_code()),
                    json!({"name": name, "member": device, "role": role, "party": m.party,
                           "party_label": party_label, "safety_code": device.safety_code(),
                           "you": !you.is_empty()}),
                )?;
            }
            Ok(())
        }
        Command::Rooms { .. } => {
            let session = s()?;
            let roster = client.roster(session)?;
            for room in &roster.rooms {
                let names: Vec<String> = room
                    .members
                    .iter()
                    .map(|m| client.name_of(session, m).unwrap_or_else(|| m.to_string()))
                    .collect();
                let kind = match room.kind {
                    RoomKind::Joint if room.open => "joint (open)".to_owned(),
                    RoomKind::Joint => "joint (closed to the parties)".to_owned(),
                    _ => client.room_label(session, &room.id),
                };
                say(
                    &out,
                    format!("{kind}: {}   (room {})", listed(&names), room.id),
                    json!({"room": room.id, "label": client.room_label(session, &room.id), "members": room.members,
                           "names": names}),
                )?;
            }
            Ok(())
        }
        Command::Offer {
            terms,
            counter_to,
            for_party,
            ..
        } => {
            let session = s()?;
            let mut offer = offer_from(&terms, None)?;
            if let Some(answered) = counter_to.as_deref() {
                offer.kind = OfferKind::CounterOffer;
                offer.responds_to = Some(message_id(answered)?);
            }
            let sent = match for_party {
                Some(p) => {
                    let p = client.party_named(session, &p)?;
                    client.make_offer_for(session, &p, &offer).await?
                }
                None => client.make_offer(session, &offer).await?,
            };
            say(
                &out,
                format!(
                    "recorded: {} (message {})",
                    offer.summary(),
                    id(&sent.message)
                ),
                json!({"offer": output::offer(&offer), "message": sent.message, "index": sent.index}),
            )
        }
        Command::Offers { .. } => {
            let session = s()?;
            let offers = client.offers(session);
            if offers.is_empty() {
                say(&out, "no offers yet", json!({"offers": []}))?;
            }
            let mediating = output::is_mediator(client, session, &client.fingerprint());
            for entry in offers {
                let text = match (entry.direction, entry.carried) {
                    // Not the party's own word: say who put it in.
                    (Direction::Made, _) if entry.recorded_by_mediator => format!(
                        "the mediator recorded for {}: {}",
                        if mediating {
                            output::party_of(client, session, &entry.room)
                        } else {
                            "your side".to_owned()
                        },
                        entry.offer.summary()
                    ),
                    // The mediator hears every party's: say whose.
                    (Direction::Made, _) if mediating => format!(
                        "{} offered {}",
                        output::party_of(client, session, &entry.room),
                        entry.offer.summary()
                    ),
                    (Direction::Made, _) => format!("your side offered {}", entry.offer.summary()),
                    (Direction::Received, Some((from, _))) => format!(
                        "{} offered {}",
                        output::party_of(client, session, &from),
                        entry.offer.summary()
                    ),
                    (Direction::Received, None) => format!("received {}", entry.offer.summary()),
                };
                say(
                    &out,
                    format!("{text}   (message {})", id(&entry.message)),
                    json!({"direction": entry.direction, "room": entry.room,
                           "room_label": client.room_label(session, &entry.room),
                           "from_room": entry.carried.map(|(r, _)| r),
                           "index": entry.index, "message": entry.message, "by": entry.by,
                           "recorded_by_mediator": entry.recorded_by_mediator,
                           "offer": output::offer(&entry.offer)}),
                )?;
            }
            Ok(())
        }
        Command::Close { erase, .. } => {
            let session = s()?;
            let statement = client.close_session(session).await?;
            say(&out, "the session is closed", json!({"closed": session}))?;
            if let Some(st) = statement {
                let (text, value) = output::statement(st.unverified());
                say(&out, text, json!({"deletion_statement": value}))?;
            }
            if erase {
                client.erase(session)?;
                say(
                    &out,
                    "this device's copy is erased",
                    json!({"erased": session}),
                )?;
            }
            Ok(())
        }
        Command::DeletionStatement { .. } => {
            let st = client.deletion_statement(s()?).await?;
            let (text, value) = output::statement(st.unverified());
            say(&out, text, json!({"deletion_statement": value}))
        }
        Command::Erase { .. } => {
            let session = s()?;
            client.erase(session)?;
            say(
                &out,
                "this device's copy is erased: its room keys and messages are deleted (the signed agreement is kept)",
                json!({"erased": session}),
            )
        }
        Command::Agreement {
            command: AgreementCommand::Verify { file },
        } => verify(&file)?.into_iter().try_for_each(|r| emit(&out, r)),
        Command::Agreement { command } => agreement(client, s()?, command, &out).await,
        Command::File { command } => file(client, s()?, command, &out).await,
        Command::Demo { .. } => Err(ClientError::Usage("run `caucus demo` on its own").into()),
    }
}

/// How often a transfer's progress is drawn on a terminal.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Run `work`, drawing the client's transfers' progress on stderr when it
/// is a terminal (stdout stays for the results).
async fn with_progress<T>(client: &Client, work: impl std::future::Future<Output = T>) -> T {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    tokio::pin!(work);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let mut drawn = false;
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = tick.tick() => {
                for t in client.transfers() {
                    let verb = match t.kind {
                        TransferKind::Upload => "sending",
                        TransferKind::Download => "fetching",
                    };
                    let percent = (t.done * 100).checked_div(t.total).unwrap_or(100);
                    eprint!(
                        "\r{verb} {}: {} of {} ({percent}%)   ",
                        t.document.title,
                        format_size(t.done),
                        format_size(t.total)
                    );
                    drawn = true;
                }
                let _ = std::io::stderr().flush();
            }
        }
    };
    if drawn {
        eprintln!();
    }
    result
}

async fn file(client: &Client, session: &SessionId, command: FileCommand, out: &Out) -> Result<()> {
    match command {
        FileCommand::Send {
            path,
            title,
            room,
            may_share,
            ..
        } => {
            let target = client.room_named(session, &room)?;
            let sharing = if may_share {
                Sharing::MayShare
            } else {
                Sharing::MediatorOnly
            };
            let sent = with_progress(
                client,
                client.send_document(session, &target, &path, title.as_deref(), sharing),
            )
            .await?;
            let d = client
                .documents(session)
                .into_iter()
                .find(|d| d.message == sent.message)
                .map(|d| d.document)
                .ok_or(ClientError::Usage(
                    "the document sent is not in this device's history",
                ))?;
            say(
                out,
                format!(
                    "sent {} to {} (message {})",
                    output::about(&d),
                    client.room_label(session, &target),
                    id(&sent.message)
                ),
                json!({"document_sent": sent.message, "index": sent.index, "room": target,
                       "sharing": sharing, "document": output::document(&d)}),
            )
        }
        FileCommand::Get {
            message, out: to, ..
        } => {
            let hash = message_id(&message)?;
            let to = to.unwrap_or_else(|| ".".into());
            let path = if to.is_dir() {
                let entry = client
                    .documents(session)
                    .into_iter()
                    .find(|d| d.message == hash)
                    .ok_or(ClientError::Usage("no such document"))?;
                let path = to.join(&entry.document.name);
                if path.try_exists()? {
                    return Err(Failure::Daemon(format!(
                        "{} exists already: say where to save it with --out",
                        path.display()
                    )));
                }
                path
            } else {
                to
            };
            let d = with_progress(client, client.save_document(session, &hash, &path)).await?;
            say(
                out,
                format!("saved {} as {}", output::about(&d), path.display()),
                json!({"saved": path.display().to_string(), "message": hash, "document": output::document(&d)}),
            )
        }
        FileCommand::List { .. } => {
            let documents = client.documents(session);
            if documents.is_empty() {
                say(out, "no documents", json!({"files": []}))?;
            }
            for d in &documents {
                emit(out, output::document_entry(client, session, d))?;
            }
            Ok(())
        }
        FileCommand::Carry {
            message,
            to,
            own,
            title,
            ..
        } => {
            let destination = client.room_named(session, &to)?;
            let source = message_id(&message)?;
            let own = own.as_deref().map(|path| (path, title.as_deref()));
            let sent = with_progress(
                client,
                client.carry_document(session, &source, &destination, own),
            )
            .await?;
            say(
                out,
                format!(
                    "carried to {} ({}; the copy is message {})",
                    output::party_of(client, session, &destination),
                    if own.is_some() {
                        "your own copy"
                    } else {
                        "the same file"
                    },
                    id(&sent.message)
                ),
                json!({"document_carried": source, "to": destination, "message": sent.message, "index": sent.index,
                       "mode": if own.is_some() { "reframed" } else { "verbatim" }}),
            )
        }
    }
}

async fn agreement(
    client: &Client,
    session: &SessionId,
    command: AgreementCommand,
    out: &Out,
) -> Result<()> {
    match command {
        AgreementCommand::Propose {
            title,
            terms,
            questions,
            attach,
            ..
        } => {
            let attaches = attach
                .iter()
                .map(|m| message_id(m))
                .collect::<Result<Vec<_>>>()?;
            let hash = client
                .propose_agreement(session, &title, &terms, &questions, &attaches)
                .await?;
            say(
                out,
                format!(
                    "proposed \"{title}\" (agreement {}): each party member can now read and sign it",
                    id(&hash)
                ),
                json!({"proposed": hash, "title": title}),
            )
        }
        AgreementCommand::Sign { agreement, .. } => {
            let hash = agreement_named(client, session, agreement.as_deref())?;
            client.sign_agreement(session, &hash).await?;
            say(
                out,
                format!("you signed agreement {}", id(&hash)),
                json!({"signed": hash}),
            )
        }
        AgreementCommand::Countersign { agreement, .. } => {
            let hash = agreement_named(client, session, agreement.as_deref())?;
            client.countersign(session, &hash).await?;
            say(
                out,
                format!(
                    "you countersigned agreement {}: every member receives the signed copy",
                    id(&hash)
                ),
                json!({"countersigned": hash}),
            )
        }
        AgreementCommand::Export { format, .. } => {
            let copy = client.agreement(session).ok_or(ClientError::Usage(
                "no concluded agreement in this session yet",
            ))?;
            let text = match format {
                ExportFormat::Json => copy.to_json(),
                ExportFormat::Md => copy.to_markdown(),
            };
            // The copy itself, exactly as made: a document to save.
            emit(out, Record::document(text.clone(), json!({"export": text})))
        }
        AgreementCommand::Verify { file } => {
            verify(&file)?.into_iter().try_for_each(|r| emit(out, r))
        }
    }
}

/// Knock with an invite link and wait to be let in: the relay being down
/// and the mediator not having answered yet are different answers.
async fn join(host: &Host, link: &str, wait: u64, out: &Out) -> Result<()> {
    let client = &host.client;
    let invite = Invite::from_link(link).map_err(ClientError::from)?;
    let unreachable = || {
        Failure::Daemon(format!(
            "could not reach the relay at {}: check the link, your connection, or whether the relay is running",
            invite.relay
        ))
    };
    // Said at once, not after the knock's own timeout.
    let online_by = tokio::time::Instant::now() + RELAY_WAIT;
    while !client.is_online() {
        if tokio::time::Instant::now() >= online_by {
            return Err(unreachable());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut events = host.subscribe();
    let session = client.join_session(link).await.map_err(|e| match e {
        ClientError::Timeout if !client.is_online() => unreachable(),
        other => other.into(),
    })?;
    say(
        out,
        format!(
            "waiting for the mediator to let you in. When they call, check that their safety code is {}, and read them yours: {}",
            invite.mediator.safety_code(),
            client.fingerprint().safety_code()
        ),
        json!({"waiting": session, "mediator_safety_code": invite.mediator.safety_code(),
               "safety_code": client.fingerprint().safety_code()}),
    )?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(Event::Joined { session: s })) if s == session => break,
            Ok(Ok(Event::Declined { session: s })) if s == session => {
                return Err(Failure::Daemon(
                    "the mediator did not let this device in: ask them for a new link".into(),
                ));
            }
            Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => {
                return Err(ClientError::Connection("client stopped".into()).into());
            }
            Err(_) if !client.is_online() => {
                return Err(Failure::Daemon(format!(
                    "lost the connection to the relay at {} while waiting; run the same `caucus join` again to keep waiting",
                    invite.relay
                )));
            }
            Err(_) => {
                return Err(Failure::Daemon(format!(
                    "the mediator has not let you in yet (waited {wait} s); your request stands: run the same `caucus join` again to keep waiting"
                )));
            }
        }
    }
    client.sync(&session).await?;
    say(
        out,
        format!("you are in session {session}"),
        json!({"joined": session}),
    )
}

/// Whether an event is part of the session's history (a message, a
/// forward, a receipt, a consent, a system event), which `listen` prints
/// from the stored history rather than as it arrives, so that it prints
/// each once.
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
            | Event::Withdrew { .. }
            | Event::Agreed { .. }
            | Event::AgreementProposed { .. }
            | Event::AgreementSigned { .. }
            | Event::AgreementConcluded { .. }
    )
}

/// Print what this state directory has not shown yet: the history since
/// the last `listen` (and, the first time after opening, what else came
/// while catching up); with `follow`, everything from then on.
async fn listen(host: &Host, session: &SessionId, follow: bool, out: &Out) -> Result<()> {
    let client = &host.client;
    let mark = host.state.join(format!("listen-{session}.seen"));
    let mut seen: usize = std::fs::read_to_string(&mark)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let mut events = host.subscribe();
    // Presence comes each time anyone connects; say it when it changes.
    let mut last_presence = String::new();
    let mut show = |event: &Event| -> Result<()> {
        if event.session() != session || in_history(event) {
            return Ok(());
        }
        let record = describe(client, event);
        if let Event::Presence { .. } = event {
            let now = record.data.to_string();
            if now == last_presence {
                return Ok(());
            }
            last_presence = now;
        }
        emit(out, record)
    };
    if !follow {
        while let Ok(Ok(event)) =
            tokio::time::timeout(Duration::from_millis(300), events.recv()).await
        {
            show(&event)?;
        }
    }
    // An agreement is posted in every room it concerns: say it once.
    let mut agreements = std::collections::HashSet::new();
    loop {
        let new = client.history_since(session, seen);
        for event in &new {
            let once = match event {
                Event::AgreementProposed { agreement, .. } => Some((false, *agreement)),
                Event::AgreementConcluded { agreement, .. } => Some((true, *agreement)),
                _ => None,
            };
            if once.is_some_and(|key| !agreements.insert(key)) {
                continue;
            }
            emit(out, describe(client, event))?;
        }
        if !new.is_empty() {
            seen += new.len();
            std::fs::write(&mark, seen.to_string())?;
        }
        if !follow {
            return Ok(());
        }
        // Wait for something new: an event to show now, or history to read.
        loop {
            match events.recv().await {
                Ok(event) if !in_history(&event) => show(&event)?,
                Ok(_) | Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }
}
