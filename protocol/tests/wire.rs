//! The JSON frames between client and relay.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod common;

use caucus_protocol::auth::AuthTarget;
use caucus_protocol::codec::Canonical;
use caucus_protocol::crypto::Digest;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{RoomId, SessionId};
use caucus_protocol::wire::{
    Encoded, ErrorCode, Event, MAX_JSON_INTEGER, Reply, Request, RequestBody, RoomCursor,
    ServerFrame, ServerFrameError, parse_request, parse_server_frame,
};

fn auth_request() -> Request {
    let keys = DeviceKeys::generate().unwrap();
    let relay = DeviceKeys::generate().unwrap().fingerprint();
    let url = "wss://relay.example";
    Request {
        v: 1,
        id: 1,
        body: RequestBody::Auth {
            identity: Encoded(keys.public().clone()),
            url: url.into(),
            signature: AuthTarget::new(Digest([7; 32]), relay, url).sign(&keys),
        },
    }
}

#[test]
fn requests_round_trip_through_json() {
    let session = SessionId::random().unwrap();
    let requests = [
        auth_request(),
        Request {
            v: 1,
            id: 9,
            body: RequestBody::Subscribe {
                session,
                roster_after: 3,
                rooms: vec![RoomCursor {
                    room: RoomId::random().unwrap(),
                    after: 12,
                }],
            },
        },
        Request {
            v: 1,
            id: MAX_JSON_INTEGER,
            body: RequestBody::CloseSession { session },
        },
    ];
    for r in requests {
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(parse_request(&text).unwrap(), r, "{text}");
    }
}

#[test]
fn a_request_frame_has_the_documented_shape() {
    let session = SessionId([0; 16]);
    let text = serde_json::to_string(&Request {
        v: 1,
        id: 5,
        body: RequestBody::CloseSession { session },
    })
    .unwrap();
    assert_eq!(
        text,
        r#"{"v":1,"id":5,"type":"close_session","session":"AAAAAAAAAAAAAAAAAAAAAA"}"#
    );
}

#[test]
fn bad_frames_get_the_right_code_and_keep_the_id_when_readable() {
    let cases = [
        ("not json", None, ErrorCode::Malformed),
        ("[1,2]", None, ErrorCode::Malformed),
        (
            r#"{"v":2,"id":4,"type":"post"}"#,
            Some(4),
            ErrorCode::UnsupportedVersion,
        ),
        (r#"{"id":4,"type":"post"}"#, Some(4), ErrorCode::Malformed),
        (r#"{"v":1,"type":"post"}"#, None, ErrorCode::Malformed),
        (
            r#"{"v":1,"id":4,"type":"launch"}"#,
            Some(4),
            ErrorCode::UnknownType,
        ),
        (r#"{"v":1,"id":4}"#, Some(4), ErrorCode::Malformed),
        (
            r#"{"v":1,"id":4,"type":"post"}"#,
            Some(4),
            ErrorCode::Malformed,
        ),
        (
            r#"{"v":1,"id":4,"type":"post","envelope":"!!"}"#,
            Some(4),
            ErrorCode::Malformed,
        ),
        (
            r#"{"v":1,"id":4,"type":"post","envelope":"AAAA"}"#,
            Some(4),
            ErrorCode::Malformed,
        ),
        (
            r#"{"v":1,"id":-1,"type":"post"}"#,
            None,
            ErrorCode::Malformed,
        ),
    ];
    for (text, id, code) in cases {
        let err = parse_request(text).unwrap_err();
        assert_eq!((err.id, err.code), (id, code), "{text}");
        let reply = serde_json::to_value(err.reply()).unwrap();
        assert_eq!(reply["type"], "error");
    }
}

#[test]
fn an_envelope_with_an_unknown_header_version_is_unsupported_version() {
    // bytes(header) whose version is 2: a length, then 0x0002, then junk.
    let mut header = vec![0, 2];
    header.extend([0u8; 40]);
    let mut raw = (header.len() as u32).to_be_bytes().to_vec();
    raw.extend(header);
    let text = format!(
        r#"{{"v":1,"id":8,"type":"post","envelope":"{}"}}"#,
        caucus_protocol::b64::encode(&raw)
    );
    assert_eq!(
        parse_request(&text).unwrap_err().code,
        ErrorCode::UnsupportedVersion
    );
}

#[test]
fn the_header_version_is_checked_for_post_only_and_inside_a_well_formed_header() {
    // A `status` with a stray `envelope` field whose bytes 4-5 say version
    // 2: not refused for its version, but for the field it does not have.
    let stray = caucus_protocol::b64::encode(&[0, 0, 0, 2, 0, 2]);
    let status = format!(
        r#"{{"v":1,"id":3,"type":"status","session":"AAAAAAAAAAAAAAAAAAAAAA","status":"ready","envelope":"{stray}"}}"#
    );
    let err = parse_request(&status).unwrap_err();
    assert_eq!(
        (err.id, err.code),
        (Some(3), ErrorCode::Malformed),
        "{err:?}"
    );
    // A header length of 0: the 0x0002 after it is not inside the header.
    let text = format!(
        r#"{{"v":1,"id":4,"type":"post","envelope":"{}"}}"#,
        caucus_protocol::b64::encode(&[0, 0, 0, 0, 0, 2])
    );
    assert_eq!(parse_request(&text).unwrap_err().code, ErrorCode::Malformed);
    // A header length that runs past the bytes: not a header either.
    let text = format!(
        r#"{{"v":1,"id":5,"type":"post","envelope":"{}"}}"#,
        caucus_protocol::b64::encode(&[0, 0, 0, 9, 0, 2])
    );
    assert_eq!(parse_request(&text).unwrap_err().code, ErrorCode::Malformed);
}

#[test]
fn a_field_the_request_type_does_not_have_is_malformed() {
    let session = "AAAAAAAAAAAAAAAAAAAAAA";
    for text in [
        format!(r#"{{"v":1,"id":6,"type":"close_session","session":"{session}","extra":1}}"#),
        format!(
            r#"{{"v":1,"id":6,"type":"status","session":"{session}","status":"ready","room":null}}"#
        ),
        format!(
            r#"{{"v":1,"id":6,"type":"subscribe","session":"{session}","roster_after":0,"rooms":[{{"room":"{session}","after":0,"x":true}}]}}"#
        ),
    ] {
        let err = parse_request(&text).unwrap_err();
        assert_eq!(
            (err.id, err.code),
            (Some(6), ErrorCode::Malformed),
            "{text}"
        );
    }
    // The fields it has, in any order, and `room` of `location` left out.
    let ok =
        format!(r#"{{"type":"location","disclose":false,"session":"{session}","id":6,"v":1}}"#);
    assert!(parse_request(&ok).is_ok());
}

#[test]
fn integers_above_2_pow_53_minus_1_are_malformed() {
    let session = "AAAAAAAAAAAAAAAAAAAAAA";
    let big = MAX_JSON_INTEGER + 1;
    // As the id: unreadable, so the refusal has none.
    let err = parse_request(&format!(
        r#"{{"v":1,"id":{big},"type":"close_session","session":"{session}"}}"#
    ))
    .unwrap_err();
    assert_eq!((err.id, err.code), (None, ErrorCode::Malformed));
    for text in [
        format!(
            r#"{{"v":1,"id":7,"type":"create_invite","session":"{session}","invite":"{session}","token_hash":"{}","expires_at":{big}}}"#,
            caucus_protocol::b64::encode(&[0; 32])
        ),
        format!(
            r#"{{"v":1,"id":7,"type":"subscribe","session":"{session}","roster_after":{big},"rooms":[]}}"#
        ),
        format!(
            r#"{{"v":1,"id":7,"type":"subscribe","session":"{session}","roster_after":0,"rooms":[{{"room":"{session}","after":{big}}}]}}"#
        ),
    ] {
        let err = parse_request(&text).unwrap_err();
        assert_eq!(
            (err.id, err.code),
            (Some(7), ErrorCode::Malformed),
            "{text}"
        );
    }
    let at_limit = format!(
        r#"{{"v":1,"id":{MAX_JSON_INTEGER},"type":"subscribe","session":"{session}","roster_after":{MAX_JSON_INTEGER},"rooms":[]}}"#
    );
    assert!(parse_request(&at_limit).is_ok());
}

#[test]
fn server_frames_are_told_apart_by_type() {
    let ok: ServerFrame = serde_json::from_str(r#"{"type":"ok","v":1,"id":3,"index":7}"#).unwrap();
    assert_eq!(ok, ServerFrame::Reply(Reply::posted(3, 7)));
    let nonce = Digest([1; 32]);
    let relay = Encoded(DeviceKeys::generate().unwrap().public().clone());
    let challenge = Event::Challenge {
        v: 1,
        nonce,
        relay,
        rotations: Vec::new(),
    };
    let text = serde_json::to_string(&challenge).unwrap();
    let ev: ServerFrame = serde_json::from_str(&text).unwrap();
    assert_eq!(ev, ServerFrame::Event(Box::new(challenge)));
    let err: ServerFrame = serde_json::from_str(
        r#"{"type":"error","v":1,"id":null,"code":"rate_limited","message":"slow down"}"#,
    )
    .unwrap();
    assert!(matches!(
        err,
        ServerFrame::Reply(Reply::Error {
            code: ErrorCode::RateLimited,
            ..
        })
    ));
}

#[test]
fn an_error_code_a_client_does_not_know_is_still_a_refusal_it_can_read() {
    let read = |code: &str| match parse_server_frame(&format!(
        r#"{{"type":"error","v":1,"id":4,"code":"{code}","message":"no"}}"#
    )) {
        Ok(ServerFrame::Reply(Reply::Error { id, code, .. })) => (id, code),
        other => panic!("{other:?}"),
    };
    assert_eq!(read("unavailable"), (Some(4), ErrorCode::Unavailable));
    assert_eq!(
        read("a_code_from_the_future"),
        (Some(4), ErrorCode::Unknown)
    );
    assert_eq!(
        serde_json::to_value(ErrorCode::Unavailable).unwrap(),
        "unavailable"
    );
}

#[test]
fn encoded_objects_are_their_exact_canonical_bytes() {
    let keys = DeviceKeys::generate().unwrap();
    let json = serde_json::to_value(Encoded(keys.public().clone())).unwrap();
    let bytes = caucus_protocol::b64::decode(json.as_str().unwrap()).unwrap();
    assert_eq!(bytes, keys.public().to_bytes());
}

/// A challenge must name the relay and its rotations (open question 35):
/// one without either is not a frame a client reads, so it is not answered.
#[test]
fn a_challenge_without_the_relay_or_its_rotations_is_not_a_challenge() {
    let relay = caucus_protocol::b64::encode(&DeviceKeys::generate().unwrap().public().to_bytes());
    let nonce = caucus_protocol::b64::encode(&[1; 32]);
    let full = format!(
        r#"{{"type":"challenge","v":1,"nonce":"{nonce}","relay":"{relay}","rotations":[]}}"#
    );
    assert!(serde_json::from_str::<ServerFrame>(&full).is_ok());
    for partial in [
        format!(r#"{{"type":"challenge","v":1,"nonce":"{nonce}","relay":"{relay}"}}"#),
        format!(r#"{{"type":"challenge","v":1,"nonce":"{nonce}","rotations":[]}}"#),
    ] {
        assert!(
            serde_json::from_str::<ServerFrame>(&partial).is_err(),
            "{partial}"
        );
    }
}

/// An `envelope` event, most of a catch-up, reads the same however its JSON
/// is spelled (fields in any order, spaces, a field it does not know, an
/// escaped character); one of another version is that version's, and one
/// whose index or envelope does not decode is unreadable.
#[test]
fn an_envelope_event_reads_the_same_however_it_is_spelled() {
    let mut f = common::Fixture::new();
    let envelope = f
        .claimant
        .view
        .seal(&f.claimant.keys, &f.claimant_room, &common::text("hello"))
        .unwrap();
    let b64 = serde_json::to_string(&Encoded(envelope.clone())).unwrap();
    let b64 = b64.trim_matches('"');
    let event = Ok(ServerFrame::Event(Box::new(Event::Envelope {
        v: 1,
        index: 7,
        envelope: Encoded(envelope),
    })));
    let escaped = format!("\\u{:04x}{}", b64.as_bytes()[0], &b64[1..]);
    for (frame, read) in [
        (
            format!(r#"{{"type":"envelope","v":1,"index":7,"envelope":"{b64}"}}"#),
            event.clone(),
        ),
        (
            format!(r#"{{ "envelope" : "{b64}", "index":7, "v":1, "type":"envelope" }}"#),
            event.clone(),
        ),
        (
            format!(r#"{{"type":"envelope","v":1,"index":7,"envelope":"{b64}","later":true}}"#),
            event.clone(),
        ),
        (
            format!(r#"{{"type":"envelope","v":1,"index":7,"envelope":"{escaped}"}}"#),
            event.clone(),
        ),
        (
            format!(r#"{{"type":"envelope","v":2,"index":7,"envelope":"{b64}"}}"#),
            Err(ServerFrameError::UnsupportedVersion(2)),
        ),
    ] {
        assert_eq!(parse_server_frame(&frame), read, "{frame}");
    }
    for broken in [
        format!(r#"{{"type":"envelope","v":1,"index":"7","envelope":"{b64}"}}"#),
        format!(r#"{{"type":"envelope","v":1,"index":-7,"envelope":"{b64}"}}"#),
        format!(r#"{{"type":"envelope","v":1,"envelope":"{b64}"}}"#),
        format!(r#"{{"type":"envelope","v":1,"index":7,"envelope":"{b64}="}}"#),
        format!(
            r#"{{"type":"envelope","v":1,"index":7,"envelope":"{}"}}"#,
            &b64[..b64.len() - 4]
        ),
        r#"{"type":"envelope","v":1,"index":7,"envelope":"!!"}"#.to_owned(),
    ] {
        assert!(
            matches!(
                parse_server_frame(&broken),
                Err(ServerFrameError::Unreadable(_))
            ),
            "{broken}"
        );
    }
}
