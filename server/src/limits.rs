//! What one client may take of the relay: a request rate for each
//! connection, each device (all its connections together) and each address,
//! and for each address a number of connections and of connections still
//! in their handshake (TLS, the HTTP request head, the websocket before a
//! successful `auth`).
//!
//! An address is an IPv4 address, or the /64 network of an IPv6 one (what
//! one subscriber is usually given). The relay admits a socket only if its
//! address is under both counts ([`Limits::admit`]); the [`Ticket`] it gets
//! holds its place until the connection ends, and takes a token from each
//! bucket that applies for every text frame ([`Ticket::take`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use caucus_protocol::identity::Fingerprint;
use tokio::time::Instant;

use crate::config::Config;

/// A token bucket: `rate` tokens per second, up to `burst`, starting full.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Take one token, if there is one.
    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Take `amount` tokens, into debt if there are not enough: how long
    /// until the debt is paid off (zero if there was none).
    fn spend(&mut self, amount: f64, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= amount;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// Whether it has refilled completely, so that forgetting it gives
    /// nothing away.
    fn full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// The part of an address that one client controls: an IPv4 address, or
/// the first 64 bits of an IPv6 one. An IPv4 address mapped into IPv6 is
/// the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Origin(u128);

impl From<IpAddr> for Origin {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => Self((u128::from(v6) >> 64) | (1 << 64)),
        }
    }
}

/// One address's connections, handshakes and bucket.
struct Peer {
    connections: usize,
    handshakes: usize,
    bucket: Bucket,
}

/// One device's connections and buckets: its requests, and its upload
/// budget in bytes.
struct Device {
    connections: usize,
    bucket: Bucket,
    upload: Bucket,
}

/// Entries with no connection are kept until their bucket is full again
/// (reconnecting buys no fresh burst), and swept when a map has grown to
/// twice its size after the last sweep (at least this many entries).
const SWEEP_AT_LEAST: usize = 1024;

/// A map of entries that live while they have connections or an unfilled
/// bucket.
struct Table<K, V> {
    entries: HashMap<K, V>,
    sweep_at: usize,
}

impl<K: std::hash::Hash + Eq, V> Table<K, V> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
            sweep_at: SWEEP_AT_LEAST,
        }
    }

    /// Drop the entries `idle` says are of no more use, once the table has
    /// grown enough since the last sweep.
    fn sweep(&mut self, mut idle: impl FnMut(&mut V) -> bool) {
        if self.entries.len() >= self.sweep_at {
            self.entries.retain(|_, v| !idle(v));
            self.sweep_at = (self.entries.len() * 2).max(SWEEP_AT_LEAST);
        }
    }
}

/// Why [`Limits::admit`] refused a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its address has `max_connections_per_ip` connections.
    Connections,
    /// Its address has `max_handshakes_per_ip` connections in handshake.
    Handshakes,
}

/// The relay's per-address and per-device limits.
pub(crate) struct Limits {
    rate: (u32, u32),
    ip_rate: (u32, u32),
    upload_rate: u32,
    max_connections: usize,
    max_handshakes: usize,
    peers: Mutex<Table<Origin, Peer>>,
    devices: Mutex<Table<Fingerprint, Device>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Limits {
    /// The limits of `config`.
    pub(crate) fn new(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            rate: (config.rate_per_sec, config.rate_burst),
            ip_rate: (config.ip_rate_per_sec, config.ip_rate_burst),
            upload_rate: config.upload_bytes_per_sec,
            max_connections: config.max_connections_per_ip,
            max_handshakes: config.max_handshakes_per_ip,
            peers: Mutex::new(Table::new()),
            devices: Mutex::new(Table::new()),
        })
    }

    /// Admit a new socket from `ip`: counted as a connection and a
    /// handshake of its address until its ticket says otherwise or drops.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let origin = Origin::from(ip);
        let now = Instant::now();
        let mut peers = lock(&self.peers);
        peers.sweep(|p| p.connections == 0 && p.bucket.full(now));
        let peer = peers.entries.entry(origin).or_insert_with(|| Peer {
            connections: 0,
            handshakes: 0,
            bucket: Bucket::new(self.ip_rate.0, self.ip_rate.1),
        });
        if peer.connections >= self.max_connections {
            return Err(Refused::Connections);
        }
        if peer.handshakes >= self.max_handshakes {
            return Err(Refused::Handshakes);
        }
        peer.connections += 1;
        peer.handshakes += 1;
        Ok(Ticket {
            limits: self.clone(),
            origin,
            handshaking: true,
            device: None,
            own: Bucket::new(self.rate.0, self.rate.1),
        })
    }
}

/// One admitted connection's place in its address's counts, and its
/// buckets. Dropping it gives the place back.
pub(crate) struct Ticket {
    limits: Arc<Limits>,
    origin: Origin,
    handshaking: bool,
    device: Option<Fingerprint>,
    own: Bucket,
}

impl Ticket {
    /// Take a token for one text frame, before anything of it is parsed:
    /// from the connection's bucket, then its device's (once
    /// authenticated), then its address's. The first that is empty refuses
    /// the frame; the tokens already taken stay taken.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        if !self.own.take(now) {
            return false;
        }
        if let Some(device) = &self.device {
            let mut devices = lock(&self.limits.devices);
            let taken = devices
                .entries
                .get_mut(device)
                .is_none_or(|d| d.bucket.take(now));
            if !taken {
                return false;
            }
        }
        lock(&self.limits.peers)
            .entries
            .get_mut(&self.origin)
            .is_none_or(|p| p.bucket.take(now))
    }

    /// Take `bytes` of a chunk from the device's upload budget
    /// (`upload_bytes_per_sec`, holding one second's worth): how long the
    /// connection must wait before the chunk is accepted. Uploads faster
    /// than the budget are slowed down, never refused; the device's
    /// connections share it, each waiting its turn.
    pub(crate) fn upload_delay(&self, bytes: usize) -> Duration {
        let Some(device) = &self.device else {
            return Duration::ZERO;
        };
        #[allow(clippy::cast_precision_loss)] // a chunk: at most 65552 bytes
        let bytes = bytes as f64;
        lock(&self.limits.devices)
            .entries
            .get_mut(device)
            .map_or(Duration::ZERO, |d| d.upload.spend(bytes, Instant::now()))
    }

    /// Whether the connection has authenticated.
    pub(crate) fn authenticated(&self) -> bool {
        self.device.is_some()
    }

    /// The connection authenticated as `device`: it is no longer a
    /// handshake of its address, and its frames now also take from the
    /// device's bucket, which all the device's connections share.
    pub(crate) fn authenticate(&mut self, device: Fingerprint) {
        if self.device.is_some() {
            return;
        }
        self.end_handshake();
        let now = Instant::now();
        let mut devices = lock(&self.limits.devices);
        devices.sweep(|d| d.connections == 0 && d.bucket.full(now) && d.upload.full(now));
        let (rate, burst) = self.limits.rate;
        let upload = self.limits.upload_rate;
        devices
            .entries
            .entry(device)
            .or_insert_with(|| Device {
                connections: 0,
                bucket: Bucket::new(rate, burst),
                // One second's worth at most.
                upload: Bucket::new(upload, upload),
            })
            .connections += 1;
        self.device = Some(device);
    }

    fn end_handshake(&mut self) {
        if std::mem::take(&mut self.handshaking)
            && let Some(peer) = lock(&self.limits.peers).entries.get_mut(&self.origin)
        {
            peer.handshakes = peer.handshakes.saturating_sub(1);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.end_handshake();
        if let Some(peer) = lock(&self.limits.peers).entries.get_mut(&self.origin) {
            peer.connections = peer.connections.saturating_sub(1);
        }
        if let Some(device) = &self.device
            && let Some(d) = lock(&self.limits.devices).entries.get_mut(device)
        {
            d.connections = d.connections.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_64_bit_network_and_a_mapped_ipv4_its_ipv4_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Origin::from(a), Origin::from(b));
        assert_ne!(Origin::from(a), Origin::from(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Origin::from(v4), Origin::from(mapped));
        // An IPv6 network never collides with an IPv4 address.
        let low: IpAddr = "::c000:207".parse().unwrap();
        assert_ne!(Origin::from(low), Origin::from(v4));
    }
}
