//! The client side of the NATS text protocol (`INFO`, `CONNECT`, `SUB`,
//! `PUB`, `MSG`, `PING`, `PONG`, `+OK`, `-ERR`) as carried over websocket
//! frames. nats-server treats the websocket as a byte stream: one frame may
//! hold several operations or part of one, so [`Parser`] buffers.

/// An operation from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// A message on a subscription.
    Msg {
        /// The subject.
        subject: &'a str,
        /// The reply subject, if the publisher gave one (a JetStream
        /// delivery's is where its acknowledgement goes).
        reply: Option<&'a str>,
        /// The payload.
        payload: &'a [u8],
    },
    /// The server's `PING`: answer `PONG`.
    Ping,
    /// The answer to our `PING`.
    Pong,
    /// `INFO {…}`.
    Info,
    /// `+OK`.
    Ok,
    /// `-ERR '…'`.
    Err(&'a str),
}

/// A streaming parser of server operations.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
}

/// Why the stream cannot be parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct BadOp(pub String);

impl Parser {
    /// Add `data` and call `on` for every complete operation, in order.
    pub fn feed(&mut self, data: &[u8], mut on: impl FnMut(Op<'_>)) -> Result<(), BadOp> {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let buf = &self.buf;
        while let Some(eol) = find_crlf(buf, pos) {
            let line = buf.get(pos..eol).unwrap_or_default();
            let text = std::str::from_utf8(line).map_err(|_| BadOp("not UTF-8".into()))?;
            if let Some(args) = text.strip_prefix("MSG ") {
                // nats-server writes an empty reply-to as a second space.
                let parts: Vec<&str> = args.split(' ').filter(|p| !p.is_empty()).collect();
                let len: usize = parts
                    .last()
                    .and_then(|l| l.parse().ok())
                    .ok_or_else(|| BadOp(text.to_owned()))?;
                let start = eol + 2;
                let end = start + len;
                if buf.len() < end + 2 {
                    break;
                }
                let payload = buf.get(start..end).unwrap_or_default();
                on(Op::Msg {
                    subject: parts.first().copied().unwrap_or_default(),
                    // `MSG <subject> <sid> [reply-to] <#bytes>`
                    reply: parts.get(2).filter(|_| parts.len() == 4).copied(),
                    payload,
                });
                pos = end + 2;
                continue;
            }
            match text {
                "PING" => on(Op::Ping),
                "PONG" => on(Op::Pong),
                "+OK" => on(Op::Ok),
                t if t.starts_with("INFO ") => on(Op::Info),
                t if t.starts_with("-ERR") => on(Op::Err(t)),
                other => return Err(BadOp(other.to_owned())),
            }
            pos = eol + 2;
        }
        self.buf.drain(..pos);
        Ok(())
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

/// A `PUB` operation.
pub fn publish(subject: &str, payload: &[u8]) -> Vec<u8> {
    publish_to(subject, None, payload)
}

/// A `PUB` operation with a reply subject, where an answer goes (a
/// JetStream publish's acknowledgement, an API request's reply).
pub fn request(subject: &str, reply: &str, payload: &[u8]) -> Vec<u8> {
    publish_to(subject, Some(reply), payload)
}

fn publish_to(subject: &str, reply: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + subject.len() + 64);
    v.extend_from_slice(b"PUB ");
    v.extend_from_slice(subject.as_bytes());
    if let Some(reply) = reply {
        v.push(b' ');
        v.extend_from_slice(reply.as_bytes());
    }
    v.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
    v.extend_from_slice(payload);
    v.extend_from_slice(b"\r\n");
    v
}

/// The `CONNECT` operation: no echo of one's own messages (as Caucus does not
/// deliver a post back to its sender), no `+OK` per operation.
pub const CONNECT: &str = "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,\"protocol\":1,\"lang\":\"rust\",\"version\":\"caucus-bench\"}\r\n";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn operations_split_across_frames_are_reassembled() {
        let mut p = Parser::default();
        let stream = b"INFO {\"x\":1}\r\nMSG room.a 3 5\r\nhello\r\nPING\r\nMSG b 1 0\r\n\r\n+OK\r\nMSG c 2 $JS.ACK.x 2\r\nhi\r\nMSG d 1  2\r\nok\r\nPONG\r\n";
        let mut seen = Vec::new();
        for chunk in stream.chunks(7) {
            p.feed(chunk, |op| {
                seen.push(match op {
                    Op::Msg {
                        subject,
                        reply,
                        payload,
                    } => format!(
                        "{subject}:{}{}",
                        String::from_utf8_lossy(payload),
                        reply.map(|r| format!(" reply {r}")).unwrap_or_default()
                    ),
                    other => format!("{other:?}"),
                })
            })
            .unwrap();
        }
        assert_eq!(
            seen,
            [
                "Info",
                "room.a:hello",
                "Ping",
                "b:",
                "Ok",
                "c:hi reply $JS.ACK.x",
                "d:ok",
                "Pong"
            ]
        );
        assert!(p.buf.is_empty());
    }

    #[test]
    fn a_payload_may_hold_crlf_and_unknown_ops_fail() {
        let mut p = Parser::default();
        let mut got = Vec::new();
        p.feed(b"MSG s 1 4\r\na\r\nb\r\n", |op| {
            if let Op::Msg { payload, .. } = op {
                got.push(payload.to_vec());
            }
        })
        .unwrap();
        assert_eq!(got, [b"a\r\nb".to_vec()]);
        assert!(Parser::default().feed(b"BOGUS\r\n", |_| {}).is_err());
        assert_eq!(publish("s", b"xy"), b"PUB s 2\r\nxy\r\n");
        assert_eq!(request("s", "r.1", b"xy"), b"PUB s r.1 2\r\nxy\r\n");
    }
}
