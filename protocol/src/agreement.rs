//! The outcome: a good-faith agreement that every party's members sign and
//! the mediator countersigns, and that anyone holding a copy can verify
//! offline, with no relay.
//!
//! * The [`Agreement`] is the exact text and the list of who must sign it
//!   (each with their public identity, name and party), drafted by the lead
//!   mediator. Its hash names it.
//! * Each signer's [`Signature`] is over
//!   `u8(len) || "caucus/v1/agreement-sign" || agreement hash`.
//! * The mediator's countersignature is over
//!   `u8(len) || "caucus/v1/agreement-countersign" || agreement hash || every
//!   signer's signature, in the agreement's order`.
//!
//! [`SignedAgreement::verify`] checks all of it and reports who signed.

use serde::{Deserialize, Serialize};

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::{Digest, Signature, label};
use crate::error::Error;
use crate::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use crate::ids::{PartyId, SessionId};

/// Someone who must sign, as the agreement names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatory {
    /// Their public identity.
    pub identity: PublicIdentity,
    /// Their name, as it appears on the agreement.
    pub name: String,
    /// Their party's id and label; `None` for the mediator.
    pub party: Option<(PartyId, String)>,
}

impl Canonical for Signatory {
    fn encode(&self, w: &mut Writer) {
        self.identity.encode(w);
        w.str(&self.name);
        w.option(self.party.as_ref(), |w, (id, label)| {
            id.encode(w);
            w.str(label);
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            identity: PublicIdentity::decode(r)?,
            name: r.string()?,
            party: r.option(|r| Ok((PartyId::decode(r)?, r.string()?)))?,
        })
    }
}

/// The agreement as drafted: the exact text everyone signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The session it settles.
    pub session: SessionId,
    /// A title ("Settlement agreement").
    pub title: String,
    /// The terms, exactly as signed.
    pub terms: String,
    /// The reality-testing checklist the parties went through.
    pub checklist: Vec<String>,
    /// The mediator, who countersigns.
    pub mediator: Signatory,
    /// Every party member who must sign, in signing order.
    pub signatories: Vec<Signatory>,
    /// When it was drafted, seconds since the Unix epoch.
    pub drafted_at: u64,
}

impl Canonical for Agreement {
    fn encode(&self, w: &mut Writer) {
        self.session.encode(w);
        w.str(&self.title).str(&self.terms);
        w.list(&self.checklist, |w, item| {
            w.str(item);
        });
        self.mediator.encode(w);
        w.list(&self.signatories, |w, s| s.encode(w));
        w.u64(self.drafted_at);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            session: SessionId::decode(r)?,
            title: r.string()?,
            terms: r.string()?,
            checklist: r.list(|r| r.string())?,
            mediator: Signatory::decode(r)?,
            signatories: r.list(Signatory::decode)?,
            drafted_at: r.u64()?,
        })
    }
}

impl Agreement {
    /// The hash that names this exact agreement.
    pub fn hash(&self) -> Digest {
        Digest::of(label::AGREEMENT, &[&self.to_bytes()])
    }

    /// As a signatory: sign this exact text.
    pub fn sign(&self, keys: &DeviceKeys) -> Result<Signature, Error> {
        if !self
            .signatories
            .iter()
            .any(|s| s.identity.fingerprint() == keys.fingerprint())
        {
            return Err(Error::NotPermitted("not a signatory of this agreement"));
        }
        Ok(keys.sign(label::AGREEMENT_SIGN, &self.hash().0))
    }

    fn countersign_input(&self, signatures: &[Signature]) -> Vec<u8> {
        let mut w = Writer::new();
        self.hash().encode(&mut w);
        for s in signatures {
            s.encode(&mut w);
        }
        w.into_bytes()
    }
}

/// An agreement with every signature and the mediator's countersignature:
/// the copy each participant keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAgreement {
    /// The agreement.
    pub agreement: Agreement,
    /// One signature per signatory, in the agreement's order.
    pub signatures: Vec<Signature>,
    /// The mediator's countersignature.
    pub countersignature: Signature,
}

impl Canonical for SignedAgreement {
    fn encode(&self, w: &mut Writer) {
        w.bytes(&self.agreement.to_bytes());
        w.list(&self.signatures, |w, s| s.encode(w));
        self.countersignature.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            agreement: Agreement::from_bytes(r.bytes()?)?,
            signatures: r.list(Signature::decode)?,
            countersignature: Signature::decode(r)?,
        })
    }
}

/// Who signed, as [`SignedAgreement::verify`] found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// The agreement's hash.
    pub agreement: Digest,
    /// The title.
    pub title: String,
    /// Each signer: name, party label (none for the mediator), fingerprint.
    pub signers: Vec<(String, Option<String>, Fingerprint)>,
}

impl SignedAgreement {
    /// As the mediator, once every signatory has signed: check each
    /// signature and countersign.
    pub fn countersign(
        agreement: Agreement,
        signatures: Vec<Signature>,
        mediator: &DeviceKeys,
    ) -> Result<Self, Error> {
        if agreement.mediator.identity.fingerprint() != mediator.fingerprint() {
            return Err(Error::NotPermitted(
                "only the agreement's mediator countersigns",
            ));
        }
        check_signatures(&agreement, &signatures)?;
        let countersignature = mediator.sign(
            label::AGREEMENT_COUNTERSIGN,
            &agreement.countersign_input(&signatures),
        );
        Ok(Self {
            agreement,
            signatures,
            countersignature,
        })
    }

    /// Check every signature and the countersignature, with nothing but
    /// this copy: a changed byte or a missing signature fails.
    pub fn verify(&self) -> Result<Verified, Error> {
        let a = &self.agreement;
        check_signatures(a, &self.signatures)?;
        a.mediator.identity.verify(
            label::AGREEMENT_COUNTERSIGN,
            &a.countersign_input(&self.signatures),
            &self.countersignature,
            "agreement countersignature",
        )?;
        let mut signers: Vec<_> = a
            .signatories
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.party.as_ref().map(|(_, l)| l.clone()),
                    s.identity.fingerprint(),
                )
            })
            .collect();
        signers.push((
            a.mediator.name.clone(),
            None,
            a.mediator.identity.fingerprint(),
        ));
        Ok(Verified {
            agreement: a.hash(),
            title: a.title.clone(),
            signers,
        })
    }

    /// A readable copy (Markdown) that carries the signatures.
    pub fn to_markdown(&self) -> String {
        let a = &self.agreement;
        let mut out = format!(
            "# {}\n\nSession `{}`. Drafted at {} (Unix time).\n\n## Terms\n\n{}\n",
            a.title, a.session, a.drafted_at, a.terms
        );
        if !a.checklist.is_empty() {
            out.push_str("\n## Reality-testing checklist\n\n");
            for item in &a.checklist {
                out.push_str(&format!("- {item}\n"));
            }
        }
        out.push_str("\n## Signatures\n\n| signer | party | fingerprint | signature |\n| --- | --- | --- | --- |\n");
        for (s, sig) in a.signatories.iter().zip(&self.signatures) {
            let party = s.party.as_ref().map_or("", |(_, l)| l.as_str());
            out.push_str(&format!(
                "| {} | {party} | `{}` | `{}` |\n",
                s.name,
                s.identity.fingerprint(),
                crate::b64::encode(&sig.0)
            ));
        }
        out.push_str(&format!(
            "| {} (mediator, countersigning) | | `{}` | `{}` |\n\nAgreement hash `{}`. The canonical signed copy, which `caucus agreement verify` checks, is:\n\n```\n{}\n```\n",
            a.mediator.name,
            a.mediator.identity.fingerprint(),
            crate::b64::encode(&self.countersignature.0),
            crate::b64::encode(&a.hash().0),
            crate::b64::encode(&self.to_bytes())
        ));
        out
    }
}

fn check_signatures(a: &Agreement, signatures: &[Signature]) -> Result<(), Error> {
    if signatures.len() != a.signatories.len() {
        return Err(Error::BadSignature("agreement: a signature is missing"));
    }
    let hash = a.hash();
    for (s, sig) in a.signatories.iter().zip(signatures) {
        s.identity
            .verify(label::AGREEMENT_SIGN, &hash.0, sig, "agreement signature")?;
    }
    Ok(())
}
