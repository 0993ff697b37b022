//! A mediation session built through the public API: a mediator, a claimant
//! with a solicitor, and a defendant, each with their own verified view.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use caucus_protocol::Error;
use caucus_protocol::builder::RosterBuilder;
use caucus_protocol::content::{Content, Sharing};
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::ids::{PartyId, RoomId, SessionId};
use caucus_protocol::keys::SignedKeyBundle;
use caucus_protocol::roster::{Role, SignedRoster};
use caucus_protocol::session::SessionView;

pub struct Person {
    pub keys: DeviceKeys,
    pub view: SessionView,
}

pub struct Fixture {
    pub session: SessionId,
    pub builder: RosterBuilder,
    pub mediator: Person,
    pub claimant: Person,
    pub solicitor: Person,
    pub defendant: Person,
    pub claimant_party: PartyId,
    pub defendant_party: PartyId,
    pub claimant_room: RoomId,
    pub defendant_room: RoomId,
    pub joint_room: RoomId,
    pub rosters: Vec<SignedRoster>,
    pub bundles: Vec<SignedKeyBundle>,
}

fn person(session: SessionId, mediator: &DeviceKeys) -> Person {
    Person {
        keys: DeviceKeys::generate().unwrap(),
        view: SessionView::new(session, mediator.fingerprint()),
    }
}

impl Fixture {
    pub fn new() -> Self {
        let session = SessionId::random().unwrap();
        let mediator_keys = DeviceKeys::generate().unwrap();
        let mut builder = RosterBuilder::new(session, &mediator_keys, "Mediator").unwrap();
        let claimant_party = builder.add_party("Claimant").unwrap();
        let defendant_party = builder.add_party("Defendant trust").unwrap();
        let claimant = person(session, &mediator_keys);
        let solicitor = person(session, &mediator_keys);
        let defendant = person(session, &mediator_keys);
        builder
            .add_member(
                claimant.keys.public(),
                Role::PartyMember,
                Some(claimant_party),
                "Ms C",
            )
            .unwrap();
        builder
            .add_member(
                solicitor.keys.public(),
                Role::PartyMember,
                Some(claimant_party),
                "Mr S",
            )
            .unwrap();
        builder
            .add_member(
                defendant.keys.public(),
                Role::PartyMember,
                Some(defendant_party),
                "Dr D",
            )
            .unwrap();
        let draft = builder.draft();
        let claimant_room = draft.private_room(&claimant_party).unwrap().id;
        let defendant_room = draft.private_room(&defendant_party).unwrap().id;
        let joint_room = draft.joint_room().unwrap().id;
        let mut f = Self {
            session,
            builder,
            mediator: Person {
                view: SessionView::new(session, mediator_keys.fingerprint()),
                keys: mediator_keys,
            },
            claimant,
            solicitor,
            defendant,
            claimant_party,
            defendant_party,
            claimant_room,
            defendant_room,
            joint_room,
            rosters: Vec::new(),
            bundles: Vec::new(),
        };
        f.builder.set_open(&joint_room, true).unwrap();
        f.publish();
        f
    }

    pub fn parties_mut(&mut self) -> [&mut Person; 3] {
        [&mut self.claimant, &mut self.solicitor, &mut self.defendant]
    }

    /// Sign the builder's draft, seal the new keys, and deliver both to every
    /// participant (who ignore bundles not meant for them).
    pub fn publish(&mut self) -> (SignedRoster, Vec<SignedKeyBundle>) {
        let (roster, keys) = self
            .builder
            .sign(&self.mediator.keys, &self.mediator.view)
            .unwrap();
        self.mediator.view.accept_roster(roster.clone()).unwrap();
        let bundles: Vec<_> = keys
            .iter()
            .map(|k| {
                self.mediator
                    .view
                    .seal_key_bundle(&self.mediator.keys, k)
                    .unwrap()
            })
            .collect();
        for p in self.parties_mut() {
            if p.view
                .roster()
                .is_some_and(|r| r.member(&p.keys.fingerprint()).is_none())
            {
                continue; // removed: they see no more rosters from the relay
            }
            p.view.accept_roster(roster.clone()).unwrap();
            for b in &bundles {
                match p.view.open_key_bundle(&p.keys, b) {
                    Ok(_) | Err(Error::NotARecipient) => {}
                    Err(e) => panic!("bundle rejected: {e}"),
                }
            }
        }
        self.rosters.push(roster.clone());
        self.bundles.extend(bundles.iter().cloned());
        (roster, bundles)
    }
}

pub fn text(body: &str) -> Content {
    Content::Text {
        sharing: Sharing::MediatorOnly,
        body: body.into(),
    }
}
