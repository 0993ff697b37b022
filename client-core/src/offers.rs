//! The offers log: every settlement offer a device has seen, made or
//! received, in the order it came, read from the session's messages.

use caucus_protocol::content::{Content, ForwardMode};
use caucus_protocol::crypto::Digest;
use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::RoomId;
use caucus_protocol::offer::Offer;
use caucus_protocol::session::Opened;

/// Whether an offer in the log was made here or carried here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Made in a party's private room (by its member, or the mediator for it).
    Made,
    /// Carried in by the mediator from another room.
    Received,
}

/// One entry of the offers log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferEntry {
    /// Made or received.
    pub direction: Direction,
    /// The room it is recorded in: the maker's private room, or the room it
    /// was carried to.
    pub room: RoomId,
    /// Its index there.
    pub index: u64,
    /// Its message id (to carry it, or for a counter-offer to name).
    pub message: Digest,
    /// Who recorded it: the maker, or the mediator who carried it.
    pub by: Fingerprint,
    /// For a made offer: a mediator recorded it for the party (at the
    /// party's request), not one of the party's members. Shown as such: it
    /// is not the party's own signed word.
    pub recorded_by_mediator: bool,
    /// For a received offer: where it came from, and whether the mediator
    /// restated it.
    pub carried: Option<(RoomId, ForwardMode)>,
    /// The offer.
    pub offer: Offer,
}

/// The log of `messages` (a session's, in the order they came); `mediator`
/// tells whether a sender is one of the session's mediators.
pub(crate) fn log(
    messages: &[(u64, Opened)],
    mediator: impl Fn(&Fingerprint) -> bool,
) -> Vec<OfferEntry> {
    messages
        .iter()
        .filter_map(|(index, m)| {
            let (direction, carried, offer) = match &m.content {
                Content::Offer(o) => (Direction::Made, None, o),
                Content::CarriedOffer(c) => {
                    (Direction::Received, Some((c.source_room, c.mode)), &c.offer)
                }
                _ => return None,
            };
            Some(OfferEntry {
                direction,
                room: m.header.room,
                index: *index,
                message: m.hash,
                by: m.header.sender,
                recorded_by_mediator: direction == Direction::Made && mediator(&m.header.sender),
                carried,
                offer: offer.clone(),
            })
        })
        .collect()
}
