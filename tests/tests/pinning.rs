//! Who is at each end of a connection (protocol.md 12.3 and 13.11; open
//! questions 12 and 34): a device's login is bound to the relay it dialled,
//! so a relay that passes on another's challenge gets nothing it can use
//! there; and the relay's identity is pinned, from the invite link or on
//! first use, so a relay showing another key is refused unless the pinned
//! key vouched for it with a rotation statement. Real relays on loopback
//! ports, real clients, and the hostile proxy where a lying relay is
//! involved. `docs/security.md` maps each claim to its test.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::path::Path;
use std::time::Duration;

use caucus_client::{Admission, Client, ClientError, StateDir};
use caucus_protocol::codec::Canonical;
use caucus_protocol::deletion::{DeletionStatement, SignedDeletionStatement};
use caucus_protocol::identity::{DeviceKeys, Fingerprint};
use caucus_protocol::ids::SessionId;
use caucus_protocol::invite::Invite;
use caucus_tests::proxy::{Dir, Frame, Proxy, Verdict};
use caucus_tests::{Relay, WAIT};
use serde_json::Value;

/// A state directory, once the client that held it has let it go.
async fn state_dir(path: &Path) -> StateDir {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match StateDir::open(path) {
            Ok(dir) => return dir,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// The first frame the proxy has seen that `pick` accepts, waiting for it.
async fn seen(proxy: &Proxy, pick: impl Fn(&Frame) -> bool) -> Frame {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(f) = proxy.log().into_iter().find(|f| pick(f)) {
            return f;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such frame within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The relay's answer to a device's `auth` (request id 0).
fn auth_reply(f: &Frame) -> bool {
    f.dir == Dir::ToClient && f.json["id"] == 0 && matches!(f.kind(), "ok" | "error")
}

/// A mediator with a session on the relay at `url`, and an invite link to
/// it; the client is dropped (its state kept in `dir`).
async fn mediator_with_session(url: &str, dir: &Path) -> (SessionId, String) {
    let client = Client::open(state_dir(dir).await, url).await.unwrap();
    let (session, parties) = client.create_session("M", &["P"]).await.unwrap();
    let link = client
        .invite(
            &session,
            &parties[0],
            "A party",
            caucus_client::now() + 3600,
            Admission::Automatic,
        )
        .await
        .unwrap();
    (session, link)
}

fn unpinned(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Protocol(caucus_protocol::Error::UnpinnedRelay { .. })
    )
}

fn now() -> u64 {
    caucus_client::now()
}

// ----- the login is bound to the relay dialled (q12) -----

/// A hostile relay at its own URL passes the real relay's challenge to a
/// device that dialled it, and the device's answer back: the real relay
/// refuses it, since it names a URL the relay does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_passing_on_another_relays_challenge_does_not_log_the_device_in_there() {
    let relay = Relay::start(&[]).await;
    let hostile = Proxy::start(&relay.url).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::open(state_dir(dir.path()).await, hostile.url())
        .await
        .unwrap();
    let reply = seen(&hostile, auth_reply).await;
    assert_eq!(reply.json["type"], "error", "{}", reply.json);
    assert_eq!(reply.json["code"], "auth_failed");
    let message = reply.json["message"].as_str().unwrap();
    assert!(message.contains("is not this relay's URL"), "{message}");
    assert!(!client.is_online());
}

/// A hostile relay in front of the real one (which knows its URL, as behind
/// a reverse proxy) shows devices its own key in the real relay's
/// challenge: the answers name that key, and the real relay refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_showing_its_own_key_in_another_relays_challenge_gets_no_login_there() {
    let (_relay, proxy) = Proxy::with_relay(&[]).await;
    let hostile = DeviceKeys::generate().unwrap();
    let shown = caucus_protocol::b64::encode(&hostile.public().to_bytes());
    proxy.set_rule(move |f| {
        if f.dir == Dir::ToClient && f.kind() == "challenge" {
            let mut json = f.json.clone();
            json["relay"] = Value::String(shown.clone());
            Verdict::Replace(vec![json])
        } else {
            Verdict::Pass
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let client = Client::open(state_dir(dir.path()).await, proxy.url())
        .await
        .unwrap();
    let reply = seen(&proxy, auth_reply).await;
    assert_eq!(reply.json["type"], "error", "{}", reply.json);
    assert_eq!(reply.json["code"], "auth_failed");
    assert!(!client.is_online());
}

// ----- the relay's key is pinned (q34) -----

/// The relay's key file replaced (a relay of another key at the same
/// address): the mediator, who pinned the key on creating the session,
/// refuses to log in, and so does a joiner with a link made before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_showing_another_key_is_refused_at_connect() {
    let relay = Relay::start(&[]).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_session, link) = mediator_with_session(&relay.url, dirs[0].path()).await;
    let other = DeviceKeys::generate().unwrap();
    let key_file = relay.dir.path().join("relay.key");
    std::fs::remove_file(&key_file).unwrap();
    std::fs::write(&key_file, other.to_secret_bytes()).unwrap();
    let relay = relay.restart().await;

    let err = Client::open(state_dir(dirs[0].path()).await, &relay.url)
        .await
        .err()
        .unwrap();
    assert!(unpinned(&err), "{err}");
    assert!(err.to_string().contains(&other.fingerprint().to_string()));
    let err = Client::join(state_dir(dirs[1].path()).await, &link)
        .await
        .err()
        .unwrap();
    assert!(unpinned(&err), "{err}");
}

/// `caucus-server --rotate-key`: a relay that shows its new key without
/// the old key's statement is refused; with it, accepted, and the pin
/// moves (new links name the new key; an older link still admits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_relay_is_accepted_with_its_statement_and_refused_without() {
    let relay = Relay::start(&[]).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (session, old_link) = mediator_with_session(&relay.url, dirs[0].path()).await;
    let (old, new) = caucus_server::rotate_key(relay.dir.path(), now()).unwrap();
    assert_eq!(Invite::from_link(&old_link).unwrap().relay_key, old);

    let statements = relay.dir.path().join("relay.rotations");
    let aside = relay.dir.path().join("rotations.aside");
    std::fs::rename(&statements, &aside).unwrap();
    let relay = relay.restart().await;
    let err = Client::open(state_dir(dirs[0].path()).await, &relay.url)
        .await
        .err()
        .unwrap();
    assert!(unpinned(&err), "{err}");

    std::fs::rename(&aside, &statements).unwrap();
    let relay = relay.restart().await;
    let mediator = Client::open(state_dir(dirs[0].path()).await, &relay.url)
        .await
        .unwrap();
    let party = mediator.parties(&session).unwrap()[0].0;
    let new_link = mediator
        .invite(
            &session,
            &party,
            "Another",
            now() + 3600,
            Admission::Automatic,
        )
        .await
        .unwrap();
    assert_eq!(Invite::from_link(&new_link).unwrap().relay_key, new);
    let (_joiner, joined) = Client::join(state_dir(dirs[1].path()).await, &old_link)
        .await
        .unwrap();
    assert_eq!(joined, session);
}

/// The proxy withholds the deletion statement from `close_session`'s reply,
/// and the relay then rotates its key. Asked again, a statement the proxy
/// signed with a key of its own is refused; the relay's own, signed with
/// the key it had when it erased the session (which vouched for the new
/// one), is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_statement_is_checked_against_the_pinned_keys_not_the_one_shown() {
    let (relay, proxy) = Proxy::with_relay(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mediator = Client::open(state_dir(dir.path()).await, proxy.url())
        .await
        .unwrap();
    let (session, _) = mediator.create_session("M", &["P"]).await.unwrap();
    proxy.set_rule(|f| match f.json.get("statement") {
        Some(_) if f.dir == Dir::ToClient => {
            let mut json = f.json.clone();
            json.as_object_mut().unwrap().remove("statement");
            Verdict::Replace(vec![json])
        }
        _ => Verdict::Pass,
    });
    assert!(mediator.close_session(&session).await.unwrap().is_none());
    let genuine: SignedDeletionStatement = seen(&proxy, |f| f.json.get("statement").is_some())
        .await
        .decode("statement")
        .unwrap();
    let (old, _new) = caucus_server::rotate_key(relay.dir.path(), now()).unwrap();
    assert_eq!(genuine.unverified().relay.fingerprint(), old);
    let _relay = relay.restart().await;

    let forger = DeviceKeys::generate().unwrap();
    let forged = DeletionStatement {
        relay: forger.public().clone(),
        ..genuine.unverified().clone()
    }
    .sign(&forger)
    .unwrap();
    let forged = caucus_protocol::b64::encode(&forged.to_bytes());
    proxy.set_rule(move |f| match f.json.get("statement") {
        Some(_) if f.dir == Dir::ToClient => {
            let mut json = f.json.clone();
            json["statement"] = Value::String(forged.clone());
            Verdict::Replace(vec![json])
        }
        _ => Verdict::Pass,
    });
    let err = mediator.deletion_statement(&session).await.unwrap_err();
    assert!(err.to_string().contains("signed by another relay"), "{err}");

    proxy.clear_rule();
    let kept = mediator.deletion_statement(&session).await.unwrap();
    assert_eq!(kept.unverified().relay.fingerprint(), old);
    let signer: Fingerprint = kept.unverified().relay.fingerprint();
    assert_ne!(signer, forger.fingerprint());
}
