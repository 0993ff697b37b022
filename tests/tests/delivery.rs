//! A post whose reply is lost, end to end: real clients, the real relay, and
//! the hostile-relay proxy swallowing the reply (protocol.md 13.10 item 9).
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::time::Duration;

use caucus_client::{Client, Event, StateDir};
use caucus_protocol::content::Sharing;
use caucus_protocol::ids::SessionId;
use caucus_tests::proxy::{Proxy, Verdict};
use caucus_tests::{WAIT, wait_for};

/// A state directory, once the process that held it has let it go.
async fn state_dir(path: &std::path::Path) -> StateDir {
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

fn kept(client: &Client, session: &SessionId, text: &str) -> usize {
    client
        .history(session)
        .iter()
        .filter(|e| matches!(e, Event::Message { text: t, .. } if t == text))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_stored_whose_reply_died_with_the_process_is_kept_once_after_a_restart() {
    let (_relay, proxy) = Proxy::with_relay(&[]).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut mediator = Client::open(state_dir(dirs[0].path()).await, proxy.url())
        .await
        .unwrap();
    let (session, parties) = mediator
        .create_session("The mediator", &["Claimant"])
        .await
        .unwrap();
    let link = mediator
        .invite(
            &session,
            &parties[0],
            "Ms C",
            caucus_client::now() + 3600,
            caucus_client::Admission::Automatic,
        )
        .await
        .unwrap();
    let (mut claimant, _) = Client::join(state_dir(dirs[1].path()).await, &link)
        .await
        .unwrap();
    wait_for(&mut claimant, |e| matches!(e, Event::Joined { .. })).await;
    claimant.sync(&session).await.unwrap();
    let room = claimant.my_room(&session).unwrap();
    // The relay stores the post; its reply never reaches the claimant, whose
    // process then ends.
    let me = claimant.fingerprint();
    proxy.set_rule(move |f| {
        let posted = f.kind() == "ok" && f.json.get("index").is_some_and(|i| !i.is_null());
        if posted && f.to_client(&me) {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    let text = "stored, but the answer was lost";
    tokio::select! {
        r = claimant.send(&session, &room, text, Sharing::MediatorOnly) => {
            panic!("the reply came through: {r:?}")
        }
        _ = wait_for(&mut mediator, |e| matches!(e, Event::Message { text: t, .. } if t == text)) => {}
    }
    drop(claimant);
    proxy.clear_rule();
    // Started again on its state directory, it keeps the message once…
    let back = Client::open(state_dir(dirs[1].path()).await, proxy.url())
        .await
        .unwrap();
    back.sync(&session).await.unwrap();
    assert_eq!(kept(&back, &session, text), 1, "kept once");
    // …and did not send it again: the mediator's next message from the
    // claimant is the next one written, with no replay or gap.
    back.send(&session, &room, "and then", Sharing::MediatorOnly)
        .await
        .unwrap();
    let next = wait_for(&mut mediator, |e| {
        matches!(e, Event::Message { .. } | Event::Warning { .. })
    })
    .await;
    assert!(
        matches!(&next, Event::Message { text, .. } if text == "and then"),
        "{next:?}"
    );
    assert_eq!(kept(&mediator, &session, text), 1);
}
