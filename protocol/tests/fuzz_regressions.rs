//! Regression tests for what fuzzing found (`fuzz/`; `docs/security.md`,
//! "Fuzzing"). Each test fails without its fix.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use caucus_protocol::codec::{Canonical, Writer};
use caucus_protocol::roster::Roster;

/// The process's peak virtual memory size (`VmPeak`), in bytes, on Linux.
fn peak_virtual_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmPeak:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Finding 1 (every canonical target, first in `agreement`): a list's count
/// sized the memory reserved for it. The decoder refused a count larger
/// than the remaining input, but reserved `count * size_of::<item>()` bytes
/// before decoding the first item, so every byte of input could reserve the
/// memory of a whole item: about 200 bytes for a roster member. Here a
/// 32 MiB roster body claiming one member per remaining byte made the
/// decoder reserve about 6.7 GB, and fail only then, at the first member.
/// Now the reservation is capped at the size of the remaining input.
///
/// Measured with the peak virtual memory size, which a reservation raises
/// whether or not its pages are touched; where that cannot be read (not
/// Linux), there is nothing to measure and the test passes.
#[test]
fn a_list_count_reserves_no_more_memory_than_the_input_holds() {
    const INPUT: usize = 32 << 20;
    let mut w = Writer::new();
    w.fixed(&[0x11; 16]) // session
        .u64(1) // version
        .fixed(&[0; 32]) // previous
        .u8(1) // phase: preparation
        .u32(0) // no parties
        .u32(INPUT as u32); // members: one per byte that follows
    let mut body = w.into_bytes();
    body.resize(body.len() + INPUT, 0);

    let Some(before) = peak_virtual_memory() else {
        return;
    };
    // The first member's identity does not verify: the decoder fails there.
    assert!(Roster::from_bytes(&body).is_err());
    let grew = peak_virtual_memory().unwrap().saturating_sub(before);
    assert!(
        grew < 1 << 30,
        "decoding {} bytes raised peak virtual memory by {grew} bytes",
        body.len()
    );
}
