//! A mediation service's day (issue 17): many sessions at once against one
//! durable Caucus relay, at the pace people write, not at saturation.
//!
//! For each number of sessions (`--day-sessions`), a fresh relay and
//! sessions shaped as `world.rs` shapes them, each session built from its
//! own seed. Every person posts every 20–60 s (a fresh uniform gap each
//! time) from a pool of envelopes sealed ahead of time, just enough for the
//! run; the mediator's pool cycles through a reply, a forward into the joint
//! room and its share receipt, and the mediator reports its location
//! whenever it moves to another room. A share of the connections (`--day-churn`)
//! leaves once during the run, stays away 1–10 s, and comes back: connect,
//! authenticate, subscribe from its cursors. The relay sends `presence` to
//! every follower at each of these, as protocol.md 13.7 says.
//!
//! One process cannot hold more sockets than its descriptor limit, so the
//! connections are spread over load-generator processes (this binary again,
//! `--day-worker SPEC`), each building, joining and driving its own sessions,
//! each on its own loopback source addresses (127.0.0.2, …; every address
//! has its own ephemeral ports). The parent times the phases (`go`,
//! `measure`, `stop` on each worker's stdin) and samples the relay. The
//! relay, one process, must hold every connection: a number of sessions
//! that needs more descriptors than it may open is reported as blocked.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use caucus_bench::stats::{Latency, percentile};
use caucus_bench::{Shape, key_in_event, key_of, number_in};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{RoomId, SessionId};
use caucus_protocol::wire::{Request, RequestBody, RoomCursor};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::drive::{self, Ws};
use crate::procs::{self, Bins, Kind, Relay};
use crate::world::{self, Session};

/// Milliseconds between one person's posts: a fresh uniform draw each time.
const GAP_MS: (u64, u64) = (20_000, 60_000);
/// Milliseconds a person who leaves stays away.
const AWAY_MS: (u64, u64) = (1_000, 10_000);
/// Connections per loopback source address (each has 28,232 ephemeral
/// ports here; the rest is room for reconnections).
const PER_SOURCE: usize = 5_000;
/// Descriptors a relay or worker keeps for other than connections (its
/// store's files, listener, epoll, standard streams).
const RESERVE: u64 = 128;
/// The targets: at this many sessions, p99 and relay RSS at most these.
const TARGET_SESSIONS: usize = 10_000;
const TARGET_P99_MS: f64 = 50.0;
const TARGET_RSS_MIB: f64 = 1024.0;
/// The p99 a number of sessions must hold to count as held.
const HOLD_P99_MS: f64 = 100.0;
/// Request ids of the mediator's `location` requests start here (a post's
/// id is its slot).
const LOCATION_IDS: u64 = 1 << 40;

/// The service's day, as flags.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Flags {
    /// A mediation service's day: these numbers of concurrent sessions, each
    /// number against a fresh durable relay (`--day-sessions` alone skips
    /// it).
    #[arg(
        id = "day-sessions", long = "day-sessions",
        value_delimiter = ',',
        num_args = 0..,
        default_values_t = [1000, 2500, 5000, 10000]
    )]
    pub(crate) sessions: Vec<usize>,
    /// Seconds of warm-up of a day run.
    #[arg(id = "day-warmup", long = "day-warmup", default_value_t = 10.0)]
    warmup: f64,
    /// Seconds measured per day run.
    #[arg(id = "day-measure", long = "day-measure", default_value_t = 60.0)]
    measure: f64,
    /// The share of connections that leave once during a day run and come
    /// back 1–10 s later.
    #[arg(id = "day-churn", long = "day-churn", default_value_t = 0.05)]
    churn: f64,
    /// Most connections per load-generator process (fewer per process
    /// keep the load generator's own delays out of the latency).
    #[arg(
        id = "day-worker-connections",
        long = "day-worker-connections",
        default_value_t = 5_000
    )]
    worker_connections: usize,
    /// Further day runs halving the gap between the most sessions that held
    /// p99 <= 100 ms and the fewest that did not.
    #[arg(id = "day-bisect", long = "day-bisect", default_value_t = 1)]
    bisect: usize,
    /// Measure only the service's day.
    #[arg(id = "only-day", long = "only-day", conflicts_with = "only_cluster")]
    pub(crate) only: bool,
    /// Internal: run as one of the day's load-generator processes.
    #[arg(id = "day-worker", long = "day-worker", hide = true)]
    pub(crate) worker: Option<String>,
}

/// One day run: what the relay and the people did over the measured interval.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Run {
    pub(crate) sessions: usize,
    pub(crate) connections: usize,
    /// Load-generator processes.
    pub(crate) workers: usize,
    /// Posts sent per second (offered: at the people's pace).
    pub(crate) posts_per_sec: f64,
    /// Envelopes delivered live per second.
    pub(crate) delivered_per_sec: f64,
    /// Envelopes delivered in the catch-up of a returning connection, per second.
    pub(crate) caught_up_per_sec: f64,
    /// `presence` events received per second.
    pub(crate) presence_per_sec: f64,
    /// The mediators' `location` requests per second.
    pub(crate) locations_per_sec: f64,
    /// Send (when due) to each live delivery, µs.
    pub(crate) latency: Latency,
    /// Connections that came back during the measured interval.
    pub(crate) reconnects: u64,
    /// Their connect + authenticate + subscribe + catch-up, ms: p50, p99.
    pub(crate) reconnect_ms: (f64, f64),
    /// Relay CPU, in cores.
    pub(crate) relay_cpu: f64,
    /// Relay CPU per post, µs (all of its work over the interval).
    pub(crate) relay_us_per_post: f64,
    /// Relay `VmRSS` at the end of the interval, MiB.
    pub(crate) relay_rss_mib: f64,
    /// Relay `VmHWM`, MiB.
    pub(crate) relay_peak_mib: f64,
    /// Descriptors the relay had open at the end.
    pub(crate) relay_descriptors: usize,
    /// All load-generator processes' CPU, in cores.
    pub(crate) loadgen_cpu: f64,
    /// Error replies, connections the relay closed, frames not matched.
    pub(crate) errors: u64,
    pub(crate) dropped: u64,
    pub(crate) unknown: u64,
    /// Seconds to build the sessions and seal the pools (workers in
    /// parallel), then to connect and subscribe everyone.
    pub(crate) build_secs: f64,
    pub(crate) join_secs: f64,
}

/// A number of sessions the relay could not hold.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Blocked {
    pub(crate) sessions: usize,
    pub(crate) connections: usize,
    /// The relay's descriptor limit (soft, hard).
    pub(crate) limit: (u64, u64),
}

/// The service's day.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) runs: Vec<Run>,
    pub(crate) blocked: Vec<Blocked>,
    /// (sessions, p99 ms, p50 ms) of each run, by sessions.
    pub(crate) points: Vec<(usize, f64, f64)>,
    pub(crate) warmup_secs: f64,
    pub(crate) measure_secs: f64,
    pub(crate) churn: f64,
    /// Seconds the whole measurement took.
    pub(crate) wall_secs: f64,
}

/// The seed of session number `n` of the day.
fn seed_of(seed: u64, n: usize) -> u64 {
    Shape::new(seed ^ (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

/// Loopback source address number `n` (127.0.0.2 onwards).
fn source(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(127, 0, 0, 2)).wrapping_add(n as u32),
    ))
}

/// Run the day for every number of `flags.sessions` that fits, the most
/// that fits when some do not, and `--day-bisect` more.
pub(crate) async fn measure(
    flags: &Flags,
    bins: &Bins,
    scratch: &Path,
    seed: u64,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report {
        warmup_secs: flags.warmup,
        measure_secs: flags.measure,
        churn: flags.churn,
        ..Report::default()
    };
    // The relay inherits this process's limit.
    let limit = procs::open_files_limits("self");
    let budget = usize::try_from(limit.0.saturating_sub(RESERVE))
        .unwrap_or(usize::MAX)
        .min(procs::MAX_CONNECTIONS);
    let connections = |n: usize| (0..n).map(|i| world::members_of(seed_of(seed, i))).sum();
    let mut list = flags.sessions.clone();
    list.sort_unstable();
    list.dedup();
    for &n in &list {
        let c: usize = connections(n);
        if c > budget {
            eprintln!(
                "day {n} sessions: BLOCKED, {c} connections, descriptor limit {}",
                limit.0
            );
            report.blocked.push(Blocked {
                sessions: n,
                connections: c,
                limit,
            });
        } else {
            report
                .runs
                .push(day(flags, bins, scratch, seed, n, c).await?);
        }
    }
    if !report.blocked.is_empty() {
        // The most sessions that fit, in hundreds.
        let mut fit = 0;
        while connections(fit + 100) <= budget {
            fit += 100;
        }
        if fit > 0 && report.runs.iter().all(|r| r.sessions < fit) {
            report
                .runs
                .push(day(flags, bins, scratch, seed, fit, connections(fit)).await?);
        }
    }
    for _ in 0..flags.bisect {
        let held = |r: &&Run| r.latency.p99 <= HOLD_P99_MS * 1000.0;
        let lo = report.runs.iter().filter(held).map(|r| r.sessions).max();
        let hi = report
            .runs
            .iter()
            .filter(|r| !held(r))
            .map(|r| r.sessions)
            .filter(|n| lo.is_none_or(|lo| *n > lo))
            .min();
        let (Some(lo), Some(hi)) = (lo, hi) else {
            break;
        };
        let mid = (lo + hi) / 2 / 100 * 100;
        if mid <= lo {
            break;
        }
        report
            .runs
            .push(day(flags, bins, scratch, seed, mid, connections(mid)).await?);
    }
    report.runs.sort_by_key(|r| r.sessions);
    report.points = report
        .runs
        .iter()
        .map(|r| (r.sessions, r.latency.p99 / 1000.0, r.latency.p50 / 1000.0))
        .collect();
    report.wall_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One day of `n` sessions (`connections` in all) on a fresh relay.
async fn day(
    flags: &Flags,
    bins: &Bins,
    scratch: &Path,
    seed: u64,
    n: usize,
    connections: usize,
) -> anyhow::Result<Run> {
    eprintln!("day {n} sessions, {connections} connections: building, joining…");
    let run_secs = flags.warmup + flags.measure;
    let pool = (run_secs * 1000.0 / GAP_MS.0 as f64).ceil() as usize + 2;
    let own = procs::open_files_limits("self").0.saturating_sub(RESERVE);
    let cap = flags
        .worker_connections
        .min(usize::try_from(own).unwrap_or(usize::MAX))
        .max(1);
    // Sessions in turn to each worker, up to `cap` connections each.
    let mut specs: Vec<Spec> = Vec::new();
    let (mut held, mut sources) = (0, 0);
    for i in 0..n {
        let m = world::members_of(seed_of(seed, i));
        match specs.last_mut() {
            Some(s) if held + m <= cap => {
                s.count += 1;
                held += m;
            }
            _ => {
                if let Some(s) = specs.last_mut() {
                    s.sources = (sources..sources + held.div_ceil(PER_SOURCE)).collect();
                    sources += s.sources.len();
                }
                specs.push(Spec {
                    url: String::new(),
                    seed,
                    first: i,
                    count: 1,
                    pool,
                    sources: Vec::new(),
                    churn: flags.churn,
                    run_secs,
                });
                held = m;
            }
        }
    }
    if let Some(s) = specs.last_mut() {
        s.sources = (sources..sources + held.div_ceil(PER_SOURCE)).collect();
    }
    let relay = Relay::start(Kind::Caucus, bins, scratch).await?;
    let result = async {
        let mut workers = Vec::new();
        for mut spec in specs {
            spec.url = relay.url.clone();
            workers.push(Worker::start(&spec).await?);
        }
        let mut run = Run {
            sessions: n,
            connections,
            workers: workers.len(),
            ..Run::default()
        };
        for w in &mut workers {
            let ready: Ready = w.hear().await?;
            run.build_secs = run.build_secs.max(ready.build_secs);
            run.join_secs = run.join_secs.max(ready.join_secs);
        }
        eprintln!(
            "  built in {:.1} s, joined in {:.1} s; {} s warm-up, {} s measured",
            run.build_secs, run.join_secs, flags.warmup, flags.measure
        );
        let pid = relay.pid().to_string();
        Worker::tell_all(&mut workers, "go").await?;
        tokio::time::sleep(Duration::from_secs_f64(flags.warmup)).await;
        Worker::tell_all(&mut workers, "measure").await?;
        let (cpu0, t0) = (procs::cpu_seconds(&pid), Instant::now());
        tokio::time::sleep(Duration::from_secs_f64(flags.measure)).await;
        let (cpu1, elapsed) = (procs::cpu_seconds(&pid), t0.elapsed().as_secs_f64());
        run.relay_rss_mib = procs::mem_kib(&pid, "VmRSS:") / 1024.0;
        run.relay_peak_mib = procs::mem_kib(&pid, "VmHWM:") / 1024.0;
        run.relay_descriptors = procs::open_files(&pid);
        Worker::tell_all(&mut workers, "stop").await?;
        let mut all = Tally::default();
        for w in &mut workers {
            all.add(w.hear().await?);
        }
        for w in workers {
            w.end().await;
        }
        let per_sec = |x: u64| x as f64 / elapsed;
        run.posts_per_sec = per_sec(all.posted);
        run.delivered_per_sec = per_sec(all.delivered);
        run.caught_up_per_sec = per_sec(all.caught_up);
        run.presence_per_sec = per_sec(all.presence);
        run.locations_per_sec = per_sec(all.locations);
        run.latency = Latency::of(&mut all.samples);
        run.reconnects = all.reconnect_ms.len() as u64;
        all.reconnect_ms.sort_unstable();
        run.reconnect_ms = (
            percentile(&all.reconnect_ms, 0.5),
            percentile(&all.reconnect_ms, 0.99),
        );
        run.relay_cpu = (cpu1 - cpu0) / elapsed;
        run.relay_us_per_post = 1e6 * (cpu1 - cpu0) / (all.posted.max(1) as f64);
        run.loadgen_cpu = all.cpu_seconds / elapsed;
        run.errors = all.errors;
        run.dropped = all.dropped;
        run.unknown = all.unknown;
        eprintln!(
            "  {:.0} posts/s, {:.0} delivered/s, p50 {:.1} ms p99 {:.1} ms, relay CPU {:.2}, RSS {:.0} MiB",
            run.posts_per_sec,
            run.delivered_per_sec,
            run.latency.p50 / 1000.0,
            run.latency.p99 / 1000.0,
            run.relay_cpu,
            run.relay_rss_mib
        );
        for w in relay.warnings(3) {
            eprintln!("  relay: {w}");
        }
        Ok(run)
    }
    .await;
    relay.stop().await;
    result
}

/// What a worker is given (as JSON on its command line).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Spec {
    url: String,
    seed: u64,
    /// Its sessions: numbers `first..first + count` of the day.
    first: usize,
    count: usize,
    /// Envelopes per person.
    pool: usize,
    /// Its loopback source addresses (numbers for [`source`]), each for
    /// [`PER_SOURCE`] connections.
    sources: Vec<usize>,
    churn: f64,
    /// Warm-up and measured interval: when people may leave.
    run_secs: f64,
}

/// A worker has built and joined everything.
#[derive(Debug, Serialize, Deserialize)]
struct Ready {
    connections: usize,
    build_secs: f64,
    join_secs: f64,
}

/// What a worker counted over the measured interval.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally {
    posted: u64,
    locations: u64,
    delivered: u64,
    caught_up: u64,
    presence: u64,
    errors: u64,
    dropped: u64,
    unknown: u64,
    cpu_seconds: f64,
    /// Latency of each live delivery, µs.
    samples: Vec<u32>,
    /// Each return's time, ms.
    reconnect_ms: Vec<u32>,
}

impl Tally {
    fn add(&mut self, mut other: Self) {
        self.posted += other.posted;
        self.locations += other.locations;
        self.delivered += other.delivered;
        self.caught_up += other.caught_up;
        self.presence += other.presence;
        self.errors += other.errors;
        self.dropped += other.dropped;
        self.unknown += other.unknown;
        self.cpu_seconds += other.cpu_seconds;
        self.samples.append(&mut other.samples);
        self.reconnect_ms.append(&mut other.reconnect_ms);
    }
}

/// A load-generator process, as the parent holds it.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    async fn start(spec: &Spec) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--day-worker")
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a day worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// The worker's next report.
    async fn hear<T: DeserializeOwned>(&mut self) -> anyhow::Result<T> {
        let line = self
            .stdout
            .next_line()
            .await?
            .context("a day worker ended early (its error is above)")?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Say `word` to every worker, as nearly at once as may be.
    async fn tell_all(workers: &mut [Self], word: &str) -> anyhow::Result<()> {
        for w in workers {
            w.stdin.write_all(format!("{word}\n").as_bytes()).await?;
            w.stdin.flush().await?;
        }
        Ok(())
    }

    async fn end(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// One envelope of a person's pool.
struct Post {
    slot: u32,
    room: RoomId,
    frame: Message,
}

/// One person: a device, its pool, its cursors.
struct Person {
    session: SessionId,
    keys: Arc<DeviceKeys>,
    mediator: bool,
    posts: Vec<Post>,
    /// Each of its rooms: base64url id, id, the highest index it holds.
    cursors: Vec<(Arc<str>, RoomId, u64)>,
    source: IpAddr,
    /// Its own schedule's seed.
    seed: u64,
}

impl Person {
    /// Note index `index` of `room` as held.
    fn holds(&mut self, room: &str, index: Option<u64>) {
        if let (Some(c), Some(index)) = (
            self.cursors.iter_mut().find(|c| c.0.as_ref() == room),
            index,
        ) {
            c.2 = c.2.max(index);
        }
    }
}

/// An envelope sent (slot) and when.
struct Slot {
    sent_ns: AtomicU64,
    room: Arc<str>,
}

/// A worker's shared bookkeeping.
struct Table {
    start: Instant,
    slots: Vec<Slot>,
    keys: HashMap<Box<str>, u32>,
    measuring: AtomicBool,
    url: String,
    churn: f64,
    run: Duration,
    posted: AtomicU64,
    locations: AtomicU64,
    delivered: AtomicU64,
    caught_up: AtomicU64,
    presence: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
    unknown: AtomicU64,
    /// The first error reply has been shown.
    said: AtomicBool,
}

impl Table {
    fn count(&self, counter: &AtomicU64) {
        if self.measuring.load(Ordering::Relaxed) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The slot of an envelope event's envelope.
    fn slot_of(&self, frame: &str) -> Option<&Slot> {
        let slot = key_in_event(frame).and_then(|k| self.keys.get(k));
        if slot.is_none() {
            self.unknown.fetch_add(1, Ordering::Relaxed);
        }
        slot.and_then(|s| self.slots.get(*s as usize))
    }

    /// A frame heard live by `person`.
    fn heard(&self, person: &mut Person, frame: &str, samples: &mut Vec<u32>) {
        if frame.starts_with("{\"type\":\"envelope\"") {
            let Some(slot) = self.slot_of(frame) else {
                return;
            };
            person.holds(&slot.room, number_in(frame, "index"));
            if self.measuring.load(Ordering::Relaxed) {
                let now = self.start.elapsed().as_nanos() as u64;
                let sent = slot.sent_ns.load(Ordering::Acquire);
                self.delivered.fetch_add(1, Ordering::Relaxed);
                samples.push((now.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32);
            }
        } else if frame.starts_with("{\"type\":\"ok\"") {
            // A post's reply: its index in the room.
            let slot = number_in(frame, "id")
                .filter(|id| *id < LOCATION_IDS)
                .and_then(|id| self.slots.get(id as usize));
            if let Some(slot) = slot {
                person.holds(&slot.room, number_in(frame, "index"));
            }
        } else if frame.starts_with("{\"type\":\"presence\"") {
            self.count(&self.presence);
        } else if frame.starts_with("{\"type\":\"error\"") {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if !self.said.swap(true, Ordering::Relaxed) {
                eprintln!("day worker: the relay refused: {frame}");
            }
        }
    }
}

/// Run as a worker: build, join, say ready, then follow the parent's words.
pub(crate) async fn worker(spec: &str) -> anyhow::Result<()> {
    let spec: Spec = serde_json::from_str(spec)?;
    let started = Instant::now();
    let mut sessions = build(&spec).await?;
    let build_secs = started.elapsed().as_secs_f64();
    let mut slots = Vec::new();
    let mut keys = HashMap::new();
    let mut people = Vec::new();
    let mut n = 0;
    for session in &mut sessions {
        let mut party = Vec::new();
        for (m, member) in session.members.iter_mut().enumerate() {
            let mut posts = Vec::new();
            for message in std::mem::take(&mut member.pool) {
                let slot = u32::try_from(slots.len())?;
                if let Some(k) = key_of(&message.envelope) {
                    keys.insert(k.into(), slot);
                }
                posts.push(Post {
                    slot,
                    room: RoomId::parse(&message.room).context("room id")?,
                    frame: drive::post_frame(
                        Kind::Caucus,
                        slot,
                        &message.room,
                        &message.envelope,
                        "",
                    ),
                });
                slots.push(Slot {
                    sent_ns: AtomicU64::new(0),
                    room: message.room,
                });
            }
            let cursors = member
                .rooms
                .iter()
                .map(|r| Ok((r.clone(), RoomId::parse(r).context("room id")?, 0)))
                .collect::<anyhow::Result<_>>()?;
            party.push(Person {
                session: session.id,
                keys: member.keys.clone(),
                mediator: m == 0,
                posts,
                cursors,
                source: source(
                    *spec
                        .sources
                        .get(n / PER_SOURCE)
                        .context("too few source addresses")?,
                ),
                seed: seed_of(spec.seed ^ 0x5EED, spec.first * 16 + n),
            });
            n += 1;
        }
        people.push(party);
    }
    let connections = people.iter().map(Vec::len).sum();
    let table = Arc::new(Table {
        start: Instant::now(),
        slots,
        keys,
        measuring: AtomicBool::new(false),
        url: spec.url.clone(),
        churn: spec.churn,
        run: Duration::from_secs_f64(spec.run_secs),
        posted: AtomicU64::new(0),
        locations: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        caught_up: AtomicU64::new(0),
        presence: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        unknown: AtomicU64::new(0),
        said: AtomicBool::new(false),
    });
    let started = Instant::now();
    let joined = join(&spec.url, Arc::new(sessions), people).await?;
    say(&Ready {
        connections,
        build_secs,
        join_secs: started.elapsed().as_secs_f64(),
    })?;

    let mut words = BufReader::new(tokio::io::stdin()).lines();
    expect(&mut words, "go").await?;
    let go = tokio::time::Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = joined
        .into_iter()
        .map(|(person, ws)| tokio::spawn(live(person, ws, table.clone(), go, stop_rx.clone())))
        .collect();
    expect(&mut words, "measure").await?;
    table.measuring.store(true, Ordering::Relaxed);
    let cpu0 = procs::cpu_seconds("self");
    expect(&mut words, "stop").await?;
    table.measuring.store(false, Ordering::Relaxed);
    let cpu_seconds = procs::cpu_seconds("self") - cpu0;
    let _ = stop_tx.send(true);
    let mut tally = Tally {
        cpu_seconds,
        ..Tally::default()
    };
    for t in tasks {
        if let Ok((mut samples, mut returns)) = t.await {
            tally.samples.append(&mut samples);
            tally.reconnect_ms.append(&mut returns);
        }
    }
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    tally.posted = load(&table.posted);
    tally.locations = load(&table.locations);
    tally.delivered = load(&table.delivered);
    tally.caught_up = load(&table.caught_up);
    tally.presence = load(&table.presence);
    tally.errors = load(&table.errors);
    tally.dropped = load(&table.dropped);
    tally.unknown = load(&table.unknown);
    say(&tally)
}

/// One line of JSON to the parent.
fn say(what: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(what)?)?;
    out.flush()?;
    Ok(())
}

async fn expect(words: &mut Lines<BufReader<tokio::io::Stdin>>, word: &str) -> anyhow::Result<()> {
    match words.next_line().await? {
        Some(w) if w.trim() == word => Ok(()),
        other => bail!("day worker: expected {word:?}, got {other:?}"),
    }
}

/// The worker's sessions, built on every core.
async fn build(spec: &Spec) -> anyhow::Result<Vec<Session>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = spec.count.div_ceil(threads).max(1);
    let mut parts = Vec::new();
    for start in (spec.first..spec.first + spec.count).step_by(per) {
        let end = (start + per).min(spec.first + spec.count);
        let (seed, pool) = (spec.seed, spec.pool);
        parts.push(tokio::task::spawn_blocking(move || {
            (start..end)
                .map(|i| world::session_of(seed_of(seed, i), pool))
                .collect::<anyhow::Result<Vec<_>>>()
        }));
    }
    let mut sessions = Vec::with_capacity(spec.count);
    for p in parts {
        sessions.extend(p.await??);
    }
    Ok(sessions)
}

/// Connect, authenticate and subscribe every person, sessions a few at a
/// time, the mediator of each first (it creates the session).
async fn join(
    url: &str,
    sessions: Arc<Vec<Session>>,
    people: Vec<Vec<Person>>,
) -> anyhow::Result<Vec<(Person, Ws)>> {
    let gate = Arc::new(Semaphore::new(48));
    let mut tasks = Vec::new();
    for (s, party) in people.into_iter().enumerate() {
        let (gate, sessions, url) = (gate.clone(), sessions.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let session = sessions.get(s).context("session")?;
            let mut joined = Vec::new();
            for person in party {
                let ws = drive::connect_from(&url, true, Some(person.source)).await?;
                let mut ws = drive::caucus_auth(ws, &url, &person.keys).await?;
                if person.mediator {
                    drive::caucus_create(&mut ws, session).await?;
                }
                drive::caucus_resume(&mut ws, 100, session.id, (0, Vec::new()), |_| {}).await?;
                joined.push((person, ws));
            }
            Ok::<_, anyhow::Error>(joined)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One person's day: post when due, hear everything, maybe leave once and
/// come back. Returns the latency samples and the return times.
async fn live(
    mut person: Person,
    mut ws: Ws,
    table: Arc<Table>,
    go: tokio::time::Instant,
    mut stop: watch::Receiver<bool>,
) -> (Vec<u32>, Vec<u32>) {
    let mut shape = Shape::new(person.seed);
    let gap = shape.between(GAP_MS.0, GAP_MS.1);
    let mut due = go + ms(shape.between(0, gap));
    let leaves = shape.between(0, 999_999) as f64 / 1e6 < table.churn;
    let mut leave = leaves.then(|| go + table.run.mul_f64(shape.between(0, 999) as f64 / 1e3));
    let mut next = 0;
    let mut location = None;
    let (mut samples, mut returns) = (Vec::new(), Vec::new());
    loop {
        let leaving = async move {
            match leave {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let back = tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    table.heard(&mut person, t.as_str(), &mut samples);
                    continue;
                }
                Some(Ok(_)) => continue,
                // The relay closed it: come back at once.
                _ => {
                    table.dropped.fetch_add(1, Ordering::Relaxed);
                    Duration::ZERO
                }
            },
            () = tokio::time::sleep_until(due) => {
                let sent = post(&mut person, &mut ws, &table, (next, &mut location), due).await;
                next += 1;
                due += ms(shape.between(GAP_MS.0, GAP_MS.1));
                if sent.is_ok() {
                    continue;
                }
                table.dropped.fetch_add(1, Ordering::Relaxed);
                Duration::ZERO
            },
            () = leaving => {
                leave = None;
                let _ = ws.close(None).await;
                ms(shape.between(AWAY_MS.0, AWAY_MS.1))
            },
        };
        // Away: posts due meanwhile are not written.
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(back) => {}
        }
        let now = tokio::time::Instant::now();
        while due < now {
            due += ms(shape.between(GAP_MS.0, GAP_MS.1));
        }
        let started = Instant::now();
        match come_back(&mut person, &table).await {
            Ok(again) => {
                ws = again;
                if table.measuring.load(Ordering::Relaxed) {
                    returns.push(started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32);
                }
            }
            Err(e) => {
                table.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("day worker: a person could not come back: {e:#}");
                break;
            }
        }
    }
    (samples, returns)
}

/// Post the person's envelope number `next`, due at `due` (its send time:
/// lateness here counts against latency); the mediator first says where it
/// is when that is another room.
async fn post(
    person: &mut Person,
    ws: &mut Ws,
    table: &Table,
    (next, location): (usize, &mut Option<RoomId>),
    due: tokio::time::Instant,
) -> anyhow::Result<()> {
    let Some(p) = person.posts.get(next) else {
        return Ok(()); // the pool is spent (it is sized so that it is not)
    };
    if person.mediator && *location != Some(p.room) {
        *location = Some(p.room);
        let text = serde_json::to_string(&Request {
            v: caucus_protocol::envelope::PROTOCOL_VERSION,
            id: LOCATION_IDS + next as u64,
            body: RequestBody::Location {
                session: person.session,
                room: Some(p.room),
                disclose: false,
            },
        })?;
        ws.send(Message::text(text)).await?;
        table.count(&table.locations);
    }
    if let Some(slot) = table.slots.get(p.slot as usize) {
        let at = due.into_std().saturating_duration_since(table.start);
        slot.sent_ns.store(at.as_nanos() as u64, Ordering::Release);
    }
    table.count(&table.posted);
    ws.send(p.frame.clone()).await?;
    Ok(())
}

/// Connect again, authenticate, subscribe from the cursors; the catch-up's
/// envelopes are counted, not timed.
async fn come_back(person: &mut Person, table: &Table) -> anyhow::Result<Ws> {
    let ws = drive::connect_from(&table.url, true, Some(person.source)).await?;
    let mut ws = drive::caucus_auth(ws, &table.url, &person.keys).await?;
    let cursors = person
        .cursors
        .iter()
        .map(|(_, room, after)| RoomCursor {
            room: *room,
            after: *after,
        })
        .collect();
    let session = person.session;
    drive::caucus_resume(&mut ws, 1, session, (1, cursors), |frame| {
        if let Some(slot) = table.slot_of(frame) {
            person.holds(&slot.room, number_in(frame, "index"));
            table.count(&table.caught_up);
        }
    })
    .await?;
    Ok(ws)
}

/// The day's table and its targets.
pub(crate) fn print(r: &Report) {
    println!();
    println!(
        "A mediation service's day: one durable relay; each person posts every 20-60 s; {:.0} % of connections leave and come back; {:.0} s warm-up, {:.0} s measured ({:.0} s in all)",
        r.churn * 100.0,
        r.warmup_secs,
        r.measure_secs,
        r.wall_secs
    );
    println!(
        "| sessions | connections | posts/s | delivered env/s | p50 ms | p99 ms | p99.9 ms | relay CPU (cores) | relay µs/post | relay RSS MiB (end / peak) | load-gen CPU | returns (p50 / p99 ms) | presence/s | pre-seal s | join s |"
    );
    println!(
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut rows: Vec<(usize, String)> = r
        .runs
        .iter()
        .map(|x| {
            (
                x.sessions,
                format!(
                    "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} | {:.0} / {:.0} | {:.2} | {} ({:.0} / {:.0}) | {:.0} | {:.1} | {:.1} |{}",
                    x.sessions,
                    x.connections,
                    x.posts_per_sec,
                    x.delivered_per_sec,
                    x.latency.p50 / 1000.0,
                    x.latency.p99 / 1000.0,
                    x.latency.p999 / 1000.0,
                    x.relay_cpu,
                    x.relay_us_per_post,
                    x.relay_rss_mib,
                    x.relay_peak_mib,
                    x.loadgen_cpu,
                    x.reconnects,
                    x.reconnect_ms.0,
                    x.reconnect_ms.1,
                    x.presence_per_sec,
                    x.build_secs,
                    x.join_secs,
                    if x.errors + x.dropped + x.unknown > 0 {
                        format!(
                            " {} errors, {} dropped, {} unmatched",
                            x.errors, x.dropped, x.unknown
                        )
                    } else {
                        String::new()
                    }
                ),
            )
        })
        .collect();
    rows.extend(r.blocked.iter().map(|b| {
        (
            b.sessions,
            format!("| {} | {} | {} |", b.sessions, b.connections, blocked(b)),
        )
    }));
    rows.sort_by_key(|(n, _)| *n);
    for (_, row) in rows {
        println!("{row}");
    }

    println!();
    println!("| target | figure | status |");
    println!("| --- | --- | --- |");
    let at = r.runs.iter().find(|x| x.sessions == TARGET_SESSIONS);
    let target =
        format!("{TARGET_SESSIONS} sessions: p99 <= {TARGET_P99_MS:.0} ms and relay RSS <= 1 GiB");
    match (at, r.blocked.iter().find(|b| b.sessions == TARGET_SESSIONS)) {
        (Some(x), _) => {
            let p99 = x.latency.p99 / 1000.0;
            let rss = x.relay_peak_mib;
            println!(
                "| {target} | p99 {p99:.1} ms, RSS {rss:.0} MiB | {} |",
                crate::status(p99 <= TARGET_P99_MS && rss <= TARGET_RSS_MIB)
            );
        }
        (None, Some(b)) => {
            println!("| {target} | {} | BLOCKED |", blocked(b));
            if let Some(x) = r.runs.last() {
                println!(
                    "| (info) relay peak RSS at {TARGET_SESSIONS} sessions, per connection as at {} | {:.0} MiB | — |",
                    x.sessions,
                    x.relay_peak_mib * b.connections as f64 / x.connections.max(1) as f64
                );
            }
        }
        (None, None) => println!("| {target} | not measured (add it to --day-sessions) | — |"),
    }
    let held = r
        .runs
        .iter()
        .filter(|x| x.latency.p99 <= HOLD_P99_MS * 1000.0)
        .map(|x| x.sessions)
        .max();
    let fewest_blocked = r.blocked.iter().map(|b| b.sessions).min();
    let figure = match (held, fewest_blocked) {
        (Some(n), Some(b)) => {
            format!("{n} (of those measured; {b} and more BLOCKED by descriptors)")
        }
        (Some(n), None) => format!("{n} (of those measured)"),
        (None, _) => "none of those measured".to_owned(),
    };
    println!(
        "| largest number of sessions holding p99 <= {HOLD_P99_MS:.0} ms (>= {TARGET_SESSIONS}) | {figure} | {} |",
        crate::status(held.is_some_and(|n| n >= TARGET_SESSIONS))
    );
}

fn blocked(b: &Blocked) -> String {
    format!(
        "BLOCKED: needs {} descriptors ({:.1} per session), the relay may open {} (hard limit {})",
        b.connections,
        b.connections as f64 / b.sessions.max(1) as f64,
        b.limit.0,
        b.limit.1
    )
}
