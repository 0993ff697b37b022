//! The relay through its public interface: a real server on a loopback
//! port with a real sled directory, and real websocket clients.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use std::time::Duration;

use caucus_protocol::content::{Content, Sharing, SystemEvent};
use caucus_protocol::wire::{Encoded, ErrorCode, Event, RequestBody, RoomCursor};
use support::{Client, Mediation, Relay};

fn text(body: &str) -> Content {
    Content::Text {
        sharing: Sharing::MayShare,
        body: body.into(),
    }
}

/// Seal `content` as member `i` into `room` and post it; the index.
async fn post(
    m: &mut Mediation,
    i: usize,
    room: caucus_protocol::ids::RoomId,
    content: &Content,
) -> Option<u64> {
    let keys = match i {
        0 => &m.mediator.keys,
        1 => &m.claimant.keys,
        2 => &m.solicitor.keys,
        _ => &m.defendant.keys,
    };
    let envelope = m.views[i].seal(keys, &room, content).unwrap();
    let c = m.client(i);
    c.ok(RequestBody::Post {
        envelope: Encoded(envelope),
    })
    .await
}

async fn next_envelope(c: &mut Client) -> (u64, caucus_protocol::envelope::Envelope) {
    match c.wait_for(|e| matches!(e, Event::Envelope { .. })).await {
        Event::Envelope {
            index, envelope, ..
        } => (index, envelope.0),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_private_message_reaches_its_room_and_no_one_else() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    let index = post(&mut m, 1, room, &text("between us")).await;
    assert_eq!(index, Some(1));
    for i in [0, 2] {
        let (idx, env) = next_envelope(m.client(i)).await;
        assert_eq!(idx, 1);
        let opened = m.views[i].open(&env).unwrap();
        assert_eq!(opened.content, text("between us"));
    }
    // The defendant's socket carries no frame of the claimant's room.
    while let Some(e) = m.defendant.quiet_for(Duration::from_millis(300)).await {
        assert!(!matches!(e, Event::Envelope { .. }), "leaked: {e:?}");
    }
}

#[tokio::test]
async fn access_follows_the_roster_for_every_member_room_and_operation() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let rooms = [m.claimant_room, m.defendant_room, m.joint_room];
    // (member, room) -> member is in room, by the roster.
    let roster = m.views[0].roster().unwrap().clone();
    let fingerprints: Vec<_> = [&m.mediator, &m.claimant, &m.solicitor, &m.defendant]
        .iter()
        .map(|c| c.keys.fingerprint())
        .collect();
    for (i, who) in fingerprints.iter().enumerate() {
        let is_mediator = i == 0;
        for room in rooms {
            let member = roster.room(&room).unwrap().has(who);
            // Operation 1: post text. Sealed by the member's own view when
            // they hold the key; otherwise hand-sealed with the mediator's
            // view and re-attributed, which the relay must refuse anyway.
            let keys = match i {
                0 => &m.mediator.keys,
                1 => &m.claimant.keys,
                2 => &m.solicitor.keys,
                _ => &m.defendant.keys,
            };
            let sealed = m.views[i].seal(keys, &room, &text("x"));
            match (member, sealed) {
                (true, Ok(env)) => {
                    let c = m.client(i);
                    assert!(
                        c.ok(RequestBody::Post {
                            envelope: Encoded(env)
                        })
                        .await
                        .is_some()
                    );
                }
                (false, Err(_)) => {
                    // Not a member: the client library refuses, and the relay
                    // refuses the mediator's envelope posted from this socket.
                    let env = m.views[0]
                        .seal(&m.mediator.keys, &room, &text("y"))
                        .unwrap();
                    let c = m.client(i);
                    assert_eq!(
                        c.refused(RequestBody::Post {
                            envelope: Encoded(env)
                        })
                        .await,
                        ErrorCode::Forbidden
                    );
                }
                (member, sealed) => panic!(
                    "member {i} room {room}: in={member} sealed={}",
                    sealed.is_ok()
                ),
            }
            // Operation 2: system events (mediator-only content).
            let system = Content::System(SystemEvent::JointOpened);
            if member && is_mediator {
                let env = m.views[0].seal(&m.mediator.keys, &room, &system).unwrap();
                assert!(
                    m.mediator
                        .ok(RequestBody::Post {
                            envelope: Encoded(env)
                        })
                        .await
                        .is_some()
                );
            }
        }
        // Operation 3: mediator-only requests.
        let session = m.session;
        let c = m.client(i);
        let close_code = c
            .request(RequestBody::Location {
                session,
                room: None,
                disclose: false,
            })
            .await;
        let allowed = matches!(close_code, caucus_protocol::wire::Reply::Ok { .. });
        assert_eq!(allowed, is_mediator, "location by member {i}");
        if !is_mediator {
            let roster = m.views[0].signed_roster().unwrap().clone();
            let c = m.client(i);
            assert_eq!(
                c.refused(RequestBody::PublishRoster {
                    roster: Encoded(roster)
                })
                .await,
                ErrorCode::Forbidden
            );
            assert_eq!(
                c.refused(RequestBody::CloseSession { session }).await,
                ErrorCode::Forbidden
            );
        }
        // Operation 4: status, party members only.
        let c = m.client(i);
        let reply = c
            .request(RequestBody::Status {
                session,
                status: caucus_protocol::wire::PartyStatus::Ready,
            })
            .await;
        assert_eq!(
            matches!(reply, caucus_protocol::wire::Reply::Ok { .. }),
            !is_mediator,
            "status by {i}"
        );
    }
}

#[tokio::test]
async fn a_client_resumes_after_a_disconnect_with_no_gap_and_no_duplicate() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    for n in 0..5 {
        post(&mut m, 1, room, &text(&format!("before {n}"))).await;
    }
    let mut last = 0;
    for _ in 0..5 {
        let (idx, env) = next_envelope(&mut m.solicitor).await;
        m.views[2].open(&env).unwrap();
        last = idx;
    }
    assert_eq!(last, 5);
    // The solicitor drops off; ten more are posted meanwhile.
    let keys = caucus_protocol::identity::DeviceKeys::from_secret_bytes(
        &m.solicitor.keys.to_secret_bytes(),
    )
    .unwrap();
    m.solicitor.ws.close(None).await.unwrap();
    for n in 0..10 {
        post(&mut m, 1, room, &text(&format!("while away {n}"))).await;
    }
    let mut back = Client::connect(&relay.url(), keys).await;
    let session = m.session;
    back.ok(RequestBody::Subscribe {
        session,
        roster_after: 2,
        rooms: vec![RoomCursor { room, after: last }],
    })
    .await;
    m.solicitor = back;
    // Live traffic continues during and after the catch-up.
    post(&mut m, 1, room, &text("live")).await;
    let mut seen = Vec::new();
    while seen.len() < 11 {
        let (idx, env) = next_envelope(&mut m.solicitor).await;
        let opened = m.views[2].open(&env).unwrap();
        assert_eq!(opened.gap, None);
        seen.push(idx);
    }
    assert_eq!(seen, (6..=16).collect::<Vec<_>>());
    assert!(
        m.solicitor
            .quiet_for(Duration::from_millis(300))
            .await
            .is_none_or(|e| !matches!(e, Event::Envelope { .. }))
    );
}

#[tokio::test]
async fn bad_input_gets_a_stable_code_and_no_one_else_notices() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let cases: Vec<(String, ErrorCode)> = vec![
        ("{not json".into(), ErrorCode::Malformed),
        (
            r#"{"v":1,"id":1,"type":"teleport"}"#.into(),
            ErrorCode::UnknownType,
        ),
        (
            r#"{"v":9,"id":2,"type":"post"}"#.into(),
            ErrorCode::UnsupportedVersion,
        ),
        (
            r#"{"v":1,"id":3,"type":"post","envelope":"AAAA"}"#.into(),
            ErrorCode::Malformed,
        ),
        (
            format!(
                r#"{{"v":1,"id":4,"type":"subscribe","session":"{}","roster_after":0,"rooms":[]}}"#,
                caucus_protocol::ids::SessionId([9; 16])
            ),
            ErrorCode::NotFound,
        ),
    ];
    for (frame, code) in cases {
        m.defendant.send_text(frame.clone()).await;
        match m.defendant.next_reply().await {
            caucus_protocol::wire::Reply::Error { code: got, .. } => {
                assert_eq!(got, code, "{frame}")
            }
            other => panic!("{frame}: {other:?}"),
        }
    }
    // A binary frame.
    use futures_util::SinkExt;
    m.defendant
        .ws
        .send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1, 2, 3,
        ]))
        .await
        .unwrap();
    assert!(matches!(
        m.defendant.next_reply().await,
        caucus_protocol::wire::Reply::Error {
            code: ErrorCode::Malformed,
            ..
        }
    ));
    // Signed objects whose signature (their last byte) is flipped: a
    // roster and a key bundle are refused ...
    let roster = m.views[0].signed_roster().unwrap().clone();
    let code = post_flipped(&mut m.mediator, "publish_roster", "roster", &roster).await;
    assert_eq!(code, ErrorCode::BadSignature);
    let key = m.builder.room_key(&m.claimant_room).unwrap().clone();
    let bundle = m.views[0].seal_key_bundle(&m.mediator.keys, &key).unwrap();
    let code = post_flipped(&mut m.mediator, "publish_keys", "bundle", &bundle).await;
    assert_eq!(code, ErrorCode::BadSignature);
    // ... but an envelope's signature is the clients' to check (protocol.md
    // 13.5.8): the relay stores it, and every receiver refuses it.
    let envelope = m.views[1]
        .seal(&m.claimant.keys, &m.claimant_room, &text("forged?"))
        .unwrap();
    let mut bytes = caucus_protocol::codec::Canonical::to_bytes(&envelope);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let flipped: caucus_protocol::envelope::Envelope =
        caucus_protocol::codec::Canonical::from_bytes(&bytes).unwrap();
    m.claimant
        .ok(RequestBody::Post {
            envelope: Encoded(flipped),
        })
        .await;
    let (_, env) = next_envelope(&mut m.mediator).await;
    assert!(matches!(
        m.views[0].open(&env),
        Err(caucus_protocol::Error::BadSignature(_))
    ));
    // An oversized frame closes that connection with 1009 ...
    let relay_small = Relay::start_with(&["--max-frame-bytes", "4096"]).await;
    let mut big = Client::connect(
        &relay_small.url(),
        caucus_protocol::identity::DeviceKeys::generate().unwrap(),
    )
    .await;
    big.send_text("x".repeat(10_000)).await;
    let closed = support::close_code(&mut big.ws).await;
    assert_eq!(closed, 1009);
    // ... and the others carry on: the claimant still posts and is heard.
    let room = m.claimant_room;
    post(&mut m, 1, room, &text("still here")).await;
    let (_, env) = next_envelope(&mut m.mediator).await;
    assert_eq!(m.views[0].open(&env).unwrap().content, text("still here"));
}

/// Send `object` with its last byte flipped as the `field` of a `kind`
/// request; the error code of the reply.
async fn post_flipped(
    c: &mut Client,
    kind: &str,
    field: &str,
    object: &impl caucus_protocol::codec::Canonical,
) -> ErrorCode {
    let mut bytes = object.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let frame = format!(
        r#"{{"v":1,"id":77,"type":"{kind}","{field}":"{}"}}"#,
        caucus_protocol::b64::encode(&bytes)
    );
    c.send_text(frame).await;
    match c.reply_to(77).await {
        caucus_protocol::wire::Reply::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn requests_before_authentication_are_refused() {
    let relay = Relay::start().await;
    let mut ws = support::raw_connect(&relay.url()).await;
    use futures_util::{SinkExt, StreamExt};
    let _challenge = ws.next().await.unwrap().unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"v":1,"id":1,"type":"close_session","session":"AAAAAAAAAAAAAAAAAAAAAA"}"#,
    ))
    .await
    .unwrap();
    let reply = loop {
        match ws.next().await.unwrap().unwrap() {
            tokio_tungstenite::tungstenite::Message::Text(t) => break t,
            _ => continue, // pings
        }
    };
    let value: serde_json::Value = serde_json::from_str(reply.as_str()).unwrap();
    assert_eq!(value["type"], "error");
    assert_eq!(value["code"], "unauthenticated");
    assert_eq!(value["id"], 1);
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_while_the_others_keep_receiving() {
    // The queue's overflow alone: a write timeout longer than the test, so
    // that a slow machine does not stall a write first (whose close the
    // client, not reading, may never get: abuse.rs tests that case).
    let relay = Relay::start_with(&["--outbound-queue", "8", "--write-timeout-secs", "600"]).await;
    let mut m = Mediation::start(&relay).await;
    let room = m.joint_room;
    // The defendant stops reading; the claimant posts 100 envelopes of
    // 200 KB, more than the socket buffers and the 8-frame queue hold.
    // The solicitor and the mediator, reading as they go, get all 100 in order.
    let bulk = "x".repeat(200_000);
    for n in 1..=100 {
        post(&mut m, 1, room, &text(&format!("{n}{bulk}"))).await;
        for reader in [&mut m.solicitor, &mut m.mediator] {
            let (idx, _) = next_envelope(reader).await;
            assert_eq!(idx, n);
        }
    }
    // The defendant finds its connection closed with 4000 after what fitted.
    let code = support::close_code(&mut m.defendant.ws).await;
    assert_eq!(code, caucus_server::CLOSE_TOO_SLOW);
}

#[tokio::test]
async fn health_and_metrics_answer_on_the_same_port() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    post(&mut m, 1, room, &text("count me")).await;
    let get = |path: &'static str| {
        let addr = relay.addr;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    let health = get("/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = get("/metrics").await;
    assert!(metrics.contains("caucus_envelopes_in_total 1"), "{metrics}");
    assert!(metrics.contains("caucus_connections 4"), "{metrics}");
    assert!(metrics.contains("caucus_commit_seconds_count"), "{metrics}");
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn a_catch_up_longer_than_the_outbound_queue_completes() {
    // The queue holds 8 frames; the solicitor comes back 60 envelopes behind.
    let relay = Relay::start_with(&["--outbound-queue", "8"]).await;
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    let keys = caucus_protocol::identity::DeviceKeys::from_secret_bytes(
        &m.solicitor.keys.to_secret_bytes(),
    )
    .unwrap();
    m.solicitor.ws.close(None).await.unwrap();
    for n in 0..60 {
        post(&mut m, 1, room, &text(&format!("{n}"))).await;
        // The mediator reads as it goes, so it is not cut off itself.
        next_envelope(&mut m.mediator).await;
    }
    let mut back = Client::connect(&relay.url(), keys).await;
    back.ok(RequestBody::Subscribe {
        session: m.session,
        roster_after: 2,
        rooms: vec![RoomCursor { room, after: 0 }],
    })
    .await;
    let mut indexes = Vec::new();
    while indexes.len() < 60 {
        let (idx, env) = next_envelope(&mut back).await;
        m.views[2].open(&env).unwrap();
        indexes.push(idx);
    }
    assert_eq!(indexes, (1..=60).collect::<Vec<_>>());
}
