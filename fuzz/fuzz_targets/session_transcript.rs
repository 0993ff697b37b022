//! The verification paths of a client's `SessionView`: a transcript of
//! rosters, key bundles and envelopes, as a (malicious) relay might deliver
//! them, is fed to one fixed member's view of the fixed session, pinned to
//! the fixed mediator. Every check returns a result and never panics. An
//! envelope that opens has the header it was sent with, content of that
//! type, and a gap (if any) below its sequence number; opening it again is
//! a replay. At the end, the view saves and loads back to the same state.
#![no_main]

use caucus_fuzz::{ItemKind, MEDIATOR, SESSION, Transcript, keys};
use caucus_protocol::Error;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::ContentClass;
use caucus_protocol::envelope::Envelope;
use caucus_protocol::keys::SignedKeyBundle;
use caucus_protocol::roster::SignedRoster;
use caucus_protocol::session::SessionView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(transcript) = Transcript::from_bytes(data) else {
        return;
    };
    let me = keys(transcript.me);
    let mut view = SessionView::new(SESSION, keys(MEDIATOR).fingerprint());
    for (kind, bytes) in &transcript.items {
        match kind {
            ItemKind::Roster => {
                if let Ok(roster) = SignedRoster::from_bytes(bytes) {
                    let _ = view.accept_roster(roster);
                }
            }
            ItemKind::KeyBundle => {
                if let Ok(bundle) = SignedKeyBundle::from_bytes(bytes) {
                    let _ = view.open_key_bundle(me, &bundle);
                }
            }
            ItemKind::Envelope => {
                let Ok(envelope) = Envelope::from_bytes(bytes) else {
                    continue;
                };
                let Ok(opened) = view.open(&envelope) else {
                    continue;
                };
                let header = envelope.header();
                assert_eq!(&opened.header, header);
                assert_eq!(opened.hash, envelope.hash());
                // A party's class never opens as a mediator's content.
                if header.class == ContentClass::Party {
                    assert!(!opened.content.content_type().mediator_only());
                }
                if let Some(gap) = &opened.gap {
                    assert!(gap.start() <= gap.end() && *gap.end() < header.seq);
                }
                assert_eq!(
                    view.open(&envelope).err(),
                    Some(Error::Replay { seq: header.seq }),
                    "an envelope opened twice"
                );
            }
        }
    }
    let saved = view.to_state_bytes();
    let again = SessionView::from_state_bytes(&saved).expect("a saved view loads");
    assert_eq!(
        *again.to_state_bytes(),
        *saved,
        "a saved view loads differently"
    );
});
