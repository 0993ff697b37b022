//! The benchmark's sessions, built as the clients build them: real device
//! identities, a roster signed by the mediator, room keys sealed to each
//! member in signed key bundles and opened (and checked) by every member, and
//! each member's pool of envelopes sealed and signed ahead of time.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use caucus_bench::Shape;
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, Sharing};
use caucus_protocol::envelope::Envelope;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{RoomId, SessionId};
use caucus_protocol::keys::SignedKeyBundle;
use caucus_protocol::roster::{Role, RoomKind, SignedRoster};
use caucus_protocol::session::SessionView;

/// One pre-sealed envelope of a member's pool.
pub(crate) struct Message {
    /// The room it is posted in (base64url of the room id).
    pub(crate) room: Arc<str>,
    /// The envelope, canonical bytes as base64url.
    pub(crate) envelope: String,
    /// How many connections it is delivered to (the room's members but the
    /// sender).
    pub(crate) recipients: u32,
}

/// One member's device and connection.
pub(crate) struct Member {
    pub(crate) keys: Arc<DeviceKeys>,
    /// The rooms it is in (base64url ids).
    pub(crate) rooms: Vec<Arc<str>>,
    /// Its pre-sealed envelopes, posted in turn.
    pub(crate) pool: Vec<Message>,
}

/// One session as the relay must be given it.
pub(crate) struct Session {
    pub(crate) id: SessionId,
    pub(crate) roster: SignedRoster,
    pub(crate) bundles: Vec<SignedKeyBundle>,
    /// The mediator first.
    pub(crate) members: Vec<Member>,
}

/// How many of each thing.
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) sessions: usize,
    pub(crate) pool: usize,
    /// The first session's first party member (its second member, after
    /// the mediator) seals at least this many:
    /// the catch-up measurement posts them all, each once.
    pub(crate) long_pool: usize,
    pub(crate) seed: u64,
}

/// A text body of `len` printable characters.
pub(crate) fn body(shape: &mut Shape, len: usize) -> String {
    const WORDS: &[u8] = b"abcdefghijklmnopqrstuvwxyz      .,ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| char::from(WORDS[(shape.next_u64() % WORDS.len() as u64) as usize]))
        .collect()
}

/// Build every session of `plan`.
pub(crate) fn build(plan: Plan) -> anyhow::Result<Vec<Session>> {
    let mut shape = Shape::new(plan.seed);
    (0..plan.sessions)
        .map(|n| {
            let long = if n == 0 { plan.long_pool } else { 0 };
            session(&mut shape, plan.pool, long)
        })
        .collect()
}

/// One session built from its own `seed` (the service's day builds each
/// session on its own, in parallel), with `pool` envelopes per member.
pub(crate) fn session_of(seed: u64, pool: usize) -> anyhow::Result<Session> {
    session(&mut Shape::new(seed), pool, 0)
}

/// How many members (connections) [`session_of`] gives the session of
/// `seed`, known without building it.
pub(crate) fn members_of(seed: u64) -> usize {
    1 + party_sizes(&mut Shape::new(seed))
        .iter()
        .map(|&n| n as usize)
        .sum::<usize>()
}

/// A session's shape, its first draws: 2–3 parties of 1–3 members each.
fn party_sizes(shape: &mut Shape) -> Vec<u64> {
    let parties = shape.between(2, 3);
    (0..parties).map(|_| shape.between(1, 3)).collect()
}

fn b64_room(id: &RoomId) -> Arc<str> {
    caucus_protocol::b64::encode(&id.0).into()
}

/// A session: a mediator and 2–3 parties of 1–3 members each; each party
/// member's pool is text in its private room (the mediator may share it);
/// the mediator's pool cycles through a reply in a private room, a forward
/// of a party's message into the joint room, and the share receipt in the
/// source room.
fn session(shape: &mut Shape, pool: usize, long_pool: usize) -> anyhow::Result<Session> {
    let p = |e: caucus_protocol::Error| anyhow!("protocol: {e}");
    let id = SessionId::random().map_err(p)?;
    let mediator = DeviceKeys::generate().map_err(p)?;
    let mut builder = RosterBuilder::new(id, &mediator, "Mediator").map_err(p)?;
    let mut devices: Vec<(DeviceKeys, Option<usize>)> = Vec::new();
    let mut party_ids = Vec::new();
    for (n, size) in party_sizes(shape).into_iter().enumerate() {
        let party = builder.add_party(&format!("Party {n}")).map_err(p)?;
        party_ids.push(party);
        for m in 0..size {
            let keys = DeviceKeys::generate().map_err(p)?;
            builder
                .add_member(
                    keys.public(),
                    Role::PartyMember,
                    Some(party),
                    &format!("Member {n}.{m}"),
                )
                .map_err(p)?;
            devices.push((keys, Some(n)));
        }
    }
    let (roster, room_keys) = builder
        .sign(&mediator, &SessionView::new(id, mediator.fingerprint()))
        .map_err(p)?;
    let mut mediator_view = SessionView::new(id, mediator.fingerprint());
    mediator_view.accept_roster(roster.clone()).map_err(p)?;
    let bundles = room_keys
        .iter()
        .map(|k| mediator_view.seal_key_bundle(&mediator, k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(p)?;
    let r = roster.unverified().clone();
    let joint = r.joint_room().map(|j| j.id).context("no joint room")?;
    let private = |party: usize| {
        party_ids
            .get(party)
            .and_then(|pid| r.private_room(pid))
            .map(|room| room.id)
            .context("no private room")
    };
    let recipients = |room: &RoomId| {
        r.room(room)
            .map_or(0, |room| room.members.len().saturating_sub(1) as u32)
    };
    let rooms_of = |who: &DeviceKeys| {
        r.rooms
            .iter()
            .filter(|room| room.has(&who.fingerprint()))
            .map(|room| b64_room(&room.id))
            .collect::<Vec<_>>()
    };
    let seal = |view: &mut SessionView, who: &DeviceKeys, room: &RoomId, content: &Content| {
        let envelope = view.seal(who, room, content).map_err(p)?;
        Ok::<_, anyhow::Error>(Message {
            room: b64_room(room),
            envelope: caucus_protocol::b64::encode(&envelope.to_bytes()),
            recipients: recipients(room),
        })
    };
    // Every member checks the roster and opens its keys, as a client does.
    let mut members = Vec::new();
    let mut first_posts: Vec<Envelope> = Vec::new();
    for (n, (keys, party)) in devices.into_iter().enumerate() {
        let pool = if n == 0 { pool.max(long_pool) } else { pool };
        let mut view = SessionView::new(id, mediator.fingerprint());
        view.accept_roster(roster.clone()).map_err(p)?;
        for bundle in &bundles {
            let mine = bundle
                .unverified()
                .entries
                .iter()
                .any(|e| e.recipient == keys.fingerprint());
            if mine {
                view.open_key_bundle(&keys, bundle).map_err(p)?;
            }
        }
        let room = private(party.unwrap_or(0))?;
        let mut messages = Vec::with_capacity(pool);
        for n in 0..pool {
            let words = Content::Text {
                sharing: Sharing::MayShare,
                body: body(shape, shape.clone().between(200, 4096) as usize),
            };
            let _ = shape.next_u64();
            let envelope = view.seal(&keys, &room, &words).map_err(p)?;
            if n == 0 {
                first_posts.push(envelope.clone());
            }
            messages.push(Message {
                room: b64_room(&room),
                envelope: caucus_protocol::b64::encode(&envelope.to_bytes()),
                recipients: recipients(&room),
            });
        }
        members.push(Member {
            rooms: rooms_of(&keys),
            keys: Arc::new(keys),
            pool: messages,
        });
    }
    // The mediator opens each member's first message (checking it) and
    // carries it into the joint room, leaving a receipt in the source room.
    let mut opened = Vec::new();
    for envelope in &first_posts {
        opened.push(mediator_view.open(envelope).map_err(p)?);
    }
    let mut messages = Vec::with_capacity(pool);
    for n in 0..pool {
        let source = opened
            .get(n / 3 % opened.len().max(1))
            .context("no party message")?;
        let message = match n % 3 {
            0 => {
                let room = match r.room(&source.header.room).map(|room| room.kind) {
                    Some(RoomKind::Private(_)) => source.header.room,
                    _ => private(0)?,
                };
                let words = Content::Text {
                    sharing: Sharing::MediatorOnly,
                    body: body(shape, shape.clone().between(200, 4096) as usize),
                };
                let _ = shape.next_u64();
                seal(&mut mediator_view, &mediator, &room, &words)?
            }
            1 => {
                let (forward, _) = source.forward(joint, None, None).map_err(p)?;
                seal(
                    &mut mediator_view,
                    &mediator,
                    &joint,
                    &Content::Forward(forward),
                )?
            }
            _ => {
                let (_, receipt) = source.forward(joint, None, None).map_err(p)?;
                seal(
                    &mut mediator_view,
                    &mediator,
                    &source.header.room,
                    &Content::ShareReceipt(receipt),
                )?
            }
        };
        messages.push(message);
    }
    members.insert(
        0,
        Member {
            rooms: rooms_of(&mediator),
            keys: Arc::new(mediator),
            pool: messages,
        },
    );
    Ok(Session {
        id,
        roster,
        bundles,
        members,
    })
}
