//! A connection's bounded outbound queue. The relay never waits on a slow
//! reader: a frame that does not fit marks the connection as lagging, and its
//! task closes it with close code 4000 so the client can resume. The relay
//! may also ask a connection's task to close it with another code
//! ([`Outbox::close`]).

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use caucus_protocol::envelope::PROTOCOL_VERSION;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One frame of text for a client: shared, so that delivering an envelope
/// to every follower and writing it to each socket copies it no more than
/// the socket write does.
pub(crate) type Frame = Utf8Bytes;

/// Frames in a packet between relay nodes (`#[serde(with = "outbox::frames")]`),
/// as a JSON list of strings.
pub(crate) mod frames {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Frame;

    pub(crate) fn serialize<S: Serializer>(frames: &[Frame], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(frames.iter().map(Frame::as_str))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Frame>, D::Error> {
        Ok(Vec::<String>::deserialize(d)?
            .into_iter()
            .map(Frame::from)
            .collect())
    }
}

/// An `envelope` event frame for the envelope whose canonical bytes are
/// `envelope`: exactly the JSON of serializing `Event::Envelope`, written
/// directly. The hot paths (every delivery, every envelope of a catch-up)
/// so skip decoding and re-encoding the envelope and scanning its
/// base64url, which never needs escaping, for characters to escape.
pub(crate) fn envelope_frame(index: u64, envelope: &[u8]) -> Frame {
    envelope_frame_of(index, &caucus_protocol::b64::encode(envelope))
}

/// [`envelope_frame`] for an envelope whose unpadded base64url is `b64`.
pub(crate) fn envelope_frame_of(index: u64, b64: &str) -> Frame {
    let mut frame = String::with_capacity(b64.len() + 64);
    let _ = write!(
        frame,
        "{{\"type\":\"envelope\",\"v\":{PROTOCOL_VERSION},\"index\":{index},\"envelope\":\""
    );
    frame.push_str(b64);
    frame.push_str("\"}");
    frame.into()
}

/// The sending half of one connection's queue.
pub(crate) struct Outbox {
    tx: mpsc::Sender<Frame>,
    lagged: AtomicBool,
    /// A close asked for, with its code and reason.
    closing: OnceLock<(u16, &'static str)>,
    cut: Notify,
}

impl Outbox {
    /// A queue of `capacity` frames and its receiving half.
    pub(crate) fn new(capacity: usize) -> (Arc<Self>, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Arc::new(Self {
                tx,
                lagged: AtomicBool::new(false),
                closing: OnceLock::new(),
                cut: Notify::new(),
            }),
            rx,
        )
    }

    /// Queue a frame; if the queue is full, mark the connection lagging.
    /// Returns whether the frame was queued.
    pub(crate) fn push(&self, frame: Frame) -> bool {
        if self.lagged.load(Ordering::Relaxed) {
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Relaxed);
                self.cut.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Serialize and queue a frame.
    pub(crate) fn send<T: Serialize>(&self, frame: &T) -> bool {
        match serde_json::to_string(frame) {
            Ok(text) => self.push(text.into()),
            Err(_) => false,
        }
    }

    /// Whether the connection fell behind.
    pub(crate) fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Ask the connection's task to close it with `code` and `reason`,
    /// once what is queued is written; the first close asked for wins.
    pub(crate) fn close(&self, code: u16, reason: &'static str) {
        if self.closing.set((code, reason)).is_ok() {
            self.cut.notify_one();
        }
    }

    /// The close asked for, if any.
    pub(crate) fn closing(&self) -> Option<(u16, &'static str)> {
        self.closing.get().copied()
    }

    /// Resolves when the connection falls behind or a close is asked for.
    pub(crate) async fn cut_off(&self) {
        if !self.lagged() && self.closing().is_none() {
            self.cut.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use caucus_protocol::codec::Canonical;
    use caucus_protocol::content::{Content, Sharing};
    use caucus_protocol::identity::DeviceKeys;
    use caucus_protocol::ids::SessionId;
    use caucus_protocol::wire::{Encoded, Event};

    #[test]
    fn envelope_frames_are_the_serialized_event() {
        let mediator = DeviceKeys::generate().unwrap();
        let session = SessionId::random().unwrap();
        let mut builder =
            caucus_protocol::builder::RosterBuilder::new(session, &mediator, "M").unwrap();
        builder.add_party("P").unwrap();
        let (roster, keys) = builder
            .sign(
                &mediator,
                &caucus_protocol::session::SessionView::new(session, mediator.fingerprint()),
            )
            .unwrap();
        let mut view = caucus_protocol::session::SessionView::new(session, mediator.fingerprint());
        view.accept_roster(roster.clone()).unwrap();
        for k in &keys {
            view.seal_key_bundle(&mediator, k).unwrap();
        }
        let room = roster.unverified().rooms[0].id;
        let envelope = view
            .seal(
                &mediator,
                &room,
                &Content::Text {
                    sharing: Sharing::MediatorOnly,
                    body: "words \"quoted\" \\ and more".into(),
                },
            )
            .unwrap();
        for index in [1, 42, u64::MAX] {
            let serde = serde_json::to_string(&Event::Envelope {
                v: PROTOCOL_VERSION,
                index,
                envelope: Encoded(envelope.clone()),
            })
            .unwrap();
            assert_eq!(&*envelope_frame(index, &envelope.to_bytes()), serde);
        }
    }
}
