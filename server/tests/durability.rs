//! Every acknowledged envelope survives `kill -9` of the relay binary and a
//! restart on the same data directory, in order.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use std::process::{Child, Stdio};

use caucus_protocol::content::{Content, Sharing};
use caucus_protocol::wire::{Encoded, Event, RequestBody, RoomCursor};
use support::{Client, Mediation};

fn spawn(dir: &std::path::Path) -> (Child, String) {
    support::spawn_binary(dir, "warn", Stdio::null())
}

/// A stand-in for `support::Relay` that points at a child process.
fn relay_at(url: &str, dir: tempfile::TempDir) -> support::Relay {
    support::Relay::external(url, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_envelopes_survive_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn(dir.path());
    let relay = relay_at(&url, dir);
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    // Two members pipeline their posts (so commits group) and the relay is
    // killed while some are still in flight; every acknowledged one counts.
    const N: u64 = 300;
    let mut acked = Vec::new();
    for i in [1, 2] {
        let keys = caucus_protocol::identity::DeviceKeys::from_secret_bytes(
            &m.client(i).keys.to_secret_bytes(),
        )
        .unwrap();
        for n in 0..N / 2 {
            let content = Content::Text {
                sharing: Sharing::MediatorOnly,
                body: format!("message {i}/{n}"),
            };
            let env = m.views[i].seal(&keys, &room, &content).unwrap();
            let frame = serde_json::to_string(&caucus_protocol::wire::Request {
                v: 1,
                id: 1000 + n,
                body: RequestBody::Post {
                    envelope: Encoded(env),
                },
            })
            .unwrap();
            m.client(i).send_text(frame).await;
        }
    }
    // Read the acknowledgements of the first half of each member's posts.
    for i in [1, 2] {
        for n in 0..N / 4 {
            match m.client(i).reply_to(1000 + n).await {
                caucus_protocol::wire::Reply::Ok {
                    index: Some(index), ..
                } => {
                    acked.push(index);
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // No goodbye: SIGKILL.
    child.kill().unwrap();
    child.wait().unwrap();
    let dir = relay.into_dir();
    let (mut child, url) = spawn(dir.path());
    let keys = caucus_protocol::identity::DeviceKeys::from_secret_bytes(
        &m.mediator.keys.to_secret_bytes(),
    )
    .unwrap();
    let mut mediator = Client::connect(&url, keys).await;
    mediator
        .ok(RequestBody::Subscribe {
            session: m.session,
            roster_after: 0,
            rooms: vec![RoomCursor { room, after: 0 }],
        })
        .await;
    // The catch-up is every stored envelope of the room, in index order
    // 1, 2, 3, ... with no hole, and it includes every acknowledged index.
    let mut got = Vec::new();
    let mut view = m.views[0].clone();
    while let Some(event) = mediator.quiet_for(std::time::Duration::from_secs(2)).await {
        if let Event::Envelope {
            index, envelope, ..
        } = event
            && envelope.0.header().room == room
        {
            view.open(&envelope.0).unwrap();
            got.push(index);
        }
    }
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>());
    acked.sort();
    assert!(acked.len() as u64 == N / 2);
    assert!(
        got.len() >= acked.len(),
        "{} stored, {} acknowledged",
        got.len(),
        acked.len()
    );
    assert!(acked.iter().all(|i| got.contains(i)));
    child.kill().unwrap();
    child.wait().unwrap();
}
