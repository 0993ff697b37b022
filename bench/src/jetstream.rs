//! The JetStream requests of the durable NATS peer, as NATS text-protocol
//! operations: create a stream, create a durable push consumer, read the
//! JSON answer of the API or of a publish (the `PubAck`), acknowledge a
//! delivery. The settings are the ones `docs/performance.md` lists.

use serde::Deserialize;
use serde_json::json;

use crate::nats;

/// What the JetStream API or a publish answered instead of success.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The server refused: its error code and description.
    #[error("jetstream error {code}: {description}")]
    Refused {
        /// The HTTP-like code (400, 404, 503…).
        code: u16,
        /// What went wrong.
        description: String,
    },
    /// The answer is not the JSON the API sends.
    #[error("not a jetstream answer: {0}")]
    Unreadable(String),
}

#[derive(Deserialize)]
struct Answer {
    error: Option<Refusal>,
    seq: Option<u64>,
}

#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    description: String,
}

fn answer(payload: &[u8]) -> Result<Answer, ApiError> {
    let a: Answer = serde_json::from_slice(payload)
        .map_err(|_| ApiError::Unreadable(String::from_utf8_lossy(payload).into_owned()))?;
    match a.error {
        Some(r) => Err(ApiError::Refused {
            code: r.code,
            description: r.description,
        }),
        None => Ok(a),
    }
}

/// Check the answer to an API request (stream or consumer creation).
pub fn api_reply(payload: &[u8]) -> Result<(), ApiError> {
    answer(payload).map(|_| ())
}

/// The stream sequence number of a publish's acknowledgement
/// (`{"stream":"S","seq":7}`): the message is stored.
pub fn pub_ack(payload: &[u8]) -> Result<u64, ApiError> {
    answer(payload)?
        .seq
        .ok_or_else(|| ApiError::Unreadable(String::from_utf8_lossy(payload).into_owned()))
}

/// Request (with answers to `reply`) that creates stream `name` capturing
/// `subjects`: file storage, one replica, limits retention with no limits,
/// everything else the server's default.
pub fn create_stream(name: &str, subjects: &[&str], reply: &str) -> Vec<u8> {
    let config = json!({
        "name": name,
        "subjects": subjects,
        "retention": "limits",
        "storage": "file",
        "num_replicas": 1,
        "discard": "old",
    });
    nats::request(
        &format!("$JS.API.STREAM.CREATE.{name}"),
        reply,
        config.to_string().as_bytes(),
    )
}

/// Request (with answers to `reply`) that creates durable push consumer
/// `durable` on `stream`: the messages of subject `filter` from now on,
/// delivered to `deliver`, each acknowledged explicitly; everything else
/// the server's default (30 s to acknowledge, at most 1,000 unacknowledged).
pub fn create_consumer(
    stream: &str,
    durable: &str,
    filter: &str,
    deliver: &str,
    reply: &str,
) -> Vec<u8> {
    let request = json!({
        "stream_name": stream,
        "config": {
            "durable_name": durable,
            "deliver_subject": deliver,
            "filter_subject": filter,
            "deliver_policy": "new",
            "ack_policy": "explicit",
        },
    });
    nats::request(
        &format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}"),
        reply,
        request.to_string().as_bytes(),
    )
}

/// Acknowledge a delivery whose reply subject is `reply` (`$JS.ACK.…`).
pub fn ack(reply: &str) -> Vec<u8> {
    nats::publish(reply, b"")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_are_read_and_refusals_kept() {
        assert_eq!(pub_ack(br#"{"stream":"S1","seq":42}"#), Ok(42));
        assert_eq!(
            pub_ack(br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#),
            Err(ApiError::Refused {
                code: 503,
                description: "maximum messages exceeded".into()
            })
        );
        assert!(matches!(pub_ack(b"nope"), Err(ApiError::Unreadable(_))));
        assert_eq!(
            api_reply(
                br#"{"type":"io.nats.jetstream.api.v1.consumer_create_response","name":"c"}"#
            ),
            Ok(())
        );
    }

    #[test]
    fn requests_are_pub_operations_with_a_reply() {
        let op = String::from_utf8(create_consumer("S", "m0r1", "room", "in.0.1", "r.0")).unwrap();
        let (head, body) = op.split_once("\r\n").unwrap();
        let body = body.strip_suffix("\r\n").unwrap();
        assert_eq!(
            head,
            format!(
                "PUB $JS.API.CONSUMER.DURABLE.CREATE.S.m0r1 r.0 {}",
                body.len()
            )
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["config"]["ack_policy"], "explicit");
        assert_eq!(v["config"]["filter_subject"], "room");
        let op = String::from_utf8(create_stream("S", &["a", "b"], "r.0")).unwrap();
        assert!(op.starts_with("PUB $JS.API.STREAM.CREATE.S r.0 "));
        assert!(op.contains(r#""subjects":["a","b"]"#) && op.contains(r#""storage":"file""#));
        assert_eq!(
            ack("$JS.ACK.S.c.1.2.3.4.0"),
            b"PUB $JS.ACK.S.c.1.2.3.4.0 0\r\n\r\n"
        );
    }
}
