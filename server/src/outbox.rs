//! A connection's bounded outbound queue. The relay never waits on a slow
//! reader: a frame that does not fit marks the connection as lagging, and its
//! task closes it with close code 4000 so the client can resume. The relay
//! may also ask a connection's task to close it with another code
//! ([`Outbox::close`]).
//!
//! The queue is a `VecDeque` under a mutex rather than a channel: an empty
//! one holds no memory, and one drained after a burst gives its memory back
//! ([`Queue::try_recv`]), where a tokio channel keeps about 1.8 KiB per
//! connection for its life (docs/performance.md, seventh run). Many tasks
//! push, and the connection's task alone takes ([`Queue`]).

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use caucus_protocol::envelope::PROTOCOL_VERSION;
use serde::Serialize;
use tokio::sync::Notify;
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

/// One connection's queue, as every task that sends to it sees it.
pub(crate) struct Outbox {
    /// The frames not yet taken, oldest first.
    frames: Mutex<VecDeque<Frame>>,
    /// The most frames [`Outbox::frames`] holds.
    capacity: usize,
    /// Wakes the connection's task when a frame is queued.
    queued: Notify,
    /// Set once the [`Queue`] is gone: frames are no longer kept.
    gone: AtomicBool,
    lagged: AtomicBool,
    /// A close asked for, with its code and reason.
    closing: OnceLock<(u16, &'static str)>,
    cut: Notify,
}

/// A drained queue holding room for more frames than this gives it back.
const KEPT_WHEN_EMPTY: usize = 16;

impl Outbox {
    /// A queue of `capacity` frames, and the [`Queue`] its connection's
    /// task takes them from.
    pub(crate) fn new(capacity: usize) -> (Arc<Self>, Queue) {
        let outbox = Arc::new(Self {
            frames: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            queued: Notify::new(),
            gone: AtomicBool::new(false),
            lagged: AtomicBool::new(false),
            closing: OnceLock::new(),
            cut: Notify::new(),
        });
        (outbox.clone(), Queue(outbox))
    }

    /// The queued frames. A task that panicked holding them left them
    /// whole (a push or a pop), so a poisoned lock is taken as it is.
    fn frames(&self) -> MutexGuard<'_, VecDeque<Frame>> {
        self.frames.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue a frame; if the queue is full, mark the connection lagging.
    /// Returns whether the frame was queued.
    pub(crate) fn push(&self, frame: Frame) -> bool {
        if self.lagged.load(Ordering::Relaxed) {
            return false;
        }
        let mut frames = self.frames();
        // Read under the lock that dropping the queue takes to set it, so
        // that no frame is kept after the queue has emptied it.
        if self.gone.load(Ordering::Relaxed) {
            return false;
        }
        if frames.len() >= self.capacity {
            drop(frames);
            self.lagged.store(true, Ordering::Relaxed);
            self.cut.notify_one();
            return false;
        }
        frames.push_back(frame);
        drop(frames);
        self.queued.notify_one();
        true
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

/// The receiving end of an [`Outbox`]: its connection's task alone holds
/// it. Once it is dropped, the outbox keeps no frames.
pub(crate) struct Queue(Arc<Outbox>);

impl Queue {
    /// The next frame, once there is one.
    pub(crate) async fn recv(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.try_recv() {
                return frame;
            }
            // A frame queued since the check left a permit: no wake is lost.
            self.0.queued.notified().await;
        }
    }

    /// The next frame, if one is queued. Taking the last gives back the
    /// room a burst made.
    pub(crate) fn try_recv(&mut self) -> Option<Frame> {
        let mut frames = self.0.frames();
        let frame = frames.pop_front();
        if frames.is_empty() && frames.capacity() > KEPT_WHEN_EMPTY {
            *frames = VecDeque::new();
        }
        frame
    }

    /// Up to `max` frames, once there is at least one, appended to `into`;
    /// how many.
    pub(crate) async fn recv_many(&mut self, into: &mut Vec<Frame>, max: usize) -> usize {
        into.push(self.recv().await);
        1 + self.take(into, max.saturating_sub(1))
    }

    /// Up to `max` frames already queued, appended to `into`; how many.
    pub(crate) fn take(&mut self, into: &mut Vec<Frame>, max: usize) -> usize {
        let mut n = 0;
        while n < max
            && let Some(frame) = self.try_recv()
        {
            into.push(frame);
            n += 1;
        }
        n
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let mut frames = self.0.frames();
        self.0.gone.store(true, Ordering::Relaxed);
        *frames = VecDeque::new();
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

    fn frame(n: usize) -> Frame {
        n.to_string().into()
    }

    #[test]
    fn frames_come_out_in_order_and_one_past_the_capacity_cuts_the_connection_off() {
        let (outbox, mut queue) = Outbox::new(3);
        for n in 0..3 {
            assert!(outbox.push(frame(n)));
        }
        assert!(!outbox.lagged());
        assert!(!outbox.push(frame(3)));
        assert!(outbox.lagged());
        // Lagging, it takes nothing more, even with room again.
        assert_eq!(queue.try_recv().as_deref(), Some("0"));
        assert!(!outbox.push(frame(4)));
        let mut rest = Vec::new();
        assert_eq!(queue.take(&mut rest, 10), 2);
        assert_eq!(
            rest.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert!(queue.try_recv().is_none());
        // The cut-off is seen by a task that waits for it only now.
        assert!(futures_util::FutureExt::now_or_never(outbox.cut_off()).is_some());
    }

    #[test]
    fn a_queue_drained_after_a_burst_gives_its_memory_back() {
        let (outbox, mut queue) = Outbox::new(1024);
        for n in 0..500 {
            assert!(outbox.push(frame(n)));
        }
        assert!(outbox.frames().capacity() >= 500);
        let mut taken = Vec::new();
        while queue.take(&mut taken, 64) > 0 {}
        assert_eq!(taken.len(), 500);
        assert_eq!(outbox.frames().capacity(), 0);
        // A few frames at a time keep their little room.
        assert!(outbox.push(frame(0)));
        assert!(queue.try_recv().is_some());
        assert!(outbox.frames().capacity() > 0);
    }

    #[test]
    fn once_its_queue_is_dropped_an_outbox_keeps_nothing() {
        let (outbox, queue) = Outbox::new(8);
        assert!(outbox.push(frame(1)));
        drop(queue);
        assert_eq!(outbox.frames().capacity(), 0);
        assert!(!outbox.push(frame(2)));
        assert!(outbox.frames().is_empty());
        assert!(!outbox.lagged());
    }

    #[tokio::test]
    async fn a_waiting_task_wakes_for_a_frame_pushed_after_it_began_to_wait() {
        let (outbox, mut queue) = Outbox::new(8);
        let waiting = tokio::spawn(async move {
            let mut got = vec![queue.recv().await];
            queue.recv_many(&mut got, 8).await;
            got
        });
        tokio::task::yield_now().await;
        assert!(outbox.push(frame(1)));
        assert!(outbox.push(frame(2)));
        let got = waiting.await.unwrap();
        assert_eq!(
            got.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            ["1", "2"]
        );
    }

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
