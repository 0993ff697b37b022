//! The signed agreement: signed by every party member, countersigned by the
//! mediator, verified offline; a changed byte or a missing signature fails.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use caucus_protocol::Error;
use caucus_protocol::agreement::{Agreement, Signatory, SignedAgreement};
use caucus_protocol::codec::Canonical;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{PartyId, SessionId};

struct Table {
    mediator: DeviceKeys,
    signers: Vec<DeviceKeys>,
    agreement: Agreement,
}

fn table() -> Table {
    let mediator = DeviceKeys::generate().unwrap();
    let signers: Vec<DeviceKeys> = (0..3).map(|_| DeviceKeys::generate().unwrap()).collect();
    let claimant = PartyId::random().unwrap();
    let trust = PartyId::random().unwrap();
    let who = |k: &DeviceKeys, name: &str, party: PartyId, label: &str| Signatory {
        identity: k.public().clone(),
        name: name.into(),
        party: Some((party, label.into())),
    };
    let agreement = Agreement {
        session: SessionId::random().unwrap(),
        title: "Settlement agreement".into(),
        terms: "1. The trust pays £150,000 within 28 days.\n2. The trust apologises in writing."
            .into(),
        checklist: vec![
            "Will it work in practice?".into(),
            "Who else must see it?".into(),
        ],
        mediator: Signatory {
            identity: mediator.public().clone(),
            name: "Ms Mediator".into(),
            party: None,
        },
        signatories: vec![
            who(&signers[0], "Ms Claimant", claimant, "Claimant"),
            who(&signers[1], "Mr Solicitor", claimant, "Claimant"),
            who(&signers[2], "Dr Defendant", trust, "Defendant trust"),
        ],
        drafted_at: 1_900_000_000,
    };
    Table {
        mediator,
        signers,
        agreement,
    }
}

fn signed(t: &Table) -> SignedAgreement {
    let signatures = t
        .signers
        .iter()
        .map(|k| t.agreement.sign(k).unwrap())
        .collect();
    SignedAgreement::countersign(t.agreement.clone(), signatures, &t.mediator).unwrap()
}

#[test]
fn a_fully_signed_agreement_verifies_offline_and_says_who_signed() {
    let t = table();
    let copy = signed(&t);
    let bytes = copy.to_bytes();
    // Only the bytes: no relay, no roster.
    let report = SignedAgreement::from_bytes(&bytes)
        .unwrap()
        .verify()
        .unwrap();
    assert_eq!(report.title, "Settlement agreement");
    let names: Vec<_> = report.signers.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        ["Ms Claimant", "Mr Solicitor", "Dr Defendant", "Ms Mediator"]
    );
    assert_eq!(report.signers[2].1.as_deref(), Some("Defendant trust"));
    assert_eq!(report.agreement, t.agreement.hash());
}

#[test]
fn changing_any_byte_of_the_signed_copy_is_rejected() {
    let bytes = signed(&table()).to_bytes();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        if let Ok(copy) = SignedAgreement::from_bytes(&bad) {
            assert!(copy.verify().is_err(), "byte {i} accepted");
        }
    }
}

#[test]
fn a_missing_or_wrong_signature_is_rejected() {
    let t = table();
    let mut copy = signed(&t);
    // One signature short: neither countersigned nor verified.
    let partial: Vec<_> = copy.signatures[..2].to_vec();
    assert!(
        SignedAgreement::countersign(t.agreement.clone(), partial.clone(), &t.mediator).is_err()
    );
    let mut short = copy.clone();
    short.signatures = partial;
    assert!(short.verify().is_err());
    // The solicitor signs twice, the claimant not at all.
    copy.signatures[0] = copy.signatures[1];
    assert!(matches!(copy.verify(), Err(Error::BadSignature(_))));
    // Someone not on the agreement cannot sign it, and only its mediator countersigns.
    let stranger = DeviceKeys::generate().unwrap();
    assert!(t.agreement.sign(&stranger).is_err());
    let all = t
        .signers
        .iter()
        .map(|k| t.agreement.sign(k).unwrap())
        .collect();
    assert!(SignedAgreement::countersign(t.agreement.clone(), all, &stranger).is_err());
}

#[test]
fn a_signature_on_one_text_does_not_sign_another() {
    let t = table();
    let signatures: Vec<_> = t
        .signers
        .iter()
        .map(|k| t.agreement.sign(k).unwrap())
        .collect();
    let mut changed = t.agreement.clone();
    changed.terms = changed.terms.replace("150,000", "15,000");
    assert!(SignedAgreement::countersign(changed, signatures, &t.mediator).is_err());
}

#[test]
fn the_readable_copy_carries_the_terms_and_every_signature() {
    let copy = signed(&table());
    let md = copy.to_markdown();
    assert!(md.contains("The trust pays £150,000 within 28 days."));
    assert!(md.contains("Will it work in practice?"));
    for sig in &copy.signatures {
        assert!(md.contains(&caucus_protocol::b64::encode(&sig.0)));
    }
    assert!(md.contains(&caucus_protocol::b64::encode(&copy.to_bytes())));
}
