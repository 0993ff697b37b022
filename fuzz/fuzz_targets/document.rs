//! Documents (protocol.md 9.6): a `DocumentRef` decoded from whatever a
//! member sealed, and chunks as a relay returns them. A decoded reference is
//! canonical and valid (its name never leaves a folder); opening any bytes
//! as any chunk of a document of any size returns an error or the one
//! plaintext that seals back to exactly those bytes; a sealed chunk with any
//! byte changed never opens.
#![no_main]

use caucus_fuzz::decode_canonical;
use caucus_protocol::codec::Canonical;
use caucus_protocol::document::{CHUNK_SIZE, DocumentKey, DocumentRef, Opener, Sealer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(document) = decode_canonical::<DocumentRef>(data) {
        assert!(document.validate().is_ok(), "a decoded reference is valid");
        assert!(!document.name.contains(['/', '\\']));
        let _ = document.summary();
    }
    let [s0, s1, s2, i0, flip_at0, flip_at1, flip, rest @ ..] = data else {
        return;
    };
    let key = DocumentKey::from_bytes(&[0x42; 32]).expect("32 bytes");
    // Up to three chunks and a bit, so that every shape of last chunk occurs.
    let size = u64::from(u32::from_be_bytes([0, *s0, *s1, *s2])) % (3 * CHUNK_SIZE as u64 + 4097);
    let index = u32::from(*i0 % 5);
    let opener = Opener::new(&key, size).expect("a size below the limit");
    let sealer = Sealer::new(&key, size).expect("a size below the limit");
    if let Ok(plain) = opener.open_chunk(index, rest) {
        assert_eq!(sealer.seal_chunk(index, &plain).expect("reseal"), rest);
    }
    let Some(len) = sealer.layout().plain_len(index) else {
        assert!(opener.open_chunk(index, rest).is_err());
        return;
    };
    let file: Vec<u8> = (0..sealer.file_range(index).len())
        .map(|i| i as u8)
        .collect();
    let mut chunk = sealer.seal_chunk(index, &file).expect("seal");
    assert_eq!(
        &opener.open_chunk(index, &chunk).expect("open")[..],
        &file[..]
    );
    let at = usize::from(u16::from_be_bytes([*flip_at0, *flip_at1])) % (len + 16);
    chunk[at] ^= flip.max(&1);
    assert!(
        opener.open_chunk(index, &chunk).is_err(),
        "a changed byte at {at}"
    );
});
