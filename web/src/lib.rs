//! # caucus-web
//!
//! The client machine of `caucus-client-core`, for the browser: every
//! verification, decision and cryptographic step runs here, compiled to
//! WebAssembly, and the page only moves bytes — frames over the browser's
//! `WebSocket`, changes into storage, events onto the screen — as the
//! native driver does with tokio (see `docs/client.md`).
//!
//! [`Device`] is the machine as JavaScript sees it: times are milliseconds
//! since the Unix epoch (`Date.now()`), events and outcomes are JSON text.
//! `web/src/driver.js` is the driver loop around it.

use std::fmt::Display;

use caucus_client_core::{Admission, Machine, Outcome, Timestamp};
use caucus_protocol::identity::{DeviceKeys, Fingerprint};
use caucus_protocol::ids::SessionId;
use caucus_protocol::wire::Encoded;
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;

/// One device in the browser: its keys and sessions, and its conversation
/// with one relay.
#[wasm_bindgen]
pub struct Device {
    machine: Machine,
}

fn at(now: f64) -> Timestamp {
    // `Date.now()` is a whole, non-negative number of milliseconds.
    Timestamp::from_millis(now.max(0.0) as u64)
}

fn refused(e: impl Display) -> JsError {
    JsError::new(&e.to_string())
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
    /// randomness), for the relay at `relay` (`wss://…`).
    #[wasm_bindgen(constructor)]
    pub fn new(relay: &str) -> Result<Device, JsError> {
        let keys = DeviceKeys::generate().map_err(refused)?;
        Ok(Self {
            machine: Machine::new(keys, relay),
        })
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

    /// Take what changed. Until the web client keeps sessions in IndexedDB
    /// (issue 13), the page keeps nothing across a reload; this returns
    /// how many bytes there were to keep.
    #[wasm_bindgen(js_name = takeChanges)]
    pub fn take_changes(&mut self) -> Result<f64, JsError> {
        let changes = self.machine.take_changes().map_err(refused)?;
        let bytes: usize = changes
            .sessions
            .values()
            .map(|c| {
                c.appended.iter().map(|r| r.len()).sum::<usize>()
                    + c.snapshot.as_ref().map_or(0, |s| s.len())
            })
            .sum();
        Ok(bytes as f64)
    }

    /// The next frame to send, if any (never before changes are taken).
    #[wasm_bindgen(js_name = pollTransmit)]
    pub fn poll_transmit(&mut self) -> Option<String> {
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
