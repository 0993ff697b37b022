//! How events and results are printed: readable lines, or with `--json` one
//! JSON object per line.

use caucus_client::{Client, Event, Warning};
use caucus_protocol::content::{ForwardMode, Sharing, Step, SystemEvent};
use caucus_protocol::deletion::DeletionStatement;
use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::SessionId;
use caucus_protocol::offer::Offer;
use caucus_protocol::roster::Phase;
use caucus_protocol::wire::{MediatorWhereabouts, PartyStatus};
use serde_json::{Value, json};

/// Print one record: `text` for people, `value` with `--json`.
pub(crate) fn print(json_mode: bool, text: &str, value: Value) {
    if json_mode {
        line(&value.to_string());
    } else {
        line(&printable(text));
    }
}

/// `text` with control characters (newlines, terminal escapes) shown as
/// escapes, so that what a participant wrote cannot pose as another line,
/// a forward from the mediator, say.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Write a line to stdout; a closed pipe (`caucus listen | head`) is not an
/// error worth a panic.
pub(crate) fn line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn who(client: &Client, session: &SessionId, member: &Fingerprint) -> String {
    if *member == client.fingerprint() {
        return "you".into();
    }
    client
        .name_of(session, member)
        .unwrap_or_else(|| format!("member {}", &member.to_string()[..8]))
}

fn sharing(s: Sharing) -> &'static str {
    match s {
        Sharing::MediatorOnly => "mediator only",
        Sharing::MayShare => "may share",
    }
}

fn mode(m: ForwardMode) -> &'static str {
    match m {
        ForwardMode::Verbatim => "verbatim",
        ForwardMode::Reframed => "reframed",
    }
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Preparation => "preparation",
        Phase::IndividualMeetings => "individual meetings",
        Phase::Negotiation => "negotiation",
        Phase::Agreement => "agreement",
        Phase::Closed => "closed",
    }
}

fn status(s: PartyStatus) -> &'static str {
    match s {
        PartyStatus::Ready => "ready",
        PartyStatus::NeedsMediator => "needs the mediator",
        PartyStatus::OnBreak => "on a break",
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

/// A deletion statement, readable and as JSON.
pub(crate) fn statement(s: &DeletionStatement) -> (String, Value) {
    let e = &s.erased;
    (
        format!(
            "the relay ({}) erased session {} at {} (closed at {}): {} envelopes, {} rosters, {} key bundles, {} invites, {} join requests, {} bytes",
            s.relay.fingerprint(),
            s.session,
            s.erased_at,
            s.closed_at,
            e.envelopes,
            e.rosters,
            e.key_bundles,
            e.invites,
            e.join_requests,
            e.bytes
        ),
        json!({"relay": s.relay.fingerprint(), "session": s.session, "mediator": s.mediator,
               "closed_at": s.closed_at, "erased_at": s.erased_at,
               "erased": {"envelopes": e.envelopes, "rosters": e.rosters, "key_bundles": e.key_bundles,
                          "invites": e.invites, "join_requests": e.join_requests, "sessions": e.sessions,
                          "bytes": e.bytes}}),
    )
}

/// The readable line and the JSON object for an event.
pub(crate) fn describe(client: &Client, event: &Event) -> (String, Value) {
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
                "[{}] {}: {text}   ({}; message {hash_s})",
                client.room_label(session, room),
                who(client, session, sender),
                sharing(*s),
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
                "[{}] forwarded by the mediator from {} ({}{}): {text}",
                client.room_label(session, room),
                client.room_label(session, from_room),
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
                "[{}] the mediator shared {} with {} ({}): {text}",
                client.room_label(session, room),
                caucus_protocol::b64::encode(&source.0),
                client.room_label(session, destination),
                mode(*m)
            ),
            json!({"event": "shared", "session": session, "room": room, "message": source, "destination": destination,
                   "destination_label": client.room_label(session, destination), "mode": m, "text": text}),
        ),
        Event::Consent {
            session,
            room,
            member,
            message,
        } => (
            format!(
                "[{}] {} consents to sharing {}",
                client.room_label(session, room),
                who(client, session, member),
                caucus_protocol::b64::encode(&message.0)
            ),
            json!({"event": "consent", "session": session, "room": room, "member": member, "message": message}),
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
                SystemEvent::PhaseChanged(p) => format!("the mediation moved to {}", phase(*p)),
                SystemEvent::PartyWithdrew => "a party has withdrawn from the mediation".into(),
                SystemEvent::PartyRejoined => "a party has rejoined the mediation".into(),
            };
            (
                format!("[{}] {what}", client.room_label(session, room)),
                json!({"event": "system", "session": session, "room": room, "what": what}),
            )
        }
        Event::Withdrew {
            session,
            room,
            member,
        } => (
            format!(
                "[{}] {} withdraws their party from the mediation",
                client.room_label(session, room),
                who(client, session, member)
            ),
            json!({"event": "withdrew", "session": session, "room": room, "member": member}),
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
                json!({"event": "agreed", "session": session, "room": room, "member": member, "step": step}),
            )
        }
        Event::AgreementProposed {
            session,
            room,
            agreement,
            title,
            terms,
            checklist,
        } => (
            format!(
                "[{}] the mediator proposes \"{title}\" (agreement {}): {terms} — reality-testing: {}",
                client.room_label(session, room),
                caucus_protocol::b64::encode(&agreement.0),
                checklist.join(" / ")
            ),
            json!({"event": "agreement_proposed", "session": session, "room": room, "agreement": agreement,
                   "title": title, "terms": terms, "checklist": checklist}),
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
            json!({"event": "agreement_signed", "session": session, "room": room, "member": member,
                   "agreement": agreement}),
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
            json!({"event": "agreement_concluded", "session": session, "room": room, "agreement": agreement}),
        ),
        Event::Roster { session, version } => (
            format!("roster version {version} accepted"),
            json!({"event": "roster", "session": session, "version": version}),
        ),
        Event::Joined { session } => (
            "admitted by the mediator".into(),
            json!({"event": "joined", "session": session}),
        ),
        Event::Admitted {
            session,
            invite,
            member,
        } => (
            format!(
                "admitted {} (invite {invite})",
                who(client, session, member)
            ),
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
            (
                format!("the mediator is {place} ({} online)", online.len()),
                json!({"event": "presence", "session": session, "online": online, "mediator": place}),
            )
        }
        Event::Status {
            session,
            member,
            status: s,
        } => (
            format!("{} is {}", who(client, session, member), status(*s)),
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
                "[{}] {} recorded {}   (message {})",
                client.room_label(session, room),
                who(client, session, by),
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
                "[{}] the mediator carried from {} ({}): {}   (message {})",
                client.room_label(session, room),
                client.room_label(session, from_room),
                mode(*m),
                o.summary(),
                caucus_protocol::b64::encode(&message.0)
            ),
            json!({"event": "offer_carried", "session": session, "room": room, "room_label": client.room_label(session, room),
                   "index": index, "mediator": mediator, "message": message, "from_room": from_room, "mode": m,
                   "offer": offer(o)}),
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
                Warning::Replay => "replay",
                Warning::Rollback => "rollback",
                _ => "other",
            };
            (
                format!("WARNING ({kind_s}): {detail}"),
                json!({"event": "warning", "session": session, "kind": kind_s, "detail": detail}),
            )
        }
        other => (format!("{other:?}"), json!({"event": "other"})),
    }
}
