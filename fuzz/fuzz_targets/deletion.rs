//! `SignedDeletionStatement`: decoded by the mediator's client from an `ok`
//! reply to `close_session` or `deletion_statement`, and from a kept copy.
//! Canonical: the signed statement and its body each re-encode to exactly
//! the bytes received. `verify` and `verify_for` return a result and never
//! panic; `verify_for` succeeds only for the relay the statement names.
#![no_main]

use caucus_fuzz::{MEDIATOR, RELAY, SESSION, decode_canonical, keys};
use caucus_protocol::codec::Canonical;
use caucus_protocol::deletion::SignedDeletionStatement;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(signed) = decode_canonical::<SignedDeletionStatement>(data) else {
        return;
    };
    let statement = signed.unverified();
    assert_eq!(statement.to_bytes(), signed.body());
    let _ = signed.verify();
    let relay = keys(RELAY).fingerprint();
    if signed
        .verify_for(&SESSION, &keys(MEDIATOR).fingerprint(), &relay)
        .is_ok()
    {
        assert_eq!(statement.relay.fingerprint(), relay);
    }
});
