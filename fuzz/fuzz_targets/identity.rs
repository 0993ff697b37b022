//! `PublicIdentity`: decoded (with its self-signature checked) from `auth`
//! frames, rosters, join requests and agreements. Canonical: a decoded
//! identity re-encodes to exactly the input. Its fingerprint prints and
//! parses back, and its safety code is six groups of five digits.
#![no_main]

use caucus_fuzz::decode_canonical;
use caucus_protocol::identity::{Fingerprint, PublicIdentity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(identity) = decode_canonical::<PublicIdentity>(data) else {
        return;
    };
    let fingerprint = identity.fingerprint();
    assert_eq!(
        Fingerprint::parse(&fingerprint.to_string()),
        Some(fingerprint)
    );
    let code = fingerprint.safety_code();
    assert_eq!(code.len(), 35);
    assert!(
        code.split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
    );
});
