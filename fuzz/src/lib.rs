//! What the fuzz targets and the seed generator share: fixed device keys and
//! a fixed session (so that seeds made in one process verify in another), a
//! fixed invite, the transcript format of the `session_transcript` target,
//! and an allocation check.
//!
//! The allocation check: this crate installs a global allocator that records
//! the largest single allocation made while a decoder runs. A decoder of
//! untrusted bytes should allocate in proportion to what it reads, so every
//! canonical target asserts that no single allocation is larger than
//! [`ALLOC_FACTOR`] times the input plus [`ALLOC_SLACK`] bytes. Otherwise a
//! small frame could make the relay or a client reserve memory far out of
//! proportion to it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use caucus_protocol::codec::{Canonical, DecodeError, Reader, Writer};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::SessionId;
use caucus_protocol::invite::Invite;

/// The session every seed and fixture belongs to.
pub const SESSION: SessionId = SessionId([0x11; 16]);

/// The lead mediator's key number (see [`keys`]).
pub const MEDIATOR: u8 = 0;
/// A member of the claimant party.
pub const CLAIMANT: u8 = 1;
/// A second member of the claimant party (removed in the second roster).
pub const SOLICITOR: u8 = 2;
/// The defendant party's member.
pub const DEFENDANT: u8 = 3;
/// A co-mediator (admitted in the second roster).
pub const CO_MEDIATOR: u8 = 4;
/// The relay's own identity (it signs deletion statements).
pub const RELAY: u8 = 5;
/// How many fixed device keys there are.
pub const PEOPLE: u8 = 6;

/// Ed25519 PKCS#8 v2 as ring writes it: this prefix, the 32-byte seed,
/// [`PKCS8_MIDDLE`], the 32-byte public key.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x53, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const PKCS8_MIDDLE: [u8; 5] = [0xa1, 0x23, 0x03, 0x21, 0x00];

fn fixed_keys(n: u8) -> DeviceKeys {
    let seed = [n.wrapping_add(1); 32];
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
        .expect("an Ed25519 seed is any 32 bytes");
    let mut pkcs8 = PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(&seed);
    pkcs8.extend_from_slice(&PKCS8_MIDDLE);
    pkcs8.extend_from_slice(ring::signature::KeyPair::public_key(&pair).as_ref());
    let mut w = Writer::new();
    w.bytes(&pkcs8).fixed(&[n.wrapping_add(0x81); 32]);
    DeviceKeys::from_secret_bytes(&w.into_bytes()).expect("fixed device keys load")
}

static KEYS: LazyLock<Vec<DeviceKeys>> = LazyLock::new(|| (0..PEOPLE).map(fixed_keys).collect());

/// Fixed device keys number `n` (modulo [`PEOPLE`]): the same in every process.
pub fn keys(n: u8) -> &'static DeviceKeys {
    &KEYS[usize::from(n % PEOPLE)]
}

/// The invite the `join_request` target checks requests against, and its
/// seeds answer: fixed id and secret, expiring at [`INVITE_EXPIRES`].
pub fn invite() -> Invite {
    let mut w = Writer::new();
    w.str("wss://relay.example:7300/caucus");
    keys(RELAY).fingerprint().encode(&mut w);
    SESSION.encode(&mut w);
    w.fixed(&[0x55; 16]).fixed(&[0x66; 32]);
    keys(MEDIATOR).fingerprint().encode(&mut w);
    w.u64(INVITE_EXPIRES);
    Invite::from_bytes(&w.into_bytes()).expect("the fixed invite decodes")
}

/// When [`invite`] expires.
pub const INVITE_EXPIRES: u64 = 2_000_000_000;

/// What one item of a transcript is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A `SignedRoster`, given to `accept_roster`.
    Roster,
    /// A `SignedKeyBundle`, given to `open_key_bundle`.
    KeyBundle,
    /// An `Envelope`, given to `open`.
    Envelope,
}

/// The input of the `session_transcript` target: whose view (a key number)
/// and what the relay delivers to it, in order, as encoded objects. Its own
/// encoding is `u8(me) || list(u8(kind) || bytes(object))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// Whose view receives the items.
    pub me: u8,
    /// The items, as the relay would deliver them.
    pub items: Vec<(ItemKind, Vec<u8>)>,
}

impl Canonical for Transcript {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.me);
        w.list(&self.items, |w, (kind, bytes)| {
            w.u8(match kind {
                ItemKind::Roster => 1,
                ItemKind::KeyBundle => 2,
                ItemKind::Envelope => 3,
            })
            .bytes(bytes);
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            me: r.u8()?,
            items: r.list(|r| {
                let kind = match r.u8()? {
                    1 => ItemKind::Roster,
                    2 => ItemKind::KeyBundle,
                    3 => ItemKind::Envelope,
                    tag => return Err(DecodeError::InvalidTag { what: "item", tag }),
                };
                Ok((kind, r.bytes()?.to_vec()))
            })?,
        })
    }
}

/// A single allocation may be at most this many times the input...
pub const ALLOC_FACTOR: usize = 16;
/// ...plus this many bytes.
pub const ALLOC_SLACK: usize = 4096;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Tracking;

// SAFETY: every call is passed to `System` unchanged; the wrapper only
// records sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn note(size: usize) {
    if ARMED.load(Ordering::Relaxed) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Run `f`, which decodes `input_len` bytes, and assert that it made no
/// single allocation larger than `ALLOC_FACTOR * input_len + ALLOC_SLACK`.
pub fn bounded_alloc<R>(input_len: usize, f: impl FnOnce() -> R) -> R {
    LARGEST.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    let out = f();
    ARMED.store(false, Ordering::Relaxed);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= ALLOC_FACTOR * input_len + ALLOC_SLACK,
        "decoding {input_len} bytes made a single allocation of {largest} bytes"
    );
    out
}

/// Decode `data` as one canonical `T` (allocation bounded), and if it
/// decodes, assert the strong property of a canonical encoding: encoding
/// the value again gives back exactly `data`.
pub fn decode_canonical<T: Canonical>(data: &[u8]) -> Option<T> {
    let value = bounded_alloc(data.len(), || T::from_bytes(data)).ok()?;
    assert!(
        value.to_bytes() == data,
        "{} decoded but does not re-encode to the same bytes",
        std::any::type_name::<T>()
    );
    Some(value)
}
