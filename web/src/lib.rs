//! # caucus-web
//!
//! The client machine of `caucus-client-core`, for the browser: every
//! verification, decision and cryptographic step runs here, compiled to
//! WebAssembly, and the page only moves bytes — frames over the browser's
//! `WebSocket`, changes into IndexedDB, events onto the screen — as the
//! native driver does with tokio (see `docs/client.md`).
//!
//! [`Device`] is the machine as JavaScript sees it: times are milliseconds
//! since the Unix epoch (`Date.now()`), events and outcomes are JSON text,
//! saved state is bytes (`Uint8Array`). `web/src/driver.js` is the driver
//! loop around it, `web/src/store.js` its storage.

use std::fmt::Display;

use caucus_client_core::{Admission, ClientError, Kept, Machine, Outcome, Timestamp};
use caucus_protocol::identity::{DeviceKeys, Fingerprint};
use caucus_protocol::ids::SessionId;
use caucus_protocol::wire::Encoded;
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

/// An outcome as JSON, for the page.
fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Sent(s) => json!({"index": s.index, "message": s.message}),
        Outcome::Created(session, parties) => json!({"session": session, "parties": parties}),
        Outcome::Invite(link) => json!({"link": link}),
        Outcome::SideRoom(room) => json!({"room": room}),
        Outcome::Proposed(agreement) => json!({"agreement": agreement}),
        Outcome::Closed(statement) => {
            json!({"statement": statement.as_ref().map(|s| Encoded(s.clone()))})
        }
        Outcome::Statement(s) => json!({"statement": Encoded(s.clone())}),
        _ => json!({}),
    }
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

    /// (Mediator) create a session with these parties; the outcome names it.
    #[wasm_bindgen(js_name = createSession)]
    pub fn create_session(
        &mut self,
        name: &str,
        parties: Vec<String>,
        now: f64,
    ) -> Result<f64, JsError> {
        let labels: Vec<&str> = parties.iter().map(String::as_str).collect();
        let (_, op) = self
            .machine
            .create_session(name, &labels, at(now))
            .map_err(refused)?;
        Ok(op.as_u64() as f64)
    }

    /// (Mediator) an invite link for `name` to join the party labelled
    /// `party`, valid for `valid_hours`; with `automatic`, they are let in
    /// without waiting for the mediator.
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
        let party = self.machine.party_named(&session, party).map_err(refused)?;
        let expires = at(now).as_secs() + (valid_hours.max(0.0) as u64) * 3600;
        let admission = if automatic {
            Admission::Automatic
        } else {
            Admission::ByMediator
        };
        let op = self
            .machine
            .invite(&session, &party, name, expires, admission, at(now))
            .map_err(refused)?;
        Ok(op.as_u64() as f64)
    }

    /// Join from an invite link, and wait to be let in.
    pub fn join(&mut self, link: &str, now: f64) -> Result<f64, JsError> {
        let (_, op) = self.machine.join(link, at(now)).map_err(refused)?;
        Ok(op.as_u64() as f64)
    }

    /// (Mediator) let in someone from the waiting room.
    pub fn admit(&mut self, session: &str, member: &str, now: f64) -> Result<(), JsError> {
        let member = Fingerprint::parse(member).ok_or_else(|| refused("not a device"))?;
        self.machine
            .admit(&session_id(session)?, &member, at(now))
            .map_err(refused)
    }

    /// Send text in a room named as a person names it (`mine`, `joint`,
    /// or a party's label); *mediator only* unless `may_share`.
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
            caucus_protocol::content::Sharing::MayShare
        } else {
            caucus_protocol::content::Sharing::MediatorOnly
        };
        let op = self
            .machine
            .send(&session, &room, text, sharing, at(now))
            .map_err(refused)?;
        Ok(op.as_u64() as f64)
    }
}
