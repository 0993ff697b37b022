//! `Invite::from_link`: the invite link a joiner pastes, from whoever sent
//! it. The link is canonical (strict unpadded base64url of a canonical
//! invite, after trimming whitespace), so a link that parses is exactly
//! `to_link()` of what it parsed to. The invite's relay URL is `ws://` or
//! `wss://` and at most 2048 bytes. The raw canonical `Invite` round-trips
//! too. A link's own join request verifies until, and not after, expiry.
#![no_main]

use caucus_fuzz::{CLAIMANT, decode_canonical, keys};
use caucus_protocol::Error;
use caucus_protocol::invite::Invite;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_canonical::<Invite>(data);
    let Ok(link) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(invite) = caucus_fuzz::bounded_alloc(data.len(), || Invite::from_link(link)) else {
        return;
    };
    assert_eq!(invite.to_link(), link.trim(), "the link is not canonical");
    assert!(invite.relay.starts_with("ws://") || invite.relay.starts_with("wss://"));
    assert!(invite.relay.len() <= 2048);
    let request = invite.join_request(keys(CLAIMANT).public());
    assert_eq!(invite.verify_join(&request, invite.expires_at), Ok(()));
    if let Some(later) = invite.expires_at.checked_add(1) {
        assert_eq!(
            invite.verify_join(&request, later),
            Err(Error::InviteExpired)
        );
    }
});
