//! Invites and the waiting room, and what the relay keeps and logs: never
//! plaintext, a key, an invite secret or an admission token.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use std::io::Read;
use std::process::{Command, Stdio};

use caucus_protocol::content::{Content, Sharing};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::invite::Invite;
use caucus_protocol::roster::Role;
use caucus_protocol::session::SessionView;
use caucus_protocol::wire::{Encoded, ErrorCode, Event, RequestBody};
use support::{Client, Mediation, Relay};

const FAR_FUTURE: u64 = 4_000_000_000;

/// The mediator registers an invite for the session; the link.
async fn invite(m: &mut Mediation, url: &str, expires_at: u64) -> Invite {
    let invite = Invite::new(
        url.into(),
        m.mediator.relay.fingerprint(),
        m.session,
        m.mediator.keys.fingerprint(),
        expires_at,
    )
    .unwrap();
    m.mediator
        .ok(RequestBody::CreateInvite {
            session: m.session,
            invite: invite.id,
            token_hash: invite.admission_token().hash(),
            expires_at,
        })
        .await;
    invite
}

#[tokio::test]
async fn a_joiner_waits_until_the_mediator_connects_and_admits_them() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let link = invite(&mut m, &relay.url(), FAR_FUTURE).await.to_link();
    // Before the newcomer is admitted, the claimant confides in the mediator.
    let room = m.claimant_room;
    let before = m.views[1]
        .seal(
            &m.claimant.keys,
            &room,
            &Content::Text {
                sharing: Sharing::MediatorOnly,
                body: "said before you came".into(),
            },
        )
        .unwrap();
    m.claimant
        .ok(RequestBody::Post {
            envelope: Encoded(before.clone()),
        })
        .await;
    m.views[0].open(&before).unwrap();
    // The mediator goes offline.
    let mediator_keys = DeviceKeys::from_secret_bytes(&m.mediator.keys.to_secret_bytes()).unwrap();
    m.mediator.ws.close(None).await.unwrap();
    // A second claimant-side member knocks with the link.
    let received = Invite::from_link(&link).unwrap();
    let joiner_keys = DeviceKeys::generate().unwrap();
    let mut joiner = Client::connect(
        &received.relay,
        DeviceKeys::from_secret_bytes(&joiner_keys.to_secret_bytes()).unwrap(),
    )
    .await;
    let request = received.join_request(joiner_keys.public());
    joiner
        .ok(RequestBody::Join {
            token: received.admission_token(),
            request: Encoded(request),
        })
        .await;
    // The mediator comes back and finds the request waiting.
    let mut mediator = Client::connect(&relay.url(), mediator_keys).await;
    mediator
        .ok(RequestBody::Subscribe {
            session: m.session,
            roster_after: 2,
            rooms: vec![],
        })
        .await;
    let request = match mediator
        .wait_for(|e| matches!(e, Event::JoinRequest { .. }))
        .await
    {
        Event::JoinRequest { request, .. } => request.0,
        _ => unreachable!(),
    };
    // The mediator's own invite (kept by its client) verifies the proof.
    let original = Invite::from_link(&link).unwrap();
    original.verify_join(&request, 1_900_000_000).unwrap();
    m.mediator = mediator;
    m.builder
        .add_member(
            &request.identity,
            Role::PartyMember,
            Some(m.claimant_party),
            "New member",
        )
        .unwrap();
    m.publish().await;
    // The joiner, waiting, receives the new roster naming them, pinned to
    // the mediator of the link.
    let roster = match joiner.wait_for(|e| matches!(e, Event::Roster { .. })).await {
        Event::Roster { roster, .. } => roster.0,
        _ => unreachable!(),
    };
    assert!(
        roster
            .unverified()
            .member(&joiner_keys.fingerprint())
            .is_some()
    );
    roster.verify(&received.mediator).unwrap();
    // Now a member, it subscribes and can read its party's room.
    joiner
        .ok(RequestBody::Subscribe {
            session: m.session,
            roster_after: 0,
            rooms: vec![],
        })
        .await;
    let mut view = SessionView::new(m.session, received.mediator);
    let mut bundles = 0;
    while let Some(e) = joiner
        .quiet_for(std::time::Duration::from_millis(300))
        .await
    {
        match e {
            Event::Roster { roster, .. } => {
                view.accept_roster(roster.0).unwrap();
            }
            Event::KeyBundle { bundle, .. } => {
                view.open_key_bundle(&joiner_keys, &bundle.0).unwrap();
                bundles += 1;
            }
            // Nothing of an epoch before it joined reaches it, not even a header.
            Event::Envelope { envelope, .. } => panic!(
                "sent an earlier epoch's envelope: {:?}",
                envelope.0.header()
            ),
            _ => {}
        }
    }
    assert!(bundles >= 2);
    // Admitted, the request no longer waits: a mediator subscribing afresh
    // is not shown it again.
    let again = DeviceKeys::from_secret_bytes(&m.mediator.keys.to_secret_bytes()).unwrap();
    let mut fresh = Client::connect(&relay.url(), again).await;
    fresh
        .ok(RequestBody::Subscribe {
            session: m.session,
            roster_after: 0,
            rooms: vec![],
        })
        .await;
    assert!(
        !fresh
            .events
            .iter()
            .any(|e| matches!(e, Event::JoinRequest { .. }))
    );
    let epoch = view.roster().unwrap().room(&m.claimant_room).unwrap().epoch;
    assert!(view.room_key(&m.claimant_room, epoch).is_some());
}

#[tokio::test]
async fn a_wrong_used_or_expired_token_is_refused_and_a_declined_joiner_told() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let good = invite(&mut m, &relay.url(), FAR_FUTURE).await;
    let expired = invite(&mut m, &relay.url(), 1).await;
    let stranger_keys = DeviceKeys::generate().unwrap();
    let mut stranger = Client::connect(
        &relay.url(),
        DeviceKeys::from_secret_bytes(&stranger_keys.to_secret_bytes()).unwrap(),
    )
    .await;
    // A token for another invite.
    let code = stranger
        .refused(RequestBody::Join {
            token: expired.admission_token(),
            request: Encoded(good.join_request(stranger_keys.public())),
        })
        .await;
    assert_eq!(code, ErrorCode::InvalidInvite);
    // An expired invite.
    let code = stranger
        .refused(RequestBody::Join {
            token: expired.admission_token(),
            request: Encoded(expired.join_request(stranger_keys.public())),
        })
        .await;
    assert_eq!(code, ErrorCode::InvalidInvite);
    // Someone else's identity in the request.
    let other = DeviceKeys::generate().unwrap();
    let code = stranger
        .refused(RequestBody::Join {
            token: good.admission_token(),
            request: Encoded(good.join_request(other.public())),
        })
        .await;
    assert_eq!(code, ErrorCode::Forbidden);
    // A good knock, then a second joiner trying the same invite.
    stranger
        .ok(RequestBody::Join {
            token: good.admission_token(),
            request: Encoded(good.join_request(stranger_keys.public())),
        })
        .await;
    let mut second = Client::connect(&relay.url(), other).await;
    let second_identity = second.keys.public().clone();
    let code = second
        .refused(RequestBody::Join {
            token: good.admission_token(),
            request: Encoded(good.join_request(&second_identity)),
        })
        .await;
    assert_eq!(code, ErrorCode::InvalidInvite);
    // The mediator, following, saw the request; it declines.
    m.mediator
        .wait_for(|e| matches!(e, Event::JoinRequest { .. }))
        .await;
    m.mediator
        .ok(RequestBody::Decline {
            session: m.session,
            invite: good.id,
        })
        .await;
    assert!(matches!(
        stranger
            .wait_for(|e| matches!(e, Event::Declined { .. }))
            .await,
        Event::Declined { .. }
    ));
}

/// Every file under `dir`, concatenated.
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            std::fs::File::open(&path)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_keys_secrets_and_tokens_appear_nowhere_in_the_data_dir_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("relay.log");
    let data = dir.path().join("data");
    // Everything, and the websocket library's frame traces in particular.
    let (child, url) = support::spawn_binary(
        &data,
        "trace,tungstenite=trace,tokio_tungstenite=trace",
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let mut child = child;
    let relay = Relay::external(&url, tempfile::tempdir().unwrap());
    let mut m = Mediation::start(&relay).await;
    let canary = "CANARY-7f3a9c-bottom-line-is-250k";
    let room = m.claimant_room;
    let envelope = m.views[1]
        .seal(
            &m.claimant.keys,
            &room,
            &Content::Text {
                sharing: Sharing::MediatorOnly,
                body: canary.into(),
            },
        )
        .unwrap();
    m.claimant
        .ok(RequestBody::Post {
            envelope: Encoded(envelope),
        })
        .await;
    let inv = invite(&mut m, &url, FAR_FUTURE).await;
    let joiner = DeviceKeys::generate().unwrap();
    let mut j = Client::connect(
        &url,
        DeviceKeys::from_secret_bytes(&joiner.to_secret_bytes()).unwrap(),
    )
    .await;
    j.ok(RequestBody::Join {
        token: inv.admission_token(),
        request: Encoded(inv.join_request(joiner.public())),
    })
    .await;
    // Shut down gracefully so every log line and page is written.
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    let stored = all_bytes(&data);
    let logs = std::fs::read(&log_path).unwrap();
    assert!(!logs.is_empty(), "trace logging produced nothing");
    let token = inv.admission_token();
    let link = inv.to_link();
    let link_bytes =
        caucus_protocol::b64::decode(link.trim_start_matches("caucus:invite:v1:")).unwrap();
    let secret = &link_bytes[link_bytes.len() - 72..link_bytes.len() - 40];
    let epoch = m.views[0].roster().unwrap().room(&room).unwrap().epoch;
    let room_key = m.views[0].room_key(&room, epoch).unwrap().secret().to_vec();
    let device_secret = m.claimant.keys.to_secret_bytes();
    let mut needles: Vec<(&str, Vec<u8>)> = vec![
        ("plaintext", canary.as_bytes().to_vec()),
        ("party label", b"Claimant".to_vec()),
        ("admission token", token.0.to_vec()),
        (
            "admission token (base64url)",
            caucus_protocol::b64::encode(&token.0).into_bytes(),
        ),
        ("invite secret", secret.to_vec()),
        (
            "invite secret (base64url)",
            caucus_protocol::b64::encode(secret).into_bytes(),
        ),
        ("room key", room_key.clone()),
        (
            "room key (base64url)",
            caucus_protocol::b64::encode(&room_key).into_bytes(),
        ),
        ("device secret", device_secret[4..36].to_vec()),
    ];
    needles.push(("invite link", link.into_bytes()));
    for (what, needle) in &needles {
        assert!(!contains(&stored, needle), "{what} found in the data dir");
        assert!(!contains(&logs, needle), "{what} found in the logs");
    }
    // The data dir does hold the ciphertext (so the search was meaningful).
    assert!(contains(&stored, &m.claimant.keys.fingerprint().0));
}

#[tokio::test]
async fn a_waiting_joiner_is_told_whether_a_mediator_is_online() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let good = invite(&mut m, &relay.url(), FAR_FUTURE).await;
    let keys = DeviceKeys::generate().unwrap();
    let identity = keys.public().clone();
    let mut joiner = Client::connect(&relay.url(), keys).await;
    joiner
        .ok(RequestBody::Join {
            token: good.admission_token(),
            request: Encoded(good.join_request(&identity)),
        })
        .await;
    // The mediator follows the session: someone can let them in.
    let online = |e: &Event, want: bool| matches!(e, Event::Waiting { session, mediator_online, .. } if *session == m.session && *mediator_online == want);
    joiner.wait_for(|e| online(e, true)).await;
    // The mediator's only connection ends: no one can, until it is back.
    let session = m.session;
    drop(m);
    joiner
        .wait_for(|e| {
            matches!(e, Event::Waiting { session: s, mediator_online: false, .. } if *s == session)
        })
        .await;
}
