//! The native client catching up (issue 17): a member's device that missed
//! `--client-catchup` envelopes reconnects, and every one of them is
//! verified, opened and saved in its state directory before it counts as
//! caught up. All of it is the real thing: the Caucus relay as a child
//! process, a mediation made by the native client library
//! (`caucus-client`), whose mediator posts the envelopes (each acknowledged
//! after the relay's durable commit), and the member's client opening its
//! on-disk state directory again.
//!
//! The time runs from opening the state directory (reading the saved
//! session back) through connecting, authenticating and catching up to the
//! moment the client says it is caught up, which it does only once what it
//! opened is saved: what `Client::open` waits for.
//!
//! Then what a person waits for when they type `caucus send` on a device
//! [`SEND_BEHIND`] messages behind, as the CLI does it with no daemon
//! running: open the state directory, catch up, seal and post one message,
//! wait for the relay's acknowledgement.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use caucus_bench::Shape;
use caucus_client::{Admission, Client, ClientError, Event, StateDir};
use caucus_protocol::content::Sharing;
use caucus_protocol::ids::{RoomId, SessionId};
use futures_util::StreamExt;
use serde::Serialize;

use crate::procs::{Bins, Kind, Relay};

/// How far behind the member is when it sends (as issue 17 quotes it).
pub(crate) const SEND_BEHIND: usize = 5_000;

/// Posts the mediator keeps in flight while filling the room.
const POSTING_WINDOW: usize = 256;

/// The target: envelopes caught up per second, end to end.
pub(crate) const TARGET_PER_SEC: f64 = 20_000.0;

/// The figures.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CatchUp {
    /// Envelopes missed and caught up each time.
    pub(crate) envelopes: usize,
    /// Envelopes per second, end to end, one figure a run.
    pub(crate) per_sec: Vec<f64>,
    /// Seconds from opening the state directory to caught up and saved.
    pub(crate) seconds: Vec<f64>,
    /// CPU microseconds per envelope the client's process spent meanwhile
    /// (all its threads): a figure that a busy machine changes less.
    pub(crate) cpu_us_per_envelope: Vec<f64>,
    /// Seconds a `caucus send` took, [`SEND_BEHIND`] messages behind.
    pub(crate) send_seconds: Vec<f64>,
}

/// A state directory, once the client that held it has let it go.
async fn reopen(path: &Path) -> anyhow::Result<StateDir> {
    for _ in 0..500 {
        match StateDir::open(path) {
            Ok(dir) => return Ok(dir),
            Err(ClientError::Busy) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow!("{} is still held", path.display()))
}

/// A copy of the directory at `from` (not held by any client) at `to`.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A copy of the member's state directory as it was left, at `name`.
async fn copy_of(member: &Path, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    // Held while it is copied, so that no client writes to it meanwhile.
    let held = reopen(member).await?;
    let to = dir.join(name);
    copy_dir(member, &to)?;
    drop(held);
    Ok(to)
}

/// The mediator posts `n` texts of 200 to 4,096 characters into `room`,
/// each acknowledged after the relay's durable commit.
async fn post(
    mediator: &Client,
    session: &SessionId,
    room: &RoomId,
    n: usize,
    shape: &mut Shape,
) -> anyhow::Result<()> {
    let texts: Vec<String> = (0..n)
        .map(|_| {
            let len = shape.between(200, 4096) as usize;
            crate::world::body(shape, len)
        })
        .collect();
    let mut sent = futures_util::stream::iter(texts.iter())
        .map(|text| mediator.send(session, room, text, Sharing::MayShare))
        .buffer_unordered(POSTING_WINDOW);
    while let Some(result) = sent.next().await {
        result?;
    }
    Ok(())
}

/// Messages in the member's history.
fn messages(client: &Client, session: &SessionId) -> usize {
    client
        .history(session)
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count()
}

/// Measure with `n` envelopes missed, `repeat` times.
pub(crate) async fn measure(
    bins: &Bins,
    scratch: &Path,
    n: usize,
    repeat: usize,
    seed: u64,
) -> anyhow::Result<CatchUp> {
    let dir = scratch.join("client-catchup");
    std::fs::create_dir_all(&dir)?;
    let relay = Relay::start(Kind::Caucus, bins, &dir).await?;
    let result = run(&relay.url, &dir, n, repeat, seed).await;
    relay.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(url: &str, dir: &Path, n: usize, repeat: usize, seed: u64) -> anyhow::Result<CatchUp> {
    let mut shape = Shape::new(seed);
    let state = |name: &str| -> anyhow::Result<StateDir> {
        let path = dir.join(name);
        std::fs::create_dir_all(&path)?;
        Ok(StateDir::open(path)?)
    };
    let mediator = Client::open(state("mediator")?, url).await?;
    let (session, parties) = mediator
        .create_session("The mediator", &["Claimant"])
        .await?;
    let party = parties.first().context("no party")?;
    let link = mediator
        .invite(
            &session,
            party,
            "Ms C",
            caucus_client::now() + 3600,
            Admission::Automatic,
        )
        .await?;
    let member_dir = dir.join("member");
    std::fs::create_dir_all(&member_dir)?;
    let (member, _) = Client::join(StateDir::open(&member_dir)?, &link).await?;
    loop {
        match member.next_event().await {
            Some(Event::Joined { .. }) => break,
            Some(_) => {}
            None => return Err(anyhow!("the member's client stopped")),
        }
    }
    member.sync(&session).await?;
    let before = messages(&member, &session);
    drop(member);

    let room = mediator.party_room(&session, party)?;
    eprintln!("client catch-up: the mediator posts {n} messages…");
    let started = Instant::now();
    post(&mediator, &session, &room, n, &mut shape).await?;
    eprintln!("  posted in {:.1} s", started.elapsed().as_secs_f64());

    let mut out = CatchUp {
        envelopes: n,
        ..CatchUp::default()
    };
    let mut caught_up = None;
    for run in 0..repeat.max(1) {
        let copy = copy_of(&member_dir, dir, &format!("member-{run}")).await?;
        let cpu = crate::procs::cpu_seconds("self");
        let started = Instant::now();
        let client = Client::open(StateDir::open(&copy)?, url).await?;
        let took = started.elapsed().as_secs_f64();
        let cpu_us = (crate::procs::cpu_seconds("self") - cpu) * 1e6 / n as f64;
        let held = messages(&client, &session) - before;
        anyhow::ensure!(held == n, "the member caught up {held} of {n} messages");
        drop(client);
        let rate = n as f64 / took;
        eprintln!(
            "client catch-up: {n} envelopes in {took:.2} s, {rate:.0} per second, {cpu_us:.0} µs of CPU each"
        );
        out.seconds.push(took);
        out.cpu_us_per_envelope.push(cpu_us);
        out.per_sec.push(rate);
        if let Some(old) = caught_up.replace(copy) {
            let _ = std::fs::remove_dir_all(old);
        }
    }

    // A member SEND_BEHIND messages behind types `caucus send`.
    let caught_up = caught_up.context("no catch-up ran")?;
    post(&mediator, &session, &room, SEND_BEHIND, &mut shape).await?;
    for run in 0..repeat.max(1) {
        let copy = copy_of(&caught_up, dir, &format!("send-{run}")).await?;
        let started = Instant::now();
        let client = Client::open(StateDir::open(&copy)?, url).await?;
        let mine = client.my_room(&session)?;
        client
            .send(&session, &mine, "Agreed.", Sharing::MediatorOnly)
            .await?;
        let took = started.elapsed().as_secs_f64();
        drop(client);
        eprintln!("caucus send, {SEND_BEHIND} messages behind: {took:.2} s");
        out.send_seconds.push(took);
        let _ = std::fs::remove_dir_all(copy);
    }
    Ok(out)
}

/// The figures, for the report.
pub(crate) fn print(c: &CatchUp) {
    let median = caucus_bench::stats::median;
    println!(
        "Native client catch-up after reconnect: {} envelopes opened, verified and saved in {:.2} s, {:.0} envelopes/s, {:.0} µs of the client's CPU each; `caucus send` {SEND_BEHIND} messages behind: {:.2} s",
        c.envelopes,
        median(&c.seconds),
        median(&c.per_sec),
        median(&c.cpu_us_per_envelope),
        median(&c.send_seconds),
    );
}

/// The target's row of the table.
pub(crate) fn target_row(c: &CatchUp) -> String {
    let rate = caucus_bench::stats::median(&c.per_sec);
    format!(
        "| native client catch-up >= 20,000 envelopes/s | {rate:.0}/s ({} envelopes) | {} |",
        c.envelopes,
        crate::status(rate >= TARGET_PER_SEC)
    )
}
