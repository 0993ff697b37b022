//! Appendix A of `docs/protocol.md`, recomputed: every value it shows that
//! follows from the fixed inputs at its top is computed here, from the same
//! inputs (below), and must appear in the document verbatim. A value in the
//! document that is stale fails.
//!
//! One test per section, so that a section one piece of work changes fails
//! alone. A failure lists every value of the section that is not in the
//! document, formatted as the document shows it (a `text` block and its byte
//! count), ready to paste. The HPKE `enc` and ciphertexts of A.8 are random:
//! the document's must open to the room secret, and a failure prints a fresh
//! bundle to paste.
//!
//! Where the crate's API would not take a fixed salt (labels), the value is
//! computed by hand from the document's definitions (`by_hand`), and the
//! crate must open it.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod by_hand;

use caucus_protocol::agreement::{Agreement, Attachment, Signatory, SignedAgreement};
use caucus_protocol::b64;
use caucus_protocol::codec::{Canonical, Writer};
use caucus_protocol::content::{
    Content, ContentClass, Forward, ForwardMode, ShareReceipt, Sharing, SystemEvent,
};
use caucus_protocol::crypto::{Digest, label};
use caucus_protocol::envelope::{Envelope, Header};
use caucus_protocol::identity::{DeviceKeys, Fingerprint};
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::keys::{KeyBundle, RoomKey, SealedLabel, SignedKeyBundle};
use caucus_protocol::offer::{Amount, CarriedOffer, Offer, OfferKind};
use caucus_protocol::roster::{Member, Party, Phase, Role, Room, RoomKind, Roster, SignedRoster};
use caucus_protocol::session::SessionView;

const DOC: &str = include_str!("../../docs/protocol.md");

// ----- the fixed inputs of Appendix A -----

/// The mediator's Ed25519 seed and X25519 secret: bytes 0x00.. and 0x20...
const MEDIATOR: (u8, u8) = (0x00, 0x20);
/// The claimant's: 0x40.. and 0x60...
const CLAIMANT: (u8, u8) = (0x40, 0x60);
const SESSION: SessionId = SessionId([0x11; 16]);
const PARTY: PartyId = PartyId([0x22; 16]);
const JOINT: RoomId = RoomId([0x33; 16]);
const PRIVATE: RoomId = RoomId([0x44; 16]);
const JOINT_SECRET: [u8; 32] = [0x77; 32];
const PRIVATE_SECRET: [u8; 32] = [0x88; 32];
/// The salts of the party label, the mediator's name and the claimant's.
const LABEL_SALTS: [[u8; 16]; 3] = [[0x99; 16], [0x9a; 16], [0x9b; 16]];
/// The salts of envelopes seq 1 and seq 2.
const ENVELOPE_SALTS: [[u8; 16]; 2] = [[0xab; 16], [0xac; 16]];

/// 32 consecutive bytes from `start`.
fn run(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start + i as u8)
}

/// The PKCS#8 v2 document of an Ed25519 seed (A.3), as `DeviceKeys` stores it.
fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
    let public = ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    [
        hex::decode("3053020101300506032b657004220420").unwrap(),
        seed.to_vec(),
        hex::decode("a123032100").unwrap(),
        public,
    ]
    .concat()
}

fn device((seed, dh): (u8, u8)) -> DeviceKeys {
    let mut w = Writer::new();
    w.bytes(&pkcs8(&run(seed))).fixed(&run(dh));
    DeviceKeys::from_secret_bytes(&w.into_bytes()).unwrap()
}

// ----- reading the document -----

/// The text of Appendix A's section `id` ("A.4"), heading to next heading.
fn section(id: &str) -> &'static str {
    let heading = format!("\n### {id} ");
    let start = DOC
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/protocol.md has no section {id}"))
        + 1;
    let rest = &DOC[start..];
    let end = rest[1..].find("\n#").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

/// `bytes` as the document shows them: lowercase hex, 64 digits a line.
fn wrapped(bytes: &[u8]) -> String {
    hex::encode(bytes)
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The values of one section checked against the document, and what is
/// missing from it.
struct Section {
    id: &'static str,
    body: &'static str,
    missing: Vec<String>,
}

impl Section {
    fn new(id: &'static str) -> Self {
        Self {
            id,
            body: section(id),
            missing: Vec::new(),
        }
    }

    /// `bytes` in a `text` block, and its byte count if one follows.
    fn block(&mut self, what: &str, bytes: &[u8]) {
        let block = format!("```text\n{}\n```", wrapped(bytes));
        let count = format!("\n({} bytes)", bytes.len());
        let found = self.body.match_indices(&block).any(|(at, _)| {
            let after = &self.body[at + block.len()..];
            !after.starts_with("\n(") || after.starts_with(&count)
        });
        if !found {
            self.missing.push(format!("{what}:\n{block}{count}"));
        }
    }

    /// `text` verbatim.
    fn text(&mut self, what: &str, text: &str) {
        if !self.body.contains(text) {
            self.missing.push(format!("{what}:\n{text}"));
        }
    }

    fn done(self) {
        assert!(
            self.missing.is_empty(),
            "docs/protocol.md {} is stale; expected there:\n\n{}\n",
            self.id,
            self.missing.join("\n\n")
        );
    }
}

// ----- the sections -----

#[test]
fn a1_label_prefixes() {
    let mut s = Section::new("A.1");
    for l in [
        label::IDENTITY,
        label::FINGERPRINT,
        label::ROSTER,
        label::ROSTER_HASH,
        label::ROSTER_LABEL_KEY,
        label::KEY_BUNDLE,
        label::ROOM_KEY,
        label::ENVELOPE,
        label::ENVELOPE_HASH,
        label::MESSAGE_KEY,
        label::ADMISSION_TOKEN,
        label::ADMISSION_TOKEN_HASH,
        label::JOIN_MAC_KEY,
        label::JOIN_PROOF,
        label::AUTH,
        label::AGREEMENT,
        label::AGREEMENT_SIGN,
        label::AGREEMENT_COUNTERSIGN,
        label::DELETION,
    ] {
        s.text(
            l,
            &format!("| `{l}` | `{}` |", hex::encode(by_hand::prefix(l))),
        );
    }
    s.done();
}

#[test]
fn a2_canonical_encoding() {
    // A.2 refers to the worked example of 4.2.
    let mut w = Writer::new();
    w.u16(0x0102).u64(3).bool(true).bytes(b"ab").str("c");
    w.option(Some(&7u8), |w, v| {
        w.u8(*v);
    })
    .option(None::<&u8>, |w, v| {
        w.u8(*v);
    })
    .list(&[1u8, 2], |w, v| {
        w.u8(*v);
    });
    let bytes = w.into_bytes();
    let mut s = Section::new("A.2");
    s.body = &DOC[DOC.find("### 4.2 ").unwrap()..DOC.find("## 5.").unwrap()];
    s.text(
        "4.2",
        &format!("the {} bytes `{}`", bytes.len(), hex::encode(&bytes)),
    );
    s.done();
}

/// The rows of a safety code's working, as A.3 shows them.
fn safety_working(f: &Fingerprint) -> String {
    let mut lines: Vec<String> =
        f.0.chunks_exact(5)
            .take(6)
            .enumerate()
            .map(|(i, c)| {
                let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                format!(
                    "group {}: bytes {}-{} = {} = {n} ; mod 100000 = {:05}",
                    i + 1,
                    i * 5,
                    i * 5 + 4,
                    hex::encode(c),
                    n % 100_000
                )
            })
            .collect();
    lines.push(format!("safety code: {}", f.safety_code()));
    lines.join("\n")
}

#[test]
fn a3_identities_fingerprints_and_safety_codes() {
    let mut s = Section::new("A.3");
    for (who, inputs) in [("mediator", MEDIATOR), ("claimant", CLAIMANT)] {
        let keys = device(inputs);
        let public = keys.public().to_bytes();
        let (signing, dh, self_sig) = (&public[..32], &public[32..64], &public[64..]);
        let body = [signing, dh].concat();
        if who == "mediator" {
            s.block("mediator PKCS#8", &pkcs8(&run(inputs.0)));
            s.block(
                "mediator self-signature input",
                &[by_hand::prefix(label::IDENTITY), body.clone()].concat(),
            );
            s.block(
                "mediator fingerprint input",
                &[by_hand::prefix(label::FINGERPRINT), body.clone()].concat(),
            );
        }
        s.block(&format!("{who} signing key"), signing);
        s.block(&format!("{who} DH key"), dh);
        s.block(&format!("{who} self-signature"), self_sig);
        s.block(&format!("{who} PublicIdentity"), &public);
        s.text(
            &format!("{who} PublicIdentity, base64url"),
            &b64::encode(&public),
        );
        let fingerprint = keys.fingerprint();
        s.block(&format!("{who} fingerprint"), &fingerprint.0);
        s.text(
            &format!("{who} fingerprint, base64url"),
            &fingerprint.to_string(),
        );
        s.text(&format!("{who} safety code"), &safety_working(&fingerprint));
    }
    s.done();
}

fn header(seq: u64, previous: Digest, salt: [u8; 16]) -> Header {
    Header {
        session: SESSION,
        room: PRIVATE,
        epoch: 1,
        sender: device(CLAIMANT).fingerprint(),
        seq,
        previous,
        class: ContentClass::Party,
        salt,
    }
}

#[test]
fn a4_a_header() {
    let mut s = Section::new("A.4");
    s.block(
        "header",
        &header(1, Digest::ZERO, ENVELOPE_SALTS[0]).to_bytes(),
    );
    s.done();
}

fn offer() -> Offer {
    Offer {
        kind: OfferKind::Offer,
        amount: Some(Amount::parse("GBP", "250000.00").unwrap()),
        terms: "A written apology".into(),
        conditions: vec!["Each side bears its own costs".into()],
        responds_to: None,
    }
}

/// A.5's agreement: the claimant signs, the mediator countersigns; it
/// attaches one file, `0123456789`.
fn signed_agreement() -> SignedAgreement {
    let (mediator, claimant) = (device(MEDIATOR), device(CLAIMANT));
    let agreement = Agreement {
        session: SESSION,
        title: "Settlement".into(),
        terms: "The trust pays GBP 250000.00.".into(),
        checklist: vec!["Is it workable?".into()],
        attachments: vec![Attachment {
            title: "Expert report".into(),
            name: "report.pdf".into(),
            size: 10,
            sha256: caucus_protocol::document::Hasher::digest(b"0123456789"),
        }],
        mediator: Signatory {
            identity: mediator.public().clone(),
            name: "The mediator".into(),
            party: None,
        },
        signatories: vec![Signatory {
            identity: claimant.public().clone(),
            name: "A. Claimant".into(),
            party: Some((PARTY, "Claimant".into())),
        }],
        drafted_at: 1_900_000_000,
    };
    let signature = agreement.sign(&claimant).unwrap();
    SignedAgreement::countersign(agreement, vec![signature], &mediator).unwrap()
}

fn first_text() -> Content {
    Content::Text {
        sharing: Sharing::MediatorOnly,
        body: "My bottom line is...".into(),
    }
}

#[test]
fn a5_content_encodings() {
    let mut s = Section::new("A.5");
    let counter = Offer {
        kind: OfferKind::CounterOffer,
        amount: None,
        terms: "Costs paid".into(),
        conditions: vec![],
        responds_to: Some(Digest([0xef; 32])),
    };
    let contents = [
        ("Text", first_text()),
        (
            "Forward",
            Content::Forward(Forward {
                source_room: PRIVATE,
                source_message: Digest([0xcd; 32]),
                mode: ForwardMode::Reframed,
                text: "They could move on price.".into(),
                author_consented: false,
            }),
        ),
        (
            "ShareReceipt",
            Content::ShareReceipt(ShareReceipt {
                source_message: Digest([0xcd; 32]),
                destination_room: JOINT,
                mode: ForwardMode::Verbatim,
                text: "hi".into(),
            }),
        ),
        (
            "Consent",
            Content::Consent {
                message: Digest([0xcd; 32]),
            },
        ),
        (
            "System(MemberAdmitted)",
            Content::System(SystemEvent::MemberAdmitted(device(CLAIMANT).fingerprint())),
        ),
        (
            "System(JointOpened)",
            Content::System(SystemEvent::JointOpened),
        ),
        (
            "System(PhaseChanged)",
            Content::System(SystemEvent::PhaseChanged(Phase::Negotiation)),
        ),
        ("Offer", Content::Offer(offer())),
        ("counter-offer", Content::Offer(counter.clone())),
        (
            "CarriedOffer",
            Content::CarriedOffer(CarriedOffer {
                source_room: PRIVATE,
                source_message: Digest([0xcd; 32]),
                mode: ForwardMode::Verbatim,
                offer: offer(),
            }),
        ),
    ];
    for (what, content) in &contents {
        s.block(what, &content.to_bytes());
    }
    let signed = signed_agreement();
    s.block(
        "AgreementFinal",
        &Content::AgreementFinal(signed.clone()).to_bytes(),
    );
    s.block("agreement hash", &signed.agreement.hash().0);
    // As the text says: a changed attachment hash decodes and fails to
    // verify; a name with a folder does not decode.
    let mut changed = Content::AgreementFinal(signed.clone()).to_bytes();
    changed[138] ^= 1;
    let Ok(Content::AgreementFinal(copy)) = Content::from_bytes(&changed) else {
        panic!("a changed attachment hash still decodes");
    };
    assert!(matches!(
        copy.verify(),
        Err(caucus_protocol::Error::BadSignature(_))
    ));
    let mut folder = signed.agreement.clone();
    folder.attachments[0].name = "../report.pdf".into();
    assert!(Agreement::from_bytes(&folder.to_bytes()).is_err());
    s.block(
        "AgreementSignature",
        &Content::AgreementSignature {
            agreement: signed.agreement.hash(),
            signature: signed.signatures[0],
        }
        .to_bytes(),
    );
    s.block("Amount", &offer().amount.unwrap().to_bytes());
    s.text(
        "offer summary",
        &format!("(summary `{}`)", offer().summary()),
    );
    s.text(
        "counter-offer summary",
        &format!("(summary `{}`)", counter.summary()),
    );
    s.done();
}

/// A label sealed by hand as 8.2 says, with the joint secret of epoch 1;
/// the padded text, the HKDF info, the key and the `SealedLabel`.
fn label_by_hand(subject: &[u8], salt: [u8; 16], text: &str) -> [Vec<u8>; 4] {
    let info = [
        &SESSION.0[..],
        &JOINT.0,
        &1u64.to_be_bytes(),
        &by_hand::bytes(subject),
        &salt,
    ]
    .concat();
    let key = by_hand::expand(&JOINT_SECRET, label::ROSTER_LABEL_KEY, &info);
    let padded = by_hand::pad(text.as_bytes(), 64);
    let sealed = SealedLabel {
        epoch: 1,
        salt,
        ciphertext: by_hand::seal_once(&key, &[], &padded),
    };
    // The crate opens what the document describes.
    let joint = RoomKey::from_secret(JOINT, 1, JOINT_SECRET);
    assert_eq!(sealed.open(&joint, &SESSION, subject).unwrap(), text);
    [
        padded,
        [by_hand::prefix(label::ROSTER_LABEL_KEY), info].concat(),
        key.to_vec(),
        sealed.to_bytes(),
    ]
}

/// The three labels of A.6: the party's, the mediator's name, the claimant's.
fn labels() -> [SealedLabel; 3] {
    let subjects: [(Vec<u8>, &str); 3] = [
        (PARTY.0.to_vec(), "Claimant"),
        (device(MEDIATOR).fingerprint().0.to_vec(), "The mediator"),
        (device(CLAIMANT).fingerprint().0.to_vec(), "A. Claimant"),
    ];
    std::array::from_fn(|i| {
        let [_, _, _, sealed] = label_by_hand(&subjects[i].0, LABEL_SALTS[i], subjects[i].1);
        SealedLabel::from_bytes(&sealed).unwrap()
    })
}

#[test]
fn a6_sealed_labels() {
    let mut s = Section::new("A.6");
    let [padded, info, key, sealed] = label_by_hand(&PARTY.0, LABEL_SALTS[0], "Claimant");
    s.block("party label, padded text", &padded);
    s.block("party label, HKDF info", &info);
    s.block("party label, key", &key);
    let ciphertext = SealedLabel::from_bytes(&sealed).unwrap().ciphertext;
    s.block("party label, ciphertext", &ciphertext);
    s.block("party label, SealedLabel", &sealed);
    for (who, inputs, salt, name) in [
        ("mediator", MEDIATOR, LABEL_SALTS[1], "The mediator"),
        ("claimant", CLAIMANT, LABEL_SALTS[2], "A. Claimant"),
    ] {
        let [_, _, key, sealed] = label_by_hand(&device(inputs).fingerprint().0, salt, name);
        s.block(&format!("{who} name, key"), &key);
        s.block(&format!("{who} name, SealedLabel"), &sealed);
    }
    s.done();
}

/// The roster of A.7, signed by the mediator.
fn roster() -> SignedRoster {
    let (mediator, claimant) = (device(MEDIATOR), device(CLAIMANT));
    let [party_label, mediator_name, claimant_name] = labels();
    let mut members = vec![claimant.fingerprint(), mediator.fingerprint()];
    members.sort();
    let roster = Roster {
        session: SESSION,
        version: 1,
        previous: Digest::ZERO,
        phase: Phase::Preparation,
        parties: vec![Party {
            id: PARTY,
            label: party_label,
            withdrawn: false,
        }],
        members: vec![
            Member {
                identity: mediator.public().clone(),
                role: Role::Mediator,
                party: None,
                name: mediator_name,
            },
            Member {
                identity: claimant.public().clone(),
                role: Role::PartyMember,
                party: Some(PARTY),
                name: claimant_name,
            },
        ],
        rooms: vec![
            Room {
                id: JOINT,
                kind: RoomKind::Joint,
                open: true,
                epoch: 1,
                members: members.clone(),
            },
            Room {
                id: PRIVATE,
                kind: RoomKind::Private(PARTY),
                open: true,
                epoch: 1,
                members,
            },
        ],
        heads: Vec::new(),
    };
    SignedRoster::sign_roster(roster, &mediator).unwrap()
}

#[test]
fn a7_roster_version_1() {
    let mut s = Section::new("A.7");
    let signed = roster();
    s.block("canon(Roster)", signed.body());
    s.block("SignedRoster", &signed.to_bytes());
    s.block("roster hash", &signed.hash().0);
    // It is accepted as version 1 against the pinned mediator.
    let mut view = SessionView::new(SESSION, device(MEDIATOR).fingerprint());
    view.accept_roster(signed).unwrap();
    s.done();
}

/// The `SignedKeyBundle` of A.8: the last `text` block of the section.
fn documented_bundle() -> Option<SignedKeyBundle> {
    let text = section("A.8");
    let last = text.rfind("```text\n")? + "```text\n".len();
    let hex: String = text[last..]
        .split("```")
        .next()?
        .split_whitespace()
        .collect();
    SignedKeyBundle::from_bytes(&hex::decode(hex).ok()?).ok()
}

/// A view of each member that holds the A.7 roster and, if the document's
/// bundle opens, the private room's key from it.
fn views() -> (Vec<(DeviceKeys, SessionView)>, Result<(), String>) {
    let signed = roster();
    let bundle = documented_bundle();
    let mut opened = Ok(());
    let views = [MEDIATOR, CLAIMANT]
        .into_iter()
        .map(|inputs| {
            let keys = device(inputs);
            let mut view = SessionView::new(SESSION, device(MEDIATOR).fingerprint());
            view.accept_roster(signed.clone()).unwrap();
            match bundle.as_ref().map(|b| view.open_key_bundle(&keys, b)) {
                Some(Ok(key)) if key.secret() == &PRIVATE_SECRET => {}
                other => opened = Err(format!("the bundle does not open: {other:?}")),
            }
            (keys, view)
        })
        .collect();
    (views, opened)
}

#[test]
fn a8_key_bundle() {
    let mut s = Section::new("A.8");
    let hash = roster().hash();
    let (mediator, claimant) = (device(MEDIATOR), device(CLAIMANT));
    let bundle = KeyBundle {
        session: SESSION,
        room: PRIVATE,
        epoch: 1,
        roster: hash,
        entries: vec![],
    };
    for (who, keys) in [("claimant", &claimant), ("mediator", &mediator)] {
        s.block(
            &format!("{who}'s HPKE info"),
            &bundle.hpke_info(&keys.fingerprint()),
        );
    }
    // The random parts: the document's bundle opens for each member, and
    // its entries are the ones shown.
    for e in documented_bundle()
        .iter()
        .flat_map(|b| &b.unverified().entries)
    {
        let who = if e.recipient == claimant.fingerprint() {
            "claimant"
        } else {
            "mediator"
        };
        s.block(&format!("{who}'s enc"), &e.enc);
        s.block(&format!("{who}'s ciphertext"), &e.ciphertext);
    }
    let (_, opened) = views();
    if let Err(why) = opened {
        let mut fresh = SessionView::new(SESSION, mediator.fingerprint());
        fresh.accept_roster(roster()).unwrap();
        let key = RoomKey::from_secret(PRIVATE, 1, PRIVATE_SECRET);
        let sealed = fresh.seal_key_bundle(&mediator, &key).unwrap();
        let block = |what: &str, bytes: &[u8]| {
            format!(
                "{what}:\n```text\n{}\n```\n({} bytes)",
                wrapped(bytes),
                bytes.len()
            )
        };
        let mut parts = vec![format!("{why}; a fresh bundle to paste")];
        for e in &sealed.unverified().entries {
            let who = if e.recipient == claimant.fingerprint() {
                "claimant"
            } else {
                "mediator"
            };
            parts.push(block(&format!("{who}'s enc"), &e.enc));
            parts.push(block(&format!("{who}'s ciphertext"), &e.ciphertext));
        }
        parts.push(block("SignedKeyBundle", &sealed.to_bytes()));
        s.missing.push(parts.join("\n\n"));
    }
    s.done();
}

#[test]
fn a9_envelopes() {
    let mut s = Section::new("A.9");
    let claimant = device(CLAIMANT);
    let key = RoomKey::from_secret(PRIVATE, 1, PRIVATE_SECRET);
    let second = Content::Text {
        sharing: Sharing::MayShare,
        body: "...but I could move.".into(),
    };
    let mut previous = Digest::ZERO;
    let mut sealed = Vec::new();
    for (i, content) in [first_text(), second].into_iter().enumerate() {
        let h = header(i as u64 + 1, previous, ENVELOPE_SALTS[i]);
        let hb = h.to_bytes();
        let envelope = Envelope::seal(&claimant, &key, h, &content).unwrap();
        let message_key = by_hand::message_key(&PRIVATE_SECRET, &hb);
        let padded = by_hand::pad(&content.to_bytes(), 256);
        let ciphertext = by_hand::seal_once(&message_key, &hb, &padded);
        let body = [by_hand::bytes(&hb), by_hand::bytes(&ciphertext)].concat();
        let bytes = envelope.to_bytes();
        // The crate seals what the document describes.
        assert_eq!(bytes[..body.len()], body[..], "seq {}", i + 1);
        let seq = format!("seq {}", i + 1);
        s.block(&format!("{seq} header"), &hb);
        if i == 0 {
            s.block(
                "seq 1 HKDF info",
                &[by_hand::prefix(label::MESSAGE_KEY), hb.clone()].concat(),
            );
            s.block("seq 1 plaintext", &content.to_bytes());
            s.block("seq 1 padded plaintext", &padded);
            s.block("seq 1 signed body", &body);
            s.block("seq 1 signature", &bytes[body.len()..]);
        }
        s.block(&format!("{seq} message key"), &message_key);
        s.block(&format!("{seq} ciphertext"), &ciphertext);
        if i == 1 {
            s.block("seq 2 signature", &bytes[body.len()..]);
        }
        s.block(&format!("{seq} envelope"), &bytes);
        s.block(&format!("{seq} envelope hash"), &envelope.hash().0);
        previous = envelope.hash();
        sealed.push(envelope);
    }
    // Each opens for the mediator, in order, with no gap.
    let (mut views, opened) = views();
    if opened.is_ok() {
        let (_, mediator) = &mut views[0];
        for e in &sealed {
            let o = mediator.open(e).unwrap();
            assert_eq!(o.gap, None);
        }
    }
    s.done();
}

/// The relay's keys of A.12: seed 0x80.., X25519 secret 0xa0...
const RELAY: (u8, u8) = (0x80, 0xa0);

#[test]
fn a12_deletion_statement() {
    use caucus_protocol::deletion::{DeletionStatement, Erased};
    use caucus_protocol::wire::Reply;
    let mut s = Section::new("A.12");
    let relay = device(RELAY);
    let statement = DeletionStatement {
        relay: relay.public().clone(),
        session: SESSION,
        mediator: device(MEDIATOR).fingerprint(),
        closed_at: 1_900_000_000,
        erased_at: 1_900_000_030,
        erased: Erased {
            rosters: 4,
            key_bundles: 6,
            envelopes: 12,
            invites: 2,
            join_requests: 0,
            sessions: 1,
            documents: 2,
            chunks: 5,
            bytes: 337_630,
        },
    };
    let body = statement.to_bytes();
    s.block("DeletionStatement", &body);
    s.block(
        "Signing input",
        &[by_hand::prefix(label::DELETION), body.clone()].concat(),
    );
    let signed = statement.sign(&relay).unwrap();
    let bytes = signed.to_bytes();
    s.block("SignedDeletionStatement", &bytes);
    signed
        .verify_for(
            &SESSION,
            &device(MEDIATOR).fingerprint(),
            &relay.fingerprint(),
        )
        .unwrap();
    let sig = hex::encode(&bytes[bytes.len() - 64..]);
    s.text(
        "The signature",
        &format!("`{}…{}`", &sig[..8], &sig[sig.len() - 6..]),
    );
    s.text(
        "As an ok reply",
        &serde_json::to_string(&Reply::erased(12, signed)).unwrap(),
    );
    s.done();
}
