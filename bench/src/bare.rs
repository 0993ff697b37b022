//! The bare relay's framing: the least a relay needs to route the same
//! fan-out, with no authentication, no store and no cryptography.
//!
//! A client sends text frames:
//!
//! * `S room room …`: follow these rooms (any tokens without spaces); the
//!   relay answers `K` once it has;
//! * `P room payload`: deliver `payload` as one text frame to every other
//!   connection that follows `room`.
//!
//! The relay sends nothing else: no acknowledgement of a publish, no error.

/// A client frame of the bare relay.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Follow these rooms.
    Subscribe(Vec<&'a str>),
    /// Deliver `payload` to the others who follow `room`.
    Publish {
        /// The room.
        room: &'a str,
        /// What to deliver, as is.
        payload: &'a str,
    },
}

/// Parse a client frame; `None` for anything else.
pub fn parse(text: &str) -> Option<Frame<'_>> {
    if let Some(rooms) = text.strip_prefix("S ") {
        return Some(Frame::Subscribe(
            rooms.split(' ').filter(|r| !r.is_empty()).collect(),
        ));
    }
    let rest = text.strip_prefix("P ")?;
    let (room, payload) = rest.split_once(' ')?;
    Some(Frame::Publish { room, payload })
}

/// A publish frame.
pub fn publish(room: &str, payload: &str) -> String {
    let mut s = String::with_capacity(3 + room.len() + payload.len());
    s.push_str("P ");
    s.push_str(room);
    s.push(' ');
    s.push_str(payload);
    s
}

/// A subscribe frame.
pub fn subscribe<'a>(rooms: impl IntoIterator<Item = &'a str>) -> String {
    let mut s = String::from("S");
    for r in rooms {
        s.push(' ');
        s.push_str(r);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let p = publish("r1", "payload with spaces");
        assert_eq!(
            parse(&p),
            Some(Frame::Publish {
                room: "r1",
                payload: "payload with spaces"
            })
        );
        assert_eq!(
            parse(&subscribe(["a", "b"])),
            Some(Frame::Subscribe(vec!["a", "b"]))
        );
        assert_eq!(parse("X y"), None);
        assert_eq!(parse("P nospace"), None);
    }
}
