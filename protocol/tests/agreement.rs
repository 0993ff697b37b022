//! The signed agreement: signed by every party member, countersigned by the
//! mediator, verified offline; a changed byte or a missing signature fails.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use caucus_protocol::Error;
use caucus_protocol::agreement::{
    Agreement, Attachment, Signatory, SignedAgreement, Verified, verify_export,
};
use caucus_protocol::codec::Canonical;
use caucus_protocol::document::{DocumentKey, DocumentRef, Hasher};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{FileId, PartyId, SessionId};

struct Table {
    mediator: DeviceKeys,
    signers: Vec<DeviceKeys>,
    agreement: Agreement,
}

/// The expert's report, as the mediator's device holds it.
fn report() -> DocumentRef {
    DocumentRef {
        file: FileId([5; 16]),
        key: DocumentKey::generate().unwrap(),
        size: 26,
        hash: Hasher::digest(b"Expert report of Dr Okafor"),
        title: "Expert report of Dr Okafor".into(),
        name: "okafor_report.pdf".into(),
        media_type: "application/pdf".into(),
    }
}

/// `sha256sum` of the report's bytes.
const REPORT_SHA256: &str = "dd07dc9eb809f7a57e16366781f250c92cb551b4c93c0c9a37823c74dbbd6f91";

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
        attachments: vec![Attachment::from(&report())],
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
fn a_changed_attachment_hash_breaks_every_signature() {
    let t = table();
    let copy = signed(&t);
    let mut other = t.agreement.clone();
    other.attachments[0].sha256 = Hasher::digest(b"Expert report of Dr Okafor, revised");
    assert_ne!(other.hash(), t.agreement.hash());
    // Each signature, and so the countersignature, is of the file signed.
    for (k, sig) in t.signers.iter().zip(&copy.signatures) {
        let alone = SignedAgreement::countersign(other.clone(), vec![*sig; 3], &t.mediator);
        assert!(alone.is_err());
        assert_ne!(other.sign(k).unwrap(), *sig);
    }
    let swapped = SignedAgreement {
        agreement: other,
        ..copy.clone()
    };
    assert!(matches!(swapped.verify(), Err(Error::BadSignature(_))));
    // A file removed, or one added: the same.
    let mut removed = copy.clone();
    removed.agreement.attachments.clear();
    assert!(removed.verify().is_err());
    let mut added = copy;
    added
        .agreement
        .attachments
        .push(Attachment::from(&report()));
    assert!(added.verify().is_err());
}

#[test]
fn an_attachment_names_a_file_as_a_document_does() {
    let t = table();
    let attached = &t.agreement.attachments[0];
    assert_eq!(
        attached.sha256,
        Hasher::digest(b"Expert report of Dr Okafor")
    );
    assert_eq!(attached.sha256_hex(), REPORT_SHA256);
    assert_eq!(
        attached.summary(),
        format!(
            "Expert report of Dr Okafor (okafor_report.pdf, 26 bytes), SHA-256 {REPORT_SHA256}"
        )
    );
    assert_eq!(
        Agreement::from_bytes(&t.agreement.to_bytes()).unwrap(),
        t.agreement
    );
    // A name that leaves its folder, an empty title, a file over the limit:
    // the agreement does not decode, as a DocumentRef would not.
    for bad in [
        Attachment {
            name: "../okafor.pdf".into(),
            ..attached.clone()
        },
        Attachment {
            title: " ".into(),
            ..attached.clone()
        },
        Attachment {
            size: 50 * 1024 * 1024 + 1,
            ..attached.clone()
        },
    ] {
        let mut agreement = t.agreement.clone();
        agreement.attachments = vec![bad];
        assert!(Agreement::from_bytes(&agreement.to_bytes()).is_err());
    }
}

#[test]
fn the_readable_copy_carries_the_terms_and_every_signature() {
    let copy = signed(&table());
    let md = copy.to_markdown();
    assert!(md.contains("The trust pays £150,000 within 28 days."));
    assert!(md.contains("Will it work in practice?"));
    assert!(md.contains(&format!(
        "## Attachments\n\nThe signatures cover each file's SHA-256, which `sha256sum FILE` prints.\n\n- Expert report of Dr Okafor: okafor\\_report.pdf, 26 bytes, SHA-256 `{REPORT_SHA256}`\n\n## Signatures"
    )));
    for sig in &copy.signatures {
        assert!(md.contains(&caucus_protocol::b64::encode(&sig.0)));
    }
    assert!(md.contains(&caucus_protocol::b64::encode(&copy.to_bytes())));
}

/// The readable parts of a Markdown export: everything before its block.
fn readable(md: &str) -> &str {
    &md[..md.rfind("```caucus-signed-agreement").unwrap()]
}

fn differs(result: Result<Verified, Error>) -> &'static str {
    match result {
        Err(Error::ReadableTextDiffers(part)) => part,
        other => panic!("expected the readable text to differ: {other:?}"),
    }
}

#[test]
fn every_export_form_verifies_and_reports_the_signed_text() {
    let copy = signed(&table());
    let bare = caucus_protocol::b64::encode(&copy.to_bytes());
    for text in [
        copy.to_markdown(),
        copy.to_json(),
        bare.clone(),
        format!("\n{bare}\r\n"),
    ] {
        let report = verify_export(&text).unwrap();
        assert_eq!(report, copy.verify().unwrap());
        assert_eq!(report.terms, copy.agreement.terms);
        assert_eq!(report.checklist, copy.agreement.checklist);
        assert_eq!(report.attachments, copy.agreement.attachments);
    }
}

#[test]
fn a_changed_digit_in_the_readable_markdown_is_refused_with_the_part_named() {
    let t = table();
    let mut agreement = t.agreement.clone();
    agreement.terms = "1. The trust pays £380,000 within 28 days.".into();
    let signatures = t
        .signers
        .iter()
        .map(|k| agreement.sign(k).unwrap())
        .collect();
    let copy = SignedAgreement::countersign(agreement, signatures, &t.mediator).unwrap();
    let md = copy.to_markdown();
    let edited = md.replacen("380,000", "980,000", 1);
    let err = verify_export(&edited).unwrap_err();
    assert_eq!(err, Error::ReadableTextDiffers("the terms"));
    assert_eq!(
        err.to_string(),
        "the readable text differs from what was signed: the terms"
    );
    assert_eq!(
        caucus_protocol::wire::ErrorCode::from(&err),
        caucus_protocol::wire::ErrorCode::Invalid
    );
    // Any one digit anywhere in the readable text, changed: refused.
    let end = readable(&md).len();
    let mut tried = 0;
    for (i, c) in md[..end].char_indices().filter(|(_, c)| c.is_ascii_digit()) {
        let other = if c == '9' { '0' } else { '9' };
        let edited = format!("{}{other}{}", &md[..i], &md[i + 1..]);
        assert!(verify_export(&edited).is_err(), "digit at {i} changed");
        tried += 1;
    }
    assert!(tried > 20);
}

#[test]
fn each_readable_part_of_the_markdown_is_checked() {
    let copy = signed(&table());
    let md = copy.to_markdown();
    let cases = [
        (
            "# Settlement agreement",
            "# Settlement agreement (final)",
            "the title",
        ),
        (
            "Drafted at 1900000000",
            "Drafted at 1900000001",
            "the session and drafting time",
        ),
        ("within 28 days", "within 82 days", "the terms"),
        (
            "Who else must see it?",
            "Who else must not see it?",
            "the checklist",
        ),
        (
            &format!("SHA-256 `{}", &REPORT_SHA256[..8]),
            "SHA-256 `00000000",
            "the attachments",
        ),
        ("26 bytes", "27 bytes", "the attachments"),
        ("| Dr Defendant |", "| Dr Plaintiff |", "the signatures"),
        (
            "Agreement hash `",
            "Agreement hash: `",
            "the agreement hash",
        ),
        (
            "## Signed copy",
            "## The signed copy",
            "the text around the signed copy",
        ),
    ];
    for (from, to, part) in cases {
        assert!(md.contains(from), "{from}");
        assert_eq!(differs(verify_export(&md.replacen(from, to, 1))), part);
    }
    // The attachments list removed whole.
    let at = md.find("## Attachments").unwrap();
    let list = &md[at..md.find("## Signatures").unwrap()];
    let removed = md.replacen(list, "", 1);
    assert_eq!(differs(verify_export(&removed)), "the attachments");
    // A line added to the terms, a signer's row removed, text after the block.
    let added = md.replacen("## Reality", "3. And £1,000 more.\n\n## Reality", 1);
    assert_eq!(differs(verify_export(&added)), "the terms");
    let row = md
        .lines()
        .find(|l| l.starts_with("| Mr Solicitor"))
        .unwrap();
    let removed = md.replacen(&format!("{row}\n"), "", 1);
    assert_eq!(differs(verify_export(&removed)), "the signatures");
    let after = format!("{md}\nAnd the trust pays costs.\n");
    assert_eq!(differs(verify_export(&after)), "text after the signed copy");
}

#[test]
fn crlf_and_trailing_white_space_are_the_only_differences_allowed() {
    let md = signed(&table()).to_markdown();
    let windows = md.replace('\n', "\r\n");
    assert!(verify_export(&windows).is_ok());
    let spaced: String = md.lines().map(|l| format!("{l}  \n")).collect();
    assert!(verify_export(&format!("{spaced}\n\n")).is_ok());
    // Anything else is a difference: a line's leading space, a blank line.
    assert!(verify_export(&md.replacen("\n## Terms", "\n ## Terms", 1)).is_err());
    assert!(verify_export(&md.replacen("## Terms\n", "## Terms\n\n", 1)).is_err());
}

#[test]
fn a_changed_signed_copy_or_a_missing_signature_is_refused_in_every_form() {
    let copy = signed(&table());
    let md = copy.to_markdown();
    let bare = caucus_protocol::b64::encode(&copy.to_bytes());
    // One character of the base64url changed, in the Markdown's block.
    for at in [0, bare.len() / 3, bare.len() / 2, bare.len() - 100] {
        let c = bare.as_bytes()[at];
        let other = if c == b'A' { "B" } else { "A" };
        let bad = format!("{}{other}{}", &bare[..at], &bare[at + 1..]);
        assert!(verify_export(&md.replace(&bare, &bad)).is_err(), "at {at}");
        assert!(verify_export(&bad).is_err(), "at {at}");
    }
    // One signature removed: the copy no longer verifies, whatever the text.
    let mut short = copy.clone();
    short.signatures.pop();
    for text in [
        short.to_markdown(),
        short.to_json(),
        caucus_protocol::b64::encode(&short.to_bytes()),
    ] {
        assert!(matches!(verify_export(&text), Err(Error::BadSignature(_))));
    }
    // No block at all, or a block that is not base64url.
    assert!(matches!(
        verify_export(readable(&md)),
        Err(Error::NotAnExport(_))
    ));
    assert!(matches!(
        verify_export(&md.replace(&bare, "not base64!")),
        Err(Error::NotAnExport(_))
    ));
    assert!(matches!(verify_export(""), Err(Error::NotAnExport(_))));
}

#[test]
fn the_json_export_s_readable_fields_equal_the_signed_ones() {
    let copy = signed(&table());
    let json: serde_json::Value = serde_json::from_str(&copy.to_json()).unwrap();
    let with = |field: &str, value: serde_json::Value| {
        let mut edited = json.clone();
        edited[field] = value;
        verify_export(&edited.to_string())
    };
    let terms = copy.agreement.terms.replace("150,000", "950,000");
    assert_eq!(differs(with("terms", terms.into())), "the terms");
    assert_eq!(differs(with("title", "Draft".into())), "the title");
    assert_eq!(
        differs(with("checklist", serde_json::json!([]))),
        "the checklist"
    );
    assert_eq!(
        json["attachments"],
        serde_json::json!([{"title": "Expert report of Dr Okafor", "name": "okafor_report.pdf",
            "size": 26, "sha256": REPORT_SHA256}])
    );
    let mut file = json["attachments"][0].clone();
    file["sha256"] = REPORT_SHA256.to_uppercase().into();
    assert_eq!(
        differs(with("attachments", serde_json::json!([file]))),
        "the attachments"
    );
    assert_eq!(
        differs(with("attachments", serde_json::json!([]))),
        "the attachments"
    );
    let mut extra = json["attachments"][0].clone();
    extra["media_type"] = "application/pdf".into();
    assert!(matches!(
        with("attachments", serde_json::json!([extra])),
        Err(Error::NotAnExport(_))
    ));
    let other = caucus_protocol::b64::encode(&[7; 32]);
    assert_eq!(
        differs(with("agreement", other.into())),
        "the agreement hash"
    );
    // A field the signed copy does not hold, or one missing: not an export.
    assert!(matches!(
        with("amount", "GBP 950000.00".into()),
        Err(Error::NotAnExport(_))
    ));
    let mut missing = json.clone();
    missing.as_object_mut().unwrap().remove("terms");
    assert!(matches!(
        verify_export(&missing.to_string()),
        Err(Error::NotAnExport(_))
    ));
    // Pretty-printed with CRLF: the same export.
    let pretty = serde_json::to_string_pretty(&json).unwrap();
    assert!(verify_export(&pretty.replace('\n', "\r\n")).is_ok());
}

#[test]
fn markdown_and_base64_in_names_and_terms_do_not_confuse_the_block() {
    let t = table();
    // Another agreement, signed too.
    let mut decoy = t.agreement.clone();
    decoy.terms = "The trust pays nothing.".into();
    let decoy_signatures = t.signers.iter().map(|k| decoy.sign(k).unwrap()).collect();
    let decoy = SignedAgreement::countersign(decoy, decoy_signatures, &t.mediator).unwrap();
    let decoy_block = format!(
        "```caucus-signed-agreement\n{}\n```",
        caucus_protocol::b64::encode(&decoy.to_bytes())
    );
    let mut agreement = t.agreement.clone();
    agreement.title = "Agreement | `code` # not a heading".into();
    agreement.terms = format!("Terms with a block:\n\n{decoy_block}\n\nand ``` fences.");
    agreement.checklist = vec!["- [ ] ** | `x`".into()];
    agreement.mediator.name = "Ms `Me|diator`\nsecond line".into();
    agreement.signatories[0].name = "A|B ```caucus-signed-agreement".into();
    let signatures = t
        .signers
        .iter()
        .map(|k| agreement.sign(k).unwrap())
        .collect();
    let copy = SignedAgreement::countersign(agreement, signatures, &t.mediator).unwrap();
    let md = copy.to_markdown();
    let report = verify_export(&md).unwrap();
    assert_eq!(report.agreement, copy.agreement.hash());
    assert_eq!(report.terms, copy.agreement.terms);
    // The block at the end is the one checked: the decoy's copy, put there
    // or left as the last block by cutting the document after it, verifies
    // but is not what the document says.
    let real = caucus_protocol::b64::encode(&copy.to_bytes());
    let decoy_copy = caucus_protocol::b64::encode(&decoy.to_bytes());
    assert!(verify_export(&md.replace(&real, &decoy_copy)).is_err());
    let cut = &md[..md.find(&decoy_block).unwrap() + decoy_block.len()];
    assert!(matches!(
        verify_export(cut),
        Err(Error::ReadableTextDiffers(_))
    ));
    // Table cells keep their row: a `|` in a name is escaped.
    assert!(md.contains("| A\\|B \\`\\`\\`caucus-signed-agreement | Claimant |"));
}

#[test]
fn the_markdown_shows_the_signed_text_literally_whatever_it_holds() {
    let t = table();
    let mut agreement = t.agreement.clone();
    let terms = "1. The trust pays.\n<!-- x -->\n# heading\n```\nunclosed ```` run";
    agreement.terms = terms.into();
    agreement.title = "Agreement <!-- hidden --> *final*".into();
    agreement.checklist = vec!["# not a heading\n<b>bold</b>".into()];
    let signatures = t
        .signers
        .iter()
        .map(|k| agreement.sign(k).unwrap())
        .collect();
    let copy = SignedAgreement::countersign(agreement, signatures, &t.mediator).unwrap();
    let md = copy.to_markdown();
    // The terms, exactly, inside a fence longer than any backtick run in
    // them, which no line of them can close: a renderer shows them as text.
    let block = format!("## Terms\n\n`````text\n{terms}\n`````\n\n");
    assert!(md.contains(&block), "{md}");
    // The title and checklist, escaped: no comment, tag, emphasis or heading.
    assert!(
        md.starts_with("# Agreement \\<\\!-- hidden --\\> \\*final\\*\n"),
        "{md}"
    );
    assert!(
        md.contains("- \\# not a heading\\\n  \\<b\\>bold\\</b\\>\n"),
        "{md}"
    );
    // The copy verifies, and reports the text signed.
    let report = verify_export(&md).unwrap();
    assert_eq!(report.terms, terms);
    // A line of the terms changed inside the block is still a difference.
    let edited = md.replacen("# heading", "# heading!", 1);
    assert_eq!(differs(verify_export(&edited)), "the terms");
}
