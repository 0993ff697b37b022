//! # caucus-bench
//!
//! The pieces of the Caucus benchmark that are pure logic, kept here so that
//! they have unit tests: percentiles, the deterministic generator of session
//! shapes and message sizes, the NATS text protocol parser and the
//! JetStream requests, the bare relay's framing, how a delivered frame is
//! matched to the envelope that was sent, and the SVG charts. The load generator (`caucus-bench`) and the bare relay
//! (`bare-relay`) are the binaries; `bench/run.sh` runs the whole benchmark
//! and `docs/performance.md` explains it.

pub mod bare;
pub mod charts;
pub mod jetstream;
pub mod nats;
pub mod stats;

/// A small deterministic generator (xorshift64*) for session shapes, message
/// sizes and the traffic mix, so that every run and every relay sees the same
/// pattern. Not for anything secret.
#[derive(Debug, Clone)]
pub struct Shape(u64);

impl Shape {
    /// A generator from `seed` (any value; 0 is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// How the load generator recognizes a delivered envelope: the last 16
/// characters of its base64url text, which lie in its Ed25519 signature
/// (unique to each sealed envelope).
pub const KEY_LEN: usize = 16;

/// The matching key of an envelope given as its base64url text.
pub fn key_of(b64: &str) -> Option<&str> {
    b64.len().checked_sub(KEY_LEN).and_then(|at| b64.get(at..))
}

/// The matching key of the envelope inside a Caucus `envelope` event frame
/// (`{"type":"envelope",…,"envelope":"<base64url>"}`), found without parsing
/// the whole JSON; `None` for any other frame.
pub fn key_in_event(frame: &str) -> Option<&str> {
    const FIELD: &str = "\"envelope\":\"";
    let start = frame.find(FIELD)? + FIELD.len();
    let rest = frame.get(start..)?;
    let end = rest.find('"')?;
    key_of(rest.get(..end)?)
}

/// The unsigned number of field `name` in a relay frame (`"index":7` in
/// `{"type":"ok","v":1,"id":3,"index":7}` or an `envelope` event), found
/// without parsing the whole JSON; `None` if it has none.
pub fn number_in(frame: &str, name: &str) -> Option<u64> {
    let at = frame.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = frame.get(at..)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..end)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_key_is_the_tail_of_the_envelope_text() {
        let b64 = "AAAAgwABEREREREREREREREREREREUREREREREREREREREREREQ";
        assert_eq!(key_of(b64), Some("EREREREREREREREQ"));
        assert_eq!(key_of("short"), None);
        let frame = format!(r#"{{"type":"envelope","v":1,"index":7,"envelope":"{b64}"}}"#);
        assert_eq!(key_in_event(&frame), key_of(b64));
        assert_eq!(
            key_in_event(r#"{"type":"ok","v":1,"id":3,"index":9}"#),
            None
        );
    }

    #[test]
    fn numbers_are_read_from_frames() {
        let ok = r#"{"type":"ok","v":1,"id":3,"index":79}"#;
        assert_eq!(number_in(ok, "id"), Some(3));
        assert_eq!(number_in(ok, "index"), Some(79));
        let event = r#"{"type":"envelope","v":1,"index":12,"envelope":"AAAA"}"#;
        assert_eq!(number_in(event, "index"), Some(12));
        assert_eq!(number_in(r#"{"type":"ok","v":1,"id":3}"#, "index"), None);
        assert_eq!(number_in(r#"{"index":"x"}"#, "index"), None);
    }

    #[test]
    fn shapes_repeat_for_a_seed_and_stay_in_range() {
        let mut a = Shape::new(7);
        let mut b = Shape::new(7);
        for _ in 0..1000 {
            let x = a.between(200, 4096);
            assert!((200..=4096).contains(&x));
            assert_eq!(x, b.between(200, 4096));
        }
        assert_eq!(Shape::new(0).between(3, 3), 3);
    }
}
