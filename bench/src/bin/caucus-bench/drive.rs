//! Driving a relay: one websocket per member, the same fan-out on every
//! relay, and the bookkeeping that turns deliveries into throughput and
//! send-to-delivery latency.
//!
//! Every pre-sealed envelope is a *slot*. A slot is sent, then counts down
//! its deliveries (one per other member of its room); when the last arrives
//! it gives its sender a credit to send the next slot of its pool, in the
//! order they were sealed. A sender so never has more than its window of
//! envelopes undelivered, on any relay, whether or not the relay
//! acknowledges. A Caucus relay stores each envelope once and refuses
//! another at a sequence number it holds, so there a slot is sent once and
//! a sender whose pool is spent falls silent; the other relays take a pool
//! round and round. On JetStream a slot also waits for its publish's
//! acknowledgement (the `PubAck`: stored), and the post is counted then.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use caucus_bench::{jetstream, key_in_event, key_of, nats};
use caucus_protocol::auth::AuthTarget;
use caucus_protocol::codec::Canonical;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::SessionId;
use caucus_protocol::wire::{
    Encoded, Event, Reply, Request, RequestBody, RoomCursor, SUBPROTOCOL, ServerFrame,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::procs::Kind;
use crate::world::Session;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Ws, Message>;
type Source = SplitStream<Ws>;

/// How the senders send.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// As fast as deliveries allow, `window` undelivered envelopes per sender.
    Closed { window: usize },
    /// At `posts_per_sec` in all, evenly spread over the senders.
    Open { posts_per_sec: f64 },
}

/// What one measured run found.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Run {
    pub(crate) posts_per_sec: f64,
    pub(crate) delivered_per_sec: f64,
    pub(crate) latency: caucus_bench::stats::Latency,
    /// Relay CPU, in cores (CPU seconds per second).
    pub(crate) relay_cpu: f64,
    /// Relay peak resident memory, MiB.
    pub(crate) relay_peak_mib: f64,
    /// The load generator's own CPU, in cores.
    pub(crate) loadgen_cpu: f64,
    pub(crate) errors: u64,
    pub(crate) unknown: u64,
    /// Caucus only: mean group-commit time (apply and flush), ms.
    pub(crate) commit_ms: f64,
    /// Caucus only: mean batches per group commit.
    pub(crate) commit_group: f64,
    /// PostgreSQL's CPU (all its processes), in cores, when it is watched.
    pub(crate) store_cpu: f64,
    /// Bytes PostgreSQL wrote to storage per second, when it is watched.
    pub(crate) store_write_bytes_per_sec: f64,
    /// Growth of PostgreSQL's data files per second, when it is watched.
    pub(crate) store_growth_bytes_per_sec: f64,
    /// nats-server's CPU, in cores, when it is watched.
    pub(crate) nats_cpu: f64,
    /// Seconds to connect and set up every member before the run
    /// (JetStream: the streams and consumers too), when measured.
    pub(crate) setup_secs: f64,
}

/// The processes a run samples over its measured interval.
#[derive(Debug, Clone, Default)]
pub(crate) struct Watch {
    /// Each relay (node): its process id and URL.
    pub(crate) relays: Vec<(u32, String)>,
    /// PostgreSQL's server process and its data directory.
    pub(crate) postgres: Option<(u32, std::path::PathBuf)>,
    /// nats-server's process.
    pub(crate) nats: Option<u32>,
}

impl Watch {
    /// One relay.
    pub(crate) fn relay(pid: u32, url: &str) -> Self {
        Self {
            relays: vec![(pid, url.to_owned())],
            ..Self::default()
        }
    }

    async fn commits(&self) -> crate::procs::Commits {
        let mut all = crate::procs::Commits::default();
        for (_, url) in &self.relays {
            all = all.plus(crate::procs::commits(url).await);
        }
        all
    }

    /// CPU seconds of the relays, PostgreSQL and nats-server; PostgreSQL's
    /// bytes written and the size of its data files.
    fn sample(&self) -> [f64; 5] {
        let relays = self
            .relays
            .iter()
            .map(|(pid, _)| crate::procs::cpu_seconds(&pid.to_string()))
            .sum();
        let (store, written, size) = match &self.postgres {
            Some((pid, data)) => (
                crate::procs::tree_cpu_seconds(*pid),
                crate::procs::tree_write_bytes(*pid),
                crate::procs::du_bytes(&data.join("base")),
            ),
            None => (0.0, 0.0, 0.0),
        };
        let nats = self.nats.map_or(0.0, crate::procs::tree_cpu_seconds);
        [relays, store, written, size, nats]
    }
}

/// Which node each member connects to, when there are several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Member `i` of every session to node `i % n`: most requests are
    /// forwarded to the session's owner (its mediator's node).
    Spread,
    /// Session `s`, all its members, to node `s % n`: the sessions are
    /// spread, each on its owner's node.
    ByOwner,
}

struct Slot {
    sent_ns: AtomicU64,
    remaining: AtomicU32,
    owner: u32,
    recipients: u32,
}

/// The shared bookkeeping of a run.
struct Table {
    start: Instant,
    slots: Vec<Slot>,
    keys: HashMap<Box<str>, u32>,
    free: Vec<mpsc::UnboundedSender<u32>>,
    /// The relay acknowledges each post (JetStream's `PubAck`): a slot
    /// counts that down with its deliveries, and the post counts then.
    acked: bool,
    measuring: AtomicBool,
    delivered: AtomicU64,
    posted: AtomicU64,
    errors: AtomicU64,
    unknown: AtomicU64,
}

impl Table {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn sent(&self, slot: u32, at_ns: u64) {
        if let Some(s) = self.slots.get(slot as usize) {
            s.remaining
                .store(s.recipients + u32::from(self.acked), Ordering::Relaxed);
            s.sent_ns.store(at_ns, Ordering::Release);
            if !self.acked && self.measuring.load(Ordering::Relaxed) {
                self.posted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The relay acknowledged `slot` (stored it).
    fn acknowledged(&self, slot: u32) {
        if self.measuring.load(Ordering::Relaxed) {
            self.posted.fetch_add(1, Ordering::Relaxed);
        }
        self.count_down(slot);
    }

    fn count_down(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize)
            && s.remaining.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.release(slot);
        }
    }

    fn release(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize)
            && let Some(tx) = self.free.get(s.owner as usize)
        {
            let _ = tx.send(slot);
        }
    }

    /// Member `to` received the envelope of `key`. A member's own post is
    /// not a delivery (only JetStream sends it back: a consumer cannot
    /// leave its publisher out).
    fn delivered(&self, key: Option<&str>, to: u32, samples: &mut Vec<u32>) {
        let Some(&slot) = key.and_then(|k| self.keys.get(k)) else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(s) = self.slots.get(slot as usize) else {
            return;
        };
        if s.owner == to {
            return;
        }
        if self.measuring.load(Ordering::Relaxed) {
            let now = self.now_ns();
            let sent = s.sent_ns.load(Ordering::Acquire);
            self.delivered.fetch_add(1, Ordering::Relaxed);
            samples.push((now.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32);
        }
        self.count_down(slot);
    }

    fn refused(&self, slot: u32) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = self.slots.get(slot as usize) {
            s.remaining.store(0, Ordering::Relaxed);
        }
        self.release(slot);
    }
}

/// The load generator's websocket settings (small buffers, so that 10,000
/// connections fit in the load generator too).
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 << 20)
}

/// Open a websocket to `url`, offering the Caucus subprotocol if `caucus`.
pub(crate) async fn connect(url: &str, caucus: bool) -> anyhow::Result<Ws> {
    connect_from(url, caucus, None).await
}

/// [`connect`] from the local address `source` if given (bound before
/// connecting: each local address has its own ephemeral ports, so that more
/// connections than one address has ports can reach one relay).
pub(crate) async fn connect_from(
    url: &str,
    caucus: bool,
    source: Option<IpAddr>,
) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    if caucus {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", SUBPROTOCOL.parse()?);
    }
    let mut tries = 0;
    loop {
        let attempt = match source {
            None => tokio_tungstenite::connect_async_with_config(
                request.clone(),
                Some(client_config()),
                true,
            )
            .await
            .map(|(ws, _)| ws)
            .map_err(anyhow::Error::from),
            Some(ip) => bound(url, ip, request.clone()).await,
        };
        match attempt {
            Ok(ws) => return Ok(ws),
            Err(e) if tries < 20 => {
                tries += 1;
                tracing_less_sleep(e.to_string(), tries).await;
            }
            Err(e) => return Err(anyhow!("connect {url}: {e}")),
        }
    }
}

/// A websocket to `url` (`ws://IP:PORT/…`) over a socket bound to `source`.
async fn bound(
    url: &str,
    source: IpAddr,
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> anyhow::Result<Ws> {
    let addr: SocketAddr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .context("not a ws://IP:PORT URL")?
        .parse()?;
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        request,
        MaybeTlsStream::Plain(stream),
        Some(client_config()),
    )
    .await?;
    Ok(ws)
}

async fn tracing_less_sleep(_why: String, tries: u32) {
    tokio::time::sleep(Duration::from_millis(50 * u64::from(tries))).await;
}

/// Read the next text frame (skipping pings and pongs).
async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.as_str().to_owned()),
            Ok(Some(Ok(Message::Binary(b)))) => {
                return Ok(String::from_utf8_lossy(&b).into_owned());
            }
            Ok(Some(Ok(Message::Close(c)))) => bail!("closed by the relay: {c:?}"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => bail!("read: {e}"),
            Ok(None) => bail!("connection ended"),
            Err(_) => bail!("no frame for 60 s"),
        }
    }
}

/// Send a Caucus request and wait for its reply, skipping events.
pub(crate) async fn request(ws: &mut Ws, id: u64, body: RequestBody) -> anyhow::Result<Reply> {
    let text = serde_json::to_string(&Request {
        v: caucus_protocol::envelope::PROTOCOL_VERSION,
        id,
        body,
    })?;
    ws.send(Message::text(text)).await?;
    loop {
        let frame = next_text(ws).await?;
        if let Ok(ServerFrame::Reply(reply)) = serde_json::from_str::<ServerFrame>(&frame) {
            match &reply {
                Reply::Ok { id: got, .. } if *got == id => return Ok(reply),
                Reply::Error {
                    id: Some(got),
                    code,
                    message,
                    ..
                } if *got == id => bail!("refused: {code:?} {message}"),
                _ => {}
            }
        }
    }
}

/// Connect to a Caucus relay and authenticate as `keys`.
pub(crate) async fn caucus_login(url: &str, keys: &DeviceKeys) -> anyhow::Result<Ws> {
    caucus_auth(connect(url, true).await?, url, keys).await
}

/// Answer the relay's challenge on `ws` (a connection to `url`) as `keys`.
pub(crate) async fn caucus_auth(mut ws: Ws, url: &str, keys: &DeviceKeys) -> anyhow::Result<Ws> {
    let (nonce, relay) = loop {
        let frame = next_text(&mut ws).await?;
        if let Ok(ServerFrame::Event(e)) = serde_json::from_str::<ServerFrame>(&frame)
            && let Event::Challenge { nonce, relay, .. } = *e
        {
            break (nonce, relay.0.fingerprint());
        }
    };
    request(
        &mut ws,
        0,
        RequestBody::Auth {
            identity: Encoded(keys.public().clone()),
            url: url.to_owned(),
            signature: AuthTarget::new(nonce, relay, url).sign(keys),
        },
    )
    .await?;
    Ok(ws)
}

/// Subscribe to `session` from the start; returns once the catch-up's `ok`
/// has arrived, with the number of envelope events in the catch-up.
pub(crate) async fn caucus_subscribe(
    ws: &mut Ws,
    id: u64,
    session: SessionId,
) -> anyhow::Result<u64> {
    let mut envelopes = 0;
    caucus_resume(ws, id, session, (0, Vec::new()), |_| envelopes += 1).await?;
    Ok(envelopes)
}

/// Subscribe to `session` from `(roster_after, rooms)`; each envelope event
/// of the catch-up is given to `each`; returns once the catch-up's `ok` has
/// arrived.
pub(crate) async fn caucus_resume(
    ws: &mut Ws,
    id: u64,
    session: SessionId,
    (roster_after, rooms): (u64, Vec<RoomCursor>),
    mut each: impl FnMut(&str),
) -> anyhow::Result<()> {
    let text = serde_json::to_string(&Request {
        v: caucus_protocol::envelope::PROTOCOL_VERSION,
        id,
        body: RequestBody::Subscribe {
            session,
            roster_after,
            rooms,
        },
    })?;
    ws.send(Message::text(text)).await?;
    let ok = format!("{{\"type\":\"ok\",\"v\":1,\"id\":{id}}}");
    loop {
        let frame = next_text(ws).await?;
        if frame.starts_with("{\"type\":\"envelope\"") {
            each(&frame);
        } else if frame == ok {
            return Ok(());
        } else if frame.starts_with("{\"type\":\"error\"")
            && frame.contains(&format!("\"id\":{id},"))
        {
            bail!("subscribe refused: {frame}");
        }
    }
}

/// Give the relay a session as its mediator does: create it, publish the
/// room keys.
pub(crate) async fn caucus_create(ws: &mut Ws, session: &Session) -> anyhow::Result<()> {
    request(
        ws,
        1,
        RequestBody::CreateSession {
            roster: Encoded(session.roster.clone()),
        },
    )
    .await
    .context("create_session")?;
    for (n, bundle) in session.bundles.iter().enumerate() {
        request(
            ws,
            2 + n as u64,
            RequestBody::PublishKeys {
                bundle: Encoded(bundle.clone()),
            },
        )
        .await
        .context("publish_keys")?;
    }
    Ok(())
}

/// Connect one member for `kind` and follow its rooms; the mediator of a
/// Caucus session creates it first.
async fn join(kind: Kind, url: &str, session: &Session, member: usize) -> anyhow::Result<Ws> {
    let m = session.members.get(member).context("no such member")?;
    match kind {
        Kind::Caucus | Kind::CaucusNoFlush => {
            let mut ws = caucus_login(url, &m.keys).await?;
            if member == 0 {
                caucus_create(&mut ws, session).await?;
            }
            caucus_subscribe(&mut ws, 100, session.id).await?;
            Ok(ws)
        }
        Kind::Bare => {
            let mut ws = connect(url, false).await?;
            ws.send(Message::text(caucus_bench::bare::subscribe(
                m.rooms.iter().map(|r| r.as_ref()),
            )))
            .await?;
            let ack = next_text(&mut ws).await?;
            if ack != "K" {
                bail!("bare relay answered {ack:?}");
            }
            Ok(ws)
        }
        Kind::Nats => {
            let mut ws = connect(url, false).await?;
            let mut ops = String::from(nats::CONNECT);
            for (sid, room) in m.rooms.iter().enumerate() {
                ops.push_str(&format!("SUB {room} {}\r\n", sid + 1));
            }
            ops.push_str("PING\r\n");
            ws.send(Message::binary(ops.into_bytes())).await?;
            nats_until(&mut ws, |op| Ok(op == nats::Op::Pong)).await?;
            Ok(ws)
        }
        Kind::JetStream => {
            // The mediator creates the session's stream; then each member
            // creates one consumer per room it is in (nats-server 2.9 takes
            // one filter subject per consumer), delivered to its inbox.
            let mut ws = connect(url, false).await?;
            let (stream, inbox) = (stream_name(session), inbox(session, member));
            let reply = format!("ack.{inbox}.setup");
            let mut ops = nats::CONNECT.as_bytes().to_vec();
            // A push consumer of nats-server 2.9 delivers only when its
            // deliver subject has interest of its own: no wildcard there.
            let mut subs = format!("SUB ack.{inbox}.* 1\r\n");
            for r in 0..m.rooms.len() {
                subs.push_str(&format!("SUB in.{inbox}.{r} {}\r\n", r + 2));
            }
            ops.extend_from_slice(subs.as_bytes());
            if member == 0 {
                let mut rooms: Vec<&str> = session
                    .members
                    .iter()
                    .flat_map(|m| m.rooms.iter().map(|r| r.as_ref()))
                    .collect();
                rooms.sort_unstable();
                rooms.dedup();
                ops.extend(jetstream::create_stream(&stream, &rooms, &reply));
                ws.send(Message::binary(std::mem::take(&mut ops))).await?;
                jetstream_answers(&mut ws, 1)
                    .await
                    .context("stream create")?;
            }
            for (r, room) in m.rooms.iter().enumerate() {
                ops.extend(jetstream::create_consumer(
                    &stream,
                    &format!("m{member}r{r}"),
                    room,
                    &format!("in.{inbox}.{r}"),
                    &reply,
                ));
            }
            ws.send(Message::binary(ops)).await?;
            jetstream_answers(&mut ws, m.rooms.len())
                .await
                .context("consumer create")?;
            Ok(ws)
        }
    }
}

/// The JetStream stream of `session`'s rooms (one stream a session, as a
/// Caucus session is one log).
fn stream_name(session: &Session) -> String {
    format!("S{}", caucus_protocol::b64::encode(&session.id.0))
}

/// The subject token of `member` of `session` on JetStream: its deliveries
/// come to `in.<inbox>.<room>`, its acknowledgements to `ack.<inbox>.<slot>`.
fn inbox(session: &Session, member: usize) -> String {
    format!("{}.{member}", stream_name(session))
}

/// Read NATS operations until `done` says so; a `-ERR` fails.
async fn nats_until(
    ws: &mut Ws,
    mut done: impl FnMut(nats::Op<'_>) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut parser = nats::Parser::default();
    loop {
        let data = next_text(ws).await?;
        let mut finished = Ok(false);
        parser
            .feed(data.as_bytes(), |op| {
                if let Ok(false) = finished {
                    finished = match op {
                        nats::Op::Err(e) => Err(anyhow!("nats: {e}")),
                        op => done(op),
                    };
                }
            })
            .map_err(|e| anyhow!("nats: {e:?}"))?;
        if finished? {
            return Ok(());
        }
    }
}

/// Wait for `n` answers of the JetStream API, each a success.
async fn jetstream_answers(ws: &mut Ws, n: usize) -> anyhow::Result<()> {
    let mut left = n;
    if left == 0 {
        return Ok(());
    }
    nats_until(ws, |op| {
        if let nats::Op::Msg { payload, .. } = op {
            jetstream::api_reply(payload)?;
            left -= 1;
        }
        Ok(left == 0)
    })
    .await
}

/// Connect every member of every session: sessions in parallel (a few at a
/// time), the mediator of each first. Returns the sockets in member order.
pub(crate) async fn join_all(
    kind: Kind,
    url: &str,
    sessions: &Arc<Vec<Session>>,
) -> anyhow::Result<Vec<Ws>> {
    join_nodes(kind, &[url.to_owned()], Placement::Spread, sessions).await
}

/// [`join_all`] over several nodes, placed by `placement`.
pub(crate) async fn join_nodes(
    kind: Kind,
    urls: &[String],
    placement: Placement,
    sessions: &Arc<Vec<Session>>,
) -> anyhow::Result<Vec<Ws>> {
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::new();
    let nodes = urls.len().max(1);
    for s in 0..sessions.len() {
        let (gate, sessions, urls) = (gate.clone(), sessions.clone(), urls.to_vec());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let session = sessions.get(s).context("session")?;
            let mut socks = Vec::new();
            for member in 0..session.members.len() {
                let node = match placement {
                    Placement::Spread => member % nodes,
                    Placement::ByOwner => s % nodes,
                };
                let url = urls.get(node).context("no such node")?;
                socks.push(join(kind, url, session, member).await?);
            }
            Ok::<_, anyhow::Error>(socks)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// The frame that posts `envelope` (base64url) in `room` on `kind`, as the
/// member of JetStream `inbox`.
pub(crate) fn post_frame(
    kind: Kind,
    slot: u32,
    room: &str,
    envelope: &str,
    inbox: &str,
) -> Message {
    match kind {
        Kind::Caucus | Kind::CaucusNoFlush => Message::text(format!(
            "{{\"v\":1,\"id\":{slot},\"type\":\"post\",\"envelope\":\"{envelope}\"}}"
        )),
        Kind::Bare => Message::text(caucus_bench::bare::publish(room, envelope)),
        Kind::Nats => Message::binary(nats::publish(room, envelope.as_bytes())),
        Kind::JetStream => Message::binary(nats::request(
            room,
            &format!("ack.{inbox}.{slot}"),
            envelope.as_bytes(),
        )),
    }
}

/// Timings of one measured run.
#[derive(Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
}

/// Drive `sockets` (from [`join_all`]) with `mode`; the processes of
/// `watch` are sampled over the measured interval.
pub(crate) async fn drive(
    kind: Kind,
    sessions: &Arc<Vec<Session>>,
    sockets: Vec<Ws>,
    mode: Mode,
    timing: Timing,
    watch: &Watch,
) -> anyhow::Result<Run> {
    // Slots: each member's pool, in member order.
    let mut slots = Vec::new();
    let mut keys = HashMap::new();
    let mut frames: Vec<Vec<(u32, Message)>> = Vec::new();
    let mut free_tx = Vec::new();
    let mut free_rx = Vec::new();
    let members = sessions
        .iter()
        .flat_map(|s| (s.members.iter().enumerate()).map(move |(i, m)| (m, inbox(s, i))));
    for (member, inbox) in members {
        let owner = frames.len() as u32;
        let mut mine = Vec::new();
        for m in &member.pool {
            let slot = slots.len() as u32;
            slots.push(Slot {
                sent_ns: AtomicU64::new(0),
                remaining: AtomicU32::new(0),
                owner,
                recipients: m.recipients,
            });
            if let Some(k) = key_of(&m.envelope) {
                keys.insert(k.into(), slot);
            }
            mine.push((slot, post_frame(kind, slot, &m.room, &m.envelope, &inbox)));
        }
        frames.push(mine);
        let (tx, rx) = mpsc::unbounded_channel();
        free_tx.push(tx);
        free_rx.push(rx);
    }
    if frames.len() != sockets.len() {
        bail!("{} sockets for {} members", sockets.len(), frames.len());
    }
    let table = Arc::new(Table {
        start: Instant::now(),
        slots,
        keys,
        free: free_tx,
        acked: kind == Kind::JetStream,
        measuring: AtomicBool::new(false),
        delivered: AtomicU64::new(0),
        posted: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        unknown: AtomicU64::new(0),
    });
    let senders = sockets.len().max(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (n, ((ws, mine), free)) in sockets.into_iter().zip(frames).zip(free_rx).enumerate() {
        let (sink, source) = ws.split();
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let window = match mode {
            Mode::Closed { window } => window.min(mine.len()),
            Mode::Open { .. } => mine.len(),
        };
        for (slot, _) in mine.iter().take(window) {
            table.release(*slot);
        }
        let once = matches!(kind, Kind::Caucus | Kind::CaucusNoFlush);
        readers.push(tokio::spawn(read(
            kind,
            n as u32,
            source,
            table.clone(),
            ctrl_tx,
            stop_rx.clone(),
        )));
        let pace = match mode {
            Mode::Closed { .. } => None,
            Mode::Open { posts_per_sec } => {
                let period = Duration::from_secs_f64(senders as f64 / posts_per_sec.max(1.0));
                // Spread the senders' phases over one period.
                let phase = period.mul_f64((n as f64 * 0.618_034) % 1.0);
                Some((period, phase))
            }
        };
        writers.push(tokio::spawn(write(
            sink,
            (mine, once),
            free,
            ctrl_rx,
            table.clone(),
            pace,
            stop_rx.clone(),
        )));
    }
    tokio::time::sleep(timing.warmup).await;
    table.measuring.store(true, Ordering::Relaxed);
    let commits0 = watch.commits().await;
    let (before, self0, t0) = (
        watch.sample(),
        crate::procs::cpu_seconds("self"),
        Instant::now(),
    );
    tokio::time::sleep(timing.measure).await;
    table.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let (after, self1) = (watch.sample(), crate::procs::cpu_seconds("self"));
    let rate = |i: usize| (after[i] - before[i]) / elapsed;
    let commits = commits0.since(watch.commits().await);
    let _ = stop_tx.send(true);
    let mut samples = Vec::new();
    for w in writers {
        let _ = w.await;
    }
    for r in readers {
        if let Ok(mut s) = r.await {
            samples.append(&mut s);
        }
    }
    let latency = caucus_bench::stats::Latency::of(&mut samples);
    Ok(Run {
        posts_per_sec: table.posted.load(Ordering::Relaxed) as f64 / elapsed,
        delivered_per_sec: table.delivered.load(Ordering::Relaxed) as f64 / elapsed,
        latency,
        relay_cpu: rate(0),
        relay_peak_mib: watch
            .relays
            .iter()
            .map(|(pid, _)| crate::procs::mem_kib(&pid.to_string(), "VmHWM:"))
            .sum::<f64>()
            / 1024.0,
        loadgen_cpu: (self1 - self0) / elapsed,
        errors: table.errors.load(Ordering::Relaxed),
        unknown: table.unknown.load(Ordering::Relaxed),
        commit_ms: 1000.0 * commits.seconds / commits.groups.max(1.0),
        commit_group: commits.batches / commits.groups.max(1.0),
        store_cpu: rate(1),
        store_write_bytes_per_sec: rate(2),
        store_growth_bytes_per_sec: rate(3),
        nats_cpu: rate(4),
        setup_secs: 0.0,
    })
}

/// One sender: for each delivered slot (a credit), (pace,) stamp and send the
/// next of its pool, in order; with `once`, each only once.
async fn write(
    mut sink: Sink,
    (pool, once): (Vec<(u32, Message)>, bool),
    mut free: mpsc::UnboundedReceiver<u32>,
    mut ctrl: mpsc::UnboundedReceiver<Message>,
    table: Arc<Table>,
    pace: Option<(Duration, Duration)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = pace.map(|(period, phase)| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        i
    });
    let mut next = 0usize;
    loop {
        // Open loop: the time the post was due is its send time, so a sender
        // held up (by the relay or by this generator) counts against latency.
        let due = match &mut ticks {
            Some(i) => tokio::select! {
                biased;
                _ = stop.changed() => break,
                Some(m) = ctrl.recv() => { if sink.send(m).await.is_err() { break } continue }
                at = i.tick() => Some(at.into_std()),
            },
            None => None,
        };
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(m) = ctrl.recv() => { if sink.send(m).await.is_err() { break } continue }
            credit = free.recv() => if credit.is_none() { break },
        };
        if once && next >= pool.len() {
            continue; // the pool is spent: nothing more to send
        }
        let Some((slot, frame)) = pool.get(next % pool.len().max(1)) else {
            continue;
        };
        let slot = *slot;
        next += 1;
        let at = due.map_or_else(
            || table.now_ns(),
            |d| d.saturating_duration_since(table.start).as_nanos() as u64,
        );
        table.sent(slot, at);
        if sink.send(frame.clone()).await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

/// One receiver, member `me`: count deliveries, note acknowledgements and
/// refusals; on JetStream acknowledge every delivery.
async fn read(
    kind: Kind,
    me: u32,
    mut source: Source,
    table: Arc<Table>,
    ctrl: mpsc::UnboundedSender<Message>,
    mut stop: watch::Receiver<bool>,
) -> Vec<u32> {
    let mut samples = Vec::new();
    let mut parser = nats::Parser::default();
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            m = source.next() => m,
        };
        let (text, bytes): (Option<&str>, &[u8]) = match &message {
            Some(Ok(Message::Text(t))) => (Some(t.as_str()), t.as_str().as_bytes()),
            Some(Ok(Message::Binary(b))) => (std::str::from_utf8(b).ok(), b.as_ref()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        };
        match kind {
            Kind::Caucus | Kind::CaucusNoFlush => {
                let text = text.unwrap_or_default();
                if text.starts_with("{\"type\":\"envelope\"") {
                    table.delivered(key_in_event(text), me, &mut samples);
                } else if text.starts_with("{\"type\":\"error\"") {
                    match serde_json::from_str::<Reply>(text) {
                        Ok(Reply::Error { id: Some(id), .. }) => table.refused(id as u32),
                        _ => {
                            table.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Kind::Bare => table.delivered(text.and_then(key_of), me, &mut samples),
            Kind::Nats | Kind::JetStream => {
                // What to send back: PONGs and (JetStream) acknowledgements,
                // in one frame.
                let mut answer = Vec::new();
                let fed = parser.feed(bytes, |op| match op {
                    // JetStream: a publish's acknowledgement (or refusal).
                    nats::Op::Msg {
                        subject, payload, ..
                    } if subject.starts_with("ack.") => {
                        let slot = subject.rsplit('.').next().and_then(|s| s.parse().ok());
                        match (slot, jetstream::pub_ack(payload)) {
                            (Some(slot), Ok(_)) => table.acknowledged(slot),
                            (Some(slot), Err(_)) => table.refused(slot),
                            (None, _) => {
                                table.unknown.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    nats::Op::Msg { reply, payload, .. } => {
                        let text = std::str::from_utf8(payload).ok();
                        table.delivered(text.and_then(key_of), me, &mut samples);
                        if let Some(reply) = reply {
                            answer.extend(jetstream::ack(reply));
                        }
                    }
                    nats::Op::Ping => answer.extend_from_slice(b"PONG\r\n"),
                    nats::Op::Err(_) => {
                        table.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                });
                if !answer.is_empty() {
                    let _ = ctrl.send(Message::binary(answer));
                }
                if fed.is_err() {
                    break;
                }
            }
        }
    }
    samples
}

/// Make sure a decoded envelope is what was sealed (a cheap self-check of
/// the pools, run once at start).
pub(crate) fn check_pool(sessions: &[Session]) -> anyhow::Result<()> {
    for m in sessions.iter().flat_map(|s| s.members.iter()).take(8) {
        for msg in m.pool.iter().take(2) {
            let bytes = caucus_protocol::b64::decode(&msg.envelope).context("base64")?;
            caucus_protocol::envelope::Envelope::from_bytes(&bytes)
                .map_err(|e| anyhow!("pool envelope: {e}"))?;
        }
    }
    Ok(())
}
