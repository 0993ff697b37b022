//! `SignedAgreement` and `Agreement`: decoded from `AgreementDraft` and
//! `AgreementFinal` content and from the file `caucus agreement verify`
//! reads. Canonical: each re-encodes to exactly the input. `verify` (which
//! needs nothing but the copy) returns a result and never panics, and names
//! one signer per signatory plus the mediator when it succeeds; the Markdown
//! export never panics.
#![no_main]

use caucus_fuzz::decode_canonical;
use caucus_protocol::agreement::{Agreement, SignedAgreement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(agreement) = decode_canonical::<Agreement>(data) {
        let _ = agreement.hash();
    }
    let Some(signed) = decode_canonical::<SignedAgreement>(data) else {
        return;
    };
    if let Ok(verified) = signed.verify() {
        assert_eq!(signed.signatures.len(), signed.agreement.signatories.len());
        assert_eq!(
            verified.signers.len(),
            signed.agreement.signatories.len() + 1
        );
        assert_eq!(verified.agreement, signed.agreement.hash());
    }
    let _ = signed.to_markdown();
});
