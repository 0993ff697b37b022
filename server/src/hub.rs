//! The relay's shared state: every session in memory, which connections
//! follow it, and the handling of each request against the roster.
//!
//! Locks are `std::sync::Mutex` and are never held across an `.await`. An
//! envelope's index is assigned under its session's lock and its commit is
//! queued in the same critical section, so the committer sees commits in
//! index order; delivery runs on the committer after the flush, in that same
//! order, so a client never sees an envelope the relay could still lose.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use caucus_protocol::codec::Canonical;
use caucus_protocol::deletion::{DeletionStatement, Erased, SignedDeletionStatement};
use caucus_protocol::document::Layout;
use caucus_protocol::envelope::{Envelope, PROTOCOL_VERSION};
use caucus_protocol::history::RosterOutcome;
use caucus_protocol::identity::{Fingerprint, PublicIdentity};
use caucus_protocol::ids::{FileId, InviteId, RoomId, SessionId};
use caucus_protocol::invite::{AdmissionToken, JoinRequest};
use caucus_protocol::keys::SignedKeyBundle;
use caucus_protocol::relay::{PostCheck, RelayRules};
use caucus_protocol::roster::{Role, Roster, SignedRoster};
use caucus_protocol::wire::{
    Encoded, ErrorCode, Event, MediatorWhereabouts, PartyStatus, Reply, RoomCursor,
};

use crate::cluster::{CLOSE_MOVED, Cluster, Route};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::{Frame, Outbox};
use crate::relay_key::RelayIdentity;
use crate::store::{
    self, Commit, DocumentRecord, InviteRecord, Key, Kind, Location, PresenceRecord, SessionRecord,
    Store, StoreError,
};

/// A refusal: a wire code and a message for the client.
#[derive(Debug)]
pub(crate) struct Refusal(pub(crate) ErrorCode, pub(crate) String);

impl Refusal {
    pub(crate) fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self(code, msg.into())
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Overloaded => Self::new(ErrorCode::Overloaded, "store is busy; retry"),
            // The database is out of reach: nothing read, nothing changed.
            StoreError::Unavailable(why) | StoreError::Postgres(why) => {
                tracing::warn!(error = %why, "store unavailable");
                Self::new(ErrorCode::Unavailable, "store unavailable; try again later")
            }
            other => {
                tracing::error!(error = %other, "store failure");
                Self::new(ErrorCode::Internal, "store failure")
            }
        }
    }
}

/// The reply to a write whose commit failed: logged, counted, and
/// `internal` or `unavailable`, which always mean that nothing was stored
/// (13.5).
fn commit_failed(metrics: &Metrics, request: u64, error: StoreError) -> Reply {
    let Refusal(code, message) = Refusal::from(error);
    metrics.reject(code);
    Reply::error(Some(request), code, message)
}

impl From<caucus_protocol::Error> for Refusal {
    fn from(e: caucus_protocol::Error) -> Self {
        Self(ErrorCode::from(&e), e.to_string())
    }
}

type Result<T> = std::result::Result<T, Refusal>;

/// What a new follower is sent before live traffic (see [`Hub::subscribe`]).
pub(crate) struct Catchup {
    /// The node that owns the session, when it is not this one: the
    /// follower is registered there.
    pub(crate) owner: Option<String>,
    /// The connection that subscribed.
    pub(crate) conn: ConnId,
    /// The session.
    pub(crate) session: SessionId,
    /// Rosters, key bundles, join requests and statuses, in order.
    pub(crate) frames: Vec<Frame>,
    /// Per room, what of its log to send.
    pub(crate) rooms: Vec<RoomCatchup>,
}

/// The part of one room's log a new follower is sent: the envelopes with
/// index in `(after, upto]` sealed at epoch `since` or later.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RoomCatchup {
    pub(crate) room: RoomId,
    pub(crate) after: u64,
    pub(crate) upto: u64,
    pub(crate) since: u64,
}

/// A stored record as JSON.
fn record_json<T: serde::Serialize>(record: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))
}

/// A serialized frame.
fn frame<T: serde::Serialize>(value: &T) -> Result<Frame> {
    serde_json::to_string(value)
        .map(Into::into)
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))
}

/// An identifier for one connection.
pub(crate) type ConnId = u64;

/// A connection that follows a session.
struct Follower {
    who: Fingerprint,
    outbox: Arc<Outbox>,
    /// The highest index delivered, per room.
    delivered: HashMap<RoomId, u64>,
    /// The highest roster version delivered.
    roster: u64,
    /// The number after the last key bundle delivered or passed over (the
    /// bundles are numbered in the order published).
    bundles: u64,
    /// The join request delivered for each invite, as canonical bytes.
    joins: HashMap<InviteId, Vec<u8>>,
}

/// A document of a session, in memory (13.5.14-13.5.16).
struct Document {
    uploader: Fingerprint,
    layout: Layout,
    begun_at: u64,
    /// The chunks accepted, those still being stored included: the next
    /// chunk's index.
    accepted: u32,
    /// The chunks stored durably, which downloads may read.
    held: u32,
}

impl Document {
    fn record(&self, chunks: u32) -> DocumentRecord {
        DocumentRecord {
            uploader: self.uploader,
            size: self.layout.padded(),
            chunks,
            begun_at: self.begun_at,
        }
    }

    /// Every chunk accepted: nothing more may be uploaded.
    fn complete(&self) -> bool {
        self.accepted >= self.layout.chunks()
    }
}

/// One session in memory.
struct SessionState {
    /// Serializes this session's requests that check the store and then
    /// commit (invites, knocking, rosters, bundles, closing, erasing), so
    /// two of them never both pass a check only one may pass. Held across
    /// the commit; other sessions do not wait for it.
    writes: Arc<tokio::sync::Mutex<()>>,
    record: SessionRecord,
    /// The session's rosters and chain heads, and the rules posts, rosters
    /// and key bundles must keep (the same checks clients make).
    rules: RelayRules,
    /// The highest durable index per room.
    committed: HashMap<RoomId, u64>,
    /// The next index to assign per room.
    next: HashMap<RoomId, u64>,
    next_bundle: u64,
    followers: HashMap<ConnId, Follower>,
    /// Joiners waiting for admission: connection, fingerprint, outbox.
    waiting: HashMap<ConnId, (Fingerprint, Arc<Outbox>)>,
    /// Where each mediator (lead or co-mediator) said they are.
    locations: BTreeMap<Fingerprint, Location>,
    statuses: BTreeMap<Fingerprint, PartyStatus>,
    /// The session's documents, complete or not.
    documents: HashMap<FileId, Document>,
}

impl SessionState {
    fn roster(&self) -> Result<&Roster> {
        self.rules
            .history()
            .current()
            .map_err(|_| Refusal::new(ErrorCode::NotFound, "no such session"))
    }

    fn role_of(&self, who: &Fingerprint) -> Option<Role> {
        self.roster().ok()?.member(who).map(|m| m.role)
    }

    fn open(&self) -> Result<()> {
        if self.record.closed_at.is_some() {
            Err(Refusal::new(
                ErrorCode::SessionClosed,
                "the session has closed",
            ))
        } else {
            Ok(())
        }
    }

    /// Where the mediators are, as `viewer` may know it: each mediator has
    /// a location of their own, and the viewer hears of them together, the
    /// lead mediator first, then co-mediators in fingerprint order. A party
    /// member is told a mediator is with them if any is (`with_you`), else
    /// the first disclosed room (`in`), else `elsewhere` if any mediator is
    /// with someone; a mediator is told the first location (`in`).
    fn whereabouts(&self, viewer: &Fingerprint) -> MediatorWhereabouts {
        let Ok(roster) = self.roster() else {
            return MediatorWhereabouts::Away;
        };
        let lead = self.locations.get(&self.record.mediator);
        let places: Vec<&Location> = lead
            .into_iter()
            .chain(
                self.locations
                    .iter()
                    .filter(|(who, _)| **who != self.record.mediator)
                    .map(|(_, at)| at),
            )
            .collect();
        let Some(first) = places.first() else {
            return MediatorWhereabouts::Away;
        };
        if roster.member(viewer).is_some_and(|m| m.role.is_mediator()) {
            return MediatorWhereabouts::In(first.room);
        }
        if let Some(at) = places
            .iter()
            .find(|at| roster.room(&at.room).is_some_and(|r| r.has(viewer)))
        {
            MediatorWhereabouts::WithYou(at.room)
        } else if let Some(at) = places.iter().find(|at| at.disclose) {
            MediatorWhereabouts::In(at.room)
        } else {
            MediatorWhereabouts::Elsewhere
        }
    }

    /// After a new roster: forget the status of whoever is no longer a
    /// party member and the location of whoever is no longer a mediator (or
    /// is in a room that is gone).
    fn forget_departed(&mut self) {
        let Ok(roster) = self.roster().cloned() else {
            return;
        };
        self.statuses.retain(|who, _| {
            roster
                .member(who)
                .is_some_and(|m| m.role == Role::PartyMember)
        });
        self.locations.retain(|who, at| {
            roster.member(who).is_some_and(|m| m.role.is_mediator())
                && roster.room(&at.room).is_some()
        });
    }

    /// The presence record the store keeps, with `statuses` and `locations`.
    fn presence(
        statuses: &BTreeMap<Fingerprint, PartyStatus>,
        locations: &BTreeMap<Fingerprint, Location>,
    ) -> PresenceRecord {
        PresenceRecord {
            statuses: statuses.iter().map(|(w, st)| (*w, *st)).collect(),
            locations: locations.iter().map(|(w, at)| (*w, *at)).collect(),
        }
    }

    /// Tell every waiting joiner whether a mediator is online to let them in.
    fn tell_waiting(&self, session: SessionId) {
        let event = Event::Waiting {
            v: PROTOCOL_VERSION,
            session,
            mediator_online: self.mediators().next().is_some(),
        };
        for (_, outbox) in self.waiting.values() {
            outbox.send(&event);
        }
    }

    fn broadcast_presence(&self, session: SessionId) {
        self.tell_waiting(session);
        let mut online: Vec<Fingerprint> = self.followers.values().map(|f| f.who).collect();
        online.sort();
        online.dedup();
        for f in self.followers.values() {
            f.outbox.send(&Event::Presence {
                v: PROTOCOL_VERSION,
                session,
                online: online.clone(),
                mediator: self.whereabouts(&f.who),
            });
        }
    }

    fn mediators(&self) -> impl Iterator<Item = &Follower> {
        let roster = self.roster().ok();
        self.followers.values().filter(move |f| {
            roster
                .and_then(|r| r.member(&f.who))
                .is_some_and(|m| m.role.is_mediator())
        })
    }
}

/// The state shared by all connections.
pub(crate) struct Hub {
    store: Store,
    /// This node's part in a cluster of relays, if it is in one.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// The next connection's number, for sockets here and connections
    /// served here for other nodes alike.
    next_conn: AtomicU64,
    /// The ids of the sessions being created: a second `create_session` of
    /// one of them is refused at once, so that two never both pass the
    /// check that the id is free.
    creating: Mutex<HashSet<SessionId>>,
    /// Per device, the lock its `create_session`s take one at a time: a
    /// device with many connections has at most one creation in the
    /// committer's queue, and other devices never wait for it.
    creators: Mutex<HashMap<Fingerprint, Arc<tokio::sync::Mutex<()>>>>,
    /// Per lead mediator, the sessions it holds on the relay (from
    /// `create_session` until erased), with those being created: counted
    /// against `max_sessions_per_device`.
    held: Mutex<HashMap<Fingerprint, usize>>,
    sessions: Mutex<HashMap<SessionId, Arc<Mutex<SessionState>>>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) config: Config,
    /// The relay's own identity, which signs deletion statements, and the
    /// URLs a login may name.
    pub(crate) relay: RelayIdentity,
    /// Per device, its uploads not yet complete, in every session: counted
    /// against `max_uploads_per_device`. Changed only under the lock of the
    /// document's session.
    uploads: Mutex<HashMap<Fingerprint, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock is a bug; keep serving the others.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Count one fewer for `device` in `counts`, forgetting it at zero.
fn release(counts: &Mutex<HashMap<Fingerprint, usize>>, device: &Fingerprint) {
    let mut counts = lock(counts);
    if let Some(count) = counts.get_mut(device) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(device);
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn forbidden(msg: &str) -> Refusal {
    Refusal::new(ErrorCode::Forbidden, msg)
}

/// `chunk`'s checks, steps 1 to 6 (13.5.15), in order: the document the
/// chunk is the next of.
fn chunk_checks<'a>(
    s: &'a mut SessionState,
    caller: &Fingerprint,
    file: &FileId,
    index: u64,
    len: usize,
) -> Result<&'a mut Document> {
    s.open()?;
    let d = s
        .documents
        .get_mut(file)
        .ok_or_else(|| Refusal::new(ErrorCode::NotFound, "no such upload"))?;
    if d.uploader != *caller {
        return Err(forbidden(
            "only the device that began the upload adds to it",
        ));
    }
    if d.complete() {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            "the document is complete",
        ));
    }
    if index != u64::from(d.accepted) {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            format!("expected chunk {}", d.accepted),
        ));
    }
    if d.layout.chunk_len(d.accepted) != Some(len) {
        return Err(Refusal::new(
            ErrorCode::Invalid,
            "a chunk of the wrong length",
        ));
    }
    Ok(d)
}

/// A stored document record, in memory.
fn decode_document(bytes: &[u8]) -> std::result::Result<Document, StoreError> {
    let record: DocumentRecord =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let layout = Layout::of_padded(record.size)
        .ok_or_else(|| StoreError::Corrupt("a document's size".into()))?;
    Ok(Document {
        uploader: record.uploader,
        layout,
        begun_at: record.begun_at,
        accepted: record.chunks,
        held: record.chunks,
    })
}

/// A size limit for a person, rounded down: `50 MB`, `12.5 MB`, `195 KB`
/// (of 2^20 and 2^10 bytes).
fn size_limit(bytes: u64) -> String {
    if bytes < 1 << 20 {
        return format!("{} KB", bytes >> 10);
    }
    let tenths = (bytes * 10) >> 20;
    match tenths % 10 {
        0 => format!("{} MB", tenths / 10),
        tenth => format!("{}.{tenth} MB", tenths / 10),
    }
}

/// A session id claimed by a `create_session` under way; the claim ends
/// when this is dropped.
struct Creating<'a> {
    hub: &'a Hub,
    id: SessionId,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        lock(&self.hub.creating).remove(&self.id);
    }
}

/// A place in a device's session quota, given back when this is dropped
/// unless [`Place::keep`] says the session was made.
struct Place<'a> {
    hub: &'a Hub,
    device: Fingerprint,
    kept: bool,
}

impl Place<'_> {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.hub.release_place(&self.device);
        }
    }
}

impl Hub {
    /// The hub over `store`, with each device's held sessions counted from
    /// it.
    pub(crate) async fn new(
        store: Store,
        cluster: Option<Arc<Cluster>>,
        metrics: Arc<Metrics>,
        config: Config,
        relay: RelayIdentity,
    ) -> std::result::Result<Self, StoreError> {
        let mut held: HashMap<Fingerprint, usize> = HashMap::new();
        for (_, record) in store.all(Kind::Session).await? {
            let record: SessionRecord = store::from_json(&record)?;
            *held.entry(record.mediator).or_default() += 1;
        }
        let mut uploads: HashMap<Fingerprint, usize> = HashMap::new();
        for (_, document) in store.all(Kind::Document).await? {
            let document = decode_document(&document)?;
            if !document.complete() {
                *uploads.entry(document.uploader).or_default() += 1;
            }
        }
        Ok(Self {
            uploads: Mutex::new(uploads),
            store,
            cluster,
            next_conn: AtomicU64::new(1),
            relay,
            creating: Mutex::new(HashSet::new()),
            creators: Mutex::new(HashMap::new()),
            held: Mutex::new(held),
            sessions: Mutex::new(HashMap::new()),
            metrics,
            config,
        })
    }

    /// A number for a new connection.
    pub(crate) fn conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Where `session`'s requests are decided.
    pub(crate) async fn route(&self, session: &SessionId) -> Result<Route> {
        match &self.cluster {
            None => Ok(Route::Here),
            Some(cluster) => cluster.route(session).await,
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Let go of every session held in memory (see [`Hub::evict`]).
    pub(crate) fn evict_all(&self) {
        for session in self.loaded() {
            self.evict(&session);
        }
    }

    /// The sessions held in memory.
    pub(crate) fn loaded(&self) -> Vec<SessionId> {
        lock(&self.sessions).keys().copied().collect()
    }

    /// Forget a session this node no longer decides for: everyone following
    /// it or waiting to join is closed, to reconnect and resume wherever it
    /// is decided now.
    pub(crate) fn evict(&self, session: &SessionId) {
        let Some(state) = lock(&self.sessions).remove(session) else {
            return;
        };
        Metrics::sub(&self.metrics.sessions, 1);
        let s = lock(&state);
        for f in s.followers.values() {
            f.outbox.close(CLOSE_MOVED, crate::cluster::MOVED);
        }
        for (_, outbox) in s.waiting.values() {
            outbox.close(CLOSE_MOVED, crate::cluster::MOVED);
        }
        for d in s.documents.values().filter(|d| !d.complete()) {
            release(&self.uploads, &d.uploader);
        }
    }

    /// Claim `id` for a `create_session`, unless another is creating it.
    fn claim_id(&self, id: SessionId) -> Result<Creating<'_>> {
        if !lock(&self.creating).insert(id) {
            return Err(Refusal::new(ErrorCode::Conflict, "session exists"));
        }
        Ok(Creating { hub: self, id })
    }

    /// Take a place in `device`'s session quota, if one is free.
    fn take_place(&self, device: Fingerprint) -> Result<Place<'_>> {
        let max = self.config.max_sessions_per_device;
        let mut held = lock(&self.held);
        let count = held.entry(device).or_default();
        if *count >= max {
            return Err(Refusal::new(
                ErrorCode::Overloaded,
                format!("quota: a device holds at most {max} sessions on this relay; close one"),
            ));
        }
        *count += 1;
        Ok(Place {
            hub: self,
            device,
            kept: false,
        })
    }

    /// Give back a place in `device`'s session quota.
    fn release_place(&self, device: &Fingerprint) {
        release(&self.held, device);
    }

    /// The session's state, loaded from the store on first use.
    async fn session(&self, id: &SessionId) -> Result<Arc<Mutex<SessionState>>> {
        if let Some(s) = lock(&self.sessions).get(id) {
            return Ok(s.clone());
        }
        let record: Option<SessionRecord> = self.store.get_json(&Key::Session(*id)).await?;
        let Some(record) = record else {
            return Err(match self.statement(id).await? {
                Some(_) => Refusal::new(ErrorCode::SessionClosed, "the session has closed"),
                None => Refusal::new(ErrorCode::NotFound, "no such session"),
            });
        };
        // The rules are rebuilt as they were made: every stored roster
        // accepted in turn, then each room's log read for its chain heads.
        let corrupt = |e: &dyn std::fmt::Display| Refusal::from(StoreError::Corrupt(e.to_string()));
        let mut rules = RelayRules::new(*id, record.mediator);
        for (_, bytes) in self.store.records(Kind::Roster, id).await? {
            let roster = SignedRoster::from_bytes(&bytes).map_err(|e| corrupt(&e))?;
            rules
                .accept_roster(&record.mediator, roster)
                .map_err(|e| corrupt(&e))?;
        }
        let mut committed = HashMap::new();
        let rooms: Vec<RoomId> = rules
            .history()
            .current()
            .map(|r| r.rooms.iter().map(|room| room.id).collect())
            .unwrap_or_default();
        for room in rooms {
            let mut last = 0;
            for (index, stored) in self.store.log(id, &room, 1, u64::MAX, usize::MAX).await? {
                // A stored envelope that can no longer be read or decoded is
                // no chain head; its catch-up reports the damage (13.5.9).
                if let Some(envelope) = stored.ok().and_then(|b| Envelope::from_vec(b).ok()) {
                    rules.record(&envelope, index);
                }
                last = last.max(index);
            }
            committed.insert(room, last);
        }
        let presence: Option<PresenceRecord> = self.store.get_json(&Key::Presence(*id)).await?;
        let mut documents = HashMap::new();
        for (key, bytes) in self.store.records(Kind::Document, id).await? {
            if let Key::Document(_, file) = key {
                documents.insert(file, decode_document(&bytes)?);
            }
        }
        let next_bundle = match self.store.records(Kind::Bundle, id).await?.last() {
            Some((Key::Bundle(_, n), _)) => n + 1,
            _ => 0,
        };
        let state = Arc::new(Mutex::new(SessionState {
            writes: Arc::default(),
            record,
            rules,
            next: committed.clone(),
            committed,
            next_bundle,
            followers: HashMap::new(),
            waiting: HashMap::new(),
            locations: BTreeMap::new(),
            statuses: BTreeMap::new(),
            documents,
        }));
        if let Some(presence) = presence {
            let mut s = lock(&state);
            s.statuses = presence.statuses.into_iter().collect();
            s.locations = presence.locations.into_iter().collect();
            s.forget_departed();
        }
        let mut sessions = lock(&self.sessions);
        let entry = sessions.entry(*id).or_insert_with(|| {
            Metrics::add(&self.metrics.sessions, 1);
            state
        });
        Ok(entry.clone())
    }

    /// The session's state, with its writes serialized: the guard is held
    /// until the request's check and commit are done. A per-session lock, so
    /// one session's load never delays another's writes.
    async fn serial(
        &self,
        id: &SessionId,
    ) -> Result<(Arc<Mutex<SessionState>>, tokio::sync::OwnedMutexGuard<()>)> {
        let state = self.session(id).await?;
        let writes = lock(&state).writes.clone();
        Ok((state, writes.lock_owned().await))
    }

    /// `create_session`: the caller becomes the mediator of a new session,
    /// if the relay lets it create sessions and its quota has room. It
    /// takes no relay-wide lock: the id it creates is claimed alone, so one
    /// device's creations never wait for another's.
    pub(crate) async fn create_session(
        &self,
        caller: &PublicIdentity,
        roster: SignedRoster,
    ) -> Result<()> {
        let me = caller.fingerprint();
        if self
            .config
            .mediators
            .as_ref()
            .is_some_and(|allowed| !allowed.contains(&me))
        {
            return Err(forbidden(
                "this relay lets only the mediators its operator lists create sessions",
            ));
        }
        // The first roster, accepted as any client accepts one (7.6): the
        // caller is its lead mediator, and it is version 1.
        let id = roster.unverified().session;
        RelayRules::new(id, me).accept_roster(&me, roster.clone())?;
        let creator = lock(&self.creators).entry(me).or_default().clone();
        let result = {
            let _one_at_a_time = creator.lock().await;
            self.create(&me, id, &roster).await
        };
        let mut creators = lock(&self.creators);
        // The map's reference and this one: no one else is waiting.
        if Arc::strong_count(&creator) == 2 {
            creators.remove(&me);
        }
        result
    }

    /// `create_session`'s checks and write, the caller's creations taken
    /// one at a time.
    async fn create(&self, me: &Fingerprint, id: SessionId, roster: &SignedRoster) -> Result<()> {
        let me = *me;
        let _creating = self.claim_id(id)?;
        if self.store.get(&Key::Session(id)).await?.is_some()
            || self.statement(&id).await?.is_some()
        {
            return Err(Refusal::new(ErrorCode::Conflict, "session exists"));
        }
        let place = self.take_place(me)?;
        let record = SessionRecord {
            mediator: me,
            closed_at: None,
        };
        let mut batch = store::Batch::default();
        batch.insert(Key::Session(id), record_json(&record)?);
        batch.insert(Key::Roster(id, 1), roster.to_bytes());
        self.store.commit(batch).await?;
        place.keep();
        tracing::info!(session = %id, "session created");
        Ok(())
    }

    /// `publish_roster`: a newer roster from the session's mediator.
    pub(crate) async fn publish_roster(
        &self,
        caller: &Fingerprint,
        signed: SignedRoster,
    ) -> Result<()> {
        let id = signed.unverified().session;
        let (state, _serial) = self.serial(&id).await?;
        let waiting = self.store.records(Kind::Waiting, &id).await?;
        let (batch, before) = {
            let mut s = lock(&state);
            s.open()?;
            // The rules move on now, so that no post is taken under an
            // epoch this roster ends while it is being stored; if storing
            // fails they move back.
            let before = s.rules.clone();
            if s.rules.accept_roster(caller, signed.clone())? == RosterOutcome::AlreadyHeld {
                return Ok(());
            }
            let roster = signed.unverified();
            let mut batch = store::Batch::default();
            batch.insert(Key::Roster(id, roster.version), signed.to_bytes());
            // Joiners this roster admits stop waiting.
            for (key, bytes) in waiting {
                let admitted = JoinRequest::from_bytes(&bytes)
                    .ok()
                    .filter(|r| roster.member(&r.identity.fingerprint()).is_some());
                if let Some(request) = admitted {
                    // Admission spends the invite, as declining does.
                    batch.remove(key);
                    batch.remove(Key::Invite(id, request.invite));
                }
            }
            (batch, before)
        };
        if let Err(e) = self.store.commit(batch).await {
            lock(&state).rules = before;
            return Err(e.into());
        }
        let mut s = lock(&state);
        let event: Frame = frame(&Event::Roster {
            v: PROTOCOL_VERSION,
            session: id,
            roster: Encoded(signed.clone()),
        })?;
        let roster = signed.unverified();
        let version = roster.version;
        for room in &roster.rooms {
            s.committed.entry(room.id).or_insert(0);
            s.next.entry(room.id).or_insert(0);
        }
        // Everyone who follows or waits hears of it, once (a follower whose
        // catch-up already held it does not hear it again); those no longer
        // in the roster stop following.
        for f in s.followers.values_mut() {
            if f.roster < version {
                f.roster = version;
                f.outbox.push(event.clone());
            }
        }
        for (_, outbox) in s.waiting.values() {
            outbox.push(event.clone());
        }
        s.followers.retain(|_, f| roster.member(&f.who).is_some());
        s.waiting.retain(|_, (who, _)| roster.member(who).is_none());
        s.forget_departed();
        s.broadcast_presence(id);
        Ok(())
    }

    /// `publish_keys`: a key bundle from the mediator for a room's current epoch.
    pub(crate) async fn publish_keys(
        &self,
        caller: &Fingerprint,
        signed: SignedKeyBundle,
    ) -> Result<()> {
        let id = signed.unverified().session;
        let (state, _serial) = self.serial(&id).await?;
        let seq = {
            let mut s = lock(&state);
            s.open()?;
            s.rules.check_bundle(caller, &signed)?;
            let seq = s.next_bundle;
            s.next_bundle += 1;
            seq
        };
        let mut batch = store::Batch::default();
        batch.insert(Key::Bundle(id, seq), signed.to_bytes());
        self.store.commit(batch).await?;
        let mut s = lock(&state);
        let recipients: HashSet<Fingerprint> = signed
            .unverified()
            .entries
            .iter()
            .map(|e| e.recipient)
            .collect();
        let event = Event::KeyBundle {
            v: PROTOCOL_VERSION,
            session: id,
            bundle: Encoded(signed),
        };
        let event = frame(&event)?;
        // Once: a follower whose catch-up already held it is passed over.
        for f in s.followers.values_mut() {
            if f.bundles <= seq {
                f.bundles = seq + 1;
                if recipients.contains(&f.who) {
                    f.outbox.push(event.clone());
                }
            }
        }
        Ok(())
    }

    /// `create_invite`: the mediator registers an invite's token hash.
    pub(crate) async fn create_invite(
        &self,
        caller: &Fingerprint,
        session: SessionId,
        invite: InviteId,
        record: InviteRecord,
    ) -> Result<()> {
        let (state, _serial) = self.serial(&session).await?;
        {
            let s = lock(&state);
            s.open()?;
            if caller != &s.record.mediator {
                return Err(forbidden("only the mediator creates invites"));
            }
        }
        let key = Key::Invite(session, invite);
        if self.store.get(&key).await?.is_some() {
            return Err(Refusal::new(ErrorCode::Conflict, "invite exists"));
        }
        let max = self.config.max_invites_per_session;
        if self.store.records(Kind::Invite, &session).await?.len() >= max {
            return Err(Refusal::new(
                ErrorCode::Overloaded,
                format!("quota: a session holds at most {max} invites on this relay"),
            ));
        }
        let mut batch = store::Batch::default();
        batch.insert(key, record_json(&record)?);
        self.store.commit(batch).await.map_err(Refusal::from)
    }

    /// `join`: a joiner knocks with an invite; the request waits for the
    /// mediator, who hears of it now or when next following the session.
    pub(crate) async fn join(
        &self,
        conn: ConnId,
        caller: &Fingerprint,
        outbox: &Arc<Outbox>,
        token: AdmissionToken,
        request: JoinRequest,
    ) -> Result<()> {
        if &request.identity.fingerprint() != caller {
            return Err(forbidden(
                "a join request carries the caller's own identity",
            ));
        }
        let session = request.session;
        let (state, _serial) = self.serial(&session).await?;
        let bad = || Refusal::new(ErrorCode::InvalidInvite, "unknown, used or expired invite");
        {
            let s = lock(&state);
            s.open()?;
            // Admission spent the invite (publish_roster deletes it): a
            // member has nothing to knock on, and is told to subscribe.
            if s.role_of(caller).is_some() {
                return Err(Refusal::new(
                    ErrorCode::Conflict,
                    "already a member of the session: subscribe",
                ));
            }
        }
        let key = Key::Invite(session, request.invite);
        let mut record: InviteRecord = self.store.get_json(&key).await?.ok_or_else(bad)?;
        if record.token_hash != token.hash() || now() > record.expires_at {
            return Err(bad());
        }
        if record.joiner.is_some_and(|j| &j != caller) {
            return Err(bad());
        }
        record.joiner = Some(*caller);
        let mut batch = store::Batch::default();
        batch.insert(key, record_json(&record)?);
        batch.insert(Key::Waiting(session, request.invite), request.to_bytes());
        self.store.commit(batch).await?;
        let mut guard = lock(&state);
        let s = &mut *guard;
        let invite = request.invite;
        let bytes = request.to_bytes();
        let event = frame(&Event::JoinRequest {
            v: PROTOCOL_VERSION,
            request: Encoded(request),
        })?;
        let roster = s.rules.history().current().ok();
        // Once: a mediator whose catch-up already held it is passed over.
        for m in s.followers.values_mut().filter(|f| {
            roster
                .and_then(|r| r.member(&f.who))
                .is_some_and(|m| m.role.is_mediator())
        }) {
            if m.joins.get(&invite) != Some(&bytes) {
                m.joins.insert(invite, bytes.clone());
                m.outbox.push(event.clone());
            }
        }
        s.waiting.insert(conn, (*caller, outbox.clone()));
        s.tell_waiting(session);
        Ok(())
    }

    /// `decline`: the mediator turns a joiner away; the invite is spent.
    pub(crate) async fn decline(
        &self,
        caller: &Fingerprint,
        session: SessionId,
        invite: InviteId,
    ) -> Result<()> {
        let (state, _serial) = self.serial(&session).await?;
        {
            let s = lock(&state);
            s.open()?;
            if caller != &s.record.mediator {
                return Err(forbidden("only the mediator declines joiners"));
            }
        }
        let waiting_key = Key::Waiting(session, invite);
        let request = self
            .store
            .get(&waiting_key)
            .await?
            .and_then(|b| JoinRequest::from_bytes(&b).ok())
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, "no such waiting joiner"))?;
        let mut batch = store::Batch::default();
        batch.remove(waiting_key);
        batch.remove(Key::Invite(session, invite));
        self.store.commit(batch).await?;
        let joiner = request.identity.fingerprint();
        let mut s = lock(&state);
        let event = Event::Declined {
            v: PROTOCOL_VERSION,
            session,
        };
        s.waiting.retain(|_, (who, outbox)| {
            if *who == joiner {
                outbox.send(&event);
                false
            } else {
                true
            }
        });
        Ok(())
    }

    /// `post`: accept an envelope, give it the room's next index and queue
    /// its commit; once durable it is delivered to the room and the reply to
    /// `request` is queued on `outbox`. Synchronous, and replies are sent by
    /// the committer in commit order, so a connection's posts take indexes,
    /// and get their replies, in the order it sent them. `envelope_text`,
    /// if given, is the envelope's base64url as the request spelt it.
    pub(crate) async fn post(
        &self,
        caller: &Fingerprint,
        envelope: Envelope,
        envelope_text: Option<&str>,
        request: u64,
        outbox: &Arc<Outbox>,
    ) -> Result<()> {
        let h = envelope.header().clone();
        let state = self.session(&h.session).await?;
        let reply_to = outbox.clone();
        {
            let mut s = lock(&state);
            s.open()?;
            // The clients' rules, less the signature (clients check it).
            if let PostCheck::Duplicate { index } = s.rules.check_post(caller, &envelope)? {
                // Stored once. Its reply waits, behind the first post's
                // commit, until that is durable.
                let room = h.room;
                let check = state.clone();
                self.store.submit(Commit {
                    batch: store::Batch::default(),
                    then: Box::new(move |result| {
                        let durable = result.is_ok()
                            && lock(&check)
                                .committed
                                .get(&room)
                                .is_some_and(|c| *c >= index);
                        reply_to.send(&if durable {
                            Reply::posted(request, index)
                        } else {
                            Reply::error(Some(request), ErrorCode::Internal, "store failure")
                        });
                    }),
                })?;
                return Ok(());
            }
            let index = s.next.get(&h.room).copied().unwrap_or(0) + 1;
            s.rules.record(&envelope, index);
            let mut batch = store::Batch::default();
            let bytes = envelope.into_bytes();
            // Its base64url as the poster sent it is its encoding.
            let event = match envelope_text {
                Some(b64) => crate::outbox::envelope_frame_of(index, b64),
                None => crate::outbox::envelope_frame(index, &bytes),
            };
            batch.insert(Key::Log(h.session, h.room, index), bytes);
            let delivery_state = state.clone();
            let metrics = self.metrics.clone();
            let room_id = h.room;
            self.store.submit(Commit {
                batch,
                then: Box::new(move |result| {
                    if result.is_ok() {
                        let mut s = lock(&delivery_state);
                        s.committed.insert(room_id, index);
                        let members: HashSet<Fingerprint> = s
                            .roster()
                            .ok()
                            .and_then(|r| r.room(&room_id))
                            .map(|r| r.members.iter().copied().collect())
                            .unwrap_or_default();
                        for f in s.followers.values_mut() {
                            let seen = f.delivered.entry(room_id).or_insert(0);
                            if members.contains(&f.who) && *seen < index {
                                *seen = index;
                                // The connection that posted learns the
                                // index from its reply; the sender's other
                                // connections get the envelope.
                                if !Arc::ptr_eq(&f.outbox, &reply_to)
                                    && f.outbox.push(event.clone())
                                {
                                    Metrics::add(&metrics.envelopes_out, 1);
                                }
                            }
                        }
                        Metrics::add(&metrics.envelopes_in, 1);
                    }
                    let reply = match result {
                        Ok(()) => Reply::posted(request, index),
                        Err(e) => commit_failed(&metrics, request, e),
                    };
                    reply_to.send(&reply);
                }),
            })?;
            s.next.insert(h.room, index);
        }
        Ok(())
    }

    /// `subscribe`: register `conn` as a follower of the session and return
    /// what it must be sent first — the rosters after `roster_after`, the key
    /// bundles holding a copy for the caller, (for mediators) waiting join
    /// requests and statuses, and for each room the caller is in the range of
    /// envelopes after its cursor. The connection writes these straight to
    /// its socket, page by page with [`Hub::log_page`], before anything
    /// queued, so a catch-up of any length never overflows the live queue.
    pub(crate) async fn subscribe(
        &self,
        conn: ConnId,
        caller: &Fingerprint,
        outbox: &Arc<Outbox>,
        session: SessionId,
        roster_after: u64,
        cursors: &[RoomCursor],
    ) -> Result<Catchup> {
        // The session's other writes wait until the follower is registered,
        // so that every key bundle and join request is either read here or
        // delivered to it live.
        let (state, _serial) = self.serial(&session).await?;
        let bundles = self.store.records(Kind::Bundle, &session).await?;
        let waiting = self.store.records(Kind::Waiting, &session).await?;
        let mut s = lock(&state);
        s.open()?;
        let roster = s.roster()?.clone();
        let me = roster
            .member(caller)
            .ok_or_else(|| forbidden("not a member of this session"))?;
        let is_mediator = me.role.is_mediator();
        let mut frames = Vec::new();
        let corrupt = |e: caucus_protocol::codec::DecodeError| {
            Refusal::from(StoreError::Corrupt(e.to_string()))
        };
        // The first epoch of each room that the caller was in: envelopes of
        // earlier epochs are not theirs to see, not even their headers.
        let mut first_epoch: HashMap<RoomId, u64> = HashMap::new();
        // What the catch-up covers of rosters, key bundles and join requests
        // is marked delivered, as for envelopes: one published meanwhile (it
        // is stored before its broadcast) is not sent again live.
        let mut roster_mark = 0;
        let mut bundle_mark = 0;
        let mut joins = HashMap::new();
        for r in s.rules.history().all() {
            roster_mark = r.unverified().version;
            for room in r.unverified().rooms.iter().filter(|room| room.has(caller)) {
                first_epoch.entry(room.id).or_insert(room.epoch);
            }
            if r.unverified().version > roster_after {
                frames.push(frame(&Event::Roster {
                    v: PROTOCOL_VERSION,
                    session,
                    roster: Encoded(r.clone()),
                })?);
            }
        }
        for (key, bytes) in bundles {
            let b = SignedKeyBundle::from_bytes(&bytes).map_err(corrupt)?;
            if let Key::Bundle(_, seq) = key {
                bundle_mark = seq + 1;
            }
            if b.unverified()
                .entries
                .iter()
                .any(|e| &e.recipient == caller)
            {
                frames.push(frame(&Event::KeyBundle {
                    v: PROTOCOL_VERSION,
                    session,
                    bundle: Encoded(b),
                })?);
            }
        }
        if is_mediator {
            for (_, bytes) in waiting {
                let request = JoinRequest::from_bytes(&bytes).map_err(corrupt)?;
                joins.insert(request.invite, bytes);
                frames.push(frame(&Event::JoinRequest {
                    v: PROTOCOL_VERSION,
                    request: Encoded(request),
                })?);
            }
            for (member, status) in &s.statuses {
                frames.push(frame(&Event::Status {
                    v: PROTOCOL_VERSION,
                    session,
                    member: *member,
                    status: *status,
                })?);
            }
        }
        let mut rooms = Vec::new();
        let mut delivered = HashMap::new();
        for room in roster.rooms.iter().filter(|r| r.has(caller)) {
            let after = cursors
                .iter()
                .find(|c| c.room == room.id)
                .map_or(0, |c| c.after);
            let upto = s.committed.get(&room.id).copied().unwrap_or(0);
            if after < upto {
                let since = first_epoch.get(&room.id).copied().unwrap_or(room.epoch);
                rooms.push(RoomCatchup {
                    room: room.id,
                    after,
                    upto,
                    since,
                });
            }
            // Live delivery resumes after what the catch-up covers, whatever
            // cursor the client claimed.
            delivered.insert(room.id, upto);
        }
        s.followers.insert(
            conn,
            Follower {
                who: *caller,
                outbox: outbox.clone(),
                delivered,
                roster: roster_mark,
                bundles: bundle_mark,
                joins,
            },
        );
        s.broadcast_presence(session);
        Ok(Catchup {
            owner: None,
            conn,
            session,
            frames,
            rooms,
        })
    }

    /// A catch-up could not be completed: undo its subscription, so that
    /// no delivery mark counts what the connection never received.
    pub(crate) fn unsubscribe(&self, catchup: &Catchup) {
        if let (Some(owner), Some(cluster)) = (&catchup.owner, &self.cluster) {
            cluster.unsubscribe(owner, catchup.conn, catchup.session);
            return;
        }
        self.unfollow(catchup.conn, &catchup.session);
    }

    /// `conn` no longer follows `session`, which this node decides.
    pub(crate) fn unfollow(&self, conn: ConnId, session: &SessionId) {
        let Some(state) = lock(&self.sessions).get(session).cloned() else {
            return;
        };
        let mut s = lock(&state);
        if s.followers.remove(&conn).is_some() {
            s.broadcast_presence(*session);
        }
    }

    /// The next page of a room's catch-up: up to `limit` stored entries
    /// after `part.after`, each with its index and, if it was sealed at epoch
    /// `part.since` or later, its `envelope` event frame.
    pub(crate) async fn log_page(
        &self,
        session: &SessionId,
        part: &RoomCatchup,
        limit: usize,
    ) -> Result<Vec<(u64, Option<Frame>)>> {
        let from = part.after.saturating_add(1);
        self.store
            .log(session, &part.room, from, part.upto, limit)
            .await?
            .into_iter()
            .map(|(index, stored)| {
                let bytes = stored?;
                let header = Envelope::header_of(&bytes)
                    .map_err(|e| Refusal::from(StoreError::Corrupt(e.to_string())))?;
                if header.epoch < part.since {
                    return Ok((index, None));
                }
                Ok((index, Some(crate::outbox::envelope_frame(index, &bytes))))
            })
            .collect()
    }

    /// Keep a session's presence in the store, so that it survives a
    /// restart. The write is queued, not waited for: presence is not worth a
    /// flush per change, and a clean shutdown drains the queue.
    fn save_presence(&self, session: &SessionId, record: &PresenceRecord) -> Result<()> {
        let mut batch = store::Batch::default();
        batch.insert(Key::Presence(*session), record_json(record)?);
        let session = *session;
        self.store.submit(Commit {
            batch,
            then: Box::new(move |r| {
                if let Err(e) = r {
                    tracing::warn!(session = %session, error = %e, "presence not saved");
                }
            }),
        })?;
        Ok(())
    }

    /// `location`: a mediator (lead or co-mediator) says which room they
    /// are with, or (`None`) that they are away.
    pub(crate) async fn location(
        &self,
        caller: &Fingerprint,
        session: SessionId,
        room: Option<RoomId>,
        disclose: bool,
    ) -> Result<()> {
        let state = self.session(&session).await?;
        let mut s = lock(&state);
        s.open()?;
        if !s.role_of(caller).is_some_and(Role::is_mediator) {
            return Err(forbidden("only a mediator sets the location"));
        }
        if let Some(r) = room
            && s.roster()?.room(&r).is_none()
        {
            return Err(Refusal::new(ErrorCode::NotFound, "no such room"));
        }
        let mut locations = s.locations.clone();
        match room {
            Some(room) => locations.insert(*caller, Location { room, disclose }),
            None => locations.remove(caller),
        };
        self.save_presence(&session, &SessionState::presence(&s.statuses, &locations))?;
        s.locations = locations;
        s.broadcast_presence(session);
        Ok(())
    }

    /// `status`: a party member's status, shown to the mediators.
    pub(crate) async fn status(
        &self,
        caller: &Fingerprint,
        session: SessionId,
        status: PartyStatus,
    ) -> Result<()> {
        let state = self.session(&session).await?;
        let mut s = lock(&state);
        s.open()?;
        if s.role_of(caller) != Some(Role::PartyMember) {
            return Err(forbidden("only a party member sets a status"));
        }
        let mut statuses = s.statuses.clone();
        statuses.insert(*caller, status);
        self.save_presence(&session, &SessionState::presence(&statuses, &s.locations))?;
        s.statuses = statuses;
        let event = Event::Status {
            v: PROTOCOL_VERSION,
            session,
            member: *caller,
            status,
        };
        for m in s.mediators() {
            m.outbox.send(&event);
        }
        Ok(())
    }

    /// `close_session`: end the session for everyone and delete its data
    /// (after the configured retention). With no retention, the relay's
    /// signed statement of what it erased.
    pub(crate) async fn close_session(
        &self,
        caller: &Fingerprint,
        session: SessionId,
    ) -> Result<Option<SignedDeletionStatement>> {
        let (state, _serial) = self.serial(&session).await?;
        let record = {
            let mut s = lock(&state);
            s.open()?;
            if caller != &s.record.mediator {
                return Err(forbidden("only the mediator closes the session"));
            }
            let record = SessionRecord {
                closed_at: Some(now()),
                ..s.record.clone()
            };
            // Closed from now on: no request of the session is accepted
            // while the closing time is being stored.
            s.record = record.clone();
            record
        };
        // The closing time is stored first, whatever the retention: if the
        // erasure below fails, the session stays closed across a restart
        // and the sweep erases it.
        let mut batch = store::Batch::default();
        batch.insert(Key::Session(session), record_json(&record)?);
        if let Err(e) = self.store.commit(batch).await {
            lock(&state).record.closed_at = None;
            return Err(e.into());
        }
        {
            let mut s = lock(&state);
            let event = Event::SessionClosed {
                v: PROTOCOL_VERSION,
                session,
            };
            for f in s.followers.values() {
                f.outbox.send(&event);
            }
            for (_, outbox) in s.waiting.values() {
                outbox.send(&event);
            }
            s.followers.clear();
            s.waiting.clear();
        }
        tracing::info!(session = %session, "session closed");
        if !self.config.retention.is_zero() {
            return Ok(None);
        }
        match self.erase(&session, &record).await {
            Ok(statement) => Ok(Some(statement)),
            Err(Refusal(_, why)) => {
                // Closed all the same; the sweep erases it and keeps the
                // statement for the mediator to fetch.
                tracing::warn!(session = %session, error = %why, "erase failed; the sweep retries");
                Ok(None)
            }
        }
    }

    /// Delete every record of a closed session, durably, and in the same
    /// batch keep the signed statement of what went.
    async fn erase(
        &self,
        session: &SessionId,
        record: &SessionRecord,
    ) -> Result<SignedDeletionStatement> {
        let mut erased = Erased::default();
        let mut batch = store::Batch::default();
        for (key, size) in self.store.session_records(session).await? {
            let count = match key.kind() {
                Kind::Session => Some(&mut erased.sessions),
                Kind::Roster => Some(&mut erased.rosters),
                Kind::Bundle => Some(&mut erased.key_bundles),
                Kind::Log => Some(&mut erased.envelopes),
                Kind::Invite => Some(&mut erased.invites),
                Kind::Waiting => Some(&mut erased.join_requests),
                Kind::Document => Some(&mut erased.documents),
                Kind::Chunk => Some(&mut erased.chunks),
                // Counted in `bytes` only: the statement has no line for it.
                Kind::Presence => None,
                Kind::Deleted => continue,
            };
            if let Some(count) = count {
                *count += 1;
            }
            erased.bytes += size;
            batch.remove(key);
        }
        let statement = DeletionStatement {
            relay: self.relay.keys.public().clone(),
            session: *session,
            mediator: record.mediator,
            closed_at: record.closed_at.unwrap_or_else(now),
            erased_at: now(),
            erased,
        }
        .sign(&self.relay.keys)?;
        batch.insert(Key::Deleted(*session), statement.to_bytes());
        self.store.commit(batch).await?;
        self.release_place(&record.mediator);
        let forgotten = lock(&self.sessions).remove(session);
        if let Some(state) = forgotten {
            Metrics::sub(&self.metrics.sessions, 1);
            // Its uploads under way went with it.
            for d in lock(&state).documents.values().filter(|d| !d.complete()) {
                release(&self.uploads, &d.uploader);
            }
        }
        tracing::info!(session = %session, envelopes = erased.envelopes, documents = erased.documents, bytes = erased.bytes, "session data erased");
        Ok(statement)
    }

    /// The deletion statement of an erased session, if the relay keeps one.
    async fn statement(&self, session: &SessionId) -> Result<Option<SignedDeletionStatement>> {
        self.store
            .get(&Key::Deleted(*session))
            .await?
            .map(|v| SignedDeletionStatement::from_bytes(&v))
            .transpose()
            .map_err(|e| Refusal::from(StoreError::Corrupt(e.to_string())))
    }

    /// `deletion_statement`: what the relay erased of a closed session, for
    /// its lead mediator.
    pub(crate) async fn deletion_statement(
        &self,
        caller: &Fingerprint,
        session: SessionId,
    ) -> Result<SignedDeletionStatement> {
        if let Some(statement) = self.statement(&session).await? {
            if &statement.unverified().mediator != caller {
                return Err(forbidden("the statement is for the session's mediator"));
            }
            return Ok(statement);
        }
        let state = self.session(&session).await?;
        let s = lock(&state);
        if &s.record.mediator != caller {
            return Err(forbidden("the statement is for the session's mediator"));
        }
        Err(match s.record.closed_at {
            None => Refusal::new(ErrorCode::Conflict, "the session is still open"),
            Some(at) => Refusal::new(
                ErrorCode::NotFound,
                format!(
                    "not yet erased: kept until {}",
                    at.saturating_add(self.config.retention.as_secs())
                ),
            ),
        })
    }

    /// Erase closed sessions whose retention has passed, and forget
    /// deletion statements kept for longer than theirs.
    pub(crate) async fn sweep(&self) -> Result<()> {
        let retention = self.config.retention.as_secs();
        for (key, record) in self.store.all(Kind::Session).await? {
            let record: SessionRecord = store::from_json(&record)?;
            let due = record
                .closed_at
                .is_some_and(|at| at.saturating_add(retention) <= now());
            let id = *key.session();
            if !due || self.route(&id).await? != Route::Here {
                continue;
            }
            // Erased under the session's own lock, as close_session erases.
            let erased = match self.serial(&id).await {
                Ok((state, _serial)) => {
                    let record = lock(&state).record.clone();
                    self.erase(&id, &record).await
                }
                Err(e) => Err(e),
            };
            if let Err(Refusal(_, why)) = erased {
                // Keep sweeping the others; this one is retried next time.
                tracing::warn!(session = %id, error = %why, "erase failed");
            }
        }
        self.sweep_uploads().await?;
        let keep = self.config.statement_retention.as_secs();
        let mut batch = store::Batch::default();
        let mut expired = 0;
        for (key, statement) in self.store.all(Kind::Deleted).await? {
            let statement = SignedDeletionStatement::from_bytes(&statement)
                .map_err(|e| Refusal::from(StoreError::Corrupt(e.to_string())))?;
            if statement.unverified().erased_at.saturating_add(keep) <= now() {
                batch.remove(key);
                expired += 1;
            }
        }
        if expired > 0 {
            self.store.commit(batch).await?;
        }
        Ok(())
    }

    /// Delete every upload not complete `upload_ttl_secs` after it began,
    /// its record and chunks in one write (13.5.15).
    async fn sweep_uploads(&self) -> Result<()> {
        let ttl = self.config.upload_ttl.as_secs();
        let due = |d: &Document, now: u64| !d.complete() && d.begun_at.saturating_add(ttl) <= now;
        let mut sessions = HashSet::new();
        for (key, bytes) in self.store.all(Kind::Document).await? {
            if due(&decode_document(&bytes)?, now()) {
                sessions.insert(*key.session());
            }
        }
        for id in sessions {
            if self.route(&id).await? != Route::Here {
                continue;
            }
            // An erased session's documents went with it.
            let Ok(state) = self.session(&id).await else {
                continue;
            };
            // Removed from memory and queued under the session's lock, so
            // that chunks accepted before are stored (and deleted) first and
            // none is accepted after.
            let (stored, deleted) = {
                let mut s = lock(&state);
                let now = now();
                let expired: Vec<FileId> = s
                    .documents
                    .iter()
                    .filter(|(_, d)| due(d, now))
                    .map(|(file, _)| *file)
                    .collect();
                let mut batch = store::Batch::default();
                for file in &expired {
                    if let Some(d) = s.documents.remove(file) {
                        batch.remove(Key::Document(id, *file));
                        for index in 0..d.accepted {
                            batch.remove(Key::Chunk(id, *file, index));
                        }
                        release(&self.uploads, &d.uploader);
                    }
                }
                (self.store.queue(batch)?, expired.len())
            };
            stored.await?;
            tracing::info!(session = %id, uploads = deleted, "abandoned uploads deleted");
        }
        Ok(())
    }

    /// `upload`: begin uploading a document, or (the same uploader and
    /// size again) learn how many of its chunks the relay holds (13.5.14).
    pub(crate) async fn upload(
        &self,
        caller: &Fingerprint,
        session: SessionId,
        file: FileId,
        size: u64,
    ) -> Result<u64> {
        let state = self.session(&session).await?;
        let begun = {
            let mut guard = lock(&state);
            let s = &mut *guard;
            s.open()?;
            if s.role_of(caller).is_none() {
                return Err(forbidden("not a member of this session"));
            }
            let layout = Layout::of_padded(size)
                .ok_or_else(|| Refusal::new(ErrorCode::Invalid, "not a padded document size"))?;
            let max = self.config.max_document_bytes;
            if size > max {
                return Err(Refusal::new(
                    ErrorCode::TooLarge,
                    format!("documents at this relay are at most {}", size_limit(max)),
                ));
            }
            match s.documents.get(&file) {
                Some(d) if d.uploader == *caller && d.layout == layout => None,
                Some(_) => {
                    return Err(Refusal::new(
                        ErrorCode::Conflict,
                        "that document id is taken",
                    ));
                }
                None => Some(self.begin_upload(s, caller, session, file, layout)?),
            }
        };
        match begun {
            Some(stored) => {
                if let Err(e) = stored.await {
                    let mut s = lock(&state);
                    if s.documents.remove(&file).is_some() {
                        release(&self.uploads, caller);
                    }
                    return Err(e.into());
                }
                Ok(0)
            }
            None => {
                // The chunks accepted before this, once they are stored.
                self.store.commit(store::Batch::default()).await?;
                Ok(lock(&state)
                    .documents
                    .get(&file)
                    .map_or(0, |d| u64::from(d.held)))
            }
        }
    }

    /// `upload`'s quotas (steps 6 and 7), then its record: in memory now,
    /// and queued for the store under the session's lock.
    fn begin_upload(
        &self,
        s: &mut SessionState,
        caller: &Fingerprint,
        session: SessionId,
        file: FileId,
        layout: Layout,
    ) -> Result<impl Future<Output = std::result::Result<(), StoreError>> + use<>> {
        let taken: u64 = s.documents.values().map(|d| d.layout.padded()).sum();
        if taken.saturating_add(layout.padded()) > self.config.session_document_bytes {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                "this session has no room for more documents",
            ));
        }
        let mut uploads = lock(&self.uploads);
        let count = uploads.entry(*caller).or_default();
        let max = self.config.max_uploads_per_device;
        if *count >= max {
            return Err(Refusal::new(
                ErrorCode::Overloaded,
                format!(
                    "quota: a device has at most {max} uploads under way on this relay; finish one"
                ),
            ));
        }
        let document = Document {
            uploader: *caller,
            layout,
            begun_at: now(),
            accepted: 0,
            held: 0,
        };
        let mut batch = store::Batch::default();
        batch.insert(
            Key::Document(session, file),
            record_json(&document.record(0))?,
        );
        let stored = self.store.queue(batch)?;
        *count += 1;
        s.documents.insert(file, document);
        Ok(stored)
    }

    /// `chunk`'s checks, steps 1 to 6 (13.5.15), made before the caller's
    /// upload budget is waited for, and again after.
    pub(crate) async fn check_chunk(
        &self,
        caller: &Fingerprint,
        session: SessionId,
        file: FileId,
        index: u64,
        len: usize,
    ) -> Result<()> {
        let state = self.session(&session).await?;
        let mut s = lock(&state);
        chunk_checks(&mut s, caller, &file, index, len).map(drop)
    }

    /// `chunk`: accept the next chunk of an upload and queue it with the
    /// document's new count; once both are durable the reply to `request`
    /// is queued on `outbox`. Synchronous, and replied to by the committer
    /// in commit order, as `post` is: a connection may send chunks without
    /// waiting, and their replies come in order.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn chunk(
        &self,
        caller: &Fingerprint,
        session: SessionId,
        file: FileId,
        index: u64,
        data: Vec<u8>,
        request: u64,
        outbox: &Arc<Outbox>,
    ) -> Result<()> {
        let state = self.session(&session).await?;
        let mut guard = lock(&state);
        let d = chunk_checks(&mut guard, caller, &file, index, data.len())?;
        let at = d.accepted;
        let mut batch = store::Batch::default();
        batch.insert(Key::Chunk(session, file, at), data);
        batch.insert(
            Key::Document(session, file),
            record_json(&d.record(at + 1))?,
        );
        let stored = state.clone();
        let reply_to = outbox.clone();
        let metrics = self.metrics.clone();
        self.store.submit(Commit {
            batch,
            then: Box::new(move |result| {
                let reply = match result {
                    Ok(()) => {
                        // Unless the sweep took the upload meanwhile.
                        if let Some(d) = lock(&stored)
                            .documents
                            .get_mut(&file)
                            .filter(|d| d.accepted > at)
                        {
                            d.held = d.held.max(at + 1);
                        }
                        Reply::ok(request)
                    }
                    Err(e) => commit_failed(&metrics, request, e),
                };
                reply_to.send(&reply);
            }),
        })?;
        d.accepted = at + 1;
        if d.complete() {
            release(&self.uploads, caller);
        }
        Ok(())
    }

    /// `download`: one chunk of a complete document, for any member of the
    /// session (13.5.16).
    pub(crate) async fn download(
        &self,
        caller: &Fingerprint,
        session: SessionId,
        file: FileId,
        index: u64,
    ) -> Result<Vec<u8>> {
        let state = self.session(&session).await?;
        let index = {
            let s = lock(&state);
            s.open()?;
            if s.role_of(caller).is_none() {
                return Err(forbidden("not a member of this session"));
            }
            let d = s
                .documents
                .get(&file)
                .filter(|d| d.held >= d.layout.chunks())
                .ok_or_else(|| Refusal::new(ErrorCode::NotFound, "no such document"))?;
            u32::try_from(index)
                .ok()
                .filter(|i| *i < d.layout.chunks())
                .ok_or_else(|| Refusal::new(ErrorCode::NotFound, "no such chunk"))?
        };
        // A complete document's chunks are only ever deleted with the
        // session, which is then closed.
        match self.store.get(&Key::Chunk(session, file, index)).await? {
            Some(chunk) => Ok(chunk),
            None => {
                lock(&state).open()?;
                Err(StoreError::Corrupt("a chunk of a complete document".into()).into())
            }
        }
    }

    /// A connection went away: stop following and waiting, tell the others.
    pub(crate) fn disconnect(&self, conn: ConnId, sessions: &HashSet<SessionId>) {
        for id in sessions {
            let Some(state) = lock(&self.sessions).get(id).cloned() else {
                continue;
            };
            let mut s = lock(&state);
            let was_following = s.followers.remove(&conn).is_some();
            s.waiting.remove(&conn);
            if was_following {
                s.broadcast_presence(*id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_out_of_reach_is_unavailable_and_a_store_fault_internal() {
        let code = |e: StoreError| Refusal::from(e).0;
        let unreachable = StoreError::Unavailable("connection refused".into());
        assert_eq!(code(unreachable), ErrorCode::Unavailable);
        let read = StoreError::Postgres("connection reset".into());
        assert_eq!(code(read), ErrorCode::Unavailable);
        assert_eq!(code(StoreError::Overloaded), ErrorCode::Overloaded);
        assert_eq!(
            code(StoreError::Corrupt("a log key".into())),
            ErrorCode::Internal
        );
    }
}
