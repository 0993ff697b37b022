//! `Envelope` (and its `Header`): what the relay decodes from every `post`
//! and clients from every `envelope` event. Canonical: a decoded envelope
//! re-encodes to exactly the input; its header is 131 bytes whose own
//! encoding is the bytes received. Verifying it against each fixed identity
//! returns a result and never panics, and succeeds only for its sender.
#![no_main]

use caucus_fuzz::{PEOPLE, decode_canonical, keys};
use caucus_protocol::codec::Canonical;
use caucus_protocol::envelope::{Envelope, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_canonical::<Header>(data);
    let Some(envelope) = decode_canonical::<Envelope>(data) else {
        return;
    };
    let header = envelope.header().to_bytes();
    assert_eq!(header.len(), 131);
    assert_eq!(&data[..4], &131u32.to_be_bytes());
    assert_eq!(
        &data[4..135],
        &header[..],
        "the header re-encodes differently"
    );
    let _ = envelope.hash();
    for who in 0..PEOPLE {
        let identity = keys(who).public();
        if envelope.verify(identity).is_ok() {
            assert_eq!(
                envelope.header().sender,
                identity.fingerprint(),
                "an envelope verified under a key that is not its sender's"
            );
        }
    }
});
