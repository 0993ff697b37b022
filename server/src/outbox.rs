//! A connection's bounded outbound queue. The relay never waits on a slow
//! reader: a frame that does not fit marks the connection as lagging, and its
//! task closes it with close code 4000 so the client can resume.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::sync::{Notify, mpsc};

/// The sending half of one connection's queue.
pub(crate) struct Outbox {
    tx: mpsc::Sender<Arc<str>>,
    lagged: AtomicBool,
    cut: Notify,
}

impl Outbox {
    /// A queue of `capacity` frames and its receiving half.
    pub(crate) fn new(capacity: usize) -> (Arc<Self>, mpsc::Receiver<Arc<str>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Arc::new(Self {
                tx,
                lagged: AtomicBool::new(false),
                cut: Notify::new(),
            }),
            rx,
        )
    }

    /// Queue a frame; if the queue is full, mark the connection lagging.
    /// Returns whether the frame was queued.
    pub(crate) fn push(&self, frame: Arc<str>) -> bool {
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

    /// Resolves when the connection falls behind.
    pub(crate) async fn cut_off(&self) {
        if !self.lagged() {
            self.cut.notified().await;
        }
    }
}
