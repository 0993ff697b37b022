//! `SessionView::from_state_bytes`: a client's saved state, read back from
//! disk (the rosters in it are accepted again). The layout is local and not
//! canonical (room keys and chains are re-sorted, duplicates merge), so the
//! property is the weaker one: a state that loads saves to bytes that load
//! again and save to the very same bytes.
#![no_main]

use caucus_fuzz::bounded_alloc;
use caucus_protocol::session::SessionView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(view) = bounded_alloc(data.len(), || SessionView::from_state_bytes(data)) else {
        return;
    };
    let saved = view.to_state_bytes();
    let again = SessionView::from_state_bytes(&saved).expect("a saved state loads");
    assert_eq!(
        *again.to_state_bytes(),
        *saved,
        "load(save(load(x))) saves differently"
    );
});
