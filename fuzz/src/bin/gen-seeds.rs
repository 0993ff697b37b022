//! Write seed corpora for every fuzz target, built from real objects with
//! the public API of caucus-protocol: a session with a mediator, two parties
//! (three members), three roster versions, their key bundles, envelopes of
//! every content type, a signed agreement, invite links, join requests,
//! wire frames and saved session states.
//!
//! Usage: `gen-seeds [CORPUS_DIR]` (default `corpus`). Each seed is written
//! to `CORPUS_DIR/<target>/seed-<name>`; running it again replaces them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use caucus_fuzz::{
    CLAIMANT, CO_MEDIATOR, DEFENDANT, INVITE_EXPIRES, ItemKind, MEDIATOR, RELAY, SESSION,
    SOLICITOR, Transcript, invite, keys,
};
use caucus_protocol::agreement::{Agreement, Attachment, Signatory, SignedAgreement};
use caucus_protocol::auth::AuthTarget;
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::codec::Canonical;
use caucus_protocol::content::{Content, ForwardMode, Sharing, Step, SystemEvent};
use caucus_protocol::crypto::{Digest, Signature};
use caucus_protocol::deletion::{DeletionStatement, Erased};
use caucus_protocol::document::{DocumentKey, DocumentRef, Hasher, Sealer};
use caucus_protocol::envelope::Envelope;
use caucus_protocol::ids::{FileId, InviteId, RoomId};
use caucus_protocol::invite::Invite;
use caucus_protocol::keys::SignedKeyBundle;
use caucus_protocol::offer::{Amount, CarriedOffer, Offer, OfferKind};
use caucus_protocol::roster::{Phase, Role, SignedRoster};
use caucus_protocol::session::SessionView;
use caucus_protocol::wire::{
    Encoded, ErrorCode, Event, MediatorWhereabouts, PartyStatus, Reply, Request, RequestBody,
    RoomCursor, ServerFrame,
};

struct Seeds {
    dir: PathBuf,
    count: BTreeMap<&'static str, usize>,
}

impl Seeds {
    fn put(&mut self, target: &'static str, name: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
        *self.count.entry(target).or_default() += 1;
    }
}

/// Everyone's view, fed every roster and bundle as a client would be.
struct World {
    builder: RosterBuilder,
    views: Vec<SessionView>,
    rosters: Vec<SignedRoster>,
    bundles: Vec<SignedKeyBundle>,
    envelopes: Vec<Envelope>,
}

impl World {
    fn publish(&mut self) {
        let mediator = keys(MEDIATOR);
        let m = usize::from(MEDIATOR);
        let (roster, room_keys) = self
            .builder
            .sign(mediator, &self.views[m])
            .expect("sign the roster");
        self.views[m]
            .accept_roster(roster.clone())
            .expect("the mediator accepts its roster");
        let bundles: Vec<_> = room_keys
            .iter()
            .map(|k| {
                self.views[m]
                    .seal_key_bundle(mediator, k)
                    .expect("seal a bundle")
            })
            .collect();
        for (n, view) in self.views.iter_mut().enumerate() {
            if n == m
                || roster
                    .unverified()
                    .member(&keys(n as u8).fingerprint())
                    .is_none()
            {
                continue;
            }
            if view.roster().is_none() {
                // Joining late: every earlier version first, then their keys.
                for earlier in &self.rosters {
                    view.accept_roster(earlier.clone()).expect("accept");
                }
                for b in &self.bundles {
                    let _ = view.open_key_bundle(keys(n as u8), b);
                }
            }
            view.accept_roster(roster.clone())
                .expect("accept the roster");
            for b in &bundles {
                let _ = view.open_key_bundle(keys(n as u8), b);
            }
        }
        self.rosters.push(roster);
        self.bundles.extend(bundles);
    }

    /// Seal `content` from `who` into `room`, and let every view open it.
    fn post(&mut self, who: u8, room: RoomId, content: &Content) -> Envelope {
        let envelope = self.views[usize::from(who)]
            .seal(keys(who), &room, content)
            .expect("seal an envelope");
        for (n, view) in self.views.iter_mut().enumerate() {
            if n != usize::from(who) {
                let _ = view.open(&envelope);
            }
        }
        self.envelopes.push(envelope.clone());
        envelope
    }
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let mut seeds = Seeds {
        dir: PathBuf::from(dir),
        count: BTreeMap::new(),
    };
    let mediator = keys(MEDIATOR);

    // Roster 1: a mediator, the claimant party (two members) and the
    // defendant party, the joint room open.
    let mut builder = RosterBuilder::new(SESSION, mediator, "Ms Mediator").expect("builder");
    let claimant_party = builder.add_party("Claimant").expect("party");
    let defendant_party = builder.add_party("Defendant trust").expect("party");
    for (who, party, name) in [
        (CLAIMANT, claimant_party, "Ms Claimant"),
        (SOLICITOR, claimant_party, "Mr Solicitor"),
        (DEFENDANT, defendant_party, "Dr Defendant"),
    ] {
        builder
            .add_member(keys(who).public(), Role::PartyMember, Some(party), name)
            .expect("member");
    }
    let draft = builder.draft();
    let joint = draft.joint_room().expect("joint room").id;
    let claimant_room = draft.private_room(&claimant_party).expect("room").id;
    let defendant_room = draft.private_room(&defendant_party).expect("room").id;
    builder.set_open(&joint, true).expect("open the joint room");
    let mut world = World {
        builder,
        views: (0..caucus_fuzz::PEOPLE)
            .map(|_| SessionView::new(SESSION, mediator.fingerprint()))
            .collect(),
        rosters: Vec::new(),
        bundles: Vec::new(),
        envelopes: Vec::new(),
    };
    world.publish();

    // Envelopes of every content type, each from someone allowed to send it.
    let private = Content::Text {
        sharing: Sharing::MediatorOnly,
        body: "My bottom line is £120,000.".into(),
    };
    let source = world.post(CLAIMANT, claimant_room, &private);
    let consent = world.post(
        CLAIMANT,
        claimant_room,
        &Content::Consent {
            message: source.hash(),
        },
    );
    world.post(
        DEFENDANT,
        defendant_room,
        &Content::Text {
            sharing: Sharing::MayShare,
            body: "We could apologise in writing.".into(),
        },
    );
    // The mediator opened both: forward with consent, and the receipt.
    let mut reader = SessionView::new(SESSION, mediator.fingerprint());
    for r in &world.rosters {
        reader.accept_roster(r.clone()).expect("accept");
    }
    for b in &world.bundles {
        let _ = reader.open_key_bundle(mediator, b);
    }
    let opened_source = reader.open(&source).expect("open the source");
    let opened_consent = reader.open(&consent).expect("open the consent");
    let (forward, receipt) = opened_source
        .forward(joint, None, Some(&opened_consent))
        .expect("forward");
    world.post(MEDIATOR, joint, &Content::Forward(forward));
    world.post(MEDIATOR, claimant_room, &Content::ShareReceipt(receipt));
    world.post(
        MEDIATOR,
        joint,
        &Content::System(SystemEvent::PhaseChanged(Phase::Negotiation)),
    );
    world.post(
        CLAIMANT,
        claimant_room,
        &Content::Agree {
            step: Step::JointMeeting,
        },
    );
    // An offer made in the defendant's room, carried to the claimant's,
    // and a counter-offer answering it.
    let offer = Offer {
        kind: OfferKind::Offer,
        amount: Some(Amount::parse("GBP", "120000.00").expect("amount")),
        terms: "Without admission of liability".into(),
        conditions: vec!["Full and final settlement".into()],
        responds_to: None,
    };
    world.post(DEFENDANT, defendant_room, &Content::Offer(offer.clone()));
    let made = world.envelopes.last().expect("the offer").hash();
    world.post(
        MEDIATOR,
        claimant_room,
        &Content::CarriedOffer(CarriedOffer {
            source_room: defendant_room,
            source_message: made,
            mode: ForwardMode::Verbatim,
            offer,
        }),
    );
    let carried = world.envelopes.last().expect("the carried offer").hash();
    world.post(
        CLAIMANT,
        claimant_room,
        &Content::Offer(Offer {
            kind: OfferKind::CounterOffer,
            amount: Some(Amount::parse("GBP", "180000").expect("amount")),
            terms: String::new(),
            conditions: vec![],
            responds_to: Some(carried),
        }),
    );
    world.post(DEFENDANT, defendant_room, &Content::Withdrawal);

    // The agreement: drafted, signed by each party member, countersigned.
    let signatory =
        |who: u8, name: &str, party: Option<(caucus_protocol::ids::PartyId, &str)>| Signatory {
            identity: keys(who).public().clone(),
            name: name.into(),
            party: party.map(|(id, label)| (id, label.to_owned())),
        };
    let agreement = Agreement {
        session: SESSION,
        title: "Settlement agreement".into(),
        terms: "1. The trust pays £150,000 within 28 days.\n2. The trust apologises in writing."
            .into(),
        checklist: vec![
            "Will it work in practice?".into(),
            "Who else must see it?".into(),
        ],
        attachments: vec![Attachment {
            title: "Expert report of Dr Okafor".into(),
            name: "okafor-report.pdf".into(),
            size: 26,
            sha256: Digest([0x5a; 32]),
        }],
        mediator: signatory(MEDIATOR, "Ms Mediator", None),
        signatories: vec![
            signatory(CLAIMANT, "Ms Claimant", Some((claimant_party, "Claimant"))),
            signatory(
                SOLICITOR,
                "Mr Solicitor",
                Some((claimant_party, "Claimant")),
            ),
            signatory(
                DEFENDANT,
                "Dr Defendant",
                Some((defendant_party, "Defendant trust")),
            ),
        ],
        drafted_at: 1_900_000_000,
    };
    world.post(MEDIATOR, joint, &Content::AgreementDraft(agreement.clone()));
    let signatures: Vec<Signature> = [CLAIMANT, SOLICITOR, DEFENDANT]
        .iter()
        .map(|&who| agreement.sign(keys(who)).expect("sign the agreement"))
        .collect();
    world.post(
        CLAIMANT,
        joint,
        &Content::AgreementSignature {
            agreement: agreement.hash(),
            signature: signatures[0],
        },
    );
    let final_copy =
        SignedAgreement::countersign(agreement.clone(), signatures, mediator).expect("countersign");
    world.post(
        MEDIATOR,
        joint,
        &Content::AgreementFinal(final_copy.clone()),
    );

    // Roster 2: a co-mediator and a side room; the solicitor removed.
    world
        .builder
        .add_member(
            keys(CO_MEDIATOR).public(),
            Role::CoMediator,
            None,
            "Mr Co-Mediator",
        )
        .expect("co-mediator");
    world
        .builder
        .remove_member(&keys(SOLICITOR).fingerprint())
        .expect("remove");
    world
        .builder
        .add_side_room(&[keys(CLAIMANT).fingerprint(), keys(DEFENDANT).fingerprint()])
        .expect("side room");
    world.builder.set_phase(Phase::Agreement);
    world.publish();
    world.post(
        CO_MEDIATOR,
        joint,
        &Content::System(SystemEvent::MemberAdmitted(keys(CO_MEDIATOR).fingerprint())),
    );
    world.post(
        CLAIMANT,
        claimant_room,
        &Content::Text {
            sharing: Sharing::MayShare,
            body: "Thank you.".into(),
        },
    );

    // Roster 3: the defendant party withdrawn, the joint room closed.
    world
        .builder
        .set_withdrawn(&defendant_party, true)
        .expect("withdraw");
    world.builder.set_open(&joint, false).expect("close");
    world.builder.set_phase(Phase::Closed);
    world.publish();
    world.post(MEDIATOR, joint, &Content::System(SystemEvent::JointClosed));

    for (i, r) in world.rosters.iter().enumerate() {
        seeds.put("roster", &format!("v{}", i + 1), &r.to_bytes());
    }
    for (i, b) in world.bundles.iter().enumerate() {
        seeds.put("key_bundle", &i.to_string(), &b.to_bytes());
    }
    for (i, e) in world.envelopes.iter().enumerate() {
        seeds.put("envelope", &i.to_string(), &e.to_bytes());
    }

    // Every content variant, with every system event.
    let mut contents = vec![
        private.clone(),
        Content::Consent {
            message: source.hash(),
        },
        Content::Withdrawal,
        Content::Agree {
            step: Step::Continue,
        },
        Content::AgreementDraft(agreement.clone()),
        Content::AgreementSignature {
            agreement: agreement.hash(),
            signature: Signature([7; 64]),
        },
        Content::AgreementFinal(final_copy.clone()),
        Content::Forward(caucus_protocol::content::Forward {
            source_room: claimant_room,
            source_message: source.hash(),
            mode: ForwardMode::Reframed,
            text: "The claimant would consider a written apology.".into(),
            author_consented: false,
        }),
    ];
    for event in [
        SystemEvent::MemberAdmitted(keys(CLAIMANT).fingerprint()),
        SystemEvent::MemberRemoved(keys(SOLICITOR).fingerprint()),
        SystemEvent::JointOpened,
        SystemEvent::JointClosed,
        SystemEvent::PhaseChanged(Phase::IndividualMeetings),
        SystemEvent::PartyWithdrew,
        SystemEvent::PartyRejoined,
    ] {
        contents.push(Content::System(event));
    }
    for (i, c) in contents.iter().enumerate() {
        seeds.put("content", &i.to_string(), &c.to_bytes());
    }

    // A document's reference, and a chunk of it as the relay returns it,
    // after the target's seven bytes of size, index and change to make.
    let file = b"Position statement of the claimant".to_vec();
    let key = DocumentKey::from_bytes(&[0x42; 32]).expect("32 bytes");
    let reference = DocumentRef {
        file: FileId([0x66; 16]),
        key: key.clone(),
        size: file.len() as u64,
        hash: Hasher::digest(&file),
        title: "Position statement".into(),
        name: "statement.pdf".into(),
        media_type: "application/pdf".into(),
    };
    seeds.put("document", "reference", &reference.to_bytes());
    let sealer = Sealer::new(&key, file.len() as u64).expect("sealer");
    let mut chunk = vec![0, 0, file.len() as u8, 0, 0, 7, 1];
    chunk.extend(sealer.seal_chunk(0, &file).expect("seal"));
    seeds.put("document", "chunk", &chunk);
    seeds.put("agreement", "signed", &final_copy.to_bytes());
    seeds.put("agreement", "draft", &agreement.to_bytes());
    let mut unsigned = agreement.clone();
    unsigned.signatories.clear();
    seeds.put(
        "agreement",
        "no-signatories",
        &SignedAgreement {
            agreement: unsigned,
            signatures: Vec::new(),
            countersignature: Signature([0; 64]),
        }
        .to_bytes(),
    );

    for who in 0..caucus_fuzz::PEOPLE {
        seeds.put("identity", &who.to_string(), &keys(who).public().to_bytes());
    }

    // Invite links: a real one, the fixed one, with whitespace, and a wss URL
    // at the length limit.
    let real = Invite::new(
        "ws://127.0.0.1:7300".into(),
        keys(RELAY).fingerprint(),
        SESSION,
        mediator.fingerprint(),
        INVITE_EXPIRES,
    )
    .expect("invite");
    seeds.put("invite_link", "real", real.to_link().as_bytes());
    seeds.put("invite_link", "fixed", invite().to_link().as_bytes());
    seeds.put(
        "invite_link",
        "whitespace",
        format!("  {}\n", invite().to_link()).as_bytes(),
    );
    let long = format!("wss://{}", "a".repeat(2048 - 6));
    let long_invite = Invite::new(
        long,
        keys(RELAY).fingerprint(),
        SESSION,
        mediator.fingerprint(),
        0,
    )
    .expect("the longest relay URL");
    seeds.put(
        "invite_link",
        "longest-url",
        long_invite.to_link().as_bytes(),
    );

    let fixed = invite();
    let requests: Vec<_> = [CLAIMANT, DEFENDANT]
        .iter()
        .map(|&who| fixed.join_request(keys(who).public()))
        .collect();
    for (i, r) in requests.iter().enumerate() {
        seeds.put("join_request", &i.to_string(), &r.to_bytes());
    }
    seeds.put(
        "join_request",
        "other-invite",
        &real.join_request(keys(CLAIMANT).public()).to_bytes(),
    );

    // Wire frames: one request of every type, built from the objects above.
    let request = |id: u64, body: RequestBody| {
        serde_json::to_vec(&Request { v: 1, id, body }).expect("serialize a request")
    };
    let auth_sig = AuthTarget::new(
        Digest([0xcc; 32]),
        keys(RELAY).fingerprint(),
        "wss://relay.example",
    )
    .sign(mediator);
    let bodies = vec![
        RequestBody::Auth {
            identity: Encoded(mediator.public().clone()),
            url: "wss://relay.example".into(),
            signature: auth_sig,
        },
        RequestBody::CreateSession {
            roster: Encoded(world.rosters[0].clone()),
        },
        RequestBody::PublishRoster {
            roster: Encoded(world.rosters[1].clone()),
        },
        RequestBody::PublishKeys {
            bundle: Encoded(world.bundles[0].clone()),
        },
        RequestBody::CreateInvite {
            session: SESSION,
            invite: fixed.id,
            token_hash: fixed.admission_token().hash(),
            expires_at: INVITE_EXPIRES,
        },
        RequestBody::Join {
            token: fixed.admission_token(),
            request: Encoded(requests[0].clone()),
        },
        RequestBody::Decline {
            session: SESSION,
            invite: InviteId([0x55; 16]),
        },
        RequestBody::Post {
            envelope: Encoded(world.envelopes[0].clone()),
        },
        RequestBody::Subscribe {
            session: SESSION,
            roster_after: 1,
            rooms: vec![
                RoomCursor {
                    room: joint,
                    after: 0,
                },
                RoomCursor {
                    room: claimant_room,
                    after: 12,
                },
            ],
        },
        RequestBody::Location {
            session: SESSION,
            room: Some(joint),
            disclose: true,
        },
        RequestBody::Location {
            session: SESSION,
            room: None,
            disclose: false,
        },
        RequestBody::Status {
            session: SESSION,
            status: PartyStatus::NeedsMediator,
        },
        RequestBody::CloseSession { session: SESSION },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let kind = body.kind();
        seeds.put(
            "wire_request",
            &format!("{i}-{kind}"),
            &request(i as u64, body),
        );
    }
    // The relay's own pre-checks: the header version of any `envelope`.
    seeds.put(
        "wire_request",
        "status-with-envelope",
        br#"{"v":1,"id":7,"type":"status","session":"EREREREREREREREREREREQ","status":"ready","envelope":"AAAAAAAC"}"#,
    );
    seeds.put("wire_request", "not-an-object", b"[1,2,3]");

    // The relay's statement of what it erased.
    let statement = DeletionStatement {
        relay: keys(RELAY).public().clone(),
        session: SESSION,
        mediator: keys(MEDIATOR).fingerprint(),
        closed_at: 1_900_000_000,
        erased_at: 1_900_000_060,
        erased: Erased {
            rosters: 4,
            key_bundles: 9,
            envelopes: 20,
            invites: 3,
            join_requests: 0,
            sessions: 1,
            documents: 2,
            chunks: 5,
            bytes: 12_345,
        },
    }
    .sign(keys(RELAY))
    .expect("sign the statement");
    seeds.put("deletion", "statement", &statement.to_bytes());

    // Relay frames: every reply and event.
    let frames = vec![
        ServerFrame::Reply(Reply::ok(3)),
        ServerFrame::Reply(Reply::posted(4, 42)),
        ServerFrame::Reply(Reply::erased(5, statement.clone())),
        ServerFrame::Reply(Reply::error(None, ErrorCode::Malformed, "not JSON")),
        ServerFrame::Reply(Reply::error(
            Some(9),
            ErrorCode::Forbidden,
            "only the mediator publishes rosters",
        )),
        ServerFrame::Event(Box::new(Event::Challenge {
            v: 1,
            nonce: Digest([0xcc; 32]),
            relay: Encoded(keys(RELAY).public().clone()),
            rotations: Vec::new(),
        })),
        ServerFrame::Event(Box::new(Event::Roster {
            v: 1,
            session: SESSION,
            roster: Encoded(world.rosters[0].clone()),
        })),
        ServerFrame::Event(Box::new(Event::KeyBundle {
            v: 1,
            session: SESSION,
            bundle: Encoded(world.bundles[0].clone()),
        })),
        ServerFrame::Event(Box::new(Event::Envelope {
            v: 1,
            index: 1,
            envelope: Encoded(world.envelopes[0].clone()),
        })),
        ServerFrame::Event(Box::new(Event::JoinRequest {
            v: 1,
            request: Encoded(requests[0].clone()),
        })),
        ServerFrame::Event(Box::new(Event::Declined {
            v: 1,
            session: SESSION,
        })),
        ServerFrame::Event(Box::new(Event::Presence {
            v: 1,
            session: SESSION,
            online: vec![mediator.fingerprint(), keys(CLAIMANT).fingerprint()],
            mediator: MediatorWhereabouts::WithYou(claimant_room),
        })),
        ServerFrame::Event(Box::new(Event::Presence {
            v: 1,
            session: SESSION,
            online: vec![],
            mediator: MediatorWhereabouts::Away,
        })),
        ServerFrame::Event(Box::new(Event::Status {
            v: 1,
            session: SESSION,
            member: keys(CLAIMANT).fingerprint(),
            status: PartyStatus::OnBreak,
        })),
        ServerFrame::Event(Box::new(Event::SessionClosed {
            v: 1,
            session: SESSION,
        })),
    ];
    for (i, f) in frames.iter().enumerate() {
        seeds.put(
            "server_frame",
            &i.to_string(),
            &serde_json::to_vec(f).expect("serialize a frame"),
        );
    }

    // Saved states, and transcripts: what the relay delivers to each
    // member, rosters and bundles first, then every envelope in order.
    for who in 0..caucus_fuzz::PEOPLE {
        seeds.put(
            "session_state",
            &who.to_string(),
            &world.views[usize::from(who)].to_state_bytes(),
        );
        let mut items = Vec::new();
        items.extend(
            world
                .rosters
                .iter()
                .map(|r| (ItemKind::Roster, r.to_bytes())),
        );
        items.extend(
            world
                .bundles
                .iter()
                .map(|b| (ItemKind::KeyBundle, b.to_bytes())),
        );
        items.extend(
            world
                .envelopes
                .iter()
                .map(|e| (ItemKind::Envelope, e.to_bytes())),
        );
        seeds.put(
            "session_transcript",
            &who.to_string(),
            &Transcript { me: who, items }.to_bytes(),
        );
    }
    // Interleaved as a live client sees it: roster 1 and its bundles, the
    // first envelopes, then roster 2...
    let mut live = Vec::new();
    live.push((ItemKind::Roster, world.rosters[0].to_bytes()));
    live.extend(
        world
            .bundles
            .iter()
            .take(3)
            .map(|b| (ItemKind::KeyBundle, b.to_bytes())),
    );
    live.extend(
        world
            .envelopes
            .iter()
            .take(4)
            .map(|e| (ItemKind::Envelope, e.to_bytes())),
    );
    seeds.put(
        "session_transcript",
        "live-claimant",
        &Transcript {
            me: CLAIMANT,
            items: live,
        }
        .to_bytes(),
    );

    for (target, n) in &seeds.count {
        println!(
            "{target}: {n} seeds in {}",
            Path::new(&seeds.dir).join(target).display()
        );
    }
}
