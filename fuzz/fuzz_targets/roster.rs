//! `SignedRoster` (and the `Roster` inside it): decoded by the relay from
//! `create_session`/`publish_roster` and its store, by clients from
//! `roster` events and saved state. Canonical: the signed roster and its
//! body each re-encode to exactly the bytes received. Then the checks:
//! `validate` and `verify` against the fixed mediator return results and
//! never panic; `verify` succeeds only when the roster's lead mediator is the
//! pinned one; a verified roster goes through `accept_roster`.
#![no_main]

use caucus_fuzz::{CLAIMANT, MEDIATOR, SESSION, decode_canonical, keys};
use caucus_protocol::codec::Canonical;
use caucus_protocol::roster::SignedRoster;
use caucus_protocol::session::SessionView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(signed) = decode_canonical::<SignedRoster>(data) else {
        return;
    };
    assert_eq!(signed.unverified().to_bytes(), signed.body());
    let _ = signed.hash();
    let _ = signed.unverified().validate();
    let pinned = keys(MEDIATOR).fingerprint();
    if let Ok(roster) = signed.verify(&pinned) {
        assert_eq!(roster.mediator().map(|m| m.id()), Some(pinned));
        let mut view = SessionView::new(SESSION, pinned);
        let _ = view.accept_roster(signed.clone());
    }
    let other = keys(CLAIMANT).fingerprint();
    if signed.verify(&other).is_ok() {
        assert_eq!(signed.unverified().mediator().map(|m| m.id()), Some(other));
    }
});
