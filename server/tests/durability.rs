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

/// The relay binary over `dir`, unable to grow any file past `kib` KiB (as
/// on a full disk: a write past it fails with `EFBIG`).
fn spawn_limited(dir: &std::path::Path, kib: u64) -> (Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {}; exec \"$0\" --listen 127.0.0.1:0 --data-dir \"$1\"",
            kib * 2
        ))
        .arg(env!("CARGO_BIN_EXE_caucus-server"))
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("caucus-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_store_fails_stops_and_never_calls_a_stored_post_refused() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn_limited(dir.path(), 2048);
    let relay = relay_at(&url, dir);
    let mut m = Mediation::start(&relay).await;
    let room = m.claimant_room;
    let keys = caucus_protocol::identity::DeviceKeys::from_secret_bytes(
        &m.claimant.keys.to_secret_bytes(),
    )
    .unwrap();
    // The claimant posts, one at a time, until the relay stops answering.
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    'posting: for n in 0..2000u64 {
        let content = Content::Text {
            sharing: Sharing::MediatorOnly,
            body: format!("{n:>8}").repeat(1000),
        };
        let env = m.views[1].seal(&keys, &room, &content).unwrap();
        let hash = env.hash();
        let id = 1000 + n;
        let frame = serde_json::to_string(&caucus_protocol::wire::Request {
            v: 1,
            id,
            body: RequestBody::Post {
                envelope: Encoded(env),
            },
        })
        .unwrap();
        if futures_util::SinkExt::send(&mut m.claimant.ws, Message::text(frame))
            .await
            .is_err()
        {
            break;
        }
        loop {
            let text = match tokio::time::timeout(support::WAIT, m.claimant.ws.next())
                .await
                .unwrap()
            {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(_)) => continue,
                _ => break 'posting,
            };
            match serde_json::from_str(text.as_str()).unwrap() {
                caucus_protocol::wire::ServerFrame::Reply(caucus_protocol::wire::Reply::Ok {
                    index: Some(index),
                    ..
                }) => {
                    acked.push(index);
                    break;
                }
                caucus_protocol::wire::ServerFrame::Reply(
                    caucus_protocol::wire::Reply::Error { code, .. },
                ) => {
                    assert_eq!(code, caucus_protocol::wire::ErrorCode::Internal);
                    refused.push(hash);
                    break;
                }
                caucus_protocol::wire::ServerFrame::Event(_) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    // The relay stopped by itself, rather than go on refusing.
    let Some(status) = support::exited_within(&mut child, std::time::Duration::from_secs(10)).await
    else {
        child.kill().unwrap();
        panic!(
            "the relay went on after its store failed ({} refused)",
            refused.len()
        );
    };
    assert_eq!(status.code(), Some(75), "{status:?}");
    assert!(!acked.is_empty());
    // Started again, with room to write: the log holds every acknowledged
    // post, numbered with no gap, and none of the posts refused.
    let dir = relay.into_dir();
    let (mut child, url) = spawn(dir.path());
    let mut mediator = Client::connect(
        &url,
        caucus_protocol::identity::DeviceKeys::from_secret_bytes(
            &m.mediator.keys.to_secret_bytes(),
        )
        .unwrap(),
    )
    .await;
    mediator
        .ok(RequestBody::Subscribe {
            session: m.session,
            roster_after: 0,
            rooms: vec![],
        })
        .await;
    let mut stored = Vec::new();
    for e in mediator.events.drain(..) {
        if let Event::Envelope {
            index, envelope, ..
        } = e
            && envelope.0.header().room == room
        {
            stored.push((index, envelope.0.hash()));
        }
    }
    let indexes: Vec<u64> = stored.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indexes,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "no gap"
    );
    for index in &acked {
        assert!(indexes.contains(index), "acknowledged {index} lost");
    }
    // sled's relay stops at the failed write, answering nothing after the
    // last flush: it refuses nothing.
    assert_eq!(refused, Vec::new());
    child.kill().unwrap();
    child.wait().unwrap();
}
