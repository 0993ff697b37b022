//! Three relay nodes on loopback, one PostgreSQL and one NATS
//! (docs/cluster.md): a mediation whose members sit on different nodes sees
//! one order; posts into one room through two nodes at once take one
//! gap-free sequence of indexes; and a node killed with `kill -9` under load
//! loses nothing acknowledged — the clients resume on the other nodes and
//! every acknowledged envelope reaches every reader exactly once.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)] // test helpers

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use caucus_protocol::content::{Content, Sharing};
use caucus_protocol::crypto::Digest;
use caucus_protocol::envelope::Envelope;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::RoomId;
use caucus_protocol::wire::{
    Encoded, ErrorCode, Event, Reply, Request, RequestBody, RoomCursor, ServerFrame,
};
use caucus_server::CLOSE_MOVED;
use caucus_testkit::Cluster;
use futures_util::StreamExt;
use support::{Client, Mediation};
use tokio_tungstenite::tungstenite::Message;

/// Three nodes on one database and one NATS server, with one relay key,
/// leases of 2 s.
fn start_cluster() -> Cluster {
    Cluster::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_caucus-server")),
        3,
        &["--lease-secs", "2"],
    )
}

fn copy(keys: &DeviceKeys) -> DeviceKeys {
    DeviceKeys::from_secret_bytes(&keys.to_secret_bytes()).unwrap()
}

/// A post of participant `i` of `m` into `room`, sealed, with its hash.
fn seal(m: &mut Mediation, i: usize, room: RoomId, body: &str) -> Envelope {
    let keys = DeviceKeys::from_secret_bytes(&m.client(i).keys.to_secret_bytes()).unwrap();
    let content = Content::Text {
        sharing: Sharing::MayShare,
        body: body.into(),
    };
    m.views[i].seal(&keys, &room, &content).unwrap()
}

fn post_frame(id: u64, envelope: &Envelope) -> String {
    serde_json::to_string(&Request {
        v: 1,
        id,
        body: RequestBody::Post {
            envelope: Encoded(envelope.clone()),
        },
    })
    .unwrap()
}

/// What one reader received of one room: index → envelope hash, and how
/// many times each index came.
#[derive(Default, Debug)]
struct Received {
    envelopes: BTreeMap<u64, Digest>,
    repeats: Vec<u64>,
}

impl Received {
    fn take(&mut self, index: u64, envelope: &Envelope) {
        if self.envelopes.insert(index, envelope.hash()).is_some() {
            self.repeats.push(index);
        }
    }

    fn last(&self) -> u64 {
        self.envelopes.keys().next_back().copied().unwrap_or(0)
    }
}

/// Read `client`'s frames for up to `d` (or until it closes): envelopes of
/// `room` into `received`, replies into `replies`. Whether it is still open.
async fn pump(
    client: &mut Client,
    room: RoomId,
    received: &mut Received,
    replies: &mut HashMap<u64, Reply>,
    d: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + d;
    for event in client.events.drain(..).collect::<Vec<_>>() {
        if let Event::Envelope {
            index, envelope, ..
        } = event
            && envelope.0.header().room == room
        {
            received.take(index, &envelope.0);
        }
    }
    loop {
        let next = tokio::time::timeout_at(deadline, client.ws.next()).await;
        let Ok(next) = next else { return true };
        let text = match next {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return false,
            Some(Ok(_)) => continue,
        };
        match serde_json::from_str(text.as_str()).unwrap() {
            ServerFrame::Reply(reply) => {
                let id = match &reply {
                    Reply::Ok { id, .. } => *id,
                    Reply::Error { id, .. } => id.unwrap_or(0),
                };
                replies.insert(id, reply);
            }
            ServerFrame::Event(event) => {
                if let Event::Envelope {
                    index, envelope, ..
                } = *event
                    && envelope.0.header().room == room
                {
                    received.take(index, &envelope.0);
                }
            }
        }
    }
}

/// [`pump`] until `done` (at most 20 s): whether it was.
async fn pump_until(
    client: &mut Client,
    room: RoomId,
    received: &mut Received,
    replies: &mut HashMap<u64, Reply>,
    done: impl Fn(&Received, &HashMap<u64, Reply>) -> bool,
) -> bool {
    for _ in 0..40 {
        if done(received, replies) {
            return true;
        }
        if !pump(client, room, received, replies, Duration::from_millis(500)).await {
            return false;
        }
    }
    done(received, replies)
}

/// Connect participant `i` again at `url` and follow `room` from after
/// `after`: its catch-up arrives through [`pump`].
async fn resume(m: &mut Mediation, i: usize, url: &str, room: RoomId, after: u64) {
    let secret = m.client(i).keys.to_secret_bytes();
    let session = m.session;
    // The first node to see the session after its owner died waits out
    // the lease; a refusal meanwhile is retried.
    for _ in 0..10 {
        let keys = DeviceKeys::from_secret_bytes(&secret).unwrap();
        let mut client = Client::connect(url, keys).await;
        let roster_after = m.views[i].roster().map_or(0, |r| r.version);
        let reply = client
            .request(RequestBody::Subscribe {
                session,
                roster_after,
                rooms: vec![RoomCursor { room, after }],
            })
            .await;
        if let Reply::Ok { .. } = reply {
            *m.client(i) = client;
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("participant {i} could not resume at {url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mediation_spread_over_three_nodes_sees_one_order() {
    let cluster = start_cluster();
    // The mediator creates the session at node 0, which owns it; the
    // claimant is at node 1, the solicitor at node 2, the defendant at 0.
    let urls = [
        cluster.nodes[0].url.clone(),
        cluster.nodes[1].url.clone(),
        cluster.nodes[2].url.clone(),
    ];
    let mut m = Mediation::start_across(&urls).await;
    let room = m.claimant_room;

    // The mediator sees everyone online, wherever they are connected.
    m.mediator
        .wait_for(|e| matches!(e, Event::Presence { online, .. } if online.len() == 4))
        .await;

    // One post through each node arrives at every reader in the room,
    // wherever they are, with the same index.
    let a = m.post(1, room, "from node 1").await;
    let b = m.post(2, room, "from node 2").await;
    let c = m.post(0, room, "from node 0").await;
    assert_eq!((a, b, c), (1, 2, 3));
    let mut seen = Vec::new();
    for i in [0, 1, 2] {
        let mut got = Received::default();
        let mut replies = HashMap::new();
        assert!(
            pump_until(m.client(i), room, &mut got, &mut replies, |g, _| g
                .envelopes
                .len()
                >= 2)
            .await,
            "got: {:?}",
            got
        );
        seen.push(got.envelopes);
    }
    // Each sees the two posts of the others.
    assert_eq!(seen[0].keys().copied().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(seen[1].keys().copied().collect::<Vec<_>>(), [2, 3]);
    assert_eq!(seen[2].keys().copied().collect::<Vec<_>>(), [1, 3]);
    assert_eq!(seen[0][&2], seen[1][&2]);
    assert_eq!(seen[0][&1], seen[2][&1]);

    // Posts into one room through two nodes at once take one gap-free
    // order: the claimant (node 1) and the solicitor (node 2) pipeline 40
    // posts each, concurrently.
    const N: u64 = 40;
    let mut sent: HashMap<(usize, u64), Digest> = HashMap::new();
    let mut frames: HashMap<usize, Vec<String>> = HashMap::new();
    for i in [1, 2] {
        for n in 0..N {
            let envelope = seal(&mut m, i, room, &format!("{i}/{n}"));
            sent.insert((i, 100 + n), envelope.hash());
            frames
                .entry(i)
                .or_default()
                .push(post_frame(100 + n, &envelope));
        }
    }
    async fn send(c: &mut Client, frames: Vec<String>) {
        for f in frames {
            c.send_text(f).await;
        }
    }
    tokio::join!(
        send(&mut m.claimant, frames.remove(&1).unwrap()),
        send(&mut m.solicitor, frames.remove(&2).unwrap())
    );
    let mut indexes: BTreeMap<u64, Digest> = BTreeMap::new();
    let mut received: Vec<Received> = (0..3).map(|_| Received::default()).collect();
    for i in [1, 2] {
        let mut replies = HashMap::new();
        assert!(
            pump_until(m.client(i), room, &mut received[i], &mut replies, |_, r| r
                .len()
                >= N as usize)
            .await,
            "received[i]: {:?}",
            received[i]
        );
        for n in 0..N {
            match &replies[&(100 + n)] {
                Reply::Ok {
                    index: Some(index), ..
                } => {
                    assert!(
                        indexes.insert(*index, sent[&(i, 100 + n)]).is_none(),
                        "index {index} given twice"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(
        indexes.keys().copied().collect::<Vec<_>>(),
        (4..4 + 2 * N).collect::<Vec<_>>(),
        "one gap-free order"
    );
    // The mediator, at node 0, receives all 80, each once.
    let mut replies = HashMap::new();
    assert!(
        pump_until(
            &mut m.mediator,
            room,
            &mut received[0],
            &mut replies,
            |g, _| g.envelopes.len() >= 2 * N as usize
        )
        .await,
        "received[0]: {:?}",
        received[0]
    );
    for (index, hash) in &indexes {
        assert_eq!(received[0].envelopes.get(index), Some(hash));
    }
    assert!(received[0].repeats.is_empty());
}

/// One poster's messages: each text, the envelope it was last sealed in,
/// and the index it was acknowledged at.
#[derive(Default)]
struct Poster {
    messages: Vec<(String, Envelope, Option<u64>)>,
    /// Request id → message.
    ids: HashMap<u64, usize>,
}

impl Poster {
    /// Take `replies`: an `ok` acknowledges its message; a refusal means
    /// the connection must resume (returned true).
    fn take(&mut self, replies: &HashMap<u64, Reply>) -> bool {
        let mut resume = false;
        for (id, reply) in replies {
            let Some(&k) = self.ids.get(id) else { continue };
            match reply {
                Reply::Ok {
                    index: Some(index), ..
                } => self.messages[k].2 = Some(*index),
                _ => resume = true,
            }
        }
        resume
    }

    /// What the poster's own catch-up showed stored is acknowledged too.
    fn stored(&mut self, received: &Received) {
        for (index, hash) in &received.envelopes {
            for message in &mut self.messages {
                if message.1.hash() == *hash {
                    message.2 = Some(*index);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing_acknowledged() {
    let mut cluster = start_cluster();
    // The session is owned by node 0, where the mediator made it; the
    // posters sit at nodes 1 and 2, the readers at 0 (the mediator) and 2
    // (the defendant). All are in the joint room.
    let urls = [
        cluster.nodes[0].url.clone(),
        cluster.nodes[1].url.clone(),
        cluster.nodes[2].url.clone(),
        cluster.nodes[2].url.clone(),
    ];
    let mut m = Mediation::start_across(&urls).await;
    let room = m.joint_room;

    let mut received: Vec<Received> = (0..4).map(|_| Received::default()).collect();
    let mut posters: HashMap<usize, Poster> = HashMap::new();
    let mut next_id: u64 = 1000;
    const ROUNDS: usize = 12;
    const BURST: usize = 10;
    let mut killed = false;
    for round in 0..ROUNDS + 10 {
        // Each poster pipelines a burst, for ROUNDS rounds.
        for i in [1, 2] {
            for n in 0..BURST {
                if round >= ROUNDS {
                    break;
                }
                let text = format!("{i}/{round}/{n}");
                let envelope = seal(&mut m, i, room, &text);
                let poster = posters.entry(i).or_default();
                poster.messages.push((text, envelope.clone(), None));
                poster.ids.insert(next_id, poster.messages.len() - 1);
                let frame = post_frame(next_id, &envelope);
                next_id += 1;
                m.client(i).send_text(frame).await;
            }
        }
        if round == ROUNDS / 3 && !killed {
            // No goodbye: SIGKILL, with posts in flight through it.
            cluster.kill(0);
            killed = true;
        }
        for i in 0..4 {
            let mut replies = HashMap::new();
            let open = pump(
                m.client(i),
                room,
                &mut received[i],
                &mut replies,
                Duration::from_millis(300),
            )
            .await;
            let refused = posters.get_mut(&i).is_some_and(|p| p.take(&replies));
            if open && !refused {
                continue;
            }
            // Closed (its node died, or the session moved) or refused while
            // it moved: resume at a live node from the cursor, learn from
            // the catch-up which of its own posts are stored, and send the
            // others again, in order (sealed anew if a later one of the
            // same sender got in before them).
            let url = if i == 0 {
                cluster.nodes[1].url.clone()
            } else {
                urls[i].clone()
            };
            let after = received[i].last();
            resume(&mut m, i, &url, room, after).await;
            let mut replies = HashMap::new();
            pump(
                m.client(i),
                room,
                &mut received[i],
                &mut replies,
                Duration::ZERO,
            )
            .await;
            let Some(poster) = posters.get_mut(&i) else {
                continue;
            };
            poster.take(&replies);
            poster.stored(&received[i]);
            let last_stored = poster.messages.iter().rposition(|msg| msg.2.is_some());
            let unstored: Vec<usize> = (0..poster.messages.len())
                .filter(|k| poster.messages[*k].2.is_none())
                .collect();
            // A message left behind by a later one of the same sender can
            // never be stored as sealed: seal every unstored one anew.
            let again = unstored
                .first()
                .is_some_and(|first| last_stored.is_some_and(|last| *first < last));
            for k in unstored {
                if again {
                    let text = posters[&i].messages[k].0.clone();
                    let envelope = seal(&mut m, i, room, &text);
                    posters.get_mut(&i).unwrap().messages[k].1 = envelope;
                }
                let poster = posters.get_mut(&i).unwrap();
                poster.ids.insert(next_id, k);
                let frame = post_frame(next_id, &poster.messages[k].1);
                next_id += 1;
                m.client(i).send_text(frame).await;
            }
        }
        let done = posters.values().all(|p| {
            p.messages.len() == ROUNDS * BURST && p.messages.iter().all(|msg| msg.2.is_some())
        });
        if round >= ROUNDS && done {
            break;
        }
    }
    assert!(killed);
    // Every message acknowledged once, at one index each, and the indexes
    // are one gap-free order.
    let mut acked: BTreeMap<u64, Digest> = BTreeMap::new();
    for poster in posters.values() {
        for (text, envelope, index) in &poster.messages {
            let index = index.unwrap_or_else(|| panic!("{text} never acknowledged"));
            assert!(
                acked.insert(index, envelope.hash()).is_none(),
                "index {index} twice"
            );
        }
    }
    let total = 2 * ROUNDS * BURST;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>()
    );
    // Every reader has every acknowledged envelope, once: the posters have
    // the other's.
    let mut replies = HashMap::new();
    for (i, got) in received.iter_mut().enumerate() {
        let all = |g: &Received, _: &HashMap<u64, Reply>| {
            g.envelopes.len()
                >= total
                    - if matches!(i, 1 | 2) {
                        ROUNDS * BURST
                    } else {
                        0
                    }
        };
        assert!(
            pump_until(m.client(i), room, got, &mut replies, all).await,
            "reader {i}"
        );
    }
    for (i, got) in received.iter().enumerate() {
        assert!(
            got.repeats.is_empty(),
            "reader {i} got {:?} twice",
            got.repeats
        );
        for (index, hash) in &acked {
            let own =
                matches!(i, 1 | 2) && posters[&i].messages.iter().any(|msg| msg.1.hash() == *hash);
            if !own {
                assert_eq!(
                    got.envelopes.get(index),
                    Some(hash),
                    "reader {i} lacks {index}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_relay_key_refuses_to_join() {
    let cluster = start_cluster();
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_caucus-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args([
            "--store",
            cluster.postgres.url(),
            "--nats",
            cluster.nats.url(),
        ])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("relay key is not the one the cluster's other nodes use"),
        "{said}"
    );
}

/// `/healthz` of the node at websocket URL `url`: its status and body.
async fn health(url: &str) -> (u16, String) {
    let addr = url.trim_start_matches("ws://").parse().unwrap();
    let (parts, body) = support::http::Http::connect(addr)
        .await
        .get("/healthz", &[])
        .await;
    (
        parts.status.as_u16(),
        String::from_utf8_lossy(&body).trim().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_a_node_refuses_what_another_decides_and_says_so() {
    let cluster = start_cluster();
    let urls = [cluster.nodes[0].url.clone(), cluster.nodes[1].url.clone()];
    let mut m = Mediation::start_across(&urls).await;
    assert_eq!(health(&urls[1]).await, (200, "ok".into()));
    // NATS goes: node 1 can no longer reach node 0, which decides for the
    // session.
    drop(cluster.nats);
    // The claimant, at node 1 with its session at node 0, is told to
    // resume (1012), and node 1 tells the balancer it cannot serve fully.
    assert_eq!(support::close_code(&mut m.claimant.ws).await, CLOSE_MOVED);
    assert_eq!(health(&urls[1]).await, (503, "cluster unavailable".into()));
    // A request for the session through node 1 is refused `unavailable`.
    let mut claimant = Client::connect(&urls[1], copy(&m.claimant.keys)).await;
    let code = claimant
        .refused(RequestBody::Subscribe {
            session: m.session,
            roster_after: 0,
            rooms: vec![],
        })
        .await;
    assert_eq!(code, ErrorCode::Unavailable);
    // Node 0 serves on for the connections it holds.
    let room = m.claimant_room;
    assert_eq!(m.post(0, room, "still here").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_on_nats_from_outside_the_cluster_are_dropped() {
    let cluster = start_cluster();
    // Whoever can use NATS sees the nodes' subjects, so their names…
    let nats = async_nats::connect(cluster.nats.url()).await.unwrap();
    let mut packets = nats.subscribe("caucus.caucus.node.*").await.unwrap();
    let urls = [cluster.nodes[0].url.clone(), cluster.nodes[1].url.clone()];
    let mut m = Mediation::start_across(&urls).await;
    let mut nodes = std::collections::HashSet::new();
    while nodes.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(10), packets.next())
            .await
            .unwrap()
            .unwrap();
        let name = message.subject.rsplit('.').next().unwrap().to_owned();
        nodes.insert(name);
    }
    // …but packets it makes up, plain or with a nonce of its own, to close
    // every connection of every node, are dropped.
    for to in &nodes {
        for from in &nodes {
            for conn in 1..10u64 {
                let packet = serde_json::json!({
                    "from": from, "to": to, "seq": 0,
                    "body": {"type": "close", "conn": conn, "code": 1012}
                });
                let json = serde_json::to_vec(&packet).unwrap();
                let mut sealed = vec![7u8; 24];
                sealed.extend_from_slice(&json);
                sealed.extend_from_slice(&[0; 16]);
                let subject = format!("caucus.caucus.node.{to}");
                nats.publish(subject.clone(), json.into()).await.unwrap();
                nats.publish(subject, sealed.into()).await.unwrap();
            }
        }
    }
    nats.flush().await.unwrap();
    // Every connection is still open and served, across the nodes.
    let room = m.claimant_room;
    assert_eq!(m.post(1, room, "still here").await, 1);
    let mut got = Received::default();
    let mut replies = HashMap::new();
    assert!(
        pump_until(&mut m.mediator, room, &mut got, &mut replies, |g, _| g
            .envelopes
            .len()
            == 1)
        .await
    );
}
