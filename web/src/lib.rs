//! # caucus-web
//!
//! The client machine of `caucus-client-core`, for the browser: every
//! verification, decision and cryptographic step runs here, compiled to
//! WebAssembly, and the page only moves bytes — frames over the browser's
//! `WebSocket`, changes into IndexedDB, events onto the screen — as the
//! native driver does with tokio (see `docs/client.md` and `docs/web.md`).
//!
//! [`Device`] is the machine as JavaScript sees it: times are milliseconds
//! since the Unix epoch (`Date.now()`), events, views and outcomes are JSON
//! text, saved state is bytes (`Uint8Array`). Operations return an
//! operation id whose outcome [`Device::poll_done`] gives later; a request
//! the machine refuses at once throws an `Error` whose message is written
//! for a person. `web/app/driver.ts` is the driver loop around it,
//! `web/app/store.ts` its storage.

use std::fmt::Display;

use caucus_client_core::{
    Admission, ClientError, DocumentError, Kept, Machine, Membership, NewDocument, OpId, Outcome,
    Timestamp, TransferKind,
};
use caucus_protocol::agreement::{SignedAgreement, verify_export};
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Sharing, Step};
use caucus_protocol::crypto::Digest;
use caucus_protocol::deletion::SignedDeletionStatement;
use caucus_protocol::document::{Hasher, UNKNOWN_MEDIA_TYPE, format_size};
use caucus_protocol::identity::{DeviceKeys, Fingerprint};
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::invite::Invite;
use caucus_protocol::offer::{Amount, Offer, OfferKind};
use caucus_protocol::roster::{Phase, Role, RoomKind};
use caucus_protocol::wire::{Encoded, PartyStatus};
use js_sys::{Array, Object, Reflect, Uint8Array};
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

/// One device in the browser: its keys and sessions, and its conversation
/// with one relay.
#[wasm_bindgen]
pub struct Device {
    machine: Machine,
    /// A new device's secret keys, until [`Device::take_changes`] hands
    /// them out to be stored.
    identity: Option<Zeroizing<Vec<u8>>>,
}

fn at(now: f64) -> Timestamp {
    // `Date.now()` is a whole, non-negative number of milliseconds.
    Timestamp::from_millis(now.max(0.0) as u64)
}

fn refused(e: impl Display) -> JsError {
    JsError::new(&e.to_string())
}

/// An operation the machine took, as its id for JavaScript (a whole number,
/// well below 2^53), or its refusal in words.
fn done(taken: Result<OpId, ClientError>) -> Result<f64, JsError> {
    taken.map(|id| id.as_u64() as f64).map_err(refused)
}

/// Bytes from JavaScript, copied into memory that is wiped when dropped.
fn secret(bytes: &Uint8Array) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(bytes.to_vec())
}

/// `value` as `object[name]`.
fn set(object: &Object, name: &str, value: &JsValue) -> Result<(), JsValue> {
    Reflect::set(object, &JsValue::from_str(name), value).map(|_| ())
}

fn session_id(text: &str) -> Result<SessionId, JsError> {
    SessionId::parse(text).ok_or_else(|| refused("not a session id"))
}

fn digest(text: &str) -> Result<Digest, JsError> {
    caucus_protocol::b64::decode_array(text)
        .map(Digest)
        .ok_or_else(|| refused("not a message id"))
}

fn device(text: &str) -> Result<Fingerprint, JsError> {
    Fingerprint::parse(text).ok_or_else(|| refused("not a device"))
}

/// A signed deletion statement as the page shows it, checked.
fn statement_json(statement: &SignedDeletionStatement) -> Value {
    match statement.verify() {
        Ok(s) => json!({
            "verified": true,
            "relay": s.relay.fingerprint(),
            "session": s.session,
            "closedAt": s.closed_at,
            "erasedAt": s.erased_at,
            "erased": {
                "envelopes": s.erased.envelopes,
                "rosters": s.erased.rosters,
                "keyBundles": s.erased.key_bundles,
                "invites": s.erased.invites,
                "joinRequests": s.erased.join_requests,
                "documents": s.erased.documents,
                "chunks": s.erased.chunks,
                "bytes": s.erased.bytes,
            },
            "signed": Encoded(statement.clone()),
        }),
        Err(e) => json!({"verified": false, "error": e.to_string()}),
    }
}

/// A concluded agreement as the page shows it and offers it for download.
fn agreement_json(agreement: &SignedAgreement) -> Value {
    match agreement.verify() {
        Ok(v) => json!({
            "verified": true,
            "hash": v.agreement,
            "title": v.title,
            "terms": v.terms,
            "checklist": v.checklist,
            "attachments": v.attachments,
            "signers": v.signers.iter().map(|(name, party, f)| json!({
                "name": name, "party": party, "device": f, "safetyCode": f.safety_code(),
            })).collect::<Vec<_>>(),
            "markdown": agreement.to_markdown(),
            "json": agreement.to_json(),
        }),
        Err(e) => json!({"verified": false, "error": e.to_string()}),
    }
}

/// An outcome as JSON, for the page.
fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Sent(s) => json!({"index": s.index, "message": s.message}),
        Outcome::Created(session, parties) => json!({"session": session, "parties": parties}),
        Outcome::Invite(link) => json!({"link": link}),
        Outcome::SideRoom(room) => json!({"room": room}),
        Outcome::Proposed(agreement) => json!({"agreement": agreement}),
        Outcome::Closed(statement) => {
            json!({"statement": statement.as_ref().map(statement_json)})
        }
        Outcome::Statement(s) => json!({"statement": statement_json(s)}),
        _ => json!({}),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Mediator => "mediator",
        Role::CoMediator => "co_mediator",
        Role::PartyMember => "party_member",
    }
}

fn membership_name(m: &Membership) -> &'static str {
    match m {
        Membership::Knocking { .. } => "knocking",
        Membership::Waiting { .. } => "waiting",
        Membership::Admitted => "admitted",
        Membership::Ready => "ready",
        Membership::Closed => "closed",
    }
}

fn phase(text: &str) -> Result<Phase, JsError> {
    serde_json::from_value(Value::String(text.to_owned()))
        .map_err(|_| refused(format!("no phase called {text:?}")))
}

fn step(text: &str) -> Result<Step, JsError> {
    match text {
        "continue" => Ok(Step::Continue),
        "joint_meeting" => Ok(Step::JointMeeting),
        other => Err(refused(format!("no step called {other:?}"))),
    }
}

/// An offer as the page's form gives it:
/// `{ counter?: bool, respondsTo?: id, currency?: "GBP", amount?: "250000.00",
///    terms?: "…", conditions?: ["…"] }`.
fn offer_from(json: &str) -> Result<Offer, JsError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Form {
        #[serde(default)]
        counter: bool,
        responds_to: Option<String>,
        currency: Option<String>,
        amount: Option<String>,
        #[serde(default)]
        terms: String,
        #[serde(default)]
        conditions: Vec<String>,
    }
    let form: Form = serde_json::from_str(json).map_err(refused)?;
    let amount = match form.amount.as_deref().map(str::trim) {
        Some(value) if !value.is_empty() => {
            let currency = form.currency.as_deref().unwrap_or("GBP").trim();
            // As people write sums: "250,000.00".
            let value = value.replace([',', ' '], "");
            Some(Amount::parse(&currency.to_ascii_uppercase(), &value).map_err(refused)?)
        }
        _ => None,
    };
    let offer = Offer {
        kind: if form.counter {
            OfferKind::CounterOffer
        } else {
            OfferKind::Offer
        },
        amount,
        terms: form.terms.trim().to_owned(),
        conditions: form
            .conditions
            .iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect(),
        responds_to: form.responds_to.as_deref().map(digest).transpose()?,
    };
    offer.validate().map_err(refused)?;
    Ok(offer)
}

/// A file to add as a document, as the page's form gives it:
/// `{ title, name, mediaType, size, sha256 }` (`sha256` from a
/// [`DocumentHasher`]; an empty `mediaType` when the browser does not know
/// it).
fn new_document(json: &str) -> Result<NewDocument, JsError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Form {
        title: String,
        name: String,
        #[serde(default)]
        media_type: String,
        size: u64,
        sha256: String,
    }
    let form: Form = serde_json::from_str(json).map_err(refused)?;
    let hash = caucus_protocol::b64::decode_array(&form.sha256)
        .map(Digest)
        .ok_or_else(|| refused("not a SHA-256"))?;
    let media_type = match form.media_type.trim() {
        "" => UNKNOWN_MEDIA_TYPE.to_owned(),
        known => known.to_owned(),
    };
    Ok(NewDocument {
        title: form.title.trim().to_owned(),
        name: form.name,
        media_type,
        size: form.size,
        hash,
    })
}

/// The SHA-256 of a file, fed in slices as the page reads it (so a large
/// file is never whole in memory): the hash a document names and a
/// download is checked against, by the same code.
#[wasm_bindgen]
#[derive(Default)]
pub struct DocumentHasher(Hasher);

#[wasm_bindgen]
impl DocumentHasher {
    /// An empty hash.
    #[wasm_bindgen(constructor)]
    pub fn new() -> DocumentHasher {
        Self(Hasher::new())
    }

    /// Add the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of everything added, in base64url (for `addDocument`).
    pub fn finish(self) -> String {
        caucus_protocol::b64::encode(&self.0.finish().0)
    }
}

/// Refuse a file too large to be a document (`name`, `size` in bytes),
/// with the sentence people read, before the page reads any of it.
#[wasm_bindgen(js_name = checkDocumentSize)]
pub fn check_document_size(name: &str, size: f64) -> Result<(), JsError> {
    DocumentError::check_size(name, size.max(0.0) as u64).map_err(refused)
}

/// A size in bytes as people read it: "512 bytes", "48 KB", "2.4 MB".
#[wasm_bindgen(js_name = formatSize)]
pub fn format_size_words(bytes: f64) -> String {
    format_size(bytes.max(0.0) as u64)
}

/// What an invite link says before joining: the session, the mediator's
/// safety code to compare, and when it expires (seconds since the Unix
/// epoch), as JSON. Works with no device and no relay.
#[wasm_bindgen(js_name = readInvite)]
pub fn read_invite(link: &str) -> Result<String, JsError> {
    let invite = Invite::from_link(link).map_err(refused)?;
    Ok(json!({
        "relay": invite.relay,
        "relayKey": invite.relay_key,
        "session": invite.session,
        "mediator": invite.mediator,
        "mediatorSafetyCode": invite.mediator.safety_code(),
        "expiresAt": invite.expires_at,
        "link": invite.to_link(),
    })
    .to_string())
}

/// Whether two relay URLs name the same relay (case, a default port, a
/// trailing `/` aside): the rule the machine applies to an invitation.
#[wasm_bindgen(js_name = sameRelay)]
pub fn same_relay(a: &str, b: &str) -> bool {
    caucus_protocol::invite::same_relay(a, b)
}

/// Check a copy of a signed agreement — the Markdown or JSON download, or
/// the bare signed copy — with nothing else: no relay, no device. Gives
/// the signed agreement as JSON (title, terms, checklist, signers), or
/// throws saying what is wrong (a signature that fails, readable text that
/// differs from what was signed).
#[wasm_bindgen(js_name = verifyAgreement)]
pub fn verify_agreement(text: &str) -> Result<String, JsError> {
    let v = verify_export(text).map_err(refused)?;
    Ok(json!({
        "hash": v.agreement,
        "title": v.title,
        "terms": v.terms,
        "checklist": v.checklist,
        "attachments": v.attachments,
        "signers": v.signers.iter().map(|(name, party, f)| json!({
            "name": name, "party": party, "device": f, "safetyCode": f.safety_code(),
        })).collect::<Vec<_>>(),
    })
    .to_string())
}

/// A kept record of an erased session (`what` "agreement" or "deletion",
/// its bytes as `takeChanges` handed them out), as JSON: the agreement
/// with its downloads, or the relay's deletion statement; both checked.
#[wasm_bindgen(js_name = readKept)]
pub fn read_kept(what: &str, bytes: &Uint8Array) -> Result<String, JsError> {
    let bytes = bytes.to_vec();
    let value = match what {
        "agreement" => agreement_json(&SignedAgreement::from_bytes(&bytes).map_err(refused)?),
        "deletion" => {
            statement_json(&SignedDeletionStatement::from_bytes(&bytes).map_err(refused)?)
        }
        other => return Err(refused(format!("nothing is kept as {other:?}"))),
    };
    Ok(value.to_string())
}

#[wasm_bindgen]
impl Device {
    /// A new device with fresh keys (from the browser's Web Crypto
    /// randomness), for the relay at `relay` (`wss://…`). Its secret keys
    /// are handed out once, in the first [`Device::take_changes`], to be
    /// stored; it sends nothing before.
    pub fn create(relay: &str) -> Result<Device, JsError> {
        let keys = DeviceKeys::generate().map_err(refused)?;
        Ok(Self {
            identity: Some(keys.to_secret_bytes()),
            machine: Machine::new(keys, relay),
        })
    }

    /// The device whose secret keys a new device handed out
    /// (`takeChanges().identity`), for the relay at `relay`. Its sessions
    /// come back with [`Device::restore_session`].
    pub fn restore(relay: &str, identity: &Uint8Array) -> Result<Device, JsError> {
        let keys = DeviceKeys::from_secret_bytes(&secret(identity)).map_err(refused)?;
        Ok(Self {
            machine: Machine::new(keys, relay),
            identity: None,
        })
    }

    /// Take back a saved session: its latest snapshot and its log records,
    /// in the order they were appended. Gives the session's id, or
    /// `undefined` for a session of another relay (kept, but not this
    /// device's to run).
    #[wasm_bindgen(js_name = restoreSession)]
    pub fn restore_session(
        &mut self,
        snapshot: &Uint8Array,
        log: Vec<Uint8Array>,
    ) -> Result<Option<String>, JsError> {
        let log: Vec<_> = log.iter().map(secret).collect();
        match self
            .machine
            .restore(&secret(snapshot), log.iter().map(|r| r.as_slice()))
        {
            Ok(id) => Ok(Some(id.to_string())),
            Err(ClientError::Usage(_)) => Ok(None),
            Err(e) => Err(refused(e)),
        }
    }

    /// The sessions this device holds.
    #[wasm_bindgen(getter)]
    pub fn sessions(&self) -> Vec<String> {
        self.machine
            .sessions()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Everything said in `session` that this device has seen or sent, in
    /// order, as a JSON array of the events [`Device::poll_event`] gave.
    pub fn history(&self, session: &str) -> Result<String, JsError> {
        let history = self.machine.history(&session_id(session)?);
        serde_json::to_string(&history).map_err(refused)
    }

    /// `session` as the page shows it, as JSON: where this device stands,
    /// the phase, the parties with their members and gates, the rooms, and
    /// for the lead mediator the waiting room and the invites issued.
    ///
    /// ```text
    /// { session, membership: "knocking"|"waiting"|"admitted"|"ready"|"closed",
    ///   me: { device, safetyCode, name, role, party }, mediator: { device, safetyCode, name },
    ///   phase, parties: [{ id, label, withdrawn, room, agreed: { continue, joint_meeting },
    ///                      members: [{ device, safetyCode, name }] }],
    ///   mediators: [{ device, safetyCode, name, role }],
    ///   rooms: [{ id, kind: "private"|"joint"|"side", party?, label, open, members: [device] }],
    ///   waiting?: [{ device, safetyCode, name, party }], invites?: [InviteEntry],
    ///   agreement?: { … } }
    /// ```
    pub fn view(&self, session: &str) -> Result<String, JsError> {
        let id = session_id(session)?;
        let m = &self.machine;
        let membership = m
            .membership(&id)
            .ok_or_else(|| refused("this device holds no such session"))?;
        let me = m.fingerprint();
        let person = |f: &Fingerprint| json!({"device": f, "safetyCode": f.safety_code(), "name": m.name_of(&id, f)});
        let Ok(roster) = m.roster(&id) else {
            // Not admitted yet: all there is to show is the wait, and the
            // mediator the invite pins.
            let pinned = match membership {
                Membership::Knocking { link } | Membership::Waiting { link } => {
                    Invite::from_link(link).ok().map(|i| i.mediator)
                }
                _ => None,
            };
            return Ok(json!({
                "session": id,
                "membership": membership_name(membership),
                "me": {"device": me, "safetyCode": me.safety_code()},
                "mediator": pinned.map(|f| json!({"device": f, "safetyCode": f.safety_code(), "name": null})),
            }).to_string());
        };
        let mine = roster.member(&me);
        let not_agreed = |step| m.parties_not_agreed(&id, step).unwrap_or_default();
        let (no_continue, no_joint) = (not_agreed(Step::Continue), not_agreed(Step::JointMeeting));
        let label = |p: &PartyId| m.party_label(&id, p);
        let parties: Vec<Value> = roster
            .parties
            .iter()
            .map(|p| {
                let members: Vec<Value> = roster
                    .members
                    .iter()
                    .filter(|x| x.party == Some(p.id))
                    .map(|x| person(&x.id()))
                    .collect();
                json!({
                    "id": p.id,
                    "label": label(&p.id),
                    "withdrawn": p.withdrawn,
                    "room": roster.private_room(&p.id).map(|r| r.id),
                    "agreed": {
                        "continue": !no_continue.contains(&p.id),
                        "joint_meeting": !no_joint.contains(&p.id),
                    },
                    "members": members,
                })
            })
            .collect();
        let mediators: Vec<Value> = roster
            .members
            .iter()
            .filter(|x| x.role.is_mediator())
            .map(|x| {
                let mut p = person(&x.id());
                p["role"] = json!(role_name(x.role));
                p
            })
            .collect();
        let rooms: Vec<Value> = roster
            .rooms
            .iter()
            .map(|r| {
                let (kind, party) = match r.kind {
                    RoomKind::Private(p) => ("private", Some(p)),
                    RoomKind::Joint => ("joint", None),
                    RoomKind::Side => ("side", None),
                };
                json!({
                    "id": r.id,
                    "kind": kind,
                    "party": party,
                    "label": party.map(|p| label(&p)),
                    "open": r.open,
                    "members": r.members,
                })
            })
            .collect();
        let lead = roster
            .members
            .iter()
            .find(|x| x.role == Role::Mediator)
            .map(|x| person(&x.id()));
        let mut view = json!({
            "session": id,
            "membership": membership_name(membership),
            "me": {
                "device": me,
                "safetyCode": me.safety_code(),
                "name": m.name_of(&id, &me),
                "role": mine.map(|x| role_name(x.role)),
                "party": mine.and_then(|x| x.party),
            },
            "mediator": lead,
            "phase": roster.phase,
            "parties": parties,
            "mediators": mediators,
            "rooms": rooms,
            "agreement": m.agreement(&id).as_ref().map(agreement_json),
        });
        if let (Ok(waiting), Ok(invites)) = (m.waiting(&id), m.invites(&id)) {
            view["waiting"] = waiting
                .iter()
                .map(|k| {
                    let f = k.request.identity.fingerprint();
                    json!({"device": f, "safetyCode": f.safety_code(), "name": k.name, "party": k.party})
                })
                .collect();
            view["invites"] = invites
                .iter()
                .map(|i| {
                    json!({"id": i.id, "name": i.name, "party": i.party, "used": i.used,
                           "autoAdmit": i.auto_admit, "link": i.link})
                })
                .collect();
        }
        Ok(view.to_string())
    }

    /// This device's fingerprint.
    #[wasm_bindgen(getter)]
    pub fn fingerprint(&self) -> String {
        self.machine.fingerprint().to_string()
    }

    /// The safety code to compare aloud with the mediator.
    #[wasm_bindgen(getter, js_name = safetyCode)]
    pub fn safety_code(&self) -> String {
        self.machine.fingerprint().safety_code()
    }

    /// The websocket opened.
    pub fn connected(&mut self, now: f64) {
        self.machine.connected(at(now));
    }

    /// The websocket closed.
    pub fn disconnected(&mut self, now: f64) {
        self.machine.disconnected(at(now));
    }

    /// Whether the machine is connected and has caught up with every
    /// session it follows.
    #[wasm_bindgen(getter, js_name = caughtUp)]
    pub fn caught_up(&self) -> bool {
        self.machine.is_caught_up()
    }

    /// A text frame from the relay.
    #[wasm_bindgen(js_name = handleFrame)]
    pub fn handle_frame(&mut self, text: &str, now: f64) {
        self.machine.handle_frame(text, at(now));
    }

    /// The time [`Device::poll_timeout`] gave has come.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now: f64) {
        self.machine.handle_timeout(at(now));
    }

    /// When to call [`Device::handle_timeout`] next, if ever.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.machine.poll_timeout().map(|t| t.as_millis() as f64)
    }

    /// Take what changed, to store before anything more is sent:
    /// `undefined` if nothing did, else
    ///
    /// ```text
    /// { identity?: Uint8Array,          // a new device's secret keys, once
    ///   sessions: [{ session: "id",
    ///                erase: bool,        // delete its snapshot and log first
    ///                appended: Uint8Array[],  // log records, in order
    ///                snapshot?: Uint8Array,   // replaces the old one whole
    ///                kept: [{ what: "agreement" | "deletion", bytes: Uint8Array }] }] }
    /// ```
    ///
    /// (`caucus_client_core::Changes`, in the order it says to write).
    #[wasm_bindgen(js_name = takeChanges)]
    pub fn take_changes(&mut self) -> Result<JsValue, JsValue> {
        let changes = self.machine.take_changes().map_err(refused)?;
        if changes.sessions.is_empty() && self.identity.is_none() {
            return Ok(JsValue::UNDEFINED);
        }
        let out = Object::new();
        if let Some(identity) = self.identity.take() {
            set(&out, "identity", &Uint8Array::from(identity.as_slice()))?;
        }
        let sessions = Array::new();
        for (id, c) in &changes.sessions {
            let session = Object::new();
            set(&session, "session", &JsValue::from_str(&id.to_string()))?;
            set(&session, "erase", &JsValue::from_bool(c.erase))?;
            let appended: Array = c
                .appended
                .iter()
                .map(|r| Uint8Array::from(r.as_slice()))
                .collect();
            set(&session, "appended", &appended)?;
            if let Some(snapshot) = &c.snapshot {
                set(&session, "snapshot", &Uint8Array::from(snapshot.as_slice()))?;
            }
            let kept = Array::new();
            for (what, bytes) in &c.kept {
                let record = Object::new();
                let what = match what {
                    Kept::Agreement => "agreement",
                    Kept::Deletion => "deletion",
                };
                set(&record, "what", &JsValue::from_str(what))?;
                set(&record, "bytes", &Uint8Array::from(bytes.as_slice()))?;
                kept.push(&record);
            }
            set(&session, "kept", &kept)?;
            sessions.push(&session);
        }
        set(&out, "sessions", &sessions)?;
        Ok(out.into())
    }

    /// The next frame to send, if any (never before changes are taken).
    #[wasm_bindgen(js_name = pollTransmit)]
    pub fn poll_transmit(&mut self) -> Option<String> {
        if self.identity.is_some() {
            return None;
        }
        self.machine.poll_transmit()
    }

    /// The next event, as JSON.
    #[wasm_bindgen(js_name = pollEvent)]
    pub fn poll_event(&mut self) -> Option<String> {
        let event = self.machine.poll_event()?;
        serde_json::to_string(&event).ok()
    }

    /// The next finished operation, as JSON: `{"op": N, "ok": {…}}` or
    /// `{"op": N, "error": "why"}`.
    #[wasm_bindgen(js_name = pollDone)]
    pub fn poll_done(&mut self) -> Option<String> {
        let (op, outcome) = self.machine.poll_done()?;
        let done = match outcome {
            Ok(o) => json!({"op": op.as_u64(), "ok": outcome_json(&o)}),
            Err(e) => json!({"op": op.as_u64(), "error": e.to_string()}),
        };
        Some(done.to_string())
    }

    // ----- as a joiner, or anyone in a session -----

    /// Join from an invite link (or its web address), and wait to be let
    /// in. Gives the session's id.
    pub fn join(&mut self, link: &str, now: f64) -> Result<String, JsError> {
        let (session, _) = self.machine.join(link, at(now)).map_err(refused)?;
        Ok(session.to_string())
    }

    /// Send text in a room (its id); *mediator only* unless `may_share`.
    #[wasm_bindgen(js_name = sendText)]
    pub fn send_text(
        &mut self,
        session: &str,
        room: &str,
        text: &str,
        may_share: bool,
        now: f64,
    ) -> Result<f64, JsError> {
        let session = session_id(session)?;
        let room = self.machine.room_named(&session, room).map_err(refused)?;
        let sharing = if may_share {
            Sharing::MayShare
        } else {
            Sharing::MediatorOnly
        };
        done(self.machine.send(&session, &room, text, sharing, at(now)))
    }

    /// Erase this device's copy of `session`, keeping the concluded
    /// agreement (handed out in the next [`Device::take_changes`]).
    pub fn erase(&mut self, session: &str) -> Result<(), JsError> {
        self.machine.erase(&session_id(session)?).map_err(refused)
    }

    // ----- documents -----

    /// Add a document to a room (its id), *mediator only* unless
    /// `may_share`: `document` is the form's JSON (see `new_document`). A
    /// file over the size limit is refused at once, before anything is
    /// sent. The file's bytes are asked for with [`Device::poll_read`]; the
    /// outcome is the document's message. The same file added again after
    /// a reload resumes its upload.
    #[wasm_bindgen(js_name = addDocument)]
    pub fn add_document(
        &mut self,
        session: &str,
        room: &str,
        document: &str,
        may_share: bool,
        now: f64,
    ) -> Result<f64, JsError> {
        let session = session_id(session)?;
        let room = self.machine.room_named(&session, room).map_err(refused)?;
        let sharing = if may_share {
            Sharing::MayShare
        } else {
            Sharing::MediatorOnly
        };
        done(
            self.machine
                .add_document(&session, &room, new_document(document)?, sharing, at(now)),
        )
    }

    /// As the mediator: carry a document (its message) to another room:
    /// as it is (`own` empty), or as a document of the mediator's own
    /// (`own`: the form's JSON of the file standing for it, uploaded
    /// first). A *mediator only* document needs its author's consent.
    #[wasm_bindgen(js_name = carryDocument)]
    pub fn carry_document(
        &mut self,
        session: &str,
        message: &str,
        destination: &str,
        own: &str,
        now: f64,
    ) -> Result<f64, JsError> {
        let destination = RoomId::parse(destination).ok_or_else(|| refused("not a room"))?;
        let own = match own {
            "" => None,
            form => Some(new_document(form)?),
        };
        done(self.machine.carry_document(
            &session_id(session)?,
            &digest(message)?,
            &destination,
            own,
            at(now),
        ))
    }

    /// Download a document (its message): its opened chunks come from
    /// [`Device::poll_chunk`], and the operation ends well only once every
    /// chunk opened and the whole file's SHA-256 is the one it names;
    /// otherwise its error says what was wrong. Keep the chunks aside until
    /// then.
    pub fn download(&mut self, session: &str, message: &str, now: f64) -> Result<f64, JsError> {
        done(
            self.machine
                .download(&session_id(session)?, &digest(message)?, at(now)),
        )
    }

    /// The next bytes of an upload's file the machine wants, as JSON
    /// `{ transfer, index, start, end }`: give `file[start..end]` to
    /// [`Device::provide_chunk`].
    #[wasm_bindgen(js_name = pollRead)]
    pub fn poll_read(&mut self) -> Option<String> {
        let r = self.machine.poll_read()?;
        Some(
            json!({
                "transfer": r.transfer.as_u64(),
                "index": r.index,
                "start": r.range.start,
                "end": r.range.end,
            })
            .to_string(),
        )
    }

    /// The bytes a [`Device::poll_read`] asked for. Bytes no longer wanted
    /// are passed over; bytes of the wrong length fail the upload (the
    /// file changed).
    #[wasm_bindgen(js_name = provideChunk)]
    pub fn provide_chunk(&mut self, transfer: f64, index: u32, bytes: &[u8], now: f64) {
        if let Some(id) = self.transfer(transfer) {
            self.machine.provide_chunk(id, index, bytes, at(now));
        }
    }

    /// The next opened chunk of a download:
    /// `{ transfer, index, offset, bytes: Uint8Array }`, the file's bytes
    /// at `offset`.
    #[wasm_bindgen(js_name = pollChunk)]
    pub fn poll_chunk(&mut self) -> Result<JsValue, JsValue> {
        let Some(c) = self.machine.poll_chunk() else {
            return Ok(JsValue::UNDEFINED);
        };
        let out = Object::new();
        set(
            &out,
            "transfer",
            &JsValue::from_f64(c.transfer.as_u64() as f64),
        )?;
        set(&out, "index", &JsValue::from(c.index))?;
        set(&out, "offset", &JsValue::from_f64(c.offset as f64))?;
        set(&out, "bytes", &Uint8Array::from(c.bytes.as_slice()))?;
        Ok(out.into())
    }

    /// The documents this device can see in `session`, in order, as JSON:
    /// `[{ message, room, index, sender, sharing: "mediator_only"|"may_share"|null,
    ///     carried: { from, mode }|null, document: { title, name, media_type, size, sha256 } }]`.
    pub fn documents(&self, session: &str) -> Result<String, JsError> {
        let documents: Vec<Value> = self
            .machine
            .documents(&session_id(session)?)
            .iter()
            .map(|d| {
                json!({
                    "message": d.message,
                    "room": d.room,
                    "index": d.index,
                    "sender": d.sender,
                    "sharing": d.sharing,
                    "carried": d.carried.map(|(from, mode)| json!({"from": from, "mode": mode})),
                    "document": d.document,
                })
            })
            .collect();
        Ok(Value::from(documents).to_string())
    }

    /// Every transfer in progress, as JSON:
    /// `[{ id, session, kind: "upload"|"download", document, done, total }]`
    /// (`done` and `total` in bytes of the file).
    pub fn transfers(&self) -> String {
        let transfers: Vec<Value> = self
            .machine
            .transfers()
            .iter()
            .map(|t| {
                json!({
                    "id": t.id.as_u64(),
                    "session": t.session,
                    "kind": match t.kind {
                        TransferKind::Upload => "upload",
                        TransferKind::Download => "download",
                    },
                    "document": t.document,
                    "done": t.done,
                    "total": t.total,
                })
            })
            .collect();
        Value::from(transfers).to_string()
    }

    /// Stop a transfer (its operation id): it ends with an error; a stopped
    /// upload is forgotten.
    #[wasm_bindgen(js_name = cancelTransfer)]
    pub fn cancel_transfer(&mut self, transfer: f64) {
        if let Some(id) = self.transfer(transfer) {
            self.machine.cancel_transfer(id);
        }
    }

    /// Uploads of `session` begun and not finished (kept with it), as JSON
    /// `[{ title, name, media_type, size, sha256 }]`: adding the same file
    /// again finishes one.
    #[wasm_bindgen(js_name = pendingUploads)]
    pub fn pending_uploads(&self, session: &str) -> Result<String, JsError> {
        let pending = self.machine.pending_uploads(&session_id(session)?);
        serde_json::to_string(&pending).map_err(refused)
    }

    // ----- as a party member -----

    /// Let the mediator share one of this member's *mediator only* messages.
    pub fn consent(&mut self, session: &str, message: &str, now: f64) -> Result<f64, JsError> {
        done(
            self.machine
                .consent(&session_id(session)?, &digest(message)?, at(now)),
        )
    }

    /// Agree, for this member's party, to a step: `"continue"` or
    /// `"joint_meeting"`.
    pub fn agree(&mut self, session: &str, step_name: &str, now: f64) -> Result<f64, JsError> {
        done(
            self.machine
                .agree(&session_id(session)?, step(step_name)?, at(now)),
        )
    }

    /// Tell the mediator this member's status: `"ready"`,
    /// `"needs_mediator"` or `"on_break"`.
    #[wasm_bindgen(js_name = setStatus)]
    pub fn set_status(&mut self, session: &str, status: &str, now: f64) -> Result<f64, JsError> {
        let status: PartyStatus = serde_json::from_value(Value::String(status.to_owned()))
            .map_err(|_| refused(format!("no status called {status:?}")))?;
        done(
            self.machine
                .set_status(&session_id(session)?, status, at(now)),
        )
    }

    /// Make an offer (or, with `counter` and `respondsTo`, a counter-offer)
    /// in this member's private room; see the form's fields at
    /// `offer_from`.
    #[wasm_bindgen(js_name = makeOffer)]
    pub fn make_offer(&mut self, session: &str, offer: &str, now: f64) -> Result<f64, JsError> {
        done(
            self.machine
                .make_offer(&session_id(session)?, &offer_from(offer)?, at(now)),
        )
    }

    /// Give notice that this member's party withdraws from the mediation.
    pub fn withdraw(&mut self, session: &str, now: f64) -> Result<f64, JsError> {
        done(self.machine.withdraw(&session_id(session)?, at(now)))
    }

    /// Sign the proposed agreement whose hash is `agreement`.
    #[wasm_bindgen(js_name = signAgreement)]
    pub fn sign_agreement(
        &mut self,
        session: &str,
        agreement: &str,
        now: f64,
    ) -> Result<f64, JsError> {
        done(
            self.machine
                .sign_agreement(&session_id(session)?, &digest(agreement)?, at(now)),
        )
    }

    // ----- as the mediator -----

    /// Create a session with these parties; the outcome names it.
    #[wasm_bindgen(js_name = createSession)]
    pub fn create_session(
        &mut self,
        name: &str,
        parties: Vec<String>,
        now: f64,
    ) -> Result<f64, JsError> {
        let labels: Vec<&str> = parties.iter().map(String::as_str).collect();
        done(
            self.machine
                .create_session(name, &labels, at(now))
                .map(|(_, id)| id),
        )
    }

    /// An invite link for `name` to join the party `party` (its id or
    /// label), or as a co-mediator when `party` is empty, valid for
    /// `valid_hours`; with `automatic`, they are let in without waiting for
    /// the mediator.
    pub fn invite(
        &mut self,
        session: &str,
        party: &str,
        name: &str,
        valid_hours: f64,
        automatic: bool,
        now: f64,
    ) -> Result<f64, JsError> {
        let session = session_id(session)?;
        let expires = at(now).as_secs() + (valid_hours.max(0.0) as u64) * 3600;
        let admission = if automatic {
            Admission::Automatic
        } else {
            Admission::ByMediator
        };
        done(if party.is_empty() {
            self.machine
                .invite_co_mediator(&session, name, expires, admission, at(now))
        } else {
            let party = self.machine.party_named(&session, party).map_err(refused)?;
            self.machine
                .invite(&session, &party, name, expires, admission, at(now))
        })
    }

    /// Let in someone from the waiting room.
    pub fn admit(&mut self, session: &str, member: &str, now: f64) -> Result<(), JsError> {
        self.machine
            .admit(&session_id(session)?, &device(member)?, at(now))
            .map_err(refused)
    }

    /// Turn away someone in the waiting room; their invite is spent.
    pub fn decline(&mut self, session: &str, member: &str, now: f64) -> Result<f64, JsError> {
        done(
            self.machine
                .decline(&session_id(session)?, &device(member)?, at(now)),
        )
    }

    /// Remove a member from the session.
    #[wasm_bindgen(js_name = removeMember)]
    pub fn remove_member(&mut self, session: &str, member: &str, now: f64) -> Result<f64, JsError> {
        done(
            self.machine
                .remove_member(&session_id(session)?, &device(member)?, at(now)),
        )
    }

    /// Take back a party that withdrew.
    pub fn readmit(&mut self, session: &str, party: &str, now: f64) -> Result<f64, JsError> {
        let session = session_id(session)?;
        let party = self.machine.party_named(&session, party).map_err(refused)?;
        done(self.machine.readmit(&session, &party, at(now)))
    }

    /// Move the mediation to a phase: `"preparation"`,
    /// `"individual_meetings"`, `"negotiation"` or `"agreement"`.
    #[wasm_bindgen(js_name = setPhase)]
    pub fn set_phase(&mut self, session: &str, phase_name: &str, now: f64) -> Result<f64, JsError> {
        done(
            self.machine
                .set_phase(&session_id(session)?, phase(phase_name)?, at(now)),
        )
    }

    /// Open or close the joint room.
    #[wasm_bindgen(js_name = setJointOpen)]
    pub fn set_joint_open(&mut self, session: &str, open: bool, now: f64) -> Result<f64, JsError> {
        done(
            self.machine
                .set_joint_open(&session_id(session)?, open, at(now)),
        )
    }

    /// Open a side room with these members (and the mediators).
    #[wasm_bindgen(js_name = openSideRoom)]
    pub fn open_side_room(
        &mut self,
        session: &str,
        members: Vec<String>,
        now: f64,
    ) -> Result<f64, JsError> {
        let members = members
            .iter()
            .map(|m| device(m))
            .collect::<Result<Vec<_>, _>>()?;
        done(
            self.machine
                .create_side_room(&session_id(session)?, &members, at(now)),
        )
    }

    /// Close a side room.
    #[wasm_bindgen(js_name = closeSideRoom)]
    pub fn close_side_room(&mut self, session: &str, room: &str, now: f64) -> Result<f64, JsError> {
        let room = RoomId::parse(room).ok_or_else(|| refused("not a room"))?;
        done(
            self.machine
                .close_side_room(&session_id(session)?, &room, at(now)),
        )
    }

    /// Say which room the mediator is with (its id; empty: away); with
    /// `disclose`, the other parties learn which.
    #[wasm_bindgen(js_name = setLocation)]
    pub fn set_location(
        &mut self,
        session: &str,
        room: &str,
        disclose: bool,
        now: f64,
    ) -> Result<f64, JsError> {
        let room = match room {
            "" => None,
            id => Some(RoomId::parse(id).ok_or_else(|| refused("not a room"))?),
        };
        done(
            self.machine
                .set_location(&session_id(session)?, room, disclose, at(now)),
        )
    }

    /// Carry a message to another room (its id): verbatim, or reframed in
    /// the mediator's words when `reframed` is not empty. A *mediator
    /// only* message needs its author's consent.
    pub fn forward(
        &mut self,
        session: &str,
        message: &str,
        destination: &str,
        reframed: &str,
        now: f64,
    ) -> Result<f64, JsError> {
        let destination = RoomId::parse(destination).ok_or_else(|| refused("not a room"))?;
        let reframed = Some(reframed.trim().to_owned()).filter(|r| !r.is_empty());
        done(self.machine.forward(
            &session_id(session)?,
            &digest(message)?,
            &destination,
            reframed,
            at(now),
        ))
    }

    /// Carry an offer to another room: as made, or restated (`restated`:
    /// the offer form's JSON; empty: as made).
    #[wasm_bindgen(js_name = carryOffer)]
    pub fn carry_offer(
        &mut self,
        session: &str,
        offer: &str,
        destination: &str,
        restated: &str,
        now: f64,
    ) -> Result<f64, JsError> {
        let destination = RoomId::parse(destination).ok_or_else(|| refused("not a room"))?;
        let restated = match restated {
            "" => None,
            form => Some(offer_from(form)?),
        };
        done(self.machine.carry_offer(
            &session_id(session)?,
            &digest(offer)?,
            &destination,
            restated,
            at(now),
        ))
    }

    /// Record an offer for a party (its id or label), as the mediator
    /// heard it.
    #[wasm_bindgen(js_name = makeOfferFor)]
    pub fn make_offer_for(
        &mut self,
        session: &str,
        party: &str,
        offer: &str,
        now: f64,
    ) -> Result<f64, JsError> {
        let session = session_id(session)?;
        let party = self.machine.party_named(&session, party).map_err(refused)?;
        done(
            self.machine
                .make_offer_for(&session, &party, &offer_from(offer)?, at(now)),
        )
    }

    /// Propose an agreement for every party member to sign, attaching the
    /// documents named by the messages that brought them (`attaches`).
    #[wasm_bindgen(js_name = proposeAgreement)]
    pub fn propose_agreement(
        &mut self,
        session: &str,
        title: &str,
        terms: &str,
        checklist: Vec<String>,
        attaches: Vec<String>,
        now: f64,
    ) -> Result<f64, JsError> {
        let checklist: Vec<String> = checklist
            .into_iter()
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty())
            .collect();
        let attaches = attaches
            .iter()
            .map(|m| digest(m))
            .collect::<Result<Vec<_>, _>>()?;
        done(self.machine.propose_agreement(
            &session_id(session)?,
            title,
            terms,
            &checklist,
            &attaches,
            at(now),
        ))
    }

    /// Countersign the proposed agreement once everyone has signed it.
    pub fn countersign(
        &mut self,
        session: &str,
        agreement: &str,
        now: f64,
    ) -> Result<f64, JsError> {
        done(
            self.machine
                .countersign(&session_id(session)?, &digest(agreement)?, at(now)),
        )
    }

    /// Close the session; the outcome carries the relay's deletion
    /// statement if it erased the session at once.
    #[wasm_bindgen(js_name = closeSession)]
    pub fn close_session(&mut self, session: &str, now: f64) -> Result<f64, JsError> {
        done(self.machine.close_session(&session_id(session)?, at(now)))
    }

    /// Ask the relay again for its deletion statement.
    #[wasm_bindgen(js_name = fetchDeletionStatement)]
    pub fn fetch_deletion_statement(&mut self, session: &str, now: f64) -> Result<f64, JsError> {
        done(
            self.machine
                .fetch_deletion_statement(&session_id(session)?, at(now)),
        )
    }
}

impl Device {
    /// The transfer in progress whose operation id JavaScript holds.
    fn transfer(&self, id: f64) -> Option<OpId> {
        self.machine
            .transfers()
            .into_iter()
            .map(|t| t.id)
            .find(|t| t.as_u64() as f64 == id)
    }
}
