//! How results and events are printed: readable lines, or with `--json`
//! one JSON object per line (`docs/cli-json.md`, `docs/cli-json.schema.json`).

use caucus_client::{Client, ClientError, DocumentEntry, DocumentInfo, Event, Warning};
use caucus_protocol::content::{ForwardMode, Sharing, Step, SystemEvent};
use caucus_protocol::deletion::DeletionStatement;
use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::offer::Offer;
use caucus_protocol::roster::{Phase, RoomKind};
use caucus_protocol::wire::{ErrorCode, MediatorWhereabouts, PartyStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Failure;

/// One thing a command says: `text` for people, `data` for `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub text: String,
    pub data: Value,
    /// `text` is a document (an exported agreement) to print exactly as it
    /// is, not lines to indent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verbatim: bool,
}

impl Record {
    pub(crate) fn new(text: impl Into<String>, data: Value) -> Self {
        Self {
            text: text.into(),
            data,
            verbatim: false,
        }
    }

    /// A document to print as it is.
    pub(crate) fn document(text: String, data: Value) -> Self {
        Self {
            text,
            data,
            verbatim: true,
        }
    }
}

/// Print one record: its text for people, its data with `--json`.
pub(crate) fn print(json_mode: bool, record: &Record) {
    if json_mode {
        line(&record.data.to_string());
    } else if record.verbatim {
        line(&record.text);
    } else if !record.text.is_empty() {
        line(&printable(&record.text));
    }
}

/// `text` as a terminal shows it safely: a line break starts an indented
/// line, so that what a participant wrote cannot pose as another record
/// (a forward from the mediator, say); other control characters (terminal
/// escapes) are shown as escapes.
fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\n    "),
            '\r' => {}
            c if c.is_control() => shown.extend(c.escape_default()),
            c => shown.push(c),
        }
    }
    shown
}

/// Write a line to stdout; a closed pipe (`caucus listen | head`) is not an
/// error worth a panic.
pub(crate) fn line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// A failure as a person should read it.
pub(crate) fn error(e: &Failure) -> String {
    match e {
        Failure::Client(ClientError::Timeout) => {
            "the relay did not answer in time: check that it is running and reachable, then try again".into()
        }
        Failure::Client(ClientError::Protocol(caucus_protocol::Error::UnknownEpoch { .. })) => {
            "this device does not hold that room's key: it is not a member of that room (only the mediator can do that, or you were removed)".into()
        }
        Failure::Client(ClientError::Connection(why)) => format!(
            "{why}: check your connection, or whether the relay is running"
        ),
        Failure::Client(ClientError::Refused {
            code: ErrorCode::InvalidInvite,
            ..
        }) => "this invite link has already been used, has expired, or was withdrawn: ask the mediator for a new one".into(),
        other => other.to_string(),
    }
}

/// Whether `member` is one of the session's mediators.
pub(crate) fn is_mediator(client: &Client, session: &SessionId, member: &Fingerprint) -> bool {
    client
        .roster(session)
        .is_ok_and(|r| r.member(member).is_some_and(|m| m.role.is_mediator()))
}

fn who(client: &Client, session: &SessionId, member: &Fingerprint) -> String {
    if *member == client.fingerprint() {
        return "you".into();
    }
    client
        .name_of(session, member)
        .unwrap_or_else(|| format!("member {}", &member.to_string()[..8]))
}

/// What a joiner joins as: "for Claimant", or "as a co-mediator".
pub(crate) fn joining(client: &Client, session: &SessionId, party: Option<&PartyId>) -> String {
    match party {
        Some(p) => format!("for {}", client.party_label(session, p)),
        None => "as a co-mediator".to_owned(),
    }
}

/// Where something came from, for people: a party by its label, or "the
/// joint room".
pub(crate) fn party_of(client: &Client, session: &SessionId, room: &RoomId) -> String {
    let label = client.room_label(session, room);
    match label.strip_suffix(" (private)") {
        Some(party) => party.to_owned(),
        None => format!("the {label} room"),
    }
}

/// A document for people: "Expert report (report.pdf, application/pdf, 2.4 MB)".
pub(crate) fn about(d: &DocumentInfo) -> String {
    format!(
        "{} ({}, {}, {})",
        d.title,
        d.name,
        d.media_type,
        caucus_protocol::document::format_size(d.size)
    )
}

/// A document as `--json` shows it (never its key).
pub(crate) fn document(d: &DocumentInfo) -> Value {
    json!({"title": d.title, "name": d.name, "media_type": d.media_type, "size": d.size, "sha256": d.sha256})
}

/// One line of `file list`.
pub(crate) fn document_entry(client: &Client, session: &SessionId, e: &DocumentEntry) -> Record {
    let label = match (e.sharing, e.carried) {
        (Some(s), _) => sharing(s).to_owned(),
        (None, Some((from, m))) => format!(
            "carried from {} ({})",
            party_of(client, session, &from),
            mode(m)
        ),
        (None, None) => String::new(),
    };
    Record::new(
        format!(
            "{}   from {} in {}; {label}   (message {})",
            about(&e.document),
            who(client, session, &e.sender),
            client.room_label(session, &e.room),
            caucus_protocol::b64::encode(&e.message.0)
        ),
        json!({"file": e.message, "room": e.room, "room_label": client.room_label(session, &e.room),
               "index": e.index, "sender": e.sender, "sender_name": who(client, session, &e.sender),
               "sharing": e.sharing, "carried_from": e.carried.map(|c| c.0), "mode": e.carried.map(|c| c.1),
               "document": document(&e.document)}),
    )
}

fn sharing(s: Sharing) -> &'static str {
    match s {
        Sharing::MediatorOnly => "for the mediator only",
        Sharing::MayShare => "may be shared",
    }
}

/// Whether `room` is a party's private room.
fn is_private(client: &Client, session: &SessionId, room: &RoomId) -> bool {
    client.roster(session).is_ok_and(|r| {
        r.room(room)
            .is_some_and(|r| matches!(r.kind, RoomKind::Private(_)))
    })
}

fn mode(m: ForwardMode) -> &'static str {
    match m {
        ForwardMode::Verbatim => "verbatim",
        ForwardMode::Reframed => "reframed",
    }
}

pub(crate) fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Preparation => "preparation",
        Phase::IndividualMeetings => "individual meetings",
        Phase::Negotiation => "negotiation",
        Phase::Agreement => "agreement",
        Phase::Closed => "closed",
    }
}

/// A status as the rest of a sentence whose subject is "you" or a name.
fn status(s: PartyStatus, you: bool) -> &'static str {
    match (s, you) {
        (PartyStatus::Ready, true) => "are ready",
        (PartyStatus::Ready, false) => "is ready",
        (PartyStatus::NeedsMediator, true) => "need the mediator",
        (PartyStatus::NeedsMediator, false) => "needs the mediator",
        (PartyStatus::OnBreak, true) => "are on a break",
        (PartyStatus::OnBreak, false) => "is on a break",
    }
}

/// An offer as JSON: the amount both in minor units and as written.
pub(crate) fn offer(o: &Offer) -> Value {
    json!({
        "kind": o.kind,
        "amount": o.amount.map(|a| json!({"minor": a.minor, "currency": a.currency(), "exponent": a.exponent, "text": a.to_string()})),
        "terms": o.terms,
        "conditions": o.conditions,
        "responds_to": o.responds_to,
    })
}

/// Seconds since the Unix epoch as a person reads a date: "2026-11-29
/// 16:10:23 UTC".
fn date(secs: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replacen('T', " ", 1)
        .replace('Z', " UTC")
}

/// A deletion statement, readable and as JSON.
pub(crate) fn statement(s: &DeletionStatement) -> (String, Value) {
    let e = &s.erased;
    (
        format!(
            "the relay ({}) erased session {} on {} (closed on {}): {} envelopes, {} rosters, {} key bundles, {} invites, {} join requests, {} documents ({} chunks), {} bytes",
            s.relay.fingerprint(),
            s.session,
            date(s.erased_at),
            date(s.closed_at),
            e.envelopes,
            e.rosters,
            e.key_bundles,
            e.invites,
            e.join_requests,
            e.documents,
            e.chunks,
            e.bytes
        ),
        json!({"relay": s.relay.fingerprint(), "session": s.session, "mediator": s.mediator,
               "closed_at": s.closed_at, "erased_at": s.erased_at,
               "erased": {"envelopes": e.envelopes, "rosters": e.rosters, "key_bundles": e.key_bundles,
                          "invites": e.invites, "join_requests": e.join_requests, "sessions": e.sessions,
                          "documents": e.documents, "chunks": e.chunks, "bytes": e.bytes}}),
    )
}

/// The record of an event.
pub(crate) fn describe(client: &Client, event: &Event) -> Record {
    let (text, data) = parts(client, event);
    Record::new(text, data)
}

/// The readable line and the JSON object for an event.
fn parts(client: &Client, event: &Event) -> (String, Value) {
    match event {
        Event::Message {
            session,
            room,
            index,
            sender,
            hash,
            sharing: s,
            text,
        } => (
            format!(
                "[{}] {}: {text}   ({}message {hash_s})",
                client.room_label(session, room),
                who(client, session, sender),
                // The label matters where the mediator decides what
                // crosses: a party's words in its private room.
                if is_private(client, session, room) && !is_mediator(client, session, sender) {
                    format!("{}; ", sharing(*s))
                } else {
                    String::new()
                },
                hash_s = caucus_protocol::b64::encode(&hash.0)
            ),
            json!({"event": "message", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "index": index, "sender": sender, "sender_name": who(client, session, sender),
                   "message": hash, "sharing": s, "text": text}),
        ),
        Event::Forwarded {
            session,
            room,
            index,
            mediator,
            from_room,
            mode: m,
            text,
            author_consented,
        } => (
            format!(
                "[{}] the mediator brings from {} ({}{}): {text}",
                client.room_label(session, room),
                party_of(client, session, from_room),
                mode(*m),
                if *author_consented {
                    ", with the author's consent"
                } else {
                    ""
                }
            ),
            json!({"event": "forwarded", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "index": index, "mediator": mediator, "from_room": from_room, "mode": m, "text": text,
                   "author_consented": author_consented}),
        ),
        Event::Shared {
            session,
            room,
            source,
            destination,
            mode: m,
            text,
        } => (
            format!(
                "[{}] the mediator shared message {} with {} ({}): {text}",
                client.room_label(session, room),
                caucus_protocol::b64::encode(&source.0),
                party_of(client, session, destination),
                mode(*m)
            ),
            json!({"event": "shared", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "message": source, "destination": destination, "destination_label": client.room_label(session, destination),
                   "mode": m, "text": text}),
        ),
        Event::Consent {
            session,
            room,
            member,
            message,
        } => (
            format!(
                "[{}] {} to sharing message {}",
                client.room_label(session, room),
                match who(client, session, member).as_str() {
                    "you" => "you consent".to_owned(),
                    name => format!("{name} consents"),
                },
                caucus_protocol::b64::encode(&message.0)
            ),
            json!({"event": "consent", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "member": member, "message": message}),
        ),
        Event::System {
            session,
            room,
            event,
        } => {
            let what = match event {
                SystemEvent::MemberAdmitted(m) => {
                    format!("{} was admitted", who(client, session, m))
                }
                SystemEvent::MemberRemoved(m) => format!("{} was removed", who(client, session, m)),
                SystemEvent::JointOpened => "the joint room is open".into(),
                SystemEvent::JointClosed => "the joint room is closed".into(),
                SystemEvent::PhaseChanged(Phase::Closed) => "the mediation is closed".into(),
                SystemEvent::PhaseChanged(p) => format!("the mediation moved to {}", phase(*p)),
                SystemEvent::PartyWithdrew => "a party has withdrawn from the mediation".into(),
                SystemEvent::PartyRejoined => "a party has rejoined the mediation".into(),
            };
            // What happened for a script (`what` is for people):
            // `{"kind": "phase_changed", "detail": "closed"}`.
            let change = serde_json::to_value(event).unwrap_or_default();
            (
                format!("[{}] {what}", client.room_label(session, room)),
                json!({"event": "system", "session": session, "room": room, "room_label": client.room_label(session, room),
                       "what": what, "kind": change["kind"], "detail": change["detail"]}),
            )
        }
        Event::Withdrew {
            session,
            room,
            member,
        } => (
            format!(
                "[{}] {}",
                client.room_label(session, room),
                match who(client, session, member).as_str() {
                    "you" => "you withdraw your party from the mediation".to_owned(),
                    name => format!("{name} withdraws their party from the mediation"),
                }
            ),
            json!({"event": "withdrew", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "member": member}),
        ),
        Event::Agreed {
            session,
            room,
            member,
            step,
        } => {
            let what = match step {
                Step::Continue => "to continue with the mediation",
                Step::JointMeeting => "to a joint meeting",
            };
            (
                format!(
                    "[{}] {} {what}",
                    client.room_label(session, room),
                    match who(client, session, member).as_str() {
                        "you" => "you agree, for your party,".to_string(),
                        name => format!("{name} agrees, for their party,"),
                    }
                ),
                json!({"event": "agreed", "session": session, "room": room, "room_label": client.room_label(session, room),
                       "member": member, "step": step}),
            )
        }
        Event::AgreementProposed {
            session,
            room,
            agreement,
            title,
            terms,
            checklist,
            attachments,
        } => (
            format!(
                "[{}] the mediator proposes \"{title}\" (agreement {}): {terms} — reality-testing: {}{}",
                client.room_label(session, room),
                caucus_protocol::b64::encode(&agreement.0),
                checklist.join(" / "),
                attachments
                    .iter()
                    .map(|a| format!(" — attached: {}", a.summary()))
                    .collect::<String>()
            ),
            json!({"event": "agreement_proposed", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "agreement": agreement, "title": title, "terms": terms, "checklist": checklist, "attachments": attachments}),
        ),
        Event::AgreementSigned {
            session,
            room,
            member,
            agreement,
        } => (
            format!(
                "[{}] {} signed the agreement",
                client.room_label(session, room),
                who(client, session, member)
            ),
            json!({"event": "agreement_signed", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "member": member, "agreement": agreement}),
        ),
        Event::AgreementConcluded {
            session,
            room,
            agreement,
        } => (
            format!(
                "[{}] the agreement is signed by everyone and countersigned: this device holds a copy (`caucus agreement export`)",
                client.room_label(session, room)
            ),
            json!({"event": "agreement_concluded", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "agreement": agreement}),
        ),
        // Bookkeeping, not news for a person.
        Event::Roster { session, version } => (
            String::new(),
            json!({"event": "roster", "session": session, "version": version}),
        ),
        Event::Joined { session } => (
            "admitted by the mediator".into(),
            json!({"event": "joined", "session": session}),
        ),
        Event::Knocking {
            session,
            invite,
            member,
            name,
            party,
        } => {
            let joining = joining(client, session, party.as_ref());
            (
                format!(
                    "{name} is in the waiting room ({joining}); their safety code is {}: compare it with them, then `caucus admit --server {relay} --session {session} \"{name}\"` (or `caucus decline …`)",
                    member.safety_code(),
                    relay = client.relay()
                ),
                json!({"event": "knocking", "session": session, "invite": invite, "member": member,
                       "name": name, "party": party, "safety_code": member.safety_code()}),
            )
        }
        Event::Admitted {
            session,
            invite,
            member,
        } => (
            format!("{} is in", who(client, session, member)),
            json!({"event": "admitted", "session": session, "invite": invite, "member": member}),
        ),
        Event::Rejected {
            session,
            invite,
            reason,
        } => (
            format!("refused a join request on invite {invite}: {reason}"),
            json!({"event": "rejected", "session": session, "invite": invite, "reason": reason}),
        ),
        Event::Waiting {
            session,
            mediator_online,
        } => (
            if *mediator_online {
                "the mediator is online and has been told you are waiting".into()
            } else {
                "the mediator is not online yet: you will be let in once they are".into()
            },
            json!({"event": "waiting", "session": session, "mediator_online": mediator_online}),
        ),
        Event::Declined { session } => (
            "the mediator declined the request to join".into(),
            json!({"event": "declined", "session": session}),
        ),
        Event::Presence {
            session,
            online,
            mediator,
        } => {
            let place = match mediator {
                MediatorWhereabouts::Away => "away".to_string(),
                MediatorWhereabouts::WithYou(_) => "with you".into(),
                MediatorWhereabouts::Elsewhere => "with another party".into(),
                MediatorWhereabouts::In(r) => format!("in {}", client.room_label(session, r)),
            };
            // A mediator hears of each command a party runs (it connects
            // and leaves): too often to print; `--json` has every change.
            let text = if is_mediator(client, session, &client.fingerprint()) {
                String::new()
            } else {
                format!("the mediator is {place}")
            };
            (
                text,
                json!({"event": "presence", "session": session, "online": online, "mediator": place}),
            )
        }
        Event::Status {
            session,
            member,
            status: s,
        } => (
            match who(client, session, member).as_str() {
                "you" => format!("you {}", status(*s, true)),
                name => format!("{name} {}", status(*s, false)),
            },
            json!({"event": "status", "session": session, "member": member, "status": s}),
        ),
        Event::Offer {
            session,
            room,
            index,
            by,
            message,
            offer: o,
        } => (
            format!(
                "[{}] {} {}   (message {})",
                client.room_label(session, room),
                match who(client, session, by).as_str() {
                    "you" => "you record".to_owned(),
                    name => format!("{name} records"),
                },
                o.summary(),
                caucus_protocol::b64::encode(&message.0)
            ),
            json!({"event": "offer", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "index": index, "by": by, "message": message, "offer": offer(o)}),
        ),
        Event::OfferCarried {
            session,
            room,
            index,
            mediator,
            message,
            from_room,
            mode: m,
            offer: o,
        } => (
            format!(
                "[{}] the mediator brings an offer from {}{}: {}   (message {})",
                client.room_label(session, room),
                party_of(client, session, from_room),
                match m {
                    ForwardMode::Verbatim => "",
                    ForwardMode::Reframed => ", restated",
                },
                o.summary(),
                caucus_protocol::b64::encode(&message.0)
            ),
            json!({"event": "offer_carried", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "index": index, "mediator": mediator, "message": message, "from_room": from_room, "mode": m,
                   "offer": offer(o)}),
        ),
        Event::Document {
            session,
            room,
            index,
            sender,
            hash,
            sharing: s,
            document: d,
        } => (
            format!(
                "[{}] {} adds a document: {}   ({}message {})",
                client.room_label(session, room),
                who(client, session, sender),
                about(d),
                if is_private(client, session, room) && !is_mediator(client, session, sender) {
                    format!("{}; ", sharing(*s))
                } else {
                    String::new()
                },
                caucus_protocol::b64::encode(&hash.0)
            ),
            json!({"event": "document", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "index": index, "sender": sender, "sender_name": who(client, session, sender),
                   "message": hash, "sharing": s, "document": document(d)}),
        ),
        Event::DocumentCarried {
            session,
            room,
            index,
            mediator,
            hash,
            from_room,
            mode: m,
            document: d,
            author_consented,
        } => (
            format!(
                "[{}] the mediator brings a document from {} ({}{}): {}   (message {})",
                client.room_label(session, room),
                party_of(client, session, from_room),
                match m {
                    ForwardMode::Verbatim => "the same file",
                    ForwardMode::Reframed => "the mediator's own copy",
                },
                if *author_consented {
                    ", with the author's consent"
                } else {
                    ""
                },
                about(d),
                caucus_protocol::b64::encode(&hash.0)
            ),
            json!({"event": "document_carried", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "index": index, "mediator": mediator, "message": hash, "from_room": from_room, "mode": m,
                   "author_consented": author_consented, "document": document(d)}),
        ),
        Event::Closed { session } => (
            "the session has closed".into(),
            json!({"event": "closed", "session": session}),
        ),
        Event::Warning {
            session,
            kind,
            detail,
        } => {
            let kind_s = match kind {
                Warning::Gap { .. } => "gap",
                Warning::Verification => "verification",
                Warning::Fork => "fork",
                Warning::Consent => "consent",
                Warning::Connection => "connection",
                Warning::Rollback => "rollback",
                _ => "other",
            };
            (
                format!("WARNING ({kind_s}): {detail}"),
                json!({"event": "warning", "session": session, "kind": kind_s, "detail": detail}),
            )
        }
        // A kind of event newer than this command: its fields as the
        // library names them, under the same `event` key as the others.
        other => {
            let mut value = serde_json::to_value(other).unwrap_or_else(|_| json!({}));
            if let Some(fields) = value.as_object_mut() {
                let kind = fields.remove("type").unwrap_or_else(|| json!("other"));
                fields.insert("event".into(), kind);
            }
            (String::new(), value)
        }
    }
}
