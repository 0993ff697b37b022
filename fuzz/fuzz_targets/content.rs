//! `Content`: the plaintext inside every envelope, decoded after decryption
//! from whatever a member sealed. Canonical: a decoded content re-encodes to
//! exactly the input (nested agreements included).
#![no_main]

use caucus_fuzz::decode_canonical;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, ContentType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(content) = decode_canonical::<Content>(data) else {
        return;
    };
    // The tag is the content type.
    assert_eq!(
        ContentType::from_bytes(&data[..1]).ok(),
        Some(content.content_type())
    );
    if let Content::AgreementFinal(copy) = &content {
        let _ = copy.verify();
    }
});
