//! The clients' cryptography on its own, on one core: seal + sign by the
//! sender and verify + open by a recipient of a 1 KiB text, as
//! `SessionView::seal` and `SessionView::open` do it, and the parts.

use std::time::Instant;

use anyhow::anyhow;
use caucus_bench::Shape;
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, Sharing};
use caucus_protocol::crypto::label;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::SessionId;
use caucus_protocol::roster::Role;
use caucus_protocol::session::SessionView;

/// Operations per second, one thread.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Crypto {
    /// Seal + sign + verify + open of a 1 KiB message.
    pub(crate) roundtrip_per_sec: f64,
    /// Seal + sign alone.
    pub(crate) seal_per_sec: f64,
    /// Verify + open alone.
    pub(crate) open_per_sec: f64,
    /// One Ed25519 signature over the envelope body.
    pub(crate) sign_per_sec: f64,
    /// One Ed25519 verification of it.
    pub(crate) verify_per_sec: f64,
}

/// Measure with `n` messages.
pub(crate) fn measure(n: usize) -> anyhow::Result<Crypto> {
    let p = |e: caucus_protocol::Error| anyhow!("protocol: {e}");
    let session = SessionId::random().map_err(p)?;
    let mediator = DeviceKeys::generate().map_err(p)?;
    let member = DeviceKeys::generate().map_err(p)?;
    let mut builder = RosterBuilder::new(session, &mediator, "Mediator").map_err(p)?;
    let party = builder.add_party("Party").map_err(p)?;
    builder
        .add_member(member.public(), Role::PartyMember, Some(party), "Member")
        .map_err(p)?;
    let (roster, keys) = builder
        .sign(
            &mediator,
            &SessionView::new(session, mediator.fingerprint()),
        )
        .map_err(p)?;
    let mut med = SessionView::new(session, mediator.fingerprint());
    med.accept_roster(roster.clone()).map_err(p)?;
    let bundles = keys
        .iter()
        .map(|k| med.seal_key_bundle(&mediator, k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(p)?;
    let mut mem = SessionView::new(session, mediator.fingerprint());
    mem.accept_roster(roster.clone()).map_err(p)?;
    for b in &bundles {
        mem.open_key_bundle(&member, b).map_err(p)?;
    }
    let room = roster
        .unverified()
        .private_room(&party)
        .map(|r| r.id)
        .ok_or_else(|| anyhow!("no private room"))?;
    let words = Content::Text {
        sharing: Sharing::MayShare,
        body: crate::world::body(&mut Shape::new(3), 1024),
    };
    let rate = |count: usize, started: Instant| count as f64 / started.elapsed().as_secs_f64();

    // Round trips: the member seals, the mediator opens (in chain order).
    let started = Instant::now();
    for _ in 0..n {
        let e = mem.seal(&member, &room, &words).map_err(p)?;
        med.open(&e).map_err(p)?;
    }
    let roundtrip_per_sec = rate(n, started);

    let started = Instant::now();
    let mut sealed = Vec::with_capacity(n);
    for _ in 0..n {
        sealed.push(mem.seal(&member, &room, &words).map_err(p)?);
    }
    let seal_per_sec = rate(n, started);
    let started = Instant::now();
    for e in &sealed {
        med.open(e).map_err(p)?;
    }
    let open_per_sec = rate(n, started);

    let body = sealed.first().map(|e| e.to_bytes()).unwrap_or_default();
    let started = Instant::now();
    let mut sig = member.sign(label::ENVELOPE, &body);
    for _ in 1..n {
        sig = member.sign(label::ENVELOPE, &body);
    }
    let sign_per_sec = rate(n, started);
    let started = Instant::now();
    for _ in 0..n {
        member
            .public()
            .verify(label::ENVELOPE, &body, &sig, "bench")
            .map_err(p)?;
    }
    let verify_per_sec = rate(n, started);
    Ok(Crypto {
        roundtrip_per_sec,
        seal_per_sec,
        open_per_sec,
        sign_per_sec,
        verify_per_sec,
    })
}
