//! The real client library (`caucus_client::Client`) against three relay
//! nodes on one PostgreSQL and one NATS (docs/cluster.md), each node a
//! process, behind a small TCP load balancer: a mediation whose members sit
//! on different nodes survives the owner of its session killed with
//! `kill -9` — every client reconnects by itself and every acknowledged
//! message reaches every member entitled to it exactly once — and what
//! PostgreSQL stores and NATS carries holds none of the mediation's
//! plaintext or secrets (docs/security.md, "Several relays").
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)] // test helpers

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caucus_client::{Admission, Client, Event, StateDir};
use caucus_protocol::content::Sharing;
use caucus_protocol::ids::{RoomId, SessionId};
use caucus_testkit::Cluster;
use caucus_tests::{WAIT, wait_for};
use tokio::net::{TcpListener, TcpStream};

/// The load balancer in front of the nodes, as in production: one address
/// for the clients (the client library takes one relay URL, and an invite
/// link names one), each new connection passed to the next node in turn
/// that accepts it (a dead node refuses, and is passed over). Which node
/// each connection went to, in order, is in `chosen`.
struct Balancer {
    url: String,
    chosen: Arc<Mutex<Vec<usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Balancer {
    /// A cluster behind a balancer.
    async fn start() -> (Cluster, Self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let cluster = Cluster::start(
            std::path::Path::new(env!("CARGO_BIN_EXE_caucus-node")),
            3,
            &["--lease-secs", "2", "--public-url", &url],
        );
        let nodes: Arc<Vec<SocketAddr>> = Arc::new(
            cluster
                .nodes
                .iter()
                .map(caucus_testkit::Node::addr)
                .collect(),
        );
        let chosen = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let log = chosen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (nodes, next, log) = (nodes.clone(), next.clone(), log.clone());
                tokio::spawn(async move {
                    for _ in 0..nodes.len() {
                        let i = next.fetch_add(1, Ordering::SeqCst) % nodes.len();
                        if let Ok(mut outbound) = TcpStream::connect(nodes[i]).await {
                            log.lock().unwrap().push(i);
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        (cluster, Self { url, chosen, task })
    }

    fn chosen(&self) -> Vec<usize> {
        self.chosen.lock().unwrap().clone()
    }
}

/// A participant's device, with every event it has delivered so far.
struct Member {
    client: Client,
    seen: Vec<Event>,
    dir: tempfile::TempDir,
}

impl Member {
    /// Wait for an event matching `pred` (keeping every event passed over).
    async fn wait_for(&mut self, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.client.next_event_within(left).await {
                Some(e) => {
                    self.seen.push(e.clone());
                    if pred(&e) {
                        return e;
                    }
                }
                None => panic!("no matching event within {WAIT:?}"),
            }
        }
    }

    /// Keep every event that comes within `d`.
    async fn drain(&mut self, d: Duration) {
        while let Some(e) = self.client.next_event_within(d).await {
            self.seen.push(e);
        }
    }

    /// How many times each message (a message, or content carried by the
    /// mediator) was delivered, by room and index, with its words.
    fn messages(&self) -> HashMap<(RoomId, u64), (usize, String)> {
        let mut count: HashMap<(RoomId, u64), (usize, String)> = HashMap::new();
        for e in &self.seen {
            let (room, index, text) = match e {
                Event::Message {
                    room, index, text, ..
                }
                | Event::Forwarded {
                    room, index, text, ..
                } => (room, index, text),
                _ => continue,
            };
            count.entry((*room, *index)).or_insert((0, text.clone())).0 += 1;
        }
        count
    }
}

/// The names of a [`cast`]'s session.
struct Names {
    mediator: &'static str,
    parties: [&'static str; 2],
    members: [&'static str; 3],
}

const NAMES: Names = Names {
    mediator: "The mediator",
    parties: ["Claimant", "Defendant trust"],
    members: ["Ms C", "Mr S (solicitor)", "Dr D"],
};

/// The mediator, a claimant with a solicitor, and a defendant, in that
/// order, all admitted through `url` (`names` for everyone); the session
/// and the invite links used.
async fn cast(url: &str, names: &Names) -> (SessionId, Vec<Member>, Vec<String>) {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let state = |i: usize| StateDir::open(dirs[i].path()).unwrap();
    let mut mediator = Client::open(state(0), url).await.unwrap();
    let (session, parties) = mediator
        .create_session(names.mediator, &names.parties)
        .await
        .unwrap();
    let mut joined = Vec::new();
    let mut links = Vec::new();
    for (i, party) in [parties[0], parties[0], parties[1]].into_iter().enumerate() {
        let link = mediator
            .invite(
                &session,
                &party,
                names.members[i],
                caucus_client::now() + 3600,
                Admission::Automatic,
            )
            .await
            .unwrap();
        let (mut client, s) = Client::join(state(i + 1), &link).await.unwrap();
        assert_eq!(s, session);
        wait_for(&mut mediator, |e| matches!(e, Event::Admitted { .. })).await;
        wait_for(&mut client, |e| matches!(e, Event::Joined { .. })).await;
        client.sync(&session).await.unwrap();
        joined.push(client);
        links.push(link);
    }
    let members = std::iter::once(mediator)
        .chain(joined)
        .zip(dirs)
        .map(|(client, dir)| Member {
            client,
            seen: Vec::new(),
            dir,
        })
        .collect();
    (session, members, links)
}

const MEDIATOR: usize = 0;
const CLAIMANT: usize = 1;
const SOLICITOR: usize = 2;
const DEFENDANT: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mediation_through_three_nodes_survives_its_owner_killed() {
    let (mut cluster, balancer) = Balancer::start().await;
    let (session, mut m, _) = cast(&balancer.url, &NAMES).await;
    // The mediator reached node 0, which made the session and owns it; the
    // others are spread over all three nodes.
    let first = balancer.chosen();
    assert_eq!(first, [0, 1, 2, 0], "one connection per device, in turn");
    let claimant_room = m[CLAIMANT].client.my_room(&session).unwrap();
    let defendant_room = m[DEFENDANT].client.my_room(&session).unwrap();

    // Each acknowledged message: (room, index) → its author, its readers
    // besides, its words.
    let mut expected: HashMap<(RoomId, u64), (usize, &[usize], &str)> = HashMap::new();
    let claimant_side: &[usize] = &[MEDIATOR, CLAIMANT, SOLICITOR];
    let defendant_side: &[usize] = &[MEDIATOR, DEFENDANT];

    // A message between nodes 1 and 0 (the solicitor reads it at node 2).
    let text = "our walk-away figure is 40k";
    let sent = m[CLAIMANT]
        .client
        .send(&session, &claimant_room, text, Sharing::MayShare)
        .await
        .unwrap();
    expected.insert((claimant_room, sent.index), (CLAIMANT, claimant_side, text));
    // A mediator-only offer, carried verbatim to the other side with its
    // author's consent.
    let offer = "we can offer 60k";
    let sent = m[DEFENDANT]
        .client
        .send(&session, &defendant_room, offer, Sharing::MediatorOnly)
        .await
        .unwrap();
    expected.insert(
        (defendant_room, sent.index),
        (DEFENDANT, defendant_side, offer),
    );
    m[MEDIATOR]
        .wait_for(|e| matches!(e, Event::Message { hash, .. } if *hash == sent.message))
        .await;
    m[DEFENDANT]
        .client
        .consent(&session, &sent.message)
        .await
        .unwrap();
    m[MEDIATOR]
        .wait_for(|e| matches!(e, Event::Consent { message, .. } if *message == sent.message))
        .await;
    let carried = m[MEDIATOR]
        .client
        .forward(&session, &sent.message, &claimant_room, None)
        .await
        .unwrap();
    expected.insert(
        (claimant_room, carried.index),
        (MEDIATOR, claimant_side, offer),
    );
    for i in [CLAIMANT, SOLICITOR] {
        m[i].wait_for(|e| matches!(e, Event::Forwarded { text, .. } if text == offer))
            .await;
    }

    // The owner of the session dies with no goodbye while everyone is
    // connected; then each side posts as if nothing had happened.
    cluster.kill(0);
    let posts: [(usize, RoomId, &str); 4] = [
        (CLAIMANT, claimant_room, "after the kill, from the claimant"),
        (
            SOLICITOR,
            claimant_room,
            "after the kill, from the solicitor",
        ),
        (MEDIATOR, defendant_room, "after the kill, to the defendant"),
        (
            DEFENDANT,
            defendant_room,
            "after the kill, from the defendant",
        ),
    ];
    let sends = posts
        .iter()
        .map(|(i, room, text)| m[*i].client.send(&session, room, text, Sharing::MayShare));
    let acknowledged = futures_util::future::join_all(sends).await;
    for ((author, room, text), sent) in posts.iter().zip(acknowledged) {
        let sent = sent.unwrap_or_else(|e| panic!("{text:?} was refused: {e}"));
        let readers = if *room == claimant_room {
            claimant_side
        } else {
            defendant_side
        };
        expected.insert((*room, sent.index), (*author, readers, text));
    }
    // Every device reconnected by itself, to the live nodes.
    let after = balancer.chosen();
    assert!(after.len() >= first.len() + 4, "{after:?}");
    assert!(after[first.len()..].iter().all(|n| *n != 0), "{after:?}");
    for member in &m {
        assert!(member.client.is_online());
    }

    // Every acknowledged message reaches every member entitled to it,
    // decrypted, exactly once; and no one else.
    for (i, member) in m.iter_mut().enumerate() {
        let mine: Vec<(RoomId, u64)> = expected
            .iter()
            .filter(|(_, (author, readers, _))| *author != i && readers.contains(&i))
            .map(|(k, _)| *k)
            .collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        while !mine.iter().all(|k| member.messages().contains_key(k)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {i} lacks some of {mine:?}: {:?}",
                member.messages()
            );
            member.drain(Duration::from_millis(200)).await;
        }
        member.drain(Duration::from_millis(300)).await;
        for (key, (count, text)) in member.messages() {
            let (_, readers, sent) = expected
                .get(&key)
                .unwrap_or_else(|| panic!("member {i} read {text:?}, never acknowledged"));
            assert!(readers.contains(&i), "member {i} read {text:?}");
            assert_eq!((count, text.as_str()), (1, *sent), "member {i}");
        }
    }
}

/// Everything a mediation must keep from the relay's stores and links:
/// what it is, and its bytes.
struct Secrets(Vec<(String, Vec<u8>)>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.0.push((what.into(), bytes.into()));
    }

    /// Which of them appear in `haystack`: as they are, in hex (as
    /// PostgreSQL prints a `bytea`) or in base64url (as the wire carries
    /// bytes).
    fn found_in(&self, haystack: &[u8]) -> Vec<&str> {
        let has = |needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
        self.0
            .iter()
            .filter(|(_, bytes)| {
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let b64 = caucus_protocol::b64::encode(bytes);
                has(bytes) || has(hex.as_bytes()) || has(b64.as_bytes())
            })
            .map(|(what, _)| what.as_str())
            .collect()
    }
}

const CONFIDENTIAL: Names = Names {
    mediator: "Mediator Ngozi Quarterman-Feld",
    parties: ["Party Pemberton-Achebe", "Party Vasquez-Lindqvist Trust"],
    members: [
        "Member Ottoline Farrow",
        "Member Barnaby Kettleworth",
        "Member Ilse Marchetti-Oyelaran",
    ],
};

/// A mediation through the cluster's balancer that holds every kind of
/// confidence: names, messages (mediator-only, carried on with consent,
/// reframed), a document, an invite used and one left open. What must
/// not leave the devices; and the session.
async fn confidential_mediation(url: &str) -> (SessionId, Secrets) {
    let (session, mut m, mut links) = cast(url, &CONFIDENTIAL).await;
    let mut secrets = Secrets(Vec::new());
    for name in [CONFIDENTIAL.mediator]
        .iter()
        .chain(&CONFIDENTIAL.parties)
        .chain(&CONFIDENTIAL.members)
    {
        secrets.add(*name, name.as_bytes());
    }
    let parties = m[MEDIATOR].client.parties(&session).unwrap();
    let unused = "Member Unused Wolstenholme";
    links.push(
        m[MEDIATOR]
            .client
            .invite(
                &session,
                &parties[0].0,
                unused,
                caucus_client::now() + 3600,
                Admission::Automatic,
            )
            .await
            .unwrap(),
    );
    secrets.add(unused, unused.as_bytes());
    for (i, link) in links.iter().enumerate() {
        use caucus_protocol::codec::Canonical;
        let invite = caucus_protocol::invite::Invite::from_link(link).unwrap();
        // The canonical invite ends with the secret, the mediator's
        // fingerprint and the expiry.
        let bytes = invite.to_bytes();
        let end = bytes.len() - 8;
        assert_eq!(
            bytes[end - 32..end],
            m[MEDIATOR].client.fingerprint().0,
            "the invite's layout"
        );
        secrets.add(format!("invite secret {i}"), &bytes[end - 64..end - 32]);
        secrets.add(
            format!("admission token {i}"),
            invite.admission_token().0.to_vec(),
        );
    }

    let claimant_room = m[CLAIMANT].client.my_room(&session).unwrap();
    let defendant_room = m[DEFENDANT].client.my_room(&session).unwrap();
    let words = "our walk-away figure is 41,234 pounds, and the roof";
    let sent = m[CLAIMANT]
        .client
        .send(&session, &claimant_room, words, Sharing::MediatorOnly)
        .await
        .unwrap();
    secrets.add("a message", words.as_bytes());
    m[MEDIATOR]
        .wait_for(|e| matches!(e, Event::Message { hash, .. } if *hash == sent.message))
        .await;
    m[CLAIMANT]
        .client
        .consent(&session, &sent.message)
        .await
        .unwrap();
    m[MEDIATOR]
        .wait_for(|e| matches!(e, Event::Consent { message, .. } if *message == sent.message))
        .await;
    let reframed = "they would move towards the low forties";
    m[MEDIATOR]
        .client
        .forward(
            &session,
            &sent.message,
            &defendant_room,
            Some(reframed.into()),
        )
        .await
        .unwrap();
    secrets.add("a reframed message", reframed.as_bytes());
    m[DEFENDANT]
        .wait_for(|e| matches!(e, Event::Forwarded { text, .. } if text == reframed))
        .await;

    // A document, in the claimant's room, opened by the solicitor (at
    // another node than the owner).
    let scratch = tempfile::tempdir().unwrap();
    let (name, title) = ("pemberton-roof-survey.pdf", "Survey of the Pemberton roof");
    let content: Vec<u8> = b"Page 1: the roof of the Pemberton house leaks at the north gable. "
        .iter()
        .copied()
        .cycle()
        .take(40_000)
        .collect();
    let path = scratch.path().join(name);
    std::fs::write(&path, &content).unwrap();
    let doc = m[CLAIMANT]
        .client
        .send_document(
            &session,
            &claimant_room,
            &path,
            Some(title),
            Sharing::MayShare,
        )
        .await
        .unwrap();
    secrets.add("a file name", name.as_bytes());
    secrets.add("a document title", title.as_bytes());
    secrets.add("a document's bytes", &content[..64]);
    m[SOLICITOR]
        .wait_for(|e| matches!(e, Event::Document { hash, .. } if *hash == doc.message))
        .await;
    let out = scratch.path().join("opened.pdf");
    m[SOLICITOR]
        .client
        .save_document(&session, &doc.message, &out)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), content);

    // The devices' private keys.
    let dirs: Vec<tempfile::TempDir> = m.into_iter().map(|member| member.dir).collect();
    for (i, dir) in dirs.iter().enumerate() {
        // Opened once the dropped client's driver has let go of it.
        let mut state = StateDir::open(dir.path());
        for _ in 0..100 {
            if state.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            state = StateDir::open(dir.path());
        }
        let keys = state.unwrap().identity().unwrap().unwrap();
        let secret = keys.to_secret_bytes();
        // The X25519 key last; before it the Ed25519 key as PKCS#8, whose
        // 32-byte seed follows `04 22 04 20`.
        let (pkcs8, dh) = secret.split_at(secret.len() - 32);
        secrets.add(format!("device {i}'s X25519 key"), dh);
        let at = pkcs8
            .windows(4)
            .position(|w| w == [0x04, 0x22, 0x04, 0x20])
            .unwrap();
        secrets.add(format!("device {i}'s Ed25519 key"), &pkcs8[at + 4..at + 36]);
    }
    (session, secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_holds_no_plaintext_names_or_secrets_of_a_mediation() {
    let (cluster, balancer) = Balancer::start().await;
    let (session, secrets) = confidential_mediation(&balancer.url).await;
    // Every row of every table, as text.
    let (db, connection) = tokio_postgres::connect(cluster.postgres.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tables = db
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        )
        .await
        .unwrap();
    let mut dump = String::new();
    for table in &tables {
        let name: &str = table.get(0);
        for message in db
            .simple_query(&format!("SELECT t::text FROM \"{name}\" t"))
            .await
            .unwrap()
        {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                dump.push_str(row.get(0).unwrap_or_default());
                dump.push('\n');
            }
        }
    }
    // The dump holds the session's records (so the search can fail) ...
    let session_hex: String = session.0.iter().map(|b| format!("{b:02x}")).collect();
    assert!(dump.contains(&session_hex), "{dump}");
    assert!(dump.len() > 40_000, "the document's chunks are stored");
    // ... and none of its confidences.
    assert_eq!(secrets.found_in(dump.as_bytes()), Vec::<&str>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_carries_no_plaintext_names_or_secrets_of_a_mediation() {
    let (cluster, balancer) = Balancer::start().await;
    // A listener on every subject the nodes use.
    let nats = async_nats::connect(cluster.nats.url()).await.unwrap();
    let mut subscriber = nats.subscribe("caucus.>").await.unwrap();
    nats.flush().await.unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    let listening = tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(message) = subscriber.next().await {
            let mut log = log.lock().unwrap();
            log.extend_from_slice(message.subject.as_bytes());
            log.push(b' ');
            log.extend_from_slice(&message.payload);
            log.push(b'\n');
        }
    });
    let (session, mut secrets) = confidential_mediation(&balancer.url).await;
    nats.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    listening.abort();
    let heard = heard.lock().unwrap().clone();
    // The nodes spoke (the document's chunks went by) ...
    assert!(heard.len() > 40_000, "{} bytes heard", heard.len());
    // ... sealed: none of the mediation's confidences, and not even the
    // routing metadata the relay sees (the session id, the admission
    // tokens that forwarded joins carry).
    secrets.add("the session id", session.0.to_vec());
    assert_eq!(secrets.found_in(&heard), Vec::<&str>::new());
}
