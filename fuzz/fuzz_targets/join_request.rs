//! `JoinRequest`: decoded by the relay from `join` and its store, and by the
//! mediator's client from `join_request` events. Canonical: a decoded
//! request re-encodes to exactly the input. Checking it against the fixed
//! invite returns a result and never panics, and succeeds only for a request
//! naming that invite's session and id.
#![no_main]

use caucus_fuzz::{INVITE_EXPIRES, decode_canonical, invite};
use caucus_protocol::invite::JoinRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(request) = decode_canonical::<JoinRequest>(data) else {
        return;
    };
    let invite = invite();
    for now in [0, INVITE_EXPIRES, INVITE_EXPIRES + 1] {
        if invite.verify_join(&request, now).is_ok() {
            assert_eq!(request.session, invite.session);
            assert_eq!(request.invite, invite.id);
            assert!(now <= invite.expires_at);
        }
    }
});
