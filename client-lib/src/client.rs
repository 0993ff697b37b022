//! The native driver: one device's [`Machine`] behind a tokio task that
//! moves its frames over a websocket, saves its changes in the state
//! directory, and hands its events and outcomes on. Every decision is the
//! machine's; the methods here only ask it and wait for the outcome.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use caucus_client_core::{
    Admission, ClientError, Event, Kept, Knock, Link, Machine, OfferEntry, OpId, Outcome,
    ReadFrame, Sent, Timestamp,
};
use caucus_protocol::agreement::{Agreement, SignedAgreement};
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, Sharing, Step};
use caucus_protocol::crypto::Digest;
use caucus_protocol::deletion::SignedDeletionStatement;
use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::invite::Invite;
use caucus_protocol::offer::Offer;
use caucus_protocol::roster::{Phase, Roster};
use caucus_protocol::session::Opened;
use caucus_protocol::wire::PartyStatus;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::documents::FileIo;
use crate::store::StateDir;
use crate::transport::{Socket, Tls, connect};

type Result<T> = std::result::Result<T, ClientError>;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    clock().as_secs()
}

pub(crate) fn clock() -> Timestamp {
    Timestamp::from_millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// How long [`Client::open`] waits for the relay to catch its sessions up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How many frames that have already arrived are handled before one save:
/// a page of a catch-up.
const BATCH: usize = 256;

/// What the driver task and the methods share.
struct Shared {
    machine: Mutex<Machine>,
    dir: StateDir,
    relay: String,
    /// The relay's certificates, for every reconnection.
    tls: Tls,
    /// Wakes the driver after a command.
    wake: Notify,
    waiters: Mutex<HashMap<OpId, oneshot::Sender<Result<Outcome>>>>,
    caught_up: watch::Sender<Ready>,
    /// The files of the transfers in progress.
    files: Mutex<HashMap<OpId, FileIo>>,
    /// How many threads read a page of frames ([`read_frames`]).
    readers: usize,
    /// Saves under way on a blocking thread ([`Shared::save_aside`]).
    aside: Aside,
}

/// How many saves are under way aside. The state directory must get the
/// machine's changes in the order the machine gave them (an older snapshot
/// written over a newer one, or a session's files written again after it
/// was erased, would lose what came between): so a save made under the
/// machine lock ([`Shared::save`]) first waits until none is under way.
/// A save aside counts from when its changes are taken, under the machine
/// lock, until it has been applied, or dropped unapplied.
#[derive(Default)]
struct Aside {
    under_way: Mutex<usize>,
    ended: Condvar,
}

impl Aside {
    fn count(&self) -> MutexGuard<'_, usize> {
        self.under_way
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait until no save is under way aside.
    fn wait(&self) {
        let mut count = self.count();
        while *count > 0 {
            count = self
                .ended
                .wait(count)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// One save under way aside, until it is dropped.
struct UnderWay(Arc<Shared>);

impl UnderWay {
    fn begin(shared: &Arc<Shared>) -> Self {
        *shared.aside.count() += 1;
        Self(shared.clone())
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        *self.0.aside.count() -= 1;
        self.0.aside.ended.notify_all();
    }
}

/// How far the connection has come, for [`Client::open`] to wait on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ready {
    /// Not caught up yet.
    No,
    /// Connected, authenticated, every session caught up.
    CaughtUp,
    /// The relay is not the one pinned: this device would not log in.
    Refused(caucus_protocol::Error),
}

/// A Caucus participant's device, connected to a relay.
///
/// Dropping it stops its driver and closes its connection.
pub struct Client {
    shared: Arc<Shared>,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    /// Dropped with the client, which stops the driver.
    _stop: oneshot::Sender<()>,
}

impl Shared {
    fn machine(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<OpId, oneshot::Sender<Result<Outcome>>>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn files(&self) -> MutexGuard<'_, HashMap<OpId, FileIo>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Save what `m`, the machine under its lock, changed, after every
    /// save under way aside ([`Aside`]).
    fn save(&self, m: &mut Machine) -> Result<()> {
        if !m.has_changes() {
            return Ok(());
        }
        let changes = m.take_changes()?;
        self.aside.wait();
        self.dir.apply(&changes)
    }

    /// Save what changed, then take what is to be sent, doing the file IO
    /// of transfers as the machine asks; hand events and outcomes on.
    /// Nothing is answered or sent before it is saved.
    fn flush(&self, events: &mpsc::UnboundedSender<Event>) -> Result<Vec<String>> {
        let mut frames = Vec::new();
        let mut failed = HashMap::new();
        let (shown, done) = {
            let mut m = self.machine();
            let mut files = self.files();
            loop {
                self.save(&mut m)?;
                match m.poll_transmit() {
                    Some(frame) => frames.push(frame),
                    None if m.has_changes() => {}
                    None if crate::documents::serve(&mut m, &mut files, &mut failed) => {}
                    None => break,
                }
            }
            let shown: Vec<Event> = std::iter::from_fn(|| m.poll_event()).collect();
            let mut done: Vec<_> = std::iter::from_fn(|| m.poll_done()).collect();
            for (op, outcome) in &mut done {
                // A transfer ended: its file is closed; one cancelled for
                // its file's sake fails with what its file met.
                files.remove(op);
                if let Some(e) = failed.remove(op) {
                    *outcome = Err(e);
                }
            }
            self.caught_up.send_replace(match m.refused_relay() {
                Some(why) => Ready::Refused(why.clone()),
                None if m.is_caught_up() => Ready::CaughtUp,
                None => Ready::No,
            });
            (shown, done)
        };
        for event in shown {
            // Kept until the application reads them (it may also have
            // stopped listening, which is its choice).
            let _ = events.send(event);
        }
        let mut waiters = self.waiters();
        for (op, outcome) in done {
            if let Some(waiter) = waiters.remove(&op) {
                let _ = waiter.send(outcome);
            }
        }
        Ok(frames)
    }

    /// Read `texts`, frames from the relay ([`Machine::read_frame`]):
    /// parsing them and checking each envelope's signature, most of what a
    /// message costs, needs only the machine's `&self`, so a page of them
    /// (a catch-up) is read on every core at once.
    fn read(&self, texts: &[Utf8Bytes]) -> Vec<ReadFrame> {
        read_frames(&self.machine(), texts, self.readers)
    }

    /// Hand the machine frames [`Shared::read`] read, in the order they
    /// came: every other check is made here.
    fn handle(&self, read: Vec<ReadFrame>) {
        let mut m = self.machine();
        for frame in read {
            m.handle_read(frame, clock());
        }
    }

    /// Start saving what changed on a blocking thread, if anything did. The
    /// machine sends nothing until [`Shared::flush`] has seen it saved, so
    /// the caller awaits the save before it flushes; and a save under the
    /// machine lock meanwhile waits for it ([`Aside`]).
    fn save_aside(self: &Arc<Self>) -> Result<Option<tokio::task::JoinHandle<Result<()>>>> {
        let (changes, under_way) = {
            let mut m = self.machine();
            if !m.has_changes() {
                return Ok(None);
            }
            (m.take_changes()?, UnderWay::begin(self))
        };
        Ok(Some(tokio::task::spawn_blocking(move || {
            under_way.0.dir.apply(&changes)
        })))
    }

    /// Every waiter gets `why`: the driver has stopped.
    fn fail_all(&self, why: &str) {
        for (_, waiter) in self.waiters().drain() {
            let _ = waiter.send(Err(ClientError::Connection(why.to_owned())));
        }
    }
}

/// Fewer frames than this are read on the driver's thread alone: starting
/// threads would cost more than it saves.
const READ_ALONE: usize = 16;

/// `texts` read by `m` ([`Machine::read_frame`]), in order, on up to
/// `readers` threads.
fn read_frames(m: &Machine, texts: &[Utf8Bytes], readers: usize) -> Vec<ReadFrame> {
    let read = |part: &[Utf8Bytes]| -> Vec<ReadFrame> {
        part.iter().map(|t| m.read_frame(t.as_str())).collect()
    };
    if readers < 2 || texts.len() < READ_ALONE {
        return read(texts);
    }
    let (first, rest) = texts.split_at(texts.len().div_ceil(readers));
    std::thread::scope(|scope| {
        let others: Vec<_> = rest
            .chunks(first.len())
            .map(|part| scope.spawn(move || read(part)))
            .collect();
        let mut out = read(first);
        for other in others {
            match other.join() {
                Ok(part) => out.extend(part),
                Err(panicked) => std::panic::resume_unwind(panicked),
            }
        }
        out
    })
}

/// Pages of frames handled one after another before the driver saves,
/// sends and looks for commands again.
const PIPELINED: usize = 16;

/// `first` and the frames already here behind it, up to [`BATCH`]: their
/// texts, and whether the connection closed among them.
fn gather(
    first: Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ws: &mut Socket,
) -> (Vec<Utf8Bytes>, bool) {
    let mut next = first;
    let mut texts = Vec::new();
    for taken in 1.. {
        match next {
            Some(Ok(Message::Text(text))) => texts.push(text),
            Some(Ok(Message::Close(_)) | Err(_)) | None => return (texts, true),
            Some(Ok(_)) => {}
        }
        if taken == BATCH {
            break;
        }
        match ws.next().now_or_never() {
            Some(more) => next = more,
            None => break,
        }
    }
    (texts, false)
}

/// How the driver's wait ended.
enum Woken {
    Stop,
    Frame(Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Nudged,
    Timeout,
}

/// Wait for the next thing to do: a frame (when connected), a command, a
/// deadline of the machine's, or the end.
async fn wait(
    shared: &Shared,
    ws: Option<&mut Socket>,
    stop: &mut oneshot::Receiver<()>,
    also: Option<Duration>,
) -> Woken {
    let deadline = shared.machine().poll_timeout();
    let sleep = async {
        let wait = deadline
            .map(|d| Duration::from_millis(d.as_millis().saturating_sub(clock().as_millis())));
        match (wait, also) {
            (Some(a), Some(b)) => tokio::time::sleep(a.min(b)).await,
            (Some(d), None) | (None, Some(d)) => tokio::time::sleep(d).await,
            (None, None) => std::future::pending().await,
        }
    };
    let frame = async {
        match ws {
            Some(ws) => ws.next().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop => Woken::Stop,
        f = frame => Woken::Frame(f),
        () = shared.wake.notified() => Woken::Nudged,
        () = sleep => Woken::Timeout,
    }
}

/// The driver: keep a connection up (starting with `first`, if the client
/// opened one), move frames both ways, save changes, until the client is
/// dropped.
async fn drive(
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    mut stop: oneshot::Receiver<()>,
    mut first: Option<Socket>,
) {
    let mut backoff = Duration::from_millis(100);
    let outcome: Result<()> = async {
        loop {
            let attempt = match first.take() {
                Some(ws) => Ok(ws),
                None => connect(&shared.relay, &shared.tls).await,
            };
            let mut ws = match attempt {
                Ok(ws) => {
                    backoff = Duration::from_millis(100);
                    shared.machine().connected(clock());
                    ws
                }
                Err(e) => {
                    if matches!(e, ClientError::Tls(_)) {
                        // Retried, as a relay out of reach is.
                        tracing::warn!(error = %e, "TLS refused the relay; retrying");
                    } else {
                        tracing::debug!(error = %e, "connect failed; retrying");
                    }
                    let until = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Offline: deadlines still pass, commands still queue.
                    while tokio::time::Instant::now() < until {
                        let left = until - tokio::time::Instant::now();
                        match wait(&shared, None, &mut stop, Some(left)).await {
                            Woken::Stop => return Ok(()),
                            _ => {
                                shared.machine().handle_timeout(clock());
                                shared.flush(&events)?;
                            }
                        }
                    }
                    continue;
                }
            };
            loop {
                let frames = shared.flush(&events)?;
                let mut broken = false;
                for frame in frames {
                    if ws.feed(Message::text(frame)).await.is_err() {
                        broken = true;
                        break;
                    }
                }
                if broken || ws.flush().await.is_err() {
                    break;
                }
                match wait(&shared, Some(&mut ws), &mut stop, None).await {
                    Woken::Stop => {
                        let _ = ws.close(None).await;
                        return Ok(());
                    }
                    Woken::Nudged => {}
                    Woken::Timeout => shared.machine().handle_timeout(clock()),
                    Woken::Frame(frame) => {
                        // This frame and those already here are a page:
                        // read together, handled in order. Pages already
                        // behind it (a catch-up) follow at once, each
                        // page's changes saved on another thread while
                        // the next is read, and the next handled once
                        // they are saved.
                        let (texts, mut closed) = gather(frame, &mut ws);
                        let mut read = shared.read(&texts);
                        for _ in 1..PIPELINED {
                            shared.handle(read);
                            read = Vec::new();
                            if closed {
                                break;
                            }
                            let Some(frame) = ws.next().now_or_never() else {
                                break;
                            };
                            let (texts, now_closed) = gather(frame, &mut ws);
                            closed = now_closed;
                            let saving = shared.save_aside()?;
                            read = shared.read(&texts);
                            if let Some(saving) = saving {
                                saving
                                    .await
                                    .map_err(|e| ClientError::Io(std::io::Error::other(e)))??;
                            }
                        }
                        shared.handle(read);
                        if closed {
                            break;
                        }
                    }
                }
            }
            shared.machine().disconnected(clock());
            shared.flush(&events)?;
            match wait(&shared, None, &mut stop, Some(backoff)).await {
                Woken::Stop => return Ok(()),
                _ => continue,
            }
        }
    }
    .await;
    match outcome {
        Ok(()) => shared.fail_all("client stopped"),
        Err(e) => {
            tracing::error!(error = %e, "saving the client's state failed; stopping");
            shared.fail_all(&format!("saving this device's state failed: {e}"));
        }
    }
}

impl Client {
    /// Open the state directory (creating the device identity on first use),
    /// connect to `relay`, and catch up every session kept there for it. A
    /// `wss://` relay's certificate must chain to this computer's trusted
    /// roots ([`Tls::default`]).
    pub async fn open(dir: StateDir, relay: &str) -> Result<Self> {
        Self::open_with(dir, relay, Tls::default()).await
    }

    /// [`Client::open`], trusting the certificates `tls` says for a
    /// `wss://` relay, now and on every reconnection. It waits for a first
    /// attempt to connect (at most 10 s): a relay that TLS refuses fails
    /// here, with [`ClientError::Tls`] saying why. One out of reach fails
    /// here too, with [`ClientError::Connection`], if there are sessions to
    /// catch up; with none yet (a new device) it is tried again in the
    /// background, as after a break.
    pub async fn open_with(dir: StateDir, relay: &str, tls: Tls) -> Result<Self> {
        let keys = dir.identity_or_create()?;
        let mut machine = Machine::new(keys, relay);
        for saved in dir.load()? {
            match machine.restore(&saved.snapshot, saved.log.iter().map(|r| r.as_slice())) {
                Ok(_) => {}
                // Another relay's session: kept here, not this client's.
                Err(ClientError::Usage(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let live = machine
            .sessions()
            .iter()
            .any(|s| machine.membership(s).is_some_and(|m| !m.is_closed()));
        let first = match connect(relay, &tls).await {
            Ok(ws) => Some(ws),
            Err(e @ ClientError::Tls(_)) => return Err(e),
            // Sessions to catch up and no relay: said now, not after the
            // catch-up's timeout.
            Err(e) if live => {
                return Err(ClientError::Connection(format!(
                    "could not reach the relay at {relay} ({e})"
                )));
            }
            Err(e) => {
                tracing::debug!(error = %e, "connect failed; retrying");
                None
            }
        };
        let (caught_up, mut caught_up_rx) = watch::channel(Ready::No);
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            machine: Mutex::new(machine),
            dir,
            relay: relay.to_owned(),
            tls,
            wake: Notify::new(),
            waiters: Mutex::new(HashMap::new()),
            caught_up,
            files: Mutex::new(HashMap::new()),
            readers: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            aside: Aside::default(),
        });
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(drive(shared.clone(), events_tx, stopped, first));
        if live {
            let ready = tokio::time::timeout(
                OPEN_TIMEOUT,
                caught_up_rx.wait_for(|r| !matches!(r, Ready::No)),
            )
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|_| ClientError::Connection("client stopped".into()))?
            .clone();
            if let Ready::Refused(why) = ready {
                return Err(ClientError::Protocol(why));
            }
        }
        Ok(Self {
            shared,
            events: tokio::sync::Mutex::new(events),
            _stop: stop,
        })
    }

    /// Join a session from an invite link: connect to the link's relay and
    /// knock. The mediator's key is pinned from the link. [`Event::Joined`]
    /// arrives once the mediator admits this device.
    pub async fn join(dir: StateDir, link: &str) -> Result<(Self, SessionId)> {
        Self::join_with(dir, link, Tls::default()).await
    }

    /// [`Client::join`], trusting the certificates `tls` says for a
    /// `wss://` relay (as [`Client::open_with`]).
    pub async fn join_with(dir: StateDir, link: &str, tls: Tls) -> Result<(Self, SessionId)> {
        let invite = Invite::from_link(link)?;
        let client = Self::open_with(dir, &invite.relay, tls).await?;
        let session = client.join_session(link).await?;
        Ok((client, session))
    }

    /// Join another session from an invite link for this client's relay:
    /// knock, as [`Client::join`] does.
    pub async fn join_session(&self, link: &str) -> Result<SessionId> {
        let mut session = None;
        self.run(|m, now| {
            let (s, op) = m.join(link, now)?;
            session = Some(s);
            Ok(op)
        })
        .await?;
        session.ok_or(ClientError::Usage("not an invite link"))
    }

    /// Ask the machine, and wait for the outcome.
    async fn run(
        &self,
        ask: impl FnOnce(&mut Machine, Timestamp) -> Result<OpId>,
    ) -> Result<Outcome> {
        self.run_with(ask, None).await
    }

    /// Ask the machine for a transfer of `file` (if any), and wait for the
    /// outcome.
    pub(crate) async fn run_with(
        &self,
        ask: impl FnOnce(&mut Machine, Timestamp) -> Result<OpId>,
        file: Option<FileIo>,
    ) -> Result<Outcome> {
        let outcome = {
            let mut m = self.shared.machine();
            let op = ask(&mut m, clock())?;
            if let Some(file) = file {
                // Before the driver can ask for it: it does under the
                // machine's lock, held here.
                self.shared.files().insert(op, file);
            }
            let (tx, rx) = oneshot::channel();
            // Registered before the driver can see the outcome: it takes
            // outcomes under the machine's lock, which is held here.
            self.shared.waiters().insert(op, tx);
            rx
        };
        self.shared.wake.notify_one();
        outcome
            .await
            .map_err(|_| ClientError::Connection("client stopped".into()))?
    }

    async fn run_sent(
        &self,
        ask: impl FnOnce(&mut Machine, Timestamp) -> Result<OpId>,
    ) -> Result<Sent> {
        self.run_sent_with(ask, None).await
    }

    /// [`Client::run_with`], for an operation that stores a message.
    pub(crate) async fn run_sent_with(
        &self,
        ask: impl FnOnce(&mut Machine, Timestamp) -> Result<OpId>,
        file: Option<FileIo>,
    ) -> Result<Sent> {
        match self.run_with(ask, file).await? {
            Outcome::Sent(sent) => Ok(sent),
            _ => Err(ClientError::Usage("nothing was stored")),
        }
    }

    /// Where `session`'s downloaded documents are kept (sealed).
    pub(crate) fn documents_dir(&self, session: &SessionId) -> std::path::PathBuf {
        self.shared.dir.documents(session)
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&self.shared.machine())
    }

    /// This device's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.read(Machine::fingerprint)
    }

    /// Whether the connection to the relay is up and authenticated.
    pub fn is_online(&self) -> bool {
        self.read(|m| m.link() == Link::Online)
    }

    /// The relay's URL.
    pub fn relay(&self) -> &str {
        &self.shared.relay
    }

    /// The next event, or `None` once the client has stopped.
    ///
    /// Each event goes to one caller: an application that shares the client
    /// between tasks reads events in one of them.
    pub async fn next_event(&self) -> Option<Event> {
        self.events.lock().await.recv().await
    }

    /// The next event if one comes within `wait`.
    pub async fn next_event_within(&self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.next_event())
            .await
            .ok()
            .flatten()
    }

    /// Catch up with the relay on `session`: every roster, key and message
    /// missed. Resolves once all of it has been verified and applied.
    pub async fn sync(&self, session: &SessionId) -> Result<()> {
        self.run(|m, now| m.sync(session, now)).await.map(drop)
    }

    /// The sessions this client holds.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.read(Machine::sessions)
    }

    /// The newest verified roster of `session`.
    pub fn roster(&self, session: &SessionId) -> Result<Roster> {
        self.read(|m| m.roster(session))
    }

    /// The parties of `session` with their labels (as far as this device can
    /// open them).
    pub fn parties(&self, session: &SessionId) -> Result<Vec<(PartyId, String)>> {
        self.read(|m| m.parties(session))
    }

    /// A member's name as the newest roster naming them gives it (sealed to
    /// the members): a removed member keeps theirs.
    pub fn name_of(&self, session: &SessionId, member: &Fingerprint) -> Option<String> {
        self.read(|m| m.name_of(session, member))
    }

    /// A party's label as this device can open it (its id otherwise).
    pub fn party_label(&self, session: &SessionId, party: &PartyId) -> String {
        self.read(|m| m.party_label(session, party))
    }

    /// A room's label for people: "joint", "side", or the party's label.
    pub fn room_label(&self, session: &SessionId, room: &RoomId) -> String {
        self.read(|m| m.room_label(session, room))
    }

    /// The joint room.
    pub fn joint_room(&self, session: &SessionId) -> Result<RoomId> {
        self.read(|m| m.joint_room(session))
    }

    /// The private room of `party`.
    pub fn party_room(&self, session: &SessionId, party: &PartyId) -> Result<RoomId> {
        self.read(|m| m.party_room(session, party))
    }

    /// A party by its label (any case) or its id, as a person names it.
    pub fn party_named(&self, session: &SessionId, name: &str) -> Result<PartyId> {
        self.read(|m| m.party_named(session, name))
    }

    /// A room as a person names it: `mine`, `joint`, or a party's label or
    /// id.
    pub fn room_named(&self, session: &SessionId, name: &str) -> Result<RoomId> {
        self.read(|m| m.room_named(session, name))
    }

    /// This device's own private room (a party member's).
    pub fn my_room(&self, session: &SessionId) -> Result<RoomId> {
        self.read(|m| m.my_room(session))
    }

    /// A message this client has opened or sent, by id.
    pub fn message(&self, session: &SessionId, hash: &Digest) -> Option<Opened> {
        self.read(|m| m.message(session, hash))
    }

    /// Everything said in `session` that this device has seen or sent, in
    /// order, as events (without the warnings of the moment).
    pub fn history(&self, session: &SessionId) -> Vec<Event> {
        self.history_since(session, 0)
    }

    /// The history of `session` after its first `seen` entries.
    pub fn history_since(&self, session: &SessionId, seen: usize) -> Vec<Event> {
        self.read(|m| m.history_since(session, seen))
    }

    // ----- as a party member, or anyone in a room -----

    /// Seal and post `content` in `room`; once the relay has stored it
    /// durably, its index and its message id.
    pub async fn post(
        &self,
        session: &SessionId,
        room: &RoomId,
        content: &Content,
    ) -> Result<Sent> {
        self.run_sent(|m, now| m.post(session, room, content.clone(), now))
            .await
    }

    /// Send text in `room` with a sharing label (*mediator only* is the
    /// practice in a private room).
    pub async fn send(
        &self,
        session: &SessionId,
        room: &RoomId,
        text: &str,
        sharing: Sharing,
    ) -> Result<Sent> {
        self.run_sent(|m, now| m.send(session, room, text, sharing, now))
            .await
    }

    /// Let the mediator share one of this device's own messages.
    pub async fn consent(&self, session: &SessionId, message: &Digest) -> Result<Sent> {
        self.run_sent(|m, now| m.consent(session, message, now))
            .await
    }

    /// Record a settlement offer or counter-offer for this device's party,
    /// in its private room, for the mediator to carry across.
    pub async fn make_offer(&self, session: &SessionId, offer: &Offer) -> Result<Sent> {
        self.run_sent(|m, now| m.make_offer(session, offer, now))
            .await
    }

    /// The offers log: every offer this device has seen made or carried in
    /// `session`, in the order they came. A party sees what it made and
    /// what it received; a mediator sees every party's.
    pub fn offers(&self, session: &SessionId) -> Vec<OfferEntry> {
        self.read(|m| m.offers(session))
    }

    /// Erase this device's copy of a session: its room keys, chains and
    /// messages. The concluded agreement, if any, and the relay's deletion
    /// statement are kept (under `kept/` in the state directory); nothing
    /// else of the session remains here.
    pub fn erase(&self, session: &SessionId) -> Result<()> {
        let mut m = self.shared.machine();
        m.erase(session)?;
        self.shared.save(&mut m)
    }

    /// Withdraw this device's party from the mediation: a signed notice in
    /// the party's private room. The mediator's client marks the party
    /// withdrawn in the roster and tells the joint room that a party has
    /// withdrawn (not which).
    pub async fn withdraw(&self, session: &SessionId) -> Result<Sent> {
        self.run_sent(|m, now| m.withdraw(session, now)).await
    }

    /// Agree, for this device's party, to a step of the process: to continue
    /// after the individual meeting, or to meet the others jointly.
    pub async fn agree(&self, session: &SessionId, step: Step) -> Result<Sent> {
        self.run_sent(|m, now| m.agree(session, step, now)).await
    }

    /// Tell the mediator this party member's status.
    pub async fn set_status(&self, session: &SessionId, status: PartyStatus) -> Result<()> {
        self.run(|m, now| m.set_status(session, status, now))
            .await
            .map(drop)
    }

    // ----- as the mediator -----

    /// Create a session with this device as lead mediator (named `name`) and
    /// one party per label, each with its private room; the joint room
    /// starts closed. Returns the session and its parties in order.
    pub async fn create_session(
        &self,
        name: &str,
        parties: &[&str],
    ) -> Result<(SessionId, Vec<PartyId>)> {
        match self
            .run(|m, now| Ok(m.create_session(name, parties, now)?.1))
            .await?
        {
            Outcome::Created(session, parties) => Ok((session, parties)),
            _ => Err(ClientError::Usage("no session was created")),
        }
    }

    /// An invite link for one person joining `party` (named `name`), valid
    /// until `expires_at` (seconds since the Unix epoch). Send it to them
    /// privately: it holds the invite secret. With [`Admission::ByMediator`]
    /// they wait until [`Client::admit`]; an [`Event::Knocking`] says so.
    pub async fn invite(
        &self,
        session: &SessionId,
        party: &PartyId,
        name: &str,
        expires_at: u64,
        admission: Admission,
    ) -> Result<String> {
        link(
            self.run(|m, now| m.invite(session, party, name, expires_at, admission, now))
                .await?,
        )
    }

    /// An invite link for a co-mediator (named `name`): once admitted, a
    /// mediator's rights in every room.
    pub async fn invite_co_mediator(
        &self,
        session: &SessionId,
        name: &str,
        expires_at: u64,
        admission: Admission,
    ) -> Result<String> {
        link(
            self.run(|m, now| m.invite_co_mediator(session, name, expires_at, admission, now))
                .await?,
        )
    }

    /// Let in a joiner waiting in the waiting room, after comparing safety
    /// codes. [`Event::Admitted`] follows once the roster is published.
    pub fn admit(&self, session: &SessionId, member: &Fingerprint) -> Result<()> {
        self.shared.machine().admit(session, member, clock())?;
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Turn a joiner in the waiting room away; they are told.
    pub async fn decline(&self, session: &SessionId, member: &Fingerprint) -> Result<()> {
        self.run(|m, now| m.decline(session, member, now))
            .await
            .map(drop)
    }

    /// Remove a member: every room they were in starts a new epoch whose key
    /// they never receive.
    pub async fn remove_member(&self, session: &SessionId, member: &Fingerprint) -> Result<()> {
        self.run(|m, now| m.remove_member(session, member, now))
            .await
            .map(drop)
    }

    /// The parties still in the mediation that have not agreed to `step`
    /// since they last withdrew, as this (mediator) device has seen.
    pub fn parties_not_agreed(&self, session: &SessionId, step: Step) -> Result<Vec<PartyId>> {
        self.read(|m| m.parties_not_agreed(session, step))
    }

    /// Move the mediation to `phase`, and say so in the joint room. Moving on
    /// from the individual meetings needs every party's agreement to
    /// continue.
    pub async fn set_phase(&self, session: &SessionId, phase: Phase) -> Result<()> {
        self.run(|m, now| m.set_phase(session, phase, now))
            .await
            .map(drop)
    }

    /// Open or close the joint room to the parties, and say so there. It
    /// opens only in the negotiation or agreement phase, and only once every
    /// party still in the mediation has agreed to a joint meeting.
    pub async fn set_joint_open(&self, session: &SessionId, open: bool) -> Result<()> {
        self.run(|m, now| m.set_joint_open(session, open, now))
            .await
            .map(drop)
    }

    /// Readmit a party that withdrew, and say so in the joint room.
    pub async fn readmit(&self, session: &SessionId, party: &PartyId) -> Result<()> {
        self.run(|m, now| m.readmit(session, party, now))
            .await
            .map(drop)
    }

    /// Open a side room for `members` (the mediators are always in it): the
    /// lawyers only, say. Its key is sealed to exactly those members.
    pub async fn create_side_room(
        &self,
        session: &SessionId,
        members: &[Fingerprint],
    ) -> Result<RoomId> {
        match self
            .run(|m, now| m.create_side_room(session, members, now))
            .await?
        {
            Outcome::SideRoom(room) => Ok(room),
            _ => Err(ClientError::Usage("no side room was made")),
        }
    }

    /// Close a side room: it leaves the roster, and no one can post in it.
    pub async fn close_side_room(&self, session: &SessionId, room: &RoomId) -> Result<()> {
        self.run(|m, now| m.close_side_room(session, room, now))
            .await
            .map(drop)
    }

    /// Propose an agreement: the exact `terms`, with a reality-testing
    /// `checklist` and the documents it `attaches` (named by the messages
    /// that brought them; the signatures cover their SHA-256), for every
    /// member of every party still in the mediation to sign. Posted in the
    /// joint room and in each party's private room, so that it can be
    /// shuttled as well as read together. Returns its hash.
    pub async fn propose_agreement(
        &self,
        session: &SessionId,
        title: &str,
        terms: &str,
        checklist: &[String],
        attaches: &[Digest],
    ) -> Result<Digest> {
        match self
            .run(|m, now| m.propose_agreement(session, title, terms, checklist, attaches, now))
            .await?
        {
            Outcome::Proposed(hash) => Ok(hash),
            _ => Err(ClientError::Usage("no agreement was proposed")),
        }
    }

    /// Sign a proposed agreement, exactly as drafted (after reading it: the
    /// terms are in the [`Event::AgreementProposed`]).
    pub async fn sign_agreement(&self, session: &SessionId, agreement: &Digest) -> Result<Sent> {
        self.run_sent(|m, now| m.sign_agreement(session, agreement, now))
            .await
    }

    /// The newest agreement proposed in `session`, if any.
    pub fn latest_draft(&self, session: &SessionId) -> Option<Agreement> {
        self.read(|m| m.latest_draft(session))
    }

    /// (Lead mediator) countersign an agreement every signatory has signed,
    /// and give each member the concluded copy; until then the error names
    /// who has still to sign.
    pub async fn countersign(&self, session: &SessionId, agreement: &Digest) -> Result<()> {
        self.run(|m, now| m.countersign(session, agreement, now))
            .await
            .map(drop)
    }

    /// (Mediator) who is in the waiting room, in the order they knocked.
    pub fn waiting(&self, session: &SessionId) -> Result<Vec<Knock>> {
        self.read(|m| m.waiting(session))
    }

    /// (Mediator) a joiner in the waiting room by name, safety code or
    /// device.
    pub fn waiting_named(&self, session: &SessionId, who: &str) -> Result<Fingerprint> {
        self.read(|m| m.waiting_named(session, who))
    }

    /// A member by name, safety code or device.
    pub fn member_named(&self, session: &SessionId, who: &str) -> Result<Fingerprint> {
        self.read(|m| m.member_named(session, who))
    }

    /// The concluded agreement of `session`, signed by everyone and
    /// countersigned, if this device holds it (or kept it when the session
    /// was erased).
    pub fn agreement(&self, session: &SessionId) -> Option<SignedAgreement> {
        self.read(|m| m.agreement(session)).or_else(|| {
            let kept = self.shared.dir.kept(session, Kept::Agreement).ok()??;
            SignedAgreement::from_bytes(&kept).ok()
        })
    }

    /// Say which room the mediator is with (`None`: away); with `disclose`,
    /// the other parties learn which.
    pub async fn set_location(
        &self,
        session: &SessionId,
        room: Option<RoomId>,
        disclose: bool,
    ) -> Result<()> {
        self.run(|m, now| m.set_location(session, room, disclose, now))
            .await
            .map(drop)
    }

    /// Carry a message to `destination`, verbatim or (with `reframed`) in the
    /// mediator's words, and post the share receipt in its source room.
    /// *Mediator only* text is refused unless its author has consented.
    /// Returns the carried copy.
    pub async fn forward(
        &self,
        session: &SessionId,
        message: &Digest,
        destination: &RoomId,
        reframed: Option<String>,
    ) -> Result<Sent> {
        self.run_sent(|m, now| m.forward(session, message, destination, reframed, now))
            .await
    }

    /// Record a settlement offer for a party, in its private room (when the
    /// party asks the mediator to put it for them).
    pub async fn make_offer_for(
        &self,
        session: &SessionId,
        party: &PartyId,
        offer: &Offer,
    ) -> Result<Sent> {
        self.run_sent(|m, now| m.make_offer_for(session, party, offer, now))
            .await
    }

    /// Carry an offer to `destination` (another party's private room, or
    /// the joint room), verbatim or `restated` in the mediator's terms, and
    /// post the share receipt where it was made. Returns the carried copy.
    pub async fn carry_offer(
        &self,
        session: &SessionId,
        offer: &Digest,
        destination: &RoomId,
        restated: Option<Offer>,
    ) -> Result<Sent> {
        self.run_sent(|m, now| m.carry_offer(session, offer, destination, restated, now))
            .await
    }

    /// Close the session for everyone: the roster moves to the closed phase
    /// (so every member sees it, signed), then the relay closes the session.
    /// If the relay erases it at once, its signed statement of what it
    /// erased, checked and kept (see [`Client::deletion_statement`] for a
    /// relay that keeps data for a while first).
    pub async fn close_session(
        &self,
        session: &SessionId,
    ) -> Result<Option<SignedDeletionStatement>> {
        match self.run(|m, now| m.close_session(session, now)).await? {
            Outcome::Closed(statement) => Ok(statement),
            _ => Err(ClientError::Usage("the session was not closed")),
        }
    }

    /// The relay's signed statement of what it erased of this (closed)
    /// session: the copy kept here, or else asked of the relay, checked and
    /// kept. The relay refuses while it still keeps the session's data.
    pub async fn deletion_statement(&self, session: &SessionId) -> Result<SignedDeletionStatement> {
        if let Some(bytes) = self.shared.dir.kept(session, Kept::Deletion)? {
            let kept = SignedDeletionStatement::from_bytes(&bytes)
                .map_err(caucus_protocol::Error::from)?;
            kept.verify()?;
            return Ok(kept);
        }
        match self
            .run(|m, now| m.fetch_deletion_statement(session, now))
            .await?
        {
            Outcome::Statement(statement) => Ok(statement),
            _ => Err(ClientError::Usage("the relay gave no statement")),
        }
    }
}

fn link(outcome: Outcome) -> Result<String> {
    match outcome {
        Outcome::Invite(link) => Ok(link),
        _ => Err(ClientError::Usage("no invite was issued")),
    }
}
