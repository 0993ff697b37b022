//! Presence, statuses, limits and timers, closing a session, and shutdown.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use std::time::Duration;

use caucus_protocol::deletion::DeletionStatement;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::wire::{
    ErrorCode, Event, MediatorWhereabouts, PartyStatus, Reply, RequestBody,
};
use support::{Client, Mediation, Relay};

async fn presence(
    c: &mut Client,
) -> (
    Vec<caucus_protocol::identity::Fingerprint>,
    MediatorWhereabouts,
) {
    match c.wait_for(|e| matches!(e, Event::Presence { .. })).await {
        Event::Presence {
            online, mediator, ..
        } => (online, mediator),
        _ => unreachable!(),
    }
}

/// The latest presence event `c` has been sent.
async fn latest_presence(c: &mut Client) -> MediatorWhereabouts {
    let mut last = presence(c).await.1;
    while let Some(e) = c.quiet_for(Duration::from_millis(200)).await {
        if let Event::Presence { mediator, .. } = e {
            last = mediator;
        }
    }
    last
}

#[tokio::test]
async fn parties_see_where_the_mediator_is_only_as_far_as_they_may() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let (online, _) = presence(&mut m.defendant).await;
    assert!(online.contains(&m.mediator.keys.fingerprint()));
    // With the claimant's party, undisclosed.
    let room = m.claimant_room;
    m.mediator
        .ok(RequestBody::Location {
            session,
            room: Some(room),
            disclose: false,
        })
        .await;
    assert_eq!(
        latest_presence(&mut m.claimant).await,
        MediatorWhereabouts::WithYou(room)
    );
    assert_eq!(
        latest_presence(&mut m.defendant).await,
        MediatorWhereabouts::Elsewhere
    );
    // Disclosed.
    m.mediator
        .ok(RequestBody::Location {
            session,
            room: Some(room),
            disclose: true,
        })
        .await;
    assert_eq!(
        latest_presence(&mut m.defendant).await,
        MediatorWhereabouts::In(room)
    );
    // Away.
    m.mediator
        .ok(RequestBody::Location {
            session,
            room: None,
            disclose: false,
        })
        .await;
    assert_eq!(
        latest_presence(&mut m.claimant).await,
        MediatorWhereabouts::Away
    );
    // A party's status reaches the mediator, not the other party.
    m.defendant
        .ok(RequestBody::Status {
            session,
            status: PartyStatus::NeedsMediator,
        })
        .await;
    match m
        .mediator
        .wait_for(|e| matches!(e, Event::Status { .. }))
        .await
    {
        Event::Status { member, status, .. } => {
            assert_eq!(member, m.defendant.keys.fingerprint());
            assert_eq!(status, PartyStatus::NeedsMediator);
        }
        _ => unreachable!(),
    }
    while let Some(e) = m.claimant.quiet_for(Duration::from_millis(200)).await {
        assert!(!matches!(e, Event::Status { .. }));
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_for_not_authenticating() {
    let relay = Relay::start_with(&["--auth-secs", "1"]).await;
    let mut ws = support::raw_connect(&relay.url()).await;
    let code = support::close_code(&mut ws).await;
    assert_eq!(code, caucus_server::CLOSE_AUTH_TIMEOUT);
}

#[tokio::test]
async fn a_connection_over_its_rate_is_told_to_slow_down() {
    let relay = Relay::start_with(&["--rate-per-sec", "1", "--rate-burst", "3"]).await;
    let mut c = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    let session = caucus_protocol::ids::SessionId([1; 16]);
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(c.refused(RequestBody::CloseSession { session }).await);
    }
    // auth used one token; two more requests fit the burst; then slow down.
    assert_eq!(
        codes,
        [
            ErrorCode::NotFound,
            ErrorCode::NotFound,
            ErrorCode::RateLimited,
            ErrorCode::RateLimited
        ]
    );
}

/// The statement in an `ok` reply, checked as the mediator's client checks it.
fn statement_in(reply: Reply, m: &Mediation) -> DeletionStatement {
    let Reply::Ok {
        statement: Some(statement),
        ..
    } = reply
    else {
        panic!("no deletion statement in {reply:?}");
    };
    statement
        .0
        .verify_for(
            &m.session,
            &m.mediator.keys.fingerprint(),
            &m.mediator.relay.fingerprint(),
        )
        .unwrap()
        .clone()
}

#[tokio::test]
async fn closing_a_session_ends_it_for_everyone_and_erases_its_data() {
    let relay = Relay::start().await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let room = m.claimant_room;
    m.post(1, room, "private words").await;
    assert_eq!(
        m.claimant
            .refused(RequestBody::CloseSession { session })
            .await,
        ErrorCode::Forbidden
    );
    let reply = m
        .mediator
        .request(RequestBody::CloseSession { session })
        .await;
    let statement = statement_in(reply, &m);
    assert_eq!(statement.erased.sessions, 1);
    assert_eq!(statement.erased.envelopes, 1);
    assert!(statement.erased.rosters >= 2 && statement.erased.key_bundles >= 1);
    assert!(statement.erased_at >= statement.closed_at);
    for c in [&mut m.claimant, &mut m.defendant] {
        assert!(matches!(
            c.wait_for(|e| matches!(e, Event::SessionClosed { .. }))
                .await,
            Event::SessionClosed { .. }
        ));
    }
    // Gone: a restart on the same data dir knows only that it closed, and
    // still holds the statement for the mediator alone, signed by the same
    // relay identity.
    let dir = relay.stop().await;
    let relay = Relay::start_in(dir, &[]).await;
    let mut again = Client::connect(&relay.url(), m.claimant.keys.clone_for_test()).await;
    assert_eq!(again.relay, m.mediator.relay);
    assert_eq!(
        again
            .refused(RequestBody::Subscribe {
                session,
                roster_after: 0,
                rooms: vec![]
            })
            .await,
        ErrorCode::SessionClosed
    );
    assert_eq!(
        again
            .refused(RequestBody::DeletionStatement { session })
            .await,
        ErrorCode::Forbidden
    );
    let mut mediator = Client::connect(&relay.url(), m.mediator.keys.clone_for_test()).await;
    let kept = statement_in(
        mediator
            .request(RequestBody::DeletionStatement { session })
            .await,
        &m,
    );
    assert_eq!(kept, statement);
}

#[tokio::test]
async fn the_relay_key_file_is_the_owners_alone() {
    let relay = Relay::start().await;
    let dir = relay.stop().await;
    let meta = std::fs::metadata(dir.path().join("relay.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn shutdown_closes_connections_with_1001() {
    let relay = Relay::start().await;
    let mut c = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    let stopping = tokio::spawn(relay.stop());
    assert_eq!(support::close_code(&mut c.ws).await, 1001);
    stopping.await.unwrap();
}

/// `/healthz` on a connection of its own: status and body.
async fn healthz(relay: &Relay) -> (u16, String) {
    let mut http = support::http::Http::connect(relay.addr).await;
    let (parts, body) = http.get("/healthz", &[]).await;
    (
        parts.status.as_u16(),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// Ask `/healthz` until it stops saying `ok` (the drain begins on the
/// relay's own task).
async fn healthz_once_not_ok(relay: &Relay) -> (u16, String) {
    tokio::time::timeout(support::WAIT, async {
        loop {
            let answer = healthz(relay).await;
            if answer.0 != 200 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap()
}

/// A request every relay answers with a reply of its own.
fn any_request() -> RequestBody {
    RequestBody::DeletionStatement {
        session: caucus_protocol::ids::SessionId::random().unwrap(),
    }
}

#[tokio::test]
async fn a_draining_relay_fails_health_checks_serves_its_connections_then_closes_them_with_1001() {
    let mut relay = Relay::start_with(&["--drain-secs", "1"]).await;
    assert_eq!(healthz(&relay).await, (200, "ok\n".into()));
    let mut c = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    relay.drain();
    assert_eq!(
        healthz_once_not_ok(&relay).await,
        (503, "draining\n".into())
    );
    // The connection it had is still served, and so is a new one.
    assert_eq!(c.refused(any_request()).await, ErrorCode::NotFound);
    let mut late = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    assert_eq!(late.refused(any_request()).await, ErrorCode::NotFound);
    // Then both are closed, going away, and the relay stops.
    assert_eq!(support::close_code(&mut c.ws).await, 1001);
    assert_eq!(support::close_code(&mut late.ws).await, 1001);
    tokio::time::timeout(support::WAIT, relay.wait())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_signal_ends_the_drain_at_once() {
    let mut relay = Relay::start_with(&["--drain-secs", "3600"]).await;
    let mut c = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    relay.drain();
    assert_eq!(
        healthz_once_not_ok(&relay).await,
        (503, "draining\n".into())
    );
    // Well before the hour is out.
    let stopping = tokio::spawn(relay.stop());
    assert_eq!(support::close_code(&mut c.ws).await, 1001);
    tokio::time::timeout(support::WAIT, stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_drain_of_zero_seconds_closes_connections_at_once() {
    let mut relay = Relay::start_with(&["--drain-secs", "0"]).await;
    let mut c = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    relay.drain();
    assert_eq!(support::close_code(&mut c.ws).await, 1001);
    tokio::time::timeout(support::WAIT, relay.wait())
        .await
        .unwrap();
}

/// Send SIGTERM to `child`.
fn terminate(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_starts_the_drain_and_a_second_one_stops_the_relay_at_once_with_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = support::spawn_binary_with(
        &dir.path().join("data"),
        "info",
        std::process::Stdio::null(),
        &["--drain-secs", "3600"],
    );
    let relay = Relay::external(&url, dir);
    let mut c = Client::connect(&url, DeviceKeys::generate().unwrap()).await;
    terminate(&child);
    assert_eq!(
        healthz_once_not_ok(&relay).await,
        (503, "draining\n".into())
    );
    assert_eq!(c.refused(any_request()).await, ErrorCode::NotFound);
    terminate(&child);
    assert_eq!(support::close_code(&mut c.ws).await, 1001);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap());
    let status = tokio::time::timeout(support::WAIT, status)
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

trait CloneForTest {
    fn clone_for_test(&self) -> DeviceKeys;
}

impl CloneForTest for DeviceKeys {
    fn clone_for_test(&self) -> DeviceKeys {
        DeviceKeys::from_secret_bytes(&self.to_secret_bytes()).unwrap()
    }
}

#[tokio::test]
async fn a_closed_sessions_data_is_kept_for_the_retention_period_then_erased() {
    // Whole seconds: the sweep may come up to a second early in wall time.
    let relay = Relay::start_with(&["--retention-secs", "4"]).await;
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let reply = m
        .mediator
        .request(RequestBody::CloseSession { session })
        .await;
    assert!(
        matches!(
            reply,
            Reply::Ok {
                statement: None,
                ..
            }
        ),
        "{reply:?}"
    );
    // Closed but retained: it is known, and refuses as closed; there is
    // no statement yet.
    let mut c = Client::connect(&relay.url(), m.claimant.keys.clone_for_test()).await;
    assert_eq!(
        c.refused(RequestBody::Status {
            session,
            status: PartyStatus::Ready
        })
        .await,
        ErrorCode::SessionClosed
    );
    assert_eq!(
        m.mediator
            .refused(RequestBody::DeletionStatement { session })
            .await,
        ErrorCode::NotFound
    );
    // After the period, the sweep erases it; until then a member may still
    // collect what it missed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let reply = m
            .mediator
            .request(RequestBody::DeletionStatement { session })
            .await;
        if matches!(reply, Reply::Ok { .. }) {
            let statement = statement_in(reply, &m);
            assert!(statement.erased_at >= statement.closed_at + 4);
            assert!(statement.erased.rosters >= 2);
            break;
        }
        // Kept, but closed: it cannot be followed again.
        assert_eq!(
            c.refused(RequestBody::Subscribe {
                session,
                roster_after: 0,
                rooms: vec![],
            })
            .await,
            ErrorCode::SessionClosed
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "still there: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        c.refused(RequestBody::Subscribe {
            session,
            roster_after: 0,
            rooms: vec![]
        })
        .await,
        ErrorCode::SessionClosed
    );
}

#[tokio::test]
async fn a_silent_client_is_closed_as_idle() {
    let relay = Relay::start_with(&["--ping-secs", "1", "--idle-secs", "2"]).await;
    let mut c = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    // Read nothing (so answer no ping) for longer than the idle period.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        support::close_code(&mut c.ws).await,
        caucus_server::CLOSE_IDLE
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_while_health_still_answers() {
    let relay = Relay::start_with(&["--max-connections", "1"]).await;
    let _first = Client::connect(&relay.url(), DeviceKeys::generate().unwrap()).await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(relay.url())
            .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "caucus.v1".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// The same device, again (for a second connection after a restart).
fn again(keys: &DeviceKeys) -> DeviceKeys {
    DeviceKeys::from_secret_bytes(&keys.to_secret_bytes()).unwrap()
}

#[tokio::test]
async fn each_mediator_has_a_location_and_statuses_and_locations_survive_a_restart() {
    let relay = Relay::start().await;
    let url = relay.url();
    let mut m = Mediation::start(&relay).await;
    let session = m.session;
    let mut co = Client::connect(&url, DeviceKeys::generate().unwrap()).await;
    m.builder
        .add_member(
            co.keys.public(),
            caucus_protocol::roster::Role::CoMediator,
            None,
            "Co-mediator",
        )
        .unwrap();
    m.publish().await;
    co.ok(RequestBody::Subscribe {
        session,
        roster_after: 0,
        rooms: vec![],
    })
    .await;
    // The lead mediator with the claimant's side, the co-mediator with the
    // defendant's: each side hears that a mediator is with them.
    let (claimant_room, defendant_room) = (m.claimant_room, m.defendant_room);
    m.mediator
        .ok(RequestBody::Location {
            session,
            room: Some(claimant_room),
            disclose: false,
        })
        .await;
    co.ok(RequestBody::Location {
        session,
        room: Some(defendant_room),
        disclose: false,
    })
    .await;
    assert_eq!(
        latest_presence(&mut m.claimant).await,
        MediatorWhereabouts::WithYou(claimant_room)
    );
    assert_eq!(
        latest_presence(&mut m.defendant).await,
        MediatorWhereabouts::WithYou(defendant_room)
    );
    // Statuses; then the solicitor leaves the session.
    for (c, status) in [
        (&mut m.defendant, PartyStatus::OnBreak),
        (&mut m.solicitor, PartyStatus::NeedsMediator),
    ] {
        c.ok(RequestBody::Status { session, status }).await;
    }
    let solicitor = m.solicitor.keys.fingerprint();
    m.builder.remove_member(&solicitor).unwrap();
    m.publish().await;

    // A restart on the same data directory.
    let keys = [&m.mediator.keys, &m.claimant.keys, &m.defendant.keys].map(again);
    drop(m);
    drop(co);
    let relay = Relay::start_in(relay.stop().await, &[]).await;
    let url = relay.url();
    let [mediator, claimant, defendant] = keys.map(|k| Client::connect(&url, k));
    let (mut mediator, mut claimant, mut defendant) =
        (mediator.await, claimant.await, defendant.await);
    for c in [&mut mediator, &mut claimant, &mut defendant] {
        c.ok(RequestBody::Subscribe {
            session,
            roster_after: 0,
            rooms: vec![],
        })
        .await;
    }
    // The mediator is told the statuses kept: the defendant's, and not the
    // removed solicitor's.
    let mut statuses = Vec::new();
    while let Some(e) = mediator.quiet_for(Duration::from_millis(300)).await {
        if let Event::Status { member, status, .. } = e {
            statuses.push((member, status));
        }
    }
    assert_eq!(
        statuses,
        [(defendant.keys.fingerprint(), PartyStatus::OnBreak)]
    );
    assert_eq!(
        latest_presence(&mut claimant).await,
        MediatorWhereabouts::WithYou(claimant_room)
    );
    assert_eq!(
        latest_presence(&mut defendant).await,
        MediatorWhereabouts::WithYou(defendant_room)
    );
}

/// Once `stop` returns, nothing of the relay holds its store: another
/// relay (or the same one, restarted) opens the data directory at once,
/// whose sled files are locked while any handle on them lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_relay_has_let_go_of_its_data_directory() {
    let mut dir = tempfile::tempdir().unwrap();
    for _ in 0..100 {
        let relay = Relay::start_in(dir, &[]).await;
        dir = relay.stop().await;
    }
}
