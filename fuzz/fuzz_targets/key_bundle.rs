//! `SignedKeyBundle` (and the `KeyBundle` inside it): decoded by the relay
//! from `publish_keys` and by clients from `key_bundle` events. Canonical:
//! the signed bundle and its body each re-encode to exactly the bytes
//! received. Verifying the signature against the fixed mediator returns a
//! result and never panics. (Opening a bundle in a view is fuzzed by
//! `session_transcript`.)
#![no_main]

use caucus_fuzz::{MEDIATOR, PEOPLE, decode_canonical, keys};
use caucus_protocol::codec::Canonical;
use caucus_protocol::keys::SignedKeyBundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(signed) = decode_canonical::<SignedKeyBundle>(data) else {
        return;
    };
    let bundle = signed.unverified();
    assert_eq!(bundle.to_bytes(), signed.body());
    for e in &bundle.entries {
        assert_eq!(bundle.hpke_info(&e.recipient).len(), 123);
    }
    let _ = signed.verify_by(keys(MEDIATOR).public());
    for who in 0..PEOPLE {
        let _ = signed.verify_by(keys(who).public());
    }
});
